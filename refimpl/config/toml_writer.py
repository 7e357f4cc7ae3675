"""Writing an :class:`~refimpl.config.schema.ExperimentConfig` back as TOML (the run's ``config.toml``).

The standard library reads TOML but does not write it; the configs hold only strings, numbers, booleans,
arrays, inline tables (``model.options``) and one array of tables (``[[admm.constraints]]``), so a small
writer for exactly those is enough. :func:`refimpl.config.load_config` of the result gives back an equal
config.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from refimpl.config.schema import ExperimentConfig

__all__ = ["to_toml"]


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, int) or math.isfinite(value) else json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def to_toml(config: ExperimentConfig) -> str:
    """Write ``config`` as TOML (``None`` values left out: absent means the default ``None``).

    ``load_config`` of the result gives back an equal config.
    """
    data = config.to_dict()
    lines = []
    for key, value in data.items():
        if not isinstance(value, dict) and value is not None:
            lines.append(f"{key} = {_toml_value(value)}")
    for section, table in data.items():
        if not isinstance(table, dict):
            continue
        lines.append(f"\n[{section}]")
        arrays_of_tables = []
        for key, value in table.items():
            if value is None:
                continue
            if key == "constraints":
                arrays_of_tables = value
                continue
            lines.append(f"{key} = {_toml_value(value)}")
        for spec in arrays_of_tables:
            lines.append(f"\n[[{section}.constraints]]")
            lines.extend(f"{k} = {_toml_value(v)}" for k, v in spec.items())
    return "\n".join(lines).lstrip() + "\n"
