/* test_pyfilter.c - removal of forbidden imports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/pyfilter.h"

static const char *const forbidden[] = { "teacher_model", "training_modules" };

static long count_lines(const char *s, size_t n)
{
	long k = 0;
	size_t i;

	for (i = 0; i < n; i++)
		k += s[i] == '\n';
	return k;
}

/* Does /usr/bin/python3's ast module accept text?  (Skipped if absent.) */
static int python_parses(const char *text, size_t len)
{
	char path[] = "/tmp/nx_pyfilter_XXXXXX";
	char cmd[256];
	int fd, rc;

	if (access("/usr/bin/python3", X_OK) != 0)
		return 1;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
	snprintf(cmd, sizeof(cmd), "/usr/bin/python3 -c \"import ast,sys; "
		 "ast.parse(open(sys.argv[1]).read())\" %s 2>/dev/null", path);
	rc = system(cmd);
	unlink(path);
	return rc == 0;
}

/* Filter src; expect success, output == want, same line count, valid Python. */
static void expect(const char *src, const char *want, size_t nremoved)
{
	struct nx_pyfilter_result r;
	nx_error e;
	int rc;

	nx_error_clear(&e);
	rc = nx_pyfilter_run(&r, src, strlen(src), forbidden, 2, "x.py", &e);
	if (rc)
		fail_msg("filter failed: %s", e.message);
	assert_string_equal(r.text, want);
	assert_int_equal(r.len, strlen(want));
	assert_int_equal(r.nremoved, nremoved);
	assert_int_equal(count_lines(r.text, r.len), count_lines(src, strlen(src)));
	assert_true(python_parses(r.text, r.len));
	nx_pyfilter_result_release(&r);
}

static void plain_imports(void **state)
{
	expect("import teacher_model\nimport os\n", "\nimport os\n", 1);
	expect("import teacher_model.sub.x\n", "\n", 1);
	/* a comment of a removed line goes with it */
	expect("import teacher_model  # noqa: F401\nx = 1\n", "\nx = 1\n", 1);
	expect("import teacher_models\n", "import teacher_models\n", 0);
	expect("import os, teacher_model as t, sys\n", "import os, sys\n", 1);
	expect("import training_modules, teacher_model\n", "\n", 2);
	expect("import a.b as c, training_modules.x as y\n", "import a.b as c\n", 1);
}

static void from_imports(void **state)
{
	expect("from teacher_model.sub import (a,\n    b)  # c\nx = 1\n",
	       "\n\nx = 1\n", 1);
	expect("from training_modules import *\n", "\n", 1);
	expect("from .teacher_model import n\n", "\n", 1);
	expect("from ..teacher_model.y import n\n", "\n", 1);
	expect("from . import teacher_model\n", "\n", 1);
	expect("from . import utils, teacher_model as t, io\n", "from . import utils, io\n", 1);
	expect("from .. import (teacher_model,\n  training_modules)\n", "\n\n", 2);
	expect("from .utils import teacher_model\n", "from .utils import teacher_model\n", 0);
	expect("from os import path\n", "from os import path\n", 0);
}

static void in_blocks_and_semicolons(void **state)
{
	expect("try:\n    import teacher_model\nexcept ImportError:\n    pass\n",
	       "try:\n    pass\nexcept ImportError:\n    pass\n", 1);
	expect("try: import teacher_model\nexcept ImportError: x = None\n",
	       "try: pass\nexcept ImportError: x = None\n", 1);
	expect("if a:\n\tif b: from training_modules import q; import os\n",
	       "if a:\n\tif b: pass; import os\n", 1);
	expect("import os; import teacher_model; x = 1\n", "import os; pass; x = 1\n", 1);
	expect("from teacher_model import \\\n    zz; y = 2\n", "pass \\\n; y = 2\n", 1);
	expect("def f():\n    import teacher_model\n", "def f():\n    pass\n", 1);
	/* no trailing newline, CRLF */
	expect("import teacher_model", "", 1);
	expect("import os\r\nimport teacher_model\r\nx = 1\r\n",
	       "import os\r\n\r\nx = 1\r\n", 1);
}

static void removed_records(void **state)
{
	const char *src = "import os\nfrom ..teacher_model import a\nimport x, training_modules.y\n";
	struct nx_pyfilter_result r;

	assert_int_equal(nx_pyfilter_run(&r, src, strlen(src), forbidden, 2, NULL, NULL), 0);
	assert_int_equal(r.nremoved, 2);
	assert_int_equal(r.removed[0].line, 2);
	assert_string_equal(r.removed[0].module, "..teacher_model");
	assert_string_equal(r.removed[0].statement_kind, "from");
	assert_int_equal(r.removed[1].line, 3);
	assert_string_equal(r.removed[1].module, "training_modules.y");
	assert_string_equal(r.removed[1].statement_kind, "import");
	nx_pyfilter_result_release(&r);
	nx_pyfilter_result_release(NULL);
}

/* Expect NX_ECHECK at `line` naming `name`. */
static void expect_use(const char *src, long line, const char *name)
{
	struct nx_pyfilter_result r = { 0 };
	nx_error e;

	nx_error_clear(&e);
	assert_int_equal(nx_pyfilter_run(&r, src, strlen(src), forbidden, 2, "inf.py", &e),
			 NX_ECHECK);
	assert_null(r.text);
	assert_int_equal(e.line, line);
	assert_string_equal(e.path, "inf.py");
	assert_non_null(strstr(e.message, name));
}

static void still_used_names_fail(void **state)
{
	expect_use("import teacher_model\n\nx = teacher_model.load()\n", 3, "'teacher_model'");
	expect_use("import teacher_model.sub\ny = 1\nteacher_model.sub.f()\n", 3, "'teacher_model'");
	expect_use("import os, teacher_model as tm\nx = 1\ny = 2\nz = tm\n", 4, "'tm'");
	expect_use("from training_modules import (a,\n  b)\nprint(b)\n", 3, "'b'");
	expect_use("from . import teacher_model as q\nq()\n", 2, "'q'");
	expect_use("from .teacher_model import n\nif x: f(k=n)\n", 2, "'n'");
	{
		nx_error e;
		struct nx_pyfilter_result r;
		const char *src = "x = 0\nfrom teacher_model import T\n\n\nuse(T)\nT()\n";

		assert_int_equal(nx_pyfilter_run(&r, src, strlen(src), forbidden, 2, "m.py", &e),
				 NX_ECHECK);
		assert_int_equal(e.line, 5);
		assert_non_null(strstr(e.message, "teacher_model"));
		assert_non_null(strstr(e.message, "line 2"));
	}
}

static void attributes_strings_kwargs_are_not_uses(void **state)
{
	expect("import teacher_model as tm\nx = obj.tm\ny = f(tm=1)\n# tm\nz = 'tm'\n"
	       "w = obj.teacher_model\n",
	       "\nx = obj.tm\ny = f(tm=1)\n# tm\nz = 'tm'\nw = obj.teacher_model\n", 1);
	expect("import os, teacher_model\nos.path\n", "import os\nos.path\n", 1);
}

static void malformed_sources(void **state)
{
	struct nx_pyfilter_result r = { 0 };
	nx_error e;
	const char *bad[] = {
		"import\n", "from teacher_model\n", "import a,\n", "from . import\n",
		"import a as\n", "from x import (a\n",
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(nx_pyfilter_run(&r, bad[i], strlen(bad[i]), forbidden, 2, "b.py", &e),
				 NX_EFORMAT);
		assert_int_equal(e.line, 1);
	}
	assert_int_equal(nx_pyfilter_run(&r, "x = 1\ny = 'open\n", 16, forbidden, 2, "b.py", &e),
			 NX_EFORMAT);
	assert_int_equal(e.line, 2);
	assert_non_null(strstr(e.message, "unterminated string"));
	assert_null(r.text);
}

static void realistic_file_stays_valid(void **state)
{
	const char *src =
		"\"\"\"Serving code.\"\"\"\n"
		"from __future__ import annotations\n"
		"import json, teacher_model\n"
		"try:\n"
		"    from training_modules.losses import (\n"
		"        soft,  # comment\n"
		"        hard,\n"
		"    )\n"
		"except ImportError:\n"
		"    pass\n"
		"\n"
		"class Engine:\n"
		"    from . import teacher_model\n"
		"    def run(self, x: int) -> dict:\n"
		"        if x: import teacher_model.a as a; return {}\n"
		"        return json.loads('{}')\n";
	struct nx_pyfilter_result r;

	assert_int_equal(nx_pyfilter_run(&r, src, strlen(src), forbidden, 2, NULL, NULL), 0);
	assert_int_equal(r.nremoved, 4);
	assert_int_equal(count_lines(r.text, r.len), 16);
	assert_true(python_parses(r.text, r.len));
	assert_null(strstr(r.text, "teacher_model"));
	assert_null(strstr(r.text, "training_modules"));
	nx_pyfilter_result_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(plain_imports),
		cmocka_unit_test(from_imports),
		cmocka_unit_test(in_blocks_and_semicolons),
		cmocka_unit_test(removed_records),
		cmocka_unit_test(still_used_names_fail),
		cmocka_unit_test(attributes_strings_kwargs_are_not_uses),
		cmocka_unit_test(malformed_sources),
		cmocka_unit_test(realistic_file_stays_valid),
	};
	return cmocka_run_group_tests_name("pyfilter", tests, NULL, NULL);
}
