r"""Reference answers to ``notebooks/08_exercises`` (for teachers, and for CI: ``tests/test_exercises.py``).

Each answer is the short version a student is expected to write, with the reasoning in its docstring.
They pass the graders of :mod:`refimpl.course.grading`. The library's own versions are
:func:`refimpl.projections.reference.reference_filters` (plain) and
:func:`refimpl.projections.project_filters` (tuned), :func:`refimpl.nn.conv.conv2d_backward_naive` (one
output pixel at a time) and :func:`refimpl.nn.conv.conv2d_backward` (im2col), and
:func:`refimpl.prune.admm.admm_update`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["admm_update", "conv2d_backward", "project_filters"]


def project_filters(w: np.ndarray, keep: int) -> np.ndarray:
    r"""Exercise 1: keep the ``keep`` filters of largest L2 norm, zero the others.

    For disjoint groups a kept filter is copied and a dropped one costs :math:`\|W_f\|_2^2`, so the
    nearest point with at most ``keep`` nonzero filters drops the smallest norms. Ranking by the squared
    norm gives the same order (no square root needed); a *stable* sort of the negated scores keeps the
    lower index among equal norms, refimpl's tie rule.
    """
    w = np.asarray(w)
    scores = np.sum(np.square(w.reshape(len(w), -1), dtype=np.float64), axis=1)
    kept = np.argsort(-scores, kind="stable")[:keep]
    z = np.zeros_like(w)
    z[kept] = w[kept]
    return z


def conv2d_backward(dout: np.ndarray, x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int = 1,
                    padding: int = 0):
    r"""Exercise 2: gradients ``(dx, dw, db)`` of :math:`y = \mathrm{conv}(x, w) + b` given ``dout``.

    The forward pass is :math:`y_{nfpq} = b_f + \sum_{c,i,j} w_{fcij}\, x^\text{pad}_{n,c,sp+i,sq+j}`.
    For one kernel offset :math:`(i, j)` the input pixels it reads form the strided slice
    :math:`X_{ij} = x^\text{pad}[:, :, i : i + s\,OH : s,\ j : j + s\,OW : s]` (shape N, C, OH, OW), so

    .. math:: \frac{\partial L}{\partial w_{fcij}} = \sum_{n,p,q} G_{nfpq}\, (X_{ij})_{ncpq}, \qquad
              \frac{\partial L}{\partial X_{ij}} \mathrel{+}= \sum_f G_{nfpq}\, w_{fcij},

    the second added back into the padded input at the slice's positions (windows overlap, so the
    contributions add up); padding is cut off at the end. :math:`\partial L/\partial b_f` sums ``dout``
    over everything but ``f``. One loop over the :math:`K_H K_W` offsets, each step two ``einsum``.
    """
    n, _, h, width = x.shape
    _, _, kh, kw = w.shape
    oh, ow = dout.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i, i + stride * oh, stride)
            cols = slice(j, j + stride * ow, stride)
            dw[:, :, i, j] = np.einsum("nfpq,ncpq->fc", dout, x_pad[:, :, rows, cols])
            dx_pad[:, :, rows, cols] += np.einsum("nfpq,fc->ncpq", dout, w[:, :, i, j])
    dx = dx_pad[:, :, padding:padding + h, padding:padding + width]
    db = dout.sum(axis=(0, 2, 3)) if b is not None else None
    return dx, dw, db


def admm_update(W: np.ndarray, Z: np.ndarray, U: np.ndarray, project: Callable[[np.ndarray], np.ndarray]):
    r"""Exercise 3: one Z-step and U-step of scaled ADMM, :math:`Z' = \Pi(W + U)`, :math:`U' = U + W - Z'`.

    The Z-step projects the weight *plus* the dual (not the weight alone): that is where the memory of
    past disagreement enters. New arrays are returned; the inputs are left alone.
    """
    Z_new = project(W + U)
    return Z_new, U + W - Z_new
