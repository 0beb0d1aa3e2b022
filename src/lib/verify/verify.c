/*
 * verify.c - nx_verify_bundle: runs the TRV checks in order over one bundle
 * and collects their findings.  Each check lives in its own file
 * (verify_<check>.c); this one owns the shared context.
 */
#include "nexus/clock.h"
#include "nexus/functional.h"
#include "nexus/bundle.h"
#include "verify_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NBUILTIN NX_SCAN_BUILTIN_TERMS

void nx_verify_opts_init(struct nx_verify_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->functional = true;
	opts->size_slack = -1;
}

/* Open the student once for the checks that read it (allowlist needs its
 * external data names, weights and size its summary).  Failure is a
 * weights finding, reported there. */
static void open_student(struct vfy_ctx *c)
{
	int fd = -1;
	long i = nx_vfy__find(c, NX_MODEL_PATH);

	if (i < 0 || !S_ISREG(c->entries[i].mode) || c->entries[i].nlink != 1)
		return;
	if (nx_vfy__open_regular(&fd, NULL, c->dirfd, NX_MODEL_PATH, NULL))
		return;
	if (nx_onnx_open(&c->onnx, fd, NX_MODEL_PATH, NULL))
		c->onnx = NULL;
	close(fd);
}

static int functional_finding(void *ctx, enum nx_functional_sev sev, enum nx_finding_code code,
			      const char *path, long line, const char *message)
{
	enum nx_severity s = sev == NX_FUNCTIONAL_FAIL ? NX_SEV_FAIL :
			     sev == NX_FUNCTIONAL_WARN ? NX_SEV_WARN : NX_SEV_INFO;

	return nx_report_add(ctx, NX_CHECK_FUNCTIONAL, s, code, path, line, "%s", message);
}

/* True when check id already FAILed. */
static bool check_failed(const nx_report *r, const char *id)
{
	const struct nx_check_result *cr;
	size_t n, i;

	cr = nx_report_checks(r, &n);
	for (i = 0; i < n; i++)
		if (!strcmp(cr[i].id, id))
			return cr[i].status == NX_CHECK_FAIL;
	return false;
}

/*
 * Bytes of the model and its external data (model/).  Once integrity has
 * listed the bundle, from that list; before (the integrity check's own
 * budget), from the model folder's regular files, each counted at most by
 * the blocks it holds: a sparse file hashes at memory speed and must not
 * buy a slow check hours.
 */
static uint64_t model_bytes(const struct vfy_ctx *c)
{
	uint64_t n = 0;
	struct dirent *d;
	struct stat st;
	DIR *dir;
	int fd;

	for (size_t i = 0; i < c->nentries; i++)
		if (!strncmp(c->entries[i].path, "model/", 6) && S_ISREG(c->entries[i].mode))
			n += c->entries[i].size;
	if (c->nentries)
		return n;
	fd = openat(c->dirfd, "model", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || !(dir = fdopendir(fd))) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	while ((d = readdir(dir)))
		if (!fstatat(dirfd(dir), d->d_name, &st, AT_SYMLINK_NOFOLLOW) && S_ISREG(st.st_mode))
			n += (uint64_t)st.st_size < (uint64_t)st.st_blocks * 512 ?
			     (uint64_t)st.st_size : (uint64_t)st.st_blocks * 512;
	closedir(dir);
	return n;
}

double nx_verify_time_budget(const char *check, uint64_t model_bytes)
{
	double s = NX_VERIFY_CHECK_S +
		   NX_VERIFY_CHECK_S_PER_GIB * (double)model_bytes / (double)(1ull << 30);

	if (!strcmp(check, NX_CHECK_FUNCTIONAL))
		s += (double)(NX_FUNCTIONAL_SELFTEST_MS + NX_FUNCTIONAL_IMPORT_MS +
			      nx_functional_liveness_ms()) / 1000.0;
	return s;
}

/* TRV-5: the bundle's selftest and its Python imports, in the sandbox. */
static int functional(struct vfy_ctx *c, bool *skipped)
{
	struct nx_functional_opts fo;
	nx_error err;

	*skipped = true;
	if (!c->opts->functional)
		return 0;
	/*
	 * Nothing of a bundle whose files are not the signed ones (or include
	 * files no bundle may have) is executed: the verdict is FAIL already,
	 * and a file swapped for a FIFO would block the run until its timeout.
	 */
	if (check_failed(c->r, NX_CHECK_INTEGRITY) || check_failed(c->r, NX_CHECK_ALLOWLIST))
		return nx_report_add(c->r, NX_CHECK_FUNCTIONAL, NX_SEV_INFO, NX_F_FUNCTIONAL_SKIPPED,
				     NULL, 0, "skipped: integrity failed");
	nx_functional_opts_init(&fo);
	fo.strict = c->opts->strict;
	fo.backend = c->opts->sandbox;
	fo.allow_no_sandbox = c->opts->allow_no_sandbox;
	fo.sandbox_memory = c->opts->sandbox_memory;
	fo.model_bytes = model_bytes(c);   /* the model and its external data */
	fo.selftest = !c->opts->functional_imports_only;
	/* not a repeat of anything the build did: it runs in every build too */
	fo.liveness = true;
	/*
	 * Never execute a bin/ or lib/ that is not the trusted runtime: the
	 * verdict is already FAIL, and a planted program chooses what the ELF
	 * closure binds into its sandbox (its DT_NEEDED / RUNPATH) and what its
	 * stderr puts into this report.  The Python import check runs the
	 * host's interpreter, not the bundle's binaries, so it still runs.
	 */
	if ((fo.selftest || fo.liveness) && c->runtime_untrusted) {
		fo.selftest = false;
		fo.liveness = false;
		if (nx_report_add(c->r, NX_CHECK_FUNCTIONAL, NX_SEV_INFO, NX_F_FUNCTIONAL_SELFTEST_SKIPPED,
				  NX_BUNDLE_CLI, 0, "bin/ or lib/ is not the trusted nexus runtime, "
				  "so bin/nexus_cli selftest is not executed"))
			return NX_ENOMEM;
	}
	nx_error_clear(&err);
	if (nx_functional_check(skipped, c->dirfd, c->bundle_path, &fo, functional_finding, c->r,
				&err) != 0)
		return nx_report_add(c->r, NX_CHECK_FUNCTIONAL, NX_SEV_FAIL, NX_F_FUNCTIONAL_ERROR,
				     err.path[0] ? err.path : NULL, 0, "%s", err.message);
	return 0;
}

int nx_verify_bundle(nx_report **out, int bundle_dirfd, const char *bundle_path,
		     const struct nx_verify_opts *opts, nx_error *err)
{
	struct nx_verify_opts defaults;
	struct vfy_ctx c = {0};
	double t;
	bool skipped;
	size_t i;
	int rc;

	if (!opts) {
		nx_verify_opts_init(&defaults);
		opts = &defaults;
	}
	c.dirfd = bundle_dirfd;
	c.bundle_path = bundle_path;
	c.opts = opts;
	c.terms = calloc(NBUILTIN + opts->nextra_terms, sizeof(*c.terms));
	if (!c.terms)
		return nx_error_oom(err, bundle_path);
	for (i = 0; i < NBUILTIN; i++)
		c.terms[c.nterms++] = nx_scan_builtin_terms[i];
	for (i = 0; i < opts->nextra_terms; i++)
		if (opts->extra_terms[i] && opts->extra_terms[i][0])
			c.terms[c.nterms++] = opts->extra_terms[i];
	rc = nx_report_new(&c.r, bundle_path, err);
	if (rc)
		goto out;

#define RUN(id, call)                                                   \
	do {                                                            \
		skipped = false;                                        \
		if (opts->progress)                                     \
			opts->progress(opts->progress_ctx, id, false,     \
				       nx_verify_time_budget(id, model_bytes(&c))); \
		t = nx_now();                                              \
		rc = (call);                                            \
		if (rc)                                                 \
			goto out;                                       \
		t = nx_now() - t;                                          \
		if (opts->progress)                                     \
			opts->progress(opts->progress_ctx, id, true, t); \
		rc = nx_report_check(c.r, id, skipped, t);              \
		if (rc) {                                               \
			rc = nx_error_oom(err, NULL); \
			goto out;                                       \
		}                                                       \
	} while (0)

	RUN(NX_CHECK_INTEGRITY, nx_vfy__integrity(&c, err));
	if (!opts->integrity_only) {
		open_student(&c);
		RUN(NX_CHECK_SIGNATURE, nx_vfy__signature(&c, &skipped, err));
		RUN(NX_CHECK_POLICY, nx_vfy__policy(&c, err));
		RUN(NX_CHECK_ALLOWLIST, nx_vfy__allowlist(&c, err));
		/* The code and budget checks may hold a JSON tree of 128 MiB and
		 * the student's summary takes up to ~160 MiB: never both, so that
		 * verify stays within its 256 MiB (docs/TRV.md "Cost").  Reading
		 * the summary again walks the protobuf only, not the weights. */
		if ((rc = nx_vfy__embedding_rows(&c)) != 0) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		nx_onnx_free(c.onnx);
		c.onnx = NULL;
		RUN(NX_CHECK_CODE, nx_vfy__code(&c, err));
		RUN(NX_CHECK_BUDGET, nx_vfy__budget(&c, err));
		open_student(&c);
		RUN(NX_CHECK_WEIGHTS, nx_vfy__weights(&c, &skipped, err));
		RUN(NX_CHECK_SIZE, nx_vfy__size(&c, &skipped, err));
		RUN(NX_CHECK_FUNCTIONAL, functional(&c, &skipped));
	}
#undef RUN
	if ((rc = nx_vfy__unchanged(&c)) != 0)
		goto out;
	*out = c.r;
	c.r = NULL;
out:
	if (rc == NX_ENOMEM && err && err->code != NX_ENOMEM)
		nx_error_set(err, NX_ENOMEM, bundle_path, 0, -1, "out of memory verifying %s",
			     bundle_path);
	nx_report_free(c.r);
	nx_onnx_free(c.onnx);
	nx_manifest_free(c.m);
	nx_fs_entries_free(c.entries, c.nentries);
	free(c.files);
	free(c.terms);
	nx_vfy__policy_release(&c);
	return rc;
}

int nx_verify_stage(nx_report **out, const nx_stage *stage, const char *final_path,
		    const char *what, const struct nx_verify_opts *opts, nx_error *err)
{
	struct nx_verify_opts vo = *opts;
	enum nx_verdict verdict;
	int rc;

	vo.digests_known = true;
	vo.hint_path = final_path;   /* the stage is gone by the time one reads it */
	if ((rc = nx_verify_bundle(out, nx_stage_dirfd(stage), nx_stage_path(stage), &vo, err)))
		return rc;
	if (nx_vfy__report_rename(*out, final_path)) {
		nx_report_free(*out);
		*out = NULL;
		return nx_error_oom(err, NULL);
	}
	verdict = nx_report_verdict(*out);
	if (verdict == NX_VERDICT_FAIL || (opts->strict && verdict == NX_VERDICT_WARN))
		return nx_error_set(err, NX_ECHECK, final_path, 0, -1,
				    "the %s bundle fails verification (verdict %s); nothing was "
				    "written to %s", what, nx_verdict_name(verdict), final_path);
	return 0;
}

int nx_verify_publish(nx_report **out, nx_stage *stage, const char *mjson, size_t mlen,
		      const char *final_path, const char *what,
		      const struct nx_verify_opts *opts, nx_error *err)
{
	int fd, rc;

	if ((rc = nx_stage_create_file(&fd, stage, NX_MANIFEST_NAME, false, err)))
		return rc;
	rc = nx_write_all(fd, mjson, mlen) ? nx_error_errno(err, NX_EIO, errno, NX_MANIFEST_NAME,
							    "cannot write %s", NX_MANIFEST_NAME) : 0;
	close(fd);
	if (rc || (rc = nx_stage_seal(stage, err)))
		return rc;
	/* every file of this private stage was written by the caller and its
	 * SHA-256 checked against the manifest as it streamed in */
	if (opts && (rc = nx_verify_stage(out, stage, final_path, what, opts, err)))
		return rc;
	return nx_stage_publish(stage, err);
}
