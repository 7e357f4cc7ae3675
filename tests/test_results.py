"""refimpl results: a row per run of sweep, run and runs directories; CSV / JSON / Markdown; reading back."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from refimpl._io import atomic_write_json
from refimpl.cli import main
from refimpl.config import load_config
from refimpl.engine import run_experiment
from refimpl.engine.results import (
    COLUMNS,
    collect_results,
    format_for_path,
    format_results,
    load_results,
)
from refimpl.engine.sweep import load_sweep

BASE = """
name = "tiny"
method = "admm"
threads = 1

[data]
name = "digits"
limit_train = 200

[pretrain]
epochs = 1

[admm]
epochs = 1

[[admm.constraints]]
params = "conv"
structure = "filters"
sparsity = 0.5

[[admm.constraints]]
param = "conv2.weight"
structure = "shapes"
sparsity = 0.5

[retrain]
epochs = 1
"""

SWEEP = """
budget = "4 tiny runs (tests)"
base = "base.toml"

[grid]
description = ["x|y", "plain"]
seed = [0, 1]
"""


class Stop(Exception):
    """Raised by a test hook to interrupt a run."""


def interrupt_at_admm(phase):
    if phase.kind == "admm":
        raise Stop("interrupted")
    return []


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """A sweep directory as ``refimpl sweep`` leaves it: one run finished, one partial, one failed, one
    never started (the runs are made with run_experiment directly; the manifest is the sweep's)."""
    root = tmp_path_factory.mktemp("results")
    (root / "base.toml").write_text(BASE)
    (root / "sweep.toml").write_text(SWEEP)
    sweep = load_sweep(root / "sweep.toml")
    out = root / "out"
    (out / "runs").mkdir(parents=True)
    atomic_write_json(out / "sweep.json", sweep.manifest())
    finished, partial, failed, pending = sweep.runs
    run_experiment(finished.config, out / "runs" / finished.name, progress=False, echo=None)
    with pytest.raises(Stop):
        run_experiment(partial.config, out / "runs" / partial.name, progress=False, echo=None,
                       hooks=interrupt_at_admm)
    atomic_write_json(out / "failures.json", [{"name": failed.name, "error": "SetupError: x", "log": None}])
    return out, sweep


def test_a_sweep_directory_has_a_row_per_run_in_manifest_order(sweep_dir):
    out, sweep = sweep_dir
    rows = collect_results(out)
    assert [r["run"] for r in rows] == ["x_y-s0", "x_y-s1", "plain-s0", "plain-s1"]
    assert [r["status"] for r in rows] == ["finished", "partial", "failed", "pending"]
    assert [(r["description"], r["seed"]) for r in rows] == [("x|y", 0), ("x|y", 1), ("plain", 0),
                                                              ("plain", 1)]
    columns = list(rows[0])
    assert all(list(r) == columns for r in rows)
    assert columns[:8] == ["run", "description", "seed", "dataset", "model", "method", "structure",
                           "sparsity.conv1.weight"]
    assert columns[8] == "sparsity.conv2.weight"
    assert columns[9:] == [*COLUMNS, "accuracy.val_final", "budget_curve", "status"]
    for row in rows:  # settings come from the manifest or the run's config, also for unfinished runs
        assert (row["dataset"], row["model"], row["method"], row["structure"]) == \
            ("digits", "lenet5", "admm", "filters+shapes")
    for row in rows[1:]:
        assert all(row[c] is None for c in [*COLUMNS, "sparsity.conv1.weight", "sparsity.conv2.weight"])


def test_metrics_are_those_of_the_report_and_the_masks(sweep_dir):
    out, _ = sweep_dir
    row = collect_results(out)[0]
    run_dir = out / "runs" / row["run"]
    report = json.loads((run_dir / "report.json").read_text())
    with np.load(run_dir / "masks.npz") as masks:
        for param in ("conv1.weight", "conv2.weight"):
            assert row[f"sparsity.{param}"] == pytest.approx(1 - masks[param].mean())
        kept = sum(int(masks[k].sum()) for k in masks.files)
        total = sum(masks[k].size for k in masks.files)
    assert row["sparsity.overall"] == pytest.approx(1 - kept / total)
    assert row["accuracy.dense"] == report["accuracy"]["dense"]
    assert row["accuracy.after_admm"] == report["accuracy"]["after_admm"]
    assert row["accuracy.after_hard_prune"] == report["accuracy"]["after_hard_prune"]
    assert row["accuracy.final"] == report["accuracy"]["masked"]
    assert row["accuracy.compact"] == report["accuracy"]["compact"]
    with np.load(run_dir / "model_masked.npz") as weights:
        nonzero = sum(int(np.count_nonzero(weights[k])) for k in weights.files
                      if k.endswith(("weight", "bias")))
    assert row["params.nonzero"] == report["params"]["nonzero"] == nonzero
    assert row["params.dense"] == report["params"]["dense"]
    assert row["params.compact"] == report["params"]["compact"] < row["params.dense"]
    assert (row["macs.dense"], row["macs.effective"], row["macs.compact"]) == \
        (report["macs"]["dense"], report["macs"]["effective"], report["macs"]["compact"])
    assert row["compression"] == pytest.approx(row["params.dense"] / row["params.nonzero"])
    assert row["seconds"] == pytest.approx(sum(p["seconds"] for p in report["phases"]))


def test_a_run_directory_and_a_directory_of_runs(sweep_dir):
    out, sweep = sweep_dir
    finished = out / "runs" / "x_y-s0"
    [row] = collect_results(finished)
    assert row["run"] == "x_y-s0" and row["status"] == "finished" and row["seed"] == 0
    assert "description" not in row  # no grid outside a sweep
    assert row["accuracy.final"] == collect_results(out)[0]["accuracy.final"]
    rows = collect_results(out / "runs")  # the partial run counts, the never started ones do not exist
    assert [(r["run"], r["status"]) for r in rows] == [("x_y-s0", "finished"), ("x_y-s1", "partial")]
    assert rows[1]["seed"] == 1 and rows[1]["accuracy.final"] is None


def test_csv_json_markdown_and_reading_back(sweep_dir, tmp_path):
    out, _ = sweep_dir
    rows = collect_results(out)
    text = format_results(rows, "csv")
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert [r["run"] for r in parsed] == [r["run"] for r in rows]
    assert parsed[0]["accuracy.final"] == repr(rows[0]["accuracy.final"])
    assert parsed[1]["accuracy.final"] == ""
    assert json.loads(format_results(rows, "json")) == rows
    lines = format_results(rows, "markdown").splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].split(" | ")[1:3] == ["description", "seed"]
    assert "x\\|y" in lines[2]  # a | inside a cell is escaped
    cells = [line.replace("\\|", "").count("|") for line in lines]
    assert set(cells) == {len(rows[0]) + 1}
    seed = list(rows[0]).index("seed")
    assert lines[1].strip("|").split("|")[seed] == "---:"  # numbers right-aligned
    for name in ("t.csv", "t.json"):
        path = tmp_path / name
        path.write_text(format_results(rows, format_for_path(path)))
        assert load_results(path) == rows
    assert load_results(out) == rows


def test_format_for_path():
    assert [format_for_path(p) for p in (None, "a.csv", "a.JSON", "a.md", "a.markdown", "a.txt")] == \
        ["markdown", "csv", "json", "markdown", "markdown", "markdown"]


def test_results_command(sweep_dir, tmp_path, capsys):
    out, _ = sweep_dir
    assert main(["results", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == collect_results(out)
    target = tmp_path / "table.md"
    assert main(["results", str(out), "--output", str(target)]) == 0
    assert target.read_text() == format_results(collect_results(out), "markdown")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["results", str(empty)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("refimpl results: error:") and "holds no sweep" in err and "\n" not in err


def test_bad_inputs(tmp_path, sweep_dir):
    out, _ = sweep_dir
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_results(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is not a directory"):
        collect_results(tmp_path / "file.txt")
    with pytest.raises(ValueError, match="reads a directory, a .csv or a .json file"):
        load_results(tmp_path / "file.txt")
    rows = collect_results(out)
    with pytest.raises(ValueError, match="format must be one of"):
        format_results(rows, "xlsx")
    with pytest.raises(TypeError, match="rows must be a list of dicts"):
        format_results(rows[0], "csv")
    (tmp_path / "rows.json").write_text('{"run": "a"}')
    with pytest.raises(ValueError, match="does not hold a list of rows"):
        load_results(tmp_path / "rows.json")


def test_a_dense_run_has_no_structure_and_zero_sparsity(tmp_path):
    config = load_config(None, {"method": "none", "threads": 1, "data.limit_train": 100,
                                "pretrain.epochs": 1})
    run_experiment(config, tmp_path / "dense", progress=False, echo=None)
    [row] = collect_results(tmp_path / "dense")
    assert row["method"] == "none" and row["structure"] is None
    assert row["sparsity.overall"] == 0.0 and row["params.nonzero"] <= row["params.dense"]
    assert not [c for c in row if c.startswith("sparsity.") and c != "sparsity.overall"]


def test_final_val_accuracy_and_budget_curve_from_a_report():
    from refimpl.engine.results import budget_curve, final_val_accuracy

    report = {"phases": [
        {"kind": "pretrain", "epochs": 15, "val_acc_curve": [0.5]},
        {"kind": "admm", "epochs": 2, "val_acc_curve": [0.6, 0.7], "test_acc_curve": [0.61, 0.71]},
        {"kind": "prune", "epochs": 0, "test_acc": 0.4},
        {"kind": "retrain", "epochs": 2, "val_acc_curve": [0.8, 0.85], "test_acc_curve": [0.81, 0.86]},
        {"kind": "compact", "epochs": 0, "test_acc": 0.86}]}
    assert final_val_accuracy(report) == 0.85  # validation, never the test accuracy
    assert budget_curve(report) == [[2, 0.4], [3, 0.81], [4, 0.86]]
    # progressive: the curve starts at the LAST cut and counts every epoch spent before it
    steps = {"phases": [{"kind": "pretrain", "epochs": 0}, {"kind": "admm", "epochs": 1},
                        {"kind": "prune", "test_acc": 0.3},
                        {"kind": "retrain", "epochs": 1, "test_acc_curve": [0.5]},
                        {"kind": "admm", "epochs": 1}, {"kind": "prune", "test_acc": 0.2},
                        {"kind": "retrain", "epochs": 1, "test_acc_curve": [0.6]}]}
    assert budget_curve(steps) == [[3, 0.2], [4, 0.6]]
    assert budget_curve({"phases": [{"kind": "pretrain", "epochs": 3}]}) is None
    assert final_val_accuracy({"phases": [{"kind": "retrain", "test_acc_curve": [0.9]}]}) is None
    no_curve = {"phases": [{"kind": "prune", "test_acc": 0.3}, {"kind": "retrain", "epochs": 1}]}
    assert budget_curve(no_curve) is None
