r"""Unstructured (element-wise) projections: keep the ``k`` largest-magnitude entries.

Per layer, the set is :math:`S_k = \{Z : \|Z\|_0 \le k\}`; globally, the same budget ``k`` is shared by a
list of layers. Both are the Z-step of non-structured ADMM pruning (Zhang et al., ECCV 2018) and the
magnitude-pruning baseline (Han et al., 2015).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from refimpl._validation import as_float_array, resolve_count
from refimpl.projections._select import apply_mask, top_k_mask

__all__ = [
    "mask_unstructured",
    "mask_unstructured_global",
    "project_unstructured",
    "project_unstructured_global",
]


def mask_unstructured(w, sparsity=None, keep=None) -> np.ndarray:
    """Boolean keep mask of :func:`project_unstructured` (same arguments, same tie rule).

    Returns
    -------
    mask : ndarray of bool, shape of ``w``
        Exactly ``k`` entries are ``True``.

    Examples
    --------
    >>> mask_unstructured(np.array([0.5, -2.0, 1.0]), keep=2)
    array([False,  True,  True])
    """
    w = as_float_array(w, "w")
    k = resolve_count(w.size, sparsity=sparsity, keep=keep)
    # C-order flattening: "lower flat index" is the tie rule whatever the memory layout of w.
    return top_k_mask(np.abs(w).reshape(-1), k).reshape(w.shape)


def project_unstructured(w, sparsity=None, keep=None) -> np.ndarray:
    r"""Euclidean projection onto "at most ``k`` nonzero entries" (magnitude pruning of one layer).

    Parameters
    ----------
    w : array_like, any shape
        The weight (a conv ``(F, C, KH, KW)``, a linear ``(out, in)``, or anything else).
    sparsity : float in [0, 1], optional
        Prune ``round(sparsity * w.size)`` entries (round-half-to-even).
    keep : int in [0, w.size], optional
        Keep exactly this many entries. Give exactly one of ``sparsity`` and ``keep``.

    Returns
    -------
    z : ndarray, shape and dtype of ``w``
        The ``k`` largest-``|w|`` entries copied unchanged, every other entry exactly 0. A new array;
        ``w`` is never modified.

    Raises
    ------
    ValueError
        If ``w`` holds NaN/inf, ``sparsity`` lies outside [0, 1], ``keep`` outside [0, w.size], or both or
        neither of them are given.

    Notes
    -----
    The plain, sorting-based definition is :func:`refimpl.projections.reference.reference_unstructured`; this
    function is tested equal to it (``tests/test_projections_reference.py``).

    The set and the projection:

    .. math:: S_k = \{Z : \|Z\|_0 \le k\}, \qquad
              \Pi_{S_k}(W) = \operatorname*{argmin}_{Z \in S_k} \|W - Z\|_F^2 .

    For a fixed support :math:`T` (:math:`|T| \le k`) the best :math:`Z` copies :math:`W` on :math:`T`,
    leaving the error :math:`\sum_{i \notin T} W_i^2`; it is smallest when :math:`T` holds the :math:`k`
    largest :math:`|W_i|`. Equal magnitudes make the argmin non-unique; the rule chosen here keeps the
    lower flat (C-order) index, so the result is deterministic. Selection is :math:`O(n)`
    (``np.partition``), not a sort.

    References
    ----------
    .. [1] T. Zhang, S. Ye, K. Zhang, J. Tang, W. Wen, M. Fardad, Y. Wang, "A systematic DNN weight
       pruning framework using alternating direction method of multipliers", ECCV 2018.
       https://doi.org/10.1007/978-3-030-01237-3_12
    .. [2] S. Han, J. Pool, J. Tran, W. Dally, "Learning both weights and connections for efficient
       neural networks", NeurIPS 2015.

    Examples
    --------
    >>> w = np.array([[0.5, -3.0], [2.0, -0.1]])
    >>> project_unstructured(w, sparsity=0.5)          # prune round(0.5 * 4) = 2 entries
    array([[ 0., -3.],
           [ 2.,  0.]])
    >>> project_unstructured(np.ones(3), keep=2)       # ties: the lower indices win
    array([1., 1., 0.])
    """
    w = as_float_array(w, "w")
    return apply_mask(w, mask_unstructured(w, sparsity=sparsity, keep=keep))


def _layers(ws, name: str) -> tuple[list, list[np.ndarray]]:
    """Keys (or positions) and validated arrays of a list/tuple/dict of layers."""
    if isinstance(ws, Mapping):
        keys = list(ws.keys())
        values = list(ws.values())
    elif isinstance(ws, Sequence) and not isinstance(ws, (str, bytes)):
        keys = list(range(len(ws)))
        values = list(ws)
    else:
        raise TypeError(f"{name} must be a list, tuple or dict of arrays, got {type(ws).__name__}")
    if not values:
        raise ValueError(f"{name} must hold at least one array, got an empty {type(ws).__name__}")
    return keys, [as_float_array(v, f"{name}[{k!r}]") for k, v in zip(keys, values, strict=True)]


def _repack(ws, keys: list, arrays: list[np.ndarray]):
    """Return ``arrays`` in the container type of ``ws`` (dict keeps its keys, sequences become lists)."""
    if isinstance(ws, Mapping):
        return dict(zip(keys, arrays, strict=True))
    return arrays


def mask_unstructured_global(ws, sparsity=None, keep=None):
    """Boolean keep masks of :func:`project_unstructured_global`, in the container type of ``ws``.

    Examples
    --------
    >>> mask_unstructured_global({"a": np.array([3.0, 1.0]), "b": np.array([2.0])}, keep=2)
    {'a': array([ True, False]), 'b': array([ True])}
    """
    keys, arrays = _layers(ws, "ws")
    total = sum(a.size for a in arrays)
    k = resolve_count(total, sparsity=sparsity, keep=keep)
    # Magnitudes of every dtype are exact in the widest one, so the joint ranking loses nothing.
    common = np.result_type(*(a.dtype for a in arrays))
    scores = np.concatenate([np.abs(a).reshape(-1).astype(common, copy=False) for a in arrays])
    flat = top_k_mask(scores, k)
    bounds = np.cumsum([0] + [a.size for a in arrays])
    masks = [flat[lo:hi].reshape(a.shape) for lo, hi, a in zip(bounds[:-1], bounds[1:], arrays, strict=True)]
    return _repack(ws, keys, masks)


def project_unstructured_global(ws, sparsity=None, keep=None):
    r"""Joint projection of several layers onto "at most ``k`` nonzero entries in total".

    Parameters
    ----------
    ws : list, tuple or dict of array_like
        The layers (any shapes; dtypes may differ).
    sparsity : float in [0, 1], optional
        Prune ``round(sparsity * n)`` of the ``n`` entries of all layers together.
    keep : int in [0, n], optional
        Keep exactly this many entries in total. Give exactly one of ``sparsity`` and ``keep``.

    Returns
    -------
    zs : list or dict of ndarray
        One projected array per layer, shape and dtype preserved; a dict (same keys, same order) for a
        dict input, a list otherwise.

    Notes
    -----
    The plain, sorting-based definition is
    :func:`refimpl.projections.reference.reference_unstructured_global`; this function is tested equal to it
    (``tests/test_projections_reference.py``).

    The squared Frobenius distance is a sum over layers, so the joint problem is
    :func:`project_unstructured` of the concatenation of all flattened layers:

    .. math:: \operatorname*{argmin}_{\sum_l \|Z_l\|_0 \le k} \sum_l \|W_l - Z_l\|_F^2
              \;\Rightarrow\; \text{keep the } k \text{ largest } |w| \text{ over all layers.}

    Ties keep the lower index in the concatenation (layers in the given order, each flattened in C
    order). Layers are not rescaled: a global budget with raw magnitudes favours layers with large
    weights, which is the usual "global magnitude pruning" (Han et al., 2015).

    Examples
    --------
    >>> project_unstructured_global([np.array([0.1, 4.0]), np.array([[1.0, -2.0]])], sparsity=0.5)
    [array([0., 4.]), array([[ 0., -2.]])]
    """
    keys, arrays = _layers(ws, "ws")
    masks = mask_unstructured_global(dict(zip(keys, arrays, strict=True)), sparsity=sparsity, keep=keep)
    return _repack(ws, keys, [apply_mask(a, masks[key]) for key, a in zip(keys, arrays, strict=True)])
