/* pb.c - protobuf wire-format reader over a pread() window (nexus/pb.h). */
#include "nexus/pb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A miss right after the window is a sequential walk and refills the whole
 * window; a jump (skipping a payload) only needs the next header or two. */
#define PB_JUMP_READ 4096

int nx_pb_file_init(struct nx_pb_file *f, int fd, const char *path, nx_error *err)
{
	struct stat st;

	memset(f, 0, sizeof(*f));
	f->fd = fd;
	f->path = path;
	if (fstat(fd, &st) != 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot stat %s",
				      path ? path : "model");
	if (!S_ISREG(st.st_mode))
		return nx_error_set(err, NX_EIO, path, 0, -1,
				    "%s is not a regular file", path ? path : "model");
	f->size = (uint64_t)st.st_size;
	f->buf = malloc(NX_PB_WINDOW);
	if (!f->buf)
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
	return 0;
}

void nx_pb_file_release(struct nx_pb_file *f)
{
	if (!f)
		return;
	free(f->buf);
	f->buf = NULL;
	f->buf_len = 0;
}

/* Make byte `off` available in the window; 0 or NX_EFORMAT/NX_EIO. */
static int fill(struct nx_pb_file *f, uint64_t off, nx_error *err)
{
	size_t want = NX_PB_WINDOW;
	ssize_t n;

	if (off >= f->buf_off && off < f->buf_off + f->buf_len)
		return 0;
	if (off >= f->size)
		return nx_error_set(err, NX_EFORMAT, f->path, 0, (long long)off,
				    "unexpected end of file: the model is truncated");
	if (off != f->buf_off + f->buf_len)
		want = PB_JUMP_READ;
	if (want > f->size - off)
		want = (size_t)(f->size - off);
	do
		n = pread(f->fd, f->buf, want, (off_t)off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return nx_error_errno(err, NX_EIO, errno, f->path, "cannot read %s",
				      f->path ? f->path : "model");
	if (n == 0)
		return nx_error_set(err, NX_EFORMAT, f->path, 0, (long long)off,
				    "file shrank while reading: read it again");
	f->buf_off = off;
	f->buf_len = (size_t)n;
	return 0;
}

int nx_pb_read_at(struct nx_pb_file *f, uint64_t off, void *dst, size_t len, nx_error *err)
{
	uint8_t *d = dst;
	int rc;

	if (len > NX_PB_STRING_MAX || off > f->size || len > f->size - off)
		return nx_error_set(err, NX_EFORMAT, f->path, 0, (long long)off,
				    "%zu bytes at this offset run past the end of the file", len);
	while (len > 0) {
		size_t k;

		if ((rc = fill(f, off, err)) < 0)
			return rc;
		k = f->buf_off + f->buf_len - off;
		if (k > len)
			k = len;
		memcpy(d, f->buf + (off - f->buf_off), k);
		d += k;
		off += k;
		len -= k;
	}
	return 0;
}

int nx_pb_reader_init(struct nx_pb_reader *out, struct nx_pb_file *f,
		      uint64_t start, uint64_t end, nx_error *err)
{
	if (start > end || end > f->size)
		return nx_error_set(err, NX_EFORMAT, f->path, 0, (long long)start,
				    "message runs past the end of the file");
	out->f = f;
	out->pos = start;
	out->end = end;
	out->depth = 0;
	return 0;
}

int nx_pb_read_varint(struct nx_pb_reader *r, uint64_t *out, nx_error *err)
{
	struct nx_pb_file *f = r->f;
	uint64_t v = 0, start = r->pos;
	unsigned shift = 0;
	int rc;

	for (;;) {
		uint8_t b;

		if (r->pos >= r->end)
			return nx_error_set(err, NX_EFORMAT, f->path, 0, (long long)start,
					    "varint runs past the end of its message (truncated?)");
		if ((rc = fill(f, r->pos, err)) < 0)
			return rc;
		b = f->buf[r->pos - f->buf_off];
		r->pos++;
		/* the 10th byte may only carry the top bit of a 64-bit value */
		if (shift == 63 && (b & 0x7e))
			return nx_error_set(err, NX_EFORMAT, f->path, 0, (long long)start,
					    "varint overflows 64 bits");
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
		shift += 7;
		if (shift > 63)
			return nx_error_set(err, NX_EFORMAT, f->path, 0, (long long)start,
					    "varint longer than 10 bytes");
	}
	*out = v;
	return 0;
}

static int read_fixed(struct nx_pb_reader *r, size_t n, uint64_t *out, nx_error *err)
{
	uint8_t b[8];
	uint64_t v = 0;
	size_t i;
	int rc;

	if (r->end - r->pos < n)
		return nx_error_set(err, NX_EFORMAT, r->f->path, 0, (long long)r->pos,
				    "fixed-width value runs past the end of its message (truncated?)");
	if ((rc = nx_pb_read_at(r->f, r->pos, b, n, err)) < 0)
		return rc;
	for (i = 0; i < n; i++)
		v |= (uint64_t)b[i] << (8 * i);
	r->pos += n;
	*out = v;
	return 0;
}

int nx_pb_next(struct nx_pb_reader *r, struct nx_pb_field *out, nx_error *err)
{
	struct nx_pb_field fld;
	uint64_t key;
	int rc;

	if (r->pos >= r->end)
		return 0;
	memset(&fld, 0, sizeof(fld));
	fld.tag_offset = r->pos;
	if ((rc = nx_pb_read_varint(r, &key, err)) < 0)
		return rc;
	if ((key >> 3) == 0 || (key >> 3) > NX_PB_FIELD_MAX)
		return nx_error_set(err, NX_EFORMAT, r->f->path, 0, (long long)fld.tag_offset,
				    "invalid protobuf field number %llu: not a valid model or trailing garbage",
				    (unsigned long long)(key >> 3));
	fld.num = (uint32_t)(key >> 3);
	fld.wire = (enum nx_pb_wire)(key & 7);
	fld.offset = r->pos;
	switch (key & 7) {
	case NX_PB_VARINT:
		rc = nx_pb_read_varint(r, &fld.value, err);
		break;
	case NX_PB_I64:
		rc = read_fixed(r, 8, &fld.value, err);
		break;
	case NX_PB_I32:
		rc = read_fixed(r, 4, &fld.value, err);
		break;
	case NX_PB_LEN:
		if ((rc = nx_pb_read_varint(r, &fld.len, err)) < 0)
			break;
		fld.offset = r->pos;
		if (fld.len > r->end - r->pos) {
			rc = nx_error_set(err, NX_EFORMAT, r->f->path, 0, (long long)fld.tag_offset,
					  "field %u claims %llu bytes but only %llu remain in its message (truncated?)",
					  fld.num, (unsigned long long)fld.len,
					  (unsigned long long)(r->end - r->pos));
			break;
		}
		r->pos += fld.len;
		break;
	default:
		return nx_error_set(err, NX_EFORMAT, r->f->path, 0, (long long)fld.tag_offset,
				    "unsupported protobuf wire type %u in field %u",
				    (unsigned)(key & 7), fld.num);
	}
	if (rc < 0)
		return rc;
	if (fld.wire != NX_PB_LEN)
		fld.len = r->pos - fld.offset;
	*out = fld;
	return 1;
}

int nx_pb_sub(struct nx_pb_reader *out, const struct nx_pb_reader *parent,
	      const struct nx_pb_field *fld, nx_error *err)
{
	if (fld->wire != NX_PB_LEN)
		return nx_error_set(err, NX_EFORMAT, parent->f->path, 0, (long long)fld->tag_offset,
				    "field %u should be a message but is a %s",
				    fld->num, nx_pb_wire_name(fld->wire));
	if (parent->depth + 1 > NX_PB_DEPTH_MAX)
		return nx_error_set(err, NX_ELIMIT, parent->f->path, 0, (long long)fld->tag_offset,
				    "messages nested deeper than %d levels", NX_PB_DEPTH_MAX);
	out->f = parent->f;
	out->pos = fld->offset;
	out->end = fld->offset + fld->len;
	out->depth = parent->depth + 1;
	return 0;
}

int nx_pb_read_string(struct nx_pb_file *f, const struct nx_pb_field *fld, size_t max,
		      char **out, size_t *outlen, nx_error *err)
{
	char *s = NULL;
	int rc;

	if (max == 0 || max > NX_PB_STRING_MAX)
		max = NX_PB_STRING_MAX;
	if (fld->wire != NX_PB_LEN)
		return nx_error_set(err, NX_EFORMAT, f->path, 0, (long long)fld->tag_offset,
				    "field %u should be a string but is a %s",
				    fld->num, nx_pb_wire_name(fld->wire));
	if (fld->len > max)
		return nx_error_set(err, NX_ELIMIT, f->path, 0, (long long)fld->tag_offset,
				    "string of %llu bytes is over the limit of %zu bytes",
				    (unsigned long long)fld->len, max);
	if (!(s = malloc((size_t)fld->len + 1)))
		return nx_error_set(err, NX_ENOMEM, f->path, 0, -1, "out of memory");
	if ((rc = nx_pb_read_at(f, fld->offset, s, (size_t)fld->len, err)) < 0) {
		free(s);
		return rc;
	}
	s[fld->len] = '\0';
	*out = s;
	if (outlen)
		*outlen = (size_t)fld->len;
	return 0;
}

const char *nx_pb_wire_name(int wire)
{
	switch (wire) {
	case NX_PB_VARINT: return "varint";
	case NX_PB_I64: return "fixed64";
	case NX_PB_LEN: return "length-delimited";
	case NX_PB_I32: return "fixed32";
	case 3: case 4: return "group";
	default: return "invalid wire type";
	}
}
