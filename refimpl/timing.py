"""Wall-clock timing for the benchmarks, the notebooks and ``format="auto"`` measurements.

One rule everywhere a time is reported: call the function once untimed, then report the **median** of
``repeats`` timed calls. The untimed call absorbs one-off costs that are not the function's speed
(numba compilation or loading its cache, first-touch page faults, cold caches). The median, unlike the
mean or the minimum, is robust on a shared machine: a few calls slowed down by another process move
it little, and it does not reward one lucky call either.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from refimpl._validation import check_positive_int

__all__ = ["median_seconds"]


def median_seconds(fn: Callable[[], Any], repeats: int = 3) -> float:
    r"""Median wall time of ``fn()`` in seconds over ``repeats`` calls, after one untimed warm-up call.

    Parameters
    ----------
    fn : callable
        Called with no arguments ``repeats + 1`` times; its return value is ignored.
    repeats : int, default 3
        Number of timed calls (>= 1).

    Returns
    -------
    float
        :math:`\operatorname{median}(t_1, \dots, t_r)` where :math:`t_i` is the
        :func:`time.perf_counter` time of the :math:`i`-th timed call.

    Examples
    --------
    >>> median_seconds(lambda: sum(range(1000)), repeats=5) > 0
    True
    """
    check_positive_int(repeats, "repeats")
    fn()  # warm-up: JIT compilation, first-touch page faults
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
