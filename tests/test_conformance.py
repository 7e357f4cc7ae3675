"""The public conformance checker: refimpl's own projections pass; planted bugs (higher-index ties,
topk-based selection, floor counting, float64 output, writing into the input, the wrong N:M axis, L1
ranking, keep=0 returning the input) are each reported with the property they violate."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.projections import PROJECTIONS, project_filters, project_nm, project_shapes, project_unified
from refimpl.testing.conformance import ProjectionReport, check_projection

CASES = [
    ("unstructured", {}),
    ("filters", {}),
    ("channels", {}),
    ("shapes", {"keep": 1}),
    ("kernels", {"sparsity": 0.5}),
    ("blocks", {"block_shape": (2, 2)}),
    ("balanced", {"vector_size": 4}),
    ("nm", {"n": 2, "m": 4}),
    (
        "vector_block",
        {"vector_size": 4, "block_shape": (2, 2), "vector_sparsity": 0.5, "block_sparsity": 0.5},
    ),
    ("unified", {"block_shape": (2, 2)}),
    ("unified", {"block_shape": (1, 2), "prune": 0.25}),
]


@pytest.mark.parametrize(("structure", "params"), CASES)
def test_refimpl_projections_pass(structure, params):
    report = check_projection(PROJECTIONS[structure][0], structure, n_examples=60, **params)
    assert report.passed, str(report)
    assert report.n_examples == 60 and report.n_checks >= 8 * 60  # every property ran
    assert "passed" in str(report)


def test_all_registered_structures_are_covered():
    assert {s for s, _ in CASES} == set(PROJECTIONS)


def filters_by_l1(w, sparsity=None, keep=None):
    """Ranks filters by L1 norm (the pyproximal L10BallProj mistake): the nearest point keeps L2 norms."""
    scores = np.abs(w.reshape(len(w), -1)).sum(axis=1)
    k = len(w) - round(sparsity * len(w)) if keep is None else keep
    out = np.array(w, copy=True)
    out[np.argsort(-scores, kind="stable")[k:]] = 0
    return out


def _scores(w):
    return np.square(w.reshape(len(w), -1).astype(np.float64)).sum(axis=1)


def _count(w, sparsity, keep, rule=round):
    return len(w) - rule(sparsity * len(w)) if keep is None else keep


def _keep_rows(w, rows):
    out = np.zeros_like(w)
    out[rows] = w[rows]
    return out


def higher_index_ties(w, sparsity=None, keep=None):
    """Correct except that a tie goes to the higher index."""
    n, scores = len(w), _scores(w)
    return _keep_rows(w, np.lexsort((-np.arange(n), -scores))[: _count(w, sparsity, keep)])


def topk_selection(w, sparsity=None, keep=None):
    """Selection by partition (``torch.topk``-like): any order among ties."""
    n, k = len(w), _count(w, sparsity, keep)
    return _keep_rows(w, np.argpartition(_scores(w), n - k)[n - k :] if k else [])


def floor_counting(w, sparsity=None, keep=None):
    """Counts with floor(s n) instead of round-half-to-even."""
    return project_filters(w, keep=_count(w, sparsity, keep, math.floor))


def float64_output(w, sparsity=None, keep=None):
    return project_filters(w, sparsity=sparsity, keep=keep).astype(np.float64)


def in_place(w, sparsity=None, keep=None):
    """Writes the result into its input (fails on read-only input, mutates a writeable one)."""
    w[...] = project_filters(np.array(w), sparsity=sparsity, keep=keep)
    return w


def nm_wrong_axis(w, n, m):
    """N:M groups along the GEMM columns (the output dimension) instead of the rows."""
    w2d = w.reshape(len(w), -1)
    return np.ascontiguousarray(project_nm(np.ascontiguousarray(w2d.T), n, m).T).reshape(w.shape)


def shapes_keep0_returns_input(w, sparsity=None, keep=None):
    """Correct except that keep=0 returns the input unchanged (the pyproximal radius=0 bug)."""
    if keep == 0:
        return np.array(w, copy=True)
    return project_shapes(w, sparsity=sparsity, keep=keep)


def mask_by_multiplication(w, sparsity=None, keep=None):
    """The right filters, applied as ``w * mask``: a negative dropped weight becomes -0.0, not +0.0."""
    mask = project_filters(w, sparsity=sparsity, keep=keep) != 0
    return w * mask.astype(w.dtype)


@pytest.mark.parametrize(
    ("fn", "structure", "params", "prop", "says"),
    [
        (higher_index_ties, "filters", {}, "tie order", "ties keep the lower flat index"),
        (topk_selection, "filters", {}, "tie order", "ties keep the lower flat index"),
        (floor_counting, "filters", {}, "count", "round-half-to-even"),
        (float64_output, "filters", {}, "dtype", "returned float64 for a float32 input"),
        (in_place, "filters", {}, "input not mutated", "input"),
        (
            nm_wrong_axis,
            "nm",
            {"n": 2, "m": 4, "shapes": [(4, 4), (8, 8), (4, 2, 2, 2)]},
            "in the set",
            "at most n=2 allowed",
        ),
        (filters_by_l1, "filters", {}, "optimal", "||W - fn(W)||^2"),
        (shapes_keep0_returns_input, "shapes", {"keep": 0}, "count", "kept"),
        (mask_by_multiplication, "filters", {}, "kept unchanged, dropped exactly 0",
         "multiplying by the mask gives -0.0"),
    ],
)
def test_planted_bugs_are_reported_with_the_right_property(fn, structure, params, prop, says):
    report = check_projection(fn, structure, **params)
    assert not report.passed
    assert report.headline == prop, str(report)
    text = str(report)
    assert f"FAILED: {prop}" in text and says in text, text
    first = report.counterexample
    assert first.property == prop
    assert first.w.size <= min(f.w.size for f in report.failures if f.property == prop)


def test_ties_any_accepts_another_tie_order_but_not_a_wrong_count():
    assert check_projection(higher_index_ties, "filters", ties="any").passed
    assert check_projection(topk_selection, "filters", ties="any").passed
    assert check_projection(floor_counting, "filters", ties="any").headline == "count"


def test_both_dtypes_and_both_count_modes_are_tried_by_default():
    report = check_projection(project_filters, "filters", n_examples=16)
    assert report.dtypes == ("float32", "float64") and report.count_modes == ("sparsity", "keep")
    assert "float32 and float64; sparsity= and keep=" in str(report)

    def keep_path_broken(w, sparsity=None, keep=None):
        return project_filters(w, keep=max(keep - 1, 0)) if keep is not None else project_filters(w, sparsity)

    assert check_projection(keep_path_broken, "filters").headline == "count"


def test_count_failure_says_kept_and_expected_with_the_rule():
    report = check_projection(floor_counting, "filters")
    first = report.counterexample
    assert first.property == "count"
    assert first.message.startswith("kept ") and ", expected " in first.message
    assert "prunes round(" in first.message and "round-half-to-even" in first.message


def test_l1_ranking_fails_with_a_named_counterexample():
    report = check_projection(filters_by_l1, "filters", sparsity=0.5, n_examples=100)
    assert not report.passed and report.headline == "optimal"
    text = str(report)
    assert text.startswith("check_projection(filters_by_l1, 'filters', sparsity=0.5): FAILED")
    assert "smallest counterexample" in text and "expected (refimpl)" in text and "got (" in text
    first = report.counterexample
    w64 = first.w.astype(np.float64)
    assert np.sum((w64 - first.got) ** 2) > np.sum((w64 - project_filters(first.w, sparsity=0.5)) ** 2)
    assert first.w.shape[0] == 2  # shrunk to two filters: keep one, the L1 rule keeps the wrong one


def test_drawn_sparsity_reaches_the_keep0_bug():
    """Without a fixed count, drawn sparsities include 1.0 (keep nothing), so the bug still shows."""

    def buggy(w, sparsity=None, keep=None):
        if sparsity == 1.0 or keep == 0:
            return np.array(w, copy=True)
        return project_shapes(w, sparsity=sparsity, keep=keep)

    report = check_projection(buggy, "shapes", n_examples=60)
    assert report.headline == "count"


def test_unification_with_the_median_is_not_optimal():
    def median_unify(w, block_shape, sparsity):
        out = project_unified(w, block_shape, sparsity=sparsity)
        w2d, o2d = w.reshape(len(w), -1), out.reshape(len(w), -1)
        bh, bw = block_shape
        for r in range(0, w2d.shape[0], bh):
            for c in range(0, w2d.shape[1], bw):
                v = w2d[r : r + bh, c : c + bw]
                if not np.array_equal(o2d[r : r + bh, c : c + bw], v):
                    o2d[r : r + bh, c : c + bw] = np.where(v >= 0, 1, -1) * np.median(np.abs(v))
        return out

    report = check_projection(
        median_unify, "unified", block_shape=(1, 3), sparsity=0.5, n_examples=60, shapes=[(2, 6), (3, 6)]
    )
    assert report.headline == "optimal"


def test_exceptions_and_non_arrays_are_reported():
    def raises(w, sparsity=None, keep=None):
        raise RuntimeError("boom")

    report = check_projection(raises, "filters", n_examples=10)
    assert report.violated() == {"returns an array": 10} and "raised RuntimeError: boom" in str(report)
    report = check_projection(lambda w, sparsity=None, keep=None: w.tolist(), "filters", n_examples=4)
    assert report.headline == "returns an array" and "expected an ndarray" in str(report)


def test_report_is_reproducible():
    a = check_projection(filters_by_l1, "filters", sparsity=0.5, n_examples=50, seed=3)
    b = check_projection(filters_by_l1, "filters", sparsity=0.5, n_examples=50, seed=3)
    assert str(a) == str(b)
    report = check_projection(project_filters, "filters", dtype=np.float32, n_examples=40)
    assert report.passed and report.dtypes == ("float32",)
    assert isinstance(report, ProjectionReport)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"structure": "diagonal"}, ValueError, "structure must be one of"),
        ({"n_examples": 0}, ValueError, "n_examples must be a positive integer"),
        ({"dtype": np.int64}, TypeError, "dtype must be a floating dtype"),
        ({"shapes": [(2, 2, 2)]}, ValueError, "shapes must be"),
        ({"structure": "nm", "n": 2, "m": 4, "shapes": [(3, 3)]}, ValueError, "pass shapes="),
        ({"ties": "some"}, ValueError, "ties must be 'exact' or 'any'"),
        ({"dtype": [np.float32, "int8"]}, TypeError, "dtype must be a floating dtype"),
    ],
)
def test_errors(kwargs, error, match):
    args = {"structure": "filters", **kwargs}
    with pytest.raises(error, match=match):
        check_projection(project_filters, args.pop("structure"), **args)
