#!/usr/bin/python3
"""Generate src/lib/scan/pymodattr.h: the attributes of modules that are other
modules under another name, e.g. concurrent.futures.process.mp is
multiprocessing and os.path is posixpath, for python 3.11's standard library
and the serving packages Debian 12 ships (scripts/setup.sh installs them:
python3-numpy, python3-onnx, python3-torch; their versions are written into
the header).

The Python import audit (src/lib/scan/pyaudit_names.c) follows a chain of
attributes from an imported module by its dotted path; an alias hid a denied
module from it (`process.mp.reduction.ForkingPickler.loads` unpickles: red
team 7).  With this table every prefix of a path that is such an alias is
rewritten to the module it is, and the chain stands on a module.

Rows:
  standard library   "module.attribute" -> the module it is, for every
                     public attribute whose value is a module (a submodule
                     names itself: numpy.linalg -> numpy.linalg, so that the
                     audit knows the path is a module and refuses it as a
                     value, red team 11);
  PACKAGES           the same, and also every attribute named like a module
                     the audit judges by name (a standard top-level module,
                     or a training/denied/framework name of
                     src/lib/scan/pyaudit_lists.c): a module -> the module it
                     is (numpy.random -> numpy.random), anything else -> ""
                     (numpy.trace is a function, not the trace module).  For
                     a declared package the audit resolves such a name to
                     the module it names unless this table says otherwise,
                     so a package version or a package not listed here is
                     judged by name, and these rows keep the real API of
                     the listed versions free of false alarms.
  nx_py_runner       "module.attribute" -> its class, for every attribute of
                     PACKAGES' modules that is an instance of a class
                     pyaudit_lists.c's `runners` names (objects that run
                     code given as data: every numpy module's `test` is a
                     numpy._pytesttester.PytestTester).

Each top-level module is imported in its own interpreter (a few have side
effects or need a display: those listed in SKIP are not imported), with
its submodules.  Run with a clean working directory; it takes about two
minutes (torch alone one).

usage: /usr/bin/python3 scripts/pymodattr_gen.py
"""
import json
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "lib" / "scan" / "pymodattr.h"
LISTS = ROOT / "src" / "lib" / "scan" / "pyaudit_lists.c"
SKIP = {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "test",
        "__main__", "lib2to3", "ensurepip", "pydoc_data"}
# Serving packages of Debian 12 (python3-<name>); a missing one is left out
# and said so.  onnxruntime, tokenizers, scipy and transformers are not
# installed by setup.sh: the audit judges them by name only.
PACKAGES = ["numpy", "onnx", "torch"]

CHILD = r"""
import importlib, json, pkgutil, sys, types, warnings
warnings.simplefilter("ignore")
top, named = sys.argv[1], set(json.loads(sys.argv[2]))
runner_classes = set(json.loads(sys.argv[3]))
try:
    m = importlib.import_module(top)
except BaseException:
    print("{}"); raise SystemExit
if hasattr(m, "__path__"):
    for info in pkgutil.walk_packages(m.__path__, top + ".", onerror=lambda n: None):
        # a package's __main__ runs its command line when imported
        # (venv.__main__ makes a virtual environment in the working directory)
        if (".test" in info.name or "tests" in info.name or "idle_test" in info.name or
                info.name.endswith("__main__")):
            continue
        try:
            importlib.import_module(info.name)
        except BaseException:
            pass
rows, runners = {}, {}
for name, mod in list(sys.modules.items()):
    if mod is None or not (name == top or name.startswith(top + ".")):
        continue
    for a in dir(mod):
        if a.startswith("_"):
            continue
        try:
            v = getattr(mod, a)
        except BaseException:
            continue
        cls = type(v).__module__ + "." + type(v).__qualname__
        if cls in runner_classes:
            runners[name + "." + a] = cls
        # every module attribute: one named like itself (numpy.linalg ->
        # numpy.linalg) says the path is a module, refused as a value
        if isinstance(v, types.ModuleType):
            rows[name + "." + a] = v.__name__
        elif a in named:
            rows[name + "." + a] = ""
print(json.dumps({"rows": rows, "runners": runners}))
"""


def judged_names():
    """The names the audit resolves by name on a declared package's path."""
    text = LISTS.read_text()
    names = {n for n in sys.stdlib_module_names if not n.startswith("_")}
    for array in ("training", "denied"):
        body = re.search(r"static const struct rule %s\[\] = \{(.*?)\n\};" % array, text, re.S)
        names |= {n for n in re.findall(r'\{ "([A-Za-z0-9_]+)",', body.group(1))}
    body = re.search(r"static const char \*const frameworks\[\] = \{(.*?)\};", text, re.S)
    names |= set(re.findall(r'"([A-Za-z0-9_]+)"', body.group(1)))
    return sorted(names)


def runner_classes():
    """The classes whose instances run code given as data (`runners`)."""
    body = re.search(r"static const struct rule runners\[\] = \{(.*?)\n\};", LISTS.read_text(),
                     re.S)
    return sorted(re.findall(r'\{ "([A-Za-z0-9_.]+)",', body.group(1)))


def child(top, named, runners=()):
    """(rows, runner rows) of top and its submodules."""
    with tempfile.TemporaryDirectory() as cwd:   # torch.distributed writes files
        r = subprocess.run([sys.executable, "-I", "-c", CHILD, top, json.dumps(named),
                            json.dumps(list(runners))],
                           capture_output=True, text=True, timeout=600,
                           stdin=subprocess.DEVNULL, cwd=cwd)
    got = json.loads(r.stdout.strip().splitlines()[-1] or "{}")
    return got.get("rows", {}), got.get("runners", {})


def version(top):
    r = subprocess.run([sys.executable, "-I", "-c",
                        "import %s as m; print(m.__version__)" % top],
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    return r.stdout.strip().splitlines()[-1] if r.returncode == 0 else None


def main():
    rows = {}
    for top in sorted(sys.stdlib_module_names):
        if top.startswith("_") or top in SKIP:
            continue
        try:
            rows.update(child(top, [])[0])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            print(f"skipped {top}", file=sys.stderr)
    named, classes = judged_names(), runner_classes()
    versions, runners = [], {}
    for top in PACKAGES:
        v = version(top)
        if not v:
            print(f"{top} is not installed: left out", file=sys.stderr)
            continue
        got, run = child(top, named, classes)
        rows.update(got)
        runners.update(run)
        versions.append(f"{top} {v}")
    ver = "%d.%d" % sys.version_info[:2]
    lines = [
        "/* pymodattr.h - generated by scripts/pymodattr_gen.py from the standard",
        " * library of python %s and from %s;" % (ver, ", ".join(versions)),
        " * do not edit.",
        " * \"module.attribute\" -> the module it is (\"\" when the attribute is no",
        " * module though named like one).  Sorted by strcmp, for bsearch. */",
        "static const char *const nx_py_modattr[][2] = {",
    ]
    lines += ["\t{ \"%s\", \"%s\" }," % (k, rows[k]) for k in sorted(rows)]
    lines += ["};", "",
              "/* \"module.attribute\" -> its class: an object that runs code given as",
              " * data (pyaudit_lists.c, runners).  Sorted; ends with NULL. */",
              "static const char *const nx_py_runner[][2] = {"]
    lines += ["\t{ \"%s\", \"%s\" }," % (k, runners[k]) for k in sorted(runners)]
    lines += ["\t{ NULL, NULL }", "};", ""]
    OUT.write_text("\n".join(lines))
    print(f"{len(rows)} rows, {len(runners)} runners; {', '.join(versions)}", file=sys.stderr)


if __name__ == "__main__":
    main()
