"""Residual connections: a generic ``body(x) + shortcut(x)`` and the CIFAR/torchvision ResNet basic block.

Two classes, because they answer different needs:

* :class:`Residual` is the textbook form, ``out = body(x) + shortcut(x)`` with children ``"body"`` and
  (optionally) ``"shortcut"``; use it to build any residual network from :class:`Sequential` pieces.
* :class:`BasicBlock` is the ResNet basic block with PyTorch's parameter names (``conv1``, ``bn1``,
  ``conv2``, ``bn2``, ``shortcut.0``, ``shortcut.1``), so a refimpl ResNet's ``state_dict`` loads into the
  usual PyTorch definition unchanged. Its data flow is fixed and written out in :meth:`BasicBlock.forward`;
  model-surgery code (compaction) walks it by those names.

Backpropagation through an addition copies the upstream gradient to both branches, and the input receives
the **sum** of the two branch gradients (the multivariate chain rule: ``x`` feeds two paths).
"""

from __future__ import annotations

import numpy as np

from refimpl._validation import check_positive_int
from refimpl.nn.activation import relu_backward, relu_forward
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.conv import Conv2d
from refimpl.nn.module import Module, Sequential

__all__ = ["BasicBlock", "Residual"]


class Residual(Module):
    r"""``out = body(x) + shortcut(x)``, with the identity as the default shortcut.

    .. math::

        y = F(x) + S(x), \qquad
        \frac{\partial L}{\partial x} = J_F^\top g + J_S^\top g \quad (g = \partial L/\partial y)

    Parameters
    ----------
    body : Module
        The residual branch :math:`F`, registered as child ``"body"``.
    shortcut : Module or None
        The shortcut branch :math:`S`, registered as child ``"shortcut"``; ``None`` means the identity
        (no child, no parameters). Both branches must produce outputs of the same shape.
    """

    def __init__(self, body: Module, shortcut: Module | None = None) -> None:
        super().__init__()
        self.body = self.add_child("body", body)
        self.shortcut = None if shortcut is None else self.add_child("shortcut", shortcut)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Sum of the two branches."""
        f = self.body.forward(x)
        s = x if self.shortcut is None else self.shortcut.forward(x)
        if f.shape != s.shape:
            raise ValueError(f"body output {f.shape} and shortcut output {s.shape} cannot be added")
        return f + s

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Send ``dout`` down both branches; the input gradient is the sum of what comes back."""
        ds = dout if self.shortcut is None else self.shortcut.backward(dout)
        return self.body.backward(dout) + ds


class BasicBlock(Module):
    r"""ResNet basic block (He et al., 2016), the CIFAR/torchvision layout, post-activation.

    .. math::

        y = \mathrm{relu}\big(\mathrm{bn}_2(\mathrm{conv}_2(\mathrm{relu}(\mathrm{bn}_1(\mathrm{conv}_1 x))))
            + S(x)\big)

    ``conv1`` is 3×3 with the block's ``stride`` and padding 1, ``conv2`` is 3×3 with stride 1 and padding 1,
    both without bias (the following BatchNorm's shift makes a bias redundant). The shortcut :math:`S` is the
    identity when the shape is unchanged (``stride == 1`` and ``in_channels == out_channels``); otherwise
    the projection ``shortcut = Sequential(Conv2d(in, out, 1, stride, bias=False), BatchNorm2d(out))``,
    whose children are named ``"0"`` and ``"1"`` (PyTorch's ``nn.Sequential`` names), option B of the
    ResNet paper. The ReLUs are applied functionally (they have no parameters), so the children are exactly
    ``conv1, bn1, conv2, bn2[, shortcut]`` and the parameter names match
    ``layer1.0.conv1.weight``-style PyTorch names.

    Parameters
    ----------
    in_channels, out_channels : int
    stride : int
        Stride of ``conv1`` and of the projection shortcut (2 halves the spatial size).
    rng : numpy.random.Generator, optional
        Initialises the convolutions (in the order conv1, conv2, shortcut); default ``default_rng(0)``.
    dtype : numpy dtype
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 rng: np.random.Generator | None = None, dtype=np.float32) -> None:
        super().__init__()
        in_channels = check_positive_int(in_channels, "in_channels")
        out_channels = check_positive_int(out_channels, "out_channels")
        stride = check_positive_int(stride, "stride")
        rng = np.random.default_rng(0) if rng is None else rng
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.conv1 = self.add_child("conv1", Conv2d(in_channels, out_channels, 3, stride, 1, bias=False,
                                                    rng=rng, dtype=dtype))
        self.bn1 = self.add_child("bn1", BatchNorm2d(out_channels, dtype=dtype))
        self.conv2 = self.add_child("conv2", Conv2d(out_channels, out_channels, 3, 1, 1, bias=False,
                                                    rng=rng, dtype=dtype))
        self.bn2 = self.add_child("bn2", BatchNorm2d(out_channels, dtype=dtype))
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = self.add_child("shortcut", Sequential([
                Conv2d(in_channels, out_channels, 1, stride, 0, bias=False, rng=rng, dtype=dtype),
                BatchNorm2d(out_channels, dtype=dtype),
            ]))
        self._relu1_cache = self._relu2_cache = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x`` (N, in, H, W) -> (N, out, H', W') with ``H' = ceil(H / stride)``."""
        h, relu1_cache = relu_forward(self.bn1.forward(self.conv1.forward(x)))
        self._relu1_cache = self._keep(relu1_cache)
        h = self.bn2.forward(self.conv2.forward(h))
        s = x if self.shortcut is None else self.shortcut.forward(x)
        out, relu2_cache = relu_forward(h + s)
        self._relu2_cache = self._keep(relu2_cache)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Backpropagate through the final ReLU, then both branches; sum their input gradients."""
        d_sum = relu_backward(dout, self._saved("_relu2_cache"))
        dx_shortcut = d_sum if self.shortcut is None else self.shortcut.backward(d_sum)
        dh = self.conv2.backward(self.bn2.backward(d_sum))
        dh = relu_backward(dh, self._relu1_cache)
        dx_body = self.conv1.backward(self.bn1.backward(dh))
        return dx_body + dx_shortcut

    def extra_repr(self) -> str:
        """Show the channel counts and the stride."""
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"
