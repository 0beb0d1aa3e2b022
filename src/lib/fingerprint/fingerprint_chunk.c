/*
 * fingerprint_chunk.c - a tensor's contents cut into content-defined chunks
 * and hashed whole.
 *
 * A whole-tensor hash only finds a tensor copied as it was.  Cut in two
 * initializers and concatenated at run time, or stored inside a larger
 * tensor, a teacher layer is no tensor of its own.  Chunk boundaries are
 * chosen by the bytes (a gear rolling hash over the last 64 bytes hitting a
 * mask), not by offsets, so the same data is cut the same way wherever it
 * starts: a piece of a teacher tensor has the teacher's interior chunks.
 * Per byte only the rolling hash runs; a chunk is hashed, 32 bytes a
 * step, when it ends.
 * Chunks that repeat a 1-8 byte pattern (zeros, a row of ones) are in every
 * model and are ignored.
 *
 * The hashes are 64-bit and not cryptographic, and need not be: a
 * collision can only make an unrelated tensor look like a teacher's (a
 * false alarm, never a miss), and nobody hides teacher weights by making
 * the student look more like the teacher.  A 64-bit hash per chunk costs a
 * fraction of SHA-256, which made fingerprinting a multi-GB teacher twice
 * as slow.
 */
#include "fingerprint_int.h"
#include "lib/format/hash_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>


#define GEAR_WINDOW 64u                 /* bytes the boundary hash depends on */

static uint64_t gear[256];
static pthread_once_t gear_once = PTHREAD_ONCE_INIT;

/* Fixed pseudo-random table (splitmix64): boundaries must not change
 * between the teacher's run and the student's. */
static void gear_init(void)
{
	uint64_t x = 0x6e657875735f6670ull;
	int i;

	for (i = 0; i < 256; i++) {
		uint64_t z = (x += 0x9e3779b97f4a7c15ull);

		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
		z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
		gear[i] = z ^ (z >> 31);
	}
}

const uint64_t *nx_fp__gear(void)
{
	pthread_once(&gear_once, gear_init);
	return gear;
}

int nx_fp__hash_begin(struct fp_hash *h, nx_fp_set *collect, const nx_fp_set *match,
		  nx_error *err)
{
	pthread_once(&gear_once, gear_init);
	memset(h, 0, sizeof(*h));
	h->collect = collect;
	h->match = match;
	h->err = err;
	h->first_chunk = collect ? collect->nchunks : 0;
	if (!(h->buf = malloc(FP_CHUNK_MAX)))
		return nx_error_oom(err, NULL);
	return 0;
}

static int chunk_cmp(const void *a, const void *b)
{
	const struct fp_chunk *x = a, *y = b;

	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return x->len < y->len ? -1 : x->len > y->len;
}

/*
 * A student chunk is looked up in every teacher chunk (a million for a
 * 1 GB teacher with its casts): a binary search there misses the cache
 * at every step, and almost every student chunk is in no teacher.  So a
 * bitmap of 16 bits per teacher chunk, one bit set for each by its hash's
 * top bits, answers "not there" for all but ~1/16 of them with one read.
 * Without memory for it every lookup searches.
 */
static void chunk_filter(nx_fp_set *s)
{
	unsigned bits = 6;   /* 2^bits bits, at least 64 */
	size_t k;

	while (bits < 36 && ((size_t)1 << bits) < 16 * s->nchunks)
		bits++;
	free(s->chunk_bits);
	if (!(s->chunk_bits = calloc((size_t)1 << (bits - 6), sizeof(uint64_t))))
		return;
	s->chunk_shift = 64 - bits;
	for (k = 0; k < s->nchunks; k++) {
		uint64_t b = s->chunks[k].hash >> s->chunk_shift;

		s->chunk_bits[b >> 6] |= 1ull << (b & 63);
	}
}

static const struct fp_chunk *find_chunk(const nx_fp_set *s, uint64_t hash, uint32_t len)
{
	struct fp_chunk key = { hash, len, NULL, 0 };
	uint64_t b;

	if (!s->nchunks)
		return NULL;
	if (!s->chunks_sorted) {
		qsort(s->chunks, s->nchunks, sizeof(*s->chunks), chunk_cmp);
		chunk_filter((nx_fp_set *)s);
		((nx_fp_set *)s)->chunks_sorted = true;
	}
	b = hash >> s->chunk_shift;
	if (s->chunk_bits && !(s->chunk_bits[b >> 6] >> (b & 63) & 1))
		return NULL;
	return bsearch(&key, s->chunks, s->nchunks, sizeof(*s->chunks), chunk_cmp);
}

static uint64_t rotl(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/*
 * 64-bit hash of a chunk (not cryptographic: a teacher chunk found is a
 * lead the caller reports with its bytes, and an adversary gains nothing
 * from a collision but a false alarm).  Four independent lanes of 8 bytes
 * take 32 bytes a step, as xxh64 does, so the multiplies overlap.
 */
#define P1 0x9e3779b185ebca87ull    /* odd 64-bit mixing constants */
#define P2 0xc2b2ae3d27d4eb4full

static uint64_t lane(uint64_t v, const unsigned char *p)
{
	uint64_t w;

	memcpy(&w, p, 8);
	return rotl(v + w * P2, 31) * P1;
}

static uint64_t chunk_hash(const unsigned char *p, size_t n)
{
	uint64_t v0 = P1 + P2, v1 = P2, v2 = 0, v3 = 0 - P1, h, w;
	size_t i = 0;

	for (; i + 32 <= n; i += 32) {
		v0 = lane(v0, p + i);
		v1 = lane(v1, p + i + 8);
		v2 = lane(v2, p + i + 16);
		v3 = lane(v3, p + i + 24);
	}
	h = rotl(v0, 1) + rotl(v1, 7) + rotl(v2, 12) + rotl(v3, 18) + n;
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, p + i, 8);
		h = rotl(h ^ rotl(w * P2, 31) * P1, 27) * P1 + 0x85ebca77c2b2ae63ull;
	}
	for (; i < n; i++)
		h = rotl(h ^ p[i] * 0x165667b19e3779f9ull, 11) * P1;
	h ^= h >> 33;
	h *= P2;
	return h ^ (h >> 29);
}

/*
 * A chunk ends: the bytes under way in h->buf (h->len of them) followed by
 * tail[0..n).  by_content: its end was chosen by the bytes, not by the end
 * of the tensor.
 */
static int end_chunk(struct fp_hash *h, const unsigned char *tail, size_t n, bool by_content)
{
	const unsigned char *c = tail;
	uint64_t hash;
	bool flat;

	if (h->len) {
		if (n)
			memcpy(h->buf + h->len, tail, n);
		c = h->buf;
		n += h->len;
		h->len = 0;
	}
	/* a repeated 1-8 byte pattern (zeros, a row of ones) is in every model */
	flat = n <= 8 || !memcmp(c, c + 4, n - 4) || !memcmp(c, c + 8, n - 8);
	hash = chunk_hash(c, n);
	h->varied |= !flat;
	h->whole = rotl(h->whole ^ (hash + n * P2), 29) * P1;
	if (h->collect && !flat) {
		nx_fp_set *s = h->collect;

		if (s->nchunks >= NX_FP_CHUNKS_MAX)
			return nx_error_set(h->err, NX_ELIMIT, NULL, 0, -1,
					    "the teacher files hold more than %u chunks (~48 GB of "
					    "tensors); fingerprint against fewer of them at a time",
					    NX_FP_CHUNKS_MAX);
		if (NX_ARRAY_PUSH(s->chunks, s->capchunks, s->nchunks))
			return nx_error_oom(h->err, NULL);
		s->chunks[s->nchunks].hash = hash;
		s->chunks[s->nchunks].len = (uint32_t)n;
		s->chunks[s->nchunks].name = NULL;   /* nx_fp__add names them */
		s->chunks[s->nchunks++].file = s->nfiles - 1;
		s->chunks_sorted = false;
	}
	/* A student chunk is a teacher's only if cut by content on both sides:
	 * not the first (it starts where the tensor does), not the last. */
	if (h->match && h->nchunks && by_content && !flat) {
		const struct fp_chunk *t = find_chunk(h->match, hash, (uint32_t)n);

		if (t) {
			if (!h->matched)
				h->match_chunk = t;
			h->matched += n;
		}
	}
	h->nchunks++;
	return 0;
}

/*
 * Roll the bytes of the chunk under way (n of them so far) from buf[*i]
 * on, up to its boundary or the end of buf.  Returns true at a boundary
 * (after byte *i - 1).  The rule is the one of the last loop, one byte at
 * a time: a boundary after the byte that makes the chunk n >= FP_CHUNK_MIN
 * bytes long when the boundary hash hits the mask or n reaches FP_CHUNK_MAX.
 *
 * The boundary hash g = (g << 1) + gear[byte] has shifted a byte out
 * after GEAR_WINDOW steps, so it depends on the last GEAR_WINDOW bytes
 * only; the first FP_CHUNK_MIN - GEAR_WINDOW bytes of a chunk are skipped,
 * not rolled, and the next GEAR_WINDOW - 1 only warm g up.  Then four
 * bytes a step: g after each of them is g << k plus sums of the four
 * gear values, so the chain from step to step is one shift and one add
 * (one byte a step would be one lea per byte, ~3 cycles a byte here).
 */
static bool roll(uint64_t *gp, size_t *np, const unsigned char *buf, size_t *ip, size_t len)
{
	uint64_t g = *gp;
	size_t i = *ip, n = *np;
	bool cut = false;

	if (n < FP_CHUNK_MIN - GEAR_WINDOW) {
		size_t skip = FP_CHUNK_MIN - GEAR_WINDOW - n;

		if (skip > len - i)
			skip = len - i;
		i += skip;
		n += skip;
	}
	for (; i < len && n < FP_CHUNK_MIN - 1; i++, n++)
		g = (g << 1) + gear[buf[i]];
	/* n >= FP_CHUNK_MIN - 1: every byte from here may end the chunk */
	while (n >= FP_CHUNK_MIN - 1 && i + 4 <= len && n + 4 < FP_CHUNK_MAX) {
		uint64_t a = gear[buf[i]], b = gear[buf[i + 1]], c = gear[buf[i + 2]];
		uint64_t d = gear[buf[i + 3]];
		uint64_t s2 = (a << 1) + b, s3 = (s2 << 1) + c, s4 = (s3 << 1) + d;
		uint64_t g1 = (g << 1) + a, g2 = (g << 2) + s2, g3 = (g << 3) + s3;
		uint64_t g4 = (g << 4) + s4;

		g = g4;
		if (((g1 & FP_CHUNK_MASK) == 0) | ((g2 & FP_CHUNK_MASK) == 0) |
		    ((g3 & FP_CHUNK_MASK) == 0) | ((g4 & FP_CHUNK_MASK) == 0)) {
			unsigned k = (g1 & FP_CHUNK_MASK) == 0 ? 1 : (g2 & FP_CHUNK_MASK) == 0 ? 2 :
				     (g3 & FP_CHUNK_MASK) == 0 ? 3 : 4;

			*ip = i + k;
			*np = n + k;
			*gp = g;   /* not g after byte k: a new chunk warms g up anew */
			return true;
		}
		i += 4;
		n += 4;
	}
	while (n >= FP_CHUNK_MIN - 1 && i < len) {
		g = (g << 1) + gear[buf[i++]];
		if (!(g & FP_CHUNK_MASK) || ++n >= FP_CHUNK_MAX) {
			cut = true;
			break;
		}
	}
	*gp = g;
	*ip = i;
	*np = n;
	return cut;
}

/* Cut buf into chunks (the one under way continues from the last feed). */
int nx_fp__hash_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct fp_hash *h = ctx;
	size_t i = 0, start = 0, n = h->len;   /* n: bytes of the chunk under way */
	int rc;

	if (h->collect && h->total < FP_PATTERN_MAX)
		memcpy(h->head + h->total, buf,
		       len < FP_PATTERN_MAX - h->total ? len : FP_PATTERN_MAX - h->total);
	h->total += len;
	if (h->vf && (rc = nx_fp__vfeed(h->vf, buf, len)) != 0)
		return rc;
	if (h->ps && (rc = nx_fp__pscan_feed(h->ps, buf, len)) != 0)
		return rc;
	if (h->pl)
		nx_fp__pool_feed(h->pl, buf, len);
	while (i < len) {
		if (!roll(&h->gear, &n, buf, &i, len))
			continue;
		if ((rc = end_chunk(h, buf + start, i - start, true)) != 0)
			return rc;
		start = i;
		n = 0;
	}
	if (len > start)
		memcpy(h->buf + h->len, buf + start, len - start);
	h->len = (uint32_t)n;
	return 0;
}

int nx_fp__hash_end(struct fp_hash *h, bool keep)
{
	int rc = 0;

	/* the last chunk is cut by the end of the tensor: recorded for a
	 * teacher, part of whole, never looked up for a student */
	if (h->len && (keep || !h->collect)) {
		nx_fp_set *collect = h->collect;

		h->collect = keep ? collect : NULL;
		rc = end_chunk(h, NULL, 0, false);
		h->collect = collect;
	}
	free(h->buf);
	h->buf = NULL;
	/* a teacher tensor not recorded leaves no chunks naming it */
	if ((rc || !keep) && h->collect)
		h->collect->nchunks = h->first_chunk;
	return rc;
}

int nx_fp__add(nx_fp_set *s, const char *name, uint64_t whole, uint64_t bytes, nx_error *err)
{
	struct fp_entry *e;

	if (s->n >= NX_FP_TENSORS_MAX)
		return nx_error_set(err, NX_ELIMIT, s->files[s->nfiles - 1], 0, -1,
				    "more than %u teacher tensors", NX_FP_TENSORS_MAX);
	if (NX_ARRAY_PUSH(s->e, s->cap, s->n))
		return nx_error_oom(err, NULL);
	e = &s->e[s->n];
	if (!(e->name = strdup(name ? name : "")))
		return nx_error_oom(err, NULL);
	e->whole = whole;
	e->bytes = bytes;
	e->file = s->nfiles - 1;
	s->n++;
	s->sorted = false;
	return 0;
}
