"""`nexus build` end to end: real workspaces, the real binary, the bundle on disk."""
import hashlib
import json
import os
import pathlib
import random
import signal
import stat
import subprocess
import time

import pytest

from conftest import ROOT, RUNTIME_DIR, run
from workspace import INFERENCE_PY, default_config, make_workspace, student_onnx

# The whole bundle, SPEC §1 + lib/ (DESIGN §3).  config/selftest.json joins
# this list when self-verification writes it.
EXPECTED_FILES = [
    "LICENSE",
    "README.md",
    "THIRD_PARTY_NOTICES",
    "bin/nexus_cli",
    "config/runtime.yaml",
    "config/selftest.json",
    "lib/libonnxruntime.so.1",
    "manifest.json",
    "model/student_model.onnx",
    "model/tokenizer/tokenizer.json",
    "model/tokenizer/vocab.txt",
    "src/__init__.py",
    "src/inference.py",
    "src/utils.py",
]
EXPECTED_DIRS = sorted({str(pathlib.PurePosixPath(f).parent) for f in EXPECTED_FILES} - {"."}
                       | {"model"})
EPOCH = "1700000000"


def build(nexus, ws, out, *extra, env=None):
    e = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    e.update(env or {})
    return run(nexus, "build", ws, "-o", out, *extra, env=e)


def tree(root):
    root = pathlib.Path(root)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def stages(parent):
    return [p.name for p in pathlib.Path(parent).iterdir() if ".nexus-stage." in p.name]


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def assert_complete(bundle):
    """Every file listed with the right hash and size, and nothing else."""
    m = json.loads((bundle / "manifest.json").read_text())
    listed = [f["path"] for f in m["files"]]
    assert listed == sorted(listed)
    assert sorted(listed + ["manifest.json"]) == [
        p for p in tree(bundle) if (bundle / p).is_file()]
    for f in m["files"]:
        p = bundle / f["path"]
        assert p.stat().st_size == f["size_bytes"], f["path"]
        assert sha(p) == f["sha256"], f["path"]
    return m


@pytest.fixture
def ws(tmp_path):
    return make_workspace(tmp_path / "ws")


@pytest.fixture
def out(tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_tree_modes_and_manifest(nexus, ws, out):
    r = build(nexus, ws, out / "b")
    assert r.returncode == 0, r.stderr
    b = out / "b"
    assert tree(b) == sorted(EXPECTED_FILES + EXPECTED_DIRS)
    for p in tree(b):
        st = (b / p).lstat()
        if stat.S_ISDIR(st.st_mode):
            assert stat.S_IMODE(st.st_mode) == 0o555, p
        else:
            assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1, p
            want = 0o555 if p == "bin/nexus_cli" else 0o444
            assert stat.S_IMODE(st.st_mode) == want, p
    assert stat.S_IMODE(b.stat().st_mode) == 0o555
    m = assert_complete(b)
    assert m["bundle_id"] == "nexus_bundle_v1"
    assert m["build_timestamp"] == "2023-11-14T22:13:20Z"
    assert m["model_metadata"] == {"architecture": "TinySpamStudent-1L", "parameters": "193",
                                   "format": "ONNX", "quantization": "none"}
    assert m["invariants"] == {"teacher_free": True, "training_code_excluded": True}
    assert m["signature"] == ""
    # The student is exported (same graph and weights, provenance stripped);
    # the runtime is the trusted one.
    import onnx
    got = onnx.load(str(b / "model/student_model.onnx"))
    src = onnx.load(str(ws / "artifacts/student.onnx"))
    assert got.producer_name == "nexus"
    assert got.graph.node == src.graph.node and got.graph.initializer == src.graph.initializer
    assert sha(b / "bin/nexus_cli") == sha(RUNTIME_DIR / "bin/nexus_cli")
    assert stages(out) == []


def test_rebuild_is_byte_identical(nexus, ws, out):
    assert build(nexus, ws, out / "one").returncode == 0
    time.sleep(1.1)  # a build that leaked the clock would differ now
    assert build(nexus, ws, out / "two").returncode == 0
    files = [p for p in tree(out / "one") if (out / "one" / p).is_file()]
    assert files == [p for p in tree(out / "two") if (out / "two" / p).is_file()]
    for p in files:
        assert (out / "one" / p).read_bytes() == (out / "two" / p).read_bytes(), p


def test_no_fsync_builds_the_same_bundle_without_syncing(nexus, ws, out):
    """--no-fsync changes durability only: same bytes, same modes, and not
    one fsync/fdatasync/sync_file_range call (strace: scripts/setup.sh
    installs it)."""
    assert build(nexus, ws, out / "durable").returncode == 0
    trace = out / "trace"
    cmd = ["strace", "-f", "-qq", "-e", "signal=none", "-e",
           "trace=fsync,fdatasync,sync_file_range,syncfs",
           "-o", trace, nexus, "build", ws, "-o", out / "fast", "--no-fsync"]
    env = dict(os.environ, SOURCE_DATE_EPOCH=EPOCH)
    if os.environ.get("NEXUS_SANITIZED"):
        # LeakSanitizer cannot run under ptrace; ASan and UBSan still do
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":detect_leaks=0"
    r = run(*cmd, env=env)
    assert r.returncode == 0, r.stderr
    assert tree(out / "durable") == tree(out / "fast")
    for p in tree(out / "fast"):
        a, b = out / "durable" / p, out / "fast" / p
        assert stat.S_IMODE(a.stat().st_mode) == stat.S_IMODE(b.stat().st_mode), p
        if a.is_file():
            assert a.read_bytes() == b.read_bytes(), p
    calls = [line for line in trace.read_text().splitlines() if "sync" in line]
    assert calls == []
    # the trace sees the calls it is asked for: the durable build makes them
    r = run("strace", "-f", "-qq", "-e", "signal=none", "-e", "trace=fsync,fdatasync", "-o",
            trace, nexus, "build", ws, "-o", out / "again", env=env)
    assert r.returncode == 0, r.stderr
    assert any("fsync" in line for line in trace.read_text().splitlines())


def test_json_output(nexus, ws, out):
    r = build(nexus, ws, out / "b", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["schema"] == "nexus.build.v1"
    assert doc["bundle_path"] == str(out / "b")
    assert [f["path"] for f in doc["files"]] == EXPECTED_FILES
    assert doc["bytes"] == sum((out / "b" / p).stat().st_size for p in EXPECTED_FILES)
    assert doc["parameter_count"] == 193
    assert {(x["file"], x["line"], x["module"]) for x in doc["removed_imports"]} == {
        ("src/inference.py", 3, "teacher_model"), ("src/inference.py", 4, "training_modules")}
    assert set(doc["steps"]) >= {"load", "stage", "export", "filter", "publish"}


def test_existing_output_needs_force(nexus, ws, out):
    (out / "b").mkdir()
    (out / "b" / "keep.txt").write_text("mine")
    r = build(nexus, ws, out / "b")
    assert r.returncode == 2, r.stderr
    assert "--force" in r.stderr
    assert tree(out / "b") == ["keep.txt"]
    assert stages(out) == []
    r = build(nexus, ws, out / "b", "--force")
    assert r.returncode == 0, r.stderr
    assert_complete(out / "b")
    assert stages(out) == []


def test_default_output_is_bundle_id_in_cwd(nexus, ws, out):
    r = run(nexus, "build", ws, cwd=out)
    assert r.returncode == 0, r.stderr
    assert_complete(out / "nexus_bundle_v1")


def test_build_bundle_sh_wrapper(nexus, ws, out):
    env = dict(os.environ, PATH=f"{pathlib.Path(nexus).parent}:{os.environ['PATH']}")
    r = run(ROOT / "scripts/build_bundle.sh", ws, "-o", out / "b", env=env)
    assert r.returncode == 0, r.stderr
    assert_complete(out / "b")


def test_teacher_imports_filtered(nexus, ws, out):
    assert build(nexus, ws, out / "b").returncode == 0
    got = (out / "b/src/inference.py").read_text()
    src = INFERENCE_PY
    assert got.count("\n") == src.count("\n")
    assert "teacher_model" not in got and "training_modules" not in got
    # Everything but the two import lines is unchanged, line for line.
    for i, (a, b) in enumerate(zip(src.splitlines(), got.splitlines()), 1):
        if i not in (3, 4):
            assert a == b, i
    assert (out / "b/src/utils.py").read_text() == (ws / "serving/utils.py").read_text()


def test_teacher_import_still_used_fails(nexus, tmp_path, out):
    code = INFERENCE_PY + "\n\ndef distill():\n    return teacher_model.TeacherModel()\n"
    ws = make_workspace(tmp_path / "ws", inference_py=code)
    r = build(nexus, ws, out / "b")
    assert r.returncode == 1, r.stderr
    line = code.splitlines().index("    return teacher_model.TeacherModel()") + 1
    assert f"serving/inference.py:{line}" in r.stderr
    assert not (out / "b").exists()
    assert stages(out) == []


def test_teacher_files_never_copied(nexus, ws, out):
    assert build(nexus, ws, out / "b").returncode == 0
    names = " ".join(tree(out / "b")).lower()
    for bad in ("teacher", "optimizer", "training", "checkpoint", ".pt", "special_tokens"):
        assert bad not in names


@pytest.mark.parametrize("teacher", ["serving/utils.py", "artifacts/tokenizer/vocab.txt",
                                     "artifacts/student.onnx", "README.md"])
def test_packaged_path_listed_as_teacher_refused(nexus, tmp_path, out, teacher):
    ws = make_workspace(tmp_path / "ws",
                        config={"teacher": f"[artifacts/teacher.onnx, {teacher}]"})
    r = build(nexus, ws, out / "b")
    assert r.returncode == 2, r.stderr
    assert teacher in r.stderr
    assert not (out / "b").exists()


def test_symlink_in_workspace_refused(nexus, ws, out):
    (ws / "serving/utils.py").unlink()
    (ws / "serving/utils.py").symlink_to("../LICENSE")
    r = build(nexus, ws, out / "b")
    assert r.returncode == 3, r.stderr
    assert "serving/utils.py" in r.stderr and "symlink" in r.stderr
    assert not (out / "b").exists()
    assert stages(out) == []


def test_symlinked_directory_refused(nexus, ws, out, tmp_path):
    (ws / "artifacts/tokenizer").rename(tmp_path / "tok")
    (ws / "artifacts/tokenizer").symlink_to(tmp_path / "tok")
    r = build(nexus, ws, out / "b")
    assert r.returncode == 3, r.stderr
    assert not (out / "b").exists()


def test_hard_link_refused(nexus, ws, out):
    os.link(ws / "artifacts/teacher.onnx", ws / "hardlinked.onnx")
    (ws / "artifacts/student.onnx").unlink()
    os.link(ws / "hardlinked.onnx", ws / "artifacts/student.onnx")
    r = build(nexus, ws, out / "b")
    assert r.returncode in (2, 3), r.stderr
    assert "artifacts/student.onnx" in r.stderr
    assert not (out / "b").exists()


def test_hard_linked_runtime_names_the_cause(nexus, ws, out, tmp_path):
    """perf's build-id cache (~/.debug) hard-links the libraries it
    profiled; the build then refuses the runtime's ONNX Runtime, and says
    which file, its link count, the likely cause and what to do."""
    import shutil
    rt = tmp_path / "runtime"
    shutil.copytree(RUNTIME_DIR, rt)
    lib = rt / "lib" / "libonnxruntime.so.1"
    cache = tmp_path / ".debug" / "build-id"
    cache.mkdir(parents=True)
    os.link(lib, cache / "elf")
    r = build(nexus, ws, out / "b", env={"NEXUS_RUNTIME_DIR": str(rt)})
    assert r.returncode in (2, 3), r.stderr
    assert f"{lib} has 2 hard links" in r.stderr, r.stderr
    assert "perf" in r.stderr and "~/.debug" in r.stderr
    assert f"perf buildid-cache --purge {lib}" in r.stderr
    assert f"find / -xdev -samefile {lib}" in r.stderr
    assert not (out / "b").exists()


def test_fifo_refused_without_blocking(nexus, ws, out):
    (ws / "LICENSE").unlink()
    os.mkfifo(ws / "LICENSE")
    r = build(nexus, ws, out / "b")
    assert r.returncode == 3, r.stderr
    assert "LICENSE" in r.stderr and "fifo" in r.stderr
    assert not (out / "b").exists()


def test_unknown_key_is_config_error(nexus, tmp_path, out):
    ws = make_workspace(tmp_path / "ws", extra_yaml="forbiden_imports: [x]\n")
    r = build(nexus, ws, out / "b")
    assert r.returncode == 2, r.stderr
    assert "forbiden_imports" in r.stderr
    assert not (out / "b").exists()


@pytest.mark.parametrize("key,value", [("runtime_config", "../outside.yaml"),
                                       ("readme", "/etc/passwd"),
                                       ("student", "{model: artifacts/../../x.onnx}")])
def test_escaping_path_is_config_error(nexus, tmp_path, out, key, value):
    (tmp_path / "outside.yaml").write_text("task: raw\n")
    ws = make_workspace(tmp_path / "ws", config={key: value})
    r = build(nexus, ws, out / "b")
    assert r.returncode == 2, r.stderr
    assert not (out / "b").exists()


@pytest.mark.parametrize("how", ["text", "truncated"])
def test_student_not_onnx(nexus, tmp_path, out, how):
    ws = make_workspace(tmp_path / "ws")
    good = (ws / "artifacts/student.onnx").read_bytes()
    bad = b"this is not a model\n" * 10 if how == "text" else good[: len(good) // 2]
    (ws / "artifacts/student.onnx").write_bytes(bad)
    r = build(nexus, ws, out / "b")
    assert r.returncode == 3, r.stderr
    assert "artifacts/student.onnx" in r.stderr
    assert "@" in r.stderr or "offset" in r.stderr
    assert not (out / "b").exists()
    assert stages(out) == []


def test_missing_tokenizer_files(nexus, tmp_path, out):
    ws = make_workspace(tmp_path / "ws", tokenizer_files=())
    r = build(nexus, ws, out / "b")
    assert r.returncode == 2, r.stderr
    assert "tokenizer" in r.stderr


def test_only_vocab_txt(nexus, tmp_path, out):
    ws = make_workspace(tmp_path / "ws", tokenizer_files=("vocab.txt",))
    assert build(nexus, ws, out / "b").returncode == 0
    assert not (out / "b/model/tokenizer/tokenizer.json").exists()
    assert_complete(out / "b")


def test_invalid_runtime_yaml(nexus, tmp_path, out):
    ws = make_workspace(tmp_path / "ws", runtime_yaml="task: classify\n")
    r = build(nexus, ws, out / "b")
    assert r.returncode == 2, r.stderr
    assert "runtime.yaml" in r.stderr


def test_unwritable_output_dir(nexus, ws, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/nexus_bundle_test"  # not even root may create here
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        target = ro / "b"
    r = build(nexus, ws, target)
    assert r.returncode == 3, r.stderr
    assert not os.path.exists(target)


def test_missing_output_parent(nexus, ws, tmp_path):
    """-o's missing parents are created (issue 21); the bundle is published."""
    r = build(nexus, ws, tmp_path / "no/such/dir/b")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "no/such/dir/b/manifest.json").is_file()
    (tmp_path / "file").write_text("x")
    r = build(nexus, ws, tmp_path / "file/b")
    assert r.returncode == 3 and "Not a directory" in r.stderr, r.stderr


@pytest.fixture(scope="module")
def big_ws(tmp_path_factory):
    """A workspace whose student holds a ~200 MB embedding table (50000 x 1000 fp32)."""
    root = tmp_path_factory.mktemp("big") / "ws"
    return make_workspace(root, student=student_onnx(vocab_rows=50000, dim=1000))


def test_sigterm_removes_stage(nexus, big_ws, out):
    p = subprocess.Popen([nexus, "build", str(big_ws), "-o", str(out / "b")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while not stages(out) and p.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    if p.returncode == 0:  # finished before the signal landed
        assert_complete(out / "b")
    else:
        assert p.returncode == -signal.SIGTERM
        assert not (out / "b").exists()
    assert stages(out) == []


# LD_PRELOAD shim: SIGTERM the moment the staging directory exists, before
# nx_stage_create has returned it (the window where the signal handler did
# not know the stage yet: a stage left behind, seen once under load).
SIGTERM_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
int mkdirat(int dirfd, const char *path, mode_t mode)
{
	int (*real)(int, const char *, mode_t) =
		(int (*)(int, const char *, mode_t))dlsym(RTLD_NEXT, "mkdirat");
	int rc = real(dirfd, path, mode);
	if (rc == 0 && strstr(path, ".nexus-stage."))
		raise(SIGTERM);
	return rc;
}
"""


def test_sigterm_as_the_stage_appears_removes_it(nexus, ws, out, tmp_path):
    src = tmp_path / "shim.c"
    src.write_text(SIGTERM_SHIM)
    shim = tmp_path / "shim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", shim, src, "-ldl"], check=True)
    r = build(nexus, ws, out / "b", env={**os.environ, "LD_PRELOAD": str(shim)})
    assert r.returncode == -signal.SIGTERM, (r.returncode, r.stderr)
    assert not (out / "b").exists()
    assert stages(out) == []


def test_kill_9_never_leaves_partial_bundle(nexus, big_ws, out):
    t0 = time.time()
    r = build(nexus, big_ws, out / "probe")
    assert r.returncode == 0, r.stderr
    assert (out / "probe/model/student_model.onnx.data").stat().st_size >= 200_000_000
    took = time.time() - t0
    rng = random.Random(1234)
    saw_stale = False
    for i in range(6):
        target = out / f"b{i}"
        p = subprocess.Popen([nexus, "build", str(big_ws), "-o", str(target)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if i % 2:
            # at any time from the start (the probe build was cold, so a
            # later one may well be done by then: a complete bundle)
            time.sleep(rng.uniform(0, took * 1.1))
        else:
            # once the stage exists, so that some kills surely land mid-build
            deadline = time.time() + 60
            while (not any(s.startswith(f".b{i}.") for s in stages(out)) and
                   p.poll() is None and time.time() < deadline):
                time.sleep(0.002)
            time.sleep(rng.uniform(0, took * 0.3))
        p.kill()
        p.wait()
        if target.exists():
            assert_complete(target)  # published before the kill: complete
        saw_stale |= any(s.startswith(f".b{i}.") for s in stages(out))
        # The next build of the same bundle sweeps the dead build's stage.
        r = build(nexus, big_ws, target, "--force")
        assert r.returncode == 0, r.stderr
        assert_complete(target)
        assert [s for s in stages(out) if s.startswith(f".b{i}.")] == []
    assert saw_stale, "no kill landed mid-build; the test did not test anything"


def in_small_fs(tmp_path, size, *argv):
    """Run argv with a tmpfs of `size` mounted at tmp_path/small, in a mount
    namespace of its own; return (result, the names left in the tmpfs)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    script = ('mount -t tmpfs -o size="$1" tmpfs "$0" || exit 99; shift; "$@"; rc=$?; '
              'echo "LEFT:$(cd "$0" && find . -mindepth 1 | sort | tr "\\n" " ")" >&2; exit $rc')
    r = run("unshare", "-m", "--propagation", "private", "sh", "-c", script, mnt, size,
            *argv, env=dict(os.environ, SOURCE_DATE_EPOCH=EPOCH))
    assert r.returncode != 99, r.stderr
    left = r.stderr.rsplit("LEFT:", 1)[1].split()
    return r, mnt, left


def test_full_disk_during_export_names_the_file_leaves_nothing(nexus, big_ws, tmp_path):
    """200 MB of weights into a 64 MiB filesystem: exit 3, the error names the
    bundle file that did not fit and says what to do, no stage is left."""
    r, mnt, left = in_small_fs(tmp_path, "64m", nexus, "build", big_ws, "-o",
                               tmp_path / "small/b")
    assert r.returncode == 3, r.stderr
    assert f"cannot write {mnt}/b/model/student_model.onnx.data" in r.stderr
    assert "No space left on device; free space" in r.stderr
    assert left == []


def test_full_disk_during_assemble_names_the_file_leaves_nothing(nexus, ws, tmp_path):
    """A small student but no room for the 45 MB runtime library."""
    r, mnt, left = in_small_fs(tmp_path, "24m", nexus, "build", ws, "-o", tmp_path / "small/b")
    assert r.returncode == 3, r.stderr
    assert f"cannot write {mnt}/b/" in r.stderr and "No space left on device" in r.stderr
    assert left == []


def test_full_disk_during_inspect_export_removes_both_files(nexus, big_ws, tmp_path):
    r, mnt, left = in_small_fs(tmp_path, "64m", nexus, "inspect",
                               big_ws / "artifacts/student.onnx", "--export-to",
                               tmp_path / "small/s.onnx")
    assert r.returncode == 3, r.stderr
    assert f"cannot write {mnt}/student_model.onnx.data" in r.stderr
    assert left == []


def stderr_on_a_terminal(*argv):
    """Run argv with stderr on a pseudo-terminal; return (exit status, what it wrote)."""
    import pty
    master, slave = pty.openpty()
    # a terminal that takes escapes: the progress line is off for TERM unset
    # or dumb and under NO_COLOR (cli.c), and a test runner's env may say so
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    p = subprocess.Popen([str(a) for a in argv], stdout=subprocess.DEVNULL, stderr=slave,
                         env=dict(env, SOURCE_DATE_EPOCH=EPOCH, TERM="xterm"))
    os.close(slave)
    chunks = []
    while True:
        try:
            b = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not b:
            break
        chunks.append(b)
    os.close(master)
    return p.wait(timeout=300), b"".join(chunks).decode()


def test_progress_on_a_terminal_only(nexus, ws, out):
    """build and verify show the step under way on a terminal, and clear it;
    a pipe (a CI log) gets no control sequences."""
    rc, err = stderr_on_a_terminal(nexus, "build", ws, "-o", out / "b")
    assert rc == 0, err
    for step in ("export", "assemble", "verify", "publish"):
        assert f"nexus build: {step}..." in err
    assert err.endswith("\r\x1b[K")  # the status line is cleared at the end
    rc, err = stderr_on_a_terminal(nexus, "verify", "--no-sandbox", out / "b")
    assert rc == 0, err
    assert "nexus verify: integrity..." in err and "nexus verify: size..." in err
    assert err.endswith("\r\x1b[K")
    r = build(nexus, ws, out / "c")
    assert r.returncode == 0 and "\x1b" not in r.stderr
    r = run(nexus, "verify", "--no-sandbox", out / "c")
    assert r.returncode == 0 and "\x1b" not in r.stderr


def test_signed_build(nexus, ws, out, tmp_path):
    assert run(nexus, "keygen", "-o", tmp_path / "rel").returncode == 0
    r = build(nexus, ws, out / "b", "--key", tmp_path / "rel.key", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    m = assert_complete(out / "b")
    assert doc["signed"] and m["signature"].startswith(f"ed25519:{doc['key_id']}:")
    # Deterministic: Ed25519 signs the same bytes the same way.
    assert build(nexus, ws, out / "c", "--key", tmp_path / "rel.key").returncode == 0
    assert (out / "b/manifest.json").read_bytes() == (out / "c/manifest.json").read_bytes()
    r = build(nexus, ws, out / "d", "--key", tmp_path / "missing.key")
    assert r.returncode in (2, 3) and not (out / "d").exists()


@pytest.mark.parametrize("where,code", [
    ("serving", 'LABEL_SOURCE = "teacher logits"\n'),
    ("serving", "soft_targets = None\n"),
    ("runtime", "# tuned against the distillation run\n"),
])
def test_self_verification_blocks_publish(nexus, tmp_path, out, where, code):
    """What TRV would refuse after publishing is refused before it: nothing published."""
    if where == "serving":
        ws = make_workspace(tmp_path / "ws", utils_py=code)
    else:
        ws = make_workspace(tmp_path / "ws")
        rt = ws / "config/runtime.yaml"
        rt.write_text(code + rt.read_text())
    r = build(nexus, ws, out / "b")
    if where == "runtime":
        # A forbidden term in a comment is a WARN: published, and reported.
        assert r.returncode == 0, r.stderr
        assert "WARN code" in r.stdout
        return
    assert r.returncode == 1, r.stderr
    assert "self-verification failed" in r.stderr
    assert "FAIL code" in r.stderr
    assert not (out / "b").exists()
    assert stages(out) == []


def test_selftest_golden_file_written_by_the_bundle_runtime(nexus, ws, out, nexus_cli):
    """config/selftest.json holds what the bundle's own runtime computes, and
    the published bundle passes its own selftest."""
    assert build(nexus, ws, out / "b").returncode == 0
    doc = json.loads((out / "b/config/selftest.json").read_text())
    assert doc["schema"] == "nexus.selftest.v1"
    assert doc["cases"] and all("outputs" in c for c in doc["cases"])
    r = run(out / "b/bin/nexus_cli", "selftest")
    assert r.returncode == 0, r.stderr


def test_student_that_cannot_run_fails_the_build(nexus, tmp_path, out):
    """A model the runtime cannot load is refused before anything is published."""
    import onnx
    from onnx import helper, TensorProto
    ws = make_workspace(tmp_path / "ws")
    # Valid ONNX, but its input is not one the runtime can feed from text.
    g = helper.make_graph([helper.make_node("Identity", ["pixels"], ["logits"])], "g",
                          [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 3])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3])])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)]),
              str(ws / "artifacts/student.onnx"))
    r = build(nexus, ws, out / "b")
    assert r.returncode == 1, r.stderr
    assert "does not run in the bundle's runtime" in r.stderr
    assert not (out / "b").exists()
    assert stages(out) == []


def test_missing_teacher_file_is_config_error(nexus, tmp_path, out):
    """A typo in teacher: must not silently switch the fingerprint check off."""
    cfg = default_config()
    cfg["teacher"] = "[artifacts/teacher.onnx, checkpoints/teachr.pt]"
    ws = make_workspace(tmp_path / "ws", config=cfg)
    r = build(nexus, ws, out / "b")
    assert r.returncode == 2, r.stderr
    assert "checkpoints/teachr.pt" in r.stderr
    assert not (out / "b").exists()


def test_json_lists_what_export_removed(nexus, tmp_path, out):
    import onnx
    ws = make_workspace(tmp_path / "ws")
    m = onnx.load(str(ws / "artifacts/student.onnx"))
    onnx.helper.set_model_props(m, {"distilled_from": "teacher-xl", "license": "MIT"})
    m.doc_string = "trained with soft targets"
    onnx.save(m, str(ws / "artifacts/student.onnx"))
    r = build(nexus, ws, out / "b", "--json")
    assert r.returncode == 0, r.stderr
    exp = json.loads(r.stdout)["export"]
    removed = {(i["what"], i["name"]) for i in exp["removed"]}
    assert ("metadata", "distilled_from") in removed and ("metadata", "license") in removed
    assert exp["doc_strings"] >= 1
    shipped = onnx.load(str(out / "b/model/student_model.onnx"))
    assert not shipped.metadata_props and shipped.doc_string == ""
    assert shipped.producer_name == "nexus"
