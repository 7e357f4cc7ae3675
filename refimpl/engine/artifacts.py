"""A run's files: arrays as ``.npz``, results as JSON (both written atomically), the compact model.

Files of a run directory
------------------------
==========================  ===============================================================================
``config.toml``, ``.json``  the resolved configuration (``refimpl.config.load_config`` /
                            ``ExperimentConfig.from_dict`` reload it)
``state.json``              phases done with their outputs and metrics; ``"finished": true`` at the end
``run.lock``                the lock of the process writing the run (:mod:`refimpl.engine.rundir`)
``<phase>/log.jsonl``       one record per epoch (loss, accuracy, lr, ADMM residuals and rho)
``<phase>/checkpoint.npz``  the trainer's atomic checkpoint (weights, optimizer, generators, ADMM Z, U, rho)
``<phase>/model.npz``       the weights after the phase; ``prune`` / ``purify`` also write ``masks.npz``
``masks.npz``               the final keep masks (``True`` = kept), PyTorch parameter names
``model_masked.npz``        the final pruned weights (dense arrays with zeros)
``model_compact.npz``       the compact weights; ``compact.json`` its shapes (:func:`load_compact_model`)
``report.txt``, ``.json``   accuracies per phase, parameters, MACs, per-layer table, sparsity, compression
``results.json``            the headline numbers
==========================  ===============================================================================
"""

from __future__ import annotations

import errno
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from refimpl._io import atomic_write, atomic_write_json

__all__ = ["finite", "load_compact_model", "load_npz", "save_npz", "write_json"]


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def write_json(path: Path, value) -> None:
    """Write ``value`` as indented JSON, atomically (NumPy scalars and arrays become plain values)."""
    atomic_write_json(path, value, default=_json_default)


def finite(value):
    """JSON has no infinity: ratios with nothing left to divide by become ``None``."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write ``arrays`` to an ``.npz`` file atomically (bit-exact; reloads with :func:`load_npz`)."""
    atomic_write(path, lambda f: np.savez(f, **arrays), binary=True)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` file (no pickles).

    A file that cannot be read (truncated, corrupted, a directory) raises
    :class:`~refimpl.train.checkpoint.CheckpointError` in one line saying what to do.
    """
    from refimpl.train.checkpoint import CheckpointError

    try:
        if Path(path).is_dir():
            raise IsADirectoryError(errno.EISDIR, "a directory, not a file", str(path))
        if not zipfile.is_zipfile(path):  # np.load would try (and refuse) a pickle: say what it is
            raise zipfile.BadZipFile("bad zip: no zip directory; truncated, or not an .npz file")
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        reason = (err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
                  if str(err) else type(err).__name__)
        raise CheckpointError(
            f"{path} is corrupt or unreadable ({reason}): it holds the output of a finished phase; restore "
            "it, or run the experiment again into a new directory"
        ) from err


def load_compact_model(run_dir: str | os.PathLike):
    """Rebuild the compact model of a finished run from ``compact.json`` and ``model_compact.npz``.

    The architecture is built as configured, every parameter and buffer is resized to the shape recorded
    in ``compact.json`` (a bias the compaction added is created), the layers' channel counts are updated,
    and the weights are loaded. No dataset is needed.
    """
    from refimpl.models import build_model
    from refimpl.nn.batchnorm import BatchNorm2d
    from refimpl.nn.conv import Conv2d
    from refimpl.nn.linear import Linear
    from refimpl.nn.residual import BasicBlock

    run_dir = Path(run_dir)
    info = json.loads((run_dir / "compact.json").read_text())
    channels, size, _ = info["input_shape"]
    dtype = np.dtype(info["dtype"])
    model = build_model(info["model"], num_classes=info["num_classes"], in_channels=channels,
                        input_size=size, dtype=dtype, **info["options"])
    state = load_npz(run_dir / "model_compact.npz")
    for name, shape in info["shapes"].items():
        module_name, _, key = name.rpartition(".")
        module = model.get_module(module_name)
        blank = np.zeros(tuple(shape), dtype=state[name].dtype)
        if key in module.buffers:
            module.buffers[key] = blank
        else:
            module.params[key] = blank
            module.grads[key] = np.zeros_like(blank)
    for _, module in model.named_modules():
        if isinstance(module, Conv2d):
            module.out_channels, module.in_channels = (int(d) for d in module.params["weight"].shape[:2])
        elif isinstance(module, Linear):
            module.out_features, module.in_features = (int(d) for d in module.params["weight"].shape)
        elif isinstance(module, BatchNorm2d):
            module.num_features = int(module.buffers["running_mean"].shape[0])
    for _, module in model.named_modules():
        if isinstance(module, BasicBlock):
            module.in_channels, module.out_channels = module.conv1.in_channels, module.conv2.out_channels
    model.load_state_dict(state)
    return model
