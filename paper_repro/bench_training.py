"""Training speed on Fashion-MNIST, refimpl (NumPy/numba) against PyTorch CPU: LeNet-5, VGG-small, ResNet-20.

``--model`` picks the networks (``lenet5``, ``vgg_small``, ``resnet_small`` at depth 20; the PyTorch side is
:func:`refimpl.testing.torch_twin.torch_twin` of the refimpl model), ``--threads`` a list of thread counts
and ``--gemm`` how refimpl's GEMMs use them (``blas``: OpenBLAS's threads; ``split``: one single-threaded
piece per thread, :mod:`refimpl.nn.parallel`; ``auto``: refimpl's default). Every combination is one row
of the JSON (``rows``), timed as below. The default, one row:

LeNet-5 "20-50-500-10" (conv 20@5×5 → ReLU → max-pool 2 → conv 50@5×5 → ReLU → max-pool 2 →
flatten → fc 500 → ReLU → fc 10; :func:`refimpl.models.lenet5`), float32, batch 64, plain SGD with learning
rate 0.01 and momentum 0.9, softmax cross-entropy, one epoch over the 60,000 training images (``--limit N``
for fewer). PyTorch gets the same initial weights (copied from the refimpl model), the same batches in the
same order and the same number of threads (``torch.set_num_threads``; numba's and OpenBLAS's pools are
set to the same count).

**How the timing stays fair on a shared machine.** The epoch is cut into chunks of ``--chunk`` batches;
each chunk is trained by refimpl and then by PyTorch, and each framework's time is the sum over its
chunks. Load from other processes therefore hits both frameworks alike, and the ratio of the sums
(refimpl / PyTorch) is the headline number; the ratio of the per-batch medians is printed beside it as a
load-robust check. Neither framework's first calls are timed: a warm-up on throw-away copies compiles
the numba kernels and lets PyTorch pick its kernels.

**Threads.** refimpl runs two thread pools, numba's (im2col, col2im, pooling) and OpenBLAS's (the GEMMs),
one after the other. Idle workers that keep spinning steal the cores the other pool needs; on a busy
2-core machine OpenMP's default spin (GNU libgomp: 300,000 spins) made refimpl 2-3x slower. Workers that
go to sleep at once cost the other way: numba's ``workqueue`` layer needs ~85 µs to wake its workers for
every parallel kernel (measured here with an empty ``prange`` loop), and a LeNet-5 step launches seven of
them. The middle way is numba's ``omp`` layer with a *short* spin, ``GOMP_SPINCOUNT=1000`` (microseconds):
a launch then takes 2-18 µs, and a GEMM that follows a numba kernel is not slowed (1.23 ms either way for
a 500×500 float32 product; with 30,000 spins, 1.9 ms). On the first 6,400 images of the order, refimpl
alone, a step took 12.9-13.1 ms with ``workqueue`` and 10.2-10.6 ms with ``omp`` and 1,000 spins (system
time 0.7 -> 0.1-0.4 ms per step): that was most of the ~2 ms per step the per-layer profile did not
explain. These are refimpl's defaults (:func:`refimpl.threads.configure_defaults`, with a short OpenBLAS
spin, ``OPENBLAS_THREAD_TIMEOUT=4``), applied here before NumPy and numba load, so the benchmark measures
what users get; an explicit environment setting wins.
PyTorch, itself OpenMP, shares that libgomp in this process and so its spin count; its batch times with
and without the setting fell within the same run-to-run spread here (median 11.9-16.3 ms default,
12.6-13.8 ms with it). The JSON records the setting used.

The first convolution does not compute the gradient with respect to the input images, exactly as
PyTorch skips it for an input that does not require a gradient; refimpl's :class:`~refimpl.train.Trainer`
does the same during ``fit``, and the script uses the Trainer's own switch
(:func:`refimpl.train.trainer.input_gradient_skipped`), so it times what a user of the Trainer gets.

Also reported: dense inference throughput on the 10,000 test images (forward only, batches of
``--eval-batch``), test accuracy after the epoch for both frameworks (a check that both trained the same
network), and with ``--profile`` a per-layer table of refimpl's forward and backward times.

Usage::

    python paper_repro/bench_training.py                  # full epoch, 2 threads, writes results JSON
    python paper_repro/bench_training.py --limit 3200     # a quick run (50 batches)
    python paper_repro/bench_training.py --profile        # add the per-layer table
    python paper_repro/bench_training.py --model vgg_small resnet_small --threads 2 8 16 --gemm blas split
    bash paper_repro/bench_threads.sh OUT                 # the thread-scaling table (a 16-core machine)

Results go to ``paper_repro/results/bench_training.json`` (``--output`` to change; ``--no-save`` to skip).
"""

from __future__ import annotations

import os

# before NumPy/numba load (see "Threads" above); an explicit environment setting wins
from refimpl.threads import configure_defaults  # noqa: E402

configure_defaults()

import argparse  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numba  # noqa: E402
import numpy as np  # noqa: E402

from refimpl.data import load_dataset  # noqa: E402
from refimpl.memory import retain_requested  # noqa: E402
from refimpl.models import lenet5, resnet_small, set_engine, vgg_small  # noqa: E402
from refimpl.nn import parallel  # noqa: E402
from refimpl.nn.loss import softmax_cross_entropy  # noqa: E402
from refimpl.testing.torch_twin import torch_twin  # noqa: E402
from refimpl.threads import thread_limit  # noqa: E402
from refimpl.train.optim import SGD  # noqa: E402
from refimpl.train.trainer import input_gradient_skipped  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "bench_training.json"


# --- the two networks ---------------------------------------------------------------------------------

def refimpl_trainer(model, lr: float, momentum: float):
    """Return ``step(x, y) -> loss``: forward, loss, backward, SGD update."""
    optimizer = SGD(model.parameters(), lr=lr, momentum=momentum)

    def step(x, y):
        logits = model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        model.backward(dlogits)
        optimizer.step(model.gradients())
        return loss

    return step


def torch_trainer(torch, model, lr: float, momentum: float):
    """Return ``step(x, y) -> loss`` for the PyTorch twin (inputs are NumPy arrays, shared, not copied)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    cross_entropy = torch.nn.functional.cross_entropy

    def step(x, y):
        optimizer.zero_grad(set_to_none=True)
        loss = cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


# --- timing -------------------------------------------------------------------------------------------

def train_epoch_interleaved(steps: dict, x, y, batches, chunk: int):
    """Train each framework in ``steps`` on ``batches`` in alternating chunks; return times and losses."""
    times = {name: [] for name in steps}
    losses = {name: [] for name in steps}
    for start in range(0, len(batches), chunk):
        for name, step in steps.items():
            for idx in batches[start:start + chunk]:
                xb, yb = x[idx], y[idx]
                t0 = time.perf_counter()
                loss = step(xb, yb)
                times[name].append(time.perf_counter() - t0)
                losses[name].append(loss)
    return times, losses


def evaluate(predict, x, y, batch: int):
    """Run ``predict`` over ``x`` in batches; return (seconds, accuracy)."""
    correct = 0
    t0 = time.perf_counter()
    for start in range(0, len(x), batch):
        logits = predict(x[start:start + batch])
        correct += int(np.sum(np.argmax(logits, axis=1) == y[start:start + batch]))
    return time.perf_counter() - t0, correct / len(x)


def profile_layers(model, optimizer_step, x, y, batches, repeats: int):
    """Median per-layer forward/backward milliseconds of refimpl over ``repeats`` batches."""
    children = list(model.children())
    fwd = {name: [] for name, _ in children}
    bwd = {name: [] for name, _ in children}
    extra = {"loss": [], "sgd": []}
    for idx in batches[:repeats]:
        h = x[idx]
        for name, layer in children:
            t0 = time.perf_counter()
            h = layer.forward(h)
            fwd[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        _, d = softmax_cross_entropy(h, y[idx])
        extra["loss"].append(time.perf_counter() - t0)
        for name, layer in reversed(children):
            t0 = time.perf_counter()
            d = layer.backward(d)
            bwd[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        optimizer_step(model.gradients())
        extra["sgd"].append(time.perf_counter() - t0)
    table = {name: {"forward_ms": 1e3 * float(np.median(fwd[name])),
                    "backward_ms": 1e3 * float(np.median(bwd[name]))} for name, _ in children}
    table.update({k: {"forward_ms": 1e3 * float(np.median(v)), "backward_ms": 0.0} for k, v in extra.items()})
    return table


# --- main ---------------------------------------------------------------------------------------------

MODELS = {
    # name: (builder for 28x28 grey images, default images per timed epoch)
    "lenet5": (lambda seed: lenet5(rng=np.random.default_rng(seed), dtype=np.float32), None),
    "vgg_small": (lambda seed: vgg_small(in_channels=1, input_size=28, rng=np.random.default_rng(seed),
                                         dtype=np.float32), 3200),
    "resnet_small": (lambda seed: resnet_small(depth=20, in_channels=1, input_size=28,
                                               rng=np.random.default_rng(seed), dtype=np.float32), 3200),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", choices=sorted(MODELS), default=["lenet5"],
                        help="networks to time (default lenet5)")
    parser.add_argument("--threads", type=int, nargs="+", default=[2],
                        help="thread counts, each timed in turn for both frameworks (default 2)")
    parser.add_argument("--gemm", nargs="+", choices=("auto", "blas", "split"), default=["auto"],
                        help="how refimpl's GEMMs use the threads: BLAS's own threading, split into one "
                             "piece per thread (refimpl.nn.parallel), or refimpl's default (auto)")
    parser.add_argument("--limit", type=int, default=None,
                        help="train on the first N images of the order (default: all 60,000 for lenet5, "
                             "3,200 for the deeper networks)")
    parser.add_argument("--eval-limit", type=int, default=None, help="time inference on N test images")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0, help="initial weights and data order")
    parser.add_argument("--chunk", type=int, default=25, help="batches per alternating timing chunk")
    parser.add_argument("--eval-batch", type=int, default=1000, help="batch size of the inference timing")
    parser.add_argument("--engine", choices=("numba", "numpy"), default="numba", help="refimpl kernels")
    parser.add_argument("--data-root", type=Path, default=None,
                        help="directory with the Fashion-MNIST files (default: the usual places)")
    parser.add_argument("--profile", action="store_true", help="also time refimpl layer by layer")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-save", action="store_true", help="print only, write no JSON")
    args = parser.parse_args(argv)

    import torch  # imported here so that `--help` works without it

    data = load_dataset("fashion-mnist", root=args.data_root, download=False, dtype=np.float32)
    result = {
        "setting": {
            "dataset": "fashion-mnist", "dtype": "float32", "batch_size": args.batch_size,
            "optimizer": f"SGD lr={args.lr} momentum={args.momentum}", "seed": args.seed,
            "chunk": args.chunk, "engine": args.engine, "eval_batch": args.eval_batch,
        },
        "machine": {
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "torch": torch.__version__,
            "openblas_thread_timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT"),
            "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"),
            "split_from_threads": parallel.SPLIT_FROM_THREADS,
            # refimpl.memory's malloc settings apply to the whole process, PyTorch's allocations too
            "retain_freed_memory": retain_requested(),
        },
        "rows": [],
    }
    for model_name in args.model:
        for threads in args.threads:
            for gemm in args.gemm:
                if gemm == "split" and threads == 1:
                    continue  # one thread: nothing to split, the same as "blas"
                row = time_one(torch, data, model_name, threads, gemm, args)
                result["rows"].append(row)
                report_row(row)
    result["machine"]["numba_threading_layer"] = numba.threading_layer()
    if not args.no_save:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nwrote {args.output}")
    return result


def time_one(torch, data, model_name: str, threads: int, gemm: str, args) -> dict:
    """One row of the table: ``model_name`` trained and evaluated by both frameworks at ``threads``."""
    build, default_limit = MODELS[model_name]
    x_train, y_train = np.ascontiguousarray(data.x_train), data.y_train.astype(np.int64)
    x_test, y_test = np.ascontiguousarray(data.x_test), data.y_test.astype(np.int64)
    if args.eval_limit is not None:
        x_test, y_test = x_test[:args.eval_limit], y_test[:args.eval_limit]
    order = np.random.default_rng(args.seed).permutation(len(x_train))
    limit = args.limit if args.limit is not None else default_limit
    if limit is not None:
        order = order[:limit]
    batches = [order[i:i + args.batch_size] for i in range(0, len(order), args.batch_size)]

    ours = build(args.seed)
    set_engine(ours, args.engine)
    theirs = torch_twin(ours)
    split = {"auto": None, "blas": False, "split": True}[gemm]
    torch.set_num_threads(threads)
    with thread_limit(threads, split=split):
        split_used = parallel.split_workers() > 1
        # warm-up on throw-away copies: numba compilation (or cache loading), PyTorch's kernel choice
        warm_model = copy.deepcopy(ours)
        warm = {"refimpl": refimpl_trainer(warm_model, args.lr, args.momentum),
                "pytorch": torch_trainer(torch, copy.deepcopy(theirs), args.lr, args.momentum)}
        with input_gradient_skipped(warm_model):
            train_epoch_interleaved(warm, x_train, y_train, batches[:3], chunk=3)

        load_before = os.getloadavg()
        steps = {"refimpl": refimpl_trainer(ours, args.lr, args.momentum),
                 "pytorch": torch_trainer(torch, theirs, args.lr, args.momentum)}
        with input_gradient_skipped(ours):  # as Trainer.fit does
            times, losses = train_epoch_interleaved(steps, x_train, y_train, batches, args.chunk)

        # dense inference on the test set, forward only; twice each (interleaved) and keep the faster run
        ours.eval()
        theirs.eval()

        def predict_torch(xb):
            with torch.inference_mode():
                return theirs(torch.from_numpy(xb)).numpy()

        inference = {"refimpl": [], "pytorch": []}
        for _ in range(2):
            inference["refimpl"].append(evaluate(ours.forward, x_test, y_test, args.eval_batch))
            inference["pytorch"].append(evaluate(predict_torch, x_test, y_test, args.eval_batch))
        load_after = os.getloadavg()

        profile = None
        if args.profile:
            ours.train()
            sgd = SGD(ours.parameters(), lr=0.0)  # lr 0: timing the update without moving the trained weights
            with input_gradient_skipped(ours):
                profile = profile_layers(ours, sgd.step, x_train, y_train, batches,
                                         repeats=min(50, len(batches)))

    row = {"model": model_name, "threads": threads, "gemm": gemm, "gemm_split": split_used,
           "train_images": int(len(order)), "batches": len(batches), "eval_images": int(len(x_test)),
           "loadavg_before": [round(v, 2) for v in load_before],
           "loadavg_after": [round(v, 2) for v in load_after], "frameworks": {}}
    for name in steps:
        seconds, accuracy = min(inference[name])[0], inference[name][0][1]
        row["frameworks"][name] = {
            "epoch_seconds": float(np.sum(times[name])),
            "median_batch_ms": 1e3 * float(np.median(times[name])),
            "min_batch_ms": 1e3 * float(np.min(times[name])),
            "final_train_loss": float(np.mean(losses[name][-50:])),
            "test_accuracy": accuracy,
            "inference_seconds": seconds,
            "inference_images_per_second": len(x_test) / seconds,
        }
    ref, pt = row["frameworks"]["refimpl"], row["frameworks"]["pytorch"]
    row["ratio_epoch_refimpl_over_pytorch"] = ref["epoch_seconds"] / pt["epoch_seconds"]
    row["ratio_median_batch_refimpl_over_pytorch"] = ref["median_batch_ms"] / pt["median_batch_ms"]
    row["ratio_inference_refimpl_over_pytorch"] = ref["inference_seconds"] / pt["inference_seconds"]
    if profile is not None:
        row["refimpl_layer_profile_ms"] = profile
    return row


def report_row(row: dict) -> None:
    """Print one row: the two frameworks side by side (and the per-layer profile when present)."""
    print(f"\n== {row['model']}, {row['threads']} threads, GEMMs {row['gemm']} "
          f"(split: {row['gemm_split']}), {row['train_images']} images; load "
          f"{row['loadavg_before']} -> {row['loadavg_after']}")
    print(f"{'':10s} {'epoch s':>9s} {'median ms/batch':>16s} {'train loss':>11s} {'test acc':>9s} "
          f"{'infer img/s':>12s}")
    for name, r in row["frameworks"].items():
        print(f"{name:10s} {r['epoch_seconds']:9.2f} {r['median_batch_ms']:16.2f} "
              f"{r['final_train_loss']:11.4f} {r['test_accuracy']:9.4f} "
              f"{r['inference_images_per_second']:12.0f}")
    print(f"ratio refimpl / PyTorch: epoch {row['ratio_epoch_refimpl_over_pytorch']:.3f}, "
          f"median batch {row['ratio_median_batch_refimpl_over_pytorch']:.3f}, "
          f"inference {row['ratio_inference_refimpl_over_pytorch']:.3f}")
    profile = row.get("refimpl_layer_profile_ms")
    if profile:
        print(f"refimpl per layer (median ms over the profiled batches)\n{'layer':10s} {'forward':>9s} "
              f"{'backward':>9s}")
        for name, t in profile.items():
            print(f"{name:10s} {t['forward_ms']:9.3f} {t['backward_ms']:9.3f}")


if __name__ == "__main__":
    main()
