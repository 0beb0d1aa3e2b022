/*
 * sign.c - Ed25519 keys as PEM files and manifest signatures (OpenSSL 3 EVP).
 * Ed25519 signs the message itself (no pre-hash), hence EVP_DigestSign with
 * a NULL digest; the same bytes verify with `openssl pkeyutl -rawin`.
 */
#include "nexus/sign.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include "nexus/fs.h"

#define ED25519_PUB_LEN 32
#define ED25519_SIG_LEN 64
#define SIG_B64_LEN 88   /* 4 * ceil(64 / 3) */
#define SIG_PREFIX "ed25519:"

struct nx_key {
	EVP_PKEY *pkey;
	int has_private;
	char id[NX_KEY_ID_LEN + 1];
};

/* Wrap pkey (taking ownership) after checking that it is Ed25519. */
static int wrap_key(nx_key **out, EVP_PKEY *pkey, int has_private, const char *path,
		    nx_error *err)
{
	unsigned char pub[ED25519_PUB_LEN], md[NX_SHA256_LEN];
	char hex[2 * NX_SHA256_LEN + 1];
	size_t len = sizeof(pub);
	nx_key *k;

	if (EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) {
		const char *type = OBJ_nid2sn(EVP_PKEY_get_base_id(pkey));

		EVP_PKEY_free(pkey);
		return nx_error_set(err, NX_ECONFIG, path, 0, -1,
				    "%s is a %s key; nexus signs with ed25519 only "
				    "(make one with 'nexus keygen')", path, type ? type : "non-ed25519");
	}
	if (!EVP_PKEY_get_raw_public_key(pkey, pub, &len) || len != sizeof(pub) ||
	    nx_sha256_buf(md, pub, sizeof(pub)) != 0) {
		EVP_PKEY_free(pkey);
		return nx_error_set(err, NX_EINTERNAL, path, 0, -1,
				    "cannot read the public key of %s", path);
	}
	if (!(k = calloc(1, sizeof(*k)))) {
		EVP_PKEY_free(pkey);
		return nx_error_oom(err, path);
	}
	nx_hex(hex, md);
	memcpy(k->id, hex, NX_KEY_ID_LEN);
	k->id[NX_KEY_ID_LEN] = '\0';
	k->pkey = pkey;
	k->has_private = has_private;
	*out = k;
	return 0;
}

void nx_key_free(nx_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

void nx_key_id(char out[NX_KEY_ID_LEN + 1], const nx_key *k)
{
	memcpy(out, k->id, NX_KEY_ID_LEN + 1);
}

/* Read a whole key file (capped) into a buffer the caller cleanses. */
static int read_key_file(char **out, size_t *out_len, const char *path, int private_key,
			 nx_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return nx_error_errno(err, errno == ELOOP ? NX_EUNSAFE : NX_EIO, errno, path,
				      "cannot open key %s", path);
	if (fstat(fd, &st) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, path, "cannot stat key %s", path);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = nx_error_set(err, NX_EUNSAFE, path, 0, -1, "key %s is not a regular file", path);
		goto out;
	}
	if (private_key && (st.st_mode & 077)) {
		rc = nx_error_set(err, NX_EUNSAFE, path, 0, -1,
				  "private key %s is accessible by group or others (mode %04o); "
				  "run 'chmod 600 %s'", path, (unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	if ((uint64_t)st.st_size > NX_KEY_FILE_MAX) {
		rc = nx_error_set(err, NX_ELIMIT, path, 0, -1,
				  "key %s is larger than %u bytes; it is not a key", path,
				  NX_KEY_FILE_MAX);
		goto out;
	}
	if (!(buf = malloc(NX_KEY_FILE_MAX + 1))) {
		rc = nx_error_oom(err, path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, NX_KEY_FILE_MAX + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = nx_error_errno(err, NX_EIO, errno, path, "cannot read key %s", path);
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
		if (got > NX_KEY_FILE_MAX) {
			rc = nx_error_set(err, NX_ELIMIT, path, 0, -1,
					  "key %s is larger than %u bytes", path, NX_KEY_FILE_MAX);
			goto out;
		}
	}
	buf[got] = '\0';
out:
	close(fd);
	if (rc) {
		if (buf)
			OPENSSL_cleanse(buf, NX_KEY_FILE_MAX + 1);
		free(buf);
		return rc;
	}
	*out = buf;
	*out_len = got;
	return 0;
}

static void wipe(char *buf)
{
	if (buf)
		OPENSSL_cleanse(buf, NX_KEY_FILE_MAX + 1);
	free(buf);
}

/* PEM password callback: never supply a password, only note it was asked. */
static int no_password(char *buf, int size, int rwflag, void *asked)
{
	*(int *)asked = 1;
	return -1;
}

static EVP_PKEY *parse_private(const char *buf, size_t len, int *asked)
{
	BIO *bio = BIO_new_mem_buf(buf, (int)len);
	EVP_PKEY *pkey = NULL;

	if (bio)
		pkey = PEM_read_bio_PrivateKey(bio, NULL, no_password, asked);
	BIO_free(bio);
	return pkey;
}

static int private_error(const char *buf, int asked, const char *path, nx_error *err)
{
	ERR_clear_error();
	if (asked || strstr(buf, "ENCRYPTED"))
		return nx_error_set(err, NX_ECONFIG, path, 0, -1,
				    "key %s is encrypted; nexus needs an unencrypted key file "
				    "kept with mode 0600 (decrypt with 'openssl pkey -in %s -out NEW')",
				    path, path);
	return nx_error_set(err, NX_ECONFIG, path, 0, -1,
			    "%s is not a PEM private key (make one with 'nexus keygen')", path);
}

int nx_key_load_private(nx_key **out, const char *path, nx_error *err)
{
	EVP_PKEY *pkey;
	char *buf = NULL;
	size_t len;
	int rc, asked = 0;

	if ((rc = read_key_file(&buf, &len, path, 1, err)))
		return rc;
	pkey = parse_private(buf, len, &asked);
	if (!pkey)
		rc = private_error(buf, asked, path, err);
	else
		rc = wrap_key(out, pkey, 1, path, err);
	wipe(buf);
	return rc;
}

int nx_key_load_public(nx_key **out, const char *path, nx_error *err)
{
	EVP_PKEY *pkey = NULL;
	const char *dot = strrchr(path, '.');
	char *buf = NULL;
	size_t len;
	BIO *bio;
	int rc, asked = 0;

	if ((rc = read_key_file(&buf, &len, path, 0, err)))
		return rc;
	/* A private key where a public one is expected is a mistake that
	 * spreads the signing key to every verifying host: refuse it. */
	if (memmem(buf, len, "PRIVATE KEY", 11)) {
		rc = nx_error_set(err, NX_ECONFIG, path, 0, -1,
				  "%s is a private key; pass the public key (%.*s.pub, written "
				  "beside it by 'nexus keygen') and keep the private key off the "
				  "hosts that verify", path,
				  dot && !strcmp(dot, ".key") ? (int)(dot - path) : (int)strlen(path),
				  path);
		goto out;
	}
	if ((bio = BIO_new_mem_buf(buf, (int)len)))
		pkey = PEM_read_bio_PUBKEY(bio, NULL, no_password, &asked);
	BIO_free(bio);
	if (!pkey) {
		ERR_clear_error();
		rc = nx_error_set(err, NX_ECONFIG, path, 0, -1,
				  "%s is not a PEM public key (expected 'BEGIN PUBLIC KEY', "
				  "as written by 'nexus keygen')", path);
		goto out;
	}
	rc = wrap_key(out, pkey, 0, path, err);
out:
	wipe(buf);
	return rc;
}

/* Create path exclusively with mode and write data; NX_EEXIST if it exists. */
static int write_new(const char *path, mode_t mode, const char *data, size_t len,
		     nx_error *err)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return errno == EEXIST
			? nx_error_set(err, NX_EEXIST, path, 0, -1,
				       "%s exists; nexus never overwrites a key, "
				       "choose another prefix", path)
			: nx_error_errno(err, NX_EIO, errno, path, "cannot create %s", path);
	/* fchmod because umask may have removed bits we promise (0644). */
	if (nx_write_all(fd, data, len) || fchmod(fd, mode) != 0 || fsync(fd) != 0) {
		int e = errno;

		close(fd);
		unlink(path);
		return nx_error_errno(err, NX_EIO, e, path, "cannot write %s", path);
	}
	close(fd);
	return 0;
}

int nx_key_generate(const char *prefix, char out_keyid[NX_KEY_ID_LEN + 1], nx_error *err)
{
	char keypath[PATH_MAX], pubpath[PATH_MAX];
	EVP_PKEY *pkey = NULL;
	BIO *priv = NULL, *pub = NULL;
	nx_key *k = NULL;
	char *data;
	long len;
	int rc;

	if ((size_t)snprintf(keypath, sizeof(keypath), "%s.key", prefix) >= sizeof(keypath) ||
	    (size_t)snprintf(pubpath, sizeof(pubpath), "%s.pub", prefix) >= sizeof(pubpath))
		return nx_error_set(err, NX_EUSAGE, prefix, 0, -1, "key prefix %s is too long",
				    prefix);
	pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	priv = BIO_new(BIO_s_secmem());
	pub = BIO_new(BIO_s_mem());
	if (!pkey || !priv || !pub ||
	    !PEM_write_bio_PrivateKey(priv, pkey, NULL, NULL, 0, NULL, NULL) ||
	    !PEM_write_bio_PUBKEY(pub, pkey)) {
		ERR_clear_error();
		rc = nx_error_set(err, NX_EINTERNAL, prefix, 0, -1,
				  "openssl could not generate an ed25519 key");
		goto out;
	}
	len = BIO_get_mem_data(priv, &data);
	if ((rc = write_new(keypath, 0600, data, (size_t)len, err)))
		goto out;
	len = BIO_get_mem_data(pub, &data);
	if ((rc = write_new(pubpath, 0644, data, (size_t)len, err))) {
		unlink(keypath);
		goto out;
	}
	if ((rc = wrap_key(&k, pkey, 1, keypath, err))) {
		pkey = NULL;
		unlink(keypath);
		unlink(pubpath);
		goto out;
	}
	pkey = NULL;
	nx_key_id(out_keyid, k);
out:
	nx_key_free(k);
	BIO_free(priv);
	BIO_free(pub);
	EVP_PKEY_free(pkey);
	return rc;
}

int nx_manifest_sign(nx_manifest *m, const nx_key *key, nx_error *err)
{
	unsigned char sig[ED25519_SIG_LEN];
	unsigned char b64[SIG_B64_LEN + 1];
	char text[sizeof(SIG_PREFIX) + NX_KEY_ID_LEN + 1 + SIG_B64_LEN + 1];
	char *msg = NULL;
	size_t len;
	int rc;

	if (!key->has_private)
		return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				    "signing needs a private key, not a public one");
	if ((rc = nx_manifest_signed_bytes(&msg, &len, m, err)))
		return rc;
	if ((rc = nx_key_sign_bytes(sig, key, msg, len, err)))
		goto out;
	if (EVP_EncodeBlock(b64, sig, sizeof(sig)) != SIG_B64_LEN) {
		rc = nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "base64 encoding failed");
		goto out;
	}
	snprintf(text, sizeof(text), SIG_PREFIX "%s:%s", key->id, (char *)b64);
	rc = nx_manifest_set(m, &m->signature, text, err);
out:
	free(msg);
	return rc;
}

static int is_lower_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/*
 * Decode exactly 88 base64 characters to 64 bytes.  EVP_DecodeBlock alone
 * accepts too much (whitespace, non-zero pad bits), so the result must
 * re-encode to the same text.
 */
static int decode_sig(unsigned char out[ED25519_SIG_LEN], const char *b64)
{
	unsigned char raw[SIG_B64_LEN], again[SIG_B64_LEN + 1];
	size_t i;

	if (strlen(b64) != SIG_B64_LEN)
		return -1;
	for (i = 0; i < SIG_B64_LEN - 2; i++) {
		char c = b64[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return -1;
	}
	if (b64[SIG_B64_LEN - 2] != '=' || b64[SIG_B64_LEN - 1] != '=')
		return -1;
	if (EVP_DecodeBlock(raw, (const unsigned char *)b64, SIG_B64_LEN) != 66)
		return -1;
	if (EVP_EncodeBlock(again, raw, ED25519_SIG_LEN) != SIG_B64_LEN ||
	    memcmp(again, b64, SIG_B64_LEN) != 0)
		return -1;
	memcpy(out, raw, ED25519_SIG_LEN);
	return 0;
}

int nx_manifest_verify_signature(enum nx_sig_status *out, char out_keyid[NX_KEY_ID_LEN + 1],
				 const nx_manifest *m, nx_key *const *keys, size_t nkeys,
				 nx_error *err)
{
	const size_t plen = sizeof(SIG_PREFIX) - 1;
	const char *s = m->signature ? m->signature : "";
	unsigned char sig[ED25519_SIG_LEN];
	char id[NX_KEY_ID_LEN + 1] = "";
	enum nx_sig_status st;
	EVP_MD_CTX *ctx = NULL;
	char *msg = NULL;
	size_t len, i;
	int rc = 0, known = 0;

	if (!*s) {
		st = NX_SIG_UNSIGNED;
		goto done;
	}
	st = NX_SIG_BAD_ENCODING;
	if (strncmp(s, SIG_PREFIX, plen) != 0 || strnlen(s + plen, NX_KEY_ID_LEN + 1) <
	    NX_KEY_ID_LEN + 1 || !is_lower_hex(s + plen, NX_KEY_ID_LEN) ||
	    s[plen + NX_KEY_ID_LEN] != ':')
		goto done;
	memcpy(id, s + plen, NX_KEY_ID_LEN);
	id[NX_KEY_ID_LEN] = '\0';
	if (decode_sig(sig, s + plen + NX_KEY_ID_LEN + 1) != 0)
		goto done;
	if ((rc = nx_manifest_signed_bytes(&msg, &len, m, err)))
		goto out;
	st = NX_SIG_UNKNOWN_KEY;
	for (i = 0; i < nkeys; i++) {
		int ok;

		if (strcmp(keys[i]->id, id) != 0)
			continue;
		known = 1;
		if (!(ctx = EVP_MD_CTX_new())) {
			rc = nx_error_oom(err, NULL);
			goto out;
		}
		ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, keys[i]->pkey) == 1 &&
		     EVP_DigestVerify(ctx, sig, sizeof(sig), (unsigned char *)msg, len) == 1;
		EVP_MD_CTX_free(ctx);
		ctx = NULL;
		ERR_clear_error();
		if (ok) {
			st = NX_SIG_VALID;
			goto done;
		}
	}
	if (known)
		st = NX_SIG_BAD_SIGNATURE;
done:
	*out = st;
	memcpy(out_keyid, id, sizeof(id));
out:
	free(msg);
	return rc;
}

const char *nx_sig_status_code(enum nx_sig_status s)
{
	switch (s) {
	case NX_SIG_VALID: return "valid";
	case NX_SIG_UNSIGNED: return "unsigned";
	case NX_SIG_UNKNOWN_KEY: return "unknown-key";
	case NX_SIG_BAD_ENCODING: return "bad-encoding";
	case NX_SIG_BAD_SIGNATURE: return "bad-signature";
	}
	return "bad-encoding";
}

int nx_key_sign_bytes(unsigned char out[NX_SIG_LEN], const nx_key *key, const void *msg,
		      size_t len, nx_error *err)
{
	size_t siglen = NX_SIG_LEN;
	EVP_MD_CTX *ctx;
	int ok;

	if (!key->has_private)
		return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				    "signing needs a private key, not a public one");
	if (!(ctx = EVP_MD_CTX_new()))
		return nx_error_oom(err, NULL);
	ok = EVP_DigestSignInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
	     EVP_DigestSign(ctx, out, &siglen, msg, len) == 1 && siglen == NX_SIG_LEN;
	EVP_MD_CTX_free(ctx);
	if (ok)
		return 0;
	ERR_clear_error();
	return nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "openssl failed to sign");
}

bool nx_key_verify_bytes(const nx_key *key, const void *msg, size_t len,
			 const unsigned char sig[NX_SIG_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	bool ok = ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key->pkey) == 1 &&
		  EVP_DigestVerify(ctx, sig, NX_SIG_LEN, msg, len) == 1;

	EVP_MD_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}
