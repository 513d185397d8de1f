"""The converted real VGG-16 (../shared) on a real photo: finite activations, and activations that
equal hand-computed 3x3 dot products (so layout, transposition and preprocessing are all right)."""

from __future__ import annotations

import numpy as np
import pytest

from minist.architectures import layer_names
from minist.images import load_image
from minist.preprocessing import preprocess_forward
from minist.vgg import VGG
from minist.weights.store import load_weights

pytestmark = pytest.mark.shared
RELUS = [name for name in layer_names("vgg16") if name.startswith("relu")]


@pytest.fixture(scope="module")
def tubingen_run(real_vgg16_file, shared_dir):
    weights = load_weights(real_vgg16_file)
    net = VGG(weights, dtype=np.float64)
    image = load_image(shared_dir / "data" / "images" / "tubingen.jpg", 128).astype(np.float64)
    layers = ["conv1_1", "pool1", "conv2_1", *RELUS]
    feats, _ = net.forward(image, layers)
    return weights, image, feats


def test_every_relu_is_finite_and_alive(tubingen_run):
    _, image, feats = tubingen_run
    assert image.shape == (1, 3, 96, 128)
    for name in RELUS:
        f = feats[name]
        assert np.isfinite(f).all(), name
        assert (f >= 0).all(), name
        assert 0.01 < (f > 0).mean() < 0.99, f"{name}: dead or saturated ReLUs"
    assert feats["relu5_3"].shape == (1, 512, 6, 8)


def _hand_conv(w, b, x, f, i, j):
    """y[f, i, j] for a 3x3, stride-1, pad-1 convolution, written out element by element."""
    C = x.shape[1]
    total = float(b[f])
    for c in range(C):
        for p in range(3):
            for q in range(3):
                r, s = i + p - 1, j + q - 1  # the input pixel under kernel tap (p, q)
                if 0 <= r < x.shape[2] and 0 <= s < x.shape[3]:
                    total += float(w[f, c, p, q]) * float(x[0, c, r, s])
    return total


def test_conv1_1_equals_a_hand_computed_dot_product(tubingen_run):
    weights, image, feats = tubingen_run
    w, b = weights.params["conv1_1"]
    x, _ = preprocess_forward(image, weights.preprocessing)  # (I - mean) / std, RGB
    for f, i, j in [(0, 40, 50), (17, 0, 0), (63, 95, 127)]:  # interior and both corners
        expected = _hand_conv(w, b, x, f, i, j)
        assert feats["conv1_1"][0, f, i, j] == pytest.approx(expected, rel=1e-9, abs=1e-9)
        assert feats["relu1_1"][0, f, i, j] == pytest.approx(max(expected, 0.0), rel=1e-9, abs=1e-9)


def test_conv2_1_equals_a_hand_computed_dot_product_over_64_channels(tubingen_run):
    weights, _, feats = tubingen_run
    w, b = weights.params["conv2_1"]
    expected = _hand_conv(w, b, feats["pool1"], 99, 20, 30)
    assert feats["conv2_1"][0, 99, 20, 30] == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_style_transfer_on_real_weights_is_reproducible_and_lowers_the_loss(real_vgg16_file,
                                                                           shared_dir):
    """Real VGG-16, real images, default layers: the same seed gives the same bits, and the
    loss falls; texture synthesis (content weight 0, noise init) lowers the style loss fast."""
    from minist.stylize import StyleTransfer
    from minist.vgg import VGG

    images = shared_dir / "data" / "images"
    net = VGG(load_weights(real_vgg16_file))
    runs = []
    for _ in range(2):
        st = StyleTransfer(images / "tubingen.jpg", images / "starry_night.jpg", network=net,
                           size=64, init="noise", noise_ratio=0.5, seed=11)
        runs.append((st.run(iters=4), st.history))
    assert runs[0][0].tobytes() == runs[1][0].tobytes()
    assert runs[0][1][-1].total < runs[0][1][0].total
    st = StyleTransfer(images / "tubingen.jpg", images / "starry_night.jpg", network=net,
                       size=64, content_weight=0.0, init="noise", seed=0)
    st.run(iters=60)
    assert st.history[0].style / st.history[-1].style > 20
