/*
 * test_tokdecode.c - the decoders' edge cases, with the answers of Hugging
 * Face's Rust code worked out by hand (the e2e matrix, test_tok_matrix.py,
 * compares thousands of random sequences with the npm package itself).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/tokdecode.h"
#include "nexus/tokenizer.h"

/* ids: [UNK] 0, [CLS] 1 (special), a 2, ##b 3, ▁x 4, <0xE2> 5, <0x82> 6, <0xAC> 7,
 * Ġ 8, â 9, <pad> 10, | 11, c 12, . 13, ▁ 14, Ĥ 15 */
static const char VOCAB[] =
	"\"[UNK]\": 0, \"[CLS]\": 1, \"a\": 2, \"##b\": 3, \"\xe2\x96\x81x\": 4, \"<0xE2>\": 5,"
	" \"<0x82>\": 6, \"<0xAC>\": 7, \"\xc4\xa0\": 8, \"\xc3\xa2\": 9, \"<pad>\": 10, \"|\": 11,"
	" \"c\": 12, \".\": 13, \"\xe2\x96\x81\": 14, \"\xc4\xa4\": 15";

static nx_tokenizer *tok_with(const char *decoder)
{
	char buf[2048];
	nx_tokenizer *t = NULL;
	nx_error e;

	snprintf(buf, sizeof(buf),
		 "{\"added_tokens\": [{\"id\": 1, \"content\": \"[CLS]\", \"special\": true}],"
		 " \"normalizer\": null, \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
		 " \"post_processor\": null, \"decoder\": %s, \"model\": {\"type\": \"WordPiece\","
		 " \"unk_token\": \"[UNK]\", \"vocab\": {%s}}}", decoder, VOCAB);
	if (nx_tokenizer_parse_json(&t, buf, strlen(buf), "tokenizer.json", &e))
		fail_msg("%s", e.message);
	return t;
}

static void expect(const char *decoder, const int64_t *ids, size_t n, bool skip, const char *want)
{
	nx_tokenizer *t = tok_with(decoder);
	nx_tokdecoder *d = NULL;
	char *s = NULL;
	size_t len = 0;
	nx_error e;

	if (nx_tokdecoder_new(&d, t, "tokenizer.json", &e))
		fail_msg("%s", e.message);
	assert_int_equal(nx_tokdecoder_decode(d, ids, n, skip, &s, &len, &e), 0);
	if (len != strlen(want) || memcmp(s, want, len))
		fail_msg("%s: got '%s', expected '%s'", decoder, s, want);
	free(s);
	nx_tokdecoder_free(d);
	nx_tokenizer_free(t);
}

#define IDS(...) (const int64_t[]){ __VA_ARGS__ }, sizeof((const int64_t[]){ __VA_ARGS__ }) / 8

static void wordpiece_cleanup_and_skip(void **state)
{
	const char *wp = "{\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": true}";

	expect(wp, IDS(1, 2, 3, 2, 13), false, "[CLS] ab a.");
	expect(wp, IDS(1, 2, 3, 2, 13), true, "ab a.");
	expect("{\"type\": \"WordPiece\", \"prefix\": \"##\", \"cleanup\": false}",
	       IDS(2, 13), false, "a .");
}

static void byte_fallback_valid_and_not(void **state)
{
	const char *bf = "{\"type\": \"ByteFallback\"}";

	expect(bf, IDS(5, 6, 7), false, "\xe2\x82\xac");  /* € */
	/* E2 82 is not UTF-8: one U+FFFD per byte token */
	expect(bf, IDS(5, 6, 2), false, "\xef\xbf\xbd\xef\xbf\xbd" "a");
}

static void byte_level_lossy(void **state)
{
	const char *bl = "{\"type\": \"ByteLevel\"}";

	expect(bl, IDS(8, 2), false, " a");
	/* â Ĥ = bytes E2 82, a truncated sequence: one U+FFFD (its maximal subpart) */
	expect(bl, IDS(9, 15), false, "\xef\xbf\xbd");
	/* a token with a char outside the alphabet keeps its own bytes */
	expect(bl, IDS(4, 8), false, "\xe2\x96\x81x ");
}

static void bpe_suffix_empty_inserts(void **state)
{
	/* Rust's "a".replace("", " ") is " a " */
	expect("{\"type\": \"BPEDecoder\", \"suffix\": \"\"}", IDS(2, 12), false, " a c");
}

static void metaspace_first_token(void **state)
{
	expect("{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"always\"}",
	       IDS(4, 14, 4), false, "x  x");
	expect("{\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"never\"}",
	       IDS(4, 4), false, " x x");
}

static void ctc_dedup_pad_delimiter(void **state)
{
	expect("{\"type\": \"CTC\", \"pad_token\": \"<pad>\", \"word_delimiter_token\": \"|\","
	       " \"cleanup\": true}", IDS(2, 2, 10, 11, 12, 12), false, "a c");
}

static void no_decoder_and_unknown_ids(void **state)
{
	expect("null", IDS(2, 3), false, "a ##b");
	expect("null", IDS(2, 999, 2), false, "a a");
	expect("null", IDS(999), false, "");
}

static void bad_decoders_refused(void **state)
{
	static const char *const bad[] = {
		"{\"type\": \"Foo\"}", "{\"type\": \"Strip\", \"content\": \"ab\", \"start\": 1, \"stop\": 0}",
		"{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"(a\"}, \"content\": \"\"}",
		"{\"type\": \"Metaspace\", \"replacement\": \"_\", \"add_prefix_space\": false}",
		"[1]",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		nx_tokenizer *t = tok_with(bad[i]);
		nx_tokdecoder *d = NULL;
		nx_error e;

		assert_int_equal(nx_tokdecoder_new(&d, t, "tokenizer.json", &e), NX_ECONFIG);
		assert_non_null(strstr(e.message, "tokenizer"));
		nx_tokenizer_free(t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(wordpiece_cleanup_and_skip),
		cmocka_unit_test(byte_fallback_valid_and_not),
		cmocka_unit_test(byte_level_lossy),
		cmocka_unit_test(bpe_suffix_empty_inserts),
		cmocka_unit_test(metaspace_first_token),
		cmocka_unit_test(ctc_dedup_pad_delimiter),
		cmocka_unit_test(no_decoder_and_unknown_ids),
		cmocka_unit_test(bad_decoders_refused),
	};
	return cmocka_run_group_tests_name("tokdecode", tests, NULL, NULL);
}
