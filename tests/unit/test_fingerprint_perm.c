/*
 * test_fingerprint_perm.c - perm_sort (src/lib/fingerprint/fingerprint_perm.c),
 * the sort of every vector's values the per-vector check reads: its
 * comparisons stay O(n log n) against McIlroy's adversary ("A Killer
 * Adversary for Quicksort", 1999), which decides each comparison's answer
 * as the sort runs so as to defeat any pivot choice, and it sorts.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* The adversary: x[] holds item ids; an item keeps the value "gas" (above
 * every solid one) until a comparison needs it solid. */
static int *adv_val;
static int adv_gas, adv_nsolid, adv_candidate;
static uint64_t adv_ncmp;

static int adv_cmp(double a, double b)
{
	int x = (int)a, y = (int)b;

	adv_ncmp++;
	if (!adv_val)
		return a < b ? -1 : a > b;
	if (adv_val[x] == adv_gas && adv_val[y] == adv_gas) {
		if (x == adv_candidate)
			adv_val[x] = adv_nsolid++;
		else
			adv_val[y] = adv_nsolid++;
	}
	if (adv_val[x] == adv_gas)
		adv_candidate = x;
	else if (adv_val[y] == adv_gas)
		adv_candidate = y;
	return adv_val[x] - adv_val[y];
}

#define PERM_LT(a, b) (adv_cmp((a), (b)) < 0)
#include "../../src/lib/fingerprint/fingerprint_perm.c"

#define N 65536

/* Against the adversary: at most 8 n log2 n comparisons (introsort made
 * 3.9e6 at n = 65536; the quicksort alone made 1.07e9, 128 times this
 * bound). */
static void sort_adversary(void **state)
{
	double *x = malloc(N * sizeof *x);
	uint64_t bound = 8ull * N * 16;

	(void)state;
	adv_val = malloc(N * sizeof *adv_val);
	assert_non_null(x);
	assert_non_null(adv_val);
	adv_gas = N;
	adv_nsolid = 0;
	adv_candidate = 0;
	adv_ncmp = 0;
	for (int i = 0; i < N; i++) {
		x[i] = i;
		adv_val[i] = adv_gas;
	}
	perm_sort(x, N);
	print_message("adversary: %llu comparisons for n = %d\n", (unsigned long long)adv_ncmp, N);
	assert_true(adv_ncmp <= bound);
	/* sorted by the values the adversary fixed */
	for (int i = 1; i < N; i++)
		assert_true(adv_val[(int)x[i - 1]] <= adv_val[(int)x[i]]);
	free(adv_val);
	adv_val = NULL;
	free(x);
}

/* Plain values (the adversary off): sorted, the same multiset, for sizes
 * about the insertion cut and many ties. */
static void sort_values(void **state)
{
	static const size_t sizes[] = { 0, 1, 2, 15, 16, 17, 100, 1000, 65536 };
	uint64_t st = 12345;

	(void)state;
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		for (int kind = 0; kind < 4; kind++) {
			size_t n = sizes[s];
			double *x = malloc((n + 1) * sizeof *x), sum = 0, sum2 = 0;

			assert_non_null(x);
			for (size_t i = 0; i < n; i++) {
				st = st * 6364136223846793005ull + 1442695040888963407ull;
				x[i] = kind == 0   ? (double)(st >> 11) / 9007199254740992.0 - 0.5
				       : kind == 1 ? (double)(st >> 61)
				       : kind == 2 ? (double)i
						   : (double)(n - i);
				sum += x[i];
				sum2 += x[i] * x[i];
			}
			perm_sort(x, n);
			for (size_t i = 1; i < n; i++)
				assert_true(x[i - 1] <= x[i]);
			for (size_t i = 0; i < n; i++) {
				sum -= x[i];
				sum2 -= x[i] * x[i];
			}
			assert_true(fabs(sum) < 1e-6 && fabs(sum2) < 1e-3);
			free(x);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sort_values),
		cmocka_unit_test(sort_adversary),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
