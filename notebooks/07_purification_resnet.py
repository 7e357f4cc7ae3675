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
# # 7. Purification and unused-path removal (P-RM) through residual blocks
#
# * **Objectives.** Know which channels of a pruned network can physically go and why a residual
#   addition ties channels together; see *network purification* pick the nearly empty filters that shape
#   pruning leaves behind; read what compaction buys on trained networks (lossless, measured speed against
#   the ideal) and what P-RM does on ResNet-20.
# * **Prerequisites.** [2. ADMM step by step](02_admm_step_by_step.ipynb) (hard prune, masked
#   retraining, compaction) and [3. When does sparsity pay?](03_when_does_sparsity_pay.ipynb); the words
#   *filter*, *channel*, *shape*, *GEMM view* (`docs/GLOSSARY.md`).
# * **Runtime.** Seconds: a ResNet-8 with random weights for sections 1 and 2, the rest reads results
#   files of `paper_repro/`.
# * **Reading order.** After notebook 4 (see `docs/COURSE.md`).
#
# StructADMM's last step (Zhang et al., TNNLS 2022, after Ma et al.'s PConv) turns a sparse network into
# a smaller dense one. **Unused-path removal** is lossless: a filter whose weights are all zero outputs a
# constant, and a channel that no later weight reads computes nothing that matters, so both go, with the
# readers' input channels. **Purification** is lossy: after column (shape) pruning some filters keep only
# a few small weights; it removes the filters that are nearly empty *and* unimportant, then retrains.
# The rules are in `docs/ALGORITHMS.md` ("Unused-path removal", "Network purification") and the code in
# `refimpl/compact.py` (`compact`, `purify`).

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("REFIMPL_SMOKE") == "1"

# %%
import copy
import json

import numpy as np

from refimpl.compact import compact, purify
from refimpl.config import load_config
from refimpl.engine import load_results
from refimpl.models import resnet_small
from refimpl.notebook import repo_root
from refimpl.projections import mask_shapes
from refimpl.prune import apply_masks

ROOT = repo_root()
RESULTS = ROOT / "paper_repro" / "results"


def small_resnet(seed=0):
    """ResNet-8 (one basic block per stage), 4-8-16 channels, 8x8 inputs, float64, evaluation mode."""
    model = resnet_small(depth=8, width=4, in_channels=1, input_size=8, rng=np.random.default_rng(seed),
                         dtype=np.float64)
    model.eval()
    return model


def widths(model):
    """Output channels of the stem and the first block's convolutions, input channels of the next stage."""
    get = model.get_module
    return (f"conv1 {get('conv1').out_channels}, layer1.0.conv1 {get('layer1.0.conv1').out_channels}, "
            f"layer1.0.conv2 {get('layer1.0.conv2').out_channels} out; layer2.0.conv1 "
            f"{get('layer2.0.conv1').in_channels}, "
            f"layer2.0.shortcut {get('layer2.0.shortcut.0').in_channels} in")


# %% [markdown]
# ## 1. Which channels can go: the residual stream
#
# A basic block computes `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`. A filter of the block's
# **first** convolution feeds only the second: if its weights are zero, its channel is a constant that the
# second convolution can absorb, and it goes. A filter of the **second** convolution writes into the
# *residual stream*, the tensor that the identity shortcut carries on to every later block of the stage.
# Its channel is the sum of several tensors, so it can go only when it is dead in **every** tensor added
# together (and the constant it then carries is removable). Below: a ResNet-8 and three masks.

# %%
x = np.random.default_rng(1).standard_normal((4, 1, 8, 8))
print("dense:", widths(small_resnet()))


def dead_filter(model, names, channel):
    """Masks zeroing filter ``channel`` of each named convolution (all other weights kept)."""
    params = model.parameters()
    masks = {}
    for name in names:
        mask = np.ones(params[f"{name}.weight"].shape, dtype=bool)
        mask[channel] = False
        masks[f"{name}.weight"] = mask
    return masks


cases = {
    "inside the block (layer1.0.conv1)": ["layer1.0.conv1"],
    "into the stream, one tensor (layer1.0.conv2)": ["layer1.0.conv2"],
    "into the stream, every tensor (conv1 and layer1.0.conv2)": ["conv1", "layer1.0.conv2"],
}
for label, names in cases.items():
    model = small_resnet()
    # the dead channel's BatchNorm shift is negative, so relu() of its constant is exactly 0
    for bn in ("bn1", "layer1.0.bn1", "layer1.0.bn2"):
        model.get_module(bn).params["bias"][2] = -1.0
        model.get_module(bn).buffers["running_mean"][2] = 0.0
    masks = dead_filter(model, names, channel=2)
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    small, report = compact(model, masks)
    same = np.max(np.abs(small.forward(x) - masked.forward(x)))
    print(f"{label}:\n  {widths(small)}\n  parameters {report.params_before} -> {report.params_after},"
          f" largest logit difference to the masked network {same:.1e}")

# %% [markdown]
# The block-internal filter goes with the second convolution's input channel. Killed only in the block's
# second convolution, the stream channel stays: the stem's output still flows through the identity
# shortcut. Killed in every tensor added to the stream, the channel leaves the stem, the block and the
# readers of the next stage. Each compact network computes the masked one's logits (the printed
# difference). Pruning whole filters of a ResNet
# therefore shrinks it less than the same sparsity shrinks a plain chain such as VGG, unless the filters
# of a stage are pruned *together*.

# %% [markdown]
# ## 2. Purification: the nearly empty filters that shape pruning leaves
#
# Shape (column) pruning removes whole columns of a layer's GEMM view, the same kernel positions of every
# filter, so no filter becomes empty and nothing can be removed yet. Some filters, though, keep only small
# weights. For filter $f$ of a masked layer purification computes its zero share $\eta_f$ and its norm
# relative to the layer's mean filter norm $\sigma_f$,
#
# $$\eta_f = \frac{\#\{k : (W \odot M)_{fk} = 0\}}{K}, \qquad
#   \sigma_f = \frac{\lVert (W \odot M)_f \rVert_2}{\frac{1}{F}\sum_g \lVert (W \odot M)_g \rVert_2},$$
#
# and removes it when $\eta_f > \eta$ **and** $\sigma_f < \sigma$. refimpl's defaults ($\eta = 0.9$,
# $\sigma = 0.1$) are a heuristic (the docstring of `refimpl.compact.purify` says why). Below, the first
# block's two convolutions are shape-pruned, then, as training might leave them, filter 0 is weak but
# full, filter 1 nearly empty but strong, filter 2 both, filter 3 untouched; looser thresholds than the
# defaults make the selection visible on four filters.

# %%
model = small_resnet(seed=3)
params = model.parameters()
masks = {}
for name in ("layer1.0.conv1.weight", "layer1.0.conv2.weight"):
    w = params[name]
    keep = np.array(mask_shapes(w, sparsity=0.75))  # the same kernel positions kept in every filter
    w[[0, 2]] *= 0.02                               # filters 0 and 2: only small weights
    for f in (1, 2):                                # filters 1 and 2: two weights left
        keep[f].flat[np.flatnonzero(keep[f])[2:]] = False
    masks[name] = keep
new_masks, report = purify(model, masks, eta=0.8, sigma=0.3, layers=list(masks))
for layer in report.layers:
    print(layer.name)
    for f, (eta_f, sigma_f) in enumerate(zip(layer.emptiness, layer.importance, strict=True)):
        flag = "removed" if f in layer.removed else ""
        print(f"  filter {f}: eta_f = {eta_f:.2f}, sigma_f = {sigma_f:.2f}  {flag}")
_, before = compact(model, masks)
small, after = compact(model, new_masks)
print(f"compaction: {before.params_before} -> {before.params_after} parameters before purification,"
      f" -> {after.params_after} after; {widths(small)}")

# %% [markdown]
# Only the filter that is both nearly empty and weak goes; the nearly empty but strong one and the weak
# but full one stay. Of the two removed filters only the block-internal one (in `layer1.0.conv1`) leaves
# the compact network: the one in `layer1.0.conv2` writes into the residual stream, which the stem still
# feeds (section 1). Purification changes the function (the removed weights were not zero), so it is
# followed by masked retraining; compaction afterwards is lossless.

# %% [markdown]
# ## 3. On trained networks: lossless, and how much faster
#
# The compaction tests use random weights, whose BatchNorm statistics are the defaults; a trained network
# has real running statistics, which compaction folds into the convolutions.
# `paper_repro/compact_trained.py` prunes the filters of every convolution of a *trained* network by
# magnitude (no retraining: it measures compaction, not accuracy), compacts, compares the logits of the
# compact and the masked network on test images and times both (one thread, batch 256). VGG-small from
# `paper_repro/configs/vgg_small_fashion_dense.toml`; ResNet-20 when its dense run has finished
# (`paper_repro/configs/resnet20_fashion_dense.toml`).

# %%
TRAINED = {"VGG-small": "compact_trained_vgg_small.json", "ResNet-20": "compact_trained_resnet20.json"}
for label, name in TRAINED.items():
    path = RESULTS / name
    if not path.is_file():
        print(f"{label}: not run yet (paper_repro/compact_trained.py, --output paper_repro/results/{name})")
        continue
    data = json.loads(path.read_text())
    print(f"{label} ({data['config']}), {data['images']} test images, batch {data['batch']}, "
          f"{data['threads']} thread:")
    print("  filters pruned | logits: max |diff| / max |logit| | predictions agree | ideal speedup | "
          "measured")
    for row in data["rows"]:
        rel = row["max_abs_logit_difference"] / row["largest_logit"]
        print(f"  {row['filter_sparsity']:14.0%} | {rel:31.1e} | {str(row['predictions_agree']):17} |"
              f" {row['ideal_speedup']:12.2f}x | {row['measured_speedup']:.2f}x")

# %% [markdown]
# The compact network agrees with the masked one to float32 rounding. The measured speedup follows the
# ideal one (the ratio of multiply-adds) at moderate pruning and falls behind it when the layers become
# small, where the fixed costs of a layer (im2col, BatchNorm, the launches) weigh more.

# %% [markdown]
# ## 4. P-RM on ResNet-20
#
# `paper_repro/sweeps/resnet/prm.toml`: from the trained dense ResNet-20, ADMM towards filters or shapes
# of the block convolutions at two levels, hard cut, masked retraining, purification with a short
# retraining, compaction; two seeds (the budget and its reasons are in the file). Each run's report gives
# the test accuracy and the parameter count after every step.
#
# A pilot run came first (filters 50 %, seed 0, `paper_repro/results/resnet/prm_pilot/`). Its ADMM phase
# updated ρ every 40 steps, 8 updates in all, so ρ ended at 8.2e-2; the weights never came near the set
# (the primal residual stayed near 1) and the hard cut left a network at chance. Its retraining after
# purification restarted at the retraining's peak learning rate. The sweep's base config changes both
# (16 updates, as in the LeNet-5 curves, and `purify.lr`), and says why.

# %%
def prm_line(name: str, state: dict) -> str:
    """One run's accuracy after every P-RM step and its compact size."""
    m = {phase: record["metrics"] for phase, record in state["phases"].items()}
    return (f"{name:16} cut {m['prune']['test_acc']:.4f}  retrained {m['retrain']['test_acc']:.4f}  "
            f"purified {m['purify']['test_acc']:.4f} ({m['purify']['num_removed']} filters)  "
            f"+ retraining {m['purify_retrain']['test_acc']:.4f}  compact {m['compact']['test_acc']:.4f}, "
            f"{m['compact']['params_before']:,} -> {m['compact']['params_after']:,} parameters")


pilot = json.loads((RESULTS / "resnet" / "prm_pilot" / "runs" / "filters-0.5-s0" / "state.json").read_text())
primal = [v for k, v in pilot["phases"]["admm"]["metrics"]["updates"][-1].items() if k.endswith(".primal")]
print("pilot:", prm_line("filters-0.5-s0", pilot))
print(f"pilot: ADMM made {len(pilot['phases']['admm']['metrics']['updates'])} updates, rho ended at "
      f"{pilot['phases']['admm']['metrics']['rho']:.1e}; primal residual at the last one "
      f"{min(primal):.2f}-{max(primal):.2f}")
prm_config = load_config(ROOT / "paper_repro" / "configs" / "prm_resnet20_base.toml")
base = prm_config.admm
steps = base.epochs * -(-prm_config.data.limit_train // base.batch_size)  # the last batch is partial
updates = steps // base.update_every
print(f"sweep: ADMM updates every {base.update_every} of {steps} steps: {updates} updates, rho "
      f"{base.rho:.0e} -> {min(base.rho * base.rho_growth ** updates, base.rho_max):.2f}")
prm_dir = RESULTS / "resnet" / "prm"
rows = [r for r in load_results(prm_dir) if r["status"] == "finished"] if prm_dir.is_dir() else []
if not rows:
    print(f"sweep not run yet: refimpl sweep paper_repro/sweeps/resnet/prm.toml --out "
          f"{prm_dir.relative_to(ROOT)} --workers 2")
for r in sorted(rows, key=lambda r: r["run"]):
    print(prm_line(r["run"], json.loads((prm_dir / "runs" / r["run"] / "state.json").read_text())))

# %% [markdown]
# ## 5. The claims and what was measured
#
# * **Unused-path removal is lossless** — measured: the compact networks above compute the masked ones'
#   logits to rounding, with BatchNorm's trained statistics folded in, through residual additions.
# * **Purification removes the filters that column pruning empties** — on LeNet-5 (the finished runs of
#   the accuracy curves, `paper_repro/purification_ablation.py`, printed below) there is almost nothing
#   to remove after filter or channel pruning, whose kept filters are nearly full, and a few per cent of
#   the compact network after unstructured pruning, at no measurable accuracy cost.
# * **P-RM compresses ResNet-18 on CIFAR-10 by a large factor without loss** (the paper) — not
#   reproducible here (no CIFAR-10 download); ResNet-20 on Fashion-MNIST is section 4.

# %%
ablation = json.loads((RESULTS / "purification_ablation.json").read_text())
print(f"purification ablation (eta = {ablation['eta']}, sigma = {ablation['sigma']}, no retraining):")
groups = {}
for row in ablation["rows"]:
    groups.setdefault(row["sweep"], []).append(row)
for sweep, rs in groups.items():
    removed = [sum(r["removed"].values()) for r in rs]
    shrink = [100 * (1 - r["params_compact_after"] / r["params_compact_before"]) for r in rs]
    delta = [100 * (r["test_acc_after_purify"] - r["test_acc_before"]) for r in rs]
    print(f"  {sweep:32} {len(rs):2} runs: filters removed {min(removed)}-{max(removed)}, compact network"
          f" {min(shrink):.1f}-{max(shrink):.1f} % smaller, test accuracy {min(delta):+.2f} to "
          f"{max(delta):+.2f} points")
