"""Every notebook under notebooks/ runs top to bottom in smoke mode (REFIMPL_SMOKE=1).

Notebooks are jupytext ``py:percent`` sources (the paired ``.ipynb`` is derived from them); each is
converted with jupytext and executed with nbclient in a fresh kernel, from the notebooks/ directory. The
notebooks' ``parameters`` cell reads ``REFIMPL_SMOKE`` and shrinks the work so that CI stays fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.py"))
TIMEOUT_S = 600  # per cell; a smoke-mode notebook takes seconds


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks found in {NOTEBOOK_DIR}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes_in_smoke_mode(path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    # The kernel inherits the environment of this process.
    monkeypatch.setenv("REFIMPL_SMOKE", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = jupytext.read(path)
    tags = [cell.metadata.get("tags", []) for cell in notebook.cells]
    assert any("parameters" in t for t in tags), f"{path.name} has no cell tagged 'parameters'"
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    client.execute()  # raises CellExecutionError with the failing cell's traceback
    errors = [out for cell in notebook.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_paired_with_an_ipynb(path):
    jupytext = pytest.importorskip("jupytext")
    ipynb = path.with_suffix(".ipynb")
    assert ipynb.exists(), f"{path.name} has no paired {ipynb.name} (run: jupytext --to ipynb {path})"
    source = [c.source for c in jupytext.read(path).cells]
    paired = [c.source for c in jupytext.read(ipynb).cells]
    assert source == paired, f"{ipynb.name} is out of date with {path.name} (run: jupytext --sync {path})"
