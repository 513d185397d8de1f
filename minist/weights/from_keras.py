"""Read the VGG weight files of Keras applications (``vgg19_weights_tf_dim_ordering_tf_kernels``).

These are the original Oxford VGG weights (Simonyan & Zisserman), converted by Keras from Caffe;
Gatys et al. used the same numbers. The network expects Caffe preprocessing: BGR channels,
pixels in [0, 255], minus the ImageNet mean (103.939, 116.779, 123.68), no division.

Layout of a Keras 2 weight file (``model.save_weights("x.h5")``, HDF5)::

    /                           attributes layer_names (every layer, in order), keras_version,
                                backend; a long list is split into layer_names0, layer_names1, ...
    /block1_conv1               a group per layer, attribute weight_names: the datasets below it
    /block1_conv1/block1_conv1_W_1:0     kernel (3, 3, in, out)   (files written by Keras 1)
    /block1_conv1/block1_conv1_b_1:0     bias (out,)
    /block1_conv1/block1_conv1/kernel:0  kernel (3, 3, in, out)   (files written by Keras 2)
    /block1_conv1/block1_conv1/bias:0    bias (out,)
    /block1_pool, /input_1 ...  layers without weights: empty weight_names
    /fc1, /fc2, /predictions    the classifier (files "with top" only): ignored here

A whole saved model (``model.save``) holds the same tree under ``/model_weights``.

Kernels are stored height, width, in, out (HWIO, "tf_kernels": already a cross-correlation, no
flip); minist uses (out, in, height, width), so

.. math::  W^{\\text{minist}}_{o,i,h,w} = K^{\\text{keras}}_{h,w,i,o}
           \\quad\\text{i.e. a transpose by axes } (3, 2, 0, 1).

Layer ``blockB_convI`` becomes minist's ``convB_I``; the architecture follows from the number of
convolutions (13: VGG-16, 16: VGG-19).
"""

from __future__ import annotations

import os
import re

import numpy as np

from minist.architectures import architecture_for_conv_count, conv_shapes
from minist.errors import MinistError

KERAS_LICENSE = "CC BY 4.0 (VGG, Simonyan & Zisserman; Keras applications)"

_CONV_NAME = re.compile(r"^block(\d)_conv(\d)$")
_TOP_LAYERS = ("flatten", "fc1", "fc2", "predictions")


def keras_layer_to_minist(name: str) -> str | None:
    """``block3_conv2`` -> ``conv3_2``; ``None`` for any name that is not a VGG convolution."""
    match = _CONV_NAME.match(name)
    return f"conv{match.group(1)}_{match.group(2)}" if match else None


def _string_list_attr(obj, name: str) -> list[str] | None:
    """A list-of-strings attribute, joined back if Keras split it (``name0``, ``name1``, ...)."""
    if name in obj.attrs:
        chunks = [obj.attrs[name]]
    elif f"{name}0" in obj.attrs:
        chunks, i = [], 0
        while f"{name}{i}" in obj.attrs:
            chunks.append(obj.attrs[f"{name}{i}"])
            i += 1
    else:
        return None
    values = [v for chunk in chunks for v in np.atleast_1d(chunk)]
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def keras_weight_root(f):
    """The group holding ``layer_names`` (the file itself, or ``/model_weights``), else ``None``."""
    if _string_list_attr(f, "layer_names") is not None:
        return f
    if "model_weights" in f and _string_list_attr(f["model_weights"], "layer_names") is not None:
        return f["model_weights"]
    return None


def _kernel_and_bias(root, layer: str, where: str):
    """The (kernel, bias) arrays of one conv layer, told apart by their rank (4 and 1)."""
    names = _string_list_attr(root[layer], "weight_names") or []
    arrays = []
    for weight_name in names:
        if weight_name not in root[layer]:
            raise MinistError(f"{where}: layer {layer!r} lists {weight_name!r}, which is missing")
        arrays.append(np.asarray(root[layer][weight_name][()]))
    kernels = [a for a in arrays if a.ndim == 4]
    biases = [a for a in arrays if a.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1 or len(arrays) != 2:
        shapes = [a.shape for a in arrays]
        raise MinistError(
            f"{where}: layer {layer!r} should hold a 4-D kernel and a 1-D bias, found {shapes}"
        )
    kernel, bias = kernels[0], biases[0]
    if kernel.shape[:2] != (3, 3):
        raise MinistError(
            f"{where}: layer {layer!r} kernel has shape {kernel.shape}, expected (3, 3, in, out); "
            "minist reads the tf_dim_ordering_tf_kernels (channels-last) files"
        )
    return kernel, bias


def keras_params(path: str | os.PathLike) -> tuple[str, dict]:
    """Read a Keras applications VGG weight file: ``(architecture, {convB_I: (weight, bias)})``.

    Weights come back as float32 (out, in, 3, 3), in network order; the classifier is ignored.
    """
    import h5py

    where = str(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise MinistError(f"{where}: not a readable HDF5 file ({exc})") from None
    with f:
        root = keras_weight_root(f)
        if root is None:
            raise MinistError(
                f"{where}: no 'layer_names' attribute; not a Keras 2 weight file "
                "(expected e.g. vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5)"
            )
        found = {}
        for layer in _string_list_attr(root, "layer_names"):
            if layer not in root:
                raise MinistError(f"{where}: layer {layer!r} is listed but has no group")
            minist_name = keras_layer_to_minist(layer)
            if minist_name is None:
                if _string_list_attr(root[layer], "weight_names") and layer not in _TOP_LAYERS:
                    raise MinistError(
                        f"{where}: unexpected layer {layer!r} with weights; a Keras VGG file "
                        "holds blockB_convI layers (and fc1, fc2, predictions)"
                    )
                continue
            kernel, bias = _kernel_and_bias(root, layer, where)
            # W[o, i, h, w] = K[h, w, i, o]: HWIO -> OIHW
            weight = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1), dtype=np.float32)
            found[minist_name] = (weight, np.ascontiguousarray(bias, dtype=np.float32))
    if not found:
        raise MinistError(f"{where}: holds no blockB_convI convolution layers")
    try:
        architecture = architecture_for_conv_count(len(found))
    except MinistError as exc:
        raise MinistError(f"{where}: {exc}") from None
    order = list(conv_shapes(architecture))
    unknown = sorted(set(found) - set(order))
    if unknown:
        raise MinistError(f"{where}: unexpected layer {unknown[0]!r} for {architecture}")
    return architecture, {name: found[name] for name in order if name in found}
