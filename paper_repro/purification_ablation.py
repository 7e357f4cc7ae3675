"""Purification ablation on finished runs: which filters would purification remove, at what cost?

StructADMM's P-RM step (network purification + unused-path removal) removes filters that pruning left
*nearly empty and unimportant*: a filter ``f`` of a purified weight goes when its share of zero weights
``eta_f`` exceeds ``eta`` and its L2 norm relative to the layer's mean filter norm ``sigma_f`` is below
``sigma`` (:func:`refimpl.compact.purify`, whose docstring says which parts are this implementation's
reading). This script applies that rule to the masked networks of finished runs, without retraining, and
reports per run

* the filters removed per layer, and the largest ``eta_f`` among the filters that still keep a weight
  (the rule can only act where it exceeds ``eta``),
* the compact network's parameters before and after (unused-path removal on both mask sets),
* the test accuracy before and right after purification (no retraining: the "+ retrain" numbers come from
  runs with ``purify.enabled = true``).

The weights of a run stay on the machine that ran it (``model_masked.npz`` and ``masks.npz`` are not
committed); runs without them are listed as skipped. The test set is only evaluated, never used to choose.

Usage::

    python paper_repro/purification_ablation.py paper_repro/results/curves/select_unstructured \
        paper_repro/results/curves/select_filters paper_repro/results/curves/select_channels \
        paper_repro/results/curves/lenet300_unstructured --out paper_repro/results/purification_ablation.json
    python paper_repro/purification_ablation.py --eta 0.9 --sigma 0.1 DIR...   # thresholds, print only
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _load_masked_network(run_dir: Path):
    """The run's config, its masked model (weights loaded) and its masks."""
    from refimpl.config import ExperimentConfig
    from refimpl.engine.artifacts import load_npz
    from refimpl.engine.build import build_model_for

    config = ExperimentConfig.from_dict(json.loads((run_dir / "config.json").read_text()),
                                        source=str(run_dir / "config.json"))
    info = json.loads((run_dir / "compact.json").read_text())
    model = build_model_for(config, tuple(info["input_shape"]), info["num_classes"])
    model.load_state_dict(load_npz(run_dir / "model_masked.npz"))
    return config, model, load_npz(run_dir / "masks.npz")


def _test_split(config, cache: dict):
    """The run's test images and labels (cached per data settings; normalised like the run's)."""
    from refimpl.data import load_dataset

    d = config.data
    key = (d.name, d.root, d.path, d.dtype)
    if key not in cache:
        data = load_dataset(d.name, d.root, download=False, dtype=np.dtype(d.dtype), path=d.path,
                            progress=False)
        cache[key] = (data.x_test, data.y_test)
    return cache[key]


def _max_kept_emptiness(layer, mask: np.ndarray) -> float:
    """The largest zero share eta_f among the filters that keep at least one weight (0 if none does)."""
    kept = mask.reshape(mask.shape[0], -1).any(axis=1)
    return float(np.max(layer.emptiness[kept])) if kept.any() else 0.0


def ablate_run(run_dir: Path, *, eta: float, sigma: float, data_cache: dict) -> dict:
    """Purify one finished run's masked network (no retraining) and compare it with the unpurified one."""
    from refimpl.compact import compact, purify
    from refimpl.prune import apply_masks
    from refimpl.train.trainer import evaluate

    config, model, masks = _load_masked_network(run_dir)
    x_test, y_test = _test_split(config, data_cache)
    before = evaluate(model, x_test, y_test)["accuracy"]
    _, compact_before = compact(model, masks)
    new_masks, report = purify(model, masks, eta=eta, sigma=sigma)
    apply_masks(model, new_masks)
    after = evaluate(model, x_test, y_test)["accuracy"]
    _, compact_after = compact(model, new_masks)
    return {
        "run": run_dir.name,
        "sweep": run_dir.parent.parent.name,
        "removed": {layer.name: int(layer.removed.size) for layer in report.layers},
        # the rule can only act where a filter that still keeps a weight is emptier than eta
        "max_emptiness_kept": {layer.name: _max_kept_emptiness(layer, masks[layer.name])
                               for layer in report.layers},
        "params_compact_before": compact_before.params_after,
        "params_compact_after": compact_after.params_after,
        "test_acc_before": before,
        "test_acc_after_purify": after,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep directories (DIR/runs/<name>/)")
    parser.add_argument("--eta", type=float, default=0.9, help="zero-share threshold (default 0.9)")
    parser.add_argument("--sigma", type=float, default=0.1, help="relative-norm threshold (default 0.1)")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    from refimpl.engine import run_status

    rows, skipped, cache = [], [], {}
    for sweep in args.sweeps:
        if not (sweep / "runs").is_dir():
            parser.error(f"{sweep} is not a sweep directory (no runs/ inside)")
        for run_dir in sorted((sweep / "runs").iterdir()):
            if run_status(run_dir) != "finished":
                continue
            if not (run_dir / "model_masked.npz").is_file() or not (run_dir / "masks.npz").is_file():
                skipped.append(str(run_dir))
                continue
            row = ablate_run(run_dir, eta=args.eta, sigma=args.sigma, data_cache=cache)
            rows.append(row)
            removed = ", ".join(f"{k} {v}" for k, v in row["removed"].items() if v) or "nothing"
            print(f"{row['sweep']}/{row['run']:<22} removes {removed:<28} compact params "
                  f"{row['params_compact_before']:>7} -> {row['params_compact_after']:>7}  test "
                  f"{row['test_acc_before']:.4f} -> {row['test_acc_after_purify']:.4f}")
    if skipped:
        print(f"skipped {len(skipped)} finished run(s) without local weights")
    if args.out:
        args.out.write_text(json.dumps({"eta": args.eta, "sigma": args.sigma, "rows": rows,
                                        "skipped": skipped}, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
