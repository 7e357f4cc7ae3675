"""Tests for refimpl.prune.group_lasso (SSL group lasso) and its engine phase ``method = "ssl"``.

The groups are checked against loops written from their definitions and against the projections' own
masks; the prox against its closed form, its optimality conditions and brute-force minimisation; the hook
inside a real Trainer; the method through run_experiment, including a bitwise resume in the middle of the
group-lasso phase.
"""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize

import refimpl.prune.group_lasso as group_lasso_module
from refimpl.config import ExperimentConfig, load_config, to_toml
from refimpl.data import load_dataset
from refimpl.engine import plan_phases, run_experiment
from refimpl.models import lenet5
from refimpl.projections import PROJECTIONS
from refimpl.prune import (
    GROUP_LASSO_STRUCTURES,
    Constraint,
    GroupLasso,
    expand_constraints,
    group_index,
    group_lasso_penalty,
    group_norms,
    group_tile,
    prox_group_lasso,
)
from refimpl.testing import strategies as rst
from refimpl.train import SGD, CosineAnnealingLR, Hook, Trainer, load_checkpoint

CONV, LINEAR = (3, 2, 2, 3), (4, 5)
BLOCK = {CONV: (2, 4), LINEAR: (3, 2)}   # edge blocks on both axes: GEMM views 3 x 12 and 4 x 5


def options(structure, shape):
    return {"block_shape": BLOCK[shape]} if structure == "blocks" else {}


def reference_groups(shape, structure, block_shape=None):
    """Flat indices of every group, in group order, written out with loops from the definitions."""
    flat = np.arange(math.prod(shape)).reshape(shape)
    if structure == "unstructured":
        return [np.array([i]) for i in range(flat.size)]
    if structure == "blocks":
        gemm = flat.reshape(shape[0], -1)
        bh, bw = block_shape
        return [gemm[r:r + bh, c:c + bw].ravel() for r in range(0, gemm.shape[0], bh)
                for c in range(0, gemm.shape[1], bw)]
    if len(shape) == 2:          # linear (out, in): neurons, input columns, entries
        out, inp = shape
        return {"filters": [flat[j] for j in range(out)],
                "channels": [flat[:, i] for i in range(inp)],
                "shapes": [flat[:, i] for i in range(inp)],
                "kernels": [flat[j, i:i + 1] for j in range(out) for i in range(inp)]}[structure]
    F, C, KH, KW = shape
    return {"filters": [flat[f].ravel() for f in range(F)],
            "channels": [flat[:, c].ravel() for c in range(C)],
            "shapes": [flat[:, c, i, j] for c in range(C) for i in range(KH) for j in range(KW)],
            "kernels": [flat[f, c].ravel() for f in range(F) for c in range(C)]}[structure]


def objective(x, w, t, groups):
    """½‖X − W‖² + t Σ_g ‖X_g‖₂ over the reference groups (flat index arrays)."""
    x, w = x.reshape(-1), w.reshape(-1)
    return 0.5 * float(np.sum((x - w) ** 2)) + t * sum(float(np.linalg.norm(x[g])) for g in groups)


CASES = [(s, shape) for shape in (CONV, LINEAR) for s in GROUP_LASSO_STRUCTURES]
IDS = [f"{s}-{'conv' if len(shape) == 4 else 'linear'}" for s, shape in CASES]


def test_docstring_examples():
    assert doctest.testmod(group_lasso_module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


# --- the group partition ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("structure", "shape"), CASES, ids=IDS)
def test_group_index_is_the_partition_of_the_definitions(structure, shape):
    groups = reference_groups(shape, structure, BLOCK[shape] if structure == "blocks" else None)
    index = group_index(shape, structure, **options(structure, shape)).reshape(-1)
    assert index.dtype == np.int64 and sorted(np.concatenate(groups)) == list(range(index.size))
    for g, members in enumerate(groups):
        assert np.all(index[members] == g)
    w = np.random.default_rng(0).standard_normal(shape)
    norms = group_norms(w, structure, **options(structure, shape))
    np.testing.assert_allclose(norms, [np.linalg.norm(w.reshape(-1)[g]) for g in groups], rtol=1e-14)
    assert group_lasso_penalty(w, 0.3, structure, **options(structure, shape)) == pytest.approx(
        0.3 * sum(np.linalg.norm(w.reshape(-1)[g]) for g in groups), rel=1e-14)
    bh, bw = group_tile(shape, structure, **options(structure, shape))
    assert max(len(g) for g in groups) == bh * bw


@pytest.mark.parametrize(("structure", "shape"), CASES, ids=IDS)
def test_groups_are_those_the_projection_keeps_or_drops(structure, shape):
    """The projection's mask is a union of our groups: the k of largest group_norms, for every k."""
    w = np.random.default_rng(1).standard_normal(shape)             # tie-free norms
    norms = group_norms(w, structure, **options(structure, shape))
    index = group_index(shape, structure, **options(structure, shape))
    _, mask_fn = PROJECTIONS[structure]
    for keep in range(norms.size + 1):
        kept = np.argsort(-norms, kind="stable")[:keep]
        np.testing.assert_array_equal(mask_fn(w, keep=keep, **options(structure, shape)),
                                      np.isin(index, kept))


def test_unstructured_takes_any_shape_and_linear_kernels_are_entries():
    w = np.array([[[1.0, -2.0, 3.0]]])
    np.testing.assert_array_equal(prox_group_lasso(w, 1.5, "unstructured"), [[[0.0, -0.5, 1.5]]])
    assert group_tile((4, 5), "kernels") == (1, 1) and group_tile((4, 5), "channels") == (4, 1)


# --- the prox: closed form, optimality, brute force --------------------------------------------------------

@pytest.mark.parametrize(("structure", "shape"), CASES, ids=IDS)
def test_prox_is_the_closed_form_and_satisfies_the_optimality_conditions(structure, shape):
    rng = np.random.default_rng(2)
    w = rng.standard_normal(shape)
    groups = reference_groups(shape, structure, BLOCK[shape] if structure == "blocks" else None)
    norms = np.array([np.linalg.norm(w.reshape(-1)[g]) for g in groups])
    t = float(np.median(norms))                                       # about half the groups die
    x = prox_group_lasso(w, t, structure, **options(structure, shape))
    flat_w, flat_x = w.reshape(-1), x.reshape(-1)
    for g, norm in zip(groups, norms, strict=True):
        np.testing.assert_allclose(flat_x[g], max(0.0, 1.0 - t / norm) * flat_w[g], rtol=1e-15, atol=0)
        # 0 ∈ x_g − w_g + t ∂‖x_g‖: x_g = 0 needs ‖w_g‖ <= t, else x_g − w_g + t x_g/‖x_g‖ = 0.
        if not flat_x[g].any():
            assert norm <= t
        else:
            residual = flat_x[g] - flat_w[g] + t * flat_x[g] / np.linalg.norm(flat_x[g])
            assert np.linalg.norm(residual) <= 1e-12 * norm


@pytest.mark.parametrize(("structure", "shape"), CASES, ids=IDS)
def test_prox_beats_brute_force_minimisation(structure, shape):
    """Powell from many starts, per group, finds nothing better; nor do random moves of the whole tensor.

    The objective is 1-strongly convex, so F(y) − F(x*) >= ½‖y − x*‖²: any point the search finds with
    an objective within ε of ours lies within √(2ε) of ours, which bounds the distance asserted below.
    The groups of the objective are the loops of reference_groups, not the code under test.
    """
    rng = np.random.default_rng(3)
    w = rng.standard_normal(shape)
    groups = reference_groups(shape, structure, BLOCK[shape] if structure == "blocks" else None)
    t = 0.8 * float(np.median([np.linalg.norm(w.reshape(-1)[g]) for g in groups]))
    x = prox_group_lasso(w, t, structure, **options(structure, shape)).reshape(-1)
    flat_w = w.reshape(-1)
    for g in groups:
        v = flat_w[g]

        def f(y, v=v):
            return 0.5 * float(np.sum((y - v) ** 2)) + t * float(np.linalg.norm(y))

        starts = [np.zeros_like(v), v] + [rng.standard_normal(v.size) for _ in range(4)]
        best = min((minimize(f, s, method="Powell", options={"xtol": 1e-10, "ftol": 1e-15, "maxiter": 20000})
                    for s in starts), key=lambda r: r.fun)
        assert f(x[g]) <= best.fun + 1e-12
        assert np.linalg.norm(best.x - x[g]) <= math.sqrt(2 * max(best.fun - f(x[g]), 0.0)) + 1e-5
    ours = objective(x, w, t, groups)
    for _ in range(200):
        step = rng.standard_normal(x.size) * 10.0 ** rng.integers(-6, 0)
        assert ours <= objective(x + step, w, t, groups) + 1e-13


def test_frozen_prox_is_the_prox_of_the_restricted_problem():
    rng = np.random.default_rng(4)
    w = rng.standard_normal(CONV)
    frozen = rng.random(CONV) < 0.6
    groups = reference_groups(CONV, "filters")
    t = 1.0
    x = prox_group_lasso(w, t, "filters", frozen=frozen)
    assert not x[~frozen].any()
    np.testing.assert_array_equal(x, prox_group_lasso(w * frozen, t, "filters"))
    # Brute force over the free entries only (the masked ones are fixed at 0).
    free = np.flatnonzero(frozen)

    def f(y):
        full = np.zeros(w.size)
        full[free] = y
        return objective(full, w, t, groups)

    best = min((minimize(f, s, method="Powell", options={"xtol": 1e-10, "ftol": 1e-15, "maxiter": 50000})
                for s in (np.zeros(free.size), w.reshape(-1)[free], rng.standard_normal(free.size))),
               key=lambda r: r.fun)
    assert objective(x, w, t, groups) <= best.fun + 1e-12
    np.testing.assert_allclose(best.x, x.reshape(-1)[free], atol=1e-4)


def test_extreme_magnitudes_neither_overflow_nor_underflow():
    w = np.array([[1e200, 1e200, 1e-200, 1e-200]])
    np.testing.assert_allclose(group_norms(w, "blocks", block_shape=(1, 2)), [math.sqrt(2) * 1e200,
                                                                              math.sqrt(2) * 1e-200])
    x = prox_group_lasso(w, 1e200, "blocks", block_shape=(1, 2))
    np.testing.assert_allclose(x[0, :2], (1 - 1 / math.sqrt(2)) * 1e200, rtol=1e-15)
    np.testing.assert_array_equal(x[0, 2:], 0.0)
    y = prox_group_lasso(w, 1e-200, "blocks", block_shape=(1, 2))
    np.testing.assert_allclose(y[0, 2:], (1 - 1 / math.sqrt(2)) * 1e-200, rtol=1e-15)


@pytest.mark.parametrize(("structure", "shape"), CASES, ids=IDS)
def test_numba_and_numpy_engines_agree(structure, shape):
    w = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    kwargs = options(structure, shape)
    np.testing.assert_array_equal(prox_group_lasso(w, 0.7, structure, engine="numba", **kwargs),
                                  prox_group_lasso(w, 0.7, structure, engine="numpy", **kwargs))


# --- Hypothesis properties ---------------------------------------------------------------------------------

@st.composite
def prox_inputs(draw, tie_free=False):
    """(w, structure, kwargs, t): any weight, a structure, and a threshold around its group norms."""
    w = draw(rst.tie_free_weights() if tie_free else rst.weights())
    structure = draw(st.sampled_from(GROUP_LASSO_STRUCTURES))
    kwargs = {}
    if structure == "blocks":
        kwargs["block_shape"] = draw(rst.block_shapes((w.shape[0], w.size // w.shape[0])))
    norms = group_norms(w, structure, **kwargs)
    t = draw(st.one_of(st.sampled_from(sorted(set(norms.tolist()))),          # a norm itself: "<= t" dies
                       st.floats(0.0, 1.2).map(lambda f: f * float(norms.max()))))
    return w, structure, kwargs, t


@given(prox_inputs())
def test_prox_zeroes_small_groups_and_shrinks_the_others_by_t(case):
    w, structure, kwargs, t = case
    x = prox_group_lasso(w, t, structure, **kwargs)
    assert x.dtype == w.dtype and x.shape == w.shape
    index = group_index(w.shape, structure, **kwargs)
    norms = group_norms(w, structure, **kwargs)
    eps = np.finfo(w.dtype).eps
    w64 = w.astype(np.float64)
    for g, norm in enumerate(norms):
        members = index == g
        if norm <= t:
            assert not x[members].any() and not np.signbit(x[members]).any()      # exactly +0
        else:
            # Closed form, to one rounding to w's dtype: norm shrinks by exactly t, direction kept.
            np.testing.assert_allclose(x[members], (1 - t / norm) * w64[members], rtol=2 * eps, atol=0)
            assert np.all((np.sign(x[members]) == np.sign(w[members])) | (x[members] == 0))


@given(prox_inputs(), st.floats(0.0, 2.0))
def test_prox_composes_as_the_sum_of_thresholds_so_it_is_not_idempotent(case, fraction):
    """prox_s ∘ prox_t = prox_{s+t}: applying it twice shrinks twice (it is no projection)."""
    w, structure, kwargs, t = case
    w = w.astype(np.float64)
    s = fraction * t
    twice = prox_group_lasso(prox_group_lasso(w, t, structure, **kwargs), s, structure, **kwargs)
    np.testing.assert_allclose(twice, prox_group_lasso(w, s + t, structure, **kwargs), rtol=1e-12,
                               atol=1e-12 * float(np.abs(w).max(initial=0.0)))
    once = prox_group_lasso(w, t, structure, **kwargs)
    if s > 0 and group_norms(once, structure, **kwargs).max() > 0:
        assert not np.array_equal(prox_group_lasso(once, t, structure, **kwargs), once)


@given(prox_inputs())
def test_zero_threshold_is_the_identity_and_the_input_is_never_written(case):
    w, structure, kwargs, t = case
    before = w.copy()
    assert prox_group_lasso(w, 0.0, structure, **kwargs).tobytes() == w.tobytes()
    prox_group_lasso(w, t, structure, **kwargs)
    assert w.tobytes() == before.tobytes()


@given(prox_inputs(tie_free=True))
def test_non_contiguous_input_gives_the_contiguous_result(case):
    w, structure, kwargs, t = case
    # Every other entry of a twice-as-large array along the last axis: a strided, non-contiguous view.
    big = np.repeat(w, 2, axis=-1)
    view = big[..., ::2]
    assert np.array_equal(view, w) and (w.size == 1 or not view.flags.c_contiguous)
    assert prox_group_lasso(view, t, structure, **kwargs).tobytes() == \
        prox_group_lasso(w, t, structure, **kwargs).tobytes()
    assert prox_group_lasso(np.asfortranarray(w), t, structure, **kwargs).tobytes() == \
        prox_group_lasso(w, t, structure, **kwargs).tobytes()


# --- bad input: one line naming the argument -------------------------------------------------------------

@pytest.mark.parametrize(("call", "exc", "match"), [
    (lambda: prox_group_lasso(np.ones((2, 2)), -1.0, "filters"), ValueError, "threshold"),
    (lambda: prox_group_lasso(np.ones((2, 2)), math.nan, "filters"), ValueError, "threshold"),
    (lambda: prox_group_lasso(np.ones((2, 2)), True, "filters"), TypeError, "threshold"),
    (lambda: prox_group_lasso(np.ones((2, 2)), "1", "filters"), TypeError, "threshold"),
    (lambda: prox_group_lasso(np.ones((2, 2)), 1.0, "nm"), ValueError, "structure"),
    (lambda: prox_group_lasso(np.ones((2, 2)), 1.0, "blocks"), ValueError, "block_shape"),
    (lambda: prox_group_lasso(np.ones((2, 2)), 1.0, "shapes", block_shape=(1, 1)), ValueError, "block_shape"),
    (lambda: prox_group_lasso(np.ones((2, 2)), 1.0, "blocks", block_shape=(3, 1)), ValueError, "block_shape"),
    (lambda: prox_group_lasso(np.ones((2, 2, 2)), 1.0, "filters"), ValueError, "w must be"),
    (lambda: prox_group_lasso(np.array([[np.nan]]), 1.0, "filters"), ValueError, "w contains NaN"),
    (lambda: prox_group_lasso(np.ones((2, 2)), 1.0, "filters", frozen=np.ones((2, 2))), TypeError, "frozen"),
    (lambda: prox_group_lasso(np.ones((2, 2)), 1.0, "shapes", frozen=np.ones(4, bool)), ValueError, "frozen"),
    (lambda: prox_group_lasso(np.ones((2, 2)), 1.0, "filters", engine="cuda"), ValueError, "engine"),
    (lambda: group_lasso_penalty(np.ones((2, 2)), -0.1, "filters"), ValueError, "lam"),
    (lambda: group_index((2, 0), "filters"), ValueError, "shape"),
    (lambda: group_tile((2, 3, 4), "shapes"), ValueError, "shape"),
    (lambda: GroupLasso([Constraint("w", "filters", sparsity=0.5)], lam=math.inf), ValueError, "lam"),
    (lambda: GroupLasso([Constraint("w", "nm", n=2, m=4)], lam=1.0), ValueError, "structure"),
    (lambda: GroupLasso([Constraint("w", "filters", sparsity=0.5)], 1.0, frozen_masks={"w": np.ones(2)}),
     TypeError, "frozen_masks"),
])
def test_bad_input_is_one_line_naming_the_argument(call, exc, match):
    with pytest.raises(exc, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# --- the hook inside a real Trainer ----------------------------------------------------------------------

HOOK_CONSTRAINTS = [Constraint("conv1.weight", "kernels", sparsity=0.5),
                    Constraint("conv2.weight", "filters", sparsity=0.5),
                    Constraint("conv2.weight", "shapes", sparsity=0.5),     # overlaps the filters
                    Constraint("fc1.weight", "blocks", block_shape=(8, 8), sparsity=0.5),
                    Constraint("fc2.weight", "unstructured", sparsity=0.5)]


def synthetic(n=96):
    data = load_dataset("synthetic")
    return data.x_train[:n], data.y_train[:n]


def train(hooks, *, epochs=2, lr=0.05, momentum=0.9, out_dir=None):
    model = lenet5(num_classes=4, input_size=8, rng=np.random.default_rng(0))
    opt = SGD(model.parameters(), lr=lr, momentum=momentum)
    trainer = Trainer(model, opt, synthetic(), batch_size=32, epochs=epochs, hooks=hooks,
                      schedule=CosineAnnealingLR(lr, epochs + 1), progress=False, out_dir=out_dir)
    return trainer, trainer.fit()


class Snapshot(Hook):
    """Copies the constrained weights after the optimizer step (the unpenalised step's result)."""

    def after_step(self, trainer):
        self.before = {c.param: trainer.params[c.param].copy() for c in HOOK_CONSTRAINTS}


class Compare(Hook):
    """After the group-lasso hook: the weights are its proxes, in order, with this epoch's lr."""

    def __init__(self, snapshot, lam):
        self.snapshot, self.lam, self.steps, self.lrs = snapshot, lam, 0, set()

    def after_step(self, trainer):
        lr = trainer.optimizer.lr
        self.lrs.add(lr)
        expected = dict(self.snapshot.before)
        for c in HOOK_CONSTRAINTS:
            kwargs = {"block_shape": c.params["block_shape"]} if c.structure == "blocks" else {}
            before = group_norms(expected[c.param], c.structure, **kwargs)
            expected[c.param] = prox_group_lasso(expected[c.param], lr * self.lam, c.structure, **kwargs)
            after = group_norms(trainer.params[c.param], c.structure, **kwargs)
            if c.param != "conv2.weight":       # one constraint: the prox's norms exactly
                np.testing.assert_allclose(after, np.maximum(before - lr * self.lam, 0), rtol=1e-5,
                                           atol=1e-6 * float(before.max()))
            assert np.all(after <= before * (1 + 1e-6))     # never above the unpenalised step's norms
        for name, value in expected.items():
            assert trainer.params[name].tobytes() == value.tobytes(), name
        self.steps += 1


def test_hook_applies_the_prox_after_every_step_with_the_current_learning_rate():
    snapshot = Snapshot()
    compare = Compare(snapshot, lam=0.2)
    trainer, history = train([snapshot, GroupLasso(HOOK_CONSTRAINTS, lam=0.2), compare])
    assert compare.steps == trainer.step == 6 and len(compare.lrs) == 2        # the cosine schedule moved
    record = history[-1]
    hook = GroupLasso(HOOK_CONSTRAINTS, lam=0.2)
    assert record["ssl.penalty"] == pytest.approx(hook.measure(trainer.params)["ssl.penalty"])
    assert record["ssl.penalty"] == pytest.approx(sum(
        group_lasso_penalty(trainer.params[c.param], 0.2, c.structure,
                            **({"block_shape": (8, 8)} if c.structure == "blocks" else {}))
        for c in HOOK_CONSTRAINTS))
    assert set(record) >= {"ssl.zero_groups", "ssl.conv2.weight:filters.zero_groups",
                           "ssl.conv2.weight:shapes.zero_groups", "ssl.fc1.weight:blocks.zero_groups"}
    assert GroupLasso(HOOK_CONSTRAINTS, lam=0.2).state_dict() == {}          # stateless: resume is exact


def test_lam_zero_is_a_spectator():
    plain, _ = train([])
    spectator, history = train([GroupLasso(HOOK_CONSTRAINTS, lam=0.0)])
    for name, value in plain.params.items():
        assert spectator.params[name].tobytes() == value.tobytes(), name
    assert history[-1]["ssl.penalty"] == 0.0 and history[-1]["ssl.zero_groups"] == 0.0


def test_zero_groups_appear_as_lam_grows():
    constraints = [Constraint("conv2.weight", "shapes", sparsity=0.5)]
    shares = []
    # 3 steps of lr 0.05 from shape norms between 0.14 and 0.21: lr * lam * 3 sweeps across that range.
    for lam in (0.0, 1.0, 1.1, 1.2, 1.3, 1e4):
        _, history = train([GroupLasso(constraints, lam=lam)], epochs=1, momentum=0.0)
        shares.append(history[-1]["ssl.zero_groups"])
    assert shares[0] == 0.0 and shares[-1] == 1.0 and 0.0 < shares[1] and shares[-2] < 1.0
    assert all(a < b for a, b in zip(shares, shares[1:], strict=False)), shares


def test_frozen_masks_keep_zeros_at_zero():
    mask = np.random.default_rng(0).random((50, 20, 5, 5)) < 0.5
    hook = GroupLasso([Constraint("conv2.weight", "filters", sparsity=0.5)], lam=0.01,
                      frozen_masks={"conv2.weight": mask})
    trainer, _ = train([hook], epochs=1)
    assert not trainer.params["conv2.weight"][~mask].any()


def test_hook_refuses_a_missing_parameter_before_training():
    with pytest.raises(KeyError, match="conv9.weight"):
        train([GroupLasso([Constraint("conv9.weight", "filters", sparsity=0.5)], lam=0.1)])


# --- method = "ssl" in the engine --------------------------------------------------------------------------

SETTINGS = {
    "name": "tiny-ssl", "threads": 1, "seed": 1, "method": "ssl",
    "data.name": "synthetic", "data.limit_train": 160, "data.limit_test": 80,
    "pretrain.epochs": 2, "pretrain.lr": 3e-3, "ssl.epochs": 3, "retrain.epochs": 2,
    "ssl.lr": 0.02, "ssl.momentum": 0.9, "ssl.lam": 0.8,  # momentum buffers must survive a resume too
    "admm.constraints": [{"params": "conv", "structure": "filters", "sparsity": 0.5},
                         {"param": "conv2.weight", "structure": "shapes", "sparsity": 0.5},
                         {"param": "fc1.weight", "structure": "filters", "sparsity": 0.75}],
}


def tiny_config(**extra):
    return load_config(None, {**SETTINGS, **extra})


def arrays(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def ssl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ssl") / "run"
    return out, run_experiment(tiny_config(), out, progress=False, echo=None)


def test_ssl_run_phases_targets_and_log(ssl_run):
    out, report = ssl_run
    assert [p["name"] for p in report["phases"]] == ["pretrain", "ssl", "prune", "retrain", "compact"]
    masks, weights = arrays(out / "masks.npz"), arrays(out / "model_masked.npz")
    assert np.count_nonzero(masks["conv1.weight"].reshape(20, -1).any(axis=1)) == 10
    assert np.count_nonzero(masks["conv2.weight"].reshape(50, -1).any(axis=1)) <= 25
    assert np.count_nonzero(masks["conv2.weight"].reshape(50, -1).any(axis=0)) <= 250
    assert np.count_nonzero(masks["fc1.weight"].any(axis=1)) == 125
    for name, mask in masks.items():
        assert not np.any(weights[name][~mask])
    log = [json.loads(line) for line in (out / "ssl" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all("ssl.penalty" in r and "ssl.zero_groups" in r for r in log)
    metrics = json.loads((out / "state.json").read_text())["phases"]["ssl"]["metrics"]
    assert set(metrics["zero_groups"]) == {"conv1.weight:filters", "conv2.weight:filters",
                                           "conv2.weight:shapes", "fc1.weight:filters"}
    assert metrics["zero_groups"]["conv2.weight:shapes"] > 0       # lam 0.8 zeroes some shapes exactly
    # The ssl phase's weights hold those exact zero groups, and the hard cut drops them first.
    ssl_weights = arrays(out / "ssl" / "model.npz")["conv2.weight"].reshape(50, -1)
    zero_shapes = ~ssl_weights.any(axis=0)
    assert zero_shapes.mean() == pytest.approx(metrics["zero_groups"]["conv2.weight:shapes"])
    assert report["accuracy"]["after_ssl"] == metrics["test_acc"] is not None
    assert "after group lasso" in (out / "report.txt").read_text()
    assert report["accuracy"]["compact"] == report["accuracy"]["masked"]


def test_ssl_resume_mid_phase_is_bitwise_identical(ssl_run, tmp_path, monkeypatch):
    reference, _ = ssl_run
    original = Trainer._run_epoch

    class Interrupted(Exception):
        pass

    def crash_after_two_epochs(self, epoch):
        original(self, epoch)
        if self.out_dir.name == "ssl" and self.epoch == 2:
            raise Interrupted
    monkeypatch.setattr(Trainer, "_run_epoch", crash_after_two_epochs)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        run_experiment(tiny_config(), out, progress=False, echo=None)
    monkeypatch.undo()
    assert load_checkpoint(out / "ssl" / "checkpoint.npz")["position"]["epoch"] == 2
    assert "ssl" not in json.loads((out / "state.json").read_text())["phases"]
    run_experiment(tiny_config(), out, resume=True, progress=False, echo=None)
    for name in ("model_masked.npz", "model_compact.npz", "masks.npz", "ssl/model.npz"):
        got, want = arrays(out / name), arrays(reference / name)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].tobytes() == want[key].tobytes(), (name, key)


def test_ssl_plan_and_config_round_trip(tmp_path):
    config = tiny_config(**{"ssl.epochs": 4})
    model = lenet5(num_classes=4, input_size=8)
    phases = plan_phases(config, expand_constraints(config.admm.constraints, model))
    assert [(p.name, p.epochs) for p in phases] == [("pretrain", 2), ("ssl", 4), ("prune", 0), ("retrain", 2),
                                                     ("compact", 0)]
    assert [c.sparsity for c in phases[1].constraints] == [0.5, 0.5, 0.5, 0.75]
    text = to_toml(config)
    assert "[ssl]" in text and "lam = 0.8" in text
    (tmp_path / "config.toml").write_text(text)
    assert load_config(tmp_path / "config.toml") == config


def test_ssl_defaults_are_plain_sgd():
    ssl = ExperimentConfig().ssl
    assert (ssl.optimizer, ssl.momentum, ssl.epochs) == ("sgd", 0.0, 10) and ssl.lam > 0


@pytest.mark.parametrize(("extra", "key"), [
    ({"ssl.lam": -0.1}, "ssl.lam"),
    ({"ssl.lam": math.nan}, "ssl.lam"),
    ({"ssl.lam": math.inf}, "ssl.lam"),
    ({"ssl.lr": -1.0}, "ssl.lr"),
    ({"ssl.optimizer": "rmsprop"}, "ssl.optimizer"),
    ({"admm.steps": 2}, "admm.steps"),
    ({"admm.targets": [0.25, 0.5]}, "admm.targets"),
    ({"admm.constraints": [{"params": "conv", "structure": "nm", "n": 2, "m": 4}]},
     "admm.constraints[0].structure"),
    ({"admm.constraints": []}, "admm.constraints"),
])
def test_bad_ssl_settings_are_one_line_naming_the_key(extra, key):
    with pytest.raises(ValueError) as info:
        tiny_config(**extra)
    message = str(info.value)
    assert message.startswith(f"'{key}'") and "\n" not in message


def test_ssl_lam_from_a_file_is_checked(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('method = "ssl"\n[ssl]\nlam = nan\n[[admm.constraints]]\nparams = "conv"\n'
                    'structure = "filters"\nsparsity = 0.5\n')
    message = r"^'ssl\.lam' in .*bad\.toml: must be a finite number >= 0, got nan$"
    with pytest.raises(ValueError, match=message):
        load_config(path)
