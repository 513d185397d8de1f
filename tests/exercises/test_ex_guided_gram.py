"""Exercise ex_guided_gram: ``minist.losses.reference.guided_gram_matrix`` and
``guided_style_layer_loss`` (lesson 11, spatial control, Gatys et al. 2017 §4).

The gradient is checked by finite differences of the value in float64, with guides that are 0
at some positions; both functions against the Numba kernels applied to :math:`F \\circ T` (a
different implementation: the guided Gram of :math:`F` is the plain Gram of :math:`F \\circ T`,
and the chain rule multiplies the plain gradient by :math:`T` once more); and against
properties: a guide of ones changes nothing, a normalised 0/1 guide gives the Gram of the
region's positions alone, positions where :math:`T = 0` get no gradient, and an activation
``(1, N, H, W)`` with an ``(H, W)`` guide gets a gradient of its own shape.

A failure says in one line what is wrong when that is cheap to tell: a factor (:math:`N`,
:math:`M`), the guide entering the Gram once instead of twice, a gradient with one factor
:math:`T_k` per column too few or too many, the wrong dtype.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import (
    CheckError,
    compare,
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
from stored import in_student_version, teacher_values

from minist.losses import kernels_numba
from minist.losses.reference import guided_gram_matrix, guided_style_layer_loss

pytestmark = pytest.mark.ex_guided_gram

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)
CAST = "cast A and T to F's dtype"


def _problem(N, M, rng, zeros=0.3):
    """Features F, a style Gram A (symmetric PSD) and a guide T >= 0, about ``zeros`` of it 0."""
    F = rng.standard_normal((N, M))
    S = rng.standard_normal((N, 2 * N + 1))
    T = rng.uniform(0.2, 1.5, M) * (rng.uniform(size=M) >= zeros)
    return F, S @ S.T / S.shape[1], T


def expect_guided_gram(G, F, T, inputs) -> None:
    """``G`` is the plain Gram of F o T (the Numba loops); else say how the guide entered."""
    __tracebackhide__ = True
    want = kernels_numba.gram_matrix_numba(F * T)
    if compare(G, want, rtol=1e-12, atol=1e-13) is not None:
        once = (F * T) @ F.T / F.shape[1]  # position k weighted by T_k, not T_k^2
        if compare(G, once, rtol=1e-12, atol=1e-13) is None:
            raise CheckError("G_T vs the Gram of F o T: your G_T weights position k by T_k, not "
                             "T_k^2: the guide multiplies F, and the Gram holds F twice")
    expect_close(G, want, what="G_T", against="the Gram of F o T, written as loops "
                 "(kernels_numba.gram_matrix_numba)", inputs=inputs, rtol=1e-12, atol=1e-13,
                 factors={"N": F.shape[0], "M": F.shape[1]})


def t_factor_mistake(dF, want, T, tol: float) -> str | None:
    """"lacks" or "has one too many": a factor T_k per column k, if that is what differs."""
    scale = float(np.max(np.abs(want), initial=0.0))
    inside = T != 0
    if scale == 0 or compare(dF, want, rtol=tol, atol=tol * scale) is None:
        return None
    if compare((dF * T)[:, inside], want[:, inside], rtol=tol, atol=tol * scale) is None:
        return "lacks one factor T_k in every column k (the chain rule through F o T)"
    if compare(dF[:, inside], (want * T)[:, inside], rtol=tol, atol=tol * scale) is None:
        return "has one factor T_k too many in every column k"
    return None


def expect_guided_gradient(dF, numeric, T, inputs, factors) -> None:
    """``dF`` matches finite differences; else say if a factor T_k per column is off."""
    __tracebackhide__ = True
    mistake = t_factor_mistake(dF, numeric, T, 1e-6)
    if mistake:
        raise CheckError(f"dE/dF vs finite differences: your gradient {mistake}")
    expect_gradient(dF, numeric, what="dE/dF", inputs=inputs, tol=1e-6, factors=factors)


@FAST
@given(N=st.integers(1, 5), M=st.integers(1, 12), seed=SEEDS)
@example(N=3, M=5, seed=0)  # first, sizes whose factors cannot be confused
def test_gradient_matches_finite_differences(N, M, seed):
    F, A, T = _problem(N, M, np.random.default_rng(seed))
    E, dF = guided_style_layer_loss(F, A, T)
    inputs = {"F": F, "A": A, "T": T}
    expect_scalar(E, F.dtype, what="E", input_name="F", hint=CAST)
    expect_shape(dF, F.shape, what="dE/dF", inputs=inputs)
    expect(dF.dtype == F.dtype, f"dE/dF is {dF.dtype} for {F.dtype} F: {CAST}")
    expect(float(E) >= 0, f"E = {float(E):.3g} < 0, on F {F.shape}: a sum of squares")
    numeric = numerical_gradient(lambda v: guided_style_layer_loss(v, A, T)[0], F,
                                 np.float64(1.0))
    expect_guided_gradient(dF, numeric, T, inputs, factors={"N": N, "M": M})


@FAST
@given(N=st.integers(1, 8), M=st.integers(1, 40), seed=SEEDS)
@example(N=3, M=5, seed=0)
def test_equals_the_numba_kernels_applied_to_the_guided_features(N, M, seed):
    if in_student_version():  # there the kernels call your functions: see the stored values
        pytest.skip("the teacher's kernels are not in a student version; "
                    "test_equals_the_teachers_values_on_seeded_inputs compares with them")
    F, A, T = _problem(N, M, np.random.default_rng(seed))
    inputs, factors = {"F": F, "A": A, "T": T}, {"N": N, "M": M}
    G = guided_gram_matrix(F, T)
    expect_shape(G, (N, N), what="G_T", inputs=inputs)
    expect_dtype(G, F.dtype, what="G_T", input_name="F")
    expect_guided_gram(G, F, T, inputs)
    E, dF = guided_style_layer_loss(F, A, T)
    FT = F * T  # F o T: column k times T_k
    E_k, dFT_k = kernels_numba.style_layer_loss(FT, A)  # the unguided loss of F o T
    expect_close(E, E_k, what="E", against="the Numba kernel's loss of F o T", inputs=inputs,
                 rtol=1e-10, atol=1e-300, factors=factors)
    against = "the Numba kernel's gradient for F o T, times T (the chain rule)"
    mistake = t_factor_mistake(dF, dFT_k * T, T, 1e-10)
    if mistake:
        raise CheckError(f"dE/dF vs {against}: your dE/dF {mistake}")
    expect_close(dF, dFT_k * T, what="dE/dF",
                 against="the Numba kernel's gradient for F o T, times T (the chain rule)",
                 inputs=inputs, rtol=1e-10, atol=1e-14, factors=factors)


@named("a normalised region gives the region's own Gram, and ones change nothing")
@FAST
@given(N=st.integers(1, 6), M=st.integers(2, 25), seed=SEEDS)
@example(N=3, M=6, seed=0)
def test_a_normalised_region_gives_the_regions_own_gram_and_ones_change_nothing(N, M, seed):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((N, M))
    region = rng.uniform(size=M) < 0.5
    region[0] = True
    m = int(region.sum())
    T = region * np.sqrt(M / m)  # T / sqrt(mean T^2) for a 0/1 guide
    inputs = {"F": F, "T": T}
    expect_close(guided_gram_matrix(F, T), F[:, region] @ F[:, region].T / m,
                 what="G_T of a normalised 0/1 guide",
                 against="the Gram of the region's columns alone, F_r F_r^T / m",
                 inputs=inputs, rtol=1e-10, atol=1e-13, factors={"M": M, "m": m})
    expect_close(guided_gram_matrix(F, np.ones(M)), F @ F.T / M, what="G_T of a guide of ones",
                 against="the plain Gram F F^T / M", inputs={"F": F}, rtol=1e-12, atol=1e-13,
                 factors={"M": M, "N": N})


@FAST
@given(N=st.integers(1, 6), M=st.integers(1, 25), seed=SEEDS)
@example(N=3, M=5, seed=0)
def test_zero_loss_at_the_own_guided_gram_and_no_gradient_outside_the_region(N, M, seed):
    F, A, T = _problem(N, M, np.random.default_rng(seed), zeros=0.5)
    E0, dF0 = guided_style_layer_loss(F, guided_gram_matrix(F, T), T)
    expect(abs(float(E0)) < 1e-24,
           f"E = {float(E0):.3g}, not 0, when A is F's own guided Gram (F {F.shape}): are "
           "guided_gram_matrix and the loss using the same G_T?")
    expect_close(dF0, np.zeros_like(dF0), what="dE/dF", against="zero (A is F's own guided Gram)",
                 inputs={"F": F, "T": T}, rtol=0, atol=1e-14)
    _, dF = guided_style_layer_loss(F, A, T)
    outside = np.flatnonzero(T == 0)
    leak = [int(k) for k in outside if dF[:, k].any()]
    expect(not leak, f"dE/dF is not 0 at the positions {leak[:5]} where T = 0 (F {F.shape}): a "
           "position outside the region gets no gradient from this region's term")


def test_activation_and_spatial_guide_in_gradient_shape_out():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((1, 3, 4, 5))
    _, A, _ = _problem(3, 20, rng)
    T = rng.uniform(size=(4, 5))
    inputs = {"x": x, "T": T}
    E, dx = guided_style_layer_loss(x, A, T)
    expect_shape(dx, x.shape, what="dE/dx of an activation", inputs=inputs)
    E_m, dF = guided_style_layer_loss(x.reshape(3, 20), A, T.reshape(20))
    expect_close(E, E_m, what="E of the activation with an (H, W) guide",
                 against="E of its (3, 20) feature matrix with the flat guide", inputs=inputs,
                 rtol=1e-12)
    expect_close(dx.reshape(3, 20), dF, what="dE/dx of the activation",
                 against="dE/dF of its feature matrix", inputs=inputs, rtol=1e-12, atol=1e-15)
    expect_close(guided_gram_matrix(x, T), guided_gram_matrix(x.reshape(3, 20), T.reshape(20)),
                 what="G_T of the activation with an (H, W) guide",
                 against="G_T of its feature matrix with the flat guide", inputs=inputs,
                 rtol=1e-12)
    E32, dx32 = guided_style_layer_loss(x.astype(np.float32), A, T)  # A and T stay float64
    expect_scalar(E32, np.float32, what="E", input_name="F with float64 A and T", hint=CAST)
    expect_dtype(dx32, np.float32, what="dE/dF", input_name="F with float64 A and T", hint=CAST)
    expect_dtype(guided_gram_matrix(x.astype(np.float32), T), np.float32, what="G_T",
                 input_name="F with a float64 T", hint=CAST)


def test_equals_the_teachers_values_on_seeded_inputs():
    for (F, A, T), (G_t, E_t, dF_t) in teacher_values("ex_guided_gram", "guided"):
        inputs, factors = {"F": F, "A": A, "T": T}, {"N": F.shape[0], "M": F.shape[1]}
        G = guided_gram_matrix(F, T)
        expect_shape(G, G_t.shape, what="G_T", inputs=inputs)
        expect_close(G, G_t, what="G_T", against="the teacher's G_T", inputs=inputs,
                     rtol=1e-12, atol=1e-13, factors=factors)
        E, dF = guided_style_layer_loss(F, A, T)
        expect_close(E, E_t, what="E", against="the teacher's E", inputs=inputs, rtol=1e-10,
                     atol=1e-300, factors=factors)
        mistake = t_factor_mistake(dF, dF_t, T, 1e-10)
        if mistake:
            raise CheckError(f"dE/dF vs the teacher's: your dE/dF {mistake}")
        expect_close(dF, dF_t, what="dE/dF", against="the teacher's", inputs=inputs,
                     rtol=1e-10, atol=1e-14, factors=factors)
