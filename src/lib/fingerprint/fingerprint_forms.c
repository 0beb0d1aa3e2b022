/*
 * fingerprint_forms.c - teacher tensors in the forms an exporter writes.
 *
 * torch.onnx.export stores a Linear weight transposed relative to the
 * checkpoint (MatMul wants [in, out], the checkpoint has [out, in]), and a
 * model exported for serving is often cast to float16 or bfloat16.  So a
 * float32 teacher tensor is also fingerprinted cast to float16 and to
 * bfloat16 (round to nearest even, as torch casts), and a 2-D student
 * tensor of a teacher tensor's size is also hashed transposed back.
 * Transposing on the student side needs no teacher shape, which a torch
 * checkpoint's storages do not carry without running its pickle.
 */
#include "fingerprint_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/export.h"

#define CAST_ELEMS 16384u            /* float32 values converted at a time */
#define TRANSPOSE_BUF (4u << 20)     /* bytes of a strip of columns read at once */
#define TRANSPOSE_ROW_MAX (64u << 20) /* bytes of one column: larger is not transposed */

static const char *const cast_suffix[FP_CASTS] = {
	" as float16", " as bfloat16",
	" as float16, any sign or power-of-two scale", " as bfloat16, any sign or power-of-two scale",
};

static uint16_t f32_to_bf16(uint32_t x)
{
	uint16_t nan = (uint16_t)(x >> 16 | 0x40), r = (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);

	/* a select, not a branch, so the loop below vectorizes */
	return (x & 0x7fffffff) > 0x7f800000 ? nan : r;
}

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the casts read float32 and write float16 in the host's order: little-endian only"
#endif

/* n float32 values at p (little-endian, unaligned) cast to float16 and
 * bfloat16 */
static void casts_scalar(uint16_t *o16, uint16_t *obf, const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++, p += 4) {
		uint32_t x;

		memcpy(&x, p, 4);
		o16[i] = nx_quant_fp16(x);
		obf[i] = f32_to_bf16(x);
	}
}

#if defined(__x86_64__)
#include <immintrin.h>

/* Eight at a time: VCVTPS2PH rounds to nearest even like nx_quant_fp16, and
 * the bfloat16 rounding is integer arithmetic (the scalar loop was most
 * of the casts' cost). */
__attribute__((target("avx2,f16c"))) static void casts_avx2(uint16_t *o16, uint16_t *obf,
							     const unsigned char *p, size_t n)
{
	const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff),
		      abs = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000),
		      quiet = _mm256_set1_epi32(0x40);
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		__m256i x = _mm256_loadu_si256((const __m256i *)(p + 4 * i));
		__m256i r = _mm256_add_epi32(x, _mm256_add_epi32(bias, _mm256_and_si256(
						 _mm256_srli_epi32(x, 16), one)));
		__m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(x, abs), inf);
		__m256i b;

		r = _mm256_srli_epi32(r, 16);
		b = _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(x, 16), quiet), nan);
		/* 32-bit lanes to 16: packus per 128-bit half, then the halves */
		b = _mm256_permute4x64_epi64(_mm256_packus_epi32(b, b), 0x08);
		_mm_storeu_si128((__m128i *)(obf + i), _mm256_castsi256_si128(b));
		_mm_storeu_si128((__m128i *)(o16 + i),
				 _mm256_cvtps_ph(_mm256_castsi256_ps(x),
						 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	}
	casts_scalar(o16 + i, obf + i, p + 4 * i, n - i);
}

static fp_casts_fn casts_pick(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") ? casts_avx2 : casts_scalar;
}
#else
static fp_casts_fn casts_pick(void)
{
	return casts_scalar;
}
#endif

int nx_fp__casts_begin(struct fp_casts *c, struct fp_hash *orig, nx_error *err)
{
	int i, rc;

	memset(c, 0, sizeof(*c));
	c->orig = orig;
	c->prev[0] = c->prev[1] = FP_CANON_START;
	c->part[0].to = FP_CASTS;
	for (i = 0; i < FP_CASTS; i++)
		if ((rc = nx_fp__hash_begin(&c->h[i], &c->tmp[i], NULL, err)) != 0)
			goto fail;
	c->cast = casts_pick();
	if (!(c->part[0].out = malloc(3 * CAST_ELEMS * 2))) {
		rc = nx_error_oom(err, NULL);
		goto fail;
	}
	return 0;
fail:
	nx_fp__casts_end(c, NULL, NULL, 0, err);
	return rc;
}

int nx_fp__casts_split(struct fp_casts *c, nx_error *err)
{
	if (!(c->part[1].out = malloc(3 * CAST_ELEMS * 2)))
		return nx_error_oom(err, NULL);
	c->part[0].to = c->part[1].from = 2;
	c->part[1].to = FP_CASTS;
	return 0;
}

/* n float32 values at p (little-endian) cast and fed to the hashes of
 * the part: h[0], h[1] the casts, h[2], h[3] each cast's canonical form. */
static int cast_some(struct fp_casts *c, struct fp_casts_part *part, const unsigned char *p,
		     size_t n)
{
	uint16_t *o16 = (uint16_t *)part->out, *obf = o16 + CAST_ELEMS, *canon = obf + CAST_ELEMS;
	unsigned i;
	int rc;

	c->cast(o16, obf, p, n);
	for (i = part->from; i < part->to; i++) {
		const uint16_t *cast = i % 2 ? obf : o16;

		if (i >= 2) {
			nx_fp__canon16(canon, cast, n, i == 3, &c->prev[i - 2]);
			cast = canon;
		}
		if ((rc = nx_fp__hash_feed(&c->h[i], (const unsigned char *)cast, 2 * n)) != 0)
			return rc;
	}
	return 0;
}

/* buf[0 .. len) of the float32 stream through one part (an element may
 * straddle two buffers). */
static int part_feed(struct fp_casts *c, struct fp_casts_part *part, const unsigned char *buf,
		     size_t len)
{
	size_t n;
	int rc;

	while (len && part->ncarry) {
		part->carry[part->ncarry++] = *buf++;
		len--;
		if (part->ncarry == 4) {
			part->ncarry = 0;
			if ((rc = cast_some(c, part, part->carry, 1)) != 0)
				return rc;
		}
	}
	if (part->ncarry)   /* the element is still incomplete: keep its bytes */
		return 0;
	while (len >= 4) {
		n = len / 4 < CAST_ELEMS ? len / 4 : CAST_ELEMS;
		if ((rc = cast_some(c, part, buf, n)) != 0)
			return rc;
		buf += 4 * n;
		len -= 4 * n;
	}
	memcpy(part->carry, buf, len);
	part->ncarry = len;
	return 0;
}

int nx_fp__casts_feed(void *ctx, const unsigned char *buf, size_t len)
{
	struct fp_casts *c = ctx;
	int rc;

	if ((rc = nx_fp__hash_feed(c->orig, buf, len)) != 0)
		return rc;
	return part_feed(c, &c->part[0], buf, len);
}

int nx_fp__casts_feed_canon(void *ctx, const unsigned char *buf, size_t len)
{
	struct fp_casts *c = ctx;

	return part_feed(c, &c->part[1], buf, len);
}

/* The chunks one cast collected (in tmp), moved into set for its entry. */
static int move_chunks(nx_fp_set *set, nx_fp_set *tmp, nx_error *err)
{
	size_t k;

	if (set->nchunks + tmp->nchunks > NX_FP_CHUNKS_MAX)
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
				    "the teacher files hold more than %u chunks (~48 GB of tensors); "
				    "fingerprint against fewer of them at a time", NX_FP_CHUNKS_MAX);
	if (nx_array_grow(&set->chunks, &set->capchunks, set->nchunks + tmp->nchunks,
			  sizeof(*set->chunks), SIZE_MAX))
		return nx_error_oom(err, NULL);
	for (k = 0; k < tmp->nchunks; k++) {
		set->chunks[set->nchunks] = tmp->chunks[k];
		set->chunks[set->nchunks++].file = set->nfiles - 1;
	}
	set->chunks_sorted = false;
	return 0;
}

int nx_fp__casts_end(struct fp_casts *c, nx_fp_set *set, const char *name, size_t min,
		 nx_error *err)
{
	int i, rc = 0;

	for (i = 0; i < FP_CASTS; i++) {
		bool keep = set && c->h[i].buf && c->h[i].total >= min;
		int end = c->h[i].buf ? nx_fp__hash_end(&c->h[i], keep) : 0;
		size_t first = set ? set->nchunks : 0, k;

		/* a canonical form that is one repeated pattern (a constant fill
		 * at any scale) is in every model (known once its last chunk is cut) */
		keep = keep && (i < 2 || c->h[i].varied);

		if (!rc)
			rc = end;
		if (!rc && keep && !(rc = move_chunks(set, &c->tmp[i], err))) {
			size_t nlen = strlen(name), slen = strlen(cast_suffix[i]);
			char *full = malloc(nlen + slen + 1);

			if (!full) {
				rc = nx_error_oom(err, NULL);
			} else {
				memcpy(full, name, nlen);
				memcpy(full + nlen, cast_suffix[i], slen + 1);
				if (!(rc = nx_fp__add(set, full, c->h[i].whole, c->h[i].total, err)))
					set->ncasts++;
				/* the student's canonical streams are matched whole
				 * and by chunks, not scanned for patterns */
				if (!rc && i < 2)
					rc = nx_fp__pattern_add(set, &c->h[i], err);
				free(full);
			}
			for (k = first; !rc && k < set->nchunks; k++)
				set->chunks[k].name = set->e[set->n - 1].name;
			if (rc)
				set->nchunks = first;
		}
		free(c->tmp[i].chunks);
		c->tmp[i].chunks = NULL;
		c->tmp[i].nchunks = c->tmp[i].capchunks = 0;
	}
	free(c->part[0].out);
	free(c->part[1].out);
	c->part[0].out = c->part[1].out = NULL;
	return rc;
}

int nx_fp__hash_transposed(struct fp_hash *h, int fd, const char *path, uint64_t off,
		       uint64_t rows, uint64_t cols, unsigned width, nx_error *err)
{
	unsigned char *strip = NULL, *out = NULL;
	uint64_t k, j0, i, jj;
	int rc = 0;

	if (!rows || !cols || !width || rows > TRANSPOSE_ROW_MAX / width)
		return 0;
	k = TRANSPOSE_BUF / (rows * width);
	if (k == 0)
		k = 1;
	if (k > cols)
		k = cols;
	if (!(strip = malloc(rows * k * width)) || !(out = malloc(rows * width))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (j0 = 0; j0 < cols && !rc; j0 += k) {
		uint64_t kk = cols - j0 < k ? cols - j0 : k;

		/* columns j0 .. j0 + kk of every row */
		for (i = 0; i < rows; i++) {
			size_t want = (size_t)(kk * width);
			ssize_t n;

			n = nx_pread_full(fd, strip + i * kk * width, want,
					  off + (i * cols + j0) * width);
			if (n != (ssize_t)want) {
				rc = n < 0 ? nx_error_errno(err, NX_EIO, errno, path, "cannot read %s",
							    path)
					   : nx_error_set(err, NX_EFORMAT, path, 0, -1,
							  "%s: a tensor runs past the end", path);
				goto out;
			}
		}
		/* each of them as a row of the transposed tensor */
		for (jj = 0; jj < kk && !rc; jj++) {
			for (i = 0; i < rows; i++)
				memcpy(out + i * width, strip + (i * kk + jj) * width, width);
			rc = nx_fp__hash_feed(h, out, (size_t)(rows * width));
		}
	}
out:
	free(strip);
	free(out);
	return rc;
}
