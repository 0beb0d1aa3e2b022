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
#include <string.h>

#define CHECK NX_CHECK_SIZE
#define STRUCTURE_ALLOWANCE (64u << 10)   /* bytes: model header, opsets, metadata */
#define NODE_ALLOWANCE 1024u              /* bytes per node: names, edges, attributes */

/* Bytes on disk of the model and of each distinct external data file. */
static uint64_t model_bytes(const struct vfy_ctx *c, const nx_onnx_summary *s)
{
	uint64_t total = s->file_size;
	size_t i, j;

	for (i = 0; i < s->ntensors; i++) {
		const char *loc = s->tensors[i].ext_location;
		char path[NX_MANIFEST_PATH_MAX + 8];
		bool seen = false;
		long k;

		if (s->tensors[i].location != NX_TENSOR_EXTERNAL || !loc)
			continue;
		for (j = 0; j < i && !seen; j++)
			seen = s->tensors[j].location == NX_TENSOR_EXTERNAL && s->tensors[j].ext_location &&
			       !strcmp(s->tensors[j].ext_location, loc);
		if (seen || (size_t)snprintf(path, sizeof(path), "model/%s", loc) >= sizeof(path))
			continue;
		k = vfy_find(c, path);
		if (k >= 0)
			total += c->entries[k].size;
	}
	return total;
}

int vfy_size(struct vfy_ctx *c, bool *skipped, nx_error *err)
{
	const nx_onnx_summary *s;
	uint64_t total, max, explained, limit;
	double slack = c->opts->size_slack >= 0 ? c->opts->size_slack : NX_VERIFY_SIZE_SLACK;
	char human[32];
	int rc = 0;

	if (!c->onnx) {
		*skipped = true;   /* weights reported why */
		return 0;
	}
	s = nx_onnx_summary_get(c->onnx);
	total = model_bytes(c, s);
	max = c->opts->max_model_bytes ? c->opts->max_model_bytes : NX_VERIFY_MAX_MODEL_BYTES;
	if (total > max)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, "model-too-large", NX_MODEL_PATH, 0,
				   "the model is %llu bytes, over the threshold of %llu bytes: a larger "
				   "(teacher?) model may have been packaged", (unsigned long long)total,
				   (unsigned long long)max);
	explained = s->weight_bytes;
	limit = (uint64_t)((double)explained * (1.0 + slack)) + STRUCTURE_ALLOWANCE +
		(uint64_t)NODE_ALLOWANCE * s->nnodes;
	if (!rc && total > limit)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, "model-size-unexplained", NX_MODEL_PATH, 0,
				   "the model is %llu bytes but its %llu parameters explain %llu bytes "
				   "(limit with %.0f%% slack and graph allowance: %llu): extra bytes "
				   "mean extra tensors or hidden data", (unsigned long long)total,
				   (unsigned long long)s->parameters, (unsigned long long)explained,
				   slack * 100.0, (unsigned long long)limit);
	nx_human_count(human, sizeof(human), s->parameters);
	if (!rc && c->m && c->m->parameters && strcmp(c->m->parameters, human))
		rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, "parameters-mismatch", NX_MANIFEST_NAME, 0,
				   "the manifest says %s parameters, the model has %s (%llu)",
				   c->m->parameters, human, (unsigned long long)s->parameters);
	return rc;
}
