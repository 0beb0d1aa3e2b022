#!/usr/bin/python3
"""Print the file-level cycles of libnexus: two .c files that call each
other (directly or through others) by global symbols, and #include cycles.

    scripts/dev/cycles.py [BUILD [OBJ...]]   (default build/; needs `make` first)

With OBJ, only those objects (BUILD/obj/src/...o, what the Makefile builds
now: an object left behind by a removed source does not count); without,
every object under BUILD/obj/src but the programs'.  `make lint` runs it.

A cycle is a strongly connected component of the graph "a.o uses a symbol
defined in b.o".  Exit status 1 when there is one, which fails `make
lint`.  Reads objects with nm(1); no Python packages needed.
"""
import os
import re
import subprocess
import sys


def objects(build):
    top = os.path.join(build, "obj", "src")
    out = []
    for d, _, files in os.walk(top):
        if os.sep + "runtime" in d or os.sep + "cli" in d:
            continue
        out += [os.path.join(d, f) for f in files if f.endswith(".o")]
    return sorted(out)


def symbols(obj):
    text = subprocess.run(["nm", "-P", obj], capture_output=True, text=True,
                          check=True).stdout
    defined, undefined = set(), set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(name)
        elif kind.isupper():
            defined.add(name)
    return defined, undefined


def sccs(graph):
    """Tarjan's algorithm, iterative enough for a few hundred nodes."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def symbol_graph(build, objs=None):
    objs = objs or objects(build)
    top = os.path.join(build, "obj") + os.sep
    owner, uses = {}, {}
    for o in objs:
        name = o[len(top):-2] + ".c"
        d, u = symbols(o)
        for s in d:
            owner[s] = name
        uses[name] = u
    graph, why = {}, {}
    for f, u in uses.items():
        for s in u:
            g = owner.get(s)
            if g and g != f:
                graph.setdefault(f, set()).add(g)
                why.setdefault((f, g), []).append(s)
    return graph, why


def include_graph(root="src"):
    graph = {}
    pat = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(d, f)
            with open(path, encoding="utf-8") as fh:
                for inc in pat.findall(fh.read()):
                    for base in (d, "src", "include"):
                        cand = os.path.normpath(os.path.join(base, inc))
                        if os.path.exists(cand):
                            graph.setdefault(path, set()).add(cand)
                            break
    return graph


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    graph, why = symbol_graph(build, sys.argv[2:])
    cycles = sccs(graph)
    for comp in cycles:
        print("symbol cycle: " + " ".join(comp))
        for a in comp:
            for b in comp:
                if (a, b) in why:
                    names = sorted(why[(a, b)])
                    more = f" (+{len(names) - 4})" if len(names) > 4 else ""
                    print(f"    {a} -> {b}: {' '.join(names[:4])}{more}")
    inc = sccs(include_graph())
    for comp in inc:
        print("include cycle: " + " ".join(comp))
    print(f"{len(cycles)} symbol cycle(s), {len(inc)} include cycle(s)")
    return 1 if cycles or inc else 0


if __name__ == "__main__":
    sys.exit(main())
