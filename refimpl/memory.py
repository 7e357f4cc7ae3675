"""Memory settings: why refimpl asks the C allocator to keep freed memory.

A training step allocates the same large arrays again and again: the im2col columns of a 3×3 convolution
are 9× its input (VGG-small's conv2 at a batch of 64: 288 × 50,176 float32 values, 58 MB), their gradient
as much again, plus every layer's activations. glibc's ``malloc`` serves requests above its *mmap
threshold* (128 KB to 32 MB, adjusted at run time) with fresh ``mmap`` pages and gives them back to the
kernel on ``free``; the next step faults them in again, and the kernel zeroes every page first.

Measured on the 2-core machine (2026-11-26), in the two workers of a VGG-small sweep (one thread each,
``paper_repro/sweeps/unify/vgg_small.toml``): 110,000 minor page faults a second per worker and 35–40 %
of their CPU time in the kernel (``clear_page`` and the page-fault path under ``perf``). Asking
``malloc`` to keep what it frees — no ``mmap`` for large blocks, no trimming of the heap — was applied
to the running workers (``mallopt`` called through ``gdb``): the faults fell to about 2,000 a second,
the kernel's share to 4 %, and the runs' phases got faster — ADMM (2 epochs on 10,800 images) from
196–199 s to 131–134 s, retraining from 214–215 s to 125–127 s, about 1.5×. A fresh, short process
gains less, since its young heap still gets large pages: ``paper_repro/bench_memory.py`` (VGG-small
steps in a worker thread of a fresh process, trials alternating) measured 1,354 against 59 faults per
step and 5.7 % less CPU time. The phase times above are in the committed runs' ``state.json``
(``paper_repro/results/unify/vgg_small``: ``prune-0.5-s0`` and ``prune-0.7-s0`` ran before the change,
``unify-0.77-s0`` and ``unify-0.99-s0`` after). The numbers a run computes do not change, only where its
memory comes from.

:func:`retain_freed_memory` makes that request through ``mallopt`` (glibc only; elsewhere it does nothing
and returns ``False``). Importing :mod:`refimpl` calls it unless the environment variable
``REFIMPL_RETAIN_MEMORY`` is ``0`` (:func:`retain_requested`). The cost: a process keeps the peak
of its heap until it exits (VGG-small steps of 64 images: 527 MB peak against 479 MB without, in
``paper_repro/bench_memory.py``), which suits the training jobs and
sweeps this library runs; set ``REFIMPL_RETAIN_MEMORY=0`` in a long-lived process that needs the memory
back. Code that relied on freshly allocated memory being zero was always wrong (``np.empty`` promises
nothing), but fresh ``mmap`` pages hid it; CI runs the test suite with glibc's ``MALLOC_PERTURB_``, which
fills every allocation with a byte pattern, to catch such code.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["RETAIN_ENV", "retain_freed_memory", "retain_requested"]

#: Environment variable that turns :func:`retain_freed_memory` off at import when set to ``0``.
RETAIN_ENV = "REFIMPL_RETAIN_MEMORY"

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
#: Heap top kept on ``free`` before trimming: effectively never (the largest value mallopt takes).
_NEVER_TRIM = 2**31 - 1
#: Extra heap requested with every growth, so that a step's first allocations do not grow it piecemeal.
_TOP_PAD = 64 * 2**20

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Ask glibc's ``malloc`` to keep freed memory for reuse (module docstring); idempotent.

    Sets ``M_MMAP_MAX = 0`` (large blocks come from the heap, which is reused, instead of fresh ``mmap``
    pages), ``M_TRIM_THRESHOLD`` to its maximum (the heap is never given back while the process runs)
    and ``M_TOP_PAD`` to 64 MB. The settings are process-wide and apply to every thread's arena.

    Returns
    -------
    bool
        Whether the settings are in effect: ``False`` where the C library is not glibc (macOS, Windows,
        musl) or ``mallopt`` refused them.
    """
    global _applied
    if _applied is None:
        _applied = _mallopt_all()
    return _applied


def _mallopt_all() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    settings = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM), (_M_TOP_PAD, _TOP_PAD))
    return all(mallopt(param, value) == 1 for param, value in settings)


def retain_requested() -> bool:
    """Whether the environment leaves :func:`retain_freed_memory` on (``REFIMPL_RETAIN_MEMORY`` != ``0``)."""
    return os.environ.get(RETAIN_ENV, "1").strip() != "0"
