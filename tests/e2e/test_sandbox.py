"""nexus run: the bundle's nexus_cli runs in the sandbox; probes planted as
bin/nexus_cli are contained and reported within the timeout."""
import os
import shutil
import subprocess
import time

import pytest

from conftest import run

PROBES = {
    "ok": 'int main(void){ puts("{\\"ok\\": true}"); return 0; }',
    "socket": '''int main(void){ struct sockaddr_in a = { AF_INET, htons(53) };
        int s = socket(AF_INET, SOCK_STREAM, 0); inet_pton(AF_INET, "1.1.1.1", &a.sin_addr);
        if (s >= 0 && connect(s, (void *)&a, sizeof(a)) == 0) { puts("ESCAPED"); return 0; } return 1; }''',
    "passwd": 'int main(void){ if (open("/etc/passwd", O_RDONLY) >= 0) { puts("ESCAPED"); return 0; } return 1; }',
    "write": 'int main(void){ if (open("/bundle/owned", O_WRONLY|O_CREAT, 0644) >= 0) { puts("ESCAPED"); return 0; } return 1; }',
    "loop": "int main(void){ for (volatile int i = 0;; i++); }",
    "spew": "int main(void){ static char b[65536]; memset(b, 'y', sizeof b); for (;;) fwrite(b, 1, sizeof b, stdout); }",
}
HEAD = "".join(f"#include <{h}>\n" for h in (
    "stdio.h", "string.h", "fcntl.h", "unistd.h", "sys/socket.h", "netinet/in.h", "arpa/inet.h"))


# Every probe runs under both backends, forced through NEXUS_SANDBOX.
@pytest.fixture(autouse=True)
def backend(sandbox_backend):
    return sandbox_backend


@pytest.fixture
def bundle(tmp_path):
    def plant(name):
        b = tmp_path / name
        (b / "bin").mkdir(parents=True)
        src = tmp_path / f"{name}.c"
        src.write_text(HEAD + PROBES[name])
        subprocess.run(["cc", "-O0", "-o", str(b / "bin" / "nexus_cli"), str(src)], check=True)
        os.chmod(b, 0o755)
        return b
    return plant


def test_run_streams_output(nexus, bundle):
    r = run(nexus, "run", bundle("ok"), "--text", "hello")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '{"ok": true}'


@pytest.mark.parametrize("probe", ["socket", "passwd", "write"])
def test_escapes_fail(nexus, bundle, probe):
    b = bundle(probe)
    r = run(nexus, "run", b, "--text", "x", timeout=30)
    assert r.returncode == 1
    assert "ESCAPED" not in r.stdout
    assert not (b / "owned").exists()


@pytest.mark.parametrize("probe", ["loop", "spew"])
def test_runaway_is_killed_in_time(nexus, bundle, probe):
    t0 = time.monotonic()
    r = run(nexus, "run", bundle(probe), "--text", "x", "--timeout", "3", timeout=30)
    assert time.monotonic() - t0 < 15
    assert r.returncode == 1
    assert "killed" in r.stderr
    assert len(r.stdout) <= 16 << 20


def test_usage(nexus, tmp_path):
    assert run(nexus, "run", tmp_path).returncode == 2
    assert run(nexus, "run", "--help").returncode == 0
    assert run(nexus, "run", tmp_path, "--text", "x", "--sandbox", "chroot").returncode == 2


PROBES.update({
    # leave the process group the parent kills, then outlive the timeout
    "setsid": 'int main(void){ if (setsid() >= 0 || setpgid(0, 0) == 0 && getpgrp() != getpid()) puts("ESCAPED"); if (fork() == 0) { setsid(); for (;;) pause(); } for (;;) pause(); }',
    "unshare": 'int main(void){ if (unshare(CLONE_NEWUSER) == 0 || unshare(CLONE_NEWNS) == 0) { puts("ESCAPED"); return 0; } return 1; }',
    "ptrace": 'int main(void){ if (ptrace(PTRACE_ATTACH, getppid(), 0, 0) == 0) { puts("ESCAPED"); return 0; } return 1; }',
    "bigalloc": 'int main(void){ size_t n = 64ull << 30; char *p = malloc(n); if (!p) { fputs("terminate called after throwing an instance of std::bad_alloc\\n", stderr); abort(); } return 0; }',
})
HEAD += "".join(f"#include <{h}>\n" for h in ("stdlib.h", "sched.h", "signal.h", "sys/ptrace.h"))
HEAD = "#define _GNU_SOURCE\n" + HEAD


@pytest.mark.parametrize("probe", ["unshare", "ptrace"])
def test_namespace_and_ptrace_escapes_fail(nexus, bundle, backend, probe):
    if backend == "bwrap":
        pytest.skip("inside bwrap's namespaces both stay inside (nested userns, its own pid ns)")
    r = run(nexus, "run", bundle(probe), "--text", "x", "--timeout", "5", timeout=30)
    assert r.returncode == 1 and "ESCAPED" not in r.stdout


def test_no_escape_from_the_killed_process_group(nexus, bundle):
    b = bundle("setsid")
    t0 = time.monotonic()
    r = run(nexus, "run", b, "--text", "x", "--timeout", "2", timeout=30)
    assert time.monotonic() - t0 < 15
    assert r.returncode == 1 and "ESCAPED" not in r.stdout
    exe = os.stat(b / "bin" / "nexus_cli")
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            st = os.stat(f"/proc/{pid}/exe")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (exe.st_dev, exe.st_ino):
            left.append(pid)
    assert left == []


def test_memory_limit_is_named(nexus, bundle):
    r = run(nexus, "run", bundle("bigalloc"), "--text", "x", "--sandbox-memory", "1GiB", timeout=30)
    assert r.returncode == 1
    assert "memory limit (RLIMIT_AS = 1.0 GiB)" in r.stderr, r.stderr
    assert "bad_alloc" not in r.stderr


PROBES["daemons"] = ('int main(void){ for (int i = 0; i < 8; i++) if (fork() == 0) break; '
                     'puts("up"); fflush(stdout); for (;;) pause(); }')


def _running(exe):
    st = os.stat(exe)
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            s = os.stat(f"/proc/{pid}/exe")
        except OSError:
            continue
        if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
            pids.append(int(pid))
    return pids


def test_nothing_outlives_a_killed_caller(nexus, bundle):
    """SIGKILL of `nexus run` (a CI job cancelled mid-verify) takes the
    sandboxed program and everything it started with it, under every backend."""
    b = bundle("daemons")
    exe = b / "bin" / "nexus_cli"
    p = subprocess.Popen([nexus, "run", str(b), "--text", "x", "--timeout", "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(_running(exe)) < 9 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(_running(exe)) == 9
        p.kill()
        p.wait()
        deadline = time.monotonic() + 10
        while _running(exe) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _running(exe) == []
    finally:
        for pid in _running(exe):
            os.kill(pid, 9)
        p.kill()
