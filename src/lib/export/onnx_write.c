/*
 * onnx_write.c - the protobuf writer of the export: a tree of copied ranges,
 * literals and rewritten sub-messages (export_int.h), and a writer that
 * hashes what it writes.
 */
#include "export_int.h"
#include "lib/format/hash_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PW_BUF (1u << 18)        /* gather buffer; copies below it go through it */
#define PW_CFR_MIN (4u << 20)    /* ranges from this size go through nx_hash__copy_range */
#define PW_FOLLOW_STEP (32u << 20) /* copy step when a nx_hash_follow hashes behind */

struct pw_msg *nx_pw__msg_new(void)
{
	return calloc(1, sizeof(struct pw_msg));
}

void nx_pw__msg_free(struct pw_msg *m)
{
	size_t i;

	if (!m)
		return;
	for (i = 0; i < m->n; i++) {
		free(m->p[i].lit);
		nx_pw__msg_free(m->p[i].child);
	}
	free(m->p);
	free(m);
}

static struct pw_piece *pw_add(struct pw_msg *m)
{
	if (NX_ARRAY_PUSH(m->p, m->cap, m->n))
		return NULL;
	memset(&m->p[m->n], 0, sizeof(m->p[0]));
	return &m->p[m->n++];
}

int nx_pw__copy(struct pw_msg *m, uint32_t num, uint64_t off, uint64_t len)
{
	struct pw_piece *p;

	if (!len)
		return 0;
	if (m->n && m->p[m->n - 1].kind == PW_COPY && m->p[m->n - 1].num == num &&
	    m->p[m->n - 1].off + m->p[m->n - 1].len == off) {
		m->p[m->n - 1].len += len;
		return 0;
	}
	if (!(p = pw_add(m)))
		return NX_ENOMEM;
	p->kind = PW_COPY;
	p->num = num;
	p->off = off;
	p->len = len;
	return 0;
}

/* Append literal bytes (copied): one whole field numbered num. */
static int lit_field(struct pw_msg *m, uint32_t num, const void *buf, size_t len)
{
	struct pw_piece *p;
	unsigned char *b = malloc(len ? len : 1);

	if (!b)
		return NX_ENOMEM;
	if (!(p = pw_add(m))) {
		free(b);
		return NX_ENOMEM;
	}
	memcpy(b, buf, len);
	p->kind = PW_LIT;
	p->num = num;
	p->lit = b;
	p->len = len;
	return 0;
}

static size_t varint_encode(unsigned char *buf, uint64_t v)
{
	size_t n = 0;

	do {
		buf[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return n;
}

static size_t varint_len(uint64_t v)
{
	unsigned char tmp[10];

	return varint_encode(tmp, v);
}

int nx_pw__string(struct pw_msg *m, uint32_t num, const char *s, size_t len)
{
	unsigned char *b = malloc(len + 20);
	size_t n;
	struct pw_piece *p;

	if (!b)
		return NX_ENOMEM;
	n = varint_encode(b, (uint64_t)num << 3 | NX_PB_LEN);
	n += varint_encode(b + n, len);
	memcpy(b + n, s, len);
	if (!(p = pw_add(m))) {
		free(b);
		return NX_ENOMEM;
	}
	p->kind = PW_LIT;
	p->num = num;
	p->lit = b;
	p->len = n + len;
	return 0;
}

int nx_pw__varint_field(struct pw_msg *m, uint32_t num, uint64_t v)
{
	unsigned char b[20];
	size_t n = varint_encode(b, (uint64_t)num << 3 | NX_PB_VARINT);

	n += varint_encode(b + n, v);
	return lit_field(m, num, b, n);
}

int nx_pw__child(struct pw_msg *m, uint32_t num, struct pw_msg *child)
{
	struct pw_piece *p = pw_add(m);

	if (!p) {
		nx_pw__msg_free(child);
		return NX_ENOMEM;
	}
	p->kind = PW_MSG;
	p->num = num;
	p->child = child;
	return 0;
}

/* Stable insertion sort by field number: pieces come almost in order
 * (kept fields in source order, a few rewritten ones appended), so each
 * moves a short way. */
static void sort_fields(struct pw_msg *m)
{
	size_t i, j;

	for (i = 1; i < m->n; i++) {
		struct pw_piece p = m->p[i];

		for (j = i; j > 0 && m->p[j - 1].num > p.num; j--)
			m->p[j] = m->p[j - 1];
		m->p[j] = p;
	}
}

uint64_t nx_pw__msg_measure(struct pw_msg *m)
{
	uint64_t size = 0;
	size_t i;

	sort_fields(m);
	for (i = 0; i < m->n; i++) {
		struct pw_piece *p = &m->p[i];

		if (p->kind == PW_MSG) {
			uint64_t c = nx_pw__msg_measure(p->child);

			size += varint_len((uint64_t)p->num << 3 | NX_PB_LEN) + varint_len(c) + c;
		} else {
			size += p->len;
		}
	}
	m->size = size;
	return size;
}

int nx_pw__out_init(struct pw_out *o, int fd, const char *src_path, const char *dst_name,
		nx_error *err)
{
	memset(o, 0, sizeof(*o));
	o->fd = fd;
	o->src_path = src_path;
	o->dst_name = dst_name;
	o->err = err;
	o->ctx = EVP_MD_CTX_new();
	o->buf = malloc(PW_BUF);
	if (!o->ctx || !o->buf) {
		nx_pw__out_release(o);
		return nx_error_oom(err, NULL);
	}
	if (!EVP_DigestInit_ex(o->ctx, EVP_sha256(), NULL)) {
		nx_pw__out_release(o);
		return nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "sha-256 unavailable in openssl");
	}
	return 0;
}

void nx_pw__out_release(struct pw_out *o)
{
	EVP_MD_CTX_free(o->ctx);
	free(o->buf);
	o->ctx = NULL;
	o->buf = NULL;
}

static int write_err(struct pw_out *o, int e)
{
	return nx_hash__write_error(o->err, e, o->dst_name);
}

static int read_err(struct pw_out *o, int e, uint64_t off)
{
	if (!e)
		return nx_error_set(o->err, NX_EFORMAT, o->src_path, 0, (long long)off,
				    "%s ended at byte %llu: was it changed while exporting?",
				    o->src_path, (unsigned long long)off);
	return nx_error_errno(o->err, NX_EIO, e, o->src_path, "cannot read %s", o->src_path);
}

static int flush(struct pw_out *o)
{
	uint64_t at = o->pos - o->blen;
	size_t put = 0;

	if (!o->nohash)
		EVP_DigestUpdate(o->ctx, o->buf, o->blen);
	while (put < o->blen) {
		ssize_t n = pwrite(o->fd, o->buf + put, o->blen - put, (off_t)(at + put));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return write_err(o, n < 0 ? errno : ENOSPC);
		put += (size_t)n;
	}
	o->blen = 0;
	if (o->follow)
		nx_hash_follow_advance(o->follow, o->pos);
	return 0;
}

/* Write len bytes from buf. */
int nx_pw__out_write(struct pw_out *o, const void *buf, size_t len)
{
	const unsigned char *b = buf;
	int rc;

	while (len) {
		size_t n = PW_BUF - o->blen < len ? PW_BUF - o->blen : len;

		memcpy(o->buf + o->blen, b, n);
		o->blen += n;
		o->pos += n;
		b += n;
		len -= n;
		if (o->blen == PW_BUF && (rc = flush(o)) != 0)
			return rc;
	}
	return 0;
}

/* Through the buffer: pread the source straight into it. */
static int copy_buffered(struct pw_out *o, int src_fd, uint64_t off, uint64_t len)
{
	int rc;

	while (len) {
		size_t n = PW_BUF - o->blen < len ? PW_BUF - o->blen : (size_t)len;
		ssize_t got = pread(src_fd, o->buf + o->blen, n, (off_t)off);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return read_err(o, got < 0 ? errno : 0, off);
		o->blen += (size_t)got;
		o->pos += (uint64_t)got;
		off += (uint64_t)got;
		len -= (uint64_t)got;
		if (o->blen == PW_BUF && (rc = flush(o)) != 0)
			return rc;
	}
	return 0;
}

/* Large ranges (the weights): read once, written and hashed from the same
 * buffers on two threads (nx_hash__copy_range, shared with nx_copy_hash). */
static int copy_large(struct pw_out *o, int src_fd, uint64_t off, uint64_t len)
{
	int rc;

	if ((rc = flush(o)) != 0)
		return rc;
	if (o->follow) {
		/* in steps, so that the digest thread follows close behind */
		while (len && !rc) {
			uint64_t n = len < PW_FOLLOW_STEP ? len : PW_FOLLOW_STEP;

			rc = nx_hash__copy_range_plain(o->fd, o->pos, src_fd, off, n, o->src_path,
					      o->dst_name, o->err);
			if (!rc) {
				o->pos += n;
				off += n;
				len -= n;
				nx_hash_follow_advance(o->follow, o->pos);
			}
		}
		return rc;
	}
	if (o->nohash)
		rc = nx_hash__copy_range_plain(o->fd, o->pos, src_fd, off, len, o->src_path, o->dst_name,
				      o->err);
	else
		rc = nx_hash__copy_range(o->ctx, o->fd, o->pos, src_fd, off, len, o->src_path,
				     o->dst_name, o->err);
	if (!rc)
		o->pos += len;
	return rc;
}

int nx_pw__out_copy(struct pw_out *o, int src_fd, uint64_t off, uint64_t len)
{
	if (len < PW_CFR_MIN)
		return copy_buffered(o, src_fd, off, len);
	return copy_large(o, src_fd, off, len);
}

int nx_pw__out_align(struct pw_out *o, uint64_t align)
{
	static const unsigned char zeros[256];
	int rc;

	while (o->pos % align) {
		uint64_t pad = align - o->pos % align;

		if ((rc = nx_pw__out_write(o, zeros, pad < sizeof(zeros) ? (size_t)pad : sizeof(zeros))))
			return rc;
	}
	return 0;
}

int nx_pw__out_finish(struct pw_out *o, unsigned char out[NX_SHA256_LEN])
{
	int rc = flush(o);

	if (rc)
		return rc;
	if (o->nohash) {
		memset(out, 0, NX_SHA256_LEN);
		return 0;
	}
	if (!EVP_DigestFinal_ex(o->ctx, out, NULL))
		return nx_error_set(o->err, NX_EINTERNAL, NULL, 0, -1, "sha-256 failed in openssl");
	return 0;
}

int nx_pw__emit(struct pw_out *o, int src_fd, const struct pw_msg *m)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < m->n && !rc; i++) {
		const struct pw_piece *p = &m->p[i];

		if (p->kind == PW_COPY) {
			rc = nx_pw__out_copy(o, src_fd, p->off, p->len);
		} else if (p->kind == PW_LIT) {
			rc = nx_pw__out_write(o, p->lit, (size_t)p->len);
		} else {
			unsigned char hdr[20];
			size_t n = varint_encode(hdr, (uint64_t)p->num << 3 | NX_PB_LEN);

			n += varint_encode(hdr + n, p->child->size);
			if (!(rc = nx_pw__out_write(o, hdr, n)))
				rc = nx_pw__emit(o, src_fd, p->child);
		}
	}
	return rc;
}
