r"""Weight unification: blocks whose entries share one magnitude, and its special case, block pruning.

Micro-structured weight unification (Lin, Jiang et al., 2021) cuts the GEMM view of a layer into
``bh x bw`` blocks and constrains a chosen share of them to be *unified*: every entry of such a block has
the same magnitude ``c >= 0`` and keeps its own sign,

.. math:: z_k = \operatorname{sign}^+(v_k)\, c, \qquad \operatorname{sign}^+(x) = 1 \text{ if } x \ge 0
          \text{ else } -1 .

A unified block stores one number (plus signs) and its products need one multiplication; setting
``c = 0`` prunes the block, which is why pruning is the special case of unification.

Everything here is per block and exact:

* :func:`unification_costs` — for each block the best magnitude ``c = mean|v|``, the unification
  distortion ``d_b`` and the pruning cost ``e_b = ||v_b||^2``;
* :func:`unify_assignment` — what each block becomes (0 copied, 1 unified, 2 pruned);
* :func:`project_unified` — the Euclidean projection onto "U blocks unified" or "P blocks pruned and U
  other blocks unified";
* :func:`mask_unified` — the boolean mask of the entries that are copied unchanged.

The joint prune-or-unify choice is an assignment problem; :func:`unify_assignment` documents the exact
algorithm and its proof. Its sequential scan runs as a numba kernel (``engine="numba"``) or as its
pure-Python/NumPy twin (``engine="numpy"``); both give bit-identical results.

References
----------
.. [1] S. Lin, W. Jiang, W. Wang, K. Xu, Y. Wang, S. Liu, S. Li, "Efficient Micro-Structured Weight
   Unification and Pruning for Neural Network Compression", arXiv:2106.08301, 2021.
   :doi:`10.48550/arXiv.2106.08301`
"""

from __future__ import annotations

import heapq
import math

import numpy as np
from numba import njit

from refimpl._validation import as_weight, check_block_shape, check_probability, resolve_count
from refimpl.projections._select import (
    ZERO_EXPONENT,
    check_engine,
    expand_tiles,
    gemm_view,
    magnitude_range,
    top_k_mask,
    top_k_mask_lex,
)

__all__ = [
    "COPY",
    "PRUNE",
    "UNIFY",
    "mask_unified",
    "project_unified",
    "unification_costs",
    "unify_assignment",
]

#: Block kinds returned by :func:`unify_assignment`.
COPY, UNIFY, PRUNE = 0, 1, 2


# --------------------------------------------------------------------------------------------------
# Blocks of the GEMM view
# --------------------------------------------------------------------------------------------------
def unification_costs(w, block_shape, *, engine: str = "numba"
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Per-block optimal magnitude, unification distortion and pruning cost.

    For a block :math:`v \in \mathbb{R}^{n_b}` (its real entries; edge tiles have fewer), the nearest
    unified block :math:`z_k = \operatorname{sign}^+(v_k)\,c` with :math:`c \ge 0` solves

    .. math:: \min_{c \ge 0} \sum_k \bigl(v_k - \operatorname{sign}^+(v_k)\,c\bigr)^2
              = \min_{c \ge 0} \sum_k \bigl(|v_k| - c\bigr)^2 ,

    because :math:`v_k - \operatorname{sign}^+(v_k) c = \operatorname{sign}^+(v_k)(|v_k| - c)`. This is a
    one-dimensional least-squares fit of a constant, so :math:`c^\star = \overline{|v|}` (the mean of the
    magnitudes, which is :math:`\ge 0`, so the constraint is inactive), and

    .. math:: d_b = \sum_k \bigl(|v_k| - \overline{|v|}\bigr)^2, \qquad
              e_b = \|v_b\|_2^2 = d_b + n_b\,\overline{|v|}^2 \ \ge d_b ,

    where :math:`e_b` is the cost of pruning the block (:math:`c = 0`). Keeping the signs is optimal
    too: flipping an entry's sign can only move it further from :math:`v_k`. A zero entry takes sign +
    (any sign gives the same distortion).

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (OUT, IN)
        The weight; its GEMM view ``w.reshape(F, -1)`` is tiled.
    block_shape : (int, int)
        ``(bh, bw)``; edge tiles may be smaller.
    engine : {"numba", "numpy"}
        The numba kernel (float32/float64 input) or its NumPy twin; bit-identical results.

    Returns
    -------
    magnitude : ndarray, shape (ceil(rows/bh), ceil(cols/bw))
        :math:`c^\star_b = \overline{|v_b|}`. All three arrays are float64 (or a wider input dtype).
    distortion : ndarray, same shape
        :math:`d_b`, the squared error of unifying the block.
    energy : ndarray, same shape
        :math:`e_b = \|v_b\|^2`, the squared error of pruning it.

    Notes
    -----
    Float64 weights with entries beyond :math:`\sim 10^{\pm 154}` have costs that float64 cannot hold
    (``inf`` or 0 here). The projection itself never uses these numbers: it ranks blocks by the same
    costs carried as exact-range pairs (each block scaled by a power of two first), see
    :func:`_costs_in_range`.

    Examples
    --------
    >>> c, d, e = unification_costs(np.array([[3.0, -1.0], [0.0, 2.0]]), (1, 2))
    >>> c.ravel(), d.ravel(), e.ravel()
    (array([2., 1.]), array([2., 2.]), array([10.,  4.]))
    """
    w = as_weight(w)
    w2d = gemm_view(w)
    bh, bw = check_block_shape(block_shape, w2d.shape)
    magnitude, distortion, energy, exp2 = _costs(w2d, bh, bw, check_engine(engine))
    if exp2 is not None:  # exact-range path: the true costs (inf or 0 where float64 cannot hold them)
        with np.errstate(over="ignore", under="ignore"):
            distortion, energy = np.ldexp(distortion, exp2), np.ldexp(energy, exp2)
    return magnitude, distortion, energy


# Squared costs can overflow (|v| > ~1.3e154) or underflow (|v| < ~1.5e-162) in float64 and then create
# false ties or inf - inf = NaN premiums, exactly like the group scores of _select.tile_scores. Plain
# float64 costs are used whenever that cannot happen (always for float32 weights); otherwise every block
# is computed on its entries scaled by 2**-p (p the exponent of its largest |v|), and its costs are
# carried as exact-range pairs cost' * 2**(2p).


def _costs_in_range(w2d: np.ndarray, tile_size: int, engine: str) -> bool:
    r"""Whether the plain float64 costs of ``w2d`` are exact-range (else the exact-range path is taken).

    Plain costs are exact-range -- every nonzero square and partial sum a normal, finite float64 -- when,
    with :math:`a = \min_{w \ne 0}|w|`, :math:`b = \max|w|`, :math:`n_b` the block size and :math:`N`
    the number of entries (the joint assignment adds costs of all blocks):

    * :math:`a \ge n_b 2^{-458}`: a nonzero deviation :math:`|v| - c` of two float64 numbers is at least
      one ulp of the smaller, :math:`\ge \min(a, a / n_b)\, 2^{-53}` (the mean :math:`c \ge a / n_b`),
      so its square is :math:`\ge 2^{-1022}`; the energies' squares :math:`a^2` are larger still;
    * :math:`2 e_b + \ell(N) \le 1022` (:math:`b < 2^{e_b}`, :math:`N < 2^{\ell(N)}`): every sum of
      costs stays below :math:`2^{1023}`, as in :func:`~refimpl.projections._select.plain_squares_exact`.

    Float32 and float16 weights always qualify (:math:`a \ge 2^{-149}`, :math:`b < 2^{128}`), without
    looking at the data; other dtypes than float16/32/64 take the exact-range path.
    """
    if w2d.dtype in (np.float16, np.float32):
        return True
    if w2d.dtype != np.float64:
        return False
    smallest, largest = magnitude_range(w2d, engine=engine)
    if largest == 0.0:
        return True
    return (smallest >= math.ldexp(tile_size, -458)
            and 2 * math.frexp(largest)[1] + int(w2d.size).bit_length() <= 1022)


def _costs(w2d: np.ndarray, bh: int, bw: int, engine: str = "numba"):
    """Per-block ``(magnitude, distortion', energy', exp2)``; see :func:`unification_costs`.

    On the fast path ``exp2`` is ``None`` and the costs are the plain float64 costs. On the exact-range
    path the true costs are ``cost' * 2**exp2`` per block (``exp2 = 2p``), computed on entries scaled by
    ``2**-p``; the magnitude is always the true one.
    """
    plain = _costs_in_range(w2d, min(bh, w2d.shape[0]) * min(bw, w2d.shape[1]), engine)
    if engine == "numba" and w2d.dtype in (np.float32, np.float64):
        magnitude, distortion, energy, peak_exp = _costs_numba(np.ascontiguousarray(w2d), bh, bw, not plain)
    else:
        magnitude, distortion, energy, peak_exp = _costs_numpy(w2d, bh, bw, not plain)
    return magnitude, distortion, energy, (None if plain else 2 * peak_exp)


def _costs_numpy(w2d: np.ndarray, bh: int, bw: int, exact: bool = False):
    """NumPy twin of :func:`_costs_numba`, vectorised over blocks.

    The loop runs over the ``bh*bw`` positions *inside* a block (never over blocks), adding in the
    kernel's order (row-major within the block) so that both engines return bit-identical costs. Edge
    tiles are padded: with 0 for the sums (adding 0.0 is exact) and with NaN for the min/max
    (``fmin``/``fmax`` skip NaN); padded positions add nothing to the distortion. With ``exact`` each
    block is first scaled by ``2**-p`` (``p`` the exponent of its largest ``|v|``).
    """
    rows, cols = w2d.shape
    nbr, nbc = -(-rows // bh), -(-cols // bw)
    # Costs are accumulated in float64 (or wider) so float32 weights are ranked as accurately as they allow.
    acc = np.promote_types(w2d.dtype, np.float64)
    mags = np.full((nbr * bh, nbc * bw), np.nan, dtype=acc)
    mags[:rows, :cols] = np.abs(w2d)
    tiles = mags.reshape(nbr, bh, nbc, bw)
    peak_exp = np.zeros((nbr, nbc), dtype=np.int64)
    if exact:
        peak_exp = np.frexp(np.nanmax(tiles, axis=(1, 3)))[1].astype(np.int64)
        tiles = np.ldexp(tiles, -peak_exp[:, None, :, None])
    real = np.isfinite(tiles)
    zeroed = np.where(real, tiles, 0)
    n_b = real.sum(axis=(1, 3)).astype(acc)
    s1, energy = np.zeros((nbr, nbc), acc), np.zeros((nbr, nbc), acc)
    largest, smallest = np.full((nbr, nbc), -np.inf, acc), np.full((nbr, nbc), np.inf, acc)
    for i in range(bh):
        for j in range(bw):
            a = zeroed[:, i, :, j]
            s1 += a
            energy += a * a
            np.fmax(largest, tiles[:, i, :, j], out=largest)
            np.fmin(smallest, tiles[:, i, :, j], out=smallest)
    magnitude = s1 / n_b
    # A block that is already unified gets its common magnitude back exactly (the rounded mean may be
    # off in the last bit), so a point of the set is returned unchanged, bit for bit.
    uniform = largest == smallest
    magnitude[uniform] = largest[uniform]
    # The distortion is summed directly (not as e - n*c^2) to avoid cancellation when d << e.
    distortion = np.zeros((nbr, nbc), acc)
    for i in range(bh):
        for j in range(bw):
            dev = zeroed[:, i, :, j] - magnitude
            distortion += np.where(real[:, i, :, j], dev * dev, 0)
    if exact:
        magnitude = np.ldexp(magnitude, peak_exp)
    return magnitude, distortion, energy, peak_exp


@njit(cache=True)
def _costs_numba(w2d, bh, bw, exact):  # pragma: no cover - compiled; tested against its twin
    """Per-block ``(magnitude, distortion', energy', p)``, two passes over each block.

    Serial: on a (512, 512, 3, 3) weight the prange version took 16-24 ms against 5 ms serial on the
    shared 2-core machine (threads compete with everything else; the pass is memory-bound).

    Pass 1 accumulates ``sum|v|``, ``sum v^2``, ``max|v|`` and ``min|v|``; pass 2 the distortion
    around the mean. Within a block the entries are visited row-major, the order of the NumPy twin, so
    the two agree bit for bit. With ``exact`` (the exact-range path) a pass 0 finds the block's largest
    ``|v|``, whose exponent ``p`` scales every entry by ``2**-p`` first; the magnitude is scaled back
    exactly and the costs are returned scaled (the true cost is ``cost' * 2**(2p)``). Without it
    ``p = 0``.
    """
    rows, cols = w2d.shape
    nbr = (rows + bh - 1) // bh
    nbc = (cols + bw - 1) // bw
    magnitude = np.empty((nbr, nbc))
    distortion = np.empty((nbr, nbc))
    energy = np.empty((nbr, nbc))
    peak_exp = np.zeros((nbr, nbc), dtype=np.int64)
    for bi in range(nbr):
        r0 = bi * bh
        r1 = min(r0 + bh, rows)
        for bj in range(nbc):
            c0 = bj * bw
            c1 = min(c0 + bw, cols)
            p = 0
            if exact:
                peak = 0.0
                for r in range(r0, r1):
                    for c in range(c0, c1):
                        peak = max(peak, abs(np.float64(w2d[r, c])))
                p = math.frexp(peak)[1]
            s1 = 0.0
            s2 = 0.0
            largest = -np.inf
            smallest = np.inf
            for r in range(r0, r1):
                for c in range(c0, c1):
                    a = abs(np.float64(w2d[r, c]))
                    if exact:
                        a = math.ldexp(a, -p)
                    s1 += a
                    s2 += a * a
                    largest = max(largest, a)
                    smallest = min(smallest, a)
            if largest == smallest:
                m = largest
            else:
                m = s1 / ((r1 - r0) * (c1 - c0))
            d = 0.0
            for r in range(r0, r1):
                for c in range(c0, c1):
                    a = abs(np.float64(w2d[r, c]))
                    if exact:
                        a = math.ldexp(a, -p)
                    dev = a - m
                    d += dev * dev
            if exact:
                m = math.ldexp(m, p)
            magnitude[bi, bj] = m
            distortion[bi, bj] = d
            energy[bi, bj] = s2
            peak_exp[bi, bj] = p
    return magnitude, distortion, energy, peak_exp


# --------------------------------------------------------------------------------------------------
# Counts
# --------------------------------------------------------------------------------------------------
def _resolve_counts(n: int, sparsity, keep, unify, prune) -> tuple[int, int]:
    """Return ``(n_pruned, n_unified)`` from the documented count arguments."""
    given = [name for name, value in (("sparsity", sparsity), ("keep", keep), ("unify", unify))
             if value is not None]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of sparsity=, keep= or unify= (the unified share or the copied count), got "
            f"sparsity={sparsity!r}, keep={keep!r}, unify={unify!r}"
        )
    n_pruned = 0
    if prune is not None:
        n_pruned = round(check_probability(prune, "prune") * n)
    if keep is not None:
        n_copied = resolve_count(n, keep=keep)
        n_unified = n - n_copied - n_pruned
        if n_unified < 0:
            raise ValueError(
                f"keep={keep} copied blocks plus round(prune*n)={n_pruned} pruned blocks exceed the "
                f"{n} blocks"
            )
        return n_pruned, n_unified
    share = sparsity if sparsity is not None else unify
    n_unified = n - resolve_count(n, sparsity=share)
    if n_pruned + n_unified > n:
        raise ValueError(
            f"prune={prune} and unify/sparsity={share} ask for {n_pruned} pruned plus {n_unified} "
            f"unified blocks, more than the {n} blocks"
        )
    return n_pruned, n_unified


# --------------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------------
def _exact_pairs(cost: np.ndarray, exp2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised ``(exponent, fraction)`` of the costs ``cost * 2**exp2`` (exact-range, as tile_scores)."""
    fraction, exponent = np.frexp(cost)
    exponent = exponent.astype(np.int64) + exp2
    exponent[fraction == 0] = ZERO_EXPONENT
    return exponent, fraction


def _cheapest(cost: np.ndarray, count: int, candidates: np.ndarray | None = None,
              exp2: np.ndarray | None = None) -> np.ndarray:
    """Flat indices of the ``count`` blocks of smallest ``cost`` (among ``candidates``, default all).

    The complement of :func:`~refimpl.projections._select.top_k_mask` (the blocks *kept*), so the tie
    rule is the library's: among equal costs the lower flat index is kept (copied) and the higher one is
    modified. With ``exp2`` the costs are ``cost * 2**exp2`` and are compared as exact-range pairs.
    """
    idx = np.arange(cost.size) if candidates is None else np.sort(candidates)
    if exp2 is None:
        kept = top_k_mask(cost[idx], idx.size - count)
    else:
        kept = top_k_mask_lex(*_exact_pairs(cost[idx], exp2[idx]), idx.size - count)
    return idx[~kept]


def _running_k_smallest_sum_numpy(x: np.ndarray, k: int) -> np.ndarray:
    """``out[t]`` = sum of the ``k`` smallest of ``x[:t]`` (``inf`` while ``t < k``), for t = 0..n.

    A max-heap holds the ``k`` smallest seen so far; a new value replaces the heap's maximum when it is
    smaller. This is the inherently sequential step of the joint assignment; it is the twin of
    :func:`_running_k_smallest_sum_numba` and performs the same floating-point operations in the same
    order, so both engines agree bit for bit.
    """
    n = x.shape[0]
    out = np.full(n + 1, np.inf)
    if k == 0:
        out[:] = 0.0
        return out
    heap: list[float] = []  # negated values: heapq is a min-heap
    total = 0.0
    for t in range(n):
        value = float(x[t])
        if len(heap) < k:
            heapq.heappush(heap, -value)
            total += value
        elif value < -heap[0]:
            largest = -heapq.heapreplace(heap, -value)
            total += value - largest
        if len(heap) == k:
            out[t + 1] = total
    return out


@njit(cache=True)
def _running_k_smallest_sum_numba(x, k):  # pragma: no cover - compiled; twin tested under both engines
    """Numba twin of :func:`_running_k_smallest_sum_numpy` (an explicit array max-heap)."""
    n = x.shape[0]
    out = np.full(n + 1, np.inf)
    if k == 0:
        out[:] = 0.0
        return out
    heap = np.empty(k)
    size = 0
    total = 0.0
    for t in range(n):
        value = float(x[t])
        if size < k:
            # push, sift up
            i = size
            heap[i] = value
            size += 1
            while i > 0:
                parent = (i - 1) // 2
                if heap[parent] >= heap[i]:
                    break
                heap[parent], heap[i] = heap[i], heap[parent]
                i = parent
            total += value
        elif value < heap[0]:
            largest = heap[0]
            heap[0] = value
            i = 0
            while True:  # sift down
                left = 2 * i + 1
                if left >= size:
                    break
                child = left
                if left + 1 < size and heap[left + 1] > heap[left]:
                    child = left + 1
                if heap[i] >= heap[child]:
                    break
                heap[i], heap[child] = heap[child], heap[i]
                i = child
            total += value - largest
        if size == k:
            out[t + 1] = total
    return out


def _running_k_smallest_sum(x: np.ndarray, k: int, engine: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    if engine == "numba":
        return _running_k_smallest_sum_numba(x, k)
    return _running_k_smallest_sum_numpy(x, k)


def _premium_order(premium: np.ndarray) -> np.ndarray:
    """Return the indices sorting ``premium`` ascending, equal premiums by descending index.

    The order of ``np.lexsort((-np.arange(n), premium))``, at about half its cost: an unstable
    ``argsort``, after which only the entries of runs of equal premiums (rare outside constructed
    data) are re-sorted by descending index.
    """
    order = np.argsort(premium)
    ranked = premium[order]
    tied = np.flatnonzero(ranked[1:] == ranked[:-1])
    if tied.size:
        members = np.union1d(tied, tied + 1)           # positions inside a run of equal premiums
        sub = order[members]
        # ranked[members] is ascending, so sorting by it keeps every run in place; -sub orders within.
        order[members] = sub[np.lexsort((-sub, ranked[members]))]
    return order


def _assign(distortion: np.ndarray, energy: np.ndarray, exp2: np.ndarray | None, n_pruned: int,
            n_unified: int, engine: str) -> np.ndarray:
    """Exact block kinds (flat, int8) for exactly ``n_pruned`` pruned and ``n_unified`` unified blocks.

    ``distortion``, ``energy`` and ``exp2`` as returned by :func:`_costs` (``exp2`` None: plain costs).
    """
    d, e = distortion.ravel(), energy.ravel()
    exp2 = None if exp2 is None else exp2.ravel()
    n = d.size
    kinds = np.zeros(n, dtype=np.int8)
    if n_pruned == 0:
        kinds[_cheapest(d, n_unified, exp2=exp2)] = UNIFY
        return kinds
    if n_unified == 0:
        kinds[_cheapest(e, n_pruned, exp2=exp2)] = PRUNE
        return kinds
    # Sort by the pruning premium delta = e - d; by the exchange lemma an optimal solution prunes only
    # blocks before some split t in this order and unifies only blocks after it. Equal premiums put the
    # higher flat index first, so of two interchangeable blocks the lower index is unified, not pruned.
    premium = e - d                 # per block, in the block's own scale on the exact-range path
    if exp2 is None:
        order = _premium_order(premium)
        e_sum, d_sum = e, d
    else:
        premium_exp, premium_frac = _exact_pairs(premium, exp2)
        order = np.lexsort((-np.arange(n), premium_frac, premium_exp))
        # The split is chosen on float64 totals, as on the fast path: the costs in one common scale
        # (the largest block's), where no sum can overflow; a cost below 2**-1074 of the largest one
        # is beyond the resolution of any total containing it and reads as 0. The choice within each
        # side of the split (below) uses the exact-range pairs.
        common = exp2 - exp2.max()
        e_sum, d_sum = np.ldexp(e, common), np.ldexp(d, common)
    prefix = _running_k_smallest_sum(e_sum[order], n_pruned, engine)  # best P prunes among order[:t]
    suffix = _running_k_smallest_sum(d_sum[order][::-1], n_unified, engine)[::-1]  # best U in order[t:]
    t_best = int(np.argmin(prefix + suffix))  # the first split of least total cost
    pruned = _cheapest(e, n_pruned, order[:t_best], exp2)
    unified = _cheapest(d, n_unified, order[t_best:], exp2)
    kinds[pruned] = PRUNE
    kinds[unified] = UNIFY
    return kinds


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------
def unify_assignment(w, block_shape, sparsity=None, keep=None, *, unify=None, prune=None,
                     engine: str = "numba") -> np.ndarray:
    r"""Return what each block becomes under :func:`project_unified`: 0 copied, 1 unified, 2 pruned.

    Counts. With ``n`` blocks, the number of unified blocks is given by exactly one of

    * ``sparsity=s`` or, synonymously, ``unify=s``: the *share* of blocks unified,
      ``U = round(s*n)`` with round-half-to-even (a unified block loses its freedom as a pruned one
      does, hence "sparsity");
    * ``keep=k``: the number of blocks copied unchanged, so ``U = n - k - P``.

    ``prune=p`` (default none) additionally prunes ``P = round(p*n)`` blocks; ``P + U <= n`` is required.
    The assignment has *exactly* ``P`` pruned and ``U`` unified blocks: since every cost is
    :math:`\ge 0` = the cost of copying, "at least" and "exactly" have the same optimum.

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (OUT, IN)
    block_shape : (int, int)
        ``(bh, bw)`` tiles of the GEMM view; edge tiles may be smaller.
    sparsity, keep, unify : float, int, float
        Exactly one: the unified share, the copied count, or the unified share.
    prune : float in [0, 1], optional
        Share of blocks pruned.
    engine : {"numba", "numpy"}
        Engine of the per-block costs and of the sequential scan in the joint case (identical results).

    Returns
    -------
    kinds : ndarray of int8, shape (ceil(rows/bh), ceil(cols/bw))
        :data:`COPY` (0), :data:`UNIFY` (1) or :data:`PRUNE` (2) per block.

    Notes
    -----
    Per block the three choices cost (see :func:`unification_costs`)

    .. math:: \text{copy: } 0, \qquad \text{unify: } d_b, \qquad \text{prune: } e_b = d_b + \delta_b,
              \quad \delta_b = n_b\,\overline{|v_b|}^2 \ge 0 .

    The distances add up over disjoint blocks, so the projection is the assignment

    .. math:: \min_{A \cap B = \emptyset,\ |A| = P,\ |B| = U}\ \sum_{b \in A} e_b + \sum_{b \in B} d_b .

    *Unify only* (``P = 0``): unify the ``U`` blocks of smallest :math:`d_b`. *Prune only*
    (``U = 0``): prune the ``P`` blocks of smallest :math:`e_b` (largest-L2-norm blocks survive, the
    block projection). Both are the usual "drop the cheapest groups" argument.

    *Joint* (the exact rule chosen). **Exchange lemma:** order the blocks by the pruning premium
    :math:`\delta_b = e_b - d_b` (ties: higher flat index first). Some optimal solution prunes only
    blocks that come before every unified block. Proof: if :math:`x \in A`, :math:`y \in B` with
    :math:`\delta_x > \delta_y`, swapping them (unify x, prune y) changes the cost by
    :math:`(d_x + e_y) - (e_x + d_y) = \delta_y - \delta_x < 0`; equal premiums swap at no cost. Hence
    for some split :math:`t`, :math:`A` lies in the first :math:`t` blocks of the order and :math:`B`
    in the rest, and then each is simply the cheapest choice on its side:

    .. math:: \mathrm{OPT} = \min_{t}\ \Bigl[\,\text{sum of the } P \text{ smallest } e
              \text{ among the first } t\Bigr] + \Bigl[\,\text{sum of the } U \text{ smallest } d
              \text{ among the rest}\Bigr].

    Both brackets, for all :math:`t` at once, are running sums of the k smallest values, maintained with
    a max-heap in one pass each: :math:`O(n \log n)` in total. Note that the greedy rules "prune the
    cheapest first, then unify" or the reverse are *not* optimal (the tests hold a counterexample).
    Ties **(choice)**: the first split of least cost; within a side, among equal costs the block with
    the higher flat index is modified (the lower index is kept), as everywhere in refimpl; and since
    equal premiums are ordered higher index first, of two identical blocks the lower index is the one
    unified rather than pruned (gentler treatment for the lower index: copy, then unify, then prune).

    Examples
    --------
    >>> w = np.array([[1.0, 1.0, 5.0, 1.0, 0.1, 0.2]])
    >>> unify_assignment(w, (1, 2), unify=1/3, prune=1/3)   # unify [1, 1], prune [0.1, 0.2]
    array([[1, 0, 2]], dtype=int8)
    """
    w = as_weight(w)
    w2d = gemm_view(w)
    bh, bw = check_block_shape(block_shape, w2d.shape)
    engine = check_engine(engine)
    _, distortion, energy, exp2 = _costs(w2d, bh, bw, engine)
    n_pruned, n_unified = _resolve_counts(distortion.size, sparsity, keep, unify, prune)
    return _assign(distortion, energy, exp2, n_pruned, n_unified, engine).reshape(distortion.shape)


def project_unified(w, block_shape, sparsity=None, keep=None, *, unify=None, prune=None,
                    engine: str = "numba") -> np.ndarray:
    r"""Euclidean projection onto "``U`` blocks unified (and ``P`` other blocks pruned)".

    .. math:: \Pi(W) = \operatorname*{arg\,min}_{Z \in S} \|W - Z\|_F^2, \qquad
              S = \{Z : \text{at least } P \text{ blocks of } Z \text{ are } 0 \text{ and at least } U
              \text{ other blocks are unified}\}

    where a block is unified when all its entries have one magnitude. A unified block of the result is
    :math:`\operatorname{sign}^+(v_k)\,\overline{|v_b|}`, a pruned block is exactly 0, every other block
    is copied unchanged. Which blocks become what is :func:`unify_assignment` (see its Notes for the
    counts, the proof of exactness and the tie rule).

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (OUT, IN)
        Not modified; read-only and non-contiguous arrays work.
    block_shape : (int, int)
        ``(bh, bw)`` tiles of the GEMM view ``w.reshape(F, -1)``; edge tiles may be smaller.
    sparsity, keep, unify, prune, engine
        As in :func:`unify_assignment`.

    Returns
    -------
    z : ndarray, same shape and dtype as ``w``

    Raises
    ------
    ValueError
        NaN/inf in ``w``, wrong ndim, ``block_shape`` out of range, counts out of range or not exactly
        one of ``sparsity``/``keep``/``unify``, unknown ``engine``.

    Notes
    -----
    The plain, sorting-based definition is :func:`refimpl.projections.reference.reference_unified`
    (every split of the premium order tried); this function is tested equal to it
    (``tests/test_projections_reference.py``).

    Examples
    --------
    >>> w = np.array([[3.0, -1.0, 0.5, 0.25]])
    >>> project_unified(w, (1, 2), sparsity=0.5)       # unify the block [0.5, 0.25] (d = 0.03125)
    array([[ 3.   , -1.   ,  0.375,  0.375]])
    >>> project_unified(w, (1, 2), unify=0.5, prune=0.5)
    array([[ 2., -2.,  0.,  0.]])
    """
    w = as_weight(w)
    w2d = gemm_view(w)
    bh, bw = check_block_shape(block_shape, w2d.shape)
    engine = check_engine(engine)
    magnitude, distortion, energy, exp2 = _costs(w2d, bh, bw, engine)
    n_pruned, n_unified = _resolve_counts(distortion.size, sparsity, keep, unify, prune)
    kinds = _assign(distortion, energy, exp2, n_pruned, n_unified, engine).reshape(distortion.shape)
    # The new magnitude per block: c* for unified blocks, 0 for pruned ones (unused for copied ones).
    scale = np.where(kinds == UNIFY, magnitude, 0).astype(w.dtype)
    if engine == "numba" and w.dtype in (np.float32, np.float64):
        z = _assemble_numba(np.ascontiguousarray(w2d), kinds, scale, bh, bw)
    else:
        z = _assemble_numpy(w2d, kinds, scale, bh, bw)
    return z.reshape(w.shape)


def _assemble_numpy(w2d, kinds, scale, bh, bw):
    """Build the projection: copies of ``w2d``, unified ``sign+(v) * scale``, pruned +0.0 (NumPy twin)."""
    kind = expand_tiles(kinds, w2d.shape, bh, bw)
    c = expand_tiles(scale, w2d.shape, bh, bw)
    unified = np.where(w2d >= 0, c, -c)  # sign+: a zero entry takes +
    # a pruned entry is +0.0 (docs/ALGORITHMS.md: dropped entries are +0.0), not -scale = -0.0
    return np.where(kind == COPY, w2d, np.where(kind == PRUNE, np.zeros((), w2d.dtype), unified))


@njit(cache=True)
def _assemble_numba(w2d, kinds, scale, bh, bw):  # pragma: no cover - compiled
    """One serial pass building the projection (twin of :func:`_assemble_numpy`; serial, as _costs_numba)."""
    rows, cols = w2d.shape
    nbc = kinds.shape[1]
    z = np.empty_like(w2d)
    for r in range(rows):
        bi = r // bh
        for bj in range(nbc):
            c0 = bj * bw
            c1 = min(c0 + bw, cols)
            if kinds[bi, bj] == COPY:
                z[r, c0:c1] = w2d[r, c0:c1]
            elif kinds[bi, bj] == PRUNE:  # +0.0, whatever the sign of the entry
                z[r, c0:c1] = 0
            else:
                s = scale[bi, bj]
                for c in range(c0, c1):
                    z[r, c] = s if w2d[r, c] >= 0 else -s
    return z


def mask_unified(w, block_shape, sparsity=None, keep=None, *, unify=None, prune=None,
                 engine: str = "numba") -> np.ndarray:
    """Boolean mask, shape of ``w``: ``True`` where :func:`project_unified` copies the entry unchanged.

    ``False`` marks the entries of unified and pruned blocks (use :func:`unify_assignment` to tell the
    two apart). Arguments as in :func:`project_unified`.

    Examples
    --------
    >>> mask_unified(np.array([[3.0, -1.0, 0.5, 0.25]]), (1, 2), sparsity=0.5)
    array([[ True,  True, False, False]])
    """
    w = as_weight(w)
    w2d = gemm_view(w)
    bh, bw = check_block_shape(block_shape, w2d.shape)
    kinds = unify_assignment(w, block_shape, sparsity, keep, unify=unify, prune=prune, engine=engine)
    return (expand_tiles(kinds, w2d.shape, bh, bw) == COPY).reshape(w.shape)
