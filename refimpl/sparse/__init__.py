"""Sparse-format inference: own CSR / block-CSR formats, a validator, SpMM kernels and a cost model.

* :mod:`refimpl.sparse.formats` — :class:`CSRMatrix`, :class:`BSRMatrix` and :func:`check_format`;
* :mod:`refimpl.sparse.balanced` — :class:`BalancedMatrix`, the balanced / vector-wise format (``k``
  entries per length-``V`` vector, fixed-width values and in-vector offsets, no row pointers);
* :mod:`refimpl.sparse.vector_block` — :class:`VectorBlockMatrix`, the vector ∧ block format (block-CSR
  whose kept blocks store ``k`` entries per vector), and :mod:`refimpl.sparse.vector_block_spmm` —
  :func:`vector_block_spmm`;
* :mod:`refimpl.sparse.kernels` — :func:`spmm` (``Y = A @ X``, engines ``"numba"``, ``"numpy"``,
  ``"scipy"``), :func:`csr_spmm`, :func:`bsr_spmm`, :func:`balanced_spmm`;
* :mod:`refimpl.sparse.cost` — :func:`spmm_cost`, the MACs and bytes each format moves;
* :mod:`refimpl.sparse.unified` — :class:`UnifiedBlockMatrix`, weight unification's format (one magnitude
  and packed sign bits per unified block, dense free blocks) and :func:`unified_spmm`.
"""

from refimpl.sparse.balanced import BalancedMatrix
from refimpl.sparse.cost import compact_dense_shape, spmm_cost
from refimpl.sparse.engine import compile  # noqa: A004 - the issue's name; the inference engine
from refimpl.sparse.formats import BSRMatrix, CSRMatrix, FormatReport, check_format
from refimpl.sparse.kernels import ENGINES, balanced_spmm, bsr_spmm, csr_spmm, spmm
from refimpl.sparse.unified import UnifiedBlockMatrix, check_unified, unified_spmm
from refimpl.sparse.vector_block import VectorBlockMatrix
from refimpl.sparse.vector_block_spmm import vector_block_spmm

__all__ = [
    "ENGINES",
    "BSRMatrix",
    "BalancedMatrix",
    "CSRMatrix",
    "FormatReport",
    "UnifiedBlockMatrix",
    "VectorBlockMatrix",
    "balanced_spmm",
    "bsr_spmm",
    "check_format",
    "check_unified",
    "compact_dense_shape",
    "compile",
    "csr_spmm",
    "spmm",
    "spmm_cost",
    "unified_spmm",
    "vector_block_spmm",
]
