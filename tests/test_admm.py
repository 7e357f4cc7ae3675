"""ADMM pruning: the update formulas, the penalty gradient, convergence on a problem with a known answer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from refimpl.nn.activation import ReLU
from refimpl.nn.linear import Linear
from refimpl.nn.loss import softmax_cross_entropy
from refimpl.nn.module import Sequential
from refimpl.projections.elementwise import project_unstructured
from refimpl.projections.groups import mask_filters, project_filters
from refimpl.prune.admm import (
    ADMM,
    admm_penalty,
    admm_penalty_gradient,
    admm_residuals,
    admm_update,
    augmented_loss,
    next_rho,
    rescale_dual,
    residuals_small,
)
from refimpl.prune.constraints import Constraint
from refimpl.testing.gradcheck import check_gradient, numerical_gradient
from refimpl.train.optim import SGD
from refimpl.train.trainer import Trainer

# --- the formulas on hand-made arrays -------------------------------------------------------------------


def test_penalty_and_gradient_hand_made():
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    Z = np.array([[1.0, 0.0], [0.0, 4.0]])
    U = np.array([[0.5, 0.0], [-1.0, 0.0]])
    # W - Z + U = [[0.5, 2], [2, 0]], squared norm 8.25
    assert admm_penalty(W, Z, U, 0.1) == pytest.approx(0.5 * 0.1 * 8.25, rel=1e-15)
    np.testing.assert_array_equal(admm_penalty_gradient(W, Z, U, 0.1), 0.1 * np.array([[0.5, 2], [2, 0]]))
    # squared norm, not the norm: doubling the distance quadruples the penalty
    assert admm_penalty(2 * W, 2 * Z, 2 * U, 0.1) == pytest.approx(4 * admm_penalty(W, Z, U, 0.1))


def test_penalty_gradient_is_the_finite_difference_gradient(rng):
    W, Z, U = (rng.standard_normal((3, 4)) for _ in range(3))
    analytic = admm_penalty_gradient(W, Z, U, 0.7)
    check_gradient(lambda: admm_penalty(W, Z, U, 0.7), W, analytic, name="W")


def test_admm_update_hand_made():
    W = np.array([3.0, -1.0, 0.5, 2.0])
    Z = np.array([3.0, 0.0, 0.0, 2.0])
    U = np.array([0.0, -2.0, 0.25, -1.5])
    project = lambda v: project_unstructured(v, keep=2)  # noqa: E731
    Z_new, U_new, res = admm_update(W, Z, U, project, rho=0.5)
    # W + U = [3, -3, 0.75, 0.5]: the two largest |.| are entries 0 and 1 (tie 3 vs -3 is no tie in |.|)
    np.testing.assert_array_equal(Z_new, [3.0, -3.0, 0.0, 0.0])
    np.testing.assert_array_equal(U_new, U + W - Z_new)
    np.testing.assert_array_equal(U_new, [0.0, 0.0, 0.75, 0.5])
    assert res["primal"] == pytest.approx(np.linalg.norm(W - Z_new) / np.linalg.norm(W), rel=1e-15)
    assert res["dual"] == pytest.approx(0.5 * np.linalg.norm(Z_new - Z), rel=1e-15)
    assert res["z_sparsity"] == 0.5
    # inputs untouched
    np.testing.assert_array_equal(Z, [3.0, 0.0, 0.0, 2.0])
    np.testing.assert_array_equal(U, [0.0, -2.0, 0.25, -1.5])


def test_residuals_zero_at_a_fixed_point():
    W = np.array([[0.0, 2.0], [1.0, 0.0]])
    res = admm_residuals(W, W.copy(), W.copy(), rho=3.0)
    assert res == {"primal": 0.0, "dual": 0.0, "z_sparsity": 0.5}


def test_rho_schedule():
    rhos = [1e-3]
    for _ in range(40):
        rhos.append(next_rho(rhos[-1], 1.3, 1.0))
    assert rhos[1] == pytest.approx(1.3e-3)
    assert max(rhos) == 1.0 and rhos[-1] == 1.0
    assert all(b >= a for a, b in zip(rhos, rhos[1:], strict=False))
    assert next_rho(5e-3, 1.0, 1.0) == 5e-3  # constant rho


def test_rescale_dual_keeps_the_multiplier(rng):
    U = rng.standard_normal((3, 4))
    new = rescale_dual(U, 0.2, 0.26)
    np.testing.assert_allclose(0.26 * new, 0.2 * U, rtol=1e-15)  # Y = rho U unchanged
    assert not np.shares_memory(new, U)
    np.testing.assert_array_equal(rescale_dual(U, 0.5, 0.5), U)  # rho at its cap: nothing to do
    assert rescale_dual(U.astype(np.float32), 1.0, 2.0).dtype == np.float32
    with pytest.raises(ValueError, match="rho_new must be > 0"):
        rescale_dual(U, 1.0, 0.0)


def test_residuals_small_thresholds():
    assert residuals_small(0.05, 0.05, rho=1.0, w_norm=1.0)  # both exactly at the defaults
    assert not residuals_small(0.051, 0.0, rho=1.0, w_norm=1.0)
    assert not residuals_small(0.0, 0.051, rho=1.0, w_norm=1.0)
    # the dual threshold scales with rho ||W||: Z moving by 0.3 is small next to ||W|| = 10
    assert residuals_small(0.0, 0.3, rho=1.0, w_norm=10.0)
    assert not residuals_small(0.0, 0.3, rho=1.0, w_norm=10.0, dual_tol=0.01)


def test_augmented_loss_sums_one_term_per_constraint(rng):
    W = rng.standard_normal((2, 3))
    Z1, U1, Z2, U2 = (rng.standard_normal((2, 3)) for _ in range(4))
    expected = 1.5 + admm_penalty(W, Z1, U1, 0.2) + admm_penalty(W, Z2, U2, 0.2)
    assert augmented_loss(1.5, [W, W], [Z1, Z2], [U1, U2], 0.2) == pytest.approx(expected, rel=1e-15)
    with pytest.raises(ValueError, match="one length"):
        augmented_loss(0.0, [W], [Z1, Z2], [U1], 0.2)


# --- the hook's validation ------------------------------------------------------------------------------


def _c(param="fc.weight", structure="unstructured", **kw):
    if "keep" not in kw:
        kw.setdefault("sparsity", 0.5)
    return Constraint(param, structure, **kw)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rho": -1.0}, ValueError, "rho must be >= 0"),
        ({"rho": float("nan")}, TypeError, "rho must be a finite"),
        ({"rho_growth": 0.9}, ValueError, "rho_growth must be >= 1"),
        ({"rho": 2.0, "rho_max": 1.0}, ValueError, "rho_max must be >= rho"),
        ({"update_every": 0}, ValueError, "update_every must be >= 1"),
        ({"update_unit": "batch"}, ValueError, "update_unit must be"),
        ({"rescale_dual": 1}, TypeError, "rescale_dual must be a bool"),
    ],
)
def test_admm_rejects_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        ADMM([_c()], **kwargs)


def test_admm_rejects_unknown_parameter():
    hook = ADMM([_c("nope.weight")])
    with pytest.raises(KeyError, match="nope.weight"):
        hook.initialise({"fc.weight": np.ones((2, 2))})


# --- the penalty gradient the hook adds, against finite differences of the augmented loss -----------------


def _tiny_model(rng):
    model = Sequential([("fc1", Linear(5, 4, rng=rng, dtype=np.float64)),
                        ("fc2", Linear(4, 3, rng=rng, dtype=np.float64))])
    return model


def test_hook_gradient_matches_augmented_loss_finite_differences(rng):
    model = _tiny_model(rng)
    x = rng.standard_normal((6, 5))
    y = rng.integers(0, 3, size=6)
    params = model.parameters()
    # two constraints on fc1 (filters AND shapes) and one on fc2
    hook = ADMM([_c("fc1.weight", "filters", keep=2), _c("fc1.weight", "shapes", keep=3),
                 _c("fc2.weight", "unstructured", keep=5)], rho=0.37)
    hook.initialise(params)
    # move U away from zero so every term of W - Z + U matters
    hook.U = [rng.standard_normal(u.shape) for u in hook.U]

    def loss_only():
        loss, _ = softmax_cross_entropy(model.forward(x), y)
        return loss

    def aug():
        weights = [params[c.param] for c in hook.constraints]
        return augmented_loss(loss_only(), weights, hook.Z, hook.U, hook.rho)

    loss, dlogits = softmax_cross_entropy(model.forward(x), y)
    model.backward(dlogits)
    trainer = SimpleNamespace(params=params, grads=model.gradients())
    hook.after_backward(trainer)
    for name in ("fc1.weight", "fc2.weight", "fc1.bias"):
        check_gradient(aug, params[name], trainer.grads[name], name=name)
    # and the penalty really contributed (the plain-loss gradient differs)
    assert not np.allclose(numerical_gradient(loss_only, params["fc1.weight"]), trainer.grads["fc1.weight"])


# --- convergence on least squares with an orthonormal design ---------------------------------------------


def _least_squares(rng, n=12, p=5, m=30):
    r"""f(W) = ½‖A W − B‖² with AᵀA = I: ∇f = W − AᵀB, so W* = AᵀB and the constrained optimum is Π(W*)."""
    A, _ = np.linalg.qr(rng.standard_normal((m, n)))
    B = rng.standard_normal((m, p))
    return A, B, A.T @ B


@pytest.mark.parametrize(
    ("structure", "project"),
    [
        ("unstructured", lambda v: project_unstructured(v, keep=15)),
        ("filters", lambda v: project_filters(v, keep=4, engine="numpy")),
    ],
)
def test_admm_exact_w_step_converges_to_projection_of_optimum(rng, structure, project):
    A, B, W_star = _least_squares(rng)
    W = W_star.copy()
    Z, U, rho = project(W), np.zeros_like(W), 1e-3
    for _ in range(60):
        # exact W-step: argmin ½‖W − W*‖² + ρ/2‖W − Z + U‖²  (AᵀA = I makes f's Hessian the identity)
        W = (W_star + rho * (Z - U)) / (1.0 + rho)
        Z, U, res = admm_update(W, Z, U, project, rho=rho)
        rho = next_rho(rho, 1.3, 1.0)
    target = project(W_star)
    np.testing.assert_array_equal(Z != 0, target != 0)
    np.testing.assert_allclose(Z, target, atol=1e-12)
    np.testing.assert_allclose(W, target, atol=1e-6)  # W is pulled onto the set too
    assert res["primal"] < 1e-6 and res["dual"] < 1e-8


@pytest.mark.parametrize("rescale", [False, True])
def test_admm_exact_w_step_converges_with_either_dual_rule(rng, rescale):
    """Boyd's rescaling (U <- U rho_old / rho_new) reaches the same answer on the known problem."""
    A, B, W_star = _least_squares(rng)
    project = lambda v: project_filters(v, keep=4, engine="numpy")  # noqa: E731
    W = rng.standard_normal(W_star.shape)
    Z, U, rho = project(W), np.zeros_like(W), 1e-3
    for _ in range(80):
        W = (W_star + rho * (Z - U)) / (1.0 + rho)
        Z, U, res = admm_update(W, Z, U, project, rho=rho)
        rho_new = next_rho(rho, 1.3, 1.0)
        U = rescale_dual(U, rho, rho_new) if rescale else U
        rho = rho_new
    np.testing.assert_allclose(Z, project(W_star), atol=1e-10)
    assert res["primal"] < 1e-6


def _hook_multipliers(rescale, rng):
    """Run 6 updates of a hook on a weight that moves between updates; return rho U after each."""
    W = rng.standard_normal((4, 3))
    trainer = SimpleNamespace(params={"fc.weight": W}, step=0, epoch=0)
    hook = ADMM([_c(keep=6)], rho=0.1, rho_growth=2.0, rho_max=1.0, rescale_dual=rescale)
    hook.on_train_begin(trainer)
    implied, expected, rhos = [], [], []
    for _ in range(6):
        W += 0.3 * rng.standard_normal(W.shape)
        U_prev, rho_used = hook.U[0].copy(), hook.rho
        hook.on_epoch_end(trainer, 0)
        # the U-step with the rho the W-step used: Y_new = rho_used (U_prev + W - Z_new), Boyd's y-update
        # y + rho (W - Z) written with y = rho_used U_prev
        expected.append(rho_used * (U_prev + W - hook.Z[0]))
        implied.append(hook.rho * hook.U[0])
        rhos.append(hook.rho)
    return implied, expected, rhos


def test_hook_rescale_dual_keeps_rho_u_continuous(rng):
    implied, expected, rhos = _hook_multipliers(True, rng)
    assert rhos == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]  # grows, then capped: both cases occur
    for got, want in zip(implied, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


def test_hook_without_rescale_lets_rho_u_jump_by_the_growth(rng):
    implied, expected, rhos = _hook_multipliers(False, rng)
    for got, want, rho_before, rho_after in zip(implied, expected, [0.1] + rhos, rhos, strict=False):
        np.testing.assert_allclose(got, want * (rho_after / rho_before), rtol=1e-12, atol=1e-15)
    assert not np.allclose(implied[0], expected[0])  # the x2 jump of the first update


def test_admm_gradient_w_step_converges(rng):
    """Same problem, W-step by plain gradient descent on the augmented loss (what the trainer does)."""
    A, B, W_star = _least_squares(rng)
    project = lambda v: project_filters(v, keep=4, engine="numpy")  # noqa: E731
    W = rng.standard_normal(W_star.shape)  # from a random start, not the optimum
    Z, U, rho = project(W), np.zeros_like(W), 1e-3
    for _ in range(80):
        for _ in range(30):
            grad = A.T @ (A @ W - B) + admm_penalty_gradient(W, Z, U, rho)
            W -= 0.5 * grad
        Z, U, _ = admm_update(W, Z, U, project, rho=rho)
        rho = next_rho(rho, 1.3, 1.0)
    target = project(W_star)
    np.testing.assert_array_equal(mask_filters(Z, keep=4), mask_filters(W_star, keep=4))
    np.testing.assert_allclose(Z, target, atol=1e-8)


def test_hook_update_schedule_steps_and_epochs(rng):
    W = rng.standard_normal((4, 3))
    params = {"fc.weight": W}
    trainer = SimpleNamespace(params=params, grads={"fc.weight": np.zeros_like(W)}, step=0, epoch=0,
                              logged=[])
    trainer.log = trainer.logged.append
    hook = ADMM([_c(keep=6)], rho=1e-3, rho_growth=2.0, rho_max=3e-3, update_every=2,
                update_unit="step")
    hook.on_train_begin(trainer)
    np.testing.assert_array_equal(hook.Z[0], project_unstructured(W, keep=6))
    np.testing.assert_array_equal(hook.U[0], 0)
    for step in range(1, 7):
        trainer.step = step
        hook.after_step(trainer)
        assert hook.on_epoch_end(trainer, 0) is None  # step unit: epochs do nothing
    assert hook.updates == 3 and len(trainer.logged) == 3
    assert [r["admm.rho"] for r in trainer.logged] == [1e-3, 2e-3, 3e-3]  # doubled, then capped
    assert hook.rho == 3e-3
    assert [r["step"] for r in hook.history] == [2, 4, 6]
    assert "admm.fc.weight:unstructured.primal" in trainer.logged[0]

    epoch_hook = ADMM([_c()], update_every=1)
    epoch_hook.on_train_begin(trainer)
    epoch_hook.after_step(trainer)
    assert epoch_hook.updates == 0
    record = epoch_hook.on_epoch_end(trainer, 0)
    assert record is not None and epoch_hook.updates == 1 and record["admm.update"] == 1


def test_hook_state_dict_round_trip(rng):
    W = rng.standard_normal((4, 3))
    trainer = SimpleNamespace(params={"fc.weight": W}, step=1, epoch=0)
    hook = ADMM([_c(), _c(structure="filters")], rho=0.01)
    hook.on_train_begin(trainer)
    W += 0.1
    hook.on_epoch_end(trainer, 0)
    state = hook.state_dict()
    other = ADMM([_c(), _c(structure="filters")], rho=0.01)
    other.load_state_dict(state)
    other.on_train_begin(trainer)  # restored: must not re-initialise Z, U
    assert other.rho == hook.rho and other.updates == 1
    assert "rescale_dual" not in repr(other) and "rescale_dual=True" in repr(ADMM([_c()], rescale_dual=True))
    for a, b in zip(hook.Z + hook.U, other.Z + other.U, strict=True):
        np.testing.assert_array_equal(a, b)
    assert other.history == hook.history
    with pytest.raises(ValueError, match="constraints"):
        ADMM([_c()]).load_state_dict(state)


def test_frozen_masks_are_respected_by_z(rng):
    W = rng.standard_normal((6, 4))
    frozen = np.ones_like(W, dtype=bool)
    frozen[:2] = False  # the two first filters were pruned before
    hook = ADMM([_c(structure="filters", keep=3)], frozen_masks={"fc.weight": frozen})
    hook.initialise({"fc.weight": W})
    Z = hook.Z[0]
    assert not Z[:2].any()
    kept_rows = np.flatnonzero(np.any(Z != 0, axis=1))
    assert len(kept_rows) == 3
    # exact projection onto "3 filters among the survivors": the 3 largest surviving rows
    norms = np.linalg.norm(W[2:], axis=1)
    np.testing.assert_array_equal(kept_rows, np.sort(2 + np.argsort(-norms)[:3]))


# --- through the real Trainer ------------------------------------------------------------------------------


def _ls_trainer(rng, W_init, A, B, hooks, epochs):
    """Full-batch gradient descent on f(W) = ½‖A W − B‖² with a bias-free Linear layer (weight = Wᵀ)."""
    n, p = W_init.shape
    model = Linear(n, p, bias=False, dtype=np.float64)
    model.params["weight"][...] = W_init.T

    def sum_of_squares(out, idx):  # labels index the rows of B; gradient of the *sum*: exactly ∇f
        diff = out - B[idx]
        return 0.5 * float(np.vdot(diff, diff)), diff

    return Trainer(model, SGD(model.parameters(), lr=0.5), (A, np.arange(len(A))), batch_size=len(A),
                   epochs=epochs, hooks=hooks, loss_fn=sum_of_squares, progress=False), model


@pytest.mark.parametrize(("structure", "keep"), [("unstructured", 15), ("filters", 2)])
def test_hook_in_trainer_converges_to_projection_of_optimum(rng, structure, keep):
    A, B, W_star = _least_squares(rng)
    constraint = Constraint("weight", structure, keep=keep, engine="numpy") if structure == "filters" else \
        Constraint("weight", structure, keep=keep)
    hook = ADMM([constraint], rho=1e-3, rho_growth=1.3, rho_max=1.0, update_every=20, update_unit="step")
    trainer, model = _ls_trainer(rng, rng.standard_normal(W_star.shape), A, B, [hook], epochs=1200)
    trainer.fit()
    target = constraint.project(W_star.T)  # the Linear weight is Wᵀ: filters = its rows
    np.testing.assert_array_equal(hook.Z[0] != 0, target != 0)
    np.testing.assert_allclose(hook.Z[0], target, atol=1e-8)
    np.testing.assert_allclose(model.params["weight"], target, atol=1e-6)
    last = hook.history[-1]
    assert last["admm.primal_max"] < 1e-6 and last["admm.dual_max"] < 1e-8
    assert "batch_loss" in last and hook.updates == 60


def _classifier(seed):
    rng = np.random.default_rng(seed)
    return Sequential([("fc1", Linear(6, 8, rng=rng, dtype=np.float64)), ("relu", ReLU()),
                       ("fc2", Linear(8, 3, rng=rng, dtype=np.float64))])


def _blobs(rng, n=48):
    x = rng.standard_normal((n, 6))
    y = (x[:, 0] + x[:, 1] > 0).astype(int) + (x[:, 2] > 1).astype(int)
    return x, y


def _fit(data, hooks, *, epochs=3, out_dir=None, resume=False, stop_after=None):
    model = _classifier(7)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    trainer = Trainer(model, opt, data, val_data=data, batch_size=16, epochs=stop_after or epochs,
                      hooks=hooks, seed=3, out_dir=out_dir, progress=False)
    trainer.fit(resume=resume)
    return model, trainer


def _constraints():
    return [Constraint("fc1.weight", "filters", sparsity=0.5), Constraint("fc1.weight", "shapes", keep=4),
            Constraint("fc2.weight", "unstructured", sparsity=0.75)]


def test_rho_zero_is_bit_identical_to_no_hook(rng):
    data = _blobs(rng)
    plain, _ = _fit(data, [])
    spectator, trainer = _fit(data, [ADMM(_constraints(), rho=0.0)])
    penalised, _ = _fit(data, [ADMM(_constraints(), rho=0.1)])
    for name, value in plain.parameters().items():
        np.testing.assert_array_equal(spectator.parameters()[name], value)
    assert not np.array_equal(penalised.parameters()["fc1.weight"], plain.parameters()["fc1.weight"])
    # the epoch records carry the ADMM diagnostics next to the trainer's loss and accuracy
    record = trainer.history[-1]
    assert {"train_loss", "train_acc", "val_acc", "admm.rho", "admm.fc1.weight:filters.primal",
            "admm.fc1.weight:shapes.dual", "admm.fc2.weight:unstructured.z_sparsity"} <= set(record)
    assert record["admm.fc2.weight:unstructured.z_sparsity"] == pytest.approx(0.75, abs=1 / 24)


def test_resume_mid_admm_is_bitwise_identical(rng, tmp_path):
    data = _blobs(rng)
    full_hook = ADMM(_constraints(), rho=0.05)
    full, _ = _fit(data, [full_hook], epochs=3)
    first = ADMM(_constraints(), rho=0.05)
    _fit(data, [first], epochs=3, out_dir=tmp_path, stop_after=1)  # "crash" after epoch 1 of 3
    assert first.updates == 1
    resumed_hook = ADMM(_constraints(), rho=0.05)
    resumed, trainer = _fit(data, [resumed_hook], epochs=3, out_dir=tmp_path, resume=True)
    assert trainer.epoch == 3
    for name, value in full.parameters().items():
        np.testing.assert_array_equal(resumed.parameters()[name], value)
    for a, b in zip(full_hook.Z + full_hook.U, resumed_hook.Z + resumed_hook.U, strict=True):
        np.testing.assert_array_equal(a, b)
    assert resumed_hook.rho == full_hook.rho and resumed_hook.updates == 3
    assert resumed_hook.history == full_hook.history


def test_docstring_examples():
    import doctest

    import refimpl.prune.admm as admm_module

    assert doctest.testmod(admm_module, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
