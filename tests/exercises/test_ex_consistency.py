"""Exercise ex_consistency: ``minist.temporal.disoccluded``, ``motion_boundaries`` and
``reliability`` (lesson 12, section 3: where the optical flow can be trusted, Ruder et al. 2016
§3.2).

Checked without an answer, on flows whose truth is known: a square moving over a still
background uncovers exactly the pixels the check must find, and its edges are the motion
boundaries; a pan is consistent except where it leaves the frame; the thresholds of (C1) and
(C2) on literal flows, on both sides (their absolute and relative terms); :math:`c` is 1
exactly where neither test holds, 0 elsewhere, in the flow's dtype; and the teacher's values on
seeded flows (the equations written as loops, in the teacher's tree). ``disoccluded`` uses
``warp`` (exercise ``ex_warp``, written first).
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnose import CheckError, expect, expect_dtype, named
from hypothesis import example, given, settings
from hypothesis import strategies as st
from stored import teacher_values

from minist.errors import MinistError
from minist.temporal import disoccluded, motion_boundaries, reliability

pytestmark = pytest.mark.ex_consistency

FAST = settings(max_examples=25, deadline=None)


def _flow(u, v, H, W, dtype=np.float32):
    return np.stack([np.full((H, W), u, dtype), np.full((H, W), v, dtype)])


def _pixels(mask) -> str:
    rows, cols = np.nonzero(mask)
    listed = [f"({r}, {c})" for r, c in zip(rows[:4].tolist(), cols[:4].tolist(), strict=True)]
    more = f" and {len(rows) - 4} more" if len(rows) > 4 else ""
    return ", ".join(listed) + more if listed else "none"


def expect_mask(got, want, *, what: str, on: str, hint: str = "") -> None:
    """A boolean ``(H, W)`` mask must be exactly ``want``: say which pixels differ."""
    __tracebackhide__ = True
    got = np.asarray(got)
    expect(got.shape == want.shape, f"{what} has shape {got.shape}, expected {want.shape}, on {on}")
    expect(got.dtype == bool, f"{what} is {got.dtype}, expected a bool array, on {on}")
    missed, extra = want & ~got, got & ~want
    if missed.any() or extra.any():
        raise CheckError(f"{what} on {on}: missed the pixels (row, col) {_pixels(missed)}; "
                         f"found the pixels {_pixels(extra)} as well{hint}")


def _moving_square():
    """A 6x6 square moves 4 px right over a still background (24 x 24): in frame t-1 at columns
    6-11, in frame t at columns 10-15, rows 9-14. The forward flow (t-1 -> t) is 4 on the
    square's pixels of t-1; the backward flow (t -> t-1) is -4 on its pixels of t; frame t shows
    columns 6-9 of those rows, which the square hid in t-1."""
    H = W = 24
    rows = slice(9, 15)
    forward = np.zeros((2, H, W), np.float32)
    forward[0, rows, 6:12] = 4
    backward = np.zeros((2, H, W), np.float32)
    backward[0, rows, 10:16] = -4
    revealed = np.zeros((H, W), bool)
    revealed[rows, 6:10] = True
    return forward, backward, revealed


SQUARE = "a 6x6 square moving 4 px right over a still background (24 x 24)"


def test_the_consistency_check_finds_exactly_the_uncovered_pixels():
    forward, backward, revealed = _moving_square()
    found = disoccluded(forward, backward)
    unwarped = np.zeros_like(revealed)
    unwarped[9:15, 6:10] = unwarped[9:15, 12:16] = True  # where w(p) + w^(p) != 0, unwarped
    if np.array_equal(np.asarray(found), unwarped):
        raise CheckError(f"disoccluded on {SQUARE}: you compared w(p) with w^(p) at the same "
                         "pixel; warp the forward flow into frame t first, w~(p) = w(p + w^(p))")
    expect_mask(found, revealed, what="disoccluded", on=SQUARE,
                hint=" (frame t shows columns 6-9 of rows 9-14, which the square hid in t-1)")


def test_a_pan_is_consistent_except_where_it_leaves_the_frame():
    """Frame t is frame t-1 moved 3 px right and 2 px up: w = (3, -2), w^ = (-3, 2) everywhere;
    the pixels of t whose p + w^(p) lies left of column 0 or below the last row were not in
    frame t-1."""
    H, W = 8, 10
    forward, backward = _flow(3, -2, H, W), _flow(-3, 2, H, W)
    outside = np.zeros((H, W), bool)
    outside[:, :3] = outside[H - 2 :, :] = True
    on = "a pan by (u, v) = (3, -2) px, 8 x 10"
    expect_mask(disoccluded(forward, backward), outside, what="disoccluded", on=on,
                hint=" (only the pixels whose p + w^(p) leaves the frame)")
    expect_mask(motion_boundaries(backward), np.zeros((H, W), bool), what="motion_boundaries",
                on=on, hint=" (a uniform flow changes nowhere)")
    c = reliability(forward, backward)
    expect_dtype(c, np.float32, what="c", input_name="flows", hint="the flow's dtype")
    expect(np.array_equal(c, (~outside).astype(np.float32)),
           f"c on {on}: expected 1 where the pan stays in the frame and 0 where it leaves it")
    for bad in (np.zeros((2, H, W + 1), np.float32), np.zeros((3, H, W), np.float32)):
        try:
            disoccluded(bad, backward)
        except MinistError:
            continue
        raise CheckError(f"disoccluded accepted a forward flow of shape {bad.shape} with a "
                         f"backward flow {backward.shape}: raise the MinistError of _check_flow")


@named("the disocclusion threshold: 0.01 (|w~|^2 + |w^|^2) + 0.5")
def test_the_disocclusion_threshold():
    """Flows that disagree by e px along x: |w~ + w^|^2 = e^2 against 0.01 (|w~|^2 + |w^|^2) +
    0.5. For w^ = -3: e = 0.5 gives 0.25 < 0.71 (consistent), e = 1 gives 1 > 0.75
    (disoccluded). For w^ = -30, e = 1: 1 < 0.01 (961 + 900) + 0.5 = 19.11 (consistent: the
    allowed disagreement grows with the flow)."""
    H, W = 4, 40
    for back, e, want in ((-3, 0.5, False), (-3, 1.0, True), (-30, 1.0, False)):
        found = np.asarray(disoccluded(_flow(-back + e, 0, H, W), _flow(back, 0, H, W)))
        expected = np.zeros((H, W), bool)
        expected[:, : -back] = True  # p + w^(p) left of the first column
        expected[:, -back:] = want
        mismatch, energy = e**2, (-back + e) ** 2 + back**2
        threshold = 0.01 * energy + 0.5
        expect_mask(found, expected, what="disoccluded",
                    on=f"w = ({-back + e}, 0), w^ = ({back}, 0) on 4 x 40",
                    hint=f" (|w~ + w^|^2 = {mismatch:g} {'>' if want else '<'} 0.01 (|w~|^2 + "
                         f"|w^|^2) + 0.5 = {threshold:.4g} inside the frame)")


@named("the motion boundary threshold: 0.01 |w^|^2 + 0.002")
def test_the_motion_boundary_threshold():
    """Ramps of the backward flow: a slope s gives |grad u|^2 = s^2 everywhere (central and
    one-sided differences agree on a ramp), against 0.01 |w^|^2 + 0.002."""
    H, W = 5, 6
    rows, cols = np.mgrid[0:H, 0:W].astype(np.float32)
    zero = np.zeros((H, W), np.float32)
    cases = (  # (u, v, what, boundary everywhere?)
        (0.03 * cols, zero, "u = 0.03 x: 0.0009 < 0.002 + 0.01 |w^|^2", False),
        (0.1 * cols, zero, "u = 0.1 x: 0.01 > 0.002 + 0.01 |w^|^2 (at most 0.0045)", True),
        (zero, 0.1 * rows, "v = 0.1 y: 0.01 > 0.002 + 0.01 |w^|^2 (at most 0.0036)", True),
        (10 + 0.1 * cols, zero, "u = 10 + 0.1 x: 0.01 < 0.002 + 0.01 |w^|^2 (at least 1)",
         False),
    )
    for u, v, what, everywhere in cases:
        expect_mask(motion_boundaries(np.stack([u, v])), np.full((H, W), everywhere),
                    what="motion_boundaries", on=f"the ramp {what}")


def test_motion_boundaries_are_the_edges_of_the_moving_square():
    """Central differences see the square's edge of the backward flow (a step of 4 px) on the
    pixel on each side: |grad u^|^2 = (4/2)^2 = 4 > 0.01 * 16 + 0.002 inside, 4 > 0.002
    outside."""
    _, backward, _ = _moving_square()
    expected = np.zeros((24, 24), bool)
    expected[9:15, [9, 10, 15, 16]] = True  # left and right edges of columns 10-15
    expected[[8, 9, 14, 15], 10:16] = True  # top and bottom edges of rows 9-14
    expect_mask(motion_boundaries(backward), expected, what="motion_boundaries", on=SQUARE,
                hint=" (central differences: the pixel on each side of the square's edge)")


@named("c is 1 exactly where neither test holds, in [0, 1]")
@FAST
@given(H=st.integers(2, 8), W=st.integers(2, 8), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(["f4", "f8"]))
@example(H=3, W=5, seed=0, dtype="f4")
def test_c_is_one_exactly_where_neither_test_holds(H, W, seed, dtype):
    rng = np.random.default_rng(seed)
    backward = (rng.uniform(-2, 2, (2, 1, 1)) + 0.3 * rng.standard_normal((2, H, W))).astype(dtype)
    forward = (-backward + rng.uniform(-1, 1, (2, H, W))).astype(dtype)
    c = reliability(forward, backward)
    on = f"random flows (2, {H}, {W}) {np.dtype(dtype)}"
    expect_dtype(c, dtype, what="c", input_name="flows", hint="the backward flow's dtype")
    expect(np.shape(c) == (H, W), f"c has shape {np.shape(c)}, expected ({H}, {W}), on {on}")
    expect(bool(np.all((c == 0) | (c == 1))), f"c on {on} holds values other than 0 and 1: "
           f"{sorted(set(np.asarray(c).ravel().tolist()))[:5]}")
    unreliable = np.asarray(disoccluded(forward, backward)) | np.asarray(
        motion_boundaries(backward))
    trusted = ~unreliable
    expect(np.array_equal(c == 1, trusted), f"c on {on} is not 1 exactly where neither "
           "disoccluded nor motion_boundaries holds (and 0 where either does)")


def test_equals_the_teachers_values_on_seeded_inputs():
    for (forward, backward), (occluded, boundary, c_t) in teacher_values("ex_consistency",
                                                                         "consistency"):
        on = f"the teacher's seeded flows {backward.shape} {backward.dtype}"
        expect_mask(disoccluded(forward, backward), occluded, what="disoccluded", on=on)
        expect_mask(motion_boundaries(backward), boundary, what="motion_boundaries", on=on)
        c = reliability(forward, backward)
        expect_dtype(c, backward.dtype, what="c", input_name="flows")
        expect(np.array_equal(c, c_t), f"c vs the teacher's, on {on}: "
               f"{int((np.asarray(c) != c_t).sum())} pixels differ")
