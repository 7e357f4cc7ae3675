"""The project's design notes live in docs/, and every docs/ path cited anywhere in the repository exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITATION = re.compile(r"docs/[A-Za-z0-9_./-]*[A-Za-z0-9_]")
BARE = re.compile(r"(?<![\w/])(ALGORITHMS|STYLE|ARCHITECTURE)\.md")


def _tracked_text_files():
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for name in listed:
        path = ROOT / name
        if path.suffix in {".py", ".md", ".ipynb", ".toml", ".txt", ".json", ""} and path.is_file():
            try:
                yield name, path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue


def test_the_design_notes_exist():
    for name in ("ALGORITHMS.md", "ARCHITECTURE.md", "STYLE.md"):
        assert (ROOT / "docs" / name).is_file()


def test_every_cited_docs_path_exists_and_no_bare_citation_is_left():
    """Tracked files only (what a checkout holds); the library, notebooks, scripts and README cite docs/."""
    missing, bare = [], []
    for name, text in _tracked_text_files():
        for cited in set(CITATION.findall(text)):
            if not (ROOT / cited).exists():
                missing.append(f"{name}: {cited}")
        # Inside docs/ the notes name each other bare; tests may hold the names in patterns.
        if BARE.search(text) and not name.startswith(("docs/", "tests/")):
            bare.append(name)
    assert missing == [], missing
    assert bare == [], f"cite the design notes as docs/<NAME>.md: {bare}"


def test_the_readme_layout_names_the_real_top_level_packages():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout") :]
    layout = layout[: layout.index("\n## ", 3)]
    packages = sorted(
        p.name for p in (ROOT / "refimpl").iterdir() if p.is_dir() and (p / "__init__.py").is_file()
    )
    for package in packages:
        assert f"refimpl/{package}/" in layout, f"README's Layout does not list refimpl/{package}/"
    assert "docs/" in layout
