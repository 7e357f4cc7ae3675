r"""The phase table: what each kind of phase does, as one small function per kind.

Every phase kind is a function ``(run, phase) -> metrics`` registered in :data:`PHASES` with
:func:`phase_kind`. The function changes ``run.model`` / ``run.masks`` and returns the phase's metrics
(``test_acc`` and whatever else it measured); :meth:`Run.finish` then saves the weights (and the masks,
for kinds that set them) and marks the phase done in ``state.json`` — in this order, so a run can be
resumed after a crash at any point. A new method (SSL group lasso, a gradual mask schedule, retraining
that keeps unified blocks) is one new function here and one row of
:data:`refimpl.engine.plan.METHOD_STEP`, not a new branch of an orchestrator.

====================  ======================================================================================
kind                  what it does
====================  ======================================================================================
``pretrain``          dense training (or loading ``pretrain.init_weights``)
``admm``              training with the :class:`~refimpl.prune.ADMM` hook: penalty
                      :math:`\sum_j \frac{\rho}{2}\|W_j - Z_j + U_j\|_F^2`, Z/U updates, growing :math:`\rho`
``ssl``               training with the :class:`~refimpl.prune.GroupLasso` hook (SSL): a proximal step of
                      :math:`\lambda \sum_g \|W_g\|_2` (block soft-thresholding) after every optimizer step
``gradual``           training with the :class:`~refimpl.prune.GradualPruning` hook (Zhu & Gupta): every
                      ``update_every`` steps the mask is recomputed at the cubic schedule's
                      :math:`s_t = s_f + (s_i - s_f)(1 - (t - t_0)/(n\Delta t))^3`, on the survivors
``prune``             hard prune :math:`W \leftarrow \Pi_S(W)` (of W, not Z); the masks stay frozen, and
                      which blocks a ``"unified"`` constraint unified is recorded (``unified.npz``)
``retrain``           masked retraining (:class:`~refimpl.prune.MaskedRetraining`): pruned weights stay 0;
                      with unified blocks (:class:`~refimpl.prune.UnifiedRetraining`) each unified block
                      trains only its shared magnitude :math:`m_b` (gradient :math:`\sum_i s_i g_i`)
``purify``            :func:`refimpl.compact.purify` removes nearly empty, unimportant filters...
``purify_retrain``    ...followed by masked retraining with the new masks
``compact``           :func:`refimpl.compact.compact`: the smaller dense network computing the same function
====================  ======================================================================================
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from refimpl.engine.artifacts import load_npz, save_npz, write_json
from refimpl.engine.build import build_optimizer, build_schedule, phase_seed
from refimpl.engine.plan import Phase

__all__ = ["PHASES", "PhaseKind", "Run", "phase_kind"]


@dataclass(frozen=True)
class PhaseKind:
    """A row of the phase table.

    Attributes
    ----------
    run : callable ``(run, phase) -> dict``
        Does the work and returns the phase's metrics.
    trains : bool
        The phase trains for ``phase.epochs`` epochs (reports print its epochs).
    sets_masks : bool
        The phase changes ``run.masks`` (they are saved as ``<phase>/masks.npz``).
    saves_weights : bool
        Save ``run.model`` as ``<phase>/model.npz`` afterwards (compaction writes its own files).
    accuracy : str or None
        The key of the report's ``accuracy`` table that the last phase of this kind fills.
    label : str
        That row's label in ``report.txt``.
    """

    run: Callable[[Run, Phase], dict]
    trains: bool = False
    sets_masks: bool = False
    saves_weights: bool = True
    accuracy: str | None = None
    label: str = ""


#: kind -> :class:`PhaseKind`, in the order the report lists their accuracies.
PHASES: dict[str, PhaseKind] = {}


def phase_kind(kind: str, **options) -> Callable:
    """Register the decorated function in :data:`PHASES` under ``kind`` (options: :class:`PhaseKind`)."""

    def register(function: Callable[[Run, Phase], dict]) -> Callable[[Run, Phase], dict]:
        if kind in PHASES:
            raise ValueError(f"phase kind {kind!r} is registered twice")
        PHASES[kind] = PhaseKind(function, **options)
        return function

    return register


class Run:
    """The state of one run while its phases execute: config, data, model, masks, state, run directory.

    Built by :func:`refimpl.engine.run_experiment`, which checks everything here before any training.
    """

    def __init__(self, config, rundir, dataset, model, constraints: list, *, progress: bool,
                 echo: Callable[[str], None], hooks: Callable[[Phase], Sequence[Any]] | None = None) -> None:
        self.config, self.rundir, self.dataset, self.model = config, rundir, dataset, model
        self.constraints = constraints
        self.progress, self.echo, self.extra_hooks = progress, echo, hooks
        d = config.data
        self.x_train, self.y_train = dataset.x_train[: d.limit_train], dataset.y_train[: d.limit_train]
        self.x_test, self.y_test = dataset.x_test[: d.limit_test], dataset.y_test[: d.limit_test]
        self.val = None if dataset.x_val is None else (dataset.x_val, dataset.y_val)
        self.masks: dict[str, np.ndarray] = {}
        #: The unified blocks of the ``"unified"`` parameters (:func:`refimpl.prune.hard_prune_unified`).
        self.unified: dict = {}
        self.compact_model = None
        self.state: dict = {}

    @property
    def out(self):
        """The run directory's path."""
        return self.rundir.path

    # --- helpers for the phase functions ---------------------------------------------------------------
    def evaluate(self, model=None) -> float:
        """Test accuracy of ``model`` (default: the run's model)."""
        from refimpl.train import evaluate

        model = self.model if model is None else model
        return evaluate(model, self.x_test, self.y_test, self.config.output.eval_batch_size)["accuracy"]

    def train(self, phase: Phase, settings, hooks: list) -> list[dict]:
        """Train ``phase.epochs`` epochs with ``settings`` (a TrainConfig) and ``hooks``; resumable.

        The trainer checkpoints into the phase's directory; a phase interrupted earlier continues from its
        checkpoint (a fresh phase has none and starts from scratch). Returns the per-epoch records.
        """
        from refimpl.train import Trainer
        from refimpl.train.augment import make_augmentation

        if phase.epochs == 0:
            return []
        extra = list(self.extra_hooks(phase)) if self.extra_hooks is not None else []
        if self.config.output.test_every_epoch:
            extra.insert(0, TestAccuracy(self))
        trainer = Trainer(
            self.model, build_optimizer(settings, self.model.parameters()), (self.x_train, self.y_train),
            val_data=self.val, batch_size=settings.batch_size, epochs=phase.epochs,
            schedule=build_schedule(settings, phase.epochs), hooks=hooks + extra,
            seed=phase_seed(self.config.seed, phase.index), out_dir=self.out / phase.name,
            checkpoint_every=self.config.output.checkpoint_every, progress=self.progress,
            augment=make_augmentation(settings.augment, settings.augment_pad),
        )
        return trainer.fit(resume=True)

    # --- bookkeeping -----------------------------------------------------------------------------------
    def run_phase(self, phase: Phase) -> None:
        """Run one phase through its function in :data:`PHASES`, then :meth:`finish` it."""
        started = time.perf_counter()
        metrics = PHASES[phase.kind].run(self, phase)
        self.finish(phase, metrics, started)

    def finish(self, phase: Phase, metrics: dict, started: float) -> None:
        """Save the phase's outputs, then mark it done in state.json (in this order: resumable anywhere)."""
        kind = PHASES[phase.kind]
        directory = self.out / phase.name
        record: dict[str, Any] = {"kind": phase.kind, "epochs": phase.epochs, "weights": None}
        if kind.saves_weights or kind.sets_masks:
            directory.mkdir(parents=True, exist_ok=True)
        if kind.saves_weights:
            save_npz(directory / "model.npz", self.model.state_dict())
            record["weights"] = f"{phase.name}/model.npz"
        if kind.sets_masks:
            save_npz(directory / "masks.npz", self.masks)
            record["masks"] = f"{phase.name}/masks.npz"
            if self.unified:
                arrays = {}
                for name, blocks in self.unified.items():
                    arrays.update(blocks.to_arrays(name))
                save_npz(directory / "unified.npz", arrays)
                record["unified"] = f"{phase.name}/unified.npz"
        record["metrics"] = metrics
        record["seconds"] = time.perf_counter() - started
        self.state["phases"][phase.name] = record
        self.rundir.write_state(self.state)
        acc = metrics.get("test_acc")
        extra = "" if acc is None else f"  test_acc {acc:.4f}"
        if "sparsity" in metrics:
            extra += f"  sparsity {metrics['sparsity']:.4f}"
        epochs = f", {phase.epochs} epochs" if kind.trains else ""
        self.echo(f"[{phase.name}] {phase.kind}{epochs}{extra}  ({record['seconds']:.1f} s)")

    def restore(self, done: list[Phase]) -> None:
        """Load the weights and masks the last finished phases wrote (resume)."""
        from refimpl.engine.artifacts import load_compact_model

        phases = self.state["phases"]
        weights = [phases[p.name]["weights"] for p in done if phases[p.name].get("weights")]
        if weights:
            self.model.load_state_dict(load_npz(self.out / weights[-1]))
        masks = [phases[p.name]["masks"] for p in done if phases[p.name].get("masks")]
        if masks:
            self.masks = {k: v.astype(bool) for k, v in load_npz(self.out / masks[-1]).items()}
        unified = [phases[p.name]["unified"] for p in done if phases[p.name].get("unified")]
        if unified:
            from refimpl.prune import UnifiedBlocks

            arrays = load_npz(self.out / unified[-1])
            names = {key.rsplit(".", 1)[0] for key in arrays}
            self.unified = {name: UnifiedBlocks.from_arrays(arrays, name) for name in sorted(names)}
        if any(p.kind == "compact" for p in done):
            self.compact_model = load_compact_model(self.out)


class TestAccuracy:
    """Trainer hook: the test accuracy after every epoch, logged as ``test_acc`` (output.test_every_epoch).

    For accuracy-vs-retraining-budget curves: the same run gives the accuracy after 0 (the cut), 1, 2, ...
    epochs. It only reads the weights (:func:`refimpl.train.evaluate` restores the training mode and uses
    no random numbers), so a run with it trains bit for bit like one without it. Hyperparameters are never
    chosen on these numbers: selection uses ``val_acc`` (``data.val_fraction``).
    """

    def __init__(self, run: Run) -> None:
        self.run = run

    def on_epoch_end(self, trainer, epoch: int) -> dict:
        return {"test_acc": self.run.evaluate()}


def _last(history: list[dict]) -> dict:
    """Train loss/accuracy (and validation accuracy) of a phase's last epoch; empty for 0 epochs.

    With ``output.test_every_epoch`` also the phase's ``test_acc_curve`` (one value per epoch).
    """
    if not history:
        return {}
    last = history[-1]
    out = {k: last[k] for k in ("train_loss", "train_acc", "val_acc") if last.get(k) is not None}
    if all(r.get("test_acc") is not None for r in history):
        out["test_acc_curve"] = [r["test_acc"] for r in history]
    if all(r.get("val_acc") is not None for r in history):
        out["val_acc_curve"] = [r["val_acc"] for r in history]
    return out


# --- the phase functions ---------------------------------------------------------------------------------

@phase_kind("pretrain", trains=True, accuracy="dense", label="dense (pretrained)")
def pretrain(run: Run, phase: Phase) -> dict:
    """Dense training, or loading the finished weights of ``pretrain.init_weights``."""
    init = run.config.pretrain.init_weights
    if init is not None:
        run.model.load(init)
        return {"test_acc": run.evaluate(), "init_weights": init}
    history = run.train(phase, run.config.pretrain, [])
    return {"test_acc": run.evaluate(), **_last(history)}


@phase_kind("admm", trains=True, accuracy="after_admm", label="after ADMM")
def admm(run: Run, phase: Phase) -> dict:
    """ADMM training towards ``phase.constraints``; masks of earlier steps stay frozen."""
    from refimpl.prune import ADMM, MaskedRetraining

    a = run.config.admm
    hook = ADMM(list(phase.constraints), rho=a.rho, rho_growth=a.rho_growth, rho_max=a.rho_max,
                update_every=a.update_every, update_unit=a.update_unit, frozen_masks=run.masks or None,
                rescale_dual=a.rescale_dual)
    # ADMM first, then the frozen masks of earlier steps zero the pruned gradients (penalty included).
    hooks = [hook] + ([MaskedRetraining(run.masks)] if run.masks else [])
    history = run.train(phase, a, hooks)
    return {"test_acc": run.evaluate(), **_last(history), "rho": hook.rho, "updates": hook.history}


@phase_kind("ssl", trains=True, accuracy="after_ssl", label="after group lasso")
def ssl(run: Run, phase: Phase) -> dict:
    """SSL group lasso (Wen et al. 2016) over the groups of ``phase.constraints``, before the hard cut."""
    from refimpl.prune import GroupLasso

    s = run.config.ssl
    # One step only (validation refuses progressive steps for ssl), so there are no frozen masks here.
    hook = GroupLasso(list(phase.constraints), lam=s.lam)
    history = run.train(phase, s, [hook])
    final = hook.measure(run.model.parameters())
    return {"test_acc": run.evaluate(), **_last(history), "lam": s.lam, "penalty": final["ssl.penalty"],
            "zero_groups": {label: final[f"ssl.{label}.zero_groups"] for label in hook.labels()}}


@phase_kind("gradual", trains=True, sets_masks=True, accuracy="after_gradual", label="after gradual pruning")
def gradual(run: Run, phase: Phase) -> dict:
    """Gradual pruning (Zhu & Gupta) towards ``phase.constraints``; the final masks go to the hard prune.

    The schedule's epochs (``gradual.start_epoch``, ``gradual.end_epoch``) become optimizer steps with this
    phase's steps per epoch, ``ceil(n_train / batch_size)``.
    """
    from refimpl.prune import GradualPruning, masks_sparsity, steps_for_epochs

    g = run.config.gradual
    steps_per_epoch = -(-len(run.y_train) // g.batch_size)
    end_epoch = phase.epochs if g.end_epoch is None else g.end_epoch
    begin = steps_for_epochs(g.start_epoch, steps_per_epoch, "gradual.start_epoch")
    end = steps_for_epochs(end_epoch, steps_per_epoch, "gradual.end_epoch")
    # One step only (validation refuses progressive steps for gradual); frozen masks for completeness.
    hook = GradualPruning(list(phase.constraints), initial_sparsity=g.initial_sparsity, begin=begin, end=end,
                          update_every=g.update_every, frozen_masks=run.masks or None)
    history = run.train(phase, g, [hook])
    if history:  # 0 epochs: no schedule ran, the hard prune cuts in one shot
        run.masks = {name: mask.copy() for name, mask in hook.masks.items()}
    out = {"test_acc": run.evaluate(), **_last(history), "begin_step": begin,
           "updates": hook.n_updates + 1, "update_every": g.update_every}
    if run.masks:
        out["sparsity"] = masks_sparsity(run.masks)
        out["layer_sparsity"] = masks_sparsity(run.masks, per_param=True)
    return out


@phase_kind("prune", sets_masks=True, accuracy="after_hard_prune", label="after hard prune")
def prune(run: Run, phase: Phase) -> dict:
    r"""Hard prune :math:`W \leftarrow \Pi_S(W)` inside the frozen masks; the new masks are frozen.

    For ``"unified"`` constraints the kind of every block (free, unified, pruned) and the signs of the
    unified blocks are recorded too (``run.unified``), for the retraining that keeps them unified.
    """
    from refimpl.prune import hard_prune_unified, masks_sparsity

    run.masks, run.unified = hard_prune_unified(run.model, list(phase.constraints),
                                                frozen_masks=run.masks or None)
    out = {"test_acc": run.evaluate(), "sparsity": masks_sparsity(run.masks),
           "layer_sparsity": masks_sparsity(run.masks, per_param=True)}
    if run.unified:
        out["unified_blocks"] = {name: blocks.counts() for name, blocks in run.unified.items()}
    return out


def _masked_retrain(run: Run, phase: Phase, settings=None) -> dict:
    """Masked retraining with ``settings`` (default: ``retrain``'s).

    Unified blocks (``run.unified``) train only their shared magnitudes.
    """
    from refimpl.prune import MaskedRetraining, UnifiedRetraining

    settings = run.config.retrain if settings is None else settings
    if run.unified:
        hook = UnifiedRetraining(run.masks, run.unified, magnitude_gradient=settings.magnitude_gradient)
    else:
        hook = MaskedRetraining(run.masks)
    history = run.train(phase, settings, [hook])
    out = {"test_acc": run.evaluate(), **_last(history)}
    if run.unified:
        out["unified_intact"] = hook.intact(run.model.parameters())
    return out


phase_kind("retrain", trains=True, accuracy="after_retrain", label="after retraining")(_masked_retrain)


@phase_kind("purify", sets_masks=True, accuracy="after_purify", label="after purification")
def purify(run: Run, phase: Phase) -> dict:
    """Network purification: drop nearly empty, unimportant filters (:func:`refimpl.compact.purify`)."""
    from refimpl.compact import purify as purify_masks
    from refimpl.prune import apply_masks, masks_sparsity

    p = run.config.purify
    run.masks, report = purify_masks(run.model, run.masks, eta=p.eta, sigma=p.sigma)
    apply_masks(run.model, run.masks)
    return {"test_acc": run.evaluate(), "sparsity": masks_sparsity(run.masks), "removed": report.removed,
            "num_removed": report.num_removed}


@phase_kind("purify_retrain", trains=True, accuracy="after_purify_retrain", label="after purify + retraining")
def purify_retrain(run: Run, phase: Phase) -> dict:
    """Masked retraining after purification: ``retrain``'s settings at ``purify.lr`` where it is set."""
    lr = run.config.purify.lr
    settings = run.config.retrain if lr is None else dataclasses.replace(run.config.retrain, lr=lr)
    return _masked_retrain(run, phase, settings)


@phase_kind("compact", saves_weights=False, accuracy="compact", label="compact (must equal masked)")
def compact(run: Run, phase: Phase) -> dict:
    """Unused-path removal: the smaller dense network computing the masked one's function."""
    from refimpl.compact import compact as compact_network

    c = run.config
    run.compact_model, report = compact_network(run.model, run.masks or None, fold_bias=c.compact.fold_bias)
    save_npz(run.out / "model_compact.npz", run.compact_model.state_dict())
    write_json(run.out / "compact.json", {
        "model": c.model.name, "options": c.model.options,
        "input_shape": list(run.model.input_shape), "num_classes": run.model.num_classes,
        "dtype": c.data.dtype,
        "shapes": {k: list(v.shape) for k, v in run.compact_model.state_dict().items()},
        "report": report.to_dict(),
    })
    return {"test_acc": run.evaluate(run.compact_model), "params_before": report.params_before,
            "params_after": report.params_after}
