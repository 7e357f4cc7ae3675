"""Notebook 02's sweeps (issue 15): the base config is the notebook's run, the files
expand to the runs they claim at equal budgets, and the cached-results loader the notebook will use reads
a results table and averages the seeds."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from refimpl.engine.sweep import load_sweep
from refimpl.notebook import cached_results, seed_summary

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "paper_repro" / "sweeps" / "course"
NOTEBOOK = (ROOT / "notebooks" / "02_admm_step_by_step.py").read_text(encoding="utf-8")


def _notebook_setting(name: str) -> float:
    """A constant of notebook 02's parameters cell, its full-run value (``X = small if SMOKE else full``)."""
    match = re.search(rf"^{name} = (?:\S+ if SMOKE else )?([0-9.]+)", NOTEBOOK, re.MULTILINE)
    assert match, f"notebook 02 has no setting {name}"
    return float(match.group(1))


def test_the_base_config_is_notebook_02s_run():
    run = load_sweep(SWEEPS / "magnitude_control.toml").runs[0]
    config = run.config
    assert config.pretrain.epochs == _notebook_setting("PRETRAIN_EPOCHS")
    assert config.admm.epochs == _notebook_setting("ADMM_EPOCHS")
    assert config.retrain.epochs == _notebook_setting("RETRAIN_EPOCHS")
    assert config.admm.update_every == _notebook_setting("UPDATE_EVERY") and config.admm.update_unit == "step"
    assert {(c["structure"], c["sparsity"]) for c in config.admm.constraints} == {
        ("filters", _notebook_setting("FILTER_SPARSITY")), ("shapes", _notebook_setting("SHAPE_SPARSITY"))}
    assert all(c["param"] == "conv2.weight" for c in config.admm.constraints)
    # the literals of the notebook's calls: schedule, learning rates, data split
    assert "rho=1e-3, rho_growth=1.3, rho_max=1.0" in NOTEBOOK
    assert (config.admm.rho, config.admm.rho_growth, config.admm.rho_max) == (1e-3, 1.3, 1.0)
    for phase, lr in (("pretrain", 0.05), ("admm", 0.02), ("retrain", 0.01)):
        section = getattr(config, phase)
        assert section.lr == lr and f"lr={lr}" in NOTEBOOK, phase
        assert (section.optimizer, section.momentum, section.batch_size) == ("sgd", 0.9, 64), phase
    assert "momentum=0.9" in NOTEBOOK and "batch_size=64" in NOTEBOOK
    assert config.data.name == "digits" and config.data.val_fraction == 0.15
    assert "val_fraction=0.15" in NOTEBOOK
    assert config.model.name == "lenet5" and not config.admm.rescale_dual


def test_the_rho_schedule_sweep_covers_the_grid_it_states():
    sweep = load_sweep(SWEEPS / "rho_schedule.toml")
    assert "63 runs x 35 epochs" in sweep.budget
    seen = {(r.config.admm.rho, r.config.admm.rho_growth, r.config.admm.rescale_dual, r.config.seed)
            for r in sweep.runs}
    assert len(seen) == len(sweep.runs) == 63
    growing = {(rho, g, rescale, seed) for rho in (1e-4, 1e-3, 1e-2) for g in (1.1, 1.3, 1.5)
               for rescale in (False, True) for seed in (0, 1, 2)}
    constant = {(rho, 1.0, False, seed) for rho in (1e-4, 1e-3, 1e-2) for seed in (0, 1, 2)}
    assert seen == growing | constant
    for run in sweep.runs:  # everything else is the base
        assert (run.config.admm.epochs, run.config.retrain.epochs, run.config.admm.rho_max) == (20, 5, 1.0)
    # the updates to reach the cap from 1e-3 that the file quotes
    text = (SWEEPS / "rho_schedule.toml").read_text(encoding="utf-8")
    for growth, updates in ((1.3, 27), (1.1, 73), (1.5, 18)):
        assert math.ceil(math.log(1000) / math.log(growth)) == updates and str(updates) in text


def test_the_magnitude_control_has_three_seeds_at_equal_budget():
    sweep = load_sweep(SWEEPS / "magnitude_control.toml")
    assert "9 runs x 35 epochs" in sweep.budget
    by_variant: dict[str, list] = {}
    for run in sweep.runs:
        by_variant.setdefault(run.values["variant"], []).append(run.config)
    assert sorted(by_variant) == ["admm-kept", "admm-rescaled", "magnitude"]
    for configs in by_variant.values():
        assert sorted(c.seed for c in configs) == [0, 1, 2]
        assert {c.data.split_seed for c in configs} == {0}  # one validation split for every seed
    for admm, magnitude in zip(by_variant["admm-kept"], by_variant["magnitude"], strict=True):
        assert magnitude.method == "magnitude" and admm.method == "admm"
        assert magnitude.retrain.epochs == admm.admm.epochs + admm.retrain.epochs == 25
        assert magnitude.retrain.lr == admm.retrain.lr == 0.01
        assert magnitude.admm.constraints == admm.admm.constraints
    assert [c.admm.rescale_dual for c in by_variant["admm-rescaled"]] == [True] * 3


def _rows():
    return [
        {"run": f"{v}-s{s}", "variant": v, "seed": s, "status": "finished", "accuracy.final": acc}
        for v, accs in (("admm-kept", (0.98, 0.97, 0.96)), ("magnitude", (0.95, 0.97, None)))
        for s, acc in enumerate(accs)
    ]


def test_cached_results_reads_the_table_then_the_sweep_directory(tmp_path):
    assert cached_results("course/magnitude_control", root=tmp_path) is None  # not run yet
    table = tmp_path / "paper_repro" / "results" / "course" / "magnitude_control.json"
    table.parent.mkdir(parents=True)
    table.write_text(json.dumps(_rows()), encoding="utf-8")
    assert cached_results("course/magnitude_control", root=tmp_path) == _rows()
    for bad in ("", "/abs/path", "../outside", "course/x.json"):
        with pytest.raises(ValueError, match="name must be"):
            cached_results(bad, root=tmp_path)
    with pytest.raises(TypeError, match="name must be"):
        cached_results(3, root=tmp_path)


def test_cached_results_reads_a_sweep_directory(tmp_path):
    sweep = load_sweep(SWEEPS / "magnitude_control.toml")
    directory = tmp_path / "paper_repro" / "results" / "course" / "magnitude_control"
    directory.mkdir(parents=True)
    manifest = {"runs": [{"name": r.name, "values": r.values} for r in sweep.runs], "grid": ["seed"],
                "variants": ["admm-kept", "admm-rescaled", "magnitude"]}
    (directory / "sweep.json").write_text(json.dumps(manifest), encoding="utf-8")
    rows = cached_results("course/magnitude_control", root=tmp_path)
    assert [r["run"] for r in rows] == [r.name for r in sweep.runs]
    assert {r["status"] for r in rows} == {"pending"}  # nothing has run: the rows say so
    assert all(s["n"] == 0 and s["mean"] is None for s in seed_summary(rows, ["variant"]))


def test_seed_summary_averages_finished_runs():
    kept, magnitude = seed_summary(_rows(), ["variant"])
    assert kept["variant"] == "admm-kept" and kept["n"] == 3 and kept["missing"] == 0
    assert kept["mean"] == pytest.approx(0.97) and kept["std"] == pytest.approx(0.01)
    assert (magnitude["n"], magnitude["missing"], magnitude["min"], magnitude["max"]) == (2, 1, 0.95, 0.97)
    with pytest.raises(ValueError, match="no column 'sparsity'"):
        seed_summary(_rows(), ["sparsity"])
    with pytest.raises(TypeError, match="by must be"):
        seed_summary(_rows(), "variant")
