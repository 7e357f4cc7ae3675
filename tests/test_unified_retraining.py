"""Retraining that keeps unified blocks unified (issue 11): one magnitude per block, its gradient, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from refimpl.config import load_config
from refimpl.engine import run_experiment
from refimpl.nn.linear import Linear
from refimpl.nn.loss import softmax_cross_entropy
from refimpl.projections import project_unified, unify_assignment
from refimpl.projections.unify import COPY, PRUNE, UNIFY
from refimpl.prune import (
    Constraint,
    MaskedRetraining,
    UnifiedBlocks,
    UnifiedRetraining,
    hard_prune,
    hard_prune_unified,
)
from refimpl.train.optim import SGD, Adam
from refimpl.train.trainer import Trainer


def projected(shape, block_shape, seed=0, dtype=np.float32, **amount):
    """A random weight, its unified projection and the recorded structure."""
    w = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    z = project_unified(w, block_shape, **amount)
    return z, UnifiedBlocks.from_weight(z, unify_assignment(w, block_shape, **amount), block_shape)


OPTIMIZERS = {
    "sgd": lambda p: SGD(p, lr=0.05),
    "sgd-nesterov-decay": lambda p: SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "sgd-dampening": lambda p: SGD(p, lr=0.05, momentum=0.5, dampening=0.3),
    "adam": lambda p: Adam(p, lr=1e-2, weight_decay=1e-3),
}


@pytest.mark.parametrize("mean", [False, True], ids=["sum", "mean"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_tied_gradients_alone_keep_every_block_unified_bit_for_bit(name, dtype, mean):
    # No guard: only the tied gradient g_i = s_i G_b (or s_i G_b / n_b), then the optimizer. The symmetry
    # argument of the module docstring says the blocks stay exactly +-m; a wrong tie (g_i = G_b without
    # the sign, or the untied gradient of the next test) breaks it.
    z, blocks = projected((12, 3, 2, 2), (2, 3), dtype=dtype, unify=0.5, prune=0.2)
    assert blocks.counts()["unified"] > 0
    opt = OPTIMIZERS[name]({"w": z})
    rng = np.random.default_rng(1)
    start = blocks.magnitudes(z)
    for _ in range(60):
        g = rng.standard_normal(z.shape).astype(dtype)
        blocks.tie_gradient(g, mean=mean)
        opt.step({"w": g})
        assert blocks.is_unified(z)
        # odd state is s_i * B_b, even state one value per block
        for key, buf in opt.state.get("w", {}).items():
            assert blocks.is_unified(buf if key != "exp_avg_sq" else np.abs(buf) * blocks.signs)
    moved = blocks.kinds == UNIFY
    assert np.all(blocks.magnitudes(z)[moved] != start[moved])  # the magnitudes do train


def test_untied_gradients_break_unification():
    # The test above can fail: plain masked gradients give every entry its own value again.
    z, blocks = projected((8, 8), (2, 2), unify=0.5)
    opt = SGD({"w": z}, lr=0.05)
    opt.step({"w": np.random.default_rng(2).standard_normal(z.shape).astype(z.dtype)})
    assert not blocks.is_unified(z)


def test_the_mean_tie_is_the_projected_gradient_step_and_the_sum_n_times_it():
    # Plain SGD, float64. "mean": one step is the Euclidean projection of the free step w - eta g onto
    # the block's structure {s m} (m_b <- mean of s_i (w_i - eta g_i)); "sum" moves m_b n_b times as far.
    z, blocks = projected((6, 12), (2, 3), seed=7, dtype=np.float64, unify=0.5, prune=0.25)
    g = np.random.default_rng(8).standard_normal(z.shape)
    eta, unified = 0.1, blocks.kinds == UNIFY
    start = blocks.magnitudes(z)
    tiles = (3, 2, 4, 3)  # the (2, 3) blocks of the 6 x 12 weight: block (i, j) is [i, :, j, :]
    signs = blocks.signs.reshape(tiles)
    n = np.abs(signs).sum(axis=(1, 3))  # entries with a nonzero sign per block
    free_step = (z - eta * g).reshape(tiles)
    want = np.where(unified, (signs * free_step).sum(axis=(1, 3)) / np.maximum(n, 1), 0)
    moved = {}
    for mean in (False, True):
        w = z.copy()
        tied = g.copy()
        blocks.tie_gradient(tied, mean=mean)
        SGD({"w": w}, lr=eta).step({"w": tied})
        moved[mean] = blocks.magnitudes(w) - start
    np.testing.assert_allclose(blocks.magnitudes(z) + moved[True], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(moved[False][unified], (n * moved[True])[unified], rtol=1e-12)
    assert np.all(n[unified] > 1) and np.any(moved[True][unified] != 0)


def linear_loss(layer, x, y):
    logits = layer.forward(x)
    loss, dlogits = softmax_cross_entropy(logits, y)
    return loss, dlogits


def test_magnitude_gradient_matches_finite_differences_float64():
    rng = np.random.default_rng(3)
    layer = Linear(12, 6, dtype=np.float64)
    w = layer.params["weight"]
    w[...], blocks = projected((6, 12), (2, 3), seed=4, dtype=np.float64, unify=0.5, prune=0.25)
    x, y = rng.standard_normal((20, 12)), rng.integers(0, 6, 20)
    _, dlogits = linear_loss(layer, x, y)
    layer.backward(dlogits)
    analytic = blocks.magnitude_gradient(layer.grads["weight"])
    bh, bw = blocks.block_shape
    checked = 0
    for bi, bj in zip(*np.nonzero(blocks.kinds == UNIFY), strict=True):
        direction = np.zeros_like(w)
        direction[bi * bh : (bi + 1) * bh, bj * bw : (bj + 1) * bw] = blocks.signs[
            bi * bh : (bi + 1) * bh, bj * bw : (bj + 1) * bw
        ]
        eps, base = 1e-6, w.copy()
        w[...] = base + eps * direction  # m_b + eps: w_i = s_i (m_b + eps)
        plus = linear_loss(layer, x, y)[0]
        w[...] = base - eps * direction
        minus = linear_loss(layer, x, y)[0]
        w[...] = base
        numeric = (plus - minus) / (2 * eps)
        assert analytic[bi, bj] == pytest.approx(numeric, rel=1e-6, abs=1e-9)
        checked += 1
    assert checked == blocks.counts()["unified"] > 3
    assert np.all(analytic[blocks.kinds != UNIFY] == 0)


def training_data(seed=5, n=96):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 16)).astype(np.float32)
    return x, (x[:, :4].sum(axis=1) > 0).astype(np.int64) + 2 * (x[:, 4] > 0)


def test_the_hook_keeps_blocks_unified_and_pruned_blocks_zero_in_a_trainer():
    layer = Linear(16, 4, rng=np.random.default_rng(0))
    params = layer.parameters()
    masks, unified = hard_prune_unified(
        params, [Constraint("weight", "unified", block_shape=(2, 4), unify=0.5, prune=0.25)]
    )
    blocks = unified["weight"]
    before = params["weight"].copy()
    hook = UnifiedRetraining(masks, unified)
    trainer = Trainer(
        layer,
        SGD(params, lr=0.1, momentum=0.9),
        training_data(),
        batch_size=16,
        epochs=4,
        hooks=[hook],
        progress=False,
    )
    trainer.fit()
    w = params["weight"]
    assert hook.intact(params) and blocks.is_unified(w)
    assert np.all(w[~masks["weight"]] == 0)
    assert np.all(np.isin(np.sign(w[blocks.signs != 0]) * blocks.signs[blocks.signs != 0], (1, -1)))
    free = np.repeat(np.repeat(blocks.kinds == COPY, 2, axis=0), 4, axis=1)
    assert np.all(w[free] != before[free])  # free weights train normally
    assert np.all(
        blocks.magnitudes(w)[blocks.kinds == UNIFY] != blocks.magnitudes(before)[blocks.kinds == UNIFY]
    )
    state = trainer.optimizer.state["weight"]["momentum_buffer"]
    assert blocks.is_unified(state) and np.all(state[~masks["weight"]] == 0)


def test_without_unified_blocks_it_trains_exactly_like_masked_retraining():
    runs = []
    for make in (lambda m, u: MaskedRetraining(m), UnifiedRetraining):
        layer = Linear(16, 4, rng=np.random.default_rng(0))
        params = layer.parameters()
        masks, unified = hard_prune_unified(
            params, [Constraint("weight", "unified", block_shape=(2, 4), unify=0.0, prune=0.5)]
        )
        assert unified["weight"].counts()["unified"] == 0
        Trainer(
            layer,
            Adam(params, lr=1e-2),
            training_data(),
            batch_size=16,
            epochs=2,
            hooks=[make(masks, unified)],
            progress=False,
        ).fit()
        runs.append(params["weight"].copy())
    assert runs[0].tobytes() == runs[1].tobytes()


def test_hard_prune_unified_records_the_projection_and_prunes_empty_blocks():
    w = np.array([[3.0, -1.0, 0.5, 0.25, 0.0, 0.0, 2.0, 2.0]])
    params = {"w": w.copy()}
    c = Constraint("w", "unified", block_shape=(1, 2), unify=0.75)
    masks, unified = hard_prune_unified(params, [c])
    plain = {"w": w.copy()}
    np.testing.assert_array_equal(masks["w"], hard_prune(plain, [c])["w"])
    assert params["w"].tobytes() == plain["w"].tobytes()
    np.testing.assert_array_equal(params["w"], project_unified(w, (1, 2), unify=0.75))
    blocks = unified["w"]
    # unify_assignment unifies the three cheapest blocks, one of them all zero: recorded as pruned
    np.testing.assert_array_equal(unify_assignment(w, (1, 2), unify=0.75), [[0, 1, 1, 1]])
    np.testing.assert_array_equal(blocks.kinds, [[COPY, UNIFY, PRUNE, UNIFY]])
    np.testing.assert_array_equal(blocks.signs, [[0, 0, 1, 1, 0, 0, 1, 1]])
    np.testing.assert_array_equal(masks["w"], [[True, True, True, True, False, False, True, True]])


def test_hard_prune_unified_refuses_a_unified_constraint_among_others():
    params = {"w": np.ones((4, 4))}
    with pytest.raises(ValueError, match="'unified' constraint must be the parameter's only one"):
        hard_prune_unified(
            params,
            [
                Constraint("w", "unified", block_shape=(2, 2), unify=0.5),
                Constraint("w", "filters", sparsity=0.5),
            ],
        )


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (
            ((2, 2), np.zeros((1, 1), int), np.zeros((2, 2), np.float64)),
            TypeError,
            "signs must be an integer",
        ),
        (((2, 2), np.zeros((1, 1), int), np.full((2, 2), 2)), ValueError, "only -1, 0 and"),
        (
            ((2, 2), np.zeros((2, 1), int), np.zeros((2, 2), int)),
            ValueError,
            "kinds must be an integer array",
        ),
        (((2, 2), np.full((1, 1), 7), np.zeros((2, 2), int)), ValueError, "kinds must hold only"),
        (((2, 2), np.zeros((1, 1), int), np.ones((2, 2), int)), ValueError, "not unified"),
        (((2, 2), np.ones((1, 1), int), np.zeros((2, 2), int)), ValueError, "has no nonzero sign"),
        (((3, 2), np.ones((1, 1), int), np.ones((2, 2), int)), ValueError, "block_shape"),
    ],
)
def test_unified_blocks_validate_their_arguments(args, error, match):
    with pytest.raises(error, match=match):
        UnifiedBlocks(*args)


def test_the_hook_checks_its_arguments():
    blocks = UnifiedBlocks((1, 2), np.ones((1, 1), int), np.ones((1, 2), int))
    with pytest.raises(TypeError, match="unified must be a dict"):
        UnifiedRetraining({}, [blocks])
    with pytest.raises(TypeError, match=r"unified\['w'\] must be a UnifiedBlocks"):
        UnifiedRetraining({}, {"w": "blocks"})
    with pytest.raises(ValueError, match="has shape"):
        UnifiedRetraining({"w": np.ones((2, 2), bool)}, {"w": blocks})
    with pytest.raises(ValueError, match="grad has shape"):
        blocks.tie_gradient(np.ones((2, 2)))
    with pytest.raises(ValueError, match="magnitude_gradient must be one of"):
        UnifiedRetraining({}, {"w": blocks}, magnitude_gradient="median")


def test_state_dict_round_trip():
    z, blocks = projected((6, 8), (2, 2), unify=0.5, prune=0.25)
    hook = UnifiedRetraining({"w": z != 0}, {"w": blocks})
    other = UnifiedRetraining({}, {})
    other.load_state_dict(hook.state_dict())
    assert other.unified["w"].signs.tobytes() == blocks.signs.tobytes()
    assert other.unified["w"].kinds.tobytes() == blocks.kinds.tobytes()
    assert other.unified["w"].block_shape == blocks.block_shape


# --- through the engine ----------------------------------------------------------------------------------

SETTINGS = {
    "name": "tiny-unified",
    "threads": 1,
    "seed": 2,
    "data.name": "synthetic",
    "data.limit_train": 160,
    "data.limit_test": 80,
    "pretrain.epochs": 1,
    "pretrain.lr": 3e-3,
    "admm.epochs": 1,
    "retrain.epochs": 3,
    "retrain.optimizer": "sgd",
    "retrain.lr": 0.02,
    "retrain.momentum": 0.9,
    "admm.constraints": [
        {"param": "fc1.weight", "structure": "unified", "block_shape": [2, 4], "unify": 0.6, "prune": 0.2},
        {"param": "conv2.weight", "structure": "unified", "block_shape": [1, 5], "unify": 0.5},
    ],
}


class Interrupted(Exception):
    pass


def arrays(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def unified_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("unified") / "run"
    report = run_experiment(load_config(None, SETTINGS), out, progress=False, echo=None)
    return out, report


def test_engine_retraining_keeps_the_recorded_blocks_unified(unified_run):
    out, _ = unified_run
    state = json.loads((out / "state.json").read_text())["phases"]
    assert state["retrain"]["metrics"]["unified_intact"] is True
    counts = state["prune"]["metrics"]["unified_blocks"]
    assert counts["fc1.weight"]["unified"] > 1000 and counts["fc1.weight"]["pruned"] > 0
    recorded = arrays(out / state["prune"]["unified"])
    weights = arrays(out / "model_masked.npz")
    after_cut = arrays(out / "prune" / "model.npz")
    for name in ("fc1.weight", "conv2.weight"):
        blocks = UnifiedBlocks.from_arrays(recorded, name)
        assert blocks.is_unified(weights[name])
        unified = blocks.kinds == UNIFY
        assert np.any(
            blocks.magnitudes(weights[name])[unified] != blocks.magnitudes(after_cut[name])[unified]
        )


def test_engine_resume_in_retraining_is_bitwise_identical(unified_run, tmp_path, monkeypatch):
    reference, _ = unified_run
    original = Trainer._run_epoch

    def crash(self, epoch):
        original(self, epoch)
        if self.out_dir.name == "retrain" and self.epoch == 1:
            raise Interrupted

    monkeypatch.setattr(Trainer, "_run_epoch", crash)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        run_experiment(load_config(None, SETTINGS), out, progress=False, echo=None)
    monkeypatch.undo()
    run_experiment(load_config(None, SETTINGS), out, resume=True, progress=False, echo=None)
    for name in ("model_masked.npz", "masks.npz", "prune/unified.npz"):
        got, want = arrays(out / name), arrays(reference / name)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].tobytes() == want[key].tobytes(), (name, key)


def test_report_and_results_table_count_the_unified_blocks_in_bits(unified_run):
    from refimpl.engine.results import collect_results

    out, report = unified_run
    recorded = arrays(out / "prune" / "unified.npz")
    layers = {row["name"]: row for row in report["storage"]["layers"]}
    for name, shape in (("fc1.weight", [2, 4]), ("conv2.weight", [1, 5])):
        blocks = UnifiedBlocks.from_arrays(recorded, name)
        assert layers[name]["block_shape"] == shape
        assert layers[name]["unified_blocks"] == blocks.counts()["unified"]  # still unified after retraining
        assert layers[name]["pruned_blocks"] == blocks.counts()["pruned"]
    assert report["storage"]["bits"] < report["storage"]["dense_bits"]
    assert "storage in bits" in report["text"] and "network (all parameters)" in report["text"]
    row = collect_results(out)[0]
    assert row["storage.bits"] == report["storage"]["bits"]
    assert row["storage.bits_fp16"] == report["storage"]["bits_fp16"] < row["storage.bits"]


def test_engine_magnitude_gradient_mean_keeps_blocks_unified_and_trains_differently(unified_run, tmp_path):
    reference, _ = unified_run
    out = tmp_path / "run"
    run_experiment(load_config(None, {**SETTINGS, "retrain.magnitude_gradient": "mean"}), out,
                   progress=False, echo=None)
    state = json.loads((out / "state.json").read_text())["phases"]
    assert state["retrain"]["metrics"]["unified_intact"] is True
    recorded = arrays(out / "prune" / "unified.npz")
    # the same run up to the cut, then a smaller step for the magnitudes
    cut, reference_cut = (arrays(d / "prune" / "model.npz")["fc1.weight"] for d in (out, reference))
    assert cut.tobytes() == reference_cut.tobytes()
    blocks = UnifiedBlocks.from_arrays(recorded, "fc1.weight")
    mean, summed = (arrays(d / "model_masked.npz")["fc1.weight"] for d in (out, reference))
    assert blocks.is_unified(mean)
    assert not np.array_equal(blocks.magnitudes(mean), blocks.magnitudes(summed))


def test_config_rejects_an_unknown_magnitude_gradient():
    with pytest.raises(ValueError, match="retrain.magnitude_gradient"):
        load_config(None, {**SETTINGS, "retrain.magnitude_gradient": "median"})
