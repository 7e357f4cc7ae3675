"""Drift guard: what the notebooks and docstrings cite exists, and every figure has a named producer.

* **Cited files.** Every repository path that a notebook (``notebooks/*.py``, prose and code) or a module
  of ``refimpl/`` (docstrings and comments) mentions — ``refimpl/...``, ``notebooks/...``, ``tests/...``,
  ``paper_repro/...``, ``docs/...``, ``figures/...``, ``.ci/...`` — exists in the checkout (a notebook may
  be named without its ``.py``/``.ipynb``); a document named bare (``ALGORITHMS.md``) exists at the top,
  in ``docs/`` or in ``paper_repro/``. Placeholders such as ``<structure>`` are skipped, and so are
  the outputs a notebook or script says it writes or reads *if present*: those are listed in
  :data:`GENERATED` with the reason.
* **Figures.** Every file in ``figures/`` is written by a script or notebook that names it: its file
  name appears in exactly the sources that produce it (``notebooks/*.py``, ``paper_repro/**/*.py``), and
  the test reports which. A figure nobody produces (left over from a renamed notebook) fails.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP_DIRS = ("refimpl", "notebooks", "tests", "paper_repro", "docs", "figures", ".ci")
# A repository path: a top-level directory, then path characters; it ends before punctuation.
DOC_RE = re.compile(r"(?<![\w./-])[A-Z][A-Z_]*\.md\b")  # ALGORITHMS.md, README.md, ...
DOC_DIRS = ("", "docs", "paper_repro")
PATH_RE = re.compile(r"(?<![\w./-])(?:%s)/[\w./<>*-]*[\w/>*]" % "|".join(re.escape(d) for d in TOP_DIRS))

#: Cited paths that are outputs of a run, not committed files, with why they may be absent.
GENERATED = {
    "paper_repro/results/lenet5_fashion_dense.npz":
        "weights written by paper_repro/lenet5_fashion_dense.py; notebook 01 falls back to a random layer",
    "paper_repro/results/guo":
        "written by the sweeps of paper_repro/sweeps/guo when they run; notebook 05 reads what has finished "
        "and prints the commands otherwise",
}


def _sources() -> list[Path]:
    files = sorted((ROOT / "notebooks").glob("*.py")) + sorted((ROOT / "refimpl").rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def _exists(cited: str) -> bool:
    if cited.startswith("*"):  # a bare document name
        return any((ROOT / d / cited[1:]).is_file() for d in DOC_DIRS)
    path = ROOT / cited.rstrip("/")
    if path.exists():
        return True
    # a notebook named by its stem (notebooks/00_from_scratch) is its jupytext pair
    return cited.startswith("notebooks/") and (path.with_suffix(".py").exists() or
                                               path.with_suffix(".ipynb").exists())


def cited_paths(text: str) -> set[str]:
    """The repository paths cited in ``text``, without placeholders or glob patterns."""
    found = {f"*{name}" for name in DOC_RE.findall(text)}  # a bare document name, looked up in DOC_DIRS
    for match in PATH_RE.finditer(text):
        cited = match.group(0).rstrip(".")
        if any(ch in cited for ch in "<>*"):
            continue  # a placeholder (<structure>) or a pattern (*.toml): not one file
        found.add(cited)
    return found


def test_the_path_pattern():
    text = ("see `refimpl/prune/admm.py`, notebooks/00_from_scratch and docs/GLOSSARY.md. Not "
            "paper_repro/sweeps/curves/<structure>.toml nor myrefimpl/x.py; (tests/test_admm.py)")
    assert cited_paths(text) == {"refimpl/prune/admm.py", "notebooks/00_from_scratch", "docs/GLOSSARY.md",
                                 "tests/test_admm.py"}
    assert cited_paths("(COURSE.md, section 2) and README.md") == {"*COURSE.md", "*README.md"}
    assert _exists("notebooks/00_from_scratch") and not _exists("notebooks/no_such_notebook")
    assert _exists("*COURSE.md") and _exists("*README.md") and not _exists("*NO_SUCH.md")


@pytest.mark.parametrize("source", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_file_exists(source):
    missing = sorted(c for c in cited_paths(source.read_text(encoding="utf-8"))
                     if c not in GENERATED and not _exists(c))
    assert not missing, f"{source.relative_to(ROOT)} cites files that do not exist: {missing}"


def _producers(name: str) -> list[str]:
    candidates = sorted((ROOT / "notebooks").glob("*.py")) + sorted((ROOT / "paper_repro").rglob("*.py"))
    return [str(p.relative_to(ROOT)) for p in candidates if name in p.read_text(encoding="utf-8")]


FIGURES = sorted(p.name for p in (ROOT / "figures").iterdir() if p.is_file()) if (ROOT / "figures").is_dir() \
    else []


def test_there_are_figures():
    assert FIGURES


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_has_a_producer(name):
    producers = _producers(name)
    assert producers, (f"figures/{name} is written by no notebook or paper_repro script (none names it): "
                       "delete it or name its producer")
