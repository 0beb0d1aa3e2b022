/* test_opt.c - nx_opt_next: the argv scanner both programs share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "../../src/util/opt_int.h"

#define ARGV(...) char *argv[] = { "prog", __VA_ARGS__ }; \
	int argc = (int)(sizeof(argv) / sizeof(argv[0]))

static void long_short_and_values(void **state)
{
	ARGV("--text", "a b", "--max=5", "-t", "x", "file", "-", "--flag");
	struct nx_opt_scan s;

	(void)state;
	nx_opt_init(&s, argc, argv, 1);
	assert_int_equal(nx_opt_next(&s), NX_OPT_LONG);
	assert_int_equal(s.name_len, 4);
	assert_memory_equal(s.name, "text", 4);
	assert_null(s.eq);
	assert_string_equal(nx_opt_value(&s), "a b");
	assert_int_equal(nx_opt_next(&s), NX_OPT_LONG);
	assert_int_equal(s.name_len, 3);
	assert_memory_equal(s.name, "max", 3);
	assert_string_equal(nx_opt_value(&s), "5");   /* after '=', nothing consumed */
	assert_int_equal(nx_opt_next(&s), NX_OPT_SHORT);
	assert_int_equal(s.short_name, 't');
	assert_string_equal(nx_opt_value(&s), "x");
	assert_int_equal(nx_opt_next(&s), NX_OPT_POSITIONAL);
	assert_string_equal(s.word, "file");
	assert_int_equal(nx_opt_next(&s), NX_OPT_POSITIONAL);   /* "-" is stdin */
	assert_string_equal(s.word, "-");
	assert_int_equal(nx_opt_next(&s), NX_OPT_LONG);
	assert_null(nx_opt_value(&s));                          /* argv ends */
	assert_int_equal(nx_opt_next(&s), NX_OPT_DONE);
	assert_int_equal(nx_opt_next(&s), NX_OPT_DONE);
}

static void help_bad_and_double_dash(void **state)
{
	ARGV("-h", "--help", "-xyz", "--", "--help", "-t");
	struct nx_opt_scan s;

	(void)state;
	nx_opt_init(&s, argc, argv, 1);
	assert_int_equal(nx_opt_next(&s), NX_OPT_HELP);
	assert_int_equal(nx_opt_next(&s), NX_OPT_HELP);
	assert_int_equal(nx_opt_next(&s), NX_OPT_BAD);
	assert_string_equal(s.word, "-xyz");
	/* after "--" every word is an argument */
	assert_int_equal(nx_opt_next(&s), NX_OPT_POSITIONAL);
	assert_string_equal(s.word, "--help");
	assert_int_equal(nx_opt_next(&s), NX_OPT_POSITIONAL);
	assert_string_equal(s.word, "-t");
	assert_int_equal(nx_opt_next(&s), NX_OPT_DONE);
}

static void value_may_look_like_an_option(void **state)
{
	ARGV("--text", "--help", "--text=", "-i", "-h");
	struct nx_opt_scan s;

	(void)state;
	nx_opt_init(&s, argc, argv, 1);
	assert_int_equal(nx_opt_next(&s), NX_OPT_LONG);
	assert_string_equal(nx_opt_value(&s), "--help");
	assert_int_equal(nx_opt_next(&s), NX_OPT_LONG);
	assert_string_equal(nx_opt_value(&s), "");          /* --text= is an empty value */
	assert_int_equal(nx_opt_next(&s), NX_OPT_SHORT);
	assert_string_equal(nx_opt_value(&s), "-h");
	assert_int_equal(nx_opt_next(&s), NX_OPT_DONE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(long_short_and_values),
		cmocka_unit_test(help_bad_and_double_dash),
		cmocka_unit_test(value_may_look_like_an_option),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
