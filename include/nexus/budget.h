/*
 * nexus/budget.h - the leak budget: how many bytes of information a bundle
 * carries outside the model's weights (docs/TRV.md, "Leak budget").
 *
 * Every file that is not a tensor (README, LICENSE, the tokenizer, config,
 * src/, the model's strings, the manifest's strings) is reduced to what its
 * grammar does not explain - its residual - and the residual is measured by
 * a real compressor (zstd, Debian's libzstd): its compressed size is the
 * file's charge.  A compressor cannot shrink encoded random bytes (a
 * tensor's mantissas) below their information, so a teacher tensor hidden
 * in any encoding costs at least about its own size, wherever it is.
 *
 * What a grammar explains costs nothing: a vocabulary token that looks like
 * a token of a natural language (nx_budget_token_plausible), a
 * tokenizer.json id equal to its token's position.  Anything else is
 * appended to the residual verbatim.
 */
#ifndef NEXUS_BUDGET_H
#define NEXUS_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The default (and largest) leak budget of a bundle, in bytes. */
#define NX_BUDGET_DEFAULT (64u << 10)
/* Residual bytes one buffer holds; past it the charge is the raw size of
 * what did not fit plus the compressed size of what did (never less). */
#define NX_BUDGET_RESIDUAL_MAX (16u << 20)
/* Residuals up to this size are compressed at the strongest level (fewer
 * false alarms); larger ones at a fast level, which only charges more. */
#define NX_BUDGET_STRONG_MAX (1u << 20)

/*
 * The vocabulary bound (docs/TRV.md, "Leak budget", tier 2).  Every
 * vocabulary the runtime reads is written as one *vocabulary stream* (each
 * token whole, '\n'-terminated, in id order; then what a BPE merge list
 * adds), and its zstd-compressed size L is a proven upper bound on the
 * information it holds (a lossless code).  A vocabulary of N tokens is
 * allowed NX_BUDGET_VOCAB_TOKEN_BYTES x N bytes of it; the rest is charged.
 * Calibrated on real vocabularies (bench/tok_budget_real.py): the worst, a
 * CJK Unigram of 32,000 pieces, needs 4.68 bytes a token at level 19 and
 * 5.08 at NX_BUDGET_VOCAB_FAST_LEVEL; 6 leaves 28% (18%) of margin.
 */
#define NX_BUDGET_VOCAB_TOKEN_BYTES 6u
/* Streams up to NX_BUDGET_STRONG_MAX are compressed at level 19, larger
 * ones (vocabularies of about 100,000 tokens and more) at this level,
 * about 4x faster; any level is a valid bound, a weaker one charges more. */
#define NX_BUDGET_VOCAB_FAST_LEVEL 12
/*
 * Tier 1 (the per-token tripwire: implausible tokens, long words' tails)
 * charges a vocabulary as it did up to NX_BUDGET_VOCAB_TIER1_FREE tokens;
 * past that, each token allows NX_BUDGET_VOCAB_TIER1_BYTES bytes of its
 * charge, so large real vocabularies pass: a Unigram of 73,740 pieces
 * trained on English text is charged 1.6 bytes a piece, a multilingual
 * WordLevel of 64,000 words 2.0 (tests/e2e/test_vocab_bound.py).  Tier 2
 * bounds everything by itself, so this does not weaken the bound.
 */
/*
 * Tokens past the rows of the model's input embedding (ids it cannot
 * embed) bring no allowance; more than this many of them (special tokens
 * a converter appended) FAIL vocab-beyond-embedding.
 */
#define NX_BUDGET_VOCAB_DEAD_MAX 16u
#define NX_BUDGET_VOCAB_TIER1_FREE 32000u
#define NX_BUDGET_VOCAB_TIER1_BYTES 3u

/* The residual of one file. */
typedef struct nx_budget_buf nx_budget_buf;

/* A new empty residual (*out freed with nx_budget_buf_free).  0 or NX_ENOMEM. */
int nx_budget_buf_new(nx_budget_buf **out, nx_error *err);
void nx_budget_buf_free(nx_budget_buf *b);

/*
 * From now on, append to mirror (not owned) whatever nx_budget_add appends
 * to b, but not what nx_budget_add_token charges: mirror holds the residual
 * less its vocabulary tokens, what the vocabulary stream does not give back
 * (the bound of tier 1's relief, docs/TRV.md "Leak budget").
 */
void nx_budget_set_mirror(nx_budget_buf *b, nx_budget_buf *mirror);

/* Append s[0..len) to the residual verbatim (it is charged).  0 or NX_ENOMEM. */
int nx_budget_add(nx_budget_buf *b, const char *s, size_t len, nx_error *err);

/*
 * Judge s[0..len) as one vocabulary token: what is free of it
 * (nx_budget_token_free) is explained (costs nothing), the rest - all of
 * an implausible token, the letters past the free ones of a long one - is
 * appended, with a separator, to the residual.  *out_charged (may be NULL)
 * says whether anything was.  0 or NX_ENOMEM.
 */
int nx_budget_add_token(nx_budget_buf *b, const char *s, size_t len, bool *out_charged,
			nx_error *err);

/*
 * True when s[0..len) (UTF-8) is what a tokenizer trained on natural text
 * produces: after one word-piece prefix ("##", "Ġ", "▁") it is empty, one
 * assigned code point (not private use), a special token ([CLS], <s>,
 * <|endoftext|>, [unused12]: up to 3 word-like name parts, up to 4
 * digits), up to 4 digits of one script, up to 3 punctuation/symbol/space
 * code points of the common blocks, or letters of one script in lower,
 * Capitalized or (up to 6) UPPER case, optionally with one apostrophe; a
 * combining mark makes the letter before it accented (at most 2 on one
 * letter; in a script with no letter model it counts as a letter); a
 * Latin word holds at most 2 accented letters (judged
 * by their base letter) and 1 without an ASCII base (æ, ø), and from 3
 * letters on must read like a word (a vowel, no 5 consonants in a row, an
 * average letter-bigram cost of at most 4.5 bits under an English model);
 * CJK and Hangul tokens must cost at most 4 + 10 bits a character under a
 * character bigram model (and so must their first 8 characters); words
 * of other scripts (no letter model) hold at most 3 letters.
 * Anything else - base64/base85/hex in any alphabet, digits mixed with
 * letters, mixed scripts or case - is not plausible.
 */
bool nx_budget_token_plausible(const char *s, size_t len);

/*
 * The leading bytes of s[0..len) that cost nothing: len for a plausible
 * token of at most 12 letters (8 CJK or Hangul characters), the bytes up
 * to its 13th letter (9th character) for a longer one - the rest is
 * charged, so a free token's capacity does not grow with its length -
 * and 0 for a token that is not plausible.  nx_budget_add_token charges
 * what is not free.
 */
size_t nx_budget_token_free(const char *s, size_t len);

/* Bytes appended to the residual so far (charged before compression). */
uint64_t nx_budget_residual(const nx_budget_buf *b);

/*
 * The charge of the residual: its zstd-compressed size, 0 when it is
 * empty.  Errors: NX_ENOMEM, NX_EINTERNAL (compressor failure).
 */
int nx_budget_cost(uint64_t *out, const nx_budget_buf *b, nx_error *err);

/* The code length of a vocabulary stream: as nx_budget_cost, at level 19
 * up to NX_BUDGET_STRONG_MAX bytes, NX_BUDGET_VOCAB_FAST_LEVEL above. */
int nx_budget_stream_cost(uint64_t *out, const nx_budget_buf *b, nx_error *err);

/*
 * The code length of a vocabulary stream given dict, a reference stream the
 * verifier chose (--vocab-reference): zstd with dict as a raw prefix and a
 * window that reaches all of it (long-distance matching past
 * NX_BUDGET_STRONG_MAX), so a stream equal to dict, or dict with a few
 * tokens added, costs next to nothing.  A lossless code given dict, which
 * the insider does not choose: at most 2^(8x+8) streams have a length
 * <= x.  dict NULL or empty: nx_budget_stream_cost.
 */
int nx_budget_stream_cost_dict(uint64_t *out, const nx_budget_buf *b, const nx_budget_buf *dict,
			       nx_error *err);

/* The bytes held so far (*len of them; not those past NX_BUDGET_RESIDUAL_MAX). */
const char *nx_budget_data(const nx_budget_buf *b, size_t *len);

/* Append src's bytes to dst (what src could not hold is charged raw in dst
 * too).  0 or NX_ENOMEM. */
int nx_budget_append(nx_budget_buf *dst, const nx_budget_buf *src, nx_error *err);

/* Append varint(v) (7 bits a byte, low first) to the residual. */
int nx_budget_add_varint(nx_budget_buf *b, uint64_t v, nx_error *err);

#ifdef __cplusplus
}
#endif
#endif
