"""The classroom exercises: which functions a student writes, in which lesson, checked how.

Each exercise is a pytest marker (``pytest -m ex_relu``) and a list of functions, written
``"module:qualname"`` (a method is ``"minist.optim.adam:Adam.step"``). The student version of the
repository (``python tutorials/make_student_version.py OUT``) keeps each function's signature
and docstring -- which carry the equations -- and replaces its body with a
``NotImplementedError`` naming the exercise. The checks live in
``tests/exercises/test_<marker>.py``; they prove a function right by finite differences,
properties and comparison with an independent implementation, never with a stored answer.

Exercises build on each other in lesson order (VGG's backward needs the layers', the style loss
needs the Gram matrix), so hand them out in the order of :data:`EXERCISES`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Exercise(NamedTuple):
    marker: str  # pytest marker, and the exercise's name
    lesson: str  # the lesson that explains it: tutorials/<lesson>.py
    functions: tuple[str, ...]  # "module:qualname" of each function the student writes
    summary: str  # one line for the README and the command line

    @property
    def lesson_file(self) -> str:
        return f"tutorials/{self.lesson}.py"

    @property
    def check_file(self) -> str:
        return f"tests/exercises/test_{self.marker}.py"


EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        "ex_conv_forward",
        "01_convolution",
        ("minist.layers.conv:conv2d_forward_loops",),
        "convolution forward as loops over n, f, i, j",
    ),
    Exercise(
        "ex_conv_backward",
        "01_convolution",
        ("minist.layers.conv:conv2d_backward_loops",),
        "convolution backward (dx, dw, db) as loops",
    ),
    Exercise(
        "ex_relu",
        "02_relu_and_pooling",
        ("minist.layers.relu:relu_forward", "minist.layers.relu:relu_backward"),
        "ReLU forward and backward",
    ),
    Exercise(
        "ex_max_pool",
        "02_relu_and_pooling",
        ("minist.layers.pool:max_pool_forward_loops", "minist.layers.pool:max_pool_backward_loops"),
        "max pooling forward and backward as loops, with the tie rule",
    ),
    Exercise(
        "ex_vgg_backward",
        "03_vgg_features",
        ("minist.vgg:vgg_backward",),
        "the chain rule through VGG, accumulating gradients at requested layers",
    ),
    Exercise(
        "ex_content_loss",
        "04_content_loss",
        ("minist.losses.reference:content_loss",),
        "content loss and its gradient (Eq. 1-2)",
    ),
    Exercise(
        "ex_gram",
        "05_gram_and_style",
        ("minist.losses.reference:gram_matrix",),
        "the Gram matrix (Eq. 3)",
    ),
    Exercise(
        "ex_style_loss",
        "05_gram_and_style",
        ("minist.losses.reference:style_layer_loss",),
        "one layer's style loss and its gradient (Eq. 4, 6)",
    ),
    Exercise(
        "ex_tv_loss",
        "06_total_loss",
        ("minist.losses.reference:tv_loss",),
        "total-variation loss and its gradient",
    ),
    Exercise(
        "ex_adam",
        "07_optimizers",
        ("minist.optim.adam:Adam.step",),
        "one Adam step with bias correction and projection",
    ),
    Exercise(
        "ex_two_loop",
        "07_optimizers",
        ("minist.optim.lbfgs:two_loop",),
        "the L-BFGS two-loop recursion H g",
    ),
    Exercise(
        "ex_to_device",
        "08_gpu",
        ("minist.backend:to_device",),
        "moving arrays between the CPU and the GPU",
    ),
    Exercise(
        "ex_yiq",
        "09_color_control",
        ("minist.color:apply_color_matrix", "minist.color:rgb_to_yiq", "minist.color:yiq_to_rgb"),
        "a 3x3 colour matrix on every pixel; RGB to YIQ and back with the exact inverse",
    ),
    Exercise(
        "ex_color_transform",
        "09_color_control",
        ("minist.color:spd_power", "minist.color:pca_transform"),
        "matrix powers by eigendecomposition and the pca colour transform",
    ),
    Exercise(
        "ex_scales",
        "10_coarse_to_fine",
        ("minist.scales:auto_sizes", "minist.scales:receptive_fields"),
        "the coarse-to-fine schedule and the receptive field of each layer in pixels",
    ),
    Exercise(
        "ex_guided_gram",
        "11_spatial_control",
        ("minist.losses.reference:guided_gram_matrix",
         "minist.losses.reference:guided_style_layer_loss"),
        "the guided Gram matrix and its style loss and gradient (spatial control)",
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
