/*
 * verify_size.c - check `size` (TRV-4): the model (with its external data)
 * is within the configured threshold, and its bytes are explained by its
 * parameters: parameter count x dtype width, plus the slack, plus a fixed
 * allowance for the graph's structure.  Anything more is data that no
 * tensor accounts for - another model hidden in doc strings, attributes or
 * unknown fields.
 */
#include "verify_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK NX_CHECK_SIZE
#define STRUCTURE_ALLOWANCE (64u << 10)   /* bytes: model header, opsets, metadata */
#define NODE_ALLOWANCE 1024u              /* bytes per node: names, edges, attributes */
/* Bytes of Constant-node (attribute) tensors explained without being
 * parameters: exporters emit shapes and scalars that way, not weights. */
#define CONSTANT_ALLOWANCE (64u << 10)
/*
 * Bytes tensor t explains: exactly what its canonical encoding takes
 * (nx_onnx_canon_check): its elements at their type's width (sub-byte
 * types packed), or, for typed varints, the bytes the weights check
 * proved to be their shortest encoding.  A float tensor of 2 elements
 * with 40 KiB of raw_data explains 8 bytes; string tensors explain
 * nothing (data, not parameters).
 */
static uint64_t tensor_explained(const struct nx_onnx_tensor *t)
{
	size_t bits = nx_onnx_dtype_bits(t->data_type);
	uint64_t b, exact;

	if (t->location == NX_TENSOR_INLINE)
		b = t->data_length;
	else if (t->ext_length >= 0)
		b = (uint64_t)t->ext_length;
	else
		b = t->nelem * nx_onnx_dtype_size(t->data_type);
	if (!bits)
		return t->sparse_index_bytes < b ? t->sparse_index_bytes : b;
	if (t->location == NX_TENSOR_INLINE && t->contents_encoded && !t->sparse)
		return b;   /* varints: their length was checked canonical */
	exact = t->nelem > (UINT64_MAX - 7) / bits ? UINT64_MAX : (t->nelem * bits + 7) / 8;
	if (t->sparse)
		exact = exact > UINT64_MAX - t->sparse_index_bytes ? UINT64_MAX :
			exact + t->sparse_index_bytes;
	b += t->sparse_index_bytes;
	return b < exact ? b : exact;
}

/* An initializer (not an attribute tensor) whose data is in a file. */
static bool external_param(const struct nx_onnx_tensor *t)
{
	return !t->attribute && t->location == NX_TENSOR_EXTERNAL && t->ext_location;
}

/* Size of the bundle file model/<loc>, or UINT64_MAX when there is none. */
static uint64_t data_file_size(const struct vfy_ctx *c, const char *loc)
{
	char path[NX_MANIFEST_PATH_MAX + 8];
	long k;

	if ((size_t)snprintf(path, sizeof(path), "model/%s", loc) >= sizeof(path) ||
	    (k = nx_vfy__find(c, path)) < 0)
		return UINT64_MAX;
	return c->entries[k].size;
}

/*
 * *total: bytes on disk of the model and of each distinct external data
 * file.  *explained: bytes the tensors explain (tensor_explained); the
 * external initializers of one file never more than the file holds - two
 * tensors reading the same range explain it once, else aliases would make
 * room for data hidden elsewhere in the model.  Attribute tensors, which
 * the manifest's parameter count leaves out, only explain up to
 * CONSTANT_ALLOWANCE in all - else 4 MiB of weights in a Constant node,
 * used and multiplied by zero, would be explained without being declared
 * as parameters.
 */
static int measure(uint64_t *total, uint64_t *explained, const struct vfy_ctx *c,
		   const nx_onnx_summary *s)
{
	uint64_t params = 0, attr = 0;
	size_t *ext = NULL, n, i, j;
	int rc;

	if ((rc = nx_vfy__external_by_file(&ext, &n, s)) != 0)
		return rc;
	*total = s->file_size;
	for (i = 0; i < s->ntensors; i++) {
		if (s->tensors[i].attribute)
			attr += tensor_explained(&s->tensors[i]);
		else if (!external_param(&s->tensors[i]))
			params += tensor_explained(&s->tensors[i]);
	}
	for (i = 0; i < n; i = j) {
		const char *loc = s->tensors[ext[i]].ext_location;
		uint64_t file = data_file_size(c, loc), sum = 0;

		for (j = i; j < n && !strcmp(s->tensors[ext[j]].ext_location, loc); j++)
			if (external_param(&s->tensors[ext[j]]))
				sum += tensor_explained(&s->tensors[ext[j]]);
		if (file != UINT64_MAX)
			*total += file;
		params += sum < file ? sum : file;
	}
	free(ext);
	/* list attributes (a Constant's value_floats) are tensor data too */
	attr += c->list_bytes;
	*explained = params + (attr < CONSTANT_ALLOWANCE ? attr : CONSTANT_ALLOWANCE);
	return 0;
}

int nx_vfy__size(struct vfy_ctx *c, bool *skipped, nx_error *err)
{
	const nx_onnx_summary *s;
	uint64_t total, max, explained, limit;
	double slack = c->pol.size_slack;   /* the policy's, tightened by options */
	char human[32];
	int rc = 0;

	if (!c->onnx) {
		*skipped = true;   /* weights reported why */
		return 0;
	}
	s = nx_onnx_summary_get(c->onnx);
	if (measure(&total, &explained, c, s) != 0)
		return nx_error_oom(err, NULL);
	max = c->pol.max_model_bytes;
	if (total > max) {
		char a[NX_SIZE_STR_MAX], b[NX_SIZE_STR_MAX];

		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_MODEL_TOO_LARGE, NX_MODEL_PATH, 0,
				   "the model is %s (%llu bytes), over the threshold of %s "
				   "(limits.max_model_bytes in nexus.yaml, or --max-model-bytes): a "
				   "larger (teacher?) model may have been packaged",
				   nx_size_str(a, (unsigned long long)total), (unsigned long long)total,
				   nx_size_str(b, (unsigned long long)max));
	}
	limit = (uint64_t)((double)explained * (1.0 + slack)) + STRUCTURE_ALLOWANCE +
		(uint64_t)NODE_ALLOWANCE * s->nnodes;
	if (!rc && total > limit)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_MODEL_SIZE_UNEXPLAINED, NX_MODEL_PATH, 0,
				   "the model is %llu bytes but its %llu parameters explain %llu bytes "
				   "(limit with %.0f%% slack and graph allowance: %llu): extra bytes "
				   "mean extra tensors or hidden data", (unsigned long long)total,
				   (unsigned long long)s->parameters, (unsigned long long)explained,
				   slack * 100.0, (unsigned long long)limit);
	nx_human_count(human, sizeof(human), s->parameters);
	if (!rc && c->m && c->m->parameters && strcmp(c->m->parameters, human))
		rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, NX_F_PARAMETERS_MISMATCH, NX_MANIFEST_NAME, 0,
				   "the manifest says %s parameters, the model has %s (%llu)",
				   c->m->parameters, human, (unsigned long long)s->parameters);
	return rc;
}
