/*
 * fuzz_pylex.c - the Python lexer, the import filter and the term scanners
 * on arbitrary bytes.  Beyond "no crash", it checks invariants: tokens lie
 * inside the input and always advance, the filter keeps the line count and
 * its output still tokenizes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/pyfilter.h"
#include "nexus/pylex.h"
#include "nexus/scan.h"

static const char *const terms[] = { "teacher", "distillation", "soft_targets", "" };
static const char *const forbidden[] = { "teacher_model", "training_modules", "x" };

static int on_term(void *ctx, const char *term, enum nx_term_where where, long line,
		   long col, const char *excerpt)
{
	if (strlen(excerpt) > NX_SCAN_EXCERPT_MAX || line < 1 || col < 1 || !*term)
		abort();
	(*(size_t *)ctx)++;
	return 0;
}

/* Lex everything; return 1 if an ERROR token was seen. */
static int lex_all(const char *buf, size_t len)
{
	nx_pylex lx;
	nx_py_token t;
	size_t last = 0, n = 0;
	int err = 0;

	nx_pylex_init(&lx, buf, len);
	while (nx_pylex_next(&lx, &t) != NX_PY_ENDMARKER) {
		if (t.start + t.len > len || t.start < last || t.line < 1 || ++n > 2 * len + 2)
			abort();
		if (t.kind == NX_PY_STRING && (t.body < t.start || t.body + t.body_len > t.start + t.len))
			abort();
		last = t.start;
		err |= t.kind == NX_PY_ERROR;
	}
	return err;
}

static size_t count(const char *s, size_t n, char c)
{
	size_t k = 0;

	while (n--)
		k += *s++ == c;
	return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct nx_pyfilter_result r;
	size_t hits = 0;
	nx_error e;
	int bad;

	bad = lex_all(buf, size);
	if (nx_pyfilter_run(&r, buf, size, forbidden, 3, "f.py", &e) == 0) {
		if (bad)
			abort();   /* the filter must refuse what does not tokenize */
		if (!memchr(buf, '\r', size) && count(r.text, r.len, '\n') != count(buf, size, '\n'))
			abort();
		if (lex_all(r.text, r.len))
			abort();
		nx_pyfilter_result_release(&r);
	}
	nx_scan_python(buf, size, terms, 4, on_term, &hits, "f.py", &e);
	nx_scan_yaml(buf, size, terms, 4, on_term, &hits, "f.yaml", &e);
	nx_scan_text(buf, size, terms, 4, on_term, &hits, "f.txt", &e);
	return 0;
}
