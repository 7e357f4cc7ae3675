"""Finite-difference gradient checks (float64), the test every hand-written backward pass must pass."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["check_gradient", "numerical_gradient", "relative_error"]


def numerical_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    r"""Centred finite differences of the scalar function ``f`` with respect to the array ``x``.

    ``x`` is perturbed **in place** one entry at a time (and restored), so ``f`` must read ``x`` itself:

    .. math:: \frac{\partial f}{\partial x_i} \approx \frac{f(x + h e_i) - f(x - h e_i)}{2h}

    The truncation error is :math:`O(h^2)`; in float64 with ``h = 1e-6`` the result is typically accurate
    to 1e-9 relative, which is what makes a ``< 1e-7`` assertion meaningful.
    """
    if x.dtype != np.float64:
        raise TypeError(f"x must be float64 for a meaningful finite-difference check, got {x.dtype}")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    if not np.shares_memory(flat, x):
        raise ValueError("x must be contiguous so that it can be perturbed in place")
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        f_plus = f()
        flat[i] = old - h
        f_minus = f()
        flat[i] = old
        gflat[i] = (f_plus - f_minus) / (2 * h)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    r"""``max|a - b| / max(max|a|, max|b|, tiny)``: scale-free, and zero only when ``a == b``."""
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), 1e-300)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)


def check_gradient(f: Callable[[], float], x: np.ndarray, analytic: np.ndarray, *, rtol: float = 1e-7,
                   h: float = 1e-6, name: str = "x") -> float:
    """Assert that ``analytic`` matches the centred-difference gradient of ``f`` w.r.t. ``x``.

    Returns the relative error; raises ``AssertionError`` naming ``name`` when it exceeds ``rtol``.
    A common use: ``f = lambda: float(np.sum(forward(x) * g))`` for a random upstream gradient ``g``,
    whose gradient is what ``backward(g)`` must return.
    """
    if analytic.shape != x.shape:
        raise ValueError(f"analytic gradient has shape {analytic.shape}, {name} has shape {x.shape}")
    numeric = numerical_gradient(f, x, h)
    err = relative_error(analytic, numeric)
    if not err < rtol:
        raise AssertionError(f"gradient of {name}: relative error {err:.3e} >= {rtol:.1e}")
    return err
