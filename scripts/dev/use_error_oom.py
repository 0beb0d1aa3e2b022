#!/usr/bin/python3
"""Replace the hand-written out-of-memory error by nx_error_oom.

    use_error_oom.py [DIR...]        (default: src tests)

    nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory")
 -> nx_error_oom(err, path)

Idempotent; re-run it after merging code that still writes the long form
(issue #14).  Other NX_ENOMEM messages (with a format) are left alone.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
LONG = re.compile(r'nx_error_set\(\s*([^,()]+?),\s*NX_ENOMEM,\s*([^,()]+?),\s*0,\s*-1,\s*'
                  r'"out of memory"\s*\)')


def main():
    dirs = sys.argv[1:] or ["src", "tests"]
    for d in dirs:
        for p in sorted((ROOT / d).rglob("*.[ch]")):
            if p.name == "error.c" and p.parent.name == "util":
                continue   # nx_error_oom itself
            text = p.read_text()
            out, n = LONG.subn(r"nx_error_oom(\1, \2)", text)
            if n:
                p.write_text(out)
                print(f"{p.relative_to(ROOT)}: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
