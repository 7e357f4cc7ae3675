"""Autograd-free layers: each a ``X_forward(...) -> (out, cache)`` / ``X_backward(dout, cache)`` pair.

Read a layer's module top to bottom: the forward pass with its math, the backward pass right under it, a
naive loop twin (the definition: the teaching version, and what the tests compare with), then a thin
:class:`~refimpl.nn.module.Module` class that holds the parameters and calls the pair. Containers
(:class:`Sequential`, :class:`Residual`, :class:`BasicBlock`) only chain their children; that is all
backpropagation is.

=================  ===================================================================================
module             what it holds
=================  ===================================================================================
``module``         :class:`Module` (params, grads, buffers, names) and :class:`Sequential`
``conv``           2-D convolution as im2col + GEMM (numba im2col/col2im in ``_kernels``)
``linear``         fully connected layer
``pool``           max, average and global average pooling
``batchnorm``      BatchNorm2d with PyTorch's running-statistics semantics
``activation``     ReLU
``dropout``        inverted dropout (randomness from :meth:`Module.set_rng`)
``flatten``        (N, C, H, W) -> (N, C·H·W) in PyTorch's order
``loss``           numerically stable softmax cross-entropy
``residual``       ``Residual`` (body + shortcut) and the ResNet ``BasicBlock``
=================  ===================================================================================
"""

from refimpl.nn import activation, batchnorm, conv, dropout, flatten, linear, loss, module, pool, residual
from refimpl.nn.activation import *  # noqa: F403
from refimpl.nn.batchnorm import *  # noqa: F403
from refimpl.nn.conv import *  # noqa: F403
from refimpl.nn.dropout import *  # noqa: F403
from refimpl.nn.flatten import *  # noqa: F403
from refimpl.nn.linear import *  # noqa: F403
from refimpl.nn.loss import *  # noqa: F403
from refimpl.nn.module import *  # noqa: F403
from refimpl.nn.pool import *  # noqa: F403
from refimpl.nn.residual import *  # noqa: F403

__all__ = [name for mod in (activation, batchnorm, conv, dropout, flatten, linear, loss, module, pool,
                            residual) for name in mod.__all__]
