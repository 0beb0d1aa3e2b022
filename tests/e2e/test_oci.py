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


def test_second_push_asks_for_the_manifest_not_each_blob(nexus, registry, proxy, bundle, env,
                                                         request):
    # the registry has the image manifest, so it has every blob it names
    # (a registry refuses a manifest whose blobs it lacks): one HEAD, no
    # request per blob (0.13 s/GB before, a HEAD per file)
    ref = f"{proxy.host}/{repo(request)}:v1"
    assert push(nexus, bundle, ref, env).returncode == 0
    proxy.log.clear()
    r = push(nexus, bundle, ref.replace(":v1", ":v2"), env, "--json")
    assert r.returncode == 0, r.stderr
    assert not proxy.requests(contains="/blobs/"), proxy.log
    assert len(proxy.requests("HEAD", "/manifests/sha256:")) == 1
    doc = json.loads(r.stdout)
    assert doc["blobs_skipped"] == len(bundle.files()) + 2 and doc["blobs_uploaded"] == 0
    # the new tag names the same artifact
    s = run("skopeo", "inspect", "--tls-verify=false", "--raw",
            f"docker://{registry.host}/{repo(request)}:v2")
    assert "sha256:" + hashlib.sha256(s.stdout.encode()).hexdigest() == doc["digest"]


def test_second_push_to_the_same_tag_sends_nothing(nexus, registry, proxy, bundle, env,
                                                    request):
    # the tag already names this artifact: a HEAD says so, and nothing is
    # uploaded or put (the ping and one HEAD)
    ref = f"{proxy.host}/{repo(request)}:v1"
    assert push(nexus, bundle, ref, env).returncode == 0
    proxy.log.clear()
    r = push(nexus, bundle, ref, env, "--json")
    assert r.returncode == 0, r.stderr
    assert [(e[0], e[1]) for e in proxy.log] == [("GET", "/v2/"),
                                                  ("HEAD", f"/v2/{repo(request)}/manifests/v1")]
    doc = json.loads(r.stdout)
    assert doc["blobs_skipped"] == len(bundle.files()) + 2 and doc["blobs_uploaded"] == 0
    # a tag that names something else is moved: the manifest is put again
    b2 = bundle
    b2.meta["parameters"] = "other"
    b2.regen_manifest()
    r = push(nexus, b2, ref, env, "--json")
    assert r.returncode == 0, r.stderr
    assert proxy.requests("PUT", "/manifests/v1")
    s = run("skopeo", "inspect", "--tls-verify=false", "--raw",
            f"docker://{registry.host}/{repo(request)}:v1")
    assert "sha256:" + hashlib.sha256(s.stdout.encode()).hexdigest() == json.loads(r.stdout)["digest"]


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


def hold_and_count(proxy, method, contains):
    """A fault: each matching request is held 0.3 s, then forwarded; the
    returned dict's "most" is how many were in flight at once."""
    import threading
    import time
    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def slow(h, m, path):
        if m != method or contains not in path:
            return False
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.3)
        h.forward()
        with lock:
            state["now"] -= 1
        return True
    proxy.faults.append(slow)
    return state


def test_blobs_upload_in_parallel(nexus, registry, proxy, bundle, env, request):
    # uploads overlap (several connections, largest first): the proxy holds
    # each upload's start for a moment and counts how many are in flight
    state = hold_and_count(proxy, "POST", "/blobs/uploads/")
    r = push(nexus, bundle, f"{proxy.host}/{repo(request)}:v1", env, "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["blobs_uploaded"] == len(bundle.files()) + 2 and doc["blobs_skipped"] == 0
    assert state["most"] >= 2, state
    sizes = {blob_of(bundle, f): bundle.path(f).stat().st_size for f in bundle.files()}
    # the largest blob is in the first wave the workers (4) take; which of
    # them sends its HEAD first is the scheduler's choice (a worker that
    # must still open its connection loses to one that has it), so the
    # first HEAD is not always the largest blob's (it failed so under load)
    heads = [e[1].rsplit("/", 1)[1] for e in proxy.requests("HEAD", "/blobs/")]
    assert max(sizes, key=sizes.get) in heads[:4]


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


# -- the fault-injecting proxy: retries, resume, corruption ------------------------------------

def pushed(nexus, registry, bundle, env, request, tag="v1"):
    ref = f"{registry.host}/{repo(request)}:{tag}"
    r = push(nexus, bundle, ref, env)
    assert r.returncode == 0, r.stderr
    return ref.split("/", 1)[1]


def blob_of(bundle, rel):
    return "sha256:" + hashlib.sha256(bundle.path(rel).read_bytes()).hexdigest()


def test_retry_after_429_and_503(nexus, registry, proxy, bundle, env, tmp_path, request):
    count = {}

    def busy(h, method, path):
        # every second try of each request is refused, alternately 429 and
        # 503; counted per request, as pull's parallel workers interleave
        # (counted over all, one worker could be refused every time)
        n = count[method, path] = count.get((method, path), 0) + 1
        if n % 2:
            h.answer(429 if n % 4 == 1 else 503, b'{"errors":[{"code":"TOOMANYREQUESTS",'
                     b'"message":"slow down"}]}', [("Retry-After", "0")])
            return True
        return False
    proxy.faults.append(busy)
    name = f"{repo(request)}:v1"
    r = push(nexus, bundle, f"{proxy.host}/{name}", env, "--chunk-size", "2000")
    assert r.returncode == 0, r.stderr
    r = pull(nexus, f"{proxy.host}/{name}", tmp_path / "o", env)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "o") == tree(bundle.root)
    assert len([e for e in proxy.log]) > 20


def test_persistent_503_names_the_registry_error(nexus, registry, proxy, bundle, env, tmp_path,
                                                 request):
    name = pushed(nexus, registry, bundle, env, request)
    proxy.faults.append(lambda h, m, p: "/manifests/" in p and h.answer(
        503, b'{"errors":[{"code":"UNAVAILABLE","message":"maintenance window"}]}',
        [("Retry-After", "0")]) is None)
    r = pull(nexus, f"{proxy.host}/{name}", tmp_path / "o", env)
    assert r.returncode == 3, r.stderr
    assert "UNAVAILABLE: maintenance window" in r.stderr and "HTTP 503" in r.stderr
    assert len(proxy.requests("GET", "/manifests/")) == 5   # NX_OCI_ATTEMPTS
    nothing_published(tmp_path / "o")


def test_blobs_download_in_parallel(nexus, registry, proxy, bundle, env, tmp_path, request):
    # blob GETs overlap (several connections, largest file first): the proxy
    # holds each for a moment and counts how many are in flight at once
    name = pushed(nexus, registry, bundle, env, request)
    state = hold_and_count(proxy, "GET", "/blobs/")
    r = pull(nexus, f"{proxy.host}/{name}", tmp_path / "o", env)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "o") == tree(bundle.root)
    assert state["most"] >= 2, state
    # after manifest.json (fetched alone, before the signature check), the
    # largest file is among the first the workers (4) ask for
    sizes = {blob_of(bundle, f): bundle.path(f).stat().st_size for f in bundle.files()}
    gets = [e[1].rsplit("/", 1)[1] for e in proxy.requests("GET", "/blobs/")]
    assert max(sizes, key=sizes.get) in gets[1:5]


def drop_mid_blob(digest, data, cut):
    """A fault: the first GET of digest sends cut bytes of data, then the
    connection is lost."""
    def drop(h, method, path):
        if method != "GET" or digest not in path or "Range" in h.headers:
            return False
        h.send_response(200)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data[:cut])
        h.wfile.flush()
        h.close_connection = True
        h.connection.shutdown(2)
        return True
    return drop


def test_dropped_blob_download_resumes_with_range(nexus, registry, proxy, bundle, env, tmp_path,
                                                  request):
    name = pushed(nexus, registry, bundle, env, request)
    digest = blob_of(bundle, "model/student_model.onnx")
    data = bundle.path("model/student_model.onnx").read_bytes()
    proxy.faults.append(of.once(drop_mid_blob(digest, data, len(data) // 2)))
    r = pull(nexus, f"{proxy.host}/{name}", tmp_path / "o", env)
    assert r.returncode == 0, r.stderr
    ranged = [e for e in proxy.requests("GET", digest) if "Range" in e[2]]
    assert ranged and ranged[0][2]["Range"] == f"bytes={len(data) // 2}-"
    assert tree(tmp_path / "o") == tree(bundle.root)


def test_truncated_body_is_resumed(nexus, registry, proxy, bundle, env, tmp_path, request):
    # a response that claims fewer bytes than the blob has: no transport
    # error, but the file is short, so the rest is asked for with Range
    name = pushed(nexus, registry, bundle, env, request)
    digest = blob_of(bundle, "model/student_model.onnx")
    data = bundle.path("model/student_model.onnx").read_bytes()
    proxy.faults.append(of.once(lambda h, m, p: m == "GET" and digest in p and
                                h.answer(200, data[:100]) is None))
    r = pull(nexus, f"{proxy.host}/{name}", tmp_path / "o", env)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "o") == tree(bundle.root)


BIG = 9 << 20   # over sink.c's FOLLOW_MIN: hashed on a second thread reading the file back


def big_bundle(bundle):
    # a student whose embedding has unused rows: a model file over BIG
    import bundle_fixture as bf
    model = bf.student_model(vocab=BIG // (4 * bf.HIDDEN) + 1024)
    bundle.meta["parameters"] = bf.human(bf.parameters(model))
    bundle.smuggle("model/student_model.onnx", model.SerializeToString())
    return "model/student_model.onnx"


@pytest.mark.parametrize("fault", ["drop", "ignore-range", "other-bytes"])
def test_large_blob_hashed_behind_the_writer(nexus, registry, proxy, bundle, env, tmp_path,
                                             request, fault):
    # a blob over 8 MiB is hashed by a thread that reads the staged file
    # back: a dropped download resumes with Range, a registry that then
    # ignores the Range starts the file (and its hash) over, and other
    # bytes are refused whichever thread hashed them
    rel = big_bundle(bundle)
    name = pushed(nexus, registry, bundle, env, request)
    digest = blob_of(bundle, rel)
    data = bundle.path(rel).read_bytes()

    def whole(h, method, path):
        # the resumed request gets the whole blob with 200, as if no Range
        if method != "GET" or digest not in path or "Range" not in h.headers:
            return False
        h.answer(200, data)
        return True
    out = tmp_path / "o"
    if fault == "other-bytes":
        bad = bytearray(data)
        bad[len(bad) - 5] ^= 1
        proxy.faults.append(lambda h, m, p: m == "GET" and digest in p and
                            h.answer(200, bytes(bad)) is None)
        r = pull(nexus, f"{proxy.host}/{name}", out, env)
        assert r.returncode == 1, r.stderr
        assert "digest" in r.stderr and rel in r.stderr
        nothing_published(out)
        return
    proxy.faults.append(of.once(drop_mid_blob(digest, data, len(data) // 3)))
    if fault == "ignore-range":
        proxy.faults.append(of.once(whole))
    r = pull(nexus, f"{proxy.host}/{name}", out, env)
    assert r.returncode == 0, r.stderr
    ranged = [e for e in proxy.requests("GET", digest) if "Range" in e[2]]
    assert ranged and ranged[0][2]["Range"] == f"bytes={len(data) // 3}-"
    assert tree(out) == tree(bundle.root)


@pytest.mark.parametrize("mtime", ["left", "set-back"])
def test_staged_file_changed_after_download_is_caught(nexus, registry, proxy, bundle, env,
                                                      tmp_path, request, mtime):
    # pull takes a downloaded file's digest as known only while the file is
    # as the download left it (inode, size, the mtime it stamped, the ctime
    # that followed): one changed in the stage afterwards, same size, is
    # hashed again by verify and refused, also when the writer sets the
    # mtime back (`touch -d`), which only the ctime shows.  The proxy holds
    # the model's download until the test has changed README.md, which
    # another connection fetched meanwhile.
    import calendar
    import subprocess
    import threading
    import time
    name = pushed(nexus, registry, bundle, env, request)
    digest = blob_of(bundle, "model/student_model.onnx")
    built = calendar.timegm(time.strptime(bundle.manifest_obj()["build_timestamp"],
                                          "%Y-%m-%dT%H:%M:%SZ"))
    size = bundle.path("README.md").stat().st_size
    out = tmp_path / "o"
    changed = threading.Event()

    def change():
        for _ in range(400):
            for stage in (p for p in tmp_path.iterdir() if ".nexus-stage." in p.name):
                f = stage / "README.md"
                try:
                    st = f.stat()
                except OSError:
                    continue
                # downloaded and stamped (mtime, then the final mode)
                if st.st_size == size and st.st_mtime == built and \
                        stat.S_IMODE(st.st_mode) == 0o444:
                    os.chmod(f, 0o644)
                    with open(f, "r+b") as fh:
                        fh.write(b"X")
                    os.chmod(f, st.st_mode & 0o7777)
                    if mtime == "set-back":
                        subprocess.run(["touch", "-d", f"@{built}", str(f)], check=True)
                        assert f.stat().st_mtime == built
                    changed.set()
                    return
            time.sleep(0.025)

    def hold(h, method, path):
        if method == "GET" and digest in path:
            changed.wait(10)
        return False
    proxy.faults.append(hold)
    t = threading.Thread(target=change)
    t.start()
    r = pull(nexus, f"{proxy.host}/{name}", out, env)
    t.join()
    assert changed.is_set()
    assert r.returncode == 1, r.stderr
    assert "hash-mismatch" in r.stderr and "README.md" in r.stderr, r.stderr
    nothing_published(out)


def test_no_fsync_pulls_the_same_bundle_without_syncing(nexus, registry, bundle, env, tmp_path,
                                                       request):
    # --no-fsync changes durability only: the same tree, and not one
    # fsync/fdatasync/sync_file_range call (a 9 MiB model, so the hashing
    # thread that otherwise starts the writeback runs too)
    big_bundle(bundle)
    name = pushed(nexus, registry, bundle, env, request)
    trace = tmp_path / "trace"
    if os.environ.get("NEXUS_SANITIZED"):
        # LeakSanitizer cannot run under ptrace; ASan and UBSan still do
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"

    def traced(out, *args):
        r = run("strace", "-f", "-qq", "-e", "signal=none", "-e",
                "trace=fsync,fdatasync,sync_file_range,syncfs", "-o", trace, nexus, "pull",
                "--plain-http", "--no-sandbox", *args, f"{registry.host}/{name}", "-o", out,
                env=env)
        assert r.returncode == 0, r.stderr
        return [line for line in trace.read_text().splitlines() if "sync" in line]
    assert traced(tmp_path / "fast", "--no-fsync") == []
    assert tree(tmp_path / "fast") == tree(bundle.root)
    # the trace sees the calls it is asked for: the durable pull makes them
    calls = traced(tmp_path / "durable")
    assert any("fsync(" in c for c in calls) and any("sync_file_range(" in c for c in calls)


def test_registry_serving_another_blob_publishes_nothing(nexus, registry, proxy, bundle, env,
                                                        tmp_path, request):
    name = pushed(nexus, registry, bundle, env, request)
    digest = blob_of(bundle, "model/student_model.onnx")
    n = bundle.path("model/student_model.onnx").stat().st_size
    proxy.faults.append(lambda h, m, p: m == "GET" and digest in p and
                        h.answer(200, b"\0" * n) is None)
    out = tmp_path / "o"
    r = pull(nexus, f"{proxy.host}/{name}", out, env)
    assert r.returncode == 1, r.stderr
    assert "digest" in r.stderr and "model/student_model.onnx" in r.stderr
    nothing_published(out)


def test_blob_bigger_than_declared_is_cut_off(nexus, registry, proxy, bundle, env, tmp_path,
                                              request):
    name = pushed(nexus, registry, bundle, env, request)
    digest = blob_of(bundle, "README.md")
    proxy.faults.append(lambda h, m, p: m == "GET" and digest in p and
                        h.answer(200, b"x" * (1 << 20)) is None)
    out = tmp_path / "o"
    r = pull(nexus, f"{proxy.host}/{name}", out, env)
    assert r.returncode == 3, r.stderr
    assert "more than the" in r.stderr and "README.md" in r.stderr
    nothing_published(out)


def test_huge_manifest_is_refused(nexus, registry, proxy, bundle, env, tmp_path, request):
    name = pushed(nexus, registry, bundle, env, request)

    def huge(h, method, path):
        if "/manifests/" not in path:
            return False
        h.send_response(200)
        h.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        h.send_header("Content-Length", str(10 * 10**9))   # "10 GB"
        h.end_headers()
        try:
            chunk = b" " * 65536
            for _ in range(200):   # 12.5 MiB at most, then give up
                h.wfile.write(chunk)
        except OSError:
            pass
        h.close_connection = True
        return True
    proxy.faults.append(huge)
    out = tmp_path / "o"
    r = pull(nexus, f"{proxy.host}/{name}", out, env)
    assert r.returncode == 3, r.stderr
    assert "over 4194304 bytes" in r.stderr
    nothing_published(out)


def swap_manifest(proxy, change):
    """Serve the registry's manifest after change(obj) (None: as it is)."""
    def rewrite(status, headers, data):
        obj = json.loads(data)
        change(obj)
        data = json.dumps(obj).encode()
        return data, status, [(k, v) for k, v in headers if k.lower() != "docker-content-digest"]

    proxy.faults.append(lambda h, m, p: m == "GET" and "/manifests/" in p and
                        h.forward(rewrite=rewrite) is None)


def dup_layer(o):
    o["layers"].append(o["layers"][-1])


def drop_layer(o):
    del o["layers"][-1]


def retitle(path):
    def f(o):
        o["layers"][-1]["annotations"]["org.opencontainers.image.title"] = path
    return f


def oversize(o):
    o["layers"][-1]["size"] += 1


@pytest.mark.parametrize("change,code,words", [
    (dup_layer, 3, "listed twice"),
    (drop_layer, 1, "file layers but the signed manifest lists"),
    (retitle("../escape.txt"), 3, "escape.txt"),
    (retitle("/etc/passwd"), 3, "/etc/passwd"),
    (retitle("src/extra.py"), 1, "not a file of the signed manifest"),
    (oversize, 1, "is not the file the signed manifest lists"),
], ids=["twice", "missing", "dotdot", "absolute", "unlisted", "size"])
def test_layer_set_must_be_the_manifest_files(nexus, registry, proxy, bundle, env, tmp_path,
                                              request, change, code, words):
    name = pushed(nexus, registry, bundle, env, request)
    swap_manifest(proxy, change)
    out = tmp_path / "o"
    r = pull(nexus, f"{proxy.host}/{name}", out, env)
    assert r.returncode == code, r.stderr
    assert words in r.stderr
    nothing_published(out)


def test_pinned_digest_must_match(nexus, registry, proxy, bundle, env, tmp_path, request):
    name = pushed(nexus, registry, bundle, env, request)
    r = push(nexus, bundle, f"{registry.host}/{name}", env, "--json")
    digest = json.loads(r.stdout)["digest"]
    swap_manifest(proxy, lambda o: o["annotations"].update(x="y"))
    out = tmp_path / "o"
    r = pull(nexus, f"{proxy.host}/{name.split(':')[0]}@{digest}", out, env)
    assert r.returncode == 1 and "refused" in r.stderr, r.stderr
    nothing_published(out)


def test_manifest_redirect_is_refused(nexus, registry, proxy, bundle, env, tmp_path, request):
    name = pushed(nexus, registry, bundle, env, request)
    proxy.faults.append(lambda h, m, p: "/manifests/" in p and h.answer(
        307, headers=[("Location", f"http://{registry.host}{p}")]) is None)
    r = pull(nexus, f"{proxy.host}/{name}", tmp_path / "o", env)
    assert r.returncode == 3 and "redirects" in r.stderr, r.stderr
    nothing_published(tmp_path / "o")


def test_blob_redirect_to_another_host_carries_no_credentials(nexus, auth_registry, bundle, env,
                                                              tmp_path, request):
    ref = f"{auth_registry.host}/{repo(request)}:v1"
    r = push(nexus, bundle, ref, env, "--username", USER, "--password-stdin", input=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    front = of.FaultProxy(auth_registry.host)     # the registry, as the client sees it
    storage = of.FaultProxy(auth_registry.host)   # "another host": its blob storage
    try:
        digest = blob_of(bundle, "model/student_model.onnx")
        data = bundle.path("model/student_model.onnx").read_bytes()
        front.faults.append(lambda h, m, p: m == "GET" and digest in p and h.answer(
            307, headers=[("Location", f"http://{storage.host}/storage/{digest}")]) is None)
        storage.faults.append(lambda h, m, p: h.answer(200, data) is None)
        r = pull(nexus, f"{front.host}/{ref.split('/', 1)[1]}", tmp_path / "o", env,
                 "--username", USER, "--password-stdin", input=PASSWORD + "\n")
        assert r.returncode == 0, r.stderr
        assert any("Authorization" in e[2] for e in front.log)
        assert storage.log and not any("Authorization" in e[2] for e in storage.log)
    finally:
        front.stop()
        storage.stop()


def test_upload_location_elsewhere_is_refused(nexus, registry, proxy, bundle, env, request):
    proxy.faults.append(lambda h, m, p: m == "POST" and h.answer(
        202, headers=[("Location", "http://198.51.100.7/v2/upload/1")]) is None)
    r = push(nexus, bundle, f"{proxy.host}/{repo(request)}:v1", env)
    assert r.returncode == 3 and "another host" in r.stderr, r.stderr
    assert not proxy.requests("PUT") and not proxy.requests("PATCH")


def test_wrong_manifest_digest_from_registry_fails_push(nexus, registry, proxy, bundle, env,
                                                        request):
    def lie(status, headers, data):
        return data, status, [(k, "sha256:" + "0" * 64 if k.lower() == "docker-content-digest"
                               else v) for k, v in headers]
    proxy.faults.append(lambda h, m, p: m == "PUT" and "/manifests/" in p and
                        h.forward(rewrite=lie) is None)
    r = push(nexus, bundle, f"{proxy.host}/{repo(request)}:v1", env)
    assert r.returncode == 1 and "stored the manifest as sha256:000" in r.stderr, r.stderr


def test_dropped_chunk_upload_resumes(nexus, registry, proxy, bundle, env, tmp_path, request):
    def drop(h, method, path):
        if method != "PATCH" or h.headers.get("Content-Range", "").startswith("0-"):
            return False
        h.body()   # swallow the chunk, answer nothing: the connection is lost
        h.close_connection = True
        h.connection.shutdown(2)
        return True
    proxy.faults.append(of.once(drop))
    name = f"{repo(request)}:v1"
    r = push(nexus, bundle, f"{proxy.host}/{name}", env, "--chunk-size", "1500")
    assert r.returncode == 0, r.stderr
    assert proxy.requests("GET", "/blobs/uploads/"), "no upload status asked after the drop"
    r = pull(nexus, f"{registry.host}/{name}", tmp_path / "o", env)
    assert r.returncode == 0, r.stderr
    assert tree(tmp_path / "o") == tree(bundle.root)


def test_bearer_token_flow(nexus, bundle, env, tmp_path_factory, tmp_path, request):
    tmp = tmp_path_factory.mktemp("token-registry")
    tokens = of.TokenService(tmp, USER, PASSWORD)
    reg = of.Registry(tmp, token=tokens)
    try:
        ref = f"{reg.host}/{repo(request)}:v1"
        r = push(nexus, bundle, ref, env, "--username", USER, "--password-stdin", input="nope\n")
        assert r.returncode == 3 and "token service refused" in r.stderr, r.stderr
        r = push(nexus, bundle, ref, env, "--username", USER, "--password-stdin",
                 input=PASSWORD + "\n")
        assert r.returncode == 0, r.stderr
        assert (f"repository:{repo(request)}:pull,push", True) in tokens.log
        r = pull(nexus, ref, tmp_path / "o", env, "--username", USER, "--password-stdin",
                 input=PASSWORD + "\n")
        assert r.returncode == 0, r.stderr
        assert (f"repository:{repo(request)}:pull", True) in tokens.log
        assert tree(tmp_path / "o") == tree(bundle.root)
    finally:
        reg.stop()
        tokens.stop()


def test_interrupted_pull_leaves_nothing(nexus, registry, proxy, bundle, env, tmp_path, request):
    import signal
    import subprocess
    import time
    name = pushed(nexus, registry, bundle, env, request)
    digest = blob_of(bundle, "model/student_model.onnx")
    stalled = []

    def stall(h, method, path):
        if method != "GET" or digest not in path:
            return False
        h.send_response(200)
        h.send_header("Content-Length", "4473")
        h.end_headers()
        h.wfile.write(b"\0" * 100)
        h.wfile.flush()
        stalled.append(1)
        time.sleep(5)
        return True
    proxy.faults.append(stall)
    out = tmp_path / "o"
    p = subprocess.Popen([nexus, "pull", "--plain-http", "--no-sandbox",
                          f"{proxy.host}/{name}", "-o", str(out)], env=env,
                         stderr=subprocess.PIPE)
    for _ in range(200):
        if stalled:
            break
        time.sleep(0.05)
    assert stalled and [e for e in tmp_path.iterdir() if ".nexus-stage." in e.name]
    os.kill(p.pid, signal.SIGTERM)
    assert p.wait(10) == -signal.SIGTERM
    nothing_published(out)


def test_tls_with_a_test_ca(nexus, bundle, env, tmp_path_factory, tmp_path, request):
    tmp = tmp_path_factory.mktemp("tls-registry")
    ca, cert, key = of.test_ca(tmp)
    reg = of.Registry(tmp, tls=(cert, key))
    try:
        ref = f"{reg.host}/{repo(request)}:v1"
        r = run(nexus, "push", "--no-sandbox", bundle.root, ref, env=env)
        assert r.returncode == 3 and "certificate" in r.stderr.lower(), r.stderr
        r = run(nexus, "push", "--no-sandbox", "--ca-file", ca, bundle.root, ref, env=env)
        assert r.returncode == 0, r.stderr
        r = run(nexus, "pull", "--no-sandbox", "--ca-file", ca, ref, "-o", tmp_path / "o", env=env)
        assert r.returncode == 0, r.stderr
        assert tree(tmp_path / "o") == tree(bundle.root)
    finally:
        reg.stop()
