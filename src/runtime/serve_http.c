/*
 * serve_http.c - one HTTP request of `nexus_cli serve`: the body under its
 * cap, the endpoint, the texts handed to the engine, and a JSON answer (a
 * JSON error body on every failure).  libmicrohttpd runs each connection
 * on its own thread, so a request may block here until the engine answers
 * it; a slow client holds only its own thread until the connection
 * timeout drops it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nexus/clock.h"
#include "serve.h"

struct sv_req {
	enum sv_endpoint ep;
	double t0;
	char *body;
	size_t len;
	bool too_big, replied, refuse; /* refuse: draining when it began */
	struct sv_engine *coming; /* told sv_engine_expect(+1) and not yet -1 */
	unsigned status;
};

static enum sv_endpoint endpoint_of(const char *url)
{
	enum sv_endpoint e;

	for (e = 0; e < SV_EP_OTHER; e++)
		if (!strcmp(url, sv_endpoint_names[e]))
			return e;
	return SV_EP_OTHER;
}

/* Queue `body` (malloc'd, taken) with `status`; retry_after in seconds or 0. */
static enum MHD_Result reply(struct sv_server *sv, struct MHD_Connection *c, struct sv_req *r,
			     unsigned status, const char *ctype, char *body, unsigned retry_after)
{
	struct MHD_Response *resp;
	enum MHD_Result ok;
	char ra[16];

	if (!body)
		return MHD_NO;  /* out of memory: drop the connection */
	resp = sv->mhd.create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	sv->mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (retry_after) {
		snprintf(ra, sizeof(ra), "%u", retry_after);
		sv->mhd.add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	if (r->refuse || r->too_big)
		sv->mhd.add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	ok = sv->mhd.queue_response(c, status, resp);
	sv->mhd.destroy_response(resp);
	r->replied = true;
	r->status = status;
	return ok;
}

static enum MHD_Result reply_json(struct sv_server *sv, struct MHD_Connection *c,
				  struct sv_req *r, unsigned status, json_t *doc, unsigned retry)
{
	char *body = doc ? json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII | sv->json_flags) : NULL;
	size_t len = body ? strlen(body) : 0;
	char *nl = body ? realloc(body, len + 2) : NULL;

	json_decref(doc);
	if (!nl) {
		free(body);
		return MHD_NO;
	}
	memcpy(nl + len, "\n", 2);
	return reply(sv, c, r, status, "application/json", nl, retry);
}

/* {"error": {"message", "type", "code"}} - the shape OpenAI's API uses. */
static enum MHD_Result fail(struct sv_server *sv, struct MHD_Connection *c, struct sv_req *r,
			    unsigned status, const char *type, json_t *extra, const char *fmt, ...)
	__attribute__((format(printf, 7, 8)));

static enum MHD_Result fail(struct sv_server *sv, struct MHD_Connection *c, struct sv_req *r,
			    unsigned status, const char *type, json_t *extra, const char *fmt, ...)
{
	char msg[1024];
	json_t *e;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	e = json_pack("{s:s,s:s,s:i}", "message", msg, "type", type, "code", (int)status);
	if (e && extra)
		json_object_update(e, extra);
	json_decref(extra);
	return reply_json(sv, c, r, status, e ? json_pack("{s:o}", "error", e) : NULL,
			  status == 503 ? 1 : 0);
}

/* The texts of a request: a string or a non-empty array of strings. */
static int texts_of(json_t *v, struct sv_job *job, size_t cap, const char **why)
{
	size_t i, n = json_is_array(v) ? json_array_size(v) : 1;

	if (!json_is_string(v) && !(json_is_array(v) && n)) {
		*why = "a string or a non-empty array of strings";
		return 400;
	}
	if (n > cap) {
		*why = "too many texts for one request";
		return 413;
	}
	job->n = n;
	job->texts = calloc(n, sizeof(*job->texts));
	job->lens = calloc(n, sizeof(*job->lens));
	job->results = calloc(n, sizeof(*job->results));
	job->tokens = calloc(n, sizeof(*job->tokens));
	if (!job->texts || !job->lens || !job->results || !job->tokens) {
		*why = "out of memory";
		return 500;
	}
	for (i = 0; i < n; i++) {
		json_t *t = json_is_array(v) ? json_array_get(v, i) : v;

		if (!json_is_string(t)) {
			*why = "a string or a non-empty array of strings";
			return 400;
		}
		job->texts[i] = (char *)json_string_value(t);
		job->lens[i] = json_string_length(t);
	}
	return 0;
}

static void job_release(struct sv_job *job)
{
	size_t i;

	for (i = 0; job->results && i < job->n; i++)
		json_decref(job->results[i]);
	free(job->texts);
	free(job->lens);
	free(job->results);
	free(job->tokens);
}

/* The first result that is an error, or NULL. */
static json_t *first_error(const struct sv_job *job, size_t *at)
{
	for (*at = 0; *at < job->n; (*at)++)
		if (json_object_get(job->results[*at], "error"))
			return job->results[*at];
	return NULL;
}

static enum MHD_Result answer_embeddings(struct sv_server *sv, struct MHD_Connection *c,
					 struct sv_req *r, struct sv_job *job)
{
	json_t *data = json_array(), *bad;
	size_t i, tokens = 0;

	if ((bad = first_error(job, &i))) {
		json_decref(data);
		return fail(sv, c, r, 422, "invalid_input", json_pack("{s:I,s:O*}", "index",
				(json_int_t)i, "reason", json_object_get(bad, "code")),
			    "input %zu: %s", i, json_string_value(json_object_get(bad, "error")));
	}
	for (i = 0; data && i < job->n; i++) {
		tokens += job->tokens[i];
		json_array_append_new(data, json_pack("{s:s,s:I,s:O}", "object", "embedding",
						      "index", (json_int_t)i, "embedding",
						      json_object_get(job->results[i], "embedding")));
	}
	return reply_json(sv, c, r, 200,
			  json_pack("{s:s,s:o,s:s,s:{s:I,s:I}}", "object", "list", "data", data,
				    "model", sv->b->manifest->bundle_id, "usage",
				    "prompt_tokens", (json_int_t)tokens,
				    "total_tokens", (json_int_t)tokens), 0);
}

static enum MHD_Result answer_predict(struct sv_server *sv, struct MHD_Connection *c,
				      struct sv_req *r, struct sv_job *job, bool single)
{
	json_t *all, *bad;
	size_t i;

	if (!single) {
		all = json_array();
		for (i = 0; all && i < job->n; i++)
			json_array_append(all, job->results[i]);
		return reply_json(sv, c, r, 200, all ? json_pack("{s:o}", "results", all) : NULL, 0);
	}
	if ((bad = first_error(job, &i)))
		return fail(sv, c, r, 422, "invalid_input",
			    json_pack("{s:O*}", "reason", json_object_get(bad, "code")),
			    "%s", json_string_value(json_object_get(bad, "error")));
	return reply_json(sv, c, r, 200, json_incref(job->results[0]), 0);
}

/* by relevance_score, highest first; equal scores keep input order */
static int by_score(const void *a, const void *b)
{
	double x = json_real_value(json_object_get(*(json_t *const *)a, "relevance_score"));
	double y = json_real_value(json_object_get(*(json_t *const *)b, "relevance_score"));
	json_int_t i = json_integer_value(json_object_get(*(json_t *const *)a, "index"));
	json_int_t j = json_integer_value(json_object_get(*(json_t *const *)b, "index"));

	if (x != y)
		return x > y ? -1 : 1;
	return i < j ? -1 : i > j;
}

/* The answer of Cohere's and Jina's rerank APIs: results sorted by score,
 * the first top_n, each with its input index. */
static enum MHD_Result answer_rerank(struct sv_server *sv, struct MHD_Connection *c,
				     struct sv_req *r, struct sv_job *job, size_t top_n,
				     bool with_docs)
{
	json_t **rows = calloc(job->n, sizeof(*rows)), *out = json_array(), *bad;
	size_t i, tokens = 0;
	enum MHD_Result ok;

	if ((bad = first_error(job, &i))) {
		free(rows);
		json_decref(out);
		return fail(sv, c, r, 422, "invalid_input", json_pack("{s:I,s:O*}", "index",
				(json_int_t)i, "reason", json_object_get(bad, "code")),
			    "document %zu: %s", i, json_string_value(json_object_get(bad, "error")));
	}
	for (i = 0; rows && out && i < job->n; i++) {
		tokens += job->tokens[i];
		rows[i] = json_pack("{s:I,s:O}", "index", (json_int_t)i, "relevance_score",
				    json_object_get(job->results[i], "score"));
		if (rows[i] && with_docs)
			json_object_set_new(rows[i], "document",
					    json_pack("{s:s%}", "text", job->texts[i], job->lens[i]));
		if (!rows[i])
			break;
	}
	if (!rows || !out || i < job->n) {
		ok = MHD_NO;
		goto out;
	}
	qsort(rows, job->n, sizeof(*rows), by_score);
	for (i = 0; i < job->n && i < top_n; i++)
		json_array_append(out, rows[i]);
	ok = reply_json(sv, c, r, 200,
			json_pack("{s:s,s:O,s:{s:I}}", "model", sv->b->manifest->bundle_id,
				  "results", out, "usage", "total_tokens", (json_int_t)tokens), 0);
out:
	for (i = 0; rows && i < job->n; i++)
		json_decref(rows[i]);
	free(rows);
	json_decref(out);
	return ok;
}

/* /rerank's options besides "query" and "documents"; 0 or a 400 in *why. */
static int rerank_options(json_t *doc, size_t *top_n, bool *with_docs, const char **why)
{
	json_t *v;

	*top_n = SIZE_MAX;
	*with_docs = false;
	if (!json_is_string(json_object_get(doc, "query"))) {
		*why = "the body needs \"query\" (a string) and \"documents\" (an array of strings)";
		return 400;
	}
	if ((v = json_object_get(doc, "top_n")) && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 1) {
			*why = "\"top_n\" must be a positive integer";
			return 400;
		}
		*top_n = (size_t)json_integer_value(v);
	}
	if ((v = json_object_get(doc, "return_documents")) && !json_is_null(v)) {
		if (!json_is_boolean(v)) {
			*why = "\"return_documents\" must be true or false";
			return 400;
		}
		*with_docs = json_is_true(v);
	}
	return 0;
}

/* POST /v1/embeddings, /predict and /rerank: parse, queue, wait, answer. */
static enum MHD_Result infer(struct sv_server *sv, struct MHD_Connection *c, struct sv_req *r)
{
	struct sv_job job;
	json_error_t jerr;
	nx_error err;
	json_t *doc, *in;
	const char *why = NULL, *key;
	enum MHD_Result ok;
	size_t top_n = SIZE_MAX;
	bool with_docs = false;
	int st;

	if (r->ep == SV_EP_EMBEDDINGS && sv->b->set.task != RT_TASK_EMBEDDING)
		return fail(sv, c, r, 400, "invalid_request_error", NULL,
			    "this bundle's task is not embedding; use POST /predict");
	if (r->ep == SV_EP_RERANK && sv->b->set.task != RT_TASK_RERANK)
		return fail(sv, c, r, 400, "invalid_request_error", NULL,
			    "this bundle's task is not rerank; use POST /predict");
	doc = json_loadb(r->body ? r->body : "", r->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(doc)) {
		json_decref(doc);
		return fail(sv, c, r, 400, "invalid_request_error", NULL,
			    doc ? "the body must be a JSON object" :
				  "malformed JSON at line %d, column %d: %s", jerr.line, jerr.column,
			    jerr.text);
	}
	if (r->ep == SV_EP_EMBEDDINGS) {
		key = "input";
		if ((in = json_object_get(doc, "encoding_format")) &&
		    !(json_is_string(in) && !strcmp(json_string_value(in), "float"))) {
			json_decref(doc);
			return fail(sv, c, r, 400, "invalid_request_error", NULL,
				    "only \"encoding_format\": \"float\" is supported");
		}
	} else if (r->ep == SV_EP_RERANK) {
		key = "documents";
	} else {
		key = json_object_get(doc, "texts") ? "texts" : "text";
	}
	memset(&job, 0, sizeof(job));
	if (r->ep == SV_EP_RERANK && (st = rerank_options(doc, &top_n, &with_docs, &why))) {
		ok = fail(sv, c, r, (unsigned)st, "invalid_request_error", NULL, "%s", why);
		goto out;
	}
	if (r->ep == SV_EP_RERANK) {
		in = json_object_get(doc, "query");
		job.pair = json_string_value(in);
		job.pair_len = json_string_length(in);
	}
	if (!(in = json_object_get(doc, key))) {
		ok = fail(sv, c, r, 400, "invalid_request_error", NULL, "the body needs \"%s\"%s",
			  key, r->ep == SV_EP_PREDICT ? " (a string) or \"texts\" (an array)" : "");
		goto out;
	}
	if ((st = texts_of(in, &job, sv->max_inputs, &why))) {
		ok = fail(sv, c, r, (unsigned)st, st == 500 ? "internal_error" :
			  "invalid_request_error", NULL, "\"%s\": %s (at most %zu)", key, why,
			  sv->max_inputs);
		goto out;
	}
	if (r->coming)  /* NULL when it began before the server was ready */
		sv_engine_expect(r->coming, -1);
	r->coming = NULL;
	if ((st = sv_engine_submit(sv->engine, &job, &err))) {
		ok = st == NX_ELIMIT ? fail(sv, c, r, 503, "server_overloaded", NULL,
					    "the queue is full; retry after a second")
		     : fail(sv, c, r, 500, "internal_error", NULL, "%s", err.message);
		goto out;
	}
	sv_engine_wait(sv->engine, &job);
	if (job.rc)
		ok = fail(sv, c, r, 500, "internal_error", NULL, "%s", job.err.message);
	else if (r->ep == SV_EP_EMBEDDINGS)
		ok = answer_embeddings(sv, c, r, &job);
	else if (r->ep == SV_EP_RERANK)
		ok = answer_rerank(sv, c, r, &job, top_n, with_docs);
	else
		ok = answer_predict(sv, c, r, &job, json_is_string(in));
out:
	job_release(&job);
	json_decref(doc);
	return ok;
}

static enum MHD_Result route(struct sv_server *sv, struct MHD_Connection *c, struct sv_req *r,
			     const char *method)
{
	bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	size_t inflight;
	bool ready;

	pthread_mutex_lock(&sv->mu);
	ready = sv->ready;
	inflight = sv->inflight;
	pthread_mutex_unlock(&sv->mu);
	if (r->ep == SV_EP_OTHER)
		return fail(sv, c, r, 404, "not_found", NULL, "no such endpoint; see nexus_cli(1)");
	if ((r->ep <= SV_EP_METRICS && !get) || (r->ep > SV_EP_METRICS && !post))
		return fail(sv, c, r, 405, "method_not_allowed", NULL, "%s takes %s",
			    sv_endpoint_names[r->ep], r->ep <= SV_EP_METRICS ? "GET" : "POST");
	if (r->ep == SV_EP_METRICS)
		return reply(sv, c, r, 200, "text/plain; version=0.0.4; charset=utf-8",
			     sv_metrics_text(sv->metrics, ready && sv->engine ?
					     sv_engine_depth(sv->engine) : 0,
					     inflight, ready), 0);
	if (r->refuse)
		return fail(sv, c, r, 503, "shutting_down", NULL, "the server is shutting down");
	if (!ready)
		return fail(sv, c, r, 503, "not_ready", NULL,
			    "the model is loading (integrity check and warm-up)");
	if (r->ep == SV_EP_HEALTH)
		return reply_json(sv, c, r, 200, json_pack("{s:s,s:s}", "status", "ok", "model",
							   sv->b->manifest->bundle_id), 0);
	if ((r->ep == SV_EP_COMPLETIONS || r->ep == SV_EP_CHAT) != !!sv->gen)
		return fail(sv, c, r, 400, "invalid_request_error", NULL, sv->gen ?
			    "this bundle's task is generation; use POST /v1/completions" :
			    "this bundle's task is not generation; use POST /predict");
	if (sv->gen) {
		r->replied = true;
		return sv_gen_answer(sv, c, r->ep == SV_EP_CHAT, r->body, r->len, &r->status);
	}
	return infer(sv, c, r);
}

enum MHD_Result sv_http_handle(void *cls, struct MHD_Connection *c, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_size, void **con_cls)
{
	struct sv_server *sv = cls;
	struct sv_req *r = *con_cls;
	const char *cl;

	if (!r) {
		if (!(r = calloc(1, sizeof(*r))))
			return MHD_NO;
		r->t0 = nx_now();
		r->ep = endpoint_of(url);
		*con_cls = r;
		pthread_mutex_lock(&sv->mu);
		sv->inflight++;
		r->refuse = sv->draining;
		if (sv->ready && !r->refuse && r->ep >= SV_EP_EMBEDDINGS && r->ep <= SV_EP_RERANK)
			r->coming = sv->engine;
		pthread_mutex_unlock(&sv->mu);
		if (r->coming)
			sv_engine_expect(r->coming, 1);
		cl = sv->mhd.lookup_connection_value(c, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl && strtoull(cl, NULL, 10) > sv->max_body) {
			r->too_big = true;
			return fail(sv, c, r, 413, "payload_too_large", NULL,
				    "the body is larger than --max-body %zu bytes", sv->max_body);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		if (!r->too_big && !r->replied && r->len + *upload_size > sv->max_body) {
			r->too_big = true;
			free(r->body);
			r->body = NULL;
		} else if (!r->too_big && !r->replied) {
			char *b = realloc(r->body, r->len + *upload_size + 1);

			if (!b)
				return MHD_NO;
			memcpy(b + r->len, upload, *upload_size);
			r->body = b;
			r->len += *upload_size;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (r->replied)
		return MHD_YES;
	if (r->too_big)
		return fail(sv, c, r, 413, "payload_too_large", NULL,
			    "the body is larger than --max-body %zu bytes", sv->max_body);
	return route(sv, c, r, method);
}

void sv_http_completed(void *cls, struct MHD_Connection *c, void **con_cls,
		       enum MHD_RequestTerminationCode toe)
{
	struct sv_server *sv = cls;
	struct sv_req *r = *con_cls;

	if (!r)
		return;
	sv_metrics_request(sv->metrics, r->ep, r->status, nx_now() - r->t0);
	if (r->coming)
		sv_engine_expect(r->coming, -1);
	free(r->body);
	free(r);
	*con_cls = NULL;
	pthread_mutex_lock(&sv->mu);
	sv->inflight--;
	pthread_mutex_unlock(&sv->mu);
}
