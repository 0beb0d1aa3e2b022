#!/usr/bin/python3
"""Nexus benchmarks: each figure is a ratio against a named baseline run
side by side on the same inputs (see docs/BENCHMARKS.md).

    bench/run.py [--nexus build/bin/nexus] [--quick] [--only NAME[,NAME]] [--runs N] [--warm]

Every benchmark first checks that nexus's output is correct, then alternates
ours/baseline runs and reports medians.  Peak RSS is ru_maxrss from wait4
of the child, taken by bench/rusage.c (a tiny launcher, so the Python
runner's own RSS does not leak into it); it covers the child and the
descendants it waited for.  For
the file-heavy benchmarks (build, verify, export) the page cache is dropped
before every timed run when /proc/sys/vm/drop_caches is writable (root);
otherwise, or with --warm, all runs are warm-cache after a warm-up run.
Results go to bench/out/results.json; one table is printed.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import random
import shutil
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
PY = "/usr/bin/python3"
NPM_DIR = pathlib.Path(os.environ.get("NEXUS_BENCH_NPM",
                                      pathlib.Path.home() / ".cache/nexus/bench/npm"))
NPM_PKGS = ["onnxruntime-node@1.30.0", "tokenizers@0.23.2"]
MIB = 1024 * 1024


class Skip(Exception):
    pass


class Ctx:
    def __init__(self, a):
        self.a = a
        self.nexus = str(pathlib.Path(a.nexus).resolve())
        self.cli = str(pathlib.Path(self.nexus).parent.parent / "libexec/nexus/bin/nexus_cli")
        self.cache = ROOT / "build" / "bench"
        self.tmp = self.cache / "tmp"
        self.runs = a.runs or (3 if a.quick else 5)
        self.cold = not a.warm and self._can_drop()
        self.params = "25M" if a.quick else "300M"
        self.node_env = None

    @staticmethod
    def _can_drop():
        try:
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            return True
        except OSError:
            return False

    def drop(self):
        if self.cold:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")


def rusage_tool(ctx):
    """Build bench/rusage.c (the RSS-measuring launcher) into the cache."""
    exe = ctx.cache / "rusage"
    src = ROOT / "bench/rusage.c"
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", str(exe), str(src)], check=True)
    return str(exe)


RUSAGE = None


def timed(argv):
    """Wall time of one child spawned directly (no launcher, no pipes): for
    millisecond figures, where the launcher's extra exec would show."""
    t0 = time.perf_counter()
    rc = subprocess.call([str(x) for x in argv], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    if rc:
        raise RuntimeError(f"{argv[0]}: exit {rc}")
    return wall


def run(argv, *, shell=False, env=None, stdout=subprocess.DEVNULL, cwd=None, check=True,
        cpu=False):
    """Run one child through the rusage launcher; return (wall seconds, peak
    RSS bytes of the child and the descendants it waited for, exit status),
    and with cpu=True their CPU seconds (user + system) as a fourth."""
    rss_file = pathlib.Path(RUSAGE + ".out")
    cmd = ["sh", "-c", argv] if shell else [str(x) for x in argv]
    t0 = time.perf_counter()
    p = subprocess.run([RUSAGE, str(rss_file), *cmd], env=env, stdout=stdout,
                       stderr=subprocess.PIPE, cwd=cwd)
    wall = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: "
                           f"{p.stderr.decode(errors='replace')[-2000:]}")
    rss = int(rss_file.read_text()) * 1024
    global LAST_CPU
    user, system = pathlib.Path(str(rss_file) + ".cpu").read_text().split()
    LAST_CPU = float(user) + float(system)
    if cpu:
        return wall, rss, p.returncode, LAST_CPU
    return wall, rss, p.returncode


LAST_CPU = None   # CPU seconds (user + sys) of the last run()'s child


def _wrc(r):
    """(wall, rss, cpu) of a run(..., cpu=True) result."""
    return r[0], r[1], r[3]


def alternate(ctx, ours, base, runs, before=None, cold=True, deadline=None, warmup=True):
    """Alternate ours()/base() runs (each returns (wall, rss)); a warm-up
    pair first when the cache is not dropped (and warmup).  With deadline
    (a time.monotonic() value), no new pair starts after it: at least one
    pair, at most runs."""
    o, b = [], []
    if warmup and not (cold and ctx.cold):
        if before:
            before()
        ours()
        if before:
            before()
        base()
    for i in range(runs):
        if deadline is not None and i and time.monotonic() >= deadline:
            break
        for fn, acc in ((ours, o), (base, b)) if i % 2 == 0 else ((base, b), (ours, o)):
            if before:
                before()
            if cold:
                ctx.drop()
            acc.append(fn())
    return o, b


def med(xs):
    return statistics.median(xs)


def row(name, figure, ours, base, unit, target, ok, baseline, rss=None, rss_target=None,
        note="", extra=None):
    r = {"name": name, "figure": figure, "ours": ours, "baseline": base, "unit": unit,
         "ratio": (ours / base) if (ours is not None and base) else None,
         "target": target, "pass": ok, "baseline_name": baseline,
         "peak_rss_mib": rss / MIB if rss is not None else None, "rss_target_mib": rss_target,
         "note": note}
    if extra:
        r.update(extra)
    return r


# ---------------------------------------------------------------- fixtures
def gen_model(ctx, name, *flags):
    path = ctx.cache / f"{name}_{ctx.params}.onnx"
    if not path.exists():
        subprocess.run([PY, str(ROOT / "bench/gen_model.py"), str(path) + ".part",
                        "--params", ctx.params, *flags], check=True, stderr=subprocess.DEVNULL)
        os.rename(str(path) + ".part", path)
    return path


def big_workspace(ctx):
    """tests/e2e/workspace.py's workspace around the synthetic student."""
    ws = ctx.cache / f"ws_{ctx.params}"
    if not (ws / "nexus.yaml").exists():
        from workspace import make_workspace
        shutil.rmtree(ws, ignore_errors=True)
        make_workspace(ws, extra_yaml="limits: {max_model_bytes: 2GiB}\n")
        os.unlink(ws / "artifacts/student.onnx")
        # A file of its own: build refuses a student with several hard links.
        shutil.copyfile(gen_model(ctx, "student"), ws / "artifacts/student.onnx")
    return ws


def big_bundle(ctx):
    """The bundle of big_workspace, rebuilt when the runtime it packs is not
    the one ctx.nexus packs now (verify would rightly FAIL it)."""
    out = ctx.cache / f"bundle_{ctx.params}"
    rt = pathlib.Path(ctx.cli).parent.parent
    stale = any(not (out / f).exists() or (out / f).read_bytes() != (rt / f).read_bytes()
                for f in ("bin/nexus_cli", "lib/libonnxruntime.so.1"))
    if stale or not (out / "manifest.json").exists():
        subprocess.run(["chmod", "-R", "u+w", str(out)], stderr=subprocess.DEVNULL)
        shutil.rmtree(out, ignore_errors=True)
        run([ctx.nexus, "build", "-o", str(out), str(big_workspace(ctx))])
    return out


def fresh(path):
    path = pathlib.Path(path)
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    return path


def files_under(d):
    return sorted(str(p) for p in pathlib.Path(d).rglob("*") if p.is_file())


def node_env(ctx):
    """Install the npm baselines once into NPM_DIR; Skip if impossible."""
    if ctx.node_env is not None:
        if isinstance(ctx.node_env, Skip):
            raise ctx.node_env
        return ctx.node_env
    try:
        if not shutil.which("node") or not shutil.which("npm"):
            raise Skip("node/npm not installed")
        mods = NPM_DIR / "node_modules"
        if not ((mods / "onnxruntime-node").exists() and (mods / "tokenizers").exists()):
            NPM_DIR.mkdir(parents=True, exist_ok=True)
            r = subprocess.run(["npm", "install", "--ignore-scripts", "--no-audit", "--no-fund",
                                "--prefix", str(NPM_DIR), *NPM_PKGS],
                               capture_output=True, text=True, timeout=600)
            if r.returncode:
                raise Skip("npm install failed: " + r.stderr.strip().splitlines()[-1][:120])
        env = dict(os.environ, NODE_PATH=str(mods))
        # --ignore-scripts skips nothing the binding needs: it finds its
        # bundled libonnxruntime.so.1 beside it by RUNPATH; check it loads.
        r = subprocess.run(["node", "-e", "require('onnxruntime-node');require('tokenizers')"],
                           env=env, capture_output=True, text=True)
        if r.returncode:
            raise Skip("npm baselines do not load: " + r.stderr.strip().splitlines()[-1][:120])
        ctx.node_env = env
        return env
    except Skip as e:
        ctx.node_env = e
        raise
    except (OSError, subprocess.SubprocessError) as e:
        ctx.node_env = Skip(f"npm: {e}")
        raise ctx.node_env


# ---------------------------------------------------------------- benchmarks
def bench_build(ctx):
    """Two rows: `nexus build --no-fsync` against cp + openssl dgst (neither
    waits for the disk), and the default durable build against the same
    plus `sync` of the copies (both wait for it)."""
    ws = big_workspace(ctx)
    out = ctx.tmp / "build_out"
    cpdir = ctx.tmp / "build_cp"
    fresh(out)
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([ctx.nexus, "build", "--json", "-o", str(out), str(ws)],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"nexus build failed: {r.stderr[-1000:]}")
    doc = json.loads(r.stdout)
    if doc["verify"]["verdict"] == "FAIL" or doc["parameter_count"] < 1:
        raise RuntimeError("nexus build: self-verify verdict FAIL")
    run([ctx.nexus, "verify", "--no-sandbox", str(out)])
    # The baseline copies what the bundle holds from the workspace (student,
    # tokenizer, runtime.yaml, sources, README, LICENSE) and hashes the copies.
    src = [ws / "artifacts/student.onnx", *sorted((ws / "artifacts/tokenizer").glob("*")),
           ws / "config/runtime.yaml", *(ws / "serving" / f for f in
                                           ("__init__.py", "inference.py", "utils.py")),
           ws / "README.md", ws / "LICENSE"]
    base_cmd = (f"mkdir -p {cpdir} && cp {' '.join(map(str, src))} {cpdir}/ && "
                f"openssl dgst -sha256 {cpdir}/* >/dev/null")
    size = os.path.getsize(ws / "artifacts/student.onnx")
    rows = []
    for label, flags, base_extra, base_name in (
            ("build", ["--no-fsync"], "", "cp + openssl dgst -sha256 of the copies"),
            ("build-durable", [], f" && sync {cpdir}/* {cpdir}",
             "cp + openssl dgst -sha256 + sync of the copies")):
        steps = []

        def ours():
            fresh(out)
            js = ctx.tmp / "build.json"
            with open(js, "w") as f:
                wall, rss, _ = run([ctx.nexus, "build", "--json", *flags, "-o", str(out),
                                    str(ws)], stdout=f)
            d = json.loads(js.read_text())
            s = dict(d["steps"])
            for c in d["verify"]["checks"]:
                s["verify." + c["id"]] = c["duration_ms"] / 1000
            steps.append(s)
            return wall, rss

        def base():
            fresh(cpdir)
            w, rss, _ = run(base_cmd + base_extra, shell=True)
            return w, rss

        o, b = alternate(ctx, ours, base, ctx.runs)
        step_med = {k: round(med([s.get(k, 0) for s in steps]), 3) for k in steps[-1]}
        ow, bw = med([x[0] for x in o]), med([x[0] for x in b])
        rss = max(x[1] for x in o)
        fresh(out)
        fresh(cpdir)
        rows.append(row(label, f"nexus build {' '.join(flags)}".strip() +
                        f", {size / 1e9:.2f} GB fp32 student", ow, bw, "s", "<= 0.8x",
                        ow <= 0.8 * bw and rss <= 64 * MIB, base_name, rss, 64,
                        note="steps (median s): " + ", ".join(
                            f"{k}={v}" for k, v in sorted(step_med.items(), key=lambda kv: -kv[1])
                            if v >= 0.01), extra={"steps": step_med}))
    return rows


def bench_inspect(ctx):
    model = gen_model(ctx, "student")
    r = subprocess.run([ctx.nexus, "inspect", "--json", str(model)], capture_output=True, text=True)
    d = json.loads(r.stdout)
    want = max(8, int(float(ctx.params[:-1]) * 10**6) // 256) * 256 + 512
    if r.returncode or d["parameters"] != want:
        raise RuntimeError(f"nexus inspect: parameters {d.get('parameters')} != {want}")
    code = ("import onnx,sys; m=onnx.load(sys.argv[1], load_external_data=False); "
            "sum(1 for _ in m.graph.initializer)")
    ours_t, base_t = [], []
    _, rss, _ = run([ctx.nexus, "inspect", str(model)])          # warm-up, RSS
    timed([PY, "-c", code, str(model)])
    nb = max(3, ctx.runs)
    for i in range(20):
        ours_t.append(timed([ctx.nexus, "inspect", str(model)]))
        if i < nb:
            base_t.append(timed([PY, "-c", code, str(model)]))
    ow, bw = med(ours_t), med(base_t)
    return [row("inspect", "nexus inspect (20 runs, process incl.)", ow, bw, "s", "< 5 ms",
                ow < 0.005, "python3 onnx.load(load_external_data=False)", rss,
                note=f"baseline: {nb} runs; warm cache")]


def bench_verify(ctx):
    bundle = big_bundle(ctx)
    r = subprocess.run([ctx.nexus, "verify", "--json", "--no-sandbox", str(bundle)],
                       capture_output=True, text=True)
    d = json.loads(r.stdout)
    if r.returncode or d["verdict"] == "FAIL":
        raise RuntimeError(f"nexus verify: verdict {d.get('verdict')}")
    files = files_under(bundle)
    checks = []

    def ours():
        js = ctx.tmp / "verify.json"
        ctx.tmp.mkdir(parents=True, exist_ok=True)
        with open(js, "w") as f:
            wall, rss, _ = run([ctx.nexus, "verify", "--json", "--no-sandbox", str(bundle)],
                               stdout=f)
        checks.append({c["id"]: c["duration_ms"] / 1000 for c in json.loads(js.read_text())["checks"]})
        return wall, rss

    def base():
        w, rss, _ = run(["openssl", "dgst", "-sha256", *files])
        return w, rss

    o, b = alternate(ctx, ours, base, ctx.runs)
    cm = {k: round(med([c[k] for c in checks]), 3) for k in checks[-1]}
    ow, bw = med([x[0] for x in o]), med([x[0] for x in b])
    rss = max(x[1] for x in o)
    return [row("verify", "nexus verify --no-sandbox of the build bundle", ow, bw, "s",
                "<= 1.1x", ow <= 1.1 * bw and rss <= 64 * MIB,
                "openssl dgst -sha256 of all bundle files", rss, 64,
                note="checks (median s): " + ", ".join(
                    f"{k}={v}" for k, v in sorted(cm.items(), key=lambda kv: -kv[1]) if v >= 0.01),
                extra={"checks": cm})]


def bench_sandbox(ctx):
    """TRV-5 (the selftest of the big bundle and its Python imports) under
    the landlock backend against the bwrap backend: the functional check's
    duration_ms from `nexus verify --json --sandbox X`, and the whole verify
    with landlock against openssl dgst of the bundle's files."""
    bundle = big_bundle(ctx)
    files = files_under(bundle)
    fx = {"landlock": [], "bwrap": []}
    whole = []

    def verify(backend):
        js = ctx.tmp / f"verify-{backend}.json"
        ctx.tmp.mkdir(parents=True, exist_ok=True)
        with open(js, "w") as f:
            wall, rss, _ = run([ctx.nexus, "verify", "--json", "--sandbox", backend, str(bundle)],
                               stdout=f, check=False)
        d = json.loads(js.read_text())
        if d["verdict"] == "FAIL":
            raise RuntimeError(f"nexus verify --sandbox {backend}: verdict FAIL")
        fx[backend].append(next(c["duration_ms"] for c in d["checks"] if c["id"] == "functional") / 1000)
        return wall, rss

    def landlock():
        w = verify("landlock")
        whole.append(w[0])
        return w

    o, b = alternate(ctx, landlock, lambda: verify("bwrap"), ctx.runs)
    ll, bw = med(fx["landlock"][-ctx.runs:]), med(fx["bwrap"][-ctx.runs:])
    ow = med(whole[-ctx.runs:])
    dg = [run(["openssl", "dgst", "-sha256", *files])[0] for _ in range(ctx.runs)]
    return [row("sandbox", "TRV-5 of the build bundle, landlock backend (duration_ms)", ll, bw,
                "s", "<= 1.0x", ll <= bw, "the same check, bwrap backend"),
            row("sandbox-verify", "nexus verify --sandbox landlock of the build bundle", ow,
                med(dg), "s", "informative", True, "openssl dgst -sha256 of all bundle files",
                note="includes TRV-5 (the selftest runs the model); the <= 1.1x gate is the "
                     "verify row (--no-sandbox)")]


def bench_export(ctx):
    """`nexus inspect --export-to` (text mode: the model file is hashed, the
    weights are copied into the data file by copy_file_range) against cp of
    the same file.  The build benchmark measures export with hashing."""
    model = gen_model(ctx, "student_prov", "--provenance", "--dead-initializer")
    outdir = ctx.tmp / "export"
    out = outdir / "student_model.onnx"
    cp_out = ctx.tmp / "export_cp.onnx"
    ctx.tmp.mkdir(parents=True, exist_ok=True)

    def export():
        fresh(outdir)
        outdir.mkdir()
        return run([ctx.nexus, "inspect", "--export-to", str(out), str(model)])

    export()
    d = json.loads(subprocess.run([ctx.nexus, "inspect", "--json", str(out)],
                                  capture_output=True, text=True, check=True).stdout)
    if d["metadata"] or d["doc_string"] or d["export_preview"]["removed"] or d["tensors"] != 2:
        raise RuntimeError("nexus inspect --export-to left provenance or the dead initializer")

    def ours():
        w, rss, _ = export()
        return w, rss

    def base():
        fresh(cp_out)
        w, rss, _ = run(["cp", str(model), str(cp_out)])
        return w, rss

    o, b = alternate(ctx, ours, base, ctx.runs)
    fresh(outdir)
    fresh(cp_out)
    ow, bw = med([x[0] for x in o]), med([x[0] for x in b])
    rss = max(x[1] for x in o)
    return [row("export", "inspect --export-to (provenance + dead init.)", ow, bw, "s",
                "<= 1.2x", ow <= 1.2 * bw and rss <= 64 * MIB, "cp of the same file", rss, 64)]


# ------------------------------------------------ runtime: small transformer
SEQ = 128


def seq128_student(ctx):
    """The spam-distill student (SpamTransformer-2L-d64) with its positional
    table tiled from 64 to 128 rows, so it runs at sequence length 128."""
    path = ctx.cache / "spam_student_seq128.onnx"
    if not path.exists():
        import numpy as np
        import onnx
        from onnx import numpy_helper
        m = onnx.load(str(ROOT / "examples/spam-distill/artifacts/student.onnx"))
        for i, t in enumerate(m.graph.initializer):
            if t.name == "pos.weight":
                a = numpy_helper.to_array(t)
                m.graph.initializer[i].CopyFrom(
                    numpy_helper.from_array(np.concatenate([a, a[::-1]]), "pos.weight"))
        del m.metadata_props[:]
        onnx.save(m, str(path))
    return path


def spam_bundle(ctx, batch, seq, student=None):
    """A bundle of examples/spam-distill with runtime.yaml set to batch/seq."""
    name = f"spam_b{batch}_s{seq}" + ("_x" if student else "")
    out = ctx.cache / name
    if (out / "manifest.json").exists():
        return out
    ws = ctx.cache / (name + "_ws")
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(ROOT / "examples/spam-distill", ws,
                    ignore=shutil.ignore_patterns("nexus_bundle_v1"))
    if student:
        shutil.copyfile(student, ws / "artifacts/student.onnx")
    rt = (ws / "config/runtime.yaml").read_text()
    rt = rt.replace("max_sequence_length: 64", f"max_sequence_length: {seq}")
    rt = rt.replace("batch_size: 8", f"batch_size: {batch}")
    (ws / "config/runtime.yaml").write_text(rt)
    shutil.rmtree(out, ignore_errors=True)
    run([ctx.nexus, "build", "-o", str(out), str(ws)])
    shutil.rmtree(ws)
    return out


def long_texts(n, seed=1):
    """n texts of at least ~200 words (so each fills 128 tokens)."""
    src = [json.loads(line)["text"] for line in
           (ROOT / "examples/spam-distill/artifacts/test_sample.jsonl").read_text().splitlines()]
    words = " ".join(src).split()
    rng = random.Random(seed)
    return [" ".join(rng.choice(words) for _ in range(200)) for _ in range(n)]


def read_results(path):
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines() if line]


def close(a, b, tol=1e-3):
    return all(abs(x - y) <= tol * max(1.0, abs(y)) for x, y in zip(a, b)) and len(a) == len(b)


def cli_vs_node(ctx, env, cli, model, batch, n, check, tag):
    """nexus_cli run on n long texts against onnxruntime-node running model
    on the ids nexus_cli gives them, batch rows at a time, one thread:
    check(ours_logits, node_logits) first, then alternating runs.  Returns
    (ours seq/s, node seq/s, ours runs) over the whole process (load
    included on both sides; nexus_cli also tokenizes, node gets the ids)."""
    texts = ctx.tmp / f"{tag}_texts_{n}.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in long_texts(n)))
    ids = ctx.tmp / f"{tag}_ids_{n}.jsonl"
    with open(ids, "w") as f:
        run([cli, "tokenize", "--input", str(texts)], stdout=f)
    lens = {len(json.loads(x)) for x in ids.read_text().splitlines()}
    if lens != {SEQ}:
        raise RuntimeError(f"{tag}: token lengths {sorted(lens)[:5]} != {SEQ}")
    res, nres = ctx.tmp / f"{tag}_ours.jsonl", ctx.tmp / f"{tag}_node.json"
    with open(res, "w") as f:
        run([cli, "run", "--input", str(texts)], stdout=f)
    node = ["node", str(ROOT / "bench/ort_node_bench.js"), "throughput", str(model),
            str(ids), str(batch), "1", str(nres)]
    run(node, env=env)
    ours_l = [r["outputs"]["logits"] for r in read_results(res)]
    node_l = json.loads(nres.read_text())["logits"]
    if len(ours_l) != n or len(node_l) != n:
        raise RuntimeError(f"{tag} batch {batch}: {len(ours_l)}/{len(node_l)} results for {n}")
    check(ours_l, node_l)

    def ours():
        w, rss, _ = run([cli, "run", "--input", str(texts)])
        return w, rss

    def base():
        w, rss, _ = run(node, env=env)
        return w, rss

    o, b = alternate(ctx, ours, base, ctx.runs, cold=False)
    return n / med([x[0] for x in o]), n / med([x[0] for x in b]), o


def bench_runtime(ctx):
    env = node_env(ctx)
    model = seq128_student(ctx)
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for batch, n in ((1, 100 if ctx.a.quick else 1000), (32, 256 if ctx.a.quick else 4096)):
        bundle = spam_bundle(ctx, batch, SEQ, model)

        def check(ours_l, node_l):
            if not all(close(a, b) for a, b in zip(ours_l, node_l)):
                raise RuntimeError(f"runtime batch {batch}: nexus_cli logits differ from "
                                   "onnxruntime-node")
        ot, bt, o = cli_vs_node(ctx, env, str(bundle / "bin/nexus_cli"), model, batch, n,
                                check, "rt")
        rows.append(row(f"runtime_b{batch}", f"nexus_cli run, batch {batch}, seq {SEQ}, 1 thread",
                        ot, bt, "seq/s", ">= 0.95x", ot >= 0.95 * bt,
                        "onnxruntime-node 1.30.0 on the same ids", max(x[1] for x in o),
                        note=f"{n} texts, process incl.; higher is better; model: "
                             "spam-distill student, positions tiled to 128"))
    return rows


REAL = {  # gen_transformer.py shape -> nexus.yaml output, runtime.yaml
    "distilbert": ("logits", "task: classification\nlabels: [ham, spam]\n"),
    "minilm": ("last_hidden_state", "task: embedding\npooling: mean\nnormalize: true\n"
               "output: last_hidden_state\n"),
}


def real_model(ctx, shape):
    path = ctx.cache / f"{shape}.onnx"
    if not path.exists():
        subprocess.run([PY, str(ROOT / "bench/gen_transformer.py"), str(path) + ".part", shape],
                       check=True, stderr=subprocess.DEVNULL)
        os.rename(str(path) + ".part", path)
    return path


def real_bundle(ctx, shape, batch=8):
    """nexus build of examples/spam-distill with its student replaced by a
    gen_transformer.py one (512 positions, max_sequence_length 512).  Built
    once and kept: the runtime under test is the build's nexus_cli, run with
    --bundle on it (a 268 MB build takes minutes on a loaded machine, and
    every commit changes the bundle's own bin/nexus_cli)."""
    out = ctx.cache / f"real_{shape}_b{batch}"
    stamp, stamp_file = f"{real_model(ctx, shape).stat().st_size} {REAL[shape]}\n", \
        ctx.cache / f"real_{shape}_b{batch}.stamp"
    if (out / "manifest.json").exists() and stamp_file.exists() and \
            stamp_file.read_text() == stamp:
        return out
    stamp_file.unlink(missing_ok=True)
    subprocess.run(["chmod", "-R", "u+w", str(out)], stderr=subprocess.DEVNULL)
    shutil.rmtree(out, ignore_errors=True)
    ws = ctx.cache / f"real_{shape}_ws"
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(ROOT / "examples/spam-distill", ws,
                    ignore=shutil.ignore_patterns("nexus_bundle_v1"))
    shutil.copyfile(real_model(ctx, shape), ws / "artifacts/student.onnx")
    output, yaml = REAL[shape]
    y = (ws / "nexus.yaml").read_text()
    y = y.replace("outputs: [logits]", f"outputs: [{output}]")
    y = y.replace("limits: {max_model_bytes: 4MiB", "limits: {max_model_bytes: 1GiB")
    (ws / "nexus.yaml").write_text(y)
    (ws / "config/runtime.yaml").write_text(
        yaml + f"max_sequence_length: 512\nbatch_size: {batch}\nthreads: 1\nintegrity: full\n"
        "python_packages: [onnxruntime, numpy]\n")
    run([ctx.nexus, "build", "-o", str(out), str(ws)])
    shutil.rmtree(ws)
    stamp_file.write_text(stamp)   # beside the bundle: it holds only what its manifest lists
    return out


def mixed_texts():
    """The example's 50 e-mails and 250 sentences of 3-80 words drawn from
    them: the mixed lengths of a real stream."""
    src = [json.loads(line)["text"] for line in
           (ROOT / "examples/spam-distill/artifacts/test_sample.jsonl").read_text().splitlines()]
    words = " ".join(src).split()
    rng = random.Random(17)
    texts = src + [" ".join(rng.choice(words) for _ in range(rng.randint(3, 80)))
                   for _ in range(250)]
    rng.shuffle(texts)
    return texts


REALRT_BUDGET_S = 150    # timed pairs per model, after the first (bounded run time)
REALRT_SEARCH_TEXTS = 50  # texts node's best batch size is chosen on


def bench_realrt(ctx):
    """nexus_cli run on real-sized students (issue #17) against
    onnxruntime-node at its best batch size, same ids, one thread each,
    process start included.  Bounded: the first timed pair also gives the
    outputs that are checked, node's best batch is chosen on the first 50
    texts, and further pairs start only within REALRT_BUDGET_S per model."""
    env = node_env(ctx)
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    texts = ctx.tmp / "real_texts.jsonl"
    texts.write_text("".join(json.dumps({"text": t}) + "\n" for t in mixed_texts()))
    rows = []
    cli = ctx.cli       # the build's runtime, on the bundle given with --bundle
    for shape in ("distilbert", "minilm"):
        bundle = real_bundle(ctx, shape)
        model = real_model(ctx, shape)
        ids = ctx.tmp / f"real_ids_{shape}.jsonl"
        with open(ids, "w") as f:
            run([cli, "tokenize", "--bundle", bundle, "--input", str(texts)], stdout=f)
        n = len(ids.read_text().splitlines())
        search = ctx.tmp / f"real_ids_{shape}_search.jsonl"
        search.write_text("".join(ids.read_text().splitlines(True)[:REALRT_SEARCH_TEXTS]))
        res, nres = ctx.tmp / "real_ours.jsonl", ctx.tmp / "real_node.json"
        nenv = dict(env, NEXUS_BENCH_POOL="mean")
        key = "label" if shape == "distilbert" else "embedding"

        def node_cmd(batch, idfile=ids):
            return ["node", str(ROOT / "bench/ort_node_bench.js"), "throughput", str(model),
                    str(idfile), str(batch), "1", str(nres)]

        # node's best batch size (padding to the longest of the batch, in order)
        best = None
        for batch in (1, 4, 8, 32):
            w, _, _ = run(node_cmd(batch, search), env=nenv)
            if best is None or w < best[1]:
                best = (batch, w)
        node = node_cmd(best[0])
        first = [True, True]

        def ours():   # (wall, rss, cpu)
            argv = [cli, "run", "--bundle", bundle, "--input", str(texts)]
            if not first[0]:
                return _wrc(run(argv, cpu=True))
            first[0] = False
            with open(res, "w") as f:   # the first run's outputs are checked below
                return _wrc(run(argv, stdout=f, cpu=True))

        def base():
            r = _wrc(run(node, env=nenv, cpu=True))
            if first[1]:
                first[1] = False
                shutil.copyfile(nres, str(nres) + ".first")
            return r

        # page cache warm (the bundle was just read by tokenize), no warm-up pair
        o, b = alternate(ctx, ours, base, ctx.runs, cold=False, warmup=False,
                         deadline=time.monotonic() + REALRT_BUDGET_S)
        ours_r = read_results(res)
        node_r = json.loads(pathlib.Path(str(nres) + ".first").read_text())["logits"]
        if shape == "distilbert":
            ok = all(r["label"] == ("ham", "spam")[int(v[1] > v[0])] and
                     close(r["outputs"]["logits"], v, 1e-4) for r, v in zip(ours_r, node_r))
        else:
            ok = all(close(r["embedding"], v, 1e-5) for r, v in zip(ours_r, node_r))
        if len(ours_r) != n or len(node_r) != n or not ok:
            raise RuntimeError(f"realrt {shape}: nexus_cli {key}s differ from onnxruntime-node")
        om, bm = med([x[0] for x in o]) * 1000 / n, med([x[0] for x in b]) * 1000 / n
        # CPU time beside wall time: on a loaded machine the wall clock is
        # mostly waiting for a core, and says little about either side
        oc, bc = med([x[2] for x in o]) * 1000 / n, med([x[2] for x in b]) * 1000 / n
        rows.append(row(f"realrt_{shape}", f"nexus_cli run, {shape}-shaped, {n} mixed texts",
                        om, bm, "ms/text", "<= 1.0x (1/1.2 target)", om <= bm,
                        f"onnxruntime-node 1.30.0, best batch {best[0]}, same ids",
                        max(x[1] for x in o),
                        note="1 thread each, process incl.; lower is better; nexus_cli "
                             f"tokenizes and prints {key}s, node is handed the ids; "
                             f"{len(o)} timed pair(s), load average {os.getloadavg()[0]:.1f}; "
                             f"CPU (user+sys) {oc:.1f} vs {bc:.1f} ms/text = {oc / bc:.2f}x "
                             f"(wall {om / bm:.2f}x)",
                        extra={"cpu_ours": oc, "cpu_baseline": bc, "cpu_ratio": oc / bc,
                               "load_average": os.getloadavg()[0], "pairs": len(o)}))
    # cold start of the 268 MB bundle: first result of one short text
    bundle = real_bundle(ctx, "distilbert")
    ids = ctx.tmp / "real_cold_ids.jsonl"
    with open(ids, "w") as f:
        run([cli, "tokenize", "--bundle", bundle, "--text", "hi"], stdout=f)
    node = ["node", str(ROOT / "bench/ort_node_bench.js"), "cold",
            str(bundle / "model/student_model.onnx"), str(ids), "1", str(ctx.tmp / "rc.json")]

    def ours():
        return _wrc(run([cli, "run", "--bundle", bundle, "--text", "hi"], cpu=True))

    def base():
        return _wrc(run(node, env=env, cpu=True))

    o, b = alternate(ctx, ours, base, max(ctx.runs, 5), cold=False)
    ow, bw = med([x[0] for x in o]), med([x[0] for x in b])
    oc, bc = med([x[2] for x in o]), med([x[2] for x in b])
    rows.append(row("realrt_coldstart", "nexus_cli run --text hi, 268 MB bundle", ow, bw, "s",
                    "<= 1.2x", ow <= 1.2 * bw, "node + onnxruntime-node: load, run once",
                    max(x[1] for x in o),
                    note="warm page cache; ours includes the full SHA-256 integrity check; "
                         f"{len(o)} pairs, load average {os.getloadavg()[0]:.1f}; CPU "
                         f"(user+sys) {oc:.2f} vs {bc:.2f} s = {oc / bc:.2f}x "
                         f"(wall {ow / bw:.2f}x)",
                    extra={"cpu_ours": oc, "cpu_baseline": bc, "cpu_ratio": oc / bc,
                           "load_average": os.getloadavg()[0], "pairs": len(o)}))
    return rows


def tok_corpus(ctx, mbytes):
    path = ctx.cache / f"tok_corpus_{mbytes}MB.jsonl"
    if not path.exists():
        src = [json.loads(line)["text"] for line in
               (ROOT / "examples/spam-distill/artifacts/test_sample.jsonl").read_text().splitlines()]
        words = " ".join(src).split()
        rng = random.Random(7)
        size, lines = 0, []
        while size < mbytes * 10**6:
            t = " ".join(rng.choice(words) for _ in range(rng.randint(5, 120)))
            if rng.random() < 0.2:
                t = t.upper()
            line = json.dumps({"text": t}, ensure_ascii=False) + "\n"
            lines.append(line)
            size += len(line.encode())
        path.write_text("".join(lines))
    return path


def bench_tokenizer(ctx):
    env = dict(node_env(ctx), RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    corpus = tok_corpus(ctx, 1 if ctx.a.quick else 10)
    tokdir = ROOT / "examples/spam-distill/artifacts/tokenizer"
    maxlen = "512"
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    ours_ids, node_ids = ctx.tmp / "tok_ours.jsonl", ctx.tmp / "tok_node.jsonl"
    ours_cmd = [ctx.cli, "tokenize", "--tokenizer", str(tokdir), "--max-length", maxlen,
                "--input", str(corpus)]
    node_cmd = ["node", str(ROOT / "bench/tok_node_bench.js"), str(tokdir / "tokenizer.json"),
                str(corpus), maxlen]
    with open(ours_ids, "w") as f:
        run(ours_cmd, stdout=f)
    run(node_cmd + [str(node_ids)], env=env)
    a = [json.loads(x) for x in ours_ids.read_text().splitlines()]
    b = [json.loads(x) for x in node_ids.read_text().splitlines()]
    bad = sum(1 for x, y in zip(a, b) if x != y) + abs(len(a) - len(b))
    if bad:
        raise RuntimeError(f"tokenizer: {bad} of {len(b)} texts have ids differing from tokenizers")

    def ours():
        w, rss, _ = run(ours_cmd, env=dict(os.environ, OMP_NUM_THREADS="1"))
        return w, rss

    def base():
        w, rss, _ = run(node_cmd, env=env)
        return w, rss

    o, bb = alternate(ctx, ours, base, ctx.runs, cold=False)
    mb = os.path.getsize(corpus) / 1e6
    ot, bt = mb / med([x[0] for x in o]), mb / med([x[0] for x in bb])
    return [row("tokenizer", f"nexus_cli tokenize, {mb:.0f} MB corpus", ot, bt, "MB/s",
                ">= 3x", ot >= 3 * bt, "npm tokenizers 0.23.2, RAYON_NUM_THREADS=1",
                max(x[1] for x in o), note=f"{len(b)} texts, ids equal; process incl.; "
                "ours prints ids to /dev/null, node only keeps them")]


TOK_TYPES = [("WordPiece", "wp_uncased"), ("byte-level BPE", "bpe_gpt2"),
             ("Unigram", "unigram_xlmr")]


def bench_tok_types(ctx):
    """One row per model type: nexus_cli tokenize against the npm package's
    encodeBatch (the baseline judged: its fastest path) and per-line encode,
    single thread, on the parity matrix's tokenizers and corpus
    (tests/e2e/tok_matrix.py, tok_corpus.py), ids checked equal first."""
    import tok_corpus
    import tok_matrix
    env = dict(node_env(ctx), RAYON_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    toks = tok_matrix.build(ctx.cache / "tokmatrix", env["NODE_PATH"])
    reps = 1 if ctx.a.quick else 4
    corpus = ctx.cache / f"tok_types_{reps}.jsonl"
    if not corpus.exists():
        lines = tok_corpus.lines() * reps
        corpus.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n"
                                  for t in lines), encoding="utf-8")
    mb = os.path.getsize(corpus) / 1e6
    maxlen = str(tok_matrix.MAXLEN)
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, name in TOK_TYPES:
        figure = f"tokenize {label} ({name}), {mb:.1f} MB corpus"
        if name not in toks:
            rows.append({"name": f"tokenizer_{name}", "figure": figure, "target": ">= 3x",
                         "skipped": "spm_train (Debian sentencepiece) is not installed",
                         "pass": None})
            continue
        tokdir = toks[name]
        ours_cmd = [ctx.cli, "tokenize", "--tokenizer", str(tokdir), "--max-length", maxlen,
                    "--input", str(corpus)]
        node_cmd = ["node", str(ROOT / "bench/tok_node_bench.js"), str(tokdir / "tokenizer.json"),
                    str(corpus), maxlen]
        ours_ids, node_ids = ctx.tmp / "tt_ours.jsonl", ctx.tmp / "tt_node.jsonl"
        with open(ours_ids, "w") as f:
            r = subprocess.run(ours_cmd, stdout=f, stderr=subprocess.PIPE, text=True)
        if r.returncode == 2:
            rows.append({"name": f"tokenizer_{name}", "figure": figure, "target": ">= 3x",
                         "skipped": "nexus refuses it: " + r.stderr.strip()[-160:], "pass": None})
            continue
        run(node_cmd + [str(node_ids)], env=env)
        a = ours_ids.read_text().split("\n")
        b = node_ids.read_text().split("\n")
        bad = sum(1 for x, y in zip(a, b) if json.loads(x or "0") != json.loads(y or "0"))
        if bad or len(a) != len(b):
            raise RuntimeError(f"{name}: {bad} of {len(b)} texts have ids differing from tokenizers")
        line_env = dict(env, NEXUS_TOK_MODE="line")
        o, bb = alternate(ctx, lambda: run(ours_cmd)[:2], lambda: run(node_cmd, env=env)[:2],
                          ctx.runs, cold=False)
        _, bl = alternate(ctx, lambda: (0.0, 0), lambda: run(node_cmd, env=line_env)[:2],
                          max(1, ctx.runs // 2), cold=False)
        ot, bt = mb / med([x[0] for x in o]), mb / med([x[0] for x in bb])
        lt = mb / med([x[0] for x in bl])
        rows.append(row(f"tokenizer_{name}", figure, ot, bt, "MB/s", ">= 3x", ot >= 3 * bt,
                        "npm tokenizers 0.23.2 encodeBatch, RAYON_NUM_THREADS=1",
                        max(x[1] for x in o), extra={"baseline_per_line": lt,
                                                     "ratio_per_line": ot / lt},
                        note=f"{len(b) - 1} texts, ids equal; per-line encode baseline "
                             f"{lt:.2f} MB/s (ours {ot / lt:.2f}x); process incl."))
    return rows


def bench_coldstart(ctx):
    env = node_env(ctx)
    bundle = spam_bundle(ctx, 8, 64)
    cli = str(bundle / "bin/nexus_cli")
    model = bundle / "model/student_model.onnx"
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    ids = ctx.tmp / "cold_ids.jsonl"
    with open(ids, "w") as f:
        run([cli, "tokenize", "--text", "hi"], stdout=f)
    res = ctx.tmp / "cold_ours.jsonl"
    with open(res, "w") as f:
        run([cli, "run", "--text", "hi"], stdout=f)
    nres = ctx.tmp / "cold_node.json"
    node = ["node", str(ROOT / "bench/ort_node_bench.js"), "cold", str(model), str(ids), "1",
            str(nres)]
    run(node, env=env)
    if not close(read_results(res)[0]["outputs"]["logits"], json.loads(nres.read_text())["logits"][0]):
        raise RuntimeError("cold start: nexus_cli and onnxruntime-node disagree on 'hi'")

    def ours():
        w, rss, _ = run([cli, "run", "--bundle", bundle, "--text", "hi"])
        return w, rss

    def base():
        w, rss, _ = run(node, env=env)
        return w, rss

    o, b = alternate(ctx, ours, base, max(ctx.runs, 5), cold=False)
    ow, bw = med([x[0] for x in o]), med([x[0] for x in b])
    return [row("coldstart", "nexus_cli run --text hi (first result)", ow, bw, "s", "(report)",
                None, "node + onnxruntime-node: load, run once", max(x[1] for x in o),
                note="new process each run, warm page cache; includes full integrity check")]


def bench_fingerprint(ctx):
    """`nexus inspect STUDENT --teacher TEACHER`: every teacher tensor hashed
    and cut into content-defined chunks, every student tensor's chunks
    looked up, against `openssl dgst -sha256` of the two files (each read
    and hashed once)."""
    student = gen_model(ctx, "student")
    tparams = "6M" if ctx.a.quick else "64M"
    teacher = ctx.cache / f"fpteacher_{tparams}.onnx"
    if not teacher.exists():
        subprocess.run([PY, str(ROOT / "bench/gen_model.py"), str(teacher) + ".part",
                        "--params", tparams], check=True, stderr=subprocess.DEVNULL)
        os.rename(str(teacher) + ".part", teacher)
    # Correct first: an unrelated teacher shares nothing, and 8 MB of the
    # student's weights (from an odd offset) in a safetensors teacher are found.
    r = subprocess.run([ctx.nexus, "inspect", "--json", str(student), "--teacher", str(teacher)],
                       capture_output=True, text=True)
    d = json.loads(r.stdout)
    if r.returncode or d["shared_tensors"] or d["teacher_tensors"] < 1:
        raise RuntimeError(f"fingerprint of an unrelated teacher: exit {r.returncode}, {d}")
    piece = ctx.cache / "fpteacher_piece.safetensors"
    with open(student, "rb") as f:
        f.seek(os.path.getsize(student) // 2 + 1)
        data = f.read(8 << 20)
    hdr = json.dumps({"w": {"dtype": "U8", "shape": [len(data)],
                            "data_offsets": [0, len(data)]}}).encode()
    piece.write_bytes(len(hdr).to_bytes(8, "little") + hdr + data)
    r = subprocess.run([ctx.nexus, "inspect", "--json", str(student), "--teacher", str(piece)],
                       capture_output=True, text=True)
    found = json.loads(r.stdout)["shared_tensors"] if r.stdout else []
    if r.returncode != 1 or not found or not found[0]["partial"]:
        raise RuntimeError(f"a teacher piece in the student was not found: exit {r.returncode}")

    def ours():
        w, rss, _ = run([ctx.nexus, "inspect", str(student), "--teacher", str(teacher)])
        return w, rss

    def base():
        w, rss, _ = run(["openssl", "dgst", "-sha256", str(student), str(teacher)])
        return w, rss

    # Warm: from a cold cache both sides wait for the disk (1.46 GB read),
    # and the ratio measures the disk, not the fingerprint.
    o, b = alternate(ctx, ours, base, ctx.runs, cold=False)
    ow, bw = med([x[0] for x in o]), med([x[0] for x in b])
    rss = max(x[1] for x in o)
    size = (os.path.getsize(student) + os.path.getsize(teacher)) / 1e9
    return [row("fingerprint", f"inspect --teacher, {size:.2f} GB student + teacher", ow, bw,
                "s", "<= 1.0x", ow <= bw and rss <= 64 * MIB,
                "openssl dgst -sha256 of student and teacher", rss, 64,
                note="warm cache; teacher: gen_model.py --params " + tparams + "; checked "
                     "first: an 8 MB piece of the student in a teacher is found")]


# ------------------------------------------ quantize: int8 (issue #19)
def distil_fp32(ctx):
    """The DistilBERT-shaped float32 classifier of bench/quant_forms.py
    (6 layers, d 768; --quick: 2 layers), exported by torch."""
    layers = 2 if ctx.a.quick else 6
    path = ctx.cache / f"distil_{layers}l_fp32.onnx"
    if not path.exists():
        import torch
        sys.path.insert(0, str(ROOT / "bench"))
        from quant_forms import Model
        torch.manual_seed(0)
        ids = torch.randint(0, 30522, (1, SEQ))
        torch.onnx.export(Model(layers).eval(), (ids, torch.ones_like(ids)), str(path) + ".part",
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "b", 1: "s"},
                                        "attention_mask": {0: "b", 1: "s"}}, opset_version=17)
        os.rename(str(path) + ".part", path)
    return path


def quant_bundle(ctx, model, batch, mode="int8"):
    """examples/spam-distill around the DistilBERT-shaped student, int8,
    runtime at batch/SEQ.  The student is untrained (random logits), so
    the accuracy gate is opened (tolerance 1): accuracy is tested on the
    trained spam student (tests/e2e/test_quantize.py), speed here."""
    out = ctx.cache / f"{model.stem}_{mode}_b{batch}"
    if (out / "manifest.json").exists():
        return out
    ws = ctx.cache / (out.name + "_ws")
    shutil.rmtree(ws, ignore_errors=True)
    shutil.copytree(ROOT / "examples/spam-distill", ws,
                    ignore=shutil.ignore_patterns("nexus_bundle_v1"))
    shutil.copyfile(model, ws / "artifacts/student.onnx")
    y = (ws / "nexus.yaml").read_text().replace("max_model_bytes: 4MiB", "max_model_bytes: 2GiB")
    (ws / "nexus.yaml").write_text(y + f"export: {{quantize: {mode}, quantize_tolerance: 1}}\n")
    rt = (ws / "config/runtime.yaml").read_text()
    rt = rt.replace("max_sequence_length: 64", f"max_sequence_length: {SEQ}")
    rt = rt.replace("batch_size: 8", f"batch_size: {batch}")
    (ws / "config/runtime.yaml").write_text(rt)
    shutil.rmtree(out, ignore_errors=True)
    run([ctx.nexus, "build", "-o", str(out), str(ws)])
    shutil.rmtree(ws)
    return out


def cosine(a, b):
    import numpy as np
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def bench_quant(ctx):
    env = node_env(ctx)
    model = distil_fp32(ctx)
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    rows = []
    # export + int8 of the float student vs cp + openssl dgst of the same file
    outdir = ctx.tmp / "qexport"
    out = outdir / "student_model.onnx"
    cp_out = ctx.tmp / "qexport_cp.onnx"

    def export():
        fresh(outdir)
        outdir.mkdir()
        # --json: the data file is hashed as written (its sha256 is printed)
        return run([ctx.nexus, "inspect", "--json", "--export-to", str(out), "--quantize", "int8",
                    "--external-data", "always", str(model)])

    def ours():
        w, rss, _ = export()
        return w, rss

    def base():
        fresh(cp_out)
        w, rss, _ = run(f"cp '{model}' '{cp_out}' && openssl dgst -sha256 '{cp_out}'", shell=True)
        return w, rss

    o, b = alternate(ctx, ours, base, ctx.runs)
    qsize = sum(p.stat().st_size for p in outdir.iterdir())
    fsize = model.stat().st_size
    fresh(outdir)
    fresh(cp_out)
    ow, bw = med([x[0] for x in o]), med([x[0] for x in b])
    rss = max(x[1] for x in o)
    rows.append(row("quant_export", "inspect --export-to --quantize int8 (data file hashed)",
                    ow, bw, "s", "<= 1.5x", ow <= 1.5 * bw and rss <= 256 * MIB,
                    "cp + openssl dgst -sha256 of the same file", rss, 256,
                    note=f"{fsize / MIB:.0f} MiB fp32 -> {qsize / MIB:.0f} MiB int8 "
                         f"({qsize / fsize:.3f}x); DistilBERT-shaped, {model.stem}"))
    rows.append(row("quant_size", "int8 export size / fp32 size", qsize / MIB, fsize / MIB,
                    "MiB", "<= 0.27x", qsize <= 0.27 * fsize, "the fp32 model",
                    note="MatMul weights per column, embeddings per row, + float scales"))
    fresh(outdir)
    outdir.mkdir()
    run([ctx.nexus, "inspect", "--export-to", str(out), "--quantize", "int4",
         "--external-data", "always", str(model)])
    q4size = sum(p.stat().st_size for p in outdir.iterdir())
    fresh(outdir)
    rows.append(row("quant_size_int4", "int4 export size / fp32 size", q4size / MIB, fsize / MIB,
                    "MiB", "<= 0.16x", q4size <= 0.16 * fsize, "the fp32 model",
                    note="MatMulNBits and GatherBlockQuantized, blocks of 32, float32 scales"))
    # inference: nexus_cli on the int8 (int4) bundle vs onnxruntime-node on fp32
    for mode, batch, n in (("int8", 1, 8 if ctx.a.quick else 16),
                           ("int8", 8, 16 if ctx.a.quick else 32),
                           ("int4", 1, 8 if ctx.a.quick else 16)):
        bundle = quant_bundle(ctx, model, batch, mode)
        cos = []

        def check(ours_l, node_l):
            cos.append(cosine(ours_l, node_l))
            if cos[0] < 0.98:
                raise RuntimeError(f"quant {mode} batch {batch}: logits differ from fp32 "
                                   f"(cosine {cos[0]:.4f})")
        ot, bt, o = cli_vs_node(ctx, env, str(bundle / "bin/nexus_cli"), model, batch, n,
                                check, "q")
        size = sum(p.stat().st_size for p in (bundle / "model").glob("student_model.onnx*"))
        rows.append(row(f"quant_runtime_{mode}_b{batch}",
                        f"nexus_cli {mode} vs ORT fp32, batch {batch}, seq {SEQ}, 1 thread",
                        ot, bt, "seq/s", ">= 1.5x", ot >= 1.5 * bt,
                        "onnxruntime-node 1.30.0 running the fp32 model on the same ids",
                        max(x[1] for x in o),
                        note=f"{n} texts, process incl.; logits cosine {mode}/fp32 {cos[0]:.5f}; "
                             f"model {size / fsize:.3f}x of fp32"))
    return rows


def bench_quant_big(ctx):
    """Export + int8 of a 1.2B-parameter float32 decoder-shaped student
    (bench/gen_decoder.py: 4.8 GB of external data, normal random values)
    against cp + openssl dgst of the same two files; ours hashes its data
    file too (--json prints its sha256).  The same export on one thread
    (--quantize-threads 1) runs in the same rotation, for the threads row.
    The generated model (~3-4 min to write) is deleted afterwards, as are
    the outputs."""
    # NEXUS_QUANT_BIG_PARAMS: a smaller student where the disk cannot hold
    # the 4.8 GB source, its copy and the export at once (about 11 GB)
    params = os.environ.get("NEXUS_QUANT_BIG_PARAMS") or ("100M" if ctx.a.quick else "1.2B")
    src_dir = ctx.cache / f"decoder_{params}"
    model = src_dir / "decoder.onnx"
    data = src_dir / "decoder.onnx.data"
    src_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([PY, str(ROOT / "bench/gen_decoder.py"), str(model), "--params", params],
                   check=True)
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    outdir, cpdir = ctx.tmp / "qbig", ctx.tmp / "qbig_cp"

    def export(*extra):
        fresh(outdir)
        outdir.mkdir()
        w, rss, _ = run([ctx.nexus, "inspect", "--json", "--export-to", str(outdir / "m.onnx"),
                         "--quantize", "int8", "--external-data", "always", *extra, str(model)])
        return w, rss

    def base():
        fresh(cpdir)
        cpdir.mkdir()
        w, rss, _ = run(f"cp '{model}' '{data}' '{cpdir}/' && openssl dgst -sha256 "
                        f"'{cpdir}/{model.name}' '{cpdir}/{data.name}'", shell=True)
        return w, rss

    fns = [export, lambda: export("--quantize-threads", "1"), base]
    res = [[], [], []]
    loads = []
    try:
        for f in fns:            # warm-up: the source in the page cache as for cp
            f()
        for i in range(ctx.runs):
            loads.append(os.getloadavg()[0])
            for k in range(3):   # rotated, so no command always runs first
                j = (i + k) % 3
                res[j].append(fns[j]())
        qsize = sum(p.stat().st_size for p in outdir.iterdir())
        fsize = model.stat().st_size + data.stat().st_size
    finally:
        for p in (outdir, cpdir, src_dir):
            fresh(p)
    o, o1, b = res
    ow, o1w, bw = (med([x[0] for x in r]) for r in res)
    rss = max(x[1] for x in o + o1)
    load = f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs"
    return [row("quant_export_1b", f"inspect --json --export-to --quantize int8, {params} fp32 "
                "student", ow, bw, "s", "<= 1.5x", ow <= 1.5 * bw and rss <= 256 * MIB,
                "cp + openssl dgst -sha256 of the same files", rss, 256,
                note=f"{fsize / 1e9:.2f} GB fp32 (external data) -> {qsize / 1e9:.2f} GB int8; "
                     f"runs {[round(x[0], 1) for x in o]} vs {[round(x[0], 1) for x in b]}; "
                     f"{load}"),
            row("quant_export_1b_threads", "the same export, threads vs --quantize-threads 1",
                ow, o1w, "s", "< 1.0x", ow < o1w, "the same export on one thread", rss, 256,
                note=f"runs {[round(x[0], 1) for x in o]} vs {[round(x[0], 1) for x in o1]}; "
                     f"{load}; the bytes are the same (tests/e2e/test_quantize.py)")]


def oci_layout(ctx, bundle, layout):
    """An OCI image layout holding exactly the artifact nexus push makes of
    bundle (blobs hard-linked to the bundle's files), for skopeo to copy."""
    from oci_fixture import artifact_manifest
    import hashlib
    fresh(layout)
    blobs = layout / "blobs/sha256"
    blobs.mkdir(parents=True)
    manifest, config = artifact_manifest(bundle)
    m = json.loads(manifest)
    for data in (manifest, config, (bundle / "manifest.json").read_bytes()):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    for l in m["layers"][1:]:
        dst = blobs / l["digest"].split(":")[1]
        if not dst.exists():
            os.link(bundle / l["annotations"]["org.opencontainers.image.title"], dst)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": m["mediaType"], "digest": "sha256:" + hashlib.sha256(manifest).hexdigest(),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def bench_oci(ctx):
    """nexus push / nexus pull of the build bundle to a loopback registry
    (Debian's docker-registry) against oras push / oras pull of the same
    files with the same layout (titles, media types, config; oras from
    Debian 13, fetched by scripts/setup.sh).  The digest is checked first
    against FORMAT.md §8 rebuilt in Python (oci_layout).
    Push is transport only (--no-verify); pull includes verification
    (--no-sandbox), which oras's does not.  Pull is compared twice:
    --no-fsync against oras pull (neither waits for the disk), and the
    default, durable pull against oras pull then `sync` of every file and
    directory it wrote.  Every push goes to an empty
    registry, so every blob is uploaded; then a second push of an unchanged
    bundle, every blob skipped."""
    import oci_fixture
    oras = pathlib.Path(os.environ.get("NEXUS_CACHE") or
                        pathlib.Path.home() / ".cache/nexus") / "bin/oras"
    if not oci_fixture.REGISTRY or not oras.is_file():
        raise Skip("docker-registry or oras missing (scripts/setup.sh)")
    bundle = big_bundle(ctx)
    gb = sum(os.path.getsize(f) for f in files_under(bundle)) / 1e9
    layout = ctx.tmp / "layout"
    ctx.tmp.mkdir(parents=True, exist_ok=True)
    digest = oci_layout(ctx, bundle, layout)
    reg_dir = fresh(ctx.tmp / "registry")
    reg_dir.mkdir()
    reg = oci_fixture.Registry(reg_dir)
    env = dict(os.environ, DOCKER_CONFIG=str(ctx.tmp / "docker"))
    n = {"i": 0}
    try:
        # correctness first: same digest as skopeo's copy, and the pull verifies
        r = subprocess.run([ctx.nexus, "push", "--no-verify", "--plain-http", str(bundle),
                            f"{reg.host}/check/ours:v1"], capture_output=True, text=True, env=env)
        if r.returncode or not r.stdout.strip().endswith(digest):
            raise RuntimeError(f"nexus push: {r.stderr or r.stdout}")

        def push_ours():
            n["i"] += 1
            w, rss, _ = run([ctx.nexus, "push", "--no-verify", "--plain-http", str(bundle),
                             f"{reg.host}/push/ours{n['i']}:v1"], env=env)
            return w, rss, LAST_CPU

        from oci_fixture import artifact_manifest
        am, cfg = artifact_manifest(bundle)
        am = json.loads(am)
        (ctx.tmp / "config.json").write_bytes(cfg)
        oras_files = [f"{x['annotations']['org.opencontainers.image.title']}:{x['mediaType']}"
                      for x in am["layers"]]
        oras_env = dict(env, HOME=str(ctx.tmp / "home"))

        def push_base():
            n["i"] += 1
            w, rss, _ = run([oras, "push", "--plain-http", "--artifact-type", am["artifactType"],
                             "--config", f"{ctx.tmp / 'config.json'}:{am['config']['mediaType']}",
                             f"{reg.host}/push/base{n['i']}:v1", *oras_files], env=oras_env,
                            cwd=bundle)
            return w, rss, LAST_CPU

        def empty_registry():
            # a registry that has no blob yet, for both: a blob-info
            # cache would otherwise mount what an earlier run uploaded
            nonlocal reg
            reg.stop()
            fresh(reg_dir / "data")
            reg = oci_fixture.Registry(reg_dir)

        po, pb = alternate(ctx, push_ours, push_base, ctx.runs, before=empty_registry, cold=False)
        empty_registry()
        r = subprocess.run([ctx.nexus, "push", "--no-verify", "--plain-http", str(bundle),
                            f"{reg.host}/check/ours:v1"], capture_output=True, text=True, env=env)
        if r.returncode:
            raise RuntimeError(f"nexus push: {r.stderr}")
        out = ctx.tmp / "pulled"

        def clean():
            subprocess.run(["chmod", "-R", "u+w", str(out)], stderr=subprocess.DEVNULL)
            fresh(out)

        def pull_ours(*flags):
            w, rss, _ = run([ctx.nexus, "pull", "--plain-http", "--no-sandbox", *flags,
                             f"{reg.host}/check/ours:v1", "-o", str(out)], env=env)
            return w, rss, LAST_CPU

        def pull_base(durable=False):
            # durable: then fsync every file and directory it wrote, as
            # nexus's default publish does (coreutils sync FILE...)
            cmd = (f"{oras} pull --plain-http -o {out} {reg.host}/check/ours:v1 >/dev/null"
                   + (f" && find {out} -exec sync {{}} +" if durable else ""))
            w, rss, _ = run(cmd, shell=True, env=oras_env)
            return w, rss, LAST_CPU

        # like for like, neither waits for the disk: --no-fsync against oras
        lo, lb = alternate(ctx, lambda: pull_ours("--no-fsync"), pull_base, ctx.runs,
                           before=clean, cold=False)
        do, db = alternate(ctx, pull_ours, lambda: pull_base(True), ctx.runs, before=clean,
                           cold=False, warmup=False)
        again = [run([ctx.nexus, "push", "--no-verify", "--plain-http", str(bundle),
                      f"{reg.host}/check/ours:v1"], env=env)[0] for _ in range(ctx.runs)]
        clean()
    finally:
        if reg:
            reg.stop()
        fresh(reg_dir)
    rows = []
    load = os.getloadavg()[0]
    for name, o, b, what in (("oci-push", po, pb, "push"), ("oci-pull", lo, lb, "pull"),
                             ("oci-pull-durable", do, db, "pull")):
        ow, bw = med([x[0] for x in o]), med([x[0] for x in b])
        oc, bc = med([x[2] for x in o]), med([x[2] for x in b])
        rss = max(x[1] for x in o)
        # the machine may be shared: CPU time (user + sys) beside wall time
        cpu = (f"CPU user+sys {oc:.2f} s vs {bc:.2f} s ({oc / bc:.2f}x); runs "
               f"{[round(x[0], 2) for x in o]} vs {[round(x[0], 2) for x in b]}; "
               f"load average {load:.1f}")
        durable = name == "oci-pull-durable"
        rows.append(row(name, f"nexus {what}{'' if what == 'push' or durable else ' --no-fsync'}"
                        f" of the build bundle ({gb:.2f} GB), loopback docker-registry", ow, bw,
                        "s", "<= 1.0x", ow <= bw and rss <= 64 * MIB,
                        f"oras {what} of the same files (Debian 13's oras 1.2)"
                        + (" + sync of every file" if durable else ""),
                        rss, 64, note=("pull includes nexus verify --no-sandbox; oras's does not"
                        + ("; both wait for the disk" if durable else "; neither waits for the disk")
                        if what == "pull" else "every blob uploaded (an empty registry per run)")
                        + "; " + cpu, extra={"cpu_ours": oc, "cpu_baseline": bc,
                                              "load_average": load}))
    a = med(again)
    rows.append(row("oci-push-again", "second push of the unchanged bundle, per GB", a / gb, None,
                    "s", "<= 0.1 s/GB", a / gb <= 0.1, "-", note=f"{a * 1000:.0f} ms for "
                    f"{gb:.2f} GB, every blob skipped"))
    return rows

# ---------------------------------------------------------------- generate
GEN_VOCAB, GEN_D, GEN_H, GEN_LAYERS, GEN_POS = 32000, 768, 12, 12, 1024   # ~134M parameters
GEN_NEW = 32
GEN_RUNS = 3            # timed runs per side and setting (the median of 3)
GEN_BUDGET_S = 480      # the whole row, build included: no run pair begins after it


def gen_size(ctx):
    """(d, heads, layers) of the benchmark's decoder."""
    return (256, 8, 4) if ctx.a.quick else (GEN_D, GEN_H, GEN_LAYERS)


def gen_bundle(ctx, quantize="none"):
    """A GPT-2-shaped decoder with random weights (tests/e2e/gen_models.py,
    Optimum's with-past layout), built into a bundle; --quick: 4 layers, d 256.
    quantize: export.quantize (the gate opened: random weights' near-tied
    logits change under int4, a trained decoder's do not)."""
    import gen_models
    import workspace
    d, h, layers = gen_size(ctx)
    tag = f"gen_{d}_{layers}" + ("" if quantize == "none" else f"_{quantize}")
    ws, out = ctx.cache / tag, ctx.cache / f"{tag}_bundle"
    cli = out / "bin/nexus_cli"
    if cli.exists() and cli.read_bytes() == pathlib.Path(ctx.cli).read_bytes():
        return out, ws
    # the export (minutes of torch) is kept: the same seed, the same bytes
    kept = ws / "artifacts/student.onnx"
    model = kept.read_bytes() if kept.is_file() else None
    shutil.rmtree(ws, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    tj, _ = gen_models.bytelevel_tokenizer()
    if model is None:
        model = gen_models.decoder_onnx(GEN_VOCAB, "past", d=d, h=h, layers=layers,
                                        positions=GEN_POS)
    workspace.make_workspace(
        ws, student=model, tokenizer_files=("tokenizer.json",),
        runtime_yaml="task: generation\nmax_sequence_length: 1024\nthreads: 1\n"
                     "python_packages: [numpy, onnxruntime]\n",
        config={"selftest": '["the cat"]', "architecture": "GPT2ish-random"},
        extra_yaml=f"export: {{quantize: {quantize}, quantize_tolerance: 1}}\n")
    (ws / "artifacts/tokenizer/tokenizer.json").write_text(tj, encoding="utf-8")
    r = subprocess.run([ctx.nexus, "build", str(ws), "-o", str(out)], capture_output=True,
                       text=True)
    if r.returncode:
        raise RuntimeError("generate: nexus build failed: " + r.stderr[-300:])
    return out, ws


def bench_generate(ctx):
    """nexus_cli generate (greedy, GEN_NEW new tokens) against the same greedy
    loop on onnxruntime-node with its cache (tests/e2e/gen_oracle.js): time to
    first token and decode tokens/s at prompt 128 and 512, one thread and two.
    Bounded: GEN_RUNS runs per side, one warm-up pair for the row, and no
    run pair begins GEN_BUDGET_S after the start (a setting cut short reports
    the medians of the pairs it ran, one not begun is reported skipped)."""
    t_start = time.perf_counter()
    env = node_env(ctx)
    bundle, ws = gen_bundle(ctx)
    t_build = time.perf_counter() - t_start
    cli = str(bundle / "bin/nexus_cli")
    model = str(ws / "artifacts/student.onnx")
    d, h, _ = gen_size(ctx)
    rows, warm = [], True
    runs = min(ctx.runs, GEN_RUNS)
    for plen, threads in ((128, 1), (128, 2), (512, 1), (512, 2)):
        spent = time.perf_counter() - t_start
        if spent > GEN_BUDGET_S:
            rows.append({"name": f"generate_p{plen}_t{threads}", "pass": None,
                         "skipped": f"time budget: {spent:.0f} s of {GEN_BUDGET_S} s spent "
                                    f"(bundle build {t_build:.0f} s)"})
            continue
        prompt = "x" * plen                  # one byte token each: plen tokens
        ids = json.loads(subprocess.run([cli, "tokenize", "--text", prompt],
                                        capture_output=True, text=True).stdout)
        assert len(ids) == plen
        ours_cmd = [cli, "generate", "--json", "--prompt", prompt, "--max-new-tokens",
                    str(GEN_NEW), "--threads", str(threads)]
        node_cmd = ["node", str(ROOT / "tests/e2e/gen_oracle.js"), model, json.dumps(ids),
                    str(GEN_NEW), "[]", str(h), str(d // h), str(threads)]
        res = {"ours": [], "base": []}
        ctx.tmp.mkdir(parents=True, exist_ok=True)
        tmp = ctx.tmp / "gen_out.json"

        def one(side, cmd, env=None):
            with open(tmp, "w") as f:
                w, rss, _ = run(cmd, env=env, stdout=f)
            res[side].append(json.loads(tmp.read_text()))
            return w, rss

        def ours():
            return one("ours", ours_cmd)

        def base():
            return one("base", node_cmd, env)

        if warm:       # the page cache and the first loads, once for the row
            ours()
            base()
            warm = False
            res = {"ours": [], "base": []}
        o, b = [], []
        for i in range(runs):      # alternating, so that the load's drift hits both
            if i and time.perf_counter() - t_start > GEN_BUDGET_S:
                break
            for fn, acc in ((ours, o), (base, b)) if i % 2 == 0 else ((base, b), (ours, o)):
                acc.append(fn())
        if res["ours"][-1]["ids"] != res["base"][-1]["ids"]:
            raise RuntimeError(f"generate: nexus_cli and onnxruntime-node disagree "
                               f"(prompt {plen}, {threads} threads)")
        for fig, key, better in (("ttft", "ttft_ms", "low"), ("decode", "tokens_per_s", "high")):
            om = med([x[key] for x in res["ours"]])
            bm = med([x[key] for x in res["base"]])
            # a ratio above 1 is nexus faster, either way
            ratio = bm / om if better == "low" else om / bm
            rows.append(row(f"generate_{fig}_p{plen}_t{threads}",
                            f"{fig} prompt {plen}, {threads} thread(s), {GEN_NEW} new, "
                            f"{len(o)} run(s)",
                            om, bm, "ms" if better == "low" else "tok/s", ">= 1.0x (1.3x)",
                            ratio >= 1.0, "onnxruntime-node greedy loop with cache",
                            max(x[1] for x in o), extra={"speedup": ratio,
                            "baseline_peak_rss_mib": max(x[1] for x in b) / MIB}))
    return rows


def bench_quant_gen(ctx):
    """int4 decoder speed (issue #19): nexus_cli generate on the int4 bundle
    of bench_generate's decoder (MatMulNBits, GatherBlockQuantized, block
    32) against onnxruntime-node's greedy loop with cache on the fp32 model,
    one thread, prompt 128, GEN_NEW new tokens; and the same node loop on
    the int4 model, to tell the form's gain from the runtime's."""
    env = node_env(ctx)
    d, h, layers = gen_size(ctx)
    bundle, _ = gen_bundle(ctx, "int4")
    _, ws = gen_bundle(ctx)
    cli = str(bundle / "bin/nexus_cli")
    fp32, int4 = str(ws / "artifacts/student.onnx"), str(bundle / "model/student_model.onnx")
    prompt = "x" * 128
    ids = json.loads(subprocess.run([cli, "tokenize", "--text", prompt], capture_output=True,
                                    text=True).stdout)
    res = {"ours": [], "fp32": [], "int4": []}
    tmp = ctx.tmp / "qgen_out.json"
    ctx.tmp.mkdir(parents=True, exist_ok=True)

    def one(side, cmd, env=None):
        with open(tmp, "w") as f:
            w, rss, _ = run(cmd, env=env, stdout=f)
        res[side].append(json.loads(tmp.read_text()))
        return w, rss

    def node(model):
        return ["node", str(ROOT / "tests/e2e/gen_oracle.js"), model, json.dumps(ids),
                str(GEN_NEW), "[]", str(h), str(d // h), "1"]

    def ours():
        one("int4", node(int4), env)
        return one("ours", [cli, "generate", "--json", "--prompt", prompt, "--max-new-tokens",
                            str(GEN_NEW), "--threads", "1"])

    o, b = alternate(ctx, ours, lambda: one("fp32", node(fp32), env), ctx.runs, cold=False)
    tps = {k: med([x["tokens_per_s"] for x in v]) for k, v in res.items()}
    same = res["ours"][-1]["ids"] == res["int4"][-1]["ids"]
    agree = sum(a == c for a, c in zip(res["ours"][-1]["ids"], res["fp32"][-1]["ids"]))
    size = sum(p.stat().st_size for p in (bundle / "model").glob("student_model.onnx*"))
    fsize = sum(p.stat().st_size for p in ws.glob("artifacts/student.onnx*"))
    return [row("quant_gen_int4", f"decode tok/s, int4 nexus_cli vs fp32 ORT, d {d} x {layers}, "
                f"prompt 128, {GEN_NEW} new, 1 thread", tps["ours"], tps["fp32"], "tok/s",
                ">= 2.0x", tps["ours"] >= 2 * tps["fp32"],
                "onnxruntime-node 1.30 greedy loop with cache on the fp32 model",
                max(x[1] for x in o),
                note=f"int4 model in onnxruntime-node: {tps['int4']:.1f} tok/s "
                     f"({tps['int4'] / tps['fp32']:.2f}x); nexus_cli and node on int4 give "
                     f"{'the same' if same else 'DIFFERENT'} ids; {agree} of {GEN_NEW} new "
                     f"ids as fp32's (random weights); model {size / fsize:.3f}x of fp32; "
                     f"runs ours {[round(x['tokens_per_s'], 1) for x in res['ours']]} "
                     f"fp32 {[round(x['tokens_per_s'], 1) for x in res['fp32']]}")]


LIVE_SHAPE = (1024, 16, 24)  # d, heads, layers: ~335M parameters at vocab 32000
LIVE_RUNS = 3               # timed runs per side (the median of 3)
LIVE_BUDGET_MS = 60000      # each timed run checks what fits in this budget


def live_bundle(ctx):
    """An int8 GPT-2-shaped decoder (export.quantize: int8 of
    gen_models.decoder_onnx, Optimum's with-past layout), one thread;
    --quick: d 256 x 4 layers.  Its build runs liveness too: the budget is
    lowered for it (NEXUS_LIVENESS_BUDGET_MS), the bundle is unsigned."""
    import gen_models
    import workspace
    d, h, layers = (256, 8, 4) if ctx.a.quick else LIVE_SHAPE
    tag = f"live_d{d}_l{layers}"
    ws, out, onnx_path = ctx.cache / tag, ctx.cache / f"{tag}_int8", ctx.cache / f"{tag}.onnx"
    cli = out / "bin/nexus_cli"
    if cli.exists() and cli.read_bytes() == pathlib.Path(ctx.cli).read_bytes():
        return out, (d, h, layers)
    if not onnx_path.exists():     # minutes of torch: kept, the same seed gives the same bytes
        onnx_path.write_bytes(gen_models.decoder_onnx(GEN_VOCAB, "past", d=d, h=h, layers=layers,
                                                      positions=GEN_POS))
    shutil.rmtree(ws, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    tj, _ = gen_models.bytelevel_tokenizer()
    workspace.make_workspace(
        ws, student=onnx_path.read_bytes(), tokenizer_files=("tokenizer.json",),
        runtime_yaml="task: generation\nmax_sequence_length: 1024\nthreads: 1\n"
                     "python_packages: [numpy, onnxruntime]\n",
        config={"selftest": '["the cat sat on the mat"]', "architecture": "GPT2ish-random"},
        extra_yaml="export: {quantize: int8, quantize_tolerance: 1}\n")
    (ws / "artifacts/tokenizer/tokenizer.json").write_text(tj, encoding="utf-8")
    env = dict(os.environ, NEXUS_LIVENESS_BUDGET_MS="1000")
    r = subprocess.run([ctx.nexus, "build", str(ws), "-o", str(out)], capture_output=True,
                       text=True, env=env)
    if r.returncode:
        raise RuntimeError("liveness: nexus build failed: " + r.stderr[-300:])
    return out, (d, h, layers)


def bench_liveness(ctx):
    """nexus_cli liveness (TRV-5) on an int8 decoder: ours on every core
    this process may use (the check's default) and with --threads 1,
    against a baseline: NEXUS_BENCH_LIVENESS_BEFORE=PATH (an earlier
    release's nexus_cli, e.g. /work/main's: runtime.yaml's one thread), or
    without it our own --session-each (a session per initializer).  Each
    run checks what fits in LIVE_BUDGET_MS; a run with a 1 ms budget (no
    check) times the start (bundle, session, baseline).  Per check:
    (wall - start) / checked; the full pass is projected as start +
    initializers x per check (measured when a run checks them all)."""
    bundle, (d, _, layers) = live_bundle(ctx)
    cli = str(bundle / "bin/nexus_cli")
    before = os.environ.get("NEXUS_BENCH_LIVENESS_BEFORE")
    budget = 20000 if ctx.a.quick else LIVE_BUDGET_MS
    cores = len(os.sched_getaffinity(0))
    sides = {"ours": [cli], "ours1": [cli, "--threads", "1"],
             "base": [before] if before else [cli, "--session-each"]}
    res = {k: [] for k in sides}
    tmp = ctx.tmp / "live_out.jsonl"
    ctx.tmp.mkdir(parents=True, exist_ok=True)

    def one(side, ms):
        exe, *flags = sides[side]
        with open(tmp, "w") as f:
            w, rss, _ = run([exe, "liveness", "--bundle", str(bundle), "--budget-ms", str(ms)]
                            + flags, stdout=f)
        lines = [json.loads(x) for x in tmp.read_text().splitlines()]
        summary = lines[-1]
        verdicts = {x["initializer"]: x["verdict"] for x in lines[:-1]}
        if any(v == "dead" for v in verdicts.values()):
            raise RuntimeError(f"liveness: a random decoder has a dead initializer ({side})")
        if ms > 1:
            res[side].append((w, summary["checked"], summary["of"], rss))
        return w, rss

    runs = min(ctx.runs, LIVE_RUNS)
    start = {k: [] for k in sides}
    for _ in range(runs):
        for k in sides:
            start[k].append(one(k, 1)[0])

    def base():
        one("ours1", budget)
        return one("base", budget)

    alternate(ctx, lambda: one("ours", budget), base, runs, cold=False, warmup=False)
    st = {k: med(v) for k, v in start.items()}
    per = {k: med([(w - st[k]) / max(c, 1) for w, c, _, _ in v]) for k, v in res.items()}
    n = res["ours"][-1][2]
    full = {k: st[k] + n * per[k] for k in per}
    params = GEN_VOCAB * d + GEN_POS * d + layers * 12 * d * d
    scale = 1.2e9 / params      # a forward pass and a session load grow with the parameters
    bname = (f"{before} (an earlier nexus_cli, runtime.yaml's 1 thread)" if before else
             "nexus_cli liveness --session-each (a session per initializer)")
    checked = {k: [c for _, c, _, _ in v] for k, v in res.items()}
    return [row("liveness_per_check",
                f"seconds per initializer checked, int8 decoder d {d} x {layers} "
                f"(~{params / 1e6:.0f}M parameters, {n} initializers), ours on {cores} "
                f"core(s), {budget / 1000:.0f} s budget, {runs} run(s)",
                per["ours"], per["base"], "s", "<= 0.5x", per["ours"] <= 0.5 * per["base"],
                bname, max(x[3] for x in res["ours"]),
                note=f"start (bundle, session, baseline) ours {st['ours']:.1f} s, baseline "
                     f"{st['base']:.1f} s; per check ours {per['ours']:.3f} s ({cores} threads), "
                     f"ours --threads 1 {per['ours1']:.3f} s, baseline {per['base']:.3f} s; "
                     f"full pass ours {full['ours']:.0f} s, --threads 1 {full['ours1']:.0f} s, "
                     f"baseline {full['base']:.0f} s; 1.2B int8 (x{scale:.1f}) projected ours "
                     f"{full['ours'] * scale:.0f} s, --threads 1 {full['ours1'] * scale:.0f} s, "
                     f"baseline {full['base'] * scale:.0f} s (budget 600 s); checked per run "
                     f"{checked}",
                extra={"start_s": st, "per_check_s": per, "full_pass_s": full,
                       "initializers": n, "threads": cores,
                       "projected_1_2b_s": {k: v * scale for k, v in full.items()}})]



LIVE_BIG_PARAMS = "1.2B"     # the SPEC's decoder (bench/gen_decoder.py, d 2048: 34 layers)
LIVE_BIG_FREE = 8 << 30      # bytes the disk keeps free besides the model and its bundle


def live_big_paths(ctx, params):
    """(workspace, bundle) of live_big_bundle."""
    return ctx.cache / f"livebig_{params}", ctx.cache / f"livebig_{params}_bundle"


def live_big_bundle(ctx, params):
    """A nexus build bundle of bench/gen_decoder.py --int8 (the int8 export
    of the float32 decoder, written directly: 1.2 GB, not the 4.8 GB
    float32 source), classification, the selftest "the cat sat on the
    mat" on a byte-level tokenizer (18 tokens, as bench_liveness's).  The
    generation runs niced; the build's own liveness pass is cut short
    (NEXUS_LIVENESS_BUDGET_MS), the bundle is unsigned."""
    import gen_models
    import workspace
    ws, out = live_big_paths(ctx, params)
    cli = out / "bin/nexus_cli"
    if cli.exists() and cli.read_bytes() == pathlib.Path(ctx.cli).read_bytes():
        return out, ws
    shutil.rmtree(ws, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    tj, _ = gen_models.bytelevel_tokenizer()
    workspace.make_workspace(ws, student=b"", tokenizer_files=("tokenizer.json",),
                             config={"selftest": '["the cat sat on the mat"]',
                                     "architecture": "Decoder-int8-random"})
    (ws / "artifacts/tokenizer/tokenizer.json").write_text(tj, encoding="utf-8")
    subprocess.run(["nice", "-n", "10", PY, str(ROOT / "bench/gen_decoder.py"),
                    str(ws / "artifacts/student.onnx"), "--params", params, "--int8"], check=True)
    env = dict(os.environ, NEXUS_LIVENESS_BUDGET_MS="1000")
    r = subprocess.run(["nice", "-n", "10", ctx.nexus, "build", str(ws), "-o", str(out)],
                       capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError("liveness_big: nexus build failed: " + r.stderr[-300:])
    shutil.rmtree(ws / "artifacts", ignore_errors=True)    # the bundle holds the model now
    return out, ws


def live_timed(cli, bundle, flags):
    """One `nexus_cli liveness` run at its default budget, through the
    rusage launcher, its stdout line-buffered (stdbuf) and each verdict
    line timestamped as it comes: (wall, rss, cpu, lines with "t")."""
    rss_file = pathlib.Path(RUSAGE + ".out")
    t0 = time.perf_counter()
    p = subprocess.Popen([RUSAGE, str(rss_file), "stdbuf", "-oL", cli, "liveness", "--bundle",
                          str(bundle), *flags], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    lines = []
    for text in p.stdout:
        x = json.loads(text)
        x["t"] = time.perf_counter() - t0
        lines.append(x)
    err = p.stderr.read()
    rc = p.wait()
    wall = time.perf_counter() - t0
    if rc not in (0, 1) or not lines or "checked" not in lines[-1]:
        raise RuntimeError(f"liveness_big: nexus_cli liveness exit {rc}: {err[-300:]}")
    user, system = pathlib.Path(str(rss_file) + ".cpu").read_text().split()
    return wall, int(rss_file.read_text()) * 1024, float(user) + float(system), lines


def bench_liveness_big(ctx):
    """nexus_cli liveness (TRV-5) at its default 600 s budget on the SPEC's
    1.2B-parameter int8 decoder (live_big_bundle), on one thread and on
    every core (the check's default), alternating; not in the default set
    (--only liveness_big): minutes to generate and build, 2.4 GB of disk
    while it runs (deleted afterwards; NEXUS_BENCH_KEEP=1 keeps them), up
    to 10 minutes a run.  Per initializer: the time between its verdict
    line and the one before (stdout line-buffered); start: the first line
    less the median check.  The figure is the full pass against the 600 s
    budget; a pass that ends "unchecked" did not fit."""
    from gen_decoder import parse_count
    params = "200M" if ctx.a.quick else os.environ.get("NEXUS_BENCH_LIVE_BIG_PARAMS",
                                                       LIVE_BIG_PARAMS)
    need = (2 * 1.05 * parse_count(params) if not live_big_paths(ctx, params)[1].exists()
            else 0) + LIVE_BIG_FREE
    if shutil.disk_usage(ctx.cache).free < need:
        raise Skip(f"{shutil.disk_usage(ctx.cache).free / 1e9:.1f} GB free, "
                   f"{need / 1e9:.1f} GB wanted")
    cores = len(os.sched_getaffinity(0))
    sides = {"all": [], "t1": ["--threads", "1"]}
    res = {k: [] for k in sides}
    loads = []
    runs = ctx.a.runs or 1
    ws, bundle = live_big_paths(ctx, params)
    try:
        t_gen = time.perf_counter()
        live_big_bundle(ctx, params)
        t_gen = time.perf_counter() - t_gen
        cli = str(bundle / "bin/nexus_cli")
        for i in range(runs):
            for k in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
                loads.append(os.getloadavg()[0])
                res[k].append(live_timed(cli, bundle, sides[k]))
                loads.append(os.getloadavg()[0])
    finally:
        if os.environ.get("NEXUS_BENCH_KEEP") != "1":
            shutil.rmtree(bundle, ignore_errors=True)
            shutil.rmtree(ws, ignore_errors=True)
    load = f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs"
    rows = []
    for k, label in (("t1", "--threads 1"), ("all", f"every core ({cores})")):
        walls, per, per_big, starts, notes = [], [], [], [], []
        for wall, rss, cpu, lines in res[k]:
            summary, v = lines[-1], [x for x in lines[:-1] if x["verdict"] != "unchecked"]
            d = [b["t"] - a["t"] for a, b in zip(v, v[1:])]
            big = [b["t"] - a["t"] for a, b in zip(v, v[1:]) if b["bytes"] >= 1 << 20]
            start = v[0]["t"] - med(d) if d else wall
            walls.append(wall)
            per.append(med(d) if d else float("nan"))
            per_big.append(med(big) if big else float("nan"))
            starts.append(start)
            dead = sum(x["verdict"] == "dead" for x in lines[:-1])
            notes.append(f"{summary['checked']}/{summary['of']} checked in {wall:.0f} s "
                         f"(CPU {cpu:.0f} s, RSS {rss / MIB:.0f} MiB{', DEAD ' + str(dead) if dead else ''})")
        full = all(r[3][-1]["checked"] == r[3][-1]["of"] for r in res[k])
        w = med(walls)
        n = res[k][0][3][-1]["of"]
        rows.append(row(f"liveness_big_{k}",
                        f"nexus_cli liveness, {params} int8 decoder ({n} initializers), {label}, "
                        f"default budget", w, 600.0, "s", "<= 1.0x, every initializer checked",
                        full and w <= 600, "the check's 600 s budget",
                        max(r[1] for r in res[k]),
                        note=f"per initializer {med(per):.2f} s (of 1 MiB or more "
                             f"{med(per_big):.2f} s), start {med(starts):.1f} s; runs: "
                             f"{'; '.join(notes)}; {load}; generate + build {t_gen:.0f} s",
                        extra={"per_initializer_s": med(per), "per_big_s": med(per_big),
                               "start_s": med(starts), "walls": walls,
                               "per_line": [[(x["initializer"], x["bytes"], round(x["t"], 2))
                                             for x in r[3][:-1]] for r in res[k]]}))
    return rows


BENCHES = {"build": bench_build, "inspect": bench_inspect, "verify": bench_verify,
           "export": bench_export, "runtime": bench_runtime, "tokenizer": bench_tokenizer,
           "tokenizer_types": bench_tok_types,
           "coldstart": bench_coldstart, "fingerprint": bench_fingerprint,
           "realrt": bench_realrt,
           "sandbox": bench_sandbox, "quant": bench_quant,
           "quant_big": bench_quant_big, "oci": bench_oci,
           "generate": bench_generate, "quant_gen": bench_quant_gen,
           "liveness": bench_liveness, "liveness_big": bench_liveness_big}
OPT_IN = {"liveness_big"}   # run only when named in --only (minutes, gigabytes)


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:.1f} {unit}"


def table(rows):
    head = ["benchmark", "figure", "ours (median)", "baseline (median)", "ratio", "target",
            "peak RSS", "result"]
    lines = []
    for r in rows:
        if r.get("skipped"):
            lines.append([r["name"], r.get("figure", ""), "-", "-", "-", r.get("target", ""),
                          "-", "skipped: " + r["skipped"]])
            continue
        rss = "-" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:.1f} MiB"
        if r["rss_target_mib"]:
            rss += f" (<= {r['rss_target_mib']})"
        res = "report" if r["pass"] is None else ("PASS" if r["pass"] else "FAIL")
        lines.append([r["name"], r["figure"], fmt(r["ours"], r["unit"]),
                      fmt(r["baseline"], r["unit"]) + f" [{r['baseline_name']}]",
                      ("-" if r["ratio"] is None else f"{r['ratio']:.2f}x") +
                      (f" (CPU {r['cpu_ratio']:.2f}x)" if r.get("cpu_ratio") else ""),
                      r["target"], rss, res])
    w = [max(len(str(x[i])) for x in lines + [head]) for i in range(len(head))]
    out = ["  ".join(str(c).ljust(w[i]) for i, c in enumerate(x)).rstrip()
           for x in [head, ["-" * n for n in w]] + lines]
    notes = [f"  {r['name']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(out + (["", "notes:"] + notes if notes else []))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nexus", default=str(ROOT / "build/bin/nexus"))
    ap.add_argument("--quick", action="store_true", help="small sizes, 3 runs")
    ap.add_argument("--only", help="comma-separated: " + ",".join(BENCHES))
    ap.add_argument("--runs", type=int, help="timed runs per side (default 5, --quick 3)")
    ap.add_argument("--warm", action="store_true", help="never drop the page cache")
    a = ap.parse_args()
    ctx = Ctx(a)
    names = a.only.split(",") if a.only else [n for n in BENCHES if n not in OPT_IN]
    for n in names:
        if n not in BENCHES:
            ap.error(f"unknown benchmark {n!r}; choose from {', '.join(BENCHES)}")
    ctx.cache.mkdir(parents=True, exist_ok=True)
    global RUSAGE
    RUSAGE = rusage_tool(ctx)
    print(f"nexus bench: {', '.join(names)}; {ctx.runs} runs each; "
          f"{'cold cache (drop_caches before each file-heavy run)' if ctx.cold else 'warm cache'}; "
          f"model {ctx.params} parameters", file=sys.stderr)
    rows = []
    t_all = time.perf_counter()
    for n in names:
        t0 = time.perf_counter()
        try:
            rows.extend(BENCHES[n](ctx))
        except Skip as e:
            rows.append({"name": n, "skipped": str(e), "pass": None})
        except Exception as e:  # report and go on: one broken benchmark must not hide the rest
            rows.append({"name": n, "skipped": f"error: {e}"[:300], "pass": False, "error": True})
        print(f"  {n}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    doc = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                       "machine": platform.machine()},
           "quick": a.quick, "runs": ctx.runs, "cold_cache": ctx.cold,
           "total_s": round(time.perf_counter() - t_all, 1), "results": rows}
    outdir = ROOT / "bench/out"
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(table(rows))
    print(f"\n{doc['date']}, {os.cpu_count()} cpus, {'cold' if ctx.cold else 'warm'} cache, "
          f"total {doc['total_s']} s; results in bench/out/results.json")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
