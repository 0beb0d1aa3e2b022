/*
 * onnx_field.c - the string/field helpers every walker shares (onnx_walk.c
 * for graphs, nodes and functions, onnx_tensor.c for tensors and types):
 * unknown fields, wire checks, strings, key/value entries, doc strings and
 * the scope that labels findings.  They call no walker.
 */
#include "onnx_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOOP_FIELDS(w, r, fld, rc) while (((rc) = nx_pb_next((r), (fld), (w)->err)) > 0)

int walk_unknown(struct walk *w, const struct nx_pb_field *fld)
{
	if (w->sum->unknown_fields++ == 0)
		w->sum->first_unknown_offset = (int64_t)fld->tag_offset;
	return 0;
}

int walk_expect(struct walk *w, const struct nx_pb_field *fld, enum nx_pb_wire wire)
{
	if (fld->wire == wire)
		return 0;
	return nx_error_set(w->err, NX_EFORMAT, w->f.path, 0, (long long)fld->tag_offset,
			    "field %u is a %s where a %s was expected: not a valid ONNX model",
			    fld->num, nx_pb_wire_name(fld->wire), nx_pb_wire_name(wire));
}

/*
 * A string field: visited with `kind` when there is a visitor, returned in
 * *out (caller frees) when out is not NULL.  Without either nothing is read.
 */
int walk_string(struct walk *w, const struct nx_pb_field *fld, enum nx_onnx_str_kind kind,
		size_t max, char **out)
{
	char *s = NULL;
	size_t len = 0;
	int rc;

	if ((rc = walk_expect(w, fld, NX_PB_LEN)) != 0)
		return rc;
	if (!out && !w->fn)
		return 0;
	if ((rc = nx_pb_read_string(&w->f, fld, w->fn ? NX_PB_STRING_MAX : max, &s, &len,
				    w->err)) != 0)
		return rc;
	if (out && len > max) {
		free(s);
		return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0, (long long)fld->tag_offset,
				    "name of %zu bytes is over the limit of %zu bytes", len, max);
	}
	if (w->fn && (rc = w->fn(w->ctx, kind, s, len, fld->offset, w->scope)) != 0) {
		w->stop_rc = rc;
		free(s);
		return WALK_STOP;
	}
	if (out) {
		if (w->held + len + NX_ONNX_HELD_OVERHEAD > NX_ONNX_HELD_MAX) {
			free(s);
			return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0, -1,
					    "the model's names exceed %u bytes", NX_ONNX_HELD_MAX);
		}
		w->held += len + NX_ONNX_HELD_OVERHEAD;
		free(*out);
		*out = s;
	} else {
		free(s);
	}
	return 0;
}

/* StringStringEntryProto: key = 1, value = 2. */
int walk_kv(struct walk *w, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
	    enum nx_onnx_str_kind kkind, enum nx_onnx_str_kind vkind, char **key, char **value)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, w->err)) != 0)
		return rc;
	LOOP_FIELDS(w, &r, &f, rc) {
		if (f.num == 1)
			rc = walk_string(w, &f, kkind, NX_PB_STRING_MAX, key);
		else if (f.num == 2)
			rc = walk_string(w, &f, vkind, NX_PB_STRING_MAX, value);
		else
			rc = walk_unknown(w, &f);
		if (rc)
			return rc;
	}
	return rc;
}

int walk_common(struct walk *w, const struct nx_pb_reader *r, const struct nx_pb_field *f,
		uint32_t doc_num, uint32_t meta_num)
{
	if (f->num == doc_num)
		return walk_string(w, f, NX_ONNX_DOC, 0, NULL);
	if (meta_num && f->num == meta_num)
		return walk_kv(w, r, f, NX_ONNX_META_KEY, NX_ONNX_META_VALUE, NULL, NULL);
	return walk_unknown(w, f);
}

size_t scope_push(struct walk *w, const char *fmt, ...)
{
	size_t len = strlen(w->scope);
	va_list ap;

	va_start(ap, fmt);
	/* a scope too long is cut: it only labels findings */
	vsnprintf(w->scope + len, sizeof(w->scope) - len, fmt, ap);
	va_end(ap);
	return len;
}

void scope_pop(struct walk *w, size_t len)
{
	w->scope[len] = '\0';
}
