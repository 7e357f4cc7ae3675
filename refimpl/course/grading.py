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
:func:`grade_conv2d_backward`          :func:`refimpl.testing.check_gradient`: ``dx``, ``dw``, ``db``
                                       against centred finite differences of
                                       :math:`L = \sum y \odot G` for a random upstream gradient
                                       :math:`G`, over strides 1 and 2 and paddings 0 and 1
:func:`grade_admm_update`              one Z-step and U-step against the definitions
                                       :math:`Z' = \Pi(W + U)`, :math:`U' = U + W - Z'` (refimpl's
                                       :func:`refimpl.prune.admm.admm_update`), inputs not mutated
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

#: (x shape, w shape, stride, padding) of the gradient checks, smallest first.
CONV_CASES = (
    ((1, 1, 3, 3), (1, 1, 2, 2), 1, 0),
    ((2, 2, 4, 4), (3, 2, 3, 3), 1, 1),
    ((2, 3, 5, 5), (2, 3, 3, 3), 2, 0),
    ((1, 2, 5, 4), (2, 2, 2, 3), 2, 1),
)


def grade_conv2d_backward(fn: Callable, *, seed: int = 0, rtol: float = 1e-6) -> Grade:
    r"""Grade ``fn(dout, x, w, b, stride, padding) -> (dx, dw, db)``, the gradients of a convolution.

    For each case of :data:`CONV_CASES` (float64, random ``x``, ``w``, ``b`` and upstream gradient
    :math:`G`), the scalar :math:`L = \sum_{n f i j} y_{nfij} G_{nfij}` with :math:`y` =
    :func:`refimpl.nn.conv.conv2d_forward` has :math:`\partial L / \partial y = G`, so ``fn(G, ...)`` must
    return the gradient of :math:`L`; :func:`refimpl.testing.check_gradient` compares each of ``dx``,
    ``dw``, ``db`` with centred finite differences (relative error below ``rtol``). The first failing case
    is reported with its shapes, stride and padding.
    """
    exercise = "Exercise 2 (conv2d_backward)"
    from refimpl.nn.conv import conv2d_forward
    from refimpl.testing import check_gradient

    x0 = np.ones((1, 1, 2, 2))
    not_done = _not_done(exercise, fn, np.ones((1, 1, 1, 1)), x0, np.ones((1, 1, 2, 2)), np.zeros(1), 1, 0)
    if not_done is not None:
        return not_done
    rng = np.random.default_rng(seed)
    for x_shape, w_shape, stride, padding in CONV_CASES:
        x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
        b = rng.standard_normal(w_shape[0])
        y, _ = conv2d_forward(x, w, b, stride, padding, engine="numpy")
        G = rng.standard_normal(y.shape)
        case = f"x {x_shape}, w {w_shape}, stride {stride}, padding {padding}"
        try:
            grads = fn(G.copy(), x.copy(), w.copy(), b.copy(), stride, padding)
            dx, dw, db = (np.asarray(g, dtype=np.float64) for g in grads)
        except Exception as err:  # noqa: BLE001 - a crash is a wrong answer to report
            return Grade(exercise, False, f"case {case}: raised {type(err).__name__}: {err}")

        def loss(x=x, w=w, b=b, G=G, stride=stride, padding=padding):
            return float(np.sum(conv2d_forward(x, w, b, stride, padding, engine="numpy")[0] * G))

        for name, var, got in (("dx", x, dx), ("dw", w, dw), ("db", b, db)):
            if got.shape != var.shape:
                return Grade(exercise, False, f"case {case}: {name} has shape {got.shape}, expected "
                                              f"{var.shape}")
            try:
                check_gradient(loss, var, got, rtol=rtol, name=name)
            except AssertionError as err:
                from refimpl.testing import numerical_gradient

                expected = numerical_gradient(loss, var)
                return Grade(exercise, False, f"case {case}: {err}\n  expected (finite differences) =\n"
                             f"{_indent(expected)}\n  got =\n{_indent(got)}")
    return Grade(exercise, True, f"dx, dw, db on {len(CONV_CASES)} cases (strides 1, 2; paddings 0, 1)")


# --- exercise 3: one ADMM update -----------------------------------------------------------------------

#: Shapes of the ADMM-update checks, smallest first.
ADMM_SHAPES = ((2, 2), (3, 4), (4, 2, 3, 3), (6, 5))


def grade_admm_update(fn: Callable, *, n_examples: int = 20, seed: int = 0) -> Grade:
    r"""Grade ``fn(W, Z, U, project) -> (Z_new, U_new)``, one Z-step and U-step of scaled ADMM.

    Expected: :math:`Z' = \Pi(W + U)` and :math:`U' = U + W - Z'` (the definitions; refimpl's
    :func:`refimpl.prune.admm.admm_update`), with ``project`` keeping half of the filters
    (:func:`refimpl.projections.project_filters`), for random ``W``, ``Z``, ``U`` of the shapes in
    :data:`ADMM_SHAPES`. ``W``, ``Z`` and ``U`` must not be modified. The smallest failing input is shown.
    """
    exercise = "Exercise 3 (ADMM update)"
    from refimpl.projections import project_filters
    from refimpl.prune.admm import admm_update

    def project(v):
        return project_filters(v, sparsity=0.5)

    one = np.ones((2, 2))
    not_done = _not_done(exercise, fn, one, one, one, project)
    if not_done is not None:
        return not_done
    rng = np.random.default_rng(seed)
    for i in range(n_examples):
        shape = ADMM_SHAPES[i % len(ADMM_SHAPES)]
        W, U = rng.standard_normal(shape), 0.5 * rng.standard_normal(shape)
        Z = project(rng.standard_normal(shape))
        inputs = {"W": W, "Z": Z, "U": U}
        copies = {k: v.copy() for k, v in inputs.items()}
        Z_exp, U_exp, _ = admm_update(W, Z, U, project)
        shown = "\n".join(f"  {k} =\n{_indent(v)}" for k, v in copies.items())
        try:
            Z_new, U_new = fn(W, Z, U, project)
        except Exception as err:  # noqa: BLE001
            return Grade(exercise, False, f"raised {type(err).__name__}: {err}\n{shown}")
        for k, v in inputs.items():
            if not np.array_equal(v, copies[k]):
                return Grade(exercise, False, f"the input {k} was modified (return new arrays)\n{shown}")
        for name, got, exp in (("Z_new", Z_new, Z_exp), ("U_new", U_new, U_exp)):
            got = np.asarray(got)
            if got.shape != exp.shape or not np.allclose(got, exp, rtol=1e-12, atol=1e-12):
                return Grade(exercise, False, f"{name} is wrong\n{shown}\n  expected {name} =\n"
                                              f"{_indent(exp)}\n  got =\n{_indent(got)}")
    return Grade(exercise, True, f"Z and U on {n_examples} random inputs, inputs not modified")


def _indent(a: np.ndarray) -> str:
    text = np.array2string(np.asarray(a), precision=4, max_line_width=100)
    return "\n".join("    " + line for line in text.splitlines())
