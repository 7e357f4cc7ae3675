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
# # 1. Projections: the nearest sparse weight
#
# * **Objectives.** Know the projection onto each sparsity structure refimpl implements (unstructured,
#   filters, channels, shapes, kernels, blocks, balanced, N:M; weight unification), read their masks on
#   the GEMM view of a real layer, compare how much of the layer each keeps, and know why groups are
#   ranked by the L2 norm and not the L1 norm.
# * **Prerequisites.** [0. Pruning from scratch](00_from_scratch.ipynb) (magnitude pruning as a
#   projection); the words *GEMM view*, *filter*, *shape*, *block* (`docs/GLOSSARY.md`).
# * **Runtime.** About 15 seconds on a 2-core laptop (the conformance check at the end is most of it).
# * **Reading order.** Second, after notebook 0; next [2. ADMM step by step](02_admm_step_by_step.ipynb)
#   (see `docs/COURSE.md`). Exercise 1 of `notebooks/08_exercises` asks you to write one of these
#   projections.
#
# Every pruning method in refimpl — ADMM's Z-step, the hard prune, magnitude pruning — ends in one
# operation: the **Euclidean projection** of a weight $W$ onto a sparsity set $S$,
#
# $$\Pi_S(W) = \operatorname*{arg\,min}_{Z \in S} \|W - Z\|_F^2 .$$
#
# $S$ is not convex ("at most $k$ nonzero filters"), yet the projection is easy when $S$ is made of
# **disjoint groups**: if a group is kept it is best copied unchanged, and a dropped group costs its
# squared norm, so
#
# $$\|W - Z\|_F^2 = \sum_{g \text{ dropped}} \|W_g\|_2^2 ,$$
#
# which is smallest when the dropped groups are those of smallest **L2** norm. The structures differ only
# in what a group is (an entry, a filter = one row of the GEMM view $W_{F \times C K_H K_W}$, a channel,
# a column, a kernel, a block) or in adding per-vector counts (balanced, N:M). All of these projections
# are exact. One structure below is **not**: vector∧block (Guo et al.) asks for a weight in the
# *intersection* of a balanced set and a block set, whose nearest point has no cheap exact algorithm;
# refimpl's `project_vector_block` is a documented **heuristic** (the vector mask first, then the blocks
# ranked by what the vector mask kept; `refimpl/projections/blocks.py`).
#
# This chapter shows each structure's mask on one layer, how much of the layer's energy each keeps as
# sparsity grows, and why ranking groups by the L1 norm — a bug in a public projection library — is wrong.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("REFIMPL_SMOKE") == "1"

# %%

import matplotlib.pyplot as plt
import numpy as np

from refimpl.notebook import figure_dir, repo_root
from refimpl.projections import PROJECTIONS, project_filters, unify_assignment
from refimpl.testing.conformance import check_projection

ROOT = repo_root()
FIG_DIR = figure_dir(SMOKE, ROOT)  # a temporary directory in smoke mode: CI never overwrites figures

# %% [markdown]
# ## The layer
#
# LeNet-5's second convolution ($50$ filters over $20$ channels, $5 \times 5$ kernels; GEMM view
# $50 \times 500$). A trained copy is used when a training run has left its weights in
# `paper_repro/results/lenet5_fashion_dense.npz` (written by `paper_repro/lenet5_fashion_dense.py`);
# otherwise (and always in smoke mode) a random layer with the usual
# $\mathcal{N}(0, 2/\text{fan-in})$ scale, whose masks look the same up to the pattern of the values.

# %%
TRAINED = ROOT / "paper_repro" / "results" / "lenet5_fashion_dense.npz"
if not SMOKE and TRAINED.exists():
    with np.load(TRAINED) as archive:
        W = np.asarray(archive["conv2.weight"], dtype=np.float64)
    source = f"trained LeNet-5 conv2 ({TRAINED.name})"
else:
    rng = np.random.default_rng(0)
    W = rng.standard_normal((50, 20, 5, 5)) * np.sqrt(2 / (20 * 5 * 5))
    source = "random layer, LeNet-5 conv2 shape"
F = W.shape[0]
G = W.reshape(F, -1)
print(f"{source}: W {W.shape}, GEMM view {G.shape}, ||W||^2 = {np.sum(W**2):.3f}")

# %% [markdown]
# ## Each structure's mask at 75 % sparsity
#
# Black = kept. Every panel is the $50 \times 500$ GEMM view (one row per filter, columns ordered
# channel-major, then kernel row and column). Filters remove rows, shapes remove columns, channels remove
# bands of 25 columns, kernels remove $1 \times 25$ runs, blocks remove $5 \times 25$ tiles; balanced
# (vector size 25) keeps the same count in every kernel, N:M keeps 1 of every 4 neighbours; the
# vector∧block mask is the AND of a balanced and a block mask (the heuristic above). Weight unification
# is shown by what each $5 \times 25$ block becomes: copied (black), unified to one magnitude (grey) or
# pruned (white).

# %%
SPARSITY = 0.75
CASES = {
    "unstructured": {"sparsity": SPARSITY},
    "filters": {"sparsity": SPARSITY},
    "channels": {"sparsity": SPARSITY},
    "shapes": {"sparsity": SPARSITY},
    "kernels": {"sparsity": SPARSITY},
    "blocks": {"block_shape": (5, 25), "sparsity": SPARSITY},
    "balanced": {"vector_size": 25, "sparsity": SPARSITY},
    "nm": {"n": 1, "m": 4},
    "vector_block": {"vector_size": 25, "block_shape": (5, 25), "vector_sparsity": 0.5,
                     "block_sparsity": 0.5},
}

fig, axes = plt.subplots(5, 2, figsize=(11, 9), constrained_layout=True)
for ax, (name, params) in zip(axes.flat[:-1], CASES.items(), strict=True):
    mask = PROJECTIONS[name][1](W, **params).reshape(F, -1)
    ax.imshow(mask, cmap="Greys", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_title(f"{name}: {mask.mean():.0%} kept", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
ax = axes.flat[-1]
kinds = unify_assignment(W, (5, 25), unify=0.5, prune=0.25)
shade = np.choose(kinds, [1.0, 0.45, 0.0])  # copy black, unified grey, pruned white
ax.imshow(np.kron(shade, np.ones((5, 25))), cmap="Greys", vmin=0, vmax=1, aspect="auto",
          interpolation="nearest")
ax.set_title("unified (5x25 blocks): 25% copied, 50% unified, 25% pruned", fontsize=9)
ax.set_xticks([])
ax.set_yticks([])
fig.suptitle(f"Keep masks on the GEMM view, {source}")
fig.savefig(FIG_DIR / "01_projections_masks.png", dpi=120)
plt.show()

# %% [markdown]
# ## Energy kept as sparsity grows
#
# For a projection that only copies or zeroes entries, the share of the layer's energy it keeps is
# $\|\Pi(W)\|^2 / \|W\|^2 = 1 - \|W - \Pi(W)\|^2 / \|W\|^2$. The second form also measures weight
# unification, which changes values instead of zeroing them.
#
# At high sparsity the finer structures keep more energy: unstructured pruning, which may pick any
# entry, keeps the most, and whole filters or channels the least — the price of structure that the
# accuracy curves of later chapters pay. Between the structured ones there is no fixed order at moderate
# sparsity: the printout below gives every
# curve at 50 % too, where on this trained layer whole filters can keep more than shapes or blocks, since
# training leaves some filters much stronger than others. Unifying a share of the $5 \times 25$ blocks
# (dashed) keeps far more than pruning the same share of them: a unified block still carries its mean
# magnitude and all its signs, so even with 95 % of the blocks unified more than half of the energy
# remains (printout).

# %%
levels = np.linspace(0.0, 0.95, 5 if SMOKE else 20)
curves = {
    "unstructured": lambda s: PROJECTIONS["unstructured"][0](W, sparsity=s),
    "balanced (V=25)": lambda s: PROJECTIONS["balanced"][0](W, 25, sparsity=s),
    "kernels": lambda s: PROJECTIONS["kernels"][0](W, sparsity=s),
    "blocks 5x25": lambda s: PROJECTIONS["blocks"][0](W, (5, 25), sparsity=s),
    "shapes": lambda s: PROJECTIONS["shapes"][0](W, sparsity=s),
    "channels": lambda s: PROJECTIONS["channels"][0](W, sparsity=s),
    "filters": lambda s: PROJECTIONS["filters"][0](W, sparsity=s),
    "unified 5x25 (share unified)": lambda s: PROJECTIONS["unified"][0](W, (5, 25), sparsity=s),
}
energy = np.sum(W**2)
kept = {name: [1 - np.sum((W - fn(s)) ** 2) / energy for s in levels] for name, fn in curves.items()}

fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
for name, values in kept.items():
    ax.plot(levels, values, marker="o", ms=3, ls="--" if name.startswith("unified") else "-", label=name)
ax.set_xlabel("sparsity (share of groups pruned / blocks unified)")
ax.set_ylabel(r"energy kept  $1 - \|W - \Pi(W)\|^2 / \|W\|^2$")
ax.set_title(f"Energy kept by each projection ({source})")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.savefig(FIG_DIR / "01_projections_energy.png", dpi=120)
plt.show()

print(f"{'share of the energy kept':30s} {'at 50 %':>8s} {'at ' + format(levels[-1], '.0%'):>8s}")
for name, fn in curves.items():
    at_half = 1 - np.sum((W - fn(0.5)) ** 2) / energy
    print(f"{name:30s} {at_half:8.3f} {kept[name][-1]:8.3f}")

# %% [markdown]
# ## Why L2 and not L1: a counterexample
#
# Keep one of two filters. Filter A has one large weight, filter B many small ones:
#
# $$A = (3, 0, 0, 0), \qquad B = (0.9, 0.9, 0.9, 0.9), \qquad
#   \|A\|_1 = 3 < \|B\|_1 = 3.6, \qquad \|A\|_2 = 3 > \|B\|_2 = 1.8 .$$
#
# Ranking by L1 keeps B and pays $\|A\|_2^2 = 9$; the projection keeps A and pays only
# $\|B\|_2^2 = 3.24$. pyproximal's `L10BallProj` ranks columns by L1; its membership tests passed.

# %%
W_small = np.array([[3.0, 0.0, 0.0, 0.0], [0.9, 0.9, 0.9, 0.9]])


def filters_by_l1(w, sparsity=None, keep=None):
    """The mistaken rule: keep the filters of largest L1 norm."""
    l1 = np.abs(w.reshape(len(w), -1)).sum(axis=1)
    k = len(w) - round(sparsity * len(w)) if keep is None else keep
    out = np.array(w, copy=True)
    out[np.argsort(-l1, kind="stable")[k:]] = 0
    return out


for name, z in [("L2 (refimpl)", project_filters(W_small, keep=1)), ("L1", filters_by_l1(W_small, keep=1))]:
    print(f"{name:13s} keeps {z.tolist()}   ||W - Z||^2 = {np.sum((W_small - z) ** 2):.2f}")

# %% [markdown]
# refimpl's conformance checker finds this kind of bug on its own: it generates inputs and compares any
# projection with refimpl's, reporting the smallest counterexample found.

# %%
report = check_projection(filters_by_l1, "filters", sparsity=0.5, n_examples=50 if SMOKE else 200)
print(report)
assert not report.passed
