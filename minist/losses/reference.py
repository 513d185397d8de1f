r"""The paper's losses and their analytic gradients, written to be read (NumPy or CuPy).

Gatys, Ecker & Bethge (2015), "A Neural Algorithm of Artistic Style". At layer :math:`l` the
activation of shape :math:`(1, N_l, H_l, W_l)` is read as the feature matrix

.. math::

    F^l \in \mathbb{R}^{N_l \times M_l}, \qquad M_l = H_l W_l,

one row per channel (filter), one column per position. Every function returns the loss
*value* and its gradient with respect to its first argument, so the caller can backpropagate the
gradient through the network (the ReLU's backward applies the paper's :math:`F > 0` mask there).

Conventions shared by :mod:`minist.losses.kernels_numba` and :mod:`minist.losses.kernels_cupy`,
which compute the same numbers faster:

* The value is a **0-d array** of the input's dtype on the input's device (a CuPy 0-d array
  stays on the GPU, so reading a loss never forces a device sync); ``float(value)`` reads it.
  The scalar sums are accumulated in float64 and rounded once to the input's dtype.
* Gradients have the input's shape and dtype. Targets (:math:`P`, :math:`A`) are cast to the
  input's dtype.
* Every line runs on NumPy and CuPy alike: ``xp = get_array_module(x)``.

Derivations: ``tutorials/04_content_loss``, ``tutorials/05_gram_and_style``,
``tutorials/06_total_loss``; the guided Gram matrices of spatial control (Gatys et al. 2017,
"Controlling Perceptual Factors in Neural Style Transfer", §4): ``tutorials/11_spatial_control``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from minist.backend import get_array_module
from minist.errors import MinistError


def feature_matrix(x: Any):
    r"""View an activation as the feature matrix :math:`F^l \in \mathbb{R}^{N_l \times M_l}`.

    Accepts :math:`F` itself (2-D) or an activation of shape :math:`(1, N_l, H_l, W_l)`, which
    is reshaped (a view for contiguous arrays) to :math:`(N_l, H_l W_l)`.
    """
    if x.ndim == 2:
        return x
    if x.ndim == 4 and x.shape[0] == 1:
        return x.reshape(x.shape[1], x.shape[2] * x.shape[3])
    raise ValueError(f"features: expected (N_l, M_l) or (1, C, H, W), got shape {x.shape}")


def _scalar(value: Any, like: Any):
    """``value`` as a 0-d array of ``like``'s dtype on ``like``'s device."""
    xp = get_array_module(like)
    return xp.asarray(value, dtype=like.dtype)


def content_loss(F: Any, P: Any):
    r"""Content loss and its gradient (paper Eq. 1 and 2).

    .. math::

        \mathcal{L}_{content} = \tfrac12 \sum_{i,j} (F_{ij} - P_{ij})^2, \qquad
        \frac{\partial \mathcal{L}_{content}}{\partial F_{ij}} = F_{ij} - P_{ij},

    with :math:`F, P` of any one shape (usually :math:`N_l \times M_l` or
    :math:`1 \times N_l \times H_l \times W_l`): :math:`F` the generated image's features,
    :math:`P` the content image's. Each term depends on one :math:`F_{ij}` only, and
    :math:`\tfrac{d}{dF}\tfrac12 (F - P)^2 = F - P`. The paper writes the gradient restricted to
    :math:`F_{ij} > 0`; that mask is the ReLU's backward, applied by the network, not here.
    Derivation: ``tutorials/04_content_loss``.

    Returns ``(L, dF)``: ``L`` a 0-d array of ``F``'s dtype, ``dF`` shaped like ``F``.
    """
    xp = get_array_module(F)
    P = xp.asarray(P, dtype=F.dtype)
    if P.shape != F.shape:
        raise ValueError(f"content_loss: F has shape {F.shape} but P has shape {P.shape}")
    dF = F - P  # Eq. 2: the gradient *is* the difference
    L = 0.5 * xp.sum(dF * dF, dtype=xp.float64)  # Eq. 1, summed in float64
    return _scalar(L, F), dF


def gram_matrix(F: Any):
    r"""Gram matrix of the features, normalised by the number of positions (paper Eq. 3).

    .. math::

        G^l = \frac{1}{M_l} F^l (F^l)^\top \in \mathbb{R}^{N_l \times N_l}, \qquad
        G^l_{ij} = \frac{1}{M_l} \sum_k F^l_{ik} F^l_{jk},

    the (uncentred) correlation between the responses of filters :math:`i` and :math:`j`,
    averaged over the :math:`M_l` positions; symmetric by construction. The paper's Eq. 3 has
    no :math:`1/M_l`; minist divides here so that Grams of different image sizes are comparable
    and compensates in :func:`style_layer_loss` (see there). ``F`` may also be a
    :math:`(1, N_l, H_l, W_l)` activation. Derivation: ``tutorials/05_gram_and_style``.
    """
    F = feature_matrix(F)
    M = F.shape[1]
    return (F @ F.T) / M  # one GEMM (cuBLAS on the GPU)


def style_layer_loss(F: Any, A: Any):
    r"""One layer's style loss :math:`E_l` and its gradient (paper Eq. 4 and 6).

    With :math:`G = G^l` from :func:`gram_matrix` (normalised by :math:`1/M_l`) and the style
    image's Gram :math:`A = A^l` normalised the same way, both :math:`N_l \times N_l`:

    .. math::

        E_l = \frac{1}{4 N_l^2} \sum_{i,j} (G_{ij} - A_{ij})^2, \qquad
        \frac{\partial E_l}{\partial F^l} = \frac{1}{N_l^2 M_l} (G - A)\, F^l
        \in \mathbb{R}^{N_l \times M_l}.

    *Same value as the paper.* The paper uses un-normalised Grams :math:`\hat G = F F^\top
    = M_l G` (and :math:`\hat A = M_l A`) and writes
    :math:`E_l = \frac{1}{4 N_l^2 M_l^2} \sum (\hat G - \hat A)^2`; substituting,
    :math:`\frac{1}{4 N_l^2 M_l^2} \sum M_l^2 (G - A)^2 = \frac{1}{4 N_l^2} \sum (G - A)^2`.
    The :math:`1/M_l` is applied **once**: either inside the Gram (minist) or in :math:`E_l`
    (the paper), never both. Some write-ups of the method define :math:`G` with a
    :math:`1/(IJ) = 1/M_l` inside the Gram *and* keep the paper's :math:`1/(4 N_l^2 M_l^2)` in
    :math:`E_l`; taken literally that divides by :math:`M_l^4` overall and makes the style
    weight depend on the image size. minist implements the paper's value.

    *Gradient, key step.* :math:`dE = \frac{1}{2 N_l^2} \sum_{ij} (G - A)_{ij}\, dG_{ij}` and
    :math:`dG = \frac{1}{M_l}(dF\, F^\top + F\, dF^\top)`; because :math:`G - A` is symmetric
    both halves contribute the same, so :math:`dE = \frac{1}{N_l^2 M_l}
    \operatorname{tr}\!\big((G - A) F\, dF^\top\big)`, i.e. the formula above. In the paper's
    un-normalised notation this is :math:`\frac{1}{N_l^2 M_l^2}
    \big((F^l)^\top (\hat G^l - \hat A^l)\big)^\top`, which the paper restricts to
    :math:`F^l_{ij} > 0`: that mask is the ReLU's backward, which minist applies in the
    network's backward pass, not here. Derivation: ``tutorials/05_gram_and_style``.

    ``F`` may be :math:`N_l \times M_l` or a :math:`(1, N_l, H_l, W_l)` activation; ``A`` must be
    symmetric (a Gram). Returns ``(E, dF)``: ``E`` a 0-d array of ``F``'s dtype, ``dF`` shaped
    like ``F``.
    """
    xp = get_array_module(F)
    Fm = feature_matrix(F)
    N, M = Fm.shape
    A = xp.asarray(A, dtype=F.dtype)
    if A.shape != (N, N):
        raise ValueError(f"style_layer_loss: F has {N} channels but A has shape {A.shape}")
    D = gram_matrix(Fm) - A  # G - A, symmetric
    E = xp.sum(D * D, dtype=xp.float64) / (4 * N * N)  # Eq. 4 (normalised once, in G)
    dF = (D / (N * N * M)) @ Fm  # Eq. 6: (G - A) F / (N^2 M)
    return _scalar(E, F), dF.reshape(F.shape)



def _guide_vector(T: Any, F: Any, Fm: Any, who: str):
    """The guide :math:`T` as a vector of the :math:`M_l` positions, in ``F``'s dtype."""
    xp = get_array_module(F)
    T = xp.asarray(T, dtype=F.dtype)
    M = Fm.shape[1]
    if T.ndim == 2 and F.ndim == 4 and T.shape != F.shape[2:]:
        raise ValueError(f"{who}: F has positions {F.shape[2:]} but the guide has shape {T.shape}")
    if T.ndim not in (1, 2) or T.size != M:
        raise ValueError(f"{who}: F has {M} positions but the guide has shape {T.shape}")
    return T.reshape(M)


def guided_gram_matrix(F: Any, T: Any):
    r"""The Gram matrix of the features weighted by a spatial guide (Gatys et al. 2017, §4).

    A guide :math:`T \in \mathbb{R}^{M_l}` (one weight per position, shared by all channels:
    the region's mask propagated to layer :math:`l` and normalised,
    :func:`minist.masks.propagate_mask`, :func:`minist.masks.normalise_guide`) selects where
    the statistics are taken:

    .. math::

        G_T = \frac{1}{M_l} (F \circ T)(F \circ T)^\top \in \mathbb{R}^{N_l \times N_l},
        \qquad (G_T)_{ij} = \frac{1}{M_l} \sum_k T_k^2\, F_{ik} F_{jk},

    with :math:`(F \circ T)_{ik} = F_{ik} T_k` (the guide broadcast over the channels). With a
    binary region of :math:`m` positions normalised to :math:`T_k = \sqrt{M_l / m}` inside and 0
    outside, :math:`(G_T)_{ij} = \frac{1}{m} \sum_{k \in \text{region}} F_{ik} F_{jk}`: the Gram
    of the region alone, averaged over *its* positions, so it compares with the Gram of a whole
    image. :math:`T = 1` everywhere gives :func:`gram_matrix`.

    ``F``: :math:`N_l \times M_l` or an activation :math:`(1, N_l, H_l, W_l)`; ``T``: shape
    :math:`(M_l,)` or :math:`(H_l, W_l)`, cast to ``F``'s dtype. Derivation:
    ``tutorials/11_spatial_control``.
    """
    Fm = feature_matrix(F)
    FT = Fm * _guide_vector(T, F, Fm, "guided_gram_matrix")  # F o T: column k times T_k
    return (FT @ FT.T) / Fm.shape[1]


def guided_style_layer_loss(F: Any, A: Any, T: Any):
    r"""One layer's style loss with a spatial guide, and its derivative (Gatys et al. 2017, §4).

    With :math:`G_T` from :func:`guided_gram_matrix` and the target :math:`A` (the guided Gram of
    the style image's region, :math:`N_l \times N_l`):

    .. math::

        E = \frac{1}{4 N_l^2} \sum_{i,j} \big((G_T)_{ij} - A_{ij}\big)^2 .

    Its gradient with respect to :math:`F`:

    .. math::

        \frac{\partial E}{\partial F} = T \circ \frac{(G_T - A)\,(F \circ T)}{N_l^2 M_l}
        \in \mathbb{R}^{N_l \times M_l}.

    *Gradient, key step.* Write :math:`\tilde F = F \circ T`, so :math:`G_T = \frac{1}{M_l}
    \tilde F \tilde F^\top` is the plain Gram of :math:`\tilde F` and, exactly as in
    :func:`style_layer_loss`, :math:`\partial E / \partial \tilde F = \frac{1}{N_l^2 M_l}
    (G_T - A) \tilde F`. Since :math:`\tilde F_{ik} = F_{ik} T_k`,
    :math:`\partial \tilde F_{ik} / \partial F_{ik} = T_k` and the chain rule multiplies column
    :math:`k` by :math:`T_k` once more: the formula above. Positions outside the region
    (:math:`T_k = 0`) get no gradient from this region's term. With :math:`T = 1` this is
    :func:`style_layer_loss`. Derivation: ``tutorials/11_spatial_control``.

    ``F``: :math:`N_l \times M_l` or :math:`(1, N_l, H_l, W_l)`; ``A``: symmetric, cast to
    ``F``'s dtype; ``T``: :math:`(M_l,)` or :math:`(H_l, W_l)`. Returns ``(E, dF)``: ``E`` a
    0-d array of ``F``'s dtype (summed in float64), ``dF`` shaped like ``F``.
    """
    xp = get_array_module(F)
    Fm = feature_matrix(F)
    N, M = Fm.shape
    A = xp.asarray(A, dtype=F.dtype)
    if A.shape != (N, N):
        raise ValueError(f"guided_style_layer_loss: F has {N} channels but A has shape {A.shape}")
    T = _guide_vector(T, F, Fm, "guided_style_layer_loss")
    FT = Fm * T  # F o T
    D = (FT @ FT.T) / M - A  # G_T - A, symmetric
    E = xp.sum(D * D, dtype=xp.float64) / (4 * N * N)
    dF = (D / (N * N * M)) @ FT  # (G_T - A)(F o T) / (N^2 M) ...
    dF *= T  # ... times T_k once more (the chain rule through F o T); our own array
    return _scalar(E, F), dF.reshape(F.shape)


def style_loss(
    features: Mapping[str, Any],
    targets: Mapping[str, Any],
    layer_weights: Mapping[str, float] | None = None,
    *,
    layer_loss: Callable[[Any, Any], tuple[Any, Any]] = style_layer_loss,
):
    r"""Total style loss over the chosen layers and each layer's gradient (paper Eq. 5).

    .. math::

        \mathcal{L}_{style} = \sum_{l} w_l E_l, \qquad
        \frac{\partial \mathcal{L}_{style}}{\partial F^l} = w_l \frac{\partial E_l}{\partial F^l},

    ``features`` maps layer names to :math:`F^l`, ``targets`` the same names to the style
    Grams :math:`A^l`, ``layer_weights`` names to :math:`w_l` (default: equal, :math:`w_l =
    1/|\mathcal{S}|` for the set :math:`\mathcal{S}` of style layers, as in the paper's
    figures). Each layer's term depends on its own
    :math:`F^l` only, so the gradient is the layer's own scaled by :math:`w_l`; the sum is
    :func:`weighted_sum`, the one the engine's objective adds its layers with.
    ``layer_loss`` computes one :math:`(E_l, \partial E_l/\partial F^l)`; the package-level
    :func:`minist.losses.style_loss` passes the fastest one for the arrays' device.
    Derivation: ``tutorials/05_gram_and_style``.

    Returns ``(L_style, grads)``: a 0-d array and ``{name: dF^l}``.
    """
    names = list(features)
    if not names:
        raise MinistError("style layers: no layers given")
    missing = [n for n in names if n not in targets]
    if missing:
        raise MinistError(f"style layers: no style target for {', '.join(missing)}")
    if layer_weights is None:
        layer_weights = {n: 1.0 / len(names) for n in names}
    missing = [n for n in names if n not in layer_weights]
    if missing:
        raise MinistError(f"style layer weights: no weight for {', '.join(missing)}")

    weighted = []  # (w_l, E_l)
    grads = {}
    for name in names:
        E, dF = layer_loss(features[name], targets[name])
        w = float(layer_weights[name])
        dF *= w  # our own fresh array: scale in place
        grads[name] = dF
        weighted.append((w, E))
    return _scalar(weighted_sum(weighted), features[names[-1]]), grads  # Eq. 5


def weighted_sum(weighted: Iterable[tuple[float, Any]]) -> float:
    r"""The sum of Eq. 5, :math:`\sum_l w_l E_l`, of ``(w_l, E_l)`` pairs, as a Python float.

    Each :math:`E_l` (a 0-d array, on the GPU perhaps) is read only here, so a caller can keep
    the losses on the device while it computes and read them all at once afterwards; the sum is
    accumulated in float64, in the order given. :func:`style_loss` sums with it, and so does
    the engine (:class:`minist.objective.LayerGradients`: its style terms, weights
    :math:`w_l` times the normalising factor, and likewise its content terms).
    """
    return sum((w * float(E) for w, E in weighted), 0.0)


def tv_loss(image: Any):
    r"""Total-variation loss of the image and its gradient (a smoothness prior).

    Not in Gatys et al. (2015); it is the total variation of Mahendran & Vedaldi (2015) with
    their exponent set to 2. For :math:`x \in \mathbb{R}^{N \times C \times H \times W}`:

    .. math::

        \mathcal{L}_{TV} = \sum_{n,c} \Big[ \sum_{i=0}^{H-2} \sum_{j=0}^{W-1}
            (x_{i+1,j} - x_{i,j})^2 + \sum_{i=0}^{H-1} \sum_{j=0}^{W-2}
            (x_{i,j+1} - x_{i,j})^2 \Big],

    summed over the differences that exist (no padding), with no normalisation (``tv_weight``
    sets the scale). At exponent 2, Mahendran & Vedaldi's isotropic
    :math:`((\Delta_v x)^2 + (\Delta_h x)^2)^{2/2}` and anisotropic
    :math:`|\Delta_v x|^2 + |\Delta_h x|^2` forms coincide: a plain sum of squares, whose
    vertical and horizontal terms separate. (Their exponent is called :math:`\beta` there; it
    has nothing to do with the style weight :math:`\beta` of Eq. 7.)

    *Gradient, key step.* Pixel :math:`x_{i,j}` appears in at most four differences, as the
    "later" pixel (sign +) of the one above and the one on its left and as the "earlier"
    pixel (sign -) of the one below and the one on its right:

    .. math::

        \frac{\partial \mathcal{L}_{TV}}{\partial x_{i,j}} =
            2 (x_{i,j} - x_{i-1,j}) - 2 (x_{i+1,j} - x_{i,j})
          + 2 (x_{i,j} - x_{i,j-1}) - 2 (x_{i,j+1} - x_{i,j}),

    dropping the terms whose neighbour lies outside the image.
    Derivation: ``tutorials/06_total_loss``.

    Returns ``(L, dimage)``: ``L`` a 0-d array of the image's dtype, ``dimage`` its shape.
    """
    xp = get_array_module(image)
    if image.ndim != 4:
        raise ValueError(f"tv_loss: expected an (N, C, H, W) image, got shape {image.shape}")
    dv = image[:, :, 1:, :] - image[:, :, :-1, :]  # x_{i+1,j} - x_{i,j}
    dh = image[:, :, :, 1:] - image[:, :, :, :-1]  # x_{i,j+1} - x_{i,j}
    L = xp.sum(dv * dv, dtype=xp.float64) + xp.sum(dh * dh, dtype=xp.float64)

    grad = xp.zeros_like(image)
    grad[:, :, 1:, :] += 2 * dv  # x_{i,j} is the later pixel of the pair above it
    grad[:, :, :-1, :] -= 2 * dv  # ... and the earlier pixel of the pair below it
    grad[:, :, :, 1:] += 2 * dh  # later pixel of the pair on its left
    grad[:, :, :, :-1] -= 2 * dh  # earlier pixel of the pair on its right
    return _scalar(L, image), grad


def total_loss(content: Any, style: Any, tv: Any, alpha: float, beta: float, tv_weight: float):
    r"""The objective the image is optimised for (paper Eq. 7, plus the TV prior).

    .. math::

        \mathcal{L}_{total} = \alpha\, \mathcal{L}_{content} + \beta\, \mathcal{L}_{style}
            + \lambda_{TV}\, \mathcal{L}_{TV}.

    The paper's figures use :math:`\alpha/\beta = 10^{-3}` or :math:`10^{-4}`;
    :math:`\lambda_{TV}` is ``tv_weight`` (0 turns the prior off). Being linear, the same
    combination of the three *gradients* (with respect to the image, after backpropagation)
    is the gradient of the total, so this helper serves for values and gradients alike.
    Derivation: ``tutorials/06_total_loss``.
    """
    return alpha * content + beta * style + tv_weight * tv
