"""Atomic, pickle-free checkpoints: a nested dict of arrays and JSON values in one ``.npz`` file.

Format
------
A checkpoint is an ordinary NumPy ``.npz`` archive (a zip of ``.npy`` files, readable with
``np.load(path)``). Every ndarray found in the state becomes one archive member, named after its path in
the state (``model/conv1.weight``, ``optimizer/state/fc1.weight/momentum_buffer``); everything else —
numbers, strings, booleans, ``None``, lists, nested dicts with string keys, Python ints of any size (a
random generator's state) — goes into one JSON document stored as the member ``__meta__`` (UTF-8 bytes),
where each array is replaced by ``{"__ndarray__": "<member name>"}``.

Why no pickle: loading a pickle runs arbitrary code, so a checkpoint downloaded from somewhere would be a
security hole. Here arrays are read with ``allow_pickle=False`` and the rest is plain JSON; object arrays
are refused when saving. The price: tuples come back as lists, NumPy scalars as Python numbers.

Atomicity
---------
:func:`save_checkpoint` writes through :func:`refimpl._io.atomic_write`: a temporary file in the
destination's directory, flushed and ``os.fsync``-ed, then ``os.replace``-d over the destination (an atomic
rename on POSIX and Windows), then the directory fsynced. A crash at any moment leaves either the old
checkpoint or the new one, never a mix; the temporary file is removed if writing fails.

Integrity
---------
Every zip member carries a CRC-32 that is checked when it is read, and :func:`load_checkpoint` reads every
member, so truncated or corrupted files raise :class:`CheckpointError` instead of loading garbage. Its
message is one line starting ``checkpoint <path> is corrupt (<what was found>)``; the
:class:`~refimpl.train.trainer.Trainer` adds what to do (delete the file to restart the phase, or restore
it), which is what ``refimpl train`` / ``prune --resume`` print.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from refimpl._io import atomic_write

__all__ = ["CHECKPOINT_NAME", "CheckpointError", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

#: file name of the checkpoint the :class:`~refimpl.train.trainer.Trainer` keeps in its ``out_dir``
CHECKPOINT_NAME = "checkpoint.npz"

_FORMAT = "refimpl-checkpoint"
_VERSION = 1
_META = "__meta__"
_ARRAY_TAG = "__ndarray__"


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupted or not a refimpl checkpoint."""


# --- flattening: nested state <-> (JSON tree, {member name: array}) -----------------------------------
def _split(value, path: str, arrays: dict[str, np.ndarray]):
    """Return ``value`` with every ndarray moved into ``arrays`` and replaced by a tag."""
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError(f"state at {path or '<root>'!r} is an object array; checkpoints never pickle")
        name = path or "array"
        while name in arrays or name == _META:  # a key containing '/' could repeat a path
            name += "_"
        arrays[name] = value
        return {_ARRAY_TAG: name}
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"state keys must be strings (JSON), got {key!r} at {path or '<root>'!r}")
            if key == _ARRAY_TAG:
                raise ValueError(f"state key {_ARRAY_TAG!r} is reserved by the checkpoint format")
            out[key] = _split(item, f"{path}/{key}" if path else key, arrays)
        return out
    if isinstance(value, (list, tuple)):
        return [_split(item, f"{path}/{i}" if path else str(i), arrays) for i, item in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} in a checkpoint (at {path or '<root>'!r})")


def _join(value, arrays: dict[str, np.ndarray]):
    """Inverse of :func:`_split`."""
    if isinstance(value, dict):
        if set(value) == {_ARRAY_TAG}:
            return arrays[value[_ARRAY_TAG]]
        return {key: _join(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [_join(item, arrays) for item in value]
    return value


# --- public API ---------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically (see the module docstring for the format).

    Parameters
    ----------
    path : str or path-like
        Destination file (conventionally ``*.npz``); its directory must exist.
    state : dict
        Nested dicts (string keys) / lists of ndarrays and JSON values.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError
        If ``state`` holds something that is neither an array nor JSON-able (nothing is written).
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict, got {type(state).__name__}")
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    tree = _split(state, "", arrays)  # validates everything before a byte is written
    meta = json.dumps({"format": _FORMAT, "version": _VERSION, "state": tree})
    arrays[_META] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)

    atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` and return the nested state.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated, corrupted (CRC mismatch) or not a refimpl checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        if path.exists():
            raise CheckpointError(f"checkpoint {path} is corrupt (not a regular file but a directory or "
                                  "a special file)")
        raise CheckpointError(f"no checkpoint at {path}")
    corrupt = f"checkpoint {path} is corrupt"
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as err:  # unreadable (permissions, I/O error)
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err})") from err
    if not is_zip:  # also what a truncated file (no zip directory at its end) looks like
        raise CheckpointError(f"{corrupt} (bad zip: no zip directory; truncated or corrupted, or not an "
                              ".npz file)")
    try:
        with np.load(path, allow_pickle=False) as data:
            # Reading every member checks every CRC: corruption anywhere is caught here, not later.
            arrays = {name: data[name] for name in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{corrupt} (truncated or corrupted: {reason})") from err
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):  # np.load hands back raw bytes for a non-.npy member
            raise CheckpointError(f"{corrupt} (member {name!r} is not a NumPy array; not a refimpl "
                                  "checkpoint)")
    if _META not in arrays:
        raise CheckpointError(f"{corrupt} (an .npz file but not a refimpl checkpoint: no {_META!r} entry)")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{corrupt} (the metadata is corrupted: {err})") from err
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise CheckpointError(f"{corrupt} (not a refimpl checkpoint)")
    if meta.get("version") != _VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {meta.get('version')}, "
                              f"this refimpl reads version {_VERSION}")
    try:
        return _join(meta["state"], arrays)
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"{corrupt} (the metadata names a missing array {err})") from err


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    """Return the trainer's checkpoint ``out_dir/checkpoint.npz``, or ``None`` if there is none.

    A directory (or other non-file) of that name is returned too, so that loading it fails with a
    :class:`CheckpointError` instead of training silently starting over and failing at the first save.
    """
    path = Path(out_dir) / CHECKPOINT_NAME
    return path if path.is_file() or path.exists() else None
