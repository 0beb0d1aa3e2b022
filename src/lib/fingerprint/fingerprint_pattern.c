/*
 * fingerprint_pattern.c - small teacher tensors found anywhere inside a
 * student tensor.
 *
 * A small teacher tensor (under NX_FP_MIN_BYTES) counts toward the
 * small-tensor sum when the student holds a whole copy of it.  As a
 * tensor of its own that is the whole-contents hash; laid end to end with
 * others in one student tensor (red team 8: 24 LayerNorm vectors of 3 KiB
 * packed into one 72 KiB initializer), or inside a larger tensor at any
 * offset, it is no tensor of its own, and its ~2 KiB content-defined
 * chunks rarely line up with the student's.  So each such teacher tensor
 * (every form recorded: its bytes, casts, widened) is kept whole, with an
 * anchor: the hash of FP_ANCHOR bytes of it at an offset a multiple of 8
 * where they are not periodic (a run of zeros or a repeated pair would be
 * everywhere).  Every student tensor is scanned with a Rabin-Karp rolling
 * hash over 16-bit words, at every even offset (and every odd one in a
 * tensor of 1-byte elements), so a copy starting at any element is seen;
 * an anchor found is checked byte for byte, and the whole teacher tensor
 * then compared byte for byte, from a ring of the last FP_RING bytes read.
 *
 * Why by hand: a rolling hash over a stream read once, with a keyed base,
 * is a dozen lines; no Debian library offers one for a byte stream fed in
 * pieces.  The base is drawn per run (nx_keyhash), so the anchors' hashes
 * cannot be aimed at; a collision costs one 64-byte compare.
 *
 * Cost: a multiply, an add and a filter bit per 2 bytes of every student
 * tensor; memory: the small teacher tensors' bytes (at most
 * FP_PATTERN_POOL_MAX; past it a small tensor is matched whole only), a
 * 128 KiB filter and the ring.  Transposed pieces are not looked for.
 */
#include "fingerprint_int.h"
#include "util/strset_int.h"

#include <stdlib.h>
#include <string.h>

#define FP_ANCHOR 64u                   /* bytes an anchor hashes (32 words) */
#define FP_FILTER_BITS 20               /* 2^20 bits: 128 KiB */
#define FP_RING (16u << 10)             /* bytes of the student kept (> 2 x FP_PATTERN_MAX) */
#define FP_PIECE (4u << 10)             /* bytes scanned between confirmations */
#define FP_PATTERN_POOL_MAX (64u << 20) /* bytes of small teacher tensors kept */
#define FP_HIST (FP_ANCHOR + 2)         /* bytes before a piece a word may reach back to */
#define FP_PENDING_MAX 65536u           /* anchors found, awaiting the rest of their tensor */

struct fp_pat {
	uint64_t anchor;   /* rolling hash of bytes [a, a + FP_ANCHOR) */
	uint64_t whole;    /* the entry's (fp_entry.whole, .bytes): found with fp_find */
	uint32_t len, a;
	size_t data;       /* offset of its bytes in pool */
};

struct fp_patterns {
	struct fp_pat *p;
	size_t n, cap;
	unsigned char *pool;
	size_t npool, cappool;
	uint64_t base, base_w;   /* B (odd, per run), B^32 */
	uint64_t *filter;
	bool sorted;
	uint32_t *stamp;         /* per pattern: the student tensor it last matched in */
	uint32_t now;
};

static int pat_cmp(const void *x, const void *y)
{
	const struct fp_pat *a = x, *b = y;

	return a->anchor < b->anchor ? -1 : a->anchor > b->anchor;
}

static inline size_t fbit(uint64_t h)
{
	return (size_t)((h * 0x9e3779b97f4a7c15ull) >> (64 - FP_FILTER_BITS));
}

/* Periodic with a period of at most 32 bytes (zeros, a repeated value or pair). */
static bool periodic(const unsigned char *p)
{
	unsigned k;

	for (k = 1; k <= 32; k++)
		if (!memcmp(p, p + k, FP_ANCHOR - k))
			return true;
	return false;
}

static uint64_t anchor_hash(const struct fp_patterns *s, const unsigned char *p)
{
	uint64_t h = 0;
	unsigned i;

	for (i = 0; i < FP_ANCHOR; i += 2)
		h = h * s->base + (uint16_t)(p[i] | p[i + 1] << 8);
	return h;
}

void nx_fp__patterns_free(struct fp_patterns *s)
{
	if (!s)
		return;
	free(s->p);
	free(s->pool);
	free(s->filter);
	free(s->stamp);
	free(s);
}

size_t nx_fp__patterns_count(const nx_fp_set *set)
{
	return set->patterns ? set->patterns->n : 0;
}

int nx_fp__pattern_add(nx_fp_set *set, const struct fp_hash *h, nx_error *err)
{
	struct fp_patterns *s = set->patterns;
	struct fp_pat *p;
	uint32_t a;
	unsigned i;

	if (h->total < NX_FP_SMALL_MIN_BYTES || h->total > FP_PATTERN_MAX)
		return 0;
	for (a = 0; a + FP_ANCHOR <= h->total && periodic(h->head + a); a += 8)
		;
	if (a + FP_ANCHOR > h->total)
		return 0;   /* periodic all along: trivial, or near enough */
	if (!s) {
		if (!(s = calloc(1, sizeof(*s))) ||
		    !(s->filter = calloc(((size_t)1 << FP_FILTER_BITS) / 64, sizeof(uint64_t)))) {
			free(s);
			return nx_error_oom(err, NULL);
		}
		s->base = nx_keyhash("fp_pattern", 10, NULL, 0) | 1;
		for (s->base_w = 1, i = 0; i < FP_ANCHOR / 2; i++)
			s->base_w *= s->base;
		set->patterns = s;
	}
	if (s->npool + h->total > FP_PATTERN_POOL_MAX)
		return 0;   /* documented: past it, whole copies only */
	if (nx_array_grow(&s->pool, &s->cappool, s->npool + h->total, 1, SIZE_MAX) ||
	    NX_ARRAY_PUSH(s->p, s->cap, s->n))
		return nx_error_oom(err, NULL);
	p = &s->p[s->n++];
	p->anchor = anchor_hash(s, h->head + a);
	p->whole = h->whole;
	p->len = (uint32_t)h->total;
	p->a = a;
	p->data = s->npool;
	memcpy(s->pool + s->npool, h->head, h->total);
	s->npool += h->total;
	s->filter[fbit(p->anchor) / 64] |= 1ull << (fbit(p->anchor) % 64);
	s->sorted = false;
	return 0;
}

/* A student tensor under way. */
struct pending {
	uint64_t start;
	size_t pat;
};

int nx_fp__pscan_begin(struct nx_fp__pscan *ps, const nx_fp_set *set, unsigned width,
		       nx_error *err)
{
	struct fp_patterns *s = set->patterns;

	memset(ps, 0, sizeof(*ps));
	if (!s || !s->n)
		return 0;
	if (!s->sorted) {
		free(s->stamp);
		qsort(s->p, s->n, sizeof(*s->p), pat_cmp);
		if (!(s->stamp = calloc(s->n, sizeof(*s->stamp))))
			return nx_error_oom(err, NULL);
		s->sorted = true;
	}
	if (!(ps->ring = malloc(FP_RING)) || !(ps->lin = malloc(FP_HIST + FP_PIECE))) {
		free(ps->ring);
		return nx_error_oom(err, NULL);
	}
	ps->s = s;
	ps->phases = width == 1 ? 2 : 1;
	ps->next[1] = 1;
	ps->err = err;
	s->now++;
	return 0;
}

static void ring_copy(const struct nx_fp__pscan *ps, unsigned char *out, uint64_t from, size_t n)
{
	size_t i = (size_t)(from % FP_RING), k = FP_RING - i < n ? FP_RING - i : n;

	memcpy(out, ps->ring + i, k);
	memcpy(out + k, ps->ring, n - k);
}

/* The anchor hash h ends at ring position end (exclusive): pend the
 * patterns whose anchor bytes these are. */
static int anchor_found(struct nx_fp__pscan *ps, uint64_t h, uint64_t end)
{
	const struct fp_patterns *s = ps->s;
	struct fp_pat key = { h, 0, 0, 0, 0 };
	const struct fp_pat *p = bsearch(&key, s->p, s->n, sizeof(*s->p), pat_cmp);
	unsigned char win[FP_ANCHOR];
	uint64_t wstart = end - FP_ANCHOR;

	if (!p)
		return 0;
	while (p > s->p && p[-1].anchor == h)
		p--;
	ring_copy(ps, win, wstart, FP_ANCHOR);
	for (; p < s->p + s->n && p->anchor == h; p++) {
		if (wstart < p->a || memcmp(win, s->pool + p->data + p->a, FP_ANCHOR) ||
		    ps->npending >= FP_PENDING_MAX)
			continue;
		if (NX_ARRAY_PUSH(ps->pending, ps->cappending, ps->npending))
			return nx_error_oom(ps->err, NULL);
		ps->pending[ps->npending].start = wstart - p->a;
		ps->pending[ps->npending++].pat = (size_t)(p - s->p);
	}
	return 0;
}

/* Compare the pending patterns whose bytes have all been read. */
static int confirm(struct nx_fp__pscan *ps)
{
	struct fp_patterns *s = ps->s;
	unsigned char buf[FP_PATTERN_MAX];
	size_t i, k = 0;

	for (i = 0; i < ps->npending; i++) {
		const struct pending *q = &ps->pending[i];
		const struct fp_pat *p = &s->p[q->pat];

		if (q->start + p->len > ps->pos) {
			ps->pending[k++] = *q;
			continue;
		}
		if (s->stamp[q->pat] == s->now)
			continue;
		ring_copy(ps, buf, q->start, p->len);
		if (memcmp(buf, s->pool + p->data, p->len))
			continue;
		s->stamp[q->pat] = s->now;
		if (NX_ARRAY_PUSH(ps->hits, ps->caphits, ps->nhits))
			return nx_error_oom(ps->err, NULL);
		ps->hits[ps->nhits].whole = p->whole;
		ps->hits[ps->nhits++].bytes = p->len;
	}
	ps->npending = k;
	return 0;
}

/*
 * Roll phase ph's hash over the words of lin[from, to) (lin: the piece
 * read, after the FP_HIST bytes before it; each word's step drops the word
 * FP_ANCHOR bytes back); at is the absolute offset of lin[0] (mod 2^64).
 */
static int roll(struct nx_fp__pscan *ps, unsigned ph, const unsigned char *lin, size_t from,
		size_t to, uint64_t at)
{
	const struct fp_patterns *s = ps->s;
	const uint64_t base = s->base, base_w = s->base_w, *filter = s->filter;
	uint64_t h = ps->h[ph];
	size_t j;
	int rc;

	/* the phase's first words: nothing leaves the window yet (the word
	 * FP_ANCHOR bytes back of the odd phase's would hold byte 0) */
	for (j = from; j + 2 <= to && at + j < ph + FP_ANCHOR; j += 2) {
		uint16_t x;

		memcpy(&x, lin + j, 2);
		h = h * base + x;
		if (at + j + 2 == ph + FP_ANCHOR && (filter[fbit(h) / 64] >> (fbit(h) % 64) & 1) &&
		    (rc = anchor_found(ps, h, at + j + 2)) != 0)
			return rc;
	}
	for (; j + 2 <= to; j += 2) {
		uint16_t x, old;
		size_t b;

		memcpy(&x, lin + j, 2);
		memcpy(&old, lin + j - FP_ANCHOR, 2);
		h = h * base + x - base_w * old;
		b = fbit(h);
		if (__builtin_expect(filter[b / 64] >> (b % 64) & 1, 0) &&
		    (rc = anchor_found(ps, h, at + j + 2)) != 0)
			return rc;
	}
	ps->h[ph] = h;
	ps->next[ph] = at + j;
	return 0;
}

int nx_fp__pscan_feed(struct nx_fp__pscan *ps, const unsigned char *buf, size_t len)
{
	int rc;

	while (len) {
		size_t n = len < FP_PIECE ? len : FP_PIECE, i = (size_t)(ps->pos % FP_RING);
		size_t k = FP_RING - i < n ? FP_RING - i : n;
		uint64_t lin0 = ps->pos - FP_HIST;   /* absolute offset of lin[0] (mod 2^64) */
		unsigned ph;

		/* lin: the FP_HIST bytes before the piece (zeros before the
		 * start), then the piece */
		if (ps->pos >= FP_HIST) {
			ring_copy(ps, ps->lin, lin0, FP_HIST);
		} else {
			memset(ps->lin, 0, FP_HIST);
			ring_copy(ps, ps->lin + FP_HIST - ps->pos, 0, (size_t)ps->pos);
		}
		memcpy(ps->lin + FP_HIST, buf, n);
		memcpy(ps->ring + i, buf, k);
		memcpy(ps->ring, buf + k, n - k);
		for (ph = 0; ph < ps->phases; ph++)
			if ((rc = roll(ps, ph, ps->lin, (size_t)(ps->next[ph] - lin0),
				       FP_HIST + n, lin0)) != 0)
				return rc;
		ps->pos += n;
		buf += n;
		len -= n;
		if (ps->npending && (rc = confirm(ps)) != 0)
			return rc;
	}
	return 0;
}

void nx_fp__pscan_end(struct nx_fp__pscan *ps)
{
	free(ps->ring);
	free(ps->lin);
	free(ps->pending);
	free(ps->hits);
	memset(ps, 0, sizeof(*ps));
}
