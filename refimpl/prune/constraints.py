r"""Sparsity constraints ``W_i ∈ S_i``: which parameter, which structure, how sparse.

A :class:`Constraint` is the one object every pruning method in :mod:`refimpl.prune` is configured with
(ADMM, hard pruning, the magnitude baseline, progressive pruning). It names a parameter by its dotted name
(``"conv1.weight"``), a structure from the projection registry
:data:`refimpl.projections.PROJECTIONS` (``"unstructured"``, ``"filters"``, ``"shapes"``, ...), the amount
of pruning (exactly one of ``sparsity`` or ``keep``, counted in the structure's groups) and any extra
arguments the projection needs (``block_shape=``, ``vector_size=``, ``n=``, ``m=``, ``engine=``).

Frozen masks
------------
Progressive pruning (:mod:`refimpl.prune.progressive`) keeps the masks of earlier steps frozen, so the
sets of a later step are intersected with "zero wherever an earlier mask pruned":

.. math:: S' = S \cap \{W : W \odot (1 - M) = 0\}.

:meth:`Constraint.project` with ``frozen=M`` returns :math:`\Pi_S(V \odot M) \odot M`. For every structure
whose set is "drop whole disjoint groups" (unstructured, filters, channels, shapes, kernels, blocks) and
for the per-vector structures (balanced, N:M) this is the **exact** projection onto :math:`S'`: for one
group :math:`g`, the best point of :math:`S'` that keeps :math:`g` is :math:`V_g \odot M_g` (cost
:math:`\|V_g \odot (1 - M_g)\|^2`), dropping it costs :math:`\|V_g\|^2`, so the saving of keeping it is
:math:`\|V_g \odot M_g\|^2` — exactly the score the projection ranks ``V ⊙ M`` by. For the heuristic
structures (``"vector_block"``, ``"unified"``) it is a heuristic too.

From config tables
------------------
An experiment config (:mod:`refimpl.config`) names its constraints as ``[[admm.constraints]]`` tables
whose ``param`` / ``params`` may be a shortcut (:data:`PARAM_SHORTCUTS`), a glob pattern or a list;
:func:`expand_constraints` turns them into one :class:`Constraint` per selected weight of a built model.
"""

from __future__ import annotations

import fnmatch
import inspect
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from refimpl._validation import as_float_array, check_probability

__all__ = [
    "PARAM_SHORTCUTS",
    "Constraint",
    "check_unified_alone",
    "constraints_by_param",
    "expand_constraints",
    "parse_constraints",
    "select_params",
]

#: ``params =`` keywords of a config's constraint tables and the layer kinds they select
#: (:func:`select_params`).
PARAM_SHORTCUTS = ("all", "conv", "linear")

#: Keyword arguments by which some projections take their amount instead of ``sparsity`` / ``keep``
#: (unification's ``unify=``).
_OTHER_AMOUNTS = {"unify"}

#: Structures whose projection changes kept values (a unified block gets one shared magnitude), so the
#: projection's ``mask_fn`` ("copied unchanged") is not the set of entries allowed to be nonzero.
_VALUE_CHANGING = {"unified"}


def _registry() -> dict:
    # Imported here, not at module load, so that ``refimpl.prune`` can be imported (and its docs read)
    # on its own; the registry itself is the single source of truth for the structure names.
    from refimpl.projections import PROJECTIONS

    return PROJECTIONS


class Constraint:
    """One sparsity constraint ``W ∈ S`` on one named parameter.

    Parameters
    ----------
    param : str
        Dotted parameter name, e.g. ``"conv1.weight"`` (the keys of ``model.parameters()``).
    structure : str
        A key of :data:`refimpl.projections.PROJECTIONS`.
    sparsity : float in [0, 1], optional
        Share of the structure's groups to prune (``round(sparsity * n)`` groups, half to even).
    keep : int, optional
        Number of groups to keep instead. Exactly one of ``sparsity`` / ``keep`` is given, except for the
        structures that take their amount from their own arguments (``"nm"``: ``n=, m=``;
        ``"vector_block"``: ``vector_sparsity=`` ... ``block_keep=``, or ``total_sparsity=`` split by
        ``vector_share=``; ``"unified"`` also ``unify=``).
    **params
        Extra keyword arguments of the projection (``block_shape=(4, 4)``, ``vector_size=8``,
        ``n=2, m=4``, ``engine="numpy"``, ...), passed through unchanged and checked against the
        projection's signature at construction (``TypeError`` for a missing or unknown argument).

    Examples
    --------
    >>> c = Constraint("fc1.weight", "unstructured", sparsity=0.5)
    >>> c.project(np.array([[1.0, -3.0], [0.5, 2.0]]))
    array([[ 0., -3.],
           [ 0.,  2.]])
    >>> Constraint.from_dict({"param": "fc1.weight", "structure": "filters", "keep": 3}).keep
    3
    """

    __slots__ = ("param", "structure", "sparsity", "keep", "params")

    def __init__(self, param: str, structure: str, sparsity: float | None = None, keep: int | None = None,
                 **params: Any) -> None:
        if not isinstance(param, str) or not param:
            raise TypeError(f"param must be a non-empty parameter name (str), got {param!r}")
        registry = _registry()
        if structure not in registry:
            raise ValueError(f"structure must be one of {sorted(registry)}, got {structure!r}")
        if sparsity is not None and keep is not None:
            raise ValueError(
                f"give at most one of sparsity= or keep=, got sparsity={sparsity!r} and keep={keep!r}"
            )
        if sparsity is not None:
            sparsity = check_probability(sparsity, "sparsity")
        if keep is not None:
            if isinstance(keep, bool) or not isinstance(keep, numbers.Integral):
                raise TypeError(f"keep must be an integer, got {keep!r}")
            if keep < 0:
                raise ValueError(f"keep must be >= 0, got {keep}")
            keep = int(keep)
        self.param = param
        self.structure = structure
        self.sparsity = sparsity
        self.keep = keep
        self.params = dict(params)
        # Check the arguments against the projection's signature now, not at the first Z-step hours into a
        # run: a missing block_shape= or a sparsity= given to "nm" (whose amount is n:m) fails here.
        project_fn, _ = registry[structure]
        try:
            inspect.signature(project_fn).bind(np.zeros((1, 1)), **self._amount(), **self.params)
        except TypeError as err:
            raise TypeError(f"invalid arguments for structure {structure!r}: {err}") from None
        if (sparsity is None and keep is None and "sparsity" in inspect.signature(project_fn).parameters
                and not self.params.keys() & _OTHER_AMOUNTS):
            raise ValueError(f"structure {structure!r} needs exactly one of sparsity= or keep=, got neither")

    def _amount(self) -> dict[str, Any]:
        """Return the ``sparsity=`` / ``keep=`` keyword actually given ("nm" and others take neither)."""
        if self.sparsity is not None:
            return {"sparsity": self.sparsity}
        if self.keep is not None:
            return {"keep": self.keep}
        return {}

    # --- construction --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Constraint:
        """Build from a mapping such as one TOML table ``{param, structure, sparsity|keep, ...}``.

        Lists are turned into tuples (TOML has no tuples; ``block_shape = [4, 4]`` means ``(4, 4)``).
        """
        if not isinstance(spec, Mapping):
            raise TypeError(f"spec must be a mapping, got {type(spec).__name__}")
        spec = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
        for required in ("param", "structure"):
            if required not in spec:
                raise ValueError(f"spec must contain {required!r}, got keys {sorted(spec)}")
        return cls(**spec)

    def to_dict(self) -> dict[str, Any]:
        """Return the inverse of :meth:`from_dict` (JSON/TOML-able when the extra params are)."""
        out: dict[str, Any] = {"param": self.param, "structure": self.structure}
        out.update(self._amount())
        out.update(self.params)
        return out

    def with_sparsity(self, sparsity: float) -> Constraint:
        """Return a copy with a new ``sparsity`` target (and no ``keep``); used by multi-step schedules."""
        if "sparsity" not in inspect.signature(self._functions()[0]).parameters:
            raise ValueError(f"structure {self.structure!r} has no sparsity= argument; give its per-step "
                             "constraints explicitly")
        return Constraint(self.param, self.structure, sparsity=sparsity, **self.params)

    # --- the projection ------------------------------------------------------------------------------
    def _functions(self):
        return _registry()[self.structure]

    def _prepare(self, w, frozen) -> tuple[np.ndarray, np.ndarray | None]:
        w = as_float_array(w, "w")
        if frozen is None:
            return w, None
        frozen = np.asarray(frozen)
        if frozen.dtype != np.bool_:
            raise TypeError(f"frozen must be a boolean mask, got dtype {frozen.dtype}")
        if frozen.shape != w.shape:
            raise ValueError(f"frozen has shape {frozen.shape}, w has shape {w.shape}")
        return w * frozen, frozen

    def project(self, w: np.ndarray, frozen: np.ndarray | None = None) -> np.ndarray:
        r"""Euclidean projection :math:`\Pi_S(w)` (a new array; ``w`` is not modified).

        Parameters
        ----------
        w : ndarray
            The parameter's value (any shape the structure accepts).
        frozen : bool ndarray, same shape as ``w``, optional
            Keep mask of earlier pruning steps: the result is :math:`\Pi_S(w \odot M) \odot M`, the exact
            projection onto :math:`S \cap \{W \odot (1 - M) = 0\}` for the group structures (see the module
            docstring).
        """
        project_fn, _ = self._functions()
        v, frozen = self._prepare(w, frozen)
        z = project_fn(v, **self._amount(), **self.params)
        return z if frozen is None else z * frozen

    def mask(self, w: np.ndarray, frozen: np.ndarray | None = None) -> np.ndarray:
        """Boolean keep mask of :meth:`project`: ``True`` where the result may be nonzero.

        For the pruning structures this is the registry's ``mask_fn``. For ``"unified"``, whose
        ``mask_fn`` marks only the entries copied unchanged, the unified blocks count as kept too (they are
        not pruned): the mask is ``mask_fn(w) | (project(w) != 0)``. ANDed with ``frozen`` when given.
        """
        project_fn, mask_fn = self._functions()
        v, frozen = self._prepare(w, frozen)
        m = np.asarray(mask_fn(v, **self._amount(), **self.params), dtype=bool)
        if self.structure in _VALUE_CHANGING:
            m |= project_fn(v, **self._amount(), **self.params) != 0
        return m if frozen is None else m & frozen

    # --- dunder --------------------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Constraint):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash((self.param, self.structure, self.sparsity, self.keep))

    def __repr__(self) -> str:
        amount = f"sparsity={self.sparsity}" if self.sparsity is not None else f"keep={self.keep}"
        extra = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"Constraint({self.param!r}, {self.structure!r}, {amount}{extra})"


def parse_constraints(specs: Iterable[Constraint | Mapping[str, Any]]) -> list[Constraint]:
    """Turn a list of :class:`Constraint` objects and/or dicts into a list of constraints."""
    if isinstance(specs, (Constraint, Mapping, str)):
        raise TypeError("constraints must be a list of Constraint objects or dicts, not a single item")
    out = [c if isinstance(c, Constraint) else Constraint.from_dict(c) for c in specs]
    if not out:
        raise ValueError("constraints must not be empty")
    return out


def constraints_by_param(constraints: Iterable[Constraint]) -> dict[str, list[Constraint]]:
    """Group constraints by parameter name, keeping their order (several constraints per layer allowed)."""
    groups: dict[str, list[Constraint]] = {}
    for c in constraints:
        if not isinstance(c, Constraint):
            raise TypeError(f"constraints must hold Constraint objects, got {type(c).__name__}")
        groups.setdefault(c.param, []).append(c)
    return groups


def check_unified_alone(constraints: Iterable[Constraint], keys: Iterable[str] | None = None) -> None:
    """Raise ``ValueError`` if a parameter has a ``"unified"`` constraint together with other constraints.

    With several constraints on one weight the hard prune (:func:`~refimpl.prune.hard_prune`) only
    intersects their masks, so no block would be unified and the retraining that keeps unified blocks
    unified would have nothing to keep. :func:`expand_constraints` calls this before any training, and
    :func:`~refimpl.prune.unified_retraining.hard_prune_unified` again for direct callers.

    Parameters
    ----------
    constraints : iterable of Constraint
    keys : iterable of str, optional
        One label per constraint (the config key it came from), named in the message.
    """
    constraints = list(constraints)
    labels = list(keys) if keys is not None else [None] * len(constraints)
    sources: dict[str, list[str]] = {}
    for c, label in zip(constraints, labels, strict=True):
        sources.setdefault(c.param, []).append(label)
    for name, cons in constraints_by_param(constraints).items():
        if len(cons) > 1 and any(c.structure == "unified" for c in cons):
            keys_of_name = [k for k in sources[name] if k is not None]
            prefix = f"{', '.join(dict.fromkeys(keys_of_name))}: " if keys_of_name else ""
            raise ValueError(
                f"{prefix}constraints on {name!r}: a 'unified' constraint must be the parameter's only "
                f"one (got {[c.structure for c in cons]}); the hard prune unifies blocks only then"
            )


# --- constraints from config tables, against a model -----------------------------------------------------

def _weights_by_kind(model) -> dict[str, list[str]]:
    """Return the convolution / linear / all weight names of ``model`` (:data:`PARAM_SHORTCUTS`), in order."""
    # Imported here for the reason _registry() gives: the layers pull in the numba kernels.
    from refimpl.nn.conv import Conv2d
    from refimpl.nn.linear import Linear

    kinds: dict[str, list[str]] = {"conv": [], "linear": [], "all": []}
    for name, module in model.named_modules():
        if isinstance(module, (Conv2d, Linear)):
            weight = f"{name}.weight"
            kinds["conv" if isinstance(module, Conv2d) else "linear"].append(weight)
            kinds["all"].append(weight)
    return kinds


def select_params(selector: str | list[str], model) -> list[str]:
    """Expand a ``params`` selector against ``model`` into weight names, in forward order.

    Parameters
    ----------
    selector : str or list of str
        ``"all"`` / ``"conv"`` / ``"linear"`` (:data:`PARAM_SHORTCUTS`) select the convolution and/or
        linear weights. Any other string is an exact weight name or a glob pattern matched against those
        weights only (``"layer1.*"`` selects the convolution weights of ``layer1``, not its biases or
        batch-norm parameters, which no structure applies to). A list is the union of its items.
    model : Module
        The built model (its ``named_modules()`` and ``parameters()``).

    Returns
    -------
    list of str
        The selected weights, each once, in the order of ``model.parameters()``.

    Raises
    ------
    ValueError
        An item selects no weight; the message lists the model's weights (and the non-weight parameters
        the item matched, if any).
    """
    weights = _weights_by_kind(model)
    names = list(model.parameters())
    prunable = set(weights["all"])
    items = [selector] if isinstance(selector, str) else list(selector)
    chosen: set[str] = set()
    for item in items:
        if item in PARAM_SHORTCUTS:
            hits = weights[item]
        else:
            matched = [n for n in names if n == item or fnmatch.fnmatchcase(n, item)]
            hits = [n for n in matched if n in prunable]
            if matched and not hits:
                raise ValueError(f"params item {item!r} selects no convolution or linear weight: it matches "
                                 f"only {matched}, which no structure applies to (weights: {weights['all']})")
        if not hits:
            raise ValueError(f"params item {item!r} selects no parameter of the model "
                             f"(weights: {weights['all']})")
        chosen.update(hits)
    return [n for n in names if n in chosen]


def _check_fits(constraint: Constraint, value: np.ndarray, key: str) -> None:
    """Raise ``"<key>: ..."`` unless ``constraint`` can project a weight of ``value``'s shape and dtype."""
    # Projecting zeros of the real shape, rather than re-deriving every structure's rules here, runs the
    # projection's own checks (group counts for keep=, block and vector sizes, N:M divisibility) now: they
    # would otherwise fail only at the first Z-step or hard prune, after the whole pretraining.
    try:
        constraint.project(np.zeros(value.shape, dtype=value.dtype))
    except (TypeError, ValueError) as err:
        raise type(err)(f"{key}: structure {constraint.structure!r} on {constraint.param} "
                        f"(shape {value.shape}): {err}") from None


def expand_constraints(specs: list[Mapping[str, Any]], model) -> list[Constraint]:
    """Turn config constraint tables into :class:`Constraint` objects for ``model``, checked against it.

    A table with ``params`` becomes one constraint per selected weight (same structure and amount,
    :func:`select_params`); ``param`` names one weight. Order: tables in order, each table's weights in
    forward order. Every constraint is tried once on a zero array of its weight's shape and dtype, so a
    constraint that cannot apply to that weight fails here, before any training.

    Parameters
    ----------
    specs : list of mapping
        The ``[[admm.constraints]]`` tables: exactly one of ``param`` / ``params``, plus the keyword
        arguments of :class:`Constraint` (``structure``, ``sparsity`` or ``keep``, projection arguments).
    model : Module
        The built model whose weights the constraints name.

    Returns
    -------
    list of Constraint

    Raises
    ------
    ValueError, TypeError
        One line starting with the table's config key, ``admm.constraints[i]`` (``.param`` /
        ``.params`` for a selection problem), and naming the parameter: an unknown parameter, a
        parameter that is not a convolution or linear weight (a bias, a batch-norm scale), invalid
        constraint arguments, or a constraint that does not fit the weight's shape, e.g.
        ``admm.constraints[1]: structure 'filters' on conv1.weight (shape (20, 1, 5, 5)): keep must lie
        in [0, 20] (the number of groups), got 60``; a ``"unified"`` constraint on a weight that
        another constraint names too (:func:`check_unified_alone`, naming both tables' keys).
    """
    parameters = model.parameters()
    weights = _weights_by_kind(model)["all"]
    out, keys = [], []
    for i, spec in enumerate(specs):
        key = f"admm.constraints[{i}]"
        if not isinstance(spec, Mapping):
            raise TypeError(f"{key}: must be a table (mapping), got {spec!r}")
        if ("param" in spec) == ("params" in spec):
            raise ValueError(f"{key}: give exactly one of 'param' (one name) or 'params' (a shortcut, "
                             "pattern or list)")
        rest = {k: v for k, v in spec.items() if k not in ("param", "params")}
        if "param" in spec:
            name = spec["param"]
            if name not in parameters:
                raise ValueError(f"{key}.param: the model has no parameter {name!r}")
            if name not in weights:
                shape = parameters[name].shape
                raise ValueError(f"{key}.param: {name} (shape {shape}) is not the weight of a convolution or "
                                 f"linear layer, which every structure needs (weights: {weights})")
            names = [name]
        else:
            try:
                names = select_params(spec["params"], model)
            except ValueError as err:
                raise ValueError(f"{key}.params: {err}") from None
        for name in names:
            try:
                constraint = Constraint.from_dict({"param": name, **rest})
            except (TypeError, ValueError) as err:
                raise type(err)(f"{key}: {err}") from None
            _check_fits(constraint, parameters[name], key)
            out.append(constraint)
            keys.append(key)
    check_unified_alone(out, keys)
    return out
