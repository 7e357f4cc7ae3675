"""Tests for im2col/col2im (refimpl.nn._kernels) and the convolution layer (refimpl.nn.conv)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.nn._kernels import col2im, im2col
from refimpl.nn.conv import (
    Conv2d,
    conv2d_backward,
    conv2d_backward_gemm,
    conv2d_backward_naive,
    conv2d_forward,
    conv2d_forward_gemm,
    conv2d_forward_naive,
)
from refimpl.testing.gradcheck import check_gradient

# (N, C, H, W, F, KH, KW, stride, padding, bias): 1x1, 3x3, 5x5, non-square input and kernel, stride 1 and 2,
# padding 0/1/2, with and without bias
CONV_CASES = [
    (2, 3, 5, 5, 4, 3, 3, 1, 0, True),
    (2, 2, 6, 5, 3, 3, 3, 2, 1, True),
    (1, 2, 5, 7, 2, 5, 5, 1, 2, True),
    (2, 3, 4, 4, 2, 1, 1, 1, 0, False),
    (2, 2, 7, 6, 3, 3, 2, 2, 2, True),
    (1, 1, 9, 8, 2, 5, 5, 2, 1, False),
]
CASE_IDS = ["3x3", "3x3-s2-p1", "5x5-p2-nonsquare", "1x1-nobias", "3x2-s2-p2", "5x5-s2-p1-nobias"]


def _random_conv(rng, n, c, h, w, f, kh, kw, bias):
    x = rng.standard_normal((n, c, h, w))
    weight = rng.standard_normal((f, c, kh, kw))
    b = rng.standard_normal(f) if bias else None
    return x, weight, b


@st.composite
def conv_geometry(draw):
    """Small random convolution shapes with stride and padding, always leaving at least one output."""
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * padding), 8))
    w = draw(st.integers(max(1, kw - 2 * padding), 8))
    return dict(n=draw(st.integers(1, 3)), c=draw(st.integers(1, 3)), h=h, w=w, f=draw(st.integers(1, 3)),
                kh=kh, kw=kw, stride=draw(st.integers(1, 3)), padding=padding, bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**32 - 1)))


# --- im2col / col2im ----------------------------------------------------------------------------------

def test_im2col_worked_example(engine):
    # a 3x3 image, 2x2 windows: each column is one window read row-major, each row one kernel position
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    expected = np.array([[0, 1, 3, 4], [1, 2, 4, 5], [3, 4, 6, 7], [4, 5, 7, 8]], dtype=float)
    np.testing.assert_array_equal(im2col(x, 2, 2, engine=engine), expected)


def test_im2col_padding_and_stride_layout(engine):
    # rows are (c, i, j) row-major, columns (n, oh, ow); padding reads zeros
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 5, 4))
    kh, kw, s, p = 3, 2, 2, 1
    cols = im2col(x, kh, kw, s, p, engine=engine)
    oh, ow = (5 + 2 - 3) // 2 + 1, (4 + 2 - 2) // 2 + 1
    assert cols.shape == (3 * kh * kw, 2 * oh * ow)
    x_pad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    for c in range(3):
        for i in range(kh):
            for j in range(kw):
                for n in range(2):
                    for a in range(oh):
                        for b in range(ow):
                            row, col = (c * kh + i) * kw + j, (n * oh + a) * ow + b
                            assert cols[row, col] == x_pad[n, c, s * a + i, s * b + j]


@given(conv_geometry())
def test_im2col_engines_agree_and_col2im_is_adjoint(geometry):
    g = geometry
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["c"], g["h"], g["w"]))
    args = (g["kh"], g["kw"], g["stride"], g["padding"])
    cols = im2col(x, *args, engine="numpy")
    np.testing.assert_array_equal(im2col(x, *args, engine="numba"), cols)
    a = rng.standard_normal(cols.shape)
    back = col2im(a, x.shape, *args, engine="numpy")
    np.testing.assert_array_equal(col2im(a, x.shape, *args, engine="numba"), back)
    # <col2im(a), x> == <a, im2col(x)>: col2im is the transpose of the linear map im2col
    np.testing.assert_allclose(np.sum(back * x), np.sum(a * cols), rtol=1e-12, atol=1e-12)


@given(conv_geometry(), st.data())
def test_im2col_rows_subset(geometry, data):
    g = geometry
    rng = np.random.default_rng(g["seed"])
    x = rng.standard_normal((g["n"], g["c"], g["h"], g["w"]))
    args = (g["kh"], g["kw"], g["stride"], g["padding"])
    n_rows = g["c"] * g["kh"] * g["kw"]
    rows = np.array(data.draw(st.lists(st.integers(0, n_rows - 1), max_size=2 * n_rows)), dtype=np.int64)
    full = im2col(x, *args, engine="numpy")
    for engine in ("numba", "numpy"):
        sub = im2col(x, *args, rows=rows, engine=engine)
        np.testing.assert_array_equal(sub, full[rows])
        # the subset col2im is the adjoint of the subset im2col too (repeated rows add up)
        a = rng.standard_normal(sub.shape)
        back = col2im(a, x.shape, *args, rows=rows, engine=engine)
        np.testing.assert_allclose(np.sum(back * x), np.sum(a * sub), rtol=1e-12, atol=1e-12)


@given(conv_geometry(), st.data())
def test_col2im_transposed_equals_col2im_of_the_transpose(geometry, data):
    # the "rows last" layout the convolution backward uses: same additions in the same order, so the
    # result must be bit-identical, in both engines, with and without a subset of rows (repeats allowed)
    g = geometry
    rng = np.random.default_rng(g["seed"])
    x_shape = (g["n"], g["c"], g["h"], g["w"])
    args = (g["kh"], g["kw"], g["stride"], g["padding"])
    n_rows = g["c"] * g["kh"] * g["kw"]
    rows = data.draw(st.none() | st.lists(st.integers(0, n_rows - 1), max_size=2 * n_rows))
    rows = None if rows is None else np.array(rows, dtype=np.int64)
    n_windows = im2col(np.zeros(x_shape), *args, engine="numpy").shape[1]
    a = rng.standard_normal((n_rows if rows is None else rows.size, n_windows))
    expected = col2im(a, x_shape, *args, rows=rows, engine="numpy")
    for engine in ("numba", "numpy"):
        got = col2im(np.ascontiguousarray(a.T), x_shape, *args, rows=rows, transposed=True, engine=engine)
        np.testing.assert_array_equal(got, expected)


def test_col2im_transposed_rejects_the_untransposed_shape():
    with pytest.raises(ValueError, match=r"cols must have shape \(4, 9\).*transposed"):
        col2im(np.ones((9, 4)), (1, 1, 4, 4), 3, 3, transposed=True)


def test_im2col_float32_stays_float32(engine):
    x = np.ones((1, 2, 4, 4), dtype=np.float32)
    assert im2col(x, 3, 3, engine=engine).dtype == np.float32
    assert col2im(np.ones((18, 4), np.float32), x.shape, 3, 3, engine=engine).dtype == np.float32


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(rows=[0, 18]), ValueError, "rows"),
    (dict(rows=[-1]), ValueError, "rows"),
    (dict(rows=[0.5]), TypeError, "rows"),
    (dict(rows=[[0]]), ValueError, "rows"),
    (dict(stride=0), ValueError, "stride"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(engine="cuda"), ValueError, "engine"),
])
def test_im2col_bad_arguments(kwargs, exc, match):
    x = np.ones((1, 2, 4, 4))
    call = dict(stride=1, padding=0) | kwargs
    with pytest.raises(exc, match=match):
        im2col(x, 3, 3, **call)


def test_im2col_and_col2im_reject_bad_shapes():
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        im2col(np.ones((2, 4, 4)), 3, 3)
    with pytest.raises(ValueError, match="kernel height"):
        im2col(np.ones((1, 1, 2, 5)), 3, 3)
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        im2col(np.ones((1, 1, 4, 4), dtype=int), 3, 3)
    with pytest.raises(ValueError, match="cols must have shape"):
        col2im(np.ones((9, 5)), (1, 1, 4, 4), 3, 3)
    with pytest.raises(ValueError, match="x_shape"):
        col2im(np.ones((9, 4)), (1, 4, 4), 3, 3)


# --- conv2d: gradients ---------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CONV_CASES, ids=CASE_IDS)
def test_conv2d_gradients(case, engine, rng):
    n, c, h, w, f, kh, kw, stride, padding, bias = case
    x, weight, b = _random_conv(rng, n, c, h, w, f, kh, kw, bias)
    out, cache = conv2d_forward(x, weight, b, stride, padding, engine=engine)
    g = rng.standard_normal(out.shape)  # a random upstream gradient tests every output's contribution
    dx, dw, db = conv2d_backward(g, cache)

    def loss():
        return float(np.sum(conv2d_forward(x, weight, b, stride, padding, engine=engine)[0] * g))

    check_gradient(loss, x, dx, name="x")
    check_gradient(loss, weight, dw, name="w")
    if bias:
        check_gradient(loss, b, db, name="b")
    else:
        assert db is None


@pytest.mark.parametrize("case", CONV_CASES[:3], ids=CASE_IDS[:3])
def test_conv2d_backward_naive_gradients(case, rng):
    # the loop twin of the backward pass is checked against finite differences of the loop twin forward
    n, c, h, w, f, kh, kw, stride, padding, bias = case
    x, weight, b = _random_conv(rng, n, c, h, w, f, kh, kw, bias)
    g = rng.standard_normal(conv2d_forward_naive(x, weight, b, stride, padding).shape)
    dx, dw, db = conv2d_backward_naive(g, x, weight, b, stride, padding)

    def loss():
        return float(np.sum(conv2d_forward_naive(x, weight, b, stride, padding) * g))

    check_gradient(loss, x, dx, name="x")
    check_gradient(loss, weight, dw, name="w")
    check_gradient(loss, b, db, name="b")


# --- conv2d: fast == naive ------------------------------------------------------------------------------

@given(conv_geometry())
def test_conv2d_matches_naive(geometry):
    g = geometry
    rng = np.random.default_rng(g["seed"])
    x, weight, b = _random_conv(rng, g["n"], g["c"], g["h"], g["w"], g["f"], g["kh"], g["kw"], g["bias"])
    expected = conv2d_forward_naive(x, weight, b, g["stride"], g["padding"])
    dout = rng.standard_normal(expected.shape)
    naive_grads = conv2d_backward_naive(dout, x, weight, b, g["stride"], g["padding"])
    results = {}
    for engine in ("numba", "numpy"):
        out, cache = conv2d_forward(x, weight, b, g["stride"], g["padding"], engine=engine)
        np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
        grads = conv2d_backward(dout, cache)
        for got, want in zip(grads, naive_grads, strict=True):
            if want is None:
                assert got is None
            else:
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        results[engine] = (out, *grads)
    # the two engines perform the same operations in the same order: identical bits
    for a, b_ in zip(results["numba"], results["numpy"], strict=True):
        if a is not None:
            np.testing.assert_array_equal(a, b_)


def test_conv2d_naive_worked_examples():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    # a 2x2 box filter with stride 2 sums each 2x2 block
    out = conv2d_forward_naive(x, np.ones((1, 1, 2, 2)), None, stride=2)
    np.testing.assert_array_equal(out, [[[[10.0, 18.0], [42.0, 50.0]]]])
    # a 3x3 kernel with a single 1 at (i, j) shifts the (padded) image; the bias is added everywhere
    w = np.zeros((1, 1, 3, 3))
    w[0, 0, 0, 2] = 1.0
    out = conv2d_forward_naive(x, w, np.array([0.5]), stride=1, padding=1)
    shifted = np.zeros((4, 4))
    shifted[1:, :3] = x[0, 0, :3, 1:]
    np.testing.assert_array_equal(out[0, 0], shifted + 0.5)
    # a 1x1 convolution mixes channels: out[f] = sum_c w[f, c] * x[c]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((2, 3, 1, 1))
    np.testing.assert_allclose(conv2d_forward_naive(x, w, None), np.einsum("fc,nchw->nfhw", w[:, :, 0, 0], x))


def test_conv2d_float32_in_float32_out(engine, rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    out, cache = conv2d_forward(x, w, b, 1, 1, engine=engine)
    assert out.dtype == np.float32 and out.flags.c_contiguous
    dx, dw, db = conv2d_backward(np.ones_like(out), cache)
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    np.testing.assert_allclose(out,
                               conv2d_forward_naive(x.astype(float), w.astype(float), b.astype(float), 1, 1),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c, h, k", [(1, 9, 3), (4, 6, 3)], ids=["per-image (OH*OW >= R)", "one GEMM"])
def test_conv2d_both_groupings_of_the_gemms(c, h, k, engine, rng):
    # forward and dL/dW run image by image when OH*OW >= C*KH*KW (conv1-like: 49 >= 9) and as one product
    # over the batch otherwise (16 < 36); both must equal the definition
    from refimpl.nn.conv import _weight_gradient

    x, w, b = _random_conv(rng, 3, c, h, h, 5, k, k, True)
    out, cache = conv2d_forward(x, w, b, engine=engine)
    assert (out.shape[2] * out.shape[3] >= c * k * k) == (c == 1)
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out, conv2d_forward_naive(x, w, b), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(g, cache)
    ndx, ndw, ndb = conv2d_backward_naive(g, x, w, b)
    np.testing.assert_allclose(dw, ndw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_weight_gradient(g, cache[5]).reshape(w.shape), ndw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, ndx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, ndb, rtol=1e-12, atol=1e-12)


def test_conv2d_backward_without_input_grad(engine, rng):
    x, w, b = _random_conv(rng, 2, 2, 5, 5, 3, 3, 3, True)
    out, cache = conv2d_forward(x, w, b, engine=engine)
    g = rng.standard_normal(out.shape)
    full = conv2d_backward(g, cache)
    dx, dw, db = conv2d_backward(g, cache, input_grad=False)
    assert dx is None
    np.testing.assert_array_equal(dw, full[1])
    np.testing.assert_array_equal(db, full[2])


def test_conv2d_non_contiguous_input(engine, rng):
    x = rng.standard_normal((3, 5, 6, 2)).transpose(0, 3, 1, 2)  # (3, 2, 5, 6), not C-contiguous
    w = rng.standard_normal((2, 2, 3, 3))
    out, _ = conv2d_forward(x, w, None, engine=engine)
    np.testing.assert_allclose(out, conv2d_forward_naive(np.ascontiguousarray(x), w, None),
                               rtol=1e-12, atol=1e-12)


# --- conv2d: bad arguments ------------------------------------------------------------------------------

@pytest.mark.parametrize("x_shape, w_shape, b_shape, kwargs, exc, match", [
    ((2, 3, 5), (4, 3, 3, 3), None, {}, ValueError, "x must have 4 dimensions"),
    ((1, 3, 5, 5), (4, 3, 3), None, {}, ValueError, "w must have 4 dimensions"),
    ((1, 2, 5, 5), (4, 3, 3, 3), None, {}, ValueError, "channels"),
    ((1, 3, 5, 5), (4, 3, 3, 3), (3,), {}, ValueError, "b must have shape"),
    ((1, 3, 2, 5), (4, 3, 3, 3), None, {}, ValueError, "kernel height"),
    ((1, 3, 5, 2), (4, 3, 3, 3), None, {}, ValueError, "kernel width"),
    ((1, 3, 5, 5), (4, 3, 3, 3), None, dict(stride=0), ValueError, "stride"),
    ((1, 3, 5, 5), (4, 3, 3, 3), None, dict(stride=1.5), TypeError, "stride"),
    ((1, 3, 5, 5), (4, 3, 3, 3), None, dict(padding=-1), ValueError, "padding"),
    ((1, 3, 5, 5), (4, 3, 3, 3), None, dict(engine="gpu"), ValueError, "engine"),
])
def test_conv2d_bad_arguments(x_shape, w_shape, b_shape, kwargs, exc, match):
    x, w = np.ones(x_shape), np.ones(w_shape)
    b = None if b_shape is None else np.ones(b_shape)
    with pytest.raises(exc, match=match):
        conv2d_forward(x, w, b, **kwargs)
    if "engine" not in kwargs:
        with pytest.raises(exc, match=match):
            conv2d_forward_naive(x, w, b, **kwargs)


def test_conv2d_rejects_integer_input_and_bad_dout():
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        conv2d_forward(np.ones((1, 1, 3, 3), dtype=np.int64), np.ones((1, 1, 2, 2)), None)
    out, cache = conv2d_forward(np.ones((1, 1, 3, 3)), np.ones((2, 1, 2, 2)), None)
    with pytest.raises(ValueError, match="dout"):
        conv2d_backward(np.ones((1, 3, 2, 2)), cache)


# --- the Conv2d layer -----------------------------------------------------------------------------------

def test_conv2d_layer_parameters_and_init():
    layer = Conv2d(3, 8, 5, stride=2, padding=1, rng=np.random.default_rng(0))
    assert layer.params["weight"].shape == (8, 3, 5, 5) and layer.params["bias"].shape == (8,)
    assert layer.params["weight"].dtype == np.float32
    assert (layer.in_channels, layer.out_channels, layer.kernel_size) == (3, 8, (5, 5))
    assert (layer.stride, layer.padding, layer.engine) == (2, 1, "numba")
    bound = 1 / np.sqrt(3 * 5 * 5)  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert np.abs(layer.params["weight"]).max() <= bound
    assert np.abs(layer.params["weight"]).max() > 0.9 * bound  # 600 draws fill the interval
    assert Conv2d(2, 4, (3, 1), bias=False).params.keys() == {"weight"}
    assert Conv2d(2, 4, (3, 1)).kernel_size == (3, 1)
    assert "kernel_size=(5, 5)" in repr(layer)


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(kernel_size=(3, 3, 3)), TypeError, "kernel_size"),
    (dict(kernel_size=3, stride=0), ValueError, "stride"),
    (dict(kernel_size=3, padding=-2), ValueError, "padding"),
    (dict(kernel_size=3, rng=0), TypeError, "rng"),
])
def test_conv2d_layer_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Conv2d(2, 3, **kwargs)


def test_conv2d_layer_forward_backward(engine, rng):
    layer = Conv2d(2, 3, 3, stride=1, padding=1, rng=rng).astype(np.float64)
    layer.engine = engine
    x = rng.standard_normal((2, 2, 5, 4))
    out = layer(x)
    expected, cache = conv2d_forward(x, layer.params["weight"], layer.params["bias"], 1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-12)
    g = rng.standard_normal(out.shape)
    dx = layer.backward(g)
    want = conv2d_backward(g, cache)
    np.testing.assert_allclose(dx, want[0], rtol=1e-12)
    np.testing.assert_allclose(layer.grads["weight"], want[1], rtol=1e-12)
    np.testing.assert_allclose(layer.grads["bias"], want[2], rtol=1e-12)
    layer.input_grad = False
    layer(x)
    assert layer.backward(g) is None


# --- PyTorch cross-check --------------------------------------------------------------------------------

@pytest.mark.torch
@pytest.mark.parametrize("case", CONV_CASES, ids=CASE_IDS)
def test_conv2d_matches_torch(case, engine, rng, torch):
    n, c, h, w, f, kh, kw, stride, padding, bias = case
    x, weight, b = _random_conv(rng, n, c, h, w, f, kh, kw, bias)
    out, cache = conv2d_forward(x, weight, b, stride, padding, engine=engine)
    g = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(g, cache)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(weight, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if bias else None
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride=stride, padding=padding)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, tw.grad.numpy(), rtol=1e-10, atol=1e-10)
    if bias:
        np.testing.assert_allclose(db, tb.grad.numpy(), rtol=1e-10, atol=1e-10)


# --- the textbook GEMM versions (the middle step of the reading order) ------------------------------------

@pytest.mark.parametrize("n, c, h, w_, f, k, stride, padding, bias", [
    (2, 3, 7, 6, 4, 3, 1, 0, True),
    (1, 2, 8, 8, 3, 3, 2, 1, False),
    (3, 1, 5, 9, 2, (2, 4), 1, 2, True),
])
def test_gemm_versions_equal_the_loops_and_the_tuned_ones(rng, n, c, h, w_, f, k, stride, padding, bias):
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((n, c, h, w_))
    w = rng.standard_normal((f, c, kh, kw))
    b = rng.standard_normal(f) if bias else None
    out = conv2d_forward_gemm(x, w, b, stride, padding)
    np.testing.assert_allclose(out, conv2d_forward_naive(x, w, b, stride, padding), rtol=1e-12, atol=1e-12)
    tuned, cache = conv2d_forward(x, w, b, stride, padding)
    np.testing.assert_allclose(out, tuned, rtol=1e-12, atol=1e-12)
    assert out.flags.c_contiguous and out.dtype == tuned.dtype
    dout = rng.standard_normal(out.shape)
    got = conv2d_backward_gemm(dout, x, w, b, stride, padding)
    for expected in (conv2d_backward_naive(dout, x, w, b, stride, padding), conv2d_backward(dout, cache)):
        for a, e in zip(got, expected, strict=True):
            if e is None:
                assert a is None
            else:
                np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-11)


def test_gemm_backward_rejects_a_dout_of_the_wrong_shape(rng):
    x, w = rng.standard_normal((1, 1, 4, 4)), rng.standard_normal((2, 1, 3, 3))
    with pytest.raises(ValueError, match="dout must have shape"):
        conv2d_backward_gemm(np.zeros((1, 2, 3, 3)), x, w, None)
