"""``minist weights fetch`` against a local HTTP server: never the network.

A tiny server on 127.0.0.1 (in a thread) serves synthetic weight files; the table of official
sources is pointed at it. Checked: a good download is verified and converted, a corrupted one is
refused, an unreachable or truncated one gives one line, and nothing is ever left half-written.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest
from test_convert_cli import _mostly_zero_params, assert_one_line_error, torchvision_state_dict
from test_from_keras import random_keras_values, write_keras_file
from torch_files import write_zip_checkpoint

from minist.cli import main
from minist.errors import MinistError
from minist.preprocessing import CAFFE, TORCHVISION
from minist.weights import fetch
from minist.weights.fetch import Download, download_file, fetch_weights, hub_hash_prefix
from minist.weights.store import load_weights


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the name http.server calls)
        body, sent = self.server.files.get(self.path, (None, None))
        self.server.requests.append(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))  # the full length, even if truncated
        self.end_headers()
        self.wfile.write(body[:sent])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local server: ``server.publish(name, body, sent=None) -> url``; ``server.requests``."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests = {}, []
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def publish(name, body, sent=None):
        httpd.files[f"/{name}"] = (body, len(body) if sent is None else sent)
        return f"{base}/{name}"

    httpd.publish, httpd.base = publish, base
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def keras_body(tmp_path_factory):
    """The bytes of a synthetic Keras VGG-16 file, and its random layers."""
    values = random_keras_values("vgg16", seed=11, layers=("conv1_1", "conv1_2"))
    path = write_keras_file(tmp_path_factory.mktemp("src") / "k.h5", "vgg16", values=values)
    return path.read_bytes(), values


def closed_port_url(name="x.h5"):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{name}"  # nothing listens there any more


def use_source(monkeypatch, arch, source, download):
    monkeypatch.setitem(fetch.SOURCES, (arch, source), download)


def md5(data):
    return hashlib.md5(data).hexdigest()


def files_in(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_good_download_is_verified_converted_and_removed(tmp_path, server, monkeypatch, keras_body):
    body, values = keras_body
    name = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    url = server.publish(name, body)
    use_source(monkeypatch, "vgg16", "keras", Download(url, "md5", md5(body), "keras"))
    dest = tmp_path / "weights"  # does not exist yet: the default folder is created
    out = fetch_weights("vgg16", dest_dir=dest, progress=False)
    assert out == dest / "vgg16.h5"
    assert files_in(dest) == ["vgg16.h5"]  # the raw download is gone, no .part file
    loaded = load_weights(out)
    assert loaded.architecture == "vgg16" and loaded.preprocessing == CAFFE
    assert loaded.source.startswith(f"{url} (sha256 {hashlib.sha256(body).hexdigest()})")
    np.testing.assert_array_equal(loaded.params["conv1_2"][0], values["conv1_2"][0])


def test_cli_keep_download_then_reuse_without_network(tmp_path, server, monkeypatch, keras_body,
                                                       capsys):
    body, _ = keras_body
    url = server.publish("k16.h5", body)
    use_source(monkeypatch, "vgg16", "keras", Download(url, "md5", md5(body), "keras"))
    out = tmp_path / "mine.h5"
    rc = main(["weights", "fetch", "vgg16", "-o", str(out), "--keep-download"])
    printed, _ = capsys.readouterr()
    assert rc == 0 and f"wrote {out}" in printed
    assert files_in(tmp_path) == ["k16.h5", "mine.h5"]
    assert (tmp_path / "k16.h5").read_bytes() == body

    # a verified earlier download is used as it is: no request, even with no server at all
    out.unlink()
    offline = Download(closed_port_url("k16.h5"), "md5", md5(body), "keras")
    use_source(monkeypatch, "vgg16", "keras", offline)
    assert fetch_weights("vgg16", dest_dir=tmp_path, out=out, progress=False) == out
    assert server.requests == ["/k16.h5"]
    assert files_in(tmp_path) == ["k16.h5", "mine.h5"]


def test_corrupted_download_is_refused_and_removed(tmp_path, server, monkeypatch, keras_body):
    body, _ = keras_body
    corrupted = bytearray(body)
    corrupted[len(body) // 2] ^= 0xFF
    url = server.publish("k16.h5", bytes(corrupted))
    use_source(monkeypatch, "vgg16", "keras", Download(url, "md5", md5(body), "keras"))
    with pytest.raises(MinistError) as info:
        fetch_weights("vgg16", dest_dir=tmp_path, progress=False)
    message = str(info.value)
    assert "\n" not in message and "md5 checksum mismatch" in message and url in message
    assert md5(bytes(corrupted)) in message and md5(body) in message
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("where", ["closed port", "404", "truncated"])
def test_failed_download_says_what_to_do_and_leaves_nothing(tmp_path, server, monkeypatch,
                                                            keras_body, capsys, where):
    body, _ = keras_body
    if where == "closed port":
        url = closed_port_url()
    elif where == "404":
        url = f"{server.base}/nothing-here.h5"
    else:
        url = server.publish("k16.h5", body, sent=len(body) // 3)
    use_source(monkeypatch, "vgg19", "keras", Download(url, "md5", md5(body), "keras"))
    out = tmp_path / "vgg19.h5"
    rc = main(["weights", "fetch", "vgg19", "-o", str(out)])
    _, err = capsys.readouterr()
    assert_one_line_error(rc, err, f"download of {url} failed", f"download {url} by other means",
                          f"minist weights convert FILE -o {out}")
    if where == "404":
        assert "HTTP 404" in err
    assert files_in(tmp_path) == []


def test_ctrl_c_during_download_leaves_nothing(tmp_path, server, monkeypatch, keras_body, capsys):
    body, _ = keras_body
    url = server.publish("k16.h5", body)
    use_source(monkeypatch, "vgg16", "keras", Download(url, "md5", md5(body), "keras"))
    seen_during_download = []

    class InterruptingBar:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            seen_during_download.extend(files_in(tmp_path))
            raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "tqdm", InterruptingBar)
    rc = main(["weights", "fetch", "vgg16", "-o", str(tmp_path / "vgg16.h5")])
    assert rc == 130 and "interrupted" in capsys.readouterr().err
    assert any(name.endswith(".part") for name in seen_during_download)  # a part existed ...
    assert files_in(tmp_path) == []  # ... and is gone


def test_torch_hub_hash_prefix_convention(tmp_path, server, monkeypatch):
    params = _mostly_zero_params("vgg16", seed=4)
    src = write_zip_checkpoint(tmp_path / "src.pth", torchvision_state_dict(params, "vgg16"))
    body = src.read_bytes()
    src.unlink()
    prefix = hashlib.sha256(body).hexdigest()[:8]
    name = f"vgg16-{prefix}.pth"
    assert hub_hash_prefix(name) == prefix
    url = server.publish(name, body)
    download = Download(url, "sha256", hub_hash_prefix(name), "torchvision")
    use_source(monkeypatch, "vgg16", "torchvision", download)
    out = fetch_weights("vgg16", "torchvision", dest_dir=tmp_path, progress=False)
    assert files_in(tmp_path) == ["vgg16.h5"]
    loaded = load_weights(out)
    assert loaded.preprocessing == TORCHVISION
    np.testing.assert_array_equal(loaded.params["conv1_1"][0], params["conv1_1"][0])

    wrong = Download(url, "sha256", f"{int(prefix, 16) ^ 1:08x}", "torchvision")
    with pytest.raises(MinistError, match="sha256 checksum mismatch"):
        download_file(wrong, tmp_path / name, hint="", progress=False)
    assert files_in(tmp_path) == ["vgg16.h5"]


def test_official_table_is_complete_and_consistent():
    for arch in ("vgg16", "vgg19"):
        keras = fetch.SOURCES[arch, "keras"]
        assert keras.url.startswith("https://") and keras.filename.startswith(f"{arch}_weights")
        assert keras.algorithm == "md5" and len(keras.digest) == 32
        int(keras.digest, 16)
        torch = fetch.SOURCES[arch, "torchvision"]
        assert torch.url.startswith("https://") and torch.fmt == "torchvision"
        assert torch.filename == f"{arch}-{torch.digest}.pth" and len(torch.digest) == 8


def test_unknown_architecture_or_source_is_one_line():
    with pytest.raises(MinistError, match="unknown architecture 'vgg11'"):
        fetch_weights("vgg11")
    with pytest.raises(MinistError, match="--source: unknown source 'caffe'"):
        fetch_weights("vgg16", source="caffe")
