/*
 * sink.c - a blob streamed into a staged file: written as it arrives, its
 * SHA-256 taken and its size capped.
 *
 * libcurl hands a body over in pieces of at most 16 KiB
 * (CURL_MAX_WRITE_SIZE, fixed when libcurl is built): written one by one,
 * a 1.2 GB model was 76,000 pwrite calls and as many wake-ups of the
 * hashing thread, and the pull took 1.6x as long as oras's.  The sink
 * gathers them into SINK_BUF bytes and writes those at once.
 *
 * For a large blob the hashing runs on a second thread that reads the file
 * back behind the writer (from the page cache), so receiving and writing
 * (the libcurl thread) overlap with SHA-256 (this thread) instead of
 * taking turns: on a 1.2 GB model that was a second of wall time.  What is
 * hashed is what the file holds, not what the network buffer held.  The
 * same thread starts the disk writeback of each hashed window
 * (sync_file_range), so the stage's fsync at seal finds little left to
 * write; durability is still the seal's fsync, this only starts it early.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/fs.h"
#include "oci_int.h"

#define FOLLOW_MIN (8u << 20)     /* smaller blobs are hashed inline */
#define FOLLOW_BUF (1u << 20)     /* bytes read back at a time */
#define FOLLOW_FLUSH (16u << 20)  /* writeback started every this many bytes */
#define SINK_BUF (1u << 20)       /* bytes gathered before one write */

struct oci_follow {
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int fd;
	EVP_MD_CTX *md;
	char *buf;
	uint64_t ready;   /* bytes the writer has written (under mu) */
	unsigned gen;     /* bumped when the writer starts the blob over (under mu) */
	bool done;        /* the writer is finished (under mu) */
	int failed;       /* errno of a failed read back; EIO: it came short (under mu) */
	bool writeback;   /* start the disk writeback as it goes */
};

/* Hash [at, upto) of the file; 0, or the errno of what failed (EIO: the
 * file was shorter than what was written to it). */
static int hash_range(struct oci_follow *f, uint64_t at, uint64_t upto)
{
	ssize_t got;

	while (at < upto) {
		size_t n = upto - at < FOLLOW_BUF ? (size_t)(upto - at) : FOLLOW_BUF;

		got = nx_pread_full(f->fd, f->buf, n, at);
		if (got < 0)
			return errno ? errno : EIO;
		if ((size_t)got != n || !EVP_DigestUpdate(f->md, f->buf, n))
			return EIO;
		at += n;
	}
	return 0;
}

static void *follow_main(void *arg)
{
	struct oci_follow *f = arg;
	uint64_t at = 0, flushed = 0, upto;
	unsigned gen = 0;
	int bad;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		while (f->gen == gen && f->ready == at && !f->done)
			pthread_cond_wait(&f->cv, &f->mu);
		if (f->gen != gen) {
			/* the server ignored a Range: the file starts over */
			gen = f->gen;
			at = flushed = 0;
			if (!EVP_DigestInit_ex(f->md, EVP_sha256(), NULL)) {
				f->failed = ENOMEM;
				break;
			}
			continue;
		}
		if (f->ready == at) {
			/* done, and every byte hashed: the tail to the disk too */
			if (f->writeback && at > flushed)
				(void)sync_file_range(f->fd, (off_t)flushed, (off_t)(at - flushed),
						      SYNC_FILE_RANGE_WRITE);
			break;
		}
		upto = f->ready;
		pthread_mutex_unlock(&f->mu);
		bad = hash_range(f, at, upto);
		if (!bad && f->writeback && upto - flushed >= FOLLOW_FLUSH) {
			/* advisory: the seal's fsync decides */
			(void)sync_file_range(f->fd, (off_t)flushed, (off_t)(upto - flushed),
					      SYNC_FILE_RANGE_WRITE);
			flushed = upto;
		}
		pthread_mutex_lock(&f->mu);
		if (f->gen != gen)
			continue;   /* what was read may be the new start: done again */
		if (bad) {
			f->failed = bad;
			break;
		}
		at = upto;
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

int nx_oci__sink_init(struct oci_sink *s, int fd, uint64_t cap, bool writeback, nx_error *err)
{
	struct oci_follow *f;

	*s = (struct oci_sink){ .fd = fd, .cap = cap,
				.buf_cap = cap < SINK_BUF ? (size_t)cap : SINK_BUF };
	if (!(s->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) ||
	    (s->buf_cap && !(s->buf = malloc(s->buf_cap))))
		goto oom;
	if (cap < FOLLOW_MIN)
		return 0;
	if (!(f = calloc(1, sizeof(*f))) || !(f->buf = malloc(FOLLOW_BUF))) {
		free(f);
		goto oom;
	}
	f->fd = fd;
	f->md = s->md;
	f->writeback = writeback;
	/* no thread (or no lock for one): hash inline */
	if (pthread_mutex_init(&f->mu, NULL))
		goto no_mu;
	if (pthread_cond_init(&f->cv, NULL))
		goto no_cv;
	if (pthread_create(&f->thread, NULL, follow_main, f))
		goto no_thread;
	s->follow = f;
	return 0;
no_thread:
	pthread_cond_destroy(&f->cv);
no_cv:
	pthread_mutex_destroy(&f->mu);
no_mu:
	free(f->buf);
	free(f);
	return 0;
oom:
	EVP_MD_CTX_free(s->md);
	s->md = NULL;
	free(s->buf);
	s->buf = NULL;
	return nx_error_oom(err, NULL);
}

/* Write the gathered bytes at s->flushed; -1 with s->werr set on failure. */
static int flush(struct oci_sink *s, const char *buf, size_t n)
{
	size_t done = 0;
	ssize_t w;

	while (done < n) {
		w = pwrite(s->fd, buf + done, n - done, (off_t)(s->flushed + done));
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			s->werr = w < 0 ? errno : EIO;
			return -1;
		}
		done += (size_t)w;
	}
	s->flushed += n;
	if (!s->follow)
		return EVP_DigestUpdate(s->md, buf, n) ? 0 : (s->werr = ENOMEM, -1);
	pthread_mutex_lock(&s->follow->mu);
	s->follow->ready = s->flushed;
	pthread_cond_signal(&s->follow->cv);
	pthread_mutex_unlock(&s->follow->mu);
	return 0;
}

int nx_oci__sink_write(struct oci_sink *s, const char *buf, size_t n)
{
	size_t k;

	while (n) {
		if (!s->len && n >= s->buf_cap) {
			/* nothing gathered and a buffer's worth: as it is */
			if (flush(s, buf, n))
				return -1;
			k = n;
		} else {
			k = s->buf_cap - s->len < n ? s->buf_cap - s->len : n;
			memcpy(s->buf + s->len, buf, k);
			s->len += k;
			if (s->len == s->buf_cap) {
				if (flush(s, s->buf, s->len))
					return -1;
				s->len = 0;
			}
		}
		s->written += k;
		buf += k;
		n -= k;
	}
	return 0;
}

int nx_oci__sink_restart(struct oci_sink *s)
{
	if (s->follow) {
		/* before the file changes: whatever the thread reads from here
		 * on, it throws away */
		pthread_mutex_lock(&s->follow->mu);
		s->follow->gen++;
		s->follow->ready = 0;
		pthread_cond_signal(&s->follow->cv);
		pthread_mutex_unlock(&s->follow->mu);
	} else if (!EVP_DigestInit_ex(s->md, EVP_sha256(), NULL)) {
		return -1;
	}
	s->written = s->flushed = 0;
	s->len = 0;
	return ftruncate(s->fd, 0);
}

/* Wait for the hashing thread, if any; 0, or the errno of its failure. */
static int follow_join(struct oci_sink *s)
{
	struct oci_follow *f = s->follow;
	int failed;

	if (!f)
		return 0;
	pthread_mutex_lock(&f->mu);
	f->done = true;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
	failed = f->failed;
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	free(f->buf);
	free(f);
	s->follow = NULL;
	return failed;
}

int nx_oci__sink_final(struct oci_sink *s, unsigned char sha[NX_SHA256_LEN], const char *path,
		       nx_error *err)
{
	unsigned int len = 0;
	int e;

	if (s->len && flush(s, s->buf, s->len))
		return nx_error_errno(err, NX_EIO, s->werr, path,
				      "%s: cannot write the staged file; check the space and "
				      "the permissions of the output's directory, then pull again",
				      path);
	s->len = 0;
	if ((e = follow_join(s)))
		return nx_error_errno(err, NX_EIO, e, path,
				      "%s: cannot read the staged file back to hash it%s; check "
				      "the disk and that nothing else writes into the output's "
				      "directory, then pull again", path, e == EIO ?
				      " (it is shorter than what was written to it)" : "");
	if (!EVP_DigestFinal_ex(s->md, sha, &len) || len != NX_SHA256_LEN)
		return nx_error_set(err, NX_EINTERNAL, path, 0, -1,
				    "%s: OpenSSL cannot finish the SHA-256", path);
	return 0;
}

void nx_oci__sink_release(struct oci_sink *s)
{
	follow_join(s);
	EVP_MD_CTX_free(s->md);
	s->md = NULL;
	free(s->buf);
	s->buf = NULL;
}
