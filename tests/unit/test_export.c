/* test_export.c - the export writer on models built by hand, byte by byte:
 * an export that changes nothing is byte-identical, a changed message gets
 * its length recomputed, large weights go through the copy path. */
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

#include "nexus/export.h"
#include "pbuild.h"

/* TensorProto float [n] named name with n * 4 raw bytes of a pattern. */
static void tensor(struct buf *b, unsigned num, const char *name, size_t n, const char *doc)
{
	struct buf t = { 0 };
	uint8_t *raw = malloc(n * 4 + 1);
	size_t i;

	assert_non_null(raw);
	for (i = 0; i < n * 4; i++)
		raw[i] = (uint8_t)(i * 7 + 3);
	f_varint(&t, 1, n);
	f_varint(&t, 2, 1);
	f_str(&t, 8, name);
	if (doc)
		f_str(&t, 12, doc);
	f_bytes(&t, 9, raw, n * 4);
	free(raw);
	f_msg(b, num, &t);
}

static void value(struct buf *b, unsigned num, const char *name)
{
	struct buf v = { 0 }, ty = { 0 }, tt = { 0 };

	f_varint(&tt, 1, 1);
	f_msg(&ty, 1, &tt);
	f_str(&v, 1, name);
	f_msg(&v, 2, &ty);
	f_msg(b, num, &v);
}

struct spec {
	bool model_doc, node_doc, dead, producer, opset_first;
	size_t big;   /* elements of the used initializer */
};

static struct buf model(const struct spec *s)
{
	struct buf m = { 0 }, g = { 0 }, n = { 0 }, op = { 0 };

	f_varint(&m, 1, 8);
	if (s->opset_first) {
		f_str(&op, 1, "");
		f_varint(&op, 2, 13);
		f_msg(&m, 8, &op);
	}
	if (s->producer) {
		f_str(&m, 2, "nexus");
		f_str(&m, 3, "9.9");
	}
	if (s->model_doc)
		f_str(&m, 6, "trained by distilling a large teacher");
	f_str(&n, 1, "x");
	f_str(&n, 1, "w");
	f_str(&n, 2, "y");
	f_str(&n, 3, "add");
	f_str(&n, 4, "Add");
	if (s->node_doc)
		f_str(&n, 6, "node doc");
	f_msg(&g, 1, &n);
	f_str(&g, 2, "g");
	tensor(&g, 5, "w", s->big, NULL);
	if (s->dead)
		tensor(&g, 5, "dead", 300, NULL);
	value(&g, 11, "x");
	value(&g, 12, "y");
	f_msg(&m, 7, &g);
	/* fields in number order, as the export writes them */
	if (!s->opset_first) {
		f_str(&op, 1, "");
		f_varint(&op, 2, 13);
		f_msg(&m, 8, &op);
	}
	return m;
}

static int memfd(const struct buf *b)
{
	int fd = memfd_create("model", 0);

	assert_true(fd >= 0);
	if (b)
		assert_int_equal(pwrite(fd, b->d, b->n, 0), (ssize_t)b->n);
	return fd;
}

static uint8_t *slurp(int fd, size_t *len)
{
	off_t end = lseek(fd, 0, SEEK_END);
	uint8_t *d = malloc((size_t)end + 1);

	assert_non_null(d);
	assert_int_equal(pread(fd, d, (size_t)end, 0), end);
	*len = (size_t)end;
	return d;
}

/* Export src with opts o; the output must equal want, its digest too. */
static void expect_export(const struct buf *src, const struct nx_export_opts *o,
			  const struct buf *want, struct nx_export_result *res)
{
	int in = memfd(src), out = memfd(NULL);
	unsigned char sha[NX_SHA256_LEN];
	nx_error err;
	uint8_t *got;
	size_t len;
	int rc = nx_export_run(res, in, "m.onnx", out, o, &err);

	if (rc)
		fprintf(stderr, "export: %s\n", err.message);
	assert_int_equal(rc, 0);
	got = slurp(out, &len);
	assert_int_equal(len, want->n);
	assert_int_equal(res->size, want->n);
	assert_memory_equal(got, want->d, want->n);
	nx_sha256_buf(sha, want->d, want->n);
	assert_memory_equal(res->sha256, sha, NX_SHA256_LEN);
	free(got);
	close(in);
	close(out);
}

static void nothing_changed_is_identical(void **state)
{
	struct spec s = { .big = 10 };
	struct buf m = model(&s);
	struct nx_export_opts o = { .extract = true, .ws_dirfd = -1 };
	struct nx_export_result r;

	expect_export(&m, &o, &m, &r);
	assert_int_equal(r.nremoved, 0);
	nx_export_result_release(&r);
	free(m.d);
}

/* Over the copy_file_range threshold: the weights are copied, not buffered. */
static void large_weights_copied(void **state)
{
	struct spec s = { .big = 3u << 20 };
	struct buf m = model(&s);
	struct nx_export_opts o = { .extract = true, .ws_dirfd = -1 };
	struct nx_export_result r;

	expect_export(&m, &o, &m, &r);
	nx_export_result_release(&r);
	free(m.d);
}

/* Dropping a field deep inside changes the lengths of node, graph: the
 * result equals the model built without the field. */
static void lengths_recomputed(void **state)
{
	struct spec src = { .model_doc = true, .node_doc = true, .dead = true, .big = 40 };
	struct spec dst = { .producer = true, .big = 40 };
	struct buf m = model(&src), want = model(&dst);
	struct nx_export_opts o = { .extract = true, .strip_metadata = true, .ws_dirfd = -1,
				    .producer_version = "9.9" };
	struct nx_export_result r;

	/* producer fields are added where their numbers put them */
	expect_export(&m, &o, &want, &r);
	assert_int_equal(r.doc_strings, 2);
	assert_int_equal(r.nremoved, 1);
	assert_int_equal(r.removed[0].what, NX_EXPORT_INITIALIZER);
	assert_string_equal(r.removed[0].name, "dead");
	nx_export_result_release(&r);
	free(m.d);
	free(want.d);
}

/* The canonical form has every message's fields in number order: a
 * model with opset_import (8) before its graph (7) is written reordered. */
static void fields_put_in_number_order(void **state)
{
	struct spec src = { .opset_first = true, .big = 10 }, dst = { .big = 10 };
	struct buf m = model(&src), want = model(&dst);
	struct nx_export_opts o = { .extract = true, .ws_dirfd = -1 };
	struct nx_export_result r;

	assert_memory_not_equal(m.d, want.d, m.n < want.n ? m.n : want.n);
	expect_export(&m, &o, &want, &r);
	nx_export_result_release(&r);
	free(m.d);
	free(want.d);
}

static void missing_output_is_config_error(void **state)
{
	struct spec s = { .big = 10 };
	struct buf m = model(&s);
	const char *outs[] = { "nope" };
	struct nx_export_opts o = { .outputs = outs, .noutputs = 1, .extract = true, .ws_dirfd = -1 };
	struct nx_export_result r;
	nx_error err;
	int in = memfd(&m);

	assert_int_equal(nx_export_plan(&r, in, "m.onnx", &o, &err), NX_ECONFIG);
	assert_non_null(strstr(err.message, "'nope'"));
	close(in);
	free(m.d);
}

/* Cut anywhere: an error with an offset, never a crash or a success. */
static void truncated_everywhere(void **state)
{
	struct spec s = { .node_doc = true, .dead = true, .big = 4 };
	struct buf m = model(&s);
	struct nx_export_opts o = { .extract = true, .strip_metadata = true, .ws_dirfd = -1 };
	size_t cut;

	for (cut = 0; cut < m.n; cut++) {
		struct buf part = { m.d, cut, cut };
		struct nx_export_result r;
		nx_error err;
		int in = memfd(&part), out = memfd(NULL);
		int rc = nx_export_run(&r, in, "m.onnx", out, &o, &err);

		assert_true(rc == NX_EFORMAT || rc == NX_ELIMIT);
		close(in);
		close(out);
	}
	free(m.d);
}

/*
 * torch.onnx.export's shared initializer: y = x + b where b is
 * Identity(teacher.b), a float tensor of n elements, all zero when flat.
 */
static struct buf alias_model(size_t n, bool flat)
{
	struct buf m = { 0 }, g = { 0 }, id = { 0 }, add = { 0 }, op = { 0 }, t = { 0 };
	uint8_t *raw = calloc(n * 4 + 1, 1);
	size_t i;

	assert_non_null(raw);
	for (i = 0; !flat && i < n * 4; i++)
		raw[i] = (uint8_t)(i * 7 + 3);
	f_varint(&m, 1, 8);
	f_str(&op, 1, "");
	f_varint(&op, 2, 13);
	f_msg(&m, 8, &op);
	f_str(&id, 1, "teacher.b");
	f_str(&id, 2, "b");
	f_str(&id, 4, "Identity");
	f_msg(&g, 1, &id);
	f_str(&add, 1, "x");
	f_str(&add, 1, "b");
	f_str(&add, 2, "y");
	f_str(&add, 4, "Add");
	f_msg(&g, 1, &add);
	f_str(&g, 2, "g");
	f_varint(&t, 1, n);
	f_varint(&t, 2, 1);
	f_str(&t, 8, "teacher.b");
	f_bytes(&t, 9, raw, n * 4);
	f_msg(&g, 5, &t);
	value(&g, 11, "x");
	value(&g, 12, "y");
	f_msg(&m, 7, &g);
	free(raw);
	return m;
}

/* The alias becomes the student's own initializer when its contents are a
 * constant fill or small; other shared contents are teacher weights. */
static void shared_initializer_resolved_by_content(void **state)
{
	static const struct { size_t n; bool flat; int rc; } cases[] = {
		{ 2, false, 0 }, { 4096, true, 0 }, { 1024, false, NX_ECHECK },
	};
	const char *outs[] = { "y" };
	struct nx_export_opts o = { .outputs = outs, .noutputs = 1, .extract = true,
				    .ws_dirfd = -1 };
	size_t i, len;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct buf m = alias_model(cases[i].n, cases[i].flat);
		struct nx_export_result r;
		nx_error err;
		int in = memfd(&m), out = memfd(NULL);
		uint8_t *got;

		assert_int_equal(nx_export_run(&r, in, "m.onnx", out, &o, &err), cases[i].rc);
		if (!cases[i].rc) {
			got = slurp(out, &len);
			assert_null(memmem(got, len, "teacher", 7));
			assert_null(memmem(got, len, "Identity", 8));
			assert_non_null(memmem(got, len, "\x42\x01" "b", 3)); /* name field 8 = "b" */
			assert_int_equal(r.kept_initializers, 1);
			assert_int_equal(r.kept_nodes, 1);
			free(got);
			nx_export_result_release(&r);
		} else {
			assert_non_null(strstr(err.message, "teacher weights"));
			assert_non_null(strstr(err.message, "'b'"));
		}
		close(in);
		close(out);
		free(m.d);
	}
}

/* A NUL in a kept name hides the rest from C readers, not from protobuf
 * ones (ONNX Runtime, verify's scanners): the export refuses the model
 * rather than judge the name by its first half. */
static void name_with_nul_refused(void **state)
{
	static const char hidden[] = "add\0teacher";
	struct buf m = { 0 }, g = { 0 }, n = { 0 }, op = { 0 };
	struct nx_export_opts o = { .ws_dirfd = -1 };
	struct nx_export_result res = { 0 };
	nx_error err;
	int in, out;

	(void)state;
	f_varint(&m, 1, 8);
	f_str(&n, 1, "x");
	f_str(&n, 1, "w");
	f_str(&n, 2, "y");
	f_bytes(&n, 3, hidden, sizeof(hidden) - 1);
	f_str(&n, 4, "Add");
	f_msg(&g, 1, &n);
	f_str(&g, 2, "g");
	tensor(&g, 5, "w", 4, NULL);
	value(&g, 11, "x");
	value(&g, 12, "y");
	f_msg(&m, 7, &g);
	f_str(&op, 1, "");
	f_varint(&op, 2, 13);
	f_msg(&m, 8, &op);
	in = memfd(&m);
	out = memfd(NULL);
	assert_int_equal(nx_export_run(&res, in, "m.onnx", out, &o, &err), NX_EFORMAT);
	assert_non_null(strstr(err.message, "NUL"));
	nx_export_result_release(&res);
	free(m.d);
	close(in);
	close(out);
}

/* The int8 rule the exporter and the teacher fingerprints share. */
static void quant_int8_rule(void **state)
{
	(void)state;
	assert_true(nx_quant_int8_scale(0.0f) == 1.0f);
	assert_true(nx_quant_int8_scale(127.0f) == 1.0f);
	assert_int_equal(nx_quant_int8(127.0f, 1.0f), 127);
	assert_int_equal(nx_quant_int8(-127.0f, 1.0f), -127);
	assert_int_equal(nx_quant_int8(300.0f, 1.0f), 127);     /* clamped, never -128 */
	assert_int_equal(nx_quant_int8(-300.0f, 1.0f), -127);
	assert_int_equal(nx_quant_int8(2.5f, 1.0f), 2);         /* half to even */
	assert_int_equal(nx_quant_int8(3.5f, 1.0f), 4);
	assert_int_equal(nx_quant_int8(-2.5f, 1.0f), -2);
	assert_int_equal(nx_quant_int8(0.0f, 1.0f), 0);
	assert_true(nx_quant_same_tensor("W", "W"));
	assert_true(nx_quant_same_tensor("W", "W/int8"));
	assert_false(nx_quant_same_tensor("W", "W/scale"));
	assert_false(nx_quant_same_tensor("W", "Wx/int8"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(nothing_changed_is_identical),
		cmocka_unit_test(quant_int8_rule),
		cmocka_unit_test(large_weights_copied),
		cmocka_unit_test(lengths_recomputed),
		cmocka_unit_test(fields_put_in_number_order),
		cmocka_unit_test(missing_output_is_config_error),
		cmocka_unit_test(truncated_everywhere),
		cmocka_unit_test(shared_initializer_resolved_by_content),
		cmocka_unit_test(name_with_nul_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
