#!/usr/bin/env python3
"""The margins of fingerprint_perm.c's features, in numpy (docs/TRV.md
"Vectors moved within themselves"): the cosine a teacher vector keeps
through float16, bfloat16 and int8 (one scale per tensor or per row), and
the largest an unrelated vector, or one of a model from the teacher's init
trained apart, reaches.  The features are the C file's: z sorted, 32 rank
bins, 31 spacings less the axis's mean over its spread (both symmetric),
centred, unit norm; a pair is compared as is and reversed.  The
scale-free form (each position divided by its geometric mean magnitude
over the axis's vectors) against copies scaled per element of both axes,
diag(e) W diag(d), and vectors padded by k elements."""
import numpy as np

Q = 32


def spacings(x, absolute=False):
    """the binned profile's spacings: of v, or of |v| (the |v| form)"""
    if absolute:
        x = np.abs(x)
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    z = np.sort(z, 1)
    n, length = z.shape
    at = (np.arange(length) * Q) // length
    p = np.stack([z[:, at == q].mean(1) for q in range(Q)], 1)
    return np.diff(p, axis=1)


def stats(g, absolute=False):
    """an axis's mean spacings and their spread (both symmetric: -v's
    spacings are v's reversed; not for |v|, whose are not symmetric)"""
    ms = g.mean(0)
    if not absolute:
        ms = (ms + ms[::-1]) / 2
    s = np.sqrt(((g - ms) ** 2).mean(0))
    return ms, s if absolute else np.sqrt((s * s + s[::-1] ** 2) / 2)


def features(x, absolute=False, st=None):
    """st: another axis's (stats(...)): a short axis measured against the
    teacher's means"""
    g = spacings(x, absolute)
    ms, ss = stats(g, absolute) if st is None else st
    f = (g - ms) / ss
    f -= f.mean(1, keepdims=True)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def cosines(a, b, absolute=False):
    fa, fb = features(a, absolute), features(b, absolute)
    if absolute:
        return fb @ fa.T
    return np.maximum(fb @ fa.T, fb[:, ::-1] @ fa.T)


def flips(rng, w):
    r = np.where(rng.random(w.shape[0]) < 0.5, -1, 1)[:, None]
    c = np.where(rng.random(w.shape[1]) < 0.5, -1, 1)[None, :]
    return w * r * c


def signed(rng, t):
    """the |v| form: a teacher permuted and flipped per row and column,
    rounded / float16 / int8; chance among unrelated vectors"""
    print("-- |v| form (FP_PERM_RA)")
    for name, form in (("float32", lambda v: v.astype(np.float32).astype(np.float64)),
                       ("float16", lambda v: v.astype(np.float16).astype(np.float64)),
                       ("int8, one scale", lambda v: np.round(v / (np.abs(v).max() / 127)))):
        pi, si = rng.permutation(t.shape[0]), rng.permutation(t.shape[1])
        s = form(flips(rng, t)[pi][:, si])
        for a, b, inv, ax in ((t, s, pi, "rows"), (t.T.copy(), s.T.copy(), si, "cols")):
            c = cosines(a, b, True)[np.arange(len(inv)), inv]
            print(f"signed, permuted, {name:15s} {ax}: |v| min {c.min():.3f} "
                  f"median {np.median(c):.3f}")
    for div in (16, 32):
        s = flips(rng, t + rng.standard_normal(t.shape) / div)
        for a, b in ((t, s), (t.T.copy(), s.T.copy())):
            c = np.diag(cosines(a, b, True))
            print(f"same init, moved by {8 / div:.3f}, flipped, |v| L={a.shape[1]:4d}: "
                  f"median {np.median(c):.3f} max {c.max():.3f}")
    gens = {"Gaussian": lambda n, L: rng.standard_normal((n, L)),
            "t(4)": lambda n, L: rng.standard_t(4, (n, L)),
            "Laplace": lambda n, L: rng.laplace(size=(n, L))}
    for length in (64, 256, 1024):
        for name, g in gens.items():
            print(f"unrelated {name:8s} L={length:4d}: max of 4M pairs, |v| "
                  f"{cosines(g(2000, length), g(2000, length), True).max():.3f}")


def short(rng, t):
    """an axis of 15 vectors or fewer, against the teacher axis's means"""
    print("-- short axes (teacher's means)")
    for a in (t, t.T.copy()):
        for absolute in (False, True):
            st = stats(spacings(a, absolute), absolute)
            ft = features(a, absolute)
            tag = "|v|" if absolute else "v  "
            for n in (1, 4, 15):
                idx = rng.permutation(len(a))[:n]
                q = a[idx][:, rng.permutation(a.shape[1])].astype(np.float32).astype(np.float64)
                c = (features(q, absolute, st) * ft[idx]).sum(1)
                if not absolute:
                    c = np.maximum(c, (features(q, absolute, st)[:, ::-1] * ft[idx]).sum(1))
                print(f"L={a.shape[1]:4d} {tag} {n:2d} teacher vectors, permuted: "
                      f"min {c.min():.3f}")
            for name, other in (("random Gaussian", rng.standard_normal((3000, a.shape[1])) / 8),
                                ("random t(4)", rng.standard_t(4, (3000, a.shape[1])) / 8),
                                ("same init, moved 0.5",
                                 np.tile(a, (1, 1)) + rng.standard_normal(a.shape) / 16)):
                fo = features(other, absolute, st)
                c = fo @ ft.T
                if not absolute:
                    c = np.maximum(c, fo[:, ::-1] @ ft.T)
                print(f"L={a.shape[1]:4d} {tag} {name:20s} vs the teacher axis: "
                      f"max of {c.size} pairs {c.max():.3f}")


def scale_free(x):
    """each position (column of x: the vectors are its rows) over its
    geometric mean magnitude, zeros left out of the mean"""
    a = np.abs(x)
    lg = np.where(a > 0, np.log(np.where(a > 0, a, 1)), 0)
    return x / np.exp(lg.sum(0) / np.maximum((a > 0).sum(0), 1))


def scaled_forms(rng, t):
    for lo, hi in ((0.9, 1.1), (0.8, 1.25), (0.5, 2.0), (0.1, 10.0)):
        e = np.exp(rng.uniform(np.log(lo), np.log(hi), t.shape[0]))[:, None]
        d = np.exp(rng.uniform(np.log(lo), np.log(hi), t.shape[1]))[None, :]
        pi, si = rng.permutation(t.shape[0]), rng.permutation(t.shape[1])
        s = (e * t[pi][:, si] * d).astype(np.float32)
        for name, form in (("rounded", lambda v: v.astype(np.float64)),
                           ("float16", lambda v: v.astype(np.float16).astype(np.float64)),
                           ("int8, one scale", lambda v: np.round(v / (np.abs(v).max() / 127)))):
            q = form(s)
            for a, b, inv, ax in ((t, q, pi, "rows"), (t.T.copy(), q.T.copy(), si, "cols")):
                idx = np.arange(len(inv)), inv
                plain = cosines(a, b)[idx]
                free = cosines(scale_free(a), scale_free(b))[idx]
                print(f"scaled in [{lo}, {hi}], {name:15s} {ax}: as stored min {plain.min():.3f} "
                      f"median {np.median(plain):.3f}; scale-free min {free.min():.4f} "
                      f"median {np.median(free):.4f}")


def padded(rng):
    for length in (64, 128, 256, 1024):
        t = rng.standard_normal((256, length))
        for k in (1, 2, 4):
            p = np.concatenate([t, rng.standard_normal((t.shape[0], k))], 1)
            p = p[:, rng.permutation(length + k)]
            c = (features(t) * features(p)).sum(1)
            print(f"padded L={length:4d} by {k}: min {c.min():.3f} median {np.median(c):.3f}, "
                  f"found (>= 0.93) {(c >= 0.93).mean():.2f}")


def chance(rng):
    gens = {"Gaussian": lambda n, L: rng.standard_normal((n, L)),
            "t(4)": lambda n, L: rng.standard_t(4, (n, L)),
            "Laplace": lambda n, L: rng.laplace(size=(n, L))}
    for length in (64, 256, 1024):
        for name, g in gens.items():
            a, b = g(2000, length), g(2000, length)
            print(f"unrelated {name:8s} L={length:4d}: max of 4M pairs as stored "
                  f"{cosines(a, b).max():.3f}, scale-free {cosines(scale_free(a), scale_free(b)).max():.3f}")


def main():
    rng = np.random.default_rng(11)
    t = rng.standard_normal((64, 256)) / 8
    forms = {
        "float16": lambda v: v.astype(np.float16).astype(np.float64),
        "bfloat16": lambda v: ((v.astype(np.float32).view(np.uint32) >> 16 << 16)
                               .view(np.float32).astype(np.float64)),
        "int8, one scale": lambda v: np.round(v / (np.abs(v).max() / 127)),
        "int8, a scale per row": lambda v: np.round(v / (np.abs(v).max(1, keepdims=True) / 127)),
    }
    for name, form in forms.items():
        for a in (t, t.T.copy()):
            c = np.diag(cosines(a, form(a)))
            print(f"{name:22s} L={a.shape[1]:4d} true vectors: min {c.min():.4f}")
    for div in (16, 32, 64, 128):
        s = t + rng.standard_normal(t.shape) / div
        for a, b in ((t, s), (t.T.copy(), s.T.copy())):
            c = np.diag(cosines(a, b))
            print(f"same init, moved by {8 / div:.3f} of its spread L={a.shape[1]:4d}: "
                  f"median {np.median(c):.3f} max {c.max():.3f}")
    for length in (64, 256, 1024):
        c = cosines(rng.standard_normal((2000, length)), rng.standard_normal((2000, length)))
        print(f"unrelated Gaussian L={length:4d}: max of 4M pairs {c.max():.3f}")
    for div in (16, 32):
        s = t + rng.standard_normal(t.shape) / div
        for a, b in ((t, s), (t.T.copy(), s.T.copy())):
            c = np.diag(cosines(scale_free(a), scale_free(b)))
            print(f"same init, moved by {8 / div:.3f}, scale-free L={a.shape[1]:4d}: "
                  f"median {np.median(c):.3f} max {c.max():.3f}")
    import sys
    if "--new" in sys.argv:   # only what stop 22 added
        signed(rng, t)
        short(rng, t)
        return
    scaled_forms(rng, t)
    padded(rng)
    chance(rng)
    signed(rng, t)
    short(rng, t)


if __name__ == "__main__":
    main()
