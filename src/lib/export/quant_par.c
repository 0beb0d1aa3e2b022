/*
 * quant_par.c - the helper threads of a quantizing export (quant.c).
 *
 * Quantizing is the CPU-bound part of an export; the copy and the digest
 * are already overlapped (onnx_write.c, nx_hash_follow).  quant.c cuts
 * each buffer of rows into pieces, and the caller and the helpers take
 * pieces one at a time until none is left.  Every output byte depends only
 * on its own input values and on maxima (exact in any order), so the bytes
 * written are the same for any number of threads; memory stays the one
 * shared buffer.
 *
 * Why pieces taken in turn, not one fixed part per thread: on a busy host a
 * helper may not be scheduled for a while, and a join that waits for its
 * fixed part made an earlier two-thread attempt 3x slower than one thread
 * (docs/DESIGN-NOTES.md, quantization).  Here the caller waits only for
 * pieces a helper has already begun; a helper that never wakes leaves the
 * whole buffer to the caller, at one thread's speed.
 *
 * The helpers are started on the first quantized tensor and live until the
 * export ends.
 */
#include "export_int.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

struct ex_par {
	unsigned nthreads;        /* helpers + the caller */
	bool sync;                /* lock, go and done were made */
	pthread_t tid[NX_QUANT_THREADS_MAX];
	pthread_mutex_t lock;
	pthread_cond_t go, done;
	bool stop;
	/* the current job, under lock */
	nx_export__par_fn *fn;
	void *ctx;
	unsigned npieces, next, finished;
};

/* Take the next piece of the current job and run it (lock held on entry
 * and on return); false when every piece is taken. */
static bool take(struct ex_par *p)
{
	nx_export__par_fn *fn = p->fn;
	void *ctx = p->ctx;
	unsigned i = p->next, n = p->npieces;

	if (i >= n)
		return false;
	p->next++;
	pthread_mutex_unlock(&p->lock);
	fn(ctx, i, n);
	pthread_mutex_lock(&p->lock);
	if (++p->finished == n)
		pthread_cond_signal(&p->done);
	return true;
}

static void *helper(void *arg)
{
	struct ex_par *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		if (!take(p))
			pthread_cond_wait(&p->go, &p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* opts.quantize_threads, else the CPUs this process may run on. */
static unsigned wanted(const struct ex *x)
{
	cpu_set_t set;
	unsigned n = x->o->quantize_threads;

	if (!n)
		n = sched_getaffinity(0, sizeof(set), &set) == 0 ? (unsigned)CPU_COUNT(&set) : 1;
	return n < 1 ? 1 : n > NX_QUANT_THREADS_MAX ? NX_QUANT_THREADS_MAX : n;
}

/* Start the helpers.  Every failure here only means fewer threads, down
 * to the caller alone, because the output does not depend on their number:
 * without the lock and both conditions no helper is started, and a helper
 * that cannot be created is one helper less.  NULL (out of memory): the
 * caller quantizes alone. */
static struct ex_par *par_start(struct ex *x)
{
	struct ex_par *p = calloc(1, sizeof(*p));
	unsigned want = wanted(x);

	if (!p)
		return NULL;
	p->nthreads = 1;
	if (pthread_mutex_init(&p->lock, NULL) != 0)
		return p;
	if (pthread_cond_init(&p->go, NULL) != 0) {
		pthread_mutex_destroy(&p->lock);
		return p;
	}
	if (pthread_cond_init(&p->done, NULL) != 0) {
		pthread_cond_destroy(&p->go);
		pthread_mutex_destroy(&p->lock);
		return p;
	}
	p->sync = true;
	for (; p->nthreads < want; p->nthreads++)
		if (pthread_create(&p->tid[p->nthreads], NULL, helper, p) != 0)
			break;
	return p;
}

void nx_export__par_run(struct ex *x, nx_export__par_fn *fn, void *ctx, unsigned npieces)
{
	struct ex_par *p;
	unsigned i;

	if (!x->par && x->o->quantize_threads != 1)
		x->par = par_start(x);
	if (!(p = x->par) || p->nthreads == 1) {
		for (i = 0; i < npieces; i++)
			fn(ctx, i, npieces);
		return;
	}
	pthread_mutex_lock(&p->lock);
	p->fn = fn;
	p->ctx = ctx;
	p->npieces = npieces;
	p->next = p->finished = 0;
	pthread_cond_broadcast(&p->go);
	while (take(p))
		;
	while (p->finished < npieces)
		pthread_cond_wait(&p->done, &p->lock);
	pthread_mutex_unlock(&p->lock);
}

void nx_export__par_release(struct ex *x)
{
	struct ex_par *p = x->par;
	unsigned i;

	if (!p)
		return;
	if (p->sync) {
		pthread_mutex_lock(&p->lock);
		p->stop = true;
		pthread_cond_broadcast(&p->go);
		pthread_mutex_unlock(&p->lock);
		for (i = 1; i < p->nthreads; i++)
			pthread_join(p->tid[i], NULL);
		pthread_cond_destroy(&p->go);
		pthread_cond_destroy(&p->done);
		pthread_mutex_destroy(&p->lock);
	}
	free(p);
	x->par = NULL;
}
