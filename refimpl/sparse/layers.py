r"""Forward-only convolution and linear layers whose GEMM runs in a chosen storage format.

A convolution is one matrix product (docs/ALGORITHMS.md section 5): with the *GEMM view*
``W_g = W.reshape(F, C·KH·KW)`` and ``cols = im2col(x)`` of shape ``(C·KH·KW, N·OH·OW)``,

.. math:: Y_g = W_g\,\mathrm{cols} + b\,\mathbf{1}^T \in \mathbb{R}^{F \times N \cdot OH \cdot OW},

and a linear layer is the same product with ``cols = x^T``. The layers here differ from
:class:`~refimpl.nn.conv.Conv2d` / :class:`~refimpl.nn.linear.Linear` only in **how** ``W_g`` is stored and
multiplied: a :class:`GemmOperator` holds it and computes the product. Five operators:

``"dense"`` (:class:`DenseGemm`)
    The masked weight as a dense array, zeros and all: BLAS does every multiply. The baseline.
``"compact"`` (:class:`CompactGemm`)
    Only the GEMM rows and columns that hold a nonzero: a smaller dense matrix
    :math:`W_c = W_g[R, K]` with :math:`R` the live rows (filters) and :math:`K` the live columns. Filter
    pruning shrinks :math:`R`; shape (column) pruning shrinks :math:`K`, **and** the layer then builds only
    the rows :math:`K` of ``im2col(x)`` — the input positions no kept weight reads are never copied. Rows
    outside :math:`R` are the bias alone. Exact: a zero row contributes 0, a zero column multiplies
    whatever ``cols`` holds by 0.
``"csr"`` (:class:`CsrGemm`)
    :class:`~refimpl.sparse.formats.CSRMatrix` of the full GEMM view, multiplied by
    :func:`~refimpl.sparse.kernels.csr_spmm` (irregular sparsity: one index per stored weight).
``"bsr"`` (:class:`BsrGemm`)
    :class:`~refimpl.sparse.formats.BSRMatrix` with ``bh × bw`` blocks,
    :func:`~refimpl.sparse.kernels.bsr_spmm`.
``"balanced"`` (:class:`BalancedGemm`)
    :class:`~refimpl.sparse.balanced.BalancedMatrix` with ``k`` values per length-``V`` vector (balanced
    or N:M sparsity), :func:`~refimpl.sparse.kernels.balanced_spmm`.
``"vector_block"`` (:class:`VectorBlockGemm`)
    :class:`~refimpl.sparse.vector_block.VectorBlockMatrix`: the kept ``bh × bw`` blocks, ``k`` values per
    length-``V`` vector inside them (Guo et al.'s vector ∧ block sparsity),
    :func:`~refimpl.sparse.vector_block_spmm.vector_block_spmm`.

The sparse operators read the **full** ``im2col`` matrix (choice): re-indexing a CSR/BSR matrix onto its
live columns would change a block mask's tile grid, and the point of those formats is to show what
irregular or block sparsity costs on its own. Column skipping is what structure (``"compact"``) buys.

**Engines.** ``"numba"`` and ``"numpy"`` select the im2col kernel and the SpMM kernel (numba's parallel
kernels or their NumPy twins). ``"scipy"`` uses the numba im2col and a ``scipy.sparse`` matrix converted
**once** when the operator is built (the reference SpMM, single-threaded). Dense products are NumPy's
BLAS whatever the engine.

**Layouts.** ``cols`` has one column per output pixel in the order ``(n, o_h, o_w)``. The dense operators
multiply image by image — ``np.matmul`` on the view ``cols.reshape(K, N, P).transpose(1, 0, 2)`` with
``P = OH·OW`` — which writes the ``(N, F, P)`` = NCHW result with no transposing copy (the trick of
:func:`~refimpl.nn.conv.conv2d_forward`, so the dense baseline here runs exactly the training code's
GEMMs). The sparse kernels produce ``Y_g`` of shape ``(F, N·P)``, which is reshaped to ``(F, N, P)``
and transposed into a fresh NCHW array.
"""

from __future__ import annotations

import numpy as np

from refimpl._validation import SPARSE_ENGINES, check_block_shape, check_engine, check_positive_int
from refimpl.nn._kernels import check_float_array, conv_output_size, im2col
from refimpl.nn.module import Module
from refimpl.sparse.balanced import VECTOR_SIZES, BalancedMatrix, best_vector_size
from refimpl.sparse.cost import spmm_cost
from refimpl.sparse.formats import BSRMatrix, CSRMatrix
from refimpl.sparse.kernels import balanced_spmm, bsr_spmm, csr_spmm
from refimpl.sparse.vector_block import VectorBlockMatrix, best_vector_block
from refimpl.sparse.vector_block_spmm import vector_block_spmm

__all__ = [
    "ENGINES",
    "FORMATS",
    "IM2COL_CHUNK_BYTES",
    "BalancedGemm",
    "BsrGemm",
    "CompactGemm",
    "CsrGemm",
    "DenseGemm",
    "GemmOperator",
    "Identity",
    "InferenceConv2d",
    "InferenceLinear",
    "InferenceReLU",
    "VectorBlockGemm",
    "make_operator",
    "sparse_conv2d_forward",
    "sparse_linear_forward",
]

#: Storage formats of one layer's GEMM (``"auto"`` is a per-layer choice among them, see the engine).
FORMATS = ("dense", "compact", "csr", "bsr", "balanced", "vector_block")
#: Kernel engines (see the module notes); the shared tuple of :mod:`refimpl._validation`.
ENGINES = SPARSE_ENGINES
#: Size of the im2col buffer of one chunk of images (see :func:`sparse_conv2d_forward`): a few MB, the
#: order of the last-level cache. Larger chunks give the GEMM more columns, smaller ones stay in cache.
IM2COL_CHUNK_BYTES = 4 << 20


def _kernel_engine(engine: str) -> str:
    """Return the im2col engine: scipy has no im2col, it uses the numba one."""
    return "numpy" if engine == "numpy" else "numba"


# --------------------------------------------------------------------------------------------------------
# GEMM operators: one stored W_g (M, K) and the product W_g @ X
# --------------------------------------------------------------------------------------------------------


def _pixels(cols: np.ndarray, n: int) -> int:
    """Output pixels per image, ``P`` of ``cols`` (K', n·P); explicit because K' or M' may be 0."""
    return cols.shape[1] // n if n else 0


class GemmOperator:
    """A layer's GEMM view ``W_g`` (M, K) in some storage format, and the products with it.

    Attributes
    ----------
    format : str
        One of :data:`FORMATS`.
    shape : tuple of int
        ``(M, K)``, the logical GEMM view.
    input_rows : ndarray of int or None
        The columns of ``W_g`` the product reads, i.e. the rows of ``X`` it needs (``None``: all ``K``).
        A convolution passes them to ``im2col(..., rows=...)``, a linear layer to ``x[:, input_rows]``.
    output_rows : ndarray of int or None
        The rows of ``Y`` the product computes (``None``: all ``M``); the other rows are zero.
    """

    format = ""

    def __init__(self, w2d: np.ndarray) -> None:
        self.shape = tuple(int(d) for d in w2d.shape)
        self.dtype = w2d.dtype
        self.input_rows: np.ndarray | None = None
        self.output_rows: np.ndarray | None = None

    def matmul(self, x: np.ndarray) -> np.ndarray:
        """``W_g[output_rows][:, input_rows] @ x`` for ``x`` of shape (len(input_rows), N)."""
        raise NotImplementedError

    def matmul_images(self, cols: np.ndarray, n: int) -> np.ndarray:
        """Compute the product for ``n`` images: ``cols`` (K', n·P) -> (n, M', P), the NCHW layout."""
        y = self.matmul(cols)
        return np.ascontiguousarray(y.reshape(y.shape[0], n, _pixels(cols, n)).transpose(1, 0, 2))

    def matmul_transposed(self, x: np.ndarray) -> np.ndarray:
        """``x @ W_g^T`` restricted like :meth:`matmul`: ``x`` (N, K') -> (N, M'), a linear layer."""
        return np.ascontiguousarray(self.matmul(x.T).T)

    def toarray(self) -> np.ndarray:
        """Return the dense ``(M, K)`` matrix this operator multiplies by (0 where nothing is stored)."""
        raise NotImplementedError

    def cost(self, n_cols: int) -> dict:
        """MACs, FLOPs and bytes of one product with ``n_cols`` columns (``spmm_cost``)."""
        raise NotImplementedError

    @property
    def nnz(self) -> int:
        """Stored values (dense: all ``M·K``; compact: ``M'·K'``; CSR: nonzeros; BSR: block entries)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype})"


class DenseGemm(GemmOperator):
    """Dense ``W_g``, zeros included: the BLAS baseline."""

    format = "dense"

    def __init__(self, w2d: np.ndarray) -> None:
        super().__init__(w2d)
        self.w = np.ascontiguousarray(w2d)

    def matmul(self, x):
        """``W_g @ x`` by BLAS."""
        return self.w @ x

    def matmul_images(self, cols, n):
        """One GEMM per image, on a view of ``cols``."""
        # One GEMM per image on a view of cols: writes NCHW directly (see the module notes).
        return np.matmul(self.w, cols.reshape(cols.shape[0], n, _pixels(cols, n)).transpose(1, 0, 2))

    def matmul_transposed(self, x):
        """``x @ W_g^T`` by BLAS."""
        return x @ self.w.T  # BLAS reads the transpose in place

    def toarray(self):
        """Return a copy of the stored dense matrix."""
        return self.w.copy()

    def cost(self, n_cols):
        """Dense GEMM cost: ``M·K·n_cols`` MACs."""
        return spmm_cost(self.w, n_cols, format="dense")

    @property
    def nnz(self):
        """Stored values: every entry of the dense matrix."""
        return int(self.w.size)


class CompactGemm(DenseGemm):
    r"""Dense product on the live rows and columns only: :math:`W_c = W_g[R, K]`.

    :math:`R = \{i : W_{g,i\cdot} \ne 0\}` (kept filters / neurons) and
    :math:`K = \{k : W_{g,\cdot k} \ne 0\}` (kept shapes / input features).
    """

    format = "compact"

    def __init__(self, w2d: np.ndarray) -> None:
        nonzero = w2d != 0
        rows = np.flatnonzero(nonzero.any(axis=1))
        cols = np.flatnonzero(nonzero.any(axis=0))
        super().__init__(np.ascontiguousarray(w2d[np.ix_(rows, cols)]))
        self.shape = tuple(int(d) for d in w2d.shape)  # the logical view, not the compact one
        m, k = self.shape
        # None when nothing is cut: no gather of the input, no scatter of the output.
        self.output_rows = None if rows.size == m else rows
        self.input_rows = None if cols.size == k else cols

    def toarray(self):
        """Return ``W_c`` scattered back into an ``(M, K)`` array."""
        m, k = self.shape
        out = np.zeros((m, k), dtype=self.dtype)
        rows = np.arange(m) if self.output_rows is None else self.output_rows
        cols = np.arange(k) if self.input_rows is None else self.input_rows
        out[np.ix_(rows, cols)] = self.w
        return out

    def cost(self, n_cols):
        """Compact dense cost: ``M'·K'·n_cols`` MACs."""
        # spmm_cost's compact model counts the same M'·K' on the logical matrix.
        return spmm_cost(self.toarray(), n_cols, format="compact")


class _SparseGemm(GemmOperator):
    """What :class:`CsrGemm` and :class:`BsrGemm` share: the stored matrix ``a`` and its scipy copy.

    ``a`` (a :class:`~refimpl.sparse.formats.CSRMatrix` or :class:`~refimpl.sparse.formats.BSRMatrix`)
    gives the dense form and, through :func:`~refimpl.sparse.cost.spmm_cost`, the cost; with the
    ``"scipy"`` engine it is converted to ``scipy.sparse`` once, here, so products time only the SpMM.
    """

    def __init__(self, w2d: np.ndarray, a, engine: str) -> None:
        super().__init__(w2d)
        self.engine = check_engine(engine, ENGINES)
        self.a = a
        self._scipy = a.to_scipy() if engine == "scipy" else None

    def toarray(self):
        """Return the stored matrix as a dense ``(M, K)`` array (BSR edge padding cropped)."""
        return self.a.toarray()

    def cost(self, n_cols):
        """Return the cost: stored entries times ``n_cols`` MACs, plus the index traffic (``spmm_cost``)."""
        return spmm_cost(self.a, n_cols)


class CsrGemm(_SparseGemm):
    """``W_g`` as a :class:`~refimpl.sparse.formats.CSRMatrix` (exact zeros dropped)."""

    format = "csr"

    def __init__(self, w2d: np.ndarray, engine: str = "numba") -> None:
        super().__init__(w2d, CSRMatrix.from_dense(w2d), engine)

    def matmul(self, x):
        """Compute ``A @ x`` by :func:`~refimpl.sparse.kernels.csr_spmm` (or the prebuilt scipy matrix)."""
        if self._scipy is not None:
            return np.asarray(self._scipy @ x)
        return csr_spmm(self.a, x, engine=self.engine)

    @property
    def nnz(self):
        """Stored nonzeros."""
        return self.a.nnz


class BsrGemm(_SparseGemm):
    """``W_g`` as a :class:`BSRMatrix` of ``block_shape`` tiles (zero tiles dropped)."""

    format = "bsr"

    def __init__(self, w2d: np.ndarray, block_shape=(4, 4), engine: str = "numba") -> None:
        super().__init__(w2d, BSRMatrix.from_dense(w2d, block_shape=tuple(block_shape)), engine)

    def matmul(self, x):
        """Compute ``A @ x`` by :func:`~refimpl.sparse.kernels.bsr_spmm` (or the prebuilt scipy matrix)."""
        if self._scipy is None:
            return bsr_spmm(self.a, x, engine=self.engine)
        # scipy's BSR has the padded shape: pad X with zero rows, crop Y's padding rows.
        m, k = self.shape
        kp = self.a.padded_shape[1]
        if kp != k:
            x = np.concatenate([x, np.zeros((kp - k, x.shape[1]), dtype=x.dtype)])
        return np.asarray(self._scipy @ x)[:m]

    @property
    def nnz(self):
        """Stored block entries (zeros inside kept blocks and edge padding included)."""
        return int(self.a.data.size)


class BalancedGemm(_SparseGemm):
    """``W_g`` as a :class:`~refimpl.sparse.balanced.BalancedMatrix` (exact zeros dropped).

    ``vector_size=None`` takes the ``V`` of :data:`~refimpl.sparse.balanced.VECTOR_SIZES` that stores the
    nonzeros in the fewest slots (:func:`~refimpl.sparse.balanced.best_vector_size`): the pruning's own
    ``V`` for a balanced or N:M layer. The ``"scipy"`` engine multiplies scipy's CSR of the same matrix.
    """

    format = "balanced"

    def __init__(self, w2d: np.ndarray, vector_size: int | None = None, engine: str = "numba") -> None:
        if vector_size is None:
            vector_size, _ = best_vector_size(w2d != 0)
        super().__init__(w2d, BalancedMatrix.from_dense(w2d, vector_size=vector_size), engine)
        self.vector_size = self.a.vector_size

    def matmul(self, x):
        """Compute ``A @ x`` by :func:`~refimpl.sparse.kernels.balanced_spmm` (or scipy's CSR of it)."""
        if self._scipy is not None:
            return np.asarray(self._scipy @ x)
        return balanced_spmm(self.a, x, engine=self.engine)

    @property
    def nnz(self):
        """Stored slots inside the matrix (padding zeros of vectors with fewer than ``k`` included)."""
        return self.a.nnz


class VectorBlockGemm(_SparseGemm):
    """``W_g`` as a :class:`~refimpl.sparse.vector_block.VectorBlockMatrix` (exact zeros dropped).

    ``block_shape`` is the format's tile; ``vector_size=None`` takes the ``V`` dividing its width that
    stores the nonzeros in the fewest slots (:func:`~refimpl.sparse.vector_block.best_vector_block`): the
    pruning's own ``V`` for a vector ∧ block layer of that tile. The ``"scipy"`` engine multiplies scipy's
    CSR of the same matrix.
    """

    format = "vector_block"

    def __init__(self, w2d: np.ndarray, block_shape=(4, 4), vector_size: int | None = None,
                 engine: str = "numba") -> None:
        if vector_size is None:  # the tile's own width always divides it: a candidate in any case
            bw = check_block_shape(block_shape)[1]
            vector_size = best_vector_block(w2d != 0, [block_shape], (*VECTOR_SIZES, bw)).vector_size
        a = VectorBlockMatrix.from_dense(w2d, block_shape=block_shape, vector_size=vector_size)
        super().__init__(w2d, a, engine)
        self.block_shape = self.a.block_shape
        self.vector_size = self.a.vector_size

    def matmul(self, x):
        """Compute ``A @ x`` by :func:`~refimpl.sparse.vector_block_spmm.vector_block_spmm` (or scipy)."""
        if self._scipy is not None:
            return np.asarray(self._scipy @ x)
        return vector_block_spmm(self.a, x, engine=self.engine)

    @property
    def nnz(self):
        """Stored slots inside the matrix (padding zeros of vectors with fewer than ``k`` included)."""
        return self.a.nnz


def make_operator(w2d: np.ndarray, format: str, *, block_shape=(4, 4),  # noqa: A002 - the issue's name
                  vector_size: int | None = None, engine: str = "numba") -> GemmOperator:
    """Build the :class:`GemmOperator` of ``format`` (one of :data:`FORMATS`) for the GEMM view ``w2d``.

    ``block_shape`` is the tile of ``"bsr"`` and ``"vector_block"``, ``vector_size`` the ``V`` of
    ``"balanced"`` (``None``: the best of :data:`~refimpl.sparse.balanced.VECTOR_SIZES`) and of
    ``"vector_block"`` (``None``: the best of those dividing the tile's width, and the width).
    """
    if format == "dense":
        return DenseGemm(w2d)
    if format == "compact":
        return CompactGemm(w2d)
    if format == "csr":
        return CsrGemm(w2d, engine)
    if format == "bsr":
        return BsrGemm(w2d, block_shape, engine)
    if format == "balanced":
        return BalancedGemm(w2d, vector_size, engine)
    if format == "vector_block":
        return VectorBlockGemm(w2d, block_shape, vector_size, engine)
    raise ValueError(f"format must be one of {FORMATS}, got {format!r}")


# --------------------------------------------------------------------------------------------------------
# functional forward passes
# --------------------------------------------------------------------------------------------------------


def _scatter_rows(y: np.ndarray, rows: np.ndarray | None, m: int, axis: int) -> np.ndarray:
    """Place the computed rows ``y`` at ``rows`` of an output with ``m`` rows along ``axis`` (others 0)."""
    if rows is None:
        return y
    shape = list(y.shape)
    shape[axis] = m
    out = np.zeros(shape, dtype=y.dtype)
    index = [slice(None)] * y.ndim
    index[axis] = rows
    out[tuple(index)] = y
    return out


def sparse_conv2d_forward(x: np.ndarray, op: GemmOperator, b: np.ndarray | None, kernel_size: tuple[int, int],
                          stride: int = 1, padding: int = 0, engine: str = "numba") -> np.ndarray:
    r"""Convolution as ``op @ im2col(x)``, forward only.

    .. math:: y_{n f} = \sum_{k} W_{g, f k}\; \mathrm{cols}_{k,(n, o_h, o_w)} + b_f

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    op : GemmOperator, shape (F, C·KH·KW)
    b : ndarray, shape (F,) or None
    kernel_size : (int, int)
        ``(KH, KW)``.
    stride, padding : int
    engine : {"numba", "numpy", "scipy"}
        The im2col kernel (scipy: numba's); the SpMM engine is the operator's own.

    Returns
    -------
    ndarray, shape (N, F, OH, OW)
        Only the rows ``op.input_rows`` of ``im2col(x)`` are built; filters outside ``op.output_rows``
        output their bias. The batch is processed in chunks whose im2col matrix holds about
        :data:`IM2COL_CHUNK_BYTES`.
    """
    x = check_float_array(x, "x", 4)
    kh, kw = kernel_size
    f, k = op.shape
    if x.shape[1] * kh * kw != k:
        raise ValueError(f"x has {x.shape[1]} channels; the layer's GEMM view {op.shape} needs "
                         f"{k // (kh * kw)}")
    n = x.shape[0]
    oh = conv_output_size(x.shape[2], kh, stride, padding, name="kernel height")
    ow = conv_output_size(x.shape[3], kw, stride, padding, name="kernel width")
    k_used = k if op.input_rows is None else op.input_rows.size
    out = np.empty((n, f, oh * ow), dtype=np.result_type(x.dtype, op.dtype))
    # A chunk of images at a time: the im2col matrix of a whole batch is K·KH·KW times the input (300 MB
    # for VGG-small's conv2 at batch 256), and a buffer that large is written and read from main memory
    # (plus fresh-page faults) instead of the caches. Chunking changes no result: each image's columns
    # are independent.
    chunk = max(1, IM2COL_CHUNK_BYTES // max(1, k_used * oh * ow * x.itemsize))
    for i0 in range(0, n, chunk):
        i1 = min(n, i0 + chunk)
        cols = im2col(x[i0:i1], kh, kw, stride, padding, rows=op.input_rows, engine=_kernel_engine(engine))
        y = op.matmul_images(cols, i1 - i0)  # (n_chunk, F', OH*OW)
        out[i0:i1] = _scatter_rows(y, op.output_rows, f, axis=1)
    if b is not None:
        out += b[:, None]
    return out.reshape(n, f, oh, ow)


def sparse_linear_forward(x: np.ndarray, op: GemmOperator, b: np.ndarray | None) -> np.ndarray:
    r"""Linear layer ``y = x W^T + b`` with ``W`` held by ``op``, forward only.

    Parameters
    ----------
    x : ndarray, shape (N, IN)
    op : GemmOperator, shape (OUT, IN)
    b : ndarray, shape (OUT,) or None

    Returns
    -------
    ndarray, shape (N, OUT)
        Only the features ``op.input_rows`` of ``x`` are read; outputs outside ``op.output_rows`` are ``b``.
    """
    x = check_float_array(x, "x", 2)
    m, k = op.shape
    if x.shape[1] != k:
        raise ValueError(f"x must have shape (N, {k}), got {x.shape}")
    if op.input_rows is not None:
        x = x[:, op.input_rows]
    y = _scatter_rows(op.matmul_transposed(x), op.output_rows, m, axis=1)
    if b is not None:
        y = y + b
    return y


# --------------------------------------------------------------------------------------------------------
# layer classes (forward only)
# --------------------------------------------------------------------------------------------------------


class _ForwardOnly(Module):
    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__} is forward-only (an inference engine layer)")


class Identity(_ForwardOnly):
    """``y = x``: stands where a BatchNorm was folded into the preceding convolution."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return ``x`` unchanged."""
        return x


class InferenceReLU(_ForwardOnly):
    """``y = max(x, 0)`` in one pass, without the mask a training ReLU keeps for its backward pass.

    Measured in ``paper_repro/bench_inference.py``: the element-wise layers are a large share of a pruned
    network's time (their work shrinks only with the channel count), so the training ReLU's extra pass
    (mask, then select) matters. (A NaN stays NaN here; the training ReLU maps it to 0.)
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return ``max(x, 0)`` (a new array; the input is left alone)."""
        return np.maximum(x, np.zeros((), dtype=x.dtype))


class InferenceConv2d(_ForwardOnly):
    """A convolution whose GEMM runs through a :class:`GemmOperator` (no parameters, no gradients).

    Parameters
    ----------
    op : GemmOperator, shape (F, C·KH·KW)
    bias : ndarray, shape (F,) or None
    kernel_size : (int, int)
    stride, padding : int
    engine : {"numba", "numpy", "scipy"}
    """

    def __init__(self, op: GemmOperator, bias: np.ndarray | None, kernel_size: tuple[int, int],
                 stride: int = 1, padding: int = 0, engine: str = "numba") -> None:
        super().__init__()
        self.op = op
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=op.dtype)
        self.kernel_size = (int(kernel_size[0]), int(kernel_size[1]))
        self.stride = check_positive_int(stride, "stride")
        self.padding = check_positive_int(padding, "padding", minimum=0)
        self.engine = check_engine(engine, ENGINES)
        self.training = False

    @property
    def format(self) -> str:
        """The operator's storage format."""
        return self.op.format

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, C, H, W) -> (N, F, OH, OW)."""
        return sparse_conv2d_forward(x, self.op, self.bias, self.kernel_size, self.stride, self.padding,
                                     self.engine)

    def extra_repr(self) -> str:
        """Show the format, the GEMM shape and the settings."""
        return (f"{self.format}, gemm={self.op.shape}, nnz={self.op.nnz}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")


class InferenceLinear(_ForwardOnly):
    """A linear layer whose product runs through a :class:`GemmOperator`.

    Parameters
    ----------
    op : GemmOperator, shape (OUT, IN)
    bias : ndarray, shape (OUT,) or None
    """

    def __init__(self, op: GemmOperator, bias: np.ndarray | None) -> None:
        super().__init__()
        self.op = op
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=op.dtype)
        self.training = False

    @property
    def format(self) -> str:
        """The operator's storage format."""
        return self.op.format

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, IN) -> (N, OUT)."""
        return sparse_linear_forward(x, self.op, self.bias)

    def extra_repr(self) -> str:
        """Show the format and the GEMM shape."""
        return f"{self.format}, gemm={self.op.shape}, nnz={self.op.nnz}"
