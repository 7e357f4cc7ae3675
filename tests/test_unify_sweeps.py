"""The weight-unification sweeps (issue 11): levels, seeds, block shapes, and equal storage as claimed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refimpl.engine.sweep import load_sweep
from refimpl.metrics import weight_storage
from refimpl.projections import project_unified

SWEEPS = Path(__file__).resolve().parents[1] / "paper_repro" / "sweeps"


def constraint(run):
    (table,) = run.config.admm.constraints
    assert table["structure"] == "unified" and table["params"] == ["conv2.weight", "fc1.weight"]
    return table


def test_unification_vs_pruning_vs_both_has_five_levels_and_two_seeds_each():
    sweep = load_sweep(SWEEPS / "unify" / "unify_vs_prune.toml")
    assert "30 runs x 8 epochs" in sweep.budget
    levels: dict[str, set] = {}
    for run in sweep.runs:
        method = run.values["variant"].split("-")[0]
        levels.setdefault(method, set()).add(run.values["variant"])
        table = constraint(run)
        assert tuple(table["block_shape"]) == (4, 4)
        assert (table.get("prune") is None) == (method == "unify")
        assert (table.get("unify") == 0.0) == (method == "prune")
    assert {m: len(v) for m, v in levels.items()} == {"prune": 5, "unify": 5, "both": 5}
    assert sorted({run.config.seed for run in sweep.runs}) == [0, 1]


@pytest.mark.parametrize(
    ("variant", "fraction"),
    [
        ("prune-0.7", 0.30),
        ("unify-0.77", 0.30),
        ("both-0.37", 0.29),
        ("prune-0.95", 0.05),
        ("unify-0.99", 0.10),
        ("both-0.495", 0.06),
    ],
)
def test_levels_meet_at_the_storage_the_file_states(variant, fraction):
    # fc1's GEMM view (500 x 800, divisible by 4 x 4); the file's fractions leave out the 2-bit kind map.
    sweep = load_sweep(SWEEPS / "unify" / "unify_vs_prune.toml")
    table = constraint(next(r for r in sweep.runs if r.values["variant"] == variant))
    w = np.random.default_rng(0).standard_normal((500, 800)).astype(np.float32)
    z = project_unified(w, (4, 4), unify=table["unify"], prune=table.get("prune"))
    s = weight_storage(z, (4, 4))
    assert (s["bits"] - s["index_bits"]) / s["dense_bits"] == pytest.approx(fraction, abs=0.006)


def test_block_shape_ablation_compares_three_shapes_of_sixteen_weights():
    sweep = load_sweep(SWEEPS / "unify" / "block_shapes.toml")
    assert "18 runs x 8 epochs" in sweep.budget
    shapes = {tuple(constraint(run)["block_shape"]) for run in sweep.runs}
    assert shapes == {(1, 16), (16, 1), (4, 4)}
    assert sorted({constraint(run)["sparsity"] for run in sweep.runs}) == [0.77, 0.88, 0.95]
    assert all("unify" not in constraint(run) for run in sweep.runs)


def test_the_smoke_sweep_is_small():
    sweep = load_sweep(SWEEPS / "smoke_unify_digits.toml")
    assert [r.name for r in sweep.runs] == ["unify", "unify-prune"]
    assert all(r.config.data.name == "digits" and r.config.retrain.epochs <= 2 for r in sweep.runs)


def test_the_sweeps_use_the_rho_chosen_on_validation():
    from refimpl.engine import load_results

    select = load_sweep(SWEEPS / "unify" / "select.toml")
    rows = {r["run"]: r for r in load_results(SWEEPS.parent / "results" / "unify" / "select")}
    if any(rows.get(run.name, {}).get("status") != "finished" for run in select.runs):
        pytest.skip("the selection sweep paper_repro/sweeps/unify/select.toml has not finished")
    best = max(select.runs, key=lambda run: rows[run.name]["accuracy.val_final"])  # first of equals wins
    for name in ("unify_vs_prune.toml", "block_shapes.toml", "vgg_small.toml", "magnitude_gradient.toml"):
        rhos = {run.config.admm.rho for run in load_sweep(SWEEPS / "unify" / name).runs}
        assert rhos == {best.config.admm.rho}, name


def test_the_vgg_small_sweep_has_the_lenet_levels_on_the_six_large_layers():
    lenet = {r.name: r for r in load_sweep(SWEEPS / "unify" / "unify_vs_prune.toml").runs}
    sweep = load_sweep(SWEEPS / "unify" / "vgg_small.toml")
    assert "30 runs x 4 epochs" in sweep.budget
    assert {r.name for r in sweep.runs} == set(lenet)
    layers = [f"conv{i}.weight" for i in range(2, 7)] + ["fc1.weight"]
    for run in sweep.runs:
        (table,) = run.config.admm.constraints
        (twin,) = lenet[run.name].config.admm.constraints
        assert table["params"] == layers
        assert {k: v for k, v in table.items() if k != "params"} == {
            k: v for k, v in twin.items() if k != "params"
        }
        assert run.config.model.name == "vgg_small" and run.config.pretrain.epochs == 0
        assert run.config.pretrain.init_weights.endswith("vgg_small_dense.npz")
        assert (
            run.config.data.split_seed == 0 and run.config.data.val_fraction == 0.1
        )  # the dense run's split


def test_the_magnitude_gradient_ablation_differs_from_unify_vs_prune_only_in_the_retraining_gradient():
    import dataclasses

    lenet = {r.name: r for r in load_sweep(SWEEPS / "unify" / "unify_vs_prune.toml").runs}
    sweep = load_sweep(SWEEPS / "unify" / "magnitude_gradient.toml")
    assert "6 runs x 8 epochs" in sweep.budget and len(sweep.runs) == 6
    for run in sweep.runs:
        twin = lenet[run.name.removeprefix("mean-")]
        assert run.config.retrain.magnitude_gradient == "mean"
        assert twin.config.retrain.magnitude_gradient == "sum"
        mine = dataclasses.replace(
            run.config,
            name=twin.config.name,
            retrain=dataclasses.replace(run.config.retrain, magnitude_gradient="sum"),
        )
        assert mine == twin.config
