r"""The pruning pipeline behind ``refimpl prune``: pretrain → ADMM → hard prune → retrain → compact → report.

:func:`run_experiment` carries out one :class:`~refimpl.config.ExperimentConfig` as a list of **phases**
(:func:`plan_phases`), each with its own sub-directory of the run directory:

==================  ==========================================================================================
phase               what it does (ALGORITHMS.md §1, §3, §4)
==================  ==========================================================================================
``pretrain``        dense training (or loading ``pretrain.init_weights``)
``admm``            training with the :class:`~refimpl.prune.ADMM` hook: penalty
                    :math:`\sum_j \frac{\rho}{2}\|W_j - Z_j + U_j\|_F^2`, Z/U updates, growing :math:`\rho`
``prune``           hard prune :math:`W \leftarrow \Pi_S(W)` (of W, not Z); the masks stay frozen
``retrain``         masked retraining (:class:`~refimpl.prune.MaskedRetraining`): pruned weights stay 0
``purify``          optional: :func:`refimpl.compact.purify` removes nearly empty, unimportant filters...
``purify_retrain``  ...followed by masked retraining with the new masks
``compact``         :func:`refimpl.compact.compact`: the smaller dense network computing the same function
==================  ==========================================================================================

With progressive ``admm.targets`` (or ``method = "magnitude_iterative"``) the ``admm`` / ``prune`` /
``retrain`` triple repeats once per step, named ``admm_1, prune_1, retrain_1, admm_2, ...``; earlier masks
stay frozen (:mod:`refimpl.prune.progressive`). The magnitude baselines have no ``admm`` phase.

Files of a run directory
------------------------
=========================  ===============================================================================
``config.toml``, ``.json``  the resolved configuration (reloads with :func:`~refimpl.config.load_config` /
                           ``ExperimentConfig.from_dict``)
``state.json``             the phases done and their outputs and metrics (rewritten atomically after each)
``<phase>/log.jsonl``      one record per epoch (loss, accuracy, lr, ADMM residuals and rho)
``<phase>/checkpoint.npz`` the trainer's atomic checkpoint (weights, optimizer, generators, ADMM Z, U, rho)
``<phase>/model.npz``      the weights after the phase; ``prune``/``purify`` also write ``masks.npz``
``masks.npz``              the final keep masks (``True`` = kept), PyTorch parameter names
``model_masked.npz``       the final pruned weights (dense arrays with zeros)
``model_compact.npz``      the compact weights; ``compact.json`` its shapes (:func:`load_compact_model`)
``report.txt``, ``.json``  accuracies per phase, parameters, MACs, per-layer table, sparsity, compression
``results.json``           the headline numbers
=========================  ===============================================================================

Resuming
--------
``run_experiment(..., resume=True)`` skips the phases ``state.json`` lists as done (loading the weights
and masks the last of them wrote) and continues the current phase from its trainer checkpoint, which
holds everything its future depends on (see :mod:`refimpl.train.trainer`). Every phase's trainer is
seeded from ``(seed, phase index)`` and weights are stored bit-exactly, so a run interrupted anywhere —
in the middle of ADMM, of retraining, between phases — and resumed ends with **bitwise** the same
``model_masked.npz`` and ``model_compact.npz`` as an uninterrupted one (``tests/test_pipeline.py``).
A resumed run must have the same configuration as the saved one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from refimpl._io import atomic_write, atomic_write_json, atomic_write_text
from refimpl.config import ExperimentConfig, TrainConfig, expand_constraints, to_toml
from refimpl.threads import thread_limit

__all__ = [
    "Phase",
    "SetupError",
    "build_model_for",
    "build_optimizer",
    "build_schedule",
    "load_compact_model",
    "plan_phases",
    "run_experiment",
    "thread_limit",
]

class SetupError(ValueError):
    """The run cannot start with these settings (raised before any training).

    E.g. a run already in the directory, a changed config on resume, a constraint naming a missing layer;
    the command line prints it in one line.
    """


STATE_NAME = "state.json"
_TRAINING = ("pretrain", "admm", "retrain", "purify_retrain")
_STATE_VERSION = 1


# --- small atomic writers (refimpl._io: a crash leaves the old file or the new one) -------------------

def _write_json(path: Path, value) -> None:
    atomic_write_json(path, value, default=_json_default)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _finite(value):
    """JSON has no infinity: ratios with nothing left to divide by become ``None``."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


# --- building blocks -----------------------------------------------------------------------------------

def build_optimizer(train: TrainConfig, params: dict[str, np.ndarray]):
    """Return the optimizer ``train`` describes, on the live arrays ``params``."""
    from refimpl.train import SGD, Adam

    if train.optimizer == "adam":
        return Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    return SGD(params, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov,
               weight_decay=train.weight_decay)


def build_schedule(train: TrainConfig, epochs: int):
    """Return the learning-rate schedule of a phase of ``epochs`` epochs (a pure function of the epoch)."""
    from refimpl.train import ConstantLR, CosineAnnealingLR, StepLR

    if train.schedule == "step":
        return StepLR(train.lr, step_size=train.step_size or max(1, epochs // 3), gamma=train.gamma)
    if train.schedule == "cosine":
        return CosineAnnealingLR(train.lr, T_max=max(1, epochs))
    return ConstantLR(train.lr)


def build_model_for(config: ExperimentConfig, input_shape, num_classes: int):
    """Build the model of ``config`` for inputs ``(C, H, W)``, initialised from ``config.seed``."""
    from refimpl.models import build_model, set_engine

    channels, size, _ = (int(d) for d in input_shape)
    model = build_model(config.model.name, num_classes=int(num_classes), in_channels=channels,
                        input_size=size, rng=np.random.default_rng(config.seed),
                        dtype=np.dtype(config.data.dtype), **config.model.options)
    return set_engine(model, config.model.engine)


# --- the plan ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Phase:
    """One phase of a run: its directory ``name``, its ``kind``, epochs and (pruning phases) constraints."""

    name: str
    kind: str  # pretrain | admm | prune | retrain | purify | purify_retrain | compact
    epochs: int = 0
    constraints: tuple = field(default=(), compare=False)


def _intermediate_steps(constraints: list, count: int, schedule: str) -> list[list]:
    """Constraint lists of ``count`` steps whose last step is ``constraints`` (per-layer spacing)."""
    from refimpl.prune.magnitude import iterative_targets

    per = [iterative_targets(c.sparsity, count, schedule) for c in constraints]
    return [[c.with_sparsity(t[k]) for c, t in zip(constraints, per, strict=True)] for k in range(count)]


def plan_phases(config: ExperimentConfig, constraints: list) -> list[Phase]:
    """Return the phases :func:`run_experiment` runs for ``config``, in order.

    Parameters
    ----------
    config : ExperimentConfig
    constraints : list of Constraint
        The expanded constraints (:func:`refimpl.config.expand_constraints`); the final targets.
    """
    from refimpl.prune.magnitude import split_budget
    from refimpl.prune.progressive import stage_constraints

    phases = [Phase("pretrain", "pretrain", config.pretrain.epochs)]
    if config.method == "none":
        return phases
    if config.admm.targets is not None:
        steps = stage_constraints(constraints, config.admm.targets)
        retrain_epochs = [config.retrain.epochs] * len(steps)
    elif config.method == "admm" and config.admm.steps > 1:
        # Progressive ADMM with per-layer targets: the same intermediate sparsities as the rounds of
        # magnitude_iterative, so an ADMM run and its iterative-magnitude twin cut through the same mask
        # sizes; every step gets admm.epochs of ADMM and retrain.epochs of masked retraining.
        steps = _intermediate_steps(constraints, config.admm.steps, config.magnitude.schedule)
        retrain_epochs = [config.retrain.epochs] * len(steps)
    elif config.method == "magnitude_iterative" and config.magnitude.rounds > 1:
        steps = _intermediate_steps(constraints, config.magnitude.rounds, config.magnitude.schedule)
        retrain_epochs = split_budget(config.retrain.epochs, config.magnitude.rounds)  # one-shot's budget
    else:
        steps, retrain_epochs = [list(constraints)], [config.retrain.epochs]
    for k, (step, epochs) in enumerate(zip(steps, retrain_epochs, strict=True), start=1):
        suffix = f"_{k}" if len(steps) > 1 else ""
        if config.method == "admm":
            phases.append(Phase(f"admm{suffix}", "admm", config.admm.epochs, tuple(step)))
        phases.append(Phase(f"prune{suffix}", "prune", 0, tuple(step)))
        phases.append(Phase(f"retrain{suffix}", "retrain", epochs))
    if config.purify.enabled:
        phases.append(Phase("purify", "purify"))
        phases.append(Phase("purify_retrain", "purify_retrain", config.purify.epochs))
    if config.compact.enabled:
        phases.append(Phase("compact", "compact"))
    return phases


# --- running -------------------------------------------------------------------------------------------

def _phase_seed(seed: int, index: int) -> int:
    """Derive an independent trainer seed per phase from the run's seed."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _dotted_diff(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _dotted_diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


class _Run:
    """The state of one run while its phases execute (model, masks, data, state.json)."""

    def __init__(self, config: ExperimentConfig, out: Path, *, resume: bool, progress: bool,
                 echo: Callable[[str], None]) -> None:
        from refimpl.data import load_dataset

        self.config, self.out, self.progress, self.echo = config, out, progress, echo
        self.state = self._start(resume)
        d = config.data
        ds = load_dataset(d.name, d.root, download=d.download, dtype=np.dtype(d.dtype),
                          val_fraction=d.val_fraction, seed=config.seed, progress=progress)
        self.dataset = ds
        self.x_train, self.y_train = ds.x_train[: d.limit_train], ds.y_train[: d.limit_train]
        self.x_test, self.y_test = ds.x_test[: d.limit_test], ds.y_test[: d.limit_test]
        self.val = None if ds.x_val is None else (ds.x_val, ds.y_val)
        try:
            self.model = build_model_for(config, ds.input_shape, ds.num_classes)
            self.constraints = ([] if config.method == "none"
                                else expand_constraints(config.admm.constraints, self.model))
        except (ValueError, TypeError) as err:
            raise SetupError(str(err)) from err
        self.masks: dict[str, np.ndarray] = {}
        self.compact_model = None

    def _start(self, resume: bool) -> dict:
        out, config = self.out, self.config
        saved_config = out / "config.json"
        if resume and saved_config.is_file():
            changed = _dotted_diff(json.loads(saved_config.read_text()), config.to_dict())
            if changed:
                raise SetupError(f"cannot resume {out}: the configuration differs from the saved one in "
                                 f"{', '.join(changed)}")
        elif not resume and (saved_config.exists() or (out / STATE_NAME).exists()):
            raise SetupError(f"{out} already holds a run; resume it or choose another output directory")
        out.mkdir(parents=True, exist_ok=True)
        _write_json(saved_config, config.to_dict())
        atomic_write_text(out / "config.toml", to_toml(config))
        path = out / STATE_NAME
        if resume and path.is_file():
            state = json.loads(path.read_text())
            if state.get("version") != _STATE_VERSION:
                raise SetupError(f"{path} has state version {state.get('version')}, "
                                 f"expected {_STATE_VERSION}")
            return state
        state = {"version": _STATE_VERSION, "phases": {}}
        _write_json(path, state)
        return state

    # --- helpers ---------------------------------------------------------------------------------------
    def evaluate(self, model=None) -> float:
        from refimpl.train import evaluate

        model = self.model if model is None else model
        return evaluate(model, self.x_test, self.y_test, self.config.output.eval_batch_size)["accuracy"]

    def train(self, phase: Phase, index: int, settings: TrainConfig, hooks: list, epochs: int) -> list[dict]:
        from refimpl.train import Trainer

        if epochs == 0:
            return []
        trainer = Trainer(
            self.model, build_optimizer(settings, self.model.parameters()), (self.x_train, self.y_train),
            val_data=self.val, batch_size=settings.batch_size, epochs=epochs,
            schedule=build_schedule(settings, epochs), hooks=hooks, seed=_phase_seed(self.config.seed, index),
            out_dir=self.out / phase.name, checkpoint_every=self.config.output.checkpoint_every,
            progress=self.progress,
        )
        return trainer.fit(resume=True)  # a fresh phase has no checkpoint: fit starts from scratch

    def finish(self, phase: Phase, metrics: dict, started: float, *, masks_changed: bool = False) -> None:
        """Save the phase's outputs, then mark it done in state.json (in this order: resumable anywhere)."""
        directory = self.out / phase.name
        if phase.kind != "compact":
            directory.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {"kind": phase.kind, "epochs": phase.epochs}
        if phase.kind == "compact":
            _save_npz(self.out / "model_compact.npz", self.compact_model.state_dict())
            record["weights"] = None
        else:
            _save_npz(directory / "model.npz", self.model.state_dict())
            record["weights"] = f"{phase.name}/model.npz"
        if masks_changed:
            _save_npz(directory / "masks.npz", self.masks)
            record["masks"] = f"{phase.name}/masks.npz"
        record["metrics"] = metrics
        record["seconds"] = time.perf_counter() - started
        self.state["phases"][phase.name] = record
        _write_json(self.out / STATE_NAME, self.state)
        acc = metrics.get("test_acc")
        extra = "" if acc is None else f"  test_acc {acc:.4f}"
        if "sparsity" in metrics:
            extra += f"  sparsity {metrics['sparsity']:.4f}"
        epochs = f", {phase.epochs} epochs" if phase.kind in _TRAINING else ""
        self.echo(f"[{phase.name}] {phase.kind}{epochs}{extra}  ({record['seconds']:.1f} s)")

    def restore(self, done: list[Phase]) -> None:
        """Load the weights and masks the last finished phases wrote (resume)."""
        phases = self.state["phases"]
        weights = [phases[p.name]["weights"] for p in done if phases[p.name].get("weights")]
        if weights:
            self.model.load_state_dict(_load_npz(self.out / weights[-1]))
        masks = [phases[p.name]["masks"] for p in done if phases[p.name].get("masks")]
        if masks:
            self.masks = {k: v.astype(bool) for k, v in _load_npz(self.out / masks[-1]).items()}
        if any(p.kind == "compact" for p in done):
            self.compact_model = load_compact_model(self.out)

    # --- the phases ------------------------------------------------------------------------------------
    def run_phase(self, phase: Phase, index: int) -> None:
        from refimpl.compact import compact, purify
        from refimpl.prune import ADMM, MaskedRetraining, apply_masks, hard_prune, masks_sparsity

        started = time.perf_counter()
        c = self.config
        if phase.kind == "pretrain":
            if c.pretrain.init_weights is not None:
                self.model.load(c.pretrain.init_weights)
                self.finish(phase, {"test_acc": self.evaluate(), "init_weights": c.pretrain.init_weights},
                            started)
                return
            history = self.train(phase, index, c.pretrain, [], phase.epochs)
            self.finish(phase, {"test_acc": self.evaluate(), **_last(history)}, started)
        elif phase.kind == "admm":
            admm = ADMM(list(phase.constraints), rho=c.admm.rho, rho_growth=c.admm.rho_growth,
                        rho_max=c.admm.rho_max, update_every=c.admm.update_every,
                        update_unit=c.admm.update_unit, frozen_masks=self.masks or None)
            # ADMM first, then the frozen masks of earlier steps zero the pruned gradients (penalty included).
            hooks = [admm] + ([MaskedRetraining(self.masks)] if self.masks else [])
            history = self.train(phase, index, c.admm, hooks, phase.epochs)
            self.finish(phase, {"test_acc": self.evaluate(), **_last(history), "rho": admm.rho,
                                "updates": admm.history}, started)
        elif phase.kind == "prune":
            self.masks = hard_prune(self.model, list(phase.constraints), frozen_masks=self.masks or None)
            self.finish(phase, {"test_acc": self.evaluate(), "sparsity": masks_sparsity(self.masks),
                                "layer_sparsity": masks_sparsity(self.masks, per_param=True)},
                        started, masks_changed=True)
        elif phase.kind in ("retrain", "purify_retrain"):
            settings = c.retrain
            history = self.train(phase, index, settings, [MaskedRetraining(self.masks)], phase.epochs)
            self.finish(phase, {"test_acc": self.evaluate(), **_last(history)}, started)
        elif phase.kind == "purify":
            self.masks, report = purify(self.model, self.masks, eta=c.purify.eta, sigma=c.purify.sigma)
            apply_masks(self.model, self.masks)
            self.finish(phase, {"test_acc": self.evaluate(), "sparsity": masks_sparsity(self.masks),
                                "removed": report.removed, "num_removed": report.num_removed},
                        started, masks_changed=True)
        elif phase.kind == "compact":
            self.compact_model, report = compact(self.model, self.masks or None,
                                                 fold_bias=c.compact.fold_bias)
            _write_json(self.out / "compact.json", {
                "model": c.model.name, "options": c.model.options,
                "input_shape": list(self.model.input_shape), "num_classes": self.model.num_classes,
                "dtype": c.data.dtype,
                "shapes": {k: list(v.shape) for k, v in self.compact_model.state_dict().items()},
                "report": report.to_dict(),
            })
            self.finish(phase, {"test_acc": self.evaluate(self.compact_model),
                                "params_before": report.params_before, "params_after": report.params_after},
                        started)
        else:  # pragma: no cover - plan_phases makes only the kinds above
            raise ValueError(f"unknown phase kind {phase.kind!r}")


def _last(history: list[dict]) -> dict:
    """Train loss/accuracy of a phase's last epoch (empty when it trained for 0 epochs)."""
    if not history:
        return {}
    last = history[-1]
    return {k: last[k] for k in ("train_loss", "train_acc", "val_acc") if last.get(k) is not None}


def run_experiment(config: ExperimentConfig, out_dir: str | os.PathLike, *, resume: bool = False,
                   progress: bool = True, echo: Callable[[str], None] | None = print) -> dict:
    """Run every phase of ``config`` into ``out_dir`` and write the report (see the module docstring).

    Parameters
    ----------
    config : ExperimentConfig
    out_dir : path
        The run directory; refused if it already holds a run, unless ``resume``.
    resume : bool, default False
        Continue the run in ``out_dir``: finished phases are skipped, the current one continues from its
        checkpoint. The configuration must equal the saved one.
    progress : bool, default True
        tqdm progress bars of the training epochs.
    echo : callable or None, default print
        Receives one line per finished phase and the final report; ``None`` is silent.

    Returns
    -------
    dict
        The report (also written to ``report.json``): accuracies per phase, parameters, MACs,
        compression, per-layer rows and sparsity.
    """
    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    echo = echo or (lambda line: None)
    out = Path(out_dir)
    started = time.perf_counter()
    with thread_limit(config.threads):
        run = _Run(config, out, resume=resume, progress=progress, echo=echo)
        phases = plan_phases(config, run.constraints)
        done = [p for p in phases if p.name in run.state["phases"]]
        first = next((i for i, p in enumerate(phases) if p.name not in run.state["phases"]), len(phases))
        if any(p.name not in run.state["phases"] for p in phases[:first]) or len(done) != first:
            raise SetupError(f"{out / STATE_NAME} lists phases out of order; it was not written by this plan")
        if done:
            run.restore(done)
            echo(f"resuming {out}: {', '.join(p.name for p in done)} done")
        for index, phase in enumerate(phases):
            if phase.name not in run.state["phases"]:
                run.run_phase(phase, index)
        report = _write_report(run, phases, time.perf_counter() - started)
    echo(report["text"])
    return report


# --- the report ----------------------------------------------------------------------------------------

def _accuracies(run: _Run, phases: list[Phase]) -> dict[str, float | None]:
    """Test accuracy after the last phase of each kind (None where the plan has no such phase)."""
    by_kind: dict[str, float] = {}
    for p in phases:
        by_kind[p.kind] = run.state["phases"][p.name]["metrics"].get("test_acc")
    last_weights = [p for p in phases if p.kind != "compact"][-1]
    return {
        "dense": by_kind.get("pretrain"),
        "after_admm": by_kind.get("admm"),
        "after_hard_prune": by_kind.get("prune"),
        "after_retrain": by_kind.get("retrain"),
        "after_purify": by_kind.get("purify"),
        "after_purify_retrain": by_kind.get("purify_retrain"),
        "masked": run.state["phases"][last_weights.name]["metrics"]["test_acc"],
        "compact": by_kind.get("compact"),
    }


def _write_report(run: _Run, phases: list[Phase], seconds: float) -> dict:
    from refimpl.metrics import format_report, layer_report, report_json, report_totals
    from refimpl.prune import masks_sparsity

    c, out = run.config, run.out
    masks = run.masks
    masked_rows = layer_report(run.model, masks or None)
    totals = report_totals(masked_rows)
    accuracy = _accuracies(run, phases)
    # model_masked.npz with the masks applied (they already are; this makes the file evidently so).
    masked_state = run.model.state_dict()
    for name, mask in masks.items():
        masked_state[name] = masked_state[name] * mask
    _save_npz(out / "model_masked.npz", masked_state)
    if masks:
        _save_npz(out / "masks.npz", masks)
    nonzero = int(sum(np.count_nonzero(v) for k, v in masked_state.items() if k in run.model.parameters()))

    report: dict[str, Any] = {
        "name": c.name, "description": c.description, "method": c.method,
        "dataset": c.data.name, "model": c.model.name,
        "n_train": int(len(run.y_train)), "n_test": int(len(run.y_test)),
        "accuracy": accuracy,
        "phases": [{"name": p.name, "kind": p.kind, "epochs": p.epochs,
                    "test_acc": run.state["phases"][p.name]["metrics"].get("test_acc"),
                    "seconds": run.state["phases"][p.name]["seconds"]} for p in phases],
        "params": {"dense": totals["params"], "nonzero": nonzero},
        "macs": {"dense": totals["macs"], "effective": totals["effective_macs"]},
        "compression": _finite(totals["params"] / nonzero if nonzero else float("inf")),
        "mac_reduction": _finite(totals["mac_reduction"]),
        "sparsity": {"overall": masks_sparsity(masks) if masks else 0.0,
                     "per_layer": masks_sparsity(masks, per_param=True) if masks else {}},
        "layers": report_json(masked_rows)["layers"],
        "seconds": seconds,
    }
    compact_text = ""
    if run.compact_model is not None:
        compact_rows = layer_report(run.compact_model, reference=run.model)
        ctotals = report_totals(compact_rows)
        report["params"]["compact"] = ctotals["params"]
        report["macs"]["compact"] = ctotals["macs"]
        report["compact_param_ratio"] = totals["params"] / ctotals["params"]
        report["compact_mac_ratio"] = _finite(totals["macs"] / ctotals["macs"] if ctotals["macs"] else np.inf)
        report["compact_layers"] = report_json(compact_rows)["layers"]
        report["compact_matches_masked"] = accuracy["compact"] == accuracy["masked"]
        compact_text = "\n\ncompact model (dead paths removed)\n" + format_report(compact_rows)
    report["text"] = _format_text(report) + "\n\nmasked model (per layer)\n" + format_report(masked_rows) \
        + compact_text
    _write_json(out / "report.json", {k: v for k, v in report.items() if k != "text"})
    atomic_write_text(out / "report.txt", report["text"] + "\n")
    _write_json(out / "results.json", {
        "name": c.name, "method": c.method, "dataset": c.data.name, "model": c.model.name,
        "accuracy_dense": accuracy["dense"], "accuracy_pruned": accuracy["masked"],
        "accuracy_compact": accuracy["compact"], "params_dense": report["params"]["dense"],
        "params_nonzero": nonzero, "params_compact": report["params"].get("compact"),
        "macs_dense": report["macs"]["dense"], "macs_effective": report["macs"]["effective"],
        "macs_compact": report["macs"].get("compact"), "compression": report["compression"],
        "sparsity": report["sparsity"]["overall"], "seconds": seconds,
    })
    return report


def _format_text(report: dict) -> str:
    acc = report["accuracy"]
    lines = [f"{report['name']}: {report['method']} on {report['dataset']} ({report['model']}, "
             f"{report['n_train']} training / {report['n_test']} test images)"]
    if report["description"]:
        lines.append(report["description"])
    lines.append("")
    lines.append("test accuracy")
    labels = {"dense": "dense (pretrained)", "after_admm": "after ADMM",
              "after_hard_prune": "after hard prune",
              "after_retrain": "after retraining", "after_purify": "after purification",
              "after_purify_retrain": "after purify + retraining", "masked": "pruned (final, masked)",
              "compact": "compact (must equal masked)"}
    for key, label in labels.items():
        if acc.get(key) is not None:
            lines.append(f"  {label:<28} {acc[key]:.4f}")
    p, m = report["params"], report["macs"]
    lines.append("")
    ratio = "inf" if report["compression"] is None else f"{report['compression']:.2f}x"
    lines.append(f"parameters  dense {p['dense']:>10,}   nonzero {p['nonzero']:>10,}   compression {ratio}")
    if "compact" in p:
        lines.append(f"            compact model {p['compact']:,} "
                     f"({report['compact_param_ratio']:.2f}x fewer stored parameters)")
    mac = "inf" if report["mac_reduction"] is None else f"{report['mac_reduction']:.2f}x"
    lines.append(f"MACs/image  dense {m['dense']:>10,}   effective {m['effective']:>8,}   reduction {mac}")
    if "compact" in m:
        cr = "inf" if report["compact_mac_ratio"] is None else f"{report['compact_mac_ratio']:.2f}x"
        lines.append(f"            compact model {m['compact']:,} dense MACs ({cr} fewer)")
    if report["sparsity"]["per_layer"]:
        per = ", ".join(f"{k} {v:.3f}" for k, v in report["sparsity"]["per_layer"].items())
        lines.append(f"sparsity    {report['sparsity']['overall']:.4f} overall ({per})")
    return "\n".join(lines)


# --- loading a compact model ---------------------------------------------------------------------------

def load_compact_model(run_dir: str | os.PathLike):
    """Rebuild the compact model of a finished run from ``compact.json`` and ``model_compact.npz``.

    The architecture is built as configured, every parameter and buffer is resized to the shape recorded
    in ``compact.json`` (a bias the compaction added is created), the layers' channel counts are updated,
    and the weights are loaded. No dataset is needed.
    """
    from refimpl.models import build_model
    from refimpl.nn.batchnorm import BatchNorm2d
    from refimpl.nn.conv import Conv2d
    from refimpl.nn.linear import Linear
    from refimpl.nn.residual import BasicBlock

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "compact.json").read_text())
    channels, size, _ = info["input_shape"]
    dtype = np.dtype(info["dtype"])
    model = build_model(info["model"], num_classes=info["num_classes"], in_channels=channels,
                        input_size=size, dtype=dtype, **info["options"])
    state = _load_npz(run_dir / "model_compact.npz")
    for name, shape in info["shapes"].items():
        module_name, _, key = name.rpartition(".")
        module = model.get_module(module_name)
        blank = np.zeros(tuple(shape), dtype=state[name].dtype)
        if key in module.buffers:
            module.buffers[key] = blank
        else:
            module.params[key] = blank
            module.grads[key] = np.zeros_like(blank)
    for _, module in model.named_modules():
        if isinstance(module, Conv2d):
            module.out_channels, module.in_channels = (int(d) for d in module.params["weight"].shape[:2])
        elif isinstance(module, Linear):
            module.out_features, module.in_features = (int(d) for d in module.params["weight"].shape)
        elif isinstance(module, BatchNorm2d):
            module.num_features = int(module.buffers["running_mean"].shape[0])
    for _, module in model.named_modules():
        if isinstance(module, BasicBlock):
            module.in_channels, module.out_channels = module.conv1.in_channels, module.conv2.out_channels
    model.load_state_dict(state)
    return model
