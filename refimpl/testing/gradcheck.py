"""Finite-difference gradient checks (float64), the test every hand-written backward pass must pass."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["check_gradient", "numerical_gradient", "relative_error"]


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6, *,
                       indices=None) -> np.ndarray:
    r"""Centred finite differences of the scalar function ``f`` with respect to the array ``x``.

    ``x`` is perturbed **in place** one entry at a time (and restored), so ``f`` must read ``x`` itself:

    .. math:: \frac{\partial f}{\partial x_i} \approx \frac{f(x + h e_i) - f(x - h e_i)}{2h}

    The truncation error is :math:`O(h^2)`; in float64 with ``h = 1e-6`` the result is typically accurate
    to 1e-9 relative, which is what makes a ``< 1e-7`` assertion meaningful.

    Parameters
    ----------
    f : callable
        ``f()`` returns a float computed from the current contents of ``x``.
    x : ndarray, float64, C-contiguous
        The variable, perturbed in place (restored on return).
    h : float, default 1e-6
        The step.
    indices : array_like of int, shape (S,), optional
        Flat (``x.reshape(-1)``) indices of the entries to differentiate; default every entry. Each
        entry costs two calls of ``f``, so a large weight is checked on a random sample, e.g.
        ``rng.choice(x.size, size=40, replace=False)``.

    Returns
    -------
    ndarray
        Shape of ``x`` (all entries), or ``(S,)``: the partial derivatives at ``indices``, in their order.
    """
    if x.dtype != np.float64:
        raise TypeError(f"x must be float64 for a meaningful finite-difference check, got {x.dtype}")
    flat = x.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that it can be perturbed in place")
    entries = range(flat.size) if indices is None else _check_indices(indices, flat.size)
    grad = np.zeros(len(entries))
    for j, i in enumerate(entries):
        old = flat[i]
        flat[i] = old + h
        f_plus = f()
        flat[i] = old - h
        f_minus = f()
        flat[i] = old
        grad[j] = (f_plus - f_minus) / (2 * h)
    return grad.reshape(x.shape) if indices is None else grad


def _check_indices(indices, size: int) -> np.ndarray:
    """Return ``indices`` as a 1-D int array of flat indices into ``size`` entries, or raise naming it."""
    idx = np.asarray(indices)
    if idx.ndim != 1 or not (idx.size == 0 or np.issubdtype(idx.dtype, np.integer)):
        raise TypeError(f"indices must be a 1-D array of integers, got dtype {idx.dtype}, shape {idx.shape}")
    if idx.size and (idx.min() < 0 or idx.max() >= size):
        raise ValueError(f"indices must lie in [0, {size}) (flat indices of x), got min {idx.min()}, "
                         f"max {idx.max()}")
    return idx.astype(np.int64)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    r"""``max|a - b| / max(max|a|, max|b|, tiny)``: scale-free, and zero only when ``a == b``."""
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), 1e-300)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)


def check_gradient(f: Callable[[], float], x: np.ndarray, analytic: np.ndarray, *, rtol: float = 1e-7,
                   h: float = 1e-6, name: str = "x", indices=None) -> float:
    """Assert that ``analytic`` matches the centred-difference gradient of ``f`` w.r.t. ``x``.

    Returns the relative error; raises ``AssertionError`` naming ``name`` when it exceeds ``rtol``, with
    the worst entry (the largest ``|analytic - numeric|``): its index into ``x``, the expected
    (finite-difference) and the got (analytic) value. A common use:
    ``f = lambda: float(np.sum(forward(x) * g))`` for a random upstream gradient ``g``,
    whose gradient is what ``backward(g)`` must return. With ``indices`` (flat indices, see
    :func:`numerical_gradient`) only those entries are compared: the sampled check for weights too large
    to difference in full; the relative error is then taken over the sampled entries.
    """
    if analytic.shape != x.shape:
        raise ValueError(f"analytic gradient has shape {analytic.shape}, {name} has shape {x.shape}")
    numeric = numerical_gradient(f, x, h, indices=indices)
    if indices is not None:
        analytic = analytic.reshape(-1)[np.asarray(indices)]
    err = relative_error(analytic, numeric)
    if not err < rtol:
        which = "" if indices is None else f" ({numeric.size} sampled entries)"
        worst = int(np.argmax(np.abs(analytic - numeric)))
        flat = worst if indices is None else int(np.asarray(indices).reshape(-1)[worst])
        where = tuple(int(i) for i in np.unravel_index(flat, x.shape))
        raise AssertionError(
            f"gradient of {name}{which}: relative error {err:.3e} >= {rtol:.1e}; "
            f"worst entry {name}{list(where)}: "
            f"expected (finite differences) {float(numeric.reshape(-1)[worst])!r}, "
            f"got (analytic) {float(analytic.reshape(-1)[worst])!r}")
    return err
