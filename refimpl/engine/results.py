"""One table of results: a row per run, read from the files runs leave behind (``refimpl results``).

:func:`collect_results` reads

* a **sweep directory** (``sweep.json``, :mod:`refimpl.engine.sweep`): one row per run of the manifest, in
  its order, with every grid key (and ``variant``) as a column;
* a **run directory** (``state.json``): one row;
* a **directory of run directories**: one row per run, by name.

Columns, in this order (a run that has not finished has its status and its settings, and ``None``
metrics):

===============================  ===================================================================
``run``                          the run's name (its directory's name)
grid keys                        the sweep's values of this run (``variant``, ``method``, ``sparsity``...)
``dataset``, ``model``,          from the run's config; ``structure`` lists the constraints' structures
``method``, ``structure``,       in order, ``+``-joined (``filters+shapes``)
``seed``
``sparsity.<param>``             achieved sparsity of each pruned parameter (share of zero weights kept
                                 zero by its mask)
``sparsity.overall``             over all masked parameters
``accuracy.dense``,              test accuracy after pretraining, ADMM, the hard cut, of the final
``accuracy.after_admm``,         (masked) weights and of the compact model
``accuracy.after_hard_prune``,
``accuracy.final``,
``accuracy.compact``
``params.dense``,                parameter counts: all, nonzero after pruning, of the compact model
``params.nonzero``,
``params.compact``
``macs.dense``, ``macs.effective``,  multiply-accumulates per image: dense, skipping zero weights, compact
``macs.compact``
``compression``                  ``params.dense / params.nonzero``
``storage.bits``,                bits that store the final weights (:func:`refimpl.metrics.storage_report`:
``storage.bits_fp16``,           free, unified and pruned blocks and a block-kind map; float32 / float16
``storage.compression``          values; compression = dense float32 bits / ``storage.bits``): the x axis
                                 of curves at equal storage
``seconds``                      wall time of the run's phases (summed over its invocations)
``status``                       ``finished``, ``partial`` (started, interrupted), ``failed`` (listed in
                                 the sweep's ``failures.json``) or ``pending`` (not started)
===============================  ===================================================================

:func:`format_results` writes rows as CSV (the standard :mod:`csv` module), JSON or a Markdown pipe
table; :func:`load_results` reads a directory, or a CSV/JSON file written by ``refimpl results
--output``, back into rows (plain dicts: ``pandas.DataFrame(rows)`` if you like).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from refimpl.engine.rundir import RunDir, run_status
from refimpl.engine.sweep import FAILURES_NAME, MANIFEST_NAME, _is_finished

__all__ = ["COLUMNS", "RESULT_FORMATS", "budget_curve", "collect_results", "final_val_accuracy",
           "format_for_path", "format_results", "load_results"]

RESULT_FORMATS = ("csv", "json", "markdown")

def _accuracy_columns() -> dict[str, tuple[str, str]]:
    """Return a column per accuracy the phase table reports (``accuracy.after_ssl`` ...) and the final one."""
    from refimpl.engine.phases import PHASES

    keys = [k.accuracy for k in PHASES.values() if k.accuracy and k.accuracy != "compact"]
    return {**{f"accuracy.{key}": ("accuracy", key) for key in keys},
            "accuracy.final": ("accuracy", "masked"), "accuracy.compact": ("accuracy", "compact")}


#: The fixed metric columns after the per-layer sparsities: column -> path in ``report.json``.
COLUMNS = {
    "sparsity.overall": ("sparsity", "overall"),
    **_accuracy_columns(),
    "params.dense": ("params", "dense"),
    "params.nonzero": ("params", "nonzero"),
    "params.compact": ("params", "compact"),
    "macs.dense": ("macs", "dense"),
    "macs.effective": ("macs", "effective"),
    "macs.compact": ("macs", "compact"),
    "compression": ("compression",),
    "storage.bits": ("storage", "bits"),
    "storage.bits_fp16": ("storage", "bits_fp16"),
    "storage.compression": ("storage", "compression"),
    "seconds": ("seconds",),
}
_DESCRIPTIVE = ("dataset", "model", "method", "structure", "seed")
#: Columns computed from a report's phase rows (:func:`final_val_accuracy`, :func:`budget_curve`).
_DERIVED = ("accuracy.val_final", "budget_curve")
# Columns that stay strings when a CSV file is read back (a run named "1" is not the number 1).
_TEXT_COLUMNS = ("run", "status", "dataset", "model", "method", "structure")
_SUFFIXES = {".csv": "csv", ".json": "json", ".md": "markdown", ".markdown": "markdown"}


# --- collecting ----------------------------------------------------------------------------------------

def _status(path: Path, failed: set[str], name: str) -> str:
    if _is_finished(path):
        return "finished"
    if name in failed:
        return "failed"
    return "partial" if run_status(path) == "partial" else "pending"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def _dig(report: Mapping, keys: tuple[str, ...]) -> Any:
    value: Any = report
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _structures(config: Mapping | None) -> str | None:
    if not config:
        return None
    tables = (config.get("admm") or {}).get("constraints") or []
    if config.get("method") == "none" or not tables:
        return None
    return "+".join(dict.fromkeys(str(t.get("structure")) for t in tables))


def _row(name: str, path: Path, values: Mapping[str, Any], config: Mapping | None,
         failed: set[str]) -> dict[str, Any]:
    """One run's row (the columns in the module docstring; per-layer sparsities as found)."""
    row: dict[str, Any] = {"run": name, **values}
    saved = RunDir(path).saved_config() if (path / "config.json").is_file() else None
    config = saved or config or {}
    described = {"dataset": (config.get("data") or {}).get("name"),
                 "model": (config.get("model") or {}).get("name"), "method": config.get("method"),
                 "structure": _structures(config), "seed": config.get("seed")}
    for key in _DESCRIPTIVE:
        row.setdefault(key, described[key])
    status = _status(path, failed, name)
    report = _read_json(path / "report.json") if status == "finished" else {}
    for param, value in (_dig(report, ("sparsity", "per_layer")) or {}).items():
        row[f"sparsity.{param}"] = value
    for column, keys in COLUMNS.items():
        row[column] = _dig(report, keys)
    row["accuracy.val_final"] = final_val_accuracy(report) if report else None
    row["budget_curve"] = budget_curve(report) if report else None
    row["status"] = status
    return row


def final_val_accuracy(report: Mapping) -> float | None:
    """Return the validation accuracy after the run's last training epoch (``None`` without a split).

    The number hyperparameters are chosen by (never the test accuracy).
    """
    for phase in reversed(report.get("phases", [])):
        if phase.get("val_acc_curve"):
            return phase["val_acc_curve"][-1]
    return None


def budget_curve(report: Mapping) -> list[list[float]] | None:
    """Test accuracy of the pruned network against the epochs spent after the dense model.

    ``[[e, acc], ...]``: ``e`` counts every training epoch after pretraining (ADMM or group-lasso epochs
    before the cut included), so methods compare at equal cost. The first point is the accuracy right
    after the last hard cut, then one point per retraining epoch (needs ``output.test_every_epoch``; with
    a constant retraining learning rate the point after ``j`` epochs is what a ``j``-epoch retraining
    budget gives). ``None`` for runs without a cut or without per-epoch accuracies.

    Examples
    --------
    >>> budget_curve({"phases": [{"kind": "pretrain", "epochs": 15}, {"kind": "admm", "epochs": 4},
    ...                          {"kind": "prune", "epochs": 0, "test_acc": 0.80},
    ...                          {"kind": "retrain", "epochs": 2, "test_acc_curve": [0.88, 0.90]}]})
    [[4, 0.8], [5, 0.88], [6, 0.9]]
    """
    phases = list(report.get("phases", []))
    cuts = [i for i, p in enumerate(phases) if p.get("kind") == "prune"]
    if not cuts:
        return None
    last = cuts[-1]
    spent = sum(p.get("epochs", 0) for p in phases[1:last])  # everything after pretraining, before the cut
    curve = [[spent, phases[last].get("test_acc")]]
    for phase in phases[last + 1:]:
        if phase.get("kind") != "retrain":
            break
        accs = phase.get("test_acc_curve")
        if accs is None:
            return None
        curve += [[spent + j, acc] for j, acc in enumerate(accs, start=1)]
        spent += len(accs)
    return curve


def _failed_names(sweep_dir: Path) -> set[str]:
    path = sweep_dir / FAILURES_NAME
    if not path.is_file():
        return set()
    return {f["name"] for f in _read_json(path) if isinstance(f, Mapping) and "name" in f}


def _is_run(path: Path) -> bool:
    return run_status(path) in ("partial", "finished") or (path / "report.json").is_file()


def collect_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Return one row per run found at ``path`` (see the module docstring for the columns).

    Parameters
    ----------
    path : path-like
        A sweep directory (``sweep.json``), a run directory, or a directory of run directories.

    Returns
    -------
    list of dict
        Every row has the same keys, in column order (missing values ``None``).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        ``path`` holds no sweep, run or run directories, or a file of it is not valid JSON.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory (a sweep, a run or a directory of runs)")
    if (path / MANIFEST_NAME).is_file():
        manifest = _read_json(path / MANIFEST_NAME)
        failed = _failed_names(path)
        rows = [_row(r["name"], path / "runs" / r["name"], r.get("values", {}), r.get("config"), failed)
                for r in manifest.get("runs", [])]
        grid = (["variant"] if manifest.get("variants") else []) + list(manifest.get("grid", []))
        return _aligned(rows, grid)
    if _is_run(path):
        rows = [_row(path.name, path, {}, None, set())]
    else:
        runs = sorted(p for p in path.iterdir() if p.is_dir() and _is_run(p))
        if not runs:
            raise ValueError(f"{path} holds no sweep (sweep.json), no run (state.json) and no run "
                             "directories")
        rows = [_row(p.name, p, {}, None, set()) for p in runs]
    return _aligned(rows, [])


def _aligned(rows: list[dict], grid: list[str]) -> list[dict]:
    """Give every row the same columns: run, grid keys, descriptive, per-layer, metrics, status."""
    fixed = {"run", *grid, *_DESCRIPTIVE, *COLUMNS, *_DERIVED, "status"}
    layers = [k for k in dict.fromkeys(k for r in rows for k in r) if k not in fixed]
    columns = ["run", *grid, *(k for k in _DESCRIPTIVE if k not in grid), *layers, *COLUMNS, *_DERIVED,
               "status"]
    return [{c: r.get(c) for c in columns} for r in rows]


# --- writing -------------------------------------------------------------------------------------------

def format_for_path(path: str | os.PathLike | None) -> str:
    """Return the format a file name implies (``.csv``, ``.json``, ``.md``), else ``"markdown"``."""
    if path is None:
        return "markdown"
    return _SUFFIXES.get(Path(path).suffix.lower(), "markdown")


def _columns(rows: Iterable[Mapping]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def _cell(value: Any) -> str:
    """Write a value as CSV text: empty for None, JSON for lists and tables, floats in full."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _markdown_cell(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else _cell(value)
    return text.replace("|", "\\|").replace("\n", " ")


def format_results(rows: list[Mapping[str, Any]], fmt: str) -> str:
    """Write ``rows`` as ``"csv"``, ``"json"`` or ``"markdown"`` (a pipe table, floats to 4 digits).

    CSV cells: empty for ``None``, ``true``/``false``, floats at full precision, lists and tables as
    JSON — :func:`load_results` reads them back to the same values.
    """
    if fmt not in RESULT_FORMATS:
        raise ValueError(f"format must be one of {list(RESULT_FORMATS)}, got {fmt!r}")
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        raise TypeError("rows must be a list of dicts (collect_results)")
    columns = _columns(rows)
    if fmt == "json":
        return json.dumps([dict(r) for r in rows], indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(r.get(c)) for c in columns] for r in rows)
        return buffer.getvalue()
    numeric = [all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                   for r in rows if r.get(c) is not None) for c in columns]
    lines = ["| " + " | ".join(_markdown_cell(c) for c in columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(_markdown_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


# --- reading back --------------------------------------------------------------------------------------

_INTEGER = re.compile(r"^[+-]?\d+$")


def _parse_cell(column: str, text: str) -> Any:
    if text == "":
        return None
    if column in _TEXT_COLUMNS:
        return text
    if text in ("true", "false"):
        return text == "true"
    if _INTEGER.match(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def load_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows for a notebook: :func:`collect_results` of a directory, or a ``.csv`` / ``.json`` table file.

    Parameters
    ----------
    path : path-like
        A sweep, run or runs directory, or a file written by ``refimpl results --output`` (CSV cells are
        converted back: empty to ``None``, numbers, booleans, JSON lists and tables).

    Returns
    -------
    list of dict
    """
    path = Path(path)
    if path.is_dir():
        return collect_results(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = _read_json(path)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"{path} does not hold a list of rows (JSON objects)")
        return rows
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: _parse_cell(k, v) for k, v in row.items()} for row in csv.DictReader(f)]
    raise ValueError(f"{path}: load_results reads a directory, a .csv or a .json file, not "
                     f"{suffix or 'a file without suffix'}")
