r"""First-order optimizers with PyTorch's exact semantics: :class:`SGD` (with momentum) and :class:`Adam`.

An optimizer holds a dict of **live** parameter arrays (``model.parameters()``) and updates them **in
place** from a dict of gradients with the same names, so every view of a weight (the model's, a pruning
hook's) sees the new values. The update rules are PyTorch's, line for line, so a trajectory computed here
matches ``torch.optim.SGD`` / ``torch.optim.Adam`` to rounding error (the tests assert 1e-12 in float64).

Per-parameter state lives in ``optimizer.state[name]`` under PyTorch's names (``"momentum_buffer"``;
``"exp_avg"``, ``"exp_avg_sq"``). **Invariant:** every array in ``state[name]`` has the shape of
``params[name]``, so masked retraining can zero the state of pruned weights with one boolean mask
(``for buf in opt.state[name].values(): buf[~mask] = 0``). Adam's step counts, which are scalars, are kept
apart in ``optimizer.step_counts[name]`` for exactly that reason.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from refimpl._validation import check_probability

__all__ = ["SGD", "Adam", "Optimizer"]


def _check_nonnegative(value, name: str) -> float:
    """Return ``value`` as a finite float ``>= 0``, raising a ``TypeError``/``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return value


class Optimizer:
    """Base class: holds the live parameters, a validated learning rate and per-parameter state.

    Parameters
    ----------
    params : dict of str to ndarray
        ``{dotted name: live floating-point array}``, typically ``model.parameters()``. The arrays are
        updated in place and must be writeable.
    lr : float
        Learning rate, ``>= 0``. Settable later (schedules do so); the setter validates again.
    """

    #: names of the hyper-parameters stored by :meth:`state_dict` (besides ``lr``)
    _hyper_names: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray], lr: float) -> None:
        if not isinstance(params, dict):
            raise TypeError(
                f"params must be a dict name -> ndarray (model.parameters()), got {type(params).__name__}"
            )
        if not params:
            raise ValueError("params is empty: there is nothing to optimize")
        for name, p in params.items():
            if not isinstance(p, np.ndarray) or not np.issubdtype(p.dtype, np.floating):
                raise TypeError(f"params[{name!r}] must be a floating-point ndarray, got {type(p).__name__}")
            if not p.flags.writeable:
                raise ValueError(f"params[{name!r}] is read-only; the optimizer updates parameters in place")
        self.params = params
        self.lr = lr
        self.state: dict[str, dict[str, np.ndarray]] = {}

    @property
    def lr(self) -> float:
        """The learning rate used by the next :meth:`step`."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = _check_nonnegative(value, "lr")

    # --- the update --------------------------------------------------------------------------------
    def step(self, grads: dict[str, np.ndarray]) -> None:
        """Update every parameter named in ``grads`` in place.

        Parameters absent from ``grads`` are skipped (PyTorch skips parameters whose ``.grad`` is None);
        a name that is not a parameter, a shape mismatch or a NaN/inf gradient raises ``ValueError``.
        """
        self._check_grads(grads)
        for name, grad in grads.items():
            self._update(name, self.params[name], grad)

    def _update(self, name: str, p: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError

    def _check_grads(self, grads: dict[str, np.ndarray]) -> None:
        if not isinstance(grads, dict):
            raise TypeError(f"grads must be a dict name -> ndarray, got {type(grads).__name__}")
        unknown = sorted(set(grads) - set(self.params))
        if unknown:
            raise ValueError(f"grads has names that are not parameters of this optimizer: {unknown}")
        for name, grad in grads.items():
            grad = np.asarray(grad)
            if grad.shape != self.params[name].shape:
                raise ValueError(
                    f"grads[{name!r}] has shape {grad.shape}, the parameter has {self.params[name].shape}"
                )
            # (np.isfinite(np.sum(grad)) would avoid the boolean temporary but measured slower: 0.07 ms
            # against 0.035 ms on LeNet-5's fc1 gradient, float32; the SIMD isfinite wins.)
            if not np.all(np.isfinite(grad)):
                raise ValueError(f"grads[{name!r}] contains NaN or inf; refusing to corrupt the weights")

    # --- state -------------------------------------------------------------------------------------
    def hyperparameters(self) -> dict:
        """``{"lr": ..., <the other hyper-parameters>}`` as plain Python values."""
        hyper = {"lr": self.lr}
        hyper.update((key, getattr(self, key)) for key in self._hyper_names)
        return hyper

    def state_dict(self) -> dict:
        """Return copies of everything :meth:`step` depends on: hyper-parameters and per-parameter state.

        Returns
        -------
        dict
            ``{"type": class name, "hyperparameters": {...}, "state": {name: {key: ndarray}}}`` (subclasses
            add their own entries). Arrays and JSON-able values only, so it goes straight into a
            checkpoint.
        """
        return {
            "type": type(self).__name__,
            "hyperparameters": self.hyperparameters(),
            "state": {name: {key: buf.copy() for key, buf in s.items()} for name, s in self.state.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (copies; the parameter arrays are not touched)."""
        if state.get("type") != type(self).__name__:
            raise ValueError(f"state is for optimizer {state.get('type')!r}, this is {type(self).__name__}")
        hyper = dict(state["hyperparameters"])
        expected = {"lr", *self._hyper_names}
        if set(hyper) != expected:
            raise ValueError(
                f"state['hyperparameters'] has keys {sorted(hyper)}, expected {sorted(expected)}"
            )
        self.lr = hyper.pop("lr")
        for key, value in hyper.items():
            setattr(self, key, tuple(value) if isinstance(value, list) else value)
        self._check_hyperparameters()
        new_state: dict[str, dict[str, np.ndarray]] = {}
        for name, buffers in state["state"].items():
            if name not in self.params:
                raise ValueError(f"state['state'] has a buffer for unknown parameter {name!r}")
            p = self.params[name]
            new_state[name] = {}
            for key, buf in buffers.items():
                buf = np.asarray(buf)
                if buf.shape != p.shape:
                    raise ValueError(
                        f"state['state'][{name!r}][{key!r}] has shape {buf.shape}, need {p.shape}"
                    )
                new_state[name][key] = buf.astype(p.dtype, copy=True)
        self.state = new_state

    def _check_hyperparameters(self) -> None:
        """Re-validate the hyper-parameters (after construction and after loading)."""

    def __repr__(self) -> str:
        hyper = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} params, {hyper})"


class SGD(Optimizer):
    r"""Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

    PyTorch's ``torch.optim.SGD`` rule. With gradient :math:`g_t`, weight decay :math:`\lambda`, momentum
    :math:`\mu`, dampening :math:`\tau` and learning rate :math:`\eta`:

    .. math::

        d_t &= g_t + \lambda\, p_{t-1} \\
        b_t &= \begin{cases} d_t & t = 1 \\ \mu\, b_{t-1} + (1 - \tau)\, d_t & t > 1 \end{cases} \\
        d_t &\leftarrow \begin{cases} d_t + \mu\, b_t & \text{Nesterov} \\ b_t & \text{otherwise} \end{cases}
              \quad (\text{only when } \mu > 0) \\
        p_t &= p_{t-1} - \eta\, d_t

    Parameters
    ----------
    params : dict of str to ndarray
        Live parameter arrays, updated in place.
    lr : float
        Learning rate :math:`\eta \ge 0`.
    momentum : float, default 0.0
        :math:`\mu \in [0, 1)`.
    nesterov : bool, default False
        Nesterov momentum (Sutskever et al., 2013, in PyTorch's form); needs ``momentum > 0`` and
        ``dampening == 0``.
    weight_decay : float, default 0.0
        :math:`\lambda \ge 0`, added to the gradient (L2 regularization, not decoupled decay).
    dampening : float, default 0.0
        :math:`\tau \in [0, 1]`.

    Notes
    -----
    The momentum buffer starts as the first (decayed) gradient itself, not as zero: PyTorch's choice, and
    the reason the first step has no ``(1 - dampening)`` factor. The buffer is
    ``state[name]["momentum_buffer"]`` (absent until the first step, as in PyTorch).

    References
    ----------
    .. [1] I. Sutskever, J. Martens, G. Dahl, G. Hinton, "On the importance of initialization and momentum
       in deep learning", ICML 2013.

    Examples
    --------
    >>> w = np.array([1.0, -2.0])
    >>> opt = SGD({"w": w}, lr=0.1, momentum=0.9)
    >>> opt.step({"w": np.array([1.0, 1.0])}); w
    array([ 0.9, -2.1])
    >>> opt.step({"w": np.array([1.0, 1.0])}); w      # buffer 0.9*1 + 1 = 1.9
    array([ 0.71, -2.29])
    """

    _hyper_names = ("momentum", "nesterov", "weight_decay", "dampening")

    def __init__(self, params: dict[str, np.ndarray], lr: float, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0, dampening: float = 0.0) -> None:
        super().__init__(params, lr)
        self.momentum, self.nesterov = momentum, nesterov
        self.weight_decay, self.dampening = weight_decay, dampening
        self._check_hyperparameters()
        self._work: dict[str, np.ndarray] = {}

    def _check_hyperparameters(self) -> None:
        self.momentum = check_probability(self.momentum, "momentum", closed_right=False)
        self.dampening = check_probability(self.dampening, "dampening")
        self.weight_decay = _check_nonnegative(self.weight_decay, "weight_decay")
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {self.nesterov!r}")
        self.nesterov = bool(self.nesterov)
        if self.nesterov and (self.momentum == 0.0 or self.dampening != 0.0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening == 0, "
                f"got momentum={self.momentum} and dampening={self.dampening}"
            )

    def _workspace(self, name: str, p: np.ndarray) -> np.ndarray:
        """Return a scratch array shaped like ``p``, kept between steps (not state: nothing in it to save)."""
        work = self._work.get(name)
        if work is None or work.shape != p.shape or work.dtype != p.dtype:
            work = self._work[name] = np.empty_like(p)
        return work

    def _update(self, name: str, p: np.ndarray, grad: np.ndarray) -> None:
        # The model's gradient is never written to: d_p is either `grad` itself (read only) or `work`.
        # Every product goes into the per-parameter scratch array `work` (out=), so the usual step (momentum,
        # no dampening) allocates no temporaries and makes four passes over memory instead of six. Each
        # operation is the one PyTorch performs (a * b, then a + c), so the results are the same bits.
        # Measured on LeNet-5 (431k float32 parameters, momentum 0.9): 0.265 -> 0.228 ms per step.
        grad = np.asarray(grad, dtype=p.dtype)
        work = self._workspace(name, p)
        if self.weight_decay != 0.0:
            d_p = np.multiply(p, self.weight_decay, out=work)  # d = g + lambda p
            d_p += grad
        else:
            d_p = grad
        if self.momentum != 0.0:
            state = self.state.setdefault(name, {})
            if "momentum_buffer" not in state:
                buf = state["momentum_buffer"] = np.array(d_p, dtype=p.dtype, copy=True)
            else:
                buf = state["momentum_buffer"]
                buf *= self.momentum
                if self.dampening == 0.0:
                    buf += d_p  # (1 - 0) * d_p is d_p exactly: one pass saved
                else:
                    buf += (1.0 - self.dampening) * d_p
            d_p = d_p + self.momentum * buf if self.nesterov else buf
        p -= np.multiply(d_p, self.lr, out=work)


class Adam(Optimizer):
    r"""Adam (Kingma & Ba, 2015) with PyTorch's L2 weight decay (added to the gradient, not AdamW).

    With gradient :math:`g_t`, weight decay :math:`\lambda`, :math:`(\beta_1, \beta_2)`, :math:`\epsilon`:

    .. math::

        g_t &\leftarrow g_t + \lambda\, p_{t-1} \\
        m_t &= \beta_1 m_{t-1} + (1 - \beta_1)\, g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2)\, g_t^2 \qquad (m_0 = v_0 = 0) \\
        \hat m_t &= m_t / (1 - \beta_1^t), \qquad \hat v_t = v_t / (1 - \beta_2^t) \\
        p_t &= p_{t-1} - \eta\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

    Parameters
    ----------
    params : dict of str to ndarray
        Live parameter arrays, updated in place.
    lr : float, default 1e-3
        :math:`\eta \ge 0`.
    betas : tuple of float, default (0.9, 0.999)
        :math:`\beta_1, \beta_2 \in [0, 1)`.
    eps : float, default 1e-8
        :math:`\epsilon \ge 0`, added to :math:`\sqrt{\hat v_t}` (PyTorch's placement).
    weight_decay : float, default 0.0
        :math:`\lambda \ge 0`.

    Notes
    -----
    The moments are ``state[name]["exp_avg"]`` and ``state[name]["exp_avg_sq"]`` (PyTorch's names); the
    per-parameter step count :math:`t` is ``step_counts[name]``. The update is computed as PyTorch does,
    :math:`p \mathrel{-}= \frac{\eta}{1-\beta_1^t}\, m_t / (\sqrt{v_t}/\sqrt{1-\beta_2^t} + \epsilon)`,
    which is the formula above rearranged.

    References
    ----------
    .. [1] D. P. Kingma, J. Ba, "Adam: A method for stochastic optimization", ICLR 2015,
       arXiv:1412.6980.

    Examples
    --------
    >>> w = np.array([1.0, -2.0])
    >>> opt = Adam({"w": w}, lr=0.1)
    >>> opt.step({"w": np.array([3.0, -0.5])}); w     # the first step moves every entry by ~lr
    array([ 0.9, -1.9])
    """

    _hyper_names = ("betas", "eps", "weight_decay")

    def __init__(self, params: dict[str, np.ndarray], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, lr)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self._check_hyperparameters()
        self.step_counts: dict[str, int] = {}

    def _check_hyperparameters(self) -> None:
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {self.betas!r}")
        self.betas = (check_probability(self.betas[0], "betas[0]", closed_right=False),
                      check_probability(self.betas[1], "betas[1]", closed_right=False))
        self.eps = _check_nonnegative(self.eps, "eps")
        self.weight_decay = _check_nonnegative(self.weight_decay, "weight_decay")

    def _update(self, name: str, p: np.ndarray, grad: np.ndarray) -> None:
        beta1, beta2 = self.betas
        g = grad + self.weight_decay * p if self.weight_decay != 0.0 else np.asarray(grad, dtype=p.dtype)
        state = self.state.setdefault(name, {})
        if not state:
            state["exp_avg"] = np.zeros_like(p)
            state["exp_avg_sq"] = np.zeros_like(p)
        t = self.step_counts[name] = self.step_counts.get(name, 0) + 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        m += (1.0 - beta1) * g
        v *= beta2
        v += (1.0 - beta2) * (g * g)
        step_size = self.lr / (1.0 - beta1**t)
        denom = np.sqrt(v) / math.sqrt(1.0 - beta2**t) + self.eps
        p -= step_size * (m / denom)

    def state_dict(self) -> dict:
        """As :meth:`Optimizer.state_dict`, plus ``"step_counts": {name: int}``."""
        state = super().state_dict()
        state["step_counts"] = dict(self.step_counts)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned, step counts included."""
        super().load_state_dict(state)
        counts = {str(k): int(v) for k, v in state.get("step_counts", {}).items()}
        unknown = sorted(set(counts) - set(self.params))
        if unknown:
            raise ValueError(f"state['step_counts'] names unknown parameters {unknown}")
        self.step_counts = counts
