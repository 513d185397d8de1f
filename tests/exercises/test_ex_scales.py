"""Exercise ex_scales: ``minist.scales.auto_sizes`` and ``minist.scales.receptive_fields``
(lesson 10, coarse-to-fine).

The schedule is checked by what it must be (ends at the size, steps of sqrt(2), starts at the
smallest allowed size and not below it). The receptive fields are checked against a measurement
that does not use the recursion at all: the gradient of one unit of a VGG with positive weights
with respect to the image is non-zero exactly on the pixels the unit sees.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.architectures import layer_table
from minist.preprocessing import TORCHVISION
from minist.scales import auto_sizes, receptive_fields
from minist.vgg import VGG
from minist.weights.store import VGGWeights

pytestmark = pytest.mark.ex_scales


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 9000), smallest=st.integers(16, 400))
def test_sizes_step_by_root_two_from_the_smallest_to_the_output(size, smallest):
    sizes = auto_sizes(size, smallest)
    assert sizes[-1] == size, "the last scale is the output size"
    assert list(sizes) == sorted(sizes), "run smallest first"
    for k, s in enumerate(reversed(sizes)):
        assert s == round(size / math.sqrt(2) ** k), f"scale {k} steps from the top: size/sqrt2^k"
    if len(sizes) > 1:
        assert sizes[0] >= smallest, "no scale below the smallest allowed"
    next_smaller = round(size / math.sqrt(2) ** len(sizes))
    assert next_smaller < smallest, "the schedule starts as low as it may"


def test_the_papers_example_sizes():
    assert auto_sizes(512) == (128, 181, 256, 362, 512)
    assert auto_sizes(1024, 256) == (256, 362, 512, 724, 1024)


def _unit_gradient_support(arch: str, layer: str, size: int = 96) -> int:
    """The side of the square of pixels on which one central unit of ``layer`` depends,
    measured by backpropagating 1 from that unit through a VGG whose weights are all
    positive (so no two paths cancel) and biases large (so every ReLU is open)."""
    table = layer_table(arch, (2, 2, 2, 2, 2))
    params = {}
    for spec in table:
        if spec.kind == "conv":
            params[spec.name] = (np.full((spec.out_channels, spec.in_channels, 3, 3), 0.1),
                                 np.ones(spec.out_channels))
    weights = VGGWeights(arch, params, TORCHVISION, "test", "none", (2, 2, 2, 2, 2))
    net = VGG(weights, dtype=np.float64, pooling="avg")
    image = np.full((1, 3, size, size), 0.5)
    feats, cache = net.forward(image, [layer])
    g = np.zeros_like(feats[layer])
    h, w = g.shape[2:]
    g[0, 0, h // 2, w // 2] = 1.0
    grad = net.backward({layer: g}, cache)
    rows = np.flatnonzero(np.abs(grad).sum(axis=(0, 1, 3)))
    return int(rows[-1] - rows[0] + 1)


@pytest.mark.parametrize("arch, layer", [("vgg16", "relu1_1"), ("vgg16", "relu2_1"),
                                         ("vgg16", "relu3_1"), ("vgg19", "relu4_1")])
def test_receptive_fields_are_what_a_unit_sees(arch, layer):
    fields = receptive_fields(layer_table(arch))
    assert fields[layer] == _unit_gradient_support(arch, layer, size=160)


def test_every_layer_has_a_field_and_they_grow():
    table = layer_table("vgg19")
    fields = receptive_fields(table)
    assert list(fields) == [spec.name for spec in table]
    values = list(fields.values())
    assert values[0] == 3 and all(b >= a for a, b in zip(values, values[1:], strict=False))
