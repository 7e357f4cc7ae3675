"""Flatten every axis but the batch axis: ``(N, C, H, W) -> (N, C*H*W)``."""

from __future__ import annotations

import numpy as np

from refimpl.nn.module import Module

__all__ = ["Flatten", "flatten_backward", "flatten_forward"]


def flatten_forward(x: np.ndarray):
    r"""Reshape ``x`` of shape (N, d1, d2, ...) to (N, d1*d2*...) in row-major (C) order.

    Row-major order is what ``torch.flatten(x, 1)`` does, so entry ``(n, c, h, w)`` lands in column
    :math:`c \cdot HW + h \cdot W + w`. This is the index map the compaction code relies on: one conv
    channel ``c`` feeds the ``H*W`` consecutive columns ``c*H*W ... (c+1)*H*W - 1`` of the next linear layer.

    Returns
    -------
    out : ndarray, shape (N, prod(x.shape[1:]))
    cache : tuple
        The input shape, for :func:`flatten_backward`.
    """
    if x.ndim < 1:
        raise ValueError(f"x must have a batch axis, got shape {x.shape}")
    return np.reshape(x, (x.shape[0], -1), order="C"), x.shape


def flatten_backward(dout: np.ndarray, cache) -> np.ndarray:
    """Gradient of :func:`flatten_forward`: reshape ``dout`` back to the input shape."""
    return np.reshape(dout, cache, order="C")


class Flatten(Module):
    """Parameter-free layer: ``(N, C, H, W) -> (N, C*H*W)`` in PyTorch's ``flatten(x, 1)`` order."""

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Collapse all axes after the first."""
        out, cache = flatten_forward(x)
        self._cache = self._keep(cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Reshape the gradient back to the input's shape."""
        return flatten_backward(dout, self._saved())
