"""Reading experiment TOML files: ``base`` chains, merging, strict schema and type checks, overrides.

Loading (:func:`load_config`) is strict, because a misspelt key silently ignored costs a whole run:

* an **unknown key** or a value of the **wrong type** is a ``ValueError`` / ``TypeError`` naming the key
  and the file it came from (the types are the annotations of :mod:`refimpl.config.schema`; an integer is
  accepted for a float, a boolean never for a number);
* the values are then checked by :func:`refimpl.config.validation.validate`;
* a file may name a ``base`` file; bases chain (cycles are an error) and tables merge key by key, arrays
  (e.g. ``constraints``) and ``model.options`` are replaced as a whole;
* file paths a config names (``pretrain.init_weights``, ``data.path``) are relative to that file, not to
  the working directory;
* ``overrides`` (e.g. ``{"admm.epochs": 2}`` from ``refimpl prune --set admm.epochs=2``) go on top.

``config.to_dict()`` gives plain TOML/JSON values and ``ExperimentConfig.from_dict`` reads them back;
:func:`refimpl.config.to_toml` writes a file that :func:`load_config` reads back to an equal config.
"""

from __future__ import annotations

import dataclasses
import numbers
import sys
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from refimpl.config.schema import ExperimentConfig
from refimpl.config.validation import validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["load_config", "parse_override"]


# --- schema and type checks ----------------------------------------------------------------------------

def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_ok(value, tp) -> bool:
    """Whether a TOML value fits the annotation ``tp`` (ints are accepted for floats, never bools)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is list or origin is list:
        return isinstance(value, list)
    if tp is dict or origin is dict:
        return isinstance(value, Mapping)
    return False


def _type_name(tp) -> str:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return {type(None): "none", list: "array", dict: "table"}.get(tp, getattr(tp, "__name__", str(tp)))


def _check_schema(data: Mapping, cls, source: str, prefix: str) -> None:
    """Raise for unknown keys and wrong types in ``data`` (one file's tables) against dataclass ``cls``."""
    hints = _hints(cls)
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise ValueError(f"unknown key {dotted!r} in {source} (known keys here: {known})")
        tp = hints[key]
        if _is_dataclass_type(tp):
            if not isinstance(value, Mapping):
                raise TypeError(f"{dotted!r} in {source} must be a table, got {value!r}")
            _check_schema(value, tp, source, f"{dotted}.")
        elif not _type_ok(value, tp):
            raise TypeError(f"{dotted!r} in {source} must be {_type_name(tp)}, got {value!r}")


def _build(cls, data: Mapping):
    """Instantiate dataclass ``cls`` from checked ``data`` (ints become floats where a float is declared)."""
    kwargs = {}
    for key, tp in _hints(cls).items():
        if key not in data:
            continue
        value = data[key]
        if _is_dataclass_type(tp):
            kwargs[key] = _build(tp, value)
        elif tp is float or (typing.get_origin(tp) in (typing.Union, types.UnionType)
                             and float in typing.get_args(tp) and value is not None):
            kwargs[key] = float(value)
        else:
            kwargs[key] = _copy_value(value)
    return cls(**kwargs)


def _copy_value(value):
    if isinstance(value, Mapping):
        return {k: _copy_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_value(v) for v in value]
    return value


# --- files, base chains and merging --------------------------------------------------------------------

def _merge(base: dict, top: Mapping, origin: dict[str, str], source: str, prefix: str = "") -> dict:
    """Deep-merge table ``top`` into ``base`` (arrays replaced), recording each key's file in ``origin``."""
    out = dict(base)
    for key, value in top.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key != "options":
            out[key] = _merge(out[key], value, origin, source, f"{dotted}.")
        else:
            out[key] = _copy_value(value)
            origin[dotted] = source
    return out


def _read_chain(path: Path, origin: dict[str, str], seen: tuple[Path, ...]) -> dict:
    """Read ``path`` and its ``base`` chain into one merged dict (bases first)."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ValueError(f"base files form a cycle: {chain}")
    if not path.is_file():
        where = f" (base of {seen[-1]})" if seen else ""
        raise FileNotFoundError(f"config file {path} does not exist{where}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from None
    base = data.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise TypeError(f"'base' in {path} must be a file name (string), got {base!r}")
    _check_schema(data, ExperimentConfig, str(path), "")
    _resolve_paths(data, path.parent)
    merged: dict = {}
    if base is not None:
        merged = _read_chain(path.parent / base, origin, (*seen, path))
    return _merge(merged, data, origin, str(path))


def _resolve_paths(data: dict, directory: Path) -> None:
    """Make the file paths a config names relative to that config file (not to the working directory)."""
    for section, key in (("pretrain", "init_weights"), ("data", "path")):
        table = data.get(section, {})
        if isinstance(table.get(key), str):
            table[key] = str((directory / table[key]).resolve())


# --- overrides -----------------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[str, Any]:
    """Split ``"admm.epochs=2"`` into ``("admm.epochs", 2)``; the value is read as TOML, else as a string.

    Examples
    --------
    >>> parse_override("admm.epochs=2")
    ('admm.epochs', 2)
    >>> parse_override("data.name=fashion-mnist")
    ('data.name', 'fashion-mnist')
    >>> parse_override("admm.targets=[0.5, 0.75]")
    ('admm.targets', [0.5, 0.75])
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"an override must look like key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string (`data.name=digits`)
    return key, value


def _nest(overrides: Mapping[str, Any]) -> dict:
    """``{"admm.epochs": 2}`` -> ``{"admm": {"epochs": 2}}`` (nested dicts are accepted as they are)."""
    out: dict = {}
    for key, value in overrides.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"override keys must be non-empty strings, got {key!r}")
        *parents, last = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r} conflicts with another override")
        node[last] = value
    return out


# --- the entry point -----------------------------------------------------------------------------------

def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Load an experiment: the defaults, then ``path`` (and its ``base`` chain), then ``overrides``.

    Parameters
    ----------
    path : path or None
        A TOML file; ``None`` starts from the defaults alone.
    overrides : dict, optional
        Dotted keys (``{"admm.epochs": 2}``) or nested tables, applied last.

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ValueError, TypeError
        Unknown key, wrong type, or an invalid value; the message names the key and the file (or
        ``<overrides>``) it came from.
    FileNotFoundError
        ``path`` or a ``base`` file does not exist.
    """
    origin: dict[str, str] = {}
    merged: dict = {} if path is None else _read_chain(Path(path), origin, ())
    if overrides:
        if not isinstance(overrides, Mapping):
            raise TypeError(f"overrides must be a dict, got {type(overrides).__name__}")
        nested = _nest(overrides)
        _check_schema(nested, ExperimentConfig, "<overrides>", "")
        merged = _merge(merged, nested, origin, "<overrides>")
    config = _build(ExperimentConfig, merged)
    validate(config, origin, "<defaults>")
    return config
