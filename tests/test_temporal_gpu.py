"""The temporal equations (minist.temporal) on CuPy arrays give the NumPy results: the same code
path with ``xp`` following the arrays. Skipped without CuPy and a CUDA GPU (tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

from minist import temporal

pytestmark = pytest.mark.gpu


def _flows(seed: int, shape=(2, 11, 17)):
    rng = np.random.default_rng(seed)
    forward = rng.normal(0, 2.0, shape).astype(np.float32)
    backward = -forward + rng.normal(0, 0.3, shape).astype(np.float32)
    return forward, backward


def _close(gpu, cpu, rtol=1e-5, atol=1e-6):
    import cupy

    assert isinstance(gpu, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(gpu), cpu, rtol=rtol, atol=atol)


def test_warp_reliability_and_resizing_on_the_gpu_equal_numpy():
    import cupy

    forward, backward = _flows(0)
    image = np.random.default_rng(1).uniform(size=(1, 3, 11, 17)).astype(np.float32)
    warped, inside = temporal.warp(image, backward)
    warped_g, inside_g = temporal.warp(cupy.asarray(image), cupy.asarray(backward))
    _close(warped_g, warped)
    np.testing.assert_array_equal(cupy.asnumpy(inside_g), inside)
    c = temporal.reliability(forward, backward)
    c_g = temporal.reliability(cupy.asarray(forward), cupy.asarray(backward))
    # 0/1 weights: a threshold; a sum rounded in another order (fused multiply-adds on the GPU)
    # may decide a pixel on the very edge the other way, no more than a few
    assert int((cupy.asnumpy(c_g) != c).sum()) <= c.size // 100, "reliability differs"
    _close(temporal.resize_flow(cupy.asarray(backward), (6, 9)),
           temporal.resize_flow(backward, (6, 9)))
    _close(temporal.resize_weights(c_g, (6, 9)), temporal.resize_weights(c, (6, 9)))


def test_temporal_loss_long_term_and_blend_on_the_gpu_equal_numpy():
    import cupy

    rng = np.random.default_rng(2)
    x, warped = (rng.uniform(size=(1, 3, 11, 17)).astype(np.float32) for _ in range(2))
    weights = [(rng.uniform(size=(11, 17)) > 0.4).astype(np.float32) for _ in range(3)]
    value, grad = temporal.temporal_loss(x, warped, weights[0])
    value_g, grad_g = temporal.temporal_loss(cupy.asarray(x), cupy.asarray(warped),
                                             cupy.asarray(weights[0]))
    assert float(value_g) == pytest.approx(float(value), rel=1e-5)
    _close(grad_g, grad)
    for gpu, cpu in zip(temporal.long_term_weights([cupy.asarray(w) for w in weights]),
                        temporal.long_term_weights(weights), strict=True):
        _close(gpu, cpu, rtol=0, atol=0)
    _close(temporal.blend_neighbour(cupy.asarray(x), cupy.asarray(warped),
                                    cupy.asarray(weights[1]), 0.5),
           temporal.blend_neighbour(x, warped, weights[1], 0.5))
