"""The curves' sweep files: equal selection budgets, validation-only selection, regenerable."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from refimpl.engine import load_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "paper_repro" / "sweeps" / "curves"


def _script():
    spec = importlib.util.spec_from_file_location("select_hyperparameters",
                                                  ROOT / "paper_repro" / "select_hyperparameters.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("structure", _script().STRUCTURES)
def test_every_method_gets_the_same_selection_budget(structure):
    sweep = load_sweep(SWEEPS / f"select_{structure}.toml")
    per_method = Counter(r.config.method for r in sweep.runs)
    assert len(set(per_method.values())) == 1 and min(per_method.values()) >= 3, per_method
    # one level, one seed, the same constraints and validation split for every candidate
    assert {r.config.seed for r in sweep.runs} == {0}
    assert len({json.dumps(r.config.admm.constraints, sort_keys=True) for r in sweep.runs}) == 1
    for run in sweep.runs:
        d = run.config.data
        assert d.val_fraction > 0 and d.split_seed == 0
        before_cut = {"admm": run.config.admm.epochs, "ssl": run.config.ssl.epochs}.get(run.config.method, 0)
        epochs = run.config.retrain.epochs + before_cut
        assert epochs == 8  # the same training budget after the dense model


@pytest.mark.parametrize("structure", _script().STRUCTURES)
def test_curve_sweeps_use_the_selected_settings_and_are_regenerable(structure):
    script = _script()
    selection_path = ROOT / "paper_repro" / "results" / "curves" / "selection.json"
    curve = SWEEPS / f"{structure}.toml"
    if not curve.is_file():
        pytest.skip(f"{curve.name} is written once the selection sweep has finished")
    selection = json.loads(selection_path.read_text())
    assert curve.read_text() == script.curve_sweep(structure, selection)
    sweep = load_sweep(curve)
    for run in sweep.runs:
        chosen = selection[structure]["methods"][run.config.method]["settings"]
        for key, value in chosen.items():
            section, _, field = key.partition(".")
            assert getattr(getattr(run.config, section), field) == value, (run.name, key)


def _epochs_after_dense(config) -> int:
    """Training epochs a run spends after the dense model (every pruning step, every retraining)."""
    if config.method == "magnitude_iterative":
        return config.retrain.epochs  # the rounds share one-shot's retraining budget
    steps = config.admm.steps if config.method == "admm" else 1
    before_cut = {"admm": config.admm.epochs, "ssl": config.ssl.epochs}.get(config.method, 0)
    return steps * (before_cut + config.retrain.epochs)


def test_progressive_and_one_shot_spend_the_same_epochs_at_the_same_targets():
    sweep = load_sweep(SWEEPS / "progressive.toml")
    assert {_epochs_after_dense(r.config) for r in sweep.runs} == {8}
    selection = json.loads((ROOT / "paper_repro" / "results" / "curves" / "selection.json").read_text())
    for run in sweep.runs:
        (table,) = run.config.admm.constraints
        structure = table["structure"]
        assert run.name.startswith(structure)
        method = "magnitude" if run.config.method == "magnitude_iterative" else run.config.method
        for key, value in selection[structure]["methods"][method]["settings"].items():
            if key != "retrain.epochs":  # the multi-step runs split the same budget differently
                section, _, field = key.partition(".")
                assert getattr(getattr(run.config, section), field) == value, (run.name, key)
    steps = Counter((r.config.method, r.config.admm.steps, r.config.magnitude.rounds) for r in sweep.runs)
    assert steps == {("admm", 1, 3): 4, ("admm", 2, 3): 4, ("admm", 4, 3): 4,
                     ("magnitude_iterative", 1, 4): 4}


def test_admm_nn_rates_are_the_papers_kept_shares():
    sweep = load_sweep(SWEEPS / "admm_nn_rates.toml")
    kept = {"conv1.weight": 0.20, "conv2.weight": 0.08, "fc1.weight": 0.009, "fc2.weight": 0.07}
    for run in sweep.runs:
        tables = run.config.admm.constraints
        assert {t["param"]: round(1 - t["sparsity"], 6) for t in tables} == kept
        assert all(t["structure"] == "unstructured" for t in tables)
        assert _epochs_after_dense(run.config) == 8
    assert Counter(r.config.method for r in sweep.runs) == {"admm": 2, "magnitude": 2}


@pytest.mark.parametrize("name", sorted(p.name for p in SWEEPS.glob("decisive_seeds*.toml")))
def test_decisive_seeds_are_the_curves_runs_with_another_seed(name):
    extra = load_sweep(SWEEPS / name)
    curves: dict = {}
    for run in extra.runs:
        curve_name, _, method = run.values["variant"].rpartition("-")
        assert run.config.method == method
        if curve_name not in curves:
            curves[curve_name] = load_sweep(SWEEPS / f"{curve_name}.toml")
        twin = next(r for r in curves[curve_name].runs
                    if r.config.method == method and r.values["sparsity"] == run.values["sparsity"])
        differs = {k for k, v in run.config.to_dict().items() if twin.config.to_dict()[k] != v}
        assert differs == {"seed", "name"}, (run.name, twin.name, differs)
        assert run.config.seed not in {r.config.seed for r in curves[curve_name].runs}


def test_filters_shapes_rho_diagnostic_differs_from_the_curve_only_in_rho():
    """The diagnostic repeats the curve's ADMM runs at its breaking levels with the grid's larger rho_0."""
    diagnostic = load_sweep(SWEEPS / "filters_shapes_rho.toml")
    curve = load_sweep(SWEEPS / "filters_shapes.toml")
    selection = json.loads((ROOT / "paper_repro" / "results" / "curves" / "selection.json").read_text())
    grid = {c["settings"]["admm.rho"] for c in selection["filters_shapes"]["methods"]["admm"]["candidates"]}
    chosen = selection["filters_shapes"]["methods"]["admm"]["settings"]["admm.rho"]
    assert {r.config.admm.rho for r in diagnostic.runs} == grid - {chosen}
    for run in diagnostic.runs:
        twin = next(r for r in curve.runs if r.config.method == "admm" and r.config.seed == run.config.seed
                    and r.values["sparsity"] == run.values["sparsity"])
        differs = {k for k, v in run.config.to_dict().items() if twin.config.to_dict()[k] != v}
        assert differs == {"admm", "name"}, (run.name, differs)
        assert run.config.admm.constraints == twin.config.admm.constraints
        assert {k for k, v in vars(run.config.admm).items() if getattr(twin.config.admm, k) != v} == {"rho"}


def test_filters_shapes_grid_runs_the_rest_of_the_selection_grid_at_the_breaking_levels():
    """With filters_shapes_rho.toml and the curve, every method has all three candidates at 80 / 90 %."""
    selection = json.loads((ROOT / "paper_repro" / "results" / "curves" / "selection.json").read_text())
    curve = load_sweep(SWEEPS / "filters_shapes.toml")
    extra = [r for name in ("filters_shapes_grid.toml", "filters_shapes_rho.toml")
             for r in load_sweep(SWEEPS / name).runs]
    for method, spec in selection["filters_shapes"]["methods"].items():
        grid = [c["settings"] for c in spec["candidates"]]
        for level in (0.8, 0.9):
            for seed in (0, 1):
                twin = next(r for r in curve.runs if r.config.method == method and r.config.seed == seed
                            and r.values["sparsity"] == level)
                runs = [twin] + [r for r in extra if r.config.method == method and r.config.seed == seed
                                 and r.values["sparsity"] == level]
                got = []
                for run in runs:
                    got.append({k: getattr(getattr(run.config, k.split(".")[0]), k.split(".")[1])
                                for k in grid[0]})
                    differs = {k for k, v in run.config.to_dict().items() if twin.config.to_dict()[k] != v}
                    assert differs <= {"name", "admm", "retrain", "ssl"}, (run.name, differs)
                    assert run.config.admm.constraints == twin.config.admm.constraints
                assert sorted(map(str, got)) == sorted(map(str, grid)), (method, level, seed)
