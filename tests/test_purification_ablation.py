"""paper_repro/purification_ablation.py: purifying finished runs, compared with the engine's own phase."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from refimpl.config import load_config
from refimpl.engine import run_experiment

ROOT = Path(__file__).resolve().parents[1]

TINY = """
name = "tiny"
method = "magnitude"
threads = 1
[data]
name = "digits"
limit_train = 300
[pretrain]
epochs = 2
[[admm.constraints]]
params = ["conv2.weight", "fc1.weight"]
structure = "{structure}"
sparsity = {sparsity}
[retrain]
epochs = 1
[purify]
enabled = {purify}
epochs = 0
eta = 0.9
sigma = 0.5   # looser than the default 0.1, so that a tiny run has rows to remove
"""


def _script():
    spec = importlib.util.spec_from_file_location("purification_ablation",
                                                  ROOT / "paper_repro" / "purification_ablation.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _run(tmp_path: Path, name: str, structure: str, sparsity: float, purify: bool) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(TINY.format(structure=structure, sparsity=sparsity, purify=str(purify).lower()))
    out = tmp_path / "sweep" / "runs" / name
    run_experiment(load_config(path), out, progress=False, echo=None)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("purify")
    return {
        "unstructured": _run(tmp, "unstructured", "unstructured", 0.97, purify=False),
        "unstructured_purified": _run(tmp, "unstructured_purified", "unstructured", 0.97, purify=True),
        "filters": _run(tmp, "filters", "filters", 0.5, purify=False),
    }


def test_removes_what_the_engines_purify_phase_removes(runs):
    row = _script().ablate_run(runs["unstructured"], eta=0.9, sigma=0.5, data_cache={})
    # the same config with purify.enabled (0 retraining epochs after it): the engine's purify phase
    purified = json.loads((runs["unstructured_purified"] / "state.json").read_text())["phases"]["purify"]
    removed = sum(row["removed"].values())
    assert removed > 0  # at 97 % without structure some fc1 rows are nearly empty
    assert removed == purified["metrics"]["num_removed"]
    assert row["params_compact_after"] < row["params_compact_before"]
    assert row["test_acc_after_purify"] == purified["metrics"]["test_acc"]


def test_structured_masks_leave_nothing_to_purify(runs):
    row = _script().ablate_run(runs["filters"], eta=0.9, sigma=0.1, data_cache={})
    assert sum(row["removed"].values()) == 0
    assert set(row["max_emptiness_kept"].values()) == {0.0}  # every filter that is kept is kept whole
    assert row["params_compact_after"] == row["params_compact_before"]
    assert row["test_acc_after_purify"] == row["test_acc_before"]


def test_cli_writes_the_rows_and_lists_runs_without_weights(runs, tmp_path, capsys):
    (runs["filters"] / "model_masked.npz").rename(runs["filters"] / "moved.npz")
    try:
        out = tmp_path / "ablation.json"
        assert _script().main([str(runs["unstructured"].parent.parent), "--out", str(out)]) == 0
    finally:
        (runs["filters"] / "moved.npz").rename(runs["filters"] / "model_masked.npz")
    data = json.loads(out.read_text())
    assert [r["run"] for r in data["rows"]] == ["unstructured", "unstructured_purified"]
    assert data["skipped"] == [str(runs["filters"])]
    assert "skipped 1 finished run(s) without local weights" in capsys.readouterr().out
