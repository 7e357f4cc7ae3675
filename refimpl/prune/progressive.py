r"""Progressive multi-step ADMM pruning: reach a high sparsity through increasing targets.

Jumping straight to 95% sparsity asks ADMM to move many weights far; the StructADMM papers instead prune
in steps (e.g. 50% → 75% → 90% → 95%). Every step :math:`k` with target :math:`s_k` runs

1. an **ADMM phase** on the sets :math:`S_k` (:class:`~refimpl.prune.admm.ADMM`),
2. a **hard prune** :math:`W \leftarrow \Pi(W)` whose mask :math:`M_k` is then frozen
   (:func:`~refimpl.prune.masking.hard_prune`),
3. **masked retraining** with :math:`M_k` (:class:`~refimpl.prune.masking.MaskedRetraining`).

**Frozen masks (choice, documented):** weights pruned in an earlier step stay zero for good, so step
:math:`k` works on the survivors: during its ADMM phase the previous mask :math:`M_{k-1}` is enforced on the
weights (a ``MaskedRetraining`` hook runs after the ADMM hook, so the penalty gradient at pruned positions
is zeroed too), every projection is :math:`\Pi_{S_k}(V \odot M_{k-1}) \odot M_{k-1}` — the exact projection
onto :math:`S_k \cap \{W \odot (1 - M_{k-1}) = 0\}` for the group structures (proof in
:mod:`refimpl.prune.constraints`) — and the new mask is :math:`M_k \subseteq M_{k-1}`. Targets count groups
of the whole layer (not of the survivors): ``0.9`` means 90% of the layer's groups are pruned in total.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from refimpl._validation import check_positive_int, check_probability
from refimpl.prune.admm import ADMM
from refimpl.prune.constraints import Constraint, parse_constraints
from refimpl.prune.masking import MaskedRetraining, PruningStage, TrainerFactory, hard_prune, run_phase

__all__ = ["progressive_prune", "stage_constraints"]


def stage_constraints(constraints: Sequence[Constraint], targets: Sequence[Any]) -> list[list[Constraint]]:
    """Return the constraints of every step, from ``targets``.

    Parameters
    ----------
    constraints : list of Constraint
        The template: which parameters and structures (their own sparsity/keep is replaced).
    targets : sequence
        Either floats in [0, 1], strictly increasing — step ``k`` uses ``c.with_sparsity(targets[k])``
        for every constraint — or a list per step of constraints (or dicts) for per-layer targets.
    """
    if isinstance(targets, (str, bytes, Mapping)) or not isinstance(targets, Sequence) or not targets:
        raise ValueError(f"targets must be a non-empty list, got {targets!r}")
    if all(isinstance(t, numbers.Real) and not isinstance(t, bool) for t in targets):
        values = [check_probability(t, f"targets[{k}]") for k, t in enumerate(targets)]
        if any(b <= a for a, b in zip(values, values[1:], strict=False)):
            raise ValueError(f"targets must be strictly increasing, got {list(targets)}")
        return [[c.with_sparsity(t) for c in constraints] for t in values]
    if all(isinstance(t, Sequence) and not isinstance(t, (str, bytes)) for t in targets):
        return [parse_constraints(t) for t in targets]
    raise TypeError("targets must be all floats or all lists of constraints")


def progressive_prune(model, constraints: Sequence[Constraint | Mapping[str, Any]], targets: Sequence[Any],
                      make_trainer: TrainerFactory, *, admm_epochs: int, retrain_epochs: int,
                      rho: float = 1e-3, rho_growth: float = 1.3, rho_max: float = 1.0, update_every: int = 1,
                      update_unit: str = "epoch",
                      initial_masks: Mapping[str, np.ndarray] | None = None) -> list[PruningStage]:
    """Run ADMM → hard prune → masked retrain once per target; earlier masks stay frozen.

    Parameters
    ----------
    model : Module
        Trained in place (``make_trainer`` must build trainers on this same object).
    constraints : list of Constraint (or dicts)
        Which parameters and structures to prune (see :func:`stage_constraints`).
    targets : list of float or list of list of Constraint
        Increasing sparsity targets, e.g. ``[0.5, 0.75, 0.9]``.
    make_trainer : callable ``(hooks, epochs) -> trainer``
        Builds a trainer with a fresh optimizer on ``model`` (called twice per step: ADMM, retraining).
    admm_epochs, retrain_epochs : int
        Epochs of each phase per step (0 skips the phase).
    rho, rho_growth, rho_max, update_every, update_unit
        Passed to :class:`~refimpl.prune.admm.ADMM` (each step starts again from ``rho``).
    initial_masks : dict of name -> bool ndarray, optional
        Masks already frozen before the first step.

    Returns
    -------
    list of PruningStage
        One per step: its masks (each a subset of the previous step's), sparsity, the ADMM records and the
        ``trainer.fit()`` results of both phases.
    """
    constraints = parse_constraints(constraints)
    admm_epochs = check_positive_int(admm_epochs, "admm_epochs", minimum=0)
    retrain_epochs = check_positive_int(retrain_epochs, "retrain_epochs", minimum=0)
    steps = stage_constraints(constraints, targets)
    masks = None if initial_masks is None else {k: np.asarray(v, dtype=bool).copy()
                                                for k, v in initial_masks.items()}
    stages: list[PruningStage] = []
    for step_constraints in steps:
        admm = ADMM(step_constraints, rho=rho, rho_growth=rho_growth, rho_max=rho_max,
                    update_every=update_every, update_unit=update_unit, frozen_masks=masks)
        # Order matters: ADMM adds its penalty gradient, then the frozen mask zeroes pruned positions.
        hooks = [admm] + ([MaskedRetraining(masks)] if masks else [])
        fit_admm = run_phase(make_trainer, hooks, admm_epochs)
        masks = hard_prune(model, step_constraints, frozen_masks=masks)
        fit_retrain = run_phase(make_trainer, [MaskedRetraining(masks)], retrain_epochs)
        stages.append(PruningStage.from_masks(None, step_constraints, masks, admm=list(admm.history),
                                              fit={"admm": fit_admm, "retrain": fit_retrain}))
    return stages
