"""Inference speed of pruned LeNet-5 and VGG-small in every storage format, against the ideal FLOP ratio.

For each network (LeNet-5 on 1×28×28, VGG-small on 3×32×32; float32, random weights — speed does not
depend on the values), batch size (1 and 256) and sparsity (50 … 99% of every prunable weight), the
script compiles the pruned network with :func:`refimpl.sparse.compile` and times the forward pass:

===============  ==========================================================================================
variant          what runs
===============  ==========================================================================================
``dense``        masked dense network, BLAS GEMMs (the baseline every speedup is a ratio to)
``compact``      filter+shape pruned network (rows and columns of every GEMM view, ``sqrt(1-s)`` of each
                 kept), ``compile(..., "compact")``: compaction + dense GEMMs on the live rows/columns
``own_csr``      unstructured mask, ``compile(..., "csr")`` with the numba SpMM
``scipy_csr``    the same matrices through ``scipy.sparse`` (converted once at compile time)
``own_bsr``      4×4 block mask, ``compile(..., "bsr")`` with the numba SpMM
``scipy_bsr``    the same through ``scipy.sparse.bsr_matrix``
``torch_dense``  the masked dense network in PyTorch (when importable), same thread count
===============  ==========================================================================================

The masks come from the projections (``mask_unstructured``, ``mask_filters`` ∧ ``mask_shapes``,
``mask_blocks``) applied to every convolution and linear weight at the same sparsity ``s``, except that the
last layer keeps all its outputs (the classes). BatchNorm is folded into the convolutions in every refimpl
variant (exact in evaluation mode).

**Threads (default 1 everywhere).** ``--threads n`` sets numba's pool, the BLAS pool (threadpoolctl) and
PyTorch's to ``n``. On this project's shared 2-core machine (load average 4–6 from other jobs) two-thread
pools were far slower than one thread: numba's parallel kernels and OpenBLAS's spinning threads hand the
cores back and forth through the scheduler, and each hand-off waits for a time slice. Measured before the
run: the dense LeNet-5 forward at batch 1 took 80 ms (median) with both pools at 2 threads and 0.2 ms
with both at 1; VGG-small at batch 256, 6.2 s against 0.9 s. Single-threaded numbers compare the
formats' work, which is what the speedup-vs-ideal question asks; on an idle multi-core machine rerun with
``--threads`` set to the core count.

**Timing.** The network's children are run one after another and each is timed, so one run gives the
per-layer times and their sum, the whole-network time. The variants of one (network, batch, sparsity) are
run in interleaved rounds (one forward of each per round, after a warm-up round), and the median over
rounds is reported: on a shared, noisy machine the ratios of one run are what can be trusted, not the
absolute times. The ideal speedup is ``MACs(dense) / MACs(format)`` from the engine's report
(:func:`refimpl.sparse.cost.spmm_cost`), per layer and summed over the network.

Writes ``paper_repro/results/inference.json``; ``paper_repro/plot_inference.py`` draws the figure.
Run: ``python paper_repro/bench_inference.py`` (several minutes on 2 cores); ``--quick`` for a short run
(batch 1 and 32, three sparsities), ``--smoke`` for a seconds-long check.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np

from refimpl.models import lenet5, vgg_small
from refimpl.projections import mask_blocks, mask_filters, mask_shapes, mask_unstructured
from refimpl.prune.masking import apply_masks
from refimpl.sparse import compile as sparse_compile
from refimpl.testing.torch_twin import torch_twin
from refimpl.threads import thread_info

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
VARIANTS = ("dense", "compact", "own_csr", "scipy_csr", "own_bsr", "scipy_bsr", "torch_dense")
BLOCK = (4, 4)


def build(name: str):
    rng = np.random.default_rng(0)
    if name == "lenet5":
        return lenet5(input_size=28, rng=rng)
    return vgg_small(input_size=32, rng=rng)


# --------------------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------------------


def make_masks(net, kind: str, sparsity: float) -> dict[str, np.ndarray]:
    """Keep masks of one structure at ``sparsity`` for every prunable weight (the last keeps its outputs)."""
    masks = {}
    names = net.prunable
    for name in names:
        w = net.parameters()[name]
        w2d = w.reshape(w.shape[0], -1)
        last = name == names[-1]
        if kind == "unstructured":
            keep = mask_unstructured(w2d, sparsity)
        elif kind == "block":
            keep = mask_blocks(w2d, BLOCK, sparsity)
        else:  # filter ∧ shape: sqrt(1 - s) of the rows and of the columns, so (1 - s) of the entries
            side = 1.0 - np.sqrt(1.0 - sparsity)
            rows = np.ones(w2d.shape, bool) if last else mask_filters(w2d, keep=max(1, w2d.shape[0] - round(
                side * w2d.shape[0])))
            col_sparsity = sparsity if last else side
            cols = mask_shapes(w2d, keep=max(1, w2d.shape[1] - round(col_sparsity * w2d.shape[1])))
            keep = rows & cols
        masks[name] = keep.reshape(w.shape)
    return masks


# --------------------------------------------------------------------------------------------------------
# the variants
# --------------------------------------------------------------------------------------------------------


class Runner:
    """Run a network child by child, timing each child; ``__call__`` returns ``{child: seconds}``."""

    def __init__(self, children, x, torch=None) -> None:
        self.children = list(children)
        self.x = x
        self.torch = torch

    def __call__(self) -> dict[str, float]:
        times = {}
        x = self.x
        if self.torch is not None:
            with self.torch.inference_mode():
                for name, child in self.children:
                    t0 = time.perf_counter()
                    x = child(x)
                    times[name] = time.perf_counter() - t0
            return times
        for name, child in self.children:
            t0 = time.perf_counter()
            x = child.forward(x)
            times[name] = time.perf_counter() - t0
        return times


def variants(net, sparsity: float, x: np.ndarray, torch):
    """``{variant: (runner, ideal per layer, ideal total, formats)}`` for one sparsity and batch."""
    structured = make_masks(net, "filter_shape", sparsity)
    unstructured = make_masks(net, "unstructured", sparsity)
    block = make_masks(net, "block", sparsity)
    plans = {
        "dense": (unstructured, "dense", "numba"),
        "compact": (structured, "compact", "numba"),
        "own_csr": (unstructured, "csr", "numba"),
        "scipy_csr": (unstructured, "csr", "scipy"),
        "own_bsr": (block, "bsr", "numba"),
        "scipy_bsr": (block, "bsr", "scipy"),
    }
    out = {}
    batch = x.shape[0]
    for variant, (masks, fmt, engine) in plans.items():
        model = sparse_compile(net, fmt, masks=masks, engine=engine, block_shape=BLOCK)
        report = model.report(batch)
        ideal = {r["name"]: r["ideal_speedup"] for r in report}
        dense_macs = sum(r["costs"]["dense"]["macs"] for r in report)
        macs = sum(r["macs"] for r in report)
        out[variant] = (Runner(model.network.children(), x), ideal, dense_macs / macs)
    if torch is not None:
        ref = copy.deepcopy(net)
        apply_masks(ref, unstructured)
        tnet = torch_twin(ref.eval()).eval()
        out["torch_dense"] = (Runner(tnet.named_children(), torch.from_numpy(x), torch), {}, 1.0)
    return out


def time_interleaved(runners: dict, rounds: int) -> dict[str, dict[str, float]]:
    """Median per-child seconds of each runner over ``rounds`` interleaved rounds (after a warm-up)."""
    for run in runners.values():
        run()
    samples = {v: [] for v in runners}
    order = list(runners)
    for r in range(rounds):
        for v in order[r % len(order):] + order[: r % len(order)]:  # rotate who goes first
            samples[v].append(runners[v]())
    out = {}
    for v, runs in samples.items():
        out[v] = {child: float(np.median([s[child] for s in runs])) for child in runs[0]}
        out[v]["__total__"] = float(np.median([sum(s.values()) for s in runs]))
    return out


def bench(model_name: str, batch: int, sparsities, rounds: int, torch) -> list[dict]:
    net = build(model_name)
    x = np.random.default_rng(1).standard_normal((batch, *net.input_shape)).astype(np.float32)
    weight_layers = [p.removesuffix(".weight") for p in net.prunable]
    rows = []
    for s in sparsities:
        v = variants(net, s, x, torch)
        times = time_interleaved({name: run for name, (run, _, _) in v.items()}, rounds)
        dense = times["dense"]
        row = {"model": model_name, "batch": batch, "sparsity": s, "ms": {}, "speedup": {}, "ideal": {},
               "layers": {}}
        for variant, (_, ideal_layers, ideal_total) in v.items():
            t = times[variant]
            row["ms"][variant] = 1e3 * t["__total__"]
            row["speedup"][variant] = dense["__total__"] / t["__total__"]
            row["ideal"][variant] = ideal_total
            # Time outside the conv/linear layers (pooling, ReLU, flatten, BN in torch): the Amdahl part.
            row.setdefault("other_ms", {})[variant] = 1e3 * sum(
                sec for child, sec in t.items() if child not in weight_layers and child != "__total__")
            for layer in weight_layers:
                entry = row["layers"].setdefault(layer, {"ms": {}, "speedup": {}, "ideal": {}})
                entry["ms"][variant] = 1e3 * t[layer]
                entry["speedup"][variant] = dense[layer] / t[layer]
                if layer in ideal_layers:  # None: the layer does no work at all (strict JSON has no inf)
                    ideal = ideal_layers[layer]
                    entry["ideal"][variant] = ideal if np.isfinite(ideal) else None
        rows.append(row)
        sp = row["speedup"]
        print(f"{model_name:<9} batch {batch:>3} s={s:.2f} dense {row['ms']['dense']:8.2f} ms | "
              + " ".join(f"{k} {sp[k]:5.2f}x" for k in sp if k != "dense")
              + f" | ideal compact {row['ideal']['compact']:.1f}x csr {row['ideal']['own_csr']:.1f}x "
              f"bsr {row['ideal']['own_bsr']:.1f}x", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="batch 1 and 32, sparsities 0.5/0.9/0.99")
    parser.add_argument("--smoke", action="store_true", help="seconds: LeNet-5 only, batch 1 and 4")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per variant (median)")
    parser.add_argument("--threads", type=int, default=1, help="numba, BLAS and torch threads (default 1)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch dense baseline")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    sparsities = [0.5, 0.75, 0.9, 0.95, 0.99]
    batches, models, rounds = [1, 256], ["lenet5", "vgg_small"], None
    if args.quick:
        sparsities, batches, rounds = [0.5, 0.9, 0.99], [1, 32], 3
    if args.smoke:
        sparsities, batches, models, rounds = [0.5, 0.95], [1, 4], ["lenet5"], 2
    rounds = args.rounds or rounds

    numba.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits

        blas_limit = threadpool_limits(limits=args.threads, user_api="blas")  # noqa: F841 - kept alive
    except ImportError:
        print("threadpoolctl not importable: BLAS threads as the environment sets them")

    torch = None
    if not args.no_torch:
        try:
            import torch as torch_module

            torch = torch_module
            torch.set_num_threads(args.threads)
        except ImportError:
            print("PyTorch not importable: no torch_dense baseline")
    setting = {
        "dtype": "float32", "rounds": rounds or "7 at batch < 64, else 3",
        "threads_requested": args.threads, "block_shape": list(BLOCK),
        "numba_threads": numba.get_num_threads(), "blas_threads": thread_info()["blas"],
        "torch_threads": None if torch is None else torch.get_num_threads(),
        "torch": None if torch is None else torch.__version__,
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "numpy": np.__version__,
        "numba": numba.__version__, "load_average_1min_at_start": os.getloadavg()[0],
        "mode": "smoke" if args.smoke else "quick" if args.quick else "full",
    }
    print(f"threads: numba {setting['numba_threads']}, BLAS {setting['blas_threads']}, "
          f"torch {setting['torch_threads']}; load average {setting['load_average_1min_at_start']:.1f}")
    rows = []
    for model_name in models:
        for batch in batches:
            rows += bench(model_name, batch, sparsities, rounds or (7 if batch < 64 else 3), torch)
    setting["load_average_1min_at_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"setting": setting, "results": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
