"""Public test utilities: what other implementations use to check themselves against refimpl.

* :func:`refimpl.testing.gradcheck.numerical_gradient` and :func:`~refimpl.testing.gradcheck.check_gradient`:
  centred finite differences in float64 against an analytic gradient;
* :mod:`refimpl.testing.strategies`: Hypothesis strategies for weights, masks and sparsity levels;
* :func:`refimpl.testing.check_projection`: run the projection property suite against any function.
"""
