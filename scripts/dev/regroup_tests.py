#!/usr/bin/python3
"""Regroup end-to-end tests by the check they test (tests/e2e/verify/test_integrity.py
...) instead of the red-team pass that wrote them, from a mapping file.

    regroup_tests.py [--map FILE] [--no-collect] [--dry-run]

The mapping (default scripts/dev/regroup_tests.map) has one rule a line:

    test_redteam6.py -> verify/test_capacity.py    every test of a source file
                                                    not named below goes there
    test_flipped_byte -> verify/test_integrity.py   one test (a function or class)
    helpers test_redteam3.py -> onnx_bytes.py       where a source's helpers go
    fixtures test_insider.py: release_key gate      fixtures of a file that stays,
                                                    which other files import
    rename test_redteam5.py: release_key -> release_key_file
                                                    a fixture renamed in its move
                                                    (two sources had one name)

Paths are relative to tests/e2e.  A source file (one with a `->` default
line, or a test of its own named) is taken apart with the ast module:

- each test goes to its destination, an existing file (appended) or a new
  one; a new folder gets an __init__.py, so basenames may repeat;
- each fixture goes to the end of tests/e2e/conftest.py;
- everything else at top level (helpers, constants) goes to the source's
  helper module;
- each piece keeps the comment lines just above it, and gets the imports
  it uses (the source's own, and the helper modules' names it needs);
- the source file is deleted.

Other test files that import from a source (or the fixtures named by a
`fixtures` line) import helpers from the helper modules instead, and
fixtures not at all: pytest finds them in conftest.py.  This holds for
imports inside functions too, in every file including the moved pieces.

It fails loudly, changing nothing, on a test of a source no rule places,
on two pieces of one name in one file, and on a fixture name taken twice
in conftest.py.  Unless --no-collect, it counts the tests pytest collects
before and after (`pytest --collect-only -q tests/e2e`), prints both, and
exits 1 when they differ.  Re-run it after a merge brings tests to a
source file: add a line for a test that does not belong with its source's
default, or a default line for a new source (test_redteam6.py)."""
import argparse
import ast
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
E2E = ROOT / "tests" / "e2e"
PYTHON = "/usr/bin/python3"
MAP = {}
LOCAL = {"conftest"}   # the suite's own modules, with the helper modules to be written
MARK = "# ---- fixtures moved here by scripts/dev/regroup_tests.py ----"


class Fail(Exception):
    pass


def read_map(path):
    m = {"default": {}, "test": {}, "helpers": {}, "fixtures": {}, "rename": {}, "doc": {}}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{path.relative_to(ROOT)}:{n}"
        if raw.startswith("doc "):
            f, _, text = raw[len("doc "):].partition(":")
            m["doc"][f.strip()] = (m["doc"].get(f.strip(), "") + " " + text.strip()).strip()
        elif line.startswith("helpers "):
            src, _, dst = line[len("helpers "):].partition("->")
            m["helpers"][src.strip()] = dst.strip()
        elif line.startswith("fixtures "):
            src, _, names = line[len("fixtures "):].partition(":")
            m["fixtures"].setdefault(src.strip(), []).extend(names.split())
        elif line.startswith("rename "):
            src, _, rest = line[len("rename "):].partition(":")
            old, _, new = rest.partition("->")
            m["rename"].setdefault(src.strip(), {})[old.strip()] = new.strip()
        elif "->" in line:
            left, _, dst = (s.strip() for s in line.partition("->"))
            if left.endswith(".py"):
                m["default"][left] = dst
            else:
                if left in m["test"] and m["test"][left] != dst:
                    raise Fail(f"{where}: {left} mapped twice")
                m["test"][left] = dst
        else:
            raise Fail(f"{where}: not a rule: {raw}")
    return m


def is_fixture(node):
    for d in getattr(node, "decorator_list", []):
        f = d.func if isinstance(d, ast.Call) else d
        if ast.unparse(f) in ("pytest.fixture", "fixture"):
            return True
    return False


def bound_names(node):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    return []


def used_names(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


class Piece:
    """A top-level statement with the comment lines just above it."""

    def __init__(self, src, node, lines):
        self.src, self.node = src, node
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        while first > 1 and lines[first - 2].lstrip().startswith("#"):
            first -= 1
        self.first = first
        self.text = "\n".join(lines[first - 1:node.end_lineno]).rstrip() + "\n"
        self.names = bound_names(node)
        self.uses = used_names(node)

    def rename(self, table):
        for old, new in table.items():
            self.text = re.sub(rf"\b{re.escape(old)}\b", new, self.text)
            self.names = [table.get(n, n) for n in self.names]
            self.uses = {table.get(n, n) for n in self.uses}


class Module:
    def __init__(self, path):
        self.path = path
        self.text = path.read_text()
        self.tree = ast.parse(self.text)
        self.lines = self.text.splitlines()
        self.imports = {}   # bound name -> import statement for it alone
        for node in self.tree.body:
            if isinstance(node, ast.Import):
                for a in node.names:
                    self.imports[a.asname or a.name.split(".")[0]] = ast.unparse(
                        ast.Import(names=[a]))
            elif isinstance(node, ast.ImportFrom):
                for a in node.names:
                    self.imports[a.asname or a.name] = ast.unparse(
                        ast.ImportFrom(module=node.module, names=[a], level=node.level))


def fmt_import(s):
    """One import statement as lines of at most 99 characters."""
    if len(s) <= 99 or " import " not in s or not s.startswith("from "):
        return [s]
    head, _, names = s.partition(" import ")
    out, line = [], head + " import ("
    for i, n in enumerate(names.split(", ")):
        piece = n + (", " if i < len(names.split(", ")) - 1 else ")")
        if len(line) + len(piece.rstrip()) > 99:
            out.append(line.rstrip())
            line = "    "
        line += piece
    return out + [line]


def import_lines(stmts):
    """Import statements as the suite writes them: the standard library,
    then other packages, then the suite's own modules, a blank line between;
    in each, plain imports first, then one from-import line per module."""
    groups = ([], [], [])
    plain, froms = set(), {}
    for s in stmts:
        if s.startswith("import "):
            plain.add(s)
        else:
            mod, _, name = s[len("from "):].partition(" import ")
            froms.setdefault(mod, set()).add(name)

    def group(mod):
        top = mod.split(".")[0]
        if top in sys.stdlib_module_names:
            return 0
        local = (E2E / f"{top}.py").exists() or (E2E / top).is_dir() or top in LOCAL
        return 2 if local else 1

    for st in sorted(plain):
        groups[group(st.split()[1])].append(st)
    for mod in sorted(froms):
        groups[group(mod)].append(f"from {mod} import {', '.join(sorted(froms[mod]))}")
    out = []
    for g in groups:
        if g:
            out += [""] if out else []
            for st in sorted(g, key=lambda l: (l.startswith("from"), l)):
                out += fmt_import(st)
    return out


def module_name(rel):
    return rel[:-3].replace("/", ".")


def plan(m):
    """What goes where: {file: [Piece]}, the helper homes, the fixtures."""
    sources = set(m["default"]) | {s for s in m["helpers"]}
    mods = {s: Module(E2E / s) for s in sorted(sources) if (E2E / s).exists()}
    dest, helpers, fixtures, unmapped = {}, {}, [], []
    home = {}      # (source, helper name) -> the module it is imported from
    texts = {}     # helper name -> (its text, module), to share identical copies
    for s, mod in mods.items():
        ren = m["rename"].get(s, {})
        for node in mod.tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                    and node is mod.tree.body[0]:
                continue   # the module docstring
            p = Piece(s, node, mod.lines)
            p.rename(ren)
            name = p.names[0] if p.names else None
            if is_fixture(node):
                fixtures.append(p)
            elif name and name.startswith(("test_", "Test")):
                d = m["test"].get(name) or m["default"].get(s)
                if not d:
                    unmapped.append(f"{s}::{name}")
                    continue
                dest.setdefault(d, []).append(p)
            else:
                if s not in m["helpers"]:
                    raise Fail(f"{s}: {name or ast.unparse(node)[:40]} is a helper, and no "
                               f"'helpers {s} -> FILE' line says where helpers go")
                h = m["helpers"][s]
                if name in texts and texts[name][0] == p.text:
                    home[(s, name)] = texts[name][1]   # the same helper twice: once
                    continue
                helpers.setdefault(h, []).append(p)
                for n in p.names:
                    home[(s, n)] = module_name(h)
                    texts.setdefault(n, (p.text, module_name(h)))
    if unmapped:
        raise Fail("tests no rule places (add 'NAME -> FILE' lines, or a default "
                   "'SOURCE.py -> FILE'):\n  " + "\n  ".join(unmapped))
    for f, names in m["fixtures"].items():
        mod = Module(E2E / f)
        mods[f] = mod
        for node in mod.tree.body:
            if is_fixture(node) and node.name in names:
                fixtures.append(Piece(f, node, mod.lines))
    return mods, dest, helpers, fixtures, home


def bound_names_all(mod):
    return [n for node in mod.tree.body for n in bound_names(node)]


def rebase_file_paths(pieces, dest):
    """Path(__file__).resolve().parents[N] in a piece moved to another
    depth (verify/test_x.py) names the same folder as before."""
    for p in pieces:
        delta = len(pathlib.Path(dest).parts) - len(pathlib.Path(p.src).parts)
        if delta:
            p.text = re.sub(r"(Path\(__file__\)\.resolve\(\)\.parents\[)(\d+)\]",
                            lambda m: f"{m.group(1)}{int(m.group(2)) + delta}]", p.text)


def check_unique(where, pieces, existing=()):
    seen = set(existing)
    for p in pieces:
        for n in p.names:
            if n in seen:
                raise Fail(f"{where}: two pieces named {n} ({p.src}); map one elsewhere "
                           f"or rename it")
            seen.add(n)


def home_of(home, mods, src, n):
    """The helper module piece of src imports n from, "" for a fixture now
    in conftest.py, or None (n is not from a source file)."""
    if (src, n) in home:
        return home[(src, n)]
    m = re.match(r"from (test_\w+) import (\w+)$", mods[src].imports.get(n, ""))
    if not m:
        return None
    if (f"{m.group(1)}.py", m.group(2)) in home:
        return home[(f"{m.group(1)}.py", m.group(2))]
    return moved_before(m.group(1), m.group(2))


def moved_before(module, n):
    """Where a name of a source file regrouped by an earlier run went: its
    helper module, "" for conftest.py, None if module is not such a file."""
    h = MAP["helpers"].get(f"{module}.py")
    if not h or (E2E / f"{module}.py").exists():
        return None
    if (E2E / h).exists() and n in bound_names_all(Module(E2E / h)):
        return module_name(h)
    if n in bound_names_all(Module(E2E / "conftest.py")):
        return ""
    raise Fail(f"{module}.py, regrouped before, had {n}: it is in neither {h} nor conftest.py")


def imports_for(pieces, mods, home, own, fixture_names, have=(), where=""):
    """The import statements pieces need: their sources' own imports, a
    source's helper from its helper module, no moved fixture (pytest finds
    those in conftest.py), nothing the file defines itself (have)."""
    stmts, binder = set(), {}
    defined = {n for p in pieces for n in p.names} | set(have)
    for p in pieces:
        src_imports = mods[p.src].imports
        for n in sorted(p.uses - defined):
            h = home_of(home, mods, p.src, n)
            if h == "":
                continue
            if h:
                if h == own:
                    continue
                s = f"from {h} import {n}"
            elif n in src_imports:
                s = src_imports[n]
                if s.startswith(f"from {own} import ") or (
                        n in fixture_names and s.startswith("from test_")):
                    continue
            else:
                continue
            if binder.setdefault(n, s) != s:
                raise Fail(f"{where}: {n} would be imported twice ({binder[n]}; {s}): "
                           f"map the tests that use one of them to another file")
            stmts.add(s)
    return sorted(stmts)


def wrap(doc):
    import textwrap
    return "\n".join(textwrap.wrap(doc, 76)) + ("\n" if len(doc) > 70 else "")


def render_new(rel, pieces, imports, doc):
    body = "\n\n".join(p.text for p in pieces)
    lines = import_lines(imports)
    head = f'"""{doc}"""\n' + ("\n".join(lines) + "\n" if lines else "")
    return head + "\n\n" + body


def append_to(path, pieces, imports, text=None):
    """path's text with pieces added: one of a name the file already defines
    replaces that definition (a test a merge changed in its old file, then
    moved again), the others go at the end; imports it lacks go after its
    last top-level import."""
    text = path.read_text() if text is None else text
    tree = ast.parse(text)
    lines = text.splitlines()
    defs = {n: node for node in tree.body for n in bound_names(node)}
    have = {a.asname or a.name.split(".")[0] for n in tree.body
            if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    new = []
    for p in sorted(pieces, key=lambda p: -defs[p.names[0]].lineno
                    if p.names and p.names[0] in defs else 0):
        node = defs.get(p.names[0]) if p.names else None
        if node is None:
            new.append(p)
            continue
        old = Piece(str(path), node, lines)
        if old.text != p.text:
            lines[old.first - 1:node.end_lineno] = p.text.rstrip("\n").splitlines()
            print(f"{path.relative_to(ROOT)}: {p.names[0]} replaced by the version of {p.src}")
    need = []
    for s in filter(None, imports):
        node = ast.parse(s).body[0]
        missing = [a for a in node.names if (a.asname or a.name.split(".")[0]) not in have]
        if missing:
            node.names = missing
            need += fmt_import(ast.unparse(node))
    if need:
        last = max((n.end_lineno for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))),
                   default=0)
        lines[last:last] = need
    text = "\n".join(lines) + "\n"
    if not new:
        return text
    return text.rstrip() + "\n\n\n" + "\n\n".join(p.text for p in new)


def rewrite_importers(mods, home, fixture_names, skip, writes):
    """Other test files: imports of a source's helpers come from the helper
    modules, imports of moved fixtures go.  Imports inside functions (a
    test that imports a helper where it uses it) are rewritten too, at
    their indentation, also in the files this run writes (skip), whose
    top-level imports imports_for already chose."""
    out = {}
    moved = {pathlib.Path(s).stem for s in mods}
    for path in sorted(set(E2E.rglob("*.py")) | set(writes)):
        rel = str(path.relative_to(E2E))
        if path.suffix != ".py" or (rel in skip and path not in writes):
            continue
        text = writes[path] if path in writes else path.read_text()
        tree = ast.parse(text)
        lines = text.splitlines()
        top = set(map(id, tree.body))
        edits = []
        for node in ast.walk(tree):
            if not (isinstance(node, ast.ImportFrom) and (node.module in moved or (
                    f"{node.module}.py" in MAP["helpers"] and
                    not (E2E / f"{node.module}.py").exists()))):
                continue
            nested = id(node) not in top
            if rel in skip and not nested:
                continue
            keep, new = [], []
            for a in node.names:
                n = a.asname or a.name
                if n in fixture_names:
                    continue
                h = home.get((f"{node.module}.py", a.name))
                if h is None:
                    h = moved_before(node.module, a.name)
                if h == "":
                    continue
                if h:
                    new.append(f"from {h} import {a.name}" +
                               (f" as {a.asname}" if a.asname else ""))
                else:
                    keep.append(a)
            if keep:
                new.insert(0, ast.unparse(ast.ImportFrom(module=node.module, names=keep, level=0)))
            pad = " " * node.col_offset
            body = [pad + l if l else l for l in import_lines(new)] if new else []
            if nested:
                # a nested import is one statement of a block: no blank
                # lines between groups, and "pass" if nothing is left
                body = [l for l in body if l] or [pad + "pass"]
            edits.append((node.lineno, node.end_lineno, body))
        if not edits:
            continue
        for a, b, new in sorted(edits, reverse=True):
            lines[a - 1:b] = new
        out[path] = "\n".join(lines) + "\n"
    return out


def drop_unused_imports(text):
    """Remove the one-name top-level imports nothing in text uses any more."""
    tree = ast.parse(text)
    used = used_names(tree) | {n.value.id for n in ast.walk(tree)
                               if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    lines = text.splitlines()
    for node in reversed(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and len(node.names) == 1:
            a = node.names[0]
            if (a.asname or a.name.split(".")[0]) not in used and "noqa" not in \
                    lines[node.lineno - 1]:
                del lines[node.lineno - 1:node.end_lineno]
    return "\n".join(lines) + "\n"


def collect_count():
    r = subprocess.run([PYTHON, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                        "tests/e2e"], cwd=ROOT, capture_output=True, text=True)
    ids = [l for l in r.stdout.splitlines() if "::" in l]
    if r.returncode not in (0, 5):
        raise Fail("pytest --collect-only failed:\n" + r.stdout[-3000:] + r.stderr[-2000:])
    return len(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--map", default=str(ROOT / "scripts/dev/regroup_tests.map"))
    ap.add_argument("--no-collect", action="store_true")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args()
    try:
        m = read_map(pathlib.Path(a.map))
        MAP.update(m)
        before = None if a.no_collect or a.dry_run else collect_count()
        mods, dest, helpers, fixtures, home = plan(m)
        LOCAL.update(module_name(h).split(".")[0] for h in helpers)
        LOCAL.update(module_name(d).split(".")[0] for d in dest)
        fixture_names = {n for p in fixtures for n in p.names}
        conftest = E2E / "conftest.py"
        cm = Module(conftest)
        there = {n: Piece("conftest.py", node, cm.lines).text
                 for node in cm.tree.body for n in bound_names(node)}
        # moved by an earlier run, unchanged since: nothing to do
        fixtures = [p for p in fixtures if there.get(p.names[0]) != p.text]
        check_unique("conftest.py", fixtures, there)
        writes = {}
        for h, pieces in helpers.items():
            rebase_file_paths(pieces, h)
            check_unique(h, pieces)
            imps = imports_for(pieces, mods, home, module_name(h), fixture_names,
                               where=h)
            srcs = ", ".join(sorted({p.src for p in pieces}))
            if (E2E / h).exists():
                writes[E2E / h] = append_to(E2E / h, pieces, imps)
                continue
            writes[E2E / h] = render_new(h, pieces, imps, wrap(
                m["doc"].get(h, "Helpers of the end-to-end tests") +
                f" (from {srcs}, by scripts/dev/regroup_tests.py)."))
        for d, pieces in dest.items():
            rebase_file_paths(pieces, d)
            path = E2E / d
            existing = bound_names_all(Module(path)) if path.exists() else []
            check_unique(d, pieces)
            imps = imports_for(pieces, mods, home, module_name(d), fixture_names,
                               where=d)
            moved = {n for p in pieces for n in p.names}
            clash = sorted(n for n in set(existing) - moved if any(n in p.uses for p in pieces)
                           and any(re.search(rf"import .*\b{n}\b", i) for i in imps))
            if clash:
                raise Fail(f"{d}: defines {', '.join(clash)}, which the tests moved "
                           f"there import from elsewhere")
            if path.exists():
                writes[path] = append_to(path, pieces, imps)
            else:
                check = pathlib.Path(d).stem.replace("test_", "", 1).replace("_", " ")
                doc = m["doc"].get(d, f"End-to-end tests of {check}.")
                writes[path] = render_new(d, pieces, imps, wrap(
                    doc + " (Regrouped by check from the red-team files by "
                    "scripts/dev/regroup_tests.py.)"))
                init = path.parent / "__init__.py"
                if path.parent != E2E and not init.exists():
                    writes[init] = ""
        if fixtures:
            cm = Module(conftest)
            imps = imports_for(fixtures, mods, home, "conftest", set(),
                               have=bound_names_all(cm) + list(cm.imports), where="conftest.py")
            # helper modules import conftest (run, ROOT): importing them at
            # the top would be circular, so they come after what they use
            helper_mods = set(home.values())
            late = [i for i in imps if i.split()[1] in helper_mods]
            text = append_to(conftest, [], [i for i in imps if i not in late]).rstrip()
            text += "\n\n\n"
            if MARK not in text:
                text += MARK + "\n"
            text += "\n".join(import_lines(late)) + ("\n" if late else "")
            writes[conftest] = text + "\n\n" + "\n\n".join(p.text for p in fixtures)
        sources = [E2E / s for s in mods if s in m["default"] or s in m["helpers"]]
        new = [p for p in writes if not p.exists()]
        skip = {str(p.relative_to(E2E)) for p in new + sources}
        for path, text in rewrite_importers(mods, home, fixture_names, skip,
                                            writes).items():
            writes[path] = text
        # moved fixtures leave the files that keep the rest
        for f, names in m["fixtures"].items():
            path = E2E / f
            text = writes.get(path, path.read_text())
            tree = ast.parse(text)
            lines = text.splitlines()
            for node in sorted((n for n in tree.body if is_fixture(n) and n.name in names),
                               key=lambda n: n.lineno, reverse=True):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                del lines[first - 1:node.end_lineno]
            text = re.sub(r"\n{4,}", "\n\n\n", "\n".join(lines) + "\n")
            writes[path] = drop_unused_imports(text)
        for path, text in writes.items():
            if path.suffix == ".py" and text:
                ast.parse(text)   # never write a file that does not parse
        if a.dry_run:
            for path in sorted(writes):
                print("write", path.relative_to(ROOT))
            for s in sources:
                print("delete", s.relative_to(ROOT))
            return 0
        for path, text in writes.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text if not text or text.endswith("\n") else text + "\n")
        for s in sources:
            s.unlink()
        print(f"moved {sum(len(v) for v in dest.values())} tests, {len(fixtures)} fixtures, "
              f"{sum(len(v) for v in helpers.values())} helpers; removed "
              f"{', '.join(str(s.relative_to(E2E)) for s in sources)}")
        if before is not None:
            after = collect_count()
            print(f"tests collected: before {before}, after {after}")
            if before != after:
                print("error: the number of collected tests changed", file=sys.stderr)
                return 1
        return 0
    except Fail as e:
        print(f"regroup_tests: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
