r"""The sparse inference engine: :func:`compile` a pruned network into a forward-only model.

A pruned network is a dense network with zeros in it. :func:`compile` keeps its structure (the same
``Sequential``, ``BasicBlock``, pooling, ReLU ... objects, deep-copied) and swaps only the computation of
each convolution and linear layer for a :class:`~refimpl.sparse.layers.GemmOperator` in one of four storage
formats (docs/ALGORITHMS.md section 5; :mod:`refimpl.sparse.layers` describes each):

==========  =====================================================================================
format      what a conv / linear layer computes
==========  =====================================================================================
dense       ``W_g @ im2col(x)`` with the masked dense weight: the BLAS baseline
compact     :func:`refimpl.compact.compact` first (dead filters and channels removed from the network),
            then per layer a dense GEMM on the live rows and columns only; a shape-pruned convolution
            builds only the kept rows of ``im2col(x)``
csr         the full GEMM view in CSR, own numba SpMM (irregular, unstructured sparsity)
bsr         the full GEMM view in block-CSR with ``block_shape`` tiles, own numba SpMM
balanced    the full GEMM view in the balanced format (``k`` values per length-``V`` vector, ``V`` =
            ``vector_size`` or the best of :data:`~refimpl.sparse.balanced.VECTOR_SIZES`), own numba SpMM
vector_     the full GEMM view in the vector ∧ block format (kept ``block_shape`` tiles, ``k`` values per
block       length-``V`` vector inside them; ``V`` = ``vector_size`` or the best dividing the tile's width),
            own numba SpMM
auto        ``compact()`` first, then per layer the cheapest of compact / csr / bsr — and balanced or
            vector ∧ block for a layer that has that structure (below) — by a documented rule
            (:data:`AUTO_MAC_COST`) or by timing each candidate at compile time (``auto="measure"``)
==========  =====================================================================================

All formats compute the masked network's evaluation-mode function; they differ only in rounding (the
products are summed in different orders), which the tests bound by ``rtol = 1e-10`` in float64 and
``1e-5`` in float32.

**BatchNorm folding (exact in evaluation mode).** In evaluation mode a BatchNorm after a convolution is the
per-filter affine map :math:`z \mapsto s_f (z - \mu_f) + \beta_f` with
:math:`s_f = \gamma_f / \sqrt{\sigma_f^2 + \epsilon}`, so

.. math:: \mathrm{BN}(W * x + b) = (s \odot W) * x + \big(s \odot (b - \mu) + \beta\big),

a convolution with rows scaled by :math:`s_f` and a new bias. Scaling a row keeps its zeros, so folding
changes no sparsity pattern. ``fold_bn=True`` (default) folds every BatchNorm that directly follows a
convolution (consecutive children of a ``Sequential``; ``conv1→bn1``, ``conv2→bn2`` of a ``BasicBlock``) and
replaces it by :class:`~refimpl.sparse.layers.Identity`: one pass over the feature map less per layer.

**ReLU.** ReLU modules are replaced by :class:`~refimpl.sparse.layers.InferenceReLU`, one pass and no
mask (the training ReLU keeps one for its backward pass).

**The auto rule.** The time of one layer's product is modelled as :math:`c_{\text{fmt}} \cdot
\mathrm{MACs}_{\text{fmt}}` with :math:`c` the cost of one stored multiply-accumulate relative to a
dense-BLAS one (:data:`AUTO_MAC_COST`), and the cheapest format wins. The constants are measured
ratios from ``paper_repro/results/inference.json`` (2 shared cores, one thread per pool): over the
convolutions at batch 256, measured time / ideal time per layer had medians of 1.8 (compact), 4.0 (own
4×4 BSR) and 4.8 (own CSR) relative to dense BLAS, so BSR costs about 2.2 and CSR about 2.6 compact MACs
per stored MAC. On other hardware rerun ``paper_repro/bench_inference.py`` or use ``auto="measure"``.

**When auto considers the balanced format.** Only for a layer whose nonzeros *have* balanced structure:
some ``V`` (``vector_size``, or the best of :data:`~refimpl.sparse.balanced.VECTOR_SIZES`) stores them with
at most :data:`BALANCED_MAX_PADDING` padding slots (a balanced or N:M mask needs none; an unstructured one
needs many, since every vector must hold the fullest vector's count). Its constant has no whole-network
measurement yet: it is CSR's 2.6 scaled by the time of the balanced kernel over that of the CSR kernel on
the **same** masks in ``paper_repro/bench_spmm.py`` (``results/spmm_balanced.json``, median over the
sparsities, see :data:`AUTO_MAC_COST`). A layer that compaction has cut (dead input channels removed from
its GEMM columns) usually loses its vector alignment and then falls back to the other formats.

**When auto considers the vector ∧ block format.** Likewise only for a layer with that structure: some
block shape of ``block_shape`` and :data:`~refimpl.sparse.vector_block.VECTOR_BLOCK_SHAPES` and some ``V``
dividing its width (``vector_size``, or one of :data:`~refimpl.sparse.balanced.VECTOR_SIZES`) store the
nonzeros with at most :data:`BALANCED_MAX_PADDING` padding slots
(:func:`~refimpl.sparse.vector_block.best_vector_block`), with pruning inside the vectors (``k < V``)
**and** whole blocks empty (else the layer is balanced, and the balanced format has no block pointers to
pay for). Its constant is measured the same way as the balanced one, against own CSR on the same masks
(``results/spmm_vector_block.json``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from refimpl._validation import SPARSE_ENGINES, check_block_shape, check_engine, check_positive_int
from refimpl.compact import compact
from refimpl.models import layer_table, set_engine
from refimpl.nn.activation import ReLU
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.conv import Conv2d
from refimpl.nn.linear import Linear
from refimpl.nn.module import Module, Sequential
from refimpl.nn.residual import BasicBlock
from refimpl.prune.masking import apply_masks
from refimpl.sparse.balanced import VECTOR_SIZES, BalancedMatrix, best_vector_size
from refimpl.sparse.cost import spmm_cost
from refimpl.sparse.formats import BSRMatrix, CSRMatrix
from refimpl.sparse.layers import (
    FORMATS,
    GemmOperator,
    Identity,
    InferenceConv2d,
    InferenceLinear,
    InferenceReLU,
    make_operator,
)
from refimpl.sparse.vector_block import (
    VECTOR_BLOCK_SHAPES,
    VectorBlockLayout,
    VectorBlockMatrix,
    best_vector_block,
)
from refimpl.timing import median_seconds

__all__ = ["AUTO_MAC_COST", "BALANCED_MAX_PADDING", "InferenceModel", "LayerPlan", "compile",
           "fold_batchnorm"]

#: Relative cost of one stored multiply-accumulate, per format, against a dense BLAS one (the auto rule).
#: The rule is a **heuristic**, a linear cost model (time = constant x stored MACs) that ignores im2col,
#: pooling and per-call overheads; the constants are measured medians on one machine (module docstring,
#: "The auto rule"), and ``auto="measure"`` times the candidates instead. ``compact``: 1.0, the unit (a
#: compact layer is a dense BLAS product); ``bsr`` 2.2 and ``csr`` 2.6: ``inference.json``'s ratios.
#: ``balanced``: CSR's 2.6 times the median over the sparsities of balanced / own-CSR time on the same
#: masks in ``paper_repro/bench_spmm.py`` (0.55 in ``results/spmm_balanced.json``; module notes).
#: ``vector_block``: the same with the vector ∧ block kernel (4×4 blocks, ``V = 4``) / own CSR on the same
#: masks: median 0.80 over the sparsities in ``results/spmm_vector_block.json`` (2 shared cores under load).
AUTO_MAC_COST = {"compact": 1.0, "bsr": 2.2, "csr": 2.6, "balanced": 1.4, "vector_block": 2.1}

#: The auto rule considers the balanced format for a layer only if it stores at most this share more slots
#: than the layer has nonzeros (padding of vectors that keep fewer than the fullest one): balanced and N:M
#: masks need none; a few kept weights that training drove to exactly 0 are tolerated. A **heuristic**
#: threshold, not measured: 5 % more slots cost at most 5 % more multiply-adds, which keeps
#: ``AUTO_MAC_COST["balanced"]`` (1.4, x1.05 = 1.47) well below the next formats (2.1 to 2.6), so the
#: measured constant still describes the layer.
BALANCED_MAX_PADDING = 0.05

_AUTO_MODES = ("rule", "measure")


# --------------------------------------------------------------------------------------------------------
# BatchNorm folding
# --------------------------------------------------------------------------------------------------------


def _conv_bn_pairs(model: Module):
    """Yield ``(parent, conv_name, bn_name)`` for every BatchNorm2d fed directly by a Conv2d."""
    for _, parent in model.named_modules():
        children = dict(parent.children())
        if isinstance(parent, BasicBlock):
            candidates = [("conv1", "bn1"), ("conv2", "bn2")]
        elif isinstance(parent, Sequential):
            names = list(children)
            candidates = list(zip(names, names[1:], strict=False))
        else:
            continue
        for conv_name, bn_name in candidates:
            if isinstance(children.get(conv_name), Conv2d) and isinstance(children.get(bn_name), BatchNorm2d):
                yield parent, conv_name, bn_name


def _replace_child(parent: Module, name: str, new: Module) -> None:
    """Swap child ``name`` of ``parent`` for ``new`` (also the attribute a BasicBlock's forward reads)."""
    old = dict(parent.children())[name]
    parent.add_child(name, new)  # same key: the order of the children is kept
    if getattr(parent, name, None) is old:
        setattr(parent, name, new)


def fold_batchnorm(model: Module) -> list[str]:
    r"""Fold every evaluation-mode BatchNorm into the convolution before it, **in place**.

    .. math:: W_f \leftarrow s_f W_f, \qquad b_f \leftarrow s_f (b_f - \mu_f) + \beta_f, \qquad
              s_f = \gamma_f / \sqrt{\sigma_f^2 + \epsilon}

    (``b = 0`` for a convolution without bias; it gains one). The BatchNorm is replaced by
    :class:`~refimpl.sparse.layers.Identity`. Exact for the evaluation-mode function only: in training
    mode a BatchNorm normalises with batch statistics, which no fixed affine map reproduces.

    Returns
    -------
    list of str
        Dotted names of the folded BatchNorms.
    """
    names = {id(m): n for n, m in model.named_modules()}
    folded = []
    for parent, conv_name, bn_name in list(_conv_bn_pairs(model)):
        children = dict(parent.children())
        conv, bn = children[conv_name], children[bn_name]
        w = conv.params["weight"]
        scale = bn.params["weight"] / np.sqrt(bn.buffers["running_var"] + bn.eps)
        bias = conv.params.get("bias", np.zeros(w.shape[0], dtype=w.dtype))
        conv.params["weight"] = (w * scale[:, None, None, None]).astype(w.dtype)
        shift = scale * (bias - bn.buffers["running_mean"]) + bn.params["bias"]
        conv.params["bias"] = shift.astype(w.dtype)
        _replace_child(parent, bn_name, Identity())
        prefix = names[id(parent)]
        folded.append(f"{prefix}.{bn_name}" if prefix else bn_name)
    return folded


# --------------------------------------------------------------------------------------------------------
# per-layer plan and the auto choice
# --------------------------------------------------------------------------------------------------------


@dataclass
class LayerPlan:
    """How one convolution or linear layer runs in an :class:`InferenceModel`.

    Attributes
    ----------
    name, kind : str
        Dotted name and ``"Conv2d"`` / ``"Linear"``.
    format : str
        The storage format chosen.
    reason : str
        Why (the format asked for, or the auto rule's estimates / measured times).
    weight_shape : tuple of int
        The original (masked) weight's shape.
    dense_w2d : ndarray
        The original masked GEMM view (what the dense baseline multiplies by).
    w2d : ndarray
        The GEMM view the layer actually stores (after compaction and BatchNorm folding).
    cols_per_sample : int
        Columns of ``X`` per input sample: ``OH·OW`` for a convolution, 1 for a linear layer.
    layer : InferenceConv2d or InferenceLinear
    vector_size : int or None
        ``V`` of the balanced format for this layer (the operator's, or the one the report costs it with).
    vector_block : VectorBlockLayout or None
        Block shape and ``V`` of the vector ∧ block format for this layer (likewise); ``None`` when no
        candidate ``V`` divides a candidate tile's width.
    """

    name: str
    kind: str
    format: str
    reason: str
    weight_shape: tuple
    dense_w2d: np.ndarray = field(repr=False)
    w2d: np.ndarray = field(repr=False)
    cols_per_sample: int
    layer: Module = field(repr=False)
    vector_size: int | None = None
    vector_block: VectorBlockLayout | None = None


def _vector_size(w2d: np.ndarray, vector_size: int | None) -> int:
    """``vector_size``, or the ``V`` that stores the layer's nonzeros in the fewest balanced slots."""
    return vector_size if vector_size is not None else best_vector_size(w2d != 0)[0]


def _is_balanced(w2d: np.ndarray, vector_size: int) -> bool:
    """Tell whether the layer has balanced structure (the auto rule then considers the balanced format).

    That is: some pruning inside the vectors (``k < V``: a dense layer is not balanced) and at most
    :data:`BALANCED_MAX_PADDING` more stored slots than nonzeros.
    """
    nnz = int(np.count_nonzero(w2d))
    if nnz == 0:
        return False
    a = BalancedMatrix.from_dense(w2d, vector_size=vector_size)
    return a.k < a.vector_size and a.nnz <= (1 + BALANCED_MAX_PADDING) * nnz


def _vector_block_layout(w2d: np.ndarray, block_shape, vector_size: int | None,
                         requested: bool) -> VectorBlockLayout | None:
    """Return the layer's vector ∧ block layout: on the requested tile, or the best of the candidate tiles.

    ``requested`` (``format="vector_block"``): the tile ``block_shape`` and ``vector_size`` (default the best
    ``V`` dividing its width, the width itself included); a ``vector_size`` that does not divide the width
    is a ``ValueError``. Otherwise (auto, and the report's costs): the best of ``block_shape`` and
    :data:`~refimpl.sparse.vector_block.VECTOR_BLOCK_SHAPES` with ``vector_size`` or
    :data:`~refimpl.sparse.balanced.VECTOR_SIZES` (``None`` if no pair fits).
    """
    bw = block_shape[1]
    if requested:
        if vector_size is not None and bw % vector_size:
            raise ValueError(f"vector_size = {vector_size} must divide the width of block_shape = "
                             f"{tuple(block_shape)} for format 'vector_block'")
        sizes = [vector_size] if vector_size is not None else [*VECTOR_SIZES, bw]
        return best_vector_block(w2d != 0, [block_shape], sizes)
    shapes = list(dict.fromkeys([tuple(block_shape), *VECTOR_BLOCK_SHAPES]))
    return best_vector_block(w2d != 0, shapes, [vector_size] if vector_size is not None else VECTOR_SIZES)


def _is_vector_block(w2d: np.ndarray, layout: VectorBlockLayout | None) -> bool:
    """Tell whether the layer has vector ∧ block structure (the auto rule then considers the format).

    That is: pruning inside the vectors (``k < V``), whole blocks empty, and at most
    :data:`BALANCED_MAX_PADDING` more stored slots than nonzeros.
    """
    nnz = int(np.count_nonzero(w2d))
    if nnz == 0 or layout is None:
        return False
    return (layout.k < layout.vector_size and layout.n_blocks < layout.grid_blocks
            and layout.slots <= (1 + BALANCED_MAX_PADDING) * nnz)


def _costs(plan_w2d: np.ndarray, dense_w2d: np.ndarray, n_cols: int, block_shape,
           vector_size: int, layout: VectorBlockLayout | None) -> dict[str, dict]:
    """:func:`~refimpl.sparse.cost.spmm_cost` of one layer in every format for ``n_cols`` columns."""
    costs = {
        "dense": spmm_cost(dense_w2d, n_cols, format="dense"),
        "compact": spmm_cost(plan_w2d, n_cols, format="compact"),
        "csr": spmm_cost(CSRMatrix.from_dense(plan_w2d), n_cols),
        "bsr": spmm_cost(BSRMatrix.from_dense(plan_w2d, block_shape=block_shape), n_cols),
        "balanced": spmm_cost(BalancedMatrix.from_dense(plan_w2d, vector_size=vector_size), n_cols),
    }
    if layout is not None:
        a = VectorBlockMatrix.from_dense(plan_w2d, block_shape=layout.block_shape,
                                         vector_size=layout.vector_size)
        costs["vector_block"] = spmm_cost(a, n_cols)
    return costs


def _candidates(w2d: np.ndarray, vector_size: int, layout: VectorBlockLayout | None) -> list[str]:
    """Return the formats auto chooses among (balanced, vector ∧ block: only for layers of that structure)."""
    structured = {"balanced": lambda: _is_balanced(w2d, vector_size),
                  "vector_block": lambda: _is_vector_block(w2d, layout)}
    return [fmt for fmt in AUTO_MAC_COST if fmt not in structured or structured[fmt]()]


def _choose_by_rule(w2d: np.ndarray, block_shape, vector_size: int,
                    layout: VectorBlockLayout | None) -> tuple[str, str]:
    """Apply the auto rule: the format of least ``AUTO_MAC_COST[fmt] · stored MACs`` (ties: compact)."""
    costs = _costs(w2d, w2d, 1, block_shape, vector_size, layout)
    candidates = _candidates(w2d, vector_size, layout)
    estimate = {fmt: AUTO_MAC_COST[fmt] * costs[fmt]["macs"] for fmt in candidates}
    best = min(candidates, key=lambda fmt: estimate[fmt])  # ties: AUTO_MAC_COST's order, compact first
    dense = costs["dense"]["macs"] or 1
    parts = ", ".join(f"{fmt} {estimate[fmt] / dense:.3g}" for fmt in candidates)
    return best, f"rule: est. time / dense = {parts}"


def _choose_by_measurement(make_layer, x: np.ndarray, candidates: list[str]) -> tuple[str, str]:
    """Time the layer in each candidate format on ``x`` (median of 3 after a warm-up); fastest wins."""
    times = {}
    for fmt in candidates:
        layer = make_layer(fmt)
        times[fmt] = median_seconds(lambda layer=layer: layer.forward(x))
    best = min(times, key=times.get)
    parts = ", ".join(f"{fmt} {1e3 * t:.3g} ms" for fmt, t in times.items())
    return best, f"measured on batch {x.shape[0]}: {parts}"


# --------------------------------------------------------------------------------------------------------
# the compiled model
# --------------------------------------------------------------------------------------------------------


class InferenceModel:
    """A forward-only network whose convolutions and linear layers run in chosen storage formats.

    Built by :func:`compile`; not trainable (its layers have no gradients).

    Attributes
    ----------
    network : Module
        The transformed copy of the model (evaluation mode), e.g. for ``repr``.
    plans : dict of str -> LayerPlan
        Per convolution / linear layer, in forward order.
    format, engine : str
        What :func:`compile` was asked for.
    dtype : numpy dtype
        Inputs are cast to it.
    input_shape : tuple of int
        ``(C, H, W)`` of one sample.
    folded_batchnorms : list of str
        BatchNorms folded into convolutions.
    """

    def __init__(self, network: Module, plans: dict[str, LayerPlan], *, format: str,  # noqa: A002
                 engine: str, dtype, input_shape: tuple[int, ...], block_shape, folded: list[str],
                 vector_size: int | None = None) -> None:
        self.network = network
        self.plans = plans
        self.format = format
        self.engine = engine
        self.dtype = np.dtype(dtype)
        self.input_shape = tuple(input_shape)
        self.block_shape = tuple(block_shape)
        self.vector_size = vector_size
        self.folded_batchnorms = list(folded)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Run the network on a batch ``x`` of shape ``(N, *input_shape)``; returns the logits."""
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise TypeError(f"x must be a real numeric array, got dtype {x.dtype}")
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"x must have shape (N, {', '.join(map(str, self.input_shape))}), got {x.shape}")
        return self.network.forward(x.astype(self.dtype, copy=False))

    __call__ = forward

    @property
    def formats(self) -> dict[str, str]:
        """``{layer name: format}`` in forward order."""
        return {name: plan.format for name, plan in self.plans.items()}

    def report(self, batch: int = 1) -> list[dict]:
        r"""Per layer: the format, the shapes and the work of a batch of ``batch`` samples.

        Returns
        -------
        list of dict
            Keys ``name``, ``kind``, ``format``, ``reason``, ``weight_shape``, ``gemm_shape`` (original
            ``(M, K)``), ``stored_shape`` (``(M', K')`` of the compact matrix: live rows and columns),
            ``nnz`` (nonzero weights the layer multiplies by: compaction also removes weights that read
            dead channels, whose constant it folds into the bias), ``masked_nnz`` (nonzeros of the masked
            weight), ``density`` (``nnz / (M·K)``), ``n_cols`` (``batch · OH·OW``),
            ``costs`` (:func:`~refimpl.sparse.cost.spmm_cost` of every format: ``macs``, ``flops``,
            ``bytes`` ...), ``macs`` / ``bytes`` of the chosen format and ``ideal_speedup``
            :math:`= \mathrm{MACs}_\text{dense} / \mathrm{MACs}_\text{format}`.
        """
        batch = check_positive_int(batch, "batch")
        rows = []
        for plan in self.plans.values():
            n_cols = batch * plan.cols_per_sample
            costs = _costs(plan.w2d, plan.dense_w2d, n_cols, self.block_shape,
                           _vector_size(plan.w2d, plan.vector_size), plan.vector_block)
            chosen = costs[plan.format]
            live = plan.w2d != 0
            nnz = int(np.count_nonzero(live))
            rows.append({
                "name": plan.name,
                "kind": plan.kind,
                "format": plan.format,
                "reason": plan.reason,
                "weight_shape": plan.weight_shape,
                "gemm_shape": tuple(plan.dense_w2d.shape),
                "stored_shape": (int(live.any(axis=1).sum()), int(live.any(axis=0).sum())),
                "nnz": nnz,
                "masked_nnz": int(np.count_nonzero(plan.dense_w2d)),
                "density": nnz / plan.dense_w2d.size if plan.dense_w2d.size else 0.0,
                "n_cols": n_cols,
                "costs": costs,
                "macs": chosen["macs"],
                "bytes": chosen["bytes"],
                "ideal_speedup": costs["dense"]["macs"] / chosen["macs"] if chosen["macs"] else float("inf"),
            })
        return rows

    def summary(self, batch: int = 1) -> str:
        """Format :meth:`report` as a table with the whole network's ideal FLOP speedup."""
        rows = self.report(batch)
        lines = [f"InferenceModel(format={self.format!r}, engine={self.engine!r}, dtype={self.dtype}, "
                 f"batch={batch})",
                 f"{'layer':<20} {'format':<8} {'gemm':>12} {'stored':>12} {'density':>8} "
                 f"{'MACs':>12} {'ideal':>7}"]
        for r in rows:
            lines.append(f"{r['name']:<20} {r['format']:<8} {'x'.join(map(str, r['gemm_shape'])):>12} "
                         f"{'x'.join(map(str, r['stored_shape'])):>12} {r['density']:>8.3f} "
                         f"{r['macs']:>12,} {r['ideal_speedup']:>6.2f}x")
        dense = sum(r["costs"]["dense"]["macs"] for r in rows)
        chosen = sum(r["macs"] for r in rows)
        ratio = dense / chosen if chosen else float("inf")
        lines.append(f"total MACs {dense:,} -> {chosen:,}: ideal speedup {ratio:.2f}x")
        if self.folded_batchnorms:
            lines.append(f"BatchNorm folded into convolutions: {', '.join(self.folded_batchnorms)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"InferenceModel(format={self.format!r}, formats={self.formats})"


# --------------------------------------------------------------------------------------------------------
# compile
# --------------------------------------------------------------------------------------------------------


def _inference_layer(module: Module, op: GemmOperator, engine: str) -> Module:
    bias = module.params.get("bias")
    if isinstance(module, Conv2d):
        return InferenceConv2d(op, bias, module.kernel_size, module.stride, module.padding, engine)
    return InferenceLinear(op, bias)


def compile(model: Module, format: str = "auto", *, masks=None,  # noqa: A001, A002 - the issue's names
            block_shape=(4, 4), vector_size: int | None = None, dtype=None, engine: str = "numba",
            auto: str = "rule",
            fold_bn: bool = True, input_shape: tuple[int, ...] | None = None,
            measure_batch: int = 16, rng: np.random.Generator | None = None) -> InferenceModel:
    r"""Compile a (pruned) network into a forward-only :class:`InferenceModel`.

    Parameters
    ----------
    model : Module
        A refimpl network (``Sequential``/``Network`` of the refimpl layers, ``BasicBlock``, ``Residual``).
        Not modified: the engine works on a deep copy.
    format : {"auto", "dense", "compact", "csr", "bsr", "balanced", "vector_block"}
        Storage format of every convolution and linear layer (see the module notes).
    masks : dict of name -> bool ndarray, optional
        Keep masks (``{"conv1.weight": mask}``) applied to the copy first; ``None``: the weights' own zeros.
    block_shape : (int, int), default (4, 4)
        Tile of the ``"bsr"`` and ``"vector_block"`` formats (auto also tries
        :data:`~refimpl.sparse.vector_block.VECTOR_BLOCK_SHAPES` for vector ∧ block).
    vector_size : int, optional
        ``V`` of the ``"balanced"`` format; default per layer the best of
        :data:`~refimpl.sparse.balanced.VECTOR_SIZES` (the pruning's own ``V`` for a balanced layer). For
        ``"vector_block"`` it must divide the tile's width; default per layer the best that does.
    dtype : numpy dtype, optional
        Compute dtype; default the model's (float32 for a default model).
    engine : {"numba", "numpy", "scipy"}
        Kernels: numba's parallel kernels, their NumPy twins, or ``scipy.sparse`` for the SpMM (numba
        im2col). See :mod:`refimpl.sparse.layers`.
    auto : {"rule", "measure"}
        How ``format="auto"`` chooses: the documented cost rule (:data:`AUTO_MAC_COST`) or timing every
        candidate on a random batch of ``measure_batch`` samples.
    fold_bn : bool, default True
        Fold evaluation-mode BatchNorms into the preceding convolutions (exact; see the module notes).
    input_shape : tuple of int, optional
        ``(C, H, W)`` of one sample; default ``model.input_shape``.
    measure_batch : int, default 16
        Batch of the timing runs of ``auto="measure"``.
    rng : numpy.random.Generator, optional
        Source of the random timing batch (default ``default_rng(0)``).

    Returns
    -------
    InferenceModel
        ``forward(x)`` / ``__call__``, ``report(batch)`` (format, shapes, MACs, bytes, ideal speedup per
        layer) and ``summary(batch)``.

    Raises
    ------
    ValueError
        Unknown ``format``, ``engine`` or ``auto``; a bad ``block_shape``; masks that do not fit the model.
    TypeError
        ``model`` is not a refimpl Module.

    Examples
    --------
    >>> from refimpl.models import lenet5
    >>> net = lenet5(input_size=8, dtype=np.float64)
    >>> fast = compile(net, "csr")
    >>> x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    >>> bool(np.allclose(fast(x), net.eval()(x)))
    True
    >>> fast.formats["conv1"]
    'csr'
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a refimpl Module, got {type(model).__name__}")
    if format not in (*FORMATS, "auto"):
        raise ValueError(f"format must be one of {(*FORMATS, 'auto')}, got {format!r}")
    engine = check_engine(engine, SPARSE_ENGINES)
    if auto not in _AUTO_MODES:
        raise ValueError(f"auto must be one of {_AUTO_MODES}, got {auto!r}")
    block_shape = check_block_shape(block_shape)
    if vector_size is not None:
        vector_size = check_positive_int(vector_size, "vector_size")
    measure_batch = check_positive_int(measure_batch, "measure_batch")
    if input_shape is None:
        if not hasattr(model, "input_shape"):
            raise ValueError("input_shape is required for a model without an input_shape attribute")
        input_shape = model.input_shape
    input_shape = tuple(check_positive_int(d, "input_shape entries") for d in input_shape)
    if dtype is None:
        params = list(model.parameters().values())
        dtype = params[0].dtype if params else np.float32
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")

    net = copy.deepcopy(model)
    if masks is not None:
        apply_masks(net, masks)
    net.astype(dtype)
    net.eval()
    set_engine(net, "numpy" if engine == "numpy" else "numba")
    # Geometry (output pixels per sample) and the original masked weights, keyed by layer name; compaction
    # keeps every layer and its name.
    table = {row["name"]: row for row in layer_table(net, input_shape)}
    dense = {name: m.params["weight"].reshape(m.params["weight"].shape[0], -1).copy()
             for name, m in net.named_modules() if isinstance(m, Conv2d | Linear)}
    if format in ("compact", "auto"):
        net, _ = compact(net, input_shape=input_shape)
    folded = fold_batchnorm(net) if fold_bn else []
    # ReLU modules become the one-pass forward-only ReLU (no mask for a backward pass that never comes).
    for name, module in list(net.named_modules()):
        if type(module) is ReLU:
            parent_name, _, leaf = name.rpartition(".")
            _replace_child(net.get_module(parent_name), leaf, InferenceReLU())

    layers = [(name, m) for name, m in net.named_modules() if isinstance(m, Conv2d | Linear)]
    timing_inputs = {}
    if format == "auto" and auto == "measure":
        rng = np.random.default_rng(0) if rng is None else rng
        shapes = {row["name"]: row["input_shape"] for row in layer_table(net, input_shape)}
        timing_inputs = {name: rng.standard_normal((measure_batch, *shapes[name])).astype(dtype)
                         for name, _ in layers}

    plans = {}
    for name, module in layers:
        w = module.params["weight"]
        w2d = np.ascontiguousarray(w.reshape(w.shape[0], -1))
        v = _vector_size(w2d, vector_size)   # the balanced format's V for this layer (chosen or costed)
        vb = _vector_block_layout(w2d, block_shape, vector_size, format == "vector_block")

        def make_layer(fmt, module=module, w2d=w2d, v=v, vb=vb):
            shape, size = (vb.block_shape, vb.vector_size) if fmt == "vector_block" else (block_shape, v)
            return _inference_layer(module, make_operator(w2d, fmt, block_shape=shape, vector_size=size,
                                                          engine=engine), engine)

        if format != "auto":
            chosen, reason = format, "requested"
        elif auto == "rule":
            chosen, reason = _choose_by_rule(w2d, block_shape, v, vb)
        else:
            chosen, reason = _choose_by_measurement(make_layer, timing_inputs[name], _candidates(w2d, v, vb))
        layer = make_layer(chosen)
        parent_name, _, leaf = name.rpartition(".")
        _replace_child(net.get_module(parent_name), leaf, layer)
        out_shape = table[name]["output_shape"]
        cols = int(out_shape[1] * out_shape[2]) if isinstance(module, Conv2d) else 1
        plans[name] = LayerPlan(name=name, kind=type(module).__name__, format=chosen, reason=reason,
                                weight_shape=tuple(table[name]["weight_shape"]),
                                dense_w2d=dense[name], w2d=w2d, cols_per_sample=cols, layer=layer,
                                vector_size=v, vector_block=vb)
    return InferenceModel(net, plans, format=format, engine=engine, dtype=dtype, input_shape=input_shape,
                          block_shape=block_shape, folded=folded, vector_size=vector_size)
