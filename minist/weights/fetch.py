"""Download official VGG weights, check them against their published checksum, convert them.

Sources (``SOURCES``):

* Keras applications (default): the original Oxford VGG weights that Gatys et al. used, without
  the classifier ("notop", 58 MB for VGG-16, 80 MB for VGG-19). Keras publishes an MD5 for each
  file (``file_hash`` in ``keras/src/applications/vgg16.py`` and ``vgg19.py``).
* torchvision: PyTorch's own retraining of VGG (528/548 MB, classifier included). As in
  ``torch.hub``'s ``check_hash``, the file name ``vgg19-dcbb9e9d.pth`` carries the first hex
  digits of the file's SHA-256.

The download streams into a temporary ``.part`` file beside its destination and is renamed into
place only once complete and verified; any failure (Ctrl-C included) removes it. The verified
file is converted into minist's layout (``weights/<arch>.h5`` by default) and then deleted unless
``keep_download`` is set.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from minist.architectures import ARCHITECTURES
from minist.errors import MinistError
from minist.weights.atomic import atomic_path, check_writable
from minist.weights.convert import convert_weights

CHUNK_BYTES = 1 << 20
TIMEOUT_S = 30.0
KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"
TORCHVISION_BASE = "https://download.pytorch.org/models/"


class Download(NamedTuple):
    """One official weight file: where it is, how to check it, which converter reads it."""

    url: str
    algorithm: str  # "md5" or "sha256"
    digest: str  # published hex digest, or its first digits (torch.hub's file-name convention)
    fmt: str  # "keras" or "torchvision"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


def hub_hash_prefix(filename: str) -> str:
    """The SHA-256 prefix torch.hub reads from a file name: ``vgg19-dcbb9e9d.pth`` -> dcbb9e9d."""
    match = re.search(r"-([a-f0-9]+)\.", filename)
    if match is None:
        raise ValueError(f"{filename}: no '-<sha256 prefix>.' in the file name")
    return match.group(1)


def _keras(arch: str, md5: str) -> Download:
    url = f"{KERAS_BASE}{arch}/{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return Download(url, "md5", md5, "keras")


def _torchvision(filename: str) -> Download:
    return Download(TORCHVISION_BASE + filename, "sha256", hub_hash_prefix(filename), "torchvision")


SOURCES = {
    ("vgg19", "keras"): _keras("vgg19", "253f8cb515780f3b799900260a226db6"),
    ("vgg16", "keras"): _keras("vgg16", "6d6bbae143d832006294945121d1f1fc"),
    ("vgg19", "torchvision"): _torchvision("vgg19-dcbb9e9d.pth"),
    ("vgg16", "torchvision"): _torchvision("vgg16-397923af.pth"),
}
SOURCE_NAMES = ("keras", "torchvision")


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    hasher = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(CHUNK_BYTES):
            hasher.update(block)
    return hasher.hexdigest()


def _check_digest(actual: str, download: Download, where: str) -> None:
    if not actual.startswith(download.digest):
        raise MinistError(
            f"{where}: {download.algorithm} checksum mismatch (got {actual}, published "
            f"{download.digest}); the download was removed, try again"
        )


def _reason(exc: BaseException) -> str:
    """A short one-line cause: ``HTTP 404 Not Found``, ``[Errno 111] Connection refused`` ..."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", None) or exc
    return " ".join(str(reason).split()) or type(exc).__name__


def download_file(download: Download, dest: Path, hint: str, progress: bool | None = None) -> Path:
    """Stream ``download.url`` to ``dest`` with a progress bar; verify it; never leave a part.

    ``hint`` is the command to suggest when the network cannot be reached. ``progress``: show
    the bar (True), hide it (False), or show it only when stderr is a terminal (None).
    """
    hasher = hashlib.new(download.algorithm, usedforsecurity=False)
    with atomic_path(dest) as tmp:
        received, total = 0, None
        try:
            with urllib.request.urlopen(download.url, timeout=TIMEOUT_S) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length else None
                bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                           desc=dest.name, disable=None if progress is None else not progress)
                with bar, open(tmp, "wb") as f:
                    while chunk := response.read(CHUNK_BYTES):
                        f.write(chunk)
                        hasher.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = _reason(exc)
            raise MinistError(f"download of {download.url} failed ({reason}); {hint}") from None
        if total is not None and received != total:
            raise MinistError(
                f"download of {download.url} failed (got {received:,} of {total:,} bytes); {hint}"
            )
        _check_digest(hasher.hexdigest(), download, download.url)
    return dest


def fetch_weights(
    arch: str,
    source: str = "keras",
    dest_dir: str | os.PathLike = "weights",
    out: str | os.PathLike | None = None,
    keep_download: bool = False,
    progress: bool | None = None,
) -> Path:
    """Download ``arch``'s official weights from ``source``, verify, convert to ``out``.

    ``out`` defaults to ``<dest_dir>/<arch>.h5``; the raw file is downloaded into ``dest_dir``
    and deleted after conversion unless ``keep_download``. A raw file already there (kept from
    an earlier run, or downloaded by hand) that passes the checksum is used, and left in place.
    """
    if arch not in ARCHITECTURES:
        choices = ", ".join(ARCHITECTURES)
        raise MinistError(f"fetch: unknown architecture {arch!r}; choose one of {choices}")
    if source not in SOURCE_NAMES:
        choices = ", ".join(SOURCE_NAMES)
        raise MinistError(f"--source: unknown source {source!r}; choose one of {choices}")
    download = SOURCES[arch, source]
    dest_dir = Path(dest_dir)
    if out is None and not dest_dir.exists():  # only the default place is created
        try:
            dest_dir.mkdir(parents=True)
        except OSError as exc:
            raise MinistError(f"{dest_dir}: cannot create the folder ({_reason(exc)})") from None
    out = Path(out) if out is not None else dest_dir / f"{arch}.h5"
    check_writable(out)
    raw = check_writable(dest_dir / download.filename)
    if raw.resolve() == out.resolve():
        raise MinistError(f"{out}: is where the {download.fmt} download goes; choose another -o")
    hint = (
        f"download {download.url} by other means and run: "
        f"minist weights convert FILE -o {out}"
    )
    cached = raw.is_file() and file_digest(raw, download.algorithm).startswith(download.digest)
    if not cached:
        download_file(download, raw, hint, progress)
    try:
        convert_weights(raw, out, fmt=download.fmt, arch=arch, origin=download.url)
    finally:
        if not keep_download and not cached:
            raw.unlink(missing_ok=True)
    return out
