/*
 * test_batching.c - rt_plan_batches (src/runtime/input.c), the cuts of a
 * window sorted by length into batches that `run` and `serve` use: every
 * plan is checked against the cheapest of all cuts (padded tokens +
 * RT_RUN_COST per Run) found by brute force, and never holds more than
 * `batch` texts in a batch, except one job that has more on its own.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/runtime/input.c"

/* --- stubs for what input.c calls in the runtime's other files ------------ */
int rt_session_run(struct rt_session *s, const struct rt_bundle *b, int64_t *const *ids,
		   int64_t *const *types, int64_t *const *masks, const size_t *lens, size_t n,
		   json_t **results, nx_error *err)
{
	(void)s, (void)b, (void)ids, (void)types, (void)masks, (void)lens, (void)n;
	(void)results, (void)err;
	return NX_EINTERNAL;
}

bool rt_session_run_failed(const struct rt_session *s)
{
	(void)s;
	return false;
}

/* --- the plan read back, and its cost ------------------------------------- */
#define N 12

/* cost of the plan in from[] (read back from n), checking its batch sizes */
static uint64_t plan_cost(const size_t *lens, const size_t *texts, size_t n, size_t batch,
			  const size_t *from, size_t *runs)
{
	uint64_t c = 0;
	size_t i, k, j, m;

	*runs = 0;
	for (i = n; i > 0; i = k) {
		k = from[i];
		assert_true(k < i);
		for (j = k, m = 0; j < i; j++)
			m += texts ? texts[j] : 1;
		assert_true(m <= batch || i - k == 1);
		c += RT_RUN_COST + (uint64_t)m * lens[i - 1];
		(*runs)++;
	}
	return c;
}

/* the cheapest plan by trying every set of cut points (2^(n-1) of them) */
static uint64_t brute_force(const size_t *lens, const size_t *texts, size_t n, size_t batch)
{
	uint64_t best = UINT64_MAX;
	unsigned long mask;

	for (mask = 0; mask < 1ul << (n - 1); mask++) {
		uint64_t c = 0;
		size_t start = 0, i, j, m;
		bool ok = true;

		for (i = 1; i <= n && ok; i++) {
			if (i < n && !(mask & (1ul << (i - 1))))
				continue;       /* no cut after text i-1 */
			for (j = start, m = 0; j < i; j++)
				m += texts ? texts[j] : 1;
			ok = m <= batch || i - start == 1;
			c += RT_RUN_COST + (uint64_t)m * lens[i - 1];
			start = i;
		}
		if (ok && c < best)
			best = c;
	}
	return best;
}

static int by_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

static void plans_are_the_cheapest(void **state)
{
	size_t lens[N], texts[N], from[N + 1], runs, n, i, batch;
	uint64_t best[N + 1];
	unsigned seed = 17;
	int round;

	(void)state;
	for (round = 0; round < 400; round++) {
		n = 1 + (size_t)(rand_r(&seed) % N);
		batch = 1 + (size_t)(rand_r(&seed) % 8);
		for (i = 0; i < n; i++) {
			/* short and long texts, some equal: the mixed lengths of a stream */
			lens[i] = 1 + (size_t)(rand_r(&seed) % (round % 2 ? 40 : 300));
			texts[i] = 1 + (size_t)(rand_r(&seed) % 3);
		}
		qsort(lens, n, sizeof(*lens), by_size);
		rt_plan_batches(lens, NULL, n, batch, best, from);
		assert_int_equal(plan_cost(lens, NULL, n, batch, from, &runs), best[n]);
		assert_int_equal(best[n], brute_force(lens, NULL, n, batch));
		/* jobs of several texts (serve): the same, counting their texts */
		rt_plan_batches(lens, texts, n, batch, best, from);
		assert_int_equal(plan_cost(lens, texts, n, batch, from, &runs), best[n]);
		assert_int_equal(best[n], brute_force(lens, texts, n, batch));
	}
}

/* Sorted windows cut where lengths jump, not every batch_size texts. */
static void cuts_follow_the_lengths(void **state)
{
	size_t lens[16], from[17], runs, i;
	uint64_t best[17];

	(void)state;
	/* 4 texts of 5 tokens, 4 of 250: fixed batches of 8 padded all to 250 */
	for (i = 0; i < 8; i++)
		lens[i] = i < 4 ? 5 : 250;
	rt_plan_batches(lens, NULL, 8, 8, best, from);
	assert_int_equal(from[8], 4);
	assert_int_equal(from[4], 0);
	assert_int_equal(plan_cost(lens, NULL, 8, 8, from, &runs), 2 * RT_RUN_COST + 4 * 5 + 4 * 250);
	assert_int_equal(runs, 2);
	/* 16 equal texts: batches of batch_size, as many as needed */
	for (i = 0; i < 16; i++)
		lens[i] = 100;
	rt_plan_batches(lens, NULL, 16, 8, best, from);
	assert_int_equal(plan_cost(lens, NULL, 16, 8, from, &runs), 2 * RT_RUN_COST + 1600);
	assert_int_equal(runs, 2);
	/* batch_size 1: one Run per text whatever it costs */
	rt_plan_batches(lens, NULL, 3, 1, best, from);
	assert_int_equal(plan_cost(lens, NULL, 3, 1, from, &runs), 3 * RT_RUN_COST + 300);
	assert_int_equal(runs, 3);
}

/* A job of more than batch texts (a serve request) runs alone. */
static void a_big_job_is_a_batch_alone(void **state)
{
	size_t lens[3] = { 10, 10, 10 }, texts[3] = { 1, 20, 1 }, from[4], runs;
	uint64_t best[4];

	(void)state;
	rt_plan_batches(lens, texts, 3, 8, best, from);
	assert_int_equal(from[3], 2);
	assert_int_equal(from[2], 1);
	assert_int_equal(from[1], 0);
	assert_int_equal(plan_cost(lens, texts, 3, 8, from, &runs), 3 * RT_RUN_COST + 220);
}

/* `run`'s window is sorted and cut even when it is one batch wide
 * (batch_size >= RT_WINDOW_MAX); only serve's own cut runs as it is
 * (review of stop 18: inferred from cap <= batch_size, a run with
 * batch_size 1024 sent each window as one unsorted Run). */
static void only_the_callers_cut_runs_as_it_is(void **state)
{
	struct rt_bundle b;
	struct rt_batcher *q = NULL;
	nx_error e;

	(void)state;
	memset(&b, 0, sizeof(b));
	b.set.max_len = 4;
	b.set.batch_size = RT_WINDOW_MAX;
	assert_int_equal(rt_batcher_new(&q, NULL, &b, 0, NULL, NULL, &e), 0);
	assert_int_equal(q->cap, RT_WINDOW_MAX);
	assert_false(q->one_run);
	rt_batcher_free(q);
	b.set.batch_size = 8;
	assert_int_equal(rt_batcher_new(&q, NULL, &b, 8, NULL, NULL, &e), 0);
	assert_true(q->one_run);
	rt_batcher_free(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plans_are_the_cheapest),
		cmocka_unit_test(cuts_follow_the_lengths),
		cmocka_unit_test(a_big_job_is_a_batch_alone),
		cmocka_unit_test(only_the_callers_cut_runs_as_it_is),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
