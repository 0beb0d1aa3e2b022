/*
 * fuzz_pyaudit.c - the Python import audit on arbitrary bytes: the file is
 * also a bundle module whose imports the audit of the same bytes follows.
 * Beyond "no crash", findings carry a known code and a line inside the
 * input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/pyaudit.h"

static const char *const packages[] = { "numpy", "onnxruntime", "torch" };
static const char *const modules[] = { "utils", "inference", "x" };

struct limits {
	long lines;
	size_t n;
};

static int on_finding(void *ctx, enum nx_finding_code code, long line, long col, const char *message)
{
	struct limits *l = ctx;

	if (code != NX_F_IMPORT_UNRESOLVED && code != NX_F_IMPORT_TRAINING &&
	    code != NX_F_IMPORT_DENIED && code != NX_F_PYTHON_REFLECTIVE)
		abort();
	if (line < 1 || line > l->lines || col < 1 || !*message)
		abort();
	l->n++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct nx_pyaudit_opts o = { .packages = packages, .npackages = 3, .modules = modules,
				     .nmodules = 3 };
	struct nx_pyaudit_export *ex = NULL;
	struct limits l = { 1, 0 };
	size_t nex = 0, i;

	for (i = 0; i < size; i++)
		l.lines += buf[i] == '\n' || buf[i] == '\r';
	if (nx_pyaudit_exports(&ex, &nex, "utils", buf, size, &o, NULL) == 0) {
		o.exports = ex;
		o.nexports = nex;
	}
	(void)nx_pyaudit_run(buf, size, &o, on_finding, &l, "fuzz.py", NULL);
	nx_pyaudit_exports_free(ex, nex);
	return 0;
}
