r"""Data augmentation for image batches: random shifts (crops of a zero-padded image) and horizontal flips.

The standard recipe for small-image CNNs (He et al., 2016, section 4.2, for CIFAR): pad every image by
``pad`` zeros on each side, cut a random window of the original size out of it, and mirror it left-right
with probability 1/2. Equivalently, each image is **shifted** by :math:`(d_h, d_w)`, drawn uniformly from
:math:`\{-p, \dots, p\}^2`, with zeros filling what moves in:

.. math:: \tilde x_{c, i, j} = x_{c,\, i + d_h,\, j + d_w}
          \quad (0 \text{ outside the image}), \qquad
          \text{then, with probability } 1/2, \quad \tilde x_{c, i, j} \leftarrow \tilde x_{c, i, W - 1 - j}.

Augmentation is a choice of the recipe, not a property of the data: whether a dataset tolerates a mirror
image (clothes and digits differ: a mirrored 2 is not a 2) is for the config to say (``augment =
"crop"`` or ``"crop_flip"``). The draws come from the generator the trainer passes in (its own stream,
saved in checkpoints), so an augmented run is reproducible and resumes exactly.
"""

from __future__ import annotations

import numpy as np

from refimpl._validation import check_positive_int

__all__ = ["AUGMENTATIONS", "RandomShiftFlip", "make_augmentation"]

#: The ``augment`` values a training phase may name.
AUGMENTATIONS = ("none", "crop", "crop_flip")


class RandomShiftFlip:
    """Shift every image by up to ``pad`` pixels (zero fill) and mirror it with probability ``flip``.

    Parameters
    ----------
    pad : int >= 0
        Largest shift in each direction (the padding of the pad-and-crop formulation).
    flip : bool
        Mirror each image left-right with probability 1/2.

    Calling it with a batch ``x`` (N, C, H, W) and a ``numpy.random.Generator`` returns a new array of
    the same shape and dtype; ``x`` is not modified. Per image it draws, in this order, ``d_h``, ``d_w``
    (``rng.integers(-pad, pad + 1, size=(N, 2))``) and then the flips (``rng.random(N) < 0.5``), so the
    stream is defined independently of how the copying is done.
    """

    def __init__(self, pad: int = 2, flip: bool = True) -> None:
        self.pad = check_positive_int(pad, "pad", minimum=0)
        if not isinstance(flip, (bool, np.bool_)):
            raise TypeError(f"flip must be a bool, got {flip!r}")
        self.flip = bool(flip)

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return the shifted (and mirrored) copy of the batch ``x``, drawing from ``rng``."""
        x = np.asarray(x)
        if x.ndim != 4:
            raise ValueError(f"x must be a batch of images (N, C, H, W), got shape {x.shape}")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        n, _, h, w = x.shape
        p = self.pad
        shifts = rng.integers(-p, p + 1, size=(n, 2)) if p else np.zeros((n, 2), dtype=np.int64)
        flips = rng.random(n) < 0.5 if self.flip else np.zeros(n, dtype=bool)
        padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p))) if p else x
        out = np.empty_like(x)
        for k in range(n):
            dh, dw = int(shifts[k, 0]), int(shifts[k, 1])
            window = padded[k, :, p + dh:p + dh + h, p + dw:p + dw + w]
            out[k] = window[:, :, ::-1] if flips[k] else window
        return out

    def __repr__(self) -> str:
        return f"RandomShiftFlip(pad={self.pad}, flip={self.flip})"


def make_augmentation(name: str, pad: int = 2) -> RandomShiftFlip | None:
    """Return the augmentation a config names: ``"none"`` (None), ``"crop"`` or ``"crop_flip"``."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {list(AUGMENTATIONS)}, got {name!r}")
    if name == "none":
        return None
    return RandomShiftFlip(pad=pad, flip=name == "crop_flip")
