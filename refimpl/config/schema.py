"""The settings of an experiment: every knob of a pruning run, with its default, in one dataclass tree.

The defaults live here, each with a one-line comment (the nanoGPT way: all settings in one place, readable
top to bottom). An experiment is a short TOML file that overrides only what differs; its tables are the
sections below (``[data]``, ``[model]``, ``[pretrain]``, ``[admm]``, ...) and its top-level keys the fields
of :class:`ExperimentConfig`:

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

How a file is read (``base`` chains, overrides, the strict checks) is :mod:`refimpl.config.loading`; which
values are accepted is :mod:`refimpl.config.validation`.

Constraints
-----------
Each ``[[admm.constraints]]`` table is a :class:`refimpl.prune.Constraint` (``structure``, ``sparsity`` or
``keep``, extra projection arguments such as ``block_shape = [4, 4]``) applied to the parameters named by
exactly one of

* ``param = "conv2.weight"`` — one parameter;
* ``params = "conv"`` | ``"linear"`` | ``"all"`` (:data:`refimpl.prune.PARAM_SHORTCUTS`) | a glob pattern
  (``"layer1.*"``) | a list of names and patterns — expanded against the model by
  :func:`refimpl.prune.expand_constraints` ("all" = every convolution and linear weight,
  :attr:`refimpl.models.Network.prunable`; a pattern picks among those weights, so ``"layer1.*"`` skips
  the biases and batch-norm parameters).

Constraints act on the weights of convolution and linear layers only. Once the model is built, and
before any training, every expanded constraint is tried on its weight's shape: ``keep`` larger than the
number of groups, a ``block_shape`` larger than the weight, an ``m`` that does not divide the rows or a
bias named as ``param`` is a one-line error naming ``admm.constraints[i]`` and the parameter.

The magnitude baselines use the same constraints as their targets, so an ADMM experiment and its
magnitude twin differ only in ``method``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AdmmConfig",
    "CompactConfig",
    "DataConfig",
    "ExperimentConfig",
    "GradualConfig",
    "MagnitudeConfig",
    "METHODS",
    "ModelConfig",
    "OPTIMIZERS",
    "OutputConfig",
    "PretrainConfig",
    "PurifyConfig",
    "RetrainConfig",
    "SCHEDULES",
    "SslConfig",
    "TrainConfig",
]

#: Pruning methods a config may name.
METHODS = ("admm", "magnitude", "magnitude_iterative", "ssl", "gradual", "none")

#: Optimizers a training phase may name (``optimizer =``).
OPTIMIZERS = ("sgd", "adam")

#: Learning-rate schedules a training phase may name (``schedule =``).
SCHEDULES = ("constant", "step", "cosine")


@dataclass
class DataConfig:
    """Which data the run trains and evaluates on."""

    name: str = "digits"                # digits | mnist | fashion-mnist | cifar10 | synthetic | npz
    root: str | None = None             # directory with the files (searched before $REFIMPL_DATA)
    path: str | None = None             # .npz file with x_train, y_train, x_test, y_test (data.name = "npz");
                                        # relative to this config file
    download: bool = True               # fetch missing files (never needed for digits / synthetic / npz)
    limit_train: int | None = None      # train on the first N training images only (smoke runs); None = all
    limit_test: int | None = None       # evaluate on the first N test images only; None = all
    val_fraction: float = 0.0           # share of the training split held out (val_acc in the logs)
    split_seed: int | None = None       # seed of that split (None: the run's seed); fix it to compare
                                        # runs of several seeds on one validation split
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
    augment: str = "none"               # none | crop | crop_flip: random shifts of up to augment_pad pixels
                                        # (zero fill), and left-right mirroring (refimpl.train.augment)
    augment_pad: int = 2                # largest shift, in pixels


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
    rescale_dual: bool = False          # U *= rho_old / rho_new when rho grows (Boyd 3.4.1); False = the
                                        # authors' code (rho * U jumps by rho_growth at every update)
    update_every: int = 1               # Z/U update every this many epochs (or steps)
    update_unit: str = "epoch"          # epoch | step


@dataclass
class SslConfig(TrainConfig):
    """SSL group lasso (method = "ssl"): training with a proximal group-lasso step, then the hard cut."""

    epochs: int = 10                    # group-lasso epochs before the hard prune
    optimizer: str = "sgd"              # plain SGD (momentum 0): the step + prox is exact proximal gradient
    momentum: float = 0.0               # SGD momentum (> 0 makes the prox a heuristic, see prune.group_lasso)
    lr: float = 0.01                    # learning rate eta; the prox threshold of a step is eta * lam
    lam: float = 1e-3                   # penalty lam * sum_g ||W_g||_2; a group can stay zero only where
                                        # the loss gradient on it has norm <= lam


@dataclass
class GradualConfig(TrainConfig):
    """Gradual pruning (method = "gradual", Zhu & Gupta): masks tighten on a cubic schedule; no penalty."""

    epochs: int = 10                    # training epochs with the mask schedule, before the hard prune
    initial_sparsity: float = 0.0       # s_i at the first update (capped at each constraint's own target)
    start_epoch: float = 0.0            # t0: first mask update, in epochs of this phase (fractions allowed)
    end_epoch: float | None = None      # the ramp reaches each constraint's target by this epoch
                                        # (None: the end of the phase); later epochs train with fixed masks
    update_every: int = 20              # optimizer steps between mask updates (delta t)


@dataclass
class MagnitudeConfig:
    """Iterative magnitude pruning (method = "magnitude_iterative")."""

    rounds: int = 3                     # prune/retrain rounds; retrain.epochs is split between them
    schedule: str = "geometric"         # geometric | linear spacing of the intermediate targets


@dataclass
class RetrainConfig(TrainConfig):
    """Masked retraining after every hard prune (pruned weights stay exactly zero)."""

    epochs: int = 5                     # per pruning step (the total budget for magnitude_iterative)
    magnitude_gradient: str = "sum"     # sum | mean: what a unified block's shared magnitude trains with,
                                        # the chain rule's sum or the projected gradient's mean over the
                                        # block (refimpl.prune.UnifiedRetraining)


@dataclass
class PurifyConfig:
    """Network purification (Ma et al.): drop nearly empty, unimportant filters, then retrain."""

    enabled: bool = False               # run purification after the last retraining
    eta: float = 0.9                    # a filter with a share of zero weights above eta...
    sigma: float = 0.1                  # ...and relative L2 norm below sigma is removed (heuristic
                                        # defaults, not tuned: refimpl.compact.purify, Notes)
    epochs: int = 2                     # masked retraining after purification (retrain's optimizer settings)
    lr: float | None = None             # its learning rate; None: retrain.lr. A retraining whose cosine
                                        # schedule ended near 0 is undone in part by restarting at its peak


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
    test_every_epoch: bool = False      # test accuracy after every training epoch, in log.jsonl and the
                                        # report (accuracy-vs-budget curves; never used to choose anything)


@dataclass
class ExperimentConfig:
    """Every knob of one ``refimpl prune`` run; the defaults are a quick ADMM run on digits."""

    name: str = "experiment"            # run name (reports)
    description: str = ""               # one sentence for the reader of the report
    seed: int = 0                       # seeds the initial weights and every phase's shuffling
    method: str = "admm"                # admm | magnitude | magnitude_iterative | ssl | gradual | none
    threads: int = 0                    # numba and BLAS threads during the run; 0 = leave the defaults
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    admm: AdmmConfig = field(default_factory=AdmmConfig)
    ssl: SslConfig = field(default_factory=SslConfig)
    gradual: GradualConfig = field(default_factory=GradualConfig)
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
        # Imported here: loading and validation build on these dataclasses, so they import this module.
        from refimpl.config.loading import _build, _check_schema
        from refimpl.config.validation import validate

        _check_schema(data, cls, source, "")
        config = _build(cls, data)
        validate(config, {}, source)
        return config

    def constraint_specs(self) -> list[dict]:
        """Return the constraint tables as dicts (:func:`refimpl.prune.expand_constraints` resolves them)."""
        return [dict(c) for c in self.admm.constraints]
