"""Atomic writes (refimpl._io): content lands whole, and a failure anywhere leaves the old file alone."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from refimpl import _io
from refimpl._io import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text, current_umask


def test_writers_produce_the_content_and_return_the_path(tmp_path):
    assert atomic_write_text(tmp_path / "a.txt", "ünï\n") == tmp_path / "a.txt"
    assert (tmp_path / "a.txt").read_bytes() == "ünï\n".encode()
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    atomic_write_json(tmp_path / "c.json", {"b": 1, "a": [np.int64(2)]}, sort_keys=True,
                      default=lambda v: v.item())
    assert (tmp_path / "c.json").read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    atomic_write(tmp_path / "d.npz", lambda f: np.savez(f, w=np.arange(3.0)), binary=True)
    with np.load(tmp_path / "d.npz") as data:
        np.testing.assert_array_equal(data["w"], np.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.json", "d.npz"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failing_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, error):
    path = atomic_write_text(tmp_path / "f.txt", "old")

    def dies_midway(f):
        f.write("half of the new")
        raise error

    with pytest.raises(type(error)):
        atomic_write(path, dies_midway)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_failed_rename_keeps_the_old_file_and_leaves_no_temp_file(tmp_path, monkeypatch):
    path = atomic_write_text(tmp_path / "f.txt", "old")

    def broken_replace(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(_io.os, "replace", broken_replace)
    with pytest.raises(OSError, match="simulated crash"):
        atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_unserialisable_json_creates_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_json(tmp_path / "x.json", {"a": object()})
    assert list(tmp_path.iterdir()) == []


def test_data_then_rename_then_directory_are_synced(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(_io.os, "fsync", lambda fd: calls.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(_io.os, "replace", lambda a, b: calls.append("replace") or real_replace(a, b))
    atomic_write_text(tmp_path / "f.txt", "x")
    assert calls == ["fsync", "replace", "fsync"]
    assert (tmp_path / "f.txt").read_text() == "x"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    """mkstemp's 0600 must not leak into results: a file gets 0666 & ~umask like any other tool's."""
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        path = atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
