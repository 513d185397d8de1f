r"""Colour control: luminance-only transfer and colour histogram matching (NumPy or CuPy).

Gatys, Ecker, Bethge, Hertzmann & Shechtman (CVPR 2017), "Controlling Perceptual Factors in
Neural Style Transfer", section 5. A style transfer copies the painting's colours along with its
strokes; these two controls keep the photo's colours instead.

**Luminance-only transfer.** Convert both images to YIQ (:func:`rgb_to_yiq`): :math:`Y` is the
luminance, which carries the structure (edges, strokes, shading); :math:`I` and :math:`Q` carry
the colour. Match the style's luminance to the content's mean and standard deviation
(:func:`match_luminance`), run the transfer on the luminances alone -- the network sees
:math:`Y` replicated to three channels (:func:`gray_to_rgb`, whose backward
:func:`gray_to_rgb_backward` brings the gradient back to :math:`Y`) -- and give the result the
content's :math:`I` and :math:`Q` (:func:`combine_luminance`). :func:`luminance_inputs` prepares
the luminances a run needs.

**Colour histogram matching.** Before the transfer, move every style pixel by one affine map
:math:`x' = A x + b` chosen so that the style's colour mean and covariance
(:func:`color_statistics`) become the content's: :math:`b = \mu_C - A \mu_S` and
:math:`A \Sigma_S A^\top = \Sigma_C`. That equation has many solutions; :data:`METHODS` names
the three minist offers (:func:`pca_transform`, :func:`cholesky_transform`,
:func:`sym_transform`, chosen by :func:`color_transform_matrix`), :func:`match_colors` applies
one, :func:`histogram_inputs` matches several styles.

Conventions: images are ``(N, 3, H, W)`` (a run uses ``N = 1``) or ``(3, H, W)``, float, RGB in
[0, 1]; luminances are ``(N, 1, H, W)`` or ``(1, H, W)``. Pixel maps run on the image's device
in its dtype (``xp = get_array_module(x)``); the 3x3 linear algebra (statistics, square roots,
Cholesky factors) is done in float64 with NumPy on the CPU, even for CuPy images -- it is 3x3.
Derivations and pictures: ``tutorials/09_color_control``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from minist.backend import get_array_module, to_numpy
from minist.errors import MinistError

# The FCC NTSC (1953) colour television standard, as rows (Y, I, Q) applied to (R, G, B):
# Y = 0.299 R + 0.587 G + 0.114 B is the NTSC luma; I and Q are the two colour-difference
# signals (B - Y, R - Y scaled by 0.492 and 0.877, then turned by 33 degrees), tabulated to four
# decimals as usual. Each of the I and Q rows sums to 0, so a gray pixel R = G = B = g has
# Y = g and I = Q = 0 exactly.
YIQ_FROM_RGB = np.array(
    [
        [0.299, 0.587, 0.114],
        [0.5959, -0.2746, -0.3213],
        [0.2115, -0.5227, 0.3112],
    ],
    dtype=np.float64,
)
YIQ_FROM_RGB.setflags(write=False)

METHODS = ("pca", "cholesky", "sym")  # the colour transforms of --color-transform
DEFAULT_EPS = 1e-5  # added to the covariances' diagonal (keeps them invertible)


# -------------------------------------------------------------------------------- helpers


def _channel_axis(image: Any, channels: int, what: str = "image") -> int:
    """The channel axis of ``(N, C, H, W)`` (1) or ``(C, H, W)`` (0); checks ``C``."""
    if image.ndim not in (3, 4):
        raise ValueError(f"{what}: expected (N, {channels}, H, W) or ({channels}, H, W), "
                         f"got shape {image.shape}")
    axis = image.ndim - 3
    if image.shape[axis] != channels:
        raise ValueError(f"{what}: expected {channels} channel(s) on axis {axis}, "
                         f"got shape {image.shape}")
    if image.dtype.kind != "f":
        raise ValueError(f"{what}: expected a float array, got dtype {image.dtype}")
    return axis


def apply_color_matrix(image: Any, A: Any, b: Any = None):
    r"""Apply :math:`x' = A x + b` to every pixel's colour :math:`x \in \mathbb{R}^3`.

    .. math::

        x'_{n,:,i,j} = A\, x_{n,:,i,j} + b, \qquad A \in \mathbb{R}^{k \times 3},\;
        b \in \mathbb{R}^k,

    for ``image`` of shape ``(N, 3, H, W)`` or ``(3, H, W)``; the result has ``k`` channels
    (``k = 3`` for a colour transform, ``k = 1`` for the luminance row alone) and the image's
    dtype and device. ``A`` and ``b`` (NumPy, any float) are cast to the image's dtype; as one
    matrix product over the ``H W`` pixels: :math:`X' = A X + b \mathbf{1}^\top` with
    :math:`X \in \mathbb{R}^{3 \times HW}`. Nothing is clipped. Derivation:
    ``tutorials/09_color_control``.
    """
    xp = get_array_module(image)
    _channel_axis(image, 3)
    A = xp.asarray(A, dtype=image.dtype)
    if A.ndim != 2 or A.shape[1] != 3:
        raise ValueError(f"apply_color_matrix: A must be (k, 3), got shape {A.shape}")
    H, W = image.shape[-2:]
    pixels = image.reshape(*image.shape[:-2], H * W)  # (N, 3, HW) or (3, HW)
    out = A @ pixels  # (k, 3) @ (..., 3, HW) -> (..., k, HW)
    if b is not None:
        out += xp.asarray(b, dtype=image.dtype).reshape(-1, 1)
    return out.reshape(*image.shape[:-3], A.shape[0], H, W)


# ------------------------------------------------------------------------------------ YIQ


def rgb_to_yiq(image: Any):
    r"""RGB to YIQ, pixel by pixel (paper §5, luminance-only transfer).

    .. math::

        \begin{pmatrix} Y \\ I \\ Q \end{pmatrix} =
        \begin{pmatrix} 0.299 & 0.587 & 0.114 \\ 0.5959 & -0.2746 & -0.3213 \\
        0.2115 & -0.5227 & 0.3112 \end{pmatrix}
        \begin{pmatrix} R \\ G \\ B \end{pmatrix},

    the FCC NTSC (1953) coefficients (:data:`YIQ_FROM_RGB`). :math:`Y` is the luminance: a
    weighted mean of R, G, B (the weights sum to 1, so :math:`Y \in [0, 1]` for an RGB image in
    [0, 1]); :math:`I` (orange-blue) and :math:`Q` (purple-green) are zero for every gray.
    ``image``: ``(N, 3, H, W)`` or ``(3, H, W)``, float; returns the same shape, channels
    ``(Y, I, Q)``, in the image's dtype and on its device. Tutorial:
    ``tutorials/09_color_control``.
    """
    return apply_color_matrix(image, YIQ_FROM_RGB)


def yiq_to_rgb(yiq: Any):
    r"""YIQ back to RGB: the exact inverse of :func:`rgb_to_yiq` (paper §5).

    .. math::

        \begin{pmatrix} R \\ G \\ B \end{pmatrix} = T^{-1}
        \begin{pmatrix} Y \\ I \\ Q \end{pmatrix}, \qquad
        T^{-1} \approx \begin{pmatrix} 1 & 0.956 & 0.619 \\ 1 & -0.272 & -0.647 \\
        1 & -1.106 & 1.703 \end{pmatrix},

    with :math:`T` = :data:`YIQ_FROM_RGB` and :math:`T^{-1}` its exact matrix inverse
    (``numpy.linalg.inv``, float64), not the rounded inverse that tables print -- so that
    ``yiq_to_rgb(rgb_to_yiq(x))`` gives ``x`` back to float precision. Its first column is 1
    (in exact arithmetic) because :math:`T`'s I and Q rows sum to 0: a gray is
    :math:`(Y, 0, 0)`. Not clipped: a YIQ triple need not come from a
    colour in [0, 1], and clipping would break the round trip. ``yiq``: ``(N, 3, H, W)`` or
    ``(3, H, W)``. Tutorial: ``tutorials/09_color_control``.
    """
    return apply_color_matrix(yiq, np.linalg.inv(YIQ_FROM_RGB))  # T^-1, exact, in float64


def luminance(image: Any):
    r"""The luminance :math:`Y = 0.299 R + 0.587 G + 0.114 B` of an RGB image (paper §5).

    The first row of :func:`rgb_to_yiq` alone: ``(N, 3, H, W)`` -> ``(N, 1, H, W)`` (or
    ``(3, H, W)`` -> ``(1, H, W)``), the image's dtype and device.
    Tutorial: ``tutorials/09_color_control``.
    """
    return apply_color_matrix(image, YIQ_FROM_RGB[:1])


# ---------------------------------------------------------------- luminance-only transfer


def _mean_std(x: Any) -> tuple[float, float]:
    """Mean and (population) standard deviation of all of ``x``, accumulated in float64."""
    xp = get_array_module(x)
    mean = float(xp.mean(x, dtype=xp.float64))
    std = float(xp.sqrt(xp.mean((x.astype(xp.float64) - mean) ** 2)))
    return mean, std


def match_luminance(style_y: Any, content_y: Any):
    r"""Match the style's luminance to the content's mean and spread (paper §5).

    .. math::

        L_{S'} = \frac{\sigma_C}{\sigma_S} \big(L_S - \mu_S\big) + \mu_C,

    with :math:`\mu, \sigma` the mean and (population) standard deviation over all pixels of
    each luminance image (accumulated in float64). Then :math:`L_{S'}` has mean :math:`\mu_C`
    and standard deviation :math:`\sigma_C`: a dark painting and a bright photo are brought to
    the same brightness and contrast before the network compares their textures. A constant
    style (:math:`\sigma_S = 0`) has no contrast to scale: it becomes the constant
    :math:`\mu_C`. The result is not clipped to [0, 1] (clipping would change its statistics;
    the network accepts any values).

    ``style_y`` and ``content_y``: luminances of any shapes (usually ``(1, 1, H, W)``, of
    different sizes); returns ``style_y``'s shape, dtype and device.
    Tutorial: ``tutorials/09_color_control``.
    """
    mu_s, sigma_s = _mean_std(style_y)
    mu_c, sigma_c = _mean_std(content_y)
    scale = sigma_c / sigma_s if sigma_s > 0 else 1.0  # sigma_S = 0: L_S - mu_S is 0 anyway
    out = scale * (style_y - mu_s) + mu_c  # Python floats keep style_y's dtype
    return out.astype(style_y.dtype, copy=False)


def gray_to_rgb(y: Any):
    r"""Replicate a luminance to three channels: what the network sees of :math:`Y`.

    .. math::

        x_{n,c,i,j} = y_{n,0,i,j}, \qquad c \in \{R, G, B\},

    so a luminance image enters VGG as the gray RGB image :math:`(Y, Y, Y)` (paper §5:
    "the network sees the luminance"). ``(N, 1, H, W)`` -> ``(N, 3, H, W)`` (or
    ``(1, H, W)`` -> ``(3, H, W)``), a new array in ``y``'s dtype and device. Backward:
    :func:`gray_to_rgb_backward`. Tutorial: ``tutorials/09_color_control``.
    """
    xp = get_array_module(y)
    axis = _channel_axis(y, 1, "gray_to_rgb")
    return xp.repeat(y, 3, axis=axis)


def gray_to_rgb_backward(dx: Any):
    r"""The gradient of :func:`gray_to_rgb`: the sum over the three channels (chain rule).

    Every channel of :math:`x` is a copy of :math:`y`, so :math:`\partial x_{n,c,i,j} /
    \partial y_{n,0,i,j} = 1` for each :math:`c`, and

    .. math::

        \frac{\partial \mathcal{L}}{\partial y_{n,0,i,j}} =
        \sum_{c=1}^{3} \frac{\partial \mathcal{L}}{\partial x_{n,c,i,j}} .

    ``dx``: the gradient w.r.t. the network's 3-channel input, ``(N, 3, H, W)`` or
    ``(3, H, W)``; returns ``(N, 1, H, W)`` (or ``(1, H, W)``) in ``dx``'s dtype and device: the
    gradient w.r.t. the luminance that the run optimises. Gradient-checked by finite
    differences in ``tests/test_color.py``. Tutorial: ``tutorials/09_color_control``.
    """
    axis = _channel_axis(dx, 3, "gray_to_rgb_backward")
    return dx.sum(axis=axis, keepdims=True)


def luminance_inputs(content: Any, styles: Sequence[Any]):
    r"""The inputs of a luminance-only transfer: :math:`L_C` and each :math:`L_{S'}` (paper §5).

    Returns ``(content_y, [style_y, ...])``: the content's luminance (:func:`luminance`) and,
    for every style image, its luminance matched to the content's by :func:`match_luminance`
    -- with several styles, each one is matched to the content. All ``(N, 1, H, W)`` (the
    styles keep their own sizes). ``styles`` is a sequence of images; a single array is taken
    as one style. Tutorial: ``tutorials/09_color_control``.
    """
    if hasattr(styles, "ndim"):
        styles = [styles]
    content_y = luminance(content)
    return content_y, [match_luminance(luminance(style), content_y) for style in styles]


def combine_luminance(y: Any, content: Any):
    r"""The output of a luminance-only transfer: the result's :math:`Y` with the content's
    :math:`I, Q`, back in RGB, clipped to [0, 1] (paper §5).

    .. math::

        x_{out} = \operatorname{clip}_{[0, 1]}\Big(T^{-1}
        \begin{pmatrix} Y_{result} \\ I_C \\ Q_C \end{pmatrix}\Big),

    with :math:`T` the YIQ matrix (:func:`rgb_to_yiq`). ``y``: the optimised luminance,
    ``(N, 1, H, W)`` or ``(1, H, W)``; a 3-channel RGB result is accepted too and its luminance
    taken (for the gray image :math:`(Y, Y, Y)` that is :math:`Y` itself, the weights summing to
    1). ``content``: the RGB content image of the same height and width. The clip changes
    :math:`I, Q` only where :math:`(Y, I_C, Q_C)` falls outside the RGB cube (a very bright
    result luminance under a saturated content colour, say). Returns RGB in ``y``'s dtype, on
    ``y``'s device. Tutorial: ``tutorials/09_color_control``.
    """
    xp = get_array_module(y)
    axis = y.ndim - 3
    if y.ndim in (3, 4) and y.shape[axis] == 3:
        y = luminance(y)
    _channel_axis(y, 1, "combine_luminance: y")
    content = xp.asarray(content, dtype=y.dtype)
    _channel_axis(content, 3, "combine_luminance: content")
    if content.ndim != y.ndim or content.shape[-2:] != y.shape[-2:]:
        raise ValueError(f"combine_luminance: y has shape {y.shape} but content has shape "
                         f"{content.shape}; they need the same height and width")
    iq = rgb_to_yiq(content)[(slice(None),) * axis + (slice(1, 3),)]  # the content's I, Q
    yiq = xp.concatenate([y, xp.broadcast_to(iq, y.shape[:axis] + iq.shape[axis:])], axis=axis)
    return xp.clip(yiq_to_rgb(yiq), 0.0, 1.0)


# ------------------------------------------------------------- colour histogram matching


def color_statistics(image: Any, eps: float = DEFAULT_EPS):
    r"""Mean and covariance of an image's pixel colours (paper §5, colour histogram matching).

    With :math:`x_k \in \mathbb{R}^3` the colour of pixel :math:`k` and :math:`M` pixels
    (all pixels of all ``N`` images):

    .. math::

        \mu = \frac{1}{M} \sum_k x_k, \qquad
        \Sigma = \frac{1}{M} \sum_k (x_k - \mu)(x_k - \mu)^\top + \varepsilon I_3 .

    The :math:`\varepsilon` (default :math:`10^{-5}`) keeps :math:`\Sigma` positive definite --
    a gray image has a rank-1 colour covariance -- so that its inverse square root and Cholesky
    factor exist. Accumulated in float64 on the image's device (two passes: mean, then centred
    products). ``image``: ``(N, 3, H, W)`` or ``(3, H, W)``; returns NumPy float64
    ``(mean (3,), covariance (3, 3))``. Tutorial: ``tutorials/09_color_control``.
    """
    xp = get_array_module(image)
    axis = _channel_axis(image, 3, "color_statistics")
    if eps < 0:
        raise ValueError(f"color_statistics: eps must be >= 0, got {eps}")
    pixels = xp.moveaxis(image, axis, 0).reshape(3, -1).astype(xp.float64)  # X: (3, M)
    M = pixels.shape[1]
    if M == 0:
        raise ValueError(f"color_statistics: the image has no pixels (shape {image.shape})")
    mean = pixels.mean(axis=1)
    centred = pixels - mean[:, None]
    cov = (centred @ centred.T) / M
    return to_numpy(mean), to_numpy(cov) + eps * np.eye(3)


def _check_spd(S: Any, what: str) -> np.ndarray:
    """``S`` as a float64 symmetric matrix (roundoff asymmetry averaged away), or ValueError."""
    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"{what}: expected a square matrix, got shape {S.shape}")
    if not np.allclose(S, S.T, rtol=0, atol=1e-10 * max(np.abs(S).max(initial=0.0), 1e-300)):
        raise ValueError(f"{what}: the matrix is not symmetric")
    return (S + S.T) / 2


def spd_power(S: Any, p: float) -> np.ndarray:
    r"""A real power of a symmetric positive-definite matrix, by its eigendecomposition.

    .. math::

        S = V \operatorname{diag}(\lambda) V^\top \;\Rightarrow\;
        S^p = V \operatorname{diag}(\lambda^p) V^\top,

    with :math:`V` orthogonal (the eigenvectors, ``numpy.linalg.eigh``) and every
    :math:`\lambda_i > 0`. For :math:`p = \tfrac12` this is the unique symmetric
    positive-definite square root, :math:`(S^{1/2})^2 = S`; :math:`p = -\tfrac12` gives its
    inverse, :math:`S^{-1/2} S S^{-1/2} = I`. ``S``: ``(n, n)`` symmetric positive definite
    (a ``ValueError`` otherwise); returns NumPy float64 ``(n, n)``, symmetric.
    Tutorial: ``tutorials/09_color_control``.
    """
    S = _check_spd(S, "spd_power")
    lam, V = np.linalg.eigh(S)
    if lam.min() <= 0:
        raise ValueError(f"spd_power: the matrix is not positive definite "
                         f"(smallest eigenvalue {lam.min():.3g})")
    return (V * lam**p) @ V.T  # V diag(lambda^p) V^T: column i of V scaled by lambda_i^p


def pca_transform(cov_style: Any, cov_content: Any) -> np.ndarray:
    r"""The colour transform ``pca`` (the default; paper §5, after Hertzmann et al.'s Image
    Analogies): whiten along the style's principal axes, colour along the content's.

    .. math::

        A_{pca} = \Sigma_C^{1/2}\, \Sigma_S^{-1/2},

    with symmetric square roots by eigendecomposition (:func:`spd_power`). It satisfies
    :math:`A \Sigma_S A^\top = \Sigma_C^{1/2} \Sigma_S^{-1/2} \Sigma_S \Sigma_S^{-1/2}
    \Sigma_C^{1/2} = \Sigma_C`. :math:`\Sigma_S^{-1/2}` turns the style's colour cloud into a
    round one (identity covariance) by scaling along its own principal axes; :math:`\Sigma_C^{1/2}`
    stretches the round cloud along the content's. :math:`A` is not symmetric in general (only
    when the two covariances share their principal axes), but :math:`A\, \Sigma_S^{1/2} =
    \Sigma_C^{1/2}` is symmetric positive definite, which singles ``pca`` out among all
    solutions. Both roots follow rotations of colour space, so the result does not depend on
    how the channels are ordered. ``(3, 3)`` covariances in, NumPy float64 ``(3, 3)`` out.
    Tutorial: ``tutorials/09_color_control``.
    """
    return spd_power(cov_content, 0.5) @ spd_power(cov_style, -0.5)


def cholesky_transform(cov_style: Any, cov_content: Any) -> np.ndarray:
    r"""The colour transform ``cholesky`` (paper §5): :math:`A_{chol} = L_C L_S^{-1}`.

    .. math::

        \Sigma = L L^\top \;(L \text{ lower triangular, positive diagonal}), \qquad
        A_{chol} = L_C L_S^{-1},

    so :math:`A \Sigma_S A^\top = L_C L_S^{-1} L_S L_S^\top L_S^{-\top} L_C^\top = L_C L_C^\top
    = \Sigma_C`. :math:`L_S^{-1}` whitens the style's colours channel after channel (R, then G
    with R's part removed, then B -- Gram--Schmidt), :math:`L_C` colours them the same way. A
    product of lower-triangular matrices is lower triangular: the new R depends only on the old
    R, the new G on R and G. So the result depends on the order of the channels, unlike ``pca``
    and ``sym``. ``(3, 3)`` covariances in, NumPy float64 ``(3, 3)`` out, exactly zero above the
    diagonal. Tutorial: ``tutorials/09_color_control``.
    """
    S = _check_spd(cov_style, "cholesky_transform: cov_style")
    C = _check_spd(cov_content, "cholesky_transform: cov_content")
    try:
        L_s, L_c = np.linalg.cholesky(S), np.linalg.cholesky(C)
    except np.linalg.LinAlgError:
        raise ValueError("cholesky_transform: a covariance is not positive definite") from None
    return np.tril(L_c @ np.linalg.inv(L_s))  # tril: zero above the diagonal, as in exact math


def sym_transform(cov_style: Any, cov_content: Any) -> np.ndarray:
    r"""The colour transform ``sym``: the linear Monge--Kantorovich map (Pitié & Kokaram 2007).

    .. math::

        A_{sym} = \Sigma_S^{-1/2} \big(\Sigma_S^{1/2} \Sigma_C \Sigma_S^{1/2}\big)^{1/2}
        \Sigma_S^{-1/2} .

    Check: with :math:`B = (\Sigma_S^{1/2} \Sigma_C \Sigma_S^{1/2})^{1/2}`,
    :math:`A \Sigma_S A^\top = \Sigma_S^{-1/2} B\, B\, \Sigma_S^{-1/2} = \Sigma_S^{-1/2}
    \Sigma_S^{1/2} \Sigma_C \Sigma_S^{1/2} \Sigma_S^{-1/2} = \Sigma_C`. :math:`A_{sym}` is
    symmetric positive definite, and it is the only solution that is: of all maps
    :math:`x \mapsto Ax + b` taking the style's mean and covariance to the content's it moves
    the colours least, :math:`\mathbb{E}\lVert x' - x\rVert^2` smallest (the optimal transport
    map between Gaussians). Channel order does not matter. ``(3, 3)`` covariances in, NumPy
    float64 ``(3, 3)`` out, symmetric. Tutorial: ``tutorials/09_color_control``.
    """
    S_half = spd_power(cov_style, 0.5)
    S_inv_half = spd_power(cov_style, -0.5)
    C = _check_spd(cov_content, "sym_transform: cov_content")
    A = S_inv_half @ spd_power(S_half @ C @ S_half, 0.5) @ S_inv_half
    return (A + A.T) / 2  # symmetric in exact arithmetic: average away the roundoff


_TRANSFORMS = {"pca": pca_transform, "cholesky": cholesky_transform, "sym": sym_transform}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise MinistError(f"--color-transform: unknown method {method!r}; "
                          f"choose one of {', '.join(METHODS)}")


def color_transform_matrix(cov_style: Any, cov_content: Any, method: str = "pca") -> np.ndarray:
    r"""A matrix :math:`A` with :math:`A \Sigma_S A^\top = \Sigma_C`, by ``method`` (paper §5).

    ``method`` is one of :data:`METHODS`: ``"pca"`` (:func:`pca_transform`, the default and
    the authors' choice), ``"cholesky"`` (:func:`cholesky_transform`) or ``"sym"``
    (:func:`sym_transform`). Every solution has the form :math:`A = \Sigma_C^{1/2} R\,
    \Sigma_S^{-1/2}` with :math:`R` orthogonal; the methods differ in the :math:`R` they pick,
    i.e. in which style colour goes to which content colour. An unknown method raises
    :class:`~minist.errors.MinistError` naming ``--color-transform``.
    Tutorial: ``tutorials/09_color_control``.
    """
    _check_method(method)
    return _TRANSFORMS[method](cov_style, cov_content)


def match_colors(style: Any, content: Any, method: str = "pca", eps: float = DEFAULT_EPS):
    r"""Colour histogram matching: the style image with the content's colour mean and
    covariance (paper §5).

    .. math::

        x'_k = A x_k + b \;\text{ for every style pixel } k, \qquad
        A \Sigma_S A^\top = \Sigma_C, \qquad b = \mu_C - A \mu_S,

    with :math:`(\mu, \Sigma)` from :func:`color_statistics` (``eps`` on the diagonal) and
    :math:`A` from :func:`color_transform_matrix` (``method``). Then the new pixels have mean
    :math:`A \mu_S + b = \mu_C` and covariance :math:`A \Sigma_S A^\top = \Sigma_C` (up to the
    :math:`\varepsilon`: exactly :math:`\Sigma_C - \varepsilon A A^\top` without it). The
    result is **not clipped** to [0, 1]: some pixels land slightly outside, and clipping them
    would change the mean and covariance just matched; the network takes any values. Clip only
    to display it. ``style``, ``content``: ``(N, 3, H, W)`` or ``(3, H, W)`` RGB, any sizes;
    returns ``style``'s shape, dtype and device (the map is applied there; the 3x3 algebra is
    float64 NumPy). Tutorial: ``tutorials/09_color_control``.
    """
    _check_method(method)
    mu_s, cov_s = color_statistics(style, eps)
    mu_c, cov_c = color_statistics(content, eps)
    A = color_transform_matrix(cov_s, cov_c, method)
    b = mu_c - A @ mu_s
    return apply_color_matrix(style, A, b)


def histogram_inputs(content: Any, styles: Sequence[Any], method: str = "pca",
                     eps: float = DEFAULT_EPS) -> list:
    r"""The styles of a colour-matched transfer: each style matched to the content (paper §5).

    ``[match_colors(style, content, method, eps) for style in styles]``; a single array is
    taken as one style. Tutorial: ``tutorials/09_color_control``.
    """
    _check_method(method)
    if hasattr(styles, "ndim"):
        styles = [styles]
    return [match_colors(style, content, method, eps) for style in styles]


# ------------------------------------------------------------- what a run does with them


class LuminanceView(NamedTuple):
    r"""A luminance-only run (``--original-colors luminance``): the variable the optimiser
    updates is the luminance :math:`Y` ``(1, 1, H, W)``; the network sees :math:`(Y, Y, Y)`
    (:func:`gray_to_rgb`), whose gradient comes back to :math:`Y` as the sum over the channels
    (:func:`gray_to_rgb_backward`); what the user sees and gets is :math:`Y` with the content's
    :math:`I, Q` (:func:`combine_luminance`). ``content``: the RGB content image at the run's
    size."""

    content: Any

    def network_input(self, y):
        return gray_to_rgb(y)

    def gradient(self, dx):
        return gray_to_rgb_backward(dx)

    def output(self, y):
        return combine_luminance(y, self.content)


MODES = ("luminance", "histogram")  # --original-colors


def color_inputs(content: Any, styles: Sequence[Any], mode: str | None, method: str = "pca"):
    """What the network is shown for each ``--original-colors`` mode: ``(content, styles,
    view)`` -- unchanged for None; each style's colours matched to the content's for
    ``"histogram"`` (:func:`histogram_inputs`); the gray images of the luminances for
    ``"luminance"`` (:func:`luminance_inputs`), with the :class:`LuminanceView` the run needs
    (else None)."""
    if mode is None:
        return content, list(styles), None
    if mode == "histogram":
        return content, histogram_inputs(content, styles, method), None
    if mode == "luminance":
        content_y, styles_y = luminance_inputs(content, styles)
        return gray_to_rgb(content_y), [gray_to_rgb(y) for y in styles_y], LuminanceView(content)
    raise MinistError(f"--original-colors: unknown mode {mode!r}; choose one of "
                      f"{', '.join(MODES)}")
