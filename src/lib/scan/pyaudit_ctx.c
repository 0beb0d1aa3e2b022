/*
 * pyaudit_ctx.c - what the import audit's driver (pyaudit.c) and its pass
 * over names (pyaudit_names.c) share: the out-of-memory error, the finding
 * report, the binding look-up and the bundle-module test.  It calls
 * neither.
 */
#include "pyaudit_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int nx_pyaudit__oom(struct audit *a)
{
	return nx_error_set(a->err, NX_ENOMEM, a->path, 0, -1, "%s: out of memory while auditing "
			    "imports", a->path ? a->path : "<source>");
}

int nx_pyaudit__report(struct audit *a, enum nx_finding_code code, size_t i, const char *fmt, ...)
{
	char msg[768];
	const struct ctok *t = &a->t[i < a->n ? i : a->n - 1].t;
	long line = a->line0 + t->line - 1;
	long col = t->line == 1 ? a->col0 + t->col - 1 : t->col;
	va_list ap;

	/* one finding of a kind per line: `eval(eval(x))` is one problem */
	if (line == a->last_line && a->last_code == code)
		return 0;
	a->last_line = line;
	a->last_code = code;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return a->fn(a->ctx, code, line, col, msg);
}

/* The bindings of name[0..n): *lo and the count (0 when none). */
size_t nx_pyaudit__lookup(const struct bindings *b, const char *name, size_t n, size_t *lo)
{
	size_t l = 0, h = b->n, k;

	while (l < h) {
		size_t m = l + (h - l) / 2;
		const struct binding *v = &b->v[m];
		size_t c = v->nlen < n ? v->nlen : n;
		int r = memcmp(v->name, name, c);

		if (r < 0 || (r == 0 && v->nlen < n))
			l = m + 1;
		else
			h = m;
	}
	*lo = l;
	for (k = l; k < b->n && b->v[k].nlen == n && !memcmp(b->v[k].name, name, n); k++)
		;
	return k - l;
}

bool nx_pyaudit__bundle_module(const struct audit *a, const char *s, size_t n)
{
	size_t k;

	for (k = 0; k < a->o->nmodules; k++)
		if (strlen(a->o->modules[k]) == n && !memcmp(a->o->modules[k], s, n))
			return true;
	return false;
}
