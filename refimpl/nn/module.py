"""The two containers every refimpl network is built from: :class:`Module` and :class:`Sequential`.

A refimpl network has no autograd. Each layer object stores its parameters, computes its forward pass with
a functional ``X_forward`` (keeping the returned cache), and its backward pass with the matching
``X_backward``, writing the parameter gradients next to the parameters. A container chains its children:
forward in order, backward in reverse order. That is all backpropagation is.

The contract (relied upon by the trainer, the pruning code, compaction and the sparse engines):

* ``module.params``: ``dict`` short name -> ndarray (``"weight"``, ``"bias"``), updated **in place** by
  optimizers, so views handed out stay valid.
* ``module.grads``: same keys and shapes; ``backward`` **overwrites** them (one backward per forward).
* ``module.buffers``: non-trained state such as BatchNorm running statistics.
* ``named_parameters()`` / ``named_gradients()`` / ``named_buffers()`` yield PyTorch-style dotted names
  (``"conv1.weight"``, ``"layer1.0.bn1.running_mean"``) so weights load into PyTorch with no renaming.
* ``training`` switches BatchNorm and dropout behaviour; ``train()`` / ``eval()`` set it recursively.
* ``with no_grad():`` forward passes keep nothing for ``backward`` (inference over many images without
  every layer's im2col matrix staying alive; the analogue of ``torch.no_grad()``).
* Randomness (dropout) comes only from a :class:`numpy.random.Generator` given by :meth:`Module.set_rng`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

__all__ = ["Module", "Sequential", "no_grad", "keeps_for_backward"]

# Per thread, as torch.no_grad(): a forward pass in another thread is not affected by this one's block.
_state = threading.local()


@contextmanager
def no_grad():
    """Within the ``with`` block, forward passes (in this thread) keep nothing for ``backward``.

    Outputs are bit for bit those of a plain forward pass; a ``backward`` after such a forward raises.
    The analogue of ``torch.no_grad()``: evaluation (:func:`refimpl.train.trainer.evaluate`) needs only
    the outputs, and dropping each layer's cache as soon as the next layer has its input bounds the memory
    by one layer's working set instead of the sum over all layers (a convolution's cache holds its im2col
    matrix, ``k·k·C`` times its input). Blocks nest; the previous setting returns on exit, also after
    an error.
    """
    previous = keeps_for_backward()
    _state.keeps = False
    try:
        yield
    finally:
        _state.keeps = previous


def keeps_for_backward() -> bool:
    """Return False inside a :func:`no_grad` block of this thread, else True."""
    return getattr(_state, "keeps", True)


class Module:
    """Base class: parameters, gradients, buffers, a train/eval flag and named children."""

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training = True
        self._children: dict[str, Module] = {}

    # --- computation -------------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """Compute the output and keep what ``backward`` needs."""
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Given dL/d(output), write dL/d(param) into ``self.grads`` and return dL/d(input)."""
        raise NotImplementedError

    def _saved(self, attribute: str = "_cache"):
        """Return what :meth:`forward` kept for :meth:`backward` (``self.<attribute>``).

        The one place of the guard every layer needs: a backward pass before any forward pass raises
        ``RuntimeError("<Layer>.backward called before forward")`` instead of failing somewhere inside the
        layer's arithmetic (e.g. unpacking ``None``).
        """
        value = getattr(self, attribute, None)
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward "
                               "(or after a forward pass under no_grad())")
        return value

    @staticmethod
    def _keep(cache):
        """Return what ``forward`` stores for ``backward``: ``cache``, or ``None`` inside :func:`no_grad`."""
        return cache if keeps_for_backward() else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run :meth:`forward` (modules are callable, as in PyTorch)."""
        return self.forward(x)

    # --- tree --------------------------------------------------------------------------------------
    def add_child(self, name: str, child: Module) -> Module:
        """Register ``child`` under ``name`` (a dotted-name component); return it."""
        if not isinstance(child, Module):
            raise TypeError(f"child {name!r} must be a Module, got {type(child).__name__}")
        if not name or "." in name:
            raise ValueError(f"child name must be non-empty and contain no '.', got {name!r}")
        self._children[name] = child
        return child

    def children(self) -> Iterator[tuple[str, Module]]:
        """Yield ``(name, child)`` for the direct children, in order."""
        yield from self._children.items()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        """Yield ``(dotted_name, module)`` for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def get_module(self, dotted_name: str) -> Module:
        """Return the descendant called ``dotted_name`` (``""`` is this module)."""
        module = self
        for part in filter(None, dotted_name.split(".")):
            if part not in module._children:
                raise KeyError(f"no module {dotted_name!r} (missing {part!r})")
            module = module._children[part]
        return module

    def _named(self, attribute: str) -> Iterator[tuple[str, np.ndarray]]:
        for prefix, module in self.named_modules():
            for key, value in getattr(module, attribute).items():
                yield (f"{prefix}.{key}" if prefix else key), value

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``("conv1.weight", array)`` for every trainable parameter (the live arrays)."""
        return self._named("params")

    def named_gradients(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(name, gradient)`` with the same names as :meth:`named_parameters`."""
        return self._named("grads")

    def named_buffers(self) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(name, array)`` for every buffer (e.g. ``"bn1.running_mean"``)."""
        return self._named("buffers")

    def parameters(self) -> dict[str, np.ndarray]:
        """Return ``{dotted name: live parameter array}``."""
        return dict(self.named_parameters())

    def gradients(self) -> dict[str, np.ndarray]:
        """Return ``{dotted name: gradient array}`` (same keys as :meth:`parameters`)."""
        return dict(self.named_gradients())

    # --- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Return copies of every parameter and buffer, keyed by dotted name (PyTorch's naming)."""
        state = {name: value.copy() for name, value in self.named_parameters()}
        state.update((name, value.copy()) for name, value in self.named_buffers())
        return state

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy arrays from ``state`` into the parameters and buffers **in place**.

        With ``strict=True`` missing or unexpected keys raise ``KeyError``; shapes must always match.
        """
        targets = dict(self.named_parameters())
        targets.update(self.named_buffers())
        if strict:
            missing = sorted(set(targets) - set(state))
            unexpected = sorted(set(state) - set(targets))
            if missing or unexpected:
                raise KeyError(f"state mismatch: missing {missing}, unexpected {unexpected}")
        for name, target in targets.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != target.shape:
                raise ValueError(f"state[{name!r}] has shape {value.shape}, the model needs {target.shape}")
            target[...] = value

    def save(self, path) -> None:
        """Write :meth:`state_dict` to an ``.npz`` file (PyTorch-style names)."""
        np.savez(path, **self.state_dict())

    def load(self, path, strict: bool = True) -> None:
        """Load weights written by :meth:`save` (or any ``.npz`` with matching names)."""
        with np.load(path) as data:
            self.load_state_dict({k: data[k] for k in data.files}, strict=strict)

    # --- modes -------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode recursively (BatchNorm uses batch statistics, dropout drops)."""
        for _, module in self.named_modules():
            module.training = mode
        return self

    def eval(self) -> Module:
        """Set evaluation mode recursively."""
        return self.train(False)

    def set_rng(self, rng: np.random.Generator) -> Module:
        """Give every module that draws random numbers (dropout) the generator ``rng``."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        for _, module in self.named_modules():
            if hasattr(module, "rng"):
                module.rng = rng
        return self

    def astype(self, dtype) -> Module:
        """Convert every parameter, gradient and buffer to ``dtype`` (e.g. float64 for gradient checks)."""
        for _, module in self.named_modules():
            for store in (module.params, module.grads, module.buffers):
                for key, value in store.items():
                    if np.issubdtype(value.dtype, np.floating):
                        store[key] = value.astype(dtype)
        return self

    def zero_grad(self) -> None:
        """Set every gradient to zero."""
        for _, grad in self.named_gradients():
            grad[...] = 0

    def num_parameters(self) -> int:
        """Total number of trainable scalars."""
        return int(sum(p.size for _, p in self.named_parameters()))

    def extra_repr(self) -> str:
        """One-line description of this module's own settings (shown by ``repr``)."""
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()})"
        if not self._children:
            return head
        lines = [f"{type(self).__name__}("]
        for name, child in self._children.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        lines.append(")")
        return "\n".join(lines)


class Sequential(Module):
    """Run named children one after another; backpropagate through them in reverse.

    Parameters
    ----------
    layers : iterable of (str, Module) or of Module
        The children in order. Unnamed children are named ``"0"``, ``"1"``, ... (PyTorch's convention).
    """

    def __init__(self, layers: Iterable) -> None:
        super().__init__()
        for index, item in enumerate(layers):
            name, child = item if isinstance(item, tuple) else (str(index), item)
            self.add_child(name, child)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply every child in order."""
        for _, child in self.children():
            x = child.forward(x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Chain rule: backpropagate through the children in reverse order."""
        for child in reversed(list(self._children.values())):
            dout = child.backward(dout)
        return dout

    def __len__(self) -> int:
        return len(self._children)

    def __getitem__(self, key: int | str) -> Module:
        if isinstance(key, int):
            return list(self._children.values())[key]
        return self._children[key]
