/*
 * fingerprint_quant.c - teacher tensors in the int8 forms export.quantize
 * writes (src/lib/export/quant.c).
 *
 * A teacher tensor copied into the student and then quantized is no
 * longer its bytes, and its dequantized values differ from them by up to
 * half a step.  But the quantization is a function of the values alone
 * (symmetric, scale = max|group| / 127, nx_quant_int8), so the teacher
 * tensor quantized the same way gives exactly the student's int8 bytes.
 * The group (a row or a column) needs a shape, which a torch storage does
 * not carry; the student's does: nx_fp_set_quant_shapes reads the shapes
 * of the student's 2-D int8 tensors, and every float32 teacher tensor of
 * rows x cols elements is then also recorded as
 *   - "as int8 per column": [rows, cols] by column (a MatMul weight
 *     stored as the ONNX teacher's);
 *   - "as int8 per row": [rows, cols] by row (an embedding table);
 *   - "as int8 transposed": [cols, rows] by row, then transposed (a torch
 *     Linear weight [out, in] that the student's MatMul holds as [in, out]).
 * and the int4 blocks of MatMulNBits (3-D uint8 student tensors) and of
 * GatherBlockQuantized (2-D uint8 [V, D / 2]: the rows of an embedding,
 * blocks of 32, 64 or 128), which int4_forms makes "transposed".
 * Those entries are whole tensors and chunks like any other, so a student
 * int8 tensor equal to one, or holding pieces of one, is reported.  The
 * teacher tensor is read whole into memory for this (it is no larger than
 * the student tensor it could match).
 */
#include "fingerprint_int.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/format/hash_int.h"
#include "nexus/export.h"
#include "nexus/onnx.h"

#define QSHAPES_MAX 100000

/* Record the quantized shape (d0, d1, d2) once. */
static int add_qshape(nx_fp_set *s, uint64_t d0, uint64_t d1, uint64_t d2, nx_error *err)
{
	uint64_t (*q)[3];
	size_t j;

	for (j = 0; j < s->nqshapes; j++)
		if (s->qshapes[j][0] == d0 && s->qshapes[j][1] == d1 && s->qshapes[j][2] == d2)
			return 0;
	if (s->nqshapes >= QSHAPES_MAX)
		return 0;
	if (NX_ARRAY_PUSH_EXACT(s->qshapes, s->nqshapes))
		return nx_error_oom(err, NULL);
	q = s->qshapes;
	q[s->nqshapes][0] = d0;
	q[s->nqshapes][1] = d1;
	q[s->nqshapes][2] = d2;
	s->nqshapes++;
	return 0;
}

int nx_fp_set_quant_shapes(nx_fp_set *s, int dirfd, const char *path, nx_error *err)
{
	nx_onnx_model *m = NULL;
	const nx_onnx_summary *sum;
	size_t i, j;
	int fd, rc;

	fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot open %s", path);
	rc = nx_onnx_open(&m, fd, path, err);
	close(fd);
	if (rc)
		return rc;
	sum = nx_onnx_summary_get(m);
	for (i = 0; i < sum->ntensors && !rc; i++) {
		const struct nx_onnx_tensor *t = &sum->tensors[i];
		uint64_t d0 = t->ndims >= 2 ? (uint64_t)t->dims[0] : 0, d1, d2;

		if (t->ndims < 2 || t->dims[0] <= 0 || t->dims[1] <= 0 ||
		    (t->ndims == 3 && t->dims[2] <= 0))
			continue;
		d1 = (uint64_t)t->dims[1];
		d2 = t->ndims == 3 ? (uint64_t)t->dims[2] : 0;
		if ((t->data_type == 3 && t->ndims == 2) || (t->data_type == 2 && t->ndims == 3)) {
			rc = add_qshape(s, d0, d1, d2, err);
		} else if (t->data_type == 2 && t->ndims == 2) {
			/* a GatherBlockQuantized embedding [V, D / 2]: its rows are
			 * MatMulNBits columns of every block size that fills them */
			for (j = 32; j <= 128 && !rc; j *= 2)
				if ((2 * d1) % j == 0)
					rc = add_qshape(s, d0, 2 * d1 / j, j / 2, err);
		}
	}
	nx_onnx_free(m);
	return rc;
}

struct fill {
	unsigned char *p;
	uint64_t len, pos;
};

static int fill_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct fill *f = ctx;

	/* more bytes than nelem * 4: not a float32 matrix, no form recorded */
	if (len > f->len - f->pos) {
		f->pos = f->len + 1;
		return 0;
	}
	memcpy(f->p + f->pos, buf, len);
	f->pos += len;
	return 0;
}

/* The int8 form of a [rows, cols] float matrix a: by column or by row. */
static void quantize(signed char *out, const float *a, uint64_t rows, uint64_t cols, bool by_col,
		     float *scale)
{
	uint64_t r, c;

	if (by_col) {
		memset(scale, 0, (size_t)cols * sizeof(float));
		for (r = 0; r < rows; r++)
			for (c = 0; c < cols; c++)
				if (fabsf(a[r * cols + c]) > scale[c])
					scale[c] = fabsf(a[r * cols + c]);
		for (c = 0; c < cols; c++)
			scale[c] = nx_quant_int8_scale(scale[c]);
		for (r = 0; r < rows; r++)
			for (c = 0; c < cols; c++)
				out[r * cols + c] = nx_quant_int8(a[r * cols + c], scale[c]);
		return;
	}
	for (r = 0; r < rows; r++) {
		float s = 0;

		for (c = 0; c < cols; c++)
			s = fabsf(a[r * cols + c]) > s ? fabsf(a[r * cols + c]) : s;
		s = nx_quant_int8_scale(s);
		for (c = 0; c < cols; c++)
			out[r * cols + c] = nx_quant_int8(a[r * cols + c], s);
	}
}

/* Record bytes q[0..n) as the teacher tensor "name suffix", with its chunks. */
static int record(nx_fp_set *set, const char *name, const char *suffix, const signed char *q,
		  uint64_t n, size_t min, nx_error *err)
{
	struct fp_hash h;
	char *label;
	size_t k;
	int rc, end;

	if (n < min)
		return 0;
	size_t nl = strlen(name), sl = strlen(suffix);

	if (!(label = malloc(nl + sl + 1)))
		return nx_error_oom(err, NULL);
	memcpy(label, name, nl);
	memcpy(label + nl, suffix, sl + 1);
	if ((rc = nx_fp__hash_begin(&h, set, NULL, err)) == 0) {
		rc = nx_fp__hash_feed(&h, (const unsigned char *)q, (size_t)n);
		end = nx_fp__hash_end(&h, !rc);
		if (!rc)
			rc = end;
		if (!rc && !(rc = nx_fp__add(set, label, h.whole, h.total, err))) {
			for (k = h.first_chunk; k < set->nchunks; k++)
				set->chunks[k].name = set->e[set->n - 1].name;
			set->ncasts++;
		}
	}
	free(label);
	return rc;
}

/* The K of an int4 weight [N, blocks, bytes] that n float values fill
 * (n = K x N with K within the last block), or 0. */
static uint64_t int4_k(const uint64_t *shape, uint64_t n)
{
	uint64_t block = shape[2] * 2, k = n / shape[0];

	return n % shape[0] || !k || (k + block - 1) / block != shape[1] ? 0 : k;
}

/* The MatMulNBits forms of a [K, N] (ONNX MatMul) or [N, K] (torch Linear)
 * teacher tensor: columns of K values, packed as the exporter packs them. */
static int int4_forms(nx_fp_set *set, const char *name, const float *a, uint64_t n,
		      const uint64_t *shape, size_t min, nx_error *err)
{
	uint64_t nn = shape[0], nb = shape[1], bytes = shape[2], k = int4_k(shape, n), c, r;
	unsigned block = (unsigned)(bytes * 2);
	unsigned char *out = malloc((size_t)(nn * nb * bytes));
	float *col = malloc((size_t)k * sizeof(float)), *sc = malloc((size_t)nb * sizeof(float));
	char sfx[96];
	int t, rc = 0;

	if (!out || !col || !sc) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (t = 0; t < 2 && !rc; t++) {
		for (c = 0; c < nn; c++) {
			for (r = 0; r < k; r++)
				col[r] = t ? a[c * k + r] : a[r * nn + c];
			nx_quant_int4_column(col, k, block, out + c * nb * bytes, sc);
		}
		snprintf(sfx, sizeof(sfx), " as int4%s (block %u) [%llu, %llu]",
			 t ? " transposed" : "", block, (unsigned long long)k, (unsigned long long)nn);
		rc = record(set, name, sfx, (const signed char *)out, nn * nb * bytes, min, err);
	}
out:
	free(out);
	free(col);
	free(sc);
	return rc;
}

int nx_fp__quant_forms(nx_fp_set *set, const char *name, int fd, const char *path,
		   const struct nx_onnx_tensor *t, uint64_t off, uint64_t len, size_t min,
		   nx_error *err)
{
	struct fill f = { NULL, len, 0 };  /* pos past len: too many bytes */
	float *a, *scale = NULL;
	signed char *q = NULL, *qt = NULL;
	uint64_t i, n = len / 4, r, c;
	size_t k, scap = 0;
	bool any = false;
	int rc = 0;

	for (k = 0; k < set->nqshapes && !any; k++)
		any = set->qshapes[k][2] ? int4_k(set->qshapes[k], n) != 0
					 : set->qshapes[k][0] * set->qshapes[k][1] == n;
	if (!any || len % 4 || n < min)
		return 0;
	if (!(f.p = malloc((size_t)len)) || !(q = malloc((size_t)n)) || !(qt = malloc((size_t)n))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	rc = t ? nx_onnx_tensor_read(fd, path, t, fill_feed, &f, err)
	       : nx_hash__read_range(fd, path, off, len, fill_feed, &f, err);
	if (rc || f.pos != len)
		goto out;
	a = (float *)(void *)f.p;
	for (i = 0; i < n; i++)
		if (!isfinite(a[i]))
			goto out;   /* no int8 form: the exporter refuses such a tensor */
	for (k = 0; k < set->nqshapes && !rc; k++) {
		uint64_t rows = set->qshapes[k][0], cols = set->qshapes[k][1];
		char sfx[96];

		if (set->qshapes[k][2]) {
			if (int4_k(set->qshapes[k], n))
				rc = int4_forms(set, name, a, n, set->qshapes[k], min, err);
			continue;
		}
		if (rows * cols != n)
			continue;
		if (nx_array_grow(&scale, &scap, (size_t)(rows > cols ? rows : cols), sizeof(*scale),
				  SIZE_MAX)) {
			rc = nx_error_oom(err, NULL);
			break;
		}
		snprintf(sfx, sizeof(sfx), " as int8 per column [%llu, %llu]",
			 (unsigned long long)rows, (unsigned long long)cols);
		quantize(q, a, rows, cols, true, scale);
		if ((rc = record(set, name, sfx, q, n, min, err)) != 0)
			break;
		snprintf(sfx, sizeof(sfx), " as int8 per row [%llu, %llu]",
			 (unsigned long long)rows, (unsigned long long)cols);
		quantize(q, a, rows, cols, false, scale);
		if ((rc = record(set, name, sfx, q, n, min, err)) != 0)
			break;
		/* stored [cols, rows]: by its rows, then transposed to [rows, cols] */
		quantize(qt, a, cols, rows, false, scale);
		for (r = 0; r < rows; r++)
			for (c = 0; c < cols; c++)
				q[r * cols + c] = qt[c * rows + r];
		snprintf(sfx, sizeof(sfx), " as int8 transposed [%llu, %llu]",
			 (unsigned long long)rows, (unsigned long long)cols);
		rc = record(set, name, sfx, q, n, min, err);
	}
out:
	free(f.p);
	free(q);
	free(qt);
	free(scale);
	return rc;
}
