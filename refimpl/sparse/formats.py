r"""Compressed sparse row (CSR) and block-CSR (BSR) matrices, with a structural validator.

Both formats store a 2-D matrix :math:`A \in \mathbb{R}^{M \times K}` (a layer's GEMM view, section 5 of
the spec) row by row. They are the inputs of the SpMM kernels in :mod:`refimpl.sparse.kernels`.

**CSR.** Row ``i`` owns the stored entries ``indptr[i]:indptr[i+1]``; entry ``p`` sits in column
``indices[p]`` and has the value ``data[p]``:

.. math:: A_{i,\,\mathrm{indices}[p]} = \mathrm{data}[p], \qquad
          \mathrm{indptr}[i] \le p < \mathrm{indptr}[i+1].

**BSR.** The matrix is cut into ``bh × bw`` tiles (``block_shape``). Block row ``I`` owns the dense
blocks ``data[indptr[I]:indptr[I+1]]``, each of shape ``(bh, bw)``; block ``p`` covers rows
``I·bh .. I·bh+bh-1`` and columns ``indices[p]·bw .. indices[p]·bw+bw-1``.

**Shapes not divisible by the block shape (choice: pad, do not raise).** A pruned conv layer's GEMM view
rarely has dimensions that are multiples of 8 or 16, so the format pads: the block grid has
``ceil(M/bh) × ceil(K/bw)`` cells (``padded_shape``), the edge blocks extend past row ``M`` / column
``K``, and those padding entries must be zero (the validator checks it). ``shape`` stays the logical
``(M, K)``: :meth:`BSRMatrix.toarray` crops, and the kernels never read past row ``K`` of ``X`` nor
write past row ``M`` of ``Y``. :meth:`BSRMatrix.to_scipy` returns a matrix of ``padded_shape`` because
``scipy.sparse.bsr_matrix`` requires divisible shapes.

Conventions shared by both formats (the same as ``scipy.sparse`` in canonical form): ``indptr`` starts at
0, is non-decreasing and ends at the number of stored entries (blocks); column (block-column) indices are
sorted and unique within each row; ``indices`` and ``indptr`` share one integer dtype (``int32`` when it
can hold every index, else ``int64``); ``data`` is ``float32`` or ``float64``. **Explicit zeros** (a
stored value that is 0) are legal; :func:`check_format` counts them in its report instead of failing,
because a kept block of a block mask usually contains some.

**Every matrix is valid (choice: the constructors establish the full invariant).** The containers are
frozen dataclasses, and construction runs the full :func:`check_format` (O(nnz): in-range, sorted, unique
indices, a monotone ``indptr``, finite values, zero padding) after taking **its own read-only copies** of
the arrays, stored on immutable memory, so neither the caller's arrays (changed afterwards) nor the
matrix's own (``flags.writeable`` cannot be switched back on) can break it. The kernels of
:mod:`refimpl.sparse.kernels` rely on this and read the index arrays without bounds checks: a malformed
matrix is a ``ValueError`` when it is built, never a crash or a wrong product later. Index and value
arrays in non-native byte order are converted to native order on the way in.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from refimpl._validation import as_float_array, check_block_shape, check_ndim

__all__ = [
    "BSRMatrix",
    "CSRMatrix",
    "FormatReport",
    "check_format",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))


# --------------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------------


def _owned_frozen(arr) -> np.ndarray:
    """Return a C-contiguous, native-byte-order copy of ``arr`` that nobody can write to.

    The copy lives in an immutable ``bytes`` object, so unlike a read-only view of a writable array its
    ``WRITEABLE`` flag cannot be set again; the caller's array is never shared. (An unaligned buffer,
    which CPython does not produce, falls back to an ordinary read-only copy.)
    """
    arr = np.asarray(arr)
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype.hasobject:  # the validator rejects the dtype; tobytes() would copy pointers
        return arr
    out = np.frombuffer(np.ascontiguousarray(arr).tobytes(), dtype=arr.dtype).reshape(arr.shape)
    if not out.flags.aligned:  # pragma: no cover - CPython's bytes payloads are 16-byte aligned
        out = np.array(arr, order="C")
        out.flags.writeable = False
    return out


def _index_dtype(max_value: int) -> np.dtype:
    """``int32`` when every index and offset fits (half the index bytes moved), else ``int64``."""
    return np.dtype(np.int32) if max_value <= np.iinfo(np.int32).max else np.dtype(np.int64)


def _check_shape(shape, name: str = "shape") -> tuple[int, int]:
    if not isinstance(shape, tuple | list) or len(shape) != 2:
        raise ValueError(f"{name} must be a pair (M, K), got {shape!r}")
    out = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 0:
            raise ValueError(f"{name} must hold two non-negative integers, got {shape!r}")
        out.append(int(d))
    return out[0], out[1]


def _dense_and_keep(w, mask, drop_zeros: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``w`` (2-D, finite, float) and return it with the boolean pattern of entries to store."""
    w = as_float_array(w, "w", ndim=2)
    if w.dtype not in _FLOAT_DTYPES:  # float16 / longdouble: the kernels are compiled for these two only
        w = w.astype(np.float64)
    if mask is None:
        keep = np.ones(w.shape, dtype=bool)
    else:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"mask must be a boolean keep mask, got dtype {mask.dtype}")
        if mask.shape != w.shape:
            raise ValueError(f"mask must have the shape of w {w.shape}, got {mask.shape}")
        keep = mask
    if drop_zeros:
        keep = keep & (w != 0)
    return w, keep


@dataclass(frozen=True)
class FormatReport:
    """What :func:`check_format` found in a structurally valid matrix.

    Attributes
    ----------
    format : str
        ``"csr"``, ``"bsr"``, ``"balanced"`` (:mod:`refimpl.sparse.balanced`) or ``"vector_block"``
        (:mod:`refimpl.sparse.vector_block`).
    n_stored : int
        Stored entries: ``nnz`` for CSR, ``n_blocks · bh · bw`` for BSR (padding included).
    explicit_zeros : int or None
        Stored values equal to 0 inside the logical shape (legal, but work a kernel does for nothing).
        ``None`` after a cheap check (``full_check=False``), which does not read ``data``.
    zero_blocks : int or None
        BSR and vector ∧ block only: stored blocks whose every value is 0 (``None`` for the other formats
        or a cheap check).
    """

    format: str
    n_stored: int
    explicit_zeros: int | None
    zero_blocks: int | None = None


# --------------------------------------------------------------------------------------------------------
# CSR
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CSRMatrix:
    """A compressed-sparse-row matrix of logical shape ``(M, K)``.

    Parameters
    ----------
    shape : tuple of int
        ``(M, K)``.
    data : ndarray, shape (nnz,), float32 or float64
        Stored values, row after row.
    indices : ndarray, shape (nnz,), int32 or int64
        Column of each stored value; sorted and unique within a row.
    indptr : ndarray, shape (M + 1,), same dtype as ``indices``
        Row ``i`` owns ``data[indptr[i]:indptr[i+1]]``.

    Notes
    -----
    Construction runs the full :func:`check_format` on private, read-only copies of the arrays (see the
    module notes), so every ``CSRMatrix`` is valid. Build one with :meth:`from_dense` or
    :meth:`from_scipy` rather than by hand.

    Examples
    --------
    >>> import numpy as np
    >>> a = CSRMatrix.from_dense(np.array([[0., 2., 0.], [1., 0., 3.]]))
    >>> a.indptr, a.indices, a.data
    (array([0, 1, 3], dtype=int32), array([1, 0, 2], dtype=int32), array([2., 1., 3.]))
    >>> a.toarray()
    array([[0., 2., 0.],
           [1., 0., 3.]])
    """

    shape: tuple[int, int]
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape))
        for name in ("data", "indices", "indptr"):
            object.__setattr__(self, name, _owned_frozen(getattr(self, name)))
        check_format(self, full_check=True)  # the full invariant: the kernels trust it

    def __reduce__(self):
        # copy / deepcopy / pickle rebuild through the constructor: validated, frozen copies again
        return type(self), (self.shape, self.data, self.indices, self.indptr)

    # ---- constructors -----------------------------------------------------------------------------------

    @classmethod
    def from_dense(cls, w, mask=None, *, drop_zeros: bool = True) -> CSRMatrix:
        r"""Compress a dense matrix, keeping the entries selected by ``mask``.

        Parameters
        ----------
        w : array_like, shape (M, K)
            Finite values; float32 and float64 are kept, other dtypes become float64.
        mask : array_like of bool, shape (M, K), optional
            Keep mask (``True`` = store). Entries outside the mask are dropped whatever their value.
            Default: every entry is a candidate.
        drop_zeros : bool, default True
            Also drop candidates whose value is 0. With ``False`` the stored pattern is exactly ``mask``
            (a pruned-but-zero weight inside the mask is stored as an explicit zero), which keeps the
            structure of a frozen mask even when training has driven a kept weight to 0.

        Returns
        -------
        CSRMatrix
            Same dtype as ``w``; stores ``w[keep]`` in row-major order, ``keep = mask ∧ (w ≠ 0)`` (or
            ``mask`` alone without ``drop_zeros``).
        """
        w, keep = _dense_and_keep(w, mask, drop_zeros)
        m, k = w.shape
        rows, cols = np.nonzero(keep)  # row-major order: rows ascending, columns sorted within a row
        idx = _index_dtype(max(k, rows.size))
        indptr = np.zeros(m + 1, dtype=idx)
        np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
        return cls((m, k), w[rows, cols], cols.astype(idx), indptr)

    @classmethod
    def from_scipy(cls, mat) -> CSRMatrix:
        """Copy a ``scipy.sparse`` matrix (any format; converted to canonical CSR first).

        Duplicates are summed and indices sorted, as ``scipy`` canonicalisation does; explicit zeros are
        kept (drop them beforehand with ``mat.eliminate_zeros()`` if unwanted).
        """
        if not sp.issparse(mat):
            raise TypeError(f"mat must be a scipy.sparse matrix or array, got {type(mat).__name__}")
        csr = sp.csr_matrix(mat, copy=True)
        csr.sum_duplicates()  # also sorts the indices
        data = csr.data
        if data.dtype not in _FLOAT_DTYPES:
            data = data.astype(np.float64)
        data = as_float_array(data, "mat.data")  # rejects NaN/inf
        idx = _index_dtype(max(csr.shape[1], csr.nnz))
        return cls(csr.shape, data, csr.indices.astype(idx), csr.indptr.astype(idx))

    # ---- conversions ------------------------------------------------------------------------------------

    def toarray(self) -> np.ndarray:
        """Return the dense ``(M, K)`` matrix (a new writable array of dtype ``self.dtype``)."""
        out = np.zeros(self.shape, dtype=self.dtype)
        rows = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        out[rows, self.indices] = self.data
        return out

    def to_scipy(self) -> sp.csr_matrix:
        """Return a ``scipy.sparse.csr_matrix`` holding copies of the arrays."""
        return sp.csr_matrix(
            (self.data.copy(), self.indices.copy(), self.indptr.copy()), shape=self.shape
        )

    # ---- properties -------------------------------------------------------------------------------------

    @property
    def dtype(self) -> np.dtype:
        """Value dtype (float32 or float64)."""
        return self.data.dtype

    @property
    def nnz(self) -> int:
        """Number of stored entries (explicit zeros included)."""
        return int(self.indptr[-1])

    @property
    def density(self) -> float:
        """``nnz / (M·K)``; 0 for an empty shape."""
        size = self.shape[0] * self.shape[1]
        return self.nnz / size if size else 0.0

    def check_format(self, full_check: bool = True) -> FormatReport:
        """Validate the structure; see :func:`check_format`."""
        return check_format(self, full_check=full_check)

    def __repr__(self) -> str:
        return f"CSRMatrix(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype})"


# --------------------------------------------------------------------------------------------------------
# BSR
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BSRMatrix:
    """A block-compressed-sparse-row matrix of logical shape ``(M, K)`` with ``bh × bw`` blocks.

    Parameters
    ----------
    shape : tuple of int
        Logical ``(M, K)``; need not be divisible by ``block_shape`` (the block grid is padded, see the
        module notes).
    data : ndarray, shape (n_blocks, bh, bw), float32 or float64
        The stored dense blocks, block row after block row. Entries past row ``M`` or column ``K``
        (padding of edge blocks) must be zero.
    indices : ndarray, shape (n_blocks,), int32 or int64
        Block column of each block; sorted and unique within a block row, in ``[0, ceil(K/bw))``.
    indptr : ndarray, shape (ceil(M/bh) + 1,), same dtype as ``indices``
        Block row ``I`` owns ``data[indptr[I]:indptr[I+1]]``.
    block_shape : tuple of int
        ``(bh, bw)``; any positive sizes (the kernels are tuned for 1×4 … 16×16).

    Examples
    --------
    >>> import numpy as np
    >>> w = np.arange(1., 13.).reshape(3, 4)
    >>> mask = np.zeros((3, 4), dtype=bool); mask[:2, 2:] = True; mask[2, 0] = True
    >>> a = BSRMatrix.from_dense(w, mask, block_shape=(2, 2))
    >>> a.padded_shape, a.indptr, a.indices   # 3 rows -> 2 block rows, the last one padded
    ((4, 4), array([0, 1, 2], dtype=int32), array([1, 0], dtype=int32))
    >>> a.data[1]                              # row 3 of the block is padding
    array([[9., 0.],
           [0., 0.]])
    >>> a.toarray()
    array([[0., 0., 3., 4.],
           [0., 0., 7., 8.],
           [9., 0., 0., 0.]])
    """

    shape: tuple[int, int]
    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    block_shape: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape))
        object.__setattr__(self, "block_shape", check_block_shape(self.block_shape))
        for name in ("data", "indices", "indptr"):
            object.__setattr__(self, name, _owned_frozen(getattr(self, name)))
        check_format(self, full_check=True)  # the full invariant: the kernels trust it

    def __reduce__(self):
        return type(self), (self.shape, self.data, self.indices, self.indptr, self.block_shape)

    # ---- constructors -----------------------------------------------------------------------------------

    @classmethod
    def from_dense(cls, w, mask=None, *, block_shape=(4, 4), drop_zeros: bool = True) -> BSRMatrix:
        r"""Compress a dense matrix into ``bh × bw`` blocks.

        A block is stored when it holds at least one kept entry, ``keep = mask ∧ (w ≠ 0)`` (or ``mask``
        alone without ``drop_zeros``). A stored block is dense: its entries outside ``keep`` are stored as
        zeros, so ``toarray()`` equals ``where(keep, w, 0)`` exactly.

        Parameters
        ----------
        w : array_like, shape (M, K)
            Finite values; float32 and float64 are kept, other dtypes become float64.
        mask : array_like of bool, shape (M, K), optional
            Keep mask; entries outside it are dropped (stored as 0 or not stored at all).
        block_shape : tuple of int, default (4, 4)
            ``(bh, bw)``. ``M`` and ``K`` need not be multiples: the last block row / column is padded
            with zeros inside the format.
        drop_zeros : bool, default True
            Treat zero values as not kept, so an all-zero block inside the mask is not stored.

        Returns
        -------
        BSRMatrix
        """
        bh, bw = check_block_shape(block_shape)
        w, keep = _dense_and_keep(w, mask, drop_zeros)
        m, k = w.shape
        mb, kb = math.ceil(m / bh), math.ceil(k / bw)
        # Pad to the block grid, then view it as (block row, row in block, block col, col in block).
        wp = np.zeros((mb * bh, kb * bw), dtype=w.dtype)
        wp[:m, :k] = np.where(keep, w, 0)
        kp = np.zeros(wp.shape, dtype=bool)
        kp[:m, :k] = keep
        tiles = wp.reshape(mb, bh, kb, bw).transpose(0, 2, 1, 3)  # (mb, kb, bh, bw)
        block_kept = kp.reshape(mb, bh, kb, bw).any(axis=(1, 3))  # (mb, kb)
        brow, bcol = np.nonzero(block_kept)
        idx = _index_dtype(max(kb, brow.size))
        indptr = np.zeros(mb + 1, dtype=idx)
        np.cumsum(np.bincount(brow, minlength=mb), out=indptr[1:])
        data = np.ascontiguousarray(tiles[brow, bcol])
        return cls((m, k), data, bcol.astype(idx), indptr, (bh, bw))

    @classmethod
    def from_scipy(cls, mat, *, block_shape=None, shape=None) -> BSRMatrix:
        """Copy a ``scipy.sparse`` matrix into BSR.

        Parameters
        ----------
        mat : scipy.sparse matrix or array
            A ``bsr`` input keeps its blocks (and its explicit zeros); any other format is converted by
            ``scipy`` with ``block_shape`` (required then).
        block_shape : tuple of int, optional
            Block shape; must match ``mat.blocksize`` for a BSR input.
        shape : tuple of int, optional
            Logical shape when ``mat`` is a padded BSR (as returned by :meth:`to_scipy` for shapes not
            divisible by the block shape). Default ``mat.shape``.
        """
        if not sp.issparse(mat):
            raise TypeError(f"mat must be a scipy.sparse matrix or array, got {type(mat).__name__}")
        if mat.format == "bsr":
            if block_shape is not None and tuple(block_shape) != tuple(mat.blocksize):
                raise ValueError(
                    f"block_shape {tuple(block_shape)} differs from mat.blocksize {mat.blocksize}"
                )
            bsr = sp.bsr_matrix(mat, copy=True)
        else:
            if block_shape is None:
                raise ValueError("block_shape is required to convert a non-BSR scipy matrix")
            bh, bw = check_block_shape(block_shape)
            # scipy needs divisible shapes: pad with empty rows/columns first.
            m, k = mat.shape
            padded = (math.ceil(m / bh) * bh, math.ceil(k / bw) * bw)
            coo = sp.coo_matrix(mat)
            coo = sp.coo_matrix((coo.data, (coo.row, coo.col)), shape=padded)
            bsr = sp.bsr_matrix(coo, blocksize=(bh, bw))
            shape = mat.shape if shape is None else shape
        bsr.sum_duplicates()
        data = bsr.data
        if data.dtype not in _FLOAT_DTYPES:
            data = data.astype(np.float64)
        data = as_float_array(data, "mat.data")
        kb = bsr.shape[1] // bsr.blocksize[1]
        idx = _index_dtype(max(kb, bsr.indices.size))
        logical = bsr.shape if shape is None else _check_shape(shape)
        return cls(logical, data, bsr.indices.astype(idx), bsr.indptr.astype(idx), bsr.blocksize)

    # ---- conversions ------------------------------------------------------------------------------------

    def toarray(self) -> np.ndarray:
        """Return the dense ``(M, K)`` matrix (padding cropped; a new writable array)."""
        bh, bw = self.block_shape
        mb, kb = self.block_grid
        tiles = np.zeros((mb, kb, bh, bw), dtype=self.dtype)
        brow = np.repeat(np.arange(mb), np.diff(self.indptr))
        tiles[brow, self.indices] = self.data
        full = tiles.transpose(0, 2, 1, 3).reshape(mb * bh, kb * bw)
        return np.ascontiguousarray(full[: self.shape[0], : self.shape[1]])

    def to_scipy(self) -> sp.bsr_matrix:
        """Return a ``scipy.sparse.bsr_matrix`` of shape ``padded_shape`` holding copies of the arrays.

        ``padded_shape == shape`` whenever ``shape`` is divisible by ``block_shape``; otherwise the extra
        rows/columns are zero and ``BSRMatrix.from_scipy(m, shape=self.shape)`` gives ``self`` back.
        """
        return sp.bsr_matrix(
            (self.data.copy(), self.indices.copy(), self.indptr.copy()),
            shape=self.padded_shape,
            blocksize=self.block_shape,
        )

    # ---- properties -------------------------------------------------------------------------------------

    @property
    def dtype(self) -> np.dtype:
        """Value dtype (float32 or float64)."""
        return self.data.dtype

    @property
    def block_grid(self) -> tuple[int, int]:
        """``(ceil(M/bh), ceil(K/bw))``: the number of block rows and block columns."""
        return math.ceil(self.shape[0] / self.block_shape[0]), math.ceil(self.shape[1] / self.block_shape[1])

    @property
    def padded_shape(self) -> tuple[int, int]:
        """The shape of the block grid, ``block_grid · block_shape`` (≥ ``shape``)."""
        mb, kb = self.block_grid
        return mb * self.block_shape[0], kb * self.block_shape[1]

    @property
    def n_blocks(self) -> int:
        """Number of stored blocks."""
        return int(self.indptr[-1])

    @property
    def nnz(self) -> int:
        """Stored entries inside the logical shape (``scipy``'s ``nnz`` also counts the padding).

        Explicit zeros inside stored blocks are counted: this is the work a kernel does.
        """
        if self.n_blocks == 0:
            return 0
        bh, bw = self.block_shape
        mb, kb = self.block_grid
        rows_in = np.full(mb, bh)
        rows_in[-1] = self.shape[0] - (mb - 1) * bh
        cols_in = np.full(kb, bw)
        cols_in[-1] = self.shape[1] - (kb - 1) * bw
        brow = np.repeat(np.arange(mb), np.diff(self.indptr))
        return int(np.sum(rows_in[brow] * cols_in[self.indices]))

    @property
    def density(self) -> float:
        """``nnz / (M·K)`` with ``nnz`` as above (stored block entries, not nonzero values)."""
        size = self.shape[0] * self.shape[1]
        return self.nnz / size if size else 0.0

    @property
    def block_density(self) -> float:
        """Stored blocks over blocks in the grid."""
        mb, kb = self.block_grid
        return self.n_blocks / (mb * kb) if mb * kb else 0.0

    def check_format(self, full_check: bool = True) -> FormatReport:
        """Validate the structure; see :func:`check_format`."""
        return check_format(self, full_check=full_check)

    def __repr__(self) -> str:
        return (
            f"BSRMatrix(shape={self.shape}, block_shape={self.block_shape}, n_blocks={self.n_blocks}, "
            f"dtype={self.dtype})"
        )


# --------------------------------------------------------------------------------------------------------
# the validator
# --------------------------------------------------------------------------------------------------------


def _check_index_arrays(indices: np.ndarray, indptr: np.ndarray, n_rows: int, kind: str) -> None:
    """Cheap checks shared by both formats: index dtypes, ndim and lengths."""
    for name, arr in (("indices", indices), ("indptr", indptr)):
        if arr.dtype not in _INDEX_DTYPES:
            raise ValueError(f"{name} must be int32 or int64, got dtype {arr.dtype}")
        check_ndim(arr, name, 1)
    if indices.dtype != indptr.dtype:
        raise ValueError(
            "indices and indptr must share one dtype, "
            f"got indices {indices.dtype} and indptr {indptr.dtype}"
        )
    if indptr.size != n_rows + 1:
        raise ValueError(f"indptr must have {n_rows} + 1 = {n_rows + 1} entries ({kind}), got {indptr.size}")


def _check_structure(indices: np.ndarray, indptr: np.ndarray, n_cols: int, col_name: str) -> None:
    """O(nnz) checks: indptr starts at 0 and is monotone; indices in range, sorted and unique per row."""
    if indptr[0] != 0:
        raise ValueError(f"indptr[0] must be 0, got {indptr[0]}")
    steps = np.diff(indptr)
    if np.any(steps < 0):
        i = int(np.argmax(steps < 0))
        raise ValueError(
            f"indptr must be non-decreasing, but indptr[{i + 1}] = {indptr[i + 1]} "
            f"< indptr[{i}] = {indptr[i]}"
        )
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < 0 or hi >= n_cols:
            bad = lo if lo < 0 else hi
            raise ValueError(f"indices must lie in [0, {n_cols}) ({col_name}), found {bad}")
        # Within a row consecutive indices must increase strictly; across a row boundary anything goes.
        row_start = np.zeros(indices.size, dtype=bool)
        row_start[indptr[:-1][steps > 0]] = True
        bad = (np.diff(indices) <= 0) & ~row_start[1:]
        if np.any(bad):
            p = int(np.argmax(bad)) + 1
            row = int(np.searchsorted(indptr, p, side="right")) - 1
            what = "duplicate" if indices[p] == indices[p - 1] else "unsorted"
            raise ValueError(
                f"indices must be sorted and unique within each row: {what} index {indices[p]} after "
                f"{indices[p - 1]} in row {row} (positions {p - 1}, {p})"
            )


def check_format(mat, full_check: bool = True) -> FormatReport:
    """Validate the structure of a :class:`CSRMatrix`, :class:`BSRMatrix` or balanced matrix.

    Parameters
    ----------
    mat : CSRMatrix, BSRMatrix, BalancedMatrix or VectorBlockMatrix
        (the last two are checked by :func:`~refimpl.sparse.balanced.check_balanced` and
        :func:`~refimpl.sparse.vector_block.check_vector_block`)
    full_check : bool, default True
        ``False``: only the O(1) checks (dtypes, ndim, lengths, shapes).
        ``True``: also the O(nnz) checks on the index arrays and the values (what the constructors run,
        so a constructed matrix always passes; the report's counts are what this call is for).

    Returns
    -------
    FormatReport
        Counts of stored entries and of explicit zeros (legal; reported, not raised).

    Raises
    ------
    ValueError
        Naming the field that breaks an invariant: ``data`` (dtype, shape, NaN/inf, nonzero padding),
        ``indices`` (dtype, length, out of range, unsorted or duplicate within a row), ``indptr``
        (dtype, length, first entry, monotonicity, last entry), ``shape`` / ``block_shape``.
    TypeError
        When ``mat`` is none of the formats.

    Examples
    --------
    >>> import numpy as np
    >>> a = CSRMatrix((1, 3), np.array([1.0, 0.0]), np.array([0, 2], np.int32), np.array([0, 2], np.int32))
    >>> check_format(a)   # a stored zero is reported, not rejected
    FormatReport(format='csr', n_stored=2, explicit_zeros=1, zero_blocks=None)
    >>> CSRMatrix((1, 3), np.array([1.0, 2.0]), np.array([2, 0], np.int32), np.array([0, 2], np.int32))
    Traceback (most recent call last):
    ...
    ValueError: indices must be sorted and unique within each row: unsorted index 0 after 2 in row 0 ...
    """
    if isinstance(mat, CSRMatrix):
        return _check_csr(mat, full_check)
    if isinstance(mat, BSRMatrix):
        return _check_bsr(mat, full_check)
    # Imported here: the balanced format builds on this module's helpers.
    from refimpl.sparse.balanced import BalancedMatrix, check_balanced

    if isinstance(mat, BalancedMatrix):
        return check_balanced(mat, full_check)
    from refimpl.sparse.vector_block import VectorBlockMatrix, check_vector_block

    if isinstance(mat, VectorBlockMatrix):
        return check_vector_block(mat, full_check)
    raise TypeError(f"mat must be a CSRMatrix, BSRMatrix, BalancedMatrix or VectorBlockMatrix, "
                    f"got {type(mat).__name__}")


def _check_data_dtype(data: np.ndarray) -> None:
    if data.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"data must be float32 or float64, got dtype {data.dtype}")


def _check_csr(a: CSRMatrix, full_check: bool) -> FormatReport:
    m, k = _check_shape(a.shape)
    _check_data_dtype(a.data)
    check_ndim(a.data, "data", 1)
    _check_index_arrays(a.indices, a.indptr, m, "one per row plus one")
    if a.data.size != a.indices.size:
        raise ValueError(
            f"data and indices must have the same length, got data {a.data.size} and indices {a.indices.size}"
        )
    if a.indptr[-1] != a.indices.size:
        raise ValueError(f"indptr[-1] must equal len(indices) = {a.indices.size}, got {a.indptr[-1]}")
    if not full_check:
        return FormatReport("csr", int(a.indices.size), None)
    _check_structure(a.indices, a.indptr, k, "columns")
    if not np.all(np.isfinite(a.data)):
        raise ValueError("data contains NaN or inf")
    return FormatReport("csr", int(a.indices.size), int(np.count_nonzero(a.data == 0)))


def _check_bsr(a: BSRMatrix, full_check: bool) -> FormatReport:
    m, k = _check_shape(a.shape)
    bh, bw = check_block_shape(a.block_shape)
    mb, kb = math.ceil(m / bh), math.ceil(k / bw)
    _check_data_dtype(a.data)
    if a.data.ndim != 3 or a.data.shape[1:] != (bh, bw):
        raise ValueError(f"data must have shape (n_blocks, {bh}, {bw}) for block_shape {(bh, bw)}, "
                         f"got {a.data.shape}")
    _check_index_arrays(a.indices, a.indptr, mb, f"one per block row, ceil({m}/{bh}) = {mb}, plus one")
    if a.data.shape[0] != a.indices.size:
        raise ValueError(f"data must hold one block per entry of indices ({a.indices.size}), "
                         f"got {a.data.shape[0]} blocks")
    if a.indptr[-1] != a.indices.size:
        raise ValueError(f"indptr[-1] must equal len(indices) = {a.indices.size}, got {a.indptr[-1]}")
    n_stored = int(a.data.size)
    if not full_check:
        return FormatReport("bsr", n_stored, None, None)
    _check_structure(a.indices, a.indptr, kb, f"block columns, ceil({k}/{bw}) = {kb}")
    if not np.all(np.isfinite(a.data)):
        raise ValueError("data contains NaN or inf")
    # Entries of edge blocks past row M / column K are padding and must be zero.
    in_shape = np.ones((a.indices.size, bh, bw), dtype=bool)
    if m % bh and a.indices.size:
        last_row_blocks = slice(int(a.indptr[mb - 1]), int(a.indptr[mb]))
        in_shape[last_row_blocks, m - (mb - 1) * bh :, :] = False
    if k % bw:
        in_shape[a.indices == kb - 1, :, k - (kb - 1) * bw :] = False
    if np.any(a.data[~in_shape] != 0):
        raise ValueError(
            f"data: padding entries of edge blocks (past row {m} or column {k} of the {mb * bh}x{kb * bw} "
            "block grid) must be zero"
        )
    zeros = (a.data == 0) & in_shape
    zero_blocks = int(np.count_nonzero(np.all(a.data == 0, axis=(1, 2))))
    return FormatReport("bsr", n_stored, int(np.count_nonzero(zeros)), zero_blocks)

