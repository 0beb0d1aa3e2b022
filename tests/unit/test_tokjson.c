/*
 * test_tokjson.c - verify_tokjson.c's Unigram scores for the leak budget:
 * parameters in SentencePiece's order cost nothing; a piece out of order,
 * or a score with more precision than a float32, is charged 4 bytes; a
 * score that is no log-probability breaks the schema.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/lib/verify/verify_internal.h"

/* The residual of a Unigram tokenizer.json with these [piece, score] pairs
 * (JSON text); *failed when the schema broke. */
static uint64_t residual(const char *vocab, bool *failed)
{
	char json[2048];
	struct vfy_ctx c;
	struct vfy_vocab_stream vs = {0};
	nx_budget_buf *b = NULL;
	uint64_t r;
	int n = snprintf(json, sizeof(json), "{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, "
			 "\"vocab\": [%s]}}", vocab);

	memset(&c, 0, sizeof(c));
	assert_int_equal(nx_report_new(&c.r, "b", NULL), 0);
	assert_int_equal(nx_budget_buf_new(&b, NULL), 0);
	assert_int_equal(nx_budget_buf_new(&vs.b, NULL), 0);
	assert_int_equal(nx_vfy__tokjson_residual(&c, "model/tokenizer/tokenizer.json", json,
						  (size_t)n, b, &vs, failed, NULL), 0);
	r = nx_budget_residual(b);
	nx_budget_buf_free(vs.b);
	nx_budget_buf_free(b);
	nx_report_free(c.r);
	return r;
}

#define SPECIALS "[\"<unk>\", 0.0], "
/* "Unigram" and unk_id 0: the settings every case has */
#define SETTINGS (sizeof("Unigram\n") - 1 + sizeof("0\n") - 1)

static void in_order_scores_cost_nothing(void **state)
{
	bool failed;

	(void)state;
	/* descending; equal scores by piece ascending */
	assert_int_equal(residual(SPECIALS "[\"the\", -2.5], [\"and\", -3.25], [\"dog\", -3.25], "
				  "[\"cat\", -9.75]", &failed), SETTINGS);
	assert_false(failed);
}

static void out_of_order_pieces_are_charged(void **state)
{
	bool failed;

	(void)state;
	assert_int_equal(residual(SPECIALS "[\"the\", -3.25], [\"and\", -2.5], [\"cat\", -9.75]",
				  &failed), SETTINGS + 4);
	assert_int_equal(residual(SPECIALS "[\"dog\", -3.25], [\"and\", -3.25], [\"cat\", -9.75]",
				  &failed), SETTINGS + 4);
	assert_false(failed);
}

static void double_precision_is_charged(void **state)
{
	bool failed;

	(void)state;
	/* -2.1 is no float32: its extra precision is 4 bytes */
	assert_int_equal(residual(SPECIALS "[\"the\", -2.1], [\"and\", -3.25]", &failed),
			 SETTINGS + 4);
	assert_false(failed);
}

static void scores_must_be_log_probabilities(void **state)
{
	bool failed;

	(void)state;
	residual(SPECIALS "[\"the\", 0.5]", &failed);
	assert_true(failed);
	residual(SPECIALS "[\"the\", -65.0]", &failed);
	assert_true(failed);
	residual(SPECIALS "[\"the\", -64.0]", &failed);
	assert_false(failed);
	residual(SPECIALS "[\"the\", \"-1\"]", &failed);
	assert_true(failed);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(in_order_scores_cost_nothing),
		cmocka_unit_test(out_of_order_pieces_are_charged),
		cmocka_unit_test(double_precision_is_charged),
		cmocka_unit_test(scores_must_be_log_probabilities),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
