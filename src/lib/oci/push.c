/*
 * push.c - `nexus push`: a bundle's blobs (config, manifest.json, every
 * file), each skipped when the registry has it, mounted from --mount-from,
 * or uploaded (one PUT up to chunk_size, PATCH chunks above, resumed from
 * the registry's Range), on several connections at once, largest first
 * (pool.c); then the image manifest, whose digest the registry must
 * confirm.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "nexus/attest.h"
#include "nexus/fs.h"
#include "oci_int.h"

#define PATH_URL_MAX 2300

struct blob {
	char digest[7 + 2 * NX_SHA256_LEN + 1];
	uint64_t size;
	const char *buf;   /* or */
	int fd;
	const char *what;
};

static void digest_str(char out[7 + 2 * NX_SHA256_LEN + 1], const unsigned char sha[NX_SHA256_LEN])
{
	memcpy(out, "sha256:", 7);
	nx_hex(out + 7, sha);
}

/* The body of a blob's range [off, off + len). */
static void body(struct oci_req *q, const struct blob *b, uint64_t off, uint64_t len)
{
	q->body_fd = b->buf ? -1 : b->fd;
	q->body = b->buf ? b->buf + off : NULL;
	q->body_len = b->buf ? (size_t)len : 0;
	q->body_off = b->buf ? 0 : off;
	q->fd_len = b->buf ? 0 : len;
	q->what = b->what;
	q->total = b->size;
}

static char *with_digest(char *out, size_t n, const char *loc, const char *digest)
{
	if (snprintf(out, n, "%s%cdigest=%s", loc, strchr(loc, '?') ? '&' : '?', digest) >= (int)n)
		out[0] = 0;  /* the registry answers 404 and the upload starts over */
	return out;
}

/* Where an interrupted upload stands: the registry's Range "0-N".  -1 when
 * the session is gone (start over). */
static long long upload_offset(struct oci_client *c, const char *loc, nx_error *err)
{
	struct oci_req q = { .method = "GET", .url = loc, .body_fd = -1, .idempotent = true };
	struct oci_resp r = { 0 };
	unsigned long long a, b;
	long long off = -1;

	/* "0-0" is 0 or 1 byte: resend from 0 (a registry holding 1 byte
	 * answers 416, and the upload starts over) */
	if (!nx_oci__request(c, &q, &r, err) && r.status == 204 &&
	    sscanf(r.range, "%llu-%llu", &a, &b) == 2 && a == 0)
		off = b ? (long long)b + 1 : 0;
	nx_oci__resp_release(&r);
	return off;
}

/*
 * One try at uploading b.  *again is set when trying again may help (a lost
 * connection, a 5xx, a lost session); DIGEST_INVALID never is.
 */
static int upload(struct oci_client *c, const struct blob *b, struct nx_oci_push_result *res,
		  bool *again, nx_error *err)
{
	char url[PATH_URL_MAX], loc[PATH_URL_MAX], range[64];
	struct oci_req q = { .body_fd = -1 };
	struct oci_resp r = { 0 };
	uint64_t off = 0, n, chunk = c->o->chunk_size ? c->o->chunk_size : NX_OCI_CHUNK_DEFAULT;
	long long at;
	unsigned resumes = 0;
	int rc;

	*again = false;
	/* already there? */
	snprintf(url, sizeof(url), "/v2/%s/blobs/%s", c->repo, b->digest);
	q.method = "HEAD";
	q.url = url;
	q.idempotent = true;
	if ((rc = nx_oci__request(c, &q, &r, err)))
		goto out;
	if (r.status == 200 && (r.clen < 0 || (uint64_t)r.clen == b->size)) {
		res->blobs_skipped++;
		goto out;
	}
	/* start a session, or mount */
	if (c->o->mount_from)
		snprintf(url, sizeof(url), "/v2/%s/blobs/uploads/?mount=%s&from=%s", c->repo,
			 b->digest, c->o->mount_from);
	else
		snprintf(url, sizeof(url), "/v2/%s/blobs/uploads/", c->repo);
	/* retried like an idempotent request: a session started twice is
	 * only an abandoned session, which the registry collects */
	q = (struct oci_req){ .method = "POST", .url = url, .body_fd = -1, .body = "",
			      .idempotent = true };
	if ((rc = nx_oci__request(c, &q, &r, err)))
		goto lost;
	if (r.status == 201 && c->o->mount_from) {
		res->blobs_mounted++;
		goto out;
	}
	if (r.status != 202) {
		rc = nx_oci__http_error(err, NX_EIO, &q, &r, "cannot start an upload");
		*again = r.status >= 500 || r.status == 429;
		goto out;
	}
	if ((rc = nx_oci__location(loc, sizeof(loc), c, r.location, err)))
		goto out;
	if (b->size > chunk) {
		while (off < b->size) {
			n = b->size - off < chunk ? b->size - off : chunk;
			snprintf(range, sizeof(range), "%llu-%llu", (unsigned long long)off,
				 (unsigned long long)(off + n - 1));
			q = (struct oci_req){ .method = "PATCH", .url = loc,
					      .content_type = "application/octet-stream",
					      .content_range = range };
			body(&q, b, off, n);
			rc = nx_oci__request(c, &q, &r, err);
			if (!rc && r.status == 202) {
				if ((rc = nx_oci__location(loc, sizeof(loc), c, r.location, err)))
					goto out;
				off += n;
				res->bytes_uploaded += n;
				resumes = 0;   /* tries are counted per chunk */
				continue;
			}
			if (rc == NX_EUNSAFE || rc == NX_ELIMIT ||
			    (!rc && r.status < 500 && r.status != 429 && r.status != 416 &&
			     r.status != 404))
				goto fail;
			if (!rc && r.status == 429 && ++resumes < NX_OCI_ATTEMPTS) {
				/* refused before the registry took it: send it again */
				c->retries++;
				nx_oci__back_off(c, resumes - 1, r.retry_after);
				continue;
			}
			/* lost mid-chunk: ask the registry where it stands and go on */
			/* never behind what a 202 acknowledged: progress is monotonic,
			 * so a registry cannot keep the upload going forever */
			if (++resumes >= NX_OCI_ATTEMPTS || (at = upload_offset(c, loc, err)) < 0 ||
			    (uint64_t)at > b->size || (uint64_t)at < off) {
				if (!rc)
					rc = nx_oci__http_error(err, NX_EIO, &q, &r, b->what);
				goto lost;
			}
			c->retries++;
			off = (uint64_t)at;
		}
		q = (struct oci_req){ .method = "PUT", .url = with_digest(url, sizeof(url), loc, b->digest),
				      .body_fd = -1, .body = "", .idempotent = true };
	} else {
		/* repeatable: if a lost answer hid a commit, the repeat gets 404
		 * and the next try finds the blob with HEAD */
		q = (struct oci_req){ .method = "PUT", .url = with_digest(url, sizeof(url), loc, b->digest),
				      .content_type = "application/octet-stream", .idempotent = true };
		body(&q, b, 0, b->size);
	}
	if ((rc = nx_oci__request(c, &q, &r, err)))
		goto lost;
	if (r.status != 201)
		goto fail;
	if (b->size <= chunk)
		res->bytes_uploaded += b->size;
	res->blobs_uploaded++;
	goto out;
fail:
	if (!rc && nx_oci__has_error_code(&r, "DIGEST_INVALID")) {
		char why[1200];

		snprintf(why, sizeof(why), "the registry's digest of %s is not the manifest's (the "
			 "file changed since it was verified)", b->what);
		rc = nx_oci__http_error(err, NX_ECHECK, &q, &r, why);
		goto out;
	}
	if (!rc)
		rc = nx_oci__http_error(err, NX_EIO, &q, &r, b->what);
	*again = rc == NX_EIO && (r.status == 0 || r.status >= 500 || r.status == 429 || r.status == 404);
	goto out;
lost:
	*again = rc == NX_EIO;
out:
	nx_oci__resp_release(&r);
	return rc;
}

static int push_blob(struct oci_client *c, const struct blob *b, struct nx_oci_push_result *res,
		     nx_error *err)
{
	unsigned attempt;
	bool again;
	int rc = 0;

	for (attempt = 0; attempt < NX_OCI_ATTEMPTS; attempt++) {
		if (attempt) {
			c->retries++;
			usleep((useconds_t)((c->o->backoff > 0 ? c->o->backoff : 0.5) * 1e6) << (attempt - 1));
		}
		rc = upload(c, b, res, &again, err);
		if (!rc || !again)
			break;
	}
	return rc;
}

/* PUT a manifest (media) at tag, or at its digest when tag is NULL.
 * *referrers (may be NULL) tells whether the registry said OCI-Subject. */
static int put_manifest(struct oci_client *c, const char *tag, const char *media,
			const char *mbuf, size_t mlen, const char *digest, bool *referrers,
			nx_error *err)
{
	char url[PATH_URL_MAX];
	struct oci_req q = { .method = "PUT", .url = url, .content_type = media,
			     .body = mbuf, .body_len = mlen, .body_fd = -1, .idempotent = true,
			     .what = "manifest", .total = mlen };
	struct oci_resp r = { 0 };
	int rc;

	snprintf(url, sizeof(url), "/v2/%s/manifests/%s", c->repo, tag ? tag : digest);
	if ((rc = nx_oci__request(c, &q, &r, err)))
		goto out;
	if (r.status != 201)
		rc = nx_oci__http_error(err, NX_EIO, &q, &r, "the registry refused the manifest");
	else if (r.digest[0] && strcmp(r.digest, digest))
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "the registry stored the manifest as %.100s, not %s: it changed "
				  "what it was sent; do not use this registry", r.digest, digest);
	if (!rc && referrers)
		*referrers = r.subject[0] != 0;
out:
	nx_oci__resp_release(&r);
	return rc;
}

static json_t *desc(const char *media, const char *digest, size_t size)
{
	return json_pack("{s:s, s:s, s:I}", "mediaType", media, "digest", digest,
			 "size", (json_int_t)size);
}

/* A blob from memory: its digest, then push_blob. */
static int push_mem(struct oci_client *c, const char *buf, size_t len, const char *what,
		    char digest[7 + 2 * NX_SHA256_LEN + 1], struct nx_oci_push_result *res,
		    nx_error *err)
{
	struct blob b = { .size = len, .buf = buf, .fd = -1, .what = what };
	unsigned char sha[NX_SHA256_LEN];

	nx_sha256_buf(sha, buf, len);
	digest_str(b.digest, sha);
	memcpy(digest, b.digest, sizeof(b.digest));
	return push_blob(c, &b, res, err);
}

/*
 * The referrers tag schema (distribution-spec 1.1) for a registry without
 * the referrers API: tag sha256-<hex of the subject> holds an image index
 * of the subject's referrers; add ours to what is there.
 */
static int tag_referrer(struct oci_client *c, const char *subject, json_t *ours, nx_error *err)
{
	char tag[8 + 2 * NX_SHA256_LEN], url[PATH_URL_MAX], digest[7 + 2 * NX_SHA256_LEN + 1];
	struct oci_req q = { .method = "GET", .url = url, .accept = NX_OCI_INDEX_MEDIA,
			     .body_fd = -1, .cap = NX_OCI_MANIFEST_MAX, .idempotent = true };
	struct oci_resp r = { 0 };
	unsigned char sha[NX_SHA256_LEN];
	json_t *idx = NULL, *ms, *m;
	char *buf = NULL;
	size_t i;
	int rc;

	snprintf(tag, sizeof(tag), "sha256-%.64s", subject + 7);
	snprintf(url, sizeof(url), "/v2/%s/manifests/%s", c->repo, tag);
	if ((rc = nx_oci__request(c, &q, &r, err)))
		goto out;
	if (r.status == 200)
		idx = json_loadb(r.body ? r.body : "", r.len, JSON_REJECT_DUPLICATES, NULL);
	else if (r.status == 404)
		idx = json_pack("{s:i, s:s, s:[]}", "schemaVersion", 2, "mediaType",
				NX_OCI_INDEX_MEDIA, "manifests");
	ms = json_object_get(idx, "manifests");
	if (r.status != 200 && r.status != 404) {
		rc = nx_oci__http_error(err, NX_EIO, &q, &r, "cannot read the referrers tag");
		goto out;
	}
	if (!json_is_array(ms)) {
		rc = nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
				  "tag %s holds something other than an OCI image index of "
				  "referrers; not changed", tag);
		goto out;
	}
	json_array_foreach(ms, i, m)
		if (json_equal(json_object_get(m, "digest"), json_object_get(ours, "digest")))
			break;
	if (i == json_array_size(ms) && json_array_append(ms, ours)) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	if (!(buf = json_dumps(idx, JSON_COMPACT | JSON_SORT_KEYS))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	nx_sha256_buf(sha, buf, strlen(buf));
	digest_str(digest, sha);
	rc = put_manifest(c, tag, NX_OCI_INDEX_MEDIA, buf, strlen(buf), digest, NULL, err);
out:
	nx_oci__resp_release(&r);
	json_decref(idx);
	free(buf);
	return rc;
}

/* Attach the envelope env to the artifact just pushed (res->digest, alen
 * bytes): its blobs, a manifest whose subject is the artifact, and the tag
 * fallback when the registry did not answer OCI-Subject. */
static int attach(struct oci_client *c, struct nx_oci_push_result *res, size_t alen,
		  const char *env, size_t elen, nx_error *err)
{
	char cfg[7 + 2 * NX_SHA256_LEN + 1], lay[sizeof(cfg)], *buf = NULL;
	unsigned char sha[NX_SHA256_LEN];
	json_t *man = NULL, *ours = NULL;
	bool referrers = false;
	int rc;

	if ((rc = push_mem(c, "{}", 2, "attestation config", cfg, res, err)) ||
	    (rc = push_mem(c, env, elen, "attestation", lay, res, err)))
		return rc;
	man = json_pack("{s:i, s:s, s:s, s:o, s:[o], s:o, s:{s:s}}", "schemaVersion", 2,
			"mediaType", NX_OCI_MANIFEST_MEDIA, "artifactType", NX_ATTEST_MEDIA,
			"config", desc(NX_OCI_EMPTY_MEDIA, cfg, 2),
			"layers", desc(NX_ATTEST_MEDIA, lay, elen),
			"subject", desc(NX_OCI_MANIFEST_MEDIA, res->digest, alen),
			"annotations", NX_OCI_PREDICATE_ANNOTATION, NX_ATTEST_PREDICATE_TYPE);
	if (!man || !(buf = json_dumps(man, JSON_COMPACT | JSON_SORT_KEYS))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	nx_sha256_buf(sha, buf, strlen(buf));
	digest_str(res->attestation, sha);
	if ((rc = put_manifest(c, NULL, NX_OCI_MANIFEST_MEDIA, buf, strlen(buf), res->attestation,
			       &referrers, err)) || referrers)
		goto out;
	res->referrers_tag = true;
	if (!(ours = desc(NX_OCI_MANIFEST_MEDIA, res->attestation, strlen(buf))) ||
	    json_object_set_new(ours, "artifactType", json_string(NX_ATTEST_MEDIA)) ||
	    json_object_set_new(ours, "annotations", json_pack("{s:s}", NX_OCI_PREDICATE_ANNOTATION,
								 NX_ATTEST_PREDICATE_TYPE))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	rc = tag_referrer(c, res->digest, ours, err);
out:
	json_decref(man);
	json_decref(ours);
	free(buf);
	return rc;
}

/* Does the repository already hold the image manifest `digest`, by that
 * digest or (tag non-NULL) as what the tag names?  Then it holds every
 * blob the manifest names: a registry refuses a manifest whose blobs it
 * lacks (distribution-spec, "Pushing Manifests").  One HEAD instead of one
 * per blob, as crane and oras do. */
static bool has_manifest(struct oci_client *c, const char *tag, const char *digest, nx_error *err)
{
	char url[PATH_URL_MAX];
	struct oci_req q = { .method = "HEAD", .url = url, .accept = NX_OCI_MANIFEST_MEDIA,
			     .body_fd = -1, .idempotent = true };
	struct oci_resp r = { 0 };
	bool has;

	snprintf(url, sizeof(url), "/v2/%s/manifests/%s", c->repo, tag ? tag : digest);
	/* a tag must say what it names; a digest is what was asked for */
	has = !nx_oci__request(c, &q, &r, err) && r.status == 200 &&
	      (tag ? !strcmp(r.digest, digest) : !r.digest[0] || !strcmp(r.digest, digest));
	nx_oci__resp_release(&r);
	nx_error_clear(err);   /* a registry that cannot say: upload as usual */
	return has;
}

/* The artifact's blobs as pool jobs: 0 the config, 1 manifest.json, then
 * the files, each job counting into its own result, added up under the
 * pool's lock. */
struct blobs {
	int dirfd;
	const char *bundle;
	const nx_manifest *m;
	const char *cfg, *mjson;
	size_t clen, mlen;
	struct nx_oci_push_result *res;
};

static int push_one(struct oci_client *c, size_t i, void *ctx, pthread_mutex_t *mu, nx_error *err)
{
	struct blobs *bs = ctx;
	struct nx_oci_push_result mine = { 0 };
	unsigned char sha[NX_SHA256_LEN];
	struct blob b = { .fd = -1 };
	struct stat st;
	int rc;

	if (i < 2) {
		b.buf = i ? bs->mjson : bs->cfg;
		b.size = i ? bs->mlen : bs->clen;
		b.what = i ? NX_MANIFEST_NAME : "config";
		nx_sha256_buf(sha, b.buf, b.size);
		digest_str(b.digest, sha);
	} else {
		const struct nx_manifest_file *f = &bs->m->files[i - 2];

		if ((rc = nx_fs_open_regular(&b.fd, &st, bs->dirfd, f->path, UINT64_MAX, err)))
			return rc;
		if ((uint64_t)st.st_size != f->size) {
			close(b.fd);
			return nx_error_set(err, NX_ECHECK, f->path, 0, -1,
					    "%s/%s is %lld bytes, the manifest says %llu: the bundle "
					    "changed since it was verified", bs->bundle, f->path,
					    (long long)st.st_size, (unsigned long long)f->size);
		}
		b.size = f->size;
		b.what = f->path;
		digest_str(b.digest, f->sha256);
	}
	rc = push_blob(c, &b, &mine, err);
	if (b.fd >= 0)
		close(b.fd);
	pthread_mutex_lock(mu);
	bs->res->blobs_uploaded += mine.blobs_uploaded;
	bs->res->blobs_skipped += mine.blobs_skipped;
	bs->res->blobs_mounted += mine.blobs_mounted;
	bs->res->bytes_uploaded += mine.bytes_uploaded;
	pthread_mutex_unlock(mu);
	return rc;
}

static int push_blobs(struct oci_client *c, const nx_oci_ref *ref, struct blobs *bs, nx_error *err)
{
	size_t i, n = bs->m->nfiles + 2;
	uint64_t *sizes = malloc(n * sizeof(*sizes));
	int rc;

	if (!sizes)
		return nx_error_oom(err, NULL);
	sizes[0] = bs->clen;
	sizes[1] = bs->mlen;
	for (i = 2; i < n; i++)
		sizes[i] = bs->m->files[i - 2].size;
	rc = nx_oci__pool_run(c, ref, "pull,push", sizes, n, push_one, bs, err);
	free(sizes);
	return rc;
}

int nx_oci_push(struct nx_oci_push_result *out, int dirfd, const char *bundle,
		const nx_oci_ref *ref, const struct nx_oci_opts *o, nx_error *err)
{
	struct nx_oci_push_result res = { 0 };
	struct oci_client c = { 0 };
	unsigned char sha[NX_SHA256_LEN];
	char *mjson = NULL, *art = NULL, *cfg = NULL;
	size_t mlen, alen, clen;
	nx_manifest *m = NULL;
	struct blobs bs;
	int rc;

	if ((rc = nx_fs_read_all(&mjson, &mlen, dirfd, NX_MANIFEST_NAME, NX_MANIFEST_MAX, err)) ||
	    (rc = nx_manifest_parse(&m, mjson, mlen, NX_MANIFEST_NAME, err)) ||
	    (rc = nx_oci_artifact(&art, &alen, &cfg, &clen, m, mjson, mlen, err)))
		goto out;
	nx_sha256_buf(sha, art, alen);
	digest_str(res.digest, sha);
	if (ref->digest && strcmp(ref->digest, res.digest)) {
		rc = nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
				  "the reference names %s but %s's artifact is %s", ref->digest,
				  bundle, res.digest);
		goto out;
	}
	if ((rc = nx_oci__client_open(&c, ref, o, "pull,push", err)))
		goto out;
	/* pushed before under this tag: nothing to send (a second push of an
	 * unchanged bundle is then two requests, the ping and this HEAD) */
	if (ref->tag && !o->attestation && has_manifest(&c, ref->tag, res.digest, err)) {
		res.blobs_skipped = m->nfiles + 2;
		*out = res;
		goto out;
	}
	if (has_manifest(&c, NULL, res.digest, err)) {
		res.blobs_skipped = m->nfiles + 2;
		goto manifest;
	}
	bs = (struct blobs){ .dirfd = dirfd, .bundle = bundle, .m = m, .cfg = cfg, .mjson = mjson,
			     .clen = clen, .mlen = mlen, .res = &res };
	if ((rc = push_blobs(&c, ref, &bs, err)))
		goto out;
manifest:
	if ((rc = put_manifest(&c, ref->tag, NX_OCI_MANIFEST_MEDIA, art, alen, res.digest, NULL,
			       err)) ||
	    (o->attestation && (rc = attach(&c, &res, alen, o->attestation, o->attestation_len, err))))
		goto out;
	*out = res;
out:
	nx_oci__client_close(&c);
	nx_manifest_free(m);
	free(mjson);
	free(art);
	free(cfg);
	return rc;
}
