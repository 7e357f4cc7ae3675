r"""Work and traffic of ``Y = A @ X`` per storage format: the "ideal" a measured speedup is set against.

For ``A`` of logical shape ``(M, K)`` and a dense ``X`` of shape ``(K, N)``, :func:`spmm_cost` counts

* **MACs** — multiply-accumulates the kernel executes; ``flops = 2 · MACs``;
* **bytes** — a simple traffic model: every stored value, every index and ``indptr`` entry read once, the
  rows of ``X`` the matrix references read once (``N`` values each), and ``Y`` written once:

  .. math:: \text{bytes} = s_v\,n_{\text{values}} + s_i\,(n_{\text{indices}} + n_{\text{indptr}})
            + s_v\,N\,k_{\text{used}} + s_v\,N\,m_{\text{out}}

  with :math:`s_v` the value itemsize, :math:`s_i` the index itemsize, :math:`k_{\text{used}}` the
  number of distinct rows of ``X`` the kernel reads and :math:`m_{\text{out}}` the rows of ``Y``.

The model assumes a perfect cache (each needed byte crosses the memory bus once): real kernels move more,
which is exactly what comparing measured time ratios with these ratios shows.

Per format:

==============  ========================================  =====================  ==================
format          MACs                                      values / indices       X rows / Y rows
==============  ========================================  =====================  ==================
dense GEMM      ``M·K·N``                                 ``M·K`` / 0            ``K`` / ``M``
compact dense   ``M'·K'·N`` (all-zero rows and columns    ``M'·K'`` / 0          ``K'`` / ``M'``
                removed: filter / shape pruning)
CSR             ``nnz·N`` (explicit zeros included)       ``nnz`` / ``nnz+M+1``  columns used / M
BSR             stored block entries inside ``(M, K)``    ``n_blocks·bh·bw`` /   block columns used
                ``·N`` (zeros inside kept blocks count;   ``n_blocks+M_b+1``     ``·bw`` (clipped) / M
                edge padding is skipped by the kernel)
balanced        stored slots inside ``(M, K)`` ``·N``     ``M·⌈K/V⌉·k`` /        columns used / M
                (padding zeros count; the edge vector's   ``M·⌈K/V⌉·k`` offsets
                slots past ``K`` are skipped)             (1 byte for V ≤ 256)
vector ∧ block  stored slots inside ``(M, K)`` ``·N``     ``n_blocks·bh·(bw/V)   columns used / M
                (as balanced, in the kept blocks only)    ·k`` / as many
                                                          offsets + BSR's
                                                          ``n_blocks+M_b+1``
==============  ========================================  =====================  ==================

Compact dense writes only the ``M'`` kept rows: the removed filters' outputs are not produced at all (in
a network they are constants folded elsewhere, see ``refimpl.compact``). BSR values include the padding
of edge blocks because the format stores it.
"""

from __future__ import annotations

import numpy as np

from refimpl._validation import as_float_array, check_positive_int
from refimpl.sparse.balanced import BalancedMatrix
from refimpl.sparse.formats import BSRMatrix, CSRMatrix
from refimpl.sparse.vector_block import VectorBlockMatrix

__all__ = ["compact_dense_shape", "spmm_cost"]


def compact_dense_shape(w) -> tuple[int, int]:
    """``(M', K')``: rows and columns of ``w`` (M, K) that hold at least one nonzero.

    Filter pruning empties GEMM rows and shape pruning empties GEMM columns; the compact dense matrix keeps
    the rest.

    Examples
    --------
    >>> import numpy as np
    >>> compact_dense_shape(np.array([[0., 1., 0.], [0., 0., 0.], [2., 3., 0.]]))
    (2, 2)
    """
    w = as_float_array(w, "w", ndim=2)
    nz = w != 0
    return int(np.count_nonzero(nz.any(axis=1))), int(np.count_nonzero(nz.any(axis=0)))


def _cost(macs, n_values, n_index, k_used, m_out, n, value_size, index_size) -> dict:
    value_bytes = value_size * n_values
    index_bytes = index_size * n_index
    x_bytes = value_size * n * k_used
    y_bytes = value_size * n * m_out
    return {
        "macs": int(macs),
        "flops": 2 * int(macs),
        "bytes": int(value_bytes + index_bytes + x_bytes + y_bytes),
        "value_bytes": int(value_bytes),
        "index_bytes": int(index_bytes),
        "x_bytes": int(x_bytes),
        "y_bytes": int(y_bytes),
    }


def spmm_cost(a, n_cols: int, *, format: str | None = None, dtype=None) -> dict:  # noqa: A002
    r"""MACs, FLOPs and bytes moved by ``Y = A @ X`` with ``X`` of shape ``(K, n_cols)``.

    Parameters
    ----------
    a : CSRMatrix, BSRMatrix, BalancedMatrix, VectorBlockMatrix or array_like of shape (M, K)
        The stored matrix. A dense array is costed as a dense GEMM (``format="dense"``, default) or as
        the compact dense matrix left after removing its all-zero rows and columns
        (``format="compact"``).
    n_cols : int
        ``N``, the columns of ``X`` (for a conv layer: batch · output pixels).
    format : {"dense", "compact"}, optional
        Only for a dense ``a``; the sparse containers carry their format.
    dtype : dtype, optional
        Value dtype for the byte count; default the matrix's own dtype.

    Returns
    -------
    dict
        ``macs``, ``flops`` (``2·macs``), ``bytes`` (total of the model in the module notes) and its
        parts ``value_bytes``, ``index_bytes``, ``x_bytes``, ``y_bytes``.

    Examples
    --------
    A 2×4 matrix with 3 nonzeros in columns 0 and 2, ``N = 10``, float32 values and int32 indices:

    >>> import numpy as np
    >>> w = np.array([[1., 0., 2., 0.], [0., 0., 3., 0.]], dtype=np.float32)
    >>> c = spmm_cost(CSRMatrix.from_dense(w), 10)
    >>> c["macs"], c["flops"], c["bytes"]   # 4·3 + 4·(3+3) + 4·10·2 + 4·10·2
    (30, 60, 196)
    >>> spmm_cost(w, 10)["macs"], spmm_cost(w, 10, format="compact")["macs"]
    (80, 40)
    """
    n = check_positive_int(n_cols, "n_cols", minimum=0)
    if isinstance(a, CSRMatrix | BSRMatrix | BalancedMatrix | VectorBlockMatrix):
        if format is not None:
            raise ValueError(
                f"format is only for a dense a; a {type(a).__name__} carries its own, got {format!r}"
            )
        vsize = np.dtype(a.dtype if dtype is None else dtype).itemsize
        if isinstance(a, BalancedMatrix):
            _, cols, _ = a._coordinates()       # the absolute columns of the slots inside (M, K)
            # the offsets are the only index array: one per slot (1 byte for V <= 256), no row pointers
            return _cost(a.nnz * n, a.data.size, a.offsets.size, np.unique(cols).size, a.shape[0], n, vsize,
                         a.offsets.itemsize)
        isize = a.indices.dtype.itemsize
        if isinstance(a, VectorBlockMatrix):
            _, cols, _ = a._coordinates()
            # two index kinds of different widths: the offsets (one per slot) and BSR's block pointers,
            # passed to _cost as a byte count (index_size 1)
            index_bytes = a.offsets.nbytes + isize * (a.n_blocks + a.indptr.size)
            return _cost(a.nnz * n, a.data.size, index_bytes, np.unique(cols).size, a.shape[0], n, vsize, 1)
        m, k = a.shape
        if isinstance(a, CSRMatrix):
            k_used = np.unique(a.indices).size
            return _cost(a.nnz * n, a.nnz, a.nnz + a.indptr.size, k_used, m, n, vsize, isize)
        bw = a.block_shape[1]
        used_bcols = np.unique(a.indices)
        col_widths = np.minimum(bw, k - used_bcols * bw)  # the last block column may be clipped
        k_used = int(col_widths.sum())
        n_idx = a.n_blocks + a.indptr.size
        return _cost(a.nnz * n, a.data.size, n_idx, k_used, m, n, vsize, isize)
    w = as_float_array(a, "a", ndim=2)
    vsize = np.dtype(w.dtype if dtype is None else dtype).itemsize
    fmt = "dense" if format is None else format
    if fmt == "dense":
        m, k = w.shape
    elif fmt == "compact":
        m, k = compact_dense_shape(w)
    else:
        raise ValueError(f"format must be 'dense' or 'compact' for a dense a, got {format!r}")
    return _cost(m * k * n, m * k, 0, k, m, n, vsize, 0)
