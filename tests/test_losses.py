"""The losses' math: finite differences, the paper's formulas, the normalisation, style_loss.

Every function is checked both as written in ``minist.losses.reference`` and through the public
``minist.losses`` functions (which dispatch to the fastest implementation for the device).
Kernel == reference comparisons live in test_loss_kernels.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

import minist.losses as losses
from minist.errors import MinistError
from minist.losses import reference

IMPLEMENTATIONS = {"reference": reference, "public": losses}
impls = pytest.mark.parametrize("impl", list(IMPLEMENTATIONS.values()), ids=list(IMPLEMENTATIONS))

N_l = st.integers(1, 8)  # channels
M_l = st.integers(1, 50)  # positions
seeds = st.integers(0, 2**32 - 1)
FAST = settings(max_examples=25, deadline=None)


def features(N, M, seed, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal((N, M)).astype(dtype)


def gradient_error(loss, x):
    """Relative error between ``loss``'s analytic gradient and central differences at ``x``."""
    _, analytic = loss(x)
    numeric = numerical_gradient(lambda v: loss(v)[0], x.copy(), 1.0)
    return relative_error(analytic, numeric)


# --- content loss (Eq. 1, 2) -----------------------------------------------------------------


@impls
@FAST
@given(N=N_l, M=M_l, seed=seeds)
def test_content_gradient_matches_finite_differences(impl, N, M, seed):
    F, P = features(N, M, seed), features(N, M, seed + 1)
    assert gradient_error(lambda x: impl.content_loss(x, P), F) < 1e-6


@impls
@FAST
@given(N=N_l, M=M_l, seed=seeds)
def test_content_value_is_half_squared_distance(impl, N, M, seed):
    F, P = features(N, M, seed), features(N, M, seed + 1)
    L, dF = impl.content_loss(F, P)
    assert np.ndim(L) == 0
    assert float(L) == pytest.approx(0.5 * np.linalg.norm(F - P) ** 2, rel=1e-12)
    np.testing.assert_array_equal(dF, F - P)


@impls
def test_content_loss_is_zero_at_the_target(impl):
    P = features(3, 7, 0)
    L, dF = impl.content_loss(P.copy(), P)
    assert float(L) == 0.0
    assert not dF.any()


# --- Gram matrix (Eq. 3) -----------------------------------------------------------------------


@impls
@FAST
@given(N=N_l, M=M_l, seed=seeds)
def test_gram_is_symmetric_and_matches_the_sum(impl, N, M, seed):
    F = features(N, M, seed)
    G = impl.gram_matrix(F)
    assert G.shape == (N, N)
    np.testing.assert_array_equal(G, G.T)
    expected = np.einsum("ik,jk->ij", F, F) / M  # G_ij = (1/M) sum_k F_ik F_jk
    np.testing.assert_allclose(G, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    assert np.all(np.linalg.eigvalsh(G) > -1e-10 * max(1.0, np.abs(G).max()))  # PSD


@impls
def test_gram_accepts_an_activation(impl):
    x = np.random.default_rng(0).standard_normal((1, 5, 3, 4))
    np.testing.assert_array_equal(impl.gram_matrix(x), impl.gram_matrix(x.reshape(5, 12)))


def test_feature_matrix_rejects_batches():
    with pytest.raises(ValueError, match="shape"):
        reference.feature_matrix(np.zeros((2, 3, 4, 4)))


# --- one layer's style loss (Eq. 4, 6) ---------------------------------------------------------


def style_target(N, M, seed, dtype=np.float64):
    return reference.gram_matrix(features(N, max(M, 1), seed, dtype))


@impls
@FAST
@given(N=N_l, M=M_l, seed=seeds)
def test_style_gradient_matches_finite_differences(impl, N, M, seed):
    F, A = features(N, M, seed), style_target(N, M + 3, seed + 1)
    assert gradient_error(lambda x: impl.style_layer_loss(x, A), F) < 1e-6


@impls
@FAST
@given(N=N_l, M=M_l, seed=seeds)
def test_style_loss_equals_the_papers_unnormalised_formula(impl, N, M, seed):
    """E = 1/(4 N^2) sum (G - A)^2 with G = F F^T / M  ==  1/(4 N^2 M^2) sum (F F^T - M A)^2."""
    F, A = features(N, M, seed), style_target(N, M + 5, seed + 1)
    E, dF = impl.style_layer_loss(F, A)
    G_hat, A_hat = F @ F.T, M * A  # the paper's un-normalised Grams of the same two images
    paper_E = np.sum((G_hat - A_hat) ** 2) / (4 * N**2 * M**2)
    assert float(E) == pytest.approx(paper_E, rel=1e-10, abs=1e-300)
    paper_dF = (F.T @ (G_hat - A_hat)).T / (N**2 * M**2)  # Eq. 6 without the ReLU mask
    assert relative_error(dF, paper_dF) < 1e-12


@impls
@FAST
@given(N=N_l, M=M_l, seed=seeds)
def test_style_loss_is_zero_when_the_grams_match(impl, N, M, seed):
    F = features(N, M, seed)
    E, dF = impl.style_layer_loss(F, reference.gram_matrix(F))
    assert float(E) == 0.0
    assert not dF.any()


@impls
@FAST
@given(N=N_l, M=M_l, seed=seeds, copies=st.integers(2, 4))
def test_style_loss_does_not_depend_on_image_size(impl, N, M, seed, copies):
    """Tiling the feature map repeats every position: G, hence E, must not change.

    This pins the normalisation: dividing by M in the Gram *and* by M^2 in E (the seed
    document's formulas taken literally) would shrink E by copies^2.
    """
    F, A = features(N, M, seed), style_target(N, M + 2, seed + 1)
    E_small, _ = impl.style_layer_loss(F, A)
    E_tiled, _ = impl.style_layer_loss(np.tile(F, (1, copies)), A)
    assert float(E_tiled) == pytest.approx(float(E_small), rel=1e-10)


@impls
def test_style_layer_loss_accepts_an_activation(impl):
    x = np.random.default_rng(1).standard_normal((1, 4, 3, 5))
    A = style_target(4, 9, 2)
    E4, dx = impl.style_layer_loss(x, A)
    E2, dF = impl.style_layer_loss(x.reshape(4, 15), A)
    assert dx.shape == x.shape
    assert float(E4) == float(E2)
    np.testing.assert_array_equal(dx.reshape(4, 15), dF)


@impls
def test_style_layer_loss_checks_the_target_shape(impl):
    with pytest.raises(ValueError, match="channels"):
        impl.style_layer_loss(features(3, 4, 0), np.eye(4))


# --- style loss over layers (Eq. 5) -----------------------------------------------------------


def layered(seed, shapes=(("relu1_1", 2, 12), ("relu2_1", 3, 6), ("relu3_1", 5, 4))):
    feats = {name: features(N, M, seed + k) for k, (name, N, M) in enumerate(shapes)}
    targets = {name: style_target(N, M + 1, seed + 10 + k) for k, (name, N, M) in enumerate(shapes)}
    return feats, targets


@impls
@settings(max_examples=10, deadline=None)
@given(seed=seeds, raw=st.lists(st.floats(0.0, 10.0), min_size=3, max_size=3))
def test_style_loss_is_the_weighted_sum_of_layers(impl, seed, raw):
    feats, targets = layered(seed)
    weights = dict(zip(feats, raw, strict=True))
    L, grads = impl.style_loss(feats, targets, weights)
    expected = 0.0
    for name, F in feats.items():
        E, dF = reference.style_layer_loss(F, targets[name])
        expected += weights[name] * float(E)
        np.testing.assert_allclose(grads[name], weights[name] * dF, rtol=1e-12, atol=0)
    assert float(L) == pytest.approx(expected, rel=1e-12, abs=1e-300)


@impls
def test_style_loss_default_weights_are_equal_and_sum_to_one(impl):
    feats, targets = layered(3)
    L, _ = impl.style_loss(feats, targets)
    layer_E = [float(reference.style_layer_loss(F, targets[n])[0]) for n, F in feats.items()]
    assert float(L) == pytest.approx(np.mean(layer_E), rel=1e-12)


@impls
def test_style_loss_gradient_matches_finite_differences(impl):
    feats, targets = layered(5)
    weights = {"relu1_1": 0.2, "relu2_1": 0.5, "relu3_1": 0.3}
    _, grads = impl.style_loss(feats, targets, weights)
    for name in feats:

        def loss_of_layer(x, name=name):
            return impl.style_loss({**feats, name: x}, targets, weights)[0]

        numeric = numerical_gradient(loss_of_layer, feats[name].copy(), 1.0)
        assert relative_error(grads[name], numeric) < 1e-6


@impls
def test_style_loss_names_what_is_missing(impl):
    feats, targets = layered(0)
    with pytest.raises(MinistError, match="relu2_1"):
        impl.style_loss(feats, {k: v for k, v in targets.items() if k != "relu2_1"})
    with pytest.raises(MinistError, match="relu3_1"):
        impl.style_loss(feats, targets, {"relu1_1": 1.0, "relu2_1": 1.0})
    with pytest.raises(MinistError, match="no layers"):
        impl.style_loss({}, targets)


# --- total variation ---------------------------------------------------------------------------

images = st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 7), st.integers(1, 7))


def tv_by_loops(x):
    """The TV sum written as loops over every existing vertical and horizontal pair."""
    N, C, H, W = x.shape
    total = 0.0
    for n in range(N):
        for c in range(C):
            for i in range(H):
                for j in range(W):
                    if i + 1 < H:
                        total += (x[n, c, i + 1, j] - x[n, c, i, j]) ** 2
                    if j + 1 < W:
                        total += (x[n, c, i, j + 1] - x[n, c, i, j]) ** 2
    return total


@impls
@FAST
@given(shape=images, seed=seeds)
def test_tv_gradient_matches_finite_differences(impl, shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    assert gradient_error(impl.tv_loss, x) < 1e-6


@impls
@FAST
@given(shape=images, seed=seeds)
def test_tv_value_matches_the_loops(impl, shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    L, grad = impl.tv_loss(x)
    assert grad.shape == x.shape
    assert float(L) == pytest.approx(tv_by_loops(x), rel=1e-12, abs=1e-300)


@impls
def test_tv_is_zero_on_a_constant_image_and_positive_otherwise(impl):
    x = np.full((1, 3, 5, 6), 0.7)
    L, grad = impl.tv_loss(x)
    assert float(L) == 0.0
    assert not grad.any()
    x[0, 1, 2, 3] += 1.0  # one bright pixel: four unit differences
    assert float(impl.tv_loss(x)[0]) == pytest.approx(4.0)


# --- total loss (Eq. 7), dtypes ----------------------------------------------------------------


@given(
    values=st.lists(st.floats(-1e3, 1e3), min_size=3, max_size=3),
    weights=st.lists(st.floats(0, 1e3), min_size=3, max_size=3),
)
def test_total_loss_is_the_weighted_sum(values, weights):
    (c, s, t), (alpha, beta, tv_weight) = values, weights
    got = losses.total_loss(c, s, t, alpha=alpha, beta=beta, tv_weight=tv_weight)
    assert got == pytest.approx(alpha * c + beta * s + tv_weight * t, rel=1e-12, abs=1e-9)
    arrays = losses.total_loss(np.ones(2) * c, np.ones(2) * s, np.ones(2) * t, alpha, beta, 0.0)
    np.testing.assert_allclose(arrays, alpha * c + beta * s, rtol=1e-12, atol=1e-9)


@impls
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_values_are_0d_arrays_and_gradients_keep_the_dtype(impl, dtype):
    F, A = features(4, 9, 0, dtype), style_target(4, 9, 1, np.float64)  # A cast to F's dtype
    P = features(4, 9, 2, np.float64)  # cast to F's dtype
    x = np.random.default_rng(3).standard_normal((1, 3, 4, 5)).astype(dtype)
    for value, grad in (
        impl.content_loss(F, P),
        impl.style_layer_loss(F, A),
        impl.tv_loss(x),
        impl.style_loss({"a": F}, {"a": A}),
    ):
        if isinstance(grad, dict):
            grad = grad["a"]
        assert isinstance(value, np.ndarray | np.generic) and np.ndim(value) == 0
        assert value.dtype == dtype and grad.dtype == dtype
    assert impl.gram_matrix(F).dtype == dtype


@impls
def test_shape_mismatches_are_errors(impl):
    with pytest.raises(ValueError, match="shape"):
        impl.content_loss(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="image"):
        impl.tv_loss(np.zeros((3, 4, 4)))
