/*
 * nexus/attest.h - attestations of a verify result: an in-toto Statement v1
 * (subject: the bundle's manifest.json, its OCI artifact and its ONNX
 * files; predicate: the `nexus verify --json` report) in a DSSE envelope
 * signed with the release's Ed25519 key (docs/FORMAT.md §8.5).
 *
 * The DSSE signature is over PAE(payloadType, payload) =
 * "DSSEv1 <len(type)> <type> <len(payload)> <payload>", Ed25519 without
 * pre-hash, so `openssl pkeyutl -verify -rawin` checks it (docs/FORMAT.md
 * §8.5 has the commands).  Errors follow nexus/error.h.
 */
#ifndef NEXUS_ATTEST_H
#define NEXUS_ATTEST_H

#include <stddef.h>

#include "nexus/error.h"
#include "nexus/hash.h"
#include "nexus/manifest.h"
#include "nexus/sign.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_ATTEST_MEDIA "application/vnd.dsse.envelope.v1+json"
#define NX_ATTEST_PAYLOAD_TYPE "application/vnd.in-toto+json"
#define NX_ATTEST_STATEMENT_TYPE "https://in-toto.io/Statement/v1"
#define NX_ATTEST_PREDICATE_TYPE "urn:nexus:verify:v1"
#define NX_ATTEST_OCI_SUBJECT "oci-image-manifest"  /* subject name of the OCI artifact */
#define NX_ATTEST_MAX (4u << 20)  /* bytes of an envelope read or fetched */

/*
 * The DSSE envelope (compact JSON, sorted keys) of a Statement about the
 * bundle whose manifest.json is mjson/mlen (m its parse), with predicate
 * report_json (a nexus.verify.v1 document), signed with key.  *out is
 * NUL-terminated; the caller frees it.  NX_EFORMAT if report_json is not a
 * JSON object, NX_ECONFIG for a key without its private half, NX_ENOMEM.
 */
int nx_attest_create(char **out, size_t *out_len, const nx_manifest *m, const char *mjson,
		     size_t mlen, const char *report_json, const nx_key *key, nx_error *err);

struct nx_attest_info {
	char keyid[NX_KEY_ID_LEN + 1];  /* the trusted key whose signature holds */
	char verdict[8];                /* the predicate's verdict: PASS or WARN */
};

/*
 * Check an envelope (untrusted bytes) for the bundle whose manifest.json
 * has SHA-256 manifest_sha: a DSSE envelope of an in-toto Statement v1,
 * signed by one of keys[0..nkeys), of predicate type NX_ATTEST_PREDICATE_TYPE,
 * whose subject names manifest.json with that digest and whose verdict is
 * not FAIL.  NX_ECHECK naming what does not hold, NX_EFORMAT for bytes that
 * are not such an envelope, NX_ELIMIT over NX_ATTEST_MAX.  out on success.
 */
int nx_attest_check(struct nx_attest_info *out, const char *env, size_t len,
		    nx_key *const *keys, size_t nkeys,
		    const unsigned char manifest_sha[NX_SHA256_LEN], nx_error *err);

#ifdef __cplusplus
}
#endif
#endif
