"""Hypothesis strategies for pruning code: weights, sparsity levels, counts, block and vector sizes.

Public: other implementations import these to test themselves against refimpl's projections (see
:mod:`refimpl.testing.conformance`). Requires ``hypothesis`` (a test dependency, ``pip install
refimpl[test]``).

Two kinds of weights are offered on purpose:

* :func:`weights` draws arbitrary finite floats, so repeated values, zeros and whole zero groups are common:
  the draws that exercise the tie rule and the edge cases;
* :func:`tie_free_weights` draws Gaussian entries from a seeded generator, so no two entries or group norms
  tie (with probability one). Use it for properties that only hold without ties (permuting groups
  permutes the result, numba == numpy when their float64 sums differ in the last bit); guard against
  near-ties with :func:`well_separated`.

Shapes are small (a conv weight has at most 4 x 3 x 3 x 3 entries) so that brute force over all supports
stays cheap.

The strategy functions are cheap to call once per example (``data.draw(weights(shape=...))``): the
composite strategies behind them are defined once, at import, not per call (defining an
``@st.composite`` makes Hypothesis read the function's source, ~1 ms, which dominated a thorough run).
"""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "block_shapes",
    "conv_shapes",
    "count_args",
    "float_dtypes",
    "linear_shapes",
    "nm_patterns",
    "sparsities",
    "tie_free_weights",
    "vector_sizes",
    "weight_shapes",
    "weights",
    "well_separated",
]

#: The dtypes projections must support (results keep the input's dtype).
FLOAT_DTYPES = (np.float32, np.float64)


def float_dtypes() -> st.SearchStrategy:
    """``np.float32`` or ``np.float64``."""
    return st.sampled_from(FLOAT_DTYPES)


def conv_shapes(max_filters: int = 4, max_channels: int = 3, max_kernel: int = 3) -> st.SearchStrategy:
    """Conv weight shapes ``(F, C, KH, KW)``, every side at least 1."""
    return st.tuples(
        st.integers(1, max_filters), st.integers(1, max_channels),
        st.integers(1, max_kernel), st.integers(1, max_kernel),
    )


def linear_shapes(max_out: int = 6, max_in: int = 8) -> st.SearchStrategy:
    """Linear weight shapes ``(out, in)``, every side at least 1."""
    return st.tuples(st.integers(1, max_out), st.integers(1, max_in))


def weight_shapes(kinds: tuple[str, ...] = ("conv", "linear")) -> st.SearchStrategy:
    """Shapes of conv (4-D) and/or linear (2-D) weights."""
    choices = {"conv": conv_shapes(), "linear": linear_shapes()}
    unknown = set(kinds) - set(choices)
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {tuple(choices)}, got {kinds!r}")
    return st.one_of(*(choices[k] for k in kinds))


def weights(shape=None, dtype=None, *, kinds: tuple[str, ...] = ("conv", "linear"),
            max_value: float = 10.0) -> st.SearchStrategy:
    """Finite float arrays with frequent ties, zeros and sign changes.

    Parameters
    ----------
    shape : tuple of int or strategy, optional
        Defaults to :func:`weight_shapes` of ``kinds``.
    dtype : dtype or strategy, optional
        Defaults to :func:`float_dtypes`.
    max_value : float
        Entries lie in ``[-max_value, max_value]``. Subnormals are excluded: squaring them underflows to
        0 and makes "tie" depend on the platform's flush-to-zero setting.
    """
    shape = weight_shapes(kinds) if shape is None else shape
    dtype = float_dtypes() if dtype is None else dtype
    return _weights(shape, dtype, float(max_value))


@functools.lru_cache(maxsize=64)
def _float_elements(width: int, max_value: float) -> st.SearchStrategy:
    return st.floats(-max_value, max_value, allow_nan=False, allow_infinity=False, allow_subnormal=False,
                     width=width)


@functools.lru_cache(maxsize=4096)
def _float_arrays(dtype: str, shape, max_value: float) -> st.SearchStrategy:
    dt = np.dtype(dtype)
    return hnp.arrays(dt, shape, elements=_float_elements(8 * dt.itemsize, max_value))


@st.composite
def _weights(draw, shape, dtype, max_value):
    dt = np.dtype(draw(dtype) if isinstance(dtype, st.SearchStrategy) else dtype)
    shp = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
    shp = shp if isinstance(shp, int) else tuple(int(d) for d in shp)
    return draw(_float_arrays(dt.str, shp, max_value))  # one array strategy per (dtype, shape), reused


def tie_free_weights(shape=None, dtype=None, *, kinds: tuple[str, ...] = ("conv", "linear")
                     ) -> st.SearchStrategy:
    """Standard-normal arrays from a drawn seed: no ties among entries or group norms (almost surely).

    ``shape`` and ``dtype`` as in :func:`weights`. Hypothesis shrinks the seed and the shape, not the
    values; the values are reproducible from the seed alone.
    """
    shape = weight_shapes(kinds) if shape is None else shape
    dtype = float_dtypes() if dtype is None else dtype
    return _tie_free_weights(shape, dtype)


@st.composite
def _tie_free_weights(draw, shape, dtype):
    shp = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
    dt = draw(dtype) if isinstance(dtype, st.SearchStrategy) else dtype
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal(shp).astype(dt)


def well_separated(scores, rtol: float = 1e-6) -> bool:
    """Return True if all distinct ``scores`` differ pairwise by more than ``rtol`` relative (no near-ties).

    Exact ties also count as not separated. Use with ``hypothesis.assume`` before properties that hold
    only on tie-free data.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    if s.size < 2:
        return True
    gaps = np.diff(s)
    scale = np.maximum(np.abs(s[1:]), np.abs(s[:-1]))
    return bool(np.all(gaps > rtol * scale))


def sparsities() -> st.SearchStrategy:
    """Sparsity levels in ``[0, 1]``, mixing the exact halves that test round-half-to-even."""
    special = st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 0.125, 0.375])
    return st.one_of(special, st.floats(0.0, 1.0, allow_nan=False))


def count_args(n: int) -> st.SearchStrategy:
    """Draw the pruning amount for ``n`` groups as kwargs: ``{"sparsity": s}`` or ``{"keep": k}``."""
    return st.one_of(
        sparsities().map(lambda s: {"sparsity": s}),
        st.integers(0, n).map(lambda k: {"keep": k}),
    )


def block_shapes(gemm_shape: tuple[int, int]) -> st.SearchStrategy:
    """Block shapes ``(bh, bw)`` that fit a GEMM view of shape ``(F, K)`` (edge blocks may be smaller)."""
    rows, cols = gemm_shape
    return st.tuples(st.integers(1, rows), st.integers(1, cols))


def vector_sizes(n_cols: int) -> st.SearchStrategy:
    """Vector lengths ``V`` in ``[1, n_cols]`` for balanced sparsity along GEMM rows of length ``n_cols``."""
    return st.integers(1, n_cols)


def nm_patterns(n_cols: int) -> st.SearchStrategy:
    """``(n, m)`` pairs with ``m`` dividing ``n_cols`` and ``0 <= n <= m`` (N:M sparsity)."""
    divisors = [m for m in range(1, n_cols + 1) if n_cols % m == 0]
    return st.sampled_from(divisors).flatmap(lambda m: st.tuples(st.integers(0, m), st.just(m)))
