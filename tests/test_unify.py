"""Weight unification (refimpl.projections.unify): the docs/STYLE.md projection checklist, adapted.

A unified block is not "kept or dropped" but replaced by ``sign+(v) * mean|v|``, so "kept entries equal the
input" becomes "copied blocks equal the input, pruned blocks are exactly 0, unified blocks share one
magnitude and keep their signs", and brute-force optimality enumerates every assignment of the three
kinds (copy / unify / prune) to at most 8 blocks.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from refimpl.projections.unify import (
    COPY,
    PRUNE,
    UNIFY,
    _assign,
    _costs,
    _costs_in_range,
    _costs_numba,
    _costs_numpy,
    _premium_order,
    _running_k_smallest_sum_numba,
    _running_k_smallest_sum_numpy,
    mask_unified,
    project_unified,
    unification_costs,
    unify_assignment,
)
from refimpl.testing.strategies import tie_free_weights, weights

ENGINES = ("numba", "numpy")


# --------------------------------------------------------------------------------------------------
# Independent naive twins (loops over blocks, written from the definition)
# --------------------------------------------------------------------------------------------------
def naive_blocks(w, block_shape):
    """List of (row slice, col slice) of the GEMM view's tiles, row-major."""
    w2d = w.reshape(w.shape[0], -1)
    bh, bw = block_shape
    return [(slice(r, r + bh), slice(c, c + bw))
            for r in range(0, w2d.shape[0], bh) for c in range(0, w2d.shape[1], bw)]


def naive_apply(w, block_shape, kinds):
    """Build the result of an assignment ``kinds`` (flat, one per block) from the definition."""
    w2d = np.array(w, dtype=np.float64).reshape(w.shape[0], -1)
    z = w2d.copy()
    for (rs, cs), kind in zip(naive_blocks(w, block_shape), kinds, strict=True):
        v = w2d[rs, cs]
        if kind == PRUNE:
            z[rs, cs] = 0.0
        elif kind == UNIFY:
            z[rs, cs] = np.where(v >= 0, 1.0, -1.0) * np.mean(np.abs(v))
    return z.reshape(w.shape)


def brute_force_best(w, block_shape, n_pruned, n_unified):
    """Least ``||W - Z||^2`` over every assignment with exactly the given counts (<= 8 blocks)."""
    n = len(naive_blocks(w, block_shape))
    best = np.inf
    for kinds in itertools.product((COPY, UNIFY, PRUNE), repeat=n):
        if kinds.count(PRUNE) == n_pruned and kinds.count(UNIFY) == n_unified:
            z = naive_apply(w, block_shape, kinds)
            best = min(best, float(np.sum((np.asarray(w, np.float64) - z) ** 2)))
    return best


def sq_dist(a, b):
    return float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


# Built once: building strategies per example cost more than the properties in a thorough run.
WEIGHTS = {False: weights(dtype=np.float64), True: tie_free_weights(dtype=np.float64)}


@st.composite
def small_problems(draw, max_blocks=8, tie_free=False, joint=True):
    """A weight, a block shape giving <= max_blocks blocks, and counts (n_pruned, n_unified)."""
    w = draw(WEIGHTS[tie_free])
    w2d = w.reshape(w.shape[0], -1)
    rows, cols = w2d.shape
    # Only block shapes with <= max_blocks blocks are drawn (no rejection, so no wasted examples): a block
    # height giving mb <= max_blocks block rows, then a width giving <= max_blocks // mb block columns.
    bh = draw(st.integers(1, rows).filter(lambda bh: -(-rows // bh) <= max_blocks))
    mb = -(-rows // bh)
    bw = draw(st.integers(-(-cols // (max_blocks // mb)), cols))
    bs = (bh, bw)
    n = mb * (-(-cols // bw))
    assert n <= max_blocks
    n_pruned = draw(st.integers(0, n)) if joint else 0
    n_unified = draw(st.integers(0, n - n_pruned))
    return w, bs, n, n_pruned, n_unified


def counts_kwargs(n, n_pruned, n_unified):
    """Express exact counts through the public arguments: keep= copied count, prune= as an exact share."""
    kwargs = {"keep": n - n_pruned - n_unified}
    if n_pruned:
        kwargs["prune"] = n_pruned / n  # round(n_pruned / n * n) == n_pruned for n <= 8
    return kwargs


# --------------------------------------------------------------------------------------------------
# Worked examples
# --------------------------------------------------------------------------------------------------
def test_costs_worked_example():
    magnitude, distortion, energy = unification_costs(np.array([[3.0, -1.0], [0.0, 2.0]]), (1, 2))
    np.testing.assert_array_equal(magnitude, [[2.0], [1.0]])
    np.testing.assert_array_equal(distortion, [[2.0], [2.0]])
    np.testing.assert_array_equal(energy, [[10.0], [4.0]])


@pytest.mark.parametrize("engine", ENGINES)
def test_edge_tiles_average_over_their_real_entries_only(engine):
    w = np.arange(1.0, 16.0).reshape(3, 5)  # 2x2 blocks: a 2x1 right edge, a 1x2 bottom edge, a 1x1 corner
    magnitude, distortion, energy = unification_costs(w, (2, 2), engine=engine)
    for (rs, cs), c, d, e in zip(naive_blocks(w, (2, 2)), magnitude.ravel(), distortion.ravel(),
                                 energy.ravel(), strict=True):
        v = np.abs(w[rs, cs])
        assert c == pytest.approx(v.mean())
        assert d == pytest.approx(np.sum((v - v.mean()) ** 2))
        assert e == pytest.approx(np.sum(v**2))
    assert magnitude.shape == (2, 3)
    assert magnitude[1, 2] == 15.0 and distortion[1, 2] == 0.0  # the 1x1 corner is always unified


def test_unify_only_worked_example():
    w = np.array([[3.0, -1.0, 0.5, 0.25]])
    np.testing.assert_array_equal(project_unified(w, (1, 2), sparsity=0.5), [[3.0, -1.0, 0.375, 0.375]])
    np.testing.assert_array_equal(project_unified(w, (1, 2), unify=0.5, prune=0.5), [[2.0, -2.0, 0, 0]])


def test_zero_entry_takes_positive_sign():
    z = project_unified(np.array([[0.0, -2.0]]), (1, 2), sparsity=1.0)
    np.testing.assert_array_equal(z, [[1.0, -1.0]])


@pytest.mark.parametrize("engine", ENGINES)
def test_pruned_entries_are_positive_zero(engine):
    # Dropped entries are +0.0 (docs/ALGORITHMS.md), also where the weight was negative: the golden set had
    # -0.0 there (sign(v) * 0) until compare_arrays learnt to check the sign of zero.
    w = np.array([[-3.0, -3.0, 5.0, 5.1, -0.1, 0.2]])
    z = project_unified(w, (1, 2), unify=1 / 3, prune=1 / 3, engine=engine)
    np.testing.assert_array_equal(z, [[-3.0, -3.0, 5.0, 5.1, 0.0, 0.0]])
    assert not np.signbit(z[0, 4:]).any()
    # a unified block keeps each entry's sign, a copied -0.0 stays -0.0
    z = project_unified(np.array([[-0.0, 4.0, -1.0, -3.0]]), (1, 2), unify=0.5, engine=engine)
    assert np.signbit(z[0, 0]) and z[0, 1] == 4.0
    np.testing.assert_array_equal(z[0, 2:], [-2.0, -2.0])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("w", "prune_first_cost", "unify_first_cost"),
    [
        # A is cheapest to prune *and* has d = 0; B has a large distortion: prune-first gets it wrong.
        ([[0.5, 0.5, 0.5, 0.5], [1.01, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 3.5]], 1.0 + 0.1875, None),
        # A has d = 0 and is cheap to prune, C is spiky: unify-first gets it wrong.
        ([[0.5, 0.5, 0.5, 0.5], [3.0, 3.0, 3.0, 3.5], [1.2, 0.0, 0.0, 0.0]], None, 1.44),
    ],
)
def test_joint_beats_both_greedy_orders(w, prune_first_cost, unify_first_cost, engine):
    """Regression: the exact split scan, not "prune the cheapest, then unify" (or the reverse)."""
    w = np.array(w)
    z = project_unified(w, (1, 4), unify=1 / 3, prune=1 / 3, engine=engine)
    cost = sq_dist(w, z)
    assert cost == pytest.approx(brute_force_best(w, (1, 4), 1, 1))
    greedy = prune_first_cost if prune_first_cost is not None else unify_first_cost
    assert cost < greedy - 0.1


# --------------------------------------------------------------------------------------------------
# Properties (Hypothesis)
# --------------------------------------------------------------------------------------------------
@given(small_problems())
def test_output_in_the_set_and_counts_exact(problem):
    w, bs, n, n_pruned, n_unified = problem
    kw = counts_kwargs(n, n_pruned, n_unified)
    z = project_unified(w, bs, **kw)
    kinds = unify_assignment(w, bs, **kw).ravel()
    assert np.count_nonzero(kinds == PRUNE) == n_pruned
    assert np.count_nonzero(kinds == UNIFY) == n_unified
    w2d, z2d = w.reshape(w.shape[0], -1), z.reshape(w.shape[0], -1)
    for (rs, cs), kind in zip(naive_blocks(w, bs), kinds, strict=True):
        v, zb = w2d[rs, cs], z2d[rs, cs]
        if kind == COPY:
            np.testing.assert_array_equal(zb, v)  # copied exactly
        elif kind == PRUNE:
            assert np.all(zb == 0)  # exactly zero
        else:
            assert np.all(np.abs(zb) == np.abs(zb).flat[0])  # one magnitude...
            assert np.all(np.where(v >= 0, zb >= 0, zb <= 0))  # ...and the signs of v (sign(0) = +)
    np.testing.assert_array_equal(mask_unified(w, bs, **kw).reshape(w2d.shape),
                                  np.kron(kinds.reshape(-(-w2d.shape[0] // bs[0]), -1) == COPY,
                                          np.ones(bs, bool))[: w2d.shape[0], : w2d.shape[1]])


@given(small_problems())
def test_optimal_against_brute_force(problem):
    w, bs, n, n_pruned, n_unified = problem
    for engine in ENGINES:
        z = project_unified(w, bs, engine=engine, **counts_kwargs(n, n_pruned, n_unified))
        best = brute_force_best(w, bs, n_pruned, n_unified)
        assert sq_dist(w, z) <= best + 1e-9 * (1 + best)


@given(small_problems(max_blocks=30))
def test_idempotent_exactly(problem):
    w, bs, n, n_pruned, n_unified = problem
    kw = counts_kwargs(n, n_pruned, n_unified)
    z = project_unified(w, bs, **kw)
    np.testing.assert_array_equal(project_unified(z, bs, **kw), z)


@given(small_problems(max_blocks=30), st.sampled_from(ENGINES))
def test_projection_is_pointwise_nearest_for_its_own_assignment(problem, engine):
    """Given the chosen kinds, the result equals the definition (naive loop twin)."""
    w, bs, n, n_pruned, n_unified = problem
    kw = counts_kwargs(n, n_pruned, n_unified)
    kinds = unify_assignment(w, bs, engine=engine, **kw).ravel()
    np.testing.assert_allclose(project_unified(w, bs, engine=engine, **kw),
                               naive_apply(w, bs, kinds), rtol=1e-12, atol=0)


@given(small_problems(max_blocks=40))
def test_engines_agree_bit_for_bit(problem):
    w, bs, n, n_pruned, n_unified = problem
    for a, b in zip(unification_costs(w, bs, engine="numba"), unification_costs(w, bs, engine="numpy"),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    kw = counts_kwargs(n, n_pruned, n_unified)
    np.testing.assert_array_equal(unify_assignment(w, bs, engine="numba", **kw),
                                  unify_assignment(w, bs, engine="numpy", **kw))


@given(st.lists(st.floats(0, 100, allow_nan=False), max_size=30), st.data())
def test_running_k_smallest_sum_twins(values, data):
    x = np.array(values, dtype=np.float64)
    k = data.draw(st.integers(0, x.size))
    expected = np.array([np.sort(x[:t])[:k].sum() if t >= k else np.inf for t in range(x.size + 1)])
    for kernel in (_running_k_smallest_sum_numpy, _running_k_smallest_sum_numba):
        np.testing.assert_allclose(kernel(x, k), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(_running_k_smallest_sum_numpy(x, k), _running_k_smallest_sum_numba(x, k))


@given(small_problems(max_blocks=30, tie_free=True), st.sampled_from([0.5, 2.0, 3.7]))
def test_positive_scaling(problem, c):
    w, bs, n, n_pruned, n_unified = problem
    kw = counts_kwargs(n, n_pruned, n_unified)
    np.testing.assert_allclose(project_unified(c * w, bs, **kw), c * project_unified(w, bs, **kw),
                               rtol=1e-12, atol=0)


@given(small_problems(max_blocks=30, tie_free=True), st.randoms(use_true_random=False))
def test_permuting_block_rows_permutes_the_result(problem, random):
    w, bs, n, n_pruned, n_unified = problem
    w2d = w.reshape(w.shape[0], -1)
    assume(w2d.shape[0] % bs[0] == 0)
    block_rows = list(range(w2d.shape[0] // bs[0]))
    random.shuffle(block_rows)
    rows = np.concatenate([np.arange(b * bs[0], (b + 1) * bs[0]) for b in block_rows])
    kw = counts_kwargs(n, n_pruned, n_unified)
    np.testing.assert_array_equal(project_unified(w2d[rows], bs, **kw),
                                  project_unified(w2d, bs, **kw)[rows])


@pytest.mark.parametrize("seed", range(5))
def test_per_block_optimum_matches_minimize_scalar(seed):
    v = np.random.default_rng(seed).standard_normal(7)
    res = minimize_scalar(lambda c: np.sum((v - np.where(v >= 0, 1, -1) * c) ** 2),
                          bounds=(0, 10), method="bounded", options={"xatol": 1e-12})
    magnitude, distortion, _ = unification_costs(v[None, :], (1, 7))
    assert magnitude[0, 0] == pytest.approx(res.x, abs=1e-8)
    assert distortion[0, 0] == pytest.approx(res.fun, rel=1e-10)
    # Keeping the signs is optimal too: every sign pattern with its best c is no better.
    for signs in itertools.product((-1.0, 1.0), repeat=7):
        s = np.array(signs)
        c = max(0.0, float(np.dot(s, v)) / 7)
        assert np.sum((v - s * c) ** 2) >= distortion[0, 0] - 1e-12


# --------------------------------------------------------------------------------------------------
# Extremes, counts, dtypes and memory
# --------------------------------------------------------------------------------------------------
def test_extremes(rng):
    w = rng.standard_normal((4, 3, 3, 3))
    np.testing.assert_array_equal(project_unified(w, (2, 3), sparsity=0.0), w)
    np.testing.assert_array_equal(project_unified(w, (2, 3), keep=0, prune=1.0), np.zeros_like(w))
    all_unified = project_unified(w, (2, 3), sparsity=1.0).reshape(4, 27)
    for (rs, cs) in naive_blocks(w, (2, 3)):
        block = np.abs(all_unified[rs, cs])
        assert np.all(block == block.flat[0])


def test_counts_round_half_to_even(rng):
    w = rng.standard_normal((2, 5))  # (1, 1) blocks: n = 10
    assert np.count_nonzero(unify_assignment(w, (1, 1), sparsity=0.25) == UNIFY) == 2  # round(2.5) = 2
    assert np.count_nonzero(unify_assignment(w, (1, 1), sparsity=0.35) == UNIFY) == 4  # round(3.5) = 4
    kinds = unify_assignment(w, (1, 2), keep=1, prune=0.5)  # 6 blocks: 3 pruned, 1 copied, 2 unified
    assert np.bincount(kinds.ravel(), minlength=3).tolist() == [1, 2, 3]


def test_ties_keep_the_lower_flat_index():
    w = np.ones((1, 4)) * np.array([1.0, 2.0, 1.0, 2.0])  # (1, 2) blocks: equal distortions
    np.testing.assert_array_equal(unify_assignment(w, (1, 2), keep=1), [[COPY, UNIFY]])
    np.testing.assert_array_equal(unify_assignment(w, (1, 2), keep=0, prune=0.5), [[UNIFY, PRUNE]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_kept_input_untouched_read_only_and_non_contiguous(rng, dtype):
    w = rng.standard_normal((6, 10)).astype(dtype)
    before = w.copy()
    w.flags.writeable = False
    z = project_unified(w, (2, 2), sparsity=0.5, prune=0.25)
    assert z.dtype == dtype and z.shape == w.shape
    np.testing.assert_array_equal(w, before)
    strided = np.asarray(rng.standard_normal((6, 20)), dtype=dtype)[:, ::2]
    np.testing.assert_array_equal(project_unified(strided, (2, 2), sparsity=0.5),
                                  project_unified(np.ascontiguousarray(strided), (2, 2), sparsity=0.5))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"w": np.array([[np.nan, 1.0]])}, ValueError, "w contains NaN"),
        ({"w": np.ones((2, 2, 2))}, ValueError, "w must have 2 or 4 dimensions"),
        ({"block_shape": (0, 1)}, ValueError, r"block_shape\[0\]"),
        ({"block_shape": (1, 9)}, ValueError, r"block_shape\[1\]"),
        ({"block_shape": (2,)}, ValueError, "block_shape must be a pair"),
        ({"block_shape": (1.5, 1)}, TypeError, r"block_shape\[0\] must be an integer"),
        ({"sparsity": 1.5}, ValueError, "sparsity must lie in"),
        ({"sparsity": 0.5, "keep": 1}, ValueError, "exactly one of sparsity=, keep= or unify="),
        ({"sparsity": None}, ValueError, "exactly one of sparsity=, keep= or unify="),
        ({"sparsity": None, "keep": 9}, ValueError, "keep must lie in"),
        ({"prune": -0.1}, ValueError, "prune must lie in"),
        ({"sparsity": 0.75, "prune": 0.5}, ValueError, "more than the 4 blocks"),
        ({"sparsity": None, "keep": 3, "prune": 0.5}, ValueError, "exceed the 4 blocks"),
        ({"engine": "cuda"}, ValueError, "engine must be one of"),
    ],
)
def test_errors_name_the_argument(kwargs, error, match):
    args = {"w": np.ones((2, 4)), "block_shape": (1, 2), "sparsity": 0.5, **kwargs}
    with pytest.raises(error, match=match):
        project_unified(args.pop("w"), args.pop("block_shape"), **args)


# --------------------------------------------------------------------------------------------------
# Fast path (plain float64 costs) vs exact-range path (each block scaled by a power of two)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, log2_span", [(np.float32, 2), (np.float32, 60), (np.float64, 2),
                                              (np.float64, 150)])
@pytest.mark.parametrize("bs", [(1, 4), (3, 3), (4, 7), (1, 1)])
def test_fast_and_exact_cost_paths_agree(dtype, log2_span, bs, rng):
    """On exact-range data the scaled costs times 2**exp2 are the plain costs bit for bit; same kinds."""
    w2d = rng.standard_normal((8, 14)) * np.exp2(rng.uniform(-log2_span, log2_span, (8, 14)))
    w2d[rng.random((8, 14)) < 0.1] = 0.0
    w2d[:, :2] = 1.5                                    # some uniform blocks (distortion exactly 0)
    w2d = w2d.astype(dtype)
    bh, bw = bs
    assert _costs_in_range(w2d, bh * bw, "numpy")
    for engine in ENGINES:
        plain = _costs_numba(w2d, bh, bw, False) if engine == "numba" else _costs_numpy(w2d, bh, bw, False)
        exact = _costs_numba(w2d, bh, bw, True) if engine == "numba" else _costs_numpy(w2d, bh, bw, True)
        exp2 = 2 * exact[3]
        assert np.array_equal(plain[0], exact[0])                      # magnitudes: the true ones
        assert np.array_equal(plain[1], np.ldexp(exact[1], exp2))      # distortion
        assert np.array_equal(plain[2], np.ldexp(exact[2], exp2))      # energy
        n = plain[1].size
        for n_pruned, n_unified in [(0, n // 2), (n // 3, 0), (n // 4, n // 3), (1, n - 1)]:
            np.testing.assert_array_equal(
                _assign(plain[1], plain[2], None, n_pruned, n_unified, engine),
                _assign(exact[1], exact[2], exp2, n_pruned, n_unified, engine))


@pytest.mark.parametrize("w", [np.array([[1e-200, 1.0]]), np.array([[1e200, 1.0]]),
                               np.array([[1.0, 1.0 + 2.0**-52]]) * 2.0**-460])  # deviation^2 ~ 2**-1026
def test_cost_fallback_triggers_on_extreme_values(w):
    """Squares (or squared deviations) that would leave float64's normal range take the exact path."""
    assert not _costs_in_range(w, 2, "numpy")
    assert _costs(w, 1, 2, "numpy")[3] is not None
    assert _costs_in_range(np.array([[1e-100, 1e100]]), 2, "numpy")
    assert _costs(np.array([[1e-100, 1e100]]), 1, 2, "numpy")[3] is None


def test_extreme_values_keep_the_exact_assignment(engine):
    """Blocks [1e200, 1e200] (d = 0), [3e199, 1e-200], [1e-200, 2e-200] (tiny d), [0, 0] (d = 0).

    Plain squares overflow to inf (NaN premiums) and underflow to 0 (the tiny block would tie with the
    uniform ones); the exact-range costs rank every block correctly.
    """
    w = np.array([[1e200, 1e200, 3e199, 1e-200, 1e-200, 2e-200, 0.0, 0.0]])
    # unify 2: the two blocks of zero distortion, not the tiny-but-positive one (index 2)
    np.testing.assert_array_equal(unify_assignment(w, (1, 2), unify=0.5, engine=engine),
                                  [[UNIFY, COPY, COPY, UNIFY]])
    # prune 2 (least energy: the zero block and the tiny one), unify 1 (block 0, d = 0): cost 5e-400
    np.testing.assert_array_equal(unify_assignment(w, (1, 2), keep=1, prune=0.5, engine=engine),
                                  [[UNIFY, COPY, PRUNE, PRUNE]])
    z = project_unified(w, (1, 2), unify=0.25, prune=0.5, engine=engine)
    np.testing.assert_array_equal(z, [[1e200, 1e200, 3e199, 1e-200, 0.0, 0.0, 0.0, 0.0]])
    # the unified magnitude of a tiny block is exact: mean(1e-200, 2e-200), computed at its own scale
    z = project_unified(w, (1, 2), unify=0.75, engine=engine)       # unifies blocks 0, 2 and 3
    assert z[0, 4] == z[0, 5] == np.mean([1e-200, 2e-200])
    # the engines agree on the exact-range path too
    costs = [unification_costs(w, (1, 2), engine=e) for e in ENGINES]
    for a, b in zip(*costs, strict=True):
        np.testing.assert_array_equal(a, b)


@given(st.lists(st.integers(0, 4), min_size=1, max_size=40))
def test_premium_order_is_lexsort_with_higher_index_first(values):
    """The fast argsort + tie repair equals the defining lexsort, ties (frequent here) included."""
    premium = np.array(values, dtype=np.float64)
    np.testing.assert_array_equal(_premium_order(premium), np.lexsort((-np.arange(premium.size), premium)))
