"""Checkpoints: round trip, no pickle, atomic replacement, clear errors on damaged files; the JSON log."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from refimpl.train import checkpoint as ckpt_module
from refimpl.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from refimpl.train.log import append_record, filter_records, read_records


def _state(rng):
    gen = np.random.default_rng(7)
    return {
        "model": {"conv1.weight": rng.normal(size=(4, 3, 3, 3)), "bn.running_mean": np.zeros(4, np.float32),
                  "mask": rng.random((5, 5)) > 0.5},
        "optimizer": {"type": "SGD", "hyperparameters": {"lr": 0.1, "nesterov": False},
                      "state": {"conv1.weight": {"momentum_buffer": rng.normal(size=(4, 3, 3, 3))}}},
        "position": {"epoch": 3, "step": 120},
        "rng": gen.bit_generator.state,  # Python ints of 128 bits
        "hooks": [{"rho": 1.3e-3, "Z": {"fc.weight": rng.normal(size=(2, 3))}, "count": np.int64(5)}, {}],
        "history": [{"epoch": 0, "val_acc": None, "loss": float("inf")}],
        "text": "ünïcode / slashes",
    }


def test_round_trip_preserves_arrays_bitwise_and_json_values(tmp_path, rng):
    state = _state(rng)
    path = save_checkpoint(tmp_path / "c.npz", state)
    loaded = load_checkpoint(path)
    for key in ("conv1.weight", "bn.running_mean", "mask"):
        np.testing.assert_array_equal(loaded["model"][key], state["model"][key])
        assert loaded["model"][key].dtype == state["model"][key].dtype
    np.testing.assert_array_equal(loaded["optimizer"]["state"]["conv1.weight"]["momentum_buffer"],
                                  state["optimizer"]["state"]["conv1.weight"]["momentum_buffer"])
    assert loaded["optimizer"]["hyperparameters"] == {"lr": 0.1, "nesterov": False}
    assert loaded["position"] == {"epoch": 3, "step": 120}
    assert loaded["rng"] == state["rng"]
    gen = np.random.default_rng()
    gen.bit_generator.state = loaded["rng"]
    assert gen.random() == np.random.default_rng(7).random()
    assert loaded["hooks"][0]["rho"] == 1.3e-3 and loaded["hooks"][0]["count"] == 5
    assert loaded["hooks"][1] == {}
    np.testing.assert_array_equal(loaded["hooks"][0]["Z"]["fc.weight"], state["hooks"][0]["Z"]["fc.weight"])
    assert loaded["history"] == [{"epoch": 0, "val_acc": None, "loss": float("inf")}]
    assert loaded["text"] == "ünïcode / slashes"


def test_file_is_a_plain_npz_without_pickles(tmp_path, rng):
    path = save_checkpoint(tmp_path / "c.npz", _state(rng))
    with np.load(path, allow_pickle=False) as data:  # would raise if any member needed pickle
        assert "model/conv1.weight" in data.files
        assert data["model/conv1.weight"].shape == (4, 3, 3, 3)
        meta = json.loads(data["__meta__"].tobytes())
    assert meta["format"] == "refimpl-checkpoint"
    assert meta["state"]["model"]["conv1.weight"] == {"__ndarray__": "model/conv1.weight"}


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        ({"x": np.array([object()])}, TypeError, "object array"),
        ({"x": {1: 2}}, TypeError, "keys must be strings"),
        ({"x": {1.5}}, TypeError, "cannot store a set"),
        ({"__ndarray__": 1}, ValueError, "reserved"),
    ],
)
def test_unstorable_state_is_rejected_before_writing(tmp_path, bad, error, match):
    path = tmp_path / "c.npz"
    with pytest.raises(error, match=match):
        save_checkpoint(path, bad)
    assert list(tmp_path.iterdir()) == []


def test_colliding_member_names_stay_distinct(tmp_path):
    state = {"a/b": np.array([1.0]), "a": {"b": np.array([2.0])}}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.npz", state))
    assert loaded["a/b"][0] == 1.0 and loaded["a"]["b"][0] == 2.0


def test_failed_replace_keeps_previous_checkpoint_and_no_temp_file(tmp_path, rng, monkeypatch):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.arange(3.0)})

    def broken_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(ckpt_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, {"w": np.full(3, 9.0)})
    monkeypatch.undo()
    np.testing.assert_array_equal(load_checkpoint(path)["w"], np.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_write_failing_midway_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    save_checkpoint(path, {"w": np.arange(3.0)})
    real_savez = np.savez

    def savez_that_dies(file, **arrays):
        file.write(b"PK\x03\x04 half a zip")  # some bytes reach the temp file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", savez_that_dies)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": np.full(3, 9.0)})
    monkeypatch.setattr(np, "savez", real_savez)
    np.testing.assert_array_equal(load_checkpoint(path)["w"], np.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]


def test_fsync_happens_before_replace(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(ckpt_module.os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(ckpt_module.os, "replace", lambda a, b: calls.append("replace") or real_replace(a, b))
    save_checkpoint(tmp_path / "c.npz", {"w": np.ones(2)})
    assert calls[:2] == ["fsync", "replace"]


def test_truncated_checkpoint_raises_clear_error(tmp_path, rng):
    path = save_checkpoint(tmp_path / "c.npz", _state(rng))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_flipped_byte_in_array_data_is_detected(tmp_path):
    weights = np.linspace(-1.0, 1.0, 4096)
    path = save_checkpoint(tmp_path / "c.npz", {"w": weights})
    data = bytearray(path.read_bytes())
    offset = bytes(data).find(weights[2000:2002].tobytes())  # a byte inside the stored array
    assert offset > 0
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", w=np.ones(2))
    with pytest.raises(CheckpointError, match="not a refimpl checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "text.npz")
    with zipfile.ZipFile(tmp_path / "meta.npz", "w") as z:
        z.writestr("__meta__.npy", b"not an npy file")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "meta.npz")
    assert issubclass(CheckpointError, ValueError)


def test_latest_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path / "checkpoint.npz", {"w": np.ones(1)})
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint.npz"


# --- the JSON-lines log --------------------------------------------------------------------------------
def test_log_round_trip_numpy_values_and_filter(tmp_path):
    path = tmp_path / "log.jsonl"
    append_record(path, {"epoch": 0, "loss": np.float32(0.5), "acc": np.float64(0.25), "n": np.int64(3)})
    append_record(path, {"epoch": 1, "per_layer": np.array([1.0, 2.0]), "val": None})
    records = read_records(path)
    assert records == [{"epoch": 0, "loss": 0.5, "acc": 0.25, "n": 3},
                       {"epoch": 1, "per_layer": [1.0, 2.0], "val": None}]
    filter_records(path, lambda r: r["epoch"] < 1)
    assert read_records(path) == records[:1]


def test_log_ignores_a_cut_off_last_line_and_rejects_garbage(tmp_path):
    path = tmp_path / "log.jsonl"
    append_record(path, {"epoch": 0})
    with open(path, "a") as f:
        f.write('{"epoch": 1, "lo')
    with pytest.warns(RuntimeWarning, match="incomplete last line"):
        assert read_records(path) == [{"epoch": 0}]
    path.write_text('{"epoch": 0}\nnot json\n')
    with pytest.raises(ValueError, match="line 2"):
        read_records(path)
    assert read_records(tmp_path / "none.jsonl") == []
    with pytest.raises(TypeError, match="cannot write a object"):
        append_record(path, {"x": object()})
