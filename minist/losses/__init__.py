r"""The losses of Gatys et al. (2015), with their analytic gradients.

The functions here have the signatures (and give the results) of :mod:`.reference`, where the
equations and their derivations live; each call goes through :func:`get_loss_backend`, which
picks the fastest implementation for the arrays' device (Numba kernels on the CPU where they
win, CUDA kernels on the GPU). Values are 0-d arrays of the input's dtype on its device.

========================  ==================================================  ============
function                  computes                                            paper
========================  ==================================================  ============
``content_loss(F, P)``    :math:`\tfrac12 \sum (F - P)^2` and :math:`F - P`    Eq. 1, 2
``gram_matrix(F)``        :math:`G = F F^\top / M_l`                           Eq. 3
``style_layer_loss(F,A)`` :math:`E_l = \frac{1}{4N_l^2}\sum (G - A)^2`, grad   Eq. 4, 6
``style_loss(...)``       :math:`\sum_l w_l E_l` and each layer's gradient     Eq. 5
``weighted_sum(pairs)``   :math:`\sum_l w_l E_l` of ``(w_l, E_l)`` pairs       Eq. 5
``tv_loss(x)``            squared total variation and its gradient             --
``total_loss(...)``       :math:`\alpha L_c + \beta L_s + \lambda_{TV} L_{TV}`  Eq. 7
========================  ==================================================  ============

Spatial control (Gatys et al. 2017, "Controlling Perceptual Factors", §4) adds guided Grams:

==================================  ==========================================================
function                            computes
==================================  ==========================================================
``guided_gram_matrix(F, T)``        :math:`G_T = (F \circ T)(F \circ T)^\top / M_l`
``guided_style_layer_loss(F,A,T)``  :math:`\frac{1}{4N_l^2}\sum (G_T - A)^2` and its gradient
==================================  ==========================================================

They run the readable reference on both devices: they are :func:`style_layer_loss` plus one
elementwise product with the guide on the way in and one on the way out, and the two matrix
products (BLAS, cuBLAS) dominate their time as they do the unguided loss's, for which the
dispatcher picks the reference on the CPU too (``dispatch`` module docstring). Measured with
float32 features, a half-image guide, best of 15 on the 2-core machine of the ``dispatch``
table: 256 x 16384 (relu3_1 at 512 px) 28 ms unguided, 34 ms guided; 64 x 262144 (relu1_1)
52 ms and 62 ms -- a fused kernel could save at most the difference, per region and layer,
next to seconds of forward and backward passes per evaluation.

Tutorials: ``tutorials/04_content_loss``, ``tutorials/05_gram_and_style``,
``tutorials/06_total_loss``, ``tutorials/11_spatial_control``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minist.losses import reference
from minist.losses.dispatch import get_loss_backend
from minist.losses.reference import feature_matrix, total_loss, weighted_sum

__all__ = [
    "content_loss",
    "feature_matrix",
    "get_loss_backend",
    "gram_matrix",
    "guided_gram_matrix",
    "guided_style_layer_loss",
    "style_layer_loss",
    "style_loss",
    "total_loss",
    "tv_loss",
    "weighted_sum",
]


def content_loss(F: Any, P: Any):
    """Content loss and gradient (paper Eq. 1, 2); see :func:`.reference.content_loss`."""
    return get_loss_backend(F).content_loss(F, P)


def gram_matrix(F: Any):
    """Gram matrix :math:`F F^T / M` (paper Eq. 3); see :func:`.reference.gram_matrix`."""
    return get_loss_backend(F).gram_matrix(F)


def style_layer_loss(F: Any, A: Any):
    """One layer's style loss and gradient (Eq. 4, 6); see :func:`.reference.style_layer_loss`."""
    return get_loss_backend(F).style_layer_loss(F, A)


def guided_gram_matrix(F: Any, T: Any):
    r"""Guided Gram :math:`(F \circ T)(F \circ T)^T / M` (Gatys et al. 2017, §4); see
    :func:`.reference.guided_gram_matrix` (the reference on every device)."""
    return reference.guided_gram_matrix(F, T)


def guided_style_layer_loss(F: Any, A: Any, T: Any):
    """One layer's guided style loss and gradient (Gatys et al. 2017, §4); see
    :func:`.reference.guided_style_layer_loss` (the reference on every device)."""
    return reference.guided_style_layer_loss(F, A, T)


def style_loss(
    features: Mapping[str, Any],
    targets: Mapping[str, Any],
    layer_weights: Mapping[str, float] | None = None,
):
    """Weighted style loss over layers (paper Eq. 5); see :func:`.reference.style_loss`."""
    return reference.style_loss(features, targets, layer_weights, layer_loss=style_layer_loss)


def tv_loss(image: Any):
    """Squared total variation and gradient; see :func:`.reference.tv_loss`."""
    return get_loss_backend(image).tv_loss(image)
