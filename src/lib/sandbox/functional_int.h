/* functional_int.h - shared by verify_functional.c, verify_functional_py.c and
 * verify_functional_judge.c. */
#ifndef NEXUS_FUNCTIONAL_INT_H
#define NEXUS_FUNCTIONAL_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "nexus/functional.h"
#include "nexus/sandbox.h"
#include "util/array_int.h"

struct fx_ctx {
	int dirfd;
	const char *bundle_path;
	const struct nx_functional_opts *o;
	nx_functional_fn fn;
	void *ctx;
	enum nx_sandbox_backend backend;   /* resolved: bwrap or landlock */
	bool selftest_failed;              /* a finding says why: liveness is moot */
};

/* verify_functional_judge.c */

/* Sandbox options for one run of the check: backend, bundle, limits scaled
 * to the model, wall_ms (plus the per-GiB time). */
void nx_fx__sandbox_opts(struct nx_sandbox_opts *so, const struct fx_ctx *c, uint64_t wall_ms);

/* Append a copy of s (or just keep the array NULL-terminated when s is NULL). */
int nx_fx__strv_append(char ***v, size_t *n, const char *s, nx_error *err);
/* The last line(s) of a program's stderr, for a message. */
const char *nx_fx__tail(const char *s, size_t len);
/* Report a run that did not exit 0 (timeout, cap, signal, status); *bad tells. */
int nx_fx__judge(const struct fx_ctx *c, const struct nx_sandbox_result *r,
	     const struct nx_sandbox_opts *so, const char *what, enum nx_finding_code fail_code,
	     const char *path, bool *bad);
/* verify_functional_py.c: the Python import half of the check. */
int nx_fx__imports(struct fx_ctx *c, nx_error *err);

#endif
