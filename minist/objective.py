r"""The objective of a style transfer as a list of loss terms: Eq. 1, 5 and 7 written once.

Gatys et al. (2015) optimise the image :math:`\vec x` for

.. math::

    \mathcal{L}_{total} = \alpha \sum_{l \in C} w^c_l\, \mathcal{L}^l_{content}
        + \beta \sum_{l \in S} w_l E_l \;[+\; \lambda_{TV} \mathcal{L}_{TV}(\vec x)]
        \qquad \text{(Eq. 1, 5, 7)}

Each summand is a **term**: a layer, a target (:math:`P^l` for content, :math:`A^l` for style),
a weight (:math:`w_l`), a normaliser (see below) and a :meth:`loss_and_grad` that calls
the paper's per-layer losses in :mod:`minist.losses` (Eq. 1-2, Eq. 4 and 6). An
:class:`Objective` holds the terms and :math:`\alpha, \beta, \lambda_{TV}` and evaluates Eq. 7
and its gradient with one forward and one backward pass through the network. Terms are keyed by
more than a layer (:class:`TermKey`): several terms may share a layer -- one per style image or
per masked region -- and their gradients add where the backward pass meets the layer.

**Normalisers.** Networks trained on 0-255 BGR input (Caffe/Keras) have activations roughly
two orders of magnitude larger than torchvision's, so the raw losses differ by ~10^4 (content)
and ~10^8 (style) and no single :math:`(\alpha, \beta)` would suit both. With ``normalize=True``
(the default) each term's normaliser divides it by the energy of its own target, once, before
the run (:func:`content_normaliser`, :func:`style_normaliser`):

.. math::

    \hat{\mathcal{L}}^l_{content} = \frac{\tfrac12 \sum (F^l - P^l)^2}{\sum (P^l)^2}, \qquad
    \hat{E}_l = \frac{E_l}{\sum (A^l)^2 / (4 N_l^2)} = \frac{\sum (G^l - A^l)^2}{\sum (A^l)^2},

which makes every term dimensionless (a relative squared error). ``normalize=False``
(normaliser 1) gives the paper's raw values, and then :meth:`Objective.evaluate`'s style part
*is* :func:`minist.losses.style_loss` of the same features (the tests check both ways): both
add their layers with :func:`minist.losses.weighted_sum`, Eq. 5 written once.
Tutorials: ``tutorials/05_gram_and_style`` (Eq. 5), ``tutorials/06_total_loss`` (Eq. 7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from minist import losses
from minist.backend import get_array_module
from minist.errors import MinistError
from minist.losses import reference
from minist.losses.dispatch import get_loss_backend


class TermKey(NamedTuple):
    """What a term is about: ``kind`` (``"content"`` or ``"style"``), its ``layer``, and for
    style terms which style image (``style``, an index) and which region (``region``, an index
    into the masks, or None for the whole image) it belongs to."""

    kind: str
    layer: str
    style: int = 0
    region: int | None = None


def _normaliser(energy: float, paper_factor: float, normalize: bool) -> float:
    """Multiplier turning the paper's layer loss into the normalised one (module docstring)."""
    if not normalize:
        return 1.0
    return paper_factor / max(energy, 1e-30)


def content_normaliser(P, normalize: bool = True) -> float:
    r""":math:`1 / \sum (P^l)^2`: the content term of layer :math:`l` as a relative squared
    error (module docstring); 1 with ``normalize=False``."""
    return _normaliser(float((P * P).sum()), 1.0, normalize)


def style_normaliser(A, normalize: bool = True) -> float:
    r""":math:`4 N_l^2 / \sum (A^l)^2`: the style term :math:`E_l` of layer :math:`l` as a
    relative squared error of the Gram matrix (module docstring); 1 with ``normalize=False``."""
    return _normaliser(float((A * A).sum()), 4.0 * A.shape[0] ** 2, normalize)


@dataclass(frozen=True, eq=False)
class ContentTerm:
    r"""One layer's content loss (Eq. 1-2), :math:`w\, s\, \tfrac12 \sum (F^l - P^l)^2`.

    ``target``: :math:`P^l` as the feature matrix :math:`N_l \times M_l`; ``weight``:
    :math:`w_l` (default layers: equal, summing to 1); ``normaliser``:
    :func:`content_normaliser`.
    """

    layer: str
    target: Any = field(repr=False)
    weight: float = 1.0
    normaliser: float = 1.0
    kind = "content"

    @property
    def key(self) -> TermKey:
        return TermKey("content", self.layer)

    @property
    def coefficient(self) -> float:
        """:math:`w_l s_l`: what this term's loss is multiplied by inside its sum."""
        return self.weight * self.normaliser

    def loss_and_grad(self, F, backend=None):
        r"""The unweighted :math:`\mathcal{L}^l_{content}` (0-d array) and its gradient
        :math:`F^l - P^l` (:func:`minist.losses.content_loss`), for features ``F`` of shape
        :math:`(1, N_l, H_l, W_l)` or :math:`N_l \times M_l`; the gradient is shaped
        :math:`N_l \times M_l`. ``backend``: the loss functions to use
        (:func:`minist.losses.get_loss_backend`; default: the fastest for ``F``'s device)."""
        backend = backend or get_loss_backend(F)
        return backend.content_loss(losses.feature_matrix(F), self.target)


@dataclass(frozen=True, eq=False)
class StyleTerm:
    r"""One layer's style loss (Eq. 4, 6), :math:`w\, s\, E_l`, against the Gram target
    :math:`A^l` (:math:`N_l \times N_l`) of style image ``style`` (an index; with several
    styles their Grams may be blended into one target) and, with spatial control, of a region.

    ``weight``: :math:`w_l` of Eq. 5 (default layers: equal, summing to 1); ``normaliser``:
    :func:`style_normaliser`. ``guide``: with spatial control, the region's guide :math:`T` at this
    layer, flattened to :math:`(M_l,)` (:mod:`minist.masks`); the term is then the guided loss
    :math:`\frac{1}{4N_l^2}\sum (G_T - A)^2` (:func:`minist.losses.guided_style_layer_loss`)
    and ``target`` the guided Gram of the style image's region.
    """

    layer: str
    target: Any = field(repr=False)
    weight: float = 1.0
    normaliser: float = 1.0
    style: int = 0
    region: int | None = None
    guide: Any = field(default=None, repr=False)
    kind = "style"

    @property
    def key(self) -> TermKey:
        return TermKey("style", self.layer, self.style, self.region)

    @property
    def coefficient(self) -> float:
        """:math:`w_l s_l`: what this term's :math:`E_l` is multiplied by in Eq. 5."""
        return self.weight * self.normaliser

    def loss_and_grad(self, F, backend=None):
        r"""The unweighted :math:`E_l` (0-d array) and :math:`\partial E_l / \partial F^l`
        (:func:`minist.losses.style_layer_loss`; with a ``guide``,
        :func:`minist.losses.guided_style_layer_loss`, the reference on every device), shaped
        :math:`N_l \times M_l`."""
        if self.guide is not None:
            return losses.guided_style_layer_loss(losses.feature_matrix(F), self.target,
                                                  self.guide)
        backend = backend or get_loss_backend(F)
        return backend.style_layer_loss(losses.feature_matrix(F), self.target)


Term = ContentTerm | StyleTerm


class LossParts(NamedTuple):
    """The parts of Eq. 7 at one image, each before its weight (the log's names)."""

    content: float  # sum over content terms of w s L_content, before alpha
    style: float  # sum over style terms of w s E_l (Eq. 5), before beta
    tv: float  # L_TV, before its weight


@dataclass(frozen=True)
class Evaluation:
    r"""Eq. 7 at one image: the ``loss`` :math:`\mathcal{L}_{total}`, its gradient ``grad``
    (shaped like the image) and the ``parts`` it adds up (:class:`LossParts`).

    It unpacks as the pair an optimizer's function returns, ``loss, grad = evaluation``
    (:mod:`minist.optim`), so a :class:`minist.problem.Problem` is such a function itself.
    ``content``, ``style``, ``tv`` and ``total`` read the parts and the loss under the names of
    the log (:class:`minist.loop.IterationRecord`).
    """

    loss: float
    grad: Any = field(repr=False)
    parts: LossParts = LossParts(0.0, 0.0, 0.0)

    def __iter__(self):
        return iter((self.loss, self.grad))

    @property
    def total(self) -> float:
        return self.loss

    @property
    def content(self) -> float:
        return self.parts.content

    @property
    def style(self) -> float:
        return self.parts.style

    @property
    def tv(self) -> float:
        return self.parts.tv


@dataclass
class Objective:
    r"""Eq. 7 as loss terms: :math:`\alpha \sum_{content} w s \mathcal{L} + \beta
    \sum_{style} w s E + \lambda_{TV} \mathcal{L}_{TV}` (module docstring).

    ``terms`` in any order; a weight of :math:`\alpha` or :math:`\beta` of 0 drops that kind's
    terms from the evaluation (their losses read 0), and so does a term whose coefficient is 0.
    ``loss_backend``: ``"auto"`` or ``"reference"`` (:mod:`minist.execution`).
    """

    terms: Sequence[Term]
    content_weight: float = 1.0  # alpha
    style_weight: float = 1e3  # beta
    tv_weight: float = 0.0  # lambda_TV
    loss_backend: str = "auto"

    def layers(self) -> list[str]:
        """The layers whose features the objective reads (content terms' first)."""
        ordered = [t for t in self.terms if t.kind == "content"]
        ordered += [t for t in self.terms if t.kind == "style"]
        return list(dict.fromkeys(t.layer for t in ordered))

    def active_terms(self) -> list[Term]:
        """The terms that contribute: content ones if alpha > 0, style ones with a non-zero
        coefficient if beta > 0; content terms first, each kind in the order given."""
        content = [t for t in self.terms if t.kind == "content"] if self.content_weight > 0 else []
        style = ([t for t in self.terms if t.kind == "style" and t.coefficient != 0]
                 if self.style_weight > 0 else [])
        return content + style

    def multiplier(self, term: Term) -> float:
        """alpha or beta, for the kind of ``term``."""
        return self.content_weight if term.kind == "content" else self.style_weight

    def evaluate(self, net, image) -> Evaluation:
        """Loss parts and gradient of Eq. 7 at ``image`` (one forward, one backward pass).

        Each layer's loss gradients are computed when the backward pass reaches the layer
        (:class:`LayerGradients`), so only one feature-sized gradient exists at a time.
        """
        with net.config.scope():
            feats, cache = net.forward(image, self.layers()) if self.terms else ({}, None)
            layer_losses = LayerGradients(self, feats)
            if layer_losses.layers:
                grad = net.backward(layer_losses.gradient_at, cache)
            else:  # every weight is 0: nothing flows back
                grad = get_array_module(image).zeros_like(image)
            layer_losses.finish()  # layers the backward did not pass (none, normally)
            content, style = layer_losses.content, layer_losses.style
            del feats, cache, layer_losses
            tv = 0.0
            if self.tv_weight > 0:
                tv_value, tv_grad = self.backend(image).tv_loss(image)
                tv = float(tv_value)
                grad += self.tv_weight * tv_grad
            total = losses.total_loss(content, style, tv, self.content_weight,
                                      self.style_weight, self.tv_weight)  # Eq. 7
        return Evaluation(total, grad, LossParts(content, style, tv))

    def backend(self, array):
        """The loss functions for ``array``'s device (:func:`minist.losses.get_loss_backend`)."""
        return get_loss_backend(array, None if self.loss_backend == "auto" else "reference")


class LayerGradients:
    r"""The losses' side of one backward pass: :meth:`gradient_at` gives the backward
    :math:`\partial L / \partial F^l` at each layer it reaches (``net.backward`` calls it), and
    the loss values add up as the layers are reached (:attr:`content`, :attr:`style`).

    Each gradient is as large as the layer's features (256 MiB for relu1_1 at 1024 px);
    computed when the backward reaches its layer, only one exists at a time instead of all of
    them at once. The terms of one layer add up in their order (content before style). The loss
    values are kept as they come, as arrays on the device, and read (:attr:`content`,
    :attr:`style`, summed by the taught :func:`minist.losses.reference.weighted_sum`) only
    after the backward: on a GPU, reading a value waits for the device, which would stall the
    backward at every layer.
    :meth:`finish` computes the losses of layers the backward did not reach.
    """

    def __init__(self, objective: Objective, feats: dict):
        self.objective, self.feats = objective, feats
        self._weighted = {"content": [], "style": []}  # (coefficient, loss as a 0-d array)
        self._terms: dict[str, list[Term]] = {}
        for term in objective.active_terms():
            self._terms.setdefault(term.layer, []).append(term)
        self._reached: set[str] = set()
        self._backend = None

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers with an active term: where a gradient enters the backward pass."""
        return tuple(self._terms)

    def gradient_at(self, layer: str):
        r""":math:`\partial L / \partial F^l` of the terms at ``layer`` (shaped like its
        features), their losses recorded; None for a layer without terms. The backward calls
        it once per layer; a second call for a layer raises (its losses would count twice)."""
        terms = self._terms.get(layer)
        if terms is None:
            return None
        if layer in self._reached:
            raise RuntimeError(f"the gradient of layer {layer} was already handed out")
        self._reached.add(layer)
        F = self.feats[layer]
        if self._backend is None:
            self._backend = self.objective.backend(F)
        grad = None
        for term in terms:  # Eq. 1-2 (content), Eq. 4-6 (style), normalised
            c = term.coefficient
            loss, dF = term.loss_and_grad(F, self._backend)
            self._weighted[term.kind].append((c, loss))
            dF *= self.objective.multiplier(term) * c  # our own fresh array: scale in place
            grad = dF if grad is None else grad + dF
        return grad.reshape(F.shape)

    @property
    def content(self) -> float:
        """The content loss of the layers reached so far (Eq. 1, weighted and normalised)."""
        return reference.weighted_sum(self._weighted["content"])

    @property
    def style(self) -> float:
        """The style loss of the layers reached so far (Eq. 5, normalised)."""
        return reference.weighted_sum(self._weighted["style"])

    def finish(self) -> None:
        """Compute the loss values of the layers the backward did not reach."""
        for layer in self._terms:
            if layer not in self._reached:
                self.gradient_at(layer)


def blend_weights(weights: Sequence[float] | None, n_styles: int) -> tuple[float, ...]:
    r"""The blend :math:`w_i \ge 0`, :math:`\sum_i w_i = 1` of ``n_styles`` style images
    (``--style-blend``; default equal); one line naming the option for a bad one."""
    if weights is None:
        return (1.0 / n_styles,) * n_styles
    weights = tuple(weights)
    if len(weights) != n_styles:
        raise MinistError(f"--style-blend: {len(weights)} weights for {n_styles} style images")
    from minist.options import check_style_blend  # (here: minist.options imports this module)

    return check_style_blend(weights)


def blended_gram(grams: Sequence[Any], weights: Sequence[float]):
    r"""The target of several styles at one layer, :math:`A^l = \sum_i w_i A_i^l`.

    *Why blending the Grams is blending the styles.* For :math:`\sum_i w_i = 1`,

    .. math::

        \sum_i w_i \lVert G - A_i \rVert^2
          = \lVert G - \textstyle\sum_i w_i A_i \rVert^2
          + \underbrace{\textstyle\sum_i w_i \lVert A_i \rVert^2
          - \lVert \sum_i w_i A_i \rVert^2}_{\text{independent of } G},

    (expand both squares: the terms in :math:`\lVert G \rVert^2` and
    :math:`\langle G, A_i \rangle` agree exactly when the weights sum to 1), so the weighted sum
    of the per-style losses :math:`E_l` and the loss against the blended Gram differ by a
    constant and have the same gradient: one term per layer does the work of one per style.
    Styles of weight 0 are left out (not multiplied by 0), so a blend ``1, 0`` is the first
    style alone, bit for bit. Tutorial: ``tutorials/11_spatial_control``.
    """
    target = None
    for A, w in zip(grams, weights, strict=True):
        if w == 0:
            continue
        term = A if w == 1 else w * A
        target = term if target is None else target + term
    return target


def build_terms(net, content_image, style_images, content_layers: Sequence[str],
                style_layers: Sequence[str], style_layer_weights: Sequence[float] | None = None,
                normalize: bool = True, style_blend: Sequence[float] | None = None) -> list[Term]:
    r"""The terms of the paper's objective: the targets :math:`P^l` (features of the content
    image) and :math:`A^l` (Gram matrices of the style image, Eq. 3) at the chosen layers, each
    with its weight and normaliser.

    ``style_images``: one image or a list; with several, each layer's target is their blend
    :func:`blended_gram` with the weights ``style_blend`` (:func:`blend_weights`). Content
    layers share the weight equally; style layers too unless ``style_layer_weights`` (one per
    layer, Eq. 5's :math:`w_l`) is given. An image may be None when its layers are empty.
    """
    terms: list[Term] = []
    if content_layers:
        feats = net.forward(content_image, list(content_layers))[0]  # drop the cache
        weight = 1.0 / len(content_layers)
        for name, F in feats.items():
            P = losses.feature_matrix(F).copy()
            terms.append(ContentTerm(name, P, weight, content_normaliser(P, normalize)))
    if style_layers:
        images = style_images if isinstance(style_images, (list, tuple)) else [style_images]
        blend = blend_weights(style_blend, len(images))
        n = len(style_layers)
        raw = style_layer_weights or [1.0 / n] * n
        weights = dict(zip(style_layers, map(float, raw), strict=True))
        grams: dict[str, list] = {}
        for image, w in zip(images, blend, strict=True):
            if w == 0:  # not used: no forward pass
                continue
            feats = net.forward(image, list(style_layers))[0]
            for name, F in feats.items():
                grams.setdefault(name, []).append(losses.gram_matrix(losses.feature_matrix(F)))
        used = [w for w in blend if w != 0]
        for name in [spec.name for spec in net.layer_specs if spec.name in weights]:
            A = blended_gram(grams[name], used)
            terms.append(StyleTerm(name, A, weights[name], style_normaliser(A, normalize)))
    return terms
