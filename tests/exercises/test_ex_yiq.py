"""Exercise ex_yiq: ``minist.color.apply_color_matrix``, ``rgb_to_yiq`` and ``yiq_to_rgb``
(lesson 09).

The per-pixel map is checked against the same map written as a loop over the pixels here; the
YIQ matrix against the NTSC construction it rounds (built in this file from the luma weights,
the colour-difference scales 0.492 and 0.877 and the 33-degree turn); the inverse by the round
trip both ways, which only an exact inverse passes (the 3-decimal inverse tables print misses
by ~1e-4); and by properties: a gray has no colour, the map is linear and acts pixel by pixel,
shapes, dtypes and the input are kept.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.color import YIQ_FROM_RGB, apply_color_matrix, rgb_to_yiq, yiq_to_rgb

pytestmark = pytest.mark.ex_yiq

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)
SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 6))  # N, H, W


def ntsc_yiq_matrix() -> np.ndarray:
    """YIQ from RGB built from its definition (the tabulated matrix rounds this to 4 decimals)."""
    y = np.array([0.299, 0.587, 0.114])
    u = 0.492 * (np.array([0.0, 0.0, 1.0]) - y)  # B - Y, scaled
    v = 0.877 * (np.array([1.0, 0.0, 0.0]) - y)  # R - Y, scaled
    t = np.deg2rad(33.0)
    return np.stack([y, -np.sin(t) * u + np.cos(t) * v, np.cos(t) * u + np.sin(t) * v])


def per_pixel(x, A, b=None):
    """A x + b for every pixel, as loops: (N, 3, H, W) or (3, H, W) -> k channels."""
    squeeze = x.ndim == 3
    x4 = x[None] if squeeze else x
    N, _, H, W = x4.shape
    out = np.empty((N, A.shape[0], H, W))
    for n in range(N):
        for i in range(H):
            for j in range(W):
                out[n, :, i, j] = A @ x4[n, :, i, j] + (0.0 if b is None else b)
    return out[0] if squeeze else out


@FAST
@given(shape=SHAPES, k=st.sampled_from([1, 2, 3]), with_b=st.booleans(), three_d=st.booleans(),
       seed=SEEDS)
def test_apply_color_matrix_maps_every_pixel(shape, k, with_b, three_d, seed):
    rng = np.random.default_rng(seed)
    N, H, W = shape
    x = rng.random((3, H, W) if three_d else (N, 3, H, W))
    A = rng.standard_normal((k, 3))
    b = rng.standard_normal(k) if with_b else None
    before = x.copy()
    out = apply_color_matrix(x, A, b)
    assert out.shape == (x.shape[:-3] + (k, H, W))
    np.testing.assert_allclose(out, per_pixel(x, A, b), rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(x, before)  # the input is not modified


def test_apply_color_matrix_keeps_float32():
    x = np.random.default_rng(1).random((1, 3, 4, 3)).astype(np.float32)
    out = apply_color_matrix(x, np.eye(3) * 2.0, np.ones(3))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 2 * x + 1, rtol=1e-6)


def test_the_matrix_is_the_ntsc_one():
    """The pure colours give the columns of the matrix rgb_to_yiq applies."""
    primaries = np.eye(3).reshape(3, 3, 1)  # pixel k (row k) is the primary e_k
    columns = rgb_to_yiq(primaries)[..., 0]  # channel c of pixel k = M[c, k]
    np.testing.assert_allclose(columns, YIQ_FROM_RGB, rtol=0, atol=1e-15)
    np.testing.assert_allclose(columns, ntsc_yiq_matrix(), rtol=0, atol=5e-4)


@FAST
@given(shape=SHAPES, seed=SEEDS, dtype=st.sampled_from([np.float32, np.float64]),
       three_d=st.booleans())
def test_rgb_to_yiq_pixel_by_pixel(shape, seed, dtype, three_d):
    rng = np.random.default_rng(seed)
    N, H, W = shape
    x = rng.random((3, H, W) if three_d else (N, 3, H, W)).astype(dtype)
    before = x.copy()
    yiq = rgb_to_yiq(x)
    assert yiq.shape == x.shape and yiq.dtype == dtype
    tol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(yiq, per_pixel(x.astype(np.float64), ntsc_yiq_matrix()),
                               rtol=0, atol=2e-3)  # the table's 4-decimal rounding
    np.testing.assert_allclose(yiq, per_pixel(x.astype(np.float64), YIQ_FROM_RGB),
                               rtol=0, atol=tol)
    np.testing.assert_array_equal(x, before)


@FAST
@given(shape=SHAPES, seed=SEEDS, three_d=st.booleans())
def test_round_trips_both_ways(shape, seed, three_d):
    rng = np.random.default_rng(seed)
    N, H, W = shape
    x = rng.random((3, H, W) if three_d else (N, 3, H, W))
    np.testing.assert_allclose(yiq_to_rgb(rgb_to_yiq(x)), x, rtol=0, atol=1e-14)
    z = rng.standard_normal(x.shape)  # any YIQ triple, also outside the RGB cube: no clipping
    np.testing.assert_allclose(rgb_to_yiq(yiq_to_rgb(z)), z, rtol=0, atol=1e-14)
    x32 = x.astype(np.float32)
    back = yiq_to_rgb(rgb_to_yiq(x32))
    assert back.dtype == np.float32
    np.testing.assert_allclose(back, x32, rtol=0, atol=5e-6)


@FAST
@given(g=st.floats(0, 1), seed=SEEDS)
def test_a_gray_is_its_luminance_and_no_colour(g, seed):
    x = np.full((1, 3, 2, 3), g)
    yiq = rgb_to_yiq(x)
    np.testing.assert_allclose(yiq[:, 0], g, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(yiq[:, 1:], 0.0, atol=1e-15)
    back = yiq_to_rgb(np.concatenate([np.full((1, 1, 2, 3), g), np.zeros((1, 2, 2, 3))], axis=1))
    np.testing.assert_allclose(back, x, rtol=0, atol=1e-14)


@FAST
@given(seed=SEEDS, a=st.floats(-3, 3), c=st.floats(-3, 3))
def test_linear_and_per_pixel(seed, a, c):
    rng = np.random.default_rng(seed)
    x, y = rng.random((2, 1, 3, 4, 5))
    for f in (rgb_to_yiq, yiq_to_rgb):
        np.testing.assert_allclose(f(a * x + c * y), a * f(x) + c * f(y), rtol=0, atol=1e-13)
        perm = rng.permutation(20)
        shuffled = x.reshape(1, 3, 20)[..., perm].reshape(1, 3, 4, 5)
        np.testing.assert_allclose(f(shuffled).reshape(1, 3, 20),
                                   f(x).reshape(1, 3, 20)[..., perm], rtol=0, atol=1e-15)
