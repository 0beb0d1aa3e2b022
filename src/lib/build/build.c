/*
 * build.c - nx_build(): the load step (every input opened and checked before
 * anything is written), the step sequence, and the stage-writing helpers.
 */
#include "build_int.h"
#include "nexus/clock.h"
#include "nexus/bundle.h"

#include "nexus/export.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BUILD_INPUTS_MAX 4096

static const char *const step_names[NX_BUILD_NSTEPS] = {
	"load", "stage", "export", "filter", "assemble", "manifest", "sign", "verify", "publish",
};

const char *nx_build_step_name(enum nx_build_step step)
{
	return (unsigned)step < NX_BUILD_NSTEPS ? step_names[step] : "?";
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && !strcmp(s + n - m, suffix);
}

/*
 * Is the packaged file fd (size st->st_size) byte-identical to teacher i?
 * A copy of a teacher under another name is a different inode, and its
 * tensors may all be under the fingerprint's size floor, so compare the
 * content; only a teacher of exactly the same size is read.
 */
static int same_content(struct build *b, bool *out, int fd, const struct stat *st, size_t i)
{
	unsigned char a[NX_SHA256_LEN], t[NX_SHA256_LEN];
	const char *tp = b->ws->teacher[i];
	int tfd = -1, rc;

	*out = false;
	if (!S_ISREG(b->teacher_st[i].st_mode) || b->teacher_st[i].st_size != st->st_size ||
	    st->st_size == 0)
		return 0;
	rc = nx_fs_open_regular(&tfd, NULL, b->wsfd, tp, (uint64_t)st->st_size, b->err);
	if (rc)
		return rc;
	rc = nx_sha256_fd(t, tfd, (uint64_t)st->st_size, tp, b->err);
	if (!rc)
		rc = nx_sha256_fd(a, fd, (uint64_t)st->st_size, NULL, b->err);
	if (!rc)
		*out = !memcmp(a, t, sizeof(a));
	close(tfd);
	return rc;
}

/* Refuse a packaged path that names, is the same file as, or is a copy of a teacher file. */
static int check_not_teacher(struct build *b, const char *path, const struct stat *st, int fd)
{
	size_t i;
	bool same;
	int rc;

	for (i = 0; i < b->ws->nteacher; i++)
		if (!strcmp(path, b->ws->teacher[i]))
			return nx_error_set(b->err, NX_ECONFIG, "nexus.yaml", 0, -1,
					    "nexus.yaml: %s is listed under teacher: and would be packaged; "
					    "a teacher file is never packaged, fix the paths", path);
	for (i = 0; st && i < b->nteacher_st; i++)
		if (st->st_dev == b->teacher_st[i].st_dev && st->st_ino == b->teacher_st[i].st_ino)
			return nx_error_set(b->err, NX_ECONFIG, path, 0, -1,
					    "%s is the same file as a teacher file; a teacher file is "
					    "never packaged", path);
	for (i = 0; st && i < b->nteacher_st; i++) {
		if ((rc = same_content(b, &same, fd, st, i)))
			return rc;
		if (same)
			return nx_error_set(b->err, NX_ECHECK, path, 0, -1,
					    "%s is byte-identical to the teacher file %s; a copy of a "
					    "teacher is never packaged", path, b->ws->teacher[i]);
	}
	return 0;
}

/* A source.follow_links_within entry as a path: "~" and "~/..." are $HOME;
 * a relative one is relative to the workspace.  A new string or NULL. */
static char *root_path(const struct build *b, const char *root)
{
	const char *home = getenv("HOME");
	char *s = NULL;

	if ((!strcmp(root, "~") || !strncmp(root, "~/", 2)) && home && *home)
		return asprintf(&s, "%s%s", home, root + 1) < 0 ? NULL : s;
	if (root[0] == '/')
		return strdup(root);
	return asprintf(&s, "%s/%s", b->opts->workspace ? b->opts->workspace : ".", root) < 0
		       ? NULL : s;
}

/*
 * A workspace path that is or passes through a link (a Hugging Face cache
 * snapshot, a DVC checkout): resolved, and opened only when its target lies
 * inside a source.follow_links_within root.  The target is opened beneath
 * the root with no link allowed, so a link changed after the resolution is
 * refused rather than followed out of the root.  1: no root holds it.
 */
static int open_linked(struct build *b, int *out, struct stat *st, const char *path,
		       uint64_t max)
{
	char *wpath = NULL, *target = NULL;
	size_t i;
	int rc = 1;

	if (asprintf(&wpath, "%s/%s", b->opts->workspace ? b->opts->workspace : ".", path) < 0)
		return nx_error_oom(b->err, path);
	target = realpath(wpath, NULL);
	free(wpath);
	for (i = 0; target && rc == 1 && i < b->ws->nfollow_roots; i++) {
		char *rp = root_path(b, b->ws->follow_roots[i]), *root = rp ? realpath(rp, NULL) : NULL;
		size_t n = root ? strlen(root) : 0;
		int rootfd;

		free(rp);
		if (root && n > 1 && !strncmp(target, root, n) && target[n] == '/') {
			rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
			if (rootfd < 0)
				rc = nx_error_errno(b->err, NX_EIO, errno, root, "cannot open %s", root);
			else
				rc = nx_fs_open_regular(out, st, rootfd, target + n + 1, max, b->err);
			if (rootfd >= 0)
				close(rootfd);
		}
		free(root);
	}
	free(target);
	return rc;
}

/* Open a workspace input: regular, beneath (or, through links, inside a
 * source.follow_links_within root), not hard-linked, not a teacher. */
static int open_input(struct build *b, int *out, struct stat *st, int dirfd,
		      const char *path, uint64_t max)
{
	int fd = -1, rc;

	rc = nx_fs_open_regular(&fd, st, dirfd, path, max, b->err);
	if (rc == NX_EUNSAFE && dirfd == b->wsfd && b->ws->nfollow_roots) {
		if ((rc = open_linked(b, &fd, st, path, max)) == 1)
			rc = nx_error_set(b->err, NX_EUNSAFE, path, 0, -1,
					  "%s: is or passes through a link that leads outside every "
					  "source.follow_links_within directory; add the directory it "
					  "leads into there, or copy the real file", path);
	} else if (rc == NX_EUNSAFE && dirfd == b->wsfd && strstr(b->err->message, "symlink")) {
		rc = nx_error_set(b->err, NX_EUNSAFE, path, 0, -1,
				  "%s: is or passes through a symlink; nexus follows links only into "
				  "the directories nexus.yaml declares (source.follow_links_within: "
				  "[~/.cache/huggingface/hub] for a Hugging Face cache), else replace "
				  "it with the real file", path);
	}
	if (rc)
		return rc;
	/* DVC links its cache into the workspace: with linked layouts declared,
	 * another name of the file is fine (the bytes are hashed as copied) */
	if (st->st_nlink > 1 && b->rtfd >= 0 && dirfd == b->rtfd) {
		/* not the user's workspace: say where, and the usual cause */
		rc = nx_error_set(b->err, NX_EUNSAFE, path, 0, -1,
				  "the runtime's %s/%s has %lu hard links, and nexus packages only "
				  "a file no other name can change; the usual cause is perf, whose "
				  "build-id cache (~/.debug) hard-links the libraries it profiled: "
				  "run `perf buildid-cache --purge %s/%s` or remove ~/.debug (find "
				  "the other names with `find / -xdev -samefile %s/%s`), or reinstall "
				  "the runtime", b->opts->runtime_dir, path, (unsigned long)st->st_nlink,
				  b->opts->runtime_dir, path, b->opts->runtime_dir, path);
		goto fail;
	}
	if (st->st_nlink > 1 && !(dirfd == b->wsfd && b->ws->nfollow_roots)) {
		rc = nx_error_set(b->err, NX_EUNSAFE, path, 0, -1,
				  "%s has %lu hard links; copy it to a file of its own so the "
				  "packaged bytes cannot be changed through another name (or, for a "
				  "DVC checkout, declare source.follow_links_within in nexus.yaml)",
				  path, (unsigned long)st->st_nlink);
		goto fail;
	}
	if (dirfd == b->wsfd) {
		rc = check_not_teacher(b, path, st, fd);
		if (rc)
			goto fail;
	}
	*out = fd;
	return 0;
fail:
	close(fd);
	return rc;
}

/* Add an input (src and dst are owned by the input from here on) and open it. */
static int add_input(struct build *b, int dirfd, char *src, char *dst,
		     enum build_kind kind, bool exec)
{
	struct build_input *in;
	int rc;

	if (!src || !dst) {
		free(src);
		free(dst);
		return nx_error_oom(b->err, NULL);
	}
	if (b->nin >= b->capin) {
		free(src);
		free(dst);
		return nx_error_set(b->err, NX_EINTERNAL, NULL, 0, -1, "too many inputs");
	}
	in = &b->in[b->nin];
	memset(in, 0, sizeof(*in));
	in->src = src;
	in->dst = dst;
	in->kind = kind;
	in->exec = exec;
	in->fd = -1;
	b->nin++;
	rc = open_input(b, &in->fd, &in->st, dirfd, src,
			kind == BUILD_COPY ? NX_BUILD_RUNTIME_MAX : NX_BUILD_SOURCE_MAX);
	if (rc || kind == BUILD_COPY)
		return rc;
	/* Small inputs are read now, so that the later steps never reopen them. */
	{
		size_t cap = (size_t)in->st.st_size;
		ssize_t n;

		in->buf = malloc(cap + 1);
		if (!in->buf)
			return nx_error_set(b->err, NX_ENOMEM, src, 0, -1, "out of memory reading %s", src);
		while (in->len < cap) {
			n = pread(in->fd, in->buf + in->len, cap - in->len, (off_t)in->len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return nx_error_errno(b->err, NX_EIO, n < 0 ? errno : EIO, src,
						      "cannot read %s", src);
			in->len += (size_t)n;
		}
		in->buf[in->len] = '\0';
		close(in->fd);
		in->fd = -1;
	}
	return 0;
}

/*
 * README.md and LICENSE: the file a key names must exist (the error names
 * the key); by default an absent README.md is generated from nexus.yaml and
 * an absent LICENSE is left out (verify WARNs doc-missing).
 */
static int add_doc(struct build *b, const char *key, const char *src, bool given,
		   const char *dst)
{
	struct build_input *in;
	char *text = NULL;
	int n;

	if (faccessat(b->wsfd, src, F_OK, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT)
		return add_input(b, b->wsfd, strdup(src), strdup(dst), BUILD_TEXT, false);
	if (given)
		return nx_error_set(b->err, NX_ECONFIG, "nexus.yaml", 0, -1,
				    "nexus.yaml: %s: %s does not exist in the workspace; fix the "
				    "path, or remove the key (%s)", key, src,
				    strcmp(key, "readme") ? "the bundle then has no LICENSE"
							  : "a README.md is then generated");
	if (strcmp(key, "readme"))
		return 0;
	if (b->nin >= b->capin)
		return nx_error_set(b->err, NX_EINTERNAL, NULL, 0, -1, "too many inputs");
	n = asprintf(&text, "# %s\n\n%s, packaged by nexus. Run it on this host:\n\n"
			    "    bin/nexus_cli run --text \"...\"\n\n"
			    "and check it with `nexus verify` (see manifest.json).\n"
			    "(This README was generated: nexus.yaml names no readme and the "
			    "workspace has no README.md.)\n", b->ws->bundle_id, b->ws->architecture);
	in = &b->in[b->nin];
	memset(in, 0, sizeof(*in));
	in->fd = -1;
	in->kind = BUILD_TEXT;
	in->src = strdup("(generated README.md)");
	in->dst = strdup(dst);
	in->buf = text;
	in->len = n > 0 ? (size_t)n : 0;
	b->nin++;
	if (n < 0 || !in->src || !in->dst)
		return nx_error_oom(b->err, NULL);
	return 0;
}

static char *join(const char *a, const char *b)
{
	char *s;

	if (asprintf(&s, "%s/%s", a, b) < 0)
		return NULL;
	return s;
}

static int load(struct build *b)
{
	static const char *const tok_files[] = { "tokenizer.json", "vocab.txt" };
	const nx_workspace *ws;
	size_t i, ntok = 0;
	int fd, rc;

	const char *cfg = b->opts->config ? b->opts->config : "nexus.yaml";

	rc = nx_workspace_load(&b->ws, b->wsfd, cfg, b->err);
	if (rc == NX_EIO && faccessat(b->wsfd, cfg, F_OK, AT_SYMLINK_NOFOLLOW) != 0)
		return nx_error_set(b->err, NX_ECONFIG, b->opts->workspace, 0, -1,
				    "no %s in %s: a workspace is a directory with nexus.yaml "
				    "at its root (see nexus.yaml(5) and examples/spam-distill)", cfg,
				    b->opts->workspace ? b->opts->workspace : ".");
	if (rc)
		return rc;
	ws = b->ws;
	if (ws->nsource_files > BUILD_INPUTS_MAX)
		return nx_error_set(b->err, NX_ELIMIT, "nexus.yaml", 0, -1,
				    "nexus.yaml: more than %d source files", BUILD_INPUTS_MAX);
	b->capin = ws->nsource_files + 9;
	b->in = calloc(b->capin, sizeof(*b->in));
	b->teacher_st = calloc(ws->nteacher + 1, sizeof(*b->teacher_st));
	if (!b->in || !b->teacher_st)
		return nx_error_oom(b->err, NULL);
	/* Teacher files are never read here, only identified (verify fingerprints them). */
	/*
	 * A listed teacher that cannot be found is an error: skipping it would
	 * let a typo in nexus.yaml silently switch the fingerprint check off.
	 */
	for (i = 0; i < ws->nteacher; i++) {
		rc = nx_fs_open_beneath(&fd, b->wsfd, ws->teacher[i], O_PATH, b->err);
		if (rc == NX_EUNSAFE && ws->nfollow_roots) {
			struct stat tst;

			/* a teacher in a Hugging Face cache: identified through its link */
			if ((rc = open_linked(b, &fd, &tst, ws->teacher[i], UINT64_MAX)) == 1)
				rc = nx_error_set(b->err, NX_EUNSAFE, ws->teacher[i], 0, -1,
						  "teacher %s is a link that leads outside every "
						  "source.follow_links_within directory", ws->teacher[i]);
		}
		if (rc) {
			if (b->err->code == NX_EIO)
				nx_error_set(b->err, NX_ECONFIG, "nexus.yaml", 0, -1,
					     "nexus.yaml: teacher file %s does not exist in the "
					     "workspace; fix the path or remove it from teacher:",
					     ws->teacher[i]);
			return b->err->code;
		}
		/* teacher_st[i] must stay the identity of ws->teacher[i] */
		if (fstat(fd, &b->teacher_st[b->nteacher_st]) != 0) {
			rc = nx_error_errno(b->err, NX_EIO, errno, ws->teacher[i], "cannot stat %s",
					    ws->teacher[i]);
			close(fd);
			return rc;
		}
		b->nteacher_st++;
		close(fd);
	}
	rc = open_input(b, &b->student_fd, &b->student_st, b->wsfd, ws->student.model,
			ws->max_model_bytes ? ws->max_model_bytes : NX_CONFIG_DEFAULT_MAX_MODEL_BYTES);
	if (rc == NX_ELIMIT) {
		/* name the key that sets the limit, in the units it is written in */
		char size[NX_SIZE_STR_MAX], max[NX_SIZE_STR_MAX];
		struct stat st;

		if (fstatat(b->wsfd, ws->student.model, &st, AT_SYMLINK_NOFOLLOW) != 0)
			st.st_size = 0;
		return nx_error_set(b->err, NX_ELIMIT, ws->student.model, 0, -1,
				    "the student %s is %s, more than limits.max_model_bytes (%s); "
				    "raise limits.max_model_bytes in nexus.yaml if it is meant to "
				    "be this large", ws->student.model,
				    nx_size_str(size, (unsigned long long)st.st_size),
				    nx_size_str(max, (unsigned long long)(ws->max_model_bytes
						? ws->max_model_bytes : NX_CONFIG_DEFAULT_MAX_MODEL_BYTES)));
	}
	if (rc)
		return rc;
	for (i = 0; i < ws->nsource_files; i++) {
		const char *f = ws->source_files[i];

		rc = add_input(b, b->wsfd, join(ws->source_dir, f), join("src", f),
			       ends_with(f, ".py") ? BUILD_PYTHON : BUILD_TEXT, false);
		if (rc)
			return rc;
	}
	for (i = 0; i < sizeof(tok_files) / sizeof(tok_files[0]); i++) {
		char *tp = join(ws->tokenizer, tok_files[i]);

		/* Absent is fine (one of the two is enough); anything present is checked. */
		if (tp && faccessat(b->wsfd, tp, F_OK, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT) {
			free(tp);
			continue;
		}
		rc = add_input(b, b->wsfd, tp, join(NX_BUNDLE_TOKENIZER_DIR, tok_files[i]), BUILD_COPY, false);
		if (rc)
			return rc;
		ntok++;
	}
	if (!ntok)
		return nx_error_set(b->err, NX_ECONFIG, ws->tokenizer, 0, -1,
				    "%s holds neither tokenizer.json nor vocab.txt; put the "
				    "tokenizer files there or fix tokenizer: in nexus.yaml", ws->tokenizer);
	/* Optional: its chat_template is compiled (and refused if unsupported) at assembly. */
	{
		char *tp = join(ws->tokenizer, "tokenizer_config.json");

		if (tp && faccessat(b->wsfd, tp, F_OK, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT) {
			free(tp);
		} else if ((rc = add_input(b, b->wsfd, tp, strdup(NX_BUNDLE_TOKENIZER_CONFIG),
					   BUILD_COPY, false))) {
			return rc;
		}
	}
	/* a decoder's generation_config.json, where Hugging Face keeps it (beside
	 * the tokenizer): the runtime's generation defaults */
	{
		char *gp = join(ws->tokenizer, "generation_config.json");

		if (gp && faccessat(b->wsfd, gp, F_OK, AT_SYMLINK_NOFOLLOW) != 0 && errno == ENOENT)
			free(gp);
		else if ((rc = add_input(b, b->wsfd, gp, strdup(NX_BUNDLE_GENERATION_CONFIG),
					 BUILD_TEXT, false)))
			return rc;
	}
	rc = add_input(b, b->wsfd, strdup(ws->runtime_config), strdup(NX_BUNDLE_RUNTIME_CONFIG),
		       BUILD_RUNTIME, false);
	if (!rc && ws->readme)
		rc = add_doc(b, "readme", ws->readme, ws->readme_given, "README.md");
	if (!rc && ws->license)
		rc = add_doc(b, "license", ws->license, ws->license_given, "LICENSE");
	if (rc)
		return rc;
	if (!b->opts->runtime_dir)
		return nx_error_set(b->err, NX_EDEP, NULL, 0, -1,
				    "no runtime directory: set NEXUS_RUNTIME_DIR to the directory "
				    "holding bin/nexus_cli, lib/libonnxruntime.so.1 and " NX_BUNDLE_NOTICES);
	b->rtfd = open(b->opts->runtime_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->rtfd < 0)
		return nx_error_errno(b->err, NX_EDEP, errno, b->opts->runtime_dir,
				      "cannot open the runtime directory %s", b->opts->runtime_dir);
	rc = add_input(b, b->rtfd, strdup(NX_BUNDLE_CLI), strdup(NX_BUNDLE_CLI), BUILD_COPY, true);
	if (!rc)
		rc = add_input(b, b->rtfd, strdup("lib/libonnxruntime.so.1"),
			       strdup("lib/libonnxruntime.so.1"), BUILD_COPY, false);
	/* the licence texts of the two above: they ship together (FORMAT.md) */
	if (!rc)
		rc = add_input(b, b->rtfd, strdup(NX_BUNDLE_NOTICES), strdup(NX_BUNDLE_NOTICES),
			       BUILD_COPY, false);
	if (rc == NX_EIO)
		b->err->code = rc = NX_EDEP;
	return rc;
}

static int run_step(struct build *b, enum nx_build_step step, int (*fn)(struct build *))
{
	double t0 = nx_now();
	int rc;

	if (b->opts->progress)
		b->opts->progress(b->opts->progress_ctx, step, false, 0);
	rc = fn(b);
	b->res->step_seconds[step] = nx_now() - t0;
	if (!rc && b->opts->progress)
		b->opts->progress(b->opts->progress_ctx, step, true, b->res->step_seconds[step]);
	return rc;
}

/*
 * The termination signals are held while the staging directory exists but
 * on_stage has not been told (from mkdir until the hook returns, and from
 * the hook's NULL until the directory is removed): a program whose handler
 * removes the stage it was told about would otherwise leave one behind.
 * A signal that arrives meanwhile is delivered when they are released.  The
 * mask is this thread's: the build has no other thread at either point
 * (the export's threads start after the stage and are joined before).
 */
static void hold_signals(bool hold, sigset_t *old)
{
	sigset_t set;

	if (!hold) {
		pthread_sigmask(SIG_SETMASK, old, NULL);
		return;
	}
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &set, old);
}

static int stage(struct build *b)
{
	const char *out = b->opts->output ? b->opts->output : b->ws->bundle_id;
	sigset_t old;
	int rc;

	hold_signals(true, &old);
	rc = nx_stage_create(&b->stage, out, b->opts->force, b->err);
	if (!rc) {
		nx_stage_set_nosync(b->stage, b->opts->no_fsync);
		if (b->opts->on_stage)
			b->opts->on_stage(b->opts->stage_ctx, b->stage);
	}
	hold_signals(false, &old);
	if (rc)
		return rc;
	b->res->bundle_path = strdup(out);
	b->res->bundle_id = strdup(b->ws->bundle_id);
	if (!b->res->bundle_path || !b->res->bundle_id)
		return nx_error_oom(b->err, NULL);
	return nx_manifest_new(&b->m, b->err);
}

static int publish(struct build *b)
{
	return nx_stage_publish(b->stage, b->err);
}

static void build_release(struct build *b)
{
	sigset_t old;
	size_t i;

	for (i = 0; i < b->nin; i++) {
		if (b->in[i].fd >= 0)
			close(b->in[i].fd);
		free(b->in[i].src);
		free(b->in[i].buf);
		free(b->in[i].dst);
	}
	free(b->in);
	free(b->teacher_st);
	nx_hash_follow_cancel(b->data_hash);
	free(b->model_name);
	free(b->data_name);
	nx_build__writeback_join(b);
	hold_signals(true, &old);
	if (b->stage && b->opts->on_stage)
		b->opts->on_stage(b->opts->stage_ctx, NULL);
	nx_stage_free(b->stage);
	hold_signals(false, &old);
	nx_onnx_free(b->model);
	nx_manifest_free(b->m);
	nx_workspace_free(b->ws);
	nx_runtime_config_free(b->rtcfg);
	if (b->student_fd >= 0)
		close(b->student_fd);
	if (b->rtfd >= 0)
		close(b->rtfd);
	if (b->wsfd >= 0)
		close(b->wsfd);
}

int nx_build(struct nx_build_result **out, const struct nx_build_opts *opts, nx_error *err)
{
	static int (*const steps[NX_BUILD_NSTEPS])(struct build *) = {
		NULL, stage, nx_build__export, nx_build__filter, nx_build__assemble, nx_build__manifest,
		nx_build__sign, nx_build__verify, publish,
	};
	nx_error local;
	struct build b = { .opts = opts, .err = err ? err : &local, .wsfd = -1, .rtfd = -1,
			   .student_fd = -1 };
	const char *wspath = opts->workspace ? opts->workspace : ".";
	int rc = 0, s;

	nx_error_clear(b.err);
	b.res = calloc(1, sizeof(*b.res));
	if (!b.res)
		return nx_error_oom(b.err, NULL);
	b.wsfd = open(wspath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b.wsfd < 0) {
		rc = nx_error_errno(b.err, NX_EIO, errno, wspath, "cannot open workspace %s", wspath);
		goto out;
	}
	rc = run_step(&b, NX_BUILD_LOAD, load);
	for (s = NX_BUILD_STAGE; !rc && s < NX_BUILD_NSTEPS; s++)
		rc = run_step(&b, (enum nx_build_step)s, steps[s]);
	if (rc)
		goto out;
	*out = b.res;
	b.res = NULL;
out:
	build_release(&b);
	nx_build_result_free(b.res);
	return rc;
}

void nx_build_result_free(struct nx_build_result *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->nfiles; i++)
		free(r->files[i].path);
	free(r->files);
	for (i = 0; i < r->nzeroed; i++)
		free(r->zeroed[i].name);
	free(r->zeroed);
	for (i = 0; i < r->nwarnings; i++)
		free(r->warnings[i]);
	free(r->warnings);
	for (i = 0; i < r->nremoved; i++) {
		free(r->removed[i].file);
		free(r->removed[i].module);
		free(r->removed[i].statement_kind);
	}
	free(r->removed);
	nx_export_result_release(r->exported);
	free(r->exported);
	free(r->bundle_path);
	free(r->bundle_id);
	free(r->architecture);
	free(r->parameters);
	free(r->quantization);
	free(r->build_timestamp);
	free(r);
}
