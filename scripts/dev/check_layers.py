#!/usr/bin/python3
"""Fail when a layer of libnexus uses a symbol defined only in a later layer,
or when the production runtime (bin/nexus_cli) uses one outside its layers.

    check_layers.py --runtime RT.o... --production N -- LOWEST.a ... HIGHEST.a

The archives are given lowest layer first; the first N are the production
subset.  `make check-layers` runs this; the layers are listed in the Makefile.
"""
import argparse
import os
import subprocess
import sys


def nm(path):
    """(defined, undefined) global symbols of an archive or object."""
    out = subprocess.run(["nm", "-P", "-A", path], capture_output=True,
                         text=True, check=True).stdout
    defined, undefined = {}, {}
    for line in out.splitlines():
        where, _, rest = line.rpartition(": ")
        parts = rest.split()
        if len(parts) < 2:
            continue
        member = where[where.find("[") + 1:-1] if "[" in where else where
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.setdefault(name, set()).add(member)
        elif kind.isupper():
            defined[name] = member
    return defined, undefined


def layer(path):
    return os.path.basename(path).removeprefix("libnx_").removesuffix(".a")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runtime", nargs="*", default=[])
    ap.add_argument("--production", type=int, required=True)
    ap.add_argument("archives", nargs="+")
    a = ap.parse_args()

    layers = [(layer(p), *nm(p)) for p in a.archives]
    owner = {}
    for i, (name, defined, _) in enumerate(layers):
        for sym, member in defined.items():
            owner.setdefault(sym, (i, name, member))
    bad = 0
    for i, (name, _, undefined) in enumerate(layers):
        for sym, users in sorted(undefined.items()):
            o = owner.get(sym)
            if o and o[0] > i:
                bad += 1
                print(f"check-layers: {name} ({', '.join(sorted(users))}) uses {sym}, "
                      f"defined in the higher layer {o[1]} ({o[2]})", file=sys.stderr)
    for obj in a.runtime:
        for sym in sorted(nm(obj)[1]):
            o = owner.get(sym)
            if o and o[0] >= a.production:
                bad += 1
                print(f"check-layers: the runtime ({obj}) uses {sym}, defined in {o[1]} "
                      f"({o[2]}), outside the production layers", file=sys.stderr)
    if bad:
        print(f"check-layers: {bad} reference(s) against the layer order "
              "(docs/INTERNALS.md); move the code down or the caller up", file=sys.stderr)
        return 1
    print(f"check-layers: {len(layers)} layers in order, runtime within the first "
          f"{a.production}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
