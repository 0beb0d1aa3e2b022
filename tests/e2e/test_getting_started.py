"""A new user's first steps (issue 21, items 3-4 and 6): finding the
workspace, -f, -o parents, nexus help VERB, "did you mean", every missing key
in one error, README/LICENSE optional, configuration errors exit 2."""
import json
import os
import pathlib

from conftest import run
from workspace import make_workspace

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def env(**kw):
    e = dict(os.environ, **EPOCH)
    e.update(kw)
    return e


def test_help_verb_is_verb_help(nexus):
    a = run(nexus, "help", "build")
    b = run(nexus, "build", "--help")
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and "usage: nexus build" in a.stdout


def test_did_you_mean(nexus):
    r = run(nexus, "biuld")
    assert r.returncode == 2
    assert "did you mean 'nexus build'?" in r.stderr
    r = run(nexus, "insp")
    assert "did you mean 'nexus inspect'?" in r.stderr
    r = run(nexus, "help", "verfy")
    assert r.returncode == 2 and "did you mean 'nexus help verify'?" in r.stderr
    r = run(nexus, "zzzzzzzz")
    assert r.returncode == 2 and "did you mean" not in r.stderr


def test_build_finds_workspace_in_parent_and_f(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws")
    # from a sub-directory, as git finds its repository
    r = run(nexus, "build", "-o", tmp_path / "out" / "deep" / "b1", "--json",
            cwd=ws / "serving", env=env())
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["bundle_id"] == "nexus_bundle_v1"
    # -f FILE, and the file given as the positional argument
    (ws / "nexus.yaml").rename(ws / "prod.yaml")
    r = run(nexus, "build", "-f", ws / "prod.yaml", "-o", tmp_path / "b2", env=env())
    assert r.returncode == 0, r.stderr
    r = run(nexus, "build", ws / "prod.yaml", "-o", tmp_path / "b3", env=env())
    assert r.returncode == 0, r.stderr
    m = [(tmp_path / d / "manifest.json").read_bytes() for d in ("out/deep/b1", "b2", "b3")]
    assert m[0] == m[1] == m[2]
    r = run(nexus, "build", "-f", ws / "prod.yaml", ws, "-o", tmp_path / "b4")
    assert r.returncode == 2 and "not both" in r.stderr


def test_all_missing_keys_in_one_error(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws", config={"tokenizer": None, "runtime_config": None,
                                                 "student": "{outputs: [logits]}"})
    r = run(nexus, "build", ws, "-o", tmp_path / "b")
    assert r.returncode == 2
    assert "missing required keys student.model, tokenizer, runtime_config" in r.stderr


def test_yaml_syntax_error_is_a_configuration_error(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws", extra_yaml="limits: {max_model_bytes: [\n")
    r = run(nexus, "build", ws, "-o", tmp_path / "b", "--json")
    assert r.returncode == 2, r.stderr
    assert "yaml syntax error" in r.stderr
    assert json.loads(r.stdout)["error"]["code"] == "config"
    assert not (tmp_path / "b").exists()


def test_readme_and_license_optional(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws", config={"readme": None, "license": None})
    (ws / "README.md").unlink()
    (ws / "LICENSE").unlink()
    r = run(nexus, "build", ws, "-o", tmp_path / "b", env=env())
    assert r.returncode == 0, r.stderr
    readme = (tmp_path / "b" / "README.md").read_text()
    assert readme.startswith("# nexus_bundle_v1\n") and "generated" in readme
    assert not (tmp_path / "b" / "LICENSE").exists()
    assert "doc-missing LICENSE" in r.stdout
    # a key that names a file that is not there: the error names the key
    ws2 = make_workspace(tmp_path / "ws2", config={"license": "COPYING"})
    r = run(nexus, "build", ws2, "-o", tmp_path / "b2")
    assert r.returncode == 2
    assert "license: COPYING does not exist" in r.stderr


def test_init_on_the_example_builds(nexus, tmp_path):
    import shutil
    from conftest import ROOT
    ws = tmp_path / "spam distill é"   # a path with a space and non-ASCII
    shutil.copytree(ROOT / "examples" / "spam-distill", ws)
    (ws / "nexus.yaml").unlink()
    r = run(nexus, "init", ws, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "nexus.init.v1"
    assert doc["found"] == {"student": "artifacts/student.onnx",
                            "tokenizer": "artifacts/tokenizer",
                            "runtime_config": "config/runtime.yaml",
                            "source_dir": "serving"}
    text = (ws / "nexus.yaml").read_text()
    assert '"artifacts/teacher.onnx"' in text and '"checkpoints/teacher.pt"' in text
    assert '["__init__.py", "inference.py", "utils.py"]' in text
    r = run(nexus, "build", "-o", tmp_path / "b", cwd=ws, env=env())
    assert r.returncode == 0, r.stderr
    # never overwrites
    before = (ws / "nexus.yaml").read_bytes()
    r = run(nexus, "init", ws)
    assert r.returncode == 2 and "never overwrites" in r.stderr
    assert (ws / "nexus.yaml").read_bytes() == before


def test_init_says_what_it_did_not_find(nexus, tmp_path):
    (tmp_path / "empty").mkdir()
    r = run(nexus, "init", tmp_path / "empty")
    assert r.returncode == 0, r.stderr
    assert "to do: student.model" in r.stdout and "to do: tokenizer" in r.stdout
    r = run(nexus, "build", tmp_path / "empty", "-o", tmp_path / "b")
    assert r.returncode in (2, 3) and not (tmp_path / "b").exists()


def _build_on_a_pty(nexus, ws, out, **envs):
    """Build with stderr on a pseudo-terminal; what the terminal got."""
    import pty
    import subprocess
    master, slave = pty.openpty()
    p = subprocess.Popen([nexus, "build", str(ws), "-o", str(out)], stdout=subprocess.PIPE,
                         stderr=slave, env=env(**envs))
    os.close(slave)
    got = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    p.wait(timeout=300)
    os.close(master)
    assert p.returncode == 0, got
    return got


def test_no_escapes_for_dumb_terminals(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws")
    assert b"\x1b[" in _build_on_a_pty(nexus, ws, tmp_path / "b1", TERM="xterm")
    assert b"\x1b" not in _build_on_a_pty(nexus, ws, tmp_path / "b2", TERM="dumb")
    assert b"\x1b" not in _build_on_a_pty(nexus, ws, tmp_path / "b3", TERM="xterm",
                                          NO_COLOR="1")


def test_runtime_short_options_and_unchecked_signature(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws")
    assert run(nexus, "keygen", "-o", tmp_path / "k").returncode == 0
    r = run(nexus, "build", ws, "-o", tmp_path / "b", "--key", tmp_path / "k.key", env=env())
    assert r.returncode == 0, r.stderr
    cli = tmp_path / "b" / "bin" / "nexus_cli"
    r = run(cli, "run", "-t", "free money", "-t", "lunch at noon")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 2
    r = run(cli, "info")
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("bundle"))
    assert "signature present, not checked" in line and "(built" in line
    assert " signed" not in line.replace("signature", "")
    doc = json.loads(run(cli, "info", "--json").stdout)
    assert doc["signed"] is True and doc["signature_checked"] is False


def test_teacher_that_is_not_weights_reads_once(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws")
    assert run(nexus, "build", ws, "-o", tmp_path / "b", env=env()).returncode == 0
    r = run(nexus, "verify", tmp_path / "b", "--teacher", ws / "README.md", "--json")
    assert r.returncode == 1
    f = [x for x in json.loads(r.stdout)["findings"] if x["code"] == "teacher-unreadable"]
    assert len(f) == 1
    msg = f[0]["message"]
    # one sentence, whole: the path once, the formats once, the advice at the end
    assert msg.count(str(ws / "README.md")) == 1, msg
    assert msg.count("is not ONNX, a PyTorch zip checkpoint or safetensors") == 1, msg
    assert msg.endswith("name the teacher's weights file"), msg


def test_serving_code_findings_name_the_workspace_file_once(nexus, tmp_path):
    from workspace import UTILS_PY
    ws = make_workspace(tmp_path / "ws", utils_py=UTILS_PY + (
        "\n\ndef helper():\n    import importlib\n"
        "    return importlib.import_module(\"teacher_model\")\n"))
    r = run(nexus, "build", ws, "-o", tmp_path / "b", env=env())
    assert r.returncode == 1
    assert "serving/utils.py:13" in r.stderr and "src/utils.py" not in r.stderr
    # the line with three findings is printed once, the other codes folded in
    assert r.stderr.count("serving/utils.py:13") == 1, r.stderr
    assert "(the same line also:" in r.stderr


def test_filter_leaves_nothing_where_imports_were_removed(nexus, tmp_path):
    from workspace import INFERENCE_PY
    src = INFERENCE_PY.replace("import teacher_model\n",
                               "import teacher_model  # noqa: F401\n")
    ws = make_workspace(tmp_path / "ws", inference_py=src)
    r = run(nexus, "build", ws, "-o", tmp_path / "b", env=env())
    assert r.returncode == 0, r.stderr
    out = (tmp_path / "b" / "src" / "inference.py").read_text()
    assert "pass" not in out and "noqa" not in out
    assert out.count("\n") == src.count("\n")   # line numbers kept


def test_size_limit_names_the_key_in_readable_units(nexus, tmp_path):
    ws = make_workspace(tmp_path / "ws", extra_yaml="limits: {max_model_bytes: 100}\n")
    r = run(nexus, "build", ws, "-o", tmp_path / "b")
    assert r.returncode == 3
    assert "is 1.2 KiB, more than limits.max_model_bytes (100 bytes)" in r.stderr, r.stderr
    assert "raise limits.max_model_bytes in nexus.yaml" in r.stderr


def test_shipped_nexus_cli_is_stripped_with_a_debuglink(nexus_cli):
    """Every bundle carries bin/nexus_cli: no debug info nor symbol table in
    it, the debug info beside the build (build/nexus_cli.debug)."""
    import pathlib
    import subprocess
    if os.environ.get("NEXUS_SANITIZED"):
        import pytest
        pytest.skip("a sanitizer build keeps its symbols")
    sections = subprocess.run(["readelf", "-S", "-W", nexus_cli], capture_output=True,
                              text=True, check=True).stdout
    assert ".debug_info" not in sections and ".symtab" not in sections
    assert ".gnu_debuglink" in sections
    # The section ends in the debug file's CRC32, raw bytes readelf prints
    # as they are: read bytes, not text.
    link = subprocess.run(["readelf", "--string-dump=.gnu_debuglink", nexus_cli],
                          capture_output=True, check=True).stdout
    assert b"nexus_cli.debug" in link
    debug = pathlib.Path(nexus_cli).parents[3] / "nexus_cli.debug"
    assert ".debug_info" in subprocess.run(["readelf", "-S", "-W", debug], capture_output=True,
                                           text=True, check=True).stdout
