r"""Coarse-to-fine: the schedule of image sizes of a multi-scale run (Gatys et al. 2017, §6).

**Why.** VGG's receptive fields are fixed in *pixels*: a unit of ``relu5_1`` sees at most
:math:`r = 156` px of its input (VGG-19; :func:`receptive_fields`), ``relu3_1`` 24 px. The
style representation of a painting is the statistics of what those units see, so a style
transfer at 2048 px reproduces strokes of at most ~150 px -- tiny on a large print -- and the
painting's large-scale structure is lost. Running first at a small size, where the receptive
fields cover a large part of the picture, then upsampling the result and continuing at the
next size, keeps the large structures from the coarse scales and adds the fine ones at the
fine scales. At large sizes it is also the only practical way on a CPU: most iterations run on
small images (2048 px in 8 minutes here, where one scale would take 90). It is not a short cut
at 512 px: upsampling wipes out the fine layers' statistics, and the final scale still needs
most of a single-scale run's iterations (README, "Coarse-to-fine, measured").

**Schedule** (:func:`auto_sizes`): sizes (longest side) spaced by a factor :math:`\sqrt 2`,
counted down from the output size, :math:`s_k = s / \sqrt 2^{\,k}`, as long as
:math:`s_k \ge s_{\min}`, then run smallest first. :math:`s_{\min}` = 256 px, or more where the
chosen layers need it (the shorter side must keep every requested layer at least 1 px). Why
256 and not smaller: the first scale decides the composition, and the default style layers keep
the photo's layout at 256 px (tubingen's houses and tower, with each painting in
``../shared``), while at 128 px the houses are a few pixels tall and every run tried painted the
painting's shapes over them, which no finer scale undid (README, "Coarse-to-fine, measured").
Each scale has twice the pixels of the one before it.

**Iterations** (:func:`scale_iterations`): ``--iters`` at the final size; each coarser scale
gets the same number, ``--iters``, unless ``--scale-iters`` says otherwise. Iterations at scale
:math:`k` steps from the top cost :math:`2^{-k}` of a final-size one, so all the coarser scales
together cost less than one more final-size pass (:math:`\sum_k 2^{-k} < 1`).

**Carrying the image over** (:func:`carry_over`): each scale starts from the previous result,
upsampled with Lanczos (:func:`minist.images.resize_to`), plus the detail that the previous size
could not hold, taken from the image the run starts from (``--init``, the photo by default):

.. math::
    x_0^{(k)} = \Pi_{[0,1]}\big(U x^{(k-1)} + s^{(k)} - U D s^{(k)}\big)

with :math:`D` the resize to scale :math:`k-1`, :math:`U` back to scale :math:`k`,
:math:`s^{(k)}` the start image at scale :math:`k` and :math:`\Pi_{[0,1]}` the clip to the box
the optimiser works in. The coarse result fixes the frequencies it can represent; the upsampled
image has nothing above them (a blur), and the finer scale would have to rebuild the photo's
edges from nothing. With no coarse iterations at all this is the single-scale start,
:math:`x_0 = s`. ``--scale-detail none`` starts from :math:`U x^{(k-1)}` alone.

Each scale rebuilds every target at its own size from the original images
(:meth:`minist.stylize.StyleTransfer.retarget`) -- with the style layers of its own size when
they are the default, ``auto`` (:mod:`minist.layer_choice`: at 256 px relu1_1 to relu3_1, whose
fields still leave the photo's layout alone). Tutorial: ``tutorials/10_coarse_to_fine``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from minist.backend import get_array_module
from minist.errors import MinistError
from minist.images import resize_to

SMALLEST = 256  # px: where the automatic schedule starts (unless the layers need more)
DETAIL_MODES = ("init", "none")  # --scale-detail: where a finer scale's new detail comes from
FACTOR = math.sqrt(2.0)  # between neighbouring scales: twice the pixels


class Schedule(NamedTuple):
    """The scales of a run, smallest first: ``sizes`` (longest side, px) and ``iters`` (steps at
    each); the last entry is the output."""

    sizes: tuple[int, ...]
    iters: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.iters)


class ScaleCursor:
    """Where a run is in its :class:`Schedule`: the scale ``index`` and the iterations ``done``
    at it."""

    def __init__(self, schedule: Schedule):
        self.schedule, self.index, self.done = schedule, 0, 0

    @property
    def size(self) -> int:
        return self.schedule.sizes[self.index]

    def next_size(self) -> int | None:
        """When this scale's iterations are done and a finer one follows: move there and
        return its size (px); else None."""
        sizes, iters = self.schedule
        if self.done >= iters[self.index] and self.index + 1 < len(sizes):
            self.index += 1
            self.done = 0
            return sizes[self.index]
        return None


def auto_sizes(size: int, smallest: int = SMALLEST) -> tuple[int, ...]:
    r"""Sizes :math:`s / \sqrt2^{\,k} \ge` ``smallest``, smallest first, ending at ``size``."""
    sizes, k = [], 0
    while True:
        s = round(size / FACTOR**k)
        if sizes and s < smallest:
            break
        sizes.append(s)
        k += 1
    return tuple(reversed(sizes))


def parse_sizes(text: str, option: str = "--scales") -> tuple[int, ...] | str:
    """``"auto"``, or ``"256,512,1024"`` as sizes (increasing, positive); one line otherwise."""
    text = str(text).strip()
    if text == "auto":
        return "auto"
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or any(s < 1 for s in sizes):
        raise MinistError(f"{option}: expected 'auto' or sizes in px like 256,512,1024, got "
                          f"{text!r}")
    if list(sizes) != sorted(set(sizes)):
        raise MinistError(f"{option}: sizes must increase, got {text!r}")
    return sizes


def scale_iterations(n_scales: int, iters: int, coarser: Sequence[int] | None = None,
                     option: str = "--scale-iters") -> tuple[int, ...]:
    """Steps per scale: ``coarser`` (one per scale before the last) or ``iters`` each, then
    ``iters`` at the final size (module docstring)."""
    if coarser is None:
        return (iters,) * n_scales
    coarser = tuple(coarser)
    if len(coarser) != n_scales - 1:
        raise MinistError(f"{option}: {len(coarser)} values for {n_scales - 1} coarser scales "
                          f"(one per scale before the last; the last runs --iters)")
    if any(not isinstance(n, int) or n < 0 for n in coarser):
        raise MinistError(f"{option}: iterations must be integers >= 0, got {list(coarser)}")
    return coarser + (iters,)


def schedule(size: int, iters: int, scales, scale_iters: Sequence[int] | None = None,
             smallest: int = SMALLEST) -> Schedule:
    """The schedule of a run: ``scales`` None (one scale, ``size``), ``"auto"`` or sizes (the
    last is the output size; it must equal ``size``)."""
    if scales is None:
        if scale_iters:
            raise MinistError("--scale-iters: needs --scales")
        return Schedule((size,), (iters,))
    sizes = auto_sizes(size, smallest) if scales == "auto" else tuple(scales)
    if sizes[-1] != size:
        raise MinistError(f"--scales: the last size is the output size, {sizes[-1]} px, but "
                          f"--size is {size}")
    return Schedule(sizes, scale_iterations(len(sizes), iters, scale_iters))


def receptive_fields(layer_specs) -> dict[str, int]:
    r"""The receptive field of each layer in input pixels (the side of the square of image
    pixels a unit can see): a 3x3 convolution adds :math:`2 j`, a 2x2 stride-2 pooling adds
    :math:`j` and doubles the jump :math:`j` between neighbouring units (:math:`r_0 = j_0 = 1`).
    ``layer_specs``: a network's layer table (``VGG.layer_specs``). VGG-19: relu1_1 3 px,
    relu2_1 10, relu3_1 24, relu4_1 68, relu4_2 84, relu5_1 156 (VGG-16: relu4_1 60, relu4_2 76,
    relu5_1 132)."""
    r, jump, fields = 1, 1, {}
    for spec in layer_specs:
        if spec.kind == "conv":
            r += 2 * jump
        elif spec.kind == "pool":
            r += jump
            jump *= 2
        fields[spec.name] = r
    return fields


def smallest_size(minimum_side: int, aspect: float) -> int:
    """The smallest longest side whose shorter side is at least ``minimum_side`` px
    (``aspect`` = shorter / longer side), and at least :data:`SMALLEST`."""
    return max(SMALLEST, math.ceil(minimum_side / max(aspect, 1e-9)))


def carry_over(previous, start, detail: str = "init"):
    r"""The image scale :math:`k` starts from (module docstring, "Carrying the image over"):
    :math:`x_0^{(k)} = \Pi_{[0,1]}(U x^{(k-1)} + s^{(k)} - U D s^{(k)})`.

    ``previous``: the result at scale :math:`k-1`, (N, C, h, w); ``start``: the run's start
    image at scale :math:`k`, (N, C, H, W) (the photo for ``--init content``); ``detail``:
    ``"init"`` (add the start image's detail above the previous size) or ``"none"`` (the
    upsampled result alone). Returns (N, C, H, W) in [0, 1], the dtype and device of ``start``.
    """
    check_detail_mode(detail)
    shape = tuple(start.shape[2:])
    upsampled = resize_to(previous, shape).astype(start.dtype, copy=False)  # U x^(k-1)
    if detail == "none":
        return upsampled
    low = resize_to(resize_to(start, tuple(previous.shape[2:])), shape)  # U D s^(k)
    xp = get_array_module(start)
    return xp.clip(upsampled + (start - low), 0.0, 1.0).astype(start.dtype)


def check_detail_mode(detail) -> str:
    """``--scale-detail``: one of :data:`DETAIL_MODES`; one line otherwise."""
    if detail not in DETAIL_MODES:
        raise MinistError(f"--scale-detail: unknown mode {detail!r}; choose one of "
                          f"{', '.join(DETAIL_MODES)}")
    return detail
