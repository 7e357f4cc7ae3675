"""The report of a finished run: accuracies per phase, parameters, MACs, sparsity, storage, per-layer tables.

Storage is counted in bits under the block encoding of :mod:`refimpl.metrics` (free, unified and pruned
blocks of each weight's constraint ``block_shape``, a block-kind map), at float32 and float16 values, so
runs of different methods (pruning, weight unification) can be compared at equal storage.

Written as ``report.json`` (everything), ``report.txt`` (the same for a reader) and ``results.json`` (the
headline numbers), together with ``model_masked.npz`` and ``masks.npz``. ``refimpl results`` and every
notebook read these files (:mod:`refimpl.engine.results`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from refimpl._io import atomic_write_text
from refimpl.engine.artifacts import finite, save_npz, write_json
from refimpl.engine.phases import PHASES

__all__ = ["write_report"]


def _accuracies(run, phases) -> dict[str, float | None]:
    """Test accuracy after the last phase of each kind, keyed as :data:`PHASES` says; plus the final one."""
    done = run.state["phases"]
    last = {PHASES[p.kind].accuracy: done[p.name]["metrics"].get("test_acc") for p in phases}
    keys = [kind.accuracy for kind in PHASES.values() if kind.accuracy and kind.accuracy != "compact"]
    by_key: dict[str, float | None] = {key: last.get(key) for key in keys}
    last_weights = [p for p in phases if p.kind != "compact"][-1]
    by_key["masked"] = done[last_weights.name]["metrics"]["test_acc"]  # the final weights, whatever made them
    by_key["compact"] = last.get("compact")
    return by_key


def _phase_row(phase, record: dict) -> dict:
    """One row of the report's phase table (with the per-epoch curves where they were recorded)."""
    metrics = record["metrics"]
    row = {"name": phase.name, "kind": phase.kind, "epochs": phase.epochs,
           "test_acc": metrics.get("test_acc"), "seconds": record["seconds"]}
    for curve in ("test_acc_curve", "val_acc_curve"):
        if curve in metrics:
            row[curve] = metrics[curve]
    return row


def storage_block_shapes(constraints) -> dict[str, tuple[int, int]]:
    """Return the block shape of each constrained weight's storage encoding: its constraint's ``block_shape``.

    Weights whose constraints have none (unstructured, filters, ...) are encoded entry by entry (1 x 1).
    """
    shapes: dict[str, tuple[int, int]] = {}
    for c in constraints:
        if "block_shape" in c.params and c.param not in shapes:
            shapes[c.param] = tuple(int(v) for v in c.params["block_shape"])
    return shapes


def _storage(run, masks) -> tuple[dict, str]:
    """Return the report's ``storage`` entry (bits at float32 and float16, per parameter) and its text."""
    from refimpl.metrics import format_storage, storage_report, storage_totals

    shapes = storage_block_shapes(run.constraints)
    rows = storage_report(run.model, masks or None, shapes, value_bits=32)
    totals = storage_totals(rows)
    half = storage_totals(storage_report(run.model, masks or None, shapes, value_bits=16))
    layers = [{k: list(v) if isinstance(v, tuple) else finite(v) for k, v in row.items()} for row in rows]
    entry = {"bits": totals["bits"], "bits_fp16": half["bits"], "dense_bits": totals["dense_bits"],
             "compression": finite(totals["ratio"]), "compression_fp16": finite(half["ratio"]),
             "unified_blocks": totals["unified_blocks"], "pruned_blocks": totals["pruned_blocks"],
             "layers": layers}
    ratio = "inf" if entry["compression_fp16"] is None else f"{entry['compression_fp16']:.2f}x"
    text = ("\n\nstorage in bits (float32 values; a unified block: one magnitude + one sign bit per weight; "
            "index: the block-kind map)\n" + format_storage(rows)
            + f"\nwith float16 values: {half['bits']:,} bits in all ({ratio} smaller than dense float16)")
    return entry, text


def write_report(run, phases, seconds: float) -> dict:
    """Write the run's report files and final weights; return the report (see the module docstring)."""
    from refimpl.metrics import format_report, layer_report, report_json, report_totals
    from refimpl.prune import masks_sparsity

    c, out, masks = run.config, run.out, run.masks
    masked_rows = layer_report(run.model, masks or None)
    totals = report_totals(masked_rows)
    accuracy = _accuracies(run, phases)
    # model_masked.npz with the masks applied (they already are; this makes the file evidently so).
    masked_state = run.model.state_dict()
    for name, mask in masks.items():
        masked_state[name] = masked_state[name] * mask
    save_npz(out / "model_masked.npz", masked_state)
    if masks:
        save_npz(out / "masks.npz", masks)
    nonzero = int(sum(np.count_nonzero(v) for k, v in masked_state.items() if k in run.model.parameters()))

    report: dict[str, Any] = {
        "name": c.name, "description": c.description, "method": c.method, "seed": c.seed,
        "dataset": c.data.name, "model": c.model.name,
        "n_train": int(len(run.y_train)), "n_test": int(len(run.y_test)),
        "accuracy": accuracy,
        "phases": [_phase_row(p, run.state["phases"][p.name]) for p in phases],
        "params": {"dense": totals["params"], "nonzero": nonzero},
        "macs": {"dense": totals["macs"], "effective": totals["effective_macs"]},
        "compression": finite(totals["params"] / nonzero if nonzero else float("inf")),
        "mac_reduction": finite(totals["mac_reduction"]),
        "sparsity": {"overall": masks_sparsity(masks) if masks else 0.0,
                     "per_layer": masks_sparsity(masks, per_param=True) if masks else {}},
        "layers": report_json(masked_rows)["layers"],
        "seconds": seconds,
    }
    report["storage"], storage_text = _storage(run, masks)
    compact_text = ""
    if run.compact_model is not None:
        compact_rows = layer_report(run.compact_model, reference=run.model)
        ctotals = report_totals(compact_rows)
        report["params"]["compact"] = ctotals["params"]
        report["macs"]["compact"] = ctotals["macs"]
        report["compact_param_ratio"] = totals["params"] / ctotals["params"]
        report["compact_mac_ratio"] = finite(totals["macs"] / ctotals["macs"] if ctotals["macs"] else np.inf)
        report["compact_layers"] = report_json(compact_rows)["layers"]
        report["compact_matches_masked"] = accuracy["compact"] == accuracy["masked"]
        compact_text = "\n\ncompact model (dead paths removed)\n" + format_report(compact_rows)
    report["text"] = _format_text(report) + "\n\nmasked model (per layer)\n" + format_report(masked_rows) \
        + storage_text + compact_text
    write_json(out / "report.json", {k: v for k, v in report.items() if k != "text"})
    atomic_write_text(out / "report.txt", report["text"] + "\n")
    write_json(out / "results.json", {
        "name": c.name, "method": c.method, "dataset": c.data.name, "model": c.model.name, "seed": c.seed,
        "accuracy_dense": accuracy["dense"], "accuracy_pruned": accuracy["masked"],
        "accuracy_compact": accuracy["compact"], "params_dense": report["params"]["dense"],
        "params_nonzero": nonzero, "params_compact": report["params"].get("compact"),
        "macs_dense": report["macs"]["dense"], "macs_effective": report["macs"]["effective"],
        "macs_compact": report["macs"].get("compact"), "compression": report["compression"],
        "sparsity": report["sparsity"]["overall"], "storage_bits": report["storage"]["bits"],
        "storage_bits_fp16": report["storage"]["bits_fp16"], "seconds": seconds,
    })
    return report


def _format_text(report: dict) -> str:
    acc = report["accuracy"]
    lines = [f"{report['name']}: {report['method']} on {report['dataset']} ({report['model']}, "
             f"{report['n_train']} training / {report['n_test']} test images)"]
    if report["description"]:
        lines.append(report["description"])
    lines.append("")
    lines.append("test accuracy")
    labels = {kind.accuracy: kind.label for kind in PHASES.values()
              if kind.accuracy and kind.accuracy != "compact"}
    labels["masked"] = "pruned (final, masked)"
    labels["compact"] = PHASES["compact"].label
    for key, label in labels.items():
        if acc.get(key) is not None:
            lines.append(f"  {label:<28} {acc[key]:.4f}")
    p, m = report["params"], report["macs"]
    lines.append("")
    ratio = "inf" if report["compression"] is None else f"{report['compression']:.2f}x"
    lines.append(f"parameters  dense {p['dense']:>10,}   nonzero {p['nonzero']:>10,}   compression {ratio}")
    if "compact" in p:
        lines.append(f"            compact model {p['compact']:,} "
                     f"({report['compact_param_ratio']:.2f}x fewer stored parameters)")
    mac = "inf" if report["mac_reduction"] is None else f"{report['mac_reduction']:.2f}x"
    lines.append(f"MACs/image  dense {m['dense']:>10,}   effective {m['effective']:>8,}   reduction {mac}")
    if "compact" in m:
        cr = "inf" if report["compact_mac_ratio"] is None else f"{report['compact_mac_ratio']:.2f}x"
        lines.append(f"            compact model {m['compact']:,} dense MACs ({cr} fewer)")
    st = report["storage"]
    ratio = "inf" if st["compression"] is None else f"{st['compression']:.2f}x"
    lines.append(f"storage     dense {st['dense_bits']:>10,} bits   stored {st['bits']:>10,} bits   "
                 f"compression {ratio} (float32; {st['bits_fp16']:,} bits with float16 values)")
    if report["sparsity"]["per_layer"]:
        per = ", ".join(f"{k} {v:.3f}" for k, v in report["sparsity"]["per_layer"].items())
        lines.append(f"sparsity    {report['sparsity']['overall']:.4f} overall ({per})")
    return "\n".join(lines)
