r"""SSL group lasso (Wen et al., NeurIPS 2016) as a proximal step: StructADMM's structured baseline.

Structured Sparsity Learning trains with a group-lasso penalty (Yuan & Lin [2]_) over the groups of a
structure (filters, channels, shapes, kernels, blocks; single entries give the plain L1 penalty):

.. math:: \min_W\; f(W) + \lambda \sum_j \sum_{g \in \mathcal{G}_j} \|W_g\|_2 ,

where :math:`\mathcal{G}_j` is the partition of constraint :math:`j`'s weight into the groups its
projection keeps or drops whole (:func:`group_index`). The penalty is not differentiable where a group is
zero, which is exactly where it is useful; here it is handled by **proximal gradient** (Parikh & Boyd
[3]_, §4.2): the trainer takes its ordinary step on :math:`f` with learning rate :math:`\eta`, then the
:class:`GroupLasso` hook applies the proximal operator of :math:`\eta\lambda \sum_g \|W_g\|_2`,

.. math:: W_g \leftarrow W_g \cdot \max\!\Big(0,\; 1 - \frac{\eta\lambda}{\|W_g\|_2}\Big)
          \qquad \text{for every group } g

(block soft-thresholding, :func:`prox_group_lasso`). After the group-lasso phase the engine's hard prune
cuts to the configured target (the structure's projection keeps the groups of largest norm) and masked
retraining follows — the same cut and retraining as ADMM, so an SSL/ADMM comparison differs only in the
training before the cut.

Proximal rather than subgradient (a documented choice)
------------------------------------------------------
Wen et al. [1]_ add the (sub)gradient :math:`\lambda W_g / \|W_g\|_2` of the penalty to the gradient
inside Caffe's SGD and count as removed the groups whose weights end up below a small threshold after
training. A subgradient step never lands on zero: a group near zero jumps across it by about
:math:`\eta\lambda` every step, so which groups are "zero" depends on the threshold chosen afterwards.
The proximal step sets every group whose norm falls to :math:`\eta\lambda` or below to **exactly** zero
during training; with plain SGD it is (stochastic) proximal gradient, whose fixed points with the full
gradient are the stationary points of the penalised objective, so the zero groups it produces are the
sparsity pattern the penalty selects. At such a fixed point :math:`W^*` a group can be zero only where
the loss pulls on it weakly, :math:`\|\nabla_{W_g} f(W^*)\|_2 \le \lambda` (the prox zeroes
:math:`-\eta\nabla_{W_g} f` iff its norm is at most :math:`\eta\lambda`), while every nonzero group
balances a pull of norm exactly :math:`\lambda`, :math:`\nabla_{W_g} f = -\lambda W_g / \|W_g\|_2`:
:math:`\lambda` is the gradient norm a group must attract to survive. The remaining differences from
[1]_: the amount of pruning is set by the constraints' targets (the hard cut), not by :math:`\lambda`
and a threshold; :math:`\lambda` is one value for all groups of all constraints (Wen et al. weight each
structure's term separately).

With momentum SGD or Adam the step before the prox is not a plain gradient step; the hook still uses the
optimizer's current learning rate :math:`\eta` as the step. That is a heuristic: only plain SGD is
proximal gradient exactly. The hook touches the weights only, not the optimizer state.

Several constraints on one parameter
------------------------------------
Filters **and** shapes on one layer give two overlapping partitions; the prox of the sum of their
penalties has no closed form in general. The hook applies the proxes one after the other, in the
constraints' order: each is an exact proximal step on one term of the sum, which makes the iteration an
incremental proximal method (Bertsekas [4]_). Constraints on different parameters do not interact.

References
----------
.. [1] W. Wen, C. Wu, Y. Wang, Y. Chen, H. Li, "Learning Structured Sparsity in Deep Neural Networks",
   NeurIPS 2016. arXiv:1608.03665
.. [2] M. Yuan, Y. Lin, "Model selection and estimation in regression with grouped variables", J. R.
   Stat. Soc. B 68(1), 2006. https://doi.org/10.1111/j.1467-9868.2005.00532.x
.. [3] N. Parikh, S. Boyd, "Proximal Algorithms", Foundations and Trends in Optimization 1(3), 2014.
   https://doi.org/10.1561/2400000003
.. [4] D. P. Bertsekas, "Incremental proximal methods for large scale convex optimization",
   Mathematical Programming 129, 2011. https://doi.org/10.1007/s10107-011-0472-0
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from refimpl._validation import as_float_array
from refimpl.prune.constraints import Constraint, parse_constraints
from refimpl.train.trainer import Hook

__all__ = [
    "GROUP_LASSO_STRUCTURES",
    "GroupLasso",
    "group_index",
    "group_lasso_penalty",
    "group_norms",
    "group_tile",
    "prox_group_lasso",
]

#: Structures whose set is "drop whole disjoint groups", i.e. that have a group-lasso penalty. Balanced,
#: N:M, vector ∧ block and unified sparsity constrain counts *inside* vectors or change values, so no
#: sum of group norms promotes them.
GROUP_LASSO_STRUCTURES = ("unstructured", "filters", "channels", "shapes", "kernels", "blocks")


# --- the group partition ---------------------------------------------------------------------------------

def _check_structure(structure, block_shape) -> str:
    if structure not in GROUP_LASSO_STRUCTURES:
        raise ValueError(f"structure must be one of {list(GROUP_LASSO_STRUCTURES)} (group lasso needs "
                         f"disjoint groups that are pruned whole), got {structure!r}")
    if structure == "blocks" and block_shape is None:
        raise ValueError("block_shape is required for structure 'blocks'")
    if structure != "blocks" and block_shape is not None:
        raise ValueError(f"block_shape applies to structure 'blocks' only, got structure {structure!r}")
    return structure


def _check_shape(shape, structure: str) -> tuple[int, ...]:
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__"):
        raise TypeError(f"shape must be a tuple of integers, got {shape!r}")
    if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1 for s in shape):
        raise ValueError(f"shape must hold integers >= 1, got {tuple(shape)!r}")
    if structure != "unstructured" and len(shape) not in (2, 4):
        raise ValueError(f"shape must be a conv (F, C, KH, KW) or linear (out, in) weight shape for "
                         f"structure {structure!r}, got {tuple(shape)!r}")
    return tuple(int(s) for s in shape)


def _view_and_tile(shape: tuple[int, ...], structure: str, block_shape) -> tuple[tuple[int, int],
                                                                                  tuple[int, int]]:
    """Return the 2-D view the groups tile and the tile ``(bh, bw)`` (arguments already checked)."""
    if structure == "unstructured":
        # Any shape: C-order entries as one row of 1 x 1 tiles, so group g is flat entry g (the tie order
        # of project_unstructured).
        return (1, math.prod(shape)), (1, 1)
    # The GEMM view (F, C*KH*KW) of refimpl.projections: the tiles below are those of
    # refimpl.projections.groups._group_tiles and blocks._check_block_shape, group for group.
    from refimpl.projections.blocks import _check_block_shape

    rows, cols = shape[0], math.prod(shape[1:])
    kernel = math.prod(shape[2:])             # KH*KW; 1 for a linear weight
    if structure == "blocks":
        return (rows, cols), _check_block_shape(block_shape, (rows, cols))
    tile = {"filters": (1, cols), "channels": (rows, kernel), "shapes": (rows, 1), "kernels": (1, kernel)}
    return (rows, cols), tile[structure]


def group_tile(shape, structure: str, *, block_shape=None) -> tuple[int, int]:
    """Return the tile ``(bh, bw)`` of the GEMM view that one group of ``structure`` covers.

    The GEMM view of a conv weight ``(F, C, KH, KW)`` is ``(F, C*KH*KW)``, of a linear weight ``(out,
    in)`` the weight itself; ``"unstructured"`` tiles the flat weight ``(1, size)`` with ``1 x 1`` tiles
    (and accepts any shape). Edge tiles of ``"blocks"`` are smaller.

    ==================  ==================  ======================================================
    structure           tile                group
    ==================  ==================  ======================================================
    ``unstructured``    ``1 x 1``           one entry (group lasso = L1)
    ``filters``         ``1 x C*KH*KW``     a filter ``W[f]`` (a neuron ``W[j, :]`` of a linear layer)
    ``channels``        ``F x KH*KW``       an input channel ``W[:, c]`` (a column of a linear layer)
    ``shapes``          ``F x 1``           a GEMM column ``W[:, c, kh, kw]``
    ``kernels``         ``1 x KH*KW``       a 2-D kernel ``W[f, c]`` (one entry of a linear layer)
    ``blocks``          ``bh x bw``         a block of the GEMM view (``block_shape``)
    ==================  ==================  ======================================================

    Examples
    --------
    >>> group_tile((20, 1, 5, 5), "channels"), group_tile((500, 800), "filters")
    ((20, 25), (1, 800))
    """
    structure = _check_structure(structure, block_shape)
    return _view_and_tile(_check_shape(shape, structure), structure, block_shape)[1]


def group_index(shape, structure: str, *, block_shape=None) -> np.ndarray:
    """Return, for every entry of a weight of ``shape``, the index of its group (int64, shape ``shape``).

    Groups are numbered row-major over the tile grid of the GEMM view (:func:`group_tile`): filter ``f``,
    channel ``c``, GEMM column ``(c*KH + kh)*KW + kw``, kernel ``f*C + c``, block row-major, entry in
    C order — the "lower index" of the projections' tie rule. :func:`group_norms` lists the norms in
    this order.

    Examples
    --------
    >>> group_index((2, 3), "shapes")
    array([[0, 1, 2],
           [0, 1, 2]])
    """
    structure = _check_structure(structure, block_shape)
    shape = _check_shape(shape, structure)
    from refimpl.projections._select import expand_tiles

    (rows, cols), (bh, bw) = _view_and_tile(shape, structure, block_shape)
    grid = np.arange(-(-rows // bh) * -(-cols // bw), dtype=np.int64).reshape(-(-rows // bh), -(-cols // bw))
    return np.ascontiguousarray(expand_tiles(grid, (rows, cols), bh, bw)).reshape(shape)


def _as_weight(w, structure: str) -> np.ndarray:
    w = as_float_array(w, "w")
    if structure != "unstructured":
        if w.ndim not in (2, 4):
            raise ValueError(f"w must be a conv (F, C, KH, KW) or linear (out, in) weight for structure "
                             f"{structure!r}, got shape {w.shape}")
    if w.size == 0:
        raise ValueError(f"w must not have a zero-length axis, got shape {w.shape}")
    return w


def _norm_grid(w2d: np.ndarray, bh: int, bw: int, engine: str) -> np.ndarray:
    """L2 norm of every tile (float64, the tile grid's shape), free of overflow and underflow."""
    from refimpl.projections._select import group_scores

    # The projections' own squared norms: plain float64 sums when they are exact-range, else the pairs
    # F * 2**E. sqrt(F * 2**E) = sqrt(F * 2**(E mod 2)) * 2**(E div 2) halves the exponent exactly, so a
    # norm is a float64 whenever the true norm is one (an all-zero tile has F = 0: norm 0).
    scores = group_scores(w2d, bh, bw, engine=engine)
    if isinstance(scores, tuple):
        exponent, fraction = scores
        half, odd = np.divmod(exponent, 2)
        return np.ldexp(np.sqrt(np.ldexp(fraction, odd)), half)
    return np.sqrt(scores)


def group_norms(w, structure: str, *, block_shape=None, engine: str = "numba") -> np.ndarray:
    r"""Return the L2 norm :math:`\|W_g\|_2` of every group, in the order of :func:`group_index`.

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in); any shape for ``"unstructured"``
    structure : str
        One of :data:`GROUP_LASSO_STRUCTURES`.
    block_shape : (int, int), optional
        The block ``(bh, bw)`` of ``"blocks"`` (required there, refused elsewhere).
    engine : {"numba", "numpy"}
        Kernels of :func:`refimpl.projections._select.group_scores`, the scores the projections rank
        groups by — so the groups a hard prune keeps are those of largest :func:`group_norms`.

    Returns
    -------
    ndarray of float64, shape (n_groups,)

    Examples
    --------
    >>> group_norms(np.array([[3.0, 0.0], [4.0, 1.0]]), "shapes")      # columns [3, 4] and [0, 1]
    array([5., 1.])
    """
    structure = _check_structure(structure, block_shape)
    w = _as_weight(w, structure)
    view, (bh, bw) = _view_and_tile(w.shape, structure, block_shape)
    return _norm_grid(w.reshape(view), bh, bw, engine).reshape(-1)


def _check_nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def group_lasso_penalty(w, lam: float, structure: str, *, block_shape=None, engine: str = "numba") -> float:
    r"""Return the group-lasso penalty :math:`\lambda \sum_g \|W_g\|_2` of one weight (a float).

    ``lam`` is a finite number :math:`\ge 0`; the other arguments are those of :func:`group_norms`.

    Examples
    --------
    >>> group_lasso_penalty(np.array([[3.0, -4.0]]), 0.5, "unstructured")   # 0.5 * (3 + 4)
    3.5
    """
    lam = _check_nonnegative(lam, "lam")
    return lam * float(np.sum(group_norms(w, structure, block_shape=block_shape, engine=engine)))


def prox_group_lasso(w, threshold: float, structure: str, *, block_shape=None, frozen=None,
                     engine: str = "numba") -> np.ndarray:
    r"""Proximal operator of :math:`t \sum_g \|X_g\|_2`: block soft-thresholding of every group.

    .. math:: \operatorname{prox}_{t R}(W) = \operatorname*{argmin}_X\; \tfrac12 \|X - W\|_F^2
              + t \sum_g \|X_g\|_2, \qquad
              \operatorname{prox}_{t R}(W)_g = \max\!\Big(0,\; 1 - \frac{t}{\|W_g\|_2}\Big)\, W_g .

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in); any shape for ``"unstructured"``
        The weight :math:`W`; never modified.
    threshold : float
        :math:`t \ge 0` (in training, the learning rate times :math:`\lambda`). ``0`` returns a copy.
    structure : str
        One of :data:`GROUP_LASSO_STRUCTURES` (the groups are :func:`group_index`'s).
    block_shape : (int, int), optional
        The block of ``"blocks"`` (required there, refused elsewhere).
    frozen : bool ndarray, shape of ``w``, optional
        Keep mask of earlier pruning steps: the result is :math:`\operatorname{prox}_{tR}(W \odot M)`, the
        exact prox of the penalty restricted to :math:`\{X : X \odot (1 - M) = 0\}` (see Notes); entries
        outside the mask are exactly 0.
    engine : {"numba", "numpy"}
        Kernels computing the group norms (:func:`group_norms`).

    Returns
    -------
    ndarray, shape and dtype of ``w``
        Groups with :math:`\|W_g\|_2 \le t` exactly ``+0``, the others shrunk towards 0 by :math:`t` in
        norm, direction kept. Computed in float64 and rounded once to ``w``'s dtype.

    Raises
    ------
    ValueError, TypeError
        NaN/inf in ``w``; a shape the structure does not take; ``threshold`` negative, NaN or not a
        number; an unknown ``structure`` or ``engine``; a bad ``block_shape`` or ``frozen``.

    Notes
    -----
    **Why block soft-thresholding is the prox.** The groups are disjoint, so the objective is a sum of
    one term per group, :math:`\tfrac12\|x - v\|^2 + t\|x\|` with :math:`v = W_g`, minimised separately.
    Among all :math:`x` of a fixed norm :math:`r`, :math:`\tfrac12\|x - v\|^2 = \tfrac12(r^2 + \|v\|^2)
    - \langle x, v\rangle` is smallest for :math:`x = r\, v / \|v\|` (Cauchy–Schwarz), and the penalty
    depends on :math:`r` only; the problem is therefore one-dimensional,
    :math:`\min_{r \ge 0} \tfrac12 (r - \|v\|)^2 + t r`, solved by :math:`r^* = \max(0, \|v\| - t)`. For
    groups of one entry this is soft-thresholding :math:`\operatorname{sign}(v)\max(|v| - t, 0)`, the prox
    of the L1 norm (Parikh & Boyd, §6.5.1 [1]_; group lasso: Yuan & Lin [2]_). The objective is
    1-strongly convex, so the minimiser is unique.

    **Frozen masks.** Adding the constraint :math:`X \odot (1 - M) = 0` splits each group's objective
    into :math:`\tfrac12\|W_g \odot (1 - M_g)\|^2` (constant) plus the same problem for
    :math:`v = W_g \odot M_g` on the free entries, so the exact answer is the block soft-threshold of
    :math:`W \odot M`.

    **Not idempotent.** Applying the prox twice shrinks twice: block soft-thresholding composes as
    :math:`\operatorname{prox}_{sR} \circ \operatorname{prox}_{tR} = \operatorname{prox}_{(s+t)R}`.

    References
    ----------
    .. [1] N. Parikh, S. Boyd, "Proximal Algorithms", Foundations and Trends in Optimization 1(3), 2014.
       https://doi.org/10.1561/2400000003
    .. [2] M. Yuan, Y. Lin, "Model selection and estimation in regression with grouped variables",
       J. R. Stat. Soc. B 68(1), 2006. https://doi.org/10.1111/j.1467-9868.2005.00532.x

    Examples
    --------
    >>> w = np.array([[3.0, 0.0], [4.0, 0.5]])                    # column norms 5 and 0.5
    >>> prox_group_lasso(w, 1.0, "shapes")                        # 5 -> 4 (scale 0.8); 0.5 <= 1 -> 0
    array([[2.4, 0. ],
           [3.2, 0. ]])
    """
    from refimpl.projections._select import check_engine, expand_tiles

    structure = _check_structure(structure, block_shape)
    w = _as_weight(w, structure)
    t = _check_nonnegative(threshold, "threshold")
    check_engine(engine)
    view, (bh, bw) = _view_and_tile(w.shape, structure, block_shape)
    if frozen is not None:
        frozen = np.asarray(frozen)
        if frozen.dtype != np.bool_:
            raise TypeError(f"frozen must be a boolean mask, got dtype {frozen.dtype}")
        if frozen.shape != w.shape:
            raise ValueError(f"frozen has shape {frozen.shape}, w has shape {w.shape}")
        w = w * frozen                           # a new array: the caller's w is never written
    elif t == 0.0:
        return w.copy()                          # the identity, bit for bit (no float64 round trip)
    v = w.reshape(view)
    norms = _norm_grid(v, bh, bw, engine)
    scale = np.zeros_like(norms)                 # groups with norm <= t: exactly 0 (all-zero ones too)
    alive = norms > t
    scale[alive] = 1.0 - t / norms[alive]
    factor = expand_tiles(scale, view, bh, bw)
    # np.where writes +0 where a group dies (w * 0 would give -0 for negative entries).
    out = np.where(factor > 0.0, v * factor, 0.0)
    return out.astype(w.dtype, copy=False).reshape(w.shape)


# --- the trainer hook ----------------------------------------------------------------------------------

def _labels(constraints: Sequence[Constraint]) -> list[str]:
    """``"conv1.weight:filters"`` per constraint, ``#2``... for repeats (the ADMM hook's log keys)."""
    labels, seen = [], {}
    for c in constraints:
        label = f"{c.param}:{c.structure}"
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
    return labels


class GroupLasso(Hook):
    r"""Trainer hook: a proximal group-lasso step after every optimizer step (SSL, Wen et al. 2016).

    After the optimizer has taken its step with learning rate :math:`\eta` (``trainer.optimizer.lr``,
    which a schedule sets per epoch), every constrained parameter becomes

    .. math:: W \leftarrow \operatorname{prox}_{\eta\lambda R_j}(W), \qquad
              R_j(W) = \sum_{g \in \mathcal{G}_j} \|W_g\|_2 ,

    one constraint after the other (:func:`prox_group_lasso`; the module docstring says why proximal and
    what several constraints on one parameter mean). The hook keeps no state: the prox depends only on
    the weights and the learning rate, both in the trainer's checkpoint, so a resumed run is bitwise
    identical to an uninterrupted one.

    Parameters
    ----------
    constraints : list of Constraint (or dicts)
        Each one's ``param`` and ``structure`` (one of :data:`GROUP_LASSO_STRUCTURES`; ``blocks`` with its
        ``block_shape``, an ``engine=`` is used too) define a penalty term; the sparsity targets are for
        the hard prune that follows and play no part here.
    lam : float
        :math:`\lambda \ge 0`. ``lam=0`` makes the hook a spectator (training is bit-identical to training
        without it).
    frozen_masks : dict of param name -> bool ndarray, optional
        Keep masks of earlier pruning steps: the prox acts on :math:`W \odot M` (zero stays zero;
        :func:`prox_group_lasso`'s ``frozen``). Pair it with :class:`refimpl.prune.MaskedRetraining`, which
        also zeroes the masked gradients and optimizer state.

    Notes
    -----
    ``on_epoch_end`` returns, for the epoch's log record: ``"ssl.penalty"`` (:math:`\lambda \sum_j R_j(W)`),
    ``"ssl.zero_groups"`` (share of all-zero groups over every constraint's groups) and
    ``"ssl.<param>:<structure>.zero_groups"`` per constraint.
    """

    def __init__(self, constraints: Sequence[Constraint | Mapping[str, Any]], lam: float,
                 frozen_masks: Mapping[str, np.ndarray] | None = None) -> None:
        self.constraints = parse_constraints(constraints)
        for c in self.constraints:
            _check_structure(c.structure, c.params.get("block_shape"))
        self.lam = _check_nonnegative(lam, "lam")
        if frozen_masks is not None and not isinstance(frozen_masks, Mapping):
            raise TypeError(f"frozen_masks must be a dict of name -> bool ndarray, got "
                            f"{type(frozen_masks).__name__}")
        self.frozen_masks = {k: np.asarray(v) for k, v in (frozen_masks or {}).items()}
        for name, mask in self.frozen_masks.items():
            if mask.dtype != np.bool_:
                raise TypeError(f"frozen_masks[{name!r}] must be boolean, got dtype {mask.dtype}")

    def labels(self) -> list[str]:
        """Short unique names ``"conv1.weight:filters"`` of the constraints, used in the log keys."""
        return _labels(self.constraints)

    def _options(self, c: Constraint) -> dict[str, Any]:
        return {"block_shape": c.params.get("block_shape"), "engine": c.params.get("engine", "numba")}

    def check(self, params: Mapping[str, np.ndarray]) -> None:
        """Raise unless every constraint and frozen mask fits a parameter of ``params`` (called at start)."""
        for c in self.constraints:
            if c.param not in params:
                raise KeyError(f"constraint on {c.param!r}: the model has no such parameter "
                               f"(it has {sorted(params)})")
            group_tile(params[c.param].shape, c.structure, block_shape=c.params.get("block_shape"))
        for name, mask in self.frozen_masks.items():
            if name not in params:
                raise KeyError(f"frozen_masks[{name!r}]: the model has no such parameter")
            if mask.shape != params[name].shape:
                raise ValueError(f"frozen_masks[{name!r}] has shape {mask.shape}, the parameter has "
                                 f"shape {params[name].shape}")

    def apply(self, params: Mapping[str, np.ndarray], lr: float) -> None:
        r"""Apply :math:`\operatorname{prox}_{\text{lr}\cdot\lambda R_j}` to the live arrays, in place."""
        threshold = _check_nonnegative(lr, "lr") * self.lam
        if threshold == 0.0 and not self.frozen_masks:
            return  # nothing moves; skipping keeps lam = 0 bit-identical to no hook at all
        for c in self.constraints:
            W = params[c.param]
            W[...] = prox_group_lasso(W, threshold, c.structure, frozen=self.frozen_masks.get(c.param),
                                      **self._options(c))

    def measure(self, params: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Return the log metrics of the current weights (see Notes): penalty, shares of zero groups."""
        record: dict[str, Any] = {}
        penalty, zero, total = 0.0, 0, 0
        per = {}
        for c, label in zip(self.constraints, self.labels(), strict=True):
            norms = group_norms(params[c.param], c.structure, **self._options(c))
            penalty += self.lam * float(np.sum(norms))
            n_zero = int(np.count_nonzero(norms == 0))
            zero, total = zero + n_zero, total + norms.size
            per[f"ssl.{label}.zero_groups"] = n_zero / norms.size
        record["ssl.penalty"] = penalty
        record["ssl.zero_groups"] = zero / total
        record.update(per)
        return record

    # --- Hook interface ------------------------------------------------------------------------------
    def on_train_begin(self, trainer) -> None:
        """Check the constraints and masks against the model (before the first step, not at it)."""
        self.check(trainer.params)

    def after_step(self, trainer) -> None:
        """Apply the proximal step with the optimizer's current learning rate."""
        self.apply(trainer.params, trainer.optimizer.lr)

    def on_epoch_end(self, trainer, epoch: int) -> dict[str, Any]:
        """Return :meth:`measure` of the weights at the end of the epoch (it joins the epoch's record)."""
        return self.measure(trainer.params)

    def __repr__(self) -> str:
        return f"GroupLasso({len(self.constraints)} constraints, lam={self.lam:g})"
