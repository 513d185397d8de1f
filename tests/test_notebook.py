"""The Jupyter view (minist.notebook) without Jupyter: a fake ``show`` receives what a notebook
would show; outside Jupyter the view says so once and leaves the run alone."""

from __future__ import annotations

import base64
import io
import re
import sys
import types

import numpy as np
from PIL import Image

from minist import notebook
from minist.notebook import NotebookView, in_jupyter, jupyter_show
from minist.stylize import StyleTransfer

LAYERS = dict(content_layers=["relu3_1"], style_layers=["relu1_1", "relu2_1", "relu3_1"])


def _transfer(tiny_vgg_files):
    rng = np.random.default_rng(0)
    content = rng.uniform(size=(1, 3, 24, 32)).astype(np.float32)
    style = rng.uniform(size=(1, 3, 20, 20)).astype(np.float32)
    return StyleTransfer(content, style, weights=tiny_vgg_files["vgg19", "torchvision"], size=32,
                         optimizer="adam", **LAYERS)


def _image(html: str) -> np.ndarray:
    data = re.search(r'src="data:image/png;base64,([^"]+)"', html).group(1)
    with Image.open(io.BytesIO(base64.b64decode(data))) as im:
        return np.asarray(im)


def _curve_points(html: str, series: str = "total") -> int:
    match = re.search(rf'data-series="{series}"[^>]* points="([^"]*)"', html)
    return len(match.group(1).split()) if match else 0


def test_view_draws_the_image_and_curves_as_the_run_goes(tiny_vgg_files):
    shown = []
    st = _transfer(tiny_vgg_files)
    st.run(iters=5, observers=[NotebookView(every_s=0.0, title="run <1>", show=shown.append)])
    assert len(shown) == 1 + 5 + 1  # at the start, after each step, at the end
    assert [_curve_points(html) for html in shown] == [0, 1, 2, 3, 4, 5, 5]
    assert "step 3 / 300" in shown[3] and "it/s" in shown[3] and "ETA" in shown[3]
    assert "running" in shown[3] and "finished" in shown[-1] and "ETA" not in shown[-1]
    assert "run &lt;1&gt;" in shown[0]  # the title is escaped
    expected = np.rint(st.result()[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    np.testing.assert_array_equal(_image(shown[-1]), expected)  # the final image
    assert not np.array_equal(_image(shown[0]), _image(shown[-1]))  # it changed on the way


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_view_draws_at_most_every_every_s_and_looks_at_the_image_only_then(tiny_vgg_files):
    clock, shown = Clock(), []
    st = _transfer(tiny_vgg_files)
    asked = []
    real = st.image_on_cpu
    st.image_on_cpu = lambda: asked.append(st.iteration) or real()

    class Tick:  # 0.4 s per step
        def on_start(self, run):
            pass

        def on_step(self, record, run):
            clock.now += 0.4

        def on_end(self, run, outcome):
            pass

    view = NotebookView(every_s=1.0, show=shown.append, clock=clock)
    st.run(iters=6, observers=[Tick(), view])
    # drawn at 0 (start), then at 1.2 s (step 3) and 2.4 s (step 6), and at the end
    assert [_curve_points(html) for html in shown] == [0, 3, 6, 6]
    assert asked == [0, 3, 6, 6]  # looked at the image only to draw it


def test_outside_jupyter_it_says_so_once_and_the_run_is_unchanged(tiny_vgg_files, capsys,
                                                                  monkeypatch):
    monkeypatch.setattr(notebook, "_said_not_in_jupyter", False)
    assert not in_jupyter()
    plain = _transfer(tiny_vgg_files).run(iters=3)
    views = _transfer(tiny_vgg_files)
    first = views.run(iters=3, observers=[NotebookView()])
    views_again = _transfer(tiny_vgg_files)
    views_again.run(iters=1, observers=[NotebookView()])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "not in Jupyter" in captured.err
    np.testing.assert_array_equal(first, plain)


def test_jupyter_show_makes_one_output_and_updates_it(monkeypatch):
    calls = []

    class Handle:
        def update(self, obj):
            calls.append(("update", obj.data))

    def display(obj, display_id=None):
        calls.append(("display", obj.data, display_id))
        return Handle()

    class HTML:
        def __init__(self, data):
            self.data = data

    fake = types.ModuleType("IPython.display")
    fake.HTML, fake.display = HTML, display
    ipython = types.ModuleType("IPython")
    ipython.display = fake
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", fake)
    show = jupyter_show()
    show("<b>1</b>")
    show("<b>2</b>")
    assert calls == [("display", "<b>1</b>", True), ("update", "<b>2</b>")]


def test_in_jupyter_needs_a_kernel(monkeypatch):
    ipython = types.ModuleType("IPython")
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    ipython.get_ipython = lambda: None  # IPython imported, no shell
    assert not in_jupyter()
    ipython.get_ipython = lambda: types.SimpleNamespace()  # a terminal IPython: no kernel
    assert not in_jupyter()
    ipython.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    assert in_jupyter()


def test_a_view_watches_runs_one_after_another(tiny_vgg_files):
    shown = []
    view = NotebookView(every_s=0.0, show=shown.append)
    _transfer(tiny_vgg_files).run(iters=2, observers=[view])
    _transfer(tiny_vgg_files).run(iters=3, observers=[view])
    assert [_curve_points(html) for html in shown] == [0, 1, 2, 2, 0, 1, 2, 3, 3]
