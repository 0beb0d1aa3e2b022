/* main.c - `nexus VERB ...`: dispatch through the verb table. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_verb *const verbs[] = {
	&cmd_build, &cmd_verify, &cmd_inspect, &cmd_keygen, &cmd_sign, &cmd_manifest, &cmd_run,
	&cmd_push, &cmd_pull, &cmd_serve,
};
#define NVERBS (sizeof(verbs) / sizeof(verbs[0]))

static void usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: nexus VERB [OPTIONS] [ARGS]\n\n"
		   "Package a distilled student model into a signed, teacher-free bundle\n"
		   "and prove it before deployment.\n\nverbs:\n");
	for (i = 0; i < NVERBS; i++)
		fprintf(f, "  %-10s %s\n", verbs[i]->name, verbs[i]->summary);
	fprintf(f, "\n'nexus VERB --help' describes a verb; 'nexus --version' prints the version.\n");
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("nexus %s\n", NX_VERSION);
		return 0;
	}
	cli_json_mode(argc - 1, argv + 1);
	for (i = 0; i < NVERBS; i++)
		if (!strcmp(argv[1], verbs[i]->name))
			return cli_json_finish(verbs[i]->name,
					       verbs[i]->run(verbs[i], argc - 1, argv + 1));
	fprintf(stderr, "nexus: unknown verb '%s'\n", argv[1]);
	usage(stderr);
	return cli_json_finish(argv[1], 2);
}
