"""The ``refimpl`` command: one subcommand per task, each a thin layer over the library.

.. code-block:: text

    refimpl train --model lenet5 --dataset fashion-mnist --epochs 10 --out runs/lenet5-fmnist
    refimpl train --model lenet5 --dataset fashion-mnist --epochs 20 --out runs/lenet5-fmnist --resume

``refimpl train`` writes into ``--out``:

==================  ==========================================================================
``config.json``     every setting of the run (the command line, resolved), dataset and model summary
``log.jsonl``       one JSON record per epoch (:mod:`refimpl.train.log`): loss, accuracy, lr, time
``checkpoint.npz``  the latest checkpoint (:mod:`refimpl.train.checkpoint`); ``--resume`` continues it
``model.npz``       the final weights and buffers, PyTorch names (``np.load`` / ``Module.load``)
``results.json``    the final test loss and accuracy (also printed)
==================  ==========================================================================

A rerun into a directory that already holds a run is refused unless ``--resume`` is given, and a resumed
run must keep every setting except ``--epochs`` (the new total), ``--data-root`` and ``--no-progress``.

Adding a subcommand
-------------------
Write ``_add_<name>(subparsers)``, which creates the subparser, adds its options (the shared groups
:func:`add_data_arguments` and :func:`add_optimizer_arguments` are there to reuse) and sets
``func=<function taking the parsed args and returning an exit code>``; then list it in
:data:`SUBCOMMANDS`. A :class:`CommandError` raised by ``func`` (wrap the library's ``ValueError`` etc.
met while setting up) is printed as ``refimpl <command>: error: ...`` with exit code 1; argument errors
exit with argparse's code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from refimpl._io import atomic_write_json

__all__ = [
    "SUBCOMMANDS",
    "CommandError",
    "add_data_arguments",
    "add_optimizer_arguments",
    "build_parser",
    "main",
]


class CommandError(Exception):
    """A subcommand cannot run with these settings or this data; :func:`main` prints it in one line."""

_DTYPES = ("float32", "float64")


# --- argument types ----------------------------------------------------------------------------------


def _int_at_least(minimum: int):
    """Argparse type: an integer ``>= minimum`` (the message names the bound)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def _nonnegative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value >= 0.0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


# --- shared option groups ----------------------------------------------------------------------------


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--dataset``, ``--data-root``, ``--val-fraction``, ``--limit-train`` and ``--dtype``."""
    from refimpl.data import DATASETS

    group = parser.add_argument_group("data")
    group.add_argument("--dataset", default="digits", choices=DATASETS, help="dataset name (default: digits)")
    group.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                       help="directory with the dataset files, searched before $REFIMPL_DATA and the cache")
    group.add_argument("--val-fraction", type=float, default=0.0,
                       help="share of the training split held out for validation (default: 0)")
    group.add_argument("--limit-train", type=_int_at_least(1), default=None, metavar="N",
                       help="train on the first N training images only (quick runs)")
    group.add_argument("--dtype", choices=_DTYPES, default="float32",
                       help="floating-point type (default: float32)")


def add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the optimizer and schedule options (``--optimizer`` ... ``--gamma``)."""
    group = parser.add_argument_group("optimization")
    group.add_argument("--epochs", type=_int_at_least(1), default=10,
                       help="total number of epochs (default: 10)")
    group.add_argument("--batch-size", type=_int_at_least(1), default=64,
                       help="mini-batch size (default: 64)")
    group.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="default: sgd")
    group.add_argument("--lr", type=_nonnegative_float, default=0.01, help="learning rate (default: 0.01)")
    group.add_argument("--momentum", type=_nonnegative_float, default=0.9, help="SGD momentum (default: 0.9)")
    group.add_argument("--nesterov", action="store_true", help="Nesterov momentum (SGD)")
    group.add_argument("--weight-decay", type=_nonnegative_float, default=0.0,
                       help="L2 weight decay added to the gradient (default: 0)")
    group.add_argument("--schedule", choices=("constant", "step", "cosine"), default="constant",
                       help="learning-rate schedule (default: constant); cosine decays to 0 at --epochs")
    group.add_argument("--step-size", type=_int_at_least(1), default=None,
                       help="epochs between decays of the step schedule (default: max(1, epochs // 3))")
    group.add_argument("--gamma", type=_nonnegative_float, default=0.1,
                       help="step schedule factor (default: 0.1)")


# --- refimpl train -----------------------------------------------------------------------------------

# Settings that may change when a run is resumed; every other one must equal the original's.
_RESUMABLE_CHANGES = {"epochs", "resume", "progress", "data_root", "out", "command"}


def _add_train(subparsers) -> None:
    from refimpl.models import MODELS

    parser = subparsers.add_parser(
        "train", help="train a model and save its log, checkpoints and weights",
        description="Train a model on a dataset. Writes config.json, log.jsonl, checkpoint.npz, model.npz "
                    "and results.json into --out and prints the final test accuracy.",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="lenet5",
                        help="architecture (default: lenet5)")
    add_data_arguments(parser)
    add_optimizer_arguments(parser)
    parser.add_argument("--seed", type=_int_at_least(0), default=0,
                        help="seed of the initial weights, the shuffling and the validation split "
                             "(default: 0)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="run directory, e.g. runs/NAME")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its checkpoint (up to --epochs in total)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--threads", type=_int_at_least(0), default=0,
                        help="numba and BLAS threads (default 0: the libraries' defaults; 1 is fastest for "
                             "LeNet-sized models on a busy machine, see refimpl.threads)")
    parser.set_defaults(func=run_train)


def _config(args: argparse.Namespace) -> dict:
    """Return the run's settings as JSON values (paths as strings, the subcommand's function left out)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}


def _check_resume(out: Path, config: dict) -> None:
    """Refuse to resume a run whose settings differ (other than epochs / paths / progress)."""
    path = out / "config.json"
    if not path.is_file():
        return  # nothing to compare with: a fresh start (fit(resume=True) also finds no checkpoint)
    saved = json.loads(path.read_text())["args"]
    changed = sorted(
        k for k in set(saved) | set(config)
        if k not in _RESUMABLE_CHANGES and saved.get(k) != config.get(k)
    )
    if changed:
        details = ", ".join(f"--{k.replace('_', '-')} {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
        raise ValueError(f"cannot resume {out}: settings differ from the saved run ({details})")


def _write_json(path: Path, value) -> None:
    """Write JSON atomically (:mod:`refimpl._io`), so a crash never leaves half a file."""
    atomic_write_json(path, value, sort_keys=True)


def _build_optimizer(args, params):
    from refimpl.train import SGD, Adam

    if args.optimizer == "adam":
        return Adam(params, lr=args.lr, weight_decay=args.weight_decay)
    return SGD(params, lr=args.lr, momentum=args.momentum, nesterov=args.nesterov,
               weight_decay=args.weight_decay)


def _build_schedule(args):
    from refimpl.train import ConstantLR, CosineAnnealingLR, StepLR

    if args.schedule == "step":
        return StepLR(args.lr, step_size=args.step_size or max(1, args.epochs // 3), gamma=args.gamma)
    if args.schedule == "cosine":
        return CosineAnnealingLR(args.lr, T_max=args.epochs)
    return ConstantLR(args.lr)


def run_train(args: argparse.Namespace) -> int:
    """Carry out ``refimpl train`` (see the module docstring for the files written)."""
    from refimpl.data import CorruptDatasetError, DatasetNotFoundError
    from refimpl.threads import thread_limit
    from refimpl.train import evaluate

    out: Path = args.out
    config = _config(args)
    # Setting up can fail because of the settings or the data: report that in one line. Failures while
    # training are bugs and keep their traceback.
    try:
        ds, model, trainer, x_train, y_train = _setup_train(args, config)
    except (ValueError, TypeError, DatasetNotFoundError, CorruptDatasetError) as err:
        raise CommandError(str(err)) from err

    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "config.json", {
        "args": config,
        "dataset": {"name": ds.name, "source": ds.source, "input_shape": list(ds.input_shape),
                    "num_classes": ds.num_classes, "n_train": int(len(y_train)),
                    "n_val": 0 if ds.y_val is None else int(len(ds.y_val)), "n_test": int(len(ds.y_test)),
                    "mean": list(ds.mean), "std": list(ds.std)},
        "model": {"name": args.model, "parameters": int(model.num_parameters())},
    })
    done_before = _checkpoint_epoch(out) if args.resume else 0
    with thread_limit(args.threads):
        history = trainer.fit(resume=args.resume)
        test = evaluate(model, ds.x_test, ds.y_test, batch_size=max(args.batch_size, 256))

    for record in history[done_before:]:
        val = "" if record.get("val_acc") is None else f"  val_acc {record['val_acc']:.4f}"
        print(f"epoch {record['epoch'] + 1}/{args.epochs}  lr {record['lr']:.4g}  "
              f"train_loss {record['train_loss']:.4f}  train_acc {record['train_acc']:.4f}{val}")
    model.save(out / "model.npz")
    _write_json(out / "results.json", {"epochs": trainer.epoch, "test_loss": test["loss"],
                                      "test_accuracy": test["accuracy"]})
    print(f"test accuracy: {test['accuracy']:.4f} ({len(ds.y_test)} images; run saved in {out})")
    return 0


def _setup_train(args: argparse.Namespace, config: dict):
    """Check the settings, load the data, build the model, optimizer, schedule and trainer."""
    from refimpl.data import load_dataset
    from refimpl.models import build_model
    from refimpl.train import Trainer

    out: Path = args.out
    if args.resume:
        _check_resume(out, config)
    elif (out / "checkpoint.npz").exists() or (out / "config.json").exists():
        raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if args.nesterov and args.optimizer != "sgd":
        raise ValueError("--nesterov applies to --optimizer sgd only")

    dtype = np.dtype(args.dtype)
    ds = load_dataset(args.dataset, args.data_root, dtype=dtype, val_fraction=args.val_fraction,
                      seed=args.seed, progress=args.progress)
    x_train, y_train = ds.x_train, ds.y_train
    if args.limit_train is not None:
        x_train, y_train = x_train[: args.limit_train], y_train[: args.limit_train]
    channels, size, _ = ds.input_shape
    model = build_model(args.model, num_classes=ds.num_classes, in_channels=channels, input_size=size,
                        rng=np.random.default_rng(args.seed), dtype=dtype)
    optimizer = _build_optimizer(args, model.parameters())
    trainer = Trainer(
        model, optimizer, (x_train, y_train),
        val_data=None if ds.x_val is None else (ds.x_val, ds.y_val),
        batch_size=args.batch_size, epochs=args.epochs, schedule=_build_schedule(args), seed=args.seed,
        out_dir=out, progress=args.progress,
    )
    return ds, model, trainer, x_train, y_train


def _checkpoint_epoch(out: Path) -> int:
    """Epochs already done by the run checkpointed in ``out``, 0 without one (to print only new epochs)."""
    from refimpl.train import latest_checkpoint, load_checkpoint

    path = latest_checkpoint(out)
    return 0 if path is None else int(load_checkpoint(path)["position"]["epoch"])


# --- refimpl prune -----------------------------------------------------------------------------------

# ``add_data_arguments`` option -> config key; only options given on the command line override the file.
_DATA_OVERRIDES = {"dataset": "data.name", "data_root": "data.root", "val_fraction": "data.val_fraction",
                   "limit_train": "data.limit_train", "dtype": "data.dtype"}


def _add_prune(subparsers) -> None:
    parser = subparsers.add_parser(
        "prune", help="run a pruning experiment from a TOML config (pretrain, ADMM, prune, retrain, compact)",
        description="Run the experiment of a TOML config (refimpl.config): pretrain (or load weights), ADMM "
                    "or magnitude pruning, masked retraining, optional purification, compaction; write "
                    "config, logs, checkpoints, masks, weights and the report into --out "
                    "(see refimpl.pipeline).",
    )
    parser.add_argument("--config", type=Path, required=True, metavar="FILE", help="experiment TOML file")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="run directory")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (finished phases are skipped, the current one "
                             "continues from its checkpoint)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set admm.epochs=2 (repeatable; TOML values)")
    add_data_arguments(parser)
    # Data options override the config only when given, so their defaults here are "not given".
    parser.set_defaults(func=run_prune, dataset=None, val_fraction=None, dtype=None)


def run_prune(args: argparse.Namespace) -> int:
    """Carry out ``refimpl prune`` (see :mod:`refimpl.pipeline` for the files written)."""
    from refimpl.config import load_config, parse_override
    from refimpl.data import CorruptDatasetError, DatasetNotFoundError
    from refimpl.pipeline import SetupError, run_experiment

    try:
        overrides = {key: str(getattr(args, option)) if option == "data_root" else getattr(args, option)
                     for option, key in _DATA_OVERRIDES.items() if getattr(args, option) is not None}
        overrides.update(parse_override(text) for text in args.overrides)
        config = load_config(args.config, overrides)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise CommandError(str(err)) from err
    try:
        run_experiment(config, args.out, resume=args.resume, progress=args.progress)
    except (SetupError, DatasetNotFoundError, CorruptDatasetError) as err:
        # Problems found before training starts are one-line errors; anything later keeps its traceback.
        raise CommandError(str(err)) from err
    return 0


# --- refimpl demo ------------------------------------------------------------------------------------


def _add_demo(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="the main job: prune a small CNN on digits (offline, a few minutes) and report",
        description="Train LeNet-5 on scikit-learn's 8x8 digits, ADMM-prune it with filter + shape "
                    "constraints, retrain, compact, and print accuracy before/after, parameter and MAC "
                    "reduction and the measured inference speedup; saves <out>/demo.png (refimpl.demo).",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), metavar="DIR",
                        help="run directory (default: runs/demo; an existing demo run there is replaced)")
    parser.add_argument("--quick", action="store_true", help="a few epochs only (a smoke test, ~10 s)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    """Carry out ``refimpl demo``."""
    from refimpl.demo import run_demo

    try:
        run_demo(args.out, quick=args.quick, progress=args.progress)
    except ValueError as err:
        raise CommandError(str(err)) from err
    return 0


# --- the parser and the entry point ------------------------------------------------------------------

SUBCOMMANDS = (_add_train, _add_prune, _add_demo)
"""One ``_add_<name>(subparsers)`` per subcommand, in the order ``refimpl --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """Return the ``refimpl`` argument parser with every subcommand of :data:`SUBCOMMANDS`."""
    from refimpl import __version__

    parser = argparse.ArgumentParser(
        prog="refimpl", description="Reference implementation of structured weight pruning.",
    )
    parser.add_argument("--version", action="version", version=f"refimpl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Argument errors exit through argparse (code 2, usage on stderr). A :class:`CommandError` (a
    subcommand found the settings or the data unusable: the library's ``ValueError`` / ``TypeError``, a
    missing or corrupt dataset) is printed on one line as ``refimpl <command>: error: ...`` and gives exit
    code 1, without a traceback. Anything else is a bug and keeps its traceback.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as err:
        print(f"refimpl {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # python -m refimpl.cli
    sys.exit(main())
