"""The networks of the experiments: LeNet-5, LeNet-300-100, a small VGG and a CIFAR-style ResNet.

Every builder returns a :class:`Network` (a :class:`~refimpl.nn.module.Sequential`) whose parameter names
are PyTorch's (``"conv1.weight"``, ``"layer1.0.bn1.running_mean"``, ``"fc.bias"``), so its ``state_dict``
loads into the equivalent PyTorch definition without renaming. A network also knows

* ``input_shape``: the ``(C, H, W)`` of one input it was built for;
* ``prunable``: the names of the convolution and linear weights, the tensors the pruning methods act on;
* ``num_classes``.

All builders take keyword-only ``rng`` (a :class:`numpy.random.Generator`; default ``default_rng(0)``) for
the weight initialisation (PyTorch's default uniform fan-in rule) and ``dtype`` (float32 by default).

:func:`layer_table` reports per layer the weight shape, the parameter count, the output shape and the
multiply-accumulate count for one input; :func:`count_parameters` gives the parameter counts alone.
"""

from __future__ import annotations

import numpy as np

from refimpl._validation import check_positive_int, check_probability
from refimpl.nn.activation import ReLU
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.conv import Conv2d
from refimpl.nn.dropout import Dropout
from refimpl.nn.flatten import Flatten
from refimpl.nn.linear import Linear
from refimpl.nn.module import Module, Sequential
from refimpl.nn.pool import GlobalAvgPool2d, MaxPool2d
from refimpl.nn.residual import BasicBlock

__all__ = [
    "MODELS",
    "Network",
    "build_model",
    "count_parameters",
    "layer_table",
    "lenet300_100",
    "lenet5",
    "resnet_small",
    "set_engine",
    "vgg_small",
]


class Network(Sequential):
    """A named :class:`Sequential` that records the input it expects and which weights are prunable.

    Parameters
    ----------
    layers : iterable of (str, Module)
        The named children, in order.
    name : str
        The architecture's name (a key of :data:`MODELS`).
    input_shape : tuple of int
        ``(C, H, W)`` of one input.
    num_classes : int
    """

    def __init__(self, layers, *, name: str, input_shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__(layers)
        self.name = name
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)

    @property
    def prunable(self) -> list[str]:
        """Names of every convolution and linear weight, in forward order (``["conv1.weight", ...]``).

        Computed from the current structure, so it stays right after model surgery. Biases and BatchNorm
        parameters are never pruned. Projection shortcuts (1×1 convolutions) are included; a method that
        wants to spare them (or the first and last layer) filters this list.
        """
        return [f"{name}.weight" for name, module in self.named_modules()
                if isinstance(module, (Conv2d, Linear))]

    def extra_repr(self) -> str:
        """Show the architecture name and the input shape."""
        return f"{self.name}, input_shape={self.input_shape}"


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(0)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator or None, got {type(rng).__name__}")
    return rng


def _conv_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling window along one axis (floor division, as PyTorch)."""
    return (size + 2 * padding - kernel) // stride + 1


# --- LeNet ----------------------------------------------------------------------------------------------

def lenet5(num_classes: int = 10, in_channels: int = 1, input_size: int = 28, *, padding: int | None = None,
           rng: np.random.Generator | None = None, dtype=np.float32) -> Network:
    r"""LeNet-5 "20-50-500-10", the network of the ADMM pruning papers (Caffe's MNIST LeNet).

    ``conv1`` 20 filters 5×5 → ReLU → 2×2 max-pool → ``conv2`` 50 filters 5×5 → ReLU → 2×2 max-pool →
    flatten → ``fc1`` 500 → ReLU → ``fc2`` ``num_classes``. On 28×28 inputs (no padding) the feature maps
    are 28 → 24 → 12 → 8 → 4, so ``fc1`` reads 50·4·4 = 800 features and the network has
    430,500 weights and 580 biases (431,080 parameters).

    Parameters
    ----------
    num_classes : int
    in_channels : int
        1 for MNIST-style images, 3 for colour.
    input_size : int
        Height = width of the input.
    padding : int, optional
        Zero padding of both convolutions. ``None`` (default) chooses **0 for input_size >= 16** (the
        classic valid convolutions) and **2 below**, which makes the 5×5 convolutions size-preserving: on the
        8×8 scikit-learn digits the maps go 8 → 8 → 4 → 4 → 2 and ``fc1`` reads 50·2·2 = 200 features.
    rng : numpy.random.Generator, optional
    dtype : numpy dtype

    Returns
    -------
    Network
        Children ``conv1, relu1, pool1, conv2, relu2, pool2, flatten, fc1, relu3, fc2``; prunable weights
        ``conv1.weight, conv2.weight, fc1.weight, fc2.weight``.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    in_channels = check_positive_int(in_channels, "in_channels")
    input_size = check_positive_int(input_size, "input_size")
    if padding is None:
        padding = 0 if input_size >= 16 else 2
    padding = check_positive_int(padding, "padding", minimum=0)
    size = _conv_size(_conv_size(input_size, 5, 1, padding), 2, 2)
    size = _conv_size(_conv_size(size, 5, 1, padding), 2, 2)
    if size < 1:
        raise ValueError(f"input_size={input_size} with padding={padding} is too small for LeNet-5")
    rng = _rng(rng)
    layers = [
        ("conv1", Conv2d(in_channels, 20, 5, 1, padding, rng=rng, dtype=dtype)),
        ("relu1", ReLU()),
        ("pool1", MaxPool2d(2)),
        ("conv2", Conv2d(20, 50, 5, 1, padding, rng=rng, dtype=dtype)),
        ("relu2", ReLU()),
        ("pool2", MaxPool2d(2)),
        ("flatten", Flatten()),
        ("fc1", Linear(50 * size * size, 500, rng=rng, dtype=dtype)),
        ("relu3", ReLU()),
        ("fc2", Linear(500, num_classes, rng=rng, dtype=dtype)),
    ]
    return Network(layers, name="lenet5", input_shape=(in_channels, input_size, input_size),
                   num_classes=num_classes)


def lenet300_100(num_classes: int = 10, in_channels: int = 1, input_size: int = 28, *,
                 rng: np.random.Generator | None = None, dtype=np.float32) -> Network:
    """LeNet-300-100 (LeCun et al., 1998; Han et al., 2015): a multilayer perceptron on the raw pixels.

    flatten → ``fc1`` 300 → ReLU → ``fc2`` 100 → ReLU → ``fc3`` ``num_classes``. Takes images (N, C, H, W)
    like the other models. On 28×28 MNIST: 266,200 weights and 410 biases (266,610 parameters).

    Returns
    -------
    Network
        Children ``flatten, fc1, relu1, fc2, relu2, fc3``; prunable ``fc1.weight, fc2.weight, fc3.weight``.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    in_channels = check_positive_int(in_channels, "in_channels")
    input_size = check_positive_int(input_size, "input_size")
    rng = _rng(rng)
    layers = [
        ("flatten", Flatten()),
        ("fc1", Linear(in_channels * input_size * input_size, 300, rng=rng, dtype=dtype)),
        ("relu1", ReLU()),
        ("fc2", Linear(300, 100, rng=rng, dtype=dtype)),
        ("relu2", ReLU()),
        ("fc3", Linear(100, num_classes, rng=rng, dtype=dtype)),
    ]
    return Network(layers, name="lenet300_100", input_shape=(in_channels, input_size, input_size),
                   num_classes=num_classes)


# --- VGG ------------------------------------------------------------------------------------------------

def vgg_small(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: int = 32, *,
              hidden: int = 256, dropout: float = 0.0, rng: np.random.Generator | None = None,
              dtype=np.float32) -> Network:
    """Small VGG (Simonyan & Zisserman, 2015): three stages of two 3×3 conv-BN-ReLU blocks and a max-pool.

    Stage widths ``width, 2·width, 4·width`` (default 32-64-128, so six convolutions), each convolution 3×3
    with padding 1 and no bias (the BatchNorm shift replaces it), each stage closed by a 2×2 max-pool; then
    flatten → ``fc1`` ``hidden`` → ReLU [→ dropout] → ``fc2`` ``num_classes``. Spatial size goes
    ``s → s//2 → s//4 → s//8`` (32 → 4, 28 → 3, 8 → 1), so ``input_size`` must be at least 8.

    Parameters
    ----------
    num_classes, in_channels, input_size : int
    width : int
        Channels of the first stage.
    hidden : int
        Width of the hidden fully connected layer.
    dropout : float
        Drop probability before ``fc2``; 0 (default) adds no dropout layer.
    rng : numpy.random.Generator, optional
    dtype : numpy dtype

    Returns
    -------
    Network
        Children ``conv1, bn1, relu1, conv2, bn2, relu2, pool1, conv3, ..., pool3, flatten, fc1, relu7,
        [drop,] fc2``.
    """
    num_classes = check_positive_int(num_classes, "num_classes")
    in_channels = check_positive_int(in_channels, "in_channels")
    input_size = check_positive_int(input_size, "input_size")
    width = check_positive_int(width, "width")
    hidden = check_positive_int(hidden, "hidden")
    dropout = check_probability(dropout, "dropout")
    if input_size < 8:
        raise ValueError(f"input_size must be >= 8 (three 2x2 max-pools), got {input_size}")
    rng = _rng(rng)
    layers: list[tuple[str, Module]] = []
    channels, index, size = in_channels, 0, input_size
    for stage, out_channels in enumerate((width, 2 * width, 4 * width), start=1):
        for _ in range(2):
            index += 1
            layers += [
                (f"conv{index}", Conv2d(channels, out_channels, 3, 1, 1, bias=False, rng=rng, dtype=dtype)),
                (f"bn{index}", BatchNorm2d(out_channels, dtype=dtype)),
                (f"relu{index}", ReLU()),
            ]
            channels = out_channels
        layers.append((f"pool{stage}", MaxPool2d(2)))
        size //= 2
    layers += [
        ("flatten", Flatten()),
        ("fc1", Linear(channels * size * size, hidden, rng=rng, dtype=dtype)),
        (f"relu{index + 1}", ReLU()),
    ]
    if dropout > 0:
        layers.append(("drop", Dropout(dropout)))
    layers.append(("fc2", Linear(hidden, num_classes, rng=rng, dtype=dtype)))
    return Network(layers, name="vgg_small", input_shape=(in_channels, input_size, input_size),
                   num_classes=num_classes)


# --- ResNet ---------------------------------------------------------------------------------------------

def resnet_small(depth: int = 20, width: int = 16, num_classes: int = 10, in_channels: int = 3,
                 input_size: int = 32, *, rng: np.random.Generator | None = None,
                 dtype=np.float32) -> Network:
    """CIFAR ResNet (He et al., 2016, section 4.2): ``depth = 6n + 2`` with three stages of n basic blocks.

    ``conv1`` 3×3 ``width`` (no bias) → ``bn1`` → ReLU → ``layer1`` (n blocks, ``width`` channels) →
    ``layer2`` (n blocks, ``2·width``, the first with stride 2) → ``layer3`` (``4·width``, stride 2) →
    global average pool → ``fc``. Shortcuts are the identity inside a stage and a 1×1 conv + BN projection
    where the shape changes (see :class:`~refimpl.nn.residual.BasicBlock`). ``depth=20, width=16`` is
    ResNet-20 (0.27M parameters); ``depth=8`` (n = 1) is the smallest member.

    Parameters
    ----------
    depth : int
        6n + 2 for some n >= 1 (8, 14, 20, 32, 44, 56, 110).
    width : int
        Channels of the first stage.
    num_classes, in_channels : int
    input_size : int
        Recorded in ``input_shape``; the global pool makes the network accept any size >= 1.
    rng : numpy.random.Generator, optional
    dtype : numpy dtype

    Returns
    -------
    Network
        Children ``conv1, bn1, relu, layer1, layer2, layer3, avgpool, fc``; block parameters are named like
        ``layer2.0.conv1.weight`` and ``layer2.0.shortcut.0.weight``.
    """
    depth = check_positive_int(depth, "depth")
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
    width = check_positive_int(width, "width")
    num_classes = check_positive_int(num_classes, "num_classes")
    in_channels = check_positive_int(in_channels, "in_channels")
    input_size = check_positive_int(input_size, "input_size")
    rng = _rng(rng)
    blocks_per_stage = (depth - 2) // 6
    layers: list[tuple[str, Module]] = [
        ("conv1", Conv2d(in_channels, width, 3, 1, 1, bias=False, rng=rng, dtype=dtype)),
        ("bn1", BatchNorm2d(width, dtype=dtype)),
        ("relu", ReLU()),
    ]
    channels = width
    for stage, (out_channels, stride) in enumerate(((width, 1), (2 * width, 2), (4 * width, 2)), start=1):
        blocks = []
        for b in range(blocks_per_stage):
            blocks.append(BasicBlock(channels, out_channels, stride if b == 0 else 1, rng=rng, dtype=dtype))
            channels = out_channels
        layers.append((f"layer{stage}", Sequential(blocks)))
    layers += [
        ("avgpool", GlobalAvgPool2d()),
        ("fc", Linear(channels, num_classes, rng=rng, dtype=dtype)),
    ]
    return Network(layers, name="resnet_small", input_shape=(in_channels, input_size, input_size),
                   num_classes=num_classes)


# --- registry -------------------------------------------------------------------------------------------

MODELS = {
    "lenet5": lenet5,
    "lenet300_100": lenet300_100,
    "vgg_small": vgg_small,
    "resnet_small": resnet_small,
}
"""Name -> builder, for configs and the command line."""


def build_model(name: str, **kwargs) -> Network:
    """Build the architecture ``name`` (a key of :data:`MODELS`) with the builder's keyword arguments.

    Examples
    --------
    >>> model = build_model("lenet5", input_size=8, dtype=np.float64)
    >>> model.input_shape, model.prunable[0]
    ((1, 8, 8), 'conv1.weight')
    """
    if name not in MODELS:
        raise ValueError(f"name must be one of {sorted(MODELS)}, got {name!r}")
    return MODELS[name](**kwargs)


def set_engine(model: Module, engine: str) -> Module:
    """Select the kernel engine (``"numba"`` or ``"numpy"``) of every layer that has one; return ``model``.

    Layers with kernels (convolution, pooling) carry an ``engine`` attribute; the others have nothing to
    select. The two engines compute the same numbers, the NumPy one being the readable reference.
    """
    if engine not in ("numba", "numpy"):
        raise ValueError(f"engine must be 'numba' or 'numpy', got {engine!r}")
    for _, module in model.named_modules():
        if hasattr(module, "engine"):
            module.engine = engine
    return model


# --- per-layer accounting -------------------------------------------------------------------------------

def count_parameters(model: Module) -> dict[str, int]:
    """Trainable scalars per module that owns parameters: ``{"conv1": 520, "fc1": 400500, ...}``.

    Keys are dotted module names; the values sum to ``model.num_parameters()``. Buffers (BatchNorm running
    statistics) are not counted.
    """
    return {name: int(sum(p.size for p in module.params.values()))
            for name, module in model.named_modules() if module.params}


def _leaves(model: Module) -> list[tuple[str, Module]]:
    """Modules without children: the layers that do the computing."""
    return [(name, module) for name, module in model.named_modules() if next(module.children(), None) is None]


def layer_table(model: Module, input_shape: tuple[int, ...] | None = None) -> list[dict]:
    r"""One row per leaf layer: parameter counts, output shapes and multiply-accumulates for one input.

    The shapes come from an actual forward pass of a zero batch of size 1 in evaluation mode, with every
    leaf's ``forward`` temporarily wrapped to record its input and output shapes; afterwards the wrappers
    are removed and every module's train/eval flag restored (BatchNorm statistics do not move in evaluation
    mode; the layers' caches are overwritten).

    Multiply-accumulates (MACs) count only convolutions and linear layers, the dense work pruning removes:

    .. math::

        \mathrm{MACs}_\text{conv} = F \cdot C \cdot K_H K_W \cdot H_\text{out} W_\text{out}, \qquad
        \mathrm{MACs}_\text{linear} = \text{out} \cdot \text{in}

    (one MAC per weight and output position; bias additions, BatchNorm, pooling and ReLU count 0).

    Parameters
    ----------
    model : Module
    input_shape : tuple of int, optional
        ``(C, H, W)`` of one input; default ``model.input_shape``.

    Returns
    -------
    list of dict
        Keys ``name`` (dotted), ``kind`` (class name), ``weight_shape`` (tuple or ``None``), ``params``
        (int), ``input_shape`` and ``output_shape`` (tuples without the batch axis, ``None`` for a layer
        the forward pass did not reach) and ``macs`` (int).
    """
    if input_shape is None:
        if not hasattr(model, "input_shape"):
            raise ValueError("input_shape is required for a model without an input_shape attribute")
        input_shape = model.input_shape
    input_shape = tuple(check_positive_int(d, "input_shape entries") for d in input_shape)
    leaves = _leaves(model)
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def recording(name: str, forward):
        def wrapped(x):
            out = forward(x)
            shapes[name] = (tuple(x.shape[1:]), tuple(out.shape[1:]))
            return out
        return wrapped

    modes = [(module, module.training) for _, module in model.named_modules()]
    params = list(model.parameters().values())
    dtype = params[0].dtype if params else np.float32
    try:
        for name, module in leaves:
            module.forward = recording(name, module.forward)  # instance attribute shadows the method
        model.eval()
        model.forward(np.zeros((1, *input_shape), dtype=dtype))
    finally:
        for _, module in leaves:
            module.__dict__.pop("forward", None)
        for module, mode in modes:
            module.training = mode

    rows = []
    for name, module in leaves:
        weight = module.params.get("weight")
        in_shape, out_shape = shapes.get(name, (None, None))
        macs = 0
        if isinstance(module, Conv2d) and out_shape is not None:
            macs = weight.size * out_shape[1] * out_shape[2]
        elif isinstance(module, Linear):
            macs = weight.size
        rows.append({
            "name": name,
            "kind": type(module).__name__,
            "weight_shape": None if weight is None else tuple(weight.shape),
            "params": int(sum(p.size for p in module.params.values())),
            "input_shape": in_shape,
            "output_shape": out_shape,
            "macs": int(macs),
        })
    return rows
