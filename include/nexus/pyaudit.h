/*
 * nexus/pyaudit.h - the static import audit of a bundle's Python sources
 * (TRV-2, check `code`): Python by allow-list.
 *
 * Every import statement of a file, at any nesting and under any condition
 * (inside functions, classes, if/try/except), in every form (`import a.b as
 * c`, `from a.b import c`, relative imports), must resolve to
 *   - the standard library of the python3 serving code runs on (the list
 *     generated from its sys.stdlib_module_names, src/lib/pystdlib.h),
 *   - the bundle's own src/ modules (`utils`, `.utils`, `src.utils`), or
 *   - a top-level package the caller declares (runtime.yaml python_packages);
 * and never to a training package or training submodule (a maintained list,
 * each entry with its reason: refused even if declared) or to a module that
 * serving code never needs and that runs code given as data (import
 * machinery, string execution, deserialisers that import, processes and
 * native code: the deny list, each entry with its reason).
 *
 * What serving code may do with the names it imports is also limited, so
 * that no module is reached except by a static import: it never imports,
 * executes or looks up anything by a computed name.  Findings, all FAIL:
 *   import-unresolved  a module outside stdlib, bundle and declared packages
 *                      (or an import that does not parse, a relative import
 *                      above src/, any `from X import *`);
 *   import-training    a training package, submodule or attribute, reached
 *                      by import or by attribute (`torch.optim`,
 *                      `from transformers import Trainer`);
 *   import-denied      a module or attribute of the deny list;
 *   python-reflective  dynamic import, string execution or reflective access:
 *                      the builtins `__import__` `exec` `eval` `compile`
 *                      `globals` `locals` `vars` `breakpoint` `help`, any use
 *                      of getattr/setattr/delattr/hasattr or attrgetter/
 *                      methodcaller but a call with a plain literal name, a
 *                      dunder outside the data-model allow-list
 *                      (`__dict__`, `__globals__`, `__subclasses__`,
 *                      `__builtins__`, `__match_args__`...), a case
 *                      pattern's keyword judged as the attribute it reads, frame and code internals, import
 *                      machinery names, a private attribute of anything but
 *                      self/cls/super()/a bundle module, sys beyond its
 *                      allow-list, os process functions, and an imported
 *                      standard or declared module used as a value (passed,
 *                      stored, returned) instead of through its attributes.
 *
 * Names are compared after NFKC normalisation, as Python compares
 * identifiers (PEP 3131).  The expressions of f-string replacement fields
 * are audited as code.  The audit is one pass over the tokens plus a sort
 * of the bindings: linear (n log n) in the file.
 */
#ifndef NEXUS_PYAUDIT_H
#define NEXUS_PYAUDIT_H

#include <stdbool.h>
#include <stddef.h>

#include "nexus/error.h"
#include "nexus/findings.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest source file audited (bytes). */
#define NX_PYAUDIT_SRC_MAX (64u << 20)
/* Names bound by import statements in one file. */
#define NX_PYAUDIT_BINDINGS_MAX 65536
/* f-strings nested in f-string replacement fields. */
#define NX_PYAUDIT_FSTRING_DEPTH_MAX 16
/* Longest dotted module name resolved (bytes); longer ones are unresolved. */
#define NX_PYAUDIT_DOTTED_MAX 255

/*
 * A name another bundle module binds by an import statement: `utils.np`
 * for `import numpy as np` in src/utils.py.  Through it, `utils.np` in
 * another file is numpy, followed and judged like a direct import.
 */
struct nx_pyaudit_export {
	char *name;            /* "<stem>.<bound name>"; stem "__init__" for the package */
	char *target;          /* dotted module (or module.attribute); for a bundle
				* name, "<stem>.<name>" again, or a stem */
	bool bundle;           /* target is a bundle name */
	bool module;           /* bound by `import` (a module object) */
};

struct nx_pyaudit_opts {
	/* runtime.yaml python_packages (top-level names; borrowed) */
	const char *const *packages;
	size_t npackages;
	/* the bundle's src/ module stems ("inference" for src/inference.py;
	 * borrowed) */
	const char *const *modules;
	size_t nmodules;
	/* what the bundle's modules bind (nx_pyaudit_exports of each; borrowed) */
	const struct nx_pyaudit_export *exports;
	size_t nexports;
};

/*
 * One finding: code is one of the codes above (NX_F_IMPORT_DENIED for
 * import-denied, nexus/findings.h), line/col (1-based, col in
 * bytes) where the offending token starts, message a lower-case sentence.
 * A non-zero return stops the audit and is returned by nx_pyaudit_run.
 */
typedef int (*nx_pyaudit_fn)(void *ctx, enum nx_finding_code code, long line, long col,
			     const char *message);

/*
 * Audit src[0..len) (borrowed).  Returns 0 when done (findings went to fn),
 * fn's non-zero value, or a negative NX_E* code with *err filled:
 * NX_EFORMAT (does not tokenize; err->line set), NX_ELIMIT (a cap above),
 * NX_ENOMEM.  path (may be NULL) is only used in messages and err->path.
 */
int nx_pyaudit_run(const char *src, size_t len, const struct nx_pyaudit_opts *o,
		   nx_pyaudit_fn fn, void *ctx, const char *path, nx_error *err);

/*
 * Append to *v (*n entries, reallocated) what src[0..len), the bundle module
 * `stem` ("__init__" for src/__init__.py), binds by import statements.
 * Reports nothing: a file that does not tokenize exports nothing (its audit
 * reports it).  0 or NX_ENOMEM (err filled; *v, *n still valid).
 */
int nx_pyaudit_exports(struct nx_pyaudit_export **v, size_t *n, const char *stem,
		       const char *src, size_t len, const struct nx_pyaudit_opts *o,
		       nx_error *err);

/* Free an export array.  Accepts NULL. */
void nx_pyaudit_exports_free(struct nx_pyaudit_export *v, size_t n);

/*
 * Is the dotted module name (or a package it is under) a training package
 * or submodule?  Its reason (a static lower-case phrase), or NULL.
 */
const char *nx_pyaudit_training(const char *module);

/* Is the top-level name a module of the standard library nexus targets? */
bool nx_pyaudit_stdlib(const char *top);

#ifdef __cplusplus
}
#endif
#endif
