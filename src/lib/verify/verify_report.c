/* verify_report.c - findings, check results, verdict and JSON of a TRV run. */
#include "nexus/verify.h"
#include "verify_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_MESSAGE_MAX 2048

struct nx_report {
	char *bundle;
	struct nx_finding *findings;
	size_t nfindings, cap;
	size_t dropped;
	enum nx_severity worst;
	bool any;
	struct nx_check_result *checks;
	size_t nchecks;
};

int nx_report_new(nx_report **out, const char *bundle_path, nx_error *err)
{
	nx_report *r = calloc(1, sizeof(*r));

	if (!r || !(r->bundle = strdup(bundle_path ? bundle_path : "")))
		goto out_nomem;
	*out = r;
	return 0;
out_nomem:
	free(r);
	return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory creating a report");
}

int nx_vfy__report_rename(nx_report *r, const char *bundle_path)
{
	char *p = strdup(bundle_path);

	if (!p)
		return NX_ENOMEM;
	free(r->bundle);
	r->bundle = p;
	return 0;
}

int nx_report_over_budget(nx_report **out, const char *bundle_path, const char *check,
			  double budget, nx_error *err)
{
	nx_report *r = NULL;
	int rc = nx_report_new(&r, bundle_path, err);

	if (rc)
		return rc;
	if (nx_report_add(r, check, NX_SEV_FAIL, NX_F_CHECK_OVER_BUDGET, NULL, 0,
			  "the %s check ran past its time budget of %g s and was stopped: the "
			  "bundle is shaped to make it slow, or the disk is very slow (raise "
			  "--time-budget)", check, budget) ||
	    nx_report_check(r, check, false, budget)) {
		nx_report_free(r);
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory creating a report");
	}
	*out = r;
	return 0;
}

const char *nx_severity_name(enum nx_severity s)
{
	return s == NX_SEV_FAIL ? "FAIL" : s == NX_SEV_WARN ? "WARN" : "INFO";
}

const char *nx_check_status_name(enum nx_check_status s)
{
	switch (s) {
	case NX_CHECK_PASS: return "PASS";
	case NX_CHECK_WARN: return "WARN";
	case NX_CHECK_FAIL: return "FAIL";
	default: return "SKIP";
	}
}

static void finding_release(struct nx_finding *f)
{
	free(f->check);
	free(f->path);
	free(f->message);
}

int nx_report_vadd(nx_report *r, const char *check, enum nx_severity sev, enum nx_finding_code code,
		   const char *path, long line, const char *fmt, va_list ap)
{
	struct nx_finding f = {0};
	char msg[REPORT_MESSAGE_MAX];

	if (!r->any || sev > r->worst)
		r->worst = sev;
	r->any = true;
	if (r->nfindings >= NX_REPORT_FINDINGS_MAX) {
		r->dropped++;
		return 0;
	}
	if (NX_ARRAY_PUSH(r->findings, r->cap, r->nfindings))
		return NX_ENOMEM;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	f.severity = sev;
	f.line = line;
	f.check = strdup(check);
	f.id = code;
	f.code = nx_finding_name(code);
	f.path = strdup(path ? path : "");
	f.message = strdup(msg);
	if (!f.check || !f.path || !f.message) {
		finding_release(&f);
		return NX_ENOMEM;
	}
	r->findings[r->nfindings++] = f;
	return 0;
}

int nx_report_add(nx_report *r, const char *check, enum nx_severity sev, enum nx_finding_code code,
		  const char *path, long line, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = nx_report_vadd(r, check, sev, code, path, line, fmt, ap);
	va_end(ap);
	return rc;
}

/* Status of check id from the findings reported so far. */
static enum nx_check_status status_of(const nx_report *r, const char *id, bool skipped)
{
	enum nx_severity worst = NX_SEV_INFO;
	size_t i;

	if (skipped)
		return NX_CHECK_SKIP;
	for (i = 0; i < r->nfindings; i++)
		if (!strcmp(r->findings[i].check, id) && r->findings[i].severity > worst)
			worst = r->findings[i].severity;
	/* a check whose findings were dropped still fails if the report does */
	if (r->dropped && r->worst > worst)
		worst = r->worst;
	return worst == NX_SEV_FAIL ? NX_CHECK_FAIL :
	       worst == NX_SEV_WARN ? NX_CHECK_WARN : NX_CHECK_PASS;
}

int nx_report_check_update(nx_report *r, const char *id)
{
	size_t i;

	for (i = 0; i < r->nchecks; i++)
		if (!strcmp(r->checks[i].id, id) && r->checks[i].status != NX_CHECK_SKIP)
			r->checks[i].status = status_of(r, id, false);
	return 0;
}

int nx_report_check(nx_report *r, const char *id, bool skipped, double seconds)
{
	struct nx_check_result c = {0};

	c.status = status_of(r, id, skipped);
	c.seconds = seconds;
	c.id = strdup(id);
	if (!c.id)
		return NX_ENOMEM;
	if (NX_ARRAY_PUSH_EXACT(r->checks, r->nchecks)) {
		free(c.id);
		return NX_ENOMEM;
	}
	r->checks[r->nchecks++] = c;
	return 0;
}

enum nx_verdict nx_report_verdict(const nx_report *r)
{
	if (!r->any || r->worst == NX_SEV_INFO)
		return NX_VERDICT_PASS;
	return r->worst == NX_SEV_FAIL ? NX_VERDICT_FAIL : NX_VERDICT_WARN;
}

const char *nx_verdict_name(enum nx_verdict v)
{
	return v == NX_VERDICT_FAIL ? "FAIL" : v == NX_VERDICT_WARN ? "WARN" : "PASS";
}

const struct nx_finding *nx_report_findings(const nx_report *r, size_t *out_n)
{
	*out_n = r->nfindings;
	return r->findings;
}

const struct nx_check_result *nx_report_checks(const nx_report *r, size_t *out_n)
{
	*out_n = r->nchecks;
	return r->checks;
}

size_t nx_report_dropped(const nx_report *r)
{
	return r->dropped;
}

size_t nx_report_count(const nx_report *r, enum nx_finding_code code)
{
	size_t i, n = 0;

	for (i = 0; i < r->nfindings; i++)
		n += r->findings[i].id == code;
	return n;
}

int nx_report_rename_path(nx_report *r, const char *from, const char *to)
{
	size_t i;
	char *s;

	for (i = 0; i < r->nfindings; i++) {
		if (!r->findings[i].path || strcmp(r->findings[i].path, from))
			continue;
		if (!(s = strdup(to)))
			return NX_ENOMEM;
		free(r->findings[i].path);
		r->findings[i].path = s;
	}
	return 0;
}

static size_t count_for(const nx_report *r, const char *id)
{
	size_t i, n = 0;

	for (i = 0; i < r->nfindings; i++)
		n += !strcmp(r->findings[i].check, id);
	return n;
}

/* json_object_set_new that records failure instead of returning it. */
static void put(json_t *o, const char *k, json_t *v, bool *bad)
{
	if (!v || json_object_set_new(o, k, v))
		*bad = true;
}

static void append(json_t *a, json_t *v, bool *bad)
{
	if (!v || json_array_append_new(a, v))
		*bad = true;
}

/* Strings from the bundle (names, ONNX strings) may be invalid UTF-8, which
 * JSON cannot carry: bytes >= 0x80 become '?' in that case. */
static json_t *jstr(const char *s)
{
	json_t *v = json_string(s);
	char *c;
	size_t i;

	if (v || !(c = strdup(s)))
		return v;
	for (i = 0; c[i]; i++)
		if ((unsigned char)c[i] >= 0x80)
			c[i] = '?';
	v = json_string(c);
	free(c);
	return v;
}

int nx_report_json(char **out, const nx_report *r, nx_error *err)
{
	json_t *root = json_object(), *checks = json_array(), *findings = json_array();
	bool bad = !root || !checks || !findings;
	char *s = NULL;
	size_t i;

	for (i = 0; !bad && i < r->nchecks; i++) {
		json_t *c = json_object();

		put(c, "id", json_string(r->checks[i].id), &bad);
		put(c, "status", json_string(nx_check_status_name(r->checks[i].status)), &bad);
		put(c, "duration_ms", json_real(r->checks[i].seconds * 1000.0), &bad);
		put(c, "findings", json_integer((json_int_t)count_for(r, r->checks[i].id)), &bad);
		append(checks, c, &bad);
	}
	for (i = 0; !bad && i < r->nfindings; i++) {
		const struct nx_finding *f = &r->findings[i];
		json_t *o = json_object();

		put(o, "check", json_string(f->check), &bad);
		put(o, "severity", json_string(nx_severity_name(f->severity)), &bad);
		put(o, "code", json_string(f->code), &bad);
		put(o, "path", jstr(f->path), &bad);
		if (f->line > 0)
			put(o, "line", json_integer(f->line), &bad);
		put(o, "message", jstr(f->message), &bad);
		append(findings, o, &bad);
	}
	if (!bad) {
		put(root, "schema", json_string("nexus.verify.v1"), &bad);
		put(root, "bundle", jstr(r->bundle), &bad);
		put(root, "verdict", json_string(nx_verdict_name(nx_report_verdict(r))), &bad);
		put(root, "checks", checks, &bad);
		checks = NULL;
		put(root, "findings", findings, &bad);
		findings = NULL;
		put(root, "dropped_findings", json_integer((json_int_t)r->dropped), &bad);
	}
	if (!bad)
		s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	json_decref(checks);
	json_decref(findings);
	if (!s)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory writing the report");
	*out = s;
	return 0;
}

void nx_report_free(nx_report *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->nfindings; i++)
		finding_release(&r->findings[i]);
	for (i = 0; i < r->nchecks; i++)
		free(r->checks[i].id);
	free(r->findings);
	free(r->checks);
	free(r->bundle);
	free(r);
}
