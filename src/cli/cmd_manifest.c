/*
 * cmd_manifest.c - `nexus manifest BUNDLE`: the manifest in forms that other
 * tools check independently (openssl, sha256sum).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"
#include "nexus/manifest.h"

enum { OPT_SIGNED = 1, OPT_SUMS, OPT_JSON };

static const struct cli_opt opts[] = {
	{ "signed-bytes", 0, NULL, "print exactly the bytes the signature covers", OPT_SIGNED },
	{ "sha256sum", 0, NULL, "print '<sha256>  <path>' lines for 'sha256sum -c'", OPT_SUMS },
	{ "json", 0, NULL, "print the manifest, re-serialized canonically (default)", OPT_JSON },
	{0},
};

static int emit(int mode, const nx_manifest *m, nx_error *err)
{
	char *buf = NULL;
	size_t len, i;
	int rc = 0;

	if (mode == OPT_SUMS) {
		for (i = 0; i < m->nfiles; i++) {
			char hex[2 * NX_SHA256_LEN + 1];

			nx_hex(hex, m->files[i].sha256);
			printf("%s  %s\n", hex, m->files[i].path);
		}
	} else {
		rc = mode == OPT_SIGNED ? nx_manifest_signed_bytes(&buf, &len, m, err)
					: nx_manifest_serialize(&buf, &len, m, err);
		if (!rc)
			fwrite(buf, 1, len, stdout);
		free(buf);
	}
	if (!rc && (fflush(stdout) != 0 || ferror(stdout)))
		rc = nx_error_errno(err, NX_EIO, errno, NULL, "cannot write to standard output");
	return rc;
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	nx_manifest *m = NULL;
	struct cli_parser p;
	nx_error err;
	int k, mode = 0, dirfd, rc;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		if (mode && mode != k)
			return cli_usage(verb, "choose one of --signed-bytes, --sha256sum, --json");
		mode = k;
	}
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos != 1)
		return cli_usage(verb, "expected exactly one BUNDLE directory");
	if (!mode)
		mode = OPT_JSON;
	nx_error_clear(&err);
	dirfd = open(p.pos[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		nx_error_errno(&err, NX_EIO, errno, p.pos[0], "cannot open bundle %s", p.pos[0]);
		return cli_fail(verb->name, &err);
	}
	rc = nx_manifest_load(&m, dirfd, NULL, &err);
	close(dirfd);
	if (!rc)
		rc = emit(mode, m, &err);
	nx_manifest_free(m);
	return rc ? cli_fail(verb->name, &err) : 0;
}

const struct cli_verb cmd_manifest = {
	.name = "manifest",
	.args = "BUNDLE",
	.summary = "print a bundle's manifest, signed bytes or sha256sum lines",
	.details = "Loads BUNDLE/manifest.json strictly (canonical form, known keys, safe paths)\n"
		   "without checking the signature or the files.  --signed-bytes prints the\n"
		   "message 'openssl pkeyutl -verify -rawin' checks; --sha256sum prints lines\n"
		   "that '(cd BUNDLE && sha256sum -c)' accepts.  See docs/FORMAT.md.",
	.opts = opts,
	.run = run,
};
