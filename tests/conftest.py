"""Shared test configuration: Hypothesis profiles and the torch / data requirements.

Hypothesis profiles (select with ``REFIMPL_HYPOTHESIS_PROFILE``):

* ``ci`` (default): a fast run, enough examples to catch the usual mistakes;
* ``thorough``: at least 10,000 examples per property (a long run, before a release); the projection
  properties run in two processes with pytest-xdist (README, "Testing")::

      REFIMPL_HYPOTHESIS_PROFILE=thorough python -m pytest -n 2 tests/test_projections.py tests/test_unify.py

* ``dev``: very few examples, for quick edits.

Per example, a thorough run is mostly Hypothesis drawing the inputs, so the tests build their strategies
once (module-level, ``functools.lru_cache``) instead of per example, and draw only valid cases instead of
rejecting most with ``assume``.

``REFIMPL_REQUIRE_TORCH=1`` turns "PyTorch is not installed" from a skip into a failure, and
``REFIMPL_REQUIRE_DATA=1`` does the same for tests that need a real dataset on disk: CI sets both so that
nothing it is meant to check is silently skipped.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "thorough", max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.register_profile("dev", max_examples=10, deadline=None)
settings.load_profile(os.environ.get("REFIMPL_HYPOTHESIS_PROFILE", "ci"))


def _required(var: str) -> bool:
    return os.environ.get(var, "") not in ("", "0")


@pytest.fixture(scope="session")
def torch():
    """The torch module; skips (or fails under REFIMPL_REQUIRE_TORCH=1) when it is missing."""
    try:
        import torch as _torch
    except ImportError:
        if _required("REFIMPL_REQUIRE_TORCH"):
            pytest.fail("REFIMPL_REQUIRE_TORCH=1 but torch cannot be imported")
        pytest.skip("torch is not installed (pip install torch==2.13.0 for the CPU build)")
    _torch.set_default_dtype(_torch.float64)
    return _torch


def require_dataset(name: str):
    """Load dataset ``name``; skip (or fail under REFIMPL_REQUIRE_DATA=1) when it is not on disk."""
    from refimpl.data import DatasetNotFoundError, load_dataset

    try:
        return load_dataset(name, download=False)
    except DatasetNotFoundError as err:
        if _required("REFIMPL_REQUIRE_DATA"):
            pytest.fail(f"REFIMPL_REQUIRE_DATA=1 but {name} is missing: {err}")
        pytest.skip(f"{name} is not on disk: {err}")


@pytest.fixture
def rng():
    """A fresh, seeded generator per test (tests never share random state)."""
    return np.random.default_rng(12345)


@pytest.fixture(params=["numba", "numpy"])
def engine(request):
    """Run a test once per kernel engine (numba and its NumPy twin)."""
    return request.param
