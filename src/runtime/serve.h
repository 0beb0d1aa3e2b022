/*
 * serve.h - the pieces of `nexus_cli serve` (issue #17 item 5):
 *   serve.c         the verb: listening socket, signals, start-up, drain
 *   serve_http.c    requests: body caps, endpoints, JSON replies
 *   serve_engine.c  the bounded queue and the one inference thread that
 *                   batches texts across requests
 *   serve_gen.c     /v1/completions and /v1/chat/completions (generation
 *                   bundles), streamed as server-sent events
 *   serve_metrics.c counters and histograms, Prometheus text
 *   serve_mhd.c     libmicrohttpd, dlopen()ed at serve time
 * Only src/runtime/serve*.c include this.
 */
#ifndef NEXUS_RT_SERVE_H
#define NEXUS_RT_SERVE_H

#include <microhttpd.h>
#include <pthread.h>

#include "rt.h"

#define SV_MHD_SONAME "libmicrohttpd.so.12"
#define SV_MHD_PACKAGE "libmicrohttpd12"
#define SV_INPUTS_MAX 2048           /* texts in one request */
#define SV_DRAIN_S 30                /* seconds SIGTERM waits for in-flight requests */
/* tokens of one round the engine keeps encoded (24 bytes each: 6 MiB, the
 * token window `run` holds); a round's texts past it are tokenized twice */
#define SV_ARENA_TOKENS RT_RUN_WINDOW_TOKENS

/* The few MHD_* calls serve uses: the runtime does not link libmicrohttpd
 * (Debian's static archive needs gnutls); the types come from its header. */
struct sv_mhd {
	void *dl;
	__typeof__(&MHD_start_daemon) start_daemon;
	__typeof__(&MHD_stop_daemon) stop_daemon;
	__typeof__(&MHD_quiesce_daemon) quiesce_daemon;
	__typeof__(&MHD_create_response_from_buffer) create_response_from_buffer;
	__typeof__(&MHD_create_response_from_callback) create_response_from_callback;
	__typeof__(&MHD_add_response_header) add_response_header;
	__typeof__(&MHD_queue_response) queue_response;
	__typeof__(&MHD_destroy_response) destroy_response;
	__typeof__(&MHD_lookup_connection_value) lookup_connection_value;
};
/* dlopen libmicrohttpd.so.12; NX_EDEP naming the package when it is missing. */
int sv_mhd_open(struct sv_mhd *m, nx_error *err);
void sv_mhd_close(struct sv_mhd *m);

enum sv_endpoint { SV_EP_HEALTH, SV_EP_METRICS, SV_EP_EMBEDDINGS, SV_EP_PREDICT, SV_EP_RERANK,
		   SV_EP_COMPLETIONS, SV_EP_CHAT, SV_EP_OTHER, SV_EP_COUNT };
extern const char *const sv_endpoint_names[SV_EP_COUNT];

struct sv_metrics;
int sv_metrics_new(struct sv_metrics **out, nx_error *err);
void sv_metrics_free(struct sv_metrics *m);
void sv_metrics_request(struct sv_metrics *m, enum sv_endpoint ep, unsigned status, double seconds);
void sv_metrics_batch(struct sv_metrics *m, size_t texts);
/* The text exposition format (a new string, NULL when out of memory). */
char *sv_metrics_text(struct sv_metrics *m, size_t queue_depth, size_t inflight, bool ready);

/* One request's texts, answered by the engine. */
struct sv_job {
	char **texts;           /* borrowed from the request */
	size_t *lens;
	const char *pair;       /* /rerank: the query, paired with every text; NULL if none */
	size_t pair_len;
	size_t n;
	json_t **results;       /* per text: run's result object, set by the engine */
	size_t *tokens;         /* per text: tokens after truncation */
	int rc;                 /* 0, or the error that failed the whole batch */
	nx_error err;
	bool done;
	pthread_cond_t answered; /* done became true (engine-owned: submit to wait) */
	size_t left;            /* engine-owned: texts not yet run */
	struct sv_job *next;
};

struct sv_engine;
/* The engine owns neither b nor s; batch caps texts per inference round,
 * wait_ms is how long the oldest text may wait for more. */
int sv_engine_start(struct sv_engine **out, struct rt_bundle *b, struct rt_session *s,
		    struct sv_metrics *m, size_t queue, size_t batch, long wait_ms, nx_error *err);
/* A request that will submit texts has begun (+1), or has submitted them or
 * given up (-1): the inference thread waits for more texts only while one
 * is on its way, so a lone client never pays --max-wait-ms. */
void sv_engine_expect(struct sv_engine *e, int delta);
/* 0 queued (then sv_engine_wait it); NX_ELIMIT when the queue has no room
 * for job->n texts, NX_EIO when its condition variable cannot be made. */
int sv_engine_submit(struct sv_engine *e, struct sv_job *job, nx_error *err);
/* Blocks until the engine answered the job. */
void sv_engine_wait(struct sv_engine *e, struct sv_job *job);
size_t sv_engine_depth(struct sv_engine *e);
/* Answers what is queued, then stops the thread and frees the engine. */
void sv_engine_stop(struct sv_engine *e);

struct sv_server {
	struct sv_mhd mhd;
	struct sv_metrics *metrics;
	struct sv_engine *engine;   /* set once ready (not for a generation bundle) */
	struct sv_gen *gen;         /* set once ready for a generation bundle */
	const struct rt_bundle *b;
	size_t json_flags;
	size_t max_body;
	size_t max_inputs;      /* texts in one request: SV_INPUTS_MAX, or --queue if less */
	pthread_mutex_t mu;
	size_t inflight;        /* requests begun and not completed */
	bool ready, draining;
};

/* MHD callbacks (serve_http.c). */
enum MHD_Result sv_http_handle(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls);
void sv_http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
		       enum MHD_RequestTerminationCode toe);

/* serve_gen.c: the generation endpoints (one generation at a time, at most
 * `queue` requests waiting); start warms the model up with one token. */
struct sv_gen;
int sv_gen_start(struct sv_gen **out, struct rt_bundle *b, struct rt_session *s, size_t queue,
		 nx_error *err);
/* Waits for the streams still generating (their clients are gone once
 * libmicrohttpd stopped), then frees; accepts NULL. */
void sv_gen_stop(struct sv_gen *g);
/* POST /v1/completions (chat false) or /v1/chat/completions; *status set. */
enum MHD_Result sv_gen_answer(struct sv_server *sv, struct MHD_Connection *c, bool chat,
			      const char *body, size_t len, unsigned *status);

int rt_cmd_serve(const struct rt_verb *v, int argc, char **argv);

#endif
