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
    assert err.startswith("refimpl train: error: 'pretrain.nesterov' in <overrides>: Nesterov momentum "
                          "applies to optimizer 'sgd' only")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    # A momentum the optimizer would refuse is refused by the config's validation, before anything runs.
    assert main(train_argv(tmp_path / "r", "--optimizer", "sgd", "--momentum", "1.5")) == 1
    assert "'pretrain.momentum' in <overrides>" in capsys.readouterr().err
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
    assert not (tmp_path / "r").exists()


def test_train_options_default_to_the_config_schema():
    """Options not given are None (not given): the defaults live in refimpl.config alone."""
    from refimpl.config import PretrainConfig

    parser = build_parser()
    args = parser.parse_args(["train", "--out", "runs/x"])
    for option in ("model", "dataset", "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov",
                   "weight_decay", "schedule", "seed", "limit_train", "dtype", "config"):
        assert getattr(args, option) is None, option
    assert args.progress and not args.resume and args.overrides == []
    helps = {a.dest: a.help for a in parser._subparsers._group_actions[0].choices["train"]._actions}
    assert f"default: {PretrainConfig().lr}" in helps["lr"]
    assert f"default: {PretrainConfig().optimizer}" in helps["optimizer"]


# --- smoke runs --------------------------------------------------------------------------------------


def test_train_writes_every_file_and_learns(tmp_path, capsys):
    out = tmp_path / "run"
    argv = train_argv(out, "--model", "lenet300_100", "--epochs", "1", "--optimizer", "sgd", "--lr", "0.05",
                      "--dtype", "float64")
    assert main(argv) == 0
    for name in ("config.toml", "config.json", "state.json", "report.txt", "report.json", "results.json",
                 "model_masked.npz", "pretrain/log.jsonl", "pretrain/checkpoint.npz", "pretrain/model.npz"):
        assert (out / name).is_file(), name
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "none" and config["model"]["name"] == "lenet300_100"
    assert config["pretrain"]["optimizer"] == "sgd" and config["pretrain"]["lr"] == 0.05
    assert config["pretrain"]["batch_size"] == 64  # not given: the schema's default
    report = json.loads((out / "report.json").read_text())
    assert report["n_train"] == 1437
    assert report["params"]["dense"] == 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    log = [json.loads(line) for line in (out / "pretrain" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0]
    results = json.loads((out / "results.json").read_text())
    stdout = capsys.readouterr().out
    assert f"test accuracy: {results['accuracy_dense']:.4f}" in stdout
    assert results["accuracy_dense"] > 0.8  # one epoch of an MLP on the 8x8 digits; chance is 0.1
    with np.load(out / "pretrain" / "model.npz") as weights:
        assert weights["fc1.weight"].shape == (300, 64) and weights["fc1.weight"].dtype == np.float64


def test_train_lenet5_on_digits_one_epoch_with_the_default_optimizer(tmp_path):
    out = tmp_path / "lenet5"
    argv = train_argv(out, "--epochs", "1", "--batch-size", "32", "--limit-train", "640")
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["accuracy_dense"] > 0.6  # 20 Adam steps (lr 1e-3, the schema's default); chance is 0.1
    config = json.loads((out / "config.json").read_text())
    assert config["pretrain"]["optimizer"] == "adam" and config["data"]["limit_train"] == 640
    assert json.loads((out / "report.json").read_text())["n_train"] == 640


def test_train_takes_a_config_file_and_forces_method_none(tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('method = "admm"\n[data]\nname = "synthetic"\nlimit_train = 64\n[pretrain]\nepochs = 1\n'
                    '[[admm.constraints]]\nparams = "conv"\nstructure = "filters"\nsparsity = 0.5\n')
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out), "--no-progress", "--lr", "0.01"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "none" and config["data"]["name"] == "synthetic"
    assert config["pretrain"]["lr"] == 0.01
    assert list(json.loads((out / "state.json").read_text())["phases"]) == ["pretrain"]


def test_resume_continues_an_interrupted_run_and_matches_an_uninterrupted_one(tmp_path, monkeypatch, capsys):
    from refimpl.train.trainer import Trainer

    common = ("--model", "lenet300_100", "--optimizer", "sgd", "--lr", "0.05", "--limit-train", "300",
              "--val-fraction", "0.2", "--epochs", "3")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(train_argv(straight, *common)) == 0

    class Interrupted(Exception):
        pass

    original = Trainer._run_epoch

    def crash_after_one_epoch(self, epoch):
        original(self, epoch)
        if self.epoch == 1:
            raise Interrupted
    monkeypatch.setattr(Trainer, "_run_epoch", crash_after_one_epoch)
    with pytest.raises(Interrupted):  # --debug: the exception propagates instead of one error line
        main(train_argv(split, "--debug", *common))
    monkeypatch.undo()
    capsys.readouterr()
    assert main(train_argv(split, *common)) == 1
    assert "already holds a run; resume it" in capsys.readouterr().err
    assert main(train_argv(split, "--resume", *common)) == 0
    log = [json.loads(line) for line in (split / "pretrain" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [0, 1, 2] and log[1]["val_acc"] is not None
    with np.load(straight / "pretrain" / "model.npz") as a, np.load(split / "pretrain" / "model.npz") as b:
        for name in a.files:
            assert a[name].tobytes() == b[name].tobytes()


def test_existing_run_needs_resume_and_matching_settings(tmp_path, capsys):
    out = tmp_path / "run"
    common = ("--model", "lenet300_100", "--limit-train", "64")
    assert main(train_argv(out, "--epochs", "1", *common)) == 0
    capsys.readouterr()
    assert main(train_argv(out, "--epochs", "1", *common)) == 1
    assert "already holds a run; resume it" in capsys.readouterr().err
    assert main(train_argv(out, "--epochs", "1", "--resume", "--lr", "0.1", *common)) == 1
    assert "configuration differs from the saved one in pretrain.lr" in capsys.readouterr().err


def _write_npz(path, rng, *, nan=False):
    x_train = rng.integers(0, 256, size=(120, 12, 12), dtype=np.uint8)  # NHW uint8, as users often have
    y_train = (x_train[:, :6].mean(axis=(1, 2)) > x_train[:, 6:].mean(axis=(1, 2))).astype(np.int64)
    x_test = rng.standard_normal((40, 1, 12, 12)).astype(np.float32)   # NCHW float for the test split
    x_train = x_train.astype(np.float32)[:, None] / 255
    if nan:
        x_test[3, 0, 2, 2] = np.nan
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=rng.integers(0, 2, size=40))


def test_train_and_prune_take_a_users_npz_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "mine.npz"
    _write_npz(data, rng)
    out = tmp_path / "run"
    assert main(["train", "--dataset", "npz", "--data-path", str(data), "--epochs", "1", "--out", str(out),
                 "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["name"] == "npz" and config["data"]["path"] == str(data)
    report = json.loads((out / "report.json").read_text())
    assert report["n_train"] == 120 and report["n_test"] == 40
    with np.load(out / "pretrain" / "model.npz") as weights:
        assert weights["fc2.weight"].shape[0] == 2  # two classes found in the labels


def test_a_bad_npz_file_is_one_line_naming_the_problem(tmp_path, capsys):
    data = tmp_path / "bad.npz"
    _write_npz(data, np.random.default_rng(0), nan=True)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "npz", "--data-path", str(data), "--out", str(out), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("refimpl train: error:") and "x_test" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
