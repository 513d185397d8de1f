"""A sweep's output folder: each run's files, their JSON records, what interrupted runs left.

A run's files are ``runs/NAME.png``, ``runs/NAME.json``, ``runs/NAME.jsonl`` and, for a failed
run, ``runs/NAME.failed.json`` (:func:`run_files`); a run has finished when its image is in place
and its record holds the same settings (:func:`finished_record`) -- what lets a sweep resume.
One sweep writes into a folder at a time (:func:`output_lock`).
"""

from __future__ import annotations

import contextlib
import json
import os
import typing
from collections.abc import Sequence
from pathlib import Path

from minist.errors import MinistError
from minist.sweep.spec import Run, one_line


class RunFiles(typing.NamedTuple):
    image: Path
    record: Path  # settings, final losses, iterations, seconds
    log: Path  # one JSON line per iteration
    failure: Path  # the record of a failed run


def run_files(out_dir: str | os.PathLike, name: str) -> RunFiles:
    runs = Path(out_dir) / "runs"
    return RunFiles(runs / f"{name}.png", runs / f"{name}.json", runs / f"{name}.jsonl",
                    runs / f"{name}.failed.json")


def read_json(path: Path) -> dict | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: Path, value: dict) -> None:
    """Write ``value`` as JSON, atomically."""
    from minist.weights.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=1) + "\n")


def finished_record(out_dir, run: Run) -> dict | None:
    """The record of ``run`` when it has finished with these settings (image and record in
    place, same settings), else None."""
    files = run_files(out_dir, run.name)
    if not files.image.is_file():
        return None
    record = read_json(files.record)
    if record is None or record.get("settings") != run.settings:
        return None
    return record


def remove_leftovers(out_dir, runs: Sequence[Run]) -> int:
    """Delete what interrupted runs left: temporary files (``.*.part*``, from
    :func:`~minist.weights.atomic.atomic_path`) and a record or log without its image.
    Returns the number of files removed. Call it only while no run of this folder is running."""
    folder = Path(out_dir) / "runs"
    removed = 0
    for path in folder.glob(".*.part*"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    for run in runs:
        files = run_files(out_dir, run.name)
        if not files.image.exists():
            for path in (files.record, files.log):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed


@contextlib.contextmanager
def output_lock(out_dir: Path):
    """One sweep at a time per output folder (an advisory lock where the OS has one)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(out_dir / ".minist-sweep.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise MinistError(f"{out_dir}: another sweep is writing into this folder") from None
        yield


def prepare_output(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` and ``out_dir/runs``; one line when that is not possible."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise MinistError(f"-o {out_dir}: exists and is not a folder")
    try:
        (out_dir / "runs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MinistError(f"-o {out_dir}: cannot create the folder ({one_line(exc)})") from None
    if not os.access(out_dir / "runs", os.W_OK | os.X_OK):
        raise MinistError(f"-o {out_dir}: folder is not writable")
    return out_dir

