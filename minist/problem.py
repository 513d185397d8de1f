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

What is *not* here: the sizes of a coarse-to-fine run and how the image is carried from one to
the next (:mod:`minist.scales`), where the run stands (:class:`minist.loop.RunState`), and the
front that loads the inputs and wires these together
(:class:`minist.stylize.StyleTransfer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from minist import color
from minist.color import LuminanceView
from minist.masks import guided_style_terms
from minist.objective import Evaluation, LossParts, Objective, build_terms

__all__ = ["Evaluation", "LossParts", "Problem", "build_problem"]


@dataclass(frozen=True)
class Problem:
    r"""The function a run minimises at one size (module docstring): ``problem(x)`` is the
    :class:`~minist.objective.Evaluation` of Eq. 7 at the variable ``x``.

    ``net``: the network; ``objective``: the terms, their targets and weights;
    ``luminance_view``: None, or the view of a luminance-only run (the variable is then the
    luminance ``(1, 1, H, W)``); ``size``: the longest side of the images, px.
    """

    net: Any
    objective: Objective
    luminance_view: LuminanceView | None = None
    size: int = 0

    def __call__(self, x) -> Evaluation:
        r""":math:`f(x)` and :math:`\nabla f(x)`, with the loss's parts (one forward and one
        backward pass through the network)."""
        if self.luminance_view is None:
            return self.objective.evaluate(self.net, x)
        view = self.luminance_view  # the network sees the view; the gradient comes back
        e = self.objective.evaluate(self.net, view.network_input(x))
        return Evaluation(e.loss, view.gradient(e.grad), e.parts)

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
