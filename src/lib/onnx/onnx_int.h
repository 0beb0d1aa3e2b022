/*
 * onnx_int.h - internals shared by the onnx*.c files of libnexus: the walk
 * state, the string set used to resolve initializer references, and the
 * walkers of each message type.  Not a public header.
 */
#ifndef NEXUS_ONNX_INT_H
#define NEXUS_ONNX_INT_H

#include "nexus/onnx.h"
#include "nexus/pb.h"
#include "util/array_int.h"
#include "util/strset_int.h"

/* Returned up the walk when the visitor asked to stop (w->stop_rc holds its
 * value); every walker returns at once on any non-zero code. */
#define WALK_STOP 1


struct walk {
	struct nx_pb_file f;
	nx_error *err;
	nx_onnx_summary *sum;
	size_t cap_tensors, cap_inputs, cap_outputs, cap_opsets, cap_meta, cap_domains;
	uint32_t *tensor_graph;      /* graph id of each summary tensor */
	size_t cap_tg;
	uint32_t next_graph;
	uint64_t held;               /* bytes of strings kept, against NX_ONNX_HELD_MAX */
	bool quant_op;
	bool nbits_op;       /* a MatMulNBits node: int4 weights */
	nx_onnx_visit_fn fn;         /* NULL: summary only, strings not read */
	void *ctx;
	int stop_rc;
	char scope[NX_ONNX_SCOPE_MAX];
};

/* onnx_set.c */
int nx_onnx__strset_add(struct walk *w, struct strset *s, const char *str);
bool nx_onnx__strset_has(const struct strset *s, const char *str);
int nx_onnx__strset_merge(struct walk *w, struct strset *dst, const struct strset *src);
void nx_onnx__strset_release(struct strset *s);
int nx_onnx__walk_grow(struct walk *w, void **arr, size_t *cap, size_t n, size_t elem, size_t max);

/* onnx_field.c */
int nx_onnx__walk_unknown(struct walk *w, const struct nx_pb_field *fld);
int nx_onnx__walk_expect(struct walk *w, const struct nx_pb_field *fld, enum nx_pb_wire wire);
int nx_onnx__walk_string(struct walk *w, const struct nx_pb_field *fld, enum nx_onnx_str_kind kind,
		size_t max, char **out);
int nx_onnx__walk_kv(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	    enum nx_onnx_str_kind kkind, enum nx_onnx_str_kind vkind, char **key, char **value);
/* What every message shares: its doc_string field doc_num, its
 * metadata_props field meta_num (0: none), and fields it does not know. */
int nx_onnx__walk_common(struct walk *w, const struct nx_pb_reader *r, const struct nx_pb_field *f,
		uint32_t doc_num, uint32_t meta_num);
size_t nx_onnx__scope_push(struct walk *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nx_onnx__scope_pop(struct walk *w, size_t len);

/* onnx_walk.c */
int nx_onnx__walk_graph(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	       struct strset *parent_used, bool main_graph);
int nx_onnx__walk_function(struct walk *w, const struct nx_pb_reader *parent,
		  const struct nx_pb_field *fld);
int nx_onnx__walk_opset(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	       bool keep);

/* onnx_tensor.c */
int nx_onnx__walk_tensor(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
		uint32_t graph, bool attribute);
int nx_onnx__walk_sparse(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
		uint32_t graph, bool attribute);
int nx_onnx__walk_value(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	       struct nx_onnx_value *out);
int nx_onnx__walk_type(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	      struct nx_onnx_value *out);
void nx_onnx__value_release(struct nx_onnx_value *v);
void nx_onnx__tensor_release(struct nx_onnx_tensor *t);

/* onnx_contents.c: the TensorProto field (float_data = 4, int32_data = 5,
 * int64_data = 7, double_data = 10, uint64_data = 11) that holds the values
 * of data type dtype when there is no raw_data, and the bytes each value
 * takes in the contents; 0 for string and unknown types. */
uint32_t nx_onnx__typed_field(int32_t dtype, unsigned *width);

#endif
