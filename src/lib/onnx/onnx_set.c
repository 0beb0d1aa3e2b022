/* onnx_set.c - the keyed string set (strset_int.h) and array growth under
 * the walk's memory caps. */
#include "onnx_int.h"

#include <stdlib.h>
#include <string.h>

bool nx_onnx__strset_has(const struct strset *s, const char *str)
{
	return nx_strset_has(s, str);
}

/* nx_strset_add under the walk's cap on the bytes of names it keeps. */
int nx_onnx__strset_add(struct walk *w, struct strset *s, const char *str)
{
	size_t len = strlen(str);

	if (nx_strset_has(s, str))
		return 0;
	if (w->held + len + NX_ONNX_HELD_OVERHEAD > NX_ONNX_HELD_MAX)
		return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0, -1,
				    "the model's names exceed %u bytes", NX_ONNX_HELD_MAX);
	if (nx_strset_add(s, str, NULL))
		return nx_error_oom(w->err, w->f.path);
	w->held += len + NX_ONNX_HELD_OVERHEAD;
	return 0;
}

int nx_onnx__strset_merge(struct walk *w, struct strset *dst, const struct strset *src)
{
	size_t i;
	int rc;

	for (i = 0; i < src->cap; i++)
		if (src->slots[i] && (rc = nx_onnx__strset_add(w, dst, src->slots[i])) != 0)
			return rc;
	return 0;
}

void nx_onnx__strset_release(struct strset *s)
{
	nx_strset_release(s);
}

int nx_onnx__walk_grow(struct walk *w, void **arr, size_t *cap, size_t n, size_t elem, size_t max)
{
	size_t old = *cap;
	int rc;

	if (n < *cap)
		return 0;
	if ((rc = nx_array_grow(arr, cap, n + 1, elem, max)) == NX_ELIMIT)
		return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0, -1,
				    "the model has more than %zu entries of one kind", max);
	if (rc)
		return nx_error_oom(w->err, w->f.path);
	memset((char *)*arr + old * elem, 0, (*cap - old) * elem);
	return 0;
}
