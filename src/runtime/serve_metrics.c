/*
 * serve_metrics.c - what GET /metrics reports, in the Prometheus text
 * exposition format (version 0.0.4): requests and latency by endpoint and
 * status, texts per inference batch, queue depth.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve.h"

const char *const sv_endpoint_names[SV_EP_COUNT] = {
	"/health", "/metrics", "/v1/embeddings", "/predict", "/rerank", "/v1/completions",
	"/v1/chat/completions", "other",
};

static const unsigned statuses[] = { 200, 400, 404, 405, 413, 422, 500, 501, 503 };
#define NSTATUS (sizeof(statuses) / sizeof(statuses[0]))
static const double lat_le[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
				  1, 2.5, 5, 10 };
#define NLAT (sizeof(lat_le) / sizeof(lat_le[0]))
static const double batch_le[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };
#define NBATCH (sizeof(batch_le) / sizeof(batch_le[0]))

struct sv_metrics {
	pthread_mutex_t mu;
	unsigned long long requests[SV_EP_COUNT][NSTATUS + 1]; /* last: other statuses */
	unsigned long long lat[SV_EP_COUNT][NLAT + 1];         /* last: +Inf */
	double lat_sum[SV_EP_COUNT];
	unsigned long long batch[NBATCH + 1];
	unsigned long long batch_sum;
};

int sv_metrics_new(struct sv_metrics **out, nx_error *err)
{
	struct sv_metrics *m = calloc(1, sizeof(*m));
	int rc;

	if (!m)
		return nx_error_oom(err, NULL);
	if ((rc = pthread_mutex_init(&m->mu, NULL))) {
		free(m);
		return nx_error_errno(err, NX_EIO, rc, NULL, "cannot make the metrics' lock");
	}
	*out = m;
	return 0;
}

void sv_metrics_free(struct sv_metrics *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->mu);
	free(m);
}

static size_t bucket(const double *le, size_t n, double v)
{
	size_t i;

	for (i = 0; i < n && v > le[i]; i++)
		;
	return i;
}

void sv_metrics_request(struct sv_metrics *m, enum sv_endpoint ep, unsigned status, double seconds)
{
	size_t s;

	for (s = 0; s < NSTATUS && statuses[s] != status; s++)
		;
	pthread_mutex_lock(&m->mu);
	m->requests[ep][s]++;
	m->lat[ep][bucket(lat_le, NLAT, seconds)]++;
	m->lat_sum[ep] += seconds;
	pthread_mutex_unlock(&m->mu);
}

void sv_metrics_batch(struct sv_metrics *m, size_t texts)
{
	pthread_mutex_lock(&m->mu);
	m->batch[bucket(batch_le, NBATCH, (double)texts)]++;
	m->batch_sum += texts;
	pthread_mutex_unlock(&m->mu);
}

/* A histogram's _bucket/_sum/_count lines; counts[n] is the +Inf bucket. */
static void histogram(FILE *f, const char *name, const char *label, const double *le, size_t n,
		      const unsigned long long *counts, double sum)
{
	unsigned long long cum = 0;
	size_t i;

	for (i = 0; i <= n; i++) {
		cum += counts[i];
		if (i < n)
			fprintf(f, "%s_bucket{%sle=\"%g\"} %llu\n", name, label, le[i], cum);
		else
			fprintf(f, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label, cum);
	}
	i = strlen(label);
	if (i)  /* the label list without its trailing comma */
		fprintf(f, "%s_sum{%.*s} %.6f\n%s_count{%.*s} %llu\n", name, (int)i - 1, label, sum,
			name, (int)i - 1, label, cum);
	else
		fprintf(f, "%s_sum %.6f\n%s_count %llu\n", name, sum, name, cum);
}

char *sv_metrics_text(struct sv_metrics *m, size_t queue_depth, size_t inflight, bool ready)
{
	char *buf = NULL, label[64];
	size_t len = 0, e, s;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return NULL;
	pthread_mutex_lock(&m->mu);
	fprintf(f, "# HELP nexus_requests_total HTTP requests answered, by endpoint and status.\n"
		   "# TYPE nexus_requests_total counter\n");
	for (e = 0; e < SV_EP_COUNT; e++)
		for (s = 0; s <= NSTATUS; s++)
			if (m->requests[e][s])
			{
				char st[16] = "other"; /* a client gone before its answer, too */

				if (s < NSTATUS)
					snprintf(st, sizeof(st), "%u", statuses[s]);
				fprintf(f, "nexus_requests_total{endpoint=\"%s\",status=\"%s\"} %llu\n",
					sv_endpoint_names[e], st, m->requests[e][s]);
			}
	fprintf(f, "# HELP nexus_request_errors_total HTTP requests answered with a status of 400 or more.\n"
		   "# TYPE nexus_request_errors_total counter\n");
	for (e = 0; e < SV_EP_COUNT; e++) {
		unsigned long long n = 0;

		for (s = 0; s <= NSTATUS; s++)
			n += (s == NSTATUS || statuses[s] >= 400) ? m->requests[e][s] : 0;
		fprintf(f, "nexus_request_errors_total{endpoint=\"%s\"} %llu\n", sv_endpoint_names[e], n);
	}
	fprintf(f, "# HELP nexus_request_duration_seconds Time from a request's headers to its answer.\n"
		   "# TYPE nexus_request_duration_seconds histogram\n");
	for (e = 0; e < SV_EP_COUNT; e++) {
		snprintf(label, sizeof(label), "endpoint=\"%s\",", sv_endpoint_names[e]);
		histogram(f, "nexus_request_duration_seconds", label, lat_le, NLAT, m->lat[e],
			  m->lat_sum[e]);
	}
	fprintf(f, "# HELP nexus_batch_size Texts per inference (one ONNX Runtime Run) of the batching thread.\n"
		   "# TYPE nexus_batch_size histogram\n");
	histogram(f, "nexus_batch_size", "", batch_le, NBATCH, m->batch, (double)m->batch_sum);
	pthread_mutex_unlock(&m->mu);
	fprintf(f, "# HELP nexus_queue_depth Texts waiting for the inference thread.\n"
		   "# TYPE nexus_queue_depth gauge\nnexus_queue_depth %zu\n"
		   "# HELP nexus_requests_in_flight Requests begun and not yet answered.\n"
		   "# TYPE nexus_requests_in_flight gauge\nnexus_requests_in_flight %zu\n"
		   "# HELP nexus_ready 1 once the integrity check and a warm-up inference passed.\n"
		   "# TYPE nexus_ready gauge\nnexus_ready %d\n", queue_depth, inflight, ready);
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}
