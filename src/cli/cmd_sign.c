/*
 * cmd_sign.c - `nexus sign BUNDLE --key KEY`: (re)sign a bundle's manifest in
 * place.  The bundle directory is 0555, so it gains u+w only for the atomic
 * rename of manifest.json and gets its mode back on every path.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "nexus/bundle.h"
#include "nexus/manifest.h"
#include "nexus/sign.h"
#include "nexus/verify.h"

enum { OPT_KEY = 1, OPT_JSON };

static const struct cli_opt opts[] = {
	{ "key", 'k', "KEY", "private key PEM (from 'nexus keygen', mode 0600)", OPT_KEY },
	{ "json", 0, NULL, "print the result as one JSON object", OPT_JSON },
	{0},
};

/* Sign the loaded manifest and replace manifest.json; dirfd's mode restored. */
static int sign_bundle(int dirfd, const char *bundle, nx_manifest *m, const nx_key *key,
		       nx_error *err)
{
	struct stat st;
	bool opened = false;
	int rc;

	if ((rc = nx_manifest_sign(m, key, err)))
		return rc;
	if (fstat(dirfd, &st) != 0)
		return nx_error_errno(err, NX_EIO, errno, bundle, "cannot stat %s", bundle);
	if (!(st.st_mode & S_IWUSR)) {
		if (fchmod(dirfd, (st.st_mode & 07777) | S_IWUSR) != 0)
			return nx_error_errno(err, NX_EIO, errno, bundle,
					      "cannot make %s writable to replace its manifest",
					      bundle);
		opened = true;
	}
	rc = nx_manifest_write_atomic(dirfd, m, err);
	if (opened && fchmod(dirfd, st.st_mode & 07777) != 0 && rc == 0)
		rc = nx_error_errno(err, NX_EIO, errno, bundle,
				    "signed, but cannot restore the mode of %s; run 'chmod %o %s'",
				    bundle, (unsigned)(st.st_mode & 07777), bundle);
	return rc;
}

/* The files must be those the manifest lists (sizes and SHA-256) before a
 * signature vouches for them: a modified bundle is refused (NX_ECHECK). */
static int check_integrity(int dirfd, const char *bundle, nx_error *err)
{
	struct nx_verify_opts vo;
	const struct nx_finding *f;
	nx_report *rep = NULL;
	size_t i, n;
	int rc;

	nx_verify_opts_init(&vo);
	vo.integrity_only = true;
	vo.functional = false;
	if ((rc = nx_verify_bundle(&rep, dirfd, bundle, &vo, err)))
		return rc;
	f = nx_report_findings(rep, &n);
	for (i = 0; i < n && f[i].severity != NX_SEV_FAIL; i++)
		;
	if (i < n)
		rc = nx_error_set(err, NX_ECHECK, f[i].path, 0, -1,
				  "%s/%s: %s (%s); the bundle is not what its manifest lists, so it "
				  "is not signed: rebuild it with nexus build", bundle,
				  f[i].path && f[i].path[0] ? f[i].path : NX_MANIFEST_NAME, f[i].message, f[i].code);
	else if (nx_report_verdict(rep) == NX_VERDICT_FAIL)
		rc = nx_error_set(err, NX_ECHECK, bundle, 0, -1,
				  "%s fails its integrity check, so it is not signed: rebuild it",
				  bundle);
	nx_report_free(rep);
	return rc;
}

static int print_json(const char *bundle, const char *id, const char *sig)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s}", "schema", "nexus.sign.v1", "bundle", bundle,
			      "key_id", id, "signature", sig);
	char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;

	json_decref(o);
	if (!s)
		return -1;
	printf("%s\n", s);
	free(s);
	return 0;
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	const char *keypath = NULL, *bundle;
	char id[NX_KEY_ID_LEN + 1];
	nx_manifest *m = NULL;
	nx_key *key = NULL;
	struct cli_parser p;
	bool json = false;
	nx_error err;
	int k, dirfd = -1, status = 0;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		if (k == OPT_KEY)
			keypath = p.optarg;
		else if (k == OPT_JSON)
			json = true;
	}
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos != 1)
		return cli_usage(verb, "expected exactly one BUNDLE directory");
	if (!keypath)
		return cli_usage(verb, "--key KEY is required");
	bundle = p.pos[0];
	nx_error_clear(&err);
	if (nx_key_load_private(&key, keypath, &err) != 0)
		goto fail;
	dirfd = open(bundle, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		nx_error_errno(&err, NX_EIO, errno, bundle, "cannot open bundle %s", bundle);
		goto fail;
	}
	if (nx_manifest_load(&m, dirfd, NULL, &err) != 0 ||
	    check_integrity(dirfd, bundle, &err) != 0 ||
	    sign_bundle(dirfd, bundle, m, key, &err) != 0)
		goto fail;
	nx_key_id(id, key);
	if (json) {
		if (print_json(bundle, id, m->signature) != 0)
			status = 3;
	} else {
		printf("signed %s/manifest.json with key %s\n", bundle, id);
	}
	goto out;
fail:
	status = cli_fail(verb->name, &err);
out:
	if (dirfd >= 0)
		close(dirfd);
	nx_manifest_free(m);
	nx_key_free(key);
	return status;
}

const struct cli_verb cmd_sign = {
	.name = "sign",
	.args = "BUNDLE",
	.summary = "sign (or re-sign) a bundle's manifest with an Ed25519 key",
	.details = "Loads BUNDLE/manifest.json strictly, replaces its signature with one made\n"
		   "by KEY over the signed bytes ('nexus manifest BUNDLE --signed-bytes'), and\n"
		   "replaces manifest.json atomically.  The files are checked against the\n"
		   "manifest first (integrity: exactly the listed files, sizes and SHA-256); a\n"
		   "modified bundle is not signed (exit 1, the file named).  The other checks\n"
		   "are 'nexus verify''s.",
	.opts = opts,
	.run = run,
};
