"""The training loop: :class:`Trainer` with pruning :class:`Hook` s, JSON-lines logs and exact resume.

One optimizer step, in order (the hooks are where pruning plugs in; the trainer knows nothing of it)::

    logits = model.forward(x_batch)                 # train mode; dropout draws from trainer.model_rng
    loss, dlogits = loss_fn(logits, y_batch)
    model.backward(dlogits)                         # overwrites trainer.grads (the first layer skips dL/dx)
    hook.after_backward(trainer)                    # e.g. ADMM adds rho (W - Z + U); masks zero gradients
    optimizer.step(grads)                           # updates trainer.params in place
    trainer.step += 1
    hook.after_step(trainer)                        # e.g. re-apply masks, proximal steps

and at the end of every epoch: ``hook.on_epoch_end(trainer, epoch)`` (Z/U updates; may return metrics),
evaluation on the validation set in eval mode, one record in ``out_dir/log.jsonl``, and a checkpoint.

Exact resume
------------
Everything the future of a run depends on is in the checkpoint: weights and buffers (BatchNorm
statistics), optimizer state, epoch and step, the state of the shuffling generator and of the model's
generator (dropout), every hook's ``state_dict()`` and the epoch history. The learning rate is a pure
function of the epoch (:mod:`refimpl.train.schedules`). A run stopped after epoch ``k`` and resumed
therefore ends with weights bitwise identical to an uninterrupted run (``tests/test_trainer.py`` checks
it with momentum SGD, dropout, BatchNorm and a stateful ADMM-like hook).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from refimpl._validation import as_float_array, check_ndim, check_positive_int
from refimpl.nn.module import Module, Sequential, no_grad
from refimpl.train.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from refimpl.train.log import append_record, filter_records, to_jsonable
from refimpl.train.optim import Optimizer
from refimpl.train.schedules import Schedule

__all__ = ["LOG_NAME", "Hook", "Trainer", "evaluate", "first_layer", "input_gradient_skipped"]

#: file name of the JSON-lines metrics log in ``out_dir``
LOG_NAME = "log.jsonl"

LossFn = Callable[[np.ndarray, np.ndarray], tuple[float, np.ndarray]]


class Hook:
    """Base class for training hooks; every method is an optional no-op.

    A hook may also be any object with some of these methods (they are looked up by name). Hooks that need
    per-step work keep their own counters and save them in :meth:`state_dict`, so resumed runs are exact.

    Call order: ``on_train_begin`` once per :class:`Trainer`, **before** a checkpoint is restored (so the
    restored state wins over what it initialises); then per batch ``after_backward`` and ``after_step``;
    then per epoch ``on_epoch_end``. Hooks are called in the order given to the trainer.
    """

    def on_train_begin(self, trainer: Trainer) -> None:
        """Initialise (e.g. ADMM: ``Z = project(W)``, ``U = 0``)."""

    def after_backward(self, trainer: Trainer) -> None:
        """Change ``trainer.grads`` in place (ADMM penalty gradient, gradient masks)."""

    def after_step(self, trainer: Trainer) -> None:
        """Change ``trainer.params`` in place (weight masks, projections, proximal steps)."""

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> dict | None:
        """End-of-epoch work (ADMM Z/U updates); return metrics to add to the epoch's log record."""
        return None

    def state_dict(self) -> dict:
        """Return the hook's state as arrays and JSON-able values (saved in checkpoints)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""


def _default_loss() -> LossFn:
    # Imported here, not at module level, so refimpl.train does not depend on refimpl.nn.loss at import.
    from refimpl.nn.loss import softmax_cross_entropy

    return softmax_cross_entropy


def first_layer(model: Module) -> Module:
    """Return the module that reads the network's input (the first children of nested Sequentials).

    For ``lenet5()`` this is ``conv1``; for a model that is not a ``Sequential`` it is the model itself.
    An empty ``Sequential`` is returned as it is.
    """
    while isinstance(model, Sequential) and len(model) > 0:
        model = model[0]
    return model


@contextlib.contextmanager
def input_gradient_skipped(model: Module) -> Iterator[Module | None]:
    r"""Within the block, the network's first layer does not compute :math:`\partial L/\partial x`.

    Training needs the gradients of the parameters only; the gradient with respect to the input images is
    thrown away. For a first convolution it costs a GEMM and a col2im, about a tenth of a LeNet-5 training
    step, and PyTorch skips it too (the input does not require a gradient). Only a layer with an
    ``input_grad`` attribute (:class:`refimpl.nn.conv.Conv2d`) can skip it; for any other first layer
    this does nothing. The previous setting comes back on exit, so ``model.backward`` called directly
    (e.g. a gradient check with respect to the input) is unaffected outside the block.

    Yields the layer that was switched off, or ``None``. ``model.backward`` returns ``None`` inside.
    """
    layer = first_layer(model)
    if not hasattr(layer, "input_grad"):
        yield None
        return
    previous = layer.input_grad
    layer.input_grad = False
    try:
        yield layer
    finally:
        layer.input_grad = previous


def _check_dataset(data, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``data = (x, y)``: x of shape (N, ...) floating, y integer labels of shape (N,)."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise TypeError(f"{name} must be a pair (x, y), got {type(data).__name__}")
    x = as_float_array(data[0], f"{name}[0]")
    y = np.asarray(data[1])
    check_ndim(y, f"{name}[1]", 1)
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name}[1] must hold integer class labels, got dtype {y.dtype}")
    if x.ndim == 0 or len(x) != len(y):
        raise ValueError(f"{name}: x has shape {x.shape} but y has {len(y)} labels")
    if len(y) == 0:
        raise ValueError(f"{name} is empty")
    return x, y


def _batches(n: int, batch_size: int):
    """Yield ``slice`` objects covering ``range(n)``; the last batch may be smaller (no sample dropped)."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def evaluate(model: Module, x: np.ndarray, y: np.ndarray, batch_size: int = 256,
             loss_fn: LossFn | None = None) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)``, in eval mode, in batches.

    Parameters
    ----------
    model : Module
        Switched to eval mode (BatchNorm running statistics, no dropout) and back to its previous mode
        afterwards (``model.train(previous)``, recursively), even if an error occurs. The forward passes
        run under :func:`refimpl.nn.no_grad`: no layer keeps a cache for backward, so memory is one layer's
        working set, not the whole network's.
    x : ndarray, shape (N, ...)
    y : ndarray of int, shape (N,)
    batch_size : int, default 256
        Only memory depends on it; the result does not (up to rounding of the batch means).
    loss_fn : callable, optional
        ``loss_fn(logits, labels) -> (mean loss, dlogits)``; default
        :func:`refimpl.nn.loss.softmax_cross_entropy`.

    Returns
    -------
    dict
        ``{"loss": mean over the N samples, "accuracy": share of argmax(logits) == y}``.
    """
    x, y = _check_dataset((x, y), "(x, y)")
    batch_size = check_positive_int(batch_size, "batch_size")
    loss_fn = _default_loss() if loss_fn is None else loss_fn
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        with no_grad():
            for batch in _batches(len(y), batch_size):
                logits = model.forward(x[batch])
                loss, _ = loss_fn(logits, y[batch])
                total_loss += float(loss) * len(y[batch])  # loss_fn returns a batch mean
                correct += int(np.count_nonzero(np.argmax(logits, axis=1) == y[batch]))
    finally:
        model.train(was_training)
    return {"loss": total_loss / len(y), "accuracy": correct / len(y)}


class Trainer:
    """Mini-batch training with hooks, metrics logging, checkpoints and bitwise-exact resume.

    Parameters
    ----------
    model : Module
        The network; its parameters must be the arrays ``optimizer`` holds (``model.parameters()``).
    optimizer : Optimizer
        E.g. ``SGD(model.parameters(), lr=0.1, momentum=0.9)``.
    train_data : (ndarray, ndarray)
        ``x`` of shape (N, ...) and integer labels ``y`` of shape (N,).
    val_data : (ndarray, ndarray), optional
        Evaluated at the end of every epoch (``val_loss``, ``val_acc``; ``None`` in the log without it).
    batch_size : int, default 64
        The last batch of an epoch may be smaller (every sample is used every epoch).
    epochs : int, default 10
        Total number of epochs; a resumed run continues up to this number.
    schedule : Schedule, optional
        Sets ``optimizer.lr = schedule.lr_at(epoch)`` at the start of every epoch; without one the
        optimizer's ``lr`` is left alone.
    hooks : sequence of Hook, default ()
    seed : int, default 0
        Seeds, through :class:`numpy.random.SeedSequence`, three independent generators: ``rng`` (the
        shuffling order), ``model_rng`` (handed to ``model.set_rng``, used by dropout) and
        ``augment_rng`` (handed to ``augment``). Same seed, same data, same initial model: bitwise
        identical runs.
    loss_fn : callable, optional
        ``loss_fn(logits, labels) -> (mean loss, dlogits)``; default
        :func:`refimpl.nn.loss.softmax_cross_entropy`. Accuracy is ``argmax(logits) == labels``.
    out_dir : path, optional
        Where ``log.jsonl`` and ``checkpoint.npz`` go (created if needed). Without it nothing is written.
    checkpoint_every : int, default 1
        Save every this many epochs, and always after the last one; 0 disables checkpoints.
    progress : bool, default True
        Show a tqdm progress bar per epoch (on stderr).
    augment : callable, optional
        ``augment(x_batch, rng) -> x_batch`` applied to every training batch (not to validation), e.g.
        :class:`refimpl.train.augment.RandomShiftFlip`; its generator is saved in checkpoints, so an
        augmented run resumes exactly.

    Attributes
    ----------
    step : int
        Optimizer steps taken so far (over the whole run, resumes included).
    epoch : int
        The current 0-based epoch while fitting; between fits, the next epoch to run (= epochs done).
    params, grads : dict of str to ndarray
        ``model.parameters()`` / ``model.gradients()``: the live arrays hooks modify in place.
    last_batch_loss : float or None
        Loss of the most recent training batch.
    history : list of dict
        One record per finished epoch (what went into the log).

    Examples
    --------
    >>> from refimpl.nn.linear import Linear
    >>> from refimpl.train.optim import SGD
    >>> def mse(out, y):                               # any loss_fn(logits, labels) -> (loss, dlogits)
    ...     diff = out - np.eye(2)[y]
    ...     return float(np.mean(diff ** 2)), 2 * diff / diff.size
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(64, 2)); y = (x[:, 0] > 0).astype(int)
    >>> model = Linear(2, 2, dtype=np.float64)
    >>> trainer = Trainer(model, SGD(model.parameters(), lr=0.5), (x, y), batch_size=16, epochs=20,
    ...                   loss_fn=mse, progress=False)
    >>> trainer.fit()[-1]["train_acc"] > 0.9
    True
    """

    def __init__(self, model: Module, optimizer: Optimizer, train_data, *, val_data=None,
                 batch_size: int = 64, epochs: int = 10, schedule: Schedule | None = None,
                 hooks: Sequence = (), seed: int = 0, loss_fn: LossFn | None = None,
                 out_dir=None, checkpoint_every: int = 1, progress: bool = True, augment=None) -> None:
        if not isinstance(model, Module):
            raise TypeError(f"model must be a refimpl Module, got {type(model).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a refimpl Optimizer, got {type(optimizer).__name__}")
        if schedule is not None and not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a refimpl Schedule, got {type(schedule).__name__}")
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        if augment is not None and not callable(augment):
            raise TypeError(f"augment must be callable (x_batch, rng) -> x_batch, "
                            f"got {type(augment).__name__}")
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.params = model.parameters()
        self.grads = model.gradients()
        self._check_optimizer_holds_model()
        self.x_train, self.y_train = _check_dataset(train_data, "train_data")
        self.val_data = None if val_data is None else _check_dataset(val_data, "val_data")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.epochs = check_positive_int(epochs, "epochs", minimum=0)
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.checkpoint_every = check_positive_int(checkpoint_every, "checkpoint_every", minimum=0)
        self.hooks = list(hooks)
        self.loss_fn = _default_loss() if loss_fn is None else loss_fn
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.progress = bool(progress)

        self.augment = augment
        # spawn(3)'s first two children are spawn(2)'s: adding the augmentation stream changed no run
        shuffle_seq, model_seq, augment_seq = np.random.SeedSequence(self.seed).spawn(3)
        self.rng = np.random.default_rng(shuffle_seq)
        self.model_rng = np.random.default_rng(model_seq)
        self.augment_rng = np.random.default_rng(augment_seq)
        model.set_rng(self.model_rng)

        self.step = 0
        self.epoch = 0
        self.last_batch_loss: float | None = None
        self.history: list[dict] = []
        self._began = False

    def _check_optimizer_holds_model(self) -> None:
        # A classic silent bug: an optimizer built before model.astype(...) updates arrays the model no
        # longer uses, and training "runs" without learning anything.
        for name, p in self.optimizer.params.items():
            if name not in self.params:
                raise ValueError(f"optimizer has a parameter {name!r} the model does not have")
            if p is not self.params[name]:
                raise ValueError(
                    f"optimizer's {name!r} is not the model's live array; build the optimizer from "
                    "model.parameters() after any model.astype(...)"
                )

    # --- paths -------------------------------------------------------------------------------------
    @property
    def log_path(self) -> Path | None:
        """``out_dir/log.jsonl`` (or ``None`` without ``out_dir``)."""
        return None if self.out_dir is None else self.out_dir / LOG_NAME

    @property
    def checkpoint_path(self) -> Path | None:
        """``out_dir/checkpoint.npz`` (or ``None`` without ``out_dir``)."""
        return None if self.out_dir is None else self.out_dir / CHECKPOINT_NAME

    # --- services for hooks ------------------------------------------------------------------------
    def log(self, record: dict) -> dict:
        """Append a metrics record (``epoch`` and ``step`` added unless given) to the log; return it."""
        record = to_jsonable({"epoch": self.epoch, "step": self.step, **record})
        if self.log_path is not None:
            append_record(self.log_path, record)
        return record

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """:func:`evaluate` with this trainer's model, batch size and loss."""
        return evaluate(self.model, x, y, self.batch_size, self.loss_fn)

    def _call_hooks(self, method: str, *args) -> list:
        results = []
        for hook in self.hooks:
            fn = getattr(hook, method, None)
            results.append(fn(self, *args) if fn is not None else None)
        return results

    def _begin(self) -> None:
        if not self._began:
            self._began = True
            self._call_hooks("on_train_begin")

    # --- training ----------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> list[dict]:
        """Train from ``epoch`` up to ``epochs``; return :attr:`history`.

        With ``resume=True`` the checkpoint in ``out_dir`` (if there is one) is restored first, so the
        same script can be rerun after an interruption; without a checkpoint training starts afresh.
        """
        if resume:
            if self.out_dir is None:
                raise ValueError("resume=True needs out_dir (where the checkpoint is)")
            checkpoint = latest_checkpoint(self.out_dir)
            if checkpoint is not None:
                try:
                    self.restore(checkpoint)
                except CheckpointError as err:  # say what to do, in the one line the CLI prints
                    raise CheckpointError(f"{err}: delete it to restart this phase from its first epoch, "
                                          "or restore it") from err
        self._begin()
        self._check_optimizer_holds_model()
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # Forget records of epochs that will be (re)run: a fresh run starts a fresh log, and a resumed
            # one drops what an interrupted epoch had logged after its checkpoint.
            filter_records(self.log_path, lambda r: r.get("epoch", -1) < self.epoch)
        # The input gradient of the first layer is never used here (see input_gradient_skipped).
        with input_gradient_skipped(self.model):
            for epoch in range(self.epoch, self.epochs):
                self._run_epoch(epoch)
        return self.history

    def _run_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.schedule is not None:
            self.optimizer.lr = self.schedule.lr_at(epoch)
        lr = self.optimizer.lr
        started = time.perf_counter()
        n = len(self.y_train)
        order = self.rng.permutation(n)
        total_loss, correct = 0.0, 0
        self.model.train()
        n_batches = -(-n // self.batch_size)
        with tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{self.epochs}", disable=not self.progress,
                  leave=False, dynamic_ncols=True) as bar:
            for batch in _batches(n, self.batch_size):
                index = order[batch]
                x_batch = self.x_train[index]
                if self.augment is not None:
                    x_batch = self.augment(x_batch, self.augment_rng)
                loss, n_correct = self._train_step(x_batch, self.y_train[index])
                total_loss += loss * len(index)
                correct += n_correct
                bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                bar.update()

        record = {"epoch": epoch, "step": self.step, "lr": lr,
                  "train_loss": total_loss / n, "train_acc": correct / n}
        hook_metrics = {}
        for hook, metrics in zip(self.hooks, self._call_hooks("on_epoch_end", epoch), strict=True):
            for key, value in (metrics or {}).items():
                if key in record or key in hook_metrics or key in ("val_loss", "val_acc", "time"):
                    raise ValueError(f"{type(hook).__name__} returned metric {key!r}, which is already taken")
                hook_metrics[key] = value
        # Evaluated after the hooks, so the numbers describe the weights that go into the checkpoint.
        val = self.evaluate(*self.val_data) if self.val_data is not None else None
        record["val_loss"] = None if val is None else val["loss"]
        record["val_acc"] = None if val is None else val["accuracy"]
        record.update(hook_metrics)
        record["time"] = time.perf_counter() - started
        self.history.append(self.log(record))

        self.epoch = epoch + 1
        if self.out_dir is not None and self.checkpoint_every > 0 and (
            self.epoch % self.checkpoint_every == 0 or self.epoch == self.epochs
        ):
            self.save(self.checkpoint_path)

    def _train_step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """Forward, loss, backward, hooks, optimizer step on one batch; return (loss, #correct)."""
        logits = self.model.forward(x)
        loss, dlogits = self.loss_fn(logits, y)
        self.model.backward(dlogits)
        # Refreshed every step: cheap, and robust to a layer that rebinds a gradient array.
        self.grads = self.model.gradients()
        self.last_batch_loss = float(loss)
        self._call_hooks("after_backward")
        self.optimizer.step({name: self.grads[name] for name in self.optimizer.params})
        self.step += 1
        self._call_hooks("after_step")
        return float(loss), int(np.count_nonzero(np.argmax(logits, axis=1) == y))

    # --- checkpoints -------------------------------------------------------------------------------
    def config(self) -> dict:
        """Return the settings a resumed run must share with the original (checked by :meth:`restore`)."""
        return {
            "batch_size": self.batch_size,
            "seed": self.seed,
            "n_train": int(len(self.y_train)),
            "hooks": [type(h).__name__ for h in self.hooks],
            "augment": None if self.augment is None else repr(self.augment),
        }

    def state_dict(self) -> dict:
        """Everything :meth:`fit` needs to continue exactly where it is (see the module docstring)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "position": {"epoch": self.epoch, "step": self.step},
            "rng": self.rng.bit_generator.state,
            "model_rng": self.model_rng.bit_generator.state,
            "augment_rng": self.augment_rng.bit_generator.state,
            "hooks": [getattr(h, "state_dict", dict)() for h in self.hooks],
            "config": self.config(),
            "record": {  # for the reader, not used when restoring
                "epochs": self.epochs,
                "schedule": None if self.schedule is None else self.schedule.config(),
                "optimizer": repr(self.optimizer),
            },
            "history": self.history,
        }

    def save(self, path=None) -> Path:
        """Write :meth:`state_dict` atomically to ``path`` (default ``out_dir/checkpoint.npz``)."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("path is required when the trainer has no out_dir")
        return save_checkpoint(path, self.state_dict())

    def restore(self, path) -> None:
        """Load a checkpoint written by :meth:`save` into the model, optimizer, generators and hooks.

        Hooks get ``on_train_begin`` first (once per trainer), then their saved state. Raises
        ``ValueError`` if the checkpoint was made with a different ``batch_size``, ``seed``, training set
        size or hook list, since such a run could not continue exactly.
        """
        state = load_checkpoint(path)
        saved = state["config"]
        for key, value in self.config().items():
            if saved.get(key) != value:
                raise ValueError(
                    f"checkpoint {path} was made with {key}={saved.get(key)!r}, this trainer has {value!r}"
                )
        self._begin()
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        # In place: the dropout layers hold this very generator object.
        self.model_rng.bit_generator.state = state["model_rng"]
        if "augment_rng" in state:  # checkpoints written before augmentation existed have none
            self.augment_rng.bit_generator.state = state["augment_rng"]
        for hook, hook_state in zip(self.hooks, state["hooks"], strict=True):
            loader = getattr(hook, "load_state_dict", None)
            if loader is not None:
                loader(hook_state)
        self.epoch = int(state["position"]["epoch"])
        self.step = int(state["position"]["step"])
        self.history = list(state["history"])

    def resume(self, out_dir=None) -> list[dict]:
        """Restore the checkpoint in ``out_dir`` (default: this trainer's) and continue :meth:`fit`."""
        if out_dir is not None:
            self.out_dir = Path(out_dir)
        if self.out_dir is None:
            raise ValueError("out_dir is required: the trainer has none to resume from")
        checkpoint = latest_checkpoint(self.out_dir)
        if checkpoint is None:
            raise FileNotFoundError(f"no checkpoint to resume from in {self.out_dir}")
        self.restore(checkpoint)
        return self.fit()
