/*
 * onnx_canon_int.h - the state of the canonical-form walk, shared by
 * onnx_canon.c (the schema walk) and onnx_canon_rules.c (tensor and
 * attribute rules).  Not a public header.
 */
#ifndef NEXUS_ONNX_CANON_INT_H
#define NEXUS_ONNX_CANON_INT_H

#include "onnx_int.h"

#define CANON_STOP 1   /* a departure was recorded in c->out */

#define LOOP_FIELDS(c, r, fld, rc) while (((rc) = nx_pb_next((r), (fld), (c)->err)) > 0)

#define NUMS_MAX 32   /* every field number of the schema is below this */

/* What one message's walk saw. */
struct seen {
	uint32_t count[NUMS_MAX];
	struct nx_pb_field first[NUMS_MAX];
	uint64_t nelem;            /* tensor: product of dims */
	bool nelem_overflow;
	uint64_t dims_big;         /* tensor: dims over NX_ONNX_DIM_VALUE_MAX */
};

struct canon {
	struct nx_pb_file f;
	nx_error *err;
	struct nx_onnx_canon *out;
	nx_onnx_bytes_fn numbers;  /* nx_onnx_attr_numbers: each attribute number */
	void *numbers_ctx;
};

/* Record the first departure at offset (what: printf-style) and return
 * CANON_STOP, which every walker passes up at once. */
int nx_canon__depart(struct canon *c, uint64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Bytes of the shortest varint of v. */
unsigned nx_canon__varint_len(uint64_t v);
/* TensorProto fld (its reader r, what the walk saw s): one payload of
 * exactly its size. */
int nx_canon__tensor(struct canon *c, const struct nx_pb_reader *r, const struct nx_pb_field *fld,
		 const struct seen *s);
/* AttributeProto fld: the one value its type names, lists short. */
int nx_canon__attr(struct canon *c, const struct nx_pb_field *fld, const struct seen *s);

#endif
