r"""Check someone else's ADMM iteration against refimpl's: one W-step, Z-step and U-step.

One iteration of scaled ADMM (``docs/ALGORITHMS.md``, section 1) with one plain gradient-descent step as
the W-step, for a weight ``W`` with projected copy ``Z``, scaled dual ``U`` and loss gradient ``grad``:

.. math::

    W' = W - \eta\,\bigl(\nabla f(W) + \rho\,(W - Z + U)\bigr), \qquad
    Z' = \Pi_S(W' + U), \qquad
    U' = U + W' - Z' .

The penalty is the **squared** Frobenius norm :math:`\frac{\rho}{2}\|W - Z + U\|_F^2` (its gradient is
:math:`\rho(W - Z + U)`; the unsquared norm of some reimplementations is a bug), and the Z-step projects
:math:`W' + U`, not :math:`W'`. :func:`reference_admm_step` composes refimpl's own
:func:`~refimpl.prune.admm.admm_penalty_gradient` and :func:`~refimpl.prune.admm.admm_update`;
:func:`check_admm_step` runs a foreign step on random inputs and reports the first of ``W``, ``Z``, ``U``
that differs, with its worst entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from refimpl.testing.compare import Mismatch, compare_arrays, default_rtol

__all__ = ["AdmmReport", "check_admm_step", "reference_admm_step"]


def reference_admm_step(
    W: np.ndarray,
    Z: np.ndarray,
    U: np.ndarray,
    grad: np.ndarray,
    *,
    rho: float,
    lr: float,
    project: Callable[[np.ndarray], np.ndarray],
):
    """Return ``(W', Z', U')`` of one ADMM iteration (module docstring), new arrays in ``W``'s dtype.

    Examples
    --------
    >>> from refimpl.projections import project_unstructured
    >>> W, Z, U = np.array([1.0, 0.5]), np.array([1.0, 0.0]), np.zeros(2)
    >>> reference_admm_step(W, Z, U, np.zeros(2), rho=1.0, lr=0.5,
    ...                     project=lambda v: project_unstructured(v, keep=1))
    (array([1.  , 0.25]), array([1., 0.]), array([0.  , 0.25]))
    """
    from refimpl.prune.admm import admm_penalty_gradient, admm_update

    W_new = (W - W.dtype.type(lr) * (grad + admm_penalty_gradient(W, Z, U, rho))).astype(W.dtype, copy=False)
    Z_new, U_new, _ = admm_update(W_new, Z, U, project, rho=rho)
    return W_new, Z_new, U_new.astype(W.dtype, copy=False)


@dataclass
class AdmmReport:
    """Outcome of :func:`check_admm_step`: ``passed``, the ``failures`` and a readable ``str()``."""

    structure: str
    params: dict
    n_examples: int = 0
    failures: list[tuple[int, str, Mismatch | str]] = field(default_factory=list)
    """``(example, dtype, mismatch or error)`` per differing output."""

    @property
    def passed(self) -> bool:
        """True when every output of every example matched."""
        return not self.failures

    def __str__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        head = f"check_admm_step(step, {self.structure!r}{args}): "
        if self.passed:
            return head + f"passed ({self.n_examples} steps)"
        lines = [head + f"FAILED {len(self.failures)} outputs in {self.n_examples} steps"]
        lines += [f"  example {i} ({dtype}): {what}" for i, dtype, what in self.failures]
        return "\n".join(lines)


def check_admm_step(
    step: Callable,
    structure: str = "filters",
    *,
    rho: float = 0.5,
    lr: float = 0.25,
    n_examples: int = 20,
    seed: int = 0,
    dtypes=(np.float64, np.float32),
    shape=(6, 3, 2, 2),
    **params,
) -> AdmmReport:
    r"""Compare one foreign ADMM iteration with :func:`reference_admm_step`.

    Parameters
    ----------
    step : callable
        ``step(W, Z, U, grad, *, rho, lr, **params) -> (W_new, Z_new, U_new)``, where ``params`` are the
        projection's (e.g. ``keep=2`` for filters) and the step projects onto ``structure`` itself.
    structure : str
        A key of :data:`refimpl.projections.PROJECTIONS`; refimpl's plain projection
        (:mod:`refimpl.projections.reference`) is :math:`\Pi_S`.
    rho, lr : float
        The penalty parameter and the W-step's learning rate.
    n_examples : int
        Number of random ``(W, Z, U, grad)`` tried; ``Z`` is a projection of a random point, ``U`` small.
    seed : int
    dtypes : sequence of float dtypes
    shape : tuple of int
        The weight's shape.
    **params
        The projection's parameters; default ``sparsity=0.5`` when the structure takes one.

    Returns
    -------
    AdmmReport
        ``.passed`` and, per differing output, its worst entry (expected, got).

    Examples
    --------
    >>> from refimpl.projections import project_filters
    >>> def my_step(W, Z, U, grad, *, rho, lr, keep):
    ...     W = W - lr * (grad + rho * (W - Z + U))
    ...     Z = project_filters(W + U, keep=keep)
    ...     return W, Z, U + W - Z
    >>> check_admm_step(my_step, "filters", keep=3).passed
    True
    """
    from refimpl.projections.reference import REFERENCES

    if structure not in REFERENCES:
        raise ValueError(f"structure must be one of {sorted(REFERENCES)}, got {structure!r}")
    if not callable(step):
        raise TypeError(f"step must be callable, got {step!r}")
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ValueError(f"n_examples must be a positive integer, got {n_examples!r}")
    plain = REFERENCES[structure]
    if not params and structure in ("unstructured", "filters", "channels", "shapes", "kernels"):
        params = {"sparsity": 0.5}

    def project(v):
        return plain(v, **params)

    report = AdmmReport(structure, dict(params))
    rng = np.random.default_rng(seed)
    for i in range(n_examples):
        dt = np.dtype(dtypes[i % len(dtypes)])
        W = rng.standard_normal(shape).astype(dt)
        Z = project(rng.standard_normal(shape).astype(dt))
        U = (0.1 * rng.standard_normal(shape)).astype(dt)
        grad = rng.standard_normal(shape).astype(dt)
        expected = reference_admm_step(W, Z, U, grad, rho=rho, lr=lr, project=project)
        report.n_examples += 1
        try:
            got = step(W.copy(), Z.copy(), U.copy(), grad.copy(), rho=rho, lr=lr, **params)
        except Exception as err:  # noqa: BLE001 - a raising step is a finding to report
            report.failures.append((i, dt.name, f"raised {type(err).__name__}: {err}"))
            continue
        if not isinstance(got, tuple) or len(got) != 3:
            report.failures.append((i, dt.name, f"expected a tuple (W, Z, U), got {type(got).__name__}"))
            continue
        tol = default_rtol(dt)
        for name, exp, g in zip(("W", "Z", "U"), expected, got, strict=True):
            mismatch = compare_arrays(name, exp, g, rtol=tol, atol=tol * float(np.max(np.abs(exp))))
            if mismatch is not None:
                report.failures.append((i, dt.name, mismatch))
                break  # Z and U follow from W: the first differing output is the finding
    return report
