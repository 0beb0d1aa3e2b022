/*
 * test_fingerprint.c - the content-defined chunker against the rule it
 * implements, rolled one byte at a time.  The chunker skips, warms up and
 * rolls four bytes a step (fingerprint_chunk.c); whatever the data and
 * however it is fed, its chunks must be the reference's.  Also: which
 * small teacher tensors are left out (nx_fp__trivial), and the storage
 * types read from a torch.save pickle (nx_fp__pickle_dtypes), and the
 * canonical 16-bit form (nx_fp__canon16): the same under any sign pattern
 * and power-of-two scale, different for one mantissa bit, and (eight
 * elements a step where the CPU has AVX2) equal to the one-element
 * reference loop whatever the data and however it is split.  And the
 * units check's block summary (nx_fp__units_block): its AVX2 path equals
 * the scalar reference, ties, NaN, infinities and subnormals included.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdbool.h>
#include <math.h>
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
	const uint64_t *gear = nx_fp__gear();
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
	assert_int_equal(nx_fp__hash_begin(&h, set, NULL, &err), 0);
	for (i = 0; i < len; i += step)
		assert_int_equal(nx_fp__hash_feed(&h, d + i, len - i < step ? len - i : step), 0);
	assert_int_equal(nx_fp__hash_end(&h, true), 0);
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

/* torch.save({'a': bfloat16 [4], 'b': float16 [3], 'c': float32 [2, 2]
 * transposed, 'd': bfloat16 [4]}) data.pkl, protocols 2 and 4 (torch 1.13):
 * 'd''s class is a memo reference (BINGET; MEMOIZE numbering in 4). */
static const unsigned char pickle2[] =
	"\x80\x02\x7d\x71\x00\x28\x58\x01\x00\x00\x00\x61\x71\x01\x63\x74\x6f\x72\x63\x68\x2e\x5f"
	"\x75\x74\x69\x6c\x73\x0a\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f\x74\x65\x6e\x73\x6f\x72\x5f"
	"\x76\x32\x0a\x71\x02\x28\x28\x58\x07\x00\x00\x00\x73\x74\x6f\x72\x61\x67\x65\x71\x03\x63"
	"\x74\x6f\x72\x63\x68\x0a\x42\x46\x6c\x6f\x61\x74\x31\x36\x53\x74\x6f\x72\x61\x67\x65\x0a"
	"\x71\x04\x58\x01\x00\x00\x00\x30\x71\x05\x58\x03\x00\x00\x00\x63\x70\x75\x71\x06\x4b\x04"
	"\x74\x71\x07\x51\x4b\x00\x4b\x04\x85\x71\x08\x4b\x01\x85\x71\x09\x89\x63\x63\x6f\x6c\x6c"
	"\x65\x63\x74\x69\x6f\x6e\x73\x0a\x4f\x72\x64\x65\x72\x65\x64\x44\x69\x63\x74\x0a\x71\x0a"
	"\x29\x52\x71\x0b\x74\x71\x0c\x52\x71\x0d\x58\x01\x00\x00\x00\x62\x71\x0e\x68\x02\x28\x28"
	"\x68\x03\x63\x74\x6f\x72\x63\x68\x0a\x48\x61\x6c\x66\x53\x74\x6f\x72\x61\x67\x65\x0a\x71"
	"\x0f\x58\x01\x00\x00\x00\x31\x71\x10\x68\x06\x4b\x03\x74\x71\x11\x51\x4b\x00\x4b\x03\x85"
	"\x71\x12\x4b\x01\x85\x71\x13\x89\x68\x0a\x29\x52\x71\x14\x74\x71\x15\x52\x71\x16\x58\x01"
	"\x00\x00\x00\x63\x71\x17\x68\x02\x28\x28\x68\x03\x63\x74\x6f\x72\x63\x68\x0a\x46\x6c\x6f"
	"\x61\x74\x53\x74\x6f\x72\x61\x67\x65\x0a\x71\x18\x58\x01\x00\x00\x00\x32\x71\x19\x68\x06"
	"\x4b\x04\x74\x71\x1a\x51\x4b\x00\x4b\x02\x4b\x02\x86\x71\x1b\x4b\x01\x4b\x02\x86\x71\x1c"
	"\x89\x68\x0a\x29\x52\x71\x1d\x74\x71\x1e\x52\x71\x1f\x58\x01\x00\x00\x00\x64\x71\x20\x68"
	"\x02\x28\x28\x68\x03\x68\x04\x58\x01\x00\x00\x00\x33\x71\x21\x68\x06\x4b\x04\x74\x71\x22"
	"\x51\x4b\x00\x4b\x04\x85\x71\x23\x4b\x01\x85\x71\x24\x89\x68\x0a\x29\x52\x71\x25\x74\x71"
	"\x26\x52\x71\x27\x75\x2e";
static const unsigned char pickle4[] =
	"\x80\x04\x95\x3c\x01\x00\x00\x00\x00\x00\x00\x7d\x94\x28\x8c\x01\x61\x94\x8c\x0c\x74\x6f"
	"\x72\x63\x68\x2e\x5f\x75\x74\x69\x6c\x73\x94\x8c\x12\x5f\x72\x65\x62\x75\x69\x6c\x64\x5f"
	"\x74\x65\x6e\x73\x6f\x72\x5f\x76\x32\x94\x93\x94\x28\x28\x8c\x07\x73\x74\x6f\x72\x61\x67"
	"\x65\x94\x8c\x05\x74\x6f\x72\x63\x68\x94\x8c\x0f\x42\x46\x6c\x6f\x61\x74\x31\x36\x53\x74"
	"\x6f\x72\x61\x67\x65\x94\x93\x94\x8c\x01\x30\x94\x8c\x03\x63\x70\x75\x94\x4b\x04\x74\x94"
	"\x51\x4b\x00\x4b\x04\x85\x94\x4b\x01\x85\x94\x89\x8c\x0b\x63\x6f\x6c\x6c\x65\x63\x74\x69"
	"\x6f\x6e\x73\x94\x8c\x0b\x4f\x72\x64\x65\x72\x65\x64\x44\x69\x63\x74\x94\x93\x94\x29\x52"
	"\x94\x74\x94\x52\x94\x8c\x01\x62\x94\x68\x04\x28\x28\x68\x05\x68\x06\x8c\x0b\x48\x61\x6c"
	"\x66\x53\x74\x6f\x72\x61\x67\x65\x94\x93\x94\x8c\x01\x31\x94\x68\x0a\x4b\x03\x74\x94\x51"
	"\x4b\x00\x4b\x03\x85\x94\x4b\x01\x85\x94\x89\x68\x10\x29\x52\x94\x74\x94\x52\x94\x8c\x01"
	"\x63\x94\x68\x04\x28\x28\x68\x05\x68\x06\x8c\x0c\x46\x6c\x6f\x61\x74\x53\x74\x6f\x72\x61"
	"\x67\x65\x94\x93\x94\x8c\x01\x32\x94\x68\x0a\x4b\x04\x74\x94\x51\x4b\x00\x4b\x02\x4b\x02"
	"\x86\x94\x4b\x01\x4b\x02\x86\x94\x89\x68\x10\x29\x52\x94\x74\x94\x52\x94\x8c\x01\x64\x94"
	"\x68\x04\x28\x28\x68\x05\x68\x08\x8c\x01\x33\x94\x68\x0a\x4b\x04\x74\x94\x51\x4b\x00\x4b"
	"\x04\x85\x94\x4b\x01\x85\x94\x89\x68\x10\x29\x52\x94\x74\x94\x52\x94\x75\x2e";

static void pickle_types(const unsigned char *p, size_t n)
{
	static const struct { const char *key, *name; int32_t dtype; } want[] = {
		{ "0", "a", 16 }, { "1", "b", 10 }, { "2", "c", 1 }, { "3", "d", 16 },
	};
	struct nx_fp__dtype *d = NULL;
	size_t nd = 0, i, cut;
	nx_error err;

	nx_error_clear(&err);
	assert_int_equal(nx_fp__pickle_dtypes(p, n, 4, &d, &nd, &err), 0);
	assert_int_equal(nd, 4);
	for (i = 0; i < nd; i++) {
		assert_string_equal(d[i].key, want[i].key);
		assert_int_equal(d[i].dtype, want[i].dtype);
		assert_int_equal(d[i].nname, 1);
		assert_memory_equal(d[i].name, want[i].name, 1);
	}
	free(d);
	/* no more types than the zip has storages: the records are bounded by
	 * the zip, not by the pickle (review: 6 pickle bytes a record, 384 MB
	 * from a 31 MB data.pkl) */
	assert_int_equal(nx_fp__pickle_dtypes(p, n, 2, &d, &nd, &err), 0);
	assert_int_equal(nd, 2);
	free(d);
	/* cut anywhere: no crash, no more than the whole finds */
	for (cut = 0; cut < n; cut++) {
		assert_int_equal(nx_fp__pickle_dtypes(p, cut, 4, &d, &nd, &err), 0);
		assert_true(nd <= 4);
		free(d);
	}
}

static void pickle_protocols(void **state)
{
	(void)state;
	pickle_types(pickle2, sizeof(pickle2) - 1);
	pickle_types(pickle4, sizeof(pickle4) - 1);
}

static void trivial(void **state)
{
	float f[768];
	uint16_t h[768];
	int64_t l[512];
	unsigned char r[3072];
	size_t i;

	(void)state;
	memset(f, 0, sizeof(f));
	assert_true(nx_fp__trivial((unsigned char *)f, sizeof(f)));      /* zeros */
	for (i = 0; i < 768; i++)
		f[i] = 1.0f;
	assert_true(nx_fp__trivial((unsigned char *)f, sizeof(f)));      /* gamma = 1 */
	for (i = 0; i < 768; i++)
		f[i] = i % 29 == 0 ? 1.0f : 0.0f;
	assert_true(nx_fp__trivial((unsigned char *)f, sizeof(f)));      /* identity rows */
	for (i = 0; i < 768; i++)
		f[i] = -1.0f + 2.0f * (float)i / 767.0f;
	assert_true(nx_fp__trivial((unsigned char *)f, sizeof(f)));      /* linspace */
	for (i = 0; i < 512; i++)
		l[i] = (int64_t)i;
	assert_true(nx_fp__trivial((unsigned char *)l, sizeof(l)));      /* position ids */
	for (i = 0; i < 768; i++)
		h[i] = (uint16_t)(0x3c00 + i);   /* float16 1 + i / 1024 */
	assert_true(nx_fp__trivial((unsigned char *)h, sizeof(h)));
	for (i = 0; i < 768; i++)
		f[i] = (float)i * 0.5f;
	f[700] += 0.25f;                                                  /* one value off */
	assert_false(nx_fp__trivial((unsigned char *)f, sizeof(f)));
	for (i = 0; i < sizeof(r); i++)
		r[i] = (unsigned char)(i * 2654435761u >> 13);
	assert_false(nx_fp__trivial(r, sizeof(r)));                       /* noise */
	for (i = 0; i < 768; i++)
		f[i] = i % 3 ? 0.0f : (float)(i % 7);                    /* few, not two values */
	assert_false(nx_fp__trivial((unsigned char *)f, sizeof(f)));
}

/* n float16 values of magnitude about 2^(e - 15), a few much smaller */
static void f16_values(uint16_t *h, size_t n, unsigned e)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint32_t r = (uint32_t)(i * 2654435761u) ^ (uint32_t)(i >> 3) * 40503u;

		h[i] = (uint16_t)(((e - (r >> 20) % 3) << 10) | (r & 0x3ffu));
		if (i % 97 == 5)
			h[i] = (uint16_t)(((e - 9) << 10) | (r & 0x3ffu));   /* 2^-9 of it: small */
		if (i % 131 == 7)
			h[i] = 0;
	}
}

static void canon(void **state)
{
	enum { N = 1000 };
	uint16_t a[N], b[N], ca[N], cb[N];
	int pa = FP_CANON_START, pb = FP_CANON_START;
	size_t i;

	(void)state;
	f16_values(a, N, 20);
	/* x -2^-6, signs flipped on every third element: exponents 20 -> 14 */
	for (i = 0; i < N; i++)
		b[i] = a[i] ? (uint16_t)((a[i] - (6u << 10)) ^ (i % 3 ? 0 : 0x8000u)) : 0;
	nx_fp__canon16(ca, a, N, false, &pa);
	nx_fp__canon16(cb, b, 600, false, &pb);           /* in two pieces */
	nx_fp__canon16(cb + 600, b + 600, N - 600, false, &pb);
	assert_memory_equal(ca, cb, sizeof(ca));
	/* x 2^-12: the small ones become subnormal and round; still equal */
	for (i = 0; i < N; i++) {
		unsigned e = a[i] >> 10, m = a[i] & 0x3ffu;

		b[i] = !a[i] ? 0 : e > 12 ? (uint16_t)(a[i] - (12u << 10))
			 : (uint16_t)((0x400u | m) >> (13 - e));   /* subnormal, truncated */
	}
	pb = FP_CANON_START;
	nx_fp__canon16(cb, b, N, false, &pb);
	assert_memory_equal(ca, cb, sizeof(ca));
	/* one mantissa bit of one ordinary element: different */
	memcpy(b, a, sizeof(a));
	b[500] ^= 1;
	pb = FP_CANON_START;
	nx_fp__canon16(cb, b, N, false, &pb);
	assert_memory_not_equal(ca, cb, sizeof(ca));
	/* bfloat16: x 2^40 and negated */
	for (i = 0; i < N; i++) {
		a[i] = (uint16_t)(0x3c00u + (uint16_t)(i * 2654435761u >> 20) % 0x300u);
		b[i] = (uint16_t)((a[i] + (40u << 7)) | 0x8000u);
	}
	pa = pb = FP_CANON_START;
	nx_fp__canon16(ca, a, N, true, &pa);
	nx_fp__canon16(cb, b, N, true, &pb);
	assert_memory_equal(ca, cb, sizeof(ca));
}

/* One random 16-bit element, drawn to hit every case of the canonical
 * form: zeros, subnormals, infinities and NaNs (either sign), drops of
 * 2^3 and more below the element before, and ordinary values near e. */
static uint16_t canon_elem(uint64_t *st, bool bf16, unsigned e)
{
	unsigned mb = bf16 ? 7 : 10, emax = bf16 ? 0xff : 0x1f, r, k;
	uint64_t x = (*st = *st * 6364136223846793005ull + 1442695040888963407ull);

	r = (unsigned)(x >> 33);
	k = r % 64;
	r >>= 6;
	if (k == 0)
		return (uint16_t)((r & 1) << 15);                          /* +-0 */
	if (k == 1)
		return (uint16_t)(((r & 1) << 15) | ((r >> 1) & ((1u << mb) - 1)));  /* subnormal */
	if (k == 2)
		return (uint16_t)(((r & 1) << 15) | emax << mb | ((r >> 1) & 3));   /* inf, NaN */
	if (k < 10)   /* 2^2 .. 2^9 below: kept or small */
		e = e > (k - 1) ? e - (k - 1) : 1;
	else
		e = e - 2 + r % 5;
	return (uint16_t)((((r >> 3) & 1) << 15) | (e % emax) << mb | ((r >> 4) & ((1u << mb) - 1)));
}

static void canon_vector(void **state)
{
	enum { N = 4099 };
	static uint16_t in[N], a[N], b[N];
	uint64_t st = 7;
	int round;

	(void)state;
	for (round = 0; round < 400; round++) {
		bool bf16 = round & 1;
		unsigned e = bf16 ? 5 + (unsigned)round % 240 : 3 + (unsigned)round % 26;
		int pa = FP_CANON_START, pb = FP_CANON_START;
		size_t i, at, n = N - (size_t)round % 13;

		for (i = 0; i < n; i++)
			in[i] = canon_elem(&st, bf16, e);
		if (round % 5 == 0)   /* leading zeros: no reference for a while */
			memset(in, 0, 2 * (size_t)(round % 37));
		nx_fp__canon16_ref(a, in, n, bf16, &pa);
		/* split at odd places: the reference carries across calls */
		for (at = 0; at < n;) {
			size_t k = 1 + (size_t)(st >> 40) % 300;

			st = st * 6364136223846793005ull + 1;
			if (k > n - at)
				k = n - at;
			nx_fp__canon16(b + at, in + at, k, bf16, &pb);
			at += k;
		}
		assert_memory_equal(a, b, 2 * n);
		assert_int_equal(pa, pb);
	}
}

/* Two doubles the same, bit for bit or both NaN. */
static bool same_double(double x, double y)
{
	return (x != x && y != y) || !memcmp(&x, &y, sizeof(x));
}

/* One element of a units block, drawn by kind: ties (a few levels, the
 * same |c| either side of the mean), NaN, infinities, subnormals, huge,
 * or a plain normal-ish value. */
static double units_elem(uint64_t *st, unsigned kind)
{
	uint64_t x = (*st = *st * 6364136223846793005ull + 1442695040888963407ull);
	double u = (double)(x >> 11) * 0x1p-53 - 0.5;
	unsigned r = (unsigned)(x >> 7) % 97;

	switch (kind) {
	case 0: return u;                                      /* random */
	case 1: return (double)((int)(r % 5) - 2);             /* ties: 5 levels */
	case 2: return r % 2 ? 1.5 : -1.5;                     /* one |c| for all */
	case 3: return r == 0 ? NAN : u;                       /* NaN, now and then */
	case 4: return r == 0 ? (x >> 63 ? -INFINITY : INFINITY) : u;
	case 5: return r < 3 ? (r == 1 ? -INFINITY : INFINITY) : u;
	case 6: return u * 0x1p-1060;                          /* subnormals */
	case 7: return u * 0x1p1020;                           /* sums overflow */
	case 8: return r < 60 ? 0.25 : u;                      /* mostly one value */
	case 9: return (float)u;                               /* float32 data */
	default: return r < 48 ? (r % 2 ? -0.0 : 0.0) : (double)(r % 3);
	}
}

/* The units block (nx_fp__units_block, AVX2 where the CPU has it) is
 * its reference's, field for field, on random and adversarial data. */
static void units_vector(void **state)
{
	struct nx_fp__units_block a, b;
	double v[FP_UNITS_B];
	uint64_t st = 11;
	int round, i;

	(void)state;
	for (round = 0; round < 20000; round++) {
		unsigned kind = (unsigned)round % 13;

		for (i = 0; i < FP_UNITS_B; i++)   /* 11, 12: one group of eight small */
			v[i] = units_elem(&st, kind > 10 ? 0 : kind) *
			       (kind > 10 && i % 8 == 3 ? 1e-3 * (kind - 10) : 1);
		if (round % 7 == 0)   /* a tie made on purpose: a copy of another's value */
			v[(round / 7) % FP_UNITS_B] = v[(round / 3) % FP_UNITS_B];
		memset(&a, 0x55, sizeof(a));
		memset(&b, 0xaa, sizeof(b));
		nx_fp__units_block_ref(&a, v);
		nx_fp__units_block(&b, v);
		for (i = 0; i < FP_UNITS_B; i++)
			assert_true(same_double(a.c[i], b.c[i]));
		for (i = 0; i < FP_UNITS_TOP; i++) {
			assert_int_equal(a.ord[i], b.ord[i]);
			assert_true(same_double(a.a[i], b.a[i]));
		}
		assert_int_equal(a.up, b.up);
		assert_int_equal(a.down, b.down);
		assert_true(same_double(a.var, b.var));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(random_bytes),
		cmocka_unit_test(forced_boundaries),
		cmocka_unit_test(mixed),
		cmocka_unit_test(pickle_protocols),
		cmocka_unit_test(trivial),
		cmocka_unit_test(canon),
		cmocka_unit_test(canon_vector),
		cmocka_unit_test(units_vector),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
