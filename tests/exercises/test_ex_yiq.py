"""Exercise ex_yiq: ``minist.color.apply_color_matrix``, ``rgb_to_yiq`` and ``yiq_to_rgb``
(lesson 09).

The per-pixel map is checked against the same map written as a loop over the pixels here; the
YIQ matrix against the NTSC construction it rounds (built in this file from the luma weights,
the colour-difference scales 0.492 and 0.877 and the 33-degree turn); the inverse by the round
trip both ways, which only an exact inverse passes (the 3-decimal inverse tables print misses
by ~1e-4); and by properties: a gray has no colour, the map is linear and acts pixel by pixel,
shapes, dtypes and the input are kept.

A failure says in one line which matrix the function applies instead when that is cheap to
tell (the transpose, the inverse, the 3-decimal or float32 inverse, no ``b``).
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import CheckError, compare, expect, expect_close, expect_dtype, expect_shape
from hypothesis import example, given, settings
from hypothesis import strategies as st

from minist.color import YIQ_FROM_RGB, apply_color_matrix, rgb_to_yiq, yiq_to_rgb

pytestmark = pytest.mark.ex_yiq

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)
SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 6), st.integers(1, 6))  # N, H, W
T = YIQ_FROM_RGB
T_INV = np.linalg.inv(YIQ_FROM_RGB)  # float64


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


def matrix_applied(f, name: str) -> np.ndarray:
    """The 3x3 matrix a per-pixel linear map applies: its results for the pure colours."""
    primaries = np.eye(3).reshape(1, 3, 3, 1)  # pixel k (row k) is the primary e_k
    out = f(primaries)
    expect_shape(out, primaries.shape, what=f"{name} of a (1, 3, 3, 1) image",
                 inputs={"image": primaries})
    return np.asarray(out, dtype=np.float64)[0, :, :, 0]  # channel c of pixel k = M[c, k]


def expect_matrix(f, name: str, want, against: str, mistakes, atol: float) -> None:
    """``f`` applies ``want`` to every pixel; else say which of ``mistakes`` it applies."""
    __tracebackhide__ = True
    got = matrix_applied(f, name)
    why = compare(got, want, rtol=0, atol=atol)
    if why is None:
        return
    for matrix, words, tol in mistakes:
        if compare(got, matrix, rtol=0, atol=tol) is None:
            why = words
            break
    raise CheckError(f"the matrix {name} applies (its results for the pure colours R, G, B) vs "
                     f"{against}: your {name} {why}")


MISTAKES_TO_YIQ = [
    (T.T, "applies YIQ_FROM_RGB transposed: row c of the matrix gives channel c", 1e-12),
    (T_INV, "applies the inverse matrix (that is yiq_to_rgb's)", 1e-12),
]
MISTAKES_TO_RGB = [
    (T_INV.round(3), "applies the 3-decimal inverse that tables print: use the exact inverse of "
     "YIQ_FROM_RGB, computed in float64", 1e-12),
    (T, "applies YIQ_FROM_RGB itself, not its inverse", 1e-12),
    (T_INV.T, "applies the inverse transposed: row c of the matrix gives channel c", 1e-12),
    (T_INV, "applies the inverse to ~1e-7 only: compute it in float64, then cast the result to "
     "the image's dtype", 1e-5),
]


@FAST
@given(shape=SHAPES, k=st.sampled_from([1, 2, 3]), with_b=st.booleans(), three_d=st.booleans(),
       seed=SEEDS)
@example(shape=(1, 2, 3), k=3, with_b=True, three_d=False, seed=0)
def test_apply_color_matrix_maps_every_pixel(shape, k, with_b, three_d, seed):
    rng = np.random.default_rng(seed)
    N, H, W = shape
    x = rng.random((3, H, W) if three_d else (N, 3, H, W))
    A = rng.standard_normal((k, 3))
    b = rng.standard_normal(k) if with_b else None
    inputs = {"image": x, "A": A, "b": b}
    before = x.copy()
    out = apply_color_matrix(x, A, b)
    expect_shape(out, x.shape[:-3] + (k, H, W), what="x' = A x + b", inputs=inputs)
    want = per_pixel(x, A, b)
    if compare(out, want, rtol=1e-13, atol=1e-14) is not None:
        if k == 3 and compare(out, per_pixel(x, A.T, b), rtol=1e-13, atol=1e-14) is None:
            raise CheckError(f"x' = A x + b vs the loop over the pixels, on "
                             f"image {x.shape}, A (3, 3): your result applies A transposed: "
                             "channel c of x' is row c of A times the pixel's colour, plus b_c")
        if b is not None and compare(out, per_pixel(x, A), rtol=1e-13, atol=1e-14) is None:
            raise CheckError(f"x' = A x + b vs the loop over the pixels, on image {x.shape}: "
                             "your result is A x without b: add b to every pixel")
        shift = 0.0 if b is None else b.reshape(-1, 1, 1)
        why = compare(out - shift, per_pixel(x, A), rtol=1e-13, atol=1e-14)
        if b is not None and why is not None and "x the expected one" in why:
            raise CheckError(f"x' = A x + b vs the loop over the pixels, on image {x.shape}: "
                             f"your A x part {why}")
    expect_close(out, want, what="x' = A x + b", against="the loop over the pixels",
                 inputs=inputs, rtol=1e-13, atol=1e-14)
    expect(np.array_equal(x, before), "apply_color_matrix modified its input image: write the "
           "result into a new array")


def test_apply_color_matrix_keeps_float32_and_refuses_a_wrong_matrix():
    x = np.random.default_rng(1).random((1, 3, 4, 3)).astype(np.float32)
    out = apply_color_matrix(x, np.eye(3) * 2.0, np.ones(3))
    expect_dtype(out, np.float32, what="x' = A x + b", input_name="image (float64 A and b)",
                 hint="cast A and b to the image's dtype")
    expect_close(out, 2 * x + 1, what="x' of A = 2 I, b = 1", against="2 x + 1",
                 inputs={"image": x}, rtol=1e-6)
    try:
        apply_color_matrix(x, np.eye(2))
    except ValueError:
        pass
    else:
        raise CheckError("apply_color_matrix(image, A) with A (2, 2) did not raise ValueError: "
                         "A must be (k, 3)")


def test_the_matrix_is_the_ntsc_one():
    expect_matrix(rgb_to_yiq, "rgb_to_yiq", T, "YIQ_FROM_RGB", MISTAKES_TO_YIQ, atol=1e-15)
    got = matrix_applied(rgb_to_yiq, "rgb_to_yiq")
    expect_close(got, ntsc_yiq_matrix(), what="matrix",
                 against="the NTSC construction (luma weights, 0.492 (B - Y), 0.877 (R - Y), "
                 "turned by 33 degrees)", rtol=0, atol=5e-4)
    expect_matrix(yiq_to_rgb, "yiq_to_rgb", T_INV, "the exact inverse of YIQ_FROM_RGB",
                  MISTAKES_TO_RGB, atol=1e-13)


@FAST
@given(shape=SHAPES, seed=SEEDS, dtype=st.sampled_from([np.float32, np.float64]),
       three_d=st.booleans())
@example(shape=(1, 2, 3), seed=0, dtype=np.float64, three_d=False)
def test_rgb_to_yiq_pixel_by_pixel(shape, seed, dtype, three_d):
    rng = np.random.default_rng(seed)
    N, H, W = shape
    x = rng.random((3, H, W) if three_d else (N, 3, H, W)).astype(dtype)
    inputs = {"image": x}
    before = x.copy()
    yiq = rgb_to_yiq(x)
    expect_shape(yiq, x.shape, what="YIQ", inputs=inputs)
    expect_dtype(yiq, dtype, what="YIQ", input_name="image",
                 hint="cast the matrix to the image's dtype")
    tol = 1e-13 if dtype == np.float64 else 1e-6
    if compare(yiq, per_pixel(x.astype(np.float64), YIQ_FROM_RGB), rtol=0, atol=tol) is not None:
        expect_matrix(rgb_to_yiq, "rgb_to_yiq", T, "YIQ_FROM_RGB", MISTAKES_TO_YIQ, atol=1e-15)
    expect_close(yiq, per_pixel(x.astype(np.float64), ntsc_yiq_matrix()), what="YIQ",
                 against="the NTSC construction, pixel by pixel (to the table's 4 decimals)",
                 inputs=inputs, rtol=0, atol=2e-3)
    expect_close(yiq, per_pixel(x.astype(np.float64), YIQ_FROM_RGB), what="YIQ",
                 against="YIQ_FROM_RGB applied pixel by pixel (a loop)", inputs=inputs, rtol=0,
                 atol=tol)
    expect(np.array_equal(x, before), "rgb_to_yiq modified its input image")


@FAST
@given(shape=SHAPES, seed=SEEDS, three_d=st.booleans())
@example(shape=(1, 2, 3), seed=0, three_d=False)
def test_round_trips_both_ways(shape, seed, three_d):
    rng = np.random.default_rng(seed)
    N, H, W = shape
    x = rng.random((3, H, W) if three_d else (N, 3, H, W))
    inputs = {"image": x}
    back = yiq_to_rgb(rgb_to_yiq(x))
    expect_shape(back, x.shape, what="yiq_to_rgb(rgb_to_yiq(x))", inputs=inputs)
    if compare(back, x, rtol=0, atol=1e-14) is not None:
        expect_matrix(yiq_to_rgb, "yiq_to_rgb", T_INV, "the exact inverse of YIQ_FROM_RGB",
                      MISTAKES_TO_RGB, atol=1e-13)
    expect_close(back, x, what="yiq_to_rgb(rgb_to_yiq(x))", against="x", inputs=inputs, rtol=0,
                 atol=1e-14)
    z = rng.standard_normal(x.shape)  # any YIQ triple, also outside the RGB cube: no clipping
    expect_close(rgb_to_yiq(yiq_to_rgb(z)), z, what="rgb_to_yiq(yiq_to_rgb(z))",
                 against="z (any YIQ values: nothing may be clipped)", inputs={"z": z}, rtol=0,
                 atol=1e-14)
    x32 = x.astype(np.float32)
    back = yiq_to_rgb(rgb_to_yiq(x32))
    expect_dtype(back, np.float32, what="yiq_to_rgb(rgb_to_yiq(x))", input_name="x",
                 hint="cast the inverse matrix to the image's dtype")
    expect_close(back, x32, what="yiq_to_rgb(rgb_to_yiq(x))", against="x",
                 inputs={"x": x32}, rtol=0, atol=5e-6)


@FAST
@given(g=st.floats(0, 1), seed=SEEDS)
def test_a_gray_is_its_luminance_and_no_colour(g, seed):
    x = np.full((1, 3, 2, 3), g)
    yiq = rgb_to_yiq(x)
    expect_close(yiq[:, 0], np.full((1, 2, 3), g), what="Y of a gray", against=f"the gray {g:g}",
                 inputs={"image": x}, rtol=1e-14, atol=1e-15)
    expect_close(yiq[:, 1:], np.zeros((1, 2, 2, 3)), what="I, Q of a gray", against="0",
                 inputs={"image": x}, rtol=0, atol=1e-15)
    back = yiq_to_rgb(np.concatenate([np.full((1, 1, 2, 3), g), np.zeros((1, 2, 2, 3))], axis=1))
    expect_close(back, x, what="RGB of (Y, 0, 0)", against=f"the gray R = G = B = Y = {g:g}",
                 inputs={"image": x}, rtol=0, atol=1e-14)


@FAST
@given(seed=SEEDS, a=st.floats(-3, 3), c=st.floats(-3, 3))
def test_linear_and_per_pixel(seed, a, c):
    rng = np.random.default_rng(seed)
    x, y = rng.random((2, 1, 3, 4, 5))
    perm = rng.permutation(20)
    for f in (rgb_to_yiq, yiq_to_rgb):
        name = f.__name__
        expect_close(f(a * x + c * y), a * f(x) + c * f(y), what=f"{name}(a x + c y)",
                     against=f"a {name}(x) + c {name}(y) (a linear map)", inputs={"x": x},
                     rtol=0, atol=1e-13)
        shuffled = x.reshape(1, 3, 20)[..., perm].reshape(1, 3, 4, 5)
        expect_close(f(shuffled).reshape(1, 3, 20), f(x).reshape(1, 3, 20)[..., perm],
                     what=f"{name} of the shuffled pixels",
                     against=f"{name}(x) shuffled the same way (each pixel on its own)",
                     inputs={"x": x}, rtol=0, atol=1e-15)
