"""``minist video INPUT STYLE [STYLE ...] -o OUT``: a clip painted frame by frame, stable in time
(Ruder, Dosovitskiy & Brox 2016).

The options are those of ``minist stylize`` (per frame: ``--iters`` counts per frame, ``--init``
is the first frame's start) and the clip's own, all declared once in
:class:`minist.options.VideoOptions`. The frame loop is :mod:`minist.video.run`; it needs the
``video`` extra (PyAV, OpenCV), imported only when the command runs, so that ``minist --help``
works without it and ``minist video`` without it is one line. Every check runs before any work;
a rerun resumes after the last frame written; Ctrl-C keeps the frames done and exits 130.
"""

from __future__ import annotations

import sys

EXIT_INTERRUPTED = 130


def register(subparsers) -> None:
    from minist.options import CONTROLS, VIDEO, VideoOptions, add_arguments

    p = subparsers.add_parser(
        "video",
        help="paint a clip frame by frame in the style of STYLE, stable in time",
        description="Artistic style transfer for videos (Ruder, Dosovitskiy & Brox 2016): each "
        "frame starts from the previous result warped along the optical flow, and a temporal "
        "loss ties it to that result where the flow is reliable. Needs the video extra: "
        "pip install 'minist[video]'.",
    )
    p.add_argument("input", metavar="INPUT",
                   help="a video file, a folder of frames (sorted by name) or a printf pattern "
                   "(frames/%%04d.png)")
    p.add_argument("style", metavar="STYLE", nargs="+",
                   help="the painting; several: their styles blended (--style-blend)")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="a folder (a path ending in /) for frame_0001.png ..., or a video "
                   "(.mp4, .webm, .gif; its frames kept in OUT.frames/ for resuming)")
    add_arguments(p, options_class=VideoOptions)
    p.add_argument("--log", metavar="FILE",
                   help="write one JSON line per iteration to FILE (stylize's, with frame, pass "
                   "and temporal)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arguments(p.add_argument_group(VIDEO), VIDEO, VideoOptions)
    add_arguments(p.add_argument_group(CONTROLS), CONTROLS, VideoOptions)
    p.set_defaults(func=run)


def run(args) -> int:
    from minist.options import VideoOptions, from_arguments
    from minist.weights.atomic import check_writable

    options = from_arguments(args, VideoOptions)
    if args.log:
        check_writable(args.log)
    from minist.video.run import finished_frames, plan_clip, stylize_clip

    plan = plan_clip(args.input, args.style, args.output, options)
    try:
        written = stylize_clip(plan, args.style, args.output, options, log=args.log,
                               quiet=args.quiet, progress=not args.quiet)
    except KeyboardInterrupt:
        done = finished_frames(plan.folder, plan.last - plan.first + 1)
        print(f"minist: interrupted; kept the {done} frame{'s' if done != 1 else ''} done in "
              f"{plan.folder} (run the same command again to resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.quiet:
        print(f"wrote {written}", file=sys.stderr)
    return 0


__all__ = ["register", "run"]
