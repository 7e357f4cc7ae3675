r"""Check someone else's layer against refimpl's: forward and backward on the same inputs, worst entry first.

A layer is a pair ``forward(*inputs, **hyper) -> (out, cache)`` and ``backward(dout, cache) -> grads``,
the calling convention of :mod:`refimpl.nn` (``docs/ARCHITECTURE.md``, "Public API contract"). Wrap
another framework's layer in two such functions and call::

    from refimpl.testing import check_layer
    report = check_layer(my_conv_forward, my_conv_backward, "conv2d")
    assert report.passed, report      # names the case, the output (out, dx, dw, db) and its worst entry

The layers and their cases are :data:`LAYERS`: every case is a set of input shapes and hyperparameters
chosen to exercise one rule (stride and padding variants, a ``1 x 1`` kernel, a kernel as large as the
input, overlapping pooling windows, ties inside a max-pooling window, ReLU at exactly 0, BatchNorm in
training and evaluation mode, a loss with large logits). The same table generates the golden vectors of
:mod:`refimpl.testing.golden`.

Inputs are *dyadic* (multiples of 1/8 in [-2, 2], :func:`make_inputs`): every product and sum of a
convolution, linear layer or pooling of them is exact in float32 and float64, so any correct
implementation, whatever its summation order, gets these outputs exactly. BatchNorm (a square root and a
division) and the loss (exponentials and logarithms) are compared to
:func:`~refimpl.testing.compare.default_rtol`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from refimpl.testing.compare import Mismatch, compare_arrays, default_rtol

__all__ = [
    "LAYERS",
    "LayerCase",
    "LayerFailure",
    "LayerReport",
    "LayerSpec",
    "check_layer",
    "make_inputs",
    "run_layer",
]


@dataclass(frozen=True)
class LayerCase:
    """Inputs and hyperparameters of one check, and the rule it exercises."""

    name: str
    shapes: dict
    """Array input name -> shape (the forward's positional inputs, in order)."""
    hyper: dict
    """Keyword hyperparameters of the forward (``stride``, ``kernel_size``, ``training`` ...)."""
    rule: str
    """What this case exercises, in one sentence."""
    values: str = "dyadic"
    """``"dyadic"`` (multiples of 1/8, exact arithmetic) or ``"ties"`` (small integers, equal entries)."""


@dataclass(frozen=True)
class LayerSpec:
    """A layer's refimpl functions, the names of its inputs and outputs, and its cases."""

    forward: Callable
    backward: Callable | None
    outputs: tuple[str, ...]
    """Names of the forward's output (``"out"``, or ``"loss"``) then of the backward's gradients."""
    cases: tuple[LayerCase, ...]
    updated: tuple[str, ...] = ()
    """Inputs the forward updates in place (BatchNorm's running statistics), compared afterwards."""
    fused: bool = False
    """The forward returns ``(value, gradient)`` itself (the loss) and there is no backward."""


def _batchnorm2d_forward_numpy(*args, **kwargs):
    """Run :func:`refimpl.nn.batchnorm2d_forward` with its NumPy engine, the oracle's reference.

    The plain whole-array version is the reference; the numba engine sums in another order
    (``tests/test_nn_layers.py`` checks the two agree), and the golden vectors must not depend on the
    kernel the layer uses for speed.
    """
    from refimpl import nn

    return nn.batchnorm2d_forward(*args, engine="numpy", **kwargs)


_batchnorm2d_forward_numpy.__name__ = "batchnorm2d_forward"  # the name the golden files record


def _layers() -> dict[str, LayerSpec]:
    from refimpl import nn

    conv = "y[n,f,i,j] = b[f] + sum_{c,u,v} w[f,c,u,v] x_pad[n,c,s*i+u,s*j+v], OH = (H + 2p - KH) // s + 1"
    return {
        "conv2d": LayerSpec(
            nn.conv2d_forward,
            nn.conv2d_backward,
            ("out", "dx", "dw", "db"),
            (
                LayerCase(
                    "s1-p0",
                    {"x": (2, 3, 6, 6), "w": (4, 3, 3, 3), "b": (4,)},
                    {"stride": 1, "padding": 0},
                    conv,
                ),
                LayerCase(
                    "s2-p1",
                    {"x": (2, 3, 7, 7), "w": (4, 3, 3, 3), "b": (4,)},
                    {"stride": 2, "padding": 1},
                    "stride 2 with zero padding 1: window (i, j) starts at (s*i - p, s*j - p) of x",
                ),
                LayerCase(
                    "s1-p2-1x1",
                    {"x": (1, 2, 4, 5), "w": (3, 2, 1, 1), "b": (3,)},
                    {"stride": 1, "padding": 2},
                    "1x1 kernel, padding 2: the border outputs are the bias",
                ),
                LayerCase(
                    "s3-p0-rect",
                    {"x": (2, 2, 8, 7), "w": (3, 2, 2, 3), "b": (3,)},
                    {"stride": 3, "padding": 0},
                    "stride 3 > kernel height 2 (rows skipped), non-square kernel and input",
                ),
                LayerCase(
                    "full-window",
                    {"x": (1, 3, 3, 3), "w": (2, 3, 3, 3), "b": (2,)},
                    {"stride": 1, "padding": 0},
                    "kernel as large as the input: one output per filter",
                ),
            ),
        ),
        "linear": LayerSpec(
            nn.linear_forward,
            nn.linear_backward,
            ("out", "dx", "dw", "db"),
            (
                LayerCase(
                    "batch5",
                    {"x": (5, 7), "w": (4, 7), "b": (4,)},
                    {},
                    "y = x @ w.T + b with w of shape (out, in)",
                ),
                LayerCase("batch1", {"x": (1, 3), "w": (2, 3), "b": (2,)}, {}, "a single sample"),
            ),
        ),
        "maxpool2d": LayerSpec(
            nn.maxpool2d_forward,
            nn.maxpool2d_backward,
            ("out", "dx"),
            (
                LayerCase(
                    "k2-s2",
                    {"x": (2, 3, 6, 6)},
                    {"kernel_size": 2, "stride": 2},
                    "max over 2x2 windows; the gradient goes to the window's maximum",
                ),
                LayerCase(
                    "k3-s1-overlap",
                    {"x": (1, 2, 5, 5)},
                    {"kernel_size": 3, "stride": 1},
                    "overlapping windows: an entry that wins several windows receives the sum",
                ),
                LayerCase(
                    "k2-s2-odd",
                    {"x": (1, 1, 5, 5)},
                    {"kernel_size": 2, "stride": 2},
                    "odd input size: the last row and column are in no window (gradient 0)",
                ),
                LayerCase(
                    "k2-s2-ties",
                    {"x": (2, 2, 4, 4)},
                    {"kernel_size": 2, "stride": 2},
                    "ties inside a window: the gradient goes to the first maximum in row-major order",
                    values="ties",
                ),
            ),
        ),
        "avgpool2d": LayerSpec(
            nn.avgpool2d_forward,
            nn.avgpool2d_backward,
            ("out", "dx"),
            (
                LayerCase(
                    "k2-s2",
                    {"x": (2, 3, 6, 6)},
                    {"kernel_size": 2, "stride": 2},
                    "mean over 2x2 windows; the gradient is spread evenly",
                ),
                LayerCase(
                    "k3-s2-overlap",
                    {"x": (1, 2, 7, 7)},
                    {"kernel_size": 3, "stride": 2},
                    "overlapping 3x3 windows at stride 2",
                ),
            ),
        ),
        "batchnorm2d": LayerSpec(
            _batchnorm2d_forward_numpy,
            nn.batchnorm2d_backward,
            ("out", "dx", "dgamma", "dbeta"),
            (
                LayerCase(
                    "train",
                    {
                        "x": (2, 3, 4, 4),
                        "gamma": (3,),
                        "beta": (3,),
                        "running_mean": (3,),
                        "running_var": (3,),
                    },
                    {"training": True, "momentum": 0.1, "eps": 1e-5},
                    "batch statistics (biased variance); running mean/var updated in place with the "
                    "unbiased variance, m = momentum",
                ),
                LayerCase(
                    "eval",
                    {
                        "x": (2, 3, 4, 4),
                        "gamma": (3,),
                        "beta": (3,),
                        "running_mean": (3,),
                        "running_var": (3,),
                    },
                    {"training": False, "momentum": 0.1, "eps": 1e-5},
                    "running statistics used, nothing updated; the layer is affine in x",
                ),
            ),
            updated=("running_mean", "running_var"),
        ),
        "relu": LayerSpec(
            nn.relu_forward,
            nn.relu_backward,
            ("out", "dx"),
            (
                LayerCase("dyadic", {"x": (2, 3, 4, 4)}, {}, "y = max(x, 0), dy/dx = [x > 0]"),
                LayerCase("zeros", {"x": (3, 8)}, {}, "the derivative at exactly x = 0 is 0", values="ties"),
            ),
        ),
        "softmax_cross_entropy": LayerSpec(
            nn.softmax_cross_entropy,
            None,
            ("loss", "dlogits"),
            (
                LayerCase(
                    "batch5",
                    {"logits": (5, 4), "labels": (5,)},
                    {},
                    "mean over the batch of log-sum-exp(z) - z[label]; gradient (softmax - onehot) / N",
                ),
                LayerCase(
                    "large-logits",
                    {"logits": (3, 6), "labels": (3,)},
                    {"shift": 1000.0},
                    "logits near 1000: the log-sum-exp must subtract the row maximum",
                ),
            ),
            fused=True,
        ),
    }


#: Layer name -> :class:`LayerSpec` (refimpl's functions, outputs, cases).
LAYERS: dict[str, LayerSpec] = _layers()


def make_inputs(case: LayerCase, rng: np.random.Generator, dtype) -> dict[str, np.ndarray]:
    """Draw the inputs of ``case`` in ``dtype``: dyadic values (multiples of 1/8 in [-2, 2]) or ties.

    Names get the values their role needs: ``running_var`` in [0.5, 2], ``gamma`` in [0.5, 1.5], ``labels``
    integers in ``[0, K)`` (int64), the loss's ``logits`` plus the case's ``shift``.
    """
    inputs = {}
    for name, shape in case.shapes.items():
        if name == "labels":
            inputs[name] = rng.integers(0, case.shapes["logits"][1], size=shape).astype(np.int64)
            continue
        if name == "running_var":
            values = rng.integers(4, 17, size=shape) / 8
        elif name == "gamma":
            values = rng.integers(4, 13, size=shape) / 8
        elif case.values == "ties":
            values = rng.integers(-2, 3, size=shape).astype(np.float64)
        else:
            values = rng.integers(-16, 17, size=shape) / 8
        if name == "logits":
            values = values + case.hyper.get("shift", 0.0)
        inputs[name] = values.astype(dtype)
    return inputs


def _forward_args(case: LayerCase, inputs: dict) -> tuple[list, dict]:
    hyper = {k: v for k, v in case.hyper.items() if k != "shift"}
    return [inputs[name] for name in case.shapes], hyper


def run_layer(
    spec: LayerSpec, case: LayerCase, inputs: dict, dout=None, *, forward=None, backward=None
) -> dict[str, np.ndarray]:
    """Run a layer (refimpl's, or ``forward``/``backward``) on copies of ``inputs``; return its outputs.

    ``dout`` is the upstream gradient (default: none, forward only). The result maps
    :attr:`LayerSpec.outputs` (and :attr:`LayerSpec.updated`, read after the forward) to arrays.
    Exceptions propagate.
    """
    forward = spec.forward if forward is None else forward
    backward = spec.backward if backward is None else backward
    copies = {k: np.array(v, copy=True) for k, v in inputs.items()}
    args, hyper = _forward_args(case, copies)
    value, cache = forward(*args, **hyper)
    names = spec.outputs
    result = {names[0]: np.asarray(value)}
    result.update({name: copies[name] for name in spec.updated})
    if spec.fused:
        result[names[1]] = np.asarray(cache)
    elif dout is not None:
        grads = backward(dout, cache)
        grads = grads if isinstance(grads, tuple) else (grads,)
        result.update({name: np.asarray(g) for name, g in zip(names[1:], grads, strict=False)})
    return result


@dataclass
class LayerFailure:
    """One output of one case that differs from refimpl's."""

    layer: str
    case: str
    dtype: str
    rule: str
    mismatch: Mismatch | None
    error: str = ""
    """The exception the layer under test raised, if any."""

    def __str__(self) -> str:
        what = self.error or str(self.mismatch)
        return f"{self.layer} case {self.case!r} ({self.dtype}; {self.rule}): {what}"


@dataclass
class LayerReport:
    """Outcome of :func:`check_layer`: ``passed``, the ``failures`` (worst entry each) and ``str()``."""

    layer: str
    n_cases: int = 0
    failures: list[LayerFailure] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when every output of every case matched."""
        return not self.failures

    def __str__(self) -> str:
        if self.passed:
            return f"check_layer({self.layer!r}): passed ({self.n_cases} cases, forward and backward)"
        lines = [f"check_layer({self.layer!r}): FAILED {len(self.failures)} outputs in {self.n_cases} cases"]
        lines += [f"  {f}" for f in self.failures]
        return "\n".join(lines)


def check_layer(
    forward: Callable,
    backward: Callable | None,
    layer: str,
    *,
    seed: int = 0,
    dtypes=(np.float64, np.float32),
    rtol: float | None = None,
) -> LayerReport:
    """Compare a foreign layer with refimpl's on every case of :data:`LAYERS` ``[layer]``.

    Parameters
    ----------
    forward : callable
        ``forward(*inputs, **hyper) -> (out, cache)`` with refimpl's signature for ``layer`` (e.g.
        ``conv2d_forward(x, w, b, stride=1, padding=0)``); for ``"softmax_cross_entropy"``
        ``forward(logits, labels) -> (loss, dlogits)``.
    backward : callable or None
        ``backward(dout, cache) -> grads`` (a tuple in refimpl's order, e.g. ``(dx, dw, db)``, or one
        array); ``None`` checks the forward only (and must be ``None`` for the loss).
    layer : str
        A key of :data:`LAYERS`: ``"conv2d"``, ``"linear"``, ``"maxpool2d"``, ``"avgpool2d"``,
        ``"batchnorm2d"``, ``"relu"``, ``"softmax_cross_entropy"``.
    seed : int
        Seed of the inputs and of the upstream gradients.
    dtypes : sequence of float dtypes
        Every case runs once per dtype; outputs must keep it.
    rtol : float, optional
        Tolerance relative to the largest expected entry (``atol = rtol * max|expected|``); default
        :func:`~refimpl.testing.compare.default_rtol` of the dtype.

    Returns
    -------
    LayerReport
        One :class:`LayerFailure` per output that differs (its shape, dtype, or its worst entry with
        expected and got), or the exception the layer raised.

    Examples
    --------
    >>> from refimpl.nn import conv2d_forward, conv2d_backward
    >>> check_layer(conv2d_forward, conv2d_backward, "conv2d").passed
    True
    """
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {sorted(LAYERS)}, got {layer!r}")
    if not callable(forward):
        raise TypeError(f"forward must be callable, got {forward!r}")
    if backward is not None and not callable(backward):
        raise TypeError(f"backward must be callable or None, got {backward!r}")
    spec = LAYERS[layer]
    report = LayerReport(layer)
    rng = np.random.default_rng(seed)
    for case in spec.cases:
        for dtype in dtypes:
            dt = np.dtype(dtype)
            if not np.issubdtype(dt, np.floating):
                raise TypeError(f"dtypes must be floating dtypes, got {dtype!r}")
            report.n_cases += 1
            inputs = make_inputs(case, rng, dt)
            expected = run_layer(spec, case, inputs)
            dout = (
                None
                if spec.fused
                else (rng.integers(-16, 17, size=expected[spec.outputs[0]].shape) / 8).astype(dt)
            )
            expected = run_layer(spec, case, inputs, dout)
            tol = default_rtol(dt) if rtol is None else float(rtol)
            try:
                got = run_layer(spec, case, inputs, forward=forward, backward=backward)
                # The backward runs only on a forward output of the right shape (else dout cannot fit it).
                if backward is not None and got[spec.outputs[0]].shape == expected[spec.outputs[0]].shape:
                    got = run_layer(spec, case, inputs, dout, forward=forward, backward=backward)
            except Exception as err:  # noqa: BLE001 - a raising layer is a finding to report
                report.failures.append(
                    LayerFailure(
                        layer, case.name, dt.name, case.rule, None, f"raised {type(err).__name__}: {err}"
                    )
                )
                continue
            for name, exp in expected.items():
                if name not in got and name in spec.outputs[1:] and not spec.fused:
                    continue  # no backward given, or skipped after a forward of the wrong shape
                atol = tol * float(np.max(np.abs(exp), initial=0.0))
                # The loss is a Python float (float64) whatever the logits' dtype.
                mismatch = compare_arrays(
                    name, exp, got.get(name), rtol=tol, atol=atol, check_dtype=name != "loss"
                )
                if mismatch is not None:
                    report.failures.append(LayerFailure(layer, case.name, dt.name, case.rule, mismatch))
    return report
