"""Convert a weight file from torchvision, Keras or NumPy into minist's HDF5 layout.

Each source format has its own small reader returning ``(architecture, params)`` with params in
minist's orientation, (out, in, 3, 3) float32; this module only recognises the format, checks the
architecture, records where the numbers came from, their licence and the preprocessing they
expect, and writes the result atomically with :func:`minist.weights.store.save_weights`.

Recognising a file by its first bytes (never by its name alone):

    zip archive holding ``.../data.pkl``   torchvision checkpoint (``torch.save``, PyTorch >= 1.6)
    zip archive of ``.npy`` members        NumPy archive (``np.savez``)
    pickle (first byte 0x80)               torchvision checkpoint (legacy ``torch.save``)
    HDF5 with attribute ``layer_names``    Keras applications weight file
    HDF5 with attribute ``minist_format``  already minist's layout: nothing to convert
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from minist.architectures import ARCHITECTURES
from minist.errors import MinistError
from minist.preprocessing import CAFFE, TORCHVISION
from minist.weights.atomic import check_writable
from minist.weights.store import save_weights, sha256_of, validate_params

FORMATS = ("auto", "torchvision", "keras", "npz")
SUPPORTED = (
    "supported: torchvision checkpoints (.pth), Keras applications VGG files (.h5), "
    "NumPy archives (.npz) of <layer>_W / <layer>_b arrays"
)

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_PICKLE_MAGIC = b"\x80"


def detect_format(path: str | os.PathLike) -> str:
    """``"torchvision"``, ``"keras"``, ``"npz"`` or ``"minist"`` from the file's contents."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] in _ZIP_MAGIC:
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            names = []
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torchvision"
        if names and all(n.endswith(".npy") for n in names):
            return "npz"
    elif head[:1] == _PICKLE_MAGIC:
        return "torchvision"
    else:
        import h5py

        if h5py.is_hdf5(path):
            from minist.weights.from_keras import keras_weight_root

            with h5py.File(path, "r") as f:
                if "minist_format" in f.attrs:
                    return "minist"
                if keras_weight_root(f) is not None:
                    return "keras"
            raise MinistError(f"{path}: an HDF5 file but not a Keras weight file; {SUPPORTED}")
    raise MinistError(f"{path}: unrecognised weight file format; {SUPPORTED}")


def read_params(path: Path, fmt: str):
    """``(architecture or None, params, preprocessing, licence)`` read from ``path`` as ``fmt``."""
    if fmt == "torchvision":
        from minist.weights.from_torchvision import TORCHVISION_LICENSE, torchvision_params
        from minist.weights.torch_reader import read_torch_state_dict

        architecture, params = torchvision_params(read_torch_state_dict(path), str(path))
        return architecture, params, TORCHVISION, TORCHVISION_LICENSE
    if fmt == "keras":
        from minist.weights.from_keras import KERAS_LICENSE, keras_params

        architecture, params = keras_params(path)
        return architecture, params, CAFFE, KERAS_LICENSE
    if fmt == "npz":
        from minist.weights.from_npz import NPZ_LICENSE, npz_params

        architecture, params = npz_params(path)
        return architecture, params, CAFFE, NPZ_LICENSE
    raise MinistError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def convert_weights(
    src: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str = "auto",
    arch: str | None = None,
    origin: str | None = None,
) -> Path:
    """Convert ``src`` into minist's HDF5 layout at ``out`` (atomically) and return ``out``.

    ``fmt`` is ``"auto"`` (recognise the contents) or a format name; ``arch`` names the network,
    required for a partial NumPy archive and otherwise checked against what the file holds.
    ``origin`` replaces the file name in the recorded source (e.g. the URL it was fetched from).
    """
    src, out = Path(src), Path(out)
    if not src.exists():
        raise MinistError(f"{src}: no such file")
    if src.is_dir():
        raise MinistError(f"{src}: is a directory, expected a weight file")
    if fmt not in FORMATS:
        raise MinistError(f"--format: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if arch is not None and arch not in ARCHITECTURES:
        choices = ", ".join(ARCHITECTURES)
        raise MinistError(f"--arch: unknown architecture {arch!r}; choose one of {choices}")
    check_writable(out)
    if out.exists() and out.resolve() == src.resolve():
        raise MinistError(f"{out}: the output would overwrite the input file")
    if fmt == "auto":
        fmt = detect_format(src)
    if fmt == "minist":
        raise MinistError(
            f"{src}: is already a minist weight file; use it as it is (see minist weights info)"
        )
    inferred, params, preprocessing, license = read_params(src, fmt)
    if inferred is None and arch is None:
        first, last = next(iter(params)), list(params)[-1]
        raise MinistError(
            f"{src}: holds only layers {first} ... {last} (a partial network), so its architecture "
            "cannot be inferred; name it with --arch vgg16 or --arch vgg19"
        )
    if arch is not None and inferred is not None and arch != inferred:
        raise MinistError(f"--arch {arch}: {src} holds a {inferred} network")
    architecture = inferred or arch
    params = {
        name: (np.asarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32))
        for name, (w, b) in params.items()
    }
    validate_params(architecture, params, str(src))  # name the input file in any error
    source = f"{origin or src.name} (sha256 {sha256_of(src)})"
    return save_weights(out, architecture, params, preprocessing, source, license)
