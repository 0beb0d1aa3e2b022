/* test_array.c - nx_array_grow: overflow, cap, doubling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/error.h"
#include "../../src/util/array_int.h"

static void grows_by_doubling(void **state)
{
	int *v = NULL;
	size_t cap = 0, n, reallocs = 0, last = 0;

	for (n = 0; n < 10000; n++) {
		assert_int_equal(NX_ARRAY_PUSH(v, cap, n), 0);
		assert_true(cap > n);
		v[n] = (int)n;
		if (cap != last)
			reallocs++;
		last = cap;
	}
	for (n = 0; n < 10000; n++)
		assert_int_equal(v[n], (int)n);
	assert_true(reallocs < 16);          /* 8, 16, ... 16384 */
	assert_int_equal(NX_ARRAY_PUSH(v, cap, 5), 0);   /* room: nothing */
	assert_int_equal(cap, last);
	free(v);
}

static void cap_is_kept(void **state)
{
	char *v = NULL;
	size_t cap = 0;

	assert_int_equal(nx_array_grow(&v, &cap, 5, 1, 10), 0);
	assert_int_equal(cap, 8);
	assert_int_equal(nx_array_grow(&v, &cap, 9, 1, 10), 0);
	assert_int_equal(cap, 10);           /* doubling stops at the cap */
	assert_int_equal(nx_array_grow(&v, &cap, 11, 1, 10), NX_ELIMIT);
	assert_int_equal(cap, 10);
	assert_non_null(v);
	free(v);
}

static void overflow_refused(void **state)
{
	uint64_t *v = NULL;
	size_t cap = 0;

	assert_int_equal(nx_array_grow(&v, &cap, SIZE_MAX / 4, sizeof(*v), SIZE_MAX), NX_ENOMEM);
	assert_null(v);
	assert_int_equal(cap, 0);
	assert_int_equal(nx_array_grow(&v, &cap, 4, sizeof(*v), SIZE_MAX), 0);
	assert_int_equal(cap, 8);
	/* Refused before realloc, the old block kept. */
	assert_int_equal(nx_array_grow(&v, &cap, SIZE_MAX / sizeof(*v) + 1, sizeof(*v), SIZE_MAX),
			 NX_ENOMEM);
	assert_non_null(v);
	assert_int_equal(cap, 8);
	free(v);
}

static void push_exact_grows_by_one(void **state)
{
	long *v = NULL;
	size_t n;

	for (n = 0; n < 100; n++) {
		assert_int_equal(NX_ARRAY_PUSH_EXACT(v, n), 0);
		v[n] = (long)n;
	}
	assert_int_equal(v[99], 99);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(grows_by_doubling),
		cmocka_unit_test(cap_is_kept),
		cmocka_unit_test(overflow_refused),
		cmocka_unit_test(push_exact_grows_by_one),
	};
	return cmocka_run_group_tests_name("array", tests, NULL, NULL);
}
