/*
 * onnx_contents.c - a tensor's contents whatever its encoding.
 *
 * The same float16 table can be written as raw_data or as int32_data
 * varints; floats as one packed run, several runs or one field per value.
 * Whoever compares tensors (the teacher fingerprint) must see the elements,
 * not the encoding, or re-encoding a copied tensor would hide it.
 */
#include "onnx_int.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "nexus/hash.h"

#define CONTENTS_CHUNK (64u << 10)   /* bytes decoded between digest updates */

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
	EVP_MD_CTX *md;
	unsigned char *buf;
	size_t len;
	uint64_t total;
};

static void put(struct sink *s, uint64_t v, unsigned width)
{
	unsigned i;

	if (s->len + width > CONTENTS_CHUNK) {
		EVP_DigestUpdate(s->md, s->buf, s->len);
		s->len = 0;
	}
	for (i = 0; i < width; i++)
		s->buf[s->len++] = (unsigned char)(v >> (8 * i));
	s->total += width;
}

/* One occurrence of the typed field: a packed run or a single value. */
static int decode_field(struct sink *s, const struct nx_pb_reader *r, const struct nx_pb_field *f,
			unsigned width, nx_error *err)
{
	struct nx_pb_reader p;
	uint64_t v, off;
	int rc;

	if (f->wire != NX_PB_LEN) {
		put(s, f->value, width);
		return 0;
	}
	if ((rc = nx_pb_sub(&p, r, f, err)) != 0)
		return rc;
	if (f->num == 4 || f->num == 10) {
		/* fixed-width values: the bytes are the contents */
		if (f->len % width)
			return nx_error_set(err, NX_EFORMAT, r->f->path, 0, (long long)f->tag_offset,
					    "packed values of %llu bytes are not whole %u-byte values",
					    (unsigned long long)f->len, width);
		for (off = 0; off < f->len;) {
			size_t n = f->len - off < CONTENTS_CHUNK ? (size_t)(f->len - off) : CONTENTS_CHUNK;

			EVP_DigestUpdate(s->md, s->buf, s->len);
			s->len = 0;
			if ((rc = nx_pb_read_at(r->f, f->offset + off, s->buf, n, err)) != 0)
				return rc;
			s->len = n;
			s->total += n;
			off += n;
		}
		return 0;
	}
	while (p.pos < p.end) {
		if ((rc = nx_pb_read_varint(&p, &v, err)) != 0)
			return rc;
		put(s, v, width);
	}
	return 0;
}

int nx_onnx_tensor_sha256(unsigned char out[NX_SHA256_LEN], uint64_t *out_len, int fd,
			  const char *path, const struct nx_onnx_tensor *t, nx_error *err)
{
	struct nx_pb_file pf = {0};
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct sink s = {0};
	unsigned width = 0;
	uint32_t num = onnx_typed_field(t->data_type, &width);
	int rc;

	if (!t->contents_encoded) {
		if ((rc = nx_sha256_range(out, fd, t->contents_offset, t->contents_length, path,
					  err)) == 0)
			*out_len = t->contents_length;
		return rc;
	}
	if ((rc = nx_pb_file_init(&pf, fd, path, err)) != 0)
		return rc;
	s.md = EVP_MD_CTX_new();
	s.buf = malloc(CONTENTS_CHUNK);
	if (!s.md || !s.buf) {
		rc = nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
		goto out;
	}
	if (!EVP_DigestInit_ex(s.md, EVP_sha256(), NULL)) {
		rc = nx_error_set(err, NX_EINTERNAL, path, 0, -1, "SHA-256 unavailable");
		goto out;
	}
	if ((rc = nx_pb_reader_init(&r, &pf, t->msg_offset, t->msg_offset + t->msg_length,
				    err)) != 0)
		goto out;
	while ((rc = nx_pb_next(&r, &f, err)) > 0)
		if (f.num == num && (rc = decode_field(&s, &r, &f, width, err)) != 0)
			goto out;
	if (rc)
		goto out;
	EVP_DigestUpdate(s.md, s.buf, s.len);
	if (!EVP_DigestFinal_ex(s.md, out, NULL)) {
		rc = nx_error_set(err, NX_EINTERNAL, path, 0, -1, "SHA-256 failed");
		goto out;
	}
	*out_len = s.total;
out:
	EVP_MD_CTX_free(s.md);
	free(s.buf);
	nx_pb_file_release(&pf);
	return rc;
}
