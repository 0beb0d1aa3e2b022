"""nexus push / nexus pull against a real registry on loopback (issue #20).

The registry is Debian's docker-registry (distribution 2.8) started per
module with its config in a temporary directory; skopeo is the interop
oracle for the manifest digest; a fault-injecting proxy (oci_fixture.py)
proves retries, resume and that nothing corrupt is ever published.
The bundles are the hand-made ones of bundle_fixture.py (a stand-in
runtime, so verification runs with --no-sandbox)."""
import base64
import hashlib
import json
import os
import shutil
import stat

import pytest

import bundle_fixture as bf
import oci_fixture as of
from conftest import run

pytestmark = pytest.mark.skipif(not of.REGISTRY, reason="docker-registry not installed "
                                "(scripts/setup.sh)")

USER, PASSWORD = "ci", "s3cret-pass-w0rd"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    r = of.Registry(tmp_path_factory.mktemp("registry"))
    yield r
    r.stop()


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory):
    r = of.Registry(tmp_path_factory.mktemp("auth-registry"), htpasswd=(USER, PASSWORD))
    yield r
    r.stop()


@pytest.fixture
def proxy(registry):
    p = of.FaultProxy(registry.host)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    return bf.make_runtime(tmp_path_factory.mktemp("runtime") / "nexus")


@pytest.fixture
def bundle(tmp_path, runtime):
    b = bf.Bundle(tmp_path / "nexus_bundle_v1", runtime)
    yield b
    b.unlock()


@pytest.fixture
def env(runtime, tmp_path):
    # no docker config of the machine's user leaks in
    return dict(os.environ, NEXUS_RUNTIME_DIR=str(runtime), DOCKER_CONFIG=str(tmp_path / "docker"))


def repo(request):
    return "t/" + request.node.name.lower().replace("[", "-").replace("]", "").replace("_", "-")


def push(nexus, b, ref, env, *args, input=None):
    return run(nexus, "push", "--plain-http", "--no-sandbox", *args, b.root, ref, env=env,
               input=input)


def pull(nexus, ref, out, env, *args, input=None):
    return run(nexus, "pull", "--plain-http", "--no-sandbox", *args, ref, "-o", out, env=env,
               input=input)


def nothing_published(out):
    assert not out.exists()
    left = [p.name for p in out.parent.iterdir() if ".nexus-stage." in p.name]
    assert not left, f"staging left behind: {left}"


def tree(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = (open(p, "rb").read(), stat.S_IMODE(os.lstat(p).st_mode))
    return out


# -- the artifact and the happy paths ------------------------------------------------

def test_push_pull_round_trip(nexus, registry, bundle, env, tmp_path, request):
    ref = f"{registry.host}/{repo(request)}:v1"
    r = push(nexus, bundle, ref, env)
    assert r.returncode == 0, r.stderr
    manifest, config = of.artifact_manifest(bundle.root)
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert r.stdout.strip() == f"{ref}@{digest}"
    # the interop oracle: what the registry stores is byte for byte FORMAT.md §8
    s = run("skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}")
    assert s.returncode == 0, s.stderr
    assert s.stdout.encode() == manifest
    out = tmp_path / "pulled"
    r = pull(nexus, f"{ref.rsplit(':', 1)[0]}@{digest}", out, env, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "nexus.pull.v1" and doc["digest"] == digest
    assert doc["verify"]["verdict"] in ("PASS", "WARN")
    got, want = tree(out), tree(bundle.root)
    assert got == want   # bytes and modes (0444, bin/nexus_cli 0555)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o555


def test_second_push_skips_every_blob(nexus, registry, bundle, env, request):
    ref = f"{registry.host}/{repo(request)}:v1"
    assert push(nexus, bundle, ref, env).returncode == 0
    r = push(nexus, bundle, ref, env, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["blobs_uploaded"] == 0 and doc["bytes_uploaded"] == 0
    assert doc["blobs_skipped"] == len(bundle.files()) + 2  # + config, manifest.json


def test_chunked_push_and_mount(nexus, registry, bundle, env, tmp_path, request):
    ref = f"{registry.host}/{repo(request)}:v1"
    r = push(nexus, bundle, ref, env, "--json", "--chunk-size", "1000")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["blobs_uploaded"] == len(bundle.files()) + 2
    manifest, _ = of.artifact_manifest(bundle.root)
    assert doc["digest"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
    # another repository mounts every blob instead of uploading it
    r = push(nexus, bundle, f"{registry.host}/{repo(request)}-copy:v1", env, "--json",
             "--mount-from", repo(request))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["blobs_mounted"] == len(bundle.files()) + 2 and doc["bytes_uploaded"] == 0
    r = pull(nexus, f"{registry.host}/{repo(request)}-copy:v1", tmp_path / "o", env)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "o") == tree(bundle.root)


def test_push_verifies_first(nexus, registry, bundle, env, request):
    bundle.tamper("README.md", "changed after the build\n")
    ref = f"{registry.host}/{repo(request)}:v1"
    r = push(nexus, bundle, ref, env)
    assert r.returncode == 1, r.stderr
    assert "fails verification" in r.stderr and "not pushed" in r.stderr
    assert run("skopeo", "inspect", "--tls-verify=false", "--raw",
               f"docker://{ref}").returncode != 0


def test_a_file_changed_after_verification_is_refused_by_digest(nexus, registry, bundle, env,
                                                                 request):
    # --no-verify: the registry's own digest check (DIGEST_INVALID) catches it
    data = bundle.path("README.md").read_bytes()
    bundle.tamper("README.md", data.upper())
    r = push(nexus, bundle, f"{registry.host}/{repo(request)}:v1", env, "--no-verify")
    assert r.returncode == 1, r.stderr
    assert "DIGEST_INVALID" in r.stderr and "README.md" in r.stderr


def test_pull_existing_output_needs_force(nexus, registry, bundle, env, tmp_path, request):
    ref = f"{registry.host}/{repo(request)}:v1"
    assert push(nexus, bundle, ref, env).returncode == 0
    out = tmp_path / "o"
    out.mkdir()
    r = pull(nexus, ref, out, env)
    assert r.returncode == 2, r.stderr
    r = pull(nexus, ref, out, env, "--force")
    assert r.returncode == 0, r.stderr
    assert tree(out) == tree(bundle.root)


@pytest.mark.parametrize("bad", ["no-registry/x", "localhost:5000/UPPER", "h.io/a:b@sha256:12",
                                 "h.io/a//b", "h.io/a:" + "t" * 129])
def test_bad_reference_is_a_usage_error(nexus, bad, tmp_path, env):
    r = run(nexus, "pull", bad, "-o", tmp_path / "o", env=env)
    assert r.returncode == 2, r.stderr
    assert "reference" in r.stderr


# -- credentials ---------------------------------------------------------------------------

def test_basic_auth(nexus, auth_registry, bundle, env, tmp_path, request):
    ref = f"{auth_registry.host}/{repo(request)}:v1"
    r = push(nexus, bundle, ref, env)
    assert r.returncode == 3 and "credentials" in r.stderr, r.stderr
    r = push(nexus, bundle, ref, env, "--username", USER, "--password-stdin",
             input="wrong\n")
    assert r.returncode == 3 and "refused the credentials" in r.stderr, r.stderr
    r = push(nexus, bundle, ref, env, "--username", USER, "--password-stdin",
             input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stdout + r.stderr
    # ~/.docker/config.json (here $DOCKER_CONFIG) as `docker login` writes it
    d = tmp_path / "docker"
    d.mkdir()
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {auth_registry.host: {"auth": auth}}}))
    r = pull(nexus, ref, tmp_path / "o", env)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "o") == tree(bundle.root)


def test_password_never_on_the_command_line(nexus, env):
    r = run(nexus, "push", "--username", USER, "x", "h.io/a", env=env)
    assert r.returncode == 2 and "--password-stdin" in r.stderr


# -- signatures: checked on manifest.json before any file is fetched -------------------------

@pytest.fixture
def keys(nexus, tmp_path):
    assert run(nexus, "keygen", "-o", tmp_path / "rel").returncode == 0
    assert run(nexus, "keygen", "-o", tmp_path / "other").returncode == 0
    return tmp_path / "rel.key", tmp_path / "rel.pub", tmp_path / "other.pub"


def test_signature_checked_before_download(nexus, registry, proxy, bundle, env, keys, tmp_path,
                                           request):
    key, pub, other = keys
    bundle.unlock()
    bundle.lock()
    assert run(nexus, "sign", bundle.root, "--key", key).returncode == 0
    ref = f"{proxy.host}/{repo(request)}:v1"
    assert push(nexus, bundle, ref, env).returncode == 0
    proxy.log.clear()
    out = tmp_path / "o"
    r = pull(nexus, ref, out, env, "--pubkey", other)
    assert r.returncode == 1 and "unknown-key" in r.stderr, r.stderr
    nothing_published(out)
    model = hashlib.sha256(bundle.path("model/student_model.onnx").read_bytes()).hexdigest()
    assert not proxy.requests("GET", model), "a file was fetched before the signature check"
    r = pull(nexus, ref, out, env, "--pubkey", pub, "--require-signature")
    assert r.returncode == 0, r.stderr


def test_require_signature_refuses_unsigned(nexus, registry, bundle, env, tmp_path, request):
    ref = f"{registry.host}/{repo(request)}:v1"
    assert push(nexus, bundle, ref, env).returncode == 0
    r = pull(nexus, ref, tmp_path / "o", env, "--require-signature")
    assert r.returncode == 1 and "unsigned" in r.stderr, r.stderr
    nothing_published(tmp_path / "o")
