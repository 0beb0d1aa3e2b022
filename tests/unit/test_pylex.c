/* test_pylex.c - the Python tokenizer on tricky inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "nexus/pylex.h"

#define MAXTOK 256

struct toks {
	nx_py_token t[MAXTOK];
	int n;
	const char *src;
};

/* Lex the whole string; the last token is ENDMARKER. */
static void lex(struct toks *ts, const char *src)
{
	nx_pylex lx;

	ts->n = 0;
	ts->src = src;
	nx_pylex_init(&lx, src, strlen(src));
	do {
		assert_true(ts->n < MAXTOK);
		nx_pylex_next(&lx, &ts->t[ts->n]);
	} while (ts->t[ts->n++].kind != NX_PY_ENDMARKER);
}

/* "KIND:text KIND:text ..." of every token but NL/NEWLINE/ENDMARKER. */
static const char *summary(const struct toks *ts, char *buf, size_t cap)
{
	size_t n = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < ts->n; i++) {
		const nx_py_token *t = &ts->t[i];

		if (t->kind == NX_PY_ENDMARKER)
			continue;
		if (t->kind == NX_PY_NL || t->kind == NX_PY_NEWLINE) {
			n += snprintf(buf + n, cap - n, "%s%s", n ? " " : "",
				      t->kind == NX_PY_NL ? "NL" : "NEWLINE");
			continue;
		}
		n += snprintf(buf + n, cap - n, "%s%s:%.*s", n ? " " : "",
			      nx_py_kind_name(t->kind), (int)t->len, ts->src + t->start);
		assert_true(n < cap);
	}
	return buf;
}

static struct toks ts;
static char sum[4096];

static void names_numbers_ops(void **state)
{
	lex(&ts, "x = a.b ** 2 // 3.5e-3 != 0x1F\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "NAME:x OP:= NAME:a OP:. NAME:b OP:** NUMBER:2 OP:// "
			    "NUMBER:3.5e-3 OP:!= NUMBER:0x1F NEWLINE");
	lex(&ts, "return 1if x else ...\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "NAME:return NUMBER:1 NAME:if NAME:x NAME:else OP:... NEWLINE");
}

static void string_prefixes_and_quotes(void **state)
{
	lex(&ts, "a = Rb'x' + bR\"y\" + f'{z}' + u'w' + rF'''q''' + Br\"\"\"\"\"\"\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "NAME:a OP:= STRING:Rb'x' OP:+ STRING:bR\"y\" OP:+ STRING:f'{z}' "
			    "OP:+ STRING:u'w' OP:+ STRING:rF'''q''' OP:+ STRING:Br\"\"\"\"\"\" NEWLINE");
	assert_true(ts.t[2].flags & NX_PY_STR_RAW);
	assert_true(ts.t[2].flags & NX_PY_STR_BYTES);
	assert_true(ts.t[6].flags & NX_PY_STR_F);
	assert_true(ts.t[10].flags & NX_PY_STR_TRIPLE);
	/* body is the text between the quotes */
	assert_int_equal(ts.t[10].body_len, 1);
	assert_memory_equal(ts.src + ts.t[10].body, "q", 1);
	/* an identifier that merely looks like a prefix */
	lex(&ts, "br = rb\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)), "NAME:br OP:= NAME:rb NEWLINE");
}

static void nested_and_escaped_quotes(void **state)
{
	lex(&ts, "s = '''a \"b\" '' c''' + \"it's\" + 'q\\'s' + r'\\'' + r\"\\\\\"\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "NAME:s OP:= STRING:'''a \"b\" '' c''' OP:+ STRING:\"it's\" OP:+ "
			    "STRING:'q\\'s' OP:+ STRING:r'\\'' OP:+ STRING:r\"\\\\\" NEWLINE");
	/* raw string ending in backslash-quote does not end there */
	lex(&ts, "r'\\'\n");
	assert_int_equal(ts.t[0].kind, NX_PY_ERROR);
	assert_string_equal(ts.t[0].msg, "unterminated string");
}

static void fstrings_are_one_token(void **state)
{
	lex(&ts, "x = f\"{d['k']:>{w}} {teacher!r} {{}} 'q\" + 1\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "NAME:x OP:= STRING:f\"{d['k']:>{w}} {teacher!r} {{}} 'q\" OP:+ "
			    "NUMBER:1 NEWLINE");
	/* a quote in the format spec is literal text */
	lex(&ts, "f'{x:\">10}'\n");
	assert_int_equal(ts.t[0].kind, NX_PY_STRING);
	assert_int_equal(ts.t[0].len, 11);
	/* 3.12-style reuse of the outer quote inside a field */
	lex(&ts, "f\"{x[\"a\"]}\" + y\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "STRING:f\"{x[\"a\"]}\" OP:+ NAME:y NEWLINE");
}

static void unterminated_strings(void **state)
{
	lex(&ts, "a = 1\nb = 'abc\nc = 2\n");
	assert_int_equal(ts.t[6].kind, NX_PY_ERROR);
	assert_int_equal(ts.t[6].line, 2);
	/* lexing resumes on the next line */
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "NAME:a OP:= NUMBER:1 NEWLINE NAME:b OP:= ERROR:'abc NEWLINE "
			    "NAME:c OP:= NUMBER:2 NEWLINE");
	lex(&ts, "x\n\"\"\"never\nclosed\n");
	assert_int_equal(ts.t[2].kind, NX_PY_ERROR);
	assert_int_equal(ts.t[2].line, 2);
	assert_string_equal(ts.t[2].msg, "unterminated triple-quoted string");
}

static void continuation_and_brackets(void **state)
{
	lex(&ts, "x = 1 + \\\n    2\ny = (1,\n  2)\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "NAME:x OP:= NUMBER:1 OP:+ NUMBER:2 NEWLINE "
			    "NAME:y OP:= OP:( NUMBER:1 OP:, NL NUMBER:2 OP:) NEWLINE");
	assert_int_equal(ts.t[4].line, 2);
	assert_int_equal(ts.t[9].depth, 1);
	assert_int_equal(ts.t[12].line, 4);
	assert_int_equal(ts.t[12].lcol, 1);     /* logical line began at col 1 */
	assert_int_equal(ts.t[12].first, 0);
	lex(&ts, "a \\ b\n");
	assert_int_equal(ts.t[1].kind, NX_PY_ERROR);
}

static void comments_blank_lines_tabs(void **state)
{
	lex(&ts, "# it's \"quoted\"\n\nif x:\n\ty = 1  # ' no string\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "COMMENT:# it's \"quoted\" NL NL NAME:if NAME:x OP:: NEWLINE "
			    "NAME:y OP:= NUMBER:1 COMMENT:# ' no string NEWLINE");
	assert_int_equal(ts.t[7].col, 2);
	assert_int_equal(ts.t[7].first, 1);
	assert_int_equal(ts.t[7].lcol, 2);
}

static void crlf_and_no_trailing_newline(void **state)
{
	lex(&ts, "a = 1\r\nb = '''x\r\ny'''\r\nc");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "NAME:a OP:= NUMBER:1 NEWLINE NAME:b OP:= STRING:'''x\r\ny''' NEWLINE "
			    "NAME:c NEWLINE");
	assert_int_equal(ts.t[4].line, 2);
	assert_int_equal(ts.t[8].line, 4);
	assert_int_equal(ts.t[9].len, 0);       /* synthesized NEWLINE at EOF */
	assert_int_equal(ts.t[10].kind, NX_PY_ENDMARKER);
}

static void empty_and_non_ascii(void **state)
{
	nx_pylex lx;
	nx_py_token t;

	lex(&ts, "");
	assert_int_equal(ts.n, 1);
	assert_int_equal(ts.t[0].kind, NX_PY_ENDMARKER);
	/* ENDMARKER repeats */
	nx_pylex_init(&lx, "", 0);
	assert_int_equal(nx_pylex_next(&lx, &t), NX_PY_ENDMARKER);
	assert_int_equal(nx_pylex_next(&lx, &t), NX_PY_ENDMARKER);
	lex(&ts, "\xc3\xa9t\xc3\xa9 = \xe5\x90\x8d\n");
	assert_string_equal(summary(&ts, sum, sizeof(sum)),
			    "NAME:\xc3\xa9t\xc3\xa9 OP:= NAME:\xe5\x90\x8d NEWLINE");
	lex(&ts, "a $ b\n");
	assert_int_equal(ts.t[1].kind, NX_PY_ERROR);
	/* a NUL byte is an error, not the end of the input */
	nx_pylex_init(&lx, "a\0b", 3);
	assert_int_equal(nx_pylex_next(&lx, &t), NX_PY_NAME);
	assert_int_equal(nx_pylex_next(&lx, &t), NX_PY_ERROR);
	assert_int_equal(nx_pylex_next(&lx, &t), NX_PY_NAME);
}

static void docstrings(void **state)
{
	lex(&ts, "# c\n\"\"\"module\"\"\"\n"
		 "def f(a,\n      b):\n    'doc' \"more\"  # c\n    'not doc'\n"
		 "async def g():\n    r'''doc'''\n"
		 "if x:\n    'not doc'\n"
		 "class C:\n    'doc' + 'no'\n"
		 "def h():\n    f'not doc'\n"
		 "def i():\n    'not doc' f'{x}'\n"
		 "def j():\n    b'not doc'\n");
	{
		int i, doc = 0, str = 0;
		const char *expect[] = { "\"\"\"module\"\"\"", "'doc'", "\"more\"", "r'''doc'''" };

		for (i = 0; i < ts.n; i++) {
			if (ts.t[i].kind != NX_PY_STRING)
				continue;
			str++;
			if (!ts.t[i].docstring)
				continue;
			assert_true(doc < 4);
			assert_int_equal(ts.t[i].len, strlen(expect[doc]));
			assert_memory_equal(ts.src + ts.t[i].start, expect[doc], ts.t[i].len);
			doc++;
		}
		assert_int_equal(doc, 4);
		assert_int_equal(str, 12);
	}
}

/* Collect "expr|expr|..." of an f-string's replacement fields. */
static int field(void *ctx, size_t start, size_t n)
{
	char *out = ctx;
	size_t len = strlen(out);

	snprintf(out + len, 512 - len, "%s%.*s", len ? "|" : "", (int)n, ts.src + start);
	return 0;
}

static const char *fields(const char *src)
{
	static char out[512];
	int i;

	out[0] = '\0';
	lex(&ts, src);
	for (i = 0; i < ts.n; i++)
		if (ts.t[i].kind == NX_PY_STRING)
			assert_int_equal(nx_pylex_fstring_fields(ts.src, strlen(ts.src), &ts.t[i], field,
								 out), 0);
	return out;
}

static void fstring_fields(void **state)
{
	assert_string_equal(fields("f'{a} {b!r:>{w}} {{lit}} {c=} {d!=e}'\n"), "a|b|w|c=|d!=e");
	assert_string_equal(fields("f'{x[\"k\"]:{\"{\"}}' + 'plain {y}'\n"), "x[\"k\"]|\"{\"");
	assert_string_equal(fields("f'{ {1: 2}[1] }' rf'{z}'\n"), " {1: 2}[1] |z");
	assert_string_equal(fields("f'''{\n  g(1)\n}'''\n"), "\n  g(1)\n");
	assert_string_equal(fields("f\"{f'{inner}'}\"\n"), "f'{inner}'");
	assert_string_equal(fields("b'{no}' '{no}'\n"), "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(names_numbers_ops),
		cmocka_unit_test(string_prefixes_and_quotes),
		cmocka_unit_test(nested_and_escaped_quotes),
		cmocka_unit_test(fstrings_are_one_token),
		cmocka_unit_test(unterminated_strings),
		cmocka_unit_test(continuation_and_brackets),
		cmocka_unit_test(comments_blank_lines_tabs),
		cmocka_unit_test(crlf_and_no_trailing_newline),
		cmocka_unit_test(empty_and_non_ascii),
		cmocka_unit_test(docstrings),
		cmocka_unit_test(fstring_fields),
	};
	return cmocka_run_group_tests_name("pylex", tests, NULL, NULL);
}
