"""minist.temporal against its equations written as loops over the pixels, one pixel at a time.

The loops here are the teacher's independent implementation of the three video exercises
(``ex_warp``, ``ex_consistency``, ``ex_temporal_loss``, lesson 12): the exercise checks compare
a student's functions with their values on seeded inputs (``tests/exercises/stored.py``:
computed here in the teacher's tree, stored into a student version by
``tutorials/make_student_version.py``). This file is the teacher's own (a student version
holds no ``tests/test_*.py``): it is a working answer.
"""

from __future__ import annotations

import math

import numpy as np

from minist.temporal import (
    BOUNDARY_ABSOLUTE,
    BOUNDARY_RELATIVE,
    DISOCCLUSION_ABSOLUTE,
    DISOCCLUSION_RELATIVE,
    disoccluded,
    motion_boundaries,
    reliability,
    sample_bilinear,
    temporal_loss,
    warp,
)


def bilinear_loops(image, rows, cols):
    """(W)'s interpolation, pixel by pixel: ``(values, inside)`` as ``sample_bilinear``."""
    _, C, H, W = image.shape
    values = np.zeros((1, C) + rows.shape, image.dtype)
    inside = np.zeros(rows.shape, bool)
    for i in range(rows.shape[0]):
        for j in range(rows.shape[1]):
            y, x = float(rows[i, j]), float(cols[i, j])
            if not (0 <= y <= H - 1 and 0 <= x <= W - 1):
                continue
            inside[i, j] = True
            r, s = math.floor(y), math.floor(x)
            a, b = y - r, x - s
            for c in range(C):
                total = 0.0
                for dr, wr in ((0, 1 - a), (1, a)):
                    for ds, ws in ((0, 1 - b), (1, b)):
                        if wr * ws != 0:  # the pixel past the last row or column has weight 0
                            total += wr * ws * float(image[0, c, r + dr, s + ds])
                values[0, c, i, j] = total
    return values, inside


def warp_loops(previous, backward_flow):
    """(W): ``previous`` read at :math:`p + \\hat w(p)`; ``(warped, inside)`` as ``warp``."""
    _, H, W = backward_flow.shape
    rows = np.arange(H, dtype=np.float64)[:, None] + backward_flow[1].astype(np.float64)
    cols = np.arange(W, dtype=np.float64)[None, :] + backward_flow[0].astype(np.float64)
    return bilinear_loops(previous, rows, cols)


def _differences(f):
    """Central differences inside, one-sided on the border, along rows and along columns."""
    H, W = f.shape
    d_rows, d_cols = np.zeros((H, W)), np.zeros((H, W))
    for i in range(H):
        for j in range(W):
            if i == 0:
                d_rows[i, j] = f[1, j] - f[0, j]
            elif i == H - 1:
                d_rows[i, j] = f[H - 1, j] - f[H - 2, j]
            else:
                d_rows[i, j] = (f[i + 1, j] - f[i - 1, j]) / 2
            if j == 0:
                d_cols[i, j] = f[i, 1] - f[i, 0]
            elif j == W - 1:
                d_cols[i, j] = f[i, W - 1] - f[i, W - 2]
            else:
                d_cols[i, j] = (f[i, j + 1] - f[i, j - 1]) / 2
    return d_rows, d_cols


def consistency_loops(forward_flow, backward_flow):
    """(C1), (C2) and the weights c, pixel by pixel: ``(disoccluded, boundaries, c)``."""
    _, H, W = backward_flow.shape
    w_tilde, inside = warp_loops(forward_flow.astype(np.float64)[None], backward_flow)
    f = backward_flow.astype(np.float64)
    gradients = [_differences(f[0]), _differences(f[1])]
    occluded, boundary = np.zeros((H, W), bool), np.zeros((H, W), bool)
    for i in range(H):
        for j in range(W):
            wt = w_tilde[0, :, i, j]
            wh = f[:, i, j]
            mismatch = (wt[0] + wh[0]) ** 2 + (wt[1] + wh[1]) ** 2
            energy = wt[0] ** 2 + wt[1] ** 2 + wh[0] ** 2 + wh[1] ** 2
            occluded[i, j] = (mismatch > DISOCCLUSION_RELATIVE * energy + DISOCCLUSION_ABSOLUTE
                              or not inside[i, j])
            change = sum(d_rows[i, j] ** 2 + d_cols[i, j] ** 2 for d_rows, d_cols in gradients)
            boundary[i, j] = change > BOUNDARY_RELATIVE * (wh[0] ** 2 + wh[1] ** 2) \
                + BOUNDARY_ABSOLUTE
    c = (~(occluded | boundary)).astype(backward_flow.dtype)
    return occluded, boundary, c


def temporal_loss_loops(x, warped, weights):
    """(T) and its gradient, term by term: each :math:`c_k (x_k - \\omega_k)^2 / D` has the
    derivative :math:`2 c_k (x_k - \\omega_k) / D` in :math:`x_k` and none in the others."""
    _, C, H, W = x.shape
    D = C * H * W
    total, grad = 0.0, np.zeros(x.shape, x.dtype)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                weight = float(np.asarray(weights[i, j], x.dtype))
                diff = float(x[0, c, i, j]) - float(np.asarray(warped[0, c, i, j], x.dtype))
                total += weight * diff * diff
                grad[0, c, i, j] = 2.0 * weight * diff / D
    return np.asarray(total / D, dtype=x.dtype), grad


# ------------------------------------------------------------- minist.temporal against them


def _flows(rng, H, W):
    """A pair of flows with a moving block, small noise and a few inconsistent pixels."""
    backward = np.stack([np.full((H, W), -1.5), np.full((H, W), 0.5)])
    backward += 0.02 * rng.standard_normal((2, H, W))
    backward[0, H // 4 : H // 2 + 1, W // 3 : W // 3 + 3] = -4.0
    forward = -backward + 0.05 * rng.standard_normal((2, H, W))
    forward[:, rng.uniform(size=(H, W)) < 0.2] += 1.2
    return forward, backward


def test_warp_equals_the_loops_on_random_flows():
    rng = np.random.default_rng(0)
    for H, W, dtype in ((5, 7, np.float64), (1, 4, np.float64), (6, 6, np.float32)):
        previous = rng.uniform(size=(1, 3, H, W)).astype(dtype)
        flow = rng.uniform(-2.5, 2.5, (2, H, W)).astype(dtype)
        warped, inside = warp(previous, flow)
        want, want_inside = warp_loops(previous, flow)
        np.testing.assert_array_equal(inside, want_inside)
        np.testing.assert_allclose(warped, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                   atol=1e-6 if dtype == np.float32 else 1e-14)
    rows, cols = rng.uniform(-1, 6, (3, 4)), rng.uniform(-1, 5, (3, 4))
    image = rng.uniform(size=(1, 2, 5, 4))
    got, got_inside = sample_bilinear(image, rows, cols)
    want, want_inside = bilinear_loops(image, rows, cols)
    np.testing.assert_array_equal(got_inside, want_inside)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_consistency_equals_the_loops_on_flows_with_a_moving_block():
    rng = np.random.default_rng(1)
    forward, backward = _flows(rng, 9, 11)
    occluded, boundary, c = consistency_loops(forward, backward)
    assert 0 < occluded.sum() < occluded.size and 0 < boundary.sum() < boundary.size
    np.testing.assert_array_equal(disoccluded(forward, backward), occluded)
    np.testing.assert_array_equal(motion_boundaries(backward), boundary)
    np.testing.assert_array_equal(reliability(forward, backward), c)


def test_temporal_loss_equals_the_loops():
    rng = np.random.default_rng(2)
    x, warped = rng.uniform(size=(2, 1, 3, 4, 5))
    weights = rng.uniform(size=(4, 5)) * (rng.uniform(size=(4, 5)) > 0.3)
    value, grad = temporal_loss(x, warped, weights)
    want, want_grad = temporal_loss_loops(x, warped, weights)
    np.testing.assert_allclose(value, want, rtol=1e-13)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-13, atol=1e-16)
