"""A run's directory: what it holds, who may write it, and how a run picks up where it stopped.

:class:`RunDir` is the one object that touches the directory of a run. Its rules are the safety rules of
every refimpl command (``refimpl train``, ``prune``, ``demo``, ``sweep``):

* **Never delete what we did not create.** A directory that is not empty and holds no refimpl run (no
  ``state.json``) is refused with a one-line error; nothing in it is read, moved or removed. A run's own
  files are only ever replaced by newer versions of themselves (atomically, :mod:`refimpl._io`).
* **One writer at a time.** :meth:`RunDir.open` takes an exclusive ``fcntl.flock`` on ``run.lock`` for the
  life of the run; a second process gets a :class:`SetupError` naming the holder's PID. The kernel drops
  the lock when the holder dies, so a killed run never leaves a stale lock behind.
* **Check before writing.** :meth:`RunDir.check` is read-only; the engine calls it, then loads the data and
  builds and checks the model and its constraints, and only then :meth:`RunDir.open` creates anything.
  A failed setup therefore leaves a new directory absent and an old one as it was (still resumable).
* **Clean up after crashes.** A process killed while writing leaves ``.NAME.XXXXXXXX.tmp`` files of
  :func:`refimpl._io.atomic_write`; :meth:`RunDir.open` removes them (it holds the lock, so no writer is
  using them).

States (:attr:`RunDir.status`)
------------------------------
==========  ============================================================================================
``absent``  the directory does not exist
``empty``   it exists and is empty (``run.lock`` and ``run.log`` alone count as empty)
``partial`` it holds a run (a refimpl ``state.json``) that has not finished: resume it
``finished`` the run's report is written (``state.json`` has ``"finished": true``)
``foreign`` it holds other files: refused
==========  ============================================================================================
"""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path
from typing import Any

from refimpl._io import atomic_write_json

__all__ = ["LOCK_NAME", "LOG_NAME", "STATE_NAME", "RunDir", "SetupError", "run_status"]

STATE_NAME = "state.json"
LOCK_NAME = "run.lock"
#: A log a driver (``refimpl sweep``) may start writing before the run itself creates its files.
LOG_NAME = "run.log"
#: Files a directory may hold and still count as empty: the lock and the driver's log.
_COMPANIONS = (LOCK_NAME, LOG_NAME)
_STATE_VERSION = 1
#: What :func:`refimpl._io.atomic_write` leaves behind when killed: ``.<name>.<8 random chars>.tmp``.
_STALE_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class SetupError(ValueError):
    """The run cannot start with these settings (raised before any training; printed in one line).

    E.g. a foreign directory, a run already there, a changed config on resume, a run locked by another
    process, a constraint that does not fit the model.
    """


def run_status(path: str | os.PathLike) -> str:
    """Return ``"absent"``, ``"empty"``, ``"partial"``, ``"finished"`` or ``"foreign"`` (module docstring)."""
    return RunDir(path).status


class RunDir:
    """The directory of one run (see the module docstring for its rules).

    Parameters
    ----------
    path : path-like
        The run directory.

    Examples
    --------
    >>> import tempfile
    >>> d = RunDir(Path(tempfile.mkdtemp()) / "run")
    >>> d.status
    'absent'
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- reading ---------------------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """The directory's state (module docstring)."""
        if not self.path.exists():
            return "absent"
        if not self.path.is_dir():
            return "foreign"
        state = self.path / STATE_NAME
        if state.is_file():
            try:
                saved = json.loads(state.read_text())
            except (ValueError, OSError):
                saved = None
            if isinstance(saved, dict) and "version" in saved and "phases" in saved:
                return "finished" if saved.get("finished") else "partial"
            return "foreign"  # a state.json that refimpl did not write: not ours to touch
        if any(p.name not in _COMPANIONS for p in self.path.iterdir()):
            return "foreign"
        return "empty"

    def saved_config(self) -> dict | None:
        """Return the configuration the run was started with (``config.json``), or ``None``."""
        path = self.path / "config.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def read_state(self) -> dict:
        """``state.json`` (phases done, their outputs and metrics); refused if written by another version."""
        path = self.path / STATE_NAME
        state = json.loads(path.read_text())
        if state.get("version") != _STATE_VERSION:
            raise SetupError(f"{path} has state version {state.get('version')}, expected {_STATE_VERSION}")
        return state

    def check(self, config: dict, *, resume: bool, defaults: dict | None = None) -> None:
        """Raise :class:`SetupError` if a run with ``config`` (a plain dict) may not start here. Read-only.

        A fresh run needs an absent or empty directory; ``resume`` also accepts a run of the same
        configuration (and starts afresh where there is none). ``defaults`` (same nesting) fills keys the
        saved configuration lacks — settings added to refimpl after the run started — so a run saved by
        an older version resumes as long as the new settings keep their defaults.
        """
        status = self.status
        if status == "foreign":
            raise SetupError(f"{self.path} is not empty and holds no refimpl run; refimpl never writes into "
                             "or deletes a directory it did not create: choose a new or empty directory")
        if status in ("partial", "finished"):
            if not resume:
                raise SetupError(f"{self.path} already holds a run; resume it or choose another output "
                                 "directory")
            changed = self.changed_settings(config, defaults)
            if changed:
                raise SetupError(f"cannot resume {self.path}: the configuration differs from the saved one "
                                 f"in {', '.join(changed)}")

    def changed_settings(self, config: dict, defaults: dict | None = None) -> list[str]:
        """Return the dotted keys where ``config`` differs from the saved configuration ([] if none).

        ``defaults`` fills keys the saved configuration lacks (settings added to refimpl after the run
        started), so only a setting that was really changed counts.
        """
        saved = self.saved_config()
        if saved is None:
            return []
        return dotted_diff(saved if defaults is None else _fill(saved, defaults), config)

    # --- writing ---------------------------------------------------------------------------------------
    def open(self, config: dict, config_toml: str, *, resume: bool, defaults: dict | None = None) -> dict:
        """Create the directory if needed, take the lock, clean stale temporaries, save the config.

        Returns the run's state (the saved one when resuming, else a fresh one, written). Call
        :meth:`close` (or use the object as a context manager after ``open``) to release the lock.
        """
        self.check(config, resume=resume, defaults=defaults)
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self.check(config, resume=resume, defaults=defaults)  # again: no other process can change it now
            self.remove_stale_temporaries()
            if (self.path / STATE_NAME).is_file():
                state = self.read_state()
            else:
                state = {"version": _STATE_VERSION, "finished": False, "phases": {}}
                atomic_write_json(self.path / "config.json", config)
                from refimpl._io import atomic_write_text

                atomic_write_text(self.path / "config.toml", config_toml)
                self.write_state(state)
        except BaseException:
            self.close()
            raise
        return state

    def write_state(self, state: dict) -> None:
        """Rewrite ``state.json`` atomically."""
        atomic_write_json(self.path / STATE_NAME, state)

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete the temporary files killed writers left anywhere in the run; return their paths."""
        removed = []
        for path in self.path.rglob(".*.tmp"):
            if path.is_file() and _STALE_TEMPORARY.match(path.name):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def _lock(self) -> None:
        import fcntl

        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise SetupError(f"{self.path} is in use by another refimpl process (PID {holder}); "
                                 "wait for it to finish or stop it") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def close(self) -> None:
        """Release the lock (the lock file stays; an unlocked ``run.lock`` means nothing)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _fill(saved: Any, defaults: Any) -> Any:
    """Return ``saved`` with the keys it lacks taken from ``defaults`` (nested dicts, recursively)."""
    if not (isinstance(saved, dict) and isinstance(defaults, dict)):
        return saved
    out = {key: _fill(value, defaults.get(key)) for key, value in saved.items()}
    for key, value in defaults.items():
        out.setdefault(key, value)
    return out


def dotted_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two nested dicts differ (``["admm.epochs"]``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += dotted_diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
