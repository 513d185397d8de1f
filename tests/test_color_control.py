"""Colour control in a run (minist.color wired into minist.stylize): the luminance-only transfer
optimises Y and keeps the photo's I and Q; histogram matching builds the style targets from
the colour-matched painting; the CLI options and their bad values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from trajectory import CHANNELS, _images

from minist import color
from minist.bench import synthetic_weights
from minist.objective import build_terms
from minist.stylize import StyleTransfer
from minist.vgg import VGG


@pytest.fixture(scope="module")
def net():
    return VGG(synthetic_weights("vgg19", CHANNELS))


def test_luminance_run_optimises_y_and_keeps_the_photos_colours(net, tmp_path):
    from minist.images import load_image, save_image

    content, style = _images()
    st = StyleTransfer(content, style, network=net, size=60, iters=6,
                       original_colors="luminance")
    assert st.image.shape == (1, 1, 44, 60)  # the luminance is what the optimiser moves
    out = st.run()
    assert out.shape == (1, 3, 44, 60) and st.history[-1].total < st.history[0].total
    # the output's luminance is the optimised Y wherever (Y, I_photo, Q_photo) is a valid colour
    yiq = np.concatenate([st.image, color.rgb_to_yiq(content)[:, 1:]], axis=1)
    inside = ((color.yiq_to_rgb(yiq) >= 0) & (color.yiq_to_rgb(yiq) <= 1)).all(axis=1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(color.luminance(out)[:, 0][inside], st.image[:, 0][inside],
                               atol=1e-5)
    save_image(tmp_path / "out.png", out)
    saved = load_image(tmp_path / "out.png")  # what the user gets: 8 bits
    iq_out, iq_photo = color.rgb_to_yiq(saved)[:, 1:], color.rgb_to_yiq(content)[:, 1:]
    # where (Y, I, Q) is a colour at all, the photo's I and Q up to the 8-bit rounding
    assert (np.abs(iq_out - iq_photo).max(axis=1)[inside] < 1 / 255).all()


def test_luminance_keeps_a_real_photos_colours(real_vgg16_file, shared_dir, tmp_path):
    """tubingen x starry_night, the real VGG-16: the output's I and Q are the photo's to within
    one 8-bit level on average (the clip to [0, 1] moves only out-of-gamut pixels)."""
    from minist.images import load_image, save_image

    images = shared_dir / "data" / "images"
    st = StyleTransfer(images / "tubingen.jpg", images / "starry_night.jpg",
                       weights=real_vgg16_file, size=96, iters=20, original_colors="luminance")
    save_image(tmp_path / "out.png", st.run())
    saved = load_image(tmp_path / "out.png")
    iq_out = color.rgb_to_yiq(saved)[:, 1:]
    iq_photo = color.rgb_to_yiq(st.content_image)[:, 1:]
    assert np.abs(iq_out - iq_photo).mean() * 255 < 1.0


def test_luminance_gradient_matches_finite_differences():
    """The problem of a luminance-only run -- the objective seen through the luminance view --
    d/dY against central differences."""
    net64 = VGG(synthetic_weights("vgg19", CHANNELS), dtype=np.float64)
    content, style = _images()
    st = StyleTransfer(content[:, :, :20, :20], style, network=net64, size=20, tv_weight=0.1,
                       original_colors="luminance", content_layers=["relu2_1"],
                       style_layers=["relu1_1", "relu2_1"])
    problem = st.problem  # the function the run minimises, the view inside it
    y = np.random.default_rng(0).uniform(0.2, 0.8, size=(1, 1, 20, 20))
    grad = problem(y).grad
    assert grad.shape == y.shape
    rng = np.random.default_rng(1)
    for idx in [tuple(rng.integers(0, n) for n in y.shape) for _ in range(8)]:
        plus, minus = y.copy(), y.copy()
        plus[idx] += 1e-6
        minus[idx] -= 1e-6
        numeric = (problem(plus).loss - problem(minus).loss) / 2e-6
        assert grad[idx] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


@pytest.mark.parametrize("method", color.METHODS)
def test_histogram_run_builds_targets_from_the_matched_painting(net, method):
    content, style = _images()
    st = StyleTransfer(content, style, network=net, size=60, iters=1,
                       original_colors="histogram", color_transform=method)
    content_image, (style_image,) = st._images_at(60)
    matched = color.match_colors(style_image, content_image, method)
    mu_c, cov_c = color.color_statistics(content_image)
    mu_s, cov_s = color.color_statistics(matched)
    np.testing.assert_allclose(mu_s, mu_c, atol=1e-5)
    np.testing.assert_allclose(cov_s, cov_c, atol=1e-4)
    expected = build_terms(net, content_image, [matched], st.options.content_layers,
                           st.style_layers_at(60))
    for got, want in zip(st.objective.terms, expected, strict=True):
        assert got.key == want.key
        np.testing.assert_array_equal(got.target, want.target)
    plain = StyleTransfer(content, style, network=net, size=60, iters=1)
    style_targets = [t.target for t in plain.objective.terms if t.kind == "style"]
    assert not np.array_equal(style_targets[0], [t.target for t in st.objective.terms
                                                 if t.kind == "style"][0])


def test_cli_colour_options(tiny_vgg_files, tmp_path, capsys):
    from minist.cli import main
    from minist.images import read_png_metadata, save_image

    content, style = _images()
    save_image(tmp_path / "c.png", content)
    save_image(tmp_path / "s.png", style)
    base = ["stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "--weights",
            str(tiny_vgg_files["vgg19", "torchvision"]), "--size", "40", "--iters", "2",
            "--quiet"]
    for mode in ("luminance", "histogram"):
        out = tmp_path / f"{mode}.png"
        assert main(base + ["-o", str(out), "--original-colors", mode, "--color-transform",
                            "sym"]) == 0, capsys.readouterr().err
        settings = json.loads(read_png_metadata(out)["minist:settings"])
        assert settings["original_colors"] == mode and settings["color_transform"] == "sym"
    for argv, needle in ((["--original-colors", "sepia"], "--original-colors: unknown mode"),
                         (["--color-transform", "lab"], "--color-transform: unknown")):
        out = tmp_path / "bad.png"
        assert main(base + ["-o", str(out), *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0] and not out.exists()
