r"""ADMM pruning (StructADMM): train with a penalty pulling each weight toward its projection.

The problem (Zhang et al., ECCV 2018; StructADMM, IEEE TNNLS 2022) is

.. math:: \min_{W}\; f(W) \quad \text{s.t.}\quad W_i \in S_i,

with :math:`S_i` a non-convex sparsity set (at most k nonzero entries, filters, columns, ...). Introduce a
copy :math:`Z_i = W_i` that carries the constraint and run **scaled-form ADMM** (Boyd et al., 2011, §3.1.1)
on the augmented Lagrangian

.. math:: L_\rho(W, Z, U) = f(W) + \sum_i \frac{\rho}{2}\,\|W_i - Z_i + U_i\|_F^2 \quad (Z_i \in S_i),

alternating three steps:

1. **W-step** — a few epochs of ordinary SGD/Adam on :math:`L_\rho` in :math:`W`; the penalty adds
   :math:`\rho\,(W_i - Z_i + U_i)` to each constrained weight's gradient (:func:`admm_penalty_gradient`).
   The penalty is the **squared** Frobenius norm; the unsquared norm found in some public
   reimplementations has a different gradient, :math:`\rho (W - Z + U)/\|W - Z + U\|`, and is a bug.
2. **Z-step** — :math:`Z_i = \Pi_{S_i}(W_i + U_i)`, the Euclidean projection (:mod:`refimpl.projections`).
3. **U-step** — :math:`U_i = U_i + W_i - Z_i` (the scaled dual variable accumulates the disagreement).

Start from :math:`Z = \Pi(W)`, :math:`U = 0`. The penalty parameter follows the schedule of the authors'
later public code **(choice)**: :math:`\rho_0 = 10^{-3}`, multiplied by 1.3 after every Z/U update and
capped at 1.0; ``rho_growth=1`` gives the constant :math:`\rho` of their older code.

Convergence diagnostics (Boyd et al., §3.3), computed at every update:

* primal residual :math:`r = \|W - Z\|_F / \|W\|_F` (relative): how far the weights are from the set;
* dual residual :math:`s = \rho\,\|Z - Z_\text{prev}\|_F`: how much the projection still moves.

Both going to zero means the W and Z copies agree and the support has settled: time to hard prune
(:func:`refimpl.prune.masking.hard_prune`). Because :math:`S` is not convex, ADMM here is a heuristic
without a global guarantee — on problems where the answer is known (see ``tests/test_admm.py``) it finds it.

**Several constraints on one parameter** (e.g. filters AND shapes) each get their own :math:`(Z_j, U_j)`
pair and their own penalty term, so the gradient receives one term per constraint.

References
----------
.. [1] S. Boyd, N. Parikh, E. Chu, B. Peleato, J. Eckstein, "Distributed Optimization and Statistical
   Learning via the Alternating Direction Method of Multipliers", Foundations and Trends in Machine
   Learning 3(1), 2011. https://doi.org/10.1561/2200000016
.. [2] T. Zhang, S. Ye, K. Zhang, J. Tang, W. Wen, M. Fardad, Y. Wang, "A Systematic DNN Weight Pruning
   Framework using Alternating Direction Method of Multipliers", ECCV 2018.
   https://doi.org/10.1007/978-3-030-01237-3_12
.. [3] T. Zhang, S. Ye, X. Feng, X. Ma, K. Zhang, Z. Li, J. Tang, S. Liu, X. Lin, Y. Liu, M. Fardad,
   Y. Wang, "StructADMM: Achieving Ultrahigh Efficiency in Structured Pruning for DNNs", IEEE TNNLS 33(5),
   2022. https://doi.org/10.1109/TNNLS.2020.3045153
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from refimpl._validation import check_positive_int
from refimpl.prune.constraints import Constraint, parse_constraints
from refimpl.train.trainer import Hook

__all__ = [
    "ADMM",
    "admm_penalty",
    "admm_penalty_gradient",
    "admm_residuals",
    "admm_update",
    "augmented_loss",
    "next_rho",
]


# --- functional core (no trainer needed) ---------------------------------------------------------------
def admm_penalty(W: np.ndarray, Z: np.ndarray, U: np.ndarray, rho: float) -> float:
    r"""Return the ADMM penalty term :math:`\frac{\rho}{2}\|W - Z + U\|_F^2` (a float)."""
    D = W - Z + U
    return 0.5 * float(rho) * float(np.vdot(D, D))


def admm_penalty_gradient(W: np.ndarray, Z: np.ndarray, U: np.ndarray, rho: float) -> np.ndarray:
    r"""Gradient of :func:`admm_penalty` with respect to ``W``.

    .. math:: \nabla_W \frac{\rho}{2}\|W - Z + U\|_F^2 = \rho\,(W - Z + U)

    Parameters
    ----------
    W, Z, U : ndarray, all the same shape
        Weight, its projected copy and the scaled dual variable.
    rho : float
        Penalty parameter :math:`\rho \ge 0`.

    Returns
    -------
    ndarray, same shape and dtype as ``W``
    """
    if not (W.shape == Z.shape == U.shape):
        raise ValueError(f"W, Z, U must have one shape, got {W.shape}, {Z.shape}, {U.shape}")
    return (rho * (W - Z + U)).astype(W.dtype, copy=False)


def augmented_loss(loss: float, W: Sequence[np.ndarray], Z: Sequence[np.ndarray], U: Sequence[np.ndarray],
                   rho: float) -> float:
    r"""Evaluate the function the W-step minimises.

    .. math:: L_\rho = f(W) + \sum_j \frac{\rho}{2}\|W_j - Z_j + U_j\|_F^2

    Parameters
    ----------
    loss : float
        :math:`f(W)`, the ordinary training loss.
    W, Z, U : sequences of ndarray, one entry per constraint j
        ``W[j]`` is the weight constraint ``j`` acts on (the same array may appear several times when one
        parameter carries several constraints).
    rho : float
    """
    if not (len(W) == len(Z) == len(U)):
        raise ValueError(f"W, Z, U must have one length, got {len(W)}, {len(Z)}, {len(U)}")
    return float(loss) + sum(admm_penalty(w, z, u, rho) for w, z, u in zip(W, Z, U, strict=True))


def admm_residuals(W: np.ndarray, Z: np.ndarray, Z_prev: np.ndarray, rho: float) -> dict[str, float]:
    r"""Compute the convergence diagnostics of one constraint after a Z/U update.

    Returns ``{"primal": ‖W − Z‖_F / ‖W‖_F, "dual": ρ‖Z − Z_prev‖_F, "z_sparsity": share of zeros in Z}``.
    The primal residual is relative so that layers of different scales compare; for ``W = 0`` it is the
    absolute norm (which is then ``‖Z‖``).
    """
    w_norm = float(np.linalg.norm(W))
    primal = float(np.linalg.norm(W - Z))
    return {
        "primal": primal / w_norm if w_norm > 0 else primal,
        "dual": float(rho) * float(np.linalg.norm(Z - Z_prev)),
        "z_sparsity": 1.0 - int(np.count_nonzero(Z)) / Z.size if Z.size else 0.0,
    }


def admm_update(W: np.ndarray, Z: np.ndarray, U: np.ndarray, project: Callable[[np.ndarray], np.ndarray],
                *, rho: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    r"""One Z-step and U-step of scaled ADMM.

    .. math::
        Z^{k+1} = \Pi_S(W^{k+1} + U^k), \qquad U^{k+1} = U^k + W^{k+1} - Z^{k+1}

    Parameters
    ----------
    W : ndarray
        The weight after the W-step.
    Z, U : ndarray, same shape
        The current projected copy and scaled dual variable (not modified).
    project : callable
        :math:`\Pi_S`, e.g. ``Constraint.project`` or ``lambda v: project_filters(v, keep=3)``.
    rho : float, keyword-only
        Only scales the reported dual residual :math:`\rho\|Z^{k+1} - Z^k\|_F`.

    Returns
    -------
    Z_new, U_new : ndarray
        New arrays.
    residuals : dict
        See :func:`admm_residuals`.
    """
    if not (W.shape == Z.shape == U.shape):
        raise ValueError(f"W, Z, U must have one shape, got {W.shape}, {Z.shape}, {U.shape}")
    Z_new = np.asarray(project(W + U), dtype=W.dtype)
    U_new = U + W - Z_new
    return Z_new, U_new, admm_residuals(W, Z_new, Z, rho)


def next_rho(rho: float, growth: float, rho_max: float) -> float:
    r"""Apply the penalty schedule :math:`\rho \leftarrow \min(\rho \cdot \text{growth}, \rho_\max)`."""
    return min(rho * growth, rho_max)


# --- the trainer hook ----------------------------------------------------------------------------------
def _check_nonnegative_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return float(value)


class ADMM(Hook):
    r"""Trainer hook running the ADMM W/Z/U iterations during ordinary training.

    The trainer performs the W-step (its SGD/Adam steps); this hook adds the penalty gradient after every
    backward pass and runs the Z/U update every ``update_every`` epochs (or steps).

    Parameters
    ----------
    constraints : list of Constraint (or dicts)
        One ``(Z_j, U_j)`` pair per constraint; several constraints may name the same parameter.
    rho : float, default 1e-3
        Initial penalty :math:`\rho_0 \ge 0`. ``rho=0`` turns the hook into a spectator (training is
        bit-identical to training without it); useful as a control.
    rho_growth : float, default 1.3
        Factor applied after every Z/U update (``>= 1``; ``1`` keeps :math:`\rho` constant).
    rho_max : float, default 1.0
        Cap of the schedule (``>= rho``).
    update_every : int, default 1
        Run the Z/U update every this many epochs or steps.
    update_unit : {"epoch", "step"}, default "epoch"
    frozen_masks : dict of param name -> bool ndarray, optional
        Keep masks of earlier pruning steps (progressive pruning): every projection becomes
        :math:`\Pi_S(V \odot M) \odot M` (see :mod:`refimpl.prune.constraints`). The hook does not zero the
        masked weights itself; pair it with :class:`refimpl.prune.masking.MaskedRetraining` placed after
        it in the hook list so that the masked gradients (penalty included) are zeroed last.

    Attributes
    ----------
    Z, U : list of ndarray
        The current pairs, in the order of ``constraints``.
    rho : float
        The current penalty.
    history : list of dict
        One record per Z/U update (also sent to the trainer's log).

    Notes
    -----
    Timing within the training loop: ``after_backward`` adds :math:`\rho (W - Z_j + U_j)` to the gradient
    of every constrained parameter; the update runs in ``on_epoch_end`` (``update_unit="epoch"``) or in
    ``after_step`` (``"step"``), i.e. after the optimizer has moved W. The residuals logged there use the
    :math:`\rho` the finished W-step was trained with; :math:`\rho` grows right after.
    """

    def __init__(self, constraints: Sequence[Constraint | Mapping[str, Any]], rho: float = 1e-3,
                 rho_growth: float = 1.3, rho_max: float = 1.0, update_every: int = 1,
                 update_unit: str = "epoch", frozen_masks: Mapping[str, np.ndarray] | None = None) -> None:
        self.constraints = parse_constraints(constraints)
        self.rho = _check_nonnegative_real(rho, "rho")
        self.rho_growth = _check_nonnegative_real(rho_growth, "rho_growth")
        if self.rho_growth < 1.0:
            raise ValueError(f"rho_growth must be >= 1 (rho never shrinks), got {rho_growth}")
        self.rho_max = _check_nonnegative_real(rho_max, "rho_max")
        if self.rho_max < self.rho:
            raise ValueError(f"rho_max must be >= rho, got rho_max={rho_max} < rho={rho}")
        self.update_every = check_positive_int(update_every, "update_every")
        if update_unit not in ("epoch", "step"):
            raise ValueError(f"update_unit must be 'epoch' or 'step', got {update_unit!r}")
        self.update_unit = update_unit
        self.frozen_masks = {k: np.asarray(v, dtype=bool) for k, v in (frozen_masks or {}).items()}
        self.Z: list[np.ndarray] = []
        self.U: list[np.ndarray] = []
        self.history: list[dict[str, Any]] = []
        self.updates = 0  # Z/U updates done
        self._ticks = 0  # epochs or steps seen since the last update (the update clock)
        self._initialised = False

    # --- helpers -------------------------------------------------------------------------------------
    def labels(self) -> list[str]:
        """Short unique names ``"conv1.weight:filters"`` of the constraints, used as log keys."""
        labels, seen = [], {}
        for c in self.constraints:
            label = f"{c.param}:{c.structure}"
            seen[label] = seen.get(label, 0) + 1
            labels.append(label if seen[label] == 1 else f"{label}#{seen[label]}")
        return labels

    def _project(self, j: int, v: np.ndarray) -> np.ndarray:
        c = self.constraints[j]
        return c.project(v, frozen=self.frozen_masks.get(c.param)).astype(v.dtype, copy=False)

    def penalty(self, params: Mapping[str, np.ndarray]) -> float:
        r"""Return the penalty :math:`\sum_j \frac{\rho}{2}\|W_j - Z_j + U_j\|_F^2` at the current state."""
        return sum(admm_penalty(params[c.param], z, u, self.rho)
                   for c, z, u in zip(self.constraints, self.Z, self.U, strict=True))

    def initialise(self, params: Mapping[str, np.ndarray]) -> None:
        """Set ``Z_j = Π_j(W)``, ``U_j = 0`` for every constraint (called by ``on_train_begin``)."""
        for c in self.constraints:
            if c.param not in params:
                raise KeyError(f"constraint on {c.param!r}: the model has no such parameter "
                               f"(it has {sorted(params)})")
            mask = self.frozen_masks.get(c.param)
            if mask is not None and mask.shape != params[c.param].shape:
                raise ValueError(f"frozen_masks[{c.param!r}] has shape {mask.shape}, "
                                 f"the parameter has shape {params[c.param].shape}")
        self.Z = [self._project(j, params[c.param]) for j, c in enumerate(self.constraints)]
        self.U = [np.zeros_like(params[c.param]) for c in self.constraints]
        self._initialised = True

    def update(self, params: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Z-step and U-step for every constraint, then grow rho; return the log record."""
        record: dict[str, Any] = {"admm.update": self.updates + 1, "admm.rho": self.rho}
        primal, dual = [], []
        for j, (c, label) in enumerate(zip(self.constraints, self.labels(), strict=True)):
            W = params[c.param]
            self.Z[j], self.U[j], res = admm_update(W, self.Z[j], self.U[j],
                                                    lambda v, j=j: self._project(j, v), rho=self.rho)
            for key, value in res.items():
                record[f"admm.{label}.{key}"] = value
            primal.append(res["primal"])
            dual.append(res["dual"])
        record["admm.primal_max"] = max(primal)
        record["admm.dual_max"] = max(dual)
        self.updates += 1
        self.rho = next_rho(self.rho, self.rho_growth, self.rho_max)
        return record

    def _tick(self, trainer) -> dict[str, Any] | None:
        self._ticks += 1
        if self._ticks < self.update_every:
            return None
        self._ticks = 0
        record = self.update(trainer.params)
        if self.update_unit == "step" and getattr(trainer, "last_batch_loss", None) is not None:
            # An epoch record already carries the trainer's loss and accuracy; a step record gets the batch's.
            record["batch_loss"] = float(trainer.last_batch_loss)
        self.history.append({"epoch": int(trainer.epoch), "step": int(trainer.step), **record})
        return record

    # --- Hook interface ------------------------------------------------------------------------------
    def on_train_begin(self, trainer) -> None:
        """Initialise ``Z = Π(W)``, ``U = 0`` unless the state was restored from a checkpoint."""
        if not self._initialised:
            self.initialise(trainer.params)

    def after_backward(self, trainer) -> None:
        r"""Add :math:`\rho (W - Z_j + U_j)` to the gradient, once per constraint."""
        for c, z, u in zip(self.constraints, self.Z, self.U, strict=True):
            trainer.grads[c.param] += admm_penalty_gradient(trainer.params[c.param], z, u, self.rho)

    def after_step(self, trainer) -> None:
        """Step-unit schedule: Z/U update every ``update_every`` optimizer steps (logged immediately)."""
        if self.update_unit == "step":
            record = self._tick(trainer)
            if record is not None:
                trainer.log(record)

    def on_epoch_end(self, trainer, epoch: int) -> dict[str, Any] | None:
        """Epoch-unit schedule: Z/U update every ``update_every`` epochs; the record joins the epoch log."""
        if self.update_unit == "epoch":
            return self._tick(trainer)
        return None

    # --- checkpointing -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return Z, U (arrays), rho, the counters and the update records (resume is bit-identical)."""
        state: dict[str, Any] = {
            "rho": self.rho,
            "updates": self.updates,
            "ticks": self._ticks,
            "initialised": self._initialised,
            "n_constraints": len(self.constraints),
            "history": [dict(record) for record in self.history],
        }
        for j, (z, u) in enumerate(zip(self.Z, self.U, strict=True)):
            state[f"Z.{j}"] = z.copy()
            state[f"U.{j}"] = u.copy()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (the constraints must be the same)."""
        n = int(state["n_constraints"])
        if n != len(self.constraints):
            raise ValueError(f"state holds {n} constraints, this hook has {len(self.constraints)}")
        self.rho = float(state["rho"])
        self.updates = int(state["updates"])
        self._ticks = int(state["ticks"])
        self._initialised = bool(state["initialised"])
        self.history = [dict(record) for record in state.get("history", [])]
        if self._initialised:
            self.Z = [np.array(state[f"Z.{j}"]) for j in range(n)]
            self.U = [np.array(state[f"U.{j}"]) for j in range(n)]

    def __repr__(self) -> str:
        return (f"ADMM({len(self.constraints)} constraints, rho={self.rho:g}, "
                f"rho_growth={self.rho_growth:g}, rho_max={self.rho_max:g}, "
                f"update_every={self.update_every} {self.update_unit})")
