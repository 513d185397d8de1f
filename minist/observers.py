"""Observers of the run loop (:mod:`minist.loop`) that the command line uses, and anyone else
who wants them: a progress bar, a JSON-lines log, intermediate images, the final image.

Each is small and does one job; ``minist stylize`` lists the ones its options ask for.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from minist.images import save_image
from minist.loop import Observer, Outcome
from minist.status import RunStatus

# metadata(run, status) -> the PNG text chunks of an image saved in that state
Metadata = Callable[[object, RunStatus], dict]


def intermediate_path(output: Path, iteration: int, scale: int | None = None) -> Path:
    """``out.png`` -> ``out.iter0050.png`` (beside the output); with a ``scale`` (coarse-to-fine
    runs), ``out.scale0256.iter0050.png``."""
    output = Path(output)
    tag = f".scale{scale:04d}" if scale is not None else ""
    return output.with_name(f"{output.stem}{tag}.iter{iteration:04d}{output.suffix or '.png'}")


class ProgressBar(Observer):
    """A tqdm bar on stderr: iterations, it/s, ETA, and the last losses."""

    def __init__(self, total: int, disable: bool = False, file=None):
        self.total, self.disable, self.file = total, disable, file
        self.bar = None

    def on_start(self, run) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, unit="it", disable=self.disable,
                        file=self.file or sys.stderr, dynamic_ncols=True)

    def on_step(self, record, run) -> None:
        self.bar.set_postfix(content=f"{record.content:.3g}", style=f"{record.style:.3g}",
                             total=f"{record.total:.4g}", refresh=False)
        self.bar.update(1)

    def on_end(self, run, outcome: Outcome) -> None:
        if self.bar is not None:
            self.bar.close()


class JsonLog(Observer):
    """One JSON object per iteration (the :class:`~minist.loop.IterationRecord`'s fields),
    written and flushed as the run goes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.file = None

    def on_start(self, run) -> None:
        self.file = open(self.path, "w")  # noqa: SIM115 - closed in on_end, however it ends

    def on_step(self, record, run) -> None:
        self.file.write(json.dumps(record._asdict()) + "\n")
        self.file.flush()

    def on_end(self, run, outcome: Outcome) -> None:
        if self.file is not None:
            self.file.close()


class Snapshots(Observer):
    """Every ``every`` iterations, the current image beside ``output``
    (:func:`intermediate_path`), saved atomically with ``metadata(run, RunStatus.INTERMEDIATE)``.

    ``by_scale`` (coarse-to-fine runs): every ``every`` iterations of each scale, named with the
    scale and the iteration within it."""

    def __init__(self, output: str | Path, every: int, metadata: Metadata,
                 by_scale: bool = False):
        self.output, self.every, self.metadata = Path(output), every, metadata
        self.by_scale = by_scale

    def on_step(self, record, run) -> None:
        done = record.iter + 1 if self.by_scale else run.iteration
        if self.every and done % self.every == 0:
            path = intermediate_path(self.output, done, record.scale if self.by_scale else None)
            save_image(path, run.image_on_cpu(), self.metadata(run, RunStatus.INTERMEDIATE))


class SaveResult(Observer):
    """The image to keep, saved atomically to ``output`` when the run ends -- finished, stopped,
    interrupted, or with the last finite image after a non-finite loss -- with
    ``metadata(run, outcome.status)``. Nothing is written when the run failed otherwise."""

    def __init__(self, output: str | Path, metadata: Metadata):
        self.output, self.metadata = Path(output), metadata

    def on_end(self, run, outcome: Outcome) -> None:
        if outcome.status != RunStatus.FAILED:
            save_image(self.output, outcome.image, self.metadata(run, outcome.status))
