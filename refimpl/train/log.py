"""A metrics log in JSON lines: one JSON object per line, appended as training goes.

JSON lines survive crashes well: a record is one ``write`` of one line, so an interrupted run leaves at
worst an incomplete **last** line, which :func:`read_records` ignores (with a warning). Any tool reads it
(``pandas.read_json(path, lines=True)``, ``jq``, a three-line loop). NumPy scalars and 0-d arrays are
written as plain numbers; NaN and infinities as ``NaN`` / ``Infinity`` (Python's JSON dialect).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from refimpl._io import atomic_write_text

__all__ = ["append_record", "filter_records", "read_records", "to_jsonable", "write_records"]


def to_jsonable(value):
    """Convert NumPy scalars / small arrays (recursively, inside dicts and lists) to JSON-able values.

    Raises ``TypeError`` for values JSON cannot hold (objects, non-string dict keys).
    """
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"metric names must be strings, got {key!r}")
            out[key] = to_jsonable(item)
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot write a {type(value).__name__} to a JSON log: {value!r}")


def append_record(path: str | os.PathLike, record: dict) -> None:
    """Append ``record`` as one JSON line to ``path`` (created if missing) and flush it to the OS."""
    line = json.dumps(to_jsonable(record), sort_keys=False) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def read_records(path: str | os.PathLike) -> list[dict]:
    """Read every complete record of a JSON-lines log.

    A last line without its newline (a write cut off by a crash) is skipped with a ``RuntimeWarning``;
    a malformed complete line raises ``ValueError`` naming the line number. A missing file gives ``[]``.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines[-1]:
        warnings.warn(f"{path}: ignoring an incomplete last line (interrupted write?)", RuntimeWarning,
                      stacklevel=2)
    records = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not a JSON record ({err})") from None
    return records


def write_records(path: str | os.PathLike, records: Iterable[dict]) -> None:
    """Replace the log at ``path`` by ``records``, atomically (:func:`refimpl._io.atomic_write`)."""
    text = "".join(json.dumps(to_jsonable(record)) + "\n" for record in records)
    atomic_write_text(path, text)


def filter_records(path: str | os.PathLike, keep: Callable[[dict], bool]) -> None:
    """Rewrite the log at ``path`` keeping only the records for which ``keep(record)`` is true."""
    if Path(path).exists():
        write_records(path, [r for r in read_records(path) if keep(r)])
