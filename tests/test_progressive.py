"""Progressive ADMM pruning and the magnitude baseline: nested masks, frozen zeros, targets reached."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.nn.activation import ReLU
from refimpl.nn.linear import Linear
from refimpl.nn.module import Sequential
from refimpl.prune.admm import ADMM
from refimpl.prune.constraints import Constraint
from refimpl.prune.magnitude import (
    global_magnitude_prune,
    iterative_targets,
    magnitude_prune,
    run_magnitude_pruning,
    split_budget,
)
from refimpl.prune.masking import MaskedRetraining, masks_sparsity
from refimpl.prune.progressive import progressive_prune, stage_constraints
from refimpl.train.optim import SGD
from refimpl.train.trainer import Hook, Trainer


def _model():
    rng = np.random.default_rng(0)
    return Sequential([("fc1", Linear(6, 10, rng=rng, dtype=np.float64)), ("relu", ReLU()),
                       ("fc2", Linear(10, 3, rng=rng, dtype=np.float64))])


def _data(rng, n=48):
    x = rng.standard_normal((n, 6))
    return x, (x[:, 0] - x[:, 3] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)


class NonzeroSpy(Hook):
    """Records every position that was ever nonzero after an optimizer step during one phase."""

    def __init__(self):
        self.ever_nonzero = {}

    def after_step(self, trainer):
        for name in ("fc1.weight", "fc2.weight"):
            now = trainer.params[name] != 0
            self.ever_nonzero[name] = self.ever_nonzero.get(name, np.zeros_like(now)) | now


def _factory(model, data):
    phases = []

    def make_trainer(hooks, epochs):
        spy = NonzeroSpy()
        phases.append({"hooks": list(hooks), "epochs": epochs, "spy": spy})
        opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
        return Trainer(model, opt, data, batch_size=16, epochs=epochs, hooks=[*hooks, spy], progress=False)

    return make_trainer, phases


CONSTRAINTS = [Constraint("fc1.weight", "unstructured", sparsity=0.5),
               Constraint("fc2.weight", "shapes", sparsity=0.5, engine="numpy")]


def test_progressive_masks_are_nested_and_pruned_weights_stay_zero(rng):
    model = _model()
    make_trainer, phases = _factory(model, _data(rng))
    stages = progressive_prune(model, CONSTRAINTS, [0.5, 0.75, 0.9], make_trainer, admm_epochs=2,
                               retrain_epochs=2, rho=1e-2)
    assert len(stages) == 3 and len(phases) == 6
    assert [s.target for s in stages] == [0.5, 0.75, 0.9]
    # phase k: ADMM (+ the frozen masks after the first step), then masked retraining
    assert [type(h).__name__ for h in phases[0]["hooks"]] == ["ADMM"]
    assert [type(h).__name__ for h in phases[2]["hooks"]] == ["ADMM", "MaskedRetraining"]
    assert [type(h).__name__ for h in phases[3]["hooks"]] == ["MaskedRetraining"]
    assert all(p["epochs"] == 2 for p in phases)
    for k, stage in enumerate(stages):
        assert len(stage.admm) == 2  # one Z/U update per ADMM epoch
        assert stage.fit["retrain"][-1]["epoch"] == 1
        for name, mask in stage.masks.items():
            # pruned during this step's retraining? never.
            assert not (phases[2 * k + 1]["spy"].ever_nonzero[name] & ~mask).any()
            if k > 0:
                previous = stages[k - 1].masks[name]
                assert not (mask & ~previous).any()  # M_k ⊆ M_{k-1}
                # weights pruned by an earlier step stayed zero during this step's ADMM phase
                assert not (phases[2 * k]["spy"].ever_nonzero[name] & ~previous).any()
    final = stages[-1]
    # 90% of fc1's 60 entries; 90% of fc2's 10 columns (round(9.0) = 9 columns of 3 weights)
    assert final.layer_sparsity == {"fc1.weight": 0.9, "fc2.weight": 0.9}
    assert final.sparsity == pytest.approx(masks_sparsity(final.masks))
    for name, mask in final.masks.items():
        assert not model.parameters()[name][~mask].any()


def test_progressive_admm_phase_respects_frozen_masks(rng):
    """With retraining and ADMM phases set, the second ADMM hook is given the first step's masks."""
    model = _model()
    make_trainer, phases = _factory(model, _data(rng))
    stages = progressive_prune(model, CONSTRAINTS[:1], [0.5, 0.8], make_trainer, admm_epochs=1,
                               retrain_epochs=0)
    assert len(phases) == 2  # retraining skipped (0 epochs)
    second_admm = phases[1]["hooks"][0]
    assert isinstance(second_admm, ADMM)
    np.testing.assert_array_equal(second_admm.frozen_masks["fc1.weight"], stages[0].masks["fc1.weight"])
    assert not (second_admm.Z[0] != 0)[~stages[0].masks["fc1.weight"]].any()
    masked = phases[1]["hooks"][1]
    assert isinstance(masked, MaskedRetraining)


def test_stage_constraints():
    steps = stage_constraints(CONSTRAINTS, [0.5, 0.7])
    assert [[c.sparsity for c in step] for step in steps] == [[0.5, 0.5], [0.7, 0.7]]
    explicit = stage_constraints(CONSTRAINTS, [[{"param": "fc1.weight", "structure": "unstructured",
                                                 "sparsity": 0.3}], [CONSTRAINTS[0]]])
    assert explicit[0][0].sparsity == 0.3 and explicit[1][0] is CONSTRAINTS[0]
    with pytest.raises(ValueError, match="strictly increasing"):
        stage_constraints(CONSTRAINTS, [0.5, 0.5])
    with pytest.raises(ValueError, match=r"targets\[1\] must lie in"):
        stage_constraints(CONSTRAINTS, [0.5, 1.5])
    with pytest.raises(ValueError, match="non-empty"):
        stage_constraints(CONSTRAINTS, [])
    with pytest.raises(TypeError, match="all floats"):
        stage_constraints(CONSTRAINTS, [0.5, [CONSTRAINTS[0]]])


def test_progressive_rejects_bad_epochs(rng):
    with pytest.raises(ValueError, match="admm_epochs"):
        progressive_prune(_model(), CONSTRAINTS, [0.5], lambda h, e: None, admm_epochs=-1, retrain_epochs=1)


# --- magnitude pruning --------------------------------------------------------------------------------


def test_iterative_targets_and_budget():
    assert iterative_targets(0.75, 2) == [0.5, 0.75]
    assert iterative_targets(0.9, 3, "linear") == [0.3, 0.6, 0.9]
    geometric = iterative_targets(0.99, 4)
    assert geometric[-1] == 0.99 and all(b > a for a, b in zip(geometric, geometric[1:], strict=False))
    # every round prunes the same share of the survivors
    survivors = [1.0] + [1 - t for t in geometric]
    ratios = [b / a for a, b in zip(survivors, survivors[1:], strict=False)]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-9)
    assert iterative_targets(0.5, 1) == [0.5]
    with pytest.raises(ValueError, match="schedule"):
        iterative_targets(0.5, 2, "cubic")
    assert split_budget(10, 3) == [3, 3, 4] and sum(split_budget(7, 7)) == 7
    assert split_budget(2, 3) == [0, 1, 1]


def test_one_shot_magnitude_pruning(rng):
    model = _model()
    dense = {k: v.copy() for k, v in model.parameters().items()}
    make_trainer, phases = _factory(model, _data(rng))
    stages = run_magnitude_pruning(model, CONSTRAINTS, make_trainer, epochs=3)
    assert len(stages) == 1 and len(phases) == 1 and phases[0]["epochs"] == 3
    masks = stages[0].masks
    # the one-shot mask is the magnitude mask of the dense weights
    expected = magnitude_prune(dict(dense), CONSTRAINTS)
    for name in expected:
        np.testing.assert_array_equal(masks[name], expected[name])
        assert not (phases[0]["spy"].ever_nonzero[name] & ~masks[name]).any()
    assert stages[0].target == 0.5 and stages[0].fit["retrain"][-1]["epoch"] == 2


def test_iterative_magnitude_pruning_same_budget(rng):
    model = _model()
    make_trainer, phases = _factory(model, _data(rng))
    final = [c.with_sparsity(0.9) for c in CONSTRAINTS]
    stages = run_magnitude_pruning(model, final, make_trainer, epochs=7, rounds=3)
    assert [p["epochs"] for p in phases] == [2, 2, 3]  # same total budget as one-shot with epochs=7
    assert [s.target for s in stages] == pytest.approx(iterative_targets(0.9, 3))
    for previous, current in zip(stages, stages[1:], strict=False):
        for name in current.masks:
            assert not (current.masks[name] & ~previous.masks[name]).any()
    assert stages[-1].layer_sparsity == {"fc1.weight": 0.9, "fc2.weight": 0.9}
    with pytest.raises(ValueError, match="sparsity= targets"):
        run_magnitude_pruning(model, [Constraint("fc1.weight", "filters", keep=2)], make_trainer, epochs=2,
                              rounds=2)


def test_global_magnitude_prune_shares_one_threshold(rng):
    params = {"a": rng.standard_normal((4, 5)), "b": 0.1 * rng.standard_normal((3, 3)), "c": np.ones(2)}
    dense = {k: v.copy() for k, v in params.items()}
    masks = global_magnitude_prune(params, ["a", "b"], sparsity=0.5)
    assert set(masks) == {"a", "b"} and sum(m.sum() for m in masks.values()) == 29 - round(14.5)
    kept = np.concatenate([np.abs(dense[n])[masks[n]] for n in masks])
    dropped = np.concatenate([np.abs(dense[n])[~masks[n]] for n in masks])
    assert kept.min() >= dropped.max()  # one threshold over both layers
    assert masks["b"].mean() < masks["a"].mean()  # the small-magnitude layer is pruned harder
    for n in masks:
        np.testing.assert_array_equal(params[n], dense[n] * masks[n])
    np.testing.assert_array_equal(params["c"], 1.0)  # not listed, untouched
    frozen = {"a": masks["a"]}
    again = global_magnitude_prune(params, ["a", "b"], keep=5, frozen_masks=frozen)
    assert not (again["a"] & ~masks["a"]).any() and sum(m.sum() for m in again.values()) == 5
    with pytest.raises(KeyError, match="zz"):
        global_magnitude_prune(params, ["zz"], sparsity=0.5)


def test_lenet5_progressive_structured_pruning(rng, engine):
    """End to end on the real LeNet-5: filters AND shapes on conv2, unstructured on fc1."""
    from refimpl.models import lenet5

    model = lenet5(input_size=12, rng=np.random.default_rng(0), dtype=np.float64)
    x = rng.standard_normal((8, 1, 12, 12))  # one batch: the test is about the masks, not the accuracy
    y = rng.integers(0, 10, size=8)

    def make_trainer(hooks, epochs):
        opt = SGD(model.parameters(), lr=0.01, momentum=0.9)
        return Trainer(model, opt, (x, y), batch_size=8, epochs=epochs, hooks=hooks, progress=False)

    constraints = [Constraint("conv2.weight", "filters", sparsity=0.5, engine=engine),
                   Constraint("conv2.weight", "shapes", sparsity=0.5, engine=engine),
                   Constraint("fc1.weight", "unstructured", sparsity=0.5)]
    stages = progressive_prune(model, constraints, [0.5, 0.8], make_trainer, admm_epochs=1, retrain_epochs=1)
    conv2 = model.parameters()["conv2.weight"]
    gemm = conv2.reshape(conv2.shape[0], -1)
    assert np.count_nonzero(np.any(gemm != 0, axis=1)) <= conv2.shape[0] - round(0.8 * conv2.shape[0])
    assert np.count_nonzero(np.any(gemm != 0, axis=0)) <= gemm.shape[1] - round(0.8 * gemm.shape[1])
    assert stages[-1].layer_sparsity["fc1.weight"] == pytest.approx(0.8, abs=1e-3)
    assert not (stages[1].masks["conv2.weight"] & ~stages[0].masks["conv2.weight"]).any()
