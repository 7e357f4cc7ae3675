"""Training: optimizers, learning-rate schedules, the :class:`Trainer` with pruning hooks, checkpoints.

* :mod:`refimpl.train.optim` — :class:`SGD` and :class:`Adam` with PyTorch's exact update rules and state
  names (``momentum_buffer``, ``exp_avg``, ``exp_avg_sq``).
* :mod:`refimpl.train.schedules` — closed-form learning-rate schedules ``lr_at(epoch)`` with warm-up.
* :mod:`refimpl.train.trainer` — :class:`Trainer`, :class:`Hook`, :func:`evaluate`.
* :mod:`refimpl.train.checkpoint` — atomic, pickle-free ``.npz`` checkpoints.
* :mod:`refimpl.train.log` — the JSON-lines metrics log.
"""

from refimpl.train.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from refimpl.train.log import read_records
from refimpl.train.optim import SGD, Adam, Optimizer
from refimpl.train.schedules import ConstantLR, CosineAnnealingLR, MultiStepLR, Schedule, StepLR
from refimpl.train.trainer import Hook, Trainer, evaluate

__all__ = [
    "SGD",
    "Adam",
    "CheckpointError",
    "ConstantLR",
    "CosineAnnealingLR",
    "Hook",
    "MultiStepLR",
    "Optimizer",
    "Schedule",
    "StepLR",
    "Trainer",
    "evaluate",
    "latest_checkpoint",
    "load_checkpoint",
    "read_records",
    "save_checkpoint",
]
