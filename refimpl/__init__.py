"""refimpl: a NumPy/SciPy reference implementation of structured weight pruning.

Subpackages: :mod:`refimpl.nn` (autograd-free layers), :mod:`refimpl.models`, :mod:`refimpl.train`,
:mod:`refimpl.projections` (exact Euclidean projections onto sparsity sets), :mod:`refimpl.prune` (ADMM,
magnitude pruning, masked retraining), :mod:`refimpl.compact` (unused-path removal), :mod:`refimpl.sparse`
(CSR / block-CSR inference) and :mod:`refimpl.testing` (the oracle's public test utilities).
"""

from refimpl.memory import retain_freed_memory as _retain_freed_memory
from refimpl.memory import retain_requested as _retain_requested
from refimpl.threads import configure_defaults as _configure_thread_defaults

# Before numba and NumPy load: sleeping numba workers and short OpenBLAS spinning (see refimpl.threads).
_configure_thread_defaults()
# Large arrays are allocated again at every training step: keep freed memory for reuse instead of
# faulting in fresh zeroed pages each time (see refimpl.memory; REFIMPL_RETAIN_MEMORY=0 turns it off).
if _retain_requested():
    _retain_freed_memory()

__version__ = "0.1.0"
