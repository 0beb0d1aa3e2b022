/*
 * verify_ctx.c - lookups over the verifier's shared context (struct vfy_ctx)
 * that every check uses: a bundle file by path, the model's external-data
 * files, a forbidden term in a string.  Support for the checks and for
 * verify.c, which calls none of them back.
 */
#include "verify_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

long nx_vfy__find(const struct vfy_ctx *c, const char *path)
{
	size_t lo = 0, hi = c->nentries;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int d = strcmp(c->entries[mid].path, path);

		if (!d)
			return (long)mid;
		if (d < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static bool is_external(const struct nx_onnx_tensor *t)
{
	return t->location == NX_TENSOR_EXTERNAL && t->ext_location;
}

static int by_location(const void *a, const void *b, void *summary)
{
	const nx_onnx_summary *s = summary;

	return strcmp(s->tensors[*(const size_t *)a].ext_location,
		      s->tensors[*(const size_t *)b].ext_location);
}

int nx_vfy__external_by_file(size_t **out, size_t *nout, const nx_onnx_summary *s)
{
	size_t i, n = 0, *v;

	*out = NULL;
	*nout = 0;
	for (i = 0; i < s->ntensors; i++)
		n += is_external(&s->tensors[i]);
	if (!n)
		return 0;
	if (!(v = malloc(n * sizeof(*v))))
		return NX_ENOMEM;
	for (i = 0, n = 0; i < s->ntensors; i++)
		if (is_external(&s->tensors[i]))
			v[n++] = i;
	qsort_r(v, n, sizeof(*v), by_location, (void *)s);
	*out = v;
	*nout = n;
	return 0;
}

const char *nx_vfy__term_in(const struct vfy_ctx *c, const char *s, size_t len)
{
	size_t t;

	for (t = 0; t < c->nterms; t++)
		if (nx_scan_find(s, len, c->terms[t]) >= 0)
			return c->terms[t];
	return NULL;
}
