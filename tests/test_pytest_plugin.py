"""The pytest plugin: one line parametrizes a foreign project's tests over every structure and layer."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from refimpl.projections import PROJECTIONS
from refimpl.testing import LAYERS, check_layer, check_projection
from refimpl.testing.pytest_plugin import STRUCTURES, every_layer, every_structure


def test_every_registered_structure_is_listed():
    assert {s.name for s in STRUCTURES} == set(PROJECTIONS)


@every_structure
def test_decorator_parametrizes_over_every_structure(refimpl_structure):
    report = check_projection(
        refimpl_structure.project, refimpl_structure.name, n_examples=20, **refimpl_structure.params
    )
    assert report.passed, report
    assert check_projection(
        refimpl_structure.reference, refimpl_structure.name, n_examples=10, **refimpl_structure.params
    ).passed


@every_layer
def test_decorator_runs_once_per_layer(refimpl_layer):
    spec = LAYERS[refimpl_layer]
    assert check_layer(spec.forward, spec.backward, refimpl_layer, dtypes=("float64",)).passed


def test_a_foreign_project_loads_the_plugin_in_one_line(tmp_path):
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["refimpl.testing.pytest_plugin"]\n')
    (tmp_path / "test_mine.py").write_text(
        textwrap.dedent("""
        def test_mine(refimpl_structure):
            assert refimpl_structure.name
    """)
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(STRUCTURES)} passed" in run.stdout


def test_structure_cases_are_hashable_and_equal_cases_hash_alike():
    from refimpl.testing.pytest_plugin import StructureCase

    assert len(set(STRUCTURES)) == len(STRUCTURES)  # usable as dict keys and in sets
    a = StructureCase("blocks", {"block_shape": (2, 2)})
    b = StructureCase("blocks", {"block_shape": (2, 2)})
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert hash(StructureCase("nm", {"n": 2, "m": 4})) == hash(StructureCase("nm", {"m": 4, "n": 2}))
    assert StructureCase("blocks", {"block_shape": (2, 4)}) != a
