"""VGG forward/backward: layer tables, depth, accumulation, and finite differences on a tiny net."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_params

from minist.architectures import conv_layers, layer_names, layer_table
from minist.errors import MinistError
from minist.execution import ExecutionConfig
from minist.layers import ConvReluCache
from minist.preprocessing import CAFFE, TORCHVISION, postprocess, preprocess_forward
from minist.vgg import VGG, runnable_layers, vgg_backward, vgg_forward
from minist.weights.store import VGGWeights, load_weights

TINY = (2, 3, 3, 4, 4)


def test_layer_tables_have_the_standard_names():
    assert len(conv_layers("vgg16")) == 13 and len(conv_layers("vgg19")) == 16
    names19 = layer_names("vgg19")
    assert names19[:5] == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert names19[-3:] == ["conv5_4", "relu5_4", "pool5"]
    assert "conv5_4" not in layer_names("vgg16") and "relu5_3" in layer_names("vgg16")
    widths = {s.name: s.out_channels for s in layer_table("vgg19") if s.kind == "conv"}
    assert widths["conv1_1"] == 64 and widths["conv3_4"] == 256 and widths["conv5_1"] == 512


def _tiny(arch="vgg19", prep=TORCHVISION, dtype=np.float64, seed=0):
    params = random_params(arch, TINY, seed=seed, dtype=dtype)
    steps = runnable_layers(layer_table(arch, TINY), params)
    return params, steps, prep


def _loss(image, params, steps, prep, dys, pooling, config=None):
    feats, _ = vgg_forward(image, params, steps, prep, list(dys), pooling, config=config)
    return sum(float((feats[k] * dys[k]).sum()) for k in dys)


@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize("prep", [TORCHVISION, CAFFE], ids=["torchvision", "caffe"])
@pytest.mark.parametrize(("seed", "winograd"), [(0, False), (1, False), (2, True)])
def test_vgg_backward_matches_finite_differences(pooling, prep, seed, winograd):
    """Gradient w.r.t. the image through preprocessing, convs, ReLUs and pools, with gradients
    handed in at several depths at once (including one layer on the path of another). The
    tiny net's convolutions use im2col; ``winograd`` sends its 3x3 layers through Winograd
    F(4x4, 3x3) with the fused ReLU and masks, as a full-width VGG's are."""
    config = ExecutionConfig(winograd_min_channels=1 if winograd else 16)
    params, steps, prep = _tiny("vgg19", prep, seed=seed)
    rng = np.random.default_rng(100 + seed)
    image = rng.uniform(0.0, 1.0, (1, 3, 16, 20))
    layers = ["conv1_1", "relu1_2", "pool2", "relu3_1", "relu4_2", "conv5_1"]
    feats, cache = vgg_forward(image, params, steps, prep, layers, pooling, config=config)
    dys = {k: rng.standard_normal(v.shape) for k, v in feats.items()}
    grad = vgg_backward(dys, cache)
    assert grad.shape == image.shape and grad.dtype == np.float64

    h = 1e-6
    numeric = np.zeros_like(image)
    for idx in np.ndindex(image.shape):
        plus, minus = image.copy(), image.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (
            _loss(plus, params, steps, prep, dys, pooling, config)
            - _loss(minus, params, steps, prep, dys, pooling, config)
        ) / (2 * h)
    rel = np.abs(grad - numeric).max() / max(np.abs(grad).max() + np.abs(numeric).max(), 1e-300)
    assert rel < 1e-6


def test_forward_stops_at_the_deepest_requested_layer():
    params, steps, prep = _tiny()
    image = np.random.default_rng(0).uniform(size=(1, 3, 8, 8))
    _, cache = vgg_forward(image, params, steps, prep, ["relu2_1", "conv1_1"], "max")
    assert [spec.name for spec, _ in cache.layer_caches][-1] == "relu2_1"
    layers_run = sum(2 if isinstance(c, ConvReluCache) else 1  # a fused conv + ReLU: two
                     for _, c in cache.layer_caches)
    assert layers_run == layer_names("vgg19").index("relu2_1") + 1


def test_backward_accumulates_where_the_chain_passes():
    """Gradient of a sum of two layers' losses = sum of the two gradients taken separately."""
    params, steps, prep = _tiny()
    rng = np.random.default_rng(3)
    image = rng.uniform(size=(1, 3, 8, 8))
    feats, cache = vgg_forward(image, params, steps, prep, ["relu1_1", "relu3_1"], "max")
    g1 = rng.standard_normal(feats["relu1_1"].shape)
    g3 = rng.standard_normal(feats["relu3_1"].shape)
    both = vgg_backward({"relu1_1": g1, "relu3_1": g3}, cache)
    only1 = vgg_backward({"relu1_1": g1}, cache)
    only3 = vgg_backward({"relu3_1": g3}, cache)
    np.testing.assert_allclose(both, only1 + only3, rtol=1e-12, atol=1e-12)


def test_backward_rejects_layers_not_returned():
    params, steps, prep = _tiny()
    image = np.zeros((1, 3, 8, 8))
    feats, cache = vgg_forward(image, params, steps, prep, ["relu1_1"], "max")
    with pytest.raises(ValueError, match="relu2_1"):
        vgg_backward({"relu2_1": feats["relu1_1"]}, cache)


def test_preprocessing_round_trip_and_channel_order():
    image = np.random.default_rng(0).uniform(size=(1, 3, 4, 5))
    for prep in (TORCHVISION, CAFFE):
        x, _ = preprocess_forward(image, prep)
        np.testing.assert_allclose(postprocess(x, prep), image, atol=1e-12)
    x, _ = preprocess_forward(image, CAFFE)  # BGR: network channel 0 is the image's blue
    np.testing.assert_allclose(x[:, 0], image[:, 2] * 255.0 - 103.939)


def test_vgg_class_loads_tiny_file_and_checks_layers(tiny_vgg_files):
    net = VGG(load_weights(tiny_vgg_files["vgg16", "torchvision"]), pooling="avg")
    image = np.random.default_rng(0).uniform(size=(1, 3, 32, 32)).astype(np.float32)
    feats, cache = net.forward(image, ["relu1_1", "relu5_3"])
    assert feats["relu5_3"].dtype == np.float32 and feats["relu5_3"].shape[2:] == (2, 2)
    grad = net.backward({"relu5_3": np.ones_like(feats["relu5_3"])}, cache)
    assert grad.shape == image.shape and grad.dtype == np.float32 and np.isfinite(grad).all()
    assert net.minimum_input_size(["relu5_1"]) == 16
    with pytest.raises(MinistError, match="unknown layer 'relu5_4'"):
        net.check_layers(["relu5_4"])
    with pytest.raises(MinistError, match="needs at least 16 px"):
        net.forward(image[:, :, :8, :8], ["relu5_1"])
    with pytest.raises(MinistError, match="--pooling"):
        VGG(load_weights(tiny_vgg_files["vgg16", "torchvision"]), pooling="min")


def test_partial_weights_reach_only_their_layers():
    params = random_params("vgg19", TINY, layers=[c.name for c in conv_layers("vgg19")[:8]])
    weights = VGGWeights("vgg19", params, CAFFE, "partial (tests)", "none", TINY)
    net = VGG(weights)
    assert net.layer_names[-1] == "pool3"
    net.check_layers(["relu3_1", "pool3"])
    with pytest.raises(MinistError, match="deeper than the weights reach"):
        net.check_layers(["relu4_1"])


@pytest.mark.gpu
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_vgg_on_cupy_matches_numpy(pooling):
    """The same forward/backward code runs on CuPy (the array module follows the arrays)."""
    import cupy

    params, steps, prep = _tiny("vgg19", CAFFE)
    gpu_params = {k: (cupy.asarray(w), cupy.asarray(b)) for k, (w, b) in params.items()}
    rng = np.random.default_rng(5)
    image = rng.uniform(size=(1, 3, 32, 24))
    layers = ["relu1_1", "pool2", "relu3_1", "relu4_2", "relu5_1"]
    feats, cache = vgg_forward(image, params, steps, prep, layers, pooling)
    gfeats, gcache = vgg_forward(cupy.asarray(image), gpu_params, steps, prep, layers, pooling)
    dys = {k: rng.standard_normal(v.shape) for k, v in feats.items()}
    grad = vgg_backward(dys, cache)
    ggrad = vgg_backward({k: cupy.asarray(v) for k, v in dys.items()}, gcache)
    assert isinstance(ggrad, cupy.ndarray)
    for k in layers:
        np.testing.assert_allclose(cupy.asnumpy(gfeats[k]), feats[k], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(cupy.asnumpy(ggrad), grad, rtol=1e-9, atol=1e-12)


@pytest.mark.gpu
def test_vgg_backward_on_cupy_matches_finite_differences():
    import cupy

    params, steps, prep = _tiny("vgg16", TORCHVISION, seed=3)
    gpu_params = {k: (cupy.asarray(w), cupy.asarray(b)) for k, (w, b) in params.items()}
    rng = np.random.default_rng(9)
    image = cupy.asarray(rng.uniform(size=(1, 3, 16, 16)))
    layers = ["relu2_2", "relu5_3"]
    feats, cache = vgg_forward(image, gpu_params, steps, prep, layers, "max")
    dys = {k: cupy.asarray(rng.standard_normal(v.shape)) for k, v in feats.items()}
    grad = cupy.asnumpy(vgg_backward(dys, cache))

    def loss(x):
        f, _ = vgg_forward(x, gpu_params, steps, prep, layers, "max")
        return sum(float((f[k] * dys[k]).sum()) for k in layers)

    h = 1e-6
    numeric = np.zeros(image.shape)
    for idx in np.ndindex(*image.shape):
        plus, minus = image.copy(), image.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric[idx] = (loss(plus) - loss(minus)) / (2 * h)
    rel = np.abs(grad - numeric).max() / (np.abs(grad).max() + np.abs(numeric).max())
    assert rel < 1e-6


@pytest.mark.gpu
def test_vgg_class_on_cuda_device(tiny_vgg_files):
    import cupy

    net = VGG(load_weights(tiny_vgg_files["vgg19", "caffe"]), device="cuda")
    image = np.random.default_rng(0).uniform(size=(1, 3, 32, 32)).astype(np.float32)
    feats, cache = net.forward(image, ["relu5_1"])
    assert isinstance(feats["relu5_1"], cupy.ndarray) and feats["relu5_1"].dtype == np.float32
    cpu = VGG(load_weights(tiny_vgg_files["vgg19", "caffe"]), device="cpu")
    cfeats, _ = cpu.forward(image, ["relu5_1"])
    np.testing.assert_allclose(
        cupy.asnumpy(feats["relu5_1"]), cfeats["relu5_1"], rtol=2e-4, atol=1e-4
    )
