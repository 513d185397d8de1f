r"""What the student version of minist needs from the engine: stand-ins until a lesson is reached.

``tutorials/make_student_version.py`` replaces the body of every exercise function with a
``NotImplementedError`` naming the exercise. A few of those functions are plumbing that earlier
lessons already run through the engine: ``VGG`` moves its weights with
:func:`minist.backend.to_device` (exercise ``ex_to_device``, lesson 08) and L-BFGS, the optimizer
of lessons 04--06, takes its direction from :func:`minist.optim.lbfgs.two_loop` (exercise
``ex_two_loop``, lesson 07). For such functions the registry (``tutorials/exercises.py``) names
a *stand-in*: another implementation of the same mathematics, and the generated body is::

    from minist.classroom import stand_in

    return stand_in(
        "Exercise ex_two_loop: write two_loop (...); check it with: ...",
        "minist.classroom:two_loop_compact",
    )(g, history)

Lessons switch stand-ins on (``lesson_utils`` calls :func:`use_stand_ins`), so they run before the
student has reached the exercise, and say once which stand-in they use. Everything else -- the
exercise checks, the teacher's grading, the command line -- leaves them off, and there the body
raises the same ``NotImplementedError`` as any other unwritten exercise: a check never passes on
a stand-in.

The stand-ins here are those minist has no second implementation of elsewhere (the loss
functions' stand-ins are the Numba kernels, the loop layers' the fast layers):

* :func:`to_device_on_cpu` -- :func:`minist.backend.to_device` for the CPU only;
* :func:`two_loop_compact` -- :math:`H g` from the compact representation of the L-BFGS matrix
  (Byrd, Nocedal & Schnabel 1994) instead of the two-loop recursion;
* :func:`apply_color_matrix_einsum`, :func:`rgb_to_yiq_einsum`, :func:`yiq_to_rgb_solve` --
  the colour maps of :mod:`minist.color` (``--original-colors``, lesson 09) as one ``einsum``
  over the channel axis, and the way back as a linear solve per pixel instead of a product with
  the inverse matrix;
* :func:`spd_power_svd`, :func:`pca_transform_svd` -- matrix powers from the singular value
  decomposition (which is the eigendecomposition for a symmetric positive-definite matrix),
  positive definiteness tested by a Cholesky factorisation (``--original-colors histogram``);
* :func:`auto_sizes_closed_form` -- the coarse-to-fine schedule (``--scales auto``, lesson 10)
  with its number of scales from a logarithm instead of a loop;
* :func:`receptive_fields_top_down` -- each layer's receptive field walked from the unit down to
  the image, instead of from the image up;
* :func:`guided_gram_via_plain`, :func:`guided_style_layer_loss_via_plain` -- the guided Gram and
  style loss (``--content-masks``, lesson 11) as the device's plain ones applied to
  :math:`F \circ T`.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from typing import Any

import numpy as np

from minist.backend import get_array_module, to_numpy
from minist.scales import SMALLEST

STUB_PREFIX = "Exercise ex_"  # every generated body's message starts so: "Exercise ex_gram: ..."

_enabled = False
_announced: set[str] = set()


def use_stand_ins(enabled: bool = True) -> None:
    """Let unwritten exercise functions that have a stand-in run it (the lessons do this)."""
    global _enabled
    _enabled = bool(enabled)


def stand_ins_enabled() -> bool:
    return _enabled


def stand_in(message: str, spec: str):
    """The body of an unwritten exercise function that has a stand-in.

    Returns the stand-in named by ``spec`` (``"module:qualname"``) when stand-ins are on, after
    saying once which function it stands in for; raises ``NotImplementedError(message)``
    otherwise, exactly like an exercise without a stand-in.
    """
    if not _enabled:
        raise NotImplementedError(message)
    if message not in _announced:
        _announced.add(message)
        found = re.match(r"Exercise (\S+): write (\S+)", message)
        what = f"{found[2]} (exercise {found[1]})" if found else message.split(";")[0]
        print(f"[stand-in] {what} is not written yet: minist runs {spec} in its place until you "
              "write it (the exercise checks never do)", file=sys.stdout, flush=True)
    module, _, qualname = spec.partition(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def is_written(function) -> bool:
    """False while ``function``'s body is still the student version's generated stub.

    The stub's message (a constant of its code, ``"Exercise ex_...: write ..."``) is the sign;
    a written function does not carry it.
    """
    code = getattr(inspect.unwrap(function), "__code__", None)
    if code is None:
        return True
    return not any(isinstance(c, str) and c.startswith(STUB_PREFIX) for c in code.co_consts)


# ------------------------------------------------------------------------------ stand-ins


def to_device_on_cpu(array: Any, device: str, dtype=None):
    """Stand-in for :func:`minist.backend.to_device` that knows the CPU only (lessons 01--07)."""
    if device != "cpu":
        raise NotImplementedError(
            f"to_device(..., {device!r}): minist's stand-in moves arrays to the CPU only; "
            "write exercise ex_to_device (tutorials/08_gpu.py) for the rest"
        )
    out = to_numpy(array)
    return out if dtype is None or out.dtype == dtype else out.astype(dtype)


def two_loop_compact(g: Any, history) -> Any:
    r""":math:`H g` for the L-BFGS matrix of ``history`` (oldest first), in compact form.

    The same :math:`H_k` as the two-loop recursion (:func:`minist.optim.lbfgs.two_loop`), written
    with the pairs as the columns of :math:`S = [s_i]`, :math:`Y = [y_i]` (Byrd, Nocedal &
    Schnabel 1994; Nocedal & Wright, Eq. 7.24):

    .. math::

        H = \gamma I + \begin{bmatrix} S & \gamma Y \end{bmatrix}
            \begin{bmatrix} R^{-\top} (D + \gamma Y^\top Y) R^{-1} & -R^{-\top} \\
                            -R^{-1} & 0 \end{bmatrix}
            \begin{bmatrix} S^\top \\ \gamma Y^\top \end{bmatrix},

    with :math:`R` the upper triangle of :math:`S^\top Y` (:math:`R_{ij} = s_i^\top y_j`,
    :math:`i \le j`), :math:`D` its diagonal and :math:`\gamma` the newest pair's scale
    (:math:`H = I` without pairs). Here, with :math:`u = R^{-1} S^\top g`:
    :math:`H g = \gamma g + S R^{-\top}\big((D + \gamma Y^\top Y) u - \gamma Y^\top g\big)
    - \gamma Y u`. The :math:`m \times m` solves run in float64; the result has ``g``'s dtype.
    """
    xp = get_array_module(g)
    if not history:
        return g.copy()
    gamma = float(history[-1].gamma)
    S = xp.stack([pair.s.reshape(-1) for pair in history])  # (m, n): row i is s_i
    Y = xp.stack([pair.y.reshape(-1) for pair in history])
    flat = g.reshape(-1)
    SY = to_numpy(S @ Y.T).astype(np.float64)  # (S^T Y)_ij = s_i^T y_j
    YY = to_numpy(Y @ Y.T).astype(np.float64)
    R = np.triu(SY)
    D = np.diag(np.diag(SY))
    u = np.linalg.solve(R, to_numpy(S @ flat).astype(np.float64))  # R^{-1} S^T g
    Yg = to_numpy(Y @ flat).astype(np.float64)
    p = np.linalg.solve(R.T, (D + gamma * YY) @ u - gamma * Yg)
    p, u = (xp.asarray(v, dtype=g.dtype) for v in (p, u))
    r = gamma * flat + S.T @ p - gamma * (Y.T @ u)
    return r.reshape(g.shape).astype(g.dtype, copy=False)


# ---------------------------------------------------------------------- colour (lesson 09)


def apply_color_matrix_einsum(image: Any, A: Any, b: Any = None):
    r"""Stand-in for :func:`minist.color.apply_color_matrix`: :math:`x' = A x + b` per pixel.

    One ``einsum`` contracts ``A`` (:math:`k \times 3`) with the channel axis of ``image``
    (``(N, 3, H, W)`` or ``(3, H, W)``); the image's dtype and device, nothing clipped.
    """
    from minist.color import _channel_axis

    xp = get_array_module(image)
    _channel_axis(image, 3)
    A = xp.asarray(A, dtype=image.dtype)
    if A.ndim != 2 or A.shape[1] != 3:
        raise ValueError(f"apply_color_matrix: A must be (k, 3), got shape {A.shape}")
    out = xp.einsum("kc,...chw->...khw", A, image)
    if b is not None:
        out += xp.asarray(b, dtype=image.dtype).reshape(-1, 1, 1)
    return out


def rgb_to_yiq_einsum(image: Any):
    """Stand-in for :func:`minist.color.rgb_to_yiq`: ``YIQ_FROM_RGB`` on every pixel."""
    from minist.color import YIQ_FROM_RGB

    return apply_color_matrix_einsum(image, YIQ_FROM_RGB)


def yiq_to_rgb_solve(yiq: Any):
    r"""Stand-in for :func:`minist.color.yiq_to_rgb`: solve :math:`T x = (Y, I, Q)^\top` for
    every pixel's :math:`x` (float64, on the array's device), then back to ``yiq``'s dtype."""
    from minist.color import YIQ_FROM_RGB, _channel_axis

    xp = get_array_module(yiq)
    axis = _channel_axis(yiq, 3)
    pixels = xp.moveaxis(yiq, axis, 0)  # (3, ...)
    rgb = xp.linalg.solve(xp.asarray(YIQ_FROM_RGB), pixels.reshape(3, -1).astype(xp.float64))
    return xp.moveaxis(rgb.reshape(pixels.shape), 0, axis).astype(yiq.dtype)


def spd_power_svd(S: Any, p: float) -> np.ndarray:
    r"""Stand-in for :func:`minist.color.spd_power`: :math:`S^p = U \operatorname{diag}(\sigma^p)
    U^\top` from the SVD :math:`S = U \operatorname{diag}(\sigma) U^\top` of a symmetric
    positive-definite ``S`` (a ``ValueError`` when the Cholesky factorisation says it is not)."""
    from minist.color import _check_spd

    S = _check_spd(S, "spd_power")
    try:
        np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        raise ValueError("spd_power: the matrix is not positive definite") from None
    U, sigma, _ = np.linalg.svd(S)
    return (U * sigma**p) @ U.T


def pca_transform_svd(cov_style: Any, cov_content: Any) -> np.ndarray:
    """Stand-in for :func:`minist.color.pca_transform`, with the powers of :func:`spd_power_svd`."""
    return spd_power_svd(cov_content, 0.5) @ spd_power_svd(cov_style, -0.5)


# -------------------------------------------------------------- coarse-to-fine (lesson 10)


def auto_sizes_closed_form(size: int, smallest: int = SMALLEST) -> tuple[int, ...]:
    r"""Stand-in for :func:`minist.scales.auto_sizes`: the number of steps :math:`K` below
    ``size`` from :math:`2 \log_2(s / s_{\min})`, corrected for the rounding of the sizes, then
    :math:`s_k = \operatorname{round}(s / \sqrt2^{\,k})` for :math:`k = K, \dots, 0`."""
    import math

    def s(k: int) -> int:
        return round(size / math.sqrt(2) ** k)

    K = max(0, math.floor(2 * math.log2(size / smallest))) if size >= smallest else 0
    while s(K + 1) >= smallest:
        K += 1
    while K > 0 and s(K) < smallest:
        K -= 1
    return tuple(s(k) for k in range(K, -1, -1))


def receptive_fields_top_down(layer_specs) -> dict[str, int]:
    r"""Stand-in for :func:`minist.scales.receptive_fields`: for each layer, start from one unit
    (:math:`r = 1`) and walk down to the image; below a 3x3 convolution (stride 1) the unit sees
    :math:`r + 2` positions, below a 2x2 pooling (stride 2) :math:`2 r`."""
    layer_specs = list(layer_specs)
    fields = {}
    for top, spec in enumerate(layer_specs):
        r = 1
        for below in reversed(layer_specs[: top + 1]):
            if below.kind == "conv":
                r += 2
            elif below.kind == "pool":
                r *= 2
        fields[spec.name] = r
    return fields


# ------------------------------------------------------------- spatial control (lesson 11)


def _plain_losses(F: Any):
    """The device's plain Gram and style loss that are no exercise: Numba or CuPy kernels."""
    from minist.backend import device_of
    from minist.losses.dispatch import get_loss_backend

    return get_loss_backend(F, "cupy" if device_of(F) == "cuda" else "numba")


def guided_gram_via_plain(F: Any, T: Any):
    r"""Stand-in for :func:`minist.losses.reference.guided_gram_matrix`: the plain Gram of
    :math:`F \circ T` (each column :math:`k` of the features times :math:`T_k`)."""
    from minist.losses.reference import _guide_vector, feature_matrix

    Fm = feature_matrix(F)
    return _plain_losses(F).gram_matrix(Fm * _guide_vector(T, F, Fm, "guided_gram_matrix"))


def guided_style_layer_loss_via_plain(F: Any, A: Any, T: Any):
    r"""Stand-in for :func:`minist.losses.reference.guided_style_layer_loss`: the plain style
    loss of :math:`F \circ T` (its gradient with respect to :math:`F \circ T` times :math:`T`)."""
    from minist.losses.reference import _guide_vector, feature_matrix

    xp = get_array_module(F)
    Fm = feature_matrix(F)
    N = Fm.shape[0]
    A = xp.asarray(A, dtype=F.dtype)
    if A.shape != (N, N):
        raise ValueError(f"guided_style_layer_loss: F has {N} channels but A has shape {A.shape}")
    T = _guide_vector(T, F, Fm, "guided_style_layer_loss")
    E, dFT = _plain_losses(F).style_layer_loss(Fm * T, A)
    return E, (dFT * T).reshape(F.shape)
