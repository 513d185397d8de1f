"""What a sweep did (:class:`SweepReport`: each run's result, the exit status) and its gallery:
one :class:`minist.gallery.Entry` per run, from the records on disk (:func:`gallery_entries`),
written as ``index.html`` and ``sheet.png`` (:func:`write_gallery_of`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from minist.status import RunStatus
from minist.sweep.spec import SPEC_KEYS, Sweep
from minist.sweep.store import finished_record, read_json, run_files

EXIT_RUNS_FAILED = 1


@dataclass
class SweepReport:
    """What a sweep did: the runs and, by name, how each ended."""

    sweep: Sweep
    out_dir: Path
    results: dict = field(default_factory=dict)  # name -> result (execute_run's dict)
    skipped: list = field(default_factory=list)  # names of runs finished before
    interrupted: bool = False

    @property
    def failed(self) -> list[str]:
        return [name for name, r in self.results.items() if r["status"] == RunStatus.FAILED]

    @property
    def finished(self) -> list[str]:
        return self.skipped + [n for n, r in self.results.items()
                               if r["status"] == RunStatus.FINISHED]

    @property
    def exit_status(self) -> int:
        return EXIT_RUNS_FAILED if self.failed else 0


def gallery_entries(sweep: Sweep, out_dir: Path, results: dict | None = None) -> list:
    """One :class:`minist.gallery.Entry` per run: finished (from its record on disk), failed
    (from this sweep's result, or a failure record with the same settings) or not run."""
    from minist.gallery import Entry

    results = results or {}

    def rel(path: Path) -> str:
        return path.relative_to(out_dir).as_posix()

    entries = []
    for run in sweep.runs:
        files = run_files(out_dir, run.name)
        record = finished_record(out_dir, run)
        if record is not None:
            entries.append(Entry(
                name=run.name, point=run.point, status=RunStatus.FINISHED, image=rel(files.image),
                settings_file=rel(files.record),
                log_file=rel(files.log) if files.log.exists() else None,
                losses=record.get("final"), iterations=record.get("iterations"),
                seconds=record.get("seconds")))
            continue
        failure = results.get(run.name)
        if failure is None or failure["status"] != RunStatus.FAILED:  # an earlier sweep's failure?
            failure = read_json(files.failure)
            if failure is not None and failure.get("settings") != run.settings:
                failure = None
        if failure is not None:
            entries.append(Entry(
                name=run.name, point=run.point, status=RunStatus.FAILED, image=None,
                settings_file=rel(files.failure) if files.failure.exists() else None,
                log_file=None, losses=None,
                iterations=failure.get("iterations"), seconds=failure.get("seconds"),
                error=failure.get("error") or "failed"))
        else:
            entries.append(Entry(name=run.name, point=run.point, status=RunStatus.NOT_RUN))
    return entries


def write_gallery_of(report: SweepReport) -> tuple[Path, Path]:
    """``index.html`` and ``sheet.png`` of the sweep, from what is on disk now."""
    from minist.gallery import Axis, write_gallery

    sweep = report.sweep
    axes = []
    for key, values in sweep.axes.items():
        images = ()
        if key in SPEC_KEYS:
            images = tuple(sweep.inputs[v[0] if isinstance(v, list) else v] for v in values)
        axes.append(Axis(key, tuple(values), images))
    return write_gallery(report.out_dir, sweep.title, axes,
                         gallery_entries(sweep, report.out_dir, report.results),
                         rows=sweep.rows, columns=sweep.columns,
                         source=os.path.relpath(sweep.spec, report.out_dir))
