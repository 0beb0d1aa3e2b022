/*
 * build_manifest.c - the manifest and sign steps.  Every file's digest was
 * taken while it was written to the stage (nx_build__put/build_copy), so nothing
 * is re-read here; the metadata comes from the student's own weights.
 */
#include "build_int.h"
#include "nexus/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nexus/budget.h"
#include "nexus/elf.h"
#include "nexus/sign.h"

static int format_timestamp(char out[32], int64_t epoch, nx_error *err)
{
	struct tm tm;
	time_t t = epoch < 0 ? time(NULL) : (time_t)epoch;

	if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
				    "SOURCE_DATE_EPOCH %lld is out of range", (long long)epoch);
	return 0;
}

static int strv_copy(char ***out, size_t *nout, char *const *v, size_t n)
{
	size_t i;

	if (!(*out = calloc(n + 1, sizeof(**out))))
		return NX_ENOMEM;
	for (i = 0; i < n; i++) {
		if (!((*out)[i] = strdup(v[i])))
			return NX_ENOMEM;
		*nout = i + 1;
	}
	return 0;
}

/*
 * The SHA-256 of the --vocab-reference file, as lower-case hex in a new
 * string: the policy records which reference the vocabulary was charged
 * against, so a gate can see it (verify uses its own file, never this).
 */
static int reference_digest(char **out, const char *file, nx_error *err)
{
	unsigned char d[NX_SHA256_LEN];
	char hex[2 * NX_SHA256_LEN + 1];
	struct stat st;
	int fd = open(file, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, file, "cannot open the --vocab-reference %s",
				      file);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		rc = nx_error_set(err, NX_EIO, file, 0, -1, "--vocab-reference %s is not a "
				  "regular file", file);
	else
		rc = nx_sha256_fd(d, fd, (uint64_t)st.st_size, file, err);
	close(fd);
	if (rc)
		return rc;
	nx_hex(hex, d);
	return (*out = strdup(hex)) ? 0 : nx_error_oom(err, NULL);
}

/*
 * The policy this build enforces (docs/FORMAT.md §1.1): recorded in the
 * signed manifest, and the one the build's self-verification applies
 * (nx_build__verify reads it back from there), so what is recorded is exactly
 * what was enforced.
 */
static int make_policy(nx_manifest_policy **out, const struct build *b)
{
	const nx_workspace *ws = b->ws;
	nx_manifest_policy *p = calloc(1, sizeof(*p));
	size_t i;
	int rc = 0;

	if (!p || !(p->nexus_version = strdup(NX_VERSION)))
		rc = NX_ENOMEM;
	if (!rc) {
		p->max_model_bytes = ws->max_model_bytes ? ws->max_model_bytes :
				     NX_CONFIG_DEFAULT_MAX_MODEL_BYTES;
		p->size_slack = ws->size_slack;
		p->max_leak_bytes = ws->max_leak_bytes ? ws->max_leak_bytes : NX_BUDGET_DEFAULT;
		p->selftest_tolerance = BUILD_SELFTEST_TOLERANCE;
		p->teacher_files = ws->nteacher;
		rc = strv_copy(&p->forbidden_terms, &p->nforbidden_terms, ws->forbidden_terms,
			       ws->nforbidden_terms);
	}
	if (!rc)
		rc = strv_copy(&p->forbidden_imports, &p->nforbidden_imports, ws->forbidden_imports,
			       ws->nforbidden_imports);
	if (!rc && b->rtcfg)
		rc = strv_copy(&p->python_packages, &p->npython_packages,
			       b->rtcfg->python_packages, b->rtcfg->npython_packages);
	if (!rc && !(p->allow_shared = calloc(ws->nallow_shared + 1, sizeof(*p->allow_shared))))
		rc = NX_ENOMEM;
	for (i = 0; !rc && i < ws->nallow_shared; i++) {
		p->nallow_shared = i + 1;
		if (!(p->allow_shared[i].name = strdup(ws->allow_shared[i].name)) ||
		    !(p->allow_shared[i].reason = strdup(ws->allow_shared[i].reason)))
			rc = NX_ENOMEM;
	}
	if (rc) {
		nx_manifest_policy_free(p);
		return rc;
	}
	*out = p;
	return 0;
}

int nx_build__manifest(struct build *b)
{
	nx_manifest *m = b->m;
	nx_manifest_policy *policy = NULL;
	char ts[32];
	int rc;

	if ((rc = nx_build__export_join(b)) != 0)
		return rc;
	rc = format_timestamp(ts, b->opts->source_date_epoch, b->err);
	if (!rc)
		rc = nx_manifest_set(m, &m->bundle_id, b->ws->bundle_id, b->err);
	if (!rc)
		rc = nx_manifest_set(m, &m->build_timestamp, ts, b->err);
	if (!rc)
		rc = nx_manifest_set(m, &m->architecture, b->ws->architecture ? b->ws->architecture : "",
				     b->err);
	if (!rc)
		rc = nx_manifest_set(m, &m->parameters, b->res->parameters, b->err);
	if (!rc)
		rc = nx_manifest_set(m, &m->format, "ONNX", b->err);
	if (!rc)
		rc = nx_manifest_set(m, &m->quantization, b->res->quantization, b->err);
	if (rc)
		return rc;
	if (make_policy(&policy, b) != 0)
		return nx_error_oom(b->err, NULL);
	if (b->opts->vocab_reference &&
	    (rc = reference_digest(&policy->vocab_reference_sha256, b->opts->vocab_reference,
				   b->err)) != 0) {
		nx_manifest_policy_free(policy);
		return rc;
	}
	/* Last: the runtime record lists the bin/ and lib/ files added so far. */
	if ((rc = nx_manifest_set_v11(m, policy, NX_VERSION, b->err)) != 0)
		return rc;
	/* every file is staged by now, with the mode the seal will give it */
	if ((rc = nx_manifest_set_modes(m, nx_stage_dirfd(b->stage), b->err)) != 0)
		return rc;
	/* the hosts the staged runtime loads on, read from its ELF files */
	{
		char arch[NX_ELF_ARCH_MAX], glibc[NX_ELF_GLIBC_MAX];

		if ((rc = nx_elf_platform(arch, glibc, nx_stage_dirfd(b->stage), m, b->err)) ||
		    (rc = nx_manifest_set_platform(m, "linux", arch, glibc, b->err)))
			return rc;
	}
	b->res->build_timestamp = strdup(ts);
	b->res->architecture = strdup(m->architecture);
	if (!b->res->build_timestamp || !b->res->architecture)
		return nx_error_oom(b->err, NULL);
	return 0;
}

static int file_cmp(const void *x, const void *y)
{
	return strcmp(((const struct nx_build_file *)x)->path, ((const struct nx_build_file *)y)->path);
}

static int result_files(struct build *b, size_t manifest_len)
{
	const nx_manifest *m = b->m;
	struct nx_build_result *r = b->res;
	size_t i;

	r->files = calloc(m->nfiles + 1, sizeof(*r->files));
	if (!r->files)
		return nx_error_oom(b->err, NULL);
	for (i = 0; i <= m->nfiles; i++) {
		struct nx_build_file *f = &r->files[r->nfiles];

		f->path = strdup(i < m->nfiles ? m->files[i].path : NX_MANIFEST_NAME);
		f->size = i < m->nfiles ? m->files[i].size : manifest_len;
		if (!f->path)
			return nx_error_oom(b->err, NULL);
		r->bytes += f->size;
		r->nfiles++;
	}
	qsort(r->files, r->nfiles, sizeof(*r->files), file_cmp);
	return 0;
}

int nx_build__sign(struct build *b)
{
	char *json = NULL;
	size_t len = 0;
	int fd = -1, rc;

	/*
	 * The invariants are claims that the verify step, run next on this very
	 * tree, must prove: if it does not, the stage is removed unpublished, so
	 * no published bundle carries them untrue.
	 */
	b->m->teacher_free = true;
	b->m->training_code_excluded = true;
	if (b->opts->key) {
		rc = nx_manifest_sign(b->m, b->opts->key, b->err);
		if (rc)
			return rc;
		nx_key_id(b->res->key_id, b->opts->key);
		b->res->is_signed = true;
	}
	rc = nx_manifest_serialize(&json, &len, b->m, b->err);
	if (rc)
		return rc;
	rc = nx_stage_create_file(&fd, b->stage, NX_MANIFEST_NAME, false, b->err);
	if (!rc) {
		size_t off = 0;

		while (off < len && !rc) {
			ssize_t n = write(fd, json + off, len - off);

			if (n < 0)
				rc = nx_error_errno(b->err, NX_EIO, errno, NX_MANIFEST_NAME,
						    "cannot write staged manifest.json");
			else
				off += (size_t)n;
		}
		close(fd);
	}
	if (!rc)
		rc = result_files(b, len);
	free(json);
	return rc;
}
