/*
 * serve_gen.c - POST /v1/completions and /v1/chat/completions of `nexus_cli
 * serve` on a generation bundle, in the shape of OpenAI's API, with
 * `"stream": true` as server-sent events ("data: {...}\n\n", the last
 * "data: [DONE]\n\n").
 *
 * One generation at a time (the slot): ONNX Runtime spreads one sequence
 * over the cores, and the tokenizer and decoder hold per-call buffers.
 * A request that does not stream runs on its own connection thread; a
 * streaming one runs on a thread of its own that appends events to the
 * job while libmicrohttpd's reader callback, on the connection thread,
 * sends them as they come.  When the client goes, libmicrohttpd frees the
 * response; the job is marked gone and the generation stops at its next
 * piece of text, freeing the slot.  Requests waiting for or holding the
 * slot are capped by --queue (beyond: 503).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nexus/chat_template.h"
#include "serve.h"

#define GEN_STREAM_BLOCK 4096   /* bytes libmicrohttpd asks the reader for at most */

struct sv_gen {
	struct rt_bundle *b;
	struct rt_session *s;
	nx_tokdecoder *dec;
	nx_chat_template *chat;         /* NULL: the tokenizer has no chat_template */
	struct rt_gen_params base;
	pthread_mutex_t slot;           /* held while generating */
	pthread_mutex_t mu;             /* the counters and every job's stream */
	pthread_cond_t idle;
	size_t queued, cap, threads;
	unsigned long serial;
};

struct gen_job {
	struct sv_gen *g;
	struct sv_mhd *mhd;
	json_t *doc;                    /* the request; stop strings point into it */
	char *prompt;
	size_t plen;
	struct rt_gen_params p;
	bool chat, stream;
	const char *model;
	char id[48];
	long long created;
	/* under g->mu */
	pthread_cond_t more;
	char *buf;                      /* events not sent yet */
	size_t len, cap, sent;
	bool started, done, gone, role_sent;
	int refs;
	/* set by the generating thread before done */
	struct rt_gen_result res;
	int rc;
	nx_error err;
};

static enum MHD_Result send_json(struct sv_mhd *m, struct MHD_Connection *c, unsigned *status,
				 unsigned code, json_t *doc)
{
	char *body = doc ? json_dumps(doc, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	struct MHD_Response *resp;
	enum MHD_Result ok;
	size_t len;
	char *nl;

	json_decref(doc);
	if (!body)
		return MHD_NO;
	len = strlen(body);
	if (!(nl = realloc(body, len + 2))) {
		free(body);
		return MHD_NO;
	}
	memcpy(nl + len, "\n", 2);
	if (!(resp = m->create_response_from_buffer(len + 1, nl, MHD_RESPMEM_MUST_FREE))) {
		free(nl);
		return MHD_NO;
	}
	m->add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (code == 503)
		m->add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
	ok = m->queue_response(c, code, resp);
	m->destroy_response(resp);
	*status = code;
	return ok;
}

static json_t *error_doc(unsigned code, const char *type, const char *reason, const char *msg)
{
	json_t *e = json_pack("{s:s,s:s,s:i}", "message", msg, "type", type, "code", (int)code);

	if (e && reason)
		json_object_set_new(e, "reason", json_string(reason));
	return e ? json_pack("{s:o}", "error", e) : NULL;
}

static enum MHD_Result send_error(struct sv_mhd *m, struct MHD_Connection *c, unsigned *status,
				  unsigned code, const char *type, const char *reason,
				  const char *fmt, ...) __attribute__((format(printf, 7, 8)));
static enum MHD_Result send_error(struct sv_mhd *m, struct MHD_Connection *c, unsigned *status,
				  unsigned code, const char *type, const char *reason,
				  const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return send_json(m, c, status, code, error_doc(code, type, reason, msg));
}

/* OpenAI reads EOS and a stop string alike */
static const char *finish_of(const struct rt_gen_result *r)
{
	return !strcmp(r->finish, "length") ? "length" : "stop";
}

static json_t *usage_of(const struct rt_gen_result *r)
{
	return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)r->prompt_tokens,
			 "completion_tokens", (json_int_t)r->nids,
			 "total_tokens", (json_int_t)(r->prompt_tokens + r->nids));
}

/* One choice of a streamed chunk: text (NULL: none) and finish (NULL: null). */
static json_t *chunk(struct gen_job *j, const char *text, size_t len, const char *finish)
{
	json_t *choice, *delta;

	if (j->chat) {
		delta = json_object();
		if (delta && !j->role_sent)
			json_object_set_new(delta, "role", json_string("assistant"));
		if (delta && text)
			json_object_set_new(delta, "content", json_stringn(text, len));
		j->role_sent = true;
		choice = json_pack("{s:i,s:o,s:s?}", "index", 0, "delta", delta, "finish_reason",
				   finish);
		if (choice && !finish)
			json_object_set_new(choice, "finish_reason", json_null());
	} else {
		choice = json_pack("{s:i,s:s%,s:n,s:s?}", "index", 0, "text", text ? text : "",
				   text ? len : 0, "logprobs", "finish_reason", finish);
		if (choice && !finish)
			json_object_set_new(choice, "finish_reason", json_null());
	}
	return json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", j->id, "object",
			 j->chat ? "chat.completion.chunk" : "text_completion", "created",
			 (json_int_t)j->created, "model", j->model, "choices", choice);
}

/* Append "data: DOC\n\n" (doc taken; NULL doc: "[DONE]") under g->mu. */
static int put_event(struct gen_job *j, json_t *doc, bool done_mark)
{
	char *s = done_mark ? strdup("[DONE]") : doc ? json_dumps(doc, JSON_COMPACT |
								 JSON_ENSURE_ASCII) : NULL;
	size_t n = s ? strlen(s) + 8 : 0;
	int rc = 0;

	json_decref(doc);
	if (!s)
		return -1;
	if (nx_array_grow(&j->buf, &j->cap, j->len + n + 1, 1, SIZE_MAX)) {
		free(s);
		return -1;
	}
	j->len += (size_t)snprintf(j->buf + j->len, j->cap - j->len, "data: %s\n\n", s);
	free(s);
	pthread_cond_broadcast(&j->more);
	return rc;
}

/* rt_generate's text callback: one event per piece; nonzero once the
 * client is gone, which ends the generation. */
static int on_piece(void *ctx, const char *piece, size_t len)
{
	struct gen_job *j = ctx;
	int rc;

	pthread_mutex_lock(&j->g->mu);
	rc = j->gone ? -1 : put_event(j, chunk(j, piece, len, NULL), false);
	j->started = true;
	pthread_mutex_unlock(&j->g->mu);
	return rc;
}

static void job_unref(struct gen_job *j)
{
	struct sv_gen *g = j->g;
	bool last;

	pthread_mutex_lock(&g->mu);
	last = --j->refs == 0;
	pthread_mutex_unlock(&g->mu);
	if (!last)
		return;
	rt_gen_result_release(&j->res);
	pthread_cond_destroy(&j->more);
	json_decref(j->doc);
	free(j->prompt);
	free(j->buf);
	free(j);
}

/* Generate in the slot; the result in j->res / j->rc. */
static void generate(struct gen_job *j)
{
	struct sv_gen *g = j->g;

	pthread_mutex_lock(&g->slot);
	nx_error_clear(&j->err);
	j->rc = rt_generate(g->s, g->b, g->dec, j->prompt, j->plen, &j->p,
			    j->stream ? on_piece : NULL, j, &j->res, &j->err);
	pthread_mutex_unlock(&g->slot);
	pthread_mutex_lock(&g->mu);
	g->queued--;
	pthread_mutex_unlock(&g->mu);
}

static void *stream_thread(void *arg)
{
	struct gen_job *j = arg;
	struct sv_gen *g = j->g;

	generate(j);
	pthread_mutex_lock(&g->mu);
	if (j->gone && j->rc == NX_EIO) {
		fprintf(stderr, "nexus_cli serve: %s: the client went away; generation stopped\n",
			j->id);
	} else if (!j->gone && j->started) {
		/* the text went out: what is left is its end, or an error event */
		if (j->rc || j->res.error)
			put_event(j, error_doc(j->rc ? 500 : 422, j->rc ? "internal_error" :
					       "invalid_input", j->rc ? NULL : j->res.code,
					       j->rc ? j->err.message : j->res.error), false);
		else {
			json_t *last = chunk(j, NULL, 0, finish_of(&j->res));

			if (last)
				json_object_set_new(last, "usage", usage_of(&j->res));
			put_event(j, last, false);
		}
		put_event(j, NULL, true);
	}
	j->done = true;
	pthread_cond_broadcast(&j->more);
	g->threads--;
	pthread_cond_broadcast(&g->idle);
	pthread_mutex_unlock(&g->mu);
	job_unref(j);
	return NULL;
}

/* libmicrohttpd asks for the next bytes of the stream; blocking here is
 * allowed with a thread per connection. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct gen_job *j = cls;
	ssize_t n = MHD_CONTENT_READER_END_OF_STREAM;

	(void)pos;
	pthread_mutex_lock(&j->g->mu);
	while (j->sent == j->len && !j->done)
		pthread_cond_wait(&j->more, &j->g->mu);
	if (j->sent < j->len) {
		n = (ssize_t)(j->len - j->sent < max ? j->len - j->sent : max);
		memcpy(buf, j->buf + j->sent, (size_t)n);
		j->sent += (size_t)n;
		if (j->sent == j->len)
			j->sent = j->len = 0;
	}
	pthread_mutex_unlock(&j->g->mu);
	return n;
}

/* The response is gone (sent, or the client closed the connection). */
static void stream_free(void *cls)
{
	struct gen_job *j = cls;

	pthread_mutex_lock(&j->g->mu);
	j->gone = true;
	pthread_mutex_unlock(&j->g->mu);
	job_unref(j);
}

/* The settings of a request over the bundle's defaults; 0 or a message. */
static const char *settings_of(struct gen_job *j, json_t *doc)
{
	static const struct { const char *api, *ours; } num[] = {
		{ "max_tokens", "max_new_tokens" }, { "max_completion_tokens", "max_new_tokens" },
		{ "temperature", "temperature" }, { "top_p", "top_p" }, { "top_k", "top_k" },
		{ "seed", "seed" }, { "repetition_penalty", "repetition_penalty" },
	};
	static const char *const zero[] = { "frequency_penalty", "presence_penalty" };
	const char *why = NULL;
	json_t *v, *x;
	size_t i;

	for (i = 0; i < sizeof(num) / sizeof(num[0]); i++) {
		if (!(v = json_object_get(doc, num[i].api)) || json_is_null(v))
			continue;
		if (!json_is_number(v))
			return "max_tokens, temperature, top_p, top_k, seed and repetition_penalty "
			       "must be numbers";
		if (rt_gen_set(&j->p, num[i].ours, json_number_value(v), true, &why))
			return why;
	}
	for (i = 0; i < sizeof(zero) / sizeof(zero[0]); i++)
		if ((v = json_object_get(doc, zero[i])) && !json_is_null(v) &&
		    !(json_is_number(v) && json_number_value(v) == 0))
			return "frequency_penalty and presence_penalty are not supported (use "
			       "repetition_penalty)";
	if ((v = json_object_get(doc, "n")) && !json_is_null(v) &&
	    !(json_is_integer(v) && json_integer_value(v) == 1))
		return "only \"n\": 1 is supported";
	if ((v = json_object_get(doc, "echo")) && json_is_true(v))
		return "\"echo\" is not supported";
	if ((v = json_object_get(doc, "logprobs")) && !json_is_null(v) && !json_is_false(v))
		return "\"logprobs\" is not supported";
	if ((v = json_object_get(doc, "stream")) && !json_is_null(v) && !json_is_boolean(v))
		return "\"stream\" must be true or false";
	j->stream = json_is_true(v);
	if ((v = json_object_get(doc, "stop")) && !json_is_null(v)) {
		j->p.nstop = 0;
		if (json_is_string(v) && json_string_length(v)) {
			j->p.stop[j->p.nstop++] = json_string_value(v);
		} else if (json_is_array(v) && json_array_size(v) <= RT_GEN_STOP_MAX) {
			json_array_foreach(v, i, x) {
				if (!json_is_string(x) || !json_string_length(x))
					return "\"stop\" must list non-empty strings";
				j->p.stop[j->p.nstop++] = json_string_value(x);
			}
		} else {
			return "\"stop\" must be a non-empty string or a list of at most 16";
		}
	}
	return NULL;
}

/* The prompt of the request: "prompt", or "messages" through the chat
 * template.  0, or an HTTP status with a message in msg. */
static unsigned prompt_of(struct gen_job *j, json_t *doc, char *msg, size_t size)
{
	json_t *v;
	char *msgs;
	nx_error err;
	int rc;

	if (!j->chat) {
		v = json_object_get(doc, "prompt");
		if (json_is_array(v) && json_array_size(v) == 1)
			v = json_array_get(v, 0);
		if (!json_is_string(v)) {
			snprintf(msg, size, "the body needs \"prompt\" (a string)");
			return 400;
		}
		j->plen = json_string_length(v);
		if (!(j->prompt = malloc(j->plen + 1)))
			return 500;
		memcpy(j->prompt, json_string_value(v), j->plen + 1);
		return 0;
	}
	if (!j->g->chat) {
		snprintf(msg, size, "this bundle's tokenizer has no chat_template (%s); use POST "
			 "/v1/completions with a prompt", NX_BUNDLE_TOKENIZER_CONFIG);
		return 400;
	}
	v = json_object_get(doc, "messages");
	if (!json_is_array(v) || !json_array_size(v)) {
		snprintf(msg, size, "the body needs \"messages\" (a non-empty list of {\"role\", "
			 "\"content\"})");
		return 400;
	}
	if (!(msgs = json_dumps(v, JSON_COMPACT)))
		return 500;
	nx_error_clear(&err);
	rc = nx_chat_template_render(j->g->chat, msgs, strlen(msgs), true, &j->prompt, &j->plen,
				     &err);
	free(msgs);
	if (rc == NX_ENOMEM)
		return 500;
	if (rc) {       /* the messages do not fit the template */
		snprintf(msg, size, "the chat template cannot render these messages: %s",
			 err.message);
		return 400;
	}
	return 0;
}

static enum MHD_Result answer_whole(struct sv_server *sv, struct MHD_Connection *c,
				    unsigned *status, struct gen_job *j)
{
	const struct rt_gen_result *r = &j->res;
	json_t *choice;

	if (j->rc)
		return send_error(&sv->mhd, c, status, 500, "internal_error", NULL, "%s",
				  j->err.message);
	if (r->error)
		return send_error(&sv->mhd, c, status, 422, "invalid_input", r->code, "%s",
				  r->error);
	choice = j->chat ? json_pack("{s:i,s:{s:s,s:s%},s:s}", "index", 0, "message", "role",
				     "assistant", "content", r->text, r->len, "finish_reason",
				     finish_of(r))
		 : json_pack("{s:i,s:s%,s:n,s:s}", "index", 0, "text", r->text, r->len, "logprobs",
			     "finish_reason", finish_of(r));
	return send_json(&sv->mhd, c, status, 200,
			 json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o}", "id", j->id, "object",
				   j->chat ? "chat.completion" : "text_completion", "created",
				   (json_int_t)j->created, "model", j->model, "choices", choice,
				   "usage", usage_of(r)));
}

/* Start the stream once its first piece (or the end) is there, so that a
 * prompt the model cannot take is still a JSON error with its status. */
static enum MHD_Result answer_stream(struct sv_server *sv, struct MHD_Connection *c,
				     unsigned *status, struct gen_job *j)
{
	struct sv_gen *g = j->g;
	struct MHD_Response *resp;
	pthread_t t;
	enum MHD_Result ok;
	int rc;

	pthread_mutex_lock(&g->mu);
	j->refs = 2;
	g->threads++;
	pthread_mutex_unlock(&g->mu);
	if ((rc = pthread_create(&t, NULL, stream_thread, j))) {
		pthread_mutex_lock(&g->mu);
		g->threads--;
		g->queued--;
		j->refs = 1;
		pthread_mutex_unlock(&g->mu);
		return send_error(&sv->mhd, c, status, 500, "internal_error", NULL,
				  "cannot start a thread: %s", strerror(rc));
	}
	pthread_detach(t);
	pthread_mutex_lock(&g->mu);
	while (!j->started && !j->done)
		pthread_cond_wait(&j->more, &g->mu);
	pthread_mutex_unlock(&g->mu);
	if (!j->started)     /* done before any text: answered whole (an error too) */
		return answer_whole(sv, c, status, j);
	resp = sv->mhd.create_response_from_callback(MHD_SIZE_UNKNOWN, GEN_STREAM_BLOCK,
						     stream_read, j, stream_free);
	if (!resp) {
		pthread_mutex_lock(&g->mu);
		j->gone = true;
		pthread_mutex_unlock(&g->mu);
		return MHD_NO;
	}
	pthread_mutex_lock(&g->mu);
	j->refs++;   /* the response's; stream_free drops it */
	pthread_mutex_unlock(&g->mu);
	sv->mhd.add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	sv->mhd.add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	ok = sv->mhd.queue_response(c, 200, resp);
	sv->mhd.destroy_response(resp);
	*status = 200;
	return ok;
}

enum MHD_Result sv_gen_answer(struct sv_server *sv, struct MHD_Connection *c, bool chat,
			      const char *body, size_t len, unsigned *status)
{
	struct sv_gen *g = sv->gen;
	struct gen_job *j;
	json_error_t jerr;
	enum MHD_Result ok;
	const char *why;
	char msg[1200];
	unsigned st;
	bool full;
	int rc;

	if (!(j = calloc(1, sizeof(*j))))
		return MHD_NO;
	if ((rc = pthread_cond_init(&j->more, NULL))) {
		free(j);
		return send_error(&sv->mhd, c, status, 500, "internal_error", NULL,
				  "cannot make the request's condition: %s", strerror(rc));
	}
	j->g = g;
	j->refs = 1;
	j->chat = chat;
	j->p = g->base;
	j->p.rendered = chat;
	j->model = sv->b->manifest->bundle_id;
	j->created = (long long)time(NULL);
	pthread_mutex_lock(&g->mu);
	snprintf(j->id, sizeof(j->id), "%s-%lld-%lu", chat ? "chatcmpl" : "cmpl", j->created,
		 ++g->serial);
	pthread_mutex_unlock(&g->mu);
	j->doc = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(j->doc)) {
		ok = j->doc ? send_error(&sv->mhd, c, status, 400, "invalid_request_error", NULL,
					 "the body must be a JSON object")
		     : send_error(&sv->mhd, c, status, 400, "invalid_request_error", NULL,
				  "malformed JSON at line %d, column %d: %s", jerr.line,
				  jerr.column, jerr.text);
		goto out;
	}
	if ((why = settings_of(j, j->doc))) {
		ok = send_error(&sv->mhd, c, status, 400, "invalid_request_error", NULL, "%s", why);
		goto out;
	}
	if ((st = prompt_of(j, j->doc, msg, sizeof(msg)))) {
		ok = send_error(&sv->mhd, c, status, st, st == 500 ? "internal_error" :
				"invalid_request_error", NULL, "%s", st == 500 ? "out of memory" : msg);
		goto out;
	}
	pthread_mutex_lock(&g->mu);
	if (!(full = g->queued >= g->cap))
		g->queued++;
	pthread_mutex_unlock(&g->mu);
	if (full) {
		ok = send_error(&sv->mhd, c, status, 503, "server_overloaded", NULL,
				"%zu requests are waiting (--queue); retry after a second", g->cap);
		goto out;
	}
	if (j->stream) {
		ok = answer_stream(sv, c, status, j);
		goto out;
	}
	generate(j);
	ok = answer_whole(sv, c, status, j);
out:
	job_unref(j);
	return ok;
}

int sv_gen_start(struct sv_gen **out, struct rt_bundle *b, struct rt_session *s, size_t queue,
		 nx_error *err)
{
	struct sv_gen *g = calloc(1, sizeof(*g));
	struct rt_gen_params p;
	struct rt_gen_result res;
	int rc;

	if (!g)
		return nx_error_oom(err, NULL);
	g->b = b;
	g->s = s;
	g->cap = queue;
	if ((rc = pthread_mutex_init(&g->slot, NULL)))
		goto no_slot;
	if ((rc = pthread_mutex_init(&g->mu, NULL)))
		goto no_mu;
	if ((rc = pthread_cond_init(&g->idle, NULL)))
		goto no_idle;
	if ((rc = rt_gen_defaults(&g->base, b, err)) ||
	    (rc = nx_tokdecoder_new(&g->dec, b->tok, RT_TOKENIZER, err)) ||
	    (rc = rt_chat_load(&g->chat, b, false, err)))
		goto fail;
	/* the warm-up: one token, so that the first client does not pay for
	 * the first Run's allocations */
	p = g->base;
	p.max_new_tokens = 1;
	p.do_sample = false;
	p.nstop = 0;
	rc = rt_generate(s, b, g->dec, "a", 1, &p, NULL, NULL, &res, err);
	rt_gen_result_release(&res);
	if (rc)
		goto fail;
	*out = g;
	return 0;
fail:
	sv_gen_stop(g);
	return rc;
no_idle:
	pthread_mutex_destroy(&g->mu);
no_mu:
	pthread_mutex_destroy(&g->slot);
no_slot:
	free(g);
	return nx_error_errno(err, NX_EIO, rc, NULL, "cannot make the generation queue's locks");
}

void sv_gen_stop(struct sv_gen *g)
{
	if (!g)
		return;
	/* streams still running end at their next piece once their client
	 * is gone (libmicrohttpd stopped before this) */
	pthread_mutex_lock(&g->mu);
	while (g->threads)
		pthread_cond_wait(&g->idle, &g->mu);
	pthread_mutex_unlock(&g->mu);
	nx_tokdecoder_free(g->dec);
	nx_chat_template_free(g->chat);
	pthread_cond_destroy(&g->idle);
	pthread_mutex_destroy(&g->mu);
	pthread_mutex_destroy(&g->slot);
	free(g);
}
