r"""Learning-rate schedules as pure functions of the epoch: ``schedule.lr_at(epoch) -> float``.

A schedule here has no internal counter (unlike ``torch.optim.lr_scheduler``, which is stepped): the rate
of epoch ``e`` is computed from ``e`` alone, in closed form. That is what makes resuming a run exact — the
checkpoint stores the epoch, and nothing else about the schedule can drift. The formulas are PyTorch's
closed forms, so the values equal what ``StepLR``, ``MultiStepLR`` and ``CosineAnnealingLR`` report after
``e`` calls of ``scheduler.step()`` (the tests check 30 epochs against torch).

Every schedule takes an optional **linear warm-up** (Goyal et al., 2017): during the first
``warmup_epochs`` epochs the rate rises linearly from ``warmup_start_factor * base_lr`` towards ``base_lr``

.. math:: \eta_e = \eta_0\Big(s + (1 - s)\,\frac{e}{W}\Big), \qquad 0 \le e < W,

(the values of ``torch.optim.lr_scheduler.LinearLR(start_factor=s, total_iters=W)``), and from epoch ``W``
on the main schedule is used at the **absolute** epoch (choice: step decays keep their milestones, as in
Goyal et al. and timm; a cosine counts its period from epoch 0).
"""

from __future__ import annotations

import bisect
import math
import numbers

from refimpl._validation import check_positive_int, check_probability
from refimpl.train.optim import _check_nonnegative

__all__ = ["ConstantLR", "CosineAnnealingLR", "MultiStepLR", "Schedule", "StepLR"]


def _check_epoch(epoch) -> int:
    if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
        raise TypeError(f"epoch must be an integer, got {epoch!r}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    return int(epoch)


class Schedule:
    """Base class: ``lr_at(epoch)`` = warm-up for the first epochs, then the subclass's :meth:`_lr`.

    Parameters
    ----------
    base_lr : float
        The initial learning rate (``>= 0``).
    warmup_epochs : int, default 0
        Length ``W`` of the linear warm-up; 0 disables it.
    warmup_start_factor : float, default 0.1
        ``s`` in ``(0, 1]``: the warm-up starts at ``s * base_lr``.
    """

    def __init__(self, base_lr: float, *, warmup_epochs: int = 0, warmup_start_factor: float = 0.1) -> None:
        self.base_lr = _check_nonnegative(base_lr, "base_lr")
        self.warmup_epochs = check_positive_int(warmup_epochs, "warmup_epochs", minimum=0)
        self.warmup_start_factor = check_probability(warmup_start_factor, "warmup_start_factor")
        if self.warmup_start_factor == 0.0:
            raise ValueError("warmup_start_factor must be > 0 (a zero rate would waste the first epoch)")

    def lr_at(self, epoch: int) -> float:
        """Return the learning rate for (0-based) ``epoch``; a pure function of ``epoch``."""
        epoch = _check_epoch(epoch)
        if epoch < self.warmup_epochs:
            s = self.warmup_start_factor
            return self.base_lr * (s + (1.0 - s) * epoch / self.warmup_epochs)
        return self._lr(epoch)

    def _lr(self, epoch: int) -> float:
        raise NotImplementedError

    def config(self) -> dict:
        """Return the constructor arguments as JSON-able values (stored in checkpoints for the record)."""
        return {"type": type(self).__name__, **{k: v for k, v in vars(self).items() if not k.startswith("_")}}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")
        return f"{type(self).__name__}({args})"


class ConstantLR(Schedule):
    r"""The same rate every epoch: :math:`\eta_e = \eta_0` (after the optional warm-up).

    Examples
    --------
    >>> ConstantLR(0.1).lr_at(7)
    0.1
    >>> [round(ConstantLR(0.1, warmup_epochs=2, warmup_start_factor=0.5).lr_at(e), 3) for e in range(3)]
    [0.05, 0.075, 0.1]
    """

    def _lr(self, epoch: int) -> float:
        return self.base_lr


class StepLR(Schedule):
    r"""Decay by ``gamma`` every ``step_size`` epochs: :math:`\eta_e = \eta_0\,\gamma^{\lfloor e/s \rfloor}`.

    Same values as ``torch.optim.lr_scheduler.StepLR(step_size, gamma)``.

    Examples
    --------
    >>> [StepLR(1.0, step_size=2, gamma=0.5).lr_at(e) for e in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, base_lr: float, step_size: int, gamma: float = 0.1, **warmup) -> None:
        super().__init__(base_lr, **warmup)
        self.step_size = check_positive_int(step_size, "step_size")
        self.gamma = _check_nonnegative(gamma, "gamma")

    def _lr(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)


class MultiStepLR(Schedule):
    r"""Decay by ``gamma`` at each milestone: :math:`\eta_e = \eta_0\,\gamma^{|\{m_i \le e\}|}`.

    Same values as ``torch.optim.lr_scheduler.MultiStepLR(milestones, gamma)``; repeated milestones decay
    repeatedly (as in torch, which counts them).

    Examples
    --------
    >>> [MultiStepLR(1.0, milestones=[1, 3], gamma=0.1).lr_at(e) for e in range(4)]
    [1.0, 0.1, 0.1, 0.010000000000000002]
    """

    def __init__(self, base_lr: float, milestones, gamma: float = 0.1, **warmup) -> None:
        super().__init__(base_lr, **warmup)
        milestones = list(milestones)
        for i, m in enumerate(milestones):
            check_positive_int(m, f"milestones[{i}]", minimum=0)
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = _check_nonnegative(gamma, "gamma")

    def _lr(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


class CosineAnnealingLR(Schedule):
    r"""Cosine annealing (Loshchilov & Hutter, 2017, without restarts), PyTorch's closed form.

    .. math:: \eta_e = \eta_{min} + \tfrac12(\eta_0 - \eta_{min})\Big(1 + \cos\frac{\pi e}{T_{max}}\Big)

    Parameters
    ----------
    base_lr : float
    T_max : int
        Half period: the rate reaches ``eta_min`` at epoch ``T_max``.
    eta_min : float, default 0.0

    Notes
    -----
    As in PyTorch, the formula is not clamped: past ``T_max`` the rate rises again along the cosine. Set
    ``T_max`` to the number of epochs for the usual single decay.

    References
    ----------
    .. [1] I. Loshchilov, F. Hutter, "SGDR: Stochastic gradient descent with warm restarts", ICLR 2017.

    Examples
    --------
    >>> [round(CosineAnnealingLR(1.0, T_max=2).lr_at(e), 12) for e in range(3)]
    [1.0, 0.5, 0.0]
    """

    def __init__(self, base_lr: float, T_max: int, eta_min: float = 0.0, **warmup) -> None:  # noqa: N803
        super().__init__(base_lr, **warmup)
        self.T_max = check_positive_int(T_max, "T_max")
        self.eta_min = _check_nonnegative(eta_min, "eta_min")

    def _lr(self, epoch: int) -> float:
        cosine = 1.0 + math.cos(math.pi * epoch / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * cosine / 2.0
