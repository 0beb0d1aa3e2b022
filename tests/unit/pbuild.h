/*
 * pbuild.h - protobuf bytes built by hand for the ONNX reader and writer
 * tests: a growable buffer and one function per wire form.  Include after
 * <cmocka.h> (allocation failures fail the test).
 */
#ifndef NEXUS_TEST_PBUILD_H
#define NEXUS_TEST_PBUILD_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	uint8_t *d;
	size_t n, cap;
};

static inline void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->d = realloc(b->d, b->cap);
		assert_non_null(b->d);
	}
	memcpy(b->d + b->n, p, n);
	b->n += n;
}

static inline void varint(struct buf *b, uint64_t v)
{
	uint8_t c;

	while (v >= 0x80) {
		c = (uint8_t)(v | 0x80);
		put(b, &c, 1);
		v >>= 7;
	}
	c = (uint8_t)v;
	put(b, &c, 1);
}

static inline void f_varint(struct buf *b, unsigned num, uint64_t v)
{
	varint(b, (uint64_t)num << 3);
	varint(b, v);
}

static inline void f_bytes(struct buf *b, unsigned num, const void *p, size_t n)
{
	varint(b, (uint64_t)num << 3 | 2);
	varint(b, n);
	put(b, p, n);
}

static inline void f_str(struct buf *b, unsigned num, const char *s)
{
	f_bytes(b, num, s, strlen(s));
}

/* Append message m as field num and free m. */
static inline void f_msg(struct buf *b, unsigned num, struct buf *m)
{
	f_bytes(b, num, m->d, m->n);
	free(m->d);
	memset(m, 0, sizeof(*m));
}

#endif
