/*
 * onnx_canon.c - is a model exactly nexus's canonical encoding of what ONNX
 * Runtime reads (nexus/onnx.h, nx_onnx_canon_check)?
 *
 * The check streams: every field is compared with the bytes a canonical
 * encoder would write for it (shortest varints, the wire form the schema
 * declares, fields in ascending number order, each singular field once),
 * and each message's fields against what its semantics let ONNX Runtime
 * read (one payload per tensor, of exactly the size its shape and type
 * give; one value per attribute, the one its type names; shapes of real
 * dimensions).  Re-encoding what was read and comparing would give the
 * same answer, but without holding the model: payloads are never read
 * except typed varints, which must be checked one by one.  This file
 * walks the schema; onnx_canon_rules.c holds what a tensor and an
 * attribute must be.
 */
#include "onnx_canon_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum msg {
	M_MODEL, M_OPSET, M_SSE, M_GRAPH, M_NODE, M_ATTR, M_VALUE, M_TYPE, M_TTENSOR,
	M_TSEQ, M_TMAP, M_TOPAQUE, M_SHAPE, M_DIM, M_TENSOR, M_SEGMENT, M_SPARSE,
	M_ANNOT, M_FUNCTION, M_SKIP
};

enum kind {
	K_VARINT,   /* int64 / uint64 / enum read whole */
	K_INT32,    /* int32 or enum: the varint must be a sign-extended int32 */
	K_FIXED32,  /* float */
	K_BYTES,    /* string or bytes, not descended */
	K_MSG,      /* a sub-message of type `sub` */
	K_PACKED,   /* [packed = true] repeated scalars: one LEN run */
};

struct fspec {
	uint32_t num;
	unsigned char kind;
	bool repeated;
	unsigned char sub;
};

struct mspec {
	const char *name;
	const struct fspec *f;
	size_t n;
};

#define F(num, kind, rep, sub) { num, kind, rep, sub }
#define MS(name, arr) { name, arr, sizeof(arr) / sizeof(arr[0]) }

static const struct fspec f_model[] = {
	F(1, K_VARINT, 0, 0), F(2, K_BYTES, 0, 0), F(3, K_BYTES, 0, 0), F(4, K_BYTES, 0, 0),
	F(5, K_VARINT, 0, 0), F(6, K_BYTES, 0, 0), F(7, K_MSG, 0, M_GRAPH),
	F(8, K_MSG, 1, M_OPSET), F(14, K_MSG, 1, M_SSE), F(20, K_MSG, 1, M_SKIP),
	F(25, K_MSG, 1, M_FUNCTION),
};
static const struct fspec f_opset[] = { F(1, K_BYTES, 0, 0), F(2, K_VARINT, 0, 0) };
static const struct fspec f_sse[] = { F(1, K_BYTES, 0, 0), F(2, K_BYTES, 0, 0) };
static const struct fspec f_graph[] = {
	F(1, K_MSG, 1, M_NODE), F(2, K_BYTES, 0, 0), F(5, K_MSG, 1, M_TENSOR),
	F(10, K_BYTES, 0, 0), F(11, K_MSG, 1, M_VALUE), F(12, K_MSG, 1, M_VALUE),
	F(13, K_MSG, 1, M_VALUE), F(14, K_MSG, 1, M_ANNOT), F(15, K_MSG, 1, M_SPARSE),
	F(16, K_MSG, 1, M_SSE),
};
static const struct fspec f_node[] = {
	F(1, K_BYTES, 1, 0), F(2, K_BYTES, 1, 0), F(3, K_BYTES, 0, 0), F(4, K_BYTES, 0, 0),
	F(5, K_MSG, 1, M_ATTR), F(6, K_BYTES, 0, 0), F(7, K_BYTES, 0, 0), F(8, K_BYTES, 0, 0),
	F(9, K_MSG, 1, M_SSE),
};
static const struct fspec f_attr[] = {
	F(1, K_BYTES, 0, 0), F(2, K_FIXED32, 0, 0), F(3, K_VARINT, 0, 0), F(4, K_BYTES, 0, 0),
	F(5, K_MSG, 0, M_TENSOR), F(6, K_MSG, 0, M_GRAPH), F(7, K_FIXED32, 1, 0),
	F(8, K_VARINT, 1, 0), F(9, K_BYTES, 1, 0), F(10, K_MSG, 1, M_TENSOR),
	F(11, K_MSG, 1, M_GRAPH), F(13, K_BYTES, 0, 0), F(14, K_MSG, 0, M_TYPE),
	F(15, K_MSG, 1, M_TYPE), F(20, K_INT32, 0, 0), F(21, K_BYTES, 0, 0),
	F(22, K_MSG, 0, M_SPARSE), F(23, K_MSG, 1, M_SPARSE),
};
static const struct fspec f_value[] = {
	F(1, K_BYTES, 0, 0), F(2, K_MSG, 0, M_TYPE), F(3, K_BYTES, 0, 0), F(4, K_MSG, 1, M_SSE),
};
/* TypeProto: tensor_type, sequence_type, map_type, denotation, opaque_type,
 * sparse_tensor_type, optional_type (a oneof: checked after the walk) */
static const struct fspec f_type[] = {
	F(1, K_MSG, 0, M_TTENSOR), F(4, K_MSG, 0, M_TSEQ), F(5, K_MSG, 0, M_TMAP),
	F(6, K_BYTES, 0, 0), F(7, K_MSG, 0, M_TOPAQUE), F(8, K_MSG, 0, M_TTENSOR),
	F(9, K_MSG, 0, M_TSEQ),
};
static const struct fspec f_ttensor[] = { F(1, K_INT32, 0, 0), F(2, K_MSG, 0, M_SHAPE) };
static const struct fspec f_tseq[] = { F(1, K_MSG, 0, M_TYPE) };
static const struct fspec f_tmap[] = { F(1, K_INT32, 0, 0), F(2, K_MSG, 0, M_TYPE) };
static const struct fspec f_topaque[] = { F(1, K_BYTES, 0, 0), F(2, K_BYTES, 0, 0) };
static const struct fspec f_shape[] = { F(1, K_MSG, 1, M_DIM) };
static const struct fspec f_dim[] = { F(1, K_VARINT, 0, 0), F(2, K_BYTES, 0, 0), F(3, K_BYTES, 0, 0) };
static const struct fspec f_tensor[] = {
	F(1, K_VARINT, 1, 0), F(2, K_INT32, 0, 0), F(3, K_MSG, 0, M_SEGMENT),
	F(4, K_PACKED, 1, 0), F(5, K_PACKED, 1, 0), F(6, K_BYTES, 1, 0), F(7, K_PACKED, 1, 0),
	F(8, K_BYTES, 0, 0), F(9, K_BYTES, 0, 0), F(10, K_PACKED, 1, 0), F(11, K_PACKED, 1, 0),
	F(12, K_BYTES, 0, 0), F(13, K_MSG, 1, M_SSE), F(14, K_INT32, 0, 0), F(16, K_MSG, 1, M_SSE),
};
static const struct fspec f_segment[] = { F(1, K_VARINT, 0, 0), F(2, K_VARINT, 0, 0) };
static const struct fspec f_sparse[] = {
	F(1, K_MSG, 0, M_TENSOR), F(2, K_MSG, 0, M_TENSOR), F(3, K_VARINT, 1, 0),
};
static const struct fspec f_annot[] = { F(1, K_BYTES, 0, 0), F(2, K_MSG, 1, M_SSE) };
static const struct fspec f_function[] = {
	F(1, K_BYTES, 0, 0), F(4, K_BYTES, 1, 0), F(5, K_BYTES, 1, 0), F(6, K_BYTES, 1, 0),
	F(7, K_MSG, 1, M_NODE), F(8, K_BYTES, 0, 0), F(9, K_MSG, 1, M_OPSET),
	F(10, K_BYTES, 0, 0), F(11, K_MSG, 1, M_ATTR), F(12, K_MSG, 1, M_VALUE),
	F(13, K_BYTES, 0, 0), F(14, K_MSG, 1, M_SSE),
};

static const struct mspec specs[] = {
	[M_MODEL] = MS("model", f_model),       [M_OPSET] = MS("opset_import", f_opset),
	[M_SSE] = MS("string entry", f_sse),    [M_GRAPH] = MS("graph", f_graph),
	[M_NODE] = MS("node", f_node),          [M_ATTR] = MS("attribute", f_attr),
	[M_VALUE] = MS("value info", f_value),  [M_TYPE] = MS("type", f_type),
	[M_TTENSOR] = MS("tensor type", f_ttensor), [M_TSEQ] = MS("sequence type", f_tseq),
	[M_TMAP] = MS("map type", f_tmap),      [M_TOPAQUE] = MS("opaque type", f_topaque),
	[M_SHAPE] = MS("shape", f_shape),       [M_DIM] = MS("dimension", f_dim),
	[M_TENSOR] = MS("tensor", f_tensor),    [M_SEGMENT] = MS("segment", f_segment),
	[M_SPARSE] = MS("sparse tensor", f_sparse), [M_ANNOT] = MS("annotation", f_annot),
	[M_FUNCTION] = MS("function", f_function),
};

static const struct fspec *find_spec(const struct mspec *m, uint32_t num)
{
	size_t i;

	for (i = 0; i < m->n; i++)
		if (m->f[i].num == num)
			return &m->f[i];
	return NULL;
}

static enum nx_pb_wire wire_of(unsigned kind)
{
	switch (kind) {
	case K_VARINT: case K_INT32:
		return NX_PB_VARINT;
	case K_FIXED32:
		return NX_PB_I32;
	default:
		return NX_PB_LEN;
	}
}

/* The tag and (LEN) length prefix are the shortest varints. */
static int check_header(struct canon *c, const struct mspec *m, const struct nx_pb_field *f)
{
	uint64_t want = nx_canon__varint_len((uint64_t)f->num << 3 | f->wire);

	if (f->wire == NX_PB_LEN)
		want += nx_canon__varint_len(f->len);
	if (f->offset - f->tag_offset != want)
		return nx_canon__depart(c, f->tag_offset, "%s field %u has a padded tag or length varint",
			      m->name, f->num);
	if (f->wire == NX_PB_VARINT && f->len != nx_canon__varint_len(f->value))
		return nx_canon__depart(c, f->tag_offset, "%s field %u has a padded varint", m->name, f->num);
	return 0;
}

static int walk_msg(struct canon *c, const struct nx_pb_reader *parent,
		    const struct nx_pb_field *fld, enum msg type, struct seen *up);

/* Checks of a message once all its fields were seen. */
static int finish(struct canon *c, const struct nx_pb_reader *r, const struct nx_pb_field *fld,
		  enum msg type, const struct seen *s)
{
	switch (type) {
	case M_TENSOR:
		return nx_canon__tensor(c, r, fld, s);
	case M_ATTR:
		return nx_canon__attr(c, fld, s);
	case M_TYPE: {
		unsigned k = s->count[1] + s->count[4] + s->count[5] + s->count[7] +
			     s->count[8] + s->count[9];

		return k == 1 ? 0 : nx_canon__depart(c, fld->tag_offset, "type has %u values where "
					   "it takes one", k);
	}
	case M_DIM:
		if (s->count[1] + s->count[2] > 1)
			return nx_canon__depart(c, fld->tag_offset, "dimension has both a value and a "
				      "parameter");
		return 0;
	case M_GRAPH:
	case M_FUNCTION: {
		/* value_info describes values the nodes compute: no more of them */
		uint32_t infos = s->count[type == M_GRAPH ? 13 : 12];

		return infos <= s->first[0].value ? 0 :
		       nx_canon__depart(c, fld->tag_offset, "%u value_info entries for %llu node outputs",
			      infos, (unsigned long long)s->first[0].value);
	}
	default:
		return 0;
	}
}

/* An attribute's number (f, i, floats, ints) to c->numbers, little-endian:
 * a float as its 4 bytes, an integer as 8. */
static int attr_number(struct canon *c, const struct nx_pb_field *f)
{
	unsigned char b[8];
	unsigned n = f->wire == NX_PB_I32 ? 4 : 8, i;

	for (i = 0; i < n; i++)
		b[i] = (unsigned char)(f->value >> (8 * i));
	return c->numbers(c->numbers_ctx, b, n);
}

/* One field of a message of type m: schema, wire form, order, value. */
static int walk_field(struct canon *c, const struct nx_pb_reader *r, enum msg type,
		      const struct nx_pb_field *f, uint32_t *last, struct seen *s, struct seen *up)
{
	const struct mspec *m = &specs[type];
	const struct fspec *fs = find_spec(m, f->num);
	int rc;

	if (!fs)
		return nx_canon__depart(c, f->tag_offset, "%s has field %u, unknown to ONNX", m->name, f->num);
	if (f->wire != wire_of(fs->kind))
		return nx_canon__depart(c, f->tag_offset, "%s field %u is written as %s, not %s", m->name,
			      f->num, nx_pb_wire_name(f->wire), nx_pb_wire_name(wire_of(fs->kind)));
	if ((rc = check_header(c, m, f)) != 0)
		return rc;
	if (f->num < *last || (f->num == *last && !fs->repeated))
		return nx_canon__depart(c, f->tag_offset, f->num == *last ?
			      "%s field %u is given twice: only the last is read" :
			      "%s field %u comes after field %u: not in field order", m->name,
			      f->num, *last);
	if (fs->kind == K_PACKED && f->len == 0)
		return nx_canon__depart(c, f->tag_offset, "%s field %u is an empty packed run", m->name,
			      f->num);
	*last = f->num;
	if (!s->count[f->num]++)
		s->first[f->num] = *f;
	if (fs->kind == K_INT32 && (int64_t)f->value != (int32_t)f->value)
		return nx_canon__depart(c, f->tag_offset, "%s field %u holds %lld, not an int32",
			      m->name, f->num, (long long)f->value);
	if (type == M_TENSOR && f->num == 1) {
		if (f->value > NX_ONNX_DIM_VALUE_MAX)
			s->dims_big++;
		if (f->value && s->nelem > UINT64_MAX / f->value)
			s->nelem_overflow = true;
		s->nelem *= f->value;
	}
	if (type == M_DIM && f->num == 1 && f->value > NX_ONNX_DIM_VALUE_MAX)
		return nx_canon__depart(c, f->tag_offset, "shape dimension %llu is over the limit of %u",
			      (unsigned long long)f->value, NX_ONNX_DIM_VALUE_MAX);
	if (type == M_SHAPE && s->count[1] > NX_ONNX_SHAPE_RANK_MAX)
		return nx_canon__depart(c, f->tag_offset, "shape of more than %u dimensions",
			      NX_ONNX_SHAPE_RANK_MAX);
	if (type == M_ATTR && (f->num == 7 || f->num == 8))
		c->out->list_bytes += f->num == 7 ? 4 : nx_canon__varint_len(f->value);
	if (type == M_ATTR && c->numbers && f->num >= 2 && f->num <= 8 && f->num != 4 &&
	    (fs->kind == K_FIXED32 || fs->kind == K_VARINT) && (rc = attr_number(c, f)) != 0)
		return rc;
	/* a shape's dimensions and an opset's version are numbers the model's
	 * author picks as freely: value_info on every edge held 48 bytes of
	 * them per node (red team 8) */
	if (c->numbers && ((type == M_DIM && f->num == 1) || (type == M_OPSET && f->num == 2)) &&
	    (rc = attr_number(c, f)) != 0)
		return rc;
	/* node outputs, counted into the enclosing graph's first[0] */
	if (type == M_NODE && f->num == 2 && up)
		up->first[0].value++;
	if (type == M_FUNCTION && f->num == 5)
		s->first[0].value++;
	/* the fingerprints and the liveness check read dense tensors only: a
	 * teacher layer listed element by element as a sparse initializer
	 * passed both (red team 12).  Neither nexus's exporter nor the usual
	 * ones write one for a model's weights. */
	if (fs->kind == K_MSG && fs->sub == M_SPARSE)
		return nx_canon__depart(c, f->tag_offset, "%s field %u is a sparse tensor (%s), which "
			      "the checks do not read; store it as a dense tensor", m->name, f->num,
			      type == M_GRAPH ? "sparse_initializer" : "a sparse attribute value");
	if (fs->kind == K_MSG && fs->sub != M_SKIP)
		return walk_msg(c, r, f, (enum msg)fs->sub, s);
	return 0;
}

static int walk_msg(struct canon *c, const struct nx_pb_reader *parent,
		    const struct nx_pb_field *fld, enum msg type, struct seen *up)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct seen *s;
	uint32_t last = 0;
	int rc;

	if (!(s = calloc(1, sizeof(*s))))
		return nx_error_oom(c->err, c->f.path);
	s->nelem = 1;
	if ((rc = nx_pb_sub(&r, parent, fld, c->err)) != 0)
		goto out;
	LOOP_FIELDS(c, &r, &f, rc)
		if ((rc = walk_field(c, &r, type, &f, &last, s, up)) != 0)
			goto out;
	if (!rc) {
		r.pos = fld->offset;
		rc = finish(c, &r, fld, type, s);
	}
out:
	free(s);
	return rc;
}

static int canon_walk(struct nx_onnx_canon *out, int fd, const char *path,
		      nx_onnx_bytes_fn numbers, void *numbers_ctx, nx_error *err)
{
	struct canon c;
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct nx_onnx_canon res;
	struct seen *s = NULL;
	uint32_t last = 0;
	int rc;

	memset(&c, 0, sizeof(c));
	memset(&res, 0, sizeof(res));
	res.canonical = true;
	res.offset = -1;
	c.err = err;
	c.out = &res;
	c.numbers = numbers;
	c.numbers_ctx = numbers_ctx;
	if ((rc = nx_pb_file_init(&c.f, fd, path, err)) != 0 ||
	    (rc = nx_pb_reader_init(&r, &c.f, 0, c.f.size, err)) != 0)
		goto out;
	if (!(s = calloc(1, sizeof(*s)))) {
		rc = nx_error_oom(err, path);
		goto out;
	}
	LOOP_FIELDS(&c, &r, &f, rc)
		if ((rc = walk_field(&c, &r, M_MODEL, &f, &last, s, NULL)) != 0)
			break;
	if (rc == CANON_STOP)
		rc = 0;
	if (!rc)
		*out = res;
out:
	free(s);
	nx_pb_file_release(&c.f);
	return rc;
}

int nx_onnx_canon_check(struct nx_onnx_canon *out, int fd, const char *path, nx_error *err)
{
	return canon_walk(out, fd, path, NULL, NULL, err);
}

int nx_onnx_attr_numbers(int fd, const char *path, nx_onnx_bytes_fn fn, void *ctx, nx_error *err)
{
	struct nx_onnx_canon res;

	return canon_walk(&res, fd, path, fn, ctx, err);
}
