"""Numbers in a notebook's prose come from its outputs (issue 15's drift guard, the numbers part).

Every number in the markdown of a checked notebook's stored ``.ipynb`` must be one of:

* **an output** — it appears among the numbers printed by the notebook's code cells (stored outputs of
  the full run). A prose number written with ``d`` decimals matches a printed number within half a unit
  of its last digit (``0.08`` matches ``7.834e-02``); an integer must be printed as that integer
  (``21``, ``25/50``, ``9.00`` for ``9``). So when a rerun changes a result, the prose quoting the old
  value fails here, and so does prose changed without a rerun (``test_a_stale_number_is_caught``).
* **a given** — a number the prose *states* rather than measures, listed in :data:`GIVENS` with the
  exact phrase that contains it and why it is not an output: a **setting** names the literal of the
  notebook's code (or of another file, ``path::literal``) that sets it, which must still be there; a
  piece of **arithmetic** gives the Python expression the number must equal; a **fact** (the size of a
  data set, a paper's constant, a count of lines) says where it comes from. A given whose phrase is no
  longer in the prose fails too, so the table cannot silently outlive the text.
* **not a quantity** — skipped by rule (:func:`prose_numbers`): headings' and link texts' numbering,
  cross-references (*notebook 4*, *section 7*, *chapter 1*, *exercise 3*, *§3.4.1*), citation years
  (*Boyd et al., 2011*), names (``conv2``, LeNet-5, *2-layer*, *2-D*) and code spans.

Notebooks named in :data:`PENDING` are not checked yet, each with the reason.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = ROOT / "notebooks"

#: Notebooks whose prose is not checked yet, with the reason.
PENDING: dict[str, str] = {}


@dataclass(frozen=True)
class Given:
    """A number the prose states rather than measures (module docstring)."""

    phrase: str
    """Exact text of the prose (whitespace collapsed) holding the number(s); every number in it is given."""
    why: str
    """``"setting: ..."``, ``"arithmetic: ..."`` or ``"fact: ..."``, in words."""
    code: tuple[str, ...] = ()
    """Settings: literals that must appear in the notebook's code cells (or ``"path::literal"``)."""
    equals: tuple[tuple[str, str], ...] = ()
    """Arithmetic: ``(number as written, Python expression)`` pairs; ``math`` is in scope."""


S, A, F = "setting: ", "arithmetic: ", "fact: "

#: the levels of two curve sweeps, which several givens of notebook 04 name
FILTERS_LEVELS = "paper_repro/sweeps/curves/filters.toml::sparsity = [0.3, 0.5, 0.7, 0.8, 0.9]"
SHAPES_LEVELS = "paper_repro/sweeps/curves/shapes.toml::sparsity = [0.3, 0.5, 0.7, 0.8, 0.9]"
UNSTRUCTURED_LEVELS = ("paper_repro/sweeps/curves/unstructured.toml::"
                       "sparsity = [0.5, 0.8, 0.9, 0.95, 0.98, 0.99]")
FILTERS_SHAPES_LEVELS = "paper_repro/sweeps/curves/filters_shapes.toml::sparsity = [0.3, 0.5, 0.7, 0.8, 0.9]"
CHANNELS_LEVELS = "paper_repro/sweeps/curves/channels.toml::sparsity = [0.3, 0.5, 0.7, 0.8, 0.9]"

GIVENS: dict[str, list[Given]] = {
    "00_from_scratch": [
        Given("in about 100 lines", F + "the plain-NumPy cells counted without prints and plots "
              "(commit f3313dd: 103)"),
        Given(r"all $\binom{6}{2} = 15$", A + "supports of 2 entries among 6",
              code=("w = np.array([0.3, -2.0, 0.1, 1.5, -0.4, 0.9])",), equals=(("15", "math.comb(6, 2)"),)),
        Given("Row 1 has the largest L1 norm", F + "row 1 of W_demo, whose L1 norms are printed"),
        Given("keep rows 0 and 1", F + "the two rows of largest L1 norm in the printout"),
        Given(r"$W = (W^\star + \rho(Z - U)) / (1 + \rho)$", A + "the closed-form W-step"),
        Given(r"starts at $10^{-3}$ and grows by 1.3 per update up to 1", S + "the rho schedule",
              code=("rho = project_rows(W, k), np.zeros_like(W), 1e-3", "rho_new = min(1.3 * rho, 1.0)")),
        Given("residual stays near 1", F + "a ratio ||W - Z|| / ||W|| while Z and W disagree (figure)"),
        Given("multiplies $Y$ by 1.3", S + "the growth factor of rho", code=("1.3 * rho",)),
        Given(r"$8 \times 8$ digits (1797 images, 64 pixels), 1437 for training and 360 for testing",
              F + "scikit-learn's digits and the split of this notebook", code=("X[:1437]", "X[1437:]")),
        Given("with 64 hidden neurons", S + "HIDDEN", code=("HIDDEN, K = 64, 8",)),
        Given("**at most 8 of the 64 rows of $W_1$**", S + "K and HIDDEN", code=("HIDDEN, K = 64, 8",)),
        Given("to 8 neurons", S + "K", code=("HIDDEN, K = 64, 8",)),
    ],
    "01_projections": [
        Given("About 15 seconds", F + "the header's runtime, timed at the last full run on 2 cores"),
        Given("mask at 75 % sparsity", S + "SPARSITY", code=("SPARSITY = 0.75",)),
        Given("N:M keeps 1 of every 4 neighbours", S + "the N:M case", code=('"nm": {"n": 1, "m": 4}',)),
        Given(r"$$A = (3, 0, 0, 0), \qquad B = (0.9, 0.9, 0.9, 0.9), \qquad \|A\|_1 = 3 < \|B\|_1 = 3.6, "
              r"\qquad \|A\|_2 = 3 > \|B\|_2 = 1.8 .$$", A + "the norms of the two filters of W_small",
              code=("W_small = np.array([[3.0, 0.0, 0.0, 0.0], [0.9, 0.9, 0.9, 0.9]])",),
              equals=(("3.6", "4 * 0.9"), ("1.8", "math.sqrt(4 * 0.9**2)"))),
    ],
    "02_admm_step_by_step": [
        Given(r"$\rho_0 = 10^{-3}$, multiplied by 1.3 at every Z/U update, capped at 1",
              S + "the rho schedule", code=("rho=1e-3, rho_growth=1.3, rho_max=1.0",)),
        Given(r"its cap in $\lceil \ln 1000 / \ln 1.3 \rceil = 27$ updates", A + "updates from 1e-3 to 1",
              equals=(("27", "math.ceil(math.log(1000) / math.log(1.3))"),)),
        Given("cap after 27 updates", A + "as above (section 0)",
              equals=(("27", "math.ceil(math.log(1000) / math.log(1.3))"),)),
        Given("at each of the first 27 updates", A + "as above (section 0)",
              equals=(("27", "math.ceil(math.log(1000) / math.log(1.3))"),)),
        Given("so $r \\le 0.05$ bounds the loss of the cut to 0.25 %", A + "PRIMAL_TOL squared, in percent",
              code=("refimpl/prune/admm.py::PRIMAL_TOL = 0.05",), equals=(("0.25", "100 * 0.05**2"),)),
        Given("by at most 5 %", S + "DUAL_TOL", code=("refimpl/prune/admm.py::DUAL_TOL = 0.05",)),
        Given("1437 training images, 15 % of them held out", F + "scikit-learn's digits less the 360 test "
              "images; the validation share is a setting", code=("val_fraction=0.15",)),
        Given(r"$8 \to 8 \to 4 \to 4 \to 2$", A + "size-preserving convolutions and 2x2 pooling on 8x8"),
        Given(r"the $2 \times 2 = 4$ columns", A + "one pooled 2x2 feature map per filter"),
        Given("The learning rates (0.05 dense, 0.02 during ADMM, 0.01 for retraining)",
              S + "the three phases", code=("make_trainer(PRETRAIN_EPOCHS, lr=0.05)",
                                            "make_trainer(ADMM_EPOCHS, lr=0.02",
                                            "make_trainer(RETRAIN_EPOCHS, lr=0.01")),
        Given("`UPDATE_EVERY` = 5 optimizer steps", S + "UPDATE_EVERY", code=("UPDATE_EVERY = 5",)),
        Given("the 20 ADMM epochs give 80 updates", A + "20 epochs of 20 batches, an update every 5 steps",
              code=("ADMM_EPOCHS = 3 if SMOKE else 20",), equals=(("80", "20 * 20 // 5"),)),
        Given("(one image is 0.28 %)", A + "one of the 360 test images", equals=(("0.28", "100 / 360"),)),
        Given("0.972: 3 of 360 test images", A + "the accuracies 0.981 and 0.972 (printed) as images",
              equals=(("3", "round((0.981 - 0.972) * 360)"),)),
        Given("2 test images behind ADMM", A + "the accuracies 0.981 and 0.975 (printed) as images",
              equals=(("2", "round((0.981 - 0.975) * 360)"),)),
    ],
    "03_when_does_sparsity_pay": [
        Given(r"($128 \times 576$ weights, $576 \times N$ im2col columns)", S + "the live layer's GEMM",
              code=("(128, 576, 4096)",)),
        Given("puts scipy's CSR just above 95% on the 512×4608 layer", F + "the README's bench_spmm table: "
              "own CSR 3.28x dense and 3.7x scipy at 95 % (scipy 0.89x dense), 12.6x and 3.6x at 99 %",
              code=("README.md::512×4608 weight @ 4608×1024", "README.md::| 95 % | 3.28× | 3.7× |")),
        Given("one index per 16 weights", A + "4x4 tiles", code=("mask_blocks(w, (4, 4), s)",),
              equals=(("16", "4 * 4"),)),
    ],
    "04_accuracy_vs_sparsity": [
        Given("then spends the same **8 epochs**: ADMM 4 + retraining 4, SSL group lasso 4 + retraining 4, "
              "or magnitude pruning's 8 epochs of retraining", S + "the curve sweeps' base config",
              code=("paper_repro/configs/curves_base.toml::epochs = 4",
                    'paper_repro/sweeps/curves/select_filters.toml::"retrain.epochs" = 8',
                    'paper_repro/sweeps/curves/select_filters.toml::"ssl.epochs" = 4')),
        Given("a **validation split** of 6,000 training images", S + "val_fraction 0.1 of 60,000",
              code=("paper_repro/configs/curves_base.toml::6,000 images held out",)),
        Given("`conv2` (25,000 weights) and `fc1` (400,000)", A + "LeNet-5's 50x20x5x5 and 500x800 weights",
              equals=(("25,000", "50 * 20 * 5 * 5"), ("400,000", "500 * 800"))),
        Given("at one level (95 % for unstructured, 70 % for the structured sets)",
              S + "the selection sweeps",
              code=('paper_repro/sweeps/curves/select_unstructured.toml::structure = "unstructured", '
                    'sparsity = 0.95',
                    'paper_repro/sweeps/curves/select_filters.toml::structure = "filters", sparsity = 0.7')),
        Given("chosen on validation at 95 % (`select_lenet300_unstructured`)", S + "its selection sweep",
              code=('paper_repro/sweeps/curves/select_lenet300_unstructured.toml::structure = "unstructured",'
                    ' sparsity = 0.95',)),
        Given("the same 8-epoch budget, two seeds per level and a third at 98 % and 99 %",
              S + "the LeNet-300-100 curve and its decisive seeds",
              code=("paper_repro/sweeps/curves/decisive_seeds.toml::sparsity = [0.98, 0.99]",
                    'paper_repro/sweeps/curves/decisive_seeds.toml::"retrain.epochs" = 8')),
        Given("ADMM-NN keeps 20 % of conv1, 8 % of conv2, 0.9 % of fc1 and 7 % of fc2 (71.2× fewer weights "
              "on its LeNet-5)", F + "ADMM-NN's Table (the paper's LeNet-5); the sweep file sets the shares",
              code=('paper_repro/sweeps/curves/admm_nn_rates.toml::param = "conv1.weight", structure = '
                    '"unstructured", sparsity = 0.8',
                    'paper_repro/sweeps/curves/admm_nn_rates.toml::sparsity = 0.991')),
        Given("At an equal budget of 8 epochs", S + "the progressive sweep",
              code=("paper_repro/sweeps/curves/progressive.toml::Every run spends 8 epochs",)),
        Given("iterative magnitude pruning in four rounds sharing 8 retraining epochs, at unstructured 95 % "
              "and filters 80 %", S + "the progressive sweep",
              code=('paper_repro/sweeps/curves/progressive.toml::"magnitude.rounds" = 4',
                    'paper_repro/sweeps/curves/progressive.toml::structure = "filters", sparsity = 0.8 }]')),
        Given("up to 95 % both methods", S + "levels of the LeNet-300-100 curve",
              code=("paper_repro/sweeps/curves/lenet300_unstructured.toml::"
                    "sparsity = [0.5, 0.8, 0.9, 0.95, 0.98, 0.99]",)),
        Given("at 98 % ADMM ends", S + "a level of the LeNet-300-100 curve",
              code=("paper_repro/sweeps/curves/lenet300_unstructured.toml::"
                    "sparsity = [0.5, 0.8, 0.9, 0.95, 0.98, 0.99]",)),
        Given("at 99 % magnitude pruning's cut leaves 0.15, 8 epochs of retraining",
              S + "a level and the budget",
              code=("paper_repro/sweeps/curves/decisive_seeds.toml::sparsity = [0.98, 0.99]",)),
        Given("ADMM's cut keeps 0.8662 at 90 %", S + "a level of the filters curve (0.8662 is printed)",
              code=(FILTERS_LEVELS,)),
        Given("within a few tenths of a point up to 80 %", S + "a level of the filters curve",
              code=(FILTERS_LEVELS,)),
        Given("a third at 70 % and 90 %", S + "the decisive points of the filters curve",
              code=("paper_repro/sweeps/curves/decisive_seeds_lenet5.toml::sparsity = [0.7, 0.9]",)),
        Given("At 90 % ADMM ends ahead", S + "a level of the filters curve",
              code=(FILTERS_LEVELS,)),
        Given("Filters at 90 % do not yet break", S + "a level of the filters curve",
              code=(FILTERS_LEVELS,)),
        Given("At 30–50 % magnitude pruning ends on top", S + "levels of the shapes curve",
              code=(SHAPES_LEVELS,)),
        Given("From 70 % on ADMM leads", S + "a level of the shapes curve",
              code=(SHAPES_LEVELS,)),
        Given("at 90 % ADMM ends at 0.8935", S + "a level of the shapes curve (0.8935 is printed)",
              code=(SHAPES_LEVELS,)),
        Given("Shapes at 90 % break LeNet-5 sooner than filters at 90 %", S + "levels of the two curves",
              code=(SHAPES_LEVELS,
                    FILTERS_LEVELS)),
        Given("three at 90 % and 99 %", S + "the unstructured curve's decisive points",
              code=("paper_repro/sweeps/curves/decisive_seeds_lenet5_unstructured.toml::"
                    "sparsity = [0.9, 0.99]",)),
        Given("Up to 90 % ADMM ends about half a point", S + "a level of the unstructured curve",
              code=(UNSTRUCTURED_LEVELS,)),
        Given("0.9108 at 90 %, the seeds'", S + "a level of the unstructured curve (0.9108 is printed)",
              code=(UNSTRUCTURED_LEVELS,)),
        Given("at 50 % magnitude pruning's cut", S + "a level of the unstructured curve",
              code=(UNSTRUCTURED_LEVELS,)),
        Given("chosen on validation at 95 %, where", S + "the unstructured selection level",
              code=('paper_repro/sweeps/curves/select_unstructured.toml::structure = "unstructured", '
                    'sparsity = 0.95',)),
        Given("At 98–99 % magnitude pruning ends ahead", S + "levels of the unstructured curve",
              code=(UNSTRUCTURED_LEVELS,)),
        Given("ADMM's 0.8901 at 99 %", S + "a level of the unstructured curve (0.8901 is printed)",
              code=(UNSTRUCTURED_LEVELS,)),
        Given("its 8 epochs of retraining recover it", S + "magnitude pruning's budget",
              code=('paper_repro/sweeps/curves/unstructured.toml::"retrain.epochs" = 8',)),
        Given("Pruning conv2 and fc1 to 99 % does not break", S + "a level of the unstructured curve",
              code=(UNSTRUCTURED_LEVELS,)),
        Given("so at 90 % only 1 % of the weights remain",
              A + "a share 0.9 of the filters and of the columns keeps (1 - 0.9) ** 2 of the weights",
              code=(FILTERS_SHAPES_LEVELS,),
              equals=(("1", "round(100 * (1 - 0.9) ** 2)"),)),
        Given("cut keeps 0.7117 at 90 % and", S + "a level of the rho_0 diagnostic (0.7117 is printed)",
              code=("paper_repro/sweeps/curves/filters_shapes_rho.toml::sparsity = [0.8, 0.9]",)),
        Given("level with it at 80 %", S + "a level of the rho_0 diagnostic",
              code=("paper_repro/sweeps/curves/filters_shapes_rho.toml::sparsity = [0.8, 0.9]",)),
        Given("the filters and shapes curves: up to 80 % the three", S + "a level of the channels curve",
              code=(CHANNELS_LEVELS,)),
        Given("fall to about 0.30; at 90 %, where", S + "a level of the channels curve",
              code=(CHANNELS_LEVELS,)),
        Given("Channels at 90 % break LeNet-5 harder than filters or shapes at 90 %",
              S + "levels of the three curves", code=(CHANNELS_LEVELS, FILTERS_LEVELS, SHAPES_LEVELS)),
        Given("per level, at 90 % ADMM ends at", S + "a level of the per-level grid",
              code=("paper_repro/sweeps/curves/filters_shapes_grid.toml::sparsity = [0.8, 0.9]",)),
        Given("and at 80 % the three are level", S + "a level of the per-level grid",
              code=("paper_repro/sweeps/curves/filters_shapes_grid.toml::sparsity = [0.8, 0.9]",)),
        Given("and at 90 % ADMM is last", S + "a level of the filters + shapes curve",
              code=(FILTERS_SHAPES_LEVELS,)),
        Given("chose $\\rho_0$ = 1e-3 at 70 % by a hair", S + "the filters + shapes selection level",
              code=('paper_repro/sweeps/curves/select_filters_shapes.toml::'
                    'structure = "filters", sparsity = 0.7',)),
        Given("its 4 epochs towards the set are 4 epochs less", S + "ADMM's share of the budget",
              code=("paper_repro/configs/curves_base.toml::epochs = 4",)),
        Given("on Fashion-MNIST with 8 epochs after the dense model", S + "the curves' budget",
              code=("paper_repro/configs/curves_base.toml::the same budget of 8 epochs",)),
    ],
    "05_vector_block_vs_block_vs_balanced": [
        Given("About 15 seconds on a 2-core laptop", F + "the header's runtime: 13 s with numba's cache "
              "empty, 3.4 s with it warm (nbclient), on 2 cores"),
        Given("at **90 % sparsity**", S + "LEVEL", code=("LEVEL = 0.9",)),
        Given(r"blocks of $5 \times 5$ and $10 \times 10$, balanced vectors of $V = 20$ and $V = 100$, "
              r"N:M at 1:10, and vector ∧ block with $10 \times 10$ blocks and $V = 10$",
              S + "the masks of section 1",
              code=("mask_blocks(G, (5, 5)", "mask_blocks(G, (10, 10)", "mask_balanced(G, 20,",
                    "mask_balanced(G, 100,", "mask_nm(G, 1, 10)", "mask_vector_block(G, 10, (10, 10),")),
        Given("The panels show the first 100 columns", S + "the crop", code=("mask[:, :100]",)),
        Given("run balanced $V = 20$ at 50, 75, 80, 90 and 95 % instead of the common levels 98 and 99 %",
              S + "the sweeps' levels (paper_repro/guo_sweeps.py)",
              code=('paper_repro/guo_sweeps.py::"balanced20": ("balanced", {"vector_size": 20}, '
                    '(0.5, 0.75, 0.8, 0.9, 0.95))',
                    "paper_repro/guo_sweeps.py::LEVELS = (0.75, 0.9, 0.95, 0.98, 0.99)")),
        Given("(`vector_share`, default 0.5)", S + "vector_block_split's default",
              code=("refimpl/projections/blocks.py::n_blocks, vector_share=0.5)",)),
        Given("ramps from 0 to the level over the first 2 of 3 epochs with an update every 100 optimizer "
              "steps",
              S + "the sweeps' gradual phase, as the schedule cell sets it",
              code=("END, EVERY = 2 * STEPS_PER_EPOCH, 100", "steps = np.arange(0, 3 * STEPS_PER_EPOCH + 1)",
                    'paper_repro/sweeps/guo/gradual_conv2_fc1.toml::"gradual.epochs" = 3',
                    'paper_repro/sweeps/guo/gradual_conv2_fc1.toml::"gradual.end_epoch" = 2',
                    'paper_repro/sweeps/guo/gradual_conv2_fc1.toml::"gradual.update_every" = 100')),
        Given("Gaussian noise of 30 % of the weights' RMS", S + "the drift", code=("0.3 * rms",)),
        Given("The comparison itself (issue 10;", F + "the issue's number (`issues show 10`)"),
        Given("(3 epochs, the ramp over the first 2, then the hard prune and 1 epoch of masked retraining), "
              "2 seeds", S + "the comparison's sweep files",
              code=('paper_repro/sweeps/guo/gradual_conv2_fc1.toml::"gradual.epochs" = 3',
                    'paper_repro/sweeps/guo/gradual_conv2_fc1.toml::"gradual.end_epoch" = 2',
                    'paper_repro/sweeps/guo/gradual_conv2_fc1.toml::"retrain.epochs" = 1',
                    "paper_repro/sweeps/guo/gradual_conv2_fc1.toml::seed = [0, 1]")),
        Given("at the same budget of 4 epochs", A + "gradual 3 + retraining 1 = ADMM 2 + retraining 2",
              code=('paper_repro/sweeps/guo/admm.toml::"admm.epochs" = 2',
                    'paper_repro/sweeps/guo/admm.toml::"retrain.epochs" = 2'),
              equals=(("4", "3 + 1"),)),
        Given("at unstructured 95 % on conv2 + fc1", S + "the selection level",
              code=('paper_repro/sweeps/guo/select.toml::structure = "unstructured", sparsity = 0.95',)),
        Given("on a smaller budget (the first 10,800 training images), one block shape (16×16, the grid "
              "vector ∧ block shares) and one vector length (32)",
              S + "the VGG-small sweep's base and structures",
              code=("paper_repro/configs/guo_vgg_small_base.toml::limit_train = 10800",
                    'paper_repro/guo_sweeps.py::"block16x16": ("blocks", {"block_shape": [16, 16]}),',
                    'paper_repro/guo_sweeps.py::"balanced32": ("balanced", {"vector_size": 32}),')),
        Given("the kept shares 1/2 to 1/32", S + "VGG_LEVELS",
              code=("paper_repro/guo_sweeps.py::VGG_LEVELS = (0.5, 0.75, 0.875, 0.9375, 0.96875)",)),
        Given("An independent calibration at 75–97 % on conv2 + fc1", F + "issue 10, also stated in "
              "paper_repro/guo_sweeps.py",
              code=("paper_repro/guo_sweeps.py::calibration at 75-97 % on conv2",)),
    ],
    "06_weight_unification": [
        Given("arXiv:2106.08301", F + "the arXiv identifier (References of refimpl/projections/unify.py)",
              code=("refimpl/projections/unify.py::arXiv:2106.08301",)),
        Given("with 42 % of the 4×4 blocks of conv2 and fc1 unified and 42 % pruned",
              S + "the level of the rho_0 selection sweep, which section 3 also projects",
              code=("paper_repro/sweeps/unify/select.toml::block_shape = [4, 4], unify = 0.42, prune = 0.42",
                    "unify=0.42, prune=0.42")),
        Given("unifying 99 % of the blocks", S + "the unify-0.99 level",
              code=('paper_repro/sweeps/unify/unify_vs_prune.toml::name = "unify-0.99"',)),
        Given("behind pruning by 0.12 to 0.45 points at 3.2x and 4.6x, ahead by 0.32 to 0.40 points at 8.3x "
              "to 8.7x and by 1.04 points at 13.57x against pruning's 15.30x",
              A + "differences of the printed means (points): 4.6x prune - unify, 3.2x prune - both; "
              "8.7x both - prune, unify - prune; 13.57x both - 15.30x prune",
              equals=(("0.12", "round(100 * (0.9127 - 0.9115), 2)"),
                      ("0.45", "round(100 * (0.9165 - 0.9120), 2)"),
                      ("0.32", "round(100 * (0.9098 - 0.9066), 2)"),
                      ("0.40", "round(100 * (0.9106 - 0.9066), 2)"),
                      ("1.04", "round(100 * (0.9073 - 0.8969), 2)"))),
        Given("a few images in 6,000", F + "the validation split of the unification runs",
              code=("paper_repro/configs/unify_base.toml::6,000 images held out",)),
        Given("unifying 77 % of the blocks (3.2x)", S + "a level of the ablation",
              code=('paper_repro/sweeps/unify/magnitude_gradient.toml::name = "mean-unify-0.77"',)),
        Given("and unifying 88 % (4.6x)", S + "a level of the ablation",
              code=('paper_repro/sweeps/unify/magnitude_gradient.toml::name = "mean-unify-0.88"',)),
        Given("(99.5 % of its weights)", F + "conv2-conv6 + fc1 of VGG-small, counted in guo_sweeps.py",
              code=("paper_repro/guo_sweeps.py::99.5 % of VGG-small's weights",)),
        Given("retraining 2 epochs on the first 10,800 training images", S + "the VGG-small base config",
              code=("paper_repro/configs/unify_vgg_small_base.toml::limit_train = 10800",
                    "paper_repro/configs/unify_vgg_small_base.toml::epochs = 2")),
        Given("95 % of them leaves", S + "the prune-0.95 level",
              code=('paper_repro/sweeps/unify/vgg_small.toml::name = "prune-0.95"',)),
        Given("while unifying 88 % of the blocks keeps", S + "the unify-0.88 level",
              code=('paper_repro/sweeps/unify/vgg_small.toml::name = "unify-0.88"',)),
        Given("With two epochs of retraining on 10,800 images", S + "the VGG-small base config",
              code=("paper_repro/configs/unify_vgg_small_base.toml::limit_train = 10800",)),
        Given("with four epochs on all 54,000 images", S + "LeNet-5's unification budget",
              code=("paper_repro/configs/unify_base.toml::54,000 training images",
                    "paper_repro/configs/unify_base.toml::(ADMM 4 + retraining 4)")),
        Given("with four epochs of retraining on all 54,000 images", S + "LeNet-5's unification budget",
              code=("paper_repro/configs/unify_base.toml::54,000 training images",
                    "paper_repro/configs/unify_base.toml::(ADMM 4 + retraining 4)")),
        Given("about 11 hours of this machine", A + "30 runs, 10x the image-epochs of a VGG-small run "
              "(ADMM 134 s + retraining 126 s measured, refimpl/memory.py), 2 workers",
              equals=(("11", "round(30 * 10 * (134 + 126) / 2 / 3600)"),)),
    ],
    "08_exercises": [
        Given(r"a $1 \times 1$ kernel", S + "a case of the oracle's layer check",
              code=('refimpl/testing/layers.py::"s1-p2-1x1"',)),
        Given("multiples of 1/8", S + "the oracle's dyadic inputs",
              code=("refimpl/testing/layers.py::multiples of 1/8",)),
    ],
}


# --- the prose ---------------------------------------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.§/^{\\-])(?:1e-\d+|\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\w.-]|\.\d)"
                    r"|(?<![\w.§/^{\\-])\d+(?:\.\d+)?(?=[x×%])")
CROSS_REFERENCE = re.compile(r"\b(?:[Nn]otebooks?|[Cc]hapters?|[Ss]ections?|[Ee]xercises?|[Ll]ectures?)"
                             r"\s+\d+(?:(?:,\s*|\s+and\s+|\s+or\s+|\s*[–-]\s*)\d+)*")
CITATION_YEAR = re.compile(r"(?:et al\.,?|[A-Z][A-Za-z&]+,?)\s+(?:19|20)\d\d\b")
HEADING_NUMBER = re.compile(r"^#+\s+\d+\.", re.MULTILINE)
LINK_NUMBER = re.compile(r"\[\d+(?:\.|(?=\]))")  # [1. Projections](01_projections.ipynb), [0](00_...)
INDEX = re.compile(r"[_^](?:\{[^}]*\}|\w)")  # LaTeX sub- and superscripts: W_1, x^2, U^{k+1}, \sum_{c=0}
CODE_SPAN = re.compile(r"`[^`]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
POWER_OF_TEN = re.compile(r"10\^\{-(\d+)\}")


def _blank(text: str, pattern: re.Pattern) -> str:
    """Replace every match by spaces of the same length (positions in the text stay valid)."""
    return pattern.sub(lambda m: " " * len(m.group(0)), text)


def normalise(markdown: str) -> str:
    """A markdown cell with whitespace collapsed, as :attr:`Given.phrase` quotes it."""
    return " ".join(_blank(markdown, HEADING_NUMBER).split())


@dataclass(frozen=True)
class ProseNumber:
    text: str
    value: float
    decimals: int
    start: int
    context: str

    def __str__(self) -> str:
        return f"{self.text!r} in '...{self.context}...'"


def prose_numbers(markdown: str) -> list[ProseNumber]:
    """The quantities of a markdown text (module docstring), positions in :func:`normalise`'s text."""
    text = normalise(markdown)
    masked = text
    for pattern in (CODE_SPAN, LINK_NUMBER, LINK_TARGET, CROSS_REFERENCE, CITATION_YEAR):
        masked = _blank(masked, pattern)
    masked = POWER_OF_TEN.sub(lambda m: f"1e-{m.group(1)}".ljust(len(m.group(0))), masked)
    masked = _blank(masked, INDEX)
    found = []
    for match in NUMBER.finditer(masked):
        raw = match.group(0)
        decimals = len(raw.split(".")[1]) if "." in raw and "e" not in raw else 0
        context = text[max(0, match.start() - 40):match.end() + 25]
        found.append(ProseNumber(raw, float(raw.replace(",", "")), decimals, match.start(), context))
    return found


# --- the outputs -------------------------------------------------------------------------------------

OUTPUT_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?![\d.])|\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def output_text(notebook: dict) -> str:
    """Everything the code cells printed or returned as text."""
    parts = []
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        for out in cell.get("outputs", []):
            text = out.get("text") or out.get("data", {}).get("text/plain", "")
            parts.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(parts)


def output_numbers(text: str) -> tuple[set[int], list[float]]:
    """The integers printed as integers, and every printed number as a float."""
    integers, values = set(), []
    for raw in OUTPUT_NUMBER.findall(text):
        value = float(raw.replace(",", ""))
        values.append(value)
        if value == int(value) and ("e" not in raw.lower() or "." not in raw):
            integers.add(int(value))
    return integers, values


def matches_output(number: ProseNumber, integers: set[int], values: list[float]) -> bool:
    """Whether ``number`` is a printed number (module docstring: an integer exactly, a decimal rounded)."""
    if number.decimals == 0 and "e" not in number.text:
        return number.value == int(number.value) and int(number.value) in integers
    half = 0.5 * 10.0 ** -number.decimals if number.decimals else 1e-12 * number.value
    return any(abs(v - number.value) <= half * (1 + 1e-9) for v in values)


# --- the check ---------------------------------------------------------------------------------------

def markdown_cells(notebook: dict) -> list[str]:
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "markdown"]


def code_text(notebook: dict) -> str:
    return "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")


def given_problems(notebook: dict, givens: list[Given]) -> list[str]:
    """What is wrong with the givens of a notebook: a phrase not in the prose, a missing literal, bad sums."""
    texts = [normalise(md) for md in markdown_cells(notebook)]
    code = code_text(notebook)
    problems = []
    for given in givens:
        if not any(given.phrase in text for text in texts):
            problems.append(f"given phrase not in the prose (reword GIVENS with the text): {given.phrase!r}")
        for literal in given.code:
            path, _, needle = literal.rpartition("::")
            haystack = (ROOT / path).read_text(encoding="utf-8") if path else code
            if needle not in haystack:
                where = path or "the notebook's code"
                problems.append(f"setting {needle!r} of {given.phrase!r} is no longer in {where}")
        numbers = {n.text for n in prose_numbers(given.phrase)}
        for written, expression in given.equals:
            if written not in numbers:
                problems.append(f"{written!r} is not a number of the phrase {given.phrase!r}")
                continue
            value = eval(expression, {"math": math})  # noqa: S307 - expressions written in this file
            decimals = len(written.split(".")[1]) if "." in written else 0
            if round(float(value), decimals) != float(written.replace(",", "")):
                problems.append(f"{written} in {given.phrase!r} should be {expression} = {value}")
    return problems


def unbacked_numbers(notebook: dict, givens: list[Given]) -> list[str]:
    """Numbers of the prose that are neither an output nor a given, with their context."""
    integers, values = output_numbers(output_text(notebook))
    unbacked = []
    for markdown in markdown_cells(notebook):
        text = normalise(markdown)
        spans = [(m.start(), m.start() + len(g.phrase)) for g in givens
                 for m in re.finditer(re.escape(g.phrase), text)]
        for number in prose_numbers(markdown):
            if any(a <= number.start < b for a, b in spans):
                continue
            if not matches_output(number, integers, values):
                unbacked.append(str(number))
    return unbacked


def _load(stem: str) -> dict:
    return json.loads((NOTEBOOK_DIR / f"{stem}.ipynb").read_text(encoding="utf-8"))


ALL = sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb"))
CHECKED = [stem for stem in ALL if stem not in PENDING]


def test_every_notebook_is_checked_or_pending():
    assert CHECKED
    assert set(PENDING) <= set(ALL), f"PENDING names notebooks that do not exist: {set(PENDING) - set(ALL)}"
    assert set(GIVENS) <= set(CHECKED), f"GIVENS for notebooks not checked: {set(GIVENS) - set(CHECKED)}"


@pytest.mark.parametrize("stem", CHECKED)
def test_prose_numbers_come_from_outputs_or_givens(stem):
    unbacked = unbacked_numbers(_load(stem), GIVENS.get(stem, []))
    assert not unbacked, (f"{stem}: numbers in the prose that no output prints and GIVENS does not state "
                          "(rerun the notebook, fix the prose, or add a Given):\n  " + "\n  ".join(unbacked))


@pytest.mark.parametrize("stem", CHECKED)
def test_givens_still_hold(stem):
    problems = given_problems(_load(stem), GIVENS.get(stem, []))
    assert not problems, f"{stem}:\n  " + "\n  ".join(problems)


# --- the mechanism itself ------------------------------------------------------------------------------

def _edited(stem: str, cell_type: str, old: str, new: str) -> dict:
    """A copy of a stored notebook with ``old`` replaced by ``new`` in its sources or outputs."""
    notebook = _load(stem)
    hits = 0
    for cell in notebook["cells"]:
        if cell_type == "output":
            for out in cell.get("outputs", []):
                text = "".join(out.get("text", ""))
                if old in text:
                    out["text"], hits = text.replace(old, new), hits + 1
        elif cell["cell_type"] == cell_type:
            source = "".join(cell["source"])
            if old in source:
                cell["source"], hits = source.replace(old, new), hits + 1
    assert hits, f"{old!r} is not in a {cell_type} of {stem}: update this test"
    return notebook


def test_a_stale_number_is_caught():
    stem, givens = "02_admm_step_by_step", GIVENS["02_admm_step_by_step"]
    assert not unbacked_numbers(_load(stem), givens)
    # the prose changed without a rerun
    prose = _edited(stem, "markdown", "ends at 0.981 test accuracy", "ends at 0.989 test accuracy")
    assert [u for u in unbacked_numbers(prose, givens) if u.startswith("'0.989'")]
    # a rerun changed a result the prose quotes
    rerun = _edited(stem, "output", "primal filters 0.028", "primal filters 0.031")
    assert [u for u in unbacked_numbers(rerun, givens) if u.startswith("'0.028'")]
    # a setting changed in the code, the prose still states the old one
    setting = _edited(stem, "code", "UPDATE_EVERY = 5 ", "UPDATE_EVERY = 4 ")
    assert any("'UPDATE_EVERY = 5'" in p for p in given_problems(setting, givens))
    # a given whose phrase was reworded, and one whose sum is wrong
    reworded = _edited(stem, "markdown", "(one image is 0.28 %)", "(one image is about 0.3 %)")
    assert any("not in the prose" in p for p in given_problems(reworded, givens))
    wrong = [Given("(one image is 0.28 %)", A + "deliberately wrong", equals=(("0.28", "100 / 300"),))]
    assert any("should be 100 / 300" in p for p in given_problems(_load(stem), wrong))


def test_what_counts_as_a_quantity():
    text = ("## 2. Results\nSee [1. Projections](01_projections.ipynb), [0](00_from_scratch.ipynb), "
            "notebook 4, sections 1 and 2, chapter 3, exercise 3, Boyd et al. (§3.4.1), Boyd et al., 2011 "
            "and ECCV 2018. "
            "`conv2` of LeNet-5 is a 2-layer, 2-D thing with $W_1$, $x^2$ and $U^{k+1}$; `lr=0.5`.\n"
            r"It reaches 0.981 at update 21, 1.90× faster, 95 % sparse, 2,293,000 MACs and $\rho = 10^{-3}$.")
    assert [(n.text, n.value, n.decimals) for n in prose_numbers(text)] == [
        ("0.981", 0.981, 3), ("21", 21.0, 0), ("1.90", 1.9, 2), ("95", 95.0, 0), ("2,293,000", 2293000.0, 0),
        ("1e-3", 1e-3, 0)]


def test_how_a_number_matches_an_output():
    printed = output_numbers("update  51  primal 7.834e-02 | 9.00 | 25/50 | total 2,293,000 | 1.000e+00")
    number = {n.text: n for n in prose_numbers("0.08 0.078 0.079 51 9 25 50 2,293,000 1.0 1 52 0.1")}
    assert matches_output(number["0.08"], *printed) and matches_output(number["0.078"], *printed)
    assert not matches_output(number["0.079"], *printed)  # more than half a unit of 0.001 away
    assert all(matches_output(number[t], *printed) for t in ("51", "9", "25", "50", "2,293,000", "1.0"))
    assert not matches_output(number["1"], *printed)  # 1.000e+00 is a measured float, not the integer 1
    assert not matches_output(number["52"], *printed)
    assert matches_output(number["0.1"], *printed)  # 7.834e-02 rounds to 0.1: a 1-digit quote is loose
