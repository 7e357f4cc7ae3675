"""refimpl: a NumPy/SciPy reference implementation of structured weight pruning.

Subpackages: :mod:`refimpl.nn` (autograd-free layers), :mod:`refimpl.models`, :mod:`refimpl.train`,
:mod:`refimpl.projections` (exact Euclidean projections onto sparsity sets), :mod:`refimpl.prune` (ADMM,
magnitude pruning, masked retraining), :mod:`refimpl.compact` (unused-path removal), :mod:`refimpl.sparse`
(CSR / block-CSR inference) and :mod:`refimpl.testing` (the oracle's public test utilities).
"""

from refimpl.threads import configure_defaults as _configure_thread_defaults

# Before numba and NumPy load: sleeping numba workers and short OpenBLAS spinning (see refimpl.threads).
_configure_thread_defaults()

__version__ = "0.1.0"
