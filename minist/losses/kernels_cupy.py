r"""GPU kernels for the losses (CuPy): the same functions and results as :mod:`.reference`.

* Content loss and the style difference :math:`G - A` share one fused kernel,
  ``diff_sumsq``: each thread forms :math:`d = a - b`, writes :math:`d / s` (the gradient, or
  the scaled difference) and adds :math:`d^2` to a float64 partial sum; each block reduces its
  partial sums in shared memory and adds the result to the total with one ``atomicAdd``. One
  pass over memory, no temporary arrays, and the loss stays on the GPU (no sync).
* The squared total variation and its gradient: one fused kernel, ``tv``, one thread per pixel,
  each reading its four neighbours (the same sum, in the same order, as the reference).
* The Gram matrix and :math:`(G - A) F` are matrix products: cuBLAS, through ``@``.

Measured on an NVIDIA H100 (float32, median of 50 runs with ``cupyx.profiler.benchmark``),
against the reference running on CuPy arrays::

    function          shape                    reference   kernel
    content_loss      256 x 16384 (relu3_1)     0.095 ms   0.059 ms
    content_loss      64 x 262144 (relu1_1)     0.224 ms   0.125 ms
    style_layer_loss  256 x 16384               0.231 ms   0.163 ms
    style_layer_loss  64 x 262144               0.325 ms   0.230 ms
    tv_loss           1 x 3 x 512 x 512         0.431 ms   0.041 ms

CuPy is imported lazily (through :func:`minist.backend.cupy_or_none`), so this module imports,
and the rest of minist runs, where CuPy is not installed. Kernels are compiled by NVRTC on first
use, once per dtype (float32 and float64). Equations and derivations: :mod:`.reference`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from minist.backend import cupy_or_none
from minist.losses.reference import feature_matrix, gram_matrix  # the Gram: cuBLAS, via @

_THREADS = 256  # threads per block; the shared-memory reduction below assumes a power of 2
_MAX_BLOCKS = 4096  # grid-stride loops cover larger arrays

_BLOCK_SUM = r"""
__device__ void block_sum_into(double s, double* acc) {
    // Tree reduction of one double per thread in shared memory, then one atomicAdd per block.
    __shared__ double partial[256];
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
        if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(acc, partial[0]);
}
"""

_DIFF_SUMSQ = r"""
extern "C" __global__ void diff_sumsq(const T* a, const T* b, T* out, double* acc,
                                      const long long n, const T divisor) {
    double s = 0.0;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < n;
         k += (long long)blockDim.x * gridDim.x) {
        T d = a[k] - b[k];
        out[k] = d / divisor;           // the difference, scaled as the caller asks
        s += (double)d * (double)d;     // (F - P)^2 or (G - A)^2, summed in float64
    }
    block_sum_into(s, acc);
}
"""

_TV = r"""
extern "C" __global__ void tv(const T* x, T* grad, double* acc, const long long total,
                              const long long H, const long long W) {
    double s = 0.0;
    for (long long k = blockIdx.x * (long long)blockDim.x + threadIdx.x; k < total;
         k += (long long)blockDim.x * gridDim.x) {
        const long long j = k % W;
        const long long i = (k / W) % H;
        const T xij = x[k];
        T g = 0;
        // same order as the reference: + above, - below, + left, - right
        if (i > 0)     { T up = xij - x[k - W];   g += up + up; }
        if (i < H - 1) { T dv = x[k + W] - xij;   g -= dv + dv; s += (double)dv * (double)dv; }
        if (j > 0)     { T left = xij - x[k - 1]; g += left + left; }
        if (j < W - 1) { T dh = x[k + 1] - xij;   g -= dh + dh; s += (double)dh * (double)dh; }
        grad[k] = g;
    }
    block_sum_into(s, acc);
}
"""

_CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}


def _cupy():
    cupy = cupy_or_none()
    if cupy is None:
        raise RuntimeError("minist.losses.kernels_cupy needs CuPy, which is not installed")
    return cupy


@functools.cache
def _kernel(name: str, dtype: np.dtype):
    """Compile (once per dtype) and return the raw kernel ``name``."""
    cupy = _cupy()
    if dtype not in _CTYPES:
        raise ValueError(f"losses on the GPU: dtype {dtype} is not float32 or float64")
    source = {"diff_sumsq": _DIFF_SUMSQ, "tv": _TV}[name]
    code = f"typedef {_CTYPES[dtype]} T;\n" + _BLOCK_SUM + source
    return cupy.RawKernel(code, name)


def _launch(name: str, n: int, dtype: np.dtype, args: tuple):
    """Run kernel ``name`` over ``n`` elements with a grid-stride launch."""
    blocks = max(1, min((n + _THREADS - 1) // _THREADS, _MAX_BLOCKS))
    _kernel(name, np.dtype(dtype))((blocks,), (_THREADS,), args)


def _diff_sumsq(a, b, out, divisor):
    """``out = (a - b) / divisor``; return a 1-element float64 array with ``sum((a - b)**2)``."""
    cupy = _cupy()
    acc = cupy.zeros(1, dtype=cupy.float64)
    n = a.size
    if n:
        _launch("diff_sumsq", n, a.dtype, (a, b, out, acc, np.int64(n), a.dtype.type(divisor)))
    return acc


def content_loss(F: Any, P: Any):
    """Fused content loss and gradient (paper Eq. 1, 2) on the GPU."""
    cupy = _cupy()
    F = cupy.ascontiguousarray(F)
    P = cupy.ascontiguousarray(cupy.asarray(P, dtype=F.dtype))
    if P.shape != F.shape:
        raise ValueError(f"content_loss: F has shape {F.shape} but P has shape {P.shape}")
    dF = cupy.empty_like(F)
    acc = _diff_sumsq(F, P, dF, 1)
    return (0.5 * acc[0]).astype(F.dtype), dF


def style_layer_loss(F: Any, A: Any):
    r"""Style loss of one layer and its gradient (paper Eq. 4, 6) on the GPU.

    cuBLAS forms :math:`G = F F^\top / M`; ``diff_sumsq`` forms :math:`(G - A) / (N^2 M)` and
    :math:`\sum (G - A)^2` in one pass; cuBLAS forms the gradient :math:`\frac{G - A}{N^2 M} F`.
    """
    cupy = _cupy()
    Fm = feature_matrix(F)
    N, M = Fm.shape
    A = cupy.ascontiguousarray(cupy.asarray(A, dtype=F.dtype))
    if A.shape != (N, N):
        raise ValueError(f"style_layer_loss: F has {N} channels but A has shape {A.shape}")
    G = cupy.ascontiguousarray(gram_matrix(Fm))
    D = cupy.empty_like(G)
    acc = _diff_sumsq(G, A, D, N * N * M)
    dF = D @ Fm  # (G - A) F / (N^2 M)
    return (acc[0] / (4 * N * N)).astype(F.dtype), dF.reshape(F.shape)


def tv_loss(image: Any):
    """Fused squared-TV loss and gradient on the GPU: one thread per pixel."""
    cupy = _cupy()
    image = cupy.ascontiguousarray(image)
    if image.ndim != 4:
        raise ValueError(f"tv_loss: expected an (N, C, H, W) image, got shape {image.shape}")
    H, W = image.shape[2], image.shape[3]
    grad = cupy.empty_like(image)
    acc = cupy.zeros(1, dtype=cupy.float64)
    n = image.size
    if n:
        _launch("tv", n, image.dtype, (image, grad, acc, np.int64(n), np.int64(H), np.int64(W)))
    return acc[0].astype(image.dtype), grad
