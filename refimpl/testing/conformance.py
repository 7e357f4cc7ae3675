r"""Check someone else's projection against refimpl's: the projection property suite as a function.

Another implementation (a framework's pruning utility, a student's exercise, a port to another language
wrapped in Python) calls :func:`check_projection` with its function and the name of the structure it claims
to implement; the result says which properties hold and shows the smallest counterexample found::

    from refimpl.testing.conformance import check_projection
    report = check_projection(my_filter_pruning, "filters", sparsity=0.5)
    assert report.passed, report          # str(report) names the counterexample

The properties (ALGORITHMS.md section 2, STYLE.md checklist), checked on every generated input ``W``:

``returns an array``
    ``fn(W)`` returns an ndarray of ``W``'s shape and dtype, without raising, also for read-only and
    non-contiguous ``W``.
``input not mutated``
    ``W`` is unchanged afterwards.
``in the set``
    refimpl's projection leaves ``fn(W)`` unchanged: a Euclidean projection fixes exactly the points of
    its set, so this is a membership test that needs no structure-specific code.
``idempotent``
    ``fn(fn(W)) == fn(W)``.
``kept unchanged, dropped exactly 0``
    every entry of ``fn(W)`` equals ``W``'s entry or is exactly 0 (not for ``"unified"``, whose unified
    blocks take a new common magnitude).
``optimal``
    :math:`\|W - \mathrm{fn}(W)\|^2 \le \|W - \Pi(W)\|^2 + \mathrm{tol}` with :math:`\Pi` refimpl's
    projection (exact for every structure but the ``vector_block`` heuristic, where this compares against
    the heuristic).
``agrees with refimpl (tie-free input)``
    on Gaussian ``W`` (no ties, almost surely) ``fn(W)`` equals ``Pi(W)`` up to rounding.

Inputs alternate between tie-free Gaussian weights and *tied* weights (small integers, so equal entries,
equal group norms and all-zero groups are common: the cases that expose tie rules and the
"``keep=0`` returns the input" bug). Inputs whose parameters refimpl itself rejects (a block larger than
the weight, ``m`` not dividing the row length) are skipped and drawn again. The generator is a seeded
:class:`numpy.random.Generator`, so a report is reproducible. The smallest failing input is then
*shrunk*: slices (filters, channels, kernel rows, columns) are deleted one at a time as long as the same
property still fails, so the report shows a counterexample a reader can check by hand.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Failure", "ProjectionReport", "check_projection"]

#: Sparsity levels drawn when the caller fixes no count: the extremes and exact halves catch most bugs.
_SPECIAL_SPARSITIES = (0.0, 1.0, 0.5, 0.25, 0.75)

_DEFAULT_SHAPES = (
    (1, 1), (1, 5), (3, 1), (2, 4), (4, 4), (3, 8), (6, 8),
    (1, 1, 1, 1), (2, 1, 2, 2), (3, 2, 1, 3), (4, 3, 3, 3), (4, 2, 2, 2),
)


@dataclass
class Failure:
    """One violated property on one input."""

    property: str
    """Name of the property (see the module docstring)."""
    w: np.ndarray
    """The input ``W``."""
    params: dict
    """The keyword arguments ``fn`` was called with (besides ``W``)."""
    message: str
    """What went wrong, with the numbers."""
    expected: np.ndarray | None = None
    """refimpl's answer, when the property compares against it."""
    got: np.ndarray | None = None
    """``fn``'s answer (``None`` if it raised)."""
    tie_free: bool = True
    """Whether ``W`` was drawn tie-free (Gaussian) or with ties (small integers)."""

    def describe(self) -> str:
        """Return a multi-line description: property, call, input, expected and got."""
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        kind = "tie-free" if self.tie_free else "with ties"
        lines = [
            f"property violated: {self.property}",
            f"  {self.message}",
            f"  call: fn(w{args})",
            f"  w ({self.w.shape}, {self.w.dtype}, {kind}) =",
            _indent(np.array2string(self.w, precision=4, max_line_width=100)),
        ]
        if self.expected is not None:
            lines += ["  expected (refimpl) =", _indent(np.array2string(self.expected, precision=4,
                                                                        max_line_width=100))]
        if self.got is not None:
            lines += ["  got =", _indent(np.array2string(self.got, precision=4, max_line_width=100))]
        return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


@dataclass
class ProjectionReport:
    """Outcome of :func:`check_projection`: ``passed``, the ``failures`` and a readable ``str()``."""

    fn_name: str
    structure: str
    params: dict
    n_examples: int = 0
    n_checks: int = 0
    failures: list[Failure] = field(default_factory=list)
    shrunk: Failure | None = None
    """The smallest failing input found, further shrunk by deleting slices while it still fails."""

    @property
    def passed(self) -> bool:
        """True when no property failed on any input."""
        return not self.failures

    @property
    def counterexample(self) -> Failure | None:
        """The smallest counterexample: the shrunk one if shrinking ran, else the smallest failing input."""
        if not self.failures:
            return None
        if self.shrunk is not None:
            return self.shrunk
        return min(self.failures, key=lambda f: (f.w.size, float(np.max(np.abs(f.w), initial=0.0))))

    def violated(self) -> dict[str, int]:
        """Return ``{property: number of failing inputs}``."""
        counts: dict[str, int] = {}
        for failure in self.failures:
            counts[failure.property] = counts.get(failure.property, 0) + 1
        return counts

    def __str__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        head = f"check_projection({self.fn_name}, {self.structure!r}{args}): "
        if self.passed:
            return head + f"passed ({self.n_checks} checks on {self.n_examples} inputs)"
        summary = ", ".join(f"{name} ({count})" for name, count in self.violated().items())
        return (head + f"FAILED {len(self.failures)} of {self.n_checks} checks on {self.n_examples} "
                f"inputs\nproperties violated (inputs): {summary}\nsmallest counterexample found (shrunk):\n"
                + self.counterexample.describe())


def check_projection(fn: Callable[..., np.ndarray], structure: str, *, n_examples: int = 200,
                     seed: int = 0, dtype=np.float64, shapes: Sequence[tuple[int, ...]] | None = None,
                     **params) -> ProjectionReport:
    r"""Run the projection property suite on ``fn`` against refimpl's projection for ``structure``.

    Parameters
    ----------
    fn : callable
        ``fn(w, **params) -> ndarray``, the projection under test.
    structure : str
        A key of :data:`refimpl.projections.PROJECTIONS` (``"filters"``, ``"blocks"``, ``"nm"``,
        ``"unified"``, ...); refimpl's function for it is the reference.
    n_examples : int
        Number of inputs checked (half tie-free, half with ties).
    seed : int
        Seed of the input generator.
    dtype : float dtype
        dtype of the generated inputs.
    shapes : sequence of tuple, optional
        Weight shapes to draw from (2-D linear or 4-D conv); a small default set otherwise.
    **params
        Passed to both ``fn`` and the reference, e.g. ``sparsity=0.5``, ``block_shape=(2, 2)``,
        ``n=2, m=4``. If the reference takes ``sparsity`` and neither ``sparsity`` nor ``keep`` is
        given, every input draws its own ``sparsity`` (0, 1, the quarters, or uniform).

    Returns
    -------
    ProjectionReport
        ``.passed``, ``.failures`` (each a :class:`Failure`), ``.counterexample`` (the smallest failing
        input) and a ``str()`` fit for an assertion message.

    Notes
    -----
    Tolerances: the optimality check allows :math:`\|W - \Pi(W)\|^2 + 64\,\varepsilon\,\|W\|^2`
    (:math:`\varepsilon` the dtype's machine epsilon); agreement allows ``rtol = atol/max|W| =``
    :math:`\sqrt{\varepsilon}`. Every other property is exact.

    Examples
    --------
    >>> from refimpl.projections import project_filters
    >>> check_projection(project_filters, "filters", n_examples=20).passed
    True
    >>> def by_l1(w, sparsity):   # ranks filters by L1 norm: wrong
    ...     scores = np.abs(w.reshape(len(w), -1)).sum(axis=1)
    ...     n_drop = round(sparsity * len(w))
    ...     out = w.copy()
    ...     out[np.argsort(scores, kind="stable")[:n_drop]] = 0
    ...     return out
    >>> report = check_projection(by_l1, "filters", sparsity=0.5)
    >>> report.passed, "optimal" in report.violated()
    (False, True)
    """
    from refimpl.projections import PROJECTIONS  # imported here: testing must not import at module load

    if structure not in PROJECTIONS:
        raise ValueError(f"structure must be one of {sorted(PROJECTIONS)}, got {structure!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ValueError(f"n_examples must be a positive integer, got {n_examples!r}")
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    shapes = tuple(tuple(s) for s in (_DEFAULT_SHAPES if shapes is None else shapes))
    if not shapes or any(len(s) not in (2, 4) or min(s) < 1 for s in shapes):
        raise ValueError(f"shapes must be non-empty 2-D or 4-D shapes with positive sides, got {shapes!r}")

    reference = PROJECTIONS[structure][0]
    draw_sparsity = ("sparsity" not in params and "keep" not in params
                     and "sparsity" in inspect.signature(reference).parameters)
    rng = np.random.default_rng(seed)
    report = ProjectionReport(getattr(fn, "__name__", repr(fn)), structure, dict(params))
    attempts = 0
    while report.n_examples < n_examples:
        attempts += 1
        if attempts > 50 * n_examples:
            raise ValueError(
                f"refimpl's {structure!r} projection rejected almost every generated input with "
                f"params={params!r}; pass shapes= that these parameters fit"
            )
        tie_free = report.n_examples % 2 == 0
        w = _draw_weight(rng, shapes[rng.integers(len(shapes))], dtype, tie_free)
        call = dict(params)
        if draw_sparsity:
            call["sparsity"] = _draw_sparsity(rng)
        try:
            expected = reference(w, **call)
        except (ValueError, TypeError):
            continue  # these parameters do not fit this shape: draw another input
        report.n_examples += 1
        _check_one(fn, reference, w, call, expected, tie_free, structure, report)
    if report.failures:
        report.shrunk = _shrink(fn, reference, structure, report.counterexample)
    return report


def _shrink(fn, reference, structure, failure: Failure, budget: int = 300) -> Failure:
    """Greedily delete slices of the failing input while the same property still fails.

    Tries removing one index along each axis (a filter, a channel, a kernel row or column...), keeps any
    deletion after which refimpl still accepts the input and ``fn`` still violates the same property,
    and repeats until nothing can be removed (or ``budget`` attempts are spent). Deleting slices keeps a
    tie-free input tie-free.
    """
    best = failure
    improved = True
    while improved and budget > 0:
        improved = False
        for axis in range(best.w.ndim):
            for index in range(best.w.shape[axis]):
                if best.w.shape[axis] == 1 or budget <= 0:
                    break
                budget -= 1
                w = np.delete(best.w, index, axis=axis)
                try:
                    expected = reference(w, **best.params)
                except (ValueError, TypeError):
                    continue
                scratch = ProjectionReport("", structure, best.params)
                _check_one(fn, reference, w, best.params, expected, best.tie_free, structure, scratch)
                same = [f for f in scratch.failures if f.property == best.property]
                if same:
                    best = same[0]
                    improved = True
                    break
            if improved:
                break
    return best


def _draw_weight(rng: np.random.Generator, shape, dtype, tie_free: bool) -> np.ndarray:
    if tie_free:
        return rng.standard_normal(shape).astype(dtype)
    # Small integers: equal entries, equal group norms and whole zero groups are all common.
    w = rng.integers(-2, 3, size=shape).astype(dtype)
    if rng.random() < 0.3:
        w[rng.integers(shape[0])] = 0  # an all-zero filter / row
    return w


def _draw_sparsity(rng: np.random.Generator) -> float:
    if rng.random() < 0.6:
        return float(_SPECIAL_SPARSITIES[rng.integers(len(_SPECIAL_SPARSITIES))])
    return float(rng.random())


def _awkward_view(w: np.ndarray) -> np.ndarray:
    """Return a read-only, non-contiguous array holding ``w``'s values (what careless code trips on)."""
    base = np.zeros(w.shape + (2,), dtype=w.dtype)
    base[..., 0] = w
    view = base[..., 0]
    view.flags.writeable = False
    return view


def _call(fn, w, call, prop, report, tie_free):
    """Call ``fn`` on a read-only non-contiguous copy of ``w``; record a failure instead of raising."""
    arg = _awkward_view(w)
    try:
        out = fn(arg, **call)
    except Exception as err:  # noqa: BLE001 - any exception is a finding to report, not a crash
        report.failures.append(Failure(prop, w.copy(), call, f"raised {type(err).__name__}: {err}",
                                       tie_free=tie_free))
        return None
    if not np.array_equal(arg, w):
        report.failures.append(Failure("input not mutated", w.copy(), call,
                                       "the input array was modified", tie_free=tie_free))
    if not isinstance(out, np.ndarray) or out.shape != w.shape or out.dtype != w.dtype:
        desc = (f"{type(out).__name__} {getattr(out, 'shape', '')} {getattr(out, 'dtype', '')}").strip()
        report.failures.append(Failure(prop, w.copy(), call,
                                       f"expected an ndarray of shape {w.shape} and dtype {w.dtype}, "
                                       f"got {desc}", tie_free=tie_free))
        return None
    return out


def _sq(a: np.ndarray) -> float:
    return float(np.sum(np.square(a, dtype=np.float64)))


def _check_one(fn, reference, w, call, expected, tie_free, structure, report):
    """Run every property on one input, appending failures to ``report``."""
    report.n_checks += 1
    got = _call(fn, w, call, "returns an array", report, tie_free)
    if got is None:
        return

    def fail(prop, message, exp=None):
        report.failures.append(Failure(prop, w.copy(), call, message, exp, got.copy(), tie_free))

    eps = float(np.finfo(w.dtype).eps)

    report.n_checks += 1
    fixed = reference(got, **call)
    if not np.array_equal(fixed, got):
        fail("in the set", "refimpl's projection changes fn(W), so fn(W) is not in the set "
             f"(max change {np.max(np.abs(fixed.astype(np.float64) - got)):.3g})", expected)

    report.n_checks += 1
    again = _call(fn, got, call, "idempotent", report, tie_free)
    if again is not None and not np.array_equal(again, got):
        fail("idempotent", "fn(fn(W)) != fn(W) "
             f"(max difference {np.max(np.abs(again.astype(np.float64) - got)):.3g})", again)

    if structure != "unified":
        report.n_checks += 1
        bad = ~((got == w) | (got == 0))
        if np.any(bad):
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            fail("kept unchanged, dropped exactly 0",
                 f"entry {where} is {got[where]!r}, neither the input {w[where]!r} nor 0")

    report.n_checks += 1
    dist_got, dist_ref = _sq(w.astype(np.float64) - got), _sq(w.astype(np.float64) - expected)
    tol = 64 * eps * _sq(w)
    if dist_got > dist_ref + tol:
        fail("optimal", f"||W - fn(W)||^2 = {dist_got:.6g} > ||W - refimpl(W)||^2 = {dist_ref:.6g}",
             expected)

    if tie_free:
        report.n_checks += 1
        scale = float(np.max(np.abs(w), initial=0.0))
        if not np.allclose(got, expected, rtol=np.sqrt(eps), atol=np.sqrt(eps) * scale):
            n_diff = int(np.count_nonzero(~np.isclose(got, expected, rtol=np.sqrt(eps),
                                                      atol=np.sqrt(eps) * scale)))
            fail("agrees with refimpl (tie-free input)", f"{n_diff} of {w.size} entries differ", expected)
