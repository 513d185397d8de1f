"""How minist runs, apart from what it computes: one explicit, immutable execution config.

The mathematics of a layer is fixed; *how* it is run is a choice: which device, which
convolution algorithm, how large the blocks of work are, which compiled kernels, how many CPU
threads. Those choices live in one :class:`ExecutionConfig` that the network carries
(:class:`minist.vgg.VGG` passes it to every layer it calls) and that the layer functions take
as a keyword argument, ``config=``. There are no module-level switches: two runs in one process
can use two configs, and a test that wants im2col instead of Winograd says so in the config it
passes::

    from minist.execution import ExecutionConfig
    im2col = ExecutionConfig(winograd=False)
    y, cache = conv2d_forward(x, w, b, config=im2col)

``config=None`` (the default of every layer) means :func:`default_config` for the device the
arrays live on. The numbers below were measured with ``minist bench`` (README, "Performance").
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass

from minist.backend import check_device, device_of
from minist.errors import MinistError

MiB = 2**20
# Bytes of im2col columns built at a time. On the CPU a block that stays in cache beats one huge
# matrix (whose fresh pages alone cost more than the GEMM); on the GPU, fewer larger launches win.
IM2COL_BLOCK_BYTES = {"cpu": 16 * MiB, "cuda": 512 * MiB}
# Bytes of Winograd's V + M (transformed input and products) built at a time.
WINOGRAD_BLOCK_BYTES = {"cpu": 32 * MiB, "cuda": 512 * MiB}
WINOGRAD_TILES = (2, 4)
LOSS_BACKENDS = ("auto", "reference")


@dataclass(frozen=True)
class ExecutionConfig:
    """Every execution choice of a run (none of them changes the mathematics).

    Attributes:
        device: ``"cpu"`` (NumPy) or ``"cuda"`` (CuPy) -- the one spelling used everywhere.
        winograd: run the 3x3, stride-1, pad-1 convolutions whose input has at least
            ``winograd_min_channels`` channels (and their input gradients) as Winograd
            :math:`F(m \\times m, 3 \\times 3)` (:mod:`minist.layers.winograd`); False: im2col +
            GEMM everywhere. (VGG's ``conv1_1``, on the 3-channel image, always uses im2col.)
        winograd_tile: the output tile :math:`m` (2 or 4; 4 has 4x fewer multiplications and
            measured fastest on CPU and GPU).
        winograd_min_channels: see ``winograd``.
        kernels: use the compiled kernels (Numba on the CPU, CUDA on the GPU) for the Winograd
            transforms and max pooling; False runs the NumPy/CuPy slices versions (to read and
            to test against).
        parallel_pooling: run the CPU max-pooling kernels in parallel over channels. Off: in
            VGG the poolings run right after BLAS GEMMs, whose worker threads keep spinning for a
            while and Numba's threads then fight them for the cores (measured on 2 cores: a
            VGG-19 step at 256 px ~10 ms faster with serial pooling).
        loss_backend: ``"auto"`` (the fastest implementation of each loss function for the
            device, :mod:`minist.losses.dispatch`) or ``"reference"`` (the readable one).
        im2col_block_bytes: bytes of im2col columns built at a time (None: per device).
        winograd_block_bytes: bytes of Winograd's :math:`V + M` built at a time (None: per
            device).
        pipeline_block_bytes, pipeline_min_blocks_per_thread: on the CPU, a Winograd layer with
            at least ``pipeline_min_blocks_per_thread`` blocks of ``pipeline_block_bytes`` per
            thread runs as whole blocks per thread on a single-threaded BLAS (measured 1.6-2x
            faster on 64- and 128-channel layers than BLAS's own threads in the GEMMs).
        threads: CPU threads this run uses -- NumPy's BLAS, Numba's parallel loops and the
            Winograd workers (:mod:`minist.threads`). None: the BLAS thread count this process
            had when minist first looked (what a run would have alone).
    """

    device: str = "cpu"
    winograd: bool = True
    winograd_tile: int = 4
    winograd_min_channels: int = 16
    kernels: bool = True
    parallel_pooling: bool = False
    loss_backend: str = "auto"
    im2col_block_bytes: int | None = None
    winograd_block_bytes: int | None = None
    pipeline_block_bytes: int = 2 * MiB
    pipeline_min_blocks_per_thread: int = 16
    threads: int | None = None

    def __post_init__(self):
        check_device(self.device)
        if self.winograd_tile not in WINOGRAD_TILES:
            raise ValueError(f"winograd_tile must be one of {WINOGRAD_TILES}, "
                             f"got {self.winograd_tile!r}")
        if self.loss_backend not in LOSS_BACKENDS:
            raise ValueError(f"loss_backend must be one of {LOSS_BACKENDS}, "
                             f"got {self.loss_backend!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise MinistError(f"--threads: must be an integer >= 1, got {self.threads!r}")
        for name, table in (("im2col_block_bytes", IM2COL_BLOCK_BYTES),
                            ("winograd_block_bytes", WINOGRAD_BLOCK_BYTES)):
            if getattr(self, name) is None:  # frozen: fill the device's default once
                object.__setattr__(self, name, table[self.device])
        if self.threads is None:
            from minist.threads import process_threads

            object.__setattr__(self, "threads", process_threads())

    @property
    def cpu(self) -> bool:
        return self.device == "cpu"

    def uses_winograd(self, channels: int) -> bool:
        """Whether a 3x3, stride-1, pad-1 convolution whose input has ``channels`` channels runs
        as Winograd; for the input gradient, count the output channels (they are its input).
        The layers and the memory planner ask this same question."""
        return self.winograd and channels >= self.winograd_min_channels

    def scope(self):
        """A context for a block of this run's work: on the CPU, NumPy's BLAS and Numba on
        ``threads`` threads, other runs' scopes waiting (:func:`minist.threads.blas_scope`);
        nothing on the GPU."""
        if not self.cpu:
            return contextlib.nullcontext()
        from minist.threads import blas_scope

        return blas_scope(self.threads)

    def replace(self, **changes) -> ExecutionConfig:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


@functools.cache
def default_config(device: str = "cpu") -> ExecutionConfig:
    """The config a layer uses when called with ``config=None``: the defaults for ``device``."""
    return ExecutionConfig(device=device)


def config_for(array, config: ExecutionConfig | None) -> ExecutionConfig:
    """``config``, or the default for the device ``array`` lives on."""
    return default_config(device_of(array)) if config is None else config
