"""Figure: measured whole-network inference speedup vs sparsity, per format, with the ideal FLOP lines.

Reads ``paper_repro/results/inference.json`` (written by ``bench_inference.py``) and draws one panel per
(network, batch): the measured speedup over the dense BLAS network of every variant, and dashed the ideal
speedups ``MACs(dense) / MACs(format)`` of the unstructured (CSR), block (BSR) and structured (compact)
masks. Writes ``figures/inference_speedup.png``.

Run: ``python paper_repro/plot_inference.py [--results PATH] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "paper_repro" / "results" / "inference.json"
FIGURE = ROOT / "figures" / "inference_speedup.png"

STYLE = {  # variant -> (label, colour, marker)
    "compact": ("compact dense (filter+shape)", "tab:green", "o"),
    "own_csr": ("own CSR (unstructured)", "tab:blue", "s"),
    "scipy_csr": ("scipy CSR", "tab:cyan", "x"),
    "own_bsr": ("own BSR 4×4 (block)", "tab:orange", "^"),
    "scipy_bsr": ("scipy BSR 4×4", "tab:brown", "+"),
    "torch_dense": ("PyTorch dense", "tab:gray", "d"),
}
IDEAL = {"compact": "tab:green", "own_csr": "tab:blue", "own_bsr": "tab:orange"}


def plot(results: dict, out: Path) -> Path:
    """Draw the speedup panels from a results dict; return the path written."""
    rows = results["results"]
    panels = sorted({(r["model"], r["batch"]) for r in rows}, key=lambda p: (p[0], p[1]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False)
    for ax, (model, batch) in zip(axes[0], panels, strict=True):
        sel = sorted((r for r in rows if r["model"] == model and r["batch"] == batch),
                     key=lambda r: r["sparsity"])
        s = [100 * r["sparsity"] for r in sel]
        for variant, (label, colour, marker) in STYLE.items():
            if variant in sel[0]["speedup"]:
                ax.plot(s, [r["speedup"][variant] for r in sel], marker=marker, color=colour, label=label)
        for variant, colour in IDEAL.items():
            ax.plot(s, [r["ideal"][variant] for r in sel], ls="--", color=colour, alpha=0.6, lw=1)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("sparsity (%)")
        ax.set_title(f"{model}, batch {batch}")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("speedup over dense BLAS (dashed: ideal FLOP ratio)")
    axes[0][-1].legend(fontsize=7, loc="upper left")
    setting = results["setting"]
    fig.suptitle(f"float32, threads: numba {setting['numba_threads']}, BLAS {setting['blas_threads']}, "
                 f"torch {setting.get('torch_threads')}", fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--out", type=Path, default=FIGURE)
    args = parser.parse_args(argv)
    print(f"wrote {plot(json.loads(args.results.read_text()), args.out)}")


if __name__ == "__main__":
    main()
