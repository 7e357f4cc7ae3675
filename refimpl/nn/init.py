"""Weight initialisation (PyTorch's defaults, so a refimpl model starts like its PyTorch twin would)."""

from __future__ import annotations

import numpy as np

from refimpl._validation import check_allocation

__all__ = ["uniform_fan_in"]


def uniform_fan_in(shape: tuple[int, ...], fan_in: int, rng: np.random.Generator,
                   dtype=np.float32) -> np.ndarray:
    r"""Draw ``U(-1/\sqrt{fan\_in}, 1/\sqrt{fan\_in})`` samples of ``shape``.

    This is PyTorch's default for ``nn.Linear`` and ``nn.Conv2d`` weights and biases (Kaiming-uniform with
    ``a = sqrt(5)`` gives exactly this bound). ``fan_in`` is ``in_features`` for a linear layer and
    ``C * KH * KW`` for a convolution.
    """
    # A layer no machine here can hold (Linear(10**6, 10**6)) is an argument error, refused before drawing.
    check_allocation([shape, shape], np.float64, f"initial weights of shape {tuple(shape)}")
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=shape).astype(dtype)
