/*
 * pull.c - `nexus pull`: the image manifest (capped, digest-checked), then
 * manifest.json, whose signature is checked before anything large is
 * fetched, then every file, streamed into a stage with a running SHA-256
 * and its declared size as a hard cap.  The layer set must be files[]
 * exactly.  The sealed stage is verified and published atomically; on any
 * failure it is removed and nothing appears at the output path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "nexus/attest.h"
#include "nexus/fs.h"
#include "nexus/bundle.h"
#include "oci_int.h"

#define URL_LEN 2300

struct layer {
	const char *path;  /* borrowed from the image manifest's JSON */
	const char *digest;
	uint64_t size;
};

/* GET manifests/<name> (a tag or want, the digest it must have, or NULL). */
static int get_manifest(char **out, size_t *out_len, char digest[7 + 2 * NX_SHA256_LEN + 1],
			struct oci_client *c, const char *name, const char *want, nx_error *err)
{
	char url[URL_LEN];
	struct oci_req q = { .method = "GET", .url = url, .accept = NX_OCI_MANIFEST_MEDIA,
			     .body_fd = -1, .cap = NX_OCI_MANIFEST_MAX, .idempotent = true };
	struct oci_resp r = { 0 };
	unsigned char sha[NX_SHA256_LEN];
	int rc;

	snprintf(url, sizeof(url), "/v2/%s/manifests/%s", c->repo, want ? want : name);
	if ((rc = nx_oci__request(c, &q, &r, err)))
		goto out;
	if (r.status != 200) {
		rc = nx_oci__http_error(err, NX_EIO, &q, &r, r.status == 404 ?
				     "no such artifact in the registry" : "cannot fetch the manifest");
		goto out;
	}
	nx_sha256_buf(sha, r.body ? r.body : "", r.len);
	memcpy(digest, "sha256:", 7);
	nx_hex(digest + 7, sha);
	if (want && strcmp(want, digest)) {
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "the registry served a manifest whose digest is %s for %s; refused",
				  digest, want);
		goto out;
	}
	if (r.digest[0] && strcmp(r.digest, digest)) {
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "the registry says the manifest is %.100s but its bytes are %s; refused",
				  r.digest, digest);
		goto out;
	}
	*out = r.body ? r.body : strdup("");
	*out_len = r.len;
	r.body = NULL;
out:
	nx_oci__resp_release(&r);
	return rc;
}

/* The image manifest's layers, checked for shape (not yet against files[]). */
static int parse_layers(struct layer **out, size_t *out_n, json_t **out_root, const char *buf,
			size_t len, nx_error *err)
{
	json_error_t je;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je), *ls, *l, *a, *v;
	struct layer *ly = NULL;
	const char *mt;
	size_t i, n;
	int rc = NX_EFORMAT;

	if (!root || !json_is_object(root)) {
		nx_error_set(err, NX_EFORMAT, NULL, 0, -1, "the registry's manifest is not JSON (%s)",
			     root ? "not an object" : je.text);
		goto out;
	}
	mt = json_string_value(json_object_get(root, "mediaType"));
	ls = json_object_get(root, "layers");
	if (json_integer_value(json_object_get(root, "schemaVersion")) != 2 ||
	    (mt && strcmp(mt, NX_OCI_MANIFEST_MEDIA)) || !json_is_array(ls) ||
	    (n = json_array_size(ls)) < 1 || n - 1 > NX_MANIFEST_FILES_MAX) {
		nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
			     "the registry's manifest is not an OCI image manifest of a nexus bundle "
			     "(schemaVersion 2, mediaType %s, 1 to %d layers)", NX_OCI_MANIFEST_MEDIA,
			     NX_MANIFEST_FILES_MAX + 1);
		goto out;
	}
	if (!(ly = calloc(n, sizeof(*ly)))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	json_array_foreach(ls, i, l) {
		a = json_object_get(l, "annotations");
		v = json_object_get(a, NX_OCI_TITLE);
		ly[i].path = json_string_value(v ? v : json_object_get(a, NX_OCI_FILEPATH));
		ly[i].digest = json_string_value(json_object_get(l, "digest"));
		v = json_object_get(l, "size");
		if (!ly[i].path || !nx_oci__digest_ok(ly[i].digest) || !json_is_integer(v) ||
		    json_integer_value(v) < 0) {
			nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
				     "layer %zu of the registry's manifest has no %s annotation, no "
				     "sha256 digest or no size", i, NX_OCI_TITLE);
			goto out;
		}
		ly[i].size = (uint64_t)json_integer_value(v);
	}
	mt = json_string_value(json_object_get(json_array_get(ls, 0), "mediaType"));
	if (!mt || strcmp(mt, NX_OCI_NEXUS_MANIFEST_MEDIA) || strcmp(ly[0].path, NX_MANIFEST_NAME) ||
	    ly[0].size > NX_MANIFEST_MAX) {
		nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
			     "the first layer is not the bundle's manifest.json (%s, at most %u bytes)",
			     NX_OCI_NEXUS_MANIFEST_MEDIA, NX_MANIFEST_MAX);
		goto out;
	}
	*out = ly;
	*out_n = n;
	*out_root = root;
	return 0;
out:
	free(ly);
	json_decref(root);
	return rc;
}

/* Every layer after the first is one entry of files[], and every entry is
 * one layer: path (FORMAT's rules), digest and size. */
static int match_files(const struct layer *ly, size_t n, const nx_manifest *m, nx_error *err)
{
	const struct nx_manifest_file *f;
	unsigned char sha[NX_SHA256_LEN];
	bool *seen = calloc(m->nfiles + 1, 1);
	size_t i;
	int rc = 0;

	if (!seen)
		return nx_error_oom(err, NULL);
	for (i = 1; i < n && !rc; i++) {
		if ((rc = nx_manifest_path_check(ly[i].path, err)))
			break;
		if (!(f = nx_manifest_find(m, ly[i].path))) {
			rc = nx_error_set(err, NX_ECHECK, ly[i].path, 0, -1,
					  "layer '%s' is not a file of the signed manifest; refused",
					  ly[i].path);
		} else if (seen[f - m->files]) {
			rc = nx_error_set(err, NX_EUNSAFE, ly[i].path, 0, -1,
					  "layer '%s' is listed twice; refused", ly[i].path);
		} else if (nx_unhex(sha, ly[i].digest + 7) || memcmp(sha, f->sha256, sizeof(sha)) ||
			   ly[i].size != f->size) {
			rc = nx_error_set(err, NX_ECHECK, ly[i].path, 0, -1,
					  "layer '%s' (%s, %llu bytes) is not the file the signed "
					  "manifest lists (%llu bytes); refused", ly[i].path,
					  ly[i].digest, (unsigned long long)ly[i].size,
					  (unsigned long long)f->size);
		} else {
			seen[f - m->files] = true;
		}
	}
	if (!rc && n - 1 != m->nfiles)
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "the artifact has %zu file layers but the signed manifest lists %zu "
				  "files; refused", n - 1, m->nfiles);
	free(seen);
	return rc;
}

/* GET a blob into fd (or memory when fd < 0), checked against digest and
 * size; writeback: start its disk writeback as it arrives (sink.c). */
static int get_blob(char **mem, struct oci_client *c, const struct layer *l, int fd,
		    bool writeback, nx_error *err)
{
	char url[URL_LEN], hex[2 * NX_SHA256_LEN + 1];
	struct oci_sink s = { .fd = -1 };
	struct oci_req q = { .method = "GET", .url = url, .body_fd = -1, .idempotent = true,
			     .follow = true, .what = l->path, .total = l->size };
	struct oci_resp r = { 0 };
	unsigned char sha[NX_SHA256_LEN];
	unsigned tries;
	int rc;

	snprintf(url, sizeof(url), "/v2/%s/blobs/%s", c->repo, l->digest);
	if (fd >= 0) {
		if ((rc = nx_oci__sink_init(&s, fd, l->size, writeback, err)))
			goto out;
		q.sink = &s;
	} else {
		q.cap = (size_t)l->size;
	}
	/* a body that ends early without a transport error is resumed too */
	for (tries = 0; tries < NX_OCI_ATTEMPTS; tries++) {
		if ((rc = nx_oci__request(c, &q, &r, err)))
			goto out;
		if (r.status != 200 && r.status != 206) {
			rc = nx_oci__http_error(err, NX_EIO, &q, &r, l->path);
			goto out;
		}
		if (fd < 0 || s.written == l->size)
			break;
		c->retries++;
	}
	if (fd >= 0) {
		if (s.written != l->size) {
			rc = nx_error_set(err, NX_ECHECK, l->path, 0, -1,
					  "%s: the registry sent %llu of %llu bytes; refused", l->path,
					  (unsigned long long)s.written, (unsigned long long)l->size);
			goto out;
		}
		if ((rc = nx_oci__sink_final(&s, sha, l->path, err)))
			goto out;
	} else {
		if (r.len != l->size) {
			rc = nx_error_set(err, NX_ECHECK, l->path, 0, -1,
					  "%s: the registry sent %zu of %llu bytes; refused", l->path,
					  r.len, (unsigned long long)l->size);
			goto out;
		}
		nx_sha256_buf(sha, r.body ? r.body : "", r.len);
	}
	nx_hex(hex, sha);
	if (strcmp(hex, l->digest + 7)) {
		rc = nx_error_set(err, NX_ECHECK, l->path, 0, -1,
				  "%s: the registry served a blob whose digest is sha256:%s for %s; "
				  "refused (the registry or something on the way is corrupt)",
				  l->path, hex, l->digest);
		goto out;
	}
	if (mem) {
		*mem = r.body ? r.body : strdup("");
		r.body = NULL;
	}
out:
	nx_oci__sink_release(&s);
	nx_oci__resp_release(&r);
	return rc;
}

#define REFERRERS_MAX 16   /* attestations of one artifact looked at */

/* The subject's referrers: the registry's referrers API, else the
 * sha256-<hex> tag's index; *out NULL when there are none. */
static int referrers(json_t **out, struct oci_client *c, const char *subject, nx_error *err)
{
	char url[URL_LEN];
	struct oci_req q = { .method = "GET", .url = url, .accept = NX_OCI_INDEX_MEDIA,
			     .body_fd = -1, .cap = NX_OCI_MANIFEST_MAX, .idempotent = true };
	struct oci_resp r = { 0 };
	int rc, pass;

	*out = NULL;
	for (pass = 0; pass < 2 && !*out; pass++) {
		if (!pass)
			snprintf(url, sizeof(url), "/v2/%s/referrers/%s?artifactType=%s", c->repo,
				 subject, "application%2Fvnd.dsse.envelope.v1%2Bjson");
		else
			snprintf(url, sizeof(url), "/v2/%s/manifests/sha256-%.64s", c->repo, subject + 7);
		if ((rc = nx_oci__request(c, &q, &r, err)))
			return rc;
		if (r.status == 200)
			*out = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
		else if (r.status != 404 && r.status != 400)
			rc = nx_oci__http_error(err, NX_EIO, &q, &r, "cannot list the artifact's referrers");
		nx_oci__resp_release(&r);
		if (rc)
			return rc;
		if (*out && !json_is_array(json_object_get(*out, "manifests"))) {
			json_decref(*out);
			*out = NULL;
		}
	}
	return 0;
}

/* One referrer: its manifest (digest-checked, subject checked), its
 * envelope (capped, digest-checked), then nx_attest_check. */
static int try_attestation(struct nx_attest_info *info, struct oci_client *c, const char *subject,
			   const char *digest, const unsigned char msha[NX_SHA256_LEN],
			   const struct nx_oci_pull_opts *po, nx_error *err)
{
	char got[7 + 2 * NX_SHA256_LEN + 1], *buf = NULL, *env = NULL;
	json_t *man = NULL, *l;
	struct layer ly = { .path = "attestation" };
	const char *sd, *mt;
	size_t len;
	int rc;

	if ((rc = get_manifest(&buf, &len, got, c, NULL, digest, err)))
		return rc;
	man = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
	l = json_array_get(json_object_get(man, "layers"), 0);
	ly.digest = json_string_value(json_object_get(l, "digest"));
	ly.size = (uint64_t)json_integer_value(json_object_get(l, "size"));
	sd = json_string_value(json_object_get(json_object_get(man, "subject"), "digest"));
	mt = json_string_value(json_object_get(l, "mediaType"));
	if (!sd || strcmp(sd, subject) || !mt || strcmp(mt, NX_ATTEST_MEDIA) ||
	    !nx_oci__digest_ok(ly.digest) || !ly.size || ly.size > NX_ATTEST_MAX) {
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "referrer %s is not an attestation of %s (subject, one %s layer "
				  "of at most %u bytes)", digest, subject, NX_ATTEST_MEDIA,
				  NX_ATTEST_MAX);
		goto out;
	}
	if (!(rc = get_blob(&env, c, &ly, -1, false, err)))
		rc = nx_attest_check(info, env, (size_t)ly.size, po->keys, po->nkeys, msha, err);
out:
	json_decref(man);
	free(buf);
	free(env);
	return rc;
}

/* --require-attestation: some referrer of the artifact must be an
 * attestation that a trusted key signed for this manifest.json. */
static int require_attestation(char keyid[NX_KEY_ID_LEN + 1], struct oci_client *c,
			       const char *subject, const char *mdigest,
			       const struct nx_oci_pull_opts *po, nx_error *err)
{
	struct nx_attest_info info;
	unsigned char msha[NX_SHA256_LEN];
	json_t *idx = NULL, *d;
	nx_error why;
	size_t i, tried = 0;
	int rc;

	nx_error_clear(&why);
	if (nx_unhex(msha, mdigest + 7))
		return nx_error_set(err, NX_EFORMAT, NULL, 0, -1, "bad manifest.json digest");
	if ((rc = referrers(&idx, c, subject, err)))
		return rc;
	json_array_foreach(json_object_get(idx, "manifests"), i, d) {
		const char *at = json_string_value(json_object_get(d, "artifactType"));
		const char *dg = json_string_value(json_object_get(d, "digest"));

		if (!at || strcmp(at, NX_ATTEST_MEDIA) || !nx_oci__digest_ok(dg))
			continue;
		if (++tried > REFERRERS_MAX)
			break;
		nx_error_clear(&why);
		if (!try_attestation(&info, c, subject, dg, msha, po, &why)) {
			memcpy(keyid, info.keyid, sizeof(info.keyid));
			json_decref(idx);
			return 0;
		}
	}
	json_decref(idx);
	if (!tried)
		return nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				    "the artifact has no attestation (no %s referrer of %s); "
				    "refused before downloading its files", NX_ATTEST_MEDIA, subject);
	return nx_error_set(err, NX_ECHECK, NULL, 0, -1,
			    "no valid attestation of the artifact (%s); refused before "
			    "downloading its files", why.message);
}

/*
 * What a downloaded file was when its download ended, so that verify can
 * take its digest as known only while it still is (DESIGN-NOTES, "pull
 * hashes once").  The file's mtime is stamped with the bundle's build time
 * (as nexus pack does) and its mode set to the final one, then its ctime
 * is recorded: a write, a chmod or an mtime set back after that moves the
 * ctime, which no process can set back (the seal leaves a final mode
 * alone).
 */
struct ident {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime, ctime;
	bool set;
};

/* Layers 1..n-1 into the stage, on several connections (pool.c); the
 * stage is touched under the pool's lock only. */
struct fetch {
	const struct layer *ly;   /* layers 1..n-1 as jobs 0..n-2 */
	const nx_manifest *m;
	nx_stage *st;
	struct ident *ids;        /* by index in m->files */
	struct timespec built;
	bool writeback;           /* the files are fsynced at publish */
	size_t files;
	uint64_t bytes;
};

static void stamp(struct ident *id, int fd, mode_t mode, struct timespec built)
{
	const struct timespec t[2] = { { .tv_nsec = UTIME_OMIT }, built };
	struct stat st;

	if (futimens(fd, t) || fchmod(fd, mode) || fstat(fd, &st))
		return;   /* not set: verify hashes this file */
	*id = (struct ident){ .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size,
			      .mtime = st.st_mtim, .ctime = st.st_ctim, .set = true };
}

static bool still_known(void *ctx, const char *path, const struct stat *st)
{
	const struct fetch *f = ctx;
	const struct nx_manifest_file *mf = nx_manifest_find(f->m, path);
	const struct ident *id = mf ? &f->ids[mf - f->m->files] : NULL;

	return id && id->set && id->dev == st->st_dev && id->ino == st->st_ino &&
	       id->size == st->st_size && id->mtime.tv_sec == st->st_mtim.tv_sec &&
	       id->mtime.tv_nsec == st->st_mtim.tv_nsec && id->ctime.tv_sec == st->st_ctim.tv_sec &&
	       id->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

static int fetch_one(struct oci_client *c, size_t i, void *ctx, pthread_mutex_t *mu, nx_error *err)
{
	struct fetch *f = ctx;
	const struct layer *l = &f->ly[i];
	const struct nx_manifest_file *mf = nx_manifest_find(f->m, l->path);
	int rc, fd;

	pthread_mutex_lock(mu);
	/* match_files: every layer is a listed file; its mode is the manifest's */
	rc = nx_stage_create_file(&fd, f->st, l->path, nx_manifest_file_mode(mf) == 0555, err);
	pthread_mutex_unlock(mu);
	if (rc)
		return rc;
	rc = get_blob(NULL, c, l, fd, f->writeback, err);
	if (!rc)
		stamp(&f->ids[mf - f->m->files], fd, nx_manifest_file_mode(mf), f->built);
	close(fd);
	if (!rc) {
		pthread_mutex_lock(mu);
		f->files++;
		f->bytes += l->size;
		pthread_mutex_unlock(mu);
	}
	return rc;
}

static int fetch_all(struct nx_oci_pull_result *res, struct fetch *f, struct oci_client *c,
		     const nx_oci_ref *ref, const struct layer *ly, size_t n, nx_error *err)
{
	struct tm tm = { 0 };
	uint64_t *sizes;
	size_t i;
	int rc;

	f->ly = ly + 1;
	/* the manifest parser checked the form */
	if (strptime(f->m->build_timestamp, "%Y-%m-%dT%H:%M:%SZ", &tm))
		f->built.tv_sec = timegm(&tm);
	if (!(f->ids = calloc(f->m->nfiles + 1, sizeof(*f->ids))) ||
	    !(sizes = malloc(n * sizeof(*sizes))))
		return nx_error_oom(err, NULL);
	for (i = 1; i < n; i++)
		sizes[i - 1] = ly[i].size;
	rc = nx_oci__pool_run(c, ref, "pull", sizes, n - 1, fetch_one, f, err);
	free(sizes);
	res->files = f->files;
	res->bytes = f->bytes;
	return rc;
}

/* The early trust decision, on manifest.json alone. */
static int check_signature(const nx_manifest *m, const struct nx_oci_pull_opts *po, nx_error *err)
{
	char id[NX_KEY_ID_LEN + 1];
	enum nx_sig_status st;
	int rc;

	if ((rc = nx_manifest_verify_signature(&st, id, m, po->keys, po->nkeys, err)))
		return rc;
	if (st == NX_SIG_VALID || (st == NX_SIG_UNSIGNED && !po->require_signature))
		return 0;
	if (st == NX_SIG_UNKNOWN_KEY && !po->nkeys && !po->require_signature)
		return 0;  /* verify reports it; nothing to check against */
	return nx_error_set(err, NX_ECHECK, NX_MANIFEST_NAME, 0, -1,
			    "the artifact's manifest.json signature is %s%s%s; refused before "
			    "downloading its files", nx_sig_status_code(st), id[0] ? " (key " : "",
			    id[0] ? id : "");
}

int nx_oci_pull(struct nx_oci_pull_result *out, const nx_oci_ref *ref, const char *out_dir,
		const struct nx_oci_opts *o, const struct nx_oci_pull_opts *po, nx_error *err)
{
	struct nx_oci_pull_result res = { 0 };
	struct oci_client c = { 0 };
	struct layer *ly = NULL;
	json_t *root = NULL;
	char *art = NULL, *mjson = NULL;
	nx_manifest *m = NULL;
	nx_stage *st = NULL;
	nx_report *rep = NULL;
	struct fetch fetch = { 0 };
	struct nx_verify_opts vo;
	size_t alen = 0, n = 0;
	int rc;

	if ((rc = nx_oci__client_open(&c, ref, o, "pull", err)) ||
	    (rc = get_manifest(&art, &alen, res.digest, &c, ref->tag, ref->digest, err)) ||
	    (rc = parse_layers(&ly, &n, &root, art, alen, err)) ||
	    (rc = get_blob(&mjson, &c, &ly[0], -1, false, err)) ||
	    (rc = nx_manifest_parse(&m, mjson, (size_t)ly[0].size, NX_MANIFEST_NAME, err)) ||
	    (rc = check_signature(m, po, err)) ||
	    (rc = match_files(ly, n, m, err)) ||
	    (po->require_attestation &&
	     (rc = require_attestation(res.attested_by, &c, res.digest, ly[0].digest, po, err))) ||
	    (rc = nx_stage_create(&st, out_dir, po->force, err)))
		goto out;
	if (po->on_stage)
		po->on_stage(po->stage_ctx, st);
	fetch.m = m;
	fetch.st = st;
	fetch.writeback = !po->no_fsync;
	if ((rc = fetch_all(&res, &fetch, &c, ref, ly, n, err)))
		goto out;
	/* every file of this private stage was written here and its SHA-256
	 * checked against the manifest as it streamed in; one changed since
	 * is hashed again (still_known) */
	if (po->verify) {
		vo = *po->verify;
		vo.digest_still_known = still_known;
		vo.digest_known_ctx = &fetch;
	}
	nx_stage_set_nosync(st, po->no_fsync);
	rc = nx_verify_publish(&rep, st, mjson, (size_t)ly[0].size, out_dir, "pulled",
			       po->verify ? &vo : NULL, err);
out:
	if (po->on_stage && st)
		po->on_stage(po->stage_ctx, NULL);
	nx_stage_free(st);
	nx_oci__client_close(&c);
	if (out) {
		res.report = rep;
		rep = NULL;
		if (!rc || res.report)
			*out = res;
	}
	nx_report_free(rep);
	nx_manifest_free(m);
	json_decref(root);
	free(fetch.ids);
	free(ly);
	free(art);
	free(mjson);
	return rc;
}
