"""Clips in and out (minist.video.frames): video files, folders and printf patterns read as
(1, 3, H, W) frames in [0, 1] -- rotation applied, variable frame rates in presentation order,
selections, resizing -- and written back as PNG frames, H.264, VP9 or GIF, with the input's
sound cut to the selected frames; every bad input one line naming the file; the extra missing
one line too. Clips are made here from NumPy arrays; the real clips of ../shared are read for a
few frames."""

from __future__ import annotations

import struct
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from minist.errors import MinistError
from minist.images import save_image

av = pytest.importorskip("av", reason="video I/O needs PyAV: pip install 'minist[video]'")

from minist.video.frames import (  # noqa: E402  (after the extra's import check)
    DEFAULT_FPS,
    check_output,
    frame_path,
    iter_frames,
    open_clip,
    output_kind,
    read_clip,
    read_frames,
    write_clip,
)


def _gray_frames(count, height=32, width=48):
    """Frame k is flat gray k/10 with a white 5x5 corner (top left): each frame tells its
    index, and the corner tells up from down."""
    frames = []
    for k in range(count):
        frame = np.full((1, 3, height, width), k / 10, np.float32)
        frame[0, :, :5, :5] = 1.0
        frames.append(frame)
    return frames


def _levels(clip):
    return [round(float(f[0, 1, -8, -8]) * 10) for f in clip.frames]


def _write_raw(path, pts_ms, size=(32, 32), audio=None, fps=25):
    """An H.264 MP4 whose frame k is flat gray 30 k at time pts_ms[k] (ms), with an optional
    mono 44.1 kHz AAC track ``audio`` (float32 samples)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=44100)
            sound.layout = "mono"
        for k, t in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full(size + (3,), 30 * k, np.uint8),
                                               format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if sound is not None:
            for offset in range(0, audio.size, 1024):
                chunk = np.ascontiguousarray(audio[None, offset:offset + 1024])
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
                frame.sample_rate, frame.pts = 44100, offset
                container.mux(sound.encode(frame))
            container.mux(sound.encode(None))
    return path


# ------------------------------------------------------------------------------ round trips


def test_mp4_round_trip_pads_odd_sizes_by_repeating_the_last_row_and_column(tmp_path):
    frames = _gray_frames(5, height=33, width=47)
    out = write_clip(tmp_path / "clip.mp4", frames, 12.5)
    clip = read_clip(out)
    assert clip.source.frame_count == 5 and clip.fps == 12.5
    assert clip.frames[0].shape == (1, 3, 34, 48)  # one row and one column padded
    assert clip.times == (0.0, 0.08, 0.16, 0.24, 0.32)
    assert _levels(clip) == [0, 1, 2, 3, 4]
    for written, read in zip(frames, clip.frames, strict=True):
        assert np.abs(read[:, :, :33, :47] - written).mean() < 0.01  # H.264 at crf 18
        np.testing.assert_allclose(read[:, :, 33], read[:, :, 32], atol=0.02)  # the padding
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary file left


@pytest.mark.parametrize("extension", [".webm", ".gif"])
def test_webm_and_gif_round_trips(tmp_path, extension):
    frames = _gray_frames(4)
    clip = read_clip(write_clip(tmp_path / f"clip{extension}", frames, 10))
    assert clip.source.frame_count == 4 and clip.frames[0].shape == (1, 3, 32, 48)
    assert clip.fps == 10
    assert _levels(clip) == [0, 1, 2, 3]
    assert clip.frames[0][0, :, 2, 2].min() > 0.95  # the white corner stays top left


def test_selection_is_one_based_and_inclusive_and_resizes(tmp_path):
    out = write_clip(tmp_path / "clip.mp4", _gray_frames(6, 32, 48), 10)
    clip = read_clip(out, frames=(2, 4), longest_side=24)
    assert clip.first == 2 and _levels(clip) == [1, 2, 3]
    assert clip.frames[0].shape == (1, 3, 16, 24)
    assert clip.times == (0.1, 0.2, 0.3) and clip.end_time == pytest.approx(0.4)
    streamed = list(iter_frames(clip.source, frames=(2, 4), longest_side=24))
    assert [(index, time) for index, time, _ in streamed] == [(2, 0.1), (3, 0.2), (4, 0.3)]
    for (_, _, image), frame in zip(streamed, clip.frames, strict=True):
        np.testing.assert_array_equal(image, frame)


def test_rotation_metadata_turns_frames_upright(tmp_path):
    """A phone's portrait clip: stored 64 wide and 32 high, red left and blue right, with the
    MP4 track matrix of a 90-degree turn (the 'rotate=90' of phones); it must read 32 wide and
    64 high, red on top (the left side turned clockwise comes to the top)."""
    frame = np.zeros((1, 3, 32, 64), np.float32)
    frame[0, 0, :, :32] = frame[0, 2, :, 32:] = 1.0
    data = bytearray(write_clip(tmp_path / "flat.mp4", [frame] * 2, 10).read_bytes())
    tkhd = data.index(b"tkhd")
    assert data[tkhd + 4] == 0  # a version-0 track header: its matrix is 44 bytes in
    data[tkhd + 44:tkhd + 80] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
    (tmp_path / "portrait.mp4").write_bytes(bytes(data))
    clip = read_clip(tmp_path / "portrait.mp4")
    assert clip.source.rotation == 90
    assert (clip.source.height, clip.source.width) == (64, 32)
    top, bottom = clip.frames[0][0, :, 8, 16], clip.frames[0][0, :, 56, 16]
    assert top[0] > 0.9 and top[2] < 0.1 and bottom[2] > 0.9 and bottom[0] < 0.1


@pytest.mark.parametrize("extension", [".mp4", ".mov", ".mkv"])
def test_variable_frame_rate_gives_every_frame_in_order_at_the_average_rate(tmp_path,
                                                                             extension):
    """Frames at 0, 40, 120, 160, 280, 300 ms: six frames, in order, at their own times; the
    rate reported is the average, 5 intervals over 0.3 s = 16.67 fps, whatever the container
    (MKV's header has no average: FFmpeg's guess would be 25)."""
    path = _write_raw(tmp_path / f"vfr{extension}", [0, 40, 120, 160, 280, 300])
    clip = read_clip(path)
    assert clip.fps == pytest.approx(5 / 0.3, rel=1e-12)
    assert clip.times == (0.0, 0.04, 0.12, 0.16, 0.28, 0.3)
    assert [round(float(f[0, 0, 5, 5]) * 255 / 30) for f in clip.frames] == [0, 1, 2, 3, 4, 5]


def test_folder_in_natural_order_and_printf_pattern(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, frame in zip((1, 2, 10), _gray_frames(3), strict=True):
        save_image(folder / f"{k}.png", frame)
        save_image(folder / f"{k:04d}.png", frame)
    (folder / "notes.txt").write_text("not a frame")
    by_name = read_clip(tmp_path / "frames" / "%d.png")
    assert [p.name for p in by_name.source.files] == ["1.png", "2.png", "10.png"]
    assert _levels(by_name) == [0, 1, 2] and by_name.fps == DEFAULT_FPS == 24
    padded = read_clip(folder / "%04d.png", frames=(2, 3))
    assert [p.name for p in padded.source.files] == ["0001.png", "0002.png", "0010.png"]
    assert _levels(padded) == [1, 2]
    whole = open_clip(folder)  # natural order, digits as numbers; equal numbers by name
    assert [p.name for p in whole.files] == ["0001.png", "1.png", "0002.png", "2.png",
                                             "0010.png", "10.png"]


def test_png_frames_out_numbered_from_one(tmp_path):
    out = write_clip(f"{tmp_path}/out/", _gray_frames(3), 24)
    assert sorted(p.name for p in out.iterdir()) == ["frame_0001.png", "frame_0002.png",
                                                     "frame_0003.png"]
    assert frame_path(out, 12).name == "frame_0012.png"
    assert _levels(read_clip(out)) == [0, 1, 2]


def test_audio_is_cut_to_the_selected_frames(tmp_path):
    """10 fps, 8 frames; the tone is loud (0.8) during frames 3-6 (0.2 s to 0.6 s) and quiet
    (0.1) elsewhere. Frames 3-6 written with their sound: 0.4 s of the loud tone, whose RMS is
    0.8 / sqrt(2) = 0.566, in AAC (MP4) and Opus (WebM)."""
    t = np.arange(int(0.8 * 44100)) / 44100
    tone = (np.where((t >= 0.2) & (t < 0.6), 0.8, 0.1) * np.sin(2 * np.pi * 440 * t))
    path = _write_raw(tmp_path / "talk.mp4", [100 * k for k in range(8)], audio=tone
                      .astype(np.float32), fps=10)
    clip = read_clip(path, frames=(3, 6))
    assert clip.source.has_audio and clip.times[0] == 0.2 and clip.end_time == 0.6
    for extension in (".mp4", ".webm"):
        out = write_clip(tmp_path / f"out{extension}", clip.frames, clip.fps, audio=clip)
        with av.open(str(out)) as container:
            rate = container.streams.audio[0].codec_context.sample_rate
            sound = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)])
        assert abs(sound.size / rate - 0.4) < 0.025  # AAC adds up to a frame of padding
        middle = sound[sound.size // 4: 3 * sound.size // 4]
        assert np.sqrt(np.mean(middle ** 2)) == pytest.approx(0.8 / np.sqrt(2), rel=0.05)


def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import minist.video.frames as frames_module

    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(frames_module, "_write_av", broken)
    with pytest.raises(KeyboardInterrupt):
        write_clip(tmp_path / "clip.mp4", _gray_frames(2), 10)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------- bad input: one line


def _one_line_error(call, *args, **kwargs) -> str:
    with pytest.raises(MinistError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_inputs_each_one_line_naming_the_file(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    message = _one_line_error(open_clip, text)
    assert message.startswith(f"{text}: not a video file")

    empty = tmp_path / "empty"
    empty.mkdir()
    assert _one_line_error(open_clip, empty).startswith(f"{empty}: no frames")
    assert "no frames" in _one_line_error(open_clip, empty / "%04d.png")
    assert _one_line_error(open_clip, tmp_path / "absent.mp4").endswith("file not found")

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    save_image(mixed / "1.png", np.zeros((1, 3, 8, 8), np.float32))
    save_image(mixed / "2.png", np.zeros((1, 3, 8, 9), np.float32))
    message = _one_line_error(open_clip, mixed)
    assert message.startswith(f"{mixed / '2.png'}: frame of 9x8 px, but 1.png is 8x8")

    clip = write_clip(tmp_path / "clip.mp4", _gray_frames(3), 10)
    for frames in ((0, 2), (2, 4), (3, 2)):
        message = _one_line_error(read_clip, clip, frames=frames)
        assert message == (f"{clip}: frames {frames[0]}:{frames[1]} are outside the clip, "
                           f"which has 3 frames (1:3)")


def test_a_clip_with_no_frames(tmp_path):
    """An AVI whose header names a video stream and holds no frame; an MP4 in which FFmpeg
    drops the empty track (so no video stream is left)."""
    for name, codec in (("nothing.avi", "mpeg4"), ("nothing.mp4", "libx264")):
        with av.open(str(tmp_path / name), "w") as container:
            stream = container.add_stream(codec, rate=10)
            stream.width = stream.height = 32
            container.start_encoding()  # the header, and no frame
    assert _one_line_error(open_clip, tmp_path / "nothing.avi") == (
        f"{tmp_path / 'nothing.avi'}: the clip has no frames")
    assert _one_line_error(open_clip, tmp_path / "nothing.mp4") == (
        f"{tmp_path / 'nothing.mp4'}: not a video (the file has no video stream)")


def test_outputs_checked_before_any_work(tmp_path):
    assert output_kind(tmp_path) == "folder" and output_kind("new/") == "folder"
    assert output_kind(tmp_path / "a.MP4") == ".mp4"
    message = _one_line_error(output_kind, tmp_path / "clip.avi")
    assert message.startswith(f"{tmp_path / 'clip.avi'}: no writer for '.avi'")
    silent = open_clip(write_clip(tmp_path / "silent.mp4", _gray_frames(2), 10))
    message = _one_line_error(check_output, tmp_path / "out.mp4", silent)
    assert message == f"{silent.path}: --keep-audio: the input has no audio track"
    assert "a GIF" in _one_line_error(check_output, tmp_path / "out.gif", silent)
    assert not (tmp_path / "out.mp4").exists()


def test_missing_extra_is_one_line(monkeypatch, tmp_path):
    """Simulated: with ``av`` and ``cv2`` unimportable, reading a video and computing a flow
    each say in one line how to install the extra."""
    from minist.video.flow import available_methods

    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setitem(sys.modules, "cv2", None)
    message = _one_line_error(open_clip, Path(__file__))
    assert message == ("minist video needs PyAV (video files), which is not installed: "
                       "pip install 'minist[video]'")
    assert _one_line_error(available_methods).endswith("pip install 'minist[video]'")


def test_importing_minist_imports_neither_av_nor_cv2():
    code = ("import sys, minist, minist.video, minist.video.frames, minist.video.flow; "
            "print('av' in sys.modules, 'cv2' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["False", "False"]


# -------------------------------------------------------------------------- the real clips


@pytest.mark.shared
def test_real_clips_read_a_few_frames(shared_dir):
    video = shared_dir / "data" / "video"
    walkers = open_clip(video / "vtest.avi")
    assert (walkers.frame_count, walkers.height, walkers.width, walkers.fps) == (795, 576, 768,
                                                                                10.0)
    clip = read_frames(walkers, frames=(1, 3))
    assert len(clip.frames) == 3 and clip.frames[0].shape == (1, 3, 576, 768)
    assert clip.frames[0].dtype == np.float32
    assert clip.frames[0].min() >= 0 and clip.frames[0].max() <= 1
    assert np.abs(clip.frames[1] - clip.frames[0]).mean() > 0  # people walk
    # tree.avi's header says 444 frames at 15 fps, but only 68 of its chunks hold a frame (the
    # others are empty: dropped frames, shown as the previous one): 67 intervals over 443 slots
    tree = read_clip(video / "tree.avi", frames=(2, 4), longest_side=160)
    assert tree.source.frame_count == 68
    assert tree.fps == pytest.approx(67 / (443 * 66667 / 1e6), rel=1e-12)
    assert [f.shape for f in tree.frames] == [(1, 3, 120, 160)] * 3
    assert tree.times == pytest.approx((11 * 0.066667, 17 * 0.066667, 24 * 0.066667))
