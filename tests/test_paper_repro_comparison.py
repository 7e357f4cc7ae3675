"""paper_repro/run_pruning_comparison.py is a sweep: the same runs and numbers as its configs run directly."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import require_dataset

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("run_pruning_comparison",
                                                  ROOT / "paper_repro" / "run_pruning_comparison.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_tables_rows_are_the_sweeps_variants():
    from refimpl.engine.sweep import load_sweep

    script = _script()
    sweep = load_sweep(script.SWEEP)
    assert [r.name for r in sweep.runs] == [e.key for e in script.EXPERIMENTS]
    for run in sweep.runs:
        exp = script.BY_KEY[run.name]
        assert run.config.seed == (exp.seed or 0)
        assert run.config.threads == 1
        assert run.config.pretrain.init_weights.endswith("lenet5_fashion_dense.npz")


@pytest.mark.data
def test_a_sweep_run_equals_the_same_config_run_directly(tmp_path):
    """The engine under dask gives bit for bit what run_experiment gives in this process."""
    from refimpl.config import load_config
    from refimpl.engine import run_experiment
    from refimpl.engine.sweep import run_sweep

    require_dataset("fashion-mnist")
    script = _script()
    tiny = {"data.limit_train": 256, "data.limit_test": 200, "admm.epochs": 1, "retrain.epochs": 1,
            "admm.update_every": 2}
    sweep = script.load_comparison(smoke=False, only=["admm95"])
    run = sweep.runs[0]
    overrides = {**run.overrides, **tiny}
    sweep = dataclasses.replace(sweep, runs=[dataclasses.replace(run, overrides=overrides,
                                                                 config=load_config(run.base, overrides))])
    assert run_sweep(sweep, tmp_path / "sweep", workers=1, progress=False, echo=None).ok
    run_experiment(load_config(run.base, overrides), tmp_path / "direct", progress=False, echo=None)
    for name in ("model_masked.npz", "masks.npz", "model_compact.npz"):
        swept, direct = tmp_path / "sweep" / "runs" / "admm95" / name, tmp_path / "direct" / name
        with np.load(swept) as a, np.load(direct) as b:
            assert a.files == b.files
            assert all(a[k].tobytes() == b[k].tobytes() for k in a.files), name
