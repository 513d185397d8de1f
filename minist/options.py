r"""The options of a style transfer run, each declared once.

Every setting of a run is one field of :class:`StylizeOptions`, declared with :func:`option`:
its default, the :class:`Kind` of value it holds (an integer, a number, a list of layer names
...), its help text, its command-line spelling and the check of its value. Everything else is
generated from these declarations:

* the ``minist stylize`` arguments (:func:`add_arguments`; :func:`from_arguments` reads them
  back through each option's text parser),
* the checks of a sweep spec's keys (:mod:`minist.sweep` reads :func:`schema`: the key's kind,
  whether it is a list, whether it names a file relative to the spec),
* the API's validation, :meth:`StylizeOptions.validated`, which returns a new, checked object
  (the options are frozen: nothing changes them after the fact).

A bad value gets the same one line from all three: ``--size: must be a positive integer, got 0``
(a sweep spec names its file and the key: ``spec.toml: size: must be ...``). Adding an option is
one field here. :func:`png_metadata` writes a run's settings into the PNG it saves, for the CLI
and the sweep alike.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, NamedTuple

import numpy as np

from minist import color
from minist.backend import resolve_device
from minist.errors import MinistError
from minist.inputs import DEFAULT_WEIGHTS, INITS, is_source
from minist.layer_choice import AUTO, is_auto
from minist.masks import DEFAULT_MASK_MODE, check_mask_mode
from minist.optim import OPTIMIZERS
from minist.scales import check_detail_mode, parse_sizes, schedule
from minist.vgg import POOLINGS

DEFAULT_CONTENT_LAYERS = ("relu4_2",)
DEFAULT_STYLE_LAYERS = AUTO  # the paper's five, less those that see too much (layer_choice)
MAIN, CONTROLS = "main", "controls (Gatys et al. 2017, Controlling Perceptual Factors)"


# ---------------------------------------------------------------------------------------------
# Command-line text -> values (ValueError: the problem, named by from_arguments)
# ---------------------------------------------------------------------------------------------


def _integer_text(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None


def _number_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _names_text(text: str) -> list[str]:
    """``"relu1_1, relu2_1"`` -> ``["relu1_1", "relu2_1"]``."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _paths_text(text: str) -> list[str | None]:
    """``"a.png,,b.png"`` -> ``["a.png", None, "b.png"]`` (an empty entry: none)."""
    return [part.strip() or None for part in text.split(",")]


def _numbers_text(cast):
    def parse(text: str) -> list:
        try:
            return [cast(part) for part in text.split(",") if part.strip()]
        except ValueError:
            kind = "integers" if cast is int else "numbers"
            raise ValueError(f"expected {kind} separated by commas, got {text!r}") from None
    return parse


def _style_layers_text(text: str) -> tuple[Any, list[float] | None]:
    """``relu1_1,relu2_1`` or ``relu1_1:0.5,relu2_1:0.5`` -> (names, weights or None);
    ``auto`` -> (``"auto"``, None): the layers chosen by the image size (minist.layer_choice).
    Fills two options: ``style_layers`` and ``style_layer_weights``."""
    if text.strip() == AUTO:
        return AUTO, None
    names, weights = [], []
    for item in _names_text(text):
        name, _, weight = item.partition(":")
        names.append(name.strip())
        if weight:
            try:
                weights.append(float(weight))
            except ValueError:
                raise ValueError(f"{weight!r} is not a number (in {item!r})") from None
    if weights and len(weights) != len(names):
        raise ValueError("give a weight for every layer (name:weight) or for none")
    return names, (weights or None)


def _text(default) -> str | None:
    """A default as the command line writes it (what ``%(default)s`` shows)."""
    if default is None or isinstance(default, str):
        return default
    if isinstance(default, (tuple, list)):
        return ",".join(str(v) for v in default)
    return str(default)


# ---------------------------------------------------------------------------------------------
# What an option is
# ---------------------------------------------------------------------------------------------


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Kind(NamedTuple):
    """The kind of value an option holds (of each item, for a list option)."""

    describe: str  # for messages: "expected an integer, got 'x'"
    fits: Callable[[Any], bool]  # a value given from Python (the API)
    toml: tuple[type, ...]  # the TOML types a sweep spec may write; () = any
    from_text: Callable[[str], Any] = str  # command-line text -> value (ValueError: bad)


BOOL = Kind("true or false", lambda v: isinstance(v, bool), (bool,))
INT = Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool), (int,),
           _integer_text)
FLOAT = Kind("a number", _number, (float,), _number_text)  # in a spec, 1000 and 1e3 are one
STR = Kind("a string", lambda v: isinstance(v, str), (str,))
PATH = Kind("a file path", lambda v: isinstance(v, (str, os.PathLike)), (str,))
IMAGE = Kind("a file path", lambda v: is_source(v) or isinstance(v, np.ndarray), (str,))
ANY = Kind("a value", lambda v: True, ())


class Option(NamedTuple):
    """One option as :func:`option` declares it (:func:`schema` fills in name and default)."""

    kind: Kind
    help: str
    sequence: bool = False  # a list of ``kind`` (a sweep over it is a list of lists)
    optional: bool = False  # None allowed (None: "not used", e.g. one scale, no masks)
    words: tuple[str, ...] = ()  # strings a list or path option also takes ("auto", "noise")
    path: bool = False  # names files: relative to the spec file in a sweep
    choices: tuple[str, ...] = ()
    noun: str = ""  # for the choices' message: "unknown optimizer 'x'"
    check: Callable[[Any], str | None] | None = None  # the problem with a value, or None
    normalise: Callable[[Any], Any] | None = None  # the value as the run uses it
    parse: Callable[[str], Any] | None = None  # command-line text -> value (default: kind's)
    fills: str | None = None  # parse gives (value, the value of this other option)
    flag: str | None = ""  # "" -> --the-name; None: not on the command line
    negated: bool = False  # a flag that turns a True default off (--no-normalize)
    metavar: str | None = None
    group: str = MAIN
    in_settings: bool = True  # part of what identifies a run's result (PNG metadata, sweep)
    name: str = ""
    default: Any = None

    @property
    def label(self) -> str:
        """How messages name the option: ``--style-weight``."""
        return "--" + self.name.replace("_", "-")

    @property
    def cli_flag(self) -> str | None:
        return None if self.flag is None else (self.flag or self.label)

    def fits(self, value) -> bool:
        """Whether a Python value has this option's type (its items, for a list option)."""
        if value is None:
            return self.optional
        if self.sequence:
            if isinstance(value, str):
                return bool(self.words)  # a word such as "auto": its check() names a wrong one
            return isinstance(value, (Sequence, np.ndarray)) and all(
                (item is None and self.path) or self.kind.fits(item)  # None: no mask there
                for item in value)
        return self.kind.fits(value)

    def expected(self) -> str:
        if self.sequence:
            return f"expected a list whose items are each {self.kind.describe}"
        return f"expected {self.kind.describe}"


_OPTION = "minist.option"


def option(default, kind: Kind, help: str, **declared) -> Any:
    """A field of :class:`StylizeOptions`: ``default``, the ``kind`` of its values, its help text
    (the CLI's, with ``%(default)s``) and what :class:`Option` lists."""
    return field(default=default, metadata={_OPTION: Option(kind, help, **declared)})


# ---------------------------------------------------------------------------------------------
# The checks of single values
# ---------------------------------------------------------------------------------------------


def _finite(value) -> bool:
    return _number(value) and math.isfinite(value)


def _positive_integer(value):
    return None if value >= 1 else f"must be a positive integer, got {value!r}"


def _count(value):
    return None if value >= 0 else f"must be an integer >= 0, got {value!r}"


def _positive(value):
    return None if _finite(value) and value > 0 else f"must be > 0, got {value!r}"


def _weight(value):
    return None if _finite(value) and value >= 0 else f"must be a number >= 0, got {value!r}"


def _fraction(value):
    return None if _finite(value) and 0 <= value <= 1 else \
        f"must be between 0 and 1, got {value!r}"


def _weights(values):
    return None if all(_finite(w) and w >= 0 for w in values) else "weights must be numbers >= 0"


def _style_layers(value):
    if isinstance(value, str) and not is_auto(value):
        return f"give {AUTO!r} or a list of layer names, got {value!r}"
    return None


def _init(value):
    if is_source(value) and str(value) not in INITS and not os.path.isfile(value):
        return f"{str(value)!r} is neither one of {', '.join(INITS)} nor an image file"
    return None


def _raises(check: Callable[[Any], Any]) -> Callable[[Any], None]:
    """A check that raises its own one-line error (the owner module's), as a value check."""
    def run(value):
        check(value)
    return run


def check_style_blend(weights: Sequence[float]) -> tuple[float, ...]:
    r"""The blend of several style images, :math:`w_i \ge 0` with :math:`\sum_i w_i > 0`,
    normalised to sum 1; one line naming ``--style-blend`` otherwise. The one check of the
    weights: :meth:`StylizeOptions.validated` and :func:`minist.objective.blend_weights`."""
    weights = tuple(weights)
    if not weights or not all(_finite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
        raise MinistError(f"--style-blend: weights must be numbers >= 0 that do not sum to 0, "
                          f"got {list(weights)}")
    total = float(sum(weights))
    return tuple(float(w) / total for w in weights)


# ---------------------------------------------------------------------------------------------
# The options
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StylizeOptions:
    """Every setting of a style transfer run (the CLI's long options carry the same names).

    Frozen: :meth:`validated` returns a new, checked object and
    :func:`dataclasses.replace` makes a changed copy."""

    weights: str | os.PathLike = option(
        DEFAULT_WEIGHTS, PATH, "minist HDF5 weights (default: %(default)s; fetched if missing)",
        path=True)
    size: int = option(512, INT, "longest side of the output in px (default: %(default)s)",
                       check=_positive_integer)
    style_scale: float = option(  # each style image's longest side = style_scale * size
        1.0, FLOAT, "style image size relative to --size (default: %(default)s)",
        check=_positive)
    style_blend: Sequence[float] | None = option(  # several styles: A^l = sum_i w_i A_i^l
        None, FLOAT, "weights of several STYLE images, >= 0, normalised to sum 1 (default: "
        "equal): their Gram matrices are blended", sequence=True, optional=True,
        check=_raises(check_style_blend), parse=_numbers_text(float), metavar="W1,W2,...",
        group=CONTROLS)
    scales: Any = option(  # coarse-to-fine: None (one scale), "auto" or sizes ending at size
        None, ANY, "coarse-to-fine: 'auto' (sizes spaced by sqrt(2) from 256 px up to --size) "
        "or sizes in px ending at --size; each scale starts from the last, upsampled (Lanczos), "
        "plus the photo's finer detail (--scale-detail)", optional=True,
        normalise=lambda v: parse_sizes(v) if isinstance(v, str) else v,
        metavar="auto|S1,S2,...", group=CONTROLS)
    scale_iters: Sequence[int] | None = option(  # iterations at each coarser scale
        None, INT, "iterations at each scale before the last (default: --iters each); --iters "
        "is the last scale's", sequence=True, optional=True, parse=_numbers_text(int),
        metavar="N1,N2,...", group=CONTROLS)
    scale_detail: str = option(  # a finer scale's new detail: from the start image | none
        "init", STR, "what a finer scale adds to the upsampled result: the detail of the start "
        "image (--init, the photo by default) that the coarser size could not hold ('init'), or "
        "nothing ('none') (default: %(default)s)", check=_raises(check_detail_mode),
        metavar="init|none", group=CONTROLS)
    original_colors: str | None = option(  # keep the photo's colours: luminance | histogram
        None, STR, "keep the photo's colours: 'luminance' transfers the style to the luminance "
        "only (YIQ) and keeps the photo's I, Q; 'histogram' matches each painting's colours to "
        "the photo's before the transfer (default: off)", optional=True, choices=color.MODES,
        noun="mode", metavar="luminance|histogram", group=CONTROLS)
    color_transform: str = option(  # histogram matching: pca | cholesky | sym
        "pca", STR, "the colour map of --original-colors histogram (default: %(default)s)",
        choices=color.METHODS, noun="transform", metavar="pca|cholesky|sym", group=CONTROLS)
    content_masks: Sequence[Any] | None = option(  # spatial control: one mask per style image
        None, IMAGE, "spatial control: one grayscale mask per STYLE, drawn on CONTENT (white: "
        "this style here)", sequence=True, optional=True, path=True, parse=_paths_text,
        metavar="M1.png,M2.png,...", group=CONTROLS)
    style_masks: Sequence[Any] | None = option(  # where in each style image (None: all of it)
        None, IMAGE, "the part of each STYLE image to take its statistics from (default: all "
        "of it; leave an entry empty for all of that one)", sequence=True, optional=True,
        path=True, parse=_paths_text, metavar="S1.png,S2.png,...", group=CONTROLS)
    mask_mode: str = option(  # how masks reach the layers: simple | inside
        DEFAULT_MASK_MODE, STR, "masks at the layers: resized ('simple'), or only the units "
        "whose receptive field lies inside the region ('inside') (default: %(default)s)",
        check=_raises(check_mask_mode), metavar="simple|inside", group=CONTROLS)
    iters: int = option(300, INT, "iterations (default: %(default)s)", check=_count)
    optimizer: str = option("lbfgs", STR, "lbfgs | adam | gd (default: %(default)s)",
                            choices=OPTIMIZERS, noun="optimizer")
    lr: float | None = option(  # None: the optimizer's default (minist.optim.DEFAULT_LR)
        None, FLOAT, "learning rate / initial step (default: the optimizer's)", optional=True,
        check=_positive)
    content_weight: float = option(1.0, FLOAT, "alpha (default: %(default)s)", check=_weight)
    style_weight: float = option(1e3, FLOAT, "beta (default: %(default)s)", check=_weight)
    tv_weight: float = option(0.0, FLOAT, "total-variation weight (default: %(default)s)",
                              check=_weight)
    content_layers: Sequence[str] = option(
        DEFAULT_CONTENT_LAYERS, STR, "comma-separated (default: %(default)s)", sequence=True,
        parse=_names_text)
    style_layers: Sequence[str] | str = option(  # "auto" or the names
        DEFAULT_STYLE_LAYERS, STR, "comma-separated, optionally name:weight; or 'auto': "
        "relu1_1 ... relu5_1 less those whose receptive field exceeds a fifth of the image's "
        "size -- 256 px: relu1_1-relu3_1, 512: relu1_1-relu4_1, 1024: all five (default: "
        "%(default)s)", sequence=True, words=(AUTO,), check=_style_layers,
        parse=_style_layers_text, fills="style_layer_weights")
    style_layer_weights: Sequence[float] | None = option(  # default: equal, summing to 1
        None, FLOAT, "weights of the style layers (on the command line: --style-layers "
        "name:weight,...)", sequence=True, optional=True, check=_weights, flag=None)
    pooling: str = option("max", STR, "max | avg (default: %(default)s)", choices=POOLINGS,
                          noun="pooling")
    init: Any = option(  # content | noise | style | path of an image | an image array
        "content", IMAGE, "content | noise | style | an image path (default: %(default)s)",
        words=INITS, path=True, check=_init)
    noise_ratio: float = option(  # x0 = (1 - r) init + r noise
        0.0, FLOAT, "blend of noise into the initial image, 0-1 (default: %(default)s)",
        check=_fraction)
    seed: int = option(0, INT, "random seed (default: %(default)s)", check=_count)
    device: str = option("cpu", STR, "cpu | cuda (default: %(default)s)",
                         check=_raises(resolve_device))
    normalize: bool = option(  # divide each layer's loss by its target's energy
        True, BOOL, "use the paper's raw losses (no per-layer normalisation)",
        flag="--no-normalize", negated=True)
    memory_check: bool = option(  # refuse, before it starts, a run that would not fit
        True, BOOL, "skip the check that the run fits in memory before it starts",
        flag="--no-memory-check", negated=True, in_settings=False)

    def validated(self) -> StylizeOptions:
        """A checked copy (``scales`` text parsed); one-line :class:`MinistError` naming the
        option otherwise. ``self`` is left as it is."""
        return validated(self)

    def as_metadata(self) -> dict[str, Any]:
        """JSON-ready settings, for the output PNG's metadata, the log and a sweep run's name:
        every option that shapes the result."""
        return as_metadata(self)


def schema(options_class: type | None = None) -> dict[str, Option]:
    """Every option of :class:`StylizeOptions` (or of ``options_class``, e.g.
    :class:`VideoOptions`) by name, in declaration order."""
    options_class = options_class or StylizeOptions
    out = {}
    for f in fields(options_class):
        declared = f.metadata.get(_OPTION)
        if declared is None:
            raise TypeError(f"{options_class.__name__}.{f.name}: declare it with "
                            "minist.options.option()")
        default = f.default if f.default is not MISSING else f.default_factory()
        out[f.name] = declared._replace(name=f.name, default=default)
    return out


OPTION_NAMES = tuple(f.name for f in fields(StylizeOptions))


# ---------------------------------------------------------------------------------------------
# A clip's options (minist video): every per-frame option above, and these
# ---------------------------------------------------------------------------------------------

VIDEO = "video (Ruder, Dosovitskiy & Brox 2016, Artistic style transfer for videos)"
INIT_FRAMES = ("prev-warped", "prev", "content", "noise")
FLOW_METHODS = ("deepflow", "dis", "farneback")  # optical flows, minist.video.flow
# gamma, measured (README, "Video"; vtest.avi frames 100-104 at 256 px, real VGG-16): 1e3 cuts
# the temporal error to 0.003x that of independent frames and 0.03x that of the warped start
# alone, with each frame's style loss at most the independent frame's; 1e4 pins each frame to
# the warped previous one (0.0002x) and its style loss stays at the first frame's (1.04x). The
# losses here are normalised, so a weight from Ruder et al.'s code does not carry over.
DEFAULT_TEMPORAL_WEIGHT = 1e3


def _frames_text(text: str) -> tuple[int, int]:
    """``"3:10"`` -> ``(3, 10)`` (1-based, inclusive)."""
    first, colon, last = text.partition(":")
    try:
        if not colon:
            raise ValueError
        return int(first), int(last)
    except ValueError:
        raise ValueError(f"expected A:B (1-based, inclusive), got {text!r}") from None


def _frame_range(value):
    if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                  for v in value):
        return f"expected two frame numbers A:B, got {value!r}"
    first, last = value
    return None if 1 <= first <= last else \
        f"expected 1 <= A <= B (1-based, inclusive), got {first}:{last}"


def _offsets(values):
    return None if values and all(v >= 1 for v in values) else \
        f"expected whole numbers of frames >= 1, got {list(values)}"


@dataclass(frozen=True)
class VideoOptions(StylizeOptions):
    """Every setting of a ``minist video`` run: those of :class:`StylizeOptions`, each per frame
    (``iters`` counts per frame, ``init`` is the first frame's start), and the clip's own.
    ``CLI_HELP``: the help of a per-frame option where a clip reads it otherwise."""

    CLI_HELP: ClassVar[dict[str, str]] = {
        "iters": "iterations per frame (default: %(default)s)",
        "init": "the first frame's start: content | noise | style | an image path (default: "
                "%(default)s); the other frames': --init-frames",
        "content_masks": "spatial control: one grayscale mask per STYLE, drawn on the frames "
                         "(one set for the whole clip; white: this style here)",
        "original_colors": "keep the frames' colours: 'luminance' transfers the style to the "
                           "luminance only (YIQ) and keeps each frame's I, Q; 'histogram' "
                           "matches each painting's colours to each frame's before its "
                           "transfer (default: off)",
    }

    temporal_weight: float = option(  # gamma of the temporal term (minist.problem)
        DEFAULT_TEMPORAL_WEIGHT, FLOAT, "gamma, the weight of the temporal loss that ties each "
        "frame to the previous results warped along the optical flow; 0: none (default: "
        "%(default)s)", check=_weight, group=VIDEO)
    init_frames: str = option(
        "prev-warped", STR, "where frames after the first start: the previous result warped "
        "along the flow (the frame's content where the flow is unreliable), the previous result, "
        "the frame's content, or noise (default: %(default)s)", choices=INIT_FRAMES,
        noun="start", metavar="|".join(INIT_FRAMES), group=VIDEO)
    flow: str | None = option(  # None: minist.video.flow.default_method()
        None, STR, "optical flow method (default: deepflow where opencv-contrib has it, else "
        "dis)", optional=True, choices=FLOW_METHODS, noun="flow method",
        metavar="|".join(FLOW_METHODS), group=VIDEO)
    long_term: Sequence[int] = option(  # the frames t - j that constrain frame t
        (1,), INT, "the frames t-j whose results constrain frame t, each where no nearer one "
        "does (default: %(default)s, short-term only)", sequence=True,
        parse=_numbers_text(int), check=_offsets, normalise=lambda v: tuple(sorted(set(v))),
        metavar="J1,J2,...", group=VIDEO)
    frames: Sequence[int] | None = option(  # (A, B), 1-based, inclusive
        None, INT, "the frames A:B of the input, 1-based and inclusive (default: all); the "
        "output is numbered from 1", sequence=True, optional=True, parse=_frames_text,
        check=_frame_range, normalise=lambda v: None if v is None else tuple(v),
        metavar="A:B", group=VIDEO)
    fps: float | None = option(
        None, FLOAT, "frame rate of a video output (default: the input's; 24 for frames)",
        optional=True, check=_positive, group=VIDEO, in_settings=False)
    keep_audio: bool = option(
        False, BOOL, "copy the input's sound, cut to --frames (video output only)",
        group=VIDEO, in_settings=False)
    passes: int = option(  # multi-pass (Ruder et al. section 3.4), alternating direction
        1, INT, "passes over the clip, alternating direction (pass 2 backwards, ...); each "
        "frame of a later pass starts from its last result blended with its neighbour's, "
        "warped (default: %(default)s)", check=_positive_integer, metavar="N", group=VIDEO)
    blend_weight: float = option(  # delta of minist.temporal.blend_neighbour, Eq. (M)
        1.0, FLOAT, "delta, the weight of the warped neighbour in a later pass's start, "
        "between 0 and 1 (default: %(default)s)", check=_fraction, metavar="DELTA",
        group=VIDEO)
    workers: int | None = option(  # the flows' processes: they do not change results
        None, INT, "local processes computing the optical flows (default: one per usable "
        "core)", optional=True, check=_positive_integer, metavar="N", group=VIDEO,
        in_settings=False)
    scheduler: str | None = option(
        None, STR, "address of a running Dask scheduler whose workers compute the optical "
        "flows (the sweep extra; default: local processes)", optional=True,
        metavar="ADDRESS", group=VIDEO, in_settings=False)


def _check_video(o: VideoOptions) -> None:
    """What depends on several of a clip's options."""
    _need(o.workers is None or o.scheduler is None, "--workers",
          "only for local processes, not with --scheduler (the cluster has its own workers)")


# ---------------------------------------------------------------------------------------------
# The API's validation
# ---------------------------------------------------------------------------------------------


def _need(ok: bool, label: str, problem: str) -> None:
    if not ok:
        raise MinistError(f"{label}: {problem}")


def check_value(opt: Option, value) -> None:
    """One option's value on its own: its type, its choices, its check."""
    _need(opt.fits(value), opt.label, f"{opt.expected()}, got {value!r}")
    if value is None:
        return
    _need(not opt.choices or value in opt.choices, opt.label,
          f"unknown {opt.noun} {value!r}; choose one of {', '.join(opt.choices)}")
    if opt.check is not None:
        problem = opt.check(value)
        _need(problem is None, opt.label, str(problem))


def _check_together(o: StylizeOptions) -> None:
    """What depends on several options."""
    _need(o.content_weight > 0 or o.style_weight > 0, "--style-weight",
          "content and style weights are both 0: nothing to optimise")
    _need(len(o.style_layers) > 0 or o.style_weight == 0, "--style-layers", "no layers given")
    _need(len(o.content_layers) > 0 or o.content_weight == 0, "--content-layers",
          "no layers given")
    if o.style_layer_weights is not None:
        _need(not is_auto(o.style_layers), "--style-layer-weights",
              f"need the layers named (--style-layers), not {AUTO!r}")
        _need(len(o.style_layer_weights) == len(o.style_layers), "--style-layer-weights",
              f"{len(o.style_layer_weights)} weights for {len(o.style_layers)} layers")
    _need(o.style_masks is None or o.content_masks is not None, "--style-masks",
          "needs --content-masks (which region of the photo each style paints)")
    _need(o.content_masks is None or o.style_blend is None, "--style-blend",
          "does not apply with --content-masks: each style paints its own region")
    schedule(o.size, o.iters, o.scales, o.scale_iters)  # one line if bad


def validated(options: StylizeOptions) -> StylizeOptions:
    """``options`` checked, as a new object (:meth:`StylizeOptions.validated`)."""
    changes = {}
    for name, opt in schema(type(options)).items():
        value = getattr(options, name)
        check_value(opt, value)
        if opt.normalise is not None:
            changes[name] = opt.normalise(value)
    checked = replace(options, **changes)
    _check_together(checked)
    if isinstance(checked, VideoOptions):
        _check_video(checked)
    return checked


def as_metadata(options: StylizeOptions) -> dict[str, Any]:
    """JSON-ready settings (:meth:`StylizeOptions.as_metadata`)."""
    options_schema = schema(type(options))
    out = {name: value for name, value in asdict(options).items()
           if options_schema[name].in_settings}
    out["weights"] = str(options.weights)
    out["init"] = str(options.init) if is_source(options.init) else "array"
    out["content_layers"] = list(options.content_layers)
    out["style_layers"] = AUTO if is_auto(options.style_layers) else list(options.style_layers)
    for name in ("style_blend", "scale_iters", "style_layer_weights"):
        if getattr(options, name) is not None:
            out[name] = list(getattr(options, name))
    for name in ("content_masks", "style_masks"):
        if getattr(options, name) is not None:
            out[name] = [None if m is None else str(m) if is_source(m) else "array"
                         for m in getattr(options, name)]
    if options.scales is not None and options.scales != "auto":
        out["scales"] = list(options.scales)
    for name in ("long_term", "frames"):
        if getattr(options, name, None) is not None:
            out[name] = list(getattr(options, name))
    return out


# ---------------------------------------------------------------------------------------------
# The command line
# ---------------------------------------------------------------------------------------------


def add_arguments(parser, group: str = MAIN, options_class: type | None = None) -> None:
    """The options of ``group`` as arguments of ``parser`` (an argparse parser or group), in
    declaration order: ``--style-scale`` for ``style_scale``, the default as text.
    ``options_class``: :class:`StylizeOptions` (default) or :class:`VideoOptions`."""
    helps = getattr(options_class, "CLI_HELP", {})
    for name, opt in schema(options_class).items():
        if opt.group != group or opt.cli_flag is None:
            continue
        opt = opt._replace(help=helps.get(name, opt.help))
        if opt.negated:
            parser.add_argument(opt.cli_flag, dest=name, action="store_false", help=opt.help)
            continue
        if opt.kind is BOOL:  # a switch that turns a False default on (--keep-audio)
            parser.add_argument(opt.cli_flag, dest=name, action="store_true", help=opt.help)
            continue
        extra = {"metavar": opt.metavar} if opt.metavar else {}
        parser.add_argument(opt.cli_flag, dest=name, default=_text(opt.default),
                            help=opt.help, **extra)


def from_arguments(args, options_class: type | None = None) -> StylizeOptions:
    """The parsed command line as validated :class:`StylizeOptions` (or ``options_class``):
    each option's text through its parser (``--style-layers`` fills ``style_layer_weights``
    too)."""
    options_class = options_class or StylizeOptions
    values = {}
    for name, opt in schema(options_class).items():
        if opt.cli_flag is None or not hasattr(args, name):
            continue
        value = getattr(args, name)
        if isinstance(value, str) and not opt.negated:
            try:
                value = (opt.parse or opt.kind.from_text)(value)
            except ValueError as exc:
                raise MinistError(f"{opt.cli_flag}: {exc}") from None
        if opt.fills:
            value, values[opt.fills] = value
        values[name] = value
    return options_class(**values).validated()


# ---------------------------------------------------------------------------------------------
# What a saved image says about its run
# ---------------------------------------------------------------------------------------------


def png_metadata(settings: Mapping[str, Any], content: str, style: str, *,
                 style_layers: bool = True, extra: Mapping[str, str] | None = None
                 ) -> Callable[[Any, str], dict[str, str]]:
    """The text metadata of a run's PNG, as a function ``(run, status) -> {key: text}`` for
    :class:`~minist.observers.SaveResult` and :class:`~minist.observers.Snapshots`.

    ``settings``: the JSON-ready settings (:meth:`StylizeOptions.as_metadata`, or a sweep run's);
    ``content``, ``style``: the images as the metadata names them; ``style_layers``: also the
    layers of the run's current size (``minist:style-layers``); ``extra``: keys added last.
    """
    from minist import __version__

    settings_text = json.dumps(settings)

    def metadata(run, status: str) -> dict[str, str]:
        last = run.history[-1]._asdict() if run.history else {}
        out = {"Software": f"minist {__version__}", "minist:settings": settings_text,
               "minist:content": content, "minist:style": style}
        if style_layers:
            out["minist:style-layers"] = json.dumps(list(run.style_layers_at(run.size)))
        out["minist:status"] = f"{status} after {run.iteration} iterations"
        out["minist:last-losses"] = json.dumps(last)
        out.update(extra or {})
        return out

    return metadata
