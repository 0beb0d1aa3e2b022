"""A transformer encoder fit to guide logits, written by hand in numpy:
forward, backward and Adam.  A fixture of tests/e2e/verify/test_redteam7.py:
the import audit does not read arithmetic, so such code in a bundle's src/
is bounded only by what the leak budget charges it (docs/TRV.md)."""
import numpy as np


def layer_norm(x, g, b, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    xh = (x - mu) / np.sqrt(var + eps)
    return xh * g + b, (xh, var, eps)


def layer_norm_back(dy, g, cache):
    xh, var, eps = cache
    n = xh.shape[-1]
    dg = (dy * xh).reshape(-1, n).sum(0)
    db = dy.reshape(-1, n).sum(0)
    dxh = dy * g
    inv = 1.0 / np.sqrt(var + eps)
    dx = inv / n * (n * dxh - dxh.sum(-1, keepdims=True) - xh * (dxh * xh).sum(-1, keepdims=True))
    return dx, dg, db


def softmax(z, t=1.0):
    z = z / t
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def gelu(x):
    c = np.sqrt(2.0 / np.pi)
    u = c * (x + 0.044715 * x ** 3)
    return 0.5 * x * (1.0 + np.tanh(u))


def gelu_back(dy, x):
    c = np.sqrt(2.0 / np.pi)
    u = c * (x + 0.044715 * x ** 3)
    th = np.tanh(u)
    du = c * (1.0 + 3 * 0.044715 * x ** 2)
    return dy * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th ** 2) * du)


def init(vocab, d, heads, ff, layers, classes, seed=0):
    rng = np.random.default_rng(seed)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    p = {"emb": w(vocab, d), "pos": w(512, d), "head_w": w(d, classes),
         "head_b": np.zeros(classes, np.float32)}
    for i in range(layers):
        for k, shape in (("wq", (d, d)), ("wk", (d, d)), ("wv", (d, d)), ("wo", (d, d)),
                         ("w1", (d, ff)), ("w2", (ff, d))):
            p[f"{i}.{k}"] = w(*shape)
        for k, n in (("bq", d), ("bk", d), ("bv", d), ("bo", d), ("b1", ff), ("b2", d)):
            p[f"{i}.{k}"] = np.zeros(n, np.float32)
        for k in ("ln1", "ln2"):
            p[f"{i}.{k}_g"] = np.ones(d, np.float32)
            p[f"{i}.{k}_b"] = np.zeros(d, np.float32)
    p["heads"] = heads
    p["layers"] = layers
    return p


def split(x, h):
    b, t, d = x.shape
    return x.reshape(b, t, h, d // h).transpose(0, 2, 1, 3)


def merge(x):
    b, h, t, e = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, h * e)


def block_forward(p, i, x, mask):
    h = p["heads"]
    q = split(x @ p[f"{i}.wq"] + p[f"{i}.bq"], h)
    k = split(x @ p[f"{i}.wk"] + p[f"{i}.bk"], h)
    v = split(x @ p[f"{i}.wv"] + p[f"{i}.bv"], h)
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = q @ k.transpose(0, 1, 3, 2) * scale + mask
    a = softmax(s)
    o = merge(a @ v)
    y = o @ p[f"{i}.wo"] + p[f"{i}.bo"]
    r1 = x + y
    n1, c1 = layer_norm(r1, p[f"{i}.ln1_g"], p[f"{i}.ln1_b"])
    f1 = n1 @ p[f"{i}.w1"] + p[f"{i}.b1"]
    g1 = gelu(f1)
    f2 = g1 @ p[f"{i}.w2"] + p[f"{i}.b2"]
    r2 = n1 + f2
    n2, c2 = layer_norm(r2, p[f"{i}.ln2_g"], p[f"{i}.ln2_b"])
    return n2, (x, q, k, v, a, o, n1, c1, f1, g1, c2, scale)


def block_backward(p, i, dn2, cache, grads):
    x, q, k, v, a, o, n1, c1, f1, g1, c2, scale = cache
    h = p["heads"]
    dr2, grads[f"{i}.ln2_g"], grads[f"{i}.ln2_b"] = layer_norm_back(dn2, p[f"{i}.ln2_g"], c2)
    dn1 = dr2.copy()
    d = dr2.shape[-1]
    grads[f"{i}.w2"] = g1.reshape(-1, g1.shape[-1]).T @ dr2.reshape(-1, d)
    grads[f"{i}.b2"] = dr2.reshape(-1, d).sum(0)
    dg1 = dr2 @ p[f"{i}.w2"].T
    df1 = gelu_back(dg1, f1)
    grads[f"{i}.w1"] = n1.reshape(-1, d).T @ df1.reshape(-1, df1.shape[-1])
    grads[f"{i}.b1"] = df1.reshape(-1, df1.shape[-1]).sum(0)
    dn1 += df1 @ p[f"{i}.w1"].T
    dr1, grads[f"{i}.ln1_g"], grads[f"{i}.ln1_b"] = layer_norm_back(dn1, p[f"{i}.ln1_g"], c1)
    dx = dr1.copy()
    grads[f"{i}.wo"] = o.reshape(-1, d).T @ dr1.reshape(-1, d)
    grads[f"{i}.bo"] = dr1.reshape(-1, d).sum(0)
    do = split(dr1 @ p[f"{i}.wo"].T, h)
    da = do @ v.transpose(0, 1, 3, 2)
    dv = a.transpose(0, 1, 3, 2) @ do
    ds = a * (da - (da * a).sum(-1, keepdims=True)) * scale
    dq = ds @ k
    dk = ds.transpose(0, 1, 3, 2) @ q
    for name, dz in (("q", dq), ("k", dk), ("v", dv)):
        dz = merge(dz)
        grads[f"{i}.w{name}"] = x.reshape(-1, d).T @ dz.reshape(-1, d)
        grads[f"{i}.b{name}"] = dz.reshape(-1, d).sum(0)
        dx += dz @ p[f"{i}.w{name}"].T
    return dx


def forward(p, ids, pad=0):
    b, t = ids.shape
    mask = np.where(ids == pad, -1e9, 0.0)[:, None, None, :].astype(np.float32)
    x = p["emb"][ids] + p["pos"][:t]
    caches = []
    for i in range(p["layers"]):
        x, c = block_forward(p, i, x, mask)
        caches.append(c)
    keep = (ids != pad).astype(np.float32)[..., None]
    pooled = (x * keep).sum(1) / np.maximum(keep.sum(1), 1.0)
    logits = pooled @ p["head_w"] + p["head_b"]
    return logits, (ids, x, keep, pooled, caches)


def distill_loss(logits, guide, labels, temp=2.0, alpha=0.5):
    """KL to the guide's softened distribution plus cross-entropy on labels;
    returns the loss and its gradient with respect to the logits."""
    b = len(logits)
    ps = softmax(logits, temp)
    pt = softmax(guide, temp)
    kl = (pt * (np.log(pt + 1e-12) - np.log(ps + 1e-12))).sum() / b
    p1 = softmax(logits)
    ce = -np.log(p1[np.arange(b), labels] + 1e-12).mean()
    onehot = np.zeros_like(p1)
    onehot[np.arange(b), labels] = 1.0
    dlogits = alpha * temp * (ps - pt) / b + (1 - alpha) * (p1 - onehot) / b
    return alpha * temp * temp * kl + (1 - alpha) * ce, dlogits


def backward(p, dlogits, cache):
    ids, x, keep, pooled, caches = cache
    grads = {"head_w": pooled.T @ dlogits, "head_b": dlogits.sum(0)}
    dpooled = dlogits @ p["head_w"].T
    dx = dpooled[:, None, :] * keep / np.maximum(keep.sum(1), 1.0)[:, None, :]
    for i in reversed(range(p["layers"])):
        dx = block_backward(p, i, dx, caches[i], grads)
    t = ids.shape[1]
    grads["pos"] = np.zeros_like(p["pos"])
    grads["pos"][:t] = dx.sum(0)
    grads["emb"] = np.zeros_like(p["emb"])
    np.add.at(grads["emb"], ids, dx)
    return grads


class Adam:
    def __init__(self, params, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, wd=0.01):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, b1, b2, eps, wd
        self.m = {k: np.zeros_like(v) for k, v in params.items() if isinstance(v, np.ndarray)}
        self.v = {k: np.zeros_like(v) for k, v in self.m.items()}
        self.t = 0

    def step(self, params, grads, clip=1.0):
        self.t += 1
        norm = np.sqrt(sum(float((g * g).sum()) for g in grads.values()))
        f = min(1.0, clip / (norm + 1e-6))
        for k, g in grads.items():
            g = g * f
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            mh = self.m[k] / (1 - self.b1 ** self.t)
            vh = self.v[k] / (1 - self.b2 ** self.t)
            params[k] -= self.lr * (mh / (np.sqrt(vh) + self.eps) + self.wd * params[k])


def batches(ids, guide, labels, size, rng):
    order = rng.permutation(len(ids))
    for s in range(0, len(ids), size):
        j = order[s:s + size]
        yield ids[j], guide[j], labels[j]


def schedule(step, total, warmup, peak):
    if step < warmup:
        return peak * (step + 1) / warmup
    f = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1.0 + np.cos(np.pi * f))


def train(params, ids, guide, labels, epochs=3, batch=32, peak=3e-4, seed=0):
    """Fit params so that the student follows the guide logits."""
    rng = np.random.default_rng(seed)
    opt = Adam(params, peak)
    total = epochs * ((len(ids) + batch - 1) // batch)
    step, history = 0, []
    for _ in range(epochs):
        for x, g, y in batches(ids, guide, labels, batch, rng):
            opt.lr = schedule(step, total, total // 10 + 1, peak)
            logits, cache = forward(params, x)
            loss, dlogits = distill_loss(logits, g, y)
            opt.step(params, backward(params, dlogits, cache))
            history.append(loss)
            step += 1
    return history
