r"""Golden vectors: refimpl's answers as ``.npy`` files and one ``manifest.json``, for any language.

``refimpl oracle generate DIR`` (:func:`generate`) writes the cases of :mod:`refimpl.testing.golden_cases`;
another implementation (C++, JAX, Julia, Rust ...) reads them with any ``.npy`` reader, runs itself on the
inputs and writes its outputs under the manifest's names; ``refimpl oracle check DIR --results OUT``
(:func:`check_results`) compares and prints one row per case. The layout::

    DIR/manifest.json                 the cases (below)
    DIR/SHA256SUMS                    sha256 of every other file (``sha256sum -c SHA256SUMS``)
    DIR/inputs/<case>/<input>.npy     the inputs of each case
    DIR/expected/<case>/<output>.npy  refimpl's outputs
    OUT/<case>/<output>.npy           what the implementation under test writes (same names, same dtype)

``manifest.json`` holds ``format`` (``"refimpl-golden"``), ``version`` (1), ``conventions`` (layouts,
counting and tie rules, the tolerance rule in words) and ``cases``, a list of objects::

    {"name": "filters-ties-f32", "kind": "projection", "function": "project_filters",
     "rule": "keep the k filters ...; ties ...: the lower flat index is kept",
     "params": {"structure": "filters", "keep": 3},
     "inputs":  {"w": {"file": "inputs/filters-ties-f32/w.npy", "dtype": "float32", "shape": [6, 3, 2, 2]}},
     "outputs": {"z": {"file": "expected/filters-ties-f32/z.npy", "dtype": "float32", "shape": [6, 3, 2, 2],
                       "rtol": 0.0, "atol": 0.0}}}

An output passes when its dtype and shape are the expected ones and every entry satisfies
:math:`|got - expected| \le atol + rtol\,|expected|` (:func:`~refimpl.testing.compare.compare_arrays`).
The committed set (``tests/golden/v1/``) is what ``refimpl oracle generate`` writes, byte for byte; a test
checks both its checksums and that regenerating it reproduces it exactly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from refimpl.testing.compare import Mismatch, compare_arrays

__all__ = ["FORMAT", "VERSION", "CaseResult", "GoldenReport", "check_results", "generate", "load_manifest"]

FORMAT = "refimpl-golden"
VERSION = 1

CONVENTIONS = {
    "arrays": ".npy (NumPy format 1.0), little-endian, C order; float32/float64/int64/bool",
    "layouts": "conv weights (F, C, KH, KW), activations NCHW, linear weights (out, in) (PyTorch's); "
    "the GEMM view of a weight is w.reshape(F, C*KH*KW)",
    "count": "sparsity=s prunes round(s*n) of n groups, round-half-to-even (round(2.5) = 2, round(3.5) = 4); "
    "keep=k keeps k",
    "ties": "among equal scores the group with the lower flat index is kept; dropped entries are +0.0, kept "
    "entries are copied bit for bit",
    "tolerance": "an output passes when dtype and shape match and |got - expected| <= atol + rtol*|expected| "
    "for every entry; NaN matches only NaN",
    "results": "write each output of each case to RESULTS/<case name>/<output name>.npy, in the expected "
    "dtype and shape",
    "kinds": {
        "projection": "z = project_<structure>(w, **params) (docs/ALGORITHMS.md, section 2)",
        "layer": "out = forward(*inputs except dout, **params); the gradients = backward(dout); BatchNorm's "
        "running_mean/running_var outputs are the inputs after the forward updated them",
        "admm_step": "W' = W - lr*(grad + rho*(W - Z + U)); Z' = projection of W' + U; U' = U + W' - Z'",
        "compaction": "remove dead filters and unused channels, folding constant outputs into biases",
    },
}


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(array, order="C")  # keeps a 0-d array (a loss) 0-d
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    with open(path, "wb") as f:
        np.lib.format.write_array(f, arr, version=(1, 0), allow_pickle=False)


def _entry(rel: str, array: np.ndarray) -> dict:
    return {"file": rel, "dtype": str(array.dtype), "shape": list(array.shape)}


def generate(directory) -> Path:
    """Write every golden case into ``directory`` (new or empty); return the path of ``manifest.json``.

    Raises
    ------
    ValueError
        ``directory`` exists and is not an empty directory.
    """
    from refimpl.testing.golden_cases import golden_cases

    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ValueError(
            f"DIR must be a new or empty directory, got {str(root)!r} (it holds files; "
            "choose another directory or empty it)"
        )
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    for case in golden_cases():
        entry = {
            "name": case.name,
            "kind": case.kind,
            "function": case.function,
            "rule": case.rule,
            "params": case.params,
            "inputs": {},
            "outputs": {},
        }
        for key, array in case.inputs.items():
            rel = f"inputs/{case.name}/{key}.npy"
            _save(root / rel, array)
            entry["inputs"][key] = _entry(rel, np.asarray(array))
        for key, array in case.outputs.items():
            rel = f"expected/{case.name}/{key}.npy"
            array = np.asarray(array)
            _save(root / rel, array)
            rtol, atol = case.tolerances.get(key, (0.0, 0.0))
            entry["outputs"][key] = {**_entry(rel, array), "rtol": float(rtol), "atol": float(atol)}
        cases.append(entry)
    manifest = {"format": FORMAT, "version": VERSION, "conventions": CONVENTIONS, "cases": cases}
    path = root / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    sums = "".join(
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}\n" for p in files
    )
    (root / "SHA256SUMS").write_text(sums, encoding="utf-8")
    return path


def load_manifest(directory) -> dict:
    """Read and validate ``directory/manifest.json``; raise ``ValueError`` with one line if it is unusable."""
    root = Path(directory)
    path = root / "manifest.json"
    if not root.is_dir():
        raise ValueError(f"DIR must be a directory holding manifest.json, got {str(root)!r}")
    if not path.is_file():
        raise ValueError(
            f"no manifest.json in {str(root)!r} (write a golden set with: refimpl oracle generate DIR)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: not a refimpl golden manifest (format must be {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise ValueError(
            f"{path}: version {manifest.get('version')!r} is not supported (this refimpl reads "
            f"version {VERSION})"
        )
    cases = manifest.get("cases")
    if not isinstance(cases, list) or not all(
        isinstance(c, dict) and "name" in c and "outputs" in c for c in cases
    ):
        raise ValueError(f"{path}: 'cases' must be a list of objects with 'name' and 'outputs'")
    return manifest


@dataclass
class CaseResult:
    """Outcome of one case: ``passed`` and, when not, the first differing output and its property."""

    name: str
    kind: str
    rule: str
    mismatch: Mismatch | None = None
    violated: str = ""
    """``missing``, ``unreadable``, ``shape``, ``dtype``, ``values``, or for a projection the property of
    :mod:`refimpl.testing.conformance` that the answer violates (``count``, ``tie order``, ...)."""
    detail: str = ""

    @property
    def passed(self) -> bool:
        """True when every output of the case matched."""
        return self.mismatch is None


@dataclass
class GoldenReport:
    """Outcome of :func:`check_results`: one :class:`CaseResult` per case and a table as ``str()``."""

    results: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every case passed."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        """The failing cases, in manifest order."""
        return [r for r in self.results if not r.passed]

    def table(self) -> str:
        """One row per case: name, PASS/FAIL, output, property, worst entry, expected, got."""
        rows = [("case", "result", "output", "property", "worst entry", "expected", "got")]
        for r in self.results:
            if r.passed:
                rows.append((r.name, "pass", "", "", "", "", ""))
                continue
            m = r.mismatch
            index = "" if m.index is None else str(m.index)
            rows.append((r.name, "FAIL", m.name, r.violated, index, _short(m.expected), _short(m.got)))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def __str__(self) -> str:
        n_pass = sum(r.passed for r in self.results)
        text = [self.table(), "", f"{n_pass} of {len(self.results)} cases passed"]
        for r in self.failures:
            text.append(f"FAIL {r.name} ({r.rule}): {r.violated}: {r.detail or r.mismatch.message}")
        return "\n".join(text)


def _short(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _load(path: Path):
    return np.load(path, allow_pickle=False)


def check_results(golden_dir, results_dir) -> GoldenReport:
    """Compare ``results_dir/<case>/<output>.npy`` with the golden set in ``golden_dir``.

    Raises ``ValueError`` (one line) for an unusable ``golden_dir`` or a ``results_dir`` that is not a
    directory; a missing or unreadable result file is a failure of its case, not an error.
    """
    root, out = Path(golden_dir), Path(results_dir)
    manifest = load_manifest(root)
    if not out.is_dir():
        raise ValueError(f"--results must be a directory of results, got {str(out)!r}")
    report = GoldenReport()
    for case in manifest["cases"]:
        result = CaseResult(case["name"], case.get("kind", ""), case.get("rule", ""))
        report.results.append(result)
        for key, spec in case["outputs"].items():
            expected = _load(root / spec["file"])
            path = out / case["name"] / f"{key}.npy"
            if not path.is_file():
                result.mismatch = Mismatch(key, "missing", f"no file {path}", expected=str(expected.shape))
                result.violated = "missing"
                break
            try:
                got = _load(path)
            except (ValueError, OSError, EOFError) as err:
                result.mismatch = Mismatch(key, "unreadable", f"{path}: {err}")
                result.violated = "unreadable"
                break
            # A projection's output is exact to the bit, sign of zero included (docs/ALGORITHMS.md)
            mismatch = compare_arrays(
                key, expected, got, rtol=spec.get("rtol", 0.0), atol=spec.get("atol", 0.0),
                signed_zeros=case.get("kind") == "projection",
            )
            if mismatch is not None:
                result.mismatch = mismatch
                result.violated = mismatch.property
                if case.get("kind") == "projection" and mismatch.property == "values":
                    result.violated, result.detail = _diagnose(root, out, case, expected, got)
                break
    return report


def _diagnose(root: Path, out: Path, case: dict, expected: np.ndarray, got: np.ndarray) -> tuple[str, str]:
    """Name the projection property a wrong answer violates (count, in the set, optimal, tie order ...)."""
    from refimpl.testing.conformance import diagnose_projection

    params = dict(case["params"])
    structure = params.pop("structure")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    if structure == "unstructured_global":
        # The global projection is the unstructured one of all layers flattened and concatenated in order.
        ws = [_load(root / spec["file"]) for spec in case["inputs"].values()]
        dtype = np.result_type(*ws)
        w = np.concatenate([a.ravel() for a in ws]).astype(dtype)[None, :]
        try:
            parts = [
                (_load(root / spec["file"]), _load(out / case["name"] / f"{name}.npy"))
                for name, spec in case["outputs"].items()
            ]
        except (ValueError, OSError, EOFError):
            return "values", ""
        expected = np.concatenate([e.ravel() for e, _ in parts]).astype(dtype)[None, :]
        got = np.concatenate([g.ravel() for _, g in parts])[None, :]
        structure = "unstructured"
    else:
        w = _load(root / case["inputs"]["w"]["file"])
    tie_free = not ("ties" in case["name"] or "zeros" in case["name"])
    try:
        found = diagnose_projection(structure, w, got.astype(w.dtype), expected, params, tie_free=tie_free)
    except (ValueError, TypeError) as err:
        return "values", f"could not diagnose: {err}"
    if not found:
        return "values", ""
    return found[0][0], found[0][1]
