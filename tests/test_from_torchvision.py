"""torchvision VGG state dicts -> minist's conv names, shapes and order."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import SHARED
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_files import write_legacy_checkpoint, write_zip_checkpoint

from minist.architectures import conv_layers, conv_shapes
from minist.errors import MinistError
from minist.weights.from_torchvision import TORCHVISION_LICENSE, torchvision_params
from minist.weights.torch_reader import read_torch_state_dict

WHERE = "vgg.pth"


def torchvision_index(arch: str) -> dict[str, int]:
    """torchvision's ``features`` index of each conv, counted by hand (independently of the
    code under test): each block is (Conv2d, ReLU) per conv, then MaxPool2d."""
    position = 0
    out = {}
    for block, n_convs in enumerate((2, 2, 3, 3, 3) if arch == "vgg16" else (2, 2, 4, 4, 4)):
        for i in range(n_convs):
            out[f"conv{block + 1}_{i + 1}"] = position
            position += 2  # Conv2d, ReLU
        position += 1  # MaxPool2d
    return out


def synthetic_state_dict(arch, classifier=True, dtype=np.float32):
    """``(state dict, {conv name: (weight, bias)})`` in torchvision's layout, real VGG shapes,
    random values. The classifier stands in with small shapes: minist ignores it, and the
    real one (123M numbers for VGG-16) would only slow the tests down. The dicts are new
    on each call; the arrays are shared (do not change them in place).
    """
    state = {key: value.astype(dtype, copy=False) for key, value in _features(arch).items()}
    if classifier:
        rng = np.random.default_rng(1)
        for i in (0, 3, 6):
            state[f"classifier.{i}.weight"] = rng.standard_normal((5, 7)).astype(dtype)
            state[f"classifier.{i}.bias"] = rng.standard_normal(5).astype(dtype)
    expected = {
        name: (state[f"features.{n}.weight"], state[f"features.{n}.bias"])
        for name, n in torchvision_index(arch).items()
    }
    return state, expected


@functools.cache
def _features(arch, seed=0, scale=0.01):
    rng = np.random.default_rng(seed)
    state = {}
    for name, (w_shape, b_shape) in conv_shapes(arch).items():
        n = torchvision_index(arch)[name]
        state[f"features.{n}.weight"] = rng.standard_normal(w_shape, dtype=np.float32) * scale
        state[f"features.{n}.bias"] = rng.standard_normal(b_shape, dtype=np.float32) * scale
    return state


def assert_params(params, expected, arch):
    assert list(params) == [spec.name for spec in conv_layers(arch)]
    for name, (w, b) in params.items():
        assert w.dtype == np.float32 and b.dtype == np.float32
        assert w.flags.c_contiguous and b.flags.c_contiguous
        np.testing.assert_array_equal(w, expected[name][0].astype(np.float32))
        np.testing.assert_array_equal(b, expected[name][1].astype(np.float32))


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize("classifier", [False, True], ids=["features-only", "full"])
def test_full_size_state_dicts(arch, classifier):
    state, expected = synthetic_state_dict(arch, classifier=classifier)
    architecture, params = torchvision_params(state, WHERE)
    assert architecture == arch
    assert_params(params, expected, arch)
    assert params["conv1_1"][0].shape == (64, 3, 3, 3)


@settings(max_examples=8, deadline=None)
@given(order=st.permutations(range(26)), dtype=st.sampled_from([np.float16, np.float64]))
def test_key_order_and_dtype_do_not_matter(order, dtype):
    """Keys in any order, float16/float64 values: the same float32 params in network order."""
    state, expected = synthetic_state_dict("vgg16", classifier=False, dtype=dtype)
    keys = list(state)
    shuffled = {keys[i]: state[keys[i]] for i in order}
    architecture, params = torchvision_params(shuffled, WHERE)
    assert architecture == "vgg16"
    assert_params(params, expected, "vgg16")


def test_data_parallel_prefix():
    state, expected = synthetic_state_dict("vgg19", classifier=True)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    architecture, params = torchvision_params(prefixed, WHERE)
    assert architecture == "vgg19"
    assert_params(params, expected, "vgg19")


@pytest.mark.parametrize("writer", [write_zip_checkpoint, write_legacy_checkpoint])
def test_end_to_end_from_a_checkpoint_file(writer, tmp_path):
    """Like torchvision's vgg16-397923af.pth: a file, through the reader, into params."""
    state, expected = synthetic_state_dict("vgg16", classifier=True)
    path = writer(tmp_path / "vgg16.pth", state)
    architecture, params = torchvision_params(read_torch_state_dict(path), str(path))
    assert architecture == "vgg16"
    assert_params(params, expected, "vgg16")


def _error(state) -> str:
    with pytest.raises(MinistError) as excinfo:
        torchvision_params(state, WHERE)
    message = str(excinfo.value)
    assert "\n" not in message and message.startswith(f"{WHERE}: ")
    return message


def test_wrong_shape_is_one_line_naming_key_and_layer():
    state, _ = synthetic_state_dict("vgg16", classifier=False)
    state["features.7.weight"] = np.zeros((128, 64, 5, 5), np.float32)
    message = _error(state)
    assert "features.7.weight (conv2_2)" in message and "(128, 128, 3, 3)" in message
    state, _ = synthetic_state_dict("vgg19", classifier=False)
    state["features.0.bias"] = np.zeros(63, np.float32)
    assert "features.0.bias (conv1_1)" in _error(state)


def test_wrong_conv_count():
    state, _ = synthetic_state_dict("vgg16", classifier=True)
    del state["features.28.weight"], state["features.28.bias"]
    assert "found 12 convolution layers" in _error(state)


def test_missing_bias():
    state, _ = synthetic_state_dict("vgg16", classifier=False)
    del state["features.5.bias"]
    assert "features.5.bias is missing" in _error(state)


def test_renumbered_features_do_not_match_the_layout():
    state, _ = synthetic_state_dict("vgg16", classifier=False)
    renumbered = {}
    for i, (w_key, b_key) in enumerate(zip(list(state)[::2], list(state)[1::2], strict=True)):
        renumbered[f"features.{i}.weight"], renumbered[f"features.{i}.bias"] = (
            state[w_key],
            state[b_key],
        )
    assert "torchvision's vgg16 has them at [0, 2, 5," in _error(renumbered)


def test_other_models_and_keys_are_refused():
    state, _ = synthetic_state_dict("vgg16", classifier=False)
    batch_norm = dict(state, **{"features.1.running_mean": np.zeros(64, np.float32)})
    assert "vgg16_bn" in _error(batch_norm)
    assert "unexpected key 'fc.weight'" in _error(dict(state, **{"fc.weight": np.zeros(3)}))
    resnet = {"conv1.weight": np.zeros((64, 3, 7, 7), np.float32)}
    assert "unexpected key 'conv1.weight'" in _error(resnet)
    only_classifier = {"classifier.0.weight": np.zeros((4, 4), np.float32)}
    assert "holds no features.N.weight" in _error(only_classifier)


def test_non_finite_values_are_refused():
    state, _ = synthetic_state_dict("vgg16", classifier=False)
    state["features.10.weight"] = state["features.10.weight"].copy()
    state["features.10.weight"][0, 0, 0, 0] = np.nan
    assert "conv3_1 holds NaN" in _error(state)


def test_license_text():
    assert TORCHVISION_LICENSE == "BSD-3-Clause (torchvision); trained on ImageNet, see its terms"


@pytest.mark.shared
def test_real_vgg16_features_checkpoint():
    path = SHARED / "weights" / "vgg16-features.pth"
    if not path.is_file():
        pytest.skip("../shared/weights/vgg16-features.pth is not present")
    architecture, params = torchvision_params(read_torch_state_dict(path), str(path))
    assert architecture == "vgg16"
    assert len(params) == 13 and params["conv1_1"][0].shape == (64, 3, 3, 3)
    assert all(np.isfinite(w).all() and np.isfinite(b).all() for w, b in params.values())
    # Trained filters, not an initialisation: conv1_1 sees colour, weights of both signs.
    w = params["conv1_1"][0]
    assert w.min() < 0 < w.max() and 0.01 < np.abs(w).mean() < 1.0
