"""Interop with the registry tools others use (issue #20): oras and cosign,
static binaries from Debian 13's .debs that scripts/setup.sh extracts into
$NEXUS_CACHE/bin, and skopeo (Debian 12).

- `oras pull` of what `nexus push` made writes the bundle's files byte for byte;
- `nexus pull` accepts what `oras push` made with FORMAT.md §8's layout;
- `skopeo inspect --raw` sees our manifest digest;
- a `cosign sign` of our artifact (local key, no transparency log) does not
  break `nexus pull`, with or without --require-attestation."""
import hashlib
import json
import os
import pathlib

import pytest

import oci_fixture as of
from conftest import run
from test_oci import env, nothing_published, pull, push, registry, repo, tree  # noqa: F401

CACHE = pathlib.Path(os.environ.get("NEXUS_CACHE") or
                     pathlib.Path(os.environ.get("XDG_CACHE_HOME") or
                                  pathlib.Path.home() / ".cache") / "nexus")
ORAS = CACHE / "bin" / "oras"
COSIGN = CACHE / "bin" / "cosign"

pytestmark = [
    pytest.mark.skipif(not of.REGISTRY, reason="docker-registry not installed (scripts/setup.sh)"),
    pytest.mark.skipif(not ORAS.is_file() or not COSIGN.is_file(),
                       reason=f"oras/cosign not in {CACHE}/bin (scripts/setup.sh fetches them)"),
]


@pytest.fixture
def tool_env(env, tmp_path):
    # oras and cosign keep their state under HOME and DOCKER_CONFIG: a temp dir
    return dict(env, HOME=str(tmp_path / "home"), COSIGN_PASSWORD="")


def test_oras_pull_gives_the_same_files(nexus, registry, bundle, env, tool_env, tmp_path, request):
    ref = f"{registry.host}/{repo(request)}:v1"
    r = push(nexus, bundle, ref, env)
    assert r.returncode == 0, r.stderr
    digest = r.stdout.strip().rsplit("@", 1)[1]
    s = run("skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}")
    assert "sha256:" + hashlib.sha256(s.stdout.encode()).hexdigest() == digest
    out = tmp_path / "oras"
    r = run(ORAS, "pull", "--plain-http", "-o", out, ref, env=tool_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr + r.stdout
    got = {k: v[0] for k, v in tree(out).items()}
    want = {k: v[0] for k, v in tree(bundle.root).items()}
    assert got == want   # every file, manifest.json included, byte for byte


def oras_push(bundle, ref, tool_env, tmp_path, drop=0):
    """oras push of the bundle's files with FORMAT.md §8's layout (titles,
    media types, config, artifactType), the last `drop` files left out."""
    manifest, config = of.artifact_manifest(bundle.root)
    m = json.loads(manifest)
    (tmp_path / "config.json").write_bytes(config)
    files = [f"{layer['annotations']['org.opencontainers.image.title']}:{layer['mediaType']}"
             for layer in m["layers"]]
    r = run(ORAS, "push", "--plain-http", "--artifact-type", m["artifactType"],
            "--config", f"{tmp_path / 'config.json'}:{m['config']['mediaType']}", ref,
            *files[:len(files) - drop], env=tool_env, cwd=bundle.root)
    assert r.returncode == 0, r.stderr + r.stdout


def test_nexus_pulls_what_oras_pushed(nexus, registry, bundle, env, tool_env, tmp_path, request):
    ref = f"{registry.host}/{repo(request)}:v1"
    oras_push(bundle, ref, tool_env, tmp_path)
    out = tmp_path / "pulled"
    r = pull(nexus, ref, out, env)
    assert r.returncode == 0, r.stderr
    assert tree(out) == tree(bundle.root)   # bytes and the modes nexus sets


def test_oras_push_of_other_files_is_refused(nexus, registry, bundle, env, tool_env, tmp_path,
                                              request):
    # the same layout, one file left out: the layer set is not files[]
    ref = f"{registry.host}/{repo(request)}:v1"
    oras_push(bundle, ref, tool_env, tmp_path, drop=1)
    out = tmp_path / "pulled"
    r = pull(nexus, ref, out, env)
    assert r.returncode == 1 and "file layers but the signed manifest lists" in r.stderr, r.stderr
    nothing_published(out)


def test_cosign_signature_does_not_break_pull(nexus, registry, bundle, env, tool_env, tmp_path,
                                              request):
    ref = f"{registry.host}/{repo(request)}:v1"
    assert run(nexus, "keygen", "-o", tmp_path / "rel").returncode == 0
    r = run(nexus, "verify", "--no-sandbox", "--attest", tmp_path / "a.dsse", "--key",
            tmp_path / "rel.key", bundle.root, env=env)
    assert r.returncode == 0, r.stderr
    r = push(nexus, bundle, ref, env, "--attest", tmp_path / "a.dsse")
    assert r.returncode == 0, r.stderr
    digest = r.stdout.strip().rsplit("@", 1)[1]
    r = run(COSIGN, "generate-key-pair", env=tool_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run(COSIGN, "sign", "--key", tmp_path / "cosign.key", "--tlog-upload=false", "--yes",
            "--allow-http-registry", "--allow-insecure-registry",
            f"{ref.rsplit(':', 1)[0]}@{digest}", env=tool_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # cosign checks its own signature: it is really there
    r = run(COSIGN, "verify", "--key", tmp_path / "cosign.pub", "--insecure-ignore-tlog=true",
            "--allow-http-registry", "--allow-insecure-registry", ref, env=tool_env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "pulled"
    r = pull(nexus, ref, out, env, "--require-attestation", "--pubkey", tmp_path / "rel.pub")
    assert r.returncode == 0, r.stderr
    assert tree(out) == tree(bundle.root)
