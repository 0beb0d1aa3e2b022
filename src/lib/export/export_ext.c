/*
 * export_ext.c - external tensor data: follow `location` only to a regular
 * file inside the workspace, and copy the range into the bundle's one data
 * file.
 *
 * A location is untrusted (ONNX CVE-2022-25882, CVE-2024-27318: "../" and
 * absolute paths reading arbitrary files).  It must be relative, without
 * "." / ".." / empty components; it is opened beside the model with
 * nx_fs_open_beneath (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or a
 * checked walk where openat2 is missing), so no symlink is followed anywhere
 * on the way; the file must be regular with a single link.
 */
#include "export_int.h"
#include "nexus/fs.h"
#include "nexus/onnx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* rc is 0 inside the body, 0 or an error after the loop */
#define LOOP(x, r, f, rc) while (((rc) = nx_pb_next((r), (f), (x)->err)) > 0 && ((rc) = 0) == 0)

static int unsafe(struct ex *x, const char *tensor, const char *location, uint64_t off,
		  const char *why)
{
	return nx_error_set(x->err, NX_EUNSAFE, x->path, 0, (long long)off,
			    "%s: tensor '%s' has external data at '%s', which %s; keep external "
			    "data in plain files beside the model", x->path, tensor, location, why);
}

int nx_export__external(struct ex *x, const char *tensor, const char *location, int64_t offset,
		int64_t length, uint64_t field_offset, struct ex_src *src)
{
	const struct nx_export_opts *o = x->o;
	const char *why = nx_onnx_location_problem(location);
	char *full = NULL;
	struct stat st;
	uint64_t off = offset < 0 ? 0 : (uint64_t)offset, len;
	nx_error e;
	int fd = -1, rc;

	src->fd = -1;
	src->path = NULL;
	src->off = src->len = 0;
	if (why)
		return unsafe(x, tensor, location, field_offset, why);
	if (o->ws_dirfd < 0) {
		if (x->dry)
			return 0;
		return nx_error_set(x->err, NX_ECONFIG, x->path, 0, (long long)field_offset,
				    "%s: tensor '%s' has external data but no workspace "
				    "directory was given to read it from", x->path, tensor);
	}
	/* relative to the model's directory inside the workspace */
	{
		const char *rel = o->model_relpath ? o->model_relpath : "";
		const char *slash = strrchr(rel, '/');
		size_t dlen = slash ? (size_t)(slash - rel) + 1 : 0;

		if (!(full = malloc(dlen + strlen(location) + 1)))
			return nx_export__oom(x);
		memcpy(full, rel, dlen);
		memcpy(full + dlen, location, strlen(location) + 1);
	}
	if ((rc = nx_fs_open_beneath(&fd, o->ws_dirfd, full, O_RDONLY | O_NOCTTY | O_NONBLOCK,
				     &e)) != 0) {
		if (rc == NX_EUNSAFE)
			rc = unsafe(x, tensor, location, field_offset,
				    "is or passes through a symlink, or crosses a mount point");
		else
			rc = nx_error_set(x->err, rc, full, 0, -1,
					  "%s: external data of tensor '%s': %s", x->path, tensor,
					  e.message);
		goto out;
	}
	if (fstat(fd, &st) != 0) {
		rc = nx_error_errno(x->err, NX_EIO, errno, full, "cannot stat %s", full);
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_nlink != 1) {
		rc = unsafe(x, tensor, location, field_offset,
			    S_ISREG(st.st_mode) ? "has hard links" : "is not a regular file");
		goto out;
	}
	len = length < 0 ? ((uint64_t)st.st_size > off ? (uint64_t)st.st_size - off : 0)
			 : (uint64_t)length;
	if (off > (uint64_t)st.st_size || len > (uint64_t)st.st_size - off) {
		rc = nx_error_set(x->err, NX_EFORMAT, x->path, 0, (long long)field_offset,
				  "%s: tensor '%s' reads bytes %llu..%llu of '%s', which has only "
				  "%llu bytes", x->path, tensor, (unsigned long long)off,
				  (unsigned long long)(off + len), location,
				  (unsigned long long)st.st_size);
		goto out;
	}
	src->fd = fd;
	src->path = full;
	src->off = off;
	src->len = len;
	fd = -1;
	full = NULL;
out:
	if (fd >= 0)
		close(fd);
	free(full);
	return rc;
}

void nx_export__src_release(struct ex_src *src)
{
	if (src->fd >= 0)
		close(src->fd);
	free(src->path);
	src->fd = -1;
	src->path = NULL;
}

int nx_export__read_small(struct ex *x, const struct ex_src *src, unsigned char **out)
{
	unsigned char *buf = malloc(src->len ? (size_t)src->len : 1);
	ssize_t n;

	if (!buf)
		return nx_export__oom(x);
	if ((n = nx_pread_full(src->fd, buf, (size_t)src->len, src->off)) != (ssize_t)src->len) {
		free(buf);
		return nx_error_errno(x->err, NX_EIO, n < 0 ? errno : EIO, src->path,
				      "cannot read external data from %s", src->path);
	}
	*out = buf;
	return 0;
}

int nx_export__data_begin(struct ex *x, uint64_t field_offset, const char *tensor, uint64_t *out_offset)
{
	const struct nx_export_opts *o = x->o;
	int rc;

	x->res->has_external = true;
	x->res->ext_tensors++;
	if (x->dry)
		return 0;
	if (!x->ext_started) {
		if (!o->ext_open)
			return nx_error_set(x->err, NX_ECONFIG, x->path, 0, (long long)field_offset,
					    "%s: tensor '%s' needs the data file but the caller "
					    "gave no place for it", x->path, tensor);
		if ((rc = o->ext_open(o->ext_ctx, &x->ext_fd, x->err)) != 0)
			return rc;
		if ((rc = nx_pw__out_init(&x->ext, x->ext_fd, x->path,
				      o->ext_name ? o->ext_name : NX_EXPORT_DATA_NAME, x->err)) != 0)
			return rc;
		x->ext.nohash = o->data_digest != NX_EXPORT_DIGEST_INLINE;
		if (o->data_digest == NX_EXPORT_DIGEST_DEFER) {
			if ((rc = nx_hash_follow_start(&x->ext_follow, x->ext_fd, x->ext.dst_name,
						       x->err)) != 0)
				return rc;
			x->ext.follow = x->ext_follow;
		}
		x->ext_started = true;
	}
	/* Page-aligned, so that ONNX Runtime maps the weights instead of
	 * copying them out of the file. */
	if ((rc = nx_pw__out_align(&x->ext, NX_EXPORT_DATA_ALIGN)) != 0)
		return rc;
	*out_offset = x->ext.pos;
	return 0;
}

int nx_export__data_copy(struct ex *x, int fd, const char *src_path, uint64_t off, uint64_t len,
		 uint64_t field_offset, const char *tensor, uint64_t *out_offset)
{
	int rc;

	if ((rc = nx_export__data_begin(x, field_offset, tensor, out_offset)) != 0 || x->dry)
		return rc;
	x->ext.src_path = src_path;
	rc = nx_pw__out_copy(&x->ext, fd, off, len);
	x->ext.src_path = x->path;
	return rc;
}

int nx_export__ext_entry(struct ex *x, const struct nx_pb_reader *parent, const struct nx_pb_field *fld,
		 struct ext_ref *e)
{
	char *key = NULL, *value = NULL, *end = NULL;
	int rc;

	rc = nx_export__read_strings(x, parent, fld, 1, &key, 2, &value);
	if (rc || !key || !value)
		goto out;
	if (!strcmp(key, "location")) {
		free(e->location);
		e->location = value;
		value = NULL;
	} else if (!strcmp(key, "offset") || !strcmp(key, "length")) {
		long long v = strtoll(value, &end, 10);

		if (!value[0] || *end || v < 0) {
			rc = nx_error_set(x->err, NX_EFORMAT, x->path, 0, (long long)fld->tag_offset,
					  "%s: external data %s '%s' is not a number", x->path,
					  key, value);
			goto out;
		}
		*(key[0] == 'o' ? &e->offset : &e->length) = v;
	}
out:
	free(key);
	free(value);
	return rc;
}

/* The external_data entries of a tensor moved into the bundle's data file
 * (rewrite and quantization alike). */
int nx_export__ext_fields(struct pw_msg *m, uint64_t off, uint64_t len)
{
	char v[2][32];
	const char *keys[3] = { "location", "offset", "length" };
	const char *vals[3] = { NX_EXPORT_DATA_NAME, v[0], v[1] };
	int i, rc = 0;

	snprintf(v[0], sizeof(v[0]), "%llu", (unsigned long long)off);
	snprintf(v[1], sizeof(v[1]), "%llu", (unsigned long long)len);
	for (i = 0; i < 3 && !rc; i++) {
		struct pw_msg *entry = nx_pw__msg_new();

		if (!entry)
			return NX_ENOMEM;
		if ((rc = nx_pw__string(entry, 1, keys[i], strlen(keys[i]))) != 0 ||
		    (rc = nx_pw__string(entry, 2, vals[i], strlen(vals[i]))) != 0) {
			nx_pw__msg_free(entry);
			return rc;
		}
		rc = nx_pw__child(m, 13, entry);
	}
	return rc ? rc : nx_pw__varint_field(m, 14, 1);
}

/* A first look at a TensorProto: its external data, raw_data and name. */
int nx_export__tensor_payload(struct ex *x, struct nx_pb_reader *r, struct ext_ref *e, bool *external,
		      struct nx_pb_field *raw, bool *has_raw, char **name)
{
	struct nx_pb_field f;
	int rc;

	LOOP(x, r, &f, rc) {
		if (f.num == 13 && f.wire == NX_PB_LEN)
			rc = nx_export__ext_entry(x, r, &f, e);
		else if (f.num == 14 && f.wire == NX_PB_VARINT)
			*external = f.value == 1;
		else if (f.num == 9 && f.wire == NX_PB_LEN) {
			*raw = f;
			*has_raw = true;
		} else if (f.num == 8 && name)
			rc = nx_export__read_name(x, &f, name);
		if (rc)
			return rc;
	}
	return rc;
}
