"""Choose, for the arrays' device, the implementation of each loss function.

Three implementations compute the same numbers (the tests prove it):

* :mod:`.reference` -- plain NumPy/CuPy, written to be read;
* :mod:`.kernels_numba` -- fused CPU loops compiled by Numba;
* :mod:`.kernels_cupy` -- fused CUDA kernels for CuPy arrays.

CuPy arrays always get :mod:`.kernels_cupy`. For NumPy arrays each function gets whichever of
the reference and the Numba kernel was faster, measured with float32 features of the sizes a
512-pixel image gives (best of 30 runs, 2-core x86-64, OpenBLAS 0.3.31, Numba 0.68's OpenMP
threading layer)::

    function          shape                 reference   numba    chosen
    content_loss      256 x 16384 (relu3_1)    7.7 ms    1.7 ms   numba  (one pass, not three)
    content_loss      64 x 262144 (relu1_1)   43   ms   14   ms   numba
    gram_matrix       256 x 16384              6.7 ms  269   ms   reference (BLAS SYRK)
    gram_matrix       64 x 262144             22   ms  338   ms   reference
    style_layer_loss  256 x 16384             14.2 ms   14.3 ms   reference (two GEMMs dominate)
    style_layer_loss  64 x 262144             42   ms   42   ms   reference
    tv_loss           1 x 3 x 512 x 512        3.8 ms    1.1 ms   numba

The style loss is two matrix products (:math:`F F^\\top` and :math:`(G - A) F`) around an
:math:`N_l \\times N_l` elementwise step; BLAS does the products in both versions and fusing the
small step saves nothing measurable, so the simpler reference is used.
"""

from __future__ import annotations

import functools
from types import MappingProxyType, SimpleNamespace
from typing import Any

from minist.backend import device_of
from minist.losses import reference

FUNCTIONS = ("content_loss", "gram_matrix", "style_layer_loss", "tv_loss")
PREFERENCES = (None, "reference", "numba", "cupy")

# For NumPy arrays: which implementation of each function is fastest (see the table above).
# Read-only: a run that wants the readable reference asks for it (ExecutionConfig.loss_backend).
CPU_CHOICE = MappingProxyType({
    "content_loss": "numba",
    "gram_matrix": "reference",
    "style_layer_loss": "reference",
    "tv_loss": "numba",
})


def _module(name: str):
    """The implementation module called ``name`` (the kernels are imported only when needed)."""
    if name == "reference":
        return reference
    if name == "numba":
        from minist.losses import kernels_numba

        return kernels_numba
    from minist.losses import kernels_cupy

    return kernels_cupy


@functools.cache
def _backend(choice: tuple[tuple[str, str], ...]) -> SimpleNamespace:
    """A namespace of the four loss functions, each taken from the module named for it."""
    functions = {fn: getattr(_module(impl), fn) for fn, impl in choice}
    names = sorted(set(impl for _, impl in choice))
    return SimpleNamespace(name="+".join(names), choice=dict(choice), **functions)


def get_loss_backend(array: Any, prefer: str | None = None) -> SimpleNamespace:
    """The loss functions to use for ``array``'s device, as a module-like namespace.

    The namespace has ``content_loss``, ``gram_matrix``, ``style_layer_loss`` and ``tv_loss``
    (the signatures of :mod:`minist.losses.reference`), plus ``name`` and ``choice`` (which
    implementation each function comes from). ``prefer=None`` picks the fastest for the device:
    CuPy kernels for CuPy arrays, the faster of reference and Numba (``CPU_CHOICE``) per
    function for NumPy arrays. ``prefer="reference"`` forces the readable reference on either
    device; ``"numba"`` (NumPy arrays only) and ``"cupy"`` (CuPy arrays only) force the kernels.
    """
    if prefer not in PREFERENCES:
        raise ValueError(f"prefer: expected one of {PREFERENCES}, got {prefer!r}")
    on_gpu = device_of(array) == "cuda"
    if prefer is None:
        prefer = "cupy" if on_gpu else None
    if prefer == "numba" and on_gpu:
        raise ValueError("prefer='numba': the Numba kernels run on NumPy arrays, not CuPy arrays")
    if prefer == "cupy" and not on_gpu:
        raise ValueError("prefer='cupy': the CuPy kernels run on CuPy arrays, not NumPy arrays")
    choice = CPU_CHOICE if prefer is None else {fn: prefer for fn in FUNCTIONS}
    return _backend(tuple(sorted(choice.items())))
