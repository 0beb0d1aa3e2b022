/*
 * describe.c - a bundle as `nexus inspect BUNDLE` and `nexus diff` see it:
 * manifest, model summary, a digest per initializer, the signature.
 */
#include "pack_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stdio.h>

#include <openssl/evp.h>

static int digest_piece(void *ctx, const unsigned char *buf, size_t len)
{
	return EVP_DigestUpdate(ctx, buf, len) ? 0 : NX_ENOMEM;
}

/* External data: the declared byte range of a file beside the model. */
static int digest_external(struct nx_bundle_tensor *bt, int dirfd, nx_error *err)
{
	const struct nx_onnx_tensor *t = bt->t;
	char rel[NX_MANIFEST_PATH_MAX + 8];
	int fd = -1, rc;

	if (!t->ext_location || t->ext_length < 0 || t->ext_offset < 0)
		return 0;   /* nothing to name: verify reports such a model */
	snprintf(rel, sizeof(rel), NX_BUNDLE_MODEL_DIR "/%s", t->ext_location);
	if ((rc = nx_fs_open_regular(&fd, NULL, dirfd, rel, UINT64_MAX, err)))
		return rc;
	rc = nx_sha256_range(bt->sha256, fd, (uint64_t)t->ext_offset, (uint64_t)t->ext_length,
			     rel, err);
	close(fd);
	bt->hashed = !rc;
	return rc;
}

static int digest(struct nx_bundle_tensor *bt, int dirfd, int fd, nx_error *err)
{
	unsigned int n = 0;
	EVP_MD_CTX *ctx;
	int rc;

	if (bt->t->location == NX_TENSOR_EXTERNAL)
		return digest_external(bt, dirfd, err);
	if (bt->t->data_type == 8)   /* STRING: no element bytes */
		return 0;
	if (!(ctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(ctx);
		return nx_error_oom(err, NX_MODEL_PATH);
	}
	rc = nx_onnx_tensor_read(fd, NX_MODEL_PATH, bt->t, digest_piece, ctx, err);
	if (!rc && EVP_DigestFinal_ex(ctx, bt->sha256, &n))
		bt->hashed = true;
	EVP_MD_CTX_free(ctx);
	return rc;
}

static int by_name(const void *a, const void *b)
{
	const struct nx_bundle_tensor *x = a, *y = b;
	int c = strcmp(x->t->name, y->t->name);

	return c ? c : strcmp(x->t->scope, y->t->scope);
}

static int load_model(nx_bundle_desc *d, int dirfd, bool digests, nx_error *err)
{
	const nx_onnx_summary *s;
	nx_error me;
	size_t i, n = 0;
	int fd = -1, rc = 0;

	nx_error_clear(&me);
	if (nx_fs_open_regular(&fd, NULL, dirfd, NX_MODEL_PATH, UINT64_MAX, &me) ||
	    nx_onnx_open(&d->model, fd, NX_MODEL_PATH, &me)) {
		d->model = NULL;
		if (!(d->model_error = strdup(me.message)))
			rc = nx_error_oom(err, NX_MODEL_PATH);
		goto out;
	}
	s = nx_onnx_summary_get(d->model);
	if (!(d->tensors = calloc(s->ntensors + 1, sizeof(*d->tensors)))) {
		rc = nx_error_oom(err, NX_MODEL_PATH);
		goto out;
	}
	for (i = 0; i < s->ntensors; i++)
		if (!s->tensors[i].attribute)
			d->tensors[n++].t = &s->tensors[i];
	d->ntensors = n;
	qsort(d->tensors, n, sizeof(*d->tensors), by_name);
	for (i = 0; digests && !rc && i < n; i++)
		rc = digest(&d->tensors[i], dirfd, fd, err);
out:
	if (fd >= 0)
		close(fd);
	return rc;
}

int nx_bundle_describe(nx_bundle_desc **out, const char *path, nx_key *const *keys,
		       size_t nkeys, bool digests, nx_error *err)
{
	nx_bundle_desc *d = calloc(1, sizeof(*d));
	int dirfd = -1, rc;

	if (!d)
		return nx_error_oom(err, path);
	if ((rc = nx_pack__open_bundle(&dirfd, &d->manifest, path, err)) ||
	    (rc = nx_manifest_verify_signature(&d->sig, d->keyid, d->manifest, keys, nkeys, err)) ||
	    (rc = load_model(d, dirfd, digests, err)))
		goto out;
	*out = d;
	d = NULL;
out:
	if (dirfd >= 0)
		close(dirfd);
	nx_bundle_desc_free(d);
	return rc;
}

void nx_bundle_desc_free(nx_bundle_desc *d)
{
	if (!d)
		return;
	free(d->tensors);
	free(d->model_error);
	nx_onnx_free(d->model);
	nx_manifest_free(d->manifest);
	free(d);
}
