/*
 * tokenizer_int.h - what tokenizer.c (encoding) and tokenizer_load.c
 * (reading tokenizer.json / vocab.txt) share.  Private to libnexus.
 */
#ifndef NEXUS_TOKENIZER_INT_H
#define NEXUS_TOKENIZER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "nexus/tokenizer.h"

#define NX_TOK_PREFIX_MAX 32
#define NX_TOK_ADDED_MAX 256   /* added tokens matched in raw text */
/* Normalized text is a codepoint array; an added token found in the raw
 * text is stored as one marker value above the Unicode range. */
#define NX_TOK_MARK 0x110000u

/*
 * The vocabulary: open addressing with linear probing over a power-of-two
 * slot array holding entry indices.  Written here because no packaged C
 * library offers a string -> id map that is this compact and fast (the
 * lookup is the inner loop of WordPiece: several probes per piece).
 */
struct nx_vocab_entry {
	uint32_t off, len;  /* bytes in arena */
	int64_t id;
};

struct nx_vocab {
	uint32_t *slots;    /* entry index + 1; 0 = empty */
	size_t mask;
	struct nx_vocab_entry *ent;
	size_t n, cap;
	char *arena;
	size_t arena_len, arena_cap;
	size_t longest;     /* bytes of the longest entry */
};

struct nx_added_token {
	char *content;
	size_t len;
	int64_t id;
	bool special;
};

struct nx_tokenizer {
	struct nx_vocab v;
	bool clean_text, chinese, strip_accents, lowercase;
	char prefix[NX_TOK_PREFIX_MAX];
	size_t prefix_len;
	size_t max_chars;
	int64_t unk_id, pad_id;
	int64_t pre[NX_TOKENIZER_SPECIAL_MAX], post[NX_TOKENIZER_SPECIAL_MAX];
	size_t npre, npost;
	struct nx_added_token *added;
	size_t nadded;
	unsigned char added_first[32];  /* bitmap of first bytes of added tokens */
	const char *source;
	uint32_t *by_id;    /* vocabulary entry indices sorted by id, for id_to_token */
	void *decoder;      /* json_t * of the file's "decoder", or NULL */
	/* scratch reused by encode */
	uint32_t *cp;
	size_t cp_len, cp_cap;
	char *wbuf;
	uint32_t *boff;
	size_t wcap;
};

int nx_vocab_put(struct nx_vocab *v, const char *s, size_t len, int64_t id);
/* id of the concatenation a + b, or -1 */
int64_t nx_vocab_get2(const struct nx_vocab *v, const char *a, size_t alen,
		      const char *b, size_t blen);
int nx_tokenizer_alloc(nx_tokenizer **out, const char *source, nx_error *err);
/* finish loading: pad id, checks; path for messages */
int nx_tokenizer_finish(nx_tokenizer *t, const char *path, nx_error *err);

#endif
