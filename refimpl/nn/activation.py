"""Rectified linear unit: ``relu(x) = max(x, 0)``, elementwise."""

from __future__ import annotations

import numpy as np

from refimpl.nn._kernels import check_engine, relu_backward_kernel
from refimpl.nn.module import Module

__all__ = ["ReLU", "relu_backward", "relu_forward", "relu_forward_naive"]


def relu_forward(x: np.ndarray):
    r"""Elementwise rectifier.

    .. math:: y = \max(x, 0)

    Parameters
    ----------
    x : ndarray, any shape

    Returns
    -------
    out : ndarray, same shape and dtype as ``x``
    cache : ndarray of bool
        The mask ``x > 0`` for :func:`relu_backward`.
    """
    # np.maximum is several times faster than np.where here, keeps the dtype, and propagates NaN as
    # PyTorch's relu does.
    return np.maximum(x, x.dtype.type(0)), x > 0


def relu_backward(dout: np.ndarray, cache, *, engine: str = "numba") -> np.ndarray:
    r"""Gradient of :func:`relu_forward`.

    .. math:: \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \cdot [x > 0]

    The derivative at exactly ``x = 0`` is taken as 0 (the subgradient PyTorch uses too). Computed as a
    select (``dout`` where the mask holds, 0 elsewhere), so a NaN or infinite ``dout`` behind a closed
    gate gives 0, as in PyTorch.

    Parameters
    ----------
    dout : ndarray, shape of ``x``
    cache : ndarray of bool
        From :func:`relu_forward`.
    engine : {"numba", "numpy"}
        ``"numpy"`` is ``np.where``; the numba kernel gives the same array, much faster on large
        inputs (see :func:`refimpl.nn._kernels.relu_backward_kernel`).

    Returns
    -------
    dx : ndarray, shape and dtype of ``dout``
    """
    mask = cache
    engine = check_engine(engine)
    dout = np.asarray(dout)
    if dout.shape != mask.shape:
        raise ValueError(f"dout must have the forward input's shape {mask.shape}, got {dout.shape}")
    return relu_backward_kernel(dout, mask, engine)


def relu_forward_naive(x: np.ndarray) -> np.ndarray:
    """Loop twin of :func:`relu_forward` (one entry at a time; tests only)."""
    out = np.empty_like(x)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    for i in range(flat_in.size):
        flat_out[i] = flat_in[i] if flat_in[i] > 0 else 0.0
    return out


class ReLU(Module):
    """Parameter-free rectifier layer (keeps the ``x > 0`` mask between forward and backward).

    Attribute ``engine`` (``"numba"`` or ``"numpy"``) selects the backward kernel.
    """

    def __init__(self) -> None:
        super().__init__()
        self.engine = "numba"
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``max(x, 0)``, any shape."""
        out, cache = relu_forward(x)
        self._cache = self._keep(cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Pass the gradient where the input was positive, 0 elsewhere."""
        return relu_backward(dout, self._saved(), engine=self.engine)
