#!/usr/bin/python3
"""The README's main job: build the example workspace into a bundle, verify
it, and run the bundle's own runtime on a few e-mails inside the sandbox.

Usage: scripts/demo.py [--nexus PATH] [--out DIR] [WORKSPACE]
Prints a short human summary; exits non-zero when any step fails.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

SAMPLES = [
    "Congratulations! You have been selected to receive a FREE cruise. Click here to claim your prize now!",
    "Hi Tom, can we move tomorrow's project review to 3pm? I still need to finish the slides.",
    "Earn $5000 a week working from home, no experience needed, reply with your bank details",
    "The build on the release branch failed again; the linker can't find libfoo. Any ideas?",
]


def step(title):
    print(f"\n== {title}", flush=True)


def run(cmd, **kw):
    print("$ " + " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], text=True, capture_output=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nexus", default=str(ROOT / "build/bin/nexus"))
    ap.add_argument("--out", default=str(ROOT / "build/demo/nexus_bundle_v1"))
    ap.add_argument("workspace", nargs="?", default=str(ROOT / "examples/spam-distill"))
    a = ap.parse_args()
    out = pathlib.Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, SOURCE_DATE_EPOCH=os.environ.get("SOURCE_DATE_EPOCH", "1700000000"))

    key = out.parent / "demo-release"
    if not key.with_suffix(".key").exists():
        step("release key (nexus keygen)")
        r = run([a.nexus, "keygen", "-o", key])
        if r.returncode != 0:
            sys.stderr.write(r.stderr)
            return r.returncode
        print(f"key id:     {r.stdout.strip()}")

    step(f"build {a.workspace}")
    r = run([a.nexus, "build", a.workspace, "-o", out, "--force", "--json",
             "--key", key.with_suffix(".key")], env=env)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        print(f"build failed (exit {r.returncode})")
        return r.returncode
    res = json.loads(r.stdout)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"bundle:     {out}")
    print(f"size:       {size / 1e6:.1f} MB in {sum(1 for f in out.rglob('*') if f.is_file())} files")
    removed = res.get("removed_imports") or res.get("removed") or []
    if removed:
        print(f"filtered:   {len(removed)} teacher/training import(s) removed from the serving code")

    step(f"verify {out}")
    r = run([a.nexus, "verify", out, "--json", "--require-signature",
             "--pubkey", key.with_suffix(".pub")])
    try:
        rep = json.loads(r.stdout)
    except json.JSONDecodeError:
        sys.stderr.write(r.stderr)
        print(f"verify failed (exit {r.returncode})")
        return r.returncode or 3
    for c in rep.get("checks", []):
        print(f"  {c.get('status', '?').upper():5} {c.get('id')}")
    print(f"size:       {out.joinpath('model/student_model.onnx').stat().st_size / 1e6:.1f} MB student, "
          f"parameters {res.get('parameters')}")
    for f in rep.get("findings", []):
        print(f"  {f['severity'].upper():5} {f['check']} {f['code']} {f.get('path', '')}: {f['message']}")
    print(f"verdict:    {rep.get('verdict')}")
    if r.returncode != 0:
        return r.returncode

    step("inference with the bundle's own runtime, in the sandbox")
    cmd = [a.nexus, "run", out]
    for s in SAMPLES:
        cmd += ["--text", s]
    r = run(cmd)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        print(f"run failed (exit {r.returncode})")
        return r.returncode
    for text, line in zip(SAMPLES, r.stdout.splitlines()):
        o = json.loads(line)
        label = o.get("label", "?")
        score = max(o.get("scores", [0])) if o.get("scores") else 0
        print(f"  {label:>5} {score:5.3f}  {text[:70]}")
    print("\ndemo: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
