"""Exercise ex_gram: ``minist.losses.reference.gram_matrix`` (lesson 05, Eq. 3).

Checked against the Gram written as explicit loops in Numba (``kernels_numba.gram_matrix_numba``,
a different implementation), and against what a Gram matrix must be: symmetric, positive
semi-definite, unchanged when the positions are shuffled or repeated (the :math:`1/M_l`),
quadratic in the features, the same for an activation ``(1, N, H, W)`` and its matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.losses import kernels_numba
from minist.losses.reference import gram_matrix

pytestmark = pytest.mark.ex_gram

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)


@FAST
@given(N=st.integers(1, 8), M=st.integers(1, 30), seed=SEEDS)
def test_symmetric_positive_semidefinite_and_equal_to_the_loops(N, M, seed):
    F = np.random.default_rng(seed).standard_normal((N, M))
    G = gram_matrix(F)
    assert G.shape == (N, N) and G.dtype == F.dtype
    np.testing.assert_allclose(G, G.T, rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh(G).min() > -1e-10
    np.testing.assert_allclose(G, kernels_numba.gram_matrix_numba(F), rtol=1e-12, atol=1e-12)


@FAST
@given(N=st.integers(1, 6), M=st.integers(1, 20), repeats=st.integers(2, 4), seed=SEEDS)
def test_positions_do_not_matter_only_their_statistics(N, M, repeats, seed):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((N, M))
    G = gram_matrix(F)
    np.testing.assert_allclose(gram_matrix(F[:, rng.permutation(M)]), G, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gram_matrix(np.tile(F, (1, repeats))), G, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gram_matrix(-2.5 * F), 6.25 * G, rtol=1e-12, atol=1e-12)


def test_accepts_an_activation_and_reads_it_as_channels_by_positions():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 5, 3, 4))
    G = gram_matrix(x)
    np.testing.assert_allclose(G, gram_matrix(x.reshape(5, 12)), rtol=1e-12, atol=1e-12)
    # the diagonal is each channel's mean square over the positions
    np.testing.assert_allclose(np.diag(G), (x[0] ** 2).mean(axis=(1, 2)), rtol=1e-12)


def test_float32_stays_float32():
    F = np.random.default_rng(10).standard_normal((4, 16)).astype(np.float32)
    G = gram_matrix(F)
    assert G.dtype == np.float32
    np.testing.assert_allclose(G, kernels_numba.gram_matrix_numba(F), rtol=1e-5, atol=1e-6)
