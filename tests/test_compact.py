"""Tests of refimpl.compact: lossless unused-path removal and purification."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.compact import compact, purify
from refimpl.models import Network, lenet5, lenet300_100, resnet_small, set_engine, vgg_small
from refimpl.nn.activation import ReLU
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.conv import Conv2d
from refimpl.nn.flatten import Flatten
from refimpl.nn.linear import Linear
from refimpl.nn.loss import softmax_cross_entropy
from refimpl.nn.module import Module, Sequential
from refimpl.nn.pool import GlobalAvgPool2d
from refimpl.nn.residual import Residual
from refimpl.prune.masking import apply_masks

F64 = np.float64
BUILDERS = {
    "lenet5_8x8": lambda: lenet5(input_size=8, dtype=F64),  # padding 2: no folding into conv2
    "lenet5_28x28": lambda: lenet5(input_size=28, dtype=F64),  # valid convolutions: folding allowed
    "lenet300_100": lambda: lenet300_100(input_size=12, dtype=F64),
    "vgg_small_bn": lambda: vgg_small(input_size=8, width=4, hidden=16, dtype=F64),
    "resnet8_w4": lambda: resnet_small(depth=8, width=4, input_size=8, dtype=F64),
}


@functools.lru_cache(maxsize=None)
def _base(key: str):
    """Build each model once per session; tests work on deep copies."""
    return BUILDERS[key]()


def _randomise_bn(model, rng):
    """Random running statistics and affine parameters, so dead channels give constants of both signs."""
    for _, module in model.named_modules():
        if isinstance(module, BatchNorm2d):
            c = module.num_features
            module.buffers["running_mean"][:] = rng.normal(0, 0.5, c)
            module.buffers["running_var"][:] = rng.uniform(0.5, 2.0, c)
            module.params["weight"][:] = rng.uniform(0.5, 1.5, c)
            module.params["bias"][:] = rng.normal(0, 0.5, c)


def _fresh(key: str, seed: int):
    model = copy.deepcopy(_base(key))
    rng = np.random.default_rng(seed)
    _randomise_bn(model, rng)
    return set_engine(model, "numpy").eval(), rng


MASK_KINDS = ("none", "filters", "channels", "shapes", "unstructured", "all_dead")


def _mask(shape, kind: str, keep: float, rng) -> np.ndarray:
    f, c = shape[:2]
    mask = np.ones(shape, dtype=bool)
    gemm = mask.reshape(f, -1)
    if kind == "filters":
        gemm[rng.random(f) >= keep] = False
    elif kind == "channels":
        mask[:, rng.random(c) >= keep] = False
    elif kind == "shapes":
        gemm[:, rng.random(gemm.shape[1]) >= keep] = False
    elif kind == "unstructured":
        mask &= rng.random(shape) < keep
    elif kind == "all_dead":
        mask[...] = False
    return mask


def _resnet_stream_masks(model, masks, rng):
    """Kill the same channels in every producer of a residual stream (identity shortcuts couple them)."""
    params = model.parameters()
    streams = [["conv1.weight", "layer1.0.conv2.weight"],
               ["layer2.0.conv2.weight", "layer2.0.shortcut.0.weight"],
               ["layer3.0.conv2.weight", "layer3.0.shortcut.0.weight"]]
    for names in streams:
        width = params[names[0]].shape[0]
        dead = rng.random(width) < 0.5
        for name in names:
            masks.setdefault(name, np.ones(params[name].shape, dtype=bool))[dead] = False


@st.composite
def mask_plans(draw, key: str):
    names = _base(key).prunable
    plan = []
    for i, _ in enumerate(names):
        kinds = MASK_KINDS if i < len(names) - 1 else MASK_KINDS[:-1]  # the classifier is never all dead
        plan.append((draw(st.sampled_from(kinds)), draw(st.sampled_from([0.0, 0.2, 0.5, 0.8, 1.0]))))
    return plan, draw(st.booleans()), draw(st.integers(0, 2**31 - 1))


def _make_masks(model, plan, coupled: bool, rng):
    params = model.parameters()
    masks = {name: _mask(params[name].shape, kind, keep, rng)
             for name, (kind, keep) in zip(model.prunable, plan, strict=True) if kind != "none"}
    if coupled and "layer1.0.conv2.weight" in params:
        _resnet_stream_masks(model, masks, rng)
    return masks


def _first_pass_removable(model, producer: str, consumer: str, foldable: bool) -> np.ndarray:
    """Independent statement of the rule for a plain chain producer -> [BN] -> ReLU [-> pool] -> consumer.

    A channel goes when the consumer never reads it, or when its filter is dead and the constant it
    carries is 0 or can be folded into the consumer. The fixed point can only remove more.
    """
    p, c = model.get_module(producer), model.get_module(consumer)
    w_c = c.params["weight"]
    n = p.params["weight"].shape[0]
    unread = ~(w_c.reshape(w_c.shape[0], n, -1) != 0).any(axis=(0, 2))
    dead = ~(p.params["weight"].reshape(n, -1) != 0).any(axis=1)
    const = p.params["bias"].copy() if "bias" in p.params else np.zeros(n)
    bn_name = producer.replace("conv", "bn")
    if bn_name != producer and any(name == bn_name for name, _ in model.named_modules()):
        bn = model.get_module(bn_name)
        const = (bn.params["weight"] * (const - bn.buffers["running_mean"])
                 / np.sqrt(bn.buffers["running_var"] + bn.eps) + bn.params["bias"])
    const = np.maximum(const, 0)
    return unread | (dead & ((const == 0) | foldable))


CHAINS = {
    "lenet5_8x8": [("conv1", "conv2", False), ("conv2", "fc1", True), ("fc1", "fc2", True)],
    "lenet5_28x28": [("conv1", "conv2", True), ("conv2", "fc1", True), ("fc1", "fc2", True)],
    "lenet300_100": [("fc1", "fc2", True), ("fc2", "fc3", True)],
    "vgg_small_bn": [("conv1", "conv2", False), ("conv5", "conv6", False), ("conv6", "fc1", True),
                     ("fc1", "fc2", True)],
    "resnet8_w4": [("layer2.0.conv1", "layer2.0.conv2", False)],  # block-internal: free of the stream
}


def _check_compaction(key: str, plan, coupled: bool, seed: int) -> None:
    model, rng = _fresh(key, seed)
    masks = _make_masks(model, plan, coupled, rng)
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    small, report = compact(model, masks)

    # 1. Same function (evaluation mode), in float64.
    x = rng.normal(size=(3, *model.input_shape))
    expected = masked.forward(x)
    np.testing.assert_allclose(small.forward(x), expected, rtol=1e-10, atol=1e-12)

    # 2. Counts agree with the report; nothing grows; protected ends untouched.
    assert report.params_before == model.num_parameters()
    assert report.params_after == small.num_parameters() <= model.num_parameters()
    for layer in report.layers:
        params = small.get_module(layer.name).params
        assert layer.params_after == sum(p.size for p in params.values())
        assert params["weight"].shape == layer.weight_shape_after
        assert len(layer.kept_filters) == params["weight"].shape[0]
    first, last = small.prunable[0], small.prunable[-1]
    assert small.parameters()[first].shape[1] == model.parameters()[first].shape[1]
    assert small.parameters()[last].shape[0] == model.num_classes

    # 3. Weights shrank where filters/channels were dead (first-pass rule, stated independently).
    by_name = {layer.name: layer for layer in report.layers}
    for producer, consumer, foldable in CHAINS[key]:
        removable = _first_pass_removable(masked, producer, consumer, foldable)
        removed = set(by_name[producer].removed_filters.tolist())
        if removable.all():
            assert len(by_name[producer].kept_filters) == 1
        else:
            assert set(np.flatnonzero(removable).tolist()) <= removed
        assert set(by_name[consumer].removed_channels.tolist()) == removed

    # 4. The masks carry over and the compact weights respect them.
    moved = report.transfer(masks)
    for name, mask in moved.items():
        assert mask.shape == small.parameters()[name].shape
        assert not np.any(small.parameters()[name][~mask])

    # 5. It trains: one forward/backward in training mode, gradients shaped like the parameters.
    small.train()
    loss, dlogits = softmax_cross_entropy(small.forward(x), rng.integers(0, model.num_classes, 3))
    small.backward(dlogits)
    assert np.isfinite(loss)
    for name, grad in small.gradients().items():
        assert grad.shape == small.parameters()[name].shape and np.all(np.isfinite(grad))


@pytest.mark.parametrize("key", list(BUILDERS))
def test_compact_equals_masked_model_on_random_masks(key):
    @settings(max_examples=25 if key != "lenet5_28x28" else 10)
    @given(mask_plans(key))
    def run(drawn):
        _check_compaction(key, *drawn)

    run()


@pytest.mark.parametrize("key", ["lenet5_8x8", "vgg_small_bn", "resnet8_w4"])
def test_compact_with_all_hidden_layers_dead_keeps_one_channel(key):
    model, rng = _fresh(key, 1)
    masks = {name: np.zeros(p.shape, bool) for name, p in model.parameters().items()
             if name in model.prunable[:-1]}
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    small, report = compact(model, masks)
    x = rng.normal(size=(2, *model.input_shape))
    np.testing.assert_allclose(small.forward(x), masked.forward(x), rtol=1e-10, atol=1e-12)
    assert report.params_after < report.params_before / 4


@pytest.mark.parametrize("key", list(BUILDERS))
def test_compact_model_saves_loads_and_is_trainable(key, tmp_path, engine):
    model, rng = _fresh(key, 7)
    masks = _make_masks(model, [("filters", 0.5)] * (len(model.prunable) - 1) + [("none", 1.0)], True, rng)
    small, _ = compact(model, masks)
    set_engine(small, engine)
    x = rng.normal(size=(2, *model.input_shape))
    out = small.forward(x)
    small.save(tmp_path / "small.npz")
    other = copy.deepcopy(small)
    for p in other.parameters().values():
        p[...] = 0
    other.load(tmp_path / "small.npz")
    np.testing.assert_array_equal(other.forward(x), out)
    small.train()
    _, dlogits = softmax_cross_entropy(small.forward(x), np.array([0, 1]))
    small.backward(dlogits)
    assert {k: g.shape for k, g in small.gradients().items()} == {
        k: p.shape for k, p in small.parameters().items()}


@pytest.mark.parametrize("key", ["lenet5_28x28", "vgg_small_bn", "resnet8_w4"])
def test_compact_in_float32_keeps_dtype_and_matches(key):
    model, rng = _fresh(key, 11)
    model.astype(np.float32)
    masks = _make_masks(model, [("filters", 0.5)] * (len(model.prunable) - 1) + [("none", 1.0)], True, rng)
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    small, report = compact(model, masks)
    assert report.params_after < report.params_before
    assert all(p.dtype == np.float32 for p in small.parameters().values())
    x = rng.normal(size=(3, *model.input_shape)).astype(np.float32)
    out = small.forward(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, masked.forward(x), rtol=1e-5, atol=1e-6)


def test_compact_does_not_modify_its_input():
    model, _ = _fresh("lenet5_8x8", 0)
    state = model.state_dict()
    masks = {"conv2.weight": np.zeros((50, 20, 5, 5), bool)}
    compact(model, masks)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[name])


# --- bias folding: exact where allowed, refused where not -------------------------------------------------

def _dead_conv1_filter(key: str, bias: float):
    model, rng = _fresh(key, 3)
    model.get_module("conv1").params["bias"][3] = bias
    masks = {"conv1.weight": np.ones((20, 1, 5, 5), bool)}
    masks["conv1.weight"][3] = False
    return model, masks, rng


def test_fold_is_exact_into_unpadded_conv():
    model, masks, rng = _dead_conv1_filter("lenet5_28x28", 0.5)  # relu(0.5) = 0.5 reaches conv2
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    small, report = compact(model, masks)
    assert small.get_module("conv1").out_channels == 19
    assert small.get_module("conv2").in_channels == 19
    conv2 = next(layer for layer in report.layers if layer.name == "conv2")
    assert conv2.folded_channels.tolist() == [3]
    x = rng.normal(size=(2, 1, 28, 28))
    np.testing.assert_allclose(small.forward(x), masked.forward(x), rtol=1e-10, atol=1e-12)
    # Without folding the constant channel has to stay.
    kept, _ = compact(model, masks, fold_bias=False)
    assert kept.get_module("conv1").out_channels == 20


def test_fold_is_refused_into_padded_conv():
    model, masks, rng = _dead_conv1_filter("lenet5_8x8", 0.5)  # conv2 has padding 2
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    small, report = compact(model, masks)
    assert small.get_module("conv1").out_channels == 20  # the border would differ: keep the channel
    x = rng.normal(size=(2, 1, 8, 8))
    np.testing.assert_allclose(small.forward(x), masked.forward(x), rtol=1e-10, atol=1e-12)
    # A zero constant (relu of a negative bias) needs no folding and goes even through padding.
    model, masks, _ = _dead_conv1_filter("lenet5_8x8", -0.5)
    small, _ = compact(model, masks)
    assert small.get_module("conv1").out_channels == 19


def _chain(second_conv_bias: bool, with_bn: bool) -> Network:
    rng = np.random.default_rng(0)
    layers = [("conv_a", Conv2d(2, 3, 3, 1, 0, rng=rng, dtype=F64)), ("relu_a", ReLU()),
              ("conv_b", Conv2d(3, 4, 1, 1, 0, bias=second_conv_bias, rng=rng, dtype=F64))]
    if with_bn:
        layers.append(("bn_b", BatchNorm2d(4, dtype=F64)))
    layers += [("relu_b", ReLU()), ("flatten", Flatten()), ("fc", Linear(4 * 3 * 3, 5, rng=rng, dtype=F64))]
    return Network(layers, name="chain", input_shape=(2, 5, 5), num_classes=5).eval()


@pytest.mark.parametrize("with_bn", [True, False])
def test_fold_into_reader_without_bias(with_bn):
    model = _chain(second_conv_bias=False, with_bn=with_bn)
    rng = np.random.default_rng(1)
    _randomise_bn(model, rng)
    model.get_module("conv_a").params["bias"][1] = 0.7
    masks = {"conv_a.weight": np.ones((3, 2, 3, 3), bool)}
    masks["conv_a.weight"][1] = False
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    small, report = compact(model, masks)
    assert small.get_module("conv_a").out_channels == 2
    conv_b = next(layer for layer in report.layers if layer.name == "conv_b")
    # With a BatchNorm after it the constant goes into the running mean (names unchanged); without, a
    # bias parameter is created.
    assert conv_b.bias_added is (not with_bn)
    assert ("conv_b.bias" in small.parameters()) is (not with_bn)
    x = rng.normal(size=(3, 2, 5, 5))
    np.testing.assert_allclose(small.forward(x), masked.forward(x), rtol=1e-10, atol=1e-12)


# --- residual coupling ---------------------------------------------------------------------------------

def _resnet_with_dead_stream_channel(beta: float, in_block_too: bool):
    model, rng = _fresh("resnet8_w4", 5)
    masks = {"conv1.weight": np.ones((4, 3, 3, 3), bool),
             "layer1.0.conv2.weight": np.ones((4, 4, 3, 3), bool)}
    masks["conv1.weight"][2] = False
    if in_block_too:
        masks["layer1.0.conv2.weight"][2] = False
    for bn in ("bn1", "layer1.0.bn2"):
        model.get_module(bn).params["bias"][2] = beta
        model.get_module(bn).buffers["running_mean"][2] = 0.0
    return model, masks, rng


@pytest.mark.parametrize(("beta", "in_block_too", "removed"), [
    (-1.0, True, True),    # dead in every added tensor, constant relu(<0) = 0: goes
    (-1.0, False, False),  # live in the block's conv2: the identity carries it on, it stays
    (+1.0, True, False),   # constant but nonzero, read by padded 3x3 convs: stays
])
def test_identity_shortcut_couples_channels(beta, in_block_too, removed):
    model, masks, rng = _resnet_with_dead_stream_channel(beta, in_block_too)
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    small, _ = compact(model, masks)
    width = 3 if removed else 4
    for name in ("conv1", "layer1.0.conv2"):
        assert small.get_module(name).out_channels == width
    for name in ("layer1.0.conv1", "layer2.0.conv1", "layer2.0.shortcut.0"):
        assert small.get_module(name).in_channels == width
    assert small.get_module("layer1.0").in_channels == width
    x = rng.normal(size=(2, 3, 8, 8))
    np.testing.assert_allclose(small.forward(x), masked.forward(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("body_dead", [True, False])
def test_generic_residual_with_unpadded_readers_folds_nonzero_constants(body_dead):
    rng = np.random.default_rng(2)
    body = Sequential([Conv2d(4, 4, 1, 1, 0, rng=rng, dtype=F64), ReLU()])
    model = Network([("stem", Conv2d(3, 4, 1, 1, 0, rng=rng, dtype=F64)), ("res", Residual(body)),
                     ("pool", GlobalAvgPool2d()), ("fc", Linear(4, 3, rng=rng, dtype=F64))],
                    name="tiny", input_shape=(3, 4, 4), num_classes=3)
    model.get_module("stem").params["bias"][1] = 0.8
    model.get_module("res.body.0").params["bias"][1] = 0.3
    masks = {"stem.weight": np.ones((4, 3, 1, 1), bool), "res.body.0.weight": np.ones((4, 4, 1, 1), bool)}
    masks["stem.weight"][1] = False
    masks["res.body.0.weight"][1] = not body_dead
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    small, report = compact(model, masks)
    # Dead in both added tensors: the channel goes (its nonzero constant folds into the 1x1 conv and fc).
    # Live in the body: the sum is live, so the stem's dead filter must stay.
    width = 3 if body_dead else 4
    assert small.get_module("stem").out_channels == width and small.get_module("fc").in_features == width
    x = rng.normal(size=(2, 3, 4, 4))
    np.testing.assert_allclose(small.forward(x), masked.forward(x), rtol=1e-10, atol=1e-12)


# --- flatten mapping, report, errors -------------------------------------------------------------------

def test_flatten_maps_one_channel_to_hw_columns():
    model = lenet5(input_size=28, dtype=F64)
    masks = {"fc1.weight": np.ones((500, 800), bool)}
    masks["fc1.weight"][:, 16 * 7:16 * 8] = False  # the 4x4 = 16 columns of conv2's channel 7
    small, report = compact(model, masks)
    assert small.get_module("conv2").out_channels == 49
    assert small.get_module("fc1").in_features == 49 * 16
    fc1 = next(layer for layer in report.layers if layer.name == "fc1")
    assert fc1.removed_channels.tolist() == [7]
    moved = report.transfer({"fc1.weight": model.get_module("fc1").params["weight"]})
    np.testing.assert_array_equal(moved["fc1.weight"], small.get_module("fc1").params["weight"])


def test_report_to_dict_and_str():
    model = lenet300_100(input_size=8, dtype=F64)
    masks = {"fc2.weight": np.ones((100, 300), bool)}
    masks["fc2.weight"][:, 100:] = False
    _, report = compact(model, masks)
    d = report.to_dict()
    assert d["params_after"] == report.params_after
    assert d["layers"][0]["removed_filters"] == list(range(100, 300))
    assert "fc1" in str(report) and f"{report.params_after}" in str(report)
    assert report.ratio == pytest.approx(report.params_before / report.params_after)


def test_compact_errors():
    model = lenet300_100(input_size=8, dtype=F64)
    with pytest.raises(TypeError, match="model"):
        compact("not a model")
    with pytest.raises(TypeError, match="fold_bias"):
        compact(model, fold_bias=1)
    bad = copy.deepcopy(model)
    bad.get_module("fc1").params["weight"][0, 0] = np.nan
    with pytest.raises(ValueError, match="fc1.weight"):
        compact(bad)
    odd = Network([("x", Sequential([])), ("s", _Unknown())], name="odd", input_shape=(1, 2, 2),
                  num_classes=1)
    with pytest.raises(TypeError, match="_Unknown"):
        compact(odd)
    _, report = compact(model)
    with pytest.raises(KeyError, match="nope"):
        report.transfer({"nope": np.zeros(3)})
    with pytest.raises(ValueError, match="shape"):
        report.transfer({"fc1.weight": np.zeros(3)})


class _Unknown(Module):  # a layer compaction does not know
    def forward(self, x):
        return x


# --- purification --------------------------------------------------------------------------------------

def _purify_case():
    """Five filters with hand-picked emptiness eta and importance sigma (K = 10 weights each)."""
    rng = np.random.default_rng(0)
    model = Network([("conv", Conv2d(2, 5, (1, 5), rng=rng, dtype=F64)), ("flatten", Flatten()),
                     ("fc", Linear(5, 2, rng=rng, dtype=F64))],
                    name="p", input_shape=(2, 1, 5), num_classes=2)
    w = model.get_module("conv").params["weight"]
    w[...] = 1.0
    mask = np.ones(w.shape, bool)
    gemm_w, gemm_m = w.reshape(5, 10), mask.reshape(5, 10)
    # f0: dense, norm sqrt(10)                  -> eta 0,   important
    gemm_m[1, 1:] = False
    gemm_w[1, 0] = 0.1      # f1: one weight 0.1   -> eta 0.9, sigma small  => removed
    gemm_m[2, 1:] = False
    gemm_w[2, 0] = 3.0      # f2: one weight 3.0   -> eta 0.9, important    => kept
    gemm_w[3, :5] = 0.01
    gemm_w[3, 5:] = 0.0     # f3: five tiny weights -> eta 0.5, sigma small  => kept
    gemm_m[4] = False       # f4: already empty    -> meets both, not reported
    norms = np.array([np.sqrt(10), 0.1, 3.0, np.sqrt(5) * 0.01, 0.0])
    return model, {"conv.weight": mask, "fc.weight": np.ones((2, 5), bool)}, norms


def test_purify_removes_exactly_the_filters_meeting_both_thresholds():
    model, masks, norms = _purify_case()
    original = {k: v.copy() for k, v in masks.items()}
    new, report = purify(model, masks, eta=0.8, sigma=0.1)
    (layer,) = report.layers  # the classifier is spared by default
    assert layer.name == "conv.weight"
    np.testing.assert_allclose(layer.emptiness, [0.0, 0.9, 0.9, 0.5, 1.0])
    np.testing.assert_allclose(layer.importance, norms / norms.mean())
    assert layer.removed.tolist() == [1] and report.removed == {"conv.weight": [1]}
    assert report.num_removed == 1
    rows = new["conv.weight"].reshape(5, 10)
    assert not rows[1].any() and not rows[4].any()
    np.testing.assert_array_equal(rows[[0, 2, 3]], original["conv.weight"].reshape(5, 10)[[0, 2, 3]])
    for k in masks:  # the input masks are untouched
        np.testing.assert_array_equal(masks[k], original[k])
    assert report.to_dict()["num_removed"] == 1


def test_purify_thresholds_are_strict_and_configurable():
    model, masks, _ = _purify_case()
    _, report = purify(model, masks, eta=0.9, sigma=0.1)  # eta_f = 0.9 is not > 0.9
    assert report.num_removed == 0
    _, report = purify(model, masks, eta=0.4, sigma=0.1)  # now f3 (eta 0.5, sigma 0.018) goes as well
    assert report.removed == {"conv.weight": [1, 3]}
    _, report = purify(model, masks, eta=0.0, sigma=10.0, layers=["fc.weight"])
    assert [layer.name for layer in report.layers] == ["fc.weight"] and report.num_removed == 0


def test_purify_errors():
    model, masks, _ = _purify_case()
    with pytest.raises(ValueError, match="eta"):
        purify(model, masks, eta=1.5)
    with pytest.raises(ValueError, match="sigma"):
        purify(model, masks, sigma=-1)
    with pytest.raises(KeyError, match="nope"):
        purify(model, masks, layers=["nope"])
    with pytest.raises(TypeError, match="boolean"):
        purify(model, {"conv.weight": masks["conv.weight"].astype(int)}, layers=["conv.weight"])
    with pytest.raises(ValueError, match="shape"):
        purify(model, {"conv.weight": np.ones((5, 2), bool), "fc.weight": masks["fc.weight"]})
