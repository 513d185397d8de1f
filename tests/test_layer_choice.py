"""The size-dependent default style layers (minist.layer_choice): the rule against the receptive
fields, explicit lists kept as given, each scale of a run choosing its own, the option in the CLI,
the PNG metadata and one line for every bad value."""

from __future__ import annotations

import json

import numpy as np
import pytest
from trajectory import CHANNELS, _images

from minist.bench import synthetic_weights
from minist.cli import main
from minist.errors import MinistError
from minist.images import read_png_metadata, save_image
from minist.layer_choice import resolve_style_layers, style_layers_for_size
from minist.scales import receptive_fields
from minist.stylize import StyleTransfer, StylizeOptions
from minist.vgg import VGG


@pytest.fixture(scope="module")
def net():
    return VGG(synthetic_weights("vgg19", CHANNELS))


# Receptive fields by hand (3x3 convolutions add 2 x the jump, 2x2 pools add the jump and
# double it): relu1_1 3, relu2_1 10, relu3_1 24 px; then VGG-16 relu4_1 60, relu5_1 132 px
# (three convolutions per block), VGG-19 68 and 156 px (four). A layer is kept from the size
# 5 x its field: relu2_1 from 50 px, relu3_1 from 120, relu4_1 from 300 (VGG-19: 340),
# relu5_1 from 660 (VGG-19: 780).
FIELDS = {
    "vgg16": {"relu1_1": 3, "relu2_1": 10, "relu3_1": 24, "relu4_1": 60, "relu5_1": 132},
    "vgg19": {"relu1_1": 3, "relu2_1": 10, "relu3_1": 24, "relu4_1": 68, "relu5_1": 156},
}
ONE, TWO, THREE = ("relu1_1",), ("relu1_1", "relu2_1"), ("relu1_1", "relu2_1", "relu3_1")
FOUR, FIVE = (*THREE, "relu4_1"), (*THREE, "relu4_1", "relu5_1")
LAYERS_AT = {  # size, px -> the layers auto chooses, on each side of each threshold
    "vgg16": {8: ONE, 14: ONE, 15: ONE, 49: ONE, 50: TWO, 119: TWO, 120: THREE, 128: THREE,
              256: THREE, 299: THREE, 300: FOUR, 512: FOUR, 659: FOUR, 660: FIVE, 1024: FIVE},
    "vgg19": {8: ONE, 14: ONE, 15: ONE, 49: ONE, 50: TWO, 119: TWO, 120: THREE, 128: THREE,
              256: THREE, 339: THREE, 340: FOUR, 512: FOUR, 779: FOUR, 780: FIVE, 1024: FIVE},
}


@pytest.mark.parametrize("architecture", ["vgg16", "vgg19"])
def test_the_receptive_fields_worked_out_by_hand(architecture):
    steps = VGG(synthetic_weights(architecture, (4, 4, 4, 4, 4))).layer_specs
    fields = receptive_fields(steps)
    assert {name: fields[name] for name in FIELDS[architecture]} == FIELDS[architecture]


@pytest.mark.parametrize("architecture", ["vgg16", "vgg19"])
def test_auto_keeps_the_layers_that_see_at_most_a_fifth(architecture):
    """The README's sizes (128, 256, 512, 1024 px) and both sides of each threshold; at 8 and
    14 px no layer sees a fifth of the side: relu1_1 all the same (never none)."""
    steps = VGG(synthetic_weights(architecture, (4, 4, 4, 4, 4))).layer_specs
    chosen = {size: style_layers_for_size(steps, size) for size in LAYERS_AT[architecture]}
    assert chosen == LAYERS_AT[architecture]


@pytest.mark.parametrize("architecture", ["vgg16", "vgg19"])
def test_a_larger_image_never_loses_a_layer(architecture):
    steps = VGG(synthetic_weights(architecture, (4, 4, 4, 4, 4))).layer_specs
    previous = ()
    for size in range(8, 1400, 7):
        chosen = style_layers_for_size(steps, size)
        assert chosen[: len(previous)] == previous and len(chosen) >= 1, size
        previous = chosen
    assert previous == FIVE


def test_explicit_layers_are_used_as_given_at_every_size(net):
    for size in (16, 256, 4096):
        assert resolve_style_layers(["relu5_1", "relu1_1"], net.layer_specs, size) == (
            "relu5_1", "relu1_1")


def test_a_network_without_the_candidates_says_so():
    shallow = VGG(synthetic_weights("vgg19", CHANNELS)).layer_specs[:1]  # conv1_1 only
    with pytest.raises(MinistError, match="--style-layers auto: the network has none of"):
        style_layers_for_size(shallow, 512)


def test_each_scale_of_a_run_builds_its_own_layers_terms(net):
    """auto at 40 px: relu1_1 (relu2_1 sees 10 px > 8); at 60 px: relu1_1 and relu2_1. A
    coarse-to-fine run rebuilds its terms with each scale's layers; equal weights sum to 1."""
    content, style = _images()
    st = StyleTransfer(content, style, network=net, size=60, scales=(40, 60), iters=1,
                       content_layers=["relu2_1"])
    assert st.options.style_layers == "auto"

    def style_layers():
        return [t.key.layer for t in st.objective.terms if t.kind == "style"]

    assert style_layers() == ["relu1_1"]
    st.run()
    assert st.size == 60 and style_layers() == ["relu1_1", "relu2_1"]
    named = StyleTransfer(content, style, network=net, size=60, iters=0,
                          content_layers=["relu2_1"], style_layers=["relu1_1", "relu2_1"])
    for got, want in zip(st.objective.terms, named.objective.terms, strict=True):
        assert got.key == want.key and got.weight == pytest.approx(want.weight)
        np.testing.assert_array_equal(got.target, want.target)


@pytest.mark.parametrize("options, needle", [
    (dict(style_layers="relu1_1"), "--style-layers: give 'auto' or a list of layer names"),
    (dict(style_layer_weights=[1.0]), "--style-layer-weights: need the layers named"),
])
def test_bad_values_are_one_line(options, needle):
    with pytest.raises(MinistError, match=needle):
        StylizeOptions(**options).validated()


def test_cli_default_is_auto_recorded_in_the_png(tmp_path, tiny_vgg_files, capsys):
    rng = np.random.default_rng(0)
    content, style, out = tmp_path / "c.png", tmp_path / "s.png", tmp_path / "o.png"
    save_image(content, rng.uniform(size=(1, 3, 30, 40)).astype(np.float32))
    save_image(style, rng.uniform(size=(1, 3, 40, 40)).astype(np.float32))
    argv = ["stylize", content, style, "-o", out, "--weights", tiny_vgg_files["vgg19", "caffe"],
            "--size", "60", "--iters", "2", "--content-layers", "relu2_1"]
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "style layers (auto" in err and "60 px: relu1_1, relu2_1" in err
    meta = read_png_metadata(out)
    assert json.loads(meta["minist:settings"])["style_layers"] == "auto"
    assert json.loads(meta["minist:style-layers"]) == ["relu1_1", "relu2_1"]
    code = main([str(a) for a in argv] + ["--style-layers", "relu1_1", "--quiet"])
    assert code == 0
    assert json.loads(read_png_metadata(out)["minist:style-layers"]) == ["relu1_1"]
