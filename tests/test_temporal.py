"""Temporal consistency (minist.temporal, Ruder et al. 2016): warping against known shifts, the
consistency check and motion boundaries on flows whose occlusions are known, the temporal loss's
value and its gradient by finite differences in float64, long-term weights and the multi-pass
blend on literal values."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient

from minist.errors import MinistError
from minist.temporal import (
    blend_neighbour,
    disoccluded,
    long_term_weights,
    motion_boundaries,
    reliability,
    sample_bilinear,
    temporal_loss,
    warp,
)


def _flow(u, v, shape):
    return np.stack([np.full(shape, u, np.float32), np.full(shape, v, np.float32)])


def test_warping_along_a_known_shift_gives_the_next_frame():
    """Frame t is frame t-1 moved 2 px right and 1 px down: each pixel of t was 2 px left and
    1 px up in t-1, so the backward flow is (-2, -1) and the warped previous frame is frame t
    wherever that point lies in frame t-1."""
    rng = np.random.default_rng(0)
    previous = rng.uniform(size=(1, 3, 12, 16)).astype(np.float32)
    current = np.zeros_like(previous)
    current[:, :, 1:, 2:] = previous[:, :, :-1, :-2]
    warped, inside = warp(previous, _flow(-2, -1, (12, 16)))
    expected_inside = np.ones((12, 16), bool)
    expected_inside[0, :] = expected_inside[:, :2] = False
    np.testing.assert_array_equal(inside, expected_inside)
    np.testing.assert_array_equal(warped[:, :, 1:, 2:], current[:, :, 1:, 2:])
    assert not warped[:, :, ~inside].any()  # no value where the point left the frame


def test_bilinear_reads_between_pixels_exactly_on_a_plane():
    """On a plane I(r, c) = 2c + 3r bilinear interpolation is exact: a flow of (0.25, 0.5)
    reads 2 * 0.25 + 3 * 0.5 = 2.0 more than the pixel itself."""
    rows, cols = np.mgrid[0:6, 0:7].astype(np.float64)
    image = (2 * cols + 3 * rows)[None, None]
    warped, inside = warp(image, np.stack([np.full((6, 7), 0.25), np.full((6, 7), 0.5)]))
    assert inside[:-1, :-1].all() and not inside[-1].any() and not inside[:, -1].any()
    np.testing.assert_allclose(warped[0, 0, :-1, :-1], image[0, 0, :-1, :-1] + 2.0, rtol=0,
                               atol=1e-12)
    values, _ = sample_bilinear(image, np.array([[5.0]]), np.array([[6.0]]))  # the far corner
    assert values[0, 0, 0, 0] == 2 * 6 + 3 * 5


def _moving_square():
    """A 6x6 square moves 4 px right over a still background (24 x 24). Frame t-1: the square
    at columns 6-11; frame t: columns 10-15. Returns the forward flow (t-1 -> t), the backward
    flow (t -> t-1) and the pixels of frame t that frame t-1 does not show (columns 6-9 of the
    square's rows: uncovered by the move)."""
    H = W = 24
    rows = slice(9, 15)
    forward = np.zeros((2, H, W), np.float32)
    forward[0, rows, 6:12] = 4  # the square's pixels in t-1 move 4 px right
    backward = np.zeros((2, H, W), np.float32)
    backward[0, rows, 10:16] = -4  # the square's pixels in t came from 4 px left
    revealed = np.zeros((H, W), bool)
    revealed[rows, 6:10] = True
    return forward, backward, revealed


def test_the_consistency_check_finds_exactly_the_uncovered_pixels():
    forward, backward, revealed = _moving_square()
    found = disoccluded(forward, backward)
    np.testing.assert_array_equal(found, revealed)


def test_consistent_flows_of_a_pan_are_reliable_except_where_they_leave_the_frame():
    forward, backward = _flow(3, 0, (10, 10)), _flow(-3, 0, (10, 10))
    found = disoccluded(forward, backward)
    assert found[:, :3].all() and not found[:, 3:].any()
    assert not motion_boundaries(backward).any()  # a uniform flow has no boundary
    np.testing.assert_array_equal(reliability(forward, backward), (~found).astype(np.float32))


def test_motion_boundaries_are_the_edges_of_the_moving_square():
    """Central differences see the square's edge of the backward flow (a step of 4 px) on the
    pixel on each side: |grad u^|^2 = (4/2)^2 = 4 > 0.01 * 16 + 0.002 inside, 4 > 0.002
    outside."""
    _, backward, _ = _moving_square()
    found = motion_boundaries(backward)
    expected = np.zeros((24, 24), bool)
    expected[9:15, [9, 10, 15, 16]] = True  # left and right edges of columns 10-15
    expected[[8, 9, 14, 15], 10:16] = True  # top and bottom edges of rows 9-14
    np.testing.assert_array_equal(found, expected)


def test_temporal_loss_by_hand():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # (1, 1, 2, 2): D = 4
    warped = np.array([[[[0.0, 2.0], [1.0, 0.0]]]])
    c = np.array([[1.0, 1.0], [0.5, 0.0]])
    value, grad = temporal_loss(x, warped, c)
    assert float(value) == (1 * 1 + 0 + 0.5 * 4 + 0) / 4  # 0.75
    np.testing.assert_array_equal(grad, [[[[0.5, 0.0], [0.5, 0.0]]]])  # (2/4) c (x - omega)


def test_temporal_loss_gradient_by_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(1, 3, 5, 4))
    warped = rng.uniform(size=(1, 3, 5, 4))
    c = (rng.uniform(size=(5, 4)) > 0.3).astype(np.float64)
    _, grad = temporal_loss(x, warped, c)
    numerical = numerical_gradient(lambda z: temporal_loss(z, warped, c)[0], x, np.array(1.0))
    np.testing.assert_allclose(grad, numerical, rtol=1e-6, atol=1e-9)


def test_temporal_loss_refuses_shapes_that_disagree():
    with pytest.raises(MinistError, match="temporal_loss: image"):
        temporal_loss(np.zeros((1, 3, 4, 4)), np.zeros((1, 3, 4, 4)), np.ones((4, 5)))


def test_long_term_weights_count_each_frame_where_no_nearer_one_does():
    c1, c2, c3 = (np.array(v, float) for v in ([1, 0, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]))
    long = long_term_weights([c1, c2, c3])
    np.testing.assert_array_equal(long[0], [1, 0, 1, 0])
    np.testing.assert_array_equal(long[1], [0, 1, 0, 0])
    np.testing.assert_array_equal(long[2], [0, 0, 0, 1])


def test_multi_pass_blend():
    current = np.array([[[[0.2, 0.2]]]])
    neighbour = np.array([[[[1.0, 1.0]]]])
    c = np.array([[1.0, 0.0]])
    np.testing.assert_allclose(blend_neighbour(current, neighbour, c, 0.5), [[[[0.6, 0.2]]]])
    np.testing.assert_allclose(blend_neighbour(current, neighbour, c, 1.0), [[[[1.0, 0.2]]]])
    np.testing.assert_allclose(blend_neighbour(current, neighbour, c, 0.0), current)
    with pytest.raises(MinistError, match="--blend-weight"):
        blend_neighbour(current, neighbour, c, 1.5)
