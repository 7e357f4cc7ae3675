r"""ADMM pruning (StructADMM): train with a penalty pulling each weight toward its projection.

The problem (Zhang et al., ECCV 2018; StructADMM, IEEE TNNLS 2022) is

.. math:: \min_{W}\; f(W) \quad \text{s.t.}\quad W_i \in S_i,

with :math:`S_i` a non-convex sparsity set (at most k nonzero entries, filters, columns, ...). Introduce a
copy :math:`Z_i = W_i` that carries the constraint and run **scaled-form ADMM** (Boyd et al., 2011, §3.1.1)
on the augmented Lagrangian

.. math:: L_\rho(W, Z, U) = f(W) + \sum_i \frac{\rho}{2}\,\|W_i - Z_i + U_i\|_F^2 \quad (Z_i \in S_i),

alternating three steps:

1. **W-step** — approximately minimise :math:`L_\rho` in :math:`W` by the ordinary optimizer steps
   (SGD/Adam on mini-batches) taken between two Z/U updates: ``update_every`` epochs, or ``update_every``
   steps with ``update_unit="step"`` (notebook 02: 5 SGD steps). It is an *inexact*, stochastic
   minimisation. The penalty adds :math:`\rho\,(W_i - Z_i + U_i)` to each constrained weight's gradient
   (:func:`admm_penalty_gradient`). The penalty is the **squared** Frobenius norm; the unsquared norm
   found in some public reimplementations has a different gradient, :math:`\rho (W - Z + U)/\|W - Z + U\|`,
   and is a bug.
2. **Z-step** — :math:`Z_i = \Pi_{S_i}(W_i + U_i)`, the Euclidean projection (:mod:`refimpl.projections`).
3. **U-step** — :math:`U_i = U_i + W_i - Z_i` (the scaled dual variable accumulates the disagreement).

Start from :math:`Z = \Pi(W)`, :math:`U = 0`. The penalty parameter follows the schedule of the authors'
later public code **(choice)**: :math:`\rho_0 = 10^{-3}`, multiplied by 1.3 after every Z/U update and
capped at 1.0; ``rho_growth=1`` gives the constant :math:`\rho` of their older code.

**The dual variable when ρ changes** (Boyd et al., §3.4.1). The scaled dual is :math:`U = Y/\rho`, with
:math:`Y` the unscaled Lagrange multiplier of :math:`W = Z`. Changing :math:`\rho` without touching
:math:`U` therefore multiplies the implied multiplier :math:`Y = \rho U` by the growth factor (×1.3 at
every update of the default schedule). Boyd's rule keeps :math:`Y` continuous by rescaling

.. math:: U \leftarrow U\,\rho_\text{old} / \rho_\text{new}

(``rescale_dual=True``, :func:`rescale_dual`). The default is ``False``, the authors' code: it is the
behaviour the papers' numbers were produced with, and it grows the pull :math:`\rho U` of the past
disagreement along with :math:`\rho`, which pushes harder towards the set. Notebook 00 compares both on a
least-squares problem whose answer is known, notebook 02 on LeNet-5.

Convergence diagnostics (Boyd et al., §3.3), computed at every update:

* primal residual :math:`r = \|W - Z\|_F / \|W\|_F` (relative): how far the weights are from the set;
* dual residual :math:`s = \rho\,\|Z - Z_\text{prev}\|_F`: how much the projection still moves.

**When to hard prune.** Since :math:`Z \in S`, the hard prune (:func:`refimpl.prune.masking.hard_prune`,
the exact projection of :math:`W` for one constraint) removes at most :math:`\|W - Z\|_F^2`, i.e. a share
:math:`r^2` of the weight's energy :math:`\|W\|_F^2`. A threshold on :math:`r` is therefore a bound on
what the cut throws away: :data:`PRIMAL_TOL` :math:`= 0.05` means at most 0.25 %. The dual residual
should be small against the pull itself, :math:`s \le` :data:`DUAL_TOL` :math:`\cdot\,\rho\|W\|_F`, i.e.
the last Z-step moved :math:`Z` by at most 5 % of :math:`\|W\|` (Boyd's relative criterion, with
:math:`\|W\|` as the scale). :func:`residuals_small` applies both. refimpl's runs do not stop on them
(ADMM runs its configured epochs, as in the papers); the notebooks report when they are met.

**No convergence guarantee here.** Convergence results for non-convex ADMM exist: Hong, Luo & Razaviyayn
(2016) prove that ADMM reaches stationary points for a smooth non-convex loss when the non-smooth terms
are convex, the penalty :math:`\rho` is a *constant* larger than a multiple of the loss's gradient
Lipschitz constant, and every subproblem is solved exactly; Wang, Yin & Zeng (2019) admit some non-convex
non-smooth terms but need the block updated last before the dual to be smooth. StructADMM as run here
breaks each condition: the indicator of :math:`S` is non-convex and non-smooth and :math:`Z` is the block
updated last; the W-step is a few stochastic gradient steps, not an exact minimisation; and :math:`\rho`
starts orders of magnitude below any such bound and changes at every update. So ADMM here is a heuristic.
On problems whose answer is known (``tests/test_admm.py``, notebook 00) it finds it, and the residuals
above are what one watches.

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
.. [4] M. Hong, Z.-Q. Luo, M. Razaviyayn, "Convergence Analysis of Alternating Direction Method of
   Multipliers for a Family of Nonconvex Problems", SIAM J. Optim. 26(1), 2016.
   https://doi.org/10.1137/140990309
.. [5] Y. Wang, W. Yin, J. Zeng, "Global Convergence of ADMM in Nonconvex Nonsmooth Optimization",
   J. Sci. Comput. 78, 2019. https://doi.org/10.1007/s10915-018-0757-z
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
    "DUAL_TOL",
    "PRIMAL_TOL",
    "admm_penalty",
    "admm_penalty_gradient",
    "admm_residuals",
    "admm_update",
    "augmented_loss",
    "next_rho",
    "rescale_dual",
    "residuals_small",
]

#: Primal-residual threshold of :func:`residuals_small`: the hard prune then discards at most
#: ``PRIMAL_TOL**2`` = 0.25 % of the weight's energy (module docstring, "When to hard prune").
#: A **heuristic** threshold (refimpl's; the authors give none): the bound is exact, the choice of 0.25 %
#: as "little" is not, and notebook 02 shows that whether a run meets it depends on the dual rule.
PRIMAL_TOL = 0.05
#: Dual-residual threshold of :func:`residuals_small`, relative to ``rho * ||W||``: the last Z-step moved
#: ``Z`` by at most 5 % of ``||W||``. A heuristic too, chosen equal to :data:`PRIMAL_TOL` for symmetry.
DUAL_TOL = 0.05


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


def rescale_dual(U: np.ndarray, rho_old: float, rho_new: float) -> np.ndarray:
    r"""Return the scaled dual for a new penalty, keeping the multiplier :math:`Y = \rho U` unchanged.

    .. math:: U_\text{new} = U\,\frac{\rho_\text{old}}{\rho_\text{new}}
              \quad\Longrightarrow\quad \rho_\text{new} U_\text{new} = \rho_\text{old} U

    (Boyd et al. 2011, §3.4.1: in scaled form, :math:`U` must be rescaled whenever :math:`\rho` changes.)

    Parameters
    ----------
    U : ndarray
        The scaled dual variable (not modified).
    rho_old, rho_new : float
        The penalty ``U`` was accumulated with, and the next one. ``rho_new = rho_old`` (or both 0)
        returns a copy of ``U``.

    Returns
    -------
    ndarray, shape and dtype of ``U``

    Examples
    --------
    >>> rescale_dual(np.array([1.3, -2.6]), 1.0, 1.3)
    array([ 1., -2.])
    """
    rho_old, rho_new = float(rho_old), float(rho_new)
    if rho_new == rho_old:
        return U.copy()
    if not rho_new > 0:
        raise ValueError(f"rho_new must be > 0 to rescale U, got {rho_new}")
    return (U * (rho_old / rho_new)).astype(U.dtype, copy=False)


def residuals_small(primal: float, dual: float, rho: float, w_norm: float, *, primal_tol: float = PRIMAL_TOL,
                    dual_tol: float = DUAL_TOL) -> bool:
    r"""Whether both residuals of one constraint are below their thresholds (time to hard prune).

    .. math:: r \le \varepsilon_\text{pri} \quad\text{and}\quad s \le \varepsilon_\text{dual}\,\rho\,\|W\|_F

    with :math:`r, s` as returned by :func:`admm_residuals` (``primal`` is already relative). With
    :math:`r \le 0.05` the hard prune removes at most 0.25 % of :math:`\|W\|_F^2`, because the exact
    projection is at least as close to :math:`W` as :math:`Z \in S` is.

    Parameters
    ----------
    primal, dual : float
        The residuals of one update.
    rho : float
        The penalty the dual residual was computed with.
    w_norm : float
        :math:`\|W\|_F` at that update.
    primal_tol, dual_tol : float
        :math:`\varepsilon_\text{pri}` and :math:`\varepsilon_\text{dual}` (defaults :data:`PRIMAL_TOL`,
        :data:`DUAL_TOL`).

    Examples
    --------
    >>> residuals_small(0.04, 0.01, rho=1.0, w_norm=1.0)
    True
    >>> residuals_small(0.04, 0.2, rho=1.0, w_norm=1.0)   # Z still moved by 20 % of ||W||
    False
    """
    return bool(primal <= primal_tol and dual <= dual_tol * float(rho) * float(w_norm))


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
    rescale_dual : bool, default False
        After every change of :math:`\rho`, rescale each :math:`U_j \leftarrow U_j \rho_\text{old} /
        \rho_\text{new}` (Boyd §3.4.1, :func:`rescale_dual`), so that the multiplier :math:`\rho U_j` is
        continuous. ``False`` (default) is the authors' code: :math:`U` is kept and :math:`\rho U` jumps by
        the growth factor at each update (module docstring).
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
                 update_unit: str = "epoch", frozen_masks: Mapping[str, np.ndarray] | None = None,
                 rescale_dual: bool = False) -> None:
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
        if not isinstance(rescale_dual, bool):
            raise TypeError(f"rescale_dual must be a bool, got {rescale_dual!r}")
        self.rescale_dual = rescale_dual
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
        """Z-step and U-step for every constraint, then grow rho (rescaling U if asked); return the record."""
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
        rho_new = next_rho(self.rho, self.rho_growth, self.rho_max)
        if self.rescale_dual and rho_new != self.rho:
            self.U = [rescale_dual(u, self.rho, rho_new) for u in self.U]
        self.rho = rho_new
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
                f"update_every={self.update_every} {self.update_unit}"
                + (", rescale_dual=True)" if self.rescale_dual else ")"))
