"""Exercise ex_gram: ``minist.losses.reference.gram_matrix`` (lesson 05, Eq. 3).

Checked against the teacher's values on seeded inputs (the Gram written as explicit loops in
Numba, ``kernels_numba.gram_matrix_numba``; in a student version, stored: ``stored.py``), on
random inputs against those loops in the teacher's tree, and against what a Gram matrix must be:
symmetric, positive semi-definite, unchanged when the positions are shuffled or repeated (the
:math:`1/M_l`), quadratic in the features, the same for an activation ``(1, N, H, W)`` and its
matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect, expect_close, expect_dtype, expect_shape, named
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stored import in_student_version, teacher_values

from minist.losses import kernels_numba
from minist.losses.reference import gram_matrix

pytestmark = pytest.mark.ex_gram

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)


@FAST
@given(N=st.integers(1, 8), M=st.integers(1, 30), seed=SEEDS)
@example(N=3, M=5, seed=0)  # first, sizes whose factors cannot be confused
def test_symmetric_positive_semidefinite_and_equal_to_the_loops(N, M, seed):
    F = np.random.default_rng(seed).standard_normal((N, M))
    G = gram_matrix(F)
    inputs = {"F": F}
    expect_shape(G, (N, N), what="G", inputs=inputs)
    expect_dtype(G, F.dtype, what="G", input_name="F")
    if not in_student_version():  # there the loops call your function: see the stored values
        expect_close(G, kernels_numba.gram_matrix_numba(F), what="G",
                     against="the Gram written as loops (kernels_numba.gram_matrix_numba)",
                     inputs=inputs, rtol=1e-12, atol=1e-12, factors={"M": M, "N": N})
    expect_close(G, G.T, what="G", against="its transpose", inputs=inputs, rtol=0, atol=1e-12)
    expect(np.linalg.eigvalsh(G).min() > -1e-10,
           f"G is not positive semi-definite, on F {F.shape}: eigenvalue "
           f"{np.linalg.eigvalsh(G).min():.3g} < 0")


@named("positions do not matter, only their statistics")
@FAST
@given(N=st.integers(1, 6), M=st.integers(1, 20), repeats=st.integers(2, 4), seed=SEEDS)
@example(N=2, M=3, repeats=5, seed=0)
def test_positions_do_not_matter_only_their_statistics(N, M, repeats, seed):
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((N, M))
    G = gram_matrix(F)
    inputs = {"F": F}
    expect_close(gram_matrix(F[:, rng.permutation(M)]), G, what="G of F with shuffled columns",
                 against="G of F", inputs=inputs, rtol=1e-12, atol=1e-12)
    expect_close(gram_matrix(np.tile(F, (1, repeats))), G,
                 what=f"G of F with every position repeated {repeats} times", against="G of F",
                 inputs=inputs, rtol=1e-12, atol=1e-12, factors={"repeats": repeats})
    expect_close(gram_matrix(-2.5 * F), 6.25 * G, what="G of -2.5 F", against="6.25 G of F",
                 inputs=inputs, rtol=1e-12, atol=1e-12)


def test_accepts_an_activation_and_reads_it_as_channels_by_positions():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((1, 5, 3, 4))
    G = gram_matrix(x)
    inputs = {"x": x}
    expect_close(G, gram_matrix(x.reshape(5, 12)), what="G of the activation",
                 against="G of its (5, 12) feature matrix", inputs=inputs, rtol=1e-12,
                 atol=1e-12)
    # the diagonal is each channel's mean square over the positions
    expect_close(np.diag(G), (x[0] ** 2).mean(axis=(1, 2)), what="diagonal of G",
                 against="each channel's mean square", inputs=inputs, rtol=1e-12,
                 factors={"M": 12})


def test_float32_stays_float32():
    F = np.random.default_rng(10).standard_normal((4, 16)).astype(np.float32)
    G = gram_matrix(F)
    expect_dtype(G, np.float32, what="G", input_name="F",
                 hint="compute in F's dtype (one matrix product keeps it)")
    expect_close(G, gram_matrix(F.astype(np.float64)), what="G of float32 F",
                 against="G of the same F in float64", inputs={"F": F}, rtol=1e-5, atol=1e-6)


def test_equals_the_teachers_values_on_seeded_inputs():
    for (F,), (want,) in teacher_values("ex_gram", "gram_matrix"):
        G = gram_matrix(F)
        inputs = {"F": F}
        expect_shape(G, want.shape, what="G", inputs=inputs)
        expect_dtype(G, want.dtype, what="G", input_name="F")
        tol = 1e-5 if F.dtype == np.float32 else 1e-12
        expect_close(G, want, what="G", against="the teacher's G", inputs=inputs, rtol=tol,
                     atol=tol, factors={"M": F.shape[1], "N": F.shape[0]})
