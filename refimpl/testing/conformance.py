r"""Check someone else's projection against refimpl's: the projection contract as one function.

Another implementation (a framework's pruning utility, a student's exercise, a port to another language
wrapped in Python) calls :func:`check_projection` with its function and the name of the structure it claims
to implement; the report names the property that fails, in the terms of the bug, and shows the smallest
counterexample found::

    from refimpl.testing import check_projection
    report = check_projection(my_filter_pruning, "filters")
    assert report.passed, report          # str(report) names the property and the counterexample

The oracle is the plain, sorting-based projection of :mod:`refimpl.projections.reference` (itself tested
equal to the fast one). Inputs alternate between **float32 and float64**, between **tie-free** Gaussian
weights and weights **with ties** (small integers: equal entries, equal group norms, all-zero groups), and
between the two ways of giving the count, **``sparsity=``** (including the half-way values where
round-half-to-even decides) **and ``keep=``** -- unless the caller fixes them. The contract
(``docs/ALGORITHMS.md``, section 2) is checked property by property; per input, in this order:

``returns an array``
    ``fn(W)`` returns an ndarray of ``W``'s shape, without raising.
``dtype``
    ... of ``W``'s dtype (float32 in, float32 out).
``input not mutated``
    ``W`` is unchanged afterwards; ``fn`` does not write into a read-only input.
``count``
    as many groups (entries, blocks) kept as refimpl keeps: ``sparsity=s`` prunes ``round(s·n)`` of ``n``
    groups, round-half-to-even. Reported as "kept k, expected k′" with the rule worked out.
``in the set``
    refimpl's projection leaves ``fn(W)`` unchanged: a Euclidean projection fixes exactly the points of
    its set (for N:M, a vector holding more than N nonzeros is named).
``kept unchanged, dropped exactly 0``
    every entry of ``fn(W)`` equals ``W``'s or is 0 (not for ``"unified"``, whose unified blocks take a
    common magnitude).
``optimal``
    :math:`\|W - \mathrm{fn}(W)\|^2 \le \|W - \Pi(W)\|^2 + \mathrm{tol}` (for the ``vector_block``
    heuristic: no farther than refimpl's heuristic).
``idempotent``
    ``fn(fn(W)) == fn(W)``.
``tie order``
    on an input with ties, ``fn(W)`` equals refimpl's answer **exactly**, although another choice among
    equal scores would be as close: ties keep the lower flat index. Checked only where everything above
    holds, so it names a pure tie-breaking difference; ``ties="any"`` accepts any tie order.
``equals refimpl``
    on a tie-free input, ``fn(W)`` equals refimpl's answer (to :math:`\sqrt{\varepsilon}` relative).

The report's headline is the first property of this list that fails on any input, shown on the smallest
input where it fails, *shrunk*: slices (filters, channels, kernel rows, columns) are deleted one at a time
while the same property still fails, so the counterexample can be checked by hand. The generator is a
seeded :class:`numpy.random.Generator`, so a report is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from refimpl.projections.reference import GROUP_STRUCTURES, REFERENCES, group_ids

__all__ = ["PROPERTIES", "Failure", "ProjectionReport", "check_projection", "diagnose_projection"]

#: The properties, in the order they are checked and reported (module docstring).
PROPERTIES = (
    "returns an array",
    "dtype",
    "input not mutated",
    "count",
    "in the set",
    "kept unchanged, dropped exactly 0",
    "optimal",
    "idempotent",
    "tie order",
    "equals refimpl",
)

#: Sparsity levels drawn besides uniform ones: the extremes and quarters catch most bugs.
_SPECIAL_SPARSITIES = (0.0, 1.0, 0.5, 0.25, 0.75)

_DEFAULT_SHAPES = (
    (1, 1),
    (1, 5),
    (3, 1),
    (2, 4),
    (4, 4),
    (3, 8),
    (6, 8),
    (5, 6),
    (7, 4),
    (1, 1, 1, 1),
    (2, 1, 2, 2),
    (3, 2, 1, 3),
    (4, 3, 3, 3),
    (4, 2, 2, 2),
    (5, 3, 2, 2),
)

#: The count arguments each structure takes (the caller's or drawn ones); N:M's count is ``n`` itself.
_COUNT_ARGS = {
    "nm": (),
    "vector_block": ("vector_sparsity", "vector_keep", "block_sparsity", "block_keep", "total_sparsity"),
}


@dataclass
class Failure:
    """One violated property on one input."""

    property: str
    """Name of the property (see :data:`PROPERTIES`)."""
    w: np.ndarray
    """The input ``W``."""
    params: dict
    """The keyword arguments ``fn`` was called with (besides ``W``)."""
    message: str
    """What went wrong, in the terms of the bug, with the numbers."""
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
            _indent(_show(self.w)),
        ]
        if self.expected is not None:
            lines += ["  expected (refimpl) =", _indent(_show(self.expected))]
        if self.got is not None:
            lines += [f"  got ({self.got.dtype}) =", _indent(_show(self.got))]
        return "\n".join(lines)


def _show(a: np.ndarray) -> str:
    return np.array2string(a, precision=4, max_line_width=100)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _size_key(f: Failure):
    return (f.w.size, float(np.max(np.abs(f.w), initial=0.0)))


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
    """The headline counterexample, shrunk by deleting slices while the same property still fails."""
    dtypes: tuple[str, ...] = ()
    count_modes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """True when no property failed on any input."""
        return not self.failures

    @property
    def headline(self) -> str | None:
        """The headline: the first property of :data:`PROPERTIES` that failed on some input."""
        failed = {f.property for f in self.failures}
        return next((p for p in PROPERTIES if p in failed), None)

    @property
    def counterexample(self) -> Failure | None:
        """The smallest input violating :attr:`headline` (shrunk when shrinking ran)."""
        if not self.failures:
            return None
        if self.shrunk is not None:
            return self.shrunk
        return min((f for f in self.failures if f.property == self.headline), key=_size_key)

    def violated(self) -> dict[str, int]:
        """Return ``{property: number of failing inputs}``, in the order of :data:`PROPERTIES`."""
        counts = {p: sum(f.property == p for f in self.failures) for p in PROPERTIES}
        return {p: n for p, n in counts.items() if n}

    def __str__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        head = f"check_projection({self.fn_name}, {self.structure!r}{args}): "
        tried = (
            f"{' and '.join(self.dtypes)}; {' and '.join(m + '=' for m in self.count_modes) or 'fixed count'}"
        )
        if self.passed:
            return head + f"passed ({self.n_checks} checks on {self.n_examples} inputs: {tried})"
        summary = ", ".join(f"{name} ({count})" for name, count in self.violated().items())
        lines = [
            head + f"FAILED: {self.headline}",
            f"{len(self.failures)} failures in {self.n_checks} checks on {self.n_examples} inputs ({tried})",
            f"properties violated (inputs): {summary}",
            "smallest counterexample (shrunk):",
            self.counterexample.describe(),
        ]
        others = [p for p in self.violated() if p != self.headline]
        if others:
            lines.append("smallest input for each other property:")
            for p in others:
                f = min((f for f in self.failures if f.property == p), key=_size_key)
                lines.append(f"  {p}: {f.message} (w shape {f.w.shape}, {f.w.dtype})")
        return "\n".join(lines)


def check_projection(
    fn: Callable[..., np.ndarray],
    structure: str,
    *,
    n_examples: int = 200,
    seed: int = 0,
    dtype=None,
    ties: str = "exact",
    shapes: Sequence[tuple[int, ...]] | None = None,
    **params,
) -> ProjectionReport:
    r"""Run the projection contract on ``fn`` against refimpl's plain projection for ``structure``.

    Parameters
    ----------
    fn : callable
        ``fn(w, **params) -> ndarray``, the projection under test, with refimpl's signature for the
        structure (``fn(w, sparsity=None, keep=None)``; ``fn(w, block_shape, sparsity=..., keep=...)`` is
        called as ``fn(w, block_shape=..., ...)``).
    structure : str
        A key of :data:`refimpl.projections.PROJECTIONS` (``"filters"``, ``"blocks"``, ``"nm"``,
        ``"unified"``, ...).
    n_examples : int
        Number of inputs checked.
    seed : int
        Seed of the input generator.
    dtype : float dtype or sequence of them, optional
        dtypes of the generated inputs; default float32 and float64 alternately.
    ties : {"exact", "any"}
        ``"exact"``: on inputs with ties ``fn`` must return refimpl's answer exactly (ties keep the lower
        flat index). ``"any"``: any tie order is accepted; the count and optimality are still checked.
    shapes : sequence of tuple, optional
        Weight shapes to draw from (2-D linear or 4-D conv); a small default set otherwise.
    **params
        Passed to both ``fn`` and the reference: the structure's parameters (``block_shape=(2, 2)``,
        ``vector_size=4``, ``n=2, m=4``) and optionally a fixed count (``sparsity=0.5`` or ``keep=3``;
        for ``vector_block`` ``vector_*``/``block_*``/``total_sparsity``). Without a count every input
        draws one, alternating between ``sparsity=`` and ``keep=``.

    Returns
    -------
    ProjectionReport
        ``.passed``, ``.headline`` (the first property that fails), ``.failures`` (each a :class:`Failure`),
        ``.counterexample`` and a ``str()`` fit for an assertion message.

    Notes
    -----
    Tolerances: optimality allows :math:`\|W - \Pi(W)\|^2 + 64\,\varepsilon\,\|W\|^2` (:math:`\varepsilon`
    the dtype's machine epsilon); "equals refimpl" on tie-free inputs, and every comparison for
    ``"unified"`` (whose magnitudes are computed means), allow ``rtol = atol/max|W| =``
    :math:`\sqrt{\varepsilon}`. Every other property is exact.

    Examples
    --------
    >>> from refimpl.projections import project_filters
    >>> check_projection(project_filters, "filters", n_examples=20).passed
    True
    >>> def higher_index_wins(w, sparsity=None, keep=None):   # breaks ties the other way
    ...     scores = np.square(w.reshape(len(w), -1)).sum(axis=1)
    ...     k = len(w) - round(sparsity * len(w)) if keep is None else keep
    ...     out = np.zeros_like(w)
    ...     kept = np.argsort(-scores[::-1], kind="stable")[:k]
    ...     out[len(w) - 1 - kept] = w[len(w) - 1 - kept]
    ...     return out
    >>> check_projection(higher_index_wins, "filters").headline
    'tie order'
    """
    if structure not in REFERENCES:
        raise ValueError(f"structure must be one of {sorted(REFERENCES)}, got {structure!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {fn!r}")
    if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
        raise ValueError(f"n_examples must be a positive integer, got {n_examples!r}")
    dtypes = _check_dtypes(dtype)
    if ties not in ("exact", "any"):
        raise ValueError(f"ties must be 'exact' or 'any', got {ties!r}")
    shapes = tuple(tuple(s) for s in (_DEFAULT_SHAPES if shapes is None else shapes))
    if not shapes or any(len(s) not in (2, 4) or min(s) < 1 for s in shapes):
        raise ValueError(f"shapes must be non-empty 2-D or 4-D shapes with positive sides, got {shapes!r}")

    reference = REFERENCES[structure]
    count_args = _COUNT_ARGS.get(structure, ("sparsity", "keep", "unify"))
    modes = () if any(a in params for a in count_args) or structure == "nm" else ("sparsity", "keep")
    rng = np.random.default_rng(seed)
    report = ProjectionReport(
        getattr(fn, "__name__", repr(fn)),
        structure,
        dict(params),
        dtypes=tuple(str(d) for d in dtypes),
        count_modes=modes,
    )
    attempts = 0
    while report.n_examples < n_examples:
        attempts += 1
        if attempts > 50 * n_examples:
            raise ValueError(
                f"refimpl's {structure!r} projection rejected almost every generated input with "
                f"params={params!r}; pass shapes= that these parameters fit"
            )
        i = report.n_examples
        dt = dtypes[i % len(dtypes)]
        tie_free = (i // len(dtypes)) % 2 == 0
        w = _draw_weight(rng, shapes[rng.integers(len(shapes))], dt, tie_free)
        call = dict(params)
        if modes:
            mode = modes[(i // (2 * len(dtypes))) % len(modes)]
            try:
                call.update(_draw_count(rng, structure, w, params, mode))
            except (ValueError, TypeError):
                continue
        try:
            expected = reference(w, **call)
        except (ValueError, TypeError):
            continue  # these parameters do not fit this shape: draw another input
        report.n_examples += 1
        _check_one(fn, reference, structure, w, call, expected, tie_free, ties, report, i)
    if report.failures:
        report.shrunk = _shrink(fn, reference, structure, ties, report.counterexample)
    return report


def _check_dtypes(dtype) -> tuple[np.dtype, ...]:
    if dtype is None:
        return (np.dtype(np.float32), np.dtype(np.float64))
    items = dtype if isinstance(dtype, (list, tuple)) else (dtype,)
    try:
        dtypes = tuple(np.dtype(d) for d in items)
    except TypeError as err:
        raise TypeError(f"dtype must be a floating dtype or a sequence of them, got {dtype!r}") from err
    if not dtypes or not all(np.issubdtype(d, np.floating) for d in dtypes):
        raise TypeError(f"dtype must be a floating dtype or a sequence of them, got {dtype!r}")
    return dtypes


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------


def _draw_weight(rng: np.random.Generator, shape, dtype, tie_free: bool) -> np.ndarray:
    if tie_free:
        return rng.standard_normal(shape).astype(dtype)
    # Small integers: equal entries, equal group norms and whole zero groups are all common. Half the
    # time the entries are -1, 0, 1 only, so a group's squared norm is its number of nonzeros (ties
    # everywhere), and a filter is copied onto another (equal groups of every structure inside it).
    if rng.random() < 0.5:
        w = rng.integers(-2, 3, size=shape).astype(dtype)
    else:
        w = rng.integers(-1, 2, size=shape).astype(dtype)
        if shape[0] > 1:
            w[rng.integers(shape[0])] = w[rng.integers(shape[0])]
    if rng.random() < 0.3:
        w[rng.integers(shape[0])] = 0  # an all-zero filter / row
    return w


def n_groups(structure: str, shape: tuple[int, ...], params: dict) -> int:
    """Return the number of groups the count of ``structure`` refers to (entries per vector for balanced)."""
    k = math.prod(shape[1:])
    if structure in GROUP_STRUCTURES:
        return int(group_ids(structure, shape, params.get("block_shape")).max()) + 1
    if structure == "balanced":
        return int(params["vector_size"])
    if structure == "unified":
        bh, bw = params["block_shape"]
        return -(-shape[0] // bh) * -(-k // bw)
    raise ValueError(f"structure {structure!r} has no single group count")


def _draw_sparsity(rng: np.random.Generator, n: int) -> float:
    """0, 1, a quarter, a half-way value (``round(s·n)`` decided by round-half-to-even) or uniform."""
    u = rng.random()
    if u < 0.4:
        return float(_SPECIAL_SPARSITIES[rng.integers(len(_SPECIAL_SPARSITIES))])
    if u < 0.7 and n > 1:
        return (int(rng.integers(n)) + 0.5) / n  # s·n lands (within rounding) on x.5
    return float(rng.random())


def _draw_count(rng, structure: str, w: np.ndarray, params: dict, mode: str) -> dict:
    """Draw a ``sparsity=`` or ``keep=`` (for vector ∧ block: one for each part)."""
    if structure == "vector_block":
        v = params["vector_size"]
        bh, bw = params["block_shape"]
        nb = -(-w.shape[0] // bh) * -(-(w.size // w.shape[0]) // bw)
        if mode == "sparsity":
            return {"vector_sparsity": _draw_sparsity(rng, v), "block_sparsity": _draw_sparsity(rng, nb)}
        return {"vector_keep": int(rng.integers(v + 1)), "block_keep": int(rng.integers(nb + 1))}
    n = n_groups(structure, w.shape, params)
    if mode == "sparsity":
        return {"sparsity": _draw_sparsity(rng, n)}
    extra = round(params.get("prune", 0.0) * n) if structure == "unified" else 0
    return {"keep": int(rng.integers(n - extra + 1))}


def _awkward_view(w: np.ndarray) -> np.ndarray:
    """Return a read-only, non-contiguous array holding ``w``'s values (what careless code trips on)."""
    base = np.zeros(w.shape + (2,), dtype=w.dtype)
    base[..., 0] = w
    view = base[..., 0]
    view.flags.writeable = False
    return view


# --------------------------------------------------------------------------------------------------
# The properties
# --------------------------------------------------------------------------------------------------


def _call(fn, w, call, report, tie_free, writeable: bool):
    """Call ``fn`` on a copy of ``w`` (read-only non-contiguous, or writeable); record misbehaviour."""
    arg = np.array(w, copy=True) if writeable else _awkward_view(w)
    try:
        out = fn(arg, **call)
    except Exception as err:  # noqa: BLE001 - any exception is a finding to report, not a crash
        prop, what = "returns an array", f"raised {type(err).__name__}: {err}"
        if "read-only" in str(err):
            prop, what = (
                "input not mutated",
                f"fn writes into its input ({what}; refimpl passes it read-only)",
            )
        report.failures.append(Failure(prop, w.copy(), call, what, tie_free=tie_free))
        return None
    if not np.array_equal(arg, w):
        report.failures.append(
            Failure(
                "input not mutated",
                w.copy(),
                call,
                "the input array was modified",
                got=np.array(arg),
                tie_free=tie_free,
            )
        )
    if not isinstance(out, np.ndarray) or out.shape != w.shape:
        desc = f"{type(out).__name__} {getattr(out, 'shape', '')}".strip()
        report.failures.append(
            Failure(
                "returns an array",
                w.copy(),
                call,
                f"expected an ndarray of shape {w.shape}, got {desc}",
                tie_free=tie_free,
            )
        )
        return None
    if out.dtype != w.dtype:
        report.failures.append(
            Failure(
                "dtype",
                w.copy(),
                call,
                f"returned {out.dtype} for a {w.dtype} input (the dtype must be kept)",
                got=out.copy(),
                tie_free=tie_free,
            )
        )
    return out.astype(w.dtype, copy=False)


def _sq(a: np.ndarray) -> float:
    return float(np.sum(np.square(a, dtype=np.float64)))


def _count_rule(n: int, call: dict, key: str = "sparsity", unit: str = "groups") -> str:
    if key in call:
        s = call[key]
        pruned = round(float(s) * n)
        return (
            f"{key}={s!r} of n={n} {unit} prunes round({float(s) * n!r}) = {pruned} (round-half-to-even), "
            f"so {n - pruned} are kept"
        )
    keep_key = key.replace("sparsity", "keep")
    if keep_key in call:
        return f"{keep_key}={call[keep_key]} of n={n} {unit}"
    return ""


def _count_violation(
    structure: str, w: np.ndarray, got: np.ndarray, expected: np.ndarray, call: dict, tie_free: bool
) -> str | None:
    """``"kept k, expected k′ ..."`` when ``got`` keeps another number of groups than refimpl, else None."""
    if structure in GROUP_STRUCTURES:
        ids = group_ids(structure, w.shape, call.get("block_shape"))
        unit = "entries" if structure == "unstructured" else structure
        kept_got = np.unique(ids[got.reshape(ids.shape) != 0]).size
        kept_exp = np.unique(ids[expected.reshape(ids.shape) != 0]).size
        if kept_got != kept_exp:
            return (
                f"kept {kept_got}, expected {kept_exp} {unit} "
                f"({_count_rule(int(ids.max()) + 1, call, unit=unit)})"
            )
        return None
    if not tie_free:
        # Zeros in the input make the number of nonzeros kept per vector depend on which zeros are chosen;
        # the per-vector and unified counts are judged on tie-free (zero-free) inputs only.
        return None
    if structure in ("balanced", "nm", "vector_block"):
        kept_got, kept_exp = int(np.count_nonzero(got)), int(np.count_nonzero(expected))
        if kept_got == kept_exp:
            return None
        if structure == "nm":
            rule = f"n={call['n']} of every m={call['m']}"
        elif structure == "balanced":
            rule = _count_rule(call["vector_size"], call, unit="entries per vector")
        else:
            rule = "; ".join(
                r
                for r in (
                    _count_rule(call["vector_size"], call, "vector_sparsity", "entries"),
                    _count_rule(n_groups("blocks", w.shape, call), call, "block_sparsity", "blocks"),
                )
                if r
            )
        return f"kept {kept_got}, expected {kept_exp} entries in all ({rule})"
    if structure == "unified":
        key = "sparsity" if "sparsity" in call else "unify"
        bh, bw = call["block_shape"]
        ids = group_ids("blocks", w.shape, (bh, bw))
        changed_got = np.unique(ids[got.reshape(ids.shape) != w.reshape(ids.shape)]).size
        changed_exp = np.unique(ids[expected.reshape(ids.shape) != w.reshape(ids.shape)]).size
        if changed_got != changed_exp:
            return (
                f"changed (unified or pruned) {changed_got}, expected {changed_exp} blocks "
                f"({_count_rule(int(ids.max()) + 1, call, key, 'blocks')})"
            )
    return None


def _set_violation(structure: str, got: np.ndarray, call: dict) -> str:
    """Why ``got`` is outside the set, as specifically as the structure allows."""
    if structure in ("nm", "balanced"):
        v = call["m"] if structure == "nm" else call["vector_size"]
        k_v = call["n"] if structure == "nm" else None
        g2d = got.reshape(got.shape[0], -1)
        for r in range(g2d.shape[0]):
            for start in range(0, g2d.shape[1], v):
                count = int(np.count_nonzero(g2d[r, start : start + v]))
                if k_v is not None and count > k_v:
                    return (
                        f"GEMM row {r}, entries {start}..{start + v - 1} (m consecutive inputs along the "
                        f"reduction axis) hold {count} nonzeros, at most n={k_v} allowed"
                    )
    return "refimpl's projection changes fn(W), so fn(W) is not in the set"


def diagnose_projection(
    structure: str,
    w: np.ndarray,
    got: np.ndarray,
    expected: np.ndarray,
    params: dict,
    *,
    tie_free: bool,
    ties: str = "exact",
) -> list[tuple[str, str]]:
    """Return ``[(property, message), ...]`` for the value properties that ``got`` violates.

    The value properties of the module docstring (count, in the set, kept unchanged/dropped 0, optimal,
    tie order, equals refimpl), judged on one input ``w`` with ``got`` the answer under test and
    ``expected`` refimpl's. Used by :func:`check_projection` and by the golden-vector checker
    (:mod:`refimpl.testing.golden`), so a failure reads the same in both.
    """
    reference = REFERENCES[structure]
    found = []
    count = _count_violation(structure, w, got, expected, params, tie_free)
    if count:
        found.append(("count", count))
    fixed = reference(got, **params)
    tol = float(np.sqrt(np.finfo(w.dtype).eps))
    scale = float(np.max(np.abs(w), initial=0.0))
    if structure == "unified":
        same_as_fixed = np.allclose(fixed, got, rtol=tol, atol=tol * scale)
    else:
        same_as_fixed = np.array_equal(fixed, got)
    if not same_as_fixed:
        found.append(
            (
                "in the set",
                _set_violation(structure, got, params)
                + f" (max change {np.max(np.abs(fixed.astype(np.float64) - got)):.3g})",
            )
        )
    if structure != "unified":
        # bit for bit (docs/ALGORITHMS.md): a kept entry is the input, its sign of zero included; a dropped
        # one is +0.0. (`w * mask`, a common way to apply a mask, writes -0.0 for negative dropped weights.)
        kept = (got == w) & (np.signbit(got) == np.signbit(w))
        dropped = (got == 0) & ~np.signbit(got)
        bad = ~(kept | dropped)
        if np.any(bad):
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            why = (" (a dropped entry must be +0.0; multiplying by the mask gives -0.0 for negative weights)"
                   if got[where] == 0 else "")
            found.append(
                (
                    "kept unchanged, dropped exactly 0",
                    f"entry {where} is {got[where]!r}, neither the input {w[where]!r} nor +0.0{why}",
                )
            )
    eps = float(np.finfo(w.dtype).eps)
    dist_got, dist_ref = _sq(w.astype(np.float64) - got), _sq(w.astype(np.float64) - expected)
    if dist_got > dist_ref + 64 * eps * _sq(w):
        found.append(("optimal", f"||W - fn(W)||^2 = {dist_got:.6g} > ||W - refimpl(W)||^2 = {dist_ref:.6g}"))
    if found:
        return found
    if structure == "unified" or tie_free:
        equal = np.allclose(got, expected, rtol=tol, atol=tol * scale)
    else:
        equal = np.array_equal(got, expected)
    if not equal:
        where = tuple(int(i) for i in np.argwhere(~np.isclose(got, expected, rtol=tol, atol=tol * scale))[0])
        if not tie_free and ties == "exact":
            found.append(
                (
                    "tie order",
                    f"another choice among equal scores: entry {where} is {got[where]!r}, "
                    f"refimpl has {expected[where]!r} (ties keep the lower flat index)",
                )
            )
        elif tie_free:
            n_diff = int(np.count_nonzero(~np.isclose(got, expected, rtol=tol, atol=tol * scale)))
            found.append(
                (
                    "equals refimpl",
                    f"{n_diff} of {w.size} entries differ; first at {where}: "
                    f"got {got[where]!r}, refimpl {expected[where]!r}",
                )
            )
    return found


def _check_one(fn, reference, structure, w, call, expected, tie_free, ties, report, i: int = 0):
    """Run every property on one input, appending failures to ``report``."""
    report.n_checks += 3  # returns an array, dtype, input not mutated
    got = _call(fn, w, call, report, tie_free, writeable=i % 2 == 1)
    if got is None:
        return

    def fail(prop, message, exp=None):
        report.failures.append(Failure(prop, w.copy(), call, message, exp, got.copy(), tie_free))

    # count, in the set, [kept unchanged / dropped 0], optimal, tie order or equals refimpl; idempotent
    report.n_checks += 6 - (structure == "unified")
    for prop, message in diagnose_projection(structure, w, got, expected, call, tie_free=tie_free, ties=ties):
        fail(prop, message, expected)
    again = _call(fn, got, call, ProjectionReport("", structure, call), tie_free, writeable=True)
    if again is not None and not np.array_equal(again, got):
        fail(
            "idempotent",
            f"fn(fn(W)) != fn(W) (max difference {np.max(np.abs(again.astype(np.float64) - got)):.3g})",
            again,
        )


def _shrink(fn, reference, structure, ties, failure: Failure, budget: int = 300) -> Failure:
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
                _check_one(fn, reference, structure, w, best.params, expected, best.tie_free, ties, scratch)
                same = [f for f in scratch.failures if f.property == best.property]
                if same:
                    best = same[0]
                    improved = True
                    break
            if improved:
                break
    return best
