/* test_oci.c - references, layer media types and the artifact vector of
 * docs/FORMAT.md §8.3 (the network parts are tested end to end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/oci.h"

#include "format_vector.h"

static void sha_hex(char out[2 * NX_SHA256_LEN + 1], const char *buf, size_t len)
{
	unsigned char d[NX_SHA256_LEN];

	assert_int_equal(nx_sha256_buf(d, buf, len), 0);
	nx_hex(out, d);
}

static void artifact_vector(void **state)
{
	char *man = NULL, *cfg = NULL, hex[2 * NX_SHA256_LEN + 1];
	size_t mlen, clen, i;
	nx_manifest *m = NULL;

	(void)state;
	assert_int_equal(nx_manifest_parse(&m, VECTOR, strlen(VECTOR), "v", NULL), 0);
	for (i = 0; i < 2; i++) {   /* the same input, the same bytes */
		assert_int_equal(nx_oci_artifact(&man, &mlen, &cfg, &clen, m, VECTOR,
						 strlen(VECTOR), NULL), 0);
		assert_int_equal(clen, 438);
		sha_hex(hex, cfg, clen);
		assert_string_equal(hex, "389339d23d098c2a9d50e22001971dffdcd27deea9cbd07e413a8c91e55e7349");
		assert_int_equal(mlen, 1169);
		sha_hex(hex, man, mlen);
		assert_string_equal(hex, "fc3e2deab6ad5cf682264d20cdec506a05d4e2c5f57682d25382ea2650b2e62f");
		free(man);
		free(cfg);
	}
	nx_manifest_free(m);
}

static void layer_media(void **state)
{
	(void)state;
	assert_string_equal(nx_oci_layer_media("model/student_model.onnx"),
			    "application/vnd.cncf.model.weight.v1.raw");
	assert_string_equal(nx_oci_layer_media("model/student_model.onnx.data"),
			    "application/vnd.cncf.model.weight.v1.raw");
	assert_string_equal(nx_oci_layer_media("model/tokenizer/vocab.txt"),
			    "application/vnd.cncf.model.weight.config.v1.raw");
	assert_string_equal(nx_oci_layer_media("config/runtime.yaml"),
			    "application/vnd.cncf.model.weight.config.v1.raw");
	assert_string_equal(nx_oci_layer_media("README.md"), "application/vnd.cncf.model.doc.v1.raw");
	assert_string_equal(nx_oci_layer_media("LICENSE"), "application/vnd.cncf.model.doc.v1.raw");
	assert_string_equal(nx_oci_layer_media("README.md.bak"), "application/vnd.cncf.model.code.v1.raw");
	assert_string_equal(nx_oci_layer_media("bin/nexus_cli"), "application/vnd.cncf.model.code.v1.raw");
	assert_string_equal(nx_oci_layer_media("src/inference.py"),
			    "application/vnd.cncf.model.code.v1.raw");
}

static void refs(void **state)
{
	static const struct {
		const char *in, *registry, *repo, *tag, *digest;
	} good[] = {
		{"localhost:5000/a", "localhost:5000", "a", "latest", NULL},
		{"localhost/a/b-c.d_e:v1.0", "localhost", "a/b-c.d_e", "v1.0", NULL},
		{"ghcr.io/org/model@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		 "ghcr.io", "org/model", NULL,
		 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"127.0.0.1:5000/m:t@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		 "127.0.0.1:5000", "m", "t",
		 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	};
	static const char *const bad[] = {
		"", "a", "model/x", "localhost:5000/", "localhost:5000/A", "h.io/a//b", "h.io/a/",
		"h.io/-a", "h.io/a:", "h.io/a:-x", "h.io/a@sha256:E3B0", "h.io/a@md5:00",
		"h.io/a b", "h.io/a:t@", "user@h.io/a",
	};
	nx_oci_ref *r;
	nx_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(nx_oci_ref_parse(&r, good[i].in, &err), 0);
		assert_string_equal(r->registry, good[i].registry);
		assert_string_equal(r->repository, good[i].repo);
		if (good[i].tag)
			assert_string_equal(r->tag, good[i].tag);
		else
			assert_null(r->tag);
		if (good[i].digest)
			assert_string_equal(r->digest, good[i].digest);
		else
			assert_null(r->digest);
		nx_oci_ref_free(r);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = NULL;
		if (nx_oci_ref_parse(&r, bad[i], &err) != NX_EUSAGE)
			fail_msg("reference '%s' was accepted", bad[i]);
		assert_null(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(artifact_vector),
		cmocka_unit_test(layer_media),
		cmocka_unit_test(refs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
