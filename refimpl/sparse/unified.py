r"""The unified-block format and its product: :math:`y = \sum_b m_b\,(S_b\,x_b)` with packed sign bits.

A weight after micro-structured weight unification (Lin, Jiang et al., 2021) has three kinds of
``bh x bw`` blocks in its GEMM view :math:`A \in \mathbb{R}^{M \times K}`: **unified** blocks, whose entries
share one magnitude, :math:`A_b = m_b S_b` with a sign matrix :math:`S_b \in \{-1, +1\}^{b_h \times b_w}`;
**free** blocks (dense values); and **pruned** blocks (zero, not stored). :class:`UnifiedBlockMatrix`
stores them as two block-CSR streams over the same block grid:

* **unified:** ``indptr``, ``indices`` (block columns), one ``magnitudes[p]`` per block and its signs
  ``signs[p]``, ``bh·bw`` bits packed into ``ceil(bh·bw / 8)`` bytes (bit ``r·bw + c`` of the block,
  most significant bit first, as :func:`numpy.packbits`; 1 = negative);
* **free:** ``free_indptr``, ``free_indices``, ``free_data`` (dense ``bh x bw`` blocks, as
  :class:`~refimpl.sparse.formats.BSRMatrix`).

The product of a block row :math:`I` is

.. math:: Y_{I} = \sum_{p \in \text{unified}(I)} m_p\,\bigl(S_p\, X_{c_p}\bigr)
          + \sum_{p \in \text{free}(I)} A_p\, X_{c_p},

where :math:`X_{c}` are the ``bw`` rows of ``X`` of block column :math:`c`. :math:`S_p X_{c_p}` needs only
additions and subtractions; each unified block costs **one multiplication per output row and column**
instead of ``bw`` (the NumPy twin's order; the numba kernel's count is in its notes), and its storage is
one value plus ``bh·bw`` bits instead of ``bh·bw`` values.

Shapes not divisible by the block shape are padded as in :mod:`refimpl.sparse.formats`: edge blocks
extend past row ``M`` / column ``K``; their padding values (free) must be zero and their padding sign bits
(unified) must be 0; the kernels never read past row ``K`` of ``X`` nor write past row ``M`` of ``Y``.

**Every matrix is valid:** the constructor takes frozen, owned copies of the arrays and runs the full
:func:`check_unified` (dtypes, lengths, sorted unique in-range block columns, a block either free or
unified, never both, finite values, zero padding), so a malformed matrix is a ``ValueError`` at
construction and the numba kernel reads the arrays without bounds checks. :func:`unified_spmm` computes
the product with the numba kernel or its NumPy twin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from refimpl._validation import check_block_shape
from refimpl.sparse.formats import (
    _FLOAT_DTYPES,
    FormatReport,
    _check_index_arrays,
    _check_shape,
    _check_structure,
    _dense_and_keep,
    _index_dtype,
    _owned_frozen,
)

__all__ = ["UNIFIED_ENGINES", "UnifiedBlockMatrix", "check_unified", "unified_spmm"]

#: Engines of :func:`unified_spmm`.
UNIFIED_ENGINES = ("numba", "numpy")

_ARRAYS = ("magnitudes", "signs", "indices", "indptr", "free_data", "free_indices", "free_indptr")


@dataclass(frozen=True, eq=False)
class UnifiedBlockMatrix:
    """Unified and free ``bh x bw`` blocks of a matrix of logical shape ``(M, K)`` (module notes).

    Parameters
    ----------
    shape : (int, int)
    block_shape : (int, int)
    magnitudes : ndarray, shape (n_unified,), float32 or float64
        :math:`m_p`, one per unified block.
    signs : ndarray of uint8, shape (n_unified, ceil(bh*bw/8))
        Packed sign bits of each unified block (1 = negative).
    indices, indptr : ndarray of int32/int64
        Block columns and block-row pointers of the unified blocks (``ceil(M/bh) + 1`` pointers).
    free_data : ndarray, shape (n_free, bh, bw), the dtype of ``magnitudes``
    free_indices, free_indptr : ndarray of int32/int64
        The free blocks, as in :class:`~refimpl.sparse.formats.BSRMatrix`.

    Examples
    --------
    >>> w = np.array([[0.5, -0.5, 1.0, 2.0], [-0.5, 0.5, 3.0, 4.0]])
    >>> a = UnifiedBlockMatrix.from_dense(w, block_shape=(2, 2))
    >>> a.magnitudes, a.signs, a.n_free                  # signs 0110 (row-major), padded to a byte
    (array([0.5]), array([[96]], dtype=uint8), 1)
    >>> unified_spmm(a, np.ones(4), engine="numpy")
    array([3., 7.])
    """

    shape: tuple[int, int]
    block_shape: tuple[int, int]
    magnitudes: np.ndarray
    signs: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    free_data: np.ndarray
    free_indices: np.ndarray
    free_indptr: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape))
        object.__setattr__(self, "block_shape", check_block_shape(self.block_shape))
        for name in _ARRAYS:
            object.__setattr__(self, name, _owned_frozen(getattr(self, name)))
        check_unified(self, full_check=True)  # the full invariant: the kernels trust it

    def __reduce__(self):
        return type(self), (self.shape, self.block_shape, *(getattr(self, n) for n in _ARRAYS))

    @classmethod
    def from_dense(cls, w, mask=None, *, block_shape=(4, 4)) -> UnifiedBlockMatrix:
        """Encode a dense matrix: all-zero blocks dropped, blocks of one magnitude unified, others free.

        A block is unified when it has at least two real entries, all of one nonzero magnitude (the rule of
        :func:`refimpl.metrics.block_kinds`, so the format stores what the storage accounting counts).
        ``toarray()`` returns ``where(mask, w, 0)`` exactly.
        """
        from refimpl.metrics import block_kinds

        bh, bw = check_block_shape(block_shape)
        w, keep = _dense_and_keep(w, mask, drop_zeros=False)
        w = np.where(keep, w, 0)
        m, k = w.shape
        mb, kb = math.ceil(m / bh), math.ceil(k / bw)
        kinds = block_kinds(w, (bh, bw)) if w.size else np.zeros((mb, kb), np.int8)
        wp = np.zeros((mb * bh, kb * bw), dtype=w.dtype)
        wp[:m, :k] = w
        tiles = wp.reshape(mb, bh, kb, bw).transpose(0, 2, 1, 3)  # (mb, kb, bh, bw)
        idx = _index_dtype(max(kb, mb * kb))
        parts = []
        for kind in (1, 0):
            brow, bcol = np.nonzero(kinds == kind)
            indptr = np.zeros(mb + 1, dtype=idx)
            np.cumsum(np.bincount(brow, minlength=mb), out=indptr[1:])
            parts.append((np.ascontiguousarray(tiles[brow, bcol]), bcol.astype(idx), indptr))
        (unified, indices, indptr), (free, free_indices, free_indptr) = parts
        magnitudes = np.abs(unified).max(axis=(1, 2)) if unified.size else np.zeros(0, w.dtype)
        signs = np.packbits((unified < 0).reshape(len(unified), bh * bw), axis=1)
        return cls((m, k), (bh, bw), magnitudes, signs, indices, indptr, free, free_indices, free_indptr)

    # ---- views --------------------------------------------------------------------------------------
    @property
    def dtype(self) -> np.dtype:
        """The value dtype (float32 or float64)."""
        return self.magnitudes.dtype

    @property
    def n_unified(self) -> int:
        """Stored unified blocks."""
        return int(self.magnitudes.size)

    @property
    def n_free(self) -> int:
        """Stored free blocks."""
        return int(self.free_indices.size)

    @property
    def nbytes(self) -> int:
        """Bytes of every stored array (values, sign bits, indices, pointers)."""
        return int(sum(getattr(self, name).nbytes for name in _ARRAYS))

    def sign_matrices(self) -> np.ndarray:
        r"""Return :math:`S_p` of every unified block, ``(n_unified, bh, bw)`` of :math:`\pm 1` (int8)."""
        bh, bw = self.block_shape
        bits = np.unpackbits(self.signs, axis=1, count=bh * bw) if self.n_unified else np.zeros((0, bh * bw))
        return (1 - 2 * bits.astype(np.int8)).reshape(-1, bh, bw)

    def toarray(self) -> np.ndarray:
        """Return the dense ``(M, K)`` matrix."""
        bh, bw = self.block_shape
        m, k = self.shape
        mb, kb = math.ceil(m / bh), math.ceil(k / bw)
        out = np.zeros((mb, kb, bh, bw), dtype=self.dtype)
        for indptr, indices, blocks in (
            (self.indptr, self.indices, self.magnitudes[:, None, None] * self.sign_matrices()),
            (self.free_indptr, self.free_indices, self.free_data),
        ):
            rows = np.repeat(np.arange(mb), np.diff(indptr))
            out[rows, indices] = blocks
        return out.transpose(0, 2, 1, 3).reshape(mb * bh, kb * bw)[:m, :k]

    def check_format(self, full_check: bool = True) -> FormatReport:
        """:func:`check_unified` of this matrix."""
        return check_unified(self, full_check)

    def __repr__(self) -> str:
        return (
            f"UnifiedBlockMatrix(shape={self.shape}, block_shape={self.block_shape}, "
            f"unified={self.n_unified}, free={self.n_free}, dtype={self.dtype}, nbytes={self.nbytes})"
        )


# --------------------------------------------------------------------------------------------------------
# the validator
# --------------------------------------------------------------------------------------------------------


def check_unified(a: UnifiedBlockMatrix, full_check: bool = True) -> FormatReport:
    """Validate a :class:`UnifiedBlockMatrix`; ``ValueError`` naming the field that breaks an invariant.

    Cheap checks (always): dtypes (values float32/float64 and equal, signs uint8, indices int32/int64),
    shapes and lengths. Full checks: pointers and block columns as in
    :func:`~refimpl.sparse.formats.check_format`, no block both unified and free, finite values, zero
    padding of edge blocks (values and sign bits, and the bits past ``bh·bw`` in the last byte).

    Returns
    -------
    FormatReport
        ``format="unified"``, ``n_stored`` = free values + magnitudes, explicit zeros among them,
        ``zero_blocks`` = stored blocks that are all zero.
    """
    if not isinstance(a, UnifiedBlockMatrix):
        raise TypeError(f"a must be a UnifiedBlockMatrix, got {type(a).__name__}")
    m, k = _check_shape(a.shape)
    bh, bw = check_block_shape(a.block_shape)
    mb, kb = math.ceil(m / bh), math.ceil(k / bw)
    n_bytes = -(-(bh * bw) // 8)
    if a.magnitudes.dtype not in _FLOAT_DTYPES or a.magnitudes.ndim != 1:
        raise ValueError(
            f"magnitudes must be a 1-D float32 or float64 array, got dtype {a.magnitudes.dtype} "
            f"and shape {a.magnitudes.shape}"
        )
    if a.free_data.dtype != a.magnitudes.dtype:
        raise ValueError(
            f"free_data must have the dtype of magnitudes ({a.magnitudes.dtype}), got {a.free_data.dtype}"
        )
    if a.signs.dtype != np.uint8 or a.signs.shape != (a.magnitudes.size, n_bytes):
        raise ValueError(
            f"signs must be uint8 of shape (len(magnitudes), ceil({bh}*{bw}/8)) = "
            f"{(a.magnitudes.size, n_bytes)}, got dtype {a.signs.dtype} and shape "
            f"{a.signs.shape}"
        )
    if a.free_data.ndim != 3 or a.free_data.shape[1:] != (bh, bw):
        raise ValueError(f"free_data must have shape (n_free, {bh}, {bw}), got {a.free_data.shape}")
    for prefix, indices, indptr, n in (
        ("", a.indices, a.indptr, a.magnitudes.size),
        ("free_", a.free_indices, a.free_indptr, a.free_data.shape[0]),
    ):
        try:
            _check_index_arrays(indices, indptr, mb, f"one per block row, ceil({m}/{bh}) = {mb}, plus one")
            if indices.size != n:
                raise ValueError(f"indices must have one entry per stored block ({n}), got {indices.size}")
            if indptr[-1] != indices.size:
                raise ValueError(f"indptr[-1] must equal len(indices) = {indices.size}, got {indptr[-1]}")
            if full_check:
                _check_structure(indices, indptr, kb, f"block columns, ceil({k}/{bw}) = {kb}")
        except ValueError as err:
            raise ValueError(f"{prefix}{err}" if prefix else str(err)) from None
    if not full_check:
        return FormatReport("unified", int(a.free_data.size + a.magnitudes.size), None, None)
    unified_ids = np.repeat(np.arange(mb), np.diff(a.indptr)) * kb + a.indices
    free_ids = np.repeat(np.arange(mb), np.diff(a.free_indptr)) * kb + a.free_indices
    both = np.intersect1d(unified_ids, free_ids)
    if both.size:
        raise ValueError(
            f"block ({int(both[0]) // kb}, {int(both[0]) % kb}) is stored both as unified "
            "(indices) and as free (free_indices)"
        )
    for name, values in (("magnitudes", a.magnitudes), ("free_data", a.free_data)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name} contains NaN or inf")

    # Padding: rows past M (blocks of the last block row), columns past K (blocks of the last block column).
    def in_shape(indptr, indices):
        inside = np.ones((indices.size, bh, bw), dtype=bool)
        if m % bh and indices.size:
            inside[int(indptr[mb - 1]) : int(indptr[mb]), m - (mb - 1) * bh :, :] = False
        if k % bw:
            inside[indices == kb - 1, :, k - (kb - 1) * bw :] = False
        return inside

    free_inside = in_shape(a.free_indptr, a.free_indices)
    if np.any(a.free_data[~free_inside] != 0):
        raise ValueError(
            f"free_data: padding entries of edge blocks (past row {m} or column {k}) must be zero"
        )
    bits = np.unpackbits(a.signs, axis=1) if a.signs.size else np.zeros((0, n_bytes * 8), np.uint8)
    allowed = np.zeros((a.magnitudes.size, n_bytes * 8), dtype=bool)
    allowed[:, : bh * bw] = in_shape(a.indptr, a.indices).reshape(-1, bh * bw)
    if np.any(bits[~allowed]):
        raise ValueError(
            f"signs: the bits of padding entries of edge blocks (past row {m} or column {k}) "
            f"and past bh*bw = {bh * bw} must be 0"
        )
    zeros = int(np.count_nonzero(a.free_data[free_inside] == 0)) + int(np.count_nonzero(a.magnitudes == 0))
    zero_blocks = int(np.count_nonzero(np.all(a.free_data == 0, axis=(1, 2)))) + int(
        np.count_nonzero(a.magnitudes == 0)
    )
    return FormatReport("unified", int(a.free_data.size + a.magnitudes.size), zeros, zero_blocks)


# --------------------------------------------------------------------------------------------------------
# the product
# --------------------------------------------------------------------------------------------------------


def unified_spmm(a: UnifiedBlockMatrix, x, *, engine: str = "numba", tile: int = 512) -> np.ndarray:
    r"""``Y = A @ X`` for a unified-block matrix: :math:`\sum_b m_b (S_b X_b)` plus the free blocks.

    Parameters
    ----------
    a : UnifiedBlockMatrix, shape (M, K)
    x : ndarray, shape (K, N) or (K,)
    engine : {"numba", "numpy"}
        The parallel numba kernel (block rows over threads, ``X``'s columns in tiles; per row of a unified
        block, signed sums of four of ``X``'s rows scaled by :math:`m_b`, see its notes) or its NumPy twin
        (the sign matrices unpacked: :math:`S_p X_p` per block, then one scaling by :math:`m_p`).
    tile : int, default 512
        Columns of ``X`` per cache tile (numba engine only).

    Returns
    -------
    ndarray, shape (M, N) or (M,)
        Dtype ``result_type(a.dtype, x.dtype)`` (float32 or float64).
    """
    # Imported here: the kernels module imports the formats this module builds on.
    from refimpl.sparse.kernels import _prepare_x

    x2, dtype, squeeze = _prepare_x(a, x, engine, tile, UnifiedBlockMatrix, UNIFIED_ENGINES)
    magnitudes, free = a.magnitudes.astype(dtype), a.free_data.astype(dtype)
    m, n = a.shape[0], x2.shape[1]
    if engine == "numpy":
        y = _unified_spmm_numpy(a, magnitudes, free, x2)
    else:
        y = np.zeros((m, n), dtype=dtype)
        if n and (a.n_unified or a.n_free):
            bh, bw = a.block_shape
            _unified_spmm_numba(
                a.indptr,
                a.indices,
                magnitudes,
                a.signs,
                a.free_indptr,
                a.free_indices,
                free,
                bh,
                bw,
                x2,
                y,
                int(tile),
            )
    return y[:, 0] if squeeze else y


def _unified_spmm_numpy(a: UnifiedBlockMatrix, magnitudes, free, x):
    """NumPy twin: per block row, the unified blocks as :math:`m_p S_p` contracted with X's panels."""
    bh, bw = a.block_shape
    m, k = a.shape
    n = x.shape[1]
    mb, kb = math.ceil(m / bh), math.ceil(k / bw)
    xp = np.zeros((kb * bw, n), dtype=x.dtype)
    xp[:k] = x
    panels = xp.reshape(kb, bw, n)
    signs = a.sign_matrices().astype(x.dtype)
    y = np.zeros((mb * bh, n), dtype=x.dtype)
    for bi in range(mb):
        rows = slice(bi * bh, (bi + 1) * bh)
        s, e = a.indptr[bi], a.indptr[bi + 1]
        if e > s:  # S_p X_p: sums and differences of X's rows; then one scale per block
            signed = np.einsum("prc,pcn->prn", signs[s:e], panels[a.indices[s:e]])
            y[rows] += np.tensordot(magnitudes[s:e], signed, axes=(0, 0))
        s, e = a.free_indptr[bi], a.free_indptr[bi + 1]
        if e > s:
            y[rows] += np.tensordot(free[s:e], panels[a.free_indices[s:e]], axes=([0, 2], [0, 1]))
    return y[:m]


@njit(cache=True)
def _bit(signs, p, bit):  # pragma: no cover - compiled
    """Sign bit ``bit`` of unified block ``p``: 0 (positive) or 1 (negative); MSB first within a byte."""
    return (signs[p, bit >> 3] >> (7 - (bit & 7))) & 1


@njit(cache=True, parallel=True)
def _unified_spmm_numba(
    indptr, indices, magnitudes, signs, free_indptr, free_indices, free, bh, bw, x, y, tile
):  # pragma: no cover - compiled; tested against the twin and dense
    r"""Block rows over threads; per row ``r`` of a unified block ``p``: ``Y_r += m_p * (S_p[r] X_p)``.

    The block's columns go four per sweep over the tile, as the BSR kernel does with its values. The signs
    are applied as factors :math:`\pm 1` (exact: the same values as adding and subtracting, though the CPU
    multiplies), and :math:`m_p` multiplies each output entry once per four columns: ``ceil(bw / 4)``
    times per row of the block, once for ``bw <= 4`` (the count ``paper_repro/bench_unified.py`` reports);
    the last ``bw mod 4`` columns fold :math:`m_p` into their factor.
    """
    mb = indptr.size - 1
    m = y.shape[0]
    k, n = x.shape
    pm = np.ones(2, dtype=y.dtype)  # the factor of sign bit 0 / 1, in Y's dtype (no float64 promotion)
    pm[1] = -1
    for n0 in range(0, n, tile):
        n1 = min(n0 + tile, n)
        w = n1 - n0
        for bi in prange(mb):
            r0 = bi * bh
            rh = min(bh, m - r0)
            for p in range(indptr[bi], indptr[bi + 1]):
                c0 = indices[p] * bw
                cw = min(bw, k - c0)
                mag = magnitudes[p]
                for r in range(rh):
                    yr = y[r0 + r, n0:n1]
                    c = 0
                    while c + 4 <= cw:
                        s0, s1 = pm[_bit(signs, p, r * bw + c)], pm[_bit(signs, p, r * bw + c + 1)]
                        s2, s3 = pm[_bit(signs, p, r * bw + c + 2)], pm[_bit(signs, p, r * bw + c + 3)]
                        x0 = x[c0 + c, n0:n1]
                        x1 = x[c0 + c + 1, n0:n1]
                        x2 = x[c0 + c + 2, n0:n1]
                        x3 = x[c0 + c + 3, n0:n1]
                        for j in range(w):
                            yr[j] += mag * (s0 * x0[j] + s1 * x1[j] + s2 * x2[j] + s3 * x3[j])
                        c += 4
                    while c < cw:
                        sc = mag * pm[_bit(signs, p, r * bw + c)]
                        xc = x[c0 + c, n0:n1]
                        for j in range(w):
                            yr[j] += sc * xc[j]
                        c += 1
            for p in range(free_indptr[bi], free_indptr[bi + 1]):
                c0 = free_indices[p] * bw
                cw = min(bw, k - c0)
                for r in range(rh):
                    yr = y[r0 + r, n0:n1]
                    for c in range(cw):
                        v = free[p, r, c]
                        xc = x[c0 + c, n0:n1]
                        for j in range(w):
                            yr[j] += v * xc[j]
