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
