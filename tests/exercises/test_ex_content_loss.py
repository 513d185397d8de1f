"""Exercise ex_content_loss: ``minist.losses.reference.content_loss`` (lesson 04, Eq. 1-2).

The gradient is checked by finite differences of the value, the value against the fused Numba
kernel (a different implementation of the same equation), and both against properties: zero
at ``F = P``, quadratic growth along any direction, 0-d value in ``F``'s dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect, expect_close, expect_gradient, expect_scalar, expect_shape
from gradcheck import numerical_gradient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stored import in_student_version, teacher_values

from minist.losses import kernels_numba
from minist.losses.reference import content_loss

pytestmark = pytest.mark.ex_content_loss

SHAPES = st.sampled_from([(3, 5), (1, 4, 3, 2), (8, 1), (1, 2, 5, 5)])


CAST_P = "cast the target P to F's dtype"


@settings(max_examples=25, deadline=None)
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1))
@example(shape=(3, 5), seed=0)
def test_gradient_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    F, P = rng.standard_normal(shape), rng.standard_normal(shape)
    L, dF = content_loss(F, P)
    inputs = {"F": F, "P": P}
    expect_shape(dF, F.shape, what="dL/dF", inputs=inputs)
    expect(dF.dtype == F.dtype, f"dL/dF is {dF.dtype} for {F.dtype} F: {CAST_P}")
    numeric = numerical_gradient(lambda v: content_loss(v, P)[0], F, np.float64(1.0))
    expect_gradient(dF, numeric, what="dL/dF", inputs=inputs, tol=1e-7)


@settings(max_examples=25, deadline=None)
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["f4", "f8"]))
@example(shape=(3, 5), seed=0, dtype="f8")
def test_equals_the_numba_kernel(shape, seed, dtype):
    if in_student_version():  # there the kernel calls your function: see the stored values
        pytest.skip("the teacher's kernels are not in a student version; "
                    "test_equals_the_teachers_values_on_seeded_inputs compares with them")
    rng = np.random.default_rng(seed)
    F, P = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    L, dF = content_loss(F, P)
    L_k, dF_k = kernels_numba.content_loss(F, P)
    inputs = {"F": F, "P": P}
    expect_scalar(L, F.dtype, what="L", input_name="F",
                  hint="sum in float64, then round once to F's dtype")
    tol = 1e-5 if dtype == "f4" else 1e-12
    expect_close(L, L_k, what="L", against="the Numba kernel's L", inputs=inputs, rtol=tol)
    expect_close(dF, dF_k, what="dL/dF", against="the Numba kernel's", inputs=inputs,
                 rtol=tol, atol=tol)


def test_zero_at_the_target_and_quadratic_along_a_line():
    rng = np.random.default_rng(7)
    P, D = rng.standard_normal((2, 6, 9))
    L0, dF0 = content_loss(P.copy(), P)
    expect(float(L0) == 0.0 and not np.any(dF0),
           f"L = {float(L0):.3g} and dL/dF not all zero at F = P (P {P.shape}): both must be 0")
    L1 = float(content_loss(P + D, P)[0])
    expect(L1 > 0, f"L = {L1:.3g} at F = P + D: a sum of squares must be > 0")
    for t in (0.5, 2.0, -3.0):
        expect_close(content_loss(P + t * D, P)[0], t * t * L1, what=f"L at F = P + {t:g} D",
                     against=f"{t * t:g} L(P + D) (L is quadratic in F - P)",
                     inputs={"P": P, "D": D}, rtol=1e-12)


def test_float64_target_with_float32_features():
    rng = np.random.default_rng(9)
    F, P = rng.standard_normal((4, 6)).astype(np.float32), rng.standard_normal((4, 6))
    L, dF = content_loss(F, P)
    expect_scalar(L, np.float32, what="L", input_name="F with a float64 P", hint=CAST_P)
    expect(dF.dtype == np.float32, f"dL/dF is {dF.dtype} for float32 F with a float64 P: "
           f"{CAST_P}")


def test_does_not_modify_its_inputs():
    rng = np.random.default_rng(8)
    F, P = rng.standard_normal((2, 4, 4))
    F0, P0 = F.copy(), P.copy()
    content_loss(F, P)
    expect(np.array_equal(F, F0) and np.array_equal(P, P0),
           "content_loss modified its input F or P: work on new arrays")


def test_equals_the_teachers_values_on_seeded_inputs():
    for (F, P), (L_t, dF_t) in teacher_values("ex_content_loss", "content_loss"):
        L, dF = content_loss(F, P)
        inputs = {"F": F, "P": P}
        expect_scalar(L, F.dtype, what="L", input_name="F",
                      hint="sum in float64, then round once to F's dtype")
        expect_shape(dF, F.shape, what="dL/dF", inputs=inputs)
        tol = 1e-5 if F.dtype == np.float32 else 1e-12
        expect_close(L, L_t, what="L", against="the teacher's L", inputs=inputs, rtol=tol)
        expect_close(dF, dF_t, what="dL/dF", against="the teacher's", inputs=inputs, rtol=tol,
                     atol=tol)
