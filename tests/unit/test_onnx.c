/* test_onnx.c - the ONNX walker on models built by hand, byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nexus/onnx.h"
#include "pbuild.h"

static void tensor(struct buf *g, const char *name, const int64_t *dims, size_t nd, size_t nbytes)
{
	struct buf t = { 0 };
	uint8_t *data = malloc(nbytes);
	size_t i;

	for (i = 0; i < nd; i++)
		f_varint(&t, 1, (uint64_t)dims[i]);
	f_varint(&t, 2, 1);
	f_str(&t, 8, name);
	memset(data, 0xab, nbytes);
	f_bytes(&t, 9, data, nbytes);
	free(data);
	f_msg(g, 5, &t);
}

static void value(struct buf *g, unsigned num, const char *name, const char *param, int64_t dim)
{
	struct buf v = { 0 }, ty = { 0 }, tt = { 0 }, sh = { 0 }, d1 = { 0 }, d2 = { 0 };

	f_str(&v, 1, name);
	f_varint(&tt, 1, 1);
	f_str(&d1, 2, param);
	f_msg(&sh, 1, &d1);
	f_varint(&d2, 1, (uint64_t)dim);
	f_msg(&sh, 1, &d2);
	f_msg(&tt, 2, &sh);
	f_msg(&ty, 1, &tt);
	f_msg(&v, 2, &ty);
	f_msg(g, num, &v);
}

/* ir_version, a graph (Add of x and w; an unused initializer; an unknown
 * field 99), metadata k=v, and opset_import last. */
static struct buf small_model(void)
{
	struct buf m = { 0 }, g = { 0 }, n = { 0 }, kv = { 0 }, op = { 0 };
	static const int64_t d23[] = { 2, 3 }, d4[] = { 4 };

	f_varint(&m, 1, 8);
	f_str(&m, 2, "hand-built");
	f_str(&n, 1, "x");
	f_str(&n, 1, "w");
	f_str(&n, 2, "y");
	f_str(&n, 3, "n0");
	f_str(&n, 4, "Add");
	f_msg(&g, 1, &n);
	f_str(&g, 2, "g");
	tensor(&g, "w", d23, 2, 24);
	tensor(&g, "unused", d4, 1, 16);
	value(&g, 11, "x", "batch", 3);
	value(&g, 11, "w", "r", 3);
	value(&g, 12, "y", "batch", 3);
	f_varint(&g, 99, 1);
	f_msg(&m, 7, &g);
	f_str(&kv, 1, "k");
	f_str(&kv, 2, "v");
	f_msg(&m, 14, &kv);
	f_varint(&op, 2, 13);
	f_msg(&m, 8, &op);
	return m;
}

static int memfile(const void *data, size_t n)
{
	int fd = memfd_create("onnx", MFD_CLOEXEC);

	assert_true(fd >= 0);
	if (n)
		assert_int_equal(write(fd, data, n), (ssize_t)n);
	return fd;
}

static int open_bytes(const void *data, size_t n, nx_onnx_model **m, nx_error *e)
{
	int fd = memfile(data, n), rc;

	nx_error_clear(e);
	rc = nx_onnx_open(m, fd, "m.onnx", e);
	close(fd);
	return rc;
}

static void summary_of_small_model(void **state)
{
	struct buf b = small_model();
	nx_onnx_model *m = NULL;
	const nx_onnx_summary *s;
	nx_error e;

	assert_int_equal(open_bytes(b.d, b.n, &m, &e), 0);
	s = nx_onnx_summary_get(m);
	assert_int_equal(s->ir_version, 8);
	assert_string_equal(s->producer_name, "hand-built");
	assert_string_equal(s->doc_string, "");
	assert_int_equal(s->nopsets, 1);
	assert_string_equal(s->opsets[0].domain, "");
	assert_int_equal(s->opsets[0].version, 13);
	assert_int_equal(s->parameters, 10);
	assert_int_equal(s->weight_bytes, 40);
	assert_int_equal(s->ntensors, 2);
	assert_string_equal(s->tensors[0].name, "w");
	assert_true(s->tensors[0].referenced);
	assert_false(s->tensors[1].referenced);
	assert_string_equal(s->tensors[1].scope, "graph");
	assert_int_equal(s->tensors[0].data_length, 24);
	assert_int_equal(b.d[s->tensors[0].data_offset], 0xab);
	assert_int_equal(b.d[s->tensors[0].data_offset - 1], 24); /* the length byte */
	/* w is an initializer, so only x is an input */
	assert_int_equal(s->ninputs, 1);
	assert_string_equal(s->inputs[0].name, "x");
	assert_int_equal(s->inputs[0].ndims, 2);
	assert_int_equal(s->inputs[0].dims[0], -1);
	assert_string_equal(s->inputs[0].dim_params[0], "batch");
	assert_int_equal(s->inputs[0].dims[1], 3);
	assert_null(s->inputs[0].dim_params[1]);
	assert_int_equal(s->noutputs, 1);
	assert_int_equal(s->nmetadata, 1);
	assert_string_equal(s->metadata[0].key, "k");
	assert_string_equal(s->quantization, "none");
	assert_int_equal(s->nnodes, 1);
	assert_int_equal(s->nop_domains, 1);
	assert_int_equal(s->unknown_fields, 1);
	assert_true(s->first_unknown_offset > 0);
	assert_int_equal(b.d[s->first_unknown_offset], ((99 << 3) & 0x7f) | 0x80);
	assert_int_equal(s->file_size, b.n);
	nx_onnx_free(m);
	free(b.d);
}

/* A model cut at any byte is an error, never a crash or an empty summary. */
static void truncation_at_every_byte(void **state)
{
	struct buf b = small_model();
	nx_onnx_model *m = NULL;
	nx_error e;
	size_t n;

	for (n = 0; n < b.n; n++) {
		int rc = open_bytes(b.d, n, &m, &e);

		if (rc == 0)
			fail_msg("prefix of %zu/%zu bytes accepted", n, b.n);
		assert_true(rc == NX_EFORMAT);
		assert_true(e.offset >= 0 && (size_t)e.offset <= n);
	}
	free(b.d);
}

static void trailing_bytes_and_not_onnx(void **state)
{
	struct buf b = small_model();
	static const char text[] = "hello, this is a text file\n";
	static const uint8_t zip[] = { 'P', 'K', 3, 4, 20, 0, 0, 0, 8, 0 };
	nx_onnx_model *m = NULL;
	nx_error e;
	uint8_t zero = 0;

	put(&b, &zero, 1);
	assert_int_equal(open_bytes(b.d, b.n, &m, &e), NX_EFORMAT);
	assert_int_equal(e.offset, (long long)b.n - 1);
	assert_int_equal(open_bytes(text, sizeof(text) - 1, &m, &e), NX_EFORMAT);
	assert_int_equal(open_bytes(zip, sizeof(zip), &m, &e), NX_EFORMAT);
	assert_int_equal(open_bytes("", 0, &m, &e), NX_EFORMAT);
	assert_non_null(strstr(e.message, "not an ONNX model"));
	free(b.d);
}

/* graph { node { attribute { name "g", g = <inner> } } } repeated. */
static struct buf nested_model(int levels)
{
	struct buf g = { 0 }, m = { 0 }, op = { 0 };
	int i;

	f_str(&g, 2, "leaf");
	for (i = 0; i < levels; i++) {
		struct buf a = { 0 }, n = { 0 }, outer = { 0 };

		f_str(&a, 1, "then_branch");
		f_msg(&a, 6, &g);
		f_str(&n, 4, "If");
		f_msg(&n, 5, &a);
		f_msg(&outer, 1, &n);
		g = outer;
	}
	f_varint(&m, 1, 8);
	f_msg(&m, 7, &g);
	f_varint(&op, 2, 13);
	f_msg(&m, 8, &op);
	return m;
}

static void nesting_depth_is_capped(void **state)
{
	struct buf ok = nested_model(10), deep = nested_model(40);
	nx_onnx_model *m = NULL;
	nx_error e;

	assert_int_equal(open_bytes(ok.d, ok.n, &m, &e), 0);
	assert_int_equal(nx_onnx_summary_get(m)->ngraphs, 11);
	assert_int_equal(nx_onnx_summary_get(m)->nnodes, 10);
	nx_onnx_free(m);
	assert_int_equal(open_bytes(deep.d, deep.n, &m, &e), NX_ELIMIT);
	free(ok.d);
	free(deep.d);
}

struct seen {
	struct buf *model;
	int node_names, meta_keys, stop_at;
	int calls;
	char scope[256];
};

static int visit(void *ctx, enum nx_onnx_str_kind kind, const char *s, size_t len,
		 uint64_t offset, const char *scope)
{
	struct seen *v = ctx;

	/* the offset points at the string's bytes in the file */
	assert_memory_equal(v->model->d + offset, s, len);
	if (kind == NX_ONNX_NODE_NAME) {
		v->node_names++;
		assert_string_equal(s, "n0");
		snprintf(v->scope, sizeof(v->scope), "%s", scope);
	}
	if (kind == NX_ONNX_META_KEY)
		v->meta_keys++;
	if (++v->calls == v->stop_at)
		return 42;
	return 0;
}

static void visitor_sees_every_string(void **state)
{
	struct buf b = small_model();
	struct seen v = { &b, 0, 0, 0, 0, "" };
	nx_error e;
	int fd = memfile(b.d, b.n);

	assert_int_equal(nx_onnx_visit_strings(fd, "m.onnx", visit, &v, &e), 0);
	assert_int_equal(v.node_names, 1);
	assert_int_equal(v.meta_keys, 1);
	assert_string_equal(v.scope, "graph");
	/* producer, node x4 + 1 edge, graph name, 2 tensor names, 3 values x2 (name, dim_param), k, v, domain? */
	assert_true(v.calls >= 15);
	memset(&v, 0, sizeof(v));
	v.model = &b;
	v.stop_at = 3;
	assert_int_equal(nx_onnx_visit_strings(fd, "m.onnx", visit, &v, &e), 42);
	assert_int_equal(v.calls, 3);
	close(fd);
	free(b.d);
}

static void human_counts(void **state)
{
	char s[32];

	nx_human_count(s, sizeof(s), 12);
	assert_string_equal(s, "12");
	nx_human_count(s, sizeof(s), 999);
	assert_string_equal(s, "999");
	nx_human_count(s, sizeof(s), 1234);
	assert_string_equal(s, "1.2K");
	nx_human_count(s, sizeof(s), 950000);
	assert_string_equal(s, "950K");
	nx_human_count(s, sizeof(s), 999999);
	assert_string_equal(s, "1.0M");
	nx_human_count(s, sizeof(s), 1234567);
	assert_string_equal(s, "1.2M");
	nx_human_count(s, sizeof(s), 4400000);
	assert_string_equal(s, "4.4M");
	nx_human_count(s, sizeof(s), 12345678);
	assert_string_equal(s, "12.3M");
	nx_human_count(s, sizeof(s), 1200000000);
	assert_string_equal(s, "1.2B");
	nx_human_count(s, sizeof(s), UINT64_MAX);
	assert_string_equal(s, "18446744T");
}

/* A canonical model: fields in number order, one payload per tensor of
 * exactly its size.  kind picks one departure (0: none). */
static struct buf canon_model(int kind)
{
	struct buf m = { 0 }, g = { 0 }, n = { 0 }, a = { 0 }, op = { 0 };
	static const int64_t d23[] = { 2, 3 };

	f_varint(&m, 1, 8);
	f_str(&m, 2, "hand-built");
	if (kind == 4)
		f_str(&m, 2, "again");   /* only the last is read */
	f_str(&n, 1, "x");
	f_str(&n, 1, "w");
	f_str(&n, 2, "y");
	f_str(&n, 4, kind == 3 ? "Flatten" : "Add");
	if (kind == 3) {
		/* an INT attribute that also carries a float list */
		f_str(&a, 1, "axis");
		f_varint(&a, 3, 1);
		varint(&a, 7 << 3 | 5);
		put(&a, "\x01\x02\x03\x04", 4);
		f_varint(&a, 20, 2);
		f_msg(&n, 5, &a);
	}
	f_msg(&g, 1, &n);
	f_str(&g, 2, "g");
	tensor(&g, "w", d23, 2, kind == 1 ? 28 : 24);
	value(&g, 11, "x", "batch", 3);
	value(&g, 12, "y", "batch", kind == 2 ? (int64_t)1 << 40 : 3);
	f_msg(&m, 7, &g);
	f_varint(&op, 2, 13);
	f_msg(&m, 8, &op);
	return m;
}

static void canonical_form(void **state)
{
	static const char *const why[] = {
		NULL, "raw_data of 28 bytes", "over the limit", "never reads", "given twice",
	};
	struct nx_onnx_canon c;
	nx_error e;
	size_t k, cut;

	for (k = 0; k < sizeof(why) / sizeof(why[0]); k++) {
		struct buf b = canon_model((int)k);
		int fd = memfile(b.d, b.n);

		nx_error_clear(&e);
		assert_int_equal(nx_onnx_canon_check(&c, fd, "m.onnx", &e), 0);
		assert_true(c.canonical == (k == 0));
		if (k)
			assert_non_null(strstr(c.what, why[k]));
		else
			assert_int_equal(c.offset, -1);
		/* cut anywhere: an error or a verdict, never a crash */
		for (cut = 0; k == 0 && cut < b.n; cut++) {
			int fd2 = memfile(b.d, cut), rc;

			rc = nx_onnx_canon_check(&c, fd2, "m.onnx", &e);
			assert_true(rc == 0 || rc == NX_EFORMAT);
			close(fd2);
		}
		close(fd);
		free(b.d);
	}
	(void)state;
}

static void dtypes(void **state)
{
	assert_string_equal(nx_onnx_dtype_name(1), "float");
	assert_string_equal(nx_onnx_dtype_name(10), "float16");
	assert_string_equal(nx_onnx_dtype_name(3), "int8");
	assert_string_equal(nx_onnx_dtype_name(999), "undefined");
	assert_string_equal(nx_onnx_dtype_name(-1), "undefined");
	assert_int_equal(nx_onnx_dtype_size(1), 4);
	assert_int_equal(nx_onnx_dtype_size(16), 2);
	assert_int_equal(nx_onnx_dtype_size(8), 0);
	assert_int_equal(nx_onnx_dtype_size(22), 0);
	assert_int_equal(nx_onnx_dtype_bits(22), 4);
	assert_string_equal(nx_onnx_str_kind_name(NX_ONNX_NODE_NAME), "node_name");
}

/* The one location rule export, verify and the fingerprint share: a name
 * with two dots in it is a name, a '..' component is an escape. */
static void location_rule(void **state)
{
	static const char *const ok[] = { "w..1.bin", "student.onnx.data", "d/w.bin", "..w", "w.." };
	static const char *const bad[] = { "", "/w.bin", "../w.bin", "d/../w", "./w", "d//w",
					   "d/", "..", "d\\w" };
	char big[NX_ONNX_LOCATION_MAX + 2];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
		assert_null(nx_onnx_location_problem(ok[i]));
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_non_null(nx_onnx_location_problem(bad[i]));
	memset(big, 'w', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_non_null(nx_onnx_location_problem(big));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(summary_of_small_model),
		cmocka_unit_test(truncation_at_every_byte),
		cmocka_unit_test(trailing_bytes_and_not_onnx),
		cmocka_unit_test(nesting_depth_is_capped),
		cmocka_unit_test(visitor_sees_every_string),
		cmocka_unit_test(human_counts),
		cmocka_unit_test(dtypes),
		cmocka_unit_test(location_rule),
		cmocka_unit_test(canonical_form),
	};
	return cmocka_run_group_tests_name("onnx", tests, NULL, NULL);
}
