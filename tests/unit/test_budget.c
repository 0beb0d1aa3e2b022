/* test_budget.c - the leak budget's measure: tokens judged as tokens, and
 * residuals charged their zstd-compressed size. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/budget.h"

static bool plausible(const char *s)
{
	return nx_budget_token_plausible(s, strlen(s));
}

/* Tokens of real WordPiece, byte-level BPE and SentencePiece vocabularies. */
static void real_tokens_are_explained(void **state)
{
	static const char *const ok[] = {
		"the", "##ing", "##s", "play", "Hello", "USA", "don't", "n't", "1999", "42",
		"...", "!", "é", "café", "naïve", "strasse", "straße", "größe", "français", "niño", "\xC4\xA0the",
		"\xC4\xA0Hello", "\xE2\x96\x81world", "[CLS]", "[unused12]", "<s>", "</s>",
		"<|endoftext|>", "<pad>", "中", "中文", "日本語",
		/* CJK and Hangul pieces of a Unigram trained on Debian's message
		 * catalogues (the character model never saw those) */
		"无法打开", "\xE2\x96\x81无法为", "未合併的檔案", "人間が読みやすい形式", "インデックス",
		"現在のトランザクションを", "사용자", "\xE2\x96\x81파일", "日本語中文字", "при", "Мир", "αβγ", "😀", "##😀", "i̇", "understanding", "through",
		"mortgage", "subscribe", "##ization", "##able", "",
		/* red team 5's rules keep these */
		"<|im_start|>", "<extra_id_12>", "[unused993]", "<|eot_id|>", "<mask>", "[MASK]",
		"Vi\xE1\xBB\x87t", "Vie\xCC\xA3\xCC\x82t", "\xE2\x80\x94", "\xE2\x80\xA6", "?!",
		"\xC2\xBB.", "\xEF\xBC\x88", "\xD9\xA1\xD9\xA2\xD9\xA3", "\xEF\xBC\x92\xEF\xBC\x90",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(ok) / sizeof(*ok); i++)
		if (!plausible(ok[i]))
			fail_msg("'%s' is a real token but was judged implausible", ok[i]);
}

/* Slices of encoded data, in the spellings the red team used. */
static void encoded_tokens_are_charged(void **state)
{
	static const char *const bad[] = {
		"aGVsbG8", "##aGVsbG8", "-QUJDRA", "_x9fQ", "3fa0", "0x3f", "a1b2",
		"X>9?z", "Fz(1", "qxmwzt", "bcdfgh", "zkqjvx", "pqtwxz", "ПрИвЕт", "abcпр",
		"HeLLo", "aBcD", "12345", "++--//", "鼃鼁鼂鼄", "龘靐齉爩麤", "жщфвпо", "λόγοςαβ", "éàüõ", "ąęćłń", "##ñãçõ", "##qxzvbt", "abc'de'f",
		"wWwWw", "tsktsktsk",
		/* red team 5: marks, special names, private use, mixed digits */
		"a\xCC\x80\xCC\x81\xCC\x82", "[QxZkWmPvRtYbNcLdJfHg]", "<qzxwvkj_pfmt>",
		"[unused123456]", "\xEE\x80\x80", "\xF3\xB0\x80\x81\xF3\xB0\x80\x82",
		"1\xD9\xA2" "3",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		if (plausible(bad[i]))
			fail_msg("'%s' is encoded data but was judged a plausible token", bad[i]);
}

/* Made-up words of 3 CJK ideographs (14 bits each, the strict xfail of
 * the last stop) or 3 Hangul syllables: the character model charges
 * nearly all of them. */
static void made_up_cjk_words_are_charged(void **state)
{
	static const struct { unsigned base, range, min_charged; } kinds[] = {
		{0x4E00, 0x4000, 995}, {0xAC00, 11172, 950},
	};
	unsigned seed = 4242, a, i, k, charged;
	char w[16];

	(void)state;
	for (a = 0; a < 2; a++) {
		charged = 0;
		for (i = 0; i < 1000; i++) {
			char *p = w;

			for (k = 0; k < 3; k++) {
				unsigned cp;

				seed = seed * 1103515245u + 12345u;
				cp = kinds[a].base + (seed >> 8) % kinds[a].range;
				*p++ = (char)(0xE0 | cp >> 12);
				*p++ = (char)(0x80 | (cp >> 6 & 0x3F));
				*p++ = (char)(0x80 | (cp & 0x3F));
			}
			charged += !nx_budget_token_plausible(w, (size_t)(p - w));
		}
		if (charged < kinds[a].min_charged)
			fail_msg("only %u of 1000 made-up words from U+%04X were charged", charged,
				 kinds[a].base);
	}
}

/* Hex in a random digit-free alphabet, cut into word-sized pieces: most
 * pieces must be charged (docs/TRV.md states the share that slips). */
static void digit_free_hex_words_are_mostly_charged(void **state)
{
	static const char alpha[] = "qwrtpsdfghjklzxc";   /* 16 letters, one vowel-free */
	static const char alpha2[] = "aeioubcdfgklmnrt";  /* 16 letters with vowels */
	const char *alphabets[] = {alpha, alpha2};
	unsigned seed = 12345, a, i, charged;
	char w[9];

	(void)state;
	for (a = 0; a < 2; a++) {
		charged = 0;
		for (i = 0; i < 1000; i++) {
			unsigned len = 3 + i % 6, k;

			for (k = 0; k < len; k++) {
				seed = seed * 1103515245u + 12345u;
				w[k] = alphabets[a][(seed >> 16) & 15];
			}
			w[len] = '\0';
			charged += !plausible(w);
		}
		if (charged < (a ? 700u : 950u))
			fail_msg("alphabet %s: only %u of 1000 random words charged", alphabets[a],
				 charged);
	}
}

static uint64_t cost_of(const char *s, size_t len, bool tokens);

/* The free part of a token does not grow with its length: a word is free
 * up to its 12th letter, a CJK or Hangul token up to its 8th character,
 * and the rest is charged (issue 22: 16 free characters carried 93 bits,
 * tests/e2e/test_cjk_budget.py). */
static void long_tokens_are_free_only_up_to_a_cap(void **state)
{
	static const struct { const char *tok; size_t free; } cases[] = {
		{"mortgage", 8}, {"understand", 10}, {"understanding", 12},
		{"##internationalization", 14}, {"\xE2\x96\x81understanding", 15},
		{"\xC4\xA0Internationalization", 14},
		{"无法打开", 12}, {"インデックス", 18}, {"人間が読みやすい形式", 24},
		{"\xE2\x96\x81現在のトランザクションを", 27},
		{"사용자", 9}, {"aGVsbG8", 0}, {"", 0}, {"[unused12]", 10}, {"1999", 4},
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		size_t got = nx_budget_token_free(cases[i].tok, strlen(cases[i].tok));

		if (got != cases[i].free)
			fail_msg("'%s': %zu bytes free, expected %zu", cases[i].tok, got,
				 cases[i].free);
	}
	/* what is past the cap is charged, what is within it is not */
	assert_int_equal(cost_of("understand", 10, true), 0);
	assert_true(cost_of("understanding", 13, true) > 0);
	assert_true(cost_of("人間が読みやすい形式", strlen("人間が読みやすい形式"), true) > 0);
}

/* The free first 12 letters of a long word must read like a word on their
 * own: judged only as a whole, 12 random letters and a cheap repeated tail
 * ("thethethe...") passed 66% of the time, and 4,000 such tokens were
 * charged 26 bytes (review of stop 18; a trivial encoder, 54 bits a token). */
static void a_long_words_free_part_reads_like_a_word(void **state)
{
	static const char tail[] = "thethethethethethethethe";
	char tok[64];
	unsigned x = 12345u;
	size_t i, k, tried = 0, free_ones = 0;

	(void)state;
	for (i = 0; i < 4000 && tried < 300; i++) {
		for (k = 0; k < 12; k++) {
			x = x * 1103515245u + 12345u;
			tok[k] = (char)('a' + (x >> 16) % 26);
		}
		/* only prefixes that are not a plausible token on their own */
		if (nx_budget_token_plausible(tok, 12))
			continue;
		memcpy(tok + 12, tail, sizeof(tail));
		tried++;
		free_ones += nx_budget_token_free(tok, strlen(tok)) > 0;
	}
	assert_int_equal(tried, 300);
	assert_int_equal(free_ones, 0);
	/* a real long word is still free up to its cap */
	assert_int_equal(nx_budget_token_free("understanding", 13), 12);
}

static uint64_t cost_of(const char *s, size_t len, bool tokens)
{
	nx_budget_buf *b = NULL;
	uint64_t cost = 0;

	assert_int_equal(nx_budget_buf_new(&b, NULL), 0);
	if (tokens)
		assert_int_equal(nx_budget_add_token(b, s, len, NULL, NULL), 0);
	else
		assert_int_equal(nx_budget_add(b, s, len, NULL), 0);
	assert_int_equal(nx_budget_cost(&cost, b, NULL), 0);
	nx_budget_buf_free(b);
	return cost;
}

/* Random bytes do not compress: their charge is at least their size, in
 * any encoding; text that repeats itself costs little. */
static void random_bytes_cost_their_size(void **state)
{
	enum { N = 32768 };
	unsigned char *raw = malloc(N);
	char *hex = malloc(2 * N + 1);
	unsigned seed = 7;
	size_t i;
	uint64_t c;

	(void)state;
	assert_non_null(raw);
	assert_non_null(hex);
	for (i = 0; i < N; i++) {
		seed = seed * 1103515245u + 12345u;
		raw[i] = (unsigned char)(seed >> 16);
	}
	c = cost_of((const char *)raw, N, false);
	assert_true(c >= N);
	for (i = 0; i < N; i++) {
		hex[2 * i] = "qwrtpsdfghjklzxc"[raw[i] >> 4];
		hex[2 * i + 1] = "qwrtpsdfghjklzxc"[raw[i] & 15];
	}
	c = cost_of(hex, 2 * N, false);
	assert_true(c >= N * 99 / 100);
	memset(hex, 'a', 2 * N);
	assert_true(cost_of(hex, 2 * N, false) < 100);
	assert_int_equal(cost_of("", 0, false), 0);
	/* a plausible token costs nothing, an implausible one is charged */
	assert_int_equal(cost_of("hello", 5, true), 0);
	assert_true(cost_of("aGVsbG8", 7, true) > 0);
	free(raw);
	free(hex);
}

/* Past NX_BUDGET_RESIDUAL_MAX the residual is charged raw, never less. */
static void overflow_is_charged_raw(void **state)
{
	nx_budget_buf *b = NULL;
	char *chunk = calloc(1, 1 << 20);
	uint64_t cost = 0;
	size_t i;

	(void)state;
	assert_non_null(chunk);
	assert_int_equal(nx_budget_buf_new(&b, NULL), 0);
	for (i = 0; i < NX_BUDGET_RESIDUAL_MAX / (1 << 20) + 2; i++)
		assert_int_equal(nx_budget_add(b, chunk, 1 << 20, NULL), 0);
	assert_int_equal(nx_budget_residual(b), NX_BUDGET_RESIDUAL_MAX + (2u << 20));
	assert_int_equal(nx_budget_cost(&cost, b, NULL), 0);
	assert_true(cost >= 2u << 20);
	nx_budget_buf_free(b);
	nx_budget_buf_free(NULL);
	free(chunk);
}

/* The mirror gets every plain append, not the tokens' charges: it is the
 * residual the vocabulary stream does not give back (tier 1's relief
 * never goes below its cost). */
static void mirror_holds_all_but_token_charges(void **state)
{
	nx_budget_buf *b = NULL, *m = NULL, *s = NULL;
	const char *data;
	size_t len;
	bool charged;

	(void)state;
	assert_int_equal(nx_budget_buf_new(&b, NULL), 0);
	assert_int_equal(nx_budget_buf_new(&m, NULL), 0);
	assert_int_equal(nx_budget_buf_new(&s, NULL), 0);
	nx_budget_set_mirror(b, m);
	assert_int_equal(nx_budget_add(b, "ab", 2, NULL), 0);
	assert_int_equal(nx_budget_add_token(b, "Zq9x+Yw/", 8, &charged, NULL), 0);
	assert_true(charged);
	assert_int_equal(nx_budget_add(b, "cd", 2, NULL), 0);
	assert_int_equal(nx_budget_residual(b), 2 + 9 + 2);
	data = nx_budget_data(m, &len);
	assert_int_equal(len, 4);
	assert_memory_equal(data, "abcd", 4);
	/* varints, low 7 bits first; append keeps what did not fit */
	assert_int_equal(nx_budget_add_varint(s, 1, NULL), 0);
	assert_int_equal(nx_budget_add_varint(s, 300, NULL), 0);
	assert_int_equal(nx_budget_append(s, m, NULL), 0);
	data = nx_budget_data(s, &len);
	assert_int_equal(len, 1 + 2 + 4);
	assert_memory_equal(data, "\x01\xac\x02" "abcd", 7);
	nx_budget_buf_free(s);
	nx_budget_buf_free(m);
	nx_budget_buf_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(real_tokens_are_explained),
		cmocka_unit_test(encoded_tokens_are_charged),
		cmocka_unit_test(made_up_cjk_words_are_charged),
		cmocka_unit_test(digit_free_hex_words_are_mostly_charged),
		cmocka_unit_test(random_bytes_cost_their_size),
		cmocka_unit_test(overflow_is_charged_raw),
		cmocka_unit_test(long_tokens_are_free_only_up_to_a_cap),
		cmocka_unit_test(a_long_words_free_part_reads_like_a_word),
		cmocka_unit_test(mirror_holds_all_but_token_charges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
