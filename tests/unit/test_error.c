/* test_error.c - the error contract. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "nexus/error.h"

static void set_fills_all_fields(void **state)
{
	nx_error e;

	nx_error_clear(&e);
	assert_int_equal(e.code, NX_OK);
	assert_int_equal(nx_error_set(&e, NX_EFORMAT, "a.onnx", 0, 17, "bad tag %d", 3),
			 NX_EFORMAT);
	assert_string_equal(e.message, "bad tag 3");
	assert_string_equal(e.path, "a.onnx");
	assert_int_equal(e.offset, 17);
}

static void null_error_is_allowed(void **state)
{
	assert_int_equal(nx_error_set(NULL, NX_EIO, NULL, 0, -1, "x"), NX_EIO);
	nx_error_clear(NULL);
}

static void oom_is_enomem(void **state)
{
	nx_error e;

	nx_error_clear(&e);
	assert_int_equal(nx_error_oom(&e, "m.onnx"), NX_ENOMEM);
	assert_int_equal(e.code, NX_ENOMEM);
	assert_string_equal(e.message, "out of memory");
	assert_string_equal(e.path, "m.onnx");
	assert_int_equal(nx_error_oom(NULL, NULL), NX_ENOMEM);
}

static void errno_appends_reason(void **state)
{
	nx_error e;

	nx_error_errno(&e, NX_EIO, ENOENT, "f", "cannot open %s", "f");
	assert_non_null(strstr(e.message, "cannot open f: "));
	assert_non_null(strstr(e.message, strerror(ENOENT)));
}

static void exit_status_mapping(void **state)
{
	assert_int_equal(nx_error_exit_status(NX_OK), 0);
	assert_int_equal(nx_error_exit_status(NX_ECHECK), 1);
	assert_int_equal(nx_error_exit_status(NX_ECONFIG), 2);
	assert_int_equal(nx_error_exit_status(NX_EUSAGE), 2);
	assert_int_equal(nx_error_exit_status(NX_EIO), 3);
	assert_int_equal(nx_error_exit_status(NX_EFORMAT), 3);
	assert_string_equal(nx_error_name(NX_ELIMIT), "limit");
}

static void shell_word_quotes_what_a_shell_would_split(void **state)
{
	char w[64];

	(void)state;
	assert_string_equal(nx_shell_word(w, sizeof(w), "/tmp/b_1.x"), "/tmp/b_1.x");
	assert_string_equal(nx_shell_word(w, sizeof(w), "/tmp/my bundle"), "'/tmp/my bundle'");
	assert_string_equal(nx_shell_word(w, sizeof(w), "/tmp/w\xc3\xb6rk"), "'/tmp/w\xc3\xb6rk'");
	assert_string_equal(nx_shell_word(w, sizeof(w), "it's"), "'it'\\''s'");
	assert_string_equal(nx_shell_word(w, sizeof(w), ""), "''");
	assert_string_equal(nx_shell_word(w, 6, "a b c d e"), "'a b'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(set_fills_all_fields),
		cmocka_unit_test(null_error_is_allowed),
		cmocka_unit_test(oom_is_enomem),
		cmocka_unit_test(errno_appends_reason),
		cmocka_unit_test(exit_status_mapping),
		cmocka_unit_test(shell_word_quotes_what_a_shell_would_split),
	};
	return cmocka_run_group_tests_name("error", tests, NULL, NULL);
}
