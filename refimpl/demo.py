"""``refimpl demo``: the whole story on a laptop in a few minutes, offline.

Train LeNet-5 on scikit-learn's bundled 8×8 handwritten digits (no download), prune it with ADMM under
**filter + shape** constraints on the convolutions (and neuron pruning of ``fc1``), hard-prune, retrain
with the masks frozen, remove the dead paths (:func:`refimpl.compact.compact`), then print

* the test accuracy dense / after pruning / of the compact model (which must equal the masked one),
* the parameter and multiply-accumulate (MAC) reduction,
* the **measured** inference speedup of the compact model over the dense one: the median of several
  timed forward passes over the test set, in the same process, with the thread counts printed beside it
  and the ideal ratio (dense MACs / compact MACs) for comparison,

and save a figure ``<out>/demo.png`` (kept filters and shapes per layer, accuracy per stage).

The settings are :data:`DEMO_SETTINGS`, also stored as ``paper_repro/configs/demo_digits.toml`` (a test
checks that the two agree), so ``refimpl prune --config paper_repro/configs/demo_digits.toml --out DIR``
regenerates the pruning part. Everything is seeded: two runs print the same accuracies.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from refimpl.config import ExperimentConfig, load_config

__all__ = ["DEMO_SETTINGS", "QUICK_OVERRIDES", "demo_config", "plot_demo", "run_demo", "time_forward"]

#: The demo's experiment (dotted keys over the defaults of :class:`~refimpl.config.ExperimentConfig`).
DEMO_SETTINGS: dict[str, Any] = {
    "name": "demo-digits",
    "description": "LeNet-5 on 8x8 digits: ADMM with filter + shape constraints, retraining, compaction.",
    "seed": 0,
    "method": "admm",
    "threads": 1,  # small layers: one thread is fastest and immune to other jobs on a shared machine
    "data.name": "digits",
    "model.name": "lenet5",
    "pretrain.epochs": 20,
    "pretrain.lr": 2e-3,
    "admm.epochs": 15,
    "admm.lr": 1e-3,
    "admm.rho": 1e-3,
    "admm.rho_growth": 1.5,
    "admm.constraints": [
        {"params": "conv", "structure": "filters", "sparsity": 0.5},
        {"param": "conv2.weight", "structure": "shapes", "sparsity": 0.6},
        {"param": "fc1.weight", "structure": "filters", "sparsity": 0.8},
    ],
    "retrain.epochs": 10,
    "retrain.lr": 1e-3,
}

#: ``--quick``: the same pipeline with a few epochs (a smoke test of the demo, not a result).
QUICK_OVERRIDES: dict[str, Any] = {"pretrain.epochs": 2, "admm.epochs": 2, "retrain.epochs": 1,
                                   "data.limit_train": 400}


def demo_config(quick: bool = False) -> ExperimentConfig:
    """Return the demo's :class:`~refimpl.config.ExperimentConfig` (``quick``: :data:`QUICK_OVERRIDES`)."""
    return load_config(None, {**DEMO_SETTINGS, **(QUICK_OVERRIDES if quick else {})})


def time_forward(model, x: np.ndarray, repeats: int = 7) -> list[float]:
    """Wall-clock seconds of ``repeats`` evaluation-mode forward passes of ``model`` over all of ``x``.

    One untimed pass first (JIT compilation, caches, BLAS warm-up). The model's mode is restored.
    """
    was_training = model.training
    model.eval()
    try:
        model.forward(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model.forward(x)
            times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return times


def plot_demo(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Save the demo figure: kept filters and shapes per layer (left), accuracy per stage (right)."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; the file is the product
    import matplotlib.pyplot as plt

    layers = [row for row in report["layers"] if row["filters"] is not None]
    names = [row["name"] for row in layers]
    kept_filters = [row["kept_filters"] / row["filters"] for row in layers]
    kept_shapes = [row["kept_shapes"] / row["shapes"] for row in layers]
    kept_weights = [row["nonzero"] / row["params_before"] for row in layers]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(names))
    for offset, values, label in ((-0.27, kept_filters, "filters / neurons"), (0.0, kept_shapes, "shapes"),
                                  (0.27, kept_weights, "nonzero parameters")):
        bars = left.bar(x + offset, values, width=0.26, label=label)
        left.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=7)
    left.set_xticks(x, names)
    left.set_ylim(0, 1.15)
    left.set_ylabel("share kept")
    left.set_title("what pruning kept, per layer")
    left.legend(fontsize=8, loc="upper right")
    acc = report["accuracy"]
    stages = [(label, acc[key]) for key, label in (("dense", "dense"), ("after_admm", "after ADMM"),
                                                     ("after_hard_prune", "hard prune"),
                                                     ("after_retrain", "retrained"), ("compact", "compact"))
              if acc.get(key) is not None]
    bars = right.bar([s[0] for s in stages], [s[1] for s in stages], color="tab:gray")
    right.bar_label(bars, labels=[f"{s[1]:.3f}" for s in stages], fontsize=8)
    right.set_ylim(0, 1.05)
    right.set_ylabel("test accuracy")
    right.set_title(f"{report['params']['dense']:,} -> {report['params']['nonzero']:,} parameters")
    right.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run_demo(out_dir: str | os.PathLike = "runs/demo", *, quick: bool = False, progress: bool = True,
             repeats: int | None = None) -> dict:
    """Run the demo into ``out_dir`` and print its report; return the summary (also ``<out>/demo.json``).

    Parameters
    ----------
    out_dir : path, default "runs/demo"
        Run directory: new or empty, or holding an earlier demo run of the same settings, which is
        reused (its training is not repeated; an interrupted one is resumed). Anything else there is
        refused and never deleted (:mod:`refimpl.engine.rundir`).
    quick : bool, default False
        A few epochs only (:data:`QUICK_OVERRIDES`).
    progress : bool, default True
        Progress bars of the training epochs.
    repeats : int, optional
        Timed forward passes per model (default 9, quick 3).

    Returns
    -------
    dict
        Accuracies, parameters, MACs, timings (seconds per pass of every repeat), the speedup (ratio of
        medians), the ideal MAC ratio and the thread counts.
    """
    from refimpl.data import load_dataset
    from refimpl.engine import build_model_for, load_compact_model, run_experiment
    from refimpl.threads import thread_info, thread_limit

    started = time.perf_counter()
    out = Path(out_dir)
    config = demo_config(quick)
    report = run_experiment(config, out, resume=True, progress=progress, echo=print)

    with thread_limit(config.threads):
        ds = load_dataset(config.data.name, dtype=np.dtype(config.data.dtype))
        dense = build_model_for(config, ds.input_shape, ds.num_classes)
        dense.load(out / "pretrain" / "model.npz")
        masked = build_model_for(config, ds.input_shape, ds.num_classes)
        masked.load(out / "model_masked.npz")
        compact_model = load_compact_model(out)
        repeats = repeats or (3 if quick else 9)
        x = ds.x_test
        # Interleaved, so a slow spell of a shared machine hits both models alike.
        t_dense, t_compact = [], []
        for _ in range(repeats):
            t_dense += time_forward(dense, x, repeats=1)
            t_compact += time_forward(compact_model, x, repeats=1)
        masked.eval()
        compact_model.eval()
        difference = float(np.max(np.abs(masked.forward(x) - compact_model.forward(x))))
        threads = thread_info()

    speedup = float(np.median(t_dense) / np.median(t_compact))
    ideal = report["macs"]["dense"] / report["macs"]["compact"]
    summary = {
        "accuracy": report["accuracy"], "params": report["params"], "macs": report["macs"],
        "compression": report["compression"], "mac_reduction": report["mac_reduction"],
        "seconds_dense": t_dense, "seconds_compact": t_compact, "speedup": speedup,
        "ideal_speedup": ideal, "compact_vs_masked_max_abs_diff": difference, "threads": threads,
        "n_test": int(len(x)), "quick": quick, "wall_seconds": time.perf_counter() - started,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_demo(report, out / "demo.png")
    print(_summary_text(summary, out))
    return summary


def _summary_text(s: Mapping[str, Any], out: Path) -> str:
    acc, p, m = s["accuracy"], s["params"], s["macs"]
    lines = [
        "",
        "=" * 78,
        "refimpl demo: LeNet-5 on 8x8 digits, ADMM filter + shape pruning" + (" (quick)" * s["quick"]),
        "=" * 78,
        f"test accuracy   dense {acc['dense']:.4f}   pruned {acc['masked']:.4f}   "
        f"compact {acc['compact']:.4f}"
        f"   (compact == pruned: {acc['compact'] == acc['masked']}, "
        f"max |logit difference| {s['compact_vs_masked_max_abs_diff']:.1e})",
        f"parameters      dense {p['dense']:,}   nonzero {p['nonzero']:,} ({s['compression']:.1f}x fewer)"
        f"   compact model {p['compact']:,} ({p['dense'] / p['compact']:.1f}x smaller)",
        f"MACs per image  dense {m['dense']:,}   effective {m['effective']:,} "
        f"({s['mac_reduction']:.1f}x fewer)"
        f"   compact model {m['compact']:,} ({s['ideal_speedup']:.1f}x fewer)",
        f"inference       {s['n_test']} test images, median of {len(s['seconds_dense'])} runs: dense "
        f"{1e3 * np.median(s['seconds_dense']):.2f} ms, "
        f"compact {1e3 * np.median(s['seconds_compact']):.2f} ms"
        f" -> measured speedup {s['speedup']:.2f}x (ideal MAC ratio {s['ideal_speedup']:.2f}x)",
        f"threads         numba {s['threads']['numba']}, BLAS {s['threads']['blas']}, "
        f"{s['threads']['cpu_count']} CPUs",
        f"files           {out}/report.txt, {out}/demo.png, {out}/demo.json "
        f"(total {s['wall_seconds']:.0f} s)",
    ]
    return "\n".join(lines)
