"""minist's HDF5 weight layout: writing, loading and validating it (see ``weights/README.md``).

Layout (format version 1)::

    /                       file attributes:
        minist_format       "vgg-weights"
        format_version      1
        architecture        "vgg16" | "vgg19"
        source              where the numbers came from (file name, URL)
        license             the licence of the weights
        channel_order       "RGB" | "BGR"   (order of the network's input channels)
        pixel_scale         1.0 | 255.0     (pixels in [0, 1] or [0, 255])
        mean                float64 (3,)    subtracted after scaling, network channel order
        std                 float64 (3,)    divided after subtracting
        block_channels      int64 (5,)      optional; widths of the five blocks, default
                                            (64, 128, 256, 512, 512). Only the tiny random
                                            networks of the tests use other widths.
    /conv1_1/weight         float32 (out, in, kh, kw)
    /conv1_1/bias           float32 (out,)
    ...                     one group per conv layer, conv1_1 ... conv5_3 (VGG-16) / conv5_4

A file may hold only the first convolutions (``conv1_1`` up to some layer, in order): such a
partial network can compute the layers up to its last convolution and no further.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from minist.architectures import ARCHITECTURES, BLOCK_CHANNELS, conv_shapes
from minist.errors import MinistError
from minist.preprocessing import CHANNEL_ORDERS, Preprocessing
from minist.weights.atomic import atomic_path

FORMAT_NAME = "vgg-weights"
FORMAT_VERSION = 1


class VGGWeights(NamedTuple):
    """The contents of a weight file, as NumPy float32 arrays."""

    architecture: str
    params: dict  # conv name -> (weight (out, in, kh, kw), bias (out,)), in network order
    preprocessing: Preprocessing
    source: str
    license: str
    block_channels: tuple[int, ...] = BLOCK_CHANNELS

    @property
    def parameter_count(self) -> int:
        return int(sum(w.size + b.size for w, b in self.params.values()))

    @property
    def is_complete(self) -> bool:
        return len(self.params) == len(conv_shapes(self.architecture, self.block_channels))


def validate_params(
    architecture: str, params: dict, where: str, block_channels: tuple[int, ...] = BLOCK_CHANNELS
) -> None:
    """Check names, order, shapes and dtypes of ``params`` against the architecture's table.

    ``where`` names the file (or source) in the one-line error.
    """
    if architecture not in ARCHITECTURES:
        raise MinistError(
            f"{where}: unknown architecture {architecture!r}; "
            f"expected one of {', '.join(ARCHITECTURES)}"
        )
    expected = conv_shapes(architecture, block_channels)
    names = list(expected)
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise MinistError(f"{where}: unexpected layer {unknown[0]!r} for {architecture}")
    if not params:
        raise MinistError(f"{where}: holds no convolution layers")
    present = [n for n in names if n in params]
    prefix = names[: len(present)]
    if present != prefix:
        missing = next(n for n in prefix if n not in params)
        raise MinistError(
            f"{where}: layer {missing!r} is missing (layers must start at conv1_1 with no gaps)"
        )
    for name in present:
        w, b = params[name]
        w_shape, b_shape = expected[name]
        for what, arr, shape in (("weight", w, w_shape), ("bias", b, b_shape)):
            if tuple(arr.shape) != shape:
                raise MinistError(
                    f"{where}: {name}/{what} has shape {tuple(arr.shape)}, "
                    f"expected {shape} for {architecture}"
                )
            if arr.dtype != np.float32:
                raise MinistError(f"{where}: {name}/{what} has dtype {arr.dtype}, expected float32")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise MinistError(f"{where}: {name} holds NaN or infinite values")


def save_weights(
    path: str | os.PathLike,
    architecture: str,
    params: dict,
    preprocessing: Preprocessing,
    source: str,
    license: str,
    block_channels: tuple[int, ...] = BLOCK_CHANNELS,
) -> Path:
    """Write ``params`` in minist's layout to ``path`` (atomically: never a partial file)."""
    import h5py

    params = {
        name: (np.ascontiguousarray(w, dtype=np.float32), np.ascontiguousarray(b, dtype=np.float32))
        for name, (w, b) in params.items()
    }
    validate_params(architecture, params, str(path), block_channels)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["minist_format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["architecture"] = architecture
        f.attrs["source"] = source
        f.attrs["license"] = license
        f.attrs["channel_order"] = preprocessing.channel_order
        f.attrs["pixel_scale"] = float(preprocessing.pixel_scale)
        f.attrs["mean"] = np.asarray(preprocessing.mean, dtype=np.float64)
        f.attrs["std"] = np.asarray(preprocessing.std, dtype=np.float64)
        if tuple(block_channels) != BLOCK_CHANNELS:
            f.attrs["block_channels"] = np.asarray(block_channels, dtype=np.int64)
        for name, (w, b) in params.items():
            group = f.create_group(name)
            group.create_dataset("weight", data=w)
            group.create_dataset("bias", data=b)
    return Path(path)


def _attr(f, name: str, where: str):
    if name not in f.attrs:
        raise MinistError(f"{where}: missing file attribute {name!r} (not a minist weight file?)")
    value = f.attrs[name]
    return value.decode() if isinstance(value, bytes) else value


def _read_preprocessing(f, where: str) -> Preprocessing:
    order = str(_attr(f, "channel_order", where))
    if order not in CHANNEL_ORDERS:
        raise MinistError(f"{where}: channel_order is {order!r}, expected RGB or BGR")
    scale = float(_attr(f, "pixel_scale", where))
    mean = np.asarray(_attr(f, "mean", where), dtype=np.float64)
    std = np.asarray(_attr(f, "std", where), dtype=np.float64)
    for what, arr in (("mean", mean), ("std", std)):
        if arr.shape != (3,):
            raise MinistError(f"{where}: attribute {what} has shape {arr.shape}, expected (3,)")
    if not scale > 0 or not (std > 0).all():
        raise MinistError(f"{where}: pixel_scale and std must be positive")
    return Preprocessing(order, scale, tuple(map(float, mean)), tuple(map(float, std)))


def load_weights(path: str | os.PathLike) -> VGGWeights:
    """Read and validate a minist HDF5 weight file; say exactly what is wrong with a bad one."""
    import h5py

    where = str(path)
    if not Path(path).exists():
        raise MinistError(f"{where}: no such file")
    if Path(path).is_dir():
        raise MinistError(f"{where}: is a directory, expected an HDF5 weight file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise MinistError(f"{where}: not a readable HDF5 file ({exc})") from None
    with f:
        fmt = _attr(f, "minist_format", where)
        if fmt != FORMAT_NAME:
            raise MinistError(f"{where}: minist_format is {fmt!r}, expected {FORMAT_NAME!r}")
        version = int(_attr(f, "format_version", where))
        if version != FORMAT_VERSION:
            raise MinistError(
                f"{where}: format_version {version} is not supported "
                f"(this minist reads {FORMAT_VERSION})"
            )
        architecture = str(_attr(f, "architecture", where))
        if architecture not in ARCHITECTURES:
            raise MinistError(
                f"{where}: unknown architecture {architecture!r}; "
                f"expected one of {', '.join(ARCHITECTURES)}"
            )
        preprocessing = _read_preprocessing(f, where)
        block_channels = BLOCK_CHANNELS
        if "block_channels" in f.attrs:
            widths = np.asarray(f.attrs["block_channels"])
            if widths.shape != (5,) or not (widths > 0).all():
                raise MinistError(f"{where}: block_channels must be 5 positive widths")
            block_channels = tuple(int(c) for c in widths)
        params = {}
        for name in f:
            group = f[name]
            if not isinstance(group, h5py.Group):
                raise MinistError(f"{where}: unexpected dataset {name!r} at the top level")
            for key in ("weight", "bias"):
                if key not in group:
                    raise MinistError(f"{where}: layer {name!r} has no {key!r} dataset")
            params[name] = (group["weight"][()], group["bias"][()])
        order = list(conv_shapes(architecture, block_channels))
        params = dict(
            sorted(params.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else -1)
        )
        validate_params(architecture, params, where, block_channels)
        return VGGWeights(
            architecture=architecture,
            params=params,
            preprocessing=preprocessing,
            source=str(_attr(f, "source", where)),
            license=str(_attr(f, "license", where)),
            block_channels=block_channels,
        )


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
