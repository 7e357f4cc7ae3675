r"""Block-shaped sparsity: blocks, balanced (vector-wise), N:M, and the vector ∧ block mixed mask.

All four act on the GEMM view :math:`G = W` reshaped to ``(F, K)`` with ``K = C*KH*KW`` (a linear weight
is its own GEMM view):

* **block** — tiles ``bh x bw`` of :math:`G` (edge tiles smaller), keep the ``k`` of largest L2 norm
  (exact, disjoint groups);
* **balanced** — cut every row of :math:`G` into consecutive vectors of length ``V``, keep the ``k_v``
  largest ``|g|`` in every vector (exact: the set is a product of per-vector sets);
* **N:M** — balanced with ``V = M``, ``k_v = N`` (e.g. 2:4, the pattern of sparse tensor cores);
* **vector ∧ block** — the AND of a balanced mask and a block mask: a documented heuristic.
"""

from __future__ import annotations

import numbers
import re

import numpy as np

from refimpl._validation import as_weight, check_block_shape, resolve_count
from refimpl.projections._select import (
    apply_mask,
    apply_tile_mask,
    check_engine,
    check_tile,
    expand_tiles,
    gemm_view,
    group_scores,
    round_half_even_ratio,
    select_top_k,
    top_k_mask_rows,
)

__all__ = [
    "mask_balanced",
    "mask_blocks",
    "mask_nm",
    "mask_vector_block",
    "project_balanced",
    "project_blocks",
    "project_nm",
    "project_vector_block",
]

_K_DOC = "the GEMM row length C*KH*KW"


# The one block_shape validator (refimpl._validation); the old private name stays importable.
_check_block_shape = check_block_shape


def _resolve_named(n: int, sparsity, keep, prefix: str) -> int:
    """:func:`resolve_count` whose error messages name ``{prefix}sparsity`` / ``{prefix}keep``."""
    try:
        return resolve_count(n, sparsity=sparsity, keep=keep)
    except (ValueError, TypeError) as err:
        if not prefix:
            raise
        raise type(err)(re.sub(r"\b(sparsity|keep)\b", prefix + r"\1", str(err))) from None


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


def _block_tiles(w2d: np.ndarray, bh: int, bw: int, sparsity, keep, engine: str, prefix: str = ""):
    """Tile-grid mask, shape ``(ceil(F/bh), ceil(K/bw))``, of the ``k`` tiles of largest L2 norm."""
    n_tiles = -(-w2d.shape[0] // bh) * -(-w2d.shape[1] // bw)
    k = _resolve_named(n_tiles, sparsity, keep, prefix)    # count errors before any work on the data
    return select_top_k(group_scores(w2d, bh, bw, engine=engine), keep=k)


def mask_blocks(w, block_shape, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    """Boolean keep mask of :func:`project_blocks` (shape of ``w``).

    Examples
    --------
    >>> mask_blocks(np.array([[1.0, 1.0, 3.0]]), (1, 2), keep=1).astype(int)   # edge tile [3] wins
    array([[0, 0, 1]])
    """
    check_engine(engine)
    w = as_weight(w)
    w2d = gemm_view(w)
    bh, bw = _check_block_shape(block_shape, w2d.shape)
    tiles = _block_tiles(w2d, bh, bw, sparsity, keep, engine)
    return expand_tiles(tiles, w2d.shape, bh, bw).reshape(w.shape)


def project_blocks(w, block_shape, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    r"""Euclidean projection onto "at most ``k`` nonzero ``bh x bw`` blocks" of the GEMM view.

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in)
        The weight; blocks tile its GEMM view ``(F, K)``, ``K = C*KH*KW``.
    block_shape : (int, int)
        ``(bh, bw)`` with ``1 <= bh <= F`` and ``1 <= bw <= K``. When they do not divide ``F`` or ``K``
        the last row/column of blocks is smaller (choice: every entry belongs to exactly one block, and
        an edge block is a group like any other, ranked by its own L2 norm).
    sparsity : float in [0, 1], optional
        Prune ``round(sparsity * n_blocks)`` blocks (round-half-to-even), ``n_blocks =
        ceil(F/bh) * ceil(K/bw)``.
    keep : int in [0, n_blocks], optional
        Keep exactly this many blocks. Give exactly one of ``sparsity`` and ``keep``.
    engine : {"numba", "numpy"}
        Kernel computing the block norms.

    Returns
    -------
    z : ndarray, shape and dtype of ``w``
        Kept blocks copied unchanged, the others exactly 0.

    Raises
    ------
    ValueError
        NaN/inf in ``w``; ``w`` not 2-D or 4-D; a ``block_shape`` that is not a pair in the ranges above;
        ``sparsity``/``keep`` out of range or both/neither given; an unknown ``engine``.

    Notes
    -----
    With :math:`G_b` the entries of block :math:`b`:

    .. math:: S_k = \{Z : |\{b : Z_b \ne 0\}| \le k\}, \qquad
              \Pi_{S_k}(W) = \operatorname*{argmin}_{Z \in S_k} \|W - Z\|_F^2
              = \text{keep the } k \text{ blocks of largest } \|G_b\|_2 .

    Exact: the blocks are disjoint, so the error of keeping a set :math:`T` of blocks is
    :math:`\sum_{b \notin T} \|G_b\|_2^2`. Ties: lower block index (row-major over the block grid) wins.
    Narang et al. rank blocks by the L2 norm or the max ``|w|`` [1]_; only the L2 norm gives the
    Euclidean projection used by the ADMM Z-step.

    References
    ----------
    .. [1] S. Narang, E. Undersander, G. Diamos, "Block-sparse recurrent neural networks",
       arXiv:1711.02782, 2017.

    Examples
    --------
    >>> w = np.array([[1.0, 1.0, 0.0, 0.0],
    ...               [1.0, 1.0, 0.0, 3.0]])                 # 2x2 block norms^2: 4, 9
    >>> project_blocks(w, (2, 2), keep=1)
    array([[0., 0., 0., 0.],
           [0., 0., 0., 3.]])
    """
    check_engine(engine)
    w = as_weight(w)
    w2d = gemm_view(w)
    bh, bw = _check_block_shape(block_shape, w2d.shape)
    tiles = _block_tiles(w2d, bh, bw, sparsity, keep, engine)
    return apply_tile_mask(w2d, tiles, bh, bw, engine=engine).reshape(w.shape)


# --------------------------------------------------------------------------------------------------
# Balanced (vector-wise) and N:M
# --------------------------------------------------------------------------------------------------


def _balanced_mask2d(w2d: np.ndarray, vector_size: int, k_v: int, engine: str) -> np.ndarray:
    """Element mask (GEMM view): the ``k_v`` largest ``|g|`` of every length-``V`` vector of every row.

    Full vectors are stacked into one ``(F * K // V, V)`` matrix and selected row by row in one call;
    the edge vectors (length ``r = K mod V``) form a second ``(F, r)`` matrix with
    ``round(k_v * r / V)`` kept.
    """
    n_rows, n_cols = w2d.shape
    magnitude = np.abs(w2d)
    n_full = n_cols // vector_size
    split = n_full * vector_size
    parts = []
    if n_full:
        full = magnitude[:, :split].reshape(n_rows * n_full, vector_size)
        parts.append(top_k_mask_rows(full, k_v, engine=engine).reshape(n_rows, split))
    edge_len = n_cols - split
    if edge_len:
        k_edge = round_half_even_ratio(k_v * edge_len, vector_size)
        parts.append(top_k_mask_rows(magnitude[:, split:], k_edge, engine=engine))
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def mask_balanced(w, vector_size, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    """Boolean keep mask of :func:`project_balanced` (shape of ``w``).

    Examples
    --------
    >>> mask_balanced(np.array([[4.0, 1.0, 2.0, 3.0]]), 2, keep=1).astype(int)
    array([[1, 0, 0, 1]])
    """
    check_engine(engine)
    w = as_weight(w)
    w2d = gemm_view(w)
    v = check_tile(vector_size, "vector_size", w2d.shape[1], _K_DOC)
    k_v = resolve_count(v, sparsity=sparsity, keep=keep)
    return _balanced_mask2d(w2d, v, k_v, engine).reshape(w.shape)


def project_balanced(w, vector_size, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    r"""Euclidean projection onto balanced (vector-wise) sparsity: ``k_v`` entries per length-``V`` vector.

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in)
        The weight; every row of its GEMM view ``(F, K)`` is cut into consecutive vectors of length
        ``V`` (along the input dimension).
    vector_size : int
        ``V``, with ``1 <= V <= K``. When ``V`` does not divide ``K`` each row ends in a shorter edge
        vector of length ``r = K mod V``, which keeps ``round(k_v * r / V)`` entries (choice: the same
        density as a full vector, rounded half-to-even; e.g. ``k_v = 1``, ``V = 4``, ``r = 2`` keeps 0).
    sparsity : float in [0, 1], optional
        Prune ``round(sparsity * V)`` entries of every full vector, i.e. ``k_v = V - round(sparsity*V)``.
    keep : int in [0, V], optional
        ``k_v``, the count kept in every full vector. Give exactly one of ``sparsity`` and ``keep``.
    engine : {"numba", "numpy"}
        The numba per-vector selection (parallel over vectors) or its vectorised NumPy twin.

    Returns
    -------
    z : ndarray, shape and dtype of ``w``
        In every vector, its ``k_v`` largest-``|w|`` entries copied unchanged, the rest exactly 0.

    Raises
    ------
    ValueError
        NaN/inf in ``w``; ``w`` not 2-D or 4-D; ``vector_size`` outside [1, K]; ``sparsity``/``keep``
        out of range or both/neither given; an unknown ``engine``.

    Notes
    -----
    With :math:`g_{r,j}` the :math:`j`-th vector of row :math:`r` of the GEMM view:

    .. math:: S = \{Z : \|z_{r,j}\|_0 \le k_v \;\forall r, j\}, \qquad
              \Pi_S(W) = \operatorname*{argmin}_{Z \in S} \|W - Z\|_F^2
              = \Big(\operatorname*{argmin}_{\|z\|_0 \le k_v} \|g_{r,j} - z\|_2^2\Big)_{r,j} .

    Exact: the objective and the constraint both split over vectors, so the projection is
    :func:`project_unstructured` applied to every vector (keep its :math:`k_v` largest
    :math:`|g|`). Ties within a vector: the lower column wins. This is the balanced sparsity of Yao et
    al. [1]_, whose equal per-vector counts let a GPU split the rows evenly across threads.

    References
    ----------
    .. [1] Z. Yao, S. Cao, W. Xiao, C. Zhang, L. Nie, "Balanced sparsity for efficient DNN inference on
       GPU", AAAI 2019. https://doi.org/10.1609/aaai.v33i01.33015676

    Examples
    --------
    >>> w = np.array([[0.1, -0.9, 0.5, 0.4, 7.0],
    ...               [3.0, 2.0, -1.0, 0.0, 1.0]])
    >>> project_balanced(w, 2, keep=1)       # vectors [0.1,-0.9] [0.5,0.4] | edge [7.0] keeps round(0.5)=0
    array([[ 0. , -0.9,  0.5,  0. ,  0. ],
           [ 3. ,  0. , -1. ,  0. ,  0. ]])
    """
    w = as_weight(w)
    mask = mask_balanced(w, vector_size, sparsity=sparsity, keep=keep, engine=engine)
    return apply_mask(w, mask, engine=engine)


def _check_nm(n, m, n_cols: int) -> tuple[int, int]:
    """Validate an N:M pattern for GEMM rows of length ``n_cols`` (``m`` must divide it)."""
    m = check_tile(m, "m", n_cols, _K_DOC)
    if n_cols % m:
        raise ValueError(f"m must divide the GEMM row length C*KH*KW = {n_cols}, got m={m}")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an integer, got {n!r}")
    if not 0 <= n <= m:
        raise ValueError(f"n must lie in [0, m={m}], got {n}")
    return int(n), m


def mask_nm(w, n, m, *, engine: str = "numba") -> np.ndarray:
    """Boolean keep mask of :func:`project_nm` (shape of ``w``).

    Examples
    --------
    >>> mask_nm(np.array([[1.0, -4.0, 3.0, 2.0]]), 2, 4).astype(int)
    array([[0, 1, 1, 0]])
    """
    check_engine(engine)
    w = as_weight(w)
    w2d = gemm_view(w)
    n, m = _check_nm(n, m, w2d.shape[1])
    return _balanced_mask2d(w2d, m, n, engine).reshape(w.shape)


def project_nm(w, n, m, *, engine: str = "numba") -> np.ndarray:
    r"""Euclidean projection onto N:M sparsity: at most ``n`` nonzeros in every ``m`` consecutive inputs.

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in)
        The weight; groups of ``m`` consecutive entries along each row of the GEMM view, i.e. along the
        input dimension ``(c, kh, kw)`` in C order (the reduction dimension of the GEMM, as sparse tensor
        cores require).
    n : int
        Entries kept per group, ``0 <= n <= m``.
    m : int
        Group length; must divide ``K = C*KH*KW`` (choice: no edge groups, since hardware N:M formats
        have none; pad the weight yourself if you need one).
    engine : {"numba", "numpy"}
        As in :func:`project_balanced`.

    Returns
    -------
    z : ndarray, shape and dtype of ``w``
        The ``n`` largest-``|w|`` entries of every group copied unchanged, the rest exactly 0.

    Raises
    ------
    ValueError
        NaN/inf in ``w``; ``w`` not 2-D or 4-D; ``m`` outside [1, K] or not dividing ``K``; ``n``
        outside [0, m]; an unknown ``engine``.

    Notes
    -----
    :func:`project_balanced` with ``vector_size = m`` and ``keep = n``:

    .. math:: S_{N:M} = \{Z : \|z_{r,j}\|_0 \le N \;\forall r, j\}, \qquad
              \Pi_{S_{N:M}}(W) = \text{the } N \text{ largest } |g| \text{ of every group of } M .

    Exact for the same reason (separable per group). Ties: lower column wins.

    References
    ----------
    .. [1] A. Mishra et al., "Accelerating sparse deep neural networks", arXiv:2104.08378, 2021
       (the 2:4 pattern of NVIDIA Ampere sparse tensor cores).
    .. [2] Z. Yao et al., "Balanced sparsity for efficient DNN inference on GPU", AAAI 2019.

    Examples
    --------
    >>> project_nm(np.array([[0.5, -2.0, 1.0, 0.1, 3.0, 3.0, -3.0, 1.0]]), 2, 4)   # 2:4
    array([[ 0., -2.,  1.,  0.,  3.,  3.,  0.,  0.]])
    """
    w = as_weight(w)
    return apply_mask(w, mask_nm(w, n, m, engine=engine), engine=engine)


# --------------------------------------------------------------------------------------------------
# Vector ∧ block (Guo et al.): a heuristic
# --------------------------------------------------------------------------------------------------


def _vector_block2d(w, vector_size, block_shape, vector_sparsity, vector_keep, block_sparsity, block_keep,
                    engine: str):
    """Return ``(w2d, vector_mask, masked, tiles, bh, bw)`` of the vector ∧ block rule for a valid ``w``.

    ``masked`` is the GEMM view with the vector mask applied; ``tiles`` the kept-block grid.
    """
    check_engine(engine)
    w2d = gemm_view(w)
    v = check_tile(vector_size, "vector_size", w2d.shape[1], _K_DOC)
    bh, bw = _check_block_shape(block_shape, w2d.shape)
    k_v = _resolve_named(v, vector_sparsity, vector_keep, "vector_")
    vector_mask = _balanced_mask2d(w2d, v, k_v, engine)
    # Blocks are ranked by the energy that survives the vector mask: a block whose large entries the
    # vector mask already removed is worth only what is left of it.
    masked = apply_mask(w2d, vector_mask, engine=engine)
    tiles = _block_tiles(masked, bh, bw, block_sparsity, block_keep, engine, prefix="block_")
    return w2d, vector_mask, masked, tiles, bh, bw


def mask_vector_block(w, vector_size, block_shape, *, vector_sparsity=None, vector_keep=None,
                      block_sparsity=None, block_keep=None, engine: str = "numba") -> np.ndarray:
    """Boolean keep mask of :func:`project_vector_block` (shape of ``w``).

    Examples
    --------
    >>> w = np.array([[4.0, 1.0, 0.1, 0.2], [3.0, 2.0, 0.3, 0.1]])
    >>> mask_vector_block(w, 2, (2, 2), vector_keep=1, block_keep=1).astype(int)
    array([[1, 0, 0, 0],
           [1, 0, 0, 0]])
    """
    w = as_weight(w)
    w2d, vector_mask, _, tiles, bh, bw = _vector_block2d(
        w, vector_size, block_shape, vector_sparsity, vector_keep, block_sparsity, block_keep, engine)
    return (vector_mask & expand_tiles(tiles, w2d.shape, bh, bw)).reshape(w.shape)


def project_vector_block(w, vector_size, block_shape, *, vector_sparsity=None, vector_keep=None,
                         block_sparsity=None, block_keep=None, engine: str = "numba") -> np.ndarray:
    r"""Vector ∧ block mixed sparsity (Guo et al.): a balanced mask AND a block mask. A heuristic.

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in)
        The weight (GEMM view ``(F, K)``).
    vector_size : int
        ``V`` of the vector-wise part, as in :func:`project_balanced` (edge rule included).
    block_shape : (int, int)
        ``(bh, bw)`` of the block part, as in :func:`project_blocks` (edge blocks included).
    vector_sparsity, vector_keep : float or int, optional
        The per-vector count ``k_v`` (exactly one of them), as ``sparsity``/``keep`` of
        :func:`project_balanced`.
    block_sparsity, block_keep : float or int, optional
        The number of kept blocks ``k_b`` (exactly one of them), as in :func:`project_blocks`.
    engine : {"numba", "numpy"}
        Kernel for the per-vector selection and the block norms.

    Returns
    -------
    z : ndarray, shape and dtype of ``w``
        ``w`` on the AND of the two masks (copied unchanged), exactly 0 elsewhere.

    Raises
    ------
    ValueError
        As :func:`project_balanced` and :func:`project_blocks`; count errors name ``vector_sparsity`` /
        ``vector_keep`` or ``block_sparsity`` / ``block_keep``.

    Notes
    -----
    The target set is the intersection of the balanced set and the block set,

    .. math:: S = \{Z : \|z_{r,j}\|_0 \le k_v \;\forall r, j\} \,\cap\,
              \{Z : |\{b : Z_b \ne 0\}| \le k_b\} ,

    and the mask computed is (choice, since the paper's exact rule is not available to us)

    .. math:: M = M_{\text{vec}}(W) \wedge M_{\text{blk}}(W \odot M_{\text{vec}}(W)),

    the balanced mask of ``W`` AND the top-``k_b`` blocks ranked by the L2 norm of the vector-masked
    weights. :math:`W \odot M` lies in :math:`S` (the AND only removes entries, so both counts still
    hold), but it is **not** the Euclidean projection onto :math:`S`: once blocks are dropped, a kept
    vector may have fewer than ``k_v`` survivors while a better entry of its dropped part could have been
    kept instead, and choosing blocks and entries jointly is combinatorial. Use it as a mask-building
    rule; its tests check membership in both sets and the count rules, not optimality.

    References
    ----------
    .. [1] Guo et al., vector-wise AND block-wise mixed sparse masks without regularization, ISQED 2021
       (as cited in refimpl's ALGORITHMS.md; the paper's text was not available, hence the choice).
    .. [2] Z. Yao et al., "Balanced sparsity for efficient DNN inference on GPU", AAAI 2019.
    .. [3] S. Narang et al., "Block-sparse recurrent neural networks", arXiv:1711.02782, 2017.

    Examples
    --------
    >>> w = np.array([[4.0, 1.0, 0.1, 0.2],
    ...               [3.0, 2.0, 0.3, 0.1]])
    >>> project_vector_block(w, 2, (1, 2), vector_keep=1, block_keep=2)
    array([[4., 0., 0., 0.],
           [3., 0., 0., 0.]])
    """
    w = as_weight(w)
    _, _, masked, tiles, bh, bw = _vector_block2d(
        w, vector_size, block_shape, vector_sparsity, vector_keep, block_sparsity, block_keep, engine)
    # ``masked`` already holds w on the vector mask and +0 elsewhere; dropping the unkept blocks from it
    # gives w on the AND of both masks.
    return apply_tile_mask(masked, tiles, bh, bw, engine=engine).reshape(w.shape)
