"""The torch-free checkpoint reader: both layouts, views, damaged and malicious files."""

from __future__ import annotations

import hashlib
import pickle
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_files import (
    Global,
    Strided,
    malicious_pickle,
    write_legacy_checkpoint,
    write_malicious_legacy_checkpoint,
    write_malicious_zip_checkpoint,
    write_zip_checkpoint,
)

from minist.errors import MinistError
from minist.weights.torch_reader import read_torch_state_dict

SHARED_VGG16 = SHARED / "weights" / "vgg16-features.pth"
SHARED_VGG16_SHA256 = "63384c0e0efe9c078b0e01319c84170274e561ebf9c6c5ae0e4d41bb8b340430"

DTYPES = (np.float32, np.float64, np.float16, np.int64, np.int8, np.bool_)
# (writer, tensor style): the 2017 legacy files use _rebuild_tensor ("v1"), later ones v2.
LAYOUTS = [
    (write_zip_checkpoint, "v2"),
    (write_zip_checkpoint, "parameter"),
    (write_legacy_checkpoint, "v1"),
    (write_legacy_checkpoint, "v2"),
    (write_legacy_checkpoint, "parameter"),
]
LAYOUT_IDS = ["zip-v2", "zip-param", "legacy-v1", "legacy-v2", "legacy-param"]
FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def random_array(rng, dtype, shape):
    if dtype == np.bool_:
        return np.asarray(rng.random(shape) < 0.5)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.asarray(rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True))
    return np.asarray(rng.standard_normal(shape), dtype=dtype)


def round_trip(writer, style, state_dict):
    with tempfile.TemporaryDirectory() as folder:
        path = writer(Path(folder) / "ckpt.pth", state_dict, tensor_style=style)
        return read_torch_state_dict(path)


def assert_same(got: dict, state_dict: dict):
    assert list(got) == list(state_dict)
    for name, value in state_dict.items():
        expected = value.expected() if isinstance(value, Strided) else value
        assert got[name].dtype == expected.dtype, name
        assert got[name].shape == expected.shape, name
        assert np.array_equal(got[name], expected), name
        assert got[name].flags.c_contiguous and got[name].flags.writeable


def assert_one_line_error(excinfo, path, *words):
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for word in words:
        assert word in message, message


# --- round trips -------------------------------------------------------------------------------

shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)


@pytest.mark.parametrize(("writer", "style"), LAYOUTS, ids=LAYOUT_IDS)
@FAST
@given(
    entries=st.lists(st.tuples(st.sampled_from(DTYPES), shapes), min_size=1, max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_contiguous_tensors_round_trip(writer, style, entries, seed):
    rng = np.random.default_rng(seed)
    state_dict = {
        f"layer.{i}.weight": random_array(rng, dtype, shape)
        for i, (dtype, shape) in enumerate(entries)
    }
    assert_same(round_trip(writer, style, state_dict), state_dict)


@st.composite
def strided_views(draw):
    """A random view (offset, shape, stride; strides may be 0, transposed, overlapping)."""
    ndim = draw(st.integers(0, 3))
    shape = tuple(draw(st.integers(0, 4)) for _ in range(ndim))
    stride = tuple(draw(st.integers(0, 6)) for _ in range(ndim))
    offset = draw(st.integers(0, 5))
    reach = 0 if 0 in shape else sum((n - 1) * s for n, s in zip(shape, stride, strict=True)) + 1
    size = offset + reach + draw(st.integers(0, 3))
    return offset, shape, stride, size


@pytest.mark.parametrize(("writer", "style"), LAYOUTS, ids=LAYOUT_IDS)
@FAST
@given(views=st.lists(strided_views(), min_size=1, max_size=3), dtype=st.sampled_from(DTYPES),
       seed=st.integers(0, 2**32 - 1))
def test_strided_views_round_trip(writer, style, views, dtype, seed):
    rng = np.random.default_rng(seed)
    state_dict = {
        f"v{i}": Strided(random_array(rng, dtype, (size,)), offset, shape, stride)
        for i, (offset, shape, stride, size) in enumerate(views)
    }
    assert_same(round_trip(writer, style, state_dict), state_dict)


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_shared_storage_gives_independent_copies(writer, tmp_path):
    base = np.arange(12, dtype=np.float32)
    state_dict = {
        "a": Strided(base, 0, (3, 4), (4, 1)),
        "a_t": Strided(base, 0, (4, 3), (1, 4)),  # the transpose, like tensor.t()
        "tail": Strided(base, 7, (5,), (1,)),
    }
    path = writer(tmp_path / "shared.pth", state_dict)
    if writer is write_zip_checkpoint:  # one storage in the file, used three times
        assert sum("/data/" in n for n in zipfile.ZipFile(path).namelist()) == 1
    got = read_torch_state_dict(path)
    assert_same(got, state_dict)
    got["a"][0, 0] = 100.0
    assert got["a_t"][0, 0] == 0.0 and got["tail"][0] == 7.0


def test_legacy_storage_views(tmp_path):
    """Legacy view_metadata: a storage that is a slice of a larger root storage."""
    root = np.arange(40, dtype=np.float64)
    view = root[10:30]
    state_dict = {
        "in_view": Strided(view, 2, (3, 4), (4, 1), view_of=(root, 10)),
        "in_view_t": Strided(view, 0, (2, 5), (1, 2), view_of=(root, 10)),
        "in_root": Strided(root, 35, (5,), (1,)),
    }
    got = read_torch_state_dict(write_legacy_checkpoint(tmp_path / "v.pth", state_dict))
    assert_same(got, state_dict)
    assert got["in_view"][0, 0] == 12.0  # root offset 10 + tensor offset 2


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_bfloat16_widens_exactly_to_float32(writer, tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 2.0**100, -0.0, np.inf], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)  # exact: low halves are zero
    assert np.array_equal((bits.astype(np.uint32) << 16).view(np.float32), values)
    state_dict = {"w": Strided(bits, 0, (6,), (1,), storage_type="BFloat16Storage")}
    got = read_torch_state_dict(writer(tmp_path / "bf16.pth", state_dict))
    assert got["w"].dtype == np.float32
    assert np.array_equal(got["w"], values)


def test_big_endian_zip(tmp_path):
    rng = np.random.default_rng(0)
    state_dict = {"w": rng.standard_normal((3, 5)).astype(np.float32), "i": np.arange(4)}
    path = write_zip_checkpoint(tmp_path / "be.pth", state_dict, byteorder="big")
    got = read_torch_state_dict(path)
    assert_same(got, state_dict)
    assert got["w"].dtype.isnative


@pytest.mark.parametrize("prefix", ["archive", "vgg16_features", "my model.v2"])
def test_zip_prefix_and_missing_byteorder(prefix, tmp_path):
    state_dict = {"features.0.weight": np.ones((2, 3), np.float32)}
    path = write_zip_checkpoint(tmp_path / "p.pth", state_dict, prefix=prefix, byteorder=None)
    assert_same(read_torch_state_dict(path), state_dict)


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_state_dict_wrapped_in_a_training_checkpoint(writer, tmp_path):
    inner = {"features.0.weight": np.full((2, 2), 3.0, np.float32), "features.0.bias": np.zeros(2)}
    checkpoint = {"epoch": 90, "arch": "vgg16", "best_acc1": 71.5, "state_dict": inner}
    assert_same(read_torch_state_dict(writer(tmp_path / "w.pth", checkpoint)), inner)


# --- files that are not (whole) checkpoints ----------------------------------------------------


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_truncated_file(writer, tmp_path):
    rng = np.random.default_rng(1)
    state_dict = {f"w{i}": rng.standard_normal((8, 8)).astype(np.float32) for i in range(3)}
    whole = writer(tmp_path / "whole.pth", state_dict).read_bytes()
    for cut in (1, 20, len(whole) // 3, len(whole) // 2, len(whole) - 100, len(whole) - 1):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(whole[:cut])
        with pytest.raises(MinistError) as excinfo:
            read_torch_state_dict(path)
        assert_one_line_error(excinfo, path)


def test_not_a_checkpoint(tmp_path):
    cases = {
        "empty.pth": b"",
        "text.pth": b"hello, I am a text file\n",
        "random.pth": np.random.default_rng(2).bytes(1000),
        "plain-pickle.pth": pickle.dumps({"a": [1, 2, 3]}, protocol=2),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    np.savez(tmp_path / "arrays.npz", a=np.ones(3))  # a zip archive without data.pkl
    for name in [*cases, "arrays.npz"]:
        with pytest.raises(MinistError) as excinfo:
            read_torch_state_dict(tmp_path / name)
        assert_one_line_error(excinfo, tmp_path / name, "not a PyTorch checkpoint")
    for path, words in ((tmp_path / "missing.pth", "no such file"), (tmp_path, "directory")):
        with pytest.raises(MinistError) as excinfo:
            read_torch_state_dict(path)
        assert_one_line_error(excinfo, path, words)


def test_torchscript_archive_is_named(tmp_path):
    path = write_zip_checkpoint(tmp_path / "ts.pt", {"w": np.ones(2, np.float32)})
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("archive/constants.pkl", b"")
    with pytest.raises(MinistError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_error(excinfo, path, "TorchScript")


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_entries_that_are_not_tensors(writer, tmp_path):
    for bad, words in (({"w": np.ones(2), "n": 3}, "'n' is a int"), ([np.ones(2)], "holds a list")):
        path = writer(tmp_path / "b.pth", bad)
        with pytest.raises(MinistError) as excinfo:
            read_torch_state_dict(path)
        assert_one_line_error(excinfo, path, words)


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_unknown_storage_type(writer, tmp_path):
    state_dict = {"q": Strided(np.zeros(4, np.uint8), 0, (4,), (1,), storage_type="QUInt8Storage")}
    path = writer(tmp_path / "q.pth", state_dict)
    with pytest.raises(MinistError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_error(excinfo, path, "unsupported tensor storage type torch.QUInt8Storage")


def test_zip_storage_of_the_wrong_size(tmp_path):
    good = write_zip_checkpoint(tmp_path / "good.pth", {"w": np.arange(6, dtype=np.float32)})
    path = tmp_path / "short.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[:-4] if item.filename.endswith("/data/0") else data)
    with pytest.raises(MinistError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_error(excinfo, path, "holds 20 bytes, expected 24")


def test_legacy_element_count_mismatch(tmp_path):
    path = write_legacy_checkpoint(tmp_path / "l.pth", {"w": np.arange(6, dtype=np.float32)})
    raw = bytearray(path.read_bytes())
    count_at = len(raw) - 6 * 4 - 8  # the int64 before the only storage's data
    assert int.from_bytes(raw[count_at : count_at + 8], "little") == 6
    raw[count_at] = 5
    path.write_bytes(bytes(raw))
    with pytest.raises(MinistError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_error(excinfo, path, "holds 5 elements, expected 6")


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_tensor_reaching_past_its_storage(writer, tmp_path):
    state_dict = {"w": Strided(np.zeros(10, np.float32), 5, (2, 3), (3, 1))}  # 5+3+2 = 10
    path = writer(tmp_path / "past.pth", state_dict)
    with pytest.raises(MinistError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_error(excinfo, path, "reaches past the end of its storage")


def test_tensor_blown_up_by_zero_strides_is_refused(tmp_path):
    """A forged size with zero strides must not allocate 10^12 numbers."""
    state_dict = {"w": Strided(np.zeros(4, np.float32), 0, (10**6, 10**6), (0, 0))}
    path = write_zip_checkpoint(tmp_path / "bomb.pth", state_dict)
    with pytest.raises(MinistError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_error(excinfo, path, "implausibly")


# --- malicious files ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["os.system", "builtins.eval"])
def test_payload_really_runs_under_plain_pickle(how, tmp_path):
    """Control for the next test: the payload is live, so 'no marker' there means refused."""
    marker = tmp_path / "ran"
    pickle.loads(malicious_pickle(marker, how))
    assert marker.exists()


@pytest.mark.parametrize("how", ["os.system", "builtins.eval"])
@pytest.mark.parametrize(
    "write", [write_malicious_zip_checkpoint, write_malicious_legacy_checkpoint]
)
def test_malicious_pickle_is_refused_and_not_run(write, how, tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path / "evil.pth", marker, how)
    with pytest.raises(MinistError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_error(excinfo, path, f"refused to load: the pickle asks for {how}",
                          "possibly malicious")
    assert not marker.exists()


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_unknown_global_in_storage_position_is_refused(writer, tmp_path):
    """Only torch.*Storage names are storage types: torch.load itself is not one."""
    path = writer(tmp_path / "g.pth", {"w": Global("torch", "load")})
    with pytest.raises(MinistError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_error(excinfo, path, "refused to load", "torch.load")


# --- against real files ------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_matches_torch_save(legacy, tmp_path):
    """Files written by real torch.save read to exactly torch's values (needs torch)."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))
    state = net.state_dict()  # carries _metadata, like every real checkpoint
    base = torch.randn(5, 7, dtype=torch.float64)
    state["transposed"] = base.t()
    state["sliced"] = base[1:4, ::2]
    state["half"] = torch.randn(3, 2).half()
    state["bf16"] = torch.randn(4).bfloat16()
    state["long"] = torch.arange(5)
    params = dict(net.state_dict(keep_vars=True))  # Parameters, not plain tensors
    kwargs = {"_use_new_zipfile_serialization": False} if legacy else {}
    torch.save(state, tmp_path / "a.pth", **kwargs)
    torch.save({"state_dict": params, "epoch": 3}, tmp_path / "b.pth", **kwargs)
    for path, expected in ((tmp_path / "a.pth", state), (tmp_path / "b.pth", params)):
        got = read_torch_state_dict(path)
        assert list(got) == list(expected)
        for name, tensor in expected.items():
            tensor = tensor.detach()
            want = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
            assert got[name].dtype == want.dtype and np.array_equal(got[name], want), name


@pytest.mark.shared
def test_real_vgg16_features_checkpoint():
    if not SHARED_VGG16.is_file():
        pytest.skip("../shared/weights/vgg16-features.pth is not present")
    assert hashlib.sha256(SHARED_VGG16.read_bytes()).hexdigest() == SHARED_VGG16_SHA256
    state = read_torch_state_dict(SHARED_VGG16)
    assert len(state) == 26
    assert state["features.0.weight"].shape == (64, 3, 3, 3)
    assert state["features.28.weight"].shape == (512, 512, 3, 3)
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in state.values())


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_torch_reads_our_synthetic_files(writer, tmp_path):
    """The hand-written test files are genuine checkpoints: torch.load agrees (needs torch)."""
    torch = pytest.importorskip("torch")
    base = np.arange(20, dtype=np.float32)
    state_dict = {"w": np.ones((2, 3), np.float16), "v": Strided(base, 3, (4, 2), (1, 5))}
    loaded = torch.load(writer(tmp_path / "ours.pth", state_dict), weights_only=True)
    assert np.array_equal(loaded["w"].numpy(), state_dict["w"])
    assert np.array_equal(loaded["v"].numpy(), state_dict["v"].expected())
