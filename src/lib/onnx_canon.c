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
 * except typed varints, which must be checked one by one.
 */
#include "onnx_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CANON_STOP 1   /* a departure was recorded in c->out */

#define LOOP_FIELDS(c, r, fld, rc) while (((rc) = nx_pb_next((r), (fld), (c)->err)) > 0)

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
};

static int depart(struct canon *c, uint64_t offset, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int depart(struct canon *c, uint64_t offset, const char *fmt, ...)
{
	va_list ap;

	c->out->canonical = false;
	c->out->offset = (int64_t)offset;
	va_start(ap, fmt);
	vsnprintf(c->out->what, sizeof(c->out->what), fmt, ap);
	va_end(ap);
	return CANON_STOP;
}

static unsigned varint_len(uint64_t v)
{
	unsigned n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

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
	uint64_t want = varint_len((uint64_t)f->num << 3 | f->wire);

	if (f->wire == NX_PB_LEN)
		want += varint_len(f->len);
	if (f->offset - f->tag_offset != want)
		return depart(c, f->tag_offset, "%s field %u has a padded tag or length varint",
			      m->name, f->num);
	if (f->wire == NX_PB_VARINT && f->len != varint_len(f->value))
		return depart(c, f->tag_offset, "%s field %u has a padded varint", m->name, f->num);
	return 0;
}

static int walk_msg(struct canon *c, const struct nx_pb_reader *parent,
		    const struct nx_pb_field *fld, enum msg type, struct seen *up);

/* The packed varints of [f] are shortest, sign-extended int32 when int32
 * (and within [lo, hi]); *count their number. */
static int packed_varints(struct canon *c, const struct nx_pb_reader *r,
			  const struct nx_pb_field *f, bool int32, int64_t lo, int64_t hi,
			  uint64_t *count)
{
	struct nx_pb_reader p;
	int rc;

	if ((rc = nx_pb_sub(&p, r, f, c->err)) != 0)
		return rc;
	*count = 0;
	while (p.pos < p.end) {
		uint64_t start = p.pos, v;
		int64_t s;

		if ((rc = nx_pb_read_varint(&p, &v, c->err)) != 0)
			return rc;
		s = (int64_t)v;
		if (p.pos - start != varint_len(v))
			return depart(c, start, "tensor field %u holds a padded varint", f->num);
		if (int32 && s != (int32_t)s)
			return depart(c, start, "tensor field %u holds %lld, not an int32: "
				      "ONNX Runtime reads only its low 32 bits", f->num, (long long)s);
		if (s < lo || s > hi)
			return depart(c, start, "tensor field %u holds %lld, outside the range of "
				      "the tensor's data type", f->num, (long long)s);
		(*count)++;
	}
	return 0;
}

/* The range a value of dtype takes in int32_data (sign-extended). */
static void int32_range(int32_t dtype, int64_t *lo, int64_t *hi)
{
	*lo = 0;
	switch (dtype) {
	case 9:                                  /* bool */
		*hi = 1;
		break;
	case 3:                                  /* int8 */
		*lo = -128, *hi = 127;
		break;
	case 5:                                  /* int16 */
		*lo = -32768, *hi = 32767;
		break;
	case 4: case 10: case 16:                /* uint16, float16, bfloat16 */
		*hi = 65535;
		break;
	case 6:                                  /* int32 */
		*lo = INT32_MIN, *hi = INT32_MAX;
		break;
	default:                                 /* uint8, float8, packed sub-byte */
		*hi = 255;
	}
}

/* A canonical external_data entry value: plain decimal, no sign, no
 * leading zero. */
static bool plain_decimal(const char *s)
{
	size_t i;

	if (!s[0] || (s[0] == '0' && s[1]) || strlen(s) > 19)
		return false;
	for (i = 0; s[i]; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* external_data: location, offset and length, once each and in that
 * order (as the ONNX helpers, torch and nexus write them), plain decimal
 * values; *length the length. */
static int check_external(struct canon *c, const struct nx_pb_reader *r, const struct nx_pb_field *fld,
			  int64_t *length)
{
	static const char *const keys[] = { "location", "offset", "length" };
	struct nx_pb_reader t = *r;
	struct nx_pb_field f;
	unsigned next = 0, k;
	int rc;

	*length = -1;
	t.pos = fld->tag_offset;
	LOOP_FIELDS(c, &t, &f, rc) {
		struct nx_pb_reader e;
		struct nx_pb_field ef;
		char *key = NULL, *val = NULL;

		if (f.num != 13)
			continue;
		if ((rc = nx_pb_sub(&e, &t, &f, c->err)) != 0)
			return rc;
		LOOP_FIELDS(c, &e, &ef, rc) {
			char **dst = ef.num == 1 ? &key : &val;

			free(*dst);
			*dst = NULL;
			if ((rc = nx_pb_read_string(&c->f, &ef, NX_ONNX_NAME_MAX, dst, NULL, c->err)))
				break;
		}
		k = next;
		if (!rc && (!key || !val || k == 3 || strcmp(key, keys[k]) ||
			    (k > 0 && !plain_decimal(val))))
			rc = depart(c, f.tag_offset, "external_data entry '%.64s' is not location, "
				    "offset, length (once each, in that order, plain decimal values)",
				    key ? key : "");
		else if (!rc && k == 2)
			*length = strtoll(val, NULL, 10);
		next = k + 1;
		free(key);
		free(val);
		if (rc)
			return rc;
	}
	if (rc)
		return rc;
	return next == 3 ? 0 : depart(c, fld->tag_offset, "external_data lacks its location, "
				      "offset or length");
}

/* TensorProto: exactly one payload, of exactly the size dims and
 * data_type give. */
static int check_tensor(struct canon *c, const struct nx_pb_reader *r,
			const struct nx_pb_field *fld, const struct seen *s)
{
	static const uint32_t payloads[] = { 4, 5, 6, 7, 9, 10, 11 };
	int32_t dtype = s->count[2] ? (int32_t)s->first[2].value : 0;
	size_t bits = nx_onnx_dtype_bits(dtype);
	unsigned width = 0;
	uint32_t typed = onnx_typed_field(dtype, &width), have = 0, i;
	uint64_t want, n = s->nelem;
	bool external = s->count[14] && s->first[14].value == 1;
	int64_t length;
	int rc;

	if (s->nelem_overflow)
		return depart(c, fld->tag_offset, "tensor has more than 2^64 elements");
	if (!s->count[2] || (!bits && dtype != 8))
		return depart(c, fld->tag_offset, "tensor has no known data_type");
	if (s->count[3])
		return depart(c, s->first[3].tag_offset, "tensor has a segment (split tensors "
			      "are not read by ONNX Runtime)");
	if (n == 0 && s->dims_big)
		return depart(c, fld->tag_offset, "an empty tensor has a dimension over %u",
			      NX_ONNX_DIM_VALUE_MAX);
	if (s->count[14] && s->first[14].value > 1)
		return depart(c, s->first[14].tag_offset, "tensor has an unknown data_location");
	if (external != (s->count[13] > 0))
		return depart(c, fld->tag_offset, "tensor has external_data without "
			      "data_location EXTERNAL, or the reverse");
	for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
		if (!s->count[payloads[i]])
			continue;
		if (have || external)
			return depart(c, s->first[payloads[i]].tag_offset, "tensor has a second "
				      "payload field (%u): ONNX Runtime reads only one",
				      payloads[i]);
		have = payloads[i];
	}
	/* the bytes the elements take: sub-byte types packed */
	want = bits && n > UINT64_MAX / bits ? UINT64_MAX : (n * bits + 7) / 8;
	if (external) {
		if ((rc = check_external(c, r, &s->first[13], &length)) != 0)
			return rc;
		if (length < 0 || (uint64_t)length != want)
			return depart(c, s->first[13].tag_offset, "external tensor's length is "
				      "not the %llu bytes its shape and type take",
				      (unsigned long long)want);
		return 0;
	}
	if (!have)
		return n == 0 ? 0 : depart(c, fld->tag_offset, "tensor of %llu elements has no "
					   "data", (unsigned long long)n);
	if (dtype == 8)
		return have == 6 && s->count[6] == n ? 0 :
		       depart(c, s->first[have].tag_offset, "string tensor does not hold exactly "
			      "one string per element");
	if (have == 9)
		return s->first[9].len == want ? 0 :
		       depart(c, s->first[9].tag_offset, "raw_data of %llu bytes where its shape "
			      "and type take %llu", (unsigned long long)s->first[9].len,
			      (unsigned long long)want);
	if (have != typed)
		return depart(c, s->first[have].tag_offset, "tensor field %u does not hold a %s",
			      have, nx_onnx_dtype_name(dtype));
	if (s->count[have] > 1)
		return depart(c, s->first[have].tag_offset, "tensor field %u is split into "
			      "several runs", have);
	/* one value per element (two for complex; per byte for sub-byte) */
	if (bits < 8)
		n = want;
	else if (dtype == 14 || dtype == 15)
		n *= 2;
	if (have == 4 || have == 10) {
		uint64_t per = have == 4 ? 4 : 8;

		return n <= UINT64_MAX / per && s->first[have].len == n * per ? 0 :
		       depart(c, s->first[have].tag_offset, "tensor field %u does not hold "
			      "exactly its %llu elements", have, (unsigned long long)n);
	} else {
		int64_t lo = INT64_MIN, hi = INT64_MAX;
		uint64_t count = 0;

		if (have == 5)
			int32_range(dtype, &lo, &hi);
		else if (have == 11 && dtype == 12)
			lo = 0, hi = UINT32_MAX;
		else if (have == 11)
			lo = INT64_MIN;
		if ((rc = packed_varints(c, r, &s->first[have], have == 5, lo, hi, &count)) != 0)
			return rc;
		return count == n ? 0 :
		       depart(c, s->first[have].tag_offset, "tensor field %u holds %llu values "
			      "for %llu elements", have, (unsigned long long)count,
			      (unsigned long long)n);
	}
}

/* AttributeProto.type -> the one value field it names. */
static uint32_t attr_value_field(uint64_t type)
{
	static const uint32_t fields[] = {
		[1] = 2, [2] = 3, [3] = 4, [4] = 5, [5] = 6, [6] = 7, [7] = 8, [8] = 9,
		[9] = 10, [10] = 11, [11] = 22, [12] = 23, [13] = 14, [14] = 15,
	};

	return type < sizeof(fields) / sizeof(fields[0]) ? fields[type] : 0;
}

/* AttributeProto: the value its type names and no other; lists short. */
static int check_attr(struct canon *c, const struct nx_pb_field *fld, const struct seen *s)
{
	static const uint32_t values[] = { 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 22, 23 };
	uint32_t want = s->count[20] ? attr_value_field(s->first[20].value) : 0, i;

	if (!want)
		return depart(c, fld->tag_offset, "attribute has no known type");
	for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		uint32_t v = values[i];

		if (v != want && s->count[v])
			return depart(c, s->first[v].tag_offset, "attribute of type %llu also has "
				      "field %u, which ONNX Runtime never reads",
				      (unsigned long long)s->first[20].value, v);
		if (v == want && s->count[v] > NX_ONNX_ATTR_LIST_MAX)
			return depart(c, s->first[v].tag_offset, "attribute list of %u values, over "
				      "the limit of %u: data belongs in an initializer", s->count[v],
				      NX_ONNX_ATTR_LIST_MAX);
	}
	/* a value is required unless the attribute refers to a function's */
	if (!s->count[want] && !s->count[21] && want != 7 && want != 8 && want != 9 &&
	    want != 10 && want != 11 && want != 15 && want != 23)
		return depart(c, fld->tag_offset, "attribute has no value");
	return 0;
}

/* Checks of a message once all its fields were seen. */
static int finish(struct canon *c, const struct nx_pb_reader *r, const struct nx_pb_field *fld,
		  enum msg type, const struct seen *s)
{
	switch (type) {
	case M_TENSOR:
		return check_tensor(c, r, fld, s);
	case M_ATTR:
		return check_attr(c, fld, s);
	case M_TYPE: {
		unsigned k = s->count[1] + s->count[4] + s->count[5] + s->count[7] +
			     s->count[8] + s->count[9];

		return k == 1 ? 0 : depart(c, fld->tag_offset, "type has %u values where "
					   "it takes one", k);
	}
	case M_DIM:
		if (s->count[1] + s->count[2] > 1)
			return depart(c, fld->tag_offset, "dimension has both a value and a "
				      "parameter");
		return 0;
	case M_GRAPH:
	case M_FUNCTION: {
		/* value_info describes values the nodes compute: no more of them */
		uint32_t infos = s->count[type == M_GRAPH ? 13 : 12];

		return infos <= s->first[0].value ? 0 :
		       depart(c, fld->tag_offset, "%u value_info entries for %llu node outputs",
			      infos, (unsigned long long)s->first[0].value);
	}
	default:
		return 0;
	}
}

/* One field of a message of type m: schema, wire form, order, value. */
static int walk_field(struct canon *c, const struct nx_pb_reader *r, enum msg type,
		      const struct nx_pb_field *f, uint32_t *last, struct seen *s, struct seen *up)
{
	const struct mspec *m = &specs[type];
	const struct fspec *fs = find_spec(m, f->num);
	int rc;

	if (!fs)
		return depart(c, f->tag_offset, "%s has field %u, unknown to ONNX", m->name, f->num);
	if (f->wire != wire_of(fs->kind))
		return depart(c, f->tag_offset, "%s field %u is written as %s, not %s", m->name,
			      f->num, nx_pb_wire_name(f->wire), nx_pb_wire_name(wire_of(fs->kind)));
	if ((rc = check_header(c, m, f)) != 0)
		return rc;
	if (f->num < *last || (f->num == *last && !fs->repeated))
		return depart(c, f->tag_offset, f->num == *last ?
			      "%s field %u is given twice: only the last is read" :
			      "%s field %u comes after field %u: not in field order", m->name,
			      f->num, *last);
	if (fs->kind == K_PACKED && f->len == 0)
		return depart(c, f->tag_offset, "%s field %u is an empty packed run", m->name,
			      f->num);
	*last = f->num;
	if (!s->count[f->num]++)
		s->first[f->num] = *f;
	if (fs->kind == K_INT32 && (int64_t)f->value != (int32_t)f->value)
		return depart(c, f->tag_offset, "%s field %u holds %lld, not an int32",
			      m->name, f->num, (long long)f->value);
	if (type == M_TENSOR && f->num == 1) {
		if (f->value > NX_ONNX_DIM_VALUE_MAX)
			s->dims_big++;
		if (f->value && s->nelem > UINT64_MAX / f->value)
			s->nelem_overflow = true;
		s->nelem *= f->value;
	}
	if (type == M_DIM && f->num == 1 && f->value > NX_ONNX_DIM_VALUE_MAX)
		return depart(c, f->tag_offset, "shape dimension %llu is over the limit of %u",
			      (unsigned long long)f->value, NX_ONNX_DIM_VALUE_MAX);
	if (type == M_SHAPE && s->count[1] > NX_ONNX_SHAPE_RANK_MAX)
		return depart(c, f->tag_offset, "shape of more than %u dimensions",
			      NX_ONNX_SHAPE_RANK_MAX);
	if (type == M_ATTR && (f->num == 7 || f->num == 8))
		c->out->list_bytes += f->num == 7 ? 4 : varint_len(f->value);
	/* node outputs, counted into the enclosing graph's first[0] */
	if (type == M_NODE && f->num == 2 && up)
		up->first[0].value++;
	if (type == M_FUNCTION && f->num == 5)
		s->first[0].value++;
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
		return nx_error_set(c->err, NX_ENOMEM, c->f.path, 0, -1, "out of memory");
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

int nx_onnx_canon_check(struct nx_onnx_canon *out, int fd, const char *path, nx_error *err)
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
	if ((rc = nx_pb_file_init(&c.f, fd, path, err)) != 0 ||
	    (rc = nx_pb_reader_init(&r, &c.f, 0, c.f.size, err)) != 0)
		goto out;
	if (!(s = calloc(1, sizeof(*s)))) {
		rc = nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
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
