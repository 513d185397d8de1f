"""Exercise ex_color_transform: ``minist.color.spd_power`` and ``pca_transform`` (lesson 09).

The matrix powers are compared with an independent construction written here: the
Denman-Beavers iteration, which finds :math:`S^{1/2}` and :math:`S^{-1/2}` with matrix
inverses only (no eigenvectors), and with ``numpy.linalg.inv`` and products for integer powers.
The pca transform is pinned down by what it must be: a solution of
:math:`A \\Sigma_S A^\\top = \\Sigma_C` whose product :math:`A \\Sigma_S^{1/2}` is symmetric
positive definite (of all solutions :math:`\\Sigma_C^{1/2} R\\, \\Sigma_S^{-1/2}`, R orthogonal,
only R = I has that), unchanged by a rotation of colour space, diagonal for diagonal
covariances.

A failure says in one line what the function computes instead when that is cheap to tell: the
elementwise power ``S ** p``, eigenvectors read as rows, another power, the covariances in the
other order, another solution of the equation.
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
    expect_shape,
    named,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from rounding import two_orders

from minist.color import color_transform_matrix, pca_transform, spd_power

pytestmark = pytest.mark.ex_color_transform

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)


def rotation(rng) -> np.ndarray:
    Q, R = np.linalg.qr(rng.standard_normal((3, 3)))
    return Q * np.sign(np.diag(R))


def covariance(rng) -> np.ndarray:
    """A random 3x3 SPD matrix with eigenvalues in [1e-3, 1] (like a colour covariance)."""
    Q = rotation(rng)
    return (Q * 10.0 ** rng.uniform(-3, 0, 3)) @ Q.T


def denman_beavers(S, steps=60):
    """(S^(1/2), S^(-1/2)) by Y <- (Y + Z^-1)/2, Z <- (Z + Y^-1)/2 from Y = S, Z = I."""
    Y, Z = S.copy(), np.eye(len(S))
    for _ in range(steps):
        Y, Z = (Y + np.linalg.inv(Z)) / 2, (Z + np.linalg.inv(Y)) / 2
    return Y, Z


def power_mistake(got, S, p: float) -> str | None:
    """What ``got`` is, if it is a cheap-to-recognise wrong ``S^p`` (diagnosis only)."""
    lam, V = np.linalg.eigh(S)
    with np.errstate(invalid="ignore"):
        elementwise = np.power(S, p)
    candidates = [
        (elementwise, "is the elementwise power S ** p, not the matrix power"),
        (V.T @ np.diag(lam**p) @ V, "uses the rows of V as eigenvectors: numpy.linalg.eigh "
         "returns them as the columns"),
        (V @ np.diag(lam**p), "is V diag(lambda^p) without the last factor"),
    ]
    for q in (-p, 2 * p, p / 2, 1.0):
        if q != p:
            candidates.append(((V * lam**q) @ V.T, f"is the power {q:g} of S, not {p:g}"))
    for matrix, words in candidates:
        if got.shape == matrix.shape and np.allclose(got, matrix, rtol=1e-8, atol=1e-12,
                                                     equal_nan=True):
            return words
    return None


def expect_power(S, p: float, want, against: str, atol: float) -> None:
    """``spd_power(S, p)`` equals ``want`` (from ``against``), else a one-line diagnosis."""
    __tracebackhide__ = True
    got = spd_power(S, p)
    expect_shape(got, S.shape, what=f"spd_power(S, {p:g})", inputs={"S": S})
    why = compare(got, want, rtol=0, atol=atol)
    if why is not None:
        why = power_mistake(np.asarray(got, dtype=np.float64), S, p) or why
        raise CheckError(f"spd_power(S, {p:g}) vs {against}, on S (3, 3) float64: your "
                         f"S^{p:g} {why}")


def expect_value_error(call, what: str, why: str) -> None:
    __tracebackhide__ = True
    try:
        call()
    except ValueError:
        return
    raise CheckError(f"{what} did not raise ValueError: {why}")


@FAST
@given(seed=SEEDS)
@example(seed=0)
def test_spd_power_square_roots_match_denman_beavers(seed):
    S = covariance(np.random.default_rng(seed))
    root, inv_root = denman_beavers(S)
    expect_power(S, 0.5, root, "the Denman-Beavers square root (no eigenvectors)", atol=1e-10)
    expect_power(S, -0.5, inv_root, "the Denman-Beavers inverse square root", atol=1e-7)
    half = spd_power(S, 0.5)
    expect_dtype(half, np.float64, what="spd_power(S, 0.5)", input_name="S")
    expect_close(half, half.T, what="S^(1/2)", against="its transpose (it is symmetric)",
                 inputs={"S": S}, rtol=0, atol=1e-14)
    expect(np.linalg.eigvalsh((half + half.T) / 2).min() > 0,
           "S^(1/2) is not positive definite: the square root meant is the positive one")


@FAST
@given(seed=SEEDS)
@example(seed=0)
def test_spd_power_integer_powers(seed):
    S = covariance(np.random.default_rng(seed))
    expect_power(S, 1.0, S, "S itself", atol=1e-14)
    expect_power(S, 2.0, S @ S, "S @ S", atol=1e-14)
    expect_power(S, 0.0, np.eye(3), "the identity", atol=1e-13)
    inv = np.linalg.inv(S)
    expect_power(S, -1.0, inv, "numpy.linalg.inv(S)", atol=1e-10 * np.abs(inv).max())


def test_spd_power_refuses_what_is_not_symmetric_positive_definite_and_computes_in_float64():
    expect_value_error(lambda: spd_power(np.diag([1.0, -0.5, 2.0]), 0.5),
                       "spd_power(diag(1, -0.5, 2), 0.5)",
                       "an eigenvalue <= 0: the matrix is not positive definite")
    expect_value_error(lambda: spd_power(np.array([[2.0, 1.0, 0.0], [0.0, 2.0, 0.0],
                                                   [0.0, 0.0, 2.0]]), 0.5),
                       "spd_power of a matrix that is not symmetric",
                       "check S with _check_spd")
    S = covariance(np.random.default_rng(5))
    got = spd_power(S.astype(np.float32), 0.5)
    expect_dtype(got, np.float64, what="spd_power(S, 0.5)", input_name="S",
                 hint="the 3x3 algebra is done in float64 (_check_spd returns S as float64)")


def spd_power_is_right(S) -> bool:
    """Whether the student's square root squares back to ``S`` (a hint for pca's checks)."""
    try:
        half = np.asarray(spd_power(S, 0.5), dtype=np.float64)
    except Exception:  # unwritten or broken: spd_power's own checks say how
        return False
    return half.shape == S.shape and compare(half @ half, S, rtol=0, atol=1e-10) is None


def expect_pca_solves_the_equation(cov_s, cov_c):
    __tracebackhide__ = True
    A = pca_transform(cov_s, cov_c)
    inputs = {"cov_style": cov_s, "cov_content": cov_c}
    expect_shape(A, (3, 3), what="A", inputs=inputs)
    expect_dtype(A, np.float64, what="A", input_name="covariances")
    residual = compare(A @ cov_s @ A.T, cov_c, rtol=0, atol=1e-10)
    if residual is not None and compare(A @ cov_c @ A.T, cov_s, rtol=0, atol=1e-10) is None:
        raise CheckError("A Sigma_S A^T vs Sigma_C: your A maps the content's covariance to the "
                         "style's (A Sigma_C A^T = Sigma_S): the arguments are (cov_style, "
                         "cov_content)")
    if residual is not None and not spd_power_is_right(cov_s):
        raise CheckError(f"A Sigma_S A^T vs Sigma_C, on covariances (3, 3): your A Sigma_S A^T "
                         f"{residual}; but spd_power is not right yet (spd_power(S, 0.5) squared "
                         "is not S): fix it first, its checks say how")
    expect_close(A @ cov_s @ A.T, cov_c, what="A Sigma_S A^T", against="Sigma_C", inputs=inputs,
                 rtol=0, atol=1e-10)
    return A


@FAST
@given(seed=SEEDS)
@example(seed=0)
def test_pca_solves_the_covariance_equation(seed):
    rng = np.random.default_rng(seed)
    expect_pca_solves_the_equation(covariance(rng), covariance(rng))


@named("pca is the solution whose A Sigma_S^(1/2) is symmetric positive definite")
@FAST
@given(seed=SEEDS)
@example(seed=0)
def test_pca_is_the_solution_with_a_symmetric_positive_definite_a_root_s(seed):
    rng = np.random.default_rng(seed)
    cov_s, cov_c = covariance(rng), covariance(rng)
    A = expect_pca_solves_the_equation(cov_s, cov_c)
    inputs = {"cov_style": cov_s, "cov_content": cov_c}
    root_s, inv_root_s = denman_beavers(cov_s)
    root_c, _ = denman_beavers(cov_c)
    B = A @ root_s
    other = ("your A solves A Sigma_S A^T = Sigma_C, but A Sigma_S^(1/2) is not symmetric "
             "positive definite: that is another solution (cholesky? sym?), not pca")
    expect(compare(B, B.T, rtol=0, atol=1e-8) is None
           and np.linalg.eigvalsh((B + B.T) / 2).min() > 0, f"A Sigma_S^(1/2), on covariances "
           f"(3, 3): {other}")
    expect_close(A, root_c @ inv_root_s, what="A",
                 against="the pca solution built from Denman-Beavers square roots",
                 inputs=inputs, rtol=0, atol=1e-6 * np.abs(A).max())


@FAST
@given(seed=SEEDS)
def test_pca_follows_a_rotation_of_colour_space(seed):
    rng = np.random.default_rng(seed)
    cov_s, cov_c, Q = covariance(rng), covariance(rng), rotation(rng)
    A = pca_transform(cov_s, cov_c)
    A_rotated = pca_transform(Q @ cov_s @ Q.T, Q @ cov_c @ Q.T)
    expect_close(A_rotated, Q @ A @ Q.T, what="A of the rotated covariances",
                 against="Q A Q^T (colour space rotated by Q: the same map, rotated)",
                 inputs={"cov_style": cov_s, "cov_content": cov_c, "Q": Q}, rtol=0,
                 atol=1e-8 * np.abs(A).max())


def test_pca_for_diagonal_and_equal_covariances():
    s, c = np.array([0.04, 0.01, 0.09]), np.array([0.01, 0.04, 0.0025])
    expect_close(pca_transform(np.diag(s), np.diag(c)), np.diag(np.sqrt(c / s)),
                 what="A for diagonal covariances", against="diag(sqrt(c_i / s_i)): each "
                 "channel scaled from the style's spread to the content's",
                 inputs={"cov_style": np.diag(s), "cov_content": np.diag(c)}, rtol=1e-12,
                 atol=1e-15)
    S = covariance(np.random.default_rng(3))
    expect_close(pca_transform(S, S), np.eye(3), what="A for equal covariances",
                 against="the identity (nothing to change)", inputs={"cov": S}, rtol=0,
                 atol=1e-12)


def test_pca_is_the_default_method():
    rng = np.random.default_rng(4)
    cov_s, cov_c = covariance(rng), covariance(rng)
    root_c, _ = denman_beavers(cov_c)
    _, inv_root_s = denman_beavers(cov_s)
    # the same function on the same input: the same matrix, up to the rounding of one 3x3
    # product Sigma_C^(1/2) Sigma_S^(-1/2) summed in another order
    expect_close(color_transform_matrix(cov_s, cov_c), pca_transform(cov_s, cov_c),
                 what="color_transform_matrix(cov_s, cov_c)", against="pca_transform(cov_s, "
                 "cov_c) (pca is the default method)", rtol=0,
                 atol=two_orders(3, np.abs(root_c) @ np.abs(inv_root_s)))
