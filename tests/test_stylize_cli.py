"""``minist stylize`` end to end on a tiny random network: outputs, log, metadata, and one test
per bad input (one line on stderr, exit status 2, nothing half-written)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from cli_errors import assert_one_line_error

from minist.cli import main
from minist.images import read_png_metadata, save_image

FAST = [
    "--size",
    "32",
    "--iters",
    "4",
    "--quiet",
    "--content-layers",
    "relu2_1",
    "--style-layers",
    "relu1_1,relu2_1",
]


@pytest.fixture()
def photos(tmp_path):
    rng = np.random.default_rng(0)
    content, style = tmp_path / "content.png", tmp_path / "style.jpg"
    save_image(content, rng.uniform(size=(1, 3, 30, 40)).astype(np.float32))
    save_image(style, rng.uniform(size=(1, 3, 40, 40)).astype(np.float32))
    return content, style


@pytest.fixture()
def weights(tiny_vgg_files):
    return str(tiny_vgg_files["vgg19", "caffe"])


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _stylize(capsys, content, style, output, weights, *options):
    """``minist stylize CONTENT STYLE -o OUTPUT --weights WEIGHTS OPTIONS...``: (code, stderr)."""
    return _run(capsys, "stylize", content, style, "-o", output, "--weights", weights, *options)




def test_stylize_writes_image_log_intermediates_and_metadata(photos, weights, tmp_path, capsys):
    content, style = photos
    out, log = tmp_path / "out.png", tmp_path / "run.jsonl"
    code, err = _stylize(
        capsys, content, style, out, weights, *FAST, "--log", log, "--save-every", "2", "--seed",
        "3"
    )
    assert code == 0, err
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["iter"] for r in lines] == [0, 1, 2, 3]
    assert set(lines[0]) == {"iter", "content", "style", "tv", "total", "seconds", "scale"}
    assert {r["scale"] for r in lines} == {32}
    assert lines[-1]["total"] < lines[0]["total"]
    assert (tmp_path / "out.iter0002.png").exists() and (tmp_path / "out.iter0004.png").exists()
    meta = read_png_metadata(out)
    settings = json.loads(meta["minist:settings"])
    assert (
        settings["size"] == 32
        and settings["seed"] == 3
        and settings["style_layers"] == ["relu1_1", "relu2_1"]
    )
    assert meta["minist:status"] == "finished after 4 iterations"
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp files left


def test_per_layer_style_weights(photos, weights, tmp_path, capsys):
    content, style = photos
    code, err = _stylize(
        capsys, content, style, tmp_path / "o.png", weights, *FAST[:-1], "relu1_1:0.25,relu2_1:0.75"
    )
    assert code == 0, err
    code, err = _stylize(
        capsys, content, style, tmp_path / "o.png", weights, *FAST[:-1], "relu1_1:0.25,relu2_1"
    )
    assert code == 2
    assert_one_line_error(err, "--style-layers")


def test_missing_content_file(photos, weights, tmp_path, capsys):
    _, style = photos
    code, err = _stylize(capsys, tmp_path / "nope.jpg", style, tmp_path / "o.png", weights, *FAST)
    assert code == 2
    assert_one_line_error(err, "nope.jpg", "no such file")


def test_non_image_style_file(photos, weights, tmp_path, capsys):
    content, _ = photos
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    code, err = _stylize(capsys, content, text, tmp_path / "o.png", weights, *FAST)
    assert code == 2
    assert_one_line_error(err, "notes.jpg")
    assert not (tmp_path / "o.png").exists()


def test_truncated_image(photos, weights, tmp_path, capsys):
    content, style = photos
    cut = tmp_path / "cut.png"
    cut.write_bytes(content.read_bytes()[: content.stat().st_size // 2])
    code, err = _stylize(capsys, cut, style, tmp_path / "o.png", weights, *FAST)
    assert code == 2
    assert_one_line_error(err, "cut.png")


def test_unreadable_file(photos, weights, tmp_path, capsys, monkeypatch):
    content, style = photos
    import builtins

    real_open = builtins.open

    def deny(path, *args, **kwargs):  # root can read anything: simulate the permission error
        if str(path) == str(content):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", deny)
    code, err = _stylize(capsys, content, style, tmp_path / "o.png", weights, *FAST)
    assert code == 2
    assert_one_line_error(err, "content.png")


def test_image_too_small_for_the_layers(photos, weights, tmp_path, capsys):
    content, style = photos
    code, err = _stylize(
        capsys, content, style, tmp_path / "o.png", weights, "--size", "8", "--quiet",
        "--style-layers", "relu5_1"
    )
    assert code == 2
    assert_one_line_error(err, "needs at least 16 px")


def test_unwritable_output_is_refused_before_any_work(photos, tmp_path, capsys):
    content, style = photos
    # the weights do not exist either: the output check must come first
    code, err = _stylize(
        capsys, content, style, tmp_path / "no" / "dir" / "o.png", tmp_path / "missing.h5", *FAST
    )
    assert code == 2
    assert_one_line_error(err, "does not exist")
    code, err = _stylize(capsys, content, style, tmp_path / "o.gif", tmp_path / "missing.h5", *FAST)
    assert code == 2
    assert_one_line_error(err, "o.gif")


def test_missing_weights(photos, tmp_path, capsys):
    content, style = photos
    code, err = _stylize(capsys, content, style, tmp_path / "o.png", tmp_path / "missing.h5", *FAST)
    assert code == 2
    assert_one_line_error(err, "missing.h5", "minist weights fetch vgg19", "minist weights convert")


def test_mismatched_weights(photos, tmp_path, capsys):
    content, style = photos
    import h5py

    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.attrs["something"] = 1
    code, err = _stylize(capsys, content, style, tmp_path / "o.png", bad, *FAST)
    assert code == 2
    assert_one_line_error(err, "bad.h5", "minist_format")


def test_layer_beyond_partial_weights(photos, tmp_path, capsys):
    import sys

    sys.path.insert(0, os.path.dirname(__file__))
    from conftest import random_params

    from minist.preprocessing import CAFFE
    from minist.weights.store import save_weights

    params = random_params("vgg19", layers=["conv1_1", "conv1_2", "conv2_1"])
    part = save_weights(
        tmp_path / "part.h5",
        "vgg19",
        params,
        CAFFE,
        "partial",
        "none",
        block_channels=(4, 4, 6, 6, 8),
    )
    code, err = _stylize(capsys, *photos, tmp_path / "o.png", part, "--size", "32", "--quiet")
    assert code == 2
    assert_one_line_error(err, "relu4_2", "deeper than the weights reach")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--size", "-3"], "--size"),
        (["--optimizer", "sgd"], "--optimizer"),
        (["--lr", "0"], "--lr"),
        (["--style-weight", "-1"], "--style-weight"),
        (["--pooling", "median"], "--pooling"),
        (["--init", "missing.png"], "--init"),
        (["--device", "tpu"], "--device"),
        (["--save-every", "-1"], "--save-every"),
        (["--content-layers", "relu4_9"], "relu4_9"),
        (["--style-layers", "relu1_1:x"], "--style-layers"),
    ],
)
def test_invalid_option_values(photos, weights, tmp_path, capsys, argv, needle):
    content, style = photos
    code, err = _stylize(capsys, content, style, tmp_path / "o.png", weights, "--quiet", *argv)
    assert code == 2
    assert_one_line_error(err, needle)
    assert not (tmp_path / "o.png").exists()


def test_non_finite_loss_keeps_the_last_finite_image(
    photos, weights, tmp_path, capsys, monkeypatch
):
    from minist.problem import Evaluation, Problem

    real = Problem.__call__
    calls = []

    def poisoned(self, image):  # Adam evaluates once per iteration: call k is iteration k's
        e = real(self, image)
        calls.append(image)
        return e if len(calls) <= 3 else Evaluation(float("nan"), e.grad, e.parts)

    monkeypatch.setattr(Problem, "__call__", poisoned)
    content, style = photos
    out = tmp_path / "o.png"
    code, err = _stylize(
        capsys, content, style, out, weights, *FAST[:2], "--iters", "10", "--quiet",
        "--optimizer", "adam",
    )
    assert code == 2
    assert_one_line_error(err, "iteration 3", "lower --lr")
    assert "stopped" in read_png_metadata(out)["minist:status"]


def test_ctrl_c_saves_the_current_image_and_exits_130(
    photos, weights, tmp_path, capsys, monkeypatch
):
    from minist.stylize import StyleTransfer

    real = StyleTransfer.step

    def interrupted(self):
        if self.iteration == 2:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(StyleTransfer, "step", interrupted)
    content, style = photos
    out = tmp_path / "o.png"
    code, err = _stylize(capsys, content, style, out, weights, *FAST)
    assert code == 130
    assert "interrupted" in err
    assert read_png_metadata(out)["minist:status"] == "interrupted after 2 iterations"
