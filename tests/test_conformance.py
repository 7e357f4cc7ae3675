"""The public conformance checker: refimpl's own projections pass, known-wrong projections fail loudly."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.projections import PROJECTIONS, project_filters, project_shapes, project_unified
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
    ("vector_block", {"vector_size": 4, "block_shape": (2, 2), "vector_sparsity": 0.5,
                      "block_sparsity": 0.5}),
    ("unified", {"block_shape": (2, 2)}),
    ("unified", {"block_shape": (1, 2), "prune": 0.25}),
]


@pytest.mark.parametrize(("structure", "params"), CASES)
def test_refimpl_projections_pass(structure, params):
    report = check_projection(PROJECTIONS[structure][0], structure, n_examples=60, **params)
    assert report.passed, str(report)
    assert report.n_examples == 60 and report.n_checks >= 5 * 60 - 60  # every property ran
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


def shapes_keep0_returns_input(w, sparsity=None, keep=None):
    """Correct except that keep=0 returns the input unchanged (the pyproximal radius=0 bug)."""
    if keep == 0:
        return np.array(w, copy=True)
    return project_shapes(w, sparsity=sparsity, keep=keep)


def test_l1_ranking_fails_with_a_named_counterexample():
    report = check_projection(filters_by_l1, "filters", sparsity=0.5, n_examples=100)
    assert not report.passed
    assert "optimal" in report.violated()
    text = str(report)
    assert text.startswith("check_projection(filters_by_l1, 'filters', sparsity=0.5): FAILED")
    assert "smallest counterexample found" in text and "expected (refimpl)" in text and "got =" in text
    first = report.counterexample
    # The counterexample is genuine: refimpl's answer is strictly closer to W than fn's.
    w64 = first.w.astype(np.float64)
    if first.property == "optimal":
        assert np.sum((w64 - first.got) ** 2) > np.sum((w64 - project_filters(first.w, sparsity=0.5)) ** 2)
    # Shrinking leaves a hand-checkable input: two filters (with sparsity=0.5, keep one of them).
    assert first.w.size <= min(f.w.size for f in report.failures)
    assert first.w.shape[0] == 2


def test_keep0_returning_the_input_fails_membership():
    report = check_projection(shapes_keep0_returns_input, "shapes", keep=0)
    assert not report.passed
    assert "in the set" in report.violated()
    first = report.counterexample
    assert first.property == "in the set" and first.params == {"keep": 0}
    assert first.w.size == 1  # the smallest shape in the default set exposes it
    np.testing.assert_array_equal(first.expected, np.zeros_like(first.w))
    assert "not in the set" in str(report)


def test_drawn_sparsity_reaches_the_keep0_bug():
    """Without a fixed count, drawn sparsities include 1.0 (keep nothing), so the bug still shows."""
    def buggy(w, sparsity):
        return np.array(w, copy=True) if sparsity == 1.0 else project_shapes(w, sparsity=sparsity)

    report = check_projection(buggy, "shapes", n_examples=60)
    assert "in the set" in report.violated()
    assert all(f.params["sparsity"] == 1.0 for f in report.failures)


def test_unification_with_the_median_is_not_optimal():
    def median_unify(w, block_shape, sparsity):
        out = project_unified(w, block_shape, sparsity=sparsity)
        w2d, o2d = w.reshape(len(w), -1), out.reshape(len(w), -1)
        bh, bw = block_shape
        for r in range(0, w2d.shape[0], bh):
            for c in range(0, w2d.shape[1], bw):
                v = w2d[r:r + bh, c:c + bw]
                if not np.array_equal(o2d[r:r + bh, c:c + bw], v):
                    o2d[r:r + bh, c:c + bw] = np.where(v >= 0, 1, -1) * np.median(np.abs(v))
        return out

    report = check_projection(median_unify, "unified", block_shape=(1, 3), sparsity=0.5, n_examples=60,
                              shapes=[(2, 6), (3, 6)])
    assert {"optimal", "agrees with refimpl (tie-free input)"} <= set(report.violated())


def test_mutation_wrong_dtype_and_exceptions_are_reported():
    def mutates(w, sparsity):
        out = project_filters(w, sparsity=sparsity)
        w.flags.writeable = True  # sneaky: the view's base is writeable
        w[...] = 0
        return out

    assert "input not mutated" in check_projection(mutates, "filters", n_examples=10).violated()
    wrong_dtype = check_projection(lambda w, sparsity: project_filters(w, sparsity=sparsity)
                                   .astype(np.float32), "filters", n_examples=10)
    assert wrong_dtype.violated() == {"returns an array": 10}
    assert "dtype float64, got ndarray" in str(wrong_dtype)

    def in_place(w, sparsity):
        w[0] = 0  # fails on the read-only input refimpl passes
        return w

    report = check_projection(in_place, "filters", n_examples=10)
    assert report.violated() == {"returns an array": 10}
    assert "raised ValueError" in str(report)


def test_report_is_reproducible_and_float32_works():
    a = check_projection(filters_by_l1, "filters", sparsity=0.5, n_examples=50, seed=3)
    b = check_projection(filters_by_l1, "filters", sparsity=0.5, n_examples=50, seed=3)
    assert str(a) == str(b)
    report = check_projection(project_filters, "filters", dtype=np.float32, n_examples=40)
    assert report.passed, str(report)
    assert isinstance(report, ProjectionReport)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"structure": "diagonal"}, ValueError, "structure must be one of"),
        ({"n_examples": 0}, ValueError, "n_examples must be a positive integer"),
        ({"dtype": np.int64}, TypeError, "dtype must be a floating dtype"),
        ({"shapes": [(2, 2, 2)]}, ValueError, "shapes must be"),
        ({"structure": "nm", "n": 2, "m": 4, "shapes": [(3, 3)]}, ValueError, "pass shapes="),
    ],
)
def test_errors(kwargs, error, match):
    args = {"structure": "filters", **kwargs}
    with pytest.raises(error, match=match):
        check_projection(project_filters, args.pop("structure"), **args)
