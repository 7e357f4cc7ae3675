"""Tests for the ``refimpl`` command line (refimpl.cli)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.cli import build_parser, main


def train_argv(out, *extra):
    return ["train", "--dataset", "digits", "--out", str(out), "--no-progress", *extra]


# --- argument errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--model", "alexnet", "--out", "x"], "argument --model: invalid choice: 'alexnet'"),
        (["train", "--epochs", "-1", "--out", "x"], "argument --epochs: must be >= 1, got -1"),
        (["train", "--epochs", "two", "--out", "x"], "argument --epochs: must be an integer, got 'two'"),
        (["train", "--lr", "-0.1", "--out", "x"], "argument --lr: must be >= 0, got -0.1"),
        (["train", "--dataset", "imagenet", "--out", "x"], "argument --dataset: invalid choice: 'imagenet'"),
        (["train"], "the following arguments are required: --out"),
        ([], "the following arguments are required: COMMAND"),
    ],
)
def test_argument_errors_exit_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_setup_errors_are_one_line_and_exit_1(tmp_path, capsys):
    assert main(train_argv(tmp_path / "r", "--optimizer", "adam", "--nesterov")) == 1
    err = capsys.readouterr().err
    assert err.startswith("refimpl train: error: --nesterov applies to --optimizer sgd only")
    assert "Traceback" not in err
    # A library check (momentum must lie in [0, 1)) comes through the same way.
    assert main(train_argv(tmp_path / "r", "--momentum", "1.5")) == 1
    assert "momentum must lie in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written for a run that never started


def test_missing_dataset_is_reported_without_traceback(tmp_path, monkeypatch, capsys):
    from refimpl import data

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("REFIMPL_DATA", raising=False)
    monkeypatch.setattr(data, "_SYSTEM_DATA_DIR", tmp_path / "none")
    argv = ["train", "--dataset", "mnist", "--data-root", str(tmp_path / "nowhere"), "--out",
            str(tmp_path / "r"), "--no-progress"]
    monkeypatch.setattr(data, "_download_dataset", lambda name, target, progress, failures: failures.append(
        "offline (test)"))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "refimpl train: error: dataset 'mnist' not found" in err and str(tmp_path / "nowhere") in err


def test_parser_lists_the_train_options():
    parser = build_parser()
    args = parser.parse_args(["train", "--out", "runs/x"])
    assert (args.model, args.dataset, args.epochs, args.batch_size, args.optimizer) == (
        "lenet5", "digits", 10, 64, "sgd")
    assert (args.lr, args.momentum, args.nesterov, args.weight_decay, args.schedule, args.seed) == (
        0.01, 0.9, False, 0.0, "constant", 0)
    assert args.progress and not args.resume and args.limit_train is None and args.dtype == "float32"


# --- smoke runs --------------------------------------------------------------------------------------


def test_train_writes_every_file_and_learns(tmp_path, capsys):
    out = tmp_path / "run"
    argv = train_argv(out, "--model", "lenet300_100", "--epochs", "1", "--lr", "0.05", "--dtype", "float64")
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz", "config.json", "log.jsonl", "model.npz", "results.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["args"]["model"] == "lenet300_100" and config["dataset"]["n_train"] == 1437
    assert config["model"]["parameters"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0]
    results = json.loads((out / "results.json").read_text())
    stdout = capsys.readouterr().out
    assert f"test accuracy: {results['test_accuracy']:.4f}" in stdout
    assert results["test_accuracy"] > 0.8  # one epoch of an MLP on the 8x8 digits; chance is 0.1
    with np.load(out / "model.npz") as weights:
        assert weights["fc1.weight"].shape == (300, 64) and weights["fc1.weight"].dtype == np.float64


def test_train_lenet5_on_digits_one_epoch(tmp_path):
    out = tmp_path / "lenet5"
    argv = train_argv(out, "--epochs", "1", "--optimizer", "adam", "--lr", "0.002", "--batch-size", "32",
                      "--limit-train", "640")
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["test_accuracy"] > 0.6  # 20 Adam steps reach ~0.78 here; chance is 0.1
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"]["n_train"] == 640


def test_resume_continues_and_matches_an_uninterrupted_run(tmp_path, capsys):
    common = ("--model", "lenet300_100", "--lr", "0.05", "--limit-train", "300", "--val-fraction", "0.2")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(train_argv(straight, "--epochs", "2", *common)) == 0
    assert main(train_argv(split, "--epochs", "1", *common)) == 0
    capsys.readouterr()
    assert main(train_argv(split, "--epochs", "2", "--resume", *common)) == 0
    stdout = capsys.readouterr().out
    assert "epoch 2/2" in stdout and "epoch 1/2" not in stdout  # only the new epoch is run
    log = [json.loads(line) for line in (split / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1] and log[1]["val_acc"] is not None
    with np.load(straight / "model.npz") as a, np.load(split / "model.npz") as b:
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])


def test_existing_run_needs_resume_and_matching_settings(tmp_path, capsys):
    out = tmp_path / "run"
    common = ("--model", "lenet300_100", "--limit-train", "64")
    assert main(train_argv(out, "--epochs", "1", *common)) == 0
    capsys.readouterr()
    assert main(train_argv(out, "--epochs", "1", *common)) == 1
    assert "already holds a run; pass --resume" in capsys.readouterr().err
    assert main(train_argv(out, "--epochs", "2", "--resume", "--lr", "0.1", *common)) == 1
    assert "settings differ from the saved run (--lr 0.01 -> 0.1)" in capsys.readouterr().err
