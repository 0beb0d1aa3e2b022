"""scripts/setup.sh: its failures say what failed and what to check."""
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_npm_pack_failure_is_a_clear_error(tmp_path):
    """npm that cannot reach its registry must not end setup silently (it
    did: `npm pack --silent` printed nothing and set -e exited)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "npm").write_text(
        "#!/bin/sh\n"
        "[ \"$1\" = config ] && { echo https://registry.example/; exit 0; }\n"
        "echo 'npm ERR! code SELF_SIGNED_CERT_IN_CHAIN' >&2\n"
        "echo 'npm ERR! request to https://registry.example/x failed' >&2\n"
        "exit 1\n")
    (fake / "npm").chmod(0o755)
    cache = tmp_path / "cache"
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", NEXUS_CACHE=str(cache))
    r = subprocess.run(["bash", str(ROOT / "scripts/setup.sh"), "--no-apt"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert "npm pack onnxruntime-node@1.30.0 failed" in r.stderr
    assert "SELF_SIGNED_CERT_IN_CHAIN" in r.stderr  # npm's own reason is shown
    assert "registry.example" in r.stderr
    # nothing half-fetched is left in the cache
    assert not any(p.name.startswith("npm.") for p in cache.iterdir())
    assert not (cache / "onnxruntime-node-1.30.0.tgz").exists()
