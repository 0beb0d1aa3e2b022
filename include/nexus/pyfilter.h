/*
 * nexus/pyfilter.h - remove imports of forbidden modules from Python source
 * (SPEC §2A step 3, "Filter").
 *
 * The filter works on tokens (nexus/pylex.h), not on lines, so that it sees
 * every import form: `import X`, `import X.sub`, `import a, X as y`,
 * `from X.sub import (a,\n b)`, `from .X import n`, `from . import X`,
 * statements after `;` or after a compound header (`try: import X`), inside
 * any block.  A module M is forbidden by an entry f when M == f or M starts
 * with f + "."; for a relative import the path after the dots is matched,
 * and for `from . import X` each imported name is matched as a module.
 *
 * A removed statement becomes `pass` at the same place (so that a block that
 * held only the import stays valid) followed by as many newlines as the
 * statement spanned, so every other line keeps its line number.  An import
 * that loses only some of its names is rewritten with the names that remain.
 *
 * After removal, a name that a removed import bound (`X` for `import X.sub`,
 * `y` for `X as y`, each name of `from X import ...`) and that the remaining
 * code still uses as an identifier is an error: the filtered code would fail
 * at run time.  Attribute names (`obj.X`), keyword argument names (`f(X=1)`),
 * strings, comments and other import statements are not uses.
 */
#ifndef NEXUS_PYFILTER_H
#define NEXUS_PYFILTER_H

#include <stddef.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest source file the filter accepts (bytes). */
#define NX_PYFILTER_SRC_MAX (16u << 20)

struct nx_pyfilter_removed {
	long line;              /* 1-based line where the removed import starts */
	char *module;           /* module as written, dots of a relative import kept */
	char *statement_kind;   /* "import" | "from" */
};

struct nx_pyfilter_result {
	char *text;             /* filtered source, NUL-terminated */
	size_t len;             /* its length, NUL excluded */
	struct nx_pyfilter_removed *removed;  /* one entry per removed module */
	size_t nremoved;
};

/*
 * Filter src[0..len) (borrowed) against forbidden[0..nforbidden) (borrowed
 * module names).  On success fill *out (release it with
 * nx_pyfilter_result_release) and return 0.  Errors, *out untouched:
 *   NX_ECHECK   a removed import's name is still used; err->line is the
 *               first such use, the message names the name, the module and
 *               the line of the removed import;
 *   NX_EFORMAT  the source does not tokenize or an import statement does
 *               not parse (err->line set);
 *   NX_ELIMIT   len > NX_PYFILTER_SRC_MAX;  NX_ENOMEM.
 * path (may be NULL) is only used in messages and err->path.
 */
int nx_pyfilter_run(struct nx_pyfilter_result *out, const char *src, size_t len,
		    const char *const *forbidden, size_t nforbidden,
		    const char *path, nx_error *err);

/* Free what nx_pyfilter_run put in *r and zero it.  Accepts NULL. */
void nx_pyfilter_result_release(struct nx_pyfilter_result *r);

#ifdef __cplusplus
}
#endif
#endif
