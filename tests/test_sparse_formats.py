"""CSR / BSR containers: construction, round trips, scipy interop and the structural validator."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from refimpl.sparse.formats import BSRMatrix, CSRMatrix, FormatReport, check_format

# ---------------------------------------------------------------------------------------------------------
# strategies: small matrices with a random keep mask (empty rows, all-zero and single-entry cases included)
# ---------------------------------------------------------------------------------------------------------


@st.composite
def masked_matrices(draw, max_rows=9, max_cols=11):
    m = draw(st.integers(0, max_rows))
    k = draw(st.integers(0, max_cols))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0]))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, k)).astype(dtype)
    # Some exact zeros inside the mask, to exercise drop_zeros.
    w[rng.random((m, k)) < 0.1] = 0
    mask = rng.random((m, k)) < density
    if draw(st.booleans()) and m and k:  # sometimes a single kept entry
        mask[:] = False
        mask[draw(st.integers(0, m - 1)), draw(st.integers(0, k - 1))] = True
    return w, mask


block_shapes = st.tuples(st.integers(1, 5), st.integers(1, 5))


def _masked(w, mask, drop_zeros=True):
    keep = mask & (w != 0) if drop_zeros else mask
    return np.where(keep, w, 0).astype(w.dtype)


# ---------------------------------------------------------------------------------------------------------
# CSR
# ---------------------------------------------------------------------------------------------------------


@given(masked_matrices(), st.booleans())
def test_csr_roundtrip_dense(case, drop_zeros):
    w, mask = case
    a = CSRMatrix.from_dense(w, mask, drop_zeros=drop_zeros)
    out = a.toarray()
    assert out.dtype == w.dtype
    np.testing.assert_array_equal(out, _masked(w, mask))
    keep = mask & (w != 0) if drop_zeros else mask
    assert a.nnz == np.count_nonzero(keep)
    report = a.check_format()
    assert report.n_stored == a.nnz
    assert report.explicit_zeros == (0 if drop_zeros else np.count_nonzero(mask & (w == 0)))


@given(masked_matrices())
def test_csr_matches_scipy_canonical_arrays(case):
    w, mask = case
    a = CSRMatrix.from_dense(w, mask)
    ref = sp.csr_matrix(_masked(w, mask))  # scipy drops zeros and sorts: an independent oracle
    np.testing.assert_array_equal(a.indptr, ref.indptr)
    np.testing.assert_array_equal(a.indices, ref.indices)
    np.testing.assert_array_equal(a.data, ref.data)
    s = a.to_scipy()
    assert s.shape == w.shape and s.dtype == w.dtype
    s.check_format(full_check=True)
    np.testing.assert_array_equal(s.toarray(), _masked(w, mask))
    back = CSRMatrix.from_scipy(s)
    np.testing.assert_array_equal(back.toarray(), a.toarray())
    np.testing.assert_array_equal(back.indices, a.indices)


def test_csr_from_dense_without_mask_and_density():
    w = np.array([[0.0, 1.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, -3.0]])
    a = CSRMatrix.from_dense(w)
    np.testing.assert_array_equal(a.indptr, [0, 1, 1, 3])
    np.testing.assert_array_equal(a.indices, [1, 0, 3])
    np.testing.assert_array_equal(a.data, [1.5, 2.0, -3.0])
    assert a.indices.dtype == np.int32 and a.indptr.dtype == np.int32
    assert a.nnz == 3 and a.density == pytest.approx(3 / 12)
    dense = CSRMatrix.from_dense(w, drop_zeros=False)
    assert dense.nnz == 12 and dense.check_format().explicit_zeros == 9


def test_csr_entries_outside_mask_are_dropped_whatever_their_value():
    w = np.arange(1.0, 7.0).reshape(2, 3)
    mask = np.array([[True, False, False], [False, False, True]])
    a = CSRMatrix.from_dense(w, mask)
    np.testing.assert_array_equal(a.toarray(), [[1.0, 0, 0], [0, 0, 6.0]])


def test_from_dense_does_not_mutate_and_accepts_readonly_noncontiguous(rng):
    base = rng.standard_normal((6, 10))
    w = base[:, ::2]  # non-contiguous
    w.flags.writeable = False
    before = w.copy()
    mask = np.abs(w) > 0.5
    a = CSRMatrix.from_dense(w, mask)
    b = BSRMatrix.from_dense(w, mask, block_shape=(4, 2))
    np.testing.assert_array_equal(w, before)
    np.testing.assert_array_equal(a.toarray(), np.where(mask, w, 0))
    np.testing.assert_array_equal(b.toarray(), np.where(mask, w, 0))


def test_containers_are_frozen_and_arrays_readonly():
    a = CSRMatrix.from_dense(np.eye(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.shape = (4, 4)
    with pytest.raises(ValueError, match="read-only"):
        a.data[0] = 5.0
    b = BSRMatrix.from_dense(np.eye(4), block_shape=(2, 2))
    with pytest.raises(ValueError, match="read-only"):
        b.indices[0] = 1
    # the caller's array keeps its flags
    data = np.array([1.0])
    CSRMatrix((1, 1), data, np.array([0], np.int32), np.array([0, 1], np.int32))
    assert data.flags.writeable


def test_integer_input_becomes_float64():
    a = CSRMatrix.from_dense(np.array([[1, 0], [0, 2]]))
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a.toarray(), [[1.0, 0.0], [0.0, 2.0]])


def test_from_scipy_sums_duplicates_and_keeps_explicit_zeros():
    coo = sp.coo_matrix((np.array([1.0, 2.0, 0.0]), (np.array([0, 0, 1]), np.array([1, 1, 0]))), shape=(2, 2))
    a = CSRMatrix.from_scipy(coo)
    np.testing.assert_array_equal(a.toarray(), [[0.0, 3.0], [0.0, 0.0]])
    assert a.nnz == 2 and a.check_format().explicit_zeros == 1


# ---------------------------------------------------------------------------------------------------------
# BSR
# ---------------------------------------------------------------------------------------------------------


@given(masked_matrices(), block_shapes, st.booleans())
def test_bsr_roundtrip_dense(case, block_shape, drop_zeros):
    w, mask = case
    a = BSRMatrix.from_dense(w, mask, block_shape=block_shape, drop_zeros=drop_zeros)
    assert a.shape == w.shape and a.dtype == w.dtype
    np.testing.assert_array_equal(a.toarray(), _masked(w, mask, drop_zeros))
    report = a.check_format()
    # A block is stored iff it holds a kept entry.
    bh, bw = block_shape
    mb, kb = -(-w.shape[0] // bh), -(-w.shape[1] // bw)
    keep = np.zeros((mb * bh, kb * bw), dtype=bool)
    keep[: w.shape[0], : w.shape[1]] = mask & (w != 0) if drop_zeros else mask
    expected_blocks = np.count_nonzero(keep.reshape(mb, bh, kb, bw).any(axis=(1, 3)))
    assert a.n_blocks == expected_blocks
    assert report.n_stored == expected_blocks * bh * bw
    stored_nonzero = np.count_nonzero(a.toarray())
    assert report.explicit_zeros == a.nnz - stored_nonzero
    assert 0.0 <= a.density <= 1.0 and 0.0 <= a.block_density <= 1.0


@given(masked_matrices(), block_shapes)
def test_bsr_scipy_roundtrip(case, block_shape):
    w, mask = case
    a = BSRMatrix.from_dense(w, mask, block_shape=block_shape)
    s = a.to_scipy()
    assert s.shape == a.padded_shape and s.blocksize == a.block_shape
    s.check_format(full_check=True)
    m, k = w.shape
    np.testing.assert_array_equal(s.toarray()[:m, :k], _masked(w, mask))
    assert not s.toarray()[m:].any() and not s.toarray()[:, k:].any()
    back = BSRMatrix.from_scipy(s, shape=a.shape)
    assert back.shape == a.shape and back.block_shape == a.block_shape
    np.testing.assert_array_equal(back.data, a.data)
    np.testing.assert_array_equal(back.indices, a.indices)
    np.testing.assert_array_equal(back.indptr, a.indptr)
    # from a non-BSR scipy matrix: scipy forms the blocks, padding handled here
    via_csr = BSRMatrix.from_scipy(sp.csr_matrix(_masked(w, mask)), block_shape=block_shape)
    assert via_csr.shape == w.shape
    np.testing.assert_array_equal(via_csr.toarray(), _masked(w, mask))


def test_bsr_padding_worked_example():
    # 3x5 with 2x2 blocks: a 2x3 block grid, padded to 4x6.
    w = np.arange(1.0, 16.0).reshape(3, 5)
    a = BSRMatrix.from_dense(w, block_shape=(2, 2))
    assert a.block_grid == (2, 3) and a.padded_shape == (4, 6)
    assert a.n_blocks == 6 and a.nnz == 15 and a.density == 1.0
    np.testing.assert_array_equal(a.data[5], [[15.0, 0.0], [0.0, 0.0]])  # the corner block
    np.testing.assert_array_equal(a.toarray(), w)
    report = a.check_format()
    assert report.n_stored == 24 and report.explicit_zeros == 0 and report.zero_blocks == 0


def test_bsr_kept_block_stores_dropped_entries_as_zeros():
    w = np.arange(1.0, 17.0).reshape(4, 4)
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = True  # one entry of the top-left 2x2 block
    a = BSRMatrix.from_dense(w, mask, block_shape=(2, 2))
    assert a.n_blocks == 1
    np.testing.assert_array_equal(a.data[0], [[1.0, 0.0], [0.0, 0.0]])
    assert a.check_format().explicit_zeros == 3


def test_bsr_zero_block_reported_when_zeros_kept():
    w = np.zeros((2, 4))
    w[0, 3] = 1.0
    a = BSRMatrix.from_dense(w, np.ones((2, 4), bool), block_shape=(2, 2), drop_zeros=False)
    report = a.check_format()
    assert a.n_blocks == 2 and report.zero_blocks == 1 and report.explicit_zeros == 7


def test_bsr_from_scipy_checks_arguments():
    s = sp.bsr_matrix(np.eye(4), blocksize=(2, 2))
    with pytest.raises(ValueError, match="block_shape"):
        BSRMatrix.from_scipy(s, block_shape=(4, 4))
    with pytest.raises(ValueError, match="block_shape is required"):
        BSRMatrix.from_scipy(sp.csr_matrix(np.eye(4)))
    with pytest.raises(TypeError, match="mat"):
        BSRMatrix.from_scipy(np.eye(4))
    with pytest.raises(TypeError, match="mat"):
        CSRMatrix.from_scipy(np.eye(4))


# ---------------------------------------------------------------------------------------------------------
# bad dense input
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [CSRMatrix, BSRMatrix])
def test_from_dense_rejects_bad_input(cls):
    with pytest.raises(ValueError, match="w must have 2 dimensions"):
        cls.from_dense(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="w contains NaN"):
        cls.from_dense(np.array([[1.0, np.nan]]))
    with pytest.raises(TypeError, match="mask must be a boolean"):
        cls.from_dense(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="mask must have the shape"):
        cls.from_dense(np.ones((2, 2)), np.ones((2, 3), bool))


def test_bsr_rejects_bad_block_shape():
    with pytest.raises(ValueError, match=r"block_shape\[0\] must be >= 1"):
        BSRMatrix.from_dense(np.ones((2, 2)), block_shape=(0, 2))
    with pytest.raises(ValueError, match="block_shape must be a pair"):
        BSRMatrix.from_dense(np.ones((2, 2)), block_shape=(2,))
    with pytest.raises(TypeError, match=r"block_shape\[1\] must be an integer"):
        BSRMatrix.from_dense(np.ones((2, 2)), block_shape=(2, 1.5))


# ---------------------------------------------------------------------------------------------------------
# the validator: each kind of malformed structure, with the field named
# ---------------------------------------------------------------------------------------------------------

I32 = np.int32


def _csr(data, indices, indptr, shape=(2, 4)):
    return CSRMatrix(shape, np.asarray(data, float), np.asarray(indices, I32), np.asarray(indptr, I32))


def test_validator_accepts_valid_and_reports_counts():
    a = _csr([1.0, 0.0, 2.0], [0, 3, 1], [0, 2, 3])
    assert check_format(a) == FormatReport("csr", 3, 1, None)
    assert check_format(a, full_check=False) == FormatReport("csr", 3, None, None)


@pytest.mark.parametrize(
    ("data", "indices", "indptr", "match"),
    [
        ([1.0, 2.0], [2, 0], [0, 2, 2], r"indices must be sorted .* unsorted index 0 after 2 in row 0"),
        ([1.0, 2.0], [1, 1], [0, 2, 2], r"indices must be sorted .* duplicate index 1 after 1 in row 0"),
        ([1.0, 2.0, 3.0], [0, 3, 2], [0, 1, 3], r"unsorted index 2 after 3 in row 1"),
        ([1.0, 2.0], [0, 4], [0, 1, 2], r"indices must lie in \[0, 4\) \(columns\), found 4"),
        ([1.0, 2.0], [-1, 0], [0, 1, 2], r"indices must lie in \[0, 4\) \(columns\), found -1"),
        ([1.0, 2.0], [0, 1], [1, 1, 2], r"indptr\[0\] must be 0, got 1"),
    ],
)
def test_validator_rejects_malformed_csr(data, indices, indptr, match):
    # Construction runs the full O(nnz) check: a malformed matrix never exists (the kernels trust it).
    with pytest.raises(ValueError, match=match):
        _csr(data, indices, indptr)


def test_validator_rejects_non_monotone_indptr():
    match = r"indptr must be non-decreasing, but indptr\[2\] = 1 < indptr\[1\] = 3"
    with pytest.raises(ValueError, match=match):
        _csr([1.0, 2.0, 3.0], [0, 1, 2], [0, 3, 1, 3], shape=(3, 4))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(indptr=[0, 1]), r"indptr must have 2 \+ 1 = 3 entries"),
        (dict(indptr=[0, 2, 1]), r"indptr\[-1\] must equal len\(indices\) = 2, got 1"),
        (dict(data=[1.0]), "data and indices must have the same length, got data 1 and indices 2"),
        (dict(data=np.array([1, 2])), "data must be float32 or float64, got dtype int64"),
        (dict(indices=np.array([0.0, 1.0])), "indices must be int32 or int64, got dtype float64"),
        (dict(indices=np.array([0, 1], np.int16)), "indices must be int32 or int64, got dtype int16"),
        (dict(indices=np.array([0, 1], np.int64)), "indices and indptr must share one dtype"),
        (dict(data=np.ones((2, 1))), "data must have 1 dimensions"),
        (dict(shape=(2,)), r"shape must be a pair"),
        (dict(shape=(2, -4)), r"shape must hold two non-negative integers"),
    ],
)
def test_constructor_rejects_wrong_lengths_and_dtypes(kwargs, match):
    args = dict(shape=(2, 4), data=np.array([1.0, 2.0]), indices=np.array([0, 1], I32),
                indptr=np.array([0, 1, 2], I32))
    args.update({k: (np.asarray(v, I32) if k == "indptr" else v) for k, v in kwargs.items()})
    with pytest.raises(ValueError, match=match):
        CSRMatrix(**args)


def test_validator_rejects_nan_data():
    with pytest.raises(ValueError, match="data contains NaN"):
        _csr([1.0, np.nan], [0, 1], [0, 1, 2])


def test_validator_rejects_other_types():
    with pytest.raises(TypeError, match="CSRMatrix, BSRMatrix, BalancedMatrix or VectorBlockMatrix"):
        check_format(sp.csr_matrix(np.eye(2)))


def _bsr(data, indices, indptr, shape=(4, 6), block_shape=(2, 2)):
    arrays = np.asarray(data, float), np.asarray(indices, I32), np.asarray(indptr, I32)
    return BSRMatrix(shape, *arrays, block_shape)


def test_bsr_validator_rejects_malformed():
    blk = np.ones((2, 2, 2))
    with pytest.raises(ValueError, match=r"unsorted index 0 after 2 in row 0"):
        check_format(_bsr(blk, [2, 0], [0, 2, 2]))
    with pytest.raises(ValueError, match=r"duplicate index 1"):
        check_format(_bsr(blk, [1, 1], [0, 2, 2]))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 3\) \(block columns"):
        check_format(_bsr(blk, [0, 3], [0, 1, 2]))
    with pytest.raises(ValueError, match=r"indptr must be non-decreasing"):
        check_format(_bsr(np.ones((3, 2, 2)), [0, 1, 2], [0, 3, 1, 3], shape=(6, 6)))
    with pytest.raises(ValueError, match=r"data must have shape \(n_blocks, 2, 2\)"):
        _bsr(np.ones((2, 2, 3)), [0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match=r"data must hold one block per entry of indices \(2\), got 3"):
        _bsr(np.ones((3, 2, 2)), [0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match=r"indptr must have 2 \+ 1 = 3 entries"):
        _bsr(blk, [0, 1], [0, 2])


def test_bsr_validator_rejects_nonzero_padding():
    # shape (3, 3) with 2x2 blocks: row 3 and column 3 of the grid are padding.
    with pytest.raises(ValueError, match="data: padding entries"):
        _bsr([[[1.0, 2.0], [3.0, 0.0]]], [1], [0, 0, 1], shape=(3, 3))
    fine = _bsr([[[1.0, 0.0], [0.0, 0.0]]], [1], [0, 0, 1], shape=(3, 3))
    report = check_format(fine)
    assert report.explicit_zeros == 0  # the three padding zeros are not "explicit zeros"
    np.testing.assert_array_equal(fine.toarray(), [[0, 0, 0], [0, 0, 0], [0, 0, 1.0]])
