"""What live views show (minist.live): the global step, speed and ETA, the image reference,
and the loss curves as SVG on a log scale."""

from __future__ import annotations

import io
import math
import re
import threading
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np
import pytest
from PIL import Image

from minist.images import encode_png
from minist.live import MAX_CHART_POINTS, LiveRun, LossPoint, loss_chart_svg
from minist.loop import IterationRecord, Outcome
from minist.status import RunStatus


class ScaledRecord(NamedTuple):
    """A coarse-to-fine record: ``iter`` restarts at 0 for each scale."""

    iter: int
    content: float
    style: float
    tv: float
    total: float
    seconds: float
    scale: int


class FakeRun:
    """What a live view reads from a run: options, the image and ``image_on_cpu``."""

    def __init__(self, iters=10):
        self.options = SimpleNamespace(iters=iters, as_metadata=lambda: {"size": 32, "seed": 1})
        self.image = np.zeros((1, 3, 4, 5), np.float32)
        self.asked = 0

    def image_on_cpu(self):
        self.asked += 1
        return self.image


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_steps_count_globally_across_scales_and_speed_and_eta_follow_the_clock():
    clock, run = Clock(), FakeRun(iters=6)
    live = LiveRun(clock=clock)
    live.start(run)
    records = [ScaledRecord(i, 1.0, 2.0, 0.0, 3.0, 0.5, scale)
               for scale in (64, 128) for i in range(3)][:4]
    for record in records:
        clock.now += 0.5  # 2 it/s
        live.step(record, run)
    points = live.points()
    assert [p.step for p in points] == [0, 1, 2, 3]
    assert [p.iter for p in points] == [0, 1, 2, 0] and [p.scale for p in points][2:] == [64, 128]
    s = live.snapshot()
    assert s["step"] == 4 and s["total"] == 6 and s["iter"] == 0 and s["scale"] == 128
    assert s["it_per_s"] == pytest.approx(2.0)
    assert s["eta_s"] == pytest.approx((6 - 4) / 2.0)
    assert s["elapsed_s"] == pytest.approx(2.0)
    assert s["settings"] == {"size": 32, "seed": 1} and s["status"] == "running"
    assert s["losses"] == {"content": 1.0, "style": 2.0, "tv": 0.0, "total": 3.0}
    live.end(run, Outcome(RunStatus.FINISHED, 4, run.image))
    s = live.snapshot()
    assert s["final"] and s["status"] == "finished" and s["eta_s"] is None


ENDINGS = ["finished", "stopped by an observer", "interrupted", "stopped: loss not finite",
           "failed"]  # the words a run loop's Outcome may hold, as users read them


@pytest.mark.parametrize("words", ENDINGS)
def test_every_way_a_run_ends_is_final_in_the_views(words):
    """The preview page polls until ``final``; the notebook drops the ETA then. Each ending,
    given as the loop gives it (a RunStatus) or as its words, is final and reads as its words."""
    for status in (RunStatus(words), words):
        live, run = LiveRun(clock=Clock()), FakeRun()
        before = live.snapshot()
        assert before["status"] == "waiting for the run to start" and not before["final"]
        live.start(run)
        assert live.snapshot()["status"] == "running" and not live.final
        live.end(run, Outcome(status, 0, run.image))
        s = live.snapshot()
        assert live.final and s["final"] is True and s["status"] == words
        assert type(s["status"]) is str  # JSON and HTML get the words themselves


def test_a_status_that_is_no_ending_is_refused():
    live, run = LiveRun(clock=Clock()), FakeRun()
    live.start(run)
    with pytest.raises(ValueError, match="done"):
        live.end(run, Outcome("done", 0, run.image))  # a reworded ending would never be final


def test_one_step_speed_comes_from_its_record_and_records_without_scale_show_none():
    live = LiveRun(clock=Clock())
    run = FakeRun()
    live.start(run)
    live.step(IterationRecord(0, 1.0, 1.0, 0.0, 2.0, 0.25), run)
    live.step(ScaledRecord(1, 1.0, 1.0, 0.0, 2.0, 0.25, scale=0), run)  # 0: not said
    s = live.snapshot()
    assert s["it_per_s"] == pytest.approx(4.0) and s["scale"] is None


def test_total_is_the_schedule_of_a_coarse_to_fine_run():
    run = FakeRun(iters=10)
    run.schedule = SimpleNamespace(total=25)  # several scales' iterations
    live = LiveRun()
    live.start(run)
    assert live.snapshot()["total"] == 25
    live = LiveRun(total=7)  # said by the caller
    live.start(run)
    assert live.snapshot()["total"] == 7


def test_the_image_is_referenced_not_copied_and_looked_at_every_interval():
    clock, run = Clock(), FakeRun()
    live = LiveRun(image_interval=1.0, clock=clock)
    live.start(run)
    version, image = live.image()
    assert image is run.image and version == 1
    for i in range(4):  # 0.4 s apart: the image is looked at again once 1 s has passed
        clock.now += 0.4
        run.image = np.full((1, 3, 4, 5), i / 4, np.float32)
        live.step(IterationRecord(i, 1, 1, 0, 2, 0.4), run)
    version, image = live.image()
    assert run.asked == 1 + 1 and version == 2  # at start, then at 1.2 s (step 2)
    assert image[0, 0, 0, 0] == pytest.approx(2 / 4)
    live.end(run, Outcome(RunStatus.INTERRUPTED, 4, run.image))  # the end shows the last image
    version, image = live.image()
    assert image is run.image and version == 3


def test_png_is_encoded_once_per_image_and_decodes_to_the_image():
    run = FakeRun()
    run.image = np.random.default_rng(0).uniform(size=(1, 3, 6, 7)).astype(np.float32)
    live = LiveRun()
    assert live.png() is None  # nothing to show before the run starts
    live.start(run)
    first = live.png()
    assert live.png() is first  # cached for the same version
    decoded = np.asarray(Image.open(io.BytesIO(first)))
    expected = np.rint(run.image[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(decoded, expected)


def test_encode_png_shrinks_large_images_to_max_side():
    image = np.zeros((1, 3, 300, 120), np.float32)
    with Image.open(io.BytesIO(encode_png(image, max_side=100))) as im:
        assert im.size == (40, 100)
    with Image.open(io.BytesIO(encode_png(image))) as im:
        assert im.size == (120, 300)


def test_snapshot_can_be_read_while_the_run_writes():
    live, run = LiveRun(image_interval=0.0), FakeRun(iters=2000)
    live.start(run)
    errors = []

    def read():
        try:
            for _ in range(300):
                s = live.snapshot()
                assert s["points"] == s["step"]
                loss_chart_svg(live.points())
                live.png()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(2000):
        live.step(IterationRecord(i, 1.0 / (i + 1), 2.0, 0.0, 3.0, 0.001), run)
    reader.join()
    assert not errors and len(live.points()) == 2000


# --- the chart -------------------------------------------------------------------------------
def _polyline(svg: str, series: str) -> list[tuple[float, float]]:
    match = re.search(rf'<polyline data-series="{series}"[^>]* points="([^"]*)"', svg)
    assert match, f"no {series} curve in {svg[:200]}"
    return [tuple(map(float, xy.split(","))) for xy in match.group(1).split()]


def _points(totals, contents=None, styles=None, tvs=None, scales=None):
    n = len(totals)
    contents, styles = contents or [1.0] * n, styles or [1.0] * n
    tvs, scales = tvs or [0.0] * n, scales or [None] * n
    return [LossPoint(i, i, scales[i], contents[i], styles[i], tvs[i], totals[i])
            for i in range(n)]


def test_chart_places_points_on_a_log_axis():
    totals = [1000.0, 100.0, 10.0, 1.0, 0.5]  # decades 1e-1 .. 1e3 over the plotted values
    svg = loss_chart_svg(_points(totals), width=640, height=300)
    xy = _polyline(svg, "total")
    left, top, w, h = 58, 26, 640 - 58 - 12, 300 - 26 - 34
    d_min, d_max = -1, 3
    for (x, y), (step, value) in zip(xy, enumerate(totals), strict=True):
        assert x == pytest.approx(left + step / 4 * w, abs=0.06)
        assert y == pytest.approx(top + (d_max - math.log10(value)) / (d_max - d_min) * h,
                                  abs=0.06)
    ys = [y for _, y in xy]
    assert ys[0] - ys[1] == pytest.approx(ys[1] - ys[2], abs=0.1)  # same factor, same height
    assert "1e-1" in svg and "1e3" in svg


def test_chart_draws_content_style_total_and_tv_only_when_used():
    svg = loss_chart_svg(_points([3.0, 2.0]))
    assert set(re.findall(r'data-series="(\w+)"', svg)) == {"content", "style", "total"}
    svg = loss_chart_svg(_points([3.0, 2.0], tvs=[0.1, 0.2]))
    assert "tv" in re.findall(r'data-series="(\w+)"', svg)


def test_chart_leaves_out_values_a_log_axis_cannot_show():
    svg = loss_chart_svg(_points([3.0, 2.0, 1.0], contents=[0.0, 1.0, float("nan")]))
    assert len(_polyline(svg, "content")) == 1 and len(_polyline(svg, "total")) == 3
    assert "no losses yet" in loss_chart_svg([])


def test_chart_marks_scale_changes_and_thins_long_runs():
    svg = loss_chart_svg(_points([3.0, 2.0, 2.5, 1.0], scales=[64, 64, 128, 128]))
    assert svg.count("stroke-dasharray") == 1 and "128 px" in svg
    n = 3 * MAX_CHART_POINTS + 1
    many = _points([1.0 + 1.0 / (i + 1) for i in range(n)])
    xy = _polyline(loss_chart_svg(many), "total")
    assert len(xy) <= MAX_CHART_POINTS + 1 and xy[-1][0] == pytest.approx(640 - 12)


def _gif_frames(data: bytes) -> list[np.ndarray]:
    gif = Image.open(io.BytesIO(data))
    frames = []
    for k in range(gif.n_frames):
        gif.seek(k)
        frames.append(np.asarray(gif.convert("RGB")))
    return frames


def test_the_clip_so_far_is_each_frames_latest_version_in_frame_order(monkeypatch):
    """A clip's flipbook (minist video --preview): one GIF frame per frame finished, in frame
    order, a later pass's version replacing the earlier one, at most CLIP_FRAMES (those
    finished longest ago dropped), shrunk to CLIP_SIDE; encoded once per finished frame."""
    import minist.live as live_module

    live = LiveRun()
    assert live.clip_gif() is None
    grey = {k: np.full((1, 3, 40, 200), k / 10, np.float32) for k in range(1, 5)}
    for k in (1, 2, 3):  # pass 1, forwards
        live.set_clip(frame=k, frames=3, passes=2, done=k - 1, **{"pass": 1})
        live.finish_frame(grey[k], done=k)
    frames = _gif_frames(live.clip_gif())
    assert [f.shape for f in frames] == [(32, 160, 3)] * 3  # 200 x 40 shrunk to 160 x 32
    assert [int(f[16, 80, 0]) for f in frames] == [26, 51, 76]  # round(255 k / 10), in order
    live.set_clip(frame=2, frames=3, passes=2, done=3, **{"pass": 2})  # pass 2, backwards
    live.finish_frame(grey[4], done=4)
    data = live.clip_gif()
    assert data is live.clip_gif()  # cached until the next finished frame
    assert [int(f[16, 80, 0]) for f in _gif_frames(data)] == [26, 102, 76]
    monkeypatch.setattr(live_module, "CLIP_FRAMES", 2)
    live.set_clip(frame=3, frames=3, passes=2, done=4, **{"pass": 2})
    live.finish_frame(grey[1], done=5)  # frame 1 was finished longest ago: it goes
    assert [int(f[16, 80, 0]) for f in _gif_frames(live.clip_gif())] == [102, 26]
