r"""The vector ∧ block sparse format: block-CSR whose kept blocks are vector-sparse (Guo et al.).

Guo et al.'s mixed mask is the AND of a block mask (``bh × bw`` tiles of the GEMM view
:math:`A \in \mathbb{R}^{M \times K}`, only some kept) and a balanced mask (every length-``V`` vector of a
row keeps ``k`` entries; :mod:`refimpl.sparse.balanced`). The format stores exactly that: the kept blocks
are addressed as in block-CSR (``indptr`` per block row, a block column per block), and inside a block each
row is cut into ``bw / V`` vectors that keep ``k`` entries each, as fixed-width values and in-vector
offsets:

.. math:: A_{I b_h + r,\; J b_w + jV + \mathrm{offsets}[p, r, j, s]} = \mathrm{data}[p, r, j, s],
          \qquad \mathrm{indptr}[I] \le p < \mathrm{indptr}[I+1],\ J = \mathrm{indices}[p],

``data`` and ``offsets`` of shape ``(n_blocks, bh, bw / V, k)``; ``offsets`` (``uint8`` for ``V <= 256``)
strictly increasing within a vector. One block costs two block indices' worth of pointers, as in BSR, and
``bh · bw · k / V`` values plus as many one-byte offsets instead of ``bh · bw`` values: a BSR block that
stores only its kept entries.

**V divides bw (choice).** The vectors of a row must not straddle a block boundary, or a block would own
part of a vector and the fixed width would break; the balanced mask's vectors start at column 0 as the
block grid does, so a mask with ``V | bw`` is stored exactly. The constructor refuses other pairs.

**Padding.** As in :mod:`refimpl.sparse.formats` (BSR) and :mod:`refimpl.sparse.balanced`: a vector with
fewer than ``k`` kept entries (a block mask cuts a balanced one unevenly only at the edges; a kept weight
that is exactly 0) is padded with explicit zeros at its lowest free offsets; rows past ``M`` in the last
block row and slots whose column is past ``K`` in the last block column are padding and must hold 0 (the
validator checks it; the kernels skip them, never reading ``X`` past row ``K``).

**Every matrix is valid** (the choice of :mod:`refimpl.sparse.formats`): the constructor takes its own
read-only copies of the arrays and runs the full :func:`check_vector_block`, so a malformed matrix is a
``ValueError`` when it is built and the kernels read without bounds checks.

References
----------
.. [1] Guo et al., vector-wise AND block-wise mixed sparse masks without regularization, ISQED 2021 (as
   cited in refimpl's docs/ALGORITHMS.md; see :func:`refimpl.projections.project_vector_block`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from refimpl._validation import check_block_shape
from refimpl.sparse.balanced import (
    OFFSET_DTYPES,
    VECTOR_SIZES,
    _check_vector_size,
    check_offsets,
    vector_slots,
)
from refimpl.sparse.formats import (
    FormatReport,
    _check_data_dtype,
    _check_index_arrays,
    _check_shape,
    _check_structure,
    _dense_and_keep,
    _index_dtype,
    _owned_frozen,
)

__all__ = [
    "VECTOR_BLOCK_SHAPES",
    "VectorBlockLayout",
    "VectorBlockMatrix",
    "best_vector_block",
    "check_vector_block",
]

#: Block shapes :func:`best_vector_block` tries when none is given: the tiles of the benchmark (4×4) and of
#: the vector ∧ block runs of ``paper_repro/sweeps/guo`` (10×10), 8×8, and a one-row tile (1×16).
VECTOR_BLOCK_SHAPES = ((4, 4), (8, 8), (10, 10), (1, 16))


def _check_divides(vector_size: int, block_shape: tuple[int, int]) -> None:
    if block_shape[1] % vector_size:
        raise ValueError(
            f"vector_size must divide the block width: vector_size = {vector_size}, "
            f"block_shape = {block_shape} (a vector may not straddle two blocks)"
        )


def _padded_grid(w: np.ndarray, keep: np.ndarray, bh: int, bw: int):
    """``(tiles, kept, block_kept)``: ``w`` and ``keep`` on the padded grid as ``(mb, kb, bh, bw)`` tiles."""
    m, k = w.shape
    mb, kb = math.ceil(m / bh), math.ceil(k / bw)
    wp = np.zeros((mb * bh, kb * bw), dtype=w.dtype)
    wp[:m, :k] = np.where(keep, w, 0)
    kp = np.zeros(wp.shape, dtype=bool)
    kp[:m, :k] = keep
    tiles = wp.reshape(mb, bh, kb, bw).transpose(0, 2, 1, 3)
    kept = kp.reshape(mb, bh, kb, bw).transpose(0, 2, 1, 3)
    return tiles, kept, kept.any(axis=(2, 3))


@dataclass(frozen=True, eq=False)
class VectorBlockMatrix:
    """A vector ∧ block sparse matrix of logical shape ``(M, K)``: kept ``bh × bw`` blocks, ``k`` per vector.

    Parameters
    ----------
    shape : tuple of int
        ``(M, K)``; need not be divisible by ``block_shape`` (padded block grid, as BSR).
    data : ndarray, shape (n_blocks, bh, bw // V, k), float32 or float64
        The stored values of each kept block, row by row, vector by vector.
    offsets : ndarray, shape of ``data``, uint8, uint16, int32 or int64
        Each value's column inside its vector, in ``[0, V)``, strictly increasing within a vector.
    indices : ndarray, shape (n_blocks,), int32 or int64
        Block column of each block; sorted and unique within a block row, in ``[0, ceil(K/bw))``.
    indptr : ndarray, shape (ceil(M/bh) + 1,), same dtype as ``indices``
        Block row ``I`` owns blocks ``indptr[I]:indptr[I+1]``.
    block_shape : tuple of int
        ``(bh, bw)``.
    vector_size : int
        ``V``, a divisor of ``bw``.

    Examples
    --------
    >>> w = np.array([[1., 0., 0., 2., 0., 0., 0., 0.],
    ...               [0., 3., 4., 0., 0., 0., 0., 0.],
    ...               [0., 0., 0., 0., 0., 5., 6., 0.]])
    >>> a = VectorBlockMatrix.from_dense(w, block_shape=(2, 4), vector_size=2)
    >>> a.indptr, a.indices, a.k        # block row 0 keeps block 0, block row 1 (padded) keeps block 1
    (array([0, 1, 2], dtype=int32), array([0, 1], dtype=int32), 1)
    >>> a.data[0, :, :, 0], a.offsets[0, :, :, 0]   # rows 0-1 of block 0: one entry per vector of 2
    (array([[1., 2.],
           [3., 4.]]), array([[0, 1],
           [1, 0]], dtype=uint8))
    >>> bool(np.array_equal(a.toarray(), w)), a.nnz
    (True, 6)
    """

    shape: tuple[int, int]
    data: np.ndarray
    offsets: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    block_shape: tuple[int, int]
    vector_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape))
        object.__setattr__(self, "block_shape", check_block_shape(self.block_shape))
        object.__setattr__(self, "vector_size", _check_vector_size(self.vector_size))
        for name in ("data", "offsets", "indices", "indptr"):
            object.__setattr__(self, name, _owned_frozen(getattr(self, name)))
        check_vector_block(self, full_check=True)  # the full invariant: the kernels trust it

    def __reduce__(self):
        # copy / deepcopy / pickle rebuild through the constructor: validated, frozen copies again
        return type(self), (
            self.shape,
            self.data,
            self.offsets,
            self.indices,
            self.indptr,
            self.block_shape,
            self.vector_size,
        )

    # ---- constructors -----------------------------------------------------------------------------------

    @classmethod
    def from_dense(
        cls, w, mask=None, *, block_shape, vector_size: int, k: int | None = None, drop_zeros: bool = True
    ) -> VectorBlockMatrix:
        r"""Compress a dense matrix: the blocks holding a kept entry, ``k`` slots per vector inside them.

        Parameters
        ----------
        w : array_like, shape (M, K)
            Finite values; float32 and float64 are kept, other dtypes become float64.
        mask : array_like of bool, shape (M, K), optional
            Keep mask (``True`` = store); default every entry is a candidate.
        block_shape : (int, int)
            ``(bh, bw)``.
        vector_size : int
            ``V``; must divide ``bw``.
        k : int, optional
            Slots per vector, at least the largest kept count of a vector in a kept block and at most
            ``V``; default that largest count (padding: the module notes).
        drop_zeros : bool, default True
            Also drop candidates whose value is 0.

        Returns
        -------
        VectorBlockMatrix
            ``toarray()`` equals ``where(keep, w, 0)`` exactly, ``keep = mask ∧ (w ≠ 0)``.

        Raises
        ------
        ValueError
            ``w`` not 2-D or not finite; ``mask`` of another shape; a bad ``block_shape``;
            ``vector_size`` not dividing ``bw``; ``k`` out of range.
        TypeError
            ``mask`` not boolean.
        """
        bh, bw = check_block_shape(block_shape)
        v = _check_vector_size(vector_size)
        _check_divides(v, (bh, bw))
        w, keep = _dense_and_keep(w, mask, drop_zeros)
        m, n_cols = w.shape
        tiles, kept, block_kept = _padded_grid(w, keep, bh, bw)
        brow, bcol = np.nonzero(block_kept)
        nvb = bw // v
        values = tiles[brow, bcol].reshape(brow.size, bh, nvb, v)
        kept = kept[brow, bcol].reshape(brow.size, bh, nvb, v)
        largest = int(kept.sum(axis=3).max()) if kept.size else 0
        if k is None:
            k = largest
        elif isinstance(k, bool) or not isinstance(k, int | np.integer) or not largest <= k <= v:
            raise ValueError(
                f"k must be an integer in [{largest}, {v}] (the largest kept count of a vector "
                f"in a kept block, vector_size), got {k!r}"
            )
        data, offsets = vector_slots(values, kept, int(k))
        mb, kb = math.ceil(m / bh), math.ceil(n_cols / bw)
        idx = _index_dtype(max(kb, brow.size))
        indptr = np.zeros(mb + 1, dtype=idx)
        np.cumsum(np.bincount(brow, minlength=mb), out=indptr[1:])
        return cls((m, n_cols), data, offsets, bcol.astype(idx), indptr, (bh, bw), v)

    # ---- conversions ------------------------------------------------------------------------------------

    def _coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, columns and values of the stored slots inside the logical shape (padding dropped)."""
        bh, bw = self.block_shape
        n_blocks, _, nvb, k = self.data.shape
        brow = np.repeat(np.arange(self.block_grid[0], dtype=np.int64), np.diff(self.indptr))
        rows = (
            brow[:, None, None, None] * bh
            + np.arange(bh)[None, :, None, None]
            + np.zeros((1, 1, nvb, k), dtype=np.int64)
        )
        cols = (
            self.indices.astype(np.int64)[:, None, None, None] * bw
            + np.arange(nvb, dtype=np.int64)[None, None, :, None] * self.vector_size
            + self.offsets.astype(np.int64)
        )
        rows = np.broadcast_to(rows, cols.shape)
        inside = (rows < self.shape[0]) & (cols < self.shape[1])
        return rows[inside], cols[inside], self.data[inside]

    def toarray(self) -> np.ndarray:
        """Return the dense ``(M, K)`` matrix (a new writable array of dtype ``self.dtype``)."""
        out = np.zeros(self.shape, dtype=self.dtype)
        rows, cols, values = self._coordinates()
        out[rows, cols] = values
        return out

    def to_scipy(self) -> sp.csr_matrix:
        """Return the same matrix as a ``scipy.sparse.csr_matrix`` (explicit zeros kept, padding dropped)."""
        rows, cols, values = self._coordinates()
        return sp.csr_matrix((values.copy(), (rows, cols)), shape=self.shape)

    # ---- properties -------------------------------------------------------------------------------------

    @property
    def dtype(self) -> np.dtype:
        """Value dtype (float32 or float64)."""
        return self.data.dtype

    @property
    def k(self) -> int:
        """Stored slots per vector."""
        return int(self.data.shape[3])

    @property
    def block_grid(self) -> tuple[int, int]:
        """``(ceil(M/bh), ceil(K/bw))``: block rows and block columns."""
        return math.ceil(self.shape[0] / self.block_shape[0]), math.ceil(self.shape[1] / self.block_shape[1])

    @property
    def n_blocks(self) -> int:
        """Number of stored blocks."""
        return int(self.indptr[-1])

    @property
    def nnz(self) -> int:
        """Stored slots inside the logical shape (explicit zeros included): the work a kernel does."""
        return int(self._coordinates()[0].size)

    @property
    def density(self) -> float:
        """``nnz / (M·K)``; 0 for an empty shape."""
        size = self.shape[0] * self.shape[1]
        return self.nnz / size if size else 0.0

    @property
    def block_density(self) -> float:
        """Stored blocks over blocks in the grid."""
        mb, kb = self.block_grid
        return self.n_blocks / (mb * kb) if mb * kb else 0.0

    def check_format(self, full_check: bool = True) -> FormatReport:
        """Validate the structure; see :func:`check_vector_block`."""
        return check_vector_block(self, full_check=full_check)

    def __repr__(self) -> str:
        return (
            f"VectorBlockMatrix(shape={self.shape}, block_shape={self.block_shape}, "
            f"vector_size={self.vector_size}, k={self.k}, n_blocks={self.n_blocks}, dtype={self.dtype})"
        )


def check_vector_block(a: VectorBlockMatrix, full_check: bool = True) -> FormatReport:
    """Validate the structure of a :class:`VectorBlockMatrix`.

    Parameters
    ----------
    a : VectorBlockMatrix
    full_check : bool, default True
        ``False``: only the O(1) checks (dtypes, ndim, lengths, shapes, ``V | bw``). ``True``: also the
        O(stored entries) checks (what the constructor runs): ``indptr`` and ``indices`` as for BSR, the
        offsets in ``[0, V)`` and strictly increasing per vector, finite values, zero padding.

    Returns
    -------
    FormatReport
        ``format="vector_block"``, ``n_stored`` (slots, padding included), ``explicit_zeros`` (stored zeros
        inside the logical shape) and ``zero_blocks`` (stored blocks with every value 0).

    Raises
    ------
    ValueError
        Naming the field that breaks an invariant: ``shape``, ``block_shape``, ``vector_size`` (also when it
        does not divide ``bw``), ``data`` (dtype, shape, ``k > V``, NaN/inf, nonzero padding), ``offsets``
        (dtype, shape, range, order), ``indices`` / ``indptr`` (as :func:`~refimpl.sparse.check_format`).
    TypeError
        ``a`` is not a :class:`VectorBlockMatrix`.
    """
    if not isinstance(a, VectorBlockMatrix):
        raise TypeError(f"a must be a VectorBlockMatrix, got {type(a).__name__}")
    m, n_cols = _check_shape(a.shape)
    bh, bw = check_block_shape(a.block_shape)
    v = _check_vector_size(a.vector_size)
    _check_divides(v, (bh, bw))
    mb, kb = math.ceil(m / bh), math.ceil(n_cols / bw)
    nvb = bw // v
    _check_data_dtype(a.data)
    if a.data.ndim != 4 or a.data.shape[1:3] != (bh, nvb):
        raise ValueError(
            f"data must have shape (n_blocks, bh, bw // V, k) = (n_blocks, {bh}, {nvb}, k) for "
            f"block_shape {(bh, bw)} and vector_size {v}, got {a.data.shape}"
        )
    k = a.data.shape[3]
    if k > v:
        raise ValueError(f"data holds k = {k} slots per vector, more than vector_size = {v} columns")
    if a.offsets.dtype not in OFFSET_DTYPES:
        raise ValueError(
            f"offsets must be one of {[str(t) for t in OFFSET_DTYPES]}, got dtype {a.offsets.dtype}"
        )
    if a.offsets.shape != a.data.shape:
        raise ValueError(f"offsets must have the shape of data {a.data.shape}, got {a.offsets.shape}")
    _check_index_arrays(a.indices, a.indptr, mb, f"one per block row, ceil({m}/{bh}) = {mb}, plus one")
    if a.data.shape[0] != a.indices.size:
        raise ValueError(
            f"data must hold one block per entry of indices ({a.indices.size}), got {a.data.shape[0]} blocks"
        )
    if a.indptr[-1] != a.indices.size:
        raise ValueError(f"indptr[-1] must equal len(indices) = {a.indices.size}, got {a.indptr[-1]}")
    n_stored = int(a.data.size)
    if not full_check:
        return FormatReport("vector_block", n_stored, None, None)
    _check_structure(a.indices, a.indptr, kb, f"block columns, ceil({n_cols}/{bw}) = {kb}")
    check_offsets(a.offsets, v, lambda p, r, j: f"block {p}, row {r}, vector {j}")
    if not np.all(np.isfinite(a.data)):
        raise ValueError("data contains NaN or inf")
    # Padding: rows past M (last block row) and slots whose column is past K (last block column).
    inside = np.ones(a.data.shape, dtype=bool)
    if m % bh and a.indices.size:
        inside[int(a.indptr[mb - 1]) : int(a.indptr[mb]), m - (mb - 1) * bh :] = False
    if n_cols % bw and a.indices.size:
        last = a.indices == kb - 1
        cols = np.arange(nvb, dtype=np.int64)[None, None, :, None] * v + a.offsets[last].astype(np.int64)
        inside[last] &= cols < n_cols - (kb - 1) * bw
    if np.any(a.data[~inside] != 0):
        raise ValueError(
            f"data: padding slots (past row {m} or column {n_cols} of the {mb * bh}x{kb * bw} "
            "block grid) must be zero"
        )
    zero_blocks = int(np.count_nonzero(np.all(a.data == 0, axis=(1, 2, 3)))) if k else int(a.indices.size)
    return FormatReport("vector_block", n_stored, int(np.count_nonzero((a.data == 0) & inside)), zero_blocks)


class VectorBlockLayout(NamedTuple):
    """A block shape and vector length for a pattern, and what the format stores with them."""

    block_shape: tuple[int, int]
    vector_size: int
    k: int  #: slots per vector: the largest kept count of a vector in a kept block
    slots: int  #: stored slots inside the matrix (= nnz when no vector needs padding)
    n_blocks: int  #: blocks holding a kept entry
    grid_blocks: int  #: blocks in the (padded) grid


def best_vector_block(keep, block_shapes=VECTOR_BLOCK_SHAPES, vector_sizes=VECTOR_SIZES):
    """Return the :class:`VectorBlockLayout` (block shape, ``V``) that stores ``keep`` in the fewest slots.

    For each block shape ``(bh, bw)`` and each ``V`` dividing ``bw``, the format stores, in every block
    that holds a kept entry, ``k`` slots per vector with ``k`` the largest kept count of a vector in such a
    block (slots inside the matrix counted, as :attr:`VectorBlockMatrix.nnz`). A vector ∧ block mask of
    that pair needs no padding: ``slots == nnz``. Ties go to fewer stored blocks (less index data; a
    coarser tile that still fits), then to the earlier candidate.

    Parameters
    ----------
    keep : bool ndarray, shape (M, K)
    block_shapes : sequence of (int, int), default :data:`VECTOR_BLOCK_SHAPES`
    vector_sizes : sequence of int, default :data:`~refimpl.sparse.balanced.VECTOR_SIZES`

    Returns
    -------
    VectorBlockLayout or None
        ``None`` if no candidate pair has ``V | bw``.

    Examples
    --------
    >>> keep = np.zeros((8, 8), dtype=bool); keep[:4, :4] = np.eye(4, dtype=bool)   # one 4x4 block, 1 of 4
    >>> best_vector_block(keep)
    VectorBlockLayout(block_shape=(4, 4), vector_size=4, k=1, slots=4, n_blocks=1, grid_blocks=4)
    """
    keep = np.asarray(keep)
    if keep.dtype != np.bool_ or keep.ndim != 2:
        raise ValueError(f"keep must be a 2-D boolean array, got dtype {keep.dtype} and shape {keep.shape}")
    m, n_cols = keep.shape
    best = None
    for shape in block_shapes:
        bh, bw = check_block_shape(shape)
        zeros = np.zeros(keep.shape, dtype=np.float32)
        _, kept, block_kept = _padded_grid(zeros, keep, bh, bw)
        _, inside, _ = _padded_grid(zeros, np.ones(keep.shape, dtype=bool), bh, bw)  # entries inside (M, K)
        n_blocks = int(block_kept.sum())
        for v in vector_sizes:
            v = _check_vector_size(v)
            if bw % v:
                continue
            shape4 = (*kept.shape[:3], bw // v, v)
            counts = kept.reshape(shape4).sum(axis=4)
            k = int(counts.max()) if counts.size else 0
            # slots inside the matrix: min(k, the vector's entries inside (M, K)) per vector of a kept block
            width = inside.reshape(shape4).sum(axis=4)
            slots = int(np.minimum(k, width)[block_kept].sum())
            if best is None or (slots, n_blocks) < (best.slots, best.n_blocks):
                best = VectorBlockLayout((bh, bw), v, k, slots, n_blocks, int(block_kept.size))
    return best
