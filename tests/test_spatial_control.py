"""Spatial control in a run (minist.masks wired into minist.stylize and the CLI): masks of any
size, one guided term per region and layer, the settings recorded, and one line for every bad
mask."""

from __future__ import annotations

import json

import numpy as np
import pytest
from trajectory import _images

from minist.cli import main
from minist.images import read_png_metadata, save_image


@pytest.fixture()
def files(tmp_path):
    content, style = _images()
    paths = {}
    halves = np.zeros((1, 3, 20, 30), np.float32)
    halves[..., :15] = 1.0  # a mask of another size than the photo: resized
    for name, image in (("c", content), ("s1", style), ("s2", style[:, ::-1].copy()),
                        ("left", halves), ("right", 1 - halves),
                        ("black", np.zeros_like(halves))):
        paths[name] = tmp_path / f"{name}.png"
        save_image(paths[name], image)
    (tmp_path / "notes.png").write_text("not an image")
    paths["notes"] = tmp_path / "notes.png"
    return paths


def _argv(tiny_vgg_files, files, out, *extra):
    return [str(a) for a in ("stylize", files["c"], files["s1"], files["s2"], "-o", out,
                             "--weights", tiny_vgg_files["vgg19", "torchvision"], "--size",
                             "48", "--iters", "2", "--quiet", "--content-layers", "relu2_1",
                             "--style-layers", "relu1_1,relu2_1", *extra)]


def test_cli_masks_paint_each_style_in_its_region(tiny_vgg_files, files, tmp_path, capsys):
    out = tmp_path / "o.png"
    masks = f"{files['left']},{files['right']}"
    code = main(_argv(tiny_vgg_files, files, out, "--content-masks", masks, "--style-masks",
                      f",{files['left']}", "--mask-mode", "simple"))
    assert code == 0, capsys.readouterr().err
    settings = json.loads(read_png_metadata(out)["minist:settings"])
    assert settings["content_masks"] == [str(files["left"]), str(files["right"])]
    assert settings["style_masks"] == [None, str(files["left"])]
    assert settings["mask_mode"] == "simple"


def test_api_terms_are_one_per_region_and_layer(tiny_vgg_files, files):
    from minist.stylize import StyleTransfer

    content, style = _images()
    left = np.zeros((44, 60), np.float32)
    left[:, :30] = 1
    st = StyleTransfer(content, [style, style[:, ::-1]], weights=tiny_vgg_files[
        "vgg19", "torchvision"], size=60, content_layers=["relu2_1"],
        style_layers=["relu1_1", "relu2_1"], content_masks=[left, 1 - left])
    keys = [t.key for t in st.objective.terms if t.kind == "style"]
    assert [(k.layer, k.style, k.region) for k in keys] == [
        ("relu1_1", 0, 0), ("relu2_1", 0, 0), ("relu1_1", 1, 1), ("relu2_1", 1, 1)]
    assert all(t.guide is not None for t in st.objective.terms if t.kind == "style")
    st.run(iters=2)
    assert st.history[-1].total < st.history[0].total


@pytest.mark.parametrize("extra, needle", [
    (["--content-masks", "{left}"], "--content-masks: 1 mask for 2 style images"),
    (["--content-masks", "{left},{black}"], "black.png: mask is empty"),
    (["--content-masks", "{left},{notes}"], "notes.png"),
    (["--content-masks", "{left},{right}", "--style-masks", "{left}"],
     "--style-masks: 1 mask for 2 style images"),
    (["--style-masks", "{left},{right}"], "--style-masks: needs --content-masks"),
    (["--content-masks", "{left},{right}", "--style-blend", "1,1"],
     "--style-blend: does not apply with --content-masks"),
    (["--content-masks", "{left},{right}", "--mask-mode", "edges"], "--mask-mode: unknown"),
])
def test_bad_masks_are_one_line_and_write_nothing(tiny_vgg_files, files, tmp_path, capsys,
                                                  extra, needle):
    out = tmp_path / "o.png"
    extra = [e.format(**{k: str(v) for k, v in files.items()}) for e in extra]
    assert main(_argv(tiny_vgg_files, files, out, *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err
    assert not out.exists()
