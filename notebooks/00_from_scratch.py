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
# # 0. Pruning from scratch: magnitude pruning, the projection and ADMM in plain NumPy
#
# * **Objectives.** After this notebook you can explain why magnitude pruning *is* a Euclidean
#   projection; why keeping whole rows (structured pruning) ranks rows by their L2 norm; what the three
#   steps of ADMM do and how to check that ADMM works on a problem whose answer is known; and run the whole
#   pipeline (train, ADMM, hard prune, masked retraining) on a 2-layer network — first in about 100 lines
#   of plain NumPy, then with refimpl.
# * **Prerequisites.** NumPy; gradient descent; the chain rule for a 2-layer network (softmax
#   cross-entropy, ReLU).
# * **Runtime.** A few seconds on a 2-core laptop.
# * **Reading order.** First of the course; next [1. Projections](01_projections.ipynb) and
#   [2. ADMM step by step](02_admm_step_by_step.ipynb). The whole order, with the exercises:
#   `docs/COURSE.md`; the words: `docs/GLOSSARY.md`.
#
# Pruning sets weights to zero. *Which* weights, and *how* training should prepare the network for it,
# is the whole subject. This notebook builds the answer from nothing: every function in the first four
# sections is written out here, and the last section checks each one against refimpl's version.

# %% tags=["parameters"]
import os

SMOKE = os.environ.get("REFIMPL_SMOKE") == "1"
DENSE_EPOCHS = 4 if SMOKE else 20  # plain SGD on the 2-layer network
ADMM_EPOCHS = 4 if SMOKE else 30  # ADMM: one Z/U update per epoch
RETRAIN_EPOCHS = 2 if SMOKE else 5  # masked retraining after the hard prune
N_PROBLEMS = 5 if SMOKE else 20  # random least-squares problems for the dual-rescaling comparison

# %%
import itertools

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from refimpl.notebook import figure_dir, repo_root

FIG_DIR = figure_dir(SMOKE, repo_root())  # a temporary directory in smoke mode: CI never overwrites figures

# %% [markdown]
# ## 1. Magnitude pruning is a projection
#
# Keep $k$ of the $n$ entries of $w$ and zero the rest. Which $z$ with at most $k$ nonzeros is **nearest**
# to $w$? For a fixed set $T$ of kept entries the best $z$ copies $w$ on $T$, and the error is what was
# dropped: $\|w - z\|^2 = \sum_{i \notin T} w_i^2$. That is smallest when the dropped entries are the
# $n - k$ smallest in $|w_i|$. So "keep the $k$ largest magnitudes" is the **Euclidean projection**
#
# $$\Pi_S(w) = \operatorname*{arg\,min}_{z \in S} \|w - z\|^2, \qquad S = \{z : \text{at most } k
#   \text{ nonzeros}\},$$
#
# even though $S$ is not convex. Below: the rule, and a brute-force check over all $\binom{6}{2} = 15$
# supports.

# %%
def prune_magnitude(w, k):
    """Keep the k entries of largest |w| (ties: lower index), zero the others."""
    keep = np.argsort(-np.abs(w), kind="stable")[:k]
    z = np.zeros_like(w)
    z[keep] = w[keep]
    return z


def nearest_by_brute_force(w, k):
    """Try every set of k kept entries (rows, for a 2-D w): the definition of the projection, tiny w only."""
    best = None
    for support in itertools.combinations(range(len(w)), k):
        z = np.zeros_like(w)
        z[list(support)] = w[list(support)]
        if best is None or np.sum((w - z) ** 2) < np.sum((w - best) ** 2):
            best = z
    return best


w = np.array([0.3, -2.0, 0.1, 1.5, -0.4, 0.9])
print("w              ", w)
print("magnitude, k=2 ", prune_magnitude(w, 2))
print("brute force    ", nearest_by_brute_force(w, 2))
assert np.array_equal(prune_magnitude(w, 2), nearest_by_brute_force(w, 2))

# %% [markdown]
# ## 2. Structured pruning: keep whole rows
#
# A layer $y = W x$ with $W \in \mathbb{R}^{\text{out} \times \text{in}}$ runs faster only if whole rows
# (output neurons; for a convolution, *filters*) disappear: the layer then simply has fewer outputs. The
# set is now "at most $k$ nonzero **rows**". The same argument, with rows as the groups: a kept row is
# copied, a dropped row costs its squared norm, so the projection keeps the $k$ rows of largest
# **L2 norm** $\|W_r\|_2$ (not the L1 norm: notebook 1 shows the counterexample).

# %%
def project_rows(W, k):
    """Euclidean projection onto 'at most k nonzero rows': keep the k rows of largest L2 norm."""
    keep = np.argsort(-np.sum(W**2, axis=1), kind="stable")[:k]
    Z = np.zeros_like(W)
    Z[keep] = W[keep]
    return Z


W_demo = np.array([[3.0, 0.0, 0.0], [1.2, 1.2, 1.2], [0.5, -0.5, 0.2], [0.0, 2.5, 0.0]])
print("L1 norms of the rows     ", np.abs(W_demo).sum(axis=1))
print("squared L2 norms         ", np.sum(W_demo**2, axis=1))
print("projection, k=2:\n", project_rows(W_demo, 2))
assert np.array_equal(project_rows(W_demo, 2), nearest_by_brute_force(W_demo, 2))

# %% [markdown]
# Row 1 has the largest L1 norm, yet the projection drops it: dropping it costs its squared L2 norm,
# less than dropping row 3 would. Ranking by L1 would keep rows 0 and 1 and throw away more of $W$.
#
# ## 3. ADMM on a problem whose answer is known
#
# Training wants to minimise a loss $f(W)$ *and* end in the set $S$. ADMM splits the two: a copy $Z$
# carries the constraint, a dual variable $U$ remembers how much $W$ and $Z$ have disagreed, and three
# steps repeat (scaled form, Boyd et al. 2011, §3.1.1):
#
# 1. **W-step**: $W \leftarrow \arg\min_W f(W) + \frac{\rho}{2}\|W - Z + U\|^2$ — the loss plus a spring
#    pulling $W$ towards $Z - U$;
# 2. **Z-step**: $Z \leftarrow \Pi_S(W + U)$ — the projection of sections 1 and 2;
# 3. **U-step**: $U \leftarrow U + W - Z$.
#
# The test problem: $f(W) = \frac12\|AW - B\|^2$ with $A$ having orthonormal columns ($A^\top A = I$).
# Then $f(W) = \frac12\|W - W^\star\|^2 + \text{const}$ with $W^\star = A^\top B$, so the best $W$ with at
# most $k$ nonzero rows is **known**: $\Pi_S(W^\star)$. The W-step has a closed form,
# $W = (W^\star + \rho(Z - U)) / (1 + \rho)$. The penalty $\rho$ starts at $10^{-3}$ and grows by 1.3 per
# update up to 1, the schedule of StructADMM's authors: small at first so the loss is barely disturbed,
# large at the end so that $W$ has to follow $Z$.

# %%
def admm_least_squares(seed, k=4, updates=80, rescale_dual=False):
    """ADMM with an exact W-step on f(W) = ½‖AW - B‖², AᵀA = I; returns the history and the answer."""
    rng = np.random.default_rng(seed)
    A, _ = np.linalg.qr(rng.standard_normal((30, 12)))
    B = rng.standard_normal((30, 5))
    W_star = A.T @ B
    answer = project_rows(W_star, k)
    W = rng.standard_normal(W_star.shape)
    Z, U, rho = project_rows(W, k), np.zeros_like(W), 1e-3
    history = []
    for _ in range(updates):
        W = (W_star + rho * (Z - U)) / (1 + rho)  # W-step (exact)
        Z_prev, Z = Z, project_rows(W + U, k)  # Z-step
        U = U + W - Z  # U-step
        history.append({"primal": np.linalg.norm(W - Z) / np.linalg.norm(W),
                        "dual": rho * np.linalg.norm(Z - Z_prev),
                        "error": np.linalg.norm(Z - answer) / np.linalg.norm(answer), "rho": rho})
        rho_new = min(1.3 * rho, 1.0)
        if rescale_dual:
            U = U * rho / rho_new  # keep rho·U continuous (Boyd §3.4.1), see below
        rho = rho_new
    return history, W, Z, answer


history, W, Z, answer = admm_least_squares(seed=0)
print(f"after {len(history)} updates: ||Z - answer|| / ||answer|| = {history[-1]['error']:.1e}, "
      f"primal residual {history[-1]['primal']:.1e}")
assert np.allclose(Z, answer) and np.allclose(W, answer, atol=1e-6)

fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
for key, label in (("primal", r"primal residual $\|W - Z\| / \|W\|$"),
                   ("dual", r"dual residual $\rho \|Z - Z_{prev}\|$"),
                   ("error", r"error $\|Z - \Pi_S(W^\star)\| / \|\Pi_S(W^\star)\|$"),
                   ("rho", r"penalty $\rho$")):
    ax.semilogy([h[key] + 1e-17 for h in history], label=label)
ax.set_xlabel("Z/U update")
ax.set_title("ADMM on least squares with a known answer (keep 4 of 12 rows)")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
fig.savefig(FIG_DIR / "00_admm_least_squares.png", dpi=120)
plt.show()

# %% [markdown]
# While $\rho$ is small the spring is weak: $W$ stays near $W^\star$, which is not in the set, the primal
# residual stays near 1, and $Z$ jumps between supports (notebook 2 explains this "period-2 cycle"). Once
# $\rho$ is large enough $W$ is pulled into the set, the support of $Z$ stops changing, and from then on
# all three curves fall geometrically: $Z$ converges to the known answer.
#
# **Rescaling the dual.** $U$ is the *scaled* dual: the Lagrange multiplier of the constraint $W = Z$ is
# $Y = \rho U$. Growing $\rho$ without touching $U$ multiplies $Y$ by 1.3 at every update; Boyd et al.
# (§3.4.1) rescale $U \leftarrow U \rho_\text{old}/\rho_\text{new}$ so that $Y$ stays continuous.
# StructADMM's authors do not; refimpl offers both (`ADMM(..., rescale_dual=True)`, default `False`). On
# random problems of this kind both rules find the answer; the count of updates until $Z$ equals it:

# %%
for rescale in (False, True):
    needed = []
    for seed in range(N_PROBLEMS):
        errors = np.array([h["error"] for h in admm_least_squares(seed, rescale_dual=rescale)[0]])
        needed.append(int(np.argmax(errors < 1e-9)) + 1 if np.any(errors < 1e-9) else None)
    found = [n for n in needed if n is not None]
    print(f"rescale_dual={rescale!s:5}: answer found in {len(found)} of {N_PROBLEMS} problems, "
          f"updates needed: median {np.median(found):.0f}, max {max(found)}")

# %% [markdown]
# ## 4. A 2-layer network on handwritten digits
#
# scikit-learn's $8 \times 8$ digits (1797 images, 64 pixels), 1437 for training and 360 for testing; the
# network is $x \mapsto W_2\,\mathrm{ReLU}(W_1 x + b_1) + b_2$ with 64 hidden neurons, trained by
# mini-batch SGD on the softmax cross-entropy. The constraint: **at most 8 of the 64 rows of $W_1$**
# (hidden neurons) are nonzero. The backward pass is the chain rule written out: with
# $p = \mathrm{softmax}(\text{logits})$, $\partial L / \partial\,\text{logits} = (p - \text{onehot}(y)) / N$.

# %%
digits_x, digits_y = load_digits(return_X_y=True)
order = np.random.default_rng(0).permutation(len(digits_x))
X, Y = digits_x[order] / 16.0, digits_y[order]
X_train, y_train, X_test, y_test = X[:1437], Y[:1437], X[1437:], Y[1437:]
HIDDEN, K = 64, 8  # hidden neurons, and how many of them the constraint keeps


def init_params(seed=0):
    """He-normal weights, zero biases; W1 is (hidden, 64), W2 is (10, hidden)."""
    r = np.random.default_rng(seed)
    return {"W1": r.standard_normal((HIDDEN, 64)) * np.sqrt(2 / 64), "b1": np.zeros(HIDDEN),
            "W2": r.standard_normal((10, HIDDEN)) * np.sqrt(2 / HIDDEN), "b2": np.zeros(10)}


def loss_and_gradients(p, x, y):
    """Mean softmax cross-entropy of a batch and its gradient with respect to every parameter."""
    h = np.maximum(x @ p["W1"].T + p["b1"], 0)  # (N, hidden)
    logits = h @ p["W2"].T + p["b2"]  # (N, 10)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    prob = e / e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    d_logits = prob.copy()
    d_logits[rows, y] -= 1
    d_logits /= len(y)
    d_h = (d_logits @ p["W2"]) * (h > 0)
    grads = {"W2": d_logits.T @ h, "b2": d_logits.sum(0), "W1": d_h.T @ x, "b1": d_h.sum(0)}
    return -np.mean(np.log(prob[rows, y])), grads


def accuracy(p, x, y):
    """Share of images whose largest logit is the right class."""
    return np.mean(np.argmax(np.maximum(x @ p["W1"].T + p["b1"], 0) @ p["W2"].T + p["b2"], axis=1) == y)


def train(p, epochs, lr=0.1, admm=None, mask=None, seed=0):
    """Mini-batch SGD (batch 32); with `admm`, the penalty gradient and one Z/U update per epoch."""
    r = np.random.default_rng(seed)
    for _ in range(epochs):
        for batch in np.array_split(r.permutation(len(X_train)), len(X_train) // 32):
            _, g = loss_and_gradients(p, X_train[batch], y_train[batch])
            if admm is not None:  # the W-step: gradient of f + rho/2 ||W1 - Z + U||^2
                g["W1"] += admm["rho"] * (p["W1"] - admm["Z"] + admm["U"])
            for name in p:
                p[name] -= lr * g[name]
            if mask is not None:  # masked retraining: pruned weights stay exactly 0
                p["W1"] *= mask
        if admm is not None:  # Z-step and U-step, then grow rho
            admm["Z"] = project_rows(p["W1"] + admm["U"], K)
            admm["U"] += p["W1"] - admm["Z"]
            admm["rho"] = min(1.3 * admm["rho"], 1.0)
    return p


params = train(init_params(), DENSE_EPOCHS)
acc_dense = accuracy(params, X_test, y_test)
cut = dict(params, W1=project_rows(params["W1"], K))
acc_cut = accuracy(cut, X_test, y_test)
admm_state = {"Z": project_rows(params["W1"], K), "U": np.zeros_like(params["W1"]), "rho": 1e-2}
params = train(params, ADMM_EPOCHS, admm=admm_state)
acc_admm = accuracy(params, X_test, y_test)
primal = np.linalg.norm(params["W1"] - admm_state["Z"]) / np.linalg.norm(params["W1"])
params["W1"] = project_rows(params["W1"], K)  # the hard prune
acc_hard = accuracy(params, X_test, y_test)
params = train(params, RETRAIN_EPOCHS, mask=params["W1"] != 0)
acc_retrained = accuracy(params, X_test, y_test)
print(f"dense {acc_dense:.3f} | dense cut to {K} of {HIDDEN} neurons, no retraining {acc_cut:.3f}")
print(f"end of ADMM {acc_admm:.3f} (primal residual {primal:.3f}) | hard pruned {acc_hard:.3f} | "
      f"after {RETRAIN_EPOCHS} epochs of masked retraining {acc_retrained:.3f}")
assert np.count_nonzero(np.any(params["W1"] != 0, axis=1)) <= K

# %% [markdown]
# Cutting the dense network to 8 neurons right away loses most of its accuracy; after ADMM the same cut
# loses almost nothing, because ADMM has already moved $W_1$ into the set while the rest of the network
# adapted (the primal residual says how far $W_1$ still was from it). Whether that head start still
# matters once both are retrained for the same number of epochs is a separate question; notebook 4 asks
# it at equal budget.
#
# ## 5. The same with refimpl
#
# Every function above has a tested counterpart in refimpl. First, piece by piece:
#
# * `project_rows` is `refimpl.projections.project_filters` (rows of a linear weight are its "filters"),
#   and refimpl's conformance checker (`refimpl.testing.check_projection`) accepts it;
# * the Z- and U-steps are `refimpl.prune.admm.admm_update`;
# * `loss_and_gradients` is what a refimpl network's `backward` computes.

# %%
from refimpl.nn import Linear, ReLU, Sequential, softmax_cross_entropy
from refimpl.projections import project_filters
from refimpl.prune import ADMM, Constraint, MaskedRetraining, hard_prune
from refimpl.prune.admm import admm_update
from refimpl.testing import check_projection
from refimpl.train import SGD, Trainer, evaluate

rng = np.random.default_rng(1)
V = rng.standard_normal((64, 64))
assert np.array_equal(project_rows(V, K), project_filters(V, keep=K))
print(check_projection(lambda w, keep: project_rows(w, keep), "filters", keep=2, n_examples=50,
                       shapes=[(4, 6), (6, 8), (3, 5)]))  # 2-D weights: project_rows sums over axis 1

Zs, Us = project_rows(V, K), 0.1 * rng.standard_normal(V.shape)
Z_ref, U_ref, _ = admm_update(V, Zs, Us, lambda v: project_filters(v, keep=K))
assert np.array_equal(Z_ref, project_rows(V + Us, K)) and np.allclose(U_ref, Us + V - Z_ref)


def refimpl_network(p):
    """The 2-layer network as refimpl layers, with the parameters of `p` (float64)."""
    net = Sequential([("fc1", Linear(64, HIDDEN, dtype=np.float64)), ("relu", ReLU()),
                      ("fc2", Linear(HIDDEN, 10, dtype=np.float64))])
    for ours, theirs in (("W1", "fc1.weight"), ("b1", "fc1.bias"), ("W2", "fc2.weight"), ("b2", "fc2.bias")):
        net.parameters()[theirs][...] = p[ours]
    return net


p0 = init_params(seed=2)
net = refimpl_network(p0)
loss_ref, d_logits = softmax_cross_entropy(net.forward(X_train[:32]), y_train[:32])
net.backward(d_logits)
loss_ours, grads_ours = loss_and_gradients(p0, X_train[:32], y_train[:32])
assert np.isclose(loss_ref, loss_ours) and np.allclose(net.gradients()["fc1.weight"], grads_ours["W1"])
print(f"one batch: loss {loss_ours:.6f} (ours) vs {loss_ref:.6f} (refimpl); gradients agree")

# %% [markdown]
# Then the whole pipeline, with refimpl's trainer doing the SGD steps and hooks doing the rest: the
# `ADMM` hook adds the penalty gradient and runs the Z/U update every epoch, `hard_prune` projects, and
# `MaskedRetraining` keeps the pruned weights at zero. Same data, same initial weights, same settings; the
# trainer shuffles with its own generator, so the numbers are close to section 4's, not identical.

# %%
net = refimpl_network(init_params())
train_data, test_data = (X_train, y_train), (X_test, y_test)


def fit(epochs, hooks=()):
    """Plain SGD (lr 0.1, batch 32) with refimpl's trainer."""
    opt = SGD(net.parameters(), lr=0.1)
    Trainer(net, opt, train_data, batch_size=32, epochs=epochs, hooks=hooks, progress=False).fit()


fit(DENSE_EPOCHS)
ref_dense = evaluate(net, *test_data)["accuracy"]
constraint = Constraint("fc1.weight", "filters", keep=K)
fit(ADMM_EPOCHS, [ADMM([constraint], rho=1e-2, rho_growth=1.3, rho_max=1.0)])
ref_admm = evaluate(net, *test_data)["accuracy"]
masks = hard_prune(net, [constraint])
ref_hard = evaluate(net, *test_data)["accuracy"]
fit(RETRAIN_EPOCHS, [MaskedRetraining(masks)])
ref_retrained = evaluate(net, *test_data)["accuracy"]
kept = int(np.any(net.parameters()["fc1.weight"] != 0, axis=1).sum())
print(f"refimpl: dense {ref_dense:.3f} | end of ADMM {ref_admm:.3f} | hard pruned {ref_hard:.3f} | "
      f"retrained {ref_retrained:.3f} | {kept} of {HIDDEN} hidden neurons left")

# %% [markdown]
# ## Where to go next
#
# * [1. Projections](01_projections.ipynb): the projection for every structure refimpl knows (filters,
#   channels, shapes, blocks, N:M, ...), on a real convolution layer.
# * [2. ADMM step by step](02_admm_step_by_step.ipynb): the same three steps on LeNet-5, with the
#   residuals, the period-2 cycle of $Z$ when $\rho$ is small, both dual rules, and compaction.
# * `notebooks/08_exercises`: write `project_filters`, a convolution's backward pass and the ADMM update
#   yourself; each answer is checked automatically.
