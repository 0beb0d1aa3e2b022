/*
 * export_int.h - internals of the export (export*.c, onnx_write.c): the
 * piece tree of a rewritten message and its writer.  Not a public header.
 *
 * A rewritten message is a list of pieces: byte ranges of the source copied
 * as they are (the untouched fields, weights included), literal bytes (a new
 * string field), and rewritten sub-messages (a field number and a child
 * list).  Lengths are known only once the children are complete, so the
 * tree is built first and written second.
 */
#ifndef NEXUS_EXPORT_INT_H
#define NEXUS_EXPORT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "nexus/export.h"
#include "nexus/pb.h"
#include "nexus/scan.h"
#include "util/array_int.h"
#include "util/strset_int.h"

enum pw_kind { PW_COPY, PW_LIT, PW_MSG };

struct pw_msg;

struct pw_piece {
	enum pw_kind kind;
	uint32_t num;           /* field number (PW_COPY: of every field it holds) */
	uint64_t off, len;      /* PW_COPY: source range; PW_LIT: len of lit */
	unsigned char *lit;     /* PW_LIT, owned */
	struct pw_msg *child;   /* PW_MSG, owned */
};

struct pw_msg {
	struct pw_piece *p;
	size_t n, cap;
	uint64_t size;          /* payload bytes, set by nx_pw__msg_measure */
};

struct pw_msg *nx_pw__msg_new(void);
void nx_pw__msg_free(struct pw_msg *m);
/* Append a copy of source bytes [off, off + len), whole fields numbered
 * num; adjacent ranges of the same field number merge. */
int nx_pw__copy(struct pw_msg *m, uint32_t num, uint64_t off, uint64_t len);
/* Append a string field (tag, length, bytes). */
int nx_pw__string(struct pw_msg *m, uint32_t num, const char *s, size_t len);
/* Append a varint field. */
int nx_pw__varint_field(struct pw_msg *m, uint32_t num, uint64_t v);
/* Append a sub-message field; the child is owned by m from now on. */
int nx_pw__child(struct pw_msg *m, uint32_t num, struct pw_msg *child);
/* Put every message's fields in ascending number order (stable: repeated
 * fields keep their order), as the canonical form has them
 * (nx_onnx_canon_check), and compute sizes bottom up; returns the payload
 * size of m. */
uint64_t nx_pw__msg_measure(struct pw_msg *m);

/*
 * Sequential writer of one output file that hashes every byte it writes.
 * Small pieces gather in a buffer; large copied ranges go through
 * copy_file_range while a second thread hashes the same source range.
 */
struct pw_out {
	int fd;
	uint64_t pos;           /* bytes written (flushed or buffered) */
	EVP_MD_CTX *ctx;
	bool nohash;            /* copy only: finish yields zeros */
	nx_hash_follow *follow; /* not owned: told of every write (implies nohash) */
	unsigned char *buf;
	size_t blen;
	const char *src_path, *dst_name;
	nx_error *err;
};

int nx_pw__out_init(struct pw_out *o, int fd, const char *src_path, const char *dst_name,
		nx_error *err);
int nx_pw__out_write(struct pw_out *o, const void *buf, size_t len);
/* Copy [off, off + len) of src_fd to the output. */
int nx_pw__out_copy(struct pw_out *o, int src_fd, uint64_t off, uint64_t len);
/* Pad with zeros up to a multiple of align. */
int nx_pw__out_align(struct pw_out *o, uint64_t align);
/* Flush, finish the digest into out. */
int nx_pw__out_finish(struct pw_out *o, unsigned char out[NX_SHA256_LEN]);
void nx_pw__out_release(struct pw_out *o);
/* Write the message tree m (measured) as a top-level message. */
int nx_pw__emit(struct pw_out *o, int src_fd, const struct pw_msg *m);


/* The names of one node of the main graph, read by the analysis pass. */
struct ex_node {
	char **in;      /* inputs, then names used inside its subgraphs */
	size_t nin;
	char **out;
	size_t nout;
	char *op;           /* op_type */
	char *name;         /* node name (NULL: none) */
	size_t ndirect;     /* in[0..ndirect) are its own inputs, in order */
	bool holes;         /* an empty (omitted) input was skipped */
	bool nonzero_axis;  /* an attribute axis or transA that is not 0 */
	bool trans_b;       /* transB = 1 (Gemm) */
	bool scaled;        /* an alpha or beta that is not 1 (Gemm) */
	bool alias;         /* Identity of a teacher-named initializer (export_alias.c) */
	bool materialise;   /* an alias the kept part reads: its tensor is copied */
};

/* One export (or plan). */
struct ex {
	struct nx_pb_file f;
	int src_fd;
	const char *path;
	nx_error *err;
	const struct nx_export_opts *o;
	struct nx_export_result *res;
	size_t cap_removed;
	bool dry;
	/* analysis of the main graph */
	struct ex_node *nodes;
	size_t nnodes, cap_nodes;
	bool *keep_node;
	struct strset needed;      /* names the kept part reads */
	struct strset requested;   /* outputs asked for */
	struct strset graph_outputs;
	struct strset initializers;  /* names of the main graph's initializers */
	char **extra_outputs;      /* requested names that are not graph outputs */
	size_t nextra;
	const char **terms;
	size_t nterms;
	/* external data */
	bool externalize;          /* large inline initializers go to the data file */
	struct pw_out ext;
	nx_hash_follow *ext_follow;  /* NX_EXPORT_DIGEST_DEFER: the data file's digest */
	int ext_fd;
	bool ext_started;
	/* quantization (export/quant.c): what each kept node and initializer becomes */
	unsigned char *qnode;      /* per node: enum ex_qkind */
	bool ms_opset;             /* the model imports com.microsoft */
	struct ex_qinit *qinits;   /* the main graph's 2-D float initializers */
	size_t nqinits;
	struct ex_par *par;        /* quant_par.c: the helper threads (NULL: none yet) */
};

/* How a weight is read: W[K, N] by a MatMul or a Gemm (transB 0), W[N, K]
 * by a Gemm with transB 1 (a torch Linear's [out, in]), E[V, D] by a Gather. */
enum ex_qkind { EX_Q_NONE, EX_Q_MATMUL, EX_Q_GATHER, EX_Q_GEMM_T, EX_Q_FP16 };

/* A float32 initializer of the main graph (int8, int4: 2-D only) and what
 * becomes of it. */
struct ex_qinit {
	char *name;
	uint64_t rows, cols;
	uint64_t nelem;      /* elements (any rank) */
	bool payload;        /* raw_data or external: readable by the quantizer */
	bool input;          /* also a graph input (overridable): kept float */
	enum ex_qkind kind;  /* EX_Q_NONE: kept float */
	bool mixed;          /* read by a node that is not quantized: kept float */
};

/* export_ctx.c */
int nx_export__report(struct ex *x, enum nx_export_what what, const char *name, uint64_t bytes,
	      uint64_t offset);
int nx_export__oom(struct ex *x);
int nx_export__read_name(struct ex *x, const struct nx_pb_field *f, char **out);
int nx_export__check_term(struct ex *x, const char *what, const char *name, uint64_t offset);
/* The forbidden term name holds (case-insensitive), or NULL. */
const char *nx_export__term_of(const struct ex *x, const char *name);
bool nx_export__keep_meta(struct ex *x, const char *key);
/* The string fields na and nb (0: none) of sub-message fld into *a, *b. */
int nx_export__read_strings(struct ex *x, const struct nx_pb_reader *parent,
		    const struct nx_pb_field *fld, unsigned na, char **a, unsigned nb, char **b);

/* export_analyze.c */
int nx_export__analyze(struct ex *x, const struct nx_pb_reader *model);
/* export_positions.c: res->pos_table (and pos_buffer) of the kept graph */
int nx_export__positions(struct ex *x);

/* export_alias.c.  torch.onnx.export stores equal initializers once, so a
 * student's zero bias may be a teacher's tensor reached through Identity.
 * Mark such nodes (after the nodes and initializers are read). */
void nx_export__alias_mark(struct ex *x);
/* Whether tensor fld's data repeats its first 8 bytes throughout (a
 * constant fill), and its size in bytes. */
int nx_export__alias_flat(struct ex *x, const struct nx_pb_reader *parent,
		  const struct nx_pb_field *fld, bool *flat, uint64_t *bytes, const char *name);

/* export_rewrite.c: each returns the rewritten payload in *out (a single
 * copy of the payload when nothing changed). */
int nx_export__rewrite_model(struct ex *x, struct pw_msg **out);

/* export/quant.c.  After the analysis: decide which weights are quantized
 * (opts.quantize); NX_ECONFIG for an already quantized model or a MatMul
 * weight computed from a constant. */
int nx_export__quant_plan(struct ex *x, const struct nx_pb_reader *graph_parent,
		  const struct nx_pb_field *graph);
/* The kept node i (field fld of the main graph) rewritten into the nodes of
 * its int8 form, added to graph m. */
int nx_export__quant_node(struct ex *x, const struct nx_pb_field *fld, size_t i, struct pw_msg *m);
/* The initializer fld (named name): when planned for quantization, its int8
 * tensor and scales are added to graph m and *done is set. */
int nx_export__quant_tensor(struct ex *x, const struct nx_pb_reader *r, const struct nx_pb_field *fld,
		    const char *name, struct pw_msg *m, bool *done);
void nx_export__quant_release(struct ex *x);
/* fp16: the Cast of each float16 initializer back to its float32 name,
 * added to graph m before its first node (nodes are in topological order). */
int nx_export__quant_casts(struct ex *x, struct pw_msg *m);

/* quant_par.c.  fn(ctx, piece, npieces) runs once for each piece
 * 0..npieces-1, on the caller and on helper threads (started on first
 * use, opts.quantize_threads), in any order and at once; it returns when
 * every piece has.  A piece must not touch x (nx_error is not shared
 * between threads). */
typedef void nx_export__par_fn(void *ctx, unsigned piece, unsigned npieces);
void nx_export__par_run(struct ex *x, nx_export__par_fn *fn, void *ctx, unsigned npieces);
void nx_export__par_release(struct ex *x);

/* export_ext.c.  A tensor's external data, checked and open. */
struct ex_src {
	int fd;          /* -1 in a dry run without a workspace */
	char *path;      /* workspace-relative, for errors */
	uint64_t off, len;
};

/* Check a tensor's external reference and open its file (not in src when
 * a dry run has no workspace to look in). */
int nx_export__external(struct ex *x, const char *tensor, const char *location, int64_t offset,
		int64_t length, uint64_t field_offset, struct ex_src *src);
void nx_export__src_release(struct ex_src *src);
/* The external_data entries of a tensor: location, offset, length (-1
 * when absent). */
struct ext_ref {
	char *location;
	int64_t offset, length;
};

/* Read one external_data entry (StringStringEntryProto fld) into e. */
int nx_export__ext_entry(struct ex *x, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
		 struct ext_ref *e);
/* The first look at a TensorProto (reader r over it, read to its end):
 * external_data entries into e, data_location EXTERNAL, raw_data, and the
 * name (when name is not NULL). */
int nx_export__tensor_payload(struct ex *x, struct nx_pb_reader *r, struct ext_ref *e, bool *external,
		      struct nx_pb_field *raw, bool *has_raw, char **name);
/* The three external_data entries (into the bundle's data file at off,
 * len bytes) and data_location EXTERNAL of a tensor m; NX_ENOMEM. */
int nx_export__ext_fields(struct pw_msg *m, uint64_t off, uint64_t len);
/* The bytes of a small external tensor, to put inline (*out malloc'd). */
int nx_export__read_small(struct ex *x, const struct ex_src *src, unsigned char **out);
/* Copy [off, off + len) of fd into the bundle's data file (created on
 * first use), aligned; *out_offset is where it now starts. */
int nx_export__data_copy(struct ex *x, int fd, const char *src_path, uint64_t off, uint64_t len,
		 uint64_t field_offset, const char *tensor, uint64_t *out_offset);
/* Start a tensor in the data file (created on first use), aligned:
 * *out_offset is where it starts; write its bytes with nx_pw__out_write on
 * x->ext (not in a dry run). */
int nx_export__data_begin(struct ex *x, uint64_t field_offset, const char *tensor, uint64_t *out_offset);

#endif
