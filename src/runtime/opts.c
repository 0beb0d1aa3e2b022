/*
 * opts.c - option parsing for nexus_cli's verbs: each verb has one table of
 * options, which also prints its --help.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

void rt_help(const struct rt_verb *v, FILE *f)
{
	const struct rt_opt *o;

	fprintf(f, "usage: nexus_cli %s [OPTIONS]\n\n%s\n", v->name, v->summary);
	if (v->details)
		fprintf(f, "\n%s\n", v->details);
	fprintf(f, "\noptions:\n");
	for (o = v->opts; o->name; o++) {
		char left[48];

		snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
		fprintf(f, "  %-24s %s\n", left, o->help);
	}
	fprintf(f, "  %-24s %s\n", "-h, --help", "show this help and exit");
	fprintf(f, "\nexit status: 0 ok, 1 a check failed (integrity, selftest), 2 usage or\n"
		   "configuration error, 3 input or environment error.\n");
}

int rt_usage(const struct rt_verb *v, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "nexus_cli %s: ", v->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ntry 'nexus_cli %s --help'\n", v->name);
	return 2;
}

int rt_parse(struct rt_args *a, const struct rt_verb *v, int argc, char **argv)
{
	int i;

	memset(a, 0, sizeof(*a));
	a->tol = 1e-4;
	for (i = 1; i < argc; i++) {
		const struct rt_opt *o;
		const char *val = NULL, *eq;
		size_t n;

		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			rt_help(v, stdout);
			return -1;
		}
		if (strncmp(argv[i], "--", 2))
			return rt_usage(v, "unexpected argument '%s'", argv[i]);
		eq = strchr(argv[i], '=');
		n = eq ? (size_t)(eq - argv[i] - 2) : strlen(argv[i] + 2);
		for (o = v->opts; o->name; o++)
			if (strlen(o->name) == n && !strncmp(o->name, argv[i] + 2, n))
				break;
		if (!o->name)
			return rt_usage(v, "unknown option '%s'", argv[i]);
		if (o->arg) {
			if (eq)
				val = eq + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else
				return rt_usage(v, "option '--%s' needs %s", o->name, o->arg);
		} else if (eq) {
			return rt_usage(v, "option '--%s' takes no value", o->name);
		}
		switch (o->key) {
		case RT_OPT_BUNDLE: a->bundle = val; break;
		case RT_OPT_JSON: a->json = true; break;
		case RT_OPT_INPUT: a->input = val; break;
		case RT_OPT_OUTPUT: a->output = val; break;
		case RT_OPT_WRITE: a->write = true; break;
		case RT_OPT_VERBOSE: a->verbose = true; break;
		case RT_OPT_RAW: a->raw = true; break;
		case RT_OPT_LONG: a->long_case = true; break;
		case RT_OPT_SKIP_SPECIAL: a->skip_special = true; break;
		case RT_OPT_TOKDIR: a->tokdir = val; break;
		case RT_OPT_PAIR:
			a->pairs = realloc(a->pairs, (a->npairs + 1) * sizeof(*a->pairs));
			if (!a->pairs)
				return rt_usage(v, "out of memory");
			a->pairs[a->npairs++] = (char *)val;
			break;
		case RT_OPT_TEXT:
			a->texts = realloc(a->texts, (a->ntexts + 1) * sizeof(*a->texts));
			if (!a->texts)
				return rt_usage(v, "out of memory");
			a->texts[a->ntexts++] = (char *)val;
			break;
		case RT_OPT_TOL: {
			char *end;

			a->tol = strtod(val, &end);
			if (*end || !(a->tol >= 0))
				return rt_usage(v, "--tolerance needs a number >= 0");
			break;
		}
		case RT_OPT_MINBYTES:
		case RT_OPT_BUDGET: {
			char *end;
			unsigned long long x = strtoull(val, &end, 10);

			if (*end || !*val || val[0] == '-' || x > (1ull << 40))
				return rt_usage(v, "--%s needs a whole number", o->name);
			if (o->key == RT_OPT_MINBYTES)
				a->min_bytes = (uint64_t)x;
			else
				a->budget_ms = (uint64_t)x;
			break;
		}
		case RT_OPT_MAXLEN: {
			char *end;

			a->maxlen = strtol(val, &end, 10);
			if (*end || a->maxlen < 2 || a->maxlen > RT_SEQ_MAX)
				return rt_usage(v, "--max-length needs a number from 2 to %d", RT_SEQ_MAX);
			break;
		}
		}
	}
	return 0;
}

