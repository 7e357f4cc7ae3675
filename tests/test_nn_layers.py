"""Tests of the parameter-light layers: ReLU, BatchNorm2d, dropout, flatten, the loss and residual blocks."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.models import set_engine
from refimpl.nn.activation import ReLU, relu_backward, relu_forward, relu_forward_naive
from refimpl.nn.batchnorm import (
    BatchNorm2d,
    batchnorm2d_backward,
    batchnorm2d_backward_naive,
    batchnorm2d_forward,
    batchnorm2d_forward_naive,
)
from refimpl.nn.dropout import Dropout, dropout_backward, dropout_forward
from refimpl.nn.flatten import Flatten, flatten_backward, flatten_forward
from refimpl.nn.linear import Linear
from refimpl.nn.loss import accuracy, softmax, softmax_cross_entropy
from refimpl.nn.module import Sequential
from refimpl.nn.residual import BasicBlock, Residual
from refimpl.testing.gradcheck import check_gradient

TOL = 1e-7  # finite-difference relative error bound (float64, centred differences)


def _away_from_zero(rng, shape, margin=1e-3):
    """Random normals kept ``margin`` away from 0, so a finite-difference step never crosses the kink."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, margin * 10, x)


# --- ReLU ------------------------------------------------------------------------------------------------

def test_relu_values_and_subgradient_at_zero(engine):
    x = np.array([[-2.0, 0.0, 3.0]])
    out, cache = relu_forward(x)
    np.testing.assert_array_equal(out, [[0.0, 0.0, 3.0]])
    np.testing.assert_array_equal(relu_backward(np.array([[5.0, 5.0, 5.0]]), cache, engine=engine),
                                  [[0.0, 0.0, 5.0]])


def test_relu_backward_is_a_select_not_a_product(engine):
    # behind a closed gate the derivative is 0, whatever arrives (dout * mask would give NaN here)
    _, cache = relu_forward(np.array([-1.0, -2.0, -3.0, 0.0, 4.0, 5.0]))
    dout = np.array([np.nan, np.inf, -np.inf, np.nan, np.nan, -7.0])
    dx = relu_backward(dout, cache, engine=engine)
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.0, 0.0, np.nan, -7.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_backward_engines_agree(rng, dtype):
    x = rng.standard_normal((5, 3, 7, 6)).astype(dtype)
    dout = rng.standard_normal((6, 7, 3, 5)).astype(dtype).T  # non-contiguous upstream gradient
    _, cache = relu_forward(x)
    fast = relu_backward(dout, cache, engine="numba")
    assert fast.dtype == dtype and fast.shape == x.shape
    np.testing.assert_array_equal(fast, relu_backward(dout, cache, engine="numpy"))
    np.testing.assert_array_equal(fast, np.where(x > 0, dout, 0))


def test_relu_backward_bad_arguments(rng):
    _, cache = relu_forward(rng.standard_normal((2, 3)))
    with pytest.raises(ValueError, match="dout must have the forward input's shape"):
        relu_backward(np.ones((3, 2)), cache)
    with pytest.raises(ValueError, match="engine"):
        relu_backward(np.ones((2, 3)), cache, engine="torch")


def test_relu_naive_matches_fast(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    np.testing.assert_array_equal(relu_forward_naive(x), relu_forward(x)[0])
    np.testing.assert_array_equal(relu_forward_naive(np.array([-1.0, 2.0])), [0.0, 2.0])


def test_relu_gradcheck(rng, engine):
    x = _away_from_zero(rng, (2, 3, 4, 4))
    g = rng.standard_normal(x.shape)
    dx = relu_backward(g, relu_forward(x)[1], engine=engine)
    check_gradient(lambda: float(np.sum(relu_forward(x)[0] * g)), x, dx, rtol=TOL)


def test_relu_module_keeps_dtype_and_needs_forward(rng, engine):
    layer = set_engine(ReLU(), engine)
    assert layer.engine == engine
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones(3))
    x = rng.standard_normal((4, 5)).astype(np.float32)
    out = layer(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), (x > 0).astype(np.float32))


def test_relu_matches_torch(torch, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    g = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.relu(xt)
    yt.backward(torch.tensor(g))
    out, cache = relu_forward(x)
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(relu_backward(g, cache), xt.grad.numpy(), rtol=0, atol=1e-10)


# --- BatchNorm2d ----------------------------------------------------------------------------------------

def _bn_setup(rng, shape=(4, 3, 5, 6)):
    c = shape[1]
    x = 2.0 * rng.standard_normal(shape) + 0.5
    gamma = rng.uniform(0.5, 1.5, c)
    beta = rng.standard_normal(c)
    running_mean = 0.3 * rng.standard_normal(c)
    running_var = rng.uniform(0.5, 2.0, c)
    return x, gamma, beta, running_mean, running_var


def test_bn_train_normalises_each_channel(rng, engine):
    x, gamma, beta, rm, rv = _bn_setup(rng)
    out, _ = batchnorm2d_forward(x, np.ones(3), np.zeros(3), rm, rv, training=True, eps=1e-12, engine=engine)
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1.0, rtol=1e-10)


def test_bn_running_stats_use_unbiased_variance(rng, engine):
    x, gamma, beta, rm, rv = _bn_setup(rng)
    rm0, rv0 = rm.copy(), rv.copy()
    batchnorm2d_forward(x, gamma, beta, rm, rv, training=True, momentum=0.25, engine=engine)
    np.testing.assert_allclose(rm, 0.75 * rm0 + 0.25 * x.mean(axis=(0, 2, 3)), rtol=1e-13)
    np.testing.assert_allclose(rv, 0.75 * rv0 + 0.25 * x.var(axis=(0, 2, 3), ddof=1), rtol=1e-13)
    # evaluation mode reads the running statistics and leaves them alone
    rm1, rv1 = rm.copy(), rv.copy()
    out, _ = batchnorm2d_forward(x, gamma, beta, rm, rv, training=False, engine=engine)
    np.testing.assert_array_equal(rm, rm1)
    np.testing.assert_array_equal(rv, rv1)
    expected = gamma[None, :, None, None] * (x - rm[None, :, None, None]) / np.sqrt(
        rv[None, :, None, None] + 1e-5) + beta[None, :, None, None]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_bn_naive_forward_matches_fast(rng, training, engine):
    x, gamma, beta, rm, rv = _bn_setup(rng, (3, 2, 3, 4))
    rm2, rv2 = rm.copy(), rv.copy()
    out, _ = batchnorm2d_forward(x, gamma, beta, rm, rv, training, momentum=0.3, eps=1e-4, engine=engine)
    out_naive = batchnorm2d_forward_naive(x, gamma, beta, rm2, rv2, training, momentum=0.3, eps=1e-4)
    np.testing.assert_allclose(out_naive, out, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm2, rm, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(rv2, rv, rtol=1e-12)


def test_bn_naive_backward_matches_fast(rng, engine):
    x, gamma, beta, rm, rv = _bn_setup(rng, (3, 2, 3, 4))
    g = rng.standard_normal(x.shape)
    _, cache = batchnorm2d_forward(x, gamma, beta, rm, rv, True, eps=1e-3, engine=engine)
    fast = batchnorm2d_backward(g, cache)
    naive = batchnorm2d_backward_naive(g, x, gamma, eps=1e-3)
    for a, b in zip(fast, naive, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [True, False])
def test_bn_gradcheck(rng, training, engine):
    x, gamma, beta, rm, rv = _bn_setup(rng, (3, 2, 4, 3))
    g = rng.standard_normal(x.shape)

    def f():
        # copies: training mode must not drift the statistics the evaluation-mode check reads
        out = batchnorm2d_forward(x, gamma, beta, rm.copy(), rv.copy(), training, engine=engine)[0]
        return float(np.sum(out * g))

    _, cache = batchnorm2d_forward(x, gamma, beta, rm.copy(), rv.copy(), training, engine=engine)
    dx, dgamma, dbeta = batchnorm2d_backward(g, cache)
    check_gradient(f, x, dx, rtol=TOL, name="x")
    check_gradient(f, gamma, dgamma, rtol=TOL, name="gamma")
    check_gradient(f, beta, dbeta, rtol=TOL, name="beta")


def test_bn_rejects_bad_input(rng, engine):
    x, gamma, beta, rm, rv = _bn_setup(rng)
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        batchnorm2d_forward(x[0], gamma, beta, rm, rv, True, engine=engine)
    with pytest.raises(ValueError, match="gamma must have shape"):
        batchnorm2d_forward(x, gamma[:2], beta, rm, rv, True, engine=engine)
    with pytest.raises(ValueError, match="momentum"):
        batchnorm2d_forward(x, gamma, beta, rm, rv, True, momentum=1.5, engine=engine)
    with pytest.raises(ValueError, match="eps"):
        batchnorm2d_forward(x, gamma, beta, rm, rv, True, eps=0.0, engine=engine)
    with pytest.raises(ValueError, match="more than one value per channel"):
        batchnorm2d_forward(x[:1, :, :1, :1], gamma, beta, rm, rv, True, engine=engine)
    # one value per channel is fine in evaluation mode
    out = batchnorm2d_forward(x[:1, :, :1, :1], gamma, beta, rm, rv, False, engine=engine)[0]
    assert out.shape == (1, 3, 1, 1)


def test_bn_module_names_and_modes(rng):
    bn = BatchNorm2d(3, dtype=np.float64)
    assert set(bn.params) == {"weight", "bias"}
    assert set(bn.buffers) == {"running_mean", "running_var"}
    np.testing.assert_array_equal(bn.params["weight"], 1.0)
    np.testing.assert_array_equal(bn.buffers["running_var"], 1.0)
    x = rng.standard_normal((4, 3, 2, 2))
    bn(x)
    assert not np.allclose(bn.buffers["running_mean"], 0.0)
    bn.eval()
    before = bn.state_dict()
    out = bn(x)
    bn.backward(np.ones_like(out))
    for k, v in bn.buffers.items():
        np.testing.assert_array_equal(v, before[k])
    # evaluation backward is the affine map's: dx = gamma / sqrt(running_var + eps)
    dx = bn.backward(np.ones_like(out))
    np.testing.assert_allclose(dx[0, :, 0, 0], 1.0 / np.sqrt(bn.buffers["running_var"] + 1e-5))
    with pytest.raises(ValueError, match="num_features"):
        BatchNorm2d(0)


def test_bn_running_stats_match_torch_over_steps(torch, rng):
    bn = BatchNorm2d(3, momentum=0.2, dtype=np.float64)
    tbn = torch.nn.BatchNorm2d(3, momentum=0.2)
    tbn.train()
    for _ in range(5):
        x = 3.0 * rng.standard_normal((4, 3, 3, 2)) + 1.0
        bn(x)
        tbn(torch.tensor(x))
    np.testing.assert_allclose(bn.buffers["running_mean"], tbn.running_mean.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(bn.buffers["running_var"], tbn.running_var.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("training", [True, False])
def test_bn_matches_torch(torch, rng, training):
    x, gamma, beta, rm, rv = _bn_setup(rng)
    g = rng.standard_normal(x.shape)
    tbn = torch.nn.BatchNorm2d(3, momentum=0.1, eps=1e-5)
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor(gamma))
        tbn.bias.copy_(torch.tensor(beta))
        tbn.running_mean.copy_(torch.tensor(rm))
        tbn.running_var.copy_(torch.tensor(rv))
    tbn.train(training)
    xt = torch.tensor(x, requires_grad=True)
    yt = tbn(xt)
    yt.backward(torch.tensor(g))

    out, cache = batchnorm2d_forward(x, gamma, beta, rm, rv, training)
    dx, dgamma, dbeta = batchnorm2d_backward(g, cache)
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dgamma, tbn.weight.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dbeta, tbn.bias.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(rm, tbn.running_mean.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(rv, tbn.running_var.numpy(), rtol=0, atol=1e-10)


# --- dropout --------------------------------------------------------------------------------------------

def test_dropout_inverted_scaling(rng):
    x = rng.standard_normal((50, 40)) + 5.0  # no zeros in x, so zeros in out are drops
    out, mask = dropout_forward(x, 0.25, True, np.random.default_rng(3))
    dropped = out == 0
    np.testing.assert_allclose(out[~dropped], x[~dropped] / 0.75, rtol=1e-14)
    assert 0.2 < dropped.mean() < 0.3  # 2000 Bernoulli(0.25) draws: 0.25 +- 0.05 is > 5 sigma
    g = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(dropout_backward(g, mask), g * mask)
    np.testing.assert_array_equal(dropout_backward(g, mask)[dropped], 0.0)


def test_dropout_same_seed_same_mask_and_modes(rng):
    x = rng.standard_normal((6, 7))
    a, _ = dropout_forward(x, 0.5, True, np.random.default_rng(1))
    b, _ = dropout_forward(x, 0.5, True, np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    out, cache = dropout_forward(x, 0.5, False, None)
    assert out is x and cache is None
    np.testing.assert_array_equal(dropout_forward(x, 1.0, True, rng)[0], 0.0)
    np.testing.assert_array_equal(dropout_forward(x, 0.0, True, None)[0], x)
    with pytest.raises(ValueError, match="p must lie in"):
        dropout_forward(x, 1.5, True, rng)
    with pytest.raises(TypeError, match="rng"):
        dropout_forward(x, 0.5, True, None)


def test_dropout_gradcheck(rng):
    x = rng.standard_normal((3, 4, 5))
    g = rng.standard_normal(x.shape)
    _, mask = dropout_forward(x, 0.3, True, np.random.default_rng(11))
    f = lambda: float(np.sum(dropout_forward(x, 0.3, True, np.random.default_rng(11))[0] * g))  # noqa: E731
    check_gradient(f, x, dropout_backward(g, mask), rtol=TOL)


def test_dropout_module_uses_set_rng(rng):
    x = np.ones((8, 8))
    net = Sequential([("drop", Dropout(0.5))])
    net.set_rng(np.random.default_rng(5))
    out = net(x)
    expected, _ = dropout_forward(x, 0.5, True, np.random.default_rng(5))
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(net.backward(np.ones_like(x)), expected)  # d(x*mask)/dx = mask
    net.eval()
    np.testing.assert_array_equal(net(x), x)
    with pytest.raises(ValueError, match="p must lie in"):
        Dropout(-0.1)
    assert isinstance(Dropout().rng, np.random.Generator)


# --- flatten --------------------------------------------------------------------------------------------

def test_flatten_is_row_major(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    out, cache = flatten_forward(x)
    assert out.shape == (2, 60)
    c, h, w = 2, 1, 3
    assert out[1, c * 20 + h * 5 + w] == x[1, c, h, w]
    np.testing.assert_array_equal(flatten_backward(out, cache), x)


def test_flatten_module_gradcheck(rng):
    layer = Flatten()
    x = rng.standard_normal((2, 3, 2, 2))
    g = rng.standard_normal((2, 12))
    layer(x)
    dx = layer.backward(g)
    assert dx.shape == x.shape
    check_gradient(lambda: float(np.sum(layer(x) * g)), x, dx, rtol=TOL)


def test_flatten_matches_torch(torch, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_array_equal(flatten_forward(x)[0], torch.flatten(torch.tensor(x), 1).numpy())


# --- loss -----------------------------------------------------------------------------------------------

def test_cross_entropy_worked_example():
    # two classes with logits (0, log 3): softmax = (1/4, 3/4)
    logits = np.array([[0.0, np.log(3.0)], [0.0, np.log(3.0)]])
    loss, dlogits = softmax_cross_entropy(logits, np.array([1, 0]))
    np.testing.assert_allclose(loss, 0.5 * (-np.log(0.75) - np.log(0.25)), rtol=1e-14)
    np.testing.assert_allclose(dlogits, [[0.125, -0.125], [-0.375, 0.375]], rtol=1e-14)


def test_cross_entropy_gradcheck(rng):
    logits = rng.standard_normal((5, 4))
    labels = rng.integers(0, 4, 5)
    _, dlogits = softmax_cross_entropy(logits, labels)
    check_gradient(lambda: softmax_cross_entropy(logits, labels)[0], logits, dlogits, rtol=TOL)


def test_cross_entropy_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]])
    loss, dlogits = softmax_cross_entropy(logits, np.array([0, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(dlogits))
    # row 0 is certain and right (loss 0); row 1 puts 1/2 on each of classes 1, 2: loss 1e4 + log 2
    np.testing.assert_allclose(loss, 0.5 * (1e4 + np.log(2.0)), rtol=1e-14)
    np.testing.assert_allclose(dlogits, [[0, 0, 0], [-0.5, 0.25, 0.25]], atol=1e-15)
    loss32, dlogits32 = softmax_cross_entropy(logits.astype(np.float32), np.array([0, 0]))
    assert dlogits32.dtype == np.float32 and np.isfinite(loss32)
    np.testing.assert_allclose(loss32, loss, rtol=1e-6)
    s = softmax(logits.astype(np.float32))
    assert s.dtype == np.float32 and np.all(np.isfinite(s))
    np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-6)


def test_cross_entropy_rejects_bad_labels(rng):
    logits = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="labels must lie in"):
        softmax_cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="labels must lie in"):
        softmax_cross_entropy(logits, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match="labels must have shape"):
        softmax_cross_entropy(logits, np.array([0, 1]))
    with pytest.raises(TypeError, match="labels must be an integer"):
        softmax_cross_entropy(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="logits must have 2 dimensions"):
        softmax_cross_entropy(logits[0], np.array([0]))
    with pytest.raises(ValueError, match="NaN"):
        softmax_cross_entropy(np.full((1, 2), np.nan), np.array([0]))


def test_cross_entropy_matches_torch(torch, rng):
    logits = 3.0 * rng.standard_normal((6, 5))
    labels = rng.integers(0, 5, 6)
    zt = torch.tensor(logits, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(zt, torch.tensor(labels))
    lt.backward()
    loss, dlogits = softmax_cross_entropy(logits, labels)
    np.testing.assert_allclose(loss, lt.item(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(dlogits, zt.grad.numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(softmax(logits), torch.softmax(torch.tensor(logits), 1).numpy(), atol=1e-12)


def test_accuracy():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])
    assert accuracy(logits, np.array([1, 0, 0, 0])) == 0.75  # the tie goes to class 0
    with pytest.raises(ValueError, match="labels must lie in"):
        accuracy(logits, np.array([1, 0, 0, 2]))


# --- residual connections -------------------------------------------------------------------------------

def _linear_body(rng):
    return Sequential([("fc1", Linear(4, 5, rng=rng, dtype=np.float64)), ("relu", ReLU()),
                       ("fc2", Linear(5, 4, rng=rng, dtype=np.float64))])


@pytest.mark.parametrize("with_shortcut", [False, True])
def test_residual_gradcheck(rng, with_shortcut):
    shortcut = Linear(4, 4, rng=rng, dtype=np.float64) if with_shortcut else None
    block = Residual(_linear_body(rng), shortcut)
    x = rng.standard_normal((3, 4))
    g = rng.standard_normal((3, 4))
    block.forward(x)
    dx = block.backward(g)
    grads = {k: v.copy() for k, v in block.gradients().items()}
    f = lambda: float(np.sum(block.forward(x) * g))  # noqa: E731
    check_gradient(f, x, dx, rtol=TOL, name="x")
    params = block.parameters()
    for name in grads:
        check_gradient(f, params[name], grads[name], rtol=TOL, name=name)
    expected = {"body.fc1.weight", "body.fc1.bias", "body.fc2.weight", "body.fc2.bias"}
    if with_shortcut:
        expected |= {"shortcut.weight", "shortcut.bias"}
    assert set(params) == expected


def test_residual_identity_adds_input(rng):
    body = _linear_body(rng)
    block = Residual(body)
    x = rng.standard_normal((2, 4))
    np.testing.assert_allclose(block.forward(x), body.forward(x) + x, rtol=1e-15)
    bad = Residual(Linear(4, 3, dtype=np.float64))
    with pytest.raises(ValueError, match="cannot be added"):
        bad.forward(x)


@pytest.mark.parametrize(("in_channels", "out_channels", "stride"), [(3, 3, 1), (2, 4, 2)])
def test_basic_block_gradcheck(rng, in_channels, out_channels, stride):
    block = BasicBlock(in_channels, out_channels, stride, rng=rng, dtype=np.float64)
    set_engine(block, "numpy")  # many tiny forwards: the NumPy kernels are the fast ones here
    has_projection = stride != 1 or in_channels != out_channels
    assert [n for n, _ in block.children()] == ["conv1", "bn1", "conv2", "bn2"] + (
        ["shortcut"] if has_projection else [])
    # non-trivial BatchNorm affine parameters (the only 1-D ones: the convs have no bias)
    for name, p in block.parameters().items():
        if p.ndim == 1:
            is_gamma = name.endswith("weight")
            p[...] = rng.uniform(0.5, 1.5, p.shape) if is_gamma else rng.standard_normal(p.shape)
    x = rng.standard_normal((2, in_channels, 5, 5))
    out = block.forward(x)
    assert out.shape == (2, out_channels, -(-5 // stride), -(-5 // stride))
    g = rng.standard_normal(out.shape)
    dx = block.backward(g)
    grads = {k: v.copy() for k, v in block.gradients().items()}
    f = lambda: float(np.sum(block.forward(x) * g))  # noqa: E731
    check_gradient(f, x, dx, rtol=TOL, name="x")
    params = block.parameters()
    names = ["conv1.weight", "bn1.weight", "conv2.weight", "bn2.bias"]
    if has_projection:
        names += ["shortcut.0.weight", "shortcut.1.weight"]
    for name in names:
        check_gradient(f, params[name], grads[name], rtol=TOL, name=name)


def test_every_layer_refuses_backward_before_forward():
    from refimpl.models import lenet5, resnet_small, vgg_small

    for model in (lenet5(), vgg_small(width=4, dropout=0.5), resnet_small(depth=8, width=4)):
        for name, layer in model.named_modules():
            if not name or not layer.__class__.__name__[0].isupper() or list(layer.children()):
                continue
            with pytest.raises(RuntimeError, match=f"{type(layer).__name__}.backward called before forward"):
                layer.backward(np.zeros((1, 1)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_bn_engines_agree(rng, training, dtype):
    x = (3.0 + 2.0 * rng.standard_normal((4, 5, 6, 7))).astype(dtype)
    gamma, beta = rng.standard_normal(5).astype(dtype), rng.standard_normal(5).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    results = {}
    for engine in ("numba", "numpy"):
        rm, rv = np.full(5, 0.5, dtype), np.full(5, 2.0, dtype)
        out, cache = batchnorm2d_forward(x, gamma, beta, rm, rv, training, momentum=0.2, engine=engine)
        results[engine] = (out, *batchnorm2d_backward(g, cache), rm, rv)
        assert all(a.dtype == dtype for a in results[engine])
    tol = 2e-5 if dtype == np.float32 else 1e-11
    for a, b in zip(results["numba"], results["numpy"], strict=True):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())
