/* test_scan.c - the TRV-2 forbidden-term scanner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/pylex.h"
#include "nexus/scan.h"

static const char *const terms[] = { "teacher", "distillation", "soft_targets" };

struct hits {
	char s[8192];     /* "where:term:line:col; ..." */
	size_t n;
	int count;
	int stop_after;   /* return 7 from the callback at this hit (0: never) */
	char last_excerpt[NX_SCAN_EXCERPT_MAX + 1];
};

static int collect(void *ctx, const char *term, enum nx_term_where where, long line,
		   long col, const char *excerpt)
{
	struct hits *h = ctx;

	h->n += snprintf(h->s + h->n, sizeof(h->s) - h->n, "%s%s:%s:%ld:%ld",
			 h->n ? "; " : "", nx_term_where_name(where), term, line, col);
	assert_true(strlen(excerpt) <= NX_SCAN_EXCERPT_MAX);
	snprintf(h->last_excerpt, sizeof(h->last_excerpt), "%s", excerpt);
	h->count++;
	return h->stop_after && h->count == h->stop_after ? 7 : 0;
}

static struct hits h;

static const char *py(const char *src)
{
	nx_error e;

	memset(&h, 0, sizeof(h));
	assert_int_equal(nx_scan_python(src, strlen(src), terms, 3, collect, &h, "a.py", &e), 0);
	return h.s;
}

static const char *yaml(const char *src)
{
	nx_error e;

	memset(&h, 0, sizeof(h));
	if (nx_scan_yaml(src, strlen(src), terms, 3, collect, &h, "c.yaml", &e))
		fail_msg("%s", e.message);
	return h.s;
}

static void python_where(void **state)
{
	assert_string_equal(py("TeacherNet = 1\n"), "code:teacher:1:1");
	assert_string_equal(py("x = f(use_distillation=True)\n"), "code:distillation:1:7");
	assert_string_equal(py("import teacher_model\n"), "code:teacher:1:8");
	assert_string_equal(py("x = 'the TEACHER'\n"), "string:teacher:1:5");
	assert_string_equal(py("x = 1  # soft_targets here\n"), "comment:soft_targets:1:8");
	assert_string_equal(py("\"\"\"Distillation notes.\"\"\"\nx = 1\n"),
			    "docstring:distillation:1:1");
	assert_string_equal(py("def f():\n    '''no teacher'''\n    return 'teacher'\n"),
			    "docstring:teacher:2:5; string:teacher:3:12");
	/* one callback per (token, term), several terms in a token */
	assert_string_equal(py("x = 'teacher teacher distillation'\n"),
			    "string:teacher:1:5; string:distillation:1:5");
	assert_string_equal(py("obj.soft_targets = 3\n"), "code:soft_targets:1:5");
	assert_string_equal(py("x = 1\n"), "");
}

static void fstrings_and_joined_literals(void **state)
{
	/* the field's expression is code too */
	assert_string_equal(py("s = f\"{a} {load_teacher(x)!r:>10}\"\n"),
			    "string:teacher:1:5; code:teacher:1:12");
	assert_string_equal(py("s = (1,\n     f'''x\n {eval(c)}''')\n"),
			    "dynamic-import:eval:3:3");
	/* each field at its own line, counted on from the field before */
	assert_string_equal(py("s = f'''{a}\n{eval(c)} {b}\r\n\n  {exec(d)}'''\n"),
			    "dynamic-import:eval:2:2; dynamic-import:exec:4:4");
	assert_string_equal(py("s = 'tea' 'cher'\n"), "string:teacher:1:5");
	assert_string_equal(py("s = ('dis'\n     'tillation')\n"), "string:distillation:1:6");
	assert_string_equal(py("s = 'soft_' + \"targets\"\n"), "string:soft_targets:1:5");
	/* found in a literal alone: not reported again for the run */
	assert_string_equal(py("s = 'teacher' 'x'\n"), "string:teacher:1:5");
	/* empty literals joined (a UBSan finding of the fuzzer) */
	assert_string_equal(py("s = '' \"\"\n"), "");
	/* separate statements are not joined */
	assert_string_equal(py("'tea'\n'cher'\n"), "");
}

static void dynamic_imports(void **state)
{
	assert_string_equal(py("m = importlib.import_module('tea' + 'cher_model')\n"),
			    "dynamic-import:import_module:1:15; string:teacher:1:29");
	assert_string_equal(py("m = __import__(name)\n"), "dynamic-import:__import__:1:5");
	assert_string_equal(py("m = getattr(__import__('x'), 'y')\n"),
			    "dynamic-import:__import__:1:13");
	assert_string_equal(py("m = importlib.import_module(f\"{a}\")\n"),
			    "dynamic-import:import_module:1:15");
	assert_string_equal(py("exec(code)\n"), "dynamic-import:exec:1:1");
	assert_string_equal(py("y = eval(s, {})\n"), "dynamic-import:eval:1:5");
	assert_string_equal(py("c = builtins.compile(src, 'f', 'exec')\n"),
			    "dynamic-import:compile:1:14");
	/* a literal naming a forbidden module */
	assert_string_equal(py("m = import_module('teacher_model')\n"),
			    "dynamic-import:teacher:1:5; string:teacher:1:19");
	/* the importer reached through getattr */
	assert_string_equal(py("f = getattr(builtins, '__import__')\n"),
			    "dynamic-import:__import__:1:23");
	/* benign forms */
	assert_string_equal(py("m = importlib.import_module('json')\n"), "");
	assert_string_equal(py("import_module(\n    'json',\n)\n"), "");
	assert_string_equal(py("model.eval()\nr = re.compile(p)\nx = eval('1+1')\n"), "");
	assert_string_equal(py("def eval_all(): pass\nexec_count = 1\n"), "");
	assert_string_equal(py("def eval(x): pass\nf(exec=1)\nfrom builtins import eval, exec\n"), "");
	/* the importer escaping into a variable, or through an alias */
	assert_string_equal(py("imp = __import__\nrun = eval\n"),
			    "dynamic-import:__import__:1:7; dynamic-import:eval:2:7");
	assert_string_equal(py("from importlib import import_module as im\nm = im(n)\n"
			       "j = im('json')\n"),
			    "dynamic-import:import_module:2:5");
}

static void python_errors_and_stop(void **state)
{
	nx_error e;
	const char *src = "x = 1\ny = 'teacher\n";
	const char *two = "teacher = 'teacher'\n";

	memset(&h, 0, sizeof(h));
	assert_int_equal(nx_scan_python(src, strlen(src), terms, 3, collect, &h, "a.py", &e),
			 NX_EFORMAT);
	assert_int_equal(e.line, 2);
	assert_string_equal(e.path, "a.py");
	assert_int_equal(h.count, 0);
	/* a source encoding other than UTF-8 on ASCII is not what is scanned */
	src = "#!/usr/bin/python3\n# -*- coding: utf-7 -*-\nx = '+AHQ-eacher'\n";
	assert_int_equal(nx_scan_python(src, strlen(src), terms, 3, collect, &h, "a.py", &e),
			 NX_EFORMAT);
	assert_int_equal(e.line, 2);
	src = "# coding: utf_8 \n# coding: utf-7\nx = 1\n";
	assert_int_equal(nx_scan_python(src, strlen(src), terms, 3, collect, &h, "a.py", &e), 0);
	/* Python ends a line at a lone "\r" too, and a "coding:" with no name
	 * does not end its search of the line (red team 9) */
	src = "\r# coding: utf-7\rx = 1\n";
	assert_int_equal(nx_scan_python(src, strlen(src), terms, 3, collect, &h, "a.py", &e),
			 NX_EFORMAT);
	assert_int_equal(e.line, 2);
	src = "# coding: , coding: unicode_escape\nx = 1\n";
	assert_int_equal(nx_scan_python(src, strlen(src), terms, 3, collect, &h, "a.py", &e),
			 NX_EFORMAT);
	src = "x = 1\r\n# coding: utf_8\r\n# coding: utf-7\r\n";
	assert_int_equal(nx_scan_python(src, strlen(src), terms, 3, collect, &h, "a.py", &e), 0);
	/* the callback's value stops the scan and is returned */
	memset(&h, 0, sizeof(h));
	h.stop_after = 1;
	assert_int_equal(nx_scan_python(two, strlen(two), terms, 3, collect, &h, NULL, NULL), 7);
	assert_int_equal(h.count, 1);
	assert_int_equal(nx_scan_python("", 0, terms, 3, collect, &h, NULL, NULL), 0);
}

static void excerpts_are_truncated(void **state)
{
	char src[400];

	memset(src, 'a', sizeof(src));
	memcpy(src, "# \t", 3);
	memcpy(src + 200, "teacher", 7);
	src[398] = '\n';
	src[399] = '\0';
	py(src);
	assert_int_equal(h.count, 1);
	assert_int_equal(strlen(h.last_excerpt), NX_SCAN_EXCERPT_MAX);
	assert_null(strchr(h.last_excerpt, '\t'));
	assert_memory_equal(h.last_excerpt, "#  aaa", 6);
}

static void yaml_keys_values_comments(void **state)
{
	assert_string_equal(yaml("teacher_path: a/b\nmodel: distillation-v2\n"),
			    "key:teacher:1:1; value:distillation:2:8");
	assert_string_equal(yaml("# uses a teacher\nx: 1  # soft_targets\n"),
			    "comment:teacher:1:1; comment:soft_targets:2:7");
	/* '#' inside quotes or glued to a scalar is not a comment */
	assert_string_equal(yaml("a: \"x # teacher\"\nb: 'it''s # distillation'\nc: x#teacher\n"),
			    "value:teacher:1:4; value:distillation:2:4; value:teacher:3:4");
	assert_string_equal(yaml("'teacher': 1\n\"Distillation\" : 2\n"),
			    "key:teacher:1:1; key:distillation:2:1");
	assert_string_equal(yaml("list:\n  - teacher\n  - - x: soft_targets\n"),
			    "value:teacher:2:5; value:soft_targets:3:10");
	assert_string_equal(yaml("url: http://teacher:80/x\n"), "value:teacher:1:6");
}

static void yaml_block_flow_multiline(void **state)
{
	assert_string_equal(yaml("doc: |\n  line one\n  has teacher # not a comment\n\n"
				 "k: v\n"),
			    "value:teacher:3:3");
	assert_string_equal(yaml("doc: >- # teacher\n   x\nteacher: 1\n"),
			    "comment:teacher:1:9; key:teacher:3:1");
	assert_string_equal(yaml("f: {teacher: [a, distillation], b: 'soft_targets'}\n"),
			    "key:teacher:1:5; value:distillation:1:18; value:soft_targets:1:36");
	assert_string_equal(yaml("a: \"multi\n  line teacher\"\nb: 2 # distillation\n"),
			    "value:teacher:1:4; comment:distillation:3:6");
	/* JSON */
	assert_string_equal(yaml("{\"teacher\":\"x\",\n \"y\": [\"distillation\"]}\n"),
			    "key:teacher:1:2; value:distillation:2:8");
	assert_string_equal(yaml("---\na: teacher\n...\n"), "value:teacher:2:4");
}

static int dyn_count(const char *src)
{
	py(src);
	return (int)(strstr(h.s, "dynamic-import") != NULL);
}

/* Escapes that only spell a term once adjacent literals are joined. */
static void python_escapes_across_joined_literals(void **state)
{
	assert_string_equal(py("N = '\\x74' 'eacher'\n"), "string:teacher:1:5");
	assert_string_equal(py("N = 'te' + '\\u0061cher'\n"), "string:teacher:1:5");
	assert_string_equal(py("N = 'a' 'b'\n"), "");
	assert_string_equal(py("N = '' ''\n"), "");   /* empty run: nothing joined */
}

/* Deserialisers run code named by their data; sys.modules by computed name. */
static void python_loaders_and_sys_modules(void **state)
{
	assert_true(dyn_count("import pickle\nm = pickle.loads(b)\n"));
	assert_true(dyn_count("import os, marshal as m\n"));
	assert_true(dyn_count("from shelve import open\n"));
	assert_true(dyn_count("from _pickle import loads\n"));
	assert_true(dyn_count("m = __import__('pickle')\n"));
	assert_true(dyn_count("import sys\nm = sys.modules['x' + 'y']\n"));
	assert_true(dyn_count("import sys\nm = sys.modules[name]\n"));
	assert_true(dyn_count("import sys\nm = sys.modules.get(name)\n"));
	assert_true(dyn_count("import sys\nm = sys.modules['pickle']\n"));
	/* writing the module table or a module's __path__ steers later imports */
	assert_true(dyn_count("import sys\nsys.modules['torch'] = object()\n"));
	assert_true(dyn_count("import sys\nsys.modules['torch'] |= {}\n"));
	assert_true(dyn_count("import sys\ndel sys.modules['json']\n"));
	assert_true(dyn_count("__path__ = ['.']\n"));
	assert_true(dyn_count("__path__.insert(0, d)\n"));
	assert_true(dyn_count("setattr(m, '__path__', [d])\n"));
	assert_false(dyn_count("import sys\nok = sys.modules['json'] == j\n"));
	assert_false(dyn_count("p = list(__path__)\n"));
	assert_true(dyn_count("from sys import modules\n"));
	assert_true(dyn_count("import sys\nm = getattr(sys, 'modules')\n"));
	/* the importer reached by a name the scanner cannot read */
	assert_true(dyn_count("f = getattr(builtins, bytes([95, 95]).decode() + 'import__')\n"));
	assert_true(dyn_count("f = __builtins__.__dict__[chr(95) * 2 + 'import' + chr(95) * 2]\n"));
	assert_true(dyn_count("f = globals()['__builtins__']\n"));
	assert_true(dyn_count("import sys\nm = getattr(sys, 'mod' + 'ules')\n"));
	assert_true(dyn_count("import importlib\nf = getattr(importlib, name)\n"));
	assert_true(dyn_count("import builtins\nf = vars(builtins)[name]\n"));
	assert_true(dyn_count("import sys\nd = sys.__dict__\n"));
	assert_false(dyn_count("x = getattr(obj, name)\nimport sys\ny = getattr(sys, 'argv')\n"));
	/* code loaded by path or from source text */
	assert_true(dyn_count("from importlib.machinery import SourceFileLoader\n"));
	assert_true(dyn_count("import importlib.machinery as m\nm.SourceFileLoader('x', p).load_module()\n"));
	assert_true(dyn_count("import code\ncode.InteractiveInterpreter().runsource(s)\n"));
	assert_true(dyn_count("import zipimport\n"));
	assert_true(dyn_count("import ctypes\nlib = ctypes.CDLL(p)\n"));
	assert_true(dyn_count("from ctypes import CDLL\n"));
	assert_true(dyn_count("import pkgutil\nm = pkgutil.resolve_name(n)\n"));
	assert_true(dyn_count("from pydoc import locate\n"));
	assert_true(dyn_count("import importlib.util\ns = importlib.util.find_spec(n)\n"));
	assert_false(dyn_count("from .helpers import code\n"));
	assert_false(dyn_count("from mypkg.code import f\nimport json as pickle_free\n"));
	/* not loaders */
	assert_false(dyn_count("import sys\nm = sys.modules['json']\n"));
	assert_false(dyn_count("import json\nx = json.loads(s)\n"));
	assert_false(dyn_count("pickle_count = 3\nx = self.modules\n"));
}

/* What a YAML parser hands the program is scanned, not the raw text. */
static void yaml_escapes_and_explicit_keys(void **state)
{
	assert_string_equal(yaml("a: \"te\\x61cher\"\n"), "value:teacher:1:4");
	assert_string_equal(yaml("a: \"te\\u0061cher\"\n"), "value:teacher:1:4");
	assert_string_equal(yaml("a: \"\\U00000074eacher\"\n"), "value:teacher:1:4");
	/* an escaped line break joins the halves without a space */
	assert_string_equal(yaml("\"teach\\\n  er\": 1\n"), "key:teacher:1:1");
	assert_string_equal(yaml("'it''s teacher'\n"), "value:teacher:1:1");
	/* a plain fold is a space: "teach er" is not the term */
	assert_string_equal(yaml("a: \"teach\n  er\"\n"), "");
	/* non-ASCII escapes are not the ASCII term */
	assert_string_equal(yaml("a: \"\\u0442eacher\"\n"), "");
	/* !!binary is base64 the program reads as bytes */
	assert_string_equal(yaml("a: !!binary dGVhY2hlcg==\n"), "value:teacher:1:13");
	assert_string_equal(yaml("a: !!binary \"ZGlzdGlsbGF0aW9u\"\n"), "value:distillation:1:13");
	assert_string_equal(yaml("a: !!binary |\n  dGVh\n  Y2hlcg==\nb: 1\n"), "value:teacher:4:1");
	assert_string_equal(yaml("a: !!binary |\n  dGVh\n  Y2hlcg==\n"), "value:teacher:4:1");
	assert_string_equal(yaml("a: !teacher x\nb: !!str dGVhY2hlcg==\n"), "value:teacher:1:4");
	/* `? key` makes what follows a key, up to its ':' */
	assert_string_equal(yaml("? teacher_path\n: /m/t.onnx\n"), "key:teacher:1:3");
	assert_string_equal(yaml("? - a\n  - distillation\n: x\nb: teacher\n"),
			    "key:distillation:2:5; value:teacher:4:4");
	assert_string_equal(yaml("{? teacher : x}\n"), "key:teacher:1:4");
}

static void yaml_errors(void **state)
{
	nx_error e;
	const char *src = "a: 1\nb: \"open\n\n";

	memset(&h, 0, sizeof(h));
	assert_int_equal(nx_scan_yaml(src, strlen(src), terms, 3, collect, &h, "c.yaml", &e),
			 NX_EFORMAT);
	assert_int_equal(e.line, 2);
	assert_string_equal(e.path, "c.yaml");
	assert_string_equal(yaml(""), "");
	assert_string_equal(yaml("a: b\r\nteacher: 1\r\n"), "key:teacher:2:1");
}

static void text_every_occurrence(void **state)
{
	const char *src = "A Teacher model.\n\nno teacher, no teacher; distillation\n";

	memset(&h, 0, sizeof(h));
	assert_int_equal(nx_scan_text(src, strlen(src), terms, 3, collect, &h, "README.md", NULL), 0);
	assert_string_equal(h.s, "string:teacher:1:3; string:teacher:3:4; string:teacher:3:16; "
			    "string:distillation:3:25");
	assert_string_equal(nx_term_where_name(NX_TERM_DYNAMIC_IMPORT), "dynamic-import");
	assert_int_equal(nx_scan_find("abc", 3, ""), -1);
	assert_int_equal(nx_scan_find("xTeAcHer", 8, "teacher"), 1);
}

/* The token cap counts a file's tokens, not each f-string field's: the
 * fields are scanned while the enclosing levels hold theirs, so a cap per
 * level let nested fields hold 16 times the cap (review: 492 MB at 6
 * levels).  Here each level alone is under the cap, together over it. */
static void token_cap_counts_nested_fields(void **state)
{
	size_t words = NX_PYLEX_TOKENS_MAX / 3, i, n = 0;
	size_t len = 8 * words + 64;
	char *src = malloc(len);
	nx_error e;

	(void)state;
	assert_non_null(src);
	n += (size_t)sprintf(src + n, "x = (");
	for (i = 0; i < words; i++)
		n += (size_t)sprintf(src + n, "a,");
	n += (size_t)sprintf(src + n, "f\"{(");
	for (i = 0; i < words; i++)
		n += (size_t)sprintf(src + n, "a,");
	n += (size_t)sprintf(src + n, ")}\")\n");
	memset(&h, 0, sizeof(h));
	nx_error_clear(&e);
	assert_int_not_equal(nx_scan_python(src, n, terms, 3, collect, &h, "big.py", &e), 0);
	assert_non_null(strstr(e.message, "tokens"));
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(python_where),
		cmocka_unit_test(fstrings_and_joined_literals),
		cmocka_unit_test(dynamic_imports),
		cmocka_unit_test(python_errors_and_stop),
		cmocka_unit_test(excerpts_are_truncated),
		cmocka_unit_test(yaml_keys_values_comments),
		cmocka_unit_test(yaml_block_flow_multiline),
		cmocka_unit_test(python_escapes_across_joined_literals),
		cmocka_unit_test(python_loaders_and_sys_modules),
		cmocka_unit_test(yaml_escapes_and_explicit_keys),
		cmocka_unit_test(yaml_errors),
		cmocka_unit_test(text_every_occurrence),
		cmocka_unit_test(token_cap_counts_nested_fields),
	};
	return cmocka_run_group_tests_name("scan", tests, NULL, NULL);
}
