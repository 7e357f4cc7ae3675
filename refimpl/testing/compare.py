r"""Compare an array with the expected one and say what is wrong: missing, shape, dtype or the worst entry.

Every checker of :mod:`refimpl.testing` (layers, gradients, the ADMM step, golden vectors) reports a
mismatch the same way, so that a failure reads alike wherever it comes from::

    dw: values: 18 of 54 entries off; worst entry (1, 0, 2, 1): expected 0.5, got -0.25
        (|got - expected| = 0.75 > allowed 1e-10)

An entry is within tolerance when

.. math:: |\mathrm{got} - \mathrm{expected}| \le \mathrm{atol} + \mathrm{rtol}\,|\mathrm{expected}|

(``numpy.isclose``'s rule; NaN only matches NaN, an infinity only the same infinity), and the *worst
entry* is the one that exceeds its allowance the most. With ``signed_zeros=True`` a zero must also carry
the expected sign: the projections' rule (a kept entry is copied bit for bit, −0.0 included; a dropped
one is +0.0; ``docs/ALGORITHMS.md``), which ``-0.0 == 0.0`` alone cannot check. A wrong sign of zero
counts as off, but ranks below every entry that is off in value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Mismatch", "compare_arrays", "default_rtol"]


def default_rtol(dtype) -> float:
    """Relative tolerance for results that may be computed in another order: ``sqrt(eps)`` of ``dtype``.

    ``1.5e-8`` for float64, ``3.5e-4`` for float32: far above the rounding of a reordered sum of a few
    hundred terms, far below any mistake (a wrong index, a transposed operand, a missing term).
    """
    return float(np.sqrt(np.finfo(np.dtype(dtype)).eps))


@dataclass
class Mismatch:
    """How an array differs from the expected one."""

    name: str
    """The compared output (``"dw"``, ``"z"`` ...)."""
    property: str
    """``"missing"``, ``"shape"``, ``"dtype"`` or ``"values"``."""
    message: str
    """One line with the numbers."""
    index: tuple[int, ...] | None = None
    """The worst entry (``"values"`` only)."""
    expected: object = None
    """The expected value at the worst entry (or the expected shape / dtype)."""
    got: object = None
    """The value found there (or the shape / dtype found)."""

    def __str__(self) -> str:
        return f"{self.name}: {self.property}: {self.message}"


def compare_arrays(
    name: str, expected: np.ndarray, got, *, rtol: float = 0.0, atol: float = 0.0, check_dtype: bool = True,
    signed_zeros: bool = False,
) -> Mismatch | None:
    """Return ``None`` if ``got`` matches ``expected`` (shape, dtype, values within tolerance), else why not.

    Parameters
    ----------
    name : str
        What is compared, for the message.
    expected : ndarray
    got : array_like or None
        ``None`` means the output is missing.
    rtol, atol : float
        The tolerance (module docstring); both 0 for exact equality.
    check_dtype : bool
        Whether a different dtype is a mismatch.
    signed_zeros : bool
        Whether a zero of the other sign (``-0.0`` for ``+0.0`` or back) is a mismatch (module docstring).

    Examples
    --------
    >>> m = compare_arrays("z", np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    >>> m.property, m.index, m.expected, m.got
    ('values', (1,), 2.0, 2.5)
    >>> compare_arrays("z", np.array([0.0]), np.array([-0.0])) is None
    True
    >>> compare_arrays("z", np.array([0.0]), np.array([-0.0]), signed_zeros=True).message
    '1 of 1 entries off; worst entry (0,): expected 0.0, got -0.0 (sign of zero differs)'
    """
    expected = np.asarray(expected)
    if got is None:
        return Mismatch(name, "missing", "no output", expected=expected.shape)
    got = np.asarray(got)
    if got.shape != expected.shape:
        return Mismatch(
            name,
            "shape",
            f"expected shape {expected.shape}, got {got.shape}",
            expected=expected.shape,
            got=got.shape,
        )
    if check_dtype and got.dtype != expected.dtype:
        return Mismatch(
            name,
            "dtype",
            f"expected dtype {expected.dtype}, got {got.dtype}",
            expected=str(expected.dtype),
            got=str(got.dtype),
        )
    if expected.dtype == np.bool_ or got.dtype == np.bool_:
        bad = expected != got
        excess = bad.astype(np.float64)
    else:
        e, g = expected.astype(np.float64), got.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            allowed = atol + rtol * np.abs(e)
            excess = np.abs(g - e) - allowed
            nan_mismatch = np.isnan(e) != np.isnan(g)
            # Equal values match whatever the tolerance: inf - inf is NaN, but inf is the right answer to inf.
            excess = np.where((np.isnan(e) & np.isnan(g)) | (g == e), -1.0, excess)
            excess = np.where(nan_mismatch | np.isnan(excess), np.inf, excess)
            if signed_zeros:
                # equal as numbers, so excess is -1 there: the smallest positive excess flags the entry
                # without outranking any entry that is off in value
                wrong_sign = (e == 0) & (g == 0) & (np.signbit(e) != np.signbit(g))
                excess = np.where(wrong_sign, np.finfo(np.float64).tiny, excess)
        bad = excess > 0
    n_bad = int(np.count_nonzero(bad))
    if n_bad == 0:
        return None
    flat = int(np.argmax(excess))
    index = tuple(int(i) for i in np.unravel_index(flat, expected.shape)) if expected.ndim else ()
    exp_v, got_v = expected[index].item(), got[index].item()
    message = (
        f"{n_bad} of {expected.size} entries off; worst entry {index}: expected {exp_v!r}, got {got_v!r}"
    )
    if expected.dtype != np.bool_ and got.dtype != np.bool_:
        if float(exp_v) == 0 and float(got_v) == 0:
            message += " (sign of zero differs)"
        else:
            allowed_at = atol + rtol * abs(float(exp_v))
            off = abs(float(got_v) - float(exp_v))
            message += f" (|got - expected| = {off:.3g} > allowed {allowed_at:.3g})"
    return Mismatch(name, "values", message, index, exp_v, got_v)
