"""Optimizers and schedules: cross-checked against torch.optim, state handling, argument checks."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.train.optim import SGD, Adam
from refimpl.train.schedules import ConstantLR, CosineAnnealingLR, MultiStepLR, StepLR

SHAPES = {"conv.weight": (3, 2, 3, 3), "conv.bias": (3,), "fc.weight": (4, 5)}


def _random_problem(rng, n_steps=20):
    params = {name: rng.normal(size=shape) for name, shape in SHAPES.items()}
    grads = [{name: rng.normal(size=shape) for name, shape in SHAPES.items()} for _ in range(n_steps)]
    return params, grads


def _run_torch(torch, make_optimizer, params, grads, lrs=None):
    tensors = {name: torch.tensor(p, dtype=torch.float64, requires_grad=True) for name, p in params.items()}
    opt = make_optimizer(list(tensors.values()))
    for i, step_grads in enumerate(grads):
        if lrs is not None:
            for group in opt.param_groups:
                group["lr"] = lrs[i]
        for name, t in tensors.items():
            t.grad = torch.tensor(step_grads[name], dtype=torch.float64)
        opt.step()
    return {name: t.detach().numpy() for name, t in tensors.items()}, opt, tensors


def _run_ours(make_optimizer, params, grads, lrs=None):
    """refimpl's twin of :func:`_run_torch`: the same steps on a copy of ``params``."""
    ours = {name: p.copy() for name, p in params.items()}
    opt = make_optimizer(ours)
    for i, step_grads in enumerate(grads):
        if lrs is not None:
            opt.lr = lrs[i]  # what a schedule does between steps
        opt.step(step_grads)
    return ours, opt


def _assert_same_params(ours, expected):
    for name in SHAPES:
        np.testing.assert_allclose(ours[name], expected[name], rtol=1e-12, atol=1e-12, err_msg=name)


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, nesterov=True),
    dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=5e-3),
    dict(lr=0.02, momentum=0.5, nesterov=True, weight_decay=1e-3),
    dict(lr=0.1, weight_decay=0.1),
]


@pytest.mark.torch
@pytest.mark.parametrize("kwargs", SGD_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_sgd_matches_torch(torch, rng, kwargs):
    params, grads = _random_problem(rng)
    expected, topt, tensors = _run_torch(torch, lambda ps: torch.optim.SGD(ps, **kwargs), params, grads)
    ours, opt = _run_ours(lambda ps: SGD(ps, **kwargs), params, grads)
    _assert_same_params(ours, expected)
    for name in SHAPES:
        if kwargs.get("momentum", 0.0):
            buf = topt.state[tensors[name]]["momentum_buffer"].numpy()
            np.testing.assert_allclose(opt.state[name]["momentum_buffer"], buf, rtol=1e-12, atol=1e-12)
        else:
            assert name not in opt.state


ADAM_CASES = [
    dict(lr=1e-2),
    dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=1e-2, weight_decay=1e-2),
]


@pytest.mark.torch
@pytest.mark.parametrize("kwargs", ADAM_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_adam_matches_torch(torch, rng, kwargs):
    params, grads = _random_problem(rng)
    expected, topt, tensors = _run_torch(torch, lambda ps: torch.optim.Adam(ps, **kwargs), params, grads)
    ours, opt = _run_ours(lambda ps: Adam(ps, **kwargs), params, grads)
    _assert_same_params(ours, expected)
    for name in SHAPES:
        tstate = topt.state[tensors[name]]
        for key in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(opt.state[name][key], tstate[key].numpy(), rtol=1e-12, atol=1e-15)
        assert opt.step_counts[name] == int(tstate["step"]) == len(grads)


@pytest.mark.torch
def test_sgd_matches_torch_when_lr_changes_between_steps(torch, rng):
    # Schedules set opt.lr; the momentum buffer must not absorb the rate (PyTorch's convention).
    params, grads = _random_problem(rng, n_steps=10)
    lrs = [0.1 * 0.7**i for i in range(10)]
    kwargs = dict(lr=0.1, momentum=0.9, weight_decay=1e-3)
    expected, *_ = _run_torch(torch, lambda ps: torch.optim.SGD(ps, **kwargs), params, grads, lrs)
    ours, _ = _run_ours(lambda ps: SGD(ps, **kwargs), params, grads, lrs)
    _assert_same_params(ours, expected)


def test_sgd_first_steps_by_hand():
    w = np.array([1.0, -2.0])
    opt = SGD({"w": w}, lr=0.1, momentum=0.9, dampening=0.5)
    g = np.array([1.0, 2.0])
    opt.step({"w": g})  # buffer = g (no dampening on the first step)
    np.testing.assert_allclose(w, [0.9, -2.2])
    opt.step({"w": g})  # buffer = 0.9 g + 0.5 g = 1.4 g
    np.testing.assert_allclose(w, [0.9 - 0.14, -2.2 - 0.28])
    np.testing.assert_allclose(opt.state["w"]["momentum_buffer"], 1.4 * g)


def test_adam_first_step_is_lr_times_sign():
    # After bias correction the first update is lr * g / (|g| + eps) ~ lr * sign(g).
    w = np.array([1.0, -2.0, 0.5])
    opt = Adam({"w": w}, lr=0.01, eps=0.0)
    opt.step({"w": np.array([3.0, -0.2, 1e-3])})
    np.testing.assert_allclose(w, [0.99, -1.99, 0.49], rtol=0, atol=1e-15)


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_updates_in_place_and_leaves_gradients_alone(cls, rng):
    params, grads = _random_problem(rng, n_steps=2)
    live = dict(params)
    kwargs = dict(lr=0.1, weight_decay=0.1) | (dict(momentum=0.9) if cls is SGD else {})
    opt = cls(live, **kwargs)
    before = {k: g.copy() for k, g in grads[0].items()}
    ids = {k: id(v) for k, v in live.items()}
    opt.step(grads[0])
    opt.step(grads[1])
    for name in SHAPES:
        assert id(live[name]) == ids[name] and live[name] is params[name]
        np.testing.assert_array_equal(grads[0][name], before[name])
        for buf in opt.state[name].values():  # the masking invariant: state arrays have the param's shape
            assert buf.shape == params[name].shape


@pytest.mark.parametrize("kwargs", SGD_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
def test_sgd_float32_is_the_rule_bit_for_bit_and_leaves_gradients_alone(rng, kwargs):
    # SGD works in place through a scratch array; in float32 (where a changed order of operations would
    # show) it must give exactly the bits of the rule written out with plain NumPy temporaries
    params, grads = _random_problem(rng, n_steps=4)
    params = {k: v.astype(np.float32) for k, v in params.items()}
    grads = [{k: v.astype(np.float32) for k, v in g.items()} for g in grads]
    lr, mu = kwargs["lr"], kwargs.get("momentum", 0.0)
    wd, tau, nesterov = kwargs.get("weight_decay", 0.0), kwargs.get("dampening", 0.0), kwargs.get("nesterov")
    ours = {k: v.copy() for k, v in params.items()}
    opt = SGD(ours, **kwargs)
    expected, bufs = {k: v.copy() for k, v in params.items()}, {}
    for step_grads in grads:
        before = {k: g.copy() for k, g in step_grads.items()}
        opt.step(step_grads)
        for name, g in step_grads.items():
            np.testing.assert_array_equal(g, before[name])
            d = g + wd * expected[name] if wd else g
            if mu:
                bufs[name] = d.copy() if name not in bufs else bufs[name] * mu + (1.0 - tau) * d
                d = d + mu * bufs[name] if nesterov else bufs[name]
            expected[name] = expected[name] - lr * d
            np.testing.assert_array_equal(ours[name], expected[name], err_msg=name)
            assert ours[name].dtype == np.float32
    assert all(set(s) == {"momentum_buffer"} for s in opt.state.values())  # the scratch is not state


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_float32_params_stay_float32(cls, rng):
    w = rng.normal(size=(4, 3)).astype(np.float32)
    opt = cls({"w": w}, lr=0.1, **({"momentum": 0.9} if cls is SGD else {}))
    opt.step({"w": rng.normal(size=(4, 3)).astype(np.float32)})
    opt.step({"w": rng.normal(size=(4, 3))})  # a float64 gradient is cast, the parameter keeps its dtype
    assert w.dtype == np.float32
    assert all(buf.dtype == np.float32 for buf in opt.state["w"].values())


def test_missing_gradient_skips_the_parameter(rng):
    params, grads = _random_problem(rng, n_steps=1)
    frozen = params["conv.bias"].copy()
    opt = Adam(params, lr=0.1)
    opt.step({k: v for k, v in grads[0].items() if k != "conv.bias"})
    np.testing.assert_array_equal(params["conv.bias"], frozen)
    assert "conv.bias" not in opt.state and "conv.bias" not in opt.step_counts


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_state_dict_round_trip_continues_identically(cls, rng):
    params, grads = _random_problem(rng, n_steps=6)
    kwargs = dict(lr=0.05) | (dict(momentum=0.9, nesterov=True) if cls is SGD else dict(betas=(0.8, 0.9)))
    a = {k: v.copy() for k, v in params.items()}
    opt_a = cls(a, **kwargs)
    for g in grads[:3]:
        opt_a.step(g)
    saved = opt_a.state_dict()
    b = {k: v.copy() for k, v in a.items()}
    opt_b = cls(b, lr=1.0)  # different hyper-parameters: load_state_dict must restore them
    opt_b.load_state_dict(saved)
    assert opt_b.hyperparameters() == opt_a.hyperparameters()
    for g in grads[3:]:
        opt_a.step(g)
        opt_b.step(g)
    for name in SHAPES:
        np.testing.assert_array_equal(a[name], b[name])
    # the saved state is a copy, not a view of the live buffers
    first = next(iter(saved["state"]))
    key = next(iter(saved["state"][first]))
    assert not np.shares_memory(saved["state"][first][key], opt_a.state[first][key])


def test_load_state_dict_rejects_other_optimizer_and_bad_shapes(rng):
    params, _ = _random_problem(rng, n_steps=0)
    sgd = SGD(params, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="state is for optimizer 'Adam'"):
        sgd.load_state_dict(Adam(params).state_dict())
    state = sgd.state_dict()
    state["state"] = {"fc.weight": {"momentum_buffer": np.zeros((2, 2))}}
    with pytest.raises(ValueError, match=r"state\['state'\]\['fc.weight'\]"):
        sgd.load_state_dict(state)
    state["state"] = {"nope": {"momentum_buffer": np.zeros((2, 2))}}
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        sgd.load_state_dict(state)


# --- argument checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lr=-0.1), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(lr=0.1, momentum=-0.1), "momentum"),
        (dict(lr=0.1, momentum=1.0), "momentum"),
        (dict(lr=0.1, nesterov=True), "nesterov"),
        (dict(lr=0.1, momentum=0.9, nesterov=True, dampening=0.1), "nesterov"),
        (dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
        (dict(lr=0.1, dampening=1.5), "dampening"),
    ],
)
def test_sgd_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SGD({"w": np.zeros(3)}, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(lr=-1e-3), "lr"),
        (dict(betas=(1.0, 0.999)), r"betas\[0\]"),
        (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
        (dict(betas=(0.9,)), "betas"),
        (dict(eps=-1.0), "eps"),
        (dict(weight_decay=-1.0), "weight_decay"),
    ],
)
def test_adam_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Adam({"w": np.zeros(3)}, **kwargs)


def test_bad_params_and_grads():
    with pytest.raises(TypeError, match="params"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="params is empty"):
        SGD({}, lr=0.1)
    with pytest.raises(TypeError, match=r"params\['w'\]"):
        SGD({"w": np.zeros(3, dtype=int)}, lr=0.1)
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"params\['w'\] is read-only"):
        SGD({"w": frozen}, lr=0.1)
    opt = SGD({"w": np.zeros(3)}, lr=0.1)
    with pytest.raises(ValueError, match=r"grads has names that are not parameters.*'v'"):
        opt.step({"w": np.ones(3), "v": np.ones(3)})
    with pytest.raises(ValueError, match=r"grads\['w'\] has shape \(2,\)"):
        opt.step({"w": np.ones(2)})
    with pytest.raises(ValueError, match=r"grads\['w'\] contains NaN"):
        opt.step({"w": np.array([0.0, np.nan, 0.0])})
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1.0
    with pytest.raises(TypeError, match="lr"):
        opt.lr = "0.1"


# --- schedules -----------------------------------------------------------------------------------------
def _torch_lrs(torch, make_scheduler, base_lr, epochs=30):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=base_lr)
    sched = make_scheduler(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(lrs)


@pytest.mark.torch
@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (lambda: StepLR(0.1, step_size=7, gamma=0.5),
         lambda s, o: s.StepLR(o, step_size=7, gamma=0.5)),
        (lambda: MultiStepLR(0.1, milestones=[20, 5, 12], gamma=0.2),
         lambda s, o: s.MultiStepLR(o, milestones=[5, 12, 20], gamma=0.2)),
        (lambda: CosineAnnealingLR(0.1, T_max=30, eta_min=1e-3),
         lambda s, o: s.CosineAnnealingLR(o, T_max=30, eta_min=1e-3)),
        (lambda: CosineAnnealingLR(0.05, T_max=10),  # past T_max: rises again, as in torch
         lambda s, o: s.CosineAnnealingLR(o, T_max=10)),
        (lambda: ConstantLR(0.1), lambda s, o: s.LambdaLR(o, lambda e: 1.0)),
    ],
    ids=["step", "multistep", "cosine", "cosine-past-Tmax", "constant"],
)
def test_schedules_match_torch(torch, ours, theirs):
    schedule = ours()
    expected = _torch_lrs(torch, lambda o: theirs(torch.optim.lr_scheduler, o), schedule.base_lr)
    got = np.array([schedule.lr_at(e) for e in range(30)])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-15)


@pytest.mark.torch
def test_warmup_matches_torch_linear_lr_then_main_schedule(torch):
    schedule = StepLR(0.1, step_size=10, gamma=0.1, warmup_epochs=5, warmup_start_factor=0.25)
    warm = _torch_lrs(torch, lambda o: torch.optim.lr_scheduler.LinearLR(o, 0.25, total_iters=5), 0.1, 5)
    np.testing.assert_allclose([schedule.lr_at(e) for e in range(5)], warm, rtol=1e-12)
    plain = StepLR(0.1, step_size=10, gamma=0.1)
    assert [schedule.lr_at(e) for e in range(5, 30)] == [plain.lr_at(e) for e in range(5, 30)]


def test_schedule_values_by_hand_and_purity():
    s = StepLR(1.0, step_size=3, gamma=0.5)
    assert [s.lr_at(e) for e in range(7)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    c = CosineAnnealingLR(2.0, T_max=4, eta_min=0.0)
    np.testing.assert_allclose([c.lr_at(e) for e in range(5)], [2.0, 1 + np.sqrt(0.5), 1.0,
                                                                1 - np.sqrt(0.5), 0.0], atol=1e-15)
    # pure: the order of the queries does not matter
    assert c.lr_at(3) == CosineAnnealingLR(2.0, T_max=4).lr_at(3)
    assert MultiStepLR(1.0, [2, 2], gamma=0.5).lr_at(2) == 0.25  # repeated milestone counts twice


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: StepLR(-0.1, step_size=2), "base_lr"),
        (lambda: StepLR(0.1, step_size=0), "step_size"),
        (lambda: StepLR(0.1, step_size=2, gamma=-1.0), "gamma"),
        (lambda: MultiStepLR(0.1, milestones=[3, -1]), r"milestones\[1\]"),
        (lambda: CosineAnnealingLR(0.1, T_max=0), "T_max"),
        (lambda: CosineAnnealingLR(0.1, T_max=5, eta_min=-1.0), "eta_min"),
        (lambda: ConstantLR(0.1, warmup_epochs=-1), "warmup_epochs"),
        (lambda: ConstantLR(0.1, warmup_epochs=2, warmup_start_factor=0.0), "warmup_start_factor"),
        (lambda: ConstantLR(0.1).lr_at(-1), "epoch"),
    ],
)
def test_schedule_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()
