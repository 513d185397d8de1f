"""``minist weights convert`` and ``info`` end to end: torchvision, Keras and NumPy sources.

Synthetic sources are full size (the store checks the standard VGG shapes) but mostly zeros;
a few layers carry random values so that a wrong mapping or transposition shows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import random_params
from test_from_keras import random_keras_values, write_keras_file
from torch_files import write_legacy_checkpoint, write_zip_checkpoint

from minist.architectures import conv_shapes, layer_table
from minist.cli import main
from minist.preprocessing import CAFFE, TORCHVISION
from minist.weights.store import load_weights, save_weights, sha256_of

SHARED_WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "weights"


def run(capsys, *args):
    rc = main(["weights", *map(str, args)])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc, err, *fragments):
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minist: error: "), err
    for fragment in fragments:
        assert str(fragment) in lines[0]


def _mostly_zero_params(arch, seed=0, n_random=2):
    """Standard-shape params: zeros, except the first ``n_random`` layers (random)."""
    random = random_keras_values(arch, seed, list(conv_shapes(arch))[:n_random])
    return {
        name: random.get(name, (np.zeros(w, np.float32), np.zeros(b, np.float32)))
        for name, (w, b) in conv_shapes(arch).items()
    }


def torchvision_state_dict(params, arch, classifier=True):
    """minist params -> torchvision keys (``features.N`` = position N in the layer table)."""
    index = {s.name: i for i, s in enumerate(layer_table(arch)) if s.kind == "conv"}
    state = {}
    for name, (w, b) in params.items():
        state[f"features.{index[name]}.weight"] = w
        state[f"features.{index[name]}.bias"] = b
    if classifier:
        state["classifier.6.weight"] = np.ones((10, 4), np.float32)
        state["classifier.6.bias"] = np.ones(10, np.float32)
    return state


def npz_arrays(params, dtype=np.float32):
    """minist params -> the ``<layer>_W`` / ``<layer>_b`` arrays of an .npz archive."""
    arrays = {}
    for name, (w, b) in params.items():
        arrays[f"{name}_W"], arrays[f"{name}_b"] = w.astype(dtype), b.astype(dtype)
    return arrays


def _assert_same_params(loaded, params):
    assert list(loaded.params) == list(params)
    for name, (w, b) in params.items():
        np.testing.assert_array_equal(loaded.params[name][0], w)
        np.testing.assert_array_equal(loaded.params[name][1], b)


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_convert_torchvision_checkpoint(tmp_path, capsys, layout):
    params = _mostly_zero_params("vgg16", seed=3)
    writer = write_zip_checkpoint if layout == "zip" else write_legacy_checkpoint
    src = writer(tmp_path / "vgg16-0123abcd.pth", torchvision_state_dict(params, "vgg16"))
    rc, out, err = run(capsys, "convert", src, "-o", tmp_path / "vgg16.h5")
    assert (rc, err) == (0, "")
    assert "vgg16" in out and "complete" in out
    loaded = load_weights(tmp_path / "vgg16.h5")
    assert loaded.architecture == "vgg16" and loaded.preprocessing == TORCHVISION
    assert loaded.source == f"vgg16-0123abcd.pth (sha256 {sha256_of(src)})"
    _assert_same_params(loaded, params)


def test_convert_keras_then_info(tmp_path, capsys):
    values = random_keras_values("vgg19", seed=5)
    src = write_keras_file(tmp_path / "vgg19_notop.h5", "vgg19", values=values)
    out_file = tmp_path / "vgg19.h5"
    rc, out, err = run(capsys, "convert", src, "-o", out_file, "--arch", "vgg19")
    assert (rc, err) == (0, "")
    loaded = load_weights(out_file)
    assert loaded.preprocessing == CAFFE
    for name, (w, b) in values.items():
        np.testing.assert_array_equal(loaded.params[name][0], w)
        np.testing.assert_array_equal(loaded.params[name][1], b)

    rc, out, err = run(capsys, "info", out_file)
    assert (rc, err) == (0, "")
    shapes = conv_shapes("vgg19")
    total = sum(int(np.prod(w)) + b[0] for w, b in shapes.values())
    assert "vgg19" in out and "complete (16 conv layers)" in out
    assert CAFFE.describe() in out
    assert loaded.source in out and loaded.license in out
    assert f"{total:,}" in out
    assert sha256_of(out_file) in out
    assert f"{out_file.stat().st_size:,} bytes" in out
    table = [line.split() for line in out.splitlines() if line.strip().startswith("conv")]
    assert [row[0] for row in table] == list(shapes)
    w_shape, _ = shapes["conv3_2"]
    row = dict((r[0], r) for r in table)["conv3_2"]
    assert row[-1] == f"{int(np.prod(w_shape)) + w_shape[0]:,}"


def test_convert_npz_complete_and_partial(tmp_path, capsys):
    params = _mostly_zero_params("vgg16", seed=1)
    full = tmp_path / "full.npz"
    np.savez(full, **npz_arrays(params))
    rc, _, err = run(capsys, "convert", full, "-o", tmp_path / "full.h5")
    assert (rc, err) == (0, "")
    loaded = load_weights(tmp_path / "full.h5")
    assert loaded.architecture == "vgg16" and loaded.preprocessing == CAFFE
    _assert_same_params(loaded, params)

    partial = tmp_path / "partial.npz"
    first3 = random_keras_values("vgg16", 2, ["conv1_1", "conv1_2", "conv2_1"])
    np.savez(partial, **npz_arrays(first3, np.float64))  # float64 is accepted and cast
    rc, _, err = run(capsys, "convert", partial, "-o", tmp_path / "p.h5")
    assert_one_line_error(rc, err, partial, "--arch")
    assert not (tmp_path / "p.h5").exists()
    rc, _, err = run(capsys, "convert", partial, "-o", tmp_path / "p.h5", "--arch", "vgg16")
    assert (rc, err) == (0, "")
    rc, out, _ = run(capsys, "info", tmp_path / "p.h5")
    assert "partial: 3 of 13 conv layers, up to conv2_1" in out
    _assert_same_params(load_weights(tmp_path / "p.h5"), first3)


def _garbage(folder):
    path = folder / "garbage.bin"
    path.write_bytes(bytes(range(256)) * 4)
    return path, ["garbage.bin", "supported: torchvision"]


def _minist_file(folder):
    path = folder / "already.h5"
    save_weights(path, "vgg16", random_params("vgg16"), CAFFE, "s", "l", (4, 4, 6, 6, 8))
    return path, ["already.h5", "already a minist weight file"]


def _wrong_arch(folder):
    path = folder / "k16.h5"
    write_keras_file(path, "vgg16")
    return path, ["--arch vgg19", "k16.h5", "holds a vgg16 network"]


def _wrong_format(folder):
    path = folder / "k16.h5"
    write_keras_file(path, "vgg16")
    return path, ["k16.h5", "not a readable NumPy .npz archive"]


def _missing(folder):
    return folder / "absent.pth", ["absent.pth", "no such file"]


def _npz_wrong_shape(folder):
    path = folder / "bad.npz"
    np.savez(path, conv1_1_W=np.zeros((64, 3, 3, 3), np.float32), conv1_1_b=np.zeros(63))
    return path, ["bad.npz", "conv1_1/bias has shape (63,)"]


ERROR_CASES = {
    "unknown format": (_garbage, []),
    "already minist": (_minist_file, []),
    "arch disagrees": (_wrong_arch, ["--arch", "vgg19"]),
    "format forced wrong": (_wrong_format, ["--format", "npz"]),
    "missing source": (_missing, []),
    "bad npz shape": (_npz_wrong_shape, ["--arch", "vgg19"]),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_convert_errors_exit_2_with_one_line_and_no_file(tmp_path, capsys, case):
    make, extra = ERROR_CASES[case]
    src, fragments = make(tmp_path)
    before = sorted(tmp_path.iterdir())
    rc, out, err = run(capsys, "convert", src, "-o", tmp_path / "out.h5", *extra)
    assert_one_line_error(rc, err, *fragments)
    assert out == ""
    assert sorted(tmp_path.iterdir()) == before  # no output, no temporary file


@pytest.mark.parametrize(
    ("out_name", "problem"),
    [("missing-folder/out.h5", "does not exist"), (".", "is a directory")],
)
def test_unwritable_output_is_refused_before_reading(tmp_path, capsys, out_name, problem):
    src, _ = _garbage(tmp_path)  # would fail later; the output check must come first
    rc, _, err = run(capsys, "convert", src, "-o", tmp_path / out_name)
    assert_one_line_error(rc, err, problem)


def test_info_of_a_bad_file_is_one_line(tmp_path, capsys):
    src, _ = _garbage(tmp_path)
    rc, _, err = run(capsys, "info", src)
    assert_one_line_error(rc, err, src, "not a readable HDF5 file")


@pytest.mark.shared
def test_real_torchvision_vgg16_converts(tmp_path, capsys):
    src = SHARED_WEIGHTS / "vgg16-features.pth"
    if not src.is_file():
        pytest.skip("../shared/weights/vgg16-features.pth is not present")
    out_file = tmp_path / "vgg16.h5"
    rc, _, err = run(capsys, "convert", src, "-o", out_file)
    assert (rc, err) == (0, "")
    rc, out, err = run(capsys, "info", out_file)
    assert (rc, err) == (0, "")
    print(out)
    loaded = load_weights(out_file)
    assert loaded.architecture == "vgg16" and loaded.is_complete
    assert loaded.preprocessing == TORCHVISION
    assert sha256_of(src) in loaded.source and "complete (13 conv layers)" in out
    assert 0.01 < float(np.std(loaded.params["conv1_1"][0])) < 10  # trained, not zeros


@pytest.mark.shared
def test_real_partial_vgg19_npz_converts_with_arch(tmp_path, capsys):
    src = SHARED_WEIGHTS / "vgg19-partial-conv1_1-conv3_4.npz"
    if not src.is_file():
        pytest.skip("../shared/weights/vgg19-partial-conv1_1-conv3_4.npz is not present")
    out_file = tmp_path / "vgg19-partial.h5"
    rc, _, err = run(capsys, "convert", src, "-o", out_file)
    assert_one_line_error(rc, err, src, "--arch")
    rc, _, err = run(capsys, "convert", src, "-o", out_file, "--arch", "vgg19")
    assert (rc, err) == (0, "")
    rc, out, _ = run(capsys, "info", out_file)
    assert "partial: 8 of 16 conv layers, up to conv3_4" in out
    loaded = load_weights(out_file)
    assert loaded.preprocessing == CAFFE
    with np.load(src) as archive:
        for name, (w, b) in loaded.params.items():
            np.testing.assert_array_equal(w, archive[f"{name}_W"])
            np.testing.assert_array_equal(b, archive[f"{name}_b"])
