r"""Sweeps: one TOML file expands into many runs, executed as independent dask.distributed tasks.

A sweep file names a base experiment config and what varies around it:

.. code-block:: toml

    # paper_repro/sweeps/smoke_digits.toml
    budget = "4 runs x ~5 s on 2 cores (CI)"   # required: every sweep states its compute budget
    base = "../configs/smoke_digits.toml"    # the experiment config (relative to this file)
    name = "smoke-digits"                     # optional (default: the file's stem)
    name_format = "{method}-s{seed}"          # optional (default below)
    order = "variants"                        # optional: or "interleaved" (run order, below)

    [set]                                     # optional: fixed overrides, dotted config keys
    "retrain.epochs" = 1

    [grid]                                    # the Cartesian product of these lists, in file order
    method = ["admm", "magnitude"]
    seed = [0, 1]

    [[variants]]                              # optional: named runs; every variant x every grid point
    name = "fine"
    set = { "admm.epochs" = 4 }
    # base = "../configs/other.toml"          # optional: this variant's own experiment config

Keys of ``[set]``, ``[grid]`` and a variant's ``set`` are dotted config keys (``"retrain.epochs"``,
``"admm.constraints"`` — a whole list of constraint tables per grid value) or one of the two
**shortcuts**: ``structure`` and ``sparsity`` set that field in *every* constraint table of the run's
config (``sparsity`` also drops a table's ``keep``), after all other overrides. A grid key may not also
be set by a variant; grid values and variants override ``[set]``. A variant may name its own ``base``
config (a comparison of methods that live in separate experiment files is one sweep of such variants).
File paths (``pretrain.init_weights``,
``data.path``) are relative to the sweep file, as they are to a config file.

Runs and their names
--------------------
Runs are ordered variant by variant, and within a variant by the grid's product with the *last* grid key
varying fastest. ``order = "interleaved"`` puts every variant's run of a grid point next to each other
instead (grid point by grid point, variants in file order): runs start in this order, so a sweep stopped
part-way has compared every method at the points it reached. A run's name is the variant's name
followed by its grid values in file order, joined by
``-``: the seed as ``s<seed>``, floats without trailing zeros (``1.0`` → ``1``), the items of lists and
the values of tables joined by ``_``; characters outside ``[A-Za-z0-9._-]`` become ``_`` (and a leading
``.`` too), so ``admm-filters-0.75-s1``. ``name_format`` replaces that rule: a :meth:`str.format`
pattern whose fields are the grid keys (``{retrain.epochs}`` for dotted ones) and ``{variant}``, each the
value's label as above. Names are the same on every invocation and must be unique; each run's config
gets its name as ``name`` (unless the sweep sets ``name``).

Loading (:func:`load_sweep`) checks everything before any run starts: unknown keys and wrong types in the
sweep file, and every expanded config through :func:`refimpl.config.load_config` — each error is one line
naming the key, the file and the run.

Running
-------
:func:`run_sweep` writes into an output directory ``DIR``:

===================  ==================================================================================
``sweep.json``       the manifest: sweep file, budget, grid keys, and each run's name, grid values,
                     overrides and full config (rewritten atomically at every invocation)
``runs/<name>/``     one run directory each, written by :func:`refimpl.engine.run_experiment`
``runs/<name>/run.log``  the run's output (phases, report, tracebacks), appended at every attempt
``failures.json``    this invocation's failed runs: name, one-line error, log path
===================  ==================================================================================

Every run is one dask.distributed task (:mod:`refimpl.engine.cluster`: a local cluster of one-thread
worker processes, or an existing cluster by its address), run under
:func:`refimpl.threads.thread_limit` ``(config.threads or 1)``. The sweep is idempotent and resumable:
finished runs are not even submitted (their files stay untouched), runs with a partial directory resume
from their checkpoint (``run_experiment(..., resume=True)``), bit for bit. A failing run is reported and
the others go on. When a worker process dies, dask's scheduler reschedules its task on another worker (up
to ``distributed.scheduler.allowed-failures`` times); the retry finds the partial run directory and
resumes it — which is why, on a remote cluster, ``DIR`` must be on a file system every worker sees.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import queue
import re
import sys
import time
import traceback
import types
import typing
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from refimpl._io import atomic_write_json
from refimpl.engine.rundir import LOG_NAME, RunDir, run_status

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "FAILURES_NAME",
    "LOG_NAME",
    "MANIFEST_NAME",
    "SHORTCUTS",
    "Sweep",
    "SweepRun",
    "SweepSummary",
    "differing_settings",
    "execute_run",
    "format_dry_run",
    "load_sweep",
    "run_sweep",
]

MANIFEST_NAME = "sweep.json"
FAILURES_NAME = "failures.json"
#: Sweep keys that set a field in every constraint table of a run's config.
SHORTCUTS = ("structure", "sparsity")

_TOP_KEYS = ("name", "budget", "base", "name_format", "order", "set", "grid", "variants")
#: Run orders of a sweep file's ``order`` key (module docstring, "Runs and their names").
ORDERS = ("variants", "interleaved")
_VARIANT_KEYS = ("name", "base", "set")
_MAX_NAME = 200  # file systems allow 255 bytes per name; leave room for temporaries
#: File paths a config names: relative to the file that names them (as load_config does for configs).
_PATH_KEYS = ("pretrain.init_weights", "data.path")


# --- the sweep file ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep.

    Attributes
    ----------
    name : str
        The run's name (module docstring), also its directory ``DIR/runs/<name>``.
    values : dict
        Its point of the sweep: ``{"variant": name}`` (when the sweep has variants) and one entry per
        grid key, in file order.
    overrides : dict
        Dotted config keys applied to the base file, shortcuts resolved into ``admm.constraints``:
        ``load_config(run.base, run.overrides) == run.config``.
    config : ExperimentConfig
        The run's validated configuration.
    base : pathlib.Path
        The experiment config the run starts from: its variant's ``base``, else the sweep's.
    """

    name: str
    values: dict
    overrides: dict
    config: Any
    base: Path | None = None


@dataclass(frozen=True)
class Sweep:
    """A loaded sweep file (:func:`load_sweep`).

    Attributes
    ----------
    name : str
    budget : str
        The compute budget the file states.
    base : pathlib.Path
        The base experiment config (absolute).
    runs : list of SweepRun
        In run order (module docstring).
    path : pathlib.Path
        The sweep file (absolute).
    grid_keys : list of str
        The grid's keys in file order (shortcuts included).
    variants : list of str
        The variants' names, in file order.
    name_format : str or None
    """

    name: str
    budget: str
    base: Path
    runs: list
    path: Path
    grid_keys: list = field(default_factory=list)
    variants: list = field(default_factory=list)
    name_format: str | None = None

    def manifest(self) -> dict:
        """Return ``DIR/sweep.json``'s content: the file, its budget, grid keys, every run (JSON values)."""
        from refimpl import __version__

        return {
            "sweep": str(self.path), "name": self.name, "budget": self.budget, "base": str(self.base),
            "name_format": self.name_format, "grid": list(self.grid_keys), "variants": list(self.variants),
            "refimpl": __version__,
            "runs": [{"name": r.name, "values": r.values, "base": str(r.base), "overrides": r.overrides,
                      "config": r.config.to_dict()} for r in self.runs],
        }


def _schema_lookup(dotted: str) -> tuple[str | None, list[str]]:
    """Classify a dotted config key: ``("section" | "field" | None, the known keys where it stopped)``.

    A section is a settings table (``admm``); a field a value (``admm.epochs``); keys below a table-typed
    field (``model.options.width``) are fields too.
    """
    from refimpl.config import ExperimentConfig

    cls = ExperimentConfig
    parts = dotted.split(".")
    for i, part in enumerate(parts):
        hints = typing.get_type_hints(cls)
        if part not in hints:
            return None, sorted(hints)
        tp = hints[part]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            cls = tp
            continue
        table_typed = tp is dict or typing.get_origin(tp) is dict
        return ("field" if i == len(parts) - 1 or table_typed else None), sorted(hints)
    return "section", sorted(typing.get_type_hints(cls))


def _flatten(table: Mapping, where: str, path: Path, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of a ``[set]`` / ``[grid]`` table (TOML dotted keys arrive as nested tables)."""
    out: dict[str, Any] = {}
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if not prefix and key in SHORTCUTS:
            out[dotted] = value
            continue
        kind, known = _schema_lookup(dotted)
        if kind is None:
            shortcuts = f"; shortcuts: {', '.join(SHORTCUTS)}" if not prefix else ""
            raise ValueError(f"unknown key {dotted!r} in {where} of {path} (known keys here: "
                             f"{', '.join(known)}{shortcuts})")
        if kind == "section":
            if not isinstance(value, Mapping):
                raise TypeError(f"{dotted!r} in {where} of {path} is a table of settings; give one of its "
                                f"keys (e.g. \"{dotted}.{known[0]}\"), got {value!r}")
            out.update(_flatten(value, where, path, f"{dotted}."))
        else:
            out[dotted] = value
    return out


def _resolve_paths(table: dict[str, Any], directory: Path) -> dict[str, Any]:
    """Make the file paths of flattened settings relative to the sweep file, not to a worker's directory."""
    out = dict(table)
    for key in _PATH_KEYS:
        if isinstance(out.get(key), str):
            out[key] = str((directory / out[key]).resolve())
    return out


def _label(value: Any) -> str:
    """Write a value as it appears in a run name (floats without trailing zeros, lists ``_``-joined)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, list):
        return "_".join(_label(v) for v in value)
    if isinstance(value, Mapping):
        return "_".join(_label(v) for v in value.values())
    return str(value)


def _sanitise(raw: str) -> str:
    """Keep ``[A-Za-z0-9._-]``, replace the rest (and a leading dot: no hidden or ``..`` directory)."""
    return re.sub(r"^\.", "_", re.sub(r"[^A-Za-z0-9._-]", "_", raw))


def _format_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"retrain.epochs": 2}`` -> ``{"retrain": namespace(epochs="2")}`` for :meth:`str.format_map`."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        *parents, last = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = _label(value)

    def freeze(node):
        if isinstance(node, dict):
            return types.SimpleNamespace(**{k: freeze(v) for k, v in node.items()})
        return node

    return {k: freeze(v) for k, v in nested.items()}


def _run_name(values: Mapping[str, Any], name_format: str | None, fallback: str, path: Path) -> str:
    if name_format is None:
        parts = [f"s{_label(v)}" if k == "seed" else _label(v) for k, v in values.items()]
        raw = "-".join(parts) or fallback
    else:
        try:
            raw = name_format.format_map(_format_fields(values))
        except (KeyError, AttributeError) as err:
            fields = ", ".join("{" + k + "}" for k in values) or "none"
            raise ValueError(f"name_format {name_format!r} in {path} uses {err}, which is not a grid key or "
                             f"'variant' (fields: {fields})") from None
        except (ValueError, IndexError) as err:
            raise ValueError(f"name_format {name_format!r} in {path}: {err}") from None
    name = _sanitise(raw)
    if not name:
        raise ValueError(f"name_format {name_format!r} in {path} gives an empty run name")
    if len(name) > _MAX_NAME:
        raise ValueError(f"run name {name[:60]!r}... from {path} is {len(name)} characters long (at most "
                         f"{_MAX_NAME}); give a shorter name_format or name the settings with [[variants]]")
    return name


@dataclass(frozen=True)
class _Variant:
    name: str
    settings: dict
    base: Path | None = None  # the variant's own experiment config, if it names one


def _read_sweep_file(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from None
    for key in data:
        if key not in _TOP_KEYS:
            raise ValueError(f"unknown key {key!r} in {path} (known keys: {', '.join(_TOP_KEYS)})")
    for key in ("name", "budget", "base", "name_format", "order"):
        if key in data and not isinstance(data[key], str):
            raise TypeError(f"{key!r} in {path} must be a string, got {data[key]!r}")
    if data.get("order", "variants") not in ORDERS:
        raise ValueError(f"order in {path} must be one of {', '.join(map(repr, ORDERS))}, got "
                         f"{data['order']!r}")
    for key in ("set", "grid"):
        if key in data and not isinstance(data[key], Mapping):
            raise TypeError(f"{key!r} in {path} must be a table ([{key}]), got {data[key]!r}")
    if "variants" in data and not (isinstance(data["variants"], list)
                                   and all(isinstance(v, Mapping) for v in data["variants"])):
        raise TypeError(f"'variants' in {path} must be an array of tables ([[variants]]), got "
                        f"{data['variants']!r}")
    if not data.get("budget", "").strip():
        raise ValueError(f"{path} needs a non-empty 'budget' string stating the sweep's compute budget "
                         "(e.g. budget = \"8 runs x ~2 min on 2 cores\"): every sweep states its budget in "
                         "its file")
    if not data.get("base", "").strip():
        raise ValueError(f"{path} needs 'base', the experiment config the runs start from (relative to "
                         "the sweep file)")
    return data


def _read_variants(data: dict, path: Path) -> list[_Variant]:
    variants = []
    for i, table in enumerate(data.get("variants", [])):
        where = f"variants[{i}]"
        for key in table:
            if key not in _VARIANT_KEYS:
                raise ValueError(f"unknown key {key!r} in {where} of {path} (known keys: "
                                 f"{', '.join(_VARIANT_KEYS)})")
        name = table.get("name")
        if not isinstance(name, str) or not name.strip():
            raise TypeError(f"{where} of {path} needs a 'name' string, got {name!r}")
        settings = table.get("set", {})
        if not isinstance(settings, Mapping):
            raise TypeError(f"'set' of {where} ({name!r}) in {path} must be a table, got {settings!r}")
        base = table.get("base")
        if base is not None:
            if not isinstance(base, str) or not base.strip():
                raise TypeError(f"'base' of {where} ({name!r}) in {path} must be a file name, got {base!r}")
            base = (path.parent / base).resolve()
            if not base.is_file():
                raise FileNotFoundError(f"'base' of {where} ({name!r}) in {path}: the experiment config "
                                        f"{base} does not exist")
        variants.append(_Variant(name, _resolve_paths(_flatten(settings, f"{where} ({name!r})", path),
                                                      path.parent), base))
    repeated = [n for n, k in Counter(v.name for v in variants).items() if k > 1]
    if repeated:
        raise ValueError(f"variant names in {path} must be unique; repeated: "
                         f"{', '.join(map(repr, repeated))}")
    return variants


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read a sweep file and expand it into validated runs (see the module docstring).

    Parameters
    ----------
    path : path-like
        The sweep TOML file.

    Returns
    -------
    Sweep
        With one :class:`SweepRun` per variant × grid point, each config loaded and validated.

    Raises
    ------
    ValueError, TypeError
        An unknown key, a wrong type, a missing ``budget`` or ``base``, a grid value that is not a
        non-empty array, a key set by both the grid and a variant, repeated run names, or a run whose
        expanded config is invalid — one line naming the key, the file and (for a config) the run.
    FileNotFoundError
        The sweep file or its base config does not exist.
    """
    path = Path(path).resolve()
    data = _read_sweep_file(path)
    base = (path.parent / data["base"]).resolve()
    if not base.is_file():
        raise FileNotFoundError(f"'base' in {path}: the experiment config {base} does not exist")
    settings = _resolve_paths(_flatten(data.get("set", {}), "[set]", path), path.parent)
    grid = _flatten(data.get("grid", {}), "[grid]", path)  # as written: run names and values come from it
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise TypeError(f"{key!r} in [grid] of {path} must be a non-empty array of values, got "
                            f"{values!r}")
    variants = _read_variants(data, path)
    for variant in variants:
        both = [k for k in variant.settings if k in grid]
        if both:
            raise ValueError(f"{', '.join(map(repr, both))} in {path} is set by both [grid] and variant "
                             f"{variant.name!r}; vary it in one place")
    name = data.get("name", path.stem)
    name_format = data.get("name_format")

    runs = []
    for variant in variants or [None]:
        for point in itertools.product(*grid.values()):
            values = ({"variant": variant.name} if variant else {}) | dict(zip(grid, point, strict=True))
            run_name = _run_name(values, name_format, _sanitise(name), path)
            requested = {k: ("[set]", v) for k, v in settings.items()}
            point_settings = _resolve_paths(dict(zip(grid, point, strict=True)), path.parent)
            requested |= {k: ("[grid]", v) for k, v in point_settings.items()}
            if variant:
                requested |= {k: (f"variant {variant.name!r}", v) for k, v in variant.settings.items()}
            runs.append(_expand_run(run_name, values, requested, (variant and variant.base) or base, path))
    if data.get("order") == "interleaved" and variants:
        points = len(runs) // len(variants)  # runs[v * points + p]: variant v at grid point p
        runs = [runs[v * points + p] for p in range(points) for v in range(len(variants))]
    _check_unique(runs, path)
    return Sweep(name=name, budget=data["budget"], base=base, runs=runs, path=path, grid_keys=list(grid),
                 variants=[v.name for v in variants], name_format=name_format)


def _expand_run(name: str, values: dict, requested: dict[str, tuple[str, Any]], base: Path,
                path: Path) -> SweepRun:
    """Load one run's config: the base file, the overrides, then the shortcuts on every constraint."""
    from refimpl.config import load_config

    overrides = {k: v for k, (_, v) in requested.items() if k not in SHORTCUTS}
    origins = {k: where for k, (where, _) in requested.items() if k not in SHORTCUTS}
    shortcuts = {k: requested[k] for k in SHORTCUTS if k in requested}
    overrides.setdefault("name", name)
    origins.setdefault("name", "the run name")
    try:
        config = load_config(base, overrides)
        if shortcuts:
            tables = config.constraint_specs()
            if not tables:
                key, (where, _) = next(iter(shortcuts.items()))
                raise ValueError(f"the shortcut {key!r} in {where} sets a field of every constraint table, "
                                 f"but the run's config has no admm.constraints")
            for table in tables:
                if "structure" in shortcuts:
                    table["structure"] = shortcuts["structure"][1]
                if "sparsity" in shortcuts:
                    table.pop("keep", None)  # sparsity and keep are exclusive: the shortcut's wins
                    table["sparsity"] = shortcuts["sparsity"][1]
            overrides["admm.constraints"] = tables
            via = " and ".join(f"shortcut {k!r} in {where}" for k, (where, _) in shortcuts.items())
            origins["admm.constraints"] = via if "admm.constraints" not in origins \
                else f"{origins['admm.constraints']} with {via}"
            config = load_config(base, overrides)
    except (ValueError, TypeError) as err:
        exc = ValueError if isinstance(err, ValueError) else TypeError
        raise exc(f"{path}, run {name!r}: {_name_source(str(err), origins)}") from None
    return SweepRun(name=name, values=values, overrides=overrides, config=config, base=base)


def _name_source(message: str, origins: Mapping[str, str]) -> str:
    """Replace load_config's ``<overrides>`` by the sweep table the offending key came from."""
    match = re.search(r"'([^']+)' in <overrides>", message)
    if not match:
        return message
    key = re.sub(r"\[\d+\]", "", match.group(1))
    owners = [k for k in origins if key == k or key.startswith(f"{k}.")]
    if not owners:
        return message
    return message.replace("<overrides>", origins[max(owners, key=len)], 1)


def _check_unique(runs: list[SweepRun], path: Path) -> None:
    counts = Counter(r.name for r in runs)
    repeated = {n for n, k in counts.items() if k > 1}
    if repeated:
        details = "; ".join(f"{n!r} for " + ", ".join(json.dumps(r.values) for r in runs if r.name == n)
                            for n in sorted(repeated))
        raise ValueError(f"runs of {path} share names: {details}; make them distinct (variant names, "
                         "name_format, or repeated grid values)")


# --- the dry run ---------------------------------------------------------------------------------------

def _flat_settings(value: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config dict to dotted keys; lists of tables by index (``admm.constraints[0].sparsity``)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out |= _flat_settings(item, f"{prefix}{key}.")
        return out
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        out = {}
        for i, item in enumerate(value):
            out |= _flat_settings(item, f"{prefix.rstrip('.')}[{i}].")
        return out
    return {prefix.rstrip("."): value}


def differing_settings(runs: list[SweepRun]) -> list[str]:
    """Dotted config keys whose values differ between the runs (``name`` left out), in config order."""
    flats = [_flat_settings(r.config.to_dict()) for r in runs]
    keys = list(dict.fromkeys(k for flat in flats for k in flat))
    return [k for k in keys if k != "name" and len({json.dumps(f.get(k)) for f in flats}) > 1]


def format_dry_run(sweep: Sweep, out: str | os.PathLike | None = None) -> str:
    """List the run names, each with the settings that differ between runs (and its state in ``out``)."""
    keys = differing_settings(sweep.runs)
    lines = [f"sweep {sweep.name} ({sweep.path}): {len(sweep.runs)} runs; budget: {sweep.budget}",
             f"base {sweep.base}"]
    width = max(len(r.name) for r in sweep.runs)
    for run in sweep.runs:
        flat = _flat_settings(run.config.to_dict())
        state = ""
        if out is not None:
            state = {"finished": "finished, skipped", "partial": "partial, resumes"}.get(
                _run_state(Path(out) / "runs" / run.name), "new")
            state = f"  [{state}]"
        settings = "  ".join(f"{k}={json.dumps(flat.get(k))}" for k in keys)
        lines.append(f"  {run.name:<{width}}{state}  {settings}".rstrip())
    return "\n".join(lines)


# --- running one run (inside a dask worker) ------------------------------------------------------------

def _is_finished(path: Path) -> bool:
    """Tell whether the run at ``path`` finished (its state.json says so, written after the report)."""
    return run_status(path) == "finished"


def _run_state(path: Path) -> str:
    """``finished``, ``partial``, ``absent`` (or empty) or ``foreign`` for a run directory."""
    status = run_status(path)
    return "absent" if status == "empty" else status


class _RunLog:
    """A run's ``run.log``, appended line by line (:class:`RunDir` counts it as part of an empty directory).

    Nothing is written into a foreign directory: the engine refuses it, and the refusal is reported.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writable = run_status(path.parent) != "foreign"

    def __call__(self, line: str) -> None:
        if not self.writable:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or "(no message)"
    return f"{type(err).__name__}: {text[:500]}"


def _announce(topic: str, message: dict) -> str | None:
    """Tell the sweep's client that a run started (a dask event); return the worker's address."""
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # called outside a worker (tests, debugging)
        return None
    message["worker"] = worker.address
    worker.log_event(topic, message)
    return worker.address


def execute_run(name: str, settings: dict, run_dir: str, topic: str = "") -> dict:
    """Run (or resume) one sweep run in this process; the dask task behind every run of a sweep.

    Parameters
    ----------
    name : str
        The run's name (reported back).
    settings : dict
        Its config as ``ExperimentConfig.to_dict()`` (plain values travel to any worker).
    run_dir : str
        The run directory; a partial run there is resumed (``run_experiment(..., resume=True)``).
    topic : str, optional
        The dask event topic on which the start is announced (progress and restart reports).

    Returns
    -------
    dict
        ``name``, ``ok``, ``error`` (one line, or ``None``), ``resumed``, ``seconds``, ``pid``,
        ``worker``, ``log``. Exceptions of the run are caught: their traceback goes to ``run.log``.
    """
    from refimpl.config import ExperimentConfig
    from refimpl.engine.run import run_experiment
    from refimpl.threads import thread_limit

    path = Path(run_dir)
    log = _RunLog(path / LOG_NAME)
    state = _run_state(path)
    resume = state in ("partial", "finished")
    worker = _announce(topic, {"run": name, "pid": os.getpid()}) if topic else None
    log(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resuming' if resume else 'starting'} {name} "
        f"(PID {os.getpid()}{', worker ' + worker if worker else ''})")
    started = time.perf_counter()
    error = None
    try:
        config = ExperimentConfig.from_dict(settings, source=f"the sweep's config of {name}")
        with thread_limit(config.threads or 1):
            run_experiment(config, path, resume=resume, progress=False, echo=log)
    except Exception as err:  # any failure of one run is reported; the other runs go on
        error = _one_line(err)
        log(traceback.format_exc().rstrip("\n"))
    return {"name": name, "ok": error is None, "error": error, "resumed": resume,
            "seconds": time.perf_counter() - started, "pid": os.getpid(), "worker": worker,
            "log": str(log.path) if log.writable else None}


# --- the sweep -----------------------------------------------------------------------------------------

@dataclass
class SweepSummary:
    """What one invocation of :func:`run_sweep` did.

    Attributes
    ----------
    out : pathlib.Path
    total : int
        Runs of the sweep.
    skipped : int
        Already finished before this invocation (not submitted).
    finished : int
        Finished by this invocation.
    failed : int
    failures : list of dict
        ``{"name", "error", "log"}`` per failed run (also ``DIR/failures.json``).
    restarted : list of str
        Runs whose worker died and that were started again (resumed) on another worker.
    seconds : float
        Wall time of the invocation.
    """

    out: Path
    total: int
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    failures: list = field(default_factory=list)
    restarted: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No run failed."""
        return not self.failures

    def text(self) -> str:
        """Return a few lines for the terminal: counts, then one line per failed run."""
        lines = [f"{self.total} runs: {self.finished} finished now, {self.skipped} already finished "
                 f"(skipped), {self.failed} failed ({self.seconds:.1f} s); results: refimpl results "
                 f"{self.out}"]
        for f in self.failures:
            lines.append(f"  FAILED {f['name']}: {f['error']} (log: {f['log']})")
        return "\n".join(lines)


def _prepare_out(out: Path) -> None:
    """Refuse an output directory that is not ours (a file, or a non-empty directory without a sweep)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"sweep output {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise ValueError(f"{out} is not empty and holds no sweep ({MANIFEST_NAME}); refimpl never writes "
                         "into a directory it did not create: choose a new or empty directory")


def _task_key(run: SweepRun, run_dir: Path) -> str:
    """Return the run's dask key: its name, and a digest of its directory and config (shared clusters)."""
    digest = hashlib.sha1(json.dumps([str(run_dir), run.config.to_dict()], sort_keys=True).encode())
    return f"refimpl-run-{run.name}-{digest.hexdigest()[:12]}"


def run_sweep(sweep: Sweep | str | os.PathLike, out: str | os.PathLike, *, workers: int | None = None,
              scheduler: str | None = None, insecure: bool = False, progress: bool = True,
              dashboard: bool = False, security: Any = None,
              echo: Callable[[str], None] | None = print) -> SweepSummary:
    """Run every unfinished run of ``sweep`` into ``out`` on dask.distributed (see the module docstring).

    Parameters
    ----------
    sweep : Sweep or path-like
        A loaded sweep, or its file (:func:`load_sweep`).
    out : path-like
        The sweep directory ``DIR``: new, empty, or one an earlier invocation wrote (``sweep.json``).
    workers : int, optional
        Worker processes of the local cluster (default ``os.cpu_count()``); not with ``scheduler``.
    scheduler : str, optional
        Address of an existing dask scheduler instead of a local cluster; a plaintext ``tcp://`` address
        of another machine is refused unless ``insecure``
        (:func:`refimpl.engine.cluster.check_scheduler_address`). Its workers must see ``out`` at the
        same path (a shared file system).
    insecure : bool, default False
        Accept a plaintext scheduler address of another host.
    progress : bool, default True
        One tqdm bar over the runs (done / running / failed, ETA).
    dashboard : bool, default False
        Serve the local cluster's dask dashboard on 127.0.0.1.
    security : distributed.security.Security, optional
        TLS settings for a ``tls://`` scheduler (default: the dask config ``distributed.comm.tls.*``).
    echo : callable or None, default print
        Receives the start line, restart notices and the summary; ``None`` is silent.

    Returns
    -------
    SweepSummary
        Counts, failures (also written to ``DIR/failures.json``) and restarted runs.

    Raises
    ------
    ValueError, TypeError
        Before anything is written or started: a bad sweep file, output directory, address or
        ``workers``. Failures of runs are not raised: they are in the summary.
    """
    from refimpl.engine.cluster import allowed_failures, check_scheduler_address, open_client

    started = time.perf_counter()
    echo = echo or (lambda line: None)
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if scheduler is not None:
        check_scheduler_address(scheduler, insecure=insecure)
        if workers is not None:
            raise ValueError("workers applies to the local cluster only; a cluster given by its scheduler "
                             "address has its own workers")
    out = Path(out).resolve()
    _prepare_out(out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MANIFEST_NAME, sweep.manifest())

    summary = SweepSummary(out=out, total=len(sweep.runs))
    todo = []
    for run in sweep.runs:
        run_dir = out / "runs" / run.name
        if not _is_finished(run_dir):
            todo.append(run)
            continue
        changed = RunDir(run_dir).changed_settings(run.config.to_dict(), type(run.config)().to_dict())
        if changed:
            _fail(summary, run.name, f"SetupError: {run_dir} holds a finished run of another configuration "
                  f"(differs in {', '.join(changed)}); the sweep file changed since: use another output "
                  "directory or move that run away", None)
        else:
            summary.skipped += 1
    _write_failures(out, summary)
    if todo:
        echo(f"sweep {sweep.name}: {len(todo)} of {len(sweep.runs)} runs to do ({summary.skipped} finished "
             f"already) -> {out}")
        with open_client(workers=workers, scheduler=scheduler, insecure=insecure, dashboard=dashboard,
                         security=security) as client:
            retries = allowed_failures(client)
            if retries == 0:
                echo("warning: distributed.scheduler.allowed-failures is 0: a run whose worker dies fails "
                     "instead of resuming on another worker")
            if dashboard:
                import importlib.util

                served = importlib.util.find_spec("bokeh") is not None  # dask serves it only with bokeh
                echo(f"dask dashboard: {client.dashboard_link}" if served else
                     "warning: the dask dashboard needs bokeh (pip install 'bokeh>=3.1'); not served")
            _run_on_cluster(client, todo, out, summary, progress=progress, echo=echo)
    summary.seconds = time.perf_counter() - started
    _write_failures(out, summary)
    echo(summary.text())
    return summary


def _fail(summary: SweepSummary, name: str, error: str, log: str | None) -> None:
    summary.failed += 1
    summary.failures.append({"name": name, "error": error, "log": log})


def _write_failures(out: Path, summary: SweepSummary) -> None:
    atomic_write_json(out / FAILURES_NAME, summary.failures)


def _run_on_cluster(client, todo: list[SweepRun], out: Path, summary: SweepSummary, *, progress: bool,
                    echo: Callable[[str], None]) -> None:
    """Submit one task per run, then follow them: progress bar, restarts, results and failures."""
    from distributed import KilledWorker
    from tqdm.auto import tqdm

    topic = f"refimpl-sweep-{uuid.uuid4().hex}"
    events: queue.SimpleQueue = queue.SimpleQueue()
    client.subscribe_topic(topic, lambda event: events.put(event[1]))
    futures = {}
    for i, run in enumerate(todo):
        run_dir = out / "runs" / run.name
        # dask starts higher priorities first: the runs start in the sweep's run order
        future = client.submit(execute_run, run.name, run.config.to_dict(), str(run_dir), topic,
                               key=_task_key(run, run_dir), pure=False, priority=len(todo) - i)
        futures[future] = run
    bar = tqdm(total=summary.total, initial=summary.skipped, unit="run", disable=not progress,
               desc="runs", dynamic_ncols=True)
    say = bar.write if progress else echo
    starts: Counter = Counter()
    running: set[str] = set()
    pending = set(futures)
    shown: dict = {}
    last_refresh = time.monotonic()
    try:
        while pending:
            while not events.empty():
                name = events.get()["run"]
                starts[name] += 1
                running.add(name)
                if starts[name] == 2:
                    summary.restarted.append(name)
                if starts[name] > 1:
                    say(f"{name}: started again (its worker died); it resumes from its checkpoint")
            done = [f for f in pending if f.done()]
            for future in done:
                pending.discard(future)
                name = futures[future].name
                running.discard(name)
                log = str(out / "runs" / name / LOG_NAME)
                if future.status == "finished":
                    result = future.result()
                    if result["ok"]:
                        summary.finished += 1
                    else:
                        _fail(summary, name, result["error"], result["log"])
                else:
                    err = future.exception() if future.status == "error" else None
                    if isinstance(err, KilledWorker):
                        error = (f"KilledWorker: the workers running it died {err.allowed_failures + 1} "
                                 "times (distributed.scheduler.allowed-failures); see its log")
                    else:
                        error = _one_line(err) if err is not None else f"dask task {future.status}"
                    _fail(summary, name, error, log)
                if summary.failures and summary.failures[-1]["name"] == name:
                    say(f"{name}: FAILED: {summary.failures[-1]['error']}")
                    _write_failures(out, summary)
                bar.update(1)
            counts = {"done": summary.skipped + summary.finished, "running": len(running),
                      "failed": summary.failed}
            if counts != shown or time.monotonic() - last_refresh > 1.0:  # new counts, or the clock moved
                bar.set_postfix(counts)
                shown, last_refresh = counts, time.monotonic()
            if pending:
                time.sleep(0.2)
    finally:
        bar.close()
        client.unsubscribe_topic(topic)
