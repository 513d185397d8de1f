"""Exercise ex_scales: ``minist.scales.auto_sizes`` and ``minist.scales.receptive_fields``
(lesson 10, coarse-to-fine).

The schedule is checked by what it must be (ends at the size, steps of sqrt(2), starts at the
smallest allowed size and not below it). The receptive fields are checked against a measurement
that does not use the recursion at all: the gradient of one unit of a VGG with positive weights
with respect to the image is non-zero exactly on the pixels the unit sees.

A failure says in one line what the function does instead when that is cheap to tell: sizes in
the wrong order, steps of 2, rounding that accumulates, a field that grows by the same number
of pixels at every depth.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from diagnose import CheckError, expect, named
from hypothesis import example, given, settings
from hypothesis import strategies as st

from minist.architectures import layer_table
from minist.preprocessing import TORCHVISION
from minist.scales import SMALLEST, auto_sizes, receptive_fields
from minist.vgg import VGG
from minist.weights.store import VGGWeights

pytestmark = pytest.mark.ex_scales


def schedule_mistake(sizes, size: int, smallest: int) -> str | None:
    """What ``sizes`` is, if it is a cheap-to-recognise wrong schedule (diagnosis only)."""
    sizes = tuple(sizes)
    if len(sizes) > 1 and list(sizes) == sorted(sizes, reverse=True):
        return "runs largest first: return the sizes smallest first, ending with the output size"
    halving, repeated, s = [size], [size], size
    while True:
        s = round(s / math.sqrt(2))
        if s < smallest:
            break
        repeated.insert(0, s)
    k = 1
    while round(size / 2**k) >= smallest:
        halving.insert(0, round(size / 2**k))
        k += 1
    if sizes == tuple(halving) and len(halving) > 1:
        return "steps by a factor of 2: neighbouring scales differ by sqrt(2) (twice the pixels)"
    if sizes == tuple(repeated):
        return ("divides the previous, rounded size again: compute every size from the output "
                "size itself, round(size / sqrt(2)**k), so that no rounding accumulates")
    return None


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 9000), smallest=st.integers(16, 400))
@example(size=2000, smallest=128)  # first, an ordinary schedule: 125 < 128 ends it at 177
def test_sizes_step_by_root_two_from_the_smallest_to_the_output(size, smallest):
    sizes = auto_sizes(size, smallest)
    call = f"auto_sizes({size}, {smallest}) = {tuple(sizes)}"
    expect(isinstance(sizes, tuple) and all(isinstance(s, int) for s in sizes),
           f"{call}: expected a tuple of ints")
    try:
        expect_schedule(sizes, size, smallest, call)
    except CheckError as err:
        mistake = schedule_mistake(sizes, size, smallest)
        if mistake is None:
            raise
        raise CheckError(f"{call}: your schedule {mistake}") from err


def expect_schedule(sizes, size: int, smallest: int, call: str) -> None:
    """The properties of the schedule, each failing with its own line."""
    __tracebackhide__ = True
    expect(len(sizes) > 0 and sizes[-1] == size, f"{call}: the last scale is the output size "
           f"{size}")
    expect(list(sizes) == sorted(sizes), f"{call}: run smallest first")
    for k, s in enumerate(reversed(sizes)):
        expect(s == round(size / math.sqrt(2) ** k),
               f"{call}: the size {k} steps below the output is {s}, expected round({size} / "
               f"sqrt(2)^{k}) = {round(size / math.sqrt(2) ** k)}")
    if len(sizes) > 1:
        expect(sizes[0] >= smallest, f"{call}: {sizes[0]} is below the smallest allowed size "
               f"{smallest}")
    next_smaller = round(size / math.sqrt(2) ** len(sizes))
    expect(next_smaller < smallest, f"{call}: the schedule stops too early: the next size down, "
           f"{next_smaller}, is still >= {smallest}")


@named("the default smallest size, and the paper's example")
def test_the_default_smallest_size_and_the_papers_example():
    expect(auto_sizes(512) == auto_sizes(512, SMALLEST),
           f"auto_sizes(512) = {auto_sizes(512)}: without a smallest size it is SMALLEST = "
           f"{SMALLEST} (auto_sizes(512, {SMALLEST}) = {auto_sizes(512, SMALLEST)})")
    for size, smallest, k_max in ((512, 128, 4), (1024, 256, 4), (2048, 256, 6)):
        want = tuple(round(size / math.sqrt(2) ** k) for k in range(k_max, -1, -1))
        got = auto_sizes(size, smallest)
        expect(got == want, f"auto_sizes({size}, {smallest}) = {got}, expected {want}: "
               f"round({size} / sqrt(2)^k) for k = {k_max}, ..., 0")


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


def _recursion(table, conv_adds_jump: bool = True, pool_adds: bool = True) -> dict[str, int]:
    """Receptive fields by a recursion, right or with one known slip (diagnosis only)."""
    r, jump, fields = 1, 1, {}
    for spec in table:
        if spec.kind == "conv":
            r += 2 * jump if conv_adds_jump else 2
        elif spec.kind == "pool":
            r += jump if pool_adds else 0
            jump *= 2
        fields[spec.name] = r
    return fields


def fields_mistake(fields, table) -> str | None:
    """What ``fields`` is, if it comes from a cheap-to-recognise slip (diagnosis only)."""
    if fields == _recursion(table, conv_adds_jump=False):
        return ("grow by 2 px at every convolution: after a pooling, neighbouring units are "
                "further apart in the image, so a convolution widens the field by more pixels")
    if fields == _recursion(table, pool_adds=False):
        return ("do not grow at the poolings: a 2x2 pooling window also widens the field, by "
                "the distance between the units it pools")
    return None


@pytest.mark.parametrize("arch, layer", [("vgg16", "relu1_1"), ("vgg16", "relu2_1"),
                                         ("vgg16", "relu3_1"), ("vgg19", "relu4_1")])
def test_receptive_fields_are_what_a_unit_sees(arch, layer):
    table = layer_table(arch)
    fields = receptive_fields(table)
    expect(isinstance(fields, dict) and layer in fields,
           f"receptive_fields({arch} table) has no entry for {layer}: one per step, by name")
    measured = _unit_gradient_support(arch, layer, size=160)
    if fields[layer] != measured:
        slip = fields_mistake(fields, table)
        raise CheckError(f"receptive field of {layer} ({arch}): yours {fields[layer]} px, "
                         f"measured {measured} px (the pixels on which one unit's gradient is "
                         "non-zero)" + (f": your fields {slip}" if slip else ""))


def test_every_layer_has_a_field_and_they_grow():
    table = layer_table("vgg19")
    fields = receptive_fields(table)
    names = [spec.name for spec in table]
    expect(list(fields) == names, f"receptive_fields(vgg19 table) has the keys "
           f"{list(fields)[:4]}...: expected every step's name in the table's order, "
           f"{names[:4]}...")
    values = list(fields.values())
    expect(all(isinstance(v, int) for v in values), "the fields must be ints (pixels)")
    expect(values[0] == 3, f"conv1_1's field is {values[0]} px: a 3x3 convolution of the "
           "image sees 3 px")
    shrinks = [(a, b) for a, b in zip(names, names[1:], strict=False) if fields[b] < fields[a]]
    expect(not shrinks, f"the field shrinks from {shrinks[:1]}: a layer sees at least what the "
           "layer below it sees")
    expect(fields[names[1]] == fields[names[0]], "a ReLU acts on each unit alone: relu1_1's "
           "field must be conv1_1's")
