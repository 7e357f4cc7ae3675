"""The P-RM sweep on ResNet-20 (issue 12): what it runs, that its constraints build on ResNet-20 and meet
their levels exactly, and that its pipeline (ADMM, cut, retraining, purification + retraining, compaction)
runs end to end on a small ResNet, the compact network computing the masked one's function."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refimpl.config import load_config
from refimpl.engine import load_sweep, run_experiment
from refimpl.models import resnet_small
from refimpl.prune import expand_constraints

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "paper_repro" / "sweeps" / "resnet" / "prm.toml"
BLOCK_CONVS = [f"layer{stage}.{block}.conv{i}.weight"
               for stage in (1, 2, 3) for block in range(3) for i in (1, 2)]


@pytest.fixture(scope="module")
def sweep():
    return load_sweep(SWEEP)


def test_prm_sweep_has_two_structures_at_two_levels_and_two_seeds(sweep):
    assert "8 runs x 5 epochs" in sweep.budget
    assert sorted(run.name for run in sweep.runs) == sorted(
        f"{structure}-{level}-s{seed}" for structure in ("filters", "shapes") for level in ("0.5", "0.75")
        for seed in (0, 1))
    for run in sweep.runs:
        c = run.config
        assert c.method == "admm" and c.model.name == "resnet_small" and c.model.options == {"depth": 20}
        # from the trained dense network, on its split, at one budget for every run
        assert c.pretrain.epochs == 0 and c.pretrain.init_weights.endswith("resnet20_dense.npz")
        assert (c.data.split_seed, c.data.val_fraction, c.data.limit_train) == (0, 0.1, 10_800)
        assert (c.admm.epochs, c.retrain.epochs, c.purify.epochs) == (2, 2, 1)
        assert c.purify.enabled and c.compact.enabled
        assert c.threads == 1


def test_prm_constraints_are_the_block_convolutions_at_their_level_exactly(sweep):
    model = resnet_small(depth=20, in_channels=1, input_size=28)
    rng = np.random.default_rng(0)
    weights = {n: rng.standard_normal(p.shape) for n, p in model.parameters().items()}
    for run in sweep.runs:
        constraints = expand_constraints(run.config.admm.constraints, model)
        assert sorted(c.param for c in constraints) == sorted(BLOCK_CONVS)  # stem, shortcuts, fc stay dense
        structure, level, _ = run.name.split("-")
        for c in constraints:
            assert c.structure == structure
            # 16/32/64 filters and 144/288/576 columns: both levels are whole numbers of groups
            assert 1.0 - np.mean(c.mask(weights[c.param])) == pytest.approx(float(level), abs=1e-12)


def test_prm_pipeline_runs_end_to_end_on_a_small_resnet(sweep, tmp_path):
    # The sweep's own settings, shrunk: ResNet-8 on the synthetic set, one epoch per phase, no dense start.
    run = next(r for r in sweep.runs if r.name == "shapes-0.75-s0")
    overrides = {**run.overrides, "name": "prm-smoke", "model.options": {"depth": 8},
                 "data.name": "synthetic", "data.limit_train": 96, "data.limit_test": 64,
                 "pretrain.init_weights": None, "admm.epochs": 1, "retrain.epochs": 1, "purify.epochs": 1,
                 "admm.update_every": 1, "admm.update_unit": "epoch",
                 "purify.eta": 0.7, "purify.sigma": 10.0}  # loose thresholds: this smoke run must purify
    config = load_config(run.base, overrides)
    run_experiment(config, tmp_path / "run", progress=False, echo=None)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert list(state["phases"]) == ["pretrain", "admm", "prune", "retrain", "purify", "purify_retrain",
                                     "compact"]
    phases = {name: phase["metrics"] for name, phase in state["phases"].items()}
    assert phases["purify"]["num_removed"] > 0
    assert phases["compact"]["params_after"] < phases["compact"]["params_before"]
    # unused-path removal is lossless: the compact network's accuracy is the masked network's
    assert phases["compact"]["test_acc"] == phases["purify_retrain"]["test_acc"]
    results = json.loads((tmp_path / "run" / "results.json").read_text())  # the sweep table's row
    assert results["accuracy_compact"] == results["accuracy_pruned"]
    assert results["params_compact"] < results["params_dense"]


def test_prm_rho_schedule_grows_as_often_as_the_lenet5_curves_and_purification_retrains_gently(sweep):
    """The two settings the pilot run changed (configs/prm_resnet20_base.toml says why)."""
    curves = load_config(ROOT / "paper_repro" / "configs" / "curves_base.toml")

    def updates(config):
        images = config.data.limit_train or 54_000  # the curves train on all 54,000 non-validation images
        steps = config.admm.epochs * -(-images // config.admm.batch_size)
        return steps // config.admm.update_every

    assert updates(curves) == 16
    for run in sweep.runs:
        c = run.config
        assert c.admm.update_unit == "step" and updates(c) == updates(curves)
        assert (c.admm.rho, c.admm.rho_growth) == (curves.admm.rho, curves.admm.rho_growth)
        assert c.purify.lr is not None and c.purify.lr < c.retrain.lr
