"""Colour control (minist/color.py, Gatys et al. 2017 section 5): YIQ, luminance matching, the
three colour transforms and colour histogram matching.

What is proved: the YIQ round trip to the float rounding bound of the two matrix products; the
matched luminance has the content's mean and standard deviation; the replicated luminance's
backward is its finite-difference gradient; every colour transform solves
``A Sigma_S A^T = Sigma_C``, each has the structure that singles it out among the solutions
(pca: ``A Sigma_S^(1/2)`` symmetric positive definite; cholesky: lower triangular; sym:
symmetric positive definite and the least colour displacement), and a matched style has the
content's colour mean and covariance -- in float64 as an identity, in float32 within the bound
derived from the rounding of the pixel map; on the real photo and painting of ../shared too.
"""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import numerical_gradient, relative_error
from hypothesis import given, settings
from hypothesis import strategies as st

from minist import color
from minist.errors import MinistError

FAST = settings(max_examples=30, deadline=None)
SEEDS = st.integers(0, 2**32 - 1)
SHAPES = st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(1, 9))  # N, H, W


def unit_roundoff(dtype) -> float:
    return float(np.finfo(dtype).eps) / 2


def gamma(n: int, dtype) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of n roundings."""
    u = unit_roundoff(dtype)
    return n * u / (1 - n * u)


def random_image(rng, shape, dtype=np.float64, three_d=False):
    N, H, W = shape
    image = rng.random((N, 3, H, W)).astype(dtype)
    return image[0] if three_d else image


def random_covariance(rng, log_min=-5.0):
    """Sigma = Q diag(lambda) Q^T: Q a random rotation, lambda log-uniform in [1e-5, 1]."""
    Q, R = np.linalg.qr(rng.standard_normal((3, 3)))
    Q = Q * np.sign(np.diag(R))
    lam = 10.0 ** rng.uniform(log_min, 0.0, 3)
    return (Q * lam) @ Q.T, float(lam.max() / lam.min())


def random_rotation(rng):
    Q, R = np.linalg.qr(rng.standard_normal((3, 3)))
    return Q * np.sign(np.diag(R))


# -------------------------------------------------------------------------------------- YIQ


def test_yiq_matrix_is_the_ntsc_one_and_its_inverse_is_exact():
    # The NTSC luma weights; I and Q as the colour differences B - Y, R - Y scaled by 0.492 and
    # 0.877 and turned by 33 degrees -- the construction the tabulated coefficients round.
    y = np.array([0.299, 0.587, 0.114])
    b_minus_y, r_minus_y = np.array([0, 0, 1.0]) - y, np.array([1.0, 0, 0]) - y
    u, v = 0.492 * b_minus_y, 0.877 * r_minus_y
    t = np.deg2rad(33)
    built = np.stack([y, -np.sin(t) * u + np.cos(t) * v, np.cos(t) * u + np.sin(t) * v])
    np.testing.assert_allclose(color.YIQ_FROM_RGB, built, rtol=0, atol=5e-4)
    # yiq_to_rgb of the unit vectors: the columns of the inverse it uses, inverse to 1e-15
    inverse = color.yiq_to_rgb(np.eye(3).reshape(3, 3, 1))[..., 0]
    np.testing.assert_allclose(inverse @ color.YIQ_FROM_RGB, np.eye(3), atol=1e-15)
    np.testing.assert_allclose(color.YIQ_FROM_RGB @ inverse, np.eye(3), atol=1e-15)
    np.testing.assert_allclose(inverse[:, 0], 1.0, atol=1e-15)  # a gray is (Y, 0, 0)
    with pytest.raises(ValueError):  # module constants are read-only
        color.YIQ_FROM_RGB[0, 0] = 1.0


@FAST
@given(shape=SHAPES, seed=SEEDS, dtype=st.sampled_from([np.float32, np.float64]),
       three_d=st.booleans())
def test_yiq_round_trip_within_the_rounding_bound(shape, seed, dtype, three_d):
    x = random_image(np.random.default_rng(seed), shape, dtype, three_d)
    yiq = color.rgb_to_yiq(x)
    assert yiq.shape == x.shape and yiq.dtype == dtype
    back = color.yiq_to_rgb(yiq)
    assert back.shape == x.shape and back.dtype == dtype
    # Each product A x with A rounded to dtype: |error| <= gamma_4 |A| |x| (3 products and sums
    # plus the rounding of A). The first error passes through T^-1; the second adds its own.
    T, Ti = np.abs(color.YIQ_FROM_RGB), np.abs(np.linalg.inv(color.YIQ_FROM_RGB))
    axis = x.ndim - 3
    absx = np.moveaxis(np.abs(x.astype(np.float64)), axis, -1)
    bound = 2 * gamma(4, dtype) * np.moveaxis(absx @ (Ti @ T).T, -1, axis)
    assert np.all(np.abs(back - x) <= bound)
    np.testing.assert_allclose(yiq, np.moveaxis(np.moveaxis(x, axis, -1) @ color.YIQ_FROM_RGB.T,
                                                -1, axis).astype(dtype),
                               rtol=0, atol=8 * unit_roundoff(dtype))


@FAST
@given(g=st.floats(0, 1), shape=SHAPES)
def test_a_gray_has_no_colour_and_its_luminance_is_its_value(g, shape):
    x = np.full((shape[0], 3, *shape[1:]), g)
    yiq = color.rgb_to_yiq(x)
    np.testing.assert_allclose(yiq[:, 0], g, rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(yiq[:, 1:], 0.0, atol=1e-15)
    np.testing.assert_allclose(color.luminance(x), yiq[:, :1], rtol=0, atol=1e-15)


def test_luminance_of_primaries_and_range():
    rng = np.random.default_rng(1)
    np.testing.assert_allclose(color.luminance(np.eye(3).reshape(3, 3, 1)),
                               np.reshape([0.299, 0.587, 0.114], (1, 3, 1)), atol=1e-16)
    y = color.luminance(rng.random((1, 3, 20, 20)))
    assert y.shape == (1, 1, 20, 20) and y.min() >= 0 and y.max() <= 1  # weights sum to 1


def test_apply_color_matrix_is_the_per_pixel_affine_map():
    rng = np.random.default_rng(11)
    x = rng.random((2, 3, 4, 5))
    for A, b in ((rng.standard_normal((3, 3)), rng.standard_normal(3)),
                 (rng.standard_normal((1, 3)), None)):
        out = color.apply_color_matrix(x, A, b)
        assert out.shape == (2, len(A), 4, 5)
        for n, i, j in np.ndindex(2, 4, 5):
            expected = A @ x[n, :, i, j] + (0 if b is None else b)
            np.testing.assert_allclose(out[n, :, i, j], expected, rtol=1e-14, atol=1e-15)
        np.testing.assert_array_equal(color.apply_color_matrix(x[1], A, b), out[1])


def test_shapes_and_dtypes_are_checked():
    with pytest.raises(ValueError, match="3 channel"):
        color.rgb_to_yiq(np.zeros((1, 4, 2, 2)))
    with pytest.raises(ValueError, match="float"):
        color.rgb_to_yiq(np.zeros((1, 3, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        color.rgb_to_yiq(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="1 channel"):
        color.gray_to_rgb(np.zeros((1, 3, 2, 2)))


# --------------------------------------------------------------- luminance-only transfer


@FAST
@given(seed=SEEDS, shape_s=SHAPES, shape_c=SHAPES, dtype=st.sampled_from([np.float32, np.float64]))
def test_matched_luminance_has_the_contents_mean_and_std(seed, shape_s, shape_c, dtype):
    rng = np.random.default_rng(seed)
    style_y = (0.2 + 0.3 * rng.random((1, 1, shape_s[1] + 1, shape_s[2] + 1))).astype(dtype)
    content_y = rng.random((1, 1, shape_c[1] + 1, shape_c[2] + 1)).astype(dtype)
    matched = color.match_luminance(style_y, content_y)
    assert matched.shape == style_y.shape and matched.dtype == dtype
    m64, c64 = matched.astype(np.float64), content_y.astype(np.float64)
    tol = 1e-12 if dtype == np.float64 else 4e-7  # float32: the map rounds each pixel once or
    np.testing.assert_allclose(m64.mean(), c64.mean(), rtol=0, atol=tol)  # twice (|L| < 3)
    np.testing.assert_allclose(m64.std(), c64.std(), rtol=0, atol=tol)
    # an affine map of the style: ordering (hence the "histogram shape") is kept
    s = style_y.ravel()
    order = np.argsort(s, kind="stable")
    assert np.all(np.diff(matched.ravel()[order].astype(np.float64)) >= -tol)


def test_a_constant_style_becomes_the_contents_mean():
    content_y = np.random.default_rng(2).random((1, 1, 5, 6)).astype(np.float32)
    matched = color.match_luminance(np.full((1, 1, 4, 4), 0.3, np.float32), content_y)
    assert np.all(np.isfinite(matched))
    np.testing.assert_allclose(matched, content_y.astype(np.float64).mean(), rtol=1e-6)


@FAST
@given(shape=SHAPES, seed=SEEDS, three_d=st.booleans())
def test_gray_to_rgb_backward_is_its_gradient(shape, seed, three_d):
    rng = np.random.default_rng(seed)
    N, H, W = shape
    y = rng.standard_normal((1, H, W) if three_d else (N, 1, H, W))
    dx = rng.standard_normal((3, H, W) if three_d else (N, 3, H, W))
    x = color.gray_to_rgb(y)
    axis = y.ndim - 3
    assert x.shape[axis] == 3 and all(np.array_equal(np.take(x, c, axis), np.take(y, 0, axis))
                                      for c in range(3))
    dy = color.gray_to_rgb_backward(dx)
    assert dy.shape == y.shape and dy.dtype == dx.dtype
    assert relative_error(dy, numerical_gradient(color.gray_to_rgb, y, dx)) < 1e-8


def test_luminance_inputs_match_every_style_to_the_content():
    rng = np.random.default_rng(3)
    content = rng.random((1, 3, 12, 10)).astype(np.float32)
    styles = [0.5 * rng.random((1, 3, 8, 9)).astype(np.float32),
              (0.6 + 0.4 * rng.random((1, 3, 15, 7))).astype(np.float32)]
    content_y, style_ys = color.luminance_inputs(content, styles)
    np.testing.assert_array_equal(content_y, color.luminance(content))
    assert [s.shape for s in style_ys] == [(1, 1, 8, 9), (1, 1, 15, 7)]
    for style, style_y in zip(styles, style_ys, strict=True):
        np.testing.assert_array_equal(style_y,
                                      color.match_luminance(color.luminance(style), content_y))
        np.testing.assert_allclose(style_y.mean(dtype=np.float64),
                                   content_y.mean(dtype=np.float64), atol=1e-6)
        np.testing.assert_allclose(style_y.std(dtype=np.float64),
                                   content_y.std(dtype=np.float64), atol=1e-6)
    _, one = color.luminance_inputs(content, styles[0])  # one array: one style
    np.testing.assert_array_equal(one[0], style_ys[0])


@FAST
@given(shape=SHAPES, seed=SEEDS, dtype=st.sampled_from([np.float32, np.float64]))
def test_combining_the_contents_own_luminance_gives_the_content_back(shape, seed, dtype):
    content = random_image(np.random.default_rng(seed), shape, dtype)
    out = color.combine_luminance(color.luminance(content), content)
    assert out.shape == content.shape and out.dtype == dtype
    assert out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out, content, rtol=0, atol=64 * unit_roundoff(dtype))


def test_combined_output_keeps_the_contents_colour_and_the_results_luminance():
    rng = np.random.default_rng(4)
    content = (0.15 + 0.7 * rng.random((1, 3, 16, 16))).astype(np.float32)
    y = np.clip(color.luminance(content) + 0.1 * rng.standard_normal((1, 1, 16, 16)),
                0, 1).astype(np.float32)
    out = color.combine_luminance(y, content)
    yiq_out, yiq_c = color.rgb_to_yiq(out), color.rgb_to_yiq(content)
    inside = np.all((out > 0) & (out < 1), axis=1)  # pixels the clip did not touch
    assert inside.mean() > 0.5
    np.testing.assert_allclose(yiq_out[:, 0][inside], y[:, 0][inside], atol=2e-6)
    np.testing.assert_allclose(yiq_out[:, 1:].transpose(1, 0, 2, 3)[:, inside],
                               yiq_c[:, 1:].transpose(1, 0, 2, 3)[:, inside], atol=2e-6)
    # the criterion: I and Q within one 8-bit level on average, clipped pixels included
    assert np.abs(yiq_out[:, 1:] - yiq_c[:, 1:]).mean() < 1 / 255
    # an RGB result is read through its luminance: the gray (Y, Y, Y) is Y itself
    np.testing.assert_allclose(color.combine_luminance(color.gray_to_rgb(y), content), out,
                               atol=2e-6)
    with pytest.raises(ValueError, match="same height and width"):
        color.combine_luminance(y[..., :8], content)


# ------------------------------------------------------------- colour histogram matching


@FAST
@given(shape=SHAPES, seed=SEEDS, three_d=st.booleans(), eps=st.sampled_from([0.0, 1e-5, 0.1]))
def test_color_statistics_are_the_pixels_mean_and_covariance(shape, seed, three_d, eps):
    x = random_image(np.random.default_rng(seed), shape, np.float32, three_d)
    mean, cov = color.color_statistics(x, eps)
    pixels = np.moveaxis(x.astype(np.float64), x.ndim - 3, 0).reshape(3, -1)
    assert mean.dtype == cov.dtype == np.float64 and mean.shape == (3,) and cov.shape == (3, 3)
    np.testing.assert_allclose(mean, pixels.mean(axis=1), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cov, np.cov(pixels, bias=True).reshape(3, 3) + eps * np.eye(3),
                               rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("method", color.METHODS)
@FAST
@given(seed=SEEDS)
def test_every_method_solves_the_covariance_equation(method, seed):
    rng = np.random.default_rng(seed)
    cov_s, kappa_s = random_covariance(rng)
    cov_c, _ = random_covariance(rng)
    A = color.color_transform_matrix(cov_s, cov_c, method)
    assert A.shape == (3, 3) and A.dtype == np.float64
    # float64 backward error of the square roots and the inverse grows with cond(Sigma_S)
    tol = 1e-13 * kappa_s * np.abs(cov_c).max()
    np.testing.assert_allclose(A @ cov_s @ A.T, cov_c, rtol=0, atol=tol)


@FAST
@given(seed=SEEDS)
def test_each_method_has_the_structure_that_defines_it(seed):
    rng = np.random.default_rng(seed)
    cov_s, _ = random_covariance(rng, log_min=-3)
    cov_c, _ = random_covariance(rng, log_min=-3)
    pca, chol, sym = (color.color_transform_matrix(cov_s, cov_c, m) for m in color.METHODS)
    # pca: A Sigma_S^(1/2) = Sigma_C^(1/2), symmetric positive definite (polar decomposition:
    # the only solution with that property)
    B = pca @ color.spd_power(cov_s, 0.5)
    np.testing.assert_allclose(B, B.T, atol=1e-9 * np.abs(B).max())
    assert np.linalg.eigvalsh((B + B.T) / 2).min() > 0
    np.testing.assert_allclose(B @ B, cov_c, atol=1e-9 * np.abs(cov_c).max())
    # cholesky: lower triangular, positive diagonal
    assert np.all(np.triu(chol, 1) == 0) and np.all(np.diag(chol) > 0)
    # sym: symmetric positive definite
    np.testing.assert_array_equal(sym, sym.T)
    assert np.linalg.eigvalsh(sym).min() > 0


def test_only_sym_is_symmetric_and_the_others_are_not():
    rng = np.random.default_rng(5)
    for _ in range(20):
        cov_s, _ = random_covariance(rng, log_min=-2)
        cov_c, _ = random_covariance(rng, log_min=-2)
        A = {m: color.color_transform_matrix(cov_s, cov_c, m) for m in color.METHODS}
        for a in A.values():
            np.testing.assert_allclose(a @ cov_s @ a.T, cov_c, atol=1e-10)
        asym = {m: np.abs(a - a.T).max() / np.abs(a).max() for m, a in A.items()}
        assert asym["sym"] == 0
        assert asym["pca"] > 1e-6 and asym["cholesky"] > 1e-6, asym  # generic covariances


@FAST
@given(seed=SEEDS)
def test_sym_moves_the_colours_least_of_all_solutions(seed):
    """E|x' - x|^2 = |mu_C - mu_S|^2 + tr((A - I) Sigma_S (A - I)^T): the second part, over all
    solutions A = Sigma_C^(1/2) R Sigma_S^(-1/2) (R orthogonal), is smallest for sym."""
    rng = np.random.default_rng(seed)
    cov_s, _ = random_covariance(rng, log_min=-3)
    cov_c, _ = random_covariance(rng, log_min=-3)

    def displacement(A):
        D = A - np.eye(3)
        return np.trace(D @ cov_s @ D.T)

    best = displacement(color.sym_transform(cov_s, cov_c))
    root_c, inv_root_s = color.spd_power(cov_c, 0.5), color.spd_power(cov_s, -0.5)
    others = [color.pca_transform(cov_s, cov_c), color.cholesky_transform(cov_s, cov_c)]
    others += [root_c @ random_rotation(rng) @ inv_root_s for _ in range(50)]
    for A in others:
        np.testing.assert_allclose(A @ cov_s @ A.T, cov_c, atol=1e-9 * np.abs(cov_c).max())
        assert best <= displacement(A) + 1e-12 * np.trace(cov_s + cov_c)


def test_pca_and_sym_ignore_the_channel_order_cholesky_does_not():
    rng = np.random.default_rng(6)
    P = np.eye(3)[[2, 1, 0]]  # RGB -> BGR
    cov_s, _ = random_covariance(rng, log_min=-2)
    cov_c, _ = random_covariance(rng, log_min=-2)
    for method in ("pca", "sym"):
        A = color.color_transform_matrix(cov_s, cov_c, method)
        A_bgr = color.color_transform_matrix(P @ cov_s @ P.T, P @ cov_c @ P.T, method)
        np.testing.assert_allclose(A_bgr, P @ A @ P.T, atol=1e-12)
    A = color.cholesky_transform(cov_s, cov_c)
    A_bgr = color.cholesky_transform(P @ cov_s @ P.T, P @ cov_c @ P.T)
    assert np.abs(A_bgr - P @ A @ P.T).max() > 1e-3


@pytest.mark.parametrize("p", [0.5, -0.5, 1.0, -1.0, 2.0])  # each p's own checks run
@FAST
@given(seed=SEEDS)
def test_spd_power(seed, p):
    S, kappa = random_covariance(np.random.default_rng(seed))
    Sp = color.spd_power(S, p)
    np.testing.assert_array_equal(Sp, color.spd_power(S.T, p))
    np.testing.assert_allclose(Sp, Sp.T, atol=1e-14 * np.abs(Sp).max())
    assert np.linalg.eigvalsh(Sp).min() > 0
    if p == 1.0:
        np.testing.assert_allclose(Sp, S, atol=1e-14)
    if p == -1.0:
        np.testing.assert_allclose(Sp @ S, np.eye(3), atol=1e-13 * kappa)
    if p == 0.5:
        np.testing.assert_allclose(Sp @ Sp, S, atol=1e-14)
        np.testing.assert_allclose(Sp @ color.spd_power(S, -0.5), np.eye(3),
                                   atol=1e-13 * kappa)


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError, match="positive definite"):
        color.spd_power(np.diag([1.0, 0.0, 1.0]), 0.5)
    with pytest.raises(ValueError, match="symmetric"):
        color.spd_power(np.array([[1.0, 0.5, 0], [0, 1, 0], [0, 0, 1]]), 0.5)
    with pytest.raises(ValueError, match="positive definite"):
        color.cholesky_transform(np.diag([1.0, -1.0, 1.0]), np.eye(3))
    with pytest.raises(ValueError, match="eps"):
        color.color_statistics(np.zeros((1, 3, 2, 2)), eps=-1.0)


@pytest.mark.parametrize("bad", ["PCA", "lab", ""])
def test_an_unknown_method_names_the_option(bad):
    image = np.random.default_rng(7).random((1, 3, 4, 4))
    for call in (lambda: color.color_transform_matrix(np.eye(3), np.eye(3), bad),
                 lambda: color.match_colors(image, image, bad),
                 lambda: color.histogram_inputs(image, [image], bad)):
        with pytest.raises(MinistError) as err:
            call()
        message = str(err.value)
        assert message.startswith("--color-transform:") and repr(bad) in message
        assert "pca, cholesky, sym" in message and "\n" not in message


@pytest.mark.parametrize("method", color.METHODS)
@FAST
@given(seed=SEEDS, shape_s=SHAPES, shape_c=SHAPES)
def test_matched_style_has_the_contents_statistics_float64(method, seed, shape_s, shape_c):
    """In float64 the matched style's moments are the identities of the map: mean
    A mu_S + b = mu_C, covariance A (Sigma_S - eps I) A^T = Sigma_C - eps A A^T."""
    rng = np.random.default_rng(seed)
    style = random_image(rng, shape_s) ** 3  # a darker painting, skewed colours
    content = random_image(rng, shape_c)
    eps = 1e-5
    matched = color.match_colors(style, content, method, eps)
    assert matched.shape == style.shape and matched.dtype == style.dtype
    mu_s, cov_s = color.color_statistics(style, eps)
    mu_c, cov_c = color.color_statistics(content, eps)
    A = color.color_transform_matrix(cov_s, cov_c, method)
    mu_m, cov_m = color.color_statistics(matched, eps=0.0)
    np.testing.assert_allclose(mu_m, mu_c, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cov_m, cov_c - eps * A @ A.T, rtol=0, atol=1e-11)
    # and, with the eps on the diagonal, within eps (1 + |A|^2) of the content's
    tol = eps * (1 + np.linalg.norm(A, 2) ** 2)
    np.testing.assert_allclose(cov_m + eps * np.eye(3), cov_c, rtol=0, atol=tol)


def _matched_moments_bound(style, A, b, cov_m):
    """How far float32 pixels x' = fl(A x + b) can move the float64 moments of the exact map.

    Each pixel's error |e| <= delta = gamma_5 max_k (|A| |x_k| + |b|) (A and b rounded to
    float32, a 3-term dot product, the add of b). Then |mean error| <= delta and, by
    Cauchy-Schwarz, |cov error|_ij <= (sigma_i + sigma_j) delta + delta^2.
    """
    pixels = np.moveaxis(style.astype(np.float64), style.ndim - 3, 0).reshape(3, -1)
    delta = gamma(5, np.float32) * (np.abs(A) @ np.abs(pixels) + np.abs(b)[:, None]).max()
    sigma = np.sqrt(np.maximum(np.diag(cov_m), 0.0))
    return delta, (sigma[:, None] + sigma[None, :]) * delta + delta**2


@pytest.mark.parametrize("method", color.METHODS)
@FAST
@given(seed=SEEDS, shape_s=SHAPES, shape_c=SHAPES)
def test_matched_style_has_the_contents_statistics_float32(method, seed, shape_s, shape_c):
    rng = np.random.default_rng(seed)
    style = (random_image(rng, shape_s) ** 2).astype(np.float32)
    content = random_image(rng, shape_c, np.float32)
    eps = 1e-5
    matched = color.match_colors(style, content, method, eps)
    assert matched.dtype == np.float32
    mu_s, cov_s = color.color_statistics(style, eps)
    mu_c, cov_c = color.color_statistics(content, eps)
    A = color.color_transform_matrix(cov_s, cov_c, method)
    b = mu_c - A @ mu_s
    exact_cov = A @ (cov_s - eps * np.eye(3)) @ A.T  # the exact map's pixels' covariance
    mu_m, cov_m = color.color_statistics(matched, eps=0.0)
    delta, cov_bound = _matched_moments_bound(style, A, b, exact_cov)
    assert np.all(np.abs(mu_m - mu_c) <= delta + 1e-12)
    assert np.all(np.abs(cov_m - exact_cov) <= cov_bound + 1e-12)


def test_matching_is_not_clipped():
    """A narrow style matched to a wide content spreads past [0, 1]; clipping would shrink the
    covariance, so the values stay as the map makes them."""
    rng = np.random.default_rng(8)
    style = 0.45 + 0.1 * rng.random((1, 3, 20, 20))
    content = rng.random((1, 3, 20, 20)) ** 4
    for method in color.METHODS:
        matched = color.match_colors(style, content, method)
        assert matched.min() < 0 or matched.max() > 1
        _, cov_s = color.color_statistics(style)
        _, cov_c = color.color_statistics(content)
        A = color.color_transform_matrix(cov_s, cov_c, method)
        _, cov_m = color.color_statistics(matched, eps=0.0)
        np.testing.assert_allclose(cov_m, cov_c - 1e-5 * A @ A.T, rtol=0, atol=1e-13)
        # (here A is large -- the style is narrow -- so the eps's share is visible:)
        assert np.abs(cov_m - cov_c).max() > 1e-5


def test_histogram_inputs_match_each_style():
    rng = np.random.default_rng(9)
    content = rng.random((1, 3, 10, 10))
    styles = [rng.random((1, 3, 6, 8)) ** 2, 1 - rng.random((1, 3, 9, 5)) ** 3]
    matched = color.histogram_inputs(content, styles, "sym")
    mu_c, cov_c = color.color_statistics(content)
    for style, m in zip(styles, matched, strict=True):
        np.testing.assert_array_equal(m, color.match_colors(style, content, "sym"))
        mu, cov = color.color_statistics(m, eps=0.0)
        A = color.color_transform_matrix(color.color_statistics(style)[1], cov_c, "sym")
        np.testing.assert_allclose(mu, mu_c, atol=1e-12)
        np.testing.assert_allclose(cov, cov_c - 1e-5 * A @ A.T, rtol=0, atol=1e-13)


# ----------------------------------------------------------------------- the real images


@pytest.mark.shared
@pytest.mark.parametrize("method", color.METHODS)
def test_the_painting_takes_the_photos_colour_statistics(shared_dir, method):
    from minist.images import load_image

    images = shared_dir / "data" / "images"
    photo = load_image(images / "tubingen.jpg", 256)
    painting = load_image(images / "starry_night.jpg", 256)
    matched = color.match_colors(painting, photo, method)
    mu_p, cov_p = color.color_statistics(photo)
    mu_s, cov_s = color.color_statistics(painting)
    mu_m, cov_m = color.color_statistics(matched)
    # before: the painting is bluer and its colours vary (and covary) differently
    assert np.abs(mu_s - mu_p).max() > 0.05 and np.abs(cov_s - cov_p).max() > 1e-3
    A = color.color_transform_matrix(cov_s, cov_p, method)
    b = mu_p - A @ mu_s
    exact_cov = A @ (cov_s - 1e-5 * np.eye(3)) @ A.T
    delta, cov_bound = _matched_moments_bound(painting, A, b, exact_cov)
    assert np.all(np.abs(mu_m - mu_p) <= delta + 1e-12)
    assert np.all(np.abs(cov_m - 1e-5 * np.eye(3) - exact_cov) <= cov_bound + 1e-12)
    np.testing.assert_allclose(cov_m, cov_p, rtol=0, atol=1e-3 * np.abs(cov_p).max())


@pytest.mark.shared
def test_luminance_transfer_keeps_the_photos_colour_on_real_images(shared_dir):
    from minist.images import load_image

    images = shared_dir / "data" / "images"
    photo = load_image(images / "tubingen.jpg", 256)
    painting = load_image(images / "starry_night.jpg", 256)
    content_y, (style_y,) = color.luminance_inputs(photo, [painting])
    H = min(content_y.shape[2], style_y.shape[2])
    W = min(content_y.shape[3], style_y.shape[3])
    # a stand-in for a stylised luminance: the matched painting's, on the photo's crop
    y = np.clip(style_y[:, :, :H, :W], 0, 1)
    out = color.combine_luminance(y, photo[:, :, :H, :W])
    iq_out = color.rgb_to_yiq(out)[:, 1:]
    iq_photo = color.rgb_to_yiq(photo[:, :, :H, :W])[:, 1:]
    assert np.abs(iq_out - iq_photo).mean() < 1 / 255


# --------------------------------------------------------------------------------- the GPU


@pytest.mark.gpu
@pytest.mark.parametrize("method", color.METHODS)
def test_cupy_images_give_the_numpy_results(method):
    import cupy

    rng = np.random.default_rng(10)
    style = rng.random((1, 3, 17, 23)).astype(np.float32) ** 2
    content = rng.random((1, 3, 19, 13)).astype(np.float32)
    s_gpu, c_gpu = cupy.asarray(style), cupy.asarray(content)
    for cpu, gpu in (
        (color.match_colors(style, content, method), color.match_colors(s_gpu, c_gpu, method)),
        (color.rgb_to_yiq(style), color.rgb_to_yiq(s_gpu)),
        (color.yiq_to_rgb(style), color.yiq_to_rgb(s_gpu)),
        (color.luminance_inputs(content, [style])[1][0],
         color.luminance_inputs(c_gpu, [s_gpu])[1][0]),
        (color.combine_luminance(color.luminance(content), content),
         color.combine_luminance(color.luminance(c_gpu), c_gpu)),
        (color.gray_to_rgb_backward(style), color.gray_to_rgb_backward(s_gpu)),
    ):
        assert isinstance(gpu, cupy.ndarray) and gpu.dtype == cpu.dtype
        np.testing.assert_allclose(gpu.get(), cpu, rtol=1e-5, atol=1e-6)
    for cpu, gpu in zip(color.color_statistics(style), color.color_statistics(s_gpu),
                        strict=True):
        assert isinstance(gpu, np.ndarray)
        np.testing.assert_allclose(gpu, cpu, rtol=1e-10, atol=1e-15)
