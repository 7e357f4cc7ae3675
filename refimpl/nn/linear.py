"""Fully connected (linear) layer: ``y = x W^T + b``, PyTorch's ``(out, in)`` weight layout."""

from __future__ import annotations

import numbers

import numpy as np

from refimpl._validation import check_positive_int
from refimpl.nn import parallel
from refimpl.nn._kernels import check_float_array
from refimpl.nn.init import uniform_fan_in
from refimpl.nn.module import Module

__all__ = ["Linear", "linear_backward", "linear_forward", "linear_forward_naive"]


def _check_linear_args(x, w, b):
    """Validate ``x`` (N, IN), ``w`` (OUT, IN) and ``b`` (OUT,) or None; return them as arrays.

    The functional layer checks what :class:`Linear` does: no broadcasting of a short bias, no silent
    batching of a 3-D input.
    """
    x = check_float_array(x, "x", 2)
    w = check_float_array(w, "w", 2)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"x must have shape (N, {w.shape[1]}) to match w of shape {w.shape} (OUT, IN), "
                         f"got {x.shape}")
    if b is not None:
        b = check_float_array(b, "b", 1)
        if b.shape != (w.shape[0],):
            raise ValueError(f"b must have shape ({w.shape[0]},) (one entry per output), got {b.shape}")
    return x, w, b


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray | None):
    r"""Affine map of a batch.

    .. math:: y_{nj} = \sum_i x_{ni} W_{ji} + b_j

    Parameters
    ----------
    x : ndarray, shape (N, IN)
    w : ndarray, shape (OUT, IN)
    b : ndarray, shape (OUT,) or None

    Returns
    -------
    out : ndarray, shape (N, OUT)
    cache : tuple
        ``(x, w, has_bias)`` for :func:`linear_backward`.

    Raises
    ------
    ValueError
        ``x`` or ``w`` not 2-D, ``x.shape[1] != w.shape[1]``, or ``b`` not of shape ``(OUT,)``.
    TypeError
        Arrays that are not float32/float64.
    """
    x, w, b = _check_linear_args(x, w, b)
    out = parallel.matmul(x, w.T, split="rows")
    if b is not None:
        out += b
    return out, (x, w, b is not None)


def linear_backward(dout: np.ndarray, cache):
    r"""Gradients of :func:`linear_forward`.

    .. math:: \frac{\partial L}{\partial x} = G W, \quad \frac{\partial L}{\partial W} = G^T x, \quad
              \frac{\partial L}{\partial b} = \textstyle\sum_n G_{n\cdot}

    with ``G = dout`` of shape (N, OUT). Returns ``(dx, dw, db)``; ``db`` is ``None`` without a bias.
    """
    x, w, has_bias = cache
    dout = check_float_array(dout, "dout", 2)
    if dout.shape != (x.shape[0], w.shape[0]):
        raise ValueError(f"dout must have the forward output's shape {(x.shape[0], w.shape[0])}, "
                         f"got {dout.shape}")
    dx = parallel.matmul(dout, w, split="rows")
    dw = parallel.matmul(dout.T, x, split="rows")
    db = dout.sum(axis=0) if has_bias else None
    return dx, dw, db


def linear_forward_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """Loop twin of :func:`linear_forward` (the definition, one output at a time; tests only)."""
    x, w, b = _check_linear_args(x, w, b)
    n, _ = x.shape
    out = np.zeros((n, w.shape[0]), dtype=np.result_type(x, w))
    for i in range(n):
        for j in range(w.shape[0]):
            out[i, j] = np.dot(x[i], w[j]) + (b[j] if b is not None else 0.0)
    return out


class Linear(Module):
    """Fully connected layer holding ``weight`` (OUT, IN) and optionally ``bias`` (OUT,)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 rng: np.random.Generator | None = None, dtype=np.float32) -> None:
        super().__init__()
        # The argument checks of Conv2d (Linear(0, 3), Linear(2.7, 3) failed inside numpy before).
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        if not isinstance(bias, (bool, np.bool_, numbers.Integral)):
            raise TypeError(f"bias must be a bool, got {bias!r}")
        rng = np.random.default_rng(0) if rng is None else rng
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        shape = (self.out_features, self.in_features)
        self.params["weight"] = uniform_fan_in(shape, self.in_features, rng, dtype)
        if bias:
            self.params["bias"] = uniform_fan_in((self.out_features,), self.in_features, rng, dtype)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, IN) -> (N, OUT)."""
        x = check_float_array(x, "x", 2)
        if x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (N, {self.in_features}), got {x.shape}")
        out, cache = linear_forward(x, self.params["weight"], self.params.get("bias"))
        self._cache = self._keep(cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Write ``grads['weight']`` (and ``grads['bias']``); return dL/dx."""
        dx, dw, db = linear_backward(dout, self._saved())
        self.grads["weight"][...] = dw
        if db is not None:
            self.grads["bias"][...] = db
        return dx

    def extra_repr(self) -> str:
        """Show the feature counts and whether there is a bias."""
        return f"{self.in_features}, {self.out_features}, bias={'bias' in self.params}"
