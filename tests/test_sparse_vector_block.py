"""The vector ∧ block sparse format: construction, the full validator, its SpMM against dense, and compile.

Every engine (numba, its NumPy twin, scipy via CSR) is compared with a float64 dense product; CI also runs
this file with ``NUMBA_DISABLE_JIT=1``. The malformed-array fuzz of all formats, in a child process, is in
``tests/test_sparse_fuzz.py``; here every named malformation is refused at construction.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sparse_balanced import _balanced_lenet as _lenet  # LeNet-5 (8x8) with conv2 / fc1 masked
from test_sparse_balanced import _masked_outputs, assert_matmul_close

from refimpl.projections import mask_balanced, mask_blocks, mask_vector_block
from refimpl.sparse import check_format, spmm, spmm_cost
from refimpl.sparse.kernels import ENGINES
from refimpl.sparse.vector_block import VectorBlockMatrix, best_vector_block, check_vector_block
from refimpl.sparse.vector_block_spmm import default_panel, vector_block_spmm

TOL = {np.float32: 1e-5, np.float64: 1e-12}


@pytest.fixture(scope="module", autouse=True)
def _compile_first():
    """Compile the kernel for both dtypes and both offset dtypes before any Hypothesis example."""
    for dtype in (np.float32, np.float64):
        for bs, v in (((2, 4), 2), ((1, 300), 300)):
            a = VectorBlockMatrix.from_dense(np.ones((3, 7), dtype), block_shape=bs, vector_size=v)
            vector_block_spmm(a, np.ones((7, 2), dtype))


# --- construction --------------------------------------------------------------------------------------


def test_the_worked_example():
    # 3 x 10 with 2 x 4 blocks (a padded block row and a clipped block column) and vectors of 2
    w = np.zeros((3, 10))
    w[0, [0, 3]] = [1.0, 2.0]
    w[1, [1, 2]] = [3.0, 4.0]
    w[2, [5, 9]] = [5.0, 6.0]
    a = VectorBlockMatrix.from_dense(w, block_shape=(2, 4), vector_size=2)
    assert a.block_grid == (2, 3) and a.k == 1 and a.n_blocks == 3
    assert a.indptr.tolist() == [0, 1, 3] and a.indices.tolist() == [0, 1, 2]
    assert a.data.shape == a.offsets.shape == (3, 2, 2, 1)
    assert a.data[0, :, :, 0].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert a.offsets[0, :, :, 0].tolist() == [[0, 1], [1, 0]]
    # block (1, 2) covers columns 8-11 (10, 11 past K): column 9 is offset 1 of vector 0
    assert a.offsets[2, 0, 0, 0] == 1 and a.data[2, 0, 0, 0] == 6.0
    assert a.data[2, 0, 1, 0] == 0.0  # the vector of columns 10-11: padding
    assert a.data[1:, 1].tolist() == [[[0.0], [0.0]], [[0.0], [0.0]]]  # row 3: padding
    assert np.array_equal(a.toarray(), w)
    # slots inside (3, 10): block 0: 4; block 1 (row 2 only): 2; block 2: 1 (its second vector is past K)
    assert a.nnz == 7
    report = check_format(a)
    assert report.format == "vector_block" and report.explicit_zeros == 1 and report.zero_blocks == 0
    assert repr(a).startswith("VectorBlockMatrix(shape=(3, 10), block_shape=(2, 4), vector_size=2, k=1")


@st.composite
def matrices(draw):
    m, k = draw(st.integers(0, 11)), draw(st.integers(0, 25))
    bh = draw(st.integers(1, 5))
    v = draw(st.integers(1, 5))
    bw = v * draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.standard_normal((m, k)).astype(dtype)
    density = draw(st.sampled_from([0.0, 0.1, 0.4, 1.0]))
    mask = rng.random((m, k)) < density
    return w, mask, (bh, bw), v


@settings(max_examples=150, deadline=None)
@given(case=matrices(), extra=st.integers(0, 2))
def test_from_dense_stores_exactly_the_kept_entries(case, extra):
    w, mask, bs, v = case
    a = VectorBlockMatrix.from_dense(w, mask, block_shape=bs, vector_size=v)
    assert np.array_equal(a.toarray(), np.where(mask, w, 0)) and a.dtype == w.dtype
    assert a.to_scipy().nnz == a.nnz >= np.count_nonzero(mask)
    b = VectorBlockMatrix.from_dense(w, mask, block_shape=bs, vector_size=v, k=min(a.k + extra, v))
    assert np.array_equal(b.toarray(), a.toarray())
    assert check_format(b).n_stored == b.data.size


def test_a_vector_and_block_mask_needs_no_padding():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((24, 70))  # K = 70: a clipped last block column of 8 x 8 blocks
    for bs, v, total in (((4, 4), 4, 0.9), ((8, 8), 4, 0.75), ((8, 8), 8, 0.95), ((1, 16), 8, 0.8)):
        mask = mask_vector_block(w, v, bs, total_sparsity=total)
        a = VectorBlockMatrix.from_dense(w, mask, block_shape=bs, vector_size=v)
        assert a.nnz == np.count_nonzero(mask), (bs, v)
        layout = best_vector_block(mask)
        assert layout.slots == np.count_nonzero(mask) and layout.k == a.k
        assert layout.n_blocks <= a.n_blocks


def test_best_vector_block_finds_the_pruning_s_layout_and_not_others():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((32, 96))
    mask = mask_vector_block(w, 4, (8, 8), vector_keep=1, block_keep=40)
    layout = best_vector_block(mask)
    assert (layout.block_shape, layout.vector_size, layout.k) == ((8, 8), 4, 1)
    assert layout.slots == mask.sum() and layout.n_blocks == 40 and layout.grid_blocks == 4 * 12
    unstructured = rng.random((32, 96)) < 0.1
    assert best_vector_block(unstructured).slots > 1.5 * unstructured.sum()
    assert best_vector_block(mask, block_shapes=[(3, 3)], vector_sizes=[2]) is None  # 2 does not divide 3
    with pytest.raises(ValueError, match="keep"):
        best_vector_block(mask.astype(int))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"vector_size": 3}, ValueError, "divide the block width"),
        ({"vector_size": 0}, ValueError, "vector_size"),
        ({"block_shape": (0, 4)}, ValueError, "block_shape"),
        ({"k": 0}, ValueError, "k must be"),
        ({"k": 5}, ValueError, "k must be"),
        ({"k": 1.5}, ValueError, "k must be"),
        ({"mask": np.ones((3, 8))}, TypeError, "mask"),
        ({"mask": np.ones((3, 7), bool)}, ValueError, "mask"),
        ({"w": np.full((3, 8), np.nan)}, ValueError, "w"),
    ],
)
def test_bad_from_dense_arguments_name_themselves(kwargs, exc, match):
    args = {"w": np.arange(24.0).reshape(3, 8), "block_shape": (2, 4), "vector_size": 4, **kwargs}
    with pytest.raises(exc, match=match):
        VectorBlockMatrix.from_dense(args.pop("w"), **args)


def test_the_matrix_owns_frozen_copies():
    w = np.arange(1.0, 25.0).reshape(3, 8)
    a = VectorBlockMatrix.from_dense(w, block_shape=(2, 4), vector_size=2)
    arrays = {name: np.array(getattr(a, name)) for name in ("data", "offsets", "indices", "indptr")}
    b = VectorBlockMatrix(a.shape, **arrays, block_shape=(2, 4), vector_size=2)
    arrays["data"][0, 0, 0, 0] = np.nan
    arrays["offsets"][0, 0, 0, 0] = 99
    arrays["indices"][0] = 10**8  # the caller's arrays change: the matrix does not
    assert np.array_equal(b.toarray(), w)
    for arr in (b.data, b.offsets, b.indices, b.indptr):
        with pytest.raises(ValueError):
            arr[...] = 0
        with pytest.raises(ValueError):
            arr.flags.writeable = True
    for clone in (copy.copy(b), copy.deepcopy(b), pickle.loads(pickle.dumps(b))):
        assert np.array_equal(clone.toarray(), w) and clone.block_shape == (2, 4) and clone.vector_size == 2


# --- the validator: a malformed matrix is a ValueError ---------------------------------------------------


def _valid():
    """5 x 11 with 2 x 6 blocks and V = 3: a padded block row, a clipped block column, k = 2."""
    w = np.arange(1.0, 56.0).reshape(5, 11)
    mask = mask_vector_block(w, 3, (2, 6), vector_keep=2, block_keep=4)
    a = VectorBlockMatrix.from_dense(w, mask, block_shape=(2, 6), vector_size=3)
    assert a.k == 2 and a.indices.tolist()[-1] == 1  # the last block sits in the clipped column
    return {
        "shape": a.shape,
        "data": np.array(a.data),
        "offsets": np.array(a.offsets),
        "indices": np.array(a.indices),
        "indptr": np.array(a.indptr),
        "block_shape": (2, 6),
        "vector_size": 3,
    }


def _set(arrays, name, index, value):
    arrays[name] = np.array(arrays[name])
    arrays[name][index] = value
    return arrays


MALFORMED = {
    "data 3-D": lambda a: {**a, "data": a["data"][..., 0]},
    "data rows": lambda a: {**a, "data": a["data"][:, :1], "offsets": a["offsets"][:, :1]},
    "data blocks": lambda a: {**a, "data": a["data"][:-1], "offsets": a["offsets"][:-1]},
    "offsets shape": lambda a: {**a, "offsets": a["offsets"][..., :1]},
    "data int": lambda a: {**a, "data": a["data"].astype(np.int64)},
    "data complex": lambda a: {**a, "data": a["data"].astype(complex)},
    "offsets float": lambda a: {**a, "offsets": a["offsets"].astype(float)},
    "offsets bool": lambda a: {**a, "offsets": a["offsets"].astype(bool)},
    "k > V": lambda a: {
        **a,
        "data": np.zeros((*a["data"].shape[:3], 4)),
        "offsets": np.broadcast_to(np.arange(4, dtype=np.uint8), (*a["data"].shape[:3], 4)),
    },
    "offset = V": lambda a: _set(a, "offsets", (0, 0, 0, 1), 3),
    "offset 255": lambda a: _set(a, "offsets", (1, 1, 1, 1), 255),
    "offset negative": lambda a: _set(
        {**a, "offsets": a["offsets"].astype(np.int32)}, "offsets", (0, 0, 1, 0), -1
    ),
    "duplicate": lambda a: _set(a, "offsets", (0, 0, 0, 1), a["offsets"][0, 0, 0, 0]),
    "unsorted": lambda a: _set(a, "offsets", (0, 0, 0), a["offsets"][0, 0, 0, ::-1]),
    "NaN": lambda a: _set(a, "data", (1, 0, 0, 0), np.nan),
    "inf": lambda a: _set(a, "data", (1, 0, 0, 0), -np.inf),
    "row padding": lambda a: _set(a, "data", (-1, 1, 0, 0), 1.0),  # row 5 of the 6-row grid
    "column padding": lambda a: _set(_set(a, "offsets", (-1, 0, 1), [0, 2]), "data", (-1, 0, 1), [1.0, 5.0]),
    "index out of range": lambda a: _set(a, "indices", -1, 2),
    "index 10**8": lambda a: _set(a, "indices", 0, 10**8),
    "index negative": lambda a: _set(a, "indices", 0, -1),
    "index duplicate": lambda a: _set(a, "indices", 1, a["indices"][0]),
    "indptr start": lambda a: _set(a, "indptr", 0, 1),
    "indptr end": lambda a: _set(a, "indptr", -1, a["indptr"][-1] - 1),
    "indptr decreasing": lambda a: _set(a, "indptr", 1, a["indptr"][-1] + 1),
    "indptr length": lambda a: {**a, "indptr": a["indptr"][:-1]},
    "index dtypes differ": lambda a: {**a, "indices": a["indices"].astype(np.int64)},
    "index float": lambda a: {
        **a,
        "indices": a["indices"].astype(float),
        "indptr": a["indptr"].astype(float),
    },
    "shape rows": lambda a: {**a, "shape": (7, 11)},
    "shape columns": lambda a: {**a, "shape": (5, 5)},
    "shape negative": lambda a: {**a, "shape": (-5, 11)},
    "shape triple": lambda a: {**a, "shape": (5, 11, 1)},
    "block_shape": lambda a: {**a, "block_shape": (2, 3)},
    "block_shape zero": lambda a: {**a, "block_shape": (0, 6)},
    "vector_size not dividing": lambda a: {**a, "vector_size": 4},
    "vector_size 0": lambda a: {**a, "vector_size": 0},
    "vector_size str": lambda a: {**a, "vector_size": "3"},
}


def _build(arrays):
    return VectorBlockMatrix(**arrays)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_every_malformed_matrix_is_refused_at_construction(name):
    with pytest.raises(ValueError):
        _build(MALFORMED[name](_valid()))


def test_the_validator_names_the_broken_field():
    cases = {
        "offset = V": "offsets must lie in",
        "duplicate": "duplicate offset",
        "unsorted": "unsorted offset",
        "row padding": "padding slots",
        "column padding": "padding slots",
        "NaN": "NaN",
        "k > V": "more than vector_size",
        "offsets float": "offsets must be one of",
        "data int": "data must be float32",
        "index out of range": "indices must lie in",
        "index duplicate": "duplicate index",
        "indptr start": r"indptr\[0\]",
        "indptr end": r"indptr\[-1\]",
        "vector_size not dividing": "divide the block width",
        "data blocks": "one block per entry of indices",
    }
    for name, match in cases.items():
        with pytest.raises(ValueError, match=match):
            _build(MALFORMED[name](_valid()))
    with pytest.raises(TypeError, match="VectorBlockMatrix"):
        check_vector_block("not a matrix")
    with pytest.raises(TypeError, match="VectorBlockMatrix"):
        check_format("not a matrix")


def test_big_endian_and_lists_are_taken_in_native_order():
    a = _valid()
    b = _build({**a, "data": a["data"].astype(">f8").tolist(), "offsets": a["offsets"].astype(">i4")})
    assert b.data.dtype.isnative and b.offsets.dtype == np.int32
    assert np.array_equal(b.toarray(), _build(a).toarray())
    report = check_format(b, full_check=False)
    assert report.format == "vector_block" and report.explicit_zeros is None


# --- the kernel against dense ----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    case=matrices(),
    n=st.integers(0, 9),
    engine=st.sampled_from(ENGINES),
    tile=st.sampled_from([1, 3, 512]),
    panel=st.sampled_from([None, 1, 2, 5]),
)
def test_every_engine_equals_the_dense_product(case, n, engine, tile, panel):
    w, mask, bs, v = case
    a = VectorBlockMatrix.from_dense(w, mask, block_shape=bs, vector_size=v)
    x = np.random.default_rng(n).standard_normal((w.shape[1], n)).astype(w.dtype)
    y = vector_block_spmm(a, x, engine=engine, tile=tile, panel=panel)
    assert y.dtype == w.dtype
    assert_matmul_close(y, np.where(mask, w, 0), x, TOL[w.dtype.type])


@pytest.mark.parametrize("engine", ENGINES)
def test_vectors_dtypes_and_the_dispatch(engine):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((12, 50)).astype(np.float32)
    a = VectorBlockMatrix.from_dense(
        w, mask_vector_block(w, 4, (4, 8), total_sparsity=0.8), block_shape=(4, 8), vector_size=4
    )
    dense = a.toarray()
    x1 = rng.standard_normal(50)  # float64 x: a float64 result
    y1 = vector_block_spmm(a, x1, engine=engine)
    assert y1.shape == (12,) and y1.dtype == np.float64
    assert_matmul_close(y1[:, None], dense, x1[:, None], 1e-12)
    x2 = np.asfortranarray(rng.standard_normal((50, 7)).astype(np.float32))
    assert np.array_equal(spmm(a, x2, engine=engine), vector_block_spmm(a, x2, engine=engine))
    assert_matmul_close(vector_block_spmm(a, x2, engine=engine), dense, x2, 1e-5)


def test_the_numba_kernel_and_its_numpy_twin_agree_on_a_large_layer():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((66, 1150)).astype(np.float32)  # 66 % 4 and 1150 % 8: padded row and column
    mask = mask_vector_block(w, 4, (4, 8), total_sparsity=0.9)
    a = VectorBlockMatrix.from_dense(w, mask, block_shape=(4, 8), vector_size=4)
    x = rng.standard_normal((1150, 300)).astype(np.float32)
    y_numba, y_numpy = vector_block_spmm(a, x), vector_block_spmm(a, x, engine="numpy")
    np.testing.assert_allclose(y_numba, y_numpy, rtol=1e-4, atol=1e-4)
    assert_matmul_close(y_numba, a.toarray(), x, 1e-5)
    for panel in (1, 7, 10**6):  # any panel gives the same product
        np.testing.assert_allclose(vector_block_spmm(a, x, panel=panel), y_numba, rtol=1e-4, atol=1e-4)


def test_default_panel_fills_the_cache_budget_or_the_entry_minimum():
    w = np.ones((512, 4608), dtype=np.float32)
    mask = np.zeros(w.shape, dtype=bool)
    mask[:, ::4] = True  # every block kept, k = 1 of V = 4: 2 entries per row of a 4 x 8 block
    a = VectorBlockMatrix.from_dense(w, mask, block_shape=(4, 8), vector_size=4)
    assert default_panel(a, 512, 1024, 4) == 512 * 1024 // (8 * 512 * 4)  # 32 block columns of X in 512 KiB
    sparse = VectorBlockMatrix.from_dense(w, mask & (np.arange(4608) < 8), block_shape=(4, 8), vector_size=4)
    assert default_panel(sparse, 512, 1024, 4) == int(np.ceil(16 / (sparse.block_density * 2 * 1)))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"engine": "cuda"}, ValueError, "engine"),
        ({"tile": 0}, ValueError, "tile"),
        ({"panel": 0}, ValueError, "panel"),
        ({"panel": 1.5}, ValueError, "panel"),
        ({"panel": 2**63}, ValueError, r"panel must be a positive integer \(at most 2\*\*63 - 1\)"),
        ({"x": np.ones((4, 2))}, ValueError, "rows"),
        ({"x": np.ones((8, 2), dtype=complex)}, TypeError, "x"),
    ],
)
def test_bad_kernel_arguments_name_themselves(kwargs, exc, match):
    a = VectorBlockMatrix.from_dense(np.ones((3, 8)), block_shape=(2, 4), vector_size=2)
    args = {"x": np.ones((8, 2)), **kwargs}
    x = args.pop("x")
    with pytest.raises(exc, match=match):
        vector_block_spmm(a, x, **args)
    with pytest.raises(TypeError, match="VectorBlockMatrix"):
        vector_block_spmm(np.ones((3, 8)), np.ones((8, 2)))


def test_the_cost_model_by_hand():
    # 2 x 8, 2 x 4 blocks, V = 2, k = 1: block 0 stores 1 (col 0), 2 (col 3) / 3 (col 1), a padding 0 (col 2)
    w = np.array([[1.0, 0, 0, 2, 0, 0, 0, 0], [0, 3, 0, 0, 0, 0, 0, 0]], dtype=np.float32)
    a = VectorBlockMatrix.from_dense(w, block_shape=(2, 4), vector_size=2)
    assert a.n_blocks == 1 and a.nnz == 4
    c = spmm_cost(a, 10)
    assert c["macs"] == 4 * 10  # 4 slots, the padding zero included
    assert c["value_bytes"] == 4 * 4
    assert c["index_bytes"] == 4 * 1 + 4 * (1 + 2)  # uint8 offsets + int32 indices (1) and indptr (2)
    assert c["x_bytes"] == 4 * 10 * 4 and c["y_bytes"] == 4 * 10 * 2  # columns 0-3 of X; 2 rows of Y
    with pytest.raises(ValueError, match="format"):
        spmm_cost(a, 10, format="dense")


# --- the inference engine: compile picks the format where the masks have the structure ---------------------


def _vb_mask(w, v=4, block_shape=(4, 4), total=0.9):
    return mask_vector_block(w, v, block_shape, total_sparsity=total)


@pytest.mark.parametrize("engine", ENGINES)
def test_compile_auto_picks_vector_block_for_such_layers_and_is_exact(engine):
    from refimpl.sparse import compile as sparse_compile

    net, masks = _lenet(_vb_mask)
    fast = sparse_compile(net, "auto", masks=masks, engine=engine)
    assert fast.formats["conv2"] == fast.formats["fc1"] == "vector_block"
    assert fast.formats["conv1"] != "vector_block"  # dense: k = V
    for name in ("conv2", "fc1"):
        layout = fast.plans[name].vector_block
        assert (layout.block_shape, layout.vector_size) == ((4, 4), 4)
        assert fast.plans[name].layer.op.a.block_shape == (4, 4)
    x = np.random.default_rng(1).standard_normal((3, *net.input_shape))
    np.testing.assert_allclose(fast(x), _masked_outputs(net, masks, x), rtol=1e-10, atol=1e-12)
    for row in fast.report(batch=2):
        assert row["costs"][row["format"]]["macs"] == row["macs"]
        if row["format"] == "vector_block":
            assert row["macs"] == row["nnz"] * row["n_cols"]  # no padding slots
            assert "vector_block" in row["reason"]


@pytest.mark.parametrize(
    "mask_of",
    [
        lambda w: np.random.default_rng(2).random(w.shape) >= 0.9,  # unstructured
        lambda w: mask_balanced(w, 10, keep=1),  # balanced: every block kept
        lambda w: mask_blocks(w, (4, 4), sparsity=0.8),  # block: dense inside the blocks
    ],
    ids=["unstructured", "balanced", "block"],
)
def test_compile_auto_never_picks_vector_block_without_the_structure(mask_of):
    from refimpl.sparse import compile as sparse_compile

    net, masks = _lenet(mask_of)
    fast = sparse_compile(net, "auto", masks=masks)
    assert "vector_block" not in fast.formats.values()
    assert all("vector_block" not in r["reason"] for r in fast.report())


def test_compile_vector_block_on_request_with_a_given_tile():
    from refimpl.sparse import compile as sparse_compile

    net, masks = _lenet(lambda w: _vb_mask(w, 2, (2, 8), 0.75))
    fast = sparse_compile(net, "vector_block", masks=masks, block_shape=(2, 8))
    assert set(fast.formats.values()) == {"vector_block"}
    assert all(plan.layer.op.a.block_shape == (2, 8) for plan in fast.plans.values())
    assert fast.plans["conv2"].layer.op.a.vector_size == fast.plans["fc1"].layer.op.a.vector_size == 2
    x = np.random.default_rng(3).standard_normal((2, *net.input_shape))
    np.testing.assert_allclose(fast(x), _masked_outputs(net, masks, x), rtol=1e-10, atol=1e-12)
    measured = sparse_compile(net, "auto", masks=masks, block_shape=(2, 8), auto="measure", measure_batch=2)
    assert "vector_block " in measured.report()[1]["reason"]  # conv2 is a candidate
    with pytest.raises(ValueError, match="vector_size"):
        sparse_compile(net, "vector_block", block_shape=(2, 8), vector_size=3)
