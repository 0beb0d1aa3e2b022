/*
 * verify_teacher.c - teacher fingerprinting (part of `weights`): every
 * student tensor of at least NX_VERIFY_TEACHER_TENSOR_MIN bytes is hashed
 * and compared with the hashes of the teacher's tensors.  A byte-identical
 * tensor means the student carries a piece of the teacher.
 *
 * Teachers are ONNX models (inline or external data); other formats are
 * reported as not fingerprinted rather than silently passed.
 */
#include "verify_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/magic.h"

#define CHECK NX_CHECK_WEIGHTS
#define FINGERPRINTS_MAX 1000000

struct print {
	unsigned char sha256[NX_SHA256_LEN];
	size_t tensor;       /* index into the summary's tensors */
};

struct prints {
	struct print *p;
	size_t n, cap;
};

static int by_digest(const void *a, const void *b)
{
	return memcmp(((const struct print *)a)->sha256, ((const struct print *)b)->sha256,
		      NX_SHA256_LEN);
}

static int push(struct prints *ps, const unsigned char d[NX_SHA256_LEN], size_t tensor)
{
	if (ps->n >= FINGERPRINTS_MAX)
		return 0;
	if (ps->n == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 64;
		struct print *n = realloc(ps->p, cap * sizeof(*n));

		if (!n)
			return NX_ENOMEM;
		ps->p = n;
		ps->cap = cap;
	}
	memcpy(ps->p[ps->n].sha256, d, NX_SHA256_LEN);
	ps->p[ps->n++].tensor = tensor;
	return 0;
}

/*
 * Hash every tensor of s big enough to matter.  fd is the model; external
 * data is opened through open_ext(ctx, location).
 */
static int fingerprint(struct prints *out, const nx_onnx_summary *s, int fd, const char *path,
		       int (*open_ext)(void *ctx, const char *loc), void *ctx)
{
	unsigned char d[NX_SHA256_LEN];
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < s->ntensors; i++) {
		const struct nx_onnx_tensor *t = &s->tensors[i];

		if (t->location == NX_TENSOR_INLINE) {
			if (t->data_length < NX_VERIFY_TEACHER_TENSOR_MIN ||
			    nx_sha256_range(d, fd, t->data_offset, t->data_length, path, NULL))
				continue;
		} else {
			int efd;

			if (t->ext_length < NX_VERIFY_TEACHER_TENSOR_MIN || t->ext_offset < 0 ||
			    !t->ext_location || (efd = open_ext(ctx, t->ext_location)) < 0)
				continue;
			rc = nx_sha256_range(d, efd, (uint64_t)t->ext_offset, (uint64_t)t->ext_length,
					     t->ext_location, NULL);
			close(efd);
			if (rc) {
				rc = 0;
				continue;
			}
		}
		rc = push(out, d, i);
	}
	return rc;
}

static int open_student_ext(void *ctx, const char *loc)
{
	struct vfy_ctx *c = ctx;
	char path[NX_MANIFEST_PATH_MAX + 8];
	int fd = -1;

	if ((size_t)snprintf(path, sizeof(path), "model/%s", loc) >= sizeof(path) ||
	    vfy_open_regular(&fd, NULL, c->dirfd, path, NULL))
		return -1;
	return fd;
}

static int open_teacher_ext(void *ctx, const char *loc)
{
	char path[NX_ERROR_PATH_MAX];

	if (loc[0] == '/' || strstr(loc, "..") ||
	    (size_t)snprintf(path, sizeof(path), "%s/%s", (const char *)ctx, loc) >= sizeof(path))
		return -1;
	return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

static int one_teacher(struct vfy_ctx *c, const char *tpath, const struct prints *student,
		       const nx_onnx_summary *ss, nx_error *err)
{
	unsigned char head[NX_MAGIC_HEAD_LEN];
	struct prints tp = {0};
	nx_onnx_model *tm = NULL;
	char *dir = NULL;
	ssize_t got;
	size_t i;
	int fd, rc = 0;

	fd = open(tpath, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, tpath, "cannot open teacher %s", tpath);
	got = pread(fd, head, sizeof(head), 0);
	if (got < 0 || nx_magic_sniff(head, (size_t)got) != NX_MAGIC_ONNX) {
		rc = nx_report_add(c->r, CHECK, NX_SEV_WARN, "teacher-format-unsupported", NULL, 0,
				   "teacher %s is not ONNX (%s); its tensors were not fingerprinted",
				   tpath, got < 0 ? "unreadable" : nx_magic_name(nx_magic_sniff(head, (size_t)got)));
		goto out_close;
	}
	if ((rc = nx_onnx_open(&tm, fd, tpath, err)))
		goto out_close;
	if (!(dir = strdup(tpath))) {
		rc = NX_ENOMEM;
		goto out_close;
	}
	rc = fingerprint(&tp, nx_onnx_summary_get(tm), fd, tpath, open_teacher_ext, dirname(dir));
	if (rc)
		goto out_close;
	if (tp.n)
		qsort(tp.p, tp.n, sizeof(*tp.p), by_digest);
	for (i = 0; !rc && i < student->n; i++) {
		const struct print *hit = tp.n ? bsearch(&student->p[i], tp.p, tp.n, sizeof(*tp.p),
							 by_digest) : NULL;
		const nx_onnx_summary *ts = nx_onnx_summary_get(tm);

		if (hit)
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, "teacher-tensor-copied", NX_MODEL_PATH, 0,
					   "student tensor '%s' is byte-identical to tensor '%s' of teacher %s",
					   ss->tensors[student->p[i].tensor].name,
					   ts->tensors[hit->tensor].name, tpath);
	}
out_close:
	free(tp.p);
	free(dir);
	nx_onnx_free(tm);
	close(fd);
	return rc;
}

int vfy_teacher(struct vfy_ctx *c, nx_error *err)
{
	const nx_onnx_summary *s = nx_onnx_summary_get(c->onnx);
	struct prints sp = {0};
	size_t i;
	int fd = -1, rc;

	rc = vfy_open_regular(&fd, NULL, c->dirfd, NX_MODEL_PATH, err);
	if (rc)
		return rc;
	rc = fingerprint(&sp, s, fd, NX_MODEL_PATH, open_student_ext, c);
	close(fd);
	for (i = 0; !rc && i < c->opts->nteachers; i++)
		rc = one_teacher(c, c->opts->teachers[i], &sp, s, err);
	free(sp.p);
	return rc;
}
