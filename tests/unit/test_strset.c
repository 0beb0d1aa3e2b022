/* test_strset.c - the keyed hash (SipHash-2-4) and the string set. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include "nexus/error.h"
#include "../../src/util/strset_int.h"

/* OpenSSL's SipHash-2-4 (EVP_MAC "SIPHASH", 8-byte output) of a || b. */
static uint64_t openssl_siphash(const unsigned char key[16], const void *a, size_t alen,
				const void *b, size_t blen)
{
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	size_t size = 8, outl = 0;
	OSSL_PARAM params[] = { OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
				OSSL_PARAM_END };
	unsigned char out[8];
	uint64_t v = 0;
	int i;

	assert_non_null(ctx);
	assert_true(EVP_MAC_init(ctx, key, 16, params));
	assert_true(EVP_MAC_update(ctx, a, alen));
	assert_true(EVP_MAC_update(ctx, b, blen));
	assert_true(EVP_MAC_final(ctx, out, &outl, sizeof(out)));
	assert_int_equal(outl, 8);
	for (i = 7; i >= 0; i--)
		v = v << 8 | out[i];
	EVP_MAC_CTX_free(ctx);
	EVP_MAC_free(mac);
	return v;
}

/* The paper's vector (key 00..0f, message 00..0e) and OpenSSL on every
 * length 0..64 split at every point: the two-piece form is one message. */
static void siphash_matches_openssl(void **state)
{
	unsigned char key[16], msg[64];
	size_t n, cut;
	int i;

	(void)state;
	for (i = 0; i < 16; i++)
		key[i] = (unsigned char)i;
	for (i = 0; i < 64; i++)
		msg[i] = (unsigned char)(i * 7 + 3);
	{
		unsigned char m15[15];

		for (i = 0; i < 15; i++)
			m15[i] = (unsigned char)i;
		assert_true(nx_siphash24(key, m15, 15, NULL, 0) == 0xa129ca6149be45e5ull);
	}
	for (n = 0; n <= sizeof(msg); n++)
		for (cut = 0; cut <= n; cut++)
			assert_true(nx_siphash24(key, msg, cut, msg + cut, n - cut) ==
				    openssl_siphash(key, msg, cut, msg + cut, n - cut));
}

/* The process key is fixed for the process and not zero. */
static void keyhash_is_keyed(void **state)
{
	unsigned char zero[16] = { 0 };

	(void)state;
	assert_true(nx_keyhash("abc", 3, NULL, 0) == nx_keyhash("ab", 2, "c", 1));
	assert_true(nx_keyhash("abc", 3, NULL, 0) != nx_siphash24(zero, "abc", 3, NULL, 0));
}

static void set_add_find_release(void **state)
{
	struct strset s = { 0 };
	char name[32];
	bool added;
	int i;

	(void)state;
	assert_null(nx_strset_find(&s, "x", 1));
	assert_false(nx_strset_has(&s, "x"));
	for (i = 0; i < 5000; i++) {
		snprintf(name, sizeof(name), "n%d", i);
		assert_int_equal(nx_strset_add(&s, name, &added), 0);
		assert_true(added);
	}
	assert_int_equal(nx_strset_add(&s, "n42", &added), 0);
	assert_false(added);
	assert_int_equal(s.n, 5000);
	assert_true(s.cap >= 2 * s.n);
	assert_string_equal(nx_strset_find(&s, "n42xyz", 3), "n42");
	assert_string_equal(nx_strset_find(&s, "n4", 2), "n4");
	assert_null(nx_strset_find(&s, "n", 1));
	assert_true(nx_strset_has(&s, "n4999"));
	assert_false(nx_strset_has(&s, "n5000"));
	assert_false(nx_strset_has(&s, ""));
	nx_strset_release(&s);
	assert_null(s.slots);
	assert_int_equal(s.n, 0);
	nx_strset_release(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(siphash_matches_openssl),
		cmocka_unit_test(keyhash_is_keyed),
		cmocka_unit_test(set_add_find_release),
	};
	return cmocka_run_group_tests_name("strset", tests, NULL, NULL);
}
