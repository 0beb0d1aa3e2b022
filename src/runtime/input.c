/*
 * input.c - texts in, results out: the line reader of `run --input` and the
 * batcher that tokenizes into fixed slots and runs a batch when it is full.
 * A bad input never stops the others: it becomes {"error": ...} in place.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"

struct rt_reader {
	FILE *f;
	bool close;
	bool stream;            /* not a regular file: a pipe, a socket, a terminal */
	char *line;
	size_t cap;
	long lineno;
	/* a stream is read by hand, not through stdio: rt_reader_idle must
	 * take in what has arrived without blocking, and getline blocks on a
	 * line whose start is in the pipe and whose end is not */
	char *buf;
	size_t start, end, bcap;  /* buf[start, end) is read and not yet returned */
	bool eof;
	int rerr;                 /* errno of a read that failed in rt_reader_idle */
};

int rt_reader_open(struct rt_reader **out, const char *path, nx_error *err)
{
	struct rt_reader *r = calloc(1, sizeof(*r));
	struct stat st;

	if (!r)
		return nx_error_oom(err, NULL);
	if (!strcmp(path, "-")) {
		r->f = stdin;
	} else if (!(r->f = fopen(path, "rbe"))) {
		int e = errno;

		free(r);
		return nx_error_errno(err, NX_EIO, e, path, "cannot open %s", path);
	} else {
		r->close = true;
	}
	r->stream = fstat(fileno(r->f), &st) != 0 || !S_ISREG(st.st_mode);
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

/* One read(2) of a stream into buf: whatever has arrived, or (blocking)
 * the next piece.  Returns 0, or an errno. */
static int fill(struct rt_reader *r)
{
	ssize_t n;

	if (r->start) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	if (r->end == r->bcap) {
		size_t cap = r->bcap ? 2 * r->bcap : 64u << 10;
		char *b = cap > r->bcap ? realloc(r->buf, cap) : NULL;

		if (!b)
			return ENOMEM;
		r->buf = b;
		r->bcap = cap;
	}
	do
		n = read(fileno(r->f), r->buf + r->end, r->bcap - r->end);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno;
	if (n == 0)
		r->eof = true;
	r->end += (size_t)n;
	return 0;
}

static bool whole_line(const struct rt_reader *r)
{
	return memchr(r->buf + r->start, '\n', r->end - r->start) != NULL;
}

/*
 * True when the next line is not here yet: nothing of it has arrived, or
 * only a part.  `run --input -` answers what it has read at that point
 * instead of waiting for a full window: a client that writes one line and
 * waits for its answer (a pipe, a co-process) would otherwise wait for
 * ever, and so would one whose writes end inside a line (a block-buffered
 * writer).  What has arrived is taken in without blocking (poll, then one
 * read), so the start of a line waiting in the pipe is seen as a part.
 * A regular file is never idle: files keep the whole window.
 */
bool rt_reader_idle(struct rt_reader *r)
{
	struct pollfd p = { .fd = fileno(r->f), .events = POLLIN };

	if (!r->stream || r->eof || r->rerr || whole_line(r))
		return false;
	if (poll(&p, 1, 0) <= 0)
		return true;
	if ((r->rerr = fill(r)))
		return false;   /* rt_reader_next reports it */
	return !r->eof && !whole_line(r);
}

/* The next line of a stream, its '\n' included, into r->line; n < 0 at
 * the end, errno set on an error. */
static ssize_t stream_line(struct rt_reader *r)
{
	const char *nl;
	size_t n;
	int e;

	while (!(nl = memchr(r->buf + r->start, '\n', r->end - r->start)) && !r->eof) {
		if ((e = r->rerr ? r->rerr : fill(r))) {
			errno = e;
			return -1;
		}
	}
	n = nl ? (size_t)(nl - (r->buf + r->start)) + 1 : r->end - r->start;
	if (!n) {
		errno = 0;
		return -1;
	}
	if (n + 1 > r->cap) {
		char *l = realloc(r->line, n + 1);

		if (!l) {
			errno = ENOMEM;
			return -1;
		}
		r->line = l;
		r->cap = n + 1;
	}
	memcpy(r->line, r->buf + r->start, n);
	r->line[n] = '\0';
	r->start += n;
	return (ssize_t)n;
}

bool rt_reader_stream(const struct rt_reader *r)
{
	return r->stream;
}

int rt_reader_next(struct rt_reader *r, struct rt_input *in, nx_error *err)
{
	ssize_t n;
	json_t *j, *t, *pair;
	json_error_t jerr;

	memset(in, 0, sizeof(*in));
	errno = 0;
	n = r->stream ? stream_line(r) : getline(&r->line, &r->cap, r->f);
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
	if (!t)         /* generate: {"prompt": ...}, as OpenAI's completions */
		t = json_object_get(j, "prompt");
	if (!t && json_is_array(json_object_get(j, "messages"))) {
		/* generate --chat: the list, for the chat template */
		in->obj = j;
		in->text = json_dumps(json_object_get(j, "messages"), JSON_COMPACT);
		in->len = in->text ? strlen(in->text) : 0;
		return in->text ? 1 : NX_ENOMEM;
	}
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
	in->obj = j;            /* generate reads its per-request settings */
	return in->text ? 1 : NX_ENOMEM;
}

void rt_reader_free(struct rt_reader *r)
{
	if (!r)
		return;
	if (r->close)
		fclose(r->f);
	free(r->line);
	free(r->buf);
	free(r);
}

void rt_input_release(struct rt_input *in)
{
	free(in->text);
	free(in->error);
	free(in->pair);
	json_decref(in->obj);
	memset(in, 0, sizeof(*in));
}

/*
 * The batcher reads a window of inputs (rt_batcher_window: at least
 * RT_RUN_WINDOW, or RT_WINDOW_BATCHES batches), sorts the ones that
 * tokenized by length and cuts the sorted window where padding would cost
 * more than another Run (rt_plan_batches), at most batch_size texts per
 * batch, then emits the window in input order.  Padding to the longest of 8 random texts cost
 * 1.3-2x on real workloads; fixed batches of 8 over a sorted window of 128
 * still ran 8% padded tokens on bench/run.py's 300 mixed texts, and a
 * batch of 1 (no padding) took 5% less CPU than that on the DistilBERT-
 * shaped classifier.
 */
struct rt_batcher {
	struct rt_session *s;
	struct rt_bundle *b;
	rt_emit_fn emit;
	void *ctx;
	size_t cap, n, nvalid;  /* window slots, used, tokenized */
	bool one_run;           /* the caller's window of one batch (serve cuts): one Run */
	int64_t *idbuf;         /* cap slots of max_len ids */
	int64_t *typebuf, *maskbuf; /* their token type ids and attention masks */
	size_t *lens;           /* per slot */
	size_t *order;          /* valid slots, sorted by length */
	size_t *slens;          /* their lengths, in that order */
	uint64_t *best;         /* rt_plan_batches: cap + 1 entries */
	size_t *from;           /* cap + 1 entries */
	int64_t **ids, **types, **masks; /* one batch: its rows */
	size_t *blens;
	json_t **out;           /* one batch: its results */
	json_t **results;       /* per slot: result or error result */
};

size_t rt_batcher_window(const struct rt_bundle *b)
{
	size_t bs = b->set.batch_size, cap = bs * RT_WINDOW_BATCHES;
	size_t wide = RT_RUN_WINDOW_TOKENS / b->set.max_len;

	/* a wider window sorts denser lengths together (less padding); its
	 * buffers hold max_sequence_length tokens per input */
	if (cap < RT_RUN_WINDOW && wide > cap)
		cap = wide < RT_RUN_WINDOW ? wide : RT_RUN_WINDOW;
	if (cap > RT_WINDOW_MAX)
		cap = bs > RT_WINDOW_MAX ? bs : RT_WINDOW_MAX;
	return cap;
}

int rt_batcher_new(struct rt_batcher **out, struct rt_session *s, struct rt_bundle *b,
		   size_t cap, rt_emit_fn emit, void *ctx, nx_error *err)
{
	struct rt_batcher *q = calloc(1, sizeof(*q));
	size_t bs = b->set.batch_size;

	if (!q)
		goto nomem;
	/* serve passes its own cut, at most a batch: run it as it is.  Not
	 * inferred from the window's size, which is one batch for `run` too
	 * when batch_size >= RT_WINDOW_MAX */
	q->one_run = cap && cap <= bs;
	if (!cap)
		cap = rt_batcher_window(b);
	q->s = s;
	q->b = b;
	q->emit = emit;
	q->ctx = ctx;
	q->cap = cap;
	q->idbuf = calloc(cap * b->set.max_len, sizeof(*q->idbuf));
	q->typebuf = calloc(cap * b->set.max_len, sizeof(*q->typebuf));
	q->maskbuf = calloc(cap * b->set.max_len, sizeof(*q->maskbuf));
	q->types = calloc(bs, sizeof(*q->types));
	q->masks = calloc(bs, sizeof(*q->masks));
	q->lens = calloc(cap, sizeof(*q->lens));
	q->order = calloc(cap, sizeof(*q->order));
	q->slens = calloc(cap, sizeof(*q->slens));
	q->best = calloc(cap + 1, sizeof(*q->best));
	q->from = calloc(cap + 1, sizeof(*q->from));
	q->ids = calloc(bs, sizeof(*q->ids));
	q->blens = calloc(bs, sizeof(*q->blens));
	q->out = calloc(bs, sizeof(*q->out));
	q->results = calloc(cap, sizeof(*q->results));
	if (!q->idbuf || !q->typebuf || !q->maskbuf || !q->types || !q->masks || !q->lens ||
	    !q->order || !q->slens || !q->best || !q->from || !q->ids || !q->blens || !q->out || !q->results)
		goto nomem;
	*out = q;
	return 0;
nomem:
	rt_batcher_free(q);
	return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory for a batch of %zu", bs);
}

static json_t *error_result(const char *msg, const char *code)
{
	return code ? json_pack("{s:s,s:s}", "error", msg, "code", code)
		    : json_pack("{s:s}", "error", msg);
}

/* slot now holds an input: one to run (valid) or its error result; a full
 * window runs */
static int added(struct rt_batcher *q, size_t slot, bool valid, nx_error *err)
{
	if (valid)
		q->order[q->nvalid++] = slot;
	q->n++;
	return q->n == q->cap ? rt_batcher_flush(q, err) : 0;
}

int rt_batcher_add(struct rt_batcher *q, const struct rt_input *in, nx_error *err)
{
	size_t slot = q->n;
	const char *why = NULL;
	nx_error e;

	nx_error_clear(&e);
	q->results[slot] = NULL;
	if (!in->text) {
		why = in->error ? in->error : "bad input";
	} else if (nx_tokenizer_encode_pair(q->b->tok, in->text, in->len, in->pair, in->pair_len,
					    q->b->set.max_len, q->idbuf + slot * q->b->set.max_len,
					    q->typebuf + slot * q->b->set.max_len,
					    q->maskbuf + slot * q->b->set.max_len, NULL, &q->lens[slot],
					    &e)) {
		if (e.code == NX_ENOMEM)
			return nx_error_oom(err, NULL);
		why = e.message;
	}
	if (why && !(q->results[slot] = error_result(why, NULL)))
		return nx_error_oom(err, NULL);
	return added(q, slot, !why, err);
}

int rt_batcher_add_encoded(struct rt_batcher *q, const int64_t *ids, const int64_t *types,
			   const int64_t *mask, size_t n, nx_error *err)
{
	size_t slot = q->n, ml = q->b->set.max_len;

	if (n > ml)
		return nx_error_set(err, NX_EINTERNAL, NULL, 0, -1,
				    "an encoding of %zu ids in a batch of %zu", n, ml);
	q->results[slot] = NULL;
	memcpy(q->idbuf + slot * ml, ids, n * sizeof(*ids));
	memcpy(q->typebuf + slot * ml, types, n * sizeof(*types));
	memcpy(q->maskbuf + slot * ml, mask, n * sizeof(*mask));
	q->lens[slot] = n;
	return added(q, slot, true, err);
}

/* qsort context: C11 qsort has none, so the lengths travel in the keys */
struct keyed { size_t len, slot; };

static int by_length(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;

	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/*
 * Run rows[0..n) of the sorted window as one batch.  When ONNX Runtime
 * rejects the batch (a text longer than the model's positions, a shape
 * only some inputs break), each input runs alone, so that only the ones it
 * rejects get {"error": ..., "code": "model-error"}.
 */
static int run_batch(struct rt_batcher *q, const size_t *slots, size_t n, nx_error *err)
{
	size_t i, ml = q->b->set.max_len;
	nx_error e;
	int rc;

	for (i = 0; i < n; i++) {
		q->ids[i] = q->idbuf + slots[i] * ml;
		q->types[i] = q->typebuf + slots[i] * ml;
		q->masks[i] = q->maskbuf + slots[i] * ml;
		q->blens[i] = q->lens[slots[i]];
	}
	nx_error_clear(&e);
	rc = rt_session_run(q->s, q->b, q->ids, q->types, q->masks, q->blens, n, q->out, &e);
	if (!rc) {
		for (i = 0; i < n; i++)
			q->results[slots[i]] = q->out[i];
		return 0;
	}
	if (!rt_session_run_failed(q->s)) {
		*err = e;
		return rc;
	}
	if (n == 1) {
		char msg[sizeof(e.message) + 64];

		snprintf(msg, sizeof(msg), "model-error: the model failed on this input: %s",
			 e.message);
		q->results[slots[0]] = error_result(msg, "model-error");
		return q->results[slots[0]] ? 0 : nx_error_oom(err, NULL);
	}
	for (i = 0; i < n; i++)
		if ((rc = run_batch(q, slots + i, 1, err)))
			return rc;
	return 0;
}

void rt_plan_batches(const size_t *lens, const size_t *texts, size_t n, size_t batch,
		     uint64_t *best, size_t *from)
{
	size_t i, k, m;

	best[0] = 0;
	for (i = 1; i <= n; i++) {
		best[i] = UINT64_MAX;
		for (k = i, m = 0; k-- > 0;) {   /* the last batch is k..i-1 */
			uint64_t c;

			m += texts ? texts[k] : 1;
			if (k < i - 1 && m > batch)
				break;
			c = best[k] + RT_RUN_COST + (uint64_t)m * lens[i - 1];
			if (c < best[i]) {
				best[i] = c;
				from[i] = k;
			}
		}
	}
}

int rt_batcher_flush(struct rt_batcher *q, nx_error *err)
{
	size_t i, j, bs = q->b->set.batch_size, *slots = NULL;
	struct keyed *k = NULL;
	int rc = 0;

	if (!q->n)
		return 0;
	if (q->nvalid && q->one_run) {
		/* a window of one batch is the caller's cut (serve): one Run */
		if ((rc = run_batch(q, q->order, q->nvalid, err)))
			goto out;
	} else if (q->nvalid) {
		k = malloc(q->nvalid * sizeof(*k));
		slots = malloc(q->nvalid * sizeof(*slots));
		if (!k || !slots) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		for (i = 0; i < q->nvalid; i++)
			k[i] = (struct keyed){ q->lens[q->order[i]], q->order[i] };
		qsort(k, q->nvalid, sizeof(*k), by_length);
		for (i = 0; i < q->nvalid; i++) {
			slots[i] = k[i].slot;
			q->slens[i] = k[i].len;
		}
		rt_plan_batches(q->slens, NULL, q->nvalid, bs, q->best, q->from);
		/* read the batches back from the last: slens[start] = its end */
		for (i = q->nvalid; i > 0; i = j) {
			j = q->from[i];
			q->slens[j] = i;
		}
		for (i = 0; i < q->nvalid; i = j) {
			j = q->slens[i];
			if ((rc = run_batch(q, slots + i, j - i, err)))
				goto out;
		}
	}
	for (i = 0; i < q->n; i++) {
		json_t *r = q->results[i];

		q->results[i] = NULL;
		rc = q->emit(q->ctx, r);
		json_decref(r);
		if (rc)
			goto out;
	}
	rc = q->emit(q->ctx, NULL);
out:
	for (i = 0; i < q->n; i++) {
		json_decref(q->results[i]);
		q->results[i] = NULL;
	}
	q->n = q->nvalid = 0;
	free(k);
	free(slots);
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
	free(q->lens);
	free(q->order);
	free(q->slens);
	free(q->best);
	free(q->from);
	free(q->ids);
	free(q->blens);
	free(q->out);
	free(q->results);
	free(q);
}
