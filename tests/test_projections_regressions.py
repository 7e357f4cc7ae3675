"""Named regression cases: every failure Hypothesis shrank while the projections were written, kept forever.

Each case records the shrunk input, what went wrong, and the property that caught it. They run under both
engines.
"""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.projections import PROJECTIONS

CASES = {
    # test_group_idempotent_and_fixed_points[shapes]: the lone column's squared norm (3.5e-252)**2
    # underflowed to 0 and tied with the all-zero columns; the tie rule then kept column 0 and dropped
    # the only nonzero column, so a point of the set did not come back unchanged. Fixed by the
    # exact-range (F * 2**E) scores of _select.tile_scores.
    "underflow_lone_tiny_column": dict(
        name="shapes", w=np.array([[0.0, 0.0, 0.0, 0.0, 3.54319152e-252]]), args=(), keep=1,
        expected=np.array([[0.0, 0.0, 0.0, 0.0, 3.54319152e-252]]),
    ),
    # The mirror image (written with the fix, same mechanism): squares of 1e200 and 1e300 both overflow
    # to inf and would tie, keeping the smaller filter by index.
    "overflow_huge_filters": dict(
        name="filters", w=np.array([[1e200], [1e300]]), args=(), keep=1,
        expected=np.array([[0.0], [1e300]]),
    ),
    # test_group_idempotent_and_fixed_points[blocks] (float32): a -0.0 block ties with a +0.0 block of
    # lower index and is dropped, so it comes back as +0.0. That is the documented rule (dropped entries
    # are exactly +0); the test was wrong to compare bits for fixed points and now compares values.
    "negative_zero_block_loses_tie": dict(
        name="blocks", w=np.array([[0.0, -0.0]], dtype=np.float32), args=((1, 1),), keep=1,
        expected=np.array([[0.0, 0.0]], dtype=np.float32),
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_regression(case, engine):
    project_fn, mask_fn = PROJECTIONS[case["name"]]
    z = project_fn(case["w"], *case["args"], keep=case["keep"], engine=engine)
    assert z.dtype == case["w"].dtype
    assert np.array_equal(z, case["expected"])
    assert not np.any(np.signbit(z[z == 0]))           # dropped entries are exactly +0
    mask = mask_fn(case["w"], *case["args"], keep=case["keep"], engine=engine)
    assert int(mask.sum()) >= 1 and np.array_equal(np.where(mask, case["w"], 0), z)
