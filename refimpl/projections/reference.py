r"""Plain projections: the few-line, sorting-based definition of every structure.

Each function here is what a student would write first, and what the tuned functions of
:mod:`refimpl.projections` are tested equal to (``tests/test_projections_reference.py``); it is also the
oracle of :func:`refimpl.testing.check_projection`. Every projection is two steps:

1. **score** the groups: the squared L2 norm of every group (``|v|`` for single entries), in float64,
   summed in C order over the group's entries (:func:`group_scores`);
2. **keep** the ``k`` best: sort by *score descending, then index ascending* and take the first ``k``
   (:func:`top_k`). A stable sort of the negated scores is exactly that order, so the tie rule --
   *among equal scores the lower flat index is kept* -- is the sort itself.

The count is the rule of ``torch.nn.utils.prune``: ``sparsity=s`` prunes ``round(s·n)`` of ``n`` groups,
round-half-to-even (:func:`keep_count`; ``round(2.5) = 2``, ``round(3.5) = 4``), or ``keep=k`` keeps ``k``.
Kept entries are copied unchanged, dropped ones are exactly ``+0``; the dtype is kept. The rules are
written out in ``docs/ALGORITHMS.md`` (section 2).

Why these are the Euclidean projections (for disjoint groups, a kept group is copied, so
:math:`\|W - Z\|^2 = \sum_{g\ \text{dropped}} \|W_g\|^2`, smallest when the dropped groups have the
smallest norms) is in each fast function's docstring. The fast functions differ only in *how* they compute
the same answer: an :math:`O(n)` partition instead of a sort, numba kernels, and exact-range pairs for
float64 weights so large or small that their squares would overflow or underflow. The plain functions
square in float64 directly, so they agree with the fast ones for every float32 weight and every float64
weight within about :math:`10^{\pm 150}`.

Performance is not a goal here (Python loops over vectors and blocks); use them on small weights.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

import numpy as np

from refimpl._validation import as_float_array, as_weight, check_block_shape, check_probability

__all__ = [
    "GROUP_STRUCTURES",
    "group_ids",
    "group_scores",
    "keep_count",
    "reference_balanced",
    "reference_blocks",
    "reference_channels",
    "reference_filters",
    "reference_kernels",
    "reference_nm",
    "reference_shapes",
    "reference_unified",
    "reference_unstructured",
    "reference_unstructured_global",
    "reference_vector_block",
    "REFERENCES",
    "top_k",
]

#: Structures whose projection drops whole disjoint groups (the ones :func:`group_ids` knows).
GROUP_STRUCTURES = ("unstructured", "filters", "channels", "shapes", "kernels", "blocks")


# --------------------------------------------------------------------------------------------------
# The two rules every projection shares: the count and the tie order
# --------------------------------------------------------------------------------------------------


def keep_count(n: int, sparsity=None, keep=None) -> int:
    """Return the groups kept out of ``n``: ``n - round(sparsity * n)`` (round-half-to-even) or ``keep``.

    Examples
    --------
    >>> keep_count(5, sparsity=0.5), keep_count(7, sparsity=0.5), keep_count(4, keep=1)
    (3, 3, 1)
    """
    if (sparsity is None) == (keep is None):
        raise ValueError(f"give exactly one of sparsity= or keep=, got sparsity={sparsity!r}, keep={keep!r}")
    if sparsity is not None:
        return n - round(check_probability(sparsity, "sparsity") * n)
    if isinstance(keep, bool) or not isinstance(keep, numbers.Integral):
        raise TypeError(f"keep must be an integer, got {keep!r}")
    if not 0 <= keep <= n:
        raise ValueError(f"keep must lie in [0, {n}] (the number of groups), got {keep}")
    return int(keep)


def top_k(scores, k: int) -> np.ndarray:
    """Return the indices of the ``k`` best ``scores``: score descending, then index ascending (ties).

    Examples
    --------
    >>> top_k(np.array([1.0, 3.0, 2.0, 3.0, 2.0]), 3)      # both 3s, then the first 2
    array([1, 3, 2])
    """
    return np.argsort(-np.asarray(scores), kind="stable")[:k]


def _keep_mask(scores, k: int) -> np.ndarray:
    """Boolean mask over ``scores`` of :func:`top_k`."""
    mask = np.zeros(len(scores), dtype=bool)
    mask[top_k(scores, k)] = True
    return mask


def _masked(w: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``w`` where ``mask``, exactly ``+0`` elsewhere, in ``w``'s dtype (a new array)."""
    return np.where(mask, w, w.dtype.type(0))


# --------------------------------------------------------------------------------------------------
# Groups of the GEMM view W.reshape(F, C*KH*KW)
# --------------------------------------------------------------------------------------------------


def group_ids(structure: str, shape: tuple[int, ...], block_shape=None) -> np.ndarray:
    """Group index of every entry of the GEMM view ``(F, K)`` of a weight of ``shape``.

    Groups are numbered in the order the tie rule uses: filters ``f``; channels ``c``; shapes (GEMM
    columns) ``(c*KH + kh)*KW + kw``; kernels ``f*C + c``; blocks row-major over the block grid
    (``ceil(F/bh) x ceil(K/bw)``, edge blocks smaller); unstructured: the flat index. A linear weight
    ``(out, in)`` is its own GEMM view with ``1 x 1`` kernels (a channel is an input column).

    Examples
    --------
    >>> group_ids("blocks", (2, 3), block_shape=(1, 2))
    array([[0, 0, 1],
           [2, 2, 3]])
    """
    f, k = shape[0], math.prod(shape[1:])
    kernel = math.prod(shape[2:])  # KH*KW; 1 for a linear weight
    rows, cols = np.indices((f, k))
    if structure == "unstructured":
        return rows * k + cols
    if structure == "filters":
        return rows
    if structure == "channels":
        return cols // kernel
    if structure == "shapes":
        return cols
    if structure == "kernels":
        return rows * (k // kernel) + cols // kernel
    if structure == "blocks":
        bh, bw = check_block_shape(block_shape, (f, k))
        return (rows // bh) * -(-k // bw) + cols // bw
    raise ValueError(f"structure must be one of {GROUP_STRUCTURES}, got {structure!r}")


def group_scores(w: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Squared L2 norm of every group, in float64 (``ids`` from :func:`group_ids`)."""
    squares = np.square(w.reshape(ids.shape).astype(np.float64))
    return np.bincount(ids.ravel(), weights=squares.ravel(), minlength=int(ids.max()) + 1)


def _project_groups(w, structure: str, sparsity, keep, block_shape=None) -> np.ndarray:
    """Keep the ``k`` groups of largest L2 norm; the body of every group projection below."""
    w = as_weight(w)
    ids = group_ids(structure, w.shape, block_shape)
    scores = group_scores(w, ids)
    kept = _keep_mask(scores, keep_count(scores.size, sparsity, keep))
    return _masked(w.reshape(ids.shape), kept[ids]).reshape(w.shape)


def reference_unstructured(w, sparsity=None, keep=None) -> np.ndarray:
    """Plain :func:`~refimpl.projections.project_unstructured`: keep the ``k`` largest ``|w|`` (any shape)."""
    w = as_float_array(w, "w")
    kept = _keep_mask(np.abs(w).ravel(), keep_count(w.size, sparsity, keep))
    return _masked(w.ravel(), kept).reshape(w.shape)


def reference_unstructured_global(ws, sparsity=None, keep=None) -> list[np.ndarray]:
    """Plain :func:`~refimpl.projections.project_unstructured_global` for a list of layers (a list back).

    The layers are flattened (C order) and concatenated in the given order; the ``k`` largest ``|w|`` of
    the concatenation are kept.
    """
    ws = [as_float_array(w, f"ws[{i}]") for i, w in enumerate(ws)]
    common = np.result_type(*ws)
    flat = np.concatenate([np.abs(w).ravel().astype(common) for w in ws])
    kept = _keep_mask(flat, keep_count(flat.size, sparsity, keep))
    bounds = np.cumsum([0] + [w.size for w in ws])
    pieces = zip(ws, bounds[:-1], bounds[1:], strict=True)
    return [_masked(w.ravel(), kept[lo:hi]).reshape(w.shape) for w, lo, hi in pieces]


def reference_filters(w, sparsity=None, keep=None) -> np.ndarray:
    """Plain :func:`~refimpl.projections.project_filters`: keep the ``k`` filters of largest L2 norm."""
    return _project_groups(w, "filters", sparsity, keep)


def reference_channels(w, sparsity=None, keep=None) -> np.ndarray:
    """Plain :func:`~refimpl.projections.project_channels`: keep the ``k`` channels of largest L2 norm."""
    return _project_groups(w, "channels", sparsity, keep)


def reference_shapes(w, sparsity=None, keep=None) -> np.ndarray:
    """Plain :func:`~refimpl.projections.project_shapes`: keep the ``k`` GEMM columns of largest L2 norm."""
    return _project_groups(w, "shapes", sparsity, keep)


def reference_kernels(w, sparsity=None, keep=None) -> np.ndarray:
    """Plain :func:`~refimpl.projections.project_kernels`: keep the ``k`` kernels of largest L2 norm."""
    return _project_groups(w, "kernels", sparsity, keep)


def reference_blocks(w, block_shape, sparsity=None, keep=None) -> np.ndarray:
    """Plain :func:`~refimpl.projections.project_blocks`: keep the ``k`` blocks of largest L2 norm."""
    return _project_groups(w, "blocks", sparsity, keep, block_shape)


# --------------------------------------------------------------------------------------------------
# Per-vector selection: balanced, N:M, vector AND block
# --------------------------------------------------------------------------------------------------


def _balanced_mask(w2d: np.ndarray, vector_size: int, k_v: int) -> np.ndarray:
    """Keep the ``k_v`` largest ``|g|`` of every length-``V`` vector of a row (edge: ``round(k_v r/V)``)."""
    mask = np.zeros(w2d.shape, dtype=bool)
    for r in range(w2d.shape[0]):
        for start in range(0, w2d.shape[1], vector_size):
            vector = np.abs(w2d[r, start : start + vector_size])
            k = k_v if vector.size == vector_size else round(Fraction(k_v * vector.size, vector_size))
            mask[r, start + top_k(vector, k)] = True
    return mask


def _check_vector_size(value, name: str, k: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if not 1 <= value <= k:
        raise ValueError(f"{name} must lie in [1, {k}] (the GEMM row length C*KH*KW), got {value}")
    return int(value)


def reference_balanced(w, vector_size, sparsity=None, keep=None) -> np.ndarray:
    """Plain :func:`~refimpl.projections.project_balanced`: ``k_v`` largest ``|g|`` per length-``V`` vector.

    A row's last vector, ``r = K mod V`` entries long, keeps ``round(k_v r / V)`` (round-half-to-even,
    computed exactly).
    """
    w = as_weight(w)
    w2d = w.reshape(w.shape[0], -1)
    v = _check_vector_size(vector_size, "vector_size", w2d.shape[1])
    return _masked(w2d, _balanced_mask(w2d, v, keep_count(v, sparsity, keep))).reshape(w.shape)


def reference_nm(w, n, m) -> np.ndarray:
    """Plain :func:`~refimpl.projections.project_nm`: the ``n`` largest ``|g|`` of every ``m`` consecutive."""
    w = as_weight(w)
    k = math.prod(w.shape[1:])
    m = _check_vector_size(m, "m", k)
    if k % m:
        raise ValueError(f"m must divide the GEMM row length C*KH*KW = {k}, got m={m}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an integer, got {n!r}")
    if not 0 <= n <= m:
        raise ValueError(f"n must lie in [0, m={m}], got {n}")
    return reference_balanced(w, m, keep=int(n))


def reference_vector_block(
    w,
    vector_size,
    block_shape,
    *,
    vector_sparsity=None,
    vector_keep=None,
    block_sparsity=None,
    block_keep=None,
    total_sparsity=None,
    vector_share=None,
) -> np.ndarray:
    """Plain :func:`~refimpl.projections.project_vector_block` (the vector ∧ block heuristic).

    The balanced mask of ``w``, then the ``k_b`` blocks of largest L2 norm *of the vector-masked weight*;
    the result is ``w`` on the AND of the two. ``total_sparsity`` is split by
    :func:`~refimpl.projections.vector_block_split` (a counting rule, not a selection).
    """
    from refimpl.projections.blocks import vector_block_split

    w = as_weight(w)
    w2d = w.reshape(w.shape[0], -1)
    v = _check_vector_size(vector_size, "vector_size", w2d.shape[1])
    bh, bw = check_block_shape(block_shape, w2d.shape)
    if total_sparsity is not None:
        if any(p is not None for p in (vector_sparsity, vector_keep, block_sparsity, block_keep)):
            raise ValueError("give either total_sparsity= or the two parts, not both")
        n_blocks = -(-w2d.shape[0] // bh) * -(-w2d.shape[1] // bw)
        vector_keep, block_keep = vector_block_split(
            total_sparsity, v, n_blocks, 0.5 if vector_share is None else vector_share
        )
    vector_mask = _balanced_mask(w2d, v, keep_count(v, vector_sparsity, vector_keep))
    masked = _masked(w2d, vector_mask)
    block_mask = _keep_mask_of_blocks(masked, (bh, bw), block_sparsity, block_keep)
    return _masked(w2d, vector_mask & block_mask).reshape(w.shape)


def _keep_mask_of_blocks(w2d: np.ndarray, block_shape, sparsity, keep) -> np.ndarray:
    """Element mask of the kept blocks of :func:`reference_blocks` (whole blocks, zeros included)."""
    ids = group_ids("blocks", w2d.shape, block_shape)
    scores = group_scores(w2d, ids)
    return _keep_mask(scores, keep_count(scores.size, sparsity, keep))[ids]


# --------------------------------------------------------------------------------------------------
# Weight unification
# --------------------------------------------------------------------------------------------------


def _block_costs(w2d: np.ndarray, bh: int, bw: int):
    """Per block (row-major grid order): its entry slices, ``c = mean|v|``, ``d`` and ``e`` (Python floats).

    Sums run over the block's entries in row-major order in float64. An already unified block
    (all ``|v|`` equal) gets its magnitude back exactly rather than the rounded mean.
    """
    blocks = []
    for r0 in range(0, w2d.shape[0], bh):
        for c0 in range(0, w2d.shape[1], bw):
            where = (slice(r0, r0 + bh), slice(c0, c0 + bw))
            a = [abs(float(x)) for x in w2d[where].ravel()]
            c = a[0] if max(a) == min(a) else sum(a) / len(a)
            blocks.append((where, c, sum((x - c) ** 2 for x in a), sum(x * x for x in a)))
    return blocks


def _cheapest(costs: list[float], count: int, candidates) -> list[int]:
    """Return the ``count`` cheapest candidates; among equal costs the *higher* index (the lower is kept)."""
    return sorted(candidates, key=lambda b: (costs[b], -b))[:count]


def reference_unified(w, block_shape, sparsity=None, keep=None, *, unify=None, prune=None) -> np.ndarray:
    r"""Plain :func:`~refimpl.projections.project_unified`: ``U`` blocks unified, ``P`` others pruned.

    A unified block becomes :math:`\operatorname{sign}^+(v)\,\overline{|v|}` (cost
    :math:`d_b = \sum (|v| - \overline{|v|})^2`), a pruned one 0 (cost :math:`e_b = \|v\|^2`). With both
    ``P`` and ``U`` nonzero, the blocks are sorted by the premium :math:`e_b - d_b` (equal premiums: higher
    index first); every split ``t`` of that order is tried, pruning the ``P`` cheapest (in ``e``) of the
    first ``t`` and unifying the ``U`` cheapest (in ``d``) of the rest; the first split of least total
    cost wins; with only one kind, the cheapest blocks of all. (Why a split suffices: the exchange lemma in
    :func:`~refimpl.projections.unify_assignment`.)
    """
    w = as_weight(w)
    w2d = w.reshape(w.shape[0], -1)
    bh, bw = check_block_shape(block_shape, w2d.shape)
    blocks = _block_costs(w2d, bh, bw)
    n = len(blocks)
    given = [x for x in (sparsity, keep, unify) if x is not None]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of sparsity=, keep= or unify=, got sparsity={sparsity!r}, "
            f"keep={keep!r}, unify={unify!r}"
        )
    n_pruned = 0 if prune is None else round(check_probability(prune, "prune") * n)
    if keep is not None:
        n_unified = n - keep_count(n, keep=keep) - n_pruned
    else:
        n_unified = n - keep_count(n, sparsity=sparsity if sparsity is not None else unify)
    if n_unified < 0 or n_pruned + n_unified > n:
        raise ValueError(f"{n_pruned} pruned plus {n_unified} unified blocks do not fit in {n} blocks")
    d = [b[2] for b in blocks]
    e = [b[3] for b in blocks]
    order = sorted(range(n), key=lambda b: (e[b] - d[b], -b))

    def total(t: int) -> float:
        pruned, unified = _cheapest(e, n_pruned, order[:t]), _cheapest(d, n_unified, order[t:])
        if len(pruned) < n_pruned or len(unified) < n_unified:
            return math.inf
        return math.fsum(e[b] for b in pruned) + math.fsum(d[b] for b in unified)

    # One kind only: no split to choose (all blocks are candidates for it).
    t_best = n if n_unified == 0 else 0 if n_pruned == 0 else min(range(n + 1), key=lambda t: (total(t), t))
    pruned = _cheapest(e, n_pruned, order[:t_best])
    unified = _cheapest(d, n_unified, order[t_best:])
    z = w2d.copy()
    for b in pruned:
        z[blocks[b][0]] = 0
    for b in unified:
        where, c = blocks[b][0], w.dtype.type(blocks[b][1])
        z[where] = np.where(w2d[where] >= 0, c, -c)
    return z.reshape(w.shape)


#: Structure name -> plain projection, the keys of :data:`refimpl.projections.PROJECTIONS`.
REFERENCES = {
    "unstructured": reference_unstructured,
    "filters": reference_filters,
    "channels": reference_channels,
    "shapes": reference_shapes,
    "kernels": reference_kernels,
    "blocks": reference_blocks,
    "balanced": reference_balanced,
    "nm": reference_nm,
    "vector_block": reference_vector_block,
    "unified": reference_unified,
}
