r"""Style transfer end to end: targets, the total loss, its gradient, and the optimisation loop.

Gatys et al. (2015) synthesise an image :math:`\vec{x}` that matches the *content* of a photo
:math:`\vec{p}` at some layers and the *style* (Gram matrices) of a painting :math:`\vec{a}` at
others, by gradient descent on the pixels of :math:`\vec{x}`:

.. math::

    \mathcal{L}_{total}(\vec p, \vec a, \vec x) = \alpha \mathcal{L}_{content}(\vec p, \vec x)
        + \beta \mathcal{L}_{style}(\vec a, \vec x)
        \;[+\; \lambda_{TV} \mathcal{L}_{TV}(\vec x)]                      \qquad \text{(Eq. 7)}

One evaluation (:meth:`StyleTransfer.evaluate`) runs the network forward to the deepest chosen
layer, computes each layer's loss and its gradient with respect to the layer's features
(:mod:`minist.losses`, Eq. 1-6), sends all of them back through the network in one backward pass
(:func:`minist.vgg.vgg_backward`, which accumulates them where the chain passes), and adds the
total-variation gradient. The optimiser (:mod:`minist.optim`) then updates the image, which
stays an RGB image in [0, 1]; the weights' preprocessing happens inside the differentiated
forward.

**Feature scales.** Networks trained on 0-255 BGR input (Caffe/Keras) have activations roughly
two orders of magnitude larger than torchvision's, so the raw losses differ by ~10^4 (content)
and ~10^8 (style) and no single (alpha, beta) would suit both. With ``normalize=True`` (the
default) minist divides each layer's term by the energy of its own target, once, before the
run:

.. math::

    \hat{\mathcal{L}}^l_{content} = \frac{\tfrac12 \sum (F^l - P^l)^2}{\sum (P^l)^2}, \qquad
    \hat{E}_l = \frac{E_l}{\sum (A^l)^2 / (4 N_l^2)} = \frac{\sum (G^l - A^l)^2}{\sum (A^l)^2},

which makes every term dimensionless (a relative squared error) and the same alpha, beta work
for any weights. ``normalize=False`` gives the paper's raw values.
Tutorial: ``tutorials/06_total_loss``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from minist import losses, memory
from minist.backend import get_array_module, resolve_device, to_device, to_numpy
from minist.errors import MinistError
from minist.images import load_image, resize_longest, resize_to
from minist.optim import DEFAULT_LR, OPTIMIZERS, make_optimizer
from minist.vgg import POOLINGS, VGG
from minist.weights.store import load_weights

DEFAULT_WEIGHTS = Path("weights") / "vgg19.h5"
DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
INITS = ("content", "noise", "style")


@dataclass
class StylizeOptions:
    """Every setting of a style transfer run (the CLI's long options carry the same names)."""

    weights: str | os.PathLike = DEFAULT_WEIGHTS
    size: int = 512  # longest side of the output, px
    style_scale: float = 1.0  # style image's longest side = style_scale * size
    iters: int = 300
    optimizer: str = "lbfgs"
    lr: float | None = None  # None: the optimizer's default (minist.optim.DEFAULT_LR)
    content_weight: float = 1.0  # alpha
    style_weight: float = 1e3  # beta
    tv_weight: float = 0.0  # lambda_TV
    content_layers: Sequence[str] = DEFAULT_CONTENT_LAYERS
    style_layers: Sequence[str] = DEFAULT_STYLE_LAYERS
    style_layer_weights: Sequence[float] | None = None  # default: equal, summing to 1
    pooling: str = "max"
    init: str = "content"  # content | noise | style | path of an image
    noise_ratio: float = 0.0  # x0 = (1 - r) init + r noise
    seed: int = 0
    device: str = "cpu"
    normalize: bool = True  # divide each layer's loss by its target's energy (see module doc)

    def validated(self) -> StylizeOptions:
        """Check every value; one-line :class:`MinistError` naming the option otherwise."""

        def need(ok: bool, option: str, problem: str):
            if not ok:
                raise MinistError(f"--{option}: {problem}")

        need(
            isinstance(self.size, int) and self.size >= 1,
            "size",
            f"must be a positive integer, got {self.size!r}",
        )
        need(_positive(self.style_scale), "style-scale", f"must be > 0, got {self.style_scale!r}")
        need(
            isinstance(self.iters, int) and self.iters >= 0,
            "iters",
            f"must be an integer >= 0, got {self.iters!r}",
        )
        need(
            self.optimizer in OPTIMIZERS,
            "optimizer",
            f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}",
        )
        need(self.lr is None or _positive(self.lr), "lr", f"must be > 0, got {self.lr!r}")
        for option, value in (
            ("content-weight", self.content_weight),
            ("style-weight", self.style_weight),
            ("tv-weight", self.tv_weight),
        ):
            need(_finite_nonnegative(value), option, f"must be a number >= 0, got {value!r}")
        need(
            self.content_weight > 0 or self.style_weight > 0,
            "style-weight",
            "content and style weights are both 0: nothing to optimise",
        )
        need(
            len(self.style_layers) > 0 or self.style_weight == 0, "style-layers", "no layers given"
        )
        need(
            len(self.content_layers) > 0 or self.content_weight == 0,
            "content-layers",
            "no layers given",
        )
        if self.style_layer_weights is not None:
            need(
                len(self.style_layer_weights) == len(self.style_layers),
                "style-layer-weights",
                f"{len(self.style_layer_weights)} weights for {len(self.style_layers)} layers",
            )
            need(
                all(_finite_nonnegative(w) for w in self.style_layer_weights),
                "style-layer-weights",
                "weights must be numbers >= 0",
            )
        need(
            self.pooling in POOLINGS,
            "pooling",
            f"unknown pooling {self.pooling!r}; choose max or avg",
        )
        need(
            self.init in INITS or Path(self.init).is_file(),
            "init",
            f"{self.init!r} is neither one of {', '.join(INITS)} nor an image file",
        )
        need(
            _finite_nonnegative(self.noise_ratio) and self.noise_ratio <= 1,
            "noise-ratio",
            f"must be between 0 and 1, got {self.noise_ratio!r}",
        )
        need(
            isinstance(self.seed, int) and self.seed >= 0,
            "seed",
            f"must be an integer >= 0, got {self.seed!r}",
        )
        resolve_device(self.device)
        return self

    def as_metadata(self) -> dict[str, Any]:
        """JSON-ready settings, for the output PNG's metadata and the log."""
        out = asdict(self)
        out["weights"] = str(self.weights)
        out["content_layers"] = list(self.content_layers)
        out["style_layers"] = list(self.style_layers)
        if self.style_layer_weights is not None:
            out["style_layer_weights"] = list(self.style_layer_weights)
        return out


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _finite_nonnegative(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


OPTION_NAMES = tuple(f.name for f in fields(StylizeOptions))


class IterationRecord(NamedTuple):
    """One line of the log: the losses of the image the iteration's update starts from."""

    iter: int
    content: float  # sum_l w_l L_content^l, before alpha
    style: float  # sum_l w_l E_l, before beta
    tv: float  # L_TV, before its weight
    total: float  # alpha content + beta style + tv_weight tv
    seconds: float  # wall time of this iteration (evaluation + update)


class NonFiniteLossError(MinistError):
    """The loss became NaN or infinite; ``image`` holds the last image with a finite loss."""

    def __init__(self, message: str, image):
        super().__init__(message)
        self.image = image


@dataclass
class Evaluation:
    """Loss parts and gradient at one image (memoised on the image object)."""

    image: Any
    content: float
    style: float
    tv: float
    total: float
    grad: Any = field(repr=False)


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


def _as_image(source, longest_side: int, what: str):
    """A (1, 3, H, W) float32 image from a path or an array (resized to ``longest_side``)."""
    if isinstance(source, (str, os.PathLike)):
        return load_image(source, longest_side)
    image = np.asarray(to_numpy(source), dtype=np.float32)
    if image.ndim == 3 and image.shape[-1] == 3:  # (H, W, 3) as matplotlib shows it
        image = image.transpose(2, 0, 1)
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise MinistError(f"{what}: expected an RGB image array, got shape {image.shape}")
    return resize_longest(np.clip(image, 0.0, 1.0), longest_side)


class StyleTransfer:
    """A style transfer run as an object: build it, then :meth:`run` (or :meth:`step` yourself).

    >>> st = StyleTransfer("photo.jpg", "painting.jpg", size=256, iters=200)
    >>> image = st.run(callback=lambda record, image: print(record))

    ``content`` and ``style`` are image paths or arrays ((1, 3, H, W), (3, H, W) or (H, W, 3),
    RGB in [0, 1]). Keyword options are those of :class:`StylizeOptions`.
    """

    def __init__(
        self,
        content,
        style,
        options: StylizeOptions | None = None,
        *,
        network: VGG | None = None,
        progress: bool | None = None,
        **kwargs,
    ):
        unknown = sorted(set(kwargs) - set(OPTION_NAMES))
        if unknown:
            raise MinistError(
                f"unknown option {unknown[0]!r}; options are {', '.join(OPTION_NAMES)}"
            )
        options = StylizeOptions(**{**(asdict(options) if options else {}), **kwargs}).validated()
        self.options = o = options
        self.net = network or VGG(
            load_weights(resolve_weights_file(o.weights, progress)),
            device=o.device,
            pooling=o.pooling,
        )
        layers = list(o.content_layers) + list(o.style_layers)
        self.net.check_layers(layers)
        minimum = self.net.minimum_input_size(layers)

        content_image = _as_image(content, o.size, "content")
        style_image = _as_image(style, max(1, round(o.size * o.style_scale)), "style")
        for what, img, src in (("content", content_image, content), ("style", style_image, style)):
            if min(img.shape[2:]) < minimum:
                name = src if isinstance(src, (str, os.PathLike)) else what
                deepest = max(layers, key=self.net.layer_names.index)
                raise MinistError(
                    f"{name}: {what} image is {img.shape[3]}x{img.shape[2]} px after resizing, "
                    f"too small for layers up to {deepest}: needs at least {minimum} px on each "
                    "side (raise --size or --style-scale)"
                )
        self.content_image = content_image
        # Refuse now, in one line, a run that would run out of memory later (minist.memory).
        memory.check_transfer_fits(self.net, o, content_image.shape, style_image.shape)

        # Targets: P^l (content features of the photo), A^l (Gram matrices of the painting).
        self.content_targets, self.style_targets = {}, {}
        if o.content_layers:
            feats = self.net.forward(content_image, list(o.content_layers))[0]  # drop the cache
            self.content_targets = {k: losses.feature_matrix(v).copy() for k, v in feats.items()}
        if o.style_layers:
            feats = self.net.forward(style_image, list(o.style_layers))[0]
            self.style_targets = {
                k: losses.gram_matrix(losses.feature_matrix(v)) for k, v in feats.items()
            }
        del feats

        n_style = len(o.style_layers)
        raw = o.style_layer_weights or ([1.0 / n_style] * n_style if n_style else [])
        self.style_layer_weights = dict(zip(o.style_layers, map(float, raw), strict=True))
        self.content_layer_weights = {k: 1.0 / len(o.content_layers) for k in o.content_layers}
        self.content_scale = {
            k: self._scale(float((P * P).sum()), 1.0, o.normalize)
            for k, P in self.content_targets.items()
        }
        self.style_scale = {
            k: self._scale(float((A * A).sum()), 4.0 * A.shape[0] ** 2, o.normalize)
            for k, A in self.style_targets.items()
        }

        self.image = self._initial_image(style_image)
        self.optimizer = make_optimizer(o.optimizer, o.lr)
        self.iteration = 0
        self.history: list[IterationRecord] = []
        self._last: Evaluation | None = None
        self._last_finite_image = self.image

    @staticmethod
    def _scale(energy: float, paper_factor: float, normalize: bool) -> float:
        """Multiplier turning the paper's layer loss into the normalised one (module doc)."""
        if not normalize:
            return 1.0
        return paper_factor / max(energy, 1e-30)

    def _initial_image(self, style_image):
        o = self.options
        shape = self.content_image.shape
        rng = np.random.default_rng(o.seed)
        noise = rng.uniform(0.0, 1.0, size=shape).astype(np.float32)
        if o.init == "content":
            start = self.content_image
        elif o.init == "noise":
            start = noise
        elif o.init == "style":
            start = resize_to(style_image, shape[2:])
        else:
            start = resize_to(load_image(o.init), shape[2:])
        if o.noise_ratio > 0 and o.init != "noise":
            start = ((1.0 - o.noise_ratio) * start + o.noise_ratio * noise).astype(np.float32)
        return to_device(np.ascontiguousarray(start), o.device, np.float32)

    # --- one evaluation of Eq. 7 and its gradient --------------------------------------------
    def evaluate(self, image) -> Evaluation:
        """Loss parts and gradient at ``image`` (memoised: the same object is computed once)."""
        if self._last is not None and self._last.image is image:
            return self._last
        o = self.options
        layers = list(dict.fromkeys(list(o.content_layers) + list(o.style_layers)))
        feats, cache = self.net.forward(image, layers)
        grads = _LayerGradients(self, feats)
        if grads:
            grad = self.net.backward(grads, cache)
        else:  # every weight is 0: nothing flows back
            grad = get_array_module(image).zeros_like(image)
        grads.finish()  # the losses of layers the backward did not need (none, normally)
        content, style = grads.content, grads.style
        del feats, cache, grads
        tv = 0.0
        if o.tv_weight > 0:
            tv_value, tv_grad = losses.tv_loss(image)
            tv = float(tv_value)
            grad += o.tv_weight * tv_grad
        total = o.content_weight * content + o.style_weight * style + o.tv_weight * tv  # Eq. 7
        self._last = Evaluation(image, content, style, tv, total, grad)
        return self._last

    def _loss_and_grad(self, image):
        e = self.evaluate(image)
        return e.total, e.grad

    # --- the loop ---------------------------------------------------------------------------
    def step(self) -> IterationRecord:
        """One iteration: evaluate at the current image, log it, let the optimizer update it."""
        start = time.perf_counter()
        e = self.evaluate(self.image)
        if not all(math.isfinite(v) for v in (e.total, e.content, e.style, e.tv)):
            raise NonFiniteLossError(
                f"the loss became {e.total} at iteration {self.iteration}; kept the last image "
                "with a finite loss; lower --lr (or --style-weight / --content-weight)",
                self._last_finite_image,
            )
        self._last_finite_image = self.image
        self.image = self.optimizer.step(self.image, e.total, e.grad, self._loss_and_grad)
        record = IterationRecord(
            self.iteration, e.content, e.style, e.tv, e.total, time.perf_counter() - start
        )
        self.history.append(record)
        self.iteration += 1
        return record

    def run(
        self,
        iters: int | None = None,
        callback: Callable[[IterationRecord, Any], None] | None = None,
    ):
        """Run ``iters`` iterations (default: the option); return the image as NumPy (1,3,H,W)."""
        for _ in range(self.options.iters if iters is None else iters):
            record = self.step()
            if callback is not None:
                callback(record, self.image)
        return self.result()

    def result(self):
        """The current image, on the CPU, (1, 3, H, W) float32 in [0, 1]."""
        return to_numpy(self.image).astype(np.float32, copy=True)


class _LayerGradients(Mapping):
    r"""The loss gradients handed to the backward pass, :math:`\partial L / \partial F^l` for each
    content and style layer :math:`l`, computed when the backward pass asks for them.

    Each is as large as the layer's features (256 MiB for relu1_1 at 1024 px); computed on
    demand, as the backward reaches its layer, only one exists at a time instead of all of them
    at once. The loss values (Eq. 1, 4, 5) are kept as they come, as arrays on the device, and
    read (:attr:`content`, :attr:`style`) only after the backward: on a GPU, reading a value
    waits for the device, which would stall the backward at every layer. :meth:`finish`
    computes the losses of layers never asked for.
    """

    def __init__(self, transfer: StyleTransfer, feats: dict):
        o = transfer.options
        self.transfer, self.feats = transfer, feats
        self._content, self._style = [], []  # (weight, loss as a 0-d array) per layer
        self._done: set[str] = set()
        names = []
        if o.content_weight > 0:
            names += list(transfer.content_targets)
        if o.style_weight > 0:
            names += [n for n in transfer.style_targets
                      if transfer.style_layer_weights[n] * transfer.style_scale[n] != 0]
        self._names = list(dict.fromkeys(names))

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self):
        return iter(self._names)

    def __contains__(self, name) -> bool:  # without computing anything (Mapping's would)
        return name in self._names

    def __getitem__(self, name: str):
        if name not in self._names:
            raise KeyError(name)
        if name in self._done:
            raise RuntimeError(f"the gradient of layer {name} was already handed out")
        self._done.add(name)
        t, o, F = self.transfer, self.transfer.options, self.feats[name]
        grad = None
        if o.content_weight > 0 and name in t.content_targets:  # Eq. 1, 2 (normalised)
            c = t.content_layer_weights[name] * t.content_scale[name]
            loss, dF = losses.content_loss(losses.feature_matrix(F), t.content_targets[name])
            self._content.append((c, loss))
            grad = dF * (o.content_weight * c)
        if o.style_weight > 0 and name in t.style_targets:  # Eq. 4, 5, 6 (normalised)
            c = t.style_layer_weights[name] * t.style_scale[name]
            if c != 0:
                loss, dF = losses.style_layer_loss(losses.feature_matrix(F), t.style_targets[name])
                self._style.append((c, loss))
                dF *= o.style_weight * c
                grad = dF if grad is None else grad + dF
        return grad.reshape(F.shape)

    @property
    def content(self) -> float:
        """The content loss of the layers reached so far (Eq. 1, normalised)."""
        return sum((c * float(loss) for c, loss in self._content), 0.0)

    @property
    def style(self) -> float:
        """The style loss of the layers reached so far (Eq. 5, normalised)."""
        return sum((c * float(loss) for c, loss in self._style), 0.0)

    def finish(self) -> None:
        """Compute the loss values of the layers whose gradient was not asked for."""
        for name in self._names:
            if name not in self._done:
                self[name]


def stylize(content, style, *, callback=None, **options):
    """Paint ``content`` in the style of ``style``; return the image, NumPy (1, 3, H, W) in [0, 1].

    ``content``/``style``: image paths or arrays. ``options``: see :class:`StylizeOptions`.
    """
    return StyleTransfer(content, style, **options).run(callback=callback)


__all__ = [
    "DEFAULT_LR",
    "IterationRecord",
    "NonFiniteLossError",
    "StyleTransfer",
    "StylizeOptions",
    "stylize",
]
