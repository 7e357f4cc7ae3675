r"""Gradual pruning (Zhu & Gupta 2017): masks that tighten on a cubic schedule during training, no penalty.

Instead of training towards a sparse set first (ADMM, group lasso) and cutting once, the mask itself is
tightened step by step while the network trains and adapts to it. Zhu & Gupta [1]_ raise the sparsity
from :math:`s_i` to :math:`s_f` over :math:`n` pruning updates spaced :math:`\Delta t` optimizer steps apart,
starting at step :math:`t_0`:

.. math:: s_t = s_f + (s_i - s_f)\Big(1 - \frac{t - t_0}{n\,\Delta t}\Big)^3,
          \qquad t \in \{t_0,\ t_0 + \Delta t,\ \dots,\ t_0 + n\Delta t\}

(:func:`gradual_sparsity`): steep at first, while there are many redundant weights, flat at the end,
where every weight removed costs accuracy. At each such step the mask is recomputed by the structure's own
rule at :math:`s_t` (:meth:`refimpl.prune.Constraint.mask`: the projections of
:data:`refimpl.projections.PROJECTIONS`, so every structure works — unstructured, filters, blocks,
balanced, N:M, vector ∧ block ...) and applied to the weights **and** the optimizer state, as
:class:`~refimpl.prune.MaskedRetraining` does; between updates the mask is enforced after every step.
There is no penalty term (Guo et al. call such a scheme *regularization-free* [2]_). The engine runs it as
the phase ``gradual`` (``method = "gradual"``), followed by its hard prune at the final target and masked
fine-tuning.

A pruned weight never returns (choice, documented)
---------------------------------------------------
Each update recomputes the mask **on the surviving weights only**,

.. math:: M_t = \operatorname{mask}_{S(s_t)}(W \odot M_{t-\Delta t}) \wedge M_{t-\Delta t},

(:meth:`~refimpl.prune.Constraint.mask` with ``frozen=``), exactly as progressive pruning freezes the masks
of earlier steps (:mod:`refimpl.prune.progressive`). The masks are therefore nested,
:math:`M_{t_0} \supseteq M_{t_0 + \Delta t} \supseteq \dots`, and since :math:`s_t` never decreases each
update keeps exactly the structure's count at :math:`s_t` (counted over the whole layer) for the exact
structures. Why not let pruned weights compete again: a pruned weight is exactly 0 and its optimizer state
is cleared, so it could only come back as a tie among zeros, never on merit; regrowth rules need a score
for pruned weights (their gradient, as in RigL), which is another method. The paper does not say whether
a pruned weight may come back; this is refimpl's rule.

Where a constraint's own sparsity cannot be scheduled, a schedulable twin is used for the intermediate
masks (:func:`constraint_at`): N:M (:math:`s_f = 1 - N/M`) ramps as balanced sparsity with ``V = M``
(the same per-group rule); vector ∧ block needs its ``total_sparsity=`` form, and its vector and block
parts ramp side by side towards the final split. Weight unification (``"unified"``) prunes nothing with
``sparsity=`` alone (it unifies blocks), so its masks stay full until the hard prune. The last update
uses the configured constraint itself, so the final mask is exactly the one asked for. Intermediate balanced
targets are rounded by the counting rule (multiples of ``1/V``), so a balanced mask tightens in steps of
one entry per vector.

References
----------
.. [1] M. Zhu, S. Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model
   compression", ICLR 2018 workshop. arXiv:1710.01878
.. [2] C. Guo et al., "Regularization-Free Structural Pruning for GPU Inference Acceleration", ISQED 2021.
   https://doi.org/10.1109/ISQED51717.2021.9424299
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from refimpl._validation import check_positive_int, check_probability
from refimpl.prune.constraints import Constraint, constraints_by_param, parse_constraints
from refimpl.prune.masking import MaskedRetraining, masks_sparsity

__all__ = ["GradualPruning", "constraint_at", "final_sparsity", "gradual_sparsity", "steps_for_epochs"]


def gradual_sparsity(step, *, initial: float, final: float, begin: int, duration: int) -> float:
    r"""Return the target sparsity after ``step`` optimizer steps: the cubic schedule of Zhu & Gupta.

    .. math:: s(t) = s_f + (s_i - s_f)\,\Big(1 - \frac{\operatorname{clip}(t - t_0,\ 0,\ D)}{D}\Big)^3

    with :math:`t_0` = ``begin`` and :math:`D = n\Delta t` = ``duration``: :math:`s_i` up to ``begin``,
    :math:`s_f` from ``begin + duration`` on. ``duration = 0`` jumps from :math:`s_i` to :math:`s_f` at
    ``begin`` (one-shot pruning at step ``begin``).

    Parameters
    ----------
    step : int
        :math:`t \ge 0`, optimizer steps taken.
    initial, final : float in [0, 1]
        :math:`s_i` and :math:`s_f`.
    begin, duration : int
        :math:`t_0 \ge 0` and :math:`D \ge 0`.

    Returns
    -------
    float
        :math:`s(t)`; non-decreasing in ``t`` when ``initial <= final``.

    Examples
    --------
    >>> [round(gradual_sparsity(t, initial=0.0, final=0.8, begin=10, duration=40), 4)
    ...  for t in (0, 10, 30, 50)]
    [0.0, 0.0, 0.7, 0.8]
    """
    t = check_positive_int(step, "step", minimum=0)
    s_i, s_f = check_probability(initial, "initial"), check_probability(final, "final")
    t0 = check_positive_int(begin, "begin", minimum=0)
    d = check_positive_int(duration, "duration", minimum=0)
    if t < t0 or (t == t0 and d > 0):
        return s_i                    # exactly (s_f + (s_i - s_f) * 1 can be off by a rounding)
    if t >= t0 + d:                   # also d == 0 at t == t0: one shot
        return s_f
    value = s_f + (s_i - s_f) * (1.0 - (t - t0) / d) ** 3
    return min(max(value, min(s_i, s_f)), max(s_i, s_f))   # rounding never leaves [s_i, s_f]


def final_sparsity(c: Constraint) -> float:
    """Return the sparsity ``c`` ends at: ``sparsity``, ``1 - n/m`` (N:M), ``total_sparsity`` (vector_block).

    Raises
    ------
    ValueError
        For a constraint given by a count (``keep=``, vector ∧ block's two parts, unification's
        ``unify=`` alone): a schedule needs a sparsity to ramp to.
    """
    if not isinstance(c, Constraint):
        raise TypeError(f"c must be a Constraint, got {type(c).__name__}")
    if c.structure == "nm":
        return 1.0 - c.params["n"] / c.params["m"]
    if c.structure == "vector_block" and c.params.get("total_sparsity") is not None:
        return float(c.params["total_sparsity"])
    if c.sparsity is None:
        hint = (" (vector_block: give total_sparsity= and vector_share= instead of the two parts)"
                if c.structure == "vector_block" else "")
        raise ValueError(f"gradual pruning ramps a sparsity, but the constraint on {c.param} "
                         f"({c.structure!r}) gives none: give sparsity= rather than keep={c.keep!r}{hint}")
    return c.sparsity


def constraint_at(c: Constraint, sparsity: float, shape: tuple[int, ...] | None = None) -> Constraint:
    r"""Return the constraint whose mask is ``c``'s structure at the intermediate ``sparsity``.

    ``c`` itself at its :func:`final_sparsity`; otherwise ``c.with_sparsity(sparsity)``, with two twins:

    * **N:M** becomes balanced sparsity with ``vector_size = m`` (the same rule per group of ``m``, equal
      to N:M at ``1 - n/m``);
    * **vector ∧ block** (``total_sparsity=`` form) is split once, at its final target :math:`s_f`, by
      :func:`~refimpl.projections.vector_block_split` into the parts :math:`s_{v,f}` and :math:`s_{b,f}`;
      at :math:`s` each part is at the same fraction of its way, :math:`(s / s_f)\, s_{v,f}` and
      :math:`(s / s_f)\, s_{b,f}`. Both parts then only grow along the schedule, so the nested masks can
      reach the final split exactly (splitting every intermediate total anew would not: the block count
      of :func:`~refimpl.projections.vector_block_split` is not monotone in the total), at the price of
      intermediate totals that follow the schedule only approximately. Needs the weight's ``shape``
      (the number of blocks).
    """
    s = check_probability(sparsity, "sparsity")
    final = final_sparsity(c)
    if s == final:
        return c
    if c.structure == "nm":
        extra = {k: v for k, v in c.params.items() if k == "engine"}
        return Constraint(c.param, "balanced", sparsity=s, vector_size=c.params["m"], **extra)
    if c.structure == "vector_block" and c.params.get("total_sparsity") is not None:
        from refimpl.projections import vector_block_split

        if shape is None:
            raise ValueError("shape is required for a vector_block constraint (its number of blocks)")
        v, (bh, bw) = c.params["vector_size"], c.params["block_shape"]
        rows, cols = shape[0], math.prod(shape[1:])
        n_blocks = -(-rows // bh) * -(-cols // bw)
        share = c.params.get("vector_share")
        k_v, k_b = vector_block_split(final, v, n_blocks, 0.5 if share is None else share)
        fraction = s / final                      # final > s >= 0 here
        rest = {k: val for k, val in c.params.items() if k not in ("total_sparsity", "vector_share")}
        return Constraint(c.param, "vector_block", **rest, vector_sparsity=fraction * (1 - k_v / v),
                          block_sparsity=fraction * (1 - k_b / n_blocks))
    return c.with_sparsity(s)


class GradualPruning(MaskedRetraining):
    r"""Trainer hook: the mask follows :func:`gradual_sparsity` every ``update_every`` steps; no penalty.

    After optimizer step :math:`t` (``trainer.step``) with :math:`t = t_0 + j\Delta t`,
    :math:`0 \le j \le n`, every constrained parameter's mask becomes the AND, over its constraints, of
    the constraint's mask at :math:`s_t` computed on the surviving weights (module docstring); pruned
    weights and their optimizer state are zeroed at once. Between updates the hook is
    :class:`~refimpl.prune.MaskedRetraining` with the current masks (gradients of pruned weights zeroed
    after backward, weights and state after the step). With :math:`t_0 = 0` the first update is made
    before the first step (at :math:`s_i`).

    Parameters
    ----------
    constraints : list of Constraint (or dicts)
        The final targets; each needs a sparsity to ramp to (:func:`final_sparsity`).
    initial_sparsity : float in [0, 1], default 0
        :math:`s_i`, the same for every constraint (capped at a constraint's own final sparsity).
    begin : int, default 0
        :math:`t_0`, the optimizer step of the first update.
    end : int
        The step by which the ramp must be over: :math:`n = \lfloor (\text{end} - t_0) / \Delta t \rfloor`
        further updates follow the first, the last at :math:`t_0 + n\Delta t \le \text{end}`, where
        :math:`s_f` is reached. ``end = begin`` prunes to :math:`s_f` at once.
    update_every : int, default 1
        :math:`\Delta t \ge 1`, optimizer steps between updates.
    frozen_masks : dict of name -> bool ndarray, optional
        Masks of earlier pruning steps: the starting masks (weights they prune stay pruned).

    Attributes
    ----------
    masks : dict of name -> bool ndarray
        The current masks (set at the start of training; saved in checkpoints, so a resumed run
        continues bit for bit).
    n_updates : int
        :math:`n` (the updates after the first).

    Notes
    -----
    ``on_epoch_end`` returns ``gradual.sparsity`` (share of pruned entries over the masked parameters)
    and ``gradual.progress`` (how far the cubic has come: 0 at :math:`s_i`, 1 at :math:`s_f`).
    """

    def __init__(self, constraints: Sequence[Constraint | Mapping[str, Any]], *, end: int,
                 initial_sparsity: float = 0.0, begin: int = 0, update_every: int = 1,
                 frozen_masks: Mapping[str, np.ndarray] | None = None) -> None:
        super().__init__({})
        self.constraints = parse_constraints(constraints)
        self.finals = [final_sparsity(c) for c in self.constraints]
        self.initial = check_probability(initial_sparsity, "initial_sparsity")
        self.begin = check_positive_int(begin, "begin", minimum=0)
        end = check_positive_int(end, "end", minimum=0)
        if end < self.begin:
            raise ValueError(f"end must be >= begin = {self.begin}, got {end}")
        self.update_every = check_positive_int(update_every, "update_every")
        self.n_updates = (end - self.begin) // self.update_every
        self.duration = self.n_updates * self.update_every
        if frozen_masks is not None and not isinstance(frozen_masks, Mapping):
            raise TypeError(f"frozen_masks must be a dict of name -> bool ndarray, got "
                            f"{type(frozen_masks).__name__}")
        self.frozen = {}
        for name, mask in (frozen_masks or {}).items():
            mask = np.asarray(mask)
            if mask.dtype != np.bool_:
                raise TypeError(f"frozen_masks[{name!r}] must be boolean, got dtype {mask.dtype}")
            self.frozen[name] = mask.copy()

    # --- the schedule ----------------------------------------------------------------------------------
    def targets_at(self, step: int) -> list[float]:
        """Each constraint's scheduled sparsity after ``step`` optimizer steps (in constraint order)."""
        return [gradual_sparsity(step, initial=min(self.initial, f), final=f, begin=self.begin,
                                 duration=self.duration) for f in self.finals]

    def is_update_step(self, step: int) -> bool:
        """Whether the masks are recomputed after optimizer step ``step``."""
        return (self.begin <= step <= self.begin + self.duration
                and (step - self.begin) % self.update_every == 0)

    def progress(self, step: int) -> float:
        """How far the cubic has come at ``step``: 0 before ``begin``, 1 from the last update on."""
        return gradual_sparsity(step, initial=0.0, final=1.0, begin=self.begin, duration=self.duration)

    # --- the masks -------------------------------------------------------------------------------------
    def update(self, params: Mapping[str, np.ndarray], step: int) -> None:
        """Recompute every constrained parameter's mask at the sparsities of ``step`` (nested, see above)."""
        targets = self.targets_at(step)
        target_of = {id(c): s for c, s in zip(self.constraints, targets, strict=True)}
        for name, cons in constraints_by_param(self.constraints).items():
            current = self.masks[name]
            W = params[name]
            self.masks[name] = np.logical_and.reduce(
                [constraint_at(c, target_of[id(c)], W.shape).mask(W, frozen=current) for c in cons])

    # --- Hook interface --------------------------------------------------------------------------------
    def on_train_begin(self, trainer) -> None:
        """Start from the frozen masks (all-True elsewhere); at ``begin = 0`` make the first update now."""
        params = trainer.params
        for c in self.constraints:
            if c.param not in params:
                raise KeyError(f"constraint on {c.param!r}: the model has no such parameter "
                               f"(it has {sorted(params)})")
        self.masks = {name: mask.copy() for name, mask in self.frozen.items()}
        for c in self.constraints:
            self.masks.setdefault(c.param, np.ones(params[c.param].shape, dtype=bool))
        super().on_train_begin(trainer)          # checks the masks, zeroes weights and state off them
        if trainer.step == 0 and self.begin == 0:
            self.update(params, 0)
            self._zero_weights_and_state(trainer)

    def after_step(self, trainer) -> None:
        """Update the masks if this step is on the schedule; keep pruned weights and state at zero."""
        if self.is_update_step(trainer.step):
            self.update(trainer.params, trainer.step)
        self._zero_weights_and_state(trainer)

    def on_epoch_end(self, trainer, epoch: int) -> dict[str, float]:
        """Return ``gradual.sparsity`` and ``gradual.progress`` for the epoch's log record."""
        return {"gradual.sparsity": masks_sparsity(self.masks),
                "gradual.progress": self.progress(trainer.step)}

    def __repr__(self) -> str:
        return (f"GradualPruning({len(self.constraints)} constraints, initial={self.initial:g}, "
                f"begin={self.begin}, updates={self.n_updates + 1} every {self.update_every} steps)")


def steps_for_epochs(epochs, steps_per_epoch: int, name: str) -> int:
    """``round(epochs * steps_per_epoch)``: an epoch count (fractions allowed) in optimizer steps."""
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Real) or not math.isfinite(epochs) \
            or epochs < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {epochs!r}")
    return round(float(epochs) * check_positive_int(steps_per_epoch, "steps_per_epoch"))
