"""Tests of the model builders: gradients of whole networks, PyTorch twins, names, accounting."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from refimpl.models import (
    MODELS,
    Network,
    build_model,
    count_parameters,
    layer_table,
    lenet5,
    lenet300_100,
    resnet_small,
    set_engine,
    vgg_small,
)
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.loss import softmax_cross_entropy
from refimpl.testing.gradcheck import check_gradient

TOL = 1e-7


def _randomise_bn(model, rng):
    """Give every BatchNorm non-trivial parameters and statistics (the defaults 1/0 hide mistakes)."""
    for _, module in model.named_modules():
        if isinstance(module, BatchNorm2d):
            module.params["weight"][...] = rng.uniform(0.5, 1.5, module.num_features)
            module.params["bias"][...] = 0.2 * rng.standard_normal(module.num_features)
            module.buffers["running_mean"][...] = 0.1 * rng.standard_normal(module.num_features)
            module.buffers["running_var"][...] = rng.uniform(0.5, 1.5, module.num_features)


def _check_entries(f, param, analytic, rng, count, name):
    """Centred differences on ``count`` random entries of a large parameter (the full check is too slow)."""
    sample = rng.choice(param.size, size=count, replace=False)
    check_gradient(f, param, analytic, rtol=TOL, name=name, indices=sample)


def _gradcheck_model(model, x, rng, full, sampled=()):
    # Finite differences need thousands of forward passes of a tiny network; the NumPy engine is the fast
    # one at that size (numba's parallel kernels pay a thread start per call). The engines' agreement is
    # asserted separately in test_engines_agree and by the PyTorch cross-checks, which run both.
    set_engine(model, "numpy")
    model.train()
    out = model.forward(x)
    g = rng.standard_normal(out.shape)
    dx = model.backward(g)
    grads = {k: v.copy() for k, v in model.gradients().items()}
    params = model.parameters()

    def f():
        return float(np.sum(model.forward(x) * g))

    check_gradient(f, x, dx, rtol=TOL, name="input")
    for name in full:
        check_gradient(f, params[name], grads[name], rtol=TOL, name=name)
    for name in sampled:
        _check_entries(f, params[name], grads[name], rng, 40, name)


# --- gradients of whole networks ------------------------------------------------------------------------

def test_lenet5_gradcheck_on_8x8(rng):
    model = lenet5(input_size=8, rng=rng, dtype=np.float64)
    assert model["fc1"].in_features == 200  # padding 2: 8 -> 8 -> 4 -> 4 -> 2, 50 * 2 * 2
    x = rng.standard_normal((2, 1, 8, 8))
    _gradcheck_model(model, x, rng, full=["conv1.bias", "conv2.bias", "fc2.bias"],
                     sampled=["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"])


def test_vgg_small_gradcheck(rng):
    model = vgg_small(num_classes=3, in_channels=3, input_size=8, width=2, hidden=6, rng=rng,
                      dtype=np.float64)
    _randomise_bn(model, rng)
    x = rng.standard_normal((3, 3, 8, 8))
    _gradcheck_model(model, x, rng, full=["conv1.weight", "bn1.weight", "bn4.bias", "conv6.weight",
                                          "fc1.weight", "fc2.bias"])


def test_resnet_small_gradcheck(rng):
    model = resnet_small(depth=8, width=4, num_classes=3, in_channels=3, input_size=6, rng=rng,
                         dtype=np.float64)
    _randomise_bn(model, rng)
    x = rng.standard_normal((2, 3, 6, 6))
    _gradcheck_model(model, x, rng,
                     full=["conv1.weight", "bn1.weight", "layer1.0.conv2.weight", "layer1.0.bn2.bias",
                           "layer2.0.shortcut.0.weight", "layer2.0.shortcut.1.weight", "fc.weight"],
                     sampled=["layer3.0.conv1.weight"])


def test_lenet300_100_gradcheck(rng):
    model = lenet300_100(num_classes=4, input_size=5, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 1, 5, 5))
    _gradcheck_model(model, x, rng, full=["fc3.weight", "fc2.bias"], sampled=["fc1.weight", "fc2.weight"])


@pytest.mark.parametrize("builder", [
    lambda: lenet5(input_size=8, dtype=np.float64),
    lambda: vgg_small(input_size=8, width=2, hidden=6, dtype=np.float64),
    lambda: resnet_small(depth=8, width=4, input_size=6, dtype=np.float64),
], ids=["lenet5", "vgg_small", "resnet_small"])
def test_engines_agree(rng, builder):
    x = rng.standard_normal((3, *builder().input_shape))
    g = None
    results = {}
    for engine in ("numba", "numpy"):
        model = set_engine(builder(), engine)
        out = model.forward(x)
        g = rng.standard_normal(out.shape) if g is None else g
        dx = model.backward(g)
        results[engine] = (out, dx, model.gradients(), model.state_dict())
    (out_a, dx_a, grads_a, state_a), (out_b, dx_b, grads_b, state_b) = results["numba"], results["numpy"]
    np.testing.assert_allclose(out_a, out_b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx_a, dx_b, rtol=1e-12, atol=1e-12)
    for name in grads_a:
        np.testing.assert_allclose(grads_a[name], grads_b[name], rtol=1e-12, atol=1e-12, err_msg=name)
    for name in state_a:  # BatchNorm running statistics moved identically
        np.testing.assert_allclose(state_a[name], state_b[name], rtol=1e-12, atol=1e-12, err_msg=name)


def test_sampled_check_catches_a_wrong_gradient(rng):
    # the sampling helper must fail on a wrong gradient, or the tests above would prove nothing
    w = rng.standard_normal((30, 30))
    with pytest.raises(AssertionError, match="relative error"):
        _check_entries(lambda: float(np.sum(w ** 2)), w, 2.0 * w + 1e-3, rng, 40, "w")


# --- PyTorch twins ----------------------------------------------------------------------------------------

def _torch_lenet5(torch):
    nn = torch.nn
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(1, 20, 5)), ("relu1", nn.ReLU()), ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(20, 50, 5)), ("relu2", nn.ReLU()), ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()), ("fc1", nn.Linear(800, 500)), ("relu3", nn.ReLU()),
        ("fc2", nn.Linear(500, 10)),
    ]))


def _load_into_torch(torch, tmodel, state):
    """Load a refimpl state dict; names must match PyTorch's exactly (only num_batches_tracked is extra)."""
    tkeys = set(tmodel.state_dict())
    extra_in_torch = {k for k in tkeys - set(state) if not k.endswith("num_batches_tracked")}
    assert extra_in_torch == set() and set(state) - tkeys == set()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in state.items()}, strict=False)


def _assert_grads_match(model, tmodel):
    tgrads = {k: p.grad.numpy() for k, p in tmodel.named_parameters()}
    grads = model.gradients()
    assert set(grads) == set(tgrads)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, tgrads[name], rtol=0, atol=1e-10, err_msg=name)


def test_lenet5_matches_torch_forward_backward_and_sgd_step(torch, rng, engine):
    model = set_engine(lenet5(rng=rng, dtype=np.float64), engine)
    tmodel = _torch_lenet5(torch)
    _load_into_torch(torch, tmodel, model.state_dict())
    x = rng.standard_normal((3, 1, 28, 28))
    labels = rng.integers(0, 10, 3)

    logits = model.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, labels)
    model.backward(dlogits)
    tlogits = tmodel(torch.tensor(x))
    tloss = torch.nn.functional.cross_entropy(tlogits, torch.tensor(labels))
    tloss.backward()
    np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(loss, tloss.item(), rtol=0, atol=1e-10)
    _assert_grads_match(model, tmodel)

    lr, momentum, weight_decay = 0.05, 0.9, 5e-4
    torch.optim.SGD(tmodel.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay).step()
    # first step of SGD with momentum: the buffer starts as the (decayed) gradient itself
    grads = model.gradients()
    for name, p in model.parameters().items():
        p -= lr * (grads[name] + weight_decay * p)
    tparams = dict(tmodel.named_parameters())
    for name, p in model.parameters().items():
        np.testing.assert_allclose(p, tparams[name].detach().numpy(), rtol=0, atol=1e-12, err_msg=name)


def _torch_resnet(torch, depth, width, num_classes, in_channels):
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                              nn.BatchNorm2d(cout))

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            return torch.relu(h + (x if self.shortcut is None else self.shortcut(x)))

    n = (depth - 2) // 6
    layers = [("conv1", nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)), ("bn1", nn.BatchNorm2d(width)),
              ("relu", nn.ReLU())]
    cin = width
    for stage, (cout, stride) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2)), start=1):
        blocks = []
        for b in range(n):
            blocks.append(Block(cin, cout, stride if b == 0 else 1))
            cin = cout
        layers.append((f"layer{stage}", nn.Sequential(*blocks)))
    layers += [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
               ("fc", nn.Linear(cin, num_classes))]
    return nn.Sequential(OrderedDict(layers))


@pytest.mark.parametrize("training", [True, False])
def test_resnet_small_matches_torch(torch, rng, training, engine):
    model = resnet_small(depth=14, width=4, num_classes=5, in_channels=3, rng=rng, dtype=np.float64)
    set_engine(model, engine)
    _randomise_bn(model, rng)
    tmodel = _torch_resnet(torch, 14, 4, 5, 3)
    _load_into_torch(torch, tmodel, model.state_dict())
    model.train(training)
    tmodel.train(training)
    x = rng.standard_normal((2, 3, 8, 8))
    labels = rng.integers(0, 5, 2)

    logits = model.forward(x)
    _, dlogits = softmax_cross_entropy(logits, labels)
    model.backward(dlogits)
    xt = torch.tensor(x, requires_grad=True)
    tlogits = tmodel(xt)
    torch.nn.functional.cross_entropy(tlogits, torch.tensor(labels)).backward()
    np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=0, atol=1e-10)
    _assert_grads_match(model, tmodel)
    # the running statistics moved (train) or stayed (eval) the same way in both
    tstate = tmodel.state_dict()
    for name, value in model.named_buffers():
        np.testing.assert_allclose(value, tstate[name].numpy(), rtol=0, atol=1e-10, err_msg=name)


# --- names, registry, save/load -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(MODELS))
def test_prunable_names_exist_and_are_weights(name):
    model = build_model(name)
    assert isinstance(model, Network) and model.name == name
    params = model.parameters()
    assert model.prunable, name
    for pname in model.prunable:
        assert pname in params and pname.endswith(".weight")
        assert params[pname].ndim in (2, 4)
    # every conv / linear weight is listed: the 4-D weights and the 2-D ones, nothing else
    assert set(model.prunable) == {k for k, v in params.items() if v.ndim in (2, 4)}
    assert all(p.dtype == np.float32 for p in params.values())


def test_expected_names():
    assert lenet5().prunable == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]
    assert lenet300_100().prunable == ["fc1.weight", "fc2.weight", "fc3.weight"]
    names = resnet_small(depth=20).parameters()
    assert "layer1.0.conv1.weight" in names and "layer3.2.bn2.bias" in names
    assert "layer2.0.shortcut.0.weight" in names and "layer2.1.shortcut.0.weight" not in names
    assert "layer1.0.shortcut.0.weight" not in names  # identity inside the first stage
    assert "layer2.0.shortcut.1.running_var" in dict(resnet_small(depth=20).named_buffers())
    assert len([k for k in resnet_small(depth=20).prunable if "conv" in k]) == 19  # ResNet-20: 19 convs + fc


def test_build_model_and_argument_checks():
    model = build_model("lenet5", input_size=8, rng=np.random.default_rng(1))
    assert model.input_shape == (1, 8, 8)
    with pytest.raises(ValueError, match="name must be one of"):
        build_model("alexnet")
    with pytest.raises(ValueError, match="depth must be 6n"):
        resnet_small(depth=18)
    with pytest.raises(ValueError, match="input_size must be >= 8"):
        vgg_small(input_size=4)
    with pytest.raises(ValueError, match="too small for LeNet-5"):
        lenet5(input_size=12, padding=0)  # 12 -> 8 -> 4 -> 0
    with pytest.raises(TypeError, match="rng"):
        lenet5(rng=0)
    with pytest.raises(ValueError, match="engine must be"):
        set_engine(lenet5(), "cuda")
    model = set_engine(resnet_small(depth=8), "numpy")
    assert model["conv1"].engine == "numpy" and model["layer2"][0].shortcut[0].engine == "numpy"
    assert resnet_small(depth=8).input_shape == (3, 32, 32)


def test_seeded_builders_are_reproducible():
    a = vgg_small(rng=np.random.default_rng(3)).state_dict()
    b = vgg_small(rng=np.random.default_rng(3)).state_dict()
    c = vgg_small(rng=np.random.default_rng(4)).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["conv1.weight"], c["conv1.weight"])


def test_vgg_small_dropout_option(rng):
    model = vgg_small(input_size=8, width=2, hidden=4, dropout=0.5)
    assert dict(model.children())["drop"].p == 0.5
    assert list(dict(model.children()))[-2:] == ["drop", "fc2"]
    assert "drop" not in dict(vgg_small(input_size=8, width=2, hidden=4).children())
    with pytest.raises(ValueError, match="dropout must lie in"):
        vgg_small(dropout=-0.1)


def test_save_load_round_trip(tmp_path, rng):
    model = resnet_small(depth=8, width=4, rng=np.random.default_rng(1), dtype=np.float64)
    _randomise_bn(model, rng)
    path = tmp_path / "resnet.npz"
    model.save(path)
    other = resnet_small(depth=8, width=4, rng=np.random.default_rng(2), dtype=np.float64)
    x = rng.standard_normal((2, 3, 8, 8))
    model.eval()
    other.eval()
    assert not np.allclose(other.forward(x), model.forward(x))
    other.load(path)
    state, loaded = model.state_dict(), other.state_dict()
    assert set(state) == set(loaded)
    for k in state:
        np.testing.assert_array_equal(loaded[k], state[k])
    np.testing.assert_array_equal(other.forward(x), model.forward(x))


# --- per-layer accounting -------------------------------------------------------------------------------

def test_layer_table_lenet5_by_hand():
    model = lenet5()
    rows = {row["name"]: row for row in layer_table(model)}
    # conv1: 20 filters of 1x5x5 + 20 biases; output 20x24x24, each output reads 25 weights
    assert rows["conv1"]["weight_shape"] == (20, 1, 5, 5) and rows["conv1"]["params"] == 20 * 25 + 20
    assert rows["conv1"]["output_shape"] == (20, 24, 24) and rows["conv1"]["macs"] == 20 * 25 * 24 * 24
    assert rows["pool1"]["output_shape"] == (20, 12, 12) and rows["pool1"]["macs"] == 0
    assert rows["conv2"]["params"] == 50 * 20 * 25 + 50 and rows["conv2"]["output_shape"] == (50, 8, 8)
    assert rows["conv2"]["macs"] == 50 * 20 * 25 * 8 * 8
    assert rows["flatten"]["output_shape"] == (800,)
    assert rows["fc1"]["weight_shape"] == (500, 800) and rows["fc1"]["macs"] == 400_000
    assert rows["fc2"]["params"] == 5010 and rows["fc2"]["output_shape"] == (10,)
    weights = sum(int(np.prod(r["weight_shape"])) for r in rows.values() if r["weight_shape"])
    total = sum(r["params"] for r in rows.values())
    assert weights == 430_500 and total == 431_080 == model.num_parameters()
    assert sum(r["macs"] for r in rows.values()) == 288_000 + 1_600_000 + 400_000 + 5_000
    assert count_parameters(model) == {"conv1": 520, "conv2": 25_050, "fc1": 400_500, "fc2": 5_010}


def test_layer_table_on_8x8_and_lenet300_100():
    rows = {row["name"]: row for row in layer_table(lenet5(input_size=8))}
    assert rows["conv1"]["output_shape"] == (20, 8, 8) and rows["conv2"]["output_shape"] == (50, 4, 4)
    assert rows["fc1"]["weight_shape"] == (500, 200)
    assert lenet300_100().num_parameters() == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10


def test_layer_table_leaves_the_model_as_it_was(rng):
    model = resnet_small(depth=8, width=4, dtype=np.float64)
    model.train()
    model["layer2"].eval()  # a mixed state must come back as it was
    before = model.state_dict()
    rows = layer_table(model, input_shape=(3, 8, 8))
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert model.training and not model["layer2"].training and model["layer3"].training
    assert "forward" not in vars(model["conv1"])
    by_name = {r["name"]: r for r in rows}
    assert by_name["layer2.0.shortcut.0"]["output_shape"] == (8, 4, 4)
    assert by_name["layer2.0.shortcut.0"]["macs"] == 8 * 4 * 4 * 4
    assert by_name["avgpool"]["output_shape"] == (16,)
    assert sum(r["params"] for r in rows) == model.num_parameters()
