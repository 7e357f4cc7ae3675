"""The exercises of notebooks/08_exercises: the graders accept the reference answers and report wrong ones.

The notebook itself is executed twice: with the reference answers (``REFIMPL_EXERCISES=solutions``: every
grade must pass) and with a planted wrong answer in place of the student's cell, which the grader must
report with its counterexample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from refimpl.course import solutions
from refimpl.course.grading import grade_admm_update, grade_conv2d_backward, grade_project_filters
from refimpl.nn.conv import conv2d_backward_naive

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "08_exercises.py"


def test_reference_answers_pass():
    for grade in (grade_project_filters(solutions.project_filters),
                  grade_conv2d_backward(solutions.conv2d_backward),
                  grade_admm_update(solutions.admm_update)):
        assert grade.passed and grade.done, str(grade)
        assert "PASSED" in str(grade)


def test_the_library_loop_version_passes_the_conv_grader():
    assert grade_conv2d_backward(conv2d_backward_naive).passed


def _filters_by_l1(w, keep):
    scores = np.abs(np.asarray(w).reshape(len(w), -1)).sum(axis=1)
    z = np.zeros_like(w)
    kept = np.argsort(-scores, kind="stable")[:keep]
    z[kept] = w[kept]
    return z


def _filters_in_place(w, keep):
    w[np.argsort(np.sum(np.asarray(w).reshape(len(w), -1) ** 2, axis=1), kind="stable")[:len(w) - keep]] = 0
    return w


def _conv_flipped_dw(dout, x, w, b, stride=1, padding=0):
    dx, dw, db = solutions.conv2d_backward(dout, x, w, b, stride, padding)
    return dx, dw[:, :, ::-1, ::-1], db  # convolution instead of cross-correlation


def _conv_overwrites_dx(dout, x, w, b, stride=1, padding=0):
    """Assigns each window's contribution to dx instead of adding it: wrong where windows overlap."""
    n, _, h, width = x.shape
    kh, kw = w.shape[2:]
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    for r in range(dout.shape[2]):
        for c in range(dout.shape[3]):
            rows, cols = slice(r * stride, r * stride + kh), slice(c * stride, c * stride + kw)
            dw += np.einsum("nf,nchw->fchw", dout[:, :, r, c], x_pad[:, :, rows, cols])
            dx_pad[:, :, rows, cols] = np.einsum("nf,fchw->nchw", dout[:, :, r, c], w)
    return dx_pad[:, :, padding:padding + h, padding:padding + width], dw, dout.sum(axis=(0, 2, 3))


def _admm_projects_w_alone(W, Z, U, project):
    Z_new = project(W)
    return Z_new, U + W - Z_new


def _admm_in_place(W, Z, U, project):
    Z[...] = project(W + U)
    U += W - Z
    return Z, U


@pytest.mark.parametrize(("grader", "wrong", "says"), [
    (grade_project_filters, _filters_by_l1, ("optimal",)),
    # the checker hands fn a read-only input: writing into it raises, or is reported as a mutation
    (grade_project_filters, _filters_in_place, ("mutated", "read-only")),
    (grade_conv2d_backward, _conv_flipped_dw, ("dw: values",)),
    (grade_conv2d_backward, _conv_overwrites_dx, ("dx: values",)),
    (grade_admm_update, _admm_projects_w_alone, ("Z_new is wrong",)),
    (grade_admm_update, _admm_in_place, ("was modified",)),
])
def test_wrong_answers_are_reported_with_a_counterexample(grader, wrong, says):
    grade = grader(wrong)
    assert not grade.passed and grade.done
    assert "FAILED" in str(grade) and any(s in str(grade) for s in says), str(grade)
    if grader is grade_conv2d_backward:  # the oracle's verdict, then the smallest case in full
        assert "check_layer('conv2d'): FAILED" in str(grade)
        assert "smallest counterexample: x (1, 1, 3, 3), w (1, 1, 2, 2), stride 1, padding 0" in str(grade)
        assert "expected d" in str(grade) and "got d" in str(grade) and "dout =" in str(grade)
    if grader is grade_admm_update:  # the smallest shape, with the inputs of the failing example
        assert "shape (2, 2), example 0" in str(grade) and "U =" in str(grade)


def _conv_ignores_padding_beyond_one(dout, x, w, b, stride=1, padding=0):
    """Right on the small cases (padding 0 or 1), wrong on the oracle's padding-2 case."""
    return solutions.conv2d_backward(dout, x, w, b, stride, min(padding, 1))


def test_a_mistake_only_the_oracle_cases_show_is_reported():
    grade = grade_conv2d_backward(_conv_ignores_padding_beyond_one)
    assert not grade.passed and "case 's1-p2-1x1'" in str(grade), str(grade)
    assert "smallest counterexample: x (1, 2, 4, 5), w (3, 2, 1, 1), stride 1, padding 2" in str(grade)


def test_a_template_is_not_done_yet():
    def template(*args):
        raise NotImplementedError("write your code here")

    for grader in (grade_project_filters, grade_conv2d_backward, grade_admm_update):
        grade = grader(template)
        assert not grade.passed and not grade.done and "not done yet" in str(grade)


def _execute(notebook, monkeypatch, env):
    nbclient = pytest.importorskip("nbclient")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    return "\n".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []))


@pytest.mark.slow
def test_notebook_with_the_reference_answers_passes(monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    text = _execute(jupytext.read(NOTEBOOK), monkeypatch, {"REFIMPL_EXERCISES": "solutions"})
    assert "3 of 3 exercises passed" in text, text


@pytest.mark.slow
def test_notebook_reports_a_planted_wrong_answer(monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.read(NOTEBOOK)
    cells = [c for c in notebook.cells if "exercise-3" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "the notebook must tag exactly one cell 'exercise-3'"
    cells[0].source = ("def admm_update(W, Z, U, project):\n"
                       "    Z_new = project(W)  # planted mistake: W instead of W + U\n"
                       "    return Z_new, U + W - Z_new\n")
    monkeypatch.delenv("REFIMPL_EXERCISES", raising=False)
    text = _execute(notebook, monkeypatch, {})
    assert "Exercise 3 (ADMM update): FAILED" in text and "Z_new is wrong" in text, text
    assert "expected Z_new =" in text  # the counterexample is printed
    assert "0 of 3 exercises passed" in text  # exercises 1 and 2 are still templates


def test_grading_docstring_example():
    import doctest

    import refimpl.course.grading as grading

    assert doctest.testmod(grading, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
