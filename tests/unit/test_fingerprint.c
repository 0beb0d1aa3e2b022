/*
 * test_fingerprint.c - the content-defined chunker against the rule it
 * implements, rolled one byte at a time.  The chunker skips, warms up and
 * rolls four bytes a step (fingerprint_chunk.c); whatever the data and
 * however it is fed, its chunks must be the reference's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/lib/fingerprint/fingerprint_int.h"

#define DATA_LEN (512u << 10)

/* A chunk repeating a 1-8 byte pattern is not recorded. */
static bool flat(const unsigned char *c, size_t n)
{
	return n <= 8 || !memcmp(c, c + 4, n - 4) || !memcmp(c, c + 8, n - 8);
}

/* Lengths of the chunks recorded by the rule of fingerprint_int.h, byte by byte. */
static size_t reference(uint32_t *lens, const unsigned char *d, size_t len)
{
	const uint64_t *gear = fp_gear();
	uint64_t g = 0;
	size_t i, n = 0, k = 0;

	for (i = 0; i < len; i++) {
		g = (g << 1) + gear[d[i]];
		if (++n < FP_CHUNK_MIN || ((g & FP_CHUNK_MASK) && n < FP_CHUNK_MAX))
			continue;
		if (!flat(d + i + 1 - n, n))
			lens[k++] = (uint32_t)n;
		n = 0;
	}
	if (n && !flat(d + len - n, n))
		lens[k++] = (uint32_t)n;   /* cut by the end of the data */
	return k;
}

/* The chunks the chunker records for d, fed `step` bytes at a time. */
static size_t chunked(uint32_t *lens, const unsigned char *d, size_t len, size_t step)
{
	nx_fp_set *set = NULL;
	struct fp_hash h;
	nx_error err;
	size_t i, k;

	assert_int_equal(nx_fp_set_new(&set, &err), 0);
	assert_int_equal(fp_hash_begin(&h, set, NULL, &err), 0);
	for (i = 0; i < len; i += step)
		assert_int_equal(fp_hash_feed(&h, d + i, len - i < step ? len - i : step), 0);
	assert_int_equal(fp_hash_end(&h, true), 0);
	for (k = 0; k < set->nchunks; k++)
		lens[k] = set->chunks[k].len;
	nx_fp_set_free(set);
	return k;
}

static void same_chunks(const unsigned char *d, size_t len)
{
	static const size_t steps[] = { 1, 3, 4, 7, 4093, 65536, DATA_LEN };
	uint32_t *want = calloc(len, sizeof(*want)), *got = calloc(len, sizeof(*got));
	size_t nwant, s;

	assert_non_null(want);
	assert_non_null(got);
	nwant = reference(want, d, len);
	for (s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		size_t ngot = chunked(got, d, len, steps[s]);

		assert_int_equal(ngot, nwant);
		assert_memory_equal(got, want, nwant * sizeof(*want));
	}
	free(want);
	free(got);
}

static unsigned char *random_data(uint64_t seed)
{
	unsigned char *d = malloc(DATA_LEN);
	size_t i;

	assert_non_null(d);
	for (i = 0; i < DATA_LEN; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		d[i] = (unsigned char)(seed >> 56);
	}
	return d;
}

static void random_bytes(void **state)
{
	unsigned char *d = random_data(1);

	(void)state;
	same_chunks(d, DATA_LEN);
	same_chunks(d, FP_CHUNK_MIN - 1);       /* one chunk, cut by the end */
	same_chunks(d, FP_CHUNK_MIN + 5);
	free(d);
}

/*
 * A period-3 pattern whose boundary hash never hits the mask: every chunk
 * is cut at FP_CHUNK_MAX, the path the four-byte step must stop short of.
 * (Period 3 is no 1-8 byte repetition the chunker drops as flat.)
 */
static void forced_boundaries(void **state)
{
	unsigned char *d = malloc(DATA_LEN);
	uint32_t *lens = calloc(DATA_LEN, sizeof(*lens));
	unsigned v;
	size_t i, n = 0;

	(void)state;
	assert_non_null(d);
	assert_non_null(lens);
	for (v = 1; v < 256 && !n; v++) {
		for (i = 0; i < DATA_LEN; i++)
			d[i] = (unsigned char)(i % 3 == 0 ? v : i % 3 == 1 ? v * 7 : v * 13);
		n = reference(lens, d, 4 * FP_CHUNK_MAX);
		n = n == 4 && lens[0] == FP_CHUNK_MAX ? n : 0;
	}
	assert_true(n > 0);
	same_chunks(d, DATA_LEN);
	free(lens);
	free(d);
}

/* Random data with, every so often, a run that makes boundaries dense. */
static void mixed(void **state)
{
	unsigned char *d = random_data(7);
	size_t i;

	(void)state;
	for (i = 0; i + 5000 < DATA_LEN; i += 37000)
		memset(d + i, (int)(i & 0xff), 5000);
	same_chunks(d, DATA_LEN);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(random_bytes),
		cmocka_unit_test(forced_boundaries),
		cmocka_unit_test(mixed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
