"""Golden vectors: the committed set is intact and reproducible; ``refimpl oracle check`` passes an
independent NumPy implementation (``tests/foreign_numpy.py``) and names the property of each planted bug."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from refimpl.cli import main
from refimpl.testing.golden import check_results, generate, load_manifest

sys.path.insert(0, str(Path(__file__).parent))
from foreign_numpy import Bugs, write_results  # noqa: E402

GOLDEN = Path(__file__).parent / "golden" / "v1"
#: sha256 of tests/golden/v1/SHA256SUMS: a change to the committed set must update this line deliberately.
SUMS_DIGEST = "0f88904008a74175bc6c5eb19c6b39b1b3367f63a5fd762543de01d0586748e7"


def test_committed_set_matches_its_checksums():
    sums = (GOLDEN / "SHA256SUMS").read_bytes()
    assert hashlib.sha256(sums).hexdigest() == SUMS_DIGEST
    listed = {}
    for line in sums.decode().splitlines():
        digest, name = line.split("  ", 1)
        listed[name] = digest
    on_disk = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((GOLDEN / name).read_bytes()).hexdigest() == digest, name
    size = sum((GOLDEN / name).stat().st_size for name in listed)
    assert size <= 5 * 2**20


def test_regenerating_reproduces_the_committed_set_exactly(tmp_path):
    generate(tmp_path / "v1")
    regenerated = {
        p.relative_to(tmp_path / "v1").as_posix(): p.read_bytes()
        for p in (tmp_path / "v1").rglob("*")
        if p.is_file()
    }
    committed = {p.relative_to(GOLDEN).as_posix(): p.read_bytes() for p in GOLDEN.rglob("*") if p.is_file()}
    assert regenerated.keys() == committed.keys()
    assert [name for name in committed if committed[name] != regenerated[name]] == []


def test_manifest_is_self_describing_and_readable_without_refimpl():
    manifest = json.loads((GOLDEN / "manifest.json").read_text())
    assert manifest["format"] == "refimpl-golden" and manifest["version"] == 1
    assert {"count", "ties", "tolerance", "results"} <= set(manifest["conventions"])
    kinds = {c["kind"] for c in manifest["cases"]}
    assert kinds == {"projection", "layer", "admm_step", "compaction"}
    structures = {c["params"]["structure"] for c in manifest["cases"] if c["kind"] == "projection"}
    from refimpl.projections import PROJECTIONS

    assert structures == set(PROJECTIONS) | {"unstructured_global"}
    layers = {c["params"]["layer"] for c in manifest["cases"] if c["kind"] == "layer"}
    assert layers == {
        "conv2d",
        "linear",
        "maxpool2d",
        "avgpool2d",
        "batchnorm2d",
        "relu",
        "softmax_cross_entropy",
    }
    for case in manifest["cases"]:
        assert case["rule"] and case["outputs"]
        for spec in list(case["inputs"].values()) + list(case["outputs"].values()):
            header = (GOLDEN / spec["file"]).read_bytes()[:10]
            assert header[:6] == b"\x93NUMPY" and header[6:8] == b"\x01\x00"  # plain .npy, format 1.0
            array = np.load(GOLDEN / spec["file"], allow_pickle=False)
            assert str(array.dtype) == spec["dtype"] and list(array.shape) == spec["shape"]
    names = [c["name"] for c in manifest["cases"]]
    assert len(names) == len(set(names))
    for tag in ("ties", "halfway-down", "halfway-up", "keep-none", "keep-all", "zeros"):
        assert any(f"filters-{tag}-f32" == n for n in names)


def test_the_foreign_implementation_passes(tmp_path, capsys):
    write_results(GOLDEN, tmp_path)
    assert main(["oracle", "check", str(GOLDEN), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "203 of 203 cases passed" in out and "FAIL" not in out


@pytest.mark.parametrize(
    ("bugs", "prop", "cases", "output"),
    [
        (Bugs(ties="higher"), "tie order", "filters-ties-f32", "z"),
        (Bugs(ties="topk"), "tie order", "filters-ties-f32", "z"),
        (Bugs(count="floor"), "count", "filters-halfway-up-f32", "z"),
        (Bugs(float64_output=True), "dtype", "filters-ties-f32", "z"),
        (Bugs(nm_axis="cols"), "in the set", "nm-2of4-conv-f32", "z"),
        (Bugs(conv_dw="transposed"), "values", "conv2d-s1-p0-f64", "dw"),
        (Bugs(padding=1), "shape", "conv2d-s2-p1-f64", "out"),
        # equal as numbers, wrong in the sign of zero: only the projections' bit-for-bit rule catches it
        (Bugs(mask_product=True), "kept unchanged, dropped exactly 0", "filters-ties-f32", "z"),
    ],
)
def test_planted_bugs_are_reported_with_the_right_property(tmp_path, capsys, bugs, prop, cases, output):
    write_results(GOLDEN, tmp_path, bugs)
    report = check_results(GOLDEN, tmp_path)
    failed = {r.name: r for r in report.failures}
    assert cases in failed, str(report)
    assert failed[cases].violated == prop and failed[cases].mismatch.name == output
    assert {r.violated for r in report.failures} <= {prop, "count", "in the set"}  # nothing unrelated
    assert main(["oracle", "check", str(GOLDEN), "--results", str(tmp_path)]) == 1
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith(cases + " "))
    assert "FAIL" in row and prop in row and output in row.split()
    if prop in ("values", "tie order"):
        assert "worst entry" in table and "expected" in table


def test_report_names_the_worst_entry_with_expected_and_got(tmp_path):
    write_results(GOLDEN, tmp_path, Bugs(conv_dw="transposed"))
    result = next(r for r in check_results(GOLDEN, tmp_path).failures if r.name == "conv2d-s1-p0-f64")
    m = result.mismatch
    index = m.index
    expected = np.load(GOLDEN / "expected" / "conv2d-s1-p0-f64" / "dw.npy")
    got = np.load(tmp_path / "conv2d-s1-p0-f64" / "dw.npy")
    assert m.expected == expected[index] and m.got == got[index]
    assert np.argmax(np.abs(got - expected)) == np.ravel_multi_index(index, expected.shape)


def test_missing_and_unreadable_results_fail_their_case(tmp_path):
    write_results(GOLDEN, tmp_path)
    (tmp_path / "relu-zeros-f32" / "dx.npy").unlink()
    (tmp_path / "linear-batch1-f64" / "out.npy").write_bytes(b"not npy")
    failed = {r.name: r.violated for r in check_results(GOLDEN, tmp_path).failures}
    assert failed == {"relu-zeros-f32": "missing", "linear-batch1-f64": "unreadable"}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["oracle", "check", "{tmp}/none", "--results", "{tmp}"],
            "DIR must be a directory holding manifest.json",
        ),
        (["oracle", "check", "{tmp}", "--results", "{tmp}"], "no manifest.json in"),
        (["oracle", "check", str(GOLDEN), "--results", "{tmp}/none"], "--results must be a directory"),
        (["oracle", "generate", str(GOLDEN)], "DIR must be a new or empty directory"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("refimpl oracle: error: ") and message in err
    with pytest.raises(Exception, match=message.split(" ")[0]):  # --debug: the traceback instead
        main(["--debug", *argv])


def test_bad_manifests_are_named(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(
        json.dumps({"format": "refimpl-golden", "version": 2, "cases": []})
    )
    with pytest.raises(ValueError, match="version 2 is not supported"):
        load_manifest(tmp_path)


def test_cli_help_lists_the_oracle():
    out = subprocess.run(
        [sys.executable, "-m", "refimpl.cli", "--help"], capture_output=True, text=True
    ).stdout
    assert "oracle" in out
