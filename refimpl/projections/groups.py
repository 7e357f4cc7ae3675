r"""Group projections: keep the ``k`` groups of largest L2 norm (filters, channels, shapes, kernels).

All four structures are disjoint tilings of the weight's GEMM view ``W.reshape(F, C*KH*KW)``:

========================  ============================  =============================
structure                 group                         tile of the GEMM view
========================  ============================  =============================
filter (conv) / neuron    ``W[f]``, one GEMM row        ``1 x (C*KH*KW)``
channel                   ``W[:, c]``                   ``F x (KH*KW)``
shape / column            one GEMM column ``(c,kh,kw)`` ``F x 1``
kernel                    ``W[f, c]``, one 2-D kernel   ``1 x (KH*KW)``
========================  ============================  =============================

so one routine scores and selects them all (:func:`refimpl.projections._select.group_scores`: plain
float64 sums of squares when they cannot overflow or underflow, exact-range pairs otherwise; then the
tie-correct top-k), and one streaming pass writes the result without building an element mask
(:func:`refimpl.projections._select.apply_tile_mask`).

Why L2 and not L1 (the whole module rests on it): for disjoint groups :math:`g`, the nearest point of
"at most ``k`` nonzero groups" copies the kept groups, and then

.. math:: \|V - Z\|_F^2 = \sum_{g \text{ dropped}} \|V_g\|_2^2 ,

so the dropped groups must be those of smallest **L2** norm. Ranking by the L1 norm (as at least one public
projection library does) returns a feasible point that is not the nearest one: groups ``[3, 0]`` and
``[2, 2]`` have L1 norms 3 < 4 but squared L2 norms 9 > 8, so with ``k = 1`` the L1 rule keeps ``[2, 2]``
at cost 9 instead of ``[3, 0]`` at cost 8.
"""

from __future__ import annotations

import numpy as np

from refimpl._validation import as_weight
from refimpl.projections._select import (
    apply_tile_mask,
    check_engine,
    expand_tiles,
    gemm_view,
    group_scores,
    select_top_k,
)

__all__ = [
    "mask_channels",
    "mask_filters",
    "mask_kernels",
    "mask_shapes",
    "project_channels",
    "project_filters",
    "project_kernels",
    "project_shapes",
]


def _kernel_size(w: np.ndarray) -> int:
    """``KH * KW`` for a conv weight; 1 for a linear weight (each input is a 1 x 1 "kernel")."""
    return int(np.prod(w.shape[2:], dtype=np.int64))


def _group_tiles(w: np.ndarray, tile: str, sparsity, keep, engine: str):
    """Return the GEMM view, the kept-tile grid and the tile size ``(w2d, tiles, bh, bw)`` of ``tile``.

    ``w`` must already be validated (:func:`as_weight`).
    """
    check_engine(engine)
    w2d = gemm_view(w)
    n_rows, n_cols = w2d.shape
    bh, bw = {
        "filters": (1, n_cols),
        "channels": (n_rows, _kernel_size(w)),
        "shapes": (n_rows, 1),
        "kernels": (1, _kernel_size(w)),
    }[tile]
    tiles = select_top_k(group_scores(w2d, bh, bw, engine=engine), sparsity=sparsity, keep=keep)
    return w2d, tiles, bh, bw


def _group_mask(w, tile: str, sparsity, keep, engine: str) -> np.ndarray:
    """Keep mask of the ``k`` tiles of largest L2 norm, for the tiling named ``tile``."""
    w = as_weight(w)
    w2d, tiles, bh, bw = _group_tiles(w, tile, sparsity, keep, engine)
    return expand_tiles(tiles, w2d.shape, bh, bw).reshape(w.shape)


def _group_project(w, tile: str, sparsity, keep, engine: str) -> np.ndarray:
    """Projection onto the ``k`` tiles of largest L2 norm: kept tiles copied, the rest exactly 0."""
    w = as_weight(w)
    w2d, tiles, bh, bw = _group_tiles(w, tile, sparsity, keep, engine)
    return apply_tile_mask(w2d, tiles, bh, bw, engine=engine).reshape(w.shape)


# --------------------------------------------------------------------------------------------------
# Filters (conv) / neurons (linear rows)
# --------------------------------------------------------------------------------------------------


def mask_filters(w, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    """Boolean keep mask of :func:`project_filters` (shape of ``w``; whole filters ``True``/``False``).

    Examples
    --------
    >>> mask_filters(np.array([[1.0, 1.0], [0.0, 2.0]]), keep=1).astype(int)
    array([[0, 0],
           [1, 1]])
    """
    return _group_mask(w, "filters", sparsity, keep, engine)


def project_filters(w, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    r"""Euclidean projection onto "at most ``k`` nonzero filters" (rows of the GEMM view).

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in)
        A conv weight (groups are filters ``W[f]``) or a linear weight (groups are output neurons,
        the rows ``W[j]``).
    sparsity : float in [0, 1], optional
        Prune ``round(sparsity * F)`` filters (round-half-to-even).
    keep : int in [0, F], optional
        Keep exactly this many filters. Give exactly one of ``sparsity`` and ``keep``.
    engine : {"numba", "numpy"}
        Kernels computing the group norms and writing the result
        (:func:`refimpl.projections._select.group_scores`, ``apply_tile_mask``).

    Returns
    -------
    z : ndarray, shape and dtype of ``w``
        Kept filters copied unchanged, the others exactly 0. ``w`` is never modified.

    Raises
    ------
    ValueError
        NaN/inf in ``w``; ``w`` not 2-D or 4-D or with an empty axis; ``sparsity`` outside [0, 1];
        ``keep`` outside [0, F]; both or neither of ``sparsity``/``keep``; an unknown ``engine``.

    Notes
    -----
    The plain, sorting-based definition is :func:`refimpl.projections.reference.reference_filters`; this
    function is tested equal to it (``tests/test_projections_reference.py``).

    .. math:: S_k = \{Z : |\{f : Z_f \ne 0\}| \le k\}, \qquad
              \Pi_{S_k}(W) = \operatorname*{argmin}_{Z \in S_k} \|W - Z\|_F^2
              = \text{keep the } k \text{ filters of largest } \|W_f\|_2 .

    Exact because the groups are disjoint: for a fixed set :math:`T` of kept filters the best
    :math:`Z` copies them, leaving :math:`\sum_{f \notin T} \|W_f\|_2^2`, which the :math:`k` largest
    norms minimise. Squared norms rank like norms, so no square root is taken. Ties: lower filter index
    wins. This is the filter-wise Z-step of StructADMM [1]_.

    Computation: the squared norms are plain float64 sums of squares whenever no square or partial sum
    can leave the normal float64 range (always for float32 weights; float64 weights get a one-pass range
    check), else exact-range pairs ``F * 2**E`` -- the same numbers, so the fast path never changes the
    mask (:func:`refimpl.projections._select.plain_squares_exact`).

    Why the L2 and not the L1 norm: the error is the sum of the dropped groups' *squared L2* norms, and
    the two norms can rank groups differently. Filters ``[3, 0]`` and ``[2, 2]`` have L1 norms 3 < 4 but
    squared L2 norms 9 > 8; with ``k = 1`` an L1 ranking keeps ``[2, 2]`` (error 9) instead of
    ``[3, 0]`` (error 8). The same holds for every group projection of this module.

    References
    ----------
    .. [1] T. Zhang et al., "StructADMM: Achieving ultrahigh efficiency in structured pruning for
       DNNs", IEEE Trans. Neural Netw. Learn. Syst. 33(5), 2022. https://doi.org/10.1109/TNNLS.2020.3045153

    Examples
    --------
    >>> w = np.array([[3.0, 0.0], [2.0, 2.0], [0.5, 0.5]])   # squared norms 9, 8, 0.5
    >>> project_filters(w, keep=1)
    array([[3., 0.],
           [0., 0.],
           [0., 0.]])
    """
    return _group_project(w, "filters", sparsity, keep, engine)


# --------------------------------------------------------------------------------------------------
# Channels
# --------------------------------------------------------------------------------------------------


def mask_channels(w, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    """Boolean keep mask of :func:`project_channels` (shape of ``w``).

    Examples
    --------
    >>> mask_channels(np.array([[1.0, 2.0], [1.0, 0.0]]), keep=1).astype(int)   # column norms 2, 4
    array([[0, 1],
           [0, 1]])
    """
    return _group_mask(w, "channels", sparsity, keep, engine)


def project_channels(w, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    r"""Euclidean projection onto "at most ``k`` nonzero input channels".

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in)
        A conv weight: a channel is ``W[:, c]`` (all filters' kernels reading input channel ``c``, the
        ``KH*KW`` GEMM columns of ``c``). A linear weight: a channel is an input column ``W[:, i]``
        (the same groups as :func:`project_shapes` of a linear weight).
    sparsity : float in [0, 1], optional
        Prune ``round(sparsity * C)`` channels (round-half-to-even).
    keep : int in [0, C], optional
        Keep exactly this many channels. Give exactly one of ``sparsity`` and ``keep``.
    engine : {"numba", "numpy"}
        Kernel computing the group norms.

    Returns
    -------
    z : ndarray, shape and dtype of ``w``
        Kept channels copied unchanged, the others exactly 0.

    Raises
    ------
    ValueError
        As :func:`project_filters`, with ``keep`` in [0, C].

    Notes
    -----
    The plain, sorting-based definition is :func:`refimpl.projections.reference.reference_channels`; this
    function is tested equal to it (``tests/test_projections_reference.py``).

    .. math:: S_k = \{Z : |\{c : Z_{:,c} \ne 0\}| \le k\}, \qquad
              \Pi_{S_k}(W) = \text{keep the } k \text{ channels of largest } \|W_{:,c}\|_2 .

    Exact for the same reason as :func:`project_filters` (disjoint groups, error = sum of the dropped
    groups' squared norms). Ties: lower channel index wins. Channel-wise StructADMM [1]_.

    References
    ----------
    .. [1] T. Zhang et al., "StructADMM: Achieving ultrahigh efficiency in structured pruning for
       DNNs", IEEE TNNLS 33(5), 2022. https://doi.org/10.1109/TNNLS.2020.3045153

    Examples
    --------
    >>> w = np.zeros((2, 3, 1, 2))
    >>> w[:, 0] = 1.0; w[:, 1] = 2.0; w[:, 2] = 0.5          # channel norms^2: 4, 16, 1
    >>> project_channels(w, sparsity=0.5)[0, :, 0]          # round(1.5) = 2 channels pruned
    array([[0., 0.],
           [2., 2.],
           [0., 0.]])
    """
    return _group_project(w, "channels", sparsity, keep, engine)


# --------------------------------------------------------------------------------------------------
# Shapes / columns
# --------------------------------------------------------------------------------------------------


def mask_shapes(w, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    """Boolean keep mask of :func:`project_shapes` (shape of ``w``).

    Examples
    --------
    >>> mask_shapes(np.array([[1.0, -3.0, 0.0]]), keep=2).astype(int)   # column norms^2: 1, 9, 0
    array([[1, 1, 0]])
    """
    return _group_mask(w, "shapes", sparsity, keep, engine)


def project_shapes(w, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    r"""Euclidean projection onto "at most ``k`` nonzero shapes" (columns of the GEMM view).

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in)
        A conv weight: a shape is one position ``(c, kh, kw)`` across all filters, ``W[:, c, kh, kw]``
        (a GEMM column, i.e. one row of ``im2col(x)`` that need not be built). A linear weight: an input
        column ``W[:, i]``.
    sparsity : float in [0, 1], optional
        Prune ``round(sparsity * C*KH*KW)`` shapes (round-half-to-even).
    keep : int in [0, C*KH*KW], optional
        Keep exactly this many shapes. Give exactly one of ``sparsity`` and ``keep``.
    engine : {"numba", "numpy"}
        Kernel computing the group norms.

    Returns
    -------
    z : ndarray, shape and dtype of ``w``
        Kept columns copied unchanged, the others exactly 0.

    Raises
    ------
    ValueError
        As :func:`project_filters`, with ``keep`` in [0, C*KH*KW].

    Notes
    -----
    The plain, sorting-based definition is :func:`refimpl.projections.reference.reference_shapes`; this
    function is tested equal to it (``tests/test_projections_reference.py``).

    With :math:`G = W` reshaped to ``(F, C*KH*KW)`` and :math:`G_{:,j}` its columns:

    .. math:: S_k = \{Z : |\{j : G(Z)_{:,j} \ne 0\}| \le k\}, \qquad
              \Pi_{S_k}(W) = \text{keep the } k \text{ columns of largest } \|G_{:,j}\|_2 .

    Exact (disjoint groups). Ties: lower column index ``j = (c*KH + kh)*KW + kw`` wins. Shape-wise
    (column) StructADMM [1]_; the structure of "structured sparsity learning" shapes (Wen et al. 2016).

    References
    ----------
    .. [1] T. Zhang et al., "StructADMM: Achieving ultrahigh efficiency in structured pruning for
       DNNs", IEEE TNNLS 33(5), 2022. https://doi.org/10.1109/TNNLS.2020.3045153

    Examples
    --------
    >>> w = np.array([[1.0, 0.0, 2.0], [1.0, 3.0, 0.0]])     # column norms^2: 2, 9, 4
    >>> project_shapes(w, keep=2)
    array([[0., 0., 2.],
           [0., 3., 0.]])
    """
    return _group_project(w, "shapes", sparsity, keep, engine)


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------


def mask_kernels(w, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    """Boolean keep mask of :func:`project_kernels` (shape of ``w``).

    Examples
    --------
    >>> mask_kernels(np.arange(8.0).reshape(1, 2, 2, 2), keep=1)[0, :, 0, 0]
    array([False,  True])
    """
    return _group_mask(w, "kernels", sparsity, keep, engine)


def project_kernels(w, sparsity=None, keep=None, *, engine: str = "numba") -> np.ndarray:
    r"""Euclidean projection onto "at most ``k`` nonzero kernels" (connectivity pruning).

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (out, in)
        A conv weight: a kernel is the 2-D slice ``W[f, c]``. A linear weight counts as ``1 x 1``
        kernels, so every entry is its own kernel and the result equals :func:`project_unstructured`.
    sparsity : float in [0, 1], optional
        Prune ``round(sparsity * F*C)`` kernels (round-half-to-even).
    keep : int in [0, F*C], optional
        Keep exactly this many kernels. Give exactly one of ``sparsity`` and ``keep``.
    engine : {"numba", "numpy"}
        Kernel computing the group norms.

    Returns
    -------
    z : ndarray, shape and dtype of ``w``
        Kept kernels copied unchanged, the others exactly 0.

    Raises
    ------
    ValueError
        As :func:`project_filters`, with ``keep`` in [0, F*C].

    Notes
    -----
    The plain, sorting-based definition is :func:`refimpl.projections.reference.reference_kernels`; this
    function is tested equal to it (``tests/test_projections_reference.py``).

    .. math:: S_k = \{Z : |\{(f, c) : Z_{f,c} \ne 0\}| \le k\}, \qquad
              \Pi_{S_k}(W) = \text{keep the } k \text{ kernels of largest } \|W_{f,c}\|_F .

    Exact (disjoint groups). Ties: lower flat index ``f*C + c`` wins. Removing a whole kernel cuts the
    connection between input channel ``c`` and output channel ``f`` (connectivity pruning, as in the
    PatDNN/PCONV line of work that builds on StructADMM [1]_).

    References
    ----------
    .. [1] T. Zhang et al., "StructADMM: Achieving ultrahigh efficiency in structured pruning for
       DNNs", IEEE TNNLS 33(5), 2022. https://doi.org/10.1109/TNNLS.2020.3045153

    Examples
    --------
    >>> w = np.ones((2, 2, 1, 1)); w[1, 0] = 5.0
    >>> project_kernels(w, keep=2)[:, :, 0, 0]              # 5 first, then the tie 1,1,1 -> index 0
    array([[1., 0.],
           [5., 0.]])
    """
    return _group_project(w, "kernels", sparsity, keep, engine)
