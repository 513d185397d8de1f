"""One run loop with observers (minist.loop), inputs prepared apart from the run
(minist.inputs), errors that travel (pickle), and two runs at once in one process."""

from __future__ import annotations

import json
import pickle
import threading

import numpy as np
import pytest

from minist.errors import MinistError
from minist.loop import CallbackObserver, NonFiniteLossError, Observer
from minist.optim import Adam
from minist.problem import Evaluation, Problem
from minist.status import RunStatus
from minist.stylize import StyleTransfer

LAYERS = dict(content_layers=["relu3_1"], style_layers=["relu1_1", "relu2_1", "relu3_1"])


def _images(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(1, 3, 24, 32)).astype(np.float32),
            rng.uniform(size=(1, 3, 20, 20)).astype(np.float32))


def _transfer(tiny_vgg_files, **options):
    content, style = _images()
    options = {"weights": tiny_vgg_files["vgg19", "torchvision"], "size": 32, **LAYERS, **options}
    return StyleTransfer(content, style, **options)


class Recorder(Observer):
    """Remembers what it was told."""

    def __init__(self, stop_at=None, want_image=False):
        self.events, self.stop_at, self.want_image = [], stop_at, want_image
        self.outcome = None

    def on_start(self, run):
        self.events.append("start")

    def on_step(self, record, run):
        self.events.append(record.iter)
        if self.want_image:
            self.image = run.image_on_cpu()
        return self.stop_at is not None and record.iter >= self.stop_at

    def on_end(self, run, outcome):
        self.events.append("end")
        self.outcome = outcome


def test_the_status_words_users_read_never_change():
    """The words of :class:`RunStatus` are in PNG metadata, sweep records, the preview page and
    the gallery: a rewording is caught here, literally."""
    assert {status.name: status.value for status in RunStatus} == {
        "WAITING": "waiting for the run to start", "RUNNING": "running",
        "INTERMEDIATE": "intermediate", "FINISHED": "finished",
        "STOPPED": "stopped by an observer", "INTERRUPTED": "interrupted",
        "NOT_FINITE": "stopped: loss not finite", "FAILED": "failed", "NOT_RUN": "not run"}
    assert {str(status) for status in RunStatus if status.final} == {
        "finished", "stopped by an observer", "interrupted", "stopped: loss not finite",
        "failed"}  # the ways the loop ends a run
    # written as its words: f-strings (PNG metadata), JSON (records, the preview's state)
    assert f"{RunStatus.INTERRUPTED} after 2 iterations" == "interrupted after 2 iterations"
    assert json.dumps({"status": RunStatus.NOT_FINITE}) == '{"status": "stopped: loss not finite"}'
    # and read back from them: equal to, hashed as and parsed from the words
    assert RunStatus("not run") is RunStatus.NOT_RUN and RunStatus.FAILED == "failed"
    assert {"finished": 1}[RunStatus.FINISHED] == 1 and "failed" in {RunStatus.FAILED}


def test_observers_see_every_step_and_can_stop_the_run(tiny_vgg_files):
    st = _transfer(tiny_vgg_files)
    watch, stopper = Recorder(), Recorder(stop_at=2)
    image = st.run(iters=10, observers=[watch, stopper])
    assert watch.events == ["start", 0, 1, 2, "end"] and st.iteration == 3
    assert watch.outcome.status == "stopped by an observer" and st.outcome.iterations == 3
    np.testing.assert_array_equal(image, st.result())
    calls = []
    st.run(iters=2, callback=lambda record, run: calls.append((record.iter, run is st)))
    assert calls == [(3, True), (4, True)] and st.outcome.status == "finished"


def test_image_on_the_cpu_only_when_asked(tiny_vgg_files):
    st = _transfer(tiny_vgg_files)
    st.run(iters=2, observers=[Recorder()])
    assert st._cpu_image is None  # nobody asked: nothing was copied
    asking = Recorder(want_image=True)
    st.run(iters=1, observers=[asking])
    assert asking.image is st.image_on_cpu() and asking.image.shape == (1, 3, 24, 32)
    np.testing.assert_array_equal(asking.image, st.result())


def test_ctrl_c_and_non_finite_loss_end_the_run_in_the_loop(tiny_vgg_files, monkeypatch):
    """Observers hear how the run ended, with the image to keep; the interrupt or error then
    reaches the caller (the CLI turns them into exit statuses 130 and 2)."""
    st = _transfer(tiny_vgg_files)
    real = StyleTransfer.step

    def interrupted(self):
        if self.iteration == 2:
            raise KeyboardInterrupt
        return real(self)

    watch = Recorder()
    with monkeypatch.context() as mp:
        mp.setattr(StyleTransfer, "step", interrupted)
        with pytest.raises(KeyboardInterrupt):
            st.run(iters=5, observers=[watch])
    assert watch.events[-1] == "end" and watch.outcome.status == "interrupted"
    assert watch.outcome.image is st.image and watch.outcome.iterations == 2

    st = _transfer(tiny_vgg_files, optimizer="adam")  # one evaluation per iteration, at its start
    real_evaluate = Problem.__call__
    images = []  # the image each iteration starts from

    def poisoned(self, image):
        e = real_evaluate(self, image)
        return e if st.iteration < 3 else Evaluation(float("nan"), e.grad, e.parts)

    watch = Recorder()
    with monkeypatch.context() as mp:
        mp.setattr(Problem, "__call__", poisoned)
        with pytest.raises(NonFiniteLossError, match="iteration 3") as info:
            st.run(iters=6, observers=[watch, CallbackObserver(
                lambda record, run: images.append(run.state.last_finite_image))])
    assert watch.outcome.status == "stopped: loss not finite"
    assert watch.outcome.image is info.value.image
    assert st.iteration == 3 and len(images) == 3
    assert info.value.image is images[-1]  # the image of iteration 2, whose loss was finite

    class Broken(Observer):
        def on_step(self, record, run):
            raise RuntimeError("observer bug")

    watch = Recorder()
    with pytest.raises(RuntimeError, match="observer bug"):
        _transfer(tiny_vgg_files).run(iters=3, observers=[watch, Broken()])
    assert watch.outcome.status == "failed" and watch.events[-1] == "end"


def test_the_cli_runs_the_same_loop(tiny_vgg_files, tmp_path, monkeypatch, capsys):
    import minist.stylize as stylize_module
    from minist.cli import main
    from minist.images import save_image

    calls = []
    real = stylize_module.run_loop

    def spy(run, iters, observers):
        calls.append([type(o).__name__ for o in observers])
        return real(run, iters, observers)

    monkeypatch.setattr(stylize_module, "run_loop", spy)
    content, style = _images()
    save_image(tmp_path / "c.png", content)
    save_image(tmp_path / "s.png", style)
    code = main(["stylize", str(tmp_path / "c.png"), str(tmp_path / "s.png"), "-o",
                 str(tmp_path / "o.png"), "--weights", str(tiny_vgg_files["vgg19", "caffe"]),
                 "--size", "32", "--iters", "2", "--quiet", "--log", str(tmp_path / "l.jsonl"),
                 "--save-every", "1", "--content-layers", "relu2_1", "--style-layers",
                 "relu1_1,relu2_1"])
    assert code == 0, capsys.readouterr().err
    assert calls == [["ProgressBar", "JsonLog", "Snapshots", "SaveResult"]]


def test_a_run_takes_an_array_to_start_from_and_an_optimizer_instance(tiny_vgg_files):
    first = _transfer(tiny_vgg_files, init="noise", seed=4)
    first.run(iters=3)
    start = first.result()
    optimizer = Adam(lr=0.02)
    st = _transfer(tiny_vgg_files, init=start, optimizer=optimizer)
    np.testing.assert_array_equal(st.image, start)
    assert st.optimizer is optimizer
    st.run(iters=2)
    assert optimizer._state_key is not None  # it was the one stepping
    assert st.options.as_metadata()["init"] == "array"
    with pytest.raises(MinistError, match="init: expected an RGB image array"):
        _transfer(tiny_vgg_files, init=np.zeros((2, 2)))


def test_retarget_rebuilds_targets_at_another_size(tiny_vgg_files):
    st = _transfer(tiny_vgg_files, init="noise")
    st.run(iters=2)
    before = st.result()
    small = {t.key: t.target.shape for t in st.objective.terms}
    st.retarget(48)
    assert st.image.shape == st.content_image.shape == (1, 3, 36, 48)
    big = {t.key: t.target.shape for t in st.objective.terms}
    assert big.keys() == small.keys()
    content_key = next(k for k in big if k.kind == "content")
    assert big[content_key][1] > small[content_key][1]  # more positions M_l
    from minist.inputs import initial_image
    from minist.scales import carry_over

    start = initial_image("noise", st.content_image, st.content_image, seed=st.options.seed)
    np.testing.assert_array_equal(st.result(), carry_over(before, start))
    st.run(iters=2)  # the optimizer starts afresh on the new shape
    assert st.history[-1].total < st.history[-2].total * 10


def test_errors_pickle_with_their_message_and_data():
    """A Dask client (or any other process) sees minist's own errors, whole."""
    import importlib
    import pkgutil

    import minist

    for module in pkgutil.walk_packages(minist.__path__, "minist."):
        if not any(part in module.name for part in ("cupy", "bench_torch", "__main__")):
            importlib.import_module(module.name)

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    examples = {MinistError: MinistError("--size: must be > 0"),
                NonFiniteLossError: NonFiniteLossError("the loss became nan at iteration 3",
                                                       np.arange(12.0).reshape(1, 3, 2, 2))}
    assert set(subclasses(MinistError)) <= set(examples), "add an example for each new error"
    for cls, error in examples.items():
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is cls and str(back) == str(error)
    back = pickle.loads(pickle.dumps(examples[NonFiniteLossError]))
    np.testing.assert_array_equal(back.image, examples[NonFiniteLossError].image)  # its data


def test_two_runs_in_two_threads_keep_their_threads_and_their_results(monkeypatch):
    """Two style transfers at once in one process, one with 2 CPU threads, one with 1: each
    computes with its own BLAS and Numba thread counts throughout (minist.threads.blas_scope),
    and each gives bit for bit what it gives alone."""
    import numba
    from trajectory import CHANNELS, _images

    import minist.vgg
    from minist.bench import synthetic_weights
    from minist.execution import ExecutionConfig
    from minist.threads import blas_threads
    from minist.vgg import VGG

    seen = {}
    real_forward = minist.vgg.vgg_forward

    def recording(*args, config=None, **kwargs):  # what each run's layers run with
        seen.setdefault(config.threads, set()).add((blas_threads(), numba.get_num_threads()))
        return real_forward(*args, config=config, **kwargs)

    monkeypatch.setattr(minist.vgg, "vgg_forward", recording)
    weights = synthetic_weights("vgg19", CHANNELS)
    content, style = _images()

    def make(threads):
        net = VGG(weights, config=ExecutionConfig(threads=threads))
        return StyleTransfer(content, style, network=net, size=60, iters=6, optimizer="lbfgs",
                             tv_weight=0.05)

    alone = {n: make(n).run() for n in (2, 1)}
    seen.clear()
    barrier, results = threading.Barrier(2), {}

    class Together(Observer):
        def on_start(self, run):
            barrier.wait(timeout=60)  # both runs have started before either steps

    def work(n):
        st = make(n)
        results[n] = st.run(observers=[Together()])

    threads = [threading.Thread(target=work, args=(n,)) for n in (2, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert set(results) == {1, 2}
    for n in (2, 1):
        np.testing.assert_array_equal(results[n], alone[n])
    if blas_threads() is None or numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("the results match; the thread counts were not checked: "
                    + ("NumPy's BLAS cannot be told its threads (neither OpenBLAS nor "
                       "threadpoolctl)" if blas_threads() is None else
                       f"Numba has {numba.config.NUMBA_NUM_THREADS} thread(s), 2 needed"))
    assert seen[2] == {(2, 2)} and seen[1] == {(1, 1)}
