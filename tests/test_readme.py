"""The README's code must run as printed, and its set-up commands must be the ones CI uses."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    assert [c.strip() for c in commands] == [
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/refimpl demo",
        'python3 -m venv .venv && .venv/bin/pip install -e ".[test]" && .venv/bin/python -m pytest',
    ]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "grep -m1 -E '^python3 -m venv \\.venv && .*pytest' README.md" in ci


@pytest.mark.slow
def test_readme_tour_runs(monkeypatch, tmp_path):
    """Execute the tour's code blocks in order, in one namespace (as a reader would paste them)."""
    monkeypatch.chdir(tmp_path)
    blocks = _python_blocks()
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        if "my_filter_projection" in block:
            # The oracle example: run it with refimpl's own projection standing in for "yours".
            from refimpl.projections import project_filters

            namespace["my_filter_projection"] = project_filters
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["report"].passed
    assert namespace["Z"].shape == namespace["W"].shape
    assert set(namespace["engine"].formats) == {"conv1", "conv2", "fc1", "fc2"}
