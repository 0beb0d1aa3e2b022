/*
 * test_values.c - fingerprint_values.c, the order-invariant value
 * fingerprint: a teacher tensor's values found in a student tensor
 * reordered, widened, scaled by a power of two or with the lowest bit
 * flipped; an unrelated tensor of the same distribution is not a copy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/lib/fingerprint/fingerprint_int.h"

#define N 16384   /* 64 KiB of float32: about 256 samples at the starting rate */

static uint64_t seed = 88172645463325252ull;

static float gauss(void)
{
	double u, v;

	seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
	u = ((double)(seed >> 11) + 1) / 9007199254740993.0;
	seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
	v = (double)(seed >> 11) / 9007199254740992.0;
	return (float)(sqrt(-2 * log(u)) * cos(2 * M_PI * v) * 0.05);
}

static nx_fp_set *teacher_set(const float *w)
{
	nx_fp_set *set = NULL;
	struct nx_fp__vfeed f;

	assert_int_equal(nx_fp_set_new(&set, NULL), 0);
	assert_int_equal(nx_fp__vfeed_teacher(&f, set, "layer", NULL), 0);
	/* fed in uneven pieces, as a file's reads come */
	assert_int_equal(nx_fp__vfeed(&f, (const unsigned char *)w, 4 * 1000 + 3), 0);
	assert_int_equal(nx_fp__vfeed(&f, (const unsigned char *)w + 4003, 4 * N - 4003), 0);
	return set;
}

/* Feed bytes as a student tensor of dtype; the match. */
static struct fp_values_match student(const nx_fp_set *set, int32_t dtype, const void *p,
				      size_t bytes)
{
	struct fp_values_match m;
	struct nx_fp__vfeed f;

	memset(&m, 0, sizeof(m));
	assert_true(nx_fp__vfeed_student(&f, set, dtype, NULL));
	assert_int_equal(nx_fp__vfeed(&f, p, bytes), 0);
	nx_fp__vfeed_judge(&f, &m);
	return m;
}

static void copies_are_found(void **state)
{
	float *w = malloc(4 * N), *x = malloc(4 * N);
	double *d = malloc(8 * N);
	nx_fp_set *set;
	struct fp_values_match m;
	size_t i;

	(void)state;
	for (i = 0; i < N; i++)
		w[i] = gauss();
	set = teacher_set(w);
	assert_true(nx_fp__values_rate(set) > 0);
	/* the same order */
	m = student(set, 1, w, 4 * N);
	assert_true(m.hits >= m.samples / 2 && m.samples >= FP_VALUES_MIN);
	assert_string_equal(m.name, "layer");
	/* reversed */
	for (i = 0; i < N; i++)
		x[i] = w[N - 1 - i];
	m = student(set, 1, x, 4 * N);
	assert_true(m.hits >= m.samples / 2);
	/* scaled by 2: found at shift 1 */
	for (i = 0; i < N; i++)
		x[i] = 2 * w[i];
	m = student(set, 1, x, 4 * N);
	assert_true(m.hits >= m.samples / 2);
	assert_int_equal(m.shift, 1);
	/* widened to float64 */
	for (i = 0; i < N; i++)
		d[i] = w[i];
	m = student(set, 11, d, 8 * N);
	assert_true(m.hits >= m.samples / 2);
	nx_fp_set_free(set);
	free(w);
	free(x);
	free(d);
}

static void unrelated_tensor_is_not_a_copy(void **state)
{
	float *w = malloc(4 * N), *x = malloc(4 * N);
	nx_fp_set *set;
	struct fp_values_match m;
	size_t i;

	(void)state;
	for (i = 0; i < N; i++)
		w[i] = gauss();
	for (i = 0; i < N; i++)
		x[i] = gauss();   /* the same distribution, other draws */
	set = teacher_set(w);
	m = student(set, 1, x, 4 * N);
	assert_int_equal(m.hits, 0);
	/* half the teacher's values and half noise: not half the samples */
	memcpy(x, w, 4 * (N / 4));
	m = student(set, 1, x, 4 * N);
	assert_int_equal(m.hits, 0);
	nx_fp_set_free(set);
	free(w);
	free(x);
}

/*
 * The per-tensor map of (sample, scale) pairs counted holds FP_CMAP_MAX of
 * them; past that a new pair was not counted at all, so a student tensor
 * that first held 40% of a teacher tensor's values at each of 240 scales
 * (no scale half of the samples: no copy) hid a copy at scale 1 after
 * them.  The teacher: 2^20 values, about 16K samples; 1.6M pairs.
 */
#define BIG (1u << 20)
static void a_copy_after_a_million_pairs_is_found(void **state)
{
	float *w = malloc(4 * (size_t)BIG), *x = malloc(4 * (size_t)BIG);
	nx_fp_set *set = NULL;
	struct fp_values_match m;
	struct nx_fp__vfeed f;
	size_t i;
	int k;

	(void)state;
	assert_non_null(w);
	assert_non_null(x);
	for (i = 0; i < BIG; i++)
		w[i] = gauss();
	assert_int_equal(nx_fp_set_new(&set, NULL), 0);
	assert_int_equal(nx_fp__vfeed_teacher(&f, set, "layer", NULL), 0);
	assert_int_equal(nx_fp__vfeed(&f, (const unsigned char *)w, 4 * (size_t)BIG), 0);
	memset(&m, 0, sizeof(m));
	assert_true(nx_fp__vfeed_student(&f, set, 1, NULL));
	for (k = -120; k <= 120; k++) {
		size_t n = 0;

		if (!k)
			continue;
		/* a different 40% at each scale */
		for (i = 0; i < BIG; i++)
			if ((i * 2654435761u + (size_t)k * 40503u) % 100 < 40)
				x[n++] = ldexpf(w[i], k);
		assert_int_equal(nx_fp__vfeed(&f, (const unsigned char *)x, 4 * n), 0);
	}
	/* then the copy, reversed */
	for (i = 0; i < BIG; i++)
		x[i] = w[BIG - 1 - i];
	assert_int_equal(nx_fp__vfeed(&f, (const unsigned char *)x, 4 * (size_t)BIG), 0);
	nx_fp__vfeed_judge(&f, &m);
	assert_true(m.samples >= FP_VALUES_MIN);
	assert_true(m.hits >= m.samples / 2);
	assert_int_equal(m.shift, 0);
	nx_fp_set_free(set);
	free(w);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(copies_are_found),
		cmocka_unit_test(unrelated_tensor_is_not_a_copy),
		cmocka_unit_test(a_copy_after_a_million_pairs_is_found),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
