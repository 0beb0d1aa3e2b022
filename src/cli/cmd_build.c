/*
 * cmd_build.c - `nexus build [WORKSPACE] [-o PATH] [--key KEY] [--force] [--json]`.
 *
 * The program's part of a build: options, the trusted runtime directory,
 * SOURCE_DATE_EPOCH, signal handlers that remove the staging directory, and
 * printing.  Everything else is nx_build() (include/nexus/build.h).
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "nexus/build.h"
#include "nexus/export.h"
#include "nexus/fs.h"
#include "nexus/sign.h"
#include "nexus/verify.h"

enum { OPT_OUTPUT = 1, OPT_FILE, OPT_KEY, OPT_FORCE, OPT_JSON, OPT_NO_FSYNC, OPT_SANDBOX,
       OPT_SANDBOX_MEMORY, OPT_STRICT, OPT_VOCAB_REF };

static const struct cli_opt opts[] = {
	{ "output", 'o', "PATH", "bundle directory to create, its parents too (default "
	  "./<bundle_id>)", OPT_OUTPUT },
	{ "file", 'f', "FILE", "the workspace file (default: nexus.yaml in WORKSPACE, else in the "
	  "current directory or the nearest parent holding one)", OPT_FILE },
	{ "key", 0, "KEY", "sign the manifest with this Ed25519 private key (PEM)", OPT_KEY },
	{ "force", 0, NULL, "replace an existing bundle at PATH (atomically)", OPT_FORCE },
	{ "sandbox", 0, "NAME", CLI_SANDBOX_HELP, OPT_SANDBOX },
	{ "sandbox-memory", 0, "SIZE", CLI_SANDBOX_MEMORY_HELP " (overrides limits.sandbox_memory)",
	  OPT_SANDBOX_MEMORY },
	{ "json", 0, NULL, "print one JSON document describing the bundle", OPT_JSON },
	{ "no-fsync", 0, NULL, "publish without waiting for the disk (atomic, not durable: for "
	  "throw-away CI hosts)", OPT_NO_FSYNC },
	{ "strict", 0, NULL, "self-verify as 'nexus verify --strict': e.g. a workspace without "
	  "teacher: fails (no-teacher-fingerprint)", OPT_STRICT },
	{ "vocab-reference", 0, "FILE", "charge the vocabulary against this tokenizer.json or "
	  "vocab.txt (the teacher's or the base model's) in the self-verification, as 'nexus "
	  "verify --vocab-reference' does; its SHA-256 is recorded in the signed policy",
	  OPT_VOCAB_REF },
	{ 0 },
};

/* The step under way on a terminal; a line for steps slow enough that a
 * log reader would wonder where the time went. */
static void on_progress(void *ctx, enum nx_build_step step, bool done, double seconds)
{
	(void)ctx;
	if (!done) {
		cli_status("build", "%s...", nx_build_step_name(step));
		return;
	}
	cli_status("build", NULL);
	if (seconds > 1.0)
		fprintf(stderr, "nexus build: %s took %.1f s\n", nx_build_step_name(step), seconds);
}

static int source_date_epoch(int64_t *out)
{
	const char *s = getenv("SOURCE_DATE_EPOCH");
	char *end;
	long long v;

	*out = -1;
	if (!s || !*s)
		return 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || *end || v < 0 || s[0] == '-' || s[0] == '+')
		return -1;
	*out = v;
	return 0;
}

static bool same_place(const struct nx_finding *a, const struct nx_finding *b)
{
	return a->line > 0 && a->line == b->line && b->severity != NX_SEV_INFO &&
	       !strcmp(a->path ? a->path : "", b->path ? b->path : "");
}

/*
 * The self-verification's findings (WARN and FAIL), one per line; more
 * findings on the same line of the same file (one bad import seen by
 * several rules) are folded into the first, so a line is reported once.
 */
static void print_findings(const nx_report *rep, FILE *f)
{
	const struct nx_finding *fd;
	size_t i, j, n;
	bool *done;

	if (!rep)
		return;
	fd = nx_report_findings(rep, &n);
	done = calloc(n ? n : 1, sizeof(*done));
	for (i = 0; i < n; i++) {
		const char *sep = "       (the same line also: ";

		if (fd[i].severity == NX_SEV_INFO || (done && done[i]))
			continue;
		fprintf(f, "  %-4s %s %s %s", nx_severity_name(fd[i].severity), fd[i].check,
			fd[i].code, fd[i].path ? fd[i].path : "");
		if (fd[i].line > 0)
			fprintf(f, ":%ld", fd[i].line);
		fprintf(f, ": %s\n", fd[i].message);
		for (j = i + 1; done && j < n; j++) {
			if (done[j] || !same_place(&fd[i], &fd[j]))
				continue;
			done[j] = true;
			fprintf(f, "%s%s", sep, fd[j].code);
			sep = ", ";
		}
		if (strcmp(sep, ", ") == 0)
			fprintf(f, ")\n");
	}
	free(done);
}

static void print_human(const struct nx_build_result *r, const char *path)
{
	char size[NX_SIZE_STR_MAX];
	size_t i;
	int s;

	nx_size_str(size, r->bytes);
	printf("built %s\n", path);
	printf("  bundle_id     %s\n", r->bundle_id);
	printf("  architecture  %s\n", r->architecture);
	printf("  parameters    %s (%llu), quantization %s\n", r->parameters,
	       (unsigned long long)r->parameter_count, r->quantization);
	if (r->quant_cases)
		printf("  quantized     selftest vs float: labels agree %zu/%zu, lowest cosine %.6f\n",
		       r->quant_agree, r->quant_cases, r->quant_min_cosine);
	printf("  files         %zu, %s\n", r->nfiles, size);
	printf("  signature     %s%s\n", r->is_signed ? "ed25519 key " : "unsigned",
	       r->is_signed ? r->key_id : "");
	printf("  timestamp     %s\n", r->build_timestamp);
	printf("  steps        ");
	for (s = 0; s < NX_BUILD_NSTEPS; s++)
		printf(" %s %.2fs", nx_build_step_name((enum nx_build_step)s), r->step_seconds[s]);
	printf("\n");
	if (r->exported)
		printf("  export        removed %zu item(s), %llu bytes, %llu doc string(s) from the student\n",
		       r->exported->nremoved, (unsigned long long)r->exported->removed_bytes,
		       (unsigned long long)r->exported->doc_strings);
	for (i = 0; i < r->nzeroed; i++)
		printf("  zeroed        %s (%llu bytes): a dead bias (noise moved the outputs by "
		       "%.3g, zeros by %.3g), stored as zeros\n", r->zeroed[i].name,
		       (unsigned long long)r->zeroed[i].bytes, r->zeroed[i].change,
		       r->zeroed[i].zero_change);
	for (i = 0; i < r->nwarnings; i++)
		fprintf(stderr, "nexus build: WARN: %s\n", r->warnings[i]);
	if (!r->nremoved)
		printf("  removed imports: none\n");
	for (i = 0; i < r->nremoved; i++)
		printf("  removed       %s:%ld %s (%s)\n", r->removed[i].file, r->removed[i].line,
		       r->removed[i].module, r->removed[i].statement_kind);
}

/* What the export step removed from the student ONNX. */
static json_t *export_json(const struct nx_export_result *x)
{
	json_t *items = json_array();
	size_t i;

	for (i = 0; i < x->nremoved; i++)
		json_array_append_new(items, json_pack("{s:s, s:s, s:I}",
						       "what", nx_export_what_name(x->removed[i].what),
						       "name", x->removed[i].name ? x->removed[i].name : "",
						       "bytes", (json_int_t)x->removed[i].bytes));
	return json_pack("{s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "removed", items,
			 "removed_bytes", (json_int_t)x->removed_bytes,
			 "doc_strings", (json_int_t)x->doc_strings,
			 "kept_nodes", (json_int_t)x->kept_nodes,
			 "kept_initializers", (json_int_t)x->kept_initializers,
			 "quantized_tensors", (json_int_t)x->quantized,
			 "quantized_float_bytes", (json_int_t)x->quant_float_bytes,
			 "quantized_bytes", (json_int_t)x->quant_bytes);
}

static int print_json(const struct nx_build_result *r, const nx_report *rep, const char *path)
{
	json_t *doc, *files, *steps, *removed;
	size_t i;
	int s, rc;

	doc = json_object();
	files = json_array();
	steps = json_object();
	removed = json_array();
	for (i = 0; i < r->nfiles; i++)
		json_array_append_new(files, json_pack("{s:s, s:I}", "path", r->files[i].path,
						       "size_bytes", (json_int_t)r->files[i].size));
	for (s = 0; s < NX_BUILD_NSTEPS; s++)
		json_object_set_new(steps, nx_build_step_name((enum nx_build_step)s),
				    json_real(r->step_seconds[s]));
	for (i = 0; i < r->nremoved; i++)
		json_array_append_new(removed, json_pack("{s:s, s:I, s:s, s:s}",
							 "file", r->removed[i].file,
							 "line", (json_int_t)r->removed[i].line,
							 "module", r->removed[i].module,
							 "statement", r->removed[i].statement_kind));
	json_object_set_new(doc, "schema", json_string("nexus.build.v1"));
	{
		json_t *warn = json_array();

		for (i = 0; i < r->nwarnings; i++)
			json_array_append_new(warn, json_string(r->warnings[i]));
		json_object_set_new(doc, "warnings", warn);
	}
	json_object_set_new(doc, "bundle_path", json_string(path));
	json_object_set_new(doc, "bundle_id", json_string(r->bundle_id));
	json_object_set_new(doc, "architecture", json_string(r->architecture));
	json_object_set_new(doc, "parameters", json_string(r->parameters));
	json_object_set_new(doc, "parameter_count", json_integer((json_int_t)r->parameter_count));
	json_object_set_new(doc, "quantization", json_string(r->quantization));
	json_object_set_new(doc, "build_timestamp", json_string(r->build_timestamp));
	json_object_set_new(doc, "signed", json_boolean(r->is_signed));
	json_object_set_new(doc, "key_id", r->is_signed ? json_string(r->key_id) : json_null());
	json_object_set_new(doc, "files", files);
	json_object_set_new(doc, "bytes", json_integer((json_int_t)r->bytes));
	json_object_set_new(doc, "steps", steps);
	json_object_set_new(doc, "removed_imports", removed);
	if (r->exported)
		json_object_set_new(doc, "export", export_json(r->exported));
	{
		json_t *z = json_array();

		for (i = 0; i < r->nzeroed; i++)
			json_array_append_new(z, json_pack("{s:s, s:I, s:f, s:f}",
							   "name", r->zeroed[i].name,
							   "bytes", (json_int_t)r->zeroed[i].bytes,
							   "change", r->zeroed[i].change,
							   "zero_change", r->zeroed[i].zero_change));
		json_object_set_new(doc, "zeroed_initializers", z);
	}
	if (r->quant_cases)
		json_object_set_new(doc, "quantization_check",
				    json_pack("{s:I, s:I, s:f}", "selftest_inputs",
					      (json_int_t)r->quant_cases, "labels_agree",
					      (json_int_t)r->quant_agree, "min_cosine",
					      r->quant_min_cosine));
	if (rep) {
		char *vj = NULL;

		if (nx_report_json(&vj, rep, NULL) == 0)
			json_object_set_new(doc, "verify", json_loads(vj, 0, NULL));
		free(vj);
	}
	rc = json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
	printf("\n");
	json_decref(doc);
	return rc == 0 ? 0 : 3;
}

/*
 * Where the workspace is: -f FILE (or a WORKSPACE that is a file) names the
 * file and its directory is the workspace; a WORKSPACE directory holds
 * nexus.yaml; with neither, the current directory or the nearest parent
 * that holds nexus.yaml, as git finds its repository.  *dir is a new string.
 */
static int find_workspace(const struct cli_verb *verb, const char *file, const char *pos,
			  char **dir, const char **name)
{
	char cwd[PATH_MAX], *slash;
	struct stat st;

	*name = NULL;
	if (file && pos)
		return cli_usage(verb, "give the workspace as -f FILE or as WORKSPACE, not both");
	if (!file && pos && stat(pos, &st) == 0 && !S_ISDIR(st.st_mode))
		file = pos;
	if (file) {
		slash = strrchr(file, '/');
		if (!slash) {
			*dir = strdup(".");
			*name = file;
		} else {
			*dir = strndup(file, slash == file ? 1 : (size_t)(slash - file));
			*name = slash + 1;
		}
		if (!**name)
			return free(*dir), *dir = NULL,
			       cli_usage(verb, "-f %s: name the workspace file, not a directory", file);
		return *dir ? 0 : 3;
	}
	if (pos)
		return (*dir = strdup(pos)) ? 0 : 3;
	if (!getcwd(cwd, sizeof(cwd)))
		return (*dir = strdup(".")) ? 0 : 3;
	for (;;) {
		char probe[PATH_MAX + 16];

		snprintf(probe, sizeof(probe), "%s/nexus.yaml", strcmp(cwd, "/") ? cwd : "");
		if (access(probe, F_OK) == 0)
			return (*dir = strdup(cwd)) ? 0 : 3;
		slash = strrchr(cwd, '/');
		if (!slash || slash == cwd)
			break;
		*slash = '\0';
	}
	/* none found: the current directory, whose error says so */
	return (*dir = strdup(".")) ? 0 : 3;
}

/* mkdir -p of the directories above path (the bundle itself is staged). */
static int make_parents(const char *verb, const char *path)
{
	char *p = strdup(path), *s;
	int rc = 0;

	if (!p)
		return 3;
	for (s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdir(p, 0777) != 0 && errno != EEXIST) {
			fprintf(stderr, "nexus %s: error: cannot create %s (the parent of -o %s): %s\n",
				verb, p, path, strerror(errno));
			rc = 3;
			break;
		}
		*s = '/';
	}
	free(p);
	return rc;
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	struct nx_build_opts o = { .source_date_epoch = -1 };
	struct nx_build_result *r = NULL;
	nx_report *rep = NULL;
	const char *key_path = NULL, *sandbox = NULL, *sandbox_mem = NULL, *file = NULL;
	char *rt = NULL, *abs = NULL, *wsdir = NULL;
	struct cli_parser p;
	nx_key *key = NULL;
	bool json = false;
	nx_error err;
	int k, status;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		switch (k) {
		case OPT_OUTPUT: o.output = p.optarg; break;
		case OPT_FILE: file = p.optarg; break;
		case OPT_KEY: key_path = p.optarg; break;
		case OPT_FORCE: o.force = true; break;
		case OPT_JSON: json = true; break;
		case OPT_NO_FSYNC: o.no_fsync = true; break;
		case OPT_SANDBOX: sandbox = p.optarg; break;
		case OPT_SANDBOX_MEMORY: sandbox_mem = p.optarg; break;
		case OPT_STRICT: o.strict = true; break;
		case OPT_VOCAB_REF: o.vocab_reference = p.optarg; break;
		}
	}
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos > 1)
		return cli_usage(verb, "expected at most one WORKSPACE, got %d arguments", p.npos);
	if (source_date_epoch(&o.source_date_epoch) < 0)
		return cli_usage(verb, "SOURCE_DATE_EPOCH must be a non-negative integer of seconds");
	if ((status = cli_sandbox_opts(verb, &o.sandbox, sandbox, &o.sandbox_memory, sandbox_mem)))
		return status;
	nx_error_clear(&err);
	if (key_path && nx_key_load_private(&key, key_path, &err) != 0)
		return cli_fail(verb->name, &err);
	if ((status = find_workspace(verb, file, p.npos ? p.pos[0] : NULL, &wsdir, &o.config)) ||
	    (o.output && (status = make_parents(verb->name, o.output))))
		goto out;
	o.workspace = wsdir;
	rt = cli_runtime_dir();
	o.key = key;
	o.runtime_dir = rt;
	o.progress = on_progress;
	o.on_stage = cli_stage_guard;
	o.report = &rep;
	o.functional = true;
	cli_stage_guard_install();
	if (nx_build(&r, &o, &err) != 0) {
		cli_status(verb->name, NULL);
		print_findings(rep, stderr);
		status = cli_fail(verb->name, &err);
		goto out;
	}
	abs = realpath(r->bundle_path, NULL);
	status = json ? print_json(r, rep, abs ? abs : r->bundle_path)
		      : (print_human(r, abs ? abs : r->bundle_path), print_findings(rep, stdout), 0);
out:
	nx_report_free(rep);
	free(abs);
	nx_build_result_free(r);
	nx_key_free(key);
	free(rt);
	free(wsdir);
	return status;
}

const struct cli_verb cmd_build = {
	.name = "build",
	.args = "[WORKSPACE | -f FILE]",
	.summary = "package a workspace into an immutable, teacher-free bundle",
	.details = "Reads WORKSPACE/nexus.yaml (default: the current directory or the nearest parent\n"
		   "holding a nexus.yaml; -f names another file), copies only what it\n"
		   "names - the student ONNX, the inference sources with forbidden imports removed,\n"
		   "the tokenizer, runtime.yaml, README and LICENSE - plus the trusted runtime\n"
		   "($NEXUS_RUNTIME_DIR or <prefix>/libexec/nexus) into a staging directory,\n"
		   "writes manifest.json and publishes the bundle with one atomic rename.\n"
		   "With SOURCE_DATE_EPOCH set, rebuilds are byte-identical.",
	.opts = opts,
	.run = run,
};
