/* cmd_run.c - `nexus run BUNDLE [--text T]... [--input FILE|-] [--json]`:
 * the bundle's own `bin/nexus_cli run` inside the TRV-5 sandbox
 * (nexus/sandbox.h), inputs fed on stdin as JSONL. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "nexus/bundle.h"
#include "nexus/sandbox.h"

enum { OPT_TEXT = 1, OPT_INPUT, OPT_JSON, OPT_TIMEOUT, OPT_SANDBOX, OPT_SANDBOX_MEMORY };

#define RUN_INPUT_MAX (64u << 20)   /* bytes of an --input FILE */
#define RUN_TEXTS_MAX 64

static const struct cli_opt opts[] = {
	{ "text", 't', "TEXT", "run the model on TEXT (repeatable)", OPT_TEXT },
	{ "input", 'i', "FILE", "one text or {\"text\": ...} per line; - for stdin", OPT_INPUT },
	{ "json", 0, NULL, "print one JSON document (an array of the results)", OPT_JSON },
	{ "timeout", 0, "SECONDS", "wall-clock limit (default 60, plus 60 per GiB of model)",
	  OPT_TIMEOUT },
	{ "sandbox", 0, "NAME", CLI_SANDBOX_HELP, OPT_SANDBOX },
	{ "sandbox-memory", 0, "SIZE", CLI_SANDBOX_MEMORY_HELP, OPT_SANDBOX_MEMORY },
	{0},
};

/* The --text values as JSONL. */
static char *texts_jsonl(char **texts, int n, size_t *len)
{
	char *buf = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&buf, &size);
	int i;

	if (!f)
		return NULL;
	for (i = 0; i < n; i++) {
		json_t *j = json_pack("{s:s}", "text", texts[i]);
		char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

		if (s)
			fprintf(f, "%s\n", s);
		free(s);
		json_decref(j);
	}
	if (fclose(f) != 0) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}

static int read_input(char **out, size_t *len, const char *path, nx_error *err)
{
	FILE *f = fopen(path, "rbe");
	char *buf;
	size_t n;

	if (!f)
		return nx_error_errno(err, NX_EIO, errno, path, "cannot open %s", path);
	buf = malloc(RUN_INPUT_MAX + 1);
	if (!buf) {
		fclose(f);
		return nx_error_oom(err, NULL);
	}
	n = fread(buf, 1, RUN_INPUT_MAX + 1, f);
	fclose(f);
	if (n > RUN_INPUT_MAX) {
		free(buf);
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s is larger than 64 MiB; pass it on stdin with --input -", path);
	}
	*out = buf;
	*len = n;
	return 0;
}

static int print_json(const char *out, size_t len)
{
	json_t *arr = json_array();
	const char *p = out, *end = out + len;
	int rc;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		json_t *j = n ? json_loadb(p, n, 0, NULL) : NULL;

		if (j)
			json_array_append_new(arr, j);
		p += n + 1;
	}
	rc = json_dumpf(arr, stdout, JSON_INDENT(2));
	json_decref(arr);
	return rc == 0 && fputc('\n', stdout) != EOF ? 0 : 3;
}

/* What bin/nexus_cli said on stderr (its last line), as the error of status. */
static const nx_error *stderr_error(nx_error *err, int status, const struct nx_sandbox_result *r)
{
	size_t len = r->errout_len, start;

	while (len && (r->errout[len - 1] == '\n' || r->errout[len - 1] == ' '))
		len--;
	for (start = len; start && r->errout[start - 1] != '\n'; start--)
		;
	nx_error_set(err, status == 1 ? NX_ECHECK : status == 2 ? NX_ECONFIG : NX_EIO,
		     NX_BUNDLE_CLI, 0, -1, "%.*s", (int)(len - start), r->errout + start);
	return err;
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	static const char *const cli_args[] = { "run", "--input", "-", NULL };
	struct cli_parser p;
	struct nx_sandbox_opts so;
	struct nx_sandbox_result r = {0};
	char *texts[RUN_TEXTS_MAX], *data = NULL;
	const char *input = NULL;
	size_t len = 0;
	int k, ntexts = 0, dirfd = -1, rc;
	long timeout = 60;
	const char *sandbox = NULL, *sandbox_mem = NULL;
	uint64_t memory = 0;
	char lim[128];
	const char *hit;
	bool json = false;
	nx_error err;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		if (k == OPT_TEXT) {
			if (ntexts >= RUN_TEXTS_MAX)
				return cli_usage(verb, "at most %d --text options; use --input", RUN_TEXTS_MAX);
			texts[ntexts++] = (char *)p.optarg;
		} else if (k == OPT_INPUT) {
			input = p.optarg;
		} else if (k == OPT_SANDBOX) {
			sandbox = p.optarg;
		} else if (k == OPT_SANDBOX_MEMORY) {
			sandbox_mem = p.optarg;
		} else if (k == OPT_JSON) {
			json = true;
		} else if (k == OPT_TIMEOUT) {
			char *e;

			timeout = strtol(p.optarg, &e, 10);
			if (*e || timeout <= 0 || timeout > 86400)
				return cli_usage(verb, "--timeout needs seconds from 1 to 86400");
		}
	}
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos != 1)
		return cli_usage(verb, "expected one BUNDLE argument");
	if (!!ntexts + !!input != 1)
		return cli_usage(verb, "give either --text (repeatable) or --input");
	nx_sandbox_opts_init(&so);
	if ((rc = cli_sandbox_opts(verb, &so.backend, sandbox, &memory, sandbox_mem)))
		return rc;
	nx_error_clear(&err);
	dirfd = open(p.pos[0], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dirfd < 0) {
		nx_error_errno(&err, NX_EIO, errno, p.pos[0], "cannot open bundle %s", p.pos[0]);
		rc = cli_fail(verb->name, &err);
		goto out;
	}
	rc = 0;
	if (ntexts && !(data = texts_jsonl(texts, ntexts, &len)))
		rc = nx_error_oom(&err, NULL);
	else if (input && strcmp(input, "-"))
		rc = read_input(&data, &len, input, &err);
	if (rc) {
		rc = cli_fail(verb->name, &err);
		goto out;
	}
	so.bundle_dirfd = dirfd;
	so.stdin_data = data;
	so.stdin_len = len;
	so.stdin_fd = input && !strcmp(input, "-") ? 0 : -1;
	so.out_fd = json ? -1 : 1;
	so.wall_ms = (uint64_t)timeout * 1000;
	nx_sandbox_scale(&so, cli_model_bytes(dirfd), memory);
	fflush(stdout);
	if (nx_sandbox_run_cli(&r, &so, p.pos[0], cli_args, &err) != 0) {
		rc = cli_fail(verb->name, &err);
		goto out;
	}
	if ((hit = nx_sandbox_limit_hit(lim, sizeof(lim), &r, &so))) {
		/* The limit by name, not the program's raw words (std::bad_alloc). */
		nx_error_set(&err, NX_ECHECK, NX_BUNDLE_CLI, 0, -1, "bin/nexus_cli hit the "
			     "sandbox's %s and was killed; raise it with %s", hit + 4,
			     strstr(hit, "memory") ? "--sandbox-memory" :
			     strstr(hit, "wall") ? "--timeout" : "a smaller model");
		rc = cli_fail(verb->name, &err);
	} else if (fwrite(r.errout, 1, r.errout_len, stderr), r.timed_out || r.output_capped ||
		   !r.exited) {
		nx_error_set(&err, NX_ECHECK, NX_BUNDLE_CLI, 0, -1, "bin/nexus_cli %s",
			     r.timed_out ? "timed out and was killed" :
			     r.output_capped ? "printed more than 16 MiB and was killed" : "was killed");
		rc = cli_fail(verb->name, &err);
	} else if (r.status != 0) {
		rc = r.status >= 1 && r.status <= 3 ? r.status : 1;
		/* inputs that failed are {"error": ...} results among the others */
		if (json && r.out_len && print_json(r.out, r.out_len) != 0)
			rc = 3;
		else if (json && !r.out_len)
			rc = cli_json_error(verb->name, rc, stderr_error(&err, rc, &r));
	} else {
		rc = json ? print_json(r.out, r.out_len) : 0;
	}
out:
	nx_sandbox_result_release(&r);
	free(data);
	if (dirfd >= 0)
		close(dirfd);
	return rc;
}

const struct cli_verb cmd_run = {
	.name = "run",
	.args = "BUNDLE",
	.summary = "run a bundle's nexus_cli on inputs inside the sandbox",
	.details = "Runs BUNDLE/bin/nexus_cli run under bubblewrap exactly as the functional\n"
		   "check (TRV-5) does: no network, only the bundle and the binary's ELF library\n"
		   "closure visible, rlimits and a timeout.  Inputs are fed on stdin as JSONL;\n"
		   "results (one JSON object per input) are streamed to stdout.",
	.opts = opts,
	.run = run,
};
