"""Set-up shared by the notebooks under ``notebooks/``: the checkout, where figures go, cached results.

The notebooks are jupytext ``py:percent`` sources executed from ``notebooks/`` (by CI) or from the
checkout's top directory (by hand). Each reads results from ``paper_repro/results/`` and writes figures
to ``figures/``, both found from :func:`repo_root`. In **smoke mode** (``REFIMPL_SMOKE=1``, set by
``tests/test_notebooks.py``) a notebook runs on tiny settings whose plots must never replace the real
figures, so :func:`figure_dir` hands out a fresh temporary directory instead.

A notebook that shows a sweep too slow to run inside it (e.g. the ρ-schedule sweep and the 3-seed
magnitude control of notebook 02, ``paper_repro/sweeps/course``) reads its rows with
:func:`cached_results` and averages the seeds with :func:`seed_summary`; before the sweep has run,
:func:`cached_results` returns ``None`` and the notebook says so.

Example
-------
>>> from refimpl.notebook import figure_dir
>>> FIG_DIR = figure_dir(smoke=True)  # smoke mode: a fresh temporary directory
>>> FIG_DIR.is_dir(), FIG_DIR.name.startswith("refimpl-figures-")
(True, True)
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["cached_results", "figure_dir", "repo_root", "seed_summary"]


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


def cached_results(name: str, root: str | os.PathLike | None = None) -> list[dict[str, Any]] | None:
    """Return the rows of a sweep's results, or ``None`` when the sweep has not been run.

    Looked for under ``<root>/paper_repro/results``, in this order:

    1. ``<name>.json``, the table ``refimpl results DIR --output <name>.json`` writes (small; what a
       notebook should read);
    2. the sweep directory ``<name>/`` itself (its ``sweep.json``; runs still going or failed are rows too,
       with their ``status``).

    Parameters
    ----------
    name : str
        The sweep's place under ``paper_repro/results``, e.g. ``"course/rho_schedule"``.
    root : str or path-like, optional
        The checkout's top directory; default :func:`repo_root`.

    Returns
    -------
    list of dict or None
        One row per run (columns: :mod:`refimpl.engine.results`), or ``None`` if neither exists.

    Raises
    ------
    ValueError
        ``name`` is empty, absolute or leaves ``paper_repro/results`` (``..``).
    """
    from refimpl.engine.results import load_results

    if not isinstance(name, str):
        raise TypeError(f"name must be a string such as 'course/rho_schedule', got {name!r}")
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts or name.endswith(".json"):
        raise ValueError(f"name must be a relative path under paper_repro/results without '..' or '.json', "
                         f"got {name!r}")
    results = (repo_root() if root is None else Path(root)) / "paper_repro" / "results"
    if (results / f"{name}.json").is_file():
        return load_results(results / f"{name}.json")
    if (results / name / "sweep.json").is_file():
        return load_results(results / name)
    return None


def seed_summary(rows: Sequence[Mapping[str, Any]], by: Sequence[str],
                 value: str = "accuracy.final") -> list[dict[str, Any]]:
    """Average ``value`` over the seeds: one row per group of equal ``by`` columns, in first-seen order.

    Only finished runs with a value count (a row without ``status`` counts as finished); each summary row
    holds the ``by`` columns, ``n`` (runs averaged), ``missing`` (runs of the group left out), ``mean``,
    ``std`` (sample standard deviation, ``n - 1`` in the denominator; ``None`` for one run), ``min`` and
    ``max`` (``None`` when ``n = 0``).

    Examples
    --------
    >>> rows = [{"variant": "a", "seed": s, "accuracy.final": v} for s, v in enumerate([1.0, 0.5])]
    >>> rows.append({"variant": "a", "seed": 2, "accuracy.final": None, "status": "failed"})
    >>> (row,) = seed_summary(rows, ["variant"])
    >>> row["variant"], row["n"], row["missing"], row["mean"], round(row["std"], 4), row["min"], row["max"]
    ('a', 2, 1, 0.75, 0.3536, 0.5, 1.0)
    """
    if isinstance(by, str) or not isinstance(by, Sequence) or not by or \
            not all(isinstance(k, str) for k in by):
        raise TypeError(f"by must be a non-empty list of column names, got {by!r}")
    groups: dict[tuple, list] = {}
    missing: dict[tuple, int] = {}
    for row in rows:
        for key in (*by, value):
            if key not in row:
                raise ValueError(f"rows have no column {key!r} (they have {sorted(row)})")
        group = tuple(row[k] for k in by)
        groups.setdefault(group, [])
        missing.setdefault(group, 0)
        x = row[value]
        if row.get("status", "finished") == "finished" and x is not None:
            groups[group].append(float(x))
        else:
            missing[group] += 1
    out = []
    for group, xs in groups.items():
        n = len(xs)
        mean = sum(xs) / n if n else None
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
        out.append(dict(zip(by, group, strict=True)) | {"n": n, "missing": missing[group], "mean": mean,
                                                        "std": std, "min": min(xs) if n else None,
                                                        "max": max(xs) if n else None})
    return out
