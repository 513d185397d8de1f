"""The gallery of a sweep: a static ``index.html`` and one ``sheet.png``, laid out along the swept
axes like the paper's figures (rows x columns, e.g. style layers x alpha/beta as in Fig. 3).

Pure functions of the runs' results (no Dask here): :func:`layout` arranges the runs in a grid,
:func:`render_html` and :func:`render_sheet` draw it, :func:`write_gallery` writes the files
(thumbnails first, then the page and the sheet, each atomically).

**Which axes.** The keys of a sweep with more than one value are its *swept axes*. Rows and
columns are the ones the spec names (``[gallery] rows = ..., columns = ...``; any key of the
spec, swept or not); what the spec leaves open is filled automatically: columns get the swept
axis with the most values, rows the next (ties: the one first in the spec). Each combination of
the remaining swept axes gets a grid of its own, one under the other, headed by their values.
Keys with one value are the settings every run shares, listed above the grids.

**The page** (``index.html``) is static and self-contained (relative links only, inline CSS, no
script): for each cell a small PNG thumbnail (``thumbs/``, never the full image) linking to the
full image, and a caption with the run's swept values, its final loss (total, and the content
and style parts before alpha and beta), iterations and time, and links to its settings and log.
A failed run is a red cell with its one-line error; a run not done yet says so. The page is the
Jinja2 template ``minist/templates/gallery.html.j2``, rendered with autoescape: every piece of
text is HTML-escaped (the settings come from users' files).

**The sheet** (``sheet.png``) is the same grid as one image, with the axis names and values
written beside the rows and above the columns (Pillow's ``ImageDraw``), for slides and reports.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from PIL import Image, ImageDraw, ImageFont

from minist.errors import MinistError
from minist.status import RunStatus
from minist.weights.atomic import atomic_path

THUMB = 192  # px, longest side of a cell's thumbnail
INPUT_THUMB = 64  # px, longest side of an input image shown in a header
INPUT_KEYS = ("content", "style")


@dataclass(frozen=True)
class Axis:
    """A key of the spec with its values; ``images``: an input image per value (for the content
    and style axes: shown in the headers)."""

    key: str
    values: tuple
    images: tuple = ()


@dataclass(frozen=True)
class Entry:
    """One run as the gallery shows it; paths relative to the gallery's folder."""

    name: str
    point: dict  # key -> value for every axis
    status: RunStatus  # FINISHED, FAILED or NOT_RUN (or its words, read from a record)
    image: str | None = None
    settings_file: str | None = None
    log_file: str | None = None
    losses: dict | None = None  # final content, style, tv, total
    iterations: int | None = None
    seconds: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Section:
    """One grid: ``fixed`` values of the axes beyond rows and columns, ``cells[row][column]``."""

    fixed: tuple  # ((key, value), ...)
    cells: list


@dataclass(frozen=True)
class Grid:
    rows: Axis | None
    columns: Axis | None
    sections: list
    shared: tuple = ()  # ((key, value), ...): the keys with one value
    counts: dict = field(default_factory=dict)  # RunStatus -> number of runs


# ---------------------------------------------------------------------------------------------
# Layout
# ---------------------------------------------------------------------------------------------


def value_label(key: str, value) -> str:
    """How a value reads in a header: file names for images, short numbers, lists joined."""
    if key in INPUT_KEYS:
        return " + ".join(Path(v).name for v in value) if isinstance(value, list) \
            else Path(value).name
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    if isinstance(value, list):
        return ", ".join(value_label("", v) for v in value)
    return str(value)


def _key(value) -> str:
    return json.dumps(value, sort_keys=True)


def choose_axes(axes: Sequence[Axis], rows: str | None = None, columns: str | None = None):
    """``(row axis or None, column axis or None, the other swept axes)`` by the rule in the
    module docstring."""
    by_key = {axis.key: axis for axis in axes}
    for which, key in (("rows", rows), ("columns", columns)):
        if key is not None and key not in by_key:
            raise ValueError(f"gallery {which}: no axis {key!r}")
    swept = [axis for axis in axes if len(axis.values) > 1]

    def most_values(exclude: set) -> Axis | None:
        candidates = [axis for axis in swept if axis.key not in exclude]
        return max(candidates, key=lambda axis: len(axis.values)) if candidates else None

    column_axis = by_key[columns] if columns else most_values({rows})
    row_axis = by_key[rows] if rows else most_values({column_axis.key if column_axis else None})
    chosen = {a.key for a in (row_axis, column_axis) if a is not None}
    return row_axis, column_axis, [axis for axis in swept if axis.key not in chosen]


def layout(axes: Sequence[Axis], entries: Sequence[Entry], rows: str | None = None,
           columns: str | None = None) -> Grid:
    """Arrange ``entries`` in grids along ``axes`` (module docstring); a cell no entry fills is
    None."""
    row_axis, column_axis, others = choose_axes(axes, rows, columns)
    placed = {}
    for entry in entries:
        placed[tuple(_key(entry.point[axis.key]) for axis in axes)] = entry
    order = [axis.key for axis in axes]

    def find(values: dict):
        return placed.get(tuple(_key(values[key]) for key in order))

    shared = tuple((axis.key, axis.values[0]) for axis in axes if len(axis.values) == 1)
    base = dict(shared)
    sections = []
    other_values = [[(axis.key, v) for v in axis.values] for axis in others]
    for fixed in _product(other_values):
        cells = []
        for r in row_axis.values if row_axis else [None]:
            row = []
            for c in column_axis.values if column_axis else [None]:
                point = {**base, **dict(fixed)}
                if row_axis:
                    point[row_axis.key] = r
                if column_axis:
                    point[column_axis.key] = c
                row.append(find(point))
            cells.append(row)
        sections.append(Section(tuple(fixed), cells))
    counts = {}
    for entry in entries:
        status = RunStatus(entry.status)  # also the words read from a sweep's record
        counts[status] = counts.get(status, 0) + 1
    return Grid(row_axis, column_axis, sections, shared, counts)


def _product(lists):
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for tail in _product(lists[1:]):
            yield (head, *tail)


# ---------------------------------------------------------------------------------------------
# Thumbnails
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Thumb:
    path: str  # relative to the gallery folder
    width: int
    height: int


def _write_png(path: Path, image: Image.Image) -> None:
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def make_thumbnail(source: Path, target: Path, size: int) -> tuple[int, int]:
    """A PNG of ``source`` with its longest side ``size`` px (Lanczos, enlarging small images
    too, so that every cell of the grid has the same size), remade only when ``source`` is
    newer; returns its (width, height)."""
    if target.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        with Image.open(target) as im:
            if max(im.size) == size:
                return im.size
    with Image.open(source) as im:
        im = im.convert("RGB")
        scale = size / max(im.size)
        new_size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        im = im.resize(new_size, Image.Resampling.LANCZOS)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_png(target, im)
    return im.size


def thumbnails(out_dir: Path, entries: Sequence[Entry], axes: Sequence[Axis] = (),
               size: int = THUMB, input_size: int = INPUT_THUMB):
    """Thumbnails of the finished runs' images (``thumbs/NAME.png``) and of the input images of
    the content and style axes (``thumbs/inputs/``): ``({name: Thumb}, {(key, index): Thumb})``.
    An input that cannot be read (a run failed on it) has no thumbnail."""
    out_dir = Path(out_dir)
    runs = {}
    for entry in entries:
        if entry.status == RunStatus.FINISHED and entry.image:
            rel = f"thumbs/{entry.name}.png"
            w, h = make_thumbnail(out_dir / entry.image, out_dir / rel, size)
            runs[entry.name] = Thumb(rel, w, h)
    inputs = {}
    for axis in axes:
        for index, source in enumerate(axis.images):
            if source is None:
                continue
            tag = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:8]
            rel = f"thumbs/inputs/{axis.key}-{Path(source).stem[:40]}-{tag}.png"
            try:
                w, h = make_thumbnail(Path(source), out_dir / rel, input_size)
            except (OSError, ValueError, SyntaxError):  # not an image: no thumbnail
                continue
            inputs[axis.key, index] = Thumb(rel, w, h)
    return runs, inputs


# ---------------------------------------------------------------------------------------------
# index.html (minist/templates/gallery.html.j2)
# ---------------------------------------------------------------------------------------------


def _href(path: str) -> str:
    """A relative path as a link: percent-quoted (the template escapes it as any value)."""
    return quote(path)


def format_losses(losses: dict | None) -> str:
    if not losses:
        return ""
    return (f"loss {losses['total']:.4g} (content {losses['content']:.3g}, "
            f"style {losses['style']:.3g})")


def axes_line(grid: Grid) -> str:
    """``rows: KEY / columns: KEY`` (what is shown of it)."""
    parts = []
    if grid.rows:
        parts.append(f"rows: {grid.rows.key}")
    if grid.columns:
        parts.append(f"columns: {grid.columns.key}")
    return " / ".join(parts)


def summary_line(grid: Grid) -> str:
    total = sum(grid.counts.values())
    parts = [f"{grid.counts[s]} {s}" for s in (RunStatus.FINISHED, RunStatus.FAILED,
                                               RunStatus.NOT_RUN) if grid.counts.get(s)]
    return f"{total} run{'s' if total != 1 else ''}: {', '.join(parts)}"


@functools.cache
def _templates():
    """The Jinja2 environment of the page's template (``minist/templates/``), autoescaping."""
    try:
        import jinja2
    except ImportError as e:  # comes with the sweep extra (dask.distributed needs it)
        raise MinistError("the gallery page needs Jinja2: pip install 'minist[sweep]'") from e
    env = jinja2.Environment(loader=jinja2.PackageLoader("minist", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["label"] = lambda value, key: value_label(key, value)
    env.filters["href"] = _href
    env.globals.update(RunStatus=RunStatus, format_losses=format_losses)
    return env


def render_html(title: str, grid: Grid, thumbs: dict, inputs: dict,
                source: str | None = None) -> str:
    """The page (module docstring) as a string, from the template ``gallery.html.j2``: every
    value escaped by Jinja2's autoescape."""
    shown = {axis.key for axis in (grid.rows, grid.columns) if axis is not None}
    return _templates().get_template("gallery.html.j2").render(
        title=title, summary=summary_line(grid), source=source, shared=grid.shared,
        sections=grid.sections, rows=grid.rows, columns=grid.columns, corner=axes_line(grid),
        hidden=shown | {key for key, _ in grid.shared}, thumbs=thumbs, inputs=inputs)


# ---------------------------------------------------------------------------------------------
# sheet.png
# ---------------------------------------------------------------------------------------------


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError):  # Pillow < 10.1 or no FreeType: bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: float, max_lines: int = 6):
    """``text`` in lines no wider than ``width`` (breaking at spaces, or inside long words)."""
    lines, line = [], ""
    for word in text.replace(",", ", ").split():
        candidate = f"{line} {word}".strip()
        if draw.textlength(candidate, font=font) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while draw.textlength(word, font=font) > width and len(word) > 1:
            cut = len(word)
            while cut > 1 and draw.textlength(word[:cut], font=font) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, len(lines[-1]) - 3)] + "..."
    return lines


def _line_height(font) -> int:
    box = font.getbbox("Ag")
    return int(box[3] - min(box[1], 0)) + 3


def render_sheet(title: str, grid: Grid, out_dir: Path, thumbs: dict, inputs: dict,
                 cell: int = THUMB) -> Image.Image:
    """The grid as one RGB image: title, axis names, row and column labels (with the input
    images of content/style axes), each finished run's thumbnail with its final loss, failed
    runs as red boxes with their error, runs not done as grey boxes."""
    pad, label_w = 10, 170
    fonts = {"title": _font(20), "label": _font(14), "small": _font(12)}
    lh = {k: _line_height(f) for k, f in fonts.items()}
    scratch = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    rows, columns = grid.rows, grid.columns
    n_cols = len(columns.values) if columns else 1
    caption_h = lh["small"] + 4

    def header_lines(axis: Axis, index: int, width: int):
        return _wrap(scratch, value_label(axis.key, axis.values[index]), fonts["label"], width, 4)

    def input_thumb_h(axis: Axis | None) -> int:
        if axis is None:
            return 0
        return max((inputs[axis.key, i].height for i in range(len(axis.values))
                    if (axis.key, i) in inputs), default=0)

    col_header_h = 0
    if columns:
        col_header_h = lh["small"] + input_thumb_h(columns) + 4 + max(
            len(header_lines(columns, j, cell)) for j in range(n_cols)) * lh["label"]

    def image_h(cells) -> int:
        """Height of a row's pictures: its tallest thumbnail (boxes of failed runs match it),
        or a square cell when no run in the row has finished."""
        return max((thumbs[e.name].height for e in cells if e is not None and e.name in thumbs),
                   default=cell)

    def row_h(cells, i: int) -> int:
        label = 0
        if rows:
            label = input_thumb_h(rows) + len(header_lines(rows, i, label_w - pad)) * lh["label"]
        return max(image_h(cells) + caption_h, label)

    section_h = [(lh["label"] + 6 if s.fixed else 0) + col_header_h + pad
                 + sum(row_h(cells, i) + pad for i, cells in enumerate(s.cells))
                 for s in grid.sections]
    axes_text = axes_line(grid)
    top = pad + lh["title"] + lh["small"] + (lh["small"] if axes_text else 0) + pad
    width = pad + label_w + n_cols * (cell + pad)
    height = top + sum(section_h) + pad
    sheet = Image.new("RGB", (max(width, 400), height), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, pad), title, fill="black", font=fonts["title"])
    y = pad + lh["title"]
    draw.text((pad, y), summary_line(grid), fill=(90, 90, 90), font=fonts["small"])
    y += lh["small"]
    if axes_text:
        draw.text((pad, y), axes_text, fill=(90, 90, 90), font=fonts["small"])
    y = top

    def paste_input(axis: Axis, index: int, x: int, y: int, box_w: int) -> int:
        thumb = inputs.get((axis.key, index))
        if thumb is None:
            return 0
        with Image.open(out_dir / thumb.path) as im:
            sheet.paste(im.convert("RGB"), (x + (box_w - thumb.width) // 2, y))
        return thumb.height + 2

    x0 = pad + label_w
    band = input_thumb_h(columns) + 2 if input_thumb_h(columns) else 0
    for section in grid.sections:
        if section.fixed:
            heading = ", ".join(f"{k} = {value_label(k, v)}" for k, v in section.fixed)
            draw.text((pad, y), heading, fill="black", font=fonts["label"])
            y += lh["label"] + 6
        if columns:
            draw.text((x0, y), columns.key, fill=(110, 110, 110), font=fonts["small"])
            for j in range(n_cols):
                x = x0 + j * (cell + pad)
                paste_input(columns, j, x, y + lh["small"], cell)
                yy = y + lh["small"] + band  # labels on one line under the input images
                for line in header_lines(columns, j, cell):
                    tw = draw.textlength(line, font=fonts["label"])
                    draw.text((x + (cell - tw) / 2, yy), line, fill="black", font=fonts["label"])
                    yy += lh["label"]
            y += col_header_h + pad
        if rows:
            draw.text((pad, y - lh["small"] - pad // 2), rows.key, fill=(110, 110, 110),
                      font=fonts["small"])
        for i, cells in enumerate(section.cells):
            if rows:
                yy = y + paste_input(rows, i, pad, y, label_w - pad)
                for line in header_lines(rows, i, label_w - pad):
                    draw.text((pad, yy), line, fill="black", font=fonts["label"])
                    yy += lh["label"]
            for j, entry in enumerate(cells):
                _draw_cell(sheet, draw, entry, x0 + j * (cell + pad), y, cell, image_h(cells),
                           out_dir, thumbs, fonts, lh)
            y += row_h(cells, i) + pad
    return sheet


def _draw_cell(sheet, draw, entry: Entry | None, x: int, y: int, cell: int, height: int,
               out_dir: Path, thumbs: dict, fonts: dict, lh: dict) -> None:
    """One run in a ``cell`` x ``height`` box at (x, y): its thumbnail and total loss, or a
    box saying it failed (with the error) or has not run."""
    if entry is None:
        return
    if entry.status == RunStatus.FINISHED and entry.name in thumbs:
        thumb = thumbs[entry.name]
        with Image.open(out_dir / thumb.path) as im:
            sheet.paste(im.convert("RGB"), (x + (cell - thumb.width) // 2, y))
        text = format_losses(entry.losses).split(" (")[0]  # the total: "loss 0.473"
        tw = draw.textlength(text, font=fonts["small"])
        draw.text((x + (cell - tw) / 2, y + thumb.height + 2), text, fill=(60, 60, 60),
                  font=fonts["small"])
        return
    failed = entry.status == RunStatus.FAILED
    fill, edge, ink = ((253, 236, 234), (198, 40, 40), (142, 27, 27)) if failed else \
        ((238, 238, 238), (180, 180, 180), (100, 100, 100))
    draw.rectangle([x, y, x + cell - 1, y + height - 1], fill=fill, outline=edge, width=2)
    draw.text((x + 8, y + 6), "FAILED" if failed else RunStatus.NOT_RUN.value, fill=edge,
              font=fonts["label"])
    if failed and entry.error:
        yy = y + 8 + lh["label"]
        max_lines = max(1, (height - 16 - lh["label"]) // lh["small"])
        for line in _wrap(draw, entry.error, fonts["small"], cell - 16, max_lines):
            draw.text((x + 8, yy), line, fill=ink, font=fonts["small"])
            yy += lh["small"]


# ---------------------------------------------------------------------------------------------
# Writing it all
# ---------------------------------------------------------------------------------------------


def write_gallery(out_dir: str | os.PathLike, title: str, axes: Sequence[Axis],
                  entries: Sequence[Entry], rows: str | None = None,
                  columns: str | None = None, source: str | None = None) -> tuple[Path, Path]:
    """Write ``thumbs/``, ``index.html`` and ``sheet.png`` into ``out_dir``; return the page's
    and the sheet's paths."""
    out_dir = Path(out_dir)
    grid = layout(axes, entries, rows, columns)
    run_thumbs, input_thumbs = thumbnails(out_dir, entries, axes)
    index = out_dir / "index.html"
    with atomic_path(index) as tmp:
        tmp.write_text(render_html(title, grid, run_thumbs, input_thumbs, source),
                       encoding="utf-8")
    sheet = out_dir / "sheet.png"
    _write_png(sheet, render_sheet(title, grid, out_dir, run_thumbs, input_thumbs))
    return index, sheet
