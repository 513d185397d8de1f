"""Read VGG weights from a NumPy archive (``.npz``) with keys ``<layer>_W`` and ``<layer>_b``.

Layout: ``conv1_1_W`` (out, in, 3, 3) and ``conv1_1_b`` (out,), one pair per convolution, minist's
names and orientation already. Such archives hold the original Caffe/Keras VGG weights, so the
preprocessing is Caffe's (BGR, pixels in [0, 255], ImageNet mean subtracted).

An archive may hold only the first layers (``conv1_1`` up to some ``convB_I``). A prefix does not
tell VGG-16 from VGG-19 in general (their first 7 layers are the same), so the architecture is
only inferred when the archive holds every layer of exactly one of them; otherwise the caller
names it (``minist weights convert --arch``).
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from minist.architectures import ARCHITECTURES, conv_shapes
from minist.errors import MinistError

NPZ_LICENSE = "CC BY 4.0 (VGG, Simonyan & Zisserman), as the original Caffe/Keras VGG weights"


def npz_params(path: str | os.PathLike) -> tuple[str | None, dict]:
    """Read ``<layer>_W`` / ``<layer>_b`` pairs: ``(architecture or None, params)``.

    ``architecture`` is ``None`` when the archive is a partial (prefix) network. ``params`` maps
    layer name -> (weight, bias) as float32, in network order when the names are known.
    """
    where = str(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MinistError(f"{where}: not a readable NumPy .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise MinistError(f"{where}: holds a single array, expected an .npz archive of layers")
    with archive:
        keys = set(archive.files)
        layers = sorted({k[:-2] for k in keys if k.endswith(("_W", "_b"))})
        stray = sorted(keys - {f"{n}{s}" for n in layers for s in ("_W", "_b")})
        if stray:
            raise MinistError(f"{where}: unexpected key {stray[0]!r}; expected <layer>_W, _b")
        params = {}
        for name in layers:
            for suffix in ("_W", "_b"):
                if name + suffix not in keys:
                    raise MinistError(f"{where}: layer {name!r} has no {name + suffix!r} array")
            weight, bias = archive[name + "_W"], archive[name + "_b"]
            for key, arr in ((name + "_W", weight), (name + "_b", bias)):
                if not np.issubdtype(arr.dtype, np.floating):
                    raise MinistError(f"{where}: {key} has dtype {arr.dtype}, expected floats")
            params[name] = (weight.astype(np.float32), bias.astype(np.float32))
    if not params:
        raise MinistError(f"{where}: holds no <layer>_W / <layer>_b arrays")
    architecture = None
    for arch in ARCHITECTURES:
        order = list(conv_shapes(arch))
        if set(params) == set(order):
            architecture = arch
        if set(params) <= set(order):
            params = {name: params[name] for name in order if name in params}
    return architecture, params
