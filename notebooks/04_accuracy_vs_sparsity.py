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
# # 4. Accuracy against sparsity — and against the retraining budget
#
# * **Objectives.** Compare pruning methods (ADMM, SSL group lasso, magnitude pruning) fairly: at equal
#   training budget, with each method's hyperparameter chosen on a validation split; read accuracy
#   right after the cut, after retraining, against the budget and against sparsity, with the spread
#   over seeds.
# * **Prerequisites.** [2. ADMM step by step](02_admm_step_by_step.ipynb); training, validation and test
#   splits; the words *hard prune*, *masked retraining*, *budget* (`docs/GLOSSARY.md`).
# * **Runtime.** Seconds on a 2-core laptop: it reads the results table and trains nothing. The sweeps
#   that fill the table (`paper_repro/sweeps/curves/`) take minutes per run, tens of runs each; their
#   budgets are in `paper_repro/README.md`.
# * **Reading order.** Last of the main chapters, after notebook 3 (see `docs/COURSE.md`).
#
# StructADMM's claim is that training *towards* the sparsity set with ADMM before the hard cut loses less
# accuracy than cutting a trained network by magnitude and retraining it (Zhang et al., ECCV 2018 / TNNLS
# 2022), and that the structured sets (filters, channels, shapes) keep most of the accuracy while making
# the network physically smaller. SSL group lasso (Wen et al., NeurIPS 2016) is the structured baseline
# the papers compare against.
#
# A claim like "method A is better" only means something **at equal cost**. Every run here starts from
# the same dense LeNet-5 on Fashion-MNIST (`paper_repro/configs/curves_dense.toml`) and then spends the
# same **8 epochs**: ADMM 4 + retraining 4, SSL group lasso 4 + retraining 4, or magnitude pruning's 8
# epochs of retraining. Each method's one hyperparameter (ADMM's $\rho_0$, SSL's $\lambda$, magnitude's
# retraining learning rate) is chosen from three candidates on a **validation split** of 6,000 training
# images that the dense model never saw — the test set is only looked at after the choice.
#
# Two questions, two axes:
#
# 1. **How much accuracy is left after the cut, and after retraining?** (accuracy against sparsity)
# 2. **How much does ADMM's head start buy?** Retraining uses a constant learning rate and the test
#    accuracy is logged after every epoch, so one run gives the whole accuracy-against-budget curve: the
#    accuracy after $j$ epochs of retraining is exactly what a $j$-epoch budget would give.
#
# Everything below reads the results table (`refimpl.engine.load_results`) of the sweeps in
# `paper_repro/sweeps/curves/`; the notebook trains nothing.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("REFIMPL_SMOKE") == "1"

# %%
import json

import matplotlib.pyplot as plt
import numpy as np

from refimpl.engine import load_results
from refimpl.notebook import figure_dir, repo_root

ROOT = repo_root()
FIG_DIR = figure_dir(SMOKE, ROOT)  # a temporary directory in smoke mode: CI never overwrites figures
RESULTS = ROOT / "paper_repro" / "results" / "curves"
STRUCTURES = ("unstructured", "filters", "channels", "shapes", "filters_shapes")
COLORS = {"admm": "tab:blue", "magnitude": "tab:orange", "ssl": "tab:green"}


def rows_of(name):
    """The finished runs of one sweep directory under paper_repro/results/curves (empty if absent)."""
    path = RESULTS / name
    if not path.is_dir():
        return []
    return [r for r in load_results(path) if r["status"] == "finished"]


dense = json.loads((ROOT / "paper_repro" / "results" / "curves_dense" / "report.json").read_text())
print(f"dense LeNet-5: test {dense['accuracy']['dense']:.4f} on {dense['n_train']:,} training images "
      f"(validation {dense['phases'][0]['val_acc_curve'][-1]:.4f})")

# %% [markdown]
# ## 1. The choice of hyperparameters, on validation
#
# Each structure prunes the two large layers, `conv2` (25,000 weights) and `fc1` (400,000), at one level
# (95 % for unstructured, 70 % for the structured sets), seed 0. Three candidates per method; the winner
# has the highest validation accuracy after its last epoch.

# %%
selection = {}
for structure in STRUCTURES:
    rows = rows_of(f"select_{structure}")
    if not rows:
        continue
    print(f"{structure}:")
    for method in ("admm", "ssl", "magnitude"):
        cands = [r for r in rows if r["method"] == method]
        if not cands:
            continue
        best = max(cands, key=lambda r: r["accuracy.val_final"])  # first of equals: sweep order
        selection[(structure, method)] = best
        for r in cands:
            mark = "  <- chosen" if r is best else ""
            print(f"  {r['variant']:<18} val {r['accuracy.val_final']:.4f}   after the cut "
                  f"{r['accuracy.after_hard_prune']:.4f}   final test {r['accuracy.final']:.4f}{mark}")

# %% [markdown]
# ## 2. Right after the cut, and after retraining
#
# The accuracy **right after the hard cut** is where ADMM's training towards the set shows: its weights
# already lie close to the set, so the cut removes little. Magnitude pruning cuts a dense network and
# loses much more at that moment. The question is what is left of the difference after retraining.

# %%
if selection:
    structures = [s for s in STRUCTURES if any((s, m) in selection for m in COLORS)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    width = 0.8 / len(COLORS)
    for ax, column, title in ((axes[0], "accuracy.after_hard_prune", "right after the hard cut"),
                              (axes[1], "accuracy.final", "after the 8-epoch budget")):
        for k, method in enumerate(COLORS):
            xs = [i + (k - 1) * width for i, s in enumerate(structures) if (s, method) in selection]
            ys = [selection[(s, method)][column] for s in structures if (s, method) in selection]
            bars = ax.bar(xs, ys, width=width, color=COLORS[method], label=method)
            ax.bar_label(bars, labels=[f"{y:.3f}" for y in ys], fontsize=6, rotation=90, padding=2)
        ax.axhline(dense["accuracy"]["dense"], color="k", lw=0.8, ls=":", label="dense")
        ax.set_xticks(range(len(structures)), [s.replace("_", "+") for s in structures], fontsize=8)
        ax.set_title(title)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("test accuracy (chosen candidate)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle("LeNet-5, Fashion-MNIST, conv2 + fc1 at the selection level (seed 0)", fontsize=10)
    fig.tight_layout()
    fig.savefig(FIG_DIR / "04_cut_and_final.png", dpi=120)
    plt.show()

# %% [markdown]
# ## 3. Accuracy against the budget
#
# The same runs, read along the retraining: the test accuracy of the *pruned* network against the
# epochs spent after the dense model (`refimpl.engine.results.budget_curve`). A magnitude curve starts at
# epoch 0, right after its cut; an ADMM or SSL curve starts at epoch 4, after the 4 epochs that trained
# towards the set. Where the curves meet, ADMM's head start has been bought back by plain retraining.

# %%
if selection:
    shown = [s for s in STRUCTURES if any((s, m) in selection for m in COLORS)]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.2), sharey=True, squeeze=False)
    for ax, structure in zip(axes[0], shown, strict=True):
        for method, color in COLORS.items():
            row = selection.get((structure, method))
            if row and row["budget_curve"]:
                e, acc = np.array(row["budget_curve"]).T
                ax.plot(e, acc, "o-", ms=3, color=color, label=method)
        ax.axhline(dense["accuracy"]["dense"], color="k", lw=0.8, ls=":")
        ax.set_title(structure.replace("_", " + "), fontsize=9)
        ax.set_xlabel("epochs after the dense model")
        ax.set_ylim(0.4, 0.95)
    axes[0][0].set_ylabel("test accuracy of the pruned network")
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(FIG_DIR / "04_budget_curves.png", dpi=120)
    plt.show()
    for (structure, method), row in selection.items():
        curve = row["budget_curve"] or []
        if curve:
            first, one = curve[0], curve[1] if len(curve) > 1 else curve[0]
            print(f"{structure:>15} {method:<9} cut at epoch {first[0]}: {first[1]:.4f}; one epoch later "
                  f"{one[1]:.4f}; at the end {curve[-1][1]:.4f}")

# %% [markdown]
# ## 4. The curves: accuracy against sparsity
#
# One sweep per structure (`paper_repro/sweeps/curves/<structure>.toml`, written from the selection by
# `paper_repro/select_hyperparameters.py --write-sweeps`): every method at its chosen setting, five or six
# levels from "free" to "breaking", two seeds; the error bars span the seeds. The sweeps are resumable and
# long (about 3 minutes per run on one core); the plot shows what has finished.

# %%
curve_rows = {s: rows_of(s) for s in STRUCTURES}
available = [s for s, rows in curve_rows.items() if rows]
print({s: len(rows) for s, rows in curve_rows.items()})
if available:
    fig, axes = plt.subplots(1, len(available), figsize=(3.4 * len(available), 3.4), sharey=True,
                             squeeze=False)
    for ax, structure in zip(axes[0], available, strict=True):
        rows = curve_rows[structure]
        for method, color in COLORS.items():
            levels = sorted({r["sparsity"] for r in rows if r["method"] == method})
            for column, style in (("accuracy.final", "-"), ("accuracy.after_hard_prune", ":")):
                accs = [[r[column] for r in rows if r["method"] == method and r["sparsity"] == s]
                        for s in levels]
                mean = [np.mean(a) for a in accs]
                spread = np.array([[np.mean(a) - min(a), max(a) - np.mean(a)] for a in accs]).T
                ax.errorbar(levels, mean, yerr=spread if len(levels) else None, fmt="o" + style, ms=3,
                            color=color, capsize=2,
                            label=f"{method}{' (after the cut)' if style == ':' else ''}")
        ax.axhline(dense["accuracy"]["dense"], color="k", lw=0.8, ls=":")
        ax.set_title(structure.replace("_", " + "), fontsize=9)
        ax.set_xlabel("sparsity of conv2 and fc1")
    axes[0][0].set_ylabel("test accuracy")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(FIG_DIR / "04_accuracy_vs_sparsity.png", dpi=120)
    plt.show()
else:
    print("no curve sweep has finished runs yet: run `refimpl sweep paper_repro/sweeps/curves/<structure>"
          ".toml --out paper_repro/results/curves/<structure> --workers 2` (see paper_repro/README.md)")

# %% [markdown]
# ## What this shows, and what it does not
#
# * The head start is real: right after the cut, ADMM's network keeps far more of its accuracy than a
#   magnitude cut of the dense network (section 2, printed above).
# * Under an equal budget the head start is mostly bought back by retraining: in the printed budget
#   curves one epoch of plain retraining brings the magnitude-pruned network to within a few tenths of a
#   point of ADMM, and the final accuracies sit within a few tenths of a point — the size of the
#   seed-to-seed spread in the README's comparison table. The papers' claim that ADMM *ends* clearly
#   ahead does not show here at these levels; whether it shows at the breaking levels is what the curves
#   of section 4 measure (`paper_repro/README.md` has the claim-by-claim table).
# * SSL group lasso's chosen $\lambda$ moved the weights only a little towards the set in its 4 epochs:
#   after the cut it is far below ADMM and close to magnitude pruning (printed above); larger candidates
#   moved more but ended lower on validation. Three log-spaced candidates are too coarse for SSL here —
#   a finding about the selection grid, not yet about SSL.
# * This is LeNet-5 on Fashion-MNIST with 8 epochs after the dense model, one seed at one level per
#   structure so far; the papers used longer schedules, other networks and data.
