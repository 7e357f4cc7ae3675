r"""Hard pruning and masked retraining: fix a support, then train only the weights on it.

After the ADMM phase (or directly, for magnitude pruning) the weights are **hard pruned**,
:math:`W \leftarrow \Pi_S(W)` — the projection of W itself, not of the ADMM copy Z — and the resulting
keep mask :math:`M` is frozen. **Masked retraining** then trains without any penalty while enforcing

.. math:: W \odot (1 - M) = 0

at every step. Zeroing the weights alone is not enough with stateful optimizers: a momentum buffer or an
Adam moment that still holds a value at a pruned position would push the weight off zero at the next
step, and weight decay acts on every entry. :class:`MaskedRetraining` therefore zeroes, at the pruned
positions, (1) the gradient after backward, so no new momentum builds up, and (2) after the optimizer
step the weight **and** every optimizer state entry (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``),
so pruned weights never revive.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from refimpl.prune.constraints import Constraint, constraints_by_param, parse_constraints
from refimpl.train.trainer import Hook

__all__ = [
    "MaskedRetraining",
    "apply_masks",
    "combine_masks",
    "hard_prune",
    "masks_sparsity",
]


def _live_params(model_or_params) -> dict[str, np.ndarray]:
    """``{name: live array}`` from a Module or from such a dict itself."""
    if isinstance(model_or_params, Mapping):
        return dict(model_or_params)
    if hasattr(model_or_params, "parameters") and callable(model_or_params.parameters):
        return model_or_params.parameters()
    raise TypeError(f"model must be a Module or a dict of arrays, got {type(model_or_params).__name__}")


def _check_masks(masks: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray]) -> None:
    for name, mask in masks.items():
        if name not in params:
            raise KeyError(f"masks[{name!r}]: the model has no such parameter (it has {sorted(params)})")
        if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
            raise TypeError(f"masks[{name!r}] must be a boolean ndarray, got {getattr(mask, 'dtype', mask)}")
        if mask.shape != params[name].shape:
            raise ValueError(f"masks[{name!r}] has shape {mask.shape}, "
                             f"the parameter has {params[name].shape}")


def combine_masks(*masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Intersect (logical AND) several mask dicts; a name missing from one dict is unconstrained there."""
    out: dict[str, np.ndarray] = {}
    for m in masks:
        for name, mask in m.items():
            out[name] = out[name] & mask if name in out else np.asarray(mask, dtype=bool).copy()
    return out


def hard_prune(model, constraints: Iterable[Constraint | Mapping[str, Any]], *,
               frozen_masks: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    r"""Project the constrained weights **in place** and return their keep masks.

    For a parameter with one constraint, :math:`W \leftarrow \Pi_S(W)`. With several constraints
    :math:`S_1, \dots, S_J` on one parameter, each mask :math:`M_j` is computed from the same W and the
    weight is multiplied by their intersection :math:`M = \bigwedge_j M_j`. For the "drop groups" sets
    (unstructured, filters, shapes, ...) dropping more never leaves a set, so :math:`W \odot M` lies in every
    :math:`S_j` — but it is **not** the projection onto :math:`\bigcap_j S_j`, which has no cheap exact
    form (choosing rows and columns jointly is combinatorial); it is the simple, documented heuristic.

    Parameters
    ----------
    model : Module or dict of name -> ndarray
        Its parameters are modified in place.
    constraints : list of Constraint (or dicts)
    frozen_masks : dict of name -> bool ndarray, optional
        Masks of earlier steps; every projection respects them (see :mod:`refimpl.prune.constraints`) and
        the returned masks are their subsets.

    Returns
    -------
    dict of name -> bool ndarray
        ``True`` where a weight is kept, one entry per constrained parameter. Parameters only present in
        ``frozen_masks`` are re-masked and returned too, so the result is the complete mask set.

    Notes
    -----
    For ``structure="unified"`` (weight unification) the single-constraint case copies the projection,
    which changes the unified blocks' values; the mask then marks only the pruned blocks. Masked
    retraining keeps pruned blocks at zero but does not keep unified blocks unified: use
    :func:`~refimpl.prune.unified_retraining.hard_prune_unified` and
    :class:`~refimpl.prune.unified_retraining.UnifiedRetraining` (the engine does).
    """
    params = _live_params(model)
    frozen = {k: np.asarray(v, dtype=bool) for k, v in (frozen_masks or {}).items()}
    _check_masks(frozen, params)
    groups = constraints_by_param(parse_constraints(constraints))
    for name in groups:
        if name not in params:
            raise KeyError(f"constraint on {name!r}: the model has no such parameter "
                           f"(it has {sorted(params)})")
    masks: dict[str, np.ndarray] = {}
    for name, cons in groups.items():
        W = params[name]
        prev = frozen.get(name)
        mask = np.logical_and.reduce([c.mask(W, frozen=prev) for c in cons])
        if len(cons) == 1:
            W[...] = cons[0].project(W, frozen=prev)
            W[~mask] = 0  # the projection zeroes them already; this guarantees exact zeros for any structure
        else:
            W[~mask] = 0
        masks[name] = mask
    for name, prev in frozen.items():
        if name not in masks:
            params[name][~prev] = 0
            masks[name] = prev.copy()
    return masks


def apply_masks(model, masks: Mapping[str, np.ndarray]) -> None:
    """Zero, in place, every weight whose mask entry is ``False``."""
    params = _live_params(model)
    _check_masks(masks, params)
    for name, mask in masks.items():
        params[name][~mask] = 0


def masks_sparsity(masks: Mapping[str, np.ndarray], *, per_param: bool = False) -> float | dict[str, float]:
    """Share of pruned (``False``) entries over all masks, or per parameter with ``per_param=True``."""
    if per_param:
        return {name: 1.0 - int(np.count_nonzero(m)) / m.size if m.size else 0.0 for name, m in masks.items()}
    total = sum(m.size for m in masks.values())
    kept = sum(int(np.count_nonzero(m)) for m in masks.values())
    return 1.0 - kept / total if total else 0.0


#: Optimizer state entries (PyTorch's names) zeroed at pruned positions.
OPTIMIZER_STATE_KEYS = ("momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")


class MaskedRetraining(Hook):
    """Trainer hook that keeps pruned weights at exactly zero during (re)training.

    Parameters
    ----------
    masks : dict of param name -> bool ndarray
        ``True`` = trainable, ``False`` = pruned for good. Copied.

    Notes
    -----
    * ``on_train_begin``: zero the pruned weights and optimizer state (a fresh or restored run starts on
      the support);
    * ``after_backward``: zero the pruned gradients (before weight decay and momentum see them);
    * ``after_step``: zero the pruned weights and their ``momentum_buffer`` / ``exp_avg`` /
      ``exp_avg_sq`` entries. With zero gradient and zero state, SGD (with momentum, Nesterov and weight
      decay, since the weight is 0) and Adam leave a pruned weight at 0 anyway; this step is the guard
      that makes it true for any optimizer, including decoupled weight decay.
    """

    def __init__(self, masks: Mapping[str, np.ndarray]) -> None:
        if not isinstance(masks, Mapping):
            raise TypeError(f"masks must be a dict of name -> bool ndarray, got {type(masks).__name__}")
        self.masks: dict[str, np.ndarray] = {}
        for name, mask in masks.items():
            mask = np.asarray(mask)
            if mask.dtype != np.bool_:
                raise TypeError(f"masks[{name!r}] must be boolean, got dtype {mask.dtype}")
            self.masks[name] = mask.copy()

    def _zero_weights_and_state(self, trainer) -> None:
        state = getattr(trainer.optimizer, "state", {}) or {}
        for name, mask in self.masks.items():
            trainer.params[name][~mask] = 0
            for key, buf in state.get(name, {}).items():
                if key in OPTIMIZER_STATE_KEYS and isinstance(buf, np.ndarray) and buf.shape == mask.shape:
                    buf[~mask] = 0

    def on_train_begin(self, trainer) -> None:
        """Check the masks against the model; put weights and optimizer state on the support."""
        _check_masks(self.masks, trainer.params)
        self._zero_weights_and_state(trainer)

    def after_backward(self, trainer) -> None:
        """Zero the gradients of pruned weights."""
        for name, mask in self.masks.items():
            trainer.grads[name][~mask] = 0

    def after_step(self, trainer) -> None:
        """Zero pruned weights and their optimizer state after the update."""
        self._zero_weights_and_state(trainer)

    def sparsity(self) -> float:
        """Share of pruned entries over all masked parameters."""
        return masks_sparsity(self.masks)

    def state_dict(self) -> dict[str, Any]:
        """Return the masks (boolean arrays) keyed ``"mask.<param>"``."""
        return {f"mask.{name}": mask.copy() for name, mask in self.masks.items()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the masks saved by :meth:`state_dict`."""
        self.masks = {key[len("mask."):]: np.asarray(value, dtype=bool).copy()
                      for key, value in state.items() if key.startswith("mask.")}

    def __repr__(self) -> str:
        return f"MaskedRetraining({len(self.masks)} masks, sparsity={self.sparsity():.4f})"
