/*
 * verify_selftest.c - config/selftest.json (part of `code`).
 *
 * The golden file is the one bundle file that legitimately holds many
 * numbers, so the allowlist's literal-blob estimate cannot judge it.  Its
 * numbers are accounted for by TRV-5 instead: the sandboxed selftest
 * recomputes every one of them from the model, within a tolerance capped
 * here.  What remains free-form - the texts - is scanned like any text, and
 * the shape is strict so nothing else can ride along.  When TRV-5 does not
 * run (--no-sandbox), the numbers are unproven and are capped.
 */
#include "verify_internal.h"

#include <jansson.h>
#include <string.h>

#include "nexus/magic.h"

#define CHECK NX_CHECK_CODE
#define SELFTEST_PATH "config/selftest.json"
#define SELFTEST_CASES_MAX 64
#define SELFTEST_TEXT_MAX 4096
#define SELFTEST_TOLERANCE_MAX 1e-2
#define SELFTEST_UNPROVEN_NUMBERS_MAX 1024  /* numbers allowed when TRV-5 is off */

static int bad(struct vfy_ctx *c, const char *why)
{
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_SELFTEST_MALFORMED, SELFTEST_PATH, 0,
			     "%s: %s (see nexus_cli(1))", SELFTEST_PATH, why);
}

static bool only_keys(json_t *o, const char *const *keys)
{
	const char *k;
	json_t *v;
	size_t i;

	json_object_foreach(o, k, v) {
		for (i = 0; keys[i] && strcmp(keys[i], k); i++)
			;
		if (!keys[i])
			return false;
	}
	return true;
}

/* Count numbers in an array of numbers (or nulls); -1 if anything else.
 * *null_at is the index of the first null, or -1. */
static long numbers(json_t *a, long *null_at)
{
	size_t i;
	json_t *v;

	*null_at = -1;
	if (!json_is_array(a))
		return -1;
	json_array_foreach(a, i, v) {
		if (json_is_null(v) && *null_at < 0)
			*null_at = (long)i;
		else if (!json_is_number(v) && !json_is_null(v))
			return -1;
	}
	return (long)json_array_size(a);
}

/* A null golden number is a NaN or infinity the model computed (older
 * runtimes wrote them so): such a model must not pass, even unrun. */
static int nonfinite(struct vfy_ctx *c, size_t index, const char *name, long at)
{
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_NON_FINITE_OUTPUT, SELFTEST_PATH, 0,
			     "%s: case %zu output '%s' index %ld is not a finite number (the model "
			     "computed NaN or infinity); fix the student and rebuild", SELFTEST_PATH,
			     index, name, at);
}

static int check_case(struct vfy_ctx *c, size_t index, json_t *cs, struct nx_text_scan *ts,
		      long *nums)
{
	static const char *const keys[] = { "text", "outputs", "label", "embedding", "ids", NULL };
	json_t *text = json_object_get(cs, "text"), *outs = json_object_get(cs, "outputs");
	json_t *v, *lab = json_object_get(cs, "label"), *emb = json_object_get(cs, "embedding");
	json_t *ids = json_object_get(cs, "ids");
	const char *name;
	long n, at;

	if (!json_is_object(cs) || !only_keys(cs, keys) || !json_is_string(text) ||
	    !json_is_object(outs) || (lab && !json_is_string(lab)))
		return bad(c, "a case must be {text, outputs, label?, embedding?, ids?}");
	if (json_string_length(text) > SELFTEST_TEXT_MAX)
		return bad(c, "a selftest text is longer than 4096 bytes");
	nx_text_scan_feed(ts, (const unsigned char *)json_string_value(text),
			  json_string_length(text));
	nx_text_scan_feed(ts, (const unsigned char *)"\n", 1);
	if (lab && json_string_length(lab) > 256)
		return bad(c, "a label is longer than 256 bytes");
	json_object_foreach(outs, name, v) {
		if ((n = numbers(v, &at)) < 0)
			return bad(c, "every output must be a list of numbers");
		if (at >= 0)
			return nonfinite(c, index, name, at);
		*nums += n;
	}
	if (ids) {      /* a decoder's greedy continuation, rerun by TRV-5 */
		size_t i;

		json_array_foreach(ids, i, v)
			if (!json_is_integer(v))
				return bad(c, "ids must be a list of token ids");
		if (!json_is_array(ids))
			return bad(c, "ids must be a list of token ids");
		*nums += (long)json_array_size(ids);
	}
	if (emb) {
		if ((n = numbers(emb, &at)) < 0)
			return bad(c, "embedding must be a list of numbers");
		if (at >= 0)
			return nonfinite(c, index, "embedding", at);
		*nums += n;
	}
	return 0;
}

int nx_vfy__selftest_json(struct vfy_ctx *c, const char *buf, size_t len)
{
	static const char *const top[] = { "schema", "tolerance", "cases", NULL };
	struct nx_text_scan ts;
	json_error_t je;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je), *cases, *cs;
	double tol;
	long nums = 0;
	size_t i;
	int rc = 0;

	if (!root)
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_CONFIG_UNPARSABLE, SELFTEST_PATH,
				     je.line, "%s is not valid JSON: %s", SELFTEST_PATH, je.text);
	cases = json_object_get(root, "cases");
	tol = json_number_value(json_object_get(root, "tolerance"));
	if (!json_is_object(root) || !only_keys(root, top) ||
	    !json_is_string(json_object_get(root, "schema")) ||
	    !json_is_number(json_object_get(root, "tolerance")) || !json_is_array(cases)) {
		rc = bad(c, "must be {schema, tolerance, cases}");
		goto out;
	}
	/* A loose tolerance would let any numbers pass as "outputs". */
	if (!(tol >= 0 && tol <= SELFTEST_TOLERANCE_MAX)) {
		rc = bad(c, "tolerance must be between 0 and 0.01");
		goto out;
	}
	if (c->m && c->m->policy && tol > c->m->policy->selftest_tolerance) {
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_POLICY_MISMATCH, SELFTEST_PATH, 0,
				   "%s: tolerance %g is looser than the %g the manifest's policy "
				   "records; rebuild with nexus build", SELFTEST_PATH, tol,
				   c->m->policy->selftest_tolerance);
		goto out;
	}
	if (json_array_size(cases) > SELFTEST_CASES_MAX) {
		rc = bad(c, "more than 64 cases");
		goto out;
	}
	nx_text_scan_init(&ts);
	json_array_foreach(cases, i, cs)
		if ((rc = check_case(c, i, cs, &ts, &nums)))
			goto out;
	nx_text_scan_finish(&ts);
	if (ts.data_at >= 0 || ts.base64_at >= 0)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_LITERAL_BLOB, SELFTEST_PATH, 0,
				   "%s: the selftest texts carry encoded data (numbers, hex, base64) "
				   "rather than sample inputs", SELFTEST_PATH);
	else if (!c->opts->functional && nums > SELFTEST_UNPROVEN_NUMBERS_MAX)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_LITERAL_BLOB, SELFTEST_PATH, 0,
				   "%s holds %ld golden numbers that only the functional check "
				   "(TRV-5) can account for, and it is off; run without --no-sandbox",
				   SELFTEST_PATH, nums);
out:
	json_decref(root);
	return rc;
}
