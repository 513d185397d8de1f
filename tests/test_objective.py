"""The objective of loss terms is the paper's Eq. 1, 5 and 7: the taught functions of
minist.losses (style_loss, total_loss) give the same values and gradients as what the engine
runs; several terms on one layer add up; scales and weights are those of the paper."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_params

from minist import losses
from minist.losses import reference
from minist.objective import (
    ContentTerm,
    LayerGradients,
    Objective,
    StyleTerm,
    TermKey,
    build_terms,
    content_normaliser,
    style_normaliser,
)
from minist.preprocessing import TORCHVISION
from minist.vgg import VGG
from minist.weights.store import VGGWeights

CONTENT = ["relu3_1"]
STYLE = ["relu1_1", "relu2_1", "relu3_1"]


@pytest.fixture(scope="module")
def net():
    weights = VGGWeights("vgg19", random_params("vgg19", seed=3, dtype=np.float64), TORCHVISION,
                         "random", "none", (4, 4, 6, 6, 8))
    return VGG(weights, dtype=np.float64)


def _images(shape=(1, 3, 16, 20), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.1, 0.9, size=shape), rng.uniform(0.1, 0.9, size=(1, 3, 18, 18)),
            rng.uniform(0.1, 0.9, size=shape))


@pytest.mark.parametrize("normalize", [False, True])
def test_engine_equals_the_taught_style_loss_and_total_loss(net, normalize):
    """Eq. 5 and 7 by minist.losses (the lessons' functions) == Objective.evaluate, values and
    gradients; with normalize the layer weights of style_loss carry the terms' scales."""
    content, style, x = _images()
    weights = [0.2, 0.3, 0.5]
    terms = build_terms(net, content, style, CONTENT, STYLE, weights, normalize)
    alpha, beta, lam = 0.7, 30.0, 0.01
    e = Objective(terms, alpha, beta, lam).evaluate(net, x)

    feats, cache = net.forward(x, STYLE)
    style_terms = [t for t in terms if t.kind == "style"]
    (content_term,) = [t for t in terms if t.kind == "content"]
    targets = {t.layer: t.target for t in style_terms}
    layer_weights = {t.layer: t.weight * t.normaliser for t in style_terms}
    L_style, style_grads = losses.style_loss(feats, targets, layer_weights)  # Eq. 5, taught
    L_content, dF = losses.content_loss(losses.feature_matrix(feats["relu3_1"]),
                                        content_term.target)
    L_content = content_term.coefficient * float(L_content)
    L_tv, _ = losses.tv_loss(x)
    total = reference.total_loss(L_content, float(L_style), float(L_tv), alpha, beta, lam)  # Eq. 7
    assert e.style == pytest.approx(float(L_style), rel=1e-12)
    assert e.content == pytest.approx(L_content, rel=1e-12)
    assert e.total == pytest.approx(total, rel=1e-12)
    if not normalize:
        assert all(t.normaliser == 1.0 for t in terms)

    grads = {name: beta * g for name, g in style_grads.items()}
    grads["relu3_1"] = grads["relu3_1"] + alpha * content_term.coefficient * dF.reshape(
        feats["relu3_1"].shape)
    expected = net.backward(grads, cache) + lam * losses.tv_loss(x)[1]
    np.testing.assert_allclose(e.grad, expected, rtol=1e-10, atol=1e-14)


def test_eq5_is_summed_once_by_the_taught_function(net, monkeypatch):
    """The engine's style loss and the taught style_loss add their layers with one function,
    minist.losses.reference.weighted_sum: the spy sees both sums, with the same values."""
    content, style, x = _images()
    terms = build_terms(net, content, style, [], STYLE, [0.2, 0.3, 0.5], normalize=False)
    sums = []
    real = reference.weighted_sum

    def spy(weighted):
        weighted = list(weighted)
        sums.append([(w, float(E)) for w, E in weighted])
        return real(weighted)

    monkeypatch.setattr(reference, "weighted_sum", spy)
    e = Objective(terms, 0.0, 1.0).evaluate(net, x)
    engine = sums[-1]
    feats, _ = net.forward(x, STYLE)
    taught, _ = reference.style_loss(feats, {t.layer: t.target for t in terms},
                                     {t.layer: t.weight for t in terms})
    assert sorted(sums[-1]) == sorted(engine) and len(engine) == 3  # the same (w_l, E_l)
    assert e.style == real(engine) and float(taught) == pytest.approx(e.style, rel=1e-12)


def test_terms_carry_the_papers_weights_normalisers_and_targets(net):
    content, style, _ = _images()
    terms = build_terms(net, content, style, CONTENT, STYLE)
    keys = [t.key for t in terms]
    assert keys == [TermKey("content", "relu3_1")] + [TermKey("style", n) for n in STYLE]
    feats, _ = net.forward(style, STYLE)
    for term in terms[1:]:
        A = reference.gram_matrix(feats[term.layer])
        np.testing.assert_allclose(term.target, A, rtol=1e-12)
        assert term.weight == pytest.approx(1 / 3)
        assert term.normaliser == pytest.approx(4 * A.shape[0] ** 2 / (A * A).sum())
        assert style_normaliser(A) == term.normaliser
        assert style_normaliser(A, normalize=False) == 1.0
    P = terms[0].target
    assert terms[0].normaliser == pytest.approx(content_normaliser(P)) and terms[0].weight == 1.0


def test_several_terms_on_one_layer_add_up(net):
    """Two style images at the same layer (keys differ by ``style``): the objective is the sum of
    the one-term objectives, values and gradients -- what several styles and masked regions
    build on."""
    _, style_a, x = _images(seed=1)
    _, style_b, _ = _images(seed=2)
    feats_a, _ = net.forward(style_a, ["relu2_1"])
    feats_b, _ = net.forward(style_b, ["relu2_1"])
    A1 = reference.gram_matrix(feats_a["relu2_1"])
    A2 = reference.gram_matrix(feats_b["relu2_1"])
    t1 = StyleTerm("relu2_1", A1, weight=0.25, normaliser=2.0, style=0)
    t2 = StyleTerm("relu2_1", A2, weight=0.75, normaliser=0.5, style=1)
    assert t1.key != t2.key and t1.key.layer == t2.key.layer
    both = Objective([t1, t2], 0.0, 5.0).evaluate(net, x)
    one = Objective([t1], 0.0, 5.0).evaluate(net, x)
    two = Objective([t2], 0.0, 5.0).evaluate(net, x)
    assert both.style == pytest.approx(one.style + two.style, rel=1e-12)
    np.testing.assert_allclose(both.grad, one.grad + two.grad, rtol=1e-10, atol=1e-15)


def test_zero_weights_drop_terms_and_all_zero_gives_zero_gradient(net):
    content, style, x = _images()
    terms = build_terms(net, content, style, CONTENT, STYLE, [0.0, 1.0, 0.0])
    objective = Objective(terms, 0.0, 2.0)
    assert [t.layer for t in objective.active_terms()] == ["relu2_1"]
    feats, _ = net.forward(x, objective.layers())
    assert LayerGradients(objective, feats).layers == ("relu2_1",)
    e = Objective(terms, 0.0, 0.0).evaluate(net, x)
    assert e.total == 0.0 and not e.grad.any()


def test_gradient_of_the_objective_matches_finite_differences(net):
    """Several terms per layer, content and style on the same layer, TV: float64 central
    differences at a few pixels."""
    content, style, x = _images(shape=(1, 3, 12, 12))
    terms = build_terms(net, content, style, CONTENT, STYLE)
    terms.append(StyleTerm("relu3_1", terms[-1].target * 0.5, 0.3, 1.0, style=1))
    terms.append(ContentTerm("relu1_1", net.forward(style[:, :, :12, :12], ["relu1_1"])[0][
        "relu1_1"].reshape(4, -1).copy(), 0.5, 1.0))
    objective = Objective(terms, 0.5, 20.0, 0.05)
    grad = objective.evaluate(net, x).grad
    rng = np.random.default_rng(5)
    for idx in [tuple(rng.integers(0, n) for n in x.shape) for _ in range(10)]:
        h = 1e-6
        plus, minus = x.copy(), x.copy()
        plus[idx] += h
        minus[idx] -= h
        numeric = (objective.evaluate(net, plus).total
                   - objective.evaluate(net, minus).total) / (2 * h)
        assert grad[idx] == pytest.approx(numeric, rel=1e-5, abs=1e-9)
