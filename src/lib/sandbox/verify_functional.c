/*
 * verify_functional.c - TRV-5 (nexus/functional.h): the bundle's selftest
 * in the sandbox, then its Python sources imported there
 * (verify_functional_py.c).
 */
#include "functional_int.h"
#include "nexus/bundle.h"

#include <errno.h>
#include <jansson.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#define NONFINITE "non-finite-output"  /* nexus_cli's word for a NaN/inf output */

void nx_functional_opts_init(struct nx_functional_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->selftest = true;
	o->imports = true;
	o->liveness = true;
}

uint64_t nx_functional_liveness_ms(void)
{
	const char *v = getenv("NEXUS_LIVENESS_BUDGET_MS");
	char *end;
	unsigned long long ms;

	if (!v || !*v)
		return NX_FUNCTIONAL_LIVENESS_MS;
	errno = 0;
	ms = strtoull(v, &end, 10);
	return errno || *end || !ms || ms > NX_FUNCTIONAL_LIVENESS_MS ? NX_FUNCTIONAL_LIVENESS_MS : ms;
}

static int selftest(struct fx_ctx *c, nx_error *err)
{
	static const char *const args[] = { "selftest", NULL };
	struct nx_sandbox_result r = {0};
	struct nx_sandbox_opts so;
	struct stat st;
	bool bad;
	int rc;

	if (fstatat(c->dirfd, NX_BUNDLE_CLI, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
	    !S_ISREG(st.st_mode))
		return c->fn(c->ctx, NX_FUNCTIONAL_FAIL, NX_F_FUNCTIONAL_NO_RUNTIME, NX_BUNDLE_CLI, 0,
			     "bin/nexus_cli is missing or not a regular file, so the bundle "
			     "cannot run; rebuild it with nexus build");
	nx_fx__sandbox_opts(&so, c, c->o->selftest_ms ? c->o->selftest_ms : NX_FUNCTIONAL_SELFTEST_MS);
	rc = nx_sandbox_run_cli(&r, &so, c->bundle_path, args, err);
	/* A binary whose ELF headers cannot be followed is the bundle's fault. */
	if (rc == NX_EFORMAT || rc == NX_ELIMIT) {
		c->selftest_failed = true;
		rc = c->fn(c->ctx, NX_FUNCTIONAL_FAIL, NX_F_FUNCTIONAL_SELFTEST_FAILED, NX_BUNDLE_CLI,
			   0, err ? err->message : "bin/nexus_cli is not a loadable ELF program");
		goto out;
	}
	if (rc)
		goto out;
	/* bin/ is the trusted runtime (allowlist), so its word on why is trusted */
	rc = nx_fx__judge(c, &r, &so, "bin/nexus_cli selftest",
		      r.errout && memmem(r.errout, r.errout_len, NONFINITE, strlen(NONFINITE)) ?
		      NX_F_NON_FINITE_OUTPUT : NX_F_FUNCTIONAL_SELFTEST_FAILED, NX_BUNDLE_CLI, &bad);
	c->selftest_failed = bad;
out:
	nx_sandbox_result_release(&r);
	return rc;
}

/* One line of `nexus_cli liveness` output. */
static int liveness_line(struct fx_ctx *c, const char *line, size_t len, size_t *unchecked,
			 uint64_t *unchecked_bytes, size_t *unperturbable, char *first_unp,
			 size_t first_size, char *summary, size_t summary_size)
{
	json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
	const char *name, *verdict;
	char msg[1024];
	int rc = 0;

	if (!j)
		return 0;
	name = json_string_value(json_object_get(j, "initializer"));
	verdict = json_string_value(json_object_get(j, "verdict"));
	if (name && verdict && !strcmp(verdict, "dead")) {
		json_t *ch = json_object_get(j, "change");

		snprintf(msg, sizeof(msg), "initializer '%.300s' (%lld bytes) does not influence the "
			 "model's outputs: replaced by noise of its own scale, it changed them by "
			 "%.3g (relative; under %.0e is dead).  A tensor kept in the graph only "
			 "through a product with zero can carry anything; remove it, or set it to "
			 "zeros if it is a parameter the outputs cannot see (a key bias before "
			 "softmax): that changes no output", name,
			 (long long)json_integer_value(json_object_get(j, "bytes")),
			 json_is_number(ch) ? json_number_value(ch) : 0.0, NX_FUNCTIONAL_LIVE_REL_MIN);
		rc = c->fn(c->ctx, NX_FUNCTIONAL_FAIL, NX_F_DEAD_INITIALIZER, NX_FUNCTIONAL_MODEL, 0,
			   msg);
	} else if (name && verdict && !strcmp(verdict, "subgraph")) {
		snprintf(msg, sizeof(msg), "initializer '%.300s' (%lld bytes) belongs to a subgraph "
			 "(If, Loop, Scan), which the liveness check cannot replace: whether it "
			 "influences the outputs is unknown; keep weights in the main graph",
			 name, (long long)json_integer_value(json_object_get(j, "bytes")));
		rc = c->fn(c->ctx, NX_FUNCTIONAL_WARN, NX_F_LIVENESS_SUBGRAPH, NX_FUNCTIONAL_MODEL, 0,
			   msg);
	} else if (name && verdict && !strcmp(verdict, "unperturbable")) {
		if (!(*unperturbable)++)
			snprintf(first_unp, first_size, "'%.200s' (%lld bytes)", name,
				 (long long)json_integer_value(json_object_get(j, "bytes")));
	} else if (name && verdict && !strcmp(verdict, "unchecked")) {
		(*unchecked)++;
		*unchecked_bytes += (uint64_t)json_integer_value(json_object_get(j, "bytes"));
	} else if (json_is_integer(json_object_get(j, "checked"))) {
		snprintf(summary, summary_size, "%lld of %lld initializers (%lld of %lld bytes)",
			 (long long)json_integer_value(json_object_get(j, "checked")),
			 (long long)json_integer_value(json_object_get(j, "of")),
			 (long long)json_integer_value(json_object_get(j, "bytes_checked")),
			 (long long)json_integer_value(json_object_get(j, "bytes")));
	}
	json_decref(j);
	return rc;
}

/*
 * Every initializer of the model must influence its outputs: the bundle's
 * runtime replaces each in turn by noise (src/runtime/liveness.c) and says
 * which moved nothing.  Bounded by the time budget; what it left is said.
 */
static int liveness(struct fx_ctx *c, nx_error *err)
{
	char budget[32], summary[256] = "";
	const char *args[] = { "liveness", "--budget-ms", budget, NULL };
	struct nx_sandbox_result r = {0};
	struct nx_sandbox_opts so;
	uint64_t ms = c->o->liveness_ms ? c->o->liveness_ms : nx_functional_liveness_ms();
	uint64_t unchecked_bytes = 0;
	size_t unchecked = 0, unperturbable = 0;
	char first_unp[256] = "";
	long ncpu;
	const char *p, *end, *nl;
	bool bad;
	int rc;

	snprintf(budget, sizeof(budget), "%llu", (unsigned long long)ms);
	/* the runtime stops itself at the budget; the sandbox's clock is the
	 * backstop (one more session, plus loading the model) */
	nx_fx__sandbox_opts(&so, c, 2 * ms);
	/* the budget may be spent on every core: RLIMIT_CPU must not end the
	 * check before its own clock does (a FAIL where the budget says WARN) */
	ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	so.cpu_seconds += (ms / 1000 + 1) * (uint64_t)(ncpu > 0 ? ncpu : 1);
	rc = nx_sandbox_run_cli(&r, &so, c->bundle_path, args, err);
	if (rc == NX_EFORMAT || rc == NX_ELIMIT) {
		rc = 0;   /* the selftest has said so already */
		goto out;
	}
	if (rc)
		goto out;
	for (p = r.out ? r.out : "", end = p + r.out_len; p < end && !rc; p = nl + 1) {
		if (!(nl = memchr(p, '\n', (size_t)(end - p))))
			nl = end;
		rc = liveness_line(c, p, (size_t)(nl - p), &unchecked, &unchecked_bytes,
				   &unperturbable, first_unp, sizeof(first_unp), summary,
				   sizeof(summary));
	}
	if (rc)
		goto out;
	if (r.exited && r.status == 2) {
		rc = c->fn(c->ctx, NX_FUNCTIONAL_WARN, NX_F_LIVENESS_UNAVAILABLE, NX_BUNDLE_CLI, 0,
			   "this bundle's runtime has no liveness check (an earlier release): "
			   "whether every initializer influences the outputs was not checked");
		goto out;
	}
	if (r.exited && r.status == 1) {
		/* exit 1 is "dead initializers", each a finding above; without
		 * the summary line the check did not get that far */
		if (!summary[0])
			rc = c->fn(c->ctx, NX_FUNCTIONAL_FAIL, NX_F_LIVENESS_FAILED, NX_BUNDLE_CLI, 0,
				   nx_fx__tail(r.errout, r.errout_len));
		goto out;
	}
	if ((rc = nx_fx__judge(c, &r, &so, "bin/nexus_cli liveness", NX_F_LIVENESS_FAILED,
			   NX_BUNDLE_CLI, &bad)) != 0 || bad)
		goto out;
	if (unperturbable) {
		char msg[768];

		/* a dead uint32 initializer, a type the check once skipped in
		 * silence, carried a trainer and a teacher layer past the signed
		 * build (red team 12): what cannot be checked is not clean */
		snprintf(msg, sizeof(msg), "%zu initializer(s) of 64 bytes or more, first %s, are of "
			 "a type the liveness check cannot replace by noise (string, complex, "
			 "sparse): whether they influence the outputs is unknown (%s checked); "
			 "store them as a float, integer or bool tensor", unperturbable, first_unp,
			 summary[0] ? summary : "none");
		if ((rc = c->fn(c->ctx, NX_FUNCTIONAL_WARN, NX_F_INITIALIZER_UNCHECKED,
				NX_FUNCTIONAL_MODEL, 0, msg)) != 0)
			goto out;
	}
	if (unchecked) {
		char msg[512];

		/* a dead initializer may be among those left: a model made slow
		 * to run hid a 64 KiB one among 300 live ones past the signed
		 * build (red team 6), so what was not checked is not clean */
		snprintf(msg, sizeof(msg), "the liveness check's time budget (%llu ms) ran out: %s "
			 "checked, %zu (%llu bytes) in a random order were not, and a dead one may "
			 "be among them; make the model cheaper to run (fewer initializers of 64 "
			 "bytes or more, a faster graph)", (unsigned long long)ms,
			 summary, unchecked, (unsigned long long)unchecked_bytes);
		rc = c->fn(c->ctx, NX_FUNCTIONAL_WARN, NX_F_LIVENESS_SAMPLED, NX_FUNCTIONAL_MODEL, 0, msg);
	} else if (summary[0] && !unperturbable) {
		char msg[512];

		snprintf(msg, sizeof(msg), "every initializer checked influences the outputs: %s",
			 summary);
		rc = c->fn(c->ctx, NX_FUNCTIONAL_INFO, NX_F_LIVENESS_CHECKED, NX_FUNCTIONAL_MODEL, 0, msg);
	}
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
	return c->fn(c->ctx, NX_FUNCTIONAL_INFO, NX_F_FUNCTIONAL_SANDBOX, NULL, 0, desc);
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
			  NX_FUNCTIONAL_WARN, NX_F_FUNCTIONAL_SANDBOX_UNAVAILABLE, NULL, 0, msg);
	}
	if ((rc = name_backend(&c)) != 0)
		return rc;
	if (o->selftest && (rc = selftest(&c, err)) != 0)
		return rc;
	if (o->liveness && !c.selftest_failed && (rc = liveness(&c, err)) != 0)
		return rc;
	if (o->imports)
		return nx_fx__imports(&c, err);
	return 0;
}
