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

Storage in bits (:func:`weight_storage`, :func:`storage_report`)
-----------------------------------------------------------------
Counting nonzeros is blind to weight unification: a unified block has no zero but stores one number. Runs
are therefore also compared at **equal storage**, in bits, under one documented encoding. A weight's
GEMM view is cut into ``bh x bw`` blocks (the ``block_shape`` of its constraint; ``1 x 1``, i.e. single
entries, for structures without one), and each block is stored as one of three kinds:

==========  ==================================================  =========================================
kind        when                                                bits
==========  ==================================================  =========================================
free        otherwise                                           :math:`n_b \cdot b_v` (zeros inside stored)
unified     :math:`n_b \ge 2` entries, all of one nonzero       :math:`b_v + n_b` (one magnitude, one
            magnitude                                           sign bit per entry)
pruned      all entries zero                                    0
==========  ==================================================  =========================================

plus a **block-kind map** of :math:`\lceil \log_2 k \rceil` bits per block, :math:`k` the number of kinds
that occur in the layer: none for a dense layer, a 1-bit bitmap for a pruned one (for ``1 x 1`` blocks
the usual bitmap encoding, :math:`N + b_v \cdot \mathrm{nnz}` bits), 2 bits per block when free,
unified and pruned blocks all occur. :math:`n_b` counts the real entries of a block (edge blocks are
smaller), :math:`b_v` is the value width: 32 (float32) or 16 (float16). The kinds are read off the
values, so the count is what it costs to store these weights, however they were trained: a unified block
is any block of two or more entries with one nonzero magnitude (storing it unified is then always
cheaper, since :math:`b_v + n_b < n_b b_v`). Other parameters (biases, BatchNorm) are stored densely.
Index bits are the price of the format's flexibility; a kernel's own arrays (row pointers, block column
indices, see :mod:`refimpl.sparse.unified`) cost more, and ``paper_repro/bench_spmm.py`` compares those.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from refimpl.models import layer_table
from refimpl.nn.module import Module

__all__ = [
    "STORAGE_VALUE_BITS",
    "block_kinds",
    "compare_reports",
    "format_report",
    "format_storage",
    "layer_report",
    "report_json",
    "report_totals",
    "storage_report",
    "storage_totals",
    "weight_storage",
]

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


# --- storage in bits -------------------------------------------------------------------------------------

#: Value widths :func:`weight_storage` accepts: float32 and float16.
STORAGE_VALUE_BITS = (32, 16)

#: Block kinds of :func:`block_kinds` (the codes of :mod:`refimpl.projections.unify`).
_FREE, _UNIFIED, _PRUNED = 0, 1, 2


def _check_value_bits(value_bits) -> int:
    if isinstance(value_bits, bool) or value_bits not in STORAGE_VALUE_BITS:
        raise ValueError(f"value_bits must be one of {STORAGE_VALUE_BITS} (float32, float16), "
                         f"got {value_bits!r}")
    return int(value_bits)


def _gemm_blocks(w, block_shape) -> tuple[np.ndarray, tuple[int, int]]:
    """``|w|`` of the GEMM view padded to the block grid with NaN, as (nbr, bh, nbc, bw); and (bh, bw)."""
    from refimpl._validation import as_float_array, check_block_shape

    w = as_float_array(w, "w")
    if w.ndim < 2:
        raise ValueError(f"w must be a weight with 2 or more dimensions (its GEMM view is w.reshape(F, -1)), "
                         f"got shape {w.shape}")
    w2d = np.abs(w.reshape(w.shape[0], -1)).astype(np.float64)
    bh, bw = check_block_shape(block_shape)  # a block larger than the matrix is one (edge) block
    rows, cols = w2d.shape
    nbr, nbc = -(-rows // bh), -(-cols // bw)
    padded = np.full((nbr * bh, nbc * bw), np.nan)
    padded[:rows, :cols] = w2d
    return padded.reshape(nbr, bh, nbc, bw), (bh, bw)


def block_kinds(w, block_shape=(1, 1)) -> np.ndarray:
    """Kind of every ``bh x bw`` block of ``w``'s GEMM view: 0 free, 1 unified, 2 pruned (module notes).

    Examples
    --------
    >>> block_kinds(np.array([[0.5, -0.5, 0.0, 0.0, 1.0, 2.0]]), (1, 2))
    array([[1, 2, 0]], dtype=int8)
    """
    tiles, _ = _gemm_blocks(w, block_shape)
    with np.errstate(invalid="ignore"):
        largest, smallest = np.nanmax(tiles, axis=(1, 3)), np.nanmin(tiles, axis=(1, 3))
    size = np.count_nonzero(~np.isnan(tiles), axis=(1, 3))
    kinds = np.full(largest.shape, _FREE, dtype=np.int8)
    kinds[(largest == smallest) & (largest > 0) & (size >= 2)] = _UNIFIED
    kinds[largest == 0] = _PRUNED
    return kinds


def weight_storage(w, block_shape=(1, 1), *, value_bits: int = 32) -> dict:
    r"""Bits that store ``w`` in the block encoding of the module notes.

    Parameters
    ----------
    w : array_like, shape (F, C, KH, KW) or (OUT, IN)
        The (masked) weight; its values decide every block's kind.
    block_shape : (int, int), default (1, 1)
        ``(bh, bw)`` blocks of the GEMM view ``w.reshape(F, -1)``; edge blocks may be smaller.
    value_bits : {32, 16}
        Width of a stored value (float32 or float16).

    Returns
    -------
    dict
        ``blocks``, ``free_blocks``, ``unified_blocks``, ``pruned_blocks`` (counts); ``free_bits``
        (:math:`b_v` per entry of free blocks), ``unified_bits`` (:math:`b_v + n_b` per unified block),
        ``index_bits`` (the block-kind map), ``bits`` (their sum), ``dense_bits`` (:math:`b_v` per entry)
        and ``ratio`` (``dense_bits / bits``; ``inf`` when nothing is stored).

    Examples
    --------
    One free, one unified and one pruned ``1 x 2`` block, float32: :math:`2 \cdot 32 + (32 + 2) + 0` bits
    of values and signs, and 2 bits of kind map per block:

    >>> s = weight_storage(np.array([[1.0, 2.0, 0.5, -0.5, 0.0, 0.0]]), (1, 2))
    >>> s["free_bits"], s["unified_bits"], s["index_bits"], s["bits"], s["dense_bits"]
    (64, 34, 6, 104, 192)
    """
    value_bits = _check_value_bits(value_bits)
    tiles, block_shape = _gemm_blocks(w, block_shape)
    kinds = block_kinds(w, block_shape)
    size = np.count_nonzero(~np.isnan(tiles), axis=(1, 3))
    free, unified = kinds == _FREE, kinds == _UNIFIED
    n_kinds = len(np.unique(kinds))
    out = {
        "block_shape": tuple(block_shape), "blocks": int(kinds.size),
        "free_blocks": int(np.count_nonzero(free)), "unified_blocks": int(np.count_nonzero(unified)),
        "pruned_blocks": int(np.count_nonzero(kinds == _PRUNED)),
        "free_bits": int(size[free].sum()) * value_bits,
        "unified_bits": int(np.count_nonzero(unified)) * value_bits + int(size[unified].sum()),
        "index_bits": kinds.size * math.ceil(math.log2(n_kinds)) if n_kinds > 1 else 0,
        "dense_bits": int(size.sum()) * value_bits,
    }
    out["bits"] = out["free_bits"] + out["unified_bits"] + out["index_bits"]
    out["ratio"] = out["dense_bits"] / out["bits"] if out["bits"] else math.inf
    return out


_STORAGE_SUMMED = ("blocks", "free_blocks", "unified_blocks", "pruned_blocks", "free_bits", "unified_bits",
                   "index_bits", "bits", "dense_bits")


def storage_report(model: Module, masks: Mapping[str, np.ndarray] | None = None,
                   block_shapes: Mapping[str, tuple[int, int]] | None = None, *,
                   value_bits: int = 32) -> list[dict]:
    """One row per parameter: the bits that store it (:func:`weight_storage` for conv/linear weights).

    Parameters
    ----------
    model : Module
    masks : dict of name -> bool ndarray, optional
        Keep masks applied before counting.
    block_shapes : dict of name -> (bh, bw), optional
        Block shape of each weight's encoding (its constraint's ``block_shape``); ``(1, 1)`` otherwise.
    value_bits : {32, 16}

    Returns
    -------
    list of dict
        ``name``, ``shape`` and the keys of :func:`weight_storage`; a parameter that is not a conv/linear
        weight (bias, BatchNorm) is one free "block" per entry without a map (dense).

    Examples
    --------
    >>> from refimpl.models import lenet300_100
    >>> rows = storage_report(lenet300_100(input_size=8), {"fc3.weight": np.zeros((10, 100), bool)})
    >>> rows[-2]["name"], rows[-2]["bits"], rows[-1]["name"], rows[-1]["bits"]   # all pruned: no bits
    ('fc3.weight', 0, 'fc3.bias', 320)
    """
    from refimpl.prune.constraints import _weights_by_kind

    if not isinstance(model, Module):
        raise TypeError(f"model must be a refimpl Module, got {type(model).__name__}")
    value_bits = _check_value_bits(value_bits)
    masks = {} if masks is None else masks
    block_shapes = {} if block_shapes is None else block_shapes
    for what, table in (("masks", masks), ("block_shapes", block_shapes)):
        if not isinstance(table, Mapping):
            raise TypeError(f"{what} must be a dict keyed by parameter name, got {type(table).__name__}")
    params = model.parameters()
    for what, table in (("masks", masks), ("block_shapes", block_shapes)):
        for name in table:
            if name not in params:
                raise KeyError(f"{what}[{name!r}]: the model has no such parameter")
    weights = set(_weights_by_kind(model)["all"])
    rows = []
    for name, value in params.items():
        if name in masks:
            mask = np.asarray(masks[name])
            if mask.dtype != np.bool_ or mask.shape != value.shape:
                raise ValueError(f"masks[{name!r}] must be a boolean array of shape {value.shape}, got "
                                 f"dtype {mask.dtype} and shape {mask.shape}")
            value = np.where(mask, value, 0)
        if name in weights:
            row = weight_storage(value, block_shapes.get(name, (1, 1)), value_bits=value_bits)
        else:
            n = int(value.size)
            row = {"block_shape": None, "blocks": n, "free_blocks": n, "unified_blocks": 0,
                   "pruned_blocks": 0, "free_bits": n * value_bits, "unified_bits": 0, "index_bits": 0,
                   "bits": n * value_bits, "dense_bits": n * value_bits, "ratio": 1.0 if n else math.inf}
        rows.append({"name": name, "shape": tuple(value.shape), **row})
    return rows


def storage_totals(rows: Sequence[Mapping]) -> dict:
    """Return the sums of :func:`storage_report` rows' bit and block counts; ``ratio = dense_bits / bits``."""
    totals = {key: int(sum(row[key] for row in rows)) for key in _STORAGE_SUMMED}
    totals["ratio"] = totals["dense_bits"] / totals["bits"] if totals["bits"] else math.inf
    return totals


def format_storage(rows: Sequence[Mapping]) -> str:
    """Render :func:`storage_report` rows (weights only, then the network's total) as an aligned table."""
    header = ("parameter", "blocks", "free", "unified", "pruned", "value bits", "unified bits", "index bits",
              "total bits", "ratio")

    def cells(name, row, shape) -> tuple:
        return (name, shape, str(row["free_blocks"]), str(row["unified_blocks"]), str(row["pruned_blocks"]),
                f"{row['free_bits']:,}", f"{row['unified_bits']:,}", f"{row['index_bits']:,}",
                f"{row['bits']:,}", f"{row['ratio']:.2f}x")

    table = [cells(r["name"], r, f"{r['blocks']} of {r['block_shape'][0]}x{r['block_shape'][1]}")
             for r in rows if r["block_shape"] is not None]
    table.append(cells("network (all parameters)", storage_totals(rows), ""))
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]

    def line(row) -> str:
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                           strict=True)))

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in table[:-1]), rule, line(table[-1])])
