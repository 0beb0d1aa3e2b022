/*
 * onnx_contents.c - a tensor's contents whatever its encoding.
 *
 * The same float16 table can be written as raw_data or as int32_data
 * varints; floats as one packed run, several runs or one field per value.
 * Whoever compares tensors (the teacher fingerprint) must see the elements,
 * not the encoding, or re-encoding a copied tensor would hide it.
 */
#include "onnx_int.h"
#include "lib/format/hash_int.h"

#include <stdlib.h>
#include <string.h>

#define CONTENTS_CHUNK (64u << 10)   /* bytes handed to the caller at a time */

uint32_t onnx_typed_field(int32_t dtype, unsigned *width)
{
	size_t bits = nx_onnx_dtype_bits(dtype);

	*width = 0;
	switch (dtype) {
	case 1: case 14:            /* float, complex64 */
		*width = 4;
		return 4;
	case 11: case 15:           /* double, complex128 */
		*width = 8;
		return 10;
	case 7:                     /* int64 */
		*width = 8;
		return 7;
	case 12: case 13:           /* uint32, uint64 */
		*width = dtype == 12 ? 4 : 8;
		return 11;
	case 8: case 0:             /* string, undefined */
		return 0;
	default:
		/* int32 and narrower (int8 ... bfloat16, float8, packed 4-bit):
		 * one int32_data value per element, or per byte when sub-byte */
		if (!bits || bits > 32)
			return 0;
		*width = bits < 8 ? 1 : (unsigned)(bits / 8);
		return 5;
	}
}

struct sink {
	nx_onnx_bytes_fn fn;
	void *ctx;
	unsigned char *buf;
	size_t len;
};

static int flush(struct sink *s)
{
	int rc = s->len ? s->fn(s->ctx, s->buf, s->len) : 0;

	s->len = 0;
	return rc;
}

static int put(struct sink *s, uint64_t v, unsigned width)
{
	unsigned i;
	int rc;

	if (s->len + width > CONTENTS_CHUNK && (rc = flush(s)) != 0)
		return rc;
	for (i = 0; i < width; i++)
		s->buf[s->len++] = (unsigned char)(v >> (8 * i));
	return 0;
}

/*
 * Bytes [off, off + len) of the file, as they are: read straight into a
 * page-aligned buffer and handed on (read_range), not copied through the
 * protobuf reader's window (for the weights of a multi-GB model that copy
 * was a quarter of the fingerprint's time).
 */
static int put_range(struct sink *s, struct nx_pb_file *f, uint64_t off, uint64_t len,
		     nx_error *err)
{
	int rc;

	if (off > f->size || len > f->size - off)
		return nx_error_set(err, NX_EFORMAT, f->path, 0, (long long)off,
				    "%llu bytes at this offset run past the end of the file",
				    (unsigned long long)len);
	if ((rc = flush(s)) != 0)
		return rc;
	return read_range(f->fd, f->path, off, len, s->fn, s->ctx, err);
}

/* One occurrence of the typed field: a packed run or a single value. */
static int decode_field(struct sink *s, const struct nx_pb_reader *r, const struct nx_pb_field *f,
			unsigned width, nx_error *err)
{
	struct nx_pb_reader p;
	uint64_t v;
	int rc;

	if (f->wire != NX_PB_LEN)
		return put(s, f->value, width);
	if ((rc = nx_pb_sub(&p, r, f, err)) != 0)
		return rc;
	if (f->num == 4 || f->num == 10) {
		/* fixed-width values: the bytes are the contents */
		if (f->len % width)
			return nx_error_set(err, NX_EFORMAT, r->f->path, 0, (long long)f->tag_offset,
					    "packed values of %llu bytes are not whole %u-byte values",
					    (unsigned long long)f->len, width);
		return put_range(s, r->f, f->offset, f->len, err);
	}
	while (p.pos < p.end) {
		if ((rc = nx_pb_read_varint(&p, &v, err)) != 0 || (rc = put(s, v, width)) != 0)
			return rc;
	}
	return 0;
}

int nx_onnx_tensor_read(int fd, const char *path, const struct nx_onnx_tensor *t,
			nx_onnx_bytes_fn fn, void *ctx, nx_error *err)
{
	struct nx_pb_file pf = {0};
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct sink s = { fn, ctx, NULL, 0 };
	unsigned width = 0;
	uint32_t num = onnx_typed_field(t->data_type, &width);
	int rc;

	if ((rc = nx_pb_file_init(&pf, fd, path, err)) != 0)
		return rc;
	if (!(s.buf = malloc(CONTENTS_CHUNK))) {
		rc = nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
		goto out;
	}
	if (!t->contents_encoded) {
		rc = put_range(&s, &pf, t->contents_offset, t->contents_length, err);
		goto out;
	}
	if ((rc = nx_pb_reader_init(&r, &pf, t->msg_offset, t->msg_offset + t->msg_length,
				    err)) != 0)
		goto out;
	while ((rc = nx_pb_next(&r, &f, err)) > 0)
		if (f.num == num && (rc = decode_field(&s, &r, &f, width, err)) != 0)
			goto out;
	if (!rc)
		rc = flush(&s);
out:
	free(s.buf);
	nx_pb_file_release(&pf);
	return rc;
}
