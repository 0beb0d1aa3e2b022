/*
 * input.c - texts in, results out: the line reader of `run --input` and the
 * batcher that tokenizes into fixed slots and runs a batch when it is full.
 * A bad input never stops the others: it becomes {"error": ...} in place.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

struct rt_reader {
	FILE *f;
	bool close;
	char *line;
	size_t cap;
	long lineno;
};

int rt_reader_open(struct rt_reader **out, const char *path, nx_error *err)
{
	struct rt_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	if (!strcmp(path, "-")) {
		r->f = stdin;
	} else if (!(r->f = fopen(path, "rbe"))) {
		int e = errno;

		free(r);
		return nx_error_errno(err, NX_EIO, e, path, "cannot open %s", path);
	} else {
		r->close = true;
	}
	*out = r;
	return 0;
}

/* The line becomes an error result "line N: why"; returns 1 (one input). */
static int bad(struct rt_input *in, long lineno, const char *why)
{
	char msg[512];

	snprintf(msg, sizeof(msg), "line %ld: %s", lineno, why);
	in->error = strdup(msg);
	return in->error ? 1 : NX_ENOMEM;
}

int rt_reader_next(struct rt_reader *r, struct rt_input *in, nx_error *err)
{
	ssize_t n;
	json_t *j, *t, *pair;
	json_error_t jerr;

	memset(in, 0, sizeof(*in));
	errno = 0;
	n = getline(&r->line, &r->cap, r->f);
	if (n < 0)
		return errno ? nx_error_errno(err, NX_EIO, errno, NULL, "cannot read the input") : 0;
	r->lineno++;
	if (n > 0 && r->line[n - 1] == '\n')
		n--;
	if (n > 0 && r->line[n - 1] == '\r')
		n--;
	if ((size_t)n > RT_LINE_MAX)
		return bad(in, r->lineno, "longer than the 4 MiB line limit");
	if (n == 0 || r->line[0] != '{') {
		if (!(in->text = malloc((size_t)n + 1)))
			return NX_ENOMEM;
		memcpy(in->text, r->line, (size_t)n);
		in->text[n] = '\0';
		in->len = (size_t)n;
		return 1;
	}
	j = json_loadb(r->line, (size_t)n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
	if (!j)
		return bad(in, r->lineno, jerr.text);
	t = json_object_get(j, "text");
	if (!json_is_object(j) || !json_is_string(t)) {
		json_decref(j);
		return bad(in, r->lineno, "a JSON line must be an object with a \"text\" string");
	}
	pair = json_object_get(j, "text_pair");
	if (pair && !json_is_string(pair) && !json_is_null(pair)) {
		json_decref(j);
		return bad(in, r->lineno, "\"text_pair\" must be a string");
	}
	in->len = json_string_length(t);
	if ((in->text = malloc(in->len + 1)))
		memcpy(in->text, json_string_value(t), in->len + 1);
	if (in->text && json_is_string(pair)) {
		in->pair_len = json_string_length(pair);
		if ((in->pair = malloc(in->pair_len + 1)))
			memcpy(in->pair, json_string_value(pair), in->pair_len + 1);
		else {
			free(in->text);
			in->text = NULL;
		}
	}
	json_decref(j);
	return in->text ? 1 : NX_ENOMEM;
}

void rt_reader_free(struct rt_reader *r)
{
	if (!r)
		return;
	if (r->close)
		fclose(r->f);
	free(r->line);
	free(r);
}

void rt_input_release(struct rt_input *in)
{
	free(in->text);
	free(in->error);
	free(in->pair);
	memset(in, 0, sizeof(*in));
}

struct rt_batcher {
	struct rt_session *s;
	struct rt_bundle *b;
	rt_emit_fn emit;
	void *ctx;
	size_t cap, n;
	int64_t *idbuf;         /* cap slots of max_len ids */
	int64_t *typebuf, *maskbuf; /* their token type ids and attention masks */
	int64_t **ids, **types, **masks; /* valid slots, in order */
	size_t *lens;
	json_t **errors;        /* per slot: error result or NULL */
	json_t **results;
};

int rt_batcher_new(struct rt_batcher **out, struct rt_session *s, struct rt_bundle *b,
		   rt_emit_fn emit, void *ctx, nx_error *err)
{
	struct rt_batcher *q = calloc(1, sizeof(*q));
	size_t cap = b->set.batch_size;

	if (!q)
		goto nomem;
	q->s = s;
	q->b = b;
	q->emit = emit;
	q->ctx = ctx;
	q->cap = cap;
	q->idbuf = calloc(cap * b->set.max_len, sizeof(*q->idbuf));
	q->typebuf = calloc(cap * b->set.max_len, sizeof(*q->typebuf));
	q->maskbuf = calloc(cap * b->set.max_len, sizeof(*q->maskbuf));
	q->ids = calloc(cap, sizeof(*q->ids));
	q->types = calloc(cap, sizeof(*q->types));
	q->masks = calloc(cap, sizeof(*q->masks));
	q->lens = calloc(cap, sizeof(*q->lens));
	q->errors = calloc(cap, sizeof(*q->errors));
	q->results = calloc(cap, sizeof(*q->results));
	if (!q->idbuf || !q->typebuf || !q->maskbuf || !q->ids || !q->types || !q->masks ||
	    !q->lens || !q->errors || !q->results)
		goto nomem;
	*out = q;
	return 0;
nomem:
	rt_batcher_free(q);
	return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory for a batch of %zu", cap);
}

static json_t *error_result(const char *msg)
{
	return json_pack("{s:s}", "error", msg);
}

int rt_batcher_add(struct rt_batcher *q, const struct rt_input *in, nx_error *err)
{
	size_t slot = q->n;
	nx_error e;

	nx_error_clear(&e);
	q->errors[slot] = NULL;
	if (!in->text) {
		q->errors[slot] = error_result(in->error ? in->error : "bad input");
	} else if (nx_tokenizer_encode_pair(q->b->tok, in->text, in->len, in->pair, in->pair_len,
					    q->b->set.max_len, q->idbuf + slot * q->b->set.max_len,
					    q->typebuf + slot * q->b->set.max_len,
					    q->maskbuf + slot * q->b->set.max_len, NULL, &q->lens[slot],
					    &e)) {
		if (e.code == NX_ENOMEM)
			return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
		q->errors[slot] = error_result(e.message);
	}
	q->n++;
	return q->n == q->cap ? rt_batcher_flush(q, err) : 0;
}

int rt_batcher_flush(struct rt_batcher *q, nx_error *err)
{
	size_t i, nvalid = 0, k = 0;
	bool ran = false;
	int rc = 0;

	if (!q->n)
		return 0;
	for (i = 0; i < q->n; i++) {
		if (q->errors[i])
			continue;
		q->ids[nvalid] = q->idbuf + i * q->b->set.max_len;
		q->types[nvalid] = q->typebuf + i * q->b->set.max_len;
		q->masks[nvalid] = q->maskbuf + i * q->b->set.max_len;
		q->lens[nvalid] = q->lens[i];
		nvalid++;
	}
	if (nvalid && (rc = rt_session_run(q->s, q->b, q->ids, q->types, q->masks, q->lens, nvalid,
					      q->results, err)))
		goto out;
	ran = true;
	for (i = 0; i < q->n; i++) {
		json_t *r = q->errors[i] ? q->errors[i] : q->results[k++];

		q->errors[i] = NULL;
		if (!r) {
			rc = nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
			goto out;
		}
		rc = q->emit(q->ctx, r);
		json_decref(r);
		if (rc)
			goto out;
	}
	rc = q->emit(q->ctx, NULL);
out:
	for (i = 0; i < q->n; i++) {
		json_decref(q->errors[i]);
		q->errors[i] = NULL;
	}
	for (; ran && k < nvalid; k++)
		json_decref(q->results[k]);
	q->n = 0;
	return rc;
}

void rt_batcher_free(struct rt_batcher *q)
{
	if (!q)
		return;
	free(q->idbuf);
	free(q->typebuf);
	free(q->maskbuf);
	free(q->types);
	free(q->masks);
	free(q->ids);
	free(q->lens);
	free(q->errors);
	free(q->results);
	free(q);
}
