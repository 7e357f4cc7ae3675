"""Public test utilities: what other implementations use to check themselves against refimpl.

* :func:`refimpl.testing.gradcheck.numerical_gradient` and :func:`~refimpl.testing.gradcheck.check_gradient`:
  centred finite differences in float64 against an analytic gradient;
* :mod:`refimpl.testing.strategies`: Hypothesis strategies for weights, masks and sparsity levels;
* :func:`refimpl.testing.check_projection`: the projection contract (count, ties, dtype, optimality...)
  against any function, with refimpl's plain projections (:mod:`refimpl.projections.reference`) as oracle;
* :func:`refimpl.testing.check_layer`: a foreign layer's forward and backward against refimpl's;
* :func:`refimpl.testing.check_admm_step`: one foreign ADMM W/Z/U iteration against refimpl's;
* :mod:`refimpl.testing.golden`: golden vectors for any language (``refimpl oracle generate|check``);
* :mod:`refimpl.testing.pytest_plugin`: parametrize a test suite over every structure in one line.
"""

from refimpl.testing.admm import AdmmReport, check_admm_step, reference_admm_step
from refimpl.testing.compare import Mismatch, compare_arrays
from refimpl.testing.conformance import PROPERTIES, Failure, ProjectionReport, check_projection
from refimpl.testing.gradcheck import check_gradient, numerical_gradient, relative_error
from refimpl.testing.layers import LAYERS, LayerReport, check_layer

# ``strategies`` needs Hypothesis (a test extra), so it is imported on demand:
# ``from refimpl.testing import strategies``.

__all__ = ["LAYERS", "PROPERTIES", "AdmmReport", "Failure", "LayerReport", "Mismatch", "ProjectionReport",
           "check_admm_step", "check_gradient", "check_layer", "check_projection", "compare_arrays",
           "numerical_gradient", "reference_admm_step", "relative_error"]
