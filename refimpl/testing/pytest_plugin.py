"""A pytest plugin: parametrize a test suite over every pruning structure (or layer) in one line.

Load it once, in the ``conftest.py`` at the root of the tests::

    pytest_plugins = ["refimpl.testing.pytest_plugin"]

and every test that takes the fixture ``refimpl_structure`` runs once per structure of
:data:`STRUCTURES` (``refimpl_layer``: once per layer of :data:`refimpl.testing.layers.LAYERS`)::

    from refimpl.testing import check_projection

    def test_my_projections(refimpl_structure):
        mine = MY_PROJECTIONS[refimpl_structure.name]
        report = check_projection(mine, refimpl_structure.name, **refimpl_structure.params)
        assert report.passed, report

Without the plugin, the decorator :data:`every_structure` does the same for one test
(``@every_structure`` above a test taking ``refimpl_structure``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

__all__ = [
    "STRUCTURES",
    "StructureCase",
    "every_layer",
    "every_structure",
    "refimpl_layer",
    "refimpl_structure",
]


@dataclass(frozen=True)
class StructureCase:
    """A structure and the parameters :func:`~refimpl.testing.check_projection` needs for it."""

    name: str
    """A key of :data:`refimpl.projections.PROJECTIONS`."""
    params: dict = field(default_factory=dict)
    """The structure's own parameters (``block_shape``, ``vector_size``, ``n``/``m`` ...), no count."""

    @property
    def project(self):
        """The (fast) projection of :data:`refimpl.projections.PROJECTIONS` for this structure."""
        from refimpl.projections import PROJECTIONS

        return PROJECTIONS[self.name][0]

    @property
    def reference(self):
        """The plain projection of :mod:`refimpl.projections.reference` for this structure."""
        from refimpl.projections.reference import REFERENCES

        return REFERENCES[self.name]

    def __str__(self) -> str:
        return self.name + "".join(f"-{k}={v}" for k, v in self.params.items()).replace(" ", "")

    def __hash__(self) -> int:
        # the generated hash would hash the params dict and fail; equal cases (same name, equal params in
        # any order) hash alike, so cases can key a dict or fill a set
        return hash((self.name, tuple(sorted((k, _hashable(v)) for k, v in self.params.items()))))


def _hashable(value):
    """``value`` with lists turned into tuples (a ``block_shape`` may come as either)."""
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value


#: Every structure of :data:`refimpl.projections.PROJECTIONS` with parameters that fit
#: :func:`~refimpl.testing.check_projection`'s default shapes.
STRUCTURES = (
    StructureCase("unstructured"),
    StructureCase("filters"),
    StructureCase("channels"),
    StructureCase("shapes"),
    StructureCase("kernels"),
    StructureCase("blocks", {"block_shape": (2, 2)}),
    StructureCase("balanced", {"vector_size": 4}),
    StructureCase("nm", {"n": 2, "m": 4}),
    StructureCase("vector_block", {"vector_size": 4, "block_shape": (2, 2)}),
    StructureCase("unified", {"block_shape": (2, 2)}),
)

#: ``@every_structure``: parametrize one test over :data:`STRUCTURES` (argument ``refimpl_structure``).
every_structure = pytest.mark.parametrize("refimpl_structure", STRUCTURES, ids=str)


def _layer_names() -> list[str]:
    from refimpl.testing.layers import LAYERS

    return sorted(LAYERS)


#: ``@every_layer``: parametrize one test over the layer names of ``LAYERS`` (argument ``refimpl_layer``).
every_layer = pytest.mark.parametrize("refimpl_layer", _layer_names())


@pytest.fixture(params=STRUCTURES, ids=str)
def refimpl_structure(request) -> StructureCase:
    """One :class:`StructureCase` per structure: a test taking it runs once for each."""
    return request.param


@pytest.fixture(params=_layer_names())
def refimpl_layer(request) -> str:
    """One layer name of :data:`refimpl.testing.layers.LAYERS` per run (for :func:`check_layer`)."""
    return request.param
