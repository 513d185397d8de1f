"""The output folder's bookkeeping of ``minist video`` (minist.video.store), on folders of empty
``frame_NNNN.png`` files: where each pass's frames go, the order of a pass, how far a run got,
the settings kept, and where a rerun resumes (or that it starts afresh, removing the old
results). Nothing here paints a frame."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from minist.options import VideoOptions
from minist.video.store import (
    SETTINGS_NAME,
    clip_progress,
    direction_of,
    finished_frames,
    frames_folder,
    pass_folder,
    pass_order,
    read_settings,
    remove_results,
    resume_point,
    run_settings,
    write_settings,
)


def _frames(folder: Path, *numbers: int) -> Path:
    """Empty ``frame_NNNN.png`` files (only their presence counts here)."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        (folder / f"frame_{n:04d}.png").touch()
    return folder


def _names(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_where_the_frames_and_each_pass_go(tmp_path):
    assert frames_folder(f"{tmp_path / 'out'}/") == tmp_path / "out"
    assert frames_folder(tmp_path / "clip.mp4") == tmp_path / "clip.mp4.frames"
    (tmp_path / "existing").mkdir()
    assert frames_folder(tmp_path / "existing") == tmp_path / "existing"  # a folder already
    assert pass_folder(tmp_path, 3, 3) == tmp_path  # the last pass: the output frames
    assert pass_folder(tmp_path, 1, 3) == tmp_path / "pass_1"
    assert pass_folder(tmp_path, 2, 3) == tmp_path / "pass_2"


def test_passes_alternate_direction():
    assert [direction_of(p) for p in (1, 2, 3, 4)] == [1, -1, 1, -1]
    assert list(pass_order(1, 4)) == [0, 1, 2, 3]
    assert list(pass_order(2, 4)) == [3, 2, 1, 0]
    assert list(pass_order(3, 4)) == [0, 1, 2, 3]


def test_finished_frames_counts_those_in_a_row_in_the_pass_order(tmp_path):
    folder = _frames(tmp_path / "f", 1, 2, 4)  # frame 3 missing
    assert finished_frames(folder, 4, 1) == 2  # 1, 2, then the gap
    assert finished_frames(folder, 4, 2) == 1  # backward: 4, then the gap
    assert finished_frames(folder, 2, 1) == 2  # at most the selection
    assert finished_frames(tmp_path / "nothing", 4) == 0


@pytest.mark.parametrize("layout, passes, expected", [
    ({}, 1, (1, 0)),
    ({".": (1, 2)}, 1, (1, 2)),
    ({".": (1, 2, 3)}, 1, (1, 3)),  # done
    ({"pass_1": (1, 2)}, 2, (1, 2)),
    ({"pass_1": (1, 2, 3)}, 2, (2, 0)),  # pass 1 done, pass 2 not begun
    ({"pass_1": (1, 2, 3), ".": (3,)}, 2, (2, 1)),  # pass 2 goes backward: frame 3 first
    ({"pass_1": (1, 2, 3), ".": (1,)}, 2, (2, 0)),  # frame 1 alone is not pass 2's start
    ({".": (1, 2, 3)}, 2, (2, 3)),  # the last pass done (pass_1 already removed)
    ({"pass_1": (1, 2, 3), "pass_2": (3, 2, 1)}, 3, (3, 0)),
])
def test_clip_progress_is_the_pass_under_way_and_its_frames_done(tmp_path, layout, passes,
                                                                   expected):
    for sub, numbers in layout.items():
        _frames(tmp_path / sub, *numbers)
    assert clip_progress(tmp_path, 3, passes) == expected


def _source(tmp_path):
    return SimpleNamespace(path=str(tmp_path / "clip.mp4"))


def test_run_settings_name_what_makes_the_results(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = VideoOptions(frames=(2, 5)).validated()
    one = run_settings(options, _source(tmp_path), ["style.png"], 2, 5, "dis")
    assert list(one) == ["input", "styles", "first_frame", "options"]
    assert one["input"] == str(tmp_path / "clip.mp4")
    assert one["styles"] == [str(tmp_path / "style.png")]  # absolute
    assert one["first_frame"] == 2
    assert "frames" not in one["options"]  # with one pass, frame t depends on frames <= t
    assert one["options"]["flow"] == "dis"  # the method used, the default resolved
    assert one["options"]["temporal_weight"] == options.temporal_weight
    two = run_settings(VideoOptions(frames=(2, 5), passes=2).validated(), _source(tmp_path),
                       ["style.png"], 2, 5, "dis")
    assert two["last_frame"] == 5  # a backward pass starts from the last frame


def test_settings_are_kept_and_read_back(tmp_path):
    settings = {"input": "/a/clip.mp4", "options": {"passes": 2}}
    path = write_settings(tmp_path, settings)
    assert path == tmp_path / SETTINGS_NAME
    assert json.loads(path.read_text()) == settings
    assert read_settings(tmp_path) == settings
    assert read_settings(tmp_path / "elsewhere") is None
    path.write_text("{not json")
    assert read_settings(tmp_path) is None


def test_remove_results_keeps_the_flows(tmp_path):
    _frames(tmp_path, 1, 2)
    _frames(tmp_path / "pass_1", 1, 2, 3)
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "flow-abc.npz").touch()
    write_settings(tmp_path, {})
    remove_results(tmp_path)
    assert _names(tmp_path) == ["flows", "flows/flow-abc.npz", SETTINGS_NAME]


SETTINGS = {"input": "/a/clip.mp4", "options": {"passes": 2, "temporal_weight": 1.0}}


def test_the_same_settings_resume_where_the_run_stopped(tmp_path):
    write_settings(tmp_path, SETTINGS)
    _frames(tmp_path / "pass_1", 1, 2, 3)
    _frames(tmp_path, 3)
    before = _names(tmp_path)
    assert resume_point(tmp_path, dict(SETTINGS), 3, 2) == (2, 1, None)
    assert _names(tmp_path) == before  # nothing removed


def test_other_settings_start_afresh_in_one_line(tmp_path):
    write_settings(tmp_path, SETTINGS)
    _frames(tmp_path / "pass_1", 1, 2, 3)
    other = {**SETTINGS, "options": {"passes": 2, "temporal_weight": 5.0}}
    assert resume_point(tmp_path, other, 3, 2) == (
        1, 0, f"minist: the settings differ from those of the frames in {tmp_path}; "
        "starting afresh")
    assert _names(tmp_path) == [SETTINGS_NAME]  # the old results removed


def test_frames_without_settings_are_not_trusted(tmp_path):
    _frames(tmp_path, 1, 2)
    pass_number, done, message = resume_point(tmp_path, SETTINGS, 3, 1)
    assert (pass_number, done) == (1, 0)
    assert message.endswith("starting afresh")
    assert _names(tmp_path) == []


def test_an_empty_folder_starts_without_a_word(tmp_path):
    assert resume_point(tmp_path, SETTINGS, 3, 2) == (1, 0, None)
    (tmp_path / SETTINGS_NAME).write_text("{not json")  # unreadable, and no frames
    assert resume_point(tmp_path, SETTINGS, 3, 2) == (1, 0, None)


def test_a_resumed_log_keeps_only_the_lines_of_finished_frames(tmp_path):
    """Two passes of 3 frames (pass 2 backwards: 3, 2, 1), resumed after frame 3 of pass 2:
    pass 1 stays whole, of pass 2 only frame 3's lines; frame 2's, cut short, go."""
    import json

    from minist.video.store import keep_finished_log_lines

    log = tmp_path / "log.jsonl"
    lines = [{"frame": f, "pass": p, "iter": i} for p, frames in ((1, (1, 2, 3)), (2, (3, 2)))
             for f in frames for i in (0, 1)]
    log.write_text("".join(json.dumps(line) + "\n" for line in lines) + "not json\n")
    keep_finished_log_lines(log, pass_number=2, done=1, total=3)
    kept = [json.loads(line) for line in log.read_text().splitlines()[:-1]]
    assert [(r["pass"], r["frame"]) for r in kept] == [(1, 1), (1, 1), (1, 2), (1, 2), (1, 3),
                                                       (1, 3), (2, 3), (2, 3)]
    assert log.read_text().splitlines()[-1] == "not json"
    keep_finished_log_lines(tmp_path / "absent.jsonl", 1, 0, 3)  # nothing to keep: no error
    assert not (tmp_path / "absent.jsonl").exists()
