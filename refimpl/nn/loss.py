"""Softmax, cross-entropy loss on logits, and classification accuracy."""

from __future__ import annotations

import numpy as np

from refimpl._validation import as_float_array

__all__ = ["accuracy", "softmax", "softmax_cross_entropy"]


def _check_labels(labels, n: int, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be an integer array of class indices, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match the logits, got {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes - 1}], got values in [{labels.min()}, {labels.max()}]")
    return labels


def softmax(logits) -> np.ndarray:
    r"""Row-wise softmax of ``logits`` (N, K), computed stably.

    .. math:: \mathrm{softmax}(z)_k = \frac{e^{z_k - \max_j z_j}}{\sum_i e^{z_i - \max_j z_j}}

    Subtracting the row maximum changes nothing mathematically and keeps every exponent ``<= 0``, so
    nothing overflows.
    """
    z = as_float_array(logits, "logits", ndim=2)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    r"""Mean cross-entropy of the softmax of ``logits`` against integer ``labels``, and its gradient.

    .. math::

        L = \frac{1}{N}\sum_{n} \Big(\log\sum_k e^{z_{nk}} - z_{n y_n}\Big), \qquad
        \frac{\partial L}{\partial z_{nk}} = \frac{1}{N}\big(\mathrm{softmax}(z_n)_k - [k = y_n]\big)

    The log-sum-exp is evaluated as :math:`m_n + \log\sum_k e^{z_{nk} - m_n}` with
    :math:`m_n = \max_k z_{nk}`, which is exact and finite for any finite logits (even ``1e4``). This is
    ``torch.nn.functional.cross_entropy(logits, labels)`` with its default mean reduction.

    Parameters
    ----------
    logits : ndarray, shape (N, K)
        Unnormalised class scores, finite.
    labels : ndarray of int, shape (N,)
        Class indices in ``[0, K)``.

    Returns
    -------
    loss : float
    dlogits : ndarray, shape (N, K), same dtype as ``logits``

    Examples
    --------
    Two classes with logits ``(0, log 3)`` give probabilities ``(1/4, 3/4)``:

    >>> loss, dlogits = softmax_cross_entropy(np.array([[0.0, np.log(3.0)]]), np.array([1]))
    >>> round(loss, 6)  # -log(3/4)
    0.287682
    >>> dlogits  # softmax minus the one-hot label
    array([[ 0.25, -0.25]])
    """
    z = as_float_array(logits, "logits", ndim=2)
    n, k = z.shape
    if n == 0:
        raise ValueError("logits must hold at least one sample (the mean over an empty batch is undefined)")
    labels = _check_labels(labels, n, k)
    shifted = z - z.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    sum_e = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    loss = float(np.mean(np.log(sum_e[:, 0]) - shifted[rows, labels]))
    dlogits = e / sum_e
    dlogits[rows, labels] -= 1.0
    dlogits /= n
    return loss, dlogits


def accuracy(logits, labels) -> float:
    """Share of rows whose largest logit is at the true label (ties go to the lowest index, as argmax)."""
    z = as_float_array(logits, "logits", ndim=2)
    labels = _check_labels(labels, z.shape[0], z.shape[1])
    if z.shape[0] == 0:
        raise ValueError("logits must hold at least one sample")
    return float(np.mean(np.argmax(z, axis=1) == labels))
