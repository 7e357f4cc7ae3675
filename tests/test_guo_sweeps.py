"""Guo et al.'s comparison sweep files: regenerable, the runs claimed, equal budgets, constraints that build.

The files in ``paper_repro/sweeps/guo/`` are written by ``paper_repro/guo_sweeps.py``; nothing here runs a
training. Each run's constraints are expanded on LeNet-5 and projected once on random weights, so a level a
structure cannot meet, a pattern that does not fit a layer, or a budget line that miscounts fails here.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from refimpl.engine import load_sweep
from refimpl.models import lenet5
from refimpl.prune import expand_constraints

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "paper_repro" / "sweeps" / "guo"


def _script():
    spec = importlib.util.spec_from_file_location("guo_sweeps", ROOT / "paper_repro" / "guo_sweeps.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


GUO = _script()
MODEL = lenet5()
WEIGHTS = {name: np.random.default_rng(0).standard_normal(p.shape) for name, p in MODEL.parameters().items()}
# runs each file claims: select 3 + 3; per scope the levels of every structure x 2 seeds; ADMM 7 x 2 x 2 x 2
CLAIMED = {"select.toml": 6, "gradual_conv2_fc1.toml": 2 * 36, "gradual_all.toml": 2 * 36, "admm.toml": 56,
           "gradual_vgg_small.toml": 2 * 5 * 5}  # VGG-small: 5 structures x 5 levels x 2 seeds


def test_the_files_are_the_script_s_output():
    files = GUO.files()
    assert sorted(files) == sorted(p.name for p in SWEEPS.glob("*.toml"))
    for name, text in files.items():
        assert (SWEEPS / name).read_text() == text, f"{name}: rerun python paper_repro/guo_sweeps.py"


@pytest.fixture(scope="module")
def sweeps():
    return {name: load_sweep(SWEEPS / name) for name in CLAIMED}


def _budget_runs(sweep) -> int:
    return int(re.match(r"(\d+) runs x 4 epochs", sweep.budget).group(1))


@pytest.mark.parametrize("name", sorted(CLAIMED))
def test_each_file_expands_to_the_runs_it_claims(sweeps, name):
    sweep = sweeps[name]
    assert len(sweep.runs) == CLAIMED[name] == _budget_runs(sweep)
    assert len({r.name for r in sweep.runs}) == len(sweep.runs)
    seeds = Counter(r.config.seed for r in sweep.runs)
    assert set(seeds) == ({0} if name == "select.toml" else {0, 1})
    assert len(set(seeds.values())) == 1  # every variant at every seed


def _epochs_after_dense(config) -> int:
    before_cut = {"admm": config.admm.epochs, "gradual": config.gradual.epochs}[config.method]
    return before_cut + config.retrain.epochs


@pytest.mark.parametrize("name", sorted(CLAIMED))
def test_same_budget_start_and_split_for_every_run(sweeps, name):
    for run in sweeps[name].runs:
        c = run.config
        assert _epochs_after_dense(c) == 4, run.name
        vgg = name == "gradual_vgg_small.toml"
        dense = "vgg_small_dense.npz" if vgg else "curves_dense.npz"
        assert c.pretrain.epochs == 0 and c.pretrain.init_weights.endswith(dense)
        assert c.data.name == "fashion-mnist" and c.data.val_fraction > 0 and c.data.split_seed == 0
        assert c.model.name == ("vgg_small" if vgg else "lenet5")
        assert c.data.limit_train == (10800 if vgg else None)
        if c.method == "gradual":
            g = c.gradual
            assert (g.epochs, g.end_epoch, g.start_epoch, g.initial_sparsity) == (3, 2, 0.0, 0.0)
            assert g.lr == c.retrain.lr and g.optimizer == c.retrain.optimizer == "sgd"
    # within a comparison file only the constraints and the seed differ
    if name != "select.toml":
        settings = {
            json.dumps(
                {
                    **run.config.to_dict(),
                    "name": None,
                    "seed": None,
                    "admm": {**run.config.to_dict()["admm"], "constraints": None},
                },
                sort_keys=True,
                default=str,
            )
            for run in sweeps[name].runs
        }
        assert len(settings) == 1


def test_the_selection_gives_every_method_the_same_budget_on_validation(sweeps):
    runs = sweeps["select.toml"].runs
    per_method = Counter(r.config.method for r in runs)
    assert per_method == {"gradual": 3, "admm": 3}
    assert len({json.dumps(r.config.admm.constraints, sort_keys=True) for r in runs}) == 1
    chosen = {
        "gradual": {r.config.gradual.lr for r in runs if r.config.method == "gradual"},
        "admm": {r.config.admm.rho for r in runs if r.config.method == "admm"},
    }
    assert chosen == {"gradual": set(GUO.GRADUAL_LRS), "admm": set(GUO.ADMM_RHOS)}
    # the comparison files use one of the candidates
    for name, method, value in (
        ("gradual_conv2_fc1.toml", "gradual", lambda c: c.gradual.lr),
        ("admm.toml", "admm", lambda c: c.admm.rho),
    ):
        assert {value(r.config) for r in sweeps[name].runs} <= chosen[method]


def _achieved(constraints) -> dict[str, float]:
    """Per weight, the sparsity of the constraint's mask on random weights (the structure's counting)."""
    return {c.param: 1.0 - float(np.mean(c.mask(WEIGHTS[c.param]))) for c in constraints}


def _level(run_name: str) -> float:
    return float(re.search(r"-([0-9.]+)-s\d+$", run_name).group(1))


@pytest.mark.parametrize("name", ["gradual_conv2_fc1.toml", "gradual_all.toml", "admm.toml"])
def test_constraints_build_on_lenet5_and_meet_their_level(sweeps, name):
    structures = Counter()
    for run in sweeps[name].runs:
        if run.config.seed:
            continue
        constraints = expand_constraints(run.config.admm.constraints, MODEL)
        params = [c.param for c in constraints]
        scope = "all" if "conv1.weight" in params else "conv2_fc1"
        if name != "admm.toml":
            assert scope == name[len("gradual_") : -len(".toml")]
        assert sorted(params) == sorted(GUO.SCOPES[scope] + (["conv1.weight"] if scope == "all" else []))
        assert len({c.structure for c in constraints}) == 1
        structures[constraints[0].structure] += 1
        level = _level(run.name)
        achieved = _achieved(constraints)
        for param, s in achieved.items():
            target = GUO.CONV1_LEVEL if param == "conv1.weight" else level
            # blocks and the vector ∧ block split round whole blocks / counts; edge vectors round too
            assert abs(s - target) <= 0.012, (run.name, param, s, target)
        sizes = {p: WEIGHTS[p].size for p in achieved}
        total = sum(achieved[p] * sizes[p] for p in achieved) / sum(sizes.values())
        assert abs(total - level) <= 0.01, (run.name, total)
    assert set(structures) == {"unstructured", "blocks", "balanced", "nm", "vector_block"}


def test_every_structure_has_at_least_five_levels_beyond_the_easy_region(sweeps):
    for name in ("gradual_conv2_fc1.toml", "gradual_all.toml"):
        levels = {}
        for run in sweeps[name].runs:
            label = run.name.rsplit("-", 2)[0]
            levels.setdefault(label, set()).add(_level(run.name))
        assert set(levels) == set(GUO.STRUCTURES)
        assert all(len(lv) >= 5 for lv in levels.values()), levels
        assert all(max(lv) >= 0.95 for lv in levels.values())
        assert sum(max(lv) > 0.97 for lv in levels.values()) >= 6  # all but balanced V = 20 go past 97 %


def test_vgg_constraints_build_and_meet_their_level_exactly():
    from refimpl.models import vgg_small

    model = vgg_small(in_channels=1, input_size=28)
    weights = {n: np.random.default_rng(1).standard_normal(p.shape) for n, p in model.parameters().items()}
    sweep = load_sweep(SWEEPS / "gradual_vgg_small.toml")
    levels = Counter()
    for run in sweep.runs:
        if run.config.seed:
            continue
        constraints = expand_constraints(run.config.admm.constraints, model)
        assert sorted(c.param for c in constraints) == sorted(GUO.VGG_LAYERS)
        level = _level(run.name)
        levels[run.name.rsplit("-", 2)[0]] += 1
        achieved = {c.param: 1.0 - float(np.mean(c.mask(weights[c.param]))) for c in constraints}
        for c in constraints:
            # exact, but for whole 16 x 16 blocks, which round by up to half a block (conv2 has 36)
            rows, cols = weights[c.param].shape[0], weights[c.param][0].size
            tolerance = 0.5 * 256 / (rows * cols) if c.structure == "blocks" else 1e-12
            assert abs(achieved[c.param] - level) <= tolerance, (run.name, c.param, achieved[c.param])
        sizes = {p: weights[p].size for p in achieved}
        total = sum(achieved[p] * sizes[p] for p in achieved) / sum(sizes.values())
        assert abs(total - level) <= 0.001, (run.name, total)
    assert levels == {label: 5 for label in GUO.VGG_STRUCTURES}


def test_the_comparison_uses_the_values_chosen_on_validation():
    from refimpl.engine import load_results

    select = load_sweep(SWEEPS / "select.toml")
    rows = {r["run"]: r for r in load_results(ROOT / "paper_repro" / "results" / "guo" / "select")}
    if any(rows.get(run.name, {}).get("status") != "finished" for run in select.runs):
        pytest.skip("the selection sweep paper_repro/sweeps/guo/select.toml has not finished")
    best = {}
    for run in select.runs:  # in file order: the first of equals wins
        method = run.config.method
        val = rows[run.name]["accuracy.val_final"]
        if method not in best or val > rows[best[method].name]["accuracy.val_final"]:
            best[method] = run
    assert GUO.DEFAULTS == {"gradual_lr": best["gradual"].config.gradual.lr,
                            "admm_rho": best["admm"].config.admm.rho}
    for name in ("gradual_conv2_fc1.toml", "gradual_all.toml"):
        assert {r.config.gradual.lr for r in load_sweep(SWEEPS / name).runs} == {GUO.DEFAULTS["gradual_lr"]}
    assert {r.config.admm.rho for r in load_sweep(SWEEPS / "admm.toml").runs} == {GUO.DEFAULTS["admm_rho"]}
