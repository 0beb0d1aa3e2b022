/*
 * serve_engine.c - dynamic batching for `serve`: request threads queue
 * jobs (a bounded number of texts); ONE inference thread takes a round of
 * whole jobs (all that are queued, up to a window of texts; while fewer
 * than max-batch texts are queued and more requests are on their way, it
 * waits for them up to max-wait-ms), sorts the round's jobs by token count,
 * cuts the sorted round into batches of at most max-batch texts where the
 * padding would cost more than another Run (rt_plan_batches), and runs them
 * through the same batcher as `run` (a rejected input costs only itself),
 * answering each job as soon as its batch is done.
 *
 * Sorting the round is what makes batching pay under load: texts taken in
 * arrival order have random lengths, and a batch pads every text to its
 * longest (on the mixed texts of bench/run.py, up to 8 first-come texts
 * padded to the longest ran 0.48x a Node server's throughput at 64
 * clients).  Each job is answered within the round it was taken in, so a
 * long text waits at most for the round, never for ever.
 *
 * One thread because ONNX Runtime already uses the cores inside a Run, and
 * one session run at a time keeps memory flat.  Each job has its own
 * condition variable, so an answered batch wakes only its own requests.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "serve.h"

struct sv_engine {
	pthread_mutex_t mu;
	pthread_cond_t wake;    /* the inference thread: work or stop */
	struct sv_job *head, *tail;
	size_t depth, cap;      /* texts queued, at most */
	size_t batch;
	size_t window;          /* texts taken in one round, at most */
	long wait_ms;
	size_t coming;          /* requests begun that have not submitted yet */
	bool stopping;
	pthread_t thread;
	struct rt_bundle *b;
	struct rt_session *s;
	struct sv_metrics *metrics;
	struct rt_batcher *q;
	int64_t *scratch;       /* max_len ids: token counts for "usage" and the sort */
	struct sv_job **sorted; /* one round's jobs (window entries) */
	size_t *longest, *texts; /* per sorted job: rt_plan_batches' input */
	uint64_t *best;         /* rt_plan_batches: window + 1 entries */
	size_t *from, *cut;     /* window + 1 entries */
	/* the round being emitted: results go to jobs in order */
	struct sv_job *round;
	struct sv_job *emit_job;
	size_t emit_at;
};

static int emit(void *ctx, json_t *r)
{
	struct sv_engine *e = ctx;

	if (!r)
		return 0;
	while (e->emit_job && e->emit_at == e->emit_job->n) {
		e->emit_job = e->emit_job->next;
		e->emit_at = 0;
	}
	if (!e->emit_job)
		return NX_EINTERNAL;  /* more results than texts: a bug */
	e->emit_job->results[e->emit_at++] = json_incref(r);
	return 0;
}

/* Token counts of each text of j (for "usage") and of its longest (the
 * round's sort key).  A text that does not tokenize counts 0: the batcher
 * gives it its error result. */
static void count_tokens(struct sv_engine *e, struct sv_job *j)
{
	size_t i;

	j->longest = 0;
	for (i = 0; i < j->n; i++) {
		const char *text = j->pair ? j->pair : j->texts[i];
		size_t len = j->pair ? j->pair_len : j->lens[i];
		nx_error te;

		/* a pair is (query, document), as a cross-encoder was trained */
		if (j->pair ? nx_tokenizer_encode_pair(e->b->tok, text, len, j->texts[i], j->lens[i],
						       e->b->set.max_len, e->scratch, NULL, NULL,
						       NULL, &j->tokens[i], &te)
			    : nx_tokenizer_encode(e->b->tok, text, len, e->b->set.max_len, e->scratch,
						  &j->tokens[i], &te))
			j->tokens[i] = 0;
		if (j->tokens[i] > j->longest)
			j->longest = j->tokens[i];
	}
}

/* Runs one batch of jobs (a list linked by next) and answers them. */
static void run_round(struct sv_engine *e, struct sv_job *round, size_t ntexts)
{
	struct sv_job *j;
	nx_error err;
	size_t i;
	int rc = 0;

	nx_error_clear(&err);
	e->emit_job = round;
	e->emit_at = 0;
	for (j = round; j && !rc; j = j->next)
		for (i = 0; i < j->n && !rc; i++) {
			struct rt_input in = { j->pair ? (char *)j->pair : j->texts[i],
					       j->pair ? j->pair_len : j->lens[i], NULL,
					       j->pair ? j->texts[i] : NULL, j->pair ? j->lens[i] : 0, NULL };

			rc = rt_batcher_add(e->q, &in, &err);
		}
	if (!rc)
		rc = rt_batcher_flush(e->q, &err);
	sv_metrics_batch(e->metrics, ntexts);
	pthread_mutex_lock(&e->mu);
	for (j = round; j; j = j->next) {
		j->rc = rc;
		j->err = err;
		for (i = 0; !rc && i < j->n; i++)
			if (!j->results[i])
				j->rc = nx_error_set(&j->err, NX_EINTERNAL, NULL, 0, -1,
						     "no result for input %zu", i);
		j->done = true;
		pthread_cond_signal(&j->answered);
	}
	pthread_mutex_unlock(&e->mu);
}

/* by longest text, then arrival: equal lengths keep their order */
static int by_longest(const void *a, const void *b)
{
	const struct sv_job *x = *(struct sv_job *const *)a, *y = *(struct sv_job *const *)b;

	if (x->longest != y->longest)
		return x->longest < y->longest ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sorts a round (a list of jobs linked by next) by token count and runs
 * it in the batches rt_plan_batches chose, shortest first: a job is never
 * split, one with more than max-batch texts is a batch alone. */
static void run_sorted(struct sv_engine *e, struct sv_job *round)
{
	size_t n = 0, i, k, m, texts;
	struct sv_job *j;

	for (j = round; j; j = j->next) {
		count_tokens(e, j);
		j->seq = n;
		e->sorted[n++] = j;
	}
	qsort(e->sorted, n, sizeof(*e->sorted), by_longest);
	for (i = 0; i < n; i++) {
		e->longest[i] = e->sorted[i]->longest;
		e->texts[i] = e->sorted[i]->n;
	}
	rt_plan_batches(e->longest, e->texts, n, e->batch, e->best, e->from);
	/* the cuts, read back from the end: cut[start] = end of that batch */
	for (i = n; i > 0; i = k) {
		k = e->from[i];
		e->cut[k] = i;
	}
	for (i = 0; i < n; i = k) {
		k = e->cut[i];
		for (m = i, texts = 0; m < k; m++) {
			texts += e->sorted[m]->n;
			e->sorted[m]->next = m + 1 < k ? e->sorted[m + 1] : NULL;
		}
		run_round(e, e->sorted[i], texts);
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
	free(e->scratch);
	free(e->sorted);
	free(e->longest);
	free(e->texts);
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
	/* the batcher's window: as many texts as `run` sorts at once */
	e->window = batch * RT_WINDOW_BATCHES < RT_WINDOW_MAX ? batch * RT_WINDOW_BATCHES
		  : batch > RT_WINDOW_MAX ? batch : RT_WINDOW_MAX;
	e->wait_ms = wait_ms;
	e->scratch = calloc(b->set.max_len, sizeof(*e->scratch));
	e->sorted = calloc(e->window, sizeof(*e->sorted));
	e->longest = calloc(e->window, sizeof(*e->longest));
	e->texts = calloc(e->window, sizeof(*e->texts));
	e->best = calloc(e->window + 1, sizeof(*e->best));
	e->from = calloc(e->window + 1, sizeof(*e->from));
	e->cut = calloc(e->window + 1, sizeof(*e->cut));
	if (!e->scratch || !e->sorted || !e->longest || !e->texts || !e->best || !e->from || !e->cut) {
		engine_free(e);
		return nx_error_oom(err, NULL);
	}
	if ((rc = rt_batcher_new(&e->q, s, b, emit, e, err))) {
		engine_free(e);
		return rc;
	}
	pthread_mutex_init(&e->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&e->wake, &ca);
	pthread_condattr_destroy(&ca);
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

int sv_engine_submit(struct sv_engine *e, struct sv_job *job)
{
	pthread_mutex_lock(&e->mu);
	if (e->stopping || e->depth + job->n > e->cap) {
		pthread_mutex_unlock(&e->mu);
		return NX_ELIMIT;
	}
	job->next = NULL;
	job->done = false;
	pthread_cond_init(&job->answered, NULL);
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
