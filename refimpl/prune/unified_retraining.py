r"""Retraining that keeps unified blocks unified: only the shared magnitude of a unified block trains.

After the hard prune with a ``"unified"`` constraint (:func:`refimpl.projections.project_unified`) every
block of the layer's GEMM view ``W.reshape(F, -1)`` is one of three kinds
(:func:`~refimpl.projections.unify.unify_assignment`): **free** (copied, every entry its own weight),
**unified** (all entries share one magnitude) or **pruned** (zero). Masked retraining alone
(:class:`~refimpl.prune.MaskedRetraining`) keeps the pruned blocks at zero but trains the entries of a
unified block independently, so after a few steps the block has as many magnitudes as entries again.
:class:`UnifiedRetraining` trains the network that the unified set really describes.

The parametrisation
-------------------
A unified block :math:`b` is :math:`w_i = s_i\, m_b` for its entries :math:`i \in b`, with **fixed signs**
:math:`s_i \in \{-1, +1\}` (the signs of the projection, :math:`\operatorname{sign}^+(v_i)`) and **one
trainable magnitude** :math:`m_b`. An entry that an earlier mask pruned inside the block has
:math:`s_i = 0` (it stays zero). By the chain rule, with :math:`g_i = \partial L / \partial w_i` the
gradient the backward pass computes,

.. math:: \frac{\partial L}{\partial m_b} = \sum_{i \in b} \frac{\partial L}{\partial w_i}\,
          \frac{\partial w_i}{\partial m_b} = \sum_{i \in b} s_i\, g_i \;=:\; G_b .

Training m with the entries' optimizer
--------------------------------------
The optimizer keeps working on the full weight array (its state has the weight's shape, see
:mod:`refimpl.train.optim`). After the backward pass every entry of a unified block gets the **tied
gradient** :math:`\tilde g_i = s_i\, G_b`. Then every update refimpl's optimizers make is, entry by entry,
:math:`s_i` times the update of one scalar parameter :math:`m_b` with gradient :math:`G_b`:

* SGD: :math:`d_i = \tilde g_i + \lambda w_i = s_i (G_b + \lambda m_b)`; the momentum buffer, which starts
  as :math:`d_i`, stays :math:`b_i = s_i B_b`; Nesterov adds :math:`\mu b_i = s_i \mu B_b`; so
  :math:`w_i - \eta d_i = s_i (m_b - \eta D_b)`;
* Adam: the first moment stays :math:`s_i M_b`, the second moment :math:`\tilde g_i^2 = G_b^2` is the same
  for every entry (:math:`V_b`), and :math:`s_i M_b / (\sqrt{V_b} + \epsilon) = s_i (M_b / (\sqrt{V_b} +
  \epsilon))`.

The state "follows the structure": odd state (``momentum_buffer``, ``exp_avg``) is :math:`s_i` times one
number per block, even state (``exp_avg_sq``) is one number per block. This holds **bit for bit**, not only
mathematically: each operation is applied entry-wise to operands that differ only by the sign
:math:`s_i`, and IEEE-754 round-to-nearest is symmetric under negation (:math:`\mathrm{fl}(-a \cdot b) =
-\mathrm{fl}(a \cdot b)`, likewise for ``+`` and ``/``), so the entries of a block stay exactly
:math:`\pm` one value (``tests/test_unified_retraining.py`` checks this without the guard below).
Weight decay acts on :math:`m_b` as on any parameter (:math:`\lambda m_b`), not as the gradient
:math:`\lambda n_b m_b` of :math:`\frac{\lambda}{2}\sum_{i \in b} w_i^2`. The magnitude may pass through
zero and become negative: the block is then :math:`-s_i |m_b|`, still one magnitude (the signs flip
together).

The hook
--------
:class:`UnifiedRetraining` extends :class:`~refimpl.prune.MaskedRetraining` (pruned weights, gradients and
state stay exactly zero) with, per unified block:

* ``after_backward``: :math:`g_i \leftarrow s_i G_b` (after the pruned gradients were zeroed);
* ``after_step`` (and ``on_train_begin``): a guard that puts the weights and the optimizer state back on
  the structure, :math:`w_i \leftarrow s_i \bar m_b` with :math:`\bar m_b` the block's value when all
  :math:`s_i w_i` agree (so the guard is a bit-exact no-op for SGD and Adam) and their mean otherwise (an
  optimizer without the symmetry above; the mean is the Euclidean projection onto the block's
  structure).

The magnitude's step size: sum or mean
--------------------------------------
:math:`G_b` is the exact gradient of the loss in the parameter :math:`m_b`, so SGD on the
reparametrised network moves :math:`m_b` by :math:`\eta G_b`, a sum of :math:`n_b` entry gradients: at
the weights' learning rate a 4 x 4 block moves like 16 weights pushed the same way at once. The other
natural choice is the **projected gradient** in weight space: project the free step
:math:`w - \eta g` onto the block's structure :math:`\{s\,m\}` (the Euclidean projection is the mean of
:math:`s_i (w_i - \eta g_i)`), which moves :math:`m_b` by :math:`\eta G_b / n_b`, the step of the free
weights averaged over the block. ``magnitude_gradient="mean"`` trains with that tied gradient
:math:`s_i G_b / n_b`; the default ``"sum"`` is the chain rule's. The two differ only in the step size
of each block (a per-block learning rate :math:`\eta / n_b`); the symmetry argument above holds for both.
Under SGD that changes the step; under Adam it changes almost nothing, since Adam's step
:math:`M_b / (\sqrt{V_b} + \epsilon)` does not depend on the gradient's scale (except through
:math:`\epsilon`). The engine sets it with ``retrain.magnitude_gradient``.

Which blocks are unified is fixed by the hard prune: :func:`hard_prune_unified` projects like
:func:`~refimpl.prune.hard_prune` and records each ``"unified"`` parameter's :class:`UnifiedBlocks`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from refimpl._validation import check_block_shape
from refimpl.projections.unify import COPY, PRUNE, UNIFY, unify_assignment
from refimpl.prune.constraints import (
    Constraint,
    check_unified_alone,
    constraints_by_param,
    parse_constraints,
)
from refimpl.prune.masking import OPTIMIZER_STATE_KEYS, MaskedRetraining, _live_params, hard_prune

__all__ = ["MAGNITUDE_GRADIENTS", "UnifiedBlocks", "UnifiedRetraining", "hard_prune_unified"]

#: The gradients a unified block's shared magnitude can train with (module notes, "sum or mean").
MAGNITUDE_GRADIENTS = ("sum", "mean")

#: Optimizer state entries that are sign-symmetric copies of the gradient (odd) and squares (even).
_ODD_STATE = ("momentum_buffer", "exp_avg")
_EVEN_STATE = ("exp_avg_sq", "max_exp_avg_sq")


class UnifiedBlocks:
    r"""The unified blocks of one weight: block shape, kind of every block, fixed signs of the entries.

    Parameters
    ----------
    block_shape : (int, int)
        ``(bh, bw)`` tiles of the GEMM view ``w.reshape(F, -1)``; edge tiles may be smaller.
    kinds : ndarray of int, shape (ceil(rows/bh), ceil(cols/bw))
        :data:`~refimpl.projections.unify.COPY` (0), ``UNIFY`` (1) or ``PRUNE`` (2) per block.
    signs : ndarray of int, shape of the weight
        :math:`s_i \in \{-1, 0, +1\}`; nonzero only inside unified blocks, and every unified block has
        at least one nonzero sign.

    Raises
    ------
    ValueError, TypeError
        Naming the argument: wrong shapes, dtypes or values, a sign outside a unified block, a unified
        block without a nonzero sign.

    Examples
    --------
    >>> w = np.array([[2.0, -2.0, 0.5, 0.25]])
    >>> blocks = UnifiedBlocks.from_weight(w, np.array([[1, 0]]), (1, 2))
    >>> blocks.signs, blocks.magnitudes(w)
    (array([[ 1, -1,  0,  0]], dtype=int8), array([[2., 0.]]))
    >>> blocks.magnitude_gradient(np.array([[0.1, 0.3, 1.0, 1.0]]))   # 1*0.1 + (-1)*0.3
    array([[-0.2,  0. ]])
    """

    def __init__(self, block_shape, kinds, signs) -> None:
        signs = np.asarray(signs)
        if signs.ndim < 2 or signs.dtype.kind not in "iu":
            raise TypeError(
                f"signs must be an integer array of the weight's shape (2-D or more), got "
                f"dtype {signs.dtype} and shape {signs.shape}"
            )
        if not np.all(np.isin(signs, (-1, 0, 1))):
            raise ValueError("signs must hold only -1, 0 and +1")
        self.shape = signs.shape
        self.gemm_shape = (signs.shape[0], int(np.prod(signs.shape[1:])))
        self.block_shape = check_block_shape(block_shape, self.gemm_shape)
        bh, bw = self.block_shape
        grid = (-(-self.gemm_shape[0] // bh), -(-self.gemm_shape[1] // bw))
        kinds = np.asarray(kinds)
        if kinds.dtype.kind not in "iu" or kinds.shape != grid:
            raise ValueError(
                f"kinds must be an integer array of the block grid {grid}, got dtype "
                f"{kinds.dtype} and shape {kinds.shape}"
            )
        if not np.all(np.isin(kinds, (COPY, UNIFY, PRUNE))):
            raise ValueError(f"kinds must hold only {COPY} (copy), {UNIFY} (unify) and {PRUNE} (prune)")
        self.kinds = kinds.astype(np.int8)
        self.signs = signs.astype(np.int8)
        self.signs.flags.writeable = self.kinds.flags.writeable = False
        # Entries with a nonzero sign, sorted by block (then by position): the per-block sums below are
        # contiguous segments, summed in one fixed order (bit-reproducible).
        rows, cols = self.gemm_shape
        flat = np.flatnonzero(self.signs.reshape(-1))
        block = (flat // cols // bh) * grid[1] + (flat % cols) // bw
        order = np.argsort(block, kind="stable")
        self._index, block = flat[order], block[order]
        self._sign = self.signs.reshape(-1)[self._index]
        starts = np.flatnonzero(np.r_[True, block[1:] != block[:-1]]) if block.size else np.zeros(0, int)
        self._starts, self._blocks = starts, block[starts]
        self._counts = np.diff(np.r_[starts, block.size])
        unified = np.flatnonzero(self.kinds.reshape(-1) == UNIFY)
        if not np.array_equal(np.unique(block), unified):
            outside = np.setdiff1d(np.unique(block), unified)
            what = (
                f"signs are nonzero in block {int(outside[0])} (flat index), which is not unified"
                if outside.size
                else f"unified block {int(np.setdiff1d(unified, block)[0])} (flat index) has no nonzero sign"
            )
            raise ValueError(what)

    # --- construction --------------------------------------------------------------------------------
    @classmethod
    def from_weight(cls, w, kinds, block_shape) -> UnifiedBlocks:
        r"""Read the signs of the unified blocks off a projected weight; an all-zero unified block is pruned.

        ``w`` is the hard-pruned weight (``project_unified``'s output): a unified block holds
        :math:`\pm c`, so its signs are ``sign(w)``; a unified block with ``c = 0`` is recorded as pruned.
        """
        w = np.asarray(w)
        bh, bw = check_block_shape(block_shape, (w.shape[0], int(np.prod(w.shape[1:]))))
        kinds = np.array(kinds, dtype=np.int8)
        w2d = w.reshape(w.shape[0], -1)
        unified = _expand(kinds == UNIFY, w2d.shape, bh, bw)
        signs = np.where(unified, np.sign(w2d), 0).astype(np.int8)
        empty = (kinds == UNIFY) & ~_block_any(signs != 0, bh, bw)
        kinds[empty] = PRUNE
        return cls((bh, bw), kinds, signs.reshape(w.shape))

    def restricted(self, mask: np.ndarray | None) -> UnifiedBlocks:
        """Return the structure with sign 0 outside a keep mask (blocks left empty become pruned)."""
        if mask is None:
            return self
        signs = np.where(mask, self.signs, 0).astype(np.int8)
        kinds = self.kinds.copy()
        bh, bw = self.block_shape
        kinds[(kinds == UNIFY) & ~_block_any(signs.reshape(self.gemm_shape) != 0, bh, bw)] = PRUNE
        return UnifiedBlocks(self.block_shape, kinds, signs)

    # --- per-block quantities ------------------------------------------------------------------------
    def _check(self, x: np.ndarray, name: str) -> np.ndarray:
        x = np.asarray(x)
        if x.shape != self.shape:
            raise ValueError(f"{name} has shape {x.shape}, the unified weight has {self.shape}")
        return x

    def _per_block(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.kinds.size)
        out[self._blocks] = values
        return out.reshape(self.kinds.shape)

    def magnitude_gradient(self, grad) -> np.ndarray:
        r"""Return :math:`G_b = \sum_{i \in b} s_i g_i` per block (0 outside unified blocks), in float64."""
        g = self._check(grad, "grad").reshape(-1)
        signed = self._sign * g[self._index].astype(np.float64)
        return self._per_block(np.add.reduceat(signed, self._starts) if signed.size else signed)

    def _common(self, x: np.ndarray, odd: bool) -> np.ndarray:
        """Per block present: the common value of :math:`s_i x_i` (odd) or :math:`x_i` (even), or the mean."""
        flat = x.reshape(-1)[self._index]
        vals = self._sign * flat if odd else flat
        if not vals.size:
            return vals
        high, low = np.maximum.reduceat(vals, self._starts), np.minimum.reduceat(vals, self._starts)
        mean = (np.add.reduceat(vals.astype(np.float64), self._starts) / self._counts).astype(x.dtype)
        return np.where(high == low, high, mean)

    def magnitudes(self, w) -> np.ndarray:
        r""":math:`m_b` per block (0 outside unified blocks): the common :math:`s_i w_i`, or its mean."""
        return self._per_block(self._common(self._check(w, "w"), odd=True))

    def is_unified(self, w) -> bool:
        """Whether every unified block of ``w`` is exactly :math:`s_i m_b` (one value per block)."""
        w = self._check(w, "w")
        vals = self._sign * w.reshape(-1)[self._index]
        if not vals.size:
            return True
        high, low = np.maximum.reduceat(vals, self._starts), np.minimum.reduceat(vals, self._starts)
        return bool(np.all(high == low))

    # --- in-place operations of the hook -------------------------------------------------------------
    def tie_gradient(self, grad: np.ndarray, *, mean: bool = False) -> None:
        r"""In place: :math:`g_i \leftarrow s_i G_b` on the entries of unified blocks.

        With ``mean=True`` the tied gradient is :math:`s_i G_b / n_b` instead (:math:`n_b` the block's
        entries with a nonzero sign): the projected gradient of :class:`UnifiedRetraining`'s notes.
        """
        g = self._check(grad, "grad")
        if not self._index.size:
            return
        total = np.add.reduceat(self._sign * g.reshape(-1)[self._index].astype(np.float64), self._starts)
        if mean:
            total = total / self._counts
        g.reshape(-1)[self._index] = self._sign * np.repeat(total.astype(g.dtype), self._counts)

    def unify(self, x: np.ndarray, *, odd: bool = True) -> None:
        r"""Put ``x`` on the structure in place: :math:`x_i \leftarrow s_i \bar x_b` (odd), :math:`\bar x_b`.

        :math:`\bar x_b` is the block's common value when all its entries agree (then nothing changes, bit
        for bit), else their mean (the Euclidean projection onto the block's structure).
        """
        x = self._check(x, "x")
        if not self._index.size:
            return
        common = np.repeat(self._common(x, odd), self._counts)
        x.reshape(-1)[self._index] = self._sign * common if odd else common

    # --- saving --------------------------------------------------------------------------------------
    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """``{prefix + ".kinds", ".signs", ".block_shape"}`` arrays (for ``.npz`` files and checkpoints)."""
        return {
            f"{prefix}.kinds": self.kinds.copy(),
            f"{prefix}.signs": self.signs.copy(),
            f"{prefix}.block_shape": np.array(self.block_shape, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], prefix: str) -> UnifiedBlocks:
        """Inverse of :meth:`to_arrays`."""
        return cls(
            tuple(int(v) for v in arrays[f"{prefix}.block_shape"]),
            arrays[f"{prefix}.kinds"],
            arrays[f"{prefix}.signs"],
        )

    def counts(self) -> dict[str, int]:
        """Return the number of free, unified and pruned blocks."""
        return {
            "free": int(np.count_nonzero(self.kinds == COPY)),
            "unified": int(np.count_nonzero(self.kinds == UNIFY)),
            "pruned": int(np.count_nonzero(self.kinds == PRUNE)),
        }

    def __repr__(self) -> str:
        c = self.counts()
        return (
            f"UnifiedBlocks(shape={self.shape}, block_shape={self.block_shape}, free={c['free']}, "
            f"unified={c['unified']}, pruned={c['pruned']})"
        )


def _expand(tiles: np.ndarray, shape: tuple[int, int], bh: int, bw: int) -> np.ndarray:
    """Blow a block-grid array up to the element grid ``shape`` (edge blocks cropped)."""
    return np.repeat(np.repeat(tiles, bh, axis=0), bw, axis=1)[: shape[0], : shape[1]]


def _block_any(x2d: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """Per block of the 2-D boolean ``x2d``: whether any entry is True."""
    rows, cols = x2d.shape
    nbr, nbc = -(-rows // bh), -(-cols // bw)
    padded = np.zeros((nbr * bh, nbc * bw), dtype=bool)
    padded[:rows, :cols] = x2d
    return padded.reshape(nbr, bh, nbc, bw).any(axis=(1, 3))


def hard_prune_unified(
    model,
    constraints: Iterable[Constraint | Mapping[str, Any]],
    *,
    frozen_masks: Mapping[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, UnifiedBlocks]]:
    r""":func:`~refimpl.prune.hard_prune`, plus the :class:`UnifiedBlocks` of every ``"unified"`` parameter.

    For a parameter whose only constraint is ``"unified"``, the block kinds are
    :func:`~refimpl.projections.unify.unify_assignment` of the weight as the projection sees it
    (:math:`W \odot M` with the frozen mask :math:`M`), the same call ``project_unified`` makes, so the
    recorded kinds are those of the projected weight; the signs are read off the projected weight
    (:meth:`UnifiedBlocks.from_weight`).

    Returns
    -------
    masks : dict of name -> bool ndarray
        As :func:`~refimpl.prune.hard_prune` (unified blocks count as kept).
    unified : dict of name -> UnifiedBlocks
        One entry per parameter with a ``"unified"`` constraint (possibly without a unified block, e.g.
        ``unify=0, prune=p``).

    Raises
    ------
    ValueError
        A parameter has a ``"unified"`` constraint together with other constraints: the hard prune then
        only masks the weight (see :func:`~refimpl.prune.hard_prune`), so no block is unified.
    """
    constraints = parse_constraints(constraints)
    check_unified_alone(constraints)  # expand_constraints checked a config's already, before training
    params = _live_params(model)
    kinds: dict[str, tuple[np.ndarray, tuple[int, int]]] = {}
    for name, cons in constraints_by_param(constraints).items():
        if not any(c.structure == "unified" for c in cons):
            continue
        if name not in params:
            raise KeyError(
                f"constraint on {name!r}: the model has no such parameter (it has {sorted(params)})"
            )
        spec = cons[0].to_dict()
        block_shape = tuple(spec["block_shape"])
        arguments = {k: v for k, v in spec.items() if k not in ("param", "structure", "block_shape")}
        w = params[name]
        if frozen_masks is not None and name in frozen_masks:
            w = w * np.asarray(frozen_masks[name], dtype=bool)
        kinds[name] = (unify_assignment(w, block_shape, **arguments), block_shape)
    masks = hard_prune(model, constraints, frozen_masks=frozen_masks)
    unified = {name: UnifiedBlocks.from_weight(params[name], k, shape) for name, (k, shape) in kinds.items()}
    return masks, unified


class UnifiedRetraining(MaskedRetraining):
    r"""Masked retraining in which every unified block trains only its shared magnitude (module notes).

    Parameters
    ----------
    masks : dict of param name -> bool ndarray
        Keep masks, as for :class:`~refimpl.prune.MaskedRetraining`.
    unified : dict of param name -> UnifiedBlocks
        The unified blocks of each unified parameter (:func:`hard_prune_unified`). Entries outside the
        parameter's mask get sign 0 (a purification that removes a filter removes its blocks too).
    magnitude_gradient : {"sum", "mean"}
        The gradient each unified block's magnitude trains with: the chain rule's :math:`G_b` (default)
        or the projected gradient's :math:`G_b / n_b` (module notes, "sum or mean").

    Examples
    --------
    >>> from refimpl.train.optim import SGD
    >>> w = np.array([[2.0, -2.0, 0.5, 0.25]])
    >>> hook = UnifiedRetraining({}, {"w": UnifiedBlocks.from_weight(w, [[1, 0]], (1, 2))})
    >>> class T:                                 # the two attributes of a Trainer the hook reads
    ...     params, grads = {"w": w}, {"w": np.array([[0.1, 0.3, 1.0, 1.0]])}
    ...     optimizer = SGD({"w": w}, lr=0.5)
    >>> hook.on_train_begin(T); hook.after_backward(T); T.grads["w"]
    array([[-0.2,  0.2,  1. ,  1. ]])
    >>> T.optimizer.step(T.grads); hook.after_step(T); w          # m: 2 - 0.5 * (-0.2) = 2.1
    array([[ 2.1 , -2.1 ,  0.  , -0.25]])
    """

    def __init__(self, masks: Mapping[str, np.ndarray], unified: Mapping[str, UnifiedBlocks], *,
                 magnitude_gradient: str = "sum") -> None:
        super().__init__(masks)
        if magnitude_gradient not in MAGNITUDE_GRADIENTS:
            raise ValueError(
                f"magnitude_gradient must be one of {list(MAGNITUDE_GRADIENTS)}, got {magnitude_gradient!r}"
            )
        self.magnitude_gradient = magnitude_gradient
        if not isinstance(unified, Mapping):
            raise TypeError(f"unified must be a dict of name -> UnifiedBlocks, got {type(unified).__name__}")
        for name, blocks in unified.items():
            if not isinstance(blocks, UnifiedBlocks):
                raise TypeError(f"unified[{name!r}] must be a UnifiedBlocks, got {type(blocks).__name__}")
            if name in self.masks and self.masks[name].shape != blocks.shape:
                raise ValueError(
                    f"unified[{name!r}] has shape {blocks.shape}, masks[{name!r}] has "
                    f"{self.masks[name].shape}"
                )
        self.unified = dict(unified)
        self._effective = {name: b.restricted(self.masks.get(name)) for name, b in self.unified.items()}

    def _unify_weights_and_state(self, trainer) -> None:
        state = getattr(trainer.optimizer, "state", {}) or {}
        for name, blocks in self._effective.items():
            blocks.unify(trainer.params[name], odd=True)
            for key, buf in state.get(name, {}).items():
                if isinstance(buf, np.ndarray) and buf.shape == blocks.shape and key in OPTIMIZER_STATE_KEYS:
                    blocks.unify(buf, odd=key in _ODD_STATE)

    def on_train_begin(self, trainer) -> None:
        """Check masks and structures against the model; put weights and state on the structure."""
        super().on_train_begin(trainer)
        for name, blocks in self.unified.items():
            if name not in trainer.params:
                raise KeyError(f"unified[{name!r}]: the model has no such parameter")
            if trainer.params[name].shape != blocks.shape:
                raise ValueError(
                    f"unified[{name!r}] has shape {blocks.shape}, the parameter has "
                    f"{trainer.params[name].shape}"
                )
        self._unify_weights_and_state(trainer)

    def after_backward(self, trainer) -> None:
        r"""Zero the pruned gradients, then tie each unified block's: :math:`g_i \leftarrow s_i G_b`.

        With ``magnitude_gradient="mean"``: :math:`g_i \leftarrow s_i G_b / n_b`.
        """
        super().after_backward(trainer)
        for name, blocks in self._effective.items():
            blocks.tie_gradient(trainer.grads[name], mean=self.magnitude_gradient == "mean")

    def after_step(self, trainer) -> None:
        """Zero pruned weights and state; the guard that keeps weights and state on the structure."""
        super().after_step(trainer)
        self._unify_weights_and_state(trainer)

    def intact(self, params: Mapping[str, np.ndarray]) -> bool:
        """Whether every unified block of ``params`` still has exactly one magnitude."""
        return all(blocks.is_unified(params[name]) for name, blocks in self._effective.items())

    def unified_fraction(self) -> float:
        """Share of blocks unified, over the unified parameters."""
        total = sum(b.kinds.size for b in self._effective.values())
        return sum(b.counts()["unified"] for b in self._effective.values()) / total if total else 0.0

    def state_dict(self) -> dict[str, Any]:
        """Return the masks (as :class:`~refimpl.prune.MaskedRetraining`) and every structure's arrays."""
        state = super().state_dict()
        for name, blocks in self.unified.items():
            state.update(blocks.to_arrays(f"unified.{name}"))
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        super().load_state_dict(state)
        names = {key[len("unified.") :].rsplit(".", 1)[0] for key in state if key.startswith("unified.")}
        self.unified = {name: UnifiedBlocks.from_arrays(state, f"unified.{name}") for name in sorted(names)}
        self._effective = {name: b.restricted(self.masks.get(name)) for name, b in self.unified.items()}

    def __repr__(self) -> str:
        return (
            f"UnifiedRetraining({len(self.masks)} masks, {len(self.unified)} unified parameters, "
            f"unified share {self.unified_fraction():.4f}, magnitude_gradient={self.magnitude_gradient!r})"
        )
