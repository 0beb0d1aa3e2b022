"""The nexus program's surface: verbs, --help, exit codes."""
import pytest

from conftest import run

VERBS = ["build", "verify", "inspect", "keygen", "sign", "manifest"]


def test_top_level_help(nexus):
    r = run(nexus, "--help")
    assert r.returncode == 0
    for v in VERBS:
        assert v in r.stdout


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help(nexus, verb):
    r = run(nexus, verb, "--help")
    assert r.returncode == 0
    assert r.stdout.startswith(f"usage: nexus {verb}")


def test_unknown_verb_is_usage_error(nexus):
    r = run(nexus, "frobnicate")
    assert r.returncode == 2
    assert "unknown verb" in r.stderr


@pytest.mark.parametrize("verb", VERBS)
def test_unknown_option_is_usage_error(nexus, verb):
    r = run(nexus, verb, "--no-such-option")
    assert r.returncode == 2


def test_runtime_links_and_reports_version(nexus_cli):
    r = run(nexus_cli, "--version")
    assert r.returncode == 0, r.stderr
    assert "onnx runtime 1.30" in r.stdout
