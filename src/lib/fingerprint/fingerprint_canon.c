/*
 * fingerprint_canon.c - 16-bit forms with the sign and the scale taken out.
 *
 * The value sample (fingerprint_values.c) finds a float32 teacher tensor
 * negated or scaled by a power of two by its 23-bit mantissas; a float16
 * value has 10 mantissa bits and a bfloat16 one 7, which an honest tensor
 * of any size holds all of, so a sample of them shows nothing.  But the
 * sequence does: x 2^k adds k to every exponent and changes no mantissa,
 * and a sign flip changes one bit.  So a 16-bit stream is also hashed in
 * a canonical form - each element with its sign bit cleared and its
 * exponent replaced by the difference from the exponent of the element
 * before it (modulo the field; the first element's is 0) - which any
 * constant power-of-two scale and any sign pattern leave as it was.
 * Scaled down, a float16 tensor's smallest values become subnormal and
 * lose bits (x 2^-5: a teacher of standard deviation 0.125 has 1% of
 * them there), so the exponent of a subnormal is its value's (the
 * mantissa normalized), and an element more than 2^FP_CANON_DROP below
 * the one before it - zeros too - is one token, FP_CANON_SMALL, and not
 * the next one's reference: whatever rounding did to it is not hashed.
 * Infinities and NaNs keep their bits.  The top bit marks those tokens.
 * Cut into content-defined chunks like any tensor (fingerprint_chunk.c),
 * a piece of it is found too.
 *
 * Teacher side (fingerprint_forms.c): a float32 tensor's float16 and
 * bfloat16 casts (so also a 16-bit teacher tensor, widened and cast back)
 * are recorded in this form.  Student side (nx_fp__canon_*): a float16 or
 * bfloat16 tensor's elements, and a float32 tensor's elements whose
 * mantissa fits one of the 16-bit types, at any exponent (a 16-bit
 * teacher tensor scaled and widened; an honest float32 weight is one in
 * 2^13 or 2^16: the others are left out of the stream, so it costs a test
 * per element and a hash of almost nothing).
 *
 * What two equal canonical streams mean: the same mantissas, the same
 * zeros, exponents apart by one constant, signs anything - a copy.
 * A stream whose chunks all repeat a 1-8 byte pattern (a constant fill at
 * any scale) is in every model and never recorded (fp_hash.varied).
 */
#include "fingerprint_int.h"

#include <stdlib.h>
#include <string.h>


#define CANON_ELEMS 8192u   /* elements converted at a time */

static fp_cand_fn next_cand_pick(void);

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "16-bit elements are read in the host's order: little-endian only"
#endif

/* Selects, not branches: whether an element is small is as random as
 * the weights (a branch on it was most of the teacher side's cost). */
void nx_fp__canon16_ref(uint16_t *out, const uint16_t *in, size_t n, bool bf16, int *prev)
{
	const unsigned mb = bf16 ? 7 : 10, emax = bf16 ? 0xff : 0x1f;
	const unsigned mmask = (1u << mb) - 1;
	int p = *prev;
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned a = in[i] & 0x7fffu, e = a >> mb, m = a & mmask, tok;
		int ee = (int)e, p0;
		bool keep;

		if (__builtin_expect(e == 0 && a != 0, 0)) {
			/* subnormal: its value's exponent, the mantissa normalized */
			int msb = 31 - __builtin_clz(m);

			ee = msb - (int)mb + 1;
			m = (m << (mb - (unsigned)msb)) & mmask;
		}
		p0 = p == FP_CANON_START ? ee : p;
		/* infinity, NaN: as they are; zero, small: one token */
		keep = a != 0 && e != emax && ee >= p0 - FP_CANON_DROP;
		tok = (((unsigned)(ee - p0) & emax) << mb) | m;
		tok = keep ? tok : e == emax ? 0x8000u | a : FP_CANON_SMALL;
		out[i] = (uint16_t)tok;
		p = keep ? ee : p;
	}
	*prev = p;
}

#if defined(__x86_64__)
#include <immintrin.h>

/*
 * The scalar loop was one long chain of dependent operations an element
 * (decode, normalize, compare, select) over both casts of every teacher
 * float32 tensor.  Only the reference exponent is serial: an element's is
 * that of the last element kept before it.  So three passes over
 * CANON_BLOCK elements: eight a step decode each element to the exponent
 * it is kept by (or one that never is: zero, infinity, NaN); a scalar
 * loop of one compare and one select an element carries the reference;
 * eight a step make the tokens.
 */
#define CANON_BLOCK 1024

struct canon_dec {
	__m256i a, ee, m, special, keepable;
};

/* Eight 16-bit elements (widened to 32-bit lanes) decoded as
 * nx_fp__canon16_ref does: a subnormal's exponent is its value's and
 * its mantissa normalized (msb read from the float conversion). */
__attribute__((target("avx2"))) static inline struct canon_dec
canon_decode(__m256i x, unsigned mb, unsigned emax)
{
	const __m256i mmask = _mm256_set1_epi32((1 << mb) - 1), zero = _mm256_setzero_si256();
	const __m128i shift = _mm_cvtsi32_si128((int)mb);
	struct canon_dec d;
	__m256i e, nz, sub, msb, ones = _mm256_set1_epi32(-1);

	d.a = _mm256_and_si256(x, _mm256_set1_epi32(0x7fff));
	e = _mm256_srl_epi32(d.a, shift);
	d.m = _mm256_and_si256(d.a, mmask);
	nz = _mm256_xor_si256(_mm256_cmpeq_epi32(d.a, zero), ones);
	d.special = _mm256_cmpeq_epi32(e, _mm256_set1_epi32((int)emax));
	d.keepable = _mm256_andnot_si256(d.special, nz);
	sub = _mm256_and_si256(_mm256_cmpeq_epi32(e, zero), nz);
	/* m < 2^10 converts exactly: its float exponent is its msb */
	msb = _mm256_sub_epi32(_mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(d.m)), 23),
			       _mm256_set1_epi32(127));
	d.ee = _mm256_blendv_epi8(e, _mm256_sub_epi32(msb, _mm256_set1_epi32((int)mb - 1)), sub);
	d.m = _mm256_blendv_epi8(d.m, _mm256_and_si256(_mm256_sllv_epi32(d.m, _mm256_sub_epi32(
						_mm256_set1_epi32((int)mb), msb)), mmask), sub);
	return d;
}

__attribute__((target("avx2"))) static void canon16_avx2(uint16_t *out, const uint16_t *in,
							  size_t n, bool bf16, int *prev)
{
	const unsigned mb = bf16 ? 7 : 10, emax = bf16 ? 0xff : 0x1f;
	const __m256i never = _mm256_set1_epi32(INT16_MIN), vemax = _mm256_set1_epi32((int)emax),
		      small = _mm256_set1_epi32(FP_CANON_SMALL), top = _mm256_set1_epi32(0x8000),
		      one = _mm256_set1_epi32(1), drop = _mm256_set1_epi32(FP_CANON_DROP);
	const __m128i shift = _mm_cvtsi32_si128((int)mb);
	int16_t ee[CANON_BLOCK], ref[CANON_BLOCK];
	size_t i = 0, j, k;
	int p = *prev;

	/* the reference starts at the first element kept */
	for (; i < n && p == FP_CANON_START; i++)
		nx_fp__canon16_ref(out + i, in + i, 1, bf16, &p);
	while (i + 8 <= n) {
		size_t nb = (n - i < CANON_BLOCK ? n - i : CANON_BLOCK) & ~(size_t)7;
		int q = p - FP_CANON_DROP;   /* kept: an exponent >= q */

		for (j = 0; j < nb; j += 8) {
			struct canon_dec d = canon_decode(_mm256_cvtepu16_epi32(
				_mm_loadu_si128((const __m128i *)(in + i + j))), mb, emax);
			__m256i v = _mm256_blendv_epi8(never, d.ee, d.keepable);

			v = _mm256_permute4x64_epi64(_mm256_packs_epi32(v, v), 0x08);
			_mm_storeu_si128((__m128i *)(ee + j), _mm256_castsi256_si128(v));
		}
		for (k = 0; k < nb; k++) {   /* the chain: a compare and a select */
			int v = ee[k];

			ref[k] = (int16_t)q;
			q = v >= q ? v - FP_CANON_DROP : q;
		}
		for (j = 0; j < nb; j += 8) {
			struct canon_dec d = canon_decode(_mm256_cvtepu16_epi32(
				_mm_loadu_si128((const __m128i *)(in + i + j))), mb, emax);
			__m256i r = _mm256_cvtepi16_epi32(_mm_loadu_si128((const __m128i *)(ref + j)));
			__m256i keep = _mm256_and_si256(d.keepable, _mm256_cmpgt_epi32(
								d.ee, _mm256_sub_epi32(r, one)));
			__m256i tok = _mm256_sub_epi32(d.ee, _mm256_add_epi32(r, drop));

			tok = _mm256_or_si256(_mm256_sll_epi32(_mm256_and_si256(tok, vemax), shift), d.m);
			tok = _mm256_blendv_epi8(_mm256_blendv_epi8(small, _mm256_or_si256(top, d.a),
								    d.special), tok, keep);
			/* 32-bit lanes to 16: packus per 128-bit half, then the halves */
			tok = _mm256_permute4x64_epi64(_mm256_packus_epi32(tok, tok), 0x08);
			_mm_storeu_si128((__m128i *)(out + i + j), _mm256_castsi256_si128(tok));
		}
		p = q + FP_CANON_DROP;
		i += nb;
	}
	nx_fp__canon16_ref(out + i, in + i, n - i, bf16, &p);
	*prev = p;
}

void nx_fp__canon16(uint16_t *out, const uint16_t *in, size_t n, bool bf16, int *prev)
{
	__builtin_cpu_init();
	(__builtin_cpu_supports("avx2") ? canon16_avx2 : nx_fp__canon16_ref)(out, in, n, bf16, prev);
}
#else
void nx_fp__canon16(uint16_t *out, const uint16_t *in, size_t n, bool bf16, int *prev)
{
	nx_fp__canon16_ref(out, in, n, bf16, prev);
}
#endif

int nx_fp__canon_begin(struct fp_canon *c, struct fp_hash *orig, const nx_fp_set *match,
		       int32_t dtype, nx_error *err)
{
	int i, rc;

	memset(c, 0, sizeof(*c));
	c->orig = orig;
	c->from_f32 = dtype == 1;
	c->n = dtype == 1 ? 2 : (dtype == 10 || dtype == 16) ? 1 : 0;
	c->bf16[0] = dtype == 16;
	c->bf16[1] = true;
	c->next_cand = next_cand_pick();
	for (i = 0; i < 2; i++)
		c->prev[i] = FP_CANON_START;
	for (i = 0; i < (int)c->n; i++) {
		if ((rc = nx_fp__hash_begin(&c->h[i], NULL, match, err)) != 0)
			goto fail;
		c->h[i].canonical = true;
	}
	if (c->n && !(c->in = malloc(3 * CANON_ELEMS * sizeof(uint16_t)))) {
		rc = nx_error_oom(err, NULL);
		goto fail;
	}
	return 0;
fail:
	nx_fp__canon_end(c);
	return rc;
}

/* n 16-bit elements in c->in[which] made canonical and fed to h[which]. */
static int canon_some(struct fp_canon *c, int which, size_t n)
{
	uint16_t *in = c->in + which * CANON_ELEMS, *out = c->in + 2 * CANON_ELEMS;

	if (!n)
		return 0;
	nx_fp__canon16(out, in, n, c->bf16[which], &c->prev[which]);
	return nx_fp__hash_feed(&c->h[which], (const unsigned char *)out, 2 * n);
}

/*
 * A float32 element with a float16 mantissa (10 bits) has its low 13
 * bits 0, one with a bfloat16 mantissa (7) its low 16: the test the loop
 * runs on every element.  An honest weight passes it once in 2^13.
 */
static inline unsigned cand(uint32_t x)
{
	return (x & 0x1fffu) == 0;
}

/* The first element of p[i .. n) that passes cand (n: none). */
static size_t next_cand_scalar(const unsigned char *p, size_t i, size_t n)
{
	for (; i < n; i++) {
		uint32_t x;

		memcpy(&x, p + 4 * i, 4);
		if (cand(x))
			return i;
	}
	return n;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* Eight elements a step (the scalar loop was most of the float32 side). */
__attribute__((target("avx2"))) static size_t next_cand_avx2(const unsigned char *p, size_t i,
							      size_t n)
{
	const __m256i low = _mm256_set1_epi32(0x1fff), zero = _mm256_setzero_si256();

	for (; i + 8 <= n; i += 8) {
		__m256i x = _mm256_loadu_si256((const __m256i *)(p + 4 * i));
		int hit = _mm256_movemask_ps(_mm256_castsi256_ps(
			_mm256_cmpeq_epi32(_mm256_and_si256(x, low), zero)));

		if (hit)
			return i + (size_t)__builtin_ctz((unsigned)hit);
	}
	return next_cand_scalar(p, i, n);
}

static fp_cand_fn next_cand_pick(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") ? next_cand_avx2 : next_cand_scalar;
}
#else
static fp_cand_fn next_cand_pick(void)
{
	return next_cand_scalar;
}
#endif

/*
 * The float16 canonical token of float32 x, whose mantissa fits float16's
 * 10 bits, at any exponent: what nx_fp__canon16 gives its float16 cast
 * where float16 holds it (a subnormal there is a normal float32 of that
 * exponent), and past float16's range too, so a float16 teacher tensor
 * scaled out of it and held in float32 is found as well.  Exponents are
 * float32's (biased 127): only their differences are hashed.
 */
static uint16_t tok16_from_f32(uint32_t x, int *prev)
{
	unsigned a = x & 0x7fffffffu, e = a >> 23, m = a & 0x7fffffu;
	int ee = (int)e;

	if (e == 0xff)    /* infinity, NaN: float16's, sign cleared */
		return (uint16_t)(0x8000u | 0x7c00u | m >> 13);
	if (!a)
		return FP_CANON_SMALL;
	if (!e) {         /* a float32 subnormal: its exponent, normalized */
		int msb = 31 - __builtin_clz(m);

		ee = msb - 23 + 1;
		m = (m << (23 - msb)) & 0x7fffffu;
	}
	if (*prev == FP_CANON_START)
		*prev = ee;
	if (ee < *prev - FP_CANON_DROP)
		return FP_CANON_SMALL;
	a = (((unsigned)(ee - *prev) & 0x1fu) << 10) | m >> 13;
	*prev = ee;
	return (uint16_t)a;
}

/* n float32 elements at p: those with a float16 or bfloat16 mantissa, in
 * the canonical form of each. */
static int canon_f32(struct fp_canon *c, const unsigned char *p, size_t n)
{
	uint16_t *o16 = c->in, *obf = c->in + CANON_ELEMS;
	size_t i, n16 = 0, nbf = 0;
	int rc;

	/* n <= CANON_ELEMS: every element fits the buffers */
	for (i = c->next_cand(p, 0, n); i < n; i = c->next_cand(p, i + 1, n)) {
		uint32_t x;

		memcpy(&x, p + 4 * i, 4);
		if ((x & 0xffffu) == 0)
			obf[nbf++] = (uint16_t)(x >> 16);
		o16[n16++] = tok16_from_f32(x, &c->prev[0]);
	}
	/* float16: tokens already */
	if (n16 && (rc = nx_fp__hash_feed(&c->h[0], (const unsigned char *)o16, 2 * n16)) != 0)
		return rc;
	return canon_some(c, 1, nbf);
}

/* n 16-bit elements at p. */
static int canon_16(struct fp_canon *c, const unsigned char *p, size_t n)
{
	memcpy(c->in, p, 2 * n);
	return canon_some(c, 0, n);
}

int nx_fp__canon_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct fp_canon *c = ctx;
	size_t w = c->from_f32 ? 4 : 2, n;
	int rc;

	if ((rc = nx_fp__hash_feed(c->orig, buf, len)) != 0 || !c->n)
		return rc;
	while (len && c->ncarry) {
		c->carry[c->ncarry++] = *buf++;
		len--;
		if (c->ncarry == w) {
			c->ncarry = 0;
			if ((rc = c->from_f32 ? canon_f32(c, c->carry, 1) : canon_16(c, c->carry, 1)))
				return rc;
		}
	}
	if (c->ncarry)   /* the element is still incomplete: keep its bytes */
		return 0;
	while (len >= w) {
		n = len / w < CANON_ELEMS ? len / w : CANON_ELEMS;
		if ((rc = c->from_f32 ? canon_f32(c, buf, n) : canon_16(c, buf, n)) != 0)
			return rc;
		buf += w * n;
		len -= w * n;
	}
	memcpy(c->carry, buf, len);
	c->ncarry = len;
	return 0;
}

void nx_fp__canon_end(struct fp_canon *c)
{
	unsigned i;

	for (i = 0; i < c->n; i++)
		if (c->h[i].buf)
			nx_fp__hash_end(&c->h[i], true);
	free(c->in);
	c->in = NULL;
}
