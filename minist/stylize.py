r"""Style transfer end to end: the options, the run, and the functions users call.

Gatys et al. (2015) synthesise an image :math:`\vec{x}` that matches the *content* of a photo
:math:`\vec{p}` at some layers and the *style* (Gram matrices) of a painting :math:`\vec{a}` at
others, by gradient descent on the pixels of :math:`\vec{x}`:

.. math::

    \mathcal{L}_{total}(\vec p, \vec a, \vec x) = \alpha \mathcal{L}_{content}(\vec p, \vec x)
        + \beta \mathcal{L}_{style}(\vec a, \vec x)
        \;[+\; \lambda_{TV} \mathcal{L}_{TV}(\vec x)]                      \qquad \text{(Eq. 7)}

This module only wires the parts together; each lives in its own module:

* :mod:`minist.inputs` -- the network (weights found or fetched), the images (loaded once,
  resized on request, checked), the first image;
* :mod:`minist.objective` -- Eq. 7 as a list of loss terms (targets, weights, normalisers)
  and its evaluation: one forward pass, each layer's loss gradient as the backward pass
  reaches it, one backward pass, the total-variation term;
* :mod:`minist.problem` -- the function minimised at one size, ``problem(x) ->
  Evaluation(loss, grad, parts)``: the objective, seen through the colour view of a
  luminance-only run;
* :mod:`minist.optim` -- the optimiser that updates the image, which stays an RGB image in
  [0, 1] (the weights' preprocessing happens inside the differentiated forward):
  ``x_new = optimizer.step(x, problem)``, evaluating the problem where it needs to;
* :mod:`minist.scales` -- the sizes of a coarse-to-fine run and the image carried between
  them; :mod:`minist.loop` -- where a run stands (:class:`~minist.loop.RunState`: one
  iteration, the non-finite-loss check), the one run loop and its observers (progress, logs,
  snapshots, the end of a run on Ctrl-C or a non-finite loss); :mod:`minist.memory` -- the
  check that a run fits before it starts; :mod:`minist.execution` -- how the layers run.

Tutorial: ``tutorials/06_total_loss``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from minist import memory
from minist.backend import to_numpy
from minist.errors import MinistError
from minist.execution import ExecutionConfig
from minist.inputs import (
    DEFAULT_WEIGHTS,
    SourceImages,
    check_sizes,
    initial_image,
    is_source,
    load_network,
    resolve_weights_file,
)
from minist.layer_choice import resolve_style_layers
from minist.loop import (
    CallbackObserver,
    IterationRecord,
    NonFiniteLossError,
    RunState,
    run_loop,
)
from minist.masks import check_masks, load_mask
from minist.objective import blend_weights
from minist.optim import DEFAULT_LR, Optimizer, make_optimizer
from minist.options import (  # noqa: F401 - re-exported: the options' home is minist.options
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    OPTION_NAMES,
    StylizeOptions,
)
from minist.problem import Evaluation, Problem, TemporalTerm, build_problem
from minist.scales import (
    ScaleCursor,
    Schedule,
    carry_over,
    schedule,
    smallest_size,
)
from minist.vgg import VGG


class StyleTransfer:
    """A style transfer run as an object: build it, then :meth:`run` (or :meth:`step` yourself).

    >>> st = StyleTransfer("photo.jpg", "painting.jpg", size=256, iters=200)
    >>> image = st.run(callback=lambda record, run: print(record))

    ``content`` and ``style`` are image paths or arrays ((1, 3, H, W), (3, H, W) or (H, W, 3),
    RGB in [0, 1]). Keyword options are those of :class:`StylizeOptions`; ``init`` may also be
    an array (an earlier result, say). ``network``: a :class:`~minist.vgg.VGG` to use instead of
    loading ``weights`` (its execution config then applies); ``config``: the
    :class:`~minist.execution.ExecutionConfig` of the network this run loads; ``optimizer``: a
    name (the option) or an :class:`~minist.optim.Optimizer` instance to use as it is;
    ``temporal_at``: for a frame of a clip, ``temporal_at(problem, (H, W))`` gives the
    :class:`~minist.problem.TemporalTerm` of the problem built at each size (every scale of a
    coarse-to-fine run), or None (:mod:`minist.video.run`).

    A front over the run's parts, which are attributes: ``net``, ``images``
    (:class:`~minist.inputs.SourceImages`), ``schedule`` (:class:`~minist.scales.Schedule`),
    ``problem`` (:class:`~minist.problem.Problem`: what is minimised at the current size; its
    ``objective`` holds the terms and their targets), ``optimizer``, ``state``
    (:class:`~minist.loop.RunState`: ``image`` on the device, ``iteration``, ``history``, one
    :class:`~minist.loop.IterationRecord` per step). :meth:`retarget` builds the problem at
    another size and carries the current image over.
    """

    def __init__(
        self,
        content,
        style,
        options: StylizeOptions | None = None,
        *,
        network: VGG | None = None,
        optimizer: Optimizer | str | None = None,
        config: ExecutionConfig | None = None,
        progress: bool | None = None,
        temporal_at: Callable[[Problem, tuple[int, int]], TemporalTerm | None] | None = None,
        **kwargs,
    ):
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            kwargs["optimizer"], optimizer = optimizer, None  # the option: a name
        unknown = sorted(set(kwargs) - set(OPTION_NAMES))
        if unknown:
            raise MinistError(
                f"unknown option {unknown[0]!r}; options are {', '.join(OPTION_NAMES)}"
            )
        options = StylizeOptions(**{**(asdict(options) if options else {}), **kwargs}).validated()
        self.options = o = options
        if network is None:
            config = config or ExecutionConfig(device=o.device)
            network = load_network(o.weights, pooling=o.pooling, config=config,
                                   progress=progress)
        self.net = network
        self.temporal_at = temporal_at
        layers = self.net.check_layers(list(o.content_layers) + list(self.style_layers_at(o.size)))
        self.images = SourceImages(content, style)
        blend_weights(o.style_blend, len(self.images.styles))  # one line if they do not match
        self.masks = self._load_masks()
        self.schedule = self._schedule(layers)
        self.optimizer = optimizer if optimizer is not None else make_optimizer(o.optimizer, o.lr)
        if len(self.schedule.sizes) > 1:  # refuse now, in one line, if the largest won't fit
            largest = self.schedule.sizes[-1]
            self._check_memory(largest, *self._images_at(largest))
        self._scales = ScaleCursor(self.schedule)
        self.state = RunState(self._prepare(self.schedule.sizes[0]))
        self._cpu_image = None  # (state version, the output image on the CPU)

    def _load_masks(self):
        """Spatial control: ``(content masks, style masks)`` loaded once (None without)."""
        o = self.options
        if o.content_masks is None:
            return None
        n = len(self.images.styles)

        def load(masks, option):
            return [None if m is None else load_mask(m) if is_source(m)
                    else np.asarray(m, dtype=np.float32) for m in check_masks(masks, n, option)]

        content = load(o.content_masks, "--content-masks")
        if any(m is None for m in content):
            raise MinistError("--content-masks: every style image needs its mask")
        style = None if o.style_masks is None else load(o.style_masks, "--style-masks")
        return content, style

    def _schedule(self, layers) -> Schedule:
        """The sizes of a coarse-to-fine run (:mod:`minist.scales`; one scale without it); the
        automatic schedule starts where every image still reaches the deepest layer."""
        o = self.options
        minimum = self.net.minimum_input_size(layers)
        shapes = [self.images.content.shape] + [
            (1, 3, max(1, round(h * o.style_scale)), max(1, round(w * o.style_scale)))
            for (_, _, h, w) in (s.shape for s in self.images.styles)]
        smallest = max(smallest_size(minimum, min(sh[2:]) / max(sh[2:])) for sh in shapes)
        return schedule(o.size, o.iters, o.scales, o.scale_iters, smallest)

    def style_layers_at(self, size: int) -> tuple[str, ...]:
        """The style layers of the scale whose longest side is ``size`` px: ``--style-layers``
        as given, or for ``auto`` the paper's five less those whose receptive field exceeds a
        fifth of ``size`` (:mod:`minist.layer_choice`)."""
        return resolve_style_layers(self.options.style_layers, self.net.layer_specs, size)

    def _images_at(self, size: int):
        """The content and style images at ``size``, checked against the layers."""
        o = self.options
        content_image = self.images.content_at(size)
        style_images = self.images.styles_at(size, o.style_scale)
        named = [(self.images.name("content"), "content", content_image)]
        named += [(self.images.name("style", i), "style", img)
                  for i, img in enumerate(style_images)]
        check_sizes(self.net, list(o.content_layers) + list(self.style_layers_at(size)), named)
        return content_image, style_images

    def _check_memory(self, size: int, content_image, style_images) -> None:
        """Refuse, in one line, a run at these images' size that would not fit in memory
        (:mod:`minist.memory`), unless the option ``memory_check`` is off."""
        if self.options.memory_check:
            memory.check_transfer_fits(self.net, self.options, content_image.shape,
                                       [img.shape for img in style_images],
                                       self.style_layers_at(size), self.optimizer)

    def _prepare(self, size: int):
        """The images at ``size``, the checks, the problem there; returns the start image (the
        variable the optimizer updates) at that size."""
        o = self.options
        content_image, style_images = self._images_at(size)
        self.content_image = content_image
        self._check_memory(size, content_image, style_images)
        self.problem = build_problem(self.net, content_image, style_images, o,
                                     self.style_layers_at(size), self.masks, size)
        if self.temporal_at is not None:  # a frame of a clip: its temporal term at this size
            term = self.temporal_at(self.problem, tuple(content_image.shape[2:]))
            self.problem = replace(self.problem, temporal=term)
        start = initial_image(o.init, content_image, style_images[0], o.seed, o.noise_ratio,
                              self.net.device)
        return self.problem.variable(start)

    def retarget(self, size: int) -> None:
        """Rebuild the problem at ``size`` (longest side, px; every target from the original
        images) and carry the current image over: upsampled (Lanczos), plus the start image's
        detail above the previous size (:func:`minist.scales.carry_over`; ``scale_detail``).
        The optimiser's state resets itself on the new shape. (A coarse-to-fine run does this
        between scales.)"""
        start = self._prepare(size)
        self.state.restart(carry_over(self.state.image, start, self.options.scale_detail))
        self.optimizer.forget_evaluation()  # a new function to minimise

    def _next_scale_if_due(self) -> None:
        """Move on to the next scale of the schedule when this one's iterations are done."""
        while (size := self._scales.next_size()) is not None:
            self.retarget(size)

    # --- the parts, by the names the callers know ----------------------------------------
    @property
    def image(self):
        """The current image (the optimised variable), on the run's device."""
        return self.state.image

    @image.setter
    def image(self, image) -> None:
        self.state.image = image

    @property
    def iteration(self) -> int:
        return self.state.iteration

    @property
    def history(self) -> list[IterationRecord]:
        return self.state.history

    @property
    def size(self) -> int:
        """The longest side of the current scale, px."""
        return self.problem.size

    @property
    def objective(self):
        """The terms, targets and weights of the current problem (Eq. 7)."""
        return self.problem.objective

    def evaluate(self, image) -> Evaluation:
        """Loss, gradient and the loss's parts at ``image`` (the current problem; computed
        now, each call)."""
        with self.net.config.scope():
            return self.problem(image)

    # --- the loop ---------------------------------------------------------------------------
    def step(self) -> IterationRecord:
        """One iteration (:meth:`minist.loop.RunState.iterate`: the losses at the current image,
        the NaN check, the optimizer's update), first moving on to the next scale of a
        coarse-to-fine run when one is due."""
        self._next_scale_if_due()
        with self.net.config.scope():  # BLAS and Numba threads: this run's, for the whole step
            record = self.state.iterate(self.problem, self.optimizer, self._scales.done,
                                        self.size)
        self._scales.done += 1
        return record

    def run(
        self,
        iters: int | None = None,
        callback: Callable[[IterationRecord, StyleTransfer], Any] | None = None,
        *,
        observers: Sequence = (),
    ):
        """Run ``iters`` iterations (default: all of the schedule's, i.e. ``--iters`` for one
        scale) in the run loop (:mod:`minist.loop`); return the image as NumPy (1, 3, H, W) in
        [0, 1].

        ``callback(record, run)`` is called after every iteration; a true return value stops the
        run. ``observers``: :class:`~minist.loop.Observer` objects. Ctrl-C and a loss that is no
        longer finite end the run (observers hear of it) and are then raised here.
        """
        watchers = list(observers)
        if callback is not None:
            watchers.append(CallbackObserver(callback))
        total = self.schedule.total if iters is None else iters
        self.outcome = run_loop(self, total, watchers)
        return self.result()

    def output_image(self, image):
        """What the user gets for the optimised ``image``: the image itself, or for a
        luminance-only run its luminance with the content's colours (on the run's device)."""
        return self.problem.output(image)

    def image_on_cpu(self) -> np.ndarray:
        """The current output image as NumPy (1, 3, H, W) float32 -- copied from the GPU at most
        once per image the run holds (each iteration's, or one assigned to ``run.image``),
        however many observers ask; read-only (:meth:`result` copies). Replace the image by
        assigning ``run.image``: an edit in place is seen by the next iteration's evaluation
        (the optimizer compares values, not objects) but not by this copy until then."""
        if self._cpu_image is None or self._cpu_image[0] != self.state.version:
            array = to_numpy(self.output_image(self.image))
            if array is not self.image:
                array.flags.writeable = False
            self._cpu_image = (self.state.version, array)
        return self._cpu_image[1]

    def result(self):
        """The current output image, on the CPU, (1, 3, H, W) float32 in [0, 1]."""
        return to_numpy(self.output_image(self.image)).astype(np.float32, copy=True)


def stylize(content, style, *, callback=None, **options):
    """Paint ``content`` in the style of ``style``; return the image, NumPy (1, 3, H, W) in [0, 1].

    ``content``/``style``: image paths or arrays. ``options``: see :class:`StylizeOptions`.
    """
    return StyleTransfer(content, style, **options).run(callback=callback)


__all__ = [
    "DEFAULT_LR",
    "DEFAULT_WEIGHTS",
    "IterationRecord",
    "NonFiniteLossError",
    "StyleTransfer",
    "StylizeOptions",
    "resolve_weights_file",
    "stylize",
]
