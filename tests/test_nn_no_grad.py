"""``refimpl.nn.no_grad``: forward passes that keep nothing for backward (evaluation without the caches)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from refimpl.models import lenet5, resnet_small, vgg_small
from refimpl.nn import AvgPool2d, no_grad
from refimpl.nn.module import keeps_for_backward
from refimpl.train.trainer import evaluate

NETWORKS = {
    "lenet5": (lambda rng: lenet5(rng=rng), (5, 1, 28, 28)),
    "vgg_small_dropout": (lambda rng: vgg_small(width=8, dropout=0.5, rng=rng), (5, 3, 32, 32)),
    "resnet_small": (lambda rng: resnet_small(depth=8, width=4, rng=rng), (5, 3, 32, 32)),
}


def _kept(model) -> dict[str, object]:
    """Every cache a module holds for backward, by ``module name.attribute``."""
    return {f"{name}.{attribute}": value
            for name, module in model.named_modules()
            for attribute, value in vars(module).items() if attribute.endswith("_cache")}


def _network(name, training):
    build, shape = NETWORKS[name]
    rng = np.random.default_rng(0)
    model = build(np.random.default_rng(1))
    model.train(training)
    return model, rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_outputs_are_bitwise_equal_and_no_cache_is_kept(name, training):
    model, x = _network(name, training)
    model.set_rng(np.random.default_rng(3))
    plain = model.forward(x)
    assert any(value is not None for value in _kept(model).values())
    model.set_rng(np.random.default_rng(3))  # the same dropout draw
    with no_grad():
        quiet = model.forward(x)
    np.testing.assert_array_equal(quiet, plain)
    kept = {key: value for key, value in _kept(model).items() if value is not None}
    assert kept == {}, sorted(kept)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_backward_after_a_no_grad_forward_raises_and_a_plain_forward_restores_it(name):
    model, x = _network(name, training=True)
    with no_grad():
        logits = model.forward(x)
    with pytest.raises(RuntimeError, match="backward called"):
        model.backward(np.ones_like(logits))
    logits = model.forward(x)
    dx = model.backward(np.ones_like(logits))
    assert dx.shape == x.shape


def test_blocks_nest_and_restore_after_an_error():
    assert keeps_for_backward()
    with no_grad():
        with no_grad():
            assert not keeps_for_backward()
        assert not keeps_for_backward()
    assert keeps_for_backward()
    with pytest.raises(ZeroDivisionError), no_grad():
        1 / 0  # noqa: B018
    assert keeps_for_backward()


def test_the_setting_is_per_thread():
    seen = []
    with no_grad():
        other = threading.Thread(target=lambda: seen.append(keeps_for_backward()))
        other.start()
        other.join()
    assert seen == [True]


def test_avgpool_keeps_no_cache_under_no_grad():
    pool = AvgPool2d(2)
    x = np.arange(32, dtype=np.float64).reshape(1, 2, 4, 4)
    with no_grad():
        pool.forward(x)
    assert pool._cache is None
    pool.forward(x)
    assert pool._cache is not None


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_evaluate_keeps_no_cache_and_restores_the_mode(name):
    model, x = _network(name, training=True)
    y = np.arange(len(x)) % 10
    want = model.eval().forward(x)
    model.train()
    result = evaluate(model, x, y, batch_size=2)
    assert model.training
    assert all(value is None for value in _kept(model).values())
    assert result["accuracy"] == np.mean(np.argmax(want, axis=1) == y)
