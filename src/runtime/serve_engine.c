/*
 * serve_engine.c - dynamic batching for `serve`: request threads queue
 * jobs (a bounded number of texts); ONE inference thread takes a round of
 * whole jobs (all that are queued, up to `run`'s window of texts; while
 * fewer than max-batch texts are queued and more requests are on their
 * way, it waits for them up to max-wait-ms), sorts the round's texts by
 * token count, cuts them into batches of at most max-batch texts where the
 * padding would cost more than another Run (rt_plan_batches), and runs
 * each batch as one Run through the same batcher as `run` (a rejected
 * input costs only itself), answering each job as soon as its last text
 * has run.
 *
 * Sorting the round is what makes batching pay under load: texts taken in
 * arrival order have random lengths, and a batch pads every text to its
 * longest (on the mixed texts of bench/run.py, up to 8 first-come texts
 * padded to the longest ran 0.48x a Node server's throughput at 64
 * clients).  Each job is answered within the round it was taken in, so a
 * long text waits at most for the round, never for ever.
 *
 * The plan is made here, once, over texts (a job's texts may run in
 * different batches); the batcher holds one batch (max-batch texts of
 * max_sequence_length tokens) and runs it as given.  Each text is
 * tokenized once, here: the sort and "usage" need its token count, and the
 * batcher takes the encoding as it is (rt_batcher_add_encoded).
 *
 * One thread because ONNX Runtime already uses the cores inside a Run, and
 * one session run at a time keeps memory flat.  Each job has its own
 * condition variable, so an answered job wakes only its own request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "serve.h"

/* one text of a round */
struct sv_text {
	struct sv_job *job;
	size_t i;               /* its index in the job */
	size_t tokens;          /* the sort key */
	size_t seq;             /* arrival in the round: equal lengths keep their order */
	size_t at;              /* its ids, types, masks in the round's arena; NO_IDS: none */
};

#define NO_IDS SIZE_MAX        /* none kept (no tokens, or no room): the batcher tokenizes it */

struct sv_engine {
	pthread_mutex_t mu;
	pthread_cond_t wake;    /* the inference thread: work or stop */
	struct sv_job *head, *tail;
	size_t depth, cap;      /* texts queued, at most */
	size_t batch;
	size_t window;          /* texts taken in one round, at most (one job may be more) */
	size_t room;            /* texts in one round, at most: window, or the largest job */
	long wait_ms;
	size_t coming;          /* requests begun that have not submitted yet */
	bool stopping;
	pthread_t thread;
	struct rt_bundle *b;
	struct rt_session *s;
	struct sv_metrics *metrics;
	struct rt_batcher *q;
	/* the round's encodings (each text's ids, type ids, mask: 3 x its
	 * tokens), made once for the sort and "usage" and handed to the
	 * batcher; grown to the largest round's need, at most
	 * SV_ARENA_TOKENS tokens (a text past that is counted in scratch and
	 * tokenized again by the batcher) */
	int64_t *arena;
	size_t arena_cap;
	int64_t *scratch;       /* 3 x max_len: a text the arena has no room for */
	struct sv_text *texts;  /* one round's texts (room entries), sorted */
	size_t *lens;           /* their token counts: rt_plan_batches' input */
	uint64_t *best;         /* rt_plan_batches: room + 1 entries */
	size_t *from, *cut;     /* room + 1 entries */
	/* the batch being emitted: results go to these texts in order */
	const struct sv_text *emit_text;
	size_t emit_at, emit_n;
};

static int emit(void *ctx, json_t *r)
{
	struct sv_engine *e = ctx;
	const struct sv_text *t;

	if (!r)
		return 0;
	if (e->emit_at == e->emit_n)
		return NX_EINTERNAL;  /* more results than texts: a bug */
	t = &e->emit_text[e->emit_at++];
	t->job->results[t->i] = json_incref(r);
	return 0;
}

/* Room for one more encoding at arena[used]: 3 x max_len entries.  False
 * past SV_ARENA_TOKENS or out of memory: that text is counted in scratch
 * and tokenized again by the batcher. */
static bool arena_reserve(struct sv_engine *e, size_t used)
{
	size_t need = used + 3 * e->b->set.max_len, cap = e->arena_cap;
	size_t most = 3 * (SV_ARENA_TOKENS > e->b->set.max_len ? SV_ARENA_TOKENS
							       : e->b->set.max_len);
	int64_t *a;

	if (need <= cap)
		return true;
	if (need > most)
		return false;
	cap = cap * 2 > need ? cap * 2 : need;
	if (cap > most)
		cap = most;
	if (!(a = realloc(e->arena, cap * sizeof(*a))))
		return false;
	e->arena = a;
	e->arena_cap = cap;
	return true;
}

/* Tokenizes text i of j once, at arena[*used] (ids, then type ids, then
 * mask, n each): its token count (for "usage" and the round's sort) and
 * where its encoding is.  A text that does not tokenize counts 0 and has
 * none: the batcher tokenizes it again to give it its error result, a rare
 * path not worth keeping each text's nx_error for.  A text the arena has
 * no room for is counted in scratch and has none either. */
static void encode_text(struct sv_engine *e, struct sv_job *j, size_t i, struct sv_text *t,
			size_t *used)
{
	size_t ml = e->b->set.max_len, n = 0;
	bool kept = arena_reserve(e, *used);
	int64_t *ids = kept ? e->arena + *used : e->scratch;
	nx_error te;

	t->tokens = j->tokens[i] = 0;
	t->at = NO_IDS;
	/* a pair is (query, document), as a cross-encoder was trained */
	if (nx_tokenizer_encode_pair(e->b->tok, j->pair ? j->pair : j->texts[i],
				     j->pair ? j->pair_len : j->lens[i], j->pair ? j->texts[i] : NULL,
				     j->pair ? j->lens[i] : 0, ml, ids, ids + ml, ids + 2 * ml, NULL,
				     &n, &te))
		return;
	t->tokens = j->tokens[i] = n;
	if (!kept)
		return;
	/* packed: type ids and mask right after the n ids */
	memmove(ids + n, ids + ml, n * sizeof(*ids));
	memmove(ids + 2 * n, ids + 2 * ml, n * sizeof(*ids));
	t->at = *used;
	*used += 3 * n;
}

/* Hands text t to the batcher: its encoding, or (none) the text itself */
static int add_text(struct sv_engine *e, const struct sv_text *t, nx_error *err)
{
	const struct sv_job *j = t->job;
	const int64_t *ids;
	size_t n = t->tokens;

	if (t->at == NO_IDS) {
		struct rt_input in = { j->pair ? (char *)j->pair : j->texts[t->i],
				       j->pair ? j->pair_len : j->lens[t->i], NULL,
				       j->pair ? j->texts[t->i] : NULL, j->pair ? j->lens[t->i] : 0,
				       NULL };

		return rt_batcher_add(e->q, &in, err);
	}
	ids = e->arena + t->at;
	return rt_batcher_add_encoded(e->q, ids, ids + n, ids + 2 * n, n, err);
}

/* Runs texts[0..n) (at most max-batch) as one batch, then answers the jobs
 * whose last text this was.  A job is not touched after it is answered:
 * its request frees it. */
static void run_batch(struct sv_engine *e, const struct sv_text *texts, size_t n)
{
	nx_error err;
	size_t i, k;
	int rc = 0;

	nx_error_clear(&err);
	e->emit_text = texts;
	e->emit_at = 0;
	e->emit_n = n;
	for (i = 0; i < n && !rc; i++)
		rc = add_text(e, &texts[i], &err);
	/* flushed even after a failed add, so that the texts it holds never
	 * join the next batch; they are the first ones of emit_text */
	if (rc) {
		nx_error later;

		rt_batcher_flush(e->q, &later);
	} else {
		rc = rt_batcher_flush(e->q, &err);
	}
	sv_metrics_batch(e->metrics, n);
	pthread_mutex_lock(&e->mu);
	for (i = 0; i < n; i++) {
		struct sv_job *j = texts[i].job;

		if (rc && !j->rc) {
			j->rc = rc;
			j->err = err;
		}
		if (--j->left)
			continue;
		for (k = 0; !j->rc && k < j->n; k++)
			if (!j->results[k])
				j->rc = nx_error_set(&j->err, NX_EINTERNAL, NULL, 0, -1,
						     "no result for input %zu", k);
		j->done = true;
		pthread_cond_signal(&j->answered);
	}
	pthread_mutex_unlock(&e->mu);
}

/* by token count, then arrival */
static int by_tokens(const void *a, const void *b)
{
	const struct sv_text *x = a, *y = b;

	if (x->tokens != y->tokens)
		return x->tokens < y->tokens ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts a round's texts (jobs linked by next, room texts at most) by
 * token count and runs them in the batches rt_plan_batches chose,
 * shortest first. */
static void run_sorted(struct sv_engine *e, struct sv_job *round)
{
	size_t n = 0, i, k, used = 0;
	struct sv_job *j;

	for (j = round; j; j = j->next) {
		j->left = j->n;
		for (i = 0; i < j->n; i++, n++) {
			e->texts[n] = (struct sv_text){ j, i, 0, n, NO_IDS };
			encode_text(e, j, i, &e->texts[n], &used);
		}
	}
	qsort(e->texts, n, sizeof(*e->texts), by_tokens);
	for (i = 0; i < n; i++)
		e->lens[i] = e->texts[i].tokens;
	rt_plan_batches(e->lens, NULL, n, e->batch, e->best, e->from);
	/* the cuts, read back from the end: cut[start] = end of that batch */
	for (i = n; i > 0; i = k) {
		k = e->from[i];
		e->cut[k] = i;
	}
	for (i = 0; i < n; i = k) {
		k = e->cut[i];
		run_batch(e, e->texts + i, k - i);
	}
}

static void deadline_after(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *worker(void *arg)
{
	struct sv_engine *e = arg;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		struct sv_job *round, **tail;
		struct timespec until;
		size_t n = 0;

		while (!e->head && !e->stopping)
			pthread_cond_wait(&e->wake, &e->mu);
		if (!e->head)
			break;
		/* the first text is here: while more are on their way, wait
		 * for them up to max-wait-ms */
		deadline_after(&until, e->wait_ms);
		while (!e->stopping && e->depth < e->batch && e->coming &&
		       pthread_cond_timedwait(&e->wake, &e->mu, &until) != ETIMEDOUT)
			;
		/* whole jobs, at least one, while they fit in the window */
		round = e->head;
		tail = &round;
		while (e->head && (!n || n + e->head->n <= e->window)) {
			n += e->head->n;
			tail = &e->head->next;
			e->head = e->head->next;
		}
		*tail = NULL;
		if (!e->head)
			e->tail = NULL;
		e->depth -= n;
		pthread_mutex_unlock(&e->mu);
		run_sorted(e, round);
		pthread_mutex_lock(&e->mu);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

static void engine_free(struct sv_engine *e)
{
	rt_batcher_free(e->q);
	free(e->arena);
	free(e->scratch);
	free(e->texts);
	free(e->lens);
	free(e->best);
	free(e->from);
	free(e->cut);
	free(e);
}

int sv_engine_start(struct sv_engine **out, struct rt_bundle *b, struct rt_session *s,
		    struct sv_metrics *m, size_t queue, size_t batch, long wait_ms, nx_error *err)
{
	struct sv_engine *e = calloc(1, sizeof(*e));
	pthread_condattr_t ca;
	int rc;

	if (!e)
		return nx_error_oom(err, NULL);
	e->b = b;
	e->s = s;
	e->metrics = m;
	e->cap = queue;
	e->batch = batch;
	/* a round: as many texts as `run` sorts at once; one job (at most
	 * the queue, at most SV_INPUTS_MAX texts) may be more */
	e->window = rt_batcher_window(b);
	e->room = queue < SV_INPUTS_MAX ? queue : SV_INPUTS_MAX;
	if (e->room < e->window)
		e->room = e->window;
	e->wait_ms = wait_ms;
	e->scratch = calloc(3 * b->set.max_len, sizeof(*e->scratch));
	e->texts = calloc(e->room, sizeof(*e->texts));
	e->lens = calloc(e->room, sizeof(*e->lens));
	e->best = calloc(e->room + 1, sizeof(*e->best));
	e->from = calloc(e->room + 1, sizeof(*e->from));
	e->cut = calloc(e->room + 1, sizeof(*e->cut));
	if (!e->scratch || !e->texts || !e->lens || !e->best || !e->from || !e->cut) {
		engine_free(e);
		return nx_error_oom(err, NULL);
	}
	/* the batcher holds one batch: the plan is run_sorted's */
	if ((rc = rt_batcher_new(&e->q, s, b, batch, emit, e, err))) {
		engine_free(e);
		return rc;
	}
	if ((rc = pthread_mutex_init(&e->mu, NULL))) {
		engine_free(e);
		return nx_error_errno(err, NX_EIO, rc, NULL, "cannot make the queue's lock");
	}
	if (!(rc = pthread_condattr_init(&ca))) {
		if (!(rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)))
			rc = pthread_cond_init(&e->wake, &ca);
		pthread_condattr_destroy(&ca);
	}
	if (rc) {
		pthread_mutex_destroy(&e->mu);
		engine_free(e);
		return nx_error_errno(err, NX_EIO, rc, NULL, "cannot make the queue's condition");
	}
	if ((rc = pthread_create(&e->thread, NULL, worker, e))) {
		pthread_cond_destroy(&e->wake);
		pthread_mutex_destroy(&e->mu);
		engine_free(e);
		return nx_error_errno(err, NX_EIO, rc, NULL, "cannot start the inference thread");
	}
	*out = e;
	return 0;
}

void sv_engine_expect(struct sv_engine *e, int delta)
{
	pthread_mutex_lock(&e->mu);
	e->coming += (size_t)(ssize_t)delta;
	if (delta < 0)
		pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->mu);
}

int sv_engine_submit(struct sv_engine *e, struct sv_job *job, nx_error *err)
{
	int rc;

	pthread_mutex_lock(&e->mu);
	if (e->stopping || job->n > e->room || e->depth + job->n > e->cap) {
		pthread_mutex_unlock(&e->mu);
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1, "the queue is full");
	}
	if ((rc = pthread_cond_init(&job->answered, NULL))) {
		pthread_mutex_unlock(&e->mu);
		return nx_error_errno(err, NX_EIO, rc, NULL, "cannot make the request's condition");
	}
	job->next = NULL;
	job->done = false;
	job->rc = 0;
	if (e->tail)
		e->tail->next = job;
	else
		e->head = job;
	e->tail = job;
	e->depth += job->n;
	pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->mu);
	return 0;
}

void sv_engine_wait(struct sv_engine *e, struct sv_job *job)
{
	pthread_mutex_lock(&e->mu);
	while (!job->done)
		pthread_cond_wait(&job->answered, &e->mu);
	pthread_mutex_unlock(&e->mu);
	pthread_cond_destroy(&job->answered);
}

size_t sv_engine_depth(struct sv_engine *e)
{
	size_t n;

	pthread_mutex_lock(&e->mu);
	n = e->depth;
	pthread_mutex_unlock(&e->mu);
	return n;
}

void sv_engine_stop(struct sv_engine *e)
{
	if (!e)
		return;
	pthread_mutex_lock(&e->mu);
	e->stopping = true;
	pthread_cond_signal(&e->wake);
	pthread_mutex_unlock(&e->mu);
	pthread_join(e->thread, NULL);
	pthread_cond_destroy(&e->wake);
	pthread_mutex_destroy(&e->mu);
	engine_free(e);
}
