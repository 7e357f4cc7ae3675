"""Tests of the sparse inference engine ``refimpl.sparse.compile`` and its layers.

The oracle is the masked dense network in evaluation mode: every format (dense, compact, CSR, BSR, auto)
on every engine must reproduce its outputs, for unstructured, filter, shape and block masks on LeNet-5,
VGG-small and ResNet-small (depth 8), with BatchNorm statistics randomised so that folding is exercised.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from refimpl.models import layer_table, lenet5, resnet_small, vgg_small
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.conv import Conv2d, conv2d_forward_naive
from refimpl.nn.linear import linear_forward_naive
from refimpl.prune.masking import apply_masks
from refimpl.sparse import compile as sparse_compile
from refimpl.sparse.engine import InferenceModel, fold_batchnorm
from refimpl.sparse.layers import (
    FORMATS,
    Identity,
    InferenceConv2d,
    make_operator,
    sparse_conv2d_forward,
    sparse_linear_forward,
)

ALL_FORMATS = (*FORMATS, "auto")
MASK_KINDS = ("unstructured", "filter", "shape", "block")


# --------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------


def build(name: str, dtype=np.float64, seed: int = 0):
    """A small network with randomised BatchNorm parameters and running statistics."""
    rng = np.random.default_rng(seed)
    if name == "lenet5":
        net = lenet5(input_size=8, rng=rng, dtype=dtype)
    elif name == "vgg_small":
        net = vgg_small(input_size=8, width=4, hidden=16, rng=rng, dtype=dtype)
    else:
        net = resnet_small(depth=8, width=4, input_size=8, rng=rng, dtype=dtype)
    for _, m in net.named_modules():
        if isinstance(m, BatchNorm2d):
            c = m.num_features
            m.params["weight"][...] = rng.uniform(0.5, 1.5, c)
            m.params["bias"][...] = rng.normal(0, 0.3, c)
            m.buffers["running_mean"][...] = rng.normal(0, 0.3, c)
            m.buffers["running_var"][...] = rng.uniform(0.5, 2.0, c)
    return net


def random_masks(net, kind: str, rng: np.random.Generator, sparsity: float = 0.6) -> dict[str, np.ndarray]:
    """Random keep masks of one structure for every prunable weight (GEMM-view structures)."""
    masks = {}
    for name in net.prunable:
        w = net.parameters()[name]
        m, k = w.shape[0], int(np.prod(w.shape[1:]))
        if kind == "unstructured":
            keep = rng.random((m, k)) >= sparsity
        elif kind == "filter":
            keep = np.repeat((rng.random(m) >= sparsity)[:, None], k, axis=1)
        elif kind == "shape":
            keep = np.repeat((rng.random(k) >= sparsity)[None, :], m, axis=0)
        else:  # 2x2 tiles of the GEMM view (edge tiles cropped)
            tiles = rng.random((-(-m // 2), -(-k // 2))) >= sparsity
            keep = np.kron(tiles, np.ones((2, 2), dtype=bool))[:m, :k]
        masks[name] = keep.reshape(w.shape)
    return masks


def masked_reference(net, masks):
    ref = copy.deepcopy(net)
    apply_masks(ref, masks)
    return ref.eval()


# --------------------------------------------------------------------------------------------------------
# the compiled model equals the masked model
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model_name", ["lenet5", "vgg_small", "resnet_small"])
@pytest.mark.parametrize("kind", MASK_KINDS)
def test_every_format_equals_masked_model_float64(model_name, kind, engine, rng):
    net = build(model_name)
    masks = random_masks(net, kind, rng)
    x = rng.standard_normal((3, *net.input_shape))
    expected = masked_reference(net, masks).forward(x)
    for fmt in ALL_FORMATS:
        fast = sparse_compile(net, fmt, masks=masks, engine=engine, block_shape=(2, 3))
        np.testing.assert_allclose(fast(x), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max(),
                                   err_msg=f"format {fmt}")


@pytest.mark.parametrize("model_name", ["lenet5", "resnet_small"])
def test_scipy_engine_equals_masked_model(model_name, rng):
    net = build(model_name)
    masks = random_masks(net, "unstructured", rng)
    x = rng.standard_normal((2, *net.input_shape))
    expected = masked_reference(net, masks).forward(x)
    for fmt in ("csr", "bsr"):
        fast = sparse_compile(net, fmt, masks=masks, engine="scipy")
        np.testing.assert_allclose(fast(x), expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("model_name", ["lenet5", "vgg_small", "resnet_small"])
def test_float32_within_1e5(model_name, rng):
    net = build(model_name, dtype=np.float32)
    masks = random_masks(net, "filter", rng)
    x = rng.standard_normal((4, *net.input_shape)).astype(np.float32)
    # The oracle in float64 (same weights): float32 rounding of every format must stay within 1e-5.
    expected = masked_reference(copy.deepcopy(net).astype(np.float64), masks).forward(x.astype(np.float64))
    for fmt in ALL_FORMATS:
        out = sparse_compile(net, fmt, masks=masks)(x)
        assert out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_masks_none_uses_the_weights_zeros(rng):
    net = build("lenet5")
    masks = random_masks(net, "unstructured", rng)
    apply_masks(net, masks)
    x = rng.standard_normal((2, *net.input_shape))
    a = sparse_compile(net, "csr")(x)
    b = sparse_compile(build("lenet5"), "csr", masks=masks)(x)
    np.testing.assert_array_equal(a, b)


def test_compile_leaves_the_model_unchanged(rng):
    net = build("resnet_small")
    net.train()
    before = net.state_dict()
    sparse_compile(net, "auto", masks=random_masks(net, "filter", rng))
    after = net.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
    assert net.training
    assert isinstance(net.get_module("layer1.0").bn1, BatchNorm2d)


# --------------------------------------------------------------------------------------------------------
# structure: what each format stores and what the compact conv reads
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_operator_toarray_is_the_gemm_view(fmt, rng):
    w = rng.standard_normal((7, 10)) * (rng.random((7, 10)) > 0.5)
    w[2] = 0  # a dead row
    w[:, 4] = 0  # a dead column
    op = make_operator(w, fmt, block_shape=(2, 4), engine="numpy")
    np.testing.assert_array_equal(op.toarray(), w)
    x = rng.standard_normal((10, 5))
    rows = np.arange(10) if op.input_rows is None else op.input_rows
    y = op.matmul(x[rows])
    out_rows = np.arange(7) if op.output_rows is None else op.output_rows
    np.testing.assert_allclose(y, (w @ x)[out_rows], rtol=1e-12)


def test_compact_operator_keeps_only_live_rows_and_columns(rng):
    w = rng.standard_normal((6, 9))
    w[[1, 4]] = 0
    w[:, [0, 5, 8]] = 0
    op = make_operator(w, "compact")
    np.testing.assert_array_equal(op.output_rows, [0, 2, 3, 5])
    np.testing.assert_array_equal(op.input_rows, [1, 2, 3, 4, 6, 7])
    assert op.w.shape == (4, 6) and op.nnz == 24
    assert op.cost(10)["macs"] == 4 * 6 * 10


def test_shape_pruned_conv_builds_only_kept_im2col_rows(rng, engine):
    # Shape pruning: whole GEMM columns (c, kh, kw) gone in every filter.
    w = rng.standard_normal((5, 3, 3, 3))
    dead_cols = rng.random(27) < 0.5
    w.reshape(5, 27)[:, dead_cols] = 0
    b = rng.standard_normal(5)
    x = rng.standard_normal((2, 3, 6, 7))
    op = make_operator(w.reshape(5, 27), "compact")
    np.testing.assert_array_equal(op.input_rows, np.flatnonzero(~dead_cols))
    out = sparse_conv2d_forward(x, op, b, (3, 3), stride=2, padding=1, engine=engine)
    np.testing.assert_allclose(out, conv2d_forward_naive(x, w, b, stride=2, padding=1), rtol=1e-12)


@pytest.mark.parametrize("fmt", FORMATS)
def test_conv_and_linear_forward_match_the_naive_loops(fmt, rng, engine):
    w = rng.standard_normal((4, 2, 3, 2)) * (rng.random((4, 2, 3, 2)) > 0.4)
    w[1] = 0  # a dead filter: its output is the bias alone
    b = rng.standard_normal(4)
    x = rng.standard_normal((3, 2, 5, 6))
    op = make_operator(w.reshape(4, -1), fmt, block_shape=(3, 2), engine=engine)
    out = sparse_conv2d_forward(x, op, b, (3, 2), stride=1, padding=1, engine=engine)
    np.testing.assert_allclose(out, conv2d_forward_naive(x, w, b, stride=1, padding=1), rtol=1e-12)
    np.testing.assert_allclose(out[:, 1], np.broadcast_to(b[1], out[:, 1].shape))

    wl = rng.standard_normal((6, 8)) * (rng.random((6, 8)) > 0.5)
    wl[:, 3] = 0
    xl = rng.standard_normal((4, 8))
    opl = make_operator(wl, fmt, block_shape=(4, 4), engine=engine)
    np.testing.assert_allclose(sparse_linear_forward(xl, opl, b[:1].repeat(6)),
                               linear_forward_naive(xl, wl, b[:1].repeat(6)), rtol=1e-12)


def test_layers_are_forward_only(rng):
    layer = InferenceConv2d(make_operator(np.ones((2, 4)), "dense"), None, (2, 2))
    layer.forward(rng.standard_normal((1, 1, 3, 3)))
    with pytest.raises(NotImplementedError, match="forward-only"):
        layer.backward(np.ones((1, 2, 2, 2)))


# --------------------------------------------------------------------------------------------------------
# BatchNorm folding
# --------------------------------------------------------------------------------------------------------


def test_fold_batchnorm_is_exact_and_replaces_every_bn(rng):
    net = build("resnet_small").eval()
    x = rng.standard_normal((2, *net.input_shape))
    expected = net.forward(x)
    folded_net = copy.deepcopy(net)
    names = fold_batchnorm(folded_net)
    # conv1/bn1 at the top, bn1 and bn2 in each of the three blocks, two projection shortcuts
    assert len(names) == 1 + 3 * 2 + 2
    assert "layer2.0.shortcut.1" in names
    assert not any(isinstance(m, BatchNorm2d) for _, m in folded_net.named_modules())
    assert isinstance(folded_net.get_module("layer1.0").bn1, Identity)  # the attribute forward reads
    np.testing.assert_allclose(folded_net.forward(x), expected, rtol=1e-12)


def test_fold_keeps_the_sparsity_pattern(rng):
    net = build("vgg_small")
    masks = random_masks(net, "unstructured", rng)
    fast = sparse_compile(net, "csr", masks=masks)
    for name, plan in fast.plans.items():
        np.testing.assert_array_equal(plan.w2d != 0, plan.dense_w2d != 0, err_msg=name)
    no_fold = sparse_compile(net, "csr", masks=masks, fold_bn=False)
    assert no_fold.folded_batchnorms == [] and len(fast.folded_batchnorms) == 6
    x = rng.standard_normal((2, *net.input_shape))
    np.testing.assert_allclose(fast(x), no_fold(x), rtol=1e-10)


# --------------------------------------------------------------------------------------------------------
# auto, the report and the costs
# --------------------------------------------------------------------------------------------------------


def test_auto_report_lists_a_format_per_layer(rng):
    net = build("vgg_small")
    fast = sparse_compile(net, "auto", masks=random_masks(net, "filter", rng))
    rows = fast.report(batch=2)
    assert [r["name"] for r in rows] == [p.removesuffix(".weight") for p in net.prunable]
    for r in rows:
        assert r["format"] in ("compact", "csr", "bsr")
        assert r["reason"].startswith("rule:")
    assert set(fast.formats) == {r["name"] for r in rows}
    text = fast.summary(batch=2)
    assert "ideal speedup" in text and "conv1" in text


def test_auto_rule_prefers_compact_for_filter_pruning_and_csr_for_very_sparse(rng):
    net = build("lenet5")
    filt = sparse_compile(net, "auto", masks=random_masks(net, "filter", rng, sparsity=0.5))
    assert set(filt.formats.values()) == {"compact"}
    very = sparse_compile(net, "auto", masks=random_masks(net, "unstructured", rng, sparsity=0.95))
    assert very.formats["fc1"] == "csr"


def test_auto_measure_times_every_candidate(rng):
    net = build("lenet5")
    masks = random_masks(net, "block", rng)
    fast = sparse_compile(net, "auto", masks=masks, auto="measure", measure_batch=2)
    x = rng.standard_normal((2, *net.input_shape))
    np.testing.assert_allclose(fast(x), masked_reference(net, masks).forward(x), rtol=1e-10)
    for r in fast.report():
        assert r["reason"].startswith("measured")
        assert all(f"{fmt} " in r["reason"] for fmt in ("compact", "csr", "bsr"))


def test_report_costs(rng):
    net = build("lenet5")
    masks = random_masks(net, "filter", rng, sparsity=0.5)
    batch = 3
    table = {r["name"]: r for r in layer_table(net)}
    for fmt in FORMATS:
        rows = sparse_compile(net, fmt, masks=masks).report(batch=batch)
        for r in rows:
            dense_macs = table[r["name"]]["macs"] * batch  # layer_table counts one sample
            assert r["costs"]["dense"]["macs"] == dense_macs
            assert r["costs"][fmt]["macs"] == r["macs"]
            assert r["ideal_speedup"] == pytest.approx(dense_macs / r["macs"])
            m_live, k_live = r["stored_shape"]
            assert r["costs"]["compact"]["macs"] == m_live * k_live * r["n_cols"]
            assert r["costs"]["csr"]["macs"] == r["nnz"] * r["n_cols"]
            if fmt == "dense":
                assert r["ideal_speedup"] == 1.0


def test_compact_format_shrinks_filter_pruned_layers(rng):
    net = build("vgg_small")
    masks = random_masks(net, "filter", rng, sparsity=0.5)
    fast = sparse_compile(net, "compact", masks=masks)
    for r in fast.report():
        kept_filters = int(masks[r["name"] + ".weight"].reshape(r["gemm_shape"]).any(axis=1).sum())
        assert r["stored_shape"][0] <= max(kept_filters, 1)
    total_dense = sum(r["costs"]["dense"]["macs"] for r in fast.report())
    total = sum(r["macs"] for r in fast.report())
    assert total < 0.5 * total_dense  # filters and the channels they fed are both gone


# --------------------------------------------------------------------------------------------------------
# argument checking
# --------------------------------------------------------------------------------------------------------


def test_bad_arguments():
    net = build("lenet5")
    with pytest.raises(ValueError, match="format must be one of"):
        sparse_compile(net, "coo")
    with pytest.raises(ValueError, match="engine must be one of"):
        sparse_compile(net, "csr", engine="cuda")
    with pytest.raises(ValueError, match="auto must be one of"):
        sparse_compile(net, "auto", auto="guess")
    with pytest.raises(ValueError, match="block_shape"):
        sparse_compile(net, "bsr", block_shape=(4,))
    with pytest.raises(ValueError, match="block_shape"):
        sparse_compile(net, "bsr", block_shape=(0, 4))
    with pytest.raises(ValueError, match="dtype"):
        sparse_compile(net, "csr", dtype=np.int32)
    with pytest.raises(TypeError, match="model must be a refimpl Module"):
        sparse_compile("lenet5", "csr")
    with pytest.raises(ValueError, match="format must be one of"):
        make_operator(np.ones((2, 2)), "auto")


def test_forward_checks_the_input(rng):
    fast = sparse_compile(build("lenet5"), "csr")
    assert isinstance(fast, InferenceModel)
    with pytest.raises(ValueError, match=r"x must have shape \(N, 1, 8, 8\)"):
        fast(rng.standard_normal((2, 1, 9, 8)))
    with pytest.raises(TypeError, match="x must be a real numeric array"):
        fast(np.array([["a"]]))


def test_conv_layer_rejects_wrong_channels(rng):
    op = make_operator(np.ones((2, 12)), "csr")
    with pytest.raises(ValueError, match="channels"):
        sparse_conv2d_forward(rng.standard_normal((1, 2, 4, 4)), op, None, (2, 2))


def test_inference_conv_replaces_every_conv(rng):
    fast = sparse_compile(build("resnet_small"), "bsr")
    assert not any(isinstance(m, Conv2d) for _, m in fast.network.named_modules())
    assert set(fast.formats.values()) == {"bsr"}


@pytest.mark.parametrize("fmt", ["dense", "compact", "csr"])
def test_batch_chunks_give_the_same_result(fmt, rng, monkeypatch):
    import refimpl.sparse.layers as layers

    w = rng.standard_normal((4, 3, 3, 3)) * (rng.random((4, 3, 3, 3)) > 0.5)
    x = rng.standard_normal((5, 3, 6, 6))
    op = make_operator(w.reshape(4, -1), fmt)
    whole = sparse_conv2d_forward(x, op, None, (3, 3), padding=1)
    monkeypatch.setattr(layers, "IM2COL_CHUNK_BYTES", 1)  # one image per chunk
    np.testing.assert_array_equal(sparse_conv2d_forward(x, op, None, (3, 3), padding=1), whole)
    np.testing.assert_allclose(whole, conv2d_forward_naive(x, w, None, padding=1), rtol=1e-12)
