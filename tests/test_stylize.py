"""The style transfer loop and API on tiny random networks (fast), and on the real VGG-16."""

from __future__ import annotations

import numpy as np
import pytest

from minist.errors import MinistError
from minist.stylize import StyleTransfer, StylizeOptions, stylize

LAYERS = dict(content_layers=["relu3_1"], style_layers=["relu1_1", "relu2_1", "relu3_1"])


def _images(seed=0, shape=(1, 3, 24, 32)):
    rng = np.random.default_rng(seed)
    content = rng.uniform(size=shape).astype(np.float32)
    style = rng.uniform(size=(1, 3, 20, 20)).astype(np.float32)
    return content, style


def _transfer(tiny_vgg_files, **options):
    content, style = _images()
    options = {"weights": tiny_vgg_files["vgg19", "torchvision"], "size": 32, **LAYERS, **options}
    return StyleTransfer(content, style, **options)


@pytest.mark.parametrize("optimizer", ["gd", "adam", "lbfgs"])
def test_each_optimizer_lowers_the_loss(tiny_vgg_files, optimizer):
    lr = {"gd": 1e-3, "adam": 0.02, "lbfgs": None}[optimizer]
    st = _transfer(tiny_vgg_files, optimizer=optimizer, lr=lr, init="noise")
    st.run(iters=30)
    first, last = st.history[0].total, st.history[-1].total
    assert last < 0.5 * first, (optimizer, first, last)
    image = st.result()
    assert image.dtype == np.float32 and image.min() >= 0.0 and image.max() <= 1.0


def test_same_seed_gives_bit_identical_images(tiny_vgg_files):
    a = _transfer(tiny_vgg_files, init="noise", seed=7).run(iters=8)
    b = _transfer(tiny_vgg_files, init="noise", seed=7).run(iters=8)
    c = _transfer(tiny_vgg_files, init="noise", seed=8).run(iters=8)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_log_records_describe_the_starting_image(tiny_vgg_files):
    st = _transfer(tiny_vgg_files, content_weight=2.0, style_weight=5.0, tv_weight=0.5)
    start = st.image.copy()
    record = st.step()
    e = st.problem(start)  # the image the step started from, evaluated again
    assert record.iter == 0 and record.total == e.loss
    assert record.total == pytest.approx(2.0 * e.content + 5.0 * e.style + 0.5 * e.tv)
    assert record.content == 0.0  # init = content: the content loss starts at zero
    assert record.style > 0 and record.tv > 0 and record.seconds > 0


def test_gradient_of_the_whole_objective_matches_finite_differences(tiny_vgg_files):
    """The assembled Eq. 7 (normalised, with TV) against central differences, in float64."""
    from minist.vgg import VGG
    from minist.weights.store import load_weights

    net = VGG(load_weights(tiny_vgg_files["vgg16", "caffe"]), dtype=np.float64)
    content, style = _images(shape=(1, 3, 12, 12))
    st = StyleTransfer(
        content, style, network=net, size=12, tv_weight=0.1, style_weight=10.0, **LAYERS
    )
    x = np.random.default_rng(1).uniform(0.2, 0.8, size=(1, 3, 12, 12))
    grad = st.evaluate(x).grad
    rng = np.random.default_rng(2)
    for idx in [tuple(rng.integers(0, n) for n in x.shape) for _ in range(12)]:
        h = 1e-6
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric = (st.evaluate(plus).total - st.evaluate(minus).total) / (2 * h)
        assert grad[idx] == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def test_normalisation_makes_losses_independent_of_feature_scale(tiny_vgg_files):
    """Scaling every conv weight by k scales relu features by k^n; normalised losses don't move."""
    from minist.vgg import VGG
    from minist.weights.store import load_weights

    base = load_weights(tiny_vgg_files["vgg19", "torchvision"])
    k = 3.0
    # the n-th conv's output scales by k^n when every weight is scaled by k and its bias by k^n
    params = {
        name: (w * k, b * k ** (n + 1)) for n, (name, (w, b)) in enumerate(base.params.items())
    }
    scaled = base._replace(params=params)
    content, style = _images()
    losses = []
    for weights in (base, scaled):
        net = VGG(weights, dtype=np.float64)
        st = StyleTransfer(
            content,
            style,
            network=net,
            size=32,
            init="noise",
            seed=5,
            content_layers=["conv1_1"],
            style_layers=["conv1_1"],
        )
        e = st.evaluate(st.image)
        losses.append((e.content, e.style))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-6)  # unnormalised: 3x and 81x


def test_init_options(tiny_vgg_files, tmp_path):
    from minist.images import save_image

    content, style = _images()
    st = _transfer(tiny_vgg_files, init="content")
    np.testing.assert_array_equal(st.image, st.content_image)
    st = _transfer(tiny_vgg_files, init="noise", seed=3)
    assert 0.4 < float(st.image.mean()) < 0.6 and st.image.shape == st.content_image.shape
    st = _transfer(tiny_vgg_files, init="style")
    assert st.image.shape == st.content_image.shape
    path = tmp_path / "start.png"
    save_image(path, np.full((1, 3, 10, 10), 0.25, np.float32))
    st = _transfer(tiny_vgg_files, init=str(path))
    np.testing.assert_allclose(st.image, 64 / 255, atol=1e-6)
    st = _transfer(tiny_vgg_files, init="content", noise_ratio=0.5, seed=1)
    assert not np.array_equal(st.image, st.content_image)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("size", 0, "--size"),
        ("iters", -1, "--iters"),
        ("optimizer", "sgd", "--optimizer"),
        ("lr", -1.0, "--lr"),
        ("style_weight", float("nan"), "--style-weight"),
        ("pooling", "min", "--pooling"),
        ("init", "nonexistent.png", "--init"),
        ("noise_ratio", 2.0, "--noise-ratio"),
        ("device", "tpu", "--device"),
        ("style_layer_weights", [1.0], "--style-layer-weights"),
    ],
)
def test_invalid_options_name_the_option(option, value, message):
    with pytest.raises(MinistError, match=message):
        StylizeOptions(**{option: value}).validated()


def test_bad_layers_and_small_images(tiny_vgg_files):
    with pytest.raises(MinistError, match="unknown layer 'relu9_1'"):
        _transfer(tiny_vgg_files, style_layers=["relu9_1"])
    content, style = _images(shape=(1, 3, 8, 8))
    with pytest.raises(MinistError, match="needs at least 16 px"):
        StyleTransfer(content, style, weights=tiny_vgg_files["vgg19", "torchvision"], size=8,
                      style_layers=["relu1_1", "relu5_1"])
    with pytest.raises(MinistError, match="unknown option"):
        stylize(content, style, colour=1)


def test_missing_weights_say_how_to_get_them(tmp_path):
    content, style = _images()
    with pytest.raises(MinistError, match="minist weights fetch vgg19"):
        StyleTransfer(content, style, weights=tmp_path / "none.h5")


def test_default_weights_fetched_and_failure_explained(tmp_path, monkeypatch):
    """weights/vgg19.h5 missing: minist tries to fetch it; offline, one line says what to do."""
    import minist.weights.fetch as fetch

    monkeypatch.chdir(tmp_path)
    calls = []

    def offline(*args, **kwargs):
        calls.append((args, kwargs))
        raise MinistError("download of https://example/vgg19.h5 failed (no network)")

    monkeypatch.setattr(fetch, "fetch_weights", offline)
    content, style = _images()
    with pytest.raises(MinistError, match="fetching it failed.*minist weights convert"):
        StyleTransfer(content, style)
    assert calls and calls[0][0] == ("vgg19",)


def test_content_only_and_style_only_runs(tiny_vgg_files):
    """A content reconstruction (no style layers) and a texture synthesis (no content layers)."""
    st = _transfer(tiny_vgg_files, style_weight=0.0, style_layers=[], init="noise", seed=5)
    st.run(iters=5)
    assert st.history[-1].content < st.history[0].content and st.history[0].style == 0.0
    st = _transfer(tiny_vgg_files, content_weight=0.0, content_layers=[], init="noise")
    st.run(iters=5)
    assert st.history[-1].style < st.history[0].style and st.history[0].content == 0.0


def test_loss_gradients_are_computed_when_the_backward_reaches_them(tiny_vgg_files):
    """The backward asks for each layer's gradient once, deepest first; asking is what computes
    it (and its loss), so only one feature-sized gradient exists at a time."""
    from minist.objective import LayerGradients

    st = _transfer(tiny_vgg_files)
    asked = []
    real = LayerGradients.gradient_at

    def spy(self, layer):
        grad = real(self, layer)
        if grad is not None:
            asked.append((layer, self.style))
        return grad

    orig = st.problem(st.image)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(LayerGradients, "gradient_at", spy)
        again = st.problem(st.image)
    assert [name for name, _ in asked] == ["relu3_1", "relu2_1", "relu1_1"]
    assert 0 < asked[0][1] < asked[1][1] < asked[2][1]  # losses add up as layers are reached
    assert again.loss == orig.loss and again.parts == orig.parts
    np.testing.assert_array_equal(again.grad, orig.grad)

    feats, _ = st.net.forward(st.image, ["relu1_1", "relu2_1", "relu3_1"])
    grads = LayerGradients(st.objective, feats)
    assert grads.layers == ("relu3_1", "relu1_1", "relu2_1")  # content's first, then style's
    assert grads.gradient_at("conv1_1") is None and grads.style == 0.0  # no work
    assert grads.gradient_at("relu2_1").shape == feats["relu2_1"].shape
    with pytest.raises(RuntimeError, match="already"):
        grads.gradient_at("relu2_1")
    grads.finish()
    assert grads.style == pytest.approx(orig.style) and grads.content == orig.content


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_an_image_edited_in_place_is_evaluated_anew(tiny_vgg_files, optimizer):
    """No memo by object identity: after ``run.image`` is changed in place, the next step logs
    (and steps from) the losses of the edited image, not those the optimizer kept."""
    st = _transfer(tiny_vgg_files, optimizer=optimizer, tv_weight=0.5)
    st.step()
    st.step()
    kept = st.optimizer.evaluate(st.image, st.problem)  # L-BFGS: kept from its line search
    st.image[:, :, :8, :8] = 0.5  # in place
    edited = st.image.copy()
    record = st.step()
    expected = st.problem(edited)
    assert record.total == expected.loss != kept.loss
    assert (record.content, record.style, record.tv) == expected.parts
