"""Margins of two rules, emulated in numpy (docs/TRV.md "Parts kept in place",
"Re-encoded teacher tensors"): the 16-bit count per exponent difference, and the
value sample's second decoy.  Run: /usr/bin/python3 bench/values_margins.py"""
import numpy as np
rng = np.random.default_rng(5)
def bf(a):
    u = a.view(np.uint32); return (((u + 0x7fff + ((u >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
def run(dt, st):
    t = (rng.standard_normal(1024) / 8).astype(np.float32)
    t = t.astype(np.float16).astype(np.float32) if dt == "F16" else bf(t)
    s = (rng.standard_normal(1024) / 8).astype(np.float32)
    s = {"f32": s, "f16": s.astype(np.float16).astype(np.float32), "lattice": s.astype(np.float16).astype(np.float32) if dt == "F16" else bf(s)}[st]
    sb, tb, db = s.view(np.uint32), t.view(np.uint32), np.roll(t, -512).view(np.uint32)
    fe = (sb >> 23) & 255
    def cnt(b):
        ok = (fe > 0) & (((b >> 23) & 255) > 0) & ((b & 0x7fffff) == (sb & 0x7fffff))
        return np.bincount((fe.astype(int) - ((b >> 23) & 255).astype(int) + 256)[ok], minlength=512)
    S, D = cnt(tb), cnt(db)
    margin = S - D - 5 * np.sqrt(S + D + 1)       # > 0 and S >= 8: a hit
    return (S - D).max(), margin.max(), ((margin >= 0) & (S >= 8)).any()
for dt in ("F16", "BF16"):
    for st in ("f32", "f16", "lattice"):
        r = [run(dt, st) for _ in range(300)]
        print(dt, st, "max same-decoy", max(x[0] for x in r), "closest to the 5 sd line", round(max(x[1] for x in r), 1), "false hits", sum(x[2] for x in r), "of 300")


# the second decoy: every teacher value (the rule sees 1/64 of them)
import numpy as np
rng = np.random.default_rng(1)
T = (rng.standard_normal(3 * 16384) / 8).astype(np.float32).view(np.uint32)
def key(u): return (u >> 1) & 0x7fffffff   # mantissa bits 22..1 and the exponent (sign aside)
for n in (1 << 20, 1 << 22, 1 << 24, 1 << 25):
    S = np.unique(key((rng.standard_normal(n) / 8).astype(np.float32).view(np.uint32)))
    kt = key(T)
    for b in (0, 3, 7):
        e = np.isin(kt, S).sum(); d2 = np.isin(kt ^ (1 << b), S).sum()
        z = (e - d2) / np.sqrt(e + d2 + 1)
        print(f"student {n:>9} elems, dbit {b}: either {e/kt.size:.3f} decoy2 {d2/kt.size:.3f}  z(all values) {z:+.2f}  z(1/64 sample) {z/8:+.2f}")
