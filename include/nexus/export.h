/*
 * nexus/export.h - export by subtraction: re-emit a student ONNX model
 * without the parts a production bundle must not carry.
 *
 * The export reads the source ModelProto with the streaming reader of
 * nexus/pb.h and writes a new one in which every field that is kept and not
 * changed - above all the weights (raw_data) - is copied as a byte range
 * without being decoded (copy_file_range where the kernel allows it, else
 * pread/pwrite).  Only the messages on the path to a change (model, graph,
 * the nodes/tensors that lost a field) are re-encoded, so their lengths are
 * recomputed and nothing else is.  Memory grows with the number of nodes and
 * names, never with the weight bytes.  The SHA-256 of the output is computed
 * while it is written: literal bytes from the buffer written, copied ranges
 * from the source bytes as they are copied; the output is never read back.
 * The data file's digest may instead be skipped or left to a thread that
 * follows the copy (opts.data_digest).
 *
 * What an export removes (each step optional through nx_export_opts):
 *  - extract: only the nodes, initializers, value_info and graph inputs
 *    reachable backwards from the requested outputs (default: all graph
 *    outputs); names used inside a node's subgraphs count as uses of the
 *    node.  Requested outputs that are not graph outputs but have a
 *    value_info become graph outputs; a name with neither is NX_ECONFIG.
 *  - always: training_info, unreferenced initializers, fields unknown to
 *    the reader, opset imports of the training domain.  A kept node of the
 *    training domain (ai.onnx.preview.training) or op Gradient, Momentum,
 *    Adagrad, Adam is NX_ECHECK.
 *  - strip_metadata: metadata_props keys not in metadata_keep (at every
 *    level), every doc_string; producer_name becomes "nexus" and
 *    producer_version the given version.  A kept graph, node, initializer or
 *    value name containing a forbidden term (teacher, distillation,
 *    soft_targets + configured; case-insensitive) is NX_ECHECK: the student
 *    still depends on a teacher part.
 *  - external data: `location` is followed only to a regular file inside the
 *    workspace directory (ws_dirfd), relative, without "..", symlinks or hard
 *    links (NX_EUNSAFE); offset/length are checked against the file
 *    (NX_EFORMAT).  Tensors of NX_EXPORT_EXTERNAL_MIN bytes or more are
 *    copied into one data file next to the model (NX_EXPORT_DATA_NAME),
 *    4 KiB aligned, and each tensor's location/offset/length rewritten to it;
 *    smaller ones are put inline (raw_data).
 *  - weights layout (opts.external): large inline initializers may be moved
 *    into that data file too (byte for byte, page-aligned), so that ONNX
 *    Runtime maps them from the page cache instead of copying them out of
 *    the protobuf: it then loads a 1.2 GB model in ~0.1 s and a few MiB
 *    instead of ~2.5 s and three copies of the weights in memory.
 *
 *  - quantize (opts.quantize, src/lib/export/quant.c): float32 weights of
 *    MatMul and Gemm (per output channel; a Gemm's bias stays float) and
 *    Gather embeddings (per row) become
 *    symmetric int8 (scale = max|w| / 127, zero point 0), read and written
 *    tensor by tensor with a fixed buffer; a MatMul becomes
 *    DynamicQuantizeLinear + MatMulInteger + Cast + Mul (the form ONNX
 *    Runtime fuses into one int8 GEMM on CPU, docs/DESIGN-NOTES.md), a
 *    Gather reads int8 rows and multiplies by their scale.
 *
 * Errors carry the byte offset of the source field in err->offset.  On error
 * the output descriptors may hold partial data: the caller owns them (a
 * staging directory) and discards them.
 */
#ifndef NEXUS_EXPORT_H
#define NEXUS_EXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"
#include "nexus/hash.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_EXPORT_DATA_NAME "student_model.onnx.data" /* beside the model */
#define NX_EXPORT_DATA_ALIGN 4096
#define NX_EXPORT_EXTERNAL_MIN (64u << 10)  /* smallest tensor kept in the data file */
#define NX_EXPORT_AUTO_MIN (64ull << 20)    /* NX_EXPORT_EXT_AUTO: a source this big */

/* How the data file's SHA-256 is taken. */
enum nx_export_data_digest {
	NX_EXPORT_DIGEST_INLINE,  /* while copying, in ext_sha256 (the copy runs at hash speed) */
	NX_EXPORT_DIGEST_NONE,    /* not at all (copy_file_range); ext_sha256 left zero */
	NX_EXPORT_DIGEST_DEFER,   /* by a thread that follows the copy: collect it from
				     the result's ext_pending; ext_sha256 left zero */
};

/* Where large inline initializers go. */
enum nx_export_external {
	NX_EXPORT_EXT_AUTO,    /* ALWAYS for a source of NX_EXPORT_AUTO_MIN bytes or more */
	NX_EXPORT_EXT_ALWAYS,  /* initializers of NX_EXPORT_EXTERNAL_MIN bytes or more move */
	NX_EXPORT_EXT_NEVER,   /* inline weights stay inline */
};
/* What export.quantize makes of the weights. */
enum nx_export_quantize {
	NX_EXPORT_QUANT_NONE,
	NX_EXPORT_QUANT_INT8,  /* weight-only symmetric int8 (MatMul per column, Gather per row) */
	NX_EXPORT_QUANT_INT4,  /* MatMul weights int4 in blocks (com.microsoft.MatMulNBits),
				  Gather embeddings int8 per row */
	NX_EXPORT_QUANT_FP16,  /* float32 weights stored float16, each read through a
				  Cast to float: compute and graph inputs/outputs
				  stay float32 (docs/DESIGN-NOTES.md, fp16) */
};
#define NX_QUANT_BLOCK 32           /* default export.quantize_block (int4) */
#define NX_QUANT_MIN_ELEMENTS 4096  /* default export.quantize_min_elements */
#define NX_QUANT_TOLERANCE 0.01     /* default export.quantize_tolerance */
#define NX_QUANT_THREADS_MAX 8      /* opts.quantize_threads */

#define NX_EXPORT_NODES_MAX 10000000   /* nodes of the main graph */
#define NX_EXPORT_REPORT_MAX 1000000   /* entries of the removal report */
#define NX_EXPORT_POS_MAX 4            /* position-table candidates reported */

/*
 * Called once, the first time a tensor with external data is exported, to
 * create the data file; *out_fd is an fd open for writing, owned by the
 * caller (it closes it after nx_export_run returns).
 */
typedef int (*nx_export_ext_open_fn)(void *ctx, int *out_fd, nx_error *err);

struct nx_export_opts {
	const char *const *outputs;         /* NULL/0: every graph output */
	size_t noutputs;
	const char *const *metadata_keep;
	size_t nmetadata_keep;
	const char *const *forbidden_terms; /* added to the three built in */
	size_t nforbidden_terms;
	bool extract;
	bool strip_metadata;
	const char *producer_version;       /* NULL: NX_VERSION-less "unknown" */
	int ws_dirfd;                       /* workspace root, for external data */
	const char *model_relpath;          /* source model, relative to ws_dirfd */
	enum nx_export_external external;   /* zero: AUTO */
	enum nx_export_data_digest data_digest; /* zero: INLINE */
	nx_export_ext_open_fn ext_open;     /* NULL: external data is NX_ECONFIG */
	void *ext_ctx;
	const char *dst_name;               /* the model written, in errors (NULL: "model") */
	const char *ext_name;               /* the data file, in errors (NULL: its file name);
					       with DEFER, borrowed until ext_pending ends */
	enum nx_export_quantize quantize;   /* zero: none */
	const char *const *quantize_exclude; /* fnmatch patterns of node or initializer
						names kept in float */
	size_t nquantize_exclude;
	uint64_t quantize_min_elements;     /* 0: NX_QUANT_MIN_ELEMENTS */
	unsigned quantize_block;            /* int4: 32, 64 or 128 (0: NX_QUANT_BLOCK) */
	unsigned quantize_threads;          /* threads that quantize (0: one per CPU this
					       process may use, at most NX_QUANT_THREADS_MAX);
					       the output is the same for any number */
	const char *positions_input;        /* the model's position ids input (NULL:
					       "position_ids"), for pos_table */
};

enum nx_export_what {
	NX_EXPORT_NODE,          /* name = node name or "<op_type>#<index>" */
	NX_EXPORT_INITIALIZER,   /* bytes = bytes of the TensorProto / external data */
	NX_EXPORT_INPUT,
	NX_EXPORT_OUTPUT,
	NX_EXPORT_VALUE_INFO,
	NX_EXPORT_METADATA,      /* a metadata_props key */
	NX_EXPORT_TRAINING_INFO,
	NX_EXPORT_OPSET,         /* an opset import of the training domain */
	NX_EXPORT_UNKNOWN_FIELD, /* name = "field <n>" */
};

struct nx_export_item {
	enum nx_export_what what;
	char *name;
	uint64_t bytes;
	uint64_t offset;  /* source file offset of the removed field */
};

struct nx_export_result {
	unsigned char sha256[NX_SHA256_LEN];   /* of the model written */
	uint64_t size;
	bool has_external;
	unsigned char ext_sha256[NX_SHA256_LEN];
	uint64_t ext_size;
	uint64_t ext_tensors;
	nx_hash_follow *ext_pending;           /* NX_EXPORT_DIGEST_DEFER: collect with
						  nx_hash_follow_finish(ext_size) */
	struct nx_export_item *removed;        /* in source order */
	size_t nremoved;
	uint64_t doc_strings;                  /* doc_string fields removed */
	uint64_t removed_bytes;                /* source bytes not carried over */
	uint64_t kept_nodes, kept_initializers;
	uint64_t quantized;                    /* weight tensors quantized */
	uint64_t quantized_int4;               /* of those, int4 (MatMulNBits) */
	uint64_t quant_float_bytes;            /* their float32 bytes in the source */
	uint64_t quant_bytes;                  /* their bytes now (int8 values + scales) */
	/* Position-embedding tables of the kept graph, if it shows them: the
	 * initializers Gathers (axis 0) read at the token positions (a Range,
	 * a CumSum, the positions input, through reshapes, casts and added
	 * constants), each with the constant buffer sliced for them, or NULL
	 * (export_positions.c).  A sliced buffer may also be transformers'
	 * token_type_ids buffer: the build tells them apart by their sizes. */
	char *pos_table[NX_EXPORT_POS_MAX], *pos_buffer[NX_EXPORT_POS_MAX];
	size_t npos;
};

/*
 * Export the model read from src_fd (borrowed; pread only) to dst_fd
 * (borrowed, written from offset 0 with pwrite, not truncated or synced).
 * src_path names the source in errors.  On success *out holds the digest,
 * size and removal report (release with nx_export_result_release).
 * Errors: NX_EFORMAT/NX_ELIMIT (malformed model, err->offset), NX_ECONFIG
 * (an output name that does not exist), NX_ECHECK (training ops, a
 * forbidden term still in a kept name), NX_EUNSAFE (external data
 * location), NX_EIO, NX_ENOMEM.
 */
int nx_export_run(struct nx_export_result *out, int src_fd, const char *src_path, int dst_fd,
		  const struct nx_export_opts *o, nx_error *err);

/*
 * The same analysis and checks without writing anything (dst and external
 * data are not touched; external locations are still checked when ws_dirfd
 * is not -1): what an export would remove, for `nexus inspect`.  size and
 * sha256 are left zero.
 */
int nx_export_plan(struct nx_export_result *out, int src_fd, const char *src_path,
		   const struct nx_export_opts *o, nx_error *err);

/* Free the report inside r and zero it.  Accepts NULL. */
void nx_export_result_release(struct nx_export_result *r);

/* "auto", "always", "never", NULL: the names, indexed by the enum. */
extern const char *const nx_export_external_names[];

/* "auto", "always", "never" -> *out; -1 for anything else. */
int nx_export_external_parse(const char *s, enum nx_export_external *out);

/* "none", "int8", "int4", "fp16", NULL: the names of export.quantize, by the enum. */
extern const char *const nx_export_quantize_names[];

/*
 * The int8 form of one float32 value given its group's largest magnitude
 * (a row or column): scale = maxabs / 127 (1 when maxabs is 0), q =
 * round-half-even(v / scale) within [-127, 127].  The exporter and the
 * teacher fingerprints (lib/fingerprint/fingerprint_quant.c) share it, so a teacher tensor
 * quantized by one is byte for byte what the other wrote.
 */
float nx_quant_int8_scale(float maxabs);
signed char nx_quant_int8(float v, float scale);
/* int4 (MatMulNBits, zero point 8): scale = maxabs / 7 (1 when 0) per block
 * of block values; q = round-half-even(v / scale) within [-7, 7], stored
 * as q + 8.  Packs the n values of one column (n <= nblocks * block, the
 * rest of the last block zero) into out[nblocks * block / 2] (low nibble
 * first) and scales[nblocks]; the fingerprints share it. */
void nx_quant_int4_column(const float *v, uint64_t n, unsigned block, unsigned char *out,
			  float *scales);
/* The float16 bits of the float32 bits x, rounded to nearest even as
 * torch's .half() and x86's VCVTPS2PH round (a NaN stays a NaN, a
 * magnitude past 65504 becomes an infinity).  export.quantize: fp16 and
 * the teacher fingerprints' "as float16" form share it. */
uint16_t nx_quant_fp16(uint32_t x);

/* name is tensor, or the source tensor it is the quantized form of ("W"
 * for "W/int8", "W/int4" or "W/fp16"): allow_shared_tensors names the
 * tensor the student was given. */
bool nx_quant_same_tensor(const char *name, const char *tensor);

/* "node", "initializer", ... */
const char *nx_export_what_name(enum nx_export_what w);

#ifdef __cplusplus
}
#endif
#endif
