/*
 * test_quant_par.c - the helper threads of a quantizing export
 * (src/lib/export/quant_par.c) when the pthread calls fail: the lock or a
 * condition that cannot be made starts no helper, a helper that cannot be
 * created is one less, and in every case each piece runs exactly once.
 * The pthread calls are replaced here by wrappers that fail on request.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

static int fail_mutex, fail_cond_at, fail_create_at;  /* 0: never; N: the Nth call */
static int mutex_inits, cond_inits, creates;

static int test_mutex_init(pthread_mutex_t *m, const pthread_mutexattr_t *a)
{
	if (fail_mutex && ++mutex_inits == fail_mutex) {
		memset(m, 0xa5, sizeof(*m));   /* what a failed init leaves: not a lock */
		return EAGAIN;
	}
	return pthread_mutex_init(m, a);
}

static int test_cond_init(pthread_cond_t *c, const pthread_condattr_t *a)
{
	if (fail_cond_at && ++cond_inits == fail_cond_at) {
		memset(c, 0xa5, sizeof(*c));
		return ENOMEM;
	}
	return pthread_cond_init(c, a);
}

static int test_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *), void *arg)
{
	if (++creates == fail_create_at)
		return EAGAIN;
	return pthread_create(t, a, fn, arg);
}

#define pthread_mutex_init test_mutex_init
#define pthread_cond_init test_cond_init
#define pthread_create test_create
#include "../../src/lib/export/quant_par.c"
#undef pthread_mutex_init
#undef pthread_cond_init
#undef pthread_create

#define PIECES 64

static unsigned ran[PIECES];
static pthread_t caller;
static unsigned others;   /* pieces run by a helper */

static void piece(void *ctx, unsigned i, unsigned n)
{
	(void)ctx;
	assert_int_equal(n, PIECES);
	__atomic_fetch_add(&ran[i], 1, __ATOMIC_RELAXED);
	if (!pthread_equal(pthread_self(), caller))
		__atomic_fetch_add(&others, 1, __ATOMIC_RELAXED);
}

/* two jobs of PIECES pieces with 4 threads wanted; returns the threads used */
static unsigned export_with(int mutex_at, int cond_at, int create_at)
{
	struct nx_export_opts o;
	struct ex x;
	unsigned i, threads;

	memset(&o, 0, sizeof(o));
	memset(&x, 0, sizeof(x));
	o.quantize_threads = 4;
	x.o = &o;
	fail_mutex = mutex_at, fail_cond_at = cond_at, fail_create_at = create_at;
	mutex_inits = cond_inits = creates = 0;
	memset(ran, 0, sizeof(ran));
	others = 0;
	caller = pthread_self();
	nx_export__par_run(&x, piece, NULL, PIECES);
	nx_export__par_run(&x, piece, NULL, PIECES);
	for (i = 0; i < PIECES; i++)
		assert_int_equal(ran[i], 2);
	assert_non_null(x.par);
	threads = x.par->nthreads;
	nx_export__par_release(&x);
	assert_null(x.par);
	return threads;
}

static void all_helpers_start(void **state)
{
	(void)state;
	assert_int_equal(export_with(0, 0, 0), 4);
	assert_int_equal(creates, 3);
}

static void no_lock_no_helpers(void **state)
{
	(void)state;
	assert_int_equal(export_with(1, 0, 0), 1);
	assert_int_equal(creates, 0);
	assert_int_equal(others, 0);
	assert_int_equal(mutex_inits, 1);   /* not tried again for the second job */
}

static void no_condition_no_helpers(void **state)
{
	(void)state;
	assert_int_equal(export_with(0, 1, 0), 1);
	assert_int_equal(creates, 0);
	assert_int_equal(export_with(0, 2, 0), 1);
	assert_int_equal(creates, 0);
	assert_int_equal(others, 0);
}

static void a_helper_that_does_not_start_is_one_less(void **state)
{
	(void)state;
	assert_int_equal(export_with(0, 0, 2), 2);
	assert_int_equal(export_with(0, 0, 1), 1);
	assert_int_equal(others, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(all_helpers_start),
		cmocka_unit_test(no_lock_no_helpers),
		cmocka_unit_test(no_condition_no_helpers),
		cmocka_unit_test(a_helper_that_does_not_start_is_one_less),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
