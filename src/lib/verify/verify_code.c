/*
 * verify_code.c - check `code` (TRV-2): Python sources, YAML and JSON
 * configuration and the tokenizer are scanned with real lexers/parsers for
 * the forbidden terms.  Terms in code, strings, keys or values FAIL; in
 * comments and docstrings they WARN; README.md and LICENSE are prose and
 * only WARN.  Tokenizer vocabularies are data: each entry is exempt from the
 * term scan, but an entry that is too long or holds control bytes is a
 * place to smuggle data and FAILs.  Python sources are also audited by
 * allow-list (nexus/pyaudit.h): every import resolves to the standard
 * library, the bundle's src/ or a declared serving package, and nothing is
 * imported, executed or looked up by a computed name.
 */
#include "verify_internal.h"
#include "nexus/bundle.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/config.h"
#include "nexus/magic.h"
#include "nexus/pyaudit.h"
#include "nexus/scan.h"

#define CHECK NX_CHECK_CODE
#define JSON_DEPTH_MAX 64
/*
 * Bytes the parsed tree of one JSON file may take.  jansson holds every
 * value as its own allocation: a file of 64 MiB can take gigabytes (`[{},
 * {}, ...]`: 230 bytes per 3 of input), so the tree is costed before it is
 * built and a file over this FAILs (json-over-budget) instead.  With the
 * file itself (NX_VERIFY_TEXT_MAX) it keeps verify under its 256 MiB.  A
 * tokenizer.json of 250,000 tokens and 250,000 merges costs about 90 MiB.
 */
#define JSON_TREE_MAX (128u << 20)
/* What jansson 2.14 allocates on glibc, measured (rounded up), per value. */
#define JSON_COST_SCALAR 48      /* number, true, false, null */
#define JSON_COST_STRING 96      /* string or key, plus its length */
#define JSON_COST_ARRAY 144
#define JSON_COST_OBJECT 256

struct scan_ctx {
	struct vfy_ctx *c;
	const char *path;
	bool docs;     /* README/LICENSE: WARN only */
};

static enum nx_finding_code where_code(enum nx_term_where w, enum nx_severity *sev)
{
	*sev = NX_SEV_FAIL;
	switch (w) {
	case NX_TERM_CODE: return NX_F_TERM_IN_CODE;
	case NX_TERM_STRING: return NX_F_TERM_IN_STRING;
	case NX_TERM_KEY: return NX_F_TERM_IN_KEY;
	case NX_TERM_VALUE: return NX_F_TERM_IN_VALUE;
	case NX_TERM_DYNAMIC_IMPORT: return NX_F_DYNAMIC_IMPORT;
	case NX_TERM_COMMENT:
		*sev = NX_SEV_WARN;
		return NX_F_TERM_IN_COMMENT;
	default:
		*sev = NX_SEV_WARN;
		return NX_F_TERM_IN_DOCSTRING;
	}
}

static int on_term(void *arg, const char *term, enum nx_term_where where, long line, long col,
		   const char *excerpt)
{
	struct scan_ctx *s = arg;
	enum nx_severity sev;
	enum nx_finding_code code = where_code(where, &sev);

	if (s->docs) {
		sev = NX_SEV_WARN;
		code = NX_F_TERM_IN_DOCS;
	}
	if (where == NX_TERM_DYNAMIC_IMPORT && !s->docs)
		return nx_report_add(s->c->r, CHECK, sev, code, s->path, line,
				     "dynamic import (%s) at column %ld: imports must be static so "
				     "the filter and this check can see them: %s", term ? term : "?",
				     col, excerpt ? excerpt : "");
	return nx_report_add(s->c->r, CHECK, sev, code, s->path, line,
			     "forbidden term '%s' in %s at column %ld: %s", term ? term : "?",
			     nx_term_where_name(where), col, excerpt ? excerpt : "");
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcmp(s + a - b, suffix);
}

static int json_str(struct vfy_ctx *c, const char *path, const char *ptr, const char *s,
		    size_t len, bool key)
{
	const char *t = nx_vfy__term_in(c, s, len);

	if (!t)
		return 0;
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, key ? NX_F_TERM_IN_KEY : NX_F_TERM_IN_VALUE, path, 0,
			     "forbidden term '%s' in a JSON %s at %s", t, key ? "key" : "value", ptr);
}

/* One JSON file being walked. */
struct json_scan {
	struct vfy_ctx *c;
	const char *path;
	bool count;              /* numbers outside the vocabulary are literal data */
	uint64_t literal;        /* their payload so far */
	struct vfy_vocab vocab;
};

/* A number outside a vocabulary's ids: data, as in any other text file. */
static int json_number(struct json_scan *js, json_t *v, const char *ptr)
{
	char num[64];
	int n = json_is_integer(v) ? snprintf(num, sizeof(num), "%lld",
					      (long long)json_integer_value(v)) :
		snprintf(num, sizeof(num), "%.9g", json_real_value(v));

	if (!js->count || js->literal > NX_MAGIC_DATA_MAX)
		return 0;
	js->literal += nx_magic_number_payload((size_t)n);
	if (js->literal <= NX_MAGIC_DATA_MAX)
		return 0;
	return nx_report_add(js->c->r, CHECK, NX_SEV_FAIL, NX_F_LITERAL_BLOB, js->path, 0,
			     "%s carries over %d bytes of data as numbers by %s: only the "
			     "vocabulary's ids are exempt, and they are not this", js->path,
			     NX_MAGIC_DATA_MAX, ptr);
}

/*
 * Walk a JSON value; vocab marks the entries of model.vocab / model.merges,
 * ids the values of the model.vocab object (checked by nx_vfy__vocab_ids).
 */
static int json_walk(struct json_scan *js, json_t *v, const char *ptr, int depth, bool vocab,
		     bool ids)
{
	struct vfy_ctx *c = js->c;
	char sub[512];
	int rc = 0;

	if (depth > JSON_DEPTH_MAX)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_CONFIG_UNPARSABLE, js->path, 0,
				     "JSON nested deeper than %d at %s", JSON_DEPTH_MAX, ptr);
	if (json_is_string(v))
		return vocab ? nx_vfy__vocab_entry(c, &js->vocab, js->path, json_string_value(v),
					       json_string_length(v), 0, ptr) :
			       json_str(c, js->path, ptr, json_string_value(v),
					json_string_length(v), false);
	/* model.vocab's ids, and a Unigram vocabulary's scores: the leak
	 * budget judges those (verify_tokjson.c: scores are parameters with a
	 * stated capacity, an id must be its token's position) */
	if (json_is_number(v))
		return ids || (vocab && !strncmp(ptr, "/model/vocab/", 13)) ? 0 :
		       json_number(js, v, ptr);
	if (json_is_object(v)) {
		const char *k;
		json_t *x;
		bool vocab_obj = depth == 2 && !strcmp(ptr, "/model/vocab");

		json_object_foreach(v, k, x) {
			bool sub_vocab = vocab || (depth == 1 && !strcmp(ptr, "/model") &&
						   (!strcmp(k, "vocab") || !strcmp(k, "merges")));

			snprintf(sub, sizeof(sub), "%s/%s", ptr, k);
			rc = vocab ? nx_vfy__vocab_entry(c, &js->vocab, js->path, k, strlen(k), 0, sub) :
				     json_str(c, js->path, sub, k, strlen(k), true);
			if (!rc)
				rc = json_walk(js, x, sub, depth + 1, sub_vocab, vocab_obj);
			if (rc)
				return rc;
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *x;

		json_array_foreach(v, i, x) {
			snprintf(sub, sizeof(sub), "%s/%zu", ptr, i);
			if ((rc = json_walk(js, x, sub, depth + 1, vocab, false)))
				return rc;
		}
	}
	return rc;
}

/* The bytes jansson would take to hold buf[0..n) as a tree, estimated in
 * one pass without building it.  Malformed input is costed all the same:
 * the parser that follows reports it. */
static uint64_t json_tree_cost(const char *b, size_t n)
{
	uint64_t cost = 0;
	bool in_scalar = false;
	size_t i, start;

	for (i = 0; i < n; i++) {
		char ch = b[i];

		if (ch == '"') {
			for (start = i++; i < n && b[i] != '"'; i++)
				i += b[i] == '\\';
			cost += JSON_COST_STRING + (i - start);
			in_scalar = false;
		} else if (ch == '[' || ch == '{') {
			cost += ch == '[' ? JSON_COST_ARRAY : JSON_COST_OBJECT;
			in_scalar = false;
		} else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == ',' ||
			   ch == ':' || ch == ']' || ch == '}') {
			in_scalar = false;
		} else if (!in_scalar) {
			cost += JSON_COST_SCALAR;
			in_scalar = true;
		}
	}
	return cost;
}

bool nx_vfy__json_over_budget(const char *buf, size_t len)
{
	return json_tree_cost(buf, len) > JSON_TREE_MAX;
}

/* A JSON file; count: its numbers are literal data (all but selftest.json,
 * whose golden numbers are TRV-5's to prove). */
static int scan_json(struct vfy_ctx *c, const char *path, const char *buf, size_t len, bool count)
{
	struct json_scan js = {.c = c, .path = path, .count = count};
	json_error_t je;
	json_t *root;
	uint64_t cost = json_tree_cost(buf, len);
	int rc;

	if (cost > JSON_TREE_MAX)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_JSON_OVER_BUDGET, path, 0,
				     "%s would take about %llu MiB of memory to check (its values "
				     "are many and small), over the %u MiB budget: a tokenizer or "
				     "configuration is not this shape; regenerate it", path,
				     (unsigned long long)(cost >> 20), JSON_TREE_MAX >> 20);
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_CONFIG_UNPARSABLE, path, je.line,
				     "%s is not valid JSON (duplicate keys are rejected): %s", path,
				     je.text);
	js.vocab.tokens = nx_vfy__vocab_count(root);
	rc = json_walk(&js, root, "", 0, false, false);
	if (!rc)
		rc = nx_vfy__vocab_ids(c, path, root);
	json_decref(root);
	return rc;
}

static int on_audit(void *arg, enum nx_finding_code code, long line, long col, const char *message)
{
	struct scan_ctx *s = arg;

	return nx_report_add(s->c->r, CHECK, NX_SEV_FAIL, code, s->path, line, "%s (column %ld)",
			     message, col);
}

static int scan_file(struct vfy_ctx *c, const char *path, const struct nx_pyaudit_opts *po)
{
	struct scan_ctx s = {.c = c, .path = path};
	const char *const *terms = c->terms;
	char *buf = NULL;
	size_t len = 0;
	nx_error e;
	int rc;

	nx_error_clear(&e);
	rc = nx_fs_read_all(&buf, &len, c->dirfd, path, NX_VERIFY_TEXT_MAX, &e);
	if (rc)
		return rc == NX_ENOMEM ? rc :
		       nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_UNREADABLE, path, 0, "%s", e.message);
	if (ends_with(path, ".py")) {
		rc = nx_scan_python(buf, len, terms, c->nterms, on_term, &s, path, &e);
		if (!rc)
			rc = nx_pyaudit_run(buf, len, po, on_audit, &s, path, &e);
		if (!rc)
			rc = nx_vfy__policy_imports(c, path, buf, len);
	}
	else if (ends_with(path, ".yaml") || ends_with(path, ".yml"))
		rc = nx_scan_yaml(buf, len, terms, c->nterms, on_term, &s, path, &e);
	else if (!strcmp(path, NX_BUNDLE_VOCAB))
		rc = nx_vfy__vocab_txt(c, path, buf, len);
	else if (!strcmp(path, NX_BUNDLE_SELFTEST)) {
		/* scan_json reports a tree over budget; never parse it here */
		rc = nx_vfy__json_over_budget(buf, len) ? 0 : nx_vfy__selftest_json(c, buf, len);
		if (!rc)
			rc = scan_json(c, path, buf, len, false);
	}
	else if (ends_with(path, ".json"))
		rc = scan_json(c, path, buf, len, true);
	else {
		s.docs = true;
		rc = nx_scan_text(buf, len, terms, c->nterms, on_term, &s, path, &e);
	}
	if (rc && rc != NX_ENOMEM && e.code != NX_OK)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_CODE_UNPARSABLE, path, e.line,
				   "%s cannot be scanned, so it cannot be shown clean: %s", path,
				   e.message);
	free(buf);
	return rc;
}

static bool scanned(const char *p)
{
	if (!strncmp(p, "src/", 4) && ends_with(p, ".py"))
		return true;
	if (!strncmp(p, "config/", 7) &&
	    (ends_with(p, ".yaml") || ends_with(p, ".yml") || ends_with(p, ".json")))
		return true;
	return !strcmp(p, NX_BUNDLE_TOKENIZER_JSON) ||
	       !strcmp(p, NX_BUNDLE_VOCAB) || !strcmp(p, "README.md") ||
	       !strcmp(p, "LICENSE");
}

/*
 * runtime.yaml python_packages are what the import audit and the sandboxed
 * import check let resolve outside the bundle.  A package that exists only
 * to train (nx_pyaudit_training: optimizers, trainers, distributed training)
 * has no place in serving: FAIL.  A framework that also trains (torch,
 * tensorflow, ...) has training modules beyond the audit's list: WARN, so
 * the declaration is a visible decision, not a silent hole.
 */
static const char *const training_frameworks[] = { "torch", "functorch", "tensorflow", "jax", "flax",
	"keras", "transformers", "paddle", "mxnet", "sklearn", "xgboost", "lightgbm", NULL };

static bool module_under(const char *mod, const char *const *list)
{
	size_t k, n;

	for (k = 0; list[k]; k++) {
		n = strlen(list[k]);
		if (!strncmp(mod, list[k], n) && (mod[n] == '\0' || mod[n] == '.'))
			return true;
	}
	return false;
}

static bool listed(const char *s, char *const *list, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(s, list[i]))
			return true;
	return false;
}

static int check_packages(struct vfy_ctx *c, const nx_runtime_config *rcfg)
{
	const char *why;
	size_t i;
	int rc = 0;

	for (i = 0; !rc && rcfg && i < rcfg->npython_packages; i++) {
		const char *p = rcfg->python_packages[i];

		if (c->m && c->m->policy && !listed(p, c->m->policy->python_packages,
						   c->m->policy->npython_packages))
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_POLICY_MISMATCH,
					   NX_BUNDLE_RUNTIME_CONFIG, 0,
					   "python_packages declares %s, which the manifest's policy does "
					   "not record; rebuild with nexus build", p);
		else if ((why = nx_pyaudit_training(p)))
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TRAINING_PACKAGE_DECLARED,
					   NX_BUNDLE_RUNTIME_CONFIG, 0,
					   "python_packages declares %s, a training library (%s): the "
					   "import check would let training code run; remove it", p,
					   why);
		else if (module_under(p, training_frameworks))
			rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_TRAINING_PACKAGE_DECLARED,
					   NX_BUNDLE_RUNTIME_CONFIG, 0,
					   "python_packages declares %s, a framework with training "
					   "modules: the import audit refuses those it lists, not every "
					   "one; serve with onnxruntime/numpy if you can", p);
	}
	return rc;
}

/*
 * A 1.1 manifest's versions are values; the allow list's reasons are prose
 * a person wrote about the teacher ("equal to the teacher's embedding"),
 * so, like README.md, only WARN.  The policy's lists are not scanned: they
 * name what is forbidden (teacher_model), and the budget charges them.
 */
static int scan_manifest_policy(struct vfy_ctx *c, const nx_manifest *m)
{
	const nx_manifest_policy *p = m->policy;
	const char *v[2] = { m->runtime ? m->runtime->version : "", p ? p->nexus_version : "" };
	const char *t;
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < 2; i++)
		if ((t = nx_vfy__term_in(c, v[i], strlen(v[i]))))
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TERM_IN_VALUE, NX_MANIFEST_NAME,
					   0, "forbidden term '%s' in the manifest's %s", t,
					   i ? "policy.nexus_version" : "runtime.version");
	for (i = 0; !rc && p && i < p->nallow_shared; i++)
		if ((t = nx_vfy__term_in(c, p->allow_shared[i].reason, strlen(p->allow_shared[i].reason))))
			rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_TERM_IN_DOCS, NX_MANIFEST_NAME,
					   0, "forbidden term '%s' in the reason for allowing %s "
					   "(policy.allow_shared_tensors)", t, p->allow_shared[i].name);
	return rc;
}

/* The manifest's own strings are text like any other: a teacher's name as
 * `architecture` is a term in a value. */
static int scan_manifest(struct vfy_ctx *c)
{
	const nx_manifest *m = c->m;
	const struct { const char *key, *value; } f[] = {
		{"schema_version", m->schema_version}, {"bundle_id", m->bundle_id},
		{"build_timestamp", m->build_timestamp}, {"model_metadata.architecture", m->architecture},
		{"model_metadata.parameters", m->parameters}, {"model_metadata.format", m->format},
		{"model_metadata.quantization", m->quantization}, {"signature", m->signature},
	};
	const char *t;
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < sizeof(f) / sizeof(*f); i++)
		if ((t = nx_vfy__term_in(c, f[i].value, strlen(f[i].value))))
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TERM_IN_VALUE, NX_MANIFEST_NAME,
					   0, "forbidden term '%s' in the manifest's %s", t, f[i].key);
	for (i = 0; !rc && i < m->nfiles; i++)
		if ((t = nx_vfy__term_in(c, m->files[i].path, strlen(m->files[i].path))))
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_TERM_IN_VALUE, NX_MANIFEST_NAME,
					   0, "forbidden term '%s' in the manifest's path %s", t,
					   m->files[i].path);
	if (!rc)
		rc = scan_manifest_policy(c, m);
	return rc;
}

/* src/<stem>.py: the stem is a module of the bundle (borrowed from path). */
static const char *src_stem(const char *path, char *out, size_t cap)
{
	size_t n = strlen(path);

	if (strncmp(path, "src/", 4) || !ends_with(path, ".py") || strchr(path + 4, '/') ||
	    n - 7 >= cap || n < 8)
		return NULL;
	memcpy(out, path + 4, n - 7);
	out[n - 7] = '\0';
	return out;
}

/* What each src/<stem>.py binds by import, for the audit of the others. */
static int collect_exports(struct vfy_ctx *c, struct nx_pyaudit_opts *po, nx_error *err)
{
	struct nx_pyaudit_export *ex = NULL;
	size_t i, nex = 0;
	char stem[256];
	int rc = 0;

	for (i = 0; !rc && i < c->nentries; i++) {
		char *buf = NULL;
		size_t len = 0;

		if (!S_ISREG(c->entries[i].mode) || c->entries[i].nlink != 1 ||
		    !src_stem(c->entries[i].path, stem, sizeof(stem)) ||
		    nx_fs_read_all(&buf, &len, c->dirfd, c->entries[i].path, NX_VERIFY_TEXT_MAX,
				   NULL) != 0)
			continue;   /* unreadable: its scan reports it */
		rc = nx_pyaudit_exports(&ex, &nex, stem, buf, len, po, err);
		free(buf);
	}
	po->exports = ex;
	po->nexports = nex;
	return rc;
}

int nx_vfy__code(struct vfy_ctx *c, nx_error *err)
{
	struct nx_pyaudit_opts po = { 0 };
	nx_runtime_config *rcfg = NULL;
	char **stems = NULL, stem[256];
	size_t i, nstems = 0;
	long k = nx_vfy__find(c, NX_BUNDLE_RUNTIME_CONFIG);
	int rc = 0;

	if (k >= 0 && S_ISREG(c->entries[k].mode) && c->entries[k].nlink == 1 &&
	    nx_runtime_config_load(&rcfg, c->dirfd, NX_BUNDLE_RUNTIME_CONFIG, NULL) != 0)
		rcfg = NULL;   /* absent or invalid: reported by allowlist / functional */
	if (!(stems = calloc(c->nentries + 1, sizeof(*stems))))
		return nx_error_oom(err, NULL);
	for (i = 0; !rc && i < c->nentries; i++)
		if (S_ISREG(c->entries[i].mode) && src_stem(c->entries[i].path, stem, sizeof(stem)) &&
		    strcmp(stem, "__init__") && !(stems[nstems++] = strdup(stem)))
			rc = nx_error_oom(err, NULL);
	po.modules = (const char *const *)stems;
	po.nmodules = nstems;
	if (rcfg) {
		po.packages = (const char *const *)rcfg->python_packages;
		po.npackages = rcfg->npython_packages;
	}
	if (!rc)
		rc = collect_exports(c, &po, err);
	for (i = 0; !rc && i < c->nentries; i++)
		if (S_ISREG(c->entries[i].mode) && c->entries[i].nlink == 1 &&
		    scanned(c->entries[i].path))
			rc = scan_file(c, c->entries[i].path, &po);
	if (!rc)
		rc = check_packages(c, rcfg);
	if (!rc && c->m)
		rc = scan_manifest(c);
	for (i = 0; i < nstems; i++)
		free(stems[i]);
	free(stems);
	nx_pyaudit_exports_free((struct nx_pyaudit_export *)po.exports, po.nexports);
	nx_runtime_config_free(rcfg);
	return rc;
}
