"""Tests for ``refimpl demo`` (refimpl.demo): settings file agreement and a quick end-to-end run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from refimpl.config import load_config
from refimpl.demo import demo_config, run_demo, time_forward

CONFIGS = Path(__file__).resolve().parents[1] / "paper_repro" / "configs"


def test_demo_settings_match_the_config_file():
    assert load_config(CONFIGS / "demo_digits.toml") == demo_config()
    quick = demo_config(quick=True)
    assert quick.pretrain.epochs < demo_config().pretrain.epochs
    structures = {(c.get("params", c.get("param")), c["structure"]) for c in demo_config().admm.constraints}
    assert ("conv", "filters") in structures and ("conv2.weight", "shapes") in structures


def test_time_forward_restores_mode():
    from refimpl.models import lenet5

    net = lenet5(input_size=8)
    times = time_forward(net, np.zeros((4, 1, 8, 8), np.float32), repeats=2)
    assert len(times) == 2 and all(t > 0 for t in times) and net.training


def test_quick_demo_prints_the_report_and_saves_the_figure(tmp_path, capsys):
    out = tmp_path / "demo"
    summary = run_demo(out, quick=True, progress=False, repeats=1)
    printed = capsys.readouterr().out
    for text in ("test accuracy", "measured speedup", "ideal MAC ratio", "threads", "parameters"):
        assert text in printed
    assert (out / "demo.png").stat().st_size > 10_000
    assert json.loads((out / "demo.json").read_text())["speedup"] == pytest.approx(summary["speedup"])
    assert summary["accuracy"]["compact"] == summary["accuracy"]["masked"]
    assert summary["compact_vs_masked_max_abs_diff"] < 1e-4
    assert summary["params"]["compact"] < summary["params"]["dense"]
    assert summary["ideal_speedup"] == pytest.approx(summary["macs"]["dense"] / summary["macs"]["compact"])
    # A rerun reuses the finished run: no phase is trained again, the weights stay the same bytes.
    weights = (out / "model_masked.npz").read_bytes()
    mtime = (out / "retrain" / "model.npz").stat().st_mtime_ns
    again = run_demo(out, quick=True, progress=False, repeats=1)
    assert "resuming" in capsys.readouterr().out
    assert (out / "model_masked.npz").read_bytes() == weights
    assert (out / "retrain" / "model.npz").stat().st_mtime_ns == mtime
    assert again["accuracy"] == summary["accuracy"]


@pytest.mark.parametrize("files", [
    {"notes.txt": "mine"},
    # refimpl demo used to rmtree a directory holding these two names, deleting everything else in it
    {"notes.txt": "mine", "config.json": "{}", "state.json": "{}"},
    {"notes.txt": "mine", "results.json": '{"accuracy": 0.99}'},
])
def test_demo_never_deletes_or_writes_a_directory_it_did_not_create(tmp_path, files, capsys):
    from refimpl.cli import main

    other = tmp_path / "other"
    other.mkdir()
    for name, text in files.items():
        (other / name).write_text(text)
    assert main(["demo", "--quick", "--no-progress", "--out", str(other)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("refimpl demo: error:") and "refimpl never writes into or deletes" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in other.iterdir()) == sorted(files)
    for name, text in files.items():
        assert (other / name).read_text() == text


def test_demo_refuses_an_earlier_run_of_other_settings(tmp_path, capsys):
    out = tmp_path / "demo"
    run_demo(out, quick=True, progress=False, repeats=1)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    with pytest.raises(ValueError, match="configuration differs"):
        run_demo(out, quick=False, progress=False)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
