"""Every JSON document a test gets from `nexus ... --json` (and from
`nexus_cli info --json`) is validated against its schema in docs/schema/
(issue 21, item 7).  conftest.run() calls check() on each such run, so the
whole e2e suite exercises the schemas without each test asking.

A document names its schema in its "schema" key; the two that cannot are
known by verb: `nexus manifest` prints manifest.json itself
(docs/schema/manifest.json) and `nexus run` an array (nexus.run.v1).
"""
import json
import pathlib

import jsonschema  # Debian: python3-jsonschema (scripts/setup.sh)

SCHEMAS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "schema"
BY_VERB = {"manifest": "manifest", "run": "nexus.run.v1"}
_cache = {}


def schema(sid):
    if sid not in _cache:
        path = SCHEMAS / f"{sid}.json"
        assert path.is_file(), f"no JSON Schema {path} for a document of schema {sid!r}"
        s = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(s)
        _cache[sid] = jsonschema.Draft202012Validator(s)
    return _cache[sid]


def wants_check(args):
    """(program, verb) when args are a --json run of nexus or nexus_cli info, else None."""
    args = [str(a) for a in args]
    if not args or "--json" not in args or "--help" in args or "-h" in args:
        return None
    prog = pathlib.Path(args[0]).name
    verb = args[1] if len(args) > 1 else ""
    if prog == "nexus" or (prog == "nexus_cli" and verb == "info"):
        return prog, verb
    return None


def check(args, stdout):
    """Raise AssertionError when stdout is not one document valid under its schema."""
    which = wants_check(args)
    if which is None:
        return
    prog, verb = which
    if prog == "nexus_cli" and not stdout.strip():
        return   # nexus_cli reports its errors on stderr only
    try:
        doc = json.loads(stdout)
    except ValueError as e:
        raise AssertionError(f"{prog} {verb} --json: stdout is not one JSON document ({e}): "
                             f"{stdout[:300]!r}")
    sid = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(sid, str):
        sid = BY_VERB.get(verb) if prog == "nexus" else None
    assert sid, f"{prog} {verb} --json: the document names no schema: {stdout[:300]!r}"
    errors = sorted(schema(sid).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, (f"{prog} {verb} --json does not match docs/schema/{sid}.json: " +
                        "; ".join(f"{'/'.join(map(str, e.path)) or '(root)'}: {e.message}"
                                  for e in errors[:5]))
