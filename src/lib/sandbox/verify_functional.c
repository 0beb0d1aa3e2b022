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


#define NONFINITE "non-finite-output"  /* nexus_cli's word for a NaN/inf output */

void nx_functional_opts_init(struct nx_functional_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->selftest = true;
	o->imports = true;
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
