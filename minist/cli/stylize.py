"""``minist stylize CONTENT STYLE -o OUT``: paint a photo in a painting's style.

Long options carry the names of :class:`minist.options.StylizeOptions` and come from its
declarations. The run shows a progress
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


def register(subparsers) -> None:
    from minist.options import CONTROLS, add_arguments

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
    add_arguments(p)  # the options of the run (minist.options), then how the run is shown
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
    # The controls of Gatys et al. (2017): several styles, coarse-to-fine, colour, space.
    add_arguments(p.add_argument_group(CONTROLS), CONTROLS)
    p.set_defaults(func=run)


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
    from minist.images import SUPPORTED_EXTENSIONS
    from minist.layer_choice import is_auto
    from minist.loop import NonFiniteLossError
    from minist.observers import JsonLog, ProgressBar, SaveResult, Snapshots
    from minist.options import from_arguments, png_metadata
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
    options = from_arguments(args)
    preview = _preview(args, options)
    try:
        transfer = StyleTransfer(args.content, args.style, options, progress=not args.quiet)
    except BaseException:
        if preview is not None:
            preview.close()
        raise

    metadata = png_metadata(
        options.as_metadata(), str(args.content),
        str(args.style[0]) if len(args.style) == 1 else json.dumps([str(s) for s in args.style]))

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
