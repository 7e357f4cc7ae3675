"""Tests for max, average and global average pooling (refimpl.nn.pool)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.nn.pool import (
    AvgPool2d,
    GlobalAvgPool2d,
    MaxPool2d,
    avgpool2d_backward,
    avgpool2d_forward,
    avgpool2d_forward_naive,
    global_avgpool_backward,
    global_avgpool_forward,
    global_avgpool_forward_naive,
    maxpool2d_backward,
    maxpool2d_backward_naive,
    maxpool2d_forward,
    maxpool2d_forward_naive,
)
from refimpl.testing.gradcheck import check_gradient

# (N, C, H, W, kernel_size, stride): non-overlapping, overlapping (stride < kernel), gaps (stride > kernel),
# non-square kernels and inputs, a border that does not fit a whole window
POOL_CASES = [
    (2, 3, 4, 4, 2, None),
    (2, 2, 5, 6, 3, 1),
    (1, 2, 7, 5, (2, 3), (2, 1)),
    (2, 1, 7, 7, 2, 3),
    (1, 3, 5, 5, 2, 2),
]
POOL_IDS = ["2x2", "3x3-s1-overlap", "2x3-s2x1", "2x2-s3-gaps", "2x2-odd-border"]


@st.composite
def pool_geometry(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = draw(st.one_of(st.none(), st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    return dict(shape=(draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(kh, 8)),
                       draw(st.integers(kw, 8))),
                kernel_size=(kh, kw), stride=stride, seed=draw(st.integers(0, 2**32 - 1)))


# --- max pooling ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_maxpool_gradient(case, engine, rng):
    n, c, h, w, k, s = case
    x = rng.standard_normal((n, c, h, w))  # continuous: no ties, so the max is differentiable
    out, cache = maxpool2d_forward(x, k, s, engine=engine)
    g = rng.standard_normal(out.shape)
    dx = maxpool2d_backward(g, cache)
    check_gradient(lambda: float(np.sum(maxpool2d_forward(x, k, s, engine=engine)[0] * g)), x, dx)


@given(pool_geometry())
def test_maxpool_matches_naive_and_engines_agree(geometry):
    rng = np.random.default_rng(geometry["seed"])
    x = rng.standard_normal(geometry["shape"])
    k, s = geometry["kernel_size"], geometry["stride"]
    expected = maxpool2d_forward_naive(x, k, s)
    out_np, cache_np = maxpool2d_forward(x, k, s, engine="numpy")
    out_nb, cache_nb = maxpool2d_forward(x, k, s, engine="numba")
    np.testing.assert_array_equal(out_np, expected)
    np.testing.assert_array_equal(out_nb, expected)
    g = rng.standard_normal(expected.shape)
    np.testing.assert_array_equal(cache_nb[1], cache_np[1])  # the same winners
    # overlapping windows add their gradients in a different order in the two engines: allclose, not equal
    np.testing.assert_allclose(maxpool2d_backward(g, cache_nb), maxpool2d_backward(g, cache_np),
                               rtol=1e-13, atol=1e-15)


def test_maxpool_naive_worked_example():
    x = np.array([[1.0, 5.0, 2.0, 0.0],
                  [3.0, 4.0, 8.0, 1.0],
                  [0.0, 0.0, -1.0, -2.0],
                  [7.0, 6.0, -3.0, -4.0]])[None, None]
    np.testing.assert_array_equal(maxpool2d_forward_naive(x, 2), [[[[5.0, 8.0], [7.0, -1.0]]]])
    np.testing.assert_array_equal(maxpool2d_forward_naive(x, 3, 1), [[[[8.0, 8.0], [8.0, 8.0]]]])
    np.testing.assert_array_equal(maxpool2d_forward_naive(x, (2, 4), 2), [[[[8.0], [7.0]]]])


def test_maxpool_tie_goes_to_first_maximum(engine):
    # every window is constant: the whole gradient goes to the window's first entry (row-major)
    x = np.ones((1, 1, 4, 4))
    out, cache = maxpool2d_forward(x, 2, engine=engine)
    dx = maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    expected = np.zeros((4, 4))
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1.0, 2.0, 3.0, 4.0
    np.testing.assert_array_equal(dx[0, 0], expected)
    # a tie between positions (0, 1) and (1, 0): (0, 1) comes first in row-major order
    x = np.array([[0.0, 9.0], [9.0, 1.0]])[None, None]
    _, cache = maxpool2d_forward(x, 2, engine=engine)
    np.testing.assert_array_equal(maxpool2d_backward(np.ones((1, 1, 1, 1)), cache)[0, 0], [[0, 1], [0, 0]])


def test_maxpool_overlapping_windows_accumulate(engine):
    # the centre is the max of all four 2x2 windows of a 3x3 image: it gets all four gradients
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0
    _, cache = maxpool2d_forward(x, 2, 1, engine=engine)
    dx = maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    assert dx[0, 0, 1, 1] == 10.0 and np.count_nonzero(dx) == 1


@pytest.mark.parametrize("window, expected_k", [
    ([0.0, 0.0, np.nan, 0.0], 2),
    ([np.nan, 5.0, 1.0, 2.0], 0),
    ([1.0, np.nan, 7.0, np.nan], 3),  # PyTorch's rule "larger or NaN": the last NaN wins
    ([np.inf, -np.inf, 1.0, 2.0], 0),  # inf - inf in a window is not a NaN input
    ([-np.inf, -np.inf, -np.inf, -np.inf], 0),
])
def test_maxpool_nan_and_inf(window, expected_k, engine):
    x = np.array(window).reshape(1, 1, 2, 2)
    x = np.concatenate([x, np.zeros_like(x)], axis=3)  # a second, finite window beside it
    out, cache = maxpool2d_forward(x, 2, engine=engine)
    assert cache[1][0, 0, 0, 0] == expected_k
    np.testing.assert_array_equal(out[0, 0, 0, 0], x.reshape(2, 4)[expected_k // 2, expected_k % 2])
    assert out[0, 0, 0, 1] == 0.0
    dx = maxpool2d_backward(np.ones_like(out), cache)
    assert dx[0, 0, expected_k // 2, expected_k % 2] == 1.0 and dx[0, 0, :, :2].sum() == 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 4, 8, 6), (2, 3, 5, 7)], ids=["even", "odd-border"])
def test_maxpool_2x2_special_case_matches_general_kernel(shape, dtype, rng):
    from refimpl.nn._kernels import _maxpool_forward_numba, maxpool2d_forward_kernel

    # post-ReLU-like data full of ties (exact zeros, repeated values), plus NaN and infinities
    x = np.maximum(np.round(rng.standard_normal(shape), 1), 0).astype(dtype)
    x.flat[rng.choice(x.size, 6, replace=False)] = [np.nan, np.nan, np.inf, -np.inf, np.inf, np.nan]
    oh, ow = shape[2] // 2, shape[3] // 2
    out_general = np.empty((*shape[:2], oh, ow), dtype=dtype)
    argmax_general = np.empty(out_general.shape, dtype=np.int32)
    with np.errstate(invalid="ignore"):
        _maxpool_forward_numba(x, 2, 2, 2, 2, out_general, argmax_general)
    for engine in ("numba", "numpy"):  # numba takes the 2x2 kernel, numpy its general twin
        out, argmax = maxpool2d_forward_kernel(x, 2, 2, 2, 2, engine)
        np.testing.assert_array_equal(out, out_general)
        np.testing.assert_array_equal(argmax, argmax_general)
    np.testing.assert_array_equal(out_general, maxpool2d_forward_naive(x, 2))


@pytest.mark.torch
def test_maxpool_nan_matches_torch(engine, torch):
    x = np.array([1.0, np.nan, 7.0, np.nan, 3.0, 2.0, np.nan, 0.0]).reshape(1, 1, 2, 4)
    out, cache = maxpool2d_forward(x, 2, engine=engine)
    theirs, flat_index = torch.nn.functional.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(out, theirs.numpy())
    k = cache[1][0, 0, 0]  # in-window positions of the two windows -> flat indices into the 2x4 image
    np.testing.assert_array_equal((k // 2) * 4 + np.array([0, 2]) + k % 2, flat_index.numpy()[0, 0, 0])


def test_maxpool_float32_and_layer(engine, rng):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    layer = MaxPool2d(2)
    layer.engine = engine
    out = layer(x)
    assert out.dtype == np.float32 and out.shape == (2, 3, 3, 3)
    np.testing.assert_array_equal(out, maxpool2d_forward_naive(x, 2))
    dx = layer.backward(np.ones_like(out))
    assert dx.dtype == np.float32 and dx.shape == x.shape
    assert dx.sum() == out.size  # non-overlapping windows: one winner each
    assert layer.kernel_size == layer.stride == (2, 2)
    assert MaxPool2d(3, 1).stride == (1, 1) and "kernel_size=(3, 3)" in repr(MaxPool2d(3))


@pytest.mark.parametrize("kernel_size, stride, shape", [(2, None, (3, 4, 8, 6)), (2, None, (2, 3, 5, 7)),
                                                       (3, 1, (2, 2, 6, 5)), ((2, 3), (2, 1), (1, 2, 7, 5))],
                         ids=["2x2", "2x2-odd-border", "3x3-s1", "2x3-s2x1"])
def test_maxpool_eval_mode_same_output_no_cache(kernel_size, stride, shape, engine, rng):
    # post-ReLU-like data with ties, NaN and infinities, through the 2x2 special kernel and the general one
    x = np.maximum(np.round(rng.standard_normal(shape), 1), 0)
    x.flat[rng.choice(x.size, 3, replace=False)] = [np.nan, np.inf, -np.inf]
    layer = MaxPool2d(kernel_size, stride)
    layer.engine = engine
    with np.errstate(invalid="ignore"):
        out_train = layer(x)
        assert layer._cache is not None
        layer.eval()
        out_eval = layer(x)
    np.testing.assert_array_equal(out_eval, out_train)
    assert layer._cache is None  # nothing kept for a backward pass
    with pytest.raises(RuntimeError, match="eval-mode forward"):
        layer.backward(np.ones_like(out_eval))
    # back in training mode the layer records again and its backward works
    layer.train()
    np.testing.assert_array_equal(layer(x), out_train)
    assert layer.backward(np.ones_like(out_train)).shape == x.shape
    # the functional form and the kernel: no argmax recorded, the same output
    out_fn, cache = maxpool2d_forward(x, kernel_size, stride, engine=engine, for_backward=False)
    assert cache is None
    np.testing.assert_array_equal(out_fn, out_train)
    with pytest.raises(ValueError, match="for_backward=False"):
        maxpool2d_backward(np.ones_like(out_fn), cache)


def test_maxpool_kernel_without_argmax(engine, rng):
    from refimpl.nn._kernels import maxpool2d_forward_kernel

    x = rng.standard_normal((2, 3, 6, 6))
    out, argmax = maxpool2d_forward_kernel(x, 2, 2, 2, 2, engine, record_argmax=False)
    assert argmax is None
    np.testing.assert_array_equal(out, maxpool2d_forward_kernel(x, 2, 2, 2, 2, engine)[0])
    np.testing.assert_array_equal(out, maxpool2d_forward_naive(x, 2))


# --- average pooling ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_avgpool_gradient(case, rng):
    n, c, h, w, k, s = case
    x = rng.standard_normal((n, c, h, w))
    out, cache = avgpool2d_forward(x, k, s)
    g = rng.standard_normal(out.shape)
    dx = avgpool2d_backward(g, cache)
    check_gradient(lambda: float(np.sum(avgpool2d_forward(x, k, s)[0] * g)), x, dx)


@given(pool_geometry())
def test_avgpool_matches_naive(geometry):
    x = np.random.default_rng(geometry["seed"]).standard_normal(geometry["shape"])
    out, _ = avgpool2d_forward(x, geometry["kernel_size"], geometry["stride"])
    np.testing.assert_allclose(out, avgpool2d_forward_naive(x, geometry["kernel_size"], geometry["stride"]),
                               rtol=1e-12, atol=1e-12)


def test_avgpool_naive_worked_example_and_layer():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(avgpool2d_forward_naive(x, 2), [[[[2.5, 4.5], [10.5, 12.5]]]])
    layer = AvgPool2d(2)
    np.testing.assert_array_equal(layer(x), [[[[2.5, 4.5], [10.5, 12.5]]]])
    # every input entry lies in exactly one window: it receives a quarter of that window's gradient
    np.testing.assert_array_equal(layer.backward(np.ones((1, 1, 2, 2))), np.full((1, 1, 4, 4), 0.25))
    assert layer(x.astype(np.float32)).dtype == np.float32


# --- global average pooling -----------------------------------------------------------------------------

def test_global_avgpool_gradient_and_naive(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    out, cache = global_avgpool_forward(x)
    assert out.shape == (3, 4)
    np.testing.assert_allclose(out, global_avgpool_forward_naive(x), rtol=1e-12)
    g = rng.standard_normal(out.shape)
    dx = global_avgpool_backward(g, cache)
    assert dx.flags.writeable
    check_gradient(lambda: float(np.sum(global_avgpool_forward(x)[0] * g)), x, dx)


def test_global_avgpool_worked_example_and_layer():
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    np.testing.assert_array_equal(global_avgpool_forward_naive(x), [[1.5, 5.5]])
    layer = GlobalAvgPool2d()
    np.testing.assert_array_equal(layer(x), [[1.5, 5.5]])
    np.testing.assert_array_equal(layer.backward(np.array([[4.0, 8.0]])),
                                  [[[[1.0, 1.0], [1.0, 1.0]], [[2.0, 2.0], [2.0, 2.0]]]])


# --- bad arguments --------------------------------------------------------------------------------------

@pytest.mark.parametrize("forward", [maxpool2d_forward, avgpool2d_forward, maxpool2d_forward_naive,
                                     avgpool2d_forward_naive])
@pytest.mark.parametrize("x_shape, kwargs, exc, match", [
    ((4, 4), dict(kernel_size=2), ValueError, "x must have 4 dimensions"),
    ((1, 1, 4, 4), dict(kernel_size=0), ValueError, "kernel_size"),
    ((1, 1, 4, 4), dict(kernel_size=2.0), TypeError, "kernel_size"),
    ((1, 1, 4, 4), dict(kernel_size=(2, 2, 2)), TypeError, "kernel_size"),
    ((1, 1, 4, 4), dict(kernel_size=2, stride=0), ValueError, "stride"),
    ((1, 1, 4, 4), dict(kernel_size=2, stride=(1, -1)), ValueError, r"stride\[1\]"),
    ((1, 1, 1, 4), dict(kernel_size=2), ValueError, r"kernel_size\[0\]"),
    ((1, 1, 4, 1), dict(kernel_size=2), ValueError, r"kernel_size\[1\]"),
])
def test_pool_bad_arguments(forward, x_shape, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        forward(np.ones(x_shape), **kwargs)


def test_pool_bad_engine_dtype_and_dout():
    with pytest.raises(ValueError, match="engine"):
        maxpool2d_forward(np.ones((1, 1, 4, 4)), 2, engine="fortran")
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        maxpool2d_forward(np.ones((1, 1, 4, 4), dtype=int), 2)
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        global_avgpool_forward(np.ones((2, 3)))
    _, cache = maxpool2d_forward(np.ones((1, 1, 4, 4)), 2)
    with pytest.raises(ValueError, match="dout"):
        maxpool2d_backward(np.ones((1, 1, 3, 3)), cache)
    _, cache = avgpool2d_forward(np.ones((1, 1, 4, 4)), 2)
    with pytest.raises(ValueError, match="dout"):
        avgpool2d_backward(np.ones((1, 2, 2, 2)), cache)
    _, cache = global_avgpool_forward(np.ones((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="dout"):
        global_avgpool_backward(np.ones((2, 2)), cache)
    with pytest.raises(RuntimeError, match="before forward"):
        MaxPool2d(2).backward(np.ones((1, 1, 1, 1)))


# --- PyTorch cross-check --------------------------------------------------------------------------------

def _torch_pair(value):
    return value if value is None or isinstance(value, tuple) else (value, value)


@pytest.mark.torch
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_pools_match_torch(case, engine, rng, torch):
    n, c, h, w, k, s = case
    x = rng.standard_normal((n, c, h, w))
    functional = torch.nn.functional
    for ours_forward, ours_backward, theirs in [
        (lambda x_: maxpool2d_forward(x_, k, s, engine=engine), maxpool2d_backward, functional.max_pool2d),
        (lambda x_: avgpool2d_forward(x_, k, s), avgpool2d_backward, functional.avg_pool2d),
    ]:
        out, cache = ours_forward(x)
        g = rng.standard_normal(out.shape)
        tx = torch.tensor(x, requires_grad=True)
        tout = theirs(tx, _torch_pair(k), _torch_pair(s))
        tout.backward(torch.tensor(g))
        np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(ours_backward(g, cache), tx.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.torch
def test_global_avgpool_matches_torch(rng, torch):
    x = rng.standard_normal((3, 4, 5, 6))
    out, cache = global_avgpool_forward(x)
    g = rng.standard_normal(out.shape)
    tx = torch.tensor(x, requires_grad=True)
    tout = torch.nn.functional.adaptive_avg_pool2d(tx, 1).flatten(1)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(global_avgpool_backward(g, cache), tx.grad.numpy(), rtol=1e-10, atol=1e-10)


# --- the loop twin of the max-pool backward pass ------------------------------------------------------------

@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 1), (3, 2), ((2, 3), (1, 2))])
def test_maxpool_backward_equals_its_loop_twin(rng, engine, kernel, stride):
    # integers in a small range: many ties inside windows, so the tie rule is exercised, with a NaN too
    x = rng.integers(0, 4, (2, 3, 7, 8)).astype(np.float64)
    x[0, 1, 2, 3] = np.nan
    out, cache = maxpool2d_forward(x, kernel, stride, engine=engine)
    dout = rng.standard_normal(out.shape)
    expected = maxpool2d_backward_naive(dout, x, kernel, stride)
    np.testing.assert_allclose(maxpool2d_backward(dout, cache), expected, rtol=1e-12, atol=1e-12)


def test_maxpool_backward_naive_by_hand():
    x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])  # a tie: the first 3 in row-major order wins
    np.testing.assert_array_equal(maxpool2d_backward_naive(np.array([[[[5.0]]]]), x, 2),
                                  [[[[0.0, 5.0], [0.0, 0.0]]]])
