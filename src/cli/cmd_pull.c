/* cmd_pull.c - `nexus pull REF -o DIR`: fetch, check, verify, publish. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "nexus/oci.h"

enum { OPT_OUTPUT = 1, OPT_FORCE, OPT_TRUSTED_LIST, OPT_REQUIRE_ATTEST, OPT_NO_FSYNC };

static const struct cli_opt opts[] = {
	{"output", 'o', "DIR", "publish the bundle at DIR (required)", OPT_OUTPUT},
	{"force", 0, NULL, "replace DIR if it exists", OPT_FORCE},
	{"no-fsync", 0, NULL, "publish without waiting for the disk (atomic, not durable: for "
	 "throw-away CI hosts)", OPT_NO_FSYNC},
	{"trusted-list", 0, "FILE", "trusted runtime releases, as for 'nexus verify'",
	 OPT_TRUSTED_LIST},
	{"require-attestation", 0, NULL, "refuse an artifact without an attestation signed by a "
	 "--pubkey key for its manifest.json (before downloading its files)", OPT_REQUIRE_ATTEST},
	CLI_OCI_OPTS,
	{0},
};

static int print_json(const char *ref, const char *dir, const struct nx_oci_pull_result *res)
{
	char *rj = NULL;
	json_t *o, *rep = NULL;

	if (res->report && !nx_report_json(&rj, res->report, NULL))
		rep = json_loads(rj, 0, NULL);
	o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:o?, s:s*}", "schema", "nexus.pull.v1",
		      "reference", ref, "digest", res->digest, "output", dir,
		      "files", (json_int_t)res->files, "bytes", (json_int_t)res->bytes,
		      "verify", rep, "attested_by", res->attested_by[0] ? res->attested_by : NULL);
	free(rj);
	return cli_oci_print_json(o);
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	struct cli_oci r = { .verb = "pull" };
	struct nx_oci_pull_result res = { 0 };
	struct nx_oci_pull_opts po = { 0 };
	struct nx_verify_opts vo;
	struct cli_parser p;
	nx_oci_ref *ref = NULL;
	const char *dir = NULL;
	nx_error err;
	int k, status = 0;

	nx_error_clear(&err);
	nx_oci_opts_init(&r.o);
	cli_init(&p, verb, argc, argv);
	cli_oci_verify_opts(&r, &vo);
	while ((k = cli_next(&p)) > 0) {
		if (k == OPT_OUTPUT)
			dir = p.optarg;
		else if (k == OPT_FORCE)
			po.force = true;
		else if (k == OPT_NO_FSYNC)
			po.no_fsync = true;
		else if (k == OPT_REQUIRE_ATTEST)
			po.require_attestation = true;
		else if (k == OPT_TRUSTED_LIST)
			vo.trusted_list = p.optarg;
		else if ((status = cli_oci_opt(&r, verb, k, p.optarg)))
			goto out;
	}
	if (k < 0) {
		status = k == -1 ? 0 : 2;
		goto out;
	}
	if (p.npos != 1 || !dir) {
		status = cli_usage(verb, "expected one REF (HOST[:PORT]/REPO[:TAG][@sha256:...]) and -o DIR");
		goto out;
	}
	if (po.require_attestation && !r.nkeys) {
		status = cli_usage(verb, "--require-attestation needs --pubkey (the release's key)");
		goto out;
	}
	if ((status = cli_oci_finish(&r, verb)))
		goto out;
	{
		const char *tl = vo.trusted_list;

		cli_oci_verify_opts(&r, &vo);
		vo.trusted_list = tl;
	}
	po.keys = r.keys;
	po.nkeys = r.nkeys;
	po.require_signature = r.require_sig;
	po.verify = &vo;
	po.on_stage = cli_stage_guard;
	cli_stage_guard_install();
	r.o.progress = cli_oci_progress;
	r.o.progress_ctx = &r;
	if (nx_oci_ref_parse(&ref, p.pos[0], &err))
		goto fail;
	if (nx_oci_pull(&res, ref, dir, &r.o, &po, &err)) {
		if (res.report)
			cli_oci_findings(verb->name, res.report);
		goto fail;
	}
	cli_status(verb->name, NULL);
	if (r.json)
		status = print_json(p.pos[0], dir, &res);
	else
		printf("pulled %s@%s into %s (%zu files, verified%s%s)\n", p.pos[0], res.digest, dir,
		       res.files, res.attested_by[0] ? ", attested by key " : "", res.attested_by);
	goto out;
fail:
	cli_status(verb->name, NULL);
	status = cli_fail(verb->name, &err);
out:
	nx_report_free(res.report);
	nx_oci_ref_free(ref);
	cli_oci_release(&r);
	return status;
}

const struct cli_verb cmd_pull = {
	.name = "pull",
	.args = "REF",
	.summary = "pull a bundle from an OCI registry, verify it, publish it atomically",
	.details =
	"Fetches REF's image manifest (at most 4 MiB; checked against @sha256: when\n"
	"given), then manifest.json, whose signature is checked (--pubkey,\n"
	"--require-signature) before any file is downloaded.  The artifact's layers\n"
	"must be exactly the manifest's files (path, digest, size).  Each file streams\n"
	"into a staging directory with a running SHA-256 and its declared size as a\n"
	"hard cap; interrupted downloads resume.  The staged bundle gets the bundle\n"
	"modes, is verified (the checks of 'nexus verify') and only then appears at\n"
	"DIR, atomically.  Any failure leaves nothing at DIR.  --require-attestation\n"
	"also needs an attestation referrer ('nexus push --attest') signed by a --pubkey\n"
	"key for this manifest.json with a PASS or WARN verdict, checked before any\n"
	"file is downloaded.",
	.opts = opts,
	.run = run,
};
