"""Set-up shared by the notebooks under ``notebooks/``: where the checkout is and where figures go.

The notebooks are jupytext ``py:percent`` sources executed from ``notebooks/`` (by CI) or from the
checkout's top directory (by hand). Each reads results from ``paper_repro/results/`` and writes figures
to ``figures/``, both found from :func:`repo_root`. In **smoke mode** (``REFIMPL_SMOKE=1``, set by
``tests/test_notebooks.py``) a notebook runs on tiny settings whose plots must never replace the real
figures, so :func:`figure_dir` hands out a fresh temporary directory instead.

Example
-------
>>> from refimpl.notebook import figure_dir
>>> FIG_DIR = figure_dir(smoke=True)  # smoke mode: a fresh temporary directory
>>> FIG_DIR.is_dir(), FIG_DIR.name.startswith("refimpl-figures-")
(True, True)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["figure_dir", "repo_root"]


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """Return the checkout's top directory: the first of ``start`` and its parents holding ``pyproject.toml``.

    Parameters
    ----------
    start : str or path-like, optional
        Where to start looking; default the current working directory (a notebook runs from
        ``notebooks/`` or from the top directory).

    Returns
    -------
    pathlib.Path
        The directory found, or ``start`` itself (resolved) when no parent holds ``pyproject.toml`` (an
        installed copy run elsewhere: results and figures are then looked for there).
    """
    here = Path.cwd() if start is None else Path(start)
    here = here.resolve()
    for path in (here, *here.parents):
        if (path / "pyproject.toml").exists():
            return path
    return here


def figure_dir(smoke: bool, root: str | os.PathLike | None = None) -> Path:
    """Return the directory a notebook saves its figures in, created if needed.

    Parameters
    ----------
    smoke : bool
        Smoke mode (CI): a new temporary directory, so tiny-setting plots never overwrite the committed
        figures. Otherwise ``<root>/figures``.
    root : str or path-like, optional
        The checkout's top directory; default :func:`repo_root`.

    Returns
    -------
    pathlib.Path
        The existing directory.
    """
    if smoke:
        return Path(tempfile.mkdtemp(prefix="refimpl-figures-"))
    directory = (repo_root() if root is None else Path(root)) / "figures"
    directory.mkdir(parents=True, exist_ok=True)
    return directory
