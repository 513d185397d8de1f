"""Keras applications VGG files: layer names, HWIO -> OIHW, the classifier ignored, clear errors.

The synthetic files follow Keras 2's ``save_weights`` layout (see minist/weights/from_keras.py).
Full-size layers that carry no test data are created without writing them: HDF5 then stores
nothing and reads them back as zeros, so a complete VGG-19 file takes a few kilobytes on disk.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from minist.architectures import CONVS_PER_BLOCK, conv_shapes
from minist.errors import MinistError
from minist.preprocessing import CAFFE
from minist.weights.convert import convert_weights, detect_format
from minist.weights.from_keras import KERAS_LICENSE, keras_layer_to_minist, keras_params
from minist.weights.store import load_weights

# layers that carry random values in the synthetic files (the rest read back as zeros)
RANDOM_LAYERS = ("conv1_1", "conv1_2", "conv2_1")


def keras_layer_names(arch: str, top: bool) -> list[str]:
    """Every layer of Keras's VGG model, in order, as ``layer_names`` lists them."""
    names = ["input_1"]
    for block, n_convs in enumerate(CONVS_PER_BLOCK[arch], start=1):
        names += [f"block{block}_conv{i}" for i in range(1, n_convs + 1)] + [f"block{block}_pool"]
    if top:
        names += ["flatten", "fc1", "fc2", "predictions"]
    return names


def random_keras_values(arch: str, seed: int = 0, layers=RANDOM_LAYERS) -> dict:
    """{minist name: (weight (out, in, 3, 3), bias)} for a few layers, float32."""
    rng = np.random.default_rng(seed)
    shapes = conv_shapes(arch)
    return {
        name: tuple(rng.standard_normal(shape).astype(np.float32) for shape in shapes[name])
        for name in layers
    }


def write_keras_file(path, arch="vgg19", style="keras2", top=False, values=None, root=None):
    """Write a Keras VGG weight file; ``values`` (minist layout) fill some layers, zeros the rest.

    ``style`` "keras2" names weights ``block1_conv1/kernel:0`` (a nested group), "keras1" names
    them ``block1_conv1_W_1:0``; "chunked" also splits ``layer_names`` in two attributes.
    """
    values = values or {}
    shapes = conv_shapes(arch)
    with h5py.File(path, "w") as f:
        group = f.create_group(root) if root else f
        layers = keras_layer_names(arch, top)
        encoded = np.array([n.encode() for n in layers])
        if style == "chunked":
            group.attrs["layer_names0"], group.attrs["layer_names1"] = encoded[:9], encoded[9:]
        else:
            group.attrs["layer_names"] = encoded
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = b"2.2.4"
        for layer in layers:
            g = group.create_group(layer)
            name = keras_layer_to_minist(layer)
            if name is not None:
                (w_shape, b_shape) = shapes[name]
                kernel_shape = (w_shape[2], w_shape[3], w_shape[1], w_shape[0])  # HWIO
                data = values.get(name)
                arrays = (kernel_shape, b_shape) if data is None else (
                    data[0].transpose(2, 3, 1, 0), data[1])  # K[h, w, i, o] = W[o, i, h, w]
            elif layer in ("fc1", "fc2", "predictions"):
                n_in = {"fc1": 7 * 7 * 512, "fc2": 4096, "predictions": 4096}[layer]
                n_out = 1000 if layer == "predictions" else 4096
                arrays = ((n_in, n_out), (n_out,))
            else:
                g.attrs["weight_names"] = np.array([])  # what Keras writes for no weights
                continue
            if style == "keras1":
                weight_names = [f"{layer}_W_1:0", f"{layer}_b_1:0"]
            else:
                weight_names = [f"{layer}/kernel:0", f"{layer}/bias:0"]
            g.attrs["weight_names"] = np.array([n.encode() for n in weight_names])
            for weight_name, arr in zip(weight_names, arrays, strict=True):
                if isinstance(arr, tuple):
                    g.create_dataset(weight_name, shape=arr, dtype="<f4")  # unwritten: zeros
                else:
                    g.create_dataset(weight_name, data=arr)
    return path


@pytest.mark.parametrize("style", ["keras2", "keras1", "chunked"])
@pytest.mark.parametrize("top", [False, True], ids=["notop", "top"])
@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
def test_keras_params_reads_names_and_transposes(tmp_path, arch, style, top):
    values = random_keras_values(arch, seed=len(style) + top)
    path = write_keras_file(tmp_path / "k.h5", arch, style, top, values)
    architecture, params = keras_params(path)
    assert architecture == arch
    assert list(params) == list(conv_shapes(arch))  # every conv, in order; no classifier
    with h5py.File(path, "r") as f:
        kernel_name = "block1_conv2_W_1:0" if style == "keras1" else "block1_conv2/kernel:0"
        kernel = f["block1_conv2"][kernel_name][()]
    weight = params["conv1_2"][0]
    assert kernel.shape == (3, 3, 64, 64) and weight.shape == (64, 64, 3, 3)
    assert weight[7, 5, 1, 2] == kernel[1, 2, 5, 7]  # W[o, i, h, w] = K[h, w, i, o]
    assert weight[7, 5, 1, 2] != weight[5, 7, 1, 2]  # the hand-picked element is telling
    for name, (w, b) in params.items():
        assert w.dtype == np.float32 and b.dtype == np.float32
        want = values.get(name, (np.zeros_like(w), np.zeros_like(b)))
        np.testing.assert_array_equal(w, want[0])
        np.testing.assert_array_equal(b, want[1])


def test_whole_saved_model_is_read_from_model_weights(tmp_path):
    values = random_keras_values("vgg16", layers=("conv1_1",))
    path = write_keras_file(tmp_path / "m.h5", "vgg16", values=values, root="model_weights")
    assert detect_format(path) == "keras"
    _, params = keras_params(path)
    np.testing.assert_array_equal(params["conv1_1"][0], values["conv1_1"][0])


def test_convert_records_caffe_preprocessing_source_and_licence(tmp_path):
    values = random_keras_values("vgg19")
    src = write_keras_file(tmp_path / "vgg19_notop.h5", "vgg19", values=values)
    out = convert_weights(src, tmp_path / "vgg19.h5")
    loaded = load_weights(out)
    assert loaded.architecture == "vgg19" and loaded.is_complete
    assert loaded.preprocessing == CAFFE
    assert loaded.license == KERAS_LICENSE
    assert loaded.source.startswith("vgg19_notop.h5 (sha256 ")
    np.testing.assert_array_equal(loaded.params["conv2_1"][0], values["conv2_1"][0])


def _channels_first(f):
    kernel = f["block1_conv1/block1_conv1/kernel:0"]
    data = np.zeros(kernel.shape[::-1], np.float32)
    del f["block1_conv1/block1_conv1/kernel:0"]
    f["block1_conv1/block1_conv1/kernel:0"] = data


def _extra_weighted_layer(f):
    f.attrs["layer_names"] = np.append(f.attrs["layer_names"], b"dense_9")
    g = f.create_group("dense_9")
    g.attrs["weight_names"] = np.array([b"dense_9/kernel:0"])
    g["dense_9/kernel:0"] = np.zeros((2, 2), np.float32)


def _drop_block5(f):
    f.attrs["layer_names"] = [n for n in f.attrs["layer_names"] if not n.startswith(b"block5")]


def _bias_missing(f):
    del f["block2_conv1/block2_conv1/bias:0"]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda f: f.attrs.__delitem__("layer_names"), "no 'layer_names' attribute"),
        (_channels_first, "expected (3, 3, in, out)"),
        (_extra_weighted_layer, "unexpected layer 'dense_9' with weights"),
        (_drop_block5, "found 10 convolution layers"),
        (_bias_missing, "lists 'block2_conv1/bias:0', which is missing"),
    ],
    ids=["no layer_names", "channels first", "unknown layer", "wrong count", "bias missing"],
)
def test_bad_keras_file_gives_one_line(tmp_path, edit, problem):
    path = write_keras_file(tmp_path / "bad.h5", "vgg16")
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(MinistError) as info:
        keras_params(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    assert problem in message
