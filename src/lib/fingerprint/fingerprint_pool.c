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
 * that to the 4th power: 3 x 10^8 student elements give none.
 */
#include "fingerprint_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/strset_int.h"

#define FP_POOL_BITS 12          /* a folded ratio is kept to 2^-12 */
#define FP_POOL_FLAT 14          /* differences under 2^-14 of the values: flat */
#define FP_POOL_MAX (1u << 20)   /* distinct keys kept (4 MiB of teacher floats) */

struct fp_pool {
	uint64_t *keys;        /* open addressing, 0 empty */
	uint32_t *tensor;      /* the first teacher tensor with the key */
	unsigned char *mark;   /* per model: found in a run */
	size_t cap, n;         /* cap a power of 2 */
	uint64_t mul;          /* keyed per run (odd) */
	struct pooled {
		char *name;    /* a teacher tensor pooled */
		size_t file;   /* index into the set's files */
	} *t;
	size_t nt, capt;
	/* per model */
	size_t marked;
	char *best;            /* the student tensor that marked the most */
	uint32_t best_marks;
};

/* The key of window (a, b, c, d), 0 when it is flat or not finite. */
static uint64_t window_key(double a, double b, double c, double d)
{
	double d1 = b - a, d2 = c - b, d3 = d - c, m = fabs(a), t, r1, r2;
	long q1, q2;

	if (fabs(b) > m)
		m = fabs(b);
	if (fabs(c) > m)
		m = fabs(c);
	if (fabs(d) > m)
		m = fabs(d);
	/* not finite, or subnormal: an integer tensor read as float32 */
	if (!(m >= 0x1p-100) || !(m < HUGE_VAL))
		return 0;
	t = ldexp(m, -FP_POOL_FLAT);
	if (!(fabs(d1) >= t) || !(fabs(d2) >= t) || !(fabs(d3) >= t))
		return 0;
	r1 = d2 / d1;
	r2 = d3 / d2;
	if (fabs(r1) > 1)
		r1 = 1 / r1;
	if (fabs(r2) > 1)
		r2 = 1 / r2;
	q1 = lrint(ldexp(r1, FP_POOL_BITS)) + (1L << FP_POOL_BITS);
	q2 = lrint(ldexp(r2, FP_POOL_BITS)) + (1L << FP_POOL_BITS);
	if (q1 > q2) {
		long x = q1;

		q1 = q2;
		q2 = x;
	}
	return 1ull << 40 | (uint64_t)q1 << 16 | (uint64_t)q2;
}

static size_t slot_of(const struct fp_pool *s, uint64_t key)
{
	size_t i = (size_t)((key * s->mul) >> 20) & (s->cap - 1);

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
	float x[4];

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
	for (i = 0; i + 3 < k && s->n < FP_POOL_MAX; i++) {
		uint64_t key;
		size_t j;

		memcpy(x, p + 4 * i, sizeof(x));
		if (!(key = window_key(x[0], x[1], x[2], x[3])))
			continue;
		if (2 * (s->n + 1) > s->cap) {
			int rc = grow(s, err);

			if (rc)
				return rc;
		}
		j = slot_of(s, key);
		if (s->keys[j])
			continue;
		s->keys[j] = key;
		s->tensor[j] = (uint32_t)s->nt;
		s->n++;
		added++;
	}
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
	free(s->best);
	free(s);
}

void nx_fp__pool_begin_model(const nx_fp_set *set)
{
	struct fp_pool *s = set->pool;

	if (!s)
		return;
	memset(s->mark, 0, s->cap);
	s->marked = 0;
	free(s->best);
	s->best = NULL;
	s->best_marks = 0;
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

/* One more element of a lane. */
static void lane_push(struct nx_fp__pool_scan *ps, struct nx_fp__pool_lane *l, float v)
{
	struct fp_pool *s = ps->s;
	uint64_t key;
	size_t j;

	l->x[0] = l->x[1];
	l->x[1] = l->x[2];
	l->x[2] = l->x[3];
	l->x[3] = v;
	if (++l->nx < 4)
		return;
	key = window_key(l->x[0], l->x[1], l->x[2], l->x[3]);
	if (!key || !s->keys[j = slot_of(s, key)]) {
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

void nx_fp__pool_scan_begin(struct nx_fp__pool_scan *ps, const nx_fp_set *set)
{
	memset(ps, 0, sizeof(*ps));
	ps->s = set->pool && set->pool->n ? set->pool : NULL;
}

int nx_fp__pool_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct nx_fp__pool_scan *ps = ctx;
	float v;

	if (!ps->s)
		return 0;
	while (len) {
		size_t k = 4 - ps->ncarry < len ? 4 - ps->ncarry : len;

		if (!ps->ncarry && len >= 4) {
			/* whole elements straight from buf */
			for (; len >= 4; buf += 4, len -= 4) {
				memcpy(&v, buf, 4);
				lane_push(ps, &ps->lane[0], v);
				lane_push(ps, &ps->lane[1 + (ps->nelem++ & 1)], v);
			}
			continue;
		}
		memcpy(ps->carry + ps->ncarry, buf, k);
		ps->ncarry += k;
		buf += k;
		len -= k;
		if (ps->ncarry == 4) {
			memcpy(&v, ps->carry, 4);
			lane_push(ps, &ps->lane[0], v);
			lane_push(ps, &ps->lane[1 + (ps->nelem++ & 1)], v);
			ps->ncarry = 0;
		}
	}
	return 0;
}

int nx_fp__pool_scan_end(struct nx_fp__pool_scan *ps, const char *name, nx_error *err)
{
	struct fp_pool *s = ps->s;

	if (!s || ps->marks <= s->best_marks)
		return 0;
	free(s->best);
	if (!(s->best = strdup(name ? name : "")))
		return nx_error_oom(err, NULL);
	s->best_marks = ps->marks;
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
	if (!s || 4 * (uint64_t)s->marked <= NX_FP_SMALL_TOTAL_MAX)
		return false;
	v->windows = s->marked;
	v->pool = s->n;
	v->student = s->best ? s->best : "";
	/* the teacher tensor with the most keys found, to name one */
	per = calloc(s->nt + 1, sizeof(*per));
	for (i = 0; per && i < s->cap; i++)
		if (s->mark[i] && ++per[s->tensor[i]] > per[top])
			top = s->tensor[i];
	free(per);
	v->tensors = s->nt;
	v->teacher = s->t[top].name;
	v->file = s->t[top].file;
	return true;
}
