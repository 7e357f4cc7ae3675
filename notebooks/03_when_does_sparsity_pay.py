# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. When does sparsity pay? Speed of pruned networks on a CPU
#
# * **Objectives.** Turn a pruned weight into time saved: know the four ways to run a pruned layer
#   (dense, compact, CSR, BSR), the *ideal speedup* of each (the ratio of multiply-accumulates), why
#   irregular sparsity reaches a small share of its ideal on a CPU while structured sparsity tracks its
#   own, and how to read a benchmark honestly (interleaved rounds, medians, threads, the baseline).
# * **Prerequisites.** [1. Projections](01_projections.ipynb) and [2. ADMM step by
#   step](02_admm_step_by_step.ipynb) (compaction); matrix products and what a cache is; the words
#   *GEMM view*, *im2col*, *CSR*, *BSR*, *compact* (`docs/GLOSSARY.md`).
# * **Runtime.** About two minutes on a 2-core laptop (the live single-layer benchmark; the whole-network
#   numbers are read from `paper_repro/results/inference.json`, which `paper_repro/bench_inference.py`
#   writes in several minutes).
# * **Reading order.** Fourth, after notebook 2; next [4. Accuracy against
#   sparsity](04_accuracy_vs_sparsity.ipynb) (see `docs/COURSE.md`).
#
# Pruning removes weights; whether it removes **time** depends on how the remaining weights are stored
# and multiplied. A convolution is one matrix product (`docs/ALGORITHMS.md`, section 5):
#
# $$Y = W_g \, \mathrm{im2col}(x), \qquad W_g \in \mathbb{R}^{F \times C K_H K_W},\;
#   \mathrm{im2col}(x) \in \mathbb{R}^{C K_H K_W \times N\, OH\, OW},$$
#
# so a pruned layer is a product with a matrix that has zeros in it. Four ways to run it:
#
# * **dense** — multiply the zeros too, with BLAS (OpenBLAS here): the baseline;
# * **compact** — structured pruning removed whole rows (filters) and columns (shapes) of $W_g$; drop them
#   and run a *smaller dense* GEMM, building only the kept rows of $\mathrm{im2col}(x)$;
# * **CSR** — unstructured pruning: store each surviving weight with its column index;
# * **BSR** — block pruning: store surviving $4\times 4$ tiles, one index per tile.
#
# The **ideal speedup** of a format is the ratio of multiply-accumulates, dense over stored. This notebook
# measures how close each format comes to it on this machine — and why the answer is the StructADMM
# argument: *structured* sparsity turns into speed on ordinary hardware, irregular sparsity mostly
# does not.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("REFIMPL_SMOKE") == "1"

# %%
import copy
import json

import matplotlib.pyplot as plt
import numba
import numpy as np

from refimpl.models import lenet5
from refimpl.notebook import figure_dir, repo_root
from refimpl.projections import mask_blocks, mask_filters, mask_shapes, mask_unstructured
from refimpl.prune.masking import apply_masks
from refimpl.sparse import compile as sparse_compile
from refimpl.sparse.layers import make_operator
from refimpl.threads import thread_info
from refimpl.timing import median_seconds

ROOT = repo_root()
FIG_DIR = figure_dir(SMOKE, ROOT)  # a temporary directory in smoke mode: CI never overwrites figures
RESULTS = ROOT / "paper_repro" / "results" / "inference.json"

# %% [markdown]
# ## Every format computes the same function
#
# `refimpl.sparse.compile(model, format)` keeps the network's structure and swaps only the computation of
# each convolution and linear layer. Whatever the format, the output is the masked dense network's
# (up to rounding: the sums run in a different order). Below, a LeNet-5 pruned to 90% three ways.

# %%
net = lenet5(input_size=28, dtype=np.float64)
x = np.random.default_rng(0).standard_normal((8, 1, 28, 28))


def masks_for(net, kind, sparsity):
    """One structure at one sparsity for every weight (the last layer keeps its 10 outputs)."""
    out = {}
    for name in net.prunable:
        w = net.parameters()[name]
        w2d = w.reshape(w.shape[0], -1)
        if kind == "unstructured":
            keep = mask_unstructured(w2d, sparsity)
        elif kind == "block":
            keep = mask_blocks(w2d, (4, 4), sparsity)
        else:  # filters and shapes: keep sqrt(1 - s) of the rows and of the columns
            side = 1 - np.sqrt(1 - sparsity)
            rows = mask_filters(w2d, side) if name != net.prunable[-1] else np.ones(w2d.shape, bool)
            keep = rows & mask_shapes(w2d, side if name != net.prunable[-1] else sparsity)
        out[name] = keep.reshape(w.shape)
    return out


for kind, fmt in (("unstructured", "csr"), ("block", "bsr"), ("structured", "compact")):
    masks = masks_for(net, kind, 0.9)
    reference = copy.deepcopy(net)
    apply_masks(reference, masks)
    expected = reference.eval().forward(x)
    got = sparse_compile(net, fmt, masks=masks)(x)
    print(f"{kind:<12} -> {fmt:<8} max |difference| = {np.abs(got - expected).max():.1e}")

# %% [markdown]
# The engine's report counts the work per layer (MACs and bytes from `refimpl.sparse.cost.spmm_cost`) and,
# with `format="auto"`, says which format each layer got and why. Note the structured model's ideal
# speedup is **more** than $1/(1-s)$: removing filters of `conv1` also removes the columns of `conv2`
# that read them (unused-path removal, `refimpl.compact`).

# %%
auto = sparse_compile(net, "auto", masks=masks_for(net, "structured", 0.9))
print(auto.summary(batch=1))
for row in auto.report():
    print(f"{row['name']:<6} {row['format']:<8} {row['reason']}")

# %% [markdown]
# ## One layer, measured live: why irregular sparsity loses to BLAS
#
# Take one GEMM the size of VGG-small's `conv4` on a batch of images ($128 \times 576$ weights,
# $576 \times N$ im2col columns) and time it at increasing sparsity: dense BLAS, CSR of an unstructured
# mask, BSR of a block mask, and the compact dense matrix of a filter+shape mask. All numbers come from
# this run on this machine (single-threaded, see the benchmark's note on threads).

# %%
numba.set_num_threads(1)
try:
    from threadpoolctl import threadpool_limits

    _blas = threadpool_limits(limits=1, user_api="blas")
except ImportError:
    pass
print("threads in force:", thread_info())

m, k, n = (64, 288, 256) if SMOKE else (128, 576, 4096)
sparsities = [0.5, 0.9] if SMOKE else [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99]
repeats = 2 if SMOKE else 7
rng = np.random.default_rng(1)
w = rng.standard_normal((m, k)).astype(np.float32)
cols = rng.standard_normal((k, n)).astype(np.float32)

t_dense = median_seconds(lambda: w @ cols, repeats)
layer = {"csr": [], "bsr": [], "compact": []}
for s in sparsities:
    for fmt, keep in (("csr", mask_unstructured(w, s)), ("bsr", mask_blocks(w, (4, 4), s)),
                      ("compact", mask_filters(w, 1 - np.sqrt(1 - s)) & mask_shapes(w, 1 - np.sqrt(1 - s)))):
        op = make_operator(np.where(keep, w, 0), fmt)
        x_used = cols if op.input_rows is None else cols[op.input_rows]
        layer[fmt].append(t_dense / median_seconds(lambda op=op, x_used=x_used: op.matmul(x_used), repeats))

fig, ax = plt.subplots(figsize=(5.5, 3.8))
density = 1 - np.array(sparsities)
ax.plot(100 * np.array(sparsities), 1 / density, "k--", lw=1, label="ideal (MAC ratio)")
for fmt, colour in (("compact", "tab:green"), ("csr", "tab:blue"), ("bsr", "tab:orange")):
    ax.plot(100 * np.array(sparsities), layer[fmt], "o-", color=colour, label=fmt)
ax.axhline(1, color="black", lw=0.8)
ax.set_yscale("log")
ax.set_xlabel("sparsity (%)")
ax.set_ylabel("speedup over dense BLAS")
ax.set_title(f"one {m}x{k} GEMM, N = {n}, float32")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(FIG_DIR / "03_layer_speedup.png", dpi=120)
for fmt in layer:
    print(fmt, " ".join(f"{100 * s:.0f}%: {v:.2f}x" for s, v in zip(sparsities, layer[fmt], strict=True)))

# %% [markdown]
# Read the curve through the cost of **one stored multiply-accumulate**:
#
# * BLAS packs panels of $W$ and $X$ into cache-sized blocks and keeps a small tile of $Y$ in registers,
#   so each loaded number feeds many multiplies and the core runs near its peak of fused multiply-adds.
# * CSR has to load an index for every weight and then a row of $X$ picked by that index. There is no
#   register tile to reuse: every multiply-add costs a load and a store of $Y$. Its time per stored MAC is
#   several times BLAS's, so CSR only wins once the density is below roughly the inverse of that factor —
#   the breakeven this machine shows (the README's sparse-kernel table, from `paper_repro/bench_spmm.py`,
#   puts scipy's CSR just above 95% on the 512×4608 layer).
# * BSR pays one index per 16 weights and multiplies small dense tiles: closer to BLAS per MAC, but the
#   ideal is now set by the *blocks*, and it still cannot reuse a register tile as BLAS does.
# * The compact matrix **is** a dense matrix: the same BLAS kernel on a smaller problem. Its time per MAC
#   is about BLAS's, so its speedup stays near the ideal line: above it where the smaller matrices fit a
#   faster level of cache, below it where they become too small to keep BLAS busy. A live run on a
#   shared machine is noisy; the printout is this run's.
#
# This is the StructADMM argument (Zhang et al.): at equal accuracy, unstructured pruning removes more
# weights, but structured pruning removes more **time**, because what it leaves is dense.

# %% [markdown]
# ## The whole network: LeNet-5 and VGG-small
#
# `paper_repro/bench_inference.py` times the full forward pass of both networks at batch 1 and 256 and
# sparsities 50–99% for every variant, per layer and in total, with the ratios taken within one run
# (interleaved rounds, medians). Its results file is read here; rerun the script to refresh it.

# %%
results = json.loads(RESULTS.read_text()) if RESULTS.exists() else None
if results is None:
    print(f"{RESULTS} not found: run python paper_repro/bench_inference.py")
else:
    setting = results["setting"]
    print(f"setting: {setting['mode']} run, threads numba {setting['numba_threads']}, "
          f"BLAS {setting['blas_threads']}, torch {setting['torch_threads']}, load average "
          f"{setting['load_average_1min_at_start']:.1f} -> {setting['load_average_1min_at_end']:.1f}")
    rows = results["results"]
    panels = sorted({(r["model"], r["batch"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8), squeeze=False)
    colours = {"compact": "tab:green", "own_csr": "tab:blue", "scipy_csr": "tab:cyan",
               "own_bsr": "tab:orange", "scipy_bsr": "tab:brown", "torch_dense": "tab:gray"}
    for ax, (model, batch) in zip(axes[0], panels, strict=True):
        sel = sorted((r for r in rows if r["model"] == model and r["batch"] == batch),
                     key=lambda r: r["sparsity"])
        s = [100 * r["sparsity"] for r in sel]
        for variant, colour in colours.items():
            ax.plot(s, [r["speedup"][variant] for r in sel], "o-", ms=3, color=colour, label=variant)
        for variant in ("compact", "own_csr"):
            ax.plot(s, [r["ideal"][variant] for r in sel], "--", lw=1, color=colours[variant])
        ax.axhline(1, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{model}, batch {batch}")
        ax.set_xlabel("sparsity (%)")
    axes[0][0].set_ylabel("speedup over dense (dashed: ideal)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIG_DIR / "03_network_speedup.png", dpi=120)

# %% [markdown]
# How close does each format come to its ideal? The efficiency is measured speedup over ideal speedup;
# 100% would mean the format runs its stored MACs exactly as fast as BLAS runs dense ones.

# %%
if results is not None:
    print(f"{'model':<10} {'batch':>5} {'sparsity':>8} | " + " ".join(
        f"{v:>16}" for v in ("compact", "own_csr", "own_bsr")))
    for r in rows:
        cells = [f"{r['speedup'][v]:5.2f}x/{r['ideal'][v]:6.1f}x" for v in ("compact", "own_csr", "own_bsr")]
        head = f"{r['model']:<10} {r['batch']:>5} {r['sparsity']:>8.2f} | "
        print(head + " ".join(f"{c:>16}" for c in cells))

# %% [markdown]
# A ratio is only as honest as its baseline. refimpl's dense network runs im2col + BLAS; PyTorch's CPU
# convolution (oneDNN) is the dense baseline most readers would reach for. In these measurements (one
# thread, float32, batch 256) PyTorch's dense network is *slower* than refimpl's, by 1.05× to 1.90×
# (printout), so the speedups above, taken against refimpl's dense network, are the smaller ones. The
# compact model against **PyTorch dense**:

# %%
if results is not None:
    for r in rows:
        if r["batch"] == max(q["batch"] for q in rows):
            print(f"{r['model']:<10} s={r['sparsity']:.2f}: refimpl dense {r['ms']['dense']:8.1f} ms, "
                  f"PyTorch dense {r['ms']['torch_dense']:8.1f} ms "
                  f"({r['ms']['torch_dense'] / r['ms']['dense']:4.2f}x refimpl's), compact "
                  f"{r['ms']['compact']:7.1f} ms -> compact / PyTorch dense: "
                  f"{r['ms']['torch_dense'] / r['ms']['compact']:5.1f}x")

# %% [markdown]
# Where the time goes when the speedup falls short of the ideal: the ideal counts only the GEMM work, but
# a network also runs im2col (copying), ReLU, pooling and flatten, whose cost shrinks only as far as the
# number of channels does. The share of time spent outside the convolution and linear layers, per
# variant, at the largest batch:

# %%
if results is not None:
    big = max(r["batch"] for r in rows)
    for r in rows:
        if r["batch"] != big:
            continue
        shares = {v: r["other_ms"][v] / r["ms"][v] for v in ("dense", "compact", "own_csr")}
        print(f"{r['model']:<10} s={r['sparsity']:.2f}: outside conv/linear "
              + ", ".join(f"{v} {100 * share:.0f}%" for v, share in shares.items()))

# %% [markdown]
# ## What to take away
#
# * **Irregular (unstructured) sparsity** only pays on a CPU once the density is low enough to beat the
#   several-fold higher cost of each stored multiply-add, and then far below its ideal: the network keeps
#   its full-size feature maps, im2col and pooling.
# * **Block sparsity** sits in between: one index per tile, small dense tiles.
# * **Structured pruning** (filters, channels, shapes) leaves a smaller *dense* network: the same BLAS, a
#   smaller problem, and smaller feature maps for every layer after it. Its measured speedup tracks the
#   ideal FLOP ratio best — the reason StructADMM prunes structures, even though at equal accuracy it
#   removes fewer weights than unstructured ADMM.
# * The numbers are this machine's (2 shared cores, one thread per pool). On a wider machine BLAS
#   parallelises better than sparse kernels, which moves the CSR breakeven further out, not closer.
