"""Behaviour kept: two small style transfers give the losses and images recorded before the
driver was restructured (tests/trajectory.py made the record, at commit 0e337d5).

On the machine, NumPy/BLAS and thread counts of the record, the same code and seed must give the
same bits (the README's reproducibility promise). Elsewhere BLAS sums in another order, and
L-BFGS carries such differences along, so the comparison there has a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from trajectory import CASES, RECORD, fingerprint, run_case


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_losses_and_image_as_recorded(case):
    record = np.load(RECORD)
    got = run_case(case)
    same_machine = str(record["fingerprint"]) == fingerprint()
    for key, value in got.items():
        expected = record[key]
        assert value.shape == expected.shape, key
        if same_machine:
            np.testing.assert_array_equal(value, expected, err_msg=key)
        elif key.endswith("_losses"):
            np.testing.assert_allclose(value, expected, rtol=1e-3, atol=1e-9, err_msg=key)
        else:
            np.testing.assert_allclose(value, expected, rtol=0, atol=2 / 255, err_msg=key)
