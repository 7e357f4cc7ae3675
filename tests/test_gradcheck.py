"""The finite-difference checker itself (refimpl.testing.gradcheck), in particular its sampled form."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.testing.gradcheck import check_gradient, numerical_gradient


def _cubic(x):
    """f(x) = sum(x^3 + x) with gradient 3x^2 + 1."""
    return (lambda: float(np.sum(x ** 3 + x))), 3 * x ** 2 + 1


def test_full_numerical_gradient_matches_the_analytic_one_and_restores_x(rng):
    x = rng.standard_normal((4, 5))
    before = x.copy()
    f, grad = _cubic(x)
    numeric = numerical_gradient(f, x)
    assert numeric.shape == x.shape
    np.testing.assert_allclose(numeric, grad, rtol=1e-8)
    np.testing.assert_array_equal(x, before)


def test_sampled_entries_equal_the_full_differences_at_those_entries(rng):
    x = rng.standard_normal((6, 7))
    f, _ = _cubic(x)
    sample = np.array([40, 0, 13, 13, 41])  # any order, repeats allowed
    np.testing.assert_array_equal(numerical_gradient(f, x, indices=sample),
                                  numerical_gradient(f, x).reshape(-1)[sample])


def test_sampled_check_compares_only_the_sampled_entries(rng):
    x = rng.standard_normal((10, 10))
    f, grad = _cubic(x)
    wrong_elsewhere = grad.copy()
    wrong_elsewhere.reshape(-1)[99] += 1.0
    sample = np.arange(0, 99, 3)
    assert check_gradient(f, x, wrong_elsewhere, indices=sample) < 1e-7
    with pytest.raises(AssertionError, match=r"gradient of x \(34 sampled entries\): relative error"):
        check_gradient(f, x, wrong_elsewhere, indices=np.append(sample, 99))
    with pytest.raises(AssertionError, match="gradient of x: relative error"):
        check_gradient(f, x, wrong_elsewhere)


@pytest.mark.parametrize(("indices", "error", "match"), [
    (np.array([0.5]), TypeError, "indices must be a 1-D array of integers"),
    (np.array([[1, 2]]), TypeError, "indices must be a 1-D array of integers"),
    (np.array([0, 12]), ValueError, r"indices must lie in \[0, 12\)"),
    (np.array([-1]), ValueError, r"indices must lie in \[0, 12\)"),
])
def test_bad_indices_are_rejected_naming_them(indices, error, match):
    x = np.zeros((3, 4))
    with pytest.raises(error, match=match):
        numerical_gradient(lambda: 0.0, x, indices=indices)


def test_non_float64_and_non_contiguous_inputs_are_rejected():
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(lambda: 0.0, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(lambda: 0.0, np.zeros((4, 4))[:, :2])  # rows not evenly spaced: no flat view
