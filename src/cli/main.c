/* main.c - `nexus VERB ...`: dispatch through the verb table. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct cli_verb *const verbs[] = {
	&cmd_build, &cmd_verify, &cmd_inspect, &cmd_keygen, &cmd_sign, &cmd_manifest, &cmd_run,
	&cmd_push, &cmd_pull, &cmd_init,
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

static const struct cli_verb *find_verb(const char *name)
{
	size_t i;

	for (i = 0; i < NVERBS; i++)
		if (!strcmp(name, verbs[i]->name))
			return verbs[i];
	return NULL;
}

/*
 * Edit distance (insert, delete, substitute, swap of neighbours) between two
 * short words, capped: only "did you mean" uses it, over a dozen verbs, so a
 * library would be more than the job needs.
 */
static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t d[16][16];

	if (la > 15 || lb > 15)
		return 99;
	for (i = 0; i <= la; i++)
		d[i][0] = i;
	for (j = 0; j <= lb; j++)
		d[0][j] = j;
	for (i = 1; i <= la; i++)
		for (j = 1; j <= lb; j++) {
			size_t best = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);

			if (d[i - 1][j] + 1 < best)
				best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	return d[la][lb];
}

/* The verb closest to a mistyped one (at most two edits away, or one it
 * begins), when there is one. */
static const char *suggest(const char *typed)
{
	const char *best = NULL;
	size_t i, bd = 3, dd, n = strlen(typed);

	for (i = 0; i < NVERBS; i++) {
		dd = distance(typed, verbs[i]->name);
		if (n >= 2 && !strncmp(typed, verbs[i]->name, n))
			dd = 1;
		if (dd < bd) {
			bd = dd;
			best = verbs[i]->name;
		}
	}
	return best;
}

int main(int argc, char **argv)
{
	const struct cli_verb *v;
	const char *guess;

	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "help") && argc > 2) {
		/* `nexus help VERB` is `nexus VERB --help` */
		if ((v = find_verb(argv[2]))) {
			cli_help(v, stdout);
			return 0;
		}
		fprintf(stderr, "nexus help: unknown verb '%s'\n", argv[2]);
		if ((guess = suggest(argv[2])))
			fprintf(stderr, "did you mean 'nexus help %s'?\n", guess);
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
	if ((v = find_verb(argv[1])))
		return cli_json_finish(v->name, v->run(v, argc - 1, argv + 1));
	fprintf(stderr, "nexus: unknown verb '%s'\n", argv[1]);
	if ((guess = suggest(argv[1])))
		fprintf(stderr, "did you mean 'nexus %s'?\n\n", guess);
	usage(stderr);
	return cli_json_finish(argv[1], 2);
}
