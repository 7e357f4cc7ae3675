"""The plain projections of refimpl.projections.reference equal the fast ones, bit for bit.

Inputs are small-integer weights (many exact ties, every sum of squares exact, so the two implementations
must break ties identically) and tie-free Gaussian weights, float32 and float64, with ``sparsity=`` and
``keep=``. On other data the two agree too, except that a different summation order may round two
near-equal group norms differently (the fast code sums in another order); such near-ties are no part of the
contract and are not drawn here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.projections import PROJECTIONS, project_unstructured_global
from refimpl.projections import reference as ref
from refimpl.testing.strategies import FLOAT_DTYPES, block_shapes, count_args, nm_patterns, weight_shapes

SHAPES = weight_shapes()


@st.composite
def weights(draw, shapes=SHAPES):
    shape = draw(shapes)
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    if draw(st.booleans()):
        return draw(hnp.arrays(dtype, shape, elements=st.integers(-3, 3).map(float)))
    return np.random.default_rng(draw(st.integers(0, 2**32 - 1))).standard_normal(shape).astype(dtype)


def assert_same(fast, plain):
    assert fast.dtype == plain.dtype and fast.shape == plain.shape
    assert np.array_equal(fast, plain), f"\nfast:\n{fast}\nplain:\n{plain}"
    assert not np.any(np.signbit(plain[(plain == 0) & ~np.signbit(fast)]))  # dropped entries are +0


def n_groups(name, w, params):
    return int(ref.group_ids(name, w.shape, params.get("block_shape")).max()) + 1


@pytest.mark.parametrize("name", ref.GROUP_STRUCTURES)
@given(data=st.data())
def test_group_projections_equal_the_plain_ones(name, data):
    w = data.draw(weights())
    params = {}
    if name == "blocks":
        params["block_shape"] = data.draw(block_shapes((w.shape[0], w.size // w.shape[0])))
    count = data.draw(count_args(n_groups(name, w, params)))
    args = (params["block_shape"],) if name == "blocks" else ()
    assert_same(PROJECTIONS[name][0](w, *args, **count), ref.REFERENCES[name](w, *args, **count))


@given(data=st.data())
def test_balanced_and_nm_equal_the_plain_ones(data):
    w = data.draw(weights())
    k = w.size // w.shape[0]
    v = data.draw(st.integers(1, k))
    count = data.draw(count_args(v))
    assert_same(PROJECTIONS["balanced"][0](w, v, **count), ref.reference_balanced(w, v, **count))
    n, m = data.draw(nm_patterns(k))
    assert_same(PROJECTIONS["nm"][0](w, n, m), ref.reference_nm(w, n, m))


@given(data=st.data())
def test_vector_block_equals_the_plain_one(data):
    w = data.draw(weights())
    k = w.size // w.shape[0]
    v = data.draw(st.integers(1, k))
    block_shape = data.draw(block_shapes((w.shape[0], k)))
    if data.draw(st.booleans()):
        counts = {
            "total_sparsity": data.draw(st.floats(0, 1)),
            "vector_share": data.draw(st.sampled_from([0.0, 0.5, 1.0])),
        }
    else:
        n_blocks = -(-w.shape[0] // block_shape[0]) * -(-k // block_shape[1])
        counts = {f"vector_{key}": value for key, value in data.draw(count_args(v)).items()}
        counts.update({f"block_{key}": value for key, value in data.draw(count_args(n_blocks)).items()})
    assert_same(
        PROJECTIONS["vector_block"][0](w, v, block_shape, **counts),
        ref.reference_vector_block(w, v, block_shape, **counts),
    )


@given(data=st.data())
def test_unified_equals_the_plain_one(data):
    """Block areas 1, 2 and 4 keep every mean and cost of integer weights exact, so ties are real ties."""
    w = data.draw(weights())
    rows, k = w.shape[0], w.size // w.shape[0]
    block_shape = data.draw(
        st.sampled_from([(1, 1), (1, 2), (2, 1), (2, 2), (1, 4)]).filter(lambda b: b[0] <= rows and b[1] <= k)
    )
    n = -(-rows // block_shape[0]) * -(-k // block_shape[1])
    prune = data.draw(st.sampled_from([None, 0.0, 0.25, 0.5]))
    n_pruned = 0 if prune is None else round(prune * n)
    unify = data.draw(st.integers(0, n - n_pruned)) / n if n else 0.0
    if round(unify * n) + n_pruned > n:
        unify = (n - n_pruned) / n
    assert_same(
        PROJECTIONS["unified"][0](w, block_shape, unify=unify, prune=prune),
        ref.reference_unified(w, block_shape, unify=unify, prune=prune),
    )


@given(data=st.data())
def test_unstructured_global_equals_the_plain_one(data):
    ws = data.draw(st.lists(weights(), min_size=1, max_size=3))
    count = data.draw(count_args(sum(w.size for w in ws)))
    for fast, plain in zip(
        project_unstructured_global(ws, **count), ref.reference_unstructured_global(ws, **count), strict=True
    ):
        assert_same(fast, plain)


def test_the_rules_by_hand():
    """The counting rule (round-half-to-even) and the tie rule (lower index) on numbers one can check."""
    assert [ref.keep_count(n, sparsity=0.5) for n in (1, 2, 3, 4, 5, 6, 7)] == [1, 1, 1, 2, 3, 3, 3]
    assert ref.keep_count(6, sparsity=0.25) == 4  # round(1.5) = 2 pruned
    assert list(ref.top_k(np.array([2.0, 5.0, 2.0, 5.0]), 3)) == [1, 3, 0]
    w = np.array([[1.0, -1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 1.0]])  # filters 0, 1, 3 tie
    np.testing.assert_array_equal(ref.reference_filters(w, keep=2), [[1, -1], [1, 1], [0, 0], [0, 0]])
    z = ref.reference_balanced(np.array([[0.1, -0.9, 0.5, 0.4, 7.0]]), 2, keep=1)
    np.testing.assert_array_equal(z, [[0, -0.9, 0.5, 0, 0]])  # edge [7.0] keeps round(0.5) = 0
    z = ref.reference_unified(np.array([[3.0, -1.0, 0.5, 0.25]]), (1, 2), sparsity=0.5)
    np.testing.assert_array_equal(z, [[3.0, -1.0, 0.375, 0.375]])
    assert math.isclose(
        ref.reference_unified(np.array([[1.0, 1.0, 5.0, 1.0, 0.1, 0.2]]), (1, 2), unify=1 / 3, prune=1 / 3)[
            0, 0
        ],
        1.0,
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: ref.reference_filters(np.ones((2, 2)), sparsity=0.5, keep=1), ValueError, "exactly one"),
        (lambda: ref.reference_filters(np.ones((2, 2)), keep=3), ValueError, r"keep must lie in \[0, 2\]"),
        (lambda: ref.reference_filters(np.ones((2, 2)), sparsity=1.5), ValueError, "sparsity must lie"),
        (lambda: ref.reference_filters(np.ones((2, 2)), keep=1.0), TypeError, "keep must be an integer"),
        (lambda: ref.reference_blocks(np.ones((2, 2)), (3, 1), keep=1), ValueError, "block_shape"),
        (lambda: ref.reference_balanced(np.ones((2, 2)), 3, keep=1), ValueError, "vector_size must lie"),
        (lambda: ref.reference_nm(np.ones((2, 6)), 2, 4), ValueError, "m must divide"),
        (lambda: ref.reference_filters(np.array([[np.nan]]), keep=1), ValueError, "w"),
        (lambda: ref.group_ids("diagonal", (2, 2)), ValueError, "structure must be one of"),
    ],
)
def test_bad_input_names_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_every_registered_structure_has_a_plain_twin_cited_in_its_docstring():
    assert set(ref.REFERENCES) == set(PROJECTIONS)
    for name, (project, _) in PROJECTIONS.items():
        assert f"reference_{name}" in project.__doc__, f"project_{name} does not cite its plain twin"
