#!/usr/bin/python3
"""verify_teacher_free.py - the CI entry point of the verify gate (docs/TRV.md).

A thin wrapper: runs `nexus verify --json BUNDLE [options...]`, prints a
one-screen summary (checks, then FAIL/WARN findings) and exits with nexus's
own status: 0 PASS/WARN (1 for WARN with --strict), 1 FAIL, 2 usage,
3 environment.  Every option after BUNDLE is passed to nexus verify.

The nexus binary is $NEXUS, else `nexus` on PATH, else build/bin/nexus of
this source tree.
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys


def find_nexus():
    if os.environ.get("NEXUS"):
        return os.environ["NEXUS"]
    found = shutil.which("nexus")
    if found:
        return found
    return str(pathlib.Path(__file__).resolve().parents[1] / "build" / "bin" / "nexus")


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nusage: verify_teacher_free.py BUNDLE [nexus verify options...]")
        return 0 if len(argv) >= 2 else 2
    cmd = [find_nexus(), "verify", "--json"] + argv[2:] + ["--", argv[1]]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        print(f"verify_teacher_free: cannot run {cmd[0]}: {e}", file=sys.stderr)
        return 3
    sys.stderr.write(r.stderr)
    if r.returncode in (0, 1) and r.stdout.strip():
        rep = json.loads(r.stdout)
        for c in rep["checks"]:
            print(f"{c['status']:<4}  {c['id']}")
        for f in rep["findings"]:
            if f["severity"] != "INFO":
                where = f["path"] + (f":{f['line']}" if f.get("line") else "")
                print(f"{f['severity']} {f['check']} {f['code']} {where or '-'}: {f['message']}")
        print(f"teacher-free verdict: {rep['verdict']} ({rep['bundle']})")
    return r.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
