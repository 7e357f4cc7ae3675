r"""Split GEMMs: one way for a training step to use more cores (an option; measured, not the default).

A LeNet-sized training step is a dozen small matrix products with cheap kernels between them. Given 16
threads, OpenBLAS splits each product 16 ways and synchronises its threads inside every call; for the
small products of a CNN on a batch of 64 that costs more than it saves (measured on a 16-core machine,
``paper_repro/bench_training.py --profile``: the first convolution, 64 products of (20, 25) x (25, 576),
was *slower* with 16 threads than with 2). The remedy tried here, in ten lines: **split each product
along an axis that is not summed over** and give every piece to one thread, with BLAS single-threaded
inside it.

.. math:: A B = \begin{bmatrix} A_1 \\ \vdots \\ A_T \end{bmatrix} B
          = \begin{bmatrix} A_1 B \\ \vdots \\ A_T B \end{bmatrix}
          \quad\text{(rows)}, \qquad
          A B = \begin{bmatrix} A B_1 & \cdots & A B_T \end{bmatrix} \quad\text{(columns)},

or, for a stack of products, a share of the stack per thread (``"batch"``). Each output entry is still one
dot product over the full inner dimension, computed by one single-threaded BLAS call, so no sum is
split between threads. The result equals the unsplit product up to rounding, and most often bit for bit:
OpenBLAS chooses its inner kernels by matrix size (edge tiles, a separate path for small products), so a
piece can add the same terms in another order. Measured on LeNet-5, a small VGG and ResNet-8 (one
forward and backward pass at 2, 3 and 4 threads against single-threaded BLAS): most products equal bit for
bit, the others within 1.3e-6 (``tests/test_nn_parallel.py`` checks float32 rounding). Note that
OpenBLAS's *own* threading is no more exact: a (50, 500) x (500, 4096) float32 product with 2 BLAS
threads differed from the single-threaded one by up to 4e-5.

The pieces run on a pool of Python threads: NumPy releases the GIL inside BLAS, so they run truly in
parallel, and the pool's workers sleep between products, so they never spin against numba's kernels.

Inside the block the convolution's image-by-image layers also run as one group of images per thread
(:func:`refimpl.nn.conv._forward_image_groups`), with the same numbers bit for bit.

Use :func:`split_gemms` (which :func:`refimpl.threads.thread_limit` enters with ``split=True``, or for
``threads >=`` :data:`SPLIT_FROM_THREADS`): inside it :func:`matmul` splits; outside it is ``np.matmul``.
**Measured, it is not the default**: see :data:`SPLIT_FROM_THREADS`. It stays as an option because the
one case where it helped a lot is common on shared machines: with both cores of a 2-core machine busy
with other processes, a ResNet-20 step took 5.2 s with OpenBLAS's two threads (which wait for each other
on the busy cores) and 0.46 s split (``bench_training.py --model resnet_small --threads 2 --gemm blas
split`` while a sweep ran; one run, an uncontrolled load).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["SPLIT_FROM_THREADS", "map_ranges", "matmul", "split_gemms", "split_workers"]

#: :func:`refimpl.threads.thread_limit` splits GEMMs from this many threads on (the environment variable
#: ``REFIMPL_SPLIT_FROM_THREADS`` overrides it). Default 0: never, by measurement. On a 16-core machine
#: (``paper_repro/bench_threads.sh``, table in ``paper_repro/README.md``, "Training speed"; second run)
#: splitting made LeNet-5's epoch slower at 8 and 16 threads (8 threads: 0.58 s against 0.46 s; 16: 0.71
#: against 0.60 s), left VGG-small's within 5 % and made ResNet-20's 14 % shorter at 2 and 8 threads
#: (7 % longer at 16): no single setting wins everywhere, so the default stays the plain product.
SPLIT_FROM_THREADS = int(os.environ.get("REFIMPL_SPLIT_FROM_THREADS", "0"))

#: Smallest piece worth a thread, in multiply-adds (~50 µs of one core): a product is cut into at most
#: ``work // MIN_PIECE_WORK`` pieces, so LeNet-5's last layer (64 x 500 x 10) stays one call.
MIN_PIECE_WORK = 1 << 18

_AXES = ("rows", "cols", "batch")
_pool: ThreadPoolExecutor | None = None
_workers = 0


def split_workers() -> int:
    """Threads :func:`matmul` splits over now (0: not inside :func:`split_gemms`, plain ``np.matmul``)."""
    return _workers


@contextlib.contextmanager
def split_gemms(threads: int) -> Iterator[None]:
    """Inside the block, :func:`matmul` runs its products as ``threads`` pieces on ``threads`` threads.

    BLAS is limited to one thread for the block (each piece is one single-threaded call); the previous
    BLAS setting and split state are restored on exit. ``threads <= 1`` changes nothing. Blocks nest (the
    innermost wins); the pool is shared by the process and not meant to be entered from two threads.
    """
    global _pool, _workers
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int, got {threads!r}")
    if threads <= 1:
        yield
        return
    from threadpoolctl import threadpool_limits

    previous_pool, previous_workers = _pool, _workers
    _pool, _workers = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="refimpl-gemm"), threads
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        _pool.shutdown(wait=True)
        _pool, _workers = previous_pool, previous_workers


def _bounds(length: int, pieces: int) -> list[tuple[int, int]]:
    """At most ``pieces`` contiguous ranges covering ``range(length)``, sizes differing by at most 1."""
    pieces = max(1, min(pieces, length))
    edges = [length * k // pieces for k in range(pieces + 1)]
    return [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:], strict=True) if hi > lo]


def matmul(a: np.ndarray, b: np.ndarray, *, split: str = "rows") -> np.ndarray:
    """Return ``a @ b``, as one piece per thread inside :func:`split_gemms` (``np.matmul`` outside).

    Parameters
    ----------
    a, b : ndarray
        2-D for ``split="rows"`` / ``"cols"``; for ``"batch"`` stacks ``(K, m, k)`` and ``(K, k, n)`` (or
        one of them 2-D, broadcast over the stack), as ``np.matmul`` takes them.
    split : {"rows", "cols", "batch"}
        The output axis cut into pieces: rows of ``a``, columns of ``b``, or the stack. Never the summed
        axis, so every output entry is one full dot product (see the module docstring).

    Returns
    -------
    ndarray, the product, C-contiguous, dtype ``result_type(a, b)``.
    """
    if split not in _AXES:
        raise ValueError(f"split must be one of {_AXES}, got {split!r}")
    if _workers <= 1:
        return np.matmul(a, b)
    if split == "batch":
        stack = a if a.ndim == 3 else b
        if stack.ndim != 3:
            raise ValueError(f"split='batch' needs a 3-D operand, got shapes {a.shape} and {b.shape}")
        out = np.empty((stack.shape[0], a.shape[-2], b.shape[-1]), dtype=np.result_type(a, b))
        length = stack.shape[0]

        def piece(lo: int, hi: int) -> None:
            np.matmul(a[lo:hi] if a.ndim == 3 else a, b[lo:hi] if b.ndim == 3 else b, out=out[lo:hi])
    else:
        if a.ndim != 2 or b.ndim != 2:
            raise ValueError(f"split={split!r} needs 2-D operands, got shapes {a.shape} and {b.shape}")
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
        length = a.shape[0] if split == "rows" else b.shape[1]

        def piece(lo: int, hi: int) -> None:
            if split == "rows":
                np.matmul(a[lo:hi], b, out=out[lo:hi])
            else:
                np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])

    work = out.size * (a.shape[-1])  # multiply-adds
    _run(piece, _bounds(length, min(_workers, work // MIN_PIECE_WORK)))
    return out


def map_ranges(fn, length: int) -> None:
    """Call ``fn(lo, hi)`` on contiguous ranges covering ``range(length)``, one range per thread.

    Inside :func:`split_gemms` the ranges run on the pool; outside it this is ``fn(0, length)``. ``fn``
    must write disjoint outputs for disjoint ranges (no locks are taken) and should release the GIL for
    its heavy work (NumPy's BLAS calls and ``nogil`` numba kernels do).
    """
    if length <= 0:
        return
    if _workers <= 1:
        fn(0, length)
        return
    _run(fn, _bounds(length, _workers))


def _run(fn, bounds: list[tuple[int, int]]) -> None:
    """``fn(lo, hi)`` for every range, the first on the calling thread, the others on the pool."""
    first, *rest = bounds
    futures = [_pool.submit(fn, lo, hi) for lo, hi in rest]
    fn(*first)  # the calling thread takes a range too, rather than only waiting
    for future in futures:
        future.result()  # re-raises a range's exception here
