/*
 * nexus/pb.h - a protobuf wire-format reader over a file descriptor.
 *
 * The reader never maps or reads a whole file: it pulls bytes through a small
 * pread() window owned by an nx_pb_file, and hands back one field at a time.
 * For a length-delimited field it returns the absolute file offset and length
 * of the payload without reading it, so a caller can skip a 1 GB raw_data in
 * O(1), open a nested reader over a sub-message, read a short string, or (a
 * writer) copy the untouched byte range [tag_offset, offset + len) as is.
 *
 * Every length comes from untrusted input and is checked against the end of
 * the enclosing message; nesting depth and the size of strings brought into
 * memory are capped.  Errors are NX_EFORMAT (or NX_ELIMIT for a cap) with the
 * byte offset of the offending field in err->offset.  Only pread() is used,
 * so the descriptor's file offset is never moved.
 */
#ifndef NEXUS_PB_H
#define NEXUS_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_PB_WINDOW 65536          /* bytes of the pread window */
#define NX_PB_DEPTH_MAX 64          /* nested messages below the top one */
#define NX_PB_STRING_MAX (1u << 20) /* bytes of one string read into memory */
#define NX_PB_FIELD_MAX 536870911u  /* 2^29 - 1, the largest field number */

enum nx_pb_wire {
	NX_PB_VARINT = 0,
	NX_PB_I64 = 1,
	NX_PB_LEN = 2,
	NX_PB_I32 = 5,
};

/* A file being read: descriptor (borrowed), size at open, pread window. */
struct nx_pb_file {
	int fd;
	const char *path;  /* borrowed, used in error messages */
	uint64_t size;
	uint8_t *buf;      /* NX_PB_WINDOW bytes */
	uint64_t buf_off;  /* file offset of buf[0] */
	size_t buf_len;    /* valid bytes in buf */
};

/* A position inside one message: fields are read from [pos, end). */
struct nx_pb_reader {
	struct nx_pb_file *f;
	uint64_t pos, end;
	unsigned depth;    /* 0 for the top-level message */
};

/* One field as returned by nx_pb_next(). */
struct nx_pb_field {
	uint32_t num;        /* field number, 1..NX_PB_FIELD_MAX */
	enum nx_pb_wire wire;
	uint64_t tag_offset; /* where the field (its tag) starts */
	uint64_t value;      /* VARINT, I64, I32 (zero-extended) */
	uint64_t offset;     /* LEN: file offset of the payload; others: of the value */
	uint64_t len;        /* LEN: payload length; others: bytes of the value */
};

/*
 * Prepare f to read fd (borrowed; not closed by release).  fstat()s the size
 * and allocates the window.  path (borrowed, may be NULL) names the file in
 * errors.  Fails with NX_EIO (not a regular file, fstat error) or NX_ENOMEM.
 */
int nx_pb_file_init(struct nx_pb_file *f, int fd, const char *path, nx_error *err);
/* Free the window.  Accepts a zeroed or already released f. */
void nx_pb_file_release(struct nx_pb_file *f);

/* A reader over the file's bytes [start, end) (checked against the size). */
int nx_pb_reader_init(struct nx_pb_reader *out, struct nx_pb_file *f,
		      uint64_t start, uint64_t end, nx_error *err);

/*
 * Read the next field of r into *out.  Returns 1 when a field was read, 0 at
 * the end of the message, or a negative NX_E* code: bad varint, field number
 * 0, group wire types 3/4 or unknown ones, a length or fixed value running
 * past the end of the message (truncation) are NX_EFORMAT with err->offset.
 */
int nx_pb_next(struct nx_pb_reader *r, struct nx_pb_field *out, nx_error *err);

/* A reader over the payload of LEN field fld, one level deeper than parent.
 * NX_ELIMIT past NX_PB_DEPTH_MAX. */
int nx_pb_sub(struct nx_pb_reader *out, const struct nx_pb_reader *parent,
	      const struct nx_pb_field *fld, nx_error *err);

/*
 * Read the payload of LEN field fld into a new NUL-terminated string in *out
 * (caller frees).  Payloads over max bytes (max <= NX_PB_STRING_MAX; pass 0
 * for NX_PB_STRING_MAX) fail with NX_ELIMIT.  Embedded NULs are kept: *outlen
 * (may be NULL) is the true length.
 */
int nx_pb_read_string(struct nx_pb_file *f, const struct nx_pb_field *fld, size_t max,
		      char **out, size_t *outlen, nx_error *err);

/* Copy len bytes at file offset off into dst (len <= NX_PB_STRING_MAX). */
int nx_pb_read_at(struct nx_pb_file *f, uint64_t off, void *dst, size_t len, nx_error *err);

/* Read one varint at r->pos and advance; for packed repeated fields, open a
 * reader with nx_pb_sub() and call this until r->pos == r->end. */
int nx_pb_read_varint(struct nx_pb_reader *r, uint64_t *out, nx_error *err);

/* Name of a wire type for messages ("varint", "len", ...). */
const char *nx_pb_wire_name(int wire);

#ifdef __cplusplus
}
#endif
#endif
