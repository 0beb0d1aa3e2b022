/*
 * opt_int.h - the one argv scanner of `nexus` and `nexus_cli` (not public).
 *
 * Both programs describe each verb's options in a table that also prints
 * its --help; the tables differ (nexus_cli's short options are a fixed
 * few), the way argv is read does not: "-h"/"--help", "--" ending the
 * options, "--name=value" or "--name value", "-x" for a one-letter option,
 * everything else positional.  nx_opt_next splits argv that way and leaves
 * the lookup and the wording of errors to the program (usage messages stay
 * each program's own).  getopt_long is not used: it permutes argv, prints
 * its own messages and keeps global state.
 */
#ifndef NEXUS_OPT_INT_H
#define NEXUS_OPT_INT_H

#include <stdbool.h>
#include <stddef.h>

struct nx_opt_scan {
	int argc;
	char **argv;
	int i;               /* next argv index */
	bool only_pos;       /* after "--" */
	const char *word;    /* the argv word just read */
	const char *name;    /* NX_OPT_LONG: the name after "--", name_len bytes */
	size_t name_len;
	char short_name;     /* NX_OPT_SHORT: the letter after "-" */
	const char *eq;      /* the value after '=' of --name=value, or NULL */
};

enum nx_opt_kind {
	NX_OPT_DONE,         /* argv ends */
	NX_OPT_HELP,         /* -h or --help */
	NX_OPT_POSITIONAL,   /* word is an argument ("-" alone is one) */
	NX_OPT_LONG,         /* --name or --name=value */
	NX_OPT_SHORT,        /* -x (exactly one letter) */
	NX_OPT_BAD,          /* -xyz: neither a short nor a long option */
};

/* Scan argv[first..argc). */
void nx_opt_init(struct nx_opt_scan *s, int argc, char **argv, int first);

/* The next word, classified; see enum nx_opt_kind. */
enum nx_opt_kind nx_opt_next(struct nx_opt_scan *s);

/*
 * The value of the option just read, when it takes one: the part after '='
 * or the next word (consumed).  NULL when there is none (argv ends).
 */
const char *nx_opt_value(struct nx_opt_scan *s);

#endif
