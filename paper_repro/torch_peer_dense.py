"""The PyTorch peer of a dense refimpl recipe: the same network, initial weights, data split and schedule.

A refimpl training config (``method = "none"``, a ``[pretrain]`` phase) is read, its model built exactly as
``refimpl train`` builds it (same seed, so the same initial weights), and its PyTorch twin
(:func:`refimpl.testing.torch_twin.torch_twin`) trained with the same recipe: SGD with the config's
momentum, Nesterov flag and weight decay (PyTorch's update rules are refimpl's, line for line), the
learning rate of refimpl's schedule set at the start of every epoch, the same batch size and data
augmentation (``augment``), on the same training images (the same validation split is held out). Only
the batch order and the augmentation draws differ (the peer has its own seeded NumPy generators), so the
two runs are two draws of one recipe: the question
is whether they end within seed noise of each other, not whether they match step for step (that is what
``tests/test_models.py`` checks).

Usage::

    python paper_repro/torch_peer_dense.py --config paper_repro/configs/vgg_small_fashion_dense.toml \\
        --output paper_repro/results/vgg_small_dense_torch.json

Prints one line per epoch (loss, validation and test accuracy, seconds) and writes them as JSON.
"""

from __future__ import annotations

from refimpl.threads import configure_defaults  # noqa: E402  (before NumPy/numba load)

configure_defaults()

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from refimpl._io import atomic_write_json  # noqa: E402
from refimpl.config.loading import load_config  # noqa: E402
from refimpl.data import load_dataset  # noqa: E402
from refimpl.engine.build import build_model_for, build_schedule  # noqa: E402
from refimpl.testing.torch_twin import torch_twin  # noqa: E402
from refimpl.train.augment import make_augmentation  # noqa: E402


def accuracy(torch, model, x: np.ndarray, y: np.ndarray, batch: int = 1000) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``x``."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            logits = model(torch.from_numpy(x[start:start + batch]))
            correct += int((logits.argmax(1).numpy() == y[start:start + batch]).sum())
    model.train()
    return correct / len(x)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="a refimpl config with a [pretrain] phase")
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the per-epoch results")
    parser.add_argument("--epochs", type=int, default=None, help="override the config's epochs (smoke runs)")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images (smoke runs)")
    args = parser.parse_args(argv)

    import torch

    config = load_config(args.config)
    if config.method != "none":
        raise SystemExit(f"{args.config}: the peer reproduces dense recipes (method = 'none'), "
                         f"got method = {config.method!r}")
    phase = config.pretrain
    epochs = phase.epochs if args.epochs is None else args.epochs
    torch.set_num_threads(max(1, config.threads or 1))
    d = config.data
    data = load_dataset(d.name, d.root, download=d.download, dtype=np.dtype(d.dtype),
                        val_fraction=d.val_fraction, path=d.path,
                        seed=config.seed if d.split_seed is None else d.split_seed)
    x_train, y_train = np.ascontiguousarray(data.x_train), data.y_train.astype(np.int64)
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
    x_test, y_test = np.ascontiguousarray(data.x_test), data.y_test.astype(np.int64)
    x_val = None if data.x_val is None else np.ascontiguousarray(data.x_val)
    y_val = None if data.y_val is None else data.y_val.astype(np.int64)

    model = torch_twin(build_model_for(config, data.input_shape, data.num_classes))
    if phase.optimizer != "sgd":
        raise SystemExit(f"the peer implements the SGD recipes, got optimizer = {phase.optimizer!r}")
    optimizer = torch.optim.SGD(model.parameters(), lr=phase.lr, momentum=phase.momentum,
                                nesterov=phase.nesterov, weight_decay=phase.weight_decay)
    schedule = build_schedule(phase, epochs)
    augment = make_augmentation(phase.augment, phase.augment_pad)  # the config's, on the NumPy batch
    rng, augment_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(2))
    history = []
    result = {"config": str(args.config), "epochs": epochs, "epochs_done": 0, "history": history,
              "final_test_accuracy": None}
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = schedule.lr_at(epoch)
        t0 = time.perf_counter()
        order = rng.permutation(len(x_train))
        losses = []
        for start in range(0, len(order), phase.batch_size):
            idx = order[start:start + phase.batch_size]
            x_batch = x_train[idx] if augment is None else augment(x_train[idx], augment_rng)
            optimizer.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x_batch)),
                                                     torch.from_numpy(y_train[idx]))
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch, "lr": schedule.lr_at(epoch), "train_loss": float(np.mean(losses)),
               "val_acc": None if x_val is None else accuracy(torch, model, x_val, y_val),
               "test_acc": accuracy(torch, model, x_test, y_test), "seconds": seconds}
        history.append(row)
        print(f"epoch {epoch}: lr {row['lr']:.4f} loss {row['train_loss']:.4f} val {row['val_acc']} "
              f"test {row['test_acc']:.4f} ({seconds:.0f} s)", flush=True)
        result = {"config": str(args.config), "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "train_images": int(len(x_train)), "epochs": epochs, "epochs_done": epoch + 1,
                  "history": history, "final_test_accuracy": row["test_acc"] if epoch + 1 == epochs else None}
        if args.output is not None:  # after every epoch, atomically: a stopped run keeps what it did
            args.output.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(args.output, result)
    if args.output is not None:
        print(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
