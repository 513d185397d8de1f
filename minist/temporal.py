r"""Temporal consistency for video: warping along the optical flow, where the flow can be trusted,
and the temporal loss (Ruder, Dosovitskiy & Brox 2016, "Artistic style transfer for videos").

Stylising each frame of a clip on its own gives a flickering clip: every frame finds another
local minimum. Ruder et al. keep Gatys' objective and add a term that ties frame :math:`t` to
the previous result :math:`x'` carried along the motion. Everything here is a pure function of
NumPy or CuPy arrays (``xp`` follows the arrays); images are ``(1, C, H, W)`` and flows
``(2, H, W)``: :math:`(u, v)`, the displacement in pixels along :math:`x` (columns) and
:math:`y` (rows).

**Backward warping.** The backward flow :math:`\hat w = (\hat u, \hat v)` of frame :math:`t`
says where each of its pixels was in frame :math:`t-1`; the previous result seen from frame
:math:`t` is

.. math::

    \omega(x')(p) = x'\bigl(p + \hat w(p)\bigr),                              \qquad \text{(W)}

read between pixels by bilinear interpolation (:func:`warp`); points that fall outside frame
:math:`t-1` have no value there and get weight 0 below.

**Where the flow is reliable** (Ruder et al. §3.2). With :math:`w` the forward flow
(:math:`t-1 \to t`) and :math:`\tilde w(p) = w(p + \hat w(p))` the forward flow warped into frame
:math:`t`, a pixel is *disoccluded* -- seen in frame :math:`t` but hidden in :math:`t-1`, so the
two flows disagree -- where

.. math::

    \lvert \tilde w + \hat w \rvert^2 > 0.01\,\bigl(\lvert \tilde w \rvert^2
        + \lvert \hat w \rvert^2\bigr) + 0.5,                                  \qquad \text{(C1)}

and lies on a *motion boundary* -- where the flow changes too fast to be interpolated -- where

.. math::

    \lvert \nabla \hat u \rvert^2 + \lvert \nabla \hat v \rvert^2
        > 0.01\, \lvert \hat w \rvert^2 + 0.002.                              \qquad \text{(C2)}

The per-pixel weights :math:`c \in \{0, 1\}^{H \times W}` are 0 there (and where the warp left
the frame), 1 elsewhere (:func:`reliability`).

**The temporal loss** of frame :math:`t` against the warped previous result, over the
:math:`D = C \times H \times W` numbers of the image:

.. math::

    \mathcal{L}_{temporal}(x, \omega, c) = \frac{1}{D} \sum_{k=1}^{D}
        c_k \,(x_k - \omega_k)^2, \qquad
    \frac{\partial \mathcal{L}_{temporal}}{\partial x} = \frac{2}{D}\, c \odot (x - \omega)
                                                                              \qquad \text{(T)}

(:func:`temporal_loss`; ``c`` broadcast over the channels). **Long-term consistency** ties frame
:math:`t` to several earlier frames :math:`t - j`, :math:`j \in J`, each counting only where no
nearer frame of the set already does:

.. math::

    c_{long}(j) = \max\Bigl(c(j) - \sum_{k \in J,\, k < j} c(k),\; 0\Bigr),
    \qquad \mathcal{L}_{long} = \sum_{j \in J} \mathcal{L}_{temporal}\bigl(x,
        \omega_j, c_{long}(j)\bigr)                                           \qquad \text{(L)}

(:func:`long_term_weights`). **Multi-pass** runs go over the clip several times, alternating
direction; a pass starts frame :math:`i` from its last result blended with its neighbour's,
warped, where that is reliable (Ruder et al. §3.4, :math:`\delta` the blend weight,
:math:`\bar\delta = 1 - \delta`):

.. math::

    x'^{(i)} = \delta\, c \odot \omega(x^{(i \mp 1)})
        + \bigl(\bar\delta + \delta (1 - c)\bigr) \odot x^{(i)}.              \qquad \text{(M)}

(:func:`blend_neighbour`).

Lesson: ``tutorials/12_video.py`` derives and checks each equation here (the flow, (W), (C1),
(C2), (T) and its gradient, (L), (M)) and shows what flicker looks like; its exercises
``ex_warp`` (:func:`sample_bilinear`, :func:`warp`), ``ex_consistency`` (:func:`disoccluded`,
:func:`motion_boundaries`, :func:`reliability`) and ``ex_temporal_loss``
(:func:`temporal_loss`) are checked by ``python tutorials/check.py <exercise>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from minist.backend import get_array_module
from minist.errors import MinistError

DISOCCLUSION_RELATIVE, DISOCCLUSION_ABSOLUTE = 0.01, 0.5  # (C1)
BOUNDARY_RELATIVE, BOUNDARY_ABSOLUTE = 0.01, 0.002  # (C2)


def _check_flow(flow: Any, height: int, width: int, who: str) -> None:
    if flow.ndim != 3 or flow.shape[0] != 2 or flow.shape[1:] != (height, width):
        raise MinistError(f"{who}: expected a flow of shape (2, {height}, {width}), "
                          f"got {tuple(flow.shape)}")


def sample_bilinear(image: Any, rows: Any, cols: Any) -> tuple[Any, Any]:
    r"""``image`` ``(1, C, H, W)`` read at the real positions ``(rows, cols)`` (each ``(H, W)``)
    by bilinear interpolation: with :math:`r = \lfloor y \rfloor + a`, :math:`s = \lfloor x
    \rfloor + b`,

    .. math::

        I(y, x) = (1-a)(1-b)\, I_{r,s} + (1-a)\, b\, I_{r,s+1} + a (1-b)\, I_{r+1,s}
            + a\, b\, I_{r+1,s+1}.

    Returns ``(values (1, C, H, W), inside (H, W) bool)``: positions outside
    :math:`[0, H-1] \times [0, W-1]` are ``inside = False`` and read 0.
    Lesson: ``tutorials/12_video.py``, section 2 (exercise ``ex_warp``)."""
    xp = get_array_module(image)
    _, _, H, W = image.shape
    inside = (rows >= 0) & (rows <= H - 1) & (cols >= 0) & (cols <= W - 1)
    r0 = xp.clip(xp.floor(rows), 0, max(H - 2, 0)).astype(xp.int64)
    c0 = xp.clip(xp.floor(cols), 0, max(W - 2, 0)).astype(xp.int64)
    r1, c1 = xp.minimum(r0 + 1, H - 1), xp.minimum(c0 + 1, W - 1)
    a = (xp.clip(rows, 0, H - 1) - r0).astype(image.dtype)
    b = (xp.clip(cols, 0, W - 1) - c0).astype(image.dtype)
    img = image[0]
    values = ((1 - a) * (1 - b) * img[:, r0, c0] + (1 - a) * b * img[:, r0, c1]
              + a * (1 - b) * img[:, r1, c0] + a * b * img[:, r1, c1])
    return xp.where(inside, values, 0)[None].astype(image.dtype), inside


def _grid(flow: Any):
    xp = get_array_module(flow)
    _, H, W = flow.shape
    rows, cols = xp.meshgrid(xp.arange(H, dtype=flow.dtype), xp.arange(W, dtype=flow.dtype),
                             indexing="ij")
    return rows, cols


def warp(previous: Any, backward_flow: Any) -> tuple[Any, Any]:
    r"""Eq. (W): the previous frame's ``(1, C, H, W)`` image seen from the current frame,
    :math:`\omega(x')(p) = x'(p + \hat w(p))`, with ``backward_flow`` :math:`\hat w` ``(2, H, W)``
    (:math:`(\hat u, \hat v)`, px). Returns ``(warped, inside)``: ``inside`` ``(H, W)`` is False
    where :math:`p + \hat w(p)` leaves the frame (the warped value is 0 there).
    Lesson: ``tutorials/12_video.py``, section 2 (exercise ``ex_warp``)."""
    _, _, H, W = previous.shape
    _check_flow(backward_flow, H, W, "warp")
    rows, cols = _grid(backward_flow)
    return sample_bilinear(previous, rows + backward_flow[1], cols + backward_flow[0])


def disoccluded(forward_flow: Any, backward_flow: Any) -> Any:
    r"""Eq. (C1): ``(H, W)`` bool, True where the forward flow :math:`w` (:math:`t-1 \to t`)
    warped into frame :math:`t`, :math:`\tilde w(p) = w(p + \hat w(p))`, and the backward flow
    :math:`\hat w` do not cancel: :math:`|\tilde w + \hat w|^2 > 0.01 (|\tilde w|^2 +
    |\hat w|^2) + 0.5`, and where :math:`p + \hat w(p)` leaves the frame.
    Lesson: ``tutorials/12_video.py``, section 3 (exercise ``ex_consistency``)."""
    _, H, W = backward_flow.shape
    _check_flow(forward_flow, H, W, "disoccluded")
    w_tilde, inside = warp(forward_flow[None], backward_flow)
    w_tilde = w_tilde[0]
    xp = get_array_module(backward_flow)
    mismatch = xp.sum((w_tilde + backward_flow) ** 2, axis=0)  # |w~ + w^|^2
    energy = xp.sum(w_tilde ** 2, axis=0) + xp.sum(backward_flow ** 2, axis=0)
    return (mismatch > DISOCCLUSION_RELATIVE * energy + DISOCCLUSION_ABSOLUTE) | ~inside


def motion_boundaries(backward_flow: Any) -> Any:
    r"""Eq. (C2): ``(H, W)`` bool, True where :math:`|\nabla \hat u|^2 + |\nabla \hat v|^2 >
    0.01 |\hat w|^2 + 0.002`, the gradients by central differences (one-sided at the border).
    Lesson: ``tutorials/12_video.py``, section 3 (exercise ``ex_consistency``)."""
    xp = get_array_module(backward_flow)
    gradient_energy = 0
    for component in backward_flow:  # u^, v^
        d_rows, d_cols = xp.gradient(component)
        gradient_energy = gradient_energy + d_rows ** 2 + d_cols ** 2
    flow_energy = xp.sum(backward_flow ** 2, axis=0)
    return gradient_energy > BOUNDARY_RELATIVE * flow_energy + BOUNDARY_ABSOLUTE


def reliability(forward_flow: Any, backward_flow: Any) -> Any:
    r"""The per-pixel weights :math:`c` ``(H, W)`` in the flow's dtype: 0 where (C1) or (C2)
    holds or the warp leaves the frame, 1 elsewhere. Lesson: ``tutorials/12_video.py``,
    section 3 (exercise ``ex_consistency``)."""
    unreliable = disoccluded(forward_flow, backward_flow) | motion_boundaries(backward_flow)
    return (~unreliable).astype(backward_flow.dtype)


def temporal_loss(x: Any, warped: Any, weights: Any) -> tuple[Any, Any]:
    r"""Eq. (T): :math:`\mathcal{L} = \frac1D \sum_k c_k (x_k - \omega_k)^2` and its gradient
    :math:`\frac2D c \odot (x - \omega)`, for ``x`` and ``warped`` ``(1, C, H, W)`` and the
    weights ``c`` ``(H, W)`` (broadcast over channels). The value is a 0-d array of ``x``'s
    dtype, summed in float64 (as :mod:`minist.losses.reference`); the gradient is ``x``-shaped.
    Lesson: ``tutorials/12_video.py``, section 4 (exercise ``ex_temporal_loss``)."""
    xp = get_array_module(x)
    if warped.shape != x.shape or weights.shape != x.shape[2:]:
        raise MinistError(f"temporal_loss: image {tuple(x.shape)}, warped "
                          f"{tuple(warped.shape)} and weights {tuple(weights.shape)} disagree")
    D = x.size
    diff = x - warped.astype(x.dtype)
    c = weights.astype(x.dtype)
    weighted = c * diff  # c (.) (x - omega)
    value = xp.sum(weighted.astype(xp.float64) * diff) / D  # (1/D) sum c (x - omega)^2
    return xp.asarray(value, dtype=x.dtype), (2.0 / D) * weighted


def long_term_weights(weights: Sequence[Any]) -> list[Any]:
    r"""Eq. (L): ``weights[i]`` is :math:`c(j_i)` for the frames :math:`t - j_i`, nearest first
    (:math:`j_0 < j_1 < \dots`); returns :math:`c_{long}(j_i) = \max(c(j_i) - \sum_{k < i}
    c(j_k), 0)`: each earlier frame counts only where no nearer one does.
    Lesson: ``tutorials/12_video.py``, section 5."""
    out, covered = [], None
    for c in weights:
        xp = get_array_module(c)
        out.append(c if covered is None else xp.maximum(c - covered, 0))
        covered = c if covered is None else covered + c
    return out


def blend_neighbour(current: Any, warped_neighbour: Any, weights: Any, delta: float) -> Any:
    r"""Eq. (M): a multi-pass start, :math:`\delta\, c \odot \omega(x^{(i \mp 1)}) +
    (\bar\delta + \delta(1 - c)) \odot x^{(i)}`, ``delta`` :math:`\delta \in [0, 1]` the
    blend weight (``--blend-weight``); where the flow is unreliable the frame keeps its own
    result. Lesson: ``tutorials/12_video.py``, section 5."""
    if not 0 <= delta <= 1:
        raise MinistError(f"--blend-weight: must be between 0 and 1, got {delta!r}")
    c = weights.astype(current.dtype)
    return delta * c * warped_neighbour.astype(current.dtype) + ((1 - delta) + delta * (1 - c)) \
        * current


def _resample(field: Any, shape: tuple[int, int]) -> Any:
    r"""``field`` ``(C, H, W)`` sampled bilinearly at the centres of an ``(H', W')`` grid laid
    over the same picture: target pixel :math:`(r', s')` reads the source at
    :math:`\bigl((r' + \tfrac12) \tfrac{H}{H'} - \tfrac12,\ (s' + \tfrac12) \tfrac{W}{W'} -
    \tfrac12\bigr)`, clamped to the frame (:func:`sample_bilinear`)."""
    xp = get_array_module(field)
    _, H, W = field.shape
    H2, W2 = (int(n) for n in shape)
    if (H2, W2) == (H, W):
        return field
    rows = xp.clip((xp.arange(H2, dtype=xp.float64) + 0.5) * (H / H2) - 0.5, 0, H - 1)
    cols = xp.clip((xp.arange(W2, dtype=xp.float64) + 0.5) * (W / W2) - 0.5, 0, W - 1)
    rows, cols = xp.meshgrid(rows, cols, indexing="ij")
    return sample_bilinear(field[None], rows, cols)[0][0]


def resize_flow(flow: Any, shape: tuple[int, int]) -> Any:
    r"""A flow computed at :math:`H \times W` for the same frames seen at ``shape`` =
    :math:`(H', W')` (a coarser scale of a coarse-to-fine run): each vector read at the new
    pixel's place (bilinear, :func:`_resample`) and its components scaled by the size ratio,
    since a displacement of :math:`u` px across :math:`W` px is :math:`u W'/W` px across
    :math:`W'`:

    .. math::

        w'(p') = \Bigl(\tfrac{W'}{W}\, u(p),\ \tfrac{H'}{H}\, v(p)\Bigr),
        \qquad p = \text{the place of } p' \text{ at } H \times W.

    ``flow`` ``(2, H, W)`` :math:`(u, v)`; returns ``(2, H', W')`` in its dtype."""
    _, H, W = flow.shape
    H2, W2 = (int(n) for n in shape)
    if (H2, W2) == (H, W):
        return flow
    xp = get_array_module(flow)
    ratio = xp.asarray([W2 / W, H2 / H], dtype=flow.dtype)[:, None, None]  # (u, v) scales
    return (_resample(flow, (H2, W2)) * ratio).astype(flow.dtype)


def resize_weights(weights: Any, shape: tuple[int, int]) -> Any:
    r"""Per-pixel weights :math:`c` ``(H, W)`` (:func:`reliability`, :func:`long_term_weights`)
    at ``shape`` :math:`(H', W')`: read bilinearly at each new pixel's place, so a coarse
    pixel straddling a reliable and an unreliable region gets a weight between 0 and 1 (a
    convex combination of its neighbours: :math:`0 \le c' \le 1`)."""
    return _resample(weights[None], shape)[0].astype(weights.dtype)
