"""Targets the structures can meet: balanced quantization (check_vector_sparsity), vector ∧ block split."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.config import load_config
from refimpl.projections import (
    VECTOR_SPARSITY_TOLERANCE,
    check_vector_sparsity,
    mask_balanced,
    mask_vector_block,
    project_vector_block,
    vector_block_split,
)

CONSTRAINT = {"params": "conv", "structure": "balanced", "vector_size": 8}


# --- balanced quantization -----------------------------------------------------------------------------

@pytest.mark.parametrize("v", [1, 2, 3, 4, 8, 10, 16, 25])
def test_every_multiple_of_one_over_v_is_accepted_with_the_counting_rules_keep(v):
    rng = np.random.default_rng(v)
    w = rng.standard_normal((3, 2 * v))
    for pruned in range(v + 1):
        s = pruned / v
        k = check_vector_sparsity(s, v)
        assert k == v - pruned
        # the count is the projection's own: the mask keeps exactly k of every vector
        mask = mask_balanced(w, v, sparsity=s)
        assert np.all(mask.reshape(3, 2, v).sum(axis=2) == k)


def test_the_issues_case_is_refused_naming_the_nearest_achievable_values():
    assert round(0.95 * 8) == 8  # what the counting rule alone would do: prune all 8 of every vector
    with pytest.raises(ValueError, match=r"sparsity=0\.95 cannot be met with vector_size=8") as err:
        check_vector_sparsity(0.95, 8)
    message = str(err.value)
    assert "0.875 (keep 1 of 8)" in message and "1 (keep 0 of 8)" in message
    assert "\n" not in message


@pytest.mark.parametrize(("s", "v", "nearest"), [
    (0.9, 8, ["0.875 (keep 1 of 8)", "1 (keep 0 of 8)"]),
    (0.3, 4, ["0.25 (keep 3 of 4)", "0.5 (keep 2 of 4)"]),
    (0.996, 100, ["0.99 (keep 1 of 100)", "1 (keep 0 of 100)"]),   # within the tolerance, keeps nothing
    (0.004, 100, ["0 (keep 100 of 100)", "0.01 (keep 99 of 100)"]),  # within it, prunes nothing
    (0.5, 1, ["0 (keep 1 of 1)", "1 (keep 0 of 1)"]),
])
def test_off_grid_or_all_or_nothing_requests_are_refused(s, v, nearest):
    with pytest.raises(ValueError, match="cannot be met") as err:
        check_vector_sparsity(s, v)
    for option in nearest:
        assert option in str(err.value)


def test_the_tolerance_absorbs_a_rounded_decimal_only():
    assert check_vector_sparsity(0.33, 3) == 2                  # 1/3 written with two digits
    assert check_vector_sparsity(0.667, 3) == 1
    with pytest.raises(ValueError):
        check_vector_sparsity(1 / 3 + VECTOR_SPARSITY_TOLERANCE * 1.01, 3)
    assert check_vector_sparsity(0.3, 4, tolerance=0.05) == 3   # a caller may widen it
    assert check_vector_sparsity(0.0, 1) == 1 and check_vector_sparsity(1.0, 1) == 0


@settings(max_examples=200, deadline=None)
@given(s=st.floats(0, 1), v=st.integers(1, 64))
def test_accepted_iff_within_tolerance_and_not_all_or_nothing(s, v):
    pruned = round(s * v)
    ok = abs(pruned / v - s) <= VECTOR_SPARSITY_TOLERANCE and not (0 < s < 1 and pruned in (0, v))
    if ok:
        assert check_vector_sparsity(s, v) == v - pruned
    else:
        with pytest.raises(ValueError, match="cannot be met"):
            check_vector_sparsity(s, v)


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"sparsity": 1.5, "vector_size": 4}, ValueError, "sparsity"),
    ({"sparsity": "0.5", "vector_size": 4}, TypeError, "sparsity"),
    ({"sparsity": 0.5, "vector_size": 4.0}, TypeError, "vector_size"),
    ({"sparsity": 0.5, "vector_size": 0}, ValueError, "vector_size"),
    ({"sparsity": 0.5, "vector_size": 4, "tolerance": -1}, ValueError, "tolerance"),
])
def test_bad_arguments_name_themselves(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        check_vector_sparsity(**kwargs)


def test_a_config_with_an_unachievable_balanced_target_is_refused_before_any_work():
    match = r"'admm\.constraints\[0\]\.sparsity' in <overrides>: .*0\.875 \(keep 1"
    with pytest.raises(ValueError, match=match):
        load_config(None, {"admm.constraints": [{**CONSTRAINT, "sparsity": 0.95}]})
    assert load_config(None, {"admm.constraints": [{**CONSTRAINT, "sparsity": 0.875}]})
    # progressive targets replace the sparsity: the final one is what the run promises
    with pytest.raises(ValueError, match=r"'admm\.targets' in <overrides>: the final target"):
        load_config(None, {"admm.targets": [0.5, 0.9], "admm.constraints": [{**CONSTRAINT, "sparsity": 0.5}]})
    assert load_config(None, {"admm.targets": [0.3, 0.75],
                              "admm.constraints": [{**CONSTRAINT, "sparsity": 0.5}]})
    vb = {"params": "conv", "structure": "vector_block", "vector_size": 8, "block_shape": [2, 2],
          "block_sparsity": 0.5}
    with pytest.raises(ValueError, match=r"vector_sparsity.*cannot be met"):
        load_config(None, {"admm.constraints": [{**vb, "vector_sparsity": 0.95}]})
    assert load_config(None, {"admm.constraints": [{**vb, "vector_sparsity": 0.75}]})


# --- the vector ∧ block split --------------------------------------------------------------------------

@st.composite
def aligned_cases(draw):
    """A weight whose blocks consist of whole vectors: bw a multiple of V, V | K, bh | F, bw | K."""
    v = draw(st.sampled_from([1, 2, 4, 8]))
    bw = v * draw(st.integers(1, 3))
    bh = draw(st.integers(1, 3))
    rows, cols = bh * draw(st.integers(1, 4)), bw * draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.standard_normal((rows, cols))
    return w, v, (bh, bw), draw(st.floats(0, 1)), draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))


@settings(max_examples=150, deadline=None)
@given(case=aligned_cases())
def test_the_achieved_total_matches_the_split_when_blocks_hold_whole_vectors(case):
    w, v, (bh, bw), s, share = case
    n_blocks = (w.shape[0] // bh) * (w.shape[1] // bw)
    k_v, k_b = vector_block_split(s, v, n_blocks, share)
    mask = mask_vector_block(w, v, (bh, bw), total_sparsity=s, vector_share=share)
    achieved_density = mask.mean()
    assert math.isclose(achieved_density, (k_v / v) * (k_b / n_blocks), rel_tol=0, abs_tol=1e-12)
    # only the block count is rounded: within half a block's share of kept entries
    assert abs((1 - achieved_density) - s) <= k_v / (2 * v * n_blocks) + 1e-12
    # and it is the same mask as giving the two counts explicitly
    explicit = mask_vector_block(w, v, (bh, bw), vector_keep=k_v, block_keep=k_b)
    assert np.array_equal(mask, explicit)
    assert np.array_equal(project_vector_block(w, v, (bh, bw), total_sparsity=s, vector_share=share),
                          np.where(mask, w, 0.0))


def test_the_split_by_hand():
    assert vector_block_split(0.75, 4, 16) == (2, 8)            # both masks keep sqrt(1/4) = 1/2
    assert vector_block_split(0.75, 4, 16, vector_share=1.0) == (1, 16)   # all from the vectors
    assert vector_block_split(0.75, 4, 16, vector_share=0.0) == (4, 4)    # all from the blocks
    assert vector_block_split(0.9, 8, 100, 0.5) == (3, 27)      # ceil(8 * 0.316) = 3, round(100*.1*8/3) = 27
    assert vector_block_split(1.0, 8, 10) == (0, 0) and vector_block_split(0.0, 8, 10) == (8, 10)


@settings(max_examples=200, deadline=None)
@given(s=st.floats(0, 1), v=st.integers(1, 32), n_blocks=st.integers(1, 500), share=st.floats(0, 1))
def test_the_vector_part_never_asks_the_blocks_for_more_than_all(s, v, n_blocks, share):
    k_v, k_b = vector_block_split(s, v, n_blocks, share)
    assert 0 <= k_v <= v and 0 <= k_b <= n_blocks
    d = 1 - s
    if d > 0:
        assert k_v >= 1 and k_v / v >= d * (1 - 1e-9)          # rounded up: at least the total density
        assert abs(k_b - n_blocks * d * v / k_v) <= 0.5 + 1e-9   # so the blocks reach the total


def test_a_more_vector_heavy_split_keeps_fewer_per_vector_and_more_blocks():
    splits = [vector_block_split(0.9, 16, 64, share) for share in (0.0, 0.25, 0.5, 0.75, 1.0)]
    k_vs, k_bs = [k for k, _ in splits], [k for _, k in splits]
    assert k_vs == sorted(k_vs, reverse=True) and k_bs == sorted(k_bs)
    assert splits[0] == (16, 6) and splits[-1] == (2, 51)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"total_sparsity": 0.5, "vector_keep": 1}, "not both"),
    ({"total_sparsity": 0.5, "block_sparsity": 0.5}, "not both"),
    ({"vector_share": 0.5, "vector_keep": 1, "block_keep": 1}, "give total_sparsity"),
    ({"total_sparsity": 1.5}, "total_sparsity"),
    ({"total_sparsity": 0.5, "vector_share": 2.0}, "vector_share"),
])
def test_bad_vector_block_amounts_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        project_vector_block(np.ones((4, 8)), 4, (2, 4), **kwargs)


def test_a_vector_block_constraint_takes_a_total_target():
    from refimpl.prune import Constraint

    c = Constraint("fc.weight", "vector_block", vector_size=4, block_shape=(2, 4), total_sparsity=0.75,
                   vector_share=0.5)
    w = np.random.default_rng(0).standard_normal((8, 16))
    assert c.mask(w).mean() == 0.25
