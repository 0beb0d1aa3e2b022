/*
 * fingerprint_small.c - which small teacher tensors are worth a fingerprint.
 *
 * A teacher tensor under min_bytes (4 KiB) copied whole is no finding on
 * its own, but many of them are (red team 7: 24 LayerNorm vectors of
 * 3 KiB, 72 KiB in all, passed).  So tensors down to NX_FP_SMALL_MIN_BYTES
 * are recorded too, and the student check adds up the ones it holds
 * (fingerprint.c).  What every model of a shape holds is left out, since
 * an honest student shares it with any teacher: what a fresh
 * initialisation writes without a random number generator.  Judged on the
 * stored bytes, whatever their type (a torch storage's type may be
 * unknown): a tensor whose elements, read at any width of 1, 2, 4 or 8
 * bytes, take at most 2 values (zeros, ones, a constant fill, LayerNorm's
 * gamma = 1 and beta = 0, an identity matrix, a 0/1 or 0/-inf mask), or
 * an arithmetic sequence (arange, linspace: as int32, int64, float32,
 * float16 or bfloat16).
 */
#include "fingerprint_int.h"

#include <math.h>
#include <string.h>

/* At most 2 distinct elements of w bytes. */
static bool two_values(const unsigned char *p, size_t n, size_t w)
{
	const unsigned char *a = p, *b = NULL;
	size_t i;

	for (i = w; i < n; i += w) {
		if (!memcmp(p + i, a, w) || (b && !memcmp(p + i, b, w)))
			continue;
		if (b)
			return false;
		b = p + i;
	}
	return true;
}

static uint64_t le(const unsigned char *p, size_t w)
{
	uint64_t v = 0;

	while (w--)
		v = v << 8 | p[w];
	return v;
}

/* Integers of w bytes, each the last plus the same step. */
static bool int_steps(const unsigned char *p, size_t n, size_t w)
{
	uint64_t d = le(p + w, w) - le(p, w), mask = w == 8 ? ~0ull : (1ull << (8 * w)) - 1;
	size_t i;

	for (i = 2 * w; i < n; i += w)
		if (((le(p + i, w) - le(p + i - w, w)) & mask) != (d & mask))
			return false;
	return true;
}

static double elem(const unsigned char *p, unsigned kind)
{
	uint32_t x;
	float f;

	if (kind == 4)
		x = (uint32_t)le(p, 4);
	else if (kind == 16)
		x = (uint32_t)le(p, 2) << 16;
	else
		x = nx_fp__f16_to_f32((uint16_t)le(p, 2));
	memcpy(&f, &x, 4);
	return f;
}

/* Floats (kind 4: float32, 10: float16, 16: bfloat16) equal to
 * v0 + i d to the type's precision. */
static bool float_steps(const unsigned char *p, size_t n, unsigned kind)
{
	size_t w = kind == 4 ? 4 : 2, i, k = n / w;
	/* the step from the ends: v1 - v0 carries v1's rounding error k times */
	double v0 = elem(p, kind), d = (elem(p + (k - 1) * w, kind) - v0) / (double)(k - 1);
	double eps = kind == 4 ? 1e-6 : kind == 10 ? 1e-3 : 8e-3;

	if (!isfinite(v0) || !isfinite(d) || d == 0)
		return false;
	for (i = 1; i < k; i++) {
		double v = elem(p + i * w, kind), want = v0 + (double)i * d;

		if (!isfinite(v) || fabs(v - want) > eps * (fabs(v0) + fabs((double)i * d)))
			return false;
	}
	return true;
}

bool nx_fp__trivial(const unsigned char *p, size_t n)
{
	static const size_t widths[] = { 1, 2, 4, 8 };
	size_t i;

	for (i = 0; i < sizeof(widths) / sizeof(widths[0]); i++)
		if (n % widths[i] == 0 && n >= widths[i] && two_values(p, n, widths[i]))
			return true;
	if (n % 4 == 0 && n >= 12 && (int_steps(p, n, 4) || float_steps(p, n, 4)))
		return true;
	if (n % 8 == 0 && n >= 24 && int_steps(p, n, 8))
		return true;
	return n % 2 == 0 && n >= 6 && (float_steps(p, n, 10) || float_steps(p, n, 16));
}
