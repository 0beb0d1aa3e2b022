/* test_tokenizer_models.c - the tokenizer.json engine: BPE, Unigram, WordLevel,
 * pre-tokenizers, pairs, truncation, padding, and what a build must refuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/tokenizer.h"

static nx_tokenizer *load(const char *json)
{
	nx_tokenizer *t = NULL;
	nx_error e;

	if (nx_tokenizer_parse_json(&t, json, strlen(json), "tokenizer.json", &e))
		fail_msg("%s", e.message);
	return t;
}

/* Encode a (pair) and compare ids, and type ids when want_types is given. */
static void check(nx_tokenizer *t, const char *a, const char *b, size_t max, const int64_t *want,
		  const int64_t *want_types)
{
	int64_t ids[64], types[64], mask[64], special[64];
	size_t n = 0, i;
	nx_error e;

	if (nx_tokenizer_encode_pair(t, a, strlen(a), b, b ? strlen(b) : 0, max, ids, types, mask,
				     special, &n, &e))
		fail_msg("'%s': %s", a, e.message);
	for (i = 0; want[i] >= 0; i++) {
		if (i >= n)
			fail_msg("'%s': %zu ids, expected more", a, n);
		if (ids[i] != want[i])
			fail_msg("'%s': id %zu is %lld, expected %lld", a, i, (long long)ids[i],
				 (long long)want[i]);
		if (want_types && types[i] != want_types[i])
			fail_msg("'%s': type id %zu is %lld, expected %lld", a, i, (long long)types[i],
				 (long long)want_types[i]);
	}
	assert_int_equal(n, i);
}

#define IDS(...) ((const int64_t[]){ __VA_ARGS__, -1 })
#define CHECK(t, a, ...) check(t, a, NULL, 64, IDS(__VA_ARGS__), NULL)

static const char BPE[] =
	"{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": %s,"
	" \"byte_fallback\": %s, \"vocab\": {\"<unk>\": 0, \"a\": 1, \"b\": 2, \"c\": 3, \"ab\": 4,"
	" \"abc\": 5, \"bc\": 6, \"<0x7A>\": 7, \"\\u2581\": 8, \"\\u2581a\": 9},"
	" \"merges\": [\"a b\", \"ab c\", \"b c\", [\"\\u2581\", \"a\"]]}, %s}";

static nx_tokenizer *bpe(const char *fuse, const char *fallback, const char *rest)
{
	char buf[2048];

	snprintf(buf, sizeof(buf), BPE, fuse, fallback, rest);
	return load(buf);
}

static void bpe_merges_by_rank(void **state)
{
	nx_tokenizer *t = bpe("false", "false", "\"pre_tokenizer\": {\"type\": \"WhitespaceSplit\"}");

	CHECK(t, "abc", 5);          /* a b -> ab (rank 0), ab c -> abc (rank 1) */
	CHECK(t, "bca", 6, 1);       /* only b c applies */
	CHECK(t, "abab c", 4, 4, 3);
	CHECK(t, "xyab", 0, 0, 4);   /* unknowns not fused */
	nx_tokenizer_free(t);
	t = bpe("true", "false", "\"pre_tokenizer\": null");
	CHECK(t, "xyab", 0, 4);      /* fused */
	nx_tokenizer_free(t);
	t = bpe("true", "true", "\"pre_tokenizer\": null");
	/* z has a byte token, x does not; as in HF, the pending unknown is only
	 * written at the next known character, after z's byte token */
	CHECK(t, "xzab", 7, 0, 4);
	nx_tokenizer_free(t);
}

static void metaspace_and_normalizers(void **state)
{
	nx_tokenizer *t = bpe("true", "false",
		"\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"Lowercase\"},"
		" {\"type\": \"Replace\", \"pattern\": {\"Regex\": \"[0-9]+\"}, \"content\": \"c\"}]},"
		" \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"\\u2581\","
		" \"prepend_scheme\": \"always\", \"split\": true}");

	CHECK(t, "A B", 9, 8, 2);    /* "▁a" "▁b": ▁b does not merge */
	CHECK(t, "ab12", 8, 5);      /* 12 -> c: "▁abc" = ▁ + abc */
	nx_tokenizer_free(t);
}

static void split_behaviors(void **state)
{
	static const struct {
		const char *behavior, *invert, *pattern, *text;
		int64_t want[8];
	} cases[] = {
		{ "Removed", "false", "c", "acb", { 1, 2, -1 } },
		{ "Removed", "true", "c", "acb", { 3, -1 } },
		{ "Isolated", "false", "c", "abcab", { 4, 3, 4, -1 } },
		{ "MergedWithPrevious", "false", "c", "abcab", { 5, 4, -1 } },
		{ "MergedWithNext", "false", "a", "bab", { 2, 4, -1 } },
		{ "Contiguous", "false", "c", "accab", { 1, 3, 3, 4, -1 } },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char rest[512];
		nx_tokenizer *t;

		snprintf(rest, sizeof(rest), "\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\":"
			 " {\"String\": \"%s\"}, \"behavior\": \"%s\", \"invert\": %s}",
			 cases[i].pattern, cases[i].behavior, cases[i].invert);
		t = bpe("true", "false", rest);
		check(t, cases[i].text, NULL, 64, cases[i].want, NULL);
		nx_tokenizer_free(t);
	}
}

static void bytelevel_gpt2(void **state)
{
	/* "Ġ" is the byte-level form of a space */
	nx_tokenizer *t = load(
		"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"h\": 0, \"i\": 1, \"\\u0120\": 2,"
		" \"\\u0120h\": 3, \"hi\": 4, \"\\u0120hi\": 5, \"!\": 6},"
		" \"merges\": [\"h i\", \"\\u0120 hi\"]},"
		" \"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true,"
		" \"use_regex\": true}, \"added_tokens\": [{\"id\": 7, \"content\": \"<|e|>\","
		" \"special\": true, \"normalized\": false}]}");

	CHECK(t, "hi hi!", 5, 5, 6);
	CHECK(t, "hi<|e|>hi", 5, 7, 5);  /* prefix space on each segment */
	nx_tokenizer_free(t);
}

static void unigram_viterbi(void **state)
{
	nx_tokenizer *t = load(
		"{\"model\": {\"type\": \"Unigram\", \"unk_id\": 0, \"vocab\": [[\"<unk>\", 0],"
		" [\"a\", -1], [\"b\", -1], [\"ab\", -1.5], [\"abc\", -5], [\"c\", -2], [\"bc\", -1]]}}");

	CHECK(t, "ab", 3);       /* -1.5 beats -2 */
	CHECK(t, "abc", 1, 6);   /* a + bc = -2 beats abc = -5 and ab + c = -3.5 */
	CHECK(t, "xxa", 0, 1);   /* unknowns fused */
	nx_tokenizer_free(t);
}

static const char PAIR[] =
	"{\"model\": {\"type\": \"WordLevel\", \"unk_token\": \"u\", \"vocab\": {\"u\": 0, \"a\": 1,"
	" \"b\": 2, \"[C]\": 3, \"[S]\": 4, \"[P]\": 5}},"
	" \"pre_tokenizer\": {\"type\": \"Whitespace\"},"
	" \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\":"
	" {\"id\": \"[C]\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}},"
	" {\"SpecialToken\": {\"id\": \"[S]\", \"type_id\": 0}}], \"pair\": [{\"SpecialToken\":"
	" {\"id\": \"[C]\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}},"
	" {\"SpecialToken\": {\"id\": \"[S]\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"B\","
	" \"type_id\": 1}}, {\"SpecialToken\": {\"id\": \"[S]\", \"type_id\": 1}}],"
	" \"special_tokens\": {\"[C]\": {\"id\": \"[C]\", \"ids\": [3], \"tokens\": [\"[C]\"]},"
	" \"[S]\": {\"id\": \"[S]\", \"ids\": [4], \"tokens\": [\"[S]\"]}}}%s}";

static nx_tokenizer *pair_tok(const char *extra)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), PAIR, extra);
	return load(buf);
}

static void pairs_truncation_padding(void **state)
{
	nx_tokenizer *t = pair_tok("");
	int64_t ids[64], types[64], mask[64], special[64];
	size_t n;

	check(t, "a a", "b", 64, IDS(3, 1, 1, 4, 2, 4), IDS(0, 0, 0, 0, 1, 1));
	/* longest_first: 8 - 3 specials = 5 for "a a a a" (4) + "b b b" (3): 3 and 2 */
	check(t, "a a a a", "b b b", 8, IDS(3, 1, 1, 1, 4, 2, 2, 4), NULL);
	nx_tokenizer_free(t);
	t = pair_tok(", \"truncation\": {\"max_length\": 6, \"strategy\": \"OnlySecond\","
		     " \"direction\": \"Left\", \"stride\": 0}, \"padding\": {\"strategy\":"
		     " {\"Fixed\": 10}, \"direction\": \"Left\", \"pad_id\": 5, \"pad_type_id\": 2,"
		     " \"pad_to_multiple_of\": 4}");
	assert_int_equal(nx_tokenizer_encode_pair(t, "a", 1, "a b b", 5, 64, ids, types, mask,
						  special, &n, NULL), 0);
	assert_int_equal(n, 12);  /* 10 rounded up to a multiple of 4 */
	assert_int_equal(ids[0], 5);
	assert_int_equal(types[0], 2);
	assert_int_equal(mask[5], 0);
	assert_int_equal(special[5], 1);
	assert_int_equal(mask[6], 1);
	/* only_second, from the left: "a b b" keeps its last 2 */
	assert_int_equal(ids[6], 3);
	assert_int_equal(ids[8], 4);
	assert_int_equal(ids[9], 2);
	assert_int_equal(ids[10], 2);
	assert_int_equal(types[10], 1);
	assert_int_equal(nx_tokenizer_pad_id(t), 5);
	assert_int_equal(nx_tokenizer_pad_type_id(t), 2);
	assert_int_equal(nx_tokenizer_pad_left(t), 1);
	/* only_second without a pair cannot truncate: an error, not a crash */
	assert_int_equal(nx_tokenizer_encode_pair(t, "a a a a a a a", 13, NULL, 0, 64, ids, NULL,
						  NULL, NULL, &n, NULL), NX_EUSAGE);
	nx_tokenizer_free(t);
}

static void lookups(void **state)
{
	nx_tokenizer *t = bpe("true", "false",
		"\"added_tokens\": [{\"id\": 10, \"content\": \"<s>\", \"special\": true,"
		" \"normalized\": false}, {\"id\": 11, \"content\": \"xy\", \"special\": false,"
		" \"normalized\": true}], \"decoder\": {\"type\": \"Fuse\"}");
	size_t len = 0;
	const char *s = nx_tokenizer_id_to_token(t, 4, &len);

	assert_non_null(s);
	assert_int_equal(len, 2);
	assert_memory_equal(s, "ab", 2);
	s = nx_tokenizer_id_to_token(t, 10, &len);
	assert_int_equal(len, 3);
	assert_null(nx_tokenizer_id_to_token(t, 99, &len));
	assert_int_equal(nx_tokenizer_token_to_id(t, "<s>", 3), 10);
	assert_int_equal(nx_tokenizer_token_to_id(t, "abc", 3), 5);
	assert_int_equal(nx_tokenizer_token_to_id(t, "zz", 2), -1);
	assert_int_equal(nx_tokenizer_is_special(t, 10), 1);
	assert_int_equal(nx_tokenizer_is_special(t, 11), 0);
	assert_int_equal(nx_tokenizer_is_special(t, 5), 0);
	assert_non_null(nx_tokenizer_decoder_json(t));
	CHECK(t, "ab<s>xyc", 4, 10, 11, 3);
	nx_tokenizer_free(t);
}

/* Bad files: a clear error naming the JSON path, never a crash. */
static void refused_at_load(void **state)
{
	static const struct { const char *json, *named; } cases[] = {
		{ "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
		  "model.merges[0]" },
		{ "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}",
		  "model.vocab" },
		{ "{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}}",
		  "model.dropout" },
		{ "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"pre_tokenizer\": {\"type\":"
		  " \"Split\", \"pattern\": {\"Regex\": \"(a\"}, \"behavior\": \"Isolated\"}}",
		  "pre_tokenizer.pattern" },
		{ "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"pre_tokenizer\": {\"type\":"
		  " \"Sequence\", \"pretokenizers\": [{\"type\": \"Sequence\", \"pretokenizers\": ["
		  "{\"type\": \"UnicodeScripts\"}]}]}}",
		  "pre_tokenizer.pretokenizers[0].pretokenizers[0].type" },
		{ "{\"model\": {\"type\": \"Unigram\", \"unk_id\": 5, \"vocab\": [[\"a\", 0]]}}",
		  "model.unk_id" },
		{ "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"normalizer\": {\"type\":"
		  " \"Precompiled\", \"precompiled_charsmap\": \"AAAA\"}}",
		  "normalizer.precompiled_charsmap" },
	};
	char deep[4096];
	size_t i, k, n = 0;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		nx_tokenizer *t = NULL;
		nx_error e;

		assert_int_equal(nx_tokenizer_parse_json(&t, cases[i].json, strlen(cases[i].json),
							 "tok.json", &e), NX_ECONFIG);
		if (!strstr(e.message, cases[i].named) || !strstr(e.message, "tok.json"))
			fail_msg("'%s' does not name '%s'", e.message, cases[i].named);
		assert_null(t);
	}
	/* Sequences nested 40 deep */
	n += (size_t)snprintf(deep + n, sizeof(deep) - n,
			      "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}, \"normalizer\": ");
	for (k = 0; k < 40; k++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n,
				      "{\"type\": \"Sequence\", \"normalizers\": [");
	n += (size_t)snprintf(deep + n, sizeof(deep) - n, "{\"type\": \"NFC\"}");
	for (k = 0; k < 40; k++)
		n += (size_t)snprintf(deep + n, sizeof(deep) - n, "]}");
	snprintf(deep + n, sizeof(deep) - n, "}");
	{
		nx_tokenizer *t = NULL;
		nx_error e;

		assert_int_equal(nx_tokenizer_parse_json(&t, deep, strlen(deep), "tok.json", &e),
				 NX_ECONFIG);
		assert_non_null(strstr(e.message, "nested"));
	}
}

/* A regex that backtracks catastrophically stops at the match limit. */
static void regex_never_hangs(void **state)
{
	nx_tokenizer *t = load(
		"{\"model\": {\"type\": \"WordLevel\", \"unk_token\": \"u\", \"vocab\": {\"u\": 0}},"
		" \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a+)+$\"},"
		" \"behavior\": \"Isolated\"}}");
	char text[64];
	int64_t ids[64];
	size_t n;
	nx_error e;

	memset(text, 'a', 40);
	text[40] = '!';
	alarm(60);
	assert_int_equal(nx_tokenizer_encode(t, text, 41, 64, ids, &n, &e), NX_ELIMIT);
	alarm(0);
	assert_non_null(strstr(e.message, "regex"));
	nx_tokenizer_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bpe_merges_by_rank),
		cmocka_unit_test(metaspace_and_normalizers),
		cmocka_unit_test(split_behaviors),
		cmocka_unit_test(bytelevel_gpt2),
		cmocka_unit_test(unigram_viterbi),
		cmocka_unit_test(pairs_truncation_padding),
		cmocka_unit_test(lookups),
		cmocka_unit_test(refused_at_load),
		cmocka_unit_test(regex_never_hangs),
	};
	return cmocka_run_group_tests_name("tokenizer_models", tests, NULL, NULL);
}
