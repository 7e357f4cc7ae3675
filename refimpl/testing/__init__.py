"""Public test utilities: what other implementations use to check themselves against refimpl.

* :func:`refimpl.testing.gradcheck.numerical_gradient` and :func:`~refimpl.testing.gradcheck.check_gradient`:
  centred finite differences in float64 against an analytic gradient;
* :mod:`refimpl.testing.strategies`: Hypothesis strategies for weights, masks and sparsity levels;
* :func:`refimpl.testing.check_projection`: run the projection property suite against any function.
"""

from refimpl.testing.conformance import Failure, ProjectionReport, check_projection
from refimpl.testing.gradcheck import check_gradient, numerical_gradient, relative_error

# ``strategies`` needs Hypothesis (a test extra), so it is imported on demand:
# ``from refimpl.testing import strategies``.

__all__ = ["Failure", "ProjectionReport", "check_gradient", "check_projection", "numerical_gradient",
           "relative_error"]
