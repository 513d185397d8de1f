"""``minist weights convert | fetch | info``: VGG weights into minist's layout, and a look inside.

    minist weights convert SRC -o OUT [--format auto|torchvision|keras|npz] [--arch vgg16|vgg19]
    minist weights fetch {vgg16,vgg19} [--source keras|torchvision] [-o OUT] [--keep-download]
    minist weights info FILE
"""

from __future__ import annotations

from pathlib import Path

from minist.architectures import ARCHITECTURES


def _convert(args) -> int:
    from minist.weights.atomic import check_writable
    from minist.weights.convert import convert_weights
    from minist.weights.info import summary_line

    check_writable(args.output)
    out = convert_weights(args.src, args.output, fmt=args.format, arch=args.arch)
    print(summary_line(out))
    return 0


def _fetch(args) -> int:
    from minist.weights.fetch import fetch_weights
    from minist.weights.info import summary_line

    dest_dir = Path(args.output).parent if args.output else Path("weights")
    out = fetch_weights(
        args.arch,
        source=args.source,
        dest_dir=dest_dir,
        out=args.output,
        keep_download=args.keep_download,
    )
    print(summary_line(out))
    return 0


def _info(args) -> int:
    from minist.weights.info import weights_info

    print(weights_info(args.file))
    return 0


def register(subparsers) -> None:
    """Add ``weights`` and its actions to the ``minist`` command line."""
    from minist.weights.convert import FORMATS
    from minist.weights.fetch import SOURCE_NAMES

    parser = subparsers.add_parser(
        "weights",
        help="convert, download or inspect VGG weight files",
        description="Get VGG weights into minist's HDF5 layout and inspect them.",
    )
    actions = parser.add_subparsers(dest="weights_command", metavar="ACTION")
    actions.required = True

    convert = actions.add_parser(
        "convert",
        help="convert torchvision (.pth), Keras (.h5) or NumPy (.npz) weights",
        description="Convert a torchvision checkpoint, a Keras applications VGG file or a NumPy "
        "archive into minist's HDF5 layout.",
    )
    convert.add_argument("src", metavar="SRC", help="the weight file to convert")
    convert.add_argument("-o", "--output", required=True, metavar="OUT",
                         help="the .h5 file to write")
    convert.add_argument("--format", choices=FORMATS, default="auto",
                         help="format of SRC (default: recognise it from its contents)")
    convert.add_argument("--arch", choices=ARCHITECTURES, default=None,
                         help="the network; required for a partial .npz, checked otherwise")
    convert.set_defaults(func=_convert)

    fetch = actions.add_parser(
        "fetch",
        help="download official weights, verify their checksum, convert them",
        description="Download official VGG weights, verify the published checksum and convert "
        "them into minist's layout (default weights/<arch>.h5).",
    )
    fetch.add_argument("arch", choices=ARCHITECTURES, help="which network")
    fetch.add_argument("--source", choices=SOURCE_NAMES, default="keras",
                       help="keras: the original VGG weights, Caffe preprocessing (default); "
                       "torchvision: PyTorch's weights, torchvision preprocessing")
    fetch.add_argument("-o", "--output", default=None, metavar="OUT",
                       help="the .h5 file to write (default weights/<arch>.h5)")
    fetch.add_argument("--keep-download", action="store_true",
                       help="keep the downloaded original file beside OUT")
    fetch.set_defaults(func=_fetch)

    info = actions.add_parser("info", help="describe a minist weight file",
                              description="Describe a minist weight file: architecture, "
                              "preprocessing, source, licence, layers, size, checksum.")
    info.add_argument("file", metavar="FILE", help="a minist .h5 weight file")
    info.set_defaults(func=_info)
