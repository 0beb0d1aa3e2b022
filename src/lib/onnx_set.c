/* onnx_set.c - string set and array growth with the walk's memory caps. */
#include "onnx_int.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
}

static char **slot(const struct strset *s, const char *str)
{
	size_t i = (size_t)hash(str) & (s->cap - 1);

	while (s->slots[i] && strcmp(s->slots[i], str) != 0)
		i = (i + 1) & (s->cap - 1);
	return &s->slots[i];
}

bool strset_has(const struct strset *s, const char *str)
{
	return s->cap && *slot(s, str) != NULL;
}

int strset_add(struct walk *w, struct strset *s, const char *str)
{
	size_t len = strlen(str);
	char **p;

	if ((s->n + 1) * 2 > s->cap) {
		struct strset bigger = { NULL, s->cap ? s->cap * 2 : 64, 0 };
		size_t i;

		if (!(bigger.slots = calloc(bigger.cap, sizeof(char *))))
			return nx_error_set(w->err, NX_ENOMEM, w->f.path, 0, -1, "out of memory");
		for (i = 0; i < s->cap; i++)
			if (s->slots[i])
				*slot(&bigger, s->slots[i]) = s->slots[i];
		bigger.n = s->n;
		free(s->slots);
		*s = bigger;
	}
	p = slot(s, str);
	if (*p)
		return 0;
	if (w->held + len + 1 > NX_ONNX_HELD_MAX)
		return nx_error_set(w->err, NX_ELIMIT, w->f.path, 0, -1,
				    "the model's names exceed %u bytes", NX_ONNX_HELD_MAX);
	if (!(*p = strdup(str)))
		return nx_error_set(w->err, NX_ENOMEM, w->f.path, 0, -1, "out of memory");
	w->held += len + 1;
	s->n++;
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
	size_t i;

	for (i = 0; i < s->cap; i++)
		free(s->slots[i]);
	free(s->slots);
	memset(s, 0, sizeof(*s));
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
