"""The ``minist`` command line: one sub-command module per job, one place that reports errors.

Each module in this package defines ``register(subparsers)``, which adds its sub-command and
sets ``func`` (called with the parsed arguments, returning an exit status). Errors a user can
cause arrive here as :class:`~minist.errors.MinistError` and are printed as one line on stderr
with exit status 2 -- never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from minist import __version__
from minist.errors import MinistError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from minist.cli import bench, stylize, sweep, video, weights

    parser = argparse.ArgumentParser(
        prog="minist",
        description="Neural style transfer from scratch (Gatys et al. 2015) on NumPy/CuPy.",
    )
    parser.add_argument("--version", action="version", version=f"minist {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in (stylize, video, sweep, weights, bench):
        module.register(subparsers)
    return parser


def error(message: str) -> int:
    print(f"minist: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MinistError as exc:
        return error(str(exc))
    except KeyboardInterrupt:
        print("minist: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
