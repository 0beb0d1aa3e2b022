/*
 * export_ctx.c - what every part of the exporter does with its shared state
 * (struct ex): report out-of-memory and removals, read a name, judge a
 * name against the forbidden terms, keep or strip a metadata key.  Support
 * for export.c and its parts; it calls none of them.
 */
#include "export_int.h"

#include <stdlib.h>
#include <string.h>

#define LOOP(x, r, f, rc) while (((rc) = nx_pb_next((r), (f), (x)->err)) > 0 && ((rc) = 0) == 0)

int nx_export__oom(struct ex *x)
{
	return nx_error_set(x->err, NX_ENOMEM, x->path, 0, -1, "out of memory exporting %s",
			    x->path);
}

int nx_export__report(struct ex *x, enum nx_export_what what, const char *name, uint64_t bytes,
	      uint64_t offset)
{
	struct nx_export_result *r = x->res;
	struct nx_export_item *it;

	r->removed_bytes += bytes;
	if (r->nremoved >= NX_EXPORT_REPORT_MAX)
		return nx_error_set(x->err, NX_ELIMIT, x->path, 0, (long long)offset,
				    "%s: more than %u removals to report", x->path,
				    NX_EXPORT_REPORT_MAX);
	if (NX_ARRAY_PUSH(r->removed, x->cap_removed, r->nremoved))
		return nx_export__oom(x);
	it = &r->removed[r->nremoved];
	if (!(it->name = strdup(name ? name : "")))
		return nx_export__oom(x);
	it->what = what;
	it->bytes = bytes;
	it->offset = offset;
	r->nremoved++;
	return 0;
}

/* A name field, read into *out (replacing it). */
int nx_export__read_name(struct ex *x, const struct nx_pb_field *f, char **out)
{
	size_t len = 0;
	int rc;

	if (f->wire != NX_PB_LEN)
		return nx_error_set(x->err, NX_EFORMAT, x->path, 0, (long long)f->tag_offset,
				    "%s: field %u is not a string: not a valid ONNX model",
				    x->path, f->num);
	free(*out);
	*out = NULL;
	if ((rc = nx_pb_read_string(&x->f, f, 0, out, &len, x->err)) != 0)
		return rc;
	/* A NUL inside a name ends it for C readers and not for protobuf ones;
	 * the term check and ONNX Runtime must see the same name. */
	if (memchr(*out, '\0', len))
		return nx_error_set(x->err, NX_EFORMAT, x->path, 0, (long long)f->tag_offset,
				    "%s: a name (field %u) holds a NUL byte: not a valid ONNX model",
				    x->path, f->num);
	return 0;
}

const char *nx_export__term_of(const struct ex *x, const char *name)
{
	size_t i;

	for (i = 0; i < x->nterms; i++)
		if (nx_scan_find(name, strlen(name), x->terms[i]) >= 0)
			return x->terms[i];
	return NULL;
}

int nx_export__check_term(struct ex *x, const char *what, const char *name, uint64_t offset)
{
	const char *term = nx_export__term_of(x, name);

	if (term)
		return nx_error_set(x->err, NX_ECHECK, x->path, 0, (long long)offset,
				    "%s: the exported student still holds %s '%s', "
				    "which names '%s': it depends on a teacher part; "
				    "list only student outputs in student.outputs",
				    x->path, what, name, term);
	return 0;
}

bool nx_export__keep_meta(struct ex *x, const char *key)
{
	size_t i;

	if (!x->o->strip_metadata)
		return true;
	for (i = 0; i < x->o->nmetadata_keep; i++)
		if (!strcmp(x->o->metadata_keep[i], key))
			return true;
	return false;
}

/*
 * Read the string fields na and nb (0: none) of the sub-message fld into *a
 * and *b (NULL when absent; the caller frees both, also on error).  Other
 * fields are skipped.
 */
int nx_export__read_strings(struct ex *x, const struct nx_pb_reader *parent,
		    const struct nx_pb_field *fld, unsigned na, char **a, unsigned nb, char **b)
{
	struct nx_pb_reader r;
	struct nx_pb_field f;
	int rc;

	if ((rc = nx_pb_sub(&r, parent, fld, x->err)) != 0)
		return rc;
	LOOP(x, &r, &f, rc) {
		if (f.num == na)
			rc = nx_export__read_name(x, &f, a);
		else if (nb && f.num == nb)
			rc = nx_export__read_name(x, &f, b);
		if (rc)
			break;
	}
	return rc;
}

/* Here, not in export.c, because quant.c names them in its errors. */
const char *const nx_export_quantize_names[] = { "none", "int8", "int4", "fp16", NULL };
