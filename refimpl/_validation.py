"""Argument checks shared by every public function.

Every public entry point of refimpl rejects bad input with a ``ValueError`` or ``TypeError`` whose message
names the offending argument and shows its value. The helpers here keep those messages uniform.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

__all__ = [
    "ENGINES",
    "SPARSE_ENGINES",
    "as_float_array",
    "as_weight",
    "check_allocation",
    "check_block_shape",
    "check_engine",
    "check_finite",
    "check_ndim",
    "check_positive_int",
    "check_probability",
    "physical_memory",
    "resolve_count",
]

#: Kernel engines of the projections and the layers (``engine=``): numba's kernels or their NumPy twins.
ENGINES = ("numba", "numpy")
#: Engines of the sparse kernels and the sparse inference layers: also ``scipy.sparse``.
SPARSE_ENGINES = ("numba", "numpy", "scipy")

#: Integers up to this magnitude convert to float64 exactly (2^53); larger ones may not (see
#: :func:`as_float_array`).
_FLOAT64_EXACT_INT = 2**53


def as_float_array(x, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Return ``x`` as a floating-point ndarray (no copy when it already is one).

    Floating input keeps its dtype. Boolean and integer input is converted to float64, **exactly or not
    at all**: an integer that float64 cannot hold exactly (beyond :math:`2^{53}` in magnitude, e.g.
    :math:`2^{53} + 1`, which would silently become :math:`2^{53}`) is refused rather than rounded. Complex
    input is refused too (casting would drop the imaginary part).

    Raises ``TypeError`` for non-numeric or complex input and ``ValueError`` for a wrong number of
    dimensions, for NaN/inf entries or for integers that do not round-trip through float64, naming
    ``name`` in the message.
    """
    arr = np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype} (refimpl does not drop "
                        f"imaginary parts: pass {name}.real if that is what you mean)")
    if not np.issubdtype(arr.dtype, np.floating):
        converted = arr.astype(np.float64)
        if arr.dtype.itemsize >= 8 and arr.size:  # int32 and narrower always convert exactly
            _check_exact_integers(arr, converted, name)
        arr = converted
    if ndim is not None:
        check_ndim(arr, name, ndim)
    check_finite(arr, name)
    return arr


def _check_exact_integers(arr: np.ndarray, converted: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` unless every integer of ``arr`` equals its float64 conversion."""
    # Compare in the float domain against the exact bound first (cheap), then, where a value is that
    # large, in Python integers (exact: no second rounding, no overflow of the int64 cast back).
    big = np.abs(converted) >= _FLOAT64_EXACT_INT
    if not np.any(big):
        return
    for value, approx in zip(arr[big].tolist(), converted[big].tolist(), strict=True):
        if int(approx) != value:
            raise ValueError(
                f"{name} holds the integer {value}, which float64 cannot represent exactly (it would become "
                f"{int(approx)}); refimpl computes in floating point and refuses integers beyond 2**53 "
                "that would change: convert them yourself if rounding is acceptable"
            )


def as_weight(w, name: str = "w") -> np.ndarray:
    """Validate a conv ``(F, C, KH, KW)`` or linear ``(out, in)`` weight: finite floats, no empty axis.

    The one check every projection applies to its weight (:func:`as_float_array` plus the shape rules).
    """
    w = as_float_array(w, name, ndim=(2, 4))
    if w.size == 0:
        raise ValueError(f"{name} must not have a zero-length axis, got shape {w.shape}")
    return w


def check_engine(engine, engines: tuple[str, ...] = ENGINES) -> str:
    """Return ``engine`` if it is one of ``engines``; raise ``ValueError`` naming it otherwise."""
    if not isinstance(engine, str) or engine not in engines:
        raise ValueError(f"engine must be one of {engines}, got {engine!r}")
    return engine


def check_block_shape(block_shape, gemm_shape: tuple[int, int] | None = None) -> tuple[int, int]:
    """Return ``block_shape`` as ``(bh, bw)``: a tuple or list of two integers ``>= 1``.

    With ``gemm_shape = (rows, cols)`` (the GEMM view a projection tiles) also ``bh <= rows`` and
    ``bw <= cols``. One validator for every ``block_shape=`` argument (projections, sparse formats, the
    sparse engine), so the same bad value gets the same message everywhere.

    Raises
    ------
    ValueError
        Not a pair; an entry below 1; a block larger than ``gemm_shape``.
    TypeError
        An entry that is not an integer (``bool`` included).
    """
    if not isinstance(block_shape, (tuple, list)) or len(block_shape) != 2:
        raise ValueError(f"block_shape must be a pair (bh, bw) of integers, got {block_shape!r}")
    bh = check_positive_int(block_shape[0], "block_shape[0]")
    bw = check_positive_int(block_shape[1], "block_shape[1]")
    if gemm_shape is not None:
        rows, cols = gemm_shape
        if bh > rows or bw > cols:
            which = "block_shape[0]" if bh > rows else "block_shape[1]"
            raise ValueError(
                f"block_shape must satisfy 1 <= bh <= {rows} and 1 <= bw <= {cols} (the GEMM view is "
                f"{rows} x {cols}), got {tuple(block_shape)!r}: {which} is too large"
            )
    return bh, bw


def _format_bytes(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def physical_memory() -> int | None:
    """Bytes of physical memory of this machine, or ``None`` where the OS does not say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def check_allocation(shapes, dtype, what: str) -> None:
    """Raise ``ValueError`` before allocating buffers of ``shapes`` that cannot fit this machine's memory.

    The sizes are computed in Python integers (no overflow), and compared with the physical memory: a
    buffer larger than it can never be filled (with overcommit the allocation may even "succeed" and the
    process be killed later), so asking for it is an argument error (``padding=10**6``), not an
    out-of-memory condition. Smaller requests are left to the allocator.

    Parameters
    ----------
    shapes : sequence of shapes
        The buffers needed at the same time.
    dtype : numpy dtype
    what : str
        What asks for them, e.g. ``"conv2d_forward with padding=1000000"`` (quoted in the message).
    """
    itemsize = np.dtype(dtype).itemsize
    need = sum(math.prod(int(d) for d in shape) for shape in shapes) * itemsize
    limit = physical_memory()
    if limit is not None and need > limit:
        listed = ", ".join(" x ".join(str(int(d)) for d in shape) for shape in shapes)
        raise ValueError(
            f"{what} needs {_format_bytes(need)} of buffers ({listed} of {np.dtype(dtype)}), more than this "
            f"machine's {_format_bytes(limit)} of memory"
        )


def check_ndim(arr: np.ndarray, name: str, ndim: int | tuple[int, ...]) -> None:
    """Raise ``ValueError`` unless ``arr.ndim`` is ``ndim`` (or one of them)."""
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed:
        want = " or ".join(str(d) for d in allowed)
        raise ValueError(f"{name} must have {want} dimensions, got shape {arr.shape}")


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if ``arr`` holds a NaN or an infinity."""
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; refimpl does not guess what such entries mean")


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as an int, raising unless it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_probability(value, name: str, *, closed_right: bool = True) -> float:
    """Return ``value`` as a float in ``[0, 1]`` (or ``[0, 1)``), raising otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    upper_ok = value <= 1.0 if closed_right else value < 1.0
    if not (value >= 0.0 and upper_ok):
        interval = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value}")
    return value


def resolve_count(n: int, sparsity=None, keep=None) -> int:
    """Return how many of ``n`` groups to keep, from exactly one of ``sparsity`` or ``keep``.

    ``sparsity`` s prunes ``round(s * n)`` groups with round-half-to-even (Python's :func:`round`, the
    rule ``torch.nn.utils.prune`` uses), so ``n - round(s * n)`` are kept. ``keep`` gives the kept count
    directly and must satisfy ``0 <= keep <= n``.

    Examples
    --------
    >>> resolve_count(10, sparsity=0.25)   # round(2.5) == 2 pruned
    8
    >>> resolve_count(10, keep=3)
    3
    """
    if (sparsity is None) == (keep is None):
        raise ValueError(
            f"give exactly one of sparsity= or keep=, got sparsity={sparsity!r} and keep={keep!r}"
        )
    if sparsity is not None:
        s = check_probability(sparsity, "sparsity")
        return n - round(s * n)
    if isinstance(keep, bool) or not isinstance(keep, numbers.Integral):
        raise TypeError(f"keep must be an integer, got {keep!r}")
    if not 0 <= keep <= n:
        raise ValueError(f"keep must lie in [0, {n}] (the number of groups), got {keep}")
    return int(keep)
