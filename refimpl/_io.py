"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one.

Every result, log, checkpoint and report refimpl writes goes through :func:`atomic_write`:

1. write into a temporary file **in the destination's directory** (a rename is only atomic within one
   file system, and the destination's directory is the one place sure to be on the same one);
2. flush and ``os.fsync`` it, so the data is on disk *before* the rename can make it visible — otherwise
   a power loss right after the rename may leave a file of the right name full of zeros;
3. ``os.replace`` it over the destination (an atomic rename on POSIX and on Windows);
4. ``fsync`` the directory, so the rename itself survives a power loss (POSIX; skipped where a
   directory cannot be opened).

The file gets the mode ``0666 & ~umask`` like any file a program creates (``mkstemp`` alone would leave
it ``0600``).

If anything fails — including ``KeyboardInterrupt`` in the middle of the write — the temporary file is
removed and the destination is left untouched.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "current_umask"]


def atomic_write(path: str | os.PathLike, write: Callable[[IO], Any], *, binary: bool = False) -> Path:
    """Call ``write(f)`` on a temporary file, then atomically move it to ``path`` (see the module docs).

    Parameters
    ----------
    path : str or path-like
        Destination file; its directory must exist.
    write : callable
        Called once with the open temporary file; writes the whole content (its return value is ignored).
        Use this form for writers that want a file object, e.g. ``lambda f: np.savez(f, **arrays)``.
    binary : bool, default False
        Open the temporary file in binary mode (``"wb"``) instead of UTF-8 text mode.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; a result file should get the mode any other tool would give it.
        os.chmod(tmp, 0o666 & ~current_umask())
        with (os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return ``path``."""
    return atomic_write(path, lambda f: f.write(data), binary=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically, UTF-8 encoded; return ``path``."""
    return atomic_write(path, lambda f: f.write(text))


def atomic_write_json(path: str | os.PathLike, value: Any, *, sort_keys: bool = False,
                      default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``value`` to ``path`` atomically as indented JSON (2 spaces) ending in a newline.

    ``sort_keys`` and ``default`` (the converter for values JSON does not know) are passed to
    :func:`json.dumps`. The value is serialised before the file is created, so a ``TypeError`` for an
    unserialisable value leaves nothing behind.
    """
    text = json.dumps(value, indent=2, sort_keys=sort_keys, default=default) + "\n"
    return atomic_write_text(path, text)


def current_umask() -> int:
    """Return the process's umask without changing it (Linux: ``/proc/self/status``).

    Elsewhere the classic ``os.umask`` read-and-restore is used, which sets the mask for an instant;
    that is only visible to another thread creating a file in that instant.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_directory(directory: Path) -> None:
    """Persist a rename in ``directory`` (POSIX); silently skipped where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
