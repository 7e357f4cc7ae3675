"""Tests for refimpl.prune.expand_constraints: config tables checked against the built model's shapes."""

from __future__ import annotations

import pytest

from refimpl.config import load_config
from refimpl.models import lenet5, resnet_small
from refimpl.prune import Constraint, expand_constraints, select_params

FILTERS = {"param": "conv1.weight", "structure": "filters", "sparsity": 0.5}  # a valid first table


@pytest.fixture(scope="module")
def net():
    # conv1 (20, 1, 5, 5), conv2 (50, 20, 5, 5), fc1 (500, 200), fc2 (10, 500), one bias per layer.
    return lenet5(input_size=8)


def test_valid_specs_expand_and_project(net):
    specs = [FILTERS,
             {"params": "linear", "structure": "blocks", "block_shape": [10, 4], "keep": 20},
             {"param": "conv2.weight", "structure": "nm", "n": 2, "m": 4},
             {"param": "conv2.weight", "structure": "filters", "keep": 50}]  # keep == n is allowed
    constraints = expand_constraints(specs, net)
    assert [(c.param, c.structure) for c in constraints] == [
        ("conv1.weight", "filters"), ("fc1.weight", "blocks"), ("fc2.weight", "blocks"),
        ("conv2.weight", "nm"), ("conv2.weight", "filters")]
    assert constraints[3] == Constraint("conv2.weight", "nm", n=2, m=4)
    for c in constraints:  # the constraints really apply to the weights they were expanded for
        w = net.parameters()[c.param]
        assert c.project(w).shape == w.shape


@pytest.mark.parametrize(("spec", "error", "match"), [
    # keep larger than the number of groups (20 filters in conv1)
    ({"param": "conv1.weight", "structure": "filters", "keep": 60}, ValueError,
     r"^admm\.constraints\[1\]: structure 'filters' on conv1\.weight \(shape \(20, 1, 5, 5\)\): "
     r"keep must lie in \[0, 20\] \(the number of groups\), got 60$"),
    # a block taller than fc2's 10 rows
    ({"param": "fc2.weight", "structure": "blocks", "block_shape": [16, 4], "sparsity": 0.5}, ValueError,
     r"^admm\.constraints\[1\]: structure 'blocks' on fc2\.weight \(shape \(10, 500\)\): "
     r"block_shape must satisfy 1 <= bh <= 10 and 1 <= bw <= 500"),
    # N:M with m = 3 not dividing conv2's GEMM rows (20 * 5 * 5 = 500)
    ({"param": "conv2.weight", "structure": "nm", "n": 1, "m": 3}, ValueError,
     r"^admm\.constraints\[1\]: structure 'nm' on conv2\.weight \(shape \(50, 20, 5, 5\)\): "
     r"m must divide .* 500, got m=3$"),
    # a bias, even with a structure that would accept a 1-D array
    ({"param": "fc1.bias", "structure": "unstructured", "sparsity": 0.5}, ValueError,
     r"^admm\.constraints\[1\]\.param: fc1\.bias \(shape \(500,\)\) is not the weight of a convolution or "
     r"linear layer"),
    ({"params": ["fc1.bias"], "structure": "filters", "sparsity": 0.5}, ValueError,
     r"^admm\.constraints\[1\]\.params: params item 'fc1\.bias' selects no convolution or linear weight: "
     r"it matches only \['fc1\.bias'\]"),
    # table-level problems, still named with the key
    ({"param": "fc1.weight", "structure": "filters", "sparsity": 0.5, "keep": 3}, ValueError,
     r"^admm\.constraints\[1\]: give at most one of sparsity= or keep="),
    ({"params": "conv", "param": "fc1.weight", "structure": "filters", "sparsity": 0.5}, ValueError,
     r"^admm\.constraints\[1\]: give exactly one of 'param'"),
    ({"param": "fc1.weight", "structure": "blocks", "sparsity": 0.5}, TypeError,
     r"^admm\.constraints\[1\]: invalid arguments for structure 'blocks'"),
])
def test_bad_spec_names_the_key_and_the_parameter(net, spec, error, match):
    with pytest.raises(error, match=match):
        expand_constraints([FILTERS, spec], net)


def test_shortcut_reports_the_weight_that_does_not_fit(net):
    # 30 filters fit conv2 (50) but not conv1 (20): the message names conv1.weight.
    with pytest.raises(ValueError, match=r"^admm\.constraints\[0\]: structure 'filters' on conv1\.weight "):
        expand_constraints([{"params": "conv", "structure": "filters", "keep": 30}], net)


UNIFIED = {"param": "conv2.weight", "structure": "unified", "block_shape": [5, 5], "unify": 0.5}


@pytest.mark.parametrize("other", [
    {"param": "conv2.weight", "structure": "filters", "sparsity": 0.5},
    {"params": "conv", "structure": "unstructured", "sparsity": 0.5},  # conv2 reached through a shortcut
    {"param": "conv2.weight", "structure": "unified", "block_shape": [1, 5], "unify": 0.5},
])
def test_unified_must_be_its_weights_only_constraint(net, other):
    # The hard prune unifies blocks only for a lone "unified" constraint (with others it only masks):
    # refused when the tables are expanded, before any training, naming both tables.
    match = (r"^admm\.constraints\[0\], admm\.constraints\[1\]: constraints on 'conv2\.weight': "
             r"a 'unified' constraint must be the parameter's only one")
    with pytest.raises(ValueError, match=match):
        expand_constraints([UNIFIED, other], net)


def test_unified_beside_constraints_on_other_weights(net):
    constraints = expand_constraints([UNIFIED, FILTERS, {"params": "linear", "structure": "unified",
                                                         "block_shape": [2, 2], "unify": 0.5}], net)
    assert [(c.param, c.structure) for c in constraints] == [
        ("conv2.weight", "unified"), ("conv1.weight", "filters"), ("fc1.weight", "unified"),
        ("fc2.weight", "unified")]


def test_patterns_pick_weights_only(net):
    # "fc1.*" also matches fc1.bias; a pattern selects among the convolution and linear weights.
    assert select_params("fc1.*", net) == ["fc1.weight"]
    constraints = expand_constraints([{"params": "fc*", "structure": "unstructured", "sparsity": 0.5}], net)
    assert [c.param for c in constraints] == ["fc1.weight", "fc2.weight"]
    resnet = resnet_small(depth=8, width=4)
    assert select_params("layer1.*", resnet) == ["layer1.0.conv1.weight", "layer1.0.conv2.weight"]
    with pytest.raises(ValueError, match=r"'layer1\.\*\.bn\*' selects no convolution or linear weight"):
        select_params("layer1.*.bn*", resnet)


def test_run_fails_before_any_training(tmp_path):
    from refimpl.engine import SetupError, run_experiment

    config = load_config(None, {
        "data.name": "synthetic", "pretrain.epochs": 1, "admm.epochs": 1, "retrain.epochs": 1,
        "admm.constraints": [FILTERS, {"param": "conv1.weight", "structure": "filters", "keep": 60}]})
    out = tmp_path / "run"
    with pytest.raises(SetupError, match=r"^admm\.constraints\[1\]: .* conv1\.weight .* got 60$"):
        run_experiment(config, out, progress=False, echo=None)
    assert not out.exists() or not any(out.iterdir())  # nothing trained, nothing written
