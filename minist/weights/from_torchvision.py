"""Map a torchvision VGG state dict onto minist's conv layer names.

torchvision builds ``vgg16``/``vgg19`` as ``features`` (an ``nn.Sequential``) plus
``classifier``. ``features`` lists exactly the layers of
:func:`minist.architectures.layer_table` in the same order -- conv, ReLU, conv, ReLU, max-pool,
... -- so the conv at position ``N`` of ``layer_table(arch)`` is stored as::

    features.N.weight   float32 (out, in, 3, 3)   (already minist's (out, in, kh, kw) layout)
    features.N.bias     float32 (out,)

e.g. VGG-16: features.0 -> conv1_1, features.2 -> conv1_2, features.5 -> conv2_1, ...,
features.28 -> conv5_3. ``classifier.*`` (the fully connected layers) is not used for style
transfer and is ignored; a features-only checkpoint works the same way. The architecture follows
from the number of convolutions (13: VGG-16, 16: VGG-19).

These weights expect :data:`minist.preprocessing.TORCHVISION` input (RGB in [0, 1], ImageNet
mean and std).
"""

from __future__ import annotations

import re

import numpy as np

from minist.architectures import architecture_for_conv_count, conv_shapes, layer_table
from minist.errors import MinistError
from minist.weights.store import validate_params

TORCHVISION_LICENSE = "BSD-3-Clause (torchvision); trained on ImageNet, see its terms"

_FEATURE_KEY = re.compile(r"^features\.(\d+)\.(weight|bias)$")
_BATCH_NORM_KEYS = ("running_mean", "running_var", "num_batches_tracked")


def _strip_data_parallel(state_dict: dict) -> dict:
    """``nn.DataParallel`` saves every key as ``module.<key>``; drop that prefix."""
    if state_dict and all(key.startswith("module.") for key in state_dict):
        return {key[len("module.") :]: value for key, value in state_dict.items()}
    return state_dict


def _feature_tensors(state_dict: dict, where: str) -> dict[int, dict[str, np.ndarray]]:
    """``{N: {"weight": ..., "bias": ...}}`` for every ``features.N.*`` key, checking the rest."""
    found: dict[int, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        if key.endswith(_BATCH_NORM_KEYS):
            raise MinistError(
                f"{where}: holds batch-norm statistics ({key}); VGG with batch norm "
                "(vgg16_bn / vgg19_bn) is not supported, use plain vgg16 or vgg19 weights"
            )
        if key.startswith("classifier."):
            continue  # the fully connected layers: not needed for style transfer
        match = _FEATURE_KEY.match(key)
        if match is None:
            raise MinistError(f"{where}: unexpected key {key!r} for a torchvision VGG state dict")
        found.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if not found:
        raise MinistError(
            f"{where}: holds no features.N.weight tensors (not a torchvision VGG checkpoint)"
        )
    for index, pair in sorted(found.items()):
        for part in ("weight", "bias"):
            if part not in pair:
                raise MinistError(f"{where}: features.{index}.{part} is missing")
    return found


def torchvision_params(state_dict: dict, where: str) -> tuple[str, dict]:
    """``(architecture, {conv name: (weight float32 (out, in, 3, 3), bias float32 (out,))})``.

    ``state_dict`` maps torchvision keys to arrays (as from
    :func:`minist.weights.torch_reader.read_torch_state_dict`); ``where`` names its source in
    the one-line :class:`MinistError` raised for anything that is not a plain torchvision VGG.
    """
    found = _feature_tensors(_strip_data_parallel(state_dict), where)
    try:
        architecture = architecture_for_conv_count(len(found))
    except MinistError as exc:
        raise MinistError(f"{where}: {exc}") from None
    # The position of each conv in layer_table is its index in torchvision's `features`.
    expected_index = {
        spec.name: i for i, spec in enumerate(layer_table(architecture)) if spec.kind == "conv"
    }
    if sorted(found) != list(expected_index.values()):
        raise MinistError(
            f"{where}: conv layers sit at features {sorted(found)}, but torchvision's "
            f"{architecture} has them at {list(expected_index.values())}"
        )
    shapes = conv_shapes(architecture)
    params = {}
    for name, index in expected_index.items():
        weight, bias = found[index]["weight"], found[index]["bias"]
        w_shape, b_shape = shapes[name]
        for part, array, shape in (("weight", weight, w_shape), ("bias", bias, b_shape)):
            if tuple(np.shape(array)) != shape:
                raise MinistError(
                    f"{where}: features.{index}.{part} ({name}) has shape "
                    f"{tuple(np.shape(array))}, expected {shape} for {architecture}"
                )
        params[name] = (
            np.ascontiguousarray(weight, dtype=np.float32),
            np.ascontiguousarray(bias, dtype=np.float32),
        )
    validate_params(architecture, params, where)  # dtypes, order, finite values
    return architecture, params
