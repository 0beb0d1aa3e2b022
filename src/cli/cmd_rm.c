/*
 * cmd_rm.c - `nexus fix-modes BUNDLE` and `nexus rm BUNDLE`: the modes a
 * transport dropped put back, and a read-only bundle removed
 * (nexus/pack.h).
 */
#include <stdio.h>

#include <jansson.h>

#include "cli.h"
#include "nexus/pack.h"

enum { OPT_JSON = 1 };

static const struct cli_opt fix_opts[] = {
	{"json", 0, NULL, "print the result as one JSON document (schema nexus.fix-modes.v1)",
	 OPT_JSON},
	{0},
};

static const struct cli_opt rm_opts[] = {
	{"json", 0, NULL, "print the result as one JSON document (schema nexus.rm.v1)", OPT_JSON},
	{0},
};

/* The one BUNDLE argument and --json; 0 to go on, else an exit status + 1. */
static int parse(const struct cli_verb *verb, int argc, char **argv, const char **bundle,
		 bool *json)
{
	struct cli_parser p;
	int k;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0)
		*json |= k == OPT_JSON;
	if (k < 0)
		return k == -1 ? 1 : 3;
	if (p.npos != 1)
		return cli_usage(verb, "expected one BUNDLE directory") + 1;
	*bundle = p.pos[0];
	return 0;
}

static int fix_run(const struct cli_verb *verb, int argc, char **argv)
{
	const char *bundle = NULL;
	bool json = false;
	size_t changed = 0;
	nx_error err;
	int st;

	if ((st = parse(verb, argc, argv, &bundle, &json)))
		return st - 1;
	nx_error_clear(&err);
	if (nx_bundle_fix_modes(&changed, bundle, &err))
		return cli_fail(verb->name, &err);
	if (json)
		return cli_oci_print_json(json_pack("{s:s, s:s, s:I}", "schema",
						    "nexus.fix-modes.v1", "bundle", bundle,
						    "changed", (json_int_t)changed));
	printf("%s: %zu mode%s restored; now run 'nexus verify %s'\n", bundle, changed,
	       changed == 1 ? "" : "s", bundle);
	return 0;
}

const struct cli_verb cmd_fix_modes = {
	.name = "fix-modes",
	.args = "BUNDLE",
	.summary = "give a bundle's files the modes its manifest records (after cp, zip, S3)",
	.details =
	"Copies that drop modes (cp --no-preserve=mode, zip artifacts, S3 sync, oras\n"
	"pull) leave a bundle that 'nexus verify' refuses.  This sets every file to the\n"
	"mode manifest.json records (0444, bin/nexus_cli 0555) and every directory to\n"
	"0555.  The tree must hold only the manifest's files: anything else is refused\n"
	"and nothing is changed.  Content is not checked here; run 'nexus verify'.",
	.opts = fix_opts,
	.run = fix_run,
};

static int rm_run(const struct cli_verb *verb, int argc, char **argv)
{
	const char *bundle = NULL;
	bool json = false;
	nx_error err;
	int st;

	if ((st = parse(verb, argc, argv, &bundle, &json)))
		return st - 1;
	nx_error_clear(&err);
	if (nx_bundle_remove(bundle, &err))
		return cli_fail(verb->name, &err);
	if (json)
		return cli_oci_print_json(json_pack("{s:s, s:s}", "schema", "nexus.rm.v1",
						    "removed", bundle));
	printf("removed %s\n", bundle);
	return 0;
}

const struct cli_verb cmd_rm = {
	.name = "rm",
	.args = "BUNDLE",
	.summary = "remove a bundle (its directories are read-only, so rm -rf fails)",
	.details =
	"Removes BUNDLE only when it is a bundle: its manifest.json parses and it holds\n"
	"nothing but the manifest's files and their directories (anything else is\n"
	"refused, named, and nothing is removed).  The directory is first renamed to a\n"
	"hidden name beside it, so an interrupted removal never leaves half a bundle\n"
	"under its name.  Without nexus: chmod -R u+w BUNDLE && rm -rf BUNDLE.",
	.opts = rm_opts,
	.run = rm_run,
};
