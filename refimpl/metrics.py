r"""Per-layer pruning reports: what is left of every layer, in parameters and in multiply-accumulates.

One function measures, the others present:

* :func:`layer_report` — one row per layer that owns parameters, for a *masked* model (dense arrays with
  zeros, optionally with explicit keep masks) or a *compact* one (after :func:`refimpl.compact.compact`,
  compared against the original dense model given as ``reference``);
* :func:`report_totals`, :func:`format_report` (an aligned text table), :func:`report_json` (a
  JSON-serialisable dict) and :func:`compare_reports` (two reports side by side, e.g. masked vs compact).

Shapes and dense MACs come from :func:`refimpl.models.layer_table` (a shape-recording forward pass), so the
two never disagree. The GEMM view of a convolution weight ``(F, C, KH, KW)`` is ``(F, C·KH·KW)``: a
**filter** is a row, a **shape** is a column (one ``(c, kh, kw)`` position), a **channel** is the
``KH·KW`` columns of one input channel. A linear layer ``(out, in)`` is its own GEMM view (its channels
and shapes are both its input features). Counting rules, for a layer with effective weight
:math:`\tilde W = W \odot M` and output size :math:`H_o \times W_o` (1 × 1 for a linear layer):

.. math::

    \text{kept filters} = \#\{f : \tilde W_{f,:} \neq 0\}, \qquad
    \text{kept shapes} = \#\{k : \tilde W_{:,k} \neq 0\},

.. math::

    \mathrm{MACs} = F \cdot C K_H K_W \cdot H_o W_o, \qquad
    \mathrm{MACs}_\text{eff} = \operatorname{nnz}(\tilde W) \cdot H_o W_o, \qquad
    \text{compression} = \frac{\text{params of the dense reference}}{\text{nonzero params}}.

"Nonzero" counts every parameter entry of the layer that is not zero (masked weights plus biases and
BatchNorm scale/shift), so the ratio compares what has to be stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from refimpl.models import layer_table
from refimpl.nn.module import Module

__all__ = ["compare_reports", "format_report", "layer_report", "report_json", "report_totals"]

#: Additive quantities of a row; totals are their sums.
_SUMMED = ("params_before", "params", "nonzero", "macs_before", "macs", "effective_macs")


def _effective_weights(module: Module, prefix: str, masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Return the module's parameters with its keep masks applied (copies only where a mask exists)."""
    out = {}
    for key, value in module.params.items():
        name = f"{prefix}.{key}" if prefix else key
        mask = masks.get(name)
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != np.bool_:
                raise TypeError(f"masks[{name!r}] must be a boolean array, got dtype {mask.dtype}")
            if mask.shape != value.shape:
                raise ValueError(f"masks[{name!r}] has shape {mask.shape}, the parameter has {value.shape}")
            value = np.where(mask, value, 0)
        out[key] = value
    return out


def _structure_counts(weight: np.ndarray) -> dict[str, int]:
    """Total and nonzero filters / channels / shapes of a conv or linear weight."""
    nonzero = weight != 0
    f, c = weight.shape[:2]
    per_channel = nonzero.reshape(f, c, -1)
    gemm = nonzero.reshape(f, -1)
    return {
        "filters": f, "kept_filters": int(gemm.any(axis=1).sum()),
        "channels": c, "kept_channels": int(per_channel.any(axis=(0, 2)).sum()),
        "shapes": gemm.shape[1], "kept_shapes": int(gemm.any(axis=0).sum()),
    }


def layer_report(model: Module, masks: Mapping[str, np.ndarray] | None = None,
                 reference: Module | None = None, *,
                 input_shape: tuple[int, ...] | None = None) -> list[dict]:
    """One row per layer with parameters: shapes, kept structures, parameters and MACs, before and after.

    Parameters
    ----------
    model : Module
        The masked or compact model measured (not modified; its caches are overwritten by the shape pass).
    masks : dict of name -> bool ndarray, optional
        Keep masks applied (virtually) before counting; without them the zeros in the weights count.
    reference : Module, optional
        The dense model the "before" columns describe (e.g. the original of a compact model, matched by
        layer name). Default: ``model`` itself, so "before" is the dense size of the same arrays.
    input_shape : tuple of int, optional
        ``(C, H, W)`` of one input; default ``model.input_shape``.

    Returns
    -------
    list of dict
        Keys: ``name``, ``kind``, ``weight_shape_before``, ``weight_shape`` (tuples), ``filters``,
        ``kept_filters``, ``channels``, ``kept_channels``, ``shapes``, ``kept_shapes`` (``None`` for layers
        without a conv/linear weight, e.g. BatchNorm), ``params_before``, ``params``, ``nonzero``,
        ``macs_before``, ``macs``, ``effective_macs`` (ints) and ``compression``
        (``params_before / nonzero``; ``inf`` when nothing is left).

    Examples
    --------
    >>> from refimpl.models import lenet300_100
    >>> net = lenet300_100(input_size=8)
    >>> rows = layer_report(net, {"fc3.weight": np.zeros((10, 100), bool)})
    >>> rows[-1]["name"], rows[-1]["kept_filters"], rows[-1]["nonzero"], rows[-1]["effective_macs"]
    ('fc3', 0, 10, 0)
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a refimpl Module, got {type(model).__name__}")
    if reference is not None and not isinstance(reference, Module):
        raise TypeError(f"reference must be a refimpl Module or None, got {type(reference).__name__}")
    masks = {} if masks is None else masks
    if not isinstance(masks, Mapping):
        raise TypeError(f"masks must be a dict of name -> bool ndarray, got {type(masks).__name__}")
    known = set(model.parameters())
    for name in masks:
        if name not in known:
            raise KeyError(f"masks[{name!r}]: the model has no such parameter")

    table = [row for row in layer_table(model, input_shape) if row["params"]]
    before = {row["name"]: row for row in table}
    if reference is not None:
        ref_shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
        before = {row["name"]: row for row in layer_table(reference, ref_shape)}

    rows = []
    for row in table:
        module = model.get_module(row["name"])
        params = _effective_weights(module, row["name"], masks)
        weight = params.get("weight")
        conv_or_linear = row["kind"] in ("Conv2d", "Linear")
        positions = 1
        if row["kind"] == "Conv2d" and row["output_shape"] is not None:
            positions = row["output_shape"][1] * row["output_shape"][2]
        ref = before.get(row["name"], row)
        nonzero = int(sum(np.count_nonzero(v) for v in params.values()))
        out = {
            "name": row["name"], "kind": row["kind"],
            "weight_shape_before": ref["weight_shape"], "weight_shape": row["weight_shape"],
            "filters": None, "kept_filters": None, "channels": None, "kept_channels": None,
            "shapes": None, "kept_shapes": None,
            "params_before": int(ref["params"]), "params": int(row["params"]), "nonzero": nonzero,
            "macs_before": int(ref["macs"]), "macs": int(row["macs"]),
            "effective_macs": int(np.count_nonzero(weight)) * positions if conv_or_linear else 0,
        }
        if conv_or_linear:
            out.update(_structure_counts(weight))
        out["compression"] = out["params_before"] / nonzero if nonzero else math.inf
        rows.append(out)
    return rows


def report_totals(rows: Sequence[Mapping]) -> dict:
    """Sum the additive columns of ``rows`` and give the overall ratios.

    Returns
    -------
    dict
        ``params_before``, ``params``, ``nonzero``, ``macs_before``, ``macs``, ``effective_macs`` (sums),
        ``compression = params_before / nonzero`` and ``mac_reduction = macs_before / effective_macs``
        (``inf`` when the denominator is 0).
    """
    totals = {key: int(sum(row[key] for row in rows)) for key in _SUMMED}
    totals["compression"] = totals["params_before"] / totals["nonzero"] if totals["nonzero"] else math.inf
    totals["mac_reduction"] = (totals["macs_before"] / totals["effective_macs"]
                               if totals["effective_macs"] else math.inf)
    return totals


def _kept(row: Mapping, key: str) -> str:
    return "" if row[key] is None else f"{row['kept_' + key]}/{row[key]}"


def format_report(rows: Sequence[Mapping]) -> str:
    """Render ``rows`` (from :func:`layer_report`) as an aligned text table with a totals line.

    Columns: layer, kind, weight shape, kept filters / channels / shapes as ``kept/total``, parameters,
    nonzero parameters, dense and effective MACs, compression ratio.
    """
    header = ("layer", "kind", "weight shape", "filters", "channels", "shapes", "params", "nonzero",
              "MACs", "eff. MACs", "ratio")
    table = []
    for row in rows:
        shape = "" if row["weight_shape"] is None else "x".join(str(d) for d in row["weight_shape"])
        table.append((row["name"], row["kind"], shape, _kept(row, "filters"), _kept(row, "channels"),
                      _kept(row, "shapes"), str(row["params"]), str(row["nonzero"]), str(row["macs"]),
                      str(row["effective_macs"]), f"{row['compression']:.2f}x"))
    t = report_totals(rows)
    table.append(("total", "", "", "", "", "", str(t["params"]), str(t["nonzero"]), str(t["macs"]),
                  str(t["effective_macs"]), f"{t['compression']:.2f}x"))
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]

    def line(cells) -> str:
        # Text columns left-aligned, numbers right-aligned: the usual way to make digits line up.
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in pairs)

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in table[:-1]), rule, line(table[-1])])


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no infinity; None marks "nothing left to divide by"
    if isinstance(value, np.generic):
        return value.item()
    return value


def report_json(rows: Sequence[Mapping]) -> dict:
    """``{"layers": [...], "totals": {...}}`` with tuples as lists and infinite ratios as ``None``."""
    return {"layers": [{k: _jsonable(v) for k, v in row.items()} for row in rows],
            "totals": {k: _jsonable(v) for k, v in report_totals(rows).items()}}


def compare_reports(before: Sequence[Mapping], after: Sequence[Mapping]) -> dict:
    """Put two reports side by side, layer by layer (matched by name), with their totals.

    Typical use: ``before`` = the masked model's report, ``after`` = the compact model's report; a lossless
    compaction keeps ``nonzero`` and ``effective_macs`` (up to folded biases) while ``params`` and
    ``macs`` shrink.

    Returns
    -------
    dict
        ``"layers"``: one dict per layer name (``before``'s order, then names only in ``after``) with
        ``name`` and, for each of ``params``, ``nonzero``, ``macs``, ``effective_macs``, ``kept_filters``,
        ``kept_channels``: ``<key>_before`` and ``<key>_after`` (``None`` where the layer is missing);
        ``"totals"``: the same keys for the totals, plus ``params_ratio`` and ``macs_ratio``
        (before / after).
    """
    keys = ("params", "nonzero", "macs", "effective_macs", "kept_filters", "kept_channels")
    by_name_b = {row["name"]: row for row in before}
    by_name_a = {row["name"]: row for row in after}
    names = list(by_name_b) + [n for n in by_name_a if n not in by_name_b]
    layers = []
    for name in names:
        b, a = by_name_b.get(name), by_name_a.get(name)
        entry = {"name": name}
        for key in keys:
            entry[f"{key}_before"] = None if b is None else b[key]
            entry[f"{key}_after"] = None if a is None else a[key]
        layers.append(entry)
    tb, ta = report_totals(before), report_totals(after)
    totals = {}
    for key in ("params", "nonzero", "macs", "effective_macs"):
        totals[f"{key}_before"], totals[f"{key}_after"] = tb[key], ta[key]
    totals["params_ratio"] = tb["params"] / ta["params"] if ta["params"] else math.inf
    totals["macs_ratio"] = tb["macs"] / ta["macs"] if ta["macs"] else math.inf
    return {"layers": layers, "totals": totals}
