#!/usr/bin/python3
"""Fail when an archive of libnexus exports a symbol without the nx_ prefix.

    check_symbols.py ARCHIVE.a ...

Every global symbol of the library is either public (`nx_<verb>`, declared
in include/nexus/) or a cross-file internal of one folder
(`nx_<module>__<verb>`, declared in that folder's private header); anything
else is `static`.  A program linking libnexus can then use any name outside
nx_ without a clash.  `make check-symbols` (part of `make check`) runs this;
scripts/dev/rename_symbols.py renames offenders from a list.
"""
import subprocess
import sys


def exported(path):
    """{symbol: member} of the global symbols an archive defines."""
    out = subprocess.run(["nm", "-P", "-A", "--defined-only", path],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        where, _, rest = line.rpartition(": ")
        parts = rest.split()
        if len(parts) < 2 or not parts[1].isupper():
            continue
        member = where[where.find("[") + 1:-1] if "[" in where else where
        found[parts[0]] = member
    return found


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: check_symbols.py ARCHIVE.a ...")
    bad = []
    for path in sys.argv[1:]:
        for name, member in sorted(exported(path).items()):
            if not name.startswith("nx_"):
                bad.append(f"{path}({member}): {name}")
    for line in bad:
        print(line, file=sys.stderr)
    if bad:
        print(f"check-symbols: {len(bad)} exported symbol(s) without the nx_ prefix; "
              "make them static or name them nx_<module>__<verb> "
              "(scripts/dev/rename_symbols.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
