"""Tests of refimpl.metrics: per-layer reports checked against hand-computed LeNet-5 numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.compact import compact
from refimpl.metrics import compare_reports, format_report, layer_report, report_json, report_totals
from refimpl.models import lenet5, lenet300_100, resnet_small, vgg_small


def _hand_masked_lenet5():
    """LeNet-5 on 28x28 (maps 24x24 after conv1, 8x8 after conv2, fc1 reads 50*4*4 = 800 features).

    Every parameter is 0.5 so that nonzero counts are exact; the masks:
    conv1: filters 10..19 dead; conv2: only input channels 0..4 kept (shape pruning);
    fc1: only the first 100 input columns kept; fc2: dense.
    """
    model = lenet5(input_size=28, dtype=np.float64)
    for p in model.parameters().values():
        p[...] = 0.5
    masks = {"conv1.weight": np.ones((20, 1, 5, 5), bool), "conv2.weight": np.ones((50, 20, 5, 5), bool),
             "fc1.weight": np.ones((500, 800), bool)}
    masks["conv1.weight"][10:] = False
    masks["conv2.weight"][:, 5:] = False
    masks["fc1.weight"][:, 100:] = False
    return model, masks


EXPECTED_MASKED = {
    # name: (kept/total filters, kept/total channels, kept/total shapes, params, nonzero, MACs, eff. MACs)
    "conv1": ((10, 20), (1, 1), (25, 25), 520, 10 * 25 + 20, 20 * 25 * 24 * 24, 10 * 25 * 24 * 24),
    "conv2": ((50, 50), (5, 20), (125, 500), 25050, 50 * 125 + 50, 50 * 500 * 8 * 8, 50 * 125 * 8 * 8),
    "fc1": ((500, 500), (100, 800), (100, 800), 400500, 500 * 100 + 500, 500 * 800, 500 * 100),
    "fc2": ((10, 10), (500, 500), (500, 500), 5010, 5010, 5000, 5000),
}


def test_masked_lenet5_report_matches_hand_counts():
    model, masks = _hand_masked_lenet5()
    rows = layer_report(model, masks)
    assert [row["name"] for row in rows] == list(EXPECTED_MASKED)
    for row in rows:
        filters, channels, shapes, params, nonzero, macs, eff = EXPECTED_MASKED[row["name"]]
        assert (row["kept_filters"], row["filters"]) == filters
        assert (row["kept_channels"], row["channels"]) == channels
        assert (row["kept_shapes"], row["shapes"]) == shapes
        assert row["params"] == row["params_before"] == params
        assert row["nonzero"] == nonzero
        assert row["macs"] == row["macs_before"] == macs
        assert row["effective_macs"] == eff
        assert row["compression"] == pytest.approx(params / nonzero)
        assert row["weight_shape"] == row["weight_shape_before"] == model.get_module(row["name"]).params[
            "weight"].shape
    totals = report_totals(rows)
    assert totals["params"] == 431080
    assert totals["nonzero"] == 270 + 6300 + 50500 + 5010
    assert totals["macs"] == 288000 + 1600000 + 400000 + 5000
    assert totals["effective_macs"] == 144000 + 400000 + 50000 + 5000
    assert totals["compression"] == pytest.approx(431080 / 62080)
    assert totals["mac_reduction"] == pytest.approx(2293000 / 599000)


def test_compact_lenet5_report_matches_hand_counts():
    model, masks = _hand_masked_lenet5()
    small, creport = compact(model, masks)
    # conv2 reads only conv1's channels 0..4, so conv1 keeps filters 0..4; fc1 reads columns 0..99, i.e.
    # conv2's channels 0..6 (16 columns each, channel 6 partly), so conv2 keeps filters 0..6.
    rows = {row["name"]: row for row in layer_report(small, reference=model)}
    assert rows["conv1"]["weight_shape"] == (5, 1, 5, 5)
    assert rows["conv1"]["weight_shape_before"] == (20, 1, 5, 5)
    assert rows["conv2"]["weight_shape"] == (7, 5, 5, 5)
    assert rows["fc1"]["weight_shape"] == (500, 7 * 16)
    expected = {  # name: (params_before, params, nonzero, macs_before, macs, effective macs)
        "conv1": (520, 130, 130, 288000, 5 * 25 * 576, 5 * 25 * 576),
        "conv2": (25050, 7 * 125 + 7, 7 * 125 + 7, 1600000, 7 * 125 * 64, 7 * 125 * 64),
        "fc1": (400500, 500 * 112 + 500, 500 * 100 + 500, 400000, 500 * 112, 500 * 100),
        "fc2": (5010, 5010, 5010, 5000, 5000, 5000),
    }
    for name, (pb, p, nz, mb, m, eff) in expected.items():
        row = rows[name]
        assert (row["params_before"], row["params"], row["nonzero"]) == (pb, p, nz), name
        assert (row["macs_before"], row["macs"], row["effective_macs"]) == (mb, m, eff), name
    assert rows["fc1"]["kept_shapes"] == 100 and rows["fc1"]["shapes"] == 112
    assert sum(row["params"] for row in rows.values()) == 62522 == small.num_parameters()
    assert creport.params_after == 62522

    cmp = compare_reports(layer_report(model, masks), list(rows.values()))
    assert cmp["totals"]["params_before"] == 431080 and cmp["totals"]["params_after"] == 62522
    assert cmp["totals"]["params_ratio"] == pytest.approx(431080 / 62522)
    fc1 = next(entry for entry in cmp["layers"] if entry["name"] == "fc1")
    assert (fc1["nonzero_before"], fc1["nonzero_after"]) == (50500, 50500)
    assert (fc1["macs_before"], fc1["macs_after"]) == (400000, 56000)


def test_compare_reports_marks_missing_layers():
    model, masks = _hand_masked_lenet5()
    rows = layer_report(model, masks)
    cmp = compare_reports(rows, rows[:2])
    missing = next(entry for entry in cmp["layers"] if entry["name"] == "fc2")
    assert missing["params_before"] == 5010 and missing["params_after"] is None


def test_format_report_is_an_aligned_table_with_totals():
    model, masks = _hand_masked_lenet5()
    text = format_report(layer_report(model, masks))
    lines = text.splitlines()
    assert len(lines) == 1 + 1 + 4 + 1 + 1  # header, rule, four layers, rule, totals
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width
    assert lines[2].startswith("conv1") and "10/20" in lines[2] and "5/20" in lines[3]
    assert lines[-1].startswith("total") and "62080" in lines[-1] and "599000" in lines[-1]


def test_report_json_is_serialisable_and_marks_empty_layers():
    model = lenet300_100(input_size=8, dtype=np.float64)
    model.get_module("fc3").params["bias"][...] = 0
    rows = layer_report(model, {"fc3.weight": np.zeros((10, 100), bool)})
    assert rows[-1]["compression"] == np.inf and rows[-1]["effective_macs"] == 0
    data = json.loads(json.dumps(report_json(rows)))
    assert data["layers"][-1]["compression"] is None
    assert data["layers"][0]["weight_shape"] == [300, 64]
    assert data["totals"]["params"] == model.num_parameters()


@pytest.mark.parametrize("model", [vgg_small(input_size=8, width=4, hidden=16),
                                   resnet_small(depth=8, width=4, input_size=8)])
def test_report_covers_every_parameter_including_batchnorm(model):
    rows = layer_report(model)
    assert sum(row["params"] for row in rows) == model.num_parameters()
    bn = next(row for row in rows if row["kind"] == "BatchNorm2d")
    assert bn["filters"] is None and bn["macs"] == 0 and bn["effective_macs"] == 0


def test_layer_report_errors():
    model, masks = _hand_masked_lenet5()
    with pytest.raises(TypeError, match="model"):
        layer_report("model")
    with pytest.raises(TypeError, match="reference"):
        layer_report(model, reference=3)
    with pytest.raises(KeyError, match="nope"):
        layer_report(model, {"nope": np.ones(3, bool)})
    with pytest.raises(ValueError, match="conv1.weight"):
        layer_report(model, {"conv1.weight": np.ones((20, 1), bool)})
    with pytest.raises(TypeError, match="boolean"):
        layer_report(model, {"conv1.weight": np.ones((20, 1, 5, 5))})
