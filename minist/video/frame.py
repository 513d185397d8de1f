r"""One frame of a clip (Ruder, Dosovitskiy & Brox 2016): its temporal term, its start, and the
temporal error of a painted clip. The equations themselves are in :mod:`minist.temporal`
(warping Eq. W, reliability Eq. C1/C2, long-term weights Eq. L, the temporal loss, resizing a
flow, the multi-pass blend Eq. M); this module picks, for frame :math:`t`, which neighbours,
flows and results they apply to.

Frames are 0-based here; images are ``(1, 3, H, W)`` float32 RGB at the output size, on the
CPU; a flow is ``(2, H, W)``; ``flows`` is a :class:`~minist.video.flow.PairFlows` whose key
``(t, j)`` holds the pair :math:`(t - j, t)`: ``forward`` from :math:`t - j` to :math:`t`,
``backward`` from :math:`t` to :math:`t - j`.

- **The temporal term** (:func:`temporal_term_at`): at each size of frame :math:`t`'s schedule,
  :math:`\gamma \sum_j \mathcal{L}_{temporal}(x, \omega_j, c_j)` with :math:`\omega_j` the
  result of the neighbour :math:`n = t - j` (:math:`t + j` on a backward pass) warped into
  frame :math:`t` and :math:`c_j` its long-term weights; at a coarser size the neighbour's
  result, the flow and the weights are resized there; with ``--original-colors luminance`` the
  term is on the luminance (the problem's variable).
- **The start** (``--init-frames``, :func:`start_image`): on the first pass, the previous
  result warped, with the frame's content where the flow is unreliable,
  :math:`c \odot \omega_1 + (1 - c) \odot I_t` (``prev-warped``); the previous result
  (``prev``); the frame (``content``); noise (``noise``). On a later pass
  (:func:`later_pass_start`): the frame's result of the pass before blended with its
  neighbour's of this pass, warped (Eq. M).
- **The temporal error** (:func:`temporal_error`), to compare painted clips on the same flows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from minist.backend import to_device
from minist.images import resize_to
from minist.problem import TemporalTerm
from minist.temporal import (
    blend_neighbour,
    long_term_weights,
    reliability,
    resize_flow,
    resize_weights,
    temporal_loss,
    warp,
)
from minist.video.flow import PairFlows


def neighbour_flows(flows: PairFlows, t: int, j: int,
                    direction: int = 1) -> tuple[Any, Any] | None:
    r"""The flows between frame ``t`` and its neighbour :math:`n = t - j` (``direction`` +1)
    or :math:`n = t + j` (-1, a backward pass), 0-based, as ``(towards, back)``: the flow from
    the neighbour to frame :math:`t` and the one from frame :math:`t` to the neighbour (the
    one that warps the neighbour's result into frame :math:`t`, Eq. W) -- a pair's forward and
    backward flows, swapped on a backward pass; None where the pair was not computed."""
    if direction > 0:
        key = (t, j)
        if key not in flows.backward:
            return None
        return flows.forward[key], flows.backward[key]
    key = (t + j, j)
    if key not in flows.backward:
        return None
    return flows.backward[key], flows.forward[key]


def temporal_term_at(t: int, results: dict[int, Any], flows: PairFlows,
                     long_term: Sequence[int], weight: float, device: str, direction: int = 1
                     ) -> Callable[[Any, tuple[int, int]], TemporalTerm] | None:
    r"""Frame ``t``'s (0-based) temporal term, as the function
    ``(problem, (H, W)) -> TemporalTerm`` that :class:`~minist.stylize.StyleTransfer` calls at
    each size it builds a problem at (``temporal_at``); None when no neighbour has a result.

    The neighbours: :math:`n = t - j` (``direction`` +1) or :math:`t + j` (-1) for each
    :math:`j` of ``long_term`` with a result in ``results`` (RGB at the output size, CPU).
    At the output size, their reliabilities :math:`c(j)` (Eq. C1, C2) become long-term weights
    :math:`c_{long}(j)` (Eq. L); at a size :math:`(H, W)` each result, its flow to frame
    :math:`t` and its weights are resized there, the result warped (Eq. W) and turned into
    the problem's variable (its luminance for a luminance-only run)."""
    offsets, pairs = [], []
    for j in sorted(long_term):
        pair = neighbour_flows(flows, t, j, direction)
        if pair is not None and t - direction * j in results:
            offsets.append(j)
            pairs.append(pair)
    if not offsets:
        return None
    weights = long_term_weights([reliability(towards, back) for towards, back in pairs])

    def at(problem, shape: tuple[int, int]) -> TemporalTerm:
        warped, resized = [], []
        for j, (_, back), c in zip(offsets, pairs, weights, strict=True):
            neighbour = resize_to(results[t - direction * j], shape)
            image, _ = warp(neighbour, resize_flow(back, shape))  # omega_j at this size
            warped.append(problem.variable(to_device(image, device, np.float32)))
            resized.append(to_device(resize_weights(c, shape), device, np.float32))
        return TemporalTerm(warped, resized, weight)

    return at


def start_image(init_frames: str, frame: np.ndarray, t: int, results: dict[int, Any],
                flows: PairFlows):
    """The start of frame ``t`` > 0 on the first pass (``--init-frames``): an array, or
    ``"content"`` / ``"noise"`` for :func:`minist.inputs.initial_image`."""
    if init_frames in ("content", "noise"):
        return init_frames
    previous = results[t - 1]
    if init_frames == "prev":
        return previous
    towards, back = neighbour_flows(flows, t, 1)
    c = reliability(towards, back)[None, None]
    return (c * warp(previous, back)[0] + (1 - c) * frame).astype(np.float32)


def later_pass_start(own: np.ndarray, t: int, results: dict[int, Any], flows: PairFlows,
                     direction: int, blend: float) -> np.ndarray:
    r"""The start of frame ``t`` on a pass after the first: its result of the pass before,
    ``own``, blended with the result of its neighbour :math:`t - ` ``direction`` on this pass
    (in ``results``), warped, where that is reliable (Eq. M,
    :func:`minist.temporal.blend_neighbour`, :math:`\delta` = ``blend``); ``own`` alone for
    the pass's first frame."""
    pair = neighbour_flows(flows, t, 1, direction)
    if pair is None or t - direction not in results:
        return own
    towards, back = pair
    warped, _ = warp(results[t - direction], back)
    return blend_neighbour(own, warped, reliability(towards, back), blend).astype(np.float32)


def temporal_error(results: Sequence[Any], flows: PairFlows) -> list[float]:
    r"""The frame-to-frame temporal error of a painted clip, :math:`E_t = \frac1D \sum c \odot
    (x_t - \omega(x_{t-1}))^2` for each consecutive pair (the short-term flows and their
    :math:`c`), e.g. to compare runs on the same flows."""
    out = []
    for t in range(1, len(results)):
        backward = flows.backward[t, 1]
        c = reliability(flows.forward[t, 1], backward)
        value, _ = temporal_loss(results[t], warp(results[t - 1], backward)[0], c)
        out.append(float(value))
    return out
