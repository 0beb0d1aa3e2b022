/* test_verify.c - the TRV report and nx_verify_bundle on tiny bundles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nexus/fs.h"
#include "nexus/functional.h"
#include "nexus/verify.h"

#include "format_vector.h"

static void verdict_is_worst_severity(void **state)
{
	nx_report *r = NULL;

	assert_int_equal(nx_report_new(&r, "b", NULL), 0);
	assert_int_equal(nx_report_verdict(r), NX_VERDICT_PASS);
	assert_int_equal(nx_report_add(r, "signature", NX_SEV_INFO, NX_F_SIGNED, "manifest.json", 0, "ok"), 0);
	assert_int_equal(nx_report_verdict(r), NX_VERDICT_PASS);
	assert_int_equal(nx_report_add(r, "code", NX_SEV_WARN, NX_F_TERM_IN_COMMENT, "src/a.py", 3, "c"), 0);
	assert_int_equal(nx_report_verdict(r), NX_VERDICT_WARN);
	assert_int_equal(nx_report_add(r, "allowlist", NX_SEV_FAIL, NX_F_FORBIDDEN_NAME, "x", 0, "%d", 7), 0);
	assert_int_equal(nx_report_verdict(r), NX_VERDICT_FAIL);
	assert_int_equal(nx_report_add(r, "code", NX_SEV_WARN, NX_F_TERM_IN_COMMENT, "src/b.py", 1, "c"), 0);
	assert_int_equal(nx_report_verdict(r), NX_VERDICT_FAIL);
	assert_int_equal(nx_report_count(r, NX_F_TERM_IN_COMMENT), 2);
	nx_report_free(r);
	nx_report_free(NULL);
}

static void check_status_from_findings(void **state)
{
	const struct nx_check_result *c;
	nx_report *r = NULL;
	size_t n;

	assert_int_equal(nx_report_new(&r, NULL, NULL), 0);
	nx_report_add(r, "code", NX_SEV_WARN, NX_F_TERM_IN_COMMENT, "a", 1, "w");
	nx_report_add(r, "weights", NX_SEV_FAIL, NX_F_ONNX_INVALID, "m", 0, "f");
	assert_int_equal(nx_report_check(r, "integrity", false, 0.1), 0);
	assert_int_equal(nx_report_check(r, "code", false, 0.1), 0);
	assert_int_equal(nx_report_check(r, "weights", false, 0.1), 0);
	assert_int_equal(nx_report_check(r, "functional", true, 0), 0);
	c = nx_report_checks(r, &n);
	assert_int_equal(n, 4);
	assert_int_equal(c[0].status, NX_CHECK_PASS);
	assert_int_equal(c[1].status, NX_CHECK_WARN);
	assert_int_equal(c[2].status, NX_CHECK_FAIL);
	assert_int_equal(c[3].status, NX_CHECK_SKIP);
	nx_report_free(r);
}

static void findings_are_capped_but_verdict_kept(void **state)
{
	nx_report *r = NULL;
	size_t n, i;

	assert_int_equal(nx_report_new(&r, "b", NULL), 0);
	for (i = 0; i < NX_REPORT_FINDINGS_MAX; i++)
		nx_report_add(r, "code", NX_SEV_WARN, NX_F_TERM_IN_COMMENT, "a", 1, "w");
	nx_report_add(r, "code", NX_SEV_FAIL, NX_F_TERM_IN_CODE, "a", 2, "f");
	nx_report_findings(r, &n);
	assert_int_equal(n, NX_REPORT_FINDINGS_MAX);
	assert_int_equal(nx_report_dropped(r), 1);
	assert_int_equal(nx_report_verdict(r), NX_VERDICT_FAIL);
	nx_report_free(r);
}

static void json_has_schema_and_optional_line(void **state)
{
	nx_report *r = NULL;
	json_t *root, *f;
	char *s = NULL;

	assert_int_equal(nx_report_new(&r, "bundle", NULL), 0);
	nx_report_add(r, "code", NX_SEV_FAIL, NX_F_TERM_IN_STRING, "src/a.py", 4, "teacher");
	nx_report_add(r, "weights", NX_SEV_FAIL, NX_F_ONNX_TEACHER_REFERENCE, "m", 0, "bad \xff byte");
	nx_report_check(r, "code", false, 0.002);
	assert_int_equal(nx_report_json(&s, r, NULL), 0);
	root = json_loads(s, 0, NULL);
	assert_non_null(root);
	assert_string_equal(json_string_value(json_object_get(root, "schema")), "nexus.verify.v1");
	assert_string_equal(json_string_value(json_object_get(root, "verdict")), "FAIL");
	f = json_array_get(json_object_get(root, "findings"), 0);
	assert_int_equal(json_integer_value(json_object_get(f, "line")), 4);
	assert_string_equal(json_string_value(json_object_get(f, "severity")), "FAIL");
	f = json_array_get(json_object_get(root, "findings"), 1);
	assert_null(json_object_get(f, "line"));
	assert_string_equal(json_string_value(json_object_get(f, "message")), "bad ? byte");
	assert_string_equal(json_string_value(json_object_get(
		json_array_get(json_object_get(root, "checks"), 0), "status")), "FAIL");
	json_decref(root);
	free(s);
	nx_report_free(r);
}

/* An empty directory is not a bundle: the verdict is FAIL, not an error. */
static void empty_dir_fails_with_findings(void **state)
{
	char tmpl[] = "/tmp/nx_verify_XXXXXX";
	struct nx_verify_opts o;
	nx_report *r = NULL;
	nx_error e;
	int fd;

	assert_non_null(mkdtemp(tmpl));
	fd = open(tmpl, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	nx_verify_opts_init(&o);
	o.functional = false;
	assert_int_equal(nx_verify_bundle(&r, fd, tmpl, &o, &e), 0);
	assert_int_equal(nx_report_verdict(r), NX_VERDICT_FAIL);
	assert_int_equal(nx_report_count(r, NX_F_MANIFEST_MISSING), 1);
	assert_int_equal(nx_report_count(r, NX_F_REQUIRED_MISSING), 4);
	assert_int_equal(nx_report_count(r, NX_F_RUNTIME_UNTRUSTED), 1);
	nx_report_free(r);
	close(fd);
	rmdir(tmpl);
}

/* pull and unpack verify their stage, which is renamed or removed before
 * anyone reads the report: a 'nexus fix-modes' hint names the output
 * path, shell-quoted, never the stage. */
static void stage_hints_name_the_output_path(void **state)
{
	char tmpl[] = "/tmp/nx_verify_XXXXXX", out[128], word[256], *p;
	const struct nx_finding *f;
	struct nx_verify_opts o;
	nx_stage *st = NULL;
	nx_report *r = NULL;
	size_t i, n, hints = 0;
	nx_error e;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(tmpl));
	snprintf(out, sizeof(out), "%s/it's out", tmpl);
	assert_int_equal(nx_stage_create(&st, out, false, &e), 0);
	assert_int_equal(nx_stage_create_file(&fd, st, "README.md", false, &e), 0);
	assert_int_equal(nx_write_all(fd, "abc", 3), 0);
	assert_int_equal(fchmod(fd, 0644), 0);   /* writable: a finding with a hint */
	close(fd);
	assert_int_equal(nx_stage_create_file(&fd, st, "model/student_model.onnx", false, &e), 0);
	close(fd);
	assert_int_equal(nx_stage_create_file(&fd, st, "manifest.json", false, &e), 0);
	assert_int_equal(nx_write_all(fd, VECTOR, strlen(VECTOR)), 0);
	close(fd);
	nx_verify_opts_init(&o);
	o.functional = false;
	o.integrity_only = true;
	assert_int_equal(nx_verify_stage(&r, st, out, "pulled", &o, &e), NX_ECHECK);
	nx_shell_word(word, sizeof(word), out);
	assert_int_equal(word[0], '\'');
	f = nx_report_findings(r, &n);
	for (i = 0; i < n; i++) {
		if (!(p = strstr(f[i].message, "nexus fix-modes ")))
			continue;
		hints++;
		assert_string_equal(p + strlen("nexus fix-modes "), word);
		assert_null(strstr(f[i].message, ".nexus-stage."));
	}
	assert_true(hints >= 1);
	nx_report_free(r);
	nx_stage_free(st);   /* removes the stage */
	assert_int_equal(rmdir(tmpl), 0);
}

/* Each check's default time budget grows with the model, and the
 * functional check's covers the programs it runs: a watchdog at 300 s
 * stopped a 600 s liveness check of a large student with FAIL
 * check-over-budget before it could end on its own. */
static void time_budget_covers_the_checks_own_budgets(void **state)
{
	double gib = (double)(1ull << 30);

	(void)state;
	assert_true(nx_verify_time_budget(NX_CHECK_INTEGRITY, 0) == NX_VERIFY_CHECK_S);
	assert_true(nx_verify_time_budget(NX_CHECK_INTEGRITY, (uint64_t)(5 * gib)) ==
		    NX_VERIFY_CHECK_S + 5 * NX_VERIFY_CHECK_S_PER_GIB);
	assert_true(nx_verify_time_budget(NX_CHECK_FUNCTIONAL, 0) >=
		    NX_VERIFY_CHECK_S + (NX_FUNCTIONAL_SELFTEST_MS + NX_FUNCTIONAL_IMPORT_MS +
					 nx_functional_liveness_ms()) / 1000.0);
}

struct started { double integrity, functional; };

static void record_start(void *ctx, const char *check, bool done, double seconds)
{
	struct started *s = ctx;

	if (!done && !strcmp(check, NX_CHECK_INTEGRITY))
		s->integrity = seconds;
	if (!done && !strcmp(check, NX_CHECK_FUNCTIONAL))
		s->functional = seconds;
}

/* nx_verify_bundle tells its progress callback each check's budget. */
static void progress_gets_each_checks_budget(void **state)
{
	char tmpl[] = "/tmp/nx_verify_XXXXXX";
	struct started got = { 0, 0 };
	struct nx_verify_opts o;
	nx_report *r = NULL;
	nx_error e;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(tmpl));
	fd = open(tmpl, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	nx_verify_opts_init(&o);
	o.progress = record_start;
	o.progress_ctx = &got;
	assert_int_equal(nx_verify_bundle(&r, fd, tmpl, &o, &e), 0);
	assert_true(got.integrity == nx_verify_time_budget(NX_CHECK_INTEGRITY, 0));
	assert_true(got.functional == nx_verify_time_budget(NX_CHECK_FUNCTIONAL, 0));
	nx_report_free(r);
	close(fd);
	rmdir(tmpl);
}

/* The integrity check's budget, set before the bundle is listed, counts
 * the model folder's files by the blocks they hold: a 1 GiB sparse file
 * buys nothing, 1 MiB of data its share. */
static void integrity_budget_counts_the_model_folder(void **state)
{
	char tmpl[] = "/tmp/nx_verify_XXXXXX", path[256];
	static char data[1 << 20];
	struct started got = { 0, 0 };
	struct nx_verify_opts o;
	nx_report *r = NULL;
	nx_error e;
	int fd, f;

	(void)state;
	assert_non_null(mkdtemp(tmpl));
	snprintf(path, sizeof(path), "%s/model", tmpl);
	assert_int_equal(mkdir(path, 0755), 0);
	snprintf(path, sizeof(path), "%s/model/sparse.bin", tmpl);
	f = open(path, O_WRONLY | O_CREAT, 0644);
	assert_true(f >= 0 && ftruncate(f, 1 << 30) == 0);
	close(f);
	snprintf(path, sizeof(path), "%s/model/data.bin", tmpl);
	f = open(path, O_WRONLY | O_CREAT, 0644);
	memset(data, 7, sizeof(data));
	assert_true(f >= 0 && write(f, data, sizeof(data)) == (ssize_t)sizeof(data));
	assert_int_equal(fsync(f), 0);
	close(f);
	fd = open(tmpl, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	nx_verify_opts_init(&o);
	o.functional = false;
	o.progress = record_start;
	o.progress_ctx = &got;
	assert_int_equal(nx_verify_bundle(&r, fd, tmpl, &o, &e), 0);
	assert_true(got.integrity >= nx_verify_time_budget(NX_CHECK_INTEGRITY, sizeof(data)));
	assert_true(got.integrity < nx_verify_time_budget(NX_CHECK_INTEGRITY, 64u << 20));
	nx_report_free(r);
	close(fd);
	unlink(path);
	snprintf(path, sizeof(path), "%s/model/sparse.bin", tmpl);
	unlink(path);
	snprintf(path, sizeof(path), "%s/model", tmpl);
	rmdir(path);
	rmdir(tmpl);
}

/* A FIFO at the manifest's name must not block the verifier. */
static void fifo_manifest_does_not_block(void **state)
{
	char tmpl[] = "/tmp/nx_verify_XXXXXX", path[64];
	nx_report *r = NULL;
	nx_error e;
	int fd;

	assert_non_null(mkdtemp(tmpl));
	snprintf(path, sizeof(path), "%s/manifest.json", tmpl);
	assert_int_equal(mkfifo(path, 0444), 0);
	fd = open(tmpl, O_RDONLY | O_DIRECTORY);
	alarm(10);
	assert_int_equal(nx_verify_bundle(&r, fd, tmpl, NULL, &e), 0);
	alarm(0);
	assert_int_equal(nx_report_count(r, NX_F_SPECIAL_FILE), 1);
	nx_report_free(r);
	close(fd);
	unlink(path);
	rmdir(tmpl);
}

/* --override-policy names: each field's bit, "all", and a usage error. */
static void policy_field_names(void **state)
{
	unsigned bits = 0;
	nx_error e;

	(void)state;
	assert_int_equal(nx_verify_policy_field(&bits, "max_model_bytes", NULL), 0);
	assert_int_equal(nx_verify_policy_field(&bits, "forbidden_terms", NULL), 0);
	assert_int_equal(bits, NX_POLICY_MAX_MODEL_BYTES | NX_POLICY_FORBIDDEN_TERMS);
	assert_int_equal(nx_verify_policy_field(&bits, "all", NULL), 0);
	assert_int_equal(bits, NX_POLICY_ALL);
	nx_error_clear(&e);
	assert_int_equal(nx_verify_policy_field(&bits, "max-model-bytes", &e), NX_EUSAGE);
	assert_non_null(strstr(e.message, "allow_shared_tensors"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(verdict_is_worst_severity),
		cmocka_unit_test(check_status_from_findings),
		cmocka_unit_test(findings_are_capped_but_verdict_kept),
		cmocka_unit_test(json_has_schema_and_optional_line),
		cmocka_unit_test(empty_dir_fails_with_findings),
		cmocka_unit_test(fifo_manifest_does_not_block),
		cmocka_unit_test(policy_field_names),
		cmocka_unit_test(time_budget_covers_the_checks_own_budgets),
		cmocka_unit_test(progress_gets_each_checks_budget),
		cmocka_unit_test(integrity_budget_counts_the_model_folder),
		cmocka_unit_test(stage_hints_name_the_output_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
