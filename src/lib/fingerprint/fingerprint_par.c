/*
 * fingerprint_par.c - one tensor's bytes read once and fed to two
 * consumers on two threads.
 *
 * A large tensor is hashed several ways in one read: a student's bytes
 * are cut into chunks while the value sample and the small-tensor scan
 * read them too, a teacher's while its float16 and bfloat16 casts are
 * hashed plain and canonical.  The consumers share no state while they
 * read, so the caller's runs on the calling thread and the other's on a
 * second one (the fingerprint bench's machine has two cores, and one
 * thread did the ways one after another: 1.5x openssl).  Two buffers:
 * the second thread may still be on one while the next is read.
 */
#include "fingerprint_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define FAN_BUF (2u << 20)   /* bytes read at a time (two buffers) */

struct fan {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned char *buf[2];
	size_t len[2];
	uint64_t posted, done;   /* buffers handed to the thread, and finished by it */
	bool end, stop;          /* no more buffers; the caller failed */
	int rc;                  /* the thread's consumer's first error */
	nx_onnx_bytes_fn fn;
	void *ctx;
};

static void *fan_thread(void *arg)
{
	struct fan *f = arg;

	pthread_mutex_lock(&f->lock);
	for (;;) {
		unsigned k;
		int rc = 0;

		while (f->done == f->posted && !f->end)
			pthread_cond_wait(&f->cond, &f->lock);
		if (f->done == f->posted)
			break;
		k = (unsigned)(f->done % 2);
		if (!f->rc && !f->stop) {
			pthread_mutex_unlock(&f->lock);
			rc = f->fn(f->ctx, f->buf[k], f->len[k]);
			pthread_mutex_lock(&f->lock);
		}
		if (!f->rc)
			f->rc = rc;
		f->done++;
		pthread_cond_broadcast(&f->cond);
	}
	pthread_mutex_unlock(&f->lock);
	return NULL;
}

int nx_fp__read_fanned(int fd, const char *path, uint64_t off, uint64_t len,
		       nx_onnx_bytes_fn fn0, void *ctx0, nx_onnx_bytes_fn fn1, void *ctx1,
		       const nx_error *err1, nx_error *err)
{
	struct fan f = { .fn = fn1, .ctx = ctx1 };
	pthread_t tid;
	bool threaded = false;
	uint64_t k, at = 0;
	int rc = 0;

	if (!(f.buf[0] = malloc(FAN_BUF)) || !(f.buf[1] = malloc(FAN_BUF))) {
		rc = nx_error_oom(err, path);
		goto out;
	}
	if (pthread_mutex_init(&f.lock, NULL) != 0) {
		rc = nx_error_set(err, NX_EINTERNAL, path, 0, -1,
				  "cannot make a lock to fingerprint %s", path);
		goto out;
	}
	if (pthread_cond_init(&f.cond, NULL) != 0) {
		rc = nx_error_set(err, NX_EINTERNAL, path, 0, -1,
				  "cannot make a condition to fingerprint %s", path);
		goto out_lock;
	}
	/* without a thread both consumers run here, one after the other */
	threaded = pthread_create(&tid, NULL, fan_thread, &f) == 0;
	posix_fadvise(fd, (off_t)off, (off_t)len, POSIX_FADV_SEQUENTIAL);
	for (k = 0; !rc && at < len; k++) {
		size_t n = len - at < FAN_BUF ? (size_t)(len - at) : FAN_BUF;
		unsigned char *b = f.buf[k % 2];
		ssize_t got;
		bool theirs;

		/* the buffer's last use (k - 2) must be finished.  The thread's
		 * failure stops the loop but stays in f.rc: rc is this thread's
		 * own, so the thread's message (err1) is copied below (it was
		 * lost, and inspect exited 0 with an empty error: review) */
		pthread_mutex_lock(&f.lock);
		while (threaded && f.done + 1 < k && !f.rc)
			pthread_cond_wait(&f.cond, &f.lock);
		theirs = f.rc != 0;
		pthread_mutex_unlock(&f.lock);
		if (theirs)
			break;
		got = nx_pread_full(fd, b, n, off + at);
		if (got != (ssize_t)n) {
			rc = got < 0 ? nx_error_errno(err, NX_EIO, errno, path, "cannot read %s", path)
				     : nx_error_set(err, NX_EFORMAT, path, 0, (long long)(off + at),
						    "%s: a tensor runs past the end of the file",
						    path);
			break;
		}
		if (threaded) {
			pthread_mutex_lock(&f.lock);
			f.len[k % 2] = n;
			f.posted = k + 1;
			pthread_cond_broadcast(&f.cond);
			pthread_mutex_unlock(&f.lock);
		} else if ((f.rc = fn1(ctx1, b, n)) != 0) {
			break;
		}
		rc = fn0(ctx0, b, n);
		at += n;
	}
	if (threaded) {
		pthread_mutex_lock(&f.lock);
		f.end = true;
		f.stop = rc != 0;
		pthread_cond_broadcast(&f.cond);
		pthread_mutex_unlock(&f.lock);
		pthread_join(tid, NULL);
	}
	/* the caller's error first; else the thread's, said in err1 */
	if (!rc && f.rc) {
		rc = f.rc;
		if (err && err1)
			*err = *err1;
	}
	pthread_cond_destroy(&f.cond);
out_lock:
	pthread_mutex_destroy(&f.lock);
out:
	free(f.buf[0]);
	free(f.buf[1]);
	return rc;
}
