"""Exercise ex_style_loss: ``minist.losses.reference.style_layer_loss`` (lesson 05, Eq. 4, 6).

The gradient is checked by finite differences of the value in float64, the value and gradient
against the Numba kernels' version (``kernels_numba.style_layer_loss``, a different
implementation), and both against properties: ``E_l = 0`` and no gradient when ``A`` is the
features' own Gram, ``E_l`` unchanged when the positions are repeated (the normalisation), and
an activation ``(1, N, H, W)`` gets a gradient of its own shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect, expect_close, expect_gradient, expect_scalar, expect_shape, named
from gradcheck import numerical_gradient
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stored import in_student_version, teacher_values

from minist.losses import kernels_numba
from minist.losses.reference import style_layer_loss

pytestmark = pytest.mark.ex_style_loss

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)


def _target(N, rng):
    """A style Gram A: symmetric positive semi-definite, built from random features."""
    S = rng.standard_normal((N, 2 * N + 1))
    return S @ S.T / S.shape[1]


CAST_A = "cast the target A to F's dtype"


@FAST
@given(N=st.integers(1, 5), M=st.integers(1, 12), seed=SEEDS)
@example(N=3, M=5, seed=0)  # first, sizes whose factors cannot be confused
def test_gradient_matches_finite_differences(N, M, seed):
    rng = np.random.default_rng(seed)
    F, A = rng.standard_normal((N, M)), _target(N, rng)
    E, dF = style_layer_loss(F, A)
    inputs = {"F": F, "A": A}
    expect_scalar(E, F.dtype, what="E", input_name="F", hint=CAST_A)
    expect_shape(dF, F.shape, what="dE/dF", inputs=inputs)
    expect(dF.dtype == F.dtype, f"dE/dF is {dF.dtype} for {F.dtype} F: {CAST_A}")
    expect(float(E) >= 0, f"E = {float(E):.3g} < 0, on F {F.shape}: a sum of squares")
    numeric = numerical_gradient(lambda v: style_layer_loss(v, A)[0], F, np.float64(1.0))
    expect_gradient(dF, numeric, what="dE/dF", inputs=inputs, tol=1e-6,
                    factors={"N": N, "M": M})


@FAST
@given(N=st.integers(1, 8), M=st.integers(1, 40), seed=SEEDS)
@example(N=3, M=5, seed=0)
def test_equals_the_numba_kernel_version(N, M, seed):
    if in_student_version():  # there the kernel calls your function: see the stored values
        pytest.skip("the teacher's kernels are not in a student version; "
                    "test_equals_the_teachers_values_on_seeded_inputs compares with them")
    rng = np.random.default_rng(seed)
    F, A = rng.standard_normal((N, M)), _target(N, rng)
    E, dF = style_layer_loss(F, A)
    E_k, dF_k = kernels_numba.style_layer_loss(F, A)
    inputs, factors = {"F": F, "A": A}, {"N": N, "M": M}
    expect_close(E, E_k, what="E", against="the Numba kernel's E", inputs=inputs, rtol=1e-10,
                 factors=factors)
    expect_close(dF, dF_k, what="dE/dF", against="the Numba kernel's", inputs=inputs,
                 rtol=1e-10, atol=1e-14, factors=factors)


@named("zero when the target is the features' own Gram")
def test_zero_when_the_target_is_the_features_own_gram():
    F = np.random.default_rng(11).standard_normal((6, 20))
    own = F @ F.T / F.shape[1]  # Eq. 3, normalised by M as minist does
    E, dF = style_layer_loss(F, own)
    expect(abs(float(E)) < 1e-24,
           f"E = {float(E):.3g}, not 0, when A is F's own Gram F F^T / M (F {F.shape}): "
           "is your G normalised by 1/M?")
    expect_close(dF, np.zeros_like(dF), what="dE/dF", against="zero (A is F's own Gram)",
                 inputs={"F": F}, rtol=0, atol=1e-14)


def test_repeating_the_positions_changes_nothing_but_spreads_the_gradient():
    rng = np.random.default_rng(12)
    F, A = rng.standard_normal((4, 7)), _target(4, rng)
    E, dF = style_layer_loss(F, A)
    E2, dF2 = style_layer_loss(np.tile(F, (1, 3)), A)
    inputs = {"F": F, "A": A}
    expect_close(E2, E, what="E of F with every position repeated 3 times",
                 against="E of F", inputs=inputs, rtol=1e-12, factors={"repeats": 3})
    # three copies of each position share its gradient: each gets a third
    expect_close(dF2, np.tile(dF, (1, 3)) / 3, what="dE/dF of the repeated F",
                 against="a third of dE/dF at each copy", inputs=inputs, rtol=1e-10,
                 atol=1e-14, factors={"repeats": 3})


def test_activation_shape_in_gradient_shape_out():
    rng = np.random.default_rng(13)
    x, A = rng.standard_normal((1, 3, 4, 5)), _target(3, rng)
    E, dx = style_layer_loss(x, A)
    expect_shape(dx, x.shape, what="dE/dx of an activation", inputs={"x": x},)
    E_m, dF = style_layer_loss(x.reshape(3, 20), A)
    expect_close(E, E_m, what="E of the activation", against="E of its feature matrix",
                 inputs={"x": x}, rtol=1e-12)
    expect_close(dx.reshape(3, 20), dF, what="dE/dx of the activation",
                 against="dE/dF of its feature matrix", inputs={"x": x}, rtol=1e-12, atol=1e-15)
    E32, _ = style_layer_loss(x.astype(np.float32), A)  # A stays float64
    expect_scalar(E32, np.float32, what="E", input_name="F with a float64 A", hint=CAST_A)


def test_equals_the_teachers_values_on_seeded_inputs():
    for (F, A), (E_t, dF_t) in teacher_values("ex_style_loss", "style_layer_loss"):
        E, dF = style_layer_loss(F, A)
        inputs, factors = {"F": F, "A": A}, {"N": F.shape[0], "M": F.shape[1]}
        expect_shape(dF, F.shape, what="dE/dF", inputs=inputs)
        expect_close(E, E_t, what="E", against="the teacher's E", inputs=inputs, rtol=1e-10,
                     factors=factors)
        expect_close(dF, dF_t, what="dE/dF", against="the teacher's", inputs=inputs,
                     rtol=1e-10, atol=1e-14, factors=factors)
