/* cmd_verify.c - `nexus verify` (placeholder until its module lands). */
#include <stdio.h>

#include "cli.h"

static const struct cli_opt opts[] = {
	{0},
};

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	struct cli_parser p;
	int k;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0)
		;
	if (k < 0)
		return k == -1 ? 0 : 2;
	fprintf(stderr, "nexus verify: not available in this build yet\n");
	return 3;
}

const struct cli_verb cmd_verify = {
	.name = "verify",
	.args = NULL,
	.summary = "verify (not available yet)",
	.opts = opts,
	.run = run,
};
