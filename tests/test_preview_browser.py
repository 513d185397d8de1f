"""The preview page in a real browser: ``minist stylize --preview`` runs, headless Chromium opens
the page, the image changes and the loss curve gains points while the run goes; Ctrl-C then
saves and exits 130. Skipped, with the reason, where no Chromium and chromedriver can be found.

Set ``MINIST_PREVIEW_SCREENSHOT=path.png`` to keep the screenshot taken during the run.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from signals import sigint_by_default
from w3c_webdriver import Browser, WebDriverError, find_browser

from minist.images import read_png_metadata, save_image

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]

# The real command line, each step slowed by 50 ms so that the run lasts while the browser
# looks, however fast the machine (the tiny network does a step in a few ms). With PACED_HOLD
# (a file) set, every step after the first PACED_HOLD_AFTER waits while that file exists: the
# run cannot end before the test has looked, however slowly the browser starts.
PACED_CLI = (
    "import os, sys, time\n"
    "from minist.stylize import StyleTransfer\n"
    "step = StyleTransfer.step\n"
    "hold, after = os.environ.get('PACED_HOLD'), int(os.environ.get('PACED_HOLD_AFTER', '0'))\n"
    "taken = [0]\n"
    "def paced(self):\n"
    "    time.sleep(0.05)\n"
    "    taken[0] += 1\n"
    "    while hold and taken[0] > after and os.path.exists(hold):\n"
    "        time.sleep(0.05)\n"
    "    return step(self)\n"
    "StyleTransfer.step = paced\n"
    "from minist.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)

# What the page shows now: the image's version and a checksum of its pixels (read back through
# a canvas), the number of points of the total-loss curve, the status and the run's table.
PAGE_STATE = """
const img = document.getElementById("image");
const line = document.querySelector('#chart polyline[data-series="total"]');
if (!img.complete || !img.naturalWidth || !line) return null;
const canvas = document.createElement("canvas");
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const context = canvas.getContext("2d");
context.drawImage(img, 0, 0);
const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
let checksum = 0;
for (let i = 0; i < pixels.length; i++) checksum = (checksum * 31 + pixels[i]) >>> 0;
return {version: Number(img.dataset.version), checksum: checksum,
        size: [img.naturalWidth, img.naturalHeight],
        points: line.points.numberOfItems,
        status: document.getElementById("status").textContent,
        stats: document.getElementById("stats").innerText,
        settings: document.getElementById("settings").innerText};
"""


@pytest.fixture(scope="module")
def browser_paths():
    found = find_browser()
    if isinstance(found, str):
        pytest.skip(found)
    return found


def _read_lines(stream, lines: queue.Queue):
    for line in iter(stream.readline, ""):
        lines.put(line)
    lines.put(None)


def _wait_for_url(lines: queue.Queue, timeout: float = 60.0) -> tuple[str, list[str]]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        if line is None:
            break
        seen.append(line)
        if match := re.match(r"minist: live preview at (http://\S+)", line):
            return match.group(1), seen
    pytest.fail("minist stylize --preview printed no URL:\n" + "".join(seen))


def _start_paced(argv: list[str], cwd: Path,
                 hold: dict[str, str] | None = None) -> tuple[subprocess.Popen, queue.Queue]:
    """``minist ARGV`` with each step paced (``PACED_CLI``; ``hold``: its PACED_HOLD
    variables), Ctrl-C as by default, its stderr read line by line into a queue (None at its
    end)."""
    env = {**os.environ, **(hold or {}), "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    run = subprocess.Popen([sys.executable, "-c", PACED_CLI, *argv], cwd=cwd, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, preexec_fn=sigint_by_default)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_read_lines, args=(run.stderr, lines), daemon=True).start()
    return run, lines


def _browser(chromium, chromedriver, tmp_path: Path) -> Browser:
    """Headless Chromium, or the test skipped saying why it could not start."""
    try:
        return Browser(chromium, chromedriver, tmp_path / "chromium-profile")
    except WebDriverError as e:
        pytest.skip(f"headless Chromium could not start here ({e}); {e.__class__.__name__}")


def test_preview_page_shows_the_run_as_it_goes(browser_paths, tiny_vgg_files, tmp_path):
    chromium, chromedriver = browser_paths
    rng = np.random.default_rng(0)
    content, style, out = tmp_path / "content.png", tmp_path / "style.png", tmp_path / "out.png"
    save_image(content, rng.uniform(size=(1, 3, 48, 64)).astype(np.float32))
    save_image(style, rng.uniform(size=(1, 3, 64, 64)).astype(np.float32))
    argv = ["stylize", str(content), str(style), "-o", str(out),
            "--weights", str(tiny_vgg_files["vgg19", "caffe"]), "--size", "64",
            "--iters", "2000", "--optimizer", "adam", "--lr", "0.02", "--quiet",
            "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1", "--preview"]
    hold = tmp_path / "hold"  # the last of the 2000 steps waits: the run cannot end first
    hold.touch()
    run, lines = _start_paced(argv, tmp_path, {"PACED_HOLD": str(hold),
                                               "PACED_HOLD_AFTER": "1999"})
    try:
        url, _ = _wait_for_url(lines)
        assert url.startswith("http://127.0.0.1:")
        browser = _browser(chromium, chromedriver, tmp_path)
        with browser:
            browser.get(url)
            first = browser.wait_for(f"{PAGE_STATE}", what="the page's first image and curve")
            second = browser.wait_for(
                PAGE_STATE.replace("return {", "const now = {", 1).replace(
                    "settings: document.getElementById(\"settings\").innerText};",
                    "settings: document.getElementById(\"settings\").innerText};\n"
                    f"return now.version > {first['version']} && now.points > "
                    f"{first['points']} ? now : null;"),
                what="a newer image and more curve points")
            screenshot = browser.screenshot()
        (tmp_path / "preview.png").write_bytes(screenshot)
        if os.environ.get("MINIST_PREVIEW_SCREENSHOT"):
            Path(os.environ["MINIST_PREVIEW_SCREENSHOT"]).write_bytes(screenshot)
        assert screenshot.startswith(b"\x89PNG") and len(screenshot) > 10_000
        assert second["checksum"] != first["checksum"]  # the image changed ...
        assert second["points"] > first["points"] >= 1  # ... and the curve gained points
        assert first["size"] == [64, 48]
        assert second["status"] == "running"
        for label in ("iteration", "it/s", "ETA", "total loss"):
            assert label in second["stats"], second["stats"]
        assert re.search(r"iteration\s+\d+ / 2000", second["stats"]), second["stats"]
        for setting in ("optimizer", "adam", "style_layers", "size"):
            assert setting in second["settings"], second["settings"]
        assert run.poll() is None, "the run ended though its last step was held"
        run.send_signal(signal.SIGINT)  # Ctrl-C: saves, stops the server, exits 130
        assert run.wait(30) == 130
        assert read_png_metadata(out)["minist:status"].startswith("interrupted after")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)


# What a clip's page shows: the run's table, and the clip so far (the flipbook GIF's size).
CLIP_STATE = """
const panel = document.getElementById("finished-panel");
const gif = document.getElementById("clip"), last = document.getElementById("finished");
if (panel.hidden || !gif.complete || !gif.naturalWidth || !last.naturalWidth) return null;
const stats = document.getElementById("stats").innerText;
const done = /frames done\\s+(\\d+) \\/ (\\d+)/.exec(stats);
return done && Number(done[1]) >= 2 ? {stats: stats, gif: [gif.naturalWidth, gif.naturalHeight],
  last: [last.naturalWidth, last.naturalHeight]} : null;
"""


def test_clip_preview_page_shows_the_frame_under_way_and_the_clip_so_far(
        browser_paths, tiny_vgg_files, tmp_path):
    """``minist video --preview`` in a real browser: the frame and the frames done in the
    table, the latest finished frame and the clip so far (a GIF) once frames are done; Ctrl-C
    keeps the frames and exits 130."""
    chromium, chromedriver = browser_paths
    rng = np.random.default_rng(0)
    frames, style = tmp_path / "frames", tmp_path / "style.png"
    frames.mkdir()
    picture = rng.uniform(size=(1, 3, 40, 140)).astype(np.float32)
    for k in range(40):  # a pan, 2 px a frame
        save_image(frames / f"{k + 1:03d}.png", picture[:, :, :, 2 * k:2 * k + 48])
    save_image(style, rng.uniform(size=(1, 3, 40, 40)).astype(np.float32))
    argv = ["video", str(frames), str(style), "-o", f"{tmp_path / 'out'}/",
            "--weights", str(tiny_vgg_files["vgg19", "caffe"]), "--size", "48",
            "--iters", "10", "--quiet", "--flow", "dis", "--content-layers", "relu2_1",
            "--style-layers", "relu1_1,relu2_1", "--preview"]
    hold = tmp_path / "hold"  # frames 1 and 2 (10 steps each) paint; frame 3 waits for us
    hold.touch()
    run, lines = _start_paced(argv, tmp_path, {"PACED_HOLD": str(hold), "PACED_HOLD_AFTER": "20"})
    try:
        url, _ = _wait_for_url(lines)
        browser = _browser(chromium, chromedriver, tmp_path)
        with browser:
            browser.get(url)
            shown = browser.wait_for(CLIP_STATE, what="two frames done and the clip so far")
        assert re.search(r"frame\s+\d+ / 40", shown["stats"]), shown["stats"]
        assert shown["gif"] == [48, 40] and shown["last"] == [48, 40]
        assert run.poll() is None, "the clip ended though frame 3 was held"
        run.send_signal(signal.SIGINT)  # Ctrl-C while frame 3 is held: frames 1 and 2 kept
        assert run.wait(60) == 130
        assert sorted(p.name for p in (tmp_path / "out").glob("frame_*.png")) == [
            "frame_0001.png", "frame_0002.png"]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
