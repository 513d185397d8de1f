r"""Optical flow between frames, from OpenCV (the ``video`` extra), in :mod:`minist.temporal`'s
convention: a flow is a float32 ``(2, H, W)`` array :math:`w = (u, v)`, :math:`u` along the
columns and :math:`v` along the rows, in pixels, the displacement that carries each pixel
:math:`p` of frame :math:`a` to where it is in frame :math:`b`:

.. math::

    I_a(p) \approx I_b\bigl(p + w(p)\bigr).

Ruder et al. need, for frame :math:`t` and each :math:`j` of the long-term set :math:`J`, the
**forward** flow :math:`w = \mathrm{flow}(I_{t-j}, I_t)` and the **backward** flow
:math:`\hat w = \mathrm{flow}(I_t, I_{t-j})` (:func:`pair_flows`).

Methods (``--flow``), all on 8-bit grayscale frames (BT.601 luma, as OpenCV's ``cvtColor``):

* ``deepflow`` -- DeepFlow (Weinzaepfel et al. 2013), the flow Ruder et al. used: a variational
  flow, ``cv2.optflow.createOptFlow_DeepFlow`` (opencv-contrib), without the DeepMatching
  term of the paper: the most accurate on small motions, but it loses an object moving more
  than about 10 px between frames (measured on 160 x 120 frames), and the slowest (at 256 x 192,
  about 0.46 s for a pair's two flows, against 0.11 s for ``dis`` and 0.02 s for ``farneback``).
* ``dis`` -- Dense Inverse Search (Kroeger et al. 2016), ``cv2.DISOpticalFlow_create`` with the
  ``MEDIUM`` preset (patch search, then variational refinement) run down to full resolution
  with smaller patches (:data:`DIS_FINEST_SCALE` and beside it): fast, in core OpenCV, the
  sharpest motion boundaries of the three.
* ``farneback`` -- Farneback's polynomial expansion (2003), ``cv2.calcOpticalFlowFarneback``
  with a 5-level pyramid: the classic, smooth, weakest at motion boundaries.

:func:`default_method` is ``deepflow`` where ``cv2.optflow`` is installed, else ``dis``.

**Many pairs.** The flows of different pairs are independent: :func:`pair_flows` computes them
in a pool of worker processes (``concurrent.futures``), one task per pair (its forward and
backward flow), each worker on one OpenCV thread -- or, given a ``scheduler`` address, as tasks
of a running Dask cluster (``dask.distributed``, the ``sweep`` extra; ``minist video
--scheduler``), each grayscale frame sent to the cluster once. Each pair is **cached** as one
``.npz`` file holding both flows in **float16**, named by the SHA-256 of the two frames'
grayscale bytes, the size and the method; it is written atomically and read back on a rerun
instead of computing the
pair again. Float16 keeps 11 significant bits: an error below :math:`2^{-11}|w|` (under 0.016 px
for flows under 32 px, far below any method's own error); the flows are rounded so on the first
run too, so a rerun sees exactly the numbers the first run used. A pair takes
:math:`2 \cdot 2 \cdot H W \cdot 2` bytes on disk plus a header (``np.savez``, uncompressed: flow
values compress poorly): 393,732 bytes at 256 x 192.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import socket
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from minist.errors import MinistError
from minist.images import to_uint8_hwc
from minist.options import FLOW_METHODS
from minist.threads import available_cores
from minist.video import require_cv2
from minist.weights.atomic import atomic_path

METHODS = FLOW_METHODS  # the --flow choices, declared with the option (minist.options)
# DIS: the MEDIUM preset (patch search with spatial propagation, then variational refinement),
# but at full resolution (finest scale 0; the preset stops at 1, half resolution, and upsamples,
# which blurs motion boundaries) with 6 px patches every 2 px (the preset: 8 every 3). On a
# painting's patch crossing a photo (tests/test_video_flow.py) this raised the IoU of the
# consistency check against the truly disoccluded pixels from 0.17-0.34 to 0.56-0.65 for
# motions of 6-14 px, at about 4x the time (11 ms per 160 x 120 flow).
DIS_FINEST_SCALE, DIS_PATCH_SIZE, DIS_PATCH_STRIDE = 0, 6, 2
CACHE_VERSION = "minist-flow-1"  # part of every cache key: bump when a method's settings change


def _has_deepflow(cv2: Any) -> bool:
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "createOptFlow_DeepFlow")


def available_methods() -> tuple[str, ...]:
    """The methods the installed OpenCV has (deepflow needs opencv-contrib)."""
    cv2 = require_cv2()
    return tuple(m for m in METHODS if m != "deepflow" or _has_deepflow(cv2))


def default_method() -> str:
    """``deepflow`` where opencv-contrib is installed, else ``dis``."""
    return "deepflow" if "deepflow" in available_methods() else "dis"


def check_method(method: str) -> str:
    """``method`` when the installed OpenCV has it; one line naming ``--flow`` otherwise."""
    if method not in METHODS:
        raise MinistError(f"--flow: unknown method {method!r}; choose one of "
                          f"{', '.join(METHODS)}")
    installed = available_methods()
    if method not in installed:
        raise MinistError(f"--flow {method}: the installed OpenCV lacks it (DeepFlow is in "
                          f"opencv-contrib's cv2.optflow); installed: {', '.join(installed)}")
    return method


def to_gray_uint8(frame) -> np.ndarray:
    """``(1, 3, H, W)`` RGB in [0, 1] -> ``(H, W)`` uint8 luma, as OpenCV's flows want:
    :math:`Y = 0.299 R + 0.587 G + 0.114 B` on the 8-bit values (``cv2.cvtColor``)."""
    cv2 = require_cv2()
    return cv2.cvtColor(to_uint8_hwc(frame), cv2.COLOR_RGB2GRAY)  # the 8-bit rounding of PNGs


def _flow_gray(gray_a: np.ndarray, gray_b: np.ndarray, method: str) -> np.ndarray:
    """OpenCV's (H, W, 2) flow of two grayscale frames -> (2, H, W) float32 (u, v)."""
    cv2 = require_cv2()
    if method == "deepflow":
        flow = cv2.optflow.createOptFlow_DeepFlow().calc(gray_a, gray_b, None)
    elif method == "dis":
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        dis.setFinestScale(DIS_FINEST_SCALE)
        dis.setPatchSize(DIS_PATCH_SIZE)
        dis.setPatchStride(DIS_PATCH_STRIDE)
        flow = dis.calc(gray_a, gray_b, None)
    else:  # farneback: pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
        flow = cv2.calcOpticalFlowFarneback(gray_a, gray_b, None, 0.5, 5, 15, 3, 5, 1.2, 0)
    return np.ascontiguousarray(flow.transpose(2, 0, 1), dtype=np.float32)


def optical_flow(frame_a, frame_b, method: str) -> np.ndarray:
    r"""The flow :math:`w` ``(2, H, W)`` float32 from ``frame_a`` to ``frame_b`` (each
    ``(1, 3, H, W)`` RGB in [0, 1]): :math:`I_a(p) \approx I_b(p + w(p))`, ``w[0]`` = u
    (columns), ``w[1]`` = v (rows)."""
    check_method(method)
    if frame_a.shape != frame_b.shape:
        raise MinistError(f"optical_flow: frames of shapes {tuple(frame_a.shape)} and "
                          f"{tuple(frame_b.shape)} differ")
    return _flow_gray(to_gray_uint8(frame_a), to_gray_uint8(frame_b), method)


class PairFlows(NamedTuple):
    """The flows of the pairs ``(t - j, t)``, keyed by ``(t, j)`` (0-based frame ``t``)."""

    forward: dict[tuple[int, int], np.ndarray]  # flow(I_{t-j}, I_t)
    backward: dict[tuple[int, int], np.ndarray]  # flow(I_t, I_{t-j})
    method: str


def pairs_for(frame_count: int, long_term: Iterable[int] = (1,)) -> list[tuple[int, int]]:
    """Every ``(t, j)`` with ``j`` in ``long_term`` and ``0 <= t - j``, in order of ``t``."""
    offsets = sorted(set(long_term))
    if not offsets or any(isinstance(j, bool) or not isinstance(j, int) or j < 1 for j in offsets):
        raise MinistError(f"--long-term: expected whole numbers of frames >= 1, got {offsets}")
    return [(t, j) for t in range(1, frame_count) for j in offsets if t - j >= 0]


def cache_key(gray_a: np.ndarray, gray_b: np.ndarray, method: str) -> str:
    """SHA-256 of the version, the method, the size and both frames' grayscale bytes."""
    digest = hashlib.sha256(f"{CACHE_VERSION}|{method}|{gray_a.shape}|".encode())
    digest.update(gray_a.tobytes())
    digest.update(gray_b.tobytes())
    return digest.hexdigest()


def _compute_pair(gray_a: np.ndarray, gray_b: np.ndarray, method: str):
    """Forward and backward flow of one pair, rounded through float16 (the cache's type)."""
    forward = _flow_gray(gray_a, gray_b, method).astype(np.float16)
    backward = _flow_gray(gray_b, gray_a, method).astype(np.float16)
    return forward, backward


def _worker_init() -> None:
    require_cv2().setNumThreads(1)  # one process per core: no nested threads


def _pair_task(gray_a: np.ndarray, gray_b: np.ndarray, method: str):
    """One pair on a Dask worker: one OpenCV thread per task thread."""
    _worker_init()
    return _compute_pair(gray_a, gray_b, method)


def require_distributed():
    """``dask.distributed``, or one line saying how to install it (``--scheduler``)."""
    try:
        import distributed
    except ImportError:
        raise MinistError("--scheduler: the flows on a Dask cluster need Dask, which is not "
                          "installed: pip install 'minist[sweep]'") from None
    return distributed


SCHEDULER_CONNECT_TIMEOUT = 3.0  # seconds: a reachable scheduler answers well within this
DASK_SCHEDULER_PORT = 8786  # Dask's default, for an address without a port
SOCKET_PROTOCOLS = ("tcp", "tls", "ws", "wss")  # the address is HOST:PORT of a TCP socket


def check_scheduler(address: str, timeout: float = SCHEDULER_CONNECT_TIMEOUT) -> None:
    """One line (MinistError) unless Dask is installed and the scheduler at ``address``
    (``tcp://HOST:PORT``, ``HOST:PORT``, ``tls://...``) accepts a connection within
    ``timeout`` seconds: ``--scheduler`` checked before any work. Only that the address
    answers -- the cluster's own handshake comes with the flows, as do addresses of other
    protocols (``inproc://``, ``ucx://``)."""
    require_distributed()
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        protocol, location = parse_address(address)
        host, port = parse_host_port(location, DASK_SCHEDULER_PORT)
    except (TypeError, ValueError) as exc:
        raise MinistError(f"--scheduler {address}: not an address ({exc})") from None
    if protocol not in SOCKET_PROTOCOLS:
        return
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:  # refused, no such host, timed out (socket.timeout is an OSError)
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise MinistError(f"--scheduler {address}: cannot connect ({reason})") from None


def _on_cluster(scheduler: str, gray: list, todo: list, method: str, timeout: float = 60):
    """The pairs of ``todo`` (``((t, j), cache path)``) as tasks of the Dask cluster at
    ``scheduler``: yields ``((t, j), path, (forward, backward))`` in ``todo``'s order."""
    distributed = require_distributed()
    try:
        client = distributed.Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MinistError(f"--scheduler {scheduler}: cannot connect ({first_line})") from None
    with client:
        needed = sorted({i for (t, j), _ in todo for i in (t - j, t)})
        sent = dict(zip(needed, client.scatter([gray[i] for i in needed]), strict=True))
        futures = [client.submit(_pair_task, sent[t - j], sent[t], method, pure=False)
                   for (t, j), _ in todo]
        for ((t, j), path), future in zip(todo, futures, strict=True):
            yield (t, j), path, future.result()


def _read_cached(path: Path):
    try:
        with np.load(path) as data:
            return data["forward"], data["backward"]
    except (OSError, KeyError, ValueError):  # absent, partial or foreign: compute again
        return None


def _write_cached(path: Path, forward: np.ndarray, backward: np.ndarray) -> None:
    with atomic_path(path, suffix=".part.npz") as tmp:
        np.savez(tmp, forward=forward, backward=backward)


@contextlib.contextmanager
def _main_script_hidden():
    """While inside, a spawned worker does not run the parent's ``__main__`` script again.

    A spawned process imports the script its parent was started with, to find the functions
    it is sent; a script without an ``if __name__ == "__main__"`` guard (a lesson, a user's
    few lines) would run again in each worker, start a pool of its own there and break the
    parent's. The flows' workers run minist's functions only, so the script's path is hidden
    from :mod:`multiprocessing` while they start (``python -m`` mains are never rerun)."""
    main = sys.modules.get("__main__")
    path = vars(main).pop("__file__", None) if main is not None else None
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


def _computed(gray: list, todo: list, method: str, workers: int | None,
              scheduler: str | None):
    """The pairs of ``todo`` (``((t, j), cache path)``) computed, yielded as ``((t, j), path,
    (forward, backward))`` in ``todo``'s order: on the Dask cluster at ``scheduler``, here
    (one worker), or in a pool of ``workers`` processes (default: the usable cores)."""
    if not todo:
        return
    if scheduler:
        yield from _on_cluster(scheduler, gray, todo, method)
        return
    workers = max(1, min(workers or available_cores(), len(todo)))
    if workers == 1:
        for (t, j), path in todo:
            yield (t, j), path, _compute_pair(gray[t - j], gray[t], method)
        return
    # Spawned, not forked, workers: a fork taken while OpenCV's, the BLAS's or Numba's thread
    # pools hold a lock inherits the lock held forever, and the child hangs.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_worker_init) as pool:
        with _main_script_hidden():  # the workers start as the tasks are submitted
            futures = [pool.submit(_compute_pair, gray[t - j], gray[t], method)
                       for (t, j), _ in todo]
        for ((t, j), path), future in zip(todo, futures, strict=True):
            yield (t, j), path, future.result()


def pair_flows(frames: Sequence, method: str, *, long_term: Iterable[int] = (1,),
               cache_dir: str | os.PathLike | None = None,
               workers: int | None = None, scheduler: str | None = None) -> PairFlows:
    r"""Forward and backward flows of every pair :math:`(t - j, t)`, :math:`j \in`
    ``long_term``, of ``frames`` (each ``(1, 3, H, W)``). Pairs found in ``cache_dir`` are
    read back; the others are computed in ``workers`` processes (default: the cores this
    process may use; 1 computes here), or with ``scheduler`` (an address) as tasks of that
    running Dask cluster, and, with ``cache_dir``, saved there as ``flow-<key>.npz``. The
    flows are float32 arrays holding float16-rounded values."""
    check_method(method)
    pairs = pairs_for(len(frames), long_term)
    gray = [to_gray_uint8(f) for f in frames]
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    results, todo = {}, []
    for t, j in pairs:
        path = cache / f"flow-{cache_key(gray[t - j], gray[t], method)}.npz" if cache else None
        cached = _read_cached(path) if path is not None else None
        if cached is not None:
            results[t, j] = cached
        else:
            todo.append(((t, j), path))
    for key, path, flows in _computed(gray, todo, method, workers, scheduler):
        results[key] = flows
        if path is not None:  # each pair saved as it is done: an interrupted run keeps it
            _write_cached(path, *flows)
    forward = {key: results[key][0].astype(np.float32) for key in pairs}
    backward = {key: results[key][1].astype(np.float32) for key in pairs}
    return PairFlows(forward, backward, method)
