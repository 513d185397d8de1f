"""``minist sweep``: the spec (product, names, every bad key in one line before any work), one run
in a worker (files appear complete or not at all), leftovers, and the sweep on a real 2-worker
Dask ``LocalCluster``: a worker process killed mid-run, Ctrl-C, resume, a bad input among good
ones. Tiny random VGG weights and images of 40-48 px keep every run well under a second."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY_CHANNELS, random_params
from signals import sigint_by_default

from minist.cli import main
from minist.errors import MinistError
from minist.images import load_image, read_png_metadata, save_image
from minist.preprocessing import TORCHVISION
from minist.status import RunStatus
from minist.stylize import OPTION_NAMES, StylizeOptions
from minist.sweep import (
    THREAD_ENVIRONMENT,
    check_networks,
    execute_run,
    finished_record,
    load_sweep,
    remove_leftovers,
    run_files,
    run_sweep,
)
from minist.weights.store import save_weights

ROOT = Path(__file__).resolve().parents[1]
FAST = {"size": 40, "iters": 6, "content_layers": ["relu2_1"], "style_layers": ["relu1_1",
                                                                                 "relu2_1"]}


def _toml(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def write_spec(folder: Path, name: str = "spec.toml", gallery: dict | None = None,
               **keys) -> Path:
    """A TOML spec with ``keys`` (and a ``[gallery]`` table)."""
    lines = [f"{key} = {_toml(value)}" for key, value in keys.items()]
    if gallery:
        lines += ["", "[gallery]"] + [f"{k} = {_toml(v)}" for k, v in gallery.items()]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture()
def inputs(tmp_path, tiny_vgg_files):
    """A folder with two photos, two paintings and tiny weights: the spec's neighbours."""
    rng = np.random.default_rng(0)
    for name, shape in (("photo_a.png", (40, 48)), ("photo_b.png", (48, 40)),
                        ("paint_a.png", (40, 40)), ("paint_b.jpg", (44, 40))):
        save_image(tmp_path / name, rng.uniform(size=(1, 3, *shape)).astype(np.float32))
    weights = tmp_path / "tiny.h5"
    weights.write_bytes(Path(tiny_vgg_files["vgg16", "torchvision"]).read_bytes())
    partial = random_params("vgg16", layers=["conv1_1", "conv1_2", "conv2_1"])  # to relu2_1
    save_weights(tmp_path / "partial.h5", "vgg16", partial, TORCHVISION, "partial", "none",
                 block_channels=TINY_CHANNELS)
    return tmp_path


def _spec_error(spec: Path, *needles: str) -> str:
    with pytest.raises(MinistError) as info:
        check_networks(load_sweep(spec))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{spec}: "), message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


# ---------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------


def test_spec_is_the_cartesian_product_with_readable_unique_names(inputs):
    spec = write_spec(inputs, content=["photo_a.png", "photo_b.png"],
                      style=["paint_a.png", "paint_b.jpg"], weights="tiny.h5",
                      style_weight=[100, 1e3, 1e4], **FAST)
    sweep = load_sweep(spec)
    assert len(sweep.runs) == 2 * 2 * 3
    assert sweep.swept == ["content", "style", "style_weight"]
    names = [run.name for run in sweep.runs]
    assert len(set(names)) == len(names)
    assert names[1].startswith("photo_a__paint_a__style_weight=1000__")
    first = sweep.runs[0]
    assert first.settings["style_weight"] == 100.0  # 100 and 1e2 are one value
    assert first.settings["content"] == "photo_a.png"  # as written: relative to the spec
    assert first.content == str(inputs / "photo_a.png")  # what the worker reads
    assert first.options.size == 40 and list(first.options.style_layers) == ["relu1_1",
                                                                              "relu2_1"]
    # every option that shapes the result is in the settings, so that a default that changes
    # makes another run (memory_check does not change the image)
    assert set(first.settings) == {"content", "style"} | set(OPTION_NAMES) - {"memory_check"}
    # the same spec read again (from another working directory) names the same runs
    cwd = os.getcwd()
    try:
        os.chdir(inputs.parent)
        assert [run.name for run in load_sweep(spec).runs] == names
    finally:
        os.chdir(cwd)
    # a different value anywhere gives a different name
    other = write_spec(inputs, "other.toml", content=["photo_a.png", "photo_b.png"],
                       style=["paint_a.png", "paint_b.jpg"], weights="tiny.h5",
                       style_weight=[100, 1e3, 1e4], seed=1, **FAST)
    assert not set(names) & {run.name for run in load_sweep(other).runs}


def test_list_valued_options_sweep_as_lists_of_lists(inputs):
    spec = write_spec(inputs, content="photo_a.png", style="paint_a.png", weights="tiny.h5",
                      size=40, style_layers=[["relu1_1"], ["relu1_1", "relu2_1"]],
                      content_layers=["relu2_1"], style_layer_weights=[[1.0], [0.5, 0.5]])
    # the product pairs each layer set with each weight list: two of the four do not match
    _spec_error(spec, "style_layer_weights: 2 weights for 1 layers", "in the run with")
    spec = write_spec(inputs, content="photo_a.png", style=["paint_a.png", ["paint_a.png",
                      "paint_b.jpg"]], weights="tiny.h5", size=40,
                      style_layers=[["relu1_1"], ["relu1_1", "relu2_1"]])
    sweep = load_sweep(spec)
    assert [run.point["style_layers"] for run in sweep.runs] == [["relu1_1"],
                                                                 ["relu1_1", "relu2_1"]] * 2
    assert sweep.runs[2].style == (str(inputs / "paint_a.png"), str(inputs / "paint_b.jpg"))
    assert "__paint_a+paint_b__style_layers=relu1_1__" in sweep.runs[2].name


def test_style_layers_auto_is_one_value_and_sweeps_beside_lists(inputs):
    """style_layers = "auto" (the size-dependent default) is one value; beside layer lists it
    is one more value of a sweep, and its runs choose their layers by their size."""
    spec = write_spec(inputs, content="photo_a.png", style="paint_a.png", weights="tiny.h5",
                      size=40, style_layers="auto")
    (run,) = load_sweep(spec).runs
    assert run.options.style_layers == "auto" and run.settings["style_layers"] == "auto"
    spec = write_spec(inputs, content="photo_a.png", style="paint_a.png", weights="tiny.h5",
                      size=40, style_layers=["auto", ["relu1_1", "relu2_1"]])
    sweep = load_sweep(spec)
    assert [run.point["style_layers"] for run in sweep.runs] == ["auto", ["relu1_1", "relu2_1"]]
    assert len({run.name for run in sweep.runs}) == 2


def test_a_new_option_declared_once_is_a_spec_key(inputs, monkeypatch):
    """An option added to StylizeOptions later (one declaration, minist.options.option) is a
    spec key, handled by its kind: a flag, a list (a sweep is a list of lists), any type."""
    import minist.options
    from minist.options import ANY, BOOL, INT, option

    extended = dataclasses.make_dataclass(
        "StylizeOptions",
        [("demo_flag", bool, option(False, BOOL, "a flag")),
         ("demo_sizes", Sequence[int], option((), INT, "sizes", sequence=True)),
         ("demo_schedule", Any, option(None, ANY, "anything", optional=True))],
        bases=(StylizeOptions,), frozen=True,
    )
    monkeypatch.setattr(minist.options, "StylizeOptions", extended)
    spec = write_spec(inputs, content="photo_a.png", style="paint_a.png", weights="tiny.h5",
                      demo_flag=[True, False], demo_sizes=[[32, 40], [40]],
                      demo_schedule=["auto", [32, 40]])
    sweep = load_sweep(spec)
    assert len(sweep.runs) == 8
    first = sweep.runs[0]
    assert first.options.demo_flag is True and list(first.options.demo_sizes) == [32, 40]
    assert first.settings["demo_sizes"] == [32, 40] and first.settings["demo_schedule"] == "auto"
    assert sweep.runs[1].options.demo_schedule == [32, 40]
    assert "demo_flag=true__demo_sizes=32+40__demo_schedule=auto__" in first.name
    _spec_error(write_spec(inputs, content="photo_a.png", style="paint_a.png", demo_flag=1),
                "demo_flag: expected true or false, got 1")
    _spec_error(write_spec(inputs, content="photo_a.png", style="paint_a.png",
                           demo_sizes=[[32, 4.5]]),
                "demo_sizes: expected a list whose items are each an integer, got [32, 4.5]")


def test_an_option_that_does_not_change_the_result_is_not_swept(inputs):
    """memory_check is no part of a run's settings: two runs differing only in it would be one
    run under two names. One value is fine."""
    one = write_spec(inputs, content="photo_a.png", style="paint_a.png", memory_check=False)
    assert [run.options.memory_check for run in load_sweep(one).runs] == [False]
    _spec_error(write_spec(inputs, content="photo_a.png", style="paint_a.png",
                           memory_check=[True, False]),
                "memory_check: takes one value: it does not change a run's result")


@pytest.mark.parametrize("keys, needles", [
    ({"stlye_weight": 1.0}, ["stlye_weight: unknown key", "style_weight"]),
    ({"style_weight": "high"}, ["style_weight: expected a number, got 'high'"]),
    ({"normalize": "yes"}, ["normalize: expected true or false, got 'yes'"]),
    ({"weights": 3}, ["weights: expected a file path, got 3"]),
    ({"style_layer_weights": [1, "a"]},
     ["style_layer_weights: expected a list whose items are each a number"]),
    ({"style_weight": [1.0, -1.0]}, ["style_weight: must be a number >= 0, got -1.0",
                                     "in the run with style_weight = -1.0"]),
    ({"size": [40, 40]}, ["size: the value 40 is listed twice"]),
    ({"size": []}, ["size: empty list"]),
    ({"size": 40.5}, ["size: expected an integer, got 40.5"]),
    ({"size": 0}, ["size: must be a positive integer, got 0"]),
    ({"seed": [[1]]}, ["seed: expected a single value"]),
    ({"content_layers": "relu1_1"}, ["content_layers: expected a list"]),
    ({"content_layers": [["relu1_1"], "relu2_1"]}, ["content_layers: mixes lists"]),
    ({"style_layers": "relu1_1"}, ["style_layers: give 'auto' or a list of layer names, got"]),
    ({"style_layers": [["relu1_1"], "relu2_1"]},
     ["style_layers: give 'auto' or a list of layer names, got 'relu2_1'"]),
    ({"style_layers": ["relu9_9"]}, ["style_layers: unknown layer 'relu9_9' for vgg16"]),
    ({"content_layers": ["pool5"], "weights": "partial.h5"},
     ["content_layers: layer 'pool5' is deeper than the weights reach"]),
    ({"optimizer": ["lbfgs", "newton"]}, ["optimizer: unknown optimizer 'newton'"]),
    ({"init": "start.png"}, ["init: start.png: no such file"]),
    ({"content": "missing.jpg"}, ["content: missing.jpg: no such file", "relative to the spec"]),
    ({"style": ["paint_a.png", 3]}, ["style: expected an image path"]),
    ({"weights": "none.h5"}, ["weights: ", "none.h5: no such file"]),
    ({"gallery": {"rows": "alpha"}}, ["gallery.rows: 'alpha' is not a key of this spec"]),
    ({"gallery": {"rows": "style", "columns": "style"}}, ["rows and columns are both"]),
    ({"gallery": {"colour": "red"}}, ["gallery.colour: unknown key"]),
])
def test_a_bad_spec_is_one_line_naming_the_file_and_the_key(inputs, keys, needles):
    spec_keys = {"content": "photo_a.png", "style": "paint_a.png", "weights": "tiny.h5",
                 "size": 40}
    gallery = keys.pop("gallery", None)
    spec = write_spec(inputs, gallery=gallery, **{**spec_keys, **keys})
    _spec_error(spec, *needles)


def test_missing_keys_bad_toml_and_missing_spec(inputs):
    _spec_error(write_spec(inputs, content="photo_a.png"), "style: missing")
    broken = inputs / "broken.toml"
    broken.write_text("content = [\n")
    _spec_error(broken, "not valid TOML")
    with pytest.raises(MinistError, match="no such spec file"):
        load_sweep(inputs / "nothing.toml")


def test_cli_bad_spec_exits_2_before_any_work(inputs, capsys):
    spec = write_spec(inputs, content="photo_a.png", style="paint_a.png", stlye_weight=1.0)
    out = inputs / "out"
    assert main(["sweep", str(spec), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"minist: error: {spec}: stlye_weight:")
    assert not out.exists()


def test_dry_run_lists_runs_and_runs_nothing(inputs, capsys):
    spec = write_spec(inputs, content="photo_a.png", style=["paint_a.png", "paint_b.jpg"],
                      weights="tiny.h5", **FAST)
    assert main(["sweep", str(spec), "-o", str(inputs / "out"), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["todo", "todo"]
    assert lines[1].split()[1] == load_sweep(spec).runs[1].name
    assert not (inputs / "out").exists()


def test_set_replaces_spec_keys_as_if_written_there(inputs, capsys):
    from minist.sweep import parse_override

    assert parse_override("size=128") == ("size", 128)
    assert parse_override("style_weight=[1e2, 1e3]") == ("style_weight", [100.0, 1000.0])
    assert parse_override("style=paint_b.jpg") == ("style", "paint_b.jpg")  # a bare string
    assert parse_override("gallery.rows=style") == ("gallery.rows", "style")
    spec = write_spec(inputs, content="photo_a.png", style="paint_a.png", weights="tiny.h5",
                      **FAST)
    out = str(inputs / "out")
    assert main(["sweep", str(spec), "-o", out, "--dry-run", "--set", "style=paint_b.jpg",
                 "--set", "style_weight=[1e2, 1e3]", "--set", "gallery.rows=style"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "__paint_b__style_weight=1000__" in lines[1]
    assert main(["sweep", str(spec), "-o", out, "--dry-run", "--set", "size"]) == 2
    assert "--set size: expected KEY=VALUE" in capsys.readouterr().err
    assert main(["sweep", str(spec), "-o", out, "--dry-run", "--set", "size=-3"]) == 2
    assert f"{spec}: size: must be a positive integer" in capsys.readouterr().err


def test_a_sweep_folder_written_before_resumes_under_the_same_names(inputs):
    """The run names are what a sweep folder is resumed by: these literal names are those
    minist wrote before the option schema, the status Enum and the sweep's split into parts
    (the hash covers every setting, so a changed default or key shows here). A folder written
    by a sweep is resumed whole: nothing runs again, nothing on disk changes."""
    spec = write_spec(inputs, content="photo_a.png", style=["paint_a.png", "paint_b.jpg"],
                      weights="tiny.h5", style_weight=[100, 1e3], **FAST)
    sweep = check_networks(load_sweep(spec))
    assert [run.name for run in sweep.runs] == [
        "photo_a__paint_a__style_weight=100__349363fcab",
        "photo_a__paint_a__style_weight=1000__84491b00e0",
        "photo_a__paint_b__style_weight=100__58716cd0e3",
        "photo_a__paint_b__style_weight=1000__35aa51ee6b",
    ]
    out = inputs / "out"
    (out / "runs").mkdir(parents=True)
    for run in sweep.runs:  # the folder as a sweep writes it (each run as its worker does)
        assert execute_run(run, str(out), 1)["status"] == RunStatus.FINISHED
    written = {path.name: path.read_bytes() for path in (out / "runs").iterdir()}
    assert len(written) == 3 * len(sweep.runs)
    for run in sweep.runs:  # the record holds the status's words
        assert json.loads(written[f"{run.name}.json"])["status"] == "finished"

    def no_cluster():
        raise AssertionError("a cluster was started for a sweep with nothing to do")

    report = run_sweep(check_networks(load_sweep(spec)), out, connect=no_cluster,
                       progress=False)
    assert report.skipped == [run.name for run in sweep.runs] and report.results == {}
    assert report.finished == report.skipped and report.exit_status == 0
    assert {path.name: path.read_bytes() for path in (out / "runs").iterdir()} == written
    assert (out / "index.html").read_text().count('class="finished"') == 4


# ---------------------------------------------------------------------------------------------
# One run in a worker, and what interrupted runs leave
# ---------------------------------------------------------------------------------------------


def _one_run(inputs, **keys):
    keys = {"content": "photo_a.png", "style": "paint_a.png", "weights": "tiny.h5", **FAST,
            **keys}
    sweep = check_networks(load_sweep(write_spec(inputs, **keys)))
    (inputs / "out" / "runs").mkdir(parents=True, exist_ok=True)
    return sweep, sweep.runs[0]


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob("*") if ".part" in p.name)


def test_execute_run_writes_image_log_and_record(inputs):
    sweep, run = _one_run(inputs)
    out = inputs / "out"
    result = execute_run(run, str(out), 1)
    assert result["status"] == RunStatus.FINISHED and result["iterations"] == FAST["iters"]
    files = run_files(out, run.name)
    image = load_image(files.image)
    assert image.shape == (1, 3, 33, 40)  # longest side: size
    log = [json.loads(line) for line in files.log.read_text().splitlines()]
    assert [r["iter"] for r in log] == list(range(FAST["iters"]))
    record = json.loads(files.record.read_text())
    assert record["settings"] == run.settings and record["final"] == result["final"]
    assert record["final"]["total"] < log[0]["total"]
    assert json.loads(read_png_metadata(files.image)["minist:settings"]) == run.settings
    assert finished_record(out, run) == record
    assert _leftovers(out) == []
    # a record whose settings differ is not this run
    files.record.write_text(json.dumps({**record, "settings": {**run.settings, "seed": 9}}))
    assert finished_record(out, run) is None


def test_a_bad_image_fails_its_run_with_one_line_and_writes_nothing(inputs):
    (inputs / "paint_a.png").write_text("not an image")
    _, run = _one_run(inputs)
    result = execute_run(run, str(inputs / "out"), 1)
    assert result["status"] == RunStatus.FAILED
    assert result["error"] == (f"{inputs / 'paint_a.png'}: not an image file Pillow can read "
                               "(expected JPEG, PNG, WebP, TIFF or BMP)")
    assert list((inputs / "out" / "runs").iterdir()) == []


def test_a_loss_that_turns_nan_fails_its_run_and_keeps_nothing(inputs, monkeypatch):
    from minist.loop import NonFiniteLossError
    from minist.stylize import StyleTransfer

    real_step = StyleTransfer.step

    def step(self):
        if self.iteration == 3:
            raise NonFiniteLossError("the loss became nan", self.image)
        return real_step(self)

    monkeypatch.setattr(StyleTransfer, "step", step)
    _, run = _one_run(inputs)
    result = execute_run(run, str(inputs / "out"), 1)
    assert result["status"] == RunStatus.FAILED and result["iterations"] == 3
    assert "NaN or infinite at iteration 3" in result["error"]
    assert list((inputs / "out" / "runs").iterdir()) == []


def test_remove_leftovers_deletes_temporaries_and_orphans_only(inputs):
    sweep, run = _one_run(inputs, style=["paint_a.png", "paint_b.jpg"])
    out = inputs / "out"
    done, killed = sweep.runs
    execute_run(done, str(out), 1)
    runs = out / "runs"
    # what a worker killed mid-run leaves: temporaries; killed between two renames: an orphan
    temporaries = [runs / f".{killed.name}.png.x1.part.png", runs / f".{killed.name}.jsonl.x2.part"]
    for path in temporaries:
        path.write_text("half")
    files = run_files(out, killed.name)
    files.record.write_text("{}")
    assert remove_leftovers(out, sweep.runs) == 3
    assert not any(p.exists() for p in temporaries) and not files.record.exists()
    assert finished_record(out, done) is not None  # the finished run is untouched


# ---------------------------------------------------------------------------------------------
# On Dask
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A 2-worker LocalCluster (processes, a nanny each) and its client, for this module."""
    pytest.importorskip("distributed", reason="dask.distributed is not installed "
                        "(pip install 'minist[sweep]')")
    from minist.sweep import dask_client

    with dask_client(workers=2, threads=1) as (client, threads):
        assert threads == 1
        yield client


def _worker_threads() -> tuple:
    from minist.threads import blas_threads

    return os.environ.get("OPENBLAS_NUM_THREADS"), os.environ.get("NUMBA_NUM_THREADS"), \
        blas_threads()


def test_local_workers_start_with_the_blas_threads_they_are_given():
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    from minist.sweep import dask_client

    keys = THREAD_ENVIRONMENT + ("MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED")
    before = {key: os.environ.get(key) for key in keys}
    with dask_client(workers=1, threads=2) as (client, threads):
        assert threads == 2
        (found,) = client.run(_worker_threads).values()
    assert found[:2] == ("2", "2")
    assert found[2] in (2, None)  # None: a BLAS minist cannot query
    assert {key: os.environ.get(key) for key in keys} == before  # what the nanny set here


def _kill_a_busy_worker(client, out: Path, done: dict, timeout: float = 60) -> None:
    """Wait until a run is in flight (its temporary files exist), then SIGKILL the worker
    process running it; ``done`` gets the run's name and the killed pid."""
    deadline = time.monotonic() + timeout
    pids = client.run(os.getpid)
    while time.monotonic() < deadline:
        busy = {}
        for address, keys in client.processing().items():
            for key in keys:
                name = str(key).removeprefix("minist-")
                if list((out / "runs").glob(f".{name}.png.*.part.png")):
                    busy[address] = name
        if busy:
            address, name = next(iter(busy.items()))
            os.kill(pids[address], signal.SIGKILL)
            done.update(name=name, pid=pids[address])
            return
        time.sleep(0.02)


def _sweep_spec(inputs, **keys):
    keys = {"content": ["photo_a.png", "photo_b.png"], "style": "paint_a.png",
            "weights": "tiny.h5", "style_weight": [1e2, 1e3, 1e4], **FAST, "iters": 100,
            "size": 48, **keys}
    return write_spec(inputs, **keys)


def test_a_worker_killed_mid_run_is_rescheduled_and_every_run_completes(inputs, cluster):
    sweep = check_networks(load_sweep(_sweep_spec(inputs)))
    assert len(sweep.runs) == 6
    out = inputs / "out"
    killed = {}
    killer = threading.Thread(target=_kill_a_busy_worker, args=(cluster, out, killed))
    killer.start()
    report = run_sweep(sweep, out, cluster, threads=1, progress=False)
    killer.join()
    assert killed, "no run was seen in flight"
    cluster.wait_for_workers(2, timeout=60)  # the nanny has started a new worker process
    pids = cluster.run(os.getpid).values()
    assert killed["pid"] not in pids and len(pids) == 2
    assert report.failed == [] and len(report.finished) == 6
    for run in sweep.runs:
        files = run_files(out, run.name)
        assert load_image(files.image).shape[2:] in ((40, 48), (48, 40))
        record = json.loads(files.record.read_text())
        assert record["iterations"] == 100 and record["settings"] == run.settings
        assert len(files.log.read_text().splitlines()) == 100
    assert _leftovers(out) == []  # the killed attempt's temporaries are gone
    assert (out / "index.html").exists() and (out / "sheet.png").exists()

    # re-running the same spec skips every run: it starts no cluster and runs nothing
    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was started for a sweep with nothing to do")

    def no_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    # each patched where it is looked up: the CLI imports dask_client from minist.sweep when it
    # runs; run_sweep (minist.sweep.runner) submits its module's execute_run
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr("minist.sweep.dask_client", no_cluster)
    monkeypatch.setattr("minist.sweep.runner.execute_run", no_run)
    try:
        code = main(["sweep", str(sweep.spec), "-o", str(out), "--quiet"])
    finally:
        monkeypatch.undo()
    assert code == 0
    # the gallery was rewritten from the records on disk
    html = (out / "index.html").read_text()
    assert html.count('class="finished"') == 6 and "6 runs: 6 finished" in html


class _FakeClient:
    """What :func:`threads_per_run` asks of a Dask client: task threads per worker, and each
    worker's host and cores."""

    def __init__(self, workers: dict):  # address -> (host, cores, task threads)
        self.workers = workers

    def nthreads(self):
        return {address: n for address, (_, _, n) in self.workers.items()}

    def run(self, function):
        return {address: (host, cores) for address, (host, cores, _) in self.workers.items()}


@pytest.mark.parametrize(("workers", "expected"), [
    ({"a": ("h", 8, 1), "b": ("h", 8, 1)}, 4),  # 8 cores, 2 runs at a time: 4 threads each
    ({"a": ("h", 8, 3), "b": ("h", 8, 1)}, 2),  # 4 runs at a time
    ({"a": ("h", 2, 1), "b": ("h", 2, 1), "c": ("h", 2, 1)}, 1),  # never below 1
    ({"a": ("big", 32, 1), "b": ("small", 6, 2)}, 3),  # the smallest over hosts
])
def test_threads_per_run_divides_each_hosts_cores_among_its_runs(workers, expected):
    from minist.sweep import threads_per_run

    assert threads_per_run(_FakeClient(workers)) == expected


def test_scheduler_address_runs_on_a_running_cluster(inputs, cluster, capsys):
    from minist.sweep import dask_client, threads_per_run

    spec = write_spec(inputs, content="photo_a.png", style=["paint_a.png", "paint_b.jpg"],
                      weights="tiny.h5", **FAST)
    address = cluster.scheduler.address
    with dask_client(address) as (client, threads):
        assert client.scheduler.address == address
        assert threads == threads_per_run(client)  # the rule: tested on literal hosts below
    out = inputs / "out"
    assert main(["sweep", str(spec), "-o", str(out), "--scheduler", address, "--quiet"]) == 0
    assert all(finished_record(out, run) for run in load_sweep(spec).runs)
    assert main(["sweep", str(spec), "-o", str(out), "--scheduler", address,
                 "--workers", "2"]) == 2
    assert "--workers: only for the local cluster" in capsys.readouterr().err
    with pytest.raises(MinistError, match="--scheduler tcp://127.0.0.1:9: cannot connect"), \
            dask_client("tcp://127.0.0.1:9", timeout=1):
        pass


def test_a_bad_input_fails_its_runs_only_and_the_exit_status_says_so(inputs, capsys):
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a JPEG")
    spec = write_spec(inputs, content="photo_a.png",
                      style=["paint_a.png", "paint_b.jpg", "broken.jpg"], weights="tiny.h5",
                      style_weight=[1e2, 1e3], gallery={"rows": "style_weight"}, **FAST)
    out = inputs / "out"
    code = main(["sweep", str(spec), "-o", str(out), "--workers", "2", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1, err
    failed = [line for line in err.splitlines() if line.startswith("minist: failed: ")]
    assert len(failed) == 2 and all("broken.jpg" in line for line in failed)
    assert "4 of 6 runs finished" in err
    sweep = load_sweep(spec)
    for run in sweep.runs:
        files = run_files(out, run.name)
        bad = run.point["style"] == "broken.jpg"
        assert files.image.exists() != bad and files.failure.exists() == bad
    html = (out / "index.html").read_text()
    assert html.count('class="failed"') == 2 and "6 runs: 4 finished, 2 failed" in html
    assert "broken.jpg: not an image file Pillow can read" in html  # the one-line error
    assert _leftovers(out) == []


def test_ctrl_c_keeps_finished_runs_and_a_rerun_completes_the_rest(inputs):
    """Two runs at once, one of 2 iterations and one of 1,500: Ctrl-C lands when the short one's
    image is written. The short run is kept. The long one is whole or absent -- a run already
    going is not killed: it may finish while the local cluster shuts down (seconds), or leave
    nothing -- and the rerun completes what is missing, running exactly that."""
    pytest.importorskip("distributed", reason="dask.distributed is not installed")
    spec = _sweep_spec(inputs, content="photo_a.png", style_weight=1e3, iters=[2, 1500])
    sweep = load_sweep(spec)
    short, long = sorted(sweep.runs, key=lambda r: r.settings["iters"])
    out = inputs / "out"
    command = [sys.executable, "-m", "minist", "sweep", str(spec), "-o", str(out), "--workers",
               "2", "--quiet"]
    driver = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True,
                              preexec_fn=sigint_by_default)
    try:
        deadline = time.monotonic() + 120  # a guard against a hang, not a time limit
        while time.monotonic() < deadline and not run_files(out, short.name).image.exists():
            time.sleep(0.02)
        assert run_files(out, short.name).image.exists(), "the short run never finished"
        driver.send_signal(signal.SIGINT)  # the driver only, as after a Ctrl-C it handles
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    assert "interrupted; finished runs are kept" in err
    assert finished_record(out, short) is not None
    long_done = finished_record(out, long) is not None
    assert _leftovers(out) == []  # nothing half-written, whichever way the long run went
    long_files = run_files(out, long.name)
    assert all(path.exists() == long_done for path in (long_files.image, long_files.record,
                                                       long_files.log))
    rerun = subprocess.run(command[:-1], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"2 of 2 runs finished ({1 + long_done} already done)" in rerun.stderr
    assert finished_record(out, long)["iterations"] == 1500
