"""Exercise ex_two_loop: ``minist.optim.lbfgs.two_loop`` (lesson 07).

The two-loop recursion must equal the dense BFGS inverse-Hessian approximation built in the
test from its definition, :math:`H^0 = \\gamma I` then
:math:`H \\leftarrow V^\\top H V + \\rho s s^\\top` with :math:`V = I - \\rho y s^\\top` for
each pair, oldest first (with no pairs, :math:`H = I`). Also: the newest secant equation
:math:`H y = s` holds, :math:`H` is positive definite, image-shaped arrays work.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import expect, expect_close, expect_dtype, expect_shape
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.optim.lbfgs import CurvaturePair, two_loop

pytestmark = pytest.mark.ex_two_loop


def _pairs(n, m, rng):
    """m curvature pairs of a random convex quadratic (y = A s, so s^T y > 0)."""
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    A = (Q * np.geomspace(1.0, 30.0, n)) @ Q.T
    history = []
    for s in rng.standard_normal((m, n)):
        y = A @ s
        history.append(CurvaturePair(s, y, 1.0 / (s @ y), (s @ y) / (y @ y)))
    return history


def _dense_bfgs(history, n):
    H = history[-1].gamma * np.eye(n) if history else np.eye(n)
    for s, y, rho, _ in history:  # oldest first
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    return H


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(0, 6), seed=st.integers(0, 2**32 - 1))
def test_equals_the_dense_bfgs_matrix(n, m, seed):
    rng = np.random.default_rng(seed)
    history = _pairs(n, m, rng)
    g = rng.standard_normal(n)
    g0 = g.copy()
    r = two_loop(g, history)
    inputs = {"g": g, "pairs": m}
    expect(r is not g, "two_loop returned g itself: return a new array")
    expect_shape(r, g.shape, what="H g", inputs=inputs)
    expect(np.array_equal(g, g0), "two_loop modified g: work on a copy")
    expect_close(r, _dense_bfgs(history, n) @ g, what="H g",
                 against="the dense BFGS matrix built from the pairs, times g", inputs=inputs,
                 rtol=1e-8, atol=1e-10, factors={"gamma": history[-1].gamma} if history else None)
    expect(g @ r > 0, "g^T H g <= 0: H must be positive definite (-H g a descent direction)")


@settings(max_examples=20, deadline=None)
@given(n=st.integers(2, 10), m=st.integers(1, 5), seed=st.integers(0, 2**32 - 1))
def test_newest_secant_equation_holds(n, m, seed):
    history = _pairs(n, m, np.random.default_rng(seed))
    expect_close(two_loop(history[-1].y, history), history[-1].s, what="H y (newest pair)",
                 against="s (the secant equation H y = s)", inputs={"n": n, "pairs": m},
                 rtol=1e-8, atol=1e-10)


def test_image_shaped_arrays_and_float32():
    rng = np.random.default_rng(15)
    shape = (1, 3, 4, 5)
    flat = _pairs(60, 4, rng)
    images = [CurvaturePair(p.s.reshape(shape), p.y.reshape(shape), p.rho, p.gamma)
              for p in flat]
    g = rng.standard_normal(60)
    r = two_loop(g.reshape(shape), images)
    expect_shape(r, shape, what="H g of an image-shaped g", inputs={"g": g.reshape(shape)})
    expect_close(r.ravel(), _dense_bfgs(flat, 60) @ g, what="H g of an image-shaped g",
                 against="the dense BFGS matrix times g", rtol=1e-8, atol=1e-10)
    images32 = [CurvaturePair(p.s.astype(np.float32), p.y.astype(np.float32), p.rho, p.gamma)
                for p in images]
    r32 = two_loop(g.reshape(shape).astype(np.float32), images32)
    expect_dtype(r32, np.float32, what="H g", input_name="g")
    expect_close(r32, r, what="H g in float32", against="H g in float64", rtol=1e-3, atol=1e-4)
