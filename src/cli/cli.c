/* cli.c - option parsing and help generated from the verb's option table. */
#include "cli.h"
#include "nexus/config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

void cli_init(struct cli_parser *p, const struct cli_verb *verb, int argc, char **argv)
{
	memset(p, 0, sizeof(*p));
	p->verb = verb;
	nx_opt_init(&p->scan, argc, argv, 1);
}

void cli_help(const struct cli_verb *verb, FILE *f)
{
	const struct cli_opt *o;

	fprintf(f, "usage: nexus %s [OPTIONS]%s%s\n\n%s\n", verb->name,
		verb->args ? " " : "", verb->args ? verb->args : "", verb->summary);
	if (verb->details)
		fprintf(f, "\n%s\n", verb->details);
	fprintf(f, "\noptions:\n");
	for (o = verb->opts; o && o->name; o++) {
		char left[64];

		snprintf(left, sizeof(left), "%s%c%s--%s%s%s",
			 o->short_name ? "-" : "", o->short_name ? o->short_name : ' ',
			 o->short_name ? ", " : "  ", o->name, o->arg ? " " : "",
			 o->arg ? o->arg : "");
		fprintf(f, "  %-28s %s\n", o->short_name ? left : left + 1, o->help);
	}
	fprintf(f, "  %-28s %s\n", "-h, --help", "show this help and exit");
	fprintf(f, "\nexit status: 0 ok, 1 a check failed, 2 usage or configuration error,\n"
		   "3 input or environment error.\n");
}

static bool json_mode, json_done;
static unsigned long long stdout_bytes;  /* under --json: what reached stdout */

/* stdout under --json: the same fd 1, with the bytes counted, so that a
 * failure after a verb printed its document does not print a second one. */
static ssize_t counted_write(void *cookie, const char *buf, size_t len)
{
	size_t put = 0;
	ssize_t n;

	(void)cookie;
	while (put < len) {
		n = write(STDOUT_FILENO, buf + put, len - put);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return put ? (ssize_t)put : -1;
		put += (size_t)n;
		stdout_bytes += (size_t)n;
	}
	return (ssize_t)put;
}

void cli_json_mode(int argc, char **argv)
{
	static const cookie_io_functions_t io = { .write = counted_write };
	FILE *f;
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "--json"))
			json_mode = true;
	/* glibc's stdout is a variable that may be assigned (glibc manual,
	 * "Standard Streams") */
	if (json_mode && (f = fopencookie(NULL, "w", io)) != NULL) {
		fflush(stdout);
		stdout = f;
	}
}

int cli_json_finish(const char *verb, int status)
{
	nx_error err;

	fflush(stdout);
	if (!json_mode || !status || json_done || stdout_bytes)
		return status;
	nx_error_clear(&err);
	err.code = status == 1 ? NX_ECHECK : status == 2 ? NX_EUSAGE : NX_EIO;
	snprintf(err.message, sizeof(err.message),
		 "nexus %s failed with exit status %d; its error is on stderr", verb, status);
	return cli_json_error(verb, status, &err);
}

bool cli_json_on(void)
{
	return json_mode;
}

int cli_json_error(const char *verb, int status, const nx_error *err)
{
	json_t *e, *doc;

	fflush(stdout);
	if (!json_mode || json_done || stdout_bytes)
		return status;
	json_done = true;
	e = json_pack("{s:s, s:s, s:s}", "code", nx_error_name(err->code), "message",
		      err->message, "path", err->path);
	if (e && err->line > 0)
		json_object_set_new(e, "line", json_integer(err->line));
	else if (e && err->offset >= 0)
		json_object_set_new(e, "offset", json_integer(err->offset));
	doc = json_pack("{s:s, s:s, s:i, s:o}", "schema", "nexus.error.v1", "verb", verb,
			"exit_status", status, "error", e);
	if (!doc || json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) || putchar('\n') == EOF)
		fprintf(stderr, "nexus %s: error: cannot print the JSON error document\n", verb);
	fflush(stdout);
	json_decref(doc);
	return status;
}

int cli_usage(const struct cli_verb *verb, const char *fmt, ...)
{
	va_list ap;
	nx_error err;

	nx_error_clear(&err);
	err.code = NX_EUSAGE;
	va_start(ap, fmt);
	vsnprintf(err.message, sizeof(err.message), fmt, ap);
	va_end(ap);
	fprintf(stderr, "nexus %s: %s\ntry 'nexus %s --help'\n", verb->name, err.message,
		verb->name);
	return cli_json_error(verb->name, 2, &err);
}

static const struct cli_opt *find_long(const struct cli_verb *v, const char *name, size_t n)
{
	const struct cli_opt *o;

	for (o = v->opts; o && o->name; o++)
		if (strlen(o->name) == n && strncmp(o->name, name, n) == 0)
			return o;
	return NULL;
}

static const struct cli_opt *find_short(const struct cli_verb *v, char c)
{
	const struct cli_opt *o;

	for (o = v->opts; o && o->name; o++)
		if (o->short_name == c)
			return o;
	return NULL;
}

int cli_next(struct cli_parser *p)
{
	struct nx_opt_scan *s = &p->scan;
	const struct cli_opt *o = NULL;

	for (;;) {
		switch (nx_opt_next(s)) {
		case NX_OPT_DONE:
			return 0;
		case NX_OPT_HELP:
			cli_help(p->verb, stdout);
			return -1;
		case NX_OPT_POSITIONAL:
			if (p->npos >= (int)(sizeof(p->pos) / sizeof(p->pos[0])))
				return cli_usage(p->verb, "too many arguments"), -2;
			p->pos[p->npos++] = (char *)s->word;
			continue;
		case NX_OPT_LONG:
			o = find_long(p->verb, s->name, s->name_len);
			break;
		case NX_OPT_SHORT:
			o = find_short(p->verb, s->short_name);
			break;
		case NX_OPT_BAD:
			o = NULL;
			break;
		}
		break;
	}
	if (!o)
		return cli_usage(p->verb, "unknown option '%s'", s->word), -2;
	p->optarg = NULL;
	if (o->arg) {
		if (!(p->optarg = nx_opt_value(s)))
			return cli_usage(p->verb, "option '%s' needs %s", s->word, o->arg), -2;
	} else if (s->eq) {
		return cli_usage(p->verb, "option '--%s' takes no value", o->name), -2;
	}
	return o->key;
}

void cli_status(const char *verb, const char *fmt, ...)
{
	static int tty = -1;
	va_list ap;

	if (tty < 0) {
		/* no escapes for a terminal that cannot take them (TERM=dumb,
		 * Emacs shells), nor where the user asked for none
		 * (https://no-color.org) */
		const char *term = getenv("TERM"), *nc = getenv("NO_COLOR");

		tty = isatty(STDERR_FILENO) && term && *term && strcmp(term, "dumb") &&
		      !(nc && *nc);
	}
	if (!tty)
		return;
	fputs("\r\033[K", stderr);
	if (fmt) {
		fprintf(stderr, "nexus %s: ", verb);
		va_start(ap, fmt);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fflush(stderr);
}

int cli_fail(const char *verb, const nx_error *err)
{
	fprintf(stderr, "nexus %s: error: ", verb);
	if (err->path[0] && !strstr(err->message, err->path)) {
		fprintf(stderr, "%s", err->path);
		if (err->line > 0)
			fprintf(stderr, ":%ld", err->line);
		else if (err->offset >= 0)
			fprintf(stderr, " @%lld", err->offset);
		fprintf(stderr, ": ");
	}
	fprintf(stderr, "%s\n", err->message);
	return cli_json_error(verb, nx_error_exit_status(err->code), err);
}

char *cli_runtime_dir(void)
{
	const char *env = getenv("NEXUS_RUNTIME_DIR");
	char exe[PATH_MAX], *slash, *out = NULL;
	ssize_t n;

	if (env && *env)
		return strdup(env);
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return NULL;
	exe[n] = '\0';
	slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = '\0';
	if (asprintf(&out, "%s/../libexec/nexus", exe) < 0)
		return NULL;
	return out;
}

int cli_sandbox_opts(const struct cli_verb *verb, enum nx_sandbox_backend *backend,
		     const char *arg, uint64_t *memory, const char *mem)
{
	const char *env = getenv("NEXUS_SANDBOX");
	nx_error err;

	if (!arg && env && *env && nx_sandbox_backend_parse(backend, env, &err))
		return cli_usage(verb, "NEXUS_SANDBOX: %s", err.message);
	if (arg && nx_sandbox_backend_parse(backend, arg, &err))
		return cli_usage(verb, "--sandbox: %s", err.message);
	if (mem && (nx_parse_size(memory, mem, &err) || *memory < NX_SANDBOX_MEMORY_MIN))
		return cli_usage(verb, "--sandbox-memory: '%s' is not a size of at least 256MiB", mem);
	return 0;
}

/* The stage being written (build, pull), for the signal handlers. */
static nx_stage *volatile active_stage;

static void on_signal(int sig)
{
	nx_stage *s = active_stage;

	if (s)
		(void)nx_stage_remove_signal_safe(s);
	signal(sig, SIG_DFL);
	raise(sig);
}

void cli_stage_guard(void *ctx, nx_stage *s)
{
	active_stage = s;
}

void cli_stage_guard_install(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaddset(&sa.sa_mask, SIGTERM);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Bytes of the regular files in the bundle's model/ (model + external data):
 * what the sandbox limits scale with. */
uint64_t cli_model_bytes(int dirfd)
{
	int fd = openat(dirfd, "model", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	struct dirent *e;
	struct stat st;
	uint64_t n = 0;

	if (!d) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((e = readdir(d)))
		if (!fstatat(fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode))
			n += (uint64_t)st.st_size;
	closedir(d);
	return n;
}
