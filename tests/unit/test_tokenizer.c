/* test_tokenizer.c - WordPiece tokenizer: normalization, splitting, pieces, limits. */
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

#include "nexus/tokenizer.h"

/* id = line number */
static const char *const VOCAB[] = {
	"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",              /* 0-4 */
	"hello", "world", "un", "##able", "##ing",                 /* 5-9 */
	"play", ",", "!", "cafe", "naive",                          /* 10-14 */
	"中", "文", "a", "##b", "##c",                              /* 15-19 */
	"Hello", "Café", "'", "s", "¿",                             /* 20-24 */
	"abc", "x", "##x", NULL,                                    /* 25-27 */
};

static char *vocab_txt(void)
{
	size_t i, n = 0;
	char *buf = malloc(4096);

	for (i = 0; VOCAB[i]; i++)
		n += (size_t)snprintf(buf + n, 4096 - n, "%s\n", VOCAB[i]);
	return buf;
}

static char *json_with(const char *normalizer, const char *extra)
{
	char *vocab = malloc(8192), *buf = malloc(16384);
	size_t i, n = 0;

	for (i = 0; VOCAB[i]; i++)
		n += (size_t)snprintf(vocab + n, 8192 - n, "%s\"%s\": %zu", i ? ", " : "", VOCAB[i], i);
	snprintf(buf, 16384,
		 "{\"normalizer\": %s, \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"},"
		 " \"post_processor\": {\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 3],"
		 " \"cls\": [\"[CLS]\", 2]}, %s"
		 " \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\","
		 " \"continuing_subword_prefix\": \"##\", \"max_input_chars_per_word\": 10,"
		 " \"vocab\": {%s}}}", normalizer, extra, vocab);
	free(vocab);
	return buf;
}

static nx_tokenizer *load_json(const char *normalizer, const char *extra)
{
	char *buf = json_with(normalizer, extra);
	nx_tokenizer *t = NULL;
	nx_error e;

	if (nx_tokenizer_parse_json(&t, buf, strlen(buf), "tokenizer.json", &e))
		fail_msg("%s", e.message);
	free(buf);
	return t;
}

#define UNCASED "{\"type\": \"BertNormalizer\", \"lowercase\": true}"
#define CASED "{\"type\": \"BertNormalizer\", \"lowercase\": false, \"strip_accents\": false}"

/* Encode and compare with the expected ids (-1 terminated). */
static void check(nx_tokenizer *t, const char *text, size_t max, const int64_t *want)
{
	int64_t ids[64];
	size_t n = 0, i;
	nx_error e;

	assert_int_equal(nx_tokenizer_encode(t, text, strlen(text), max, ids, &n, &e), 0);
	for (i = 0; want[i] >= 0; i++) {
		assert_true(i < n);
		if (ids[i] != want[i])
			fail_msg("'%s': id %zu is %lld, expected %lld", text, i, (long long)ids[i],
				 (long long)want[i]);
	}
	assert_int_equal(n, i);
}

#define CHECK(t, text, ...) check(t, text, 64, (const int64_t[]){ __VA_ARGS__, -1 })

static void lowercase_and_accents(void **state)
{
	nx_tokenizer *t = load_json(UNCASED, "");

	CHECK(t, "Hello WORLD", 2, 5, 6, 3);
	CHECK(t, "CAFÉ naïve", 2, 13, 14, 3);       /* NFD + drop Mn + lowercase */
	CHECK(t, "Cafe\xcc\x81", 2, 13, 3);          /* already decomposed */
	nx_tokenizer_free(t);
	t = load_json(CASED, "");
	CHECK(t, "Hello Café", 2, 20, 21, 3);
	CHECK(t, "hello CAFE", 2, 5, 1, 3);
	nx_tokenizer_free(t);
}

static void punctuation_and_whitespace(void **state)
{
	nx_tokenizer *t = load_json(UNCASED, "");

	CHECK(t, "hello,world!", 2, 5, 11, 6, 12, 3);
	CHECK(t, "  hello\t\n\r world\xe3\x80\x80!", 2, 5, 6, 12, 3); /* U+3000 is space */
	CHECK(t, "\xc2\xbfhello", 2, 24, 5, 3);      /* Unicode punctuation ¿ */
	CHECK(t, "hello's", 2, 5, 22, 23, 3);
	CHECK(t, "", 2, 3);
	CHECK(t, "   ", 2, 3);
	nx_tokenizer_free(t);
}

static void control_chars_dropped(void **state)
{
	nx_tokenizer *t = load_json(UNCASED, "");

	CHECK(t, "hel\x01lo wor\x7fld", 2, 5, 6, 3);
	CHECK(t, "hel\xe2\x80\x8blo", 2, 5, 3);      /* U+200B (Cf) */
	CHECK(t, "hel\xef\xbf\xbdlo", 2, 5, 3);      /* U+FFFD */
	{
		int64_t ids[8];
		size_t n;

		assert_int_equal(nx_tokenizer_encode(t, "hel\0lo", 6, 8, ids, &n, NULL), 0);
		assert_int_equal(n, 3);
		assert_int_equal(ids[1], 5);
	}
	nx_tokenizer_free(t);
}

static void cjk_split(void **state)
{
	nx_tokenizer *t = load_json(UNCASED, "");

	CHECK(t, "hello中文world", 2, 5, 15, 16, 6, 3);
	nx_tokenizer_free(t);
}

static void wordpiece_pieces_and_unk(void **state)
{
	nx_tokenizer *t = load_json(UNCASED, "");

	CHECK(t, "unable", 2, 7, 8, 3);
	CHECK(t, "abc", 2, 25, 3);                  /* longest match first */
	CHECK(t, "abcb", 2, 25, 18, 3);
	CHECK(t, "abd", 2, 1, 3);                   /* one bad piece: whole word unk */
	CHECK(t, "xxxxxxxxxx", 2, 26, 27, 27, 27, 27, 27, 27, 27, 27, 27, 3);
	CHECK(t, "xxxxxxxxxxx hello", 2, 1, 5, 3);  /* 11 chars > max_input_chars_per_word */
	nx_tokenizer_free(t);
}

static void truncation_keeps_sep(void **state)
{
	nx_tokenizer *t = load_json(UNCASED, "");
	int64_t ids[4];
	size_t n;
	nx_error e;

	check(t, "hello world hello", 4, (const int64_t[]){ 2, 5, 6, 3, -1 });
	check(t, "unable world", 3, (const int64_t[]){ 2, 7, 3, -1 }); /* mid-word */
	check(t, "abd hello", 3, (const int64_t[]){ 2, 1, 3, -1 });
	assert_int_equal(nx_tokenizer_encode(t, "x", 1, 2, ids, &n, &e), NX_EUSAGE);
	nx_tokenizer_free(t);
}

static void invalid_utf8(void **state)
{
	nx_tokenizer *t = load_json(UNCASED, "");
	static const char *const bad[] = {
		"a\xff", "a\xc0\x80", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
		"\xe4\xb8", "\x80", "ok\xc3",
	};
	int64_t ids[16];
	size_t i, n;
	nx_error e;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(nx_tokenizer_encode(t, bad[i], strlen(bad[i]), 16, ids, &n, &e),
				 NX_EFORMAT);
		assert_non_null(strstr(e.message, "UTF-8"));
	}
	/* the tokenizer still works after an error */
	CHECK(t, "hello", 2, 5, 3);
	nx_tokenizer_free(t);
}

static void added_tokens_matched_raw(void **state)
{
	nx_tokenizer *t = load_json(UNCASED,
		"\"added_tokens\": [{\"id\": 4, \"content\": \"[MASK]\", \"normalized\": false}],");

	CHECK(t, "hello [MASK]world", 2, 5, 4, 6, 3);
	CHECK(t, "[mask]", 2, 1, 1, 1, 3);   /* case matters: not the added token */
	nx_tokenizer_free(t);
}

static void template_processing(void **state)
{
	nx_tokenizer *t = load_json(UNCASED, "");
	char *buf = json_with(UNCASED, "");
	const char *tp = "\"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": ["
			 "{\"SpecialToken\": {\"id\": \"[CLS]\"}}, {\"Sequence\": {\"id\": \"A\"}},"
			 "{\"SpecialToken\": {\"id\": \"[SEP]\"}}], \"special_tokens\": {"
			 "\"[CLS]\": {\"ids\": [2]}, \"[SEP]\": {\"ids\": [3, 3]}}}, ";
	char *p = strstr(buf, "\"post_processor\""), *q = strstr(buf, "\"model\""), *j;
	nx_error e;

	nx_tokenizer_free(t);
	j = malloc(strlen(buf) + strlen(tp) + 1);
	sprintf(j, "%.*s%s%s", (int)(p - buf), buf, tp, q);
	assert_int_equal(nx_tokenizer_parse_json(&t, j, strlen(j), "tokenizer.json", &e), 0);
	assert_int_equal(nx_tokenizer_special_count(t), 3);
	CHECK(t, "hello", 2, 5, 3, 3);
	check(t, "hello world", 4, (const int64_t[]){ 2, 5, 3, 3, -1 });
	nx_tokenizer_free(t);
	free(buf);
	free(j);
}

static void unsupported_fields_named(void **state)
{
	static const struct { const char *from, *to, *named; } cases[] = {
		{ "\"type\": \"WordPiece\"", "\"type\": \"Foo\"", "model.type: 'Foo'" },
		{ "\"type\": \"BertPreTokenizer\"", "\"type\": \"Foo\"", "pre_tokenizer.type: 'Foo'" },
		{ "\"type\": \"BertProcessing\"", "\"type\": \"Foo\"", "post_processor.type: 'Foo'" },
		{ "\"type\": \"BertNormalizer\"", "\"type\": \"Foo\"", "normalizer.type: 'Foo'" },
		{ "\"unk_token\": \"[UNK]\"", "\"unk_token\": \"<unk>\"", "unknown token" },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *buf = json_with(UNCASED, ""), *p = strstr(buf, cases[i].from), *j;
		nx_tokenizer *t = NULL;
		nx_error e;

		assert_non_null(p);
		j = malloc(strlen(buf) + 64);
		sprintf(j, "%.*s%s%s", (int)(p - buf), buf, cases[i].to, p + strlen(cases[i].from));
		assert_int_equal(nx_tokenizer_parse_json(&t, j, strlen(j), "tok.json", &e), NX_ECONFIG);
		if (!strstr(e.message, cases[i].named) || !strstr(e.message, "tok.json") ||
		    !strstr(e.message, "tokenizer, not the model"))
			fail_msg("'%s' does not name '%s', the file and the tokenizer", e.message,
				 cases[i].named);
		assert_null(t);
		free(buf);
		free(j);
	}
}

static void bad_json_and_limits(void **state)
{
	nx_tokenizer *t = NULL;
	nx_error e;
	const char *dup = "{\"model\": {}, \"model\": {}}";

	assert_int_equal(nx_tokenizer_parse_json(&t, "{", 1, "t.json", &e), NX_EFORMAT);
	assert_int_equal(nx_tokenizer_parse_json(&t, dup, strlen(dup), "t.json", &e), NX_EFORMAT);
	assert_int_equal(nx_tokenizer_parse_json(&t, "{}", NX_TOKENIZER_FILE_MAX + 1ul, "t.json", &e),
			 NX_ELIMIT);
	assert_int_equal(nx_tokenizer_parse_json(&t, "[]", 2, "t.json", &e), NX_ECONFIG);
	assert_null(t);
}

static void vocab_txt_defaults(void **state)
{
	char *buf = vocab_txt();
	nx_tokenizer *t = NULL;
	nx_error e;

	assert_int_equal(nx_tokenizer_parse_vocab(&t, buf, strlen(buf), "vocab.txt", &e), 0);
	assert_int_equal(nx_tokenizer_vocab_size(t), 28);
	assert_int_equal(nx_tokenizer_pad_id(t), 0);
	assert_string_equal(nx_tokenizer_source(t), "vocab.txt");
	CHECK(t, "HELLO Cafe\xcc\x81!", 2, 5, 13, 12, 3);  /* uncased defaults */
	/* special tokens in the text stay whole, as BertTokenizer keeps them */
	CHECK(t, "hello [MASK] [SEP]x", 2, 5, 4, 3, 26, 3);
	CHECK(t, "[mask]", 2, 1, 1, 1, 3);
	nx_tokenizer_free(t);
	free(buf);
	assert_int_equal(nx_tokenizer_parse_vocab(&t, "a\nb\n", 4, "vocab.txt", &e), NX_ECONFIG);
	assert_non_null(strstr(e.message, "[CLS]"));
}

static void load_prefers_json(void **state)
{
	char dir[] = "/tmp/nx_tok_XXXXXX", path[64];
	char *v = vocab_txt(), *j = json_with(CASED, "");
	nx_tokenizer *t = NULL;
	nx_error e;
	FILE *f;
	int fd;

	assert_non_null(mkdtemp(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_int_equal(nx_tokenizer_load(&t, fd, dir, &e), NX_EIO);
	/* A FIFO with no writer is refused at once, not read (it would block). */
	snprintf(path, sizeof(path), "%s/vocab.txt", dir);
	assert_int_equal(mkfifo(path, 0644), 0);
	alarm(10);
	assert_int_equal(nx_tokenizer_load(&t, fd, dir, &e), NX_EUNSAFE);
	alarm(0);
	unlink(path);
	f = fopen(path, "w");
	fputs(v, f);
	fclose(f);
	assert_int_equal(nx_tokenizer_load(&t, fd, dir, &e), 0);
	assert_string_equal(nx_tokenizer_source(t), "vocab.txt");
	nx_tokenizer_free(t);
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	f = fopen(path, "w");
	fputs(j, f);
	fclose(f);
	assert_int_equal(nx_tokenizer_load(&t, fd, dir, &e), 0);
	assert_string_equal(nx_tokenizer_source(t), "tokenizer.json");
	CHECK(t, "Hello", 2, 20, 3);                 /* cased: the JSON was used */
	nx_tokenizer_free(t);
	unlink(path);
	snprintf(path, sizeof(path), "%s/vocab.txt", dir);
	unlink(path);
	rmdir(dir);
	close(fd);
	free(v);
	free(j);
}

static void long_text_many_words(void **state)
{
	nx_tokenizer *t = load_json(UNCASED, "");
	size_t len = 1 << 20, i, n;
	char *text = malloc(len);
	int64_t ids[512];

	for (i = 0; i < len; i++)
		text[i] = "hello "[i % 6];
	assert_int_equal(nx_tokenizer_encode(t, text, len, 512, ids, &n, NULL), 0);
	assert_int_equal(n, 512);
	assert_int_equal(ids[0], 2);
	assert_int_equal(ids[510], 5);
	assert_int_equal(ids[511], 3);
	free(text);
	nx_tokenizer_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lowercase_and_accents),
		cmocka_unit_test(punctuation_and_whitespace),
		cmocka_unit_test(control_chars_dropped),
		cmocka_unit_test(cjk_split),
		cmocka_unit_test(wordpiece_pieces_and_unk),
		cmocka_unit_test(truncation_keeps_sep),
		cmocka_unit_test(invalid_utf8),
		cmocka_unit_test(added_tokens_matched_raw),
		cmocka_unit_test(template_processing),
		cmocka_unit_test(unsupported_fields_named),
		cmocka_unit_test(bad_json_and_limits),
		cmocka_unit_test(vocab_txt_defaults),
		cmocka_unit_test(load_prefers_json),
		cmocka_unit_test(long_text_many_words),
	};
	return cmocka_run_group_tests_name("tokenizer", tests, NULL, NULL);
}
