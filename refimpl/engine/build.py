"""Building a run's objects from its configuration: the model, an optimizer, a schedule, a phase's seed.

The defaults of every setting live in :mod:`refimpl.config.schema`; these functions only translate a
settings object into library objects, so ``refimpl train``, ``prune``, ``demo`` and ``sweep`` build the
same things from the same settings.
"""

from __future__ import annotations

import numpy as np

__all__ = ["build_model_for", "build_optimizer", "build_schedule", "phase_seed"]


def build_optimizer(train, params: dict[str, np.ndarray]):
    """Return the optimizer a :class:`~refimpl.config.TrainConfig` describes, on the arrays ``params``."""
    from refimpl.train import SGD, Adam

    if train.optimizer == "adam":
        return Adam(params, lr=train.lr, weight_decay=train.weight_decay)
    return SGD(params, lr=train.lr, momentum=train.momentum, nesterov=train.nesterov,
               weight_decay=train.weight_decay)


def build_schedule(train, epochs: int):
    """Return the learning-rate schedule of a phase of ``epochs`` epochs (a pure function of the epoch)."""
    from refimpl.train import ConstantLR, CosineAnnealingLR, StepLR

    if train.schedule == "step":
        return StepLR(train.lr, step_size=train.step_size or max(1, epochs // 3), gamma=train.gamma)
    if train.schedule == "cosine":
        return CosineAnnealingLR(train.lr, T_max=max(1, epochs))
    return ConstantLR(train.lr)


def build_model_for(config, input_shape, num_classes: int):
    """Build the model of an :class:`~refimpl.config.ExperimentConfig` for inputs ``(C, H, W)``.

    The initial weights are drawn from ``numpy.random.default_rng(config.seed)``.
    """
    from refimpl.models import build_model, set_engine

    channels, size, _ = (int(d) for d in input_shape)
    model = build_model(config.model.name, num_classes=int(num_classes), in_channels=channels,
                        input_size=size, rng=np.random.default_rng(config.seed),
                        dtype=np.dtype(config.data.dtype), **config.model.options)
    return set_engine(model, config.model.engine)


def phase_seed(seed: int, index: int) -> int:
    """Return an independent trainer seed for phase number ``index`` of a run seeded with ``seed``.

    ``SeedSequence([seed, index])`` spreads nearby pairs far apart, so phases never share a shuffling.
    """
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
