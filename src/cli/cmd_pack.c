/*
 * cmd_pack.c - `nexus pack BUNDLE -o FILE.nexus` and `nexus unpack FILE -o
 * DIR`: a bundle as one deterministic tar file and back (nexus/pack.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "nexus/config.h"
#include "nexus/pack.h"

enum { OPT_OUTPUT = 1, OPT_FORCE, OPT_ZSTD, OPT_ZSTD_LEVEL, OPT_MAX_SIZE, OPT_TRUSTED_LIST };

static const struct cli_opt pack_opts[] = {
	{"output", 'o', "FILE", "write the archive to FILE (required; e.g. model.nexus)",
	 OPT_OUTPUT},
	{"zstd", 0, NULL, "compress with zstd (level 3)", OPT_ZSTD},
	{"zstd-level", 0, "N", "compress with zstd at level N (1..19)", OPT_ZSTD_LEVEL},
	{"force", 0, NULL, "replace FILE if it exists", OPT_FORCE},
	{"json", 0, NULL, "print the result as one JSON document (schema nexus.pack.v1)",
	 CLI_OCI_JSON},
	{0},
};

static int pack_run(const struct cli_verb *verb, int argc, char **argv)
{
	struct nx_pack_opts o = { 0 };
	struct nx_pack_result res;
	struct cli_parser p;
	const char *out = NULL;
	bool json = false;
	nx_error err;
	char *end;
	int k;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		if (k == OPT_OUTPUT)
			out = p.optarg;
		else if (k == OPT_FORCE)
			o.force = true;
		else if (k == OPT_ZSTD)
			o.zstd_level = 3;
		else if (k == OPT_ZSTD_LEVEL) {
			o.zstd_level = (int)strtol(p.optarg, &end, 10);
			if (*end || o.zstd_level < 1 || o.zstd_level > 19)
				return cli_usage(verb, "--zstd-level takes 1 to 19, not '%s'", p.optarg);
		} else if (k == CLI_OCI_JSON)
			json = true;
	}
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos != 1 || !out)
		return cli_usage(verb, "expected one BUNDLE directory and -o FILE");
	nx_error_clear(&err);
	if (nx_pack(&res, p.pos[0], out, &o, &err))
		return cli_fail(verb->name, &err);
	if (json)
		return cli_oci_print_json(json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I}",
			"schema", "nexus.pack.v1", "bundle", p.pos[0], "output", out,
			"compression", o.zstd_level ? "zstd" : "none", "files", (json_int_t)res.files,
			"bytes", (json_int_t)res.bytes, "archive_bytes", (json_int_t)res.archive_bytes));
	printf("packed %s into %s (%zu files, %llu bytes%s)\n", p.pos[0], out, res.files,
	       (unsigned long long)res.archive_bytes, o.zstd_level ? ", zstd" : "");
	return 0;
}

const struct cli_verb cmd_pack = {
	.name = "pack",
	.args = "BUNDLE",
	.summary = "write a bundle as one deterministic archive (POSIX tar, optionally zstd)",
	.details =
	"Writes manifest.json, then every file of the manifest in its order, with the\n"
	"manifest's modes, mtime = the build timestamp, uid/gid 0 and no user names:\n"
	"the same bundle always gives the same bytes.  Each file's size and SHA-256\n"
	"are checked against the manifest while it is read; a bundle that does not\n"
	"match is refused and nothing is written.  The file appears atomically.\n"
	"'nexus unpack' turns it back into a verified bundle (docs/FORMAT.md §9).",
	.opts = pack_opts,
	.run = pack_run,
};

static const struct cli_opt unpack_opts[] = {
	{"output", 'o', "DIR", "publish the bundle at DIR (required)", OPT_OUTPUT},
	{"force", 0, NULL, "replace DIR if it exists", OPT_FORCE},
	{"max-size", 0, "SIZE", "refuse archives that unpack to more than SIZE (default 64GiB)",
	 OPT_MAX_SIZE},
	{"trusted-list", 0, "FILE", "trusted runtime releases, as for 'nexus verify'",
	 OPT_TRUSTED_LIST},
	{"pubkey", 0, "PUB", "trust this Ed25519 public key (PEM); repeatable", CLI_OCI_PUBKEY},
	{"require-signature", 0, NULL, "an unsigned manifest is refused", CLI_OCI_REQUIRE_SIG},
	{"no-sandbox", 0, NULL, "verify without the functional check (TRV-5)", CLI_OCI_NO_SANDBOX},
	{"json", 0, NULL, "print the result as one JSON document (schema nexus.unpack.v1)",
	 CLI_OCI_JSON},
	{0},
};

static int unpack_run(const struct cli_verb *verb, int argc, char **argv)
{
	struct cli_oci r = { .verb = "unpack" };
	struct nx_unpack_result res = { 0 };
	struct nx_unpack_opts uo = { 0 };
	struct nx_verify_opts vo;
	struct cli_parser p;
	const char *dir = NULL, *tl = NULL;
	nx_error err;
	int k, status = 0;

	nx_error_clear(&err);
	nx_oci_opts_init(&r.o);
	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		if (k == OPT_OUTPUT)
			dir = p.optarg;
		else if (k == OPT_FORCE)
			uo.force = true;
		else if (k == OPT_TRUSTED_LIST)
			tl = p.optarg;
		else if (k == OPT_MAX_SIZE && nx_parse_size(&uo.max_bytes, p.optarg, &err)) {
			status = cli_usage(verb, "--max-size: %s", err.message);
			goto out;
		} else if (k != OPT_MAX_SIZE && (status = cli_oci_opt(&r, verb, k, p.optarg)))
			goto out;
	}
	if (k < 0) {
		status = k == -1 ? 0 : 2;
		goto out;
	}
	if (p.npos != 1 || !dir) {
		status = cli_usage(verb, "expected one archive FILE and -o DIR");
		goto out;
	}
	if ((status = cli_oci_finish(&r, verb)))
		goto out;
	cli_oci_verify_opts(&r, &vo);
	vo.trusted_list = tl;
	uo.verify = &vo;
	uo.on_stage = cli_stage_guard;
	cli_stage_guard_install();
	if (nx_unpack(&res, p.pos[0], dir, &uo, &err)) {
		if (res.report)
			cli_oci_findings(verb->name, res.report);
		status = cli_fail(verb->name, &err);
		goto out;
	}
	if (r.json) {
		char *rj = NULL;
		json_t *rep = NULL;

		if (res.report && !nx_report_json(&rj, res.report, NULL))
			rep = json_loads(rj, 0, NULL);
		free(rj);
		status = cli_oci_print_json(json_pack("{s:s, s:s, s:s, s:I, s:I, s:o?}",
			"schema", "nexus.unpack.v1", "archive", p.pos[0], "output", dir,
			"files", (json_int_t)res.files, "bytes", (json_int_t)res.bytes,
			"verify", rep));
	} else {
		printf("unpacked %s into %s (%zu files, verified)\n", p.pos[0], dir, res.files);
	}
out:
	nx_report_free(res.report);
	cli_oci_release(&r);
	return status;
}

const struct cli_verb cmd_unpack = {
	.name = "unpack",
	.args = "FILE",
	.summary = "unpack an archive of 'nexus pack', verify it, publish it atomically",
	.details =
	"The archive is untrusted: its first member, manifest.json, decides what may\n"
	"follow.  Links, special files, '..', absolute paths, members not listed or\n"
	"listed twice, sizes other than the manifest's, truncated archives, more than\n"
	"--max-size in all or more than 200 times the archive's size are refused.\n"
	"Files stream into a staging directory beside DIR with a running SHA-256, get\n"
	"the manifest's modes, are verified (the checks of 'nexus verify') and only\n"
	"then appear at DIR, atomically.  Any failure leaves nothing at DIR.",
	.opts = unpack_opts,
	.run = unpack_run,
};
