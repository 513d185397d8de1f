"""Guided Gram matrices (spatial control, Gatys et al. 2017 §4): the loss's gradient by finite
differences in float64 with guides that contain zeros, what a guided Gram is (the Gram of the
region), and a whole Objective with guided terms through a tiny random VGG."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_params
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

import minist.losses as losses
from minist.losses import reference
from minist.masks import guided_style_terms, normalise_guide
from minist.objective import Objective, StyleTerm, build_terms
from minist.preprocessing import TORCHVISION
from minist.vgg import VGG
from minist.weights.store import VGGWeights

IMPLEMENTATIONS = {"reference": reference, "public": losses}
impls = pytest.mark.parametrize("impl", list(IMPLEMENTATIONS.values()), ids=list(IMPLEMENTATIONS))
FAST = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def problem(N, M, seed, zeros=0.3):
    """Features F (N, M), a Gram target A, and a guide T >= 0 with about ``zeros`` of it 0."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((N, M))
    S = rng.standard_normal((N, 2 * N + 1))
    A = S @ S.T / S.shape[1]
    T = rng.uniform(0.2, 1.5, M) * (rng.uniform(size=M) >= zeros)
    return F, A, T


# --- the guided loss alone ---------------------------------------------------------------------


@impls
@FAST
@given(N=st.integers(1, 6), M=st.integers(1, 30), zeros=st.sampled_from([0.0, 0.3, 0.7]),
       seed=seeds)
def test_guided_gradient_matches_finite_differences(impl, N, M, zeros, seed):
    F, A, T = problem(N, M, seed, zeros)
    E, dF = impl.guided_style_layer_loss(F, A, T)
    assert dF.shape == F.shape and dF.dtype == F.dtype and np.ndim(E) == 0 and float(E) >= 0
    numeric = numerical_gradient(lambda v: impl.guided_style_layer_loss(v, A, T)[0], F.copy(),
                                 np.float64(1.0))
    assert relative_error(dF, numeric) < 1e-6


@impls
@FAST
@given(N=st.integers(1, 6), M=st.integers(1, 30), seed=seeds)
def test_guided_value_is_the_formula_and_no_gradient_outside_the_region(impl, N, M, seed):
    F, A, T = problem(N, M, seed, 0.4)
    E, dF = impl.guided_style_layer_loss(F, A, T)
    G_T = np.einsum("ik,jk,k->ij", F, F, T**2) / M  # (1/M) sum_k T_k^2 F_ik F_jk
    np.testing.assert_allclose(impl.guided_gram_matrix(F, T), G_T, rtol=1e-12, atol=1e-13)
    assert float(E) == pytest.approx(np.sum((G_T - A) ** 2) / (4 * N * N), rel=1e-10, abs=1e-300)
    assert not dF[:, T == 0].any()  # a position outside the region gets nothing


@impls
@FAST
@given(N=st.integers(1, 6), M=st.integers(1, 30), seed=seeds)
def test_a_guide_of_ones_is_the_unguided_loss(impl, N, M, seed):
    F, A, _ = problem(N, M, seed)
    ones = np.ones(M)
    np.testing.assert_allclose(impl.guided_gram_matrix(F, ones), impl.gram_matrix(F), rtol=1e-12,
                               atol=1e-14)
    E, dF = impl.guided_style_layer_loss(F, A, ones)
    E0, dF0 = impl.style_layer_loss(F, A)
    assert float(E) == pytest.approx(float(E0), rel=1e-12, abs=1e-300)
    np.testing.assert_allclose(dF, dF0, rtol=1e-10, atol=1e-15)


@FAST
@given(N=st.integers(1, 6), M=st.integers(2, 30), seed=seeds)
def test_a_normalised_binary_guide_gives_the_regions_own_gram(N, M, seed):
    """T = 1 on m of the M positions, normalised (sqrt(M/m) there): G_T is the plain Gram of the
    region's columns, averaged over the region -- comparable with a whole image's Gram."""
    rng = np.random.default_rng(seed)
    F = rng.standard_normal((N, M))
    region = rng.uniform(size=M) < 0.5
    region[rng.integers(M)] = True  # not empty
    T = normalise_guide(region.astype(np.float64))
    np.testing.assert_allclose(T[region], np.sqrt(M / region.sum()), rtol=1e-12)
    np.testing.assert_allclose(reference.guided_gram_matrix(F, T),
                               reference.gram_matrix(F[:, region]), rtol=1e-10, atol=1e-13)


def test_guide_shapes_dtypes_and_errors():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 4, 5))
    T = rng.uniform(size=(4, 5))
    A = reference.gram_matrix(rng.standard_normal((3, 9)))
    E, dx = reference.guided_style_layer_loss(x, A, T)
    E_m, dF = reference.guided_style_layer_loss(x.reshape(3, 20), A, T.reshape(20))
    assert dx.shape == x.shape and float(E) == pytest.approx(float(E_m), rel=1e-12)
    np.testing.assert_allclose(dx.reshape(3, 20), dF, rtol=1e-12)
    np.testing.assert_allclose(reference.guided_gram_matrix(x, T),
                               reference.guided_gram_matrix(x.reshape(3, 20), T.ravel()),
                               rtol=1e-12)
    E32, d32 = reference.guided_style_layer_loss(x.astype(np.float32), A, T)  # A, T: float64
    assert E32.dtype == np.float32 and d32.dtype == np.float32
    assert float(E32) == pytest.approx(float(E), rel=1e-5)
    with pytest.raises(ValueError, match="positions"):
        reference.guided_style_layer_loss(x, A, np.ones(19))
    with pytest.raises(ValueError, match="positions"):
        reference.guided_gram_matrix(x, np.ones((5, 4)))  # 20 entries, wrong layout
    with pytest.raises(ValueError, match="channels"):
        reference.guided_style_layer_loss(x, np.eye(4), T)


# --- terms and a whole objective ---------------------------------------------------------------

STYLE = ["relu1_1", "relu2_1", "relu3_1"]


@pytest.fixture(scope="module")
def net():
    weights = VGGWeights("vgg16", random_params("vgg16", seed=5, dtype=np.float64), TORCHVISION,
                         "random", "none", (4, 4, 6, 6, 8))
    return VGG(weights, dtype=np.float64)


def _image(shape, seed):
    return np.random.default_rng(seed).uniform(0.1, 0.9, size=shape)


def test_a_style_term_with_a_guide_uses_the_guided_loss():
    F, A, T = problem(4, 12, 0)
    term = StyleTerm("relu1_1", A, guide=T)
    E, dF = term.loss_and_grad(F.reshape(1, 4, 3, 4))
    E_ref, dF_ref = reference.guided_style_layer_loss(F, A, T)
    assert float(E) == float(E_ref)
    np.testing.assert_array_equal(dF.reshape(4, 12), dF_ref)
    assert "guide" not in repr(term)


def test_full_masks_give_the_unguided_objective(net):
    """One region covering everything, style mask None: the guided terms are the plain ones."""
    content, style, x = (_image((1, 3, 15, 17), s) for s in (0, 1, 2))
    full = np.ones((15, 17), np.float32)
    guided = guided_style_terms(net, [style], [full], None, STYLE, [0.2, 0.3, 0.5],
                                content_shape=(15, 17))
    plain = build_terms(net, None, style, [], STYLE, [0.2, 0.3, 0.5])
    assert [t.key for t in guided] == [t.key._replace(region=0) for t in plain]
    for g, p in zip(guided, plain, strict=True):
        np.testing.assert_allclose(g.target, p.target, rtol=1e-12)
        assert g.normaliser == pytest.approx(p.normaliser, rel=1e-12) and g.weight == p.weight
    e_guided = Objective(guided, 0.0, 7.0).evaluate(net, x)
    e_plain = Objective(plain, 0.0, 7.0).evaluate(net, x)
    assert e_guided.style == pytest.approx(e_plain.style, rel=1e-10)
    np.testing.assert_allclose(e_guided.grad, e_plain.grad, rtol=1e-8, atol=1e-14)


@pytest.mark.parametrize("mode", ["simple", "inside"])
def test_objective_with_guided_terms_matches_finite_differences(net, mode):
    """Two regions (left/right, a soft border), two style images with a style mask, content and
    TV terms: the gradient of Eq. 7 with respect to the image, by central differences of the
    total at 40 pixels and along 3 random directions, in float64."""
    H, W = 13, 16
    content, x = _image((1, 3, H, W), 0), _image((1, 3, H, W), 3)
    styles = [_image((1, 3, 14, 12), 1), _image((1, 3, 12, 15), 2)]
    left = np.zeros((H, W), np.float32)
    left[:, : W // 2] = 1.0
    left[:, W // 2] = 0.5
    right = 1.0 - left
    style_mask = np.zeros((12, 15), np.float32)
    style_mask[2:, 3:] = 1.0
    terms = guided_style_terms(net, styles, [left, right], [None, style_mask], STYLE,
                               mode=mode, content_shape=(H, W))
    assert {t.region for t in terms} == {0, 1}
    terms += build_terms(net, content, None, ["relu2_1"], [])
    objective = Objective(terms, content_weight=0.5, style_weight=20.0, tv_weight=0.01)
    grad = objective.evaluate(net, x).grad

    def total(image):
        return objective.evaluate(net, image).total

    rng = np.random.default_rng(7)
    picks = [tuple(int(rng.integers(s)) for s in x.shape) for _ in range(40)]
    h = 1e-6
    for idx in picks:
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric = (total(plus) - total(minus)) / (2 * h)
        assert numeric == pytest.approx(grad[idx], rel=1e-5, abs=1e-7 * np.abs(grad).max())
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        numeric = (total(x + h * v) - total(x - h * v)) / (2 * h)
        assert numeric == pytest.approx(float(np.sum(grad * v)), rel=1e-6)


def test_regions_on_one_layer_add_up(net):
    """E_l is the sum of the regions' losses: the objective's style part equals the sum, over
    terms, of w s times the guided loss computed by hand from the features."""
    H, W = 12, 14
    x = _image((1, 3, H, W), 4)
    styles = [_image((1, 3, 12, 12), 5), _image((1, 3, 12, 12), 6)]
    top = np.zeros((H, W), np.float32)
    top[: H // 2] = 1.0
    terms = guided_style_terms(net, styles, [top, 1 - top], None, STYLE, content_shape=(H, W))
    e = Objective(terms, 0.0, 1.0).evaluate(net, x)
    feats, _ = net.forward(x, STYLE)
    by_hand = sum(t.coefficient * float(reference.guided_style_layer_loss(
        reference.feature_matrix(feats[t.layer]), t.target, t.guide)[0]) for t in terms)
    assert len(terms) == 2 * len(STYLE)
    assert e.style == pytest.approx(by_hand, rel=1e-12)
