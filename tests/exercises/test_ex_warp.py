"""Exercise ex_warp: ``minist.temporal.sample_bilinear`` and ``minist.temporal.warp`` (lesson 12,
section 2: backward warping by bilinear interpolation, Eq. W of Ruder et al. 2016).

Checked without an answer: a known integer shift moves the frame exactly (read by indexing:
no interpolation is involved), zero flow is the identity, bilinear interpolation is exact on a
plane at any fractional position, positions outside the frame read 0 and are not *inside* while
the last row and column are, a literal 2 x 2 case by hand, dtypes and shapes; and the teacher's
values on seeded inputs (the equation written as loops, in the teacher's tree).

A failure says in one line what is wrong when that is cheap to tell: the flow followed the wrong
way (forward warping, :math:`x'(p - \\hat w)`), :math:`u` and :math:`v` swapped.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import (
    CheckError,
    compare,
    describe_inputs,
    expect,
    expect_close,
    expect_dtype,
    expect_shape,
    named,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stored import teacher_values

from minist.errors import MinistError
from minist.temporal import sample_bilinear, warp

pytestmark = pytest.mark.ex_warp

FAST = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)


def _flow(u, v, H, W, dtype=np.float64):
    return np.stack([np.full((H, W), u, dtype), np.full((H, W), v, dtype)])


def shifted(previous, du: int, dv: int):
    """``previous`` read at :math:`(i + dv, j + du)` by indexing, 0 outside: the warp along the
    integer backward flow (du, dv). Returns ``(image, inside)``."""
    _, _, H, W = previous.shape
    rows, cols = np.mgrid[0:H, 0:W]
    rows, cols = rows + dv, cols + du
    inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
    out = np.zeros_like(previous)
    out[0][:, inside] = previous[0][:, rows[inside], cols[inside]]
    return out, inside


def expect_warp_of_shift(warped, inside, previous, du, dv, inputs):
    """``warp`` along the integer flow (du, dv) is ``previous`` shifted: exactly in exact
    arithmetic, so to within the rounding of a few float operations on values in [0, 1] (an
    interpolation written ``top + a (bottom - top)`` rounds where ``a`` is 1); else say how."""
    __tracebackhide__ = True
    atol = 8 * np.finfo(previous.dtype).eps  # a handful of roundings of numbers <= 1
    want, want_inside = shifted(previous, du, dv)
    if compare(warped, want, rtol=0, atol=atol) is not None:
        for (a, b), why in ((((-du, -dv)), "you read x'(p - w^(p)); the backward flow says where "
                             "pixel p was in the previous frame: read x'(p + w^(p))"),
                            (((dv, du)), "u (flow[0]) and v (flow[1]) are swapped: u moves "
                             "along x, the columns; v along y, the rows")):
            if (a, b) != (du, dv) and compare(warped, shifted(previous, a, b)[0], rtol=0,
                                              atol=atol) is None:
                raise CheckError(f"warp along the integer flow (u, v) = ({du}, {dv}){_on(inputs)}"
                                 f": {why}")
    expect_close(warped, want, what="warped", against=f"the previous frame shifted by the integer "
                 f"flow (u, v) = ({du}, {dv})", inputs=inputs, rtol=0, atol=atol)
    expect(np.array_equal(inside, want_inside),
           f"inside vs where p + w^(p) lies in the frame, for the flow (u, v) = ({du}, {dv}), "
           f"on {previous.shape}: {int((inside != want_inside).sum())} pixels differ")


def _on(inputs) -> str:
    return f", on {describe_inputs(inputs)}"


@named("a known integer shift warps exactly")
@FAST
@given(C=st.integers(1, 3), H=st.integers(1, 7), W=st.integers(1, 7), du=st.integers(-3, 3),
       dv=st.integers(-3, 3), seed=SEEDS, dtype=st.sampled_from(["f4", "f8"]))
@example(C=3, H=5, W=6, du=2, dv=-1, seed=0, dtype="f8")  # first: u and v told apart
def test_a_known_integer_shift_warps_exactly(C, H, W, du, dv, seed, dtype):
    previous = np.random.default_rng(seed).uniform(size=(1, C, H, W)).astype(dtype)
    flow = _flow(du, dv, H, W, dtype)
    warped, inside = warp(previous, flow)
    inputs = {"previous": previous, "flow": flow}
    expect_shape(warped, previous.shape, what="warped", inputs=inputs)
    expect_shape(inside, (H, W), what="inside", inputs=inputs)
    expect_warp_of_shift(warped, inside, previous, du, dv, inputs)


@FAST
@given(C=st.integers(1, 3), H=st.integers(1, 6), W=st.integers(1, 6), seed=SEEDS)
@example(C=3, H=3, W=5, seed=0)
def test_zero_flow_is_the_identity(C, H, W, seed):
    previous = np.random.default_rng(seed).uniform(size=(1, C, H, W))
    warped, inside = warp(previous, np.zeros((2, H, W)))
    expect_close(warped, previous, what="warped", against="the previous frame itself (zero "
                 "flow)", inputs={"previous": previous}, rtol=0,
                 atol=8 * np.finfo(previous.dtype).eps)  # exact up to a few roundings
    expect(inside.dtype == bool and inside.all(), "inside is not True everywhere for a zero "
           f"flow on {previous.shape}: every p + 0 lies in the frame (the last row and column "
           "too)")


@named("bilinear interpolation is exact on a plane")
@FAST
@given(H=st.integers(2, 7), W=st.integers(2, 7), seed=SEEDS)
@example(H=4, W=6, seed=0)
def test_bilinear_interpolation_is_exact_on_a_plane(H, W, seed):
    """On :math:`I(y, x) = \\alpha x + \\beta y + \\gamma` bilinear interpolation gives the plane
    itself, anywhere between pixels: the warp reads :math:`I(p + \\hat w(p))`."""
    rng = np.random.default_rng(seed)
    alpha, beta, gamma = rng.uniform(-2, 2, 3)
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float64)
    plane = (alpha * cols + beta * rows + gamma)[None, None]
    flow = rng.uniform(-1.0, 1.0, (2, H, W))
    warped, inside = warp(plane, flow)
    y, x = rows + flow[1], cols + flow[0]
    want_inside = (y >= 0) & (y <= H - 1) & (x >= 0) & (x <= W - 1)
    inputs = {"plane": plane, "flow": flow}
    expect(np.array_equal(inside, want_inside), f"inside vs where 0 <= p + w^(p) <= (H-1, W-1), "
           f"on a flow (2, {H}, {W}): {int((inside != want_inside).sum())} pixels differ")
    want = alpha * x + beta * y + gamma
    got = warped[0, 0][want_inside]
    if compare(got, want[want_inside], rtol=1e-12, atol=1e-12) is not None:
        against = alpha * (cols - flow[0]) + beta * (rows - flow[1]) + gamma
        expect(compare(got, against[want_inside], rtol=1e-12, atol=1e-12) is not None,
               "warped vs the plane at p + w^(p): you read x'(p - w^(p)); the backward flow "
               "says where pixel p was in the previous frame: read x'(p + w^(p))")
        swapped = alpha * (cols + flow[1]) + beta * (rows + flow[0]) + gamma
        expect(compare(got, swapped[want_inside], rtol=1e-12, atol=1e-12) is not None,
               "warped vs the plane at p + w^(p): u (flow[0]) and v (flow[1]) are swapped: u "
               "moves along x, the columns; v along y, the rows")
    expect_close(got, want[want_inside], what="warped (where inside)",
                 against="the plane alpha x + beta y + gamma at p + w^(p)", inputs=inputs,
                 rtol=1e-12, atol=1e-12)
    expect(not warped[0, 0][~want_inside].any(), "warped is not 0 where p + w^(p) leaves the "
           f"frame, on a flow (2, {H}, {W})")


def test_a_pixel_warped_from_outside_the_image_reads_zero():
    rng = np.random.default_rng(3)
    H, W = 3, 4
    previous = rng.uniform(0.5, 1.0, (1, 2, H, W))
    cols = np.arange(W, dtype=np.float64)[None, :].repeat(H, 0)
    rows = np.arange(H, dtype=np.float64)[:, None].repeat(W, 1)
    cases = (  # (u, v, what, expected inside, expected value)
        (W - 1 - cols, 0 * cols, "onto the last column", np.ones((H, W), bool),
         previous[:, :, :, [W - 1] * W]),
        (0 * cols, H - 1 - rows, "onto the last row", np.ones((H, W), bool),
         previous[:, :, [H - 1] * H, :]),
        (W - 1 - cols + 1e-9, 0 * cols, "just past the last column", np.zeros((H, W), bool),
         np.zeros_like(previous)),
        (-cols - 1e-9, 0 * cols, "just before the first column", np.zeros((H, W), bool),
         np.zeros_like(previous)),
        (0 * cols, -rows - 0.5, "half a row above the first", np.zeros((H, W), bool),
         np.zeros_like(previous)),
    )
    for u, v, what, want_inside, want in cases:
        flow = np.stack([u, v])
        warped, inside = warp(previous, flow)
        expect(np.array_equal(inside, want_inside),
               f"inside for every pixel warped {what} of a {H}x{W} image: got "
               f"{inside.astype(int).tolist()}, expected all {bool(want_inside.all())} (a point "
               "is inside when 0 <= y <= H-1 and 0 <= x <= W-1)")
        expect_close(warped, want, what=f"warped (every pixel read {what})",
                     against="the last column or row itself" if want_inside.all() else
                     "0 (outside the frame)", inputs={"previous": previous}, rtol=1e-12,
                     atol=1e-15)


def test_sample_bilinear_by_hand():
    """Image [[0, 1], [2, 3]] (the plane x + 2y): (y, x) = (0.5, 0.25) reads 0.125 * 1 +
    0.375 * 2 + 0.125 * 3 = 1.25; (1, 1) reads 3; (0, 0.5) reads 0.5; (1.5, 0) is outside."""
    image = np.array([[[[0.0, 1.0], [2.0, 3.0]]]])
    rows = np.array([[0.5, 1.0], [0.0, 1.5]])
    cols = np.array([[0.25, 1.0], [0.5, 0.0]])
    values, inside = sample_bilinear(image, rows, cols)
    inputs = {"image": image, "rows": rows, "cols": cols}
    expect_shape(values, (1, 1, 2, 2), what="values", inputs=inputs)
    expect(np.array_equal(inside, [[True, True], [True, False]]),
           f"inside of the positions (0.5, 0.25), (1, 1), (0, 0.5), (1.5, 0) in a 2x2 image: "
           f"got {inside.tolist()}, expected [[True, True], [True, False]]")
    expect_close(values, [[[[1.25, 3.0], [0.5, 0.0]]]], what="values",
                 against="(1-a)(1-b) I_rs + (1-a) b I_r,s+1 + a (1-b) I_r+1,s + a b I_r+1,s+1 by "
                 "hand", inputs=inputs, rtol=0, atol=1e-15)


def test_dtypes_shapes_and_a_flow_of_the_wrong_shape():
    rng = np.random.default_rng(4)
    previous = rng.uniform(size=(1, 3, 4, 5)).astype(np.float32)
    warped, inside = warp(previous, rng.uniform(-1, 1, (2, 4, 5)))  # a float64 flow
    expect_dtype(warped, np.float32, what="warped", input_name="previous with a float64 flow",
                 hint="the warped image keeps the image's dtype")
    expect_shape(warped, (1, 3, 4, 5), what="warped", inputs={"previous": previous})
    expect(np.dtype(getattr(inside, "dtype", object)) == np.dtype(bool) and inside.shape == (4, 5),
           f"inside is {getattr(inside, 'dtype', type(inside))} {np.shape(inside)}; expected a "
           "bool (H, W) = (4, 5) array")
    values, _ = sample_bilinear(previous, rng.uniform(0, 3, (4, 5)), rng.uniform(0, 4, (4, 5)))
    expect_dtype(values, np.float32, what="sample_bilinear's values",
                 input_name="image with float64 positions", hint="keep the image's dtype")
    for bad in (np.zeros((2, 5, 4)), np.zeros((3, 4, 5)), np.zeros((4, 5))):
        try:
            warp(previous, bad)
        except MinistError as err:
            expect("warp" in str(err), f"the error for a flow of shape {bad.shape} does not name "
                   f"warp: {err}")
            continue
        raise CheckError(f"warp accepted a flow of shape {bad.shape} for an image (1, 3, 4, 5): "
                         "raise the MinistError of _check_flow(backward_flow, H, W, 'warp')")


def test_equals_the_teachers_values_on_seeded_inputs():
    for (previous, flow), (want, want_inside) in teacher_values("ex_warp", "warp"):
        warped, inside = warp(previous, flow)
        inputs = {"previous": previous, "flow": flow}
        tol = 1e-5 if previous.dtype == np.float32 else 1e-12
        expect_dtype(warped, previous.dtype, what="warped", input_name="previous")
        expect(np.array_equal(inside, want_inside), f"inside vs the teacher's, on "
               f"{previous.shape}: {int((np.asarray(inside) != want_inside).sum())} pixels differ")
        expect_close(warped, want, what="warped", against="the teacher's", inputs=inputs,
                     rtol=tol, atol=tol)
    for (image, rows, cols), (want, want_inside) in teacher_values("ex_warp", "sample_bilinear"):
        values, inside = sample_bilinear(image, rows, cols)
        expect(np.array_equal(inside, want_inside), f"sample_bilinear's inside vs the "
               f"teacher's, on {image.shape}")
        expect_close(values, want, what="values", against="the teacher's", inputs={
            "image": image, "rows": rows, "cols": cols}, rtol=1e-12, atol=1e-14)
