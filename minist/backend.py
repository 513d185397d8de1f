"""Where arrays live: one code path on NumPy (CPU) and CuPy (CUDA GPU).

Every numerical function in minist asks ``xp = get_array_module(x)`` and then writes
``xp.zeros``, ``xp.maximum`` ... so the same lines run on either device: the array module
follows the arrays. The device itself is chosen in one place, :func:`resolve_device`, which is
also the only place that explains what is missing when ``cuda`` cannot be used.

Precision: float32 for running (``RUN_DTYPE``); every function also works in float64, which the
finite-difference gradient checks use. (TF32 tensor-core products were tried for the GPU
convolutions and dropped: with Winograd they were no faster and ten times less accurate; the
README's Performance section has the numbers.)
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from minist.errors import MinistError

RUN_DTYPE = np.float32
DEVICES = ("cpu", "cuda")


@functools.lru_cache(maxsize=1)
def _import_cupy():
    """Return the ``cupy`` module, or ``None`` when it is not installed or cannot load."""
    try:
        import cupy
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    return cupy


def cupy_or_none():
    """The CuPy module when it is importable, else ``None`` (never raises)."""
    return _import_cupy()


def gpu_available() -> bool:
    """True when CuPy is installed and sees at least one CUDA device."""
    cupy = _import_cupy()
    if cupy is None:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def check_device(device: str) -> str:
    """``device`` if it is one of :data:`DEVICES`; one line naming ``--device`` otherwise (the
    one spelling of this check: :func:`resolve_device` and ``ExecutionConfig`` use it)."""
    if device not in DEVICES:
        raise MinistError(
            f"--device: unknown device {device!r}; choose one of {', '.join(DEVICES)}"
        )
    return device


def resolve_device(device: str) -> str:
    """Check a device name and that the device can be used; return ``"cpu"`` or ``"cuda"``.

    Raises :class:`MinistError` with one line that says what to do when ``cuda`` is asked for
    without CuPy or without a GPU.
    """
    check_device(device)
    if device == "cuda":
        if _import_cupy() is None:
            raise MinistError(
                "--device cuda: CuPy is not installed; install it with "
                "pip install 'minist[cuda]' (CUDA 12) or use --device cpu"
            )
        if not gpu_available():
            raise MinistError(
                "--device cuda: CuPy found no CUDA GPU on this machine; use --device cpu"
            )
    return device


def get_array_module(*arrays: Any):
    """Return ``cupy`` if any argument is a CuPy array, else ``numpy``.

    The single rule behind "the array module follows the arrays".
    """
    cupy = _import_cupy()
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return np


def device_of(array: Any) -> str:
    """``"cuda"`` for a CuPy array, ``"cpu"`` otherwise."""
    return "cuda" if get_array_module(array) is not np else "cpu"


def to_device(array: Any, device: str, dtype=None):
    """Copy (only if needed) ``array`` to ``device``, optionally casting to ``dtype``."""
    if device == "cuda":
        cupy = _import_cupy()
        if cupy is None:
            resolve_device("cuda")  # raises with the explanation
        out = cupy.asarray(array)
    elif device == "cpu":
        out = to_numpy(array)
    else:
        resolve_device(device)  # raises for an unknown name
    if dtype is not None and out.dtype != dtype:
        out = out.astype(dtype)
    return out


def to_numpy(array: Any) -> np.ndarray:
    """Return ``array`` as a NumPy array (copying it from the GPU if it lives there)."""
    if get_array_module(array) is not np:
        return array.get()
    return np.asarray(array)
