/*
 * build_selftest.c - config/selftest.json, the bundle's golden outputs.
 *
 * They are produced by the bundle's own bin/nexus_cli, run on the staged
 * tree inside the TRV-5 sandbox (`selftest --write --output -`), so the
 * golden file records what this exact runtime computes on this exact model,
 * and a student that cannot run in the runtime fails the build here.
 * Support for the selftest step (build_assemble.c) and for the quantization
 * gate and the dead-weight check, which run the bundle the same way.
 */
#include "build_int.h"
#include "nexus/bundle.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/sandbox.h"

#define SELFTEST_ARGS_MAX 200      /* nexus.yaml selftest: texts passed as --text */
#define SELFTEST_WALL_MS 120000
#define SELFTEST_TAIL 400
#define RUNTIME_BLAME "nexus_cli selftest: error: config/runtime.yaml: "

/* Used when nexus.yaml lists no selftest texts: the bundle is still run. */
static const char *const default_texts[] = { "nexus selftest" };

/* The last non-empty line of s[0..len), its length in *n. */
static const char *last_line(const char *s, size_t len, size_t *n)
{
	const char *nl;

	while (len && (s[len - 1] == '\n' || s[len - 1] == ' '))
		len--;
	while ((nl = memchr(s, '\n', len))) {
		len -= (size_t)(nl + 1 - s);
		s = nl + 1;
	}
	*n = len;
	return s;
}

int nx_build__sandbox_opts(struct build *b, struct nx_sandbox_opts *so, uint64_t wall_ms)
{
	nx_error why;

	nx_error_clear(&why);
	nx_sandbox_opts_init(so);
	if (nx_sandbox_available(&so->backend, b->opts->sandbox, NULL, &why) != 0)
		return nx_error_set(b->err, NX_EDEP, NULL, 0, -1,
				    "cannot run the bundle's selftest in a sandbox: %s", why.message);
	so->bundle_dirfd = nx_stage_dirfd(b->stage);
	so->wall_ms = wall_ms;
	nx_sandbox_scale(so, (uint64_t)b->student_st.st_size + b->data_size,
			 b->opts->sandbox_memory ? b->opts->sandbox_memory : b->ws->sandbox_memory);
	return 0;
}

int nx_build__selftest_run(struct build *b, struct nx_sandbox_result *rp)
{
	const char *args[2 * SELFTEST_ARGS_MAX + 10];
	const char *const *texts = (const char *const *)b->ws->selftest;
	size_t ntexts = b->ws->nselftest, i, n = 0;
	struct nx_sandbox_result r = {0};
	struct nx_sandbox_opts so;
	char lim[128];
	const char *hit;
	int rc;

	if (!ntexts) {
		texts = default_texts;
		ntexts = 1;
	}
	if (ntexts > SELFTEST_ARGS_MAX)
		return nx_error_set(b->err, NX_ELIMIT, "nexus.yaml", 0, -1,
				    "nexus.yaml: at most %d selftest texts", SELFTEST_ARGS_MAX);
	args[n++] = "selftest";
	args[n++] = "--write";
	args[n++] = "--bundle";
	args[n++] = NX_SANDBOX_BUNDLE;
	args[n++] = "--output";
	args[n++] = "-";
	args[n++] = "--tolerance";
	args[n++] = BUILD_SELFTEST_TOLERANCE_ARG;
	/* a text of max_sequence_length tokens: a runtime.yaml promising more
	 * positions than the model has fails here, naming both numbers */
	args[n++] = "--long-case";
	for (i = 0; i < ntexts; i++) {
		args[n++] = "--text";
		args[n++] = texts[i];
	}
	args[n] = NULL;
	if ((rc = nx_build__sandbox_opts(b, &so, SELFTEST_WALL_MS)))
		return rc;
	rc = nx_sandbox_run_cli(&r, &so, nx_stage_path(b->stage), args, b->err);
	if (rc)
		goto out;
	if ((hit = nx_sandbox_limit_hit(lim, sizeof(lim), &r, &so))) {
		rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
				  "the student's selftest hit the sandbox's %s and was stopped; raise "
				  "the memory with limits.sandbox_memory in nexus.yaml or "
				  "--sandbox-memory", hit + 4);
		goto out;
	}
	if (!r.exited || r.status != 0 || r.timed_out || r.output_capped || !r.out_len) {
		size_t len = r.errout_len, ln = 0;
		const char *tail = r.errout, *line;

		while (len && (tail[len - 1] == '\n' || tail[len - 1] == ' '))
			len--;
		if (len > SELFTEST_TAIL) {
			tail += len - SELFTEST_TAIL;
			len = SELFTEST_TAIL;
		}
		/* exit 2 and a last line blaming runtime.yaml: it promises what
		 * the model does not do (max_sequence_length above its positions) */
		if (r.exited && r.status == 2 && !r.timed_out &&
		    (line = last_line(r.errout, r.errout_len, &ln)) && ln > sizeof(RUNTIME_BLAME) &&
		    !memcmp(line, RUNTIME_BLAME, sizeof(RUNTIME_BLAME) - 1)) {
			rc = nx_error_set(b->err, NX_ECONFIG, b->ws->runtime_config, 0, -1,
					  "%s does not fit the student: %.*s", b->ws->runtime_config,
					  (int)(ln < 700 ? ln : 700), line);
		} else
			rc = nx_error_set(b->err, NX_ECHECK, b->ws->student.model, 0, -1,
					  "the student does not run in the bundle's runtime "
					  "(bin/nexus_cli selftest --write %s): %.*s",
					  r.timed_out ? "timed out" : r.output_capped ?
					  "printed too much" : "failed", (int)len, tail);
		goto out;
	}
out:
	*rp = r;
	return rc;
}
