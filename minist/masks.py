r"""Spatial control: masks that say where each style goes, and the guided style terms they give.

Gatys, Ecker, Bethge, Hertzmann & Shechtman (2017), "Controlling Perceptual Factors in Neural
Style Transfer", §4. One grayscale **mask** per style image, drawn on the content image (white:
this style here, black: not here; grey: partly), and optionally one drawn on each style image
(the part of the painting whose statistics to copy; default: all of it). Everything the network
needs from a mask is a **guide** :math:`T^l \in \mathbb{R}^{H_l \times W_l}` at each style
layer :math:`l`, and the style loss of region :math:`r` at layer :math:`l` compares *guided*
Gram matrices (:func:`minist.losses.guided_gram_matrix`):

.. math::

    G^l_{T_r} = \frac{1}{M_l} (F^l \circ T^l_r)(F^l \circ T^l_r)^\top, \qquad
    E_l = \sum_r \frac{1}{4 N_l^2} \sum_{i,j} \big(G^l_{T_r} - A^l_{r}\big)^2_{ij},

with :math:`A^l_r` the guided Gram of style image :math:`r` under its own (style-side) guide.

**Reading a mask** (:func:`load_mask`). Any image file minist reads (:mod:`minist.images`);
a colour image becomes its luminance :math:`Y = 0.299 R + 0.587 G + 0.114 B` (ITU-R BT.601,
Pillow's own grey conversion), a grey one keeps its values; :math:`(H, W)`, float32 in
:math:`[0, 1]`. Transparency is composited over white, as for every image minist loads, so
draw masks opaque. A file that is not an image, or a mask with no pixel above black (it would
select nothing), is a one-line :class:`~minist.errors.MinistError` naming the file.
:func:`check_masks` checks that there is one mask per style image.

**Resizing** (:func:`resize_mask`). A mask of another size than its image is resampled to the
image's :math:`(H, W)` with Pillow's bilinear filter on float data (a triangle kernel, widened
when shrinking, so it averages rather than skips pixels). Its weights are non-negative and sum
to one, so the result stays in :math:`[0, 1]` and a full mask stays full -- unlike Lanczos,
which rings at a mask's edges. A mask of another aspect ratio is stretched to fit.

**Propagation to the layers** (:func:`propagate_mask`) follows the network's own layer table
(``net.layer_specs``): 3x3 convolutions with stride 1 and zero padding 1 keep the size, ReLUs keep
it, 2x2 poolings with stride 2 halve it, dropping an odd last row or column (floor), as
:func:`minist.layers.pool_forward` does. Two modes:

* ``simple`` -- the mask *resized* to every layer: convolutions and ReLUs leave it as it is,
  each pooling **averages** its 2x2 windows. Averaging 2x2 blocks is exactly what resizing an
  image to half its size by area means, so the guide at a layer is the mask's average over the
  :math:`2^p \times 2^p` pixel block under each unit (:math:`p` poolings passed). A unit near
  a region's border gets a weight between 0 and 1, in both regions' guides.
* ``inside`` -- the mask **eroded** to the units whose receptive field lies inside the region:
  each 3x3 convolution takes the minimum over its 3x3 window, each pooling the minimum over its
  2x2 window, so a unit keeps weight 1 only if every pixel it sees has weight 1 (for a soft
  mask: the smallest weight it sees). *Padding:* the zeros that a convolution pads are not
  image content of any region, so they do not count as outside: the minimum is taken over the
  window's positions that lie in the image. Counting them as outside would erode every region
  from the image border by the receptive field's radius too -- by 66 pixels at relu5_1 of
  VGG-16 -- and erase even a mask that covers the whole image at the deep layers of a small
  image. With the padding ignored a full mask stays full at every layer.

Both modes are monotone (a larger mask gives a larger guide everywhere), keep values in
:math:`[0, 1]`, and agree on every unit over whose whole receptive field the mask is constant;
``inside`` is never above ``simple``.

**Which default: ``simple``** (:data:`DEFAULT_MASK_MODE`). With ``inside``, a region loses
the units within a receptive field's radius of its border, and the receptive fields grow
fast: 60 px at relu4_1 and 132 px at relu5_1 of VGG-16 (68 and 156 px for VGG-19). Split a
square image into left and right halves: at 256 px each region keeps 75 % of its units at
relu4_1 and 50 % (VGG-19: 38 %) at relu5_1; at 128 px, 50 % at relu4_1 and none at relu5_1,
so relu5_1 drops out of the style loss altogether. ``simple`` keeps every region at every
layer and lets the styles share, in proportion to the mask, the units on the border. Looked
at side by side (VGG-16, Tübingen at 128 px, The Starry Night left, The Scream right, 80
L-BFGS iterations from the photo, alpha = 1, beta = 1e3): ``simple`` gives two clearly
painted halves meeting in a soft transition a few pixels wide; ``inside`` gives a visible seam
with a band of flatter, photo-like colour on both sides of it (no deep-layer style reaches
there), and a right half that is less like The Scream -- its guided style loss against The
Scream (normalised, mean over relu1_1 ... relu5_1) is 0.41 against 0.13 with ``simple``, and
against The Starry Night 0.64 and 0.57. ``inside`` is the choice for regions much larger than
the deepest receptive field, when no style may leak across a border.
``tutorials/11_spatial_control`` shows both: the guides at every style layer, and a result of
each.

**Normalisation** (:func:`normalise_guide`): :math:`T \leftarrow T / \sqrt{\mathrm{mean}(T^2)}`.
For a binary region of :math:`m` of the :math:`M_l` positions, :math:`T = \sqrt{M_l/m}` on the
region, and the guided Gram becomes the region's own Gram averaged over *its* positions, the
same scale as a whole image's (:func:`minist.losses.guided_gram_matrix`), whatever the
region's size. A guide that is zero everywhere -- a region that no unit of that layer lies in,
in ``inside`` mode, or one confined to an odd last row or column a pooling drops -- has no
such scale: :func:`normalise_guide` returns it as zeros (never NaN), and
:func:`guided_style_terms` leaves that layer out for that region (its term would have a
constant loss and no gradient); the region keeps its terms at the other layers. A region left
with no layer at all is a :class:`~minist.errors.MinistError` naming its mask.

**Terms** (:func:`guided_style_terms`): one :class:`minist.objective.StyleTerm` per region and
style layer, with ``style = region = i``, the guided Gram of style image :math:`i` as the target,
the content-side guide of region :math:`i` as the term's ``guide``, the layer's weight, and the
normaliser :func:`minist.objective.style_normaliser` of its target. Terms that share a layer add
up in the :class:`~minist.objective.Objective`: that sum is :math:`E_l` above.

Tutorial: ``tutorials/11_spatial_control``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from minist import losses
from minist.backend import to_device
from minist.errors import MinistError
from minist.images import load_image
from minist.objective import StyleTerm, style_normaliser

MASK_MODES = ("simple", "inside")
DEFAULT_MASK_MODE = "simple"  # see the module docstring, "Which default"

# ITU-R BT.601 luma weights, those of Pillow's convert("L").
LUMA = (0.299, 0.587, 0.114)
# A mask whose brightest pixel rounds to black in 8 bits selects nothing.
EMPTY_BELOW = 0.5 / 255


def check_mask_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MASK_MODES`; one-line error naming --mask-mode else."""
    if mode not in MASK_MODES:
        raise MinistError(f"--mask-mode: unknown mode {mode!r}; choose simple or inside")
    return mode


def load_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file as an :math:`(H, W)` float32 array in :math:`[0, 1]` (white: 1).

    Grey images keep their values; colour images become their luminance
    :math:`0.299 R + 0.587 G + 0.114 B`. Raises :class:`MinistError` naming the file for a file
    that is not an image (or cannot be read) and for an empty mask (no pixel above black).
    """
    rgb = load_image(path)[0]  # (3, H, W) in [0, 1]; one-line errors naming the file
    if np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[0], rgb[2]):
        mask = rgb[0].copy()  # grey: exactly its values
    else:
        r, g, b = (c.astype(np.float64) for c in rgb)
        mask = np.clip(LUMA[0] * r + LUMA[1] * g + LUMA[2] * b, 0.0, 1.0).astype(np.float32)
    if float(mask.max()) < EMPTY_BELOW:
        raise MinistError(f"{Path(path)}: mask is empty (all black), it selects no pixel; "
                          "paint white where the style should go")
    return mask


def check_masks(masks: Sequence[Any], n_styles: int, option: str = "--content-masks") -> list:
    """``masks`` as a list, after checking there is one per style image.

    Raises :class:`MinistError` with one line naming ``option`` when the counts differ.
    """
    masks = list(masks)
    if len(masks) != n_styles:
        raise MinistError(
            f"{option}: {len(masks)} mask{'s' if len(masks) != 1 else ''} for {n_styles} "
            f"style image{'s' if n_styles != 1 else ''}; give one mask per style image, in the "
            "same order"
        )
    return masks


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``mask`` resampled to ``shape`` = (H, W), bilinear on float32, in :math:`[0, 1]`.

    Bilinear (Pillow's triangle filter, widened when shrinking) has non-negative weights that
    sum to one: no ringing, a full mask stays full. An array of that shape comes back as float32
    (a copy).
    """
    mask = np.asarray(mask, dtype=np.float32)
    if mask.ndim != 2:
        raise ValueError(f"resize_mask: expected an (H, W) mask, got shape {mask.shape}")
    H, W = (int(n) for n in shape)
    if mask.shape == (H, W):
        return mask.copy()
    resized = Image.fromarray(mask).resize((W, H), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _layer_specs(net) -> list:
    """The layer table of ``net`` (a :class:`minist.vgg.VGG`) or the table itself."""
    return list(getattr(net, "layer_specs", net))


def layer_shapes(net, shape: tuple[int, int], layers: Sequence[str]) -> dict[str, tuple[int, int]]:
    """:math:`(H_l, W_l)` of each of ``layers`` for an image of ``shape`` = (H, W): convolutions
    and ReLUs keep the size, each pooling floors it to half."""
    H, W = (int(n) for n in shape)
    shapes, wanted = {}, set(layers)
    for spec in _layer_specs(net):
        if spec.kind == "pool":
            H, W = H // 2, W // 2
        if spec.name in wanted:
            shapes[spec.name] = (H, W)
        if len(shapes) == len(wanted):
            break
    missing = [name for name in layers if name not in shapes]
    if missing:
        raise MinistError(f"mask propagation: the network has no layer {missing[0]!r}")
    return shapes


def _erode3x3(T: np.ndarray) -> np.ndarray:
    """Minimum over each 3x3 window, over the window's positions inside the array (the padding
    of the convolution does not count)."""
    padded = np.pad(T, 1, mode="constant", constant_values=np.inf)
    H, W = T.shape
    out = padded[1 : H + 1, 1 : W + 1].copy()
    for di in (0, 1, 2):
        for dj in (0, 1, 2):
            np.minimum(out, padded[di : di + H, dj : dj + W], out=out)
    return out


def _pool2x2(T: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` (mean or min) over each 2x2 window, stride 2, odd last row/column dropped."""
    h, w = T.shape[0] // 2, T.shape[1] // 2
    return reduce(T[: 2 * h, : 2 * w].reshape(h, 2, w, 2), axis=(1, 3))


def propagate_mask(mask: np.ndarray, net, layers: Sequence[str],
                   mode: str = DEFAULT_MASK_MODE) -> dict[str, np.ndarray]:
    r"""The guide :math:`T^l` of ``mask`` at each of ``layers``: ``{name: (H_l, W_l) array}``.

    ``mask``: :math:`(H, W)` in :math:`[0, 1]` at the size of the image the network will see
    (:func:`resize_mask`). ``net``: a :class:`minist.vgg.VGG` (its ``layer_specs``) or a list of
    :class:`minist.architectures.LayerSpec`. ``mode``: ``"simple"`` (each pooling averages its
    2x2 windows: the mask resized) or ``"inside"`` (each convolution takes the minimum over its
    3x3 window, padding ignored, each pooling over its 2x2 window: the units whose receptive
    field lies inside the region); see the module docstring. The guides have the mask's dtype
    (float32 for a boolean or integer mask) and are not normalised (:func:`normalise_guide`).
    """
    check_mask_mode(mode)
    T = np.asarray(mask)
    if not np.issubdtype(T.dtype, np.floating):  # a 0/1 or boolean mask
        T = T.astype(np.float32)
    if T.ndim != 2:
        raise ValueError(f"propagate_mask: expected an (H, W) mask, got shape {T.shape}")
    wanted = list(dict.fromkeys(layers))
    guides: dict[str, np.ndarray] = {}
    for spec in _layer_specs(net):
        if len(guides) == len(wanted):
            break
        if spec.kind == "conv" and mode == "inside":
            T = _erode3x3(T)  # a unit is inside if all 3x3 units under it are
        elif spec.kind == "pool":
            T = _pool2x2(T, np.mean if mode == "simple" else np.min)
        if spec.name in wanted:
            guides[spec.name] = T.copy()  # each its own array (conv layers leave T as it is)
    missing = [name for name in wanted if name not in guides]
    if missing:
        raise MinistError(f"mask propagation: the network has no layer {missing[0]!r}")
    return {name: guides[name] for name in wanted}


def normalise_guide(T):
    r""":math:`T / \sqrt{\mathrm{mean}(T^2)}` (module docstring); an all-zero guide comes back as
    zeros (a copy), not NaN -- a region absent from a layer has no term there."""
    T = np.asarray(T)
    rms = float(np.sqrt(np.mean(np.square(T, dtype=np.float64))))
    if rms == 0.0:
        return np.zeros_like(T)
    return (T / rms).astype(T.dtype, copy=False)


def _layer_weights(layers: Sequence[str], layer_weights) -> dict[str, float]:
    if layer_weights is None:
        return {name: 1.0 / len(layers) for name in layers}
    if isinstance(layer_weights, Mapping):
        return {name: float(layer_weights[name]) for name in layers}
    return dict(zip(layers, map(float, layer_weights), strict=True))


def guided_style_terms(net, style_images: Sequence[Any], content_masks: Sequence[np.ndarray],
                       style_masks: Sequence[np.ndarray | None] | None, layers: Sequence[str],
                       layer_weights: Sequence[float] | Mapping[str, float] | None = None,
                       normalize: bool = True, mode: str = DEFAULT_MASK_MODE,
                       content_shape: tuple[int, int] | None = None) -> list[StyleTerm]:
    r"""The style terms of spatial control: one per region :math:`i` and style layer :math:`l`.

    ``style_images``: one :math:`(1, 3, H_i, W_i)` image per region, at run size;
    ``content_masks``: one :math:`(H, W)` mask per region (:func:`load_mask`), drawn on the
    content image, resized here to ``content_shape`` (the :math:`(H, W)` of the image being
    optimised; default: the first mask's own shape); ``style_masks``: per region, the part of
    style image :math:`i` to take statistics from (resized to that image), or None for all of
    it (``style_masks=None``: None for every region); ``layers``, ``layer_weights`` (one per
    layer, or a mapping; default equal, :math:`1/L`): Eq. 5's :math:`w_l`; ``normalize``: the
    normaliser of each term (:func:`minist.objective.style_normaliser`); ``mode``:
    ``"simple"`` or ``"inside"`` (:func:`propagate_mask`).

    Each term: ``StyleTerm(layer, A, w_l, style_normaliser(A), style=i, region=i, guide=T)``, with
    :math:`A = G_{T'}` the guided Gram of style image :math:`i`'s features under its normalised
    style guide :math:`T'`, and :math:`T` region :math:`i`'s normalised content guide at that
    layer, flattened to :math:`(M_l,)`; arrays on the network's device in its dtype. A layer at
    which either guide is empty is left out for that region (module docstring).
    """
    n = len(style_images)
    content_masks = check_masks(content_masks, n, "--content-masks")
    style_masks = [None] * n if style_masks is None else check_masks(style_masks, n,
                                                                     "--style-masks")
    mode = check_mask_mode(mode)
    layers = list(dict.fromkeys(layers))
    if not layers:
        raise MinistError("style layers: no layers given")
    weights = _layer_weights(layers, layer_weights)
    if content_shape is None:
        content_shape = np.shape(content_masks[0])
    device = getattr(net, "device", "cpu")
    dtype = getattr(net, "dtype", np.float32)

    terms: list[StyleTerm] = []
    for i, (image, c_mask, s_mask) in enumerate(zip(style_images, content_masks, style_masks,
                                                    strict=True)):
        c_guides = propagate_mask(resize_mask(c_mask, content_shape), net, layers, mode)
        style_shape = tuple(image.shape[2:])
        s_mask = (np.ones(style_shape, np.float32) if s_mask is None
                  else resize_mask(s_mask, style_shape))
        s_guides = propagate_mask(s_mask, net, layers, mode)
        feats = net.forward(image, layers)[0]  # drop the cache
        region_terms = []
        for name in layers:
            T_content, T_style = normalise_guide(c_guides[name]), normalise_guide(s_guides[name])
            if not T_content.any() or not T_style.any():  # the region is absent at this layer
                continue
            T_style = to_device(T_style.reshape(-1), device, dtype)
            A = losses.guided_gram_matrix(losses.feature_matrix(feats[name]), T_style)
            T_content = to_device(T_content.reshape(-1), device, dtype)
            region_terms.append(StyleTerm(name, A, weights[name],
                                          style_normaliser(A, normalize),
                                          style=i, region=i, guide=T_content))
        if not region_terms:
            raise MinistError(
                f"mask {i + 1}: its region (or its style mask's) lies inside no unit of any "
                f"style layer ({', '.join(layers)}) in mode {mode!r}; draw a larger region or "
                "use --mask-mode simple"
            )
        terms += region_terms
    return terms
