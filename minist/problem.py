r"""The problem a style transfer solves at one size: the function of the image to minimise.

At one size (longest side, px) a style transfer minimises Eq. 7 over the optimised variable
:math:`\vec x`,

.. math::

    f(\vec x) = \mathcal{L}_{total}\big(V(\vec x)\big), \qquad
    \nabla f(\vec x) = J_V^\top\, \nabla\mathcal{L}_{total}\big(V(\vec x)\big),

where :math:`\mathcal{L}_{total}` is the :class:`~minist.objective.Objective` (its terms with
their targets, :math:`\alpha, \beta, \lambda_{TV}`) evaluated through the network, and
:math:`V` what the network is shown of the variable: the image itself, or for a luminance-only
run (``--original-colors luminance``) the gray image :math:`(Y, Y, Y)` of the optimised
luminance :math:`Y`, whose gradient comes back as the sum over the channels
(:class:`~minist.color.LuminanceView`). A :class:`Problem` is that :math:`f`:
``problem(x) -> Evaluation(loss, grad, parts)``, which unpacks as the ``(loss, grad)`` an
optimizer asks for (``optimizer.step(x, problem)``, :mod:`minist.optim`).

**A clip** (``minist video``, :mod:`minist.video.run`) adds the temporal term of Ruder,
Dosovitskiy & Brox (2016) to the same :math:`f`: with the previous results warped into this
frame, :math:`\omega_j`, their per-pixel weights :math:`c_j` (long-term: each counting only
where no nearer frame does, :func:`minist.temporal.long_term_weights`) and :math:`\gamma`
(``--temporal-weight``),

.. math::

    f_{video}(\vec x) = f(\vec x) + \gamma \sum_{j \in J} \mathcal{L}_{temporal}(\vec x,
        \omega_j, c_j), \qquad
    \nabla f_{video}(\vec x) = \nabla f(\vec x) + \gamma \sum_{j \in J}
        \tfrac{2}{D}\, c_j \odot (\vec x - \omega_j)

on the optimised variable itself (the luminance of a luminance-only run, whose targets are
then the warped luminances): a :class:`TemporalTerm` in :attr:`Problem.temporal`, its value
(before :math:`\gamma`) in the evaluation's parts as ``temporal`` (:class:`VideoLossParts`).
A still image's problem has no temporal term and its parts are :class:`LossParts` as before.

What is *not* here: the sizes of a coarse-to-fine run and how the image is carried from one to
the next (:mod:`minist.scales`), where the run stands (:class:`minist.loop.RunState`), and the
front that loads the inputs and wires these together
(:class:`minist.stylize.StyleTransfer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from minist import color, temporal
from minist.color import LuminanceView
from minist.masks import guided_style_terms
from minist.objective import Evaluation, LossParts, Objective, build_terms

__all__ = ["Evaluation", "LossParts", "Problem", "TemporalTerm", "VideoLossParts",
           "build_problem", "temporal_part"]


class VideoLossParts(NamedTuple):
    """The parts of a frame's loss: Eq. 7's, and the temporal term's before its weight."""

    content: float
    style: float
    tv: float
    temporal: float  # sum_j L_temporal(x, omega_j, c_j), before gamma


def temporal_part(evaluation: Evaluation | None) -> float | None:
    r"""The temporal loss (before :math:`\gamma`) in ``evaluation``'s parts: a frame's with a
    temporal term; None for a still image, a frame without one, or no evaluation yet."""
    parts = evaluation.parts if evaluation is not None else None
    return parts.temporal if isinstance(parts, VideoLossParts) else None


class TemporalTerm(NamedTuple):
    r"""The temporal term of a frame: ``warped`` :math:`\omega_j` (each shaped like the
    variable, on its device), their ``weights`` :math:`c_j` ``(H, W)`` (already long-term
    weights, :func:`minist.temporal.long_term_weights`) and ``weight`` :math:`\gamma`."""

    warped: Sequence[Any]
    weights: Sequence[Any]
    weight: float

    def evaluate(self, x) -> tuple[float, Any]:
        r""":math:`\sum_j \mathcal{L}_{temporal}(x, \omega_j, c_j)` and its gradient
        (:func:`minist.temporal.temporal_loss`, Eq. T)."""
        value, grad = 0.0, None
        for warped, weights in zip(self.warped, self.weights, strict=True):
            v, g = temporal.temporal_loss(x, warped, weights)
            value += float(v)
            grad = g if grad is None else grad + g
        return value, grad


@dataclass(frozen=True)
class Problem:
    r"""The function a run minimises at one size (module docstring): ``problem(x)`` is the
    :class:`~minist.objective.Evaluation` of Eq. 7 at the variable ``x``.

    ``net``: the network; ``objective``: the terms, their targets and weights;
    ``luminance_view``: None, or the view of a luminance-only run (the variable is then the
    luminance ``(1, 1, H, W)``); ``size``: the longest side of the images, px;
    ``temporal``: a frame's :class:`TemporalTerm` (a clip), or None (module docstring).
    """

    net: Any
    objective: Objective
    luminance_view: LuminanceView | None = None
    size: int = 0
    temporal: TemporalTerm | None = None

    def __call__(self, x) -> Evaluation:
        r""":math:`f(x)` and :math:`\nabla f(x)`, with the loss's parts (one forward and one
        backward pass through the network), plus the temporal term when there is one."""
        if self.luminance_view is None:
            e = self.objective.evaluate(self.net, x)
        else:
            view = self.luminance_view  # the network sees the view; the gradient comes back
            e = self.objective.evaluate(self.net, view.network_input(x))
            e = Evaluation(e.loss, view.gradient(e.grad), e.parts)
        if self.temporal is None:
            return e
        value, grad = self.temporal.evaluate(x)  # on the variable itself
        gamma = self.temporal.weight
        return Evaluation(e.loss + gamma * value, e.grad + (gamma * grad).astype(e.grad.dtype),
                          VideoLossParts(*e.parts, value))

    def variable(self, image):
        """The variable for an RGB ``image``: the image itself, or its luminance."""
        return image if self.luminance_view is None else color.luminance(image)

    def output(self, x):
        """What the user gets for the variable ``x``: the image itself, or for a luminance-only
        run its luminance with the content's colours (on ``x``'s device)."""
        return x if self.luminance_view is None else self.luminance_view.output(x)


def build_problem(net, content_image, style_images: Sequence[Any], options, style_layers,
                  masks=None, size: int = 0) -> Problem:
    r"""The problem at the size of ``content_image``: the targets :math:`P^l` (content
    features of the photo) and :math:`A^l` (Gram matrices of the painting(s)) of what the
    network is shown -- the images, or their colour-matched or luminance versions
    (:func:`minist.color.color_inputs`) -- with the weights of ``options`` (a
    :class:`~minist.options.StylizeOptions`).

    ``style_layers``: the style layers at this size; ``masks``: ``(content masks, style
    masks)`` for spatial control (each style its region, through guided Grams,
    :func:`minist.masks.guided_style_terms`), or None.
    """
    o = options
    shown_content, shown_styles, luminance_view = color.color_inputs(
        content_image, style_images, o.original_colors, o.color_transform)
    if masks is None:
        terms = build_terms(net, shown_content, shown_styles, o.content_layers, style_layers,
                            o.style_layer_weights, o.normalize, o.style_blend)
    else:
        terms = build_terms(net, shown_content, None, o.content_layers, [],
                            normalize=o.normalize)
        terms += guided_style_terms(net, shown_styles, *masks, style_layers,
                                    o.style_layer_weights, o.normalize, o.mask_mode,
                                    content_image.shape[2:])
    objective = Objective(terms, o.content_weight, o.style_weight, o.tv_weight,
                          net.config.loss_backend)
    return Problem(net, objective, luminance_view, size)
