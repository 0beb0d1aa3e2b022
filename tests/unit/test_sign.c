/* test_sign.c - keys, signatures and every signature status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "nexus/sign.h"

/* RFC 8032 §7.1 test 1 secret key as PKCS#8 PEM (docs/FORMAT.md). */
static const char RFC_KEY[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n"
	"-----END PRIVATE KEY-----\n";
static const char RFC_PUB[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
	"-----END PUBLIC KEY-----\n";
#define RFC_ID "21fe31dfa154a261"
#define VECTOR_SIG "ed25519:" RFC_ID ":jTI8SC/jMKcH3KJL+G6DWARjqsBskyetG9TM+OzSMB/ivt8c" \
	"11rzDO6JYzcDAKvwrSrbTy1Ladr2HHcib1g5CQ=="

static char dir[64];

static int setup(void **state)
{
	strcpy(dir, "/tmp/nx_sign_XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static const char *in_dir(const char *name)
{
	static char path[4][128];
	static int n;

	n = (n + 1) % 4;
	snprintf(path[n], sizeof(path[n]), "%s/%s", dir, name);
	return path[n];
}

static void write_file(const char *path, const char *text, mode_t mode)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

/* The manifest of docs/FORMAT.md's vector. */
static nx_manifest *vector(void)
{
	unsigned char md[NX_SHA256_LEN];
	nx_manifest *m;

	assert_int_equal(nx_manifest_new(&m, NULL), 0);
	nx_manifest_set(m, &m->bundle_id, "nexus_bundle_v1", NULL);
	nx_manifest_set(m, &m->build_timestamp, "2026-11-27T01:02:03Z", NULL);
	nx_manifest_set(m, &m->architecture, "SpamStudent-2L", NULL);
	nx_manifest_set(m, &m->parameters, "4.4M", NULL);
	nx_manifest_set(m, &m->format, "ONNX", NULL);
	nx_manifest_set(m, &m->quantization, "none", NULL);
	m->teacher_free = m->training_code_excluded = true;
	nx_sha256_buf(md, "", 0);
	nx_manifest_add_file(m, "model/student_model.onnx", md, 0, NULL);
	nx_sha256_buf(md, "abc", 3);
	nx_manifest_add_file(m, "README.md", md, 3, NULL);
	return m;
}

static enum nx_sig_status status_of(const nx_manifest *m, nx_key *key, char *id)
{
	enum nx_sig_status st;
	char tmp[NX_KEY_ID_LEN + 1];

	assert_int_equal(nx_manifest_verify_signature(&st, id ? id : tmp, m, &key, key ? 1 : 0,
						      NULL), 0);
	return st;
}

static void rfc_key_vector(void **state)
{
	nx_key *priv = NULL, *pub = NULL;
	nx_manifest *m = vector();
	char id[NX_KEY_ID_LEN + 1];

	write_file(in_dir("rfc.key"), RFC_KEY, 0600);
	write_file(in_dir("rfc.pub"), RFC_PUB, 0644);
	assert_int_equal(nx_key_load_private(&priv, in_dir("rfc.key"), NULL), 0);
	assert_int_equal(nx_key_load_public(&pub, in_dir("rfc.pub"), NULL), 0);
	nx_key_id(id, pub);
	assert_string_equal(id, RFC_ID);
	assert_int_equal(nx_manifest_sign(m, priv, NULL), 0);
	/* Ed25519 is deterministic: the signature is a fixed test vector. */
	assert_string_equal(m->signature, VECTOR_SIG);
	assert_int_equal(status_of(m, pub, id), NX_SIG_VALID);
	assert_string_equal(id, RFC_ID);
	/* A public key cannot sign. */
	assert_int_equal(nx_manifest_sign(m, pub, NULL), NX_ECONFIG);
	nx_key_free(priv);
	nx_key_free(pub);
	nx_manifest_free(m);
}

static void generate_round_trip(void **state)
{
	char id[NX_KEY_ID_LEN + 1], id2[NX_KEY_ID_LEN + 1];
	nx_key *priv = NULL, *pub = NULL, *half = NULL, *other = NULL;
	nx_manifest *m = vector();
	struct stat st;
	nx_error err;

	assert_int_equal(nx_key_generate(in_dir("k"), id, &err), 0);
	assert_int_equal(strlen(id), 16);
	assert_int_equal(stat(in_dir("k.key"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(in_dir("k.pub"), &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	/* Never overwrite, and leave nothing behind when half exists. */
	assert_int_equal(nx_key_generate(in_dir("k"), id2, &err), NX_EEXIST);
	write_file(in_dir("h.pub"), "x", 0644);
	assert_int_equal(nx_key_generate(in_dir("h"), id2, &err), NX_EEXIST);
	assert_int_equal(access(in_dir("h.key"), F_OK), -1);

	assert_int_equal(nx_key_load_private(&priv, in_dir("k.key"), &err), 0);
	assert_int_equal(nx_key_load_public(&pub, in_dir("k.pub"), &err), 0);
	/* A private key is never taken for a public one: name the .pub. */
	assert_int_equal(nx_key_load_public(&half, in_dir("k.key"), &err), NX_ECONFIG);
	assert_non_null(strstr(err.message, "is a private key"));
	assert_non_null(strstr(err.message, "k.pub"));
	assert_int_equal(nx_key_load_public(&half, in_dir("k.pub"), &err), 0);
	nx_key_id(id2, half);
	assert_string_equal(id2, id);
	assert_int_equal(nx_manifest_sign(m, priv, &err), 0);
	assert_int_equal(status_of(m, pub, NULL), NX_SIG_VALID);
	assert_int_equal(status_of(m, half, NULL), NX_SIG_VALID);
	/* Re-signing replaces the signature rather than signing it. */
	assert_int_equal(nx_manifest_sign(m, priv, &err), 0);
	assert_int_equal(status_of(m, pub, NULL), NX_SIG_VALID);

	/* Another trusted key only: unknown-key, with the signer's id reported. */
	write_file(in_dir("rfc.pub"), RFC_PUB, 0644);
	assert_int_equal(nx_key_load_public(&other, in_dir("rfc.pub"), &err), 0);
	assert_int_equal(status_of(m, other, id2), NX_SIG_UNKNOWN_KEY);
	assert_string_equal(id2, id);
	assert_int_equal(status_of(m, NULL, NULL), NX_SIG_UNKNOWN_KEY);

	/* Any edit to the signed content breaks the signature. */
	m->teacher_free = false;
	assert_int_equal(status_of(m, pub, NULL), NX_SIG_BAD_SIGNATURE);
	m->teacher_free = true;
	m->files[0].size++;
	assert_int_equal(status_of(m, pub, NULL), NX_SIG_BAD_SIGNATURE);
	m->files[0].size--;
	assert_int_equal(status_of(m, pub, NULL), NX_SIG_VALID);
	nx_key_free(priv);
	nx_key_free(pub);
	nx_key_free(half);
	nx_key_free(other);
	nx_manifest_free(m);
}

static void bad_encodings(void **state)
{
	static const char *const bad[] = {
		"ed25519",
		"ed25519:",
		"rsa:" RFC_ID ":AAAA",
		"ed25519:21FE31DFA154A261:jTI8SC/jMKcH3KJL+G6DWARjqsBskyetG9TM+OzSMB/ivt8c11rzDO6JYzcDAKvwrSrbTy1Ladr2HHcib1g5CQ==",
		"ed25519:21fe31dfa154a26:jTI8SC/jMKcH3KJL+G6DWARjqsBskyetG9TM+OzSMB/ivt8c11rzDO6JYzcDAKvwrSrbTy1Ladr2HHcib1g5CQ==",
		"ed25519:" RFC_ID ":",
		/* truncated */
		"ed25519:" RFC_ID ":jTI8SC/jMKcH3KJL+G6DWARjqsBskyetG9TM+OzSMB/ivt8c11rzDO6JYzcDAKvwrSrbTy1Ladr2HHcib1g5",
		/* non-base64 character */
		"ed25519:" RFC_ID ":jTI8SC/jMKcH3KJL+G6DWARjqsBskyetG9TM+OzSMB/ivt8c11rzDO6JYzcDAKvwrSrbTy1Ladr2HHcib1g5C!==",
		/* non-zero padding bits (same bytes, different text) */
		"ed25519:" RFC_ID ":jTI8SC/jMKcH3KJL+G6DWARjqsBskyetG9TM+OzSMB/ivt8c11rzDO6JYzcDAKvwrSrbTy1Ladr2HHcib1g5CR==",
		/* whitespace inside */
		"ed25519:" RFC_ID ":jTI8SC/jMKcH3KJL+G6DWARjqsBskyetG9TM+OzSMB/ivt8c11rzDO6JYzcDAKvwrSrbTy1Ladr2HHcib1g5 Q==",
		VECTOR_SIG "AAAA",
		VECTOR_SIG ":",
		NULL,
	};
	nx_manifest *m = vector();
	nx_key *pub = NULL;
	int i;

	write_file(in_dir("rfc.pub"), RFC_PUB, 0644);
	assert_int_equal(nx_key_load_public(&pub, in_dir("rfc.pub"), NULL), 0);
	assert_int_equal(status_of(m, pub, NULL), NX_SIG_UNSIGNED);
	for (i = 0; bad[i]; i++) {
		nx_manifest_set(m, &m->signature, bad[i], NULL);
		if (status_of(m, pub, NULL) != NX_SIG_BAD_ENCODING)
			fail_msg("not bad-encoding: %s", bad[i]);
	}
	nx_manifest_set(m, &m->signature, VECTOR_SIG, NULL);
	assert_int_equal(status_of(m, pub, NULL), NX_SIG_VALID);
	assert_string_equal(nx_sig_status_code(NX_SIG_VALID), "valid");
	assert_string_equal(nx_sig_status_code(NX_SIG_UNSIGNED), "unsigned");
	assert_string_equal(nx_sig_status_code(NX_SIG_UNKNOWN_KEY), "unknown-key");
	assert_string_equal(nx_sig_status_code(NX_SIG_BAD_ENCODING), "bad-encoding");
	assert_string_equal(nx_sig_status_code(NX_SIG_BAD_SIGNATURE), "bad-signature");
	nx_key_free(pub);
	nx_manifest_free(m);
}

static void unsafe_and_wrong_keys(void **state)
{
	nx_key *k = NULL;
	nx_error err;
	EVP_PKEY *x = NULL;
	FILE *f;

	/* Group/world-readable private keys are refused with the fix named. */
	write_file(in_dir("loose.key"), RFC_KEY, 0644);
	assert_int_equal(nx_key_load_private(&k, in_dir("loose.key"), &err), NX_EUNSAFE);
	assert_non_null(strstr(err.message, "chmod 600"));
	write_file(in_dir("loose.key"), RFC_KEY, 0640);
	assert_int_equal(nx_key_load_private(&k, in_dir("loose.key"), &err), NX_EUNSAFE);
	/* ...and it is no public key either. */
	assert_int_equal(nx_key_load_public(&k, in_dir("loose.key"), &err), NX_ECONFIG);

	/* Encrypted key: a clear message, no password prompt. */
	x = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(x);
	f = fopen(in_dir("enc.key"), "w");
	assert_true(PEM_write_PrivateKey(f, x, EVP_aes_256_cbc(), (unsigned char *)"pw", 2,
					 NULL, NULL));
	fclose(f);
	chmod(in_dir("enc.key"), 0600);
	EVP_PKEY_free(x);
	assert_int_equal(nx_key_load_private(&k, in_dir("enc.key"), &err), NX_ECONFIG);
	assert_non_null(strstr(err.message, "encrypted"));

	/* Not Ed25519. */
	x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	f = fopen(in_dir("x.key"), "w");
	assert_true(PEM_write_PrivateKey(f, x, NULL, NULL, 0, NULL, NULL));
	fclose(f);
	chmod(in_dir("x.key"), 0600);
	EVP_PKEY_free(x);
	assert_int_equal(nx_key_load_private(&k, in_dir("x.key"), &err), NX_ECONFIG);
	assert_non_null(strstr(err.message, "ed25519 only"));

	/* Garbage, missing, symlinked, directory. */
	write_file(in_dir("junk.pub"), "hello\n", 0644);
	assert_int_equal(nx_key_load_public(&k, in_dir("junk.pub"), &err), NX_ECONFIG);
	assert_int_equal(nx_key_load_public(&k, in_dir("none.pub"), &err), NX_EIO);
	assert_int_equal(symlink(in_dir("junk.pub"), in_dir("link.pub")), 0);
	assert_int_equal(nx_key_load_public(&k, in_dir("link.pub"), &err), NX_EUNSAFE);
	assert_int_equal(nx_key_load_public(&k, dir, &err), NX_EUNSAFE);
	nx_key_free(NULL);
}

static void oversized_key(void **state)
{
	char *big = malloc(NX_KEY_FILE_MAX + 2);
	nx_key *k = NULL;
	nx_error err;

	memset(big, 'A', NX_KEY_FILE_MAX + 1);
	big[NX_KEY_FILE_MAX + 1] = '\0';
	write_file(in_dir("big.key"), big, 0600);
	assert_int_equal(nx_key_load_private(&k, in_dir("big.key"), &err), NX_ELIMIT);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rfc_key_vector),
		cmocka_unit_test(generate_round_trip),
		cmocka_unit_test(bad_encodings),
		cmocka_unit_test(unsafe_and_wrong_keys),
		cmocka_unit_test(oversized_key),
	};
	return cmocka_run_group_tests_name("sign", tests, setup, teardown);
}
