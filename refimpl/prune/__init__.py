"""Pruning methods: ADMM (StructADMM), hard pruning + masked retraining, magnitude and progressive pruning.

Every method is configured with the same :class:`~refimpl.prune.constraints.Constraint` objects (which
parameter, which structure from :data:`refimpl.projections.PROJECTIONS`, how sparse; a config's
``[[admm.constraints]]`` tables become constraints for a model through
:func:`~refimpl.prune.constraints.expand_constraints`) and plugs into the trainer through hooks, so the
trainer knows nothing about pruning:

* :class:`~refimpl.prune.admm.ADMM` — penalty gradient after backward, Z/U update every epoch or step;
* :func:`~refimpl.prune.masking.hard_prune` and :class:`~refimpl.prune.masking.MaskedRetraining` — fix the
  support, keep pruned weights (and their optimizer state) at exactly zero;
* :class:`~refimpl.prune.group_lasso.GroupLasso` — SSL group lasso: a proximal group soft-threshold
  (:func:`~refimpl.prune.group_lasso.prox_group_lasso`) after every optimizer step;
* :class:`~refimpl.prune.gradual.GradualPruning` — gradual pruning (Zhu & Gupta): the mask tightens on a
  cubic schedule (:func:`~refimpl.prune.gradual.gradual_sparsity`) during training, no penalty;
* :func:`~refimpl.prune.magnitude.magnitude_prune` and :func:`~refimpl.prune.magnitude.iterative_targets`
  — the one-shot / iterative baseline;
* :func:`~refimpl.prune.progressive.stage_constraints` — the targets of progressive ADMM's steps;
* :func:`~refimpl.prune.unified_retraining.hard_prune_unified` and
  :class:`~refimpl.prune.unified_retraining.UnifiedRetraining` — weight unification's retraining: a
  unified block trains only its shared magnitude (:class:`~refimpl.prune.unified_retraining.UnifiedBlocks`).

The experiment engine (:mod:`refimpl.engine`) runs them as phases: ADMM → hard prune → masked retraining,
once per progressive step.
"""

from refimpl.prune.admm import (
    ADMM,
    admm_penalty,
    admm_penalty_gradient,
    admm_residuals,
    admm_update,
    augmented_loss,
    next_rho,
)
from refimpl.prune.constraints import (
    PARAM_SHORTCUTS,
    Constraint,
    check_unified_alone,
    constraints_by_param,
    expand_constraints,
    parse_constraints,
    select_params,
)
from refimpl.prune.gradual import (
    GradualPruning,
    constraint_at,
    final_sparsity,
    gradual_sparsity,
    steps_for_epochs,
)
from refimpl.prune.group_lasso import (
    GROUP_LASSO_STRUCTURES,
    GroupLasso,
    group_index,
    group_lasso_penalty,
    group_norms,
    group_tile,
    prox_group_lasso,
)
from refimpl.prune.magnitude import (
    global_magnitude_prune,
    iterative_targets,
    magnitude_prune,
    split_budget,
)
from refimpl.prune.masking import (
    MaskedRetraining,
    apply_masks,
    combine_masks,
    hard_prune,
    masks_sparsity,
)
from refimpl.prune.progressive import stage_constraints
from refimpl.prune.unified_retraining import UnifiedBlocks, UnifiedRetraining, hard_prune_unified

__all__ = [
    "ADMM",
    "GROUP_LASSO_STRUCTURES",
    "PARAM_SHORTCUTS",
    "Constraint",
    "GradualPruning",
    "GroupLasso",
    "MaskedRetraining",
    "UnifiedBlocks",
    "UnifiedRetraining",
    "admm_penalty",
    "admm_penalty_gradient",
    "admm_residuals",
    "admm_update",
    "apply_masks",
    "augmented_loss",
    "combine_masks",
    "check_unified_alone",
    "constraint_at",
    "constraints_by_param",
    "expand_constraints",
    "final_sparsity",
    "global_magnitude_prune",
    "gradual_sparsity",
    "group_index",
    "group_lasso_penalty",
    "group_norms",
    "group_tile",
    "hard_prune",
    "hard_prune_unified",
    "iterative_targets",
    "magnitude_prune",
    "masks_sparsity",
    "next_rho",
    "parse_constraints",
    "prox_group_lasso",
    "select_params",
    "split_budget",
    "stage_constraints",
    "steps_for_epochs",
]
