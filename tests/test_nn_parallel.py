"""Split GEMMs (refimpl.nn.parallel): the pieces give the unsplit product, the network gives the same
step at every thread count, and thread_limit switches the split on and off as documented."""

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from refimpl.models import lenet5, resnet_small, vgg_small
from refimpl.nn import parallel
from refimpl.nn.loss import softmax_cross_entropy
from refimpl.threads import thread_limit


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


@pytest.mark.parametrize("split, shape_a, shape_b", [
    ("rows", (300, 70), (70, 90)),
    ("cols", (30, 70), (70, 900)),
    ("batch", (13, 20, 25), (13, 25, 60)),
    ("batch", (20, 25), (13, 25, 60)),       # a 2-D weight broadcast over a stack (conv1's forward)
])
@pytest.mark.parametrize("threads", [2, 3, 4])
def test_split_product_equals_the_unsplit_one(rng, split, shape_a, shape_b, threads):
    a = rng.standard_normal(shape_a).astype(np.float32)
    b = rng.standard_normal(shape_b).astype(np.float32)
    with threadpool_limits(1):
        expected = np.matmul(a, b)
    with parallel.split_gemms(threads):
        assert parallel.split_workers() == threads
        got = parallel.matmul(a, b, split=split)
    assert got.shape == expected.shape and got.dtype == expected.dtype and got.flags.c_contiguous
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_pieces_cover_the_axis_once():
    for length in (1, 5, 64, 1000):
        for pieces in (1, 2, 3, 16, 2000):
            bounds = parallel._bounds(length, pieces)
            assert bounds[0][0] == 0 and bounds[-1][1] == length
            assert all(hi > lo for lo, hi in bounds) and len(bounds) <= min(pieces, length)
            assert all(prev[1] == nxt[0] for prev, nxt in zip(bounds[:-1], bounds[1:], strict=True))
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_products_split_only_when_the_work_is_worth_a_thread(rng, monkeypatch):
    calls = []
    real = np.matmul

    def counting(a, b, **kwargs):
        calls.append(a.shape)
        return real(a, b, **kwargs)

    a, b = rng.standard_normal((64, 500)), rng.standard_normal((500, 10))  # 320 k multiply-adds
    monkeypatch.setattr(parallel.np, "matmul", counting)
    with parallel.split_gemms(4):
        parallel.matmul(a, b)
        assert len(calls) == 1  # one piece: 320 k < 2 * MIN_PIECE_WORK
        calls.clear()
        parallel.matmul(rng.standard_normal((64, 800)), rng.standard_normal((800, 500)))
        assert len(calls) == 4


def test_outside_the_block_it_is_numpy_matmul(rng):
    a, b = rng.standard_normal((40, 30)), rng.standard_normal((30, 20))
    assert parallel.split_workers() == 0
    np.testing.assert_array_equal(parallel.matmul(a, b, split="cols"), a @ b)


def test_blas_is_single_threaded_inside_and_restored_after():
    before = _blas_threads()
    with parallel.split_gemms(2):
        assert set(_blas_threads()) == {1}
    assert _blas_threads() == before and parallel.split_workers() == 0


def test_a_failing_piece_raises_in_the_caller():
    with parallel.split_gemms(2), pytest.raises(ValueError):
        parallel.matmul(np.ones((600, 600)), np.ones((500, 600)))


@pytest.mark.parametrize("bad", [{"split": "diagonal"}])
def test_bad_arguments_are_named(bad):
    with pytest.raises(ValueError, match="split"):
        parallel.matmul(np.ones((2, 2)), np.ones((2, 2)), **bad)
    with pytest.raises(TypeError, match="threads"):
        with parallel.split_gemms(2.0):
            pass


def _step(model, x, y):
    logits = model.forward(x)
    _, dlogits = softmax_cross_entropy(logits, y)
    dx = model.backward(dlogits)
    return logits, dx, {k: v.copy() for k, v in model.gradients().items()}


@pytest.mark.parametrize("build, shape", [
    (lambda: lenet5(), (32, 1, 28, 28)),
    (lambda: vgg_small(in_channels=1, input_size=16, width=8), (8, 1, 16, 16)),
    (lambda: resnet_small(depth=8, width=8, in_channels=1, input_size=16), (8, 1, 16, 16)),
])
def test_a_training_step_is_the_same_at_every_thread_count(rng, build, shape):
    # the split step against the plain one with single-threaded BLAS: every output entry is the same dot
    # product, so only OpenBLAS's choice of inner kernel can change the rounding (parallel's docstring)
    x = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, 10, shape[0])
    with threadpool_limits(1):
        expected = _step(build(), x, y)
    for threads in (2, 3, 4):
        with parallel.split_gemms(threads):
            got = _step(build(), x, y)
        np.testing.assert_allclose(got[0], expected[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[1], expected[1], rtol=1e-4, atol=1e-6)
        for name in expected[2]:
            np.testing.assert_allclose(got[2][name], expected[2][name], rtol=1e-4, atol=1e-6, err_msg=name)


def test_thread_limit_splits_from_the_documented_thread_count(monkeypatch):
    monkeypatch.setattr(parallel, "SPLIT_FROM_THREADS", 2)
    with thread_limit(2):
        assert parallel.split_workers() == 2
    with thread_limit(2, split=False):
        assert parallel.split_workers() == 0
    with thread_limit(1, split=True):
        assert parallel.split_workers() == 0  # one thread: nothing to split over
    monkeypatch.setattr(parallel, "SPLIT_FROM_THREADS", 0)  # 0: never
    with thread_limit(2):
        assert parallel.split_workers() == 0
    assert parallel.split_workers() == 0


@pytest.mark.parametrize("engine", ["numba", "numpy"])
@pytest.mark.parametrize("stride, padding, input_grad", [(1, 1, True), (2, 0, True), (1, 2, False)])
def test_image_groups_give_the_plain_convolution_bit_for_bit(rng, monkeypatch, engine, stride, padding,
                                                              input_grad):
    # inside split_gemms the image-by-image convolution runs as one group of images per thread, built a
    # chunk at a time; with chunks of 2 images (a partial last one) and 1-4 threads it must give exactly
    # the plain single-threaded numbers, dW's image-order sum included
    from refimpl.nn import conv

    x = rng.standard_normal((7, 2, 13, 12)).astype(np.float32)
    w = rng.standard_normal((4, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    with threadpool_limits(1):
        out, cache = conv.conv2d_forward(x, w, b, stride, padding, engine=engine)
        g = rng.standard_normal(out.shape).astype(np.float32)
        expected = (out, *conv.conv2d_backward(g, cache, input_grad=input_grad))
    assert cache[5].ndim == 2  # the plain path keeps the im2col matrix
    oh, ow = out.shape[2:]
    monkeypatch.setattr(conv, "CHUNK_BYTES", 2 * 2 * 9 * oh * ow * 4)  # 2 images per chunk
    for threads in (2, 3, 4):
        with parallel.split_gemms(threads):
            got_out, got_cache = conv.conv2d_forward(x, w, b, stride, padding, engine=engine)
            got = (got_out, *conv.conv2d_backward(g, got_cache, input_grad=input_grad))
        assert got_cache[5].shape == (7, 2, 13 + 2 * padding, 12 + 2 * padding)  # the padded input
        for a, e in zip(got, expected, strict=True):
            if e is None:
                assert a is None
            else:
                np.testing.assert_array_equal(a, e)
