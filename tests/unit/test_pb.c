/* test_pb.c - the protobuf wire reader on hand-built bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nexus/pb.h"

static int memfile(const void *data, size_t n)
{
	int fd = memfd_create("pb", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, n), (ssize_t)n);
	return fd;
}

struct fixture {
	int fd;
	struct nx_pb_file f;
	struct nx_pb_reader r;
};

static void open_bytes(struct fixture *x, const void *data, size_t n)
{
	x->fd = memfile(data, n);
	assert_int_equal(nx_pb_file_init(&x->f, x->fd, "t.pb", NULL), 0);
	assert_int_equal(nx_pb_reader_init(&x->r, &x->f, 0, x->f.size, NULL), 0);
}

static void close_bytes(struct fixture *x)
{
	nx_pb_file_release(&x->f);
	close(x->fd);
}

static void reads_each_wire_type(void **state)
{
	/* 1: varint 300; 2: "hi"; 3: fixed32 1; 4: fixed64 2 */
	static const uint8_t b[] = { 0x08, 0xac, 0x02, 0x12, 0x02, 'h', 'i',
				     0x1d, 1, 0, 0, 0, 0x21, 2, 0, 0, 0, 0, 0, 0, 0 };
	struct fixture x;
	struct nx_pb_field f;
	char *s = NULL;
	size_t len;

	open_bytes(&x, b, sizeof(b));
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_int_equal(f.num, 1);
	assert_int_equal(f.wire, NX_PB_VARINT);
	assert_int_equal(f.value, 300);
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_int_equal(f.num, 2);
	assert_int_equal(f.offset, 5);
	assert_int_equal(f.len, 2);
	assert_int_equal(f.tag_offset, 3);
	assert_int_equal(nx_pb_read_string(&x.f, &f, 0, &s, &len, NULL), 0);
	assert_string_equal(s, "hi");
	free(s);
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_int_equal(f.wire, NX_PB_I32);
	assert_int_equal(f.value, 1);
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_int_equal(f.wire, NX_PB_I64);
	assert_int_equal(f.value, 2);
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 0);
	close_bytes(&x);
}

static void max_varint_and_overflow(void **state)
{
	static const uint8_t ok[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
	static const uint8_t big[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 };
	static const uint8_t longv[] = { 0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0 };
	struct fixture x;
	struct nx_pb_field f;
	nx_error e;

	open_bytes(&x, ok, sizeof(ok));
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_true(f.value == UINT64_MAX);
	close_bytes(&x);
	open_bytes(&x, big, sizeof(big));
	assert_int_equal(nx_pb_next(&x.r, &f, &e), NX_EFORMAT);
	assert_int_equal(e.offset, 1);
	close_bytes(&x);
	open_bytes(&x, longv, sizeof(longv));
	assert_int_equal(nx_pb_next(&x.r, &f, &e), NX_EFORMAT);
	close_bytes(&x);
}

static void errors_carry_offsets(void **state)
{
	static const uint8_t past[] = { 0x08, 0x01, 0x12, 0x05, 'a', 'b' };  /* len 5, 2 left */
	static const uint8_t group[] = { 0x08, 0x01, 0x0b };                 /* wire type 3 */
	static const uint8_t zero[] = { 0x08, 0x01, 0x00, 0x00 };             /* field 0 */
	static const uint8_t cut[] = { 0x08, 0x96 };                         /* varint cut */
	struct fixture x;
	struct nx_pb_field f;
	nx_error e;

	open_bytes(&x, past, sizeof(past));
	assert_int_equal(nx_pb_next(&x.r, &f, &e), 1);
	assert_int_equal(nx_pb_next(&x.r, &f, &e), NX_EFORMAT);
	assert_int_equal(e.offset, 2);
	assert_string_equal(e.path, "t.pb");
	close_bytes(&x);
	open_bytes(&x, group, sizeof(group));
	assert_int_equal(nx_pb_next(&x.r, &f, &e), 1);
	assert_int_equal(nx_pb_next(&x.r, &f, &e), NX_EFORMAT);
	assert_int_equal(e.offset, 2);
	assert_non_null(strstr(e.message, "wire type 3"));
	close_bytes(&x);
	open_bytes(&x, zero, sizeof(zero));
	assert_int_equal(nx_pb_next(&x.r, &f, &e), 1);
	assert_int_equal(nx_pb_next(&x.r, &f, &e), NX_EFORMAT);
	assert_int_equal(e.offset, 2);
	close_bytes(&x);
	open_bytes(&x, cut, sizeof(cut));
	assert_int_equal(nx_pb_next(&x.r, &f, &e), NX_EFORMAT);
	close_bytes(&x);
}

static void nested_messages_and_depth_cap(void **state)
{
	/* field 1 { field 2 { field 3: 7 } } then field 4: 1 */
	static const uint8_t b[] = { 0x0a, 0x04, 0x12, 0x02, 0x18, 0x07, 0x20, 0x01 };
	struct fixture x;
	struct nx_pb_reader a, c;
	struct nx_pb_field f, g, h;
	nx_error e;
	unsigned i;

	open_bytes(&x, b, sizeof(b));
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_int_equal(nx_pb_sub(&a, &x.r, &f, NULL), 0);
	assert_int_equal(a.depth, 1);
	assert_int_equal(nx_pb_next(&a, &g, NULL), 1);
	assert_int_equal(g.num, 2);
	assert_int_equal(nx_pb_sub(&c, &a, &g, NULL), 0);
	assert_int_equal(nx_pb_next(&c, &h, NULL), 1);
	assert_int_equal(h.num, 3);
	assert_int_equal(h.value, 7);
	assert_int_equal(nx_pb_next(&c, &h, NULL), 0);
	assert_int_equal(nx_pb_next(&a, &g, NULL), 0);
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_int_equal(f.num, 4);
	/* a varint is not a message */
	assert_int_equal(nx_pb_sub(&a, &x.r, &f, &e), NX_EFORMAT);
	/* the depth cap */
	a = x.r;
	f.wire = NX_PB_LEN;
	f.offset = 0;
	f.len = 0;
	for (i = 0; i < NX_PB_DEPTH_MAX; i++)
		assert_int_equal(nx_pb_sub(&a, &a, &f, NULL), 0);
	assert_int_equal(nx_pb_sub(&c, &a, &f, &e), NX_ELIMIT);
	close_bytes(&x);
}

static void string_cap(void **state)
{
	static const uint8_t b[] = { 0x0a, 0x05, 'h', 'e', 'l', 'l', 'o' };
	struct fixture x;
	struct nx_pb_field f;
	char *s = NULL;
	nx_error e;

	open_bytes(&x, b, sizeof(b));
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_int_equal(nx_pb_read_string(&x.f, &f, 4, &s, NULL, &e), NX_ELIMIT);
	assert_null(s);
	assert_int_equal(nx_pb_read_string(&x.f, &f, 5, &s, NULL, &e), 0);
	assert_string_equal(s, "hello");
	free(s);
	close_bytes(&x);
}

/* A payload far larger than the window is skipped, and fields after it are
 * still read correctly across window refills. */
static void skips_large_payload(void **state)
{
	size_t n = 3 * NX_PB_WINDOW + 17, i;
	uint8_t *b = calloc(1, n + 16);
	struct fixture x;
	struct nx_pb_field f;

	b[0] = 0x0a;
	/* varint of n */
	i = 1;
	{
		uint64_t v = n;

		while (v >= 0x80) {
			b[i++] = (uint8_t)(v | 0x80);
			v >>= 7;
		}
		b[i++] = (uint8_t)v;
	}
	i += n;
	b[i++] = 0x10;
	b[i++] = 0x2a;
	open_bytes(&x, b, i);
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_int_equal(f.len, n);
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 1);
	assert_int_equal(f.num, 2);
	assert_int_equal(f.value, 42);
	assert_int_equal(nx_pb_next(&x.r, &f, NULL), 0);
	close_bytes(&x);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads_each_wire_type),
		cmocka_unit_test(max_varint_and_overflow),
		cmocka_unit_test(errors_carry_offsets),
		cmocka_unit_test(nested_messages_and_depth_cap),
		cmocka_unit_test(string_cap),
		cmocka_unit_test(skips_large_payload),
	};
	return cmocka_run_group_tests_name("pb", tests, NULL, NULL);
}
