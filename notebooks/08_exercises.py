# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Exercises: write the projection, a convolution's backward pass and the ADMM update
#
# * **Objectives.** Write three pieces of a pruning library yourself and have each checked automatically:
#   the filter projection (chapter 1), the backward pass of a 2-D convolution (the layer every CNN
#   trains), and one ADMM update (chapter 2).
# * **Prerequisites.** Notebooks [0](00_from_scratch.ipynb), [1](01_projections.ipynb) and
#   [2](02_admm_step_by_step.ipynb); the words *filter*, *im2col*, *scaled dual* (`docs/GLOSSARY.md`).
# * **Runtime.** The graders take a few seconds on a 2-core laptop.
# * **Reading order.** After chapter 2 (exercises 1 and 3) and after reading `refimpl/nn/conv.py`
#   (exercise 2); see `docs/COURSE.md`.
#
# **How it works.** Each exercise is a function with a docstring and `raise NotImplementedError`. Replace
# the `raise` with your code and run the cell below it: the grader calls your function on many inputs and
# prints either `PASSED` or the **smallest counterexample** it found — the input, what was expected and
# what your function returned — so that you can redo it by hand. The graders are in
# `refimpl/course/grading.py`; they use the checkers refimpl offers other implementations as an oracle,
# `refimpl.testing.check_projection`, `check_layer` and `check_admm_step`.
#
# The reference answers are in `refimpl/course/solutions.py` (for teachers; CI runs this notebook with
# them by setting `REFIMPL_EXERCISES=solutions`). Try first.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("REFIMPL_SMOKE") == "1"  # nothing to shrink: the graders are fast
USE_SOLUTIONS = os.environ.get("REFIMPL_EXERCISES") == "solutions"

# %%
import numpy as np  # noqa: F401 - for your answers

from refimpl.course.grading import grade_admm_update, grade_conv2d_backward, grade_project_filters

# %% [markdown]
# ## Exercise 1: the filter projection
#
# Write `project_filters(w, keep)`: the nearest point to `w` (in the Frobenius norm) with at most `keep`
# nonzero **filters**. `w` is a conv weight of shape $(F, C, K_H, K_W)$ or a linear weight
# $(\text{out}, \text{in})$; a filter is `w[f]`, one row of the GEMM view `w.reshape(F, -1)`.
#
# Hints: which norm decides which filters to keep (chapter 1 has a counterexample for the wrong one)?
# Among filters of equal norm keep the one with the **lower index**. Do not modify `w` (it may be
# read-only); return an array of `w`'s shape and dtype. `keep = 0` is allowed.

# %% tags=["exercise-1"]
def project_filters(w, keep):
    """Return a copy of w with all but the `keep` filters of largest L2 norm set to 0."""
    raise NotImplementedError("Exercise 1: write project_filters")


# %%
if USE_SOLUTIONS:
    from refimpl.course.solutions import project_filters
grade_1 = grade_project_filters(project_filters)
print(grade_1)

# %% [markdown]
# ## Exercise 2: the backward pass of a convolution
#
# The forward pass (stride $s$, zero padding $p$; $x^\text{pad}$ is $x$ with $p$ zeros on every side) is
#
# $$y_{n f o_h o_w} = b_f + \sum_{c=0}^{C-1} \sum_{i=0}^{K_H-1} \sum_{j=0}^{K_W-1}
#   w_{f c i j}\; x^\text{pad}_{n,\, c,\, s o_h + i,\, s o_w + j} .$$
#
# Given the upstream gradient `dout` $= G = \partial L / \partial y$ (shape $(N, F, OH, OW)$), return
# `(dx, dw, db)`, the gradients of $L$ with respect to `x`, `w` and `b` (shapes of `x`, `w`, `b`).
#
# Hints: differentiate the formula above entry by entry. Each $y_{nfo_ho_w}$ depends on one window of
# $x^\text{pad}$; windows overlap, so the contributions to `dx` **add up**. Compute the gradient with
# respect to $x^\text{pad}$ and cut the padding off at the end. Loops are fine (readable first); the
# library's loop version is `conv2d_backward_naive` in `refimpl/nn/conv.py` — do not peek before trying.
# The grader is the oracle's layer check, `refimpl.testing.check_layer`: your `dx`, `dw` and `db` must
# equal refimpl's on its convolution cases (stride and padding variants, a $1 \times 1$ kernel, a kernel
# as large as the input), whose inputs are multiples of 1/8 so that every sum is exact in any order. On a
# wrong answer it prints the smallest case that shows the mistake, in full.

# %% tags=["exercise-2"]
def conv2d_backward(dout, x, w, b, stride=1, padding=0):
    """Return (dx, dw, db) for y = conv2d(x, w, b, stride, padding) and dout = dL/dy."""
    raise NotImplementedError("Exercise 2: write conv2d_backward")


# %%
if USE_SOLUTIONS:
    from refimpl.course.solutions import conv2d_backward
grade_2 = grade_conv2d_backward(conv2d_backward)
print(grade_2)

# %% [markdown]
# ## Exercise 3: one ADMM update
#
# After a W-step, scaled ADMM updates the projected copy $Z$ and the scaled dual variable $U$:
#
# $$Z^{k+1} = \Pi_S\!\left(W^{k+1} + U^k\right), \qquad U^{k+1} = U^k + W^{k+1} - Z^{k+1} .$$
#
# Write `admm_update(W, Z, U, project)` returning `(Z_new, U_new)`, where `project` is $\Pi_S$ (a
# function of one array). Do not modify `W`, `Z` or `U`. The grader is the oracle's ADMM check,
# `refimpl.testing.check_admm_step`: one iteration with refimpl's W-step and your Z- and U-steps, compared
# with refimpl's, smallest weight first.
#
# Question to think about once it passes: why does the Z-step project $W + U$ and not $W$ alone? (Chapter
# 2, "Why is the primal residual about 1 at first?")

# %% tags=["exercise-3"]
def admm_update(W, Z, U, project):
    """Return (Z_new, U_new) after one Z-step and one U-step of scaled ADMM."""
    raise NotImplementedError("Exercise 3: write admm_update")


# %%
if USE_SOLUTIONS:
    from refimpl.course.solutions import admm_update
grade_3 = grade_admm_update(admm_update)
print(grade_3)

# %% [markdown]
# ## Your score

# %%
grades = [grade_1, grade_2, grade_3]
print(f"{sum(g.passed for g in grades)} of {len(grades)} exercises passed")
for g in grades:
    print(" ", str(g).splitlines()[0])
if USE_SOLUTIONS:
    assert all(g.passed for g in grades), "a reference answer failed its grader"
