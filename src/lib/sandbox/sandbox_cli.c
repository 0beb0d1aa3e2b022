/*
 * sandbox_cli.c - nx_sandbox_run_cli(): the bundle's own runtime in the
 * sandbox, used by `nexus build` (golden selftest outputs) and `nexus run`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/elf.h"
#include "nexus/sandbox.h"

#define CLI_ARGS_MAX 256

int nx_sandbox_run_cli(struct nx_sandbox_result *out, const struct nx_sandbox_opts *o,
		       const char *bundle_path, const char *const *args, nx_error *err)
{
	const char *argv[CLI_ARGS_MAX + 2];
	struct nx_sandbox_opts so;
	char **libs = NULL, *bin = NULL;
	const char **paths = NULL, **bins = NULL;
	size_t nlibs = 0, i, n = 0, nextra = 0;
	int rc;

	argv[n++] = NX_SANDBOX_BUNDLE "/bin/nexus_cli";
	for (i = 0; args && args[i]; i++) {
		if (n > CLI_ARGS_MAX)
			return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
					    "more than %d arguments for bin/nexus_cli", CLI_ARGS_MAX);
		argv[n++] = args[i];
	}
	argv[n] = NULL;
	if (asprintf(&bin, "%s/bin/nexus_cli", bundle_path) < 0)
		return nx_error_oom(err, NULL);
	for (i = 0; o->ro_paths && o->ro_paths[i]; i++)
		nextra++;
	if (!(bins = calloc(nextra + 1, sizeof(*bins)))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	bins[0] = bin;
	for (i = 0; i < nextra; i++)
		bins[i + 1] = o->ro_paths[i];
	rc = nx_elf_closure(&libs, &nlibs, bins, nextra + 1, bundle_path, err);
	if (rc)
		goto out;
	paths = calloc(nlibs + nextra + 1, sizeof(*paths));
	if (!paths) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (i = 0; i < nlibs; i++)
		paths[i] = libs[i];
	for (i = 0; i < nextra; i++)   /* the closure lists what they need, not them */
		paths[nlibs + i] = o->ro_paths[i];
	so = *o;
	so.argv = argv;
	so.ro_paths = paths;
	rc = nx_sandbox_run(out, &so, err);
out:
	free(bins);
	free(paths);
	nx_elf_closure_free(libs, nlibs);
	free(bin);
	return rc;
}
