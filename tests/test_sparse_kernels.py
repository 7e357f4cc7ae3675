"""SpMM kernels (numba, NumPy twin, scipy) against dense matmul, and the cost model on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.sparse.cost import compact_dense_shape, spmm_cost
from refimpl.sparse.formats import BSRMatrix, CSRMatrix
from refimpl.sparse.kernels import ENGINES, bsr_spmm, csr_spmm, spmm

# Each block shape is its own compiled numba kernel: keep the set small (compile time) but cover
# a 1-row block, a width that is not a multiple of 4 (the unrolled loop's remainder) and a square block.
BLOCK_SHAPES = [(1, 4), (2, 3), (4, 4)]
TOL = {np.float32: dict(rtol=1e-5), np.float64: dict(rtol=1e-12)}


@pytest.fixture(params=ENGINES)
def any_engine(request):
    """All three engines: numba, its NumPy twin and the scipy reference path."""
    return request.param


@pytest.fixture(scope="module", autouse=True)
def _compile_first():
    """Compile every kernel once up front so JIT time is not charged to the first Hypothesis example."""
    for dtype in (np.float32, np.float64):
        w = np.ones((5, 7), dtype)
        x = np.ones((7, 2), dtype)
        csr_spmm(CSRMatrix.from_dense(w), x)
        for bs in BLOCK_SHAPES:
            bsr_spmm(BSRMatrix.from_dense(w, block_shape=bs), x)


def assert_matmul_close(y, w, x, dtype):
    """``y ≈ w @ x``, the reference computed in float64, tolerance relative to ``|w| @ |x|``."""
    ref = w.astype(np.float64) @ x.astype(np.float64)
    scale = np.abs(w).astype(np.float64) @ np.abs(x).astype(np.float64)
    rtol = TOL[dtype]["rtol"]
    assert y.shape == ref.shape
    # Rounding in a sum of products is bounded by (a few ulps) × Σ|w||x|, not by |Σ w x|.
    assert np.all(np.abs(y - ref) <= rtol * (scale + 1e-30)), np.max(np.abs(y - ref) - rtol * scale)


@st.composite
def spmm_cases(draw):
    m = draw(st.integers(0, 10))
    k = draw(st.integers(0, 13))
    n = draw(st.integers(0, 9))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
    w = rng.standard_normal((m, k)).astype(dtype)
    mask = rng.random((m, k)) < density
    if m:  # empty rows
        mask[rng.random(m) < 0.3] = False
    if draw(st.booleans()) and m and k:  # a single nonzero
        mask[:] = False
        mask[draw(st.integers(0, m - 1)), draw(st.integers(0, k - 1))] = True
    x = rng.standard_normal((k, n)).astype(dtype)
    tile = draw(st.sampled_from([1, 3, 8, 512]))
    return np.where(mask, w, 0).astype(dtype), mask, x, tile


@pytest.mark.parametrize("engine_name", ENGINES)  # not a fixture: Hypothesis re-runs the body per example
@given(case=spmm_cases())
def test_csr_spmm_equals_dense_matmul(case, engine_name):
    w, mask, x, tile = case
    a = CSRMatrix.from_dense(w, mask)
    y = csr_spmm(a, x, engine=engine_name, tile=tile)
    assert y.dtype == w.dtype
    assert_matmul_close(y, w, x, w.dtype.type)


@pytest.mark.parametrize("engine_name", ENGINES)
@given(case=spmm_cases(), block_shape=st.sampled_from(BLOCK_SHAPES))
def test_bsr_spmm_equals_dense_matmul(case, block_shape, engine_name):
    w, mask, x, tile = case
    a = BSRMatrix.from_dense(w, mask, block_shape=block_shape)
    y = bsr_spmm(a, x, engine=engine_name, tile=tile)
    assert y.dtype == w.dtype
    assert_matmul_close(y, w, x, w.dtype.type)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_larger_case_long_rows_and_tiles(fmt, dtype, engine, rng):
    # Rows with many nonzeros run the 4-way unrolled loops; 37 columns with tile 16 leaves a ragged tile.
    w = rng.standard_normal((19, 45)).astype(dtype)
    mask = rng.random(w.shape) < 0.6
    x = rng.standard_normal((45, 37)).astype(dtype)
    a = CSRMatrix.from_dense(w, mask) if fmt == "csr" else BSRMatrix.from_dense(w, mask, block_shape=(4, 4))
    y = spmm(a, x, engine=engine, tile=16)
    assert y.dtype == dtype
    assert_matmul_close(y, np.where(mask, w, 0), x, dtype)
    np.testing.assert_array_equal(y, spmm(a, x, engine=engine, tile=16))  # deterministic


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_engines_agree_closely(fmt, rng):
    w = rng.standard_normal((13, 22))
    mask = rng.random(w.shape) < 0.4
    x = rng.standard_normal((22, 9))
    a = CSRMatrix.from_dense(w, mask) if fmt == "csr" else BSRMatrix.from_dense(w, mask, block_shape=(4, 4))
    ys = [spmm(a, x, engine=e) for e in ENGINES]
    for y in ys[1:]:
        np.testing.assert_allclose(y, ys[0], rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_all_zero_matrix_gives_zeros(fmt, any_engine):
    w = np.zeros((6, 5), dtype=np.float32)
    a = CSRMatrix.from_dense(w) if fmt == "csr" else BSRMatrix.from_dense(w, block_shape=(4, 4))
    assert a.nnz == 0
    y = spmm(a, np.ones((5, 3), np.float32), engine=any_engine)
    assert y.dtype == np.float32 and y.shape == (6, 3) and not y.any()


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_vector_rhs_and_mixed_dtypes(fmt, any_engine):
    w = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]], dtype=np.float32)
    a = CSRMatrix.from_dense(w) if fmt == "csr" else BSRMatrix.from_dense(w, block_shape=(2, 2))
    v = np.array([1.0, 2.0, 3.0])  # float64: the result is float64
    y = spmm(a, v, engine=any_engine)
    assert y.shape == (3,) and y.dtype == np.float64
    np.testing.assert_array_equal(y, [7.0, 0.0, 6.0])
    y32 = spmm(a, v.astype(np.float32), engine=any_engine)
    assert y32.dtype == np.float32
    np.testing.assert_array_equal(y32, [7.0, 0.0, 6.0])


@pytest.mark.parametrize("fmt", ["csr", "bsr"])
def test_noncontiguous_readonly_rhs_not_mutated(fmt, engine, rng):
    w = rng.standard_normal((7, 8))
    a = CSRMatrix.from_dense(w) if fmt == "csr" else BSRMatrix.from_dense(w, block_shape=(2, 3))
    base = rng.standard_normal((16, 10))
    x = base[::2, ::2]  # strided view
    x.flags.writeable = False
    before = x.copy()
    xf = np.asfortranarray(before)
    np.testing.assert_allclose(spmm(a, x, engine=engine), w @ before, rtol=1e-12)
    np.testing.assert_allclose(spmm(a, xf, engine=engine), w @ before, rtol=1e-12)
    np.testing.assert_array_equal(x, before)


def test_worked_example_by_hand(any_engine):
    # A = [[2, 0, 1], [0, 0, 0], [0, -1, 0]], X = [[1, 2], [3, 4], [5, 6]]
    # Y row 0 = 2·[1, 2] + 1·[5, 6] = [7, 10]; row 1 = 0; row 2 = -[3, 4]
    a = CSRMatrix.from_dense(np.array([[2.0, 0, 1], [0, 0, 0], [0, -1, 0]]))
    x = np.array([[1.0, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(csr_spmm(a, x, engine=any_engine), [[7.0, 10], [0, 0], [-3, -4]])
    b = BSRMatrix.from_dense(a.toarray(), block_shape=(2, 2))
    np.testing.assert_array_equal(bsr_spmm(b, x, engine=any_engine), [[7.0, 10], [0, 0], [-3, -4]])


@pytest.mark.parametrize("kernel", [csr_spmm, bsr_spmm, spmm])
def test_kernels_reject_bad_arguments(kernel):
    w = np.eye(4)
    a = BSRMatrix.from_dense(w, block_shape=(2, 2)) if kernel is bsr_spmm else CSRMatrix.from_dense(w)
    x = np.ones((4, 2))
    with pytest.raises(ValueError, match=r"x must have 4 rows"):
        kernel(a, np.ones((3, 2)))
    with pytest.raises(ValueError, match="x must have 1 or 2 dimensions"):
        kernel(a, np.ones((4, 2, 1)))
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        kernel(a, x.astype(complex))
    with pytest.raises(ValueError, match="engine must be one of"):
        kernel(a, x, engine="torch")
    with pytest.raises(ValueError, match="tile must be a positive integer"):
        kernel(a, x, tile=0)
    with pytest.raises(ValueError, match=r"tile must be a positive integer \(at most 2\*\*63 - 1\)"):
        kernel(a, x, tile=2**63)  # past int64: numba could not type the call
    assert np.array_equal(kernel(a, x, tile=2**63 - 1), x)
    with pytest.raises(TypeError, match="a must be a"):
        kernel(w, x)


def test_csr_spmm_rejects_bsr_and_vice_versa():
    with pytest.raises(TypeError, match="a must be a CSRMatrix"):
        csr_spmm(BSRMatrix.from_dense(np.eye(2), block_shape=(1, 1)), np.ones((2, 1)))
    with pytest.raises(TypeError, match="a must be a BSRMatrix"):
        bsr_spmm(CSRMatrix.from_dense(np.eye(2)), np.ones((2, 1)))


# ---------------------------------------------------------------------------------------------------------
# cost model
# ---------------------------------------------------------------------------------------------------------


def test_cost_hand_computed_all_formats():
    # 4x6 float32, N = 10; nonzeros at (0,0) (0,1) (1,1) (3,4) (3,5); row 2 empty; columns 2, 3 empty.
    w = np.zeros((4, 6), np.float32)
    w[0, 0], w[0, 1], w[1, 1], w[3, 4], w[3, 5] = 1, 2, 3, 4, 5
    n = 10
    dense = spmm_cost(w, n)
    assert dense == dict(macs=240, flops=480, bytes=4 * 24 + 4 * 60 + 4 * 40, value_bytes=96, index_bytes=0,
                         x_bytes=240, y_bytes=160)
    # compact: rows {0,1,3} x columns {0,1,4,5} -> 3x4
    assert compact_dense_shape(w) == (3, 4)
    compact = spmm_cost(w, n, format="compact")
    assert compact["macs"] == 3 * 4 * 10 and compact["bytes"] == 4 * 12 + 4 * 40 + 4 * 30
    # CSR: 5 values, 5 indices + 5 indptr (int32), X rows used {0,1,4,5}, Y 4 rows
    csr = spmm_cost(CSRMatrix.from_dense(w), n)
    assert csr["macs"] == 50 and csr["flops"] == 100
    assert csr["value_bytes"] == 20 and csr["index_bytes"] == 4 * (5 + 5)
    assert csr["x_bytes"] == 4 * 4 * 10 and csr["y_bytes"] == 4 * 4 * 10
    assert csr["bytes"] == 20 + 40 + 160 + 160
    # BSR 2x4: block grid 2x2 (columns padded 6 -> 8). Blocks: (0,0) holds (0,0),(0,1),(1,1);
    # (1,1) holds (3,4),(3,5) and is clipped to 2 columns. MACs count the stored entries inside the shape:
    # 8 + 2·2 = 12 per column of X. Values: 2 blocks x 8 (padding included). X rows: 4 + 2.
    bsr = spmm_cost(BSRMatrix.from_dense(w, block_shape=(2, 4)), n)
    assert bsr["macs"] == 12 * 10
    assert bsr["value_bytes"] == 4 * 16 and bsr["index_bytes"] == 4 * (2 + 3)
    assert bsr["x_bytes"] == 4 * 6 * 10 and bsr["y_bytes"] == 4 * 4 * 10
    assert bsr["bytes"] == 64 + 20 + 240 + 160


def test_cost_dtype_override_and_errors():
    w = np.eye(3)
    assert spmm_cost(w, 2)["value_bytes"] == 8 * 9
    assert spmm_cost(w, 2, dtype=np.float32)["value_bytes"] == 4 * 9
    with pytest.raises(ValueError, match="format must be 'dense' or 'compact'"):
        spmm_cost(w, 2, format="csr")
    with pytest.raises(ValueError, match="format is only for a dense a"):
        spmm_cost(CSRMatrix.from_dense(w), 2, format="dense")
    with pytest.raises(ValueError, match="n_cols must be >= 0"):
        spmm_cost(w, -1)


def test_cost_flops_match_kernel_work(rng):
    # MACs of CSR == nnz·N, and the ideal speedup over dense is 1 / density.
    w = rng.standard_normal((8, 16)) * (rng.random((8, 16)) < 0.25)
    a = CSRMatrix.from_dense(w)
    assert spmm_cost(a, 5)["macs"] == np.count_nonzero(w) * 5
    ratio = spmm_cost(w, 5)["flops"] / spmm_cost(a, 5)["flops"]
    assert ratio == pytest.approx(1 / a.density)
