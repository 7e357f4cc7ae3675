"""The experiment engine: one orchestrator for every run, sweeps of runs, one results table.

* :func:`run_experiment` (:mod:`refimpl.engine.run`) carries out one
  :class:`~refimpl.config.ExperimentConfig`: ``pretrain → for each progressive step: [ADMM] → hard prune →
  masked retrain → [purify → retrain] → compact → report``, resumable bit for bit at any point.
* :func:`plan_phases` (:mod:`refimpl.engine.plan`) lists the phases; each phase kind is one small function
  in the table :data:`PHASES` (:mod:`refimpl.engine.phases`).
* :class:`RunDir` (:mod:`refimpl.engine.rundir`) owns a run's directory: lock, state, safety rules.
* :mod:`refimpl.engine.artifacts` reads and writes a run's files; :mod:`refimpl.engine.report` its report.
* :func:`load_sweep` / :func:`run_sweep` (:mod:`refimpl.engine.sweep`) expand a sweep file into runs and
  execute them as dask.distributed tasks (:mod:`refimpl.engine.cluster`); :func:`collect_results` /
  :func:`load_results` (:mod:`refimpl.engine.results`) give the one results table every figure reads.
"""

from refimpl.engine.artifacts import load_compact_model
from refimpl.engine.build import build_model_for, build_optimizer, build_schedule
from refimpl.engine.phases import PHASES, PhaseKind, Run, phase_kind
from refimpl.engine.plan import METHOD_STEP, Phase, plan_phases
from refimpl.engine.results import collect_results, format_results, load_results
from refimpl.engine.run import run_experiment
from refimpl.engine.rundir import RunDir, SetupError, run_status
from refimpl.engine.sweep import Sweep, SweepRun, load_sweep, run_sweep

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
    "Sweep",
    "SweepRun",
    "build_schedule",
    "collect_results",
    "format_results",
    "load_compact_model",
    "load_results",
    "load_sweep",
    "phase_kind",
    "plan_phases",
    "run_experiment",
    "run_status",
    "run_sweep",
]
