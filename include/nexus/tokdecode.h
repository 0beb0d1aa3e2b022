/*
 * nexus/tokdecode.h - ids -> text, exactly as Hugging Face `tokenizers`'
 * Tokenizer.decode does for the same tokenizer.json.
 *
 * The decoder is compiled once from the tokenizer's `decoder` object
 * (nx_tokenizer_decoder_json): ByteLevel, Metaspace, WordPiece, BPEDecoder,
 * ByteFallback, Fuse, Strip, Replace (a String, or a Regex run by PCRE2), CTC
 * and Sequence.
 * Without a decoder the tokens are joined with one space, as HF does; a
 * vocab.txt gets the WordPiece decoder ("##", cleanup) that transformers'
 * BertTokenizerFast builds for one.
 * Decoding looks each id up (added tokens first); ids that name nothing are
 * dropped, and with skip_special the special added tokens are too.
 */
#ifndef NEXUS_TOKDECODE_H
#define NEXUS_TOKDECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"
#include "nexus/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_TOKDECODE_DEPTH_MAX 8    /* nesting of Sequence decoders */
#define NX_TOKDECODE_STEPS_MAX 64   /* decoders in all, Sequences flattened */

typedef struct nx_tokdecoder nx_tokdecoder;

/*
 * Compile the decoder of `t` (borrowed; must outlive the decoder).  `path`
 * names the file in messages (may be NULL).  Errors: NX_ECONFIG for an
 * unknown or malformed decoder, naming its JSON path ("decoder.decoders[1]
 * .type 'Foo'") and saying it is the tokenizer's; NX_ELIMIT past the caps
 * above; NX_ENOMEM.
 */
int nx_tokdecoder_new(nx_tokdecoder **out, const nx_tokenizer *t, const char *path,
		      nx_error *err);

/*
 * Decode `n` ids into a new NUL-terminated UTF-8 string for free() in
 * *out (its length without the NUL in *out_len).  Errors: NX_ENOMEM.
 */
int nx_tokdecoder_decode(nx_tokdecoder *d, const int64_t *ids, size_t n, bool skip_special,
			 char **out, size_t *out_len, nx_error *err);

void nx_tokdecoder_free(nx_tokdecoder *d);

#ifdef __cplusplus
}
#endif
#endif
