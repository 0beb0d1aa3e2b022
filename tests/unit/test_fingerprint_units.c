/*
 * test_fingerprint_units.c - the teacher's blocks on two threads
 * (collect_blocks, src/lib/fingerprint/fingerprint_units.c) keep the same
 * blocks, in the same order, with the same counts, as one thread walking
 * every block with collect_fn: on random rows, on a tensor a formula
 * wrote, and where the set fills in the middle of the tensor (the keys
 * kept stop at the same block).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/lib/fingerprint/fingerprint_units.c"

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* rows x cols float32: random rows, every fifth a ramp (formulaic), every
 * seventh a few levels, so that blocks are kept, predicted and dropped. */
static int tensor_file(char *path, uint64_t rows, uint64_t cols, unsigned ramps)
{
	uint64_t st = 0x9e3779b97f4a7c15ull, r, c;
	float *row = malloc(cols * sizeof(*row));
	int fd = mkstemp(path);

	assert_non_null(row);
	assert_true(fd >= 0);
	for (r = 0; r < rows; r++) {
		for (c = 0; c < cols; c++) {
			double g = (double)(rnd(&st) >> 11) * 0x1p-53 - 0.5;

			if (r % 5 == 0 || (ramps && r % ramps))
				g = 0.01 * (double)c + (double)r;
			else if (r % 7 == 0)
				g = (double)(rnd(&st) % 3);
			row[c] = (float)g;
		}
		assert_int_equal(write(fd, row, cols * sizeof(*row)), (ssize_t)(cols * sizeof(*row)));
	}
	free(row);
	return fd;
}

/* The tensor's blocks collected one way (two: collect_blocks) into u,
 * which starts with prefill entries already kept. */
static void collect_one(int fd, const char *path, const struct view *vw, bool two, size_t prefill,
			struct fp_units *u, struct collect *c)
{
	nx_error err;
	size_t i;

	memset(u, 0, sizeof(*u));
	memset(c, 0, sizeof(*c));
	if (prefill) {
		/* as collect_fn grows it: doubling from 4096, never past full */
		u->cap = 4096;
		while (u->cap < prefill)
			u->cap *= 2;
		if (u->cap > FP_UNITS_MAX + FP_UNITS_MAX / 4)
			u->cap = FP_UNITS_MAX + FP_UNITS_MAX / 4;
		u->e = calloc(u->cap, sizeof(*u->e));
		assert_non_null(u->e);
		for (i = 0; i < prefill; i++)
			u->e[i].key = (uint32_t)i;
		u->n = prefill;
	}
	c->u = u;
	c->tensor = 7;
	c->start = u->n;
	c->rowblocks = vw->rowblocks;
	nx_error_clear(&err);
	if (two)
		assert_int_equal(collect_blocks(fd, path, 0, 1, vw, c, &err), 0);
	else
		assert_int_equal(each_block(fd, path, 0, 1, vw, NULL, collect_fn, c, &err), 0);
}

static void same_blocks(uint64_t rows, uint64_t cols, unsigned ramps, size_t prefill)
{
	char path[] = "/tmp/nx_units_XXXXXX";
	int fd = tensor_file(path, rows, cols, ramps);
	int64_t dims[2] = { (int64_t)rows, (int64_t)cols };
	struct fp_units a, b;
	struct collect ca, cb;
	struct view vw;
	size_t i;

	view_of(&vw, rows * cols, dims, 2);
	collect_one(fd, path, &vw, false, prefill, &a, &ca);
	collect_one(fd, path, &vw, true, prefill, &b, &cb);
	assert_true(a.n > prefill);
	assert_true(a.n <= FP_UNITS_MAX + FP_UNITS_MAX / 4);
	assert_int_equal(a.n, b.n);
	for (i = 0; i < a.n; i++) {
		assert_int_equal(a.e[i].key, b.e[i].key);
		assert_int_equal(a.e[i].sketch, b.e[i].sketch);
		assert_int_equal(a.e[i].tensor, b.e[i].tensor);
		assert_int_equal(a.e[i].block, b.e[i].block);
	}
	for (i = 0; i < 2; i++) {
		assert_int_equal(ca.seen[i], cb.seen[i]);
		assert_int_equal(ca.predicted[i], cb.predicted[i]);
	}
	/* what the case is about happened: blocks predicted, and the set
	 * filled (prefilled) or the columns were reached (not) */
	assert_true(ca.predicted[0] > 0);
	if (prefill)
		assert_int_equal(a.n, FP_UNITS_MAX + FP_UNITS_MAX / 4);
	else
		assert_true(ca.seen[1] > 0);
	free(a.e);
	free(b.e);
	close(fd);
	unlink(path);
}

/* rows and columns, every block seen: 2048 x 1024 (row groups of 256
 * rows, 32 column groups of 1024 blocks) */
static void units_collect_all(void **state)
{
	(void)state;
	same_blocks(2048, 1024, 0, 0);
}

/* the set fills in a row group and in a column group: the blocks kept
 * and the counts stop at the block one thread stopped at */
static void units_collect_fills(void **state)
{
	const size_t full = FP_UNITS_MAX + FP_UNITS_MAX / 4;

	(void)state;
	same_blocks(2048, 1024, 0, full - 10000);
	same_blocks(2048, 1024, 0, full - 2 * 1024 * 16 - 777);
	same_blocks(2048, 1024, 0, full - 2048 * 16 - 16 * 1024 - 5);
}

/* a tensor most of whose rows a formula wrote */
static void units_collect_formula(void **state)
{
	(void)state;
	same_blocks(1024, 2048, 3, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(units_collect_all),
		cmocka_unit_test(units_collect_fills),
		cmocka_unit_test(units_collect_formula),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
