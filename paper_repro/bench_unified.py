"""The unified-block SpMM against dense, CSR and BSR **at equal storage** (issue 11; run by bench_spmm.py).

For each level, a float32 weight of the benchmark's shape is projected onto "a share ``unify`` of its 4×4
blocks unified and a share ``prune`` pruned" (:func:`refimpl.projections.project_unified`) and stored as a
:class:`~refimpl.sparse.unified.UnifiedBlockMatrix` (one float32 magnitude and 16 packed sign bits per
unified block, dense free blocks, int32 block columns and pointers). Its ``nbytes`` fixes the budget: the
CSR matrix has as many random nonzeros as that many bytes hold (4-byte value + 4-byte column each, plus
the row pointers), the BSR 4×4 matrix as many random blocks (64 bytes of values + a 4-byte block column
each, plus the block-row pointers). The three sparse kernels are timed **interleaved** (one call of each
per round, so a change of the shared machine's load affects them alike); the dense BLAS product, which
stores every weight, is timed on its own. Ratios > 1 mean the unified kernel is faster.

The three matrices at equal storage hold different numbers of weights (that is the point of unification:
a unified 4×4 block is 4 + 2 bytes of storage for 16 weights): the table also gives each one's stored
weights and multiplications per column of ``X`` (a unified block row needs one per output row).
"""

from __future__ import annotations

import numpy as np

from refimpl.projections import project_unified
from refimpl.sparse.formats import BSRMatrix, CSRMatrix
from refimpl.sparse.kernels import bsr_spmm, csr_spmm
from refimpl.sparse.unified import UnifiedBlockMatrix, unified_spmm

#: (unify, prune) shares of 4×4 blocks: unification alone, and unification with block pruning.
LEVELS = ((0.5, 0.0), (0.8, 0.0), (0.95, 0.0), (0.5, 0.3), (0.6, 0.35))
BLOCK = 4


def random_keep(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A boolean vector of length ``n`` with ``k`` entries True, chosen uniformly."""
    keep = np.zeros(n, dtype=bool)
    keep[rng.permutation(n)[: max(0, min(n, k))]] = True
    return keep


def equal_storage_matrices(w_unified: np.ndarray, rng: np.random.Generator) -> dict:
    """The unified matrix of ``w_unified`` and random CSR / BSR 4×4 matrices of (at most) its bytes."""
    m, k = w_unified.shape
    a = UnifiedBlockMatrix.from_dense(w_unified, block_shape=(BLOCK, BLOCK))
    budget = a.nbytes
    values = rng.standard_normal((m, k)).astype(np.float32)
    nnz = (budget - 4 * (m + 1)) // 8
    csr = CSRMatrix.from_dense(np.where(random_keep(m * k, nnz, rng).reshape(m, k), values, 0))
    mb, kb = m // BLOCK, k // BLOCK
    n_blocks = (budget - 4 * (mb + 1)) // (4 * BLOCK * BLOCK + 4)
    tiles = random_keep(mb * kb, n_blocks, rng).reshape(mb, kb)
    bsr = BSRMatrix.from_dense(np.where(np.kron(tiles, np.ones((BLOCK, BLOCK), bool)), values, 0),
                               block_shape=(BLOCK, BLOCK))
    return {"unified": a, "csr": csr, "bsr4x4": bsr}


def _nbytes(a) -> int:
    if isinstance(a, UnifiedBlockMatrix):
        return a.nbytes
    return int(a.data.nbytes + a.indices.nbytes + a.indptr.nbytes)


def _multiplies(a) -> int:
    """Multiplications per column of X: one per stored value, one per row of a unified block."""
    if isinstance(a, UnifiedBlockMatrix):
        return int(a.free_data.size + a.n_unified * a.block_shape[0])
    return int(a.data.size)


def unified_rows(m: int, k: int, n: int, levels, repeats: int, tile: int, seed: int, timer) -> list[dict]:
    """One row per level: bytes, stored weights, multiplications and times of unified / CSR / BSR / dense.

    ``timer(fns, repeats)`` returns the median milliseconds of each function, timed interleaved
    (``bench_spmm.interleaved_ms``).
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((k, n)).astype(np.float32)
    w = rng.standard_normal((m, k)).astype(np.float32)
    dense_ms = timer({"dense": lambda: w @ x}, repeats)["dense"]
    rows = []
    for unify, prune in levels:
        z = project_unified(w, (BLOCK, BLOCK), unify=unify, prune=prune or None)
        mats = equal_storage_matrices(z, rng)
        kernels = {"unified": lambda a=mats["unified"]: unified_spmm(a, x, tile=tile),
                   "csr": lambda a=mats["csr"]: csr_spmm(a, x, tile=tile),
                   "bsr4x4": lambda a=mats["bsr4x4"]: bsr_spmm(a, x, tile=tile)}
        np.testing.assert_allclose(kernels["unified"](), z @ x, rtol=1e-3, atol=1e-3)
        ms = timer(kernels, repeats)
        row = {"unify": unify, "prune": prune, "dense_ms": dense_ms, "dense_bytes": int(w.nbytes)}
        for name, a in mats.items():
            row[f"{name}_ms"] = ms[name]
            row[f"{name}_bytes"] = _nbytes(a)
            row[f"{name}_weights"] = int(np.count_nonzero(a.toarray()))
            row[f"{name}_multiplies"] = _multiplies(a)
        row["over_dense"] = dense_ms / ms["unified"]
        row["over_csr"] = ms["csr"] / ms["unified"]
        row["over_bsr4x4"] = ms["bsr4x4"] / ms["unified"]
        rows.append(row)
        print(f"unified {unify:.2f} + pruned {prune:.2f} of 4x4 blocks: {row['unified_bytes']:,} bytes "
              f"({row['dense_bytes'] / row['unified_bytes']:.1f}x below dense); at equal storage unified "
              f"{ms['unified']:.2f} ms, CSR {ms['csr']:.2f} ms, BSR 4x4 {ms['bsr4x4']:.2f} ms, dense "
              f"{dense_ms:.2f} ms -> {row['over_dense']:.2f}x dense, {row['over_csr']:.2f}x CSR, "
              f"{row['over_bsr4x4']:.2f}x BSR (weights: unified {row['unified_weights']:,}, CSR "
              f"{row['csr_weights']:,}, BSR {row['bsr4x4_weights']:,})")
    return rows
