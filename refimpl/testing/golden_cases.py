r"""The golden cases: every projection, every layer, one ADMM step and one compaction, with refimpl's answers.

:func:`golden_cases` builds the list that ``refimpl oracle generate`` writes (:mod:`refimpl.testing.golden`).
A case is a :class:`GoldenCase`: named inputs, parameters, refimpl's outputs, a tolerance per output and
the rule it exercises. Every case draws its inputs from its own seed (the CRC-32 of its name), so the set
is the same on every run, and adding a case changes no other.

**Projections** (``kind = "projection"``), float32 and float64, for every structure: a conv and a linear
weight (Gaussian), one with ``sparsity=`` and one with ``keep=``; a weight with ties (entries -1, 0, 1, a
filter repeated); the half-way counts ``sparsity = 0.5`` of 5 groups (prunes ``round(2.5) = 2``) and of 7
groups (prunes ``round(3.5) = 4``); edge cases (keep nothing, keep everything, an all-zero weight, edge
blocks and edge vectors). Compared exactly (tolerance 0), except unification, whose magnitudes are means.

**Layers** (``kind = "layer"``), float32 and float64: every case of :data:`refimpl.testing.layers.LAYERS`,
forward and backward, with dyadic inputs (exact arithmetic for conv, linear, pooling, ReLU; computed in
float64 and rounded once to the case's dtype).

**ADMM step** (``kind = "admm_step"``): ``W' = W - lr (grad + rho (W - Z + U))``, ``Z' = Π(W' + U)``,
``U' = U + W' - Z'`` (:mod:`refimpl.testing.admm`), dyadic values, exact.

**Compaction** (``kind = "compaction"``): conv1 (2→4, 3x3) → ReLU → conv2 (4→3, 2x2, no padding) with
two dead filters in conv1, one whose bias is positive (its constant ``relu(b)`` is folded into conv2's
bias) and one whose bias is negative (its output is 0): the compact weights, biases, the kept channels and
the network's output on an input.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from refimpl.testing.compare import default_rtol

__all__ = ["GoldenCase", "golden_cases"]

_DTYPES = (np.float32, np.float64)


@dataclass
class GoldenCase:
    """One golden case (see the module docstring and ``manifest.json``'s description)."""

    name: str
    kind: str
    function: str
    """The refimpl function(s) whose contract the case checks."""
    rule: str
    inputs: dict
    params: dict
    outputs: dict
    tolerances: dict = field(default_factory=dict)
    """Output name -> ``(rtol, atol)``; missing means exact."""


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _dt(dtype) -> str:
    return "f32" if np.dtype(dtype) == np.float32 else "f64"


def _ties(rng, shape, dtype) -> np.ndarray:
    w = rng.integers(-1, 2, size=shape).astype(dtype)
    w[-1] = w[0]  # the last filter repeats the first: equal groups of every kind
    return w


# --------------------------------------------------------------------------------------------------
# Projections
# --------------------------------------------------------------------------------------------------

#: structure -> (params, conv shape, linear shape, (shape, params) with n groups for the half-way cases).
_SPECS = {
    "unstructured": ({}, (4, 3, 2, 2), (6, 8), lambda n: ((1, n), {})),
    "filters": ({}, (6, 3, 2, 2), (6, 8), lambda n: ((n, 2, 1, 2), {})),
    "channels": ({}, (4, 6, 2, 2), (6, 8), lambda n: ((2, n, 2, 1), {})),
    "shapes": ({}, (4, 3, 2, 2), (6, 8), lambda n: ((3, n), {})),
    "kernels": ({}, (4, 3, 2, 2), (6, 8), lambda n: ((n, 1, 2, 2), {})),
    "blocks": ({"block_shape": (2, 2)}, (4, 3, 2, 2), (6, 8), lambda n: ((n, 2), {"block_shape": (1, 2)})),
    "balanced": ({"vector_size": 4}, (4, 3, 2, 2), (6, 8), lambda n: ((2, 2 * n), {"vector_size": n})),
    "unified": (
        {"block_shape": (2, 2)},
        (4, 3, 2, 2),
        (6, 8),
        lambda n: ((1, 2 * n), {"block_shape": (1, 2)}),
    ),
}

_RULES = {
    "unstructured": "keep the k entries of largest |w|",
    "filters": "keep the k filters (GEMM rows) of largest L2 norm",
    "channels": "keep the k input channels W[:, c] of largest L2 norm",
    "shapes": "keep the k GEMM columns (c, kh, kw) of largest L2 norm",
    "kernels": "keep the k kernels W[f, c] of largest L2 norm",
    "blocks": "keep the k bh x bw blocks of the GEMM view of largest L2 norm (edge blocks smaller)",
    "balanced": "keep the k_v largest |w| of every length-V vector of every GEMM row",
    "nm": "keep the n largest |w| of every m consecutive entries of every GEMM row",
    "vector_block": "balanced mask AND the k_b blocks of largest L2 norm of the vector-masked weight",
    "unified": "unify (sign(v) mean|v|) the U blocks of smallest distortion; joint: exact split scan",
    "unstructured_global": "keep the k largest |w| over all layers, flattened and concatenated in order",
}


def _project(structure: str, w, params: dict):
    from refimpl.projections import PROJECTIONS

    fn = PROJECTIONS[structure][0]
    positional = {
        "blocks": ("block_shape",),
        "balanced": ("vector_size",),
        "nm": ("n", "m"),
        "vector_block": ("vector_size", "block_shape"),
        "unified": ("block_shape",),
    }.get(structure, ())
    args = [params[p] for p in positional]
    return fn(w, *args, **{k: v for k, v in params.items() if k not in positional})


def _projection_case(name: str, structure: str, w: np.ndarray, params: dict, rule: str) -> GoldenCase:
    z = _project(structure, w, params)
    tolerances = {}
    if structure == "unified":
        rtol = default_rtol(w.dtype)
        tolerances["z"] = (rtol, rtol * float(np.max(np.abs(w))))
    function = f"project_{structure}"
    json_params = {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}
    return GoldenCase(
        name,
        "projection",
        function,
        f"{_RULES[structure]}; {rule}",
        {"w": w},
        {"structure": structure, **json_params},
        {"z": z},
        tolerances,
    )


def _count_cases(structure: str, dtype) -> list[GoldenCase]:
    """Gaussian conv/linear with sparsity= and keep=, ties, half-way counts, keep 0 / all, zeros, edges."""
    base, conv, linear, halfway = _SPECS[structure]
    d = _dt(dtype)
    cases = []

    def add(tag, w, params, rule):
        name = f"{structure}-{tag}-{d}"
        cases.append(_projection_case(name, structure, w, params, rule))

    def draw(tag, shape):
        return _rng(f"{structure}-{tag}-{d}").standard_normal(shape).astype(dtype)

    count = "unify" if structure == "unified" else "sparsity"
    add(
        "conv-sparsity",
        draw("conv-sparsity", conv),
        {**base, count: 0.5},
        "sparsity=s prunes round(s n) groups, round-half-to-even",
    )
    add("linear-keep", draw("linear-keep", linear), {**base, "keep": 2}, "keep=k keeps k groups")
    add(
        "ties",
        _ties(_rng(f"{structure}-ties-{d}"), conv, dtype),
        {**base, "keep": 3},
        "ties (entries -1, 0, 1; the last filter repeats the first): the lower flat index is kept",
    )
    for tag, n, rule in (
        ("halfway-down", 5, "n=5 groups, sparsity=0.5: round(2.5) = 2 pruned (half to even)"),
        ("halfway-up", 7, "n=7 groups, sparsity=0.5: round(3.5) = 4 pruned (half to even)"),
    ):
        shape, extra = halfway(n)
        add(tag, draw(tag, shape), {**base, **extra, count: 0.5}, rule)
    add("keep-none", draw("keep-none", linear), {**base, count: 1.0}, "sparsity=1 prunes every group")
    add("keep-all", draw("keep-all", conv), {**base, count: 0.0}, "sparsity=0 returns the input unchanged")
    add("zeros", np.zeros(conv, dtype), {**base, "keep": 1}, "an all-zero weight: ties everywhere, result 0")
    if structure == "blocks":
        add(
            "edge-blocks",
            draw("edge-blocks", conv),
            {"block_shape": (3, 5), "keep": 2},
            "block_shape (3, 5) on a 4 x 12 GEMM view: the edge blocks (1 x 5, 3 x 2, 1 x 2) rank by "
            "their own norm",
        )
    if structure == "balanced":
        add(
            "edge-vector",
            draw("edge-vector", conv),
            {"vector_size": 5, "keep": 3},
            "V=5 on rows of 12: the edge vector of 2 entries keeps round(3 * 2 / 5) = round(1.2) = 1",
        )
        add(
            "edge-vector-half",
            draw("edge-vector-half", (2, 6)),
            {"vector_size": 4, "keep": 1},
            "V=4 on rows of 6: the edge vector of 2 keeps round(1 * 2 / 4) = round(0.5) = 0 (half to even)",
        )
    if structure == "unified":
        add(
            "joint",
            draw("joint", conv),
            {"block_shape": (2, 2), "unify": 0.25, "prune": 0.25},
            "prune round(0.25 n) and unify round(0.25 n) other blocks: exact assignment by the premium split",
        )
        add(
            "edge-blocks",
            draw("edge-blocks", conv),
            {"block_shape": (3, 5), "sparsity": 0.5},
            "edge blocks unify to their own mean",
        )
    return cases


def _nm_cases(dtype) -> list[GoldenCase]:
    d = _dt(dtype)
    cases = []
    for tag, shape, n, m, rule in (
        ("2of4-conv", (4, 3, 2, 2), 2, 4, "2:4 along the GEMM rows (the input dimension c, kh, kw)"),
        ("1of4-linear", (6, 8), 1, 4, "1:4"),
        ("2of4-ties", (4, 3, 2, 2), 2, 4, "ties inside a group of m: the lower column is kept"),
        ("0of4", (4, 8), 0, 4, "n=0 prunes everything"),
        ("row", (3, 6), 2, 6, "m = the row length: one group per row"),
    ):
        name = f"nm-{tag}-{d}"
        rng = _rng(name)
        w = _ties(rng, shape, dtype) if "ties" in tag else rng.standard_normal(shape).astype(dtype)
        cases.append(_projection_case(name, "nm", w, {"n": n, "m": m}, rule))
    return cases


def _vector_block_cases(dtype) -> list[GoldenCase]:
    d = _dt(dtype)
    cases = []
    for tag, shape, params, rule in (
        (
            "keep",
            (4, 3, 2, 2),
            {"vector_size": 4, "block_shape": (2, 4), "vector_keep": 2, "block_keep": 3},
            "vector_keep per vector AND block_keep blocks",
        ),
        (
            "sparsity",
            (6, 8),
            {"vector_size": 4, "block_shape": (2, 2), "vector_sparsity": 0.5, "block_sparsity": 0.5},
            "both parts by sparsity (round-half-to-even each)",
        ),
        (
            "total",
            (4, 3, 2, 2),
            {"vector_size": 4, "block_shape": (2, 4), "total_sparsity": 0.75},
            "total_sparsity split in log space: k_v = ceil(V d^0.5), k_b = round(n_b d V / k_v)",
        ),
        (
            "ties",
            (4, 3, 2, 2),
            {"vector_size": 4, "block_shape": (2, 2), "vector_keep": 2, "block_keep": 2},
            "ties in both masks: the lower index is kept",
        ),
    ):
        name = f"vector_block-{tag}-{d}"
        rng = _rng(name)
        w = _ties(rng, shape, dtype) if tag == "ties" else rng.standard_normal(shape).astype(dtype)
        cases.append(_projection_case(name, "vector_block", w, params, rule))
    return cases


def _global_cases(dtype) -> list[GoldenCase]:
    from refimpl.projections import project_unstructured_global

    d = _dt(dtype)
    cases = []
    for tag, params in (("sparsity", {"sparsity": 0.5}), ("ties", {"keep": 7})):
        name = f"unstructured_global-{tag}-{d}"
        rng = _rng(name)
        if tag == "ties":
            ws = [_ties(rng, (3, 2, 1, 2), dtype), _ties(rng, (4, 3), dtype)]
        else:
            ws = [rng.standard_normal((3, 2, 1, 2)).astype(dtype), rng.standard_normal((4, 3)).astype(dtype)]
        zs = project_unstructured_global(ws, **params)
        cases.append(
            GoldenCase(
                name,
                "projection",
                "project_unstructured_global",
                f"{_RULES['unstructured_global']}; ties: lower index of the concatenation",
                {"w0": ws[0], "w1": ws[1]},
                {"structure": "unstructured_global", **params},
                {"z0": zs[0], "z1": zs[1]},
            )
        )
    return cases


# --------------------------------------------------------------------------------------------------
# Layers, the ADMM step, compaction
# --------------------------------------------------------------------------------------------------


def _layer_cases(dtype) -> list[GoldenCase]:
    from refimpl.testing.layers import LAYERS, make_inputs, run_layer

    d = _dt(dtype)
    cases = []
    for layer, spec in LAYERS.items():
        for case in spec.cases:
            name = f"{layer}-{case.name}-{d}"
            rng = _rng(name)
            inputs = make_inputs(case, rng, dtype)
            exact = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in inputs.items()}
            out0 = run_layer(spec, case, exact)[spec.outputs[0]]
            if not spec.fused:
                inputs["dout"] = (rng.integers(-16, 17, size=out0.shape) / 8).astype(dtype)
            outputs = run_layer(spec, case, exact, None if spec.fused else inputs["dout"].astype(np.float64))
            outputs = {k: (v if k == "loss" else v.astype(dtype)) for k, v in outputs.items()}
            rtol = default_rtol(dtype)
            tolerances = {k: (rtol, rtol * float(np.max(np.abs(v), initial=0.0))) for k, v in outputs.items()}
            function = f"{spec.forward.__name__}" + (f" + {spec.backward.__name__}" if spec.backward else "")
            cases.append(
                GoldenCase(
                    name,
                    "layer",
                    function,
                    case.rule,
                    inputs,
                    {"layer": layer, **{k: v for k, v in case.hyper.items() if k != "shift"}},
                    outputs,
                    tolerances,
                )
            )
    return cases


def _admm_cases(dtype) -> list[GoldenCase]:
    from refimpl.projections.reference import REFERENCES
    from refimpl.testing.admm import reference_admm_step

    d = _dt(dtype)
    cases = []
    for structure, params, shape in (
        ("filters", {"keep": 3}, (6, 3, 2, 2)),
        ("unstructured", {"sparsity": 0.75}, (4, 6)),
    ):
        name = f"admm_step-{structure}-{d}"
        rng = _rng(name)

        def dyadic(scale=1, rng=rng, shape=shape):
            return (rng.integers(-16, 17, size=shape) / (8 * scale)).astype(dtype)

        def project(v, structure=structure, params=params):
            return REFERENCES[structure](v, **params)

        W, Z, U, grad = dyadic(), project(dyadic()), dyadic(4), dyadic()
        rho, lr = 0.5, 0.25
        W1, Z1, U1 = reference_admm_step(W, Z, U, grad, rho=rho, lr=lr, project=project)
        rtol = default_rtol(dtype)
        cases.append(
            GoldenCase(
                name,
                "admm_step",
                "admm_penalty_gradient + admm_update",
                "W' = W - lr (grad + rho (W - Z + U)); Z' = projection of W' + U (not of W'); "
                "U' = U + W' - Z'",
                {"W": W, "Z": Z, "U": U, "grad": grad},
                {"rho": rho, "lr": lr, "structure": structure, **params},
                {"W": W1, "Z": Z1, "U": U1},
                {k: (rtol, rtol * float(np.max(np.abs(v)))) for k, v in (("W", W1), ("Z", Z1), ("U", U1))},
            )
        )
    return cases


def _compaction_case() -> GoldenCase:
    from refimpl.compact import compact
    from refimpl.nn import Conv2d, ReLU, Sequential

    name = "compaction-conv-relu-conv-f64"
    rng = _rng(name)
    model = Sequential(
        [
            ("conv1", Conv2d(2, 4, 3, dtype=np.float64, rng=rng)),
            ("relu", ReLU()),
            ("conv2", Conv2d(4, 3, 2, dtype=np.float64, rng=rng)),
        ]
    )
    params = {}
    for layer, w_shape in (("conv1", (4, 2, 3, 3)), ("conv2", (3, 4, 2, 2))):
        params[f"{layer}.weight"] = rng.integers(-16, 17, size=w_shape) / 8
        params[f"{layer}.bias"] = rng.integers(-16, 17, size=w_shape[0]) / 8
    params["conv1.bias"][1], params["conv1.bias"][3] = 0.5, -0.25
    for key, value in params.items():
        layer, kind = key.split(".")
        model[layer].params[kind][...] = value
    mask = np.ones((4, 2, 3, 3), dtype=bool)
    mask[[1, 3]] = False
    model.eval()
    small, report = compact(model, {"conv1.weight": mask}, input_shape=(2, 6, 6))
    x = rng.integers(-16, 17, size=(2, 2, 6, 6)) / 8
    kept = next(layer for layer in report.layers if layer.name == "conv1").kept_filters
    outputs = {
        f"{layer}_{kind}": small[layer].params[kind].copy()
        for layer in ("conv1", "conv2")
        for kind in ("weight", "bias")
    }
    outputs["kept_filters"] = np.asarray(kept, dtype=np.int64)
    outputs["y"] = small.forward(x)
    rtol = default_rtol(np.float64)
    tolerances = {
        k: (rtol, rtol * float(np.max(np.abs(v)))) for k, v in outputs.items() if k != "kept_filters"
    }
    inputs = {key.replace(".", "_"): value for key, value in params.items()}
    inputs["conv1_mask"], inputs["x"] = mask, x
    return GoldenCase(
        name,
        "compaction",
        "compact",
        "mask conv1's filters 1 and 3; a dead filter's constant relu(b) is folded into the unpadded "
        "consumer's bias (conv2.bias[j] += relu(b_f) * sum of conv2.weight[j, f]) and both are removed "
        "with conv2's input channels 1 and 3; y = the compact network on x equals the masked network",
        inputs,
        {
            "layers": "conv1: Conv2d(2, 4, 3), stride 1, padding 0 -> ReLU -> conv2: Conv2d(4, 3, 2), "
            "stride 1, padding 0"
        },
        outputs,
        tolerances,
    )


def golden_cases() -> list[GoldenCase]:
    """Every golden case, in a fixed order (module docstring)."""
    cases = []
    for dtype in _DTYPES:
        for structure in _SPECS:
            cases += _count_cases(structure, dtype)
        cases += _nm_cases(dtype) + _vector_block_cases(dtype) + _global_cases(dtype)
        cases += _layer_cases(dtype) + _admm_cases(dtype)
    cases.append(_compaction_case())
    return cases
