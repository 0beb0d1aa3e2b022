/*
 * sink.c - a blob streamed into a staged file: written as it arrives, its
 * SHA-256 taken and its size capped.
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
#include <unistd.h>

#include "oci_int.h"

#define FOLLOW_MIN (8u << 20)     /* smaller blobs are hashed inline */
#define FOLLOW_BUF (1u << 20)     /* bytes read back at a time */
#define FOLLOW_FLUSH (16u << 20)  /* writeback started every this many bytes */

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
	bool failed;      /* a read back came short (under mu) */
	bool writeback;   /* start the disk writeback as it goes */
};

/* Hash [at, upto) of the file; false on a short read. */
static bool hash_range(struct oci_follow *f, uint64_t at, uint64_t upto)
{
	ssize_t got;

	while (at < upto) {
		size_t n = upto - at < FOLLOW_BUF ? (size_t)(upto - at) : FOLLOW_BUF;

		got = pread(f->fd, f->buf, n, (off_t)at);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0 || !EVP_DigestUpdate(f->md, f->buf, (size_t)got))
			return false;
		at += (uint64_t)got;
	}
	return true;
}

static void *follow_main(void *arg)
{
	struct oci_follow *f = arg;
	uint64_t at = 0, flushed = 0, upto;
	unsigned gen = 0;
	bool ok;

	pthread_mutex_lock(&f->mu);
	for (;;) {
		while (f->gen == gen && f->ready == at && !f->done)
			pthread_cond_wait(&f->cv, &f->mu);
		if (f->gen != gen) {
			/* the server ignored a Range: the file starts over */
			gen = f->gen;
			at = flushed = 0;
			if (!EVP_DigestInit_ex(f->md, EVP_sha256(), NULL)) {
				f->failed = true;
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
		ok = hash_range(f, at, upto);
		if (ok && f->writeback && upto - flushed >= FOLLOW_FLUSH) {
			/* advisory: the seal's fsync decides */
			(void)sync_file_range(f->fd, (off_t)flushed, (off_t)(upto - flushed),
					      SYNC_FILE_RANGE_WRITE);
			flushed = upto;
		}
		pthread_mutex_lock(&f->mu);
		if (f->gen != gen)
			continue;   /* what was read may be the new start: done again */
		if (!ok) {
			f->failed = true;
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

	*s = (struct oci_sink){ .fd = fd, .cap = cap };
	if (!(s->md = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(s->md, EVP_sha256(), NULL))
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
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->cv, NULL);
	if (pthread_create(&f->thread, NULL, follow_main, f)) {
		/* no thread: hash inline */
		pthread_mutex_destroy(&f->mu);
		pthread_cond_destroy(&f->cv);
		free(f->buf);
		free(f);
		return 0;
	}
	s->follow = f;
	return 0;
oom:
	EVP_MD_CTX_free(s->md);
	s->md = NULL;
	return nx_error_oom(err, NULL);
}

int nx_oci__sink_write(struct oci_sink *s, const char *buf, size_t n)
{
	if (pwrite(s->fd, buf, n, (off_t)s->written) != (ssize_t)n)
		return -1;
	s->written += n;
	if (!s->follow)
		return EVP_DigestUpdate(s->md, buf, n) ? 0 : -1;
	pthread_mutex_lock(&s->follow->mu);
	s->follow->ready = s->written;
	pthread_cond_signal(&s->follow->cv);
	pthread_mutex_unlock(&s->follow->mu);
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
	s->written = 0;
	return ftruncate(s->fd, 0);
}

/* Wait for the hashing thread, if any; false when it failed. */
static bool follow_join(struct oci_sink *s)
{
	struct oci_follow *f = s->follow;
	bool ok;

	if (!f)
		return true;
	pthread_mutex_lock(&f->mu);
	f->done = true;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	pthread_join(f->thread, NULL);
	ok = !f->failed;
	pthread_mutex_destroy(&f->mu);
	pthread_cond_destroy(&f->cv);
	free(f->buf);
	free(f);
	s->follow = NULL;
	return ok;
}

int nx_oci__sink_final(struct oci_sink *s, unsigned char sha[NX_SHA256_LEN])
{
	unsigned int len = 0;

	if (!follow_join(s) || !EVP_DigestFinal_ex(s->md, sha, &len) || len != NX_SHA256_LEN)
		return -1;
	return 0;
}

void nx_oci__sink_release(struct oci_sink *s)
{
	follow_join(s);
	EVP_MD_CTX_free(s->md);
	s->md = NULL;
}
