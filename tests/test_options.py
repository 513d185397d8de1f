"""One declaration per option (:mod:`minist.options`): every ``minist stylize`` option that
shapes the result is a sweep spec key and an API keyword with the same default, and a bad value
is refused by all three -- the CLI in one line with exit status 2, a sweep spec in one line
naming the spec file and the key, the API with a :class:`MinistError` -- saying the same thing.

The options are read from the real ``minist stylize`` parser, so a command-line option added
without its declaration (or without a bad value below) fails here."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

from minist import __version__
from minist.cli import build_parser, main
from minist.errors import MinistError
from minist.images import save_image
from minist.options import png_metadata
from minist.stylize import OPTION_NAMES, StyleTransfer, StylizeOptions
from minist.sweep import check_networks, load_sweep

# how the run is shown or saved, not what it computes
NOT_RESULT = {"-h", "-o", "--log", "--preview", "--preview-host", "--quiet", "--save-every"}
# command-line spellings that are not --the-name
SPELLED = {"--no-normalize": "normalize", "--no-memory-check": "memory_check"}
# what --style-layers also fills: its name:weight pairs
ALSO_FILLED = {"--style-layers": ("style_layer_weights",)}


class Bad(NamedTuple):
    """A bad value of one option: as command-line text (None: a flag, which takes no value),
    as a spec's TOML value and as an API keyword; ``needle``: what all three messages say;
    ``context``: other options it needs (spec keys / API keywords)."""

    cli: str | None
    value: Any
    needle: str
    context: dict = {}


BAD = {
    "weights": Bad("none.h5", "none.h5", "none.h5: no such file"),
    "size": Bad("0", 0, "must be a positive integer, got 0"),
    "style_scale": Bad("0", 0.0, "must be > 0, got 0.0"),
    "style_blend": Bad("0,0", [0.0, 0.0], "do not sum to 0, got [0.0, 0.0]"),
    "scales": Bad("64,32", "64,32", "sizes must increase, got '64,32'"),
    "scale_iters": Bad("3", [3], "needs --scales"),
    "scale_detail": Bad("fine", "fine", "unknown mode 'fine'"),
    "original_colors": Bad("sepia", "sepia", "unknown mode 'sepia'"),
    "color_transform": Bad("lab", "lab", "unknown transform 'lab'"),
    "content_masks": Bad("none.png", ["none.png"], "none.png"),
    "style_masks": Bad("style.png", ["style.png"], "needs --content-masks"),
    "mask_mode": Bad("outside", "outside", "unknown mode 'outside'"),
    "iters": Bad("-1", -1, "must be an integer >= 0, got -1"),
    "optimizer": Bad("sgd", "sgd", "unknown optimizer 'sgd'"),
    "lr": Bad("0", 0.0, "must be > 0, got 0.0"),
    "content_weight": Bad("-1", -1.0, "must be a number >= 0, got -1.0"),
    "style_weight": Bad("-1", -1.0, "must be a number >= 0, got -1.0"),
    "tv_weight": Bad("-1", -1.0, "must be a number >= 0, got -1.0"),
    "content_layers": Bad(",", [], "no layers given"),
    "style_layers": Bad(",", [], "no layers given"),
    "style_layer_weights": Bad("relu1_1:-1", [-1.0], "weights must be numbers >= 0",
                               {"style_layers": ["relu1_1"]}),
    "pooling": Bad("median", "median", "unknown pooling 'median'"),
    "init": Bad("none.png", "none.png", "none.png"),
    "noise_ratio": Bad("2", 2.0, "must be between 0 and 1, got 2.0"),
    "seed": Bad("-1", -1, "must be an integer >= 0, got -1"),
    "device": Bad("tpu", "tpu", "unknown device 'tpu'"),
    "normalize": Bad(None, "yes", "expected true or false, got 'yes'"),
    "memory_check": Bad(None, "no", "expected true or false, got 'no'"),
}
# a run that is quick when nothing is wrong (the bad value replaces these)
FAST = {"size": 32, "iters": 2, "content_layers": ["relu2_1"], "style_layers": ["relu1_1"]}


def _stylize_actions() -> list:
    """The actions of the real ``minist stylize`` parser that take options."""
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    return [a for a in subparsers.choices["stylize"]._actions if a.option_strings]


def _result_options() -> dict[str, tuple[str, ...]]:
    """CLI option -> the API keywords (and spec keys) it sets: every option that shapes the
    result, read from the parser."""
    out = {}
    for action in _stylize_actions():
        flag = max(action.option_strings, key=len)
        if not set(action.option_strings) & NOT_RESULT:
            name = SPELLED.get(flag, flag.removeprefix("--").replace("-", "_"))
            out[flag] = (name, *ALSO_FILLED.get(flag, ()))
    return out


def _canonical(value):
    """Values compared across the three front ends: tuples as lists, paths as text."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (tuple, list)):
        return [_canonical(v) for v in value]
    return value


@pytest.fixture()
def files(tmp_path, tiny_vgg_files):
    rng = np.random.default_rng(0)
    for name, shape in (("content.png", (30, 40)), ("style.png", (40, 40))):
        save_image(tmp_path / name, rng.uniform(size=(1, 3, *shape)).astype(np.float32))
    (tmp_path / "tiny.h5").write_bytes(Path(tiny_vgg_files["vgg19", "caffe"]).read_bytes())
    return tmp_path


def _toml(value) -> str:
    if isinstance(value, (bool, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def _spec(folder: Path, **keys) -> Path:
    keys = {"content": "content.png", "style": "style.png", "weights": "tiny.h5", **keys}
    path = folder / "spec.toml"
    path.write_text("".join(f"{key} = {_toml(value)}\n" for key, value in keys.items()))
    return path


def test_every_result_option_is_a_spec_key_and_an_api_keyword_with_the_same_default(
        files, monkeypatch):
    options = _result_options()
    names = [name for names in options.values() for name in names]
    assert "--no-normalize" in options and "--style-layers" in options  # the parser was read
    assert sorted(names) == sorted(OPTION_NAMES)  # each CLI option is one API keyword ...
    assert sorted(BAD) == sorted(OPTION_NAMES)  # ... and has a bad value below

    class CapturedError(Exception):
        pass

    def capture(self, content, style, options=None, **kwargs):
        raise CapturedError(options)

    monkeypatch.chdir(files)
    monkeypatch.setattr(StyleTransfer, "__init__", capture)
    with pytest.raises(CapturedError) as info:  # the options `minist stylize` runs with
        main(["stylize", "content.png", "style.png", "-o", "out.png"])
    cli = info.value.args[0]
    api = StylizeOptions().validated()
    spec_path = files / "spec.toml"
    spec_path.write_text('content = "content.png"\nstyle = "style.png"\n')
    (run,) = load_sweep(spec_path).runs  # every option left to its default
    for name in names:
        assert _canonical(getattr(cli, name)) == _canonical(getattr(api, name)), name
        assert _canonical(getattr(run.options, name)) == _canonical(getattr(api, name)), name
        if getattr(api, name) is not None:  # (TOML has no None) the default, written out
            (written,) = load_sweep(_spec(files, **{name: _canonical(getattr(api, name))})).runs
            got = written.settings.get(name, getattr(written.options, name))  # paths as written
            assert _canonical(got) == _canonical(getattr(api, name)), name
    assert api.normalize is True and api.memory_check is True and api.style_layers == "auto"


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_is_refused_by_the_cli_a_spec_and_the_api(name, files, capsys,
                                                              monkeypatch):
    bad = BAD[name]
    monkeypatch.chdir(files)
    # the command line: one line, exit status 2, nothing written
    flag = {names[0]: flag for flag, names in _result_options().items()}.get(name)
    if bad.cli is None:
        (action,) = [a for a in _stylize_actions() if flag in a.option_strings]
        assert action.nargs == 0  # a flag: there is no value to get wrong
    else:
        if flag is None:  # set through another option's text (--style-layers name:weight)
            flag = next(f for f, names in _result_options().items() if name in names)
        argv = ["stylize", "content.png", "style.png", "-o", "out.png", "--weights", "tiny.h5",
                "--quiet", "--size", "32", "--iters", "2", "--content-layers", "relu2_1",
                "--style-layers", "relu1_1", flag, bad.cli]
        assert main(argv) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("minist: error: "), lines
        assert bad.needle in lines[0], lines[0]
        assert not (files / "out.png").exists()
    # a sweep spec: one line naming the file and the key
    spec = _spec(files, **{name: bad.value, **bad.context})
    with pytest.raises(MinistError) as info:
        check_networks(load_sweep(spec))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{spec}: {name}: "), message
    assert bad.needle in message, message
    # the API: the same words
    keywords = {**FAST, "weights": "tiny.h5", name: bad.value, **bad.context}
    with pytest.raises(MinistError) as info:
        StyleTransfer("content.png", "style.png", **keywords)
    assert "\n" not in str(info.value) and bad.needle in str(info.value), str(info.value)


def test_validated_returns_a_new_object_and_changes_nothing():
    given = StylizeOptions(scales="256,512", size=512)
    checked = given.validated()
    assert checked is not given and checked.scales == (256, 512)
    assert given.scales == "256,512"
    with pytest.raises(dataclasses.FrozenInstanceError):
        given.size = 64  # type: ignore[misc]


def test_png_metadata_keys_and_values():
    class Record(NamedTuple):
        iter: int
        total: float

    class Run:
        history = [Record(0, 2.5), Record(1, 1.5)]
        iteration, size = 2, 64

        def style_layers_at(self, size):
            return ("relu1_1",) if size == 64 else ()

    write = png_metadata({"size": 64}, "c.png", "s.png", extra={"minist:sweep-run": "r"})
    meta = write(Run(), "finished")
    assert meta == {
        "Software": f"minist {__version__}",
        "minist:settings": '{"size": 64}',
        "minist:content": "c.png",
        "minist:style": "s.png",
        "minist:style-layers": '["relu1_1"]',
        "minist:status": "finished after 2 iterations",
        "minist:last-losses": '{"iter": 1, "total": 1.5}',
        "minist:sweep-run": "r",
    }
    assert list(meta) == ["Software", "minist:settings", "minist:content", "minist:style",
                          "minist:style-layers", "minist:status", "minist:last-losses",
                          "minist:sweep-run"]  # the order of the PNG's text chunks
    assert "minist:style-layers" not in png_metadata({}, "", "", style_layers=False)(Run(), "x")
