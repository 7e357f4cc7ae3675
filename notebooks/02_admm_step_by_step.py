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
# # 2. ADMM step by step: one layer pulled into a sparsity set
#
# * **Objectives.** Follow StructADMM on one layer of LeNet-5 from the dense model to a smaller dense
#   network: read the residuals and $\rho$ in `admm.history`, see the period-2 cycle of $Z$ while $\rho$
#   is small, know when the residuals are small enough to hard prune, compare the two rules for the dual
#   variable when $\rho$ grows and a magnitude-pruning control with the same budget, and compact the
#   pruned network without changing its outputs.
# * **Prerequisites.** [0. Pruning from scratch](00_from_scratch.ipynb) (the three ADMM steps on a toy)
#   and [1. Projections](01_projections.ipynb); the words *GEMM view*, *filter*, *shape*, *scaled dual*,
#   *residuals* (`docs/GLOSSARY.md`).
# * **Runtime.** About a minute on a 2-core laptop (three short training runs on $8 \times 8$ digits).
# * **Reading order.** Third, after notebooks 0 and 1; next [3. When does sparsity
#   pay?](03_when_does_sparsity_pay.ipynb) (see `docs/COURSE.md`). Exercise 3 of `notebooks/08_exercises`
#   asks you to write the Z/U update.
#
# Pruning asks for a network that still fits the data while some weights lie in a **non-convex set**
#
# $$\min_W f(W) \quad \text{s.t.} \quad W_i \in S_i ,$$
#
# e.g. "at most 25 of conv2's 50 filters are nonzero". StructADMM (Zhang et al., ECCV 2018; IEEE TNNLS
# 2022) copies each constrained weight into a variable $Z_i$ that carries the constraint, and runs
# **scaled-form ADMM** (Boyd et al., 2011, §3.1.1) on
#
# $$L_\rho(W, Z, U) = f(W) + \sum_i \frac{\rho}{2}\,\|W_i - Z_i + U_i\|_F^2, \qquad Z_i \in S_i ,$$
#
# repeating three steps:
#
# 1. **W-step** — ordinary SGD on $f + \frac{\rho}{2}\|W - Z + U\|_F^2$: the penalty only adds
#    $\rho\,(W - Z + U)$ to the weight's gradient, a spring pulling $W$ towards $Z - U$;
# 2. **Z-step** — every `update_every` steps, $Z = \Pi_S(W + U)$, the Euclidean projection of chapter 1;
# 3. **U-step** — $U \leftarrow U + W - Z$: the scaled dual variable accumulates the disagreement, so a
#    weight that keeps resisting its projection is pulled harder and harder.
#
# It starts from $Z = \Pi_S(W)$, $U = 0$, with the penalty schedule of the authors' later code:
# $\rho_0 = 10^{-3}$, multiplied by 1.3 at every Z/U update, capped at 1. These constants are the
# authors' choice, not derived: a small $\rho_0$ leaves the first W-steps almost plain training, the
# factor 1.3 makes $\rho$ climb from $10^{-3}$ to its cap in $\lceil \ln 1000 / \ln 1.3 \rceil = 27$
# updates (here about a third of the run), and the cap keeps the spring from drowning the loss's
# gradient at the end. Like the authors' code, refimpl keeps $U$ as it is when $\rho$ grows, so the
# unscaled multiplier $\rho U$ jumps ×1.3 at each update; Boyd et al. (§3.4.1) would rescale
# $U \leftarrow U \rho_\text{old}/\rho_\text{new}$ (`rescale_dual=True`). Section 7 runs both. Two
# numbers tell how far the run is (Boyd et al., §3.3):
#
# * the **primal residual** $r = \|W - Z\|_F / \|W\|_F$ — how far the weights still are from the set;
# * the **dual residual** $s = \rho\,\|Z - Z_\text{prev}\|_F$ — how much the projection still moves.
#
# Both small means $W$ and $Z$ agree and the support has settled: time for the **hard prune**
# $W \leftarrow \Pi_S(W)$ and a short **masked retraining**. "Small" has a concrete meaning: as
# $Z \in S$, the hard prune of one constraint removes at most $\|W - Z\|_F^2$, a share $r^2$ of the
# weight's energy, so $r \le 0.05$ bounds the loss of the cut to 0.25 % of $\|W\|_F^2$; and
# $s \le 0.05\,\rho\|W\|_F$ says the last Z-step moved $Z$ by at most 5 % of $\|W\|$
# (`refimpl.prune.admm.residuals_small`, thresholds `PRIMAL_TOL`, `DUAL_TOL`). Convergence results for
# non-convex ADMM exist (e.g. Hong, Luo & Razaviyayn 2016), but they need a constant, large enough
# $\rho$, exactly solved subproblems and a convex or smooth last block; here the W-step is a few
# stochastic gradient steps, $\rho$ changes at every update and the set is non-convex, so none applies
# and the residuals are what one watches (`refimpl/prune/admm.py` has the details).
#
# This chapter follows LeNet-5's `conv2` through the whole pipeline with **two** constraints on the same
# weight — keep half of the filters *and* half of the shapes (GEMM columns) — so it carries two
# $(Z, U)$ pairs, one penalty term each. At the end the pruned network is **compacted** into a smaller
# dense one that computes exactly the same function.

# %% tags=["parameters"]
import json
import os

SMOKE = os.environ.get("REFIMPL_SMOKE") == "1"

PRETRAIN_EPOCHS = 2 if SMOKE else 10  # plain SGD before pruning (lr 0.05: the dense model converges)
ADMM_EPOCHS = 3 if SMOKE else 20  # W-steps with the ADMM penalty (lr 0.02, below the dense lr)
UPDATE_EVERY = 5  # optimizer steps between Z/U updates (20 batches per epoch: 4 updates per epoch)
RETRAIN_EPOCHS = 1 if SMOKE else 5  # masked retraining after the hard prune (lr 0.01: fine-tuning)
FILTER_SPARSITY = 0.5  # share of conv2's 50 filters pruned
SHAPE_SPARSITY = 0.5  # share of conv2's 500 shapes (GEMM columns) pruned
SEED = 0

# %%

import matplotlib.pyplot as plt
import numba
import numpy as np
from threadpoolctl import threadpool_limits

from refimpl.compact import compact
from refimpl.data import load_dataset
from refimpl.metrics import format_report, layer_report
from refimpl.models import lenet5
from refimpl.notebook import cached_results, figure_dir, repo_root, seed_summary
from refimpl.prune.admm import ADMM, DUAL_TOL, PRIMAL_TOL, residuals_small
from refimpl.prune.constraints import Constraint
from refimpl.prune.masking import MaskedRetraining, hard_prune, masks_sparsity
from refimpl.train.optim import SGD
from refimpl.train.trainer import Hook, Trainer, evaluate

# LeNet-5 on 8x8 images is tiny: one thread is faster than BLAS and numba threads fighting over a
# shared machine's cores (numbers are unchanged; only the speed is).
threadpool_limits(1)
numba.set_num_threads(1)


ROOT = repo_root()
FIG_DIR = figure_dir(SMOKE, ROOT)  # a temporary directory in smoke mode: CI never overwrites figures

# %% [markdown]
# ## 1. Data and a pretrained LeNet-5
#
# scikit-learn's $8 \times 8$ handwritten digits (bundled, no download): 1437 training images, 15 % of
# them held out for validation, and 360 test images. LeNet-5 "20-50-500-10" with size-preserving
# $5 \times 5$ convolutions on such small images: $8 \to 8 \to 4 \to 4 \to 2$, so `fc1` reads
# $50 \cdot 2 \cdot 2 = 200$ features. Plain SGD with momentum for a few epochs gives the dense model
# ADMM starts from.

# %%
data = load_dataset("digits", val_fraction=0.15, seed=SEED)
train, val, test = (data.x_train, data.y_train), (data.x_val, data.y_val), (data.x_test, data.y_test)
print(data)

model = lenet5(input_size=8, rng=np.random.default_rng(SEED))
print(model)


def make_trainer(epochs: int, lr: float, hooks=()) -> Trainer:
    """SGD with momentum on the training split, validated every epoch (a fresh optimizer each phase)."""
    optimizer = SGD(model.parameters(), lr=lr, momentum=0.9)
    return Trainer(model, optimizer, train, val_data=val, batch_size=64, epochs=epochs, hooks=hooks,
                   seed=SEED, progress=False)


pretrain = make_trainer(PRETRAIN_EPOCHS, lr=0.05).fit()
dense_test = evaluate(model, *test)["accuracy"]
dense_weights = {name: value.copy() for name, value in model.parameters().items()}  # for section 7
print(f"dense LeNet-5 after {PRETRAIN_EPOCHS} epochs: val acc {pretrain[-1]['val_acc']:.3f}, "
      f"test acc {dense_test:.3f}")

# %% [markdown]
# ## 2. The constraints and the ADMM run
#
# `conv2.weight` has shape $(F, C, K_H, K_W) = (50, 20, 5, 5)$; its GEMM view is $50 \times 500$, one row
# per **filter**, one column per **shape** $(c, k_h, k_w)$. Two constraints on the same weight, each with
# its own $(Z_j, U_j)$ pair and its own penalty term:
#
# $$S_\text{filters} = \{W : \text{at most 25 nonzero rows}\}, \qquad
#   S_\text{shapes} = \{W : \text{at most 250 nonzero columns}\}.$$
#
# The projection onto each set keeps the rows (columns) of largest L2 norm. There is no cheap exact
# projection onto the intersection, so ADMM pulls $W$ towards both $Z$'s and the hard prune later keeps the
# intersection of the two masks.
#
# The Z/U update runs every `UPDATE_EVERY` = 5 optimizer steps (`update_unit="step"`), so one epoch
# gives several points on the curves and the 20 ADMM epochs give 80 updates: enough for $\rho$ to reach
# its cap after 27 updates and to stay there for the rest (with one update per epoch, 20 epochs would
# end before $\rho$ reached the cap). The learning rates (0.05 dense, 0.02 during ADMM, 0.01 for
# retraining) decrease from phase to phase as usual for fine-tuning; they were set by hand for this
# small problem, not tuned. A small recording hook, placed after the ADMM hook, copies $W$ and both
# $Z$'s after every update for the pictures below (it only reads; it changes nothing).

# %%
PARAM = "conv2.weight"
CONSTRAINTS = [
    Constraint(PARAM, "filters", sparsity=FILTER_SPARSITY),
    Constraint(PARAM, "shapes", sparsity=SHAPE_SPARSITY),
]


class Snapshots(Hook):
    """Copies of one weight and of every Z of an :class:`ADMM` hook: at the start and after each update."""

    def __init__(self, admm: ADMM, param: str) -> None:
        self.admm, self.param = admm, param
        self.W: list[np.ndarray] = []
        self.Z: list[list[np.ndarray]] = []

    def _record(self, trainer) -> None:
        self.W.append(trainer.params[self.param].copy())
        self.Z.append([z.copy() for z in self.admm.Z])

    def on_train_begin(self, trainer) -> None:  # after ADMM's: Z = Pi(W), U = 0 already set
        self._record(trainer)

    def after_step(self, trainer) -> None:  # after ADMM's: an update may just have happened
        if self.admm.updates == len(self.W):
            self._record(trainer)


admm = ADMM(CONSTRAINTS, rho=1e-3, rho_growth=1.3, rho_max=1.0, update_every=UPDATE_EVERY, update_unit="step")
snapshots = Snapshots(admm, PARAM)
print(admm)
print(*CONSTRAINTS, sep="\n")

admm_epochs = make_trainer(ADMM_EPOCHS, lr=0.02, hooks=[admm, snapshots]).fit()
print(f"{admm.updates} Z/U updates; rho is now {admm.rho:.3g}; "
      f"val acc at the end of ADMM {admm_epochs[-1]['val_acc']:.3f}")

# %% [markdown]
# ## 3. Reading `admm.history`: residuals, ρ, sparsity of Z, loss and accuracy
#
# One record per Z/U update, with keys `admm.<param>:<structure>.primal`, `.dual`, `.z_sparsity`, the
# $\rho$ the finished W-step was trained with and the loss of the last batch. What to look at:
#
# * **ρ** (top middle) grows geometrically — a straight line on the log scale — until the cap.
# * **Primal residual** (top left) stays near 1 as long as $\rho$ is small, then falls once $\rho$
#   passes about $0.1$: $W$ is being pulled into the sets. Here it falls from 1.0 at update 21 to 0.08
#   at update 51 and then **stalls** near 0.1 to the end (printout): it never reaches the threshold
#   $r \le 0.05$ of "small" (printed under the table). Section 7 shows that the rule for $U$ decides this.
# * **Dual residual** (top right) is $\rho$ times how far $Z$ moved. It *grows* with $\rho$ at first,
#   because $Z$ is jumping around (see below), falls as the jumps die down, and levels off between 0.2
#   and 0.3 from about update 50 on: some filters and shapes keep swapping to the end (section 4).
# * **Sparsity of Z** (bottom left) sits exactly at the target from the first update: $Z$ is a projection,
#   always in the set. All the action is in $W$.
# * **Loss and accuracy** (bottom): the price of the pull. The loss and the validation accuracy (measured
#   at the end of each epoch) suffer most when $\rho$ reaches its cap and the spring suddenly dominates,
#   then recover as the rest of the network adapts to the squeezed layer.
#
# **Why is the primal residual about 1 at first?** While $\rho$ is tiny the W-step ignores the spring
# and $W$ hardly moves. Follow one group $g$ that the first projection dropped: $Z_g = 0$, so the U-step
# stores $U_g = W_g$, and at the next Z-step the projection sees $W_g + U_g = 2W_g$ for it — twice its
# real size — while a kept group $h$ ($Z_h = W_h$, $U_h = 0$) is seen at its real size $W_h$. The
# dropped groups now win, $Z$ swaps to (roughly) the complementary support, and the same arithmetic swaps
# it back at the next update: a **period-2 cycle** in which $Z$ is never close to $W$. The "support
# changes" panel of section 4 shows it. Only a growing $\rho$ breaks the cycle: the spring becomes strong
# enough for $W$ to follow $Z - U$, and the groups that keep losing shrink for good. This is why the
# schedule may start small (training is barely disturbed at first) but must grow.

# %%
history = admm.history
labels = admm.labels()
update = np.array([r["admm.update"] for r in history])


def series(key: str) -> np.ndarray:
    """One column of the update records as an array."""
    return np.array([r[key] for r in history])


# The epoch records carry the validation accuracy; place them at the update count reached by then.
epoch_update = np.array([r["step"] // UPDATE_EVERY for r in admm_epochs])
epoch_val_acc = np.array([r["val_acc"] for r in admm_epochs])

fig, axes = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
for label in labels:
    axes[0, 0].semilogy(update, series(f"admm.{label}.primal"), label=label.split(":")[1])
    axes[0, 2].semilogy(update, series(f"admm.{label}.dual"), label=label.split(":")[1])
    axes[1, 0].plot(update, series(f"admm.{label}.z_sparsity"), label=label.split(":")[1])
axes[0, 0].set_title(r"primal residual $\|W - Z\|_F / \|W\|_F$")
axes[0, 2].set_title(r"dual residual $\rho\,\|Z - Z_{prev}\|_F$")
axes[0, 1].semilogy(update, series("admm.rho"), color="k")
axes[0, 1].set_title(r"penalty $\rho$ ($\times 1.3$ per update, capped at 1)")
axes[1, 0].set_ylim(0, 1)
axes[1, 0].set_title("sparsity of Z (share of zero entries)")
axes[1, 1].plot(update, series("batch_loss"), color="tab:red")
axes[1, 1].set_title("training loss f(W) of the last batch")
axes[1, 2].plot(epoch_update, epoch_val_acc, "o-", color="tab:green", label="ADMM (end of epoch)")
axes[1, 2].axhline(pretrain[-1]["val_acc"], color="grey", ls="--", label="dense model")
axes[1, 2].set_title("validation accuracy")
for ax in axes.flat:
    ax.set_xlabel("Z/U update")
    ax.grid(alpha=0.3)
for ax in (axes[0, 0], axes[0, 2], axes[1, 0], axes[1, 2]):
    ax.legend(fontsize=8)
fig.suptitle(f"ADMM on conv2 (filters {FILTER_SPARSITY:.0%} and shapes {SHAPE_SPARSITY:.0%} pruned), "
             f"update every {UPDATE_EVERY} steps")
fig.savefig(FIG_DIR / "02_admm_history.png", dpi=120)
plt.show()

for r in history[:: max(1, len(history) // 8)] + history[-1:]:
    print(f"update {r['admm.update']:3d}  rho {r['admm.rho']:.2e}  "
          + "  ".join(f"{lab.split(':')[1]}: primal {r[f'admm.{lab}.primal']:.3e} "
                      f"dual {r[f'admm.{lab}.dual']:.3e}" for lab in labels))

# When are both residuals small (PRIMAL_TOL, DUAL_TOL)? snapshots.W[k] is W after update k.
for lab in labels:
    small = [residuals_small(r[f"admm.{lab}.primal"], r[f"admm.{lab}.dual"], r["admm.rho"],
                             np.linalg.norm(snapshots.W[k])) for k, r in enumerate(history, start=1)]
    first = next((k for k, ok in enumerate(small, start=1) if ok), None)
    print(f"{lab.split(':')[1]:8s} residuals small (r <= {PRIMAL_TOL}, s <= {DUAL_TOL} rho ||W||): "
          + (f"first at update {first}, at {sum(small)} of {len(small)} updates" if first else
             f"at none of the {len(small)} updates"))

# %% [markdown]
# ## 4. How W is pulled into the set
#
# The GEMM view $|W|$ of conv2 ($50$ filters $\times$ $500$ shapes) next to the two $Z$'s at four
# moments. $Z_\text{filters}$ is zero on whole **rows**, $Z_\text{shapes}$ on whole **columns**. Each row
# of panels has its own colour scale: the whole layer shrinks during ADMM, and what matters here is the
# pattern.
#
# * **Start**: $W$ is dense; the $Z$'s are masked copies of it.
# * **Update 2**, inside the period-2 cycle: $W$ has hardly changed, but each $Z$ keeps (roughly) the rows
#   or columns it dropped at the start — the complement of the first row. (Update 1 projects $W + 0$ and
#   repeats the start; update 3 swaps back to it; the printout under the figure counts, for the first
#   updates, how many filters of $Z_\text{filters}$ are kept as at the start.)
# * **Middle** and **end**: $W$ itself now shows the row-and-column pattern. The penalty has driven the
#   dropped filters and shapes towards zero *during training*, while the rest of the network adapted,
#   and $W$ and the $Z$'s look alike.

# %%
last = len(snapshots.W) - 1
moments = {"start": 0, "cycle": min(2, last), "middle": last // 2, "end": last}
F = snapshots.W[0].shape[0]

fig, axes = plt.subplots(len(moments), 3, figsize=(13, 10.5), constrained_layout=True)
for row, (moment, k) in enumerate(moments.items()):
    panels = [("|W|", snapshots.W[k])] + [(f"|Z {lab.split(':')[1]}|", z)
                                          for lab, z in zip(labels, snapshots.Z[k], strict=True)]
    vmax = np.percentile(np.abs(snapshots.W[k]), 99)  # one scale per moment, shared by W and the Z's
    for ax, (title, array) in zip(axes[row], panels, strict=True):
        image = ax.imshow(np.abs(array.reshape(F, -1)), cmap="magma", vmin=0, vmax=vmax, aspect="auto",
                          interpolation="nearest")
        ax.set_title(f"{title}, {moment} (update {k})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[row, 0].set_ylabel("filters")
    fig.colorbar(image, ax=axes[row], shrink=0.9, label="|weight|")
for ax in axes[-1]:
    ax.set_xlabel("shapes (c, kh, kw)")
fig.savefig(FIG_DIR / "02_admm_heatmaps.png", dpi=120)
plt.show()

start_rows = np.any(snapshots.Z[0][0].reshape(F, -1) != 0, axis=1)
same = [int(np.sum(np.any(z[0].reshape(F, -1) != 0, axis=1) == start_rows)) for z in snapshots.Z[1:6]]
print(f"filters of Z_filters kept or dropped as at the start, updates 1-{len(same)}: {same} (of {F})")

# %% [markdown]
# Three measures of the same pull, after every update:
#
# * the distance of $W$ to each set, $\|W - \Pi_j(W)\|_F / \|W\|_F$, and to what the hard prune would
#   produce now (`hard_prune` on a copy: $W$ times the intersection of both masks) — the share of the
#   weight's norm that pruning at that moment would throw away;
# * how many filters (rows of $Z_\text{filters}$) and shapes (columns of $Z_\text{shapes}$) entered or
#   left the support of $Z$ since the previous update: close to *all* of them during the period-2 cycle,
#   then fewer — but, in this run, not zero (the printout gives the counts of the last updates). The
#   filters that keep swapping are ones $W$ has already made tiny, where the cycle lives on in $U$. That
#   is why the dual residual, which weighs each change by its size, is the convergence measure and not
#   the count: swapping two near-zero filters changes $Z$ little, and the hard prune loses little by
#   dropping either;
# * the filter norms $\|W_f\|_2$ at the start and at the end of ADMM (log scale), the end split into the
#   filters the hard prune will keep and those it will drop: the dropped ones have collapsed towards 0.
#   The kept filters end much smaller than they started too (the medians are printed): the whole layer
#   shrinks during ADMM, not only the groups the constraints drop.

# %%
def distance_to_sets(W: np.ndarray) -> dict[str, float]:
    """Relative distance of W to each constraint's projection and to the hard-pruned W."""
    norm = np.linalg.norm(W)
    out = {lab.split(":")[1]: np.linalg.norm(W - c.project(W)) / norm
           for lab, c in zip(labels, CONSTRAINTS, strict=True)}
    pruned = {PARAM: W.copy()}
    hard_prune(pruned, CONSTRAINTS)
    out["hard prune (both)"] = np.linalg.norm(W - pruned[PARAM]) / norm
    return out


def support(Z: np.ndarray, axis: int) -> np.ndarray:
    """Nonzero rows (axis=1: filters) or columns (axis=0: shapes) of the GEMM view of Z."""
    return np.any(Z.reshape(F, -1) != 0, axis=axis)


distances = [distance_to_sets(W) for W in snapshots.W]
changes = {
    lab.split(":")[1]: [int(np.count_nonzero(support(before[j], axis) != support(after[j], axis)))
                        for before, after in zip(snapshots.Z[:-1], snapshots.Z[1:], strict=True)]
    for j, (lab, axis) in enumerate(zip(labels, (1, 0), strict=True))
}
final_mask = hard_prune({PARAM: snapshots.W[-1].copy()}, CONSTRAINTS)[PARAM]
kept_filters = final_mask.reshape(F, -1).any(axis=1)
norms_start = np.linalg.norm(snapshots.W[0].reshape(F, -1), axis=1)
norms_end = np.linalg.norm(snapshots.W[-1].reshape(F, -1), axis=1)

fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.5), constrained_layout=True)
for key in distances[0]:
    ax1.semilogy(np.arange(len(distances)), [d[key] for d in distances], label=key)
ax1.set_xlabel("Z/U update")
ax1.set_title(r"distance to the set $\|W - \Pi(W)\|_F / \|W\|_F$")
for (key, counts), n in zip(changes.items(), (F, final_mask.reshape(F, -1).shape[1]), strict=True):
    ax2.plot(np.arange(1, len(counts) + 1), np.array(counts) / n, label=f"{key} (of {n})")
ax2.set_xlabel("Z/U update")
ax2.set_ylim(0, 1.05)
ax2.set_title("share of groups entering or leaving Z's support")
bins = np.geomspace(min(norms_start.min(), norms_end.min()) / 1.5, 1.5 * max(norms_start.max(),
                    norms_end.max()), 40)
ax3.hist(norms_start, bins=bins, alpha=0.5, label="start, all filters")
ax3.hist(norms_end[kept_filters], bins=bins, alpha=0.7, label="end, kept by the hard prune")
ax3.hist(norms_end[~kept_filters], bins=bins, alpha=0.7, label="end, dropped by the hard prune")
ax3.set_xscale("log")
ax3.set_xlabel(r"filter norm $\|W_f\|_2$")
ax3.set_ylabel("filters")
ax3.set_title("conv2 filter norms")
for ax in (ax1, ax2, ax3):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.savefig(FIG_DIR / "02_admm_pull.png", dpi=120)
plt.show()

for key in distances[0]:
    print(f"distance to {key:18s}: start {distances[0][key]:.3e}  end {distances[-1][key]:.3e}")
for key, counts in changes.items():
    print(f"{key:8s} entering/leaving Z's support: first updates {counts[:4]}, last updates {counts[-4:]}")
print(f"filter norms at the end: kept {np.median(norms_end[kept_filters]):.3g} (median), "
      f"dropped {np.median(norms_end[~kept_filters]):.3g} (median, was {np.median(norms_start):.3g})")

# %% [markdown]
# ## 5. Hard prune and masked retraining
#
# The hard prune projects **W itself** (not Z): each constraint gives a keep mask computed from the same
# $W$, and $W$ is multiplied by their intersection — a heuristic for the intersection of the sets, and the
# result lies in both. The masks are then frozen: `MaskedRetraining` zeroes the pruned weights' gradients
# and, after each optimizer step, the weights and their momentum buffers, so no pruned weight revives.

# %%
acc_admm = evaluate(model, *test)["accuracy"]
masks = hard_prune(model, CONSTRAINTS)
acc_hard = evaluate(model, *test)["accuracy"]
kept = masks[PARAM].reshape(F, -1)
print(f"conv2 after the hard prune: {int(kept.any(axis=1).sum())}/{F} filters, "
      f"{int(kept.any(axis=0).sum())}/{kept.shape[1]} shapes, sparsity {masks_sparsity(masks):.3f}")

retrain = make_trainer(RETRAIN_EPOCHS, lr=0.01, hooks=[MaskedRetraining(masks)]).fit()
acc_retrained = evaluate(model, *test)["accuracy"]
assert not np.any(model.parameters()[PARAM][~masks[PARAM]]), "a pruned weight revived"

print(f"test accuracy  dense {dense_test:.3f} | end of ADMM {acc_admm:.3f} | "
      f"hard pruned {acc_hard:.3f} | after {RETRAIN_EPOCHS} epochs of masked retraining {acc_retrained:.3f}")

# %% [markdown]
# ## 6. Compaction: a smaller dense network with the same outputs
#
# The masked model still stores conv2 as a $50 \times 20 \times 5 \times 5$ array full of zeros.
# `refimpl.compact.compact` performs the lossless **unused-path removal** (Ma et al.): a pruned filter of
# conv2 outputs only the constant $\mathrm{ReLU}(b_f)$, which `fc1` can absorb into its own bias, so the
# filter and the $2 \times 2 = 4$ columns of `fc1` that read it go; an input channel of conv2 that every
# kept filter ignores (all its $25$ shapes pruned) would make the matching conv1 filter useless, so it
# would go too (the report shows whether any did: the shape constraint need not empty a whole channel).
# Pruned shapes inside the kept filters stay as zeros of a smaller dense array (removing them needs a
# sparse or "compact GEMM" kernel, section 5 of `docs/ALGORITHMS.md`).

# %%
model.eval()
small, report = compact(model, masks)
print("masked model:\n", model, "\n\ncompact model:\n", small, sep="")
print()
print(report)
for layer in report.layers:
    if len(layer.folded_channels):
        print(f"{layer.name}: the constants of {len(layer.folded_channels)} removed input channels were "
              "folded into its bias")

# %% [markdown]
# Per layer (shapes, kept filters / channels / shapes, parameters, nonzero parameters, dense and effective
# multiply-accumulates per image): first the masked model measured against its own dense arrays, then the
# compact model measured against the dense original.

# %%
rows_masked = layer_report(model, masks)
rows_small = layer_report(small, reference=model)
print("masked model\n" + format_report(rows_masked))
print("\ncompact model\n" + format_report(rows_small))

# %% [markdown]
# The test that matters: on the test images the compact model computes the same logits as the masked one,
# up to float32 rounding (the folded constants change the order of a few additions).

# %%
small.eval()
logits_masked = model.forward(data.x_test)
logits_small = small.forward(data.x_test)
max_diff = float(np.max(np.abs(logits_masked - logits_small)))
print(f"max |logits(masked) - logits(compact)| over {len(data.y_test)} test images: {max_diff:.2e} "
      f"(logits up to {np.max(np.abs(logits_masked)):.1f})")
assert np.allclose(logits_small, logits_masked, rtol=1e-5, atol=1e-5 * np.max(np.abs(logits_masked)))
print(f"test accuracy: masked {evaluate(model, *test)['accuracy']:.3f}, "
      f"compact {evaluate(small, *test)['accuracy']:.3f}")

# %%
names = [r["name"] for r in rows_masked]
x = np.arange(len(names))
fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
ax.bar(x - 0.27, [r["params_before"] for r in rows_masked], 0.27, label="dense (before)")
ax.bar(x, [r["params"] for r in rows_small], 0.27, label="compact (dense arrays)")
ax.bar(x + 0.27, [r["nonzero"] for r in rows_small], 0.27, label="compact, nonzero")
ax.set_xticks(x, names)
ax.set_yscale("log")
ax.set_ylabel("parameters")
ax.set_title(f"Parameters per layer: {report.params_before} -> {report.params_after} "
             f"({report.ratio:.2f}x smaller)")
ax.grid(alpha=0.3, axis="y")
ax.legend(fontsize=8)
fig.savefig(FIG_DIR / "02_compaction_params.png", dpi=120)
plt.show()

# %% [markdown]
# ## 7. Two controls: Boyd's dual rescaling, and magnitude pruning with the same budget
#
# Two questions the run above cannot answer on its own. Does the rule for $U$ when $\rho$ grows matter?
# And does ADMM beat the simplest alternative given the same training? Runs from the same dense weights,
# with the same constraints and the same number of epochs after the dense model
# (`ADMM_EPOCHS + RETRAIN_EPOCHS`):
#
# * ADMM as above, $U$ kept when $\rho$ grows (the authors' rule; its numbers are section 5's);
# * ADMM with `rescale_dual=True`, $U \leftarrow U \rho_\text{old}/\rho_\text{new}$ (Boyd §3.4.1);
# * **magnitude pruning**: the hard prune of the dense weights right away, then masked retraining for all
#   of the epochs (learning rate 0.01, as in the retraining above).
#
# One seed and 360 test images (one image is 0.28 %), so differences of a few images are noise; notebook
# 4 makes the comparison at scale, with each method's hyperparameter chosen on a validation split.

# %%
def restore_dense() -> None:
    """Put the dense weights of section 1 back into the model (in place)."""
    for name, value in dense_weights.items():
        model.parameters()[name][...] = value


class WeightNorms(Hook):
    """Records ||W|| of one weight after every update of an ADMM hook (for `residuals_small`)."""

    def __init__(self, admm: ADMM, param: str) -> None:
        self.admm, self.param, self.norms = admm, param, []

    def after_step(self, trainer) -> None:  # after ADMM's: an update may just have happened
        if self.admm.updates > len(self.norms):
            self.norms.append(float(np.linalg.norm(trainer.params[self.param])))


def first_small(records, norms) -> str:
    """The first update at which both residuals of every constraint are small, as text."""
    ok = [all(residuals_small(r[f"admm.{lab}.primal"], r[f"admm.{lab}.dual"], r["admm.rho"], norm)
              for lab in labels) for r, norm in zip(records, norms, strict=True)]
    return f"update {ok.index(True) + 1} (small at {sum(ok)} of {len(ok)})" if any(ok) else "never"


def admm_then_retrain(rescale_dual: bool):
    """ADMM, hard prune and masked retraining from the dense weights; history, ||W||s and accuracies."""
    restore_dense()
    hook = ADMM(CONSTRAINTS, rho=1e-3, rho_growth=1.3, rho_max=1.0, update_every=UPDATE_EVERY,
                update_unit="step", rescale_dual=rescale_dual)
    norms = WeightNorms(hook, PARAM)
    make_trainer(ADMM_EPOCHS, lr=0.02, hooks=[hook, norms]).fit()
    end = evaluate(model, *test)["accuracy"]
    run_masks = hard_prune(model, CONSTRAINTS)
    cut = evaluate(model, *test)["accuracy"]
    make_trainer(RETRAIN_EPOCHS, lr=0.01, hooks=[MaskedRetraining(run_masks)]).fit()
    return hook.history, norms.norms, {"end": end, "cut": cut, "final": evaluate(model, *test)["accuracy"]}


runs = {"ADMM, U kept (authors)": (history, [float(np.linalg.norm(w)) for w in snapshots.W[1:]],
                                   {"end": acc_admm, "cut": acc_hard, "final": acc_retrained})}
runs["ADMM, U rescaled (Boyd)"] = admm_then_retrain(rescale_dual=True)

restore_dense()
magnitude_masks = hard_prune(model, CONSTRAINTS)
magnitude_cut = evaluate(model, *test)["accuracy"]
make_trainer(ADMM_EPOCHS + RETRAIN_EPOCHS, lr=0.01, hooks=[MaskedRetraining(magnitude_masks)]).fit()
magnitude_final = evaluate(model, *test)["accuracy"]

print(f"test accuracy, dense {dense_test:.3f}; {ADMM_EPOCHS + RETRAIN_EPOCHS} epochs after the dense model")
print(f"{'':26s} {'end of ADMM':>11s} {'after the cut':>13s} {'after retraining':>16s}")
for name, (_, _, acc) in runs.items():
    print(f"{name:26s} {acc['end']:11.3f} {acc['cut']:13.3f} {acc['final']:16.3f}")
print(f"{'magnitude pruning':26s} {'-':>11s} {magnitude_cut:13.3f} {magnitude_final:16.3f}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
for (name, (records, norms, _)), style in zip(runs.items(), ("-", "--"), strict=True):
    steps = [r["admm.update"] for r in records]
    for lab in labels:
        short = lab.split(":")[1]
        axes[0].semilogy(steps, [r[f"admm.{lab}.primal"] for r in records], style, label=f"{name}, {short}")
        axes[1].semilogy(steps, [r[f"admm.{lab}.dual"] for r in records], style, label=f"{name}, {short}")
    last = records[-1]
    print(f"{name}: last update primal " + ", ".join(f"{lab.split(':')[1]} {last[f'admm.{lab}.primal']:.3f}"
                                                     for lab in labels)
          + "; dual " + ", ".join(f"{lab.split(':')[1]} {last[f'admm.{lab}.dual']:.3f}" for lab in labels)
          + f"; residuals small: {first_small(records, norms)}")
axes[0].axhline(PRIMAL_TOL, color="grey", lw=0.8)
axes[0].set_title(r"primal residual $\|W - Z\|_F / \|W\|_F$ (grey: PRIMAL_TOL)")
axes[1].set_title(r"dual residual $\rho\,\|Z - Z_{prev}\|_F$")
for ax in axes:
    ax.set_xlabel("Z/U update")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
fig.savefig(FIG_DIR / "02_admm_controls.png", dpi=120)
plt.show()

# %% [markdown]
# What the controls show, in this run (printout above; section 8 repeats them over three seeds, and the
# first point does not survive that):
#
# * **In this run the rule for $U$ decides the residuals.** With $U$ kept as $\rho$ grows (the authors'
#   rule) the primal residual stalls near 0.1 and the residuals are never small by the thresholds of
#   section 3; with $U$ rescaled (Boyd) it keeps falling, to 0.028 at the last update, and both
#   residuals are small from update 70. Keeping $U$ while $\rho$ grows makes the multiplier $\rho U$ jump
#   ×1.3 at each of the first 27 updates, so the pull of past disagreements is stronger than ADMM's
#   theory intends.
# * **Accuracy does not follow the residuals here.** The authors' rule ends at 0.981 test accuracy, the
#   rescaled one at 0.972: 3 of 360 test images, with one seed — noise-level. refimpl's default stays the
#   authors' rule (`rescale_dual=False`): it is what their published numbers were produced with, and
#   this run gives no evidence to change it; `[admm] rescale_dual = true` selects Boyd's.
# * **Magnitude pruning with the same budget** loses more at the cut (0.964 against the dense 0.981) and
#   ends at 0.975 after 25 epochs of masked retraining: 2 test images behind ADMM. On $8 \times 8$ digits
#   LeNet-5 has capacity to spare, so even the dense model survives the cut; notebook 4 makes the
#   comparison on Fashion-MNIST, with seeds and validation-chosen hyperparameters.

# %% [markdown]
# ## 8. Three seeds: the ρ schedule swept, and the controls repeated
#
# Section 7 is one trajectory per method. The experiment engine reran this notebook's setting
# (`paper_repro/configs/course_admm_digits.toml`: the same data split, constraints, epochs and learning
# rates; `tests/test_course_sweeps.py` checks that they match the constants above) over three seeds, in
# two sweeps whose results are committed, so this section only reads them:
#
# * `paper_repro/sweeps/course/rho_schedule.toml`: $\rho_0 \in \{10^{-4}, 10^{-3}, 10^{-2}\}$ times a
#   growth per update of 1 (constant $\rho$), 1.1, 1.3 or 1.5, each growing schedule with $U$ kept
#   (the authors' rule) and rescaled (Boyd), cap 1;
# * `paper_repro/sweeps/course/magnitude_control.toml`: section 7's three methods.
#
# Each run trains its own dense model from its seed, so the seeds differ in everything (initial weights,
# batch order). The residuals are those of the last Z/U update, read from each run's ADMM log.

# %%
def end_residuals(sweep: str, run: str) -> tuple[float, float]:
    """Largest primal and dual residual over the constraints at the last Z/U update of a run."""
    log = ROOT / "paper_repro" / "results" / "course" / sweep / "runs" / run / "admm" / "log.jsonl"
    last = [json.loads(line) for line in log.read_text().splitlines() if "admm.primal_max" in line][-1]
    return last["admm.primal_max"], last["admm.dual_max"]


def growth_of(variant: str) -> float:
    """1.0 for 'constant', else the factor in the variant's name ('g1.3-kept' -> 1.3)."""
    return 1.0 if variant == "constant" else float(variant.split("-")[0][1:])


rho_rows = cached_results("course/rho_schedule")
control_rows = cached_results("course/magnitude_control")
if rho_rows is None or control_rows is None:
    print("the course sweeps have not been run yet: see paper_repro/sweeps/course/")
else:
    for row in rho_rows:
        row["primal_end"], row["dual_end"] = end_residuals("rho_schedule", row["run"])
    keys = ["variant", "admm.rho"]
    columns = {value: {(r["variant"], r["admm.rho"]): r for r in seed_summary(rho_rows, keys, value)}
               for value in ("primal_end", "dual_end", "accuracy.after_hard_prune", "accuracy.final")}
    print("rho schedule, 3 seeds each: mean (min-max) at the last update; test accuracy mean ± std")
    print(f"{'schedule':15s} {'rho_0':>6s} {'primal':>20s} {'dual':>20s} {'after the cut':>15s} "
          f"{'after retraining':>17s}")
    for group, primal in columns["primal_end"].items():
        dual, cut = columns["dual_end"][group], columns["accuracy.after_hard_prune"][group]
        final = columns["accuracy.final"][group]
        print(f"{group[0]:15s} {group[1]:6.0e} {primal['mean']:7.3f} "
              f"({primal['min']:.3f}-{primal['max']:.3f}) {dual['mean']:7.3f} "
              f"({dual['min']:.3f}-{dual['max']:.3f}) {cut['mean']:7.3f} ± {cut['std']:.3f}"
              f" {final['mean']:9.3f} ± {final['std']:.3f}")

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), constrained_layout=True)
    for rho0, color in zip((1e-4, 1e-3, 1e-2), ("tab:blue", "tab:orange", "tab:green"), strict=True):
        for rule, style in (("kept", "-o"), ("rescaled", "--s")):
            variants = ["constant"] + [f"g{g}-{rule}" for g in (1.1, 1.3, 1.5)]
            x = [growth_of(v) for v in variants]
            for ax, value in zip(axes, ("primal_end", "accuracy.final"), strict=True):
                ax.plot(x, [columns[value][(v, rho0)]["mean"] for v in variants], style, color=color,
                        label=rf"$\rho_0$ = {rho0:g}, U {rule}")
    axes[0].set_yscale("log")
    axes[0].axhline(PRIMAL_TOL, color="grey", lw=0.8)
    axes[0].set_title("primal residual at the last update (mean of 3 seeds; grey: PRIMAL_TOL)")
    axes[1].set_title("test accuracy after retraining (mean of 3 seeds)")
    for ax in axes:
        ax.set_xlabel(r"growth of $\rho$ per Z/U update")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.savefig(FIG_DIR / "02_rho_schedule.png", dpi=120)
    plt.show()

    print("\nsection 7's controls, 3 seeds: test accuracy mean ± std (min-max)")
    for value in ("accuracy.dense", "accuracy.after_hard_prune", "accuracy.final"):
        for r in seed_summary(control_rows, ["variant"], value):
            print(f"{value:26s} {r['variant']:14s} {r['mean']:.3f} ± {r['std']:.3f} "
                  f"({r['min']:.3f}-{r['max']:.3f})")
    for run in ("admm-kept", "admm-rescaled"):
        ends = [end_residuals("magnitude_control", f"{run}-s{seed}")[0] for seed in range(3)]
        print(f"{run}: primal residual at the last update, seeds 0-2: "
              + ", ".join(f"{e:.3f}" for e in ends))

# %% [markdown]
# What three seeds say (printout above):
#
# * **$\rho$ must grow.** With a constant $\rho$ the primal residual ends at 0.969, 0.965 and 0.896 (for
#   $\rho_0 = 10^{-4}, 10^{-3}, 10^{-2}$): $W$ never comes near the set, and the cut costs more
#   (0.963, 0.962, 0.962 right after it, against 0.972–0.978 with growth 1.3 or 1.5). Growth 1.1 from
#   $10^{-4}$ is too slow as well (0.743 kept, 0.648 rescaled); with 1.3 or 1.5 every $\rho_0$ ends
#   within 0.016–0.078.
# * **The rule for $U$ does not decide the residuals after all.** At this notebook's schedule
#   ($10^{-3}$, ×1.3) both rules end at 0.037 (means of three seeds;
#   0.025–0.043 and 0.026–0.044). Section 7's run, 0.114 against 0.028, is one trajectory: the three
#   engine runs of the kept rule all end far below it. The claim of section 7 holds for that run only.
# * **Accuracy after retraining does not depend on the schedule**: every one of the 21 schedules ends
#   between 0.971 and 0.978, with seed-to-seed standard deviations of 0.003–0.008 (one to three of the
#   360 test images), so no schedule is distinguishable from another here.
# * **The control, repeated.** Right after the cut ADMM keeps more (0.974 kept, 0.975 rescaled) than
#   magnitude pruning (0.956 ± 0.015); after the same 25 epochs magnitude pruning ends at 0.979 ± 0.004,
#   level with ADMM (0.976 ± 0.004 kept, 0.976 ± 0.003 rescaled). Section 7's "2 test images behind ADMM"
#   was one seed: on this easy problem ADMM's head start at the cut is real and its advantage at the end
#   is not.

# %% [markdown]
# ## What to take away
#
# * ADMM does not prune; it **moves** the weights towards the set while training, so that the cut at the
#   end costs little: here the test accuracy is the same before and after the hard prune (section 5).
#   The primal residual and the distance to the set measure that movement; the dual residual says when
#   the choice of filters and shapes has settled — with explicit thresholds, `residuals_small`.
# * The growing $\rho$ is what ends the period-2 cycle: early, a weak spring barely disturbs training
#   (and $Z$ only cycles); late, a strong spring makes $W$ follow $Z - U$ and turns the choice into a
#   decision. With growth 1.3 or 1.5 the primal residual ends small under either rule for $U$; with a
#   constant $\rho$ it never falls (section 8, three seeds; section 7's single run had the kept
#   rule stalling, which the seeds did not repeat).
# * "The cut costs little" is not "ADMM beats magnitude pruning": with the same 25 epochs, magnitude
#   pruning ends level with ADMM on this easy problem (section 8, three seeds), where even the cut of
#   the dense model loses little. Notebook 4 compares the methods on Fashion-MNIST.
# * Structured sparsity pays off after **compaction**: dropped filters shrink conv2 *and* fc1 into smaller
#   dense layers that run with ordinary dense kernels and give the same outputs.
