/* opt.c - the argv scanner of util/opt_int.h. */
#include "util/opt_int.h"

#include <string.h>

void nx_opt_init(struct nx_opt_scan *s, int argc, char **argv, int first)
{
	memset(s, 0, sizeof(*s));
	s->argc = argc;
	s->argv = argv;
	s->i = first;
}

enum nx_opt_kind nx_opt_next(struct nx_opt_scan *s)
{
	const char *a;

	s->name = s->eq = NULL;
	s->name_len = 0;
	s->short_name = 0;
	for (;;) {
		if (s->i >= s->argc)
			return NX_OPT_DONE;
		a = s->word = s->argv[s->i++];
		if (s->only_pos || a[0] != '-' || a[1] == '\0')
			return NX_OPT_POSITIONAL;
		if (strcmp(a, "--") != 0)
			break;
		s->only_pos = true;
	}
	if (!strcmp(a, "-h") || !strcmp(a, "--help"))
		return NX_OPT_HELP;
	if (a[1] != '-') {
		s->short_name = a[1];
		return a[2] ? NX_OPT_BAD : NX_OPT_SHORT;
	}
	s->name = a + 2;
	s->eq = strchr(s->name, '=');
	s->name_len = s->eq ? (size_t)(s->eq - s->name) : strlen(s->name);
	if (s->eq)
		s->eq++;
	return NX_OPT_LONG;
}

const char *nx_opt_value(struct nx_opt_scan *s)
{
	if (s->eq)
		return s->eq;
	return s->i < s->argc ? s->argv[s->i++] : NULL;
}
