"""Shared machinery of the projections: tie-correct top-k selection and tile (group) scores.

Every projection in :mod:`refimpl.projections` reduces to two steps:

1. **score** the groups (``|v|`` for single entries, the squared L2 norm for groups of entries), and
2. **select** the ``k`` best groups with the library-wide tie rule: *among equal scores, the group with the
   lower flat index is kept*.

Both steps live here so that every structure (and :mod:`refimpl.projections.unify`) breaks ties the same
way. Selection is :math:`O(n)` (``np.partition``), never a full sort and never a Python loop over groups
(only the numba per-vector kernel of balanced sparsity sorts each vector longer than 32 entries).
Group scores are squared L2 norms (:func:`group_scores`): plain float64 sums of squares
(:func:`tile_sq_norms`) whenever those can neither overflow nor underflow -- always for float32 and
float16 weights, and for float64 weights whose magnitudes pass a cheap range check
(:func:`plain_squares_exact`) -- and otherwise exact-range pairs ``F * 2**E`` (:func:`tile_scores`), so
that neither overflow nor underflow can turn distinct scores into ties. On data where the fast path is
taken the two give the same float64 numbers, so the choice never changes a mask.

Every group structure of the pruning literature is a tiling of the weight's **GEMM view**
``W.reshape(F, -1)`` (see docs/ALGORITHMS.md): a filter is a ``1 x K`` tile, a shape (column) an
``F x 1`` tile, a channel an ``F x (KH*KW)`` tile, a kernel a ``1 x (KH*KW)`` tile and a block a
``bh x bw`` tile (edge tiles smaller). :func:`tile_scores` therefore scores all of them, with a numba
kernel and its NumPy twin.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np
from numba import njit, prange

from refimpl._validation import ENGINES, check_engine, resolve_count

__all__ = [
    "ENGINES",
    "apply_mask",
    "apply_tile_mask",
    "check_engine",
    "check_tile",
    "expand_tiles",
    "gemm_view",
    "group_scores",
    "magnitude_range",
    "plain_squares_exact",
    "round_half_even_ratio",
    "select_top_k",
    "tile_scores",
    "tile_sq_norms",
    "top_k_mask",
    "top_k_mask_lex",
    "top_k_mask_rows",
]

# ENGINES (the engines a projection accepts through ``engine=``) and check_engine come from
# refimpl._validation, the one place every engine argument is checked.

# The exact-range tile_scores kernel (the fallback for extreme float64 data) goes multi-threaded from this
# many entries; below it waking the thread pool costs more than it saves (~1 ms per call on a busy 2-core
# machine). The fast-path kernels are serial: single memory-bound passes, measured no faster with threads.
PARALLEL_MIN_SIZE = 1 << 16

# Up to this vector length the numba per-row selection ranks by counting (O(V^2) but branch-free and
# allocation-free, the right trade for N:M and short balanced vectors); longer rows use a stable sort
# (O(V log V)) so that a long vector never costs quadratic time.
_COUNTING_MAX_LEN = 32


def apply_mask(w: np.ndarray, mask: np.ndarray, *, engine: str = "numba") -> np.ndarray:
    """Return a new array: entries of ``w`` where ``mask`` (copied bit for bit), exactly ``+0`` elsewhere.

    The dtype of ``w`` is kept and ``w`` itself is never written to. ``engine="numba"`` runs one
    streaming pass (float32/float64, same shapes); otherwise, and for other dtypes, ``np.where``.
    Identical results.

    Examples
    --------
    >>> apply_mask(np.array([-1.0, 2.0, -0.0]), np.array([True, False, True]), engine="numpy")
    array([-1.,  0., -0.])
    """
    check_engine(engine)
    if engine == "numba" and w.dtype in (np.float32, np.float64) and w.size and mask.shape == w.shape:
        flat_w = np.ascontiguousarray(w).reshape(-1)
        flat_mask = np.ascontiguousarray(mask, dtype=np.bool_).reshape(-1)
        return _apply_mask_numba(flat_w, flat_mask).reshape(w.shape)
    return np.where(mask, w, np.zeros((), dtype=w.dtype))


@njit(cache=True)
def _apply_mask_numba(flat_w, flat_mask):  # pragma: no cover - compiled
    """``np.where(mask, w, +0)`` on flat arrays, as one branch-free (vectorisable) pass."""
    out = np.empty_like(flat_w)
    zero = flat_w.dtype.type(0)
    for i in range(flat_w.shape[0]):
        out[i] = flat_w[i] if flat_mask[i] else zero
    return out


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


def top_k_mask_lex(exponent: np.ndarray, fraction: np.ndarray, k: int) -> np.ndarray:
    r""":func:`top_k_mask` for scores given as pairs ``F * 2**E`` (see :func:`tile_scores`).

    Pairs compare lexicographically (exponent first, then fraction), which is the order of the scores
    because every nonzero ``F`` is normalised to ``[0.5, 1)``. Same tie rule, same :math:`O(n)` cost: the
    ``k``-th largest exponent is found by partition, and the fractions decide only among the entries at
    that exponent.

    Examples
    --------
    >>> top_k_mask_lex(np.array([3, 5, 3, 3]), np.array([0.5, 0.5, 0.75, 0.5]), 2)
    array([False,  True,  True, False])
    """
    exponent = np.asarray(exponent).reshape(-1)
    fraction = np.asarray(fraction).reshape(-1)
    n = exponent.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k must lie in [0, {n}], got {k}")
    if k in (0, n):
        return np.full(n, k == n, dtype=bool)
    threshold = np.partition(exponent, n - k)[n - k]
    mask = exponent > threshold
    at = np.flatnonzero(exponent == threshold)           # ascending, so the tie rule carries over
    mask[at[top_k_mask(fraction[at], k - int(np.count_nonzero(mask)))]] = True
    return mask


def select_top_k(scores, sparsity=None, keep=None) -> np.ndarray:
    """Resolve the count (``sparsity`` or ``keep``, :func:`refimpl._validation.resolve_count`) and select.

    ``scores`` is an array of any shape, or an ``(exponent, fraction)`` pair from :func:`tile_scores`.
    It is ranked in C (row-major) flat order, so "lower flat index" is the tie rule for grids of groups
    too. Returns a boolean mask of the scores' shape.

    Examples
    --------
    >>> select_top_k(np.array([[4.0, 1.0], [1.0, 9.0]]), sparsity=0.5)
    array([[ True, False],
           [False,  True]])
    """
    if isinstance(scores, tuple):
        exponent, fraction = (np.asarray(a) for a in scores)
        k = resolve_count(exponent.size, sparsity=sparsity, keep=keep)
        return top_k_mask_lex(exponent, fraction, k).reshape(exponent.shape)
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


@njit(cache=True, inline="always")
def _top_k_row(scores, r, k, mask):  # pragma: no cover - compiled (run as Python under NUMBA_DISABLE_JIT=1)
    """Write the top-``k`` mask of row ``r`` of ``scores`` into ``mask[r]`` (the lower index wins ties).

    Short rows rank by counting: entry ``j`` is kept iff fewer than ``k`` entries beat it, where ``i``
    beats ``j`` if ``s_i > s_j`` or (``s_i == s_j`` and ``i < j``). Long rows use a stable sort of
    ``-s``, whose first ``k`` indices are the same set. Rows are addressed by index, not sliced, so
    that no array view is built per row (hundreds of thousands of rows for N:M).
    """
    n = scores.shape[1]
    if n <= _COUNTING_MAX_LEN:
        for j in range(n):
            x = scores[r, j]
            beaten_by = 0
            # Branch-free with a fixed trip count, so the compiler vectorises it (measured faster than
            # k scans for the best remaining entry, whose data-dependent branches mispredict).
            for i in range(n):
                beaten_by += (scores[r, i] > x) | ((scores[r, i] == x) & (i < j))
            mask[r, j] = beaten_by < k
    else:
        order = np.argsort(-scores[r], kind="mergesort")
        for j in range(k):
            mask[r, order[j]] = True


@njit(cache=True)
def _top_k_mask_rows_numba(scores, k):  # pragma: no cover - compiled
    """Numba per-row top-k, serial.

    A prange twin was no faster at any size on the shared 2-core machine (147,456 rows of 16: 7.7 ms
    serial, 7.9 ms parallel; 589,824 rows of 4: 5.6 vs 6.0 ms), so only the serial kernel is kept.
    """
    mask = np.zeros(scores.shape, dtype=np.bool_)
    for r in range(scores.shape[0]):
        _top_k_row(scores, r, k, mask)
    return mask


def top_k_mask_rows(scores: np.ndarray, k: int, *, engine: str = "numba") -> np.ndarray:
    """Apply :func:`top_k_mask` to every row of a 2-D ``scores`` (the same ``k`` for each row).

    Parameters
    ----------
    scores : ndarray, shape (R, n)
    k : int
        ``0 <= k <= n``.
    engine : {"numba", "numpy"}
        The numba kernel or its vectorised NumPy twin; both give identical masks.

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


# Squared norms overflow for entries above ~1.3e154 and underflow below ~1.5e-162 in float64, which would
# turn distinct scores into ties (Hypothesis found a lone 3.5e-252 column being dropped in favour of an
# all-zero one). Each tile's score is therefore kept as an exact-range pair S = F * 2**E: the entries
# are first scaled by a power of two (exactly) so that the tile's largest magnitude lies in [0.5, 1),
# squared and summed, and the exponent is carried separately as an integer.

#: Exponent of an all-zero tile: below every nonzero score.
ZERO_EXPONENT = np.iinfo(np.int64).min


def _tile_scores_numpy(w2d: np.ndarray, bh: int, bw: int) -> tuple[np.ndarray, np.ndarray]:
    """NumPy twin of :func:`_tile_scores_serial`: tile maxima, exact rescaling, then segment sums."""
    magnitude = np.abs(w2d).astype(np.promote_types(w2d.dtype, np.float64))
    row_starts = np.arange(0, w2d.shape[0], bh)
    col_starts = np.arange(0, w2d.shape[1], bw)
    peak = np.maximum.reduceat(np.maximum.reduceat(magnitude, row_starts, axis=0), col_starts, axis=1)
    _, peak_exp = np.frexp(peak)                        # peak = m * 2**peak_exp, m in [0.5, 1)
    scaled = np.ldexp(magnitude, -expand_tiles(peak_exp, w2d.shape, bh, bw))
    sums = np.add.reduceat(np.add.reduceat(scaled * scaled, row_starts, axis=0), col_starts, axis=1)
    fraction, sum_exp = np.frexp(sums)
    exponent = 2 * peak_exp.astype(np.int64) + sum_exp
    exponent[fraction == 0] = ZERO_EXPONENT
    return exponent, fraction.astype(np.float64)


# The numba kernels of both paths add the squares of one tile row by row; within a row segment they
# use eight interleaved accumulators (entry c0 + 8q + j goes to lane j; the tail after the last full
# group of eight goes to lane 0, in order; lanes combined pairwise). Independent dependency chains run
# faster than one (filter norms of a 512 x 4608 float32 view: ~2.0 ms with one chain, 1.2 ms with four
# lanes, 0.9-1.0 ms with eight; 4 x 4 blocks: 3.1 -> 2.4 ms from four lanes to eight). Because the
# exact-range and the plain kernel share this order exactly, their results agree bit for bit on
# exact-range data (see plain_squares_exact). Keep _row_sq_sum and _row_sq_sum_scaled in lockstep.


@njit(cache=True, inline="always")
def _row_sq_sum(w2d, r, c0, c1):  # pragma: no cover - compiled
    """``sum(w2d[r, c0:c1] ** 2)`` in float64, eight lanes."""
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0.0
    c = c0
    while c + 8 <= c1:
        v0, v1 = np.float64(w2d[r, c]), np.float64(w2d[r, c + 1])
        v2, v3 = np.float64(w2d[r, c + 2]), np.float64(w2d[r, c + 3])
        v4, v5 = np.float64(w2d[r, c + 4]), np.float64(w2d[r, c + 5])
        v6, v7 = np.float64(w2d[r, c + 6]), np.float64(w2d[r, c + 7])
        l0 += v0 * v0
        l1 += v1 * v1
        l2 += v2 * v2
        l3 += v3 * v3
        l4 += v4 * v4
        l5 += v5 * v5
        l6 += v6 * v6
        l7 += v7 * v7
        c += 8
    while c < c1:
        v = np.float64(w2d[r, c])
        l0 += v * v
        c += 1
    return ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))


@njit(cache=True, inline="always")
def _row_sq_sum_scaled(w2d, r, c0, c1, shift):  # pragma: no cover - compiled
    """``sum((w2d[r, c0:c1] * 2**shift) ** 2)``: :func:`_row_sq_sum` on exactly rescaled entries."""
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = 0.0
    c = c0
    while c + 8 <= c1:
        v0, v1 = math.ldexp(np.float64(w2d[r, c]), shift), math.ldexp(np.float64(w2d[r, c + 1]), shift)
        v2, v3 = math.ldexp(np.float64(w2d[r, c + 2]), shift), math.ldexp(np.float64(w2d[r, c + 3]), shift)
        v4, v5 = math.ldexp(np.float64(w2d[r, c + 4]), shift), math.ldexp(np.float64(w2d[r, c + 5]), shift)
        v6, v7 = math.ldexp(np.float64(w2d[r, c + 6]), shift), math.ldexp(np.float64(w2d[r, c + 7]), shift)
        l0 += v0 * v0
        l1 += v1 * v1
        l2 += v2 * v2
        l3 += v3 * v3
        l4 += v4 * v4
        l5 += v5 * v5
        l6 += v6 * v6
        l7 += v7 * v7
        c += 8
    while c < c1:
        v = math.ldexp(np.float64(w2d[r, c]), shift)
        l0 += v * v
        c += 1
    return ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))


@njit(cache=True)
def _one_tile_score(w2d, r0, r1, c0, c1):  # pragma: no cover - compiled
    """``(E, F)`` of the tile ``w2d[r0:r1, c0:c1]``: its maximum, then the rescaled sum of squares."""
    peak = 0.0
    for r in range(r0, r1):
        for c in range(c0, c1):
            peak = max(peak, abs(np.float64(w2d[r, c])))
    if peak == 0.0:
        return ZERO_EXPONENT, 0.0
    peak_exp = math.frexp(peak)[1]
    total = 0.0
    for r in range(r0, r1):
        total += _row_sq_sum_scaled(w2d, r, c0, c1, -peak_exp)
    fraction, sum_exp = math.frexp(total)
    return 2 * peak_exp + sum_exp, fraction


@njit(cache=True)
def _tile_scores_serial(w2d, bh, bw):  # pragma: no cover - compiled
    """Numba tile scores, one thread (small inputs)."""
    n_rows, n_cols = w2d.shape
    t_rows, t_cols = (n_rows + bh - 1) // bh, (n_cols + bw - 1) // bw
    exponent = np.empty((t_rows, t_cols), dtype=np.int64)
    fraction = np.empty((t_rows, t_cols), dtype=np.float64)
    for ti in range(t_rows):
        for tj in range(t_cols):
            exponent[ti, tj], fraction[ti, tj] = _one_tile_score(
                w2d, ti * bh, min((ti + 1) * bh, n_rows), tj * bw, min((tj + 1) * bw, n_cols))
    return exponent, fraction


@njit(cache=True, parallel=True)
def _tile_scores_parallel(w2d, bh, bw):  # pragma: no cover - compiled
    """Numba tile scores, the flat list of tiles split across threads (balanced for any tiling)."""
    n_rows, n_cols = w2d.shape
    t_rows, t_cols = (n_rows + bh - 1) // bh, (n_cols + bw - 1) // bw
    exponent = np.empty((t_rows, t_cols), dtype=np.int64)
    fraction = np.empty((t_rows, t_cols), dtype=np.float64)
    for t in prange(t_rows * t_cols):
        ti = t // t_cols
        tj = t - ti * t_cols
        exponent[ti, tj], fraction[ti, tj] = _one_tile_score(
            w2d, ti * bh, min((ti + 1) * bh, n_rows), tj * bw, min((tj + 1) * bw, n_cols))
    return exponent, fraction


def tile_scores(w2d: np.ndarray, bh: int, bw: int, *, engine: str = "numba") -> tuple[np.ndarray, np.ndarray]:
    r"""Squared L2 norm of every ``bh x bw`` tile of a matrix (edge tiles smaller), free of over/underflow.

    .. math:: S_{ij} = \sum_{r = i b_h}^{\min((i+1) b_h, F) - 1} \; \sum_{c = j b_w}^{\min((j+1) b_w, K) - 1}
              W_{rc}^2 \;=\; F_{ij} \, 2^{E_{ij}}, \qquad F_{ij} \in [\tfrac12, 1)

    Squared norms rank exactly like norms, so no square root is taken; but ``W**2`` overflows or
    underflows in floating point for very large or very small entries, merging distinct scores into
    ties. So each tile is scaled by a power of two (exact) to bring its largest ``|w|`` into
    ``[0.5, 1)`` before squaring, and the score is returned as the pair ``(E, F)``, compared
    lexicographically by :func:`top_k_mask_lex`. An all-zero tile gets ``E = ZERO_EXPONENT``, ``F = 0``.
    Sums are accumulated in float64 (or a wider input dtype).

    Parameters
    ----------
    w2d : ndarray, shape (F, K)
    bh, bw : int
        Tile height and width, ``>= 1``.
    engine : {"numba", "numpy"}
        The numba kernel handles float32/float64 input; other dtypes always use the NumPy twin. The two
        may differ in the last bit of ``F`` (different summation orders).

    Returns
    -------
    exponent : ndarray of int64, shape (ceil(F / bh), ceil(K / bw))
    fraction : ndarray of float64, same shape

    Examples
    --------
    >>> e, f = tile_scores(np.arange(6.0).reshape(2, 3), 2, 2, engine="numpy")  # [[0,1],[3,4]] | [[2],[5]]
    >>> np.ldexp(f, e)                                                          # 26 and 29
    array([[26., 29.]])
    >>> e, f = tile_scores(np.array([[1e200, 0.0, 1e-200]]), 1, 1, engine="numpy")
    >>> bool(e[0, 0] > e[0, 2] > e[0, 1])                                     # no overflow, no underflow
    True
    """
    check_engine(engine)
    if engine == "numba" and w2d.dtype in (np.float32, np.float64) and w2d.size:
        kernel = _tile_scores_parallel if w2d.size >= PARALLEL_MIN_SIZE else _tile_scores_serial
        return kernel(np.ascontiguousarray(w2d), int(bh), int(bw))
    return _tile_scores_numpy(w2d, int(bh), int(bw))


# --------------------------------------------------------------------------------------------------
# The fast path: plain float64 sums of squares, taken whenever they cannot overflow or underflow
# --------------------------------------------------------------------------------------------------

# The exact-range pairs above cost a second pass over every tile and an O(n) selection in two stages.
# They are only needed when a square or a partial sum of squares can leave the normal float64 range:
# when every one of them is a normal, finite float64, the plain sum is rounded exactly as the scaled sum
# (scaling by 2**-p commutes with rounding in the normal range), so both paths produce the same number.

#: Smallest magnitude whose square is a normal float64: (2**-511)**2 = 2**-1022.
_SQUARE_NORMAL_MIN = 2.0**-511

#: Dtypes whose squares, taken in float64, are exact-range by construction (see plain_squares_exact).
_ALWAYS_IN_RANGE = (np.float16, np.float32)


def _magnitude_range_numpy(w: np.ndarray) -> tuple[float, float]:
    """NumPy twin of :func:`_magnitude_range_numba`."""
    magnitude = np.abs(w).reshape(-1)
    nonzero = magnitude[magnitude > 0]
    if nonzero.size == 0:
        return math.inf, 0.0
    return float(nonzero.min()), float(magnitude.max())


@njit(cache=True)
def _magnitude_range_numba(flat):  # pragma: no cover - compiled
    """One pass: the smallest nonzero and the largest ``|w|`` (``inf``/``0`` if every entry is 0)."""
    smallest = np.inf
    largest = 0.0
    for i in range(flat.shape[0]):
        a = abs(np.float64(flat[i]))
        largest = max(largest, a)
        if a > 0.0:
            smallest = min(smallest, a)
    return smallest, largest


def magnitude_range(w: np.ndarray, *, engine: str = "numba") -> tuple[float, float]:
    """Return ``(smallest nonzero |w|, largest |w|)``; ``(inf, 0.0)`` when ``w`` is all zeros.

    Examples
    --------
    >>> magnitude_range(np.array([[0.0, -3.0], [0.25, 1.0]]), engine="numpy")
    (0.25, 3.0)
    """
    check_engine(engine)
    if engine == "numba" and w.dtype in (np.float32, np.float64) and w.size:
        return _magnitude_range_numba(np.ascontiguousarray(w).reshape(-1))
    return _magnitude_range_numpy(w)


def plain_squares_exact(w2d: np.ndarray, tile_size: int, *, engine: str = "numba") -> bool:
    r"""Whether plain float64 sums of squares of tiles of ``tile_size`` entries of ``w2d`` are exact-range.

    *Exact-range* means that every nonzero square :math:`w^2` and every partial sum of squares is a
    normal, finite float64, so that each rounding is the ordinary relative one -- the sum is what a
    float64 with an unbounded exponent would give, and it equals :math:`F \cdot 2^E` of
    :func:`tile_scores` (the same additions, scaled by a power of two). With
    :math:`a = \min_{w \ne 0} |w|`, :math:`b = \max |w|`, :math:`n` = ``tile_size``:

    * **no underflow**: a sum of non-negative terms is at least its first nonzero term (exact zeros add
      nothing), so it suffices that :math:`a^2 \ge 2^{-1022}`, i.e. :math:`a \ge 2^{-511}`;
    * **no overflow**: every partial sum is at most :math:`n b^2 (1 + 2^{-53})^n < 2 n b^2` (for
      :math:`n < 2^{52}`), which is :math:`\le 2^{1023}` when :math:`2 e_b + \ell(n) \le 1022`, where
      :math:`b < 2^{e_b}` (``frexp``) and :math:`n < 2^{\ell(n)}` (``bit_length``) -- integer arithmetic,
      no rounding in the test itself.

    Float32 weights always pass without looking at the data: :math:`a \ge 2^{-149}` (the smallest
    subnormal float32) squares to :math:`2^{-298}`, far above :math:`2^{-1022}`, and :math:`b < 2^{128}`
    gives :math:`2 e_b \le 256`, far below 1022 for any tile that fits in memory. Float16 is narrower
    still. Float64 weights are checked with one pass over the data (:func:`magnitude_range`); any other
    dtype (e.g. ``longdouble``) takes the exact-range path.

    Examples
    --------
    >>> plain_squares_exact(np.ones((2, 2), dtype=np.float32), 4)
    True
    >>> plain_squares_exact(np.array([[1.0, 1e-200]]), 2), plain_squares_exact(np.array([[1e200]]), 1)
    (False, False)
    """
    if w2d.dtype in _ALWAYS_IN_RANGE:
        return True
    if w2d.dtype != np.float64:
        return False
    smallest, largest = magnitude_range(w2d, engine=engine)
    if largest == 0.0:
        return True                                     # all zeros: every sum is exactly 0
    return smallest >= _SQUARE_NORMAL_MIN and 2 * math.frexp(largest)[1] + int(tile_size).bit_length() <= 1022


def _tile_sq_norms_numpy(w2d: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """NumPy twin of :func:`_tile_sq_norms_numba`: the additions of :func:`_tile_scores_numpy`, unscaled."""
    values = w2d.astype(np.promote_types(w2d.dtype, np.float64))
    row_starts = np.arange(0, w2d.shape[0], bh)
    col_starts = np.arange(0, w2d.shape[1], bw)
    return np.add.reduceat(np.add.reduceat(values * values, row_starts, axis=0), col_starts, axis=1)


@njit(cache=True)
def _tile_sq_norms_numba(w2d, bh, bw):  # pragma: no cover - compiled
    """Sum of squares of every tile in one row-major streaming pass over ``w2d``.

    Walking the matrix row by row visits each tile's rows in order, and each row segment is summed by
    :func:`_row_sq_sum`: the additions of :func:`_one_tile_score`, so the sums equal its ``F * 2**E``
    bit for bit (see :func:`plain_squares_exact`). One-column tiles skip the lanes: a segment of one
    entry sums to ``v * v`` either way. Serial: a single memory-bound pass gains little from threads on a
    shared machine, and thread start-up costs more than the pass on small layers.
    """
    n_rows, n_cols = w2d.shape
    t_rows, t_cols = (n_rows + bh - 1) // bh, (n_cols + bw - 1) // bw
    sums = np.zeros((t_rows, t_cols), dtype=np.float64)
    for r in range(n_rows):
        ti = r // bh
        if bw == 1:
            # One-column tiles (shapes): a vectorisable row update instead of a loop of length 1 per tile.
            for c in range(n_cols):
                v = np.float64(w2d[r, c])
                sums[ti, c] += v * v
            continue
        for tj in range(t_cols):
            sums[ti, tj] += _row_sq_sum(w2d, r, tj * bw, min((tj + 1) * bw, n_cols))
    return sums


def tile_sq_norms(w2d: np.ndarray, bh: int, bw: int, *, engine: str = "numba") -> np.ndarray:
    r"""Plain float64 squared L2 norm of every ``bh x bw`` tile (edge tiles smaller): the fast path.

    .. math:: S_{ij} = \sum_{r \in \text{rows}(i)} \sum_{c \in \text{cols}(j)} W_{rc}^2

    accumulated in float64. Correct ranking scores only when :func:`plain_squares_exact` holds;
    :func:`group_scores` checks that and otherwise uses :func:`tile_scores`. Each engine adds in the same
    order as its :func:`tile_scores` twin, so on exact-range data ``S == ldexp(F, E)`` bit for bit.

    Parameters
    ----------
    w2d : ndarray, shape (F, K)
    bh, bw : int
        Tile height and width, ``>= 1``.
    engine : {"numba", "numpy"}
        The numba kernel (float32/float64 input; other dtypes use the NumPy twin) or the NumPy twin.

    Returns
    -------
    sums : ndarray of float64, shape (ceil(F / bh), ceil(K / bw))

    Examples
    --------
    >>> tile_sq_norms(np.arange(6.0).reshape(2, 3), 2, 2, engine="numpy")   # [[0,1],[3,4]] | [[2],[5]]
    array([[26., 29.]])
    """
    check_engine(engine)
    if engine == "numba" and w2d.dtype in (np.float32, np.float64) and w2d.size:
        return _tile_sq_norms_numba(np.ascontiguousarray(w2d), int(bh), int(bw))
    return _tile_sq_norms_numpy(w2d, int(bh), int(bw))


def group_scores(w2d: np.ndarray, bh: int, bw: int, *, engine: str = "numba"):
    """Tile scores for :func:`select_top_k`: plain sums when exact-range, else the exact-range pairs.

    Returns :func:`tile_sq_norms` (a float64 array) when :func:`plain_squares_exact` holds for the tile
    size, else :func:`tile_scores` (an ``(exponent, fraction)`` pair). On exact-range data the two
    represent the same numbers, so the masks selected from them are identical; the fast path only
    skips work.

    Examples
    --------
    >>> group_scores(np.array([[3.0, 4.0]]), 1, 2, engine="numpy")
    array([[25.]])
    >>> isinstance(group_scores(np.array([[1e200, 0.0]]), 1, 1, engine="numpy"), tuple)  # 1e200**2 = inf
    True
    """
    tile_size = min(bh, w2d.shape[0]) * min(bw, w2d.shape[1])
    if plain_squares_exact(w2d, tile_size, engine=engine):
        return tile_sq_norms(w2d, bh, bw, engine=engine)
    return tile_scores(w2d, bh, bw, engine=engine)


def expand_tiles(tile_mask: np.ndarray, shape: tuple[int, int], bh: int, bw: int) -> np.ndarray:
    """Blow a tile-grid array up to an element array of ``shape`` (edge tiles cropped).

    When the tiles divide ``shape`` this is one broadcast copy of ``tile_mask[:, None, :, None]``;
    otherwise two ``np.repeat`` calls and a crop.

    Examples
    --------
    >>> expand_tiles(np.array([[True, False]]), (2, 3), 2, 2).astype(int)
    array([[1, 1, 0],
           [1, 1, 0]])
    """
    t_rows, t_cols = tile_mask.shape
    if (t_rows * bh, t_cols * bw) == tuple(shape):
        blown_up = np.broadcast_to(tile_mask[:, None, :, None], (t_rows, bh, t_cols, bw))
        return blown_up.reshape(shape)                  # reshaping a broadcast view copies it once
    rows = np.repeat(tile_mask, bh, axis=0)[: shape[0]]
    return np.repeat(rows, bw, axis=1)[:, : shape[1]]


def _apply_tile_mask_numpy(w2d: np.ndarray, tiles: np.ndarray, bh: int, bw: int) -> np.ndarray:
    """NumPy twin of :func:`_apply_tile_mask_numba`: a broadcast ``np.where`` when the tiles divide."""
    t_rows, t_cols = tiles.shape
    zero = np.zeros((), dtype=w2d.dtype)
    if (t_rows * bh, t_cols * bw) == w2d.shape:
        w4 = w2d.reshape(t_rows, bh, t_cols, bw)
        return np.where(tiles[:, None, :, None], w4, zero).reshape(w2d.shape)
    return np.where(expand_tiles(tiles, w2d.shape, bh, bw), w2d, zero)


@njit(cache=True)
def _apply_tile_mask_numba(w2d, tiles, bh, bw):  # pragma: no cover - compiled
    """One streaming pass: copy the entries of kept tiles, write ``+0`` elsewhere (no element mask)."""
    n_rows, n_cols = w2d.shape
    out = np.empty_like(w2d)
    keep = np.empty(n_cols, dtype=np.bool_)     # the element mask of one row, rebuilt per tile row
    zero = w2d.dtype.type(0)
    for r in range(n_rows):
        if r % bh == 0:
            ti = r // bh
            for tj in range(tiles.shape[1]):
                keep[tj * bw : min((tj + 1) * bw, n_cols)] = tiles[ti, tj]
        for c in range(n_cols):                 # a branch-free select the compiler can vectorise
            out[r, c] = w2d[r, c] if keep[c] else zero
    return out


def apply_tile_mask(w2d: np.ndarray, tiles: np.ndarray, bh: int, bw: int, *, engine: str = "numba"
                    ) -> np.ndarray:
    """:func:`apply_mask` of ``expand_tiles(tiles, ...)``, without building the element mask.

    Parameters
    ----------
    w2d : ndarray, shape (F, K)
    tiles : ndarray of bool, shape (ceil(F / bh), ceil(K / bw))
    bh, bw : int
    engine : {"numba", "numpy"}
        A numba streaming kernel or a broadcast ``np.where``; identical results.

    Returns
    -------
    z : ndarray, shape and dtype of ``w2d``
        Entries of kept tiles copied bit for bit, all others exactly ``+0``.

    Examples
    --------
    >>> apply_tile_mask(np.array([[1.0, -2.0, 3.0]]), np.array([[False, True]]), 1, 2, engine="numpy")
    array([[0., 0., 3.]])
    """
    check_engine(engine)
    if engine == "numba" and w2d.dtype in (np.float32, np.float64) and w2d.size:
        tiles = np.ascontiguousarray(tiles)
        return _apply_tile_mask_numba(np.ascontiguousarray(w2d), tiles, int(bh), int(bw))
    return _apply_tile_mask_numpy(w2d, tiles, int(bh), int(bw))


def check_tile(value, name: str, limit: int, limit_name: str) -> int:
    """Return a tile or vector size as an int in ``[1, limit]``, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not 1 <= value <= limit:
        raise ValueError(f"{name} must lie in [1, {limit}] ({limit_name}), got {value}")
    return int(value)
