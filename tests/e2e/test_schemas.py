"""docs/schema/ (issue 21, item 7): every --json document has a schema
file, the files are valid JSON Schema, and the check conftest.run() applies
to every --json run of the suite can fail."""
import json
import pathlib
import re

import jsonschema
import pytest

import schema_check
from conftest import ROOT, run

SCHEMAS = ROOT / "docs" / "schema"


def emitted_ids():
    ids = set()
    for src in list((ROOT / "src").rglob("*.c")):
        ids.update(re.findall(r'"(nexus\.[a-z-]+\.v1)"', src.read_text()))
    ids.discard("nexus.selftest.v1")   # config/selftest.json, a bundle file, not an output
    return ids


def test_every_emitted_schema_id_has_a_schema_file():
    ids = emitted_ids()
    assert {"nexus.error.v1", "nexus.verify.v1", "nexus.build.v1", "nexus.diff.v1"} <= ids
    missing = sorted(i for i in ids if not (SCHEMAS / f"{i}.json").is_file())
    assert not missing, f"no docs/schema/<id>.json for {missing}"


@pytest.mark.parametrize("path", sorted(p.name for p in SCHEMAS.glob("*.json")))
def test_schema_files_are_valid_and_named_by_their_id(path):
    s = json.loads((SCHEMAS / path).read_text())
    jsonschema.Draft202012Validator.check_schema(s)
    assert f"{s['$id']}.json" == path or (s["$id"] == "nexus.manifest" and path == "manifest.json")


def test_the_check_rejects_what_breaks_a_schema():
    with pytest.raises(AssertionError, match="archive_bytes"):
        schema_check.check(["nexus", "pack", "--json"], json.dumps({
            "schema": "nexus.pack.v1", "bundle": "b", "output": "o", "compression": "none",
            "files": 1, "bytes": 1}))
    with pytest.raises(AssertionError, match="names no schema"):
        schema_check.check(["nexus", "pack", "--json"], '{"bundle": "b"}')
    with pytest.raises(AssertionError, match="not one JSON document"):
        schema_check.check(["nexus", "pack", "--json"], '{"schema": "nexus.pack.v1"}{}')
    schema_check.check(["nexus", "pack"], "not json, not --json")


def test_a_built_manifest_is_valid_under_its_schema(nexus, tmp_path):
    from test_build import build
    from workspace import make_workspace
    r = build(nexus, make_workspace(tmp_path / "ws"), tmp_path / "b")
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "b" / "manifest.json").read_text())
    jsonschema.validate(m, json.loads((SCHEMAS / "manifest.json").read_text()))
    r = run(nexus, "manifest", "--json", tmp_path / "b")    # validated by conftest.run
    assert r.returncode == 0
    m["files"][0]["mode"] = "0644"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(m, json.loads((SCHEMAS / "manifest.json").read_text()))
