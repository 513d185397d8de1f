r"""Clips in and out: a video file, a folder of frames or a printf pattern read as a sequence of
frames :math:`I_1, \dots, I_T`, each a float32 ``(1, 3, H, W)`` array, RGB in :math:`[0, 1]` --
the layout of :func:`minist.images.load_image` -- and frames written back as PNG files or a
video.

**Inputs** (:func:`open_clip` inspects; :func:`read_frames` decodes, :func:`iter_frames` one
frame at a time):

* a **video file** (MP4, WebM, MOV, MKV, AVI, GIF, ... -- whatever FFmpeg, through PyAV,
  demuxes). Frames come in presentation order, as the decoder outputs them, whatever the
  stream's timing: a variable-frame-rate clip gives each of its frames once, and its frame rate
  is reported as the stream's **average** rate, from its frames' timestamps (the mean
  interval between the first and the last frame; see :func:`_video_fps`). The **rotation** of
  the
  stream's display matrix (a phone's portrait video is stored sideways with a 90-degree matrix)
  is applied, so frames come upright: :math:`\theta = -\,` FFmpeg's counter-clockwise angle,
  the frame turned :math:`\theta` degrees clockwise, as the ``ffmpeg`` command's autorotate does.
  The frames are converted to RGB by FFmpeg's swscale (``rgb24``), i.e. with the stream's own
  colour matrix (BT.601 unless it says otherwise), then divided by 255.
* a **folder** of image files (the extensions of :mod:`minist.images`), in natural order of
  their names (``2.png`` before ``10.png``), every frame the same size;
* a **printf pattern** such as ``frames/%04d.png`` (one ``%d``, ``%0Nd`` or ``%Nd``): every
  existing file it matches, in numeric order.

``frames=(A, B)`` selects frames :math:`A \dots B`, 1-based and inclusive, of the clip;
``longest_side`` resizes each frame as :func:`minist.images.resize_longest` does. The frame
rate of a folder or pattern is :data:`DEFAULT_FPS` (24).

**Outputs** (:func:`output_kind` checks the name before any work, :func:`write_clip` writes): a
path ending in ``/`` or an existing folder gets ``frame_0001.png``, ``frame_0002.png``, ...
(:func:`frame_path`); otherwise the extension picks the writer -- ``.mp4``: H.264, 4:2:0 chroma,
which needs even dimensions: an odd height or width is **padded by one pixel**, the last row or
column repeated (no pixel of the result is lost; the padding is one pixel at the bottom or right
edge); ``.webm``: VP9, 4:2:0 (padded likewise); ``.gif``: Pillow's GIF writer (an adaptive
256-colour palette per frame, frame times in whole hundredths of a second, looping). With
``audio`` (``--keep-audio``) the input's first audio track is decoded, cut to the selected
frames' time span :math:`[t_A, t_{B+1})` (sample-exact) and encoded beside the frames (AAC in
MP4, Opus in WebM; a GIF has no sound). Every file appears complete or not at all: it is written
under a temporary name beside the target and renamed into place.

Every problem a user can cause raises :class:`~minist.errors.MinistError` with one line that
names the file and the problem, before any frame is decoded or written: a file that is not a
video, a clip with no frames, frames of different sizes in a folder, ``frames`` outside the
clip, an output extension no writer supports, audio asked for where there is none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from minist.errors import MinistError, message_line
from minist.images import (
    SUPPORTED_EXTENSIONS,
    image_size,
    load_image,
    resize_longest,
    save_image,
    to_uint8_hwc,
    write_gif,
)
from minist.video import require_av
from minist.weights.atomic import atomic_path, check_writable

DEFAULT_FPS = 24.0  # a folder or pattern of frames has no rate of its own
FRAME_NAME = "frame_{:04d}.png"  # output frames, numbered from 1
IMAGE_EXTENSIONS = tuple(SUPPORTED_EXTENSIONS) + (".gif",)  # what a folder of frames may hold
VIDEO_WRITERS = {".mp4": "H.264", ".webm": "VP9", ".gif": "GIF"}  # extension -> what is written
_PATTERN = re.compile(r"%(0?)(\d*)d")


class ClipSource(NamedTuple):
    """What :func:`open_clip` found, before any frame is decoded."""

    path: Path  # the file, folder or pattern as given
    kind: str  # "video", "folder" or "pattern"
    frame_count: int
    height: int  # upright (rotation applied), before any resizing
    width: int
    fps: float
    rotation: int  # degrees clockwise applied to each decoded frame: 0, 90, 180 or 270
    files: tuple[Path, ...]  # the frame files of a folder or pattern; () for a video
    has_audio: bool


class Clip(NamedTuple):
    """Decoded frames and where they came from."""

    frames: list[np.ndarray]  # each (1, 3, H, W) float32, RGB in [0, 1]
    fps: float
    first: int  # 1-based index, in the source, of frames[0]
    times: tuple[float, ...]  # presentation time (s) of each frame in the source
    end_time: float  # when the last frame ends (the next frame's time, or last + 1/fps)
    source: ClipSource


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def _natural_key(name: str) -> list:
    """``"f10.png"`` -> ``["f", 10, ".png"]``: digits compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_pattern(path: str | os.PathLike) -> bool:
    """True when the file name holds a printf integer field (``%d``, ``%04d``)."""
    return bool(_PATTERN.search(Path(path).name))


def _pattern_files(pattern: Path) -> tuple[Path, ...]:
    name = pattern.name
    if len(_PATTERN.findall(name)) != 1 or "%" in _PATTERN.sub("", name).replace("%%", ""):
        raise MinistError(f"{pattern}: a frame pattern needs exactly one %d (or %04d) field")
    head, tail = _PATTERN.split(name, maxsplit=1)[0], _PATTERN.split(name, maxsplit=1)[-1]
    zero, width = _PATTERN.search(name).groups()
    if zero:  # %04d: 4 digits, more only for a larger number
        digits = rf"\d{{{width}}}|[1-9]\d{{{width},}}"
    else:  # %d: no leading zero; %4d: padded with spaces
        digits = (r" *" if width else "") + r"(?:0|[1-9]\d*)"
    regex = re.compile(re.escape(head.replace("%%", "%")) + f"({digits})"
                       + re.escape(tail.replace("%%", "%")) + r"\Z")
    folder = pattern.parent
    if not folder.is_dir():
        raise MinistError(f"{pattern}: folder {folder} does not exist")
    found = [(int(m.group(1)), folder / f.name) for f in folder.iterdir()
             if (m := regex.match(f.name)) and f.is_file()]
    return tuple(path for _, path in sorted(found))


def _folder_files(folder: Path) -> tuple[Path, ...]:
    files = [f for f in folder.iterdir() if f.is_file() and not f.name.startswith(".")
             and f.suffix.lower() in IMAGE_EXTENSIONS]
    return tuple(sorted(files, key=lambda f: (_natural_key(f.name), f.name)))


def _open_frames(path: Path, kind: str, files: tuple[Path, ...]) -> ClipSource:
    if not files:
        where = "match the pattern" if kind == "pattern" else "in the folder"
        raise MinistError(f"{path}: no frames (no image files {where}; expected "
                          f"{', '.join(IMAGE_EXTENSIONS)})")
    width, height = image_size(files[0])  # one line naming the file when it is not an image
    for f in files[1:]:
        size = image_size(f)
        if size != (width, height):
            raise MinistError(f"{f}: frame of {size[0]}x{size[1]} px, but {files[0].name} is "
                              f"{width}x{height}; every frame of a clip must have the same size")
    return ClipSource(path, kind, len(files), height, width, DEFAULT_FPS, 0, files, False)


def _video_fps(stream: Any, count: int, first: int | None, last: int | None) -> float:
    r"""The stream's average frame rate from its frames' timestamps: :math:`(T - 1) /
    (t_T - t_1)`, the mean interval between the first and the last of its :math:`T` frames
    (exact for a constant rate: 29.97 fps is 30000/1001 to the last digit). It does not depend
    on the last frame's duration, which containers store differently, nor on the header's
    nominal rate: MKV headers have no average rate (FFmpeg guesses 25 fps for a clip that
    averages 16.7), and an AVI's counts the empty chunks of dropped frames (../shared's
    tree.avi: 444 slots at 15 fps, 68 of them holding a frame: 2.27 fps). A clip of one frame,
    or without timestamps, has FFmpeg's rate, else :data:`DEFAULT_FPS`."""
    if count > 1 and first is not None and last is not None and last > first:
        return float(Fraction(count - 1) / ((last - first) * stream.time_base))
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else DEFAULT_FPS


def _open_av(path: Path):
    av = require_av()
    try:
        return av.open(str(path), mode="r")
    except PermissionError:
        raise MinistError(f"{path}: permission denied, cannot read the file") from None
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise MinistError(f"{path}: not a video file FFmpeg can read ({message_line(e)})") from None


def _open_video(path: Path) -> ClipSource:
    av = require_av()
    with _open_av(path) as container:
        if not container.streams.video:
            raise MinistError(f"{path}: not a video (the file has no video stream)")
        stream = container.streams.video[0]
        has_audio = bool(container.streams.audio)
        count, first, last = 0, None, None
        try:  # count the frames without decoding them: one packet per frame
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                count += 1
                if packet.pts is not None:
                    first = packet.pts if first is None else min(first, packet.pts)
                    last = packet.pts if last is None else max(last, packet.pts)
        except av.FFmpegError as e:
            raise MinistError(f"{path}: video data corrupt ({message_line(e)})") from None
        if count == 0:
            raise MinistError(f"{path}: the clip has no frames")
        rotation = _frame_rotation(path)
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        fps = _video_fps(stream, count, first, last)
        return ClipSource(path, "video", count, height, width, fps, rotation, (),
                          has_audio)


def _frame_rotation(path: Path) -> int:
    """Degrees clockwise that turn a decoded frame upright: PyAV's ``VideoFrame.rotation`` is
    FFmpeg's counter-clockwise angle of the display matrix (``av_display_rotation_get``), which
    the decoder attaches to every frame; autorotate turns by its opposite."""
    av = require_av()
    with _open_av(path) as container:
        try:
            for frame in container.decode(video=0):
                return int(round(-float(getattr(frame, "rotation", 0) or 0) / 90.0)) % 4 * 90
        except av.FFmpegError as e:
            raise MinistError(f"{path}: video data corrupt ({message_line(e)})") from None
    raise MinistError(f"{path}: the clip has no frames (none could be decoded)")


def open_clip(path: str | os.PathLike) -> ClipSource:
    """Inspect a video file, a folder of frames or a printf pattern: kind, frame count, size,
    frame rate, rotation, audio. Decodes at most one frame (a video's first, for its rotation);
    every problem is one line naming the file."""
    path = Path(path)
    if is_pattern(path):
        return _open_frames(path, "pattern", _pattern_files(path))
    if path.is_dir():
        return _open_frames(path, "folder", _folder_files(path))
    if not path.exists():
        raise MinistError(f"{path}: file not found")
    return _open_video(path)


def check_selection(source: ClipSource, frames: tuple[int, int] | None) -> tuple[int, int]:
    """``frames`` ``(A, B)``, 1-based and inclusive, checked against the clip; ``None`` is the
    whole clip ``(1, T)``."""
    T = source.frame_count
    if frames is None:
        return 1, T
    A, B = frames
    if not (isinstance(A, int) and isinstance(B, int)) or not 1 <= A <= B <= T:
        raise MinistError(f"{source.path}: frames {A}:{B} are outside the clip, which has {T} "
                          f"frame{'s' if T != 1 else ''} (1:{T})")
    return A, B


def _turn(rgb: np.ndarray, clockwise: int) -> np.ndarray:
    """(H, W, 3) turned ``clockwise`` degrees (a multiple of 90)."""
    return np.rot90(rgb, k=-(clockwise // 90)) if clockwise else rgb


def _to_frame(rgb_uint8: np.ndarray, longest_side: int | None) -> np.ndarray:
    image = np.ascontiguousarray(rgb_uint8.transpose(2, 0, 1)[None], dtype=np.float32)
    image /= np.float32(255)
    return image if longest_side is None else resize_longest(image, longest_side)


def _decode_video(source: ClipSource, A: int, B: int, longest_side, ends: list):
    """Frames A..B as (index, time, image); appends to ``ends`` when the selection ends
    (the next frame's time, or the end of the stream)."""
    av = require_av()
    decoded = 0
    with _open_av(source.path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        try:
            for index, frame in enumerate(container.decode(stream), start=1):
                if index < A:
                    continue
                if index > B:  # the selection ends where the next frame starts
                    if frame.time is not None:
                        ends.append(float(frame.time))
                    break
                rgb = _turn(frame.to_ndarray(format="rgb24"), source.rotation)
                time = float(frame.time) if frame.time is not None else (index - 1) / source.fps
                decoded += 1
                yield index, time, _to_frame(rgb, longest_side)
        except av.FFmpegError as e:
            raise MinistError(f"{source.path}: video data corrupt ({message_line(e)})") from None
        if not ends and stream.duration:  # the last frame ends where the stream does
            ends.append(float(((stream.start_time or 0) + stream.duration) * stream.time_base))
    if decoded != B - A + 1:
        raise MinistError(f"{source.path}: decoded {decoded} of frames {A}:{B} "
                          f"(the file is cut short or corrupt)")


def iter_frames(source: ClipSource, frames: tuple[int, int] | None = None,
                longest_side: int | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Frames ``A..B`` of a clip opened by :func:`open_clip`, one at a time (a long clip need
    not fit in memory), as ``(index, time, image)``: the 1-based index in the source, the
    presentation time in seconds, and the ``(1, 3, H, W)`` float32 RGB image in [0, 1],
    upright, resized to ``longest_side`` when given."""
    A, B = check_selection(source, frames)
    if source.kind == "video":
        yield from _decode_video(source, A, B, longest_side, [])
        return
    for index in range(A, B + 1):
        yield index, (index - 1) / source.fps, load_image(source.files[index - 1], longest_side)


def read_frames(source: ClipSource, frames: tuple[int, int] | None = None,
                longest_side: int | None = None) -> Clip:
    """All of frames ``A..B`` (1-based, inclusive; the whole clip when ``None``) of a clip
    opened by :func:`open_clip`, as in :func:`iter_frames`, with their times and when the
    last one ends (for cutting the sound)."""
    A, B = check_selection(source, frames)
    ends: list[float] = []
    if source.kind == "video":
        decoded = list(_decode_video(source, A, B, longest_side, ends))
    else:
        decoded = list(iter_frames(source, (A, B), longest_side))
        ends.append(B / source.fps)
    times = tuple(time for _, time, _ in decoded)
    end_time = ends[0] if ends and ends[0] > times[-1] else times[-1] + 1.0 / source.fps
    return Clip([image for _, _, image in decoded], source.fps, A, times, end_time, source)


def read_clip(path: str | os.PathLike, frames: tuple[int, int] | None = None,
              longest_side: int | None = None) -> Clip:
    """:func:`open_clip` then :func:`read_frames`: the checks first, then the decoding."""
    return read_frames(open_clip(path), frames, longest_side)


# ---------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------


def output_kind(out: str | os.PathLike) -> str:
    """``"folder"`` for a path ending in ``/`` or an existing folder, else the writer's
    extension (``".mp4"``, ``".webm"``, ``".gif"``); anything else is one line."""
    text = os.fspath(out)
    path = Path(text)
    if text.endswith(("/", os.sep)) or path.is_dir():
        return "folder"
    extension = path.suffix.lower()
    if extension not in VIDEO_WRITERS:
        choices = ", ".join(f"{e} ({w})" for e, w in VIDEO_WRITERS.items())
        raise MinistError(f"{path}: no writer for {extension or 'a name without extension'!r}; "
                          f"use {choices}, or a folder (a path ending in /) for PNG frames")
    return extension


def check_output(out: str | os.PathLike, audio: Clip | ClipSource | None = None) -> str:
    """Every check of :func:`write_clip` that needs no frames, to run before any work:
    the writer, a writable location, and audio where it is asked for. Returns the kind."""
    kind = output_kind(out)
    path = Path(out)
    if kind == "folder":
        parent = path if path.is_dir() else path.parent
        if not (path.is_dir() or parent.is_dir()):
            raise MinistError(f"{path}: folder {parent} does not exist")
    else:
        check_writable(path)
    if audio is not None:
        source = audio.source if isinstance(audio, Clip) else audio
        if kind in ("folder", ".gif"):
            raise MinistError(f"{path}: --keep-audio needs a video output (.mp4 or .webm); "
                              f"{'PNG frames' if kind == 'folder' else 'a GIF'} have no sound")
        if not source.has_audio:
            raise MinistError(f"{source.path}: --keep-audio: the input has no audio track")
    return kind


def frame_path(folder: str | os.PathLike, index: int) -> Path:
    """``folder/frame_0001.png`` for ``index`` 1 (numbered from 1)."""
    return Path(folder) / FRAME_NAME.format(index)


def write_frame(folder: str | os.PathLike, index: int, frame) -> Path:
    """One output frame as ``folder/frame_NNNN.png``, written atomically; returns the path."""
    return save_image(frame_path(folder, index), frame)


def _pad_even(rgb: np.ndarray) -> np.ndarray:
    """Pad an odd height or width by one pixel, repeating the last row or column."""
    H, W = rgb.shape[:2]
    return np.pad(rgb, ((0, H % 2), (0, W % 2), (0, 0)), mode="edge")


def _rate(fps: float) -> Fraction:
    if not fps > 0:
        raise MinistError(f"--fps: must be a positive number of frames per second, got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def _write_gif(tmp: Path, frames, fps: float) -> None:
    write_gif(tmp, [to_uint8_hwc(f) for f in frames], fps)


_VIDEO_CODECS = {".mp4": (("libx264", "h264", "libopenh264"), "mp4", "aac"),
                 ".webm": (("libvpx-vp9", "vp9"), "webm", "libopus")}


def _pick_codec(av, names: tuple[str, ...], path: Path) -> str:
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # this FFmpeg lacks that encoder
            continue
    raise MinistError(f"{path}: the installed FFmpeg (PyAV) has no encoder for {path.suffix} "
                      f"(tried {', '.join(names)})")


def _write_av(tmp: Path, path: Path, frames, fps: float, audio: Clip | None) -> None:
    av = require_av()
    names, container_format, audio_codec = _VIDEO_CODECS[path.suffix.lower()]
    codec = _pick_codec(av, names, path)
    first = _pad_even(to_uint8_hwc(frames[0]))
    rate = _rate(fps)
    with av.open(str(tmp), mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "18", "preset": "medium"}
        elif codec.startswith("libvpx"):
            stream.options = {"crf": "24", "b": "0", "row-mt": "1"}
        else:
            stream.bit_rate = 8_000_000
        audio_stream = _audio_stream(av, container, audio, audio_codec) if audio else None
        for i, frame in enumerate(frames):
            image = first if i == 0 else _pad_even(to_uint8_hwc(frame))
            if image.shape != first.shape:
                raise MinistError(f"{path}: frame {i + 1} is {image.shape[1]}x{image.shape[0]}, "
                                  f"frame 1 {first.shape[1]}x{first.shape[0]}")
            video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            video_frame.pts = i
            video_frame.time_base = 1 / rate
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
        if audio_stream is not None:
            _encode_audio(av, container, audio_stream, audio)


def _audio_stream(av, container, audio: Clip, codec_name: str):
    with _open_av(audio.source.path) as source:
        rate = source.streams.audio[0].codec_context.sample_rate
        layout = source.streams.audio[0].codec_context.layout.name
    rate = 48000 if "opus" in codec_name else rate
    stream = container.add_stream(codec_name, rate=rate)
    stream.layout = "stereo" if layout not in ("mono", "stereo") else layout
    return stream


def _decoded_audio(av, audio: Clip, rate: int, layout: str) -> tuple[np.ndarray, float]:
    """The input's first audio track as (channels, samples) float32 at ``rate``, and the
    presentation time of its first sample."""
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
    chunks, start = [], None
    with _open_av(audio.source.path) as source:
        for frame in source.decode(audio=0):
            if start is None:
                start = float(frame.time or 0.0)
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray())
    channels = 2 if layout == "stereo" else 1
    samples = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return samples.astype(np.float32), start or 0.0


def _encode_audio(av, container, stream, audio: Clip) -> None:
    rate, layout = stream.codec_context.sample_rate, stream.layout.name
    samples, start = _decoded_audio(av, audio, rate, layout)
    first = max(0, round((audio.times[0] - start) * rate))  # t_A
    last = max(first, round((audio.end_time - start) * rate))  # t_{B+1}
    samples = np.ascontiguousarray(samples[:, first:last])
    chunk = stream.codec_context.frame_size or 1024
    for offset in range(0, samples.shape[1], chunk):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples[:, offset:offset + chunk]),
                                           format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, offset
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_clip(out: str | os.PathLike, frames, fps: float, *, audio: Clip | None = None,
               first_index: int = 1) -> Path:
    """Write ``frames`` (each ``(1, 3, H, W)`` in [0, 1]) to ``out``: PNG frames
    ``frame_NNNN.png`` numbered from ``first_index`` into a folder, or a video whose writer
    the extension picks (see the module docstring), at ``fps`` frames per second, with
    ``audio``'s sound cut to its frames when given. Atomic; returns the path written."""
    frames = list(frames)
    kind = check_output(out, audio)
    path = Path(out)
    if not frames:
        raise MinistError(f"{path}: no frames to write")
    if kind == "folder":
        path.mkdir(exist_ok=True)
        for i, frame in enumerate(frames):
            write_frame(path, first_index + i, frame)
        return path
    _rate(fps)
    with atomic_path(path, suffix=".part" + kind) as tmp:
        if kind == ".gif":
            _write_gif(tmp, frames, fps)
        else:
            _write_av(tmp, path, frames, fps, audio)
    return path
