"""Tests of refimpl.projections: docs/STYLE.md's checklist for every structure, plus worked examples,
tie and rounding rules, errors, the L1-vs-L2 counterexample and cross-checks against torch.nn.utils.prune.

The reference twins here (``naive_groups``, ``reference_group_mask``, ``reference_balanced_mask``) are
written with loops over the weight's own axes, independently of the library's GEMM-view tiling.
"""

from __future__ import annotations

import functools
import itertools
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refimpl.projections import (
    PROJECTIONS,
    mask_balanced,
    mask_blocks,
    mask_channels,
    mask_filters,
    mask_nm,
    mask_unstructured,
    mask_unstructured_global,
    mask_vector_block,
    project_balanced,
    project_blocks,
    project_channels,
    project_filters,
    project_kernels,
    project_nm,
    project_shapes,
    project_unstructured,
    project_unstructured_global,
    project_vector_block,
)
from refimpl.projections._select import (
    ENGINES,
    PARALLEL_MIN_SIZE,
    ZERO_EXPONENT,
    apply_mask,
    apply_tile_mask,
    expand_tiles,
    magnitude_range,
    plain_squares_exact,
    select_top_k,
    tile_scores,
    tile_sq_norms,
    top_k_mask,
    top_k_mask_lex,
    top_k_mask_rows,
)
from refimpl.projections._select import group_scores as lib_group_scores
from refimpl.testing.strategies import (
    FLOAT_DTYPES,
    block_shapes,
    count_args,
    nm_patterns,
    tie_free_weights,
    weight_shapes,
    weights,
    well_separated,
)

GROUP_STRUCTURES = ["unstructured", "filters", "channels", "shapes", "kernels", "blocks"]
engines = st.sampled_from(ENGINES)

# Shapes with at most 8 entries (so at most 8 groups of any kind): brute force over all supports.
small_shapes = st.one_of(
    st.tuples(st.integers(1, 2), st.integers(1, 4)),
    st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2), st.just(1)),
    st.tuples(st.just(1), st.just(1), st.integers(1, 2), st.integers(1, 4)),
)


# --------------------------------------------------------------------------------------------------
# Reference twins (loops over the weight's axes) and helpers
# --------------------------------------------------------------------------------------------------


def naive_groups(name: str, w: np.ndarray, params: dict) -> list[np.ndarray]:
    """One boolean element mask per group, in the library's flat group order."""
    shape = w.shape
    groups = []

    def new():
        return np.zeros(shape, dtype=bool)

    if name == "unstructured":
        for idx in np.ndindex(shape):
            m = new()
            m[idx] = True
            groups.append(m)
    elif name == "filters":
        for f in range(shape[0]):
            m = new()
            m[f] = True
            groups.append(m)
    elif name in ("channels", "kernels") and w.ndim == 2:
        # A linear weight: channel = input column, kernel = single entry (1x1 kernel).
        if name == "channels":
            return naive_groups("shapes", w, params)
        return naive_groups("unstructured", w, params)
    elif name == "channels":
        for c in range(shape[1]):
            m = new()
            m[:, c] = True
            groups.append(m)
    elif name == "kernels":
        for f in range(shape[0]):
            for c in range(shape[1]):
                m = new()
                m[f, c] = True
                groups.append(m)
    elif name == "shapes":
        for pos in np.ndindex(shape[1:]):
            m = new()
            m[(slice(None),) + pos] = True
            groups.append(m)
    elif name == "blocks":
        bh, bw = params["block_shape"]
        rows, cols = shape[0], int(np.prod(shape[1:]))
        for i in range(0, rows, bh):
            for j in range(0, cols, bw):
                m = np.zeros((rows, cols), dtype=bool)
                m[i : i + bh, j : j + bw] = True
                groups.append(m.reshape(shape))
    else:
        raise AssertionError(name)
    return groups


def group_scores(w: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Squared L2 norm of every group, in float64."""
    w64 = w.astype(np.float64)
    return np.array([np.sum(w64[g] ** 2) for g in groups])


def first_k(scores, k: int) -> list[int]:
    """The tie rule by definition: sort by (score descending, index ascending), take k.

    The package's plain selection (:func:`refimpl.projections.reference.top_k`) is this rule;
    ``test_naive_twins_agree_with_the_package_reference`` checks that the two agree.
    """
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


@pytest.mark.parametrize("name", GROUP_STRUCTURES)
@given(data=st.data())
def test_naive_twins_agree_with_the_package_reference(name, data):
    """The loops over the weight's axes here define the same groups, order and selection as
    refimpl.projections.reference (group_ids, top_k), which the fast code and check_projection use."""
    from refimpl.projections import reference

    w, params, k = data.draw(group_case(name, values="integer"))
    groups = naive_groups(name, w, params)
    ids = reference.group_ids(name, w.shape, params.get("block_shape")).reshape(w.shape)
    for index, mask in enumerate(groups):
        assert np.all(ids[mask] == index)
    scores = group_scores(w, groups)
    assert list(reference.top_k(scores, k)) == first_k(scores, k)
    args = (params["block_shape"],) if name == "blocks" else ()
    plain = reference.REFERENCES[name](w, *args, keep=k)
    assert np.array_equal(plain != 0, reference_group_mask(name, w, params, k) & (w != 0))


def reference_group_mask(name, w, params, k) -> np.ndarray:
    groups = naive_groups(name, w, params)
    mask = np.zeros(w.shape, dtype=bool)
    for i in first_k(group_scores(w, groups), k):
        mask |= groups[i]
    return mask


def call(name, w, params, *, engine="numba", mask=False, **count):
    project_fn, mask_fn = PROJECTIONS[name]
    fn = mask_fn if mask else project_fn
    extra = (params["block_shape"],) if name == "blocks" else ()
    kw = {} if name == "unstructured" else {"engine": engine}
    return fn(w, *extra, **count, **kw)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (so -0.0 != +0.0): "copied unchanged" means exactly this."""
    return a.dtype == b.dtype and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == \
        np.ascontiguousarray(b).tobytes()


def assert_masked_copy(w, z, mask):
    """Checklist item 4: kept entries equal the input bit for bit, dropped entries are exactly +0."""
    assert z.dtype == w.dtype and z.shape == w.shape
    assert mask.dtype == np.bool_ and mask.shape == w.shape
    assert same_bits(z[mask], w[mask])
    assert np.all(z[~mask] == 0) and not np.any(np.signbit(z[~mask]))


def integer_weights(shape_strategy):
    """Small-integer-valued floats: many exact ties, and every sum of squares is exact."""
    return st.one_of(*(hnp.arrays(dt, shape_strategy, elements=st.integers(-3, 3).map(float))
                       for dt in FLOAT_DTYPES))


# The strategies are built once and reused by every example (building them per draw cost more than the
# properties themselves in a thorough run).
DEFAULT_SHAPES = weight_shapes()


@functools.lru_cache(maxsize=None)
def weight_values(shapes, values):
    """Weights of the drawn shape: ``values`` "tie_free", "integer" (exact sums, many ties) or "generic"."""
    if values == "tie_free":
        return tie_free_weights(shape=shapes)
    if values == "integer":
        return integer_weights(shapes)
    return weights(shape=shapes)


@st.composite
def group_case(draw, name, shapes=None, values="generic"):
    """(w, params, k) for a group structure; ``values`` in {"generic", "tie_free", "integer"}."""
    shapes = DEFAULT_SHAPES if shapes is None else shapes
    w = draw(weight_values(shapes, values))
    params = {}
    if name == "blocks":
        params["block_shape"] = draw(block_shapes((w.shape[0], w.size // w.shape[0])))
    n = len(naive_groups(name, w, params))
    k = draw(st.integers(0, n))
    return w, params, k


# --------------------------------------------------------------------------------------------------
# Checklist for the group structures (unstructured, filters, channels, shapes, kernels, blocks)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GROUP_STRUCTURES)
@given(data=st.data(), engine=engines)
def test_group_output_in_set_and_copied(name, data, engine):
    """Items 1 and 4: whole groups kept or dropped, exactly k of them, values copied or exactly 0."""
    w, params, k = data.draw(group_case(name))
    z = call(name, w, params, engine=engine, keep=k)
    mask = call(name, w, params, engine=engine, mask=True, keep=k)
    assert_masked_copy(w, z, mask)
    kept = 0
    for g in naive_groups(name, w, params):
        assert mask[g].all() or not mask[g].any()
        kept += bool(mask[g].all())
    assert kept == k


@pytest.mark.parametrize("name", GROUP_STRUCTURES)
@given(data=st.data(), engine=engines)
def test_group_idempotent_and_fixed_points(name, data, engine):
    """Item 2: P(P(W)) == P(W); a point already in the set (here P(W)) comes back bit for bit."""
    w, params, k = data.draw(group_case(name))
    z = call(name, w, params, engine=engine, keep=k)
    assert same_bits(call(name, z, params, engine=engine, keep=k), z)
    # Any point with at most k nonzero groups is a fixed point, whichever groups those are.
    groups = naive_groups(name, w, params)
    chosen = data.draw(st.lists(st.integers(0, len(groups) - 1), max_size=k, unique=True))
    support = np.zeros(w.shape, dtype=bool)
    for i in chosen:
        support |= groups[i]
    in_set = np.where(support, w, np.zeros((), w.dtype))
    # Value equality: a group of -0.0 entries may lose the tie to a +0 group and come back as +0.
    fixed = call(name, in_set, params, engine=engine, keep=k)
    assert fixed.dtype == in_set.dtype and np.array_equal(fixed, in_set)


@pytest.mark.parametrize("name", GROUP_STRUCTURES)
@given(data=st.data(), engine=engines)
def test_group_brute_force_optimal(name, data, engine):
    """Item 3: with <= 8 groups, no support of k groups is closer to W than P(W)."""
    w, params, k = data.draw(group_case(name, shapes=small_shapes))
    groups = naive_groups(name, w, params)
    assert len(groups) <= 8
    scores = group_scores(w, groups)
    supports = itertools.combinations(range(len(groups)), k)
    best = min(scores.sum() - scores[list(kept)].sum() for kept in supports)
    z = call(name, w, params, engine=engine, keep=k)
    cost = np.sum((w.astype(np.float64) - z.astype(np.float64)) ** 2)
    assert cost <= best + 1e-12 * max(scores.sum(), 1.0)


@pytest.mark.parametrize("name", GROUP_STRUCTURES)
@given(data=st.data(), engine=engines)
def test_group_tie_rule_matches_definition(name, data, engine):
    """The tie rule: on integer data (exact sums, many ties) the mask is the first k by (-score, index)."""
    w, params, k = data.draw(group_case(name, values="integer"))
    mask = call(name, w, params, engine=engine, mask=True, keep=k)
    assert np.array_equal(mask, reference_group_mask(name, w, params, k))


def _permute(name, w, params, perm_rng):
    """Permute the groups of w; return the permuted array and a function applying the same to results."""
    shape = w.shape
    if name == "unstructured" or (name == "kernels" and w.ndim == 2):
        p = perm_rng.permutation(w.size)
        return lambda a: a.reshape(-1)[p].reshape(shape)
    if name == "filters":
        p = perm_rng.permutation(shape[0])
        return lambda a: a[p]
    if name == "channels":
        p = perm_rng.permutation(shape[1])
        return lambda a: a[:, p]
    if name == "shapes":
        p = perm_rng.permutation(w.size // shape[0])
        return lambda a: a.reshape(shape[0], -1)[:, p].reshape(shape)
    if name == "kernels":
        p = perm_rng.permutation(shape[0] * shape[1])
        return lambda a: a.reshape(shape[0] * shape[1], -1)[p].reshape(shape)
    if name == "blocks":
        bh, bw = params["block_shape"]
        rows, cols = shape[0], w.size // shape[0]
        tr, tc = rows // bh, cols // bw
        p = perm_rng.permutation(tr * tc)

        def apply(a):
            tiles = a.reshape(tr, bh, tc, bw).transpose(0, 2, 1, 3).reshape(tr * tc, bh, bw)[p]
            return tiles.reshape(tr, tc, bh, bw).transpose(0, 2, 1, 3).reshape(shape)

        return apply
    raise AssertionError(name)


@pytest.mark.parametrize("name", GROUP_STRUCTURES)
@given(data=st.data(), engine=engines, log2c=st.integers(-3, 3), seed=st.integers(0, 2**16))
def test_group_scaling_and_permutation(name, data, engine, log2c, seed):
    """Item 5: P(cW) == cP(W) (c a power of two, so exact); permuting groups permutes the result."""
    w, params, k = data.draw(group_case(name, values="tie_free"))
    z = call(name, w, params, engine=engine, keep=k)
    c = w.dtype.type(2.0**log2c)
    assert same_bits(call(name, c * w, params, engine=engine, keep=k), c * z)

    # A factor that is not a power of two rounds every entry, which may reorder near-tied groups.
    assume(well_separated(group_scores(w, naive_groups(name, w, params))))
    assert np.allclose(call(name, 3.7 * w, params, engine=engine, keep=k), 3.7 * z, rtol=1e-6, atol=0)
    if name == "blocks":
        bh, bw = params["block_shape"]
        assume(w.shape[0] % bh == 0 and (w.size // w.shape[0]) % bw == 0)
    perm = _permute(name, w, params, np.random.default_rng(seed))
    assert same_bits(call(name, perm(w), params, engine=engine, keep=k), perm(z))


@pytest.mark.parametrize("name", GROUP_STRUCTURES)
@given(data=st.data(), engine=engines)
def test_group_extremes(name, data, engine):
    """Item 6: k = 0 gives zeros, k = n gives W (also through sparsity 1 and 0)."""
    w, params, _ = data.draw(group_case(name))
    n = len(naive_groups(name, w, params))
    zero = np.zeros_like(w)
    for count in ({"keep": 0}, {"sparsity": 1.0}):
        assert same_bits(call(name, w, params, engine=engine, **count), zero)
    for count in ({"keep": n}, {"sparsity": 0.0}):
        assert same_bits(call(name, w, params, engine=engine, **count), w)


@pytest.mark.parametrize("name", GROUP_STRUCTURES)
@given(data=st.data(), engine=engines)
def test_group_input_untouched_layouts(name, data, engine):
    """Item 7: input not mutated, dtype kept, read-only and non-contiguous inputs give the same result."""
    w, params, _ = data.draw(group_case(name))
    count = data.draw(count_args(len(naive_groups(name, w, params))))
    before = w.copy()
    z = call(name, w, params, engine=engine, **count)
    assert same_bits(w, before) and z.dtype == w.dtype

    read_only = w.copy()
    read_only.setflags(write=False)
    strided = np.repeat(w, 2, axis=-1)[..., ::2]          # same values, non-contiguous view
    fortran = np.asfortranarray(w)
    assert not strided.flags.c_contiguous or w.shape[-1] == 1
    for variant in (read_only, strided, fortran):
        assert same_bits(call(name, variant, params, engine=engine, **count), z)


@pytest.mark.parametrize("name", [s for s in GROUP_STRUCTURES if s != "unstructured"])
@given(data=st.data(), integer=st.booleans())
def test_group_engines_agree(name, data, integer):
    """Item 8: numba == numpy (exactly on integer data; on tie-free data away from near-ties)."""
    w, params, k = data.draw(group_case(name, values="integer" if integer else "tie_free"))
    if not integer:
        assume(well_separated(group_scores(w, naive_groups(name, w, params))))
    a = call(name, w, params, engine="numba", keep=k)
    b = call(name, w, params, engine="numpy", keep=k)
    assert same_bits(a, b)


@pytest.mark.parametrize("name", GROUP_STRUCTURES)
@given(data=st.data())
def test_group_sparsity_count(name, data):
    """The count rule: sparsity s keeps n - round(s*n) groups, Python's round-half-to-even."""
    w, params, _ = data.draw(group_case(name))
    n = len(naive_groups(name, w, params))
    s = data.draw(st.sampled_from([0.0, 0.125, 0.25, 0.375, 0.5, 0.75, 1.0]) | st.floats(0, 1))
    mask = call(name, w, params, mask=True, sparsity=s)
    kept = sum(bool(mask[g].all()) for g in naive_groups(name, w, params))
    assert kept == n - round(s * n)


# --------------------------------------------------------------------------------------------------
# Balanced and N:M
# --------------------------------------------------------------------------------------------------


def reference_balanced_mask(w, vector_size, k_v):
    """Loops over rows and vectors; edge vectors keep round(k_v * len / V) (half-to-even, exact)."""
    g = np.abs(w.reshape(w.shape[0], -1))
    mask = np.zeros(g.shape, dtype=bool)
    for r in range(g.shape[0]):
        for start in range(0, g.shape[1], vector_size):
            vec = g[r, start : start + vector_size]
            k_vec = k_v if len(vec) == vector_size else int(round(Fraction(k_v * len(vec), vector_size)))
            for j in first_k(list(vec), k_vec):
                mask[r, start + j] = True
    return mask.reshape(w.shape)


@st.composite
def balanced_case(draw, values="generic", shapes=None):
    shapes = DEFAULT_SHAPES if shapes is None else shapes
    w = draw(weight_values(shapes, values))
    v = draw(st.integers(1, w.size // w.shape[0]))
    k_v = draw(st.integers(0, v))
    return w, v, k_v


@given(case=balanced_case(), engine=engines)
def test_balanced_in_set_tie_rule_and_copy(case, engine):
    """Items 1, 4 and the tie rule: every vector keeps its top k_v (edge rule), exactly the definition."""
    w, v, k_v = case
    z = project_balanced(w, v, keep=k_v, engine=engine)
    mask = mask_balanced(w, v, keep=k_v, engine=engine)
    assert_masked_copy(w, z, mask)
    assert np.array_equal(mask, reference_balanced_mask(w, v, k_v))


@given(case=balanced_case(values="integer"), engine=engines)
def test_balanced_tie_heavy_data(case, engine):
    w, v, k_v = case
    assert np.array_equal(mask_balanced(w, v, keep=k_v, engine=engine), reference_balanced_mask(w, v, k_v))


@given(case=balanced_case(), engine=engines)
def test_balanced_brute_force_per_vector(case, engine):
    """Item 3, per vector (the set is a product of per-vector sets)."""
    w, v, k_v = case
    z = project_balanced(w, v, keep=k_v, engine=engine)
    mask = mask_balanced(w, v, keep=k_v, engine=engine).reshape(w.shape[0], -1)
    g, zg = w.reshape(w.shape[0], -1).astype(np.float64), z.reshape(w.shape[0], -1).astype(np.float64)
    for r in range(g.shape[0]):
        for start in range(0, g.shape[1], v):
            vec, zvec = g[r, start : start + v], zg[r, start : start + v]
            k_vec = int(np.count_nonzero(mask[r, start : start + v]))
            sq = vec**2
            best = min(sq.sum() - sq[list(c)].sum() for c in itertools.combinations(range(len(vec)), k_vec))
            assert np.sum((vec - zvec) ** 2) <= best + 1e-12 * max(sq.sum(), 1.0)


@given(case=balanced_case(), engine=engines, log2c=st.integers(-3, 3))
def test_balanced_idempotent_scaling_extremes(case, engine, log2c):
    """Items 2, 5, 6."""
    w, v, k_v = case
    z = project_balanced(w, v, keep=k_v, engine=engine)
    assert same_bits(project_balanced(z, v, keep=k_v, engine=engine), z)
    c = w.dtype.type(2.0**log2c)
    assert same_bits(project_balanced(c * w, v, keep=k_v, engine=engine), c * z)
    assert same_bits(project_balanced(w, v, keep=0, engine=engine), np.zeros_like(w))
    assert same_bits(project_balanced(w, v, keep=v, engine=engine), w)


@given(case=balanced_case(values="tie_free"), engine=engines, seed=st.integers(0, 2**16))
def test_balanced_permuting_rows_and_within_vectors(case, engine, seed):
    """Item 5: permuting GEMM rows, or entries inside every full vector, permutes the result."""
    w, v, k_v = case
    g = w.reshape(w.shape[0], -1)
    z = project_balanced(g, v, keep=k_v, engine=engine)
    perm_rng = np.random.default_rng(seed)
    rows = perm_rng.permutation(g.shape[0])
    assert same_bits(project_balanced(g[rows], v, keep=k_v, engine=engine), z[rows])
    n_full = g.shape[1] // v
    inner = np.concatenate([start * v + perm_rng.permutation(v) for start in range(n_full)]
                           + [np.arange(n_full * v, g.shape[1])])
    assert same_bits(project_balanced(g[:, inner], v, keep=k_v, engine=engine), z[:, inner])


@given(case=balanced_case(), data=st.data())
def test_balanced_layouts_and_engines(case, data):
    """Items 7 and 8 (|v| comparisons are exact, so the engines agree on any data)."""
    w, v, _ = case
    count = data.draw(count_args(v))
    before = w.copy()
    z = project_balanced(w, v, engine="numba", **count)
    assert same_bits(w, before)
    assert same_bits(project_balanced(w, v, engine="numpy", **count), z)
    read_only = w.copy()
    read_only.setflags(write=False)
    for variant in (read_only, np.repeat(w, 2, axis=-1)[..., ::2], np.asfortranarray(w)):
        assert same_bits(project_balanced(variant, v, **count), z)


@given(w=weights(), data=st.data(), engine=engines)
def test_nm_is_balanced_with_v_equal_m(w, data, engine):
    """N:M == balanced(V=M, keep=N); every group of M holds exactly N kept entries."""
    n, m = data.draw(nm_patterns(w.size // w.shape[0]))
    z = project_nm(w, n, m, engine=engine)
    mask = mask_nm(w, n, m, engine=engine)
    assert_masked_copy(w, z, mask)
    assert same_bits(z, project_balanced(w, m, keep=n, engine=engine))
    assert np.all(mask.reshape(w.shape[0], -1, m).sum(axis=2) == n)
    assert np.array_equal(mask, reference_balanced_mask(w, m, n))


def test_balanced_long_vectors_use_sort_path(engine, rng):
    """Vectors longer than the counting cut-off (32) take the numba sort path; same tie rule."""
    w = rng.integers(-2, 3, size=(5, 100)).astype(np.float64)
    for v, k_v in [(40, 7), (64, 64), (100, 0), (33, 16)]:
        got = mask_balanced(w, v, keep=k_v, engine=engine)
        assert np.array_equal(got, reference_balanced_mask(w, v, k_v))


# --------------------------------------------------------------------------------------------------
# Vector AND block (heuristic): membership and count rules
# --------------------------------------------------------------------------------------------------


@st.composite
def vector_block_case(draw, values="generic"):
    w, v, k_v = draw(balanced_case(values=values))
    rows, cols = w.shape[0], w.size // w.shape[0]
    block_shape = draw(block_shapes((rows, cols)))
    n_blocks = -(-rows // block_shape[0]) * -(-cols // block_shape[1])
    k_b = draw(st.integers(0, n_blocks))
    return w, v, k_v, block_shape, k_b


@given(case=vector_block_case(), engine=engines)
def test_vector_block_in_both_sets(case, engine):
    """In the balanced set (<= k_v per vector) and the block set (<= k_b blocks), exactly the AND rule."""
    w, v, k_v, block_shape, k_b = case
    z = project_vector_block(w, v, block_shape, vector_keep=k_v, block_keep=k_b, engine=engine)
    mask = mask_vector_block(w, v, block_shape, vector_keep=k_v, block_keep=k_b, engine=engine)
    assert_masked_copy(w, z, mask)
    vmask = reference_balanced_mask(w, v, k_v)
    assert not np.any(mask & ~vmask)                       # subset of the vector mask
    blocks = naive_groups("blocks", w, {"block_shape": block_shape})
    chosen = 0
    for b in blocks:
        # Within a block the mask is either empty or exactly the vector mask (the AND with a kept block).
        if mask[b].any():
            assert np.array_equal(mask[b], vmask[b])
        chosen += bool(mask[b].any())
    assert chosen <= k_b
    again = project_vector_block(z, v, block_shape, vector_keep=k_v, block_keep=k_b, engine=engine)
    assert same_bits(again, z)


@given(case=vector_block_case(values="integer"), engine=engines)
def test_vector_block_rule_matches_definition(case, engine):
    """The documented rule: blocks ranked by the L2 norm of the vector-masked weights (tie rule too)."""
    w, v, k_v, block_shape, k_b = case
    vmask = reference_balanced_mask(w, v, k_v)
    masked = np.where(vmask, w, 0)
    bmask = reference_group_mask("blocks", masked, {"block_shape": block_shape}, k_b)
    mask = mask_vector_block(w, v, block_shape, vector_keep=k_v, block_keep=k_b, engine=engine)
    assert np.array_equal(mask, vmask & bmask)


@given(case=vector_block_case(), data=st.data())
def test_vector_block_counts_layouts_engines(case, data):
    """Sparsity arguments follow the count rule; items 6, 7, 8."""
    w, v, _, block_shape, _ = case
    rows, cols = w.shape[0], w.size // w.shape[0]
    n_blocks = -(-rows // block_shape[0]) * -(-cols // block_shape[1])
    s_v, s_b = data.draw(st.floats(0, 1)), data.draw(st.floats(0, 1))
    kw = dict(vector_sparsity=s_v, block_sparsity=s_b)
    same = dict(vector_keep=v - round(s_v * v), block_keep=n_blocks - round(s_b * n_blocks))
    z = project_vector_block(w, v, block_shape, **kw)
    assert same_bits(z, project_vector_block(w, v, block_shape, **same))
    # Engines: |v| selection is exact; block scores of integer-free data may differ in the last bit,
    # so compare on well-separated block scores only.
    vm = np.where(reference_balanced_mask(w, v, same["vector_keep"]), w, 0)
    if well_separated(group_scores(vm, naive_groups("blocks", w, {"block_shape": block_shape}))):
        assert same_bits(project_vector_block(w, v, block_shape, engine="numpy", **kw), z)
    assert same_bits(project_vector_block(w, v, block_shape, vector_keep=v, block_keep=n_blocks), w)
    assert same_bits(project_vector_block(w, v, block_shape, vector_keep=0, block_keep=n_blocks),
                     np.zeros_like(w))
    read_only = w.copy()
    read_only.setflags(write=False)
    for variant in (read_only, np.repeat(w, 2, axis=-1)[..., ::2]):
        assert same_bits(project_vector_block(variant, v, block_shape, **kw), z)


# --------------------------------------------------------------------------------------------------
# Global unstructured
# --------------------------------------------------------------------------------------------------


@given(ws=st.lists(weights(), min_size=1, max_size=3), data=st.data())
def test_global_is_unstructured_of_concatenation(ws, data):
    """The joint projection == project_unstructured of all layers flattened and concatenated."""
    n = sum(w.size for w in ws)
    count = data.draw(count_args(n))
    zs = project_unstructured_global(ws, **count)
    common = np.result_type(*ws)
    flat = np.concatenate([w.reshape(-1).astype(common) for w in ws])
    expected = project_unstructured(flat, **count)
    start = 0
    for w, z in zip(ws, zs, strict=True):
        assert z.dtype == w.dtype and z.shape == w.shape
        assert same_bits(z.reshape(-1).astype(common), expected[start : start + w.size])
        start += w.size
    as_dict = project_unstructured_global({f"l{i}": w for i, w in enumerate(ws)}, **count)
    assert list(as_dict) == [f"l{i}" for i in range(len(ws))]
    assert all(same_bits(as_dict[f"l{i}"], z) for i, z in enumerate(zs))


def test_global_ties_go_to_earlier_layer():
    masks = mask_unstructured_global([np.array([1.0, 2.0]), np.array([2.0, 1.0])], keep=3)
    assert [m.tolist() for m in masks] == [[True, True], [True, False]]


def test_global_float32_and_float64_layers_rank_exactly():
    a = np.array([np.float32(0.1)], dtype=np.float32)       # 0.100000001490116...
    b = np.array([0.1])                                      # 0.1000000000000000055...
    assert [m.tolist() for m in mask_unstructured_global([b, a], keep=1)] == [[False], [True]]


# --------------------------------------------------------------------------------------------------
# Worked examples (hand-computed)
# --------------------------------------------------------------------------------------------------


def test_worked_unstructured():
    w = np.array([[0.5, -3.0, 0.0], [2.0, -0.1, -2.0]])
    # |w| = .5 3 0 2 .1 2 ; keep 3: 3, then the tie 2 (index 3) and 2 (index 5) -> both.
    np.testing.assert_array_equal(project_unstructured(w, keep=3), [[0, -3.0, 0], [2.0, 0, -2.0]])
    # sparsity 0.25 of 6: round(1.5) = 2 pruned (half to even) -> the two smallest, 0 and 0.1.
    np.testing.assert_array_equal(project_unstructured(w, sparsity=0.25), [[0.5, -3.0, 0], [2.0, 0, -2.0]])


def test_worked_filters_and_channels(engine):
    w = np.zeros((3, 2, 1, 2))
    w[0] = [[[1, 1]], [[1, 1]]]      # ||W_0||^2 = 4
    w[1] = [[[3, 0]], [[0, 0]]]      # 9
    w[2] = [[[0, 0]], [[2, 0]]]      # 4
    expected = np.zeros_like(w)
    expected[1], expected[0] = w[1], w[0]          # keep 2: 9 then the tie 4/4 -> filter 0
    np.testing.assert_array_equal(project_filters(w, keep=2, engine=engine), expected)
    # channels: ||W[:,0]||^2 = 1+1+9 = 11, ||W[:,1]||^2 = 1+1+4 = 6
    expected = np.zeros_like(w)
    expected[:, 0] = w[:, 0]
    np.testing.assert_array_equal(project_channels(w, keep=1, engine=engine), expected)


def test_worked_shapes_and_kernels(engine):
    w = np.array([[[[1.0, 2.0]], [[0.0, 0.5]]],
                  [[[1.0, 0.0]], [[3.0, 0.0]]]])      # (2, 2, 1, 2)
    # GEMM columns (c,kh,kw): (0,0,0)=[1,1] ->2, (0,0,1)=[2,0] ->4, (1,0,0)=[0,3] ->9, (1,0,1)=[.5,0] ->.25
    expected = np.zeros_like(w)
    expected[:, 1, 0, 0] = w[:, 1, 0, 0]
    expected[:, 0, 0, 1] = w[:, 0, 0, 1]
    np.testing.assert_array_equal(project_shapes(w, keep=2, engine=engine), expected)
    # kernels (f,c): (0,0)=[1,2] ->5, (0,1)=[0,.5] ->.25, (1,0)=[1,0] ->1, (1,1)=[3,0] ->9
    expected = np.zeros_like(w)
    expected[1, 1], expected[0, 0] = w[1, 1], w[0, 0]
    np.testing.assert_array_equal(project_kernels(w, sparsity=0.5, engine=engine), expected)


def test_worked_blocks_with_edges(engine):
    w = np.array([[1.0, 1.0, 0.0, 0.0, 5.0],
                  [1.0, 1.0, 0.0, 1.0, 0.0],
                  [0.0, 2.0, 0.0, 0.0, 0.0]])
    # 2x2 tiles: rows 0-1 | cols 0-1: 4, cols 2-3: 1, col 4: 25 ; row 2 | cols 0-1: 4, 2-3: 0, 4: 0
    expected = np.zeros_like(w)
    expected[0, 4] = 5.0
    expected[0:2, 0:2] = 1.0                       # the tie 4 (tile 0) vs 4 (tile 3): tile 0
    np.testing.assert_array_equal(project_blocks(w, (2, 2), keep=2, engine=engine), expected)
    assert mask_blocks(w, (2, 2), keep=3, engine=engine)[2, 1]


def test_worked_balanced_nm_and_vector_block(engine):
    w = np.array([[0.1, -0.9, 0.5, 0.4, 7.0, 1.0, 2.0],
                  [3.0, 2.0, -1.0, 0.0, 1.0, 1.0, 0.0]])
    # V=4, k_v=2: vectors [.1 -.9 .5 .4] -> -.9,.5 ; edge len 3 keeps round(1.5)=2: 7, 2 ;
    #             [3 2 -1 0] -> 3,2 ; edge [1 1 0] keeps the tie 1,1.
    expected = np.array([[0, -0.9, 0.5, 0, 7.0, 0, 2.0],
                         [3.0, 2.0, 0, 0, 1.0, 1.0, 0]])
    np.testing.assert_array_equal(project_balanced(w, 4, keep=2, engine=engine), expected)
    np.testing.assert_array_equal(project_balanced(w, 4, sparsity=0.5, engine=engine), expected)
    x = np.array([[0.5, -2.0, 1.0, 0.1, 3.0, 3.0, -3.0, 1.0]])
    np.testing.assert_array_equal(project_nm(x, 2, 4, engine=engine), [[0, -2.0, 1.0, 0, 3.0, 3.0, 0, 0]])
    # vector (V=2, keep 1) then blocks (1x4, keep 1) of the vector-masked weights:
    # vector mask of w row 0: [-.9 | .5 | 7 | 2(edge len1 keeps round(.5)=0)] -> .9,.5,7 ; block norms^2
    # row0 cols0-3: .81+.25, cols4-6: 49 ; row1: [3 | -1 | 1 | edge 0] -> 9+1, 1.
    z = project_vector_block(w, 2, (1, 4), vector_keep=1, block_keep=2, engine=engine)
    np.testing.assert_array_equal(z, [[0, 0, 0, 0, 7.0, 0, 0], [3.0, 0, -1.0, 0, 0, 0, 0]])


# --------------------------------------------------------------------------------------------------
# Why L2: the counterexample an L1 ranking gets wrong
# --------------------------------------------------------------------------------------------------


def test_l1_ranking_is_not_the_projection(engine):
    """Filters [3, 0] and [2, 2]: L1 norms 3 < 4 but squared L2 norms 9 > 8, so the rankings disagree."""
    w = np.array([[3.0, 0.0], [2.0, 2.0]])
    l1_keep = int(np.argmax(np.abs(w).sum(axis=1)))           # what an L1-ranking library would keep
    assert l1_keep == 1
    z = project_filters(w, keep=1, engine=engine)
    np.testing.assert_array_equal(z, [[3.0, 0.0], [0.0, 0.0]])
    l1_z = np.zeros_like(w)
    l1_z[l1_keep] = w[l1_keep]
    assert np.sum((w - z) ** 2) == 8.0 < np.sum((w - l1_z) ** 2) == 9.0


# --------------------------------------------------------------------------------------------------
# Count rounding, selection helpers
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "s", "kept"), [
    (2, 0.25, 2),    # 0.5 -> 0 pruned
    (6, 0.25, 4),    # 1.5 -> 2 pruned
    (10, 0.25, 8),   # 2.5 -> 2 pruned
    (4, 0.125, 4),   # 0.5 -> 0
    (12, 0.125, 10),  # 1.5 -> 2
    (14, 0.25, 10),  # 3.5 -> 4
    (5, 0.5, 3),     # 2.5 -> 2
    (7, 0.5, 3),     # 3.5 -> 4
])
def test_sparsity_rounds_half_to_even(n, s, kept, rng, engine):
    w = rng.standard_normal((n, 3))
    mask = mask_filters(w, sparsity=s, engine=engine)
    assert int(mask.all(axis=1).sum()) == kept
    assert int(mask_unstructured(w[:, 0], sparsity=s).sum()) == kept
    assert int(mask_channels(w.T, sparsity=s, engine=engine).all(axis=0).sum()) == kept


@given(scores=hnp.arrays(np.float64, st.integers(1, 40), elements=st.integers(0, 4).map(float)),
       data=st.data())
def test_top_k_mask_is_the_definition(scores, data):
    k = data.draw(st.integers(0, scores.size))
    expected = np.zeros(scores.size, dtype=bool)
    expected[first_k(list(scores), k)] = True
    assert np.array_equal(top_k_mask(scores, k), expected)
    rows = np.stack([scores, scores[::-1]])
    for engine in ENGINES:
        got = top_k_mask_rows(rows, k, engine=engine)
        assert np.array_equal(got[0], expected)
        assert np.array_equal(got[1], top_k_mask(scores[::-1], k))


@given(w=hnp.arrays(np.float64, st.tuples(st.integers(1, 9), st.integers(1, 9)),
                    elements=st.integers(-3, 3).map(float)), data=st.data())
def test_tile_scores_engines(w, data):
    """On integer data every step is exact: F * 2**E is the plain sum of squares, in both engines."""
    bh, bw = data.draw(block_shapes(w.shape))
    expected = np.array([[np.sum(w[i : i + bh, j : j + bw] ** 2) for j in range(0, w.shape[1], bw)]
                         for i in range(0, w.shape[0], bh)])
    for engine in ENGINES:
        for x in (w, w.astype(np.float32)):
            exponent, fraction = tile_scores(x, bh, bw, engine=engine)
            zero = expected == 0
            assert np.array_equal(exponent[zero], np.full(zero.sum(), ZERO_EXPONENT))
            assert np.all(fraction[zero] == 0)
            value = np.ldexp(fraction[~zero], exponent[~zero].astype(np.int32))
            assert np.array_equal(value, expected[~zero])


@given(exponent=hnp.arrays(np.int64, st.integers(1, 30), elements=st.integers(-3, 3)), data=st.data())
def test_top_k_mask_lex_is_the_definition(exponent, data):
    fraction = data.draw(hnp.arrays(np.float64, exponent.size, elements=st.sampled_from([0.5, 0.625, 0.75])))
    k = data.draw(st.integers(0, exponent.size))
    order = sorted(range(exponent.size), key=lambda i: (-exponent[i], -fraction[i], i))[:k]
    expected = np.zeros(exponent.size, dtype=bool)
    expected[order] = True
    assert np.array_equal(top_k_mask_lex(exponent, fraction, k), expected)


@pytest.mark.parametrize("name", [s for s in GROUP_STRUCTURES if s != "unstructured"])
def test_extreme_magnitudes_neither_overflow_nor_underflow(name, engine):
    """Squares of 1e200 overflow and of 1e-200 underflow in float64; the scores must not tie."""
    w = np.zeros((3, 3, 1, 1))
    w[0, 0] = 1e-200                  # tiny but nonzero: must beat the all-zero groups
    w[2, 2] = 1e200
    w[1, 1] = 1e300                   # larger than 1e200 although both squares overflow
    groups = naive_groups(name, w, {"block_shape": (1, 1)})
    params = {"block_shape": (1, 1)}
    z = call(name, w, params, engine=engine, keep=1)
    assert np.array_equal(z != 0, w == 1e300)
    z = call(name, w, params, engine=engine, keep=3)
    assert np.array_equal(z, w)       # the three nonzero groups, not a zero group of lower index
    assert len(groups) >= 3


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------

W4 = np.ones((2, 3, 2, 2))
W2 = np.ones((4, 6))


@pytest.mark.parametrize(("call_bad", "exc", "match"), [
    (lambda: project_unstructured(np.array([1.0, np.nan]), keep=1), ValueError, "w"),
    (lambda: project_filters(np.array([[1.0, np.inf]]), keep=1), ValueError, "w contains NaN"),
    (lambda: project_filters(np.ones(3), keep=1), ValueError, "w must have 2 or 4 dimensions"),
    (lambda: project_channels(np.ones((2, 2, 2)), keep=1), ValueError, "w must have"),
    (lambda: project_shapes(np.ones((0, 3)), keep=0), ValueError, "w must not have a zero-length"),
    (lambda: project_filters(W4, sparsity=1.5), ValueError, "sparsity"),
    (lambda: project_filters(W4, sparsity=-0.1), ValueError, "sparsity"),
    (lambda: project_filters(W4, keep=3), ValueError, "keep"),
    (lambda: project_kernels(W4, keep=-1), ValueError, "keep"),
    (lambda: project_filters(W4), ValueError, "exactly one of sparsity= or keep="),
    (lambda: project_filters(W4, sparsity=0.5, keep=1), ValueError, "exactly one"),
    (lambda: project_filters(W4, keep=1.5), TypeError, "keep"),
    (lambda: project_filters(W4, keep=1, engine="cuda"), ValueError, "engine"),
    (lambda: project_unstructured(np.array(["a"]), keep=0), TypeError, "w"),
    (lambda: project_blocks(W2, (0, 2), keep=1), ValueError, "block_shape"),
    (lambda: project_blocks(W2, (5, 2), keep=1), ValueError, "block_shape"),
    (lambda: project_blocks(W2, (2, 7), keep=1), ValueError, "block_shape"),
    (lambda: project_blocks(W2, (2, 2, 2), keep=1), ValueError, "block_shape"),
    (lambda: project_blocks(W2, 2, keep=1), ValueError, "block_shape"),
    (lambda: project_blocks(W2, (2.0, 2), keep=1), TypeError, "block_shape"),
    (lambda: project_blocks(W2, (2, 2), keep=7), ValueError, "keep"),
    (lambda: project_balanced(W2, 0, keep=1), ValueError, "vector_size"),
    (lambda: project_balanced(W2, 7, keep=1), ValueError, "vector_size"),
    (lambda: project_balanced(W2, 4, keep=5), ValueError, "keep"),
    (lambda: project_balanced(W2, 4, sparsity=2.0), ValueError, "sparsity"),
    (lambda: project_nm(W2, 2, 4), ValueError, "m must divide"),
    (lambda: project_nm(W2, 4, 3), ValueError, "n must lie"),
    (lambda: project_nm(W2, 1, 0), ValueError, "m must"),
    (lambda: project_nm(W2, 1.0, 2), TypeError, "n must"),
    (lambda: project_vector_block(W2, 3, (2, 2), vector_keep=4, block_keep=1), ValueError, "vector_keep"),
    (lambda: project_vector_block(W2, 3, (2, 2), vector_keep=1, block_keep=7), ValueError, "block_keep"),
    (lambda: project_vector_block(W2, 3, (2, 2), vector_sparsity=1.5, block_keep=1), ValueError,
     "vector_sparsity"),
    (lambda: project_vector_block(W2, 3, (2, 2), vector_keep=1), ValueError,
     "block_sparsity= or block_keep="),
    (lambda: project_vector_block(W2, 3, (9, 2), vector_keep=1, block_keep=1), ValueError, "block_shape"),
    (lambda: project_unstructured_global([], keep=0), ValueError, "ws"),
    (lambda: project_unstructured_global(np.ones(3), keep=0), TypeError, "ws"),
    (lambda: project_unstructured_global([np.ones(2), np.array([np.nan])], keep=1), ValueError, r"ws\[1\]"),
    (lambda: project_unstructured_global({"a": np.ones(2)}, keep=3), ValueError, "keep"),
])
def test_bad_input_names_the_argument(call_bad, exc, match):
    with pytest.raises(exc, match=match):
        call_bad()


def test_large_inputs_numba_matches_numpy(rng):
    """Large layers (the exact-range tile_scores goes multi-threaded above PARALLEL_MIN_SIZE): the
    engines agree exactly on integer data, on the fast path and on the exact-range path."""
    w = rng.integers(-3, 4, size=(64, 3, 33, 33)).astype(np.float32)
    assert w.size >= PARALLEL_MIN_SIZE
    w2d = w.reshape(64, -1)
    for bh, bw in [(1, w2d.shape[1]), (64, 1), (5, 7), (1, 9)]:
        for x in (w2d, w2d.astype(np.float64) * 2.0**700):     # the second overflows: exact-range path
            numba_pair = tile_scores(x, bh, bw, engine="numba")
            numpy_pair = tile_scores(x, bh, bw, engine="numpy")
            assert all(np.array_equal(a, b) for a, b in zip(numba_pair, numpy_pair, strict=True))
        plain = [tile_sq_norms(w2d, bh, bw, engine=e) for e in ENGINES]
        assert np.array_equal(*plain)
        big = w.astype(np.float64) * 2.0**700
        assert same_bits(project_blocks(big, (bh, bw), keep=40, engine="numba"),
                         project_blocks(big, (bh, bw), keep=40, engine="numpy"))
    calls = [
        lambda e: project_filters(w, sparsity=0.5, engine=e),
        lambda e: project_shapes(w, sparsity=0.5, engine=e),
        lambda e: project_kernels(w, sparsity=0.5, engine=e),
        lambda e: project_blocks(w, (5, 7), keep=40, engine=e),
        lambda e: project_blocks(w, (64, 1), keep=40, engine=e),
        lambda e: project_balanced(w, 16, keep=5, engine=e),
        lambda e: project_nm(w, 1, 3, engine=e),
    ]
    for f in calls:
        assert same_bits(f("numba"), f("numpy"))


def test_registry_covers_every_structure():
    for name in ["unstructured", "filters", "channels", "shapes", "kernels", "blocks", "balanced", "nm",
                 "vector_block"]:
        project_fn, mask_fn = PROJECTIONS[name]
        assert project_fn.__name__ == "project_" + name and mask_fn.__name__ == "mask_" + name


def test_integer_input_becomes_float64():
    z = project_filters(np.array([[1, 2], [3, 4]]), keep=1)
    assert z.dtype == np.float64 and z.tolist() == [[0.0, 0.0], [3.0, 4.0]]


# --------------------------------------------------------------------------------------------------
# Cross-checks against torch.nn.utils.prune (tie-free data)
# --------------------------------------------------------------------------------------------------


def _random_case(rng):
    if rng.random() < 0.5:
        shape = tuple(int(d) for d in rng.integers(1, 6, size=4))
    else:
        shape = tuple(int(d) for d in rng.integers(1, 12, size=2))
    w = rng.standard_normal(shape)
    amount = float(rng.random()) if rng.random() < 0.7 else float(rng.choice([0.25, 0.5, 0.75, 0.125]))
    return w, amount


@pytest.mark.torch
def test_torch_l1_unstructured(torch, rng):
    from torch.nn.utils import prune

    for _ in range(250):
        w, amount = _random_case(rng)
        t = torch.tensor(w)
        expected = prune.L1Unstructured(amount).compute_mask(t, torch.ones_like(t)).numpy().astype(bool)
        assert np.array_equal(mask_unstructured(w, sparsity=amount), expected), (w.shape, amount)
        n_pruned = int(rng.integers(0, w.size + 1))           # an integer amount = count to prune
        expected = prune.L1Unstructured(n_pruned).compute_mask(t, torch.ones_like(t)).numpy().astype(bool)
        assert np.array_equal(mask_unstructured(w, keep=w.size - n_pruned), expected)


@pytest.mark.torch
@pytest.mark.parametrize(("dim", "mask_fn"), [(0, mask_filters), (1, mask_channels)])
def test_torch_ln_structured(torch, rng, engine, dim, mask_fn):
    from torch.nn.utils import prune

    for _ in range(250):
        w, amount = _random_case(rng)
        t = torch.tensor(w)
        expected = prune.LnStructured(amount, n=2, dim=dim).compute_mask(t, torch.ones_like(t))
        got = mask_fn(w, sparsity=amount, engine=engine)
        assert np.array_equal(got, expected.numpy().astype(bool)), (w.shape, amount)


# --------------------------------------------------------------------------------------------------
# Fast path (plain float64 sums of squares) vs exact-range path (F * 2**E pairs)
# --------------------------------------------------------------------------------------------------

# Tilings of a (12, 20) GEMM view: every group kind, edge tiles, 1 x 1 tiles, one tile covering all.
FAST_PATH_TILES = [(1, 20), (12, 4), (12, 1), (1, 4), (3, 3), (5, 7), (1, 1), (12, 20), (4, 9)]


def random_weights(rng, dtype, log2_span):
    """Gaussian signs and mantissas times 2**uniform(-span, span): wide but exact-range magnitudes."""
    w = rng.standard_normal((12, 20)) * np.exp2(rng.uniform(-log2_span, log2_span, (12, 20)))
    w[rng.random((12, 20)) < 0.1] = 0.0                  # exact zeros, and some all-zero tiles below
    w[:, 5] = 0.0
    return w.astype(dtype)


@pytest.mark.parametrize("dtype, log2_span", [(np.float32, 2), (np.float32, 60), (np.float64, 2),
                                              (np.float64, 200)])
@pytest.mark.parametrize("bh, bw", FAST_PATH_TILES)
def test_fast_and_exact_paths_give_identical_scores_and_masks(dtype, log2_span, bh, bw, engine, rng):
    """On exact-range data the plain sums equal ldexp(F, E) bit for bit, so every mask is the same."""
    w2d = random_weights(rng, dtype, log2_span)
    tile_size = min(bh, 12) * min(bw, 20)
    assert plain_squares_exact(w2d, tile_size, engine=engine)
    plain = tile_sq_norms(w2d, bh, bw, engine=engine)
    exponent, fraction = tile_scores(w2d, bh, bw, engine=engine)
    nonzero = exponent != ZERO_EXPONENT
    assert np.array_equal(plain == 0, ~nonzero)
    assert np.array_equal(plain[nonzero], np.ldexp(fraction[nonzero], exponent[nonzero].astype(np.int32)))
    scores = lib_group_scores(w2d, bh, bw, engine=engine)
    assert not isinstance(scores, tuple) and np.array_equal(scores, plain)
    for k in sorted({0, 1, plain.size // 3, plain.size // 2, plain.size - 1, plain.size}):
        assert np.array_equal(select_top_k(plain, keep=k), select_top_k((exponent, fraction), keep=k))


@pytest.mark.parametrize("bh, bw", [(1, 20), (12, 1), (3, 3), (5, 7)])
def test_fast_path_plain_sums_are_exact_on_integers(bh, bw, engine, rng):
    """Small integers square and add without rounding: the plain sums are the true tile norms."""
    w2d = rng.integers(-50, 51, size=(12, 20)).astype(np.float32)
    expected = np.array([[np.sum(w2d[i : i + bh, j : j + bw].astype(np.int64) ** 2)
                          for j in range(0, 20, bw)] for i in range(0, 12, bh)], dtype=np.float64)
    assert np.array_equal(tile_sq_norms(w2d, bh, bw, engine=engine), expected)


def test_plain_squares_exact_boundaries():
    """The documented bounds, at their edges: a >= 2**-511 and 2 e_b + bit_length(n) <= 1022."""
    tiny = 2.0**-511
    assert plain_squares_exact(np.array([[tiny, 1.0]]), 2)
    assert not plain_squares_exact(np.array([[np.nextafter(tiny, 0.0), 1.0]]), 2)
    below = np.nextafter(2.0**510, 0.0)                 # frexp exponent 510: 2 * 510 + 1 = 1021
    assert plain_squares_exact(np.array([[below]]), 1)
    assert plain_squares_exact(np.array([[below]]), 2)  # 1020 + 2 = 1022
    assert not plain_squares_exact(np.array([[below]]), 4)   # 1020 + 3 = 1023
    assert not plain_squares_exact(np.array([[2.0**510]]), 1)  # exponent 511: 1022 + 1
    assert plain_squares_exact(np.zeros((2, 2)), 4)
    # Float32 never needs the check: its extreme values square far inside float64's normal range.
    f32 = np.finfo(np.float32)
    assert plain_squares_exact(np.array([[f32.max, f32.smallest_subnormal]], dtype=np.float32), 10**6)
    if np.dtype(np.longdouble) != np.float64:         # other dtypes always take the exact-range path
        assert not plain_squares_exact(np.ones((2, 2), dtype=np.longdouble), 4)


@pytest.mark.parametrize("w", [
    np.array([[1e-200, 1.0], [0.5, 0.25]]),             # a square underflows
    np.array([[1e200, 1.0], [0.5, 0.25]]),              # a square overflows
])
@pytest.mark.parametrize("bh, bw", [(1, 1), (1, 2), (2, 2)])
def test_fallback_to_exact_range_on_extreme_values(w, bh, bw, engine):
    assert not plain_squares_exact(w, bh * bw, engine=engine)
    scores = lib_group_scores(w, bh, bw, engine=engine)
    assert isinstance(scores, tuple)                    # the exact-range pair, not plain sums
    exponent, fraction = tile_scores(w, bh, bw, engine=engine)
    assert np.array_equal(scores[0], exponent) and np.array_equal(scores[1], fraction)


def test_fallback_depends_on_the_tile_size():
    """Squares of 2**505 fit, but a sum of 2**20 of them would not: the bound uses the tile size."""
    w = np.full((2, 4), 2.0**505)
    assert plain_squares_exact(w, 4)                    # 2 * 506 + 3 = 1015
    assert not plain_squares_exact(w, 2**20)            # 2 * 506 + 21 = 1033
    assert not isinstance(lib_group_scores(w, 1, 4), tuple)


def test_float32_extremes_rank_exactly_on_the_fast_path(engine):
    """Float32 max and the smallest subnormal: the plain float64 squares neither overflow nor vanish."""
    f32 = np.finfo(np.float32)
    w = np.array([[0.0], [f32.smallest_subnormal], [f32.max], [np.nextafter(f32.max, 0)]], dtype=np.float32)
    assert not isinstance(lib_group_scores(w, 1, 1, engine=engine), tuple)
    assert np.array_equal(mask_filters(w, keep=3, engine=engine)[:, 0], [False, True, True, True])
    assert np.array_equal(mask_filters(w, keep=1, engine=engine)[:, 0], [False, False, True, False])


@pytest.mark.parametrize("bh, bw", [(1, 20), (12, 4), (12, 1), (3, 3), (5, 7), (12, 20)])
def test_apply_tile_mask_is_apply_mask_of_expanded_tiles(bh, bw, engine, rng):
    w2d = rng.standard_normal((12, 20))
    w2d[0, :3] = -0.0                                   # kept -0.0 stays -0.0, dropped entries become +0
    tiles = rng.random((-(-12 // bh), -(-20 // bw))) < 0.5
    got = apply_tile_mask(w2d, tiles, bh, bw, engine=engine)
    expected = apply_mask(w2d, expand_tiles(tiles, w2d.shape, bh, bw))
    assert got.dtype == w2d.dtype and same_bits(got, expected)
    naive = np.zeros_like(w2d)
    for i in range(12):
        for j in range(20):
            if tiles[i // bh, j // bw]:
                naive[i, j] = w2d[i, j]
    assert same_bits(got, naive)


def test_magnitude_range_engines(rng, engine):
    w = rng.standard_normal((7, 9))
    w[2, 3] = 0.0
    mags = np.abs(w)[w != 0]
    assert magnitude_range(w, engine=engine) == (mags.min(), mags.max())
    assert magnitude_range(np.zeros((2, 2)), engine=engine) == (np.inf, 0.0)
