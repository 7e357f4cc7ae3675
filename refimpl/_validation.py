"""Argument checks shared by every public function.

Every public entry point of refimpl rejects bad input with a ``ValueError`` or ``TypeError`` whose message
names the offending argument and shows its value. The helpers here keep those messages uniform.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_float_array",
    "check_finite",
    "check_ndim",
    "check_positive_int",
    "check_probability",
    "resolve_count",
]


def as_float_array(x, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as a floating-point ndarray (no copy when it already is one).

    Raises ``TypeError`` for non-numeric input and ``ValueError`` for a wrong number of dimensions or
    for NaN/inf entries, naming ``name`` in the message.
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if ndim is not None:
        check_ndim(arr, name, ndim)
    check_finite(arr, name)
    return arr


def check_ndim(arr: np.ndarray, name: str, ndim: int | tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``arr.ndim`` is ``ndim`` (or one of them)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed:
        want = " or ".join(str(d) for d in allowed)
        raise ValueError(f"{name} must have {want} dimensions, got shape {arr.shape}")


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if ``arr`` holds a NaN or an infinity."""
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; refimpl does not guess what such entries mean")


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, raising unless it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_probability(value, name: str, *, closed_right: bool = True) -> float:
    """Return ``value`` as a float in ``[0, 1]`` (or ``[0, 1)``), raising otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    upper_ok = value <= 1.0 if closed_right else value < 1.0
    if not (value >= 0.0 and upper_ok):
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def resolve_count(n: int, sparsity=None, keep=None) -> int:
    """Return how many of ``n`` groups to keep, from exactly one of ``sparsity`` or ``keep``.

    ``sparsity`` s prunes ``round(s * n)`` groups with round-half-to-even (Python's :func:`round`, the
    rule ``torch.nn.utils.prune`` uses), so ``n - round(s * n)`` are kept. ``keep`` gives the kept count
    directly and must satisfy ``0 <= keep <= n``.

    Examples
    --------
    >>> resolve_count(10, sparsity=0.25)   # round(2.5) == 2 pruned
    8
    >>> resolve_count(10, keep=3)
    3
    """
    if (sparsity is None) == (keep is None):
        raise ValueError(
            f"give exactly one of sparsity= or keep=, got sparsity={sparsity!r} and keep={keep!r}"
        )
    if sparsity is not None:
        s = check_probability(sparsity, "sparsity")
        return n - round(s * n)
    if isinstance(keep, bool) or not isinstance(keep, numbers.Integral):
        raise TypeError(f"keep must be an integer, got {keep!r}")
    if not 0 <= keep <= n:
        raise ValueError(f"keep must lie in [0, {n}] (the number of groups), got {keep}")
    return int(keep)
