r"""SpMM kernels: ``Y = A @ X`` for a sparse ``A`` (CSR, BSR or balanced) and a dense, row-major ``X``.

.. math:: Y_{in} = \sum_{p=\mathrm{indptr}[i]}^{\mathrm{indptr}[i+1]-1} \mathrm{data}[p]\,
          X_{\mathrm{indices}[p],\,n}, \qquad A \in \mathbb{R}^{M\times K},\ X \in \mathbb{R}^{K\times N}.

Three engines compute the same product:

``"numba"``
    Parallel kernels. The row-oriented ("Gustavson") order suits a row-major ``X``: a stored entry
    ``a_ik`` scales the contiguous row ``X[k, :]`` into ``Y[i, :]``, so the innermost loop is a unit-stride
    AXPY that LLVM turns into SIMD code. Output rows (CSR) or block rows (BSR) are spread over the threads
    with ``prange``; each output row is written by one thread only, so no locks or atomics are needed.
    **Cache blocking over X's columns:** the columns of ``X`` and ``Y`` are processed in tiles of ``tile``
    columns. Within a tile the rows ``X[k, n0:n1]`` that the matrix touches form a ``K × tile`` panel
    that stays in the caches while every output row of the tile reuses it, instead of being streamed from
    memory once per output row. Four stored entries (CSR) or four block columns (BSR) are applied per
    sweep over a tile, so each ``Y`` element is loaded and stored once per four multiply-adds. For BSR the
    block shape is a compile-time constant of a kernel specialised per block shape (built on first use).
    The balanced format adds a second level of tiling (:func:`balanced_spmm`): panels of its vectors.
``"numpy"``
    The NumPy twin: a readable loop over (block) rows, each a dense product of the row's stored values
    with the gathered rows of ``X`` (``data[s:e] @ X[indices[s:e]]``). Slow, but obviously right.
``"scipy"``
    ``a.to_scipy() @ X``: the reference from ``scipy.sparse`` (single-threaded, no column tiling). The
    conversion copies the arrays on every call; benchmarks convert once (see ``paper_repro/bench_spmm.py``).

**Threads.** The numba engine uses ``numba.get_num_threads()`` threads. OpenBLAS and numba keep separate
thread pools; call these kernels while BLAS is idle (not from inside a BLAS-threaded region) so the two
pools do not oversubscribe the cores.

**dtypes.** ``Y`` has dtype ``result_type(A.dtype, X.dtype)``, so float32 inputs give float32 output
and float64 inputs float64. Every engine accumulates in that dtype, in the order of the stored entries.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit, prange

from refimpl._validation import SPARSE_ENGINES, check_engine
from refimpl.sparse.balanced import BalancedMatrix
from refimpl.sparse.formats import BSRMatrix, CSRMatrix

__all__ = ["DEFAULT_TILE", "ENGINES", "PANEL_BYTES", "PANEL_MIN_ENTRIES", "balanced_spmm", "bsr_spmm",
           "csr_spmm", "spmm"]

#: The engines of the SpMM kernels (the shared tuple of :mod:`refimpl._validation`).
ENGINES = SPARSE_ENGINES

#: Columns of ``X`` per cache tile. Narrow tiles keep the ``K × tile`` panel of ``X`` in cache but pay the
#: per-entry overhead (index load, slice set-up) once per tile; on the reference layer (K = 4608, 2-core
#: Skylake-X) 512 to 1024 columns were fastest, 128 and below clearly slower. ``paper_repro/bench_spmm.py``
#: reruns the sweep (``--tiles``).
DEFAULT_TILE = 512


# --------------------------------------------------------------------------------------------------------
# argument handling shared by the engines
# --------------------------------------------------------------------------------------------------------


def _check_kernel_count(value, name: str) -> None:
    """``ValueError`` unless ``value`` is an integer in ``[1, 2**63 - 1]`` (a numba kernel's int64)."""
    # Past int64 numba fails to type the call (a long TypingError), though any size is meaningful here.
    bad = isinstance(value, bool) or not isinstance(value, numbers.Integral)
    if bad or not 1 <= value <= np.iinfo(np.int64).max:
        raise ValueError(f"{name} must be a positive integer (at most 2**63 - 1), got {value!r}")


def _prepare_x(a, x, engine: str, tile, kind: type, engines=ENGINES):
    """Validate the arguments of a product ``a @ x``; return ``(x2d, out_dtype, squeeze)`` for a kernel.

    One check of ``a``'s type, ``engine`` (one of ``engines``), ``tile`` and ``x`` for the product of every
    format (here, :mod:`~refimpl.sparse.vector_block_spmm`, :mod:`~refimpl.sparse.unified`), so the same
    bad argument gets the same message.
    """
    if not isinstance(a, kind):
        raise TypeError(f"a must be a {kind.__name__}, got {type(a).__name__}")
    check_engine(engine, engines)
    _check_kernel_count(tile, "tile")
    x = np.asarray(x)
    real = np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)
    if x.dtype == object or not real:
        raise TypeError(f"x must be a real numeric array, got dtype {x.dtype}")
    if x.ndim not in (1, 2):
        raise ValueError(f"x must have 1 or 2 dimensions (K,) or (K, N), got shape {x.shape}")
    if x.shape[0] != a.shape[1]:
        raise ValueError(
            f"x must have {a.shape[1]} rows (the columns of a, shape {a.shape}), got shape {x.shape}"
        )
    squeeze = x.ndim == 1
    x2 = x.reshape(-1, 1) if squeeze else x
    out_dtype = np.result_type(a.dtype, x.dtype)
    if out_dtype not in (np.float32, np.float64):
        out_dtype = np.dtype(np.float64)
    # The kernels read X row by row: make it C-contiguous in the output dtype (no copy when it already is).
    x2 = np.ascontiguousarray(x2, dtype=out_dtype)
    return x2, out_dtype, squeeze



def _scipy_matrix(a, out_dtype):
    """Return ``a`` as a scipy.sparse matrix of ``out_dtype`` (every format's ``"scipy"`` engine)."""
    sa = a.to_scipy()
    return sa if sa.dtype == out_dtype else sa.astype(out_dtype)

def _prepare(a, x, engine: str, tile, kind: type):
    """:func:`_prepare_x`, plus ``a.data`` in the output dtype: ``(a_data, x2d, out_dtype, squeeze)``."""
    x2, out_dtype, squeeze = _prepare_x(a, x, engine, tile, kind)
    data = a.data if a.data.dtype == out_dtype else a.data.astype(out_dtype)
    return data, x2, out_dtype, squeeze


# --------------------------------------------------------------------------------------------------------
# CSR
# --------------------------------------------------------------------------------------------------------


def csr_spmm(a: CSRMatrix, x: np.ndarray, *, engine: str = "numba", tile: int = DEFAULT_TILE) -> np.ndarray:
    r"""``Y = A @ X`` for a CSR matrix ``A``.

    .. math:: Y_{in} = \sum_{p \in \mathrm{row}\ i} \mathrm{data}[p]\, X_{\mathrm{indices}[p],\,n}

    Parameters
    ----------
    a : CSRMatrix, shape (M, K)
    x : ndarray, shape (K, N) or (K,)
        Dense right-hand side; copied to C order (and to the output dtype) only when it is not already.
    engine : {"numba", "numpy", "scipy"}
        See the module notes.
    tile : int, default :data:`DEFAULT_TILE`
        Columns of ``X`` per cache tile (numba engine only; any value gives the same result).

    Returns
    -------
    ndarray, shape (M, N) or (M,)
        Dtype ``result_type(a.dtype, x.dtype)``.

    Examples
    --------
    >>> import numpy as np
    >>> a = CSRMatrix.from_dense(np.array([[0., 2.], [1., 0.]]))
    >>> csr_spmm(a, np.array([[1., 2.], [3., 4.]]), engine="numpy")
    array([[6., 8.],
           [1., 2.]])
    """
    data, x2, out_dtype, squeeze = _prepare(a, x, engine, tile, CSRMatrix)
    m = a.shape[0]
    n = x2.shape[1]
    if engine == "scipy":
        y = np.asarray(_scipy_matrix(a, out_dtype) @ x2, dtype=out_dtype)
    elif engine == "numpy":
        y = _csr_spmm_numpy(a.indptr, a.indices, data, x2)
    else:
        y = np.zeros((m, n), dtype=out_dtype)
        if a.nnz and n:
            _csr_spmm_numba(a.indptr, a.indices, data, x2, y, int(tile))
    return y[:, 0] if squeeze else y


def _csr_spmm_numpy(indptr, indices, data, x):
    """NumPy twin of :func:`_csr_spmm_numba`: one small dense product per row."""
    y = np.zeros((indptr.size - 1, x.shape[1]), dtype=x.dtype)
    for i in range(indptr.size - 1):
        s, e = indptr[i], indptr[i + 1]
        if e > s:
            # (nnz_i,) @ (nnz_i, N): the row's values times the rows of X they select
            y[i] = data[s:e] @ x[indices[s:e]]
    return y


@njit(cache=True, parallel=True)
def _csr_spmm_numba(indptr, indices, data, x, y, tile):  # pragma: no cover - compiled
    """``y += A @ x`` with A in CSR; rows in parallel, X's columns in tiles of ``tile``.

    Four stored entries are applied per sweep over the tile, so each ``Y`` element is loaded and stored
    once per four multiply-adds instead of once per one (the loop is bound by loads and stores, not by
    arithmetic). The rows and tiles are 1-D slices indexed from 0, a form LLVM vectorises.
    """
    m = indptr.size - 1
    n = x.shape[1]
    for n0 in range(0, n, tile):
        n1 = min(n0 + tile, n)
        w = n1 - n0
        for i in prange(m):
            yi = y[i, n0:n1]
            p = indptr[i]
            end = indptr[i + 1]
            while p + 4 <= end:
                a0, a1, a2, a3 = data[p], data[p + 1], data[p + 2], data[p + 3]
                x0 = x[indices[p], n0:n1]
                x1 = x[indices[p + 1], n0:n1]
                x2 = x[indices[p + 2], n0:n1]
                x3 = x[indices[p + 3], n0:n1]
                for j in range(w):
                    yi[j] += a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j]
                p += 4
            while p < end:  # the row's last nnz % 4 entries
                a = data[p]
                xk = x[indices[p], n0:n1]
                for j in range(w):
                    yi[j] += a * xk[j]
                p += 1


# --------------------------------------------------------------------------------------------------------
# BSR
# --------------------------------------------------------------------------------------------------------


def bsr_spmm(a: BSRMatrix, x: np.ndarray, *, engine: str = "numba", tile: int = DEFAULT_TILE) -> np.ndarray:
    r"""``Y = A @ X`` for a block-CSR matrix ``A`` with ``bh × bw`` blocks.

    .. math:: Y_{I b_h + r,\; n} = \sum_{p \in \mathrm{block\ row}\ I}\ \sum_{c=0}^{b_w-1}
              \mathrm{data}[p, r, c]\; X_{\mathrm{indices}[p]\, b_w + c,\; n}

    Rows and columns past the logical shape (padding of edge blocks) are skipped: ``X`` is never read past
    row ``K`` and ``Y`` has exactly ``M`` rows.

    Parameters
    ----------
    a : BSRMatrix, shape (M, K)
    x : ndarray, shape (K, N) or (K,)
    engine : {"numba", "numpy", "scipy"}
    tile : int, default :data:`DEFAULT_TILE`
        Columns of ``X`` per cache tile (numba engine only).

    Returns
    -------
    ndarray, shape (M, N) or (M,)
        Dtype ``result_type(a.dtype, x.dtype)``.

    Examples
    --------
    >>> import numpy as np
    >>> a = BSRMatrix.from_dense(np.array([[1., 2., 0.], [3., 4., 0.], [0., 0., 5.]]), block_shape=(2, 2))
    >>> bsr_spmm(a, np.ones((3, 1)), engine="numpy")
    array([[3.],
           [7.],
           [5.]])
    """
    data, x2, out_dtype, squeeze = _prepare(a, x, engine, tile, BSRMatrix)
    m, k = a.shape
    n = x2.shape[1]
    if engine == "scipy":
        sa = _scipy_matrix(a, out_dtype)
        kp = a.padded_shape[1]
        xp = x2 if kp == k else np.concatenate([x2, np.zeros((kp - k, n), dtype=out_dtype)])
        y = np.ascontiguousarray(np.asarray(sa @ xp, dtype=out_dtype)[:m])
    elif engine == "numpy":
        y = _bsr_spmm_numpy(a.indptr, a.indices, data, x2, m)
    else:
        y = np.zeros((m, n), dtype=out_dtype)
        if a.n_blocks and n:
            kernel = _bsr_kernel(*a.block_shape)
            kernel(a.indptr, a.indices, data, x2, y, int(tile))
    return y[:, 0] if squeeze else y


def _bsr_spmm_numpy(indptr, indices, data, x, m):
    """NumPy twin of the numba BSR kernel: one tensor contraction per block row."""
    _, bh, bw = data.shape
    k, n = x.shape
    mb, kb = indptr.size - 1, -(-k // bw)
    xp = np.zeros((kb * bw, n), dtype=x.dtype)  # pad X's rows so it splits into kb panels of bw rows
    xp[:k] = x
    panels = xp.reshape(kb, bw, n)
    y = np.zeros((mb * bh, n), dtype=x.dtype)
    for bi in range(mb):
        s, e = indptr[bi], indptr[bi + 1]
        if e > s:
            # sum over stored blocks p and block columns c of data[p, r, c] * panels[indices[p], c, n]
            y[bi * bh : (bi + 1) * bh] = np.tensordot(data[s:e], panels[indices[s:e]], axes=([0, 2], [0, 1]))
    return y[:m]


_BSR_KERNELS: dict[tuple[int, int], object] = {}


def _bsr_kernel(bh: int, bw: int):
    """Return the numba BSR kernel for ``bh × bw`` blocks (built once per block shape, then cached).

    ``BH`` and ``BW`` are closure constants, so numba compiles them as literals: the block's strides and
    the trip counts of its row loop are known to LLVM, and the sweep over the tile (unit stride in ``X``
    and ``Y``) is the vectorised inner loop. numba caches one compiled kernel per block shape on disk.
    """
    key = (bh, bw)
    if key not in _BSR_KERNELS:
        _BSR_KERNELS[key] = _make_bsr_kernel(bh, bw)
    return _BSR_KERNELS[key]


def _make_bsr_kernel(BH: int, BW: int):  # noqa: N803 - block sizes are constants of the kernel
    @njit(cache=True, parallel=True)
    def bsr_spmm_kernel(indptr, indices, data, x, y, tile):  # pragma: no cover - compiled
        mb = indptr.size - 1
        m = y.shape[0]
        k, n = x.shape
        for n0 in range(0, n, tile):
            n1 = min(n0 + tile, n)
            w = n1 - n0
            for bi in prange(mb):
                r0 = bi * BH
                rh = min(BH, m - r0)  # < BH only in a padded last block row
                for p in range(indptr[bi], indptr[bi + 1]):
                    c0 = indices[p] * BW
                    cw = min(BW, k - c0)  # < BW only in a padded last block column
                    for r in range(rh):
                        yr = y[r0 + r, n0:n1]
                        # Row r of the block times the bw-row panel X[c0:c0+bw, n0:n1], four block
                        # columns per sweep over the tile (one load/store of Y per four multiply-adds).
                        c = 0
                        while c + 4 <= cw:
                            a0, a1 = data[p, r, c], data[p, r, c + 1]
                            a2, a3 = data[p, r, c + 2], data[p, r, c + 3]
                            x0 = x[c0 + c, n0:n1]
                            x1 = x[c0 + c + 1, n0:n1]
                            x2 = x[c0 + c + 2, n0:n1]
                            x3 = x[c0 + c + 3, n0:n1]
                            for j in range(w):
                                yr[j] += a0 * x0[j] + a1 * x1[j] + a2 * x2[j] + a3 * x3[j]
                            c += 4
                        while c < cw:  # bw % 4 leftover columns (and clipped edge blocks)
                            a = data[p, r, c]
                            xc = x[c0 + c, n0:n1]
                            for j in range(w):
                                yr[j] += a * xc[j]
                            c += 1

    return bsr_spmm_kernel


# --------------------------------------------------------------------------------------------------------
# balanced (vector-wise)
# --------------------------------------------------------------------------------------------------------

#: Bytes of the panel of ``X`` (``panel`` vectors × ``V`` rows × ``tile`` columns) the balanced kernel keeps
#: in cache while every row passes over it: half of a 1 MiB per-core L2 (Skylake-X, Zen 4), leaving room
#: for the rows of ``Y`` and the matrix's own stream. ``paper_repro/bench_spmm.py --panels`` reruns it.
PANEL_BYTES = 512 * 1024

#: At least this many of a row's entries per panel (``panel >= ceil(16 / k)`` vectors): below it the pass
#: over a panel (a parallel region, a sweep of each row's ``Y`` tile) costs more than the panel's cache reuse
#: saves. Measured at 99 % (``V = 100``, ``k = 1``): 2-vector panels were 1.6x slower than 16-vector ones.
PANEL_MIN_ENTRIES = 16


def balanced_spmm(a: BalancedMatrix, x: np.ndarray, *, engine: str = "numba", tile: int = DEFAULT_TILE,
                  panel: int | None = None) -> np.ndarray:
    r"""``Y = A @ X`` for a balanced matrix ``A`` (``k`` entries per length-``V`` vector).

    .. math:: Y_{in} = \sum_{j=0}^{\lceil K/V \rceil - 1} \sum_{s=0}^{k-1}
              \mathrm{data}[i, j, s]\; X_{jV + \mathrm{offsets}[i, j, s],\; n}
              \qquad (\text{terms with } jV + \mathrm{offsets}[i,j,s] \ge K \text{ skipped})

    Parameters
    ----------
    a : BalancedMatrix, shape (M, K)
    x : ndarray, shape (K, N) or (K,)
    engine : {"numba", "numpy", "scipy"}
        As for :func:`csr_spmm` (scipy: the matrix converted to CSR, ``a.to_scipy()``).
    tile : int, default :data:`DEFAULT_TILE`
        Columns of ``X`` per cache tile (numba engine only).
    panel : int, optional
        Vectors per panel (numba engine only): default the number whose ``V × tile`` rows of ``X`` fill
        :data:`PANEL_BYTES`, but at least :data:`PANEL_MIN_ENTRIES` ``/ k``. Any value gives the same
        result.

    Returns
    -------
    ndarray, shape (M, N) or (M,)
        Dtype ``result_type(a.dtype, x.dtype)``.

    Notes
    -----
    **Two-level tiling, the format's advantage.** The CSR kernel sweeps each output row over all its
    entries, so consecutive rows read rows of ``X`` scattered over all of ``K``: a ``K × tile`` panel
    (9 MB for the benchmark's 4608 × 512 float32 tile) that no per-core cache holds, and every row streams
    it from L3 or memory again. Here the vectors ``j0 .. j1`` of a panel cover the ``(j1 - j0) V``
    consecutive rows of ``X`` starting at ``j0 V``, and row ``i``'s entries for them are the contiguous
    slice ``data[i, j0:j1]`` — no search, no per-row pointer. So the kernel loops panel by panel, and
    within a panel over all rows (in parallel): the panel of ``X`` (:data:`PANEL_BYTES`) stays in L2 while
    every row reuses it, and each output row's tile stays in L1 while its entries of the panel are
    applied, four per sweep as in the CSR kernel. The in-vector offsets are one byte each for
    ``V <= 256`` and the column is ``jV + offset``, one multiply-add per entry. The same order in CSR
    would need a pointer per row and panel.
    """
    if panel is not None:
        _check_kernel_count(panel, "panel")
    data, x2, out_dtype, squeeze = _prepare(a, x, engine, tile, BalancedMatrix)
    m, k_cols = a.shape
    n = x2.shape[1]
    if engine == "scipy":
        y = np.asarray(_scipy_matrix(a, out_dtype) @ x2, dtype=out_dtype)
    elif engine == "numpy":
        y = _balanced_spmm_numpy(data, a.offsets, a.vector_size, x2)
    else:
        y = np.zeros((m, n), dtype=out_dtype)
        if a.k and a.n_vectors and n:
            t = int(tile)
            if panel is None:
                panel = max(1, PANEL_BYTES // (a.vector_size * min(t, n) * out_dtype.itemsize),
                            -(-PANEL_MIN_ENTRIES // a.k))
            _balanced_spmm_numba(data, a.offsets, a.vector_size, x2, y, t, int(panel))
    return y[:, 0] if squeeze else y


def _balanced_spmm_numpy(data, offsets, vector_size, x):
    """NumPy twin of :func:`_balanced_spmm_numba`: one small dense product per row, padding dropped."""
    m, n_vec, _ = data.shape
    y = np.zeros((m, x.shape[1]), dtype=x.dtype)
    starts = np.arange(n_vec, dtype=np.int64)[:, None] * vector_size
    for i in range(m):
        cols = (starts + offsets[i].astype(np.int64)).ravel()   # the absolute column of every slot
        inside = cols < x.shape[0]                               # the edge vector's padding is skipped
        # (stored slots,) @ (stored slots, N): the row's values times the rows of X they select
        y[i] = data[i].ravel()[inside] @ x[cols[inside]]
    return y


@njit(cache=True, parallel=True)
def _balanced_spmm_numba(data, offsets, vector_size, x, y, tile, panel):  # pragma: no cover - compiled
    """``y += A @ x`` for A balanced: X's columns in tiles, A's vectors in panels, rows in parallel.

    Within a (tile, panel) every row applies its ``(j1 - j0) * k`` entries four per sweep over the tile
    (one load/store of ``Y`` per four multiply-adds); ``(j, s)`` walks the row's slots of the panel in
    storage order. The full vectors need no bounds check (the validator guarantees ``offset < V``); the
    edge vector, if any, is a last pass with one. Offsets are widened to int64 before the add (a uint8 offset
    plus ``j * V`` would wrap in NumPy's scalar arithmetic when the JIT is off).
    """
    m, n_vec, k = data.shape
    n_cols, n = x.shape
    v = vector_size
    n_full = n_cols // v
    for n0 in range(0, n, tile):
        n1 = min(n0 + tile, n)
        w = n1 - n0
        for j0 in range(0, n_full, panel):
            j1 = min(j0 + panel, n_full)
            total = (j1 - j0) * k
            for i in prange(m):
                yi = y[i, n0:n1]
                j = j0
                s = 0
                e = 0
                while e + 4 <= total:
                    a0 = data[i, j, s]
                    x0 = x[j * v + np.int64(offsets[i, j, s]), n0:n1]
                    s += 1
                    if s == k:
                        s = 0
                        j += 1
                    a1 = data[i, j, s]
                    x1 = x[j * v + np.int64(offsets[i, j, s]), n0:n1]
                    s += 1
                    if s == k:
                        s = 0
                        j += 1
                    a2 = data[i, j, s]
                    x2 = x[j * v + np.int64(offsets[i, j, s]), n0:n1]
                    s += 1
                    if s == k:
                        s = 0
                        j += 1
                    a3 = data[i, j, s]
                    x3 = x[j * v + np.int64(offsets[i, j, s]), n0:n1]
                    s += 1
                    if s == k:
                        s = 0
                        j += 1
                    for t in range(w):
                        yi[t] += a0 * x0[t] + a1 * x1[t] + a2 * x2[t] + a3 * x3[t]
                    e += 4
                while e < total:  # the panel's last total % 4 entries of the row
                    a = data[i, j, s]
                    xc = x[j * v + np.int64(offsets[i, j, s]), n0:n1]
                    for t in range(w):
                        yi[t] += a * xc[t]
                    s += 1
                    if s == k:
                        s = 0
                        j += 1
                    e += 1
        if n_full < n_vec:  # the edge vector: slots past column K are padding (value 0), skipped
            base = n_full * v
            for i in prange(m):
                yi = y[i, n0:n1]
                for s in range(k):
                    col = base + np.int64(offsets[i, n_full, s])
                    if col < n_cols:
                        a = data[i, n_full, s]
                        xc = x[col, n0:n1]
                        for t in range(w):
                            yi[t] += a * xc[t]


# --------------------------------------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------------------------------------


def spmm(
    a, x: np.ndarray, *, engine: str = "numba", tile: int = DEFAULT_TILE
) -> np.ndarray:
    """``Y = A @ X`` for a CSR, BSR, balanced or vector ∧ block matrix.

    See csr_spmm, bsr_spmm, balanced_spmm and :func:`~refimpl.sparse.vector_block_spmm.vector_block_spmm`.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.array([[1., 0., 2.], [0., 0., 3.]])
    >>> x = np.arange(6.).reshape(3, 2)
    >>> bool(np.allclose(spmm(CSRMatrix.from_dense(w), x), w @ x))
    True
    """
    if isinstance(a, CSRMatrix):
        return csr_spmm(a, x, engine=engine, tile=tile)
    if isinstance(a, BSRMatrix):
        return bsr_spmm(a, x, engine=engine, tile=tile)
    if isinstance(a, BalancedMatrix):
        return balanced_spmm(a, x, engine=engine, tile=tile)
    # Imported here: the vector ∧ block kernel module builds on this one.
    from refimpl.sparse.vector_block import VectorBlockMatrix
    from refimpl.sparse.vector_block_spmm import vector_block_spmm

    if isinstance(a, VectorBlockMatrix):
        return vector_block_spmm(a, x, engine=engine, tile=tile)
    raise TypeError(f"a must be a CSRMatrix, BSRMatrix, BalancedMatrix or VectorBlockMatrix, "
                    f"got {type(a).__name__}")
