/*
 * test_consts.c - verify_consts.c, constant subgraphs (constant-subgraph):
 * a node computing from 4 KiB or more of constants only FAILs, unless it is
 * one of the conversion steps an exporter leaves on one stored weight; a
 * node that reads a graph input, or small constants, does not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/lib/verify/verify_internal.h"
#include "pbuild.h"

static void tensor(struct buf *g, const char *name, size_t nfloats)
{
	struct buf t = { 0 };
	float *data = calloc(nfloats, sizeof(float));
	size_t i;

	for (i = 0; i < nfloats; i++)
		data[i] = (float)i * 0.25f;
	f_varint(&t, 1, (uint64_t)nfloats);
	f_varint(&t, 2, 1);
	f_str(&t, 8, name);
	f_bytes(&t, 9, data, nfloats * sizeof(float));
	free(data);
	f_msg(g, 5, &t);
	free(t.d);
}

static void node(struct buf *g, const char *op, const char *a, const char *b, const char *out)
{
	struct buf n = { 0 };

	f_str(&n, 1, a);
	if (b)
		f_str(&n, 1, b);
	f_str(&n, 2, out);
	f_str(&n, 3, out);
	f_str(&n, 4, op);
	f_msg(g, 1, &n);
	free(n.d);
}

static void input(struct buf *g, unsigned num, const char *name)
{
	struct buf v = { 0 }, ty = { 0 }, tt = { 0 }, sh = { 0 }, d = { 0 };

	f_str(&v, 1, name);
	f_varint(&tt, 1, 1);
	f_varint(&d, 1, 1024);
	f_msg(&sh, 1, &d);
	f_msg(&tt, 2, &sh);
	f_msg(&ty, 1, &tt);
	f_msg(&v, 2, &ty);
	f_msg(g, num, &v);
	free(v.d), free(ty.d), free(tt.d), free(sh.d), free(d.d);
}

/* A model of one node op(a, b) -> y, a and b initializers of na, nb floats
 * (0: b is the graph input x; launder: b is Sub(x, x)), written as the
 * bundle's student; the number of findings (all constant-subgraph). */
static size_t model_findings(const char *op, size_t na, size_t nb, bool launder)
{
	char dir[] = "/tmp/nx_consts_XXXXXX", path[64];
	struct buf m = { 0 }, g = { 0 }, o = { 0 };
	struct vfy_ctx c;
	nx_error e;
	size_t n = 0, i;
	const struct nx_finding *f;
	int fd;

	f_varint(&m, 1, 8);
	if (launder)
		node(&g, "Sub", "x", "x", "z");
	node(&g, op, "a", launder ? "z" : nb || !strcmp(op, "Cast") ? (nb ? "b" : NULL) : "x", "y");
	f_str(&g, 2, "g");
	tensor(&g, "a", na);
	if (nb)
		tensor(&g, "b", nb);
	input(&g, 11, "x");
	input(&g, 12, "y");
	f_msg(&m, 7, &g);
	f_varint(&o, 2, 13);
	f_msg(&m, 8, &o);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/model", dir);
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/model/student_model.onnx", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, m.d, m.n), (ssize_t)m.n);
	close(fd);
	memset(&c, 0, sizeof(c));
	c.dirfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(c.dirfd >= 0);
	nx_error_clear(&e);
	fd = open(path, O_RDONLY);
	assert_int_equal(nx_onnx_open(&c.onnx, fd, "model/student_model.onnx", &e), 0);
	close(fd);
	assert_int_equal(nx_report_new(&c.r, dir, NULL), 0);
	assert_int_equal(nx_vfy__constant_subgraphs(&c), 0);
	f = nx_report_findings(c.r, &n);
	for (i = 0; i < n; i++)
		assert_string_equal(f[i].code, "constant-subgraph");
	nx_report_free(c.r);
	nx_onnx_free(c.onnx);
	close(c.dirfd);
	unlink(path);
	snprintf(path, sizeof(path), "%s/model", dir);
	rmdir(path);
	rmdir(dir);
	free(m.d), free(g.d), free(o.d);
	return n;
}

static size_t findings_for(const char *op, size_t na, size_t nb)
{
	return model_findings(op, na, nb, false);
}

/* x - x is zero whatever x is: w + Sub(x, x) is w, a constant. */
static void sub_x_x_launders_nothing(void **state)
{
	(void)state;
	assert_int_equal(model_findings("Add", 4096, 0, true), 1);
	assert_int_equal(model_findings("Add", 256, 0, true), 0);   /* small: folded or not */
}

static void decoder_of_constants_fails(void **state)
{
	(void)state;
	assert_int_equal(findings_for("Add", 1024, 1024), 1);   /* a split summed: 8 KiB */
	assert_int_equal(findings_for("Concat", 512, 512), 1);  /* 4 KiB exactly */
	assert_int_equal(findings_for("Mul", 2048, 1), 1);      /* a tensor times a constant */
}

static void live_or_small_nodes_pass(void **state)
{
	(void)state;
	assert_int_equal(findings_for("Add", 4096, 0), 0);      /* reads the input x */
	assert_int_equal(findings_for("Add", 256, 255), 0);     /* under 4 KiB of constants */
	assert_int_equal(findings_for("Cast", 4096, 0), 0);     /* an exporter's conversion */
	assert_int_equal(findings_for("Reshape", 4096, 2), 0);  /* only the first is large */
	assert_int_equal(findings_for("Reshape", 2048, 2048), 1); /* both are: a decoder */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(decoder_of_constants_fails),
		cmocka_unit_test(live_or_small_nodes_pass),
		cmocka_unit_test(sub_x_x_launders_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
