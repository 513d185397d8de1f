"""One frame of a clip (minist.video.frame, issue 19): the temporal term inside a frame's
problem and its gradient, the term at a coarser scale, which flows pair a frame with its
neighbour on a forward and a backward pass, the start of a frame on the first pass and on a
later one, and the temporal error of a painted clip -- on made-up flows, without painting."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error

from minist import color
from minist.color import LuminanceView
from minist.images import resize_to
from minist.objective import Evaluation, LossParts
from minist.problem import Problem, TemporalTerm, VideoLossParts
from minist.temporal import long_term_weights, resize_flow, warp
from minist.video.flow import PairFlows, pairs_for
from minist.video.frame import (
    later_pass_start,
    neighbour_flows,
    start_image,
    temporal_error,
    temporal_term_at,
)


class QuadraticObjective:
    """A stand-in for Eq. 7 with a known gradient: sum(x^2) / 2 (content), 0, 0."""

    def evaluate(self, net, x):
        return Evaluation(float(np.sum(x * x) / 2), x.copy(), LossParts(float(np.sum(x * x) / 2),
                                                                        0.0, 0.0))


@pytest.mark.parametrize("luminance", [False, True])
def test_temporal_term_gradient_matches_finite_differences_float64(luminance):
    rng = np.random.default_rng(1)
    channels = 1 if luminance else 3
    shape = (1, channels, 5, 6)
    x = rng.uniform(size=shape)
    warped = [rng.uniform(size=shape), rng.uniform(size=shape)]
    weights = long_term_weights([(rng.uniform(size=(5, 6)) > 0.3).astype(np.float64),
                                 (rng.uniform(size=(5, 6)) > 0.3).astype(np.float64)])
    view = LuminanceView(rng.uniform(size=(1, 3, 5, 6))) if luminance else None
    problem = Problem(None, QuadraticObjective(), view, 6, TemporalTerm(warped, weights, 7.5))
    e = problem(x)
    assert isinstance(e.parts, VideoLossParts)
    expected = sum(float(np.sum(c * (x - w) ** 2)) / x.size for w, c in zip(warped, weights,
                                                                               strict=True))
    assert e.parts.temporal == pytest.approx(expected, rel=1e-12)
    numeric = numerical_gradient(lambda v: np.asarray(problem(v).loss), x, np.asarray(1.0))
    assert relative_error(e.grad, numeric) < 1e-7
    assert Problem(None, QuadraticObjective(), view, 6)(x).parts == \
        LossParts(*e.parts[:3])  # without the term: a still image's parts, as before


def _zero_flows(total, long_term=(1,)):
    """Flows of a still clip: every pair's flows are 0, so every pixel is reliable (c = 1)."""
    keys = pairs_for(total, long_term)
    zero = np.zeros((2, 8, 10), np.float32)
    return PairFlows({k: zero for k in keys}, {k: zero for k in keys}, "dis")


def _pan_flows(shape=(16, 20), shift=2.0):
    """Frames 0 and 1 of a pan: each pixel of frame 1 was ``shift`` px to the left in frame 0
    (the backward flow), and moved ``shift`` px right (the forward flow)."""
    backward = np.zeros((2, *shape), np.float32)
    backward[0] = -shift
    return PairFlows({(1, 1): -backward}, {(1, 1): backward}, "dis"), backward


class Still:  # the problem's variable: the image itself
    variable = staticmethod(lambda image: image)


class Luminance:  # a luminance-only run: the term is on the luminance
    variable = staticmethod(color.luminance)


def test_the_term_at_a_coarser_scale_is_the_resized_neighbour_warped_along_the_resized_flow():
    rng = np.random.default_rng(2)
    previous = rng.uniform(size=(1, 3, 16, 20)).astype(np.float32)
    flows, backward = _pan_flows()
    at = temporal_term_at(1, {0: previous}, flows, (1,), 3.0, "cpu")

    term = at(Still(), (8, 10))
    expected, inside = warp(resize_to(previous, (8, 10)), resize_flow(backward, (8, 10)))
    assert term.weight == 3.0
    assert np.array_equal(term.warped[0], expected)
    assert term.weights[0].shape == (8, 10)
    assert np.array_equal(term.weights[0][:, 1:], np.ones((8, 9), np.float32))  # 1 px inside
    assert np.array_equal(term.weights[0][:, 0], np.zeros(8, np.float32))  # came from outside
    assert not inside[:, 0].any()

    gray = at(Luminance(), (16, 20))
    assert gray.warped[0].shape == (1, 1, 16, 20)
    assert np.array_equal(gray.warped[0], color.luminance(warp(previous, backward)[0]))
    assert temporal_term_at(0, {}, flows, (1,), 3.0, "cpu") is None  # the first frame


def test_neighbour_flows_swap_on_a_backward_pass():
    forward = {k: np.full((2, 2, 2), 10 * k[0] + k[1], np.float32) for k in pairs_for(3, (1, 2))}
    backward = {k: -f for k, f in forward.items()}
    flows = PairFlows(forward, backward, "dis")
    towards, back = neighbour_flows(flows, 2, 1)  # neighbour 1 -> frame 2: pair (2, 1)
    assert towards is forward[2, 1] and back is backward[2, 1]
    towards, back = neighbour_flows(flows, 0, 2, -1)  # backward pass: neighbour 2, pair (2, 2)
    assert towards is backward[2, 2] and back is forward[2, 2]
    assert neighbour_flows(flows, 1, 2) is None  # no frame -1
    assert neighbour_flows(flows, 2, 1, -1) is None  # no frame 3


def test_the_start_of_a_frame_on_the_first_pass():
    """prev-warped: c (.) omega + (1 - c) (.) frame -- on a 2 px pan, the previous result
    moved 2 px right where the flow is reliable, the frame itself in the 2 columns that came
    from outside; prev: the previous result; content, noise: left to initial_image."""
    rng = np.random.default_rng(3)
    previous, frame = (rng.uniform(size=(1, 3, 16, 20)).astype(np.float32) for _ in range(2))
    flows, _ = _pan_flows()
    start = start_image("prev-warped", frame, 1, {0: previous}, flows)
    assert start.dtype == np.float32 and start.shape == frame.shape
    np.testing.assert_allclose(start[..., 2:], previous[..., :-2], rtol=0, atol=1e-6)
    assert np.array_equal(start[..., :2], frame[..., :2])
    assert start_image("prev", frame, 1, {0: previous}, flows) is previous
    for name in ("content", "noise"):
        assert start_image(name, frame, 1, {0: previous}, flows) == name


def test_a_later_pass_starts_from_the_blend_of_its_result_and_its_warped_neighbour():
    """Eq. M with c = 1 (a still clip): delta = 1 gives the neighbour, 0 the frame's own
    result, 0.25 a quarter of the way; a backward pass's neighbour of frame t is t + 1."""
    rng = np.random.default_rng(0)
    own, neighbour = (rng.uniform(size=(1, 3, 8, 10)).astype(np.float32) for _ in range(2))
    flows = _zero_flows(3)
    assert np.array_equal(later_pass_start(own, 1, {2: neighbour}, flows, -1, 1.0), neighbour)
    assert np.array_equal(later_pass_start(own, 1, {2: neighbour}, flows, -1, 0.0), own)
    np.testing.assert_allclose(later_pass_start(own, 1, {2: neighbour}, flows, -1, 0.25),
                               0.25 * neighbour + 0.75 * own, rtol=0, atol=1e-7)
    assert later_pass_start(own, 2, {}, flows, -1, 1.0) is own  # the pass's first frame
    assert np.array_equal(later_pass_start(own, 1, {0: neighbour}, flows, 1, 1.0), neighbour)


def test_the_temporal_error_of_a_still_clip_is_the_mean_squared_change():
    """c = 1 everywhere (zero flows): E_t = (1/D) sum (x_t - x_{t-1})^2, here a flat change of
    0.3, then none."""
    results = [np.full((1, 3, 8, 10), v, np.float32) for v in (0.2, 0.5, 0.5)]
    errors = temporal_error(results, _zero_flows(3))
    assert errors == pytest.approx([0.09, 0.0], rel=1e-6, abs=0)
