"""Layer tables of VGG-16 and VGG-19 (Simonyan & Zisserman, 2014), with the standard names.

A VGG network is five blocks; block ``b`` has 2-4 convolutions ``convb_1 ...`` (3x3, stride 1,
pad 1), each followed by ``relub_i``, and ends with a 2x2 stride-2 pooling ``poolb``.
The ``features`` part (everything before the classifier) is all that style transfer uses.

    VGG-16: blocks of 2, 2, 3, 3, 3 convolutions  (13 conv layers)
    VGG-19: blocks of 2, 2, 4, 4, 4 convolutions  (16 conv layers)
    channels per block: 64, 128, 256, 512, 512
"""

from __future__ import annotations

from typing import NamedTuple

from minist.errors import MinistError

BLOCK_CHANNELS = (64, 128, 256, 512, 512)
CONVS_PER_BLOCK = {
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
ARCHITECTURES = tuple(CONVS_PER_BLOCK)


class LayerSpec(NamedTuple):
    """One step of the network: ``kind`` is ``"conv"``, ``"relu"`` or ``"pool"``."""

    name: str
    kind: str
    in_channels: int
    out_channels: int


def check_architecture(arch: str) -> str:
    if arch not in CONVS_PER_BLOCK:
        raise MinistError(
            f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}"
        )
    return arch


def layer_table(arch: str, block_channels: tuple[int, ...] = BLOCK_CHANNELS) -> list[LayerSpec]:
    """All layers of ``arch`` in order: conv1_1, relu1_1, conv1_2, relu1_2, pool1, conv2_1, ...

    ``block_channels`` gives the width of each block; the standard networks use
    (64, 128, 256, 512, 512). Narrower widths make the tiny random networks the tests use.
    """
    check_architecture(arch)
    if len(block_channels) != 5 or any(int(c) < 1 for c in block_channels):
        raise MinistError(f"block_channels must be 5 positive widths, got {tuple(block_channels)}")
    table = []
    in_ch = 3
    for block, (n_convs, out_ch) in enumerate(
        zip(CONVS_PER_BLOCK[arch], block_channels, strict=True), start=1
    ):
        out_ch = int(out_ch)
        for i in range(1, n_convs + 1):
            table.append(LayerSpec(f"conv{block}_{i}", "conv", in_ch, out_ch))
            table.append(LayerSpec(f"relu{block}_{i}", "relu", out_ch, out_ch))
            in_ch = out_ch
        table.append(LayerSpec(f"pool{block}", "pool", out_ch, out_ch))
    return table


def conv_layers(arch: str, block_channels: tuple[int, ...] = BLOCK_CHANNELS) -> list[LayerSpec]:
    """Only the convolutions of ``arch``, in order (these are what weight files hold)."""
    return [spec for spec in layer_table(arch, block_channels) if spec.kind == "conv"]


def conv_shapes(
    arch: str, block_channels: tuple[int, ...] = BLOCK_CHANNELS
) -> dict[str, tuple[tuple[int, int, int, int], tuple[int]]]:
    """``{conv name: (weight shape (out, in, 3, 3), bias shape (out,))}`` for ``arch``."""
    return {
        s.name: ((s.out_channels, s.in_channels, 3, 3), (s.out_channels,))
        for s in conv_layers(arch, block_channels)
    }


def layer_names(arch: str) -> list[str]:
    return [spec.name for spec in layer_table(arch)]


def architecture_for_conv_count(count: int) -> str:
    """Which VGG has ``count`` conv layers (13 -> vgg16, 16 -> vgg19)."""
    for arch in ARCHITECTURES:
        if len(conv_layers(arch)) == count:
            return arch
    raise MinistError(f"found {count} convolution layers; VGG-16 has 13 and VGG-19 has 16")


def downsampling_factor(arch: str, layer: str) -> int:
    """How many times smaller than the input a layer's feature map is (1, 2, 4, 8, 16 or 32)."""
    names = layer_names(arch)
    if layer not in names:
        raise MinistError(f"unknown layer {layer!r} for {arch}")
    pools_before = sum(1 for n in names[: names.index(layer) + 1] if n.startswith("pool"))
    return 2**pools_before
