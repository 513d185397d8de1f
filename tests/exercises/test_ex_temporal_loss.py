"""Exercise ex_temporal_loss: ``minist.temporal.temporal_loss`` (lesson 12, section 4: the
short-term temporal loss of Ruder et al. 2016 and its gradient).

The gradient is checked by finite differences in float64; the value by hand on a literal case
and as the mean of the squared differences when every weight is 1; and both by properties that
pin them down: zero (and no gradient) when the image is the warped frame, quadratic in the
difference (its gradient linear), no pull at a pixel whose weight is 0, the weights shared by
the channels; dtypes and shapes; and the teacher's values on seeded inputs (the equation written
as loops, in the teacher's tree).

A failure says in one line what is wrong when that is cheap to tell: a factor (:math:`D`,
:math:`C`, 2), the wrong sign, the wrong dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import (
    CheckError,
    expect,
    expect_close,
    expect_dtype,
    expect_gradient,
    expect_scalar,
    expect_shape,
    named,
)
from gradcheck import numerical_gradient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stored import teacher_values

from minist.errors import MinistError
from minist.temporal import temporal_loss

pytestmark = pytest.mark.ex_temporal_loss

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)
CAST = "sum in float64, round once to x's dtype; cast warped and the weights to x's dtype"


def _problem(C, H, W, rng, zeros=0.3):
    """x, the warped frame and weights in [0, 1], about ``zeros`` of them 0."""
    x = rng.uniform(size=(1, C, H, W))
    warped = rng.uniform(size=(1, C, H, W))
    weights = rng.uniform(size=(H, W)) * (rng.uniform(size=(H, W)) >= zeros)
    return x, warped, weights


def _factors(C, H, W):
    return {"D": C * H * W, "C": C, "HW": H * W}


@FAST
@given(C=st.integers(1, 3), H=st.integers(1, 5), W=st.integers(1, 5), seed=SEEDS)
@example(C=3, H=3, W=5, seed=0)  # first, sizes whose factors cannot be confused
def test_gradient_matches_finite_differences(C, H, W, seed):
    x, warped, weights = _problem(C, H, W, np.random.default_rng(seed))
    L, grad = temporal_loss(x, warped, weights)
    inputs = {"x": x, "warped": warped, "c": weights}
    expect_scalar(L, x.dtype, what="L_temporal", input_name="x", hint=CAST)
    expect_shape(grad, x.shape, what="dL/dx", inputs=inputs)
    expect(grad.dtype == x.dtype, f"dL/dx is {grad.dtype} for {x.dtype} x: {CAST}")
    expect(float(L) >= 0, f"L_temporal = {float(L):.3g} < 0, on x {x.shape}: a weighted sum of "
           "squares with weights >= 0")
    numeric = numerical_gradient(lambda v: temporal_loss(v, warped, weights)[0], x,
                                 np.float64(1.0))
    expect_gradient(grad, numeric, what="dL/dx", inputs=inputs, tol=1e-7,
                    factors=_factors(C, H, W))


@named("zero when x is the warped frame, quadratic in the difference")
@FAST
@given(C=st.integers(1, 3), H=st.integers(1, 5), W=st.integers(1, 5), seed=SEEDS,
       k=st.sampled_from([-2.0, 0.5, 3.0]))
@example(C=3, H=3, W=5, seed=0, k=3.0)
def test_zero_when_x_is_the_warped_frame_and_quadratic_in_the_difference(C, H, W, seed, k):
    x, warped, weights = _problem(C, H, W, np.random.default_rng(seed))
    inputs = {"x": x, "warped": warped, "c": weights}
    L0, grad0 = temporal_loss(warped.copy(), warped, weights)
    expect(float(L0) == 0.0 and not np.any(grad0), f"L_temporal = {float(L0):.3g} (or a "
           f"non-zero gradient) when x is the warped frame itself, on {x.shape}: both must be 0")
    d = x - warped
    L1, grad1 = temporal_loss(warped + d, warped, weights)
    Lk, gradk = temporal_loss(warped + k * d, warped, weights)
    expect_close(Lk, k * k * L1, what=f"L_temporal of x = warped + {k:g} d",
                 against=f"{k * k:g} x L_temporal of warped + d (a square)", inputs=inputs,
                 rtol=1e-10, atol=1e-300)
    expect_close(gradk, k * grad1, what=f"dL/dx at warped + {k:g} d",
                 against=f"{k:g} x dL/dx at warped + d (linear in the difference)",
                 inputs=inputs, rtol=1e-10, atol=1e-15)


def test_by_hand_and_the_mean_when_every_weight_is_one():
    """x = [[1, 2], [3, 4]], warped = [[0, 2], [1, 0]], c = [[1, 1], [0.5, 0]] (D = 4):
    L = (1 * 1 + 1 * 0 + 0.5 * 4 + 0 * 16) / 4 = 0.75. With c = 1 everywhere L is the mean of
    the squared differences over the C x H x W numbers."""
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    warped = np.array([[[[0.0, 2.0], [1.0, 0.0]]]])
    c = np.array([[1.0, 1.0], [0.5, 0.0]])
    L, _ = temporal_loss(x, warped, c)
    expect_close(L, 0.75, what="L_temporal", against="(1/D) sum c (x - warped)^2 = 0.75 by hand",
                 inputs={"x": x, "warped": warped, "c": c}, rtol=1e-15, factors={"D": 4})
    rng = np.random.default_rng(5)
    C, H, W = 3, 4, 5
    x, warped, _ = _problem(C, H, W, rng)
    L, _ = temporal_loss(x, warped, np.ones((H, W)))
    expect_close(L, np.mean((x - warped) ** 2), what="L_temporal with c = 1",
                 against="the mean of (x - warped)^2 over the D = C H W numbers",
                 inputs={"x": x, "warped": warped}, rtol=1e-12, factors=_factors(C, H, W))


@named("a pixel of weight 0 gets no pull, and the weights are shared by the channels")
def test_a_pixel_of_weight_zero_gets_no_pull_and_the_weights_are_shared_by_the_channels():
    rng = np.random.default_rng(6)
    C, H, W = 3, 4, 5
    x, warped, weights = _problem(C, H, W, rng, zeros=0.4)
    weights[0, 0] = 0.0
    L, grad = temporal_loss(x, warped, weights)
    leak = [(int(i), int(j)) for i, j in zip(*np.nonzero(weights == 0), strict=True)
            if np.any(grad[0, :, i, j])]
    expect(not leak, f"dL/dx is not 0 at the pixels {leak[:4]} whose weight c is 0 (x {x.shape}):"
           " where the flow cannot be trusted the previous frame does not pull")
    changed = x.copy()
    changed[0, :, weights == 0] += 5.0  # what happens where c = 0 does not count
    expect_close(temporal_loss(changed, warped, weights)[0], L, what="L_temporal after changing "
                 "x where c = 0", against="L_temporal before", inputs={"x": x}, rtol=1e-12)
    per_channel = sum(float(temporal_loss(x[:, [k]], warped[:, [k]], weights)[0])
                      for k in range(C)) / C
    expect_close(L, per_channel, what="L_temporal of the C channels", against="the mean of the "
                 "channels' own losses, each with the same (H, W) weights", inputs={"x": x},
                 rtol=1e-12, factors={"C": C})


def test_dtypes_and_shapes_that_disagree():
    rng = np.random.default_rng(7)
    x, warped, weights = _problem(3, 4, 5, rng)
    x32 = x.astype(np.float32)
    L, grad = temporal_loss(x32, warped, weights)  # warped and weights stay float64
    expect_scalar(L, np.float32, what="L_temporal", input_name="x with float64 warped and c",
                  hint=CAST)
    expect_dtype(grad, np.float32, what="dL/dx", input_name="x with float64 warped and c",
                 hint=CAST)
    expect_close(L, temporal_loss(x, warped, weights)[0], what="L_temporal of float32 x",
                 against="the float64 one", inputs={"x": x32}, rtol=1e-5)
    for bad_warped, bad_weights, what in (
            (warped[:, :2], weights, "warped (1, 2, 4, 5) for x (1, 3, 4, 5)"),
            (warped, weights.T, "weights (5, 4) for x (1, 3, 4, 5)"),
            (warped, weights[None], "weights (1, 4, 5) for x (1, 3, 4, 5)")):
        try:
            temporal_loss(x, bad_warped, bad_weights)
        except MinistError as err:
            expect("temporal_loss" in str(err), f"the error for {what} does not name "
                   f"temporal_loss: {err}")
            continue
        raise CheckError(f"temporal_loss accepted {what}: raise a one-line MinistError that "
                         "names temporal_loss")


def test_equals_the_teachers_values_on_seeded_inputs():
    for (x, warped, weights), (L_t, grad_t) in teacher_values("ex_temporal_loss",
                                                              "temporal_loss"):
        inputs = {"x": x, "warped": warped, "c": weights}
        tol = 1e-5 if x.dtype == np.float32 else 1e-12
        L, grad = temporal_loss(x, warped, weights)
        expect_scalar(L, x.dtype, what="L_temporal", input_name="x", hint=CAST)
        expect_shape(grad, x.shape, what="dL/dx", inputs=inputs)
        factors = _factors(*x.shape[1:])
        expect_close(L, L_t, what="L_temporal", against="the teacher's", inputs=inputs,
                     rtol=tol, atol=1e-300, factors=factors)
        expect_close(grad, grad_t, what="dL/dx", against="the teacher's", inputs=inputs,
                     rtol=tol, atol=tol * 1e-3, factors=factors)
