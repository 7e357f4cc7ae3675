"""Choose each method's hyperparameter per structure on the VALIDATION split, for the accuracy curves.

Reads the finished runs of the selection sweeps ``paper_repro/sweeps/curves/select_<structure>.toml`` (in
``paper_repro/results/curves/select_<structure>/``) and, per structure and method, picks the candidate
with the highest validation accuracy after the run's last training epoch (6,000 held-out training
images, ``data.val_fraction = 0.1``, ``data.split_seed = 0``). The test accuracy is never looked at. Ties
go to the candidate listed first in the sweep file. Every method has the same selection budget: three
candidate runs per structure at one sparsity, seed 0.

Writes ``paper_repro/results/curves/selection.json``: per structure and method the chosen settings, the
validation accuracy of every candidate, and the sweep it came from. The curve sweeps
(``paper_repro/sweeps/curves/<structure>.toml``) use these settings; ``tests/test_curves.py`` checks
that they do.

Usage::

    python paper_repro/select_hyperparameters.py            # after the selection sweeps have finished
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SWEEPS = HERE / "sweeps" / "curves"
RESULTS = HERE / "results" / "curves"
#: LeNet-5's structures (conv2 + fc1), then LeNet-300-100 unstructured (every layer; ADMM-NN's Table 1).
STRUCTURES = ("unstructured", "filters", "channels", "shapes", "filters_shapes", "lenet300_unstructured")
#: Overrides every candidate of a selection sweep shares (the rest is what the candidate tries).
_SHARED = ("method", "name", "seed", "admm.constraints")

#: The curves' sparsity levels per structure: from "free" to "breaking" (accuracy drops > 2 points).
LEVELS = {"unstructured": [0.5, 0.8, 0.9, 0.95, 0.98, 0.99],
          "lenet300_unstructured": [0.5, 0.8, 0.9, 0.95, 0.98, 0.99]}
TITLES = {"filters_shapes": "filters + shapes", "lenet300_unstructured": "LeNet-300-100 unstructured"}
#: Minutes per 8-epoch run with 2 workers on 2 cores (measured), for the budget line of the curve sweeps.
MINUTES_PER_RUN = {"lenet300_unstructured": 1.0}
STRUCTURED_LEVELS = [0.3, 0.5, 0.7, 0.8, 0.9]
SEEDS = [0, 1]


def select(structure: str, results: Path = RESULTS) -> dict:
    """Per method, the best candidate of ``select_<structure>`` by final validation accuracy."""
    from refimpl.engine import load_sweep, run_status
    from refimpl.engine.results import final_val_accuracy

    sweep = load_sweep(SWEEPS / f"select_{structure}.toml")
    out_dir = results / f"select_{structure}"
    chosen: dict[str, dict] = {}
    for run in sweep.runs:  # in file order: the first of equals wins
        path = out_dir / "runs" / run.name
        if run_status(path) != "finished":
            raise SystemExit(f"{path} has not finished: run the selection sweep first "
                             f"(refimpl sweep {sweep.path.relative_to(HERE.parent)} --out "
                             f"{out_dir.relative_to(HERE.parent)})")
        report = json.loads((path / "report.json").read_text())
        val = final_val_accuracy(report)
        if val is None:
            raise SystemExit(f"{path}: no validation accuracy was logged (data.val_fraction = 0?)")
        method = run.config.method
        settings = {k: v for k, v in run.overrides.items() if k not in _SHARED}
        entry = chosen.setdefault(method, {"candidates": []})
        entry["candidates"].append({"run": run.name, "settings": settings, "val_acc": val})
        if "val_acc" not in entry or val > entry["val_acc"]:
            entry.update(run=run.name, settings=settings, val_acc=val)
    return {"sweep": str(sweep.path.relative_to(HERE.parent)), "methods": chosen}


def curve_sweep(structure: str, selection: dict) -> str:
    """The text of ``sweeps/curves/<structure>.toml``: every method at its chosen settings, every level."""
    import tomllib

    select_file = SWEEPS / f"select_{structure}.toml"
    select_data = tomllib.loads(select_file.read_text())
    constraints = select_data["set"]["admm.constraints"]
    minutes = MINUTES_PER_RUN.get(structure, 4.5)
    levels = LEVELS.get(structure, STRUCTURED_LEVELS)
    methods = selection[structure]["methods"]
    runs = len(levels) * len(SEEDS) * len(methods)
    tables = ",\n    ".join(
        "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in t.items()) + " }"
        for t in constraints)
    lines = [
        f"# Accuracy-sparsity curve, {TITLES.get(structure, structure)} (issue: StructADMM as curves).",
        "# WRITTEN BY paper_repro/select_hyperparameters.py --write-sweeps from paper_repro/results/curves/",
        "# selection.json: every method at the settings it won on the validation split "
        f"(select_{structure}.toml).",
        f"#   refimpl sweep paper_repro/sweeps/curves/{structure}.toml --out "
        f"paper_repro/results/curves/{structure} --workers 2",
        f'name = "curve-{structure.replace("_", "-")}"',
        f'budget = "{runs} runs x 8 epochs on 54,000 images (~{minutes:g} min each with 2 workers on 2 '
        f'cores): ~{round(runs * minutes / 2)} min"',
        f'base = "{select_data["base"]}"',
        "# Seed 0 at every level first, every method at a point next to each other: a sweep stopped part-way",
        "# has whole seed-0 curves of every method.",
        'order = "interleaved"',
        'name_format = "{variant}-{sparsity}-s{seed}"',
        "",
        "[set]",
        f'"admm.constraints" = [\n    {tables},\n]'
        "   # each run's level comes from the sparsity shortcut below",
        "",
        "[grid]",
        f"seed = {json.dumps(SEEDS)}",
        f"sparsity = {json.dumps(levels)}",
    ]
    for method, entry in methods.items():
        settings = {"method": method, **entry["settings"]}
        body = ", ".join(f"{json.dumps(k) if '.' in k else k} = {json.dumps(v)}" for k, v in settings.items())
        lines += ["", "[[variants]]", f'name = "{method}"',
                  f"set = {{ {body} }}   # won {entry['run']} (val {entry['val_acc']:.4f})"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", nargs="+", choices=STRUCTURES, default=list(STRUCTURES))
    parser.add_argument("--write-sweeps", action="store_true",
                        help="also (re)write sweeps/curves/<structure>.toml from the selection")
    args = parser.parse_args(argv)
    path = RESULTS / "selection.json"
    selection = json.loads(path.read_text()) if path.is_file() else {}
    for structure in args.structures:
        selection[structure] = select(structure)
        for method, entry in selection[structure]["methods"].items():
            tried = ", ".join(f"{c['run']} {c['val_acc']:.4f}" for c in entry["candidates"])
            print(f"{structure:>15} {method:<10} -> {entry['run']} (val {entry['val_acc']:.4f}; {tried})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(selection, indent=2) + "\n")
    print(f"wrote {path}")
    if args.write_sweeps:
        for structure in args.structures:
            (SWEEPS / f"{structure}.toml").write_text(curve_sweep(structure, selection))
            print(f"wrote {SWEEPS / f'{structure}.toml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
