"""Experiment configuration: every knob of a pruning run in one dataclass, loaded from small TOML files.

The defaults live here, each with a one-line comment (the nanoGPT way: all settings in one place, readable
top to bottom). An experiment is a short TOML file that overrides only what differs:

.. code-block:: toml

    # paper_repro/configs/lenet5_fashion_admm_filter_shape.toml
    base = "lenet5_fashion_dense.toml"    # start from another file (paths relative to this one)
    name = "lenet5-fashion-admm-filter-shape"
    method = "admm"

    [admm]
    epochs = 10

    [[admm.constraints]]                  # one table per constraint, an array of tables
    params = "conv"                       # shortcut: every convolution weight ("all", "linear", a list...)
    structure = "shapes"
    sparsity = 0.8

Loading (:func:`load_config`) is strict, because a misspelt key silently ignored costs a whole run:

* an **unknown key** or a value of the **wrong type** is a ``ValueError`` / ``TypeError`` naming the key
  and the file it came from;
* values are checked (sparsities in [0, 1], structures known to :data:`refimpl.projections.PROJECTIONS`,
  method, dataset, model and optimizer names, increasing ``targets``);
* a file may name a ``base`` file; bases chain (cycles are an error) and tables merge key by key, arrays
  (e.g. ``constraints``) are replaced as a whole;
* ``overrides`` (e.g. ``{"admm.epochs": 2}`` from ``refimpl prune --set admm.epochs=2``) go on top.

``config.to_dict()`` gives plain TOML/JSON values and ``ExperimentConfig.from_dict`` reads them back:
the run directory keeps ``config.toml`` and ``config.json``, and either reloads to the same config.

Constraints
-----------
Each ``[[admm.constraints]]`` table is a :class:`refimpl.prune.Constraint` (``structure``, ``sparsity`` or
``keep``, extra projection arguments such as ``block_shape = [4, 4]``) applied to the parameters named by
exactly one of

* ``param = "conv2.weight"`` — one parameter;
* ``params = "conv"`` | ``"linear"`` | ``"all"`` | a glob pattern (``"layer1.*"``) | a list of names and
  patterns — expanded against the model by :func:`expand_constraints` ("all" = every convolution and
  linear weight, :attr:`refimpl.models.Network.prunable`).

The magnitude baselines use the same constraints as their targets, so an ADMM experiment and its
magnitude twin differ only in ``method``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
import json
import math
import numbers
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "AdmmConfig",
    "CompactConfig",
    "DataConfig",
    "ExperimentConfig",
    "MagnitudeConfig",
    "METHODS",
    "ModelConfig",
    "OutputConfig",
    "PretrainConfig",
    "PurifyConfig",
    "RetrainConfig",
    "TrainConfig",
    "expand_constraints",
    "load_config",
    "parse_override",
    "select_params",
    "to_toml",
    "validate",
]

#: Pruning methods a config may name.
METHODS = ("admm", "magnitude", "magnitude_iterative", "none")

#: ``params =`` keywords and the layer kinds they select.
PARAM_SHORTCUTS = ("all", "conv", "linear")

_OPTIMIZERS = ("sgd", "adam")
_SCHEDULES = ("constant", "step", "cosine")


# --- the settings --------------------------------------------------------------------------------------

@dataclass
class DataConfig:
    """Which data the run trains and evaluates on."""

    name: str = "digits"                # digits | mnist | fashion-mnist | cifar10 | synthetic
    root: str | None = None             # directory with the files (searched before $REFIMPL_DATA)
    download: bool = True               # fetch missing files (never needed for digits / synthetic)
    limit_train: int | None = None      # train on the first N training images only (smoke runs); None = all
    limit_test: int | None = None       # evaluate on the first N test images only; None = all
    val_fraction: float = 0.0           # share of the training split held out (val_acc in the logs)
    dtype: str = "float32"              # float32 | float64


@dataclass
class ModelConfig:
    """The architecture (a key of :data:`refimpl.models.MODELS`) and its builder's extra arguments."""

    name: str = "lenet5"                # lenet5 | lenet300_100 | vgg_small | resnet_small
    options: dict = field(default_factory=dict)  # extra builder keywords, e.g. {width = 16} for vgg_small
    engine: str = "numba"               # kernel engine of conv/pool layers: numba | numpy


@dataclass
class TrainConfig:
    """Optimizer and schedule of one training phase (pretrain, ADMM and retrain each have their own)."""

    epochs: int = 10                    # epochs of the phase (0 skips its training)
    batch_size: int = 64                # mini-batch size
    optimizer: str = "adam"             # adam | sgd
    lr: float = 1e-3                    # learning rate (the schedule's base value)
    momentum: float = 0.9               # SGD momentum
    nesterov: bool = False              # Nesterov momentum (SGD only)
    weight_decay: float = 0.0           # L2 penalty added to the gradient
    schedule: str = "constant"          # constant | step | cosine (cosine decays to 0 at `epochs`)
    step_size: int | None = None        # epochs between step decays (None: max(1, epochs // 3))
    gamma: float = 0.1                  # factor of the step schedule


@dataclass
class PretrainConfig(TrainConfig):
    """Dense training before pruning, or loading finished weights instead."""

    epochs: int = 10                    # dense training epochs
    init_weights: str | None = None     # .npz of trained weights (relative to this file); no training


@dataclass
class AdmmConfig(TrainConfig):
    """The pruning targets and the ADMM phase (the W-steps are ordinary training with these settings)."""

    epochs: int = 10                    # ADMM epochs per pruning step
    constraints: list = field(default_factory=list)  # [[admm.constraints]] tables (module docstring)
    targets: list | None = None         # progressive steps, e.g. [0.5, 0.75, 0.9] (replace each sparsity)
    steps: int = 1                      # method admm: progressive steps towards each constraint's own
                                        # sparsity (per-layer intermediate targets spaced by
                                        # magnitude.schedule, the same as magnitude_iterative's rounds)
    rho: float = 1e-3                   # initial penalty rho_0
    rho_growth: float = 1.3             # rho *= rho_growth after every Z/U update (1 = constant rho)
    rho_max: float = 1.0                # cap of rho
    update_every: int = 1               # Z/U update every this many epochs (or steps)
    update_unit: str = "epoch"          # epoch | step


@dataclass
class MagnitudeConfig:
    """Iterative magnitude pruning (method = "magnitude_iterative")."""

    rounds: int = 3                     # prune/retrain rounds; retrain.epochs is split between them
    schedule: str = "geometric"         # geometric | linear spacing of the intermediate targets


@dataclass
class RetrainConfig(TrainConfig):
    """Masked retraining after every hard prune (pruned weights stay exactly zero)."""

    epochs: int = 5                     # per pruning step (the total budget for magnitude_iterative)


@dataclass
class PurifyConfig:
    """Network purification (Ma et al.): drop nearly empty, unimportant filters, then retrain."""

    enabled: bool = False               # run purification after the last retraining
    eta: float = 0.9                    # a filter with a share of zero weights above eta...
    sigma: float = 0.1                  # ...and relative L2 norm below which the filter is removed
    epochs: int = 2                     # masked retraining after purification (retrain's optimizer settings)


@dataclass
class CompactConfig:
    """Unused-path removal: the smaller dense network computing the masked network's function."""

    enabled: bool = True                # build model_compact.npz and compact.json
    fold_bias: bool = True              # fold constant outputs of dead filters into the readers' biases


@dataclass
class OutputConfig:
    """What the run writes besides the fixed files."""

    checkpoint_every: int = 1           # trainer checkpoint every this many epochs (resume granularity)
    eval_batch_size: int = 500          # batch size of test-set evaluations (memory only; same result)


@dataclass
class ExperimentConfig:
    """Every knob of one ``refimpl prune`` run; the defaults are a quick ADMM run on digits."""

    name: str = "experiment"            # run name (reports)
    description: str = ""               # one sentence for the reader of the report
    seed: int = 0                       # seeds the initial weights and every phase's shuffling
    method: str = "admm"                # admm | magnitude | magnitude_iterative | none (dense baseline)
    threads: int = 0                    # numba and BLAS threads during the run; 0 = leave the defaults
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    admm: AdmmConfig = field(default_factory=AdmmConfig)
    magnitude: MagnitudeConfig = field(default_factory=MagnitudeConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    purify: PurifyConfig = field(default_factory=PurifyConfig)
    compact: CompactConfig = field(default_factory=CompactConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (TOML/JSON values; ``None`` entries included)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> ExperimentConfig:
        """Build and validate a config from a nested dict (missing keys take their defaults)."""
        _check_schema(data, cls, source, "")
        config = _build(cls, data)
        validate(config, {}, source)
        return config

    def constraint_specs(self) -> list[dict]:
        """Return the constraint tables as dicts (:func:`expand_constraints` resolves them)."""
        return [dict(c) for c in self.admm.constraints]


# --- loading -------------------------------------------------------------------------------------------

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
    pretrain = data.get("pretrain", {})
    if isinstance(pretrain.get("init_weights"), str):
        pretrain["init_weights"] = str((directory / pretrain["init_weights"]).resolve())


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


# --- validation ----------------------------------------------------------------------------------------

def _fail(key: str, message: str, origin: Mapping[str, str], default: str, exc=ValueError):
    # The most specific recorded source: "admm.constraints" covers "admm.constraints[1].sparsity".
    source = default
    parts = key.replace("[", ".[").split(".")
    for n in range(len(parts), 0, -1):
        candidate = ".".join(parts[:n]).replace(".[", "[")
        if candidate in origin:
            source = origin[candidate]
            break
    raise exc(f"{key!r} in {source}: {message}")


def validate(config: ExperimentConfig, origin: Mapping[str, str] | None = None,
             default_source: str = "<config>") -> None:
    """Check every value of ``config``; raise naming the key and its file at the first problem."""
    from refimpl.data import DATASETS
    from refimpl.models import MODELS

    origin = origin or {}

    def fail(key, message, exc=ValueError):
        _fail(key, message, origin, default_source, exc)

    if config.method not in METHODS:
        fail("method", f"must be one of {list(METHODS)}, got {config.method!r}")
    for key in ("seed", "threads"):
        if getattr(config, key) < 0:
            fail(key, f"must be >= 0, got {getattr(config, key)}")
    d = config.data
    if d.name not in DATASETS:
        fail("data.name", f"must be one of {list(DATASETS)}, got {d.name!r}")
    for key in ("limit_train", "limit_test"):
        value = getattr(d, key)
        if value is not None and value < 1:
            fail(f"data.{key}", f"must be >= 1 (or absent for all), got {value}")
    if not 0.0 <= d.val_fraction < 1.0:
        fail("data.val_fraction", f"must lie in [0, 1), got {d.val_fraction}")
    if d.dtype not in ("float32", "float64"):
        fail("data.dtype", f"must be 'float32' or 'float64', got {d.dtype!r}")
    m = config.model
    if m.name not in MODELS:
        fail("model.name", f"must be one of {sorted(MODELS)}, got {m.name!r}")
    if m.engine not in ("numba", "numpy"):
        fail("model.engine", f"must be 'numba' or 'numpy', got {m.engine!r}")
    reserved = {"num_classes", "in_channels", "input_size", "rng", "dtype"}
    accepted = set(inspect.signature(MODELS[m.name]).parameters) - reserved
    for key in m.options:
        if key not in accepted:
            fail(f"model.options.{key}", f"{m.name} takes no such option (it takes {sorted(accepted)})")
    for section in ("pretrain", "admm", "retrain"):
        _validate_training(getattr(config, section), section, fail)
    a = config.admm
    for key in ("rho", "rho_max"):
        if not (math.isfinite(getattr(a, key)) and getattr(a, key) >= 0):
            fail(f"admm.{key}", f"must be a finite number >= 0, got {getattr(a, key)}")
    if a.rho_growth < 1:
        fail("admm.rho_growth", f"must be >= 1 (rho never shrinks), got {a.rho_growth}")
    if a.rho_max < a.rho:
        fail("admm.rho_max", f"must be >= admm.rho = {a.rho}, got {a.rho_max}")
    if a.update_every < 1:
        fail("admm.update_every", f"must be >= 1, got {a.update_every}")
    if a.update_unit not in ("epoch", "step"):
        fail("admm.update_unit", f"must be 'epoch' or 'step', got {a.update_unit!r}")
    _validate_constraints(config, fail)
    if a.targets is not None:
        if config.method not in ("admm", "magnitude"):
            fail("admm.targets", f"progressive targets need method 'admm' or 'magnitude', got "
                                 f"{config.method!r}")
        if not a.targets or not all(_type_ok(t, float) for t in a.targets):
            fail("admm.targets", f"must be a non-empty array of numbers, got {a.targets!r}")
        if any(not 0 <= t <= 1 for t in a.targets):
            fail("admm.targets", f"every target must lie in [0, 1], got {a.targets}")
        if any(b <= a_ for a_, b in zip(a.targets, a.targets[1:], strict=False)):
            fail("admm.targets", f"must be strictly increasing, got {a.targets}")
    if not _type_ok(a.steps, int) or a.steps < 1:
        fail("admm.steps", f"must be an integer >= 1, got {a.steps!r}")
    if a.steps > 1 and a.targets is not None:
        fail("admm.steps", "give either admm.targets (one sparsity per step for every layer) or "
                           "admm.steps (per-layer intermediate targets), not both")
    if config.magnitude.rounds < 1:
        fail("magnitude.rounds", f"must be >= 1, got {config.magnitude.rounds}")
    if config.magnitude.schedule not in ("geometric", "linear"):
        fail("magnitude.schedule", f"must be 'geometric' or 'linear', got {config.magnitude.schedule!r}")
    p = config.purify
    if not 0 <= p.eta <= 1:
        fail("purify.eta", f"must lie in [0, 1], got {p.eta}")
    if not (math.isfinite(p.sigma) and p.sigma >= 0):
        fail("purify.sigma", f"must be a finite number >= 0, got {p.sigma}")
    if p.epochs < 0:
        fail("purify.epochs", f"must be >= 0, got {p.epochs}")
    if p.enabled and config.method == "none":
        fail("purify.enabled", "purification needs a pruning method (method is 'none')")
    if config.output.checkpoint_every < 1:
        fail("output.checkpoint_every", f"must be >= 1, got {config.output.checkpoint_every}")
    if config.output.eval_batch_size < 1:
        fail("output.eval_batch_size", f"must be >= 1, got {config.output.eval_batch_size}")


def _validate_training(t: TrainConfig, section: str, fail) -> None:
    if t.epochs < 0:
        fail(f"{section}.epochs", f"must be >= 0, got {t.epochs}")
    if t.batch_size < 1:
        fail(f"{section}.batch_size", f"must be >= 1, got {t.batch_size}")
    if t.optimizer not in _OPTIMIZERS:
        fail(f"{section}.optimizer", f"must be one of {list(_OPTIMIZERS)}, got {t.optimizer!r}")
    if t.schedule not in _SCHEDULES:
        fail(f"{section}.schedule", f"must be one of {list(_SCHEDULES)}, got {t.schedule!r}")
    for key in ("lr", "momentum", "weight_decay", "gamma"):
        value = getattr(t, key)
        if not (math.isfinite(value) and value >= 0):
            fail(f"{section}.{key}", f"must be a finite number >= 0, got {value}")
    if t.nesterov and t.optimizer != "sgd":
        fail(f"{section}.nesterov", "Nesterov momentum applies to optimizer 'sgd' only")
    if t.step_size is not None and t.step_size < 1:
        fail(f"{section}.step_size", f"must be >= 1, got {t.step_size}")


def _validate_constraints(config: ExperimentConfig, fail) -> None:
    from refimpl.prune.constraints import Constraint

    specs = config.admm.constraints
    if config.method != "none" and not specs:
        fail("admm.constraints", f"method {config.method!r} needs at least one [[admm.constraints]] table")
    for i, spec in enumerate(specs):
        key = f"admm.constraints[{i}]"
        if not isinstance(spec, Mapping):
            fail(key, f"must be a table, got {spec!r}", TypeError)
        if ("param" in spec) == ("params" in spec):
            fail(key, "give exactly one of 'param' (one name) or 'params' (a shortcut, pattern or list)")
        selector = spec.get("param", spec.get("params"))
        if isinstance(selector, list):
            if not selector or not all(isinstance(s, str) and s for s in selector):
                fail(f"{key}.params", f"must be a non-empty array of names, got {selector!r}", TypeError)
        elif not isinstance(selector, str) or not selector:
            fail(key, f"'param'/'params' must be a name, got {selector!r}", TypeError)
        if "structure" not in spec:
            fail(key, "needs a 'structure' (e.g. 'filters', 'shapes', 'unstructured')")
        rest = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()
                if k not in ("param", "params")}
        try:
            Constraint("<check>", **rest)  # the same checks the pruning code makes, now rather than later
        except (TypeError, ValueError) as err:
            fail(key, str(err), type(err))
        if config.method == "magnitude_iterative" and config.magnitude.rounds > 1 and "sparsity" not in spec:
            fail(key, "iterative magnitude pruning needs 'sparsity' targets (not 'keep')")
        if config.admm.targets is not None and "sparsity" not in spec:
            fail(key, "progressive targets replace 'sparsity'; give 'sparsity' (not 'keep')")


# --- constraints against a model -----------------------------------------------------------------------

def _weights_by_kind(model) -> dict[str, list[str]]:
    from refimpl.nn.conv import Conv2d
    from refimpl.nn.linear import Linear

    kinds: dict[str, list[str]] = {"conv": [], "linear": [], "all": []}
    for name, module in model.named_modules():
        if isinstance(module, (Conv2d, Linear)):
            weight = f"{name}.weight"
            kinds["conv" if isinstance(module, Conv2d) else "linear"].append(weight)
            kinds["all"].append(weight)
    return kinds


def select_params(selector: str | list[str], model) -> list[str]:
    """Expand a ``params`` selector against ``model`` into weight names, in forward order.

    ``"all"`` / ``"conv"`` / ``"linear"`` select the convolution and/or linear weights; any other string is
    an exact parameter name or a glob pattern (``"layer1.*.weight"``); a list is the union of its items.
    Raises ``ValueError`` when an item selects nothing.
    """
    kinds = _weights_by_kind(model)
    names = list(model.parameters())
    items = [selector] if isinstance(selector, str) else list(selector)
    chosen: set[str] = set()
    for item in items:
        if item in PARAM_SHORTCUTS:
            hits = kinds[item]
        else:
            hits = [n for n in names if n == item or fnmatch.fnmatchcase(n, item)]
        if not hits:
            raise ValueError(f"params item {item!r} selects no parameter of the model "
                             f"(weights: {kinds['all']})")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def expand_constraints(specs: list[Mapping[str, Any]], model) -> list:
    """Turn config constraint tables into :class:`refimpl.prune.Constraint` objects for ``model``.

    A table with ``params`` becomes one constraint per selected weight (same structure and amount);
    ``param`` names one weight. Order: tables in order, each table's weights in forward order.
    """
    from refimpl.prune.constraints import Constraint

    out = []
    for i, spec in enumerate(specs):
        rest = {k: v for k, v in spec.items() if k not in ("param", "params")}
        if "param" in spec:
            if spec["param"] not in model.parameters():
                raise ValueError(f"admm.constraints[{i}].param: the model has no parameter {spec['param']!r}")
            names = [spec["param"]]
        else:
            try:
                names = select_params(spec["params"], model)
            except ValueError as err:
                raise ValueError(f"admm.constraints[{i}].params: {err}") from None
        out.extend(Constraint.from_dict({"param": name, **rest}) for name in names)
    return out


# --- writing -------------------------------------------------------------------------------------------

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
