"""Trainer: learning, hooks, logging, seeding, checkpoints and bitwise-exact resume."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from refimpl.nn.activation import ReLU
from refimpl.nn.batchnorm import BatchNorm2d
from refimpl.nn.conv import Conv2d
from refimpl.nn.dropout import Dropout
from refimpl.nn.flatten import Flatten
from refimpl.nn.linear import Linear
from refimpl.nn.loss import softmax_cross_entropy
from refimpl.nn.module import Module, Sequential
from refimpl.train.checkpoint import load_checkpoint
from refimpl.train.log import read_records
from refimpl.train.optim import SGD, Adam
from refimpl.train.schedules import StepLR
from refimpl.train.trainer import Hook, Trainer, evaluate, first_layer, input_gradient_skipped

N_FEATURES, N_CLASSES = 4, 3


# --- fixtures: data, a small model with dropout and BatchNorm, a stateful ADMM-like hook ----------------
def blobs(n=90, seed=0, spread=0.6):
    """Three well-separated Gaussian blobs in 4-D (linearly separable in practice)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    y = np.arange(n) % N_CLASSES
    x = centres[y] + spread * rng.normal(size=(n, N_FEATURES))
    return x, y


class ToImage(Module):
    """(N, C) -> (N, C, 1, 1), so that BatchNorm2d normalises features (test-only helper)."""

    def forward(self, x):
        return x[:, :, None, None]

    def backward(self, dout):
        return dout[:, :, 0, 0]


def make_model(seed=0, bn=True, p_drop=0.3):
    rng = np.random.default_rng(seed)
    layers = [("fc1", Linear(N_FEATURES, 16, rng=rng, dtype=np.float64))]
    if bn:
        layers += [("img", ToImage()), ("bn", BatchNorm2d(16, dtype=np.float64)), ("flat", Flatten())]
    layers += [("relu", ReLU()), ("drop", Dropout(p_drop)),
               ("fc2", Linear(16, N_CLASSES, rng=rng, dtype=np.float64))]
    return Sequential(layers)


class ToyADMM(Hook):
    """A miniature ADMM (keep the largest half of ``fc1.weight``): state in arrays, a float and counters.

    Every piece of its state changes the trajectory, so a resume that forgot any of it would diverge.
    """

    def __init__(self, name="fc1.weight", rho=1e-2, log_every=4):
        self.name, self.rho, self.log_every = name, rho, log_every
        self.Z = self.U = None
        self.steps = 0

    def _project(self, v):
        keep = np.argsort(np.abs(v), axis=None)[v.size // 2:]
        z = np.zeros_like(v)
        z.flat[keep] = v.flat[keep]
        return z

    def on_train_begin(self, trainer):
        w = trainer.params[self.name]
        self.Z, self.U = self._project(w), np.zeros_like(w)

    def after_backward(self, trainer):
        w = trainer.params[self.name]
        trainer.grads[self.name] += self.rho * (w - self.Z + self.U)

    def after_step(self, trainer):
        self.steps += 1
        if self.steps % self.log_every == 0:
            trainer.log({"toy.gap": float(np.linalg.norm(trainer.params[self.name] - self.Z))})

    def on_epoch_end(self, trainer, epoch):
        w = trainer.params[self.name]
        self.Z = self._project(w + self.U)
        self.U = self.U + w - self.Z
        self.rho *= 1.3
        return {"toy.rho": self.rho, "toy.primal": float(np.linalg.norm(w - self.Z))}

    def state_dict(self):
        return {"Z": self.Z.copy(), "U": self.U.copy(), "rho": self.rho, "steps": self.steps}

    def load_state_dict(self, state):
        self.Z, self.U = state["Z"].copy(), state["U"].copy()
        self.rho, self.steps = state["rho"], state["steps"]


def make_trainer(out_dir=None, epochs=3, optimizer="sgd", seed=0, model_seed=0, hooks=None, **kwargs):
    model = make_model(model_seed)
    if optimizer == "sgd":
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    else:
        opt = Adam(model.parameters(), lr=1e-2, weight_decay=1e-4)
    kwargs = dict(val_data=blobs(30, seed=1), batch_size=16, epochs=epochs, seed=seed,
                  schedule=StepLR(opt.lr, step_size=1, gamma=0.7), loss_fn=softmax_cross_entropy,
                  progress=False) | kwargs
    return Trainer(model, opt, blobs(), hooks=[ToyADMM()] if hooks is None else hooks, out_dir=out_dir,
                   **kwargs)


def without_time(records):
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


def assert_same_run(a: Trainer, b: Trainer):
    for (name, wa), (_, wb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        np.testing.assert_array_equal(wa, wb, err_msg=name)
    for name, state in a.optimizer.state.items():
        for key, buf in state.items():
            np.testing.assert_array_equal(buf, b.optimizer.state[name][key], err_msg=f"{name}/{key}")
    assert a.step == b.step and a.epoch == b.epoch
    assert a.rng.bit_generator.state == b.rng.bit_generator.state
    assert a.model_rng.bit_generator.state == b.model_rng.bit_generator.state
    assert without_time(a.history) == without_time(b.history)


# --- learning ------------------------------------------------------------------------------------------
def test_tiny_model_learns_separable_blobs():
    model = make_model(bn=False, p_drop=0.0)
    before = evaluate(model, *blobs(30, seed=1), loss_fn=softmax_cross_entropy)
    opt = SGD(model.parameters(), lr=0.2, momentum=0.9)
    trainer = Trainer(model, opt, blobs(), val_data=blobs(30, seed=1), batch_size=16, epochs=8,
                      progress=False)  # default loss: refimpl.nn.loss.softmax_cross_entropy
    history = trainer.fit()
    losses = [r["train_loss"] for r in history]
    assert losses[-1] < 0.5 * losses[0]
    assert history[-1]["val_loss"] < before["loss"]
    assert before["accuracy"] < 0.7 and history[-1]["val_acc"] >= 0.95 and history[-1]["train_acc"] >= 0.95
    assert [r["epoch"] for r in history] == list(range(8))
    assert [r["step"] for r in history] == [6 * (e + 1) for e in range(8)]  # ceil(90 / 16) = 6 batches
    assert trainer.step == 48 and trainer.epoch == 8
    assert set(history[0]) == {"epoch", "step", "lr", "train_loss", "train_acc", "val_loss", "val_acc",
                               "time"}


def test_float32_training_keeps_float32():
    # The default dtype of refimpl: parameters, optimizer state and BN buffers stay float32 throughout.
    rng = np.random.default_rng(0)
    model = Sequential([Linear(N_FEATURES, 16, rng=rng), ToImage(), BatchNorm2d(16), Flatten(), ReLU(),
                        Linear(16, N_CLASSES, rng=rng)])
    x, y = blobs()
    trainer = Trainer(model, SGD(model.parameters(), lr=0.1, momentum=0.9), (x.astype(np.float32), y),
                      batch_size=16, epochs=4, loss_fn=softmax_cross_entropy, progress=False)
    history = trainer.fit()
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(v.dtype == np.float32 for v in model.state_dict().values())
    assert all(b.dtype == np.float32 for s in trainer.optimizer.state.values() for b in s.values())


def test_epoch_metrics_are_exact_sample_means():
    # Zero learning rate: the weights never change, so the epoch's train metrics equal an eval pass in
    # train mode (no dropout, no BN here) including the short last batch.
    model = make_model(bn=False, p_drop=0.0)
    x, y = blobs()
    trainer = Trainer(model, SGD(model.parameters(), lr=0.0), (x, y), batch_size=16, epochs=1,
                      loss_fn=softmax_cross_entropy, progress=False)
    record = trainer.fit()[0]
    full = evaluate(model, x, y, batch_size=len(y), loss_fn=softmax_cross_entropy)
    assert record["train_loss"] == pytest.approx(full["loss"], rel=1e-12)
    assert record["train_acc"] == full["accuracy"]
    assert record["val_loss"] is None and record["val_acc"] is None


def test_evaluate_restores_mode_and_does_not_depend_on_batch_size():
    model = make_model()
    x, y = blobs(50)
    model.train()
    a = evaluate(model, x, y, batch_size=7, loss_fn=softmax_cross_entropy)
    assert model.training and all(m.training for _, m in model.named_modules())
    model.eval()
    b = evaluate(model, x, y, batch_size=50, loss_fn=softmax_cross_entropy)
    assert not model.training
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-12) and a["accuracy"] == b["accuracy"]
    logits = model.forward(x)  # eval mode: BN running stats, no dropout
    assert b["loss"] == pytest.approx(softmax_cross_entropy(logits, y)[0], rel=1e-12)
    assert b["accuracy"] == np.mean(np.argmax(logits, 1) == y)


def test_progress_bar_runs(capsys):
    trainer = make_trainer(epochs=1, progress=True)
    trainer.fit()
    assert trainer.epoch == 1


# --- hooks ---------------------------------------------------------------------------------------------
class Recorder:
    """Duck-typed hook (no base class) recording the calls and what it saw."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, trainer):
        self.calls.append(("begin", trainer.step))

    def after_backward(self, trainer):
        self.calls.append(("backward", trainer.step))
        self.saw_grad = trainer.grads["fc2.bias"].copy()

    def after_step(self, trainer):
        self.calls.append(("step", trainer.step))

    def on_epoch_end(self, trainer, epoch):
        self.calls.append(("epoch_end", epoch))
        return {"rec.calls": len(self.calls)}


def test_hook_call_order_and_step_counts():
    rec = Recorder()
    trainer = make_trainer(epochs=2, hooks=[rec])
    history = trainer.fit()
    one_epoch = [c for s in range(6) for c in (("backward", s), ("step", s + 1))]
    second = [(name, s + 6) for name, s in one_epoch]
    assert rec.calls == [("begin", 0), *one_epoch, ("epoch_end", 0), *second, ("epoch_end", 1)]
    assert history[0]["rec.calls"] == 14 and history[1]["rec.calls"] == 27


def test_after_backward_gradient_edits_reach_the_optimizer():
    class FreezeFc2(Hook):
        def after_backward(self, trainer):
            trainer.grads["fc2.weight"][...] = 0.0

    model = make_model(bn=False, p_drop=0.0)
    frozen = model.parameters()["fc2.weight"].copy()
    Trainer(model, SGD(model.parameters(), lr=0.1), blobs(), epochs=1, hooks=[FreezeFc2()],
            loss_fn=softmax_cross_entropy, progress=False).fit()
    np.testing.assert_array_equal(model.parameters()["fc2.weight"], frozen)
    initial_fc1 = make_model(bn=False).parameters()["fc1.weight"]
    assert not np.array_equal(model.parameters()["fc1.weight"], initial_fc1)


def test_after_step_weight_edits_persist():
    class Clip(Hook):
        def after_step(self, trainer):
            np.clip(trainer.params["fc1.weight"], -0.05, 0.05, out=trainer.params["fc1.weight"])

    trainer = make_trainer(epochs=1, hooks=[Clip()])
    trainer.fit()
    assert np.abs(trainer.params["fc1.weight"]).max() <= 0.05


def test_hook_metric_name_collision_raises():
    class Bad(Hook):
        def on_epoch_end(self, trainer, epoch):
            return {"train_loss": 0.0}

    with pytest.raises(ValueError, match="'train_loss', which is already taken"):
        make_trainer(epochs=1, hooks=[Bad()]).fit()


# --- logging, schedules, checkpoints -------------------------------------------------------------------
def test_log_file_schedule_and_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, epochs=3, checkpoint_every=2)
    history = trainer.fit()
    records = read_records(tmp_path / "log.jsonl")
    epoch_records = [r for r in records if "train_loss" in r]
    assert without_time(epoch_records) == without_time(history)
    assert [r["lr"] for r in history] == pytest.approx([0.1, 0.07, 0.049], rel=1e-12)
    assert [r["toy.rho"] for r in history] == pytest.approx([1e-2 * 1.3 ** (e + 1) for e in range(3)])
    gap_records = [r for r in records if "toy.gap" in r]
    assert [r["step"] for r in gap_records] == list(range(4, 19, 4))  # logged by the hook every 4 steps
    saved = load_checkpoint(tmp_path / "checkpoint.npz")  # saved after the last epoch even if 3 % 2 != 0
    assert saved["position"] == {"epoch": 3, "step": 18}
    np.testing.assert_array_equal(saved["model"]["fc1.weight"], trainer.params["fc1.weight"])
    np.testing.assert_array_equal(saved["hooks"][0]["Z"], trainer.hooks[0].Z)
    assert saved["optimizer"]["type"] == "SGD"


def test_checkpoint_every_zero_writes_no_checkpoint(tmp_path):
    make_trainer(tmp_path, epochs=1, checkpoint_every=0).fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]


def test_fresh_fit_starts_a_fresh_log(tmp_path):
    make_trainer(tmp_path, epochs=2).fit()
    make_trainer(tmp_path, epochs=1).fit()  # not resumed: the old records go
    assert [r["epoch"] for r in read_records(tmp_path / "log.jsonl") if "train_loss" in r] == [0]


# --- seeding and exact resume --------------------------------------------------------------------------
def test_same_seed_gives_bit_identical_runs_and_seed_matters():
    a, b, c = make_trainer(epochs=2), make_trainer(epochs=2), make_trainer(epochs=2, seed=1)
    for t in (a, b, c):
        t.fit()
    assert_same_run(a, b)
    assert not np.array_equal(a.params["fc1.weight"], c.params["fc1.weight"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_resume_after_two_epochs_is_bitwise_identical(tmp_path, optimizer):
    straight = make_trainer(tmp_path / "straight", epochs=3, optimizer=optimizer)
    straight.fit()

    first = make_trainer(tmp_path / "split", epochs=2, optimizer=optimizer)
    first.fit()
    # A new process would build everything again from scratch: a different initial model on purpose.
    second = make_trainer(tmp_path / "split", epochs=3, optimizer=optimizer, model_seed=99)
    second.fit(resume=True)

    assert_same_run(straight, second)
    assert second.hooks[0].rho == straight.hooks[0].rho and second.hooks[0].steps == 18
    np.testing.assert_array_equal(second.hooks[0].Z, straight.hooks[0].Z)
    np.testing.assert_array_equal(second.hooks[0].U, straight.hooks[0].U)
    log_a = without_time(read_records(tmp_path / "straight" / "log.jsonl"))
    log_b = without_time(read_records(tmp_path / "split" / "log.jsonl"))
    assert log_a == log_b


def test_resume_test_has_teeth(tmp_path):
    # Continuing from the saved weights alone (fresh optimizer, generators and hook) must NOT reproduce
    # the uninterrupted run; otherwise the exact-resume test above would prove nothing.
    straight = make_trainer(epochs=3)
    straight.fit()
    make_trainer(tmp_path, epochs=2).fit()
    naive = make_trainer(epochs=1)
    naive.model.load_state_dict(load_checkpoint(tmp_path / "checkpoint.npz")["model"])
    naive.fit()
    assert not np.array_equal(naive.params["fc1.weight"], straight.params["fc1.weight"])


def test_resume_after_a_crash_mid_epoch(tmp_path):
    class Crash(Hook):
        def __init__(self, at):
            self.at = at

        def after_step(self, trainer):
            if trainer.step == self.at:
                raise KeyboardInterrupt

    straight = make_trainer(tmp_path / "straight", epochs=3)
    straight.fit()
    # step 17 is inside epoch 2 (steps 13-18), after the checkpoint of epoch 1 and the toy hook's step-16 log
    crashing = make_trainer(tmp_path / "crash", epochs=3, hooks=[ToyADMM(), Crash(at=17)])
    with pytest.raises(KeyboardInterrupt):
        crashing.fit()
    # the interrupted epoch logged a hook record before dying; the resume must drop it and redo the epoch
    assert any(r["epoch"] == 2 for r in read_records(tmp_path / "crash" / "log.jsonl"))
    resumed = make_trainer(tmp_path / "crash", epochs=3, hooks=[ToyADMM(), Crash(at=None)])
    resumed.resume()
    assert_same_run(straight, resumed)
    assert without_time(read_records(tmp_path / "straight" / "log.jsonl")) == without_time(
        read_records(tmp_path / "crash" / "log.jsonl"))


def test_resume_without_checkpoint_starts_fresh_and_extends_runs(tmp_path):
    a = make_trainer(tmp_path, epochs=1)
    a.fit(resume=True)  # nothing to resume yet: a normal run
    assert a.epoch == 1
    b = make_trainer(tmp_path, epochs=2)
    b.fit(resume=True)  # continues epoch 1 only
    assert b.epoch == 2 and len(b.history) == 2 and b.step == 12


def test_resume_rejects_a_different_setup(tmp_path):
    make_trainer(tmp_path, epochs=1).fit()
    with pytest.raises(ValueError, match="batch_size=16, this trainer has 8"):
        make_trainer(tmp_path, epochs=2, batch_size=8).fit(resume=True)
    with pytest.raises(ValueError, match="seed"):
        make_trainer(tmp_path, epochs=2, seed=3).fit(resume=True)
    with pytest.raises(ValueError, match="hooks"):
        make_trainer(tmp_path, epochs=2, hooks=[]).fit(resume=True)
    with pytest.raises(ValueError, match="out_dir"):
        make_trainer(None, epochs=2).fit(resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        make_trainer(tmp_path / "empty", epochs=2).resume()


# --- the first layer's input gradient --------------------------------------------------------------------
def make_conv_model(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential([("conv", Conv2d(1, 2, 3, rng=rng, dtype=np.float64)), ("relu", ReLU()),
                       ("flat", Flatten()), ("fc", Linear(2 * 3 * 3, N_CLASSES, rng=rng, dtype=np.float64))])


def conv_blobs(n=30):
    x, y = blobs(n)
    images = np.repeat(x, 7, axis=1)[:, :25].reshape(n, 1, 5, 5)  # any images whose labels x decides
    return images, y


class RecordInputGrad(Hook):
    def __init__(self, layer):
        self.layer, self.seen = layer, []

    def after_backward(self, trainer):
        self.seen.append(self.layer.input_grad)


def test_first_layer_descends_nested_sequentials():
    conv = Conv2d(1, 1, 1)
    inner = Sequential([("conv", conv), ("relu", ReLU())])
    assert first_layer(Sequential([("block", inner), ("flat", Flatten())])) is conv
    assert first_layer(conv) is conv
    empty = Sequential([])
    assert first_layer(empty) is empty


def test_fit_skips_the_first_layers_input_gradient_and_restores_it():
    model = make_conv_model()
    recorder = RecordInputGrad(model["conv"])
    trainer = Trainer(model, SGD(model.parameters(), lr=0.1, momentum=0.9), conv_blobs(), batch_size=8,
                      epochs=2, hooks=[recorder], loss_fn=softmax_cross_entropy, progress=False)
    trainer.fit()
    assert recorder.seen == [False] * 8  # 4 batches x 2 epochs, all without dL/dx
    assert model["conv"].input_grad is True
    # direct backward calls (gradient checks w.r.t. the input) still get dL/dx
    x, _ = conv_blobs(4)
    model.forward(x)
    assert model.backward(np.ones((4, N_CLASSES))).shape == x.shape


def test_skipping_the_input_gradient_changes_no_parameter_gradient():
    x, y = conv_blobs(8)
    grads = []
    for skip in (False, True):
        model = make_conv_model()
        with input_gradient_skipped(model) if skip else contextlib.nullcontext():
            _, dlogits = softmax_cross_entropy(model.forward(x), y)
            dx = model.backward(dlogits)
        assert (dx is None) == skip
        grads.append(model.gradients())
    for name, g in grads[0].items():
        np.testing.assert_array_equal(grads[1][name], g, err_msg=name)


def test_input_gradient_skipped_restores_on_error_and_ignores_other_layers():
    model = make_conv_model()
    model["conv"].input_grad = False  # a user's own setting survives
    with input_gradient_skipped(model) as layer:
        assert layer is model["conv"]
    assert model["conv"].input_grad is False
    model["conv"].input_grad = True
    with pytest.raises(RuntimeError, match="boom"), input_gradient_skipped(model):
        raise RuntimeError("boom")
    assert model["conv"].input_grad is True
    linear_first = make_model()
    with input_gradient_skipped(linear_first) as layer:
        assert layer is None
    assert not hasattr(linear_first["fc1"], "input_grad")


# --- argument checks -----------------------------------------------------------------------------------
def test_bad_arguments():
    model = make_model()
    opt = SGD(model.parameters(), lr=0.1)
    data = blobs()
    with pytest.raises(ValueError, match="batch_size"):
        Trainer(model, opt, data, batch_size=0, loss_fn=softmax_cross_entropy)
    with pytest.raises(ValueError, match="epochs"):
        Trainer(model, opt, data, epochs=-1, loss_fn=softmax_cross_entropy)
    with pytest.raises(TypeError, match=r"train_data\[1\] must hold integer"):
        Trainer(model, opt, (data[0], data[1].astype(float)), loss_fn=softmax_cross_entropy)
    with pytest.raises(ValueError, match="train_data: x has shape"):
        Trainer(model, opt, (data[0][:10], data[1]), loss_fn=softmax_cross_entropy)
    with pytest.raises(ValueError, match=r"val_data\[0\] contains NaN"):
        Trainer(model, opt, data, val_data=(np.full((3, 4), np.nan), np.zeros(3, int)),
                loss_fn=softmax_cross_entropy)
    with pytest.raises(TypeError, match="optimizer"):
        Trainer(model, "sgd", data)
    with pytest.raises(TypeError, match="schedule"):
        Trainer(model, opt, data, schedule=0.1)
    with pytest.raises(TypeError, match="model"):
        Trainer(object(), opt, data)
    stale = SGD(model.parameters(), lr=0.1)
    model.astype(np.float32)  # the optimizer now holds arrays the model no longer uses
    with pytest.raises(ValueError, match="not the model's live array"):
        Trainer(model, stale, data, loss_fn=softmax_cross_entropy)
