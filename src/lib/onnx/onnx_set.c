/* onnx_set.c - the keyed string set (strset_int.h) and array growth under
 * the walk's memory caps. */
#include "onnx_int.h"

#include <stdlib.h>
#include <string.h>

bool strset_has(const struct strset *s, const char *str)
{
	return nx_strset_has(s, str);
}

/* nx_strset_add under the walk's cap on the bytes of names it keeps. */
int strset_add(struct walk *w, struct strset *s, const char *str)
{
	size_t len = strlen(str);

	if (nx_strset_has(s, str))
		return 0;
	if (w->held + len + NX_ONNX_HELD_OVERHEAD > NX_ONNX_HELD_MAX)
		return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0, -1,
				    "the model's names exceed %u bytes", NX_ONNX_HELD_MAX);
	if (nx_strset_add(s, str, NULL))
		return nx_error_set(w->err, NX_ENOMEM, w->f.path, 0, -1, "out of memory");
	w->held += len + NX_ONNX_HELD_OVERHEAD;
	return 0;
}

int strset_merge(struct walk *w, struct strset *dst, const struct strset *src)
{
	size_t i;
	int rc;

	for (i = 0; i < src->cap; i++)
		if (src->slots[i] && (rc = strset_add(w, dst, src->slots[i])) != 0)
			return rc;
	return 0;
}

void strset_release(struct strset *s)
{
	nx_strset_release(s);
}

int walk_grow(struct walk *w, void **arr, size_t *cap, size_t n, size_t elem, size_t max)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	if (n >= max)
		return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0, -1,
				    "the model has more than %zu entries of one kind", max);
	ncap = *cap ? *cap * 2 : 16;
	if (ncap > max)
		ncap = max;
	if (!(p = realloc(*arr, ncap * elem)))
		return nx_error_set(w->err, NX_ENOMEM, w->f.path, 0, -1, "out of memory");
	memset((char *)p + *cap * elem, 0, (ncap - *cap) * elem);
	*arr = p;
	*cap = ncap;
	return 0;
}
