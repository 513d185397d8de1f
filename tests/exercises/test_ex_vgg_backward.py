"""Exercise ex_vgg_backward: ``minist.vgg.vgg_backward`` (lesson 03).

On a tiny random VGG in float64 the gradient with respect to the RGB image of
``sum_l <g_l, x_l>`` -- gradients handed in at several depths at once, some on the path of
others -- must match central finite differences of ``vgg_forward``; the backward must be linear
in the handed-in gradients (the accumulation rule) and leave them unchanged.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_params
from diagnose import expect, expect_close, expect_gradient, expect_shape
from gradcheck import numerical_gradient
from numba_threads import one_numba_thread  # noqa: F401 (autouse fixture)

from minist.architectures import layer_table
from minist.preprocessing import CAFFE, TORCHVISION
from minist.vgg import runnable_layers, vgg_backward, vgg_forward

pytestmark = pytest.mark.ex_vgg_backward

TINY = (2, 3, 3, 4, 4)  # channels per block: small enough for finite differences
LAYERS = ["conv1_1", "relu1_2", "pool1", "relu2_1", "conv3_1"]


def _net(arch="vgg16", seed=0):
    params = random_params(arch, TINY, seed=seed, dtype=np.float64)
    return params, runnable_layers(layer_table(arch, TINY), params)


def _objective(params, steps, prep, pooling, grads):
    """``image -> sum_l <g_l, x_l>``, the scalar whose gradient the backward computes."""

    def f(image):
        feats, _ = vgg_forward(image, params, steps, prep, list(grads), pooling)
        return sum(np.sum(feats[name] * g) for name, g in grads.items())

    return f


@pytest.mark.parametrize(("pooling", "prep"), [("max", TORCHVISION), ("avg", CAFFE)])
def test_gradient_matches_finite_differences(pooling, prep):
    params, steps = _net(seed=1)
    rng = np.random.default_rng(2)
    image = rng.uniform(0.0, 1.0, (1, 3, 8, 10))
    feats, cache = vgg_forward(image, params, steps, prep, LAYERS, pooling)
    grads = {name: rng.standard_normal(f.shape) for name, f in feats.items()}
    d_image = vgg_backward(grads, cache)
    inputs = {"image": image, "layers": LAYERS, "pooling": pooling}
    expect_shape(d_image, image.shape, what="d image", inputs=inputs)
    expect(d_image.dtype == np.float64, f"d image is {d_image.dtype} for a float64 network")
    numeric = numerical_gradient(_objective(params, steps, prep, pooling, grads), image,
                                 np.float64(1.0))
    expect_gradient(d_image, numeric, what="d image", inputs=inputs, tol=1e-6)


def test_only_the_layers_given_contribute():
    """The forward ran to conv3_1, but a gradient handed in at relu1_2 alone flows from there."""
    params, steps = _net(seed=3)
    rng = np.random.default_rng(4)
    image = rng.uniform(0.0, 1.0, (1, 3, 6, 6))
    feats, cache = vgg_forward(image, params, steps, TORCHVISION, LAYERS, "max")
    grads = {"relu1_2": rng.standard_normal(feats["relu1_2"].shape)}
    d_image = vgg_backward(grads, cache)
    numeric = numerical_gradient(_objective(params, steps, TORCHVISION, "max", grads), image,
                                 np.float64(1.0))
    expect_gradient(d_image, numeric, what="d image from a gradient at relu1_2 alone",
                    inputs={"image": image, "forward to": "conv3_1"}, tol=1e-6)


def test_backward_is_linear_and_leaves_the_gradients_alone():
    params, steps = _net("vgg19", seed=5)
    rng = np.random.default_rng(6)
    image = rng.uniform(0.0, 1.0, (2, 3, 12, 8))
    feats, cache = vgg_forward(image, params, steps, TORCHVISION, LAYERS, "max")
    g1 = {name: rng.standard_normal(f.shape) for name, f in feats.items()}
    g2 = {name: rng.standard_normal(f.shape) for name, f in feats.items()}
    copies = {name: g.copy() for name, g in g1.items()}
    both = vgg_backward({name: 2.0 * g1[name] - g2[name] for name in g1}, cache)
    one, two = vgg_backward(g1, cache), vgg_backward(g2, cache)
    inputs = {"image": image, "layers": LAYERS}
    expect_close(both, 2.0 * one - two, what="backward(2 g1 - g2)",
                 against="2 backward(g1) - backward(g2)", inputs=inputs, rtol=1e-9, atol=1e-12)
    for name, g in g1.items():
        expect(np.array_equal(g, copies[name]),
               f"vgg_backward modified the gradient handed in at {name}: add into your own array")
    separate = sum(vgg_backward({name: g}, cache) for name, g in g1.items())
    expect_close(one, separate, what="backward of all layers' gradients at once",
                 against="the sum of one backward per layer", inputs=inputs, rtol=1e-9,
                 atol=1e-12)


def test_a_function_of_the_layer_gives_the_same_gradient_asked_once_deepest_first():
    """``grads`` may be ``gradient_at(name)``, called once at each step the backward passes
    (deepest first; None: no gradient there) -- how the engine hands in its loss gradients."""
    params, steps = _net(seed=7)
    rng = np.random.default_rng(8)
    image = rng.uniform(0.0, 1.0, (1, 3, 8, 8))
    feats, cache = vgg_forward(image, params, steps, TORCHVISION, LAYERS, "max")
    grads = {name: rng.standard_normal(f.shape) for name, f in feats.items()}
    asked = []

    def gradient_at(name):
        asked.append(name)
        return grads.get(name)

    from_function = vgg_backward(gradient_at, cache)
    # the same sums, perhaps in another order: the tolerance of this file's other comparisons
    # of backwards that are equal in exact arithmetic (float64, a tiny network)
    expect_close(from_function, vgg_backward(grads, cache), what="backward(gradient_at)",
                 against="backward(the same gradients as a dict)", inputs={"image": image},
                 rtol=1e-9, atol=1e-12)
    passed = [spec.name for spec, _ in reversed(cache.layer_caches)]
    expect(asked == passed, f"gradient_at was asked {asked}; expected once per step passed, "
           f"deepest first: {passed}")
