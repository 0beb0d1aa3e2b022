/*
 * opts.c - option parsing for nexus_cli's verbs: each verb has one table of
 * options, which also prints its --help.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"
#include "util/opt_int.h"

/* The long option a one-letter option stands for, or NULL. */
static const char *short_name(char c)
{
	switch (c) {
	case 't': return "text";
	case 'i': return "input";
	case 'o': return "output";
	case 'b': return "bundle";
	default: return NULL;
	}
}

void rt_help(const struct rt_verb *v, FILE *f)
{
	const struct rt_opt *o;

	fprintf(f, "usage: nexus_cli %s [OPTIONS]\n\n%s\n", v->name, v->summary);
	if (v->details)
		fprintf(f, "\n%s\n", v->details);
	fprintf(f, "\noptions:\n");
	for (o = v->opts; o->name; o++) {
		char left[48], sh[8] = "", c;

		for (c = 'a'; c <= 'z'; c++)
			if (short_name(c) && !strcmp(short_name(c), o->name))
				snprintf(sh, sizeof(sh), "-%c, ", c);
		snprintf(left, sizeof(left), "%s--%s%s%s", sh, o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
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

/* serve's numbers: [min, max] in the order of RT_OPT_PORT .. RT_OPT_MAXCONN (rt.h) */
static const long limits[][2] = {
	{ 0, 65535 }, { 1, 1L << 20 }, { 1, RT_BATCH_MAX }, { 0, 10000 }, { 1, 1L << 30 },
	{ 1, 3600 }, { 1, 4096 },
};

static int number(struct rt_args *a, const struct rt_opt *o, const char *val)
{
	long *dst[] = { &a->port, &a->queue, &a->max_batch, &a->max_wait, &a->max_body,
			&a->timeout, &a->max_conn };
	int i = o->key - RT_OPT_PORT;
	char *end;
	long n;

	errno = 0;
	n = strtol(val, &end, 10);
	if (errno || end == val || *end || n < limits[i][0] || n > limits[i][1])
		return -1;
	*dst[i] = n;
	return 0;
}

int rt_parse(struct rt_args *a, const struct rt_verb *v, int argc, char **argv)
{
	struct nx_opt_scan sc;
	enum nx_opt_kind kind;

	memset(a, 0, sizeof(*a));
	a->tol = 1e-4;
	a->port = 8080;
	a->queue = 1024;
	a->max_wait = 5;
	a->max_body = 1 << 20;
	a->timeout = 30;
	a->max_conn = 256;
	a->listen_fd = -1;
	a->sample = -1;
	a->threads = -1;
	nx_opt_init(&sc, argc, argv, 1);
	while ((kind = nx_opt_next(&sc)) != NX_OPT_DONE) {
		const struct rt_opt *o = NULL;
		const char *val = NULL, *lng;

		switch (kind) {
		case NX_OPT_HELP:
			rt_help(v, stdout);
			return -1;
		case NX_OPT_SHORT:
			/* -t, -i, -o, -b: the short options `nexus run` has too */
			if (!(lng = short_name(sc.short_name)))
				return rt_usage(v, "unknown option '%s'", sc.word);
			for (o = v->opts; o->name && strcmp(o->name, lng); o++)
				;
			break;
		case NX_OPT_LONG:
			for (o = v->opts; o->name; o++)
				if (strlen(o->name) == sc.name_len &&
				    !strncmp(o->name, sc.name, sc.name_len))
					break;
			break;
		default:   /* no verb of nexus_cli takes a positional argument */
			return rt_usage(v, "unexpected argument '%s'", sc.word);
		}
		if (!o->name)
			return rt_usage(v, "unknown option '%s'", sc.word);
		if (o->arg) {
			if (!(val = nx_opt_value(&sc)))
				return rt_usage(v, "option '--%s' needs %s", o->name, o->arg);
		} else if (sc.eq) {
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
		case RT_OPT_ZERO: a->zero_check = true; break;
		case RT_OPT_EACH: a->session_each = true; break;
		case RT_OPT_TOKDIR: a->tokdir = val; break;
		case RT_OPT_NOGENPROMPT: a->no_gen_prompt = true; break;
		case RT_OPT_GEN_CHAT: a->chat = true; break;
		case RT_OPT_PAIR: {
			/* on failure a->pairs stays, for the caller to free */
			if (NX_ARRAY_PUSH_EXACT(a->pairs, a->npairs))
				return rt_usage(v, "out of memory");
			a->pairs[a->npairs++] = (char *)val;
			break;
		}
		case RT_OPT_LISTEN: a->listen = val; break;
		case RT_OPT_READY: a->ready_file = val; break;
		case RT_OPT_UNIX: a->unix_path = val; break;
		case RT_OPT_STOP_EOF: a->stop_on_eof = true; break;
		case RT_OPT_LISTENFD: {
			char *end;

			a->listen_fd = strtol(val, &end, 10);
			if (*end || !*val || a->listen_fd < 3 || a->listen_fd > 1023)
				return rt_usage(v, "--listen-fd needs a descriptor number from 3 to 1023");
			break;
		}
		case RT_OPT_PORT: case RT_OPT_QUEUE: case RT_OPT_MAXBATCH: case RT_OPT_MAXWAIT:
		case RT_OPT_MAXBODY: case RT_OPT_TIMEOUT: case RT_OPT_MAXCONN:
			if (number(a, o, val))
				return rt_usage(v, "--%s needs a whole number from %ld to %ld", o->name,
						limits[o->key - RT_OPT_PORT][0],
						limits[o->key - RT_OPT_PORT][1]);
			break;
		case RT_OPT_GEN_MAXNEW: case RT_OPT_GEN_TEMP: case RT_OPT_GEN_TOPK: case RT_OPT_GEN_TOPP:
		case RT_OPT_GEN_REP: case RT_OPT_GEN_SEED:
			a->gen[o->key - RT_OPT_GEN_MAXNEW] = val;
			break;
		case RT_OPT_GEN_SAMPLE: a->sample = 1; break;
		case RT_OPT_GEN_GREEDY: a->sample = 0; break;
		case RT_OPT_THREADS: {
			char *end;

			a->threads = strtol(val, &end, 10);
			if (*end || !*val || a->threads < 0 || a->threads > 256)
				return rt_usage(v, "--threads needs a number from 0 to 256");
			break;
		}
		case RT_OPT_GEN_STOP: {
			/* on failure a->stops stays, for the caller to free */
			if (NX_ARRAY_PUSH_EXACT(a->stops, a->nstops))
				return rt_usage(v, "out of memory");
			a->stops[a->nstops++] = val;
			break;
		}
		case RT_OPT_TEXT: {
			/* on failure a->texts stays, for the caller to free */
			if (NX_ARRAY_PUSH_EXACT(a->texts, a->ntexts))
				return rt_usage(v, "out of memory");
			a->texts[a->ntexts++] = (char *)val;
			break;
		}
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

