/*
 * fingerprint_pool.c - the small teacher tensors pooled, in any affine form.
 *
 * A small teacher tensor (NX_FP_SMALL_MIN_BYTES up to min_bytes) is found
 * whole (fingerprint_pattern.c) and counted towards the small-copy sum, but
 * a copy that is not whole - reversed, negated, times 3, plus 0.5, one
 * element changed, rounded, cut in halves, two interleaved - carried 63
 * KiB of them past every check (red team 9).  So every window of every
 * small teacher tensor (float32, or float16/bfloat16 widened: exact) is
 * keyed on its shape alone, in two families:
 *
 *  - F1, 4 elements, invariant under x -> a x + b (a != 0) and reversal:
 *    with d1 = b - a, d2 = c - b, d3 = d - c, the ratios d2/d1 and d3/d2;
 *  - F2, 5 elements, the same on the second differences (e1 = d2 - d1 ..
 *    e3 = d4 - d3), so also invariant under an added ramp x + c i (review
 *    A: v + 1e-5 i passed F1, every ratio moved by a quantum).
 *  - B16, F1 and F2 of a float32 teacher tensor truncated to bfloat16,
 *    looked up in windows of bfloat16 values only (a copy rounded toward
 *    zero: 8 mantissa bits move every ratio by many quanta; red team 10).
 *
 * Each ratio folded into [-1, 1] (r or 1/r: reversal maps the pair to
 * their inverses, swapped), quantised to FP_POOL_BITS bits, the pair
 * sorted.  One table of the distinct keys, all teacher files together, is
 * the pool.  F1 is kept beside F2 because it is shorter: a copy cut by a
 * junk element or scaled by blocks keeps more whole windows of 4.
 *
 * A student's float tensors (every one, any size; 16-bit ones widened) and
 * the numbers in its node attributes (Constant value_floats) are read as
 * lanes: every element (stride 1), and every 2nd, 3rd and 4th element from
 * each offset (strides 2 to 4: vectors interleaved).  A window counts only
 * in a chain: FP_POOL_RUN hits or more in one lane, each within FP_POOL_GAP
 * windows of the one before (a junk element every 5, or a copy scaled by
 * blocks of 5 or more, leaves at least 2 whole windows of 4 every 6).
 * Read on from a hit, a window whose key is not pooled is looked up a
 * quantum off too (each ratio's nearer neighbour, 3 keys more): a dither
 * of +-1e-5 on values of spread 1/16 moves most ratios by about a
 * quantum, so under half of its windows keep their key.  Such hits make
 * a chain only FP_POOL_LOOSE long, the exact ones FP_POOL_RUN; an
 * anchor's hit is exact (docs/TRV.md: the chance chains measured).  Each pool
 * key counts once per model (a vector copied ten times is one copy; a
 * teacher arange or geometric sequence, one key for all its windows, is
 * one window).  The distinct keys so found, 4 bytes each (a window per
 * element), are the teacher bytes the model implies; over
 * NX_FP_SMALL_TOTAL_MAX they are a finding (fingerprint.c).
 *
 * Cost: keys are worked out only in anchor groups: the windows of a
 * stride in groups of 8 by their index in the stream, each group an
 * anchor with probability 2^-FP_POOL_ANCHOR under a per-process key
 * (anchor_group), 8 windows and both families at a time where the CPU has
 * AVX2, and tested in a filter; a hit in the table makes the scan read
 * the lane's windows around it, back and forth, until a gap no chain
 * crosses.  So a chain holding a hit in an anchor group is read and
 * counted in full.  Why not every 4th window: a chain may have gaps, and
 * no spacing over 1 is lossless for gapped runs.  A chain over C groups
 * is missed with probability (7/8)^C: a small teacher vector copied whole
 * (768 elements, 96 groups) 3e-6; a piece of 40 windows (5 groups) about
 * half the time, each piece on its own, so pieces of that length count
 * about half of what they hold (docs/TRV.md "Known limits": short pieces
 * carry up to about twice the bound).  The count of short chains varies
 * from run to run; whole vectors' does not, in practice.
 *
 * False alarms: a window whose differences are under 2^-FP_POOL_FLAT of
 * its largest magnitude is skipped on both sides (near-constant values -
 * LayerNorm gammas at 1.0 - key on their rounding, not their shape).  Keys
 * are 2 x 13 bits a family; a chance hit is about the pool's share of the
 * key space (74k windows a family for a BERT-base teacher: well under 1%),
 * a chance chain that to the 4th power times FP_POOL_GAP^3 (measured in
 * docs/TRV.md "Small teacher tensors").  A ratio within 2^-FP_POOL_DEG
 * of 0 or +-1 gives no key, nor does an F2 window with a flat first
 * difference: in random bits read as floats one element dominates each
 * window and the keys crowd onto a few quanta.
 */
#include "fingerprint_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/strset_int.h"

#define FP_POOL_BITS 12          /* a folded ratio is kept to 2^-12 */
#define FP_POOL_FLAT 14          /* differences under 2^-14 of the values: flat */
#define FP_POOL_GAP 8            /* a chain's hits at most 8 windows apart */
#define FP_POOL_DEG 10           /* ratios within 2^-10 of 0 or +-1: no key */
#define FP_POOL_ANCHOR 3         /* keys worked out in one group of 8 windows in 2^3 */
#define FP_POOL_PHI 0x9E3779B97F4A7C15ull   /* 2^64 / the golden ratio */
#define FP_POOL_FILTER_WORDS (1u << 16)   /* 2^21 bits, 256 KiB: 2 bits a key */
#define FP_POOL_MAX NX_FP_POOL_MAX   /* distinct keys kept (36 MiB of table): BERT-large about 580k */
#define F2_TAG (1u << 14)        /* F2 keys: bit 14 of their lo half */
#define B16_TAG (1u << 15)       /* B16 keys: bit 15 of their lo half */
#define FP_POOL_B16_FLAT 2       /* B16: differences under 1/4 of the values: flat */

struct fp_pool {
	uint64_t *keys;        /* open addressing, 0 empty */
	uint32_t *tensor;      /* the first teacher tensor with the key */
	uint32_t *pos;         /* its first window's first element (of all pooled) */
	unsigned char *mark;   /* per model: found in a chain */
	unsigned char *cover;  /* per model, a byte a pooled element: covered */
	size_t nelem;          /* elements of the pooled tensors */
	size_t cap, n;         /* cap a power of 2 */
	size_t unpooled;       /* teacher windows left out at FP_POOL_MAX */
	size_t nb16;           /* B16 keys pooled */
	uint64_t mul;          /* keyed per process (odd) */
	uint32_t hm[3];        /* the filter's hash, keyed per process (odd) */
	uint64_t anchor;       /* the anchor groups' offset, from the keys */
	uint32_t filter[FP_POOL_FILTER_WORDS];   /* two bits a key in one word */
	struct pooled {
		char *name;    /* a teacher tensor pooled */
		size_t file;   /* index into the set's files */
	} *t;
	size_t nt, capt;
	/* per model */
	size_t marked;
	struct nx_fp__pool_found *f;   /* the student tensors that found keys first */
	size_t nf, capf;
};

#define Q_BAD ((1u << (FP_POOL_BITS + 1)) + 1)   /* quantised ratios are 0 .. this */
#define Q0 (1u << FP_POOL_BITS)                  /* the ratio 0 */
#define DEG (1u << (FP_POOL_BITS - FP_POOL_DEG))

/* The ratio a / b folded into [-1, 1] (b / a when |a| > |b|), quantised
 * to 0 .. Q_BAD - 1 (Q_BAD or more: not finite).  Branch-free float
 * arithmetic, one division; teacher and student, scalar and AVX2, run
 * the same IEEE operations (no fused multiply-add), so the same keys.
 * *nb: the neighbouring quantum on the ratio's side of q (a dither of
 * 1e-5 on values of spread 1/16 moves a ratio by about a quantum: the
 * student's side looks it up too). */
static inline uint32_t folded_nb(float a, float b, uint32_t *nb)
{
	bool sw = fabsf(a) > fabsf(b);
	float r = (sw ? b : a) / (sw ? a : b), u;
	uint32_t q;

	r = fabsf(r) <= 1 ? r : 2.0f;   /* a float to int conversion of NaN is undefined */
	u = r * (float)(1 << FP_POOL_BITS);
	/* rounded half away from zero (a conversion truncates) */
	q = (uint32_t)((int32_t)(u + (r < 0 ? -0.5f : 0.5f)) + (1 << FP_POOL_BITS));
	*nb = u >= (float)((int32_t)q - (int32_t)Q0) ? q + 1 : q - 1;
	return q;
}

/* A ratio within 2^-FP_POOL_DEG of 0 or of +-1 says little: values of
 * very different magnitudes (random bits read as floats: one element
 * dominates its window) all key on those few quanta. */
static inline bool telling(uint32_t q)
{
	uint32_t c = q > Q0 ? q - Q0 : Q0 - q;

	return c >= DEG && c <= Q0 - DEG;
}

static inline uint64_t pack(uint32_t q1, uint32_t q2, bool ok, uint32_t tag)
{
	uint32_t lo = q1 < q2 ? q1 : q2, hi = q1 ^ q2 ^ lo;

	return ok && hi < Q_BAD && telling(q1) && telling(q2) ?
		       (uint64_t)(lo + 1 + tag) << 32 | (hi + 1) : 0;
}

/* The low 16 bits of x: 0 when x is a bfloat16 value exactly. */
static inline uint32_t b16_low(float x)
{
	uint32_t u;

	memcpy(&u, &x, 4);
	return u & 0xffff;
}

/*
 * The key of family f (0: F1, 1: F2; 2, 3: the same, B16, of windows of
 * bfloat16 values only, flat under 1/4) of the window x[0], x[st], ..
 * (4 or 5 elements), 0 where there is none: flat (a difference under
 * 2^-FP_POOL_FLAT of the largest magnitude), values not finite or
 * subnormal (an integer tensor read as float32).  A NaN or infinity
 * makes a difference NaN or the maximum infinite, and the window keyless.
 * nb, when not NULL: the 3 keys with one ratio or both moved to their
 * nearer neighbouring quantum (0: none).
 */
static uint64_t key_of(const float *x, size_t st, unsigned f, uint64_t *nb)
{
	float v[5], d[4], e[3], m = 0, t;
	unsigned w = f & 1 ? 5 : 4;
	uint32_t q1, q2, n1, n2, tag = f >= 2 ? B16_TAG : 0, lowbits = 0;
	bool ok;

	for (unsigned k = 0; k < w; k++) {
		v[k] = x[k * st];
		m = fabsf(v[k]) > m ? fabsf(v[k]) : m;
		lowbits |= b16_low(v[k]);
	}
	if (tag && lowbits)
		return 0;
	t = m * (tag ? 1.0f / (1 << FP_POOL_B16_FLAT) : 1.0f / (1 << FP_POOL_FLAT));
	for (unsigned k = 0; k + 1 < w; k++)
		d[k] = v[k + 1] - v[k];
	if (!(m >= 0x1p-100f) || !(m < HUGE_VALF))
		return 0;
	ok = fabsf(d[0]) >= t && fabsf(d[1]) >= t && fabsf(d[2]) >= t;
	if (!(f & 1)) {
		q1 = folded_nb(d[1], d[0], &n1);
		q2 = folded_nb(d[2], d[1], &n2);
	} else {
		for (unsigned k = 0; k < 3; k++)
			e[k] = d[k + 1] - d[k];
		/* the first differences too: one element far over the rest
		 * (0, 0, b, 0, 0) has second differences b, -2b, b */
		ok = ok && fabsf(d[3]) >= t && fabsf(e[0]) >= t && fabsf(e[1]) >= t &&
		     fabsf(e[2]) >= t;
		q1 = folded_nb(e[1], e[0], &n1);
		q2 = folded_nb(e[2], e[1], &n2);
		tag |= F2_TAG;
	}
	if (nb) {
		nb[0] = pack(n1, q2, ok, tag);
		nb[1] = pack(q1, n2, ok, tag);
		nb[2] = pack(n1, n2, ok, tag);
	}
	return pack(q1, q2, ok, tag);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* folded_nb()'s quantum on 8 lanes: the same IEEE operations. */
__attribute__((target("avx2"))) static inline __m256i folded8(__m256 a, __m256 b)
{
	const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	const __m256 one = _mm256_set1_ps(1), two = _mm256_set1_ps(2);
	__m256 sw = _mm256_cmp_ps(_mm256_and_ps(a, abs), _mm256_and_ps(b, abs), _CMP_GT_OQ);
	__m256 r = _mm256_div_ps(_mm256_blendv_ps(a, b, sw), _mm256_blendv_ps(b, a, sw)), h;

	r = _mm256_blendv_ps(two, r, _mm256_cmp_ps(_mm256_and_ps(r, abs), one, _CMP_LE_OQ));
	h = _mm256_blendv_ps(_mm256_set1_ps(0.5f), _mm256_set1_ps(-0.5f),
			     _mm256_cmp_ps(r, _mm256_setzero_ps(), _CMP_LT_OQ));
	return _mm256_add_epi32(_mm256_cvttps_epi32(_mm256_add_ps(
					_mm256_mul_ps(r, _mm256_set1_ps((float)Q0)), h)),
				_mm256_set1_epi32((int)Q0));
}

/* telling() on 8 lanes: all ones where it holds */
__attribute__((target("avx2"))) static inline __m256i telling8(__m256i q)
{
	__m256i c = _mm256_abs_epi32(_mm256_sub_epi32(q, _mm256_set1_epi32((int)Q0)));

	return _mm256_andnot_si256(_mm256_or_si256(
					   _mm256_cmpgt_epi32(_mm256_set1_epi32((int)DEG), c),
					   _mm256_cmpgt_epi32(c, _mm256_set1_epi32((int)(Q0 - DEG)))),
				   _mm256_set1_epi32(-1));
}

/* The filter's bits of 8 keys (lo, hi as pack() makes them), tested:
 * a bit a lane that passes (ok lanes only). */
__attribute__((target("avx2"))) static inline unsigned filter8(const uint32_t *filter,
							       const uint32_t *hm, __m256i q1,
							       __m256i q2, __m256i ok, int tag)
{
	const __m256i inc = _mm256_set1_epi32(1), b31 = _mm256_set1_epi32(31);
	__m256i lo = _mm256_add_epi32(_mm256_min_epu32(q1, q2), _mm256_set1_epi32(1 + tag));
	__m256i hi = _mm256_max_epu32(q1, q2), h, w, m;

	ok = _mm256_and_si256(ok, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)Q_BAD), hi));
	ok = _mm256_and_si256(ok, _mm256_and_si256(telling8(q1), telling8(q2)));
	hi = _mm256_add_epi32(hi, inc);
	h = _mm256_add_epi32(_mm256_mullo_epi32(lo, _mm256_set1_epi32((int)hm[0])),
			     _mm256_mullo_epi32(hi, _mm256_set1_epi32((int)hm[1])));
	h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 15));
	h = _mm256_mullo_epi32(h, _mm256_set1_epi32((int)hm[2]));
	w = _mm256_i32gather_epi32((const int *)filter, _mm256_srli_epi32(h, 16), 4);
	m = _mm256_or_si256(_mm256_sllv_epi32(inc, _mm256_and_si256(h, b31)),
			    _mm256_sllv_epi32(inc, _mm256_and_si256(_mm256_srli_epi32(h, 5), b31)));
	ok = _mm256_and_si256(ok, _mm256_cmpeq_epi32(_mm256_and_si256(w, m), m));
	return (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(ok));
}

/* The windows x[i], x[i + st] .. of x[0 .. 8) whose key of family f
 * (bit f * 8 + i) may be pooled; x holds 8 + 4 st elements. */
__attribute__((target("avx2"))) static unsigned group_avx2(const struct fp_pool *s, const float *x,
							   size_t st)
{
	const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	const __m256 flat = _mm256_set1_ps(1.0f / (1 << FP_POOL_FLAT));
	const __m256 tiny = _mm256_set1_ps(0x1p-100f), huge = _mm256_set1_ps(HUGE_VALF);
	__m256 v[5], d[4], e[3], m, t, ok;
	unsigned out;

	for (unsigned k = 0; k < 5; k++)
		v[k] = _mm256_loadu_ps(x + k * st);
	for (unsigned k = 0; k < 4; k++)
		d[k] = _mm256_sub_ps(v[k + 1], v[k]);
	for (unsigned k = 0; k < 3; k++)
		e[k] = _mm256_sub_ps(d[k + 1], d[k]);
	m = _mm256_and_ps(v[0], abs);
	for (unsigned k = 1; k < 4; k++)
		m = _mm256_max_ps(_mm256_and_ps(v[k], abs), m);
	/* F1 */
	t = _mm256_mul_ps(m, flat);
	ok = _mm256_and_ps(_mm256_cmp_ps(m, tiny, _CMP_GE_OQ), _mm256_cmp_ps(m, huge, _CMP_LT_OQ));
	for (unsigned k = 0; k < 3; k++)
		ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_and_ps(d[k], abs), t, _CMP_GE_OQ));
	/* the divisions only where a window has a key (few in random bits) */
	out = !_mm256_movemask_ps(ok) ? 0 :
	      filter8(s->filter, s->hm, folded8(d[1], d[0]), folded8(d[2], d[1]),
		      _mm256_castps_si256(ok), 0);
	/* F2 */
	m = _mm256_max_ps(_mm256_and_ps(v[4], abs), m);
	t = _mm256_mul_ps(m, flat);
	ok = _mm256_and_ps(_mm256_cmp_ps(m, tiny, _CMP_GE_OQ), _mm256_cmp_ps(m, huge, _CMP_LT_OQ));
	for (unsigned k = 0; k < 3; k++)
		ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_and_ps(e[k], abs), t, _CMP_GE_OQ));
	for (unsigned k = 0; k < 4; k++)
		ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_and_ps(d[k], abs), t, _CMP_GE_OQ));
	if (!_mm256_movemask_ps(ok))
		return out;
	return out | filter8(s->filter, s->hm, folded8(e[1], e[0]), folded8(e[2], e[1]),
			     _mm256_castps_si256(ok), (int)F2_TAG) << 8;
}

static bool has_avx2(void)
{
	static int avx2 = -1;

	if (avx2 < 0) {
		__builtin_cpu_init();
		avx2 = __builtin_cpu_supports("avx2");
	}
	return avx2;
}
#else
static bool has_avx2(void)
{
	return false;
}

static unsigned group_avx2(const struct fp_pool *s, const float *x, size_t st)
{
	(void)s;
	(void)x;
	(void)st;
	return 0;
}
#endif

/* The filter's hash of a key: a word and two bits in it. */
static inline uint32_t fhash(const struct fp_pool *s, uint32_t lo, uint32_t hi)
{
	uint32_t h = lo * s->hm[0] + hi * s->hm[1];

	h ^= h >> 15;
	return h * s->hm[2];
}

static inline bool in_filter(const struct fp_pool *s, uint64_t key)
{
	uint32_t h = fhash(s, (uint32_t)(key >> 32), (uint32_t)key);
	uint32_t m = 1u << (h & 31) | 1u << (h >> 5 & 31);

	return (s->filter[h >> 16] & m) == m;
}

static uint64_t spread(const struct fp_pool *s, uint64_t key)
{
	/* the table holds the verifier's teacher, never the student's
	 * choice: a keyed multiply is enough to spread it */
	uint64_t x = key * s->mul;

	return x ^ x >> 32;
}

static size_t slot_of(const struct fp_pool *s, uint64_t key)
{
	size_t i = (size_t)spread(s, key) & (s->cap - 1);

	while (s->keys[i] && s->keys[i] != key)
		i = (i + 1) & (s->cap - 1);
	return i;
}

static int grow(struct fp_pool *s, nx_error *err)
{
	struct fp_pool o = *s;
	size_t i;

	s->cap = o.cap ? 2 * o.cap : 1024;
	s->keys = calloc(s->cap, sizeof(*s->keys));
	s->tensor = calloc(s->cap, sizeof(*s->tensor));
	s->pos = calloc(s->cap, sizeof(*s->pos));
	s->mark = calloc(s->cap, 1);
	if (!s->keys || !s->tensor || !s->pos || !s->mark) {
		free(s->keys);
		free(s->tensor);
		free(s->pos);
		free(s->mark);
		s->keys = o.keys;
		s->tensor = o.tensor;
		s->pos = o.pos;
		s->mark = o.mark;
		s->cap = o.cap;
		return nx_error_oom(err, NULL);
	}
	for (i = 0; i < o.cap; i++)
		if (o.keys[i]) {
			size_t j = slot_of(s, o.keys[i]);

			s->keys[j] = o.keys[i];
			s->tensor[j] = o.tensor[i];
			s->pos[j] = o.pos[i];
		}
	free(o.keys);
	free(o.tensor);
	free(o.pos);
	free(o.mark);
	return 0;
}

/* 4 bytes little-endian of p as a float32, or 2 widened (exact). */
static float element(const unsigned char *p, int32_t dtype)
{
	uint32_t u;
	float f;

	if (dtype == 10)
		u = nx_fp__f16_to_f32((uint16_t)(p[0] | p[1] << 8));
	else if (dtype == 16)
		u = (uint32_t)(p[0] | p[1] << 8) << 16;
	else
		u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
		    (uint32_t)p[3] << 24;
	memcpy(&f, &u, 4);
	return f;
}

static int pool_new(nx_fp_set *set, nx_error *err)
{
	struct fp_pool *s = calloc(1, sizeof(*s));
	uint64_t k;

	if (!s)
		return nx_error_oom(err, NULL);
	s->mul = nx_keyhash("fp_pool", 7, NULL, 0) | 1;
	k = nx_keyhash("fp_pool_filter", 14, NULL, 0);
	s->hm[0] = (uint32_t)k | 1;
	s->hm[1] = (uint32_t)(k >> 32) | 1;
	k = nx_keyhash("fp_pool_anchor", 14, NULL, 0);
	s->hm[2] = (uint32_t)k | 1;
	set->pool = s;
	return 0;
}

int nx_fp__pool_add(nx_fp_set *set, const char *name, int32_t dtype, const unsigned char *p,
		    size_t n, nx_error *err)
{
	struct fp_pool *s = set->pool;
	size_t i, w = dtype == 10 || dtype == 16 ? 2 : 4, k = n / w, added = 0;
	float x[FP_POOL_BLOCK], xt[FP_POOL_BLOCK];
	unsigned char *cover;
	int rc;

	if (k < 4)
		return 0;
	if (!s) {
		if ((rc = pool_new(set, err)) != 0)
			return rc;
		s = set->pool;
	}
	if (NX_ARRAY_PUSH(s->t, s->capt, s->nt))
		return nx_error_oom(err, NULL);
	/* a small tensor is at most FP_POOL_BLOCK elements (4 KiB) */
	if (k > FP_POOL_BLOCK)
		k = FP_POOL_BLOCK;
	for (i = 0; i < k; i++)
		x[i] = element(p + w * i, dtype);
	/* B16: a float32 tensor's values truncated to bfloat16 (rounded
	 * toward zero: 8 mantissa bits move every ratio by many quanta;
	 * the cast to nearest is found whole) */
	for (i = 0; dtype == 1 && i < k; i++) {
		uint32_t u;

		memcpy(&u, &x[i], 4);
		u &= 0xffff0000u;
		memcpy(&xt[i], &u, 4);
	}
	for (unsigned f = 0; f < (dtype == 1 ? 4u : 2u); f++)
		for (i = 0; i + 3 + (f & 1) < k; i++) {
			uint64_t key = key_of((f >= 2 ? xt : x) + i, 1, f, NULL);
			uint32_t h, m;
			size_t j;

			if (!key)
				continue;
			if (s->n >= FP_POOL_MAX) {
				s->unpooled++;
				continue;
			}
			if (2 * (s->n + 1) > s->cap && (rc = grow(s, err)) != 0)
				return rc;
			j = slot_of(s, key);
			if (s->keys[j])
				continue;
			s->keys[j] = key;
			h = fhash(s, (uint32_t)(key >> 32), (uint32_t)key);
			m = 1u << (h & 31) | 1u << (h >> 5 & 31);
			s->filter[h >> 16] |= m;
			s->tensor[j] = (uint32_t)s->nt;
			s->pos[j] = (uint32_t)(s->nelem + i);
			s->n++;
			s->nb16 += f >= 2;
			added++;
		}
	if (!added)
		return 0;
	cover = realloc(s->cover, s->nelem + k);
	if (!cover)
		return nx_error_oom(err, NULL);
	s->cover = cover;
	memset(s->cover + s->nelem, 0, k);
	s->nelem += k;
	if (!(s->t[s->nt].name = strdup(name)))
		return nx_error_oom(err, NULL);
	s->t[s->nt++].file = set->nfiles ? set->nfiles - 1 : 0;
	return 0;
}

size_t nx_fp__pool_count(const nx_fp_set *set)
{
	return set->pool ? set->pool->n : 0;
}

size_t nx_fp_set_unpooled(const nx_fp_set *s)
{
	return s->pool ? s->pool->unpooled : 0;
}

void nx_fp__pool_free(struct fp_pool *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nt; i++)
		free(s->t[i].name);
	free(s->t);
	free(s->keys);
	free(s->tensor);
	free(s->pos);
	free(s->mark);
	free(s->cover);
	for (size_t i = 0; i < s->nf; i++)
		free(s->f[i].student);
	free(s->f);
	free(s);
}

void nx_fp__pool_begin_model(const nx_fp_set *set)
{
	struct fp_pool *s = set->pool;

	if (!s)
		return;
	if (s->mark)   /* NULL when every window of every small tensor was flat */
		memset(s->mark, 0, s->cap);
	if (s->cover)
		memset(s->cover, 0, s->nelem);
	s->marked = 0;
	/* the anchor groups' key: drawn per process (getrandom), never from
	 * the teacher or the student.  Drawn from the teacher's keys, the
	 * groups were a fixed pattern an insider holding the teacher could
	 * compute and place short pieces between (review of stop 21) */
	s->anchor = nx_keyhash("fp_pool_anchor", 14, NULL, 0);
	for (size_t i = 0; i < s->nf; i++)
		free(s->f[i].student);
	s->nf = 0;
}

/* The teacher elements of window slot b (pooled key) covered, and those
 * between it and a (the hit before it in its chain, or none: b == a)
 * when both are of one teacher tensor, a gap apart at most: a chain
 * whose windows were cut (junk, blocks scaled) carries the elements
 * between its hits too. */
static void cover(struct nx_fp__pool_scan *ps, uint32_t a, uint32_t b)
{
	struct fp_pool *s = ps->s;
	size_t w = s->keys[b] >> 32 & F2_TAG ? 5 : 4, lo = s->pos[b], hi = lo + w;

	s->mark[b] = 1;
	if (a != b && s->tensor[a] == s->tensor[b]) {
		size_t pa = s->pos[a];

		if (pa < lo && lo - pa <= FP_POOL_GAP + 1)
			lo = pa;
		else if (pa > lo && pa - lo <= FP_POOL_GAP + 1)
			hi = pa + w;
	}
	for (size_t e = lo; e < hi && e < s->nelem; e++)
		if (!s->cover[e]) {
			s->cover[e] = 1;
			s->marked++;
			ps->marks++;
		}
}

/* A hit of lane l at window g (the key's slot j; exact, or a
 * neighbouring quantum's), hits in order: the chain rule.  A run is a
 * chain at FP_POOL_RUN exact hits, or FP_POOL_LOOSE hits of either kind
 * (a dithered copy: under half its windows keep their key, most of the
 * rest are a quantum off; a chance run that long is far rarer than one
 * of FP_POOL_RUN exact hits, though each window has 4 keys to hit). */
static void hit(struct nx_fp__pool_scan *ps, struct nx_fp__pool_lane *l, uint64_t g, size_t st,
		uint32_t j, bool exact)
{
	if (!l->last || g - (l->last - 1) > FP_POOL_GAP * st) {
		l->run = l->exact = 0;
		l->sure = false;
	}
	l->last = g + 1;
	l->exact += exact;
	if (!l->sure) {
		if (l->exact < FP_POOL_RUN && l->run + 1 < FP_POOL_LOOSE) {
			l->pend[l->run++] = j;
			l->prev = j;
			return;
		}
		for (unsigned i = 0; i < l->run; i++)
			cover(ps, l->pend[i ? i - 1 : 0], l->pend[i]);
		l->sure = true;
	}
	cover(ps, l->prev, j);
	l->prev = j;
}

/* The table slot of window g's key of family f, or -1: not pooled.
 * probe: when the key is not, the keys a quantum off too (*exact false). */
static long lookup(const struct nx_fp__pool_scan *ps, uint64_t g, size_t st, unsigned f,
		   bool probe, bool *exact)
{
	const struct fp_pool *s = ps->s;
	uint64_t nb[3], key = key_of(ps->x + (g - ps->base), st, f, probe ? nb : NULL);
	size_t j;

	*exact = true;
	if (key && in_filter(s, key) && s->keys[j = slot_of(s, key)])
		return (long)j;
	*exact = false;
	for (unsigned i = 0; probe && key && i < 3; i++)
		if (nb[i] && in_filter(s, nb[i]) && s->keys[j = slot_of(s, nb[i])])
			return (long)j;
	return -1;
}

/* Lane l's windows from l->next on, while a chain could still cross. */
static void forward(struct nx_fp__pool_scan *ps, struct nx_fp__pool_lane *l, size_t st,
		    unsigned f, uint64_t end)
{
	uint64_t g;
	bool exact;

	for (g = l->next; g < end && l->last && g - (l->last - 1) <= FP_POOL_GAP * st; g += st) {
		long j = lookup(ps, g, st, f, true, &exact);

		if (j >= 0)
			hit(ps, l, g, st, (uint32_t)j, exact);
	}
	l->next = g > l->next ? g : l->next;
}

/* Is group G (8 windows of a lane's stream) an anchor group?  Each group
 * on its own, one in 2^FP_POOL_ANCHOR, under the per-process key: a
 * keyed mix (splitmix64's finaliser) - the insider sees neither key nor
 * output, and groups drawn apart make pieces placed anywhere found apart
 * (a fixed pattern, even at a random offset, finds or misses pieces
 * placed in step with it all together). */
static inline bool anchor_group(const struct fp_pool *s, uint64_t G)
{
	uint64_t x = G + s->anchor;

	x = (x ^ x >> 30) * 0xBF58476D1CE4E5B9ull;
	x = (x ^ x >> 27) * 0x94D049BB133111EBull;
	x ^= x >> 31;
	return !(x >> (64 - FP_POOL_ANCHOR));
}

/* An anchor of lane l at window g whose key passed the filter: when it
 * is pooled (exactly), the lane's windows before it back to a gap no
 * chain crosses (or those already read), then it, then those after it. */
static void anchor(struct nx_fp__pool_scan *ps, struct nx_fp__pool_lane *l, uint64_t g,
		   size_t st, unsigned f, uint64_t end)
{
	uint64_t lo = l->next > ps->base ? l->next : ps->base, back[FP_POOL_HIST + FP_POOL_BLOCK],
		 seen = g, b;
	uint32_t slot[FP_POOL_HIST + FP_POOL_BLOCK];
	bool ex[FP_POOL_HIST + FP_POOL_BLOCK], exact;
	size_t nb = 0;
	long j;

	if (g < l->next || (j = lookup(ps, g, st, f, false, &exact)) < 0)
		return;
	for (b = g; b >= lo + st && seen - (b - st) <= FP_POOL_GAP * st;) {
		long k;

		b -= st;
		if ((k = lookup(ps, b, st, f, true, &ex[nb])) >= 0) {
			back[nb] = b;
			slot[nb++] = (uint32_t)k;
			seen = b;
		}
	}
	while (nb--)
		hit(ps, l, back[nb], st, slot[nb], ex[nb]);
	hit(ps, l, g, st, (uint32_t)j, true);
	l->next = g + st;
	forward(ps, l, st, f, end);
}

/* Does group g of stride st (elements g .. g + 8 + 4 st) hold any
 * bfloat16 value exactly?  Most float32 weights hold none: the B16
 * families are not worked out for them. */
static bool b16_group(const struct nx_fp__pool_scan *ps, uint64_t g, size_t st, uint64_t top)
{
	uint64_t lim = g + 8 + 4 * st < top ? g + 8 + 4 * st : top;

	if (ps->bf16)
		return true;
	for (uint64_t i = g; i < lim; i++)
		if (!b16_low(ps->x[i - ps->base]))
			return true;
	return false;
}

/* The windows of ps->x not seen yet, in every lane; the last
 * FP_POOL_HIST elements kept.  Windows need all 5 elements but at the
 * end of the tensor (last), where F1's of 4 are read too. */
static void flush(struct nx_fp__pool_scan *ps, bool last)
{
	struct fp_pool *s = ps->s;
	size_t n = ps->nx;
	bool avx2 = has_avx2(), b16 = false;
	uint32_t low = 0;

	/* any bfloat16 value exactly in the block?  (random float32 bits: one
	 * block in about 60 holds one) */
	for (size_t i = 0; s->nb16 && !ps->bf16 && i < n; i++) {
		uint32_t u;

		memcpy(&u, &ps->x[i], 4);
		low |= (u & 0xffff) == 0;
	}
	b16 = s->nb16 && (ps->bf16 || low);

	for (size_t st = 1; st <= FP_POOL_STRIDES; st++) {
		struct nx_fp__pool_lane *lanes[4] = {
			ps->lane[0] + st * (st - 1) / 2, ps->lane[1] + st * (st - 1) / 2,
			ps->lane[2] + st * (st - 1) / 2, ps->lane[3] + st * (st - 1) / 2
		};
		uint64_t top = ps->base + n, end[4], g;

		end[0] = top >= 4 * st ? top - (last ? 3 : 4) * st : 0;
		end[1] = top >= 4 * st ? top - 4 * st : 0;
		if (last && top >= 3 * st && top < 4 * st)
			end[0] = top - 3 * st;
		end[2] = end[0];
		end[3] = end[1];
		/* the chains under way first */
		for (unsigned f = 0; f < 4; f++)
			for (size_t i = 0; i < st; i++)
				forward(ps, lanes[f] + i, st, f, end[f]);
		/* then the anchor groups: a bit a window that may be pooled */
		for (g = ps->done[st - 1]; g + 8 <= end[0] || (last && g < end[0]); g += 8) {
			unsigned bits = 0;

			if (!anchor_group(s, g / 8))
				continue;
			if (g + 8 <= end[1] && avx2)
				bits = group_avx2(s, ps->x + (g - ps->base), st);
			else
				for (unsigned f = 0; f < 2; f++)
					for (unsigned i = 0; i < 8 && g + i < end[f]; i++) {
						uint64_t key = key_of(ps->x + (g + i - ps->base), st, f, NULL);

						if (key && in_filter(s, key))
							bits |= 1u << (f * 8 + i);
					}
			if (b16 && b16_group(ps, g, st, top))
				for (unsigned f = 2; f < 4; f++)
					for (unsigned i = 0; i < 8 && g + i < end[f]; i++) {
						uint64_t key = key_of(ps->x + (g + i - ps->base), st, f, NULL);

						if (key && in_filter(s, key))
							bits |= 1u << (f * 8 + i);
					}
			for (; bits; bits &= bits - 1) {
				unsigned b = (unsigned)__builtin_ctz(bits), f = b / 8;

				if (g + b % 8 < end[f])
					anchor(ps, lanes[f] + (g + b % 8) % st, g + b % 8, st, f, end[f]);
			}
		}
		if (g > ps->done[st - 1])
			ps->done[st - 1] = g;
	}
	if (n > FP_POOL_HIST) {
		memmove(ps->x, ps->x + n - FP_POOL_HIST, FP_POOL_HIST * sizeof(*ps->x));
		ps->base += n - FP_POOL_HIST;
		ps->nx = FP_POOL_HIST;
	}
}

void nx_fp__pool_scan_begin(struct nx_fp__pool_scan *ps, const nx_fp_set *set, int32_t dtype)
{
	memset(ps, 0, sizeof(*ps));
	ps->s = set->pool && set->pool->n ? set->pool : NULL;
	ps->width = dtype == 10 || dtype == 16 ? 2 : 4;
	ps->bf16 = dtype == 16;
}

int nx_fp__pool_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct nx_fp__pool_scan *ps = ctx;
	const size_t cap = FP_POOL_HIST + FP_POOL_BLOCK, w = ps->width;
	const int32_t dtype = w == 4 ? 1 : ps->bf16 ? 16 : 10;

	if (!ps->s)
		return 0;
	while (len) {
		size_t k = w - ps->ncarry < len ? w - ps->ncarry : len;

		if (!ps->ncarry && len >= w) {
			/* whole elements straight from buf */
			k = (cap - ps->nx < len / w ? cap - ps->nx : len / w);
			if (w == 4) {
				memcpy(ps->x + ps->nx, buf, 4 * k);
			} else {
				for (size_t i = 0; i < k; i++)
					ps->x[ps->nx + i] = element(buf + 2 * i, dtype);
			}
			ps->nx += k;
			buf += w * k;
			len -= w * k;
		} else {
			memcpy(ps->carry + ps->ncarry, buf, k);
			ps->ncarry += k;
			buf += k;
			len -= k;
			if (ps->ncarry == w) {
				ps->x[ps->nx++] = element(ps->carry, dtype);
				ps->ncarry = 0;
			}
		}
		if (ps->nx == cap)
			flush(ps, false);
	}
	return 0;
}

int nx_fp__pool_scan_end(struct nx_fp__pool_scan *ps, const char *name, nx_error *err)
{
	struct fp_pool *s = ps->s;

	if (s)
		flush(ps, true);
	if (!s || !ps->marks)
		return 0;
	if (NX_ARRAY_PUSH(s->f, s->capf, s->nf) ||
	    !(s->f[s->nf].student = strdup(name ? name : "")))
		return nx_error_oom(err, NULL);
	s->f[s->nf++].windows = ps->marks;
	return 0;
}

int nx_fp__pool_attrs(const nx_fp_set *set, int fd, const char *path, nx_error *err)
{
	struct nx_fp__pool_scan ps;
	int rc;

	nx_fp__pool_scan_begin(&ps, set, 1);
	if (!ps.s)
		return 0;
	if ((rc = nx_onnx_attr_numbers(fd, path, nx_fp__pool_feed, &ps, err)) != 0)
		return rc;
	return nx_fp__pool_scan_end(&ps, "(node attributes)", err);
}

bool nx_fp__pool_judge(const nx_fp_set *set, struct nx_fp__pool_verdict *v)
{
	const struct fp_pool *s = set->pool;
	uint32_t *per;
	size_t i, top = 0;

	memset(v, 0, sizeof(*v));
	/* the verdict is filled whenever any key was found: fingerprint.c
	 * adds the pool to one sum with the other kinds */
	if (!s || !s->marked)
		return false;
	v->windows = s->marked;
	v->unpooled = s->unpooled;
	v->pool = s->nelem;
	v->found = s->f;
	v->nfound = s->nf;
	/* the teacher tensor with the most keys found, to name one; ties to
	 * the first teacher tensor (the table's order is keyed per run, and
	 * the name must not change from run to run) */
	per = calloc(s->nt + 1, sizeof(*per));
	for (i = 0; per && i < s->cap; i++)
		if (s->mark[i])
			per[s->tensor[i]]++;
	for (i = 0; per && i <= s->nt; i++)
		if (per[i] > per[top])
			top = i;
	free(per);
	v->tensors = s->nt;
	v->teacher = s->t[top].name;
	v->file = s->t[top].file;
	return 4 * (uint64_t)s->marked > NX_FP_SMALL_TOTAL_MAX;
}
