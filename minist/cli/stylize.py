"""``minist stylize CONTENT STYLE -o OUT``: paint a photo in a painting's style.

Long options carry the names of :class:`minist.stylize.StylizeOptions`. The run shows a progress
bar (iteration, losses, it/s, ETA), can save intermediate images (``--save-every N``) and write a
JSON line per iteration (``--log FILE``: ``iter, content, style, tv, total, seconds``). The output
PNG carries the settings in its metadata. Everything that can be checked is checked before any
work starts; Ctrl-C saves the current image and exits 130; a loss that turns NaN/Inf keeps the
last finite image and exits 2. The bar, the log, the snapshots and the final save are observers
of the run loop that the Python API runs too (:mod:`minist.loop`, :mod:`minist.observers`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from minist.errors import MinistError

EXIT_NONFINITE = 2
EXIT_INTERRUPTED = 130


def _layer_list(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _style_layers(text: str) -> tuple[list[str], list[float] | None]:
    """``relu1_1,relu2_1`` or ``relu1_1:0.5,relu2_1:0.5`` -> (names, weights or None);
    ``auto`` -> (``"auto"``, None): the layers chosen by the image size (minist.layer_choice)."""
    from minist.layer_choice import AUTO

    if text.strip() == AUTO:
        return AUTO, None
    names, weights = [], []
    for item in _layer_list(text):
        name, _, weight = item.partition(":")
        names.append(name.strip())
        if weight:
            try:
                weights.append(float(weight))
            except ValueError:
                raise MinistError(
                    f"--style-layers: {weight!r} is not a number (in {item!r})"
                ) from None
    if weights and len(weights) != len(names):
        raise MinistError("--style-layers: give a weight for every layer (name:weight) or for none")
    return names, (weights or None)


def register(subparsers) -> None:
    from minist.stylize import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, StylizeOptions

    d = StylizeOptions()
    p = subparsers.add_parser(
        "stylize",
        help="paint CONTENT in the style of STYLE (or of several blended)",
        description="Neural style transfer (Gatys et al. 2015): optimise an image so that its "
        "VGG features match CONTENT's and its Gram matrices match STYLE's.",
    )
    p.add_argument("content", metavar="CONTENT", help="the photo (JPEG, PNG, WebP, TIFF, BMP)")
    p.add_argument("style", metavar="STYLE", nargs="+",
                   help="the painting; several: their styles blended (--style-blend)")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output image (.png)")
    p.add_argument(
        "--weights",
        default=str(d.weights),
        help="minist HDF5 weights (default: %(default)s; fetched if missing)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=d.size,
        help="longest side of the output in px (default: %(default)s)",
    )
    p.add_argument(
        "--style-scale",
        type=float,
        default=d.style_scale,
        help="style image size relative to --size (default: %(default)s)",
    )
    p.add_argument("--iters", type=int, default=d.iters, help="iterations (default: %(default)s)")
    p.add_argument(
        "--optimizer", default=d.optimizer, help="lbfgs | adam | gd (default: %(default)s)"
    )
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate / initial step (default: the optimizer's)",
    )
    p.add_argument(
        "--content-weight",
        type=float,
        default=d.content_weight,
        help="alpha (default: %(default)s)",
    )
    p.add_argument(
        "--style-weight", type=float, default=d.style_weight, help="beta (default: %(default)s)"
    )
    p.add_argument(
        "--tv-weight",
        type=float,
        default=d.tv_weight,
        help="total-variation weight (default: %(default)s)",
    )
    p.add_argument(
        "--content-layers",
        default=",".join(DEFAULT_CONTENT_LAYERS),
        help="comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--style-layers",
        default=DEFAULT_STYLE_LAYERS,
        help="comma-separated, optionally name:weight; or 'auto': relu1_1 ... relu5_1 less "
        "those whose receptive field exceeds a fifth of the image's size -- 256 px: "
        "relu1_1-relu3_1, 512: relu1_1-relu4_1, 1024: all five (default: %(default)s)",
    )
    p.add_argument("--pooling", default=d.pooling, help="max | avg (default: %(default)s)")
    p.add_argument(
        "--init",
        default=d.init,
        help="content | noise | style | an image path (default: %(default)s)",
    )
    p.add_argument(
        "--noise-ratio",
        type=float,
        default=d.noise_ratio,
        help="blend of noise into the initial image, 0-1 (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help="random seed (default: %(default)s)")
    p.add_argument("--device", default=d.device, help="cpu | cuda (default: %(default)s)")
    p.add_argument(
        "--no-normalize",
        action="store_true",
        help="use the paper's raw losses (no per-layer normalisation)",
    )
    p.add_argument(
        "--save-every",
        type=int,
        default=0,
        metavar="N",
        help="save an intermediate image every N iterations",
    )
    p.add_argument("--log", metavar="FILE", help="write one JSON line per iteration to FILE")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    # --- live preview (minist.preview) ---
    p.add_argument(
        "--preview",
        nargs="?",
        const=0,
        type=int,
        metavar="PORT",
        help="serve a live view of the run (image, loss curves, speed, settings) at "
        "http://127.0.0.1:PORT/; without PORT a free port is chosen; the URL is printed",
    )
    p.add_argument(
        "--preview-host",
        metavar="HOST",
        help="address the preview listens on (default 127.0.0.1, this machine only; another "
        "address shows the run to the network, with a warning)",
    )
    _register_controls(p)
    p.set_defaults(func=run)


def _register_controls(p) -> None:
    """The controls of Gatys et al. (2017): several styles, coarse-to-fine, colour, space."""
    g = p.add_argument_group("controls (Gatys et al. 2017, Controlling Perceptual Factors)")
    g.add_argument("--style-blend", metavar="W1,W2,...",
                   help="weights of several STYLE images, >= 0, normalised to sum 1 "
                   "(default: equal): their Gram matrices are blended")
    g.add_argument("--scales", metavar="auto|S1,S2,...",
                   help="coarse-to-fine: 'auto' (sizes spaced by sqrt(2) from 256 px up to "
                   "--size) or sizes in px ending at --size; each scale starts from the last, "
                   "upsampled (Lanczos), plus the photo's finer detail (--scale-detail)")
    g.add_argument("--scale-iters", metavar="N1,N2,...",
                   help="iterations at each scale before the last (default: --iters each); "
                   "--iters is the last scale's")
    g.add_argument("--scale-detail", default="init", metavar="init|none",
                   help="what a finer scale adds to the upsampled result: the detail of the "
                   "start image (--init, the photo by default) that the coarser size could not "
                   "hold ('init'), or nothing ('none') (default: %(default)s)")
    g.add_argument("--original-colors", metavar="luminance|histogram",
                   help="keep the photo's colours: 'luminance' transfers the style to the "
                   "luminance only (YIQ) and keeps the photo's I, Q; 'histogram' matches each "
                   "painting's colours to the photo's before the transfer (default: off)")
    g.add_argument("--color-transform", default="pca", metavar="pca|cholesky|sym",
                   help="the colour map of --original-colors histogram (default: %(default)s)")
    g.add_argument("--content-masks", metavar="M1.png,M2.png,...",
                   help="spatial control: one grayscale mask per STYLE, drawn on CONTENT "
                   "(white: this style here)")
    g.add_argument("--style-masks", metavar="S1.png,S2.png,...",
                   help="the part of each STYLE image to take its statistics from (default: "
                   "all of it; leave an entry empty for all of that one)")
    g.add_argument("--mask-mode", default="simple", metavar="simple|inside",
                   help="masks at the layers: resized ('simple'), or only the units whose "
                   "receptive field lies inside the region ('inside') (default: %(default)s)")


def _paths(text: str | None) -> list | None:
    """``"a.png,,b.png"`` -> ``["a.png", None, "b.png"]`` (None stays None)."""
    if text is None:
        return None
    return [part.strip() or None for part in text.split(",")]


def _numbers(text: str | None, option: str, cast=float) -> list | None:
    """``"1,0.5"`` -> ``[1.0, 0.5]`` (None stays None); one line naming the option if bad."""
    if text is None:
        return None
    try:
        return [cast(part) for part in text.split(",") if part.strip()]
    except ValueError:
        kind = "integers" if cast is int else "numbers"
        raise MinistError(f"{option}: expected {kind} separated by commas, got {text!r}") from None


def _options(args):
    """The parsed arguments as validated :class:`StylizeOptions` (long options = field names)."""
    from minist.stylize import OPTION_NAMES, StylizeOptions

    style_layers, style_weights = _style_layers(args.style_layers)
    values = {name: getattr(args, name) for name in OPTION_NAMES if hasattr(args, name)}
    values.update(
        content_layers=_layer_list(args.content_layers),
        style_layers=style_layers,
        style_layer_weights=style_weights,
        normalize=not args.no_normalize,
        style_blend=_numbers(args.style_blend, "--style-blend"),
        scale_iters=_numbers(args.scale_iters, "--scale-iters", int),
        content_masks=_paths(args.content_masks),
        style_masks=_paths(args.style_masks),
    )
    return StylizeOptions(**values).validated()


def _preview(args, options):
    """``--preview [PORT]``: the live page's observer, listening from now on (before the
    network loads), its URL on stderr (also with ``--quiet``); None without the option."""
    if args.preview is None:
        if args.preview_host is not None:
            raise MinistError("--preview-host: give --preview [PORT] too")
        return None
    from minist.preview import DEFAULT_HOST, PreviewObserver, warn_if_exposed

    host = args.preview_host or DEFAULT_HOST
    observer = PreviewObserver(args.preview, host)  # its total: the run's, when it starts
    warn_if_exposed(host)
    print(f"minist: live preview at {observer.url}", file=sys.stderr)
    observer.start()
    return observer


def run(args) -> int:
    from minist import __version__
    from minist.images import SUPPORTED_EXTENSIONS
    from minist.layer_choice import is_auto
    from minist.loop import NonFiniteLossError
    from minist.observers import JsonLog, ProgressBar, SaveResult, Snapshots
    from minist.stylize import StyleTransfer
    from minist.weights.atomic import check_writable

    output = Path(args.output)
    if output.suffix and output.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise MinistError(f"-o {output}: unsupported image type {output.suffix!r}; use .png")
    check_writable(output)  # before any work
    if args.save_every < 0:
        raise MinistError(f"--save-every: must be >= 0, got {args.save_every}")
    if args.log:
        check_writable(args.log)
    for option, path in [("CONTENT", args.content)] + [("STYLE", s) for s in args.style]:
        if not Path(path).exists():
            raise MinistError(f"{path}: no such file ({option})")
    options = _options(args)
    preview = _preview(args, options)
    try:
        transfer = StyleTransfer(args.content, args.style, options, progress=not args.quiet)
    except BaseException:
        if preview is not None:
            preview.close()
        raise

    def metadata(run, status: str) -> dict[str, str]:
        last = run.history[-1]._asdict() if run.history else {}
        return {
            "Software": f"minist {__version__}",
            "minist:settings": json.dumps(options.as_metadata()),
            "minist:content": str(args.content),
            "minist:style": (str(args.style[0]) if len(args.style) == 1
                             else json.dumps([str(s) for s in args.style])),
            "minist:style-layers": json.dumps(list(run.style_layers_at(run.size))),
            "minist:status": f"{status} after {run.iteration} iterations",
            "minist:last-losses": json.dumps(last),
        }

    if not args.quiet and is_auto(options.style_layers):
        print("minist: style layers (auto: receptive field <= 1/5 of the size; --style-layers "
              "to choose): " + "; ".join(
                  f"{size} px: {', '.join(transfer.style_layers_at(size))}"
                  for size in dict.fromkeys(transfer.schedule.sizes)), file=sys.stderr)
    observers = [ProgressBar(transfer.schedule.total, disable=args.quiet)]
    if args.log:
        observers.append(JsonLog(args.log))
    if args.save_every:
        observers.append(Snapshots(output, args.save_every, metadata,
                                   by_scale=len(transfer.schedule.sizes) > 1))
    observers.append(SaveResult(output, metadata))  # however the run ends (minist.loop)
    if preview is not None:
        observers.append(preview)  # last: the image is saved before the page's final state
    try:
        transfer.run(observers=observers)  # every scale's iterations
    except KeyboardInterrupt:
        print(f"minist: interrupted; saved the current image to {output}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except NonFiniteLossError as exc:
        print(f"minist: error: {exc} (saved to {output})", file=sys.stderr)
        return EXIT_NONFINITE
    if not args.quiet:
        last = transfer.history[-1] if transfer.history else None
        summary = f"; final loss {last.total:.4g}" if last else ""
        print(f"wrote {output}{summary}", file=sys.stderr)
    return 0
