/*
 * verify_budget.c - check `budget`: the leak budget (nexus/budget.h,
 * docs/TRV.md).  Each file outside the weights is reduced to what its
 * grammar does not explain and charged the zstd-compressed size of that;
 * the bundle FAILs when the charges add up to more than the budget.
 *
 *   README.md, LICENSE, src/ (.py), config/ (.yaml)  the whole text
 *   config/selftest.json       its strings (its numbers are recomputed from
 *                              the model by TRV-5; without it, the whole file)
 *   model/tokenizer/           tokens judged as tokens, the rest of
 *                              tokenizer.json by its schema (verify_tokjson.c);
 *                              both files share one residual, so a vocabulary
 *                              given twice is charged about once;
 *                              tokenizer_config.json (the chat template) whole
 *   model/student_model.onnx   every string of the model (names, doc strings,
 *                              metadata, attribute and tensor strings) and
 *                              its attribute tensors' contents (Constant values)
 *                              and every number of its attributes (lists too),
 *                              shape dimensions and opset versions
 *   manifest.json              its strings (paths, ids, architecture,
 *                              platform, ...)
 *   THIRD_PARTY_NOTICES        nothing when the runtime is trusted: it is then
 *                              byte for byte the copy a trusted release ships
 *                              (allowlist), so it can say nothing the verifier
 *                              does not hold already; else the whole text
 *
 * bin/ and lib/ are the trusted runtime (allowlist) and external data files
 * hold tensors: they are not charged.
 */
#include "verify_internal.h"
#include "nexus/bundle.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/budget.h"

#define CHECK NX_CHECK_BUDGET
#define TOKENIZER_DIR "model/tokenizer/"

struct tally {
	struct vfy_ctx *c;
	uint64_t total;
	uint64_t tok_charged;       /* tier 1's charge of the tokenizer files */
	nx_budget_buf *rest;        /* their residual less the tokens' charges */
	struct vfy_vocab_stream vs; /* tier 2: the vocabularies whole */
	const char *vpath;          /* the first file that added to it */
	nx_budget_buf *ref;         /* --vocab-reference's stream, NULL = none */
	uint64_t ref_n;             /* its tokens */
	char ref_sha[2 * NX_SHA256_LEN + 1];   /* its SHA-256, hex */
	nx_error *err;
};

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

/* Charge the residual of path (its cost less what was charged before, for
 * a residual shared with an earlier file). */
static int charge(struct tally *t, const char *path, nx_budget_buf *b, uint64_t before,
		  uint64_t *out_cost)
{
	uint64_t cost;
	int rc = nx_budget_cost(&cost, b, t->err);

	if (rc)
		return rc;
	if (out_cost)
		*out_cost = cost;
	cost = cost > before ? cost - before : 0;
	t->total += cost;
	return nx_report_add(t->c->r, CHECK, NX_SEV_INFO, NX_F_BUDGET_USED, path, 0,
			     "%s uses %llu bytes of the leak budget (%llu bytes not explained by "
			     "its grammar)", path, (unsigned long long)cost,
			     (unsigned long long)nx_budget_residual(b));
}

static int json_strings(nx_budget_buf *b, json_t *v, int depth, nx_error *err)
{
	const char *k;
	json_t *x;
	size_t i;
	int rc = 0;

	if (depth > 64)
		return 0;   /* config-unparsable, from check code */
	if (json_is_string(v)) {
		rc = nx_budget_add(b, json_string_value(v), json_string_length(v), err);
		return rc ? rc : nx_budget_add(b, "\n", 1, err);
	}
	if (json_is_object(v))
		json_object_foreach(v, k, x) {
			if ((rc = nx_budget_add(b, k, strlen(k), err)) ||
			    (rc = nx_budget_add(b, "\n", 1, err)) ||
			    (rc = json_strings(b, x, depth + 1, err)))
				return rc;
		}
	else if (json_is_array(v))
		json_array_foreach(v, i, x)
			if ((rc = json_strings(b, x, depth + 1, err)))
				return rc;
	return rc;
}

/*
 * vocab.txt's tokens whole, into the vocabulary stream: nothing when they
 * are the tokens tokenizer.json listed, in the same order.  They add to N
 * (the allowance) only when tokenizer.json has no vocabulary: the runtime
 * reads vocab.txt only then (review: a vocab.txt differing by two swapped
 * lines doubled N, and its allowance, for 41 bytes of stream).
 */
static int vocab_txt_stream(struct vfy_vocab_stream *vs, nx_budget_buf *mine, uint64_t n,
			    nx_error *err)
{
	size_t have, len;
	const char *a = nx_budget_data(vs->b, &have), *b = nx_budget_data(mine, &len);

	if (vs->tokjson_n == n && vs->tokjson_len == len &&
	    nx_budget_residual(mine) == len && (!len || !memcmp(a, b, len)))
		return 0;
	if (!vs->tokjson_n)
		vs->n += n;
	return nx_budget_append(vs->b, mine, err);
}

/* Lines end in "\n" or "\r\n": a file that mixes them carries a bit a
 * line (red team 6), so then each line's ending is charged too. */
static int vocab_txt(nx_budget_buf *b, struct vfy_vocab_stream *vs, const char *buf, size_t len,
		     nx_error *err)
{
	const char *p = buf, *end = buf + len;
	size_t lines = 0, crlf = 0;
	nx_budget_buf *mine = NULL;
	uint64_t n = 0;
	bool mixed;
	int rc;

	if ((rc = nx_budget_buf_new(&mine, err)))
		return rc;

	for (; p < end; p++)
		if (*p == '\n') {
			lines++;
			crlf += p > buf && p[-1] == '\r';
		}
	mixed = crlf && crlf < lines;
	for (p = buf; !rc && p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
		bool cr = k && p[k - 1] == '\r';

		if (cr)
			k--;
		rc = nx_budget_add_token(b, p, k, NULL, err);
		if (!rc && mixed)
			rc = nx_budget_add(b, cr ? "\r" : "\n", 1, err);
		if (!rc && !(rc = nx_budget_add(mine, p, k, err)))
			rc = nx_budget_add(mine, "\n", 1, err);
		n++;
		p = nl ? nl + 1 : end;
	}
	if (!rc)
		rc = vocab_txt_stream(vs, mine, n, err);
	nx_budget_buf_free(mine);
	return rc;
}

/* One text file of the bundle, read whole (allowlist caps what is text). */
static int text_file(struct tally *t, const char *path, nx_budget_buf *tok, uint64_t *tok_cost)
{
	struct vfy_ctx *c = t->c;
	nx_budget_buf *b = NULL;
	char *buf = NULL;
	size_t len = 0;
	json_t *root = NULL;
	/* the vocabulary files share one residual; tokenizer_config.json is plain text */
	bool failed = false, shared = !strcmp(path, NX_BUNDLE_TOKENIZER_JSON) ||
				      !strcmp(path, NX_BUNDLE_VOCAB);
	uint64_t before = t->total;
	nx_error e;
	int rc;

	nx_error_clear(&e);
	rc = nx_fs_read_all(&buf, &len, c->dirfd, path, NX_VERIFY_TEXT_MAX, &e);
	if (rc) {
		rc = rc == NX_ENOMEM ? rc :
		     nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_UNREADABLE, path, 0, "%s", e.message);
		goto out;
	}
	if (!shared && (rc = nx_budget_buf_new(&b, t->err)))
		goto out;
	if (shared && !t->vpath)
		t->vpath = path;
	if (!strcmp(path, TOKENIZER_DIR "vocab.txt"))
		rc = vocab_txt(tok, &t->vs, buf, len, t->err);
	else if (!strcmp(path, TOKENIZER_DIR "tokenizer.json")) {
		rc = nx_vfy__tokjson_residual(c, path, buf, len, tok, &t->vs, &failed, t->err);
		if (!rc && !failed)
			rc = nx_vfy__json_layout(tok, buf, len, t->err);
	}
	else if (!strcmp(path, NX_BUNDLE_SELFTEST) && c->opts->functional &&
		 !nx_vfy__json_over_budget(buf, len) &&
		 (root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL)))
		rc = json_strings(b, root, 0, t->err);
	else
		rc = nx_budget_add(b, buf, len, t->err);
	if (!rc && !failed)
		rc = shared ? charge(t, path, tok, *tok_cost, tok_cost) : charge(t, path, b, 0, NULL);
	if (shared)
		t->tok_charged += t->total - before;
out:
	json_decref(root);
	nx_budget_buf_free(b);
	free(buf);
	return rc;
}

static int onnx_string(void *ctx, enum nx_onnx_str_kind kind, const char *s, size_t len,
		       uint64_t offset, const char *scope)
{
	nx_budget_buf *b = ctx;
	int rc;

	(void)kind;
	(void)offset;
	(void)scope;
	rc = nx_budget_add(b, s, len, NULL);
	return rc ? rc : nx_budget_add(b, "\n", 1, NULL);
}

static int budget_bytes(void *ctx, const unsigned char *buf, size_t len)
{
	return nx_budget_add(ctx, (const char *)buf, len, NULL);
}

/*
 * The contents of the model's attribute tensors (a Constant node's value):
 * they are not parameters (the size check explains 64 KiB of them without
 * a parameter count, and liveness replaces initializers only), so a dead
 * one carried 62 KiB past the signed build (red team 5).  Real exports
 * keep shapes and scalars there, which cost a few bytes.
 */
static int attribute_tensors(int fd, nx_budget_buf *b, nx_error *e)
{
	const nx_onnx_summary *s;
	nx_onnx_model *m = NULL;
	size_t i;
	int rc;

	/* the summary is read here, not shared: verify frees it while the
	 * code and budget checks may hold a JSON tree (docs/TRV.md "Cost"),
	 * and none is held between two files */
	if ((rc = nx_onnx_open(&m, fd, NX_MODEL_PATH, e)))
		return rc;
	s = nx_onnx_summary_get(m);
	for (i = 0; !rc && i < s->ntensors; i++)
		if (s->tensors[i].attribute && s->tensors[i].location == NX_TENSOR_INLINE)
			rc = nx_onnx_tensor_read(fd, NX_MODEL_PATH, &s->tensors[i], budget_bytes, b, e);
	nx_onnx_free(m);
	return rc;
}

/* The model's strings, attribute tensors and attribute numbers; a model
 * that does not walk is weights' onnx-invalid. */
static int model_strings(struct tally *t)
{
	nx_budget_buf *b = NULL;
	nx_error e;
	int fd = -1, rc;

	if ((rc = nx_budget_buf_new(&b, t->err)))
		return rc;
	nx_error_clear(&e);
	rc = nx_vfy__open_regular(&fd, NULL, t->c->dirfd, NX_MODEL_PATH, &e);
	if (!rc)
		rc = nx_onnx_visit_strings(fd, NX_MODEL_PATH, onnx_string, b, &e);
	if (!rc)
		rc = attribute_tensors(fd, b, &e);
	/* list attributes (a Constant's value_floats, any node's ints) are
	 * tensor data no parameter count explains: charged like the tensors */
	if (!rc)
		rc = nx_onnx_attr_numbers(fd, NX_MODEL_PATH, budget_bytes, b, &e);
	if (rc != NX_ENOMEM)
		rc = rc ? 0 : charge(t, NX_MODEL_PATH, b, 0, NULL);
	if (fd >= 0)
		close(fd);
	nx_budget_buf_free(b);
	return rc;
}

static int add_line(nx_budget_buf *b, const char *s, nx_error *err)
{
	int rc = nx_budget_add(b, s, strlen(s), err);

	return rc ? rc : nx_budget_add(b, "\n", 1, err);
}

static int add_lines(nx_budget_buf *b, char *const *v, size_t n, nx_error *err)
{
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < n; i++)
		rc = add_line(b, v[i], err);
	return rc;
}

/* A 1.1 manifest's policy and runtime strings: free text (the allow list's
 * reasons, the lists, the versions) is a channel like any other. */
static int policy_strings(nx_budget_buf *b, const nx_manifest *m, nx_error *err)
{
	const nx_manifest_policy *p = m->policy;
	size_t i;
	int rc = 0;

	if (m->runtime)
		rc = add_line(b, m->runtime->version, err);
	if (!p || rc)
		return rc;
	if ((rc = add_line(b, p->nexus_version, err)) ||
	    (rc = add_lines(b, p->forbidden_terms, p->nforbidden_terms, err)) ||
	    (rc = add_lines(b, p->forbidden_imports, p->nforbidden_imports, err)) ||
	    (rc = add_lines(b, p->python_packages, p->npython_packages, err)))
		return rc;
	for (i = 0; !rc && i < p->nallow_shared; i++)
		if (!(rc = add_line(b, p->allow_shared[i].name, err)))
			rc = add_line(b, p->allow_shared[i].reason, err);
	/* 64 hex digits the build wrote from the reference's bytes - or, in an
	 * unsigned manifest, the insider's: 32 bytes charged like any string
	 * (review; ~40 bytes after zstd) */
	if (!rc && p->vocab_reference_sha256)
		rc = add_line(b, p->vocab_reference_sha256, err);
	return rc;
}

/* The manifest's own strings (not its digests and sizes, which the files
 * explain, nor the signature, which the key explains). */
static int manifest_strings(struct tally *t)
{
	const nx_manifest *m = t->c->m;
	const char *s[] = {m->schema_version, m->bundle_id, m->build_timestamp, m->architecture,
			   m->parameters, m->format, m->quantization};
	nx_budget_buf *b = NULL;
	size_t i;
	int rc;

	if ((rc = nx_budget_buf_new(&b, t->err)))
		return rc;
	for (i = 0; !rc && i < sizeof(s) / sizeof(*s); i++)
		rc = add_line(b, s[i], t->err);
	for (i = 0; !rc && i < m->nfiles; i++)
		rc = add_line(b, m->files[i].path, t->err);
	if (!rc && m->platform &&
	    !(rc = add_line(b, m->platform->os, t->err)) && !(rc = add_line(b, m->platform->arch, t->err)))
		rc = add_line(b, m->platform->min_glibc, t->err);
	if (!rc)
		rc = policy_strings(b, m, t->err);
	if (!rc)
		rc = charge(t, NX_MANIFEST_NAME, b, 0, NULL);
	nx_budget_buf_free(b);
	return rc;
}

static bool charged_text(const char *p)
{
	if (!strcmp(p, "README.md") || !strcmp(p, "LICENSE") || !strncmp(p, TOKENIZER_DIR, 16))
		return true;
	if (!strncmp(p, "src/", 4) && ends_with(p, ".py"))
		return true;
	return !strncmp(p, "config/", 7) &&
	       (ends_with(p, ".yaml") || ends_with(p, ".yml") || ends_with(p, ".json"));
}

/*
 * --vocab-reference: the stream of a tokenizer.json (walked as the
 * bundle's is, its findings dropped) or a vocab.txt, built as the
 * student's is, so the student's stream equals it when the vocabulary is
 * the same.  An unreadable file is an error (exit 2), not a verdict.
 */
static int reference_stream(struct tally *t, const char *file)
{
	struct vfy_ctx scratch = *t->c;
	struct vfy_vocab_stream vs = {0};
	nx_budget_buf *res = NULL;
	char *buf = NULL;
	size_t len = 0, i = 0;
	struct stat st;
	bool failed;
	int rc;

	/* the user's file, not the bundle: a configuration error (exit 2) */
	if ((rc = nx_vfy__read_path(&buf, &len, &st, file, NX_VERIFY_TEXT_MAX, t->err))) {
		if (rc != NX_ENOMEM && t->err)
			t->err->code = NX_ECONFIG;
		return rc == NX_ENOMEM ? rc : NX_ECONFIG;
	}
	scratch.r = NULL;
	if ((rc = nx_budget_buf_new(&res, t->err)) || (rc = nx_budget_buf_new(&vs.b, t->err)))
		goto out;
	while (i < len && strchr(" \t\r\n", buf[i]))
		i++;
	if (i < len && buf[i] == '{') {
		if ((rc = nx_report_new(&scratch.r, file, t->err)) == 0)
			rc = nx_vfy__tokjson_residual(&scratch, file, buf, len, res, &vs, &failed,
						      t->err);
	} else {
		rc = vocab_txt(res, &vs, buf, len, t->err);
	}
	if (!rc && !vs.n)
		rc = nx_error_set(t->err, NX_ECONFIG, file, 0, -1, "--vocab-reference %s holds no "
				  "vocabulary: give a tokenizer.json (model.vocab) or a vocab.txt "
				  "(one token a line)", file);
	if (!rc) {
		unsigned char d[NX_SHA256_LEN];

		if ((rc = nx_sha256_buf(d, buf, len)))
			goto out;
		nx_hex(t->ref_sha, d);
		t->ref = vs.b;
		t->ref_n = vs.n;
		vs.b = NULL;
	}
out:
	nx_report_free(scratch.r);
	nx_budget_buf_free(vs.b);
	nx_budget_buf_free(res);
	free(buf);
	return rc;
}

/* Tokens past the input embedding's rows cannot be embedded: padding, with
 * no allowance; more than NX_BUDGET_VOCAB_DEAD_MAX of them FAIL. */
static int dead_tokens(struct tally *t, uint64_t n, uint64_t *live)
{
	const struct vfy_ctx *c = t->c;
	uint64_t rows = c->embed_rows > 0 ? (uint64_t)c->embed_rows : 0;

	*live = n;
	if (c->embed_rows < 0)
		return nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_VOCAB_EMBEDDING_UNKNOWN, t->vpath, 0,
				     "the rows of the model's input embedding are not known (%s): "
				     "tokens past it could not be told from live ones, so all %llu "
				     "bring their allowance", c->embed_why ? c->embed_why : "?",
				     (unsigned long long)n);
	if (n <= rows)
		return 0;
	*live = rows;
	if (n - rows <= NX_BUDGET_VOCAB_DEAD_MAX)
		return 0;
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_VOCAB_BEYOND_EMBEDDING, t->vpath, 0,
			     "the vocabulary holds %llu tokens but the model's input embedding "
			     "has %llu rows: %llu token ids cannot be embedded (padding, which "
			     "can carry data; at most %u, special tokens, are let pass); "
			     "export the tokenizer the model was trained with",
			     (unsigned long long)n, (unsigned long long)rows,
			     (unsigned long long)(n - rows), NX_BUDGET_VOCAB_DEAD_MAX);
}

/*
 * Tier 2, the vocabulary bound: the stream's code length L (a lossless
 * code, so at most 2^(8x+8) vocabularies have L <= x bytes) less the
 * allowance of NX_BUDGET_VOCAB_TOKEN_BYTES a token is charged.  Past
 * NX_BUDGET_VOCAB_TIER1_FREE tokens, tier 1's charge of the tokenizer
 * files is lowered by NX_BUDGET_VOCAB_TIER1_BYTES a token: tier 1 is the
 * tripwire, tier 2 the bound (docs/TRV.md, "Leak budget").  Never below
 * the cost of their residual less the tokens' charges (t->rest): the
 * stream gives the tokens back, not the rest (layout, settings, ids), so
 * the bound stays 64 KiB + NX_BUDGET_VOCAB_TOKEN_BYTES x N.
 */
static int vocab_bound(struct tally *t)
{
	uint64_t n = t->vs.n, live, len, allow, charged, past, relief, rest = 0;
	const nx_manifest_policy *p = t->c->m ? t->c->m->policy : NULL;
	const char *recorded = p ? p->vocab_reference_sha256 : NULL;
	char refmsg[320] = "";
	int rc;

	if (!n)
		return 0;
	if ((rc = dead_tokens(t, n, &live)))
		return rc;
	/* with a reference the verifier fixed, no allowance: the stream is
	 * coded given it, and tier 1's charge of the tokens is all returned
	 * (the conditional code bounds them; the rest is still charged) */
	allow = t->ref ? 0 : (uint64_t)NX_BUDGET_VOCAB_TOKEN_BYTES * live;
	past = live > NX_BUDGET_VOCAB_TIER1_FREE ? live - NX_BUDGET_VOCAB_TIER1_FREE : 0;
	relief = t->ref ? UINT64_MAX : past * NX_BUDGET_VOCAB_TIER1_BYTES;
	if ((rc = nx_budget_stream_cost_dict(&len, t->vs.b, t->ref, t->err)))
		return rc;
	if (relief && (rc = nx_budget_cost(&rest, t->rest, t->err)))
		return rc;
	charged = len > allow ? len - allow : 0;
	rest = rest < t->tok_charged ? rest : t->tok_charged;
	if (relief > t->tok_charged - rest)
		relief = t->tok_charged - rest;
	if (t->ref)
		snprintf(refmsg, sizeof(refmsg), " given --vocab-reference %.120s (%llu tokens, "
			 "stream %llu bytes, SHA-256 %.16s..., %s)", t->c->opts->vocab_reference,
			 (unsigned long long)t->ref_n,
			 (unsigned long long)nx_budget_residual(t->ref), t->ref_sha,
			 !recorded ? "the build recorded none" :
			 !strcmp(recorded, t->ref_sha) ? "the one the build recorded" :
			 "not the one the build recorded");
	t->total = t->total - relief + charged;
	if (t->c->opts->max_vocab_tokens && n > t->c->opts->max_vocab_tokens &&
	    (rc = nx_report_add(t->c->r, CHECK, NX_SEV_FAIL, NX_F_BUDGET_EXCEEDED, t->vpath, 0,
				"the vocabulary holds %llu tokens, over --max-vocab-tokens %llu: "
				"each token brings %u bytes of leak allowance",
				(unsigned long long)n,
				(unsigned long long)t->c->opts->max_vocab_tokens,
				NX_BUDGET_VOCAB_TOKEN_BYTES)))
		return rc;
	return nx_report_add(t->c->r, CHECK, NX_SEV_INFO, NX_F_BUDGET_USED, t->vpath, 0,
			     "the vocabularies hold %llu tokens, %llu bytes compressed (the "
			     "tokens whole, in id order%s): allowance %u x %llu = %llu bytes, "
			     "charged %llu; tier 1 allows %s: %llu "
			     "bytes of the tokenizer files' charge returned",
			     (unsigned long long)n, (unsigned long long)len, refmsg,
			     t->ref ? 0 : NX_BUDGET_VOCAB_TOKEN_BYTES, (unsigned long long)live,
			     (unsigned long long)allow, (unsigned long long)charged,
			     t->ref ? "its tokens' charge given a reference" :
			     "3 bytes a token past 32000 tokens", (unsigned long long)relief);
}

int nx_vfy__budget(struct vfy_ctx *c, nx_error *err)
{
	struct tally t = {.c = c, .err = err};
	uint64_t limit = c->pol.max_leak_bytes;   /* the policy's, tightened by options */
	nx_budget_buf *tok = NULL;
	uint64_t tok_cost = 0;
	size_t i;
	int rc;

	if ((rc = nx_budget_buf_new(&tok, err)))
		return rc;
	if ((rc = nx_budget_buf_new(&t.vs.b, err)) || (rc = nx_budget_buf_new(&t.rest, err))) {
		nx_budget_buf_free(t.vs.b);
		nx_budget_buf_free(tok);
		return rc;
	}
	nx_budget_set_mirror(tok, t.rest);
	if (c->opts->vocab_reference)
		rc = reference_stream(&t, c->opts->vocab_reference);
	/* entries are sorted: tokenizer.json comes before vocab.txt */
	for (i = 0; !rc && i < c->nentries; i++) {
		const struct nx_fs_entry *e = &c->entries[i];

		if (!S_ISREG(e->mode) || e->nlink != 1)
			continue;
		if (charged_text(e->path) ||
		    (!strcmp(e->path, NX_BUNDLE_NOTICES) && c->runtime_untrusted))
			rc = text_file(&t, e->path, tok, &tok_cost);
		else if (!strcmp(e->path, NX_MODEL_PATH))
			rc = model_strings(&t);
	}
	if (!rc)
		rc = vocab_bound(&t);
	if (!rc && c->m)
		rc = manifest_strings(&t);
	if (!rc)
		rc = nx_report_add(c->r, CHECK, t.total > limit ? NX_SEV_FAIL : NX_SEV_INFO,
				   t.total > limit ? NX_F_BUDGET_EXCEEDED : NX_F_BUDGET_TOTAL, NULL, 0,
				   "the bundle carries %llu bytes of information outside the model's "
				   "weights (leak budget %llu bytes)%s", (unsigned long long)t.total,
				   (unsigned long long)limit,
				   t.total > limit ? ": text, tokens or strings hold encoded data; "
				   "remove it (see budget-used for each file)" : "");
	nx_budget_buf_free(t.vs.b);
	nx_budget_buf_free(t.rest);
	nx_budget_buf_free(t.ref);
	nx_budget_buf_free(tok);
	return rc;
}
