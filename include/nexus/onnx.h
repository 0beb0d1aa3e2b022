/*
 * nexus/onnx.h - a streaming reader of ONNX models (ModelProto).
 *
 * nx_onnx_open() walks the whole ModelProto - the main graph, subgraphs held
 * in node attributes (If/Loop/Scan), functions, training_info, initializers,
 * sparse initializers, metadata - through the pread() window of nexus/pb.h.
 * Weight payloads (raw_data, float_data, ...) are never read: only their file
 * byte ranges are recorded, so a 1 GB model is summarised in milliseconds.
 *
 * Input is untrusted: every count and length is capped (NX_ONNX_*_MAX,
 * NX_PB_*_MAX) and malformed input fails with NX_EFORMAT / NX_ELIMIT and the
 * byte offset in err->offset.  A file must hold at least ir_version, a graph
 * and an opset_import to count as ONNX, so a text file, a zip or a model cut
 * short fails instead of giving an empty summary.
 *
 * Field numbers unknown to this reader (at any depth) are counted in
 * unknown_fields, not rejected: the verifier decides what they mean.  Fields
 * added after ONNX 1.12 that are understood: metadata_props of graphs, nodes,
 * values, tensors and functions; node/function `overload`; function
 * attribute_proto and value_info.  ModelProto.configuration (26) and
 * NodeProto.device_configurations (10) are counted as unknown.
 */
#ifndef NEXUS_ONNX_H
#define NEXUS_ONNX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_ONNX_TENSORS_MAX 250000    /* initializers + attribute tensors (verify's 256 MiB) */
#define NX_ONNX_VALUES_MAX 100000     /* graph inputs / outputs */
#define NX_ONNX_ENTRIES_MAX 100000    /* opsets, metadata entries, op domains */
#define NX_ONNX_DIMS_MAX 64           /* rank of a tensor or value */
#define NX_ONNX_NAME_MAX 65536        /* bytes of a name kept in the summary */
#define NX_ONNX_HELD_MAX (64u << 20)  /* bytes of names held while walking, each
                                        * counted with NX_ONNX_HELD_OVERHEAD */
#define NX_ONNX_HELD_OVERHEAD 48      /* allocator and set slots per name held */
#define NX_ONNX_SCOPE_MAX 1024        /* bytes of a scope path (truncated) */
#define NX_ONNX_VISIT_STRINGS_MAX 100000 /* string_data entries visited per tensor */

enum nx_tensor_location { NX_TENSOR_INLINE = 0, NX_TENSOR_EXTERNAL = 1 };

struct nx_onnx_kv { char *key; char *value; };
struct nx_onnx_opset { char *domain; int64_t version; };

/* A graph input or output.  dims[i] is -1 when symbolic or unknown; then
 * dim_params[i] holds the symbol if any.  dim_params is NULL when every
 * dimension is numeric.  ndims is 0 for a scalar or an unknown shape. */
struct nx_onnx_value {
	char *name;
	int32_t elem_type;   /* TensorProto data type, 0 for non-tensor types */
	size_t ndims;
	int64_t *dims;
	char **dim_params;
	bool has_shape;      /* false: shape absent (rank unknown) */
};

struct nx_onnx_tensor {
	char *name;
	int32_t data_type;
	size_t ndims;
	int64_t *dims;       /* sparse: the dense shape */
	uint64_t nelem;      /* elements stored: product of dims; sparse: values held */
	enum nx_tensor_location location;
	/* inline: file byte range of the payload (raw_data, or the typed
	 * field(s); for unpacked repeated values, from the first one to the end
	 * of the last one).  data_length 0 when empty. */
	uint64_t data_offset, data_length;
	/* inline: where the tensor's contents (its elements as little-endian
	 * bytes, as raw_data would hold them) are.  contents_encoded false:
	 * verbatim in the file range [contents_offset, +contents_length) - the
	 * last raw_data, or the only (packed) float_data/double_data run;
	 * true: spread over typed fields (varints, unpacked values, several
	 * runs) that nx_onnx_tensor_read() decodes; contents_length is 0. */
	uint64_t contents_offset, contents_length;
	bool contents_encoded;
	uint64_t msg_offset, msg_length; /* the TensorProto (sparse: its values) */
	/* external: from external_data; ext_location NULL and -1 when absent */
	char *ext_location;
	int64_t ext_offset, ext_length;
	/* "graph", or the path of the enclosing subgraph, e.g.
	 * "graph/If_0:then_branch", "graph/Constant_3:value" for an attribute
	 * tensor, "training_info[0]/algorithm", "function[2]/...". */
	char *scope;
	bool sparse;         /* from sparse_initializer (or a sparse attribute) */
	bool attribute;      /* held in a node attribute, not an initializer */
	bool referenced;     /* initializers: name used by a node input or graph
			      * output in its graph or one it encloses; always
			      * true for attribute tensors */
	bool duplicate;      /* initializers: another initializer or a node output
			      * of its graph has the same name, so no node can be
			      * said to read this one (referenced is false) */
	uint64_t sparse_index_bytes; /* sparse: payload bytes of the indices */
};

typedef struct nx_onnx_summary {
	int64_t ir_version, model_version;
	char *producer_name, *producer_version, *domain, *doc_string; /* "" when absent */
	struct nx_onnx_opset *opsets; size_t nopsets;
	struct nx_onnx_kv *metadata; size_t nmetadata;
	struct nx_onnx_value *inputs; size_t ninputs;   /* main graph inputs that are not initializers */
	struct nx_onnx_value *outputs; size_t noutputs;
	struct nx_onnx_tensor *tensors; size_t ntensors; /* every initializer, sparse initializer
							  * and attribute tensor, in all graphs */
	/* exact: sum of nelem over initializers + sparse initializers of all
	 * graphs (training_info included); attribute tensors excluded */
	uint64_t parameters;
	/* sum of data_length (inline; + sparse_index_bytes) and ext_length
	 * (external; nelem x dtype size when the length is absent) */
	uint64_t weight_bytes;
	/* "int4" if a MatMulNBits node exists (block-wise 4-bit weights);
	 * "int8" if an initializer is int8/uint8/int4/uint4 or a quantization op
	 * (QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinear*,
	 * MatMulInteger, ConvInteger) exists; else "fp16" if float16/bfloat16
	 * initializers hold the majority of parameters; else "none". */
	const char *quantization;
	size_t nnodes, ngraphs, nfunctions;  /* over all graphs and functions */
	bool has_training_info;
	char **op_domains; size_t nop_domains; /* distinct node domains, "" = ai.onnx */
	uint64_t unknown_fields;        /* fields with numbers unknown to this reader */
	int64_t first_unknown_offset;   /* file offset of the first one, -1 none */
	uint64_t file_size;
} nx_onnx_summary;

typedef struct nx_onnx_model nx_onnx_model;

/*
 * Walk the whole ModelProto read from fd (borrowed, not closed; only pread()
 * is used so the fd offset is untouched); path (borrowed) is used in errors.
 * On success *out owns the summary; free with nx_onnx_free().
 * Errors: NX_EFORMAT (not ONNX, truncated, malformed; err->offset set),
 * NX_ELIMIT (a cap), NX_EIO, NX_ENOMEM.
 */
int nx_onnx_open(nx_onnx_model **out, int fd, const char *path, nx_error *err);
/* The summary, owned by m and valid until nx_onnx_free(m). */
const nx_onnx_summary *nx_onnx_summary_get(const nx_onnx_model *m);
/* Free m and its summary.  Accepts NULL. */
void nx_onnx_free(nx_onnx_model *m);

enum nx_onnx_str_kind {
	NX_ONNX_PRODUCER,     /* producer_name, producer_version */
	NX_ONNX_DOMAIN,       /* model / function / opset domain */
	NX_ONNX_DOC,          /* any doc_string */
	NX_ONNX_META_KEY,     /* metadata_props key, at any level */
	NX_ONNX_META_VALUE,
	NX_ONNX_GRAPH_NAME,
	NX_ONNX_NODE_NAME,
	NX_ONNX_OP_TYPE,
	NX_ONNX_NODE_DOMAIN,
	NX_ONNX_EDGE,         /* node input/output, function input/output names */
	NX_ONNX_TENSOR_NAME,
	NX_ONNX_VALUE_NAME,   /* graph input/output/value_info names */
	NX_ONNX_ATTR_NAME,    /* attribute name, ref_attr_name */
	NX_ONNX_ATTR_STRING,  /* attribute s / strings */
	NX_ONNX_FUNCTION_NAME,
	NX_ONNX_TRAINING,     /* training_info binding keys and values */
	NX_ONNX_OTHER,        /* external_data keys/values, dim_param, denotation,
			       * quantization annotations, overload */
	NX_ONNX_TENSOR_STRING /* string_data of a string tensor */
};

/*
 * Call fn for every string of the model (names, doc strings, metadata,
 * attribute strings, strings inside training_info and functions,
 * external_data keys/values, string tensor data - a tensor of more than
 * NX_ONNX_VISIT_STRINGS_MAX strings is NX_ELIMIT): s is NUL-terminated (len is
 * its true length; it may hold NULs), offset is the file offset of the
 * string's bytes, scope as for nx_onnx_tensor.scope.  fn returning non-zero
 * stops the walk and that value is returned.  The model is fully checked as
 * by nx_onnx_open(); the same errors apply.
 */
typedef int (*nx_onnx_visit_fn)(void *ctx, enum nx_onnx_str_kind kind, const char *s,
				size_t len, uint64_t offset, const char *scope);
int nx_onnx_visit_strings(int fd, const char *path, nx_onnx_visit_fn fn, void *ctx,
			  nx_error *err);

/*
 * Stream tensor t's contents, as little-endian element bytes, to fn in
 * pieces of at most 64 KiB, however the protobuf encodes them (raw_data,
 * packed or unpacked typed fields, varints narrowed to the element width),
 * so that the same tensor written two ways reads the same.  t is an inline
 * tensor of the summary of the model read from fd (borrowed; only pread()
 * is used).  A string tensor has no such contents: fn is never called.
 * fn returning non-zero stops the read and that value is returned.
 * Errors: NX_EFORMAT (malformed payload), NX_EIO, NX_ENOMEM.
 */
typedef int (*nx_onnx_bytes_fn)(void *ctx, const unsigned char *buf, size_t len);
int nx_onnx_tensor_read(int fd, const char *path, const struct nx_onnx_tensor *t,
			nx_onnx_bytes_fn fn, void *ctx, nx_error *err);

/*
 * The canonical form (docs/FORMAT.md, "Canonical ONNX"): the bytes nexus's
 * encoder writes for what ONNX Runtime reads, and nothing else.  Shortest
 * varints, the wire form onnx.proto declares (packed payloads, unpacked
 * dims and attribute lists), fields in ascending number order with each
 * singular field once, no field unknown to ONNX; each tensor one payload
 * (raw_data, the one typed field of its data type, string_data or
 * external_data) of exactly the bytes or values its dims and data_type
 * give, typed values in their type's range; each attribute the one value
 * field its type names, lists of at most NX_ONNX_ATTR_LIST_MAX values;
 * shape dimensions of at most NX_ONNX_DIM_VALUE_MAX and ranks of at most
 * NX_ONNX_SHAPE_RANK_MAX; no more value_info entries in a graph than its
 * nodes have outputs.  training_info is not descended (TRV-3 fails it).
 */
#define NX_ONNX_DIM_VALUE_MAX (1u << 24) /* a value_info/input/output dimension */
#define NX_ONNX_SHAPE_RANK_MAX 16        /* dimensions of a value_info shape */
#define NX_ONNX_ATTR_LIST_MAX 256        /* values of a list attribute */

struct nx_onnx_canon {
	bool canonical;
	int64_t offset;      /* file offset of the first departure, -1 none */
	char what[256];      /* what departs there, lower-case */
	uint64_t list_bytes; /* bytes of list attribute values (floats, ints) */
};

/*
 * Check that the model read from fd (borrowed; pread() only) is in the
 * canonical form, streaming: payloads are skipped, typed varints read.
 * Returns 0 with *out filled (canonical or the first departure), or
 * NX_EFORMAT / NX_ELIMIT (malformed protobuf), NX_EIO, NX_ENOMEM.
 */
int nx_onnx_canon_check(struct nx_onnx_canon *out, int fd, const char *path, nx_error *err);

/*
 * Stream every number the model's attributes hold (f, i, floats, ints, at
 * any depth: nodes, subgraphs, functions), every shape dimension (dim_value
 * of inputs, outputs, value_info) and every opset version to fn, in file
 * order: a float as its 4 bytes, an integer as 8, little-endian.  Walks as
 * nx_onnx_canon_check() does and stops, returning 0, at the first
 * departure from the canonical form (a model that departs fails that
 * check).  fn returning non-zero stops the walk and that value is returned;
 * otherwise the errors of nx_onnx_canon_check().
 */
int nx_onnx_attr_numbers(int fd, const char *path, nx_onnx_bytes_fn fn, void *ctx, nx_error *err);

/* Stable lower-case name of a kind ("producer", "node_name", ...). */
const char *nx_onnx_str_kind_name(enum nx_onnx_str_kind kind);

/* The one external-data location rule (export, verify and the teacher
 * fingerprint apply it alike): why loc is refused, or NULL when it is a
 * relative path of at most NX_ONNX_LOCATION_MAX bytes with no empty, "."
 * or ".." component, no trailing "/" and no backslash.  ONNX CVE-2022-25882
 * and CVE-2024-27318 were locations that left the model's directory.
 * "w..1.bin" is a fine name; "../w.bin" is not. */
#define NX_ONNX_LOCATION_MAX 4096
const char *nx_onnx_location_problem(const char *loc);
/* "float", "float16", "int8", ...; "undefined" for unknown types. */
const char *nx_onnx_dtype_name(int32_t data_type);
/* Bytes per element; 0 for string, sub-byte (int4/uint4/float4) and unknown
 * types (see nx_onnx_dtype_bits). */
size_t nx_onnx_dtype_size(int32_t data_type);
/* Bits per element (4 for int4), 0 for string and unknown types. */
size_t nx_onnx_dtype_bits(int32_t data_type);

/*
 * Human form of a count, as in the manifest's model_metadata.parameters:
 * below 1000 the number itself ("12"); otherwise in K, M, B or T, rounded to
 * nearest, with one decimal while the value is below 100 of the unit and none
 * from 100 on: 1234 -> "1.2K", 1234567 -> "1.2M", 12345678 -> "12.3M",
 * 950000 -> "950K", 999999 -> "1.0M", 4400000000 -> "4.4B".
 * Writes at most n bytes including the NUL; returns the length snprintf
 * would return.
 */
int nx_human_count(char *out, size_t n, uint64_t count);

#ifdef __cplusplus
}
#endif
#endif
