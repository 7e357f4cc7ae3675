"""Experiment configuration: every knob of a pruning run in one dataclass, loaded from small TOML files.

* :mod:`refimpl.config.schema` — the settings dataclasses with their defaults (and the TOML format);
* :mod:`refimpl.config.loading` — :func:`load_config`: ``base`` chains, merging, strict key/type checks,
  overrides (:func:`parse_override` reads ``--set key=value``);
* :mod:`refimpl.config.validation` — :func:`validate`: every value checked, named with its file;
* :mod:`refimpl.config.toml_writer` — :func:`to_toml`, the run directory's ``config.toml``.

The constraint tables are turned into :class:`refimpl.prune.Constraint` objects for a built model by
:func:`refimpl.prune.expand_constraints` (re-exported here as before, with :func:`select_params`).
"""

from __future__ import annotations

from refimpl.config.loading import load_config, parse_override
from refimpl.config.schema import (
    METHODS,
    OPTIMIZERS,
    SCHEDULES,
    AdmmConfig,
    CompactConfig,
    DataConfig,
    ExperimentConfig,
    MagnitudeConfig,
    ModelConfig,
    OutputConfig,
    PretrainConfig,
    PurifyConfig,
    RetrainConfig,
    TrainConfig,
)
from refimpl.config.toml_writer import to_toml
from refimpl.config.validation import validate

# Constraint expansion lives with the constraints; the old names stay importable from here.
from refimpl.prune.constraints import PARAM_SHORTCUTS, expand_constraints, select_params

__all__ = [
    "AdmmConfig",
    "CompactConfig",
    "DataConfig",
    "ExperimentConfig",
    "MagnitudeConfig",
    "METHODS",
    "ModelConfig",
    "OPTIMIZERS",
    "OutputConfig",
    "PARAM_SHORTCUTS",
    "PretrainConfig",
    "PurifyConfig",
    "RetrainConfig",
    "SCHEDULES",
    "TrainConfig",
    "expand_constraints",
    "load_config",
    "parse_override",
    "select_params",
    "to_toml",
    "validate",
]
