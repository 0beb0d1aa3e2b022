/*
 * fingerprint_corr.c - approximate copies of teacher tensors: the
 * correlation of same-size tensors (docs/TRV.md "Approximate copies").
 *
 * The chunks and the value sample match exact bytes and exact mantissas, so
 * a teacher tensor kept approximately (rounded, noised, quantized to int8,
 * or any affine map a x + b of it) is a tensor of new bytes and new values.
 * What such a copy keeps is the relation of its elements to the teacher's,
 * element for element: the Pearson correlation of the two is near 1 (or
 * -1), where an independently trained tensor's is near 0 (its spread over
 * FP_CORR_K positions is about 1/sqrt(FP_CORR_K), 0.03).
 *
 * Teacher: each float tensor (float32, float16, bfloat16, float64) of at
 * least FP_CORR_MIN elements keeps its values at FP_CORR_K positions, a
 * function of its element count under this run's key (all of them when it
 * has fewer), as float; at most FP_CORR_TENSORS tensors are kept, the
 * largest (FP_CORR_K x 4 bytes each: 16 MiB in all).  A tensor whose
 * sample is constant, rises or falls with its index (a fill, a ramp), or
 * holds FP_CORR_LEVELS values or fewer (a mask, a one-hot) is not kept:
 * any model of the shape may hold one.
 *
 * Student: a tensor of any numeric type whose element count is a kept
 * teacher tensor's is read at the same positions in three orders - as is,
 * reversed, and (2-D [R, C]) as the transpose of a [C, R] teacher, what
 * torch.onnx.export writes for a Linear weight - with bounded preads of the
 * positions sorted (random reads of size-matched tensors only: the cost is
 * linear in the student, and a tensor of no kept size costs nothing).
 * |r| >= FP_CORR_R over FP_CORR_MIN usable positions (both finite) is a hit.
 */
#include "fingerprint_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/strset_int.h"

struct corr_tensor {
	uint64_t n;       /* elements */
	uint64_t bytes;
	float *v;         /* its values at corr_pos(n, ...) */
	uint16_t *rk;     /* their ranks (NULL when one is not finite) */
	uint32_t nv;
	char *name;
	size_t file;      /* index into the set's files */
	bool lattice;     /* every sampled value on the float16 lattice (a
			   * float16 or bfloat16 teacher): corr_same16 */
};

struct fp_corr {
	struct corr_tensor *t;
	size_t n, cap;
	bool sorted;      /* t sorted by n (lazily, before the student) */
};

#define CORR_WINDOW (64u << 10)   /* bytes one pread reads at most */
#define FP_CORR_LEVELS 16         /* a teacher sample of fewer values is not kept */

/* The positions sampled in a tensor of n elements (*np of them). */
static uint64_t *corr_positions(uint64_t n, uint32_t *np, nx_error *err)
{
	uint32_t i, k = n < FP_CORR_K ? (uint32_t)n : FP_CORR_K;
	uint64_t *pos = malloc((size_t)k * sizeof(*pos));
	uint64_t x = nx_keyhash("fp_corr", 7, &n, sizeof(n));

	if (!pos) {
		nx_error_oom(err, NULL);
		return NULL;
	}
	for (i = 0; i < k; i++) {
		uint64_t z;

		if (n <= FP_CORR_K) {
			pos[i] = i;
			continue;
		}
		/* splitmix64: the key makes the positions unpredictable */
		z = (x += 0x9e3779b97f4a7c15ull);
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		pos[i] = (z ^ (z >> 31)) % n;
	}
	*np = k;
	return pos;
}

struct corr_req {
	uint64_t pos;
	uint32_t slot;
};

static int cmp_req(const void *a, const void *b)
{
	const struct corr_req *x = a, *y = b;

	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* out[i] = element pos[i] of the n elements of type dtype at off of fd. */
static int corr_read(int fd, const char *path, uint64_t off, uint64_t n, int32_t dtype,
		     const uint64_t *pos, size_t npos, double *out, nx_error *err)
{
	unsigned width = nx_fp__num_width(dtype);
	struct corr_req *r = malloc(npos * sizeof(*r));
	unsigned char *buf = malloc(CORR_WINDOW);
	size_t i, j;
	int rc = 0;

	if (!r || !buf) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (i = 0; i < npos; i++) {
		r[i].pos = pos[i];
		r[i].slot = (uint32_t)i;
	}
	qsort(r, npos, sizeof(*r), cmp_req);
	for (i = 0; i < npos; i = j) {
		uint64_t start = r[i].pos * width, left = n * width - start;
		size_t want = left < CORR_WINDOW ? (size_t)left : CORR_WINDOW;
		ssize_t got = nx_pread_full(fd, buf, want, off + start);

		if (got < (ssize_t)width) {
			rc = nx_error_errno(err, NX_EIO, got < 0 ? errno : EIO, path,
					    "cannot read %s", path);
			goto out;
		}
		for (j = i; j < npos && (r[j].pos - r[i].pos + 1) * width <= (uint64_t)got; j++)
			out[r[j].slot] = nx_fp__num_get(buf + (r[j].pos - r[i].pos) * width, dtype);
	}
out:
	free(buf);
	free(r);
	return rc;
}

/* Pearson r of x and y over the positions where both are finite; *used
 * of them (r 0 when either is constant there). */
static double pearson(const double *x, const float *y, size_t n, uint32_t *used)
{
	double mx = 0, my = 0, sxx = 0, syy = 0, sxy = 0;
	size_t i, k = 0;

	for (i = 0; i < n; i++)
		if (isfinite(x[i]) && isfinite(y[i])) {
			mx += x[i];
			my += y[i];
			k++;
		}
	*used = (uint32_t)k;
	if (!k)
		return 0;
	mx /= (double)k;
	my /= (double)k;
	for (i = 0; i < n; i++)
		if (isfinite(x[i]) && isfinite(y[i])) {
			double dx = x[i] - mx, dy = y[i] - my;

			sxx += dx * dx;
			syy += dy * dy;
			sxy += dx * dy;
		}
	if (sxx <= 0 || syy <= 0)
		return 0;
	return sxy / sqrt(sxx * syy);
}

struct ranked {
	double v;
	uint32_t i;
};

static int cmp_ranked(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	if (x->v != y->v)
		return x->v < y->v ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* out[i] = the rank of v[i] among v[0 .. n) (n <= FP_CORR_K); false when
 * one is not finite or over n / 8 are ties (a few levels, a fill: ranks
 * in index order would be a ramp; Pearson's r judges those), or ENOMEM. */
static bool corr_ranks(const double *v, uint32_t n, uint16_t *out, uint32_t *distinct)
{
	struct ranked *r = malloc(n * sizeof(*r));
	uint32_t i, ties = 0;

	if (!r)
		return false;
	for (i = 0; i < n; i++) {
		if (!isfinite(v[i])) {
			free(r);
			return false;
		}
		r[i].v = v[i];
		r[i].i = i;
	}
	qsort(r, n, sizeof(*r), cmp_ranked);
	for (i = 0; i < n; i++) {
		out[r[i].i] = (uint16_t)i;
		ties += i && r[i].v == r[i - 1].v;
	}
	free(r);
	if (distinct)
		*distinct = n - ties;
	return ties <= n / 8;
}

/* Spearman's rho: Pearson's r of the ranks (no value is left out). */
static double spearman(const uint16_t *x, const uint16_t *y, uint32_t n)
{
	double m = (n - 1) / 2.0, sxx = 0, syy = 0, sxy = 0;
	uint32_t i;

	for (i = 0; i < n; i++) {
		double dx = x[i] - m, dy = y[i] - m;

		sxx += dx * dx;
		syy += dy * dy;
		sxy += dx * dy;
	}
	return sxx > 0 && syy > 0 ? sxy / sqrt(sxx * syy) : 0;
}

static int cmp_size_desc(const void *a, const void *b)
{
	const struct corr_tensor *x = a, *y = b;

	return x->n > y->n ? -1 : x->n < y->n;
}

/* Keep the FP_CORR_TENSORS largest (called when the set grows past it). */
static void corr_trim(struct fp_corr *c)
{
	size_t i;

	qsort(c->t, c->n, sizeof(*c->t), cmp_size_desc);
	for (i = FP_CORR_TENSORS; i < c->n; i++) {
		free(c->t[i].rk);
		free(c->t[i].v);
		free(c->t[i].name);
	}
	c->n = FP_CORR_TENSORS;
}

int nx_fp__corr_teacher(nx_fp_set *set, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, nx_error *err)
{
	unsigned width = nx_fp__num_width(dtype);
	uint64_t n = width ? len / width : 0, *pos = NULL;
	struct fp_corr *c = set->corr;
	struct corr_tensor *t;
	double *val = NULL, *idx = NULL;
	uint32_t np = 0, used, i;
	uint16_t *rk = NULL, *rki = NULL;
	uint32_t distinct = UINT32_MAX;
	float *v = NULL;
	int rc = 0;

	if (!nx_fp__num_float(dtype) || n < FP_CORR_MIN || len % width)
		return 0;
	if (!c && !(c = set->corr = calloc(1, sizeof(*c))))
		return nx_error_oom(err, NULL);
	if (!(pos = corr_positions(n, &np, err)))
		return NX_ENOMEM;
	val = malloc(np * sizeof(*val));
	idx = calloc(np, sizeof(*idx));
	v = malloc(np * sizeof(*v));
	rk = malloc(np * sizeof(*rk));
	rki = malloc(np * sizeof(*rki));
	if (!val || !idx || !v || !rk || !rki) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	if ((rc = corr_read(fd, path, off, n, dtype, pos, np, val, err)) != 0)
		goto out;
	for (i = 0; i < np; i++) {
		v[i] = (float)val[i];
		idx[i] = (double)pos[i];
	}
	/* a fill or a ramp, or any sequence that rises or falls with the
	 * index: any model may hold one (a constant sample's r is 0 too:
	 * tested apart) */
	/* a mask, a one-hot or a table of a few levels (FP_CORR_LEVELS
	 * values at most): what a model's structure writes, not its training */
	if (!corr_ranks(val, np, rk, &distinct)) {
		free(rk);
		rk = NULL;
		if (distinct <= FP_CORR_LEVELS)
			goto out;
	} else if (corr_ranks(idx, np, rki, NULL) && fabs(spearman(rk, rki, np)) >= FP_CORR_R) {
		goto out;
	}
	{
		double r = pearson(idx, v, np, &used);
		float lo = INFINITY, hi = -INFINITY;

		for (i = 0; i < np; i++)
			if (isfinite(v[i])) {
				lo = v[i] < lo ? v[i] : lo;
				hi = v[i] > hi ? v[i] : hi;
			}
		if (used < FP_CORR_MIN || fabs(r) >= FP_CORR_R || !(lo < hi))
			goto out;
	}
	if (c->n >= FP_CORR_TENSORS + FP_CORR_TENSORS / 4)
		corr_trim(c);
	if (NX_ARRAY_PUSH(c->t, c->cap, c->n)) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	t = &c->t[c->n];
	if (!(t->name = strdup(name))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	t->n = n;
	t->bytes = len;
	t->lattice = true;
	for (i = 0; i < np; i++) {
		uint32_t b;

		memcpy(&b, &v[i], 4);
		if (isfinite(v[i]) && v[i] != 0 && (b & 0x1fffu))
			t->lattice = false;
	}
	t->v = v;
	t->rk = rk;
	t->nv = np;
	rk = NULL;
	t->file = set->nfiles - 1;
	v = NULL;
	c->n++;
	c->sorted = false;
out:
	free(rki);
	free(rk);
	free(v);
	free(idx);
	free(val);
	free(pos);
	return rc;
}

void nx_fp__corr_free(struct fp_corr *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < c->n; i++) {
		free(c->t[i].rk);
		free(c->t[i].v);
		free(c->t[i].name);
	}
	free(c->t);
	free(c);
}

/* A float's mantissa bits 22..1, or 0 for one that is not a normal float
 * with some of its 13 low bits set (zero, subnormal, infinite, NaN, or on
 * the float16 lattice, where a power of two and every 16-bit value is). */
static uint32_t corr_key(float f)
{
	uint32_t b, e;

	memcpy(&b, &f, 4);
	e = b >> 23 & 0xff;
	return e == 0 || e == 0xff || !(b & 0x1fffu) ? 0 : (b >> 1 & 0x3fffffu) + 1;
}

/*
 * Positions where the student holds the teacher's value (its mantissa,
 * but for the lowest bit: any sign, any power of two, as the value sample
 * reads it): a part of the tensor kept in place, the rest replaced, which
 * no correlation shows under half.  Two independent tensors share a
 * 22-bit mantissa at one position by chance about once in 2^20 (two
 * untrained torch tensors from the same generator too), so
 * FP_CORR_SAME_MIN of FP_CORR_K is no accident.  A mantissa the teacher's
 * sample repeats (a fill, a level) is not counted.
 */
/*
 * The signs' agreement, as a correlation in -1..1, over the positions
 * where both are finite and nonzero (FP_CORR_MIN at least; 0 otherwise):
 * what a copy scaled by a positive factor per row, column or element keeps
 * - int8 with a scale per row that varies a lot, where Pearson's r over the
 * whole tensor drops and the ranks' with it.  Both samples must hold each
 * sign at a fifth of those positions at least: an all-positive tensor (a
 * LayerNorm gain, a variance) agrees with every other one.
 */
static double sign_corr(const double *x, const float *y, uint32_t n)
{
	uint32_t i, m = 0, agree = 0, xpos = 0, ypos = 0;

	for (i = 0; i < n; i++) {
		if (!isfinite(x[i]) || !isfinite(y[i]) || x[i] == 0 || y[i] == 0)
			continue;
		m++;
		xpos += x[i] > 0;
		ypos += y[i] > 0;
		agree += (x[i] > 0) == (y[i] > 0);
	}
	if (m < FP_CORR_MIN || 5 * xpos < m || 5 * (m - xpos) < m || 5 * ypos < m ||
	    5 * (m - ypos) < m)
		return 0;
	return (2.0 * agree - m) / m;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* keys: scratch of n; the candidates' repeats found by sorting the
 * teacher's keys, so a tensor equal everywhere costs n log n, not n^2 */
static uint32_t corr_same(const double *x, const float *y, uint32_t n, uint32_t *keys)
{
	uint32_t i, m = 0, same = 0;

	for (i = 0; i < n; i++) {
		uint32_t k = corr_key(y[i]);

		if (k && isfinite(x[i]) && corr_key((float)x[i]) == k)
			m++;
	}
	if (!m)
		return 0;
	for (i = 0; i < n; i++)
		keys[i] = corr_key(y[i]);
	qsort(keys, n, sizeof(*keys), cmp_u32);
	for (i = 0; i < n; i++) {
		uint32_t k = corr_key(y[i]);
		const uint32_t *at;

		if (!k || !isfinite(x[i]) || corr_key((float)x[i]) != k)
			continue;
		at = bsearch(&k, keys, n, sizeof(*keys), cmp_u32);
		same += !((at > keys && at[-1] == k) || (at + 1 < keys + n && at[1] == k));
	}
	return same;
}

/*
 * corr_same for a teacher whose values all sit on the float16 lattice (a
 * float16 or bfloat16 checkpoint, or one widened): corr_key leaves them
 * out, and 40% of such a teacher's layers kept in place passed.  Its
 * values are 16-bit ones, which an independent tensor - a float16 one
 * above all - holds at a position by chance far more often than a 22-bit
 * mantissa (a bfloat16 value has 7 bits), and a 16-bit teacher repeats
 * its values in its own sample.  So the student's value counts when its
 * mantissa equals the teacher's (the sign aside), per exponent
 * difference, and chance is measured, not assumed: the same count, at
 * the same difference, against the teacher's sample shifted by half
 * (decoy positions, as independent of the student as an unrelated
 * tensor is) must be beaten by 5 standard deviations of the difference
 * (an honest bfloat16 student against a bfloat16 teacher: 2 of 1024 by
 * chance, up to 9 against a decoy count of 1 measured); what is over it,
 * at the best difference, is the part kept.
 */
static uint32_t corr_same16(const double *x, const float *y, uint32_t n)
{
	/* per exponent difference (student's minus teacher's), biased: a part
	 * kept and then scaled by a power of two (x2, x0.5, x-4: lossless)
	 * holds the teacher's mantissas at one shift (review of stop 21: 40%
	 * of three layers, scaled by 2, passed) */
	uint32_t same[512] = { 0 }, decoy[512] = { 0 }, i, s, best = 0;

	for (i = 0; i < n; i++) {
		float f = (float)x[i], a = y[i], b = y[(i + n / 2) % n];
		uint32_t fb, ab, bb, fe;

		if (!isfinite(x[i]) || (double)f != x[i] || f == 0)
			continue;
		memcpy(&fb, &f, 4);
		memcpy(&ab, &a, 4);
		memcpy(&bb, &b, 4);
		fe = fb >> 23 & 0xff;
		/* the sign aside; only normal floats (a float16 subnormal is a
		 * normal float32), whose mantissas alone are compared */
		if (fe == 0 || fe == 0xff)
			continue;
		if ((ab >> 23 & 0xff) != 0 && (ab >> 23 & 0xff) != 0xff &&
		    (ab & 0x7fffffu) == (fb & 0x7fffffu))
			same[(fe - (ab >> 23 & 0xff) + 256) & 511]++;
		if ((bb >> 23 & 0xff) != 0 && (bb >> 23 & 0xff) != 0xff &&
		    (bb & 0x7fffffu) == (fb & 0x7fffffu))
			decoy[(fe - (bb >> 23 & 0xff) + 256) & 511]++;
	}
	/* the decoys at the same shift: chance at each shift is measured
	 * apart (a bfloat16 mantissa has 7 bits: 1 position in 128 matches
	 * one at some shift by chance) */
	for (s = 0; s < 512; s++) {
		if (same[s] < FP_CORR_SAME_MIN || same[s] <= decoy[s] ||
		    same[s] - decoy[s] < 5 * sqrt((double)same[s] + decoy[s] + 1))
			continue;
		if (same[s] - decoy[s] > best)
			best = same[s] - decoy[s];
	}
	return best;
}

static int cmp_size(const void *a, const void *b)
{
	const struct corr_tensor *x = a, *y = b;

	return x->n < y->n ? -1 : x->n > y->n;
}

static int corr_student(const nx_fp_set *set, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			size_t ndims, nx_fp__corr_fn fn, void *ctx, nx_error *err);

/*
 * An integer tensor is read as the codes it is, and as the float bits it
 * may hold: a graph decodes a float32's bits from an int32 with a few
 * integer ops, so three layers 45% kept in place and stored as int32 (or
 * pairs of them as int64) passed, the exact values counted on the
 * integers (review B of stop 22).  16-bit integers are read as float16
 * and bfloat16 bits.  Each view is another read of the sampled positions
 * only, and only for a tensor whose element count a teacher's has.
 */
int nx_fp__corr_student(const nx_fp_set *set, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			size_t ndims, nx_fp__corr_fn fn, void *ctx, nx_error *err)
{
	int64_t d[8];
	size_t k = ndims <= 8 ? ndims : 0;
	int rc;

	if ((rc = corr_student(set, name, dtype, fd, path, off, len, dims, ndims, fn, ctx, err)))
		return rc;
	memcpy(d, dims, k * sizeof(*d));
	switch (dtype) {
	case 6: case 12:   /* int32, uint32: float32 bits */
		return corr_student(set, name, 1, fd, path, off, len, d, k, fn, ctx, err);
	case 7: case 13:   /* int64, uint64: pairs of float32 bits */
		if (k && d[k - 1] <= INT64_MAX / 2)
			d[k - 1] *= 2;
		else
			k = 0;
		return corr_student(set, name, 1, fd, path, off, len, d, k, fn, ctx, err);
	case 4: case 5:    /* uint16, int16: float16 or bfloat16 bits */
		return corr_student(set, name, 10, fd, path, off, len, d, k, fn, ctx, err) ?:
		       corr_student(set, name, 16, fd, path, off, len, d, k, fn, ctx, err);
	default:
		return 0;
	}
}

static int corr_student(const nx_fp_set *set, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			size_t ndims, nx_fp__corr_fn fn, void *ctx, nx_error *err)
{
	struct fp_corr *c = set->corr;
	unsigned width = nx_fp__num_width(dtype);
	uint64_t n = width ? len / width : 0, *pos = NULL, *at = NULL;
	uint64_t rows = 0, cols = 0;
	struct corr_tensor key, *lo;
	struct nx_fp__corr_hit best = { 0 };
	double *val = NULL;
	uint16_t *rk = NULL;
	uint32_t *keys = NULL;
	bool ranked[3] = { false, false, false };
	uint32_t np = 0, used, i, order, norders = 2;
	int rc = 0;

	if (!c || !c->n || !width || n < FP_CORR_MIN || len % width || !fn)
		return 0;
	if (!c->sorted) {
		qsort(c->t, c->n, sizeof(*c->t), cmp_size);
		c->sorted = true;
	}
	key.n = n;
	if (!(lo = bsearch(&key, c->t, c->n, sizeof(*c->t), cmp_size)))
		return 0;
	while (lo > c->t && lo[-1].n == n)
		lo--;
	if (ndims == 2 && dims[0] >= 2 && dims[1] >= 2 &&
	    (uint64_t)dims[0] * (uint64_t)dims[1] == n) {
		rows = (uint64_t)dims[0];
		cols = (uint64_t)dims[1];
		norders = 3;
	}
	if (!(pos = corr_positions(n, &np, err)))
		return NX_ENOMEM;
	if (!(at = malloc((size_t)np * norders * sizeof(*at))) ||
	    !(val = malloc((size_t)np * norders * sizeof(*val)))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (i = 0; i < np; i++) {
		at[i] = pos[i];
		at[np + i] = n - 1 - pos[i];
		/* teacher [cols, rows] element (p / rows, p % rows) */
		if (norders == 3)
			at[2 * np + i] = pos[i] % rows * cols + pos[i] / rows;
	}
	if ((rc = corr_read(fd, path, off, n, dtype, at, (size_t)np * norders, val, err)) != 0)
		goto out;
	if (!(rk = malloc((size_t)np * norders * sizeof(*rk))) ||
	    !(keys = malloc((size_t)np * sizeof(*keys)))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (order = 0; order < norders; order++)
		ranked[order] = corr_ranks(val + (size_t)order * np, np, rk + (size_t)order * np,
					   NULL);
	for (; lo < c->t + c->n && lo->n == n; lo++)
		for (order = 0; order < norders; order++) {
			double r = pearson(val + (size_t)order * np, lo->v, np, &used);
			bool hit;

			/* the ranks' r: a few elements changed, or a monotone map */
			if (lo->rk && ranked[order]) {
				double rho = spearman(rk + (size_t)order * np, lo->rk, np);

				if (fabs(rho) > fabs(r)) {
					r = rho;
					used = np;
				}
			}

			hit = used >= FP_CORR_MIN && fabs(r) >= FP_CORR_R;

			/* the signs': a copy scaled per row, column or element */
			if (!hit) {
				double sr = sign_corr(val + (size_t)order * np, lo->v, np);

				if ((hit = fabs(sr) >= FP_CORR_SIGN)) {
					r = sr;
					used = np;
				}
			}
			/* an approximate copy before a part kept in place */
			if (hit && (best.same || fabs(r) > fabs(best.r))) {
				best.r = r;
				best.used = used;
				best.same = 0;
				best.teacher = lo->name;
				best.file = lo->file;
				best.bytes = lo->bytes;
				best.reversed = order == 1;
				best.transposed = order == 2;
			} else if (!hit && (!best.teacher || best.same)) {
				uint32_t same = lo->lattice
							? corr_same16(val + (size_t)order * np,
								      lo->v, np)
							: corr_same(val + (size_t)order * np, lo->v,
								    np, keys);

				if (same >= FP_CORR_SAME_MIN && same > best.same) {
					best = (struct nx_fp__corr_hit){ lo->name, lo->file, lo->bytes,
									 r, np, same, order == 1,
									 order == 2, lo->n * 4 };
				}
			}
		}
	if (best.teacher)
		rc = fn(ctx, name, &best, err);
out:
	free(keys);
	free(rk);
	free(val);
	free(at);
	free(pos);
	return rc;
}
