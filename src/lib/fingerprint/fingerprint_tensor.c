/*
 * fingerprint_tensor.c - one tensor's bytes hashed and handed on: to the
 * teacher set (nx_fp__add_range, nx_fp__add_cb) or to the student's matcher, also
 * cast (fingerprint_forms.c) and transposed.  Shared by the driver
 * (fingerprint.c: ONNX, safetensors) and the torch zip reader
 * (fingerprint_zip.c); it calls neither.
 */
#include "fingerprint_int.h"

#include <stdlib.h>
#include <string.h>

#include "lib/format/hash_int.h"
#include "nexus/onnx.h"

int nx_fp__u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A student tensor, transposed back, against the teachers' whole tensors
 * of its size (a transposed piece is not looked for). */
static int one_transposed(struct tensors *w, const char *name, int fd, const char *path,
			  const struct tensor_src *src, nx_error *err)
{
	struct fp_hash h;
	int rc, end;

	if (!w->match || src->rows < 2 || src->cols < 2 || !w->nsizes ||
	    !bsearch(&src->len, w->sizes, w->nsizes, sizeof(*w->sizes), nx_fp__u64_cmp))
		return 0;
	if ((rc = nx_fp__hash_begin(&h, NULL, w->match, err)) != 0)
		return rc;
	rc = nx_fp__hash_transposed(&h, fd, path, src->off, src->rows, src->cols, src->width, err);
	end = nx_fp__hash_end(&h, !rc);
	if (!rc)
		rc = end;
	if (rc || h.total != src->len)
		return rc;
	h.matched = 0;   /* only a whole transposed copy is reported here */
	return w->fn(w->ctx, name, &h, true, err);
}

/* The size of an element of ONNX type dtype (1 when unknown). */
static unsigned elem_width(int32_t dtype)
{
	switch (dtype) {
	case 4: case 5: case 10: case 16:
		return 2;
	case 1: case 6: case 12:
		return 4;
	case 7: case 11: case 13:
		return 8;
	default:
		return 1;
	}
}

/* A 16-bit float stream widened to float32 on its way to fn (an element
 * may straddle two buffers). */
struct widen {
	nx_onnx_bytes_fn fn;
	void *ctx;
	bool bf16, odd;
	unsigned char carry;
};

static int widen_feed(void *arg, const unsigned char *p, size_t len)
{
	struct widen *w = arg;
	uint32_t out[512];
	size_t n = 0;
	int rc;

	while (len) {
		uint16_t h;

		if (w->odd) {
			h = (uint16_t)(w->carry | p[0] << 8);
			p++;
			len--;
			w->odd = false;
		} else if (len == 1) {
			w->carry = p[0];
			w->odd = true;
			break;
		} else {
			h = (uint16_t)(p[0] | p[1] << 8);
			p += 2;
			len -= 2;
		}
		out[n++] = w->bf16 ? (uint32_t)h << 16 : nx_fp__f16_to_f32(h);
		if (n == sizeof(out) / sizeof(out[0])) {
			if ((rc = w->fn(w->ctx, (const unsigned char *)out, sizeof(out))) != 0)
				return rc;
			n = 0;
		}
	}
	return n ? w->fn(w->ctx, (const unsigned char *)out, n * 4) : 0;
}

/* The first bytes of a tensor, kept on their way to fn (a small teacher
 * tensor is judged by nx_fp__trivial once it is read). */
struct tee {
	nx_onnx_bytes_fn fn;
	void *ctx;
	unsigned char *buf;
	size_t cap, n;
};

static int tee_feed(void *arg, const unsigned char *p, size_t len)
{
	struct tee *t = arg;
	size_t k = len < t->cap - t->n ? len : t->cap - t->n;

	memcpy(t->buf + t->n, p, k);
	t->n += k;
	return t->fn(t->ctx, p, len);
}

/* What a student tensor's bytes feed besides its chunks, when those are
 * cut on another thread (fingerprint_par.c): the value sample and the
 * small-tensor scan, in the order nx_fp__hash_feed feeds them. */
struct side {
	struct nx_fp__vfeed *vf;
	struct nx_fp__pscan *ps;
	struct nx_fp__pool_scan *pl;
};

static int side_feed(void *arg, const unsigned char *p, size_t len)
{
	struct side *s = arg;
	int rc;

	if (s->vf && (rc = nx_fp__vfeed(s->vf, p, len)) != 0)
		return rc;
	if (s->pl)   /* the pool table is touched by this scan alone while it runs */
		nx_fp__pool_feed(s->pl, p, len);
	return s->ps ? nx_fp__pscan_feed(s->ps, p, len) : 0;
}

/*
 * Hash a tensor (src) and hand it on.  A student tensor is not read at all
 * when there are no teacher chunks to find in it and no teacher tensor of
 * its size to equal.  A teacher's float32 tensor is cast as it is read.
 * Tensors under w->min (down to nx_fp__floor) are hashed whole for the
 * small-tensor sum only: no value sample, no quantized forms, and a
 * teacher's that any model may hold (nx_fp__trivial) is not recorded.
 */
int nx_fp__one_tensor(struct tensors *w, const char *name, int fd, const char *path,
		  const struct tensor_src *src, nx_error *err)
{
	struct fp_hash h;
	struct fp_casts casts;
	struct fp_canon canon;
	struct nx_fp__vfeed vf;
	struct nx_fp__pscan ps;
	struct nx_fp__pool_scan pl;
	uint64_t len = src->widen ? 2 * src->len : src->len;
	bool keep, trivial, cast = w->collect && src->f32, sized = !len || (w->nsizes &&
			   bsearch(&len, w->sizes, w->nsizes, sizeof(*w->sizes), nx_fp__u64_cmp));
	/* as onnx_tensors sizes an encoded tensor: at most 8 bytes a varint */
	bool big = (src->t && src->t->contents_encoded ? src->t->data_length * 8 : len) >= w->min;
	nx_onnx_bytes_fn feed = cast ? nx_fp__casts_feed : nx_fp__hash_feed;
	void *ctx = &h;
	struct widen wd;
	struct tee tee = { NULL, NULL, NULL, 0, 0 };
	struct side side;
	nx_error err1;
	/* a large tensor read verbatim is read on two threads (nx_fp__read_fanned):
	 * the canonical forms (teacher), or the value sample, the small-tensor scan
	 * and the pool scan (student) on the second */
	bool fan = !src->widen && src->len >= FP_FAN_MIN && !(src->t && src->t->contents_encoded);
	int rc, end;

	if (!w->collect && !sized && !w->match->nchunks && (!w->match->values || !big) &&
	    !nx_fp__patterns_count(w->match) && !nx_fp__pool_count(w->match))
		return one_transposed(w, name, fd, path, src, err);
	if ((rc = nx_fp__hash_begin(&h, w->collect, w->match, err)) != 0)
		return rc;
	/* small teacher tensors anywhere inside it (fingerprint_pattern.c) */
	if (!w->collect && (rc = nx_fp__pscan_begin(&ps, w->match, elem_width(src->dtype),
						    err)) != 0) {
		nx_fp__hash_end(&h, false);
		return rc;
	}
	if (!w->collect && ps.s)
		h.ps = &ps;
	/* the pooled small teacher tensors, in any affine form (fingerprint_pool.c) */
	if (!w->collect && (src->dtype == 1 || src->dtype == 10 || src->dtype == 16) &&
	    !src->widen) {
		nx_fp__pool_scan_begin(&pl, w->match, src->dtype);
		if (pl.s)
			h.pl = &pl;
	}
	/* the value sample (fingerprint_values.c) rides on the same read */
	if (w->collect && src->f32 && big) {
		if ((rc = nx_fp__vfeed_teacher(&vf, w->collect, name, err)) != 0) {
			nx_fp__hash_end(&h, false);
			return rc;
		}
		h.vf = &vf;
	} else if (!w->collect && big && nx_fp__vfeed_student(&vf, w->match, src->dtype, err)) {
		h.vf = &vf;
	}
	if (cast && (rc = nx_fp__casts_begin(&casts, &h, err)) != 0) {
		nx_fp__hash_end(&h, false);
		return rc;
	}
	if (cast)
		ctx = &casts;
	/* a student's 16-bit forms, signs and scale taken out (fingerprint_canon.c) */
	memset(&canon, 0, sizeof(canon));
	if (!w->collect && (rc = nx_fp__canon_begin(&canon, &h, w->match, src->dtype, err)) != 0) {
		if (h.ps)
			nx_fp__pscan_end(&ps);
		nx_fp__hash_end(&h, false);
		return rc;
	}
	if (canon.n) {
		feed = nx_fp__canon_feed;
		ctx = &canon;
	}
	if (src->widen) {
		wd = (struct widen){ feed, ctx, src->widen == 16, false, 0 };
		feed = widen_feed;
		ctx = &wd;
	}
	/* 2 x min: a tensor under that has casts under min */
	if (w->collect) {
		if (!(tee.buf = malloc(2 * w->min))) {
			rc = nx_error_oom(err, NULL);
		} else {
			tee = (struct tee){ feed, ctx, tee.buf, 2 * w->min, 0 };
			feed = tee_feed;
			ctx = &tee;
		}
	}
	nx_error_clear(&err1);
	if (!rc && fan && cast && !(rc = nx_fp__casts_split(&casts, err))) {
		/* the canonical forms are the second thread's */
		casts.h[2].err = casts.h[3].err = &err1;
		rc = nx_fp__read_fanned(fd, path, src->off, src->len, feed, ctx,
					nx_fp__casts_feed_canon, &casts, &err1, err);
		casts.h[2].err = casts.h[3].err = err;
	} else if (!rc && fan && !w->collect && (h.vf || h.ps || h.pl)) {
		side = (struct side){ h.vf, h.ps, h.pl };
		if (h.vf)
			vf.err = &err1;
		if (h.ps)
			ps.err = &err1;
		h.vf = NULL;
		h.ps = NULL;
		h.pl = NULL;
		rc = nx_fp__read_fanned(fd, path, src->off, src->len, feed, ctx, side_feed, &side,
					&err1, err);
		h.vf = side.vf;
		h.ps = side.ps;
		h.pl = side.pl;
		vf.err = ps.err = err;
	} else if (!rc) {
		rc = src->t ? nx_onnx_tensor_read(fd, path, src->t, feed, ctx, err) :
			      nx_hash__read_range(fd, path, src->off, src->len, feed, ctx, err);
	}
	trivial = w->collect && !rc && h.total < 2 * w->min && nx_fp__trivial(tee.buf, tee.n);
	keep = !rc && h.total >= nx_fp__floor(w->min) && (h.total >= w->min || !trivial);
	/* a 16-bit teacher's tee holds its 16-bit bytes (widened after it) */
	if (keep && w->collect && src->f32 && !trivial && h.total < w->min)
		rc = nx_fp__pool_add(w->collect, name, src->widen ? src->widen : 1, tee.buf,
				     tee.n, err);
	if (!rc && h.pl)
		rc = nx_fp__pool_scan_end(&pl, name, err);
	free(tee.buf);
	if (!rc && !w->collect && h.vf)
		nx_fp__vfeed_judge(&vf, &h.values);
	end = nx_fp__hash_end(&h, keep);
	if (!rc)
		rc = end;
	if (!rc && keep)
		rc = w->fn(w->ctx, name, &h, false, err);
	for (unsigned i = 0; i < canon.n; i++) {
		end = nx_fp__hash_end(&canon.h[i], true);
		if (!rc)
			rc = end;
		if (!rc && canon.h[i].total >= nx_fp__floor(w->min))
			rc = w->fn(w->ctx, name, &canon.h[i], false, err);
	}
	nx_fp__canon_end(&canon);
	if (h.ps)
		nx_fp__pscan_end(&ps);
	if (cast) {
		/* a trivial tensor's casts are as common as it is */
		end = nx_fp__casts_end(&casts, rc || !keep ? NULL : w->collect, name,
				       trivial ? w->min : nx_fp__floor(w->min), err);
		if (!rc)
			rc = end;
	}
	if (!rc)
		rc = one_transposed(w, name, fd, path, src, err);
	if (!rc && w->collect && src->f32 && !src->widen && w->collect->nqshapes && big)
		rc = nx_fp__quant_forms(w->collect, name, fd, path, src->t, src->off,
				    src->t ? src->t->nelem * 4 : src->len, w->min, err);
	return rc;
}

/* A teacher tensor: its entry, and the name of the chunks collected for it. */
int nx_fp__add_cb(void *ctx, const char *name, const struct fp_hash *h, bool transposed,
		  nx_error *err)
{
	nx_fp_set *s = ctx;
	size_t k;
	int rc = nx_fp__add(s, name, h->whole, h->total, err);

	if (!rc)
		rc = nx_fp__pattern_add(s, h, err);

	(void)transposed;   /* only student tensors are transposed */

	for (k = h->first_chunk; !rc && k < s->nchunks; k++)
		s->chunks[k].name = s->e[s->n - 1].name;
	return rc;
}

/*
 * A float16/bfloat16 teacher tensor widened to float32 is exact, so a
 * student holding it as float32 held a teacher tensor whose bytes and
 * values no float32 record knew (red team 7: a float16 ONNX teacher or a
 * bfloat16 safetensors one, copied widened, was signed and passed).
 */
int nx_fp__add_widened(struct tensors *w, const char *name, int32_t dtype, int fd,
		       const char *path, const struct nx_onnx_tensor *t, uint64_t off,
		       uint64_t len, nx_error *err)
{
	static const char sfx[] = " widened to float32";
	struct tensor_src src = { t, off, len, true, 0, 0, 0, 1, dtype };
	size_t n = strlen(name);
	char *label;
	int rc;

	if ((dtype != 10 && dtype != 16) || len % 2 || 2 * len < nx_fp__floor(w->min))
		return 0;
	if (!(label = malloc(n + sizeof(sfx))))
		return nx_error_oom(err, NULL);
	memcpy(label, name, n);
	memcpy(label + n, sfx, sizeof(sfx));
	rc = nx_fp__one_tensor(w, label, fd, path, &src, err);
	free(label);
	return rc;
}

/* A record of bytes [off, off + len) of a teacher file (torch, safetensors). */
int nx_fp__add_range(nx_fp_set *set, const char *name, bool f32, int fd, uint64_t off, uint64_t len,
		 size_t min, const char *path, nx_error *err)
{
	struct tensors w = { set, NULL, nx_fp__add_cb, set, min, NULL, 0, NULL, NULL, NULL };
	struct tensor_src src = { NULL, off, len, f32, 0, 0, 0, 1, 0 };

	return nx_fp__one_tensor(&w, name, fd, path, &src, err);
}
