r"""Autograders of ``notebooks/08_exercises``: each checks a student's function and shows what is wrong.

A grader never raises on a wrong answer: it returns a :class:`Grade` whose ``str()`` says what was checked
or, on a failure, the **smallest counterexample** found (input, expected, got), so that a student can
redo it by hand. A function that still raises ``NotImplementedError`` is graded "not done yet".

=====================================  =================================================================
grader                                 what it checks
=====================================  =================================================================
:func:`grade_project_filters`          :func:`refimpl.testing.check_projection` against ``"filters"``
                                       (in the set, nearest point, tie rule, input not mutated...) for
                                       ``keep`` = 1, 2 and 0, on 2-D and 4-D weights
:func:`grade_conv2d_backward`          :func:`refimpl.testing.check_layer` ``(..., "conv2d")``: ``dx``,
                                       ``dw``, ``db`` equal refimpl's on the oracle's convolution cases
                                       (exact dyadic inputs, float64); a failure is shown on the
                                       smallest case that has it
:func:`grade_admm_update`              :func:`refimpl.testing.check_admm_step`: refimpl's W-step, then
                                       the student's :math:`Z' = \Pi(W' + U)`,
                                       :math:`U' = U + W' - Z'` against refimpl's, inputs not mutated,
                                       smallest shape first
=====================================  =================================================================

Example
-------
>>> import numpy as np
>>> def keep_first_rows(w, keep):      # ignores the norms: wrong
...     z = np.zeros_like(w)
...     z[:keep] = w[:keep]
...     return z
>>> grade = grade_project_filters(keep_first_rows)
>>> grade.passed
False
>>> print(str(grade).splitlines()[0])
Exercise 1 (project_filters): FAILED
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Grade", "grade_admm_update", "grade_conv2d_backward", "grade_project_filters"]


@dataclass
class Grade:
    """The outcome of one grader: ``passed``, and ``details`` (what was checked, or the counterexample)."""

    exercise: str
    passed: bool
    details: str
    done: bool = True
    """False when the function still raises ``NotImplementedError``."""

    def __str__(self) -> str:
        if not self.done:
            return f"{self.exercise}: not done yet ({self.details})"
        if self.passed:
            return f"{self.exercise}: PASSED ({self.details})"
        return f"{self.exercise}: FAILED\n{self.details}"

    def __bool__(self) -> bool:
        return self.passed


def _not_done(exercise: str, fn: Callable, *args) -> Grade | None:
    """Call ``fn(*args)`` once; a ``NotImplementedError`` means the exercise is still the template."""
    try:
        fn(*args)
    except NotImplementedError as err:
        return Grade(exercise, False, str(err) or "NotImplementedError", done=False)
    except Exception:  # noqa: BLE001 - any other error is a wrong answer, reported by the real checks
        return None
    return None


def grade_project_filters(fn: Callable[[np.ndarray, int], np.ndarray], *, n_examples: int = 60,
                          seed: int = 0) -> Grade:
    """Grade ``fn(w, keep)``, the projection onto "at most ``keep`` nonzero filters".

    Parameters
    ----------
    fn : callable
        ``fn(w, keep) -> z`` for a weight ``w`` of shape (F, C, KH, KW) or (out, in); ``w`` must not be
        modified, ``z`` has ``w``'s shape and dtype.
    n_examples : int
        Inputs per value of ``keep`` (half of them with ties).
    seed : int
        Seed of the input generator (:func:`refimpl.testing.check_projection`).

    Returns
    -------
    Grade
    """
    exercise = "Exercise 1 (project_filters)"
    not_done = _not_done(exercise, fn, np.ones((2, 3)), 1)
    if not_done is not None:
        return not_done
    from refimpl.testing import check_projection

    checks = 0
    for keep in (1, 2, 0):
        report = check_projection(lambda w, keep: fn(w, keep), "filters", keep=keep, n_examples=n_examples,
                                  seed=seed)
        checks += report.n_checks
        if not report.passed:
            return Grade(exercise, False, str(report))
    return Grade(exercise, True, f"{checks} property checks, keep = 1, 2 and 0")


# --- exercise 2: the backward pass of a convolution ----------------------------------------------------

#: (x shape, w shape, stride, padding) of the small cases a failure is shown on, smallest first.
CONV_CASES = (
    ((1, 1, 3, 3), (1, 1, 2, 2), 1, 0),
    ((2, 2, 4, 4), (3, 2, 3, 3), 1, 1),
    ((2, 3, 5, 5), (2, 3, 3, 3), 2, 0),
    ((1, 2, 5, 4), (2, 2, 2, 3), 2, 1),
)


def _conv_layer(fn: Callable):
    """Return refimpl's forward and ``fn`` as the backward, in the calling convention of ``check_layer``."""
    from refimpl.nn.conv import conv2d_forward

    def forward(x, w, b, stride=1, padding=0):
        out, _ = conv2d_forward(x, w, b, stride, padding, engine="numpy")
        return out, (x, w, b, stride, padding)

    def backward(dout, cache):
        x, w, b, stride, padding = cache
        return tuple(fn(dout, x, w, b, stride, padding))

    return forward, backward


def _smallest_conv_counterexample(fn: Callable, failing: list, seed: int) -> str:
    """Print the smallest case on which ``fn`` differs from refimpl in full (inputs, expected, got).

    Candidates: :data:`CONV_CASES` and the oracle's failing cases, smallest input first, each on fresh
    dyadic inputs (:func:`refimpl.testing.layers.make_inputs`); a crash counts. Empty if none of them
    reproduces the failure.
    """
    from refimpl.testing.compare import compare_arrays, default_rtol
    from refimpl.testing.layers import LAYERS, LayerCase, make_inputs, run_layer

    spec = LAYERS["conv2d"]
    forward, backward = _conv_layer(fn)
    teaching = [LayerCase(f"small-{i}", {"x": xs, "w": ws, "b": ws[:1]}, {"stride": s, "padding": p},
                          "a small case") for i, (xs, ws, s, p) in enumerate(CONV_CASES)]
    cases = teaching + [c for c in spec.cases if c.name in failing]
    cases.sort(key=lambda c: int(sum(np.prod(shape) for shape in c.shapes.values())))
    rng = np.random.default_rng(seed)
    for case in cases:
        inputs = make_inputs(case, rng, np.float64)
        out = run_layer(spec, case, inputs)["out"]
        dout = rng.integers(-16, 17, size=out.shape) / 8
        expected = run_layer(spec, case, inputs, dout)
        shown = "\n".join(f"  {k} =\n{_indent(v)}" for k, v in (*inputs.items(), ("dout", dout)))
        where = (f"smallest counterexample: x {case.shapes['x']}, w {case.shapes['w']}, "
                 f"stride {case.hyper['stride']}, padding {case.hyper['padding']}")
        try:
            got = run_layer(spec, case, inputs, dout, forward=forward, backward=backward)
        except Exception as err:  # noqa: BLE001 - a crash is a wrong answer to show
            return f"{where}: raised {type(err).__name__}: {err}\n{shown}"
        for name in ("dx", "dw", "db"):
            exp, tol = expected[name], default_rtol(np.float64)
            mismatch = compare_arrays(name, exp, got.get(name), rtol=tol,
                                      atol=tol * float(np.max(np.abs(exp))))
            if mismatch is not None:
                return (f"{where}: {mismatch}\n{shown}\n"
                        f"  expected {name} =\n{_indent(exp)}\n  got {name} =\n{_indent(got[name])}")
    return ""


def grade_conv2d_backward(fn: Callable, *, seed: int = 0) -> Grade:
    r"""Grade ``fn(dout, x, w, b, stride, padding) -> (dx, dw, db)``, the gradients of a convolution.

    The oracle's layer check, :func:`refimpl.testing.check_layer` ``(..., "conv2d")``, runs refimpl's
    forward pass and ``fn`` as the backward pass on every case of
    :data:`refimpl.testing.LAYERS` ``["conv2d"]`` (stride and padding variants, a :math:`1 	imes 1`
    kernel, a kernel as large as the input) in float64, with inputs and upstream gradients that are
    multiples of 1/8, so that ``dx``, ``dw`` and ``db`` must equal refimpl's up to rounding whatever the
    order of the sums. On a failure the oracle's report (case, rule, worst entry) is followed by the
    smallest case that shows it (:data:`CONV_CASES` and the failing cases, smallest first) in full.
    """
    exercise = "Exercise 2 (conv2d_backward)"
    from refimpl.testing import check_layer

    x0 = np.ones((1, 1, 2, 2))
    not_done = _not_done(exercise, fn, np.ones((1, 1, 1, 1)), x0, np.ones((1, 1, 2, 2)), np.zeros(1), 1, 0)
    if not_done is not None:
        return not_done
    forward, backward = _conv_layer(fn)
    report = check_layer(forward, backward, "conv2d", seed=seed, dtypes=(np.float64,))
    if report.passed:
        return Grade(exercise, True, f"dx, dw, db equal refimpl's on the {report.n_cases} cases of "
                                     "check_layer('conv2d')")
    example = _smallest_conv_counterexample(fn, [f.case for f in report.failures], seed)
    return Grade(exercise, False, str(report) + ("\n" + example if example else ""))


# --- exercise 3: one ADMM update -----------------------------------------------------------------------

#: Shapes of the ADMM-update checks, smallest first.
ADMM_SHAPES = ((2, 2), (3, 4), (4, 2, 3, 3), (6, 5))


def _plain_filters(params: dict) -> Callable[[np.ndarray], np.ndarray]:
    """Return the oracle's plain filter projection with ``params`` as a function of one array."""
    from refimpl.projections.reference import REFERENCES

    return lambda v: REFERENCES["filters"](v, **params)


def _admm_step(fn: Callable, calls: list) -> Callable:
    """Return a step for ``check_admm_step``: refimpl's W-step, then ``fn``'s Z- and U-steps, recorded."""
    from refimpl.prune.admm import admm_penalty_gradient

    def step(W, Z, U, grad, *, rho, lr, **params):
        W_new = (W - W.dtype.type(lr) * (grad + admm_penalty_gradient(W, Z, U, rho))).astype(W.dtype)
        inputs = {"W": W_new, "Z": Z, "U": U}
        call = {k: v.copy() for k, v in inputs.items()} | {"params": params}
        calls.append(call)
        Z_new, U_new = fn(W_new, Z, U, _plain_filters(params))
        call["got"] = {"Z": np.asarray(Z_new), "U": np.asarray(U_new)}
        for k, v in inputs.items():
            if not np.array_equal(v, call[k]):
                raise ValueError(f"the input {k} was modified (return new arrays)")
        return W_new, call["got"]["Z"], call["got"]["U"]

    return step


def grade_admm_update(fn: Callable, *, n_examples: int = 20, seed: int = 0) -> Grade:
    r"""Grade ``fn(W, Z, U, project) -> (Z_new, U_new)``, one Z-step and U-step of scaled ADMM.

    The oracle's ADMM check, :func:`refimpl.testing.check_admm_step` (``"filters"``, half of them kept,
    float64), runs one iteration whose W-step is refimpl's and whose Z- and U-steps are ``fn``'s, and
    compares :math:`Z' = \Pi(W' + U)` and :math:`U' = U + W' - Z'` with refimpl's; ``project`` is the
    oracle's plain projection (:mod:`refimpl.projections.reference`). ``W``, ``Z`` and ``U`` must not be
    modified. The shapes of :data:`ADMM_SHAPES` are tried smallest first (``n_examples`` inputs in all),
    and the first failing input is shown in full: ``W`` (after the W-step), ``Z``, ``U``, expected and got.
    """
    exercise = "Exercise 3 (ADMM update)"
    from refimpl.prune.admm import admm_update
    from refimpl.testing import check_admm_step

    one = np.ones((2, 2))
    not_done = _not_done(exercise, fn, one, one, one, _plain_filters({"sparsity": 0.5}))
    if not_done is not None:
        return not_done
    per_shape = max(1, n_examples // len(ADMM_SHAPES))
    for shape in ADMM_SHAPES:
        calls: list[dict] = []
        report = check_admm_step(_admm_step(fn, calls), "filters", n_examples=per_shape, seed=seed,
                                 dtypes=(np.float64,), shape=shape)
        if report.passed:
            continue
        i, _, what = report.failures[0]
        call = calls[i]
        shown = "\n".join(f"  {k} =\n{_indent(call[k])}" for k in ("W", "Z", "U"))
        head = f"check_admm_step({report.structure!r}, {report.params}), shape {shape}, example {i}"
        if isinstance(what, str):  # the step raised: a crash, or an input modified
            return Grade(exercise, False, f"{what}\n({head}; W is after refimpl's W-step)\n{shown}")
        z_exp, u_exp, _ = admm_update(call["W"], call["Z"], call["U"], _plain_filters(call["params"]))
        expected, got = {"Z": z_exp, "U": u_exp}[what.name], call["got"][what.name]
        name = f"{what.name}_new"
        return Grade(exercise, False, f"{name} is wrong ({head}: {what})\n{shown}\n"
                                      f"  expected {name} =\n{_indent(expected)}\n  got =\n{_indent(got)}")
    return Grade(exercise, True, f"Z and U equal refimpl's (check_admm_step) on "
                                 f"{per_shape * len(ADMM_SHAPES)} random inputs, inputs not modified")


def _indent(a: np.ndarray) -> str:
    text = np.array2string(np.asarray(a), precision=4, max_line_width=100)
    return "\n".join("    " + line for line in text.splitlines())
