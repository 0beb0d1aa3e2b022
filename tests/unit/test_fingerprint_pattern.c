/*
 * test_fingerprint_pattern.c - the small-tensor scan's AVX2 loop
 * (scan4_avx2, src/lib/fingerprint/fingerprint_pattern.c) pends the same
 * anchors, in the same order, and stops at the same offset as the scalar
 * reference (scan_ref): on random float32 data and on data made of NaNs
 * (several payloads), infinities, subnormals, zeros and ties (long runs of
 * one value, so that one anchor is everywhere), at every start offset mod
 * 16 and lengths that leave every tail, with the run's filter and with a
 * filter every anchor hits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/lib/fingerprint/fingerprint_pattern.c"

#define DATA (FP_RING / 4)   /* float32 elements: the ring holds them all */
#define AT 1000u             /* the absolute offset of data[0] */

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Element i of the adversarial data: specials and ties, some random. */
static float special(uint64_t *st, size_t i)
{
	static const uint32_t bits[] = {
		0x7fc00000u, 0x7fc00001u, 0xffc00000u, 0x7f800001u, 0x7fbfffffu,   /* NaNs */
		0x7f800000u, 0xff800000u,                                          /* inf */
		0x00000001u, 0x807fffffu, 0x00400000u,                             /* subnormal */
		0x00000000u, 0x80000000u, 0x3f800000u,                             /* 0, -0, 1 */
	};
	uint32_t b;
	float f;

	if ((i / 64) % 3 == 0)   /* a run of one value: every anchor in it ties */
		b = bits[(i / 64) % (sizeof(bits) / sizeof(bits[0]))];
	else if (rnd(st) % 2)
		b = bits[rnd(st) % (sizeof(bits) / sizeof(bits[0]))];
	else
		b = (uint32_t)rnd(st);
	memcpy(&f, &b, sizeof(f));
	return f;
}

/* Patterns whose anchors are 16 bytes of data: at element offsets (found)
 * and at odd ones (a scan of 4-byte elements passes over them). */
static void patterns(struct fp_patterns *s, const unsigned char *data, uint64_t *st, bool all)
{
	size_t i;

	memset(s, 0, sizeof(*s));
	s->k0 = rnd(st) | 1;
	s->k1 = rnd(st) | 1;
	s->n = 64;
	s->p = calloc(s->n, sizeof(*s->p));
	s->pool = malloc(s->n * FP_ANCHOR);
	s->ntensors = (uint32_t)s->n;
	s->stamp = calloc(s->n, sizeof(*s->stamp));
	assert_true(s->p && s->pool && s->stamp);
	for (i = 0; i < s->n; i++) {
		size_t at = (size_t)(rnd(st) % (DATA * 4 - FP_ANCHOR)) & (i % 2 ? ~(size_t)3 : ~(size_t)0);

		memcpy(s->pool + i * FP_ANCHOR, data + at, FP_ANCHOR);
		s->p[i].anchor = ahash(s->k0, s->k1, data + at);
		s->p[i].len = FP_ANCHOR;
		s->p[i].t = (uint32_t)i;
		s->p[i].data = i * FP_ANCHOR;
	}
	qsort(s->p, s->n, sizeof(*s->p), pat_cmp);
	s->fbits = FP_FILTER_MIN;
	s->filter = calloc(((size_t)1 << s->fbits) / 64, sizeof(uint64_t));
	assert_non_null(s->filter);
	for (i = 0; i < ((size_t)1 << s->fbits) / 64; i++)
		s->filter[i] = all ? ~0ull : 0;
	for (i = 0; !all && i < s->n; i++) {
		uint64_t h = s->p[i].anchor;

		s->filter[h >> (64 - s->fbits + 6)] |= fmask(h, 64 - s->fbits);
	}
	s->sorted = true;
}

/* anchor_found reads the anchor's bytes back from the ring: data there
 * at its absolute offsets */
static void scan_with(struct nx_fp__pscan *ps, struct fp_patterns *s, nx_error *err, bool avx,
		      unsigned char *ring, const unsigned char *lin, size_t from, size_t to)
{
	size_t i;

	memset(ps, 0, sizeof(*ps));
	for (i = 0; i < FP_RING; i++)
		ring[(AT + i) % FP_RING] = lin[i];
	ps->ring = ring;
	ps->s = s;
	ps->step = 4;
	ps->err = err;
	assert_int_equal(avx ? scan4_avx2(ps, lin, from, to, AT) : scan_ref(ps, lin, from, to, AT),
			 0);
}

static void both_agree(bool adversarial, bool all)
{
	uint64_t st = adversarial ? 0x243f6a8885a308d3ull : 0x13198a2e03707344ull;
	float *v = malloc(DATA * sizeof(*v));
	unsigned char *ring = malloc(FP_RING);
	const unsigned char *data = (const unsigned char *)v;
	struct fp_patterns s;
	struct nx_fp__pscan a, b;
	nx_error err;
	size_t i, from, to, found = 0;

	assert_true(v && ring);
	for (i = 0; i < DATA; i++) {
		double g = (double)(rnd(&st) >> 11) * 0x1p-53 - 0.5;

		v[i] = adversarial ? special(&st, i) : (float)g;
	}
	patterns(&s, data, &st, all);
	nx_error_clear(&err);
	for (from = 0; from < 16; from++)
		for (to = from; to < from + 80; to++) {
			size_t end = to < 80 ? to : DATA * 4 - (to - 80);

			scan_with(&a, &s, &err, false, ring, data, from, end);
			scan_with(&b, &s, &err, true, ring, data, from, end);
			assert_int_equal(a.next, b.next);
			assert_int_equal(a.npending, b.npending);
			for (i = 0; i < a.npending; i++) {
				assert_int_equal(a.pending[i].start, b.pending[i].start);
				assert_int_equal(a.pending[i].pat, b.pending[i].pat);
			}
			found += a.npending;
			free(a.pending);
			free(b.pending);
		}
	/* the case is about something: anchors were found (ties: many) */
	assert_true(found > 0);
	free(s.p);
	free(s.pool);
	free(s.stamp);
	free(s.filter);
	free(ring);
	free(v);
}

static void pattern_scan_random(void **state)
{
	(void)state;
	if (!__builtin_cpu_supports("avx2"))
		skip();
	both_agree(false, false);
	both_agree(false, true);
}

static void pattern_scan_adversarial(void **state)
{
	(void)state;
	if (!__builtin_cpu_supports("avx2"))
		skip();
	both_agree(true, false);
	both_agree(true, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pattern_scan_random),
		cmocka_unit_test(pattern_scan_adversarial),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
