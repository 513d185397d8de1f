"""Finite-difference gradient checks, shared by the test files (layers, VGG, losses).

For a function :math:`f` and an upstream gradient :math:`dy`, the scalar
:math:`L(x) = \\sum f(x) \\odot dy` has :math:`\\partial L / \\partial x` equal to the backward
pass's ``dx``; central differences estimate it one element at a time:

.. math::

    \\frac{\\partial L}{\\partial x_k} \\approx \\frac{L(x + h e_k) - L(x - h e_k)}{2h},

with error :math:`O(h^2)` from truncation plus :math:`O(\\epsilon L / h)` from rounding -- so use
float64 and :math:`h \\approx 10^{-6}`.
"""

from __future__ import annotations

import numpy as np

from minist.backend import get_array_module


def numerical_gradient(f, x, dy, h: float = 1e-6):
    """Central-difference gradient of ``sum(f(x) * dy)`` with respect to every element of ``x``.

    ``x`` is perturbed in place and restored; it should be float64. Returns an array shaped
    like ``x`` (on the same device).
    """
    xp = get_array_module(x)
    grad = xp.zeros_like(x)
    if not x.flags.c_contiguous:
        raise ValueError("numerical_gradient: x must be C-contiguous (it is perturbed in place)")
    flat_x = x.reshape(-1)  # a view: writing it perturbs x
    flat_grad = grad.reshape(-1)
    for k in range(x.size):
        original = flat_x[k].item()
        flat_x[k] = original + h
        plus = float(xp.sum(f(x) * dy))
        flat_x[k] = original - h
        minus = float(xp.sum(f(x) * dy))
        flat_x[k] = original
        flat_grad[k] = (plus - minus) / (2 * h)
    return grad


def relative_error(a, b) -> float:
    """``max|a - b| / max(|a| + |b|)``, guarded against 0/0 (identical zero arrays give 0)."""
    a = np.asarray(_to_numpy(a), dtype=np.float64)
    b = np.asarray(_to_numpy(b), dtype=np.float64)
    scale = max(float(np.max(np.abs(a) + np.abs(b), initial=0.0)), np.finfo(np.float64).tiny)
    return float(np.max(np.abs(a - b), initial=0.0)) / scale


def _to_numpy(a):
    return a.get() if get_array_module(a) is not np else a
