/*
 * selftest.c - config/selftest.json, the bundle's golden inputs and outputs:
 *
 *   {"schema": "nexus.selftest.v1", "tolerance": 1e-4,
 *    "cases": [{"text": "...", "outputs": {"logits": [..]},
 *               "label": "spam", "embedding": [..]}]}
 *
 * `selftest` runs every case and compares each number of every golden
 * output (and the embedding) within the absolute tolerance, and the label
 * exactly.  `selftest --write` produces the file from texts; the build
 * writes it into the staging bundle before the manifest exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"

#define RT_SELFTEST_FILE_MAX (16u << 20)
#define RT_SELFTEST_CASES_MAX 64       /* as the verifier (verify_selftest.c) */
#define RT_SELFTEST_SCHEMA "nexus.selftest.v1"
#define RT_SELFTEST_TOLERANCE_MAX 1e-2  /* the verifier holds the same cap */
#define RT_SELFTEST_TEXT_MAX 4096       /* bytes of one text, as the verifier */

/* Run one text; *out is the result object (caller owns). */
static int run_one(json_t **out, struct rt_session *s, struct rt_bundle *b, const char *text,
		   size_t len, nx_error *err)
{
	int64_t *ids = calloc(b->set.max_len * 3, sizeof(*ids)), *types, *mask;
	size_t n = 0;
	int rc;

	if (!ids)
		return nx_error_oom(err, NULL);
	types = ids + b->set.max_len;
	mask = types + b->set.max_len;
	rc = nx_tokenizer_encode_pair(b->tok, text, len, NULL, 0, b->set.max_len, ids, types, mask,
				      NULL, &n, err);
	if (!rc)
		rc = rt_session_run(s, b, &ids, &types, &mask, &n, 1, out, err);
	free(ids);
	return rc;
}

/* Largest |a - b| over two arrays of numbers; INFINITY if they differ in shape. */
static double max_diff(json_t *golden, json_t *got)
{
	double d = 0;
	size_t i;

	if (!json_is_array(golden) || !json_is_array(got) ||
	    json_array_size(golden) != json_array_size(got))
		return INFINITY;
	for (i = 0; i < json_array_size(golden); i++) {
		json_t *a = json_array_get(golden, i), *c = json_array_get(got, i);
		double x;

		if (json_is_null(a) && json_is_null(c))
			continue;
		if (!json_is_number(a) || !json_is_number(c))
			return INFINITY;
		x = fabs(json_number_value(a) - json_number_value(c));
		if (!(x <= d))
			d = x;
	}
	return d;
}

int rt_selftest_load(json_t **out, struct rt_bundle *b, nx_error *err)
{
	json_error_t jerr;
	struct stat st;
	json_t *j;
	FILE *f;
	int fd;

	fd = openat(b->rootfd, RT_SELFTEST, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, RT_SELFTEST, "cannot open %s", RT_SELFTEST);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > RT_SELFTEST_FILE_MAX) {
		close(fd);
		return nx_error_set(err, NX_ELIMIT, RT_SELFTEST, 0, -1,
				    "%s is not a regular file of at most 16 MiB", RT_SELFTEST);
	}
	if (!(f = fdopen(fd, "rb"))) {
		close(fd);
		return nx_error_oom(err, NULL);
	}
	j = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);
	if (!j)
		return nx_error_set(err, NX_EFORMAT, RT_SELFTEST, jerr.line, -1,
				    "%s:%d: not valid JSON: %s", RT_SELFTEST, jerr.line, jerr.text);
	if (!json_is_object(j) || !json_is_string(json_object_get(j, "schema")) ||
	    strcmp(json_string_value(json_object_get(j, "schema")), RT_SELFTEST_SCHEMA) ||
	    !json_is_number(json_object_get(j, "tolerance")) ||
	    /* a loose tolerance would make any golden numbers "match" */
	    !(json_number_value(json_object_get(j, "tolerance")) >= 0) ||
	    json_number_value(json_object_get(j, "tolerance")) > RT_SELFTEST_TOLERANCE_MAX ||
	    !json_is_array(json_object_get(j, "cases")) ||
	    json_array_size(json_object_get(j, "cases")) > RT_SELFTEST_CASES_MAX) {
		json_decref(j);
		return nx_error_set(err, NX_EFORMAT, RT_SELFTEST, 0, -1,
				    "%s: expected {\"schema\": \"%s\", \"tolerance\": 0..0.01, "
				    "\"cases\": [...]} with at most %d cases", RT_SELFTEST,
				    RT_SELFTEST_SCHEMA, RT_SELFTEST_CASES_MAX);
	}
	*out = j;
	return 0;
}

/* A null among a case's golden numbers stands for a NaN or infinity that an
 * older runtime wrote: "the why" and " (output NAME index I)" in where. */
static const char *golden_nonfinite(json_t *c, char *where, size_t size)
{
	const char *name;
	json_t *v;
	size_t at;

	json_object_foreach(json_object_get(c, "outputs"), name, v)
		if (json_is_array(v) && rt_reals_nonfinite(v, &at))
			goto found;
	name = "embedding";
	v = json_object_get(c, "embedding");
	if (json_is_array(v) && rt_reals_nonfinite(v, &at))
		goto found;
	return NULL;
found:
	snprintf(where, size, " (output '%s' index %zu)", name, at);
	return "non-finite-output: a golden number is not finite";
}

/* A generation case: the greedy continuation must be the same ids. */
static int check_ids(struct rt_session *s, struct rt_bundle *b, json_t *c, size_t i, FILE *report,
		     size_t *failed, nx_error *err)
{
	json_t *text = json_object_get(c, "text"), *want = json_object_get(c, "ids"), *got = NULL;
	char *a = NULL, *g = NULL;
	int rc;

	if (!json_is_array(want)) {
		return nx_error_set(err, NX_EFORMAT, RT_SELFTEST, 0, -1,
				    "%s: case %zu: \"ids\" must be a list of ids", RT_SELFTEST, i);
	}
	rc = rt_gen_selftest_ids(&got, s, b, json_string_value(text), json_string_length(text), err);
	if (rc == NX_ECHECK) {  /* the model failed on the text: a failed case */
		(*failed)++;
		fprintf(report, "case %zu: FAIL: %s\n", i, err->message);
		return 0;
	}
	if (rc)
		return rc;
	if (json_equal(want, got)) {
		fprintf(report, "case %zu: ok (%zu generated ids identical)\n", i, json_array_size(got));
	} else {
		(*failed)++;
		a = json_dumps(want, JSON_COMPACT);
		g = json_dumps(got, JSON_COMPACT);
		fprintf(report, "case %zu: FAIL: generated ids differ: golden %.300s, got %.300s\n", i,
			a ? a : "?", g ? g : "?");
	}
	free(a);
	free(g);
	json_decref(got);
	return 0;
}

int rt_selftest_check(struct rt_session *s, struct rt_bundle *b, FILE *report, nx_error *err)
{
	json_t *golden = NULL, *cases, *c;
	size_t i, failed = 0, nonfinite = 0;
	char first[400] = "";
	double tol;
	int rc;

	if ((rc = rt_selftest_load(&golden, b, err)))
		return rc;
	tol = json_number_value(json_object_get(golden, "tolerance"));
	cases = json_object_get(golden, "cases");
	json_array_foreach(cases, i, c) {
		json_t *text = json_object_get(c, "text"), *res = NULL, *outs, *v, *want;
		const char *name, *why = NULL;
		char what[256] = "";
		double worst = 0, d;

		if (!json_is_string(text) || !json_is_object(json_object_get(c, "outputs"))) {
			rc = nx_error_set(err, NX_EFORMAT, RT_SELFTEST, 0, -1,
					  "%s: case %zu needs \"text\" and \"outputs\"", RT_SELFTEST, i);
			goto out;
		}
		if (json_object_get(c, "ids")) {
			if ((rc = check_ids(s, b, c, i, report, &failed, err)))
				goto out;
			continue;
		}
		if ((rc = run_one(&res, s, b, json_string_value(text), json_string_length(text), err)))
			goto out;
		if ((why = golden_nonfinite(c, what, sizeof(what))) ||
		    (json_object_get(res, "error") &&
		     (why = json_string_value(json_object_get(res, "error"))))) {
			if (!nonfinite++)
				snprintf(first, sizeof(first), "case %zu: %s%s", i, why, what);
			fprintf(report, "case %zu: FAIL: %s%s\n", i, why, what);
			json_decref(res);
			continue;
		}
		outs = json_object_get(res, "outputs");
		json_object_foreach(json_object_get(c, "outputs"), name, v) {
			d = max_diff(v, json_object_get(outs, name));
			if (!(d <= worst)) {
				worst = d;
				snprintf(what, sizeof(what), "output '%s'", name);
			}
		}
		if ((want = json_object_get(c, "embedding"))) {
			d = max_diff(want, json_object_get(res, "embedding"));
			if (!(d <= worst)) {
				worst = d;
				snprintf(what, sizeof(what), "embedding");
			}
		}
		want = json_object_get(c, "label");
		if (want && !json_equal(want, json_object_get(res, "label")))
			why = "label differs";
		if (!(worst <= tol))
			why = "outputs differ";
		if (why) {
			failed++;
			fprintf(report, "case %zu: FAIL: %s (max abs diff %.3g in %s, tolerance %.3g)\n",
				i, why, worst, what[0] ? what : "-", tol);
		} else {
			fprintf(report, "case %zu: ok (max abs diff %.3g)\n", i, worst);
		}
		json_decref(res);
	}
	/* verify names the finding by the code in this message */
	if (nonfinite)
		rc = nx_error_set(err, NX_ECHECK, RT_SELFTEST, 0, -1,
				  "selftest: %zu of %zu cases have a NaN or infinite output; %s",
				  nonfinite, json_array_size(cases), first);
	else if (failed)
		rc = nx_error_set(err, NX_ECHECK, RT_SELFTEST, 0, -1,
				  "selftest: %zu of %zu cases differ from %s", failed,
				  json_array_size(cases), RT_SELFTEST);
	else
		fprintf(report, "selftest: %zu cases passed\n", json_array_size(cases));
out:
	json_decref(golden);
	return rc;
}

/* Whether the model runs ids[0..n) with its last id moved to n - 1. */
static bool runs_at(struct rt_session *s, struct rt_bundle *b, int64_t *ids, size_t full,
		    size_t n, nx_error *why)
{
	int64_t last = ids[n - 1];
	json_t *res = NULL;
	bool ok;

	ids[n - 1] = ids[full - 1];
	ok = !rt_session_run(s, b, &ids, NULL, NULL, &n, 1, &res, why);
	ids[n - 1] = last;
	json_decref(res);
	return ok;
}

/*
 * The long case: "." once per token (the pre-tokenizer splits punctuation
 * into one token each, [UNK] where the vocabulary lacks it), so that the
 * text reaches max_sequence_length within the verifier's 4096 bytes.  When
 * the model rejects it, find the longest input it takes (halving; models
 * fail past their position table, not below it) and name both numbers:
 * the build then refuses a runtime.yaml that promises more than the model
 * holds, instead of a bundle that fails on the first long text.
 */
static int long_case(json_t **out, struct rt_session *s, struct rt_bundle *b, char **text,
		     nx_error *err)
{
	size_t want = b->set.max_len < RT_SELFTEST_TEXT_MAX ? b->set.max_len : RT_SELFTEST_TEXT_MAX;
	size_t n = 0, lo, hi, mid;
	int64_t *ids = NULL;
	nx_error why;
	int rc;

	if (!(*text = malloc(want + 1)) || !(ids = calloc(b->set.max_len, sizeof(*ids)))) {
		free(ids);
		return nx_error_oom(err, NULL);
	}
	memset(*text, '.', want);
	(*text)[want] = '\0';
	if ((rc = nx_tokenizer_encode(b->tok, *text, want, b->set.max_len, ids, &n, err)))
		goto out;
	nx_error_clear(&why);
	rc = rt_session_run(s, b, &ids, NULL, NULL, &n, 1, out, &why);
	if (!rc || !rt_session_run_failed(s)) {
		if (rc)
			*err = why;
		goto out;
	}
	for (lo = 0, hi = n; hi - lo > 1;) {   /* runs at lo (0: none yet), fails at hi */
		nx_error e;

		mid = lo ? lo + (hi - lo) / 2 : (hi > 8 ? hi / 2 : 2);
		if (mid >= hi || mid < 2)
			break;
		nx_error_clear(&e);
		if (runs_at(s, b, ids, n, mid, &e))
			lo = mid;
		else if (!rt_session_run_failed(s)) {
			*err = e;
			rc = e.code;
			goto out;
		} else
			hi = mid;
	}
	/* the numbers last: the build quotes the tail of this message */
	if (lo)
		rc = nx_error_set(err, NX_ECONFIG, RT_CONFIG, 0, -1,
				  "%s: the model rejects a text of max_sequence_length tokens "
				  "(%.160s): max_sequence_length %zu is more than the model takes, it "
				  "runs inputs of up to %zu tokens and fails on %zu; set "
				  "max_sequence_length: %zu or less", RT_CONFIG, why.message,
				  b->set.max_len, lo, hi, lo);
	else
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "the model fails on an input of %zu tokens: %s", n, why.message);
out:
	free(ids);
	return rc;
}

/*
 * A decoder's long case: a prompt of max_sequence_length minus the
 * selftest's new tokens (the most a request can use, output included),
 * made of "." (or " .", whichever the tokenizer splits into more tokens)
 * within the verifier's 4096 bytes, and its greedy ids.  The count is
 * found by halving over the text's length, as BPE merges runs of dots.
 */
static int gen_long_case(json_t **out, struct rt_session *s, struct rt_bundle *b, nx_error *err)
{
	static const char *const units[] = { ".", " ." };
	size_t target = b->set.max_len > RT_SELFTEST_GEN_TOKENS ?
			b->set.max_len - RT_SELFTEST_GEN_TOKENS : 1;
	size_t u, i, n, lo, hi, mid, best = 0, best_n = 0, best_u = 0;
	int64_t *ids = calloc(b->set.max_len + 1, sizeof(*ids));
	char *text = malloc(RT_SELFTEST_TEXT_MAX + 1);
	json_t *got = NULL;
	int rc = 0;

	if (!ids || !text) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		size_t ul = strlen(units[u]);

		for (i = 0; i + ul <= RT_SELFTEST_TEXT_MAX; i += ul)
			memcpy(text + i, units[u], ul);
		/* the most repeats whose tokens fit the target: lo fits, hi not */
		for (lo = 0, hi = RT_SELFTEST_TEXT_MAX / ul + 1; hi - lo > 1;) {
			mid = lo + (hi - lo) / 2;
			if ((rc = nx_tokenizer_encode(b->tok, text, mid * ul, b->set.max_len + 1, ids,
						      &n, err)))
				goto out;
			if (n <= target)
				lo = mid;
			else
				hi = mid;
		}
		if (lo && !nx_tokenizer_encode(b->tok, text, lo * ul, b->set.max_len + 1, ids, &n,
					       err) && n > best_n) {
			best = lo * ul;
			best_n = n;
			best_u = u;
		}
	}
	if (!best) {
		rc = nx_error_set(err, NX_ECONFIG, RT_CONFIG, 0, -1, "%s: max_sequence_length %zu "
				  "leaves no room for a prompt and %d new tokens", RT_CONFIG,
				  b->set.max_len, RT_SELFTEST_GEN_TOKENS);
		goto out;
	}
	for (i = 0; i < best; i += strlen(units[best_u]))
		memcpy(text + i, units[best_u], strlen(units[best_u]));
	text[best] = '\0';
	rc = rt_gen_selftest_ids(&got, s, b, text, best, err);
	if (rc == NX_ECHECK) {  /* the model refused the prompt: the context promised too much */
		char why[200];

		snprintf(why, sizeof(why), "%.190s", err->message);
		rc = nx_error_set(err, NX_ECONFIG, RT_CONFIG, 0, -1, "%s: the model fails on a "
				  "prompt of %zu tokens (%s): max_sequence_length %zu is more than "
				  "the model takes; lower it", RT_CONFIG, best_n, why, b->set.max_len);
	}
	if (!rc && !(*out = json_pack("{s:s,s:{},s:o}", "text", text, "outputs", "ids", got)))
		rc = nx_error_oom(err, NULL);
out:
	free(ids);
	free(text);
	return rc;
}

int rt_selftest_write(struct rt_session *s, struct rt_bundle *b, char *const *texts,
		      size_t ntexts, bool long_text, const char *out_path, double tolerance,
		      nx_error *err)
{
	json_t *doc = NULL, *cases = json_array();
	char *buf = NULL;
	size_t i, len;
	int fd = -1, rc = 0;

	if (ntexts + long_text > RT_SELFTEST_CASES_MAX) {
		rc = nx_error_set(err, NX_ELIMIT, NULL, 0, -1, "at most %d selftest texts",
				  RT_SELFTEST_CASES_MAX);
		goto out;
	}
	for (i = 0; i < ntexts && b->set.task == RT_TASK_GENERATION; i++) {
		json_t *ids = NULL;

		/* a decoder: the greedy continuation's ids, compared exactly */
		if ((rc = rt_gen_selftest_ids(&ids, s, b, texts[i], strlen(texts[i]), err)))
			goto out;
		json_array_append_new(cases, json_pack("{s:s,s:{},s:o}", "text", texts[i], "outputs",
						       "ids", ids));
	}
	if (b->set.task == RT_TASK_GENERATION && long_text) {
		json_t *c = NULL;

		if ((rc = gen_long_case(&c, s, b, err)))
			goto out;
		json_array_append_new(cases, c);
	}
	if (b->set.task == RT_TASK_GENERATION)
		long_text = false, ntexts = 0;
	for (i = 0; i < ntexts; i++) {
		json_t *res = NULL, *c;

		if ((rc = run_one(&res, s, b, texts[i], strlen(texts[i]), err)))
			goto out;
		/* a golden file of nulls would "match" any broken model */
		if (json_object_get(res, "error")) {
			rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1, "selftest text %zu (\"%.60s\"): %s",
					  i, texts[i], json_string_value(json_object_get(res, "error")));
			json_decref(res);
			goto out;
		}
		c = json_pack("{s:s,s:O}", "text", texts[i], "outputs", json_object_get(res, "outputs"));
		if (json_object_get(res, "label"))
			json_object_set(c, "label", json_object_get(res, "label"));
		if (json_object_get(res, "embedding"))
			json_object_set(c, "embedding", json_object_get(res, "embedding"));
		json_array_append_new(cases, c);
		json_decref(res);
	}
	if (long_text) {
		json_t *res = NULL, *c;
		char *text = NULL;

		rc = long_case(&res, s, b, &text, err);
		/* its per-token outputs would be megabytes: the derived ones only */
		c = rc ? NULL : json_pack("{s:s,s:{}}", "text", text, "outputs");
		if (c && json_object_get(res, "label"))
			json_object_set(c, "label", json_object_get(res, "label"));
		if (c && json_object_get(res, "embedding"))
			json_object_set(c, "embedding", json_object_get(res, "embedding"));
		if (c && json_object_get(res, "error")) {
			rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1, "selftest long text: %s",
					  json_string_value(json_object_get(res, "error")));
			json_decref(c);
		} else if (c)
			json_array_append_new(cases, c);
		free(text);
		json_decref(res);
		if (rc)
			goto out;
		if (!c) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
	}
	doc = json_pack("{s:s,s:f,s:O}", "schema", RT_SELFTEST_SCHEMA, "tolerance", tolerance,
			"cases", cases);
	buf = doc ? json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS | rt_session_json_flags(s)) : NULL;
	if (!buf) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	len = strlen(buf);
	buf[len++] = '\n';  /* over the NUL: the buffer is written by length */
	/* "-" is stdout: `nexus build` runs this in the sandbox, where the
	 * bundle is read-only, and stages what it prints. */
	if (!strcmp(out_path, "-")) {
		if (fwrite(buf, 1, len, stdout) != len || fflush(stdout) != 0)
			rc = nx_error_errno(err, NX_EIO, errno, "-", "cannot write the golden file to stdout");
		goto out;
	}
	fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0 || write(fd, buf, len) != (ssize_t)len || fsync(fd)) {
		rc = nx_error_errno(err, NX_EIO, errno, out_path, "cannot write %s", out_path);
		goto out;
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	json_decref(doc);
	json_decref(cases);
	return rc;
}
