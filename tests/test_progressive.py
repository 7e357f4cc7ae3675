"""Progressive ADMM and the magnitude baselines through the engine: nested masks, frozen zeros, targets.

Every schedule runs through :func:`refimpl.engine.run_experiment`, the path users take; spy hooks
(``hooks=``) watch the weights inside each training phase.
"""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.config import load_config
from refimpl.engine import run_experiment
from refimpl.prune.admm import ADMM
from refimpl.prune.constraints import Constraint
from refimpl.prune.magnitude import global_magnitude_prune, iterative_targets, magnitude_prune, split_budget
from refimpl.prune.masking import MaskedRetraining, masks_sparsity
from refimpl.prune.progressive import stage_constraints

PRUNED = ("conv2.weight", "fc1.weight")
SETTINGS = {
    "name": "progressive", "threads": 1, "seed": 3,
    "data.name": "synthetic", "data.limit_train": 96, "data.limit_test": 48,
    "pretrain.epochs": 1, "admm.epochs": 2, "retrain.epochs": 2,
    "admm.optimizer": "sgd", "admm.lr": 0.02, "admm.rho": 1e-2,
    "retrain.optimizer": "sgd", "retrain.lr": 0.02,
    "admm.constraints": [{"param": "fc1.weight", "structure": "unstructured", "sparsity": 0.5},
                         {"param": "conv2.weight", "structure": "shapes", "sparsity": 0.5}],
}


class Spy:
    """A trainer hook recording the phase's hooks and every position that was nonzero after a step."""

    def __init__(self, phase):
        self.phase, self.ever_nonzero, self.hooks = phase, {}, []

    def on_train_begin(self, trainer):
        self.hooks = [h for h in trainer.hooks if h is not self]

    def after_step(self, trainer):
        for name in PRUNED:
            now = trainer.params[name] != 0
            self.ever_nonzero[name] = self.ever_nonzero.get(name, np.zeros_like(now)) | now


def run(tmp_path, **extra):
    """Run the experiment with spies; return the report, the spies by phase name and the run directory."""
    spies = {}

    def spy(phase):
        spies[phase.name] = Spy(phase)
        return [spies[phase.name]]

    out = tmp_path / "run"
    config = load_config(None, {**SETTINGS, **extra})
    report = run_experiment(config, out, progress=False, echo=None, hooks=spy)
    return report, spies, out


def masks_of(out, phase):
    with np.load(out / phase / "masks.npz") as data:
        return {k: data[k] for k in data.files}


def weights_of(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_progressive_masks_are_nested_and_pruned_weights_stay_zero(tmp_path):
    report, spies, out = run(tmp_path, **{"admm.targets": [0.5, 0.75, 0.9]})
    assert [p["name"] for p in report["phases"]] == [
        "pretrain", "admm_1", "prune_1", "retrain_1", "admm_2", "prune_2", "retrain_2", "admm_3", "prune_3",
        "retrain_3", "compact"]
    # ADMM alone in the first step; from the second on, the frozen masks after it; then masked retraining
    assert [type(h).__name__ for h in spies["admm_1"].hooks] == ["ADMM"]
    assert [type(h).__name__ for h in spies["admm_2"].hooks] == ["ADMM", "MaskedRetraining"]
    assert [type(h).__name__ for h in spies["retrain_1"].hooks] == ["MaskedRetraining"]
    masks = [masks_of(out, f"prune_{k}") for k in (1, 2, 3)]
    for k, step in enumerate(masks):
        for name, mask in step.items():
            # never nonzero outside the step's mask during its retraining
            assert not (spies[f"retrain_{k + 1}"].ever_nonzero[name] & ~mask).any()
            if k > 0:
                previous = masks[k - 1][name]
                assert not (mask & ~previous).any()  # M_k ⊆ M_{k-1}
                # weights pruned by an earlier step stayed zero during this step's ADMM phase
                assert not (spies[f"admm_{k + 1}"].ever_nonzero[name] & ~previous).any()
    # 90% of fc1's 100,000 entries and of conv2's 500 GEMM columns (450 columns of 50 weights)
    assert masks_sparsity(masks[2], per_param=True) == pytest.approx({"fc1.weight": 0.9, "conv2.weight": 0.9})
    assert report["sparsity"]["per_layer"] == pytest.approx(masks_sparsity(masks[2], per_param=True))
    final = weights_of(out / "model_masked.npz")
    for name, mask in masks[2].items():
        assert not final[name][~mask].any()


def test_progressive_admm_phase_is_given_the_frozen_masks(tmp_path):
    _, spies, out = run(tmp_path, **{"admm.targets": [0.5, 0.8], "retrain.epochs": 0})
    assert "retrain_1" not in spies  # 0 epochs: no trainer at all
    second = spies["admm_2"].hooks[0]
    assert isinstance(second, ADMM) and isinstance(spies["admm_2"].hooks[1], MaskedRetraining)
    first_mask = masks_of(out, "prune_1")["fc1.weight"]
    np.testing.assert_array_equal(second.frozen_masks["fc1.weight"], first_mask)
    index = [c.param for c in second.constraints].index("fc1.weight")
    assert not (second.Z[index] != 0)[~first_mask].any()


def test_one_shot_magnitude_cuts_the_dense_weights(tmp_path):
    report, spies, out = run(tmp_path, method="magnitude", **{"retrain.epochs": 3})
    assert [p["name"] for p in report["phases"]] == ["pretrain", "prune", "retrain", "compact"]
    assert [p["epochs"] for p in report["phases"] if p["kind"] == "retrain"] == [3]
    dense = weights_of(out / "pretrain" / "model.npz")
    # the one-shot mask is the magnitude mask of the dense weights
    expected = magnitude_prune({k: dense[k].copy() for k in PRUNED},
                               [Constraint("fc1.weight", "unstructured", sparsity=0.5),
                                Constraint("conv2.weight", "shapes", sparsity=0.5)])
    masks = masks_of(out, "prune")
    for name in expected:
        np.testing.assert_array_equal(masks[name], expected[name])
        assert not (spies["retrain"].ever_nonzero[name] & ~masks[name]).any()


def test_iterative_magnitude_pruning_spends_one_shots_budget(tmp_path):
    final = [{"param": "fc1.weight", "structure": "unstructured", "sparsity": 0.9},
             {"param": "conv2.weight", "structure": "shapes", "sparsity": 0.9}]
    report, _, out = run(tmp_path, method="magnitude_iterative",
                         **{"magnitude.rounds": 3, "retrain.epochs": 7, "admm.constraints": final})
    # the same total budget as one-shot with 7 epochs, split 2 + 2 + 3
    assert [p["epochs"] for p in report["phases"] if p["kind"] == "retrain"] == [2, 2, 3]
    masks = [masks_of(out, f"prune_{k}") for k in (1, 2, 3)]
    for k, step in enumerate(masks):
        assert masks_sparsity(step, per_param=True)["fc1.weight"] == pytest.approx(
            iterative_targets(0.9, 3)[k], abs=1e-5)
    for previous, current in zip(masks, masks[1:], strict=False):
        for name in current:
            assert not (current[name] & ~previous[name]).any()
    assert report["sparsity"]["per_layer"] == pytest.approx({"fc1.weight": 0.9, "conv2.weight": 0.9})


@pytest.mark.parametrize(("extra", "match"), [
    ({"method": "magnitude_iterative", "magnitude.rounds": 2,
      "admm.constraints": [{"param": "fc1.weight", "structure": "filters", "keep": 2}]}, "sparsity"),
    ({"admm.epochs": -1}, "admm.epochs"),
])
def test_schedules_reject_bad_settings(extra, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, {**SETTINGS, **extra})


def test_lenet5_progressive_filters_and_shapes_on_one_layer(tmp_path):
    """Filters AND shapes on conv2 (two constraints on one weight), unstructured fc1, two steps."""
    constraints = [{"param": "conv2.weight", "structure": "filters", "sparsity": 0.5},
                   {"param": "conv2.weight", "structure": "shapes", "sparsity": 0.5},
                   {"param": "fc1.weight", "structure": "unstructured", "sparsity": 0.5}]
    report, _, out = run(tmp_path, **{"admm.targets": [0.5, 0.8], "admm.epochs": 1, "retrain.epochs": 1,
                                      "admm.constraints": constraints})
    conv2 = weights_of(out / "model_masked.npz")["conv2.weight"]
    gemm = conv2.reshape(conv2.shape[0], -1)
    assert np.count_nonzero(np.any(gemm != 0, axis=1)) <= conv2.shape[0] - round(0.8 * conv2.shape[0])
    assert np.count_nonzero(np.any(gemm != 0, axis=0)) <= gemm.shape[1] - round(0.8 * gemm.shape[1])
    assert report["sparsity"]["per_layer"]["fc1.weight"] == pytest.approx(0.8, abs=1e-3)
    first, second = masks_of(out, "prune_1"), masks_of(out, "prune_2")
    assert not (second["conv2.weight"] & ~first["conv2.weight"]).any()
    assert report["accuracy"]["compact"] == report["accuracy"]["masked"]


CONSTRAINTS = [Constraint("fc1.weight", "unstructured", sparsity=0.5),
               Constraint("fc2.weight", "shapes", sparsity=0.5, engine="numpy")]


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
