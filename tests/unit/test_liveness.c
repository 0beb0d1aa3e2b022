/*
 * test_liveness.c - src/runtime/liveness.c (`nexus_cli liveness`) against a
 * model whose outputs are known: ONNX Runtime and the tokenizer are
 * replaced by stubs (below) computing y = sum(live) + [probe] sum(probe_only)
 * + [the longer text] sum(long_only), so the verdicts are exact: live, dead
 * (noise moves nothing), dead-empty (all zeros), live when only the longer
 * of the two texts sees it (a check stops early only when live), and with
 * --zero-check, zero_change 0 for a tensor no input sees but not for one
 * only the random-id probes see.  The texts run shortest first, and a
 * tensor the first moves costs that one run.  Each in the three
 * ways of running the checks: one session fed each copy, a session per
 * copy (--session-each), and the fallback to that when the one session is
 * refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define put pbuf_put   /* liveness.c has a put() of its own */
#include "pbuild.h"
#undef put

#include "../../src/runtime/liveness.c"

#define NT 6
#define NF 32        /* floats per tensor: 128 bytes, over the 64-byte floor */

static const char *const names[NT] = { "live", "dead", "zeros", "probe_only", "small",
					"long_only" };
static float orig[NT][NF];

/* --- stubs for what liveness.c calls outside lib/ -------------------------- */
struct rt_session {
	const struct rt_override *ov;
	bool shared;
	rt_sink_fn sink;
	void *sink_ctx;
};

void rt_session_sink(struct rt_session *s, rt_sink_fn fn, void *ctx)
{
	s->sink = fn;
	s->sink_ctx = ctx;
}

enum mode { SHARED, EACH, REFUSED };
static enum mode mode;
static int opened, overridable;   /* sessions opened, of them overridable */
static size_t runs, first_lens[2]; /* rt_session_run calls, the first two's lengths */

int rt_session_open_overridable(struct rt_session **out, const struct rt_bundle *b,
				const struct rt_override *ov, size_t n, nx_error *err)
{
	size_t i;

	(void)b;
	/* every candidate, by name and shape, with no contents */
	assert_int_equal(n, 5);
	for (i = 0; i < n; i++) {
		assert_null(ov[i].data);
		assert_int_equal(ov[i].ndims, 1);
		assert_int_equal(ov[i].dims[0], NF);
	}
	assert_int_not_equal(mode, EACH);
	*out = NULL;
	if (mode == REFUSED)
		return nx_error_set(err, NX_ECHECK, NULL, 0, -1, "refused by the stub");
	*out = calloc(1, sizeof(**out));
	assert_non_null(*out);
	(*out)->shared = true;
	opened++, overridable++;
	return 0;
}

int rt_session_feed(struct rt_session *s, const struct rt_override *ov, nx_error *err)
{
	(void)err;
	assert_true(s->shared);
	s->ov = ov;
	return 0;
}

int rt_session_open_with(struct rt_session **out, const struct rt_bundle *b, bool verbose,
			 const struct rt_override *ov, bool unoptimized, nx_error *err)
{
	(void)b, (void)verbose, (void)unoptimized, (void)err;
	assert_int_not_equal(mode, SHARED);
	*out = calloc(1, sizeof(**out));
	assert_non_null(*out);
	(*out)->ov = ov;
	opened++;
	return 0;
}

void rt_session_free(struct rt_session *s)
{
	free(s);
}

static double sum_of(const struct rt_session *s, int t)
{
	const float *v = orig[t];
	double x = 0;
	int i;

	if (s->ov && !strcmp(s->ov->name, names[t]))
		v = s->ov->data;
	for (i = 0; i < NF; i++)
		x += v[i] * (i + 1);
	return x;
}

int rt_session_run(struct rt_session *s, const struct rt_bundle *b, int64_t *const *ids,
		   int64_t *const *types, int64_t *const *masks, const size_t *lens, size_t n,
		   json_t **results, nx_error *err)
{
	/* a selftest text encodes to ids 1 (one, or two for the longer); a
	 * probe is anything else */
	bool probe = lens[0] > 2 || ids[0][0] != 1 || (lens[0] == 2 && ids[0][1] != 1);
	double y = sum_of(s, 0) + (probe ? sum_of(s, 3) : 0) +
		   (!probe && lens[0] == 2 ? sum_of(s, 5) : 0);

	if (runs < 2)
		first_lens[runs] = lens[0];
	runs++;

	(void)b, (void)types, (void)masks, (void)n, (void)err;
	results[0] = NULL;
	if (s->sink)
		return s->sink(s->sink_ctx, &y, 1);
	results[0] = json_pack("{s:{s:[f]}}", "outputs", "y", y);
	return 0;
}

int rt_selftest_load(json_t **out, struct rt_bundle *b, nx_error *err)
{
	(void)b, (void)err;
	*out = json_pack("{s:[{s:s},{s:s}]}", "cases", "text", "free money", "text", "lunch");
	return 0;
}

int nx_tokenizer_encode(nx_tokenizer *t, const char *text, size_t len, size_t max_len,
			int64_t *ids, size_t *n, nx_error *err)
{
	(void)t, (void)text, (void)max_len, (void)err;
	/* "free money" (first in the file) two ids, "lunch" one */
	ids[0] = ids[1] = 1;
	*n = len > 5 ? 2 : 1;
	return 0;
}

size_t nx_tokenizer_vocab_size(const nx_tokenizer *t)
{
	(void)t;
	return 1000;
}

double rt_half_to_double(uint16_t h)
{
	(void)h;
	return 0;
}

/* --- the model file --------------------------------------------------------- */
static int model_fd(void)
{
	struct buf m = { 0 }, g = { 0 }, o = { 0 };
	int t, i, fd;

	for (t = 0; t < NT; t++) {
		struct buf x = { 0 };
		int nf = t == 4 ? 8 : NF;   /* "small": 32 bytes, under the floor */

		for (i = 0; i < NF; i++)
			orig[t][i] = t == 2 ? 0.0f : (float)((i * 7 + t * 3) % 11) - 5.0f;
		f_varint(&x, 1, (uint64_t)nf);
		f_varint(&x, 2, 1);
		f_str(&x, 8, names[t]);
		f_bytes(&x, 9, orig[t], (size_t)nf * sizeof(float));
		f_msg(&g, 5, &x);
		free(x.d);
	}
	f_varint(&m, 1, 8);
	f_str(&g, 2, "g");
	f_msg(&m, 7, &g);
	f_varint(&o, 2, 13);
	f_msg(&m, 8, &o);
	fd = memfd_create("model", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, m.d, m.n), (ssize_t)m.n);
	free(m.d), free(g.d), free(o.d);
	return fd;
}

/* Run the check; the JSON line of each initializer (new references). */
static int check(bool zero_check, json_t *line[NT], char **text)
{
	struct rt_bundle b;
	nx_error err;
	size_t len = 0;
	FILE *f = open_memstream(text, &len);
	char *p, *nl;
	int rc, t;

	memset(&b, 0, sizeof(b));
	b.model_fd = model_fd();
	b.set.max_len = 8;
	nx_error_clear(&err);
	opened = overridable = 0;
	runs = 0;
	rc = rt_liveness(&b, f, 64, 0, zero_check, mode == EACH, &err);
	/* one session for all, or the baseline's and one per check */
	if (mode == SHARED)
		assert_int_equal(opened, 1);
	else
		assert_true(opened >= 5);
	assert_int_equal(overridable, mode == SHARED);
	fclose(f);
	close(b.model_fd);
	for (t = 0; t < NT; t++)
		line[t] = NULL;
	for (p = *text; (nl = strchr(p, '\n')); p = nl + 1) {
		json_t *j = json_loadb(p, (size_t)(nl - p), 0, NULL);
		const char *name = json_string_value(json_object_get(j, "initializer"));

		for (t = 0; name && t < NT; t++)
			if (!strcmp(name, names[t]))
				line[t] = json_incref(j);
		json_decref(j);
	}
	return rc;
}

static const char *verdict(json_t *j)
{
	return json_string_value(json_object_get(j, "verdict"));
}

static void verdicts(void **state)
{
	json_t *line[NT];
	char *text = NULL;
	int t;

	mode = *(enum mode *)*state;
	assert_int_equal(check(false, line, &text), NX_ECHECK);   /* something is dead */
	assert_string_equal(verdict(line[0]), "live");
	assert_true(json_number_value(json_object_get(line[0], "change")) > 1e-3);
	assert_string_equal(verdict(line[1]), "dead");
	assert_true(json_number_value(json_object_get(line[1], "change")) < 1e-6);
	assert_string_equal(verdict(line[2]), "dead-empty");  /* zeros carry nothing */
	assert_string_equal(verdict(line[3]), "dead");        /* no selftest text sees it */
	assert_null(line[4]);                                 /* under --min-bytes */
	assert_string_equal(verdict(line[5]), "live");        /* the longer text sees it */
	assert_null(json_object_get(line[1], "zero_change")); /* not asked */
	assert_non_null(strstr(text, "\"checked\":5,\"of\":5"));
	/* the baseline ran the shorter text first; then "live" one run (the
	 * short text moved it), the four others both texts: 2 + 1 + 4 x 2 */
	assert_int_equal(first_lens[0], 1);
	assert_int_equal(first_lens[1], 2);
	assert_int_equal(runs, 11);
	for (t = 0; t < NT; t++)
		json_decref(line[t]);
	free(text);
}

static void zero_check_sees_what_probes_see(void **state)
{
	json_t *line[NT];
	char *text = NULL;
	int t;

	mode = *(enum mode *)*state;
	assert_int_equal(check(true, line, &text), NX_ECHECK);
	/* dead on every input: zeros change nothing, the build may zero it */
	assert_true(json_is_number(json_object_get(line[1], "zero_change")));
	assert_true(json_number_value(json_object_get(line[1], "zero_change")) < 1e-6);
	/* dead on the selftest texts only: random ids see it */
	assert_true(json_number_value(json_object_get(line[3], "zero_change")) > 1e-3);
	assert_null(json_object_get(line[0], "zero_change"));   /* live: not measured */
	for (t = 0; t < NT; t++)
		json_decref(line[t]);
	free(text);
}

int main(void)
{
	static enum mode shared = SHARED, each = EACH, refused = REFUSED;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(verdicts, &shared),
		cmocka_unit_test_prestate(verdicts, &each),
		cmocka_unit_test_prestate(verdicts, &refused),
		cmocka_unit_test_prestate(zero_check_sees_what_probes_see, &shared),
		cmocka_unit_test_prestate(zero_check_sees_what_probes_see, &each),
		cmocka_unit_test_prestate(zero_check_sees_what_probes_see, &refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
