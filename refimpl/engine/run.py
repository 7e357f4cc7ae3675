"""One run, start to finish: check, set up, run the planned phases, report — resumable at any point.

:func:`run_experiment` is the single orchestrator behind ``refimpl train`` (``method = "none"``),
``refimpl prune``, ``refimpl demo`` and every run of ``refimpl sweep``:

1. **check** the run directory, read-only (:meth:`RunDir.check`: a foreign directory, a run already there,
   a changed configuration on resume);
2. **set up** — load the data, build the model, expand the constraints and check each against its
   parameter's shape, plan the phases — still without writing anything, so a setup error (one line,
   :class:`SetupError`) leaves a new directory absent and an old run resumable;
3. **open** the directory (create it, take its lock, clean stale temporaries, save the configuration);
4. run every phase not yet done (:mod:`refimpl.engine.phases`), each saved before it is marked done;
5. write the report (:mod:`refimpl.engine.report`) and mark the run finished.

Resuming
--------
``resume=True`` skips the phases ``state.json`` lists as done (loading the weights and masks the last of
them wrote) and continues the current phase from its trainer checkpoint, which holds everything its
future depends on (:mod:`refimpl.train.trainer`). Every phase's trainer is seeded from ``(seed, phase
index)`` and weights are stored bit-exactly, so a run interrupted anywhere — in the middle of ADMM, of
retraining, between phases — and resumed ends with **bitwise** the same ``model_masked.npz`` and
``model_compact.npz`` as an uninterrupted one (``tests/test_engine.py``). A resumed run must have the same
configuration as the saved one; resuming a finished run only rewrites its report.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from refimpl.engine.build import build_model_for
from refimpl.engine.phases import Run
from refimpl.engine.plan import Phase, plan_phases
from refimpl.engine.report import write_report
from refimpl.engine.rundir import RunDir, SetupError

__all__ = ["run_experiment"]


def _set_up(config, rundir: RunDir, *, progress: bool, echo, hooks) -> Run:
    """Load the data, build the model, expand and check the constraints; write nothing."""
    from refimpl.data import load_dataset
    from refimpl.prune import expand_constraints

    d = config.data
    try:
        dataset = load_dataset(d.name, d.root, download=d.download, dtype=np.dtype(d.dtype),
                               val_fraction=d.val_fraction, progress=progress, path=d.path,
                               seed=config.seed if d.split_seed is None else d.split_seed)
    except (ValueError, TypeError, FileNotFoundError) as err:  # missing, corrupt or unusable data
        raise SetupError(str(err)) from err
    try:
        model = build_model_for(config, dataset.input_shape, dataset.num_classes)
        constraints = [] if config.method == "none" else expand_constraints(config.admm.constraints, model)
    except (ValueError, TypeError) as err:
        raise SetupError(str(err)) from err
    return Run(config, rundir, dataset, model, constraints, progress=progress, echo=echo, hooks=hooks)


def run_experiment(config, out_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True,
                   echo: Callable[[str], None] | None = print,
                   hooks: Callable[[Phase], Sequence[Any]] | None = None) -> dict:
    """Run every phase of ``config`` into ``out_dir`` and write the report (see the module docstring).

    Parameters
    ----------
    config : ExperimentConfig
    out_dir : path
        The run directory: new or empty, or (with ``resume``) one holding a run of the same configuration.
        A non-empty directory without a refimpl run is refused, never written into.
    resume : bool, default False
        Continue the run in ``out_dir``: finished phases are skipped, the current one continues from its
        checkpoint. Without a run there, start one.
    progress : bool, default True
        tqdm progress bars of the training epochs.
    echo : callable or None, default print
        Receives one line per finished phase and the final report; ``None`` is silent.
    hooks : callable ``phase -> list of hooks``, optional
        Extra trainer hooks (:class:`refimpl.train.Hook`) for each training phase, run after the
        phase's own (logging, instrumentation, tests). Called once per training phase.

    Returns
    -------
    dict
        The report (also written to ``report.json``): accuracies per phase, parameters, MACs,
        compression, per-layer rows and sparsity.

    Raises
    ------
    SetupError
        Before any training, for every problem of the settings, the directory or the data (one line).
    """
    from refimpl.config import ExperimentConfig, to_toml
    from refimpl.threads import thread_limit

    if not isinstance(config, ExperimentConfig):
        raise TypeError(f"config must be an ExperimentConfig, got {type(config).__name__}")
    echo = echo or (lambda line: None)
    rundir = RunDir(Path(out_dir))
    settings = config.to_dict()
    defaults = ExperimentConfig().to_dict()  # for runs saved before a setting existed
    rundir.check(settings, resume=resume, defaults=defaults)
    with thread_limit(config.threads):
        run = _set_up(config, rundir, progress=progress, echo=echo, hooks=hooks)
        phases = plan_phases(config, run.constraints)
        run.state = rundir.open(settings, to_toml(config), resume=resume, defaults=defaults)
        try:
            done = [p for p in phases if p.name in run.state["phases"]]
            if [p.name for p in phases[: len(done)]] != [p.name for p in done] \
                    or len(done) != len(run.state["phases"]):
                raise SetupError(f"{rundir.path / 'state.json'} lists phases this plan does not have, or "
                                 "out of order; it was not written by this configuration")
            if done:
                run.restore(done)
                echo(f"resuming {rundir.path}: {', '.join(p.name for p in done)} done")
            for phase in phases[len(done):]:
                run.run_phase(phase)
            # Wall time of the phases, summed over every invocation (a resumed run counts each once).
            seconds = sum(run.state["phases"][p.name]["seconds"] for p in phases)
            report = write_report(run, phases, seconds)
            run.state["finished"] = True
            rundir.write_state(run.state)
        finally:
            rundir.close()
    echo(report["text"])
    return report
