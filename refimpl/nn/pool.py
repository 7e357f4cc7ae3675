r"""Pooling layers: max pooling, average pooling and global average pooling (NCHW, no padding).

For a window of ``(KH, KW)`` moved with strides ``(SH, SW)`` over an input (N, C, H, W), the output has
:math:`OH = \lfloor (H - KH)/SH \rfloor + 1` rows and :math:`OW = \lfloor (W - KW)/SW \rfloor + 1` columns
(PyTorch's ``ceil_mode=False``: a partial window at the border is dropped). The stride defaults to the
kernel size (non-overlapping windows), as in PyTorch. There is no padding: the networks refimpl builds
(LeNet, VGG-small, ResNet-small) pool 2×2 windows over even sizes, and leaving padding out keeps the
average pool free of the "count the padded zeros or not" ambiguity.
"""

from __future__ import annotations

import numpy as np

from refimpl.nn._kernels import (
    check_engine,
    check_float_array,
    conv_output_size,
    maxpool2d_backward_kernel,
    maxpool2d_forward_kernel,
    pair,
    window_view,
)
from refimpl.nn.module import Module, keeps_for_backward

__all__ = [
    "AvgPool2d",
    "GlobalAvgPool2d",
    "MaxPool2d",
    "avgpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_forward_naive",
    "global_avgpool_backward",
    "global_avgpool_forward",
    "global_avgpool_forward_naive",
    "maxpool2d_backward",
    "maxpool2d_backward_naive",
    "maxpool2d_forward",
    "maxpool2d_forward_naive",
]


def _pool_geometry(x, kernel_size, stride):
    """Validate a pooling call; return ``(x, (kh, kw), (sh, sw), (oh, ow))``."""
    x = check_float_array(x, "x", 4)
    kh, kw = pair(kernel_size, "kernel_size")
    sh, sw = (kh, kw) if stride is None else pair(stride, "stride")
    oh = conv_output_size(x.shape[2], kh, sh, 0, name="kernel_size[0]")
    ow = conv_output_size(x.shape[3], kw, sw, 0, name="kernel_size[1]")
    return x, (kh, kw), (sh, sw), (oh, ow)


def _check_dout(dout, expected_shape):
    dout = check_float_array(dout, "dout", 4)
    if dout.shape != tuple(expected_shape):
        raise ValueError(f"dout must have the forward output's shape {tuple(expected_shape)}, "
                         f"got {dout.shape}")
    return dout


def _pool_naive(x, kernel_size, stride, reduce):
    """Pool by the definition, one window at a time: ``out[:, :, r, c] = reduce(window(r, c))``."""
    x, (kh, kw), (sh, sw), (oh, ow) = _pool_geometry(x, kernel_size, stride)
    out = np.empty((*x.shape[:2], oh, ow), dtype=x.dtype)
    for r in range(oh):
        for c in range(ow):
            out[:, :, r, c] = reduce(x[:, :, r * sh:r * sh + kh, c * sw:c * sw + kw], axis=(2, 3))
    return out


class _WindowPool2d(Module):
    """What :class:`MaxPool2d` and :class:`AvgPool2d` share: the window settings and their ``repr``."""

    def __init__(self, kernel_size, stride=None) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")
        self._cache = None

    def extra_repr(self) -> str:
        """Describe the layer's settings (shown by ``repr``)."""
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


# --- max pooling --------------------------------------------------------------------------------------

def maxpool2d_forward(x: np.ndarray, kernel_size, stride=None, *, engine: str = "numba",
                      for_backward: bool = True):
    r"""Maximum over every window.

    .. math:: y_{n c o_h o_w} = \max_{0 \le i < KH,\ 0 \le j < KW} x_{n,\, c,\, S_H o_h + i,\, S_W o_w + j}

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.
    engine : {"numba", "numpy"}
    for_backward : bool, default True
        ``False`` for inference: the winners are not recorded and ``cache`` is ``None``. ``out`` is the
        same. Why: recording costs an int32 array the size of the output and a store per window, which
        an inference engine or a compact model evaluating a test set pays for nothing.

    Returns
    -------
    out : ndarray, shape (N, C, OH, OW)
    cache : tuple or None
        The winner of every window (see Notes) and the geometry, for :func:`maxpool2d_backward`;
        ``None`` when ``for_backward`` is ``False``.

    Notes
    -----
    **Tie rule (choice):** the gradient of a max is routed to *one* entry, the first maximum of the window
    in row-major order (``i`` then ``j``): a later entry replaces the current winner only if it is strictly
    larger (or NaN, so that NaN propagates as in PyTorch). PyTorch's CPU kernel uses the same strict
    comparison, so on tie-free data (almost surely, for continuous inputs) the gradients agree exactly.
    With overlapping windows (stride < kernel) an input entry that wins several windows receives the sum.
    """
    x, (kh, kw), (sh, sw), _ = _pool_geometry(x, kernel_size, stride)
    engine = check_engine(engine)
    out, argmax = maxpool2d_forward_kernel(x, kh, kw, sh, sw, engine, record_argmax=bool(for_backward))
    if argmax is None:
        return out, None
    return out, (x.shape, argmax, (kh, kw), (sh, sw), engine)


def maxpool2d_backward(dout: np.ndarray, cache) -> np.ndarray:
    r"""Gradient of :func:`maxpool2d_forward`: each window passes ``dout`` to its winner only.

    .. math:: \frac{\partial L}{\partial x_{n c h w}} = \sum_{(o_h, o_w):\ \mathrm{winner}(o_h, o_w) = (h, w)}
              \frac{\partial L}{\partial y_{n c o_h o_w}}

    Returns ``dx`` of shape (N, C, H, W).
    """
    if cache is None:
        raise ValueError("cache is None: the forward pass ran with for_backward=False (inference), so it "
                         "did not record the winners a backward pass needs")
    x_shape, argmax, (kh, kw), (sh, sw), engine = cache
    dout = _check_dout(dout, argmax.shape)
    return maxpool2d_backward_kernel(dout, argmax, x_shape, kh, kw, sh, sw, engine)


def maxpool2d_forward_naive(x: np.ndarray, kernel_size, stride=None) -> np.ndarray:
    """Loop twin of :func:`maxpool2d_forward` (the definition, one window at a time; tests only)."""
    return _pool_naive(x, kernel_size, stride, np.max)


def maxpool2d_backward_naive(dout: np.ndarray, x: np.ndarray, kernel_size, stride=None) -> np.ndarray:
    """Loop twin of :func:`maxpool2d_backward`: every window sends its gradient to its winner.

    The winner is the tie rule of :func:`maxpool2d_forward` written out: the first maximum in row-major
    order, except that a NaN wins (the last NaN, since each NaN replaces the current winner); windows
    that overlap add their gradients into a shared input entry. One window at a time, for reading and
    for testing the numba and NumPy kernels (``tests/test_nn_pool.py``).
    """
    x, (kh, kw), (sh, sw), (oh, ow) = _pool_geometry(x, kernel_size, stride)
    dout = _check_dout(dout, (*x.shape[:2], oh, ow))
    dx = np.zeros(x.shape, dtype=dout.dtype)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for r in range(oh):
                for q in range(ow):
                    window = x[n, c, r * sh:r * sh + kh, q * sw:q * sw + kw].ravel()
                    nans = np.flatnonzero(np.isnan(window))
                    winner = nans[-1] if nans.size else int(np.argmax(window))  # argmax: the first maximum
                    i, j = divmod(int(winner), kw)
                    dx[n, c, r * sh + i, q * sw + j] += dout[n, c, r, q]
    return dx


class MaxPool2d(_WindowPool2d):
    """Max pooling layer (no parameters); ``stride`` defaults to ``kernel_size``.

    Attribute ``engine`` (``"numba"`` or ``"numpy"``) selects the kernels. In eval mode
    (``training == False``) :meth:`forward` records nothing for a backward pass (see ``for_backward`` in
    :func:`maxpool2d_forward`): the output is the same, and :meth:`backward` then raises.
    """

    def __init__(self, kernel_size, stride=None) -> None:
        super().__init__(kernel_size, stride)
        self.engine = "numba"
        self._eval_forward = False  # the last forward ran in eval mode (for backward's error message)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, C, H, W) -> (N, C, OH, OW)."""
        out, cache = maxpool2d_forward(x, self.kernel_size, self.stride, engine=self.engine,
                                       for_backward=self.training and keeps_for_backward())
        self._cache = self._keep(cache)
        self._eval_forward = not self.training
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Return dL/dx."""
        if self._eval_forward:
            raise RuntimeError("backward called after an eval-mode forward: MaxPool2d records the window "
                               "winners only in training mode; call model.train() and forward again")
        return maxpool2d_backward(dout, self._saved())


# --- average pooling ----------------------------------------------------------------------------------

def avgpool2d_forward(x: np.ndarray, kernel_size, stride=None):
    r"""Mean over every window (no padding, so every window averages exactly ``KH·KW`` entries).

    .. math:: y_{n c o_h o_w} = \frac{1}{K_H K_W} \sum_{i=0}^{KH-1} \sum_{j=0}^{KW-1}
              x_{n,\, c,\, S_H o_h + i,\, S_W o_w + j}

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Default: ``kernel_size``.

    Returns
    -------
    out : ndarray, shape (N, C, OH, OW)
    cache : tuple
        The geometry, for :func:`avgpool2d_backward`.

    Notes
    -----
    Pure NumPy: ``KH·KW`` additions of strided views are already memory-bound, so there is no numba twin.
    """
    x, (kh, kw), (sh, sw), (oh, ow) = _pool_geometry(x, kernel_size, stride)
    out = np.zeros((*x.shape[:2], oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            out += window_view(x, i, j, sh, sw, oh, ow)
    out /= kh * kw
    return out, (x.shape, (kh, kw), (sh, sw))


def avgpool2d_backward(dout: np.ndarray, cache) -> np.ndarray:
    r"""Gradient of :func:`avgpool2d_forward`: every window spreads ``dout / (KH·KW)`` evenly over itself.

    .. math:: \frac{\partial L}{\partial x_{n c h w}} = \frac{1}{K_H K_W}
              \sum_{(o_h, o_w):\ (h, w) \in \mathrm{window}(o_h, o_w)}
              \frac{\partial L}{\partial y_{n c o_h o_w}}

    Returns ``dx`` of shape (N, C, H, W).
    """
    x_shape, (kh, kw), (sh, sw) = cache
    oh, ow = (x_shape[2] - kh) // sh + 1, (x_shape[3] - kw) // sw + 1
    dout = _check_dout(dout, (*x_shape[:2], oh, ow))
    share = dout / (kh * kw)
    dx = np.zeros(x_shape, dtype=dout.dtype)
    for i in range(kh):
        for j in range(kw):
            window_view(dx, i, j, sh, sw, oh, ow)[...] += share  # an exact scatter-add (no repeats)
    return dx


def avgpool2d_forward_naive(x: np.ndarray, kernel_size, stride=None) -> np.ndarray:
    """Loop twin of :func:`avgpool2d_forward` (one window at a time; tests only)."""
    return _pool_naive(x, kernel_size, stride, np.mean)


class AvgPool2d(_WindowPool2d):
    """Average pooling layer (no parameters, no padding); ``stride`` defaults to ``kernel_size``."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, C, H, W) -> (N, C, OH, OW)."""
        out, cache = avgpool2d_forward(x, self.kernel_size, self.stride)
        self._cache = self._keep(cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Return dL/dx."""
        return avgpool2d_backward(dout, self._saved())


# --- global average pooling ---------------------------------------------------------------------------

def global_avgpool_forward(x: np.ndarray):
    r"""Mean of every channel over all positions: (N, C, H, W) -> (N, C).

    .. math:: y_{n c} = \frac{1}{H W} \sum_{h, w} x_{n c h w}

    Equals PyTorch's ``adaptive_avg_pool2d(x, 1)`` followed by ``flatten(1)``. Returns ``(out, cache)``.
    """
    x = check_float_array(x, "x", 4)
    return x.mean(axis=(2, 3)), x.shape


def global_avgpool_backward(dout: np.ndarray, cache) -> np.ndarray:
    r"""Gradient of :func:`global_avgpool_forward`: :math:`\partial L/\partial x_{nchw} = g_{nc} / (HW)`.

    Returns a new, writable ``dx`` of shape (N, C, H, W).
    """
    x_shape = cache
    dout = check_float_array(dout, "dout", 2)
    if dout.shape != tuple(x_shape[:2]):
        raise ValueError(f"dout must have shape {tuple(x_shape[:2])}, got {dout.shape}")
    dx = np.empty(x_shape, dtype=dout.dtype)
    dx[...] = (dout / (x_shape[2] * x_shape[3]))[:, :, None, None]
    return dx


def global_avgpool_forward_naive(x: np.ndarray) -> np.ndarray:
    """Loop twin of :func:`global_avgpool_forward` (tests only)."""
    x = check_float_array(x, "x", 4)
    out = np.zeros(x.shape[:2], dtype=x.dtype)
    for h in range(x.shape[2]):
        for w in range(x.shape[3]):
            out += x[:, :, h, w]
    return out / (x.shape[2] * x.shape[3])


class GlobalAvgPool2d(Module):
    """Global average pooling layer: (N, C, H, W) -> (N, C), the head of ResNet-style networks."""

    def __init__(self) -> None:
        super().__init__()
        self._cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, C, H, W) -> (N, C)."""
        out, cache = global_avgpool_forward(x)
        self._cache = self._keep(cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Return dL/dx."""
        return global_avgpool_backward(dout, self._saved())
