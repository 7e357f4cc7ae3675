"""Compaction of a *trained* network: lossless (the compact network computes the masked one's outputs) and
how much faster it runs, against the ideal FLOP ratio.

The compaction tests (``tests/test_compact.py``) use random weights, whose BatchNorm statistics are the
defaults (mean 0, variance 1); a trained network has real running statistics, which compaction folds into
the convolutions. This script takes trained weights (e.g. the dense VGG-small of
``paper_repro/configs/vgg_small_fashion_dense.toml``), prunes the filters of every convolution by magnitude
(:func:`refimpl.projections.mask_filters`, the L2 norm of each filter) at each level, and for each level:

* builds the masked network (the masks applied to the dense weights; no retraining: this measures the
  compaction, not the accuracy a pruning method would reach) and the compact network
  (``refimpl.sparse.compile(..., "compact")``: dropped filters removed with their BatchNorm channels and
  the next layer's input channels);
* compares their logits on the first ``--images`` test images: the largest absolute difference relative
  to the largest logit, and whether every prediction agrees;
* times both forward passes (batch ``--batch``, one thread per pool, interleaved rounds, median), and
  reports the measured speedup beside the ideal one (dense MACs / compact MACs).

Usage::

    python paper_repro/compact_trained.py --config paper_repro/configs/vgg_small_fashion_dense.toml \\
        --weights runs/vgg_small_dense/pretrain/model.npz --levels 0.25 0.5 0.75 \\
        --output paper_repro/results/compact_trained_vgg_small.json
"""

from __future__ import annotations

from refimpl.threads import configure_defaults  # noqa: E402  (before NumPy/numba load)

configure_defaults()

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from refimpl.config.loading import load_config  # noqa: E402
from refimpl.data import load_dataset  # noqa: E402
from refimpl.engine.build import build_model_for  # noqa: E402
from refimpl.nn.conv import Conv2d  # noqa: E402
from refimpl.nn.module import no_grad  # noqa: E402
from refimpl.projections import mask_filters  # noqa: E402
from refimpl.prune.masking import apply_masks  # noqa: E402
from refimpl.sparse import compile as sparse_compile  # noqa: E402
from refimpl.threads import thread_limit  # noqa: E402


def filter_masks(model, sparsity: float) -> dict[str, np.ndarray]:
    """Keep masks pruning ``round(sparsity · F)`` filters (smallest L2 norm) of every convolution."""
    masks = {}
    for name, module in model.named_modules():
        if isinstance(module, Conv2d):
            w = module.params["weight"]
            keep = mask_filters(w.reshape(len(w), -1), sparsity=sparsity)
            masks[f"{name}.weight"] = keep.reshape(w.shape)
    return masks


def forward_time(model, x: np.ndarray, rounds: int) -> float:
    """Median seconds of ``model.forward(x)`` over ``rounds`` calls (after one warm-up)."""
    model.forward(x)
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        model.forward(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="the config that trained the weights")
    parser.add_argument("--weights", type=Path, required=True, help="the trained model (.npz)")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--images", type=int, default=2000,
                        help="test images compared, in one forward pass (under no_grad(), so memory is the "
                             "largest layer's working set)")
    parser.add_argument("--batch", type=int, default=256, help="batch of the timing")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    config = load_config(args.config)
    d = config.data
    data = load_dataset(d.name, d.root, download=d.download, dtype=np.dtype(d.dtype),
                        val_fraction=d.val_fraction, path=d.path,
                        seed=config.seed if d.split_seed is None else d.split_seed)
    dense = build_model_for(config, data.input_shape, data.num_classes)
    dense.load(args.weights)
    dense.eval()
    x, y = np.ascontiguousarray(data.x_test[:args.images]), data.y_test[:args.images]
    rows = []
    # no_grad(): logits only, so no layer keeps its im2col matrix for a backward pass (ResNet-20
    # kept over 20 GB for 2,000 images that way).
    with thread_limit(1), no_grad():
        dense_logits = dense.forward(x)
        for level in args.levels:
            masks = filter_masks(dense, level)
            masked = copy.deepcopy(dense)
            apply_masks(masked, masks)
            masked.eval()
            compact = sparse_compile(masked, "compact", masks=masks)
            want, got = masked.forward(x), compact.forward(x)
            report = compact.report(args.batch)
            dense_macs = sum(r["costs"]["dense"]["macs"] for r in report)
            macs = sum(r["macs"] for r in report)
            xb = x[:args.batch]
            t_masked, t_compact = [], []
            for _ in range(args.rounds):  # interleaved, so load hits both alike
                t_masked.append(forward_time(masked, xb, 1))
                t_compact.append(forward_time(compact, xb, 1))
            row = {
                "filter_sparsity": level,
                "max_abs_logit_difference": float(np.max(np.abs(got - want))),
                "largest_logit": float(np.max(np.abs(want))),
                "predictions_agree": bool(np.array_equal(got.argmax(1), want.argmax(1))),
                "accuracy_dense": float(np.mean(dense_logits.argmax(1) == y)),
                "accuracy_masked_no_retraining": float(np.mean(want.argmax(1) == y)),
                # the GEMM weights (BatchNorm folded into the convolutions), dense and as stored compact
                "gemm_weights_dense": int(sum(np.prod(r["gemm_shape"]) for r in report)),
                "gemm_weights_compact": int(sum(np.prod(r["stored_shape"]) for r in report)),
                "ideal_speedup": dense_macs / macs,
                "measured_speedup": float(np.median(t_masked) / np.median(t_compact)),
                "masked_ms": 1e3 * float(np.median(t_masked)),
                "compact_ms": 1e3 * float(np.median(t_compact)),
            }
            rows.append(row)
            print(f"filters {level:.0%}: |logit diff| {row['max_abs_logit_difference']:.2e} "
                  f"(largest logit {row['largest_logit']:.1f}), predictions agree "
                  f"{row['predictions_agree']}; "
                  f"accuracy {row['accuracy_dense']:.4f} dense -> {row['accuracy_masked_no_retraining']:.4f} "
                  f"masked; GEMM weights {row['gemm_weights_dense']:,} -> {row['gemm_weights_compact']:,}; "
                  f"speedup "
                  f"{row['measured_speedup']:.2f}x measured, {row['ideal_speedup']:.2f}x ideal", flush=True)
    result = {"config": str(args.config), "weights": str(args.weights), "images": int(len(x)),
              "batch": args.batch, "threads": 1, "rows": rows}
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
