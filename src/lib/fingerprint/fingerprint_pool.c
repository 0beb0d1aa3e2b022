/*
 * fingerprint_pool.c - the small teacher tensors pooled, in any affine form.
 *
 * A small teacher tensor (NX_FP_SMALL_MIN_BYTES up to min_bytes) is found
 * whole (fingerprint_pattern.c) and counted towards the small-copy sum, but
 * a copy that is not whole - reversed, negated, times 3, plus 0.5, one
 * element changed, rounded, cut in halves, two interleaved - carried 63
 * KiB of them past every check (red team 9).  So every window of 4
 * consecutive elements of every small float32 teacher tensor is keyed on
 * its shape alone, invariant under x -> a x + b (a != 0) and under
 * reversal: with d1 = b - a, d2 = c - b, d3 = d - c, the ratios d2/d1 and
 * d3/d2, each folded into [-1, 1] (r or 1/r: reversal maps the pair to
 * their inverses, swapped), quantised to FP_POOL_BITS bits and sorted.
 * One table of the distinct keys, all teacher files together, is the pool.
 *
 * A student's float32 tensors (every one, any size) and the numbers in its
 * node attributes (Constant value_floats) are read as lanes: every element
 * (stride 1), and the even and the odd elements (stride 2: two vectors
 * interleaved).  A window counts only inside a run of FP_POOL_RUN windows
 * in a row that are all in the pool, and each pool key counts once per
 * model (a vector copied ten times is one copy; a teacher arange or
 * geometric sequence, one key for all its windows, is one window).  The
 * distinct keys so found, 4 bytes each (a window per element), are the
 * teacher bytes the model implies; over NX_FP_SMALL_TOTAL_MAX they are a
 * finding (fingerprint.c).
 *
 * False alarms: a window whose differences are under 2^-FP_POOL_FLAT of
 * its largest magnitude is skipped on both sides (near-constant values -
 * LayerNorm gammas at 1.0 - key on their rounding, not their shape).  Keys
 * are 2 x 13 bits; a chance hit is about the pool's share of the key space
 * (74k windows for a BERT-base teacher: well under 1%), a chance run of 4
 * that to the 4th power (none measured in a 25M-element random student).
 */
#include "fingerprint_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/strset_int.h"

#define FP_POOL_BITS 12          /* a folded ratio is kept to 2^-12 */
#define FP_POOL_FLAT 14          /* differences under 2^-14 of the values: flat */
#define FP_POOL_FILTER_BITS 18   /* 2^18 bits, 32 KiB: a student key tested here first */
#define FP_POOL_FILTER (1u << FP_POOL_FILTER_BITS)
#define FP_POOL_MAX (1u << 18)   /* distinct keys kept (1 MiB of teacher floats; 7 MiB of table) */

struct fp_pool {
	uint64_t *keys;        /* open addressing, 0 empty */
	uint32_t *tensor;      /* the first teacher tensor with the key */
	unsigned char *mark;   /* per model: found in a run */
	size_t cap, n;         /* cap a power of 2 */
	uint64_t mul;          /* keyed per run (odd) */
	uint64_t filter[FP_POOL_FILTER / 64];   /* a bit a key (its top bits) */
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

/* The ratio a / b folded into [-1, 1] (b / a when |a / b| > 1),
 * quantised to 0 .. Q_BAD - 1 (Q_BAD or more: not finite).  Branch-free
 * float arithmetic; teacher and student run this same code. */
static inline uint32_t folded(float a, float b)
{
	float r1 = a / b, r2 = b / a, r = fabsf(r1) <= 1 ? r1 : r2;

	r = fabsf(r) <= 1 ? r : 2.0f;   /* a float to int conversion of NaN is undefined */
	/* rounded half away from zero (a conversion truncates) */
	return (uint32_t)((int32_t)(r * (float)(1 << FP_POOL_BITS) + (r < 0 ? -0.5f : 0.5f)) +
			  (1 << FP_POOL_BITS));
}

/*
 * The keys of the windows i, i + st, i + 2 st, i + 3 st of x[0 .. n), for
 * i from first to n - 3 st - 1: k[i] = (lo << 32 | hi) as lo[i] and hi[i],
 * lo 0 where there is no key (flat: a difference under 2^-FP_POOL_FLAT of
 * the largest magnitude; values not finite or subnormal - an integer
 * tensor read as float32).  Each difference (d) and folded ratio (q) is
 * worked out once, in arrays.  8 at a time where the CPU has AVX2: the
 * same IEEE operations lane by lane (no fused multiply-add), so the same
 * keys; a NaN or infinity makes a difference NaN or the maximum infinite
 * either way, and the window keyless.
 */
struct wins {
	float d[FP_POOL_HIST + FP_POOL_BLOCK];
	uint32_t q[FP_POOL_HIST + FP_POOL_BLOCK];
	uint32_t lo[FP_POOL_HIST + FP_POOL_BLOCK], hi[FP_POOL_HIST + FP_POOL_BLOCK];
};

static void keys_scalar(struct wins *w, const float *x, size_t n, unsigned st, size_t i0,
			size_t i1, size_t i2)
{
	size_t i;

	for (i = i0; i + st < n; i++)
		w->d[i] = x[i + st] - x[i];
	for (i = i1; i + 2 * st < n; i++)
		w->q[i] = folded(w->d[i + st], w->d[i]);
	for (i = i2; i + 3 * st < n; i++) {
		uint32_t q1 = w->q[i], q2 = w->q[i + st], lo = q1 < q2 ? q1 : q2, hi = q1 ^ q2 ^ lo;
		float m = fabsf(x[i]), t;

		m = fabsf(x[i + st]) > m ? fabsf(x[i + st]) : m;
		m = fabsf(x[i + 2 * st]) > m ? fabsf(x[i + 2 * st]) : m;
		m = fabsf(x[i + 3 * st]) > m ? fabsf(x[i + 3 * st]) : m;
		t = m * (1.0f / (1 << FP_POOL_FLAT));
		w->hi[i] = hi + 1;
		w->lo[i] = (hi < Q_BAD) & (m >= 0x1p-100f) & (m < HUGE_VALF) &
			   (fabsf(w->d[i]) >= t) & (fabsf(w->d[i + st]) >= t) &
			   (fabsf(w->d[i + 2 * st]) >= t) ? lo + 1 : 0;
	}
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

__attribute__((target("avx2"))) static void keys_avx2(struct wins *w, const float *x, size_t n,
						       unsigned st, size_t first)
{
	const __m256 one = _mm256_set1_ps(1), two = _mm256_set1_ps(2), zero = _mm256_setzero_ps();
	const __m256 half = _mm256_set1_ps(0.5f), mhalf = _mm256_set1_ps(-0.5f);
	const __m256 scale = _mm256_set1_ps((float)(1 << FP_POOL_BITS));
	const __m256 flat = _mm256_set1_ps(1.0f / (1 << FP_POOL_FLAT));
	const __m256 tiny = _mm256_set1_ps(0x1p-100f), huge = _mm256_set1_ps(HUGE_VALF);
	const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
	const __m256i off = _mm256_set1_epi32(1 << FP_POOL_BITS), inc = _mm256_set1_epi32(1);
	const __m256i bad = _mm256_set1_epi32(Q_BAD);
	size_t i, i1, i2;

	for (i = 0; i + st + 8 <= n; i += 8)
		_mm256_storeu_ps(w->d + i, _mm256_sub_ps(_mm256_loadu_ps(x + i + st),
							 _mm256_loadu_ps(x + i)));
	for (i1 = 0; i1 + 2 * st + 8 <= n && i1 + st + 8 <= i; i1 += 8) {
		__m256 a = _mm256_loadu_ps(w->d + i1 + st), b = _mm256_loadu_ps(w->d + i1);
		__m256 r1 = _mm256_div_ps(a, b), r2 = _mm256_div_ps(b, a), r, h;

		r = _mm256_blendv_ps(r2, r1, _mm256_cmp_ps(_mm256_and_ps(r1, abs), one, _CMP_LE_OQ));
		r = _mm256_blendv_ps(two, r, _mm256_cmp_ps(_mm256_and_ps(r, abs), one, _CMP_LE_OQ));
		h = _mm256_blendv_ps(half, mhalf, _mm256_cmp_ps(r, zero, _CMP_LT_OQ));
		_mm256_storeu_si256((__m256i *)(w->q + i1),
				    _mm256_add_epi32(_mm256_cvttps_epi32(
							     _mm256_add_ps(_mm256_mul_ps(r, scale), h)),
						     off));
	}
	/* the tails of d and q first: the windows read them */
	keys_scalar(w, x, n, st, i, i1, n);
	for (i2 = first; i2 + 3 * st + 8 <= n; i2 += 8) {
		__m256 m = _mm256_and_ps(_mm256_loadu_ps(x + i2), abs), t, ok;
		__m256i q1 = _mm256_loadu_si256((const __m256i *)(w->q + i2));
		__m256i q2 = _mm256_loadu_si256((const __m256i *)(w->q + i2 + st));
		__m256i lo = _mm256_min_epu32(q1, q2), hi = _mm256_max_epu32(q1, q2);

		m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i2 + st), abs));
		m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i2 + 2 * st), abs));
		m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i2 + 3 * st), abs));
		t = _mm256_mul_ps(m, flat);
		ok = _mm256_and_ps(_mm256_cmp_ps(m, tiny, _CMP_GE_OQ),
				   _mm256_cmp_ps(m, huge, _CMP_LT_OQ));
		for (unsigned k = 0; k < 3; k++)
			ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(
								     w->d + i2 + k * st), abs),
							     t, _CMP_GE_OQ));
		ok = _mm256_and_ps(ok, _mm256_castsi256_ps(_mm256_cmpgt_epi32(bad, hi)));
		_mm256_storeu_si256((__m256i *)(w->hi + i2), _mm256_add_epi32(hi, inc));
		_mm256_storeu_si256((__m256i *)(w->lo + i2),
				    _mm256_and_si256(_mm256_castps_si256(ok),
						     _mm256_add_epi32(lo, inc)));
	}
	keys_scalar(w, x, n, st, n, n, i2);
}

static void keys_of(struct wins *w, const float *x, size_t n, unsigned st, size_t first)
{
	static int avx2 = -1;

	if (avx2 < 0) {
		__builtin_cpu_init();
		avx2 = __builtin_cpu_supports("avx2");
	}
	if (avx2)
		keys_avx2(w, x, n, st, first);
	else
		keys_scalar(w, x, n, st, 0, 0, first);
}
#else
static void keys_of(struct wins *w, const float *x, size_t n, unsigned st, size_t first)
{
	keys_scalar(w, x, n, st, 0, 0, first);
}
#endif

static inline uint64_t key_at(const struct wins *w, size_t i)
{
	return w->lo[i] ? (uint64_t)w->lo[i] << 32 | w->hi[i] : 0;
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
	s->mark = calloc(s->cap, 1);
	if (!s->keys || !s->tensor || !s->mark) {
		free(s->keys);
		free(s->tensor);
		free(s->mark);
		*s = o;
		return nx_error_oom(err, NULL);
	}
	for (i = 0; i < o.cap; i++)
		if (o.keys[i]) {
			size_t j = slot_of(s, o.keys[i]);

			s->keys[j] = o.keys[i];
			s->tensor[j] = o.tensor[i];
		}
	free(o.keys);
	free(o.tensor);
	free(o.mark);
	return 0;
}

int nx_fp__pool_add(nx_fp_set *set, const char *name, const unsigned char *p, size_t n,
		    nx_error *err)
{
	struct fp_pool *s = set->pool;
	size_t i, k = n / 4, added = 0;
	float x[FP_POOL_HIST + FP_POOL_BLOCK];
	struct wins *w;

	if (k < 4)
		return 0;
	if (!s) {
		if (!(s = calloc(1, sizeof(*s))))
			return nx_error_oom(err, NULL);
		s->mul = nx_keyhash("fp_pool", 7, NULL, 0) | 1;
		set->pool = s;
	}
	if (NX_ARRAY_PUSH(s->t, s->capt, s->nt))
		return nx_error_oom(err, NULL);
	/* a small tensor is at most FP_POOL_BLOCK elements (4 KiB) */
	if (k > FP_POOL_BLOCK)
		k = FP_POOL_BLOCK;
	memcpy(x, p, 4 * k);
	if (!(w = malloc(sizeof(*w))))
		return nx_error_oom(err, NULL);
	keys_of(w, x, k, 1, 0);
	for (i = 0; i + 3 < k && s->n < FP_POOL_MAX; i++) {
		uint64_t key = key_at(w, i), h;
		size_t j;

		if (!key)
			continue;
		if (2 * (s->n + 1) > s->cap) {
			int rc = grow(s, err);

			if (rc) {
				free(w);
				return rc;
			}
		}
		j = slot_of(s, key);
		if (s->keys[j])
			continue;
		s->keys[j] = key;
		h = spread(s, key) >> (64 - FP_POOL_FILTER_BITS);
		s->filter[h / 64] |= 1ull << (h % 64);
		s->tensor[j] = (uint32_t)s->nt;
		s->n++;
		added++;
	}
	free(w);
	if (!added)
		return 0;
	if (!(s->t[s->nt].name = strdup(name)))
		return nx_error_oom(err, NULL);
	s->t[s->nt++].file = set->nfiles ? set->nfiles - 1 : 0;
	return 0;
}

size_t nx_fp__pool_count(const nx_fp_set *set)
{
	return set->pool ? set->pool->n : 0;
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
	free(s->mark);
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
	s->marked = 0;
	for (size_t i = 0; i < s->nf; i++)
		free(s->f[i].student);
	s->nf = 0;
}

static void mark(struct nx_fp__pool_scan *ps, size_t slot)
{
	struct fp_pool *s = ps->s;

	if (s->mark[slot])
		return;
	s->mark[slot] = 1;
	s->marked++;
	ps->marks++;
}

/* The next window of a lane (its key, 0: none). */
static void window(struct nx_fp__pool_scan *ps, struct nx_fp__pool_lane *l, uint64_t key)
{
	struct fp_pool *s = ps->s;
	uint64_t h = spread(s, key) >> (64 - FP_POOL_FILTER_BITS);
	size_t j;

	if (!key || !(s->filter[h / 64] >> (h % 64) & 1) || !s->keys[j = slot_of(s, key)]) {
		l->run = 0;
		return;
	}
	if (l->run < FP_POOL_RUN - 1) {
		l->pend[l->run++] = (uint32_t)j;
		return;
	}
	if (l->run == FP_POOL_RUN - 1)
		for (unsigned i = 0; i < FP_POOL_RUN - 1; i++)
			mark(ps, l->pend[i]);
	l->run = FP_POOL_RUN;
	mark(ps, j);
}

/* The windows of ps->x not seen yet (those inside the history were), in
 * the three lanes; the last FP_POOL_HIST elements kept. */
static void flush(struct nx_fp__pool_scan *ps)
{
	struct wins w;   /* 22 KiB */
	size_t n = ps->nx, i, first;

	for (unsigned st = 1; st <= 2; st++) {
		first = ps->hist > 3 * st ? ps->hist - 3 * st : 0;
		if (n < 3 * st + 1 || first + 3 * st >= n)
			continue;
		keys_of(&w, ps->x, n, st, first);
		for (i = first; i + 3 * st < n; i++)
			window(ps, &ps->lane[st == 1 ? 0 : 1 + ((ps->base + i) & 1)], key_at(&w, i));
	}
	if (n > FP_POOL_HIST) {
		memmove(ps->x, ps->x + n - FP_POOL_HIST, FP_POOL_HIST * sizeof(*ps->x));
		ps->base += n - FP_POOL_HIST;
		ps->nx = ps->hist = FP_POOL_HIST;
	} else {
		ps->hist = (unsigned)n;
	}
}

void nx_fp__pool_scan_begin(struct nx_fp__pool_scan *ps, const nx_fp_set *set)
{
	memset(ps, 0, sizeof(*ps));
	ps->s = set->pool && set->pool->n ? set->pool : NULL;
}

int nx_fp__pool_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct nx_fp__pool_scan *ps = ctx;
	const size_t cap = FP_POOL_HIST + FP_POOL_BLOCK;

	if (!ps->s)
		return 0;
	while (len) {
		size_t k = 4 - ps->ncarry < len ? 4 - ps->ncarry : len;

		if (!ps->ncarry && len >= 4) {
			/* whole elements straight from buf */
			k = (cap - ps->nx < len / 4 ? cap - ps->nx : len / 4);
			memcpy(ps->x + ps->nx, buf, 4 * k);
			ps->nx += k;
			buf += 4 * k;
			len -= 4 * k;
		} else {
			memcpy(ps->carry + ps->ncarry, buf, k);
			ps->ncarry += k;
			buf += k;
			len -= k;
			if (ps->ncarry == 4) {
				memcpy(ps->x + ps->nx++, ps->carry, 4);
				ps->ncarry = 0;
			}
		}
		if (ps->nx == cap)
			flush(ps);
	}
	return 0;
}

int nx_fp__pool_scan_end(struct nx_fp__pool_scan *ps, const char *name, nx_error *err)
{
	struct fp_pool *s = ps->s;

	if (s)
		flush(ps);
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

	nx_fp__pool_scan_begin(&ps, set);
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
	v->pool = s->n;
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
