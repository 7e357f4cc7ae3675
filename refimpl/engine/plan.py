r"""The plan of a run: which phases, in which order, with which targets.

A run reads like the papers::

    pretrain → for each progressive step k: [ADMM] → hard prune → masked retrain
             → [purify → retrain] → compact → report

:func:`plan_phases` turns a configuration into that list of :class:`Phase` objects. What a method does
before each hard prune is one row of :data:`METHOD_STEP`: ADMM trains towards the sets first, the
magnitude baselines cut the trained weights directly, ``"none"`` is dense training only. How many steps,
and with which intermediate targets:

* ``admm.targets = [0.5, 0.75, 0.9]`` — one step per value, every constraint at that sparsity
  (:func:`refimpl.prune.progressive.stage_constraints`);
* ``method = "admm"`` with ``admm.steps = k`` — k steps whose per-layer targets are spaced by
  ``magnitude.schedule`` (:func:`refimpl.prune.magnitude.iterative_targets`), the same intermediate mask
  sizes as ``magnitude_iterative`` with ``magnitude.rounds = k``; each step gets ``retrain.epochs``;
* ``method = "magnitude_iterative"`` — ``magnitude.rounds`` rounds sharing one-shot's retraining budget
  (:func:`refimpl.prune.magnitude.split_budget`), so the two baselines compare at equal cost;
* otherwise one step with the configured constraints.

Multi-step phases are named ``admm_1, prune_1, retrain_1, admm_2, ...``; each phase has its own
sub-directory of the run directory.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = ["METHOD_STEP", "Phase", "plan_phases"]

#: method -> the training phase kind run before every hard prune (``None``: cut directly).
#: A new pruning method that trains before its cut (SSL, a gradual schedule) is a new row here and a new
#: phase function in :data:`refimpl.engine.phases.PHASES`.
METHOD_STEP: dict[str, str | None] = {
    "admm": "admm",
    "magnitude": None,
    "magnitude_iterative": None,
    "ssl": "ssl",
    "gradual": "gradual",
}


@dataclass(frozen=True)
class Phase:
    """One phase of a run: its directory ``name``, its ``kind`` (a key of the phase table), epochs, targets.

    ``constraints`` are the targets of the pruning phases (``admm``, ``prune``), empty for the others;
    ``index`` is the phase's position in the plan (its trainer is seeded from the run's seed and it).
    """

    name: str
    kind: str
    epochs: int = 0
    constraints: tuple = field(default=(), compare=False)
    index: int = 0


def _intermediate_steps(constraints: list, count: int, schedule: str) -> list[list]:
    """Constraint lists of ``count`` steps whose last step is ``constraints`` (per-layer spacing)."""
    from refimpl.prune.magnitude import iterative_targets

    per = [iterative_targets(c.sparsity, count, schedule) for c in constraints]
    return [[c.with_sparsity(t[k]) for c, t in zip(constraints, per, strict=True)] for k in range(count)]


def _steps(config, constraints: list) -> tuple[list[list], list[int]]:
    """Return the constraints of every pruning step and the retraining epochs after each."""
    from refimpl.prune.magnitude import split_budget
    from refimpl.prune.progressive import stage_constraints

    if config.admm.targets is not None:
        steps = stage_constraints(constraints, config.admm.targets)
        return steps, [config.retrain.epochs] * len(steps)
    if config.method == "admm" and config.admm.steps > 1:
        steps = _intermediate_steps(constraints, config.admm.steps, config.magnitude.schedule)
        return steps, [config.retrain.epochs] * len(steps)
    if config.method == "magnitude_iterative" and config.magnitude.rounds > 1:
        steps = _intermediate_steps(constraints, config.magnitude.rounds, config.magnitude.schedule)
        return steps, split_budget(config.retrain.epochs, config.magnitude.rounds)  # one-shot's budget
    return [list(constraints)], [config.retrain.epochs]


def plan_phases(config, constraints: list) -> list[Phase]:
    """Return the phases of the run ``config`` describes, in order.

    Parameters
    ----------
    config : ExperimentConfig
    constraints : list of Constraint
        The expanded constraints (:func:`refimpl.prune.expand_constraints`): the final targets.

    Returns
    -------
    list of Phase
    """
    phases = [Phase("pretrain", "pretrain", config.pretrain.epochs)]
    if config.method == "none":
        return phases  # dense training only: nothing to prune, nothing to compact
    step_kind = METHOD_STEP[config.method]
    steps, retrain_epochs = _steps(config, constraints)
    for k, (step, epochs) in enumerate(zip(steps, retrain_epochs, strict=True), start=1):
        suffix = f"_{k}" if len(steps) > 1 else ""
        if step_kind is not None:
            epochs_before_cut = getattr(config, step_kind).epochs  # the method's own settings section
            phases.append(Phase(f"{step_kind}{suffix}", step_kind, epochs_before_cut, tuple(step)))
        phases.append(Phase(f"prune{suffix}", "prune", 0, tuple(step)))
        phases.append(Phase(f"retrain{suffix}", "retrain", epochs))
    if config.purify.enabled:
        phases.append(Phase("purify", "purify"))
        phases.append(Phase("purify_retrain", "purify_retrain", config.purify.epochs))
    if config.compact.enabled:
        phases.append(Phase("compact", "compact"))
    return [dataclasses.replace(p, index=i) for i, p in enumerate(phases)]
