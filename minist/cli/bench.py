"""``minist bench``: time one style transfer iteration of VGG-19, optionally beside PyTorch.

    minist bench [--device cpu|cuda|both] [--sizes 256,512] [--repeat 5] [--warmup 2]
                 [--compare-torch] [--threads N] [--tiny]
"""

from __future__ import annotations

from minist.errors import MinistError


def _positive_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise MinistError(f"{option}: expected positive integers separated by commas, got {text!r}")
    return values


def _run(args) -> int:
    from minist.bench import run_bench

    sizes = _positive_ints(args.sizes, "--sizes")
    for option, value, low in (("--repeat", args.repeat, 1), ("--warmup", args.warmup, 0),
                               ("--threads", args.threads, 1)):
        if value is not None and value < low:
            raise MinistError(f"{option}: must be an integer >= {low}, got {value}")
    devices = ["cpu", "cuda"] if args.device == "both" else [args.device]
    run_bench(sizes, devices, repeat=args.repeat, warmup=args.warmup,
              compare_torch=args.compare_torch, tiny=args.tiny, threads=args.threads)
    return 0


def register(subparsers) -> None:
    """Add ``bench`` to the ``minist`` command line."""
    p = subparsers.add_parser(
        "bench",
        help="time one style transfer iteration (VGG-19, synthetic weights)",
        description="Time one full iteration of style transfer -- VGG-19 forward to relu5_1, "
        "content and style losses, backward to the image, Adam update -- with synthetic "
        "weights: median ms/iteration, GFLOP/s of the convolutions (forward + input gradient) "
        "and peak memory (RSS on the CPU, device memory on the GPU).",
    )
    p.add_argument("--device", choices=("cpu", "cuda", "both"), default="cpu",
                   help="where to run (default cpu)")
    p.add_argument("--sizes", default="256,512", metavar="S1,S2,...",
                   help="image sides in px, comma-separated (default 256,512)")
    p.add_argument("--repeat", type=int, default=5, help="timed iterations; the median is "
                   "reported (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed iterations first (default 2)")
    p.add_argument("--compare-torch", action="store_true",
                   help="also run the same iteration in PyTorch, in the same process, and print "
                   "the ratios (needs torch)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="threads for NumPy's BLAS, Numba and PyTorch (default: theirs)")
    p.add_argument("--tiny", action="store_true",
                   help="a narrow VGG-19 (widths 4-8) that runs in milliseconds: a smoke test")
    p.set_defaults(func=_run)
