"""Optical flow (minist.video.flow) on motion whose flow is known, made from the photos of
../shared: a camera pan over a photo (a sub-pixel shift per frame: the endpoint error of every
method), and a patch of a painting crossing a photo (the pixels it uncovers are known: the
consistency check of minist.temporal against them, and warping on the pixels it trusts). Then
the convention, the choice of method, and the pairs' parallel computation and disk cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minist.errors import MinistError
from minist.images import load_image
from minist.temporal import disoccluded, reliability, warp

cv2 = pytest.importorskip("cv2", reason="optical flow needs OpenCV: pip install 'minist[video]'")

ROOT = Path(__file__).resolve().parents[1]

from minist.video import flow as flow_module  # noqa: E402  (after the extra's import check)
from minist.video.flow import (  # noqa: E402
    METHODS,
    PairFlows,
    available_methods,
    check_method,
    default_method,
    optical_flow,
    pair_flows,
    pairs_for,
)

H, W, FACTOR = 120, 160, 4  # frames of 160 x 120, cut from the photo at 4x that size
PAN = (7, -3)  # the scene moves 7 px right and 3 px up per frame at full size...
TRUE_PAN = np.array([PAN[0] / FACTOR, PAN[1] / FACTOR], np.float32)  # ...(1.75, -0.75) here
MARGIN = 8  # pixels near the border, where the scene enters or leaves, are not scored


def _shrink(image, factor=FACTOR):
    """Average ``factor`` x ``factor`` blocks: a point at full-size column X is at
    (X + 0.5) / factor - 0.5 here, so a shift of k px there is exactly k / factor px here."""
    n, c, h, w = image.shape
    h, w = h // factor * factor, w // factor * factor
    blocks = image[:, :, :h, :w].reshape(n, c, h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(3, 5)).astype(np.float32)


@pytest.fixture(scope="module")
def photos(shared_dir):
    images = shared_dir / "data" / "images"
    return load_image(images / "tubingen.jpg"), load_image(images / "starry_night.jpg")


@pytest.fixture(scope="module")
def pan_frames(photos):
    return make_pan_frames(photos)


def make_pan_frames(photos):
    """Three frames of a camera panning over Tuebingen: frame t is the window whose top left
    corner is (150 + 3t, 200 - 7t) at full size, so the scene moves by TRUE_PAN per frame."""
    photo = photos[0]
    frames = []
    for t in range(3):
        top, left = 150 - t * PAN[1], 200 - t * PAN[0]
        frames.append(_shrink(photo[:, :, top:top + H * FACTOR, left:left + W * FACTOR]))
    return frames


PATCH, STEP, START = 48, (10, 0), (30, 30)  # the patch's side, its (columns, rows) per frame


def _patch_box(t):
    box = np.zeros((H, W), bool)
    row, col = START[0] + t * STEP[1], START[1] + t * STEP[0]
    box[row:row + PATCH, col:col + PATCH] = True
    return box


@pytest.fixture(scope="module")
def crossing_frames(photos):
    return make_crossing_frames(photos)


def make_crossing_frames(photos):
    """A 48 px patch of The Starry Night moving 10 px right per frame over a still Tuebingen:
    in frame 1 the 10 x 48 = 480 pixels the patch covered in frame 0 and no longer covers are
    disoccluded (seen in frame 1, hidden in frame 0); the true backward flow is (-10, 0) on the
    patch and 0 on the rest of the background."""
    photo, painting = photos
    background = _shrink(photo[:, :, 100:100 + H * FACTOR, 50:50 + W * FACTOR])
    patch = _shrink(painting[:, :, 150:150 + PATCH * FACTOR, 300:300 + PATCH * FACTOR])
    frames = []
    for t in range(2):
        frame = background.copy()
        frame[:, :, _patch_box(t)] = patch.reshape(1, 3, -1)
        frames.append(frame)
    return frames


_flows: dict = {}


def _pair(frames, method, key):
    """(forward, backward) of frames 0 -> 1, computed once per clip and method."""
    if (key, method) not in _flows:
        _flows[key, method] = (optical_flow(frames[0], frames[1], method),
                               optical_flow(frames[1], frames[0], method))
    return _flows[key, method]


def _endpoint_error(flow, true_flow):
    inner = (slice(None), slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    return float(np.sqrt(((flow - true_flow[:, None, None]) ** 2).sum(0))[inner[1:]].mean())


# The requirement: at most 0.5 px on a pan. Measured on these frames (OpenCV 5.1.0),
# forward / backward: deepflow 0.021 / 0.024, dis 0.092 / 0.108, farneback 0.356 / 0.353.
PAN_EPE = 0.5


@pytest.mark.shared
@pytest.mark.parametrize("method", METHODS)
def test_endpoint_error_on_a_pan_is_under_half_a_pixel(pan_frames, method):
    forward, backward = _pair(pan_frames, method, "pan")
    assert forward.shape == backward.shape == (2, H, W) and forward.dtype == np.float32
    assert _endpoint_error(forward, TRUE_PAN) <= PAN_EPE
    assert _endpoint_error(backward, -TRUE_PAN) <= PAN_EPE


@pytest.mark.shared
@pytest.mark.parametrize("method", METHODS)
def test_warping_along_the_computed_flow_is_as_good_as_along_the_true_one(pan_frames, method):
    """Frame 0 warped along the computed backward flow is frame 1 as closely as along the true
    flow (-1.75, 0.75): within 10 % + 0.002 of its mean absolute error (0.0215: bilinear
    interpolation's own blur of a sub-pixel shift), against 0.067 for the frames unwarped."""
    _, backward = _pair(pan_frames, method, "pan")
    inner = (slice(None), slice(None), slice(MARGIN, -MARGIN), slice(MARGIN, -MARGIN))
    warped, inside = warp(pan_frames[0], backward)
    ideal, _ = warp(pan_frames[0], np.broadcast_to(-TRUE_PAN[:, None, None], (2, H, W)).copy())
    assert inside[inner[2:]].all()
    error = np.abs(warped - pan_frames[1])[inner].mean()
    ideal_error = np.abs(ideal - pan_frames[1])[inner].mean()
    unwarped = np.abs(pan_frames[0] - pan_frames[1])[inner].mean()
    assert error <= 1.1 * ideal_error + 0.002 and 3 * error < unwarped


def _inner():
    inner = np.zeros((H, W), bool)
    inner[MARGIN:-MARGIN, MARGIN:-MARGIN] = True  # where p + w^(p) may leave the frame: not scored
    return inner


def occlusion_scores(forward, backward):
    """The consistency check (C1) of the computed flows against the known disoccluded pixels,
    away from the border: strict precision, recall and IoU; the precision against the pixels
    that *should* be flagged -- disoccluded, or where the computed backward flow is more than
    1 px from the true one (warping would be wrong there: flagging them is right); and the
    share of the disoccluded pixels that get the weight c = 0."""
    inner = _inner()
    truth = _patch_box(0) & ~_patch_box(1)
    true_backward = np.zeros((2, H, W), np.float32)
    true_backward[0][_patch_box(1)], true_backward[1][_patch_box(1)] = -STEP[0], -STEP[1]
    wrong = (np.sqrt(((backward - true_backward) ** 2).sum(0)) > 1) & ~truth & inner
    found = np.asarray(disoccluded(forward, backward)) & inner
    hits = (found & truth).sum()
    c = np.asarray(reliability(forward, backward))
    return {"precision": hits / found.sum(), "recall": hits / truth.sum(),
            "iou": hits / (found | truth).sum(),
            "precision_vs_wrong_flow": (found & (truth | wrong)).sum() / found.sum(),
            "c0_on_disoccluded": (c[truth] == 0).mean()}


# Measured on this clip (OpenCV 5.1.0, opencv-contrib-python-headless 5.1.0.95): strict
# precision / recall / IoU; precision counting pixels whose flow is wrong; c = 0 on the
# disoccluded pixels
#   dis       0.60 / 1.00 / 0.60,  0.89,  1.00
#   deepflow  0.33 / 0.74 / 0.30,  0.69,  0.81
#   farneback 0.09 / 0.40 / 0.08,  0.75,  0.47
# The flagged pixels that are not disoccluded lie around the patch, where a flow smears the
# patch's motion into the background and forward and backward flow then disagree: wrong flow,
# rightly flagged. DeepFlow smears more than DIS at full resolution; Farneback (a smooth
# polynomial fit) misses half the uncovered pixels and is not scored.
OCCLUSION_FLOOR = {
    "dis": {"iou": 0.5, "recall": 0.9, "precision_vs_wrong_flow": 0.8, "c0_on_disoccluded": 0.9},
    "deepflow": {"recall": 0.65, "precision_vs_wrong_flow": 0.6, "c0_on_disoccluded": 0.75},
}


@pytest.mark.shared
@pytest.mark.parametrize("method", sorted(OCCLUSION_FLOOR))
def test_disocclusions_of_a_crossing_object_are_found(crossing_frames, method):
    forward, backward = _pair(crossing_frames, method, "crossing")
    scores = occlusion_scores(forward, backward)
    for name, floor in OCCLUSION_FLOOR[method].items():
        assert scores[name] >= floor, (name, scores)


@pytest.mark.shared
@pytest.mark.parametrize("method", METHODS)
def test_warping_reproduces_the_next_frame_where_the_flow_is_reliable(crossing_frames, method):
    """Where c = 1 (away from the border) the warped frame 0 is frame 1 within 0.01 (mean
    absolute; measured 0.0003 dis, 0.0013 deepflow, 0.0047 farneback; unwarped they differ
    by 0.026-0.032 there), and c = 1 on 70 % of the pixels away from the border."""
    forward, backward = _pair(crossing_frames, method, "crossing")
    c = np.asarray(reliability(forward, backward)).astype(bool) & _inner()
    warped, _ = warp(crossing_frames[0], backward)
    error = np.abs(warped - crossing_frames[1])[0].mean(axis=0)
    assert error[c].mean() <= 0.01
    assert c.sum() >= 0.7 * _inner().sum()


@pytest.mark.shared
@pytest.mark.parametrize("method", METHODS)
def test_real_motion_people_walking(shared_dir, method):
    """vtest.avi (a car park, people walking), frames 1-3 at 192 px: on the pixels that change
    by more than 0.05 between frames and where the flow is reliable, warping the previous frame
    along the backward flow cuts the mean absolute difference at least 2x (measured: 0.32-0.38
    unwarped; warped 0.06 dis, 0.07-0.08 farneback, 0.11-0.12 deepflow)."""
    from minist.video.frames import read_clip

    frames = read_clip(shared_dir / "data" / "video" / "vtest.avi", frames=(1, 3),
                       longest_side=192).frames
    for previous, current in zip(frames[:-1], frames[1:], strict=True):
        forward, backward = (optical_flow(previous, current, method),
                             optical_flow(current, previous, method))
        c = np.asarray(reliability(forward, backward)).astype(bool)
        warped, _ = warp(previous, backward)
        unwarped = np.abs(current - previous)[0].mean(axis=0)
        moving = (unwarped > 0.05) & c
        assert moving.sum() > 150  # people walk
        assert np.abs(warped - current)[0].mean(axis=0)[moving].mean() <= \
            0.5 * unwarped[moving].mean()


# ----------------------------------------------------------------- convention, methods, pairs


def _shifted_pair(dx=3, dy=2, size=(96, 128), seed=0):
    """A smooth random texture, and the same moved dx right and dy down (integers)."""
    rng = np.random.default_rng(seed)
    big = rng.uniform(size=(1, 3, (size[0] + 8) // 2, (size[1] + 8) // 2)).astype(np.float32)
    big = np.repeat(np.repeat(big, 2, axis=2), 2, axis=3)
    big = cv2.GaussianBlur(big[0].transpose(1, 2, 0), (0, 0), 1.5).transpose(2, 0, 1)[None]
    a = np.ascontiguousarray(big[:, :, 4:4 + size[0], 4:4 + size[1]])
    b = np.ascontiguousarray(big[:, :, 4 - dy:4 - dy + size[0], 4 - dx:4 - dx + size[1]])
    return a, b


def test_flow_points_from_a_pixel_of_a_to_where_it_is_in_b():
    """b is a moved 3 px right and 2 px down: flow(a, b) = (u, v) = (3, 2), flow(b, a) =
    (-3, -2), each within 0.1 px on average in the middle (the sign and the order of u and v;
    measured: within 0.01 px for every method)."""
    a, b = _shifted_pair()
    for method in available_methods():
        middle = (slice(None), slice(16, -16), slice(16, -16))
        forward = optical_flow(a, b, method)[middle].reshape(2, -1).mean(axis=1)
        backward = optical_flow(b, a, method)[middle].reshape(2, -1).mean(axis=1)
        np.testing.assert_allclose(forward, [3, 2], atol=0.1, err_msg=method)
        np.testing.assert_allclose(backward, [-3, -2], atol=0.1, err_msg=method)


def test_methods_and_the_default():
    assert available_methods() == ("deepflow", "dis", "farneback")  # opencv-contrib installed
    assert default_method() == "deepflow"
    assert check_method("dis") == "dis"
    with pytest.raises(MinistError, match=r"^--flow: unknown method 'raft'; choose one of "
                                          r"deepflow, dis, farneback$"):
        check_method("raft")


def test_a_method_the_library_lacks_is_one_line(monkeypatch):
    """OpenCV without contrib (opencv-python) has no cv2.optflow: DeepFlow is refused in one
    line naming --flow and what is installed, and the default falls back to DIS."""
    monkeypatch.delattr(cv2, "optflow")
    assert available_methods() == ("dis", "farneback") and default_method() == "dis"
    with pytest.raises(MinistError) as info:
        check_method("deepflow")
    assert str(info.value) == ("--flow deepflow: the installed OpenCV lacks it (DeepFlow is in "
                               "opencv-contrib's cv2.optflow); installed: dis, farneback")


def test_pairs_short_and_long_term():
    assert pairs_for(4) == [(1, 1), (2, 1), (3, 1)]
    assert pairs_for(5, (1, 2, 4)) == [(1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (4, 1), (4, 2),
                                       (4, 4)]
    with pytest.raises(MinistError, match="^--long-term"):
        pairs_for(4, (0, 1))


def test_pair_flows_in_processes_match_one_process_and_are_cached(tmp_path, monkeypatch):
    a, b = _shifted_pair()
    c, _ = _shifted_pair(dx=1, dy=-2, seed=1)
    frames = [a, b, c]
    here = pair_flows(frames, "dis", long_term=(1, 2), workers=1)
    assert isinstance(here, PairFlows) and sorted(here.forward) == [(1, 1), (2, 1), (2, 2)]
    np.testing.assert_array_equal(here.forward[1, 1],
                                  optical_flow(a, b, "dis").astype(np.float16))
    np.testing.assert_array_equal(here.backward[2, 2],
                                  optical_flow(c, a, "dis").astype(np.float16))
    cache = tmp_path / "flows"
    pooled = pair_flows(frames, "dis", long_term=(1, 2), cache_dir=cache, workers=2)
    for key in here.forward:
        np.testing.assert_array_equal(pooled.forward[key], here.forward[key])
        np.testing.assert_array_equal(pooled.backward[key], here.backward[key])
    files = sorted(cache.iterdir())
    assert len(files) == 3 and all(f.name.startswith("flow-") and f.suffix == ".npz"
                                   for f in files)
    assert all(f.stat().st_size < 2 * 2 * 96 * 128 * 2 + 1024 for f in files)  # float16

    def no_computing(*args):
        raise AssertionError("a cached pair was computed again")

    monkeypatch.setattr(flow_module, "_compute_pair", no_computing)
    again = pair_flows(frames, "dis", long_term=(1, 2), cache_dir=cache, workers=1)
    for key in here.forward:
        np.testing.assert_array_equal(again.forward[key], here.forward[key])
    with pytest.raises(AssertionError, match="computed again"):  # another method: other keys
        pair_flows(frames, "farneback", cache_dir=cache, workers=1)


def test_pair_flows_on_a_dask_cluster_match_one_process(tmp_path):
    """``scheduler=ADDRESS`` (``minist video --scheduler``): the pairs as tasks of a running
    cluster -- here a one-worker LocalCluster in this process, listening on 127.0.0.1 -- give
    the very flows of one process, and are cached the same way."""
    distributed = pytest.importorskip("distributed")
    cv2 = pytest.importorskip("cv2")
    a, b = _shifted_pair()
    c, _ = _shifted_pair(dx=1, dy=-2, seed=1)
    frames = [a, b, c]
    here = pair_flows(frames, "dis", long_term=(1, 2), workers=1)
    threads = cv2.getNumThreads()  # a task sets one OpenCV thread: this process's, here
    try:
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                      protocol="tcp", host="127.0.0.1",
                                      dashboard_address=None) as cluster:
            assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
            remote = pair_flows(frames, "dis", long_term=(1, 2), cache_dir=tmp_path / "flows",
                                scheduler=cluster.scheduler_address)
    finally:
        cv2.setNumThreads(threads)
    for key in here.forward:
        np.testing.assert_array_equal(remote.forward[key], here.forward[key])
        np.testing.assert_array_equal(remote.backward[key], here.backward[key])
    assert len(list((tmp_path / "flows").glob("flow-*.npz"))) == 3


def test_a_scheduler_without_dask_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)
    a, b = _shifted_pair()
    with pytest.raises(MinistError, match=r"^--scheduler: .*pip install 'minist\[sweep\]'$"):
        pair_flows([a, b], "dis", scheduler="tcp://127.0.0.1:1")


@pytest.fixture()
def closed_port():
    """A port of 127.0.0.1 bound by this test but not listening: a connection to it is refused
    at once (and no other process can take it meanwhile)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_check_scheduler_says_in_one_line_when_nothing_answers(closed_port):
    pytest.importorskip("distributed")
    from minist.video.flow import check_scheduler

    for address in (f"tcp://127.0.0.1:{closed_port}", f"127.0.0.1:{closed_port}"):
        with pytest.raises(MinistError) as raised:
            check_scheduler(address, timeout=2.0)
        assert str(raised.value) == f"--scheduler {address}: cannot connect (Connection refused)"
    with pytest.raises(MinistError, match=r"^--scheduler tcp://127\.0\.0\.1:x: not an address"):
        check_scheduler("tcp://127.0.0.1:x")


def test_check_scheduler_passes_an_address_that_answers():
    """A listening socket accepts the connection (the kernel's backlog, nothing accepted by
    hand): the check asks no more than that; an in-process address is left to the cluster."""
    pytest.importorskip("distributed")
    import socket

    from minist.video.flow import check_scheduler

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        assert check_scheduler(f"tcp://127.0.0.1:{s.getsockname()[1]}", timeout=2.0) is None
    assert check_scheduler("inproc://10.0.0.1/1/2") is None


def test_processes_started_from_a_script_without_a_main_guard_do_not_run_it_again(tmp_path):
    """Spawned workers import the parent's ``__main__`` script to find their functions; a
    script with no ``if __name__ == "__main__"`` guard (a lesson, a user's) would run again in
    each worker and fail there. The pool's workers need only minist: the script runs once."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import numpy as np\n"
        "from minist.video.flow import pair_flows\n"
        "print('script ran', flush=True)\n"
        "rng = np.random.default_rng(0)\n"
        "frames = [rng.uniform(size=(1, 3, 24, 32)).astype(np.float32) for _ in range(3)]\n"
        "flows = pair_flows(frames, 'dis', long_term=(1, 2), workers=2)\n"
        "print('pairs', sorted(flows.forward))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == ["script ran", "pairs [(1, 1), (2, 1), (2, 2)]"]
