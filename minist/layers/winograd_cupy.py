r"""GPU kernels of the Winograd transforms: the CuPy counterpart of
:mod:`minist.layers.winograd_numba`, with the same two functions and signatures.

One CUDA thread per (channel, tile): it loads its :math:`\alpha \times \alpha` input tile
(zeros outside the image, optionally masked by the ReLU backward), computes
:math:`B^\top d B` and writes the :math:`\alpha^2` values of :math:`V`; likewise one thread per
(output channel, tile) computes :math:`A^\top m A` (+ bias, ReLU) and writes its
:math:`m \times m` outputs. One pass over memory each, where the slices version of
:mod:`minist.layers.winograd` launches a kernel per term.

**The kernels are generated from the matrices.** :func:`_linear_combination` turns each row of
:math:`B^\top` or :math:`A^\top` (:data:`minist.layers.winograd.TRANSFORMS`) into a C expression
(zero coefficients dropped, :math:`\pm 1` as plain additions), so the CUDA source holds exactly
the equations of the module docstring for :math:`F(2 \times 2, 3 \times 3)` and
:math:`F(4 \times 4, 3 \times 3)`; nothing is typed twice. The source is compiled by CuPy at first
use (and cached on disk by CuPy).
"""

from __future__ import annotations

import functools

import numpy as np

from minist.layers.kernels_cupy import CTYPES, launch
from minist.layers.winograd import TRANSFORMS


def _linear_combination(coefficients, terms) -> str:
    """``sum_k a_k * t_k`` as C source, in the kernel's type ``T``."""
    parts = []
    for a, t in zip(coefficients, terms, strict=True):
        if a == 0:
            continue
        if a == 1:
            parts.append(f"+ {t}")
        elif a == -1:
            parts.append(f"- {t}")
        else:
            parts.append(f"+ (T){float(a)!r} * {t}")
    return " ".join(parts) if parts else "(T)0"


def _sandwich(P, source: str, middle: str):
    """C statements for :math:`P X P^\top` on the α×α variables ``{source}{a}_{b}``: the left
    product as variables ``{middle}{r}_{b}``; returns them and the expressions of
    :math:`(P X P^\top)_{rs}`."""
    out, alpha = P.shape
    lines = [f"  T {middle}{r}_{b} = "
             f"{_linear_combination(P[r], [f'{source}{a}_{b}' for a in range(alpha)])};"
             for r in range(out) for b in range(alpha)]
    result = [[_linear_combination(P[c], [f"{middle}{r}_{b}" for b in range(alpha)])
               for c in range(out)] for r in range(out)]
    return lines, result


def _input_source(m: int, ctype: str) -> str:
    alpha = m + 2
    loads = [f"  T d{a}_{b} = load(x, mask, has_mask, base, r + {a}, q + {b}, H, W);"
             for a in range(alpha) for b in range(alpha)]
    rows, V = _sandwich(TRANSFORMS[m].BT, "d", "s")  # (B^T d)[xi][b], then (B^T d B)[xi][nu]
    stores = [f"  V[((long long){xi * alpha + nu} * C + c) * tiles + t] = {V[xi][nu]};"
              for xi in range(alpha) for nu in range(alpha)]
    body = "\n".join(loads + rows + stores)
    return f"""
typedef {ctype} T;
__device__ __forceinline__ T load(const T* x, const T* mask, int has_mask, long long base,
                                  int u, int v, int H, int W) {{
  if (u < 0 || u >= H || v < 0 || v >= W) return (T)0;
  long long k = base + (long long)u * W + v;
  T value = x[k];
  if (has_mask && !(mask[k] > (T)0)) value = (T)0 * value;  // like dy * [mask > 0]
  return value;
}}
extern "C" __global__ void input_transform(const T* x, const T* mask, int has_mask, int C,
                                           int H, int W, int t0, int tw, int tiles, T* V) {{
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long long)C * tiles) return;
  int c = (int)(i / tiles), t = (int)(i % tiles);
  int r = {m} * (t0 + t / tw) - 1, q = {m} * (t % tw) - 1;
  long long base = (long long)c * H * W;
{body}
}}
"""


def _output_source(m: int, ctype: str) -> str:
    alpha = m + 2
    loads = [f"  T m{xi}_{nu} = M[((long long){xi * alpha + nu} * F + f) * tiles + t];"
             for xi in range(alpha) for nu in range(alpha)]
    cols, Y = _sandwich(TRANSFORMS[m].AT, "m", "s")  # (A^T m)[a][nu], then (A^T m A)[a][b]
    stores = [f"  store(y, base, r + {a}, q + {b}, H, W, ({Y[a][b]}) + bf, relu);"
              for a in range(m) for b in range(m)]
    body = "\n".join(loads + cols + stores)
    return f"""
typedef {ctype} T;
__device__ __forceinline__ void store(T* y, long long base, int u, int v, int H, int W, T value,
                                      int relu) {{
  if (u >= H || v >= W) return;
  if (relu && value < (T)0) value = (T)0;  // max(value, 0); NaN stays NaN
  y[base + (long long)u * W + v] = value;
}}
extern "C" __global__ void output_transform(const T* M, const T* bias, int has_bias, int relu,
                                            int F, int H, int W, int t0, int tw, int tiles,
                                            T* y) {{
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (long long)F * tiles) return;
  int f = (int)(i / tiles), t = (int)(i % tiles);
  int r = {m} * (t0 + t / tw), q = {m} * (t % tw);
  long long base = (long long)f * H * W;
  T bf = has_bias ? bias[f] : (T)0;
{body}
}}
"""


@functools.cache
def _kernel(kind: str, m: int, dtype_name: str):
    import cupy

    source = (_input_source if kind == "input_transform" else _output_source)(m, CTYPES[dtype_name])
    return cupy.RawKernel(source, kind)


def winograd_input_transform(image, mask, t0: int, tw: int, V, m: int) -> None:
    r""":math:`V = B^\top d B` for the tiles of rows ``t0 ...``, all channels of one unpadded
    image ``(C, H, W)`` (masked by ``mask > 0`` unless ``mask`` is None); ``V`` contiguous
    ``(α², C, tr * tw)``. Same as :func:`minist.layers.winograd_numba.winograd_input_transform`."""
    import cupy

    image = cupy.ascontiguousarray(image)
    C, H, W = image.shape
    tiles = V.shape[2]
    has_mask = mask is not None
    mask = cupy.ascontiguousarray(mask) if has_mask else image
    i32 = np.int32
    launch(_kernel("input_transform", m, image.dtype.name), C * tiles,
            (image, mask, i32(has_mask), i32(C), i32(H), i32(W), i32(t0), i32(tw), i32(tiles),
             V))


def winograd_output_transform(M, t0: int, tw: int, bias, relu: bool, y, m: int) -> None:
    r""":math:`y = A^\top M A` (+ ``bias``, then ReLU if ``relu``) for the tiles of rows
    ``t0 ...`` into ``y`` (one image, contiguous ``(F, H, W)``). Same as
    :func:`minist.layers.winograd_numba.winograd_output_transform`."""
    F, tiles = M.shape[1], M.shape[2]
    H, W = y.shape[1], y.shape[2]
    has_bias = bias is not None
    i32 = np.int32
    launch(_kernel("output_transform", m, M.dtype.name), F * tiles,
            (M, bias if has_bias else M, i32(has_bias), i32(relu), i32(F), i32(H), i32(W),
             i32(t0), i32(tw), i32(tiles), y))
