/*
 * nexus/sign.h - Ed25519 keys (PEM files) and manifest signatures.
 *
 * A signature is the string "ed25519:<key id>:<base64 of 64 bytes>" stored
 * in the manifest's "signature" key, over nx_manifest_signed_bytes().  The key
 * id is the first 16 hex digits of SHA-256 of the raw 32-byte public key.
 * Trust comes only from the keys a verifier passes in, never from a bundle.
 */
#ifndef NEXUS_SIGN_H
#define NEXUS_SIGN_H

#include <stdbool.h>
#include <stddef.h>

#include "nexus/error.h"
#include "nexus/manifest.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_KEY_FILE_MAX (64u << 10)   /* bytes of a PEM key file */
#define NX_KEY_ID_LEN 16              /* hex digits of a key id */
#define NX_SIG_LEN 64                 /* bytes of an Ed25519 signature */

typedef struct nx_key nx_key;

/*
 * Generate a key pair and write PREFIX.key (unencrypted PKCS#8 PEM, mode
 * 0600) and PREFIX.pub (SubjectPublicKeyInfo PEM, mode 0644), both created
 * with O_EXCL.  NX_EEXIST if either exists; on any failure neither file is
 * left behind.  out_keyid gets the key id.
 */
int nx_key_generate(const char *prefix, char out_keyid[NX_KEY_ID_LEN + 1], nx_error *err);

/*
 * Load an Ed25519 private key from a PEM file.  NX_EUNSAFE if the file is
 * readable or writable by group or others (fix with chmod 600) or is not a
 * regular file; NX_ECONFIG for an encrypted key, a key of another type, or
 * unparseable PEM; NX_ELIMIT past NX_KEY_FILE_MAX; NX_EIO.  The file's bytes
 * are wiped from memory after parsing.
 */
int nx_key_load_private(nx_key **out, const char *path, nx_error *err);

/*
 * Load an Ed25519 public key: a SubjectPublicKeyInfo PEM (.pub).  A file
 * holding a private key is NX_ECONFIG (the message names the .pub to pass
 * instead).  Other errors as nx_key_load_private, without the mode check.
 */
int nx_key_load_public(nx_key **out, const char *path, nx_error *err);

/* The key id: 16 lower-case hex digits, NUL-terminated. */
void nx_key_id(char out[NX_KEY_ID_LEN + 1], const nx_key *k);

/* Free a key (private bytes are wiped by OpenSSL).  Accepts NULL. */
void nx_key_free(nx_key *k);

/*
 * Sign m with a private key: m->signature becomes
 * "ed25519:<keyid>:<base64>" over nx_manifest_signed_bytes(m), replacing any
 * previous signature.  NX_ECONFIG if key has no private half.
 */
int nx_manifest_sign(nx_manifest *m, const nx_key *key, nx_error *err);

enum nx_sig_status {
	NX_SIG_VALID,          /* a trusted key made this signature over these bytes */
	NX_SIG_UNSIGNED,       /* signature is "" */
	NX_SIG_UNKNOWN_KEY,    /* well-formed, but no trusted key has its key id */
	NX_SIG_BAD_ENCODING,   /* not "ed25519:<16 hex>:<88 chars of base64 of 64 bytes>" */
	NX_SIG_BAD_SIGNATURE   /* a trusted key has the id, but the signature does not verify */
};

/*
 * Classify m->signature against keys[0..nkeys) (borrowed).  *out is the
 * status; out_keyid gets the key id named by the signature, or "" when it
 * names none.  Returns 0 whatever the status; a negative code only when the
 * check itself could not run (out of memory, OpenSSL failure).
 */
int nx_manifest_verify_signature(enum nx_sig_status *out, char out_keyid[NX_KEY_ID_LEN + 1],
				 const nx_manifest *m, nx_key *const *keys, size_t nkeys,
				 nx_error *err);

/*
 * Sign the bytes msg[0..len) themselves (Ed25519, no pre-hash: the same
 * bytes verify with `openssl pkeyutl -verify -rawin`).  NX_ECONFIG if key
 * has no private half, NX_ENOMEM, NX_EINTERNAL.  Used for DSSE envelopes
 * (nexus/attest.h).
 */
int nx_key_sign_bytes(unsigned char out[NX_SIG_LEN], const nx_key *key, const void *msg,
		      size_t len, nx_error *err);

/* True when sig is key's Ed25519 signature of msg[0..len). */
bool nx_key_verify_bytes(const nx_key *key, const void *msg, size_t len,
			 const unsigned char sig[NX_SIG_LEN]);

/* "valid", "unsigned", "unknown-key", "bad-encoding", "bad-signature". */
const char *nx_sig_status_code(enum nx_sig_status s);

#ifdef __cplusplus
}
#endif
#endif
