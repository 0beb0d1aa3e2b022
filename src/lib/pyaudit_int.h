/*
 * pyaudit_int.h - the lists of the Python import audit (pyaudit_lists.c),
 * shared with its engine (pyaudit.c).  Not installed.
 *
 * Each function takes a name (not NUL-terminated where a length is given)
 * and returns the static lower-case reason it is refused, or NULL.
 */
#ifndef NEXUS_PYAUDIT_INT_H
#define NEXUS_PYAUDIT_INT_H

#include <stdbool.h>
#include <stddef.h>

/* A dotted module path (or module.attribute) never importable by serving
 * code: import machinery, string execution, code-loading deserialisers,
 * processes and native code.  Matches the entry or anything under it. */
const char *nx_pyaudit__denied(const char *dotted);
/* Does the dotted path hold (is a proper prefix of) a training or denied
 * entry?  `torch.utils` holds torch.utils.data. */
bool nx_pyaudit__holds(const char *dotted);
/* An attribute name refused on any object (reflection, frames, import
 * machinery, process creation, modules reached as attributes). */
const char *nx_pyaudit__attr(const char *name, size_t n);
/* A dunder name serving code may use (data model, metadata). */
bool nx_pyaudit__dunder_ok(const char *name, size_t n);
/* A builtin that imports, executes strings or exposes namespaces. */
const char *nx_pyaudit__builtin(const char *name, size_t n);
/* An attribute of module `module` (dotted, NUL-terminated) refused there:
 * sys beyond its allow-list, os process functions. */
const char *nx_pyaudit__member(const char *module, const char *name, size_t n);
/* A keyword argument that makes a library load code from data
 * (allow_pickle, trust_remote_code) unless given as False. */
const char *nx_pyaudit__keyword(const char *name, size_t n);
/* "3.11": the python whose standard library nx_pyaudit_stdlib lists. */
const char *nx_pyaudit__stdlib_version(void);
/* A private attribute name that is public API (namedtuple's _replace...). */
bool nx_pyaudit__private_ok(const char *name, size_t n);

#endif
