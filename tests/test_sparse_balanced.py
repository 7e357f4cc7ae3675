"""The balanced (vector-wise) sparse format: construction, the full validator, and its SpMM against dense.

Every engine (numba, its NumPy twin, scipy via CSR) is compared with a float64 dense product; CI also runs
this file with ``NUMBA_DISABLE_JIT=1``. A fuzz of malformed arrays checks that construction raises
``ValueError``/``TypeError`` or yields a matrix whose product is the one an independent reading defines.
"""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.projections import mask_balanced, mask_nm
from refimpl.sparse import check_format, spmm
from refimpl.sparse.balanced import BalancedMatrix, balanced_counts, check_balanced, offset_dtype
from refimpl.sparse.kernels import ENGINES, balanced_spmm

TOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_matmul_close(y, w, x, rtol):
    """``y ≈ w @ x``, the reference in float64, the tolerance relative to ``|w| @ |x|``."""
    ref = w.astype(np.float64) @ x.astype(np.float64)
    scale = np.abs(w).astype(np.float64) @ np.abs(x).astype(np.float64)
    assert y.shape == ref.shape
    assert np.all(np.abs(y - ref) <= rtol * (scale + 1e-30)), np.max(np.abs(y - ref) - rtol * scale)


@pytest.fixture(scope="module", autouse=True)
def _compile_first():
    """Compile the kernel for both dtypes and both offset dtypes before any Hypothesis example."""
    for dtype in (np.float32, np.float64):
        for v in (3, 300):
            a = BalancedMatrix.from_dense(np.ones((2, 7), dtype), vector_size=v)
            balanced_spmm(a, np.ones((7, 2), dtype))


# --- construction --------------------------------------------------------------------------------------

def test_the_worked_example():
    w = np.array([[0., 2., 3., 0., 5.], [1., 0., 0., 4., 0.]])
    a = BalancedMatrix.from_dense(w, vector_size=2)
    assert a.k == 1 and a.n_vectors == 3 and a.data.shape == a.offsets.shape == (2, 3, 1)
    assert a.offsets[:, :, 0].tolist() == [[1, 0, 0], [0, 1, 0]]
    assert a.data[:, :, 0].tolist() == [[2., 3., 5.], [1., 4., 0.]]   # row 1's empty edge vector: a 0
    assert np.array_equal(a.toarray(), w)
    assert a.nnz == 6 and check_format(a).explicit_zeros == 1


@st.composite
def matrices(draw):
    m, k = draw(st.integers(0, 9)), draw(st.integers(0, 23))
    v = draw(st.integers(1, 12))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.standard_normal((m, k)).astype(dtype)
    kind = draw(st.sampled_from(["balanced", "random", "dense", "empty"]))
    if kind == "balanced" and m and k >= v:
        mask = mask_balanced(w, v, keep=draw(st.integers(0, v)))
    elif kind == "random":
        mask = rng.random((m, k)) < draw(st.sampled_from([0.1, 0.5, 0.9]))
    elif kind == "empty":
        mask = np.zeros((m, k), dtype=bool)
    else:
        mask = np.ones((m, k), dtype=bool)
    if draw(st.booleans()) and w.size:
        w[rng.random(w.shape) < 0.2] = 0                                  # kept zeros
    return w, mask, v


@settings(max_examples=150, deadline=None)
@given(case=matrices(), extra=st.integers(0, 3))
def test_from_dense_stores_exactly_the_kept_entries(case, extra):
    w, mask, v = case
    keep = mask & (w != 0)
    counts = balanced_counts(keep, v)
    largest = int(counts.max()) if counts.size else 0
    a = BalancedMatrix.from_dense(w, mask, vector_size=v)
    assert a.k == largest and a.dtype == w.dtype and a.offsets.dtype == offset_dtype(v)
    assert np.array_equal(a.toarray(), np.where(keep, w, 0))
    assert np.array_equal(a.to_scipy().toarray(), a.toarray())
    full, edge = w.shape[1] // v, w.shape[1] % v
    assert a.nnz == w.shape[0] * full * a.k + int(np.count_nonzero(a.offsets[:, full:, :] < edge))
    # more slots than needed: padded with zeros, same matrix
    k = min(v, largest + extra)
    b = BalancedMatrix.from_dense(w, mask, vector_size=v, k=k)
    assert b.k == k and np.array_equal(b.toarray(), a.toarray())
    # without drop_zeros the mask itself is the pattern (kept zeros stored as values)
    c = BalancedMatrix.from_dense(w, mask, vector_size=v, drop_zeros=False)
    assert c.k == (int(balanced_counts(mask, v).max()) if mask.size else 0)


def test_a_balanced_or_n_m_mask_needs_no_padding():
    w = np.random.default_rng(0).standard_normal((16, 64)).astype(np.float32)
    cases = ((mask_balanced(w, 8, keep=2), 8, 2), (mask_nm(w, 2, 4), 4, 2),
             (mask_balanced(w, 16, keep=1), 16, 1))
    for mask, v, k in cases:
        a = BalancedMatrix.from_dense(w, mask, vector_size=v)
        assert a.k == k and a.nnz == mask.sum() and check_format(a).explicit_zeros == 0


def test_offsets_take_the_smallest_dtype():
    assert offset_dtype(1) == np.uint8 and offset_dtype(256) == np.uint8
    assert offset_dtype(257) == np.uint16 and offset_dtype(65537) == np.int32
    a = BalancedMatrix.from_dense(np.ones((2, 300)), vector_size=300)
    assert a.offsets.dtype == np.uint16 and a.k == 300


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"vector_size": 0}, ValueError, "vector_size"),
    ({"vector_size": 2.0}, ValueError, "vector_size"),
    ({"vector_size": True}, ValueError, "vector_size"),
    ({"vector_size": 2, "k": 1}, ValueError, r"k must be an integer in \[2, 2\]"),
    ({"vector_size": 2, "k": 3}, ValueError, "k must"),
    ({"vector_size": 2, "mask": np.ones((2, 3))}, TypeError, "mask"),
    ({"vector_size": 2, "mask": np.ones((3, 2), dtype=bool)}, ValueError, "mask"),
])
def test_bad_from_dense_arguments_name_themselves(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        BalancedMatrix.from_dense(np.ones((2, 3)), **kwargs)
    with pytest.raises(ValueError, match="w"):
        BalancedMatrix.from_dense(np.array([[np.nan, 1.0]]), vector_size=2)


def test_the_matrix_owns_frozen_copies():
    w = np.arange(1.0, 13.0).reshape(3, 4)
    a = BalancedMatrix.from_dense(w, vector_size=2)
    data, offsets = np.array(a.data), np.array(a.offsets)
    b = BalancedMatrix(a.shape, data, offsets, 2)
    data[0, 0, 0] = np.nan
    offsets[0, 0, 0] = 99                        # the caller's arrays change: the matrix does not
    assert np.array_equal(b.toarray(), w)
    for arr in (b.data, b.offsets):
        with pytest.raises(ValueError):
            arr[...] = 0
        with pytest.raises(ValueError):
            arr.flags.writeable = True
    for clone in (copy.copy(b), copy.deepcopy(b), pickle.loads(pickle.dumps(b))):
        assert np.array_equal(clone.toarray(), w) and clone.vector_size == 2


# --- the validator: a malformed matrix is a ValueError ---------------------------------------------------

def _valid():
    w = np.arange(1.0, 15.0).reshape(2, 7)                       # V = 3: vectors of 3, 3 and an edge of 1
    a = BalancedMatrix.from_dense(w, mask_balanced(w, 3, keep=2), vector_size=3)
    return {"shape": a.shape, "data": np.array(a.data), "offsets": np.array(a.offsets), "vector_size": 3}


def _set(arrays, name, index, value):
    arrays[name] = arrays[name].copy()
    arrays[name][index] = value
    return arrays


MALFORMED = {
    "data 2-D": lambda a: {**a, "data": a["data"][:, :, 0]},
    "data rows": lambda a: {**a, "data": a["data"][:1], "offsets": a["offsets"][:1]},
    "data vectors": lambda a: {**a, "data": a["data"][:, :2], "offsets": a["offsets"][:, :2]},
    "offsets shape": lambda a: {**a, "offsets": a["offsets"][:, :, :1]},
    "data int": lambda a: {**a, "data": a["data"].astype(np.int64)},
    "data complex": lambda a: {**a, "data": a["data"].astype(complex)},
    "data object": lambda a: {**a, "data": a["data"].astype(object)},
    "offsets float": lambda a: {**a, "offsets": a["offsets"].astype(float)},
    "offsets uint64": lambda a: {**a, "offsets": a["offsets"].astype(np.uint64)},
    "offsets bool": lambda a: {**a, "offsets": a["offsets"].astype(bool)},
    "k > V": lambda a: {**a, "data": np.zeros((2, 3, 4)), "offsets": np.tile(np.arange(4, dtype=np.uint8),
                                                                            (2, 3, 1))},
    "offset = V": lambda a: _set(a, "offsets", (0, 0, 1), 3),
    "offset 255": lambda a: _set(a, "offsets", (1, 1, 1), 255),
    "offset negative": lambda a: _set({**a, "offsets": a["offsets"].astype(np.int32)}, "offsets", (0, 1, 0),
                                      -1),
    "offset huge": lambda a: _set({**a, "offsets": a["offsets"].astype(np.int64)}, "offsets", (0, 1, 1),
                                  10**12),
    "duplicate": lambda a: _set(a, "offsets", (0, 0, 1), a["offsets"][0, 0, 0]),
    "unsorted": lambda a: _set(a, "offsets", (0, 0), a["offsets"][0, 0, ::-1]),
    "NaN": lambda a: _set(a, "data", (1, 0, 0), np.nan),
    "inf": lambda a: _set(a, "data", (1, 0, 0), -np.inf),
    "padding": lambda a: _set(_set(a, "offsets", (0, 2), [0, 2]), "data", (0, 2), [1.0, 5.0]),
    "shape": lambda a: {**a, "shape": (2, 10)},
    "shape negative": lambda a: {**a, "shape": (-2, 7)},
    "shape triple": lambda a: {**a, "shape": (2, 7, 1)},
    "vector_size 0": lambda a: {**a, "vector_size": 0},
    "vector_size str": lambda a: {**a, "vector_size": "3"},
    "vector_size 4": lambda a: {**a, "vector_size": 4},
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_every_malformed_matrix_is_refused_at_construction(name):
    arrays = MALFORMED[name](_valid())
    with pytest.raises(ValueError):
        BalancedMatrix(arrays["shape"], arrays["data"], arrays["offsets"], arrays["vector_size"])


def test_the_validator_names_the_broken_field():
    a = _valid()
    cases = {"offset = V": "offsets must lie in", "duplicate": "duplicate offset",
             "unsorted": "unsorted offset", "padding": "padding slots", "NaN": "NaN",
             "k > V": "more than vector_size", "offsets float": "offsets must be one of",
             "data int": "data must be float32"}
    for name, match in cases.items():
        arrays = MALFORMED[name](dict(a))
        with pytest.raises(ValueError, match=match):
            BalancedMatrix(arrays["shape"], arrays["data"], arrays["offsets"], arrays["vector_size"])
    with pytest.raises(TypeError, match="BalancedMatrix"):
        check_balanced("not a matrix")


def test_big_endian_and_lists_are_taken_in_native_order():
    a = _valid()
    b = BalancedMatrix(a["shape"], a["data"].astype(">f8").tolist(), a["offsets"].astype(">i4"), 3)
    assert b.data.dtype.isnative and b.offsets.dtype == np.int32
    assert np.array_equal(b.toarray(), BalancedMatrix(**a).toarray())
    report = check_format(b, full_check=False)
    assert report.format == "balanced" and report.explicit_zeros is None


def _independent_product(shape, data, offsets, v, x):
    """The product a balanced matrix's arrays define, read slot by slot (and re-checked)."""
    m, n_cols = shape
    dense = np.zeros(shape)
    for i in range(m):
        for j in range(data.shape[1]):
            previous = -1
            for s in range(data.shape[2]):
                off = int(offsets[i, j, s])
                assert previous < off < v
                previous = off
                col = j * v + off
                if col < n_cols:
                    dense[i, col] = data[i, j, s]
                else:
                    assert data[i, j, s] == 0
    return dense @ x.astype(np.float64)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(MALFORMED) + ["none"] * 6), seed=st.integers(0, 2**32 - 1),
       n=st.integers(0, 4), engine=st.sampled_from(ENGINES), tile=st.integers(1, 5), panel=st.integers(1, 3))
def test_fuzz_refused_or_the_right_product(name, seed, n, engine, tile, panel):
    rng = np.random.default_rng(seed)
    arrays = _valid()
    arrays["data"] = rng.standard_normal(arrays["data"].shape) * (arrays["data"] != 0)
    if name != "none":
        arrays = MALFORMED[name](arrays)
    try:
        a = BalancedMatrix(arrays["shape"], arrays["data"], arrays["offsets"], arrays["vector_size"])
    except (ValueError, TypeError):
        return
    x = rng.standard_normal((a.shape[1], n))
    y = balanced_spmm(a, x, engine=engine, tile=tile, panel=panel)
    want = _independent_product(a.shape, np.asarray(a.data), np.asarray(a.offsets), a.vector_size, x)
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


# --- the kernel against dense ----------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(case=matrices(), n=st.integers(0, 9), engine=st.sampled_from(ENGINES),
       tile=st.sampled_from([1, 3, 512]), panel=st.sampled_from([None, 1, 2, 5]))
def test_every_engine_equals_the_dense_product(case, n, engine, tile, panel):
    w, mask, v = case
    a = BalancedMatrix.from_dense(w, mask, vector_size=v)
    x = np.random.default_rng(n).standard_normal((w.shape[1], n)).astype(w.dtype)
    y = balanced_spmm(a, x, engine=engine, tile=tile, panel=panel)
    assert y.dtype == w.dtype
    assert_matmul_close(y, np.where(mask, w, 0), x, TOL[w.dtype.type])


@pytest.mark.parametrize("engine", ENGINES)
def test_vectors_dtypes_and_the_dispatch(engine):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((12, 50)).astype(np.float32)
    a = BalancedMatrix.from_dense(w, mask_balanced(w, 10, keep=3), vector_size=10)
    dense = a.toarray()
    x1 = rng.standard_normal(50)                                     # float64 x: a float64 result
    y1 = balanced_spmm(a, x1, engine=engine)
    assert y1.shape == (12,) and y1.dtype == np.float64
    assert_matmul_close(y1[:, None], dense, x1[:, None], 1e-12)
    x2 = np.asfortranarray(rng.standard_normal((50, 7)).astype(np.float32))
    assert np.array_equal(spmm(a, x2, engine=engine), balanced_spmm(a, x2, engine=engine))
    assert_matmul_close(balanced_spmm(a, x2, engine=engine), dense, x2, 1e-5)


def test_the_numba_kernel_and_its_numpy_twin_agree_on_a_large_layer():
    rng = np.random.default_rng(4)
    w = rng.standard_normal((64, 1150)).astype(np.float32)          # K % V = 10: an edge vector
    a = BalancedMatrix.from_dense(w, mask_balanced(w, 20, keep=2), vector_size=20)
    x = rng.standard_normal((1150, 300)).astype(np.float32)
    y_numba, y_numpy = balanced_spmm(a, x), balanced_spmm(a, x, engine="numpy")
    np.testing.assert_allclose(y_numba, y_numpy, rtol=1e-4, atol=1e-4)
    assert_matmul_close(y_numba, a.toarray(), x, 1e-5)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"engine": "cuda"}, ValueError, "engine"), ({"tile": 0}, ValueError, "tile"),
    ({"panel": 0}, ValueError, "panel"), ({"panel": 1.5}, ValueError, "panel"),
    ({"panel": 2**63}, ValueError, r"panel must be a positive integer \(at most 2\*\*63 - 1\)"),
    ({"x": np.ones((4, 2))}, ValueError, "rows"), ({"x": np.ones((5, 2), dtype=complex)}, TypeError, "x"),
])
def test_bad_kernel_arguments_name_themselves(kwargs, exc, match):
    a = BalancedMatrix.from_dense(np.ones((3, 5)), vector_size=2)
    args = {"x": np.ones((5, 2)), **kwargs}
    x = args.pop("x")
    with pytest.raises(exc, match=match):
        balanced_spmm(a, x, **args)
    with pytest.raises(TypeError, match="BalancedMatrix"):
        balanced_spmm(np.ones((3, 5)), np.ones((5, 2)))


def test_the_cost_model_by_hand():
    from refimpl.sparse import spmm_cost

    # V = 2, k = 1: row 0 stores 1 (col 0) and 2 (col 2); row 1 stores a padding 0 (col 0) and 3 (col 2)
    w = np.array([[1., 0., 2., 0.], [0., 0., 3., 0.]], dtype=np.float32)
    a = BalancedMatrix.from_dense(w, vector_size=2)
    c = spmm_cost(a, 10)
    assert c["macs"] == 4 * 10                      # 4 slots, the padding zero included
    assert c["value_bytes"] == 4 * 4 and c["index_bytes"] == 4 * 1     # uint8 offsets, no row pointers
    assert c["x_bytes"] == 4 * 10 * 2 and c["y_bytes"] == 4 * 10 * 2   # columns 0 and 2 of X; 2 rows of Y
    assert c["bytes"] == 16 + 4 + 80 + 80
    with pytest.raises(ValueError, match="format"):
        spmm_cost(a, 10, format="dense")


# --- the inference engine: compile picks the format where the masks have the structure ---------------------

def _balanced_lenet(mask_of):
    """LeNet-5 (8x8, float64) with conv2 / fc1 masked by ``mask_of(weight)``; conv1 dense."""
    from refimpl.models import lenet5

    net = lenet5(input_size=8, rng=np.random.default_rng(0), dtype=np.float64)
    params = net.parameters()
    masks = {name: mask_of(params[name]) for name in ("conv2.weight", "fc1.weight")}
    return net, masks


def _masked_outputs(net, masks, x):
    from refimpl.prune.masking import apply_masks

    reference = copy.deepcopy(net)
    apply_masks(reference, masks)
    return reference.eval().forward(x)


def test_best_vector_size_finds_the_pruning_s_v():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((20, 80))
    from refimpl.sparse.balanced import best_vector_size

    for mask, v in ((mask_balanced(w, 10, keep=1), 10), (mask_nm(w, 1, 4), 4), (mask_nm(w, 2, 8), 8)):
        best, slots = best_vector_size(mask)
        assert best == v and slots == mask.sum()
    unstructured = rng.random((20, 80)) < 0.1
    _, slots = best_vector_size(unstructured)
    assert slots > 1.5 * unstructured.sum()            # every vector pays for the fullest one


@pytest.mark.parametrize("engine", ENGINES)
def test_compile_auto_picks_balanced_for_balanced_layers_and_is_exact(engine):
    from refimpl.sparse import compile as sparse_compile

    net, masks = _balanced_lenet(lambda w: mask_balanced(w, 10, keep=1))    # 90 % in vectors of 10
    fast = sparse_compile(net, "auto", masks=masks, engine=engine)
    assert fast.formats["conv2"] == fast.formats["fc1"] == "balanced"
    assert fast.formats["conv1"] != "balanced"                            # dense: k = V, not balanced
    assert fast.plans["conv2"].vector_size == fast.plans["fc1"].vector_size == 10
    assert fast.plans["conv2"].layer.op.a.k == 1
    x = np.random.default_rng(1).standard_normal((3, *net.input_shape))
    np.testing.assert_allclose(fast(x), _masked_outputs(net, masks, x), rtol=1e-10, atol=1e-12)
    for row in fast.report(batch=2):
        assert row["costs"][row["format"]]["macs"] == row["macs"]
        if row["format"] == "balanced":
            assert row["macs"] == row["nnz"] * row["n_cols"]              # no padding slots
            assert "balanced" in row["reason"]


def test_compile_auto_never_picks_balanced_without_the_structure():
    from refimpl.sparse import compile as sparse_compile

    rng = np.random.default_rng(2)
    net, masks = _balanced_lenet(lambda w: rng.random(w.shape) >= 0.9)   # unstructured 90 %
    fast = sparse_compile(net, "auto", masks=masks)
    assert "balanced" not in fast.formats.values()
    assert all("balanced" not in r["reason"] for r in fast.report())


def test_compile_balanced_on_request_with_a_given_vector_size():
    from refimpl.sparse import compile as sparse_compile

    net, masks = _balanced_lenet(lambda w: mask_nm(w.reshape(w.shape[0], -1), 2, 4).reshape(w.shape))
    fast = sparse_compile(net, "balanced", masks=masks, vector_size=4)
    assert set(fast.formats.values()) == {"balanced"} and fast.vector_size == 4
    assert all(plan.layer.op.a.vector_size == 4 for plan in fast.plans.values())
    x = np.random.default_rng(3).standard_normal((2, *net.input_shape))
    np.testing.assert_allclose(fast(x), _masked_outputs(net, masks, x), rtol=1e-10, atol=1e-12)
    measured = sparse_compile(net, "auto", masks=masks, auto="measure", measure_batch=2)
    assert "balanced " in measured.report()[1]["reason"]                 # conv2 2:4 is a candidate
    with pytest.raises(ValueError, match="vector_size"):
        sparse_compile(net, "balanced", vector_size=0)
