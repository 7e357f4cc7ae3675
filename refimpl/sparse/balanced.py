r"""The balanced (vector-wise) sparse format: each length-``V`` vector of a row stores exactly ``k`` values.

Balanced sparsity (Yao et al. [1]_; N:M is the case ``V = M``, ``k = N``) cuts every row of a matrix
:math:`A \in \mathbb{R}^{M \times K}` (a layer's GEMM view) into consecutive vectors of ``V`` columns and
keeps the same number of entries in each. That regularity is the format: two fixed-width arrays and no
row pointers,

.. math:: A_{i,\; jV + \mathrm{offsets}[i, j, s]} = \mathrm{data}[i, j, s], \qquad
          0 \le i < M,\ 0 \le j < \lceil K / V \rceil,\ 0 \le s < k,

``data`` and ``offsets`` of shape ``(M, ceil(K/V), k)``; ``offsets`` holds the column **inside** its vector
(``uint8`` for ``V <= 256``: a quarter of CSR's ``int32`` column indices), strictly increasing within a
vector. Row ``i``'s entries of vectors ``j0 .. j1`` are the contiguous slice ``data[i, j0:j1]``: any
column panel of the matrix is addressed directly, which is what the SpMM kernel
(:func:`refimpl.sparse.kernels.balanced_spmm`) uses to keep a panel of ``X`` in cache for all rows — CSR
would need a pointer per row and panel for that.

**Fewer than k kept entries in a vector** (a kept weight that is exactly 0, or a mask that is not
balanced): the vector is padded with explicit zeros at its lowest unused offsets, so the format stores
any matrix; :meth:`BalancedMatrix.from_dense` takes ``k`` as the largest count of any vector, and the
padding is work for nothing (:attr:`BalancedMatrix.nnz` counts it, as BSR counts zeros in kept blocks).

**The edge vector** (``K mod V = r > 0``): the last vector of each row has only ``r`` real columns. It
still has ``k`` slots; slots at offsets ``>= r`` point past column ``K`` and must hold 0 (the validator
checks it, as BSR checks its padding), and the kernels skip them.

**Every matrix is valid** (the choice of :mod:`refimpl.sparse.formats`): the constructor takes its own
read-only copies of the arrays and runs the full :func:`check_balanced` (O(stored entries): dtypes and
shapes, offsets in ``[0, V)`` and strictly increasing per vector, finite values, zero padding), so a
malformed matrix is a ``ValueError`` when it is built, and the kernels read ``X`` without bounds checks.

References
----------
.. [1] Z. Yao, S. Cao, W. Xiao, C. Zhang, L. Nie, "Balanced sparsity for efficient DNN inference on GPU",
   AAAI 2019. https://doi.org/10.1609/aaai.v33i01.33015676
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from refimpl.sparse.formats import (
    FormatReport,
    _check_data_dtype,
    _check_shape,
    _dense_and_keep,
    _owned_frozen,
)

__all__ = ["OFFSET_DTYPES", "VECTOR_SIZES", "BalancedMatrix", "balanced_counts", "best_vector_size",
           "check_balanced", "check_offsets", "offset_dtype", "vector_slots"]

#: Integer dtypes ``offsets`` may have (:func:`offset_dtype` picks the smallest that holds ``V - 1``).
OFFSET_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int32, np.int64))


#: Vector lengths :func:`best_vector_size` tries when none is given: those of the usual balanced and N:M
#: patterns (2:4, 1:4, ..., 1:8 ... 1:64) and the ones that make 0.9 and 0.95 exact (10, 20).
VECTOR_SIZES = (2, 4, 8, 10, 16, 20, 32, 64)


def offset_dtype(vector_size: int) -> np.dtype:
    """Return the smallest of :data:`OFFSET_DTYPES` that holds the offsets ``0 .. vector_size - 1``.

    Examples
    --------
    >>> offset_dtype(8), offset_dtype(256), offset_dtype(257)
    (dtype('uint8'), dtype('uint8'), dtype('uint16'))
    """
    for dtype in OFFSET_DTYPES:
        if vector_size - 1 <= np.iinfo(dtype).max:
            return dtype
    raise ValueError(f"vector_size must be < 2**63, got {vector_size}")  # pragma: no cover


def _check_vector_size(vector_size) -> int:
    if isinstance(vector_size, bool) or not isinstance(vector_size, numbers.Integral) or vector_size < 1:
        raise ValueError(f"vector_size must be an integer >= 1, got {vector_size!r}")
    return int(vector_size)


def vector_slots(values: np.ndarray, keep: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``k`` slots in every length-``V`` vector (the last axis): the data and offsets of the format.

    Kept offsets come first (ascending), then the unkept ones (ascending): the ``k`` slots are a vector's
    kept entries and, for a vector with fewer, its lowest free offsets (padding, stored as explicit zeros
    since ``values`` must be 0 outside ``keep``). The chosen offsets are returned sorted, in
    :func:`offset_dtype`. Shared by the balanced and the vector ∧ block format.

    Examples
    --------
    >>> data, offsets = vector_slots(np.array([[0., 7., 0., 9.]]), np.array([[0, 1, 0, 1]], bool), 3)
    >>> data, offsets
    (array([[0., 7., 9.]]), array([[0, 1, 3]], dtype=uint8))
    """
    v = values.shape[-1]
    priority = np.arange(v) + v * ~keep
    chosen = np.sort(np.argsort(priority, axis=-1, kind="stable")[..., :k], axis=-1)
    return np.take_along_axis(values, chosen, axis=-1), chosen.astype(offset_dtype(v))


def check_offsets(offsets: np.ndarray, vector_size: int, where) -> None:
    """Raise ``ValueError`` unless each vector's offsets (last axis) lie in ``[0, V)``, strictly increasing.

    ``where(*index)`` names the vector of an index of ``offsets`` without its last axis (for the message).
    """
    if not offsets.size:
        return
    v = vector_size
    lo, hi = int(offsets.min()), int(offsets.max())
    if lo < 0 or hi >= v:
        raise ValueError(f"offsets must lie in [0, vector_size = {v}), found {lo if lo < 0 else hi}")
    steps = np.diff(offsets.astype(np.int64), axis=-1)   # uint8 differences would wrap around
    if np.any(steps <= 0):
        *vec, s = (int(t) for t in np.argwhere(steps <= 0)[0])
        what = "duplicate" if steps[(*vec, s)] == 0 else "unsorted"
        raise ValueError(f"offsets must be strictly increasing within a vector: {what} offset "
                         f"{offsets[(*vec, s + 1)]} after {offsets[(*vec, s)]} in {where(*vec)}")


def balanced_counts(keep, vector_size: int) -> np.ndarray:
    """Kept entries per vector: ``(M, ceil(K/V))`` counts of a boolean ``(M, K)`` pattern.

    Examples
    --------
    >>> balanced_counts(np.array([[1, 0, 1, 1, 0], [0, 0, 0, 1, 1]], dtype=bool), 2)
    array([[1, 2, 0],
           [0, 1, 1]])
    """
    keep = np.asarray(keep)
    if keep.dtype != np.bool_ or keep.ndim != 2:
        raise ValueError(f"keep must be a 2-D boolean array, got dtype {keep.dtype} and shape {keep.shape}")
    v = _check_vector_size(vector_size)
    m, k = keep.shape
    n_vec = math.ceil(k / v)
    padded = np.zeros((m, n_vec * v), dtype=bool)
    padded[:, :k] = keep
    return padded.reshape(m, n_vec, v).sum(axis=2)


def best_vector_size(keep, candidates=VECTOR_SIZES) -> tuple[int, int]:
    """Return ``(V, slots)``: the candidate ``V`` whose balanced format stores ``keep`` in the fewest slots.

    With ``k`` the largest kept count of any vector, the format stores ``M (n_full k + min(k, r))`` slots
    inside the matrix (``n_full = K // V`` full vectors, an edge vector of ``r = K mod V`` columns): exactly
    ``nnz`` for a balanced or N:M pattern of that ``V`` (and of its multiples), more for anything else
    (the padding of vectors holding fewer than ``k``). Ties go to the smaller ``V``; candidates longer than
    the row are skipped.

    Parameters
    ----------
    keep : bool ndarray, shape (M, K)
        The pattern to store (nonzeros of a weight, or a mask).
    candidates : sequence of int, default :data:`VECTOR_SIZES`

    Examples
    --------
    >>> keep = np.array([[1, 1, 0, 0, 0, 1, 0, 1]], dtype=bool)   # 2:4, but not 1:2
    >>> best_vector_size(keep)
    (4, 4)
    """
    keep = np.asarray(keep)
    if keep.dtype != np.bool_ or keep.ndim != 2:
        raise ValueError(f"keep must be a 2-D boolean array, got dtype {keep.dtype} and shape {keep.shape}")
    m, n_cols = keep.shape
    sizes = [_check_vector_size(v) for v in candidates]
    if not sizes:
        raise ValueError("candidates must not be empty")
    usable = [v for v in sizes if v <= max(n_cols, 1)] or [min(sizes)]
    best = None
    for v in usable:
        counts = balanced_counts(keep, v)
        k = int(counts.max()) if counts.size else 0
        slots = m * ((n_cols // v) * k + min(k, n_cols % v))
        if best is None or slots < best[1]:
            best = (v, slots)
    return best


@dataclass(frozen=True, eq=False)
class BalancedMatrix:
    """A balanced-sparse matrix of logical shape ``(M, K)``: ``k`` stored entries per length-``V`` vector.

    Parameters
    ----------
    shape : tuple of int
        ``(M, K)``.
    data : ndarray, shape (M, ceil(K/V), k), float32 or float64
        The stored values, vector by vector.
    offsets : ndarray, shape (M, ceil(K/V), k), uint8, uint16, int32 or int64
        Each value's column inside its vector, in ``[0, V)``, strictly increasing within a vector.
    vector_size : int
        ``V >= 1``.

    Notes
    -----
    Construction runs the full :func:`check_balanced` on private, read-only copies (module notes). Build
    one with :meth:`from_dense` rather than by hand.

    Examples
    --------
    >>> w = np.array([[0., 2., 3., 0., 5.], [1., 0., 0., 4., 0.]])
    >>> a = BalancedMatrix.from_dense(w, vector_size=2)   # vectors [0,2] [3,0] [5] / [1,0] [0,4] [0]
    >>> a.data[0], a.offsets[0]
    (array([[2.],
           [3.],
           [5.]]), array([[1],
           [0],
           [0]], dtype=uint8))
    >>> a.offsets[1, 2], a.data[1, 2]      # an empty edge vector: padding at offset 0, value 0
    (array([0], dtype=uint8), array([0.]))
    >>> bool(np.array_equal(a.toarray(), w))
    True
    """

    shape: tuple[int, int]
    data: np.ndarray
    offsets: np.ndarray
    vector_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _check_shape(self.shape))
        object.__setattr__(self, "vector_size", _check_vector_size(self.vector_size))
        for name in ("data", "offsets"):
            object.__setattr__(self, name, _owned_frozen(getattr(self, name)))
        check_balanced(self, full_check=True)  # the full invariant: the kernels trust it

    def __reduce__(self):
        # copy / deepcopy / pickle rebuild through the constructor: validated, frozen copies again
        return type(self), (self.shape, self.data, self.offsets, self.vector_size)

    # ---- constructors -----------------------------------------------------------------------------------

    @classmethod
    def from_dense(cls, w, mask=None, *, vector_size: int, k: int | None = None,
                   drop_zeros: bool = True) -> BalancedMatrix:
        r"""Compress a dense matrix, keeping the entries selected by ``mask``, ``k`` slots per vector.

        Parameters
        ----------
        w : array_like, shape (M, K)
            Finite values; float32 and float64 are kept, other dtypes become float64.
        mask : array_like of bool, shape (M, K), optional
            Keep mask (``True`` = store). Default: every entry is a candidate.
        vector_size : int
            ``V``.
        k : int, optional
            Slots per vector, at least the largest kept count of any vector (:func:`balanced_counts`) and
            at most ``V``; default that largest count. Vectors with fewer kept entries are padded with
            explicit zeros at their lowest unused offsets.
        drop_zeros : bool, default True
            Also drop candidates whose value is 0 (with ``False`` a kept zero is stored as a value).

        Returns
        -------
        BalancedMatrix
            ``toarray()`` equals ``where(keep, w, 0)`` exactly, ``keep = mask ∧ (w ≠ 0)``.

        Raises
        ------
        ValueError
            ``w`` not 2-D or not finite; a ``mask`` of another shape; ``vector_size < 1``; ``k`` smaller
            than a vector's kept count or larger than ``V``.
        TypeError
            ``mask`` not boolean.
        """
        v = _check_vector_size(vector_size)
        w, keep = _dense_and_keep(w, mask, drop_zeros)
        m, n_cols = w.shape
        n_vec = math.ceil(n_cols / v)
        counts = balanced_counts(keep, v)
        largest = int(counts.max()) if counts.size else 0
        if k is None:
            k = largest
        elif isinstance(k, bool) or not isinstance(k, numbers.Integral) or not largest <= k <= v:
            raise ValueError(f"k must be an integer in [{largest}, {v}] (the largest kept count of a vector, "
                             f"vector_size), got {k!r}")
        k = int(k)
        wp = np.zeros((m, n_vec * v), dtype=w.dtype)
        wp[:, :n_cols] = np.where(keep, w, 0)
        kp = np.zeros((m, n_vec * v), dtype=bool)
        kp[:, :n_cols] = keep
        data, offsets = vector_slots(wp.reshape(m, n_vec, v), kp.reshape(m, n_vec, v), k)
        return cls((m, n_cols), data, offsets, v)

    # ---- conversions ------------------------------------------------------------------------------------

    def _coordinates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, columns and values of the stored slots inside the logical shape (padding dropped)."""
        m, n_vec, k = self.data.shape
        cols = (np.arange(n_vec, dtype=np.int64)[:, None] * self.vector_size
                + self.offsets.astype(np.int64))                     # (M, n_vec, k) by broadcasting
        rows = np.broadcast_to(np.arange(m)[:, None, None], cols.shape)
        inside = cols < self.shape[1]
        return rows[inside], cols[inside], self.data[inside]

    def toarray(self) -> np.ndarray:
        """Return the dense ``(M, K)`` matrix (a new writable array of dtype ``self.dtype``)."""
        out = np.zeros(self.shape, dtype=self.dtype)
        rows, cols, values = self._coordinates()
        out[rows, cols] = values
        return out

    def to_scipy(self) -> sp.csr_matrix:
        """Return the same matrix as a ``scipy.sparse.csr_matrix`` (scipy has no balanced format).

        Explicit zeros are kept; the edge vector's padding is dropped.
        """
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
        return int(self.data.shape[2])

    @property
    def n_vectors(self) -> int:
        """Vectors per row, ``ceil(K / V)`` (the last one shorter when ``V`` does not divide ``K``)."""
        return int(self.data.shape[1])

    @property
    def nnz(self) -> int:
        """Stored slots inside the logical shape (explicit zeros included): the work a kernel does."""
        m, n_cols = self.shape
        v, k = self.vector_size, self.k
        full = n_cols // v
        edge = 0
        if n_cols % v and m and k:
            edge = int(np.count_nonzero(self.offsets[:, full, :] < n_cols - full * v))
        return m * full * k + edge

    @property
    def density(self) -> float:
        """``nnz / (M·K)``; 0 for an empty shape."""
        size = self.shape[0] * self.shape[1]
        return self.nnz / size if size else 0.0

    def check_format(self, full_check: bool = True) -> FormatReport:
        """Validate the structure; see :func:`check_balanced`."""
        return check_balanced(self, full_check=full_check)

    def __repr__(self) -> str:
        return (f"BalancedMatrix(shape={self.shape}, vector_size={self.vector_size}, k={self.k}, "
                f"dtype={self.dtype})")


def check_balanced(a: BalancedMatrix, full_check: bool = True) -> FormatReport:
    """Validate the structure of a :class:`BalancedMatrix`.

    Parameters
    ----------
    a : BalancedMatrix
    full_check : bool, default True
        ``False``: only the O(1) checks (dtypes, ndim, shapes). ``True``: also the O(stored entries)
        checks of the offsets and values (what the constructor runs).

    Returns
    -------
    FormatReport
        ``format="balanced"``, ``n_stored`` (slots, edge padding included) and ``explicit_zeros`` (stored
        zeros inside the logical shape, e.g. the padding of vectors with fewer than ``k`` kept entries).

    Raises
    ------
    ValueError
        Naming the field that breaks an invariant: ``shape``, ``vector_size``, ``data`` (dtype, ndim,
        shape, ``k > V``, NaN/inf, nonzero padding), ``offsets`` (dtype, shape, out of range, not strictly
        increasing within a vector).
    TypeError
        ``a`` is not a :class:`BalancedMatrix`.
    """
    if not isinstance(a, BalancedMatrix):
        raise TypeError(f"a must be a BalancedMatrix, got {type(a).__name__}")
    m, n_cols = _check_shape(a.shape)
    v = _check_vector_size(a.vector_size)
    n_vec = math.ceil(n_cols / v)
    _check_data_dtype(a.data)
    if a.data.ndim != 3 or a.data.shape[:2] != (m, n_vec):
        raise ValueError(f"data must have shape (M, ceil(K/V), k) = ({m}, {n_vec}, k) for shape "
                         f"{(m, n_cols)} and vector_size {v}, got {a.data.shape}")
    k = a.data.shape[2]
    if k > v:
        raise ValueError(f"data holds k = {k} slots per vector, more than vector_size = {v} columns")
    if a.offsets.dtype not in OFFSET_DTYPES:
        raise ValueError(f"offsets must be one of {[str(t) for t in OFFSET_DTYPES]}, "
                         f"got dtype {a.offsets.dtype}")
    if a.offsets.shape != a.data.shape:
        raise ValueError(f"offsets must have the shape of data {a.data.shape}, got {a.offsets.shape}")
    n_stored = int(a.data.size)
    if not full_check:
        return FormatReport("balanced", n_stored, None)
    check_offsets(a.offsets, v, lambda i, j: f"row {i}, vector {j}")
    if not np.all(np.isfinite(a.data)):
        raise ValueError("data contains NaN or inf")
    inside = np.ones(a.data.shape, dtype=bool)
    if n_cols % v and a.data.size:
        # slots of the edge vector that point past column K are padding and must be zero
        inside[:, -1, :] = a.offsets[:, -1, :] < n_cols - (n_vec - 1) * v
        if np.any(a.data[~inside] != 0):
            edge = n_cols - (n_vec - 1) * v
            raise ValueError(f"data: padding slots of the edge vector (offsets >= {edge}, past column "
                             f"K = {n_cols}) must be zero")
    return FormatReport("balanced", n_stored, int(np.count_nonzero((a.data == 0) & inside)))
