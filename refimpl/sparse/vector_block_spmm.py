r"""SpMM for the vector ∧ block format: ``Y = A @ X``, ``A`` a :class:`~.vector_block.VectorBlockMatrix`.

.. math:: Y_{I b_h + r,\; n} = \sum_{p \in \mathrm{block\ row}\ I}\ \sum_{j=0}^{b_w/V-1} \sum_{s=0}^{k-1}
          \mathrm{data}[p, r, j, s]\; X_{\mathrm{indices}[p]\, b_w + jV + \mathrm{offsets}[p, r, j, s],\; n}

(terms past row ``M`` or column ``K`` — padding — skipped). The three engines of
:mod:`refimpl.sparse.kernels`: ``"numba"`` (below), ``"numpy"`` (its twin: one dense product per output
row, ``values @ X[columns]``) and ``"scipy"`` (``a.to_scipy()``, scipy's CSR of the same matrix).

**The numba kernel** combines the BSR kernel's block-row parallelism with the balanced kernel's two-level
tiling (see :func:`~refimpl.sparse.kernels.balanced_spmm`): ``X``'s columns in tiles of ``tile``; the
block columns in panels of ``panel``, whose ``panel · bw`` rows of ``X`` (:data:`~refimpl.sparse.kernels.
PANEL_BYTES`) stay in cache while every block row reuses them; block rows in parallel (``prange``; each
writes only its own ``bh`` rows of ``Y``). A block row's blocks of a panel are found without a search: its
blocks are sorted by block column, so one cursor per block row advances from panel to panel. Each output
row then applies its entries of the panel's blocks four per sweep over the tile (one load and store of ``Y``
per four multiply-adds), the column of an entry being ``indices[p]·bw + jV + offset``. The clipped last
block column (``K mod bw > 0``) is a last pass with a bounds check, so the main loop has none.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from refimpl.sparse.kernels import (
    DEFAULT_TILE,
    PANEL_BYTES,
    PANEL_MIN_ENTRIES,
    _check_kernel_count,
    _prepare,
    _scipy_matrix,
)
from refimpl.sparse.vector_block import VectorBlockMatrix

__all__ = ["vector_block_spmm"]


def default_panel(a: VectorBlockMatrix, tile: int, n: int, itemsize: int) -> int:
    """Return the block columns per panel of :func:`vector_block_spmm`'s numba kernel.

    ``panel · bw`` rows of a ``tile``-wide ``X`` fill :data:`~refimpl.sparse.kernels.PANEL_BYTES`, but a
    row gets at least :data:`~refimpl.sparse.kernels.PANEL_MIN_ENTRIES` entries per panel on average
    (``panel · block_density · (bw/V) · k >= 16``).
    """
    bw = a.block_shape[1]
    by_bytes = PANEL_BYTES // (bw * max(min(tile, n), 1) * itemsize)
    per_block_row = a.block_density * (bw // a.vector_size) * a.k
    by_entries = int(np.ceil(PANEL_MIN_ENTRIES / per_block_row)) if per_block_row > 0 else 1
    return max(1, by_bytes, by_entries)


def vector_block_spmm(
    a: VectorBlockMatrix,
    x: np.ndarray,
    *,
    engine: str = "numba",
    tile: int = DEFAULT_TILE,
    panel: int | None = None,
) -> np.ndarray:
    r"""``Y = A @ X`` for a vector ∧ block matrix ``A`` (the formula in the module notes).

    Parameters
    ----------
    a : VectorBlockMatrix, shape (M, K)
    x : ndarray, shape (K, N) or (K,)
        Dense right-hand side; copied to C order (and the output dtype) only when it is not already.
    engine : {"numba", "numpy", "scipy"}
    tile : int, default :data:`~refimpl.sparse.kernels.DEFAULT_TILE`
        Columns of ``X`` per cache tile (numba engine only).
    panel : int, optional
        Block columns per panel (numba engine only); default :func:`default_panel`. Any value gives the
        same result.

    Returns
    -------
    ndarray, shape (M, N) or (M,)
        Dtype ``result_type(a.dtype, x.dtype)``.

    Raises
    ------
    TypeError
        ``a`` not a :class:`VectorBlockMatrix`; ``x`` not real numeric.
    ValueError
        ``x`` of the wrong shape; unknown ``engine``; ``tile`` or ``panel`` not a positive integer.

    Examples
    --------
    >>> w = np.array([[1., 0., 0., 2.], [0., 3., 4., 0.]])
    >>> a = VectorBlockMatrix.from_dense(w, block_shape=(2, 4), vector_size=2)
    >>> vector_block_spmm(a, np.ones((4, 1)), engine="numpy")
    array([[3.],
           [7.]])
    """
    if panel is not None:
        _check_kernel_count(panel, "panel")
    data, x2, out_dtype, squeeze = _prepare(a, x, engine, tile, VectorBlockMatrix)
    m = a.shape[0]
    n = x2.shape[1]
    if engine == "scipy":
        y = np.asarray(_scipy_matrix(a, out_dtype) @ x2, dtype=out_dtype)
    elif engine == "numpy":
        y = _vector_block_spmm_numpy(a.indptr, a.indices, data, a.offsets, a.vector_size, x2, m)
    else:
        y = np.zeros((m, n), dtype=out_dtype)
        if a.n_blocks and a.k and n:
            t = int(tile)
            p = default_panel(a, t, n, out_dtype.itemsize) if panel is None else int(panel)
            _vector_block_spmm_numba(a.indptr, a.indices, data, a.offsets, a.vector_size, x2, y, t, p)
    return y[:, 0] if squeeze else y


def _vector_block_spmm_numpy(indptr, indices, data, offsets, vector_size, x, m):
    """NumPy twin of :func:`_vector_block_spmm_numba`: per output row, its values times the rows of X."""
    n_blocks, bh, nvb, k = data.shape
    bw = nvb * vector_size
    y = np.zeros((m, x.shape[1]), dtype=x.dtype)
    within = np.arange(nvb, dtype=np.int64)[:, None] * vector_size  # (nvb, 1): each vector's start
    for bi in range(indptr.size - 1):
        s, e = indptr[bi], indptr[bi + 1]
        for r in range(min(bh, m - bi * bh)):
            # the absolute column of every slot of row r in the block row's blocks: (blocks, nvb, k)
            cols = (
                indices[s:e].astype(np.int64)[:, None, None] * bw + within + offsets[s:e, r].astype(np.int64)
            ).ravel()
            inside = cols < x.shape[0]  # clipped last block column
            y[bi * bh + r] = data[s:e, r].ravel()[inside] @ x[cols[inside]]
    return y


@njit(cache=True, inline="always")
def _next_slot(p, j, s, k, nvb):  # pragma: no cover - compiled
    """Return the slot after ``(p, j, s)`` in one row of the blocks (storage order: slot, vector, block)."""
    s += 1
    if s == k:
        s = 0
        j += 1
        if j == nvb:
            j = 0
            p += 1
    return p, j, s


@njit(cache=True, parallel=True)
def _vector_block_spmm_numba(
    indptr, indices, data, offsets, vector_size, x, y, tile, panel
):  # pragma: no cover - compiled
    """``y += A @ x`` for A in the vector ∧ block format: X's columns in tiles, block columns in panels.

    ``cursor[bi]`` is block row ``bi``'s first block not yet applied in the current tile. Offsets are widened
    to int64 before the add (a uint8 offset plus ``j * V`` would wrap when the JIT is off).
    """
    _, bh, nvb, k = data.shape
    mb = indptr.size - 1
    m = y.shape[0]
    n_cols, n = x.shape
    v = vector_size
    bw = nvb * v
    n_full = n_cols // bw  # block columns with no column past K
    per_row = nvb * k
    cursor = np.empty(mb, dtype=np.int64)
    for n0 in range(0, n, tile):
        n1 = min(n0 + tile, n)
        w = n1 - n0
        for bi in range(mb):
            cursor[bi] = indptr[bi]
        for j0 in range(0, n_full, panel):
            j1 = min(j0 + panel, n_full)
            for bi in prange(mb):
                p0 = cursor[bi]
                p1 = p0
                end = indptr[bi + 1]
                while p1 < end and indices[p1] < j1:
                    p1 += 1
                cursor[bi] = p1
                total = (p1 - p0) * per_row
                r0 = bi * bh
                for r in range(min(bh, m - r0)):
                    yr = y[r0 + r, n0:n1]
                    p, j, s = p0, 0, 0
                    e = 0
                    while e + 4 <= total:
                        a0 = data[p, r, j, s]
                        x0 = x[indices[p] * bw + j * v + np.int64(offsets[p, r, j, s]), n0:n1]
                        p, j, s = _next_slot(p, j, s, k, nvb)
                        a1 = data[p, r, j, s]
                        x1 = x[indices[p] * bw + j * v + np.int64(offsets[p, r, j, s]), n0:n1]
                        p, j, s = _next_slot(p, j, s, k, nvb)
                        a2 = data[p, r, j, s]
                        x2 = x[indices[p] * bw + j * v + np.int64(offsets[p, r, j, s]), n0:n1]
                        p, j, s = _next_slot(p, j, s, k, nvb)
                        a3 = data[p, r, j, s]
                        x3 = x[indices[p] * bw + j * v + np.int64(offsets[p, r, j, s]), n0:n1]
                        p, j, s = _next_slot(p, j, s, k, nvb)
                        for t in range(w):
                            yr[t] += a0 * x0[t] + a1 * x1[t] + a2 * x2[t] + a3 * x3[t]
                        e += 4
                    while e < total:  # the row's last total % 4 entries of the panel
                        a = data[p, r, j, s]
                        xc = x[indices[p] * bw + j * v + np.int64(offsets[p, r, j, s]), n0:n1]
                        for t in range(w):
                            yr[t] += a * xc[t]
                        p, j, s = _next_slot(p, j, s, k, nvb)
                        e += 1
        if n_full * bw < n_cols:  # the clipped last block column: slots past column K are padding, skipped
            for bi in prange(mb):
                p = cursor[bi]
                if p < indptr[bi + 1]:  # sorted: only the block of column n_full can be left
                    base = indices[p] * bw
                    r0 = bi * bh
                    for r in range(min(bh, m - r0)):
                        yr = y[r0 + r, n0:n1]
                        for j in range(nvb):
                            for s in range(k):
                                col = base + j * v + np.int64(offsets[p, r, j, s])
                                if col < n_cols:
                                    a = data[p, r, j, s]
                                    xc = x[col, n0:n1]
                                    for t in range(w):
                                        yr[t] += a * xc[t]
