"""Exercise ex_color_transform: ``minist.color.spd_power`` and ``pca_transform`` (lesson 09).

The matrix powers are compared with an independent construction written here: the
Denman-Beavers iteration, which finds :math:`S^{1/2}` and :math:`S^{-1/2}` with matrix
inverses only (no eigenvectors), and with ``numpy.linalg.inv`` and products for integer powers.
The pca transform is pinned down by what it must be: a solution of
:math:`A \\Sigma_S A^\\top = \\Sigma_C` whose product :math:`A \\Sigma_S^{1/2}` is symmetric
positive definite (of all solutions :math:`\\Sigma_C^{1/2} R\\, \\Sigma_S^{-1/2}`, R orthogonal,
only R = I has that), unchanged by a rotation of colour space, diagonal for diagonal
covariances.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@FAST
@given(seed=SEEDS)
def test_spd_power_square_roots_match_denman_beavers(seed):
    S = covariance(np.random.default_rng(seed))
    root, inv_root = denman_beavers(S)
    np.testing.assert_allclose(spd_power(S, 0.5), root, rtol=0, atol=1e-10)
    np.testing.assert_allclose(spd_power(S, -0.5), inv_root, rtol=0, atol=1e-7)
    half = spd_power(S, 0.5)
    np.testing.assert_allclose(half, half.T, atol=1e-14)
    assert np.linalg.eigvalsh((half + half.T) / 2).min() > 0


@FAST
@given(seed=SEEDS)
def test_spd_power_integer_powers(seed):
    S = covariance(np.random.default_rng(seed))
    np.testing.assert_allclose(spd_power(S, 1.0), S, rtol=0, atol=1e-14)
    np.testing.assert_allclose(spd_power(S, 2.0), S @ S, rtol=0, atol=1e-14)
    np.testing.assert_allclose(spd_power(S, 0.0), np.eye(3), rtol=0, atol=1e-13)
    inv = np.linalg.inv(S)
    np.testing.assert_allclose(spd_power(S, -1.0), inv, rtol=0, atol=1e-10 * np.abs(inv).max())


def test_spd_power_refuses_a_matrix_that_is_not_positive_definite():
    with pytest.raises(ValueError):
        spd_power(np.diag([1.0, -0.5, 2.0]), 0.5)


@FAST
@given(seed=SEEDS)
def test_pca_solves_the_covariance_equation(seed):
    rng = np.random.default_rng(seed)
    cov_s, cov_c = covariance(rng), covariance(rng)
    A = pca_transform(cov_s, cov_c)
    assert A.shape == (3, 3)
    np.testing.assert_allclose(A @ cov_s @ A.T, cov_c, rtol=0, atol=1e-10)


@FAST
@given(seed=SEEDS)
def test_pca_is_the_solution_with_a_symmetric_positive_definite_a_root_s(seed):
    rng = np.random.default_rng(seed)
    cov_s, cov_c = covariance(rng), covariance(rng)
    A = pca_transform(cov_s, cov_c)
    root_s, inv_root_s = denman_beavers(cov_s)
    root_c, _ = denman_beavers(cov_c)
    B = A @ root_s  # = Sigma_C^(1/2)
    np.testing.assert_allclose(B, B.T, rtol=0, atol=1e-8)
    assert np.linalg.eigvalsh((B + B.T) / 2).min() > 0
    np.testing.assert_allclose(A, root_c @ inv_root_s, rtol=0, atol=1e-6 * np.abs(A).max())


@FAST
@given(seed=SEEDS)
def test_pca_follows_a_rotation_of_colour_space(seed):
    rng = np.random.default_rng(seed)
    cov_s, cov_c, Q = covariance(rng), covariance(rng), rotation(rng)
    A = pca_transform(cov_s, cov_c)
    A_rotated = pca_transform(Q @ cov_s @ Q.T, Q @ cov_c @ Q.T)
    np.testing.assert_allclose(A_rotated, Q @ A @ Q.T, rtol=0, atol=1e-8 * np.abs(A).max())


def test_pca_for_diagonal_and_equal_covariances():
    s, c = np.array([0.04, 0.01, 0.09]), np.array([0.01, 0.04, 0.0025])
    np.testing.assert_allclose(pca_transform(np.diag(s), np.diag(c)), np.diag(np.sqrt(c / s)),
                               rtol=1e-12, atol=1e-15)
    S = covariance(np.random.default_rng(3))
    np.testing.assert_allclose(pca_transform(S, S), np.eye(3), rtol=0, atol=1e-12)


def test_pca_is_the_default_method():
    rng = np.random.default_rng(4)
    cov_s, cov_c = covariance(rng), covariance(rng)
    np.testing.assert_array_equal(color_transform_matrix(cov_s, cov_c),
                                  pca_transform(cov_s, cov_c))
