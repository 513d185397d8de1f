"""The input preprocessing a set of VGG weights expects, as a differentiable layer.

minist optimises an RGB image ``I`` with values in [0, 1]. Each weight file records how its
network was trained to see images, and this layer maps ``I`` to the network input ``x``:

.. math::

    x_{n,c,h,w} = \\frac{s \\, I_{n,\\pi(c),h,w} - \\mu_c}{\\sigma_c}

with ``s`` the pixel scale (1 for torchvision, 255 for Caffe/Keras), ``pi`` the channel order
(identity for RGB, reversed for BGR), ``mu`` the mean and ``sigma`` the std per network channel.
Shapes: I, x are (N, 3, H, W).

Backward: the map is affine and per channel, so
:math:`\\partial L/\\partial I_{n,\\pi(c),h,w} = (s/\\sigma_c)\\,
\\partial L/\\partial x_{n,c,h,w}`.
"""

from __future__ import annotations

from typing import NamedTuple

from minist.backend import get_array_module

CHANNEL_ORDERS = ("RGB", "BGR")


class Preprocessing(NamedTuple):
    """How the weights expect their input: channel order, pixel scale, mean, std (network order)."""

    channel_order: str  # "RGB" or "BGR": the order of the network's input channels
    pixel_scale: float  # 1.0 (pixels in [0, 1]) or 255.0 (pixels in [0, 255])
    mean: tuple[float, float, float]  # subtracted after scaling, in the network's channel order
    std: tuple[float, float, float]  # divided after subtracting, in the network's channel order

    def describe(self) -> str:
        mean = ", ".join(f"{m:g}" for m in self.mean)
        std = ", ".join(f"{s:g}" for s in self.std)
        rng = "0-1" if self.pixel_scale == 1.0 else f"0-{self.pixel_scale:g}"
        return f"{self.channel_order}, pixels {rng}, mean ({mean}), std ({std})"


TORCHVISION = Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CAFFE = Preprocessing("BGR", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))


class PreprocessCache(NamedTuple):
    scale_over_std: object  # (1, 3, 1, 1) array, network channel order
    channel_order: str


def _per_channel(xp, values, dtype):
    return xp.asarray(values, dtype=dtype).reshape(1, 3, 1, 1)


def preprocess_forward(image, prep: Preprocessing):
    """Map an RGB image in [0, 1], (N, 3, H, W), to the network's input (equation above)."""
    xp = get_array_module(image)
    x = image[:, ::-1] if prep.channel_order == "BGR" else image
    scale_over_std = _per_channel(xp, [prep.pixel_scale / s for s in prep.std], image.dtype)
    mean_over_std = _per_channel(
        xp, [m / s for m, s in zip(prep.mean, prep.std, strict=True)], image.dtype
    )
    x = x * scale_over_std - mean_over_std
    return x, PreprocessCache(scale_over_std, prep.channel_order)


def preprocess_backward(dx, cache: PreprocessCache):
    """Gradient with respect to the RGB image: scale by s / sigma, undo the channel order."""
    dimage = dx * cache.scale_over_std
    if cache.channel_order == "BGR":
        dimage = dimage[:, ::-1]
    return dimage


def postprocess(x, prep: Preprocessing):
    """Inverse of :func:`preprocess_forward` (network input -> RGB image in [0, 1])."""
    xp = get_array_module(x)
    std = _per_channel(xp, prep.std, x.dtype)
    mean = _per_channel(xp, prep.mean, x.dtype)
    image = (x * std + mean) / prep.pixel_scale
    return image[:, ::-1] if prep.channel_order == "BGR" else image
