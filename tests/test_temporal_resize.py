"""minist.temporal.resize_flow / resize_weights: a flow computed at the output size used at a
coarser scale of a coarse-to-fine clip (minist video --scales)."""

from __future__ import annotations

import numpy as np

from minist.temporal import resize_flow, resize_weights, warp


def test_a_known_shift_resized_is_the_scaled_shift():
    flow = np.empty((2, 40, 48), np.float32)
    flow[0], flow[1] = 6.0, -4.0  # u = 6 px along the columns, v = -4 px along the rows
    half = resize_flow(flow, (20, 36))  # rows halved, columns three quarters
    assert half.shape == (2, 20, 36) and half.dtype == np.float32
    rounding = 4 * np.finfo(np.float32).eps  # the bilinear weights sum to 1 up to rounding
    np.testing.assert_allclose(half[0], 4.5, rtol=rounding, atol=0)  # 6 * 36/48
    np.testing.assert_allclose(half[1], -2.0, rtol=rounding, atol=0)  # -4 * 20/40
    assert resize_flow(flow, (40, 48)) is flow


def test_a_resized_pan_warps_the_resized_frames():
    """A pan of 8 px at 64 x 64 is one of 4 px at 32 x 32: the previous frame, downsampled by
    averaging 2 x 2 blocks, warped along the resized flow, is the current frame downsampled
    (exactly, away from the edge the pan uncovers: both read the same picture on whole
    pixels)."""
    rng = np.random.default_rng(0)
    picture = rng.uniform(size=(1, 3, 64, 64 + 8)).astype(np.float32)
    previous, current = picture[..., 8:], picture[..., :64]  # the camera moved 8 px left

    def half(image):
        return image.reshape(1, 3, 32, 2, 32, 2).mean(axis=(3, 5))

    backward = np.zeros((2, 64, 64), np.float32)
    backward[0] = -8.0  # each pixel of the current frame was 8 px further left... in previous
    full, _ = warp(previous, backward)
    assert np.allclose(full[..., 8:], current[..., 8:])
    small, inside = warp(half(previous), resize_flow(backward, (32, 32)))
    assert np.allclose(small[..., 4:], half(current)[..., 4:], atol=1e-6)
    assert not inside[:, :4].any() and inside[:, 4:].all()


def test_resized_weights_stay_between_0_and_1_and_keep_uniform_regions():
    c = np.ones((40, 48), np.float32)
    c[:, :18] = 0  # unreliable on the left
    small = resize_weights(c, (10, 12))  # column k reads the source at 4k + 1.5
    assert small.shape == (10, 12) and small.dtype == np.float32
    assert np.array_equal(small[:, :4], np.zeros((10, 4), np.float32))  # reads <= 13.5
    assert np.array_equal(small[:, 4], np.full(10, 0.5, np.float32))  # 17.5: half of each
    assert np.array_equal(small[:, 5:], np.ones((10, 7), np.float32))  # reads >= 21.5
