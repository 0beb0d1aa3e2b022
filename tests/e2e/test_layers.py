"""scripts/dev/check_layers.py (make check-layers): a layer that uses a
symbol only a higher layer defines fails, and so does a runtime that uses
a layer outside the production subset."""
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "scripts" / "dev" / "check_layers.py"


def archive(tmp, name, code):
    src = tmp / f"{name}.c"
    src.write_text(code)
    obj = tmp / f"{name}.o"
    subprocess.run(["cc", "-c", "-o", obj, src], check=True)
    ar = tmp / f"libnx_{name}.a"
    subprocess.run(["ar", "rcs", ar, obj], check=True)
    return obj, ar


def check(*args):
    return subprocess.run([sys.executable, SCRIPT, *map(str, args)], capture_output=True,
                          text=True)


def test_upward_reference_fails(tmp_path):
    _, low = archive(tmp_path, "low", "int hi_fn(void);\nint lo_fn(void) { return hi_fn(); }\n")
    _, high = archive(tmp_path, "high", "int hi_fn(void) { return 1; }\n")
    r = check("--production", "1", "--", low, high)
    assert r.returncode == 1
    assert "low (low.o) uses hi_fn, defined in the higher layer high (high.o)" in r.stderr
    # the same two archives the other way round are in order
    assert check("--production", "1", "--", high, low).returncode == 0


def test_runtime_outside_production_fails(tmp_path):
    _, util = archive(tmp_path, "util", "int u_fn(void) { return 0; }\n")
    _, top = archive(tmp_path, "top", "int t_fn(void) { return 0; }\n")
    rt, _ = archive(tmp_path, "rt", "int t_fn(void);\nint u_fn(void);\n"
                    "int main(void) { return t_fn() + u_fn(); }\n")
    r = check("--runtime", rt, "--production", "1", "--", util, top)
    assert r.returncode == 1
    assert "uses t_fn, defined in top" in r.stderr and "u_fn" not in r.stderr
    assert check("--runtime", rt, "--production", "2", "--", util, top).returncode == 0


SYMBOLS = ROOT / "scripts" / "dev" / "check_symbols.py"


def test_exported_symbol_without_prefix_fails(tmp_path):
    """make check-symbols: a global without nx_ fails; static ones and
    nx_ ones (public or nx_<module>__<verb>) pass."""
    _, bad = archive(tmp_path, "bad", "int nx_ok(void) { return 0; }\n"
                     "int walk_graph(void) { return 1; }\n")
    _, good = archive(tmp_path, "good", "static int walk(void) { return 0; }\n"
                      "int nx_onnx__walk_graph(void) { return walk(); }\n"
                      "int nx_count = 1;\n")
    r = subprocess.run([sys.executable, SYMBOLS, bad, good], capture_output=True, text=True)
    assert r.returncode == 1
    assert "(bad.o): walk_graph" in r.stderr and "nx_ok" not in r.stderr
    assert "1 exported symbol(s)" in r.stderr
    r = subprocess.run([sys.executable, SYMBOLS, good], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


RENAME = ROOT / "scripts" / "dev" / "rename_symbols.py"


def test_rename_symbols_is_idempotent_and_leaves_file_names(tmp_path):
    """scripts/dev/rename_symbols.py, which the lead re-runs after merges:
    identifiers renamed, file names in comments kept, a second run a no-op."""
    lst = tmp_path / "renames.txt"
    lst.write_text("# comment\nwalk_graph nx_onnx__walk_graph\nex_oom nx_export__oom\n")
    src = tmp_path / "src"
    src.mkdir()
    c = src / "a.c"
    c.write_text("/* see walk_graph.c and lib/ex_oom */\n"
                 "int walk_graph(void);\nint f(void) { return walk_graph() + ex_oom(0); }\n"
                 "int walk_graphs;\n")
    cmd = [sys.executable, RENAME, "--list", lst, src]
    assert subprocess.run([*cmd[:-1], "--check", src], capture_output=True).returncode == 1
    subprocess.run(cmd, check=True, capture_output=True)
    assert c.read_text() == ("/* see walk_graph.c and lib/ex_oom */\n"
                             "int nx_onnx__walk_graph(void);\n"
                             "int f(void) { return nx_onnx__walk_graph() + nx_export__oom(0); }\n"
                             "int walk_graphs;\n")
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert r.stdout == ""
    assert subprocess.run([*cmd[:-1], "--check", src], capture_output=True).returncode == 0


REGROUP = ROOT / "scripts" / "dev" / "regroup_tests.py"


def test_regroup_rewrites_imports_inside_functions(tmp_path):
    """scripts/dev/regroup_tests.py: an import of a moved helper inside a
    function (in another file, or in a moved test) names the helper module
    afterwards; before, only top-level imports were rewritten and such a
    test failed when it ran."""
    (tmp_path / "scripts" / "dev").mkdir(parents=True)
    script = tmp_path / "scripts" / "dev" / "regroup_tests.py"
    script.write_text(REGROUP.read_text())
    e2e = tmp_path / "tests" / "e2e"
    e2e.mkdir(parents=True)
    (e2e / "conftest.py").write_text('"""fixtures"""\n')
    (e2e / "test_pass9.py").write_text(
        '"""a red-team pass"""\n\n\ndef payload():\n    return 9\n\n\n'
        'def test_payload():\n    from test_pass9 import payload as p\n    assert p() == 9\n')
    (e2e / "test_other.py").write_text(
        '"""another file"""\n\n\ndef test_uses_payload():\n'
        '    if True:\n        from test_pass9 import payload\n    assert payload() == 9\n')
    rules = tmp_path / "map"
    rules.write_text("helpers test_pass9.py -> payloads.py\n"
                     "test_pass9.py -> verify/test_thing.py\n")
    r = subprocess.run([sys.executable, script, "--map", rules, "--no-collect"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (e2e / "test_pass9.py").exists()
    assert "        from payloads import payload\n" in (e2e / "test_other.py").read_text()
    moved = (e2e / "verify" / "test_thing.py").read_text()
    assert "    from payloads import payload as p\n" in moved
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "--rootdir", e2e, e2e], capture_output=True, text=True, cwd=e2e)
    assert r.returncode == 0 and "2 passed" in r.stdout, r.stdout + r.stderr


CYCLES = ROOT / "scripts" / "dev" / "cycles.py"


def test_file_cycle_fails(tmp_path):
    """scripts/dev/cycles.py (make lint): two files of libnexus that call
    each other fail, naming the symbols; calls one way pass."""
    src = tmp_path / "obj" / "src" / "lib" / "x"
    src.mkdir(parents=True)

    def obj(name, code):
        (tmp_path / f"{name}.c").write_text(code)
        subprocess.run(["cc", "-c", "-o", src / f"{name}.o", tmp_path / f"{name}.c"], check=True)
        return src / f"{name}.o"

    drv = obj("drv", "int nx_x__part(void);\nint nx_x_run(void) { return nx_x__part(); }\n"
                     "int nx_x__help(void) { return 1; }\n")
    part = obj("part", "int nx_x__help(void);\nint nx_x__part(void) { return nx_x__help(); }\n")
    r = subprocess.run([sys.executable, CYCLES, tmp_path, drv, part], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 1
    assert "src/lib/x/part.c -> src/lib/x/drv.c: nx_x__help" in r.stdout
    assert "1 symbol cycle(s)" in r.stdout
    # the helper moved down into a support file: no cycle
    drv = obj("drv", "int nx_x__part(void);\nint nx_x_run(void) { return nx_x__part(); }\n")
    ctx = obj("ctx", "int nx_x__help(void) { return 1; }\n")
    r = subprocess.run([sys.executable, CYCLES, tmp_path, drv, part, ctx], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stdout
