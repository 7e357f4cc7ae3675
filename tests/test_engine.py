"""Tests for refimpl.engine: a run's files, report consistency, exact compaction, bitwise resume, safety."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from refimpl.config import load_config
from refimpl.engine import SetupError, load_compact_model, plan_phases, run_experiment
from refimpl.models import lenet5
from refimpl.prune import expand_constraints
from refimpl.train import load_checkpoint
from refimpl.train.trainer import Trainer

# Tiny: the synthetic 8x8 set, 160 training images, 3 epochs of ADMM and of retraining (interrupt after 2).
SETTINGS = {
    "name": "tiny", "threads": 1, "seed": 1,
    "data.name": "synthetic", "data.limit_train": 160, "data.limit_test": 80,
    "pretrain.epochs": 2, "pretrain.lr": 3e-3, "admm.epochs": 3, "retrain.epochs": 3,
    "admm.optimizer": "sgd", "admm.lr": 0.02,  # momentum buffers must survive a resume too
    "admm.constraints": [{"params": "conv", "structure": "filters", "sparsity": 0.5},
                         {"param": "conv2.weight", "structure": "shapes", "sparsity": 0.5},
                         {"param": "fc1.weight", "structure": "filters", "sparsity": 0.75}],
}


def tiny_config(**extra):
    return load_config(None, {**SETTINGS, **extra})


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    report = run_experiment(tiny_config(), out, progress=False, echo=None)
    return out, report


def arrays(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_run_writes_every_file(reference_run):
    out, _ = reference_run
    for name in ("config.toml", "config.json", "state.json", "masks.npz", "model_masked.npz",
                 "model_compact.npz", "compact.json", "report.txt", "report.json", "results.json",
                 "pretrain/log.jsonl", "pretrain/checkpoint.npz", "admm/log.jsonl", "admm/checkpoint.npz",
                 "admm/model.npz", "prune/masks.npz", "retrain/checkpoint.npz", "retrain/model.npz"):
        assert (out / name).is_file(), name
    state = json.loads((out / "state.json").read_text())
    assert list(state["phases"]) == ["pretrain", "admm", "prune", "retrain", "compact"]
    # The ADMM log carries the residuals and rho of every Z/U update (one per epoch).
    admm_log = [json.loads(line) for line in (out / "admm" / "log.jsonl").read_text().splitlines()]
    assert len(admm_log) == 3 and all("admm.primal_max" in r and "admm.rho" in r for r in admm_log)
    assert admm_log[1]["admm.rho"] == pytest.approx(1.3 * admm_log[0]["admm.rho"])
    assert load_config(out / "config.toml") == tiny_config()


def test_masks_hold_and_report_is_consistent(reference_run):
    out, report = reference_run
    weights, masks = arrays(out / "model_masked.npz"), arrays(out / "masks.npz")
    assert set(masks) == {"conv1.weight", "conv2.weight", "fc1.weight"}
    for name, mask in masks.items():
        assert mask.dtype == bool and not np.any(weights[name][~mask])
    # conv1: 10 of 20 filters; conv2: 25 of 50 filters and at most 250 of 500 shapes; fc1: 125 of 500 rows.
    assert np.count_nonzero(masks["conv1.weight"].reshape(20, -1).any(axis=1)) == 10
    assert np.count_nonzero(masks["conv2.weight"].reshape(50, -1).any(axis=1)) <= 25
    assert np.count_nonzero(masks["conv2.weight"].reshape(50, -1).any(axis=0)) <= 250
    assert np.count_nonzero(masks["fc1.weight"].any(axis=1)) == 125
    nonzero = sum(np.count_nonzero(v) for k, v in weights.items())
    assert report["params"]["nonzero"] == nonzero
    assert report["params"]["dense"] == sum(v.size for v in weights.values())
    assert report["compression"] == pytest.approx(report["params"]["dense"] / nonzero)
    for name, mask in masks.items():
        assert report["sparsity"]["per_layer"][name] == pytest.approx(1 - mask.mean())
    saved = json.loads((out / "report.json").read_text())
    assert saved["params"] == report["params"] and saved["accuracy"] == report["accuracy"]
    results = json.loads((out / "results.json").read_text())
    assert results["params_nonzero"] == nonzero and results["accuracy_pruned"] == report["accuracy"]["masked"]
    assert "after hard prune" in (out / "report.txt").read_text()
    acc = report["accuracy"]
    assert None not in (acc["dense"], acc["after_admm"], acc["after_hard_prune"], acc["after_retrain"])


def test_compact_model_computes_the_masked_function(reference_run):
    out, report = reference_run
    assert report["accuracy"]["compact"] == report["accuracy"]["masked"]
    assert report["compact_matches_masked"]
    compact = load_compact_model(out)
    masked = lenet5(num_classes=4, input_size=8)
    masked.load(out / "model_masked.npz")
    assert compact.num_parameters() == report["params"]["compact"] < masked.num_parameters()
    assert compact.get_module("fc1").params["weight"].shape[0] == 125  # pruned neurons are gone
    x = np.random.default_rng(0).normal(size=(16, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(compact.eval().forward(x), masked.eval().forward(x), rtol=1e-5, atol=1e-5)


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("phase", ["admm", "retrain"])
def test_resume_mid_phase_is_bitwise_identical(reference_run, tmp_path, monkeypatch, phase):
    reference, _ = reference_run
    original = Trainer._run_epoch

    def crash_after_two_epochs(self, epoch):
        original(self, epoch)
        if self.out_dir.name == phase and self.epoch == 2:
            raise Interrupted
    monkeypatch.setattr(Trainer, "_run_epoch", crash_after_two_epochs)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        run_experiment(tiny_config(), out, progress=False, echo=None)
    monkeypatch.undo()
    # Interrupted in the middle of the phase: its checkpoint holds 2 of its 3 epochs, nothing after it ran.
    assert load_checkpoint(out / phase / "checkpoint.npz")["position"]["epoch"] == 2
    assert phase not in json.loads((out / "state.json").read_text())["phases"]
    assert not (out / "model_masked.npz").exists()

    lines = []
    run_experiment(tiny_config(), out, resume=True, progress=False, echo=lines.append)
    assert lines[0].startswith("resuming")
    for name in ("model_masked.npz", "model_compact.npz", "masks.npz"):
        got, want = arrays(out / name), arrays(reference / name)
        assert got.keys() == want.keys()
        for key in want:
            assert got[key].tobytes() == want[key].tobytes(), (name, key)


def test_resume_after_the_end_changes_nothing(reference_run, tmp_path):
    reference, report = reference_run
    again = run_experiment(tiny_config(), reference, resume=True, progress=False, echo=None)
    assert again["accuracy"] == report["accuracy"] and again["params"] == report["params"]


def test_refuses_existing_run_and_changed_config(reference_run):
    reference, _ = reference_run
    with pytest.raises(SetupError, match="already holds a run"):
        run_experiment(tiny_config(), reference, progress=False, echo=None)
    with pytest.raises(SetupError, match=r"configuration differs .* admm\.epochs"):
        run_experiment(tiny_config(**{"admm.epochs": 4}), reference, resume=True, progress=False, echo=None)


def test_constraint_on_missing_layer_is_a_setup_error(tmp_path):
    config = tiny_config(**{"admm.constraints": [{"param": "conv7.weight", "structure": "filters",
                                                  "sparsity": 0.5}]})
    with pytest.raises(SetupError, match="conv7.weight"):
        run_experiment(config, tmp_path / "run", progress=False, echo=None)


def test_dense_baseline_and_magnitude_run(tmp_path):
    dense = run_experiment(tiny_config(method="none", **{"pretrain.epochs": 1}), tmp_path / "dense",
                           progress=False, echo=None)
    assert dense["accuracy"]["masked"] == dense["accuracy"]["dense"]
    assert dense["params"]["nonzero"] == dense["params"]["dense"] and dense["sparsity"]["overall"] == 0.0
    weights = tmp_path / "dense" / "pretrain" / "model.npz"
    # Magnitude pruning of the saved dense weights (init_weights: no pretraining), no ADMM phase.
    config = tiny_config(method="magnitude", **{"pretrain.init_weights": str(weights), "retrain.epochs": 1})
    report = run_experiment(config, tmp_path / "magnitude", progress=False, echo=None)
    assert [p["name"] for p in report["phases"]] == ["pretrain", "prune", "retrain", "compact"]
    assert report["accuracy"]["dense"] == dense["accuracy"]["dense"]  # the loaded weights
    assert report["accuracy"]["compact"] == report["accuracy"]["masked"]


@pytest.mark.parametrize(("extra", "names"), [
    ({"method": "admm", "admm.targets": [0.25, 0.5]},
     ["pretrain", "admm_1", "prune_1", "retrain_1", "admm_2", "prune_2", "retrain_2", "compact"]),
    ({"method": "magnitude_iterative", "magnitude.rounds": 3, "retrain.epochs": 7},
     ["pretrain", "prune_1", "retrain_1", "prune_2", "retrain_2", "prune_3", "retrain_3", "compact"]),
    ({"purify.enabled": True, "compact.enabled": False},
     ["pretrain", "admm", "prune", "retrain", "purify", "purify_retrain"]),
])
def test_plan_phases(extra, names):
    config = tiny_config(**extra)
    model = lenet5(num_classes=4, input_size=8)
    phases = plan_phases(config, expand_constraints(config.admm.constraints, model))
    assert [p.name for p in phases] == names
    if config.method == "magnitude_iterative":
        assert [p.epochs for p in phases if p.kind == "retrain"] == [2, 2, 3]  # split_budget(7, 3)
        final = [c.sparsity for c in phases[-3].constraints]
        assert final == [0.5, 0.5, 0.5, 0.75]  # the last round reaches the configured targets
    if "admm.targets" in extra:
        assert [c.sparsity for c in phases[1].constraints] == [0.25] * 4


def test_progressive_run_keeps_earlier_masks(tmp_path):
    config = tiny_config(**{"admm.targets": [0.25, 0.5], "admm.epochs": 1, "retrain.epochs": 1,
                            "pretrain.epochs": 1})
    run_experiment(config, tmp_path / "run", progress=False, echo=None)
    first, second = arrays(tmp_path / "run" / "prune_1" / "masks.npz"), arrays(tmp_path / "run" / "masks.npz")
    for name in first:
        assert not np.any(second[name] & ~first[name])  # nested: pruned once, pruned for good
        assert second[name].sum() < first[name].sum()


def test_admm_steps_share_the_per_layer_targets_of_iterative_magnitude():
    """``admm.steps = k`` plans k ADMM steps through the intermediate sparsities of magnitude's k rounds."""
    model = lenet5(num_classes=4, input_size=8)
    admm = tiny_config(**{"method": "admm", "admm.steps": 3, "retrain.epochs": 2})
    magnitude = tiny_config(**{"method": "magnitude_iterative", "magnitude.rounds": 3})
    admm_plan = plan_phases(admm, expand_constraints(admm.admm.constraints, model))
    magnitude_plan = plan_phases(magnitude, expand_constraints(magnitude.admm.constraints, model))
    assert [p.name for p in admm_plan] == ["pretrain", "admm_1", "prune_1", "retrain_1", "admm_2", "prune_2",
                                           "retrain_2", "admm_3", "prune_3", "retrain_3", "compact"]
    assert [p.epochs for p in admm_plan if p.kind == "retrain"] == [2, 2, 2]
    admm_targets = [[c.sparsity for c in p.constraints] for p in admm_plan if p.kind == "admm"]
    magnitude_targets = [[c.sparsity for c in p.constraints] for p in magnitude_plan if p.kind == "prune"]
    assert admm_targets == magnitude_targets
    assert admm_targets[-1] == [c.sparsity for c in expand_constraints(admm.admm.constraints, model)]
    assert all(a < b for a, b in zip(admm_targets[0], admm_targets[1], strict=True))


@pytest.mark.parametrize(("extra", "match"), [
    ({"admm.steps": 0}, "admm.steps"),
    ({"admm.steps": 2, "admm.targets": [0.25, 0.5]}, "admm.steps"),
])
def test_admm_steps_validation(extra, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**extra)


# --- the run directory's safety rules (refimpl.engine.rundir) ------------------------------------------

def _tree(path):
    """Every file under ``path`` with its bytes (to show that nothing changed)."""
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("files", [{"results.json": '{"mine": 1}'}, {"notes.txt": "x", "data": None}])
def test_a_foreign_directory_is_refused_and_left_alone(tmp_path, files):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in files.items():
        if text is None:
            (out / name).mkdir()
        else:
            (out / name).write_text(text)
    before = _tree(out)
    for resume in (False, True):
        with pytest.raises(SetupError, match="not empty and holds no refimpl run"):
            run_experiment(tiny_config(), out, resume=resume, progress=False, echo=None)
    assert _tree(out) == before and not (out / "run.lock").exists()


def test_an_empty_directory_is_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    report = run_experiment(tiny_config(method="none", **{"pretrain.epochs": 1}), tmp_path / "empty",
                            progress=False, echo=None)
    assert report["accuracy"]["dense"] is not None


def test_a_second_process_on_the_same_run_is_refused_naming_the_holder(reference_run, tmp_path):
    import subprocess
    import sys

    reference, _ = reference_run
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from refimpl.engine import RunDir; "
         "d = RunDir(sys.argv[1]); d._lock(); print('locked', flush=True); time.sleep(60)", str(reference)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        log_before = (reference / "retrain" / "log.jsonl").read_bytes()
        with pytest.raises(SetupError, match=rf"in use by another refimpl process \(PID {holder.pid}\)"):
            run_experiment(tiny_config(), reference, resume=True, progress=False, echo=None)
        assert (reference / "retrain" / "log.jsonl").read_bytes() == log_before  # no duplicated records
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the dead holder's lock: the run can be resumed again.
    run_experiment(tiny_config(), reference, resume=True, progress=False, echo=None)


def test_the_lock_is_released_after_a_crash_in_the_same_process(tmp_path, monkeypatch):
    def boom(self, epoch):
        raise Interrupted
    monkeypatch.setattr(Trainer, "_run_epoch", boom)
    with pytest.raises(Interrupted):
        run_experiment(tiny_config(), tmp_path / "run", progress=False, echo=None)
    monkeypatch.undo()
    config = tiny_config()
    run_experiment(config, tmp_path / "run", resume=True, progress=False, echo=None)  # not "in use"


@pytest.mark.parametrize(("constraint", "message"), [
    ({"param": "conv1.weight", "structure": "filters", "keep": 60}, r"admm\.constraints\[0\].*conv1\.weight"),
    ({"param": "fc1.weight", "structure": "blocks", "block_shape": [600, 4], "sparsity": 0.5},
     r"admm\.constraints\[0\].*fc1\.weight"),
    ({"param": "fc1.weight", "structure": "nm", "n": 2, "m": 7}, r"admm\.constraints\[0\].*fc1\.weight"),
    ({"param": "fc1.bias", "structure": "unstructured", "sparsity": 0.5},
     r"admm\.constraints\[0\].*fc1\.bias"),
])
def test_constraint_errors_are_found_before_any_training_and_write_nothing(tmp_path, monkeypatch, constraint,
                                                                           message):
    trained = []
    monkeypatch.setattr(Trainer, "fit", lambda self, **kw: trained.append(self) or [])
    config = tiny_config(**{"admm.constraints": [constraint]})
    with pytest.raises(SetupError, match=message) as info:
        run_experiment(config, tmp_path / "run", progress=False, echo=None)
    assert "\n" not in str(info.value) and not trained
    assert not (tmp_path / "run").exists()  # a failed setup leaves nothing behind


def interrupted_in_admm(out, monkeypatch):
    """Start the tiny run in ``out`` and crash it after the first ADMM epoch; return ``out``."""
    original = Trainer._run_epoch

    def crash(self, epoch):
        original(self, epoch)
        if self.out_dir.name == "admm":
            raise Interrupted
    monkeypatch.setattr(Trainer, "_run_epoch", crash)
    with pytest.raises(Interrupted):
        run_experiment(tiny_config(), out, progress=False, echo=None)
    monkeypatch.undo()
    return out


def test_a_failed_setup_on_resume_leaves_the_run_resumable(tmp_path, monkeypatch):
    out = interrupted_in_admm(tmp_path / "run", monkeypatch)
    before = _tree(out)
    with pytest.raises(SetupError, match="configuration differs"):
        run_experiment(tiny_config(**{"retrain.epochs": 5}), out, resume=True, progress=False, echo=None)
    assert _tree(out) == before
    run_experiment(tiny_config(), out, resume=True, progress=False, echo=None)
    assert json.loads((out / "state.json").read_text())["finished"] is True


def test_stale_temporaries_of_killed_writers_are_removed_on_resume(tmp_path, monkeypatch):
    out = interrupted_in_admm(tmp_path / "run", monkeypatch)
    stale = [out / "admm" / ".checkpoint.npz.k3x9_q2a.tmp", out / ".state.json.abcdefgh.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    keep = out / "admm" / "notes.tmp"  # not a name atomic_write makes: not ours to delete
    keep.write_text("mine")
    run_experiment(tiny_config(), out, resume=True, progress=False, echo=None)
    assert not any(p.exists() for p in stale) and keep.exists()
    assert not list(out.rglob(".*.tmp"))


def test_run_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        run_experiment(tiny_config(method="none", **{"pretrain.epochs": 1}), tmp_path / "run",
                       progress=False, echo=None)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert {"results.json", "report.json", "checkpoint.npz", "log.jsonl", "model.npz"} <= set(modes)
    assert set(modes.values()) == {0o644}, modes


def test_extra_hooks_see_every_training_phase(tmp_path):
    seen = []

    class Spy:
        def __init__(self, phase):
            self.phase = phase

        def on_epoch_end(self, trainer, epoch):
            seen.append((self.phase.name, epoch))

    run_experiment(tiny_config(), tmp_path / "run", progress=False, echo=None,
                   hooks=lambda phase: [Spy(phase)])
    assert seen == [("pretrain", 0), ("pretrain", 1), ("admm", 0), ("admm", 1), ("admm", 2),
                    ("retrain", 0), ("retrain", 1), ("retrain", 2)]


def test_every_planned_kind_is_in_the_phase_table_and_the_report():
    from refimpl.engine import METHOD_STEP, PHASES
    from refimpl.engine.plan import Phase

    assert set(METHOD_STEP.values()) - {None} <= set(PHASES)
    assert {"pretrain", "prune", "retrain", "purify", "purify_retrain", "compact"} <= set(PHASES)
    with pytest.raises(ValueError, match="registered twice"):
        from refimpl.engine import phase_kind
        phase_kind("prune")(lambda run, phase: {})
    assert Phase("a", "prune") == Phase("a", "prune")


def test_test_accuracy_after_every_epoch_changes_no_weight(reference_run, tmp_path):
    """output.test_every_epoch gives the accuracy-vs-budget curves and trains bit for bit the same."""
    reference, _ = reference_run
    report = run_experiment(tiny_config(**{"output.test_every_epoch": True}), tmp_path / "run",
                            progress=False, echo=None)
    for name in ("model_masked.npz", "model_compact.npz"):
        got, want = arrays(tmp_path / "run" / name), arrays(reference / name)
        assert all(got[k].tobytes() == want[k].tobytes() for k in want), name
    rows = {row["name"]: row for row in report["phases"]}
    for name in ("pretrain", "admm", "retrain"):
        curve = rows[name]["test_acc_curve"]
        assert len(curve) == rows[name]["epochs"] and all(0 <= a <= 1 for a in curve)
        assert curve[-1] == rows[name]["test_acc"]  # the last epoch's weights are the phase's result
    assert "test_acc_curve" not in rows["prune"]
    log = [json.loads(line) for line in (tmp_path / "run" / "retrain" / "log.jsonl").read_text().splitlines()]
    assert [r["test_acc"] for r in log] == rows["retrain"]["test_acc_curve"]


def test_a_run_saved_before_a_setting_existed_resumes_while_it_keeps_its_default(reference_run, tmp_path):
    import shutil

    reference, _ = reference_run
    old = tmp_path / "old"
    shutil.copytree(reference, old)
    saved = json.loads((old / "config.json").read_text())
    del saved["output"]["test_every_epoch"]  # as written by a refimpl without that setting
    (old / "config.json").write_text(json.dumps(saved))
    run_experiment(tiny_config(), old, resume=True, progress=False, echo=None)
    with pytest.raises(SetupError, match=r"differs from the saved one in output\.test_every_epoch"):
        run_experiment(tiny_config(**{"output.test_every_epoch": True}), old, resume=True, progress=False,
                       echo=None)


def test_split_seed_fixes_the_validation_split_across_run_seeds(tmp_path):
    """data.split_seed: runs of two seeds see one validation split (else each seed draws its own)."""
    from refimpl.data import load_dataset

    class Capture:
        def on_train_begin(self, trainer):
            seen.append(trainer.val_data[0].copy())

    seen = []
    common = {"method": "none", "pretrain.epochs": 1, "data.val_fraction": 0.25}
    for seed, split_seed in ((0, 5), (1, 5), (1, None)):
        config = tiny_config(seed=seed, **common, **{"data.split_seed": split_seed})
        run_experiment(config, tmp_path / f"s{seed}-{split_seed}", progress=False, echo=None,
                       hooks=lambda phase: [Capture()])
    fixed = load_dataset("synthetic", val_fraction=0.25, seed=5).x_val
    own = load_dataset("synthetic", val_fraction=0.25, seed=1).x_val
    assert not np.array_equal(fixed, own)  # the seeds do draw different splits
    np.testing.assert_array_equal(seen[0], fixed)
    np.testing.assert_array_equal(seen[1], fixed)
    np.testing.assert_array_equal(seen[2], own)
    with pytest.raises(ValueError, match="data.split_seed"):
        tiny_config(**{"data.split_seed": -1})


def test_admm_rescale_dual_setting_reaches_the_hook(tmp_path, monkeypatch):
    import refimpl.prune

    made = []

    class Recording(refimpl.prune.ADMM):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(refimpl.prune, "ADMM", Recording)
    config = tiny_config(**{"admm.rescale_dual": True, "admm.epochs": 2, "retrain.epochs": 0,
                            "pretrain.epochs": 1})
    run_experiment(config, tmp_path / "run", progress=False, echo=None)
    assert len(made) == 1 and made[0].rescale_dual is True and made[0].updates == 2


@pytest.mark.parametrize("purify_lr", [None, 0.0123])
def test_purification_retrains_at_purify_lr_where_it_is_set(tmp_path, purify_lr):
    """purify.lr: the retraining after purification starts there instead of at retrain.lr."""
    started = {}

    class Capture:
        def __init__(self, phase):
            self.phase = phase

        def on_train_begin(self, trainer):
            started[self.phase.name] = trainer.optimizer.lr

    config = tiny_config(**{"purify.enabled": True, "purify.epochs": 1, "purify.lr": purify_lr,
                            "retrain.schedule": "constant"})
    run_experiment(config, tmp_path / "run", progress=False, echo=None, hooks=lambda phase: [Capture(phase)])
    assert started["retrain"] == config.retrain.lr != 0.0123
    assert started["purify_retrain"] == (config.retrain.lr if purify_lr is None else purify_lr)
    with pytest.raises(ValueError, match="purify.lr"):
        tiny_config(**{"purify.lr": 0.0})
