"""refimpl sweep: expansion of sweep files, dask execution, idempotence, failures, worker deaths, kills."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from refimpl.cli import main
from refimpl.config import load_config
from refimpl.engine import run_status
from refimpl.engine.cluster import check_scheduler_address
from refimpl.engine.results import collect_results
from refimpl.engine.sweep import differing_settings, load_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]

# A small, complete experiment: every phase runs, for one epoch on 200 digits.
TINY_BASE = """
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
keep = 30

[retrain]
epochs = 1
"""

# Runs long enough (several checkpointed epochs per phase) to be interrupted in the middle.
LONG_BASE = """
name = "long"
method = "admm"
threads = 1

[data]
name = "digits"

[pretrain]
epochs = 3

[admm]
epochs = 3

[[admm.constraints]]
params = "conv"
structure = "filters"
sparsity = 0.5

[retrain]
epochs = 2
"""

LONG_SWEEP = """
budget = "4 runs x ~3 s on 2 cores (tests)"
base = "base.toml"

[grid]
sparsity = [0.5, 0.75]
seed = [0, 1]
"""


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(text)
    return path


def sweep_file(tmp_path: Path, body: str, base: str = TINY_BASE) -> Path:
    write(tmp_path, "base.toml", base)
    return write(tmp_path, "sweep.toml", body)


def mtimes(directory: Path) -> dict[str, int]:
    return {str(p.relative_to(directory)): p.stat().st_mtime_ns for p in directory.rglob("*") if p.is_file()}


def masked_weights(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "model_masked.npz") as data:
        return {k: data[k] for k in data.files}


def assert_bit_identical(runs_a: Path, runs_b: Path, names) -> None:
    for name in names:
        a, b = masked_weights(runs_a / name), masked_weights(runs_b / name)
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].tobytes() == b[key].tobytes(), f"{name}: {key} differs"


# --- expansion -----------------------------------------------------------------------------------------

def test_grid_is_the_product_in_file_order_with_the_last_key_fastest(tmp_path):
    path = sweep_file(tmp_path, """
budget = "tiny"
base = "base.toml"
[grid]
method = ["admm", "magnitude"]
"retrain.epochs" = [1, 2, 3]
""")
    sweep = load_sweep(path)
    assert [r.values for r in sweep.runs] == [
        {"method": m, "retrain.epochs": e} for m in ("admm", "magnitude") for e in (1, 2, 3)]
    assert [r.name for r in sweep.runs] == [f"{m}-{e}" for m in ("admm", "magnitude") for e in (1, 2, 3)]
    assert sweep.grid_keys == ["method", "retrain.epochs"]
    for run in sweep.runs:
        assert run.config.method == run.values["method"]
        assert run.config.retrain.epochs == run.values["retrain.epochs"]
        assert run.config.name == run.name
        assert load_config(sweep.base, run.overrides) == run.config


def test_interleaved_order_puts_every_variant_of_a_grid_point_together(tmp_path):
    body = """
budget = "tiny"
base = "base.toml"
order = "{order}"
[grid]
seed = [0, 1]
"retrain.epochs" = [1, 2]
[[variants]]
name = "a"
set = {{ method = "admm" }}
[[variants]]
name = "m"
set = {{ method = "magnitude" }}
"""
    by_variant = load_sweep(sweep_file(tmp_path, body.format(order="variants")))
    points = [(s, e) for s in (0, 1) for e in (1, 2)]
    assert [r.name for r in by_variant.runs] == [f"{v}-s{s}-{e}" for v in "am" for s, e in points]
    interleaved = load_sweep(sweep_file(tmp_path, body.format(order="interleaved")))
    assert [r.name for r in interleaved.runs] == [f"{v}-s{s}-{e}" for s, e in points for v in "am"]
    # the same runs, only their order differs
    assert {r.name: r.config for r in interleaved.runs} == {r.name: r.config for r in by_variant.runs}


def test_runs_start_in_the_sweeps_run_order(tmp_path):
    path = sweep_file(tmp_path, """
budget = "tiny"
base = "base.toml"
order = "interleaved"
[grid]
seed = [0, 1, 2]
[[variants]]
name = "dense"
set = { method = "none" }
[[variants]]
name = "cut"
set = { method = "magnitude" }
""")
    sweep = load_sweep(path)
    out = tmp_path / "out"
    assert run_sweep(sweep, out, workers=1, progress=False, echo=None).ok
    # one worker runs one task at a time: the order in which the reports were written is the start order
    finished = sorted(sweep.runs, key=lambda r: (out / "runs" / r.name / "report.json").stat().st_mtime_ns)
    assert [r.name for r in finished] == [r.name for r in sweep.runs]
    assert [r.name for r in sweep.runs][:2] == ["dense-s0", "cut-s0"]


def test_toml_dotted_keys_and_set_tables_are_flattened(tmp_path):
    path = sweep_file(tmp_path, """
budget = "tiny"
base = "base.toml"
[set]
admm.epochs = 4
pretrain = {lr = 0.01}
[grid]
retrain.epochs = [2, 5]
""")
    sweep = load_sweep(path)
    assert sweep.grid_keys == ["retrain.epochs"]
    assert [r.config.retrain.epochs for r in sweep.runs] == [2, 5]
    assert all(r.config.admm.epochs == 4 and r.config.pretrain.lr == 0.01 for r in sweep.runs)


def test_shortcuts_set_every_constraint_table(tmp_path):
    path = sweep_file(tmp_path, """
budget = "tiny"
base = "base.toml"
[grid]
structure = ["filters", "channels"]
sparsity = [0.25, 0.75]
""")
    sweep = load_sweep(path)
    assert [r.name for r in sweep.runs] == ["filters-0.25", "filters-0.75", "channels-0.25", "channels-0.75"]
    for run in sweep.runs:
        tables = run.config.admm.constraints
        assert len(tables) == 2
        assert [t["structure"] for t in tables] == [run.values["structure"]] * 2
        assert [t["sparsity"] for t in tables] == [run.values["sparsity"]] * 2
        assert all("keep" not in t for t in tables)  # the base's keep = 30 gave way to the sparsity
        assert [t.get("param", t.get("params")) for t in tables] == ["conv", "conv2.weight"]
        assert load_config(sweep.base, run.overrides) == run.config


def test_whole_constraint_lists_in_the_grid(tmp_path):
    path = sweep_file(tmp_path, """
budget = "tiny"
base = "base.toml"
name_format = "c{admm.constraints}"
[grid]
"admm.constraints" = [
  [{params = "conv", structure = "filters", sparsity = 0.5}],
  [{params = "all", structure = "unstructured", sparsity = 0.9},
   {param = "conv2.weight", structure = "shapes", sparsity = 0.5}],
]
""")
    sweep = load_sweep(path)
    assert [r.name for r in sweep.runs] == ["cconv_filters_0.5",
                                           "call_unstructured_0.9_conv2.weight_shapes_0.5"]
    assert sweep.runs[1].config.admm.constraints[0] == {"params": "all", "structure": "unstructured",
                                                        "sparsity": 0.9}


def test_variants_come_first_in_names_and_multiply_the_grid(tmp_path):
    path = sweep_file(tmp_path, """
budget = "tiny"
base = "base.toml"
[set]
"admm.epochs" = 2
[grid]
seed = [0, 1]
[[variants]]
name = "short"
[[variants]]
name = "long"
set = {"admm.epochs" = 5, "retrain.epochs" = 3}
""")
    sweep = load_sweep(path)
    assert [r.name for r in sweep.runs] == ["short-s0", "short-s1", "long-s0", "long-s1"]
    assert sweep.variants == ["short", "long"]
    assert [r.values for r in sweep.runs][2] == {"variant": "long", "seed": 0}
    assert [(r.config.admm.epochs, r.config.retrain.epochs, r.config.seed) for r in sweep.runs] == [
        (2, 1, 0), (2, 1, 1), (5, 3, 0), (5, 3, 1)]  # the variant overrides [set]


def test_names_format_floats_seeds_and_odd_characters(tmp_path):
    path = sweep_file(tmp_path, """
budget = "tiny"
base = "base.toml"
[grid]
description = ["a b/c", ".hidden"]
"admm.rho" = [1.0, 0.0015]
seed = [3]
""")
    names = [r.name for r in load_sweep(path).runs]
    assert names == ["a_b_c-1-s3", "a_b_c-0.0015-s3", "_hidden-1-s3", "_hidden-0.0015-s3"]
    assert names == [r.name for r in load_sweep(path).runs]  # the same on every invocation


def test_file_paths_are_relative_to_the_sweep_file(tmp_path):
    path = sweep_file(tmp_path / "sweeps", """
budget = "tiny"
base = "base.toml"
[set]
"data.name" = "npz"
"data.path" = "../data/mine.npz"
[grid]
"pretrain.init_weights" = ["weights/a.npz", "/abs/b.npz"]
""")
    sweep = load_sweep(path)
    assert [r.name for r in sweep.runs] == ["weights_a.npz", "_abs_b.npz"]  # named as written
    assert sweep.runs[0].values == {"pretrain.init_weights": "weights/a.npz"}
    assert [r.config.pretrain.init_weights for r in sweep.runs] == [
        str(tmp_path / "sweeps" / "weights" / "a.npz"), "/abs/b.npz"]
    assert all(r.config.data.path == str(tmp_path / "data" / "mine.npz") for r in sweep.runs)


def test_name_format(tmp_path):
    path = sweep_file(tmp_path, """
budget = "tiny"
base = "base.toml"
name_format = "{variant}_{method}_seed{seed}_r{retrain.epochs}"
[grid]
method = ["admm"]
seed = [7]
"retrain.epochs" = [2]
[[variants]]
name = "v1"
""")
    assert [r.name for r in load_sweep(path).runs] == ["v1_admm_seed7_r2"]


@pytest.mark.parametrize("body, message", [
    ('budget = "x"\nbase = "base.toml"\n[grid]\n"retrain.epoch" = [1]',
     "unknown key 'retrain.epoch' in [grid]"),
    ('budget = "x"\nbase = "base.toml"\n[set]\nlearning_rate = 0.1', "unknown key 'learning_rate' in [set]"),
    ('budget = "x"\nbase = "base.toml"\ngird = {}', "unknown key 'gird'"),
    ('budget = "x"\nbase = "base.toml"\n[[variants]]\nname = "a"\nsets = {}',
     "unknown key 'sets' in variants[0]"),
    ('budget = "x"\nbase = "base.toml"\n[[variants]]\nname = "a"\nset = {"admm.epoks" = 1}',
     "unknown key 'admm.epoks' in variants[0] ('a')"),
    ('budget = "x"\nbase = "base.toml"\n[grid]\nseed = 3', "'seed' in [grid]"),
    ('budget = "x"\nbase = "base.toml"\n[grid]\nseed = []', "non-empty array"),
    ('budget = "x"\nbase = "base.toml"\n[grid]\nadmm = [1]', "'admm' in [grid]"),
    ('budget = 5\nbase = "base.toml"', "'budget'"),
    ('base = "base.toml"', "budget"),
    ('budget = "  "\nbase = "base.toml"', "budget"),
    ('budget = "x"', "needs 'base'"),
    ('budget = "x"\nbase = "base.toml"\n[grid]\nseed = ["zero"]', "run 'szero': 'seed' in [grid]"),
    ('budget = "x"\nbase = "base.toml"\n[grid]\nseed = [0, 1]\nmethod = ["admm"]\n'
     '[[variants]]\nname = "a"\nset = {seed = 3}', "set by both [grid] and variant 'a'"),
    ('budget = "x"\nbase = "base.toml"\n[[variants]]\nname = "a"\n[[variants]]\nname = "a"', "repeated: 'a'"),
    ('budget = "x"\nbase = "base.toml"\nname_format = "{method}"\n[grid]\nseed = [0]', "{method}"),
    ('budget = "x"\nbase = "base.toml"\norder = "random"', "order in"),
    ('budget = "x"\nbase = "base.toml"\norder = 1', "'order'"),
])
def test_bad_sweep_files_are_one_line_errors_naming_key_and_file(tmp_path, body, message):
    path = sweep_file(tmp_path, body)
    with pytest.raises((ValueError, TypeError)) as info:
        load_sweep(path)
    text = str(info.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text


def test_wrong_type_in_the_grid_names_the_run_the_key_and_the_table(tmp_path):
    path = sweep_file(tmp_path, 'budget = "x"\nbase = "base.toml"\n[grid]\nseed = [0, "one"]')
    with pytest.raises(TypeError, match=r"run 'sone'.*'seed' in \[grid\] must be int"):
        load_sweep(path)


def test_an_invalid_expanded_config_is_named_with_its_run_before_anything_runs(tmp_path):
    path = sweep_file(tmp_path, 'budget = "x"\nbase = "base.toml"\n[grid]\nsparsity = [0.5, 1.5]')
    out = tmp_path / "out"
    with pytest.raises(ValueError) as info:
        load_sweep(path)
    text = str(info.value)
    assert "run '1.5'" in text and "admm.constraints[0]" in text and "shortcut 'sparsity' in [grid]" in text
    assert main(["sweep", str(path), "--out", str(out), "--no-progress"]) == 1
    assert not out.exists()  # nothing written, nothing started


def test_duplicate_names_are_listed(tmp_path):
    path = sweep_file(tmp_path, """
budget = "x"
base = "base.toml"
name_format = "{method}"
[grid]
method = ["admm", "magnitude"]
seed = [0, 1]
""")
    with pytest.raises(ValueError, match=r"share names: 'admm' for .*\"seed\": 0.*\"seed\": 1.*'magnitude'"):
        load_sweep(path)
    path = sweep_file(tmp_path, 'budget = "x"\nbase = "base.toml"\n[grid]\ndescription = ["a b", "a/b"]')
    with pytest.raises(ValueError, match="share names: 'a_b'"):
        load_sweep(path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="sweep file"):
        load_sweep(tmp_path / "nope.toml")
    path = write(tmp_path, "s.toml", 'budget = "x"\nbase = "missing.toml"')
    with pytest.raises(FileNotFoundError, match="'base' in .*missing.toml"):
        load_sweep(path)


def test_dry_run_lists_runs_and_differing_settings_and_runs_nothing(tmp_path, capsys):
    path = sweep_file(tmp_path, """
budget = "1 minute"
base = "base.toml"
[grid]
method = ["admm", "magnitude"]
sparsity = [0.5]
seed = [0, 1]
""")
    sweep = load_sweep(path)
    assert differing_settings(sweep.runs) == ["seed", "method"]
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "4 runs; budget: 1 minute" in printed
    for run in sweep.runs:
        line = next(line for line in printed.splitlines() if line.strip().startswith(run.name + " "))
        assert f"seed={run.values['seed']}" in line and f'method="{run.values["method"]}"' in line
        assert "[new]" in line
    assert not out.exists()


def test_paper_repro_smoke_sweep_loads():
    sweep = load_sweep(REPO / "paper_repro" / "sweeps" / "smoke_digits.toml")
    assert len(sweep.runs) == 4
    assert sweep.budget
    assert all(r.config.data.name == "digits" and r.config.threads == 1 for r in sweep.runs)


# --- scheduler addresses -------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "tcp://localhost:8786",
                                     "tcp://[::1]:8786", "tcp://127.0.1.1:9000", "tls://10.0.0.5:8786",
                                     "tls://scheduler.example.org:8786", "inproc://10.0.0.5/1/2"])
def test_accepted_scheduler_addresses(address):
    assert check_scheduler_address(address) == address


@pytest.mark.parametrize("address", ["tcp://10.0.0.5:8786", "10.0.0.5:8786", "tcp://scheduler.example.org",
                                     "ws://192.0.2.1:8786", "tcp://0.0.0.0:8786"])
def test_plaintext_remote_addresses_are_refused_unless_insecure(address):
    with pytest.raises(ValueError) as info:
        check_scheduler_address(address)
    text = str(info.value)
    assert "tls://" in text and "--insecure" in text and "runs any code" in text and "\n" not in text
    assert check_scheduler_address(address, insecure=True) == address


def test_unknown_protocol_and_bad_types():
    with pytest.raises(ValueError, match="unknown protocol 'http'"):
        check_scheduler_address("http://127.0.0.1:8786")
    with pytest.raises(TypeError, match="scheduler address"):
        check_scheduler_address(8786)


def test_cli_refuses_a_remote_plaintext_scheduler_before_writing(tmp_path, capsys):
    path = sweep_file(tmp_path, 'budget = "x"\nbase = "base.toml"\n[grid]\nseed = [0]')
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--scheduler", "tcp://192.0.2.7:8786"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("refimpl sweep: error: refusing the unencrypted scheduler address")
    assert "\n" not in err
    assert not out.exists()


def test_cli_passes_insecure_and_the_exit_code(tmp_path, monkeypatch):
    import refimpl.engine.sweep as sweep_module

    calls = []

    class Summary:
        ok = False

    def fake_run_sweep(sweep, out, **kwargs):
        calls.append((sweep.name, Path(out), kwargs))
        return Summary()

    monkeypatch.setattr(sweep_module, "run_sweep", fake_run_sweep)
    path = sweep_file(tmp_path, 'budget = "x"\nbase = "base.toml"\nname = "s"\n[grid]\nseed = [0]')
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--scheduler", "tcp://10.1.2.3:8786",
                 "--insecure", "--no-progress"]) == 1
    assert calls == [("s", tmp_path / "o", {"workers": None, "scheduler": "tcp://10.1.2.3:8786",
                                            "insecure": True, "progress": False, "dashboard": False})]


def test_workers_and_scheduler_exclude_each_other(tmp_path):
    path = sweep_file(tmp_path, 'budget = "x"\nbase = "base.toml"\n[grid]\nseed = [0]')
    with pytest.raises(ValueError, match="workers applies to the local cluster only"):
        run_sweep(path, tmp_path / "o", workers=2, scheduler="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="workers must be an integer >= 1"):
        run_sweep(path, tmp_path / "o", workers=0)
    assert not (tmp_path / "o").exists()


def test_a_foreign_output_directory_is_refused(tmp_path):
    path = sweep_file(tmp_path, 'budget = "x"\nbase = "base.toml"\n[grid]\nseed = [0]')
    out = tmp_path / "mine"
    write(out, "notes.txt", "precious")
    with pytest.raises(ValueError, match="holds no sweep"):
        run_sweep(path, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# --- real sweeps on dask -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_sweep(tmp_path_factory):
    """The 4-run LONG sweep, run once uninterrupted with 2 local workers: the reference of every test."""
    root = tmp_path_factory.mktemp("reference")
    path = sweep_file(root, LONG_SWEEP, base=LONG_BASE)
    out = root / "out"
    started = time.perf_counter()
    summary = run_sweep(path, out, workers=2, progress=False, echo=None)
    return path, out, summary, time.perf_counter() - started


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=logging.ERROR) as local, \
            Client(local, set_as_default=False) as client:
        yield local, client


def test_a_real_sweep_finishes_and_a_second_invocation_runs_nothing(long_sweep, monkeypatch, capsys):
    import refimpl.engine.cluster as cluster_module

    path, out, summary, _ = long_sweep
    names = ["0.5-s0", "0.5-s1", "0.75-s0", "0.75-s1"]
    assert (summary.total, summary.finished, summary.skipped, summary.failed) == (4, 4, 0, 0)
    assert [run_status(out / "runs" / n) for n in names] == ["finished"] * 4
    manifest = json.loads((out / "sweep.json").read_text())
    assert manifest["budget"] and manifest["grid"] == ["sparsity", "seed"]
    assert [r["name"] for r in manifest["runs"]] == names
    assert manifest["runs"][2]["values"] == {"sparsity": 0.75, "seed": 0}
    assert manifest["runs"][2]["config"]["admm"]["constraints"][0]["sparsity"] == 0.75
    assert json.loads((out / "failures.json").read_text()) == []
    for name in names:
        log = (out / "runs" / name / "run.log").read_text()
        assert log.startswith("== ") and f"starting {name}" in log and "[compact] compact" in log

    before = mtimes(out / "runs")

    def no_cluster(**kwargs):
        raise AssertionError("a sweep with nothing to do started a cluster")

    monkeypatch.setattr(cluster_module, "open_client", no_cluster)
    assert main(["sweep", str(path), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    assert "0 finished now, 4 already finished (skipped), 0 failed" in capsys.readouterr().out
    assert mtimes(out / "runs") == before

    rows = collect_results(out)
    assert [r["run"] for r in rows] == names
    assert [(r["sparsity"], r["seed"]) for r in rows] == [(0.5, 0), (0.5, 1), (0.75, 0), (0.75, 1)]
    for row in rows:
        assert row["status"] == "finished"
        report = json.loads((out / "runs" / row["run"] / "report.json").read_text())
        assert row["accuracy.final"] == report["accuracy"]["masked"]
        with np.load(out / "runs" / row["run"] / "masks.npz") as masks:
            kept = masks["conv2.weight"]
        assert row["sparsity.conv2.weight"] == pytest.approx(1 - kept.mean())
        filters = kept.shape[0]  # the grid's target, counted like torch.nn.utils.prune (half to even)
        assert row["sparsity.conv2.weight"] == pytest.approx(np.round(row["sparsity"] * filters) / filters)


def test_results_command_output_parses_in_every_format(long_sweep, capsys, tmp_path):
    _, out, _, _ = long_sweep
    expected = collect_results(out)
    assert main(["results", str(out), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4 and rows[0].keys() == expected[0].keys()
    assert [float(r["accuracy.final"]) for r in rows] == [r["accuracy.final"] for r in expected]
    assert main(["results", str(out), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    assert main(["results", str(out), "--format", "markdown"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 + 4
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines[:1] + lines[2:])
    assert {line.count("|") for line in lines} == {len(expected[0]) + 1}
    target = tmp_path / "table.csv"
    assert main(["results", str(out), "--output", str(target)]) == 0  # the suffix picks csv
    assert len(list(csv.DictReader(target.open()))) == 4


def test_failing_runs_are_reported_and_the_others_finish(tmp_path, cluster, capsys):
    local, _ = cluster
    path = sweep_file(tmp_path, f"""
budget = "3 tiny runs"
base = "base.toml"
[[variants]]
name = "good"
[[variants]]
name = "bad-constraint"
set = {{"admm.constraints" = [{{param = "conv9.weight", structure = "filters", sparsity = 0.5}}]}}
[[variants]]
name = "no-data"
set = {{"data.name" = "mnist", "data.root" = "{tmp_path / 'nowhere'}", "data.download" = false}}
""")
    out = tmp_path / "out"
    argv = ["sweep", str(path), "--out", str(out), "--scheduler", local.scheduler_address, "--no-progress"]
    assert main(argv) == 1
    printed = capsys.readouterr().out
    failures = json.loads((out / "failures.json").read_text())
    assert sorted(f["name"] for f in failures) == ["bad-constraint", "no-data"]
    by_name = {f["name"]: f for f in failures}
    assert "conv9.weight" in by_name["bad-constraint"]["error"]
    assert by_name["no-data"]["error"].startswith("SetupError:")
    for failure in failures:
        assert "\n" not in failure["error"]
        assert f"FAILED {failure['name']}: {failure['error']}" in printed
        log = Path(failure["log"]).read_text()
        assert "Traceback" in log and failure["name"] in log
        # The engine wrote nothing (setup failed); only the sweep's log is there, and it is no obstacle.
        assert sorted(p.name for p in Path(failure["log"]).parent.iterdir()) == ["run.log"]
    assert run_status(out / "runs" / "good") == "finished"
    statuses = {r["run"]: r["status"] for r in collect_results(out)}
    assert statuses == {"good": "finished", "bad-constraint": "failed", "no-data": "failed"}

    assert main(argv) == 1  # again: the same failures, not "a foreign directory"; good is skipped
    again = json.loads((out / "failures.json").read_text())
    assert sorted(f["error"] for f in again) == sorted(f["error"] for f in failures)
    log = (out / "runs" / "bad-constraint" / "run.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("== ")]
    assert len(headers) == 2 and all("starting bad-constraint" in h for h in headers)
    assert len(re.findall(r"^\S*SetupError: admm.constraints\[0\]", log, flags=re.MULTILINE)) == 2


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_its_run_resumes(tmp_path, long_sweep, cluster):
    reference_file, reference_out, _, _ = long_sweep
    local, client = cluster
    path = sweep_file(tmp_path, LONG_SWEEP, base=LONG_BASE)
    out = tmp_path / "out"
    killed: dict = {}

    def kill_a_worker_mid_run():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            pids = set(client.run(os.getpid).values())
            for run_dir in sorted((out / "runs").glob("*")):
                lock = run_dir / "run.lock"
                if run_status(run_dir) == "partial" and list(run_dir.glob("*/checkpoint.npz")) \
                        and lock.is_file() and lock.read_text().strip().isdigit():
                    pid = int(lock.read_text())
                    if pid in pids and run_status(run_dir) == "partial":
                        os.kill(pid, signal.SIGKILL)
                        killed.update(name=run_dir.name, pid=pid)
                        return
            time.sleep(0.02)

    thread = threading.Thread(target=kill_a_worker_mid_run)
    thread.start()
    summary = run_sweep(path, out, scheduler=local.scheduler_address, progress=False, echo=None)
    thread.join()
    assert killed, "no run was caught in progress"
    assert (summary.finished, summary.failed) == (4, 0)
    assert killed["name"] in summary.restarted
    log = (out / "runs" / killed["name"] / "run.log").read_text()
    assert f"starting {killed['name']} (PID {killed['pid']}" in log and f"resuming {killed['name']}" in log
    assert_bit_identical(reference_out / "runs", out / "runs", [r.name for r in load_sweep(path).runs])


@pytest.mark.slow
def test_a_killed_sweep_resumes_bit_identically(tmp_path, long_sweep):
    _, reference_out, _, _ = long_sweep
    path = sweep_file(tmp_path, LONG_SWEEP, base=LONG_BASE)
    out = tmp_path / "out"
    names = [r.name for r in load_sweep(path).runs]
    command = [sys.executable, "-m", "refimpl.cli", "sweep", str(path), "--out", str(out), "--workers", "2",
               "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            states = {n: run_status(out / "runs" / n) for n in names}
            started = [n for n in names if states[n] == "partial"
                       and json.loads((out / "runs" / n / "state.json").read_text())["phases"]]
            if "finished" in states.values() and started:
                os.killpg(process.pid, signal.SIGKILL)
                break
            assert process.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.02)
        else:
            pytest.fail("no moment with a finished and a started run")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _wait_for_group_to_die(process.pid)

    states = {n: run_status(out / "runs" / n) for n in names}
    finished = [n for n in names if states[n] == "finished"]
    interrupted = [n for n in names if states[n] == "partial"]
    assert finished and interrupted
    finished_files = {n: mtimes(out / "runs" / n) for n in finished}
    done_phases = {n: json.loads((out / "runs" / n / "state.json").read_text())["phases"]
                   for n in interrupted}
    phase_files = {n: {p: (out / "runs" / n / p / "model.npz").stat().st_mtime_ns for p in done_phases[n]
                       if (out / "runs" / n / p / "model.npz").is_file()} for n in interrupted}

    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"{len(names) - len(finished)} finished now, {len(finished)} already finished" in result.stdout
    for name in finished:
        assert mtimes(out / "runs" / name) == finished_files[name]
    for name in interrupted:
        assert run_status(out / "runs" / name) == "finished"
        log = (out / "runs" / name / "run.log").read_text()
        assert f"resuming {name}" in log
        for phase, mtime in phase_files[name].items():  # phases done before the kill were not redone
            assert (out / "runs" / name / phase / "model.npz").stat().st_mtime_ns == mtime
    assert_bit_identical(reference_out / "runs", out / "runs", names)


def _wait_for_group_to_die(pgid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} survived SIGKILL")


def test_a_variant_may_name_its_own_base_config(tmp_path):
    base = tmp_path / "base.toml"
    base.write_text(TINY_BASE)
    (tmp_path / "other.toml").write_text('base = "base.toml"\nmethod = "magnitude"\n[retrain]\nepochs = 3\n')
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text('budget = "test"\nbase = "base.toml"\n[grid]\nseed = [0, 1]\n'
                          '[[variants]]\nname = "own"\nbase = "other.toml"\n'
                          '[[variants]]\nname = "plain"\n')
    sweep = load_sweep(sweep_file)
    own = [r for r in sweep.runs if r.values["variant"] == "own"]
    plain = [r for r in sweep.runs if r.values["variant"] == "plain"]
    assert len(own) == len(plain) == 2
    assert all(r.config.method == "magnitude" and r.config.retrain.epochs == 3 for r in own)
    assert all(r.config.method == "admm" and r.config.retrain.epochs == 1 for r in plain)
    for run in sweep.runs:
        assert load_config(run.base, run.overrides) == run.config
    assert {r["base"] for r in sweep.manifest()["runs"]} == {str((tmp_path / "other.toml").resolve()),
                                                             str(base.resolve())}
    sweep_file.write_text('budget = "test"\nbase = "base.toml"\n[[variants]]\nname = "own"\n'
                          'base = "missing.toml"\n')
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        load_sweep(sweep_file)


def test_a_finished_run_saved_before_a_setting_existed_is_still_skipped(tmp_path):
    """A setting added to refimpl after a sweep ran (at its default) does not make finished runs 'other'."""
    base = tmp_path / "base.toml"
    base.write_text(TINY_BASE)
    sweep_file = tmp_path / "s.toml"
    sweep_file.write_text('budget = "test"\nbase = "base.toml"\n[grid]\nseed = [0]\n')
    out = tmp_path / "out"
    assert run_sweep(load_sweep(sweep_file), out, workers=1, progress=False, echo=None).ok
    saved_path = out / "runs" / "s0" / "config.json"
    saved = json.loads(saved_path.read_text())
    del saved["output"]["test_every_epoch"]  # as an older refimpl wrote it
    saved_path.write_text(json.dumps(saved))
    summary = run_sweep(load_sweep(sweep_file), out, workers=1, progress=False, echo=None)
    assert summary.ok and summary.skipped == 1 and summary.failed == 0
    sweep_file.write_text('budget = "test"\nbase = "base.toml"\n[set]\n"output.test_every_epoch" = true\n'
                          '[grid]\nseed = [0]\n')
    summary = run_sweep(load_sweep(sweep_file), out, workers=1, progress=False, echo=None)
    assert summary.failed == 1 and "output.test_every_epoch" in summary.failures[0]["error"]
