/*
 * build_verify.c - the build's self-verification: the published bundle must
 * pass `nexus verify`, so the same checks run on the sealed stage, with the
 * workspace's own extra terms, size limits and signing key.
 *
 * What the build itself has just established is not redone (and so costs
 * no second pass over a multi-GB model): the digests were taken while
 * writing (nx_build__put/build_copy/export), the teacher fingerprints were
 * compared by the export step with the same module and allow list, and the
 * golden selftest outputs were computed by the bundle's own runtime in the
 * same sandbox moments ago.  Everything else - the tree, modes, allowlist,
 * code, weights, size, the Python imports in the sandbox - is checked
 * exactly as `nexus verify` checks it, under the policy the manifest
 * records.  See docs/BENCHMARKS.md.
 *
 * A signed build publishes only what the deployment gate passes: `nexus
 * verify --strict --require-signature --teacher ...` (tests/e2e/
 * test_insider.py), so a WARN blocks it too, and its selftest runs again.
 */
#include "build_int.h"
#include "nexus/bundle.h"

#include <string.h>

#include "nexus/sign.h"
#include "nexus/verify.h"

int nx_build__verify(struct build *b)
{
	struct nx_verify_opts vo;
	nx_report *rep = NULL;
	nx_key *signer = NULL;
	const struct nx_finding *f;
	size_t i, n, nfail = 0, nwarn = 0;
	int rc;

	rc = nx_stage_seal(b->stage, b->err);
	if (rc)
		return rc;
	nx_verify_opts_init(&vo);
	/* The limits, terms and imports are the manifest's policy, which this
	 * build wrote: what it records is exactly what is enforced here. */
	vo.trust_policy = true;
	vo.strict = b->opts->strict;
	vo.vocab_reference = b->opts->vocab_reference;
	vo.runtime_dir = b->opts->runtime_dir;
	vo.functional = b->opts->functional;
	vo.sandbox = b->opts->sandbox;
	vo.sandbox_memory = b->opts->sandbox_memory ? b->opts->sandbox_memory : b->ws->sandbox_memory;
	vo.functional_imports_only = true;
	vo.digests_known = true;
	/* A signed build checks its signature with the public half of its key,
	 * and runs the selftest again as the gate will: golden outputs written
	 * once prove nothing about a model whose outputs change from run to run
	 * (a RandomUniformLike node), which the gate would then FAIL. */
	if (b->opts->key) {
		signer = (nx_key *)b->opts->key;
		vo.keys = &signer;
		vo.nkeys = 1;
		vo.functional_imports_only = false;
	}
	rc = nx_verify_bundle(&rep, nx_stage_dirfd(b->stage), nx_stage_path(b->stage), &vo, b->err);
	if (rc)
		goto out;
	/*
	 * A finding in a file copied from the workspace names the workspace
	 * file, the one to edit (the filter keeps the sources' line numbers);
	 * the bin/ and lib/ runtime and the exported model keep their paths.
	 */
	for (i = 0; i < b->nin; i++)
		if (b->in[i].kind != BUILD_COPY || !strncmp(b->in[i].dst, NX_BUNDLE_TOKENIZER_DIR "/", 16))
			if (nx_report_rename_path(rep, b->in[i].dst, b->in[i].src)) {
				rc = nx_error_oom(b->err, NULL);
				goto out;
			}
	f = nx_report_findings(rep, &n);
	for (i = 0; i < n; i++) {
		nfail += f[i].severity == NX_SEV_FAIL;
		nwarn += f[i].severity == NX_SEV_WARN;
	}
	if (nx_report_verdict(rep) == NX_VERDICT_FAIL)
		rc = nx_error_set(b->err, NX_ECHECK, b->opts->output, 0, -1,
				  "self-verification failed with %zu finding(s); nothing was "
				  "published (see the findings above, or docs/TRV.md)", nfail);
	/* A signed bundle is one the deployment gate will see with --strict,
	 * where a WARN fails: signing it would publish what the gate refuses. */
	else if (signer && nwarn)
		rc = nx_error_set(b->err, NX_ECHECK, b->opts->output, 0, -1,
				  "self-verification found %zu warning(s), which fail `nexus verify "
				  "--strict`; a signed bundle must pass it, so nothing was published "
				  "(fix them - see the findings above, or docs/TRV.md - or build "
				  "without --key)", nwarn);
	if (b->opts->report) {
		*b->opts->report = rep;
		rep = NULL;
	}
out:
	nx_report_free(rep);
	return rc;
}
