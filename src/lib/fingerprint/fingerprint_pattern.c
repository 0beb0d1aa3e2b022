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
 * (every form recorded: its bytes, casts, widened) is kept whole, with 8
 * anchors: FP_ANCHOR bytes of it at 8 consecutive byte offsets, where they
 * vary (8 distinct byte values at least: a run of zeros, a repeated value,
 * a one-hot row would be everywhere).  A copy that starts anywhere in the
 * student tensor, on an element or inside one, has one of its anchors on
 * an element boundary, so every student tensor is scanned at each of its
 * elements (every 8 bytes of float64, 4 of float32, 2 of float16, every
 * byte of int8): a keyed hash of the FP_ANCHOR bytes there is tested in a
 * filter, a hit looked up and compared byte for byte, and the whole
 * teacher tensor then compared byte for byte, from a ring of the last
 * FP_RING bytes read.
 *
 * Why not a rolling hash (Rabin-Karp) over every offset: its multiply
 * chain cost ~2 cycles a byte, which nearly doubled `inspect --teacher`
 * on a 1.2 GB student; the elements' hashes are independent, a few
 * cycles per element.  Why by hand: no Debian library looks up fixed-size
 * keys at every offset of a stream fed in pieces.  The hash's multipliers
 * are drawn per run (nx_keyhash), so anchors cannot be aimed at; a
 * collision costs one 16-byte compare.
 *
 * Memory: the small teacher tensors' bytes (at most FP_PATTERN_POOL_MAX;
 * past it a small tensor is matched whole only), a filter of 64 bits a
 * pattern (4 KiB to 128 KiB), the ring.  Not looked for: transposed
 * pieces.
 */
#include "fingerprint_int.h"
#include "util/strset_int.h"

#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

#define FP_ANCHOR 16u                   /* bytes an anchor hashes */
#define FP_FILTER_MIN 15                /* filter bits: 2^15 (4 KiB, in L1) to */
#define FP_FILTER_MAX 20                /* 2^20 (128 KiB), 64 a pattern */
#define FP_RING (16u << 10)             /* bytes of the student kept (> 2 x FP_PATTERN_MAX) */
#define FP_PIECE (4u << 10)             /* bytes scanned between confirmations */
#define FP_PATTERN_POOL_MAX (64u << 20) /* bytes of small teacher tensors kept */
#define FP_HIST FP_ANCHOR               /* bytes before a piece an anchor may start in */
#define FP_PENDING_MAX 65536u           /* anchors found, awaiting the rest of their tensor */
#define FP_ANCHORS 8u                   /* anchors a tensor, at consecutive bytes */

struct fp_pat {
	uint64_t anchor;   /* ahash of bytes [a, a + FP_ANCHOR) */
	uint64_t whole;    /* the entry's (fp_entry.whole, .bytes): found with fp_find */
	uint32_t len, a;
	uint32_t r;        /* a is the tensor's first anchor + r (0 .. FP_ANCHORS - 1) */
	uint32_t t;        /* the tensor's index (its FP_ANCHORS patterns share it) */
	size_t data;       /* offset of its bytes in pool */
};

struct fp_patterns {
	struct fp_pat *p;
	size_t n, cap;
	unsigned char *pool;
	size_t npool, cappool;
	uint64_t k0, k1;         /* ahash's multipliers (odd, per run) */
	uint64_t *filter;        /* 2^fbits bits: an anchor sets 2 bits of one word
				    (fmask), the word its top fbits - 6 bits pick */
	unsigned fbits;
	bool sorted;
	uint32_t *stamp;         /* per tensor: the student tensor it last matched in */
	uint32_t now;
	uint32_t ntensors;
};

static int pat_cmp(const void *x, const void *y)
{
	const struct fp_pat *a = x, *b = y;

	return a->anchor < b->anchor ? -1 : a->anchor > b->anchor;
}

/* Bytes that vary enough to be an anchor: 8 distinct values or more. */
static bool varied(const unsigned char *p)
{
	bool seen[256] = { false };
	unsigned i, n = 0;

	for (i = 0; i < FP_ANCHOR; i++)
		if (!seen[p[i]]) {
			seen[p[i]] = true;
			n++;
		}
	return n >= 8;
}

/* The two bits anchor hash h sets in its filter word (shift: 64 - fbits):
 * two bits a key, one word read, cut the false hits of one bit a key
 * about 50-fold, which FP_ANCHORS keys a tensor made worth it. */
static inline uint64_t fmask(uint64_t h, unsigned shift)
{
	return 1ull << (h >> shift & 63) | 1ull << (h >> (shift - 6) & 63);
}

/* The anchor hash of FP_ANCHOR bytes at p: two words, each multiplied
 * by a key (the top bits of each product depend on every bit of its
 * word; the filter takes the top bits). */
static inline uint64_t ahash(uint64_t k0, uint64_t k1, const unsigned char *p)
{
	uint64_t a, b;

	memcpy(&a, p, 8);
	memcpy(&b, p + 8, 8);
	return (a * k0) ^ (b * k1);
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
	uint32_t a, r;

	if (h->total < NX_FP_SMALL_MIN_BYTES || h->total > FP_PATTERN_MAX)
		return 0;
	/* the first FP_ANCHORS windows in a row that all vary */
	for (a = 0, r = 0; r < FP_ANCHORS && a + r + FP_ANCHOR <= h->total; )
		if (varied(h->head + a + r)) {
			r++;
		} else {
			a += r + 1;
			r = 0;
		}
	if (r < FP_ANCHORS)
		return 0;   /* nowhere varied: trivial, or near enough */
	if (!s) {
		if (!(s = calloc(1, sizeof(*s))))
			return nx_error_oom(err, NULL);
		s->k0 = nx_keyhash("fp_pattern0", 11, NULL, 0) | 1;
		s->k1 = nx_keyhash("fp_pattern1", 11, NULL, 0) | 1;
		set->patterns = s;
	}
	if (s->npool + h->total > FP_PATTERN_POOL_MAX)
		return 0;   /* documented: past it, whole copies only */
	if (nx_array_grow(&s->pool, &s->cappool, s->npool + h->total, 1, SIZE_MAX) ||
	    nx_array_grow(&s->p, &s->cap, s->n + FP_ANCHORS, sizeof(*s->p), SIZE_MAX))
		return nx_error_oom(err, NULL);
	for (r = 0; r < FP_ANCHORS; r++) {
		struct fp_pat *p = &s->p[s->n++];

		p->anchor = ahash(s->k0, s->k1, h->head + a + r);
		p->whole = h->whole;
		p->len = (uint32_t)h->total;
		p->a = a + r;
		p->r = r;
		p->t = s->ntensors;
		p->data = s->npool;
	}
	s->ntensors++;
	memcpy(s->pool + s->npool, h->head, h->total);
	s->npool += h->total;
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
		size_t i;

		free(s->stamp);
		free(s->filter);
		/* small enough to stay in L1 beside the value sample's tables
		 * (at 2^20 bits the filter's cache misses were most of the scan) */
		for (s->fbits = FP_FILTER_MIN; s->fbits < FP_FILTER_MAX &&
		     ((size_t)1 << s->fbits) < 64 * s->n; s->fbits++)
			;
		qsort(s->p, s->n, sizeof(*s->p), pat_cmp);
		s->stamp = calloc(s->ntensors, sizeof(*s->stamp));
		s->filter = calloc(((size_t)1 << s->fbits) / 64, sizeof(uint64_t));
		if (!s->stamp || !s->filter)
			return nx_error_oom(err, NULL);
		for (i = 0; i < s->n; i++) {
			uint64_t h = s->p[i].anchor;

			s->filter[h >> (64 - s->fbits + 6)] |= fmask(h, 64 - s->fbits);
		}
		s->sorted = true;
	}
	if (!(ps->ring = malloc(FP_RING)) || !(ps->lin = malloc(FP_HIST + FP_PIECE))) {
		free(ps->ring);
		return nx_error_oom(err, NULL);
	}
	ps->s = s;
	ps->step = width >= 8 ? 8 : width ? width : 1;
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
	struct fp_pat key = { h, 0, 0, 0, 0, 0, 0 };
	const struct fp_pat *p = bsearch(&key, s->p, s->n, sizeof(*s->p), pat_cmp);
	unsigned char win[FP_ANCHOR];
	uint64_t wstart = end - FP_ANCHOR;

	if (!p)
		return 0;
	while (p > s->p && p[-1].anchor == h)
		p--;
	ring_copy(ps, win, wstart, FP_ANCHOR);
	for (; p < s->p + s->n && p->anchor == h; p++) {
		/* scanned every step bytes, a copy has one anchor of r < step
		 * on a scanned offset; the others are not looked at */
		if (p->r >= ps->step || wstart < p->a ||
		    memcmp(win, s->pool + p->data + p->a, FP_ANCHOR) ||
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
		if (s->stamp[p->t] == s->now)
			continue;
		ring_copy(ps, buf, q->start, p->len);
		if (memcmp(buf, s->pool + p->data, p->len))
			continue;
		s->stamp[p->t] = s->now;
		if (NX_ARRAY_PUSH(ps->hits, ps->caphits, ps->nhits))
			return nx_error_oom(ps->err, NULL);
		ps->hits[ps->nhits].whole = p->whole;
		ps->hits[ps->nhits++].bytes = p->len;
	}
	ps->npending = k;
	return 0;
}

/* Test the anchors starting at each element of lin[from, to - FP_ANCHOR]
 * (at: the absolute offset of lin[0], mod 2^64).  The reference: every
 * element width, one anchor at a time. */
static int scan_ref(struct nx_fp__pscan *ps, const unsigned char *lin, size_t from, size_t to,
		uint64_t at)
{
	const struct fp_patterns *s = ps->s;
	const uint64_t k0 = s->k0, k1 = s->k1, *filter = s->filter;
	const unsigned shift = 64 - s->fbits;
	const size_t step = ps->step;
	size_t j;
	int rc;

	for (j = from; j + FP_ANCHOR <= to; j += step) {
		uint64_t h = ahash(k0, k1, lin + j), m = fmask(h, shift);

		if (__builtin_expect((filter[h >> (shift + 6)] & m) == m, 0) &&
		    (rc = anchor_found(ps, h, at + j + FP_ANCHOR)) != 0)
			return rc;
	}
	ps->next = at + j;
	return 0;
}

/* a x k mod 2^64 in each lane (AVX2 has no 64-bit multiply): lo x lo plus
 * the two cross products shifted up; khi holds k >> 32 */
__attribute__((target("avx2"))) static inline __m256i mul64_avx2(__m256i a, __m256i k,
								   __m256i khi)
{
	__m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), k),
					 _mm256_mul_epu32(a, khi));

	return _mm256_add_epi64(_mm256_mul_epu32(a, k), _mm256_slli_epi64(cross, 32));
}

/*
 * scan_ref for 4-byte elements (float32, the bulk of a model), four
 * anchors a step: the 28 bytes they span are one load, each anchor's two
 * words picked out of it by a permute, the hashes and filter bits worked
 * out in four lanes and the filter words gathered.  A lane that hits is
 * handed to anchor_found in lane order, so the anchors pended and their
 * order are scan_ref's (tests/unit/test_fingerprint_pattern.c).  The
 * scalar loop, about 8 cycles an element with its copies, was 7% of
 * `inspect --teacher` on the bench's 1.2 GB student.
 */
__attribute__((target("avx2"))) static int scan4_avx2(struct nx_fp__pscan *ps,
						      const unsigned char *lin, size_t from,
						      size_t to, uint64_t at)
{
	const struct fp_patterns *s = ps->s;
	const unsigned shift = 64 - s->fbits;
	const __m256i k0 = _mm256_set1_epi64x((long long)s->k0);
	const __m256i k0hi = _mm256_set1_epi64x((long long)(s->k0 >> 32));
	const __m256i k1 = _mm256_set1_epi64x((long long)s->k1);
	const __m256i k1hi = _mm256_set1_epi64x((long long)(s->k1 >> 32));
	/* lane i's first word is bytes 4i .. 4i + 7 (dwords i, i + 1), its
	 * second 4i + 8 .. 4i + 15 (dwords i + 2, i + 3) */
	const __m256i pa = _mm256_setr_epi32(0, 1, 1, 2, 2, 3, 3, 4);
	const __m256i pb = _mm256_setr_epi32(2, 3, 3, 4, 4, 5, 5, 6);
	const __m128i sw = _mm_cvtsi32_si128((int)(shift + 6));
	const __m128i s1 = _mm_cvtsi32_si128((int)shift);
	const __m128i s2 = _mm_cvtsi32_si128((int)(shift - 6));
	const __m256i six3 = _mm256_set1_epi64x(63), one = _mm256_set1_epi64x(1);
	size_t j;
	int rc;

	for (j = from; j + 32 <= to; j += 16) {
		__m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(lin + j));
		__m256i h = _mm256_xor_si256(
			mul64_avx2(_mm256_permutevar8x32_epi32(w, pa), k0, k0hi),
			mul64_avx2(_mm256_permutevar8x32_epi32(w, pb), k1, k1hi));
		__m256i m = _mm256_or_si256(
			_mm256_sllv_epi64(one, _mm256_and_si256(_mm256_srl_epi64(h, s1), six3)),
			_mm256_sllv_epi64(one, _mm256_and_si256(_mm256_srl_epi64(h, s2), six3)));
		__m256i f = _mm256_i64gather_epi64((const long long *)(const void *)s->filter,
						   _mm256_srl_epi64(h, sw), 8);
		int hit = _mm256_movemask_pd(_mm256_castsi256_pd(
			_mm256_cmpeq_epi64(_mm256_and_si256(f, m), m)));

		if (__builtin_expect(hit != 0, 0)) {
			uint64_t hs[4];
			unsigned l;

			_mm256_storeu_si256((__m256i *)(void *)hs, h);
			for (l = 0; l < 4; l++)
				if ((hit >> l & 1) &&
				    (rc = anchor_found(ps, hs[l], at + j + 4 * l + FP_ANCHOR)) != 0)
					return rc;
		}
	}
	return scan_ref(ps, lin, j, to, at);
}

static int scan(struct nx_fp__pscan *ps, const unsigned char *lin, size_t from, size_t to,
		uint64_t at)
{
	static int avx2 = -1;

	if (avx2 < 0)
		avx2 = __builtin_cpu_supports("avx2");
	return ps->step == 4 && avx2 ? scan4_avx2(ps, lin, from, to, at)
				     : scan_ref(ps, lin, from, to, at);
}

int nx_fp__pscan_feed(struct nx_fp__pscan *ps, const unsigned char *buf, size_t len)
{
	int rc;

	while (len) {
		size_t n = len < FP_PIECE ? len : FP_PIECE, i = (size_t)(ps->pos % FP_RING);
		size_t k = FP_RING - i < n ? FP_RING - i : n;
		uint64_t lin0 = ps->pos - FP_HIST;   /* absolute offset of lin[0] (mod 2^64) */

		/* lin: the FP_HIST bytes before the piece, then the piece */
		if (ps->pos >= FP_HIST)
			ring_copy(ps, ps->lin, lin0, FP_HIST);
		else
			ring_copy(ps, ps->lin + FP_HIST - ps->pos, 0, (size_t)ps->pos);
		memcpy(ps->lin + FP_HIST, buf, n);
		memcpy(ps->ring + i, buf, k);
		memcpy(ps->ring, buf + k, n - k);
		if ((rc = scan(ps, ps->lin, (size_t)(ps->next - lin0), FP_HIST + n, lin0)) != 0)
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
