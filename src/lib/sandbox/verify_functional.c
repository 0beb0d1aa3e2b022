/*
 * verify_functional.c - TRV-5 (nexus/functional.h): the bundle's selftest
 * in the sandbox, then its Python sources imported there
 * (verify_functional_py.c).
 */
#include "functional_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>


#define TAIL_MAX 400   /* bytes of the program's stderr quoted in a finding */
#define NONFINITE "non-finite-output"  /* nexus_cli's word for a NaN/inf output */

void nx_functional_opts_init(struct nx_functional_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->selftest = true;
	o->imports = true;
}

/* The last line(s) of a program's stderr, for a message. */
const char *fx_tail(const char *s, size_t len)
{
	while (len && (s[len - 1] == '\n' || s[len - 1] == ' '))
		len--;
	return len > TAIL_MAX ? s + len - TAIL_MAX : s;
}

void fx_sandbox_opts(struct nx_sandbox_opts *so, const struct fx_ctx *c, uint64_t wall_ms)
{
	nx_sandbox_opts_init(so);
	so->backend = c->backend;
	so->bwrap = c->o->bwrap;
	so->bundle_dirfd = c->dirfd;
	so->wall_ms = wall_ms;
	nx_sandbox_scale(so, c->o->model_bytes, c->o->sandbox_memory);
}

/* A finding for a sandbox run that did not end in exit 0; 1 if one was added. */
int fx_judge(const struct fx_ctx *c, const struct nx_sandbox_result *r,
	     const struct nx_sandbox_opts *so, const char *what, const char *fail_code,
	     const char *path, bool *bad)
{
	char msg[TAIL_MAX + 512], lim[128];
	const char *code = NULL, *hit = nx_sandbox_limit_hit(lim, sizeof(lim), r, so);

	*bad = true;
	if (r->timed_out) {
		code = "functional-timeout";
		snprintf(msg, sizeof(msg), "%s did not finish within %s and was killed", what, hit);
	} else if (r->output_capped) {
		code = "functional-output-cap";
		snprintf(msg, sizeof(msg), "%s printed more than the output cap and was killed", what);
	} else if (hit) {
		/* Named, never the program's raw words (a C++ exception's what()). */
		code = "functional-limit";
		snprintf(msg, sizeof(msg), "%s hit the sandbox's %s and was stopped; %s", what, hit + 4,
			 strstr(hit, "memory") ? "raise it with limits.sandbox_memory in nexus.yaml or "
			 "--sandbox-memory" : "make the model or its imports cheaper");
	} else if (!r->exited || r->status > 128) {
		code = "functional-killed";
		snprintf(msg, sizeof(msg), "%s was killed by signal %d (rlimit exceeded or crash): %s",
			 what, r->exited ? r->status - 128 : r->signal,
			 fx_tail(r->errout, r->errout_len));
	} else if (r->status != 0) {
		code = fail_code;
		snprintf(msg, sizeof(msg), "%s exited with status %d: %s", what, r->status,
			 fx_tail(r->errout, r->errout_len));
	}
	if (!code) {
		*bad = false;
		return 0;
	}
	return c->fn(c->ctx, NX_FUNCTIONAL_FAIL, code, path, 0, msg);
}

static int selftest(struct fx_ctx *c, nx_error *err)
{
	static const char *const args[] = { "selftest", NULL };
	struct nx_sandbox_result r = {0};
	struct nx_sandbox_opts so;
	struct stat st;
	bool bad;
	int rc;

	if (fstatat(c->dirfd, "bin/nexus_cli", &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISREG(st.st_mode))
		return c->fn(c->ctx, NX_FUNCTIONAL_FAIL, "functional-no-runtime", "bin/nexus_cli", 0,
			     "bin/nexus_cli is missing or not a regular file, so the bundle "
			     "cannot run; rebuild it with nexus build");
	fx_sandbox_opts(&so, c, c->o->selftest_ms ? c->o->selftest_ms : NX_FUNCTIONAL_SELFTEST_MS);
	rc = nx_sandbox_run_cli(&r, &so, c->bundle_path, args, err);
	/* A binary whose ELF headers cannot be followed is the bundle's fault. */
	if (rc == NX_EFORMAT || rc == NX_ELIMIT) {
		rc = c->fn(c->ctx, NX_FUNCTIONAL_FAIL, "functional-selftest-failed", "bin/nexus_cli",
			   0, err ? err->message : "bin/nexus_cli is not a loadable ELF program");
		goto out;
	}
	if (rc)
		goto out;
	/* bin/ is the trusted runtime (allowlist), so its word on why is trusted */
	rc = fx_judge(c, &r, &so, "bin/nexus_cli selftest",
		      r.errout && memmem(r.errout, r.errout_len, NONFINITE, strlen(NONFINITE)) ?
		      NONFINITE : "functional-selftest-failed", "bin/nexus_cli", &bad);
out:
	nx_sandbox_result_release(&r);
	return rc;
}

int fx_strv_append(char ***v, size_t *n, const char *s, nx_error *err)
{
	char **nv = realloc(*v, (*n + 2) * sizeof(char *));

	if (!nv)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	*v = nv;
	nv[*n] = NULL;
	nv[*n + 1] = NULL;
	if (!s)
		return 0;
	if (!(nv[*n] = strdup(s)))
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	(*n)++;
	return 0;
}

/* The INFO finding that names the backend the check runs in. */
static int name_backend(const struct fx_ctx *c)
{
	char desc[128];

	if (c->backend == NX_SANDBOX_BACKEND_LANDLOCK)
		snprintf(desc, sizeof(desc), "ran in the landlock sandbox (Landlock ABI %d + seccomp, "
			 "no namespaces)", nx_sandbox_landlock_abi());
	else
		snprintf(desc, sizeof(desc), "ran in the bwrap sandbox (bubblewrap namespaces)");
	return c->fn(c->ctx, NX_FUNCTIONAL_INFO, "functional-sandbox", NULL, 0, desc);
}

int nx_functional_check(bool *skipped, int bundle_dirfd, const char *bundle_path,
			const struct nx_functional_opts *o, nx_functional_fn fn, void *ctx,
			nx_error *err)
{
	struct nx_functional_opts defaults;
	struct fx_ctx c = { .dirfd = bundle_dirfd, .bundle_path = bundle_path, .fn = fn, .ctx = ctx };
	nx_error why;
	int rc;

	if (!o) {
		nx_functional_opts_init(&defaults);
		o = &defaults;
	}
	c.o = o;
	*skipped = false;
	nx_error_clear(&why);
	if (nx_sandbox_available(&c.backend, o->backend, o->bwrap, &why) != 0) {
		char msg[NX_ERROR_MSG_MAX + 128];

		*skipped = true;
		snprintf(msg, sizeof(msg), "%s; TRV-5 did not run%s", why.message,
			 o->allow_no_sandbox ? " (--allow-no-sandbox)" : "; --allow-no-sandbox makes "
			 "this a WARN");
		return fn(ctx, o->strict || !o->allow_no_sandbox ? NX_FUNCTIONAL_FAIL :
			  NX_FUNCTIONAL_WARN, "functional-sandbox-unavailable", NULL, 0, msg);
	}
	if ((rc = name_backend(&c)) != 0)
		return rc;
	if (o->selftest && (rc = selftest(&c, err)) != 0)
		return rc;
	if (o->imports)
		return fx_imports(&c, err);
	return 0;
}
