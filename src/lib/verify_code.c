/*
 * verify_code.c - check `code` (TRV-2): Python sources, YAML and JSON
 * configuration and the tokenizer are scanned with real lexers/parsers for
 * the forbidden terms.  Terms in code, strings, keys or values FAIL; in
 * comments and docstrings they WARN; README.md and LICENSE are prose and
 * only WARN.  Tokenizer vocabularies are data: each entry is exempt from the
 * term scan, but an entry that is too long or holds control bytes is a
 * place to smuggle data and FAILs.
 */
#include "verify_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/config.h"
#include "nexus/scan.h"

#define CHECK NX_CHECK_CODE
#define JSON_DEPTH_MAX 64

struct scan_ctx {
	struct vfy_ctx *c;
	const char *path;
	bool docs;     /* README/LICENSE: WARN only */
};

static const char *where_code(enum nx_term_where w, enum nx_severity *sev)
{
	*sev = NX_SEV_FAIL;
	switch (w) {
	case NX_TERM_CODE: return "term-in-code";
	case NX_TERM_STRING: return "term-in-string";
	case NX_TERM_KEY: return "term-in-key";
	case NX_TERM_VALUE: return "term-in-value";
	case NX_TERM_DYNAMIC_IMPORT: return "dynamic-import";
	case NX_TERM_COMMENT:
		*sev = NX_SEV_WARN;
		return "term-in-comment";
	default:
		*sev = NX_SEV_WARN;
		return "term-in-docstring";
	}
}

static int on_term(void *arg, const char *term, enum nx_term_where where, long line, long col,
		   const char *excerpt)
{
	struct scan_ctx *s = arg;
	enum nx_severity sev;
	const char *code = where_code(where, &sev);

	if (s->docs) {
		sev = NX_SEV_WARN;
		code = "term-in-docs";
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

/* A vocabulary entry is data, but bounded, printable data. */
static int vocab_entry(struct vfy_ctx *c, const char *path, const char *s, size_t len, long line,
		       const char *where)
{
	size_t i;
	bool digit = false, alpha = false, coded = true;

	if (len > NX_VERIFY_VOCAB_ENTRY_MAX)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "vocab-entry-suspicious", path, line,
				     "%s: a vocabulary entry of %zu bytes (over %d) can carry "
				     "smuggled data", where, len, NX_VERIFY_VOCAB_ENTRY_MAX);
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20)
			return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "vocab-entry-suspicious", path,
					     line, "%s: a vocabulary entry holds control byte 0x%02x",
					     where, (unsigned char)s[i]);
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		digit |= ch >= '0' && ch <= '9';
		alpha |= (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
		coded &= (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
			 (ch >= 'A' && ch <= 'Z') || ch == '+' || ch == '/' || ch == '=';
	}
	if (len >= NX_VERIFY_VOCAB_CODED_MIN && digit && alpha && coded)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "vocab-entry-suspicious", path, line,
				     "%s: a vocabulary entry of %zu base64/hex characters is an "
				     "encoded blob, not a token", where, len);
	return 0;
}

static int json_str(struct vfy_ctx *c, const char *path, const char *ptr, const char *s,
		    size_t len, bool key)
{
	const char *t = vfy_term_in(c, s, len);

	if (!t)
		return 0;
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, key ? "term-in-key" : "term-in-value", path, 0,
			     "forbidden term '%s' in a JSON %s at %s", t, key ? "key" : "value", ptr);
}

/* Walk a JSON value; vocab marks the entries of model.vocab / model.merges. */
static int json_walk(struct vfy_ctx *c, const char *path, json_t *v, const char *ptr, int depth,
		     bool vocab)
{
	char sub[512];
	int rc = 0;

	if (depth > JSON_DEPTH_MAX)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "config-unparsable", path, 0,
				     "JSON nested deeper than %d at %s", JSON_DEPTH_MAX, ptr);
	if (json_is_string(v))
		return vocab ? vocab_entry(c, path, json_string_value(v), json_string_length(v), 0, ptr) :
			       json_str(c, path, ptr, json_string_value(v), json_string_length(v), false);
	if (json_is_object(v)) {
		const char *k;
		json_t *x;

		json_object_foreach(v, k, x) {
			bool sub_vocab = vocab || (depth == 1 && !strcmp(ptr, "/model") &&
						   (!strcmp(k, "vocab") || !strcmp(k, "merges")));

			snprintf(sub, sizeof(sub), "%s/%s", ptr, k);
			rc = vocab ? vocab_entry(c, path, k, strlen(k), 0, sub) :
				     json_str(c, path, sub, k, strlen(k), true);
			if (!rc)
				rc = json_walk(c, path, x, sub, depth + 1, sub_vocab);
			if (rc)
				return rc;
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *x;

		json_array_foreach(v, i, x) {
			snprintf(sub, sizeof(sub), "%s/%zu", ptr, i);
			if ((rc = json_walk(c, path, x, sub, depth + 1, vocab)))
				return rc;
		}
	}
	return rc;
}

static int scan_json(struct vfy_ctx *c, const char *path, const char *buf, size_t len)
{
	json_error_t je;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	int rc;

	if (!root)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, "config-unparsable", path, je.line,
				     "%s is not valid JSON (duplicate keys are rejected): %s", path,
				     je.text);
	rc = json_walk(c, path, root, "", 0, false);
	json_decref(root);
	return rc;
}

static int scan_vocab_txt(struct vfy_ctx *c, const char *path, const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;
	long line = 1;
	int rc = 0;

	while (!rc && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *next = nl ? nl + 1 : end;

		if (n && p[n - 1] == '\r')
			n--;
		rc = vocab_entry(c, path, p, n, line, "vocab.txt");
		p = next;
		line++;
	}
	return rc;
}

static int scan_file(struct vfy_ctx *c, const char *path)
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
		       nx_report_add(c->r, CHECK, NX_SEV_FAIL, "unreadable", path, 0, "%s", e.message);
	if (ends_with(path, ".py"))
		rc = nx_scan_python(buf, len, terms, c->nterms, on_term, &s, path, &e);
	else if (ends_with(path, ".yaml") || ends_with(path, ".yml"))
		rc = nx_scan_yaml(buf, len, terms, c->nterms, on_term, &s, path, &e);
	else if (!strcmp(path, "model/tokenizer/vocab.txt"))
		rc = scan_vocab_txt(c, path, buf, len);
	else if (!strcmp(path, "config/selftest.json")) {
		rc = vfy_selftest_json(c, buf, len);
		if (!rc)
			rc = scan_json(c, path, buf, len);
	}
	else if (ends_with(path, ".json"))
		rc = scan_json(c, path, buf, len);
	else {
		s.docs = true;
		rc = nx_scan_text(buf, len, terms, c->nterms, on_term, &s, path, &e);
	}
	if (rc && rc != NX_ENOMEM && e.code != NX_OK)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, "code-unparsable", path, e.line,
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
	return !strcmp(p, "model/tokenizer/tokenizer.json") ||
	       !strcmp(p, "model/tokenizer/vocab.txt") || !strcmp(p, "README.md") ||
	       !strcmp(p, "LICENSE");
}

/*
 * runtime.yaml python_packages are what the sandboxed import check lets
 * resolve outside the bundle.  A package that exists only to train
 * (optimizers, trainers, distributed training) has no place in serving:
 * FAIL.  A framework that also trains (torch, tensorflow, ...) lets every
 * training module of it pass the import check: WARN, so the declaration is
 * a visible decision, not a silent hole.  Submodules count as their parent.
 */
static const char *const training_only[] = { "torch.optim", "torch.autograd",
	"torch.distributed", "torch.utils.data", "transformers.trainer", "transformers.training_args",
	"deepspeed", "accelerate", "peft", "trl", "pytorch_lightning", "lightning", "optax",
	"tensorflow.keras.optimizers", "keras.optimizers", "horovod", "apex", "bitsandbytes", NULL };
static const char *const training_frameworks[] = { "torch", "tensorflow", "jax", "flax",
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

static int check_packages(struct vfy_ctx *c)
{
	nx_runtime_config *rcfg = NULL;
	size_t i;
	int rc = 0;
	long k = vfy_find(c, "config/runtime.yaml");

	if (k < 0 || !S_ISREG(c->entries[k].mode) || c->entries[k].nlink != 1 ||
	    nx_runtime_config_load(&rcfg, c->dirfd, "config/runtime.yaml", NULL) != 0)
		return 0;   /* absent or invalid: reported by allowlist / functional */
	for (i = 0; !rc && i < rcfg->npython_packages; i++) {
		const char *p = rcfg->python_packages[i];

		if (module_under(p, training_only))
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, "training-package-declared",
					   "config/runtime.yaml", 0,
					   "python_packages declares %s, a training library: the "
					   "import check would let training code run; remove it", p);
		else if (module_under(p, training_frameworks))
			rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, "training-package-declared",
					   "config/runtime.yaml", 0,
					   "python_packages declares %s, a framework with training "
					   "modules: the import check accepts all of them; serve with "
					   "onnxruntime/numpy if you can", p);
	}
	nx_runtime_config_free(rcfg);
	return rc;
}

int vfy_code(struct vfy_ctx *c, nx_error *err)
{
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < c->nentries; i++)
		if (S_ISREG(c->entries[i].mode) && c->entries[i].nlink == 1 &&
		    scanned(c->entries[i].path))
			rc = scan_file(c, c->entries[i].path);
	if (!rc)
		rc = check_packages(c);
	return rc;
}
