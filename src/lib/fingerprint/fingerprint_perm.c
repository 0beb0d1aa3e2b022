/*
 * fingerprint_perm.c - order-invariant per-vector fingerprints: teacher
 * vectors moved within themselves (docs/TRV.md "Re-encoded vectors").
 *
 * A network keeps its function when every axis of a layer is permuted
 * (input features with the embedding, hidden units, output features undone
 * by a Gather): each element then moves within its row and its column, so
 * no block of a teacher vector keeps its order (fingerprint_units.c keys a
 * block on the positions of its largest elements).  What a permutation
 * leaves alone is the multiset of a vector's values; a v + b (a of any
 * sign) and rounding leave its standardised sorted profile nearly alone.
 *
 * A vector of L elements (FP_PERM_MINLEN .. FP_PERM_MAXLEN) along any axis
 * of a tensor is read whole, standardised (z = (v - mean) / std), sorted,
 * and averaged into FP_PERM_Q rank bins.  The sorted profiles of random
 * rows are all alike (Gaussian order statistics, strongly correlated
 * neighbour to neighbour), so what keys it is how its spacings (bin q + 1
 * minus bin q: nearly independent) differ from the mean spacings of the
 * vectors read along the same axis of the same tensor, each bin divided by
 * their spread there (both made symmetric, so that -v, whose spacings are
 * v's reversed, has its features reversed).  A permuted copy holds the same
 * vectors, hence the same means.  The FP_PERM_F features, centred and of
 * unit norm, are hashed by FP_PERM_BITS random hyperplanes (sign bits); a
 * student vector looks up its key and the keys with any of its
 * FP_PERM_FLIP least sure bits flipped, for itself and reversed, and a
 * candidate of the same length is a hit when the features' cosine is at
 * least FP_PERM_R (measured: docs/TRV.md).  Each vector is also kept and
 * looked up in a scale-free form (perm_scales: a copy scaled per element
 * of both axes), and a student vector up to FP_PERM_PAD elements longer
 * than a teacher's is looked up at the teacher's length (padded).  Each
 * of the two forms is also kept as the profile of |v| (PERM_ABS: signs
 * flipped per row and column, diag(+-1) W diag(+-1), change v's profile,
 * not |v|'s).  A student axis of fewer than FP_PERM_MINVEC vectors has
 * no means of its own: it is measured against each teacher axis's
 * (struct perm_stat), in that tensor only.
 *
 * Teacher: the vectors along the last and the first axis of each float
 * tensor (nx_fp__num_float: float8 to float64), without those any model
 * may hold (fewer than FP_PERM_LEVELS values; or predicted by an order-2
 * linear recurrence in their own order: ramps, sinusoids), an axis half of
 * whose vectors are predicted not at all (a formula's table); at most
 * FP_PERM_MAX vectors in all (the first tensors').  Student: every tensor
 * of a float or integer type, along every axis whose length a teacher
 * vector has.  Over FP_PERM_VMAX vectors along an axis, groups of them are
 * picked under a per-run key (nx_keyhash), about FP_PERM_VMAX in all, on
 * both sides: the cost is one sort per vector read.
 */
#include "fingerprint_int.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/strset_int.h"

#define FP_PERM_Q 32                /* rank bins of a sorted profile */
#define FP_PERM_F (FP_PERM_Q - 1)   /* features: the bins' spacings */
#define FP_PERM_MINLEN 64           /* elements a vector needs */
#define FP_PERM_MAXLEN 65536        /* elements a vector may have */
#define FP_PERM_MINVEC 16           /* vectors an axis needs (its means) */
#define FP_PERM_VMAX (1u << 14)     /* vectors read along one axis (more: sampled) */
#define FP_PERM_MAX (1u << 20)      /* teacher entries kept (a vector has four forms) */
#define FP_PERM_LEVELS 16           /* a vector of fewer values is not kept */
#define FP_PERM_PREDICTED 1e-2      /* residual / variance of a predicted vector */
#define FP_PERM_BITS 16             /* key bits (hyperplanes) */
#define FP_PERM_FLIP 3              /* least sure bits tried flipped */
#define FP_PERM_R 0.93              /* the cosine a hit has */
#define FP_PERM_RN 0.97             /* ... in the scale-free form (see perm_scales) */
#define FP_PERM_RA 0.985            /* ... of |v| as stored (see perm_vector) */
#define FP_PERM_RAN 0.985           /* ... of |v| in the scale-free form */
#define FP_PERM_PAD 4               /* elements a student vector may have over a teacher's */
#define FP_PERM_AXES 8              /* axes of a student tensor read */
#define PERM_WINDOW (4u << 20)      /* bytes one read takes */
#define PERM_GROUP 64               /* vectors in a sampled group */
#define PERM_P (2 * FP_PERM_Q)      /* a vector's profiles: v's, then |v|'s */

/* The forms a vector is kept and looked up in (a key's bits 29 - 30). */
enum { PERM_FREE = 1,   /* scale-free (perm_scales) */
       PERM_ABS = 2 };  /* the profile of |v| (diag(+-1) on either side) */

struct perm_entry {
	uint64_t key;        /* L << 32 | form << 29 | sign bits */
	uint32_t tensor;
	uint32_t vid;        /* the teacher vector (both forms of it share it) */
	int8_t f[FP_PERM_F + 1];   /* features x 127 / max |f| */
};

struct perm_tensor {
	char *name;
	size_t file;
};

/* The means and spreads of the spacings along one axis of a teacher
 * tensor, in a form as stored (PERM_ABS or not): a student axis of fewer
 * than FP_PERM_MINVEC vectors has too few for its own, and is measured
 * against these, a teacher tensor at a time. */
struct perm_stat {
	uint32_t tensor, len;
	unsigned form;
	double ms[FP_PERM_F], ss[FP_PERM_F];
};

struct fp_perm {
	struct perm_tensor *t;
	struct perm_stat *st;
	size_t nst, capst;
	size_t nt, capt;
	struct perm_entry *e;
	size_t n, cap;
	uint64_t nvid;       /* vector ids given out */
	bool sorted;
	uint32_t *lens;      /* the vector lengths kept, sorted, each once */
	size_t nlens, caplens;
};

/* One axis of a tensor, read vector by vector. */
struct perm_axis {
	int fd;
	const char *path;
	uint64_t off;
	int32_t dtype;
	unsigned width;
	uint64_t outer, len, inner;
	const char *sample;   /* the tensor's name: the key groups are picked under */
	unsigned axis;
	bool teacher;
	const double *scale;  /* each position's scale: the scale-free form (or NULL) */
	double *lsum;         /* non-NULL: sum log |x| per position into it */
	uint64_t *lcnt;       /* ... and count the non-zero ones */
};

/* The binned profiles read along an axis. */
struct perm_profiles {
	float *p;            /* n x PERM_P: the profile of v, then of |v| */
	uint32_t *ord;       /* each profile's vector: its order of reading */
	size_t n, cap, capord;
	uint64_t seen, predicted, nread;
};

/* Every comparison the sort makes, so that a unit test can count them
 * (tests/unit/test_fingerprint_perm.c runs McIlroy's adversary through it). */
#ifndef PERM_LT
#define PERM_LT(a, b) ((a) < (b))
#endif

/* x[0 .. n) made a max-heap from x[i] down (sift-down). */
static void perm_sift(double *x, size_t i, size_t n)
{
	double v = x[i];

	for (size_t c; (c = 2 * i + 1) < n; i = c) {
		if (c + 1 < n && PERM_LT(x[c], x[c + 1]))
			c++;
		if (!PERM_LT(v, x[c]))
			break;
		x[i] = x[c];
	}
	x[i] = v;
}

/* Sort x[0 .. n) ascending (no NaN): introsort - median-of-3 quicksort,
 * heapsort once the partitions have gone 2 log2 n deep (an adversarial
 * row, McIlroy's, took 1.07e9 comparisons at n = 65536 with quicksort
 * alone), insertion below 16. */
static void perm_sort_depth(double *x, size_t n, unsigned depth)
{
	while (n > 16) {
		double a = x[0], b = x[n / 2], c = x[n - 1], piv, t;
		size_t i = 0, j = n - 1;

		if (!depth--) {
			for (i = n / 2; i-- > 0;)
				perm_sift(x, i, n);
			for (i = n - 1; i > 0; i--) {
				t = x[0];
				x[0] = x[i];
				x[i] = t;
				perm_sift(x, 0, i);
			}
			return;
		}
		piv = PERM_LT(a, b) ? (PERM_LT(b, c) ? b : PERM_LT(a, c) ? c : a)
				     : (PERM_LT(a, c) ? a : PERM_LT(b, c) ? c : b);
		for (;;) {
			while (PERM_LT(x[i], piv))
				i++;
			while (PERM_LT(piv, x[j]))
				j--;
			if (i >= j)
				break;
			t = x[i];
			x[i++] = x[j];
			x[j--] = t;
		}
		/* recurse into the smaller side, loop on the larger */
		if (j + 1 < n - j - 1) {
			perm_sort_depth(x, j + 1, depth);
			x += j + 1;
			n -= j + 1;
		} else {
			perm_sort_depth(x + j + 1, n - j - 1, depth);
			n = j + 1;
		}
	}
	for (size_t i = 1; i < n; i++) {
		double v = x[i];
		size_t j = i;

		for (; j > 0 && PERM_LT(v, x[j - 1]); j--)
			x[j] = x[j - 1];
		x[j] = v;
	}
}

static void perm_sort(double *x, size_t n)
{
	unsigned depth = 0;

	for (size_t m = n; m > 1; m >>= 1)
		depth += 2;
	perm_sort_depth(x, n, depth);
}

/* Predicted by x[i+1] = p x[i] + q x[i-1] + r to within FP_PERM_PREDICTED
 * of its variance (a ramp, a geometric run, a sinusoid). */
static bool perm_predicted(const double *c, size_t n)
{
	double m[3][4] = { { 0 } }, coef[3], res = 0, tot = 0, my = 0;
	size_t i;
	int j, k;

	for (i = 1; i + 1 < n; i++) {
		double x[3] = { c[i], c[i - 1], 1 }, y = c[i + 1];

		for (j = 0; j < 3; j++) {
			for (k = 0; k < 3; k++)
				m[j][k] += x[j] * x[k];
			m[j][3] += x[j] * y;
		}
		my += y;
	}
	my /= (double)(n - 2);
	if (!nx_fp__solve3((const double (*)[4])m, coef))
		return true;
	for (i = 1; i + 1 < n; i++) {
		double e = c[i + 1] - coef[0] * c[i] - coef[1] * c[i - 1] - coef[2];

		res += e * e;
		tot += (c[i + 1] - my) * (c[i + 1] - my);
	}
	return res <= FP_PERM_PREDICTED * tot;
}

static double perm_var(const double *v, size_t n, double *mean)
{
	double m = 0, var = 0;

	for (size_t i = 0; i < n; i++)
		m += v[i];
	m /= (double)n;
	for (size_t i = 0; i < n; i++)
		var += (v[i] - m) * (v[i] - m);
	*mean = m;
	return var;
}

/* One vector's binned standardised sorted profile into ps (nothing for a
 * vector of too few values; a teacher's predicted one is counted), each
 * element divided by its position's scale first when there is one.  The
 * tests below look at the values as stored, so that both forms of a
 * teacher vector are kept or left out together. */
static int perm_vector(struct perm_profiles *ps, double *v, double *w, size_t n, bool teacher,
		       const double *scale, nx_error *err)
{
	double mean, var, sd, am = 0, av = 0;
	size_t i, distinct = 1;
	uint32_t ord = (uint32_t)ps->nread++;
	float *p;

	var = perm_var(v, n, &mean);
	if (!(var > 0) || !isfinite(var))
		return 0;
	if (teacher) {
		ps->seen++;
		if (perm_predicted(v, n)) {
			ps->predicted++;
			return 0;
		}
	}
	if (scale) {
		/* few levels: counted on the stored values, before the scales
		 * make every element distinct (no sort: a random vector has
		 * its FP_PERM_LEVELS values within its first elements) */
		double lv[FP_PERM_LEVELS];
		size_t k;

		lv[0] = v[0];
		for (i = 1; i < n && distinct < FP_PERM_LEVELS; i++) {
			for (k = 0; k < distinct && lv[k] != v[i]; k++)
				;
			if (k == distinct)
				lv[distinct++] = v[i];
		}
		if (distinct < FP_PERM_LEVELS)
			return 0;
		for (i = 0; i < n; i++)
			v[i] /= scale[i];
		var = perm_var(v, n, &mean);
		if (!(var > 0) || !isfinite(var))
			return 0;
		perm_sort(v, n);
	} else {
		perm_sort(v, n);
		for (i = 1; i < n && distinct < FP_PERM_LEVELS; i++)
			distinct += v[i] != v[i - 1];
		if (distinct < FP_PERM_LEVELS)
			return 0;
	}
	/* |v| sorted: the negatives reversed merged with the rest, O(n) */
	{
		size_t neg = 0, a, b, k = 0;

		while (neg < n && v[neg] < 0)
			neg++;
		a = neg;   /* next negative, counted down (a - 1) */
		b = neg;   /* next non-negative */
		while (a > 0 || b < n)
			w[k++] = b == n || (a > 0 && -v[a - 1] <= v[b]) ? -v[--a] : v[b++];
		for (k = 0; k < n; k++)
			am += w[k];
		am /= (double)n;
		for (k = 0; k < n; k++)
			av += (w[k] - am) * (w[k] - am);
	}
	if (!(av > 0))
		return 0;
	sd = sqrt(var / (double)n);
	if (NX_ARRAY_PUSH(ps->p, ps->cap, ps->n * PERM_P + PERM_P - 1) ||
	    NX_ARRAY_PUSH(ps->ord, ps->capord, ps->n))
		return nx_error_oom(err, NULL);
	ps->ord[ps->n] = ord;
	p = ps->p + ps->n * PERM_P;
	av = sqrt(av / (double)n);
	for (int q = 0; q < FP_PERM_Q; q++) {
		size_t a = (size_t)q * n / FP_PERM_Q, b = (size_t)(q + 1) * n / FP_PERM_Q;
		double s = 0, t = 0;

		for (i = a; i < b; i++) {
			s += v[i];
			t += w[i];
		}
		p[q] = (float)((s / (double)(b - a) - mean) / sd);
		p[FP_PERM_Q + q] = (float)((t / (double)(b - a) - am) / av);
	}
	ps->n++;
	return 0;
}

/* One vector read (v: 2 x len, the second half scratch for |v|): its log
 * magnitudes summed per position (for perm_scales: in the same read as
 * the profiles as stored, before the sort moves them), its profiles into
 * ps. */
static int perm_take(const struct perm_axis *ax, struct perm_profiles *ps, double *v,
		     nx_error *err)
{
	if (ax->lsum)
		for (uint64_t j = 0; j < ax->len; j++)
			if (v[j] != 0 && isfinite(v[j])) {
				ax->lsum[j] += log(fabs(v[j]));
				ax->lcnt[j]++;
			}
	return perm_vector(ps, v, v + ax->len, ax->len, ax->teacher, ax->scale, err);
}

/* Every vector along the axis (a picked share of groups when there are
 * over FP_PERM_VMAX), its profile into ps. */
static int perm_read_axis(const struct perm_axis *ax, struct perm_profiles *ps, nx_error *err)
{
	uint64_t nv = ax->outer * ax->inner, slice = ax->len * ax->inner * ax->width;
	uint64_t thr = nv > FP_PERM_VMAX ? (uint64_t)FP_PERM_VMAX * 65536 / nv : 65536;
	unsigned char *buf = NULL;
	double *v = NULL;
	uint64_t o, i0, group = 0;
	int rc = 0;

	if (!(buf = malloc(PERM_WINDOW)) || !(v = malloc(2 * ax->len * sizeof(*v)))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	if (slice <= PERM_WINDOW) {
		/* whole slices of the outer axes: R of them a read */
		uint64_t r = PERM_WINDOW / slice;

		if (thr < 65536 && r * ax->inner > PERM_GROUP)
			r = ax->inner >= PERM_GROUP ? 1 : PERM_GROUP / ax->inner;
		for (o = 0; o < ax->outer && !rc; o += r, group++) {
			uint64_t m = ax->outer - o < r ? ax->outer - o : r, a[3] = { ax->axis, group, 0 };
			ssize_t got;

			if (thr < 65536 &&
			    (nx_keyhash(ax->sample, strlen(ax->sample), a, sizeof(a)) & 65535) >= thr)
				continue;
			got = nx_pread_full(ax->fd, buf, m * slice, ax->off + o * slice);
			if (got != (ssize_t)(m * slice)) {
				rc = nx_error_errno(err, NX_EIO, got < 0 ? errno : EIO, ax->path,
						    "cannot read %s", ax->path);
				break;
			}
			for (uint64_t k = 0; k < m * ax->inner && !rc; k++) {
				const unsigned char *base = buf + (k / ax->inner * ax->len * ax->inner +
								   k % ax->inner) * ax->width;

				nx_fp__num_get_n(v, base, ax->len, ax->inner * ax->width, ax->dtype);
				rc = perm_take(ax, ps, v, err);
			}
		}
		goto out;
	}
	/* a slice over the window: columns of it, s at a time, a read per element */
	for (o = 0; o < ax->outer && !rc; o++) {
		uint64_t s = PERM_WINDOW / (ax->len * ax->width);

		if (thr < 65536 && s > PERM_GROUP)
			s = PERM_GROUP;
		for (i0 = 0; i0 < ax->inner && !rc; i0 += s, group++) {
			uint64_t cnt = ax->inner - i0 < s ? ax->inner - i0 : s, a[3] = { ax->axis, group, 1 };

			if (thr < 65536 &&
			    (nx_keyhash(ax->sample, strlen(ax->sample), a, sizeof(a)) & 65535) >= thr)
				continue;
			for (uint64_t j = 0; j < ax->len && !rc; j++) {
				ssize_t got = nx_pread_full(ax->fd, buf + j * cnt * ax->width,
							    cnt * ax->width,
							    ax->off + ((o * ax->len + j) * ax->inner + i0) *
									      ax->width);

				if (got != (ssize_t)(cnt * ax->width))
					rc = nx_error_errno(err, NX_EIO, got < 0 ? errno : EIO,
							    ax->path, "cannot read %s", ax->path);
			}
			for (uint64_t k = 0; k < cnt && !rc; k++) {
				nx_fp__num_get_n(v, buf + k * ax->width, ax->len, cnt * ax->width,
						 ax->dtype);
				rc = perm_take(ax, ps, v, err);
			}
		}
	}
out:
	free(buf);
	free(v);
	return rc;
}

/*
 * The scale-free form.  A copy scaled per element of each axis,
 * diag(e) W diag(d) (free in a ReLU network: e into the layer before, d
 * undone by the next), changes every vector's profile: no statistic of one
 * vector survives a scale per element.  But the scales are shared by all
 * the vectors of the tensor: divide each position of a vector by the
 * geometric mean magnitude of that position over the axis's vectors,
 * exp(mean log |x|), and the student's e_i W_ij d_j / G_j is the teacher's
 * T_pi(i)sigma(j) / G'_sigma(j) times e_i / (the mean of e): the teacher's
 * own normalised vector, permuted, times a constant the standardisation
 * removes.  Exact for any positive scales, whatever their spread; zeros
 * (log 0) are left out of the means.  perm_logs: the sums gathered while
 * the axis is read as stored; perm_scales: the scales made of them.
 */
static int perm_logs(struct perm_axis *ax, double **sum, uint64_t **cnt, nx_error *err)
{
	free(*sum);
	free(*cnt);
	*sum = calloc(ax->len, sizeof(**sum));
	*cnt = calloc(ax->len, sizeof(**cnt));
	if (!*sum || !*cnt)
		return nx_error_oom(err, NULL);
	ax->lsum = *sum;
	ax->lcnt = *cnt;
	return 0;
}

static void perm_scales(struct perm_axis *ax)
{
	double *s = ax->lsum;

	for (uint64_t j = 0; j < ax->len; j++) {
		s[j] = ax->lcnt[j] ? exp(s[j] / (double)ax->lcnt[j]) : 1;
		if (!(s[j] > 0) || !isfinite(s[j]))
			s[j] = 1;
	}
	ax->scale = s;
	ax->lsum = NULL;
	ax->lcnt = NULL;
}

/* The mean spacings of the profiles at off (0: v's, FP_PERM_Q: |v|'s)
 * and their spread: symmetric for v (-v's spacings are v's reversed), not
 * for |v| (its profile is one-sided: made symmetric, its means left a part
 * all vectors share, and unrelated t(4) vectors reached cosine 0.98).
 * False when the axis has no spread. */
static bool perm_stats(const struct perm_profiles *ps, int off, double *ms, double *ss)
{
	double m[FP_PERM_F] = { 0 }, s[FP_PERM_F] = { 0 };
	size_t i;
	int q;

	for (i = 0; i < ps->n; i++)
		for (q = 0; q < FP_PERM_F; q++)
			m[q] += ps->p[i * PERM_P + off + q + 1] - ps->p[i * PERM_P + off + q];
	for (q = 0; q < FP_PERM_F; q++)
		m[q] /= (double)ps->n;
	for (q = 0; q < FP_PERM_F; q++)
		ms[q] = off ? m[q] : (m[q] + m[FP_PERM_F - 1 - q]) / 2;
	for (i = 0; i < ps->n; i++)
		for (q = 0; q < FP_PERM_F; q++) {
			double d = ps->p[i * PERM_P + off + q + 1] - ps->p[i * PERM_P + off + q] - ms[q];

			s[q] += d * d;
		}
	for (q = 0; q < FP_PERM_F; q++)
		ss[q] = sqrt((off ? s[q] : (s[q] + s[FP_PERM_F - 1 - q]) / 2) / (double)ps->n);
	for (q = 0; q < FP_PERM_F; q++)
		if (!(ss[q] > 0))
			return false;
	return true;
}

/* The profiles' features at off (n x FP_PERM_F into f), each centred,
 * unit norm: spacings less the means ms, over the spreads ss. */
static void perm_apply(const struct perm_profiles *ps, int off, const double *ms,
		       const double *ss, double *f)
{
	for (size_t i = 0; i < ps->n; i++) {
		double *x = f + i * FP_PERM_F, mean = 0, norm = 0;
		int q;

		for (q = 0; q < FP_PERM_F; q++) {
			x[q] = (ps->p[i * PERM_P + off + q + 1] - ps->p[i * PERM_P + off + q] - ms[q]) /
			       ss[q];
			mean += x[q];
		}
		mean /= FP_PERM_F;
		for (q = 0; q < FP_PERM_F; q++) {
			x[q] -= mean;
			norm += x[q] * x[q];
		}
		norm = norm > 0 ? 1 / sqrt(norm) : 0;
		for (q = 0; q < FP_PERM_F; q++)
			x[q] *= norm;
	}
}

/* The FP_PERM_BITS hyperplanes (fixed: teacher and student runs agree). */
static double perm_h[FP_PERM_BITS][FP_PERM_F];
static pthread_once_t perm_once = PTHREAD_ONCE_INIT;

static void perm_planes_make(void)
{
	double (*h)[FP_PERM_F] = perm_h;
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (int b = 0; b < FP_PERM_BITS; b++)
		for (int q = 0; q < FP_PERM_F; q++) {
			double u = 0;

			/* a sum of 4 uniforms: near enough a Gaussian direction */
			for (int k = 0; k < 4; k++) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				u += (double)(x >> 11) / 9007199254740992.0 - 0.5;
			}
			h[b][q] = u;
		}
}

static const double *perm_planes(void)
{
	pthread_once(&perm_once, perm_planes_make);
	return &perm_h[0][0];
}

/* The sign bits of x on the planes, and each's |projection| in margin. */
static uint32_t perm_key(const double *x, double *margin)
{
	const double *h = perm_planes();
	uint32_t key = 0;

	for (int b = 0; b < FP_PERM_BITS; b++) {
		double d = 0;

		for (int q = 0; q < FP_PERM_F; q++)
			d += x[q] * h[b * FP_PERM_F + q];
		key |= (uint32_t)(d > 0) << b;
		if (margin)
			margin[b] = fabs(d);
	}
	return key;
}

/* Teacher: the axis's vectors kept in one form (the set's first
 * FP_PERM_MAX entries); vid0 + a profile's order of reading is its id.
 * A form as stored keeps the axis's means too (struct perm_stat). */
static int perm_keep(struct fp_perm *u, uint32_t tensor, uint64_t len, unsigned form,
		     uint64_t vid0, const struct perm_profiles *ps, nx_error *err)
{
	int off = form & PERM_ABS ? FP_PERM_Q : 0;
	double *f = NULL, ms[FP_PERM_F], ss[FP_PERM_F];
	size_t i, k;
	int rc = 0;

	if (ps->n < FP_PERM_MINVEC || !perm_stats(ps, off, ms, ss))
		return 0;
	if (!(f = malloc(ps->n * FP_PERM_F * sizeof(*f))))
		return nx_error_oom(err, NULL);
	perm_apply(ps, off, ms, ss, f);
	if (!(form & PERM_FREE)) {
		struct perm_stat *st;

		if (NX_ARRAY_PUSH(u->st, u->capst, u->nst)) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		st = &u->st[u->nst++];
		st->tensor = tensor;
		st->len = (uint32_t)len;
		st->form = form;
		memcpy(st->ms, ms, sizeof(ms));
		memcpy(st->ss, ss, sizeof(ss));
	}
	for (i = 0; i < ps->n && u->n < FP_PERM_MAX; i++) {
		const double *x = f + i * FP_PERM_F;
		struct perm_entry *e;
		double mx = 0;
		int q;

		if (NX_ARRAY_PUSH(u->e, u->cap, u->n)) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		e = &u->e[u->n++];
		memset(e, 0, sizeof(*e));
		e->key = len << 32 | (uint64_t)form << 29 | perm_key(x, NULL);
		e->tensor = tensor;
		e->vid = (uint32_t)(vid0 + ps->ord[i]);
		for (q = 0; q < FP_PERM_F; q++)
			mx = fabs(x[q]) > mx ? fabs(x[q]) : mx;
		for (q = 0; q < FP_PERM_F && mx > 0; q++)
			e->f[q] = (int8_t)lrint(x[q] * 127 / mx);
	}
	u->sorted = false;
	for (k = 0; k < u->nlens && u->lens[k] != len; k++)
		;
	if (k == u->nlens) {
		if (NX_ARRAY_PUSH(u->lens, u->caplens, u->nlens)) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		u->lens[u->nlens++] = (uint32_t)len;
	}
out:
	free(f);
	return rc;
}

/* outer x len x inner of axis k of dims (false: not a whole tensor of n,
 * or fewer than minvec vectors along it). */
static bool perm_shape(const int64_t *dims, size_t ndims, size_t k, uint64_t n, uint64_t minvec,
		       uint64_t *outer, uint64_t *len, uint64_t *inner)
{
	uint64_t prod = 1;

	for (size_t i = 0; i < ndims; i++) {
		if (dims[i] <= 0 || (uint64_t)dims[i] > n / prod)
			return false;
		prod *= (uint64_t)dims[i];
	}
	if (prod != n)
		return false;
	*outer = *inner = 1;
	for (size_t i = 0; i < k; i++)
		*outer *= (uint64_t)dims[i];
	for (size_t i = k + 1; i < ndims; i++)
		*inner *= (uint64_t)dims[i];
	*len = (uint64_t)dims[k];
	return *len >= FP_PERM_MINLEN && *len <= FP_PERM_MAXLEN &&
	       *outer * *inner >= minvec;
}

int nx_fp__perm_teacher(nx_fp_set *set, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			size_t ndims, nx_error *err)
{
	unsigned width = nx_fp__num_width(dtype);
	struct fp_perm *u = set->perm;
	struct perm_profiles ps[4];   /* per axis: as stored, scale-free */
	struct perm_tensor *t;
	struct perm_axis axv[2];
	uint64_t lens[2] = { 0, 0 }, vid0, *cnt[2] = { NULL, NULL };
	size_t axes[2] = { ndims - 1, 0 }, n0, nst0;
	double *sum[2] = { NULL, NULL };
	int rc = 0, a;

	if (!nx_fp__num_float(dtype) || ndims < 2 || ndims > FP_PERM_AXES || len % width)
		return 0;
	if (u && u->n >= FP_PERM_MAX)
		return 0;
	if (!u && !(u = set->perm = calloc(1, sizeof(*u))))
		return nx_error_oom(err, NULL);
	if (NX_ARRAY_PUSH(u->t, u->capt, u->nt))
		return nx_error_oom(err, NULL);
	memset(ps, 0, sizeof(ps));
	t = &u->t[u->nt];
	n0 = u->n;
	nst0 = u->nst;
	vid0 = u->nvid;
	for (a = 0; a < 2 && !rc; a++) {
		struct perm_axis ax = { fd, path, off, dtype, width, 0, 0, 0, name, (unsigned)axes[a],
					true, NULL, NULL, NULL };

		axv[a] = ax;
		if (perm_shape(dims, ndims, axes[a], len / width, FP_PERM_MINVEC, &axv[a].outer,
			       &axv[a].len, &axv[a].inner)) {
			lens[a] = axv[a].len;
			if (!(rc = perm_logs(&axv[a], &sum[a], &cnt[a], err)))
				rc = perm_read_axis(&axv[a], &ps[a], err);
		}
	}
	/* a table a formula wrote (sinusoidal positions: its columns
	 * predicted, its rows chirps of the same formula): none of it */
	for (a = 0; a < 2 && !rc; a++)
		if (ps[a].seen && ps[a].predicted * 2 >= ps[a].seen)
			goto out;
	for (a = 0; a < 2 && !rc; a++) {
		if (!lens[a])
			continue;
		perm_scales(&axv[a]);
		rc = perm_read_axis(&axv[a], &ps[2 + a], err);
	}
	/* ps[a % 4] (axis a % 2, scale-free from 2 on), v's then |v|'s */
	for (a = 0; a < 8 && !rc; a++)
		if (lens[a % 2])
			rc = perm_keep(u, (uint32_t)u->nt, lens[a % 2],
				       (a % 4 / 2 ? PERM_FREE : 0) | (a / 4 ? PERM_ABS : 0),
				       vid0 + (a % 2 ? ps[0].nread : 0), &ps[a % 4], err);
out:
	for (a = 0; a < 2; a++) {
		free(sum[a]);
		free(cnt[a]);
	}
	for (a = 0; a < 4; a++) {
		free(ps[a].p);
		free(ps[a].ord);
	}
	if (rc || u->n == n0) {
		u->n = n0;
		u->nst = nst0;
		return rc;
	}
	if (!(t->name = strdup(name))) {
		u->n = n0;
		u->nst = nst0;
		return nx_error_oom(err, NULL);
	}
	t->file = set->nfiles - 1;
	u->nvid += ps[0].nread + ps[1].nread;
	u->nt++;
	return 0;
}

void nx_fp__perm_free(struct fp_perm *u)
{
	if (!u)
		return;
	for (size_t i = 0; i < u->nt; i++)
		free(u->t[i].name);
	free(u->t);
	free(u->st);
	free(u->e);
	free(u->lens);
	free(u);
}

static int cmp_entry_key(const void *a, const void *b)
{
	const struct perm_entry *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

int nx_fp__perm_begin(struct nx_fp__perm_run *run, const nx_fp_set *set, nx_error *err)
{
	struct fp_perm *u = set->perm;

	memset(run, 0, sizeof(*run));
	if (!u || !u->n)
		return 0;
	if (!u->sorted) {
		qsort(u->e, u->n, sizeof(*u->e), cmp_entry_key);
		u->sorted = true;
	}
	run->u = u;
	if (!(run->seen = calloc(u->nvid / 64 + 1, sizeof(*run->seen))) ||
	    !(run->count = calloc(u->nt, sizeof(*run->count))) ||
	    !(run->bytes = calloc(u->nt, sizeof(*run->bytes))))
		return nx_error_oom(err, NULL);
	return 0;
}

void nx_fp__perm_end(struct nx_fp__perm_run *run)
{
	free(run->seen);
	free(run->count);
	free(run->bytes);
	free(run->touched);
	memset(run, 0, sizeof(*run));
}

/* Look key up; each unseen candidate (of teacher tensor `only` when it is
 * not -1) whose features' cosine with x is at least its form's FP_PERM_R*
 * is a teacher vector found, counted at its own length. */
static int perm_probe(struct nx_fp__perm_run *run, uint64_t key, int64_t only, const double *x,
		      nx_error *err)
{
	static const double rs[4] = { FP_PERM_R, FP_PERM_RN, FP_PERM_RA, FP_PERM_RAN };
	double r = rs[key >> 29 & 3];
	const struct fp_perm *u = run->u;
	size_t lo = 0, hi = u->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (u->e[mid].key < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < u->n && u->e[lo].key == key; lo++) {
		const struct perm_entry *e = &u->e[lo];
		double dot = 0, nn = 0;

		if (run->seen[e->vid / 64] >> (e->vid % 64) & 1 || (only >= 0 && e->tensor != only))
			continue;
		for (int q = 0; q < FP_PERM_F; q++) {
			dot += x[q] * e->f[q];
			nn += (double)e->f[q] * e->f[q];
		}
		if (!(nn > 0) || dot / sqrt(nn) < r)
			continue;
		run->seen[e->vid / 64] |= 1ull << (e->vid % 64);
		/* at float32 size, as the one sum's 16 KiB is */
		run->bytes[e->tensor] += (key >> 32) * sizeof(float);
		if (!run->count[e->tensor]++) {
			if (NX_ARRAY_PUSH(run->touched, run->captouched, run->ntouched))
				return nx_error_oom(err, NULL);
			run->touched[run->ntouched++] = e->tensor;
		}
	}
	return 0;
}

/* One student vector's features, as is and reversed (-v; |v| has no
 * reverse), every key its FP_PERM_FLIP least sure bits may give, at each
 * of the nl teacher lengths ls (its own, and those a few elements shorter:
 * a padded vector's rank bins are nearly the teacher's), in one form. */
static int perm_lookup(struct nx_fp__perm_run *run, const double *f, const uint64_t *ls,
		       size_t nl, unsigned form, int64_t only, nx_error *err)
{
	double x[FP_PERM_F], margin[FP_PERM_BITS];
	int rc = 0;

	for (int side = 0; side < (form & PERM_ABS ? 1 : 2) && !rc; side++) {
		int low[FP_PERM_FLIP];
		uint32_t key;

		for (int q = 0; q < FP_PERM_F; q++)
			x[q] = side ? f[FP_PERM_F - 1 - q] : f[q];
		key = perm_key(x, margin);
		for (int k = 0; k < FP_PERM_FLIP; k++) {
			int best = -1;

			for (int b = 0; b < FP_PERM_BITS; b++)
				if (margin[b] >= 0 && (best < 0 || margin[b] < margin[best]))
					best = b;
			low[k] = best;
			margin[best] = -1;
		}
		for (uint32_t mask = 0; mask < 1u << FP_PERM_FLIP && !rc; mask++) {
			uint32_t k2 = key;

			for (int k = 0; k < FP_PERM_FLIP; k++)
				if (mask >> k & 1)
					k2 ^= 1u << low[k];
			for (size_t l = 0; l < nl && !rc; l++)
				rc = perm_probe(run, ls[l] << 32 | (uint64_t)form << 29 | k2, only, x,
						err);
		}
	}
	return rc;
}

/* The axis's vectors read (scale: in the scale-free form), each looked up
 * at the lengths ls as v and as |v|.  An axis of fewer than FP_PERM_MINVEC
 * vectors (a layer cut into tensors of 15 rows: red team 12) has no means
 * of its own: its features are taken against each teacher axis's of a
 * length in ls (struct perm_stat) and looked up in that tensor only. */
static int perm_student_axis(struct nx_fp__perm_run *run, struct perm_axis *ax,
			     struct perm_profiles *ps, double **f, const uint64_t *ls, size_t nl,
			     nx_error *err)
{
	const struct fp_perm *u = run->u;
	double ms[FP_PERM_F], ss[FP_PERM_F];
	int rc;

	ps->n = 0;
	if ((rc = perm_read_axis(ax, ps, err)) != 0 || !ps->n)
		return rc;
	free(*f);
	if (!(*f = malloc(ps->n * FP_PERM_F * sizeof(**f))))
		return nx_error_oom(err, NULL);
	for (unsigned form = 0; form <= PERM_ABS && !rc; form += PERM_ABS) {
		int off = form ? FP_PERM_Q : 0;

		if (ps->n >= FP_PERM_MINVEC) {
			if (!perm_stats(ps, off, ms, ss))
				continue;
			perm_apply(ps, off, ms, ss, *f);
			for (size_t i = 0; i < ps->n && !rc; i++)
				rc = perm_lookup(run, *f + i * FP_PERM_F, ls, nl,
						 form | (ax->scale ? PERM_FREE : 0), -1, err);
			continue;
		}
		for (size_t j = 0; j < u->nst && !rc && !ax->scale; j++) {
			const struct perm_stat *st = &u->st[j];
			uint64_t l = st->len;
			size_t k;

			for (k = 0; k < nl && ls[k] != l; k++)
				;
			if (st->form != form || k == nl)
				continue;
			perm_apply(ps, off, st->ms, st->ss, *f);
			for (size_t i = 0; i < ps->n && !rc; i++)
				rc = perm_lookup(run, *f + i * FP_PERM_F, &l, 1, form, st->tensor, err);
		}
	}
	return rc;
}

int nx_fp__perm_student(struct nx_fp__perm_run *run, const char *name, int32_t dtype, int fd,
			const char *path, uint64_t off, uint64_t len, const int64_t *dims,
			size_t ndims, nx_fp__units_fn fn, void *ctx, nx_error *err)
{
	unsigned width = nx_fp__num_width(dtype);
	struct perm_profiles ps;
	double *f = NULL, *sum = NULL;
	uint64_t *cnt = NULL;
	int rc = 0;

	if (!run->u || !width || len % width || ndims < 2 || ndims > FP_PERM_AXES)
		return 0;
	memset(&ps, 0, sizeof(ps));
	for (size_t k = 0; k < ndims && !rc; k++) {
		struct perm_axis ax = { fd, path, off, dtype, width, 0, 0, 0, name, (unsigned)k,
					false, NULL, NULL, NULL };
		uint64_t ls[FP_PERM_PAD + 1];
		size_t nl = 0;

		if (!perm_shape(dims, ndims, k, len / width, 1, &ax.outer, &ax.len, &ax.inner))
			continue;
		for (size_t j = 0; j < run->u->nlens; j++)
			if (run->u->lens[j] <= ax.len && run->u->lens[j] + FP_PERM_PAD >= ax.len)
				ls[nl++] = run->u->lens[j];
		if (!nl)
			continue;
		/* integer codes: int8 of a scaled copy keeps 0.29 - 0.62 of
		 * the scale-free cosine (bench/perm_margins.py), and the
		 * form doubles an axis's cost; an axis of fewer than
		 * FP_PERM_MINVEC vectors has too few for the scales */
		if (nx_fp__num_float(dtype) && ax.outer * ax.inner >= FP_PERM_MINVEC &&
		    (rc = perm_logs(&ax, &sum, &cnt, err)) != 0)
			break;
		if ((rc = perm_student_axis(run, &ax, &ps, &f, ls, nl, err)) != 0 || !ax.lsum)
			continue;
		perm_scales(&ax);
		rc = perm_student_axis(run, &ax, &ps, &f, ls, nl, err);
	}
	free(f);
	free(sum);
	free(cnt);
	free(ps.p);
	free(ps.ord);
	for (size_t i = 0; i < run->ntouched; i++) {
		uint32_t t = run->touched[i];

		if (!rc)
			rc = fn(ctx, name, run->u->t[t].name, run->u->t[t].file, run->count[t],
				run->bytes[t], err);
		run->count[t] = 0;
		run->bytes[t] = 0;
	}
	run->ntouched = 0;
	return rc;
}
