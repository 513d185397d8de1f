"""minist's HDF5 weight layout: a save/load round trip, and one clear line for every bad file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import TINY_CHANNELS, random_params
from hypothesis import given, settings
from hypothesis import strategies as st

from minist.architectures import ARCHITECTURES, conv_shapes
from minist.errors import MinistError
from minist.preprocessing import CAFFE, TORCHVISION, Preprocessing
from minist.weights.store import load_weights, save_weights

widths = st.tuples(*[st.integers(1, 5)] * 5)
ODD = Preprocessing("RGB", 255.0, (1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
preprocessings = st.sampled_from([TORCHVISION, CAFFE, ODD])


@settings(max_examples=25, deadline=None)
@given(
    arch=st.sampled_from(ARCHITECTURES),
    block_channels=widths,
    n_layers=st.integers(1, 16),
    prep=preprocessings,
    seed=st.integers(0, 2**16),
)
def test_save_load_round_trip(arch, block_channels, n_layers, prep, seed):
    names = list(conv_shapes(arch, block_channels))[:n_layers]  # a prefix: partial files too
    params = random_params(arch, block_channels, seed=seed, layers=names)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.h5"
        save_weights(path, arch, params, prep, "the source", "the licence", block_channels)
        loaded = load_weights(path)
    assert loaded.architecture == arch
    assert loaded.block_channels == tuple(block_channels)
    assert loaded.preprocessing == prep
    assert (loaded.source, loaded.license) == ("the source", "the licence")
    assert list(loaded.params) == names
    for name in names:
        for got, want in zip(loaded.params[name], params[name], strict=True):
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, want)
    assert loaded.is_complete == (len(names) == len(conv_shapes(arch, block_channels)))
    assert loaded.parameter_count == sum(w.size + b.size for w, b in params.values())


def test_save_refuses_bad_params_and_writes_nothing(tmp_path):
    params = random_params("vgg16")
    params["conv1_2"] = (params["conv1_2"][0][:, :1], params["conv1_2"][1])
    with pytest.raises(MinistError, match="conv1_2/weight has shape"):
        save_weights(tmp_path / "w.h5", "vgg16", params, CAFFE, "s", "l", TINY_CHANNELS)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.h5"
    save_weights(path, "vgg16", random_params("vgg16"), TORCHVISION, "s", "l", TINY_CHANNELS)
    load_weights(path)  # the starting point is valid
    return path


def _set_attr(name, value):
    def edit(f):
        f.attrs[name] = value

    return edit


def _del(key):
    def edit(f):
        del f[key]

    return edit


def _del_attr(name):
    def edit(f):
        del f.attrs[name]

    return edit


def _replace(key, make):
    def edit(f):
        old = f[key][()]
        del f[key]
        f.create_dataset(key, data=make(old))

    return edit


def _nan(f):
    w = f["conv2_1/weight"]
    w[0, 0, 0, 0] = np.nan


BAD_EDITS = {
    "missing attribute": (_del_attr("license"), "missing file attribute 'license'"),
    "missing architecture": (_del_attr("architecture"), "missing file attribute 'architecture'"),
    "wrong minist_format": (_set_attr("minist_format", "keras"), "minist_format is 'keras'"),
    "wrong format_version": (_set_attr("format_version", 7), "format_version 7 is not supported"),
    "unknown architecture": (_set_attr("architecture", "vgg11"), "unknown architecture 'vgg11'"),
    "bad channel order": (_set_attr("channel_order", "GBR"), "channel_order is 'GBR'"),
    "missing bias": (_del("conv1_1/bias"), "layer 'conv1_1' has no 'bias' dataset"),
    "wrong shape": (
        _replace("conv2_1/weight", lambda w: np.zeros((w.shape[0] + 1,) + w.shape[1:], w.dtype)),
        "conv2_1/weight has shape",
    ),
    "wrong dtype": (_replace("conv3_1/bias", lambda b: b.astype(np.float64)), "dtype float64"),
    "gap in layers": (_del("conv1_2"), "layer 'conv1_2' is missing"),
    "NaN": (_nan, "conv2_1 holds NaN"),
}


@pytest.mark.parametrize("case", list(BAD_EDITS))
def test_bad_file_gives_one_line_naming_file_and_problem(good_file, case):
    edit, problem = BAD_EDITS[case]
    with h5py.File(good_file, "r+") as f:
        edit(f)
    with pytest.raises(MinistError) as info:
        load_weights(good_file)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{good_file}: ")
    assert problem in message


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p, "no such file"),
        (lambda p: p.mkdir() or p, "is a directory"),
        (lambda p: p.write_bytes(b"not hdf5 at all\n" * 8) and p, "not a readable HDF5 file"),
    ],
    ids=["missing file", "directory", "not HDF5"],
)
def test_unreadable_path_gives_one_line(tmp_path, make, problem):
    path = make(tmp_path / "weights.h5")
    with pytest.raises(MinistError) as info:
        load_weights(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert problem in message
