r"""Magnitude pruning (Han et al., 2015): the baseline every pruning method is compared against.

Keep the weights (or groups) with the largest magnitude, drop the rest, retrain the survivors. With the
same :class:`~refimpl.prune.constraints.Constraint` objects as ADMM this *is* the Euclidean projection:
"largest :math:`|w|`" for unstructured sparsity and "largest L2 group norm" for filters, shapes, blocks —
:math:`\Pi_S(W)` minimises :math:`\|W - Z\|_F` over :math:`Z \in S` — so the only difference from ADMM is
that the network is never trained toward the set before the cut.

Two schedules, compared under the **same total retraining budget** of ``epochs`` (run by the engine:
``method = "magnitude"`` / ``"magnitude_iterative"``, :mod:`refimpl.engine.plan`):

* **one-shot**: prune to the final target, then retrain all ``epochs`` with the mask frozen;
* **iterative** (Han et al.'s "iterative pruning"): ``rounds`` rounds of prune-to-a-higher-target +
  retrain, the epochs split between the rounds. Weights pruned in one round stay pruned (the next round's
  projection respects the frozen mask, exactly as in :mod:`refimpl.prune.progressive`).

References
----------
.. [1] S. Han, J. Pool, J. Tran, W. J. Dally, "Learning both Weights and Connections for Efficient Neural
   Networks", NeurIPS 2015. https://arxiv.org/abs/1506.02626
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from refimpl._validation import check_positive_int, check_probability
from refimpl.projections import mask_unstructured_global
from refimpl.prune.constraints import Constraint
from refimpl.prune.masking import _live_params, hard_prune

__all__ = [
    "global_magnitude_prune",
    "iterative_targets",
    "magnitude_prune",
    "split_budget",
]


def magnitude_prune(model, constraints: Sequence[Constraint | Mapping[str, Any]], *,
                    frozen_masks: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """One-shot magnitude pruning of ``model`` in place; returns the keep masks.

    The same operation as :func:`refimpl.prune.masking.hard_prune` (projection = magnitude ranking),
    named for what it is in the baseline.
    """
    return hard_prune(model, constraints, frozen_masks=frozen_masks)


def global_magnitude_prune(model, names: Sequence[str], sparsity: float | None = None,
                           keep: int | None = None, *,
                           frozen_masks: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    r"""Unstructured magnitude pruning with one threshold shared by the layers ``names`` (in place).

    Keeps the ``k`` largest :math:`|w|` over all listed layers together
    (:func:`refimpl.projections.mask_unstructured_global`), so each layer's own sparsity follows from the
    magnitudes — the per-layer ratios of Han et al. and of the ADMM LeNet-5 result are of this kind
    (the large fully connected layers end up far sparser than the convolutions). With ``frozen_masks``
    the ranking runs on :math:`W \odot M` and the result is ANDed with :math:`M`.

    Returns
    -------
    dict of name -> bool ndarray
        The keep masks of the listed layers.
    """
    params = _live_params(model)
    if isinstance(names, str) or not names:
        raise ValueError(f"names must be a non-empty list of parameter names, got {names!r}")
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f"names {missing} are not parameters of the model (it has {sorted(params)})")
    frozen = dict(frozen_masks or {})
    scores = {n: params[n] * frozen[n] if n in frozen else params[n] for n in names}
    masks = mask_unstructured_global(scores, sparsity=sparsity, keep=keep)
    for n in names:
        if n in frozen:
            masks[n] = masks[n] & frozen[n]
        params[n][~masks[n]] = 0
    return masks


def iterative_targets(final: float, rounds: int, schedule: str = "geometric") -> list[float]:
    r"""Increasing sparsity targets :math:`s_1 < \dots < s_R = s` for iterative pruning.

    * ``"geometric"`` (default): every round prunes the same share of the survivors,
      :math:`1 - s_r = (1 - s)^{r/R}` — Han et al.'s "prune a fixed fraction each iteration";
    * ``"linear"``: :math:`s_r = s \cdot r / R`.

    The last target is exactly ``final``.

    Examples
    --------
    >>> iterative_targets(0.75, 2)
    [0.5, 0.75]
    >>> iterative_targets(0.9, 3, "linear")
    [0.3, 0.6, 0.9]
    """
    final = check_probability(final, "final")
    rounds = check_positive_int(rounds, "rounds")
    if schedule == "geometric":
        targets = [1.0 - (1.0 - final) ** (r / rounds) for r in range(1, rounds)]
    elif schedule == "linear":
        targets = [final * r / rounds for r in range(1, rounds)]
    else:
        raise ValueError(f"schedule must be 'geometric' or 'linear', got {schedule!r}")
    return [round(t, 12) for t in targets] + [final]


def split_budget(epochs: int, rounds: int) -> list[int]:
    """Split ``epochs`` into ``rounds`` near-equal integer parts, the extra epochs going to the last rounds.

    >>> split_budget(10, 3)
    [3, 3, 4]
    """
    epochs = check_positive_int(epochs, "epochs", minimum=0)
    rounds = check_positive_int(rounds, "rounds")
    base, extra = divmod(epochs, rounds)
    return [base + (1 if r >= rounds - extra else 0) for r in range(rounds)]
