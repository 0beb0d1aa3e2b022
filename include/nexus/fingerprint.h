/*
 * nexus/fingerprint.h - fingerprints of the tensors of teacher files,
 * to catch a student that carries a copied teacher tensor (an embedding
 * table, a layer) even when every name was changed.
 *
 * Teacher formats, recognised by content, not by name:
 *  - ONNX: every initializer (inline payload bytes; external data, followed
 *    beside the model with the same rules as the export: relative, no "..",
 *    no symlink, regular single-link file);
 *  - PyTorch zip checkpoints (torch.save): every "<archive>/data/<n>" storage
 *    record, found through the zip central directory (zip64 too), read with
 *    bounded preads; a compressed record is hashed as stored and counted in
 *    `compressed` (it cannot match raw student bytes);
 *  - safetensors: every tensor's data_offsets range.
 *    The pickle (data.pkl) is scanned, never run, for each storage's
 *    element type (fingerprint_pickle.c): a float16 or bfloat16 storage
 *    is also recorded widened to float32, a float32 one cast;
 * Anything else (legacy pickle checkpoints, unknown bytes) is NX_EFORMAT:
 * an unreadable teacher must not pass as "nothing shared".
 *
 * The bytes hashed are a tensor's raw little-endian contents, so a torch
 * storage and an ONNX raw_data holding the same contiguous float32 values
 * fingerprint the same; ONNX typed fields (int32_data varints, unpacked or
 * split float_data) are decoded first (nx_onnx_tensor_read), so a tensor
 * re-encoded still matches.  Contents are also cut into content-defined
 * chunks (about 2 KiB, boundaries chosen by the bytes), so a student tensor
 * holding min_bytes or more of a teacher tensor's chunks - a teacher layer
 * cut into pieces, or stored inside a larger tensor - matches too.  Only
 * tensors of at least min_bytes are recorded (small ones - biases, scalars
 * - collide by chance); smaller ones, down to NX_FP_SMALL_MIN_BYTES, count
 * only together (NX_FP_SMALL_TOTAL_MAX).
 *
 * The exporter's forms: a float32 teacher tensor (ONNX float, safetensors
 * F32, or a torch storage of 4-byte elements, whose type is in the pickle)
 * is also recorded cast to float16 and to bfloat16 (round to nearest even),
 * and a 2-D float student tensor of a teacher tensor's size is also hashed
 * transposed and compared whole (nx_fp_match.transposed): torch.onnx.export
 * writes Linear weights transposed relative to the checkpoint.
 *
 * Values (docs/TRV.md, "Re-encoded teacher tensors"; src/lib/fingerprint/fingerprint_values.c):
 * a keyed sample of each float32 teacher tensor's values (zeros and values
 * it repeats left out) is kept as a set, at most NX_FP_VALUES_MAX of them
 * (the sampling rate halves to stay under it), and each student tensor,
 * its elements read as float32 (float64 when exactly one, float16,
 * bfloat16, other types' bytes as float32 words), is asked how many it
 * holds, at any sign and power-of-two scale.  Holding half of a teacher tensor's
 * samples (32 at least), well beyond what decoy values one bit away
 * find by chance, is a match (nx_fp_match.values): the tensor reversed,
 * permuted, interleaved with zeros, widened, cast or scaled.
 *
 * Approximate copies (docs/TRV.md "Approximate copies";
 * src/lib/fingerprint/fingerprint_corr.c): each float teacher tensor of 256
 * elements or more keeps its values at 1024 keyed positions (the 4096
 * largest tensors); a student tensor of any numeric type and the same
 * element count whose values there (as is, reversed, or transposed when
 * 2-D) correlate with them, Pearson |r| >= 0.99, matches
 * (nx_fp_match.approx): the tensor rounded, noised, quantized, a x + b.
 *
 * Chunks and whole tensors are compared by 64-bit hashes (chunk hashes and
 * lengths; a whole tensor by the sequence of its chunks' and its size), not
 * SHA-256: a collision can only report an unrelated tensor as shared (a
 * false alarm, never a miss), and hashing every teacher byte with SHA-256
 * as well as chunking it made a multi-GB teacher twice as slow.
 */
#ifndef NEXUS_FINGERPRINT_H
#define NEXUS_FINGERPRINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_FP_MIN_BYTES 4096          /* default min_bytes */
/* Small teacher tensors (docs/TRV.md "Small teacher tensors"): down to
 * NX_FP_SMALL_MIN_BYTES (64 float32 elements) they are recorded too, but
 * constant fills, two-valued tensors and arithmetic sequences are not
 * (src/lib/fingerprint/fingerprint_small.c); a student holding whole
 * copies of more than NX_FP_SMALL_TOTAL_MAX bytes of them (distinct
 * teacher tensors under min_bytes, all forms; each a tensor of its own or
 * anywhere inside one: fingerprint_pattern.c) matches, each reported with
 * small set.  A quarter of the default leak budget (64 KiB). */
#define NX_FP_SMALL_MIN_BYTES 256
#define NX_FP_SMALL_TOTAL_MAX (16u << 10)
#define NX_FP_TENSORS_MAX 10000000    /* fingerprints in one set */
#define NX_FP_ZIP_ENTRIES_MAX 1000000 /* central directory entries read */
#define NX_FP_ST_HEADER_MAX (100u << 20) /* bytes of a safetensors header */
#define NX_FP_CHUNKS_MAX (1u << 24)   /* teacher chunks (~48 GB of tensors) */
#define NX_FP_VALUES_MAX (1u << 19)   /* sampled teacher values kept (16 MiB) */

typedef struct nx_fp_set nx_fp_set;

/* A student tensor equal to a teacher tensor, or holding pieces of one. */
struct nx_fp_match {
	char *student_tensor;
	char *teacher_tensor;  /* name in the teacher file (storage record for torch) */
	char *teacher_file;
	uint64_t bytes;        /* the tensor's, or (partial) the bytes shared */
	bool partial;          /* not equal: shares chunks with the teacher tensor */
	bool transposed;       /* equal once the (2-D) student tensor is transposed */
	/* values: not equal, and no chunk shared, but it holds value_hits of
	 * the value_samples values sampled from the teacher tensor, each
	 * times 2^value_shift (reordered, interleaved, widened, scaled) */
	bool values;
	uint32_t value_hits, value_samples;
	int value_shift;
	/* pooled (with values): the windows of 4 elements of all the small
	 * teacher tensors, pooled, in any a x + b form and order, of the
	 * value_samples distinct ones (4 bytes a window); one match per
	 * student tensor, which found value_hits of them first (bytes: 4
	 * each); teacher_tensor is the one most found.  A part of the one
	 * sum (sum_bytes) */
	bool pooled;
	/* small: a whole copy of a teacher tensor under min_bytes, one of
	 * several (one per teacher tensor), a part of the one sum;
	 * transposed may be set */
	bool small;
	bool inside;           /* small: found inside a larger student tensor, not all of it */
	/* approx: not equal, but its values at corr_used sampled positions
	 * correlate with the teacher tensor's (same element count; as is,
	 * reversed, or transposed) with Pearson |corr| >= 0.99: a copy
	 * rounded, noised, quantized or mapped by a x + b.  small may be set
	 * (the teacher tensor is under min_bytes: it counts in the sum) */
	bool approx;
	double corr;
	uint32_t corr_used;
	/* implied (values is set too): the student tensor, of the teacher
	 * tensor's element count, holds its value exactly at value_hits of
	 * value_samples sampled positions (as is, reversed or transposed): a
	 * part kept in place among other values; bytes is that share of the
	 * tensor's bytes, a part of the one sum (docs/TRV.md "Parts kept in
	 * place") */
	bool implied;
	/* units: unit_blocks blocks of 64 elements of the teacher tensor (rows
	 * or columns of it: a hidden unit's weights) found in the student
	 * tensor, each up to an affine map a v + b and rounding (|Pearson r| >=
	 * 0.99): bytes of the teacher's weights, a part of the one sum */
	bool units;
	uint32_t unit_blocks;
	/* the one sum (docs/TRV.md "Why 16 KiB"): small, pooled, implied and
	 * units matches are reported only together, when the teacher bytes
	 * they imply, each element counted at the teacher's float32 size (4
	 * bytes, whatever the student's type), sum_total, are over
	 * NX_FP_SMALL_TOTAL_MAX.  sum_bytes: this match's share (its bytes at
	 * float32 size; 0 when another kind found more in the same student
	 * tensor: the kinds see much of the same values there) */
	uint64_t sum_bytes, sum_total;
};

/*
 * Before the teacher files are added: read the shapes of the 2-D int8
 * tensors and 3-D uint8 (MatMulNBits int4) tensors of the student ONNX
 * model at path (relative to dirfd), so that every float32 teacher tensor
 * of one of those sizes is also recorded in the forms export.quantize
 * writes (int8 per column, per row, transposed; int4 blocks of a [K, N] or
 * an [N, K] tensor: src/lib/fingerprint/fingerprint_quant.c), and a teacher tensor
 * copied into the student and then quantized still matches exactly.
 */
int nx_fp_set_quant_shapes(nx_fp_set *s, int dirfd, const char *path, nx_error *err);
/* New empty set; free with nx_fp_set_free. */
int nx_fp_set_new(nx_fp_set **out, nx_error *err);
void nx_fp_set_free(nx_fp_set *s);
/* Number of teacher tensors fingerprinted (their float16/bfloat16 casts
 * not counted); compressed torch records seen. */
size_t nx_fp_set_count(const nx_fp_set *s);
size_t nx_fp_set_compressed(const nx_fp_set *s);
/* Windows of the small teacher tensors left out of the pool at its cap
 * of NX_FP_POOL_MAX distinct keys (fingerprint_pool.c): not looked for. */
#define NX_FP_POOL_MAX (1u << 20)
size_t nx_fp_set_unpooled(const nx_fp_set *s);

/*
 * Fingerprint every tensor of at least min_bytes of the teacher file at path
 * (relative to dirfd, or AT_FDCWD; opened O_NOFOLLOW) into set.
 * Errors: NX_EFORMAT (unknown or malformed format, err->offset),
 * NX_EUNSAFE (external data location), NX_ELIMIT, NX_EIO, NX_ENOMEM.
 */
int nx_fingerprint_file(nx_fp_set *set, int dirfd, const char *path, size_t min_bytes,
			nx_error *err);

/*
 * Hash every tensor of at least min_bytes of the student ONNX model at path
 * (relative to dirfd) and return in *out (caller frees with
 * nx_fp_matches_free) the ones found in teachers, whole or (partial) by at
 * least min_bytes of chunks; *nout may be 0.
 * Errors as nx_fingerprint_file.
 */
int nx_fingerprint_student(struct nx_fp_match **out, size_t *nout, const nx_fp_set *teachers,
			   int dirfd, const char *path, size_t min_bytes, nx_error *err);
void nx_fp_matches_free(struct nx_fp_match *m, size_t n);

#ifdef __cplusplus
}
#endif
#endif
