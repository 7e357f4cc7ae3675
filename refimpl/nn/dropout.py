"""Inverted dropout (Srivastava et al., 2014): zero each activation with probability ``p`` while training."""

from __future__ import annotations

import numpy as np

from refimpl._validation import check_probability
from refimpl.nn.module import Module, keeps_for_backward

__all__ = ["Dropout", "dropout_backward", "dropout_forward"]


def dropout_forward(x: np.ndarray, p: float, training: bool, rng: np.random.Generator | None):
    r"""Inverted dropout: drop with probability ``p`` and rescale the survivors by ``1/(1-p)``.

    .. math:: y = x \odot \frac{m}{1 - p}, \qquad m_i \sim \mathrm{Bernoulli}(1 - p) \text{ i.i.d.}

    The rescaling keeps :math:`\mathbb{E}[y] = x`, so evaluation mode is simply the identity (no rescaling at
    test time: that is what "inverted" means). With ``p = 1`` every entry is dropped and the output is 0.
    The mask is drawn as ``rng.random(x.shape) >= p``; the same generator state gives the same mask.

    Parameters
    ----------
    x : ndarray, any shape
    p : float in [0, 1]
        Drop probability.
    training : bool
        ``False`` (or ``p == 0``) returns ``x`` unchanged and draws no random numbers.
    rng : numpy.random.Generator
        Needed when training with ``p > 0``.

    Returns
    -------
    out : ndarray, same shape as ``x``
    cache : ndarray or None
        The scaled mask :math:`m / (1 - p)` (``None`` for the identity), for :func:`dropout_backward`.
    """
    p = check_probability(p, "p")
    if not training or p == 0.0:
        return x, None
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator when training with p > 0, got {type(rng).__name__}")
    keep = rng.random(x.shape) >= p
    scale = 0.0 if p == 1.0 else 1.0 / (1.0 - p)
    mask = (keep * scale).astype(x.dtype)
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache) -> np.ndarray:
    r"""Gradient of :func:`dropout_forward`: multiply by the same scaled mask.

    .. math:: \frac{\partial L}{\partial x} = \frac{\partial L}{\partial y} \odot \frac{m}{1 - p}
    """
    mask = cache
    return dout if mask is None else dout * mask


class Dropout(Module):
    """Inverted-dropout layer with drop probability ``p``.

    Its random numbers come from the attribute ``rng`` (a :class:`numpy.random.Generator`), which
    :meth:`Module.set_rng` replaces; the default is ``np.random.default_rng(0)`` so that an unseeded model
    is still reproducible.
    """

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.p = check_probability(p, "p")
        self.rng = np.random.default_rng(0) if rng is None else rng
        self._cache = None
        self._forwarded = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Drop and rescale in training mode; identity in evaluation mode."""
        out, cache = dropout_forward(x, self.p, self.training, self.rng)
        self._cache = self._keep(cache)
        self._forwarded = keeps_for_backward()
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """Apply the mask of the last forward pass to the gradient."""
        if not self._forwarded:
            raise RuntimeError("Dropout.backward called before forward "
                               "(or after a forward pass under no_grad())")
        return dropout_backward(dout, self._cache)

    def extra_repr(self) -> str:
        """Show the drop probability."""
        return f"p={self.p}"
