"""An independent NumPy implementation that plays "the other implementation" against refimpl's oracle.

Nothing here imports refimpl: it is written from the contract alone (``docs/ALGORITHMS.md`` and the golden
manifest's conventions), the way a port to another language would be. :func:`write_results` runs it on
every golden case and writes ``RESULTS/<case>/<output>.npy``. :class:`Bugs` plants the mistakes the
oracle must catch, one flag each.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Bugs:
    ties: str = "lower"  # "higher": the higher index wins a tie; "topk": argpartition picks
    count: str = "round"  # "floor": floor(s*n) groups pruned instead of round-half-to-even
    float64_output: bool = False  # every output cast to float64
    nm_axis: str = "rows"  # "cols": N:M groups along the GEMM columns (output dimension)
    conv_dw: str = "right"  # "transposed": dW computed as (cols @ G.T) instead of (G @ cols.T)
    padding: int = 0  # added to the convolution's padding (off by one)
    mask_product: bool = False  # a projection applied as w * mask: -0.0 for negative dropped entries


# --- projections -------------------------------------------------------------------------------------


def _pruned(n, sparsity, bugs):
    return math.floor(sparsity * n) if bugs.count == "floor" else round(sparsity * n)


def _kept(n, params, bugs, prefix=""):
    if params.get(prefix + "keep") is not None:
        return params[prefix + "keep"]
    return n - _pruned(n, params[prefix + "sparsity"], bugs)


def _select(scores, k, bugs):
    """Indices of the k largest scores, ties by the lower index (or a planted rule)."""
    n = len(scores)
    if k == 0:
        return np.zeros(0, dtype=int)
    if bugs.ties == "higher":
        return np.lexsort((-np.arange(n), -scores))[:k]
    if bugs.ties == "topk":
        return np.argpartition(scores, n - k)[n - k :]
    return np.lexsort((np.arange(n), -scores))[:k]


def _groups(structure, shape, block_shape=None):
    """Group label of every entry of the GEMM view, labels in the tie order."""
    f = shape[0]
    k = int(np.prod(shape[1:]))
    kk = int(np.prod(shape[2:])) if len(shape) == 4 else 1
    r = np.arange(f)[:, None] + np.zeros((1, k), dtype=int)
    c = np.arange(k)[None, :] + np.zeros((f, 1), dtype=int)
    if structure == "unstructured":
        return r * k + c
    if structure == "filters":
        return r
    if structure == "channels":
        return c // kk
    if structure == "shapes":
        return c
    if structure == "kernels":
        return r * (k // kk) + c // kk
    bh, bw = block_shape
    return (r // bh) * ((k + bw - 1) // bw) + c // bw


def _keep_groups(w2d, labels, k, bugs):
    n = labels.max() + 1
    scores = np.zeros(n)
    np.add.at(scores, labels.ravel(), (w2d.astype(np.float64) ** 2).ravel())
    keep = np.zeros(n, dtype=bool)
    keep[_select(scores, k, bugs)] = True
    return keep[labels]


def _vectors(w2d, v, k_v, bugs):
    mask = np.zeros(w2d.shape, dtype=bool)
    for row in range(w2d.shape[0]):
        for start in range(0, w2d.shape[1], v):
            seg = np.abs(w2d[row, start : start + v]).astype(np.float64)
            k = k_v if len(seg) == v else int(round(Fraction(k_v * len(seg), v)))
            mask[row, start + _select(seg, k, bugs)] = True
    return mask


def _unify(w2d, bh, bw, params, bugs):
    blocks = [
        (slice(i, i + bh), slice(j, j + bw))
        for i in range(0, w2d.shape[0], bh)
        for j in range(0, w2d.shape[1], bw)
    ]
    n = len(blocks)
    mags = [np.abs(w2d[b].astype(np.float64)).ravel() for b in blocks]
    c = [m[0] if m.max() == m.min() else float(np.sum(m)) / m.size for m in mags]
    d = [float(np.sum((m - ci) ** 2)) for m, ci in zip(mags, c, strict=True)]
    e = [float(np.sum(m**2)) for m in mags]
    n_prune = round((params.get("prune") or 0.0) * n)
    if params.get("keep") is not None:
        n_unify = n - params["keep"] - n_prune
    else:
        share = params["sparsity"] if params.get("sparsity") is not None else params["unify"]
        n_unify = _pruned(n, share, bugs)

    def cheapest(cost, count, among):
        return sorted(among, key=lambda b: (cost[b], -b))[:count]

    if n_prune == 0 or n_unify == 0:
        pruned, unified = cheapest(e, n_prune, range(n)), cheapest(d, n_unify, range(n))
    else:
        order = sorted(range(n), key=lambda b: (e[b] - d[b], -b))
        best = None
        for t in range(n + 1):
            p, u = cheapest(e, n_prune, order[:t]), cheapest(d, n_unify, order[t:])
            if len(p) == n_prune and len(u) == n_unify:
                total = sum(e[b] for b in p) + sum(d[b] for b in u)
                if best is None or total < best[0]:
                    best = (total, p, u)
        _, pruned, unified = best
    z = w2d.copy()
    for b in pruned:
        z[blocks[b]] = 0
    for b in unified:
        cb = w2d.dtype.type(c[b])
        z[blocks[b]] = np.where(w2d[blocks[b]] >= 0, cb, -cb)
    return z


def project(structure, w, params, bugs=Bugs()):
    """The projection of ``w`` onto ``structure`` with the manifest's ``params``."""
    w2d = w.reshape(w.shape[0], -1)
    if structure in ("unstructured", "filters", "channels", "shapes", "kernels", "blocks"):
        labels = _groups(structure, w.shape, params.get("block_shape"))
        mask = _keep_groups(w2d, labels, _kept(labels.max() + 1, params, bugs), bugs)
    elif structure == "balanced":
        v = params["vector_size"]
        mask = _vectors(w2d, v, _kept(v, params, bugs), bugs)
    elif structure == "nm":
        if bugs.nm_axis == "cols":
            mask = _vectors(np.ascontiguousarray(w2d.T), params["m"], params["n"], bugs).T
        else:
            mask = _vectors(w2d, params["m"], params["n"], bugs)
    elif structure == "vector_block":
        v, (bh, bw) = params["vector_size"], params["block_shape"]
        labels = _groups("blocks", w.shape, (bh, bw))
        counts = dict(params)
        if params.get("total_sparsity") is not None:
            dens = 1.0 - params["total_sparsity"]
            counts["vector_keep"] = min(v, max(1, math.ceil(v * dens**0.5 - 1e-9)))
            counts["block_keep"] = round((labels.max() + 1) * dens * v / counts["vector_keep"])
        vmask = _vectors(w2d, v, _kept(v, counts, bugs, "vector_"), bugs)
        masked = np.where(vmask, w2d, 0)
        mask = vmask & _keep_groups(masked, labels, _kept(labels.max() + 1, counts, bugs, "block_"), bugs)
    elif structure == "unified":
        return _unify(w2d, *params["block_shape"], params, bugs).reshape(w.shape)
    if bugs.mask_product:
        return (w2d * mask).reshape(w.shape)
    return np.where(mask, w2d, w2d.dtype.type(0)).reshape(w.shape)


# --- layers --------------------------------------------------------------------------------------------


def conv2d(x, w, b, stride, padding, dout, bugs):
    padding += bugs.padding
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, f, oh, ow), dtype=x.dtype)
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", win, w) + b
            if dout is not None and dout.shape == out.shape:
                dw += np.einsum("nf,nchw->fchw", dout[:, :, i, j], win)
                dxp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw] += np.einsum(
                    "nf,fchw->nchw", dout[:, :, i, j], w
                )
    if dout is None or dout.shape != out.shape:
        return {"out": out}
    dx = dxp[:, :, padding : padding + h, padding : padding + wd]
    if bugs.conv_dw == "transposed":  # the GEMM-view gradient (F, K) read back as (K, F)
        dw = np.ascontiguousarray(dw.reshape(f, -1).T).reshape(w.shape)
    return {"out": out, "dx": dx, "dw": dw, "db": dout.sum(axis=(0, 2, 3))}


def pool(x, k, s, dout, kind):
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    dx = np.zeros_like(x)
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, i * s : i * s + k, j * s : j * s + k].reshape(n, c, -1)
            if kind == "max":
                arg = np.argmax(win, axis=2)  # the first maximum in row-major order
                out[:, :, i, j] = np.take_along_axis(win, arg[..., None], 2)[..., 0]
                for a in range(n):
                    for b in range(c):
                        u, v = divmod(int(arg[a, b]), k)
                        dx[a, b, i * s + u, j * s + v] += dout[a, b, i, j]
            else:
                out[:, :, i, j] = win.mean(axis=2)
                dx[:, :, i * s : i * s + k, j * s : j * s + k] += dout[:, :, i, j][..., None, None] / (k * k)
    return {"out": out, "dx": dx}


def batchnorm(x, gamma, beta, rm, rv, training, momentum, eps, dout):
    g, bt = gamma[None, :, None, None], beta[None, :, None, None]
    m = x.shape[0] * x.shape[2] * x.shape[3]
    if training:
        mu, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
        rm, rv = (1 - momentum) * rm + momentum * mu, (1 - momentum) * rv + momentum * var * m / (m - 1)
    else:
        mu, var = rm, rv
    inv = 1 / np.sqrt(var + eps)
    xh = (x - mu[None, :, None, None]) * inv[None, :, None, None]
    dxh = dout * g
    if training:
        dx = (
            inv[None, :, None, None]
            / m
            * (
                m * dxh
                - dxh.sum(axis=(0, 2, 3), keepdims=True)
                - xh * (dxh * xh).sum(axis=(0, 2, 3), keepdims=True)
            )
        )
    else:
        dx = dxh * inv[None, :, None, None]
    return {
        "out": g * xh + bt,
        "running_mean": rm,
        "running_var": rv,
        "dx": dx,
        "dgamma": (dout * xh).sum(axis=(0, 2, 3)),
        "dbeta": dout.sum(axis=(0, 2, 3)),
    }


def layer(name, inputs, params, bugs):
    dout = inputs.get("dout")
    if name == "conv2d":
        return conv2d(inputs["x"], inputs["w"], inputs["b"], params["stride"], params["padding"], dout, bugs)
    if name == "linear":
        x, w = inputs["x"], inputs["w"]
        return {"out": x @ w.T + inputs["b"], "dx": dout @ w, "dw": dout.T @ x, "db": dout.sum(axis=0)}
    if name in ("maxpool2d", "avgpool2d"):
        return pool(inputs["x"], params["kernel_size"], params["stride"], dout, name[:3])
    if name == "batchnorm2d":
        return batchnorm(
            *(inputs[k] for k in ("x", "gamma", "beta", "running_mean", "running_var")),
            params["training"],
            params["momentum"],
            params["eps"],
            dout,
        )
    if name == "relu":
        x = inputs["x"]
        return {"out": np.maximum(x, 0), "dx": np.where(x > 0, dout, 0)}
    z, y = inputs["logits"].astype(np.float64), inputs["labels"]
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    onehot = np.zeros_like(p)
    onehot[rows, y] = 1
    return {"loss": np.float64(np.mean(-np.log(p[rows, y]))), "dlogits": (p - onehot) / len(y)}


# --- the rest and the driver ---------------------------------------------------------------------------


def admm_step(inputs, params, bugs):
    proj = {k: v for k, v in params.items() if k not in ("rho", "lr", "structure")}
    W, Z, U = inputs["W"], inputs["Z"], inputs["U"]
    W1 = W - params["lr"] * (inputs["grad"] + params["rho"] * (W - Z + U))
    Z1 = project(params["structure"], W1 + U, proj, bugs)
    return {"W": W1, "Z": Z1, "U": U + W1 - Z1}


def compaction(inputs, bugs):
    w1, b1, w2, b2 = (inputs[k] for k in ("conv1_weight", "conv1_bias", "conv2_weight", "conv2_bias"))
    w1 = np.where(inputs["conv1_mask"], w1, 0)
    dead = ~w1.reshape(len(w1), -1).any(axis=1)
    keep = np.flatnonzero(~dead)
    b2 = b2 + np.einsum("f,jfhw->j", np.maximum(b1, 0) * dead, w2)
    w1, b1, w2 = w1[keep], b1[keep], w2[:, keep]
    h = conv2d(inputs["x"], w1, b1, 1, 0, None, bugs)["out"]
    y = conv2d(np.maximum(h, 0), w2, b2, 1, 0, None, bugs)["out"]
    return {
        "conv1_weight": w1,
        "conv1_bias": b1,
        "conv2_weight": w2,
        "conv2_bias": b2,
        "kept_filters": keep.astype(np.int64),
        "y": y,
    }


def write_results(golden_dir, results_dir, bugs=Bugs()):
    """Run this implementation on every case of the golden set and write its outputs."""
    root, out = Path(golden_dir), Path(results_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    for case in manifest["cases"]:
        inputs = {k: np.load(root / spec["file"]) for k, spec in case["inputs"].items()}
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in case["params"].items()}
        if case["kind"] == "projection" and params["structure"] == "unstructured_global":
            ws = [inputs["w0"], inputs["w1"]]
            flat = np.concatenate([w.ravel() for w in ws])
            z = project("unstructured", flat[None, :], params, bugs)[0]
            outputs = {"z0": z[: ws[0].size].reshape(ws[0].shape), "z1": z[ws[0].size :].reshape(ws[1].shape)}
        elif case["kind"] == "projection":
            outputs = {"z": project(params.pop("structure"), inputs["w"], params, bugs)}
        elif case["kind"] == "layer":
            outputs = layer(params.pop("layer"), inputs, params, bugs)
        elif case["kind"] == "admm_step":
            outputs = admm_step(inputs, params, bugs)
        else:
            outputs = compaction(inputs, bugs)
        for key, value in outputs.items():
            value = np.asarray(value)
            dtype = case["outputs"][key]["dtype"]
            value = value.astype(np.float64 if bugs.float64_output and value.dtype.kind == "f" else dtype)
            path = out / case["name"] / f"{key}.npy"
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, value)
