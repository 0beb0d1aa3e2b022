/*
 * nexus/oci.h - bundles in OCI registries (distribution-spec v1.1): the
 * artifact a bundle becomes (docs/FORMAT.md §8), `push` and `pull`.
 *
 * The registry is untrusted transport: what a pull publishes is decided by
 * the bundle's signed manifest.json alone.  Every blob is checked against
 * its digest as it streams, every size has a cap, and a pulled bundle is
 * staged, verified (nexus/verify.h) and published atomically, or not at all.
 *
 * Errors follow nexus/error.h.  Network and registry failures are NX_EIO
 * (the message carries the registry's errors[] when it sent some); a
 * reference or option that cannot be used is NX_EUSAGE; something the
 * registry served that breaks the artifact's rules (a path with "..", a
 * layer listed twice, a blob over its declared size, a Location on another
 * host) is NX_EUNSAFE or NX_ELIMIT; a digest or signature that does not
 * match, or a pulled bundle that fails verification, is NX_ECHECK.
 */
#ifndef NEXUS_OCI_H
#define NEXUS_OCI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nexus/error.h"
#include "nexus/fs.h"
#include "nexus/hash.h"
#include "nexus/manifest.h"
#include "nexus/sign.h"
#include "nexus/verify.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_OCI_MANIFEST_MEDIA "application/vnd.oci.image.manifest.v1+json"
#define NX_OCI_ARTIFACT_TYPE "application/vnd.cncf.model.manifest.v1+json"
#define NX_OCI_CONFIG_MEDIA "application/vnd.cncf.model.config.v1+json"
#define NX_OCI_NEXUS_MANIFEST_MEDIA "application/vnd.nexus.bundle.manifest.v1+json"
#define NX_OCI_TITLE "org.opencontainers.image.title"
#define NX_OCI_FILEPATH "org.cncf.model.filepath"
#define NX_OCI_CREATED "org.opencontainers.image.created"
#define NX_OCI_INDEX_MEDIA "application/vnd.oci.image.index.v1+json"
#define NX_OCI_EMPTY_MEDIA "application/vnd.oci.empty.v1+json"
#define NX_OCI_PREDICATE_ANNOTATION "in-toto.io/predicate-type"

#define NX_OCI_MANIFEST_MAX (4u << 20)   /* bytes of an image manifest (distribution's own cap) */
#define NX_OCI_RESPONSE_MAX (1u << 20)   /* bytes of any other response body kept */
#define NX_OCI_REF_MAX 512               /* bytes of a reference */
#define NX_OCI_RETRY_AFTER_MAX 30        /* seconds of a Retry-After honoured */
#define NX_OCI_ATTEMPTS 5                /* tries of one idempotent request */
#define NX_OCI_CHUNK_DEFAULT (64u << 20) /* blobs over this are uploaded in PATCH chunks */

/* A parsed reference: REGISTRY/REPOSITORY[:TAG][@sha256:HEX]. */
typedef struct nx_oci_ref {
	char *registry;   /* "host[:port]" */
	char *repository; /* "a/b" */
	char *tag;        /* NULL when only a digest was given */
	char *digest;     /* "sha256:<64 hex>" or NULL */
} nx_oci_ref;

/*
 * Parse s (a registry host is required: its first component has a '.' or a
 * ':' or is "localhost").  No tag and no digest means tag "latest".
 * NX_EUSAGE naming what is wrong.  Free with nx_oci_ref_free.
 */
int nx_oci_ref_parse(nx_oci_ref **out, const char *s, nx_error *err);
void nx_oci_ref_free(nx_oci_ref *r);

/*
 * The artifact of a bundle: the image manifest's exact bytes (compact JSON,
 * fixed member order, so the same manifest.json always gives the same
 * digest) and its config blob.  mjson/mlen are manifest.json's bytes and m
 * their parse.  Strings the caller frees.  NX_ENOMEM, NX_EINTERNAL.
 */
int nx_oci_artifact(char **out_manifest, size_t *out_manifest_len, char **out_config,
		    size_t *out_config_len, const nx_manifest *m, const char *mjson,
		    size_t mlen, nx_error *err);

/* The ModelPack layer media type of a bundle path. */
const char *nx_oci_layer_media(const char *path);

/* Progress of one transfer: `what` is a path or "manifest". */
typedef void (*nx_oci_progress)(void *ctx, const char *what, uint64_t done, uint64_t total);

struct nx_oci_opts {
	const char *username;     /* NULL: ~/.docker/config.json ($DOCKER_CONFIG) auths */
	const char *password;     /* borrowed; the caller wipes it */
	bool plain_http;          /* http:// instead of https:// */
	const char *ca_file;      /* extra CA bundle for TLS, or NULL */
	uint64_t chunk_size;      /* push: blobs over this go in PATCH chunks of this size */
	const char *mount_from;   /* push: repository to mount existing blobs from, or NULL */
	const char *attestation;  /* push: a DSSE envelope (nexus/attest.h) to attach, or NULL */
	size_t attestation_len;
	double backoff;           /* seconds of the first retry's back-off (default 0.5) */
	nx_oci_progress progress; /* may be NULL */
	void *progress_ctx;
};

void nx_oci_opts_init(struct nx_oci_opts *o);

struct nx_oci_push_result {
	char digest[7 + 2 * NX_SHA256_LEN + 1]; /* "sha256:..." of the image manifest */
	size_t blobs_uploaded, blobs_skipped, blobs_mounted;
	uint64_t bytes_uploaded;
	char attestation[7 + 2 * NX_SHA256_LEN + 1]; /* its manifest's digest, or "" */
	bool referrers_tag;       /* attached by the sha256-<hex> tag (no referrers API) */
};

/*
 * Push the bundle open at dirfd (it is not verified here: the caller runs
 * nexus/verify.h first) to ref.  Each file is read with the size and
 * SHA-256 its manifest lists; a file that changed is NX_ECHECK.  With
 * o->attestation, the envelope is then attached to the artifact as an OCI
 * referrer (docs/FORMAT.md §8.5): a manifest of artifactType NX_ATTEST_MEDIA
 * whose subject is the artifact, listed by the registry's referrers API, or
 * where the registry has none, in the image index at tag sha256-<hex> (the
 * referrers tag schema ORAS uses).  out is written on success.
 */
int nx_oci_push(struct nx_oci_push_result *out, int dirfd, const char *bundle,
		const nx_oci_ref *ref, const struct nx_oci_opts *o, nx_error *err);

struct nx_oci_pull_opts {
	nx_key *const *keys;      /* trusted keys for the early signature check (borrowed) */
	size_t nkeys;
	bool require_signature;
	bool require_attestation; /* a referrer nx_attest_check accepts with keys */
	bool force;               /* replace an existing out_dir */
	bool no_fsync;            /* publish atomically but without waiting for the disk */
	const struct nx_verify_opts *verify; /* run on the sealed stage; NULL: do not verify */
	/* told the stage when it exists and NULL when it is gone (for a signal
	 * handler that removes it); may be NULL */
	void (*on_stage)(void *ctx, nx_stage *stage);
	void *stage_ctx;
};

struct nx_oci_pull_result {
	char digest[7 + 2 * NX_SHA256_LEN + 1];
	size_t files;
	uint64_t bytes;
	char attested_by[NX_KEY_ID_LEN + 1]; /* with require_attestation: its key id */
	nx_report *report;        /* verify's report (the caller frees), NULL without verify */
};

/*
 * Pull ref into out_dir: the image manifest (capped, digest-checked against
 * ref->digest), manifest.json first (signature checked against po->keys
 * before anything large is fetched), the layer set checked against files[]
 * exactly, every blob streamed into a stage with a running SHA-256 and its
 * declared size as a hard cap (resumed with Range), modes set, verified,
 * published atomically.  A verdict of FAIL is NX_ECHECK with the report
 * still returned in out->report; nothing is published on any error.
 */
int nx_oci_pull(struct nx_oci_pull_result *out, const nx_oci_ref *ref, const char *out_dir,
		const struct nx_oci_opts *o, const struct nx_oci_pull_opts *po, nx_error *err);

#ifdef __cplusplus
}
#endif
#endif
