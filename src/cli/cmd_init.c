/*
 * cmd_init.c - `nexus init [DIR]`: a commented nexus.yaml from what the
 * workspace holds (an ONNX student, a tokenizer folder, serving code,
 * runtime.yaml, README and LICENSE).  It never overwrites: the file is
 * created with O_EXCL.  What it cannot know (selftest texts, the model's
 * outputs) is left as a comment saying what to write.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "nexus/bundle.h"

enum { OPT_JSON = 1 };

static const struct cli_opt opts[] = {
	{ "json", 0, NULL, "print {schema, path, found, todo} as one JSON object", OPT_JSON },
	{ 0 },
};

#define INIT_DEPTH_MAX 4        /* directories below DIR that are looked at */
#define INIT_ENTRIES_MAX 20000  /* entries read in all, so a huge tree stays quick */
#define INIT_LIST_MAX 64

struct found {
	char *onnx[INIT_LIST_MAX];     /* every .onnx file */
	size_t nonnx;
	char *teacher[INIT_LIST_MAX];  /* weights whose name says teacher */
	size_t nteacher;
	char *tokenizer;               /* first folder with tokenizer.json or vocab.txt */
	char *runtime;                 /* first runtime.yaml */
	char *serving;                 /* first folder with inference.py, predict.py, ... */
	char *modules[INIT_LIST_MAX];  /* teacher/training module names, for forbidden_imports */
	size_t nmodules;
	size_t entries;
};

/* Does name hold one of words at the start of a word ("my_trainer",
 * "training/x"; not "constraints")? */
static bool has_word(const char *name, const char *const *words)
{
	const char *hit;

	for (; *words; words++)
		for (hit = name; (hit = strcasestr(hit, *words)); hit++)
			if (hit == name || !((hit[-1] >= 'a' && hit[-1] <= 'z') ||
					     (hit[-1] >= 'A' && hit[-1] <= 'Z')))
				return true;
	return false;
}

static const char *const teacher_words[] = { "teacher", NULL };
/* names of files that are never serving code */
static const char *const training_words[] = { "teacher", "train", "distill", "checkpoint",
					      "optimizer", NULL };

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcasecmp(s + n - m, suffix);
}

static char *rel(const char *dir, const char *name)
{
	char *s = NULL;

	if (asprintf(&s, "%s%s%s", dir, *dir ? "/" : "", name) < 0)
		return NULL;
	return s;
}

static void add(char **list, size_t *n, char *s)
{
	size_t i;

	for (i = 0; s && i < *n; i++)
		if (!strcmp(list[i], s)) {
			free(s);
			return;
		}
	if (s && *n < INIT_LIST_MAX)
		list[(*n)++] = s;
	else
		free(s);
}

static bool is_weights(const char *name)
{
	return ends_with(name, ".onnx") || ends_with(name, ".pt") || ends_with(name, ".pth") ||
	       ends_with(name, ".bin") || ends_with(name, ".safetensors") ||
	       ends_with(name, ".ckpt");
}

/* A module name from a .py file or package directory name, if it is one. */
static char *module_name(const char *name, bool dir)
{
	size_t n = strlen(name) - (dir ? 0 : 3);
	size_t i;

	if (!n || (name[0] >= '0' && name[0] <= '9'))
		return NULL;
	for (i = 0; i < n; i++)
		if (!(name[i] == '_' || (name[i] >= 'a' && name[i] <= 'z') ||
		      (name[i] >= 'A' && name[i] <= 'Z') || (name[i] >= '0' && name[i] <= '9')))
			return NULL;
	return strndup(name, n);
}

static int visible(const struct dirent *e)
{
	return e->d_name[0] != '.' && strcmp(e->d_name, "__pycache__") &&
	       strcmp(e->d_name, "node_modules");
}

/* dirfd/relpath (relpath "" for DIR) and below, in sorted order, so the
 * result does not depend on the order the filesystem lists entries in. */
static void walk(struct found *f, int dirfd, const char *relpath, int depth)
{
	struct dirent **ents = NULL;
	int n, i;

	n = scandirat(dirfd, *relpath ? relpath : ".", &ents, visible, alphasort);
	if (n < 0)
		return;
	f->entries += (size_t)n;
	if (f->entries > INIT_ENTRIES_MAX)
		depth = INIT_DEPTH_MAX;  /* a huge tree: this level, nothing below */
	for (i = 0; i < n; i++) {
		const char *name = ents[i]->d_name;
		struct stat st;
		char *p = rel(relpath, name);

		if (!p || fstatat(dirfd, p, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			free(p);
			continue;
		}
		if (S_ISDIR(st.st_mode)) {
			char *init = rel(p, "__init__.py");

			/* a package: a folder with __init__.py */
			if (init && has_word(name, training_words) &&
			    faccessat(dirfd, init, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
				add(f->modules, &f->nmodules, module_name(name, true));
			free(init);
			if (depth < INIT_DEPTH_MAX)
				walk(f, dirfd, p, depth + 1);
			free(p);
			continue;
		}
		if (!S_ISREG(st.st_mode)) {
			free(p);
			continue;
		}
		if (ends_with(name, ".py") && has_word(name, training_words))
			add(f->modules, &f->nmodules, module_name(name, false));
		if (!f->serving && *relpath && !has_word(relpath, training_words) &&
		    (!strcmp(name, "inference.py") || !strcmp(name, "predict.py") ||
		     !strcmp(name, "serve.py") || !strcmp(name, "handler.py")))
			f->serving = strdup(relpath);
		if (!f->tokenizer && (!strcmp(name, "tokenizer.json") || !strcmp(name, "vocab.txt")))
			f->tokenizer = strdup(*relpath ? relpath : ".");
		if (!f->runtime && !strcmp(name, "runtime.yaml"))
			f->runtime = strdup(p);
		if (is_weights(name) && has_word(name, teacher_words))
			add(f->teacher, &f->nteacher, strdup(p));
		if (ends_with(name, ".onnx"))
			add(f->onnx, &f->nonnx, strdup(p));
		free(p);
	}
	for (i = 0; i < n; i++)
		free(ents[i]);
	free(ents);
}

/* The student: an .onnx named student, else the first that is not a teacher's. */
static const char *pick_student(const struct found *f)
{
	size_t i;

	for (i = 0; i < f->nonnx; i++)
		if (strcasestr(f->onnx[i], "student"))
			return f->onnx[i];
	for (i = 0; i < f->nonnx; i++)
		if (!has_word(f->onnx[i], teacher_words))
			return f->onnx[i];
	return NULL;
}

/* A YAML scalar for any path: a JSON string is a YAML double-quoted one. */
static void put_str(FILE *out, const char *s)
{
	json_t *j = json_string(s);
	char *q = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;

	fputs(q ? q : "\"\"", out);
	free(q);
	json_decref(j);
}

/* serving's .py files, training ones left out (they must never ship). */
static size_t serving_files(int dirfd, const char *dir, char **names, size_t max)
{
	struct dirent **ents = NULL;
	size_t n = 0;
	int k, i, fd;

	fd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	/* scandirat is glibc's; the sort is alphasort, as ls shows them */
	k = scandirat(fd, ".", &ents, NULL, alphasort);
	close(fd);
	for (i = 0; i < k; i++) {
		const char *name = ents[i]->d_name;

		if (n < max && ends_with(name, ".py") && name[0] != '.' &&
		    !has_word(name, training_words))
			names[n++] = strdup(name);
		free(ents[i]);
	}
	free(ents);
	return n;
}

static bool exists(int dirfd, const char *name)
{
	struct stat st;

	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
}

/* A value init found, else fallback with a TODO comment and a to-do line. */
static void put_found(FILE *out, json_t *todo, const char *found, const char *fallback,
		      const char *comment, const char *line)
{
	put_str(out, found ? found : fallback);
	if (found) {
		fputc('\n', out);
		return;
	}
	fprintf(out, "   # TODO: %s\n", comment);
	json_array_append_new(todo, json_string(line));
}

/* "key: NAME" for the first of names that exists, else the key commented
 * out with the default file name; true when one exists. */
static bool put_first(FILE *out, int dirfd, const char *key, const char *const *names)
{
	size_t i;

	for (i = 0; names[i] && !exists(dirfd, names[i]); i++)
		;
	if (!names[i]) {
		fprintf(out, "# %s: %s\n", key, strcmp(key, "readme") ? "LICENSE" : "README.md");
		return false;
	}
	fprintf(out, "%s: ", key);
	put_str(out, names[i]);
	fputc('\n', out);
	return true;
}

/* Write the commented nexus.yaml; todo[] gets what the user must still do. */
static void write_yaml(FILE *out, int dirfd, const struct found *f, const char *student,
		       json_t *todo)
{
	/* a README written for the bundle first: the repository's own one is
	 * about training */
	static const char *const readmes[] = { "BUNDLE_README.md", "README.md", NULL };
	static const char *const licenses[] = { "LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING",
						NULL };
	char *files[INIT_LIST_MAX];
	size_t i, nfiles = 0;

	fputs("# nexus.yaml - what `nexus build` packages from this directory, and what it\n"
	      "# must prove is left out.  Written by `nexus init` from what it found; check\n"
	      "# every line, then run `nexus build`.  Reference: nexus.yaml(5).\n\n", out);
	fputs("# The bundle's directory name and the model's description in manifest.json.\n"
	      "bundle_id: nexus_bundle_v1\narchitecture: student\n\n", out);
	fputs("# The distilled model that ships (ONNX).  Add outputs: [NAME] to keep only\n"
	      "# those outputs of the graph.\nstudent:\n  model: ", out);
	put_str(out, student ? student : "model/student.onnx");
	fputs(student ? "\n" : "   # TODO: no .onnx file found; export the student to ONNX\n", out);
	if (!student)
		json_array_append_new(todo, json_string("student.model: no .onnx student found"));
	for (i = 0; i < f->nonnx; i++)
		if (f->onnx[i] != student && !has_word(f->onnx[i], teacher_words)) {
			fputs("  # also found: ", out);
			put_str(out, f->onnx[i]);
			fputc('\n', out);
		}
	fputs("\n# Never packaged: every tensor of the student is fingerprinted against these.\n"
	      "teacher: [", out);
	for (i = 0; i < f->nteacher; i++) {
		if (i)
			fputs(", ", out);
		put_str(out, f->teacher[i]);
	}
	fputs("]\n", out);
	if (!f->nteacher)
		json_array_append_new(todo, json_string("teacher: no teacher file found; list the "
							"teacher's weights so verify can fingerprint them"));
	fputs("\n# A folder holding tokenizer.json (Hugging Face) or vocab.txt.\ntokenizer: ", out);
	put_found(out, todo, f->tokenizer, "tokenizer", "no tokenizer.json or vocab.txt found",
		  "tokenizer: no tokenizer folder found");
	fputs("\n# The runtime's settings (task, labels, max_sequence_length; nexus.yaml(5)).\n"
	      "runtime_config: ", out);
	put_found(out, todo, f->runtime, NX_BUNDLE_RUNTIME_CONFIG,
		  "write it (nexus.yaml(5), RUNTIME CONFIGURATION)",
		  "runtime_config: no runtime.yaml found");
	fputs("\n# The inference-only Python sources; teacher and training imports are\n"
	      "# filtered out of them, and a file that still uses one fails the build.\n", out);
	if (f->serving)
		nfiles = serving_files(dirfd, f->serving, files, INIT_LIST_MAX);
	fputs("source:\n  dir: ", out);
	put_str(out, f->serving ? f->serving : "serving");
	fputs("\n  files: [", out);
	for (i = 0; i < nfiles; i++) {
		if (i)
			fputs(", ", out);
		put_str(out, files[i]);
		free(files[i]);
	}
	fputs("]", out);
	fputs(f->serving ? "\n" : "   # TODO: no inference.py/predict.py/serve.py found\n", out);
	if (!f->serving)
		json_array_append_new(todo, json_string("source: no serving code found"));
	fputs("\n# Modules the serving code must not import (teacher_model and\n"
	      "# training_modules always are).\nforbidden_imports: [teacher_model, training_modules",
	      out);
	for (i = 0; i < f->nmodules; i++)
		if (strcmp(f->modules[i], "teacher_model") && strcmp(f->modules[i], "training_modules"))
			fprintf(out, ", %s", f->modules[i]);
	fputs("]\n", out);
	fputs("\n# A few typical inputs: the build records the student's outputs for them\n"
	      "# and every host checks it reproduces them (nexus_cli selftest).\n"
	      "# selftest: [\"a typical input\", \"another one\"]\n", out);
	json_array_append_new(todo, json_string("selftest: add a few typical inputs"));
	fputs("\n# Packaged as README.md and LICENSE; without them a README.md is generated\n"
	      "# and no LICENSE ships.\n", out);
	put_first(out, dirfd, "readme", readmes);
	if (!put_first(out, dirfd, "license", licenses))
		json_array_append_new(todo, json_string("license: no LICENSE found"));
}

static void found_free(struct found *f)
{
	size_t i;

	for (i = 0; i < f->nonnx; i++)
		free(f->onnx[i]);
	for (i = 0; i < f->nteacher; i++)
		free(f->teacher[i]);
	for (i = 0; i < f->nmodules; i++)
		free(f->modules[i]);
	free(f->tokenizer);
	free(f->runtime);
	free(f->serving);
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	struct found f;
	struct cli_parser p;
	const char *dir, *student;
	char *path = NULL;
	json_t *todo = NULL;
	bool json = false;
	FILE *out = NULL;
	int k, dirfd = -1, fd = -1, status = 3;
	size_t i;

	memset(&f, 0, sizeof(f));
	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0)
		if (k == OPT_JSON)
			json = true;
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos > 1)
		return cli_usage(verb, "expected at most one DIR, got %d arguments", p.npos);
	dir = p.npos ? p.pos[0] : ".";
	if (asprintf(&path, "%s/nexus.yaml", dir) < 0)
		return 3;
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		fprintf(stderr, "nexus init: error: cannot open the directory %s: %s\n", dir,
			strerror(errno));
		goto out;
	}
	fd = openat(dirfd, "nexus.yaml", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
	if (fd < 0) {
		if (errno == EEXIST) {
			fprintf(stderr, "nexus init: error: %s already exists; nexus init never "
				"overwrites it (remove it first to start again)\n", path);
			status = 2;
		} else {
			fprintf(stderr, "nexus init: error: cannot create %s: %s\n", path, strerror(errno));
		}
		goto out;
	}
	walk(&f, dirfd, "", 0);
	student = pick_student(&f);
	todo = json_array();
	if (!(out = fdopen(fd, "w")))
		goto out;
	fd = -1;
	write_yaml(out, dirfd, &f, student, todo);
	if (fclose(out) != 0) {
		out = NULL;
		fprintf(stderr, "nexus init: error: cannot write %s: %s\n", path, strerror(errno));
		unlinkat(dirfd, "nexus.yaml", 0);
		goto out;
	}
	out = NULL;
	status = 0;
	if (json) {
		json_t *doc = json_pack("{s:s, s:s, s:{s:s?, s:s?, s:s?, s:s?}, s:O}",
					"schema", "nexus.init.v1", "path", path, "found",
					"student", student, "tokenizer", f.tokenizer,
					"runtime_config", f.runtime, "source_dir", f.serving,
					"todo", todo);

		if (!doc || json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) ||
		    putchar('\n') == EOF)
			status = 3;
		json_decref(doc);
		goto out;
	}
	printf("wrote %s\n", path);
	printf("  student         %s\n", student ? student : "(none found)");
	printf("  tokenizer       %s\n", f.tokenizer ? f.tokenizer : "(none found)");
	printf("  runtime_config  %s\n", f.runtime ? f.runtime : "(none found)");
	printf("  source          %s\n", f.serving ? f.serving : "(none found)");
	for (i = 0; i < json_array_size(todo); i++)
		printf("  to do: %s\n", json_string_value(json_array_get(todo, i)));
	{
		char word[4200];

		printf("check it, then run: nexus build%s%s\n", p.npos ? " " : "",
		       p.npos ? nx_shell_word(word, sizeof(word), dir) : "");
	}
out:
	if (out)
		fclose(out);
	if (fd >= 0)
		close(fd);
	if (dirfd >= 0)
		close(dirfd);
	json_decref(todo);
	found_free(&f);
	free(path);
	return status;
}

const struct cli_verb cmd_init = {
	.name = "init",
	.args = "[DIR]",
	.summary = "write a commented nexus.yaml from what a workspace holds",
	.details = "Looks through DIR (default: the current directory, four levels deep) for an\n"
		   "ONNX student, teacher weights, a tokenizer folder (tokenizer.json or\n"
		   "vocab.txt), runtime.yaml, serving code (inference.py, predict.py, serve.py),\n"
		   "README and LICENSE, and writes DIR/nexus.yaml naming them, with a comment on\n"
		   "every key and a TODO for what it could not find.  An existing nexus.yaml is\n"
		   "never overwritten (exit 2).",
	.opts = opts,
	.run = run,
};
