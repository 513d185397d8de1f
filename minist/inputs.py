"""What a style transfer run receives, prepared apart from the run: the network (weights found,
fetched or refused), the images (loaded once, resized to any size on request, checked), and the
first image of the optimisation.

:class:`minist.stylize.StyleTransfer` calls these; so can a user who wants to build a run from
parts -- a network shared by several runs, images already in memory, an array as the first
image, targets rebuilt at another size (coarse-to-fine).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from minist.backend import to_device, to_numpy
from minist.errors import MinistError
from minist.execution import ExecutionConfig
from minist.images import load_image, resize_longest, resize_to
from minist.vgg import VGG
from minist.weights.store import load_weights

DEFAULT_WEIGHTS = Path("weights") / "vgg19.h5"
INITS = ("content", "noise", "style")


def resolve_weights_file(path: str | os.PathLike, progress: bool | None = None) -> Path:
    """The weights file to use; the default ``weights/vgg19.h5`` is fetched when missing.

    Any other missing file, or a failed fetch, is one line saying how to get weights.
    """
    path = Path(path)
    if path.exists():
        return path
    how = (
        "get weights with: minist weights fetch vgg19, or convert a checkpoint you have "
        f"with: minist weights convert FILE -o {path}"
    )
    if path != DEFAULT_WEIGHTS:
        raise MinistError(f"--weights {path}: no such file; {how}")
    from minist.weights.fetch import fetch_weights

    try:
        return fetch_weights("vgg19", out=path, dest_dir=path.parent, progress=progress)
    except MinistError as exc:
        raise MinistError(
            f"--weights {path}: missing, and fetching it failed ({exc}); {how}"
        ) from None


def load_network(weights: str | os.PathLike = DEFAULT_WEIGHTS, *, pooling: str = "max",
                 config: ExecutionConfig | None = None, progress: bool | None = None) -> VGG:
    """The VGG of a weights file (fetched when it is the missing default), on ``config``'s
    device."""
    return VGG(load_weights(resolve_weights_file(weights, progress)), pooling=pooling,
               config=config)


def is_source(value) -> bool:
    """Whether ``value`` names an image file (a path) rather than holding an image (an array)."""
    return isinstance(value, (str, os.PathLike))


def as_image(source, what: str) -> np.ndarray:
    """A (1, 3, H, W) float32 RGB image in [0, 1] at its own size, from a path or an array
    ((1, 3, H, W), (3, H, W) or (H, W, 3) as matplotlib shows it; clipped to [0, 1])."""
    if is_source(source):
        return load_image(source)
    image = np.asarray(to_numpy(source), dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] == 3:  # (H, W, 3)
        image = image.transpose(2, 0, 1)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise MinistError(f"{what}: expected an RGB image array, got shape {image.shape}")
    return np.clip(image, 0.0, 1.0)


class SourceImages:
    """The content image and the style image(s) of a run, loaded once at their own size and
    resized (Lanczos, :func:`minist.images.resize_longest`) to whatever size a run asks for.

    ``content``/``style``: paths or arrays; ``style`` may be a list of them.
    """

    def __init__(self, content, style):
        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        if not styles:
            raise MinistError("STYLE: no style image given")
        self.content_source = content
        self.style_sources = styles
        self.content = as_image(content, "content")
        self.styles = [as_image(s, "style") for s in styles]

    def name(self, what: str, index: int = 0) -> str:
        """How messages name an image: its path, or ``content``/``style``."""
        source = self.content_source if what == "content" else self.style_sources[index]
        return str(source) if is_source(source) else what

    def content_at(self, size: int) -> np.ndarray:
        """The content image with its longest side ``size``."""
        return resize_longest(self.content, size)

    def styles_at(self, size: int, style_scale: float) -> list[np.ndarray]:
        """Each style image with its longest side ``style_scale * size`` (each on its own)."""
        side = max(1, round(size * style_scale))
        return [resize_longest(style, side) for style in self.styles]


def check_sizes(net: VGG, layers: Sequence[str], images: Sequence[tuple[str, str, np.ndarray]]):
    """Refuse, in one line, an image too small for the deepest of ``layers``.

    ``images``: ``(name, what, image)`` triples, ``what`` being ``content`` or ``style``.
    """
    minimum = net.minimum_input_size(layers)
    for name, what, image in images:
        if min(image.shape[2:]) < minimum:
            deepest = max(layers, key=net.layer_names.index)
            raise MinistError(
                f"{name}: {what} image is {image.shape[3]}x{image.shape[2]} px after resizing, "
                f"too small for layers up to {deepest}: needs at least {minimum} px on each "
                "side (raise --size or --style-scale)"
            )


def initial_image(init, content_image: np.ndarray, style_image: np.ndarray, seed: int = 0,
                  noise_ratio: float = 0.0, device: str = "cpu"):
    r"""The image the optimisation starts from,
    :math:`x_0 = (1 - r)\,\text{init} + r\,\text{noise}`, float32 on ``device``.

    ``init``: ``"content"``, ``"noise"`` (uniform in [0, 1) from ``seed``), ``"style"``, an image
    path, or an array (e.g. an earlier result); images are resized to the content image's size.
    ``noise_ratio`` :math:`r` blends in noise drawn from ``seed`` (not for ``"noise"``).
    """
    shape = content_image.shape
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
    if is_source(init) and str(init) == "content":
        start = content_image
    elif is_source(init) and str(init) == "noise":
        start = noise
    elif is_source(init) and str(init) == "style":
        start = resize_to(style_image, shape[2:])
    elif is_source(init):
        start = resize_to(load_image(init), shape[2:])
    else:
        start = resize_to(as_image(init, "init"), shape[2:])
    if noise_ratio > 0 and not (is_source(init) and str(init) == "noise"):
        start = ((1.0 - noise_ratio) * start + noise_ratio * noise).astype(np.float32)
    return to_device(np.ascontiguousarray(start), device, np.float32)
