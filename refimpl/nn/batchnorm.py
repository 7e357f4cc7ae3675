"""Batch normalisation over the channels of an NCHW tensor (Ioffe & Szegedy, 2015), PyTorch's semantics.

Training mode normalises with the statistics of the current batch and updates exponential running averages;
evaluation mode normalises with the running averages, so the layer becomes a fixed per-channel affine map.

Two engines, as for the other layers: ``"numpy"`` (whole-array expressions, the readable version) and
``"numba"`` (the default: one parallel task per channel, each making two passes over its values for the
statistics and one for the output, sums accumulated in float64). Why a kernel here: NumPy's reductions
over axes (0, 2, 3) run on one thread and make several passes; on a 16-core machine BatchNorm took 46 %
of a VGG-small training step at 16 threads and 30 % at 2 (``bench_training.py --model vgg_small
--profile``, ``paper_repro/README.md``, "Training speed"). The engines agree to float rounding (the numba
one sums in float64, NumPy's float32 reductions use pairwise sums), tested in ``tests/test_nn_layers.py``.
"""

from __future__ import annotations

import numbers

import numpy as np
from numba import njit, prange

from refimpl._validation import check_ndim, check_positive_int, check_probability
from refimpl.nn._kernels import check_engine
from refimpl.nn.module import Module

__all__ = [
    "BatchNorm2d",
    "batchnorm2d_backward",
    "batchnorm2d_forward",
    "batchnorm2d_forward_naive",
    "batchnorm2d_backward_naive",
]

_AXES = (0, 2, 3)  # every axis but the channel axis: the statistics are per channel


def _per_channel(v: np.ndarray) -> np.ndarray:
    """View a (C,) vector as (1, C, 1, 1) so it broadcasts against NCHW."""
    return v.reshape(1, -1, 1, 1)


def _check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not eps > 0:
        raise ValueError(f"eps must be a positive real number, got {eps!r}")
    return float(eps)


def _check_inputs(x, gamma, beta, running_mean, running_var) -> None:
    check_ndim(x, "x", 4)
    c = x.shape[1]
    for name, v in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean),
                    ("running_var", running_var)):
        if v.shape != (c,):
            raise ValueError(f"{name} must have shape ({c},) to match x's {c} channels, got {v.shape}")


def batchnorm2d_forward(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                        running_var: np.ndarray, training: bool, momentum: float = 0.1, eps: float = 1e-5,
                        *, engine: str = "numba"):
    r"""Batch-normalise ``x`` per channel, then scale and shift.

    With :math:`M = N H W` values per channel :math:`c`:

    .. math::

        \mu_c = \frac{1}{M}\sum_{n,h,w} x_{nchw}, \qquad
        \sigma^2_c = \frac{1}{M}\sum_{n,h,w} (x_{nchw} - \mu_c)^2, \qquad
        \hat x_{nchw} = \frac{x_{nchw} - \mu_c}{\sqrt{\sigma^2_c + \epsilon}}, \qquad
        y_{nchw} = \gamma_c \hat x_{nchw} + \beta_c .

    **Training** (``training=True``) uses the batch's :math:`\mu, \sigma^2` (the *biased* variance) and
    updates the running statistics **in place**, exactly like PyTorch:

    .. math::

        \hat\mu \leftarrow (1 - m)\,\hat\mu + m\,\mu, \qquad
        \hat\sigma^2 \leftarrow (1 - m)\,\hat\sigma^2 + m\,\frac{M}{M - 1}\,\sigma^2

    (the running variance tracks the *unbiased* estimate). **Evaluation** uses :math:`\hat\mu, \hat\sigma^2`
    in place of the batch statistics and changes nothing.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    gamma, beta : ndarray, shape (C,)
        Scale (PyTorch's ``weight``) and shift (``bias``).
    running_mean, running_var : ndarray, shape (C,)
        Running statistics; updated in place when ``training``.
    training : bool
    momentum : float in [0, 1]
        Weight :math:`m` of the new batch statistic in the running averages.
    eps : float > 0
        Added to the variance for numerical safety.
    engine : {"numba", "numpy"}
        Kernel (see the module docstring); the same numbers to float rounding.

    Returns
    -------
    out : ndarray, shape (N, C, H, W)
    cache : tuple
        ``(x_hat, gamma, inv_std, training, engine)`` for :func:`batchnorm2d_backward`.
    """
    _check_inputs(x, gamma, beta, running_mean, running_var)
    momentum = check_probability(momentum, "momentum")
    eps = _check_eps(eps)
    training = bool(training)
    if check_engine(engine) == "numba":
        return _forward_numba(x, gamma, beta, running_mean, running_var, training, momentum, eps)
    if training:
        m = x.shape[0] * x.shape[2] * x.shape[3]
        if m < 2:
            # The unbiased variance M/(M-1) is undefined; PyTorch refuses this input as well.
            raise ValueError(f"training mode needs more than one value per channel, got x.shape={x.shape}")
        mean = x.mean(axis=_AXES)
        var = x.var(axis=_AXES)  # biased (divides by M): the one used to normalise
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
        running_var *= 1.0 - momentum
        running_var += momentum * var * (m / (m - 1))
    else:
        mean, var = running_mean, running_var
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (x - _per_channel(mean)) * _per_channel(inv_std)
    out = _per_channel(gamma) * x_hat + _per_channel(beta)
    return out.astype(x.dtype, copy=False), (x_hat, gamma, inv_std, training, "numpy")


def batchnorm2d_backward(dout: np.ndarray, cache):
    r"""Gradients of :func:`batchnorm2d_forward`; returns ``(dx, dgamma, dbeta)``.

    For both modes :math:`\partial L/\partial\gamma_c = \sum_{nhw} g\,\hat x` and
    :math:`\partial L/\partial\beta_c = \sum_{nhw} g` with :math:`g = \partial L/\partial y`.

    **Training mode**: :math:`\mu` and :math:`\sigma^2` depend on every :math:`x` of the channel, which gives
    the full formula (with :math:`\hat g = \gamma_c\, g`, sums over :math:`n, h, w` of channel :math:`c`):

    .. math::

        \frac{\partial L}{\partial x_{nchw}} = \frac{1}{M \sqrt{\sigma_c^2 + \epsilon}}
        \Big( M\,\hat g_{nchw} - \sum \hat g - \hat x_{nchw} \sum \hat g\,\hat x \Big)

    **Evaluation mode**: the running statistics are constants, so the layer is the affine map
    :math:`y = \gamma_c (x - \hat\mu_c) / \sqrt{\hat\sigma^2_c + \epsilon} + \beta_c` and
    :math:`\partial L/\partial x = \gamma_c\, g / \sqrt{\hat\sigma^2_c + \epsilon}`.
    """
    x_hat, gamma, inv_std, training, engine = cache
    dout = np.asarray(dout)
    if dout.shape != x_hat.shape:
        raise ValueError(f"dout must have the forward input's shape {x_hat.shape}, got {dout.shape}")
    if engine == "numba":
        return _backward_numba(np.ascontiguousarray(dout, dtype=x_hat.dtype), x_hat, gamma, inv_std, training)
    dbeta = dout.sum(axis=_AXES)
    dgamma = (dout * x_hat).sum(axis=_AXES)
    dx_hat = dout * _per_channel(gamma)
    if not training:
        return dx_hat * _per_channel(inv_std), dgamma, dbeta
    m = x_hat.shape[0] * x_hat.shape[2] * x_hat.shape[3]
    sum_dx_hat = _per_channel(dx_hat.sum(axis=_AXES))
    sum_dx_hat_x_hat = _per_channel((dx_hat * x_hat).sum(axis=_AXES))
    dx = (_per_channel(inv_std) / m) * (m * dx_hat - sum_dx_hat - x_hat * sum_dx_hat_x_hat)
    return dx, dgamma, dbeta


def batchnorm2d_forward_naive(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, running_mean: np.ndarray,
                              running_var: np.ndarray, training: bool, momentum: float = 0.1,
                              eps: float = 1e-5) -> np.ndarray:
    """Loop twin of :func:`batchnorm2d_forward` (explicit sums, one channel at a time; tests only).

    Updates the running statistics in place in training mode, like the fast version. Returns ``out``.
    """
    n, c, h, w = x.shape
    m = n * h * w
    out = np.empty_like(x)
    for ch in range(c):
        if training:
            total = 0.0
            for i in range(n):
                for r in range(h):
                    for s in range(w):
                        total += x[i, ch, r, s]
            mean = total / m
            sq = 0.0
            for i in range(n):
                for r in range(h):
                    for s in range(w):
                        sq += (x[i, ch, r, s] - mean) ** 2
            var = sq / m
            running_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * mean
            running_var[ch] = (1 - momentum) * running_var[ch] + momentum * sq / (m - 1)
        else:
            mean, var = running_mean[ch], running_var[ch]
        for i in range(n):
            for r in range(h):
                for s in range(w):
                    out[i, ch, r, s] = gamma[ch] * (x[i, ch, r, s] - mean) / np.sqrt(var + eps) + beta[ch]
    return out


def batchnorm2d_backward_naive(dout: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float = 1e-5):
    r"""Training-mode backward by the chain rule through each stage of the graph (tests only).

    The forward graph per channel is ``mu = mean(x)``, ``d = x - mu``, ``var = mean(d**2)``,
    ``inv = (var + eps)**-1/2``, ``x_hat = d * inv``, ``y = gamma * x_hat + beta``. Walking it backwards one
    node at a time is a derivation independent of the closed form in :func:`batchnorm2d_backward`, so the
    two agreeing checks the algebra. Returns ``(dx, dgamma, dbeta)``.
    """
    n, c, h, w = x.shape
    m = n * h * w
    dx = np.empty_like(x)
    dgamma = np.empty(c, dtype=x.dtype)
    dbeta = np.empty(c, dtype=x.dtype)
    for ch in range(c):
        xc, gc = x[:, ch], dout[:, ch]
        mu = xc.sum() / m
        d = xc - mu
        var = (d * d).sum() / m
        inv = (var + eps) ** -0.5
        x_hat = d * inv
        dbeta[ch] = gc.sum()
        dgamma[ch] = (gc * x_hat).sum()
        dx_hat = gc * gamma[ch]
        d_inv = (dx_hat * d).sum()                # x_hat = d * inv
        d_d = dx_hat * inv
        d_var = d_inv * (-0.5) * (var + eps) ** -1.5   # inv = (var + eps) ** -1/2
        d_d = d_d + d_var * 2.0 * d / m           # var = sum(d**2) / m
        d_mu = -d_d.sum()                         # d = x - mu
        dx[:, ch] = d_d + d_mu / m                # mu = sum(x) / m
    return dx, dgamma, dbeta


# --- the numba engine ------------------------------------------------------------------------------------

def _forward_numba(x, gamma, beta, running_mean, running_var, training, momentum, eps):
    """:func:`batchnorm2d_forward` with the kernels below (same arguments, same returns)."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    m = n * h * w
    if training and m < 2:
        raise ValueError(f"training mode needs more than one value per channel, got x.shape={x.shape}")
    x3 = x.reshape(n, c, h * w)
    if training:
        mean, var = _channel_statistics(x3)  # float64, biased variance
        running_mean *= 1.0 - momentum
        running_mean += (momentum * mean).astype(running_mean.dtype)
        running_var *= 1.0 - momentum
        running_var += (momentum * var * (m / (m - 1))).astype(running_var.dtype)
    else:
        mean, var = running_mean.astype(np.float64), running_var.astype(np.float64)
    inv_std = 1.0 / np.sqrt(var + eps)
    out, x_hat = np.empty_like(x), np.empty_like(x)
    _normalise(x3, mean, inv_std, gamma.astype(np.float64), beta.astype(np.float64),
               out.reshape(n, c, h * w), x_hat.reshape(n, c, h * w))
    return out, (x_hat, gamma, inv_std.astype(x.dtype), training, "numba")


@njit(cache=True, parallel=True)
def _channel_statistics(x3):
    """Per-channel mean and biased variance of x3 (N, C, HW): two passes, float64 sums, a task per channel."""
    n, c, hw = x3.shape
    mean = np.empty(c)
    var = np.empty(c)
    for ch in prange(c):
        total = 0.0
        for i in range(n):
            for k in range(hw):
                total += x3[i, ch, k]
        mu = total / (n * hw)
        squares = 0.0
        for i in range(n):
            for k in range(hw):
                d = x3[i, ch, k] - mu
                squares += d * d
        mean[ch] = mu
        var[ch] = squares / (n * hw)
    return mean, var


@njit(cache=True, parallel=True)
def _normalise(x3, mean, inv_std, gamma, beta, out3, x_hat3):
    """``x_hat = (x - mean) * inv_std`` and ``out = gamma * x_hat + beta``, per channel."""
    n, c, hw = x3.shape
    for ch in prange(c):
        mu, inv, g, b = mean[ch], inv_std[ch], gamma[ch], beta[ch]
        for i in range(n):
            for k in range(hw):
                xh = (x3[i, ch, k] - mu) * inv
                x_hat3[i, ch, k] = xh
                out3[i, ch, k] = g * xh + b


def _backward_numba(dout, x_hat, gamma, inv_std, training):
    """:func:`batchnorm2d_backward` with one parallel task per channel (same formulas)."""
    n, c, h, w = x_hat.shape
    dx = np.empty_like(x_hat)
    dgamma, dbeta = _backward_kernel(dout.reshape(n, c, h * w), x_hat.reshape(n, c, h * w),
                                     gamma.astype(np.float64), inv_std.astype(np.float64), training,
                                     dx.reshape(n, c, h * w))
    return dx, dgamma.astype(x_hat.dtype), dbeta.astype(x_hat.dtype)


@njit(cache=True, parallel=True)
def _backward_kernel(g3, x_hat3, gamma, inv_std, training, dx3):
    r"""Per channel: :math:`\sum g`, :math:`\sum g \hat x`, then ``dx`` by the closed form (float64 sums)."""
    n, c, hw = g3.shape
    m = n * hw
    dgamma = np.empty(c)
    dbeta = np.empty(c)
    for ch in prange(c):
        sum_g = 0.0
        sum_gx = 0.0
        for i in range(n):
            for k in range(hw):
                sum_g += g3[i, ch, k]
                sum_gx += g3[i, ch, k] * x_hat3[i, ch, k]
        dbeta[ch] = sum_g
        dgamma[ch] = sum_gx
        scale = gamma[ch] * inv_std[ch]
        for i in range(n):
            for k in range(hw):
                if training:
                    # dx = gamma inv / m * (m g - sum g - x_hat sum g x_hat), dx_hat = gamma g
                    dx3[i, ch, k] = scale / m * (m * g3[i, ch, k] - sum_g - x_hat3[i, ch, k] * sum_gx)
                else:
                    dx3[i, ch, k] = scale * g3[i, ch, k]
    return dgamma, dbeta


class BatchNorm2d(Module):
    """Batch normalisation layer for NCHW input, PyTorch's names and defaults.

    Parameters ``"weight"`` (gamma, ones) and ``"bias"`` (beta, zeros); buffers ``"running_mean"`` (zeros)
    and ``"running_var"`` (ones), each of shape ``(num_features,)``. ``training`` selects batch statistics
    (and running-average updates) or the running statistics; see :func:`batchnorm2d_forward`.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *,
                 dtype=np.float32) -> None:
        super().__init__()
        self.num_features = check_positive_int(num_features, "num_features")
        self.eps = _check_eps(eps)
        self.momentum = check_probability(momentum, "momentum")
        self.params["weight"] = np.ones(num_features, dtype=dtype)
        self.params["bias"] = np.zeros(num_features, dtype=dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.buffers["running_mean"] = np.zeros(num_features, dtype=dtype)
        self.buffers["running_var"] = np.ones(num_features, dtype=dtype)
        self.engine = "numba"
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, C, H, W) -> same shape; in training mode also updates the running statistics."""
        out, cache = batchnorm2d_forward(
            x, self.params["weight"], self.params["bias"], self.buffers["running_mean"],
            self.buffers["running_var"], self.training, self.momentum, self.eps, engine=self.engine)
        self._cache = self._keep(cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Write ``grads['weight']`` and ``grads['bias']``; return dL/dx (mode as in the last forward)."""
        dx, dgamma, dbeta = batchnorm2d_backward(dout, self._saved())
        self.grads["weight"][...] = dgamma
        self.grads["bias"][...] = dbeta
        return dx

    def extra_repr(self) -> str:
        """Show the channel count and the settings."""
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"
