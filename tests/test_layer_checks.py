"""check_layer, check_admm_step and check_gradient's worst entry: refimpl passes, planted bugs are named."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl import nn
from refimpl.projections import project_filters
from refimpl.testing import LAYERS, check_admm_step, check_gradient, check_layer
from refimpl.testing.compare import compare_arrays


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_refimpl_layers_pass(layer):
    spec = LAYERS[layer]
    report = check_layer(spec.forward, spec.backward, layer)
    assert report.passed, str(report)
    assert report.n_cases == 2 * len(spec.cases) and "passed" in str(report)


def test_wrong_weight_gradient_transpose_is_reported_on_dw():
    def backward(dout, cache):
        dx, dw, db = nn.conv2d_backward(dout, cache)
        return dx, np.ascontiguousarray(dw.reshape(dw.shape[0], -1).T).reshape(dw.shape), db

    report = check_layer(nn.conv2d_forward, backward, "conv2d")
    assert not report.passed
    assert {f.mismatch.name for f in report.failures} == {"dw"}
    assert all(f.mismatch.property == "values" for f in report.failures)
    assert "worst entry" in str(report) and "expected" in str(report) and "got" in str(report)


def test_off_by_one_padding_is_a_shape_failure_of_out():
    def forward(x, w, b, stride=1, padding=0):
        return nn.conv2d_forward(x, w, b, stride, padding + 1)

    report = check_layer(forward, nn.conv2d_backward, "conv2d")
    assert {(f.mismatch.name, f.mismatch.property) for f in report.failures} == {("out", "shape")}
    assert len(report.failures) == 2 * len(LAYERS["conv2d"].cases)


def test_maxpool_tie_rule_and_batchnorm_running_stats_are_checked():
    def last_maximum_wins(dout, cache):
        x_shape, argmax, (kh, kw), (sh, sw), engine = cache
        return nn.maxpool2d_backward(
            dout, (x_shape, np.zeros_like(argmax) + kh * kw - 1, (kh, kw), (sh, sw), engine)
        )

    report = check_layer(nn.maxpool2d_forward, last_maximum_wins, "maxpool2d")
    assert not report.passed and {f.mismatch.name for f in report.failures} == {"dx"}

    def no_running_update(x, gamma, beta, running_mean, running_var, training, momentum=0.1, eps=1e-5):
        return nn.batchnorm2d_forward(
            x, gamma, beta, running_mean.copy(), running_var.copy(), training, momentum, eps
        )

    report = check_layer(no_running_update, nn.batchnorm2d_backward, "batchnorm2d")
    assert {f.mismatch.name for f in report.failures} == {"running_mean", "running_var"}
    assert {f.case for f in report.failures} == {"train"}


def test_forward_only_and_raising_layers():
    assert check_layer(nn.linear_forward, None, "linear").passed

    def broken(x, w, b):
        raise RuntimeError("not implemented")

    report = check_layer(broken, None, "linear")
    assert len(report.failures) == 4 and "raised RuntimeError: not implemented" in str(report)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer": "conv3d"}, ValueError, "layer must be one of"),
        ({"forward": 3}, TypeError, "forward must be callable"),
        ({"backward": 3}, TypeError, "backward must be callable or None"),
        ({"dtypes": (np.int32,)}, TypeError, "dtypes must be floating"),
    ],
)
def test_check_layer_errors(kwargs, error, match):
    args = {"forward": nn.relu_forward, "backward": nn.relu_backward, "layer": "relu", **kwargs}
    with pytest.raises(error, match=match):
        check_layer(args.pop("forward"), args.pop("backward"), args.pop("layer"), **args)


def _step(W, Z, U, grad, *, rho, lr, keep, project_wu=True, squared=True):
    D = W - Z + U
    penalty = rho * D if squared else rho * D / np.linalg.norm(D)
    W = W - lr * (grad + penalty)
    Z = project_filters(W + U if project_wu else W, keep=keep)
    return W, Z, U + W - Z


def test_check_admm_step_passes_a_correct_step_and_names_the_output_of_a_wrong_one():
    assert check_admm_step(_step, "filters", keep=3).passed
    report = check_admm_step(lambda *a, **k: _step(*a, **k, project_wu=False), "filters", keep=3)
    assert not report.passed and all(m.name == "Z" for _, _, m in report.failures)
    report = check_admm_step(lambda *a, **k: _step(*a, **k, squared=False), "filters", keep=3)
    assert all(m.name == "W" for _, _, m in report.failures) and "worst entry" in str(report)
    with pytest.raises(ValueError, match="structure must be one of"):
        check_admm_step(_step, "diagonal")


def test_check_gradient_reports_the_worst_entry():
    x = np.arange(6.0).reshape(2, 3)
    analytic = 2 * x
    analytic[1, 2] += 0.5
    with pytest.raises(
        AssertionError,
        match=r"worst entry x\[1, 2\]: expected \(finite differences\) "
        r"(9\.99|10\.0)\d*, got \(analytic\) 10\.5",
    ):
        check_gradient(lambda: float(np.sum(x**2)), x, analytic)


def test_compare_arrays_forms():
    assert compare_arrays("z", np.ones(2), np.ones(2)) is None
    assert compare_arrays("z", np.ones(2), None).property == "missing"
    assert compare_arrays("z", np.ones(2), np.ones(3)).property == "shape"
    assert compare_arrays("z", np.ones(2, np.float32), np.ones(2)).property == "dtype"
    m = compare_arrays("z", np.array([1.0, np.nan]), np.array([1.0, 0.0]))
    assert m.property == "values" and m.index == (1,)
    assert compare_arrays("z", np.array([1.0, np.nan]), np.array([1.0, np.nan])) is None
    assert compare_arrays("z", np.array([1.0]), np.array([1.0 + 1e-9]), rtol=1e-8) is None
    # an infinity matches only the same infinity (inf - inf is NaN, which must not read as a mismatch)
    assert compare_arrays("z", np.array([np.inf, -np.inf]), np.array([np.inf, -np.inf])) is None
    m = compare_arrays("z", np.array([1.0, np.inf]), np.array([1.0, -np.inf]), rtol=1e-8)
    assert m.property == "values" and m.index == (1,)
    # the sign of zero counts only when asked, and ranks below any entry that is off in value
    assert compare_arrays("z", np.array([0.0, -0.0]), np.array([-0.0, 0.0])) is None
    m = compare_arrays("z", np.array([0.0, -0.0, 1.0]), np.array([0.0, 0.0, 1.0]), signed_zeros=True)
    assert m.index == (1,) and m.message.startswith("1 of 3 entries off")
    assert m.message.endswith("expected -0.0, got 0.0 (sign of zero differs)")
    m = compare_arrays("z", np.array([0.0, 1.0]), np.array([-0.0, 1.5]), signed_zeros=True, rtol=0.1)
    assert m.index == (1,) and m.message.startswith("2 of 2 entries off")
    assert compare_arrays("z", np.array([np.inf]), np.array([1e308])).index == (0,)


def test_docstring_examples_of_the_oracle_modules_run():
    import doctest

    import refimpl.projections.reference as reference
    import refimpl.testing.admm as admm
    import refimpl.testing.compare as compare
    import refimpl.testing.conformance as conformance
    import refimpl.testing.layers as layers

    for module in (reference, admm, compare, conformance, layers):
        result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.failed == 0 and result.attempted > 0, module.__name__
