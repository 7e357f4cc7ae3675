r"""Model surgery after pruning: unused-path removal (:func:`compact`, lossless) and :func:`purify` (lossy).

Both follow Ma et al., "ResNet can be pruned 60×" (section 4 of docs/ALGORITHMS.md).

**Unused-path removal** turns a *masked* network (dense arrays holding many zeros) into a *compact* one
(smaller dense arrays) that computes the same function. Two observations drive it:

1. A filter whose weights are all zero outputs a constant feature map: its bias :math:`b_f`, and after
   BatchNorm (evaluation mode) and the activation the constant
   :math:`v_f = \mathrm{act}\big(\gamma_f (b_f - \mu_f)/\sqrt{\sigma_f^2 + \epsilon} + \beta_f\big)`.
   Every consumer that reads channel :math:`f` receives that constant; when the consumer can absorb the
   constant into its own bias **exactly**, channel :math:`f` can go.
2. If every weight of every consumer that reads channel :math:`c` is zero, nothing uses channel :math:`c`:
   its producing filter (and bias, and BatchNorm entries) can go.

Removing a channel can kill more (a filter that only read removed channels becomes all-zero), so the
surgery repeats until nothing changes.

How the code sees a network
---------------------------
The model is traced (its structure walked, no data) into a list of operations on *tensors*, and each
tensor belongs to a *channel space*: a set of channel indices that must be removed together because the
same index means the same channel in all of them. A convolution or linear layer starts a new space for its
output; BatchNorm, ReLU, pooling, dropout and flatten keep their input's space (they act per channel); a
residual addition **merges** the spaces of the two tensors it adds (an identity shortcut therefore ties the
channels of all blocks of a ResNet stage into one space — a channel of that residual stream can go only
when it is dead in every tensor added together). Per space and channel :math:`c`, the rule is:

.. math::

    c \text{ removable} \iff \forall\, \text{readers } r:\;
    W^{(r)}_{:, c} = 0 \;\lor\; \big(x_c \equiv v_c \text{ constant} \land \text{foldable}(r, v_c)\big)

where :math:`\text{foldable}(r, v)` holds when :math:`v = 0` (a zero channel contributes nothing, even
through zero padding), or when ``fold_bias`` is on and :math:`r` is a linear layer or an unpadded
convolution. Folding adds, for every output :math:`j` of the reader,

.. math::

    \Delta b_j = v_c \sum_{k \in \text{cols}(c)} W^{(r)}_{j k}

(the kernel positions of channel :math:`c` for a convolution, the :math:`H W` flattened columns for a
linear layer after ``Flatten``). A padded convolution sees zeros at the border instead of :math:`v_c`, so
its output is not "constant plus something" and a nonzero :math:`v_c` cannot be folded: the channel stays.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from refimpl._validation import check_finite, check_probability
from refimpl.models import layer_table
from refimpl.nn.activation import ReLU
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.conv import Conv2d
from refimpl.nn.dropout import Dropout
from refimpl.nn.flatten import Flatten
from refimpl.nn.linear import Linear
from refimpl.nn.module import Module, Sequential
from refimpl.nn.pool import AvgPool2d, GlobalAvgPool2d, MaxPool2d
from refimpl.nn.residual import BasicBlock, Residual
from refimpl.prune.masking import apply_masks

__all__ = [
    "CompactionReport",
    "LayerCompaction",
    "LayerPurification",
    "PurificationReport",
    "compact",
    "purify",
]


# =======================================================================================================
# The channel graph
# =======================================================================================================

class _Space:
    """A set of channel indices shared by tensors that must lose the same channels (union-find node)."""

    def __init__(self, size: int, *, protected: bool = False) -> None:
        self.size = int(size)
        self.protected = protected  # the network's input and output channels never go
        self.parent: _Space | None = None

    def root(self) -> _Space:
        space = self
        while space.parent is not None:
            space = space.parent
        return space


def _merge(a: _Space, b: _Space) -> _Space:
    """Union of two spaces (a residual addition): their channels are the same channels."""
    a, b = a.root(), b.root()
    if a is b:
        return a
    if a.size != b.size:
        raise ValueError(f"cannot add tensors with {a.size} and {b.size} channels")
    b.parent = a
    a.protected = a.protected or b.protected
    return a


@dataclass(eq=False)
class _Tensor:
    """An intermediate value. ``hw`` = flattened columns per channel (1 unless it comes out of Flatten)."""

    space: _Space
    hw: int = 1


@dataclass(eq=False)
class _Op:
    """One traced operation.

    ``kind`` is ``"weight"`` (Conv2d/Linear), ``"bn"``, ``"relu"``, ``"same"`` (a per-channel operation that
    maps a spatially constant map to the same constant: pooling, dropout in evaluation mode, flatten) or
    ``"add"`` (``x + other``).
    """

    kind: str
    name: str
    module: Module | None
    x: _Tensor
    y: _Tensor
    other: _Tensor | None = None
    next_bn: _Op | None = None  # the BatchNorm that alone reads this weight layer's output, if any


class _Graph:
    """The traced network: operations in forward order, the input and the output tensor."""

    def __init__(self, model: Module, in_channels: int, flatten_hw: Mapping[str, int]) -> None:
        self.ops: list[_Op] = []
        self.flatten_hw = flatten_hw
        self.input = _Tensor(_Space(in_channels, protected=True))
        self.output = self._trace(model, "", self.input)
        self.output.space.root().protected = True
        # Resolve the union-find once, so every tensor points at its final space.
        for op in self.ops:
            for t in (op.x, op.y, op.other):
                if t is not None:
                    t.space = t.space.root()
        self.input.space, self.output.space = self.input.space.root(), self.output.space.root()
        self._link_batchnorms()

    # --- tracing -----------------------------------------------------------------------------------
    def _add(self, kind: str, name: str, module, x: _Tensor, y: _Tensor, other=None) -> _Tensor:
        self.ops.append(_Op(kind, name, module, x, y, other))
        return y

    def _trace(self, module: Module, name: str, x: _Tensor) -> _Tensor:
        def join(child: str) -> str:
            return f"{name}.{child}" if name else child

        if isinstance(module, BasicBlock):
            return self._trace_basic_block(module, name, x)
        if isinstance(module, Residual):
            body = self._trace(module.body, join("body"), x)
            short = x if module.shortcut is None else self._trace(module.shortcut, join("shortcut"), x)
            return self._add("add", name, None, body, _Tensor(_merge(body.space, short.space)), short)
        if isinstance(module, Sequential):
            for child_name, child in module.children():
                x = self._trace(child, join(child_name), x)
            return x
        if isinstance(module, Conv2d):
            if x.hw != 1 or module.params["weight"].shape[1] != x.space.root().size:
                raise ValueError(f"layer {name!r} reads {module.params['weight'].shape[1]} channels, "
                                 f"its input has {x.space.root().size}")
            return self._add("weight", name, module, x, _Tensor(_Space(module.params["weight"].shape[0])))
        if isinstance(module, Linear):
            w = module.params["weight"]
            if w.shape[1] != x.space.root().size * x.hw:
                raise ValueError(f"layer {name!r} reads {w.shape[1]} features, its input has "
                                 f"{x.space.root().size} channels x {x.hw} positions")
            return self._add("weight", name, module, x, _Tensor(_Space(w.shape[0])))
        if isinstance(module, BatchNorm2d):
            return self._add("bn", name, module, x, _Tensor(x.space, x.hw))
        if isinstance(module, ReLU):
            return self._add("relu", name, module, x, _Tensor(x.space, x.hw))
        if isinstance(module, (MaxPool2d, AvgPool2d, GlobalAvgPool2d, Dropout)):
            # Pools here have no padding: a window of a constant map holds only that constant.
            return self._add("same", name, module, x, _Tensor(x.space, x.hw))
        if isinstance(module, Flatten):
            return self._add("same", name, module, x, _Tensor(x.space, x.hw * self.flatten_hw[name]))
        raise TypeError(f"compaction does not know how channels flow through {type(module).__name__} "
                        f"(module {name!r}); supported: Sequential, BasicBlock, Residual, Conv2d, Linear, "
                        f"BatchNorm2d, ReLU, MaxPool2d, AvgPool2d, GlobalAvgPool2d, Dropout, Flatten")

    def _trace_basic_block(self, block: BasicBlock, name: str, x: _Tensor) -> _Tensor:
        """Trace the data flow of :meth:`BasicBlock.forward`, written out with its child names."""
        h = self._trace(block.conv1, f"{name}.conv1", x)
        h = self._trace(block.bn1, f"{name}.bn1", h)
        h = self._add("relu", f"{name}.relu1", None, h, _Tensor(h.space))
        h = self._trace(block.conv2, f"{name}.conv2", h)
        h = self._trace(block.bn2, f"{name}.bn2", h)
        s = x if block.shortcut is None else self._trace(block.shortcut, f"{name}.shortcut", x)
        out = self._add("add", f"{name}.add", None, h, _Tensor(_merge(h.space, s.space)), s)
        return self._add("relu", f"{name}.relu2", None, out, _Tensor(out.space))

    def _link_batchnorms(self) -> None:
        """Mark a weight layer whose only reader is a BatchNorm: a constant can be folded into that BN."""
        readers: dict[int, list[_Op]] = {}
        for op in self.ops:
            for t in (op.x, op.other):
                if t is not None:
                    readers.setdefault(id(t), []).append(op)
        for op in self.ops:
            after = readers.get(id(op.y), [])
            if op.kind == "weight" and len(after) == 1 and after[0].kind == "bn" and op.y is not self.output:
                op.next_bn = after[0]

    # --- queries -----------------------------------------------------------------------------------
    def spaces(self) -> list[_Space]:
        """Every channel space, in order of first appearance."""
        seen: dict[int, _Space] = {}
        for op in self.ops:
            seen.setdefault(id(op.x.space), op.x.space)
            seen.setdefault(id(op.y.space), op.y.space)
        return list(seen.values())

    def weight_ops(self) -> list[_Op]:
        return [op for op in self.ops if op.kind == "weight"]


def _channel_view(op: _Op) -> np.ndarray:
    """View the reader's weight as ``(outputs, input channels, positions per channel)``.

    A convolution's ``(F, C, KH, KW)`` becomes ``(F, C, KH·KW)``; a linear layer after ``Flatten`` reads
    ``hw`` consecutive columns per channel (row-major flatten), so ``(out, C·hw)`` becomes ``(out, C, hw)``.
    """
    w = op.module.params["weight"]
    return w.reshape(w.shape[0], op.x.space.size, -1)


def _bn_constant(bn: BatchNorm2d, v: np.ndarray) -> np.ndarray:
    """Evaluation-mode BatchNorm of per-channel constants (the formula of ``batchnorm2d_forward``)."""
    p, b = bn.params, bn.buffers
    inv_std = 1.0 / np.sqrt(b["running_var"].astype(np.float64) + bn.eps)
    return p["weight"] * (v - b["running_mean"]) * inv_std + p["bias"]


def _constants(graph: _Graph) -> dict[int, np.ndarray]:
    """Per tensor and channel, the constant the channel holds on every input, or NaN for a live channel.

    NaN is the "live" marker because every per-channel operation propagates it (``nan * a + b``,
    ``maximum(nan, 0)`` and ``nan + v`` are NaN); parameters are checked finite before, so a real constant
    is never NaN. Values are float64.
    """
    values = {id(graph.input): np.full(graph.input.space.size, np.nan)}
    for op in graph.ops:
        v = values[id(op.x)]
        if op.kind == "weight":
            dead = ~(_channel_view(op) != 0).any(axis=(1, 2))
            bias = op.module.params.get("bias")
            constant = np.zeros(dead.shape) if bias is None else bias.astype(np.float64)
            values[id(op.y)] = np.where(dead, constant, np.nan)
        elif op.kind == "bn":
            values[id(op.y)] = _bn_constant(op.module, v)
        elif op.kind == "relu":
            values[id(op.y)] = np.maximum(v, 0.0)
        elif op.kind == "add":
            values[id(op.y)] = v + values[id(op.other)]
        else:
            values[id(op.y)] = v
    return values


def _can_fold(op: _Op) -> bool:
    """Whether a constant input channel can be folded exactly into the reader's bias."""
    return isinstance(op.module, Linear) or op.module.padding == 0


def _removable(graph: _Graph, space: _Space, values, fold_bias: bool) -> np.ndarray:
    """Boolean (size,) mask of the channels of ``space`` that can go without changing the output."""
    removable = np.ones(space.size, dtype=bool)
    if space.protected:
        return ~removable
    for op in graph.weight_ops():
        if op.x.space is not space:
            continue
        reads = (_channel_view(op) != 0).any(axis=(0, 2))
        v = values[id(op.x)]
        constant = ~np.isnan(v)
        foldable = constant & ((v == 0) | (fold_bias and _can_fold(op)))
        removable &= ~reads | foldable
    if removable.all():
        # (choice) Keep one channel so no layer becomes empty; it carries a constant or is never read.
        removable[0] = False
    return removable


# =======================================================================================================
# Surgery
# =======================================================================================================

@dataclass
class _Track:
    """Original indices of a module's current outputs (``rows``) and input columns (``cols``)."""

    rows: np.ndarray
    cols: np.ndarray | None = None
    hw: int = 1
    folded: set = field(default_factory=set)
    bias_added: bool = False
    bn_shifted: bool = False


def _slice_param(module: Module, key: str, index: np.ndarray, axis: int) -> None:
    """Keep ``index`` along ``axis`` of parameter/gradient (or buffer) ``key``, as fresh contiguous arrays."""
    for store in (module.params, module.grads, module.buffers):
        if key in store:
            store[key] = np.ascontiguousarray(np.take(store[key], index, axis=axis))


def _fold(op: _Op, drop: np.ndarray, v: np.ndarray, track: _Track) -> None:
    r"""Add the constant contribution of the dropped input channels to the reader's bias.

    :math:`\Delta b_j = \sum_{c \in \text{drop}} v_c \sum_k W_{j c k}` over the channels the reader
    actually reads (for the others the weights are zero, and ``v`` may be NaN = live-but-unread).
    """
    w = _channel_view(op)[:, drop, :]
    reads = (w != 0).any(axis=(0, 2))
    if not reads.any():
        return
    delta = w[:, reads, :].sum(axis=2, dtype=np.float64) @ v[drop][reads]
    track.folded.update(int(c) for c in _kept_channels(track)[drop][reads])
    module = op.module
    if "bias" in module.params:
        module.params["bias"] += delta.astype(module.params["bias"].dtype)
    elif op.next_bn is not None:
        # BN(z + Δ) = γ (z − (μ − Δ)) / s + β: shifting the running mean absorbs Δ exactly in evaluation
        # mode; in training mode the batch-mean subtraction removes any per-channel constant anyway.
        bn = op.next_bn.module
        bn.buffers["running_mean"] -= delta.astype(bn.buffers["running_mean"].dtype)
        track.bn_shifted = True
    else:
        # (choice) A reader without a bias gets one rather than keeping the channel.
        dtype = module.params["weight"].dtype
        module.params["bias"] = delta.astype(dtype)
        module.grads["bias"] = np.zeros_like(module.params["bias"])
        track.bias_added = True


def _kept_channels(track: _Track) -> np.ndarray:
    """Original input-channel index of each current input channel of a weight layer."""
    return track.cols[:: track.hw] // track.hw


def _remove(graph: _Graph, space: _Space, keep: np.ndarray, tracks: dict[str, _Track]) -> None:
    """Slice every producer, BatchNorm and reader of ``space`` down to the channels ``keep``."""
    for op in graph.ops:
        if op.kind == "weight" and op.y.space is space:
            for key in ("weight", "bias"):
                _slice_param(op.module, key, keep, 0)
            tracks[op.name].rows = tracks[op.name].rows[keep]
            _set_sizes(op.module)
        if op.kind == "bn" and op.x.space is space:
            for key in ("weight", "bias", "running_mean", "running_var"):
                _slice_param(op.module, key, keep, 0)
            tracks[op.name].rows = tracks[op.name].rows[keep]
            op.module.num_features = len(keep)
        if op.kind == "weight" and op.x.space is space:
            hw = op.x.hw
            columns = (keep[:, None] * hw + np.arange(hw)).ravel()  # one channel = hw consecutive columns
            _slice_param(op.module, "weight", columns if isinstance(op.module, Linear) else keep, 1)
            tracks[op.name].cols = tracks[op.name].cols[columns]
            _set_sizes(op.module)
    space.size = len(keep)


def _set_sizes(module: Module) -> None:
    w = module.params["weight"]
    if isinstance(module, Conv2d):
        module.out_channels, module.in_channels = int(w.shape[0]), int(w.shape[1])
    else:
        module.out_features, module.in_features = int(w.shape[0]), int(w.shape[1])


def _clear_caches(model: Module) -> None:
    """Drop forward caches holding old shapes, so a backward before the next forward fails loudly."""
    for _, module in model.named_modules():
        for attr in list(vars(module)):
            if attr.endswith("_cache"):
                setattr(module, attr, None)
        if isinstance(module, BasicBlock):
            module.in_channels = module.conv1.in_channels
            module.out_channels = module.conv2.out_channels


# =======================================================================================================
# Report
# =======================================================================================================

@dataclass
class LayerCompaction:
    """What compaction did to one convolution or linear layer (indices refer to the original layer).

    Attributes
    ----------
    name, kind : str
    weight_shape_before, weight_shape_after : tuple of int
    kept_filters, removed_filters : ndarray of int
        Output channels (filters / neurons) kept and removed.
    kept_channels, removed_channels : ndarray of int
        Input channels kept and removed (for a linear layer after ``Flatten``: channels of the feature map,
        each ``hw`` columns wide).
    folded_channels : ndarray of int
        Removed input channels whose constant value was folded into this layer's bias (or the following
        BatchNorm's running mean).
    bias_added : bool
        A bias parameter was created to receive a folded constant.
    params_before, params_after : int
        Parameters of the layer (weight + bias).
    """

    name: str
    kind: str
    weight_shape_before: tuple
    weight_shape_after: tuple
    kept_filters: np.ndarray
    removed_filters: np.ndarray
    kept_channels: np.ndarray
    removed_channels: np.ndarray
    folded_channels: np.ndarray
    bias_added: bool
    params_before: int
    params_after: int

    def to_dict(self) -> dict:
        """JSON-friendly dict (index arrays become lists)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else list(v) if isinstance(v, tuple) else v)
                for k, v in vars(self).items()}


@dataclass
class CompactionReport:
    """Per-layer outcome of :func:`compact` plus the totals and the index maps.

    Attributes
    ----------
    layers : list of LayerCompaction
    params_before, params_after : int
        ``num_parameters()`` of the masked and of the compact model.
    iterations : int
        Passes until the fixed point (the last pass removes nothing).
    """

    layers: list[LayerCompaction]
    params_before: int
    params_after: int
    iterations: int
    _index: dict[str, _Track] = field(default_factory=dict, repr=False)
    _shapes: dict[str, tuple] = field(default_factory=dict, repr=False)

    @property
    def ratio(self) -> float:
        """``params_before / params_after``."""
        return self.params_before / self.params_after

    def transfer(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Cut arrays shaped like the original parameters/buffers down to the compact model's shapes.

        Use it to carry masks (``{"conv1.weight": bool mask}``) or optimizer state over to the compact
        model, e.g. to continue masked retraining on it.

        Parameters
        ----------
        arrays : dict of name -> ndarray
            Keys are dotted parameter or buffer names of the original model; shapes the original ones.

        Returns
        -------
        dict of name -> ndarray
            New arrays with the kept rows (outputs) and columns (inputs).
        """
        out = {}
        for name, arr in arrays.items():
            if name not in self._shapes:
                raise KeyError(f"arrays[{name!r}]: the original model has no such parameter or buffer")
            arr = np.asarray(arr)
            if arr.shape != self._shapes[name]:
                raise ValueError(f"arrays[{name!r}] has shape {arr.shape}, "
                                 f"the original is {self._shapes[name]}")
            module, _, key = name.rpartition(".")
            track = self._index.get(module)
            if track is not None:
                arr = np.take(arr, track.rows, axis=0)
                if key == "weight" and track.cols is not None:
                    arr = np.take(arr, track.cols, axis=1)
            out[name] = np.ascontiguousarray(arr)
        return out

    def to_dict(self) -> dict:
        """JSON-friendly summary."""
        return {"params_before": self.params_before, "params_after": self.params_after,
                "ratio": self.ratio, "iterations": self.iterations,
                "layers": [layer.to_dict() for layer in self.layers]}

    def __str__(self) -> str:
        lines = [f"{'layer':<24} {'filters':>9} {'channels':>9} {'params':>18}"]
        for L in self.layers:
            nf = len(L.kept_filters) + len(L.removed_filters)
            nc = len(L.kept_channels) + len(L.removed_channels)
            lines.append(f"{L.name:<24} {len(L.kept_filters):>4}/{nf:<4} {len(L.kept_channels):>4}/{nc:<4} "
                         f"{L.params_before:>8} -> {L.params_after:<8}")
        lines.append(f"total parameters {self.params_before} -> {self.params_after} ({self.ratio:.2f}x), "
                     f"{self.iterations} passes")
        return "\n".join(lines)


# =======================================================================================================
# compact
# =======================================================================================================

def _flatten_sizes(model: Module, input_shape) -> dict[str, int]:
    """``{flatten layer name: H·W of its input}`` from a shape-recording forward pass (only when needed)."""
    if not any(isinstance(m, Flatten) for _, m in model.named_modules()):
        return {}
    sizes = {}
    for row in layer_table(model, input_shape):
        if row["kind"] == "Flatten":
            shape = row["input_shape"]
            if shape is None:
                raise ValueError(f"the forward pass did not reach {row['name']!r}")
            sizes[row["name"]] = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    return sizes


def _in_channels(model: Module, input_shape) -> int:
    if input_shape is None:
        if not hasattr(model, "input_shape"):
            raise ValueError("input_shape is required for a model without an input_shape attribute")
        input_shape = model.input_shape
    return int(input_shape[0])


def compact(model: Module, masks: Mapping[str, np.ndarray] | None = None, *, fold_bias: bool = True,
            input_shape: tuple[int, ...] | None = None) -> tuple[Module, CompactionReport]:
    r"""Remove unused filters and channels: a smaller network computing the same (evaluation-mode) function.

    Applies ``masks`` to a deep copy of ``model``, then repeatedly removes every channel that is either
    **unread** (all weights reading it are zero) or **constant and foldable** (its producing filter is
    all-zero and every reader can absorb the constant exactly), until a fixed point. See the module
    docstring for the channel-space rule and the folding formula.

    Parameters
    ----------
    model : Module
        A network built from ``Sequential`` (e.g. a :class:`~refimpl.models.Network`), ``BasicBlock``,
        ``Residual`` and the refimpl layers. Not modified.
    masks : dict of name -> bool ndarray, optional
        Keep masks (``True`` = kept) applied to the copy first; ``None`` uses the weights as they are (zero
        weights are what count, so an already masked model needs no masks).
    fold_bias : bool, default True
        Fold the constants of dead filters into the readers' biases. ``False`` removes only channels that
        are unread or exactly zero.
    input_shape : tuple of int, optional
        ``(C, H, W)`` of one input; default ``model.input_shape``. Needed for ``Flatten`` (one channel =
        ``H·W`` columns of the next linear layer, measured by a shape-recording forward pass).

    Returns
    -------
    compact_model : Module
        Same class and parameter names, smaller arrays (``in_channels`` / ``out_channels`` /
        ``in_features`` / ``out_features`` / ``num_features`` updated, gradients resized); trainable and
        savable like any refimpl model. It keeps the train/eval flags of ``model``.
    report : CompactionReport

    Notes
    -----
    * **Exactness** holds for the evaluation-mode function: BatchNorm uses its running statistics (in
      training mode it would normalise a constant channel to :math:`\beta`, a different constant), dropout
      is the identity. Compact for inference or after training; training the compact model further is
      fine (it simply is a smaller network).
    * **Never removed**: the input channels of the first layer and the outputs of the last (the classes).
    * **(choice)** A channel space never becomes empty: if every channel could go, the lowest index stays.
    * **Where a folded constant goes** (choice): the reader's bias; if it has none and its only reader is a
      BatchNorm, that BN's running mean (:math:`\mathrm{BN}(z + \Delta)` equals BN with mean
      :math:`\mu - \Delta`), which keeps PyTorch's parameter names; otherwise a new bias parameter is added
      to the reader (reported as ``bias_added``).
    * A padded convolution reading a dead channel with nonzero constant blocks its removal: the border
      positions see the zero padding, not the constant. Unpadded pooling of a constant is that constant.

    Examples
    --------
    >>> from refimpl.models import lenet300_100
    >>> net = lenet300_100(input_size=8, dtype=np.float64)
    >>> masks = {"fc2.weight": np.ones((100, 300), bool)}
    >>> masks["fc2.weight"][:, 150:] = False          # fc2 ignores half of fc1's neurons
    >>> small, report = compact(net, masks)
    >>> small["fc1"].params["weight"].shape, small["fc2"].params["weight"].shape
    ((150, 64), (100, 150))
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a refimpl Module, got {type(model).__name__}")
    if not isinstance(fold_bias, (bool, np.bool_)):
        raise TypeError(f"fold_bias must be a bool, got {fold_bias!r}")
    model = copy.deepcopy(model)
    if masks is not None:
        apply_masks(model, masks)
    for name, value in (*model.named_parameters(), *model.named_buffers()):
        check_finite(value, f"model parameter {name!r}")
    shapes_before = {name: tuple(v.shape) for name, v in (*model.named_parameters(), *model.named_buffers())}
    params_before = model.num_parameters()

    graph = _Graph(model, _in_channels(model, input_shape), _flatten_sizes(model, input_shape))
    tracks: dict[str, _Track] = {}
    for op in graph.ops:
        if op.kind in ("weight", "bn"):
            rows = np.arange(op.y.space.size)
            cols = np.arange(op.x.space.size * op.x.hw) if op.kind == "weight" else None
            tracks[op.name] = _Track(rows, cols, op.x.hw)
    weights_before = {op.name: (tuple(op.module.params["weight"].shape), op.x.space.size,
                                sum(p.size for p in op.module.params.values())) for op in graph.weight_ops()}

    iterations = 0
    while True:
        iterations += 1
        values = _constants(graph)
        plan = [(space, _removable(graph, space, values, bool(fold_bias))) for space in graph.spaces()]
        plan = [(space, drop) for space, drop in plan if drop.any()]
        if not plan:
            break
        # Fold every constant first (with the full weights), then slice. Folding changes only biases of
        # filters that read a dropped channel, i.e. live filters, so this pass's constants stay valid.
        for space, drop in plan:
            for op in graph.weight_ops():
                if op.x.space is space:
                    _fold(op, np.flatnonzero(drop), values[id(op.x)], tracks[op.name])
        for space, drop in plan:
            _remove(graph, space, np.flatnonzero(~drop), tracks)
    _clear_caches(model)

    layers = []
    for op in graph.weight_ops():
        track = tracks[op.name]
        shape_before, channels_before, params_layer_before = weights_before[op.name]
        n_filters = shape_before[0]
        kept_channels = _kept_channels(track)
        layers.append(LayerCompaction(
            name=op.name, kind=type(op.module).__name__,
            weight_shape_before=shape_before,
            weight_shape_after=tuple(op.module.params["weight"].shape),
            kept_filters=track.rows.copy(),
            removed_filters=np.setdiff1d(np.arange(n_filters), track.rows),
            kept_channels=kept_channels,
            removed_channels=np.setdiff1d(np.arange(channels_before), kept_channels),
            folded_channels=np.array(sorted(track.folded), dtype=np.int64),
            bias_added=track.bias_added,
            params_before=int(params_layer_before),
            params_after=int(sum(p.size for p in op.module.params.values())),
        ))
    report = CompactionReport(layers, int(params_before), int(model.num_parameters()), iterations,
                              _index=tracks, _shapes=shapes_before)
    return model, report


# =======================================================================================================
# purify
# =======================================================================================================

@dataclass
class LayerPurification:
    r"""Purification statistics of one layer (arrays have one entry per filter / neuron).

    Attributes
    ----------
    name : str
    emptiness : ndarray
        :math:`\eta_f`, the share of filter ``f``'s weights that are zero after masking.
    importance : ndarray
        :math:`\sigma_f = \lVert W_f \rVert_2 / \overline{\lVert W \rVert_2}`.
    removed : ndarray of int
        Filters whose mask purification set to all-``False`` (they had a kept entry before).
    """

    name: str
    emptiness: np.ndarray
    importance: np.ndarray
    removed: np.ndarray

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return {"name": self.name, "filters": int(self.emptiness.size), "removed": self.removed.tolist(),
                "emptiness": self.emptiness.tolist(), "importance": self.importance.tolist()}


@dataclass
class PurificationReport:
    """Outcome of :func:`purify`: the thresholds and, per purified layer, the statistics and removals."""

    eta: float
    sigma: float
    layers: list[LayerPurification]

    @property
    def removed(self) -> dict[str, list[int]]:
        """``{weight name: removed filter indices}`` for the layers that lost a filter."""
        return {L.name: L.removed.tolist() for L in self.layers if L.removed.size}

    @property
    def num_removed(self) -> int:
        """Total number of filters removed."""
        return int(sum(L.removed.size for L in self.layers))

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        return {"eta": self.eta, "sigma": self.sigma, "num_removed": self.num_removed,
                "layers": [L.to_dict() for L in self.layers]}


def purify(model: Module, masks: Mapping[str, np.ndarray], *, eta: float = 0.9, sigma: float = 0.1,
           layers: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], PurificationReport]:
    r"""Network purification: drop nearly empty, unimportant filters left over by column/shape pruning.

    For every purified weight (GEMM view :math:`W \in \mathbb{R}^{F \times K}`, masked: :math:`W \odot M`)
    and filter (row) :math:`f`:

    .. math::

        \eta_f = \frac{\#\{k : (W \odot M)_{fk} = 0\}}{K}, \qquad
        \sigma_f = \frac{\lVert (W \odot M)_f \rVert_2}
                        {\frac{1}{F}\sum_{g=1}^{F} \lVert (W \odot M)_g \rVert_2}

    and the filter is removed (its mask row set to all ``False``) when :math:`\eta_f > \eta` **and**
    :math:`\sigma_f < \sigma`. The result is lossy: retrain afterwards (masked retraining with the new
    masks), then :func:`compact` removes the now dead paths.

    Parameters
    ----------
    model : Module
        Read only (not modified).
    masks : dict of name -> bool ndarray
        Current keep masks of conv/linear weights.
    eta : float in [0, 1], default 0.9
        Emptiness threshold.
    sigma : float >= 0, default 0.1
        Importance threshold (relative to the layer's mean filter norm).
    layers : iterable of str, optional
        Weight names to purify (each must be in ``masks``). Default: every name in ``masks`` except the
        model's last prunable weight when it has a ``prunable`` list — the classifier's rows are the classes.

    Returns
    -------
    new_masks : dict of name -> bool ndarray
        Copies of ``masks`` with the removed filters' rows all ``False``.
    report : PurificationReport

    Notes
    -----
    **(choice)** Ma et al. do not give the exact formula in a form available to us; the two statistics
    above and the strict inequalities are this implementation's reading, and both thresholds are
    parameters. **The defaults are a heuristic**, not the paper's values and not tuned here:
    :math:`\eta = 0.9` only touches filters that column/shape pruning has already emptied to a tenth of
    their entries, and :math:`\sigma = 0.1` only those whose norm is a tenth of the layer's mean, so that
    the lossy step removes little that retraining must win back; sweep them (``[purify] eta``, ``sigma``)
    before relying on them. The mean in :math:`\sigma_f` runs over **all** filters of the layer (also
    empty ones). A layer whose masked weights are all zero has no meaningful importance: its
    :math:`\sigma` is reported
    as 0 and nothing is removed there (it is already empty). A filter already all-``False`` is not
    reported as removed.
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a refimpl Module, got {type(model).__name__}")
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks must be a dict of name -> bool ndarray, got {type(masks).__name__}")
    eta = check_probability(eta, "eta")
    if isinstance(sigma, bool) or not isinstance(sigma, numbers.Real) or not 0 <= sigma < np.inf:
        raise ValueError(f"sigma must be a real number >= 0, got {sigma!r}")
    sigma = float(sigma)
    params = model.parameters()
    if layers is None:
        layers = list(masks)
        prunable = getattr(model, "prunable", None)
        if prunable:
            layers = [name for name in layers if name != prunable[-1]]
    else:
        layers = list(layers)
    for name in layers:
        if name not in masks:
            raise KeyError(f"layers: {name!r} has no mask")
        dtype = np.asarray(masks[name]).dtype
        if dtype != np.bool_:
            raise TypeError(f"masks[{name!r}] must be a boolean array, got dtype {dtype}")
    new_masks = {name: np.array(mask, dtype=bool, copy=True) for name, mask in masks.items()}
    reports = []
    for name in layers:
        if name not in params:
            raise KeyError(f"masks[{name!r}]: the model has no such parameter")
        mask = new_masks[name]
        w = params[name]
        if mask.shape != w.shape:
            raise ValueError(f"masks[{name!r}] has shape {mask.shape}, the parameter has {w.shape}")
        gemm = np.where(mask, w, 0).reshape(w.shape[0], -1).astype(np.float64)
        emptiness = np.mean(gemm == 0, axis=1)
        norms = np.linalg.norm(gemm, axis=1)
        mean_norm = norms.mean()
        importance = norms / mean_norm if mean_norm > 0 else np.zeros_like(norms)
        hit = (emptiness > eta) & (importance < sigma) if mean_norm > 0 else np.zeros(len(norms), bool)
        mask_rows = mask.reshape(w.shape[0], -1)
        removed = np.flatnonzero(hit & mask_rows.any(axis=1))
        mask_rows[hit] = False  # a view: writes through to new_masks[name]
        reports.append(LayerPurification(name, emptiness, importance, removed))
    return new_masks, PurificationReport(eta, sigma, reports)
