"""Coarse-to-fine (minist.scales) and several styles: the schedule, a multi-scale run (targets
rebuilt per scale, records, snapshots, log), the blended target and its identity, and one line
for every bad value."""

from __future__ import annotations

import json

import numpy as np
import pytest
from trajectory import CHANNELS, _images

from minist.bench import synthetic_weights
from minist.errors import MinistError
from minist.images import resize_to
from minist.inputs import initial_image
from minist.objective import Objective, StyleTerm, blend_weights, blended_gram
from minist.scales import auto_sizes, carry_over, parse_sizes, scale_iterations, schedule
from minist.stylize import StyleTransfer
from minist.vgg import VGG


@pytest.fixture(scope="module")
def net():
    return VGG(synthetic_weights("vgg19", CHANNELS))


def test_auto_sizes_are_spaced_by_root_two_from_256():
    assert auto_sizes(512) == (256, 362, 512)
    assert auto_sizes(256) == (256,)
    assert auto_sizes(1024) == (256, 362, 512, 724, 1024)
    for size in (300, 1000, 2048, 5000):
        sizes = auto_sizes(size)
        assert sizes[-1] == size and sizes[0] >= 256
        ratios = np.array(sizes[1:]) / np.array(sizes[:-1])
        np.testing.assert_allclose(ratios, np.sqrt(2), rtol=0.01)
        assert sizes[0] / np.sqrt(2) < 256 + 1  # no smaller scale would still be >= 256
    assert auto_sizes(200) == (200,)  # already below 256: one scale
    assert auto_sizes(512, smallest=128) == (128, 181, 256, 362, 512)
    assert auto_sizes(512, smallest=300) == (362, 512)


def test_carry_over_adds_the_detail_the_coarse_size_cannot_hold():
    """x0 = clip(U x_prev + s - U D s): with the previous result equal to the start image at the
    coarse size (no coarse iterations) it is the start image itself; 'none' is U x_prev."""
    rng = np.random.default_rng(3)
    start = rng.uniform(size=(1, 3, 44, 60)).astype(np.float32)
    coarse_start = resize_to(start, (29, 40))  # D s
    np.testing.assert_allclose(carry_over(coarse_start, start), start, atol=1e-6)
    previous = rng.uniform(size=(1, 3, 29, 40)).astype(np.float32)
    np.testing.assert_array_equal(carry_over(previous, start, "none"),
                                  resize_to(previous, (44, 60)))
    x0 = carry_over(previous, start)
    assert x0.dtype == np.float32 and x0.shape == start.shape
    assert x0.min() >= 0.0 and x0.max() <= 1.0
    # unclipped entries: exactly the upsampled result plus the start image's high band
    expected = resize_to(previous, (44, 60)) + start - resize_to(coarse_start, (44, 60))
    inside = (expected > 0) & (expected < 1)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(x0[inside], expected[inside], atol=1e-6)
    with pytest.raises(MinistError, match="--scale-detail: unknown mode 'photo'"):
        carry_over(previous, start, "photo")


def test_iterations_and_schedule():
    assert scale_iterations(3, 100) == (100, 100, 100)
    assert scale_iterations(3, 100, [40, 20]) == (40, 20, 100)
    assert schedule(512, 50, None) == ((512,), (50,))
    assert schedule(512, 50, "auto").sizes == (256, 362, 512)
    assert schedule(512, 50, (256, 512), [10]).total == 60
    assert parse_sizes(" auto ") == "auto" and parse_sizes("128,256") == (128, 256)


@pytest.mark.parametrize("call, needle", [
    (lambda: parse_sizes("256,128"), "must increase"),
    (lambda: parse_sizes("big"), "expected 'auto' or sizes"),
    (lambda: parse_sizes("0,128"), "expected 'auto' or sizes"),
    (lambda: schedule(512, 50, (256, 384)), "the last size is the output size"),
    (lambda: schedule(512, 50, (256, 512), [1, 2]), "2 values for 1 coarser"),
    (lambda: schedule(512, 50, (256, 512), [-1]), ">= 0"),
    (lambda: schedule(512, 50, None, [3]), "needs --scales"),
    (lambda: blend_weights([1, 2], 3), "2 weights for 3 style images"),
    (lambda: blend_weights([1, -1], 2), ">= 0"),
    (lambda: blend_weights([0, 0], 2), "sum to 0"),
])
def test_bad_values_are_one_line(call, needle):
    with pytest.raises(MinistError, match=needle) as info:
        call()
    assert "\n" not in str(info.value)


def test_a_coarse_to_fine_run(net):
    """Each scale rebuilds its targets from the original images at its own size, starts from
    the previous result upsampled (Lanczos) plus the start image's finer detail, and logs its
    scale; iter restarts per scale."""
    content, style = _images()
    st = StyleTransfer(content, style, network=net, size=60, iters=3, scales="40,60",
                       scale_iters=[2], init="noise")
    assert st.schedule.sizes == (40, 60) and st.schedule.total == 5
    assert st.content_image.shape == (1, 3, 29, 40)
    coarse_terms = {t.key: t.target.shape for t in st.objective.terms}
    st.step()
    st.step()
    coarse_result = st.result()
    st.step()  # moves to 60 px first
    assert st.size == 60 and st.content_image.shape == (1, 3, 44, 60)
    fine_terms = {t.key: t.target.shape for t in st.objective.terms}
    content_key = next(k for k in fine_terms if k.kind == "content")
    assert fine_terms[content_key][1] > coarse_terms[content_key][1]
    st.run(iters=2)
    assert [(r.iter, r.scale) for r in st.history] == [(0, 40), (1, 40), (0, 60), (1, 60),
                                                      (2, 60)]
    # the fine scale started from the coarse result, upsampled, plus the noise's finer detail
    for detail in ("init", "none"):
        again = StyleTransfer(content, style, network=net, size=60, iters=3, scales="40,60",
                              scale_iters=[2], init="noise", scale_detail=detail)
        again.step()
        again.step()
        again._next_scale_if_due()
        start = initial_image("noise", again.content_image, style, seed=0)
        np.testing.assert_array_equal(again.result(), carry_over(coarse_result, start, detail))
    assert not np.array_equal(carry_over(coarse_result, start, "init"),
                              carry_over(coarse_result, start, "none"))
    # the same schedule again, in one call: the same image
    np.testing.assert_array_equal(
        StyleTransfer(content, style, network=net, size=60, iters=3, scales="40,60",
                      scale_iters=[2], init="noise").run(), st.result())


def test_auto_schedule_starts_where_the_layers_still_fit(net):
    """relu5_1 needs 16 px on the shorter side: a very wide image cannot start at 128 px."""
    content = np.random.default_rng(0).uniform(size=(1, 3, 30, 300)).astype(np.float32)
    style = np.random.default_rng(1).uniform(size=(1, 3, 64, 64)).astype(np.float32)
    st = StyleTransfer(content, style, network=net, size=300, scales="auto", iters=1,
                       content_layers=["relu4_2"], style_layers=["relu5_1"])
    first = st.schedule.sizes[0]
    assert round(30 * first / 300) >= 16 and first > 128


def test_blending_grams_and_blending_losses_have_the_same_gradient(net):
    """For sum w = 1: sum_i w_i E(G, A_i) and E(G, sum_i w_i A_i) differ by a constant."""
    from minist.losses import reference

    content, style = _images()
    rng = np.random.default_rng(3)
    other = rng.uniform(size=style.shape).astype(np.float32)
    x = rng.uniform(0.2, 0.8, size=content.shape).astype(np.float64)
    net64 = VGG(synthetic_weights("vgg19", CHANNELS), dtype=np.float64)
    layer = "relu2_1"
    grams = [reference.gram_matrix(net64.forward(img, [layer])[0][layer]) for img in (style, other)]
    w = (0.3, 0.7)
    blended = Objective([StyleTerm(layer, blended_gram(grams, w))], 0.0, 1.0)
    separate = Objective([StyleTerm(layer, A, weight=wi, style=i) for i, (A, wi)
                          in enumerate(zip(grams, w, strict=True))], 0.0, 1.0)
    e_b, e_s = blended.evaluate(net64, x), separate.evaluate(net64, x)
    np.testing.assert_allclose(e_b.grad, e_s.grad, rtol=1e-9, atol=1e-15)
    N = grams[0].shape[0]
    constant = (sum(wi * (A * A).sum() for A, wi in zip(grams, w, strict=True))
                - (blended_gram(grams, w) ** 2).sum()) / (4 * N * N)
    assert e_s.style - e_b.style == pytest.approx(constant, rel=1e-9)


def test_blend_one_zero_is_the_first_style_alone_bit_for_bit(net):
    content, style = _images()
    other = np.random.default_rng(4).uniform(size=(1, 3, 50, 30)).astype(np.float32)
    alone = StyleTransfer(content, style, network=net, size=60, iters=4, seed=2,
                          init="noise").run()
    blended = StyleTransfer(content, [style, other], network=net, size=60, iters=4, seed=2,
                            init="noise", style_blend=[1, 0]).run()
    np.testing.assert_array_equal(blended, alone)
    half = StyleTransfer(content, [style, other], network=net, size=60, iters=4, seed=2,
                         init="noise", style_blend=[1, 1]).run()
    assert not np.array_equal(half, alone)


def test_cli_several_styles_scales_and_snapshots(tiny_vgg_files, tmp_path, capsys):
    from minist.cli import main
    from minist.images import read_png_metadata, save_image

    content, style = _images()
    paths = {}
    for name, image in (("c", content), ("s1", style), ("s2", style[:, ::-1])):
        paths[name] = tmp_path / f"{name}.png"
        save_image(paths[name], image)
    out, log = tmp_path / "o.png", tmp_path / "run.jsonl"
    argv = ["stylize", paths["c"], paths["s1"], paths["s2"], "-o", out, "--weights",
            tiny_vgg_files["vgg19", "torchvision"], "--size", "48", "--iters", "2", "--quiet",
            "--style-blend", "3,1", "--scales", "32,48", "--scale-iters", "2", "--log", log,
            "--save-every", "1", "--content-layers", "relu2_1", "--style-layers",
            "relu1_1,relu2_1"]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(r["iter"], r["scale"]) for r in lines] == [(0, 32), (1, 32), (0, 48), (1, 48)]
    assert sorted(p.name for p in tmp_path.glob("o.scale*.png")) == [
        "o.scale0032.iter0001.png", "o.scale0032.iter0002.png", "o.scale0048.iter0001.png",
        "o.scale0048.iter0002.png"]
    meta = read_png_metadata(out)
    settings = json.loads(meta["minist:settings"])
    assert settings["style_blend"] == [3, 1] and settings["scales"] == [32, 48]
    assert settings["scale_detail"] == "init"
    assert json.loads(meta["minist:style"]) == [str(paths["s1"]), str(paths["s2"])]


@pytest.mark.parametrize("argv, needle", [
    (["--style-blend", "1,2,3"], "--style-blend: 3 weights for 2 style images"),
    (["--style-blend", "1,x"], "--style-blend: expected numbers"),
    (["--style-blend=-1,1"], "--style-blend: weights must be numbers >= 0"),
    (["--scales", "32,40"], "--scales: the last size is the output size"),
    (["--scales", "48,32"], "--scales: sizes must increase"),
    (["--scales", "32,48", "--scale-iters", "1,2"], "--scale-iters: 2 values for 1"),
    (["--scale-iters", "3"], "--scale-iters: needs --scales"),
    (["--scales", "32,48", "--scale-detail", "photo"], "--scale-detail: unknown mode 'photo'"),
])
def test_cli_bad_controls_are_one_line_and_write_nothing(tiny_vgg_files, tmp_path, capsys, argv,
                                                         needle):
    from minist.cli import main
    from minist.images import save_image

    content, style = _images()
    for name, image in (("c", content), ("s1", style), ("s2", style)):
        save_image(tmp_path / f"{name}.png", image)
    code = main(["stylize", str(tmp_path / "c.png"), str(tmp_path / "s1.png"),
                 str(tmp_path / "s2.png"), "-o", str(tmp_path / "o.png"), "--weights",
                 str(tiny_vgg_files["vgg19", "torchvision"]), "--size", "48", "--quiet", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and needle in err[0], err
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("control", ["luminance", "histogram", "masks"])
def test_the_other_controls_run_coarse_to_fine(net, control):
    """Colour control and masks at every scale: each scale rebuilds its view or guides, starts
    from the carried-over image, and the run ends at the output size with a finite loss."""
    content, style = _images()
    styles, extra = style, {"original_colors": control}
    if control == "masks":
        left = np.zeros((44, 60), np.float32)
        left[:, :30] = 1
        styles, extra = [style, style[:, ::-1]], {"content_masks": [left, 1 - left]}
    st = StyleTransfer(content, styles, network=net, size=60, iters=2, scales="40,60",
                       scale_iters=[2], content_layers=["relu2_1"],
                       style_layers=["relu1_1", "relu2_1"], **extra)
    out = st.run()
    assert [(r.iter, r.scale) for r in st.history] == [(0, 40), (1, 40), (0, 60), (1, 60)]
    assert out.shape == (1, 3, 44, 60) and np.isfinite(out).all()
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert all(np.isfinite(r.total) for r in st.history)
