"""Constraints, hard pruning and masked retraining (pruned weights never revive)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from refimpl.nn.activation import ReLU
from refimpl.nn.linear import Linear
from refimpl.nn.module import Sequential
from refimpl.projections import (
    mask_filters,
    mask_shapes,
    project_filters,
    project_shapes,
    project_unstructured,
)
from refimpl.prune.constraints import Constraint, constraints_by_param, parse_constraints
from refimpl.prune.masking import MaskedRetraining, apply_masks, combine_masks, hard_prune, masks_sparsity
from refimpl.train.optim import SGD, Adam
from refimpl.train.trainer import Trainer

# --- Constraint ---------------------------------------------------------------------------------------------


def test_constraint_projects_through_the_registry(rng):
    w = rng.standard_normal((6, 3, 2, 2))
    c = Constraint("conv.weight", "filters", sparsity=0.5, engine="numpy")
    np.testing.assert_array_equal(c.project(w), project_filters(w, sparsity=0.5, engine="numpy"))
    np.testing.assert_array_equal(c.mask(w), mask_filters(w, sparsity=0.5, engine="numpy"))
    assert c.mask(w).dtype == np.bool_


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"structure": "diagonal", "sparsity": 0.5}, ValueError, "structure must be one of"),
        ({"structure": "filters", "sparsity": 1.5}, ValueError, r"sparsity must lie in \[0, 1\]"),
        ({"structure": "filters", "sparsity": 0.5, "keep": 2}, ValueError, "at most one of"),
        ({"structure": "filters"}, ValueError, "exactly one of sparsity= or keep="),
        ({"structure": "filters", "keep": -1}, ValueError, "keep must be >= 0"),
        ({"structure": "filters", "keep": 1.5}, TypeError, "keep must be an integer"),
        ({"structure": "blocks", "sparsity": 0.5}, TypeError, "block_shape"),
        ({"structure": "nm", "sparsity": 0.5, "n": 2, "m": 4}, TypeError, "sparsity"),
        ({"structure": "filters", "sparsity": 0.5, "blocks": 3}, TypeError, "blocks"),
    ],
)
def test_constraint_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        Constraint("fc.weight", **kwargs)


def test_constraint_param_must_be_a_name():
    with pytest.raises(TypeError, match="param"):
        Constraint("", "filters", sparsity=0.5)


def test_constraint_dict_round_trip_and_toml_lists():
    c = Constraint.from_dict({"param": "fc.weight", "structure": "blocks", "sparsity": 0.5,
                              "block_shape": [2, 2]})
    assert c.params["block_shape"] == (2, 2)  # TOML arrays become tuples
    assert Constraint.from_dict(c.to_dict()) == c
    nm = Constraint("fc.weight", "nm", n=2, m=4)
    assert nm.to_dict() == {"param": "fc.weight", "structure": "nm", "n": 2, "m": 4}
    with pytest.raises(ValueError, match="structure"):
        Constraint.from_dict({"param": "fc.weight"})
    with pytest.raises(ValueError, match="no sparsity= argument"):
        nm.with_sparsity(0.5)
    assert Constraint("a", "filters", keep=3).with_sparsity(0.25).to_dict() == {
        "param": "a", "structure": "filters", "sparsity": 0.25}


def test_parse_and_group_constraints():
    cs = parse_constraints([{"param": "a", "structure": "filters", "sparsity": 0.5},
                            Constraint("b", "unstructured", keep=1), Constraint("a", "shapes", keep=2)])
    groups = constraints_by_param(cs)
    assert list(groups) == ["a", "b"] and [c.structure for c in groups["a"]] == ["filters", "shapes"]
    with pytest.raises(TypeError, match="list"):
        parse_constraints(Constraint("a", "filters", keep=1))
    with pytest.raises(ValueError, match="empty"):
        parse_constraints([])


def test_frozen_projection_is_the_projection_onto_the_survivors(rng):
    w = rng.standard_normal((5, 4))
    frozen = rng.random((5, 4)) < 0.6
    c = Constraint("fc.weight", "unstructured", keep=4)
    z = c.project(w, frozen=frozen)
    # brute force: the 4 largest |w| among the surviving entries
    survivors = np.flatnonzero(frozen)
    best = survivors[np.argsort(-np.abs(w.reshape(-1)[survivors]), kind="stable")[:4]]
    expected = np.zeros(w.size)
    expected[best] = w.reshape(-1)[best]
    np.testing.assert_array_equal(z, expected.reshape(w.shape))
    m = c.mask(w, frozen=frozen)
    assert not (m & ~frozen).any() and m.sum() == 4
    with pytest.raises(ValueError, match="frozen has shape"):
        c.project(w, frozen=frozen[:2])
    with pytest.raises(TypeError, match="boolean"):
        c.project(w, frozen=frozen.astype(float))


def test_unified_mask_counts_unified_blocks_as_kept():
    w = np.array([[3.0, -1.0, 0.5, 0.25]])
    c = Constraint("fc.weight", "unified", block_shape=(1, 2), unify=0.5, prune=0.5)
    # one block unified ([3, -1] -> [2, -2]), one pruned: the mask keeps exactly the unified one
    np.testing.assert_array_equal(c.project(w), [[2.0, -2.0, 0.0, 0.0]])
    np.testing.assert_array_equal(c.mask(w), [[True, True, False, False]])


# --- hard prune ---------------------------------------------------------------------------------------------


def test_hard_prune_single_constraint_is_the_projection_in_place(rng):
    params = {"fc.weight": rng.standard_normal((6, 5)), "fc.bias": rng.standard_normal(6)}
    original = params["fc.weight"].copy()
    live = params["fc.weight"]
    masks = hard_prune(params, [Constraint("fc.weight", "unstructured", sparsity=0.6)])
    assert params["fc.weight"] is live  # in place
    np.testing.assert_array_equal(live, project_unstructured(original, sparsity=0.6))
    assert list(masks) == ["fc.weight"] and masks["fc.weight"].sum() == 12
    np.testing.assert_array_equal(masks["fc.weight"], project_unstructured(original, sparsity=0.6) != 0)


def test_hard_prune_several_constraints_lies_in_every_set(rng, engine):
    w = rng.standard_normal((6, 3, 3, 3))
    params = {"conv.weight": w.copy()}
    filters = Constraint("conv.weight", "filters", keep=3, engine=engine)
    shapes = Constraint("conv.weight", "shapes", keep=10, engine=engine)
    masks = hard_prune(params, [filters, shapes])
    z = params["conv.weight"]
    gemm = z.reshape(6, -1)
    assert np.count_nonzero(np.any(gemm != 0, axis=1)) <= 3  # in the filter set
    assert np.count_nonzero(np.any(gemm != 0, axis=0)) <= 10  # in the shape set
    # in both sets means: projecting onto either changes nothing
    np.testing.assert_array_equal(project_filters(z, keep=3), z)
    np.testing.assert_array_equal(project_shapes(z, keep=10), z)
    # the mask is the AND of the two masks of the original weight, applied by multiplication
    expected = mask_filters(w, keep=3) & mask_shapes(w, keep=10)
    np.testing.assert_array_equal(masks["conv.weight"], expected)
    np.testing.assert_array_equal(z, w * expected)


def test_hard_prune_respects_frozen_masks(rng):
    params = {"a": rng.standard_normal((4, 4)), "b": rng.standard_normal((3, 2))}
    frozen = {"a": rng.random((4, 4)) < 0.5, "b": rng.random((3, 2)) < 0.5}
    masks = hard_prune(params, [Constraint("a", "unstructured", keep=3)], frozen_masks=frozen)
    assert not (masks["a"] & ~frozen["a"]).any() and masks["a"].sum() == min(3, frozen["a"].sum())
    np.testing.assert_array_equal(masks["b"], frozen["b"])  # carried over and applied
    assert not params["b"][~frozen["b"]].any()


def test_hard_prune_errors(rng):
    params = {"a": rng.standard_normal((4, 4))}
    with pytest.raises(KeyError, match="nope"):
        hard_prune(params, [Constraint("nope", "filters", keep=1)])
    with pytest.raises(ValueError, match="shape"):
        hard_prune(params, [Constraint("a", "filters", keep=1)], frozen_masks={"a": np.ones((2, 2), bool)})
    with pytest.raises(TypeError, match="Module or a dict"):
        hard_prune([1, 2], [Constraint("a", "filters", keep=1)])


def test_apply_combine_and_sparsity(rng):
    params = {"a": np.ones((2, 4)), "b": np.ones(4)}
    masks = {"a": np.array([[True, False, True, False], [False, False, False, True]]),
             "b": np.array([True, True, True, False])}
    apply_masks(params, masks)
    np.testing.assert_array_equal(params["a"], masks["a"].astype(float))
    assert masks_sparsity(masks) == pytest.approx(6 / 12)
    assert masks_sparsity(masks, per_param=True) == {"a": 5 / 8, "b": 1 / 4}
    both = combine_masks(masks, {"a": np.zeros((2, 4), bool)})
    assert not both["a"].any() and both["b"] is not masks["b"]
    np.testing.assert_array_equal(both["b"], masks["b"])
    with pytest.raises(TypeError, match="boolean"):
        apply_masks(params, {"a": np.ones((2, 4))})


# --- masked retraining ----------------------------------------------------------------------------------


def _model(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential([("fc1", Linear(6, 10, rng=rng, dtype=np.float64)), ("relu", ReLU()),
                       ("fc2", Linear(10, 3, rng=rng, dtype=np.float64))])


def _data(rng, n=64):
    x = rng.standard_normal((n, 6))
    return x, (x[:, 0] - x[:, 3] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)


OPTIMIZERS = {
    "sgd-momentum-wd": lambda p: SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-2),
    "sgd-nesterov-wd": lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-2),
    "adam": lambda p: Adam(p, lr=1e-2),
    "adam-wd": lambda p: Adam(p, lr=1e-2, weight_decay=1e-2),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_masked_retraining_never_revives_pruned_weights(rng, optimizer):
    data = _data(rng)
    model = _model()
    opt = OPTIMIZERS[optimizer](model.parameters())
    # dense warm-up first, so the optimizer state is nonzero everywhere when the mask arrives
    Trainer(model, opt, data, batch_size=8, epochs=2, progress=False).fit()
    masks = hard_prune(model, [Constraint("fc1.weight", "unstructured", sparsity=0.7),
                               Constraint("fc2.weight", "filters", keep=2, engine="numpy")])
    assert all(np.abs(buf).sum() > 0 for buf in opt.state["fc1.weight"].values())
    before = {k: v.copy() for k, v in model.parameters().items()}
    hook = MaskedRetraining(masks)
    trainer = Trainer(model, opt, data, batch_size=8, epochs=6, hooks=[hook], progress=False)
    trainer.fit()
    assert trainer.step == 48
    for name, mask in masks.items():
        w = model.parameters()[name]
        assert np.all(w[~mask] == 0), name  # exactly zero, never revived
        for key, buf in opt.state[name].items():
            assert np.all(buf[~mask] == 0), (name, key)
        assert not np.array_equal(w[mask], before[name][mask])  # the survivors did train
    assert hook.sparsity() == pytest.approx(masks_sparsity(masks))


def test_without_state_zeroing_momentum_would_revive(rng):
    """The control: zeroing gradients alone does not keep a pruned weight at zero under momentum."""
    w = np.ones(4)
    opt = SGD({"w": w}, lr=0.1, momentum=0.9)
    opt.step({"w": np.ones(4)})  # builds a momentum buffer
    mask = np.array([True, True, False, False])
    w[~mask] = 0
    opt.step({"w": np.zeros(4)})  # gradient masked, but the stale buffer still moves the weight
    assert np.all(w[~mask] != 0)
    # the hook's after_step repairs both weight and buffer
    trainer = SimpleNamespace(params={"w": w}, grads={"w": np.zeros(4)}, optimizer=opt)
    hook = MaskedRetraining({"w": mask})
    hook.after_step(trainer)
    opt.step({"w": np.zeros(4)})
    assert np.all(w[~mask] == 0)


def test_masked_retraining_validates(rng):
    with pytest.raises(TypeError, match="boolean"):
        MaskedRetraining({"a": np.ones(3)})
    with pytest.raises(TypeError, match="dict"):
        MaskedRetraining([np.ones(3, bool)])
    hook = MaskedRetraining({"fc1.weight": np.ones((3, 3), bool)})
    model = _model()
    trainer = SimpleNamespace(params=model.parameters(), optimizer=SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="shape"):
        hook.on_train_begin(trainer)


def test_masked_retraining_resume_is_bitwise_identical(rng, tmp_path):
    data = _data(rng)

    def run(epochs, out_dir=None, resume=False):
        model = _model(1)
        masks = hard_prune(model, [Constraint("fc1.weight", "shapes", keep=3, engine="numpy"),
                                   Constraint("fc2.weight", "unstructured", sparsity=0.5)])
        hook = MaskedRetraining(masks if not resume else {})  # a resumed run gets its masks back
        opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        trainer = Trainer(model, opt, data, batch_size=16, epochs=epochs, hooks=[hook], seed=5,
                          out_dir=out_dir, progress=False)
        trainer.fit(resume=resume)
        return model, hook, masks

    full, _, masks = run(3)
    run(1, tmp_path)  # stopped after epoch 1 of 3
    resumed, hook, _ = run(3, tmp_path, resume=True)
    assert set(hook.masks) == set(masks)
    for name in masks:
        np.testing.assert_array_equal(hook.masks[name], masks[name])
    for name, value in full.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name], value)
