"""Gradual pruning (Zhu & Gupta): the cubic schedule, nested masks for every structure, the engine phase."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine import Interrupted, arrays, tiny_config

from refimpl.config import load_config
from refimpl.engine import plan_phases, run_experiment
from refimpl.models import lenet5
from refimpl.projections import PROJECTIONS
from refimpl.prune import (
    Constraint,
    GradualPruning,
    constraint_at,
    expand_constraints,
    final_sparsity,
    gradual_sparsity,
    masks_sparsity,
)
from refimpl.train import SGD, Adam, Trainer, load_checkpoint

# --- the schedule --------------------------------------------------------------------------------------


def written_out(t, s_i, s_f, t0, n, dt):
    """Zhu & Gupta's formula as printed: s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3."""
    return s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3


@pytest.mark.parametrize(("s_i", "s_f", "t0", "n", "dt"), [
    (0.0, 0.9, 0, 10, 5), (0.2, 0.75, 7, 4, 3), (0.5, 0.5, 3, 2, 1), (0.0, 1.0, 100, 25, 40)])
def test_the_schedule_is_zhu_and_gupta_s_formula_at_every_update(s_i, s_f, t0, n, dt):
    for j in range(n + 1):
        t = t0 + j * dt
        got = gradual_sparsity(t, initial=s_i, final=s_f, begin=t0, duration=n * dt)
        assert got == pytest.approx(written_out(t, s_i, s_f, t0, n, dt), rel=1e-15, abs=1e-15)
    # endpoints, and constant outside the window
    kw = dict(initial=s_i, final=s_f, begin=t0, duration=n * dt)
    assert gradual_sparsity(t0, **kw) == s_i and gradual_sparsity(t0 + n * dt, **kw) == s_f
    assert gradual_sparsity(0, **kw) == s_i and gradual_sparsity(t0 + n * dt + 1000, **kw) == s_f


def test_the_schedule_is_a_cubic():
    """Third differences are the constant 6 (s_f - s_i) h^3 / D^3, fourth differences vanish."""
    s_i, s_f, t0, duration, h = 0.1, 0.85, 20, 60, 5
    t = np.arange(t0, t0 + duration + 1, h)
    s = np.array([gradual_sparsity(int(x), initial=s_i, final=s_f, begin=t0, duration=duration) for x in t])
    third = np.diff(s, 3)
    np.testing.assert_allclose(third, 6 * (s_f - s_i) * h**3 / duration**3, rtol=1e-9)
    np.testing.assert_allclose(np.diff(s, 4), 0, atol=1e-12)
    # steep first, flat last: the first update prunes the most
    steps = np.diff(s)
    assert np.all(steps[:-1] > steps[1:])


@settings(max_examples=200, deadline=None)
@given(s_i=st.floats(0, 1), s_f=st.floats(0, 1), t0=st.integers(0, 50), duration=st.integers(0, 200),
       ts=st.lists(st.integers(0, 300), min_size=2, max_size=8))
def test_the_schedule_is_monotone_and_between_its_endpoints(s_i, s_f, t0, duration, ts):
    s_i, s_f = min(s_i, s_f), max(s_i, s_f)
    values = [gradual_sparsity(t, initial=s_i, final=s_f, begin=t0, duration=duration) for t in sorted(ts)]
    assert all(a <= b for a, b in zip(values, values[1:], strict=False))
    assert all(s_i <= v <= s_f for v in values)


def test_a_zero_length_ramp_is_one_shot_pruning_at_begin():
    kw = dict(initial=0.0, final=0.8, begin=5, duration=0)
    assert [gradual_sparsity(t, **kw) for t in (4, 5, 6)] == [0.0, 0.8, 0.8]


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    ({"step": -1}, ValueError, "step"), ({"step": 1.5}, TypeError, "step"),
    ({"initial": 1.5}, ValueError, "initial"), ({"final": -0.1}, ValueError, "final"),
    ({"begin": -2}, ValueError, "begin"), ({"duration": -1}, ValueError, "duration"),
])
def test_bad_schedule_arguments_name_themselves(kwargs, exc, match):
    args = {"step": 3, "initial": 0.0, "final": 0.5, "begin": 0, "duration": 10, **kwargs}
    step = args.pop("step")
    with pytest.raises(exc, match=match):
        gradual_sparsity(step, **args)


# --- the hook: every structure -------------------------------------------------------------------------

# conv2.weight of lenet5: (50, 20, 5, 5), GEMM view 50 x 500. Every structure of PROJECTIONS once.
STRUCTURES = {
    "unstructured": {"sparsity": 0.8},
    "filters": {"sparsity": 0.6},
    "channels": {"sparsity": 0.5},
    "shapes": {"sparsity": 0.6},
    "kernels": {"sparsity": 0.7},
    "blocks": {"block_shape": (5, 10), "sparsity": 0.7},
    "balanced": {"vector_size": 10, "sparsity": 0.8},
    "nm": {"n": 1, "m": 4},
    "vector_block": {"vector_size": 10, "block_shape": (5, 10), "total_sparsity": 0.8, "vector_share": 0.5},
    "unified": {"block_shape": (5, 10), "sparsity": 0.5},
}
#: Structures whose amount is a count of pruned groups (the final mask has exactly the count of a fresh one).
EXACT = {"unstructured", "filters", "channels", "shapes", "kernels", "blocks", "balanced", "nm",
         "vector_block"}


def test_every_structure_is_covered():
    assert set(STRUCTURES) == set(PROJECTIONS)


class Recorder:
    """After every step: the masks, and the invariants pruned weights and optimizer state must hold."""

    def __init__(self, hook):
        self.hook, self.steps, self.masks = hook, [], []

    def after_step(self, trainer):
        self.steps.append(trainer.step)
        self.masks.append({k: v.copy() for k, v in self.hook.masks.items()})
        state = trainer.optimizer.state
        for name, mask in self.hook.masks.items():
            assert not np.any(trainer.params[name][~mask]), "a pruned weight is nonzero"
            for key, buf in state.get(name, {}).items():
                if isinstance(buf, np.ndarray) and buf.shape == mask.shape:
                    assert not np.any(buf[~mask]), f"optimizer state {key} is nonzero at a pruned weight"


def train(constraints, *, optimizer="sgd", epochs=4, begin=0, end=None, update_every=2, initial=0.0, seed=0):
    """Train lenet5 (4 classes, 8x8) on 96 random images, batch 32: 3 steps per epoch."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((96, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 4, 96)
    model = lenet5(num_classes=4, input_size=8, rng=np.random.default_rng(seed))
    opt = (SGD(model.parameters(), lr=0.05, momentum=0.9) if optimizer == "sgd"
           else Adam(model.parameters(), lr=1e-3))
    end = 3 * epochs if end is None else end
    hook = GradualPruning(constraints, initial_sparsity=initial, begin=begin, end=end,
                          update_every=update_every)
    recorder = Recorder(hook)
    Trainer(model, opt, (x, y), batch_size=32, epochs=epochs, hooks=[hook, recorder], seed=seed,
            progress=False).fit()
    return model, hook, recorder


@pytest.mark.parametrize("structure", sorted(STRUCTURES))
def test_masks_are_nested_change_only_on_schedule_and_end_at_the_target(structure):
    c = Constraint("conv2.weight", structure, **STRUCTURES[structure])
    model, hook, rec = train([c], epochs=4, begin=1, end=10, update_every=3)   # updates at steps 1, 4, 7, 10
    assert hook.n_updates == 3 and [hook.is_update_step(t) for t in range(12)] == [
        t in (1, 4, 7, 10) for t in range(12)]
    masks = [m["conv2.weight"] for m in rec.masks]
    for t, before, after in zip(rec.steps[1:], masks, masks[1:], strict=False):
        assert not np.any(after & ~before), f"a pruned weight came back at step {t}"   # nested
        if not hook.is_update_step(t):
            assert np.array_equal(before, after), f"the mask changed off schedule at step {t}"
    final = masks[-1]
    assert np.array_equal(final, hook.masks["conv2.weight"])
    fresh = c.mask(np.random.default_rng(1).standard_normal((50, 20, 5, 5)))
    if structure in EXACT:
        assert final.sum() == fresh.sum(), "the final mask misses the structure's count"
        # the hard prune that follows in the engine changes nothing
        again = c.mask(model.parameters()["conv2.weight"], frozen=final)
        assert np.array_equal(again, final)
    else:  # unified: sparsity= unifies blocks, it prunes none
        assert final.all()


@pytest.mark.parametrize("structure", ["filters", "balanced", "unstructured"])
def test_each_update_keeps_the_count_of_the_scheduled_sparsity(structure):
    c = Constraint("conv2.weight", structure, **STRUCTURES[structure])
    _, hook, rec = train([c], epochs=4, begin=0, end=12, update_every=4, initial=0.1)
    rng_w = np.random.default_rng(2).standard_normal((50, 20, 5, 5))
    for t, m in zip(rec.steps, rec.masks, strict=True):
        last_update = min(t // 4 * 4, 12)            # the mask holds between updates
        s_t = hook.targets_at(last_update)[0]
        assert m["conv2.weight"].sum() == constraint_at(c, s_t).mask(rng_w).sum(), t
    assert len({m["conv2.weight"].sum() for m in rec.masks}) >= 3   # updates at 0 (s_i = 0.1), 4, 8, 12


def test_a_pruned_weight_never_returns_even_when_it_is_the_largest():
    """The update ranks the survivors only (frozen masks), whatever value a pruned position holds."""
    hook = GradualPruning([Constraint("w", "unstructured", sparsity=0.5)], begin=0, end=0)
    hook.masks = {"w": np.array([False, True, True, True, True, True])}
    w = np.array([100.0, 1.0, -5.0, 2.0, 3.0, -0.5])
    hook.update({"w": w}, 0)
    assert hook.masks["w"].tolist() == [False, False, True, True, True, False]   # 3 of 6: -5, 3, 2
    # without the frozen mask the plain rule would have kept it
    assert Constraint("w", "unstructured", sparsity=0.5).mask(w)[0]


def test_the_first_update_is_made_before_the_first_step_when_the_ramp_starts_at_zero():
    c = Constraint("conv2.weight", "filters", sparsity=0.6)
    _, hook, rec = train([c], epochs=1, begin=0, end=3, update_every=3, initial=0.2)
    first = rec.masks[0]["conv2.weight"].reshape(50, -1).any(axis=1)
    assert first.sum() == 40          # s_i = 0.2 of 50 filters, pruned before step 1 and kept until step 3
    assert rec.masks[-1]["conv2.weight"].reshape(50, -1).any(axis=1).sum() == 20


def test_adam_state_and_several_constraints_per_layer():
    cs = [Constraint("conv2.weight", "filters", sparsity=0.5),
          Constraint("conv2.weight", "shapes", sparsity=0.5),
          Constraint("fc1.weight", "balanced", vector_size=8, sparsity=0.75)]
    _, hook, rec = train(cs, optimizer="adam", epochs=3, begin=0, end=6, update_every=2)
    conv2 = hook.masks["conv2.weight"].reshape(50, -1)
    assert conv2.any(axis=1).sum() <= 25 and conv2.any(axis=0).sum() <= 250
    assert masks_sparsity({"fc1.weight": hook.masks["fc1.weight"]}) == 0.75


def test_a_schedule_needs_a_sparsity_to_ramp_to():
    with pytest.raises(ValueError, match="keep=3"):
        GradualPruning([Constraint("conv2.weight", "filters", keep=3)], end=5)
    with pytest.raises(ValueError, match="total_sparsity"):
        final_sparsity(Constraint("w", "vector_block", vector_size=4, block_shape=(2, 2), vector_keep=1,
                                  block_keep=1))
    assert final_sparsity(Constraint("w", "nm", n=2, m=8)) == 0.75
    with pytest.raises(ValueError, match="end must be >= begin"):
        GradualPruning([Constraint("w", "filters", sparsity=0.5)], begin=4, end=3)
    with pytest.raises(ValueError, match="update_every"):
        GradualPruning([Constraint("w", "filters", sparsity=0.5)], end=3, update_every=0)


def test_the_n_m_twin_is_balanced_with_m_and_equals_n_m_at_the_end():
    c = Constraint("w", "nm", n=1, m=4)
    w = np.random.default_rng(0).standard_normal((6, 16))
    half = constraint_at(c, 0.5)
    assert half.structure == "balanced" and half.params["vector_size"] == 4
    assert np.all(half.mask(w).reshape(6, 4, 4).sum(axis=2) == 2)
    assert constraint_at(c, 0.75) is c


# --- the engine ----------------------------------------------------------------------------------------

GRADUAL = {"method": "gradual", "gradual.epochs": 3, "gradual.update_every": 3, "gradual.optimizer": "sgd",
           "gradual.lr": 0.02, "gradual.initial_sparsity": 0.1, "gradual.end_epoch": 2.5}


def gradual_config(**extra):
    return tiny_config(**{**GRADUAL, **extra})


@pytest.fixture(scope="module")
def gradual_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradual") / "run"
    return out, run_experiment(gradual_config(), out, progress=False, echo=None)


def test_a_gradual_run_ends_at_the_targets_and_the_hard_prune_keeps_its_masks(gradual_run):
    out, report = gradual_run
    assert [p["name"] for p in report["phases"]] == ["pretrain", "gradual", "prune", "retrain", "compact"]
    gradual_masks, final = arrays(out / "gradual" / "masks.npz"), arrays(out / "masks.npz")
    assert gradual_masks.keys() == final.keys()
    for name in final:
        assert np.array_equal(gradual_masks[name], final[name]), name
    # the targets of tiny_config: conv1 10 of 20 filters, fc1 125 of 500 rows, conv2 25 filters AND 250 shapes
    assert final["conv1.weight"].reshape(20, -1).any(axis=1).sum() == 10
    assert final["fc1.weight"].any(axis=1).sum() == 125
    # the log: the sparsity grows epoch by epoch; 160 images / 64 = 3 steps per epoch, end 2.5 epochs = step 8
    log = [json.loads(line) for line in (out / "gradual" / "log.jsonl").read_text().splitlines()]
    sparsity = [r["gradual.sparsity"] for r in log]
    assert sparsity == sorted(sparsity) and sparsity[-1] == pytest.approx(masks_sparsity(final))
    assert [r["gradual.progress"] for r in log][-1] == 1.0
    metrics = json.loads((out / "state.json").read_text())["phases"]["gradual"]["metrics"]
    assert metrics["updates"] == 3 and metrics["begin_step"] == 0       # steps 0, 3, 6 (6 <= 8 < 9)
    # the report prints the achieved sparsity per layer
    text = (out / "report.txt").read_text()
    assert "after gradual pruning" in text
    for name, mask in final.items():
        assert f"{name} {1 - mask.mean():.3f}" in text
    assert report["accuracy"]["after_gradual"] == metrics["test_acc"]


def test_resume_in_the_middle_of_the_gradual_phase_is_bitwise_identical(gradual_run, tmp_path, monkeypatch):
    reference, _ = gradual_run
    original = Trainer._run_epoch

    def crash_after_two_epochs(self, epoch):
        original(self, epoch)
        if self.out_dir.name == "gradual" and self.epoch == 2:
            raise Interrupted
    monkeypatch.setattr(Trainer, "_run_epoch", crash_after_two_epochs)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        run_experiment(gradual_config(), out, progress=False, echo=None)
    monkeypatch.undo()
    # 2 of 3 epochs done: updates at steps 0, 3 happened, the one at step 6 (epoch 3) is still to come
    checkpoint = load_checkpoint(out / "gradual" / "checkpoint.npz")
    assert checkpoint["position"]["epoch"] == 2
    assert "gradual" not in json.loads((out / "state.json").read_text())["phases"]

    lines = []
    run_experiment(gradual_config(), out, resume=True, progress=False, echo=lines.append)
    assert lines[0].startswith("resuming")
    names = ("model_masked.npz", "model_compact.npz", "masks.npz", "gradual/masks.npz", "gradual/model.npz")
    for name in names:
        got, want = arrays(out / name), arrays(reference / name)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].tobytes() == want[key].tobytes(), (name, key)


def test_zero_gradual_epochs_is_one_shot_pruning(tmp_path):
    config = gradual_config(**{"gradual.epochs": 0, "gradual.end_epoch": None})
    report = run_experiment(config, tmp_path / "r", progress=False, echo=None)
    masks = arrays(tmp_path / "r" / "masks.npz")
    assert masks["fc1.weight"].any(axis=1).sum() == 125
    assert report["accuracy"]["compact"] == report["accuracy"]["masked"]


def test_plan_of_a_gradual_run():
    config = gradual_config(**{"gradual.epochs": 5})
    model = lenet5(num_classes=4, input_size=8)
    phases = plan_phases(config, expand_constraints(config.admm.constraints, model))
    assert [(p.name, p.epochs) for p in phases] == [("pretrain", 2), ("gradual", 5), ("prune", 0),
                                                   ("retrain", 3), ("compact", 0)]
    assert phases[1].constraints == phases[2].constraints


@pytest.mark.parametrize(("extra", "match"), [
    ({"gradual.initial_sparsity": 1.5}, "gradual.initial_sparsity"),
    ({"gradual.start_epoch": 4}, "gradual.start_epoch"),
    ({"gradual.start_epoch": -1}, "gradual.start_epoch"),
    ({"gradual.end_epoch": 4}, "gradual.end_epoch"),
    ({"gradual.start_epoch": 2, "gradual.end_epoch": 1}, "gradual.end_epoch"),
    ({"gradual.update_every": 0}, "gradual.update_every"),
    ({"gradual.lr": -1}, "gradual.lr"),
    ({"admm.steps": 2}, "admm.steps"),
    ({"admm.targets": [0.25, 0.5]}, "admm.targets"),
    ({"admm.constraints": [{"params": "conv", "structure": "filters", "keep": 3}]},
     r"admm\.constraints\[0\]"),
    ({"admm.constraints": [{"params": "conv", "structure": "vector_block", "vector_size": 5,
                            "block_shape": [2, 5], "vector_keep": 1, "block_keep": 1}]}, "total_sparsity"),
])
def test_bad_gradual_settings_are_one_line_errors_naming_the_key(extra, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, {**GRADUAL, "admm.constraints": [{"params": "conv", "structure": "filters",
                                                           "sparsity": 0.5}], **extra})


def test_every_structure_can_be_configured_for_gradual():
    # "unified" on a weight of its own: it must be its weight's only constraint (check_unified_alone).
    specs = [{"param": "fc1.weight" if s == "unified" else "conv2.weight", "structure": s,
              **{k: list(v) if isinstance(v, tuple) else v for k, v in kw.items()}}
             for s, kw in STRUCTURES.items()]
    config = load_config(None, {**GRADUAL, "admm.constraints": specs})
    assert len(expand_constraints(config.admm.constraints, lenet5(num_classes=4, input_size=8))) == len(specs)
