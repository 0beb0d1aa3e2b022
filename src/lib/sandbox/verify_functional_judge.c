/*
 * verify_functional_judge.c - what both halves of TRV-5 (verify_functional.c
 * for the model, verify_functional_py.c for the imports) share: the sandbox
 * options of one run, the finding for a run that did not exit 0, and a
 * growing argv.  Support: it calls neither half.
 */
#include "functional_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAIL_MAX 400   /* bytes of the program's stderr quoted in a finding */

/* The last line(s) of a program's stderr, for a message. */
const char *nx_fx__tail(const char *s, size_t len)
{
	while (len && (s[len - 1] == '\n' || s[len - 1] == ' '))
		len--;
	return len > TAIL_MAX ? s + len - TAIL_MAX : s;
}

void nx_fx__sandbox_opts(struct nx_sandbox_opts *so, const struct fx_ctx *c, uint64_t wall_ms)
{
	nx_sandbox_opts_init(so);
	so->backend = c->backend;
	so->bwrap = c->o->bwrap;
	so->bundle_dirfd = c->dirfd;
	so->wall_ms = wall_ms;
	nx_sandbox_scale(so, c->o->model_bytes, c->o->sandbox_memory);
}

/* A finding for a sandbox run that did not end in exit 0; 1 if one was added. */
int nx_fx__judge(const struct fx_ctx *c, const struct nx_sandbox_result *r,
	     const struct nx_sandbox_opts *so, const char *what, enum nx_finding_code fail_code,
	     const char *path, bool *bad)
{
	char msg[TAIL_MAX + 512], lim[128];
	const char *hit = nx_sandbox_limit_hit(lim, sizeof(lim), r, so);
	enum nx_finding_code code = NX_F__COUNT;   /* none */

	*bad = true;
	if (r->timed_out) {
		code = NX_F_FUNCTIONAL_TIMEOUT;
		snprintf(msg, sizeof(msg), "%s did not finish within %s and was killed", what, hit);
	} else if (r->output_capped) {
		code = NX_F_FUNCTIONAL_OUTPUT_CAP;
		snprintf(msg, sizeof(msg), "%s printed more than the output cap and was killed", what);
	} else if (hit) {
		/* Named, never the program's raw words (a C++ exception's what()). */
		code = NX_F_FUNCTIONAL_LIMIT;
		snprintf(msg, sizeof(msg), "%s hit the sandbox's %s and was stopped; %s", what, hit + 4,
			 strstr(hit, "memory") ? "raise it with limits.sandbox_memory in nexus.yaml or "
			 "--sandbox-memory" : "make the model or its imports cheaper");
	} else if (!r->exited || r->status > 128) {
		code = NX_F_FUNCTIONAL_KILLED;
		snprintf(msg, sizeof(msg), "%s was killed by signal %d (rlimit exceeded or crash): %s",
			 what, r->exited ? r->status - 128 : r->signal,
			 nx_fx__tail(r->errout, r->errout_len));
	} else if (r->status != 0) {
		code = fail_code;
		snprintf(msg, sizeof(msg), "%s exited with status %d: %s", what, r->status,
			 nx_fx__tail(r->errout, r->errout_len));
	}
	if (code == NX_F__COUNT) {
		*bad = false;
		return 0;
	}
	return c->fn(c->ctx, NX_FUNCTIONAL_FAIL, code, path, 0, msg);
}

int nx_fx__strv_append(char ***v, size_t *n, const char *s, nx_error *err)
{
	char **nv;
	size_t cap = *n;

	/* the vector stays NULL-terminated: room for s and the NULL */
	if (nx_array_grow(v, &cap, *n + 2, sizeof(**v), *n + 2))
		return nx_error_oom(err, NULL);
	nv = *v;
	nv[*n] = NULL;
	nv[*n + 1] = NULL;
	if (!s)
		return 0;
	if (!(nv[*n] = strdup(s)))
		return nx_error_oom(err, NULL);
	(*n)++;
	return 0;
}
