"""Thread settings: why refimpl limits threads, and the one place that does it.

refimpl's hot loops run in two thread pools: numba's parallel kernels (im2col, pooling, projections,
SpMM) and the BLAS library behind NumPy's GEMMs. On a small machine they take turns, and each pool's idle
workers keep **spinning** for a while after their work is done. When the other pool starts meanwhile, both
fight for the same cores: with GNU OpenMP's default spin (300,000 spins, numba's ``omp`` layer) a LeNet-5
training step on a busy 2-core machine was 2-3× slower, and one thread per pool was 5–25× faster than
the defaults for LeNet-sized layers. Workers that sleep at once cost the other way: numba's
``workqueue`` layer needs ~85 µs to wake its workers for each parallel kernel, and a LeNet-5 step
launches seven. A *short* spin is the middle way (``paper_repro/bench_training.py`` documents the
measurements: a step went from ~13 ms with ``workqueue`` to ~10.4 ms with ``omp`` and 1,000 spins, with
no slowdown of the GEMM that follows). Two measures follow:

* :func:`configure_defaults` (run when :mod:`refimpl` is imported) sets, *unless you set them yourself*,
  ``GOMP_SPINCOUNT=1000`` (numba's ``omp`` layer, its choice when TBB is absent, then spins briefly) and
  ``OPENBLAS_THREAD_TIMEOUT=4`` (a short OpenBLAS spin). numba keeps choosing its threading layer itself
  (``tbb``, ``omp``, ``workqueue``, in that order), so nothing fails where OpenMP is missing.
  Environment variables only act before numba / NumPy (and their OpenMP runtime) are loaded, so they take
  effect when ``refimpl`` is imported first (as the ``refimpl`` command does); otherwise set them in the
  shell. The setting also reaches PyTorch in the same process (it shares libgomp).
* :func:`thread_limit` caps both pools for a block of code; the command-line jobs and experiment configs
  expose it as ``--threads`` / ``threads =``. **More threads than CPUs are capped at the CPU count with a
  warning** (choice: not refused, so a config written on a large machine still runs on a laptop; not
  obeyed, since ``threads=100000`` made OpenBLAS start 64 threads on 2 cores and run 3.9× slower). The
  CPU count is the number of CPUs this process may run on (:func:`available_cpus`).
* ``thread_limit(threads, split=True)`` also makes the network layers **split their GEMMs** into one
  single-threaded piece per thread (:func:`refimpl.nn.parallel.split_gemms`); off by default, as
  measured (the module docstring there has the numbers).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

__all__ = ["available_cpus", "configure_defaults", "thread_info", "thread_limit"]

#: Environment defaults applied by :func:`configure_defaults` (never over a value the user set).
DEFAULT_ENVIRONMENT = {
    "GOMP_SPINCOUNT": "1000",          # OpenMP workers (numba's omp layer) spin ~microseconds, then sleep
    "OPENBLAS_THREAD_TIMEOUT": "4",    # OpenBLAS workers stop spinning after ~2^4 cycles of waiting
}


def configure_defaults() -> None:
    """Set :data:`DEFAULT_ENVIRONMENT` entries that the user has not set (see the module docstring)."""
    for key, value in DEFAULT_ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def available_cpus() -> int:
    """Return the number of CPUs this process may run on (its affinity mask where the OS has one), >= 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def thread_limit(threads: int, *, split: bool | None = None) -> Iterator[None]:
    """Limit numba's and the BLAS library's threads to ``threads`` inside the block (0: no change).

    The previous settings are restored on exit. ``threads`` above :func:`available_cpus` is capped at it
    with a ``RuntimeWarning`` (more threads than cores only oversubscribe them); numba's pool is also
    never asked for more threads than it has. ``split`` chooses how the layers' GEMMs use the threads:
    ``True`` splits them into one single-threaded piece per thread
    (:func:`refimpl.nn.parallel.split_gemms`), ``False`` leaves them to BLAS's own threading, ``None``
    (default) splits from :data:`refimpl.nn.parallel.SPLIT_FROM_THREADS` threads on (default 0: never).
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0 = library defaults), got {threads!r}")
    if threads == 0:
        yield
        return
    cpus = available_cpus()
    if threads > cpus:
        warnings.warn(f"threads={threads} is more than the {cpus} CPUs available; using {cpus}",
                      RuntimeWarning, stacklevel=3)
        threads = cpus
    import numba
    from threadpoolctl import threadpool_limits

    from refimpl.nn import parallel

    if split is None:
        split = 0 < parallel.SPLIT_FROM_THREADS <= threads
    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads), parallel.split_gemms(threads if split else 1):
            yield
    finally:
        numba.set_num_threads(previous)


def thread_info() -> dict[str, Any]:
    """Return the thread counts in force: numba's, each BLAS library's, and the CPU count (for reports)."""
    import numba
    from threadpoolctl import threadpool_info

    blas = [f"{p.get('internal_api')} {p.get('num_threads')}" for p in threadpool_info()
            if p.get("user_api") == "blas"]
    try:
        layer = numba.threading_layer()  # known once a parallel kernel has run
    except ValueError:
        layer = numba.config.THREADING_LAYER
    return {"numba": int(numba.get_num_threads()), "numba_layer": layer,
            "blas": ", ".join(blas) or "unknown", "cpu_count": os.cpu_count()}
