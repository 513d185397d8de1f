"""A live web view of a run: ``minist stylize ... --preview [PORT]``.

While the run goes, a page at ``http://127.0.0.1:PORT/`` shows the current image (updated in
place, without reloading the page), the content, style and total loss curves on a log scale,
the iteration, the scale (coarse-to-fine runs), it/s, the ETA and the settings -- for a class
to watch the image form and the losses fall. :class:`PreviewObserver` is an observer of the run
loop (:mod:`minist.loop`); what it shows is made by :mod:`minist.live`.

**Choices.**

* *Server*: the standard library's :class:`http.server.ThreadingHTTPServer` on a daemon
  thread. The page is one document and three small endpoints for one or a few browsers on a
  local network; a framework would bring dependencies and nothing this needs. Each request
  gets its own thread, so a slow browser holds only its own (with a time-out), never the run
  or another browser.
* *Updates*: the page **polls** ``state.json`` twice a second and fetches the image and the
  curves only when they changed. Server-sent events would push instead, but each open page would
  then hold a thread in a long-lived response that must be woken, written to and torn down at
  shutdown; with polling every response is short, a closed or sleeping tab costs nothing, and
  stopping the server needs no co-operation from any client.
* *Page*: one self-contained HTML document served from a string (:data:`PAGE`), its script
  and styles inline, no CDN: a classroom may have no internet. The curves are an SVG made in
  Python (:func:`minist.live.loss_chart_svg`), the same one the notebook view shows.

**Cost to the run.** ``on_step`` appends one record and, every ``image_interval`` seconds,
keeps a reference to ``run.image_on_cpu()`` (no copy on the CPU; one device-to-host copy on
the GPU). Encoding the PNG and the SVG happens in the server's threads, on request, once per
new image or set of points. The run never waits for a browser. Measured (2026-11-28, shared
2-core Xeon under a load average of about 10; ``minist stylize`` tubingen/starry_night, real
VGG-16, 256 px, L-BFGS, a headless Chromium page open and polling): the server's request
threads took 0.19% of one core over the run (``time.thread_time`` per request, 176 requests in
68 s), ``on_step`` 26-30 us per iteration, Chromium rendering the page 2.4% of one core; three
alternated pairs of 40-iteration runs without/with ``--preview``: 0.162/0.185, 0.154/0.208,
0.123/0.148 it/s (the machine's load, not the preview, decides such differences).

**A clip** (``minist video --preview``, :class:`ClipPreviewObserver`): the same page for the
frame being painted, with the frame and pass in the run's table, the latest finished frame
(``/finished.png``) and the clip so far, a looping GIF of every frame's latest version
(``/clip.gif``, :meth:`minist.live.LiveRun.clip_gif`); the server lives for the whole clip.

**Security.** The server answers ``GET``/``HEAD`` for exactly ``/``, ``/state.json``,
``/image.png``, ``/curves.svg``, ``/finished.png`` and ``/clip.gif`` (any query string is
ignored) and 404 for
every other request target, compared as sent, before any decoding: ``/../x``, ``/%2e%2e/x``,
``//etc/x``, ``http://host/x`` never reach code that knows about files, because there is none
-- nothing here opens a file. It binds to 127.0.0.1 by default; ``--preview-host`` binds
elsewhere with a warning (the page shows the settings, file paths included). Bound to a
loopback address it also refuses requests whose ``Host`` header names another host (404), so
that a web page elsewhere cannot read it through DNS rebinding.

**Ending.** ``on_end`` (any ending: finished, stopped, Ctrl-C, loss not finite, error) lets a
page that is watching fetch the final state -- at most ``linger`` seconds, none after Ctrl-C
-- then shuts the server down and closes its socket, bounded in time.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer

from minist.errors import MinistError
from minist.live import LiveRun, loss_chart_svg
from minist.loop import Observer, Outcome
from minist.problem import temporal_part
from minist.status import RunStatus

DEFAULT_HOST = "127.0.0.1"
POLL_MS = 500  # how often the page asks for the state
REQUEST_TIMEOUT_S = 10  # a client that sends nothing for this long loses its connection
WATCHED_S = 5.0  # a page that asked this recently is watching: the end lingers for it
QUIET_S = 0.3  # once told the run ended, a page silent this long has what it needs


class PreviewServer(ThreadingHTTPServer):
    """HTTP server for one :class:`~minist.live.LiveRun` (module docstring: endpoints)."""

    daemon_threads = True  # a request still being written never holds up the process's exit
    allow_reuse_address = True  # a port freed by an earlier run can be bound again at once

    clock = staticmethod(time.monotonic)  # seconds; the observer may give its own

    def __init__(self, address, live: LiveRun, loopback: bool):
        self.live, self.loopback = live, loopback
        self.last_request = -float("inf")  # clock() of the latest request
        self.final_served = False  # a client has been told that the run ended
        super().__init__(address, PreviewHandler)

    def server_bind(self):  # HTTPServer's would look the host's name up (DNS): not needed
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):  # a browser gone mid-answer: not news
        pass


class PreviewServer6(PreviewServer):
    address_family = socket.AF_INET6


def _state(live: LiveRun) -> tuple[str, bytes]:
    return "application/json", json.dumps(live.snapshot(), allow_nan=False).encode()


def _image(live: LiveRun) -> tuple[str, bytes] | None:
    data = live.png()
    return None if data is None else ("image/png", data)


def _finished(live: LiveRun) -> tuple[str, bytes] | None:
    data = live.finished_png()
    return None if data is None else ("image/png", data)


def _clip(live: LiveRun) -> tuple[str, bytes] | None:
    data = live.clip_gif()
    return None if data is None else ("image/gif", data)


def _curves(live: LiveRun) -> tuple[str, bytes]:
    return "image/svg+xml", loss_chart_svg(live.points()).encode()


def _page(live: LiveRun) -> tuple[str, bytes]:
    return "text/html; charset=utf-8", PAGE.encode()


ENDPOINTS = {"/": _page, "/state.json": _state, "/image.png": _image, "/curves.svg": _curves,
             "/finished.png": _finished, "/clip.gif": _clip}
LOOPBACK_NAMES = ("localhost",)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self' blob:; connect-src 'self'; "
    "script-src 'unsafe-inline'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
}


def endpoint_of(target: str):
    """The endpoint a request target names, or None: the path before ``?`` compared as sent
    (no percent-decoding, no normalisation), and only origin-form targets (``/...``)."""
    if not target.startswith("/") or target.startswith("//"):
        return None
    return ENDPOINTS.get(target.split("?", 1)[0])


def _host_is_loopback(host_header: str | None) -> bool:
    if host_header is None:
        return True  # not a browser: DNS rebinding needs one
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PreviewHandler(BaseHTTPRequestHandler):
    server: PreviewServer
    server_version = "minist-preview"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self):  # noqa: N802 - the name http.server calls
        self._answer(body=True)

    def do_HEAD(self):  # noqa: N802
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        server = self.server
        server.last_request = server.clock()
        endpoint = endpoint_of(self.path)
        if server.loopback and not _host_is_loopback(self.headers.get("Host")):
            endpoint = None
        answer = endpoint(server.live) if endpoint is not None else None
        if answer is None:
            return self._send(404, "text/plain; charset=utf-8", b"not found\n", body)
        if endpoint is _state and server.live.final:
            server.final_served = True
        self._send(200, *answer, body)

    def _send(self, code: int, content_type: str, data: bytes, body: bool) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self.wfile.write(data)
        except OSError:  # the browser went away: nothing to do
            self.close_connection = True

    def log_message(self, format, *args):  # noqa: A002 - keep stderr for the progress bar
        pass


def open_server(host: str, port: int, live: LiveRun) -> PreviewServer:
    """Bind (not yet serve) a :class:`PreviewServer` for ``live`` at ``host:port`` (port 0: a
    free one). One-line :class:`MinistError` when that is not possible."""
    if not 0 <= port <= 65535:
        raise MinistError(f"--preview: port must be in 0..65535, got {port}")
    try:
        family, *_, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (OSError, UnicodeError) as e:
        raise MinistError(f"--preview-host {host}: not an address of this machine ({e})") from None
    cls = PreviewServer6 if family == socket.AF_INET6 else PreviewServer
    loopback = ipaddress.ip_address(address[0].split("%", 1)[0]).is_loopback
    try:
        return cls(address[:2], live, loopback)
    except OSError as e:
        reason = e.strerror or str(e)
        raise MinistError(f"--preview {port}: cannot listen on {host} port {port} ({reason})"
                          ) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback interface only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PreviewObserver(Observer):
    """Serve the live page of the run it observes (module docstring).

    The port is bound when the observer is made (so a port in use is an error before any work;
    ``port=0`` picks a free one: :attr:`url` says which), served from :meth:`on_start`, shut
    down in :meth:`on_end`, or by :meth:`close` for a run that never started. ``total``: steps
    the run is asked for (for the ETA; default the run's ``options.iters``); ``image_interval``:
    seconds between two looks at the image; ``linger``: at most this long after the run ends, a
    page being watched gets the final state (never after Ctrl-C); ``clock``: seconds, monotonic,
    that ``linger`` and the time since a page last asked are measured on.
    """

    def __init__(self, port: int = 0, host: str = DEFAULT_HOST, *, total: int | None = None,
                 image_interval: float = 0.5, linger: float = 1.5, clock=time.monotonic):
        self.live = LiveRun(total, image_interval)
        self.server = open_server(host, port, self.live)
        self.server.clock = self.clock = clock
        self.host, self.port = host, self.server.server_address[1]
        self.linger = linger
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Serve, on a daemon thread (idempotent)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self.server.serve_forever,
                                            kwargs={"poll_interval": 0.1},
                                            name=f"minist-preview:{self.port}", daemon=True)
            self._thread.start()

    def on_start(self, run) -> None:
        self.live.start(run)
        self.start()

    def on_step(self, record, run) -> None:
        self.live.step(record, run)  # never stops the run

    def on_end(self, run, outcome: Outcome) -> None:
        self.live.end(run, outcome)
        self.close(linger=0.0 if outcome.status == RunStatus.INTERRUPTED else self.linger)

    def close(self, linger: float = 0.0) -> None:
        """Stop serving and free the port, within about ``linger`` + 1 s (idempotent)."""
        if self._closed:
            return
        self._closed = True
        server = self.server
        try:
            clock = self.clock
            watched = clock() - server.last_request < WATCHED_S
            deadline = clock() + (linger if watched and self._thread else 0.0)
            while clock() < deadline:  # until the page has had the final state
                if server.final_served and clock() - server.last_request > QUIET_S:
                    break
                time.sleep(0.05)
        finally:
            if self._thread is not None:
                server.shutdown()  # returns within serve_forever's poll interval
                self._thread.join(timeout=1.0)
            server.server_close()


class ClipPreviewObserver(PreviewObserver):
    """The live page of a clip (``minist video --preview``): each frame's run is observed as a
    run of its own (its curves start afresh), the server stays up between frames, and
    :meth:`frame_finished` shows the latest finished frame; :meth:`clip_ended` ends the page
    once the clip is done. A frame's run that does not finish (Ctrl-C, an error) ends it too.
    """

    _last_frame: tuple = (None, Outcome(RunStatus.FINISHED, 0, None))

    def on_step(self, record, run) -> None:
        """The step's losses, with the frame's temporal loss (its evaluation's ``parts``)."""
        self.live.step(record, run, temporal=temporal_part(run.state.evaluation))

    def clip_started(self, settings: dict) -> None:
        """The clip's settings (:meth:`minist.live.LiveRun.set_clip_settings`)."""
        self.live.set_clip_settings(settings)

    def on_end(self, run, outcome: Outcome) -> None:
        if outcome.status != RunStatus.FINISHED:
            super().on_end(run, outcome)
        else:
            self._last_frame = (run, outcome)  # the clip goes on: the page too

    def frame_started(self, **where: int) -> None:
        """Where the clip stands (:meth:`minist.live.LiveRun.set_clip`)."""
        self.live.set_clip(**where)

    def frame_finished(self, image, done: int) -> None:
        self.live.finish_frame(image, done)

    def clip_ended(self) -> None:
        """The clip is done: the page is told (its final state), then the server stops."""
        self.live.end(*self._last_frame)
        self.close(linger=self.linger)


def warn_if_exposed(host: str, file=None) -> None:
    """One line on stderr when the preview will be reachable from other machines."""
    if not is_loopback(host):
        print(f"minist: warning: --preview-host {host}: the preview (image, losses, settings "
              "with file paths) can be seen by anyone who can reach this machine",
              file=file or sys.stderr)


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>minist &middot; live preview</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 16px 20px; color: #222;
         background: #f6f6f4; }
  h1 { font-size: 18px; margin: 0 0 12px; }
  #status { display: inline-block; padding: 1px 8px; border-radius: 9px; background: #ddd;
            font-size: 13px; margin-left: 8px; vertical-align: 2px; }
  #status.running { background: #cdeccd; } #status.ended { background: #dde6f5; }
  #status.lost { background: #f5d6d6; }
  main { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start; }
  .panel { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px; }
  #clip { display: block; width: 320px; max-width: 90vw; background: #eee; }
  #image, #finished { display: block; width: 512px; max-width: 90vw; image-rendering: auto;
           background: #eee; min-height: 64px; }
  table { border-collapse: collapse; } td { padding: 1px 10px 1px 0; vertical-align: top; }
  td:first-child { color: #666; white-space: nowrap; }
  #stats td:last-child { font-variant-numeric: tabular-nums; }
  #settings { font-size: 12px; } #settings td:last-child { word-break: break-all; }
  h2 { font-size: 14px; margin: 0 0 6px; }
</style>
</head>
<body>
<h1>minist &middot; live preview <span id="status">connecting&hellip;</span></h1>
<main>
  <div class="panel"><img id="image" alt="the current image"></div>
  <div class="panel" id="finished-panel" hidden><h2>Latest finished frame</h2>
    <img id="finished" alt="the latest finished frame">
    <h2>The clip so far</h2><img id="clip" alt="the frames finished so far, looping"></div>
  <div>
    <div class="panel" id="chart"></div>
    <div style="display: flex; gap: 20px; margin-top: 20px; flex-wrap: wrap">
      <div class="panel"><h2>Run</h2><table id="stats"></table></div>
      <div class="panel"><h2>Settings</h2><table id="settings"></table></div>
    </div>
  </div>
</main>
<script>
"use strict";
const POLL_MS = __POLL_MS__;
let shownImage = -1, shownPoints = -1, imageUrl = null, shownSettings = null, shownFinished = 0;

const DASH = "\\u2013";
function num(x, digits) { return x === null || x === undefined ? DASH : x.toPrecision(digits); }
function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return DASH;
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  return (h ? h + " h " : "") + (h || m ? m + " min " : "") + sec + " s";
}
function fillTable(table, rows) {
  table.replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    for (const text of [k, v]) {
      const td = document.createElement("td"); td.textContent = text; tr.appendChild(td);
    }
    return tr;
  }));
}
function setStatus(text, kind) {
  const el = document.getElementById("status"); el.textContent = text; el.className = kind;
}
async function loadImage(version) {
  const response = await fetch("image.png?v=" + version, {cache: "no-store"});
  if (!response.ok) return;
  const url = URL.createObjectURL(await response.blob());
  const img = document.getElementById("image");
  await new Promise((done) => { img.onload = done; img.onerror = done; img.src = url; });
  img.dataset.version = version;
  if (imageUrl) URL.revokeObjectURL(imageUrl);
  imageUrl = url;
}
async function loadChart() {
  const response = await fetch("curves.svg", {cache: "no-store"});
  if (response.ok) document.getElementById("chart").innerHTML = await response.text();
}
function show(s) {
  const l = s.losses || {};
  const rows = [];
  if (s.clip) {
    rows.push(["frame", s.clip.frame + " / " + s.clip.frames]);
    if (s.clip.passes > 1) rows.push(["pass", s.clip.pass + " / " + s.clip.passes]);
    rows.push(["frames done", s.clip.done + " / " + s.clip.frames * s.clip.passes]);
  }
  rows.push(["iteration", s.total !== null ? s.step + " / " + s.total : String(s.step)]);
  if (s.iter !== null && s.iter !== s.step - 1) rows.push(["at this scale", String(s.iter)]);
  if (s.scale !== null) rows.push(["scale", s.scale + " px"]);
  rows.push(["it/s", num(s.it_per_s, 3)], ["ETA", s.final ? DASH : duration(s.eta_s)],
            ["elapsed", duration(s.elapsed_s)], ["content loss", num(l.content, 4)],
            ["style loss", num(l.style, 4)], ["tv loss", num(l.tv, 4)]);
  if (s.clip) rows.push(["temporal loss", num(l.temporal, 4)]);
  rows.push(["total loss", num(l.total, 5)]);
  fillTable(document.getElementById("stats"), rows);
  const settings = JSON.stringify(s.settings);
  if (settings !== shownSettings) {
    fillTable(document.getElementById("settings"), Object.entries(s.settings).map(
      ([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
    shownSettings = settings;
  }
  setStatus(s.status, s.final ? "ended" : "running");
}
async function poll() {
  let s;
  try {
    const response = await fetch("state.json", {cache: "no-store"});
    s = await response.json();
  } catch (e) {
    setStatus(shownPoints >= 0 ? "connection lost (the run has ended?)" : "no connection", "lost");
    setTimeout(poll, 4 * POLL_MS);
    return;
  }
  show(s);
  try {
    if (s.image_version !== shownImage) {
      await loadImage(s.image_version);
      shownImage = s.image_version;
    }
    if (s.points !== shownPoints) { await loadChart(); shownPoints = s.points; }
    if (s.clip && s.clip.finished !== shownFinished) {
      const shown = await Promise.all([["finished", "finished.png"], ["clip", "clip.gif"]].map(
        async ([id, path]) => {
          const response = await fetch(path + "?v=" + s.clip.finished, {cache: "no-store"});
          if (!response.ok) return false;
          const img = document.getElementById(id);
          const old = img.src;
          img.src = URL.createObjectURL(await response.blob());
          if (old) URL.revokeObjectURL(old);
          return true;
        }));
      if (shown.every(Boolean)) {
        document.getElementById("finished-panel").hidden = false;
        shownFinished = s.clip.finished;
      }
    }
  } catch (e) { /* the server went away between two requests: the next poll says so */ }
  if (!s.final) setTimeout(poll, POLL_MS);
}
poll();
</script>
</body>
</html>
""".replace("__POLL_MS__", str(POLL_MS))
