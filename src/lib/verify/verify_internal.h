/*
 * verify_internal.h - shared state of the TRV checks (src/lib/verify*.c).
 * Not installed; nexus/verify.h is the public face.
 */
#ifndef NEXUS_VERIFY_INTERNAL_H
#define NEXUS_VERIFY_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "nexus/budget.h"
#include "nexus/bundle.h"
#include "nexus/fs.h"
#include "nexus/hash.h"
#include "nexus/manifest.h"
#include "nexus/onnx.h"
#include "nexus/scan.h"
#include "nexus/verify.h"
#include "util/array_int.h"

#define NX_VERIFY_ENTRIES_MAX 100000     /* entries walked in a bundle */
#define NX_VERIFY_TEXT_MAX (64u << 20)   /* bytes of a config/source file read for TRV-2 */
#define NX_VERIFY_VOCAB_ENTRY_MAX 200    /* bytes of one vocabulary entry */
/* A longer entry passes when it is a run: a head of at most
 * NX_VERIFY_VOCAB_RUN_UNIT bytes, then one unit of at most that many bytes
 * repeated (byte-level BPE learns runs of spaces or box-drawing lines from
 * code and documentation); it holds its head, its unit and its length, and
 * the leak budget charges it like any other token. */
#define NX_VERIFY_VOCAB_RUN_MAX 1024
#define NX_VERIFY_VOCAB_RUN_UNIT 16
/* An entry this long made only of base64/hex characters, with letters and
 * digits, is a slice of an encoded blob, not a token: short entries under
 * the 200-byte cap would otherwise carry a tensor 64 bytes at a time. */
#define NX_VERIFY_VOCAB_CODED_MIN 24
#define NX_VERIFY_VOCAB_IDENT_SPAN 6     /* characters per letter/digit switch of an identifier */
#define NX_VERIFY_TEACHER_TENSOR_MIN 4096 /* bytes: smaller tensors are not fingerprinted */

/*
 * Bundle files are opened and walked with nexus/fs.h.  A bundle file is
 * opened without a size cap: its size is compared with the manifest instead.
 */
int nx_vfy__open_regular(int *out, struct stat *out_st, int dirfd, const char *relpath,
		     nx_error *err);
/* Read a trusted file named by the user (follows symlinks), whole; its
 * fstat into *out_st when not NULL. */
int nx_vfy__read_path(char **out, size_t *out_len, struct stat *out_st, const char *path,
		  size_t max_size, nx_error *err);

/* What integrity learnt about each walked regular file. */
struct vfy_file {
	bool in_manifest;      /* listed with the same path */
	bool verified;         /* size and sha256 equal the manifest's */
	bool hashed;           /* sha256 below is the file's actual digest */
	unsigned char sha256[NX_SHA256_LEN];
};

/* The limits the checks apply: the manifest's policy with verify's own
 * options and --override-policy folded in (verify_policy.c). */
struct nx_vfy__policy {
	uint64_t max_model_bytes;
	double size_slack;
	uint64_t max_leak_bytes;       /* at most NX_BUDGET_DEFAULT */
	const char **imports;          /* forbidden imports (borrowed strings) */
	size_t nimports;
	const char **allow_shared;     /* tensor names allowed to equal a teacher's */
	size_t nallow_shared;
	bool teacher_recorded;         /* the build fingerprinted against a teacher */
};

struct vfy_ctx {
	nx_report *r;
	int dirfd;
	const char *bundle_path;
	const struct nx_verify_opts *opts;
	nx_manifest *m;                /* NULL when the manifest did not load */
	struct nx_fs_entry *entries;     /* sorted by path */
	size_t nentries;
	struct vfy_file *files;        /* parallel to entries */
	nx_onnx_model *onnx;           /* the student, NULL when it did not open */
	const char **terms;            /* built-in + extra forbidden terms */
	size_t nterms;
	bool runtime_untrusted;        /* allowlist: bin/ or lib/ is not the trusted runtime */
	uint64_t list_bytes;           /* weights: bytes of list attribute values (size counts them) */
	bool signature_valid;          /* signed by a --pubkey key */
	struct nx_vfy__policy pol;         /* set by nx_vfy__policy, before the TRV checks */
	/* rows of the input embedding (nx_vfy__embedding_rows): ids at or past
	 * it cannot be embedded; -1 = not determinable, embed_why says why */
	int64_t embed_rows;
	const char *embed_why;
};

/* Index of path in entries, or -1. */
long nx_vfy__find(const struct vfy_ctx *c, const char *path);
/*
 * The indices of the model's tensors with external data, sorted by the
 * file they name, in a new array (*out NULL when there are none): each
 * file is then one run.  (Comparing every tensor with every other to find
 * the distinct files took minutes on 200,000 tensors.)  0 or NX_ENOMEM.
 */
int nx_vfy__external_by_file(size_t **out, size_t *nout, const nx_onnx_summary *s);
/*
 * Would jansson's tree of this JSON text exceed the code check's budget
 * (128 MiB)?  Then nothing may parse it: the code check reports it
 * (json-over-budget), every other reader skips it.
 */
bool nx_vfy__json_over_budget(const char *buf, size_t len);
/* Case-insensitive substring search of any term in s[0..len); the term or NULL. */
const char *nx_vfy__term_in(const struct vfy_ctx *c, const char *s, size_t len);

/* verify_consts.c: nodes of the main graph computing only from constants
 * (constant-subgraph); 0 or NX_ENOMEM. */
int nx_vfy__constant_subgraphs(struct vfy_ctx *c);
/* verify_consts.c: c->embed_rows from the student's graph (c->onnx);
 * 0 or NX_ENOMEM. */
int nx_vfy__embedding_rows(struct vfy_ctx *c);

/* The checks: findings go to c->r; errors only for environment failures. */
int nx_vfy__integrity(struct vfy_ctx *c, nx_error *err);
/* After every check: a walked entry that changed since is a FAIL of
 * integrity (changed-during-verify), whose status is then updated. */
int nx_vfy__unchanged(struct vfy_ctx *c);
int nx_vfy__signature(struct vfy_ctx *c, bool *skipped, nx_error *err);
/* verify_policy.c: fills c->pol and c->terms from the manifest's policy and
 * the options; its findings are the `policy` check's. */
int nx_vfy__policy(struct vfy_ctx *c, nx_error *err);
void nx_vfy__policy_release(struct vfy_ctx *c);
/* A Python source of src/ (buf[0..len)) importing a forbidden module: FAIL
 * forbidden-import (part of `code`). */
int nx_vfy__policy_imports(struct vfy_ctx *c, const char *path, const char *buf, size_t len);
/* weights: no --teacher and no teacher fingerprinted at build: WARN
 * no-teacher-fingerprint (FAIL under --strict). */
int nx_vfy__policy_teacher(struct vfy_ctx *c);
int nx_vfy__allowlist(struct vfy_ctx *c, nx_error *err);
/* config/selftest.json: strict shape, texts scanned, numbers left to TRV-5. */
int nx_vfy__selftest_json(struct vfy_ctx *c, const char *buf, size_t len);
int nx_vfy__code(struct vfy_ctx *c, nx_error *err);

/* verify_vocab.c: tokenizer vocabularies (part of `code`). */
struct vfy_vocab {
	uint64_t numbers;      /* payload of the long number entries so far */
	uint64_t tokens;       /* entries of the vocabulary (scales the numbers rule) */
	bool reported;
};
struct json_t;
/* One vocabulary entry s[0..len) at line (0: unknown) of path; where
 * labels it ("vocab.txt", a JSON pointer). */
int nx_vfy__vocab_entry(struct vfy_ctx *c, struct vfy_vocab *v, const char *path, const char *s,
		    size_t len, long line, const char *where);
/* model/tokenizer/vocab.txt: each line an entry, none twice. */
int nx_vfy__vocab_txt(struct vfy_ctx *c, const char *path, const char *buf, size_t len);
/* The entries of tokenizer.json's model.vocab (a map or a Unigram list). */
uint64_t nx_vfy__vocab_count(struct json_t *root);
/* tokenizer.json's model.vocab ids: integers, distinct, dense from 0. */
int nx_vfy__vocab_ids(struct vfy_ctx *c, const char *path, struct json_t *root);
/* verify_budget.c: the leak budget (check `budget`). */
int nx_vfy__budget(struct vfy_ctx *c, nx_error *err);
/* verify_tokjson.c: tokenizer.json against the schema of the tokenizer
 * types nexus_cli reads, its tokens judged as tokens and its settings
 * appended to b; *failed when it broke the schema (tokenizer-schema
 * reported) or did not parse (config-unparsable, from check code). */
/* What a JSON text's parse throws away (whitespace, escapes, number
 * spellings), as budget residual (verify_layout.c). */
int nx_vfy__json_layout(nx_budget_buf *b, const char *buf, size_t len, nx_error *err);
/*
 * The vocabulary stream (docs/TRV.md, "Leak budget", tier 2): every token
 * of the vocabularies the runtime reads, whole and '\n'-terminated, in id
 * order, then the BPE merge list's split points; its compressed size bounds
 * what the vocabularies hold.  tokjson_* mark where tokenizer.json's tokens
 * end, so a vocab.txt listing the same tokens is counted once.
 */
struct vfy_vocab_stream {
	nx_budget_buf *b;
	uint64_t n;             /* tokens */
	size_t tokjson_len;     /* bytes of tokenizer.json's tokens in b */
	uint64_t tokjson_n;
};
int nx_vfy__tokjson_residual(struct vfy_ctx *c, const char *path, const char *buf, size_t len,
			 nx_budget_buf *b, struct vfy_vocab_stream *vs, bool *failed,
			 nx_error *err);
/* verify_charsmap.c: what a decoded Precompiled charsmap raw[0..len) holds
 * that Unicode does not explain, appended to b. */
struct nx_vfy_charsmap_stats {
	size_t entries, unexplained;   /* keys the trie maps; of those, charged */
	size_t stray_bytes;            /* unreached non-zero trie units, unused blob bytes */
	bool whole;                    /* not walkable: charged whole */
};
int nx_vfy__charsmap_residual(nx_budget_buf *b, const unsigned char *raw, size_t len,
			      struct nx_vfy_charsmap_stats *st, nx_error *err);
int nx_vfy__weights(struct vfy_ctx *c, bool *skipped, nx_error *err);
int nx_vfy__teacher(struct vfy_ctx *c, nx_error *err);
int nx_vfy__size(struct vfy_ctx *c, bool *skipped, nx_error *err);

/* The report names bundle_path (a stage verified for its final path).
 * 0 or NX_ENOMEM. */
int nx_vfy__report_rename(nx_report *r, const char *bundle_path);

#endif
