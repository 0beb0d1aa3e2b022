/*
 * build_ctx.c - how every build step puts a file into the staged bundle
 * (written from memory or copied from an input, hashed, listed in the
 * manifest), names it in errors, and records an import the filter removed.
 * Support for build.c and its steps; it calls none of them.
 */
#include "build_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int nx_build__removed_add(struct build *b, const char *file, long line, const char *module,
		      const char *kind)
{
	struct nx_build_result *r = b->res;
	struct nx_build_removed *v;

	if (NX_ARRAY_PUSH_EXACT(r->removed, r->nremoved))
		return nx_error_oom(b->err, file);
	v = r->removed + r->nremoved;
	v->file = strdup(file);
	v->module = strdup(module ? module : "");
	v->statement_kind = strdup(kind ? kind : "");
	v->line = line;
	r->nremoved++;
	if (!v->file || !v->module || !v->statement_kind)
		return nx_error_oom(b->err, file);
	return 0;
}

/* Create relpath in the stage with buf, and its digest in sha. */
static int write_new(struct build *b, const char *relpath, const void *buf, size_t len, bool exec,
		     unsigned char sha[NX_SHA256_LEN])
{
	int fd = -1, rc;

	rc = nx_stage_create_file(&fd, b->stage, relpath, exec, b->err);
	if (rc)
		return rc;
	rc = nx_write_all(fd, buf, len) ? nx_error_errno(b->err, NX_EIO, errno, relpath,
						     "cannot write staged %s", relpath) : 0;
	if (!rc && nx_sha256_buf(sha, buf, len) != 0)
		rc = nx_error_set(b->err, NX_EINTERNAL, relpath, 0, -1, "cannot hash %s", relpath);
	close(fd);
	return rc;
}

int nx_build__put(struct build *b, const char *relpath, const void *buf, size_t len, bool exec)
{
	unsigned char sha[NX_SHA256_LEN];
	int rc = write_new(b, relpath, buf, len, exec, sha);

	return rc ? rc : nx_manifest_add_file(b->m, relpath, sha, len, b->err);
}

int nx_build__replace(struct build *b, const char *relpath, const void *buf, size_t len)
{
	unsigned char sha[NX_SHA256_LEN];
	int rc;

	if (unlinkat(nx_stage_dirfd(b->stage), relpath, 0) != 0)
		return nx_error_errno(b->err, NX_EIO, errno, relpath, "cannot replace staged %s",
				      relpath);
	rc = write_new(b, relpath, buf, len, false, sha);
	return rc ? rc : nx_manifest_update_file(b->m, relpath, sha, len, b->err);
}

char *nx_build__bundle_file(const struct build *b, const char *relpath)
{
	char *s;

	if (asprintf(&s, "%s/%s", b->res->bundle_path, relpath) < 0)
		return NULL;
	return s;
}

int nx_build__copy(struct build *b, const char *relpath, int src_fd, uint64_t size,
	       const char *src_name, bool exec)
{
	unsigned char sha[NX_SHA256_LEN];
	char *dst = NULL;
	int fd = -1, rc;

	rc = nx_stage_create_file(&fd, b->stage, relpath, exec, b->err);
	if (rc)
		return rc;
	/* A failed write (a full disk) names the bundle file, not the input. */
	dst = nx_build__bundle_file(b, relpath);
	rc = nx_copy_hash(sha, fd, src_fd, size, src_name, dst ? dst : relpath, b->err);
	if (!rc)
		rc = nx_manifest_add_file(b->m, relpath, sha, size, b->err);
	free(dst);
	close(fd);
	return rc;
}

/* The export options of the workspace (the student export and the float
 * one of the quantization gate). */
void nx_build__export_opts(const struct build *b, struct nx_export_opts *o,
		       enum nx_export_data_digest digest, nx_export_ext_open_fn ext)
{
	const nx_workspace *ws = b->ws;

	memset(o, 0, sizeof(*o));
	o->outputs = (const char *const *)ws->student.outputs;
	o->noutputs = ws->student.noutputs;
	o->metadata_keep = (const char *const *)ws->metadata_keep;
	o->nmetadata_keep = ws->nmetadata_keep;
	o->forbidden_terms = (const char *const *)ws->forbidden_terms;
	o->nforbidden_terms = ws->nforbidden_terms;
	o->extract = ws->export_extract;
	o->strip_metadata = ws->export_strip_metadata;
	o->external = (enum nx_export_external)ws->export_external;
	o->producer_version = NX_VERSION;
	o->ws_dirfd = b->wsfd;
	o->model_relpath = ws->student.model;
	o->ext_ctx = (void *)b;
	o->data_digest = digest;
	o->ext_open = ext;
	o->positions_input = ws->student.inputs[NX_INPUT_POSITIONS];
}
