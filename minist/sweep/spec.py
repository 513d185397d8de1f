"""A sweep's spec: the TOML file read and checked, and the runs it makes.

Every key is checked against the option declarations of :mod:`minist.options` (one line naming
the spec file and the key, before any work); the lists of values make a cartesian product, one
:class:`Run` per combination, named by :func:`run_name` from its settings (a readable part and
:func:`settings_hash`). ``minist sweep --set KEY=VALUE`` overrides a key (:func:`parse_override`).
The spec's format is described in :mod:`minist.sweep`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

from minist.errors import MinistError
from minist.layer_choice import is_auto

SPEC_KEYS = ("content", "style")  # the images; every other key is an option or [gallery]
GALLERY_KEYS = ("rows", "columns", "title")


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
    :class:`~minist.options.StylizeOptions` (paths resolved); ``settings``: what identifies the
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


def _with_overrides(data: dict, overrides: Sequence[tuple[str, Any]]) -> dict:
    """The spec's table with ``overrides`` (``(key, value)``; ``gallery.KEY`` for the gallery
    table) written into it."""
    for key, value in overrides:
        if key.startswith("gallery."):
            table = data.setdefault("gallery", {})
            if isinstance(table, dict):
                table[key.removeprefix("gallery.")] = value
        else:
            data[key] = value
    return data


def _check_keys(spec: Path, data: dict, gallery, options: dict) -> None:
    """Every key of the spec and of its ``[gallery]`` table known, ``content`` and ``style``
    there; one line naming the spec and the key otherwise."""
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


def _gallery_layout(spec: Path, gallery: dict, axes: dict) -> tuple[dict, str]:
    """The gallery's ``{"rows": key, "columns": key}`` (those given) and its title."""
    layout = {}
    for which in ("rows", "columns"):
        key = gallery.get(which)
        if key is None:
            continue
        if not isinstance(key, str) or key not in axes:
            raise MinistError(f"{spec}: gallery.{which}: {key!r} is not a key of this spec; "
                              f"choose one of {', '.join(axes)}")
        layout[which] = key
    if layout and layout.get("rows") == layout.get("columns"):
        raise MinistError(f"{spec}: gallery: rows and columns are both {layout['rows']!r}")
    title = gallery.get("title", spec.stem)
    if not isinstance(title, str):
        raise MinistError(f"{spec}: gallery.title: expected a string")
    return layout, title


class _SpecFiles:
    """The spec's paths resolved relative to the spec file, each checked to be a file."""

    def __init__(self, spec: Path, options: dict):
        self.spec, self.base, self.options = spec, spec.resolve().parent, options

    def resolve(self, key: str, path: str) -> str:
        resolved = self.base / path
        if not resolved.exists():
            raise MinistError(f"{self.spec}: {key}: {path}: no such file (paths are relative to "
                              "the spec file)")
        if resolved.is_dir():
            raise MinistError(f"{self.spec}: {key}: {path}: is a directory, expected a file")
        return str(resolved)

    def option(self, name: str, value):
        """An option's value with its paths resolved (``weights`` checked later, per file)."""
        option = self.options[name]
        if name == "weights":
            return str(self.base / value)  # checked (or fetched) once per file by check_networks
        if option.path and isinstance(value, str) and value not in option.words:
            return self.resolve(name, value)
        if option.path and isinstance(value, list):  # an empty entry: none (as on the CLI)
            return [self.resolve(name, v) if v else None for v in value]
        return value


def _run_of(spec: Path, point: dict, swept: list, files: _SpecFiles, inputs: dict) -> Run:
    """The run of one combination of the axes: its options checked (one line naming the spec,
    the key and the swept values of the run), its settings and name."""
    from minist.options import StylizeOptions

    written = {k: v for k, v in point.items() if k not in SPEC_KEYS}
    given = {k: files.option(k, v) for k, v in written.items()}  # names spec and key
    try:
        resolved = StylizeOptions(**given).validated()
    except MinistError as exc:
        where = ", ".join(f"{k} = {point[k]!r}" for k in swept if k not in SPEC_KEYS)
        raise MinistError(f"{spec}: {_rewrite_option_error(str(exc))}"
                          + (f" (in the run with {where})" if where else "")) from None
    identity = resolved.as_metadata()  # every option, as the run will use it ...
    for k, v in written.items():  # ... with paths as written (relative to the spec)
        if files.options[k].path and k in identity:
            identity[k] = v
    settings = _canonical({"content": point["content"], "style": point["style"], **identity})
    style = point["style"]
    return Run(
        name=run_name(point, swept, settings),
        content=inputs[point["content"]],
        style=tuple(inputs[s] for s in style) if isinstance(style, list) else inputs[style],
        options=resolved,
        settings=settings,
        point=_canonical(point),
    )


def load_sweep(spec: str | os.PathLike, overrides: Sequence[tuple[str, Any]] = ()) -> Sweep:
    """Read and check a spec (module docstring); every problem is one :class:`MinistError` line
    naming the spec file and the key, raised before any work. ``overrides``: ``(key, value)``
    pairs that replace the spec's (``gallery.rows`` for the gallery table), as if written in it
    (paths too are relative to the spec file)."""
    from minist import options as declared

    spec = Path(spec)
    data = _with_overrides(read_toml(spec), overrides)
    options = declared.schema()
    gallery = data.pop("gallery", {})
    _check_keys(spec, data, gallery, options)

    # content and style first, then the options in the spec's order
    keys = list(SPEC_KEYS) + [k for k in data if k not in SPEC_KEYS]
    axes = {key: _spec_values(spec, key, data[key], options.get(key)) for key in keys}
    files = _SpecFiles(spec, options)
    inputs = {}
    for key in SPEC_KEYS:
        for value in axes[key]:
            for path in value if isinstance(value, list) else [value]:
                inputs[path] = files.resolve(key, path)
    layout, title = _gallery_layout(spec, gallery, axes)

    swept = [key for key, values in axes.items() if len(values) > 1]
    for key in swept:
        if key in options and not options[key].in_settings:
            raise MinistError(f"{spec}: {key}: takes one value: it does not change a run's "
                              "result, so runs that differ only in it would be the same run")
    runs, names = [], set()
    for combination in product(*axes.values()):
        run = _run_of(spec, dict(zip(axes, combination, strict=True)), swept, files, inputs)
        if run.name in names:  # the same settings written two ways
            raise MinistError(f"{spec}: two runs have the same settings ({run.name})")
        names.add(run.name)
        runs.append(run)
    return Sweep(spec=spec, axes=axes, runs=runs, rows=layout.get("rows"),
                 columns=layout.get("columns"), title=title, inputs=inputs)


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

