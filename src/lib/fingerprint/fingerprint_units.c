/*
 * fingerprint_units.c - per-vector fingerprints: teacher vectors re-encoded
 * one by one (docs/TRV.md "Re-encoded vectors").
 *
 * A network keeps its function when its hidden units are permuted, a unit's
 * sign is flipped (odd activations), an output column is scaled and the
 * scale undone after the MatMul, a unit is padded, axes are swapped and
 * undone by a Transpose, or a vector is quantized with its own scale and
 * zero point.  Every one of these keeps whole vectors of a teacher matrix
 * (a row, a column) intact up to an affine map a v + b and rounding, while
 * no tensor correlates with a teacher tensor element for element
 * (fingerprint_corr.c).  So fixed-length blocks of vectors are
 * fingerprinted instead:
 *
 * A block is FP_UNITS_B consecutive elements along one axis, starting at a
 * multiple of FP_UNITS_B: along each row (the last axis) and, for tensors
 * of two axes or more, along each column of the [dims[0], rest] view (the
 * first axis).  Its key, the same for a v + b (a of any sign) and for
 * rounding except near ties: the set of positions of its FP_UNITS_K
 * largest |v - mean|, and the signs of those elements relative to the
 * first (27 bits).  A second, 32-bit sketch (bit i: element 2i is over
 * element 2i + 1, after the same sign) filters candidates by Hamming
 * distance, and a candidate is verified by reading the teacher block back
 * from its file: |Pearson r| >= FP_UNITS_R over the FP_UNITS_B elements.
 *
 * Teacher: each float tensor's blocks (float32, float16, bfloat16, float64),
 * without those any model may hold: a fill, a few levels (a mask), or a
 * block an order-2 linear recurrence predicts (ramps, geometric runs,
 * sinusoids).  A tensor half of whose blocks along one axis are predicted
 * that way is a table made by a formula (a sinusoidal positional table:
 * its rows are chirps, not predicted, but come from the same formula) and
 * is not kept at all.  At most FP_UNITS_MAX blocks are kept, the largest
 * tensors' that fit (16 bytes each); the teacher files stay open (a dup of their
 * descriptor, FP_UNITS_FILES at most) until the set is freed.
 *
 * Student: every tensor of a float or integer type (int8/uint8 codes are
 * affine in the values they stand for), both axes.  Where the student's
 * rounding (its type's precision, one code for integers) could reorder the
 * elements at the top-FP_UNITS_K boundary, every key the tie could give is
 * looked up (FP_UNITS_PROBES at most; a block with more is skipped).  The
 * cost is one read of the student per axis and a constant per block.
 */
#include "fingerprint_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <immintrin.h>

#include "util/strset_int.h"

#define FP_UNITS_SKETCH_MAX 8       /* sketch bits (of 32) a candidate may differ in */
#define FP_UNITS_FILES 64           /* teacher files kept open */
#define FP_UNITS_PROBES 16          /* keys looked up for one student block */
#define FP_UNITS_LEVELS 16          /* a teacher block of fewer values is not kept */
#define FP_UNITS_PREDICTED 1e-2     /* residual / variance of a predicted block */
#define UNITS_WINDOW (1u << 20)     /* bytes of rows one pread reads */
#define UNITS_COLS_WINDOW (4u << 20)   /* bytes of 64 rows read at once (else slabs) */
#define UNITS_BUCKET_BITS 20
#define UNITS_FILTER_BITS 22        /* a bit per hashed key: most misses stop there */
#define FP_UNITS_FULL (1u << 22)    /* student elements read whole; over: a quarter */
/* blocks of one teacher tensor confirmed in one student tensor: 256 KiB of
 * float32, 16 times the bound the sum judges (NX_FP_SMALL_TOTAL_MAX); past
 * it a copy is a copy, and confirming every block of a large one read its
 * columns back an element at a time (2.4M reads for a 9 MB copy) */
#define FP_UNITS_CONFIRM_MAX 1024u
#define UNITS_STOP 1                /* a block_fn's: no more blocks wanted */
#define UNITS_RANK_MAX 32           /* candidates ranked by counting (more: inserted) */
#define UNITS_SPLIT_MIN (1u << 20)  /* student elements checked on two threads */

struct unit_entry {
	uint32_t key, sketch, tensor, block;
};

struct unit_tensor {
	char *name;
	size_t file;        /* index into the set's files */
	int fdi;            /* index into fds */
	uint64_t off, n, rows, cols, first, rest;   /* see struct view */
	uint64_t rowblocks;
	int32_t dtype;
	unsigned width;
	uint32_t nblocks;
	uint32_t budget;    /* units_trim's count */
};

struct fp_units {
	struct unit_tensor *t;
	size_t nt, capt;
	struct unit_entry *e;
	size_t n, cap;
	int fds[FP_UNITS_FILES];
	char *paths[FP_UNITS_FILES];
	size_t nfds;
	uint32_t *head;     /* per bucket (the key's top bits): its first entry + 1 */
	uint32_t *next;     /* per entry: the next of its bucket + 1 (0: none) */
	uint64_t *filter;   /* bit filter_of(key): some entry may have the key */
};

/* A tensor of n elements as rows [rows, cols] (blocks along the last axis)
 * and columns of [first, rest] (blocks along the first axis; first 0: none). */
struct view {
	uint64_t n, rows, cols, first, rest, rowblocks, colblocks;
};

static void view_of(struct view *v, uint64_t n, const int64_t *dims, size_t ndims)
{
	uint64_t prod = 1;
	size_t i;

	memset(v, 0, sizeof(*v));
	v->n = n;
	for (i = 0; i < ndims; i++)
		prod = dims[i] > 0 ? prod * (uint64_t)dims[i] : 0;
	if (!ndims || prod != n || dims[ndims - 1] <= 0) {
		v->rows = 1;
		v->cols = n;
	} else {
		v->cols = (uint64_t)dims[ndims - 1];
		v->rows = n / v->cols;
		if (ndims >= 2 && dims[0] >= FP_UNITS_B) {
			v->first = (uint64_t)dims[0];
			v->rest = n / v->first;
		}
	}
	v->rowblocks = v->rows * (v->cols / FP_UNITS_B);
	v->colblocks = v->first ? v->rest * (v->first / FP_UNITS_B) : 0;
}

#define UNITS_TOP FP_UNITS_TOP

/* The sum of 64 elements in the order the AVX2 path adds them (eight
 * running sums, i mod 8, then pairwise), so both round alike.  For
 * float32 and 16-bit data the sum is exact in any order. */
static double units_sum8(const double *s)
{
	double t0 = s[0] + s[4], t1 = s[1] + s[5], t2 = s[2] + s[6], t3 = s[3] + s[7];

	return (t0 + t2) + (t1 + t3);
}

void nx_fp__units_block_ref(struct nx_fp__units_block *b, const double *v)
{
	double mean, s[8] = { 0 }, q[8] = { 0 };
	int i, j;

	for (i = 0; i < FP_UNITS_B; i++)
		s[i % 8] += v[i];
	mean = units_sum8(s) / FP_UNITS_B;
	b->up = b->down = 0;
	for (j = 0; j < UNITS_TOP; j++) {
		b->a[j] = -1;
		b->ord[j] = 0;
	}
	for (i = 0; i < FP_UNITS_B; i++) {
		double c = v[i] - mean, a = fabs(c);

		b->c[i] = c;
		q[i % 8] += c * c;
		if (a > b->a[UNITS_TOP - 1]) {
			for (j = UNITS_TOP - 1; j > 0 && b->a[j - 1] < a; j--) {
				b->a[j] = b->a[j - 1];
				b->ord[j] = b->ord[j - 1];
			}
			b->a[j] = a;
			b->ord[j] = i;
		}
	}
	b->var = units_sum8(q);
	for (i = 0; i < FP_UNITS_B / 2; i++) {
		double x = b->c[2 * i], y = b->c[2 * i + 1];

		b->up |= (uint32_t)(x > y) << i;
		b->down |= (uint32_t)(x < y) << i;
	}
}

/*
 * The same four lanes at a time.  The top |c| without the scalar loop's
 * branchy insertion: t, the least of the largest |c| of eight disjoint
 * groups of eight, has eight elements at or over it, so an element under
 * t is in no top eight; the few at or over it (NaN never) are ranked by
 * counting, the order being |c| descending, then position.
 */
__attribute__((target("avx2"))) static double units_hsum(__m256d lo, __m256d hi)
{
	__m256d t = _mm256_add_pd(lo, hi);   /* s[l] + s[l + 4] */
	__m128d u = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));

	return _mm_cvtsd_f64(u) + _mm_cvtsd_f64(_mm_unpackhi_pd(u, u));
}

__attribute__((target("avx2"))) static void block_avx2(struct nx_fp__units_block *b,
						      const double *v)
{
	const __m256d sign = _mm256_set1_pd(-0.0);
	__m256d s0 = _mm256_setzero_pd(), s1 = s0, q0 = s0, q1 = s0, m0, m1, mean, t;
	double abs[FP_UNITS_B], ca[FP_UNITS_B + 4], top[FP_UNITS_B];
	int ci[FP_UNITS_B], at[FP_UNITS_B];
	uint64_t over = 0, tie = 0, cand;
	int i, n, p, need;

	for (i = 0; i < FP_UNITS_B; i += 8) {
		s0 = _mm256_add_pd(s0, _mm256_loadu_pd(v + i));
		s1 = _mm256_add_pd(s1, _mm256_loadu_pd(v + i + 4));
	}
	mean = _mm256_set1_pd(units_hsum(s0, s1) / FP_UNITS_B);
	m0 = m1 = _mm256_set1_pd(-1);
	b->up = b->down = 0;
	for (i = 0; i < FP_UNITS_B; i += 8) {
		__m256d x = _mm256_sub_pd(_mm256_loadu_pd(v + i), mean);
		__m256d y = _mm256_sub_pd(_mm256_loadu_pd(v + i + 4), mean);
		__m256d ax = _mm256_andnot_pd(sign, x), ay = _mm256_andnot_pd(sign, y);
		__m256d lo = _mm256_unpacklo_pd(x, y), hi = _mm256_unpackhi_pd(x, y);
		/* lanes of lo / hi: pairs 0, 2, 1, 3 of these eight */
		unsigned gt = (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(lo, hi, _CMP_GT_OQ));
		unsigned lt = (unsigned)_mm256_movemask_pd(_mm256_cmp_pd(lo, hi, _CMP_LT_OQ));

		gt = (gt & 9) | (gt & 2) << 1 | (gt & 4) >> 1;
		lt = (lt & 9) | (lt & 2) << 1 | (lt & 4) >> 1;
		b->up |= gt << (i / 2);
		b->down |= lt << (i / 2);
		_mm256_storeu_pd(b->c + i, x);
		_mm256_storeu_pd(b->c + i + 4, y);
		_mm256_storeu_pd(abs + i, ax);
		_mm256_storeu_pd(abs + i + 4, ay);
		q0 = _mm256_add_pd(q0, _mm256_mul_pd(x, x));
		q1 = _mm256_add_pd(q1, _mm256_mul_pd(y, y));
		/* group maxima: lane l of m0 over the elements 8j + l, of m1
		 * over 8j + 4 + l; a NaN counts as -1 */
		ax = _mm256_blendv_pd(_mm256_set1_pd(-1), ax, _mm256_cmp_pd(ax, ax, _CMP_ORD_Q));
		ay = _mm256_blendv_pd(_mm256_set1_pd(-1), ay, _mm256_cmp_pd(ay, ay, _CMP_ORD_Q));
		m0 = _mm256_max_pd(m0, ax);
		m1 = _mm256_max_pd(m1, ay);
	}
	b->var = units_hsum(q0, q1);
	t = _mm256_min_pd(m0, m1);
	t = _mm256_min_pd(t, _mm256_permute4x64_pd(t, 0x4e));
	t = _mm256_min_pd(t, _mm256_permute4x64_pd(t, 0xb1));
	for (i = 0; i < FP_UNITS_B; i += 4) {
		__m256d x = _mm256_loadu_pd(abs + i);

		over |= (uint64_t)_mm256_movemask_pd(_mm256_cmp_pd(x, t, _CMP_GT_OQ)) << i;
		tie |= (uint64_t)_mm256_movemask_pd(_mm256_cmp_pd(x, t, _CMP_EQ_OQ)) << i;
	}
	/* of the elements equal to t (many, where one element dwarfs the
	 * rest: their |c| is the mean's), only the first 8 - #over can rank */
	cand = over;
	for (need = UNITS_TOP - __builtin_popcountll(over); need > 0 && tie; need--, tie &= tie - 1)
		cand |= tie & -tie;
	for (n = 0; cand; cand &= cand - 1, n++) {
		ci[n] = __builtin_ctzll(cand);
		ca[n] = abs[ci[n]];
	}
	for (i = n; i < n + 4; i++)
		ca[i] = -2;   /* under every candidate */
	for (i = 0; i < UNITS_TOP; i++) {
		top[i] = -1;
		at[i] = 0;
	}
	/* rank: the candidates before p at or over it, after p over it */
	for (p = 0; p < n && n <= UNITS_RANK_MAX; p++) {
		__m256d x = _mm256_set1_pd(ca[p]);
		uint64_t ge = 0, gt = 0, before = (1ull << p) - 1;
		int r, q;

		for (q = 0; q < n; q += 4) {
			__m256d y = _mm256_loadu_pd(ca + q);

			ge |= (uint64_t)_mm256_movemask_pd(_mm256_cmp_pd(y, x, _CMP_GE_OQ)) << q;
			gt |= (uint64_t)_mm256_movemask_pd(_mm256_cmp_pd(y, x, _CMP_GT_OQ)) << q;
		}
		r = __builtin_popcountll(ge & before) + __builtin_popcountll(gt & ~before & ~(1ull << p));
		top[r] = ca[p];
		at[r] = ci[p];
	}
	/* many over t (rare): the scalar loop's insertion, over them only */
	for (p = 0; p < n && n > UNITS_RANK_MAX; p++) {
		int j;

		if (!(ca[p] > top[UNITS_TOP - 1]))
			continue;
		for (j = UNITS_TOP - 1; j > 0 && top[j - 1] < ca[p]; j--) {
			top[j] = top[j - 1];
			at[j] = at[j - 1];
		}
		top[j] = ca[p];
		at[j] = ci[p];
	}
	memcpy(b->a, top, sizeof(b->a));
	memcpy(b->ord, at, sizeof(b->ord));
}

void nx_fp__units_block(struct nx_fp__units_block *b, const double *v)
{
	static int avx2 = -1;

	if (avx2 < 0)
		avx2 = __builtin_cpu_supports("avx2");
	if (avx2)
		block_avx2(b, v);
	else
		nx_fp__units_block_ref(b, v);
}

/* The key of the block's elements pos[0 .. K) and its sketch. */
static uint32_t key_of(const struct nx_fp__units_block *b, const int *sel, uint32_t *sketch)
{
	int p[FP_UNITS_K], i;
	uint32_t key = 0;
	bool neg;

	/* insertion sort: four positions */
	for (i = 0; i < FP_UNITS_K; i++) {
		int j, x = sel[i];

		for (j = i; j > 0 && p[j - 1] > x; j--)
			p[j] = p[j - 1];
		p[j] = x;
	}
	neg = b->c[p[0]] < 0;
	for (i = 0; i < FP_UNITS_K; i++)
		key |= (uint32_t)p[i] << (6 * i);
	for (i = 1; i < FP_UNITS_K; i++)
		key |= (uint32_t)((b->c[p[i]] < 0) != neg) << (6 * FP_UNITS_K + i - 1);
	*sketch = neg ? b->down : b->up;
	return key;
}

/* Fewer than FP_UNITS_LEVELS distinct values (a mask, a few levels)?
 * An open-addressed set of their bits (128 slots), left as soon as it
 * holds FP_UNITS_LEVELS (it was most of a teacher block's cost). */
static bool few_levels(const double *c)
{
	uint64_t slot[2 * FP_UNITS_B];
	bool used[2 * FP_UNITS_B] = { false };
	int i, j, distinct = 0;

	for (i = 0; i < FP_UNITS_B; i++) {
		uint64_t x;

		memcpy(&x, &c[i], 8);
		for (j = (int)((x * 0x9e3779b97f4a7c15ull) >> 57); used[j] && slot[j] != x;
		     j = (j + 1) % (2 * FP_UNITS_B))
			;
		if (!used[j]) {
			used[j] = true;
			slot[j] = x;
			if (++distinct >= FP_UNITS_LEVELS)
				return false;
		}
	}
	return true;
}

typedef double units_v4 __attribute__((vector_size(32)));

/* A block any model may hold: constant, a few levels, or predicted by an
 * order-2 linear recurrence x[i+1] = p x[i] + q x[i-1] + r (a ramp, a
 * geometric run, a sinusoid) to within FP_UNITS_PREDICTED of its variance. */
static bool formulaic(const struct nx_fp__units_block *b, bool *predicted)
{
	double m[3][4] = { { 0 } }, coef[3], res = 0, tot = 0, my = 0;
	int i;

	*predicted = false;
	if (!(b->var > 0) || !isfinite(b->var))
		return true;
	if (few_levels(b->c))
		return true;
	/* least squares over the normal equations (3 x 3, Cramer's rule);
	 * row j of m is added as one vector (x[j] times x0, x1, 1, y), each
	 * sum in the same order as element by element */
	{
		units_v4 r0 = { 0 }, r1 = { 0 }, r2 = { 0 };

		for (i = 1; i + 1 < FP_UNITS_B; i++) {
			units_v4 x = { b->c[i], b->c[i - 1], 1, b->c[i + 1] };

			r0 += b->c[i] * x;
			r1 += b->c[i - 1] * x;
			r2 += x;
			my += b->c[i + 1];
		}
		memcpy(m[0], &r0, sizeof(m[0]));
		memcpy(m[1], &r1, sizeof(m[1]));
		memcpy(m[2], &r2, sizeof(m[2]));
	}
	my /= FP_UNITS_B - 2;
	if (!nx_fp__solve3((const double (*)[4])m, coef))
		return *predicted = true;
	for (i = 1; i + 1 < FP_UNITS_B; i++) {
		double e = b->c[i + 1] - coef[0] * b->c[i] - coef[1] * b->c[i - 1] - coef[2];

		res += e * e;
		tot += (b->c[i + 1] - my) * (b->c[i + 1] - my);
	}
	return *predicted = res <= FP_UNITS_PREDICTED * tot;
}

typedef int (*block_fn)(void *ctx, const double *v, uint32_t id, nx_error *err);

static int units_read(int fd, const char *path, unsigned char *buf, size_t len, uint64_t off,
		      nx_error *err)
{
	ssize_t got = nx_pread_full(fd, buf, len, off);

	if (got != (ssize_t)len)
		return nx_error_errno(err, NX_EIO, got < 0 ? errno : EIO, path, "cannot read %s",
				      path);
	return 0;
}

/* Read this group of 64 rows (or window of rows)?  All of them, or a
 * quarter chosen under the run's key (sample: the tensor's name). */
static bool units_pick(const char *sample, int axis, uint64_t group)
{
	uint64_t at[2] = { (uint64_t)axis, group };

	return !sample || (nx_keyhash(sample, strlen(sample), at, sizeof(at)) & 3) == 0;
}

/* A tensor's blocks in groups, each read at once: windows of whole rows
 * (nr of them; 0: one long row in pieces), then 64 rows' columns. */
struct walk {
	int fd;
	const char *path;
	uint64_t off;
	int32_t dtype;
	const struct view *vw;
	const char *sample;
	unsigned width;
	uint64_t per, rowbytes, nr, rowgroups, groups;
};

static void walk_init(struct walk *w, int fd, const char *path, uint64_t off, int32_t dtype,
		      const struct view *vw, const char *sample)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->path = path;
	w->off = off;
	w->dtype = dtype;
	w->vw = vw;
	w->sample = sample;
	w->width = nx_fp__num_width(dtype);
	w->per = vw->cols / FP_UNITS_B;
	if (w->per) {
		w->rowbytes = vw->cols * w->width;
		w->nr = w->rowbytes <= UNITS_WINDOW ? UNITS_WINDOW / w->rowbytes : 0;
		if (sample && w->nr > FP_UNITS_B)
			w->nr = FP_UNITS_B;
		w->rowgroups = w->nr ? (vw->rows + w->nr - 1) / w->nr : vw->rows;
	}
	w->groups = w->rowgroups + (vw->colblocks ? vw->first / FP_UNITS_B : 0);
}

/* fn for every block of group k (buf: UNITS_COLS_WINDOW bytes); ids:
 * row blocks row-major (0 .. rowblocks), then column blocks column-major
 * (rowblocks + c x blocks + g). */
static int walk_group(const struct walk *w, uint64_t k, unsigned char *buf, block_fn fn,
		      void *ctx, nx_error *err)
{
	const struct view *vw = w->vw;
	uint64_t width = w->width, i, c, c0, g, slab, base;
	double v[FP_UNITS_B];
	int rc = 0;

	if (k < w->rowgroups) {
		uint64_t r = w->nr ? k * w->nr : k, m;

		if (!units_pick(w->sample, 0, k))
			return 0;
		if (!w->nr) {   /* a long row in pieces */
			for (i = 0; i < w->per && !rc; i++) {
				if ((rc = units_read(w->fd, w->path, buf, FP_UNITS_B * width,
						     w->off + r * w->rowbytes +
							     i * FP_UNITS_B * width, err)) != 0)
					break;
				nx_fp__num_get_n(v, buf, FP_UNITS_B, width, w->dtype);
				rc = fn(ctx, v, (uint32_t)(r * w->per + i), err);
			}
			return rc;
		}
		m = vw->rows - r < w->nr ? vw->rows - r : w->nr;
		if ((rc = units_read(w->fd, w->path, buf, m * w->rowbytes, w->off + r * w->rowbytes,
				     err)) != 0)
			return rc;
		for (i = 0; i < m * w->per && !rc; i++) {
			nx_fp__num_get_n(v, buf + i / w->per * w->rowbytes + i % w->per * FP_UNITS_B * width,
				     FP_UNITS_B, width, w->dtype);
			rc = fn(ctx, v, (uint32_t)(r * w->per + i), err);
		}
		return rc;
	}
	/* 64 rows' columns: one read when they fit, else slabs of columns */
	g = k - w->rowgroups;
	if (!units_pick(w->sample, 1, g))
		return 0;
	slab = (UNITS_COLS_WINDOW / FP_UNITS_B) / width;
	base = w->off + g * FP_UNITS_B * vw->rest * width;
	if (slab > vw->rest)
		slab = vw->rest;
	for (c0 = 0; c0 < vw->rest && !rc; c0 += slab) {
		uint64_t s = vw->rest - c0 < slab ? vw->rest - c0 : slab;

		if (s == vw->rest)
			rc = units_read(w->fd, w->path, buf, FP_UNITS_B * s * width, base, err);
		for (i = 0; s != vw->rest && i < FP_UNITS_B && !rc; i++)
			rc = units_read(w->fd, w->path, buf + i * s * width, s * width,
					base + (i * vw->rest + c0) * width, err);
		for (c = 0; c < s && !rc; c++) {
			nx_fp__num_get_n(v, buf + c * width, FP_UNITS_B, s * width, w->dtype);
			rc = fn(ctx, v, (uint32_t)(vw->rowblocks +
						  (c0 + c) * (vw->first / FP_UNITS_B) + g),
				err);
		}
	}
	return rc;
}

/* fn for every block of the tensor of type dtype at off of fd (view vw),
 * in order; fn may say UNITS_STOP. */
static int each_block(int fd, const char *path, uint64_t off, int32_t dtype,
		      const struct view *vw, const char *sample, block_fn fn, void *ctx,
		      nx_error *err)
{
	unsigned char *buf = NULL;
	struct walk w;
	uint64_t k;
	int rc = 0;

	walk_init(&w, fd, path, off, dtype, vw, sample);
	if (!(buf = malloc(UNITS_COLS_WINDOW)))
		return nx_error_oom(err, NULL);
	for (k = 0; k < w.groups && !rc; k++)
		rc = walk_group(&w, k, buf, fn, ctx, err);
	free(buf);
	return rc == UNITS_STOP ? 0 : rc;
}

/* Teacher: the blocks of one tensor, kept only when it is not a table. */
struct collect {
	struct fp_units *u;
	uint32_t tensor;
	size_t start;
	uint64_t predicted[2], seen[2];
	uint64_t rowblocks;
};

/* One teacher block read (b: its summary): counted, and to be kept
 * unless the table rule explains it (formulaic).  One thread's walk
 * (collect_fn) and the two threads' groups (cgroup_fn) count alike. */
static bool block_counted(struct nx_fp__units_block *b, const double *v, int axis,
			  uint64_t seen[2], uint64_t predicted[2])
{
	bool p;

	nx_fp__units_block(b, v);
	seen[axis]++;
	if (formulaic(b, &p)) {
		predicted[axis] += p;
		return false;
	}
	return true;
}

static int collect_fn(void *ctx, const double *v, uint32_t id, nx_error *err)
{
	struct collect *c = ctx;
	struct fp_units *u = c->u;
	struct nx_fp__units_block b;

	if (u->n == u->cap && u->cap >= FP_UNITS_MAX + FP_UNITS_MAX / 4)
		return UNITS_STOP;
	if (!block_counted(&b, v, id >= c->rowblocks, c->seen, c->predicted))
		return 0;
	/* full (trimmed after each tensor): the rest of this one is not kept */
	if (u->n == u->cap && u->cap >= FP_UNITS_MAX + FP_UNITS_MAX / 4)
		return UNITS_STOP;
	if (u->n == u->cap) {
		size_t cap = u->cap ? 2 * u->cap : 4096;
		struct unit_entry *e;

		if (cap > FP_UNITS_MAX + FP_UNITS_MAX / 4)
			cap = FP_UNITS_MAX + FP_UNITS_MAX / 4;
		if (!(e = realloc(u->e, cap * sizeof(*e))))
			return nx_error_oom(err, NULL);
		u->e = e;
		u->cap = cap;
	}
	u->e[u->n].key = key_of(&b, b.ord, &u->e[u->n].sketch);
	u->e[u->n].tensor = c->tensor;
	u->e[u->n].block = id;
	u->n++;
	return 0;
}

/*
 * A large teacher tensor's blocks on two threads.  The keys come out as
 * one thread's would: groups are taken W at a time (a batch), either
 * thread taking the next group not taken, each group's kept blocks and
 * counts in its own slot; the calling thread then appends the slots in
 * group order.  The group where the set fills is walked again one block
 * at a time by collect_fn, so the blocks kept and the counts the table
 * rule reads stop exactly where they stop on one thread.
 */
#define COLLECT_W 8                 /* groups in a batch */
#define COLLECT_GROUP_MAX (1u << 16)   /* blocks in a group (more: one thread) */

struct cslot {
	struct unit_entry *e;   /* key, sketch, block of each kept block (tensor unset) */
	size_t n;
	uint64_t predicted[2], seen[2];
	int rc;
	nx_error err;
};

struct cbatch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	const struct walk *w;
	uint64_t rowblocks;
	uint64_t first, count;   /* this batch's groups */
	uint64_t next;           /* the next group to take (atomic) */
	unsigned busy;           /* groups taken and not finished */
	uint64_t round;          /* batches posted */
	bool end;
	struct cslot slot[COLLECT_W];
};

struct cgroup {
	struct cslot *s;
	uint64_t rowblocks;
};

static int cgroup_fn(void *ctx, const double *v, uint32_t id, nx_error *err)
{
	struct cgroup *g = ctx;
	struct cslot *s = g->s;
	struct nx_fp__units_block b;

	(void)err;
	if (!block_counted(&b, v, id >= g->rowblocks, s->seen, s->predicted))
		return 0;
	/* the slot holds a whole group (COLLECT_GROUP_MAX blocks at most) */
	s->e[s->n].key = key_of(&b, b.ord, &s->e[s->n].sketch);
	s->e[s->n].block = id;
	s->n++;
	return 0;
}

/* Take and walk this batch's groups until none is left. */
static void cbatch_work(struct cbatch *cb, unsigned char *buf)
{
	uint64_t k;

	while ((k = __atomic_fetch_add(&cb->next, 1, __ATOMIC_ACQ_REL)) < cb->count) {
		struct cslot *s = &cb->slot[k];
		struct cgroup g = { s, cb->rowblocks };

		s->n = 0;
		s->predicted[0] = s->predicted[1] = s->seen[0] = s->seen[1] = 0;
		nx_error_clear(&s->err);
		s->rc = walk_group(cb->w, cb->first + k, buf, cgroup_fn, &g, &s->err);
		pthread_mutex_lock(&cb->lock);
		cb->busy--;
		pthread_cond_broadcast(&cb->cond);
		pthread_mutex_unlock(&cb->lock);
	}
}

struct chelper {
	struct cbatch *cb;
	unsigned char *buf;
};

static void *chelper_run(void *arg)
{
	struct chelper *h = arg;
	struct cbatch *cb = h->cb;
	uint64_t seen = 0;

	pthread_mutex_lock(&cb->lock);
	for (;;) {
		while (cb->round == seen && !cb->end)
			pthread_cond_wait(&cb->cond, &cb->lock);
		if (cb->round == seen)
			break;
		seen = cb->round;
		pthread_mutex_unlock(&cb->lock);
		cbatch_work(cb, h->buf);
		pthread_mutex_lock(&cb->lock);
	}
	pthread_mutex_unlock(&cb->lock);
	return NULL;
}

/* Slot s appended to the set; UNITS_STOP when the set fills in it (then
 * its group is walked again by collect_fn, which stops where one thread
 * stopped). */
static int cslot_merge(struct collect *c, const struct walk *w, uint64_t k, struct cslot *s,
		       unsigned char *buf, nx_error *err)
{
	struct fp_units *u = c->u;
	const size_t full = FP_UNITS_MAX + FP_UNITS_MAX / 4;
	size_t i;
	int rc;

	if (s->rc) {
		if (err)
			*err = s->err;
		return s->rc;
	}
	if (u->n + s->n >= full) {
		rc = walk_group(w, k, buf, collect_fn, c, err);
		return rc ? rc : UNITS_STOP;
	}
	if (u->n + s->n > u->cap) {
		size_t cap = u->cap ? u->cap : 4096;
		struct unit_entry *e;

		while (cap < u->n + s->n)
			cap *= 2;
		if (cap > full)
			cap = full;
		if (!(e = realloc(u->e, cap * sizeof(*e))))
			return nx_error_oom(err, NULL);
		u->e = e;
		u->cap = cap;
	}
	for (i = 0; i < s->n; i++) {
		u->e[u->n] = s->e[i];
		u->e[u->n++].tensor = c->tensor;
	}
	for (i = 0; i < 2; i++) {
		c->seen[i] += s->seen[i];
		c->predicted[i] += s->predicted[i];
	}
	return 0;
}

/* Every block of the tensor into c, as each_block(..., collect_fn, c)
 * does; on two threads when it is large and a thread can be made. */
static int collect_blocks(int fd, const char *path, uint64_t off, int32_t dtype,
			  const struct view *vw, struct collect *c, nx_error *err)
{
	struct cbatch cb;
	struct chelper h = { &cb, NULL };
	unsigned char *buf;
	struct walk w;
	pthread_t tid;
	bool threaded = false;
	uint64_t k, most;
	unsigned i;
	int rc = 0;

	walk_init(&w, fd, path, off, dtype, vw, NULL);
	most = w.nr ? w.nr * w.per : w.per;
	if (vw->colblocks && vw->rest > most)
		most = vw->rest;
	if (vw->n < UNITS_SPLIT_MIN || most > COLLECT_GROUP_MAX)
		return each_block(fd, path, off, dtype, vw, NULL, collect_fn, c, err);
	memset(&cb, 0, sizeof(cb));
	cb.w = &w;
	cb.rowblocks = vw->rowblocks;
	if (!(buf = malloc(UNITS_COLS_WINDOW)))
		return nx_error_oom(err, NULL);
	for (i = 0; i < COLLECT_W; i++)
		if (!(cb.slot[i].e = malloc(most * sizeof(*cb.slot[i].e))))
			rc = nx_error_oom(err, NULL);
	/* as nx_fp__read_fanned: no lock is an error, no thread one thread */
	if (!rc && pthread_mutex_init(&cb.lock, NULL) != 0)
		rc = nx_error_set(err, NX_EINTERNAL, path, 0, -1,
				  "cannot make a lock to fingerprint %s", path);
	else if (!rc && pthread_cond_init(&cb.cond, NULL) != 0) {
		pthread_mutex_destroy(&cb.lock);
		rc = nx_error_set(err, NX_EINTERNAL, path, 0, -1,
				  "cannot make a condition to fingerprint %s", path);
	} else if (!rc) {
		if ((h.buf = malloc(UNITS_COLS_WINDOW)))
			threaded = pthread_create(&tid, NULL, chelper_run, &h) == 0;
		if (!threaded) {
			pthread_cond_destroy(&cb.cond);
			pthread_mutex_destroy(&cb.lock);
			rc = each_block(fd, path, off, dtype, vw, NULL, collect_fn, c, err);
			goto out;
		}
	}
	for (k = 0; !rc && k < w.groups; k += cb.count) {
		pthread_mutex_lock(&cb.lock);
		cb.first = k;
		cb.count = w.groups - k < COLLECT_W ? w.groups - k : COLLECT_W;
		cb.busy = (unsigned)cb.count;
		__atomic_store_n(&cb.next, 0, __ATOMIC_RELEASE);
		cb.round++;
		pthread_cond_broadcast(&cb.cond);
		pthread_mutex_unlock(&cb.lock);
		cbatch_work(&cb, buf);
		pthread_mutex_lock(&cb.lock);
		while (cb.busy)
			pthread_cond_wait(&cb.cond, &cb.lock);
		pthread_mutex_unlock(&cb.lock);
		for (i = 0; !rc && i < cb.count; i++)
			rc = cslot_merge(c, &w, k + i, &cb.slot[i], buf, err);
	}
	if (threaded) {
		pthread_mutex_lock(&cb.lock);
		cb.end = true;
		pthread_cond_broadcast(&cb.cond);
		pthread_mutex_unlock(&cb.lock);
		pthread_join(tid, NULL);
		pthread_cond_destroy(&cb.cond);
		pthread_mutex_destroy(&cb.lock);
	}
out:
	for (i = 0; i < COLLECT_W; i++)
		free(cb.slot[i].e);
	free(h.buf);
	free(buf);
	return rc == UNITS_STOP ? 0 : rc;
}

static int cmp_blocks_desc(const void *a, const void *b)
{
	const struct unit_tensor *x = *(const struct unit_tensor *const *)a;
	const struct unit_tensor *y = *(const struct unit_tensor *const *)b;

	return x->nblocks > y->nblocks ? -1 : x->nblocks < y->nblocks;
}

/* Keep the largest tensors' blocks, FP_UNITS_MAX at most. */
static int units_trim(struct fp_units *u, nx_error *err)
{
	struct unit_tensor **by = malloc(u->nt * sizeof(*by));
	size_t i, j, kept = 0;

	if (!by)
		return nx_error_oom(err, NULL);
	for (i = 0; i < u->nt; i++)
		by[i] = &u->t[i];
	qsort(by, u->nt, sizeof(*by), cmp_blocks_desc);
	/* each tensor's first blocks while they fit (budget, in nblocks) */
	for (i = 0; i < u->nt; i++) {
		uint32_t take = kept + by[i]->nblocks > FP_UNITS_MAX
					? (uint32_t)(FP_UNITS_MAX - kept) : by[i]->nblocks;

		by[i]->nblocks = take;
		kept += take;
	}
	free(by);
	for (i = 0; i < u->nt; i++)
		u->t[i].budget = u->t[i].nblocks;
	for (i = j = 0; i < u->n; i++)
		if (u->t[u->e[i].tensor].budget) {
			u->t[u->e[i].tensor].budget--;
			u->e[j++] = u->e[i];
		}
	u->n = j;
	return 0;
}

/* The index of a dup of fd for path (kept open), or -1 when FP_UNITS_FILES
 * are open already. */
static int units_fd(struct fp_units *u, int fd, const char *path, nx_error *err, int *out)
{
	size_t i;

	*out = -1;
	for (i = 0; i < u->nfds; i++)
		if (!strcmp(u->paths[i], path)) {
			*out = (int)i;
			return 0;
		}
	if (u->nfds == FP_UNITS_FILES)
		return 0;
	if (!(u->paths[u->nfds] = strdup(path)))
		return nx_error_oom(err, NULL);
	if ((u->fds[u->nfds] = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0) {
		free(u->paths[u->nfds]);
		return nx_error_errno(err, NX_EIO, errno, path, "cannot keep %s open", path);
	}
	*out = (int)u->nfds++;
	return 0;
}

int nx_fp__units_teacher(nx_fp_set *set, const char *name, int32_t dtype, int fd,
			 const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			 size_t ndims, nx_error *err)
{
	unsigned width = nx_fp__num_width(dtype);
	struct fp_units *u = set->units;
	struct collect c;
	struct unit_tensor *t;
	struct view vw;
	int rc, fdi;
	int a;

	if (!nx_fp__num_float(dtype) || len % width || len / width < FP_UNITS_B)
		return 0;
	view_of(&vw, len / width, dims, ndims);
	if (!vw.rowblocks && !vw.colblocks)
		return 0;
	if (vw.rowblocks + vw.colblocks > UINT32_MAX)
		return 0;
	if (!u && !(u = set->units = calloc(1, sizeof(*u))))
		return nx_error_oom(err, NULL);
	if ((rc = units_fd(u, fd, path, err, &fdi)) != 0 || fdi < 0)
		return rc;
	if (NX_ARRAY_PUSH(u->t, u->capt, u->nt))
		return nx_error_oom(err, NULL);
	t = &u->t[u->nt];
	memset(t, 0, sizeof(*t));
	memset(&c, 0, sizeof(c));
	c.u = u;
	c.tensor = (uint32_t)u->nt;
	c.start = u->n;
	c.rowblocks = vw.rowblocks;
	if ((rc = collect_blocks(fd, path, off, dtype, &vw, &c, err)) != 0) {
		u->n = c.start;
		return rc;
	}
	/* a table a formula wrote (sinusoidal positions): none of it */
	for (a = 0; a < 2; a++)
		if (c.seen[a] && c.predicted[a] * 2 >= c.seen[a])
			u->n = c.start;
	if (u->n == c.start)
		return 0;
	if (!(t->name = strdup(name))) {
		u->n = c.start;
		return nx_error_oom(err, NULL);
	}
	t->file = set->nfiles - 1;
	t->fdi = fdi;
	t->off = off;
	t->n = vw.n;
	t->rows = vw.rows;
	t->cols = vw.cols;
	t->first = vw.first;
	t->rest = vw.rest;
	t->rowblocks = vw.rowblocks;
	t->dtype = dtype;
	t->width = width;
	t->nblocks = (uint32_t)(u->n - c.start);
	u->nt++;
	if (u->n > FP_UNITS_MAX)
		return units_trim(u, err);
	return 0;
}

void nx_fp__units_free(struct fp_units *u)
{
	size_t i;

	if (!u)
		return;
	for (i = 0; i < u->nt; i++)
		free(u->t[i].name);
	for (i = 0; i < u->nfds; i++) {
		close(u->fds[i]);
		free(u->paths[i]);
	}
	free(u->t);
	free(u->e);
	free(u->head);
	free(u->next);
	free(u->filter);
	free(u);
}

static uint32_t bucket_of(uint32_t key)
{
	return key >> (6 * FP_UNITS_K + FP_UNITS_K - 1 - UNITS_BUCKET_BITS);
}

/* A key's bit in the filter: a hash of all of it (the bucket is its top
 * bits, which the largest position mostly fills). */
static uint32_t filter_of(uint32_t key)
{
	return (uint32_t)(((uint64_t)key * 0x9e3779b97f4a7c15ull) >> (64 - UNITS_FILTER_BITS));
}

/* Chain the entries by bucket (no copy, no sort: linear).  A student
 * block's key is mostly no teacher's: the filter (512 KiB, cached) says
 * so without the two cache misses of the bucket and its chain, which
 * were most of the check's time. */
static int units_index(struct fp_units *u, nx_error *err)
{
	size_t i;

	if (u->n > FP_UNITS_MAX && units_trim(u, err) != 0)
		return NX_ENOMEM;
	if (!(u->head = calloc((size_t)1 << UNITS_BUCKET_BITS, sizeof(*u->head))) ||
	    !(u->next = malloc(u->n * sizeof(*u->next))) ||
	    !(u->filter = calloc((size_t)1 << (UNITS_FILTER_BITS - 6), sizeof(*u->filter)))) {
		free(u->head);
		free(u->next);
		u->head = NULL;
		u->next = NULL;
		return nx_error_oom(err, NULL);
	}
	for (i = u->n; i-- > 0;) {
		uint32_t b = bucket_of(u->e[i].key), f = filter_of(u->e[i].key);

		u->next[i] = u->head[b];
		u->head[b] = (uint32_t)i + 1;
		u->filter[f / 64] |= 1ull << (f % 64);
	}
	return 0;
}

int nx_fp__units_begin(struct nx_fp__units_run *run, const nx_fp_set *set, nx_error *err)
{
	struct fp_units *u = set->units;

	memset(run, 0, sizeof(*run));
	if (!u || !u->n)
		return 0;
	if (!u->head && units_index(u, err) != 0)
		return NX_ENOMEM;
	run->u = u;
	if (!(run->seen = calloc(u->n / 64 + 1, sizeof(*run->seen))) ||
	    !(run->count = calloc(u->nt, sizeof(*run->count))))
		return nx_error_oom(err, NULL);
	return 0;
}

void nx_fp__units_end(struct nx_fp__units_run *run)
{
	free(run->seen);
	free(run->count);
	free(run->touched);
	memset(run, 0, sizeof(*run));
}

/* Pearson r of x and y (0 when either is constant). */
static double units_pearson(const double *x, const double *y)
{
	double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
	int i;

	for (i = 0; i < FP_UNITS_B; i++) {
		mx += x[i];
		my += y[i];
	}
	mx /= FP_UNITS_B;
	my /= FP_UNITS_B;
	for (i = 0; i < FP_UNITS_B; i++) {
		sxx += (x[i] - mx) * (x[i] - mx);
		syy += (y[i] - my) * (y[i] - my);
		sxy += (x[i] - mx) * (y[i] - my);
	}
	return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0;
}

/* The teacher block of entry e, read back from its file. */
static int teacher_block(const struct fp_units *u, const struct unit_entry *e, double *v,
			 nx_error *err)
{
	const struct unit_tensor *t = &u->t[e->tensor];
	unsigned char raw[FP_UNITS_B * 8];
	uint64_t at, stride;
	int i, rc;

	if (e->block < t->rowblocks) {
		uint64_t per = t->cols / FP_UNITS_B;

		at = e->block / per * t->cols + e->block % per * FP_UNITS_B;
		stride = 1;
	} else {
		uint64_t b = e->block - t->rowblocks, per = t->first / FP_UNITS_B;

		at = b % per * FP_UNITS_B * t->rest + b / per;
		stride = t->rest;
	}
	if (stride == 1)
		rc = units_read(u->fds[t->fdi], u->paths[t->fdi], raw, FP_UNITS_B * t->width,
				t->off + at * t->width, err);
	else
		for (i = 0, rc = 0; i < FP_UNITS_B && !rc; i++)
			rc = units_read(u->fds[t->fdi], u->paths[t->fdi], raw + i * t->width,
					t->width, t->off + (at + i * stride) * t->width, err);
	if (!rc)
		nx_fp__num_get_n(v, raw, FP_UNITS_B, t->width, t->dtype);
	return rc;
}

struct probe {
	struct nx_fp__units_run *run;
	double tol;    /* how far the student's rounding may move a |c| */
	const double *v;
	uint32_t *touched;   /* the teacher tensors this probe counted first */
	size_t ntouched, captouched;
};

/* Look the key of the block's elements sel up and verify each candidate. */
static int probe_key(struct probe *p, const struct nx_fp__units_block *b, const int *sel,
		     nx_error *err)
{
	struct nx_fp__units_run *run = p->run;
	const struct fp_units *u = run->u;
	uint32_t sketch, key = key_of(b, sel, &sketch), i, f = filter_of(key);
	double tv[FP_UNITS_B];
	int rc;

	if (!(u->filter[f / 64] >> (f % 64) & 1))
		return 0;
	/* two threads may probe at once (units_split): seen and count are
	 * changed atomically, and a block verified by both counts once */
	for (i = u->head[bucket_of(key)]; i; i = u->next[i - 1]) {
		const struct unit_entry *e = &u->e[i - 1];
		uint64_t *seen = &run->seen[(i - 1) / 64], bit = 1ull << ((i - 1) % 64);

		if (e->key != key || __atomic_load_n(seen, __ATOMIC_RELAXED) & bit ||
		    __builtin_popcount(e->sketch ^ sketch) > FP_UNITS_SKETCH_MAX ||
		    __atomic_load_n(&run->count[e->tensor], __ATOMIC_RELAXED) >= FP_UNITS_CONFIRM_MAX)
			continue;
		if ((rc = teacher_block(u, e, tv, err)) != 0)
			return rc;
		if (fabs(units_pearson(p->v, tv)) < FP_UNITS_R ||
		    __atomic_fetch_or(seen, bit, __ATOMIC_RELAXED) & bit)
			continue;
		if (!__atomic_fetch_add(&run->count[e->tensor], 1, __ATOMIC_RELAXED)) {
			if (NX_ARRAY_PUSH(p->touched, p->captouched, p->ntouched))
				return nx_error_oom(err, NULL);
			p->touched[p->ntouched++] = e->tensor;
		}
	}
	return 0;
}

static int probe_fn(void *ctx, const double *v, uint32_t id, nx_error *err)
{
	struct probe *p = ctx;
	struct nx_fp__units_block b;
	int sure[FP_UNITS_K], maybe[UNITS_TOP], sel[FP_UNITS_K];
	int nsure = 0, nmaybe = 0, need, i, nprobe = 0;
	uint32_t mask;
	double tol;

	(void)id;
	nx_fp__units_block(&b, v);
	if (!(b.var > 0) || !isfinite(b.var) || b.a[FP_UNITS_K] < 0)
		return 0;
	tol = p->tol < 0 ? -p->tol * b.a[0] : p->tol;
	/* sure: over every element outside the top K by more than the
	 * rounding; maybe: within it of the K-th */
	for (i = 0; i < UNITS_TOP; i++) {
		if (i < FP_UNITS_K && b.a[i] > b.a[FP_UNITS_K] + tol)
			sure[nsure++] = b.ord[i];
		else if (b.a[i] >= b.a[FP_UNITS_K - 1] - tol)
			maybe[nmaybe++] = b.ord[i];
	}
	need = FP_UNITS_K - nsure;
	p->v = v;
	/* every need-subset of maybe (FP_UNITS_PROBES at most) */
	for (mask = 0; mask < 1u << nmaybe; mask++) {
		int k = 0, rc;

		if (__builtin_popcount(mask) != need)
			continue;
		if (++nprobe > FP_UNITS_PROBES)
			return 0;
		memcpy(sel, sure, nsure * sizeof(int));
		for (i = 0; i < nmaybe; i++)
			if (mask >> i & 1)
				sel[nsure + k++] = maybe[i];
		if ((rc = probe_key(p, &b, sel, err)) != 0)
			return rc;
	}
	return 0;
}

/*
 * A student tensor's groups on two threads: each takes the next group
 * not taken (the machine's other work takes cores unevenly), with its own
 * buffer, probe and error; the first failure stops both.
 */
struct split {
	const struct walk *w;
	uint64_t next;   /* the next group to take */
	int stop;
};

struct half {
	struct split *sp;
	struct probe p;
	unsigned char *buf;
	nx_error *err;
	int rc;
};

static void *half_run(void *arg)
{
	struct half *h = arg;
	uint64_t k;

	while (!h->rc && !__atomic_load_n(&h->sp->stop, __ATOMIC_RELAXED) &&
	       (k = __atomic_fetch_add(&h->sp->next, 1, __ATOMIC_RELAXED)) < h->sp->w->groups)
		h->rc = walk_group(h->sp->w, k, h->buf, probe_fn, &h->p, h->err);
	if (h->rc)
		__atomic_store_n(&h->sp->stop, 1, __ATOMIC_RELAXED);
	return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Both halves' groups; the second on a thread when the tensor is large
 * and one can be made.  The teacher tensors touched end in run->touched,
 * sorted (the threads find them in any order). */
static int units_split(struct nx_fp__units_run *run, const struct walk *w, double tol,
		       nx_error *err)
{
	struct split sp = { w, 0, 0 };
	struct half h[2];
	nx_error err1;
	pthread_t tid;
	bool threaded = false;
	int rc, i;
	size_t j;

	memset(h, 0, sizeof(h));
	nx_error_clear(&err1);
	for (i = 0; i < 2; i++) {
		h[i].sp = &sp;
		h[i].p.run = run;
		h[i].p.tol = tol;
		h[i].err = i ? &err1 : err;
	}
	if (!(h[0].buf = malloc(UNITS_COLS_WINDOW)))
		return nx_error_oom(err, NULL);
	if (w->vw->n >= UNITS_SPLIT_MIN && (h[1].buf = malloc(UNITS_COLS_WINDOW)))
		threaded = pthread_create(&tid, NULL, half_run, &h[1]) == 0;
	half_run(&h[0]);
	if (threaded)
		pthread_join(tid, NULL);
	rc = h[0].rc;
	if (!rc && h[1].rc) {
		rc = h[1].rc;
		if (err)
			*err = err1;
	}
	rc = rc == UNITS_STOP ? 0 : rc;
	for (i = 0; i < 2; i++) {
		for (j = 0; j < h[i].p.ntouched; j++) {
			if (!rc && NX_ARRAY_PUSH(run->touched, run->captouched, run->ntouched))
				rc = nx_error_oom(err, NULL);
			if (!rc)
				run->touched[run->ntouched++] = h[i].p.touched[j];
			else   /* not reported: the next tensor counts from 0 */
				run->count[h[i].p.touched[j]] = 0;
		}
		free(h[i].p.touched);
		free(h[i].buf);
	}
	if (run->ntouched > 1)
		qsort(run->touched, run->ntouched, sizeof(*run->touched), cmp_u32);
	return rc;
}

int nx_fp__units_student(struct nx_fp__units_run *run, const char *name, int32_t dtype, int fd,
			 const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			 size_t ndims, nx_fp__units_fn fn, void *ctx, nx_error *err)
{
	unsigned width = nx_fp__num_width(dtype);
	struct walk w;
	struct view vw;
	double tol;
	size_t i;
	int rc;

	if (!run->u || !width || len % width || len / width < FP_UNITS_B)
		return 0;
	view_of(&vw, len / width, dims, ndims);
	if (!vw.rowblocks && !vw.colblocks)
		return 0;
	/* the rounding the student's type does: relative to the block's
	 * largest |c| (negative) for floats, one code for integers */
	tol = dtype == 10 ? -0x1p-9 : dtype == 16 ? -0x1p-6 : dtype == 17 || dtype == 18 ? -0x1p-3
	      : dtype == 19 || dtype == 20 || dtype == 24 ? -0x1p-2
	      : nx_fp__num_float(dtype) ? -0x1p-14 : 1.25;
	walk_init(&w, fd, path, off, dtype, &vw, vw.n > FP_UNITS_FULL ? name : NULL);
	rc = units_split(run, &w, tol, err);
	for (i = 0; i < run->ntouched; i++) {
		const struct unit_tensor *t = &run->u->t[run->touched[i]];
		uint32_t n = run->count[run->touched[i]];

		run->count[run->touched[i]] = 0;
		/* at float32 size, as the one sum's 16 KiB is (a 16-bit
		 * teacher's blocks counted half, a float64 one's double) */
		if (!rc)
			rc = fn(ctx, name, t->name, t->file, n,
				(uint64_t)n * FP_UNITS_B * sizeof(float), err);
	}
	run->ntouched = 0;
	return rc;
}
