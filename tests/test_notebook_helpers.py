"""refimpl.notebook (checkout root, figure directory) and refimpl.timing (median of timed calls)."""

from __future__ import annotations

import pytest

from refimpl import timing
from refimpl.notebook import figure_dir, repo_root
from refimpl.timing import median_seconds


def test_repo_root_finds_the_directory_holding_pyproject(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    deep = tmp_path / "notebooks" / "sub"
    deep.mkdir(parents=True)
    assert repo_root(deep) == tmp_path.resolve()
    monkeypatch.chdir(deep)
    assert repo_root() == tmp_path.resolve()


def test_repo_root_without_pyproject_is_the_start(tmp_path):
    # tmp_path lies under /tmp, which holds no pyproject.toml on any sane machine
    assert repo_root(tmp_path) == tmp_path.resolve()


def test_figure_dir_is_the_checkouts_figures_directory(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    assert figure_dir(smoke=False) == tmp_path.resolve() / "figures"
    assert (tmp_path / "figures").is_dir()
    assert figure_dir(smoke=False, root=tmp_path / "other") == tmp_path / "other" / "figures"
    assert (tmp_path / "other" / "figures").is_dir()


def test_smoke_figure_dir_is_a_new_temporary_directory_outside_the_checkout(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    first, second = figure_dir(smoke=True), figure_dir(smoke=True)
    assert first.is_dir() and second.is_dir() and first != second
    assert tmp_path.resolve() not in first.resolve().parents
    assert not (tmp_path / "figures").exists()


def test_median_seconds_warms_up_once_then_takes_the_median(monkeypatch):
    calls = []
    # a fake clock: timed call i lasts durations[i] seconds
    durations = [5.0, 1.0, 3.0, 100.0, 2.0]
    ticks = iter([t for d in durations for t in (0.0, d)])
    monkeypatch.setattr(timing.time, "perf_counter", lambda: next(ticks))
    assert median_seconds(lambda: calls.append(1), repeats=5) == 3.0
    assert len(calls) == 6  # one warm-up + five timed calls


@pytest.mark.parametrize(("repeats", "error"), [(0, ValueError), (2.0, TypeError), (True, TypeError)])
def test_median_seconds_rejects_bad_repeats(repeats, error):
    with pytest.raises(error, match="repeats"):
        median_seconds(lambda: None, repeats=repeats)
