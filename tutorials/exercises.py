"""The classroom exercises: which functions a student writes, in which lesson, checked how.

Each exercise is a pytest marker (``pytest -m ex_relu``, or ``python tutorials/check.py ex_relu``)
and a list of functions, written ``"module:qualname"`` (a method is
``"minist.optim.adam:Adam.step"``). The student version of the repository
(``python tutorials/make_student_version.py OUT``) replaces each function's body with a
``NotImplementedError`` naming the exercise, and its docstring with the exercise's *statement*:
what the function computes (shapes, dtype and device rules, the equation of the value), without
what gives the answer away (gradient formulas, derivation steps, hints that are the code), and a
pointer to the lesson section where the student derives it. The checks live in
``tests/exercises/test_<marker>.py``; they prove a function right by finite differences,
properties and comparison with an independent implementation -- in the teacher's tree -- or,
in a student version (which holds no working implementation), with the teacher's values on
seeded inputs that ``make_student_version.py`` stores into it (``tests/exercises/stored.py``).

Fields beyond the first four have defaults, so a new exercise needs only those four:

* ``section`` -- the heading (without ``## ``) of the lesson section that derives the answer;
  the student's docstring points there (default: the lesson as a whole).
* ``statements`` -- ``{spec: text}``: the student version's docstring of each function (spec
  ``"module:qualname"``), or of a module (spec ``"module"``) whose docstring gives the answer
  away. A function without one keeps its docstring with every paragraph that states a gradient
  or derives one removed (:func:`make_student_version.redact`).
* ``stand_ins`` -- ``{spec: "module:qualname"}``: for a function the engine needs *before* its
  lesson (only ``to_device`` and ``two_loop``: VGG moves its weights from lesson 03 on, L-BFGS
  runs from lesson 04 on), another implementation the lessons may run, inside
  ``lesson_utils.lesson``, until the student writes it (never the checks;
  :mod:`minist.classroom`). Every other exercise has none: a lesson that needs an unwritten
  exercise says so in one line and skips what needs it.
* ``routes`` -- ``{spec: target}``: every *other* place of minist that computes the exercise's
  quantity (the Numba and CUDA kernels of a loss). In the student version a route function's
  body calls ``target`` -- the student's function, so the engine's dispatcher runs the
  student's code -- or, with ``target == ""``, raises the exercise's ``NotImplementedError``;
  a module-level constant (CUDA source) becomes ``""``; a route that is a module (no ``:``)
  keeps only the first paragraph of its docstring.
* ``alternatives`` -- specs of another *algorithm* for the same quantity that the engine must
  keep (the im2col/Winograd convolution beside the loops exercise, the vectorised pooling, the
  stand-ins). In the student version their docstrings lose what states a gradient
  (:func:`make_student_version.redact`); while the exercise is checked, a call of one of them
  (or of a route) from inside the student's function fails the check
  (``tests/other_implementations.py``).

Exercises build on each other in lesson order (VGG's backward needs the layers', the style loss
needs the Gram matrix), so hand them out in the order of :data:`EXERCISES`: in a student copy
each lesson runs once the exercises of the lessons before it are written
(``tests/test_lesson_walk.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
NONE: Mapping[str, str] = MappingProxyType({})


class Exercise(NamedTuple):
    marker: str  # pytest marker, and the exercise's name
    lesson: str  # the lesson that explains it: tutorials/<lesson>.py
    functions: tuple[str, ...]  # "module:qualname" of each function the student writes
    summary: str  # one line for the README and the command line
    section: str = ""  # heading of the lesson section that derives it ("" = the whole lesson)
    statements: Mapping[str, str] = NONE  # spec -> the student version's docstring
    stand_ins: Mapping[str, str] = NONE  # spec -> "module:qualname" the lessons may run instead
    routes: Mapping[str, str] = NONE  # other code of the same quantity -> what it becomes
    alternatives: tuple[str, ...] = ()  # another algorithm the engine keeps; the checks forbid it

    @property
    def lesson_file(self) -> str:
        return f"tutorials/{self.lesson}.py"

    @property
    def check_file(self) -> str:
        return f"tests/exercises/test_{self.marker}.py"

    @property
    def where(self) -> str:
        """``tutorials/05_gram_and_style.py, section "2. The style loss ..."``."""
        if not self.section:
            return self.lesson_file
        return f'{self.lesson_file}, section "{self.section}"'


# The guided Gram and style loss (ex_guided_gram) compute ex_gram's and ex_style_loss's
# quantities too, with a guide of ones: another algorithm for those two exercises.
GUIDED = ("minist.losses.reference:guided_gram_matrix",
          "minist.losses.reference:guided_style_layer_loss")

# The student version's docstring of minist.temporal: its equations of values, no gradient.
TEMPORAL_MODULE = r"""
Temporal consistency for video (Ruder, Dosovitskiy & Brox 2016, "Artistic style transfer for
videos"): warping along the optical flow, where the flow can be trusted, the temporal loss.

Images are ``(1, C, H, W)`` and flows ``(2, H, W)``: :math:`(u, v)`, the displacement in pixels
along :math:`x` (columns) and :math:`y` (rows); ``xp`` follows the arrays (NumPy or CuPy).

**Backward warping** (W): the backward flow :math:`\hat w` of frame :math:`t` says where each
of its pixels was in frame :math:`t-1`; the previous result seen from frame :math:`t` is

.. math::

    \omega(x')(p) = x'\bigl(p + \hat w(p)\bigr),

read between pixels by bilinear interpolation (:func:`warp`, :func:`sample_bilinear`).

**Where the flow is reliable**: with :math:`w` the forward flow and :math:`\tilde w(p) =
w(p + \hat w(p))`, a pixel is disoccluded where (C1)
:math:`|\tilde w + \hat w|^2 > 0.01 (|\tilde w|^2 + |\hat w|^2) + 0.5`
(:func:`disoccluded`) and on a motion boundary where (C2)
:math:`|\nabla \hat u|^2 + |\nabla \hat v|^2 > 0.01 |\hat w|^2 + 0.002`
(:func:`motion_boundaries`); the weights :math:`c` are 0 there and 1 elsewhere
(:func:`reliability`).

**The temporal loss** (T), over the :math:`D = C \times H \times W` numbers of the image:

.. math::

    \mathcal{L}_{temporal}(x, \omega, c) = \frac{1}{D} \sum_{k=1}^{D} c_k (x_k - \omega_k)^2

(:func:`temporal_loss`). **Long-term** (L): :math:`c_{long}(j) = \max(c(j) - \sum_{k \in J,
k < j} c(k), 0)` (:func:`long_term_weights`). **Multi-pass** (M): :math:`x'^{(i)} = \delta\, c
\odot \omega(x^{(i \mp 1)}) + (\bar\delta + \delta (1 - c)) \odot x^{(i)}`
(:func:`blend_neighbour`).

Lesson: ``tutorials/12_video.py``.
"""

EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        "ex_conv_forward",
        "01_convolution",
        ("minist.layers.conv:conv2d_forward_loops",),
        "convolution forward as loops over n, f, i, j",
        section="1. The equation",
        statements={
            "minist.layers.conv:conv2d_forward_loops": r"""
Readable convolution: the defining equation as loops over :math:`n, f, i, j`.

.. math::

    y_{n,f,i,j} = b_f + \sum_{c,p,q} w_{f,c,p,q}\,\tilde x_{n,c,\,is+p,\,js+q},
    \qquad H_o = \lfloor (H + 2P - K_H)/s \rfloor + 1

(likewise :math:`W_o`), with :math:`\tilde x` the input padded with ``pad`` zeros on every
side. ``x``: :math:`(N, C, H, W)`, ``w``: :math:`(F, C, K_H, K_W)`, ``b``: :math:`(F,)`. Cast
``w`` and ``b`` to ``x``'s dtype; ``y`` has ``x``'s dtype. Same arguments and results as
:func:`conv2d_forward` (slowly): returns ``(y, Conv2dCache(x, w, stride, pad))``, the cache
that the fast backward reads. Validate the shapes with ``_check`` as :func:`conv2d_forward`
does. NumPy or CuPy alike (``get_array_module``).
""",
        },
        alternatives=("minist.layers.conv:conv2d_forward", "minist.layers.conv:conv2d_relu_forward",
                      "minist.layers.winograd:winograd_conv3x3"),
    ),
    Exercise(
        "ex_conv_backward",
        "01_convolution",
        ("minist.layers.conv:conv2d_backward_loops",),
        "convolution backward (dx, dw, db) as loops",
        section="3. Backward: the gradients",
        statements={
            "minist.layers.conv:conv2d_backward_loops": r"""
Readable gradients of the convolution, as loops over :math:`n, f, i, j`.

Given the upstream gradient ``dy`` (shaped like the forward's output :math:`y`) and the
forward's ``cache`` (``x``, ``w``, ``stride``, ``pad``), return ``(dx, dw, db)``: the gradients
of :math:`\mathcal{L}` with respect to the input, the weights and the bias, shaped like ``x``,
``w`` and ``b``, in ``dy``'s dtype. With ``weight_grads=False`` only ``dx`` is computed and
``dw``, ``db`` are ``None``. Same arguments and results as :func:`conv2d_backward`.

Which elements of :math:`\tilde x` and :math:`w` did each :math:`y_{n,f,i,j}` use? Derive the
three gradients from the forward equation yourself, then mind the padding.
""",
        },
        routes={"minist.layers.winograd": ""},  # its docstring derives dx for 3x3 layers
        alternatives=("minist.layers.conv:conv2d_backward",
                      "minist.layers.conv:conv2d_relu_backward",
                      "minist.layers.conv:_dx_by_correlation",
                      "minist.layers.conv:_col2im_backward",
                      "minist.layers.conv:_weight_gradient",
                      "minist.layers.winograd:winograd_conv3x3"),
    ),
    Exercise(
        "ex_relu",
        "02_relu_and_pooling",
        ("minist.layers.relu:relu_forward", "minist.layers.relu:relu_backward"),
        "ReLU forward and backward",
        section="1. ReLU",
        statements={
            "minist.layers.relu": r"""
Rectified linear unit, elementwise on any shape: :math:`y = \max(x, 0)`.

The forward returns ``(y, cache)``; the backward turns the gradient with respect to :math:`y`
into the gradient with respect to :math:`x`, from that cache alone.
""",
            "minist.layers.relu:relu_forward": r"""
ReLU: :math:`y = \max(x, 0)`, same shape and dtype as ``x`` (NumPy or CuPy).

Returns ``(y, cache)`` with ``cache`` a :class:`ReluCache` holding what the backward needs --
keep it small: no copy of ``x`` (see :class:`ReluCache`).
""",
            "minist.layers.relu:relu_backward": r"""
ReLU gradient: ``dx`` from the upstream gradient ``dy`` and the forward's ``cache``.

``cache.mask`` is positive exactly where :math:`x > 0`: it may be the ReLU's output :math:`y`
(what VGG's fused convolution + ReLU keeps) or a boolean array -- read it as
``cache.mask > 0``, never as the values of :math:`y`. Shaped like ``dy``, in its dtype.
Derive it yourself; decide what happens at exactly
:math:`x = 0`, where the ReLU has no derivative, the way every deep-learning library does.
""",
        },
    ),
    Exercise(
        "ex_max_pool",
        "02_relu_and_pooling",
        ("minist.layers.pool:max_pool_forward_loops", "minist.layers.pool:max_pool_backward_loops"),
        "max pooling forward and backward as loops, with the tie rule",
        section="3. Pooling backward: where the gradient goes",
        statements={
            "minist.layers.pool:max_pool_forward_loops": r"""
Readable max pooling: for every :math:`(n, c, i, j)`, the max of its window.

.. math::

    y_{n,c,i,j} = \max_{0 \le p, q < k} x_{n,c,\,is+p,\,js+q}, \qquad
    H_o = \lfloor (H - k)/s \rfloor + 1

(floor mode: windows past the edge are dropped). Returns ``(y, PoolCache("max", x.shape, k,
s, argmax))`` with ``argmax`` of shape ``(N, C, Ho, Wo)`` holding, per window, the raster
index :math:`t = pk + q` of its maximum -- the *first* one in raster order when there is a tie
-- in the small unsigned dtype ``_index_dtype(xp, k)``. Same results as
:func:`max_pool_forward`; validate with ``_check``.
""",
            "minist.layers.pool:max_pool_backward_loops": r"""
Readable max-pool gradient: ``dx`` (shape ``cache.x_shape``, ``dy``'s dtype) from ``dy`` and
the forward's :class:`PoolCache`.

Derive where each :math:`dy_{n,c,i,j}` goes yourself; mind overlapping windows
(:math:`s < k`) and the elements that are in no window. Same results as
:func:`max_pool_backward`.
""",
        },
        routes={"minist.layers.pool": ""},  # its docstring says where a tie's gradient goes
        alternatives=("minist.layers.pool:max_pool_forward", "minist.layers.pool:max_pool_backward",
                      "minist.layers.pool:relu_max_pool_backward",
                      "minist.layers.kernels_numba:max_pool_forward_kernel",
                      "minist.layers.kernels_numba:max_pool_backward_kernel"),
    ),
    Exercise(
        "ex_vgg_backward",
        "03_vgg_features",
        ("minist.vgg:vgg_backward",),
        "the chain rule through VGG, accumulating gradients at requested layers",
        section="5. Backward: gradients handed in at several layers",
        statements={
            "minist.vgg:vgg_backward": r"""
Gradient of ``sum_l <grads[l], x_l>`` with respect to the RGB image.

``grads`` maps any subset of the layers the forward returned (``cache.layers``) to arrays of
their shapes -- or it is a function ``gradient_at(name)``: then call it once at each layer you
pass, deepest first, and take what it returns (an array, or None for no gradient there) as
that layer's gradient (``minist.objective`` computes each loss gradient only then). ``cache``
is the forward's :class:`VGGCache`: ``cache.layer_caches`` holds ``(spec, layer_cache)`` for every
layer that ran, in order, and ``cache.preprocess`` the preprocessing's cache. Each kind of layer
cache has its backward in :mod:`minist.layers` (a fused convolution + ReLU, a convolution, a
ReLU, a pooling with the ReLU below it, a pooling). Do not modify the arrays in ``grads``. Raise
``ValueError`` for a gradient given at a layer the forward did not return, or for no gradient
at all. Returns an array shaped like the image.
""",
        },
    ),
    Exercise(
        "ex_content_loss",
        "04_content_loss",
        ("minist.losses.reference:content_loss",),
        "content loss and its gradient (Eq. 1-2)",
        section="1. The content loss (paper Eq. 1 and 2)",
        statements={
            "minist.losses.reference:content_loss": r"""
Content loss and its gradient (paper Eq. 1 and 2).

.. math::

    \mathcal{L}_{content} = \tfrac12 \sum_{i,j} (F_{ij} - P_{ij})^2,

with :math:`F, P` of any one shape (usually :math:`N_l \times M_l` or
:math:`1 \times N_l \times H_l \times W_l`): :math:`F` the generated image's features,
:math:`P` the content image's. Also return the gradient of :math:`\mathcal{L}_{content}`
with respect to :math:`F`; derive it yourself. Not here: the paper's :math:`F_{ij} > 0`
restriction, which the ReLU's backward applies in the network.

Returns ``(L, dF)``: ``L`` a 0-d array of ``F``'s dtype (sum in float64, rounded once),
``dF`` shaped like ``F``, in its dtype. Cast the target ``P`` to ``F``'s dtype; raise
``ValueError`` when the shapes differ. NumPy or CuPy alike (module docstring).
""",
        },
        routes={
            "minist.losses.kernels_numba:content_loss": "minist.losses.reference:content_loss",
            "minist.losses.kernels_cupy:content_loss": "minist.losses.reference:content_loss",
        },
    ),
    Exercise(
        "ex_gram",
        "05_gram_and_style",
        ("minist.losses.reference:gram_matrix",),
        "the Gram matrix (Eq. 3)",
        section="1. From feature maps to a Gram matrix (Eq. 3)",
        statements={
            "minist.losses.reference:gram_matrix": r"""
Gram matrix of the features, normalised by the number of positions (paper Eq. 3).

.. math::

    G^l_{ij} = \frac{1}{M_l} \sum_{k=1}^{M_l} F^l_{ik} F^l_{jk},
    \qquad G^l \in \mathbb{R}^{N_l \times N_l},

the (uncentred) correlation between the responses of filters :math:`i` and :math:`j`,
averaged over the :math:`M_l` positions. The paper's Eq. 3 has no :math:`1/M_l`; minist
divides here so that Grams of different image sizes are comparable (lesson 05, section 3).
``F`` is :math:`N_l \times M_l` or a :math:`(1, N_l, H_l, W_l)` activation
(:func:`feature_matrix`); ``G`` has ``F``'s dtype. No Python loops: NumPy or CuPy does it.
""",
        },
        routes={
            "minist.losses.kernels_numba:gram_matrix": "minist.losses.reference:gram_matrix",
            "minist.losses.kernels_numba:gram_matrix_numba": "minist.losses.reference:gram_matrix",
            "minist.losses.kernels_numba:_gram_loops": "",
            "minist.losses.kernels_numba": "",
        },
        alternatives=GUIDED,  # with a guide of ones: the plain Gram
    ),
    Exercise(
        "ex_style_loss",
        "05_gram_and_style",
        ("minist.losses.reference:style_layer_loss",),
        "one layer's style loss and its gradient (Eq. 4, 6)",
        section="2. The style loss of one layer, of all layers, and its gradient (Eq. 4–6)",
        statements={
            "minist.losses.reference:style_layer_loss": r"""
One layer's style loss :math:`E_l` and its gradient (paper Eq. 4 and 6).

With :math:`G = G^l` from :func:`gram_matrix` (normalised by :math:`1/M_l`) and the style
image's Gram :math:`A = A^l` normalised the same way, both :math:`N_l \times N_l`:

.. math::

    E_l = \frac{1}{4 N_l^2} \sum_{i,j} (G_{ij} - A_{ij})^2 .

This is the paper's value: with its un-normalised Grams and its
:math:`1/(4 N_l^2 M_l^2)` the number is the same (lesson 05, section 3). Also return the
gradient of :math:`E_l` with respect to :math:`F^l`; derive it yourself, as matrix products.
Not here: the paper's :math:`F^l_{ij} > 0` restriction, which the ReLU's backward applies in
the network.

``F`` may be :math:`N_l \times M_l` or a :math:`(1, N_l, H_l, W_l)` activation; ``A`` is
symmetric (a Gram); cast it to ``F``'s dtype and raise ``ValueError`` when it is not
:math:`N_l \times N_l`. Returns ``(E, dF)``: ``E`` a 0-d array of ``F``'s dtype (sum in
float64, rounded once), ``dF`` shaped like ``F``, in its dtype. NumPy or CuPy alike.
""",
        },
        routes={
            "minist.losses.kernels_numba:style_layer_loss":
                "minist.losses.reference:style_layer_loss",
            "minist.losses.kernels_cupy:style_layer_loss":
                "minist.losses.reference:style_layer_loss",
            "minist.losses.kernels_numba": "",
            "minist.losses.kernels_cupy": "",
            "minist.losses.dispatch": "",
        },
        alternatives=GUIDED,  # with a guide of ones: the plain style loss and its gradient
    ),
    Exercise(
        "ex_tv_loss",
        "06_total_loss",
        ("minist.losses.reference:tv_loss",),
        "total-variation loss and its gradient",
        section="1. Eq. 7: one objective, two (or three) terms",
        statements={
            "minist.losses.reference:tv_loss": r"""
Total-variation loss of the image and its gradient (a smoothness prior).

Not in Gatys et al. (2015); it is the squared total variation of Mahendran & Vedaldi (2015)
(their exponent 2). For :math:`x \in \mathbb{R}^{N \times C \times H \times W}`:

.. math::

    \mathcal{L}_{TV} = \sum_{n,c} \Big[ \sum_{i=0}^{H-2} \sum_{j=0}^{W-1}
        (x_{i+1,j} - x_{i,j})^2 + \sum_{i=0}^{H-1} \sum_{j=0}^{W-2}
        (x_{i,j+1} - x_{i,j})^2 \Big],

summed over the differences that exist (no padding), with no normalisation (``tv_weight``
sets the scale). Also return the gradient with respect to every pixel; derive it yourself
(in how many differences does one pixel appear, and with which sign?), and write it with
array slices, not loops.

Returns ``(L, dimage)``: ``L`` a 0-d array of the image's dtype (sum in float64, rounded
once), ``dimage`` shaped like the image, in its dtype. Raise ``ValueError`` unless the image
is 4-D. NumPy or CuPy alike.
""",
        },
        routes={
            "minist.losses.kernels_numba:tv_loss": "minist.losses.reference:tv_loss",
            "minist.losses.kernels_cupy:tv_loss": "minist.losses.reference:tv_loss",
            "minist.losses.kernels_numba:_tv_forward_backward": "",
            "minist.losses.kernels_cupy:_TV": "",
        },
    ),
    Exercise(
        "ex_adam",
        "07_optimizers",
        ("minist.optim.adam:Adam.step",),
        "one Adam step with bias correction and projection",
        section="1. The update rules",
        statements={
            "minist.optim.adam:Adam.step": r"""
One Adam step: return the next iterate from ``x``, for the function ``f(x) -> (loss, grad)``.

The optimizer owns its evaluations: ask for the gradient at ``x`` with
``loss, grad = self.evaluate(x, f)`` -- never ``f(x)`` directly: ``self.evaluate`` calls ``f``
at most once per point, so a step from a point the caller already asked about (to log its
loss) costs no second evaluation. Adam needs no other point. The update rules are in the
module docstring and in the lesson. The moments live in ``self.m`` and ``self.v`` (``None``
until the first step: start them at zero), the step count in ``self.t``; ``self.beta1``,
``self.beta2``, ``self.eps``, ``self.lr`` are the settings. Call ``self._prepare(x)`` first: it
resets the state when ``x`` changes shape, dtype or device. End with the projection onto the
box, ``self.project_(...)``, on an array you made. Return a new array of ``x``'s shape, dtype
and device; never modify ``x`` or the gradient.
""",
        },
    ),
    Exercise(
        "ex_two_loop",
        "07_optimizers",
        ("minist.optim.lbfgs:two_loop",),
        "the L-BFGS two-loop recursion H g",
        section="1. The update rules",
        statements={
            "minist.optim.lbfgs:two_loop": r"""
:math:`H g` by the two-loop recursion (module docstring); ``history`` oldest first.

``history`` is a sequence of :class:`CurvaturePair` ``(s, y, rho, gamma)``, each ``s``, ``y``
shaped like ``g``; with no pairs :math:`H = I`. :meth:`LBFGS.step` (``x_new = opt.step(x,
f)``) calls it for its direction, :math:`d = -H g`, at the gradient it asked ``f`` for.
Returns a new array like ``g`` (same shape, dtype, device); ``g`` is not modified. Keep the
scalars on the device (0-d arrays from ``xp.vdot``), so on a GPU the recursion never waits for
the host.
""",
        },
        stand_ins={"minist.optim.lbfgs:two_loop": "minist.classroom:two_loop_compact"},
        alternatives=("minist.classroom:two_loop_compact",),
    ),
    Exercise(
        "ex_to_device",
        "08_gpu",
        ("minist.backend:to_device",),
        "moving arrays between the CPU and the GPU",
        section="1. The array module follows the arrays",
        statements={
            "minist.backend:to_device": r"""
Copy (only if needed) ``array`` to ``device``, optionally casting to ``dtype``.

``device`` is ``"cpu"`` (the result is a NumPy array) or ``"cuda"`` (a CuPy array). An array
already on the device, in the asked dtype (or with ``dtype=None``), comes back without a copy.
An unknown device, or ``"cuda"`` without CuPy or without a GPU, raises the one-line
:class:`MinistError` of :func:`resolve_device`.
""",
        },
        stand_ins={"minist.backend:to_device": "minist.classroom:to_device_on_cpu"},
        alternatives=("minist.classroom:to_device_on_cpu",),
    ),
    Exercise(
        "ex_yiq",
        "09_color_control",
        ("minist.color:apply_color_matrix", "minist.color:rgb_to_yiq", "minist.color:yiq_to_rgb"),
        "a 3x3 colour matrix on every pixel; RGB to YIQ and back with the exact inverse",
        section="1. YIQ: brightness apart from colour",
        statements={
            "minist.color:apply_color_matrix": r"""
Apply :math:`x' = A x + b` to every pixel's colour :math:`x \in \mathbb{R}^3`.

.. math::

    x'_{n,:,i,j} = A\, x_{n,:,i,j} + b, \qquad A \in \mathbb{R}^{k \times 3},\;
    b \in \mathbb{R}^k

``image``: ``(N, 3, H, W)`` or ``(3, H, W)``, float (check it with ``_channel_axis(image, 3)``);
the result has ``k`` channels in their place -- ``(N, k, H, W)`` or ``(k, H, W)`` -- and the
image's dtype and device. ``A`` and ``b`` (NumPy, any float dtype; ``b=None``: no shift) are
cast to the image's dtype; raise ``ValueError`` unless ``A`` is :math:`k \times 3`. Nothing is
clipped and ``image`` is not modified. No Python loops over the pixels: NumPy or CuPy does it
(``get_array_module``).
""",
            "minist.color:rgb_to_yiq": r"""
RGB to YIQ, pixel by pixel (paper §5, luminance-only transfer).

.. math::

    (Y, I, Q)^\top = T\, (R, G, B)^\top, \qquad T = \texttt{YIQ\_FROM\_RGB}

(the FCC NTSC 1953 coefficients, the module's constant). :math:`Y` is the luminance;
:math:`I` and :math:`Q` are zero for every gray. ``image``: ``(N, 3, H, W)`` or ``(3, H, W)``,
float; returns the same shape, channels ``(Y, I, Q)``, in the image's dtype and on its device.
""",
            "minist.color:yiq_to_rgb": r"""
YIQ back to RGB: the exact inverse of :func:`rgb_to_yiq`.

.. math::

    (R, G, B)^\top = T^{-1} (Y, I, Q)^\top, \qquad T = \texttt{YIQ\_FROM\_RGB},

with :math:`T^{-1}` the exact inverse of :math:`T` in float64 -- not the 3-decimal inverse that
tables print -- so that ``yiq_to_rgb(rgb_to_yiq(x))`` gives ``x`` back to float precision,
and ``rgb_to_yiq(yiq_to_rgb(z))`` gives back any ``z``. Not clipped: a YIQ triple need not be
a colour in [0, 1]. ``yiq``: ``(N, 3, H, W)`` or ``(3, H, W)``; returns the same shape in its
dtype and on its device.
""",
        },
    ),
    Exercise(
        "ex_color_transform",
        "09_color_control",
        ("minist.color:spd_power", "minist.color:pca_transform"),
        "matrix powers by eigendecomposition and the pca colour transform",
        section="3. Colour histogram matching",
        statements={
            "minist.color:spd_power": r"""
A real power :math:`S^p` of a symmetric positive-definite matrix ``S``.

:math:`S^p` is the symmetric positive-definite matrix with :math:`S^1 = S`,
:math:`S^0 = I`, :math:`S^p S^q = S^{p+q}`: for :math:`p = \tfrac12` the square root,
:math:`(S^{1/2})^2 = S`; for :math:`p = -\tfrac12` its inverse, :math:`S^{-1/2} S S^{-1/2} = I`;
for :math:`p = -1` the inverse of ``S``. Compute it from an eigendecomposition of ``S``
(``numpy.linalg.eigh``); how is in the lesson.

``S``: ``(n, n)``; check it with ``_check_spd`` (which raises ``ValueError`` unless it is
symmetric) and raise ``ValueError`` unless it is positive definite. Returns a NumPy float64
``(n, n)`` array, symmetric.
""",
            "minist.color:pca_transform": r"""
The colour transform ``pca`` (the default; paper §5, after Hertzmann et al.'s Image
Analogies).

The matrix :math:`A` of the colour map :math:`x' = A x + b` that gives the style's colours the
content's covariance:

.. math::

    A\, \Sigma_S A^\top = \Sigma_C ,

with :math:`\Sigma_S` = ``cov_style`` and :math:`\Sigma_C` = ``cov_content``, both
:math:`3 \times 3` symmetric positive definite. That equation has many solutions; ``pca`` is
the one that whitens the style's colours along the style's own principal axes and colours
them along the content's: the one whose product :math:`A\, \Sigma_S^{1/2}` is symmetric
positive definite. Find it in the lesson, using :func:`spd_power`. Returns a NumPy float64
``(3, 3)`` array.
""",
        },
    ),
    Exercise(
        "ex_scales",
        "10_coarse_to_fine",
        ("minist.scales:auto_sizes", "minist.scales:receptive_fields"),
        "the coarse-to-fine schedule and the receptive field of each layer in pixels",
        section="1. Receptive fields are measured in pixels",
        statements={
            "minist.scales:auto_sizes": r"""
The sizes of the automatic coarse-to-fine schedule (``--scales auto``), smallest first.

.. math::

    s_k = \operatorname{round}\big(s / \sqrt2^{\,k}\big), \qquad k = 0, 1, 2, \dots
    \quad \text{as long as } s_k \ge s_{\min},

with :math:`s` = ``size`` (the output size, longest side in px), :math:`s_{\min}` =
``smallest``, Python's ``round``, and each :math:`s_k` computed from :math:`s` itself (as
``round(size / math.sqrt(2) ** k)``, so that no rounding accumulates). Returns the tuple
:math:`(\dots, s_2, s_1, s_0)` of ints: smallest first, ending with ``size`` -- which is always
there, even when it is below ``smallest``. Why this schedule: lesson 10, section 3, "The
schedule".
""",
            "minist.scales:receptive_fields": r"""
The receptive field of every layer, in input pixels.

The receptive field of a layer is the side of the square of image pixels on which one of its
units depends (a pixel of the image sees itself: 1). ``steps``: a network's layer table
(``VGG.layer_specs``, :func:`minist.architectures.layer_table`), steps with a ``name`` and a
``kind``: ``"conv"`` (3x3, stride 1, padding 1), ``"relu"`` or ``"pool"`` (2x2, stride 2).
Returns ``{name: field}`` for every step, in the table's order, each field an ``int``
(VGG's relu1_1: 3 px). Derive how each kind of step changes the field; the check measures the
fields with the network's backward pass.
""",
        },
    ),
    Exercise(
        "ex_guided_gram",
        "11_spatial_control",
        ("minist.losses.reference:guided_gram_matrix",
         "minist.losses.reference:guided_style_layer_loss"),
        "the guided Gram matrix and its style loss and gradient (spatial control)",
        section="1. The guided Gram matrix and its gradient",
        statements={
            "minist.losses.reference:guided_gram_matrix": r"""
The Gram matrix of the features weighted by a spatial guide (Gatys et al. 2017, §4).

A guide :math:`T \in \mathbb{R}^{M_l}` gives each position :math:`k` a weight
:math:`T_k \ge 0`, shared by all channels (a region's mask brought to layer :math:`l`):

.. math::

    G_T = \frac{1}{M_l} (F \circ T)(F \circ T)^\top \in \mathbb{R}^{N_l \times N_l},
    \qquad (F \circ T)_{ik} = F_{ik} T_k .

:math:`T = 1` everywhere gives :func:`gram_matrix`. ``F``: :math:`N_l \times M_l` or an
activation :math:`(1, N_l, H_l, W_l)` (:func:`feature_matrix`); ``T``: shape :math:`(M_l,)` or
:math:`(H_l, W_l)`, cast to ``F``'s dtype (``_guide_vector`` checks it and flattens it).
``G_T`` has ``F``'s dtype. No Python loops: NumPy or CuPy does it.
""",
            "minist.losses.reference:guided_style_layer_loss": r"""
One layer's style loss with a spatial guide, and its gradient (Gatys et al. 2017, §4).

With :math:`G_T` from :func:`guided_gram_matrix` and the target :math:`A` (the guided Gram of
the painting's region, :math:`N_l \times N_l`):

.. math::

    E = \frac{1}{4 N_l^2} \sum_{i,j} \big((G_T)_{ij} - A_{ij}\big)^2 .

Also return the gradient of :math:`E` with respect to :math:`F`; derive it yourself, as
matrix products. With :math:`T = 1` everything is :func:`style_layer_loss`.

``F``: :math:`N_l \times M_l` or :math:`(1, N_l, H_l, W_l)`; ``A``: symmetric, cast to
``F``'s dtype, ``ValueError`` unless it is :math:`N_l \times N_l`; ``T``: :math:`(M_l,)` or
:math:`(H_l, W_l)` (``_guide_vector``). Returns ``(E, dF)``: ``E`` a 0-d array of ``F``'s
dtype (sum in float64, rounded once), ``dF`` shaped like ``F``, in its dtype. NumPy or CuPy
alike.
""",
        },
    ),
    Exercise(
        "ex_warp",
        "12_video",
        ("minist.temporal:sample_bilinear", "minist.temporal:warp"),
        "bilinear interpolation and the backward warp of the previous frame along the flow",
        section="2. Backward warping by bilinear interpolation",
        statements={
            "minist.temporal:sample_bilinear": r"""
``image`` ``(1, C, H, W)`` read at real positions by bilinear interpolation.

``rows`` and ``cols`` are ``(H, W)`` float arrays: position :math:`(y, x)` of output pixel
:math:`(i, j)` is ``(rows[i, j], cols[i, j])``. With :math:`r = \lfloor y \rfloor`,
:math:`s = \lfloor x \rfloor`, :math:`a = y - r`, :math:`b = x - s`:

.. math::

    I(y, x) = (1-a)(1-b)\, I_{r,s} + (1-a)\, b\, I_{r,s+1} + a (1-b)\, I_{r+1,s}
        + a\, b\, I_{r+1,s+1} .

A position is *inside* when :math:`0 \le y \le H - 1` and :math:`0 \le x \le W - 1`: the last
row and column included, where the value is exactly that pixel's (no index may leave the
image, also when ``H`` or ``W`` is 1); a position outside reads 0. Returns ``(values,
inside)``: ``values`` ``(1, C, H, W)`` in the image's dtype, ``inside`` ``(H, W)`` bool. No
Python loops over the pixels: index the image with integer arrays (NumPy or CuPy alike,
``get_array_module``).
""",
            "minist.temporal:warp": r"""
Eq. (W): the previous frame's image seen from the current frame, along the backward flow.

.. math::

    \omega(x')(p) = x'\bigl(p + \hat w(p)\bigr)

``previous`` is :math:`x'`, ``(1, C, H, W)``; ``backward_flow`` :math:`\hat w` is ``(2, H, W)``:
for each pixel :math:`p` of the current frame, where it was in the previous frame, in pixels --
``backward_flow[0]`` = :math:`\hat u` along :math:`x` (columns), ``backward_flow[1]`` =
:math:`\hat v` along :math:`y` (rows). Read between pixels by bilinear interpolation
(:func:`sample_bilinear`). Returns ``(warped, inside)``: ``warped`` ``(1, C, H, W)`` in
``previous``'s dtype, 0 where :math:`p + \hat w(p)` leaves the frame, and ``inside`` ``(H, W)``
bool, False there. A flow not of shape ``(2, H, W)``: raise the one-line :class:`MinistError`
of ``_check_flow(backward_flow, H, W, "warp")``.
""",
        },
    ),
    Exercise(
        "ex_consistency",
        "12_video",
        ("minist.temporal:disoccluded", "minist.temporal:motion_boundaries",
         "minist.temporal:reliability"),
        "where the flow can be trusted: the consistency check, motion boundaries, the weights c",
        section="3. Where the flow cannot be trusted: disocclusions and motion boundaries",
        statements={
            "minist.temporal:disoccluded": r"""
Eq. (C1): the pixels of frame :math:`t` where the two flows of the pair disagree.

``forward_flow`` :math:`w` ``(2, H, W)`` goes from frame :math:`t-1` to frame :math:`t`,
``backward_flow`` :math:`\hat w` ``(2, H, W)`` from :math:`t` to :math:`t-1` (``[0]``: along
columns, ``[1]``: along rows). With :math:`\tilde w(p) = w(p + \hat w(p))`, the forward flow
warped into frame :math:`t` (:func:`warp`: a flow is an image of two channels), pixel
:math:`p` is disoccluded where

.. math::

    |\tilde w + \hat w|^2 > 0.01\,\bigl(|\tilde w|^2 + |\hat w|^2\bigr) + 0.5

(:math:`|\cdot|^2` the squared length of the 2-vector at :math:`p`; the constants are
``DISOCCLUSION_RELATIVE`` and ``DISOCCLUSION_ABSOLUTE``), and wherever :math:`p + \hat w(p)`
leaves the frame. Returns an ``(H, W)`` bool array. Flows of different shapes: raise the
one-line :class:`MinistError` of ``_check_flow(forward_flow, H, W, "disoccluded")``.
""",
            "minist.temporal:motion_boundaries": r"""
Eq. (C2): where the backward flow :math:`\hat w = (\hat u, \hat v)` ``(2, H, W)`` changes too
fast to be trusted.

.. math::

    |\nabla \hat u|^2 + |\nabla \hat v|^2 > 0.01\,|\hat w|^2 + 0.002

(the constants are ``BOUNDARY_RELATIVE`` and ``BOUNDARY_ABSOLUTE``), with
:math:`|\nabla f|^2` the sum of the squares of :math:`f`'s differences along the rows and
along the columns: central, :math:`(f_{i+1} - f_{i-1})/2`, inside, and one-sided,
:math:`f_1 - f_0` and :math:`f_{n-1} - f_{n-2}`, on the border (as ``numpy.gradient``).
Returns an ``(H, W)`` bool array.
""",
            "minist.temporal:reliability": r"""
The per-pixel weights :math:`c` ``(H, W)`` of a pair of flows, in ``backward_flow``'s dtype.

:math:`c = 0` where the flow cannot be trusted -- :func:`disoccluded` (Eq. C1, which includes
the pixels whose flow leaves the frame) or :func:`motion_boundaries` (Eq. C2) -- and
:math:`c = 1` elsewhere.
""",
        },
    ),
    Exercise(
        "ex_temporal_loss",
        "12_video",
        ("minist.temporal:temporal_loss",),
        "the temporal loss and its gradient (Ruder et al. 2016)",
        section="4. The temporal loss and its gradient",
        statements={
            "minist.temporal": TEMPORAL_MODULE,
            "minist.temporal:temporal_loss": r"""
Eq. (T): the short-term temporal loss, and its gradient.

``x`` is the image ``(1, C, H, W)``, ``warped`` :math:`\omega` the previous result warped into
this frame (``x``'s shape), ``weights`` :math:`c` ``(H, W)`` the per-pixel weights, the same for
every channel:

.. math::

    \mathcal{L}_{temporal} = \frac{1}{D} \sum_{k=1}^{D} c_k\,(x_k - \omega_k)^2,
    \qquad D = C \times H \times W .

Also return the gradient of :math:`\mathcal{L}_{temporal}` with respect to ``x``; derive it
yourself. Returns ``(L, grad)``: ``L`` a 0-d array of ``x``'s dtype (sum in float64, rounded
once), ``grad`` shaped like ``x``, in its dtype. Cast ``warped`` and ``weights`` to ``x``'s
dtype. Shapes that disagree (``warped`` not ``x``'s shape, ``weights`` not ``x``'s
``(H, W)``): raise a one-line :class:`MinistError` that names ``temporal_loss``. NumPy or CuPy
alike (``get_array_module``).
""",
        },
        routes={"minist.problem": ""},  # its docstring states the temporal term's gradient
    ),
)

MARKERS: tuple[str, ...] = tuple(ex.marker for ex in EXERCISES)


def get(marker: str) -> Exercise:
    """The exercise called ``marker``; ``KeyError`` naming the known ones otherwise."""
    for ex in EXERCISES:
        if ex.marker == marker:
            return ex
    raise KeyError(f"unknown exercise {marker!r}; exercises are {', '.join(MARKERS)}")


def split(spec: str) -> tuple[str, str]:
    """``"minist.optim.adam:Adam.step"`` -> ``("minist.optim.adam", "Adam.step")``."""
    module, _, qualname = spec.partition(":")
    if not module or not qualname:
        raise ValueError(f"function spec {spec!r}: expected 'module:qualname'")
    return module, qualname


def source_path(spec: str, root: Path = ROOT) -> Path:
    """The file under ``root`` that defines ``spec``'s module (``minist/layers/conv.py``)."""
    module, _ = split(spec)
    base = root.joinpath(*module.split("."))
    package = base / "__init__.py"
    return package if package.is_file() else base.with_suffix(".py")


def resolve(spec: str):
    """Import ``spec``'s module and return the function (or method) it names."""
    module, qualname = split(spec)
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
