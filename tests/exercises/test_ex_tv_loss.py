"""Exercise ex_tv_loss: ``minist.losses.reference.tv_loss`` (lesson 06).

The gradient is checked by finite differences in float64, value and gradient against the fused
Numba kernel (``kernels_numba.tv_loss``, a different implementation), and both against
properties: zero for a flat image, unchanged by adding a constant (so the gradient sums to zero
over each channel), a ramp of slope 1 costs one per difference.
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
from minist.losses.reference import tv_loss

pytestmark = pytest.mark.ex_tv_loss

FAST = settings(max_examples=25, deadline=None)
SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6))


@FAST
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1))
@example(shape=(1, 2, 3, 5), seed=0)
def test_gradient_matches_finite_differences(shape, seed):
    x = np.random.default_rng(seed).uniform(0, 1, shape)
    L, grad = tv_loss(x)
    inputs = {"x": x}
    expect_scalar(L, x.dtype, what="L_TV", input_name="x")
    expect_shape(grad, x.shape, what="dL_TV/dx", inputs=inputs)
    expect(grad.dtype == x.dtype, f"dL_TV/dx is {grad.dtype} for {x.dtype} x")
    numeric = numerical_gradient(lambda v: tv_loss(v)[0], x, np.float64(1.0))
    expect_gradient(grad, numeric, what="dL_TV/dx", inputs=inputs, tol=1e-7)


@FAST
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(["f4", "f8"]))
@example(shape=(1, 2, 3, 5), seed=0, dtype="f8")
def test_equals_the_numba_kernel(shape, seed, dtype):
    if in_student_version():  # there the kernel calls your function: see the stored values
        pytest.skip("the teacher's kernels are not in a student version; "
                    "test_equals_the_teachers_values_on_seeded_inputs compares with them")
    x = np.random.default_rng(seed).uniform(0, 1, shape).astype(dtype)
    L, grad = tv_loss(x)
    L_k, grad_k = kernels_numba.tv_loss(x)
    tol = 1e-5 if dtype == "f4" else 1e-12
    expect_scalar(L, x.dtype, what="L_TV", input_name="x",
                  hint="sum in float64, then round once to x's dtype")
    expect_close(L, L_k, what="L_TV", against="the Numba kernel's", inputs={"x": x}, rtol=tol,
                 atol=tol)
    expect_close(grad, grad_k, what="dL_TV/dx", against="the Numba kernel's", inputs={"x": x},
                 rtol=tol, atol=tol)


def test_flat_image_costs_nothing_and_constants_do_not_matter():
    rng = np.random.default_rng(14)
    flat = np.full((1, 3, 5, 4), 0.3)
    L, grad = tv_loss(flat)
    expect(float(L) == 0.0 and not np.any(grad),
           f"L_TV = {float(L):.3g} or a non-zero gradient for a flat image: both must be 0")
    x = rng.uniform(0, 1, (2, 3, 5, 4))
    L, grad = tv_loss(x)
    expect_close(tv_loss(x + 0.25)[0], L, what="L_TV of x + 0.25", against="L_TV of x",
                 inputs={"x": x}, rtol=1e-12)
    expect_close(grad.sum(axis=(2, 3)), np.zeros((2, 3)), what="sum of dL_TV/dx per channel",
                 against="0 (adding a constant changes nothing)", inputs={"x": x}, rtol=0,
                 atol=1e-12)


def test_ramp_costs_one_per_horizontal_difference():
    N, C, H, W = 2, 3, 4, 6
    ramp = np.broadcast_to(np.arange(W, dtype=np.float64), (N, C, H, W)).copy()
    L, _ = tv_loss(ramp)  # no vertical change; W - 1 unit steps in each of N*C*H rows
    expect_close(L, N * C * H * (W - 1), what="L_TV of a ramp of slope 1 along W",
                 against=f"one per difference, N C H (W - 1) = {N * C * H * (W - 1)}",
                 inputs={"x": ramp}, rtol=0, factors={"N": N, "C": C, "H": H})
    L_t, _ = tv_loss(np.ascontiguousarray(ramp.transpose(0, 1, 3, 2)))  # the same, vertically
    expect_close(L_t, L, what="L_TV of the transposed ramp", against="L_TV of the ramp",
                 inputs={"x": ramp}, rtol=0)


def test_equals_the_teachers_values_on_seeded_inputs():
    for (x,), (L_t, grad_t) in teacher_values("ex_tv_loss", "tv_loss"):
        L, grad = tv_loss(x)
        tol = 1e-5 if x.dtype == np.float32 else 1e-12
        expect_scalar(L, x.dtype, what="L_TV", input_name="x",
                      hint="sum in float64, then round once to x's dtype")
        expect_shape(grad, x.shape, what="dL_TV/dx", inputs={"x": x})
        expect_close(L, L_t, what="L_TV", against="the teacher's", inputs={"x": x}, rtol=tol,
                     atol=tol)
        expect_close(grad, grad_t, what="dL_TV/dx", against="the teacher's", inputs={"x": x},
                     rtol=tol, atol=tol)
