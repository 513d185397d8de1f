"""Sweeps: many style transfers from one TOML spec, run on Dask, resumable, with a gallery.

Reproducing the paper's figures -- Fig. 2 (one photo, several paintings), Fig. 3 (style layers
x the ratio alpha/beta) -- or preparing a class gallery means dozens of runs. ``minist sweep
SPEC.toml -o DIR`` runs the cartesian product of the lists in the spec, one style transfer per
combination, as tasks of a Dask cluster (:mod:`dask.distributed`): a ``LocalCluster`` of worker
processes by default, or any running cluster by its scheduler's address. minist does not
schedule anything itself: Dask places the runs, and reschedules the run of a worker process that
dies.

**The spec** (TOML; every path in it is relative to the spec file)::

    content = "photo.jpg"                          # or a list: one run per photo
    style = ["starry_night.jpg", "the_scream.jpg"]  # one run per painting
    weights = "../weights/vgg16.h5"
    size = 128                                     # a StylizeOptions field: a scalar ...
    style_weight = [1e2, 1e3, 1e4]                 # ... or a list of values to sweep
    style_layers = [["relu1_1"], ["relu1_1", "relu2_1"]]  # list-valued fields: list of lists

    [gallery]                                      # optional
    rows = "style_layers"
    columns = "style_weight"
    title = "Fig. 3"

Keys: ``content`` and ``style`` (an image path or a list of them; a style that is itself a list
of paths is one run with several style images), any option of
:class:`~minist.options.StylizeOptions` by its name (checked by its declaration in
:mod:`minist.options`, so a new option works in specs at once), and the ``[gallery]`` table. An
option whose value is a list (``content_layers``, ``style_layers``, ``style_layer_weights``,
``content_masks`` ...) takes a list as one value and a list of lists as a sweep; an option of
any type (e.g. ``scales``, either ``"auto"`` or a list of sizes) sweeps over a list, so a list as
its one value is written inside a list (``[[64, 128, 256]]``). Options that name files
(``weights``, the masks, ``init`` when it is not ``content``/``noise``/``style``) are resolved
relative to the spec file (an empty mask entry: none); when ``weights`` is not given, the
default ``weights/vgg19.h5`` is relative to the working directory, as for ``minist stylize``,
and fetched once before the sweep when missing.

Everything that can be checked is checked before any work, with one line naming the spec file
and the key (:func:`load_sweep`): unknown keys, wrong types, empty or repeated values, missing
files, every combination's options (:meth:`StylizeOptions.validated`), layer names against the
weights. What only shows at run time -- a file that is not an image, an image too small for the
layers, a loss that becomes NaN -- fails that run alone: it is recorded with its one-line error,
shown in the gallery, and the other runs go on.

**Files** under ``DIR``: ``runs/NAME.png`` (the image, with the settings in its PNG metadata),
``runs/NAME.json`` (the settings, the final losses, iterations, seconds), ``runs/NAME.jsonl``
(one line per iteration, as ``minist stylize --log``), ``runs/NAME.failed.json`` for a failed
run; ``index.html``, ``sheet.png`` and ``thumbs/`` (:mod:`minist.gallery`). ``NAME`` is made
from the settings (:func:`run_name`): the content and style file names, the swept values, and a
hash of all the settings, so different settings never share a name. A run writes its three files
under temporary names and renames them into place when it has finished, the image last: an image
under its final name means a finished run. Re-running a spec skips every run whose image and
record exist with the same settings (resume after a crash or Ctrl-C), retries failed runs, and
removes what an interrupted run left behind.

**Exit status** of ``minist sweep``: 0 when every run finished, 1 when any run failed (the
gallery and the last lines of output say which and why), 2 for a bad spec or option (before any
work), 130 on Ctrl-C (finished runs are kept; the gallery shows what is done).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
import time
import traceback
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from minist.errors import MinistError
from minist.layer_choice import is_auto

SPEC_KEYS = ("content", "style")  # the images; every other key is an option or [gallery]
GALLERY_KEYS = ("rows", "columns", "title")
FINISHED, FAILED, NOT_RUN = "finished", "failed", "not run"
EXIT_RUNS_FAILED = 1
# Environment variables that size a worker process's thread pools before NumPy and Numba load.
THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                      "NUMBA_NUM_THREADS")


# ---------------------------------------------------------------------------------------------
# The options a spec may set: those of minist.options, by their declarations
# ---------------------------------------------------------------------------------------------


def _fits(option, value) -> bool:
    """Whether a scalar from the spec has a TOML type the option takes (bool is no integer)."""
    kinds = option.kind.toml
    if not kinds:
        return True
    if isinstance(value, bool):
        return bool in kinds
    if isinstance(value, int):
        return int in kinds or float in kinds
    return isinstance(value, kinds)


# ---------------------------------------------------------------------------------------------
# Runs and sweeps
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One style transfer of a sweep.

    ``content``/``style``: the image paths to read (resolved); ``options``: the validated
    :class:`~minist.stylize.StylizeOptions` (paths resolved); ``settings``: what identifies the
    run (JSON: the images as written in the spec and every option, as
    :meth:`StylizeOptions.as_metadata` gives them); ``point``: the value of every spec key for
    this run (what the gallery lays out).
    """

    name: str
    content: str
    style: str | tuple[str, ...]
    options: Any = field(repr=False)
    settings: dict = field(repr=False)
    point: dict = field(repr=False)


@dataclass(frozen=True)
class Sweep:
    """A spec read and checked: its keys with their values, and the runs it makes."""

    spec: Path
    axes: dict  # key -> list of values, in the spec's order (content and style first)
    runs: list
    rows: str | None = None  # the gallery axes the spec asks for (None: chosen automatically)
    columns: str | None = None
    title: str = ""
    inputs: dict = field(default_factory=dict)  # image path as written -> path to read

    @property
    def swept(self) -> list[str]:
        """The keys with more than one value."""
        return [key for key, values in self.axes.items() if len(values) > 1]


def read_toml(path: Path) -> dict:
    """The spec file as a dict; one line naming the file for a missing or malformed one."""
    tomllib = _toml_module()
    if not path.is_file():
        raise MinistError(f"{path}: no such spec file")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise MinistError(f"{path}: not valid TOML ({one_line(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MinistError(f"{path}: cannot read ({one_line(exc)})") from None


def one_line(error: BaseException | str) -> str:
    """An error's message squeezed onto one line."""
    text = " ".join(str(error).split())
    if isinstance(error, BaseException) and not isinstance(error, MinistError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text


def _canonical(value):
    """``value`` as JSON gives it back (tuples -> lists), to compare and hash settings."""
    return json.loads(json.dumps(value))


def _scalar_ok(value) -> bool:
    return isinstance(value, (str, int, float, bool))


def _spec_values(spec: Path, key: str, raw, option) -> list:
    """The list of values of one spec key (a scalar is a list of one); ``option``: its
    :class:`minist.options.Option` (None for content and style)."""

    def bad(problem: str):
        raise MinistError(f"{spec}: {key}: {problem}")

    if isinstance(raw, dict):
        bad("expected a value or a list of values, got a table")
    if key == "content":
        values = raw if isinstance(raw, list) else [raw]
        if not all(isinstance(v, str) for v in values):
            bad("expected an image path or a list of image paths")
    elif key == "style":
        values = raw if isinstance(raw, list) else [raw]
        for v in values:
            if isinstance(v, list):
                if not v or not all(isinstance(s, str) for s in v):
                    bad("a style that is a list must list image paths")
            elif not isinstance(v, str):
                bad("expected an image path, a list of them, or lists of paths")
    elif option.words and option.sequence and isinstance(raw, str):  # style_layers = "auto"
        values = [raw]
    elif option.sequence:
        if not isinstance(raw, list):
            bad(f"expected a list such as [\"relu1_1\", \"relu2_1\"] (one value) or a list of "
                f"such lists (a sweep), got {raw!r}")
        nested = [isinstance(v, list) or (bool(option.words) and isinstance(v, str))
                  for v in raw]
        if raw and all(nested) and any(isinstance(v, list) for v in raw):
            values = raw  # a sweep: lists, and (for a word field) single strings such as "auto"
        elif any(isinstance(v, list) for v in raw):
            bad("mixes lists and single items; to sweep, give a list of lists")
        else:
            values = [raw]
        for v in values:
            if isinstance(v, str):  # the word itself: StylizeOptions.validated checks it
                continue
            for item in v:
                if not _scalar_ok(item) or not _fits(option, item):
                    bad(f"{option.expected()}, got {v!r}")
    else:
        values = raw if isinstance(raw, list) else [raw]
        for v in values:
            if isinstance(v, list) and not option.kind.toml:  # any type (e.g. scales)
                if not all(_scalar_ok(x) for x in v):  # takes a list as one value
                    bad(f"unexpected value {v!r}")
                continue
            if not _scalar_ok(v):
                bad(f"expected a single value or a list of single values, got {v!r}")
            if not _fits(option, v):
                bad(f"{option.expected()}, got {v!r}")
    if not values:
        bad("empty list: give at least one value")
    def each(function, v):  # on a value, or on each item of a list value
        return [function(x) for x in v] if isinstance(v, list) else function(v)

    if option is not None and float in option.kind.toml:  # 1000 and 1e3 are one value
        values = [each(_int_to_float, v) for v in values]
    if key in SPEC_KEYS or (option is not None and option.path):
        values = [each(_posix, v) for v in values]
    seen = []
    for v in values:
        if v in seen:
            bad(f"the value {v!r} is listed twice")
        seen.append(v)
    return values


def _int_to_float(value):
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _posix(path):
    """A path as written, normalised (``a/./b`` -> ``a/b``), with forward slashes."""
    return Path(os.path.normpath(path)).as_posix() if isinstance(path, str) else path


def _stem(paths) -> str:
    if isinstance(paths, list):
        return "+".join(Path(p).stem for p in paths)
    return Path(paths).stem


def _name_part(value) -> str:
    """A value as a piece of a file name: numbers short (1000.0 -> 1000), lists joined by +,
    anything outside ``[A-Za-z0-9._+-]`` replaced by '-', at most 40 characters."""
    if isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, float):
        text = format(value, "g")
    elif isinstance(value, list):
        text = "+".join(_name_part(v) for v in value) or "none"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9._+-]", "-", text)[:40]


def settings_hash(settings: dict) -> str:
    """The first 10 hex digits of the SHA-256 of the settings as canonical JSON."""
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def run_name(point: dict, swept: Sequence[str], settings: dict) -> str:
    """A run's file name (without extension), readable and stable: content and style file
    names, then ``key=value`` for each swept option, then the hash of all the settings.

    ``tubingen__starry_night__style_weight=1000__3fa2b1c9e0``
    """
    parts = [_name_part(_stem(point["content"])), _name_part(_stem(point["style"]))]
    parts += [f"{key}={_name_part(point[key])}" for key in swept if key not in SPEC_KEYS]
    readable = "__".join(parts)[:150]
    return f"{readable}__{settings_hash(settings)}"


def _rewrite_option_error(message: str) -> str:
    """``--style-weight: must be ...`` (the command line's spelling) -> ``style_weight: ...``."""
    match = re.match(r"--([a-z0-9-]+): (.*)", message)
    if match:
        return f"{match.group(1).replace('-', '_')}: {match.group(2)}"
    return message


def _toml_module():
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - Python 3.10
        import tomli
    except ImportError:  # pragma: no cover
        raise MinistError("reading sweep specs on Python 3.10 needs tomli: "
                          "pip install 'minist[sweep]'") from None
    return tomli  # pragma: no cover


def parse_override(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` (``minist sweep --set``) -> (key, value): VALUE is read as a TOML value
    (``128``, ``[1e2, 1e3]``, ``"a.jpg"``), or taken as a string when it is not one
    (``photo.jpg``). KEY may be ``gallery.rows`` etc."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise MinistError(f"--set {text}: expected KEY=VALUE, e.g. --set size=128")
    toml = _toml_module()
    try:
        return key, toml.loads(f"value = {value.strip()}")["value"]
    except toml.TOMLDecodeError:
        return key, value.strip()


def load_sweep(spec: str | os.PathLike, overrides: Sequence[tuple[str, Any]] = ()) -> Sweep:
    """Read and check a spec (module docstring); every problem is one :class:`MinistError` line
    naming the spec file and the key, raised before any work. ``overrides``: ``(key, value)``
    pairs that replace the spec's (``gallery.rows`` for the gallery table), as if written in it
    (paths too are relative to the spec file)."""
    from minist import options as declared

    spec = Path(spec)
    data = read_toml(spec)
    for key, value in overrides:
        if key.startswith("gallery."):
            table = data.setdefault("gallery", {})
            if isinstance(table, dict):
                table[key.removeprefix("gallery.")] = value
        else:
            data[key] = value
    base = spec.resolve().parent
    options = declared.schema()

    gallery = data.pop("gallery", {})
    if not isinstance(gallery, dict):
        raise MinistError(f"{spec}: gallery: expected a table ([gallery])")
    unknown = sorted(set(gallery) - set(GALLERY_KEYS))
    if unknown:
        raise MinistError(f"{spec}: gallery.{unknown[0]}: unknown key; the [gallery] keys are "
                          f"{', '.join(GALLERY_KEYS)}")
    for key in SPEC_KEYS:
        if key not in data:
            raise MinistError(f"{spec}: {key}: missing (give an image path or a list of them)")
    for key in data:
        if key not in SPEC_KEYS and key not in options:
            raise MinistError(f"{spec}: {key}: unknown key; keys are content, style, [gallery] "
                              f"and the options {', '.join(options)}")

    # content and style first, then the options in the spec's order
    keys = list(SPEC_KEYS) + [k for k in data if k not in SPEC_KEYS]
    axes = {key: _spec_values(spec, key, data[key], options.get(key)) for key in keys}

    def resolve(key: str, path: str) -> str:
        resolved = base / path
        if not resolved.exists():
            raise MinistError(f"{spec}: {key}: {path}: no such file (paths are relative to the "
                              "spec file)")
        if resolved.is_dir():
            raise MinistError(f"{spec}: {key}: {path}: is a directory, expected a file")
        return str(resolved)

    inputs = {}
    for key in SPEC_KEYS:
        for value in axes[key]:
            for path in value if isinstance(value, list) else [value]:
                inputs[path] = resolve(key, path)

    def resolved_option(name: str, value):
        option = options[name]
        if name == "weights":
            return str(base / value)  # checked (or fetched) once per file by check_networks
        if option.path and isinstance(value, str) and value not in option.words:
            return resolve(name, value)
        if option.path and isinstance(value, list):  # an empty entry: none (as on the CLI)
            return [resolve(name, v) if v else None for v in value]
        return value

    gallery_axes = {}
    for which in ("rows", "columns"):
        key = gallery.get(which)
        if key is None:
            continue
        if not isinstance(key, str) or key not in axes:
            raise MinistError(f"{spec}: gallery.{which}: {key!r} is not a key of this spec; "
                              f"choose one of {', '.join(axes)}")
        gallery_axes[which] = key
    if gallery_axes and gallery_axes.get("rows") == gallery_axes.get("columns"):
        raise MinistError(f"{spec}: gallery: rows and columns are both {gallery_axes['rows']!r}")
    title = gallery.get("title", spec.stem)
    if not isinstance(title, str):
        raise MinistError(f"{spec}: gallery.title: expected a string")

    swept = [key for key, values in axes.items() if len(values) > 1]
    runs, names = [], set()
    for combination in product(*axes.values()):
        point = dict(zip(axes, combination, strict=True))
        written = {k: v for k, v in point.items() if k not in SPEC_KEYS}
        given = {k: resolved_option(k, v) for k, v in written.items()}  # names spec and key
        try:
            resolved = declared.StylizeOptions(**given).validated()
        except MinistError as exc:
            where = ", ".join(f"{k} = {point[k]!r}" for k in swept if k not in SPEC_KEYS)
            raise MinistError(f"{spec}: {_rewrite_option_error(str(exc))}"
                              + (f" (in the run with {where})" if where else "")) from None
        identity = resolved.as_metadata()  # every option, as the run will use it ...
        for k, v in written.items():  # ... with paths as written (relative to the spec)
            if options[k].path and k in identity:
                identity[k] = v
        settings = _canonical({"content": point["content"], "style": point["style"],
                               **identity})
        name = run_name(point, swept, settings)
        if name in names:  # the same settings written two ways
            raise MinistError(f"{spec}: two runs have the same settings ({name})")
        names.add(name)
        style = point["style"]
        runs.append(Run(
            name=name,
            content=inputs[point["content"]],
            style=tuple(inputs[s] for s in style) if isinstance(style, list) else inputs[style],
            options=resolved,
            settings=settings,
            point=_canonical(point),
        ))
    return Sweep(spec=spec, axes=axes, runs=runs, rows=gallery_axes.get("rows"),
                 columns=gallery_axes.get("columns"), title=title, inputs=inputs)


def check_networks(sweep: Sweep, progress: bool | None = None) -> Sweep:
    """Find (or, for the missing default, fetch once) every weights file of the sweep, and check
    every run's layer names against its network; one line naming the spec otherwise. Returns the
    sweep with absolute weights paths in its runs (what the workers read)."""
    from minist.inputs import resolve_weights_file
    from minist.vgg import VGG
    from minist.weights.store import load_weights

    networks = {}
    runs = []
    for run in sweep.runs:
        o = run.options
        key = (str(o.weights), o.pooling)
        if key not in networks:
            try:
                path = resolve_weights_file(o.weights, progress).resolve()
                networks[key] = (path, VGG(load_weights(path), pooling=o.pooling))
            except MinistError as exc:
                raise MinistError(f"{sweep.spec}: weights: "
                                  f"{_rewrite_option_error(str(exc))}") from None
        path, net = networks[key]
        for key in ("content_layers", "style_layers"):
            layers = getattr(o, key)
            layers = [] if is_auto(layers) else list(layers)  # auto: the run's size decides
            try:
                if layers:
                    net.check_layers(layers)
            except MinistError as exc:
                raise MinistError(f"{sweep.spec}: {key}: {exc}") from None
        runs.append(dataclasses.replace(run, options=dataclasses.replace(o, weights=str(path))))
    return dataclasses.replace(sweep, runs=runs)


# ---------------------------------------------------------------------------------------------
# Files of a run
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# One run, in a worker process
# ---------------------------------------------------------------------------------------------


def execute_run(run: Run, out_dir: str, threads: int) -> dict:
    """Run one style transfer and write its files; what a Dask worker executes.

    The image, the record and the log are written under temporary names and renamed into place
    when the run has finished -- the log, then the record, the image last -- so a run killed at
    any point leaves no file under its final names (:func:`remove_leftovers` deletes the
    temporary ones). Returns a JSON-ready result: ``status`` (finished or failed), ``error`` (one
    line), ``final`` losses, ``iterations``, ``seconds``. Errors do not propagate: a failed run
    is a result, so that the other runs go on.
    """
    from minist import __version__
    from minist.execution import ExecutionConfig
    from minist.loop import NonFiniteLossError
    from minist.observers import JsonLog, SaveResult
    from minist.options import png_metadata
    from minist.stylize import StyleTransfer
    from minist.weights.atomic import atomic_path

    files = run_files(out_dir, run.name)
    start = time.perf_counter()
    transfer = None
    result = {"name": run.name, "status": FAILED, "error": None, "final": None,
              "iterations": 0, "seconds": 0.0}
    try:
        options = run.options
        config = ExecutionConfig(device=options.device, threads=threads)

        metadata = png_metadata(run.settings, str(run.settings["content"]),
                                json.dumps(run.settings["style"]), style_layers=False,
                                extra={"minist:sweep-run": run.name})

        with contextlib.ExitStack() as stack:
            # entered image first: renamed last (ExitStack unwinds in reverse)
            image_tmp = stack.enter_context(atomic_path(files.image, suffix=".part.png"))
            record_tmp = stack.enter_context(atomic_path(files.record))
            log_tmp = stack.enter_context(atomic_path(files.log))
            style = list(run.style) if isinstance(run.style, tuple) else run.style
            transfer = StyleTransfer(run.content, style, options, config=config, progress=False)
            transfer.run(observers=[JsonLog(log_tmp), SaveResult(image_tmp, metadata)])
            with transfer.net.config.scope():
                final = transfer.evaluate(transfer.image)  # the losses of the image kept
            result.update(
                status=FINISHED,
                final={"content": final.content, "style": final.style, "tv": final.tv,
                       "total": final.total},
                iterations=transfer.iteration,
                seconds=round(time.perf_counter() - start, 3),
            )
            record_tmp.write_text(json.dumps(
                {**result, "settings": run.settings, "point": run.point,
                 "threads": threads, "minist": __version__}, indent=1) + "\n")
        return result
    except NonFiniteLossError:
        iterations = transfer.iteration if transfer is not None else 0
        result["error"] = (f"the loss became NaN or infinite at iteration {iterations}; lower "
                           "lr, style_weight or content_weight")
    except Exception as exc:  # noqa: BLE001 - any error fails this run only (module docstring)
        result["error"] = one_line(exc)
        if not isinstance(exc, MinistError):  # a bug, not the user's input: keep the trace
            result["traceback"] = traceback.format_exc()
    result["iterations"] = transfer.iteration if transfer is not None else 0
    result["seconds"] = round(time.perf_counter() - start, 3)
    return result


# ---------------------------------------------------------------------------------------------
# The Dask side
# ---------------------------------------------------------------------------------------------


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise MinistError("minist sweep runs on Dask, which is not installed: "
                          "pip install 'minist[sweep]'") from None
    return distributed


def _host_and_cores() -> tuple[str, int]:
    import socket

    return socket.gethostname(), available_cores()


def threads_per_run(client) -> int:
    """BLAS threads per run on a running cluster: on each host, its cores divided among the
    threads of its workers (each running one run at a time per thread); the smallest over
    hosts, at least 1."""
    nthreads = client.nthreads()
    hosts = client.run(_host_and_cores)
    per_host: dict[str, int] = {}
    for address, (host, _) in hosts.items():
        per_host[host] = per_host.get(host, 0) + nthreads.get(address, 1)
    return max(1, min((cores // per_host[host] for host, cores in hosts.values()), default=1))


@contextlib.contextmanager
def _environment_restored(keys):
    """Put the environment variables ``keys`` back as they were after the block."""
    old = {key: os.environ.get(key) for key in keys}
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None,
                threads: int | None = None, timeout: float = 60) -> Iterator[tuple[Any, int]]:
    """A Dask client and the BLAS threads each run gets: ``(client, threads)``.

    ``scheduler``: the address of a running cluster (its workers must see the spec's files and
    the output folder at the same paths, e.g. on a shared file system). Otherwise a
    ``LocalCluster`` of ``workers`` processes (default: one per core) with one task thread each
    and a nanny that restarts a worker process that dies; each process's BLAS, OpenMP and Numba
    pools get ``threads`` threads (default: cores // workers, at least 1), set before the worker
    starts, so that the machine is not oversubscribed.
    """
    distributed = _import_distributed()
    import dask

    if scheduler:
        try:
            client = distributed.Client(scheduler, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise MinistError(f"--scheduler {scheduler}: cannot connect ({one_line(exc)})") \
                from None
        with client:
            try:
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise MinistError(f"--scheduler {scheduler}: no worker joined within "
                                  f"{timeout:g} s") from None
            yield client, threads or threads_per_run(client)
        return
    cores = available_cores()
    workers = workers or cores
    threads = threads or max(1, cores // workers)
    env = {key: str(threads) for key in THREAD_ENVIRONMENT}
    # The nanny copies pre-spawn-environ into this process's os.environ before it starts each
    # worker process (restarts included), so that the worker's BLAS starts with that count;
    # this process's environment is put back afterwards.
    config = {f"distributed.nanny.pre-spawn-environ.{key}": value for key, value in env.items()}
    with dask.config.set(config):
        touched = set(dask.config.get("distributed.nanny.pre-spawn-environ")) | {"PYTHONHASHSEED"}
        with _environment_restored(touched):
            cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address="127.0.0.1:0",  # (a free port: never a clash on 8787)
                silence_logs=logging.ERROR, memory_limit=0,  # each run checks its own memory
            )
            with cluster, distributed.Client(cluster) as client:
                yield client, threads


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
        return [name for name, r in self.results.items() if r["status"] == FAILED]

    @property
    def finished(self) -> list[str]:
        return self.skipped + [n for n, r in self.results.items() if r["status"] == FINISHED]

    @property
    def exit_status(self) -> int:
        return EXIT_RUNS_FAILED if self.failed else 0


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


def run_sweep(sweep: Sweep, out_dir: str | os.PathLike, client=None, *, threads: int = 1,
              progress: bool = True, connect=None, log=None) -> SweepReport:
    """Run every run of ``sweep`` that has not finished into ``out_dir`` and write the gallery.

    ``client``: a Dask client to submit the runs to; or ``connect``: a function returning a
    context manager that yields ``(client, threads)`` (e.g. :func:`dask_client` with its
    arguments), entered only when there is something to run -- a sweep whose runs have all
    finished starts no cluster. ``log(line)`` is told of each failed run as it fails (default:
    a line on stderr above the bar; nothing without the bar). On Ctrl-C the runs are
    cancelled, the gallery is written with what has finished, and the ``KeyboardInterrupt``
    goes on.
    """
    out_dir = prepare_output(out_dir)
    report = SweepReport(sweep, out_dir)
    with output_lock(out_dir):
        remove_leftovers(out_dir, sweep.runs)
        todo = []
        for run in sweep.runs:
            if finished_record(out_dir, run) is not None:
                report.skipped.append(run.name)
            else:
                todo.append(run)
        try:
            if todo:
                if client is not None:
                    _run_on(client, threads, todo, report, progress, log)
                else:
                    with connect() as (connected, connected_threads):
                        _run_on(connected, connected_threads, todo, report, progress, log)
                remove_leftovers(out_dir, sweep.runs)  # e.g. what a killed worker had begun
        except KeyboardInterrupt:
            report.interrupted = True
            if client is None:  # our own cluster is closed: nothing runs here any more
                remove_leftovers(out_dir, sweep.runs)
            raise
        finally:
            write_gallery_of(report)
    return report


def _run_on(client, threads: int, todo: list[Run], report: SweepReport, progress: bool,
            log) -> None:
    """Submit ``todo`` to ``client`` and collect the results as they come, with one bar."""
    distributed = _import_distributed()
    from tqdm import tqdm

    total = len(report.sweep.runs)
    if log is None and progress:
        log = lambda line: tqdm.write(line, file=sys.stderr)  # noqa: E731 - above the bar
    say = log
    futures = {
        client.submit(execute_run, run, str(report.out_dir), threads, key=f"minist-{run.name}",
                      pure=False): run
        for run in todo
    }
    bar = tqdm(total=total, initial=len(report.skipped), unit="run", desc="sweep",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for future in distributed.as_completed(futures):
            run = futures[future]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: the run failed
                result = {"name": run.name, "status": FAILED, "iterations": 0,
                          "seconds": 0.0, "final": None, "error": _dask_error(exc)}
            _record(report, run, result)
            if result["status"] == FAILED and say is not None:
                say(f"failed: {run.name}: {result['error']}")
            bar.update(1)
            bar.set_postfix(failed=len(report.failed), refresh=False)
    except BaseException:
        client.cancel(list(futures))
        raise
    finally:
        bar.close()


def _dask_error(exc: BaseException) -> str:
    name = type(exc).__name__
    if name == "KilledWorker":
        return ("the worker process running it died every time it was tried "
                f"({one_line(exc)}); out of memory? lower size or --workers")
    return one_line(exc)


def _record(report: SweepReport, run: Run, result: dict) -> None:
    """Keep ``result``; write a failed run's record (and drop a stale one for a finished run)."""
    report.results[run.name] = result
    files = run_files(report.out_dir, run.name)
    if result["status"] == FAILED:
        write_json(files.failure, {**result, "settings": run.settings, "point": run.point})
    else:
        with contextlib.suppress(FileNotFoundError):
            files.failure.unlink()


# ---------------------------------------------------------------------------------------------
# The gallery of a sweep
# ---------------------------------------------------------------------------------------------


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
                name=run.name, point=run.point, status=FINISHED, image=rel(files.image),
                settings_file=rel(files.record),
                log_file=rel(files.log) if files.log.exists() else None,
                losses=record.get("final"), iterations=record.get("iterations"),
                seconds=record.get("seconds")))
            continue
        failure = results.get(run.name)
        if failure is None or failure["status"] != FAILED:  # a failure of an earlier sweep?
            failure = read_json(files.failure)
            if failure is not None and failure.get("settings") != run.settings:
                failure = None
        if failure is not None:
            entries.append(Entry(
                name=run.name, point=run.point, status=FAILED, image=None,
                settings_file=rel(files.failure) if files.failure.exists() else None,
                log_file=None, losses=None,
                iterations=failure.get("iterations"), seconds=failure.get("seconds"),
                error=failure.get("error") or "failed"))
        else:
            entries.append(Entry(name=run.name, point=run.point, status=NOT_RUN))
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
