"""Masks for spatial control (minist.masks): reading them, resizing, propagating them to every
style layer of the network's own layer table (simple and inside), normalising, the terms they
give, one-line errors for bad masks, and a two-painting run on the real VGG-16 whose halves
each end up closer to their own painting."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import TINY_CHANNELS, random_params
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from minist.architectures import layer_table
from minist.errors import MinistError
from minist.losses import reference
from minist.masks import (
    DEFAULT_MASK_MODE,
    MASK_MODES,
    check_mask_mode,
    check_masks,
    guided_style_terms,
    layer_shapes,
    load_mask,
    normalise_guide,
    propagate_mask,
    resize_mask,
)
from minist.objective import Objective, build_terms, style_normaliser
from minist.preprocessing import TORCHVISION
from minist.vgg import VGG
from minist.weights.store import VGGWeights

FAST = settings(max_examples=20, deadline=None)
STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
EVERY_LAYER = [spec.name for spec in layer_table("vgg19", TINY_CHANNELS)]


@pytest.fixture(scope="module")
def net():
    weights = VGGWeights("vgg19", random_params("vgg19", seed=2), TORCHVISION, "random", "none",
                         TINY_CHANNELS)
    return VGG(weights)


# --- reading, checking and resizing masks ------------------------------------------------------


def test_load_mask_keeps_grey_values_and_takes_the_luminance_of_colour(tmp_path):
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    mask = load_mask(tmp_path / "grey.png")
    assert mask.dtype == np.float32 and mask.shape == (16, 16)
    np.testing.assert_array_equal(mask, grey / np.float32(255))

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(tmp_path / "colour.png")
    mask = load_mask(tmp_path / "colour.png")
    luma = rgb @ np.array([0.299, 0.587, 0.114]) / 255
    np.testing.assert_allclose(mask, luma, atol=1e-6)
    pillow = np.asarray(Image.fromarray(rgb, "RGB").convert("L")) / 255  # Pillow rounds to 8 bits
    np.testing.assert_allclose(mask, pillow, atol=0.6 / 255)
    assert mask.min() >= 0.0 and mask.max() <= 1.0


def test_bad_mask_files_are_one_line_naming_the_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(black)
    for path, problem in ((text, "not an image"), (black, "empty"),
                          (tmp_path / "missing.png", "not found")):
        with pytest.raises(MinistError) as err:
            load_mask(path)
        message = str(err.value)
        assert str(path) in message and problem in message and "\n" not in message
    almost = tmp_path / "almost.png"
    dark = np.zeros((8, 8), np.uint8)
    dark[3, 4] = 1  # one pixel above black: a (tiny) region, not an empty mask
    Image.fromarray(dark, "L").save(almost)
    assert load_mask(almost).max() == pytest.approx(1 / 255)


def test_mask_counts_and_modes_are_checked_in_one_line():
    assert check_masks(("a", "b"), 2) == ["a", "b"]
    with pytest.raises(MinistError, match=r"^--content-masks: 1 mask for 2 style images; give "):
        check_masks(["a"], 2)
    with pytest.raises(MinistError, match=r"^--style-masks: 3 masks for 1 style image;"):
        check_masks(["a", "b", "c"], 1, "--style-masks")
    assert DEFAULT_MASK_MODE in MASK_MODES and check_mask_mode("inside") == "inside"
    with pytest.raises(MinistError, match="--mask-mode: unknown mode 'outside'"):
        check_mask_mode("outside")


def test_guided_style_terms_checks_the_number_of_masks(net):
    style = np.full((1, 3, 16, 16), 0.5, np.float32)
    mask = np.ones((16, 16), np.float32)
    with pytest.raises(MinistError, match="--content-masks: 1 mask for 2 style images"):
        guided_style_terms(net, [style, style], [mask], None, STYLE)
    with pytest.raises(MinistError, match="--style-masks: 2 masks for 1 style image"):
        guided_style_terms(net, [style], [mask], [None, None], STYLE)


@FAST
@given(h=st.integers(1, 40), w=st.integers(1, 40), H=st.integers(1, 40), W=st.integers(1, 40),
       seed=st.integers(0, 2**32 - 1))
def test_resize_mask_stays_in_range_and_keeps_full_masks_full(h, w, H, W, seed):
    mask = np.random.default_rng(seed).uniform(size=(h, w)).astype(np.float32)
    out = resize_mask(mask, (H, W))
    assert out.shape == (H, W) and out.dtype == np.float32
    assert mask.min() - 1e-6 <= out.min() and out.max() <= mask.max() + 1e-6  # no ringing
    np.testing.assert_allclose(resize_mask(np.ones((h, w)), (H, W)), 1.0, atol=1e-6)
    same = resize_mask(mask, (h, w))
    np.testing.assert_array_equal(same, mask)
    assert same is not mask


def test_resize_mask_keeps_a_half_mask_half():
    left = np.zeros((30, 40), np.float32)
    left[:, :20] = 1
    out = resize_mask(left, (45, 64))
    assert out[:, :31].min() > 0.99 and out[:, 33:].max() < 0.01
    assert out.mean() == pytest.approx(0.5, abs=0.01)


# --- propagation to the layers -----------------------------------------------------------------


@FAST
@given(H=st.integers(32, 75), W=st.integers(32, 75), mode=st.sampled_from(MASK_MODES))
def test_guides_have_each_layers_shape_for_odd_sizes(net, H, W, mode):
    """The guide of every layer (conv, relu and pool alike) has the shape of that layer's
    activation in a real forward pass, odd sizes included (the pools floor)."""
    image = np.full((1, 3, H, W), 0.5, np.float32)
    feats, _ = net.forward(image, EVERY_LAYER)
    mask = np.random.default_rng(H * W).uniform(size=(H, W)).astype(np.float32)
    guides = propagate_mask(mask, net, EVERY_LAYER, mode)
    shapes = layer_shapes(net, (H, W), EVERY_LAYER)
    assert list(guides) == EVERY_LAYER
    for name in EVERY_LAYER:
        assert guides[name].shape == feats[name].shape[2:] == shapes[name], name
        assert guides[name].min() >= 0.0 and guides[name].max() <= 1.0


def _receptive_fields(steps):
    """{layer: (start, size, jump)}: unit u of the layer sees input rows/columns
    start + u * jump ... start + u * jump + size - 1 (before clipping to the image)."""
    start, size, jump, fields = 0, 1, 1, {}
    for spec in steps:
        if spec.kind == "conv":  # 3x3, pad 1: one more unit of this layer on each side
            start, size = start - jump, size + 2 * jump
        elif spec.kind == "pool":  # 2x2, stride 2
            size, jump = size + jump, 2 * jump
        fields[spec.name] = (start, size, jump)
    return fields


def _inside(n_units, n_pixels, lo, hi, field):
    """For each unit along one axis: does its receptive field, clipped to the image, lie in
    the pixel range [lo, hi)?"""
    start, size, jump = field
    first = np.maximum(start + jump * np.arange(n_units), 0)
    last = np.minimum(start + jump * np.arange(n_units) + size - 1, n_pixels - 1)
    return (first >= lo) & (last < hi)


@FAST
@given(H=st.integers(16, 70), W=st.integers(16, 70), data=st.data())
def test_inside_keeps_exactly_the_units_whose_receptive_field_is_inside(H, W, data):
    """A rectangle [r0, r1) x [c0, c1): the inside guide is 1 exactly where the unit's receptive
    field (clipped to the image: the padding does not count) lies in the rectangle."""
    r0 = data.draw(st.integers(0, H - 1))
    r1 = data.draw(st.integers(r0 + 1, H))
    c0 = data.draw(st.integers(0, W - 1))
    c1 = data.draw(st.integers(c0 + 1, W))
    mask = np.zeros((H, W), np.float32)
    mask[r0:r1, c0:c1] = 1.0
    steps = layer_table("vgg16")
    guides = propagate_mask(mask, steps, [s.name for s in steps], "inside")
    fields = _receptive_fields(steps)
    for name, T in guides.items():
        rows = _inside(T.shape[0], H, r0, r1, fields[name])
        cols = _inside(T.shape[1], W, c0, c1, fields[name])
        np.testing.assert_array_equal(T, np.outer(rows, cols).astype(np.float32), err_msg=name)


def test_inside_full_mask_stays_full_and_half_mask_shrinks_by_the_receptive_field():
    steps = layer_table("vgg16")
    full = propagate_mask(np.ones((96, 128), np.float32), steps, STYLE, "inside")
    assert all(T.min() == 1.0 for T in full.values())
    left = np.zeros((96, 128), np.float32)
    left[:, :64] = 1.0
    fields = _receptive_fields(steps)
    for name, T in propagate_mask(left, steps, STYLE, "inside").items():
        start, size, jump = fields[name]
        kept = int(T[T.shape[0] // 2].sum())  # units per row whose field ends left of column 64
        u = np.arange(T.shape[1])
        assert kept == int(np.sum(start + u * jump + size - 1 < 64)), name
        assert kept < 64 // jump  # fewer than the units of the half
    simple = propagate_mask(left, steps, STYLE, "simple")
    assert all(T[:, : T.shape[1] // 2].min() == 1 and T[:, T.shape[1] // 2:].max() == 0
               for T in simple.values())  # a border on a block edge: simple keeps the halves


@FAST
@given(H=st.integers(16, 40), W=st.integers(16, 40), seed=st.integers(0, 2**32 - 1))
def test_simple_guide_is_the_block_average_and_both_modes_are_monotone(H, W, seed):
    rng = np.random.default_rng(seed)
    small = rng.uniform(size=(H, W)).astype(np.float32)
    large = np.minimum(small + rng.uniform(0, 0.5, size=(H, W)).astype(np.float32), 1)
    steps = layer_table("vgg19", TINY_CHANNELS)
    guides = propagate_mask(small, steps, STYLE, "simple")
    for p, name in enumerate(STYLE):  # p poolings before relu{p+1}_1
        b = 2**p
        h, w = guides[name].shape
        blocks = small[: h * b, : w * b].reshape(h, b, w, b).mean(axis=(1, 3))
        np.testing.assert_allclose(guides[name], blocks, rtol=1e-5, atol=1e-6)
    for mode in MASK_MODES:
        lo = propagate_mask(small, steps, STYLE, mode)
        hi = propagate_mask(large, steps, STYLE, mode)
        assert all(np.all(lo[n] <= hi[n]) for n in STYLE), mode
        if mode == "inside":
            assert all(np.all(lo[n] <= guides[n] + 1e-6) for n in STYLE)  # erosion <= average


@FAST
@given(H=st.integers(16, 60), W=st.integers(16, 60), seed=st.integers(0, 2**32 - 1))
def test_the_modes_agree_where_the_mask_is_constant_over_the_receptive_field(H, W, seed):
    rng = np.random.default_rng(seed)
    blocks = rng.uniform(size=(3, 3)) < 0.5  # a coarse 0/1 pattern: large constant areas
    mask = np.kron(blocks, np.ones((-(-H // 3), -(-W // 3))))[:H, :W].astype(np.float32)
    steps = layer_table("vgg16")
    simple = propagate_mask(mask, steps, STYLE, "simple")
    inside = propagate_mask(mask, steps, STYLE, "inside")
    fields = _receptive_fields(steps)
    constant = 0  # positions whose field sees one value: there the modes must agree
    for name in STYLE:
        start, size, jump = fields[name]
        h, w = simple[name].shape
        for i in range(h):
            r0, r1 = max(start + i * jump, 0), min(start + i * jump + size, H)
            for j in range(w):
                c0, c1 = max(start + j * jump, 0), min(start + j * jump + size, W)
                seen = mask[r0:r1, c0:c1]
                if seen.min() == seen.max():
                    constant += 1
                    assert simple[name][i, j] == inside[name][i, j] == seen[0, 0], (name, i, j)
        assert np.all(inside[name] <= simple[name])
    assert constant > 0  # not vacuous: relu1_1 sees 3 x 3 px of blocks of >= 6 x 6 px


def test_guides_are_new_arrays_and_boolean_masks_work():
    mask = np.zeros((20, 20), bool)
    mask[:, :10] = True
    guides = propagate_mask(mask, layer_table("vgg16"), ["conv1_1", "relu1_1"], "inside")
    assert guides["conv1_1"] is not guides["relu1_1"] and guides["conv1_1"].dtype == np.float32
    as_float = mask.astype(np.float32)
    simple = propagate_mask(as_float, layer_table("vgg16"), ["relu1_1"], "simple")["relu1_1"]
    assert not np.shares_memory(simple, as_float)
    np.testing.assert_array_equal(guides["relu1_1"][:, :9], 1.0)
    np.testing.assert_array_equal(guides["relu1_1"][:, 9:], 0.0)


def test_propagation_names_an_unknown_layer():
    with pytest.raises(MinistError, match="no layer 'relu9_1'"):
        propagate_mask(np.ones((8, 8)), layer_table("vgg16"), ["relu1_1", "relu9_1"])


# --- normalisation and empty guides ------------------------------------------------------------


@FAST
@given(M=st.integers(1, 50), scale=st.floats(0.01, 100), seed=st.integers(0, 2**32 - 1))
def test_normalised_guides_have_unit_mean_square_whatever_their_scale(M, scale, seed):
    T = np.random.default_rng(seed).uniform(size=M) * (np.arange(M) % 3 != 0)
    T[0] = 0.5  # not all zero
    N = normalise_guide(T)
    assert np.mean(N**2) == pytest.approx(1.0, rel=1e-12)
    np.testing.assert_allclose(normalise_guide(scale * T), N, rtol=1e-12)
    assert normalise_guide(T.astype(np.float32)).dtype == np.float32


def test_an_empty_guide_stays_zero_and_its_layer_is_left_out(net):
    assert not normalise_guide(np.zeros((3, 4))).any()
    assert not np.isnan(normalise_guide(np.zeros(5, np.float32))).any()
    H, W = 17, 19
    style = np.random.default_rng(0).uniform(size=(1, 3, 16, 16)).astype(np.float32)
    edge = np.zeros((H, W), np.float32)
    edge[:, -1] = 1.0  # only the odd last column: the first pooling drops it
    guides = propagate_mask(edge, net, STYLE, "simple")
    assert guides["relu1_1"].any() and not any(guides[n].any() for n in STYLE[1:])
    terms = guided_style_terms(net, [style], [edge], None, STYLE, mode="simple",
                               content_shape=(H, W))
    assert [t.layer for t in terms] == ["relu1_1"]
    assert all(np.isfinite(t.target).all() and np.isfinite(t.guide).all() for t in terms)
    dot = np.zeros((H, W), np.float32)
    dot[8, 9] = 1.0  # one pixel: no 3x3 window lies inside it
    with pytest.raises(MinistError, match="mask 1: its region .* --mask-mode simple"):
        guided_style_terms(net, [style], [dot], None, STYLE, mode="inside", content_shape=(H, W))


def test_terms_carry_guided_targets_guides_weights_and_scales(net):
    H, W = 20, 24
    rng = np.random.default_rng(4)
    styles = [rng.uniform(size=(1, 3, 18, 22)).astype(np.float32),
              rng.uniform(size=(1, 3, 16, 16)).astype(np.float32)]
    top = np.zeros((10, 12), np.float32)  # drawn at another size: resized to (H, W)
    top[:5] = 1.0
    style_mask = np.zeros((18, 22), np.float32)
    style_mask[:, 11:] = 1.0
    weights = [0.1, 0.2, 0.3, 0.2, 0.2]
    terms = guided_style_terms(net, styles, [top, 1 - top], [style_mask, None], STYLE, weights,
                               normalize=True, mode="simple", content_shape=(H, W))
    assert [(t.layer, t.style, t.region) for t in terms] == (
        [(n, 0, 0) for n in STYLE] + [(n, 1, 1) for n in STYLE])
    content_guides = propagate_mask(resize_mask(top, (H, W)), net, STYLE, "simple")
    style_guides = propagate_mask(style_mask, net, STYLE, "simple")
    feats, _ = net.forward(styles[0], STYLE)
    for term, w in zip(terms[:5], weights, strict=True):
        T = normalise_guide(content_guides[term.layer]).ravel()
        np.testing.assert_allclose(term.guide, T, rtol=1e-6)
        A = reference.guided_gram_matrix(feats[term.layer],
                                         normalise_guide(style_guides[term.layer]))
        np.testing.assert_allclose(term.target, A, rtol=1e-5, atol=1e-7)
        assert term.weight == w and term.normaliser == pytest.approx(style_normaliser(A), rel=1e-6)
        assert term.guide.dtype == np.float32 and term.target.dtype == np.float32
    unnormalised = guided_style_terms(net, styles, [top, 1 - top], None, STYLE,
                                      normalize=False, content_shape=(H, W))
    assert all(t.normaliser == 1.0 for t in unnormalised)


# --- the two-painting run on the real VGG-16 ---------------------------------------------------


@pytest.mark.shared
@pytest.mark.slow
def test_each_half_takes_the_style_of_its_own_painting(real_vgg16_file, shared_dir):
    """Left half: The Starry Night, right half: The Scream. After a short L-BFGS run from the
    photo, each region's guided style loss (normalised, all style layers) is lower against its
    own painting than against the other -- while the photo itself starts closer to The Starry
    Night in *both* halves, so the right half has to move."""
    from minist.images import load_image
    from minist.optim import make_optimizer
    from minist.weights.store import load_weights

    net = VGG(load_weights(real_vgg16_file))
    images = shared_dir / "data" / "images"
    size = 64
    content = load_image(images / "tubingen.jpg", size)
    paintings = [load_image(images / name, size) for name in ("starry_night.jpg",
                                                              "the_scream.jpg")]
    H, W = content.shape[2:]
    left = np.zeros((H, W), np.float32)
    left[:, : W // 2] = 1.0  # the masks from the image's width
    masks = [left, 1.0 - left]
    terms = guided_style_terms(net, paintings, masks, None, STYLE, content_shape=(H, W))
    terms += build_terms(net, content, None, ["relu4_2"], [])
    objective = Objective(terms, content_weight=1.0, style_weight=1e3)

    painting_grams = [{n: reference.gram_matrix(f) for n, f in net.forward(p, STYLE)[0].items()}
                      for p in paintings]
    guides = [{n: normalise_guide(T) for n, T in propagate_mask(m, net, STYLE).items()}
              for m in masks]

    def distances(image):
        """d[r][s]: region r of ``image`` against painting s, mean over layers of the
        normalised guided style loss sum (G_T - A)^2 / sum A^2."""
        feats, _ = net.forward(image, STYLE)
        return [[np.mean([float(reference.guided_style_layer_loss(feats[n], A[n], g[n])[0])
                          * style_normaliser(A[n]) for n in STYLE]) for A in painting_grams]
                for g in guides]

    start = distances(content)
    assert start[0][0] < start[0][1] and start[1][0] < start[1][1]  # the photo: Starry Night

    def f(x):
        return objective.evaluate(net, x)  # unpacks as (loss, grad)

    optimizer = make_optimizer("lbfgs")
    x = content.copy()
    for _ in range(15):
        x = optimizer.step(x, f)
    d = distances(x)
    assert d[0][0] < 0.8 * d[0][1], d  # left: closer to The Starry Night
    assert d[1][1] < 0.8 * d[1][0], d  # right: closer to The Scream
    assert d[1][1] < start[1][1], (start, d)
