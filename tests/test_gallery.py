"""The gallery of a sweep, without Dask: the axis rule, the grid, escaping, the files it writes
(every link resolves, thumbnails small, the sheet has the runs and labels), and the page as headless
Chromium draws it (skipped without a Chromium)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from itertools import product
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minist.gallery import (
    THUMB,
    Axis,
    Entry,
    choose_axes,
    layout,
    render_html,
    write_gallery,
)
from minist.status import RunStatus


def _axes(**sizes):
    return [Axis(key, tuple(range(n))) for key, n in sizes.items()]


def test_axis_rule_most_values_to_columns_then_rows_then_sections():
    axes = _axes(a=2, b=3, c=2, d=1)
    rows, columns, others = choose_axes(axes)
    assert (columns.key, rows.key, [o.key for o in others]) == ("b", "a", ["c"])  # ties: first
    rows, columns, others = choose_axes(axes, rows="c")
    assert (columns.key, rows.key, [o.key for o in others]) == ("b", "c", ["a"])
    rows, columns, others = choose_axes(axes, columns="d")  # a one-value axis, if asked for
    assert (columns.key, rows.key, [o.key for o in others]) == ("d", "b", ["a", "c"])
    rows, columns, others = choose_axes(_axes(a=1, b=4))
    assert (rows, columns.key, others) == (None, "b", [])
    assert choose_axes(_axes(a=1, b=1)) == (None, None, [])
    with pytest.raises(ValueError, match="no axis 'z'"):
        choose_axes(axes, rows="z")


def _entries(axes):
    keys = [a.key for a in axes]
    return [Entry(name="run-" + "-".join(map(str, values)),
                  point=dict(zip(keys, values, strict=True)), status=RunStatus.FINISHED)
            for values in product(*(a.values for a in axes))]


def test_layout_puts_each_run_in_its_cell_once():
    axes = _axes(a=2, b=3, c=2, d=1)
    entries = _entries(axes)[:-1]  # one run missing: its cell stays empty
    grid = layout(axes, entries)
    assert (grid.rows.key, grid.columns.key) == ("a", "b")
    assert [s.fixed for s in grid.sections] == [(("c", 0),), (("c", 1),)]
    assert grid.shared == (("d", 0),)
    seen = []
    for section in grid.sections:
        assert len(section.cells) == 2 and all(len(row) == 3 for row in section.cells)
        for i, row in enumerate(section.cells):
            for j, entry in enumerate(row):
                if entry is None:
                    continue
                assert entry.point == {"a": i, "b": j, "c": dict(section.fixed)["c"], "d": 0}
                seen.append(entry.name)
    assert sorted(seen) == sorted(e.name for e in entries)
    assert grid.sections[1].cells[1][2] is None
    assert grid.counts == {RunStatus.FINISHED: len(entries)}


@pytest.fixture()
def jinja2():
    return pytest.importorskip("jinja2", reason="the gallery page is a Jinja2 template; "
                               "pip install 'minist[sweep]'")


class _Page(HTMLParser):
    """What a browser reads of a page: its elements, its text and its attribute values, with
    every character reference decoded."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.tags, self.text, self.attributes = [], [], []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attributes += [value for _, value in attrs if value is not None]

    def handle_data(self, data):
        self.text.append(data)


def test_every_text_is_escaped(jinja2):
    axes = [Axis("content", ('we<ird> "photo".png',)),
            Axis("style_layers", (["relu1_1"], ["<b>relu2_1</b>"]))]
    entries = [
        Entry("ok", {"content": axes[0].values[0], "style_layers": ["relu1_1"]},
              RunStatus.FINISHED, image="runs/ok & more.png", settings_file="runs/ok.json",
              losses={"content": 1.0, "style": 2.0, "tv": 0.0, "total": 3.0}),
        Entry("bad", {"content": axes[0].values[0], "style_layers": ["<b>relu2_1</b>"]},
              RunStatus.FAILED, error='<script>alert("x")</script> & more'),
    ]
    page = render_html('Fig <3> & "more"', layout(axes, entries), {}, {})
    read = _Page(page)
    assert "script" not in read.tags and "b" not in read.tags
    assert "<script>" not in page and "<b>" not in page and "we<ird>" not in page
    text = "".join(read.text)
    for shown in ('Fig <3> & "more"', '<script>alert("x")</script> & more',
                  'we<ird> "photo".png', "<b>relu2_1</b>"):
        assert shown in text, shown  # escaped once: the reader gets the very words back
    assert 'href="runs/ok%20%26%20more.png"' in page  # links quoted, then escaped


HOSTILE = "<script>alert('x & \"y\"')</script>"


def test_a_hostile_run_name_or_setting_reads_as_text(jinja2):
    """A run name, swept values, a shared setting, an error, the title and the spec's path
    with ``<script>``, ``&`` and both quotes: each shown as those very characters, none a tag,
    no attribute cut short."""
    axes = [Axis("init", ("content", HOSTILE)), Axis("style_weight", (1.0, 2.0)),
            Axis("optimizer", ("adam", f"lbfgs {HOSTILE}")), Axis("note", (HOSTILE,))]
    entries = [
        Entry(f"run {HOSTILE}", {"init": HOSTILE, "style_weight": 1.0,
                                 "optimizer": f"lbfgs {HOSTILE}", "note": HOSTILE},
              RunStatus.FINISHED, image="runs/a.png",
              losses={"content": 1.0, "style": 2.0, "tv": 0.0, "total": 3.0}),
        Entry(f"bad {HOSTILE}", {"init": "content", "style_weight": 2.0, "optimizer": "adam",
                                 "note": HOSTILE}, RunStatus.FAILED, error=HOSTILE),
        Entry(f"later {HOSTILE}", {"init": HOSTILE, "style_weight": 2.0, "optimizer": "adam",
                                   "note": HOSTILE}, RunStatus.NOT_RUN),
    ]
    page = render_html(f"title {HOSTILE}", layout(axes, entries, rows="init"), {}, {},
                       source=f"spec {HOSTILE}.toml")
    assert "<script" not in page and "'x &" not in page
    read = _Page(page)
    assert read.tags.count("script") == 0
    text = "".join(read.text)
    for shown in (f"title {HOSTILE}", f"spec {HOSTILE}.toml", HOSTILE,  # error, header, shared
                  f"optimizer = lbfgs {HOSTILE}"):  # a swept value in a cell's caption
        assert shown in text, shown
    for name in ("run", "bad", "later"):  # run names in title="..." attributes, whole
        assert f"{name} {HOSTILE}" in read.attributes, name
    # none broken: 2 sections x 2 rows x 2 columns, and the shared table's key and value
    assert read.tags.count("td") == 2 * 2 * 2 + 2


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.images = [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs["href"])
        if tag == "img":
            self.images.append((attrs["src"], int(attrs["width"]), int(attrs["height"])))


COLOURS = [(230, 30, 30), (30, 200, 30), (30, 30, 230), (230, 200, 30)]


@pytest.fixture()
def gallery(tmp_path, jinja2):
    """A 2 x 3 sweep (style x style_weight) with four finished runs of solid colours (big images,
    so that thumbnails are smaller), one failed run and one not run; its gallery written."""
    from minist.images import save_image

    (tmp_path / "runs").mkdir()
    styles = []
    for k in range(2):
        path = tmp_path / "inputs" / f"painting {k}.png"
        path.parent.mkdir(exist_ok=True)
        save_image(path, np.full((1, 3, 60, 90), 0.2 + 0.5 * k, np.float32))
        styles.append(str(path))
    axes = [Axis("content", ("photo.jpg",), (None,)),
            Axis("style", tuple(styles), tuple(styles)),
            Axis("style_weight", (100.0, 1000.0, 10000.0))]
    entries, colours = [], iter(COLOURS)
    for style, weight in product(styles, axes[2].values):
        point = {"content": "photo.jpg", "style": style, "style_weight": weight}
        name = f"run-{Path(style).stem}-{weight:g}".replace(" ", "_")
        if (style, weight) == (styles[1], 10000.0):
            entries.append(Entry(name, point, RunStatus.NOT_RUN))
        elif (style, weight) == (styles[1], 1000.0):
            (tmp_path / "runs" / f"{name}.failed.json").write_text("{}")
            entries.append(Entry(name, point, "failed",  # the words of a sweep's record
                                 settings_file=f"runs/{name}.failed.json",
                                 error="painting 1.png: not an image file", iterations=0))
        else:
            image = tmp_path / "runs" / f"{name}.png"
            colour = np.array(next(colours), np.float32)[None, :, None, None] / 255
            save_image(image, np.broadcast_to(colour, (1, 3, 300, 400)).copy())
            (tmp_path / "runs" / f"{name}.json").write_text("{}")
            entries.append(Entry(name, point, RunStatus.FINISHED, image=f"runs/{name}.png",
                                 settings_file=f"runs/{name}.json", iterations=10, seconds=1.5,
                                 losses={"content": 0.5, "style": 0.25, "tv": 0.0, "total": 1}))
    index, sheet = write_gallery(tmp_path, "A test sweep", axes, entries,
                                 rows="style", columns="style_weight")
    return tmp_path, index, sheet


def test_write_gallery_links_resolve_and_thumbnails_are_small(gallery):
    folder, index, _ = gallery
    page = index.read_text()
    assert "6 runs: 4 finished, 1 failed, 1 not run" in page
    assert page.count('class="finished"') == 4 and page.count('class="failed"') == 1
    assert page.count('class="not-run"') == 1
    parser = _Links()
    parser.feed(page)
    from urllib.parse import unquote

    for href in parser.links:
        assert (folder / unquote(href)).is_file(), href
    run_thumbs = [(src, w, h) for src, w, h in parser.images if "inputs" not in src]
    assert len(run_thumbs) == 4
    for src, w, h in parser.images:
        with Image.open(folder / unquote(src)) as im:
            assert im.size == (w, h)
    assert all(max(w, h) == THUMB for _, w, h in run_thumbs)  # never the 400 px image itself
    assert all(src.startswith("thumbs/") for src, _, _ in parser.images)
    # the style axis shows its paintings in the headers
    assert len([src for src, _, _ in parser.images if src.startswith("thumbs/inputs/")]) == 2


def _has_colour(pixels: np.ndarray, colour, tolerance: int = 6, count: int = 100) -> bool:
    close = np.all(np.abs(pixels[..., :3].astype(int) - colour) <= tolerance, axis=-1)
    return int(close.sum()) >= count


def test_sheet_has_every_run_the_failure_and_axis_labels(gallery):
    folder, _, sheet = gallery
    pixels = np.asarray(Image.open(sheet).convert("RGB"))
    for colour in COLOURS:  # each finished run's thumbnail
        assert _has_colour(pixels, colour, count=THUMB * THUMB // 2), colour
    assert _has_colour(pixels, (198, 40, 40))  # the failed run's red frame
    assert _has_colour(pixels, (253, 236, 234), count=THUMB * THUMB // 4)  # its box
    # labels: the left column (row labels) and the header band have dark text pixels
    height = pixels.shape[0]
    dark = np.all(pixels < 80, axis=-1)
    assert dark[height // 3:, :160].sum() > 50  # row labels (painting 0.png, painting 1.png)
    assert dark[:60].sum() > 50  # title and axis names


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_the_page_in_headless_chromium_shows_thumbnails_and_the_failure(gallery, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on PATH (apt-get install chromium) to open the gallery")
    folder, index, _ = gallery
    shot = tmp_path / "screenshot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1100,1000", index.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    for colour in COLOURS[:3]:  # thumbnails the page loaded through its relative links
        assert _has_colour(pixels, colour, tolerance=10, count=2000), colour
    assert _has_colour(pixels, (198, 40, 40), tolerance=10, count=50)  # the "failed" badge
