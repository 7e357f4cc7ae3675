import os

import numba
import pytest
from threadpoolctl import threadpool_info

from refimpl.threads import DEFAULT_ENVIRONMENT, configure_defaults, thread_info, thread_limit


def _blas_threads():
    return [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]


def test_thread_limit_caps_both_pools_and_restores_them():
    before_numba, before_blas = numba.get_num_threads(), _blas_threads()
    with thread_limit(1):
        assert numba.get_num_threads() == 1
        assert all(n == 1 for n in _blas_threads())
    assert numba.get_num_threads() == before_numba
    assert _blas_threads() == before_blas


def test_thread_limit_zero_changes_nothing():
    before = numba.get_num_threads()
    with thread_limit(0):
        assert numba.get_num_threads() == before


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_thread_limit_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="threads"):
        with thread_limit(bad):
            pass


def test_configure_defaults_never_overrides_the_user(monkeypatch):
    key = next(iter(DEFAULT_ENVIRONMENT))
    monkeypatch.setenv(key, "mine")
    configure_defaults()
    assert os.environ[key] == "mine"
    monkeypatch.delenv(key)
    configure_defaults()
    assert os.environ[key] == DEFAULT_ENVIRONMENT[key]


def test_thread_info_reports_counts():
    info = thread_info()
    assert info["numba"] == numba.get_num_threads()
    assert info["cpu_count"] == os.cpu_count()
