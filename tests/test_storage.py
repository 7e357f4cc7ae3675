"""Storage accounting in bits (issue 11): free, unified and pruned blocks, the block-kind map, reports."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.metrics import block_kinds, format_storage, storage_report, storage_totals, weight_storage
from refimpl.models import lenet5


def test_a_dense_weight_costs_its_values_and_no_map():
    w = np.random.default_rng(0).standard_normal((6, 10))
    s = weight_storage(w, (2, 5))
    assert (s["free_blocks"], s["unified_blocks"], s["pruned_blocks"]) == (6, 0, 0)
    assert s["bits"] == s["dense_bits"] == 60 * 32 and s["index_bits"] == 0 and s["ratio"] == 1.0
    assert weight_storage(w, (2, 5), value_bits=16)["bits"] == 60 * 16


def test_unstructured_pruning_is_the_bitmap_encoding():
    rng = np.random.default_rng(1)
    w = np.where(rng.random((20, 30)) < 0.3, rng.standard_normal((20, 30)), 0.0)
    s = weight_storage(w)  # 1 x 1 blocks
    assert s["bits"] == 600 + 32 * np.count_nonzero(w)
    assert s["unified_bits"] == 0  # a single entry is never stored unified (33 bits > 32)


def test_three_kinds_with_edge_blocks_by_hand():
    # GEMM view 3 x 5 in 2 x 2 blocks: block grid 2 x 3, edge blocks of 2, 2 and 1 entries in the last row.
    w = np.array([[1.0, -1.0, 0.0, 0.0, 7.0], [-1.0, 1.0, 0.0, 0.0, 8.0], [2.0, 3.0, 0.5, -0.5, 0.0]])
    np.testing.assert_array_equal(block_kinds(w, (2, 2)), [[1, 2, 0], [0, 1, 2]])
    s = weight_storage(w, (2, 2), value_bits=16)
    assert s["free_bits"] == (2 + 2) * 16  # [7, 8] and [2, 3]
    assert s["unified_bits"] == (16 + 4) + (16 + 2)  # the 2 x 2 block and the edge block [0.5, -0.5]
    assert s["index_bits"] == 6 * 2  # three kinds: 2 bits per block
    assert s["bits"] == 64 + 38 + 12 and s["dense_bits"] == 15 * 16


@pytest.mark.parametrize(
    ("w", "kind"),
    [
        ([[0.5, -0.5]], 1),
        ([[0.5, 0.5000001]], 0),
        ([[0.5, 0.0]], 0),
        ([[0.0, -0.0]], 2),
        ([[3.0]], 0),
    ],
)
def test_what_counts_as_unified(w, kind):
    assert block_kinds(np.array(w), (1, len(w[0])))[0, 0] == kind


def test_unification_beats_pruning_per_block_at_the_paper_s_block_size():
    # A 4 x 4 block: 512 bits free, 48 unified; pruning a block saves 512, unifying it 464.
    w = np.ones((4, 8))
    w[:, 4:] = np.random.default_rng(2).standard_normal((4, 4))
    assert weight_storage(w, (4, 4))["bits"] == 512 + 48 + 2


def test_storage_report_over_a_network():
    model = lenet5(input_size=8, num_classes=10)
    params = model.parameters()
    masks = {"fc1.weight": np.zeros(params["fc1.weight"].shape, bool)}
    rows = storage_report(model, masks, {"conv2.weight": (1, 5)})
    by_name = {r["name"]: r for r in rows}
    assert by_name["fc1.weight"]["bits"] == 0 and by_name["conv2.weight"]["block_shape"] == (1, 5)
    assert by_name["conv1.bias"]["bits"] == params["conv1.bias"].size * 32
    totals = storage_totals(rows)
    assert totals["bits"] == sum(r["bits"] for r in rows)
    assert totals["dense_bits"] == 32 * sum(v.size for v in params.values())
    assert "network (all parameters)" in format_storage(rows)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: weight_storage(np.ones((2, 2)), value_bits=8), ValueError, "value_bits must be one of"),
        (lambda: weight_storage(np.ones(4)), ValueError, "w must be a weight with 2 or more"),
        (lambda: weight_storage(np.ones((2, 2)), (0, 1)), ValueError, "block_shape"),
        (lambda: weight_storage([["a"]]), TypeError, "w must be a numeric array"),
        (lambda: storage_report("model"), TypeError, "model must be a refimpl Module"),
        (lambda: storage_report(lenet5(input_size=8), {"nope": np.ones(1, bool)}), KeyError, "masks"),
        (lambda: storage_report(lenet5(input_size=8), None, {"nope": (1, 1)}), KeyError, "block_shapes"),
        (
            lambda: storage_report(lenet5(input_size=8), {"conv1.weight": np.ones((2, 2), bool)}),
            ValueError,
            r"masks\['conv1.weight'\] must be a boolean array",
        ),
    ],
)
def test_bad_arguments_are_named(call, error, match):
    with pytest.raises(error, match=match):
        call()
