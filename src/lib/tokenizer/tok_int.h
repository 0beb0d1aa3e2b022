/*
 * tok_int.h - what the files of src/lib/tokenizer/ share.  Private to
 * libnexus.
 *
 * The engine follows Hugging Face `tokenizers` step by step, because the
 * ids have to be exactly its ids:
 *
 *   raw text --(added tokens with normalized:false)--> segments
 *   segment --(normalizer)--> normalized text --(added tokens with
 *   normalized:true)--> pieces --(pre-tokenizer)--> pieces --(model)--> ids
 *   ids --(truncation, post-processor, padding)--> the encoding
 *
 * Text lives in scratch buffers the tokenizer owns and reuses (grown by
 * doubling, never per token); a "piece" is a range of such a buffer.
 * Load: load.c (top level, models), load_steps.c (normalizers,
 * pre-tokenizers, post-processor).  Encode: encode.c (pipeline, added
 * tokens, truncation, padding), normalize.c, pretok.c, models.c, bpe.c,
 * unigram.c; chars.c holds Hugging Face's character classes.
 */
#ifndef NEXUS_TOK_INT_H
#define NEXUS_TOK_INT_H

#include <stdbool.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "nexus/tokenizer.h"
#include "util/array_int.h"

#define NX_TOK_PREFIX_MAX 64      /* bytes of a prefix / suffix / replacement */
#define NX_TOK_ADDED_MAX 65536    /* added tokens */
#define NX_TOK_DEPTH_MAX 8        /* nesting of Sequence normalizers / pre-tokenizers */
#define NX_TOK_STEPS_MAX 64       /* children of one Sequence */
#define NX_TOK_REGEX_MAX 4096     /* bytes of one regex pattern */
#define NX_TOK_MERGES_MAX (1u << 22)
#define NX_TOK_CHARSMAP_MAX (8u << 20) /* bytes of a decoded Precompiled charsmap */
#define NX_TOK_TEXT_MAX (64u << 20)    /* bytes of one input text */
#define NX_TOK_MATCH_LIMIT 10000000u   /* PCRE2 match limit: no regex hangs */

/* ---- growable buffers (tokenizer-owned scratch) ---- */
struct tb {
	char *p;
	size_t n, cap;
};
struct ib {
	int64_t *p;
	size_t n, cap;
};
int nx_tok__tb_reserve(struct tb *b, size_t more);
int nx_tok__tb_put(struct tb *b, const void *s, size_t len);
int nx_tok__ib_push(struct ib *b, int64_t v);
/* GPT-2's byte -> printable character table (ByteLevel; chars.c). */
uint32_t nx_tok__byte_char(unsigned char b);

/* A piece of text: bytes [off, off+len) of its list's text. */
struct tpiece {
	uint32_t off, len;
	int32_t added;  /* index in t->added, or -1 */
	bool at0;       /* starts at offset 0 of the original text */
};
struct tsplit {
	struct tpiece *v;
	size_t n, cap;
	struct tb text;
};
int nx_tok__split_add(struct tsplit *s, const char *p, size_t len, int32_t added, bool at0);

/* ---- the vocabulary: string -> id, open addressing (see vocab.c) ---- */
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
int nx_vocab_put(struct nx_vocab *v, const char *s, size_t len, int64_t id);
/* id of the concatenation a + b, or -1 */
int64_t nx_vocab_get2(const struct nx_vocab *v, const char *a, size_t alen,
		      const char *b, size_t blen);
/* entry index of a + b, or -1 */
int64_t nx_vocab_find(const struct nx_vocab *v, const char *a, size_t alen,
		      const char *b, size_t blen);
void nx_vocab_release(struct nx_vocab *v);

/* ---- regexes (PCRE2, JIT) ---- */
struct tre {
	pcre2_code *code;
	pcre2_match_data *md;
};

enum split_behavior { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };

/* ---- normalizers ---- */
enum norm_type {
	N_BERT, N_NFC, N_NFD, N_NFKC, N_NFKD, N_LOWER, N_STRIP_ACCENTS, N_STRIP,
	N_REPLACE, N_PREPEND, N_PRECOMPILED, N_NMT, N_BYTELEVEL, N_SEQ
};
struct tnorm {
	enum norm_type type;
	bool clean_text, chinese, strip_accents, lowercase;  /* N_BERT */
	bool left, right;                                    /* N_STRIP */
	struct tre re;                                       /* N_REPLACE */
	char *str;                                           /* N_REPLACE content, N_PREPEND */
	size_t str_len;
	uint32_t *trie;                                      /* N_PRECOMPILED */
	size_t trie_n;
	char *blob;
	size_t blob_len;
	struct tnorm *kids;                                  /* N_SEQ */
	size_t nkids;
	struct tb scratch[2];
};

/* ---- pre-tokenizers ---- */
enum pre_type {
	P_BERT, P_BYTELEVEL, P_WHITESPACE, P_WHITESPACE_SPLIT, P_METASPACE, P_SPLIT,
	P_PUNCT, P_DIGITS, P_CHARDELIM, P_SEQ
};
enum { PREPEND_ALWAYS, PREPEND_FIRST, PREPEND_NEVER };
struct tpre {
	enum pre_type type;
	enum split_behavior behavior;
	bool invert, add_prefix_space, use_regex, individual_digits, split;
	int prepend;
	struct tre re;                 /* P_SPLIT, P_BYTELEVEL, P_WHITESPACE */
	uint32_t delim;                /* P_CHARDELIM, P_METASPACE replacement */
	char rep[8];                   /* P_METASPACE replacement as UTF-8 */
	size_t rep_len;
	struct tpre *kids;             /* P_SEQ */
	size_t nkids;
	struct tsplit scratch[2];
};

/* ---- models ---- */
enum model_type { M_WORDPIECE, M_BPE, M_UNIGRAM, M_WORDLEVEL };

struct merge_slot {
	uint64_t key;    /* (left id << 32 | right id) + 1; 0 = empty */
	uint32_t rank;
	uint32_t new_id;
};

#define NX_TOK_CACHE_SLOTS 4096
#define NX_TOK_CACHE_WORD 24   /* bytes of a cached word */
#define NX_TOK_CACHE_IDS 12    /* ids of a cached word */
struct cache_slot {
	uint8_t len, nids;
	char word[NX_TOK_CACHE_WORD];
	uint32_t ids[NX_TOK_CACHE_IDS];
};

struct bpe_sym {
	int64_t id;
	int32_t prev, next;
	uint32_t len;
};
struct bpe_heap_ent {
	uint32_t rank, pos;
	uint32_t new_id;
	uint32_t left, right;    /* the pair's ids when pushed */
};

struct tmodel {
	enum model_type type;
	int64_t unk_id;          /* -1: none */
	char prefix[NX_TOK_PREFIX_MAX], suffix[NX_TOK_PREFIX_MAX];
	size_t prefix_len, suffix_len;
	bool has_prefix, has_suffix;
	size_t max_chars;        /* WordPiece max_input_chars_per_word */
	bool fuse_unk, byte_fallback, ignore_merges, unk_set;
	/* BPE */
	struct merge_slot *merges;
	size_t merges_mask;
	uint64_t *merge_bits;    /* a one-hash filter before the table: most pairs merge not */
	size_t merge_bits_mask;
	struct cache_slot *cache;
	struct bpe_sym *syms;
	size_t syms_cap;
	struct bpe_heap_ent *heap;
	size_t heap_cap;
	/* Unigram */
	/* byte trie of the pieces: edge (node << 8 | byte) + 1 -> child */
	uint64_t *trie_keys;
	uint32_t *trie_child;
	size_t trie_mask;
	int32_t *trie_piece;     /* node -> piece id, -1 */
	size_t trie_nodes, trie_cap;
	double *scores;          /* by id */
	double min_score;
	struct unigram_node {
		double score;
		int64_t id;
		int32_t start;   /* -1: none yet */
	} *lattice;
	size_t lattice_cap;
	struct ib fuse;          /* unigram: ranges found, reversed */
};

/* ---- added tokens ---- */
struct nx_added_token {
	char *content;           /* matched text (normalized form if normalized) */
	size_t len;
	char *raw;               /* content as written in the file */
	size_t raw_len;
	int64_t id;
	bool special, single_word, lstrip, rstrip, normalized;
};

/* ---- post-processor: one template per arity ---- */
struct titem {
	int seq;                 /* 0: A, 1: B, -1: special ids */
	uint32_t type_id;
	int64_t *ids;
	size_t nids;
};
struct ttemplate {
	struct titem *items;
	size_t n, cap;
	size_t nspecial;         /* ids it adds */
};

enum { TRUNC_LONGEST, TRUNC_ONLY_FIRST, TRUNC_ONLY_SECOND };

struct nx_tokenizer {
	struct nx_vocab v;
	const char **id_tok;     /* id -> token (borrowed from v.arena or added) */
	uint32_t *id_len;
	size_t id_n;
	struct tmodel m;
	struct tnorm *norm;      /* NULL: none */
	struct tpre *pre;        /* NULL: none */
	struct nx_added_token *added;
	size_t nadded;
	/* added-token index by first byte, longest first */
	uint32_t *added_by_byte[2][256];
	uint32_t added_by_byte_n[2][256];
	bool has_post;
	bool roberta_types;      /* RobertaProcessing: every type id 0 */
	struct ttemplate single, pair;
	bool has_trunc;
	size_t trunc_max, trunc_stride;
	int trunc_strategy;
	bool trunc_left;
	bool has_pad, pad_fixed, pad_left;
	size_t pad_len, pad_multiple;
	int64_t pad_id, pad_type_id;
	void *decoder;           /* json_t *, owned */
	const char *source;
	bool nul_sub;            /* U+10FFFF in the file stands for NUL */
	/* scratch reused by encode */
	struct tb seg, normed;
	struct tsplit pieces, pieces2;
	struct ib ids[2];
	struct tb word, word2;
	struct span { uint32_t s, e; uint32_t m; } *spans;
	size_t spans_cap;
	uint32_t *boff;
	size_t boff_cap;
};

/* chars.c: Hugging Face's character classes */
int nx_tok__is_ws(uint32_t c);           /* Rust char::is_whitespace */
int nx_tok__is_punct(uint32_t c);        /* BERT's punctuation */
int nx_tok__is_cjk(uint32_t c);
int nx_tok__is_control(uint32_t c);      /* BertNormalizer's clean_text drop */
int nx_tok__is_mn(uint32_t c);
int nx_tok__is_mark(uint32_t c);         /* M* */
int nx_tok__is_numeric(uint32_t c);      /* Rust char::is_numeric */
int nx_tok__is_word(uint32_t c);         /* Rust regex \w */
/* Decode one character at s[*i] (valid UTF-8 assumed); advances *i. */
uint32_t nx_tok__next(const char *s, size_t len, size_t *i);
/* Decode the last character before s[end]; its start in *start. */
uint32_t nx_tok__prev(const char *s, size_t end, size_t *start);
size_t nx_tok__utf8_len(const char *s, size_t len);      /* characters */
int nx_tok__tb_putc(struct tb *b, uint32_t c);           /* append as UTF-8 */
/* byte offset of the first invalid UTF-8 byte, or -1 */
long nx_tok__utf8_check(const char *s, size_t len);

/* normalize.c */
int nx_tok__normalize(nx_tokenizer *t, struct tnorm *n, const char *s, size_t len,
		      struct tb *out, nx_error *err);
void nx_tok__norm_release(struct tnorm *n);

/* pretok.c */
int nx_tok__pretokenize(nx_tokenizer *t, struct tpre *p, struct tsplit *in,
			struct tsplit *out, nx_error *err);
void nx_tok__pre_release(struct tpre *p);
int nx_tok__re_compile(struct tre *re, const char *pat, size_t len, bool literal,
		       char *why, size_t whylen);
void nx_tok__re_release(struct tre *re);
/* next match of re in s[0, len) at or after `from`; 1 found, 0 none, <0 error */
int nx_tok__re_next(struct tre *re, const char *s, size_t len, size_t from,
		    size_t *ms, size_t *me);

/* models.c, bpe.c, unigram.c: append the ids of one word */
int nx_tok__model(nx_tokenizer *t, const char *s, size_t len, struct ib *out, nx_error *err);
int nx_tok__bpe(nx_tokenizer *t, const char *s, size_t len, struct ib *out, nx_error *err);
int nx_tok__unigram(nx_tokenizer *t, const char *s, size_t len, struct ib *out,
		    nx_error *err);
void nx_tok__model_release(struct tmodel *m);
int nx_tok__unigram_index(nx_tokenizer *t);
/* merges map */
int nx_tok__merge_put(struct tmodel *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t new_id);
const struct merge_slot *nx_tok__merge_get(const struct tmodel *m, uint32_t a, uint32_t b);

/* load_steps.c */
int nx_tok__load_normalizer(nx_tokenizer *t, struct tnorm *n, void *json, const char *jpath,
			    int depth, const char *path, nx_error *err);
int nx_tok__load_pre(nx_tokenizer *t, struct tpre *p, void *json, const char *jpath,
		     int depth, const char *path, nx_error *err);
int nx_tok__load_post(nx_tokenizer *t, void *json, const char *path, nx_error *err);
/* An optional boolean setting (absent or null: *out untouched). */
int nx_tok__get_bool(bool *out, void *obj, const char *key, const char *jpath, const char *path,
		     nx_error *err);
/* An NX_ECONFIG error naming the file, the JSON path and the tokenizer. */
int nx_tok__cfg(nx_error *err, const char *path, const char *jpath, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

int nx_tokenizer_alloc(nx_tokenizer **out, const char *source, nx_error *err);
int nx_tokenizer_finish(nx_tokenizer *t, const char *path, nx_error *err);

#endif
