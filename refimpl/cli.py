"""The ``refimpl`` command: one subcommand per task, each a thin layer over the library.

.. code-block:: text

    refimpl train --model lenet5 --dataset fashion-mnist --epochs 10 --out runs/lenet5-fmnist
    refimpl prune --config paper_repro/configs/smoke_digits.toml --out runs/smoke
    refimpl prune --config paper_repro/configs/smoke_digits.toml --out runs/smoke --resume
    refimpl oracle generate golden/ && refimpl oracle check golden/ --results my_outputs/

``refimpl train`` and ``refimpl prune`` are the same engine (:func:`refimpl.engine.run_experiment`):
``train`` is an experiment with ``method = "none"`` whose command-line options set the ``pretrain``
settings, ``prune`` runs a TOML experiment file. Options that are not given keep the value of the config
file, or else the default of :mod:`refimpl.config.schema` — the one place defaults live. Both write the
run directory described in :mod:`refimpl.engine.artifacts` (for ``train``: ``pretrain/log.jsonl``,
``pretrain/checkpoint.npz``, ``pretrain/model.npz``, ``results.json``, ``report.txt``...).

A run directory must be new or empty; one that holds a run is refused unless ``--resume`` is given (and
the settings are the same), and a non-empty directory that holds no refimpl run is always refused,
never written into.

Adding a subcommand
-------------------
Write ``_add_<name>(subparsers)``, which creates the subparser, adds its options (the shared groups
:func:`add_data_arguments` and :func:`add_optimizer_arguments` are there to reuse) and sets
``func=<function taking the parsed args and returning an exit code>``; then list it in
:data:`SUBCOMMANDS`. A :class:`CommandError` raised by ``func`` (wrap the library's ``ValueError`` etc.
met while setting up) is printed as ``refimpl <command>: error: ...`` with exit code 1; argument errors
exit with argparse's code 2.

Errors
------
**Every failure is one line on stderr and a non-zero exit, never a traceback** (:func:`main`): besides
:class:`CommandError`, any exception a subcommand raises is caught and printed in one line. The
library's argument and data errors (``ValueError``, ``TypeError``, ``KeyError``; a corrupt checkpoint's
:class:`~refimpl.train.checkpoint.CheckpointError`, whose message says to delete or restore the file) print
their message; ``OSError`` prints the system's reason and the path (``--out`` under an unwritable
directory, a directory where refimpl writes a file); anything else is reported as an *internal error*
(a bug: the line says so and asks for a report). Exit code 1; 130 after Ctrl-C. **``--debug``** (before
or after the subcommand: ``refimpl --debug prune ...``) lets the exception propagate with its full
traceback instead. The one message longer than a line is a dataset that is not found: the error line is
followed by the places searched and the ways to provide the files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

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
# Every option defaults to None ("not given"): a given option overrides the config key it is mapped to,
# the others leave the config file's value or the schema's default alone. The help texts quote those
# defaults from the schema, so the two cannot drift.

#: ``add_data_arguments`` option -> config key.
_DATA_OPTIONS = {"dataset": "data.name", "data_root": "data.root", "data_path": "data.path",
                 "val_fraction": "data.val_fraction", "limit_train": "data.limit_train",
                 "dtype": "data.dtype"}

#: ``add_optimizer_arguments`` option -> key inside a training section (``pretrain.lr`` ...).
_OPTIMIZER_OPTIONS = ("epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov", "weight_decay",
                      "schedule", "step_size", "gamma")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the data options ``--dataset`` ... ``--dtype``.

    Each overrides its ``data.*`` key when given (:data:`_DATA_OPTIONS`).
    """
    from refimpl.config import DataConfig
    from refimpl.data import DATASETS

    d = DataConfig()
    group = parser.add_argument_group("data (default: the config's values)")
    group.add_argument("--dataset", default=None, choices=DATASETS, help=f"dataset name (default: {d.name})")
    group.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                       help="directory with the dataset files, searched before $REFIMPL_DATA and the cache")
    group.add_argument("--data-path", type=Path, default=None, metavar="FILE",
                       help="your own data for --dataset npz: an .npz file with x_train, y_train, x_test, "
                            "y_test (refimpl.data)")
    group.add_argument("--val-fraction", type=float, default=None,
                       help="share of the training split held out for validation "
                            f"(default: {d.val_fraction})")
    group.add_argument("--limit-train", type=_int_at_least(1), default=None, metavar="N",
                       help="train on the first N training images only (quick runs)")
    group.add_argument("--dtype", choices=_DTYPES, default=None,
                       help=f"floating-point type (default: {d.dtype})")


def add_optimizer_arguments(parser: argparse.ArgumentParser, section: str = "pretrain") -> None:
    """Add the optimizer and schedule options (``--epochs`` ... ``--gamma``) of config ``section``."""
    from refimpl.config import ExperimentConfig

    t = getattr(ExperimentConfig(), section)
    group = parser.add_argument_group(f"optimization (the [{section}] settings)")
    group.add_argument("--epochs", type=_int_at_least(1), default=None,
                       help=f"number of epochs (default: {t.epochs})")
    group.add_argument("--batch-size", type=_int_at_least(1), default=None,
                       help=f"mini-batch size (default: {t.batch_size})")
    group.add_argument("--optimizer", choices=("sgd", "adam"), default=None, help=f"default: {t.optimizer}")
    group.add_argument("--lr", type=_nonnegative_float, default=None, help=f"learning rate (default: {t.lr})")
    group.add_argument("--momentum", type=_nonnegative_float, default=None,
                       help=f"SGD momentum (default: {t.momentum})")
    group.add_argument("--nesterov", action="store_true", default=None, help="Nesterov momentum (SGD)")
    group.add_argument("--weight-decay", type=_nonnegative_float, default=None,
                       help=f"L2 weight decay added to the gradient (default: {t.weight_decay})")
    group.add_argument("--schedule", choices=("constant", "step", "cosine"), default=None,
                       help=f"learning-rate schedule (default: {t.schedule}); cosine decays to 0 at --epochs")
    group.add_argument("--step-size", type=_int_at_least(1), default=None,
                       help="epochs between decays of the step schedule (default: max(1, epochs // 3))")
    group.add_argument("--gamma", type=_nonnegative_float, default=None,
                       help=f"step schedule factor (default: {t.gamma})")


def _add_run_arguments(parser: argparse.ArgumentParser, *, config_required: bool) -> None:
    """``--config``, ``--set``, ``--out``, ``--resume``, ``--no-progress``: every engine command has them."""
    parser.add_argument("--config", type=Path, required=config_required, default=None, metavar="FILE",
                        help="experiment TOML file (refimpl.config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set admm.epochs=2 (repeatable; TOML values)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="run directory (new or empty; or a run to --resume)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out (finished phases are skipped, the current one "
                             "continues from its checkpoint); the settings must be the same")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def _load_experiment(args: argparse.Namespace, options: dict[str, str], fixed: dict | None = None):
    """Load ``--config`` (or the defaults), then ``options`` (option -> key), ``--set``, ``fixed``."""
    from refimpl.config import load_config, parse_override

    try:
        overrides = {key: str(getattr(args, option)) if isinstance(getattr(args, option), Path)
                     else getattr(args, option)
                     for option, key in options.items() if getattr(args, option, None) is not None}
        overrides.update(parse_override(text) for text in args.overrides)
        overrides.update(fixed or {})
        return load_config(args.config, overrides)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise CommandError(str(err)) from err


def _run(config, args: argparse.Namespace) -> dict:
    """Run ``config`` into ``--out`` through the engine; setup problems become one-line errors."""
    from refimpl.engine import SetupError, run_experiment

    try:
        return run_experiment(config, args.out, resume=args.resume, progress=args.progress)
    except SetupError as err:
        # Problems found before training starts are one-line errors; anything later keeps its traceback.
        raise CommandError(str(err)) from err


# --- refimpl train -----------------------------------------------------------------------------------


def _add_train(subparsers) -> None:
    from refimpl.models import MODELS

    parser = subparsers.add_parser(
        "train", help="train a dense model and save its log, checkpoints and weights",
        description="Train a model on a dataset: an experiment with method = 'none' (refimpl.engine). "
                    "Writes config, pretrain/log.jsonl, checkpoints, weights, report.txt and results.json "
                    "into --out and prints the test accuracy. Options not given keep the --config file's "
                    "values or the defaults of refimpl.config.",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default=None,
                        help="architecture (default: lenet5)")
    add_data_arguments(parser)
    add_optimizer_arguments(parser, "pretrain")
    parser.add_argument("--seed", type=_int_at_least(0), default=None,
                        help="seed of the initial weights, the shuffling and the validation split "
                             "(default: 0)")
    parser.add_argument("--threads", type=_int_at_least(0), default=None,
                        help="numba and BLAS threads (default 0: the libraries' defaults; 1 is fastest for "
                             "LeNet-sized models on a busy machine, see refimpl.threads)")
    _add_run_arguments(parser, config_required=False)
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    """Carry out ``refimpl train`` (an experiment with ``method = "none"``)."""
    options = {"model": "model.name", "seed": "seed", "threads": "threads", **_DATA_OPTIONS,
               **{option: f"pretrain.{option}" for option in _OPTIMIZER_OPTIONS}}
    report = _run(_load_experiment(args, options, fixed={"method": "none"}), args)
    print(f"test accuracy: {report['accuracy']['dense']:.4f} ({report['n_test']} images; run saved in "
          f"{args.out})")
    return 0


# --- refimpl prune -----------------------------------------------------------------------------------


def _add_prune(subparsers) -> None:
    parser = subparsers.add_parser(
        "prune", help="run a pruning experiment from a TOML config (pretrain, ADMM, prune, retrain, compact)",
        description="Run the experiment of a TOML config (refimpl.config): pretrain (or load weights), ADMM, "
                    "SSL group lasso, gradual or magnitude pruning, masked retraining, optional "
                    "purification, compaction; write config, logs, checkpoints, masks, weights and the "
                    "report into --out (see refimpl.engine).",
    )
    _add_run_arguments(parser, config_required=True)
    add_data_arguments(parser)
    parser.set_defaults(func=run_prune)


def run_prune(args: argparse.Namespace) -> int:
    """Carry out ``refimpl prune`` (see :mod:`refimpl.engine` for the files written)."""
    _run(_load_experiment(args, _DATA_OPTIONS), args)
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
                        help="run directory (default: runs/demo); an earlier demo run with the same "
                             "settings there is reused, any other non-empty directory is refused")
    parser.add_argument("--quick", action="store_true", help="a few epochs only (a smoke test, ~10 s)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    """Carry out ``refimpl demo``."""
    from refimpl.data import DatasetNotFoundError
    from refimpl.demo import run_demo
    from refimpl.engine import SetupError

    try:
        run_demo(args.out, quick=args.quick, progress=args.progress)
    except (SetupError, DatasetNotFoundError) as err:
        raise CommandError(str(err)) from err
    return 0


# --- refimpl sweep -----------------------------------------------------------------------------------


def _add_sweep(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="run a grid of experiments from a sweep file on dask.distributed (resumable)",
        description="Expand a sweep file (a base config, [set], [grid], [[variants]], budget) into runs and "
                    "run each as a dask.distributed task, on a local cluster or an existing one; finished "
                    "runs are skipped and interrupted ones resumed on every invocation "
                    "(refimpl.engine.sweep). Exit code 1 if any run failed.",
    )
    parser.add_argument("sweep", type=Path, metavar="SWEEP.toml", help="the sweep file")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="sweep directory: sweep.json, runs/<name>/, failures.json")
    parser.add_argument("--workers", type=_int_at_least(1), default=None, metavar="N",
                        help="worker processes of the local cluster (default: the number of CPUs)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run on an existing dask cluster, e.g. tls://HOST:8786 (its workers must see "
                             "DIR at the same path)")
    parser.add_argument("--insecure", action="store_true",
                        help="accept a plaintext tcp:// scheduler address of another machine (dask runs any "
                             "code sent to it: only on a network you trust)")
    parser.add_argument("--dashboard", action="store_true",
                        help="serve the local cluster's dask dashboard on 127.0.0.1:8787")
    parser.add_argument("--dry-run", action="store_true",
                        help="list the runs, their differing settings and their state in DIR; run nothing")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    parser.set_defaults(func=run_sweep_command)


def run_sweep_command(args: argparse.Namespace) -> int:
    """Carry out ``refimpl sweep``: 0 when every run finished, 1 when one failed."""
    from refimpl.engine.sweep import format_dry_run, load_sweep, run_sweep

    try:
        sweep = load_sweep(args.sweep)
        if args.dry_run:
            print(format_dry_run(sweep, args.out))
            return 0
        summary = run_sweep(sweep, args.out, workers=args.workers, scheduler=args.scheduler,
                            insecure=args.insecure, progress=args.progress, dashboard=args.dashboard)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise CommandError(str(err)) from err
    except KeyboardInterrupt:
        print(f"refimpl sweep: interrupted; run the same command again to resume ({args.out})",
              file=sys.stderr)
        return 130
    return 0 if summary.ok else 1


# --- refimpl results ---------------------------------------------------------------------------------


def _add_results(subparsers) -> None:
    from refimpl.engine.results import RESULT_FORMATS

    parser = subparsers.add_parser(
        "results", help="one table of the runs of a sweep, a run directory or a directory of runs",
        description="Collect one row per run (grid values, dataset, model, method, structures, seed, "
                    "per-layer and overall sparsity, accuracies, parameters, MACs, compression, wall time, "
                    "status) and print or write it (refimpl.engine.results).",
    )
    parser.add_argument("path", type=Path, metavar="DIR",
                        help="a sweep directory, a run, or a directory of runs")
    parser.add_argument("--format", choices=RESULT_FORMATS, default=None,
                        help="output format (default: from --output's suffix .csv/.json/.md, else markdown)")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE",
                        help="write the table to FILE (atomically) instead of printing it")
    parser.set_defaults(func=run_results_command)


def run_results_command(args: argparse.Namespace) -> int:
    """Carry out ``refimpl results``."""
    from refimpl._io import atomic_write_text
    from refimpl.engine.results import collect_results, format_for_path, format_results

    try:
        fmt = args.format or format_for_path(args.output)
        text = format_results(collect_results(args.path), fmt)
    except (ValueError, TypeError, FileNotFoundError) as err:
        raise CommandError(str(err)) from err
    if args.output is None:
        print(text, end="")
    else:
        atomic_write_text(args.output, text)
    return 0


# --- refimpl oracle ----------------------------------------------------------------------------------


def _add_oracle(subparsers) -> None:
    parser = subparsers.add_parser(
        "oracle", help="golden vectors for other implementations: generate them, check results against them",
        description="refimpl as a correctness oracle for any language (refimpl.testing.golden): 'generate' "
                    "writes every golden case (projections, layers, an ADMM step, a compaction) as .npy "
                    "files and one manifest.json; 'check' compares another implementation's outputs with "
                    "them.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    generate = actions.add_parser("generate", help="write the golden cases into DIR (new or empty)")
    generate.add_argument("dir", type=Path, metavar="DIR")
    check = actions.add_parser(
        "check", help="compare RESULTS/<case>/<output>.npy with the golden set in DIR",
        description="Print one row per case (pass, or the first differing output: the property it violates, "
                    "its worst entry, expected and got); exit code 1 if any case fails.")
    check.add_argument("dir", type=Path, metavar="DIR", help="a golden set (with manifest.json)")
    check.add_argument("--results", type=Path, required=True, metavar="RESULTS",
                       help="the outputs of the implementation under test, RESULTS/<case>/<output>.npy")
    for sub in (generate, check):  # --debug after the action too (refimpl oracle check DIR ... --debug)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="on failure show the full traceback instead of the one-line error")
    parser.set_defaults(func=run_oracle_command)


def run_oracle_command(args: argparse.Namespace) -> int:
    """Carry out ``refimpl oracle generate|check``."""
    from refimpl.testing.golden import check_results, generate, load_manifest

    try:
        if args.action == "generate":
            path = generate(args.dir)
            print(f"wrote {len(load_manifest(args.dir)['cases'])} golden cases: {path}")
            return 0
        report = check_results(args.dir, args.results)
    except (ValueError, TypeError) as err:
        raise CommandError(str(err)) from err
    print(report)
    return 0 if report.passed else 1


# --- the parser and the entry point ------------------------------------------------------------------

SUBCOMMANDS = (_add_train, _add_prune, _add_demo, _add_sweep, _add_results, _add_oracle)
"""One ``_add_<name>(subparsers)`` per subcommand, in the order ``refimpl --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """Return the ``refimpl`` argument parser with every subcommand of :data:`SUBCOMMANDS`."""
    from refimpl import __version__

    parser = argparse.ArgumentParser(
        prog="refimpl", description="Reference implementation of structured weight pruning.",
    )
    parser.add_argument("--version", action="version", version=f"refimpl {__version__}")
    debug_help = "on failure show the full traceback instead of the one-line error"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    for sub in subparsers.choices.values():  # also accepted after the subcommand (refimpl prune ... --debug)
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    return parser


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _describe_error(err: BaseException) -> str:
    """One line for an exception a subcommand raised (see "Errors" in the module docstring)."""
    if isinstance(err, OSError) and err.strerror:
        where = "" if err.filename is None else f": {err.filename}"
        if err.filename2 is not None:
            where += f" -> {err.filename2}"
        hint = {IsADirectoryError: "a directory stands where refimpl writes a file: remove or rename it",
                NotADirectoryError: "a file stands where refimpl needs a directory: remove or rename it",
                PermissionError: "check the permissions, or choose another --out",
                FileNotFoundError: "check the path"}.get(type(err), "check the path and the disk")
        return f"{err.strerror}{where} ({hint})"
    message = _first_line(str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err))
    if isinstance(err, (ValueError, TypeError, KeyError, OSError)):
        return message or type(err).__name__
    if isinstance(err, MemoryError):
        detail = f": {message}" if message else ""
        return f"out of memory{detail} (try a smaller batch size, model or dataset)"
    return (f"internal error: {type(err).__name__}: {message} (a bug in refimpl: rerun with --debug for the "
            "traceback and please report it)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code.

    Argument errors exit through argparse (code 2, usage on stderr). A :class:`CommandError` (a
    subcommand found the settings or the data unusable: the library's ``ValueError`` / ``TypeError``, a
    missing or corrupt dataset) is printed as ``refimpl <command>: error: ...`` and gives exit code 1,
    without a traceback. **Every other exception** is printed in one line too (exit code 1; the module
    docstring's "Errors" lists the forms), Ctrl-C as ``interrupted`` (exit code 130); with ``--debug``
    the exception propagates with its traceback instead.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CommandError as err:
        if args.debug:
            raise
        print(f"refimpl {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"refimpl {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - every failure is one line (module docstring, "Errors")
        if args.debug:
            raise
        print(f"refimpl {args.command}: error: {_describe_error(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # python -m refimpl.cli
    sys.exit(main())
