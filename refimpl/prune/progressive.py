r"""Progressive multi-step ADMM pruning: reach a high sparsity through increasing targets.

The engine runs the steps (:mod:`refimpl.engine.plan` plans ``admm_k → prune_k → retrain_k`` per step,
:mod:`refimpl.engine.phases` carries them out); this module holds the rule for the steps' targets and
the reasoning behind frozen masks.

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

from refimpl._validation import check_probability
from refimpl.prune.constraints import Constraint, parse_constraints

__all__ = ["stage_constraints"]


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
