#!/usr/bin/env python3
"""The margins of fingerprint_perm.c's features, in numpy (docs/TRV.md
"Vectors moved within themselves"): the cosine a teacher vector keeps
through float16, bfloat16 and int8 (one scale per tensor or per row), and
the largest an unrelated vector, or one of a model from the teacher's init
trained apart, reaches.  The features are the C file's: z sorted, 32 rank
bins, 31 spacings less the axis's mean over its spread (both symmetric),
centred, unit norm; a pair is compared as is and reversed."""
import numpy as np

Q = 32


def features(x):
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    z = np.sort(z, 1)
    n, length = z.shape
    at = (np.arange(length) * Q) // length
    p = np.stack([z[:, at == q].mean(1) for q in range(Q)], 1)
    g = np.diff(p, axis=1)
    m = g.mean(0)
    d = g - (m + m[::-1]) / 2
    s = np.sqrt((d * d).mean(0))
    f = d / np.sqrt((s * s + s[::-1] ** 2) / 2)
    f -= f.mean(1, keepdims=True)
    return f / np.linalg.norm(f, axis=1, keepdims=True)


def cosines(a, b):
    fa, fb = features(a), features(b)
    return np.maximum(fb @ fa.T, fb[:, ::-1] @ fa.T)


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


if __name__ == "__main__":
    main()
