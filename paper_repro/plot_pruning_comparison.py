"""Figure of the pruning comparison: test accuracy against sparsity, ADMM vs magnitude, the dense line.

Reads ``paper_repro/results/pruning_comparison.json`` (written by ``run_pruning_comparison.py``) and draws
two panels into ``figures/pruning_comparison.png``:

* left, unstructured pruning: final test accuracy against the share of all weights pruned, one marker per
  method (ADMM, iterative and one-shot magnitude pruning), runs of one method joined;
* right, filter + shape pruning of the convolutions: final accuracy against the conv-weight reduction of the
  compact GEMMs, ADMM vs structured magnitude pruning.

The dashed line is the dense starting point, the dotted lines the issue's tolerances (1.0 and 1.5 points).

Usage::

    python paper_repro/plot_pruning_comparison.py [--results FILE] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Marker and colour per method label of the comparison (the same method looks the same in both panels).
STYLES = {
    "ADMM": {"marker": "o", "color": "tab:blue"},
    "iterative": {"marker": "s", "color": "tab:orange"},
    "one-shot": {"marker": "^", "color": "tab:red"},
    "magnitude": {"marker": "s", "color": "tab:orange"},
}


def _style(label: str) -> dict:
    for key in ("ADMM", "iterative", "one-shot", "magnitude"):
        if key in label:
            return STYLES[key]
    return {"marker": "x", "color": "gray"}


def plot(results: str | Path, out: str | Path) -> Path:
    """Draw the figure of ``results`` (a pruning_comparison.json) into ``out``; return ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(Path(results).read_text())
    dense = 100 * data["dense_accuracy"]
    runs = list(data["runs"].values())
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})

    # Seed-0 runs are joined per method; replicates with other seeds are hollow markers of the same style.
    unstructured = [r for r in runs if r["family"].startswith("unstructured") and r.get("seed", 0) == 0]
    for label in dict.fromkeys(r["label"] for r in unstructured):
        mine = sorted((r for r in unstructured if r["label"] == label),
                      key=lambda r: r["sparsity_all_weights"])
        left.plot([100 * r["sparsity_all_weights"] for r in mine],
                  [100 * r["accuracy"]["final"] for r in mine],
                  label=label, linewidth=1.2, markersize=7, **_style(label))
    for r in runs:
        if r["family"].startswith("unstructured") and r.get("seed", 0) != 0:
            left.plot([100 * r["sparsity_all_weights"]], [100 * r["accuracy"]["final"]], linestyle="none",
                      markersize=7, markerfacecolor="none", label=f"{r['label']}, seed {r['seed']}",
                      **_style(r["label"]))
    left.set_xlabel("weights pruned, all layers (%)")
    left.set_title("unstructured")

    for r in (r for r in runs if r["family"] == "structured"):
        right.plot([r["conv_reduction_compact"]], [100 * r["accuracy"]["final"]], linestyle="none",
                   markersize=8, label=r["label"], **_style(r["label"]))
    right.set_xlabel("conv weights: dense / compact GEMM (×)")
    right.set_title("filter + shape (conv layers)")

    for ax, tolerance, where in ((left, 1.0, "lower left"), (right, 1.5, "center left")):
        ax.axhline(dense, color="black", linestyle="--", linewidth=1, label=f"dense {dense:.2f}%")
        ax.axhline(dense - tolerance, color="gray", linestyle=":", linewidth=1,
                   label=f"dense − {tolerance:g} point{'' if tolerance == 1 else 's'}")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc=where)
    budget = data["budget_epochs"]
    fig.suptitle(f"LeNet-5 on Fashion-MNIST: ADMM vs magnitude pruning, {budget} epochs each after the "
                 f"same dense model" + (" (SMOKE run)" if data.get("smoke") else ""), fontsize=11)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results" / "pruning_comparison.json")
    parser.add_argument("--out", type=Path, default=HERE.parent / "figures" / "pruning_comparison.png")
    args = parser.parse_args(argv)
    print(plot(args.results, args.out))


if __name__ == "__main__":
    main()
