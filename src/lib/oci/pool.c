/*
 * pool.c - blob transfers on up to NX_OCI__CONNECTIONS connections at once,
 * largest first, as skopeo and oras do: on a bundle of one big model and
 * many small files, the small ones go while the model streams, and the
 * registry's per-blob latency (an upload's POST and commit are tens of
 * milliseconds of its disk work each) overlaps.  Each worker has its own
 * client (libcurl easy handles are per thread), opened on its own thread;
 * one that cannot open only means fewer workers.  The first error stops
 * the rest.
 */
#include <pthread.h>
#include <stdlib.h>

#include "oci_int.h"

struct pool {
	pthread_mutex_t mu;
	const nx_oci_ref *ref;
	const struct nx_oci_opts *quiet;
	const char *actions;
	const uint64_t *sizes;
	size_t *order, n, next;
	nx_oci__job job;
	void *ctx;
	int rc;
	nx_error err;
};

struct worker {
	struct pool *p;
	struct oci_client *c;   /* NULL: open one */
	nx_error err;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->p;
	struct oci_client own;
	struct oci_client *c = w->c;
	size_t i;
	int rc;

	if (!c) {
		if (nx_oci__client_open(&own, p->ref, p->quiet, p->actions, NULL))
			return NULL;
		c = &own;
	}
	for (;;) {
		pthread_mutex_lock(&p->mu);
		if (p->rc || p->next >= p->n) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		i = p->order[p->next++];
		pthread_mutex_unlock(&p->mu);
		nx_error_clear(&w->err);
		rc = p->job(c, i, p->ctx, &p->mu, &w->err);
		pthread_mutex_lock(&p->mu);
		if (rc && !p->rc) {
			p->rc = rc;
			p->err = w->err;
		}
		pthread_mutex_unlock(&p->mu);
	}
	if (c == &own)
		nx_oci__client_close(&own);
	return NULL;
}

static int bigger_first(const void *a, const void *b, void *sizes)
{
	const uint64_t *s = sizes;
	uint64_t x = s[*(const size_t *)a], y = s[*(const size_t *)b];

	return x < y ? 1 : x > y ? -1 : 0;
}

int nx_oci__pool_run(struct oci_client *c, const nx_oci_ref *ref, const char *actions,
		     const uint64_t *sizes, size_t n, nx_oci__job job, void *ctx, nx_error *err)
{
	struct nx_oci_opts quiet = *c->o;
	struct pool p = { .mu = PTHREAD_MUTEX_INITIALIZER, .ref = ref, .quiet = &quiet,
			  .actions = actions, .sizes = sizes, .n = n, .job = job, .ctx = ctx };
	struct worker w[NX_OCI__CONNECTIONS];
	pthread_t t[NX_OCI__CONNECTIONS];
	size_t i, started = 1;

	if (!n)
		return 0;
	if (!(p.order = malloc(n * sizeof(*p.order))))
		return nx_error_oom(err, NULL);
	for (i = 0; i < n; i++)
		p.order[i] = i;
	qsort_r(p.order, n, sizeof(*p.order), bigger_first, (void *)sizes);
	quiet.progress = NULL;   /* one status line: the first worker's, the largest blob */
	nx_error_clear(&p.err);
	for (i = 0; i < NX_OCI__CONNECTIONS && i < n; i++) {
		w[i] = (struct worker){ .p = &p, .c = i ? NULL : c };
		if (i && !pthread_create(&t[started], NULL, work, &w[i]))
			started++;
	}
	work(&w[0]);
	for (i = 1; i < started; i++)
		pthread_join(t[i], NULL);
	free(p.order);
	pthread_mutex_destroy(&p.mu);
	if (p.rc && err)
		*err = p.err;
	return p.rc;
}
