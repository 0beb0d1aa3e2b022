/* onnx_tensor.c - walkers of TensorProto, SparseTensorProto, ValueInfoProto
 * and TypeProto.  Tensor payloads are located, never read. */
#include "onnx_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define LOOP_FIELDS(w, r, fld, rc) while (((rc) = nx_pb_next((r), (fld), (w)->err)) > 0)

void nx_onnx__tensor_release(struct nx_onnx_tensor *t)
{
	free(t->name);
	free(t->dims);
	free(t->ext_location);
	free(t->scope);
	memset(t, 0, sizeof(*t));
}

void nx_onnx__value_release(struct nx_onnx_value *v)
{
	size_t i;

	free(v->name);
	free(v->dims);
	if (v->dim_params)
		for (i = 0; i < v->ndims; i++)
			free(v->dim_params[i]);
	free(v->dim_params);
	memset(v, 0, sizeof(*v));
}

/* A repeated scalar field, packed (LEN) or not (`wire`). */
static int expect_repeated(struct walk *w, const struct nx_pb_field *f, enum nx_pb_wire wire)
{
	return f->wire == NX_PB_LEN ? 0 : nx_onnx__walk_expect(w, f, wire);
}

/* Append the varint(s) of a dims field (packed or not) to *dims. */
static int read_dims(struct walk *w, const struct nx_pb_reader *r, const struct nx_pb_field *f,
		     int64_t **dims, size_t *ndims)
{
	struct nx_pb_reader p;
	uint64_t v = f->value;
	int rc;

	if ((rc = expect_repeated(w, f, NX_PB_VARINT)) != 0)
		return rc;
	if (f->wire == NX_PB_LEN && (rc = nx_pb_sub(&p, r, f, w->err)) != 0)
		return rc;
	do {
		if (f->wire == NX_PB_LEN) {
			if (p.pos >= p.end)
				break;
			if ((rc = nx_pb_read_varint(&p, &v, w->err)) != 0)
				return rc;
		}
		if ((int64_t)v < 0)
			return nx_error_set(w->err, NX_EFORMAT, w->f.path, 0,
					    (long long)f->tag_offset,
					    "tensor dimension %lld is negative", (long long)v);
		if (*ndims >= NX_ONNX_DIMS_MAX)
			return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0,
					    (long long)f->tag_offset,
					    "tensor has more than %d dimensions", NX_ONNX_DIMS_MAX);
		if (NX_ARRAY_PUSH_EXACT(*dims, *ndims))
			return nx_error_oom(w->err, w->f.path);
		(*dims)[(*ndims)++] = (int64_t)v;
	} while (f->wire == NX_PB_LEN);
	return 0;
}

static int parse_int(struct walk *w, const struct nx_pb_field *f, const char *s, int64_t *out)
{
	char *end = NULL;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (!s[0] || *end || errno || v < 0)
		return nx_error_set(w->err, NX_EFORMAT, w->f.path, 0, (long long)f->tag_offset,
				    "external_data value '%.64s' is not a byte count", s);
	*out = v;
	return 0;
}

static int read_external(struct walk *w, const struct nx_pb_reader *r, const struct nx_pb_field *f,
			 struct nx_onnx_tensor *t)
{
	char *key = NULL, *value = NULL;
	int rc;

	if ((rc = nx_onnx__walk_kv(w, r, f, NX_ONNX_OTHER, NX_ONNX_OTHER, &key, &value)) != 0)
		goto out;
	if (!key || !value)
		goto out;
	if (!strcmp(key, "location")) {
		free(t->ext_location);
		t->ext_location = value;
		value = NULL;
	} else if (!strcmp(key, "offset")) {
		rc = parse_int(w, f, value, &t->ext_offset);
	} else if (!strcmp(key, "length")) {
		rc = parse_int(w, f, value, &t->ext_length);
	}
out:
	free(key);
	free(value);
	return rc;
}

/* The occurrences of one payload field of a TensorProto. */
struct typed {
	unsigned count;
	struct nx_pb_field field;   /* the first (raw_data: the last) */
};

/*
 * Where t's contents are (nx_onnx_tensor.contents_*): raw_data wins, as it
 * does for ONNX Runtime; else the typed field of the data type.  They are
 * verbatim only when one packed run of 4- or 8-byte values holds them.
 */
static void locate_contents(struct nx_onnx_tensor *t, const struct typed *runs)
{
	unsigned width = 0;
	uint32_t num = nx_onnx__typed_field(t->data_type, &width);
	const struct typed *k = runs[9].count ? &runs[9] : num ? &runs[num] : NULL;

	t->contents_encoded = false;
	t->contents_offset = t->contents_length = 0;
	if (!k || !k->count)
		return;
	if (k == &runs[9] ||
	    ((num == 4 || num == 10) && k->count == 1 && k->field.wire == NX_PB_LEN)) {
		t->contents_offset = k->field.offset;
		t->contents_length = k->field.len;
		return;
	}
	t->contents_encoded = true;
}

/* Fill *t from a TensorProto; payload fields are only located. */
static int read_tensor(struct walk *w, const struct nx_pb_reader *parent,
		       const struct nx_pb_field *fld, struct nx_onnx_tensor *t)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct typed runs[12] = {{0}};
	uint64_t first = 0, last = 0, nstr = 0, n = 1;
	bool any = false, external = false;
	size_t i;
	int rc;

	t->ext_offset = t->ext_length = -1;
	t->msg_offset = fld->offset;
	t->msg_length = fld->len;
	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		bool payload = true;

		switch (f.num) {
		case 1:
			payload = false;
			rc = read_dims(w, &r, &f, &t->dims, &t->ndims);
			break;
		case 2:
			payload = false;
			if (!(rc = nx_onnx__walk_expect(w, &f, NX_PB_VARINT)))
				t->data_type = (int32_t)f.value;
			break;
		case 4:
			rc = expect_repeated(w, &f, NX_PB_I32);
			break;
		case 5: case 7: case 11:
			rc = expect_repeated(w, &f, NX_PB_VARINT);
			break;
		case 10:
			rc = expect_repeated(w, &f, NX_PB_I64);
			break;
		case 9:
			rc = nx_onnx__walk_expect(w, &f, NX_PB_LEN);
			break;
		case 6:
			/* a visitor must see every string or none can be vouched for */
			if (nstr++ < NX_ONNX_VISIT_STRINGS_MAX)
				rc = nx_onnx__walk_string(w, &f, NX_ONNX_TENSOR_STRING, 0, NULL);
			else if (w->fn)
				rc = nx_error_set(w->err, NX_ELIMIT, w->f.path, 0,
						  (long long)f.tag_offset,
						  "a string tensor has more than %u elements: not all "
						  "of them can be scanned", NX_ONNX_VISIT_STRINGS_MAX);
			else
				rc = nx_onnx__walk_expect(w, &f, NX_PB_LEN);
			break;
		default:
			payload = false;
			switch (f.num) {
			case 8:
				rc = nx_onnx__walk_string(w, &f, NX_ONNX_TENSOR_NAME, NX_ONNX_NAME_MAX,
						 &t->name);
				break;
			case 13:
				rc = read_external(w, &r, &f, t);
				break;
			case 14:
				if (!(rc = nx_onnx__walk_expect(w, &f, NX_PB_VARINT)))
					external = f.value == 1;
				break;
			case 3: {
				/* Segment: begin = 1, end = 2 */
				struct nx_pb_reader s;
				struct nx_pb_field sf;

				if ((rc = nx_pb_sub(&s, &r, &f, w->err)) != 0)
					break;
				LOOP_FIELDS(w, &s, &sf, rc) {
					if (sf.num == 1 || sf.num == 2)
						rc = nx_onnx__walk_expect(w, &sf, NX_PB_VARINT);
					else
						rc = nx_onnx__walk_unknown(w, &sf);
					if (rc)
						break;
				}
				break;
			}
			default:
				rc = nx_onnx__walk_common(w, &r, &f, 12, 16);
			}
		}
		if (rc)
			return rc;
		if (payload) {
			if (!any)
				first = f.offset;
			any = true;
			last = f.offset + f.len;
			if (f.num < sizeof(runs) / sizeof(runs[0]) && !runs[f.num].count++)
				runs[f.num].field = f;
			if (f.num == 9)
				runs[9].field = f;   /* raw_data: the last one is the one read */
		}
	}
	if (rc)
		return rc;
	locate_contents(t, runs);
	for (i = 0; i < t->ndims; i++) {
		uint64_t d = (uint64_t)t->dims[i];

		if (d && n > UINT64_MAX / d)
			return nx_error_set(w->err, NX_EFORMAT, w->f.path, 0,
					    (long long)fld->tag_offset,
					    "tensor '%.128s' has more than 2^64 elements",
					    t->name ? t->name : "");
		n *= d;
	}
	t->nelem = n;
	/* external_data without data_location = EXTERNAL still names a file
	 * outside the model: report it rather than trust the flag */
	if (external || t->ext_location)
		t->location = NX_TENSOR_EXTERNAL;
	if (any) {
		t->data_offset = first;
		t->data_length = last - first;
	}
	return 0;
}

static uint64_t tensor_bytes(const struct nx_onnx_tensor *t)
{
	if (t->location == NX_TENSOR_INLINE)
		return t->data_length;
	if (t->ext_length >= 0)
		return (uint64_t)t->ext_length;
	return t->nelem * nx_onnx_dtype_size(t->data_type);
}

/* Move *t into the summary. */
static int push(struct walk *w, struct nx_onnx_tensor *t, uint32_t graph)
{
	nx_onnx_summary *s = w->sum;
	int rc;

	if ((rc = nx_onnx__walk_grow(w, (void **)&s->tensors, &w->cap_tensors, s->ntensors,
			    sizeof(*t), NX_ONNX_TENSORS_MAX)) != 0 ||
	    (rc = nx_onnx__walk_grow(w, (void **)&w->tensor_graph, &w->cap_tg, s->ntensors,
			    sizeof(uint32_t), NX_ONNX_TENSORS_MAX)) != 0)
		return rc;
	if (!t->name && !(t->name = strdup("")))
		return nx_error_oom(w->err, w->f.path);
	if (!(t->scope = strdup(w->scope)))
		return nx_error_oom(w->err, w->f.path);
	t->referenced = t->attribute;
	if (!t->attribute)
		s->parameters += t->nelem;
	s->weight_bytes += tensor_bytes(t) + t->sparse_index_bytes;
	w->tensor_graph[s->ntensors] = graph;
	s->tensors[s->ntensors++] = *t;
	memset(t, 0, sizeof(*t));
	return 0;
}

int nx_onnx__walk_tensor(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
		uint32_t graph, bool attribute)
{
	struct nx_onnx_tensor t;
	int rc;

	memset(&t, 0, sizeof(t));
	t.attribute = attribute;
	if (!(rc = read_tensor(w, parent, fld, &t)))
		rc = push(w, &t, graph);
	nx_onnx__tensor_release(&t);
	return rc;
}

/* SparseTensorProto: values = 1, indices = 2, dims = 3.  Recorded as one
 * tensor with the dense shape, holding the values' element count. */
int nx_onnx__walk_sparse(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
		uint32_t graph, bool attribute)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct nx_onnx_tensor vals, idx;
	int64_t *dims = NULL;
	size_t ndims = 0;
	unsigned seen_vals = 0, seen_idx = 0;
	int rc;

	memset(&vals, 0, sizeof(vals));
	memset(&idx, 0, sizeof(idx));
	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		/* protobuf would merge a second values/indices into the first */
		if ((f.num == 1 && seen_vals++) || (f.num == 2 && seen_idx++)) {
			rc = nx_error_set(w->err, NX_EFORMAT, w->f.path, 0, (long long)f.tag_offset,
					  "sparse tensor has field %u twice: not a valid ONNX model",
					  f.num);
			goto out;
		}
		if (f.num == 1) {
			rc = read_tensor(w, &r, &f, &vals);
		} else if (f.num == 2) {
			rc = read_tensor(w, &r, &f, &idx);
		} else if (f.num == 3) {
			rc = read_dims(w, &r, &f, &dims, &ndims);
		} else {
			rc = nx_onnx__walk_unknown(w, &f);
		}
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	free(vals.dims);
	vals.dims = dims;
	vals.ndims = ndims;
	dims = NULL;
	vals.sparse = true;
	vals.attribute = attribute;
	vals.sparse_index_bytes = tensor_bytes(&idx);
	rc = push(w, &vals, graph);
out:
	free(dims);
	nx_onnx__tensor_release(&vals);
	nx_onnx__tensor_release(&idx);
	return rc;
}

/* TensorShapeProto.Dimension: dim_value = 1, dim_param = 2, denotation = 3. */
static int read_dim(struct walk *w, const struct nx_pb_reader *parent,
		    const struct nx_pb_field *fld, struct nx_onnx_value *v)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	int64_t *dims;
	char **params;
	size_t k = v->ndims;
	int rc;

	if (k >= NX_ONNX_DIMS_MAX)
		return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0, (long long)fld->tag_offset,
				    "value has more than %d dimensions", NX_ONNX_DIMS_MAX);
	if (NX_ARRAY_PUSH_EXACT(v->dims, k) || NX_ARRAY_PUSH_EXACT(v->dim_params, k))
		return nx_error_oom(w->err, w->f.path);
	dims = v->dims;
	params = v->dim_params;
	dims[k] = -1;
	params[k] = NULL;
	v->ndims++;
	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		if (f.num == 1 && !(rc = nx_onnx__walk_expect(w, &f, NX_PB_VARINT)))
			dims[k] = (int64_t)f.value < 0 ? -1 : (int64_t)f.value;
		else if (f.num == 2)
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_OTHER, NX_ONNX_NAME_MAX, &params[k]);
		else if (f.num == 3)
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_OTHER, 0, NULL);
		else if (f.num != 1)
			rc = nx_onnx__walk_unknown(w, &f);
		if (rc)
			return rc;
	}
	return rc;
}

/* TypeProto.Tensor / SparseTensor: elem_type = 1, shape = 2 (dim = 1). */
static int read_tensor_type(struct walk *w, const struct nx_pb_reader *parent,
			    const struct nx_pb_field *fld, struct nx_onnx_value *v)
{
	struct nx_pb_reader r, s;
	struct nx_pb_field f, sf;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		if (f.num == 1 && !(rc = nx_onnx__walk_expect(w, &f, NX_PB_VARINT))) {
			v->elem_type = (int32_t)f.value;
		} else if (f.num == 2 && !(rc = nx_pb_sub(&s, &r, &f, w->err))) {
			v->has_shape = true;
			LOOP_FIELDS(w, &s, &sf, rc) {
				rc = sf.num == 1 ? read_dim(w, &s, &sf, v) : nx_onnx__walk_unknown(w, &sf);
				if (rc)
					break;
			}
		} else if (f.num != 1 && f.num != 2) {
			rc = nx_onnx__walk_unknown(w, &f);
		}
		if (rc)
			return rc;
	}
	return rc;
}

/* A message whose only field 1 is a TypeProto (Sequence, Optional). */
static int read_elem_type(struct walk *w, const struct nx_pb_reader *parent,
			  const struct nx_pb_field *fld, uint32_t type_field)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		if (f.num == type_field)
			rc = nx_onnx__walk_type(w, &r, &f, NULL);
		else if (type_field == 2 && f.num == 1)  /* Map.key_type */
			rc = nx_onnx__walk_expect(w, &f, NX_PB_VARINT);
		else if (type_field == 0 && (f.num == 1 || f.num == 2))  /* Opaque */
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_OTHER, 0, NULL);
		else
			rc = nx_onnx__walk_unknown(w, &f);
		if (rc)
			return rc;
	}
	return rc;
}

int nx_onnx__walk_type(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	      struct nx_onnx_value *out)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	struct nx_onnx_value tmp;
	struct nx_onnx_value *v = out ? out : &tmp;
	int rc;

	memset(&tmp, 0, sizeof(tmp));
	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		switch (f.num) {
		case 1: case 8:
			rc = read_tensor_type(w, &r, &f, v);
			break;
		case 4: case 9:
			rc = read_elem_type(w, &r, &f, 1);
			break;
		case 5:
			rc = read_elem_type(w, &r, &f, 2);
			break;
		case 7:
			rc = read_elem_type(w, &r, &f, 0);
			break;
		case 6:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_OTHER, 0, NULL);
			break;
		default:
			rc = nx_onnx__walk_unknown(w, &f);
		}
		if (rc)
			break;
	}
	nx_onnx__value_release(&tmp);
	return rc;
}

/* ValueInfoProto: name = 1, type = 2, doc_string = 3, metadata_props = 4. */
int nx_onnx__walk_value(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	       struct nx_onnx_value *out)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	size_t i;
	bool symbolic = false;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		switch (f.num) {
		case 1:
			rc = nx_onnx__walk_string(w, &f, NX_ONNX_VALUE_NAME, NX_ONNX_NAME_MAX,
					 out ? &out->name : NULL);
			break;
		case 2:
			rc = nx_onnx__walk_type(w, &r, &f, out);
			break;
		default:
			rc = nx_onnx__walk_common(w, &r, &f, 3, 4);
		}
		if (rc)
			return rc;
	}
	if (rc || !out)
		return rc;
	for (i = 0; i < out->ndims; i++)
		symbolic |= out->dim_params[i] != NULL;
	if (!symbolic) {
		free(out->dim_params);
		out->dim_params = NULL;
	}
	if (!out->name && !(out->name = strdup("")))
		return nx_error_oom(w->err, w->f.path);
	return 0;
}
