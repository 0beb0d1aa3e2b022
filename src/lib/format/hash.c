/*
 * hash.c - SHA-256 over files and buffers, and copy-while-hashing.
 *
 * Reads are large preads into page-aligned buffers (read_buf_alloc), so
 * SHA-NI, not syscalls or the kernel's copy, sets the pace.  nx_copy_hash
 * overlaps the two halves of the work: the calling thread preads a chunk
 * into a ring slot and pwrites it while a hash thread digests the same
 * slot; a slot is refilled only after both are done with it.
 * The ONNX writer (onnx_write.c) copies its weight ranges the same way,
 * through nx_hash__copy_range (hash_int.h).
 */
#include "hash_int.h"
#include "nexus/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#define NX_HASH_CHUNK (1u << 18)   /* bytes per pread when hashing */
#define NX_COPY_INLINE_MAX (1u << 19) /* smaller copies are not worth the ring's thread */
#define NX_COPY_CHUNK (1u << 20)   /* bytes per copy-ring slot: one pread, one pwrite */
#define NX_HASH_RING 8             /* slots in the copy ring: 8 MiB in flight */
#define NX_FOLLOW_WINDOW (8u << 20)  /* bytes nx_hash_follow hashes between looks at the writer */

/*
 * A buffer to pread into, page-aligned.  The kernel's copy of a read into
 * user memory is much slower when the buffer is not 64-byte aligned: on the
 * AMD EPYC bench machine, pread+SHA-256 of a 1.2 GB file in the page cache
 * took 0.85-0.88 s into buffers at offsets 0, 64, 512 or 2048 from a page
 * but 1.21-1.25 s at offset 16, which is where malloc puts a large block
 * (measured 2026-12-06 for 64 KiB-1 MiB buffers; `openssl dgst` 1.00 s).
 * Free with free().
 */
static void *read_buf_alloc(size_t len)
{
	void *p = NULL;

	return posix_memalign(&p, 4096, len ? len : 1) == 0 ? p : NULL;
}

/* Read exactly len bytes at off, or fail naming the path. */
static int pread_full(int fd, void *buf, size_t len, uint64_t off,
		      const char *path, nx_error *err)
{
	ssize_t got = nx_pread_full(fd, buf, len, off);

	if (got < 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot read %s",
				      path ? path : "file");
	if ((size_t)got < len)
		return nx_error_set(err, NX_EFORMAT, path, 0, (long long)(off + (uint64_t)got),
				    "%s ended after %llu bytes, expected more; "
				    "was it changed while being read?",
				    path ? path : "file",
				    (unsigned long long)(off + (uint64_t)got));
	return 0;
}

int nx_hash__write_error(nx_error *err, int e, const char *dst_name)
{
	const char *name = dst_name ? dst_name : "the copy";

	if (e == ENOSPC || e == EDQUOT)
		return nx_error_set(err, NX_EIO, dst_name, 0, -1, "cannot write %s: %s; free "
				    "space on its filesystem and retry", name, strerror(e));
	return nx_error_errno(err, NX_EIO, e, dst_name, "cannot write %s", name);
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off,
		       const char *dst_name, nx_error *err)
{
	size_t put = 0;

	while (put < len) {
		ssize_t n = pwrite(fd, (const char *)buf + put, len - put, (off_t)(off + put));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return nx_hash__write_error(err, n < 0 ? errno : ENOSPC, dst_name);
		put += (size_t)n;
	}
	return 0;
}

int nx_sha256_buf(unsigned char out[NX_SHA256_LEN], const void *buf, size_t len)
{
	unsigned int n = 0;

	if (!EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL) || n != NX_SHA256_LEN)
		return NX_EINTERNAL;
	return 0;
}

int nx_hash__read_range(int fd, const char *path, uint64_t off, uint64_t len,
	       int (*fn)(void *ctx, const unsigned char *buf, size_t n), void *ctx,
	       nx_error *err)
{
	unsigned char *buf = read_buf_alloc(NX_HASH_CHUNK);
	int rc = 0;

	if (!buf)
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory reading %s",
				    path ? path : "file");
	while (!rc && len) {
		size_t n = len < NX_HASH_CHUNK ? (size_t)len : NX_HASH_CHUNK;

		if ((rc = pread_full(fd, buf, n, off, path, err)) == 0)
			rc = fn(ctx, buf, n);
		off += n;
		len -= n;
	}
	free(buf);
	return rc;
}

static int digest_update(void *ctx, const unsigned char *buf, size_t n)
{
	EVP_DigestUpdate(ctx, buf, n);
	return 0;
}

int nx_sha256_range(unsigned char out[NX_SHA256_LEN], int fd, uint64_t offset,
		    uint64_t len, const char *path, nx_error *err)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[NX_SHA256_LEN];
	int rc;

	if (!ctx)
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory hashing %s",
				    path ? path : "file");
	if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = nx_error_set(err, NX_EINTERNAL, path, 0, -1, "sha-256 unavailable in openssl");
		goto out;
	}
	if (offset == 0 && len > NX_HASH_CHUNK)
		posix_fadvise(fd, 0, (off_t)len, POSIX_FADV_SEQUENTIAL);
	rc = nx_hash__read_range(fd, path, offset, len, digest_update, ctx, err);
	if (!rc && !EVP_DigestFinal_ex(ctx, md, NULL))
		rc = nx_error_set(err, NX_EINTERNAL, path, 0, -1, "sha-256 failed in openssl");
	if (!rc)
		memcpy(out, md, NX_SHA256_LEN);
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

int nx_sha256_fd(unsigned char out[NX_SHA256_LEN], int fd, uint64_t size,
		 const char *path, nx_error *err)
{
	return nx_sha256_range(out, fd, 0, size, path, err);
}

/* The ring shared by the copying thread (producer) and the hash thread. */
struct ring {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned char *slot[NX_HASH_RING];
	size_t len[NX_HASH_RING];
	uint64_t filled;   /* chunks read so far */
	uint64_t hashed;   /* chunks digested so far */
	bool eof;          /* no more chunks will be filled */
	bool stop;         /* producer failed: hash thread exits at once */
	EVP_MD_CTX *ctx;
};

static void *hash_thread(void *arg)
{
	struct ring *r = arg;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		unsigned i;

		while (!r->stop && r->hashed == r->filled && !r->eof)
			pthread_cond_wait(&r->cond, &r->lock);
		if (r->stop || r->hashed == r->filled)
			break;
		i = (unsigned)(r->hashed % NX_HASH_RING);
		pthread_mutex_unlock(&r->lock);
		EVP_DigestUpdate(r->ctx, r->slot[i], r->len[i]);
		pthread_mutex_lock(&r->lock);
		r->hashed++;
		pthread_cond_broadcast(&r->cond);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/* Small copies are not worth a thread. */
static int copy_hash_inline(EVP_MD_CTX *ctx, int dst_fd, int src_fd, uint64_t size,
			    const char *path, const char *dst_path, nx_error *err)
{
	unsigned char *buf = read_buf_alloc((size_t)size);
	int rc;

	if (!buf)
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory copying %s",
				    path ? path : "file");
	rc = pread_full(src_fd, buf, (size_t)size, 0, path, err);
	if (!rc)
		rc = pwrite_full(dst_fd, buf, (size_t)size, 0, dst_path, err);
	if (!rc)
		EVP_DigestUpdate(ctx, buf, (size_t)size);
	free(buf);
	return rc;
}

int nx_hash__copy_range(EVP_MD_CTX *ctx, int dst_fd, uint64_t dst_off, int src_fd,
		    uint64_t src_off, uint64_t len, const char *src_path, const char *dst_name,
		    nx_error *err)
{
	struct ring r;
	pthread_t tid;
	uint64_t done = 0, k;
	int rc = 0, i;

	memset(&r, 0, sizeof(r));
	r.ctx = ctx;
	for (i = 0; i < NX_HASH_RING; i++) {
		r.slot[i] = read_buf_alloc(NX_COPY_CHUNK);
		if (!r.slot[i]) {
			rc = nx_error_set(err, NX_ENOMEM, src_path, 0, -1,
					  "out of memory copying %s", src_path ? src_path : "file");
			goto out_free;
		}
	}
	if ((rc = pthread_mutex_init(&r.lock, NULL))) {
		rc = nx_error_errno(err, NX_EIO, rc, src_path, "cannot make the hash thread's lock");
		goto out_free;
	}
	if ((rc = pthread_cond_init(&r.cond, NULL))) {
		pthread_mutex_destroy(&r.lock);
		rc = nx_error_errno(err, NX_EIO, rc, src_path,
				    "cannot make the hash thread's condition");
		goto out_free;
	}
	if (pthread_create(&tid, NULL, hash_thread, &r) != 0) {
		rc = nx_error_set(err, NX_EINTERNAL, src_path, 0, -1,
				  "cannot start the hash thread for %s", src_path ? src_path : "file");
		goto out_sync;
	}
	posix_fadvise(src_fd, (off_t)src_off, (off_t)len, POSIX_FADV_SEQUENTIAL);
	for (k = 0; done < len; k++) {
		size_t n = len - done < NX_COPY_CHUNK ? (size_t)(len - done) : NX_COPY_CHUNK;
		unsigned s = (unsigned)(k % NX_HASH_RING);

		/* Wait until the hash thread has released this slot. */
		pthread_mutex_lock(&r.lock);
		while (k - r.hashed >= NX_HASH_RING)
			pthread_cond_wait(&r.cond, &r.lock);
		pthread_mutex_unlock(&r.lock);

		rc = pread_full(src_fd, r.slot[s], n, src_off + done, src_path, err);
		if (rc)
			break;
		pthread_mutex_lock(&r.lock);
		r.len[s] = n;
		r.filled = k + 1;
		pthread_cond_broadcast(&r.cond);
		pthread_mutex_unlock(&r.lock);
		/* The hash thread only reads the slot, so writing it now is safe. */
		rc = pwrite_full(dst_fd, r.slot[s], n, dst_off + done, dst_name, err);
		if (rc)
			break;
		done += n;
	}
	/* On an error the digest is abandoned, so the thread may stop early. */
	pthread_mutex_lock(&r.lock);
	r.eof = true;
	r.stop = rc != 0;
	pthread_cond_broadcast(&r.cond);
	pthread_mutex_unlock(&r.lock);
	pthread_join(tid, NULL);
out_sync:
	pthread_cond_destroy(&r.cond);
	pthread_mutex_destroy(&r.lock);
out_free:
	for (i = 0; i < NX_HASH_RING; i++)
		free(r.slot[i]);
	return rc;
}

struct nx_hash_follow {
	pthread_t tid;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int fd;
	const char *name;
	uint64_t written;   /* final bytes, set by the writer */
	uint64_t hashed;    /* bytes digested, by the thread */
	bool ended;         /* written is the whole file */
	bool stop;          /* cancel */
	int read_errno;     /* the thread's read failed (-1: file shorter) */
	EVP_MD_CTX *ctx;
	unsigned char *buf; /* NX_HASH_CHUNK bytes */
};

/*
 * Hash [hashed, to) -- at most NX_FOLLOW_WINDOW -- through one page-aligned
 * buffer (pread of NX_HASH_CHUNK at a time).  Not a mapping: on a file just
 * written it is no faster (0.85 s for 1.2 GB either way, 2026-12-06), it
 * faults once per small folio the writer left, and its 8 MiB windows
 * counted in the build's peak RSS (21.8 MiB against 13.9).  A short read
 * means the file shrank: the file lives in the caller's private staging
 * directory, so only a process of the same user could do that (and that
 * one could as well kill the build).
 */
static void follow_window(struct nx_hash_follow *h, uint64_t to)
{
	uint64_t end = to;

	if (end - h->hashed > NX_FOLLOW_WINDOW)
		end = h->hashed + NX_FOLLOW_WINDOW;
	while (h->hashed < end) {
		size_t want = end - h->hashed < NX_HASH_CHUNK ? (size_t)(end - h->hashed)
							      : NX_HASH_CHUNK;
		ssize_t n = pread(h->fd, h->buf, want, (off_t)h->hashed);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			h->read_errno = n < 0 ? errno : -1;
			return;
		}
		EVP_DigestUpdate(h->ctx, h->buf, (size_t)n);
		h->hashed += (uint64_t)n;
	}
}

static void *follow_thread(void *arg)
{
	struct nx_hash_follow *h = arg;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		uint64_t to;

		while (!h->stop && h->hashed == h->written && !h->ended)
			pthread_cond_wait(&h->cond, &h->lock);
		if (h->stop || h->hashed == h->written)
			break;
		to = h->written;
		pthread_mutex_unlock(&h->lock);
		while (h->hashed < to && !h->read_errno)
			follow_window(h, to);
		pthread_mutex_lock(&h->lock);
		if (h->read_errno)
			break;
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

static void follow_free(struct nx_hash_follow *h)
{
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	EVP_MD_CTX_free(h->ctx);
	free(h->buf);
	if (h->fd >= 0)
		close(h->fd);
	free(h);
}

int nx_hash_follow_start(nx_hash_follow **out, int fd, const char *name, nx_error *err)
{
	struct nx_hash_follow *h = calloc(1, sizeof(*h));
	int rc;

	if (!h)
		return nx_error_oom(err, name);
	if ((rc = pthread_mutex_init(&h->lock, NULL))) {
		free(h);
		return nx_error_errno(err, NX_EIO, rc, name, "cannot make the hash thread's lock");
	}
	if ((rc = pthread_cond_init(&h->cond, NULL))) {
		pthread_mutex_destroy(&h->lock);
		free(h);
		return nx_error_errno(err, NX_EIO, rc, name, "cannot make the hash thread's condition");
	}
	h->name = name;
	h->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	h->ctx = EVP_MD_CTX_new();
	h->buf = read_buf_alloc(NX_HASH_CHUNK);
	if (h->fd < 0 || !h->ctx || !h->buf || !EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) ||
	    pthread_create(&h->tid, NULL, follow_thread, h) != 0) {
		follow_free(h);
		return nx_error_set(err, NX_EINTERNAL, name, 0, -1,
				    "cannot start hashing %s", name ? name : "file");
	}
	*out = h;
	return 0;
}

void nx_hash_follow_advance(nx_hash_follow *h, uint64_t written)
{
	pthread_mutex_lock(&h->lock);
	if (written > h->written) {
		h->written = written;
		pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
}

static void follow_join(struct nx_hash_follow *h, bool stop)
{
	pthread_mutex_lock(&h->lock);
	h->ended = true;
	h->stop = stop;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	pthread_join(h->tid, NULL);
}

int nx_hash_follow_finish(nx_hash_follow *h, uint64_t size, unsigned char out[NX_SHA256_LEN],
			  nx_error *err)
{
	const char *name = h->name ? h->name : "file";
	int rc = 0;

	nx_hash_follow_advance(h, size);
	follow_join(h, false);
	if (h->read_errno > 0)
		rc = nx_error_errno(err, NX_EIO, h->read_errno, h->name, "cannot read %s to hash it",
				    name);
	else if (h->read_errno || h->hashed != size)
		rc = nx_error_set(err, NX_EFORMAT, h->name, 0, (long long)h->hashed,
				  "%s ended after %llu bytes, expected %llu; was it changed while "
				  "being written?", name, (unsigned long long)h->hashed,
				  (unsigned long long)size);
	else if (!EVP_DigestFinal_ex(h->ctx, out, NULL))
		rc = nx_error_set(err, NX_EINTERNAL, h->name, 0, -1, "sha-256 failed in openssl");
	follow_free(h);
	return rc;
}

void nx_hash_follow_cancel(nx_hash_follow *h)
{
	if (!h)
		return;
	follow_join(h, true);
	follow_free(h);
}

int nx_hash__copy_range_plain(int dst_fd, uint64_t dst_off, int src_fd, uint64_t src_off, uint64_t len,
		     const char *src_path, const char *dst_name, nx_error *err)
{
	loff_t in = (loff_t)src_off, out = (loff_t)dst_off;
	unsigned char *buf = NULL;
	int rc = 0;

	/* as cp does: a larger readahead window for the cold read */
	(void)posix_fadvise(src_fd, (off_t)src_off, (off_t)len, POSIX_FADV_SEQUENTIAL);
	while (len) {
		size_t n = len < (1u << 30) ? (size_t)len : (1u << 30);
		ssize_t got = copy_file_range(src_fd, &in, dst_fd, &out, n, 0);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL ||
				errno == EOPNOTSUPP))
			break;
		if (got < 0 && (errno == ENOSPC || errno == EDQUOT))
			return nx_hash__write_error(err, errno, dst_name);
		if (got < 0)
			return nx_error_errno(err, NX_EIO, errno, dst_name, "cannot copy %s into %s",
					      src_path ? src_path : "file",
					      dst_name ? dst_name : "the copy");
		if (got == 0)
			return nx_error_set(err, NX_EFORMAT, src_path, 0, (long long)in,
					    "%s ended after %llu bytes, expected more; was it "
					    "changed while being read?", src_path ? src_path : "file",
					    (unsigned long long)in);
		len -= (uint64_t)got;
	}
	if (len && !(buf = read_buf_alloc(NX_COPY_CHUNK)))
		return nx_error_oom(err, src_path);
	while (len && !rc) {
		size_t n = len < NX_COPY_CHUNK ? (size_t)len : NX_COPY_CHUNK;

		rc = pread_full(src_fd, buf, n, (uint64_t)in, src_path, err);
		if (!rc)
			rc = pwrite_full(dst_fd, buf, n, (uint64_t)out, dst_name, err);
		in += (loff_t)n;
		out += (loff_t)n;
		len -= n;
	}
	free(buf);
	return rc;
}

int nx_copy_hash(unsigned char out[NX_SHA256_LEN], int dst_fd, int src_fd,
		 uint64_t size, const char *src_path, const char *dst_path, nx_error *err)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char md[NX_SHA256_LEN];
	int rc;

	if (!ctx)
		return nx_error_oom(err, src_path);
	if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = nx_error_set(err, NX_EINTERNAL, src_path, 0, -1,
				  "sha-256 unavailable in openssl");
		goto out;
	}
	if (size <= NX_COPY_INLINE_MAX)
		rc = copy_hash_inline(ctx, dst_fd, src_fd, size, src_path, dst_path, err);
	else
		rc = nx_hash__copy_range(ctx, dst_fd, 0, src_fd, 0, size, src_path, dst_path, err);
	if (rc)
		goto out;
	if (!EVP_DigestFinal_ex(ctx, md, NULL)) {
		rc = nx_error_set(err, NX_EINTERNAL, src_path, 0, -1, "sha-256 failed in openssl");
		goto out;
	}
	memcpy(out, md, NX_SHA256_LEN);
out:
	EVP_MD_CTX_free(ctx);
	return rc;
}

void nx_hex(char out[2 * NX_SHA256_LEN + 1], const unsigned char in[NX_SHA256_LEN])
{
	static const char digits[] = "0123456789abcdef";
	int i;

	for (i = 0; i < NX_SHA256_LEN; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * NX_SHA256_LEN] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int nx_unhex(unsigned char out[NX_SHA256_LEN], const char *hex)
{
	unsigned char tmp[NX_SHA256_LEN];
	int i;

	if (!hex)
		return NX_EFORMAT;
	for (i = 0; i < NX_SHA256_LEN; i++) {
		int hi, lo;

		if (!hex[2 * i] || !hex[2 * i + 1])
			return NX_EFORMAT;
		hi = hexval(hex[2 * i]);
		lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return NX_EFORMAT;
		tmp[i] = (unsigned char)(hi << 4 | lo);
	}
	if (hex[2 * NX_SHA256_LEN] != '\0')
		return NX_EFORMAT;
	memcpy(out, tmp, NX_SHA256_LEN);
	return 0;
}
