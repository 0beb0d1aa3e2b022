"""The code check (TRV-2): forbidden terms in code, strings, comments, YAML and
JSON, however they are spelled. (Regrouped by check from the red-team files
by scripts/dev/regroup_tests.py.)
"""
import json

import pytest
from onnx import TensorProto, helper

import bundle_fixture as bf
from onnx_smuggling import identity_chain
from verify_helpers import check_status, codes, expect_fail, verify


@pytest.mark.parametrize("src,code", [
    ('NAME = "te\\x61cher"\n', "term-in-string"),
    ('NAME = "\\u0074eacher"\n', "term-in-string"),
    ('NAME = "\\N{LATIN SMALL LETTER T}eacher"\n', "term-in-string"),
    ("NAME = 'te' 'acher'\n", "term-in-string"),
    ("NAME = '\\x74' 'eacher'\n", "term-in-string"),
    ("NAME = 'te' + '\\u0061cher'\n", "term-in-string"),
    ("from . import teacher_model\n", "term-in-code"),
    ("from .teacher_model import X\n", "term-in-code"),
    # Python NFKC-normalises identifiers: this IS the name teacher_model
    ("import \uff54eacher_model\n", "term-in-code"),
    ("\uff54eacher = 1\n", "term-in-code"),
    ("m = getattr(__builtins__, '__imp' + 'ort__')('x')\n", "dynamic-import"),
    ("m = globals()['__builtins__'].__dict__['__import__']('x')\n", "dynamic-import"),
    ("import importlib.util as u\ns = u.spec_from_file_location('m', 'x.py')\n", "dynamic-import"),
    ("import runpy\nrunpy.run_path('x.py')\n", "dynamic-import"),
    ("exec(compile(open('x').read(), 'x', 'exec'))\n", "dynamic-import"),
    ("import builtins\nf = builtins.exec\nf('import x')\n", "dynamic-import"),
    # unpickling imports and calls whatever the data names; marshal loads
    # code objects; sys.modules reaches a module by computed name
    ("import pickle\nm = pickle.loads(open('x', 'rb').read())\n", "dynamic-import"),
    ("from pickle import load\n", "dynamic-import"),
    ("import marshal\nc = marshal.loads(b'')\n", "dynamic-import"),
    ("import shelve\nd = shelve.open('x')\n", "dynamic-import"),
    ("p = __import__('pickle')\n", "dynamic-import"),
    ("import sys\nm = sys.modules['x' + 'y']\n", "dynamic-import"),
    ("import sys\nm = getattr(sys, 'modules')['x']\n", "dynamic-import"),
    # code loaded by path, from source text, or native
    ("from importlib.machinery import SourceFileLoader\nSourceFileLoader('m', 'x.py').load_module()\n",
     "dynamic-import"),
    ("import code\ncode.InteractiveInterpreter().runsource(open('x').read())\n", "dynamic-import"),
    ("import ctypes\nlib = ctypes.CDLL('/opt/x.so')\n", "dynamic-import"),
    ("import zipimport\nzipimport.zipimporter('x.zip').load_module('m')\n", "dynamic-import"),
    ("import pkgutil\nm = pkgutil.resolve_name('x' + n)\n", "dynamic-import"),
    ("import pydoc\nm = pydoc.locate('x' + n)\n", "dynamic-import"),
    # the importer by a computed attribute name
    ("import builtins\nf = getattr(builtins, bytes([95, 95]).decode() + 'import__')\n",
     "dynamic-import"),
    ("f = __builtins__.__dict__[chr(95) * 2 + 'import' + chr(95) * 2]\n", "dynamic-import"),
    ("import sys\nm = getattr(sys, 'mod' + 'ules')\n", "dynamic-import"),
    ("import importlib\nf = vars(importlib)[n]\n", "dynamic-import"),
])
def test_python_term_evasion(nexus, bundle, src, code):
    bundle.smuggle("src/utils.py", src)
    expect_fail(nexus, bundle, code)


@pytest.mark.parametrize("yaml,code", [
    ("? teacher_path\n: /m/t.onnx\n", "term-in-key"),
    ("extra: {teacher: /m/t.onnx}\n", "term-in-key"),
    ("extra: [a, distillation]\n", "term-in-value"),
    ("extra: first line\n  distillation here\n", "term-in-value"),
    ('extra: "te\\x61cher"\n', "term-in-value"),
    ('extra: "te\\u0061cher"\n', "term-in-value"),
    ("extra: |\n  teacher\n", "term-in-value"),
    ("extra: !!str teacher\n", "term-in-value"),
    ("extra: !!binary dGVhY2hlcl9wYXRo\n", "term-in-value"),
    ("extra: !!binary |\n  dGVhY2hl\n  cl9wYXRo\n", "term-in-value"),
    ('"teach\\\n  er": 1\n', "term-in-key"),
])
def test_yaml_term_evasion(nexus, bundle, yaml, code):
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML + yaml)
    expect_fail(nexus, bundle, code)


def test_json_escape_in_tokenizer_key(nexus, bundle):
    text = bundle.path("model/tokenizer/tokenizer.json").read_text()
    text = text.replace('"version"', '"te\\u0061cher_version"', 1)
    bundle.smuggle("model/tokenizer/tokenizer.json", text)
    expect_fail(nexus, bundle, "term-in-key")


@pytest.mark.parametrize("src", [
    "def load(n):\n    return f\"{__import__('tr' + n)}\"\n",
    "def load(code):\n    return f'{eval(code)}'\n",
    "import builtins\ndef load(n):\n    return f\"{getattr(builtins, n)}\"\n",
    "def load(b):\n    return f\"{__import__('pick' + 'le').loads(b)}\"\n",
    # in a nested field of the format spec, after a conversion
    "def show(x, s):\n    return f'{x!r:>{eval(s)}}'\n",
    # an f-string inside an f-string's field
    "def load(n):\n    return f\"{f'{__import__(n)}'}\"\n",
    # a triple-quoted f-string whose field spans lines
    "def load(n):\n    return f'''{\n        exec(n)\n    }'''\n",
], ids=["import-computed", "eval", "getattr-builtins", "pickle", "format-spec", "nested",
        "multiline"])
def test_code_in_fstring_field(nexus, bundle, src):
    """Python runs the expressions of an f-string's replacement fields: the
    dynamic-import rules apply inside them as anywhere else."""
    bundle.smuggle("src/helpers.py", src)
    expect_fail(nexus, bundle, "dynamic-import")


def test_term_in_fstring_field_is_code(nexus, bundle):
    bundle.smuggle("src/helpers.py", "import x\ndef f():\n    return f'{x.teacher_logits}'\n")
    expect_fail(nexus, bundle, "term-in-code")


def test_fstring_after_a_docstring_is_not_a_docstring(nexus, bundle):
    """`"doc" f"{...}"` is a JoinedStr that Python evaluates at import, not a
    docstring: a term in it is code, not a comment."""
    bundle.smuggle("src/helpers.py", '"""Spam helpers.""" f"{open(\'teacher.bin\')}"\n')
    expect_fail(nexus, bundle, "term-in-string")
    bundle.smuggle("src/helpers.py", 'class A:\n    "x" f"{\'teacher\'}"\n')
    expect_fail(nexus, bundle, "term-in-string")


def test_fstrings_of_serving_code_are_fine(nexus, bundle):
    bundle.smuggle("src/helpers.py", (
        '"""Formatting helpers."""\n'
        "def fmt(label, score, width, d):\n"
        "    a = f'{label!r:>{width}} {score:.3f} {d[\"k\"]} {{literal}}'\n"
        "    b = f\"{score=} {label!s} {(lambda v: v)(1)} {'x' if score else 'y'}\"\n"
        "    c = f'''{label\n"
        "        }'''\n"
        "    return a + b + c + f'{score:{width}.{2}f}' + rf'\\d{width}'\n"))
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set() and codes(rep, "WARN") == {"unsigned"}, rep["findings"]


@pytest.mark.parametrize("src", [
    # UTF-7: Python reads +AHQ- as "t" and +AF8- as "_"
    '# coding: utf-7\nx = "+AHQ-eacher"\n',
    "# -*- coding: utf-7 -*-\nimport +AHQ-eacher+AF8-model\n",
    # the whole file is unicode-escape decoded before it is tokenized
    "#!/usr/bin/env python3\n# vim: set fileencoding=unicode_escape :\nx = 1\n",
    "# coding=raw_unicode_escape\nx = 1\n",
])
def test_source_encoding_the_scanner_does_not_read(nexus, bundle, src):
    """A coding cookie makes Python decode the file before it tokenizes it:
    under utf-7, `"+AHQ-eacher"` is "teacher" and `import +AHQ-eacher+AF8-model`
    imports teacher_model.  The scanner reads UTF-8, so a file declared in an
    encoding that differs from UTF-8 on ASCII cannot be shown clean."""
    bundle.smuggle("src/helpers.py", src)
    expect_fail(nexus, bundle, "code-unparsable")


@pytest.mark.parametrize("cookie", ["# -*- coding: utf-8 -*-", "# coding=UTF8",
                                    "# vim: set fileencoding=latin-1 :", "# coding: ascii"])
def test_source_encoding_utf8_compatible_is_fine(nexus, bundle, cookie):
    bundle.smuggle("src/helpers.py", f"{cookie}\nx = 1\n")
    rc, rep = verify(nexus, bundle)
    assert codes(rep, "FAIL") == set(), rep["findings"]


@pytest.mark.parametrize("src", [
    'x = "teach\\\ner"\n',
    'x = "teach\\\r\ner"\n',
    "x = b'teach\\\ner'\n",
    'x = """teach\\\ner"""\n',
    'y = 1\nx = f"teach\\\ner{y}"\n',
], ids=["lf", "crlf", "bytes", "triple", "fstring"])
def test_backslash_newline_inside_a_string(nexus, bundle, src):
    """Backslash-newline inside a literal continues it: Python reads
    "teach\\<newline>er" as "teacher"."""
    bundle.smuggle("src/helpers.py", src)
    expect_fail(nexus, bundle, "term-in-string")


def test_term_after_the_strings_a_tensor_visits(nexus, bundle):
    """Only the first 100000 elements of a string tensor were visited: a
    term in the next one went unread, and 200 KB of empty strings fit the
    size check's allowance of a model of a few hundred nodes."""
    vals = [b""] * 100000 + [b"teacher_model_path"]
    t = helper.make_tensor("labels", TensorProto.STRING, [len(vals)], vals)
    nodes, last = identity_chain("b", [""] * 300, make=lambda t: {})
    g = bf.student_graph(extra_nodes=[helper.make_node("Identity", ["labels"], ["labels_out"],
                                                       name="lab")])
    g.output.append(helper.make_tensor_value_info("labels_out", TensorProto.STRING, None))
    g.initializer.append(t)
    g.node[3].input[1] = last
    g.node.extend(nodes)
    m = bf.student_model(graph=g)
    bundle.meta["parameters"] = bf.human(bf.parameters(m))
    bundle.smuggle("model/student_model.onnx", m.SerializeToString())
    expect_fail(nexus, bundle, "onnx-invalid")


def test_many_fstring_fields_do_not_stall_verify(nexus, bundle):
    """An f-string of 300,000 replacement fields over 15 lines: each field
    is scanned as code at its line, counted on from the field before (it
    was counted from the string's start, ~1e11 bytes walked)."""
    body = "\n".join("{a}" * 20000 for _ in range(15))
    bundle.smuggle("src/utils.py", ('a = 1\nS = f"""' + body + '"""\n').encode())
    rc, rep = verify(nexus, bundle, timeout=30)
    assert rc == 0, rep


@pytest.mark.parametrize("src,code", [
    ('NAME = "teacher"\n', "term-in-string"),
    ("teacher_logits = 1\n", "term-in-code"),
    ("import teacher_model\n", "term-in-code"),
    ("from training_modules import distillation\n", "term-in-code"),
    ("def f(soft_targets):\n    return soft_targets\n", "term-in-code"),
    ('import importlib\nm = importlib.import_module("te" + "acher_model")\n', "dynamic-import"),
    ("name = 'x'\nm = __import__(name)\n", "dynamic-import"),
])
def test_python_terms_fail(nexus, bundle, src, code):
    bundle.smuggle("src/utils.py", src)
    expect_fail(nexus, bundle, code)


def test_python_comment_and_docstring_warn(nexus, bundle):
    bundle.smuggle("src/utils.py", '"""No teacher here."""\n# the teacher was removed\nx = 1\n')
    rc, rep = verify(nexus, bundle)
    assert rc == 0 and rep["verdict"] == "WARN", rep
    assert {"term-in-comment", "term-in-docstring"} <= codes(rep, "WARN")
    assert codes(rep, "FAIL") == set()


@pytest.mark.parametrize("yaml,code", [
    ("teacher_path: /models/t.onnx\n", "term-in-key"),
    ("mode: distillation\n", "term-in-value"),
])
def test_yaml_terms_fail(nexus, bundle, yaml, code):
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML + yaml)
    expect_fail(nexus, bundle, code)


def test_yaml_comment_warns(nexus, bundle):
    bundle.smuggle("config/runtime.yaml", bf.RUNTIME_YAML + "# tuned after distillation\n")
    rc, rep = verify(nexus, bundle)
    assert rc == 0 and "term-in-comment" in codes(rep, "WARN"), rep


def test_tokenizer_config_terms_fail(nexus, bundle):
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    tok["normalizer"]["source"] = "teacher tokenizer"
    bundle.smuggle("model/tokenizer/tokenizer.json", json.dumps(tok))
    expect_fail(nexus, bundle, "term-in-value")


def test_vocabulary_containing_teacher_passes(nexus, bundle):
    tok = json.loads(bundle.path("model/tokenizer/tokenizer.json").read_text())
    tok["model"]["vocab"]["teacher"] = len(tok["model"]["vocab"])
    tok["model"]["vocab"]["distillation"] = len(tok["model"]["vocab"])
    bundle.write("model/tokenizer/tokenizer.json", json.dumps(tok))
    bundle.smuggle("model/tokenizer/vocab.txt", "\n".join(bf.VOCAB + ["teacher", "##ship"]) + "\n")
    rc, rep = verify(nexus, bundle, "--no-sandbox")
    assert rc == 0, rep["findings"]
    assert check_status(rep, "code") == "PASS", rep["findings"]


def test_readme_mention_warns(nexus, bundle):
    bundle.smuggle("README.md", "# Model\n\nDistilled from a larger teacher.\n")
    rc, rep = verify(nexus, bundle)
    assert rc == 0 and "term-in-docs" in codes(rep, "WARN"), rep


def test_extra_forbidden_term(nexus, bundle):
    bundle.smuggle("src/utils.py", "BIG_MODEL = 'bert-large'\n")
    expect_fail(nexus, bundle, "term-in-string", "--forbidden-term", "bert-large")
