/*
 * fingerprint_chunk.c - a tensor's contents hashed whole (SHA-256) and cut
 * into content-defined chunks.
 *
 * A whole-tensor hash only finds a tensor copied as it was.  Cut in two
 * initializers and concatenated at run time, or stored inside a larger
 * tensor, a teacher layer is no tensor of its own.  Chunk boundaries are
 * chosen by the bytes (a gear rolling hash over the last 64 bytes hitting a
 * mask), not by offsets, so the same data is cut the same way wherever it
 * starts: a piece of a teacher tensor has the teacher's interior chunks.
 * Chunks that repeat a 1-8 byte pattern (zeros, a row of ones) are in every
 * model and are ignored.
 */
#include "fingerprint_int.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#define CHUNK_MIN 1024u                 /* bytes before a boundary may fall */
#define CHUNK_MASK ((1u << 11) - 1)     /* a boundary every ~2 KiB after that */
#define CHUNK_MAX (16u << 10)           /* a boundary at the latest here */
#define READ_CHUNK (64u << 10)

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

int fp_hash_begin(struct fp_hash *h, nx_fp_set *collect, const nx_fp_set *match, nx_error *err)
{
	pthread_once(&gear_once, gear_init);
	memset(h, 0, sizeof(*h));
	h->collect = collect;
	h->match = match;
	h->err = err;
	h->first_chunk = collect ? collect->nchunks : 0;
	h->h = 1469598103934665603ull;
	h->per4 = h->per8 = true;
	if (!(h->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(h->md, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(h->md);
		h->md = NULL;
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	}
	return 0;
}

static int chunk_cmp(const void *a, const void *b)
{
	const struct fp_chunk *x = a, *y = b;

	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	return x->len < y->len ? -1 : x->len > y->len;
}

static const struct fp_chunk *find_chunk(const nx_fp_set *s, uint64_t hash, uint32_t len)
{
	struct fp_chunk key = { hash, len, NULL, 0 };

	if (!s->chunks_sorted) {
		qsort(s->chunks, s->nchunks, sizeof(*s->chunks), chunk_cmp);
		((nx_fp_set *)s)->chunks_sorted = true;
	}
	return s->nchunks ? bsearch(&key, s->chunks, s->nchunks, sizeof(*s->chunks), chunk_cmp) :
			    NULL;
}

/* A student chunk cut on both sides by content: is it a teacher's? */
static void match_pending(struct fp_hash *h)
{
	const struct fp_chunk *c;

	if (!h->have_pending || h->pending_first || h->pending_flat)
		return;
	if ((c = find_chunk(h->match, h->pending_hash, h->pending_len))) {
		if (!h->matched)
			h->match_chunk = c;
		h->matched += h->pending_len;
	}
}

/* The chunk being read ends here. */
static int end_chunk(struct fp_hash *h)
{
	bool flat = h->per4 || h->per8;

	if (h->collect && !flat) {
		nx_fp_set *s = h->collect;

		if (s->nchunks >= NX_FP_CHUNKS_MAX)
			return nx_error_set(h->err, NX_ELIMIT, NULL, 0, -1,
					    "teacher tensors of more than %u chunks", NX_FP_CHUNKS_MAX);
		if (s->nchunks == s->capchunks) {
			size_t cap = s->capchunks ? 2 * s->capchunks : 1024;
			struct fp_chunk *c = realloc(s->chunks, cap * sizeof(*c));

			if (!c)
				return nx_error_set(h->err, NX_ENOMEM, NULL, 0, -1, "out of memory");
			s->chunks = c;
			s->capchunks = cap;
		}
		s->chunks[s->nchunks].hash = h->h;
		s->chunks[s->nchunks].len = h->len;
		s->chunks[s->nchunks].name = NULL;   /* fp_add names them */
		s->chunks[s->nchunks++].file = s->nfiles - 1;
		s->chunks_sorted = false;
	}
	if (h->match) {
		match_pending(h);
		h->have_pending = true;
		h->pending_first = h->nchunks == 0;
		h->pending_flat = flat;
		h->pending_hash = h->h;
		h->pending_len = h->len;
	}
	h->nchunks++;
	h->h = 1469598103934665603ull;
	h->len = 0;
	h->per4 = h->per8 = true;
	return 0;
}

int fp_hash_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct fp_hash *h = ctx;
	size_t i;
	int rc;

	EVP_DigestUpdate(h->md, buf, len);
	h->total += len;
	for (i = 0; i < len; i++) {
		unsigned char b = buf[i];

		h->gear = (h->gear << 1) + gear[b];
		h->h = (h->h ^ b) * 1099511628211ull;
		if (h->len >= 4)
			h->per4 &= h->ring[(h->len - 4) & 7] == b;
		if (h->len >= 8)
			h->per8 &= h->ring[h->len & 7] == b;
		h->ring[h->len & 7] = b;
		h->len++;
		if ((h->len >= CHUNK_MIN && !(h->gear & CHUNK_MASK)) || h->len >= CHUNK_MAX)
			if ((rc = end_chunk(h)) != 0)
				return rc;
	}
	return 0;
}

int fp_hash_range(struct fp_hash *h, int fd, uint64_t off, uint64_t len, const char *path,
		  nx_error *err)
{
	unsigned char *buf = malloc(READ_CHUNK);
	int rc = 0;

	if (!buf)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	while (!rc && len) {
		size_t n = len < READ_CHUNK ? (size_t)len : READ_CHUNK;
		ssize_t got = pread(fd, buf, n, (off_t)off);

		if (got <= 0)
			rc = nx_error_set(err, NX_EIO, path, 0, (long long)off,
					  "cannot read %s at byte %llu", path, (unsigned long long)off);
		else if (!(rc = fp_hash_feed(h, buf, (size_t)got))) {
			off += (uint64_t)got;
			len -= (uint64_t)got;
		}
	}
	free(buf);
	return rc;
}

int fp_hash_end(struct fp_hash *h, bool keep)
{
	int rc = 0;

	/* the last chunk is cut by the end of the tensor: kept for a teacher,
	 * not looked up for a student (its interior chunks are) */
	if (keep && h->len && h->collect)
		rc = end_chunk(h);
	else if (h->match)
		match_pending(h);
	if (!rc && !EVP_DigestFinal_ex(h->md, h->sha, NULL))
		rc = nx_error_set(h->err, NX_EINTERNAL, NULL, 0, -1, "SHA-256 failed");
	EVP_MD_CTX_free(h->md);
	h->md = NULL;
	/* a teacher tensor not recorded leaves no chunks naming it */
	if ((rc || !keep) && h->collect)
		h->collect->nchunks = h->first_chunk;
	return rc;
}
