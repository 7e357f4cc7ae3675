"""The experiment engine: one orchestrator for every run, sweeps of runs, one results table.

* :func:`run_experiment` (:mod:`refimpl.engine.run`) carries out one
  :class:`~refimpl.config.ExperimentConfig`: ``pretrain → for each progressive step: [ADMM] → hard prune →
  masked retrain → [purify → retrain] → compact → report``, resumable bit for bit at any point.
* :func:`plan_phases` (:mod:`refimpl.engine.plan`) lists the phases; each phase kind is one small function
  in the table :data:`PHASES` (:mod:`refimpl.engine.phases`).
* :class:`RunDir` (:mod:`refimpl.engine.rundir`) owns a run's directory: lock, state, safety rules.
* :mod:`refimpl.engine.artifacts` reads and writes a run's files; :mod:`refimpl.engine.report` its report.
"""

from refimpl.engine.artifacts import load_compact_model
from refimpl.engine.build import build_model_for, build_optimizer, build_schedule
from refimpl.engine.phases import PHASES, PhaseKind, Run, phase_kind
from refimpl.engine.plan import METHOD_STEP, Phase, plan_phases
from refimpl.engine.run import run_experiment
from refimpl.engine.rundir import RunDir, SetupError, run_status

__all__ = [
    "METHOD_STEP",
    "PHASES",
    "Phase",
    "PhaseKind",
    "Run",
    "RunDir",
    "SetupError",
    "build_model_for",
    "build_optimizer",
    "build_schedule",
    "load_compact_model",
    "phase_kind",
    "plan_phases",
    "run_experiment",
    "run_status",
]
