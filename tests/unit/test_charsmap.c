/*
 * test_charsmap.c - verify_charsmap.c: a Precompiled charsmap judged by its
 * grammar.  Tries are built here in the darts-clone layout the runtime
 * reads (src/lib/tokenizer/normalize.c), one 256-unit block per node.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/lib/verify/verify_internal.h"

#define UNITS 8192
#define HAS_LEAF (1u << 8)

struct trie {
	uint32_t unit[UNITS];
	size_t nodes;
	char blob[4096];
	size_t blob_len;
};

static void trie_init(struct trie *t)
{
	memset(t, 0, sizeof(*t));
	t->nodes = 1;
	t->unit[0] = 256u << 10;   /* the root's children start at 256 */
}

/* key -> value (NUL-terminated in the blob). */
static void trie_add(struct trie *t, const char *key, const char *value)
{
	size_t base = 256, q = 0, i;

	for (i = 0; key[i]; i++) {
		unsigned char c = (unsigned char)key[i];

		q = base ^ c;
		if (!t->unit[q]) {
			size_t nb = 256 * ++t->nodes;

			assert_true(nb + 256 <= UNITS);
			t->unit[q] = c | (uint32_t)(q ^ nb) << 10;
		}
		base = q ^ (t->unit[q] >> 10);
	}
	t->unit[q] |= HAS_LEAF;
	t->unit[base] = (1u << 31) | (uint32_t)t->blob_len;
	memcpy(t->blob + t->blob_len, value, strlen(value) + 1);
	t->blob_len += strlen(value) + 1;
}

/* The charsmap bytes: trie size, units (little-endian), blob. */
static unsigned char *trie_bytes(const struct trie *t, size_t *len)
{
	size_t n = 256 * (t->nodes + 1), i;
	unsigned char *raw = malloc(4 + 4 * n + t->blob_len);

	assert_non_null(raw);
	raw[0] = (unsigned char)(4 * n);
	raw[1] = (unsigned char)(4 * n >> 8);
	raw[2] = (unsigned char)(4 * n >> 16);
	raw[3] = 0;
	for (i = 0; i < n; i++) {
		raw[4 + 4 * i] = (unsigned char)t->unit[i];
		raw[5 + 4 * i] = (unsigned char)(t->unit[i] >> 8);
		raw[6 + 4 * i] = (unsigned char)(t->unit[i] >> 16);
		raw[7 + 4 * i] = (unsigned char)(t->unit[i] >> 24);
	}
	memcpy(raw + 4 + 4 * n, t->blob, t->blob_len);
	*len = 4 + 4 * n + t->blob_len;
	return raw;
}

static uint64_t judge(const struct trie *t, struct nx_vfy_charsmap_stats *st, size_t extra,
		      const void *tail)
{
	nx_budget_buf *b = NULL;
	size_t len;
	unsigned char *raw = trie_bytes(t, &len);
	uint64_t residual;

	if (extra) {
		raw = realloc(raw, len + extra);
		assert_non_null(raw);
		memcpy(raw + len, tail, extra);
		len += extra;
	}
	assert_int_equal(nx_budget_buf_new(&b, NULL), 0);
	assert_int_equal(nx_vfy__charsmap_residual(b, raw, len, st, NULL), 0);
	residual = nx_budget_residual(b);
	nx_budget_buf_free(b);
	free(raw);
	return residual;
}

/* NFKC, NFKC + case folding and the nmt rules explain these: nothing charged. */
static void unicode_explains(void **state)
{
	static struct trie t;
	struct nx_vfy_charsmap_stats st;

	(void)state;
	trie_init(&t);
	trie_add(&t, "\xef\xbc\xa1", "A");          /* fullwidth A: NFKC */
	trie_add(&t, "\xef\xbc\xa2", "b");          /* fullwidth B: NFKC + case fold */
	trie_add(&t, "\xef\xac\x81", "fi");         /* the fi ligature */
	trie_add(&t, "e\xcc\x81", "\xc3\xa9");      /* e + combining acute: composed */
	trie_add(&t, "\x01", "");                   /* a control: removed (nmt) */
	trie_add(&t, "\t", " ");                    /* a tab: a space (nmt) */
	trie_add(&t, "\xe2\x80\x8b", "");           /* zero width space (Cf) */
	assert_int_equal(judge(&t, &st, 0, NULL), 0);
	assert_int_equal(st.entries, 7);
	assert_int_equal(st.unexplained, 0);
	assert_int_equal(st.stray_bytes, 0);
	assert_false(st.whole);
}

/* A mapping Unicode does not make is charged its key and value. */
static void other_mappings_are_charged(void **state)
{
	static struct trie t;
	struct nx_vfy_charsmap_stats st;

	(void)state;
	trie_init(&t);
	trie_add(&t, "\xef\xbc\xa1", "A");
	trie_add(&t, "ab", "0123456789abcdef");    /* data, not normalization */
	trie_add(&t, "x", "");                      /* a letter removed: not an nmt rule */
	assert_true(judge(&t, &st, 0, NULL) >= strlen("ab0123456789abcdef") + 1);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.unexplained, 2);
}

/* Bytes the runtime never reads: a blob tail, units no key reaches. */
static void stray_bytes_are_charged(void **state)
{
	static struct trie t;
	struct nx_vfy_charsmap_stats st;
	char tail[100];

	(void)state;
	memset(tail, 'z', sizeof(tail));
	trie_init(&t);
	trie_add(&t, "\xef\xbc\xa1", "A");
	assert_int_equal(judge(&t, &st, sizeof(tail), tail), sizeof(tail));
	assert_int_equal(st.stray_bytes, sizeof(tail));
	t.unit[256 * t.nodes + 7] = 0xdeadbeef;     /* inside the trie, unreached */
	assert_int_equal(judge(&t, &st, 0, NULL), 4);
	assert_int_equal(st.stray_bytes, 4);
}

/* A trie the walk cannot finish, or no trie at all, is charged whole. */
static void broken_tries_are_charged_whole(void **state)
{
	static struct trie t;
	struct nx_vfy_charsmap_stats st;
	nx_budget_buf *b = NULL;
	unsigned char bad[8] = { 3, 0, 0, 0, 1, 2, 3, 4 };   /* trie size not a multiple of 4 */
	size_t len;

	(void)state;
	trie_init(&t);
	trie_add(&t, "a", "b");
	/* a's child block points back at the root's: keys a, aa, aaa, ... */
	t.unit[256 ^ 'a'] = 'a' | HAS_LEAF | (uint32_t)((256 ^ 'a') ^ 256) << 10;
	t.unit[256] = 1u << 31;
	free(trie_bytes(&t, &len));
	/* whole, beside what the walk charged before it stopped */
	assert_true(judge(&t, &st, 0, NULL) >= len);
	assert_true(st.whole);
	assert_int_equal(nx_budget_buf_new(&b, NULL), 0);
	assert_int_equal(nx_vfy__charsmap_residual(b, bad, sizeof(bad), &st, NULL), 0);
	assert_true(st.whole);
	assert_int_equal(nx_budget_residual(b), sizeof(bad));
	nx_budget_buf_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(unicode_explains),
		cmocka_unit_test(other_mappings_are_charged),
		cmocka_unit_test(stray_bytes_are_charged),
		cmocka_unit_test(broken_tries_are_charged_whole),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
