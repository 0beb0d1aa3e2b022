/* cmd_push.c - `nexus push BUNDLE REF`: verify, then upload to a registry. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "nexus/attest.h"
#include "nexus/fs.h"
#include "nexus/oci.h"

enum { OPT_NO_VERIFY = 1, OPT_MOUNT_FROM, OPT_ATTEST };

static const struct cli_opt opts[] = {
	{"no-verify", 0, NULL, "push without verifying the bundle first", OPT_NO_VERIFY},
	{"mount-from", 0, "REPO", "mount blobs the registry has in REPO instead of uploading them",
	 OPT_MOUNT_FROM},
	{"chunk-size", 0, "SIZE", "blobs over SIZE go up in PATCH chunks of SIZE (default 64MiB)",
	 CLI_OCI_CHUNK},
	{"attest", 0, "FILE", "attach this attestation ('nexus verify --attest') to the artifact",
	 OPT_ATTEST},
	CLI_OCI_OPTS,
	{0},
};

/* The attestation file: capped; with --pubkey, it must hold for this
 * bundle (what `nexus pull --require-attestation` will check). */
static int read_attestation(char **out, size_t *out_len, struct cli_oci *r, int dfd,
			    const char *path, nx_error *err)
{
	struct nx_attest_info info;
	unsigned char sha[NX_SHA256_LEN];
	char *mjson = NULL;
	size_t mlen;
	int rc;

	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot open the attestation %s", path);
	rc = nx_fs_read_fd(out, out_len, fd, path, NX_ATTEST_MAX, err);
	close(fd);
	if (rc || !r->nkeys)
		return rc;
	if (!(rc = nx_fs_read_all(&mjson, &mlen, dfd, NX_MANIFEST_NAME, NX_MANIFEST_MAX, err)) &&
	    !(rc = nx_sha256_buf(sha, mjson, mlen)))
		rc = nx_attest_check(&info, *out, *out_len, r->keys, r->nkeys, sha, err);
	free(mjson);
	if (rc) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* The same checks as `nexus verify`: a FAIL (or WARN under nothing) stops the push. */
static int verify_first(struct cli_oci *r, int dfd, const char *bundle, nx_error *err)
{
	struct nx_verify_opts vo;
	nx_report *rep = NULL;
	int rc;

	cli_oci_verify_opts(r, &vo);
	cli_status("push", "verifying %s", bundle);
	rc = nx_verify_bundle(&rep, dfd, bundle, &vo, err);
	cli_status("push", NULL);
	if (!rc && nx_report_verdict(rep) == NX_VERDICT_FAIL) {
		cli_oci_findings("push", rep);
		rc = nx_error_set(err, NX_ECHECK, bundle, 0, -1,
				  "%s fails verification (findings above; 'nexus verify %s' for the "
				  "report); not pushed", bundle, bundle);
	}
	nx_report_free(rep);
	return rc;
}

static int print_json(const char *ref, const struct nx_oci_push_result *res)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I}", "schema", "nexus.push.v1",
			      "reference", ref, "digest", res->digest,
			      "blobs_uploaded", (json_int_t)res->blobs_uploaded,
			      "blobs_skipped", (json_int_t)res->blobs_skipped,
			      "blobs_mounted", (json_int_t)res->blobs_mounted,
			      "bytes_uploaded", (json_int_t)res->bytes_uploaded);

	if (o && res->attestation[0] &&
	    (json_object_set_new(o, "attestation", json_string(res->attestation)) ||
	     json_object_set_new(o, "attached_by", json_string(res->referrers_tag ? "tag" :
								"referrers"))))
		json_decref(o), o = NULL;

	return cli_oci_print_json(o);
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	struct cli_oci r = { .verb = "push" };
	struct nx_oci_push_result res;
	struct cli_parser p;
	nx_oci_ref *ref = NULL;
	bool verify = true;
	const char *attest = NULL;
	char *env = NULL;
	nx_error err;
	char shown[NX_OCI_REF_MAX + 80];
	int k, dfd = -1, status = 0;

	nx_error_clear(&err);
	nx_oci_opts_init(&r.o);
	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		if (k == OPT_NO_VERIFY)
			verify = false;
		else if (k == OPT_MOUNT_FROM)
			r.o.mount_from = p.optarg;
		else if (k == OPT_ATTEST)
			attest = p.optarg;
		else if ((status = cli_oci_opt(&r, verb, k, p.optarg)))
			goto out;
	}
	if (k < 0) {
		status = k == -1 ? 0 : 2;
		goto out;
	}
	if (p.npos != 2) {
		status = cli_usage(verb, "expected a BUNDLE directory and a REF (HOST[:PORT]/REPO[:TAG])");
		goto out;
	}
	if ((status = cli_oci_finish(&r, verb)))
		goto out;
	r.o.progress = cli_oci_progress;
	r.o.progress_ctx = &r;
	if (nx_oci_ref_parse(&ref, p.pos[1], &err))
		goto fail;
	dfd = open(p.pos[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		nx_error_errno(&err, NX_EIO, errno, p.pos[0], "cannot open bundle directory %s", p.pos[0]);
		goto fail;
	}
	if (verify && verify_first(&r, dfd, p.pos[0], &err))
		goto fail;
	if (attest) {
		if (read_attestation(&env, &r.o.attestation_len, &r, dfd, attest, &err))
			goto fail;
		r.o.attestation = env;
	}
	if (nx_oci_push(&res, dfd, p.pos[0], ref, &r.o, &err))
		goto fail;
	cli_status(verb->name, NULL);
	snprintf(shown, sizeof(shown), "%s/%s%s%s@%s", ref->registry, ref->repository,
		 ref->tag ? ":" : "", ref->tag ? ref->tag : "", res.digest);
	if (r.json)
		status = print_json(shown, &res);
	else
		printf("%s\n", shown);
	goto out;
fail:
	cli_status(verb->name, NULL);
	status = cli_fail(verb->name, &err);
out:
	if (dfd >= 0)
		close(dfd);
	nx_oci_ref_free(ref);
	cli_oci_release(&r);
	free(env);
	return status;
}

const struct cli_verb cmd_push = {
	.name = "push",
	.args = "BUNDLE REF",
	.summary = "verify a bundle and push it to an OCI registry",
	.details =
	"Verifies BUNDLE (the checks of 'nexus verify'; --no-verify skips them), then\n"
	"uploads it to REF (HOST[:PORT]/REPOSITORY[:TAG]) as the OCI artifact of\n"
	"docs/FORMAT.md section 8: the config, manifest.json, then one layer per file\n"
	"whose digest is the file's SHA-256 in the manifest.  Blobs the registry has\n"
	"are skipped.  Prints REF@sha256:<digest of the image manifest>; the same\n"
	"bundle always gives the same digest.  --attest FILE attaches an attestation\n"
	"('nexus verify --attest') as an OCI referrer of the artifact (FORMAT.md\n"
	"section 8.5; checked first against --pubkey when given).  Credentials:\n"
	"~/.docker/config.json ($DOCKER_CONFIG) auths, or --username with\n"
	"--password-stdin.",
	.opts = opts,
	.run = run,
};
