"""The PyTorch twin of a refimpl network: the same layers, parameter names and weights, for cross-checks.

``torch_twin(model)`` walks a refimpl :class:`~refimpl.nn.Module` tree and builds the ``torch.nn`` module
that computes the same function: ``Conv2d``, ``Linear``, ``BatchNorm2d`` (same ``eps`` and ``momentum``),
``ReLU``, ``MaxPool2d``, ``AvgPool2d``, ``GlobalAvgPool2d`` (adaptive average pool + flatten), ``Flatten``,
``Dropout``, ``Sequential`` / ``Network`` and ResNet's ``BasicBlock``. Parameter and buffer names match
refimpl's (``layer2.0.conv1.weight``, ``bn1.running_mean``), and the refimpl state is copied in, so
the two networks start from the same weights. Used by ``paper_repro/bench_training.py`` (speed against
PyTorch) and available to anyone who checks a model against its PyTorch twin.

PyTorch is imported on demand (it is an optional dependency); the twin is float32 unless ``dtype`` says
otherwise.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from refimpl.nn.activation import ReLU
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.conv import Conv2d
from refimpl.nn.dropout import Dropout
from refimpl.nn.flatten import Flatten
from refimpl.nn.linear import Linear
from refimpl.nn.module import Module, Sequential
from refimpl.nn.pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from refimpl.nn.residual import BasicBlock

__all__ = ["torch_twin"]


def torch_twin(model: Module, *, dtype: str = "float32"):
    """Return a ``torch.nn.Module`` computing what ``model`` computes, loaded with ``model``'s state.

    Raises
    ------
    TypeError
        A layer type with no twin here (the message names it and its path in the tree).
    """
    import torch

    twin = _twin(torch, model, "")
    state = {name: torch.from_numpy(np.array(value)) for name, value in model.state_dict().items()}
    missing, unexpected = twin.load_state_dict(state, strict=False)
    # BatchNorm's num_batches_tracked counter exists only in PyTorch; everything else must match
    missing = [name for name in missing if not name.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"torch twin does not match the refimpl state: missing {missing}, "
                           f"unexpected {unexpected}")
    twin = twin.to(getattr(torch, dtype))
    twin.train(model.training)
    return twin


def _twin(torch, module: Module, path: str):
    nn = torch.nn
    if isinstance(module, Conv2d):
        return nn.Conv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                         module.padding, bias="bias" in module.params)
    if isinstance(module, Linear):
        return nn.Linear(module.in_features, module.out_features, bias="bias" in module.params)
    if isinstance(module, BatchNorm2d):
        return nn.BatchNorm2d(module.params["weight"].shape[0], eps=module.eps, momentum=module.momentum)
    if isinstance(module, ReLU):
        return nn.ReLU()
    if isinstance(module, MaxPool2d):
        return nn.MaxPool2d(module.kernel_size, module.stride)
    if isinstance(module, AvgPool2d):
        return nn.AvgPool2d(module.kernel_size, module.stride)
    if isinstance(module, GlobalAvgPool2d):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if isinstance(module, Flatten):
        return nn.Flatten()
    if isinstance(module, Dropout):
        return nn.Dropout(module.p)
    if isinstance(module, BasicBlock):
        return _torch_basic_block(torch, module, path)
    if isinstance(module, Sequential):
        children = {name: _twin(torch, child, f"{path}.{name}" if path else name)
                    for name, child in module.children()}
        return nn.Sequential(OrderedDict(children))
    raise TypeError(f"no PyTorch twin for {type(module).__name__} at {path or '<root>'!r}")


def _torch_basic_block(torch, block: BasicBlock, path: str):
    """``relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x))`` with refimpl's child names."""

    class TwinBasicBlock(torch.nn.Module):
        def __init__(self):
            super().__init__()
            for name, child in block.children():
                self.add_module(name, _twin(torch, child, f"{path}.{name}"))
            if block.shortcut is None:
                self.shortcut = None

        def forward(self, x):
            h = torch.relu(self.bn1(self.conv1(x)))
            h = self.bn2(self.conv2(h))
            return torch.relu(h + (x if self.shortcut is None else self.shortcut(x)))

    return TwinBasicBlock()
