"""Shared machinery of the projections: tie-correct top-k selection and tile (group) scores.

Every projection in :mod:`refimpl.projections` reduces to two steps:

1. **score** the groups (``|v|`` for single entries, the squared L2 norm for groups of entries), and
2. **select** the ``k`` best groups with the library-wide tie rule: *among equal scores, the group with the
   lower flat index is kept*.

Both steps live here so that every structure (and :mod:`refimpl.projections.unify`) breaks ties the same
way. Selection is :math:`O(n)` (``np.partition``), never a sort, and never a Python loop over groups.

Every group structure of the pruning literature is a tiling of the weight's **GEMM view**
``W.reshape(F, -1)`` (see ALGORITHMS.md): a filter is a ``1 x K`` tile, a shape (column) an ``F x 1`` tile,
a channel an ``F x (KH*KW)`` tile, a kernel a ``1 x (KH*KW)`` tile and a block a ``bh x bw`` tile (edge
tiles smaller). :func:`tile_sq_norms` therefore scores all of them, with a numba kernel and its NumPy twin.
"""

from __future__ import annotations

import numbers
from fractions import Fraction

import numpy as np
from numba import njit, prange

from refimpl._validation import resolve_count

__all__ = [
    "ENGINES",
    "apply_mask",
    "check_engine",
    "check_tile",
    "expand_tiles",
    "gemm_view",
    "round_half_even_ratio",
    "select_top_k",
    "tile_sq_norms",
    "top_k_mask",
    "top_k_mask_rows",
]

#: The kernel engines a projection accepts through its ``engine=`` keyword.
ENGINES = ("numba", "numpy")

# Below this vector length the numba per-row selection ranks by counting (O(V^2), branch-light and
# allocation-free); above it, a stable sort per row (O(V log V)) wins.
_COUNTING_MAX_LEN = 32


def check_engine(engine) -> str:
    """Return ``engine`` if it names a known engine, else raise ``ValueError`` naming ``engine``."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    return engine


def apply_mask(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return a new array: entries of ``w`` where ``mask`` (copied bit for bit), exactly ``+0`` elsewhere.

    The dtype of ``w`` is kept and ``w`` itself is never written to.
    """
    return np.where(mask, w, np.zeros((), dtype=w.dtype))


def gemm_view(w: np.ndarray) -> np.ndarray:
    """Return the GEMM view ``w.reshape(F, -1)``: one row per filter (or neuron), one column per input.

    A view when ``w`` is contiguous, a copy otherwise (never written to).
    """
    return w.reshape(w.shape[0], -1)


def round_half_even_ratio(numerator: int, denominator: int) -> int:
    """``round(numerator / denominator)`` with round-half-to-even, computed exactly (no float rounding).

    Used for the edge-vector rule of balanced sparsity, where ``k_v * len / V`` is often an exact half.

    Examples
    --------
    >>> round_half_even_ratio(1, 2), round_half_even_ratio(3, 2), round_half_even_ratio(5, 4)
    (0, 2, 1)
    """
    return int(round(Fraction(int(numerator), int(denominator))))


# --------------------------------------------------------------------------------------------------
# Selection with the tie rule
# --------------------------------------------------------------------------------------------------


def top_k_mask(scores: np.ndarray, k: int) -> np.ndarray:
    r"""Boolean mask of the ``k`` largest entries of a 1-D ``scores``; ties go to the lower index.

    The selected set is the first ``k`` entries of the order "score descending, then index ascending",
    computed in :math:`O(n)` without sorting:

    .. math:: t = \text{the } k\text{-th largest score}, \qquad
              \text{keep} = \{i : s_i > t\} \cup
              \{\text{the } k - |\{i: s_i > t\}| \text{ lowest indices } i \text{ with } s_i = t\}

    Parameters
    ----------
    scores : ndarray, shape (n,)
        Finite scores (larger is better).
    k : int
        How many to keep, ``0 <= k <= n``.

    Returns
    -------
    mask : ndarray of bool, shape (n,)
        Exactly ``k`` entries are ``True``.

    Examples
    --------
    >>> top_k_mask(np.array([1.0, 3.0, 2.0, 3.0, 2.0]), 3)   # both 3s, then the first 2
    array([False,  True,  True,  True, False])
    """
    scores = np.asarray(scores)
    n = scores.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, {n}], got {k}")
    mask = np.zeros(n, dtype=bool)
    if k == 0:
        return mask
    if k == n:
        mask[:] = True
        return mask
    threshold = np.partition(scores, n - k)[n - k]
    mask = scores > threshold
    # Fill the remaining places with the lowest-index entries that tie with the threshold.
    n_missing = k - int(np.count_nonzero(mask))
    mask[np.flatnonzero(scores == threshold)[:n_missing]] = True
    return mask


def select_top_k(scores: np.ndarray, sparsity=None, keep=None) -> np.ndarray:
    """Resolve the count (``sparsity`` or ``keep``, :func:`refimpl._validation.resolve_count`) and select.

    ``scores`` of any shape are ranked in C (row-major) flat order, so "lower flat index" is the tie rule
    for grids of groups too. Returns a boolean mask of ``scores``' shape.

    Examples
    --------
    >>> select_top_k(np.array([[4.0, 1.0], [1.0, 9.0]]), sparsity=0.5)
    array([[ True, False],
           [False,  True]])
    """
    scores = np.asarray(scores)
    k = resolve_count(scores.size, sparsity=sparsity, keep=keep)
    return top_k_mask(scores.reshape(-1), k).reshape(scores.shape)


def _top_k_mask_rows_numpy(scores: np.ndarray, k: int) -> np.ndarray:
    """NumPy twin of :func:`_top_k_mask_rows_numba`: the :func:`top_k_mask` rule on every row at once."""
    n_rows, n = scores.shape
    if k == 0:
        return np.zeros((n_rows, n), dtype=bool)
    if k == n:
        return np.ones((n_rows, n), dtype=bool)
    threshold = np.partition(scores, n - k, axis=1)[:, n - k : n - k + 1]
    above = scores > threshold
    at = scores == threshold
    n_missing = k - np.count_nonzero(above, axis=1, keepdims=True)
    # The j-th tie (counted from the left) is taken iff j <= n_missing: lowest indices first.
    return above | (at & (np.cumsum(at, axis=1) <= n_missing))


@njit(cache=True, parallel=True)
def _top_k_mask_rows_numba(scores, k):  # pragma: no cover - compiled (covered via NUMBA_DISABLE_JIT runs)
    """Per-row top-k with the tie rule, one row per parallel iteration.

    Short rows rank by counting: entry ``j`` is kept iff fewer than ``k`` entries beat it, where ``i``
    beats ``j`` if ``s_i > s_j`` or (``s_i == s_j`` and ``i < j``). Long rows use a stable sort of
    ``-s``, whose first ``k`` indices are the same set.
    """
    n_rows, n = scores.shape
    mask = np.zeros((n_rows, n), dtype=np.bool_)
    for r in prange(n_rows):
        row = scores[r]
        if n <= _COUNTING_MAX_LEN:
            for j in range(n):
                beaten_by = 0
                for i in range(n):
                    if row[i] > row[j] or (row[i] == row[j] and i < j):
                        beaten_by += 1
                mask[r, j] = beaten_by < k
        else:
            order = np.argsort(-row, kind="mergesort")
            for j in range(k):
                mask[r, order[j]] = True
    return mask


def top_k_mask_rows(scores: np.ndarray, k: int, *, engine: str = "numba") -> np.ndarray:
    """Apply :func:`top_k_mask` to every row of a 2-D ``scores`` (the same ``k`` for each row).

    Parameters
    ----------
    scores : ndarray, shape (R, n)
    k : int
        ``0 <= k <= n``.
    engine : {"numba", "numpy"}
        The numba kernel (parallel over rows) or its vectorised NumPy twin; both give identical masks.

    Returns
    -------
    mask : ndarray of bool, shape (R, n)
        Exactly ``k`` ``True`` per row.

    Examples
    --------
    >>> top_k_mask_rows(np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 3.0]]), 1, engine="numpy")
    array([[ True, False, False],
           [False, False,  True]])
    """
    check_engine(engine)
    scores = np.asarray(scores)
    n = scores.shape[1]
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, {n}], got {k}")
    if engine == "numba" and scores.dtype in (np.float32, np.float64) and scores.size:
        return _top_k_mask_rows_numba(np.ascontiguousarray(scores), int(k))
    return _top_k_mask_rows_numpy(scores, int(k))


# --------------------------------------------------------------------------------------------------
# Tile (group) scores on the GEMM view
# --------------------------------------------------------------------------------------------------


def _tile_sq_norms_numpy(w2d: np.ndarray, bh: int, bw: int, dtype) -> np.ndarray:
    """NumPy twin of :func:`_tile_sq_norms_numba`: squares, then segment sums along both axes."""
    sq = np.square(w2d, dtype=dtype)
    row_starts = np.arange(0, w2d.shape[0], bh)
    col_starts = np.arange(0, w2d.shape[1], bw)
    return np.add.reduceat(np.add.reduceat(sq, row_starts, axis=0), col_starts, axis=1)


@njit(cache=True, parallel=True)
def _tile_sq_norms_numba(w2d, bh, bw):  # pragma: no cover - compiled
    """One pass over ``w2d`` accumulating squares (in float64) into the tile grid.

    The parallel loop runs over whichever tile axis is longer so that a single tile row (shapes) or a
    single tile column (filters) still splits across threads; each thread writes its own tiles only.
    """
    n_rows, n_cols = w2d.shape
    t_rows = (n_rows + bh - 1) // bh
    t_cols = (n_cols + bw - 1) // bw
    out = np.zeros((t_rows, t_cols), dtype=np.float64)
    if t_rows >= t_cols:
        for ti in prange(t_rows):
            for r in range(ti * bh, min((ti + 1) * bh, n_rows)):
                for c in range(n_cols):
                    v = np.float64(w2d[r, c])
                    out[ti, c // bw] += v * v
    else:
        for tj in prange(t_cols):
            for r in range(n_rows):
                for c in range(tj * bw, min((tj + 1) * bw, n_cols)):
                    v = np.float64(w2d[r, c])
                    out[r // bh, tj] += v * v
    return out


def tile_sq_norms(w2d: np.ndarray, bh: int, bw: int, *, engine: str = "numba") -> np.ndarray:
    r"""Squared L2 norm of every ``bh x bw`` tile of a matrix (edge tiles may be smaller).

    .. math:: S_{ij} = \sum_{r = i b_h}^{\min((i+1) b_h, F) - 1} \; \sum_{c = j b_w}^{\min((j+1) b_w, K) - 1}
              W_{rc}^2

    Scores are accumulated in float64 (or a wider input dtype) so that float32 weights are ranked by
    their norms as accurately as the input allows. Squared norms rank exactly like norms, so no square
    root is taken.

    Parameters
    ----------
    w2d : ndarray, shape (F, K)
    bh, bw : int
        Tile height and width, ``>= 1``.
    engine : {"numba", "numpy"}
        The numba kernel handles float32/float64 input; other dtypes always use the NumPy twin. The two
        may differ in the last bits (different summation orders).

    Returns
    -------
    scores : ndarray, shape (ceil(F / bh), ceil(K / bw))

    Examples
    --------
    >>> tile_sq_norms(np.arange(6.0).reshape(2, 3), 2, 2, engine="numpy")   # tiles [[0,1],[3,4]] | [[2],[5]]
    array([[26., 29.]])
    """
    check_engine(engine)
    dtype = np.promote_types(w2d.dtype, np.float64)
    if engine == "numba" and w2d.dtype in (np.float32, np.float64) and w2d.size:
        return _tile_sq_norms_numba(np.ascontiguousarray(w2d), int(bh), int(bw))
    return _tile_sq_norms_numpy(w2d, int(bh), int(bw), dtype)


def expand_tiles(tile_mask: np.ndarray, shape: tuple[int, int], bh: int, bw: int) -> np.ndarray:
    """Blow a tile-grid mask up to an element mask of ``shape`` (edge tiles cropped).

    Examples
    --------
    >>> expand_tiles(np.array([[True, False]]), (2, 3), 2, 2).astype(int)
    array([[1, 1, 0],
           [1, 1, 0]])
    """
    rows = np.repeat(tile_mask, bh, axis=0)[: shape[0]]
    return np.repeat(rows, bw, axis=1)[:, : shape[1]]


def check_tile(value, name: str, limit: int, limit_name: str) -> int:
    """Return a tile or vector size as an int in ``[1, limit]``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not 1 <= value <= limit:
        raise ValueError(f"{name} must lie in [1, {limit}] ({limit_name}), got {value}")
    return int(value)
