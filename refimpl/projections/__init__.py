"""Euclidean projections onto sparsity sets: the Z-step of ADMM pruning and the hard prune.

Each structure has a pure function ``project_<structure>(w, ...)`` returning the nearest point of the set
(a new array, dtype and shape of ``w``) and a twin ``mask_<structure>(w, ...)`` returning the boolean keep
mask. Common rules (docs/ALGORITHMS.md section 2): ``sparsity`` prunes ``round(s * n)`` of ``n`` groups
(round-half-to-even) or ``keep`` gives the kept count; ties keep the lower flat index; kept entries are
copied unchanged, dropped ones are exactly 0; bad input raises ``ValueError`` naming the argument.

Modules, one family each:

* :mod:`~refimpl.projections.elementwise` -- unstructured, per layer and global;
* :mod:`~refimpl.projections.groups` -- filters (neurons), channels, shapes (columns), kernels;
* :mod:`~refimpl.projections.blocks` -- blocks, balanced (vector-wise), N:M, vector AND block (heuristic);
* :mod:`~refimpl.projections.unify` -- weight unification (micro-structured blocks).

``PROJECTIONS`` maps a structure name to its ``(project_fn, mask_fn)`` pair. Every function takes the
weight ``w`` first; the extra positional arguments differ (``block_shape``, ``vector_size``, ``n, m``),
see each function. :func:`project_unstructured_global` takes a list/dict of weights and is therefore not
in the registry.
"""

from __future__ import annotations

from collections.abc import Callable

from refimpl.projections.blocks import (
    VECTOR_SPARSITY_TOLERANCE,
    check_vector_sparsity,
    mask_balanced,
    mask_blocks,
    mask_nm,
    mask_vector_block,
    project_balanced,
    project_blocks,
    project_nm,
    project_vector_block,
    vector_block_split,
)
from refimpl.projections.elementwise import (
    mask_unstructured,
    mask_unstructured_global,
    project_unstructured,
    project_unstructured_global,
)
from refimpl.projections.groups import (
    mask_channels,
    mask_filters,
    mask_kernels,
    mask_shapes,
    project_channels,
    project_filters,
    project_kernels,
    project_shapes,
)

__all__ = [
    "PROJECTIONS",
    "VECTOR_SPARSITY_TOLERANCE",
    "check_vector_sparsity",
    "mask_balanced",
    "mask_blocks",
    "mask_channels",
    "mask_filters",
    "mask_kernels",
    "mask_nm",
    "mask_shapes",
    "mask_unstructured",
    "mask_unstructured_global",
    "mask_vector_block",
    "project_balanced",
    "project_blocks",
    "project_channels",
    "project_filters",
    "project_kernels",
    "project_nm",
    "project_shapes",
    "project_unstructured",
    "project_unstructured_global",
    "project_vector_block",
    "vector_block_split",
]

#: Structure name -> ``(project_fn, mask_fn)``.
PROJECTIONS: dict[str, tuple[Callable, Callable]] = {
    "unstructured": (project_unstructured, mask_unstructured),
    "filters": (project_filters, mask_filters),
    "channels": (project_channels, mask_channels),
    "shapes": (project_shapes, mask_shapes),
    "kernels": (project_kernels, mask_kernels),
    "blocks": (project_blocks, mask_blocks),
    "balanced": (project_balanced, mask_balanced),
    "nm": (project_nm, mask_nm),
    "vector_block": (project_vector_block, mask_vector_block),
}

# --- weight unification (refimpl.projections.unify, owned by another module author) -----------------
# Append the "unified" import, its __all__ names and its PROJECTIONS["unified"] entry below this line.
from refimpl.projections.unify import mask_unified, project_unified, unify_assignment  # noqa: E402

__all__ += ["mask_unified", "project_unified", "unify_assignment"]
PROJECTIONS["unified"] = (project_unified, mask_unified)
