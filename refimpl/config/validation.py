"""Value checks of an :class:`~refimpl.config.schema.ExperimentConfig`: every bad value named with its file.

:func:`validate` runs after the schema and type checks of :mod:`refimpl.config.loading` (and in
``ExperimentConfig.from_dict``) and raises at the first problem, naming the dotted key and the file the
value came from (or ``<overrides>``, ``<defaults>``):

* names: ``method``, ``data.name``, ``model.name``, ``model.engine``, optimizers and schedules, and the
  ``model.options`` the model's builder takes;
* ranges: sparsities and ``admm.targets`` in [0, 1] (targets strictly increasing), ``val_fraction`` in
  [0, 1), non-negative finite learning rates and penalties (``ssl.lam`` too), ``rho_growth >= 1``, counts
  ``>= 1``;
* constraint tables: exactly one of ``param`` / ``params``, a ``structure``, and arguments that
  :class:`refimpl.prune.Constraint` accepts (the same checks the pruning code makes, now rather than
  hours into a run); combinations such as progressive targets with ``keep``, and method ``ssl`` with a
  structure that has no group-lasso penalty or with progressive steps;
* achievable targets: a balanced sparsity (or vector ∧ block's ``vector_sparsity``) must lie within
  :data:`refimpl.projections.VECTOR_SPARSITY_TOLERANCE` of a multiple of ``1/vector_size``
  (:func:`refimpl.projections.check_vector_sparsity`; the error names the nearest achievable values).

Checks that need the model (does ``conv1.weight`` exist, does ``keep`` fit its filters) are made when
the constraints are expanded against the built model: :func:`refimpl.prune.expand_constraints`.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping

from refimpl.config.schema import METHODS, OPTIMIZERS, SCHEDULES, ExperimentConfig, TrainConfig
from refimpl.train.augment import AUGMENTATIONS

__all__ = ["validate"]


def _is_number(value) -> bool:
    """Tell whether ``value`` is an int or float, never a bool (``True`` is an ``int`` to Python)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


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
    """Check every value of ``config``; raise naming the key and its file at the first problem.

    Parameters
    ----------
    config : ExperimentConfig
    origin : dict, optional
        Dotted key -> the file (or ``"<overrides>"``) it was set in, as recorded while loading; a key
        inherits the source of its closest recorded parent.
    default_source : str
        The source named for keys nobody set (their defaults).

    Raises
    ------
    ValueError, TypeError
        ``"'<key>' in <source>: <problem>"``.
    """
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
    if d.name == "npz" and d.path is None:
        fail("data.name", "'npz' needs data.path, the .npz file with x_train, y_train, x_test, y_test")
    if d.path is not None and d.name != "npz":
        fail("data.path", f"applies only to data.name = 'npz' (your own .npz file), got data.name = "
                          f"{d.name!r}")
    if d.name == "npz" and d.root is not None:
        fail("data.root", "applies to the datasets found by name; data.name = 'npz' reads data.path alone")
    for key in ("limit_train", "limit_test"):
        value = getattr(d, key)
        if value is not None and value < 1:
            fail(f"data.{key}", f"must be >= 1 (or absent for all), got {value}")
    if not 0.0 <= d.val_fraction < 1.0:
        fail("data.val_fraction", f"must lie in [0, 1), got {d.val_fraction}")
    if d.split_seed is not None and d.split_seed < 0:
        fail("data.split_seed", f"must be >= 0 (or absent for the run's seed), got {d.split_seed}")
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
    for section in ("pretrain", "admm", "ssl", "gradual", "retrain"):
        _validate_training(getattr(config, section), section, fail)
    lam = config.ssl.lam
    if not (math.isfinite(lam) and lam >= 0):
        fail("ssl.lam", f"must be a finite number >= 0, got {lam}")
    _validate_gradual(config.gradual, fail)
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
        if not a.targets or not all(_is_number(t) for t in a.targets):
            fail("admm.targets", f"must be a non-empty array of numbers, got {a.targets!r}")
        if any(not 0 <= t <= 1 for t in a.targets):
            fail("admm.targets", f"every target must lie in [0, 1], got {a.targets}")
        if any(b <= a_ for a_, b in zip(a.targets, a.targets[1:], strict=False)):
            fail("admm.targets", f"must be strictly increasing, got {a.targets}")
    if not _is_integer(a.steps) or a.steps < 1:
        fail("admm.steps", f"must be an integer >= 1, got {a.steps!r}")
    if a.steps > 1 and a.targets is not None:
        fail("admm.steps", "give either admm.targets (one sparsity per step for every layer) or "
                           "admm.steps (per-layer intermediate targets), not both")
    if a.steps > 1 and config.method == "ssl":
        fail("admm.steps", "progressive steps apply to method 'admm'; method 'ssl' runs one group-lasso "
                           "phase before one hard prune")
    if a.steps > 1 and config.method == "gradual":
        fail("admm.steps", "progressive steps apply to method 'admm'; method 'gradual' ramps the masks "
                           "within one phase (gradual.update_every, gradual.end_epoch)")
    if config.magnitude.rounds < 1:
        fail("magnitude.rounds", f"must be >= 1, got {config.magnitude.rounds}")
    if config.magnitude.schedule not in ("geometric", "linear"):
        fail("magnitude.schedule", f"must be 'geometric' or 'linear', got {config.magnitude.schedule!r}")
    from refimpl.prune.unified_retraining import MAGNITUDE_GRADIENTS

    if config.retrain.magnitude_gradient not in MAGNITUDE_GRADIENTS:
        fail("retrain.magnitude_gradient",
             f"must be one of {list(MAGNITUDE_GRADIENTS)}, got {config.retrain.magnitude_gradient!r}")
    p = config.purify
    if not 0 <= p.eta <= 1:
        fail("purify.eta", f"must lie in [0, 1], got {p.eta}")
    if not (math.isfinite(p.sigma) and p.sigma >= 0):
        fail("purify.sigma", f"must be a finite number >= 0, got {p.sigma}")
    if p.epochs < 0:
        fail("purify.epochs", f"must be >= 0, got {p.epochs}")
    if p.lr is not None and not (math.isfinite(p.lr) and p.lr > 0):
        fail("purify.lr", f"must be a finite number > 0 (or absent: retrain.lr), got {p.lr}")
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
    if t.optimizer not in OPTIMIZERS:
        fail(f"{section}.optimizer", f"must be one of {list(OPTIMIZERS)}, got {t.optimizer!r}")
    if t.schedule not in SCHEDULES:
        fail(f"{section}.schedule", f"must be one of {list(SCHEDULES)}, got {t.schedule!r}")
    if t.augment not in AUGMENTATIONS:
        fail(f"{section}.augment", f"must be one of {list(AUGMENTATIONS)}, got {t.augment!r}")
    if t.augment_pad < 0:
        fail(f"{section}.augment_pad", f"must be >= 0, got {t.augment_pad}")
    for key in ("lr", "momentum", "weight_decay", "gamma"):
        value = getattr(t, key)
        if not (math.isfinite(value) and value >= 0):
            fail(f"{section}.{key}", f"must be a finite number >= 0, got {value}")
    if t.optimizer == "sgd" and not t.momentum < 1:
        fail(f"{section}.momentum", f"SGD momentum must lie in [0, 1), got {t.momentum}")
    if t.nesterov and t.optimizer != "sgd":
        fail(f"{section}.nesterov", "Nesterov momentum applies to optimizer 'sgd' only")
    if t.nesterov and t.momentum == 0:
        fail(f"{section}.nesterov", "Nesterov momentum needs momentum > 0")
    if t.step_size is not None and t.step_size < 1:
        fail(f"{section}.step_size", f"must be >= 1, got {t.step_size}")


def _validate_constraints(config: ExperimentConfig, fail) -> None:
    from refimpl.prune.constraints import Constraint
    from refimpl.prune.group_lasso import GROUP_LASSO_STRUCTURES

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
        _check_achievable(config, spec, key, fail)
        if config.method == "ssl" and spec["structure"] not in GROUP_LASSO_STRUCTURES:
            fail(f"{key}.structure", f"method 'ssl' needs a structure with a group-lasso penalty, one of "
                                     f"{list(GROUP_LASSO_STRUCTURES)}, got {spec['structure']!r}")
        if config.method == "gradual" and not _has_gradual_target(spec):
            fail(key, "method 'gradual' ramps each constraint's sparsity to its target: give 'sparsity' "
                      "(not 'keep'; vector_block: 'total_sparsity' and 'vector_share'; nm ramps to 1 - n/m)")
        if config.method == "magnitude_iterative" and config.magnitude.rounds > 1 and "sparsity" not in spec:
            fail(key, "iterative magnitude pruning needs 'sparsity' targets (not 'keep')")
        if config.admm.targets is not None and "sparsity" not in spec:
            fail(key, "progressive targets replace 'sparsity'; give 'sparsity' (not 'keep')")


def _check_achievable(config: ExperimentConfig, spec: Mapping, key: str, fail) -> None:
    """Refuse a per-vector target the vector grid cannot meet (see ``check_vector_sparsity``).

    Balanced sparsity (and the vector part of vector ∧ block) keeps a whole number of every vector's ``V``
    entries. The final target of the constraint is checked — its ``sparsity``, or the last of
    ``admm.targets``, which replaces it — since that is what the run promises; intermediate targets
    (progressive steps, iterative rounds, the gradual schedule) are rounded by the counting rule.
    """
    from refimpl.projections.blocks import check_vector_sparsity

    structure = spec.get("structure")
    if structure == "balanced":
        targets = config.admm.targets
        if isinstance(targets, list) and targets and _is_number(targets[-1]):
            amount, where, name = targets[-1], "admm.targets", f"the final target (for {key})"
        else:
            amount, where, name = spec.get("sparsity"), f"{key}.sparsity", "sparsity"
    elif structure == "vector_block":
        amount, where, name = spec.get("vector_sparsity"), f"{key}.vector_sparsity", "vector_sparsity"
    else:
        return
    if amount is None or "vector_size" not in spec:
        return  # keep= / vector_keep= are whole counts already; a missing vector_size failed above
    try:
        check_vector_sparsity(amount, spec["vector_size"], name=name)
    except (TypeError, ValueError) as err:
        fail(where, str(err), type(err))


def _has_gradual_target(spec: Mapping) -> bool:
    """Whether a constraint table names a sparsity the gradual schedule can ramp to (``final_sparsity``)."""
    structure = spec.get("structure")
    if structure == "nm":
        return True
    if structure == "vector_block":
        return spec.get("total_sparsity") is not None
    return spec.get("sparsity") is not None


def _validate_gradual(g, fail) -> None:
    """Check the gradual schedule: s_i in [0, 1], 0 <= start_epoch <= end_epoch <= epochs, update_every."""
    if not (_is_number(g.initial_sparsity) and 0 <= g.initial_sparsity <= 1):
        fail("gradual.initial_sparsity", f"must lie in [0, 1], got {g.initial_sparsity}")
    if not (math.isfinite(g.start_epoch) and 0 <= g.start_epoch <= g.epochs):
        fail("gradual.start_epoch", f"must lie in [0, gradual.epochs = {g.epochs}], got {g.start_epoch}")
    end = g.end_epoch
    if end is not None and not (math.isfinite(end) and g.start_epoch <= end <= g.epochs):
        fail("gradual.end_epoch", f"must lie in [gradual.start_epoch = {g.start_epoch}, gradual.epochs = "
                                  f"{g.epochs}] (or be absent: the end of the phase), got {g.end_epoch}")
    if not _is_integer(g.update_every) or g.update_every < 1:
        fail("gradual.update_every", f"must be an integer >= 1 (optimizer steps), got {g.update_every!r}")
