"""Tests for the ``refimpl prune`` and ``refimpl demo`` subcommands (refimpl.cli)."""

from __future__ import annotations

import json

import pytest

from refimpl.cli import build_parser, main

CONFIG = """
name = "cli-test"
threads = 1
[data]
name = "digits"
[pretrain]
epochs = 1
[admm]
epochs = 1
[[admm.constraints]]
params = "conv"
structure = "filters"
sparsity = 0.5
[retrain]
epochs = 1
"""


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text(CONFIG)
    return path


def test_prune_runs_with_overrides_and_data_options(config_file, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["prune", "--config", str(config_file), "--out", str(out), "--no-progress",
            "--dataset", "synthetic", "--limit-train", "96",
            "--set", "admm.rho=0.01", "--set", "retrain.epochs=2"]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["data"]["name"] == "synthetic" and saved["data"]["limit_train"] == 96
    assert saved["admm"]["rho"] == 0.01 and saved["retrain"]["epochs"] == 2
    assert saved["data"]["dtype"] == "float32"  # not given: the config's value stays
    results = json.loads((out / "results.json").read_text())
    assert results["accuracy_compact"] == results["accuracy_pruned"]
    printed = capsys.readouterr().out
    assert "[admm] admm, 1 epochs" in printed and "compact (must equal masked)" in printed
    # A second run into the same directory is refused, --resume finishes at once with the same numbers.
    assert main(argv) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main([*argv, "--resume"]) == 0
    assert json.loads((out / "results.json").read_text())["accuracy_pruned"] == results["accuracy_pruned"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--set", "admm.rhoo=1"], "unknown key 'admm.rhoo' in <overrides>"),
    (["--set", "admm.epochs"], "must look like key=value"),
    (["--set", "retrain.epochs=-2"], "'retrain.epochs' in <overrides>: must be >= 0"),
])
def test_prune_config_errors_are_one_line(config_file, tmp_path, capsys, extra, message):
    assert main(["prune", "--config", str(config_file), "--out", str(tmp_path / "r"), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("refimpl prune: error:") and message in err
    assert not (tmp_path / "r").exists()


def test_prune_missing_config_file(tmp_path, capsys):
    assert main(["prune", "--config", str(tmp_path / "none.toml"), "--out", str(tmp_path / "r")]) == 1
    assert "none.toml does not exist" in capsys.readouterr().err


def test_parser_lists_the_new_subcommands():
    parser = build_parser()
    args = parser.parse_args(["demo", "--quick", "--no-progress"])
    assert args.quick and not args.progress and str(args.out) == "runs/demo"
    with pytest.raises(SystemExit):
        parser.parse_args(["prune", "--out", "x"])  # --config is required
