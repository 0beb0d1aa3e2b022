/*
 * nexus/tokenizer.h - the tokenizer of the in-bundle runtime.
 *
 * Reads a Hugging Face `tokenizer.json` (models WordPiece, BPE, Unigram,
 * WordLevel; its normalizer, pre-tokenizer, added tokens, post-processor,
 * truncation and padding), or a plain `vocab.txt` (one token per line, id =
 * line number) with the defaults of an uncased BERT.  Encoding gives the
 * same ids, type ids and masks as the Hugging Face `tokenizers` library for
 * the same file (tests/e2e/test_tokenizer_parity.py checks this on a large
 * corpus).
 *
 * Anything the file asks for that this module does not implement (another
 * model type, normalizer, pre-tokenizer or post-processor) is an NX_ECONFIG
 * error naming the field, never silently ignored: a tokenizer that encodes
 * differently from the one the model was trained with gives wrong answers
 * without any other sign.
 *
 * A tokenizer owns scratch buffers that encoding reuses, so one nx_tokenizer
 * must not be used by two threads at once.
 */
#ifndef NEXUS_TOKENIZER_H
#define NEXUS_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_TOKENIZER_FILE_MAX (64u << 20)  /* tokenizer.json / vocab.txt bytes */
#define NX_TOKENIZER_VOCAB_MAX (1u << 21)  /* vocabulary entries */
#define NX_TOKENIZER_TOKEN_MAX 4096        /* bytes of one vocabulary entry */
#define NX_TOKENIZER_SPECIAL_MAX 8         /* ids the post-processor adds per side */
#define NX_TOKENIZER_WORD_CHARS_MAX 10000  /* cap on max_input_chars_per_word */

typedef struct nx_tokenizer nx_tokenizer;

/*
 * Load the tokenizer of directory `dirfd` (borrowed, not closed):
 * `tokenizer.json` if it exists, else `vocab.txt`.  `dirpath` is only used
 * in error messages (may be NULL).  On success *out is a new tokenizer for
 * nx_tokenizer_free().  Errors: NX_EIO (neither file readable), NX_ELIMIT
 * (a cap above), NX_EFORMAT (not JSON), NX_ECONFIG (unsupported or missing
 * field, named in the message), NX_ENOMEM.
 */
int nx_tokenizer_load(nx_tokenizer **out, int dirfd, const char *dirpath, nx_error *err);

/* Parse the bytes of a tokenizer.json (borrowed); path for messages. */
int nx_tokenizer_parse_json(nx_tokenizer **out, const char *buf, size_t len,
			    const char *path, nx_error *err);

/* Parse the bytes of a vocab.txt (borrowed); BERT uncased defaults. */
int nx_tokenizer_parse_vocab(nx_tokenizer **out, const char *buf, size_t len,
			     const char *path, nx_error *err);

/*
 * Encode `len` bytes of UTF-8 `text` (need not be NUL-terminated) into
 * ids_out, which has room for `max_len` ids (max_len >= 2 + the number of
 * ids the post-processor adds, i.e. 2 for [CLS] $A [SEP]).  The words are
 * truncated so that the whole sequence, special tokens included, fits in
 * max_len, keeping [SEP] last.  *n_out is the number of ids written; the
 * attention mask is n_out ones and token_type_ids n_out zeros.
 * Errors: NX_EFORMAT for invalid UTF-8 (offset of the bad byte in
 * err->offset), NX_EUSAGE for a too small max_len, NX_ENOMEM.
 */
int nx_tokenizer_encode(nx_tokenizer *t, const char *text, size_t len, size_t max_len,
			int64_t *ids_out, size_t *n_out, nx_error *err);

/*
 * As Hugging Face's encode(text, add_special_tokens=False): the text's own
 * ids only, without the post-processor's special tokens, truncation or
 * padding; the first max_len of them into ids_out (*n_out; more than
 * max_len ids is seen as *n_out == max_len).  What a chat template's
 * rendering is encoded with: the template wrote the special tokens.
 * Errors: those of nx_tokenizer_encode.
 */
int nx_tokenizer_encode_plain(nx_tokenizer *t, const char *text, size_t len, size_t max_len,
			      int64_t *ids_out, size_t *n_out, nx_error *err);

/*
 * Encode text `a` (alen bytes) and, when `b` is not NULL, the pair text `b`
 * (blen bytes) as Hugging Face's encode(a, b, add_special_tokens=true):
 * added tokens, normalizer, pre-tokenizer, model, truncation, post-processor
 * (type ids of a pair included) and the padding the file asks for.  The
 * length limit is the smaller of `max_len` and the file's
 * truncation.max_length; padding never goes beyond max_len.  Every output
 * array has room for max_len entries; ids_out is required, type_ids,
 * attention_mask and special_mask (1 where the post-processor added the
 * token or padding did) may be NULL.  *n_out is the number of entries
 * written.  Errors: as nx_tokenizer_encode, plus NX_EUSAGE when the
 * truncation the file asks for cannot be done (only_second without a pair,
 * a sequence too short to remove enough from).
 */
int nx_tokenizer_encode_pair(nx_tokenizer *t, const char *a, size_t alen, const char *b,
			     size_t blen, size_t max_len, int64_t *ids_out, int64_t *type_ids,
			     int64_t *attention_mask, int64_t *special_mask, size_t *n_out,
			     nx_error *err);

/*
 * The token string of `id` (not NUL-terminated; its bytes in *len, which
 * may be NULL), borrowed from the tokenizer: the added token's content,
 * else the model's piece (added tokens first, as Hugging Face's decode
 * looks them up).  NULL for an id that names nothing.
 */
const char *nx_tokenizer_id_to_token(const nx_tokenizer *t, int64_t id, size_t *len);

/* The id of token `s` (len bytes): added tokens first, then the model; -1 if none. */
int64_t nx_tokenizer_token_to_id(const nx_tokenizer *t, const char *s, size_t len);

/* 1 if `id` is an added token marked "special": true (skipped by
 * skip_special_tokens; for vocab.txt, BertTokenizer's five), else 0. */
int nx_tokenizer_is_special(const nx_tokenizer *t, int64_t id);

/*
 * The tokenizer.json's `decoder` object as a jansson json_t * (borrowed,
 * alive as long as the tokenizer), or NULL if the file has none (or the
 * tokenizer came from a vocab.txt).
 */
const void *nx_tokenizer_decoder_json(const nx_tokenizer *t);

/* truncation.max_length of the tokenizer.json, or 0 when it has none. */
size_t nx_tokenizer_max_length(const nx_tokenizer *t);

/* Type id used to pad (padding.pad_type_id, else 0). */
int64_t nx_tokenizer_pad_type_id(const nx_tokenizer *t);

/* 1 if the file pads on the left (padding.direction "Left"), else 0. */
int nx_tokenizer_pad_left(const nx_tokenizer *t);

/* Id used to pad a batch (padding.pad_id, else "[PAD]", else 0). */
int64_t nx_tokenizer_pad_id(const nx_tokenizer *t);

/* Number of vocabulary entries. */
size_t nx_tokenizer_vocab_size(const nx_tokenizer *t);

/* Number of ids the post-processor adds around the words (2 for BERT). */
size_t nx_tokenizer_special_count(const nx_tokenizer *t);

/* Which file it was loaded from: "tokenizer.json" or "vocab.txt". */
const char *nx_tokenizer_source(const nx_tokenizer *t);

void nx_tokenizer_free(nx_tokenizer *t);

#ifdef __cplusplus
}
#endif
#endif
