"""The live preview (minist.preview): its endpoints and nothing else, no file ever read, bound to
127.0.0.1 by default, never holding up the run, stopped with it; ``minist stylize --preview``."""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from minist import preview as preview_module
from minist.cli import main
from minist.images import read_png_metadata, save_image
from minist.loop import Observer
from minist.preview import PreviewObserver, endpoint_of, is_loopback, warn_if_exposed
from minist.stylize import StyleTransfer

LAYERS = dict(content_layers=["relu3_1"], style_layers=["relu1_1", "relu2_1", "relu3_1"])


def _transfer(tiny_vgg_files, **options):
    rng = np.random.default_rng(0)
    content = rng.uniform(size=(1, 3, 24, 32)).astype(np.float32)
    style = rng.uniform(size=(1, 3, 20, 20)).astype(np.float32)
    options = {"weights": tiny_vgg_files["vgg19", "torchvision"], "size": 32, "optimizer": "adam",
               **LAYERS, **options}
    return StyleTransfer(content, style, **options)


def raw_request(port: int, target: str, method: str = "GET", host: str | None = "127.0.0.1",
                timeout: float = 5.0) -> tuple[int, bytes]:
    """Send a request target exactly as given (no client normalises ``/../`` away); return the
    status code and the body."""
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}:{port}")
    request = ("\r\n".join(lines + ["Connection: close", "", ""])).encode("latin-1")
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    response = b"".join(chunks)
    status = int(response.split(b" ", 2)[1])
    return status, response.split(b"\r\n\r\n", 1)[1]


class Gate(Observer):
    """Holds the run at a step until the test lets it go on (so the test sees a live run)."""

    def __init__(self, at: int):
        self.at, self.reached, self.go = at, threading.Event(), threading.Event()

    def on_step(self, record, run):
        if record.iter == self.at:
            self.reached.set()
            assert self.go.wait(30), "the test never let the run go on"


@pytest.fixture()
def live_preview(tiny_vgg_files):
    """A run held at step 3 with a :class:`PreviewObserver` serving it; yields the observer."""
    st = _transfer(tiny_vgg_files)
    observer = PreviewObserver(image_interval=0.0, linger=0.0)
    gate = Gate(at=3)
    runner = threading.Thread(target=st.run, kwargs=dict(iters=6, observers=[observer, gate]))
    runner.start()
    assert gate.reached.wait(60)
    yield observer
    gate.go.set()
    runner.join(30)
    assert not runner.is_alive()


# --- what is served, and what is not --------------------------------------------------------
def test_endpoints_are_matched_exactly_as_sent():
    for target in ("/", "/state.json", "/image.png", "/image.png?v=3", "/curves.svg?x=/../y"):
        assert endpoint_of(target) is not None, target
    for target in ("", "*", "/index.html", "/state.json/", "/./state.json", "/image.png/../x",
                   "//image.png", "/%2e%2e/", "http://127.0.0.1/", "/STATE.JSON", "state.json"):
        assert endpoint_of(target) is None, target


def test_each_endpoint_answers_while_the_run_goes(live_preview):
    url = live_preview.url
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url) as r:
        page = r.read().decode()
        assert r.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert "state.json" in page and "<script>" in page and "http" not in page.split("<body>")[1]
    with urllib.request.urlopen(url + "state.json") as r:
        state = json.load(r)
    assert state["status"] == "running" and state["step"] == 4 and state["iter"] == 3
    assert state["settings"]["size"] == 32 and state["total"] == 300
    with urllib.request.urlopen(url + "image.png?v=1") as r:
        png = r.read()
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size == (32, 24)
    with urllib.request.urlopen(url + "curves.svg") as r:
        svg = r.read().decode()
    totals = re.search(r'data-series="total"[^>]* points="([^"]*)"', svg).group(1).split()
    assert len(totals) == 4


TRAVERSALS = [
    "/../../../../etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd", "/%2e%2e/%2e%2e/etc/passwd",
    "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/%252e%252e/etc/passwd", "/..\\..\\etc\\passwd",
    "//etc/passwd", "/etc/passwd", "/secret.txt", "/./secret.txt", "/image.png/../secret.txt",
    "/state.json/../../secret.txt", "/%2fetc%2fpasswd", "http://127.0.0.1/secret.txt",
    "/curves.svg/..%2fsecret.txt", "/.%2e/secret.txt", "/secret.txt%00.png",
]


def test_paths_outside_the_endpoints_get_404_and_read_no_file(live_preview, tmp_path,
                                                              monkeypatch):
    secret = "minist-secret-" + os.urandom(8).hex()
    (tmp_path / "secret.txt").write_text(secret)
    monkeypatch.chdir(tmp_path)  # a server that served files from its cwd would find it here
    port = live_preview.port
    assert raw_request(port, "/nothing")[0] == 404  # warm up: whatever a first request loads
    opened = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, *args, **kwargs):
        opened.append(file)
        return real_open(file, *args, **kwargs)

    def spy_os_open(path, *args, **kwargs):
        opened.append(path)
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    for target in TRAVERSALS:
        status, body = raw_request(port, target)
        assert status == 404, target
        assert secret.encode() not in body and b"root:" not in body, target
    monkeypatch.undo()
    assert opened == []
    assert raw_request(port, "/", method="POST")[0] == 501  # only GET and HEAD


def test_host_header_must_name_this_machine_when_bound_to_loopback(live_preview):
    port = live_preview.port
    assert raw_request(port, "/state.json", host="127.0.0.1")[0] == 200
    assert raw_request(port, "/state.json", host="localhost")[0] == 200
    assert raw_request(port, "/state.json", host="attacker.example")[0] == 404  # DNS rebinding
    assert raw_request(port, "/state.json", host=None)[0] == 200  # not a browser


def test_the_default_bind_is_127_0_0_1_only():
    observer = PreviewObserver()
    try:
        assert observer.server.server_address[0] == "127.0.0.1"
        assert observer.server.socket.getsockname()[0] == "127.0.0.1"
        assert observer.host == "127.0.0.1" and observer.port > 0
    finally:
        observer.close()
    assert preview_module.DEFAULT_HOST == "127.0.0.1"


def test_binding_elsewhere_warns_in_one_line(capsys):
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        warn_if_exposed(host)
    assert capsys.readouterr().err == ""
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        assert not is_loopback(host)
        warn_if_exposed(host)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("minist: warning: --preview-host " + host)


# --- never in the run's way, and gone with it ------------------------------------------------
def _run_in_a_thread(st, hang_s: float = 120.0, **kwargs):
    """``st.run(**kwargs)`` on a thread, joined; a run still going after ``hang_s`` fails the
    test (a guard against a hang, not a measure of speed)."""
    errors = []

    def work():
        try:
            st.run(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    runner = threading.Thread(target=work, daemon=True)
    runner.start()
    runner.join(hang_s)
    assert not runner.is_alive(), f"the run did not end within {hang_s:g} s: it was held up"
    assert not errors, errors


def test_silent_and_slow_clients_do_not_hold_up_the_run_or_its_end(tiny_vgg_files,
                                                                   monkeypatch):
    """Clients that never finish a request, or never read the answer, and that no timeout
    ever drops: the run still ends and frees its port, while their connections are still
    waiting -- the run never waited for them."""
    monkeypatch.setattr(preview_module.PreviewHandler, "timeout", None)  # they wait forever
    st = _transfer(tiny_vgg_files)
    observer = PreviewObserver(image_interval=0.0)
    observer.start()
    stalled = []
    for _ in range(3):  # connected, half a request, then silence
        sock = socket.create_connection(("127.0.0.1", observer.port))
        sock.sendall(b"GET /state.json HTTP/1.1\r\nHost: 127")
        stalled.append(sock)
    reader = socket.create_connection(("127.0.0.1", observer.port))  # asks, never reads
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    reader.sendall(b"GET /image.png HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 50)
    try:
        _run_in_a_thread(st, iters=5, observers=[observer])
        assert st.outcome.status == "finished"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", observer.port), timeout=2).close()
        for sock in stalled:  # still open, still unanswered: their handlers are waiting
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
    finally:
        for sock in [*stalled, reader]:
            sock.close()


def test_images_are_encoded_by_the_server_not_by_the_run(tiny_vgg_files, monkeypatch):
    encoders = []
    real = preview_module.LiveRun.png

    def spy(self):
        encoders.append(threading.current_thread())
        return real(self)

    monkeypatch.setattr(preview_module.LiveRun, "png", spy)
    st = _transfer(tiny_vgg_files)
    observer = PreviewObserver(image_interval=0.0, linger=0.0)

    class Fetch(Observer):
        def on_step(self, record, run):
            with urllib.request.urlopen(observer.url + "image.png") as r:
                assert r.status == 200

    st.run(iters=3, observers=[observer, Fetch()])
    assert len(encoders) == 3 and threading.current_thread() not in encoders


def test_a_watching_page_gets_the_final_state_before_the_server_stops(tiny_vgg_files):
    """With an hour to linger, the run still ends as soon as the watching page has had the
    final state (it stops polling then): a run that waited out the linger would hang."""
    st = _transfer(tiny_vgg_files)
    observer = PreviewObserver(image_interval=0.0, linger=3600.0)
    seen, opened = [], threading.Event()

    def watch():  # polls like the page does
        while True:
            try:
                with urllib.request.urlopen(observer.url + "state.json", timeout=2) as r:
                    state = json.load(r)
            except OSError:
                time.sleep(0.05)
                continue
            seen.append(state)
            opened.set()
            if state["final"]:
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    observer.start()
    watcher.start()
    assert opened.wait(60)  # the page is open before the run starts
    _run_in_a_thread(st, iters=4, observers=[observer])
    watcher.join(60)
    assert not watcher.is_alive()
    assert seen[0]["status"] == "waiting for the run to start" and not seen[0]["final"]
    assert seen[-1]["final"] and seen[-1]["status"] == "finished" and seen[-1]["step"] == 4


class StepClock:
    """A clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float = 1.0):
        self.now, self.step = 1000.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_the_end_lingers_at_most_linger_for_a_page_that_never_gets_the_final_state():
    clock = StepClock()
    observer = PreviewObserver(clock=clock)
    observer.start()
    observer.server.last_request = clock.now  # a page asked a moment ago, and is not told
    start = clock.now
    observer.close(linger=10.0)
    assert start + 10.0 <= clock.now <= start + 10.0 + 3 * clock.step  # the linger, by the clock
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", observer.port), timeout=2).close()


def test_the_end_does_not_linger_for_a_page_told_or_for_none():
    for told, last_asked in ((True, 0.0), (False, -60.0)):  # told the end; gone a minute ago
        clock = StepClock()
        observer = PreviewObserver(clock=clock)
        observer.start()
        observer.server.final_served = told
        observer.server.last_request = clock.now + last_asked
        start = clock.now
        observer.close(linger=3600.0)
        assert clock.now - start < 10 * clock.step, (told, last_asked)  # a few reads, no hour


@pytest.mark.parametrize("words", ["finished", "stopped by an observer", "interrupted",
                                   "stopped: loss not finite", "failed"])
def test_the_page_is_told_the_run_ended_however_it_ended(words):
    """The page polls ``/state.json`` until it says ``final``: true for every way the loop
    ends a run, with the ending's words."""
    from minist.loop import Outcome
    from minist.status import RunStatus

    class Run:
        image = np.zeros((1, 3, 4, 4), np.float32)

        def image_on_cpu(self):
            return self.image

    observer, run = PreviewObserver(), Run()
    try:
        observer.on_start(run)
        with urllib.request.urlopen(observer.url + "state.json", timeout=10) as r:
            state = json.load(r)
        assert state["status"] == "running" and state["final"] is False
        observer.live.end(run, Outcome(RunStatus(words), 0, run.image))  # the server stays
        with urllib.request.urlopen(observer.url + "state.json", timeout=10) as r:
            state = json.load(r)
        assert state["status"] == words and state["final"] is True
        assert observer.server.final_served
    finally:
        observer.close()


def test_close_without_a_run_frees_the_port():
    observer = PreviewObserver()
    observer.start()
    with urllib.request.urlopen(observer.url + "state.json") as r:
        assert json.load(r)["status"] == "waiting for the run to start"
    closer = threading.Thread(target=lambda: (observer.close(), observer.close()), daemon=True)
    closer.start()
    closer.join(60)
    assert not closer.is_alive(), "close() hung"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", observer.port), timeout=2).close()


# --- the command line ------------------------------------------------------------------------
FAST = ["--size", "32", "--iters", "4", "--quiet", "--optimizer", "adam",
        "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1"]


@pytest.fixture()
def photos(tmp_path, tiny_vgg_files):
    rng = np.random.default_rng(0)
    content, style = tmp_path / "content.png", tmp_path / "style.png"
    save_image(content, rng.uniform(size=(1, 3, 30, 40)).astype(np.float32))
    save_image(style, rng.uniform(size=(1, 3, 40, 40)).astype(np.float32))
    return [str(content), str(style), "--weights", str(tiny_vgg_files["vgg19", "caffe"])]


def _url(err: str) -> str:
    urls = re.findall(r"^minist: live preview at (http://\S+)$", err, re.MULTILINE)
    assert len(urls) == 1, err
    return urls[0]


def test_stylize_preview_prints_the_url_serves_and_stops(photos, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(["stylize", *photos, "-o", str(out), *FAST, "--preview"])
    err = capsys.readouterr().err
    assert code == 0, err
    url = _url(err)  # printed with --quiet too
    assert url.startswith("http://127.0.0.1:") and "warning" not in err
    assert out.is_file()
    port = int(url.rsplit(":", 1)[1].strip("/"))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_stylize_preview_on_a_port_in_use_is_one_line(photos, tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["stylize", *photos, "-o", str(tmp_path / "out.png"), *FAST, "--preview",
                     str(port)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and f"--preview {port}" in lines[0], err
    assert not (tmp_path / "out.png").exists()


def test_stylize_preview_host_elsewhere_warns(photos, tmp_path, capsys, monkeypatch):
    real = preview_module.open_server
    bound = []

    def loopback_only(host, port, live):  # the test listens on loopback only, whatever asked
        bound.append(host)
        return real("127.0.0.1", port, live)

    monkeypatch.setattr(preview_module, "open_server", loopback_only)
    code = main(["stylize", *photos, "-o", str(tmp_path / "out.png"), *FAST, "--preview",
                 "--preview-host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 0 and bound == ["0.0.0.0"], err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "--preview-host 0.0.0.0" in warnings[0]


def test_stylize_preview_host_needs_preview(photos, tmp_path, capsys):
    code = main(["stylize", *photos, "-o", str(tmp_path / "out.png"), *FAST,
                 "--preview-host", "127.0.0.1"])
    assert code == 2 and "--preview-host" in capsys.readouterr().err


def test_ctrl_c_with_preview_saves_exits_130_and_stops_the_server(photos, tmp_path, capsys,
                                                                  monkeypatch):
    real_step = StyleTransfer.step

    def step(self):
        if self.iteration == 2:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(StyleTransfer, "step", step)
    lingers = []
    real_close = PreviewObserver.close

    def close(self, linger=0.0):
        lingers.append(linger)
        return real_close(self, linger)

    monkeypatch.setattr(PreviewObserver, "close", close)
    out = tmp_path / "out.png"
    code = main(["stylize", *photos, "-o", str(out), *FAST, "--preview"])
    err = capsys.readouterr().err
    assert code == 130, err
    assert lingers[0] == 0.0  # Ctrl-C: the server stops at once, no page waited for
    assert read_png_metadata(out)["minist:status"] == "interrupted after 2 iterations"
    port = int(_url(err).rsplit(":", 1)[1].strip("/"))
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
