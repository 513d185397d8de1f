"""Tests for minist.images: formats, modes, EXIF orientation, resizing, metadata, bad input.

Every test image is written with Pillow (or byte by byte) into ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import string
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFile

from minist import images
from minist.backend import gpu_available
from minist.errors import MinistError
from minist.images import (
    SUPPORTED_EXTENSIONS,
    image_size,
    load_image,
    read_png_metadata,
    resize_longest,
    save_image,
)

FILE_SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def u8_to_unit(u8: np.ndarray) -> np.ndarray:
    """Reference conversion of 8-bit (H, W, 3) pixels to the (1, 3, H, W) float32 layout."""
    return (u8.astype(np.float64) / 255.0).astype(np.float32).transpose(2, 0, 1)[None]


def random_u8(rng, H, W, C=3) -> np.ndarray:
    return rng.integers(0, 256, size=(H, W, C), dtype=np.uint8)


def smooth_u8(H, W) -> np.ndarray:
    """A smooth colour gradient: what lossy codecs reproduce well."""
    y, x = np.mgrid[0:H, 0:W]
    rgb = np.stack([x / (W - 1), y / (H - 1), 0.5 + 0.3 * np.sin(x / 7.0)], axis=-1)
    return np.rint(255 * rgb).astype(np.uint8)


def assert_one_line_naming(excinfo, path: Path, *words: str) -> None:
    message = str(excinfo.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message.lower()


# ---------------------------------------------------------------------------------------------
# Formats round-trip
# ---------------------------------------------------------------------------------------------


@FILE_SETTINGS
@given(H=st.integers(1, 12), W=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
def test_png_roundtrip_is_exact_at_8_bits(tmp_path, H, W, seed):
    expected = u8_to_unit(random_u8(np.random.default_rng(seed), H, W))
    path = save_image(tmp_path / "x.png", expected)
    loaded = load_image(path)
    assert loaded.dtype == np.float32 and loaded.shape == (1, 3, H, W)
    np.testing.assert_array_equal(loaded, expected)


@pytest.mark.parametrize("ext", [".tif", ".tiff", ".bmp", ".PNG"])
def test_lossless_formats_roundtrip_exactly(tmp_path, ext):
    expected = u8_to_unit(random_u8(np.random.default_rng(1), 9, 14))
    path = save_image(tmp_path / f"x{ext}", expected)
    with Image.open(path) as im:
        assert im.format == SUPPORTED_EXTENSIONS[ext.lower()]
    np.testing.assert_array_equal(load_image(path), expected)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp"])
def test_lossy_formats_roundtrip_approximately(tmp_path, ext):
    expected = u8_to_unit(smooth_u8(48, 64))
    path = save_image(tmp_path / f"x{ext}", expected)
    with Image.open(path) as im:
        assert im.format == SUPPORTED_EXTENSIONS[ext]
    loaded = load_image(path)
    assert loaded.shape == expected.shape
    assert np.abs(loaded - expected).mean() < 0.01
    assert np.abs(loaded - expected).max() < 0.1


def test_save_without_extension_writes_png(tmp_path):
    path = save_image(tmp_path / "result", u8_to_unit(random_u8(np.random.default_rng(2), 3, 4)))
    assert path == tmp_path / "result.png"
    with Image.open(path) as im:
        assert im.format == "PNG"


def test_save_accepts_chw_and_clips_and_rounds(tmp_path):
    chw = np.array([-0.5, 0.0, 0.2, 1.0 / 255 * 0.49, 1.0 / 255 * 0.51, 1.0, 7.0, np.nan])
    chw = np.tile(chw, (3, 1, 1)).astype(np.float64)  # (3, 1, 8), float64 also accepted
    path = save_image(tmp_path / "c.png", chw)
    with Image.open(path) as im:
        got = np.asarray(im)[0, :, 0]
    np.testing.assert_array_equal(got, [0, 0, 51, 0, 1, 255, 255, 0])


# ---------------------------------------------------------------------------------------------
# EXIF orientation
# ---------------------------------------------------------------------------------------------

# What each EXIF orientation asks a viewer to do to the stored (H, W, C) pixels, written
# independently of Pillow with NumPy.
ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirror left-right
    3: lambda a: a[::-1, ::-1],  # rotate 180
    4: lambda a: a[::-1, :],  # mirror top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # transpose
    6: lambda a: np.rot90(a, -1),  # rotate 90 clockwise
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # transverse
    8: lambda a: np.rot90(a, 1),  # rotate 90 counter-clockwise
}


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation", sorted(ORIENT))
def test_exif_orientation_applied_exactly_on_png(tmp_path, orientation):
    stored = random_u8(np.random.default_rng(orientation), 5, 8)
    path = tmp_path / "o.png"
    Image.fromarray(stored).save(path, exif=exif_with_orientation(orientation))
    expected = u8_to_unit(np.ascontiguousarray(ORIENT[orientation](stored)))
    np.testing.assert_array_equal(load_image(path), expected)
    assert image_size(path) == (expected.shape[3], expected.shape[2])


def test_exif_orientation_6_rotates_a_jpeg(tmp_path):
    stored = np.zeros((32, 64, 3), dtype=np.uint8)  # 64 wide, 32 high
    stored[:, :32] = (255, 0, 0)  # left half red
    stored[:, 32:] = (0, 0, 255)  # right half blue
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif_with_orientation(6))
    loaded = load_image(path)
    assert loaded.shape == (1, 3, 64, 32)  # turned upright: 32 wide, 64 high
    assert image_size(path) == (32, 64)
    top, bottom = loaded[0, :, 8:24, 8:24], loaded[0, :, 40:56, 8:24]
    # rotated clockwise, the stored left (red) half is now on top
    np.testing.assert_allclose(top.mean(axis=(1, 2)), [1, 0, 0], atol=0.05)
    np.testing.assert_allclose(bottom.mean(axis=(1, 2)), [0, 0, 1], atol=0.05)


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif"])
def test_image_size_reads_no_pixels_and_matches_load(tmp_path, ext, monkeypatch):
    path = tmp_path / f"s{ext}"
    Image.fromarray(smooth_u8(20, 30)).save(path, exif=exif_with_orientation(8))
    _, _, H, W = load_image(path).shape

    def no_decoding(self):
        raise AssertionError("image_size decoded the pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert image_size(path) == (W, H) == (20, 30)


# ---------------------------------------------------------------------------------------------
# Pillow modes
# ---------------------------------------------------------------------------------------------


def gray3(g: np.ndarray) -> np.ndarray:
    """(H, W) gray in [0, 1] -> expected (1, 3, H, W) float32."""
    return np.broadcast_to(g.astype(np.float32), (1, 3) + g.shape)


def test_mode_bilevel(tmp_path):
    bits = np.random.default_rng(3).integers(0, 2, size=(6, 9)).astype(bool)
    for ext in (".png", ".bmp"):
        Image.fromarray(bits).save(tmp_path / f"b{ext}")
        with Image.open(tmp_path / f"b{ext}") as im:
            assert im.mode == "1"
        np.testing.assert_array_equal(load_image(tmp_path / f"b{ext}"), gray3(bits * 1.0))


def test_mode_l_replicated(tmp_path):
    g = np.random.default_rng(4).integers(0, 256, size=(7, 5), dtype=np.uint8)
    Image.fromarray(g).save(tmp_path / "l.png")
    np.testing.assert_array_equal(load_image(tmp_path / "l.png"), gray3(g / 255.0))


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_mode_i16_uses_full_16_bit_range(tmp_path, ext):
    g = np.array([[0, 32768, 65535], [1, 255, 256]], dtype=np.uint16)
    path = tmp_path / f"g16{ext}"
    Image.fromarray(g).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
    loaded = load_image(path)
    assert loaded[0, 0, 0, 0] == 0.0 and loaded[0, 0, 0, 2] == 1.0
    assert abs(loaded[0, 0, 0, 1] - 0.5) < 1e-4
    np.testing.assert_allclose(loaded, gray3(g / 65535.0), rtol=1e-6)  # 256 is not white


def test_mode_i_within_16_bits_scaled_by_65535(tmp_path):
    g = np.array([[0, 1000, 65535]], dtype=np.int32)
    Image.fromarray(g).save(tmp_path / "i.tif")
    with Image.open(tmp_path / "i.tif") as im:
        assert im.mode == "I"
    np.testing.assert_allclose(load_image(tmp_path / "i.tif"), gray3(g / 65535.0), rtol=1e-6)


def test_mode_i_outside_16_bits_stretched(tmp_path):
    g = np.array([[-70000, 0, 130000]], dtype=np.int32)
    Image.fromarray(g).save(tmp_path / "i.tif")
    expected = (g + 70000) / 200000.0
    np.testing.assert_allclose(load_image(tmp_path / "i.tif"), gray3(expected), rtol=1e-6)


def test_mode_f_in_unit_range_kept_else_stretched(tmp_path):
    inside = np.array([[0.0, 0.125, 0.7, 1.0]], dtype=np.float32)
    Image.fromarray(inside).save(tmp_path / "f.tif")
    with Image.open(tmp_path / "f.tif") as im:
        assert im.mode == "F"
    np.testing.assert_array_equal(load_image(tmp_path / "f.tif"), gray3(inside))
    outside = np.array([[-2.0, 0.0, 3.0, 8.0]], dtype=np.float32)
    Image.fromarray(outside).save(tmp_path / "f2.tif")
    np.testing.assert_allclose(load_image(tmp_path / "f2.tif"), gray3((outside + 2) / 10), 1e-6)


def composite_over_white(u8_with_alpha: np.ndarray) -> np.ndarray:
    """Reference: straight alpha over white, per channel."""
    a = u8_with_alpha.astype(np.float64) / 255.0
    return a[..., :-1] * a[..., -1:] + (1.0 - a[..., -1:])


def test_mode_rgba_composited_over_white(tmp_path):
    px = np.array(
        [[[10, 200, 30, 0], [10, 200, 30, 255], [200, 0, 100, 128], [0, 0, 0, 64]]],
        dtype=np.uint8,
    )
    Image.fromarray(px).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    np.testing.assert_array_equal(loaded[0, :, 0, 0], [1.0, 1.0, 1.0])  # transparent -> white
    np.testing.assert_array_equal(loaded[0, :, 0, 1], px[0, 1, :3] / np.float32(255))
    expected = composite_over_white(px).astype(np.float32).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(loaded, expected, atol=1e-7)


def test_mode_la_composited_over_white(tmp_path):
    px = np.array([[[0, 0], [0, 255], [100, 128]]], dtype=np.uint8)
    Image.fromarray(px, mode="LA").save(tmp_path / "la.png")
    loaded = load_image(tmp_path / "la.png")
    np.testing.assert_allclose(loaded, gray3(composite_over_white(px)[..., 0]), atol=1e-7)
    assert loaded[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0]


def make_palette_image() -> tuple[Image.Image, np.ndarray]:
    """A 4-colour palette image and its (H, W, 3) RGB colours."""
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [20, 40, 60]], dtype=np.uint8)
    index = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    im = Image.new("P", (4, 2))
    im.putdata(index.ravel().tolist())
    im.putpalette(colors.ravel().tolist())
    return im, colors[index]


def test_mode_p_looked_up(tmp_path):
    im, rgb = make_palette_image()
    im.save(tmp_path / "p.png")
    with Image.open(tmp_path / "p.png") as back:
        assert back.mode == "P"
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), u8_to_unit(rgb))


def test_mode_p_with_transparent_index_is_white(tmp_path):
    im, rgb = make_palette_image()
    im.save(tmp_path / "pt.png", transparency=3)  # PNG tRNS: palette entry 3 transparent
    loaded = load_image(tmp_path / "pt.png")
    expected = u8_to_unit(rgb)
    expected[0, :, 0, 3] = expected[0, :, 1, 0] = 1.0
    np.testing.assert_array_equal(loaded, expected)


def test_mode_pa_composited_over_white(tmp_path):
    im, rgb = make_palette_image()
    alpha = np.array([[0, 255, 128, 255], [255, 0, 255, 64]], dtype=np.uint8)
    pa = im.convert("PA")
    pa.putalpha(Image.fromarray(alpha))
    pa.save(tmp_path / "pa.tif")
    with Image.open(tmp_path / "pa.tif") as back:
        assert back.mode == "PA"
    expected = composite_over_white(np.concatenate([rgb, alpha[..., None]], axis=-1))
    np.testing.assert_allclose(
        load_image(tmp_path / "pa.tif"), expected.astype(np.float32).transpose(2, 0, 1)[None],
        atol=1e-7,
    )


def test_mode_cmyk(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [255, 0, 0, 0], [0, 255, 255, 0]]], np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.tif")
    with Image.open(tmp_path / "c.tif") as im:
        assert im.mode == "CMYK"
    loaded = load_image(tmp_path / "c.tif")[0].transpose(1, 2, 0)[0]
    np.testing.assert_array_equal(loaded, [[1, 1, 1], [0, 0, 0], [0, 1, 1], [1, 0, 0]])


def test_mode_ycbcr(tmp_path):
    ycc = np.array([[[128, 128, 128], [255, 128, 128], [76, 85, 255]]], dtype=np.uint8)
    Image.fromarray(ycc, mode="YCbCr").save(tmp_path / "y.tif")
    with Image.open(tmp_path / "y.tif") as im:
        try:
            im.load()
        except OSError:  # Pillow 12 writes a YCbCr TIFF it cannot read back itself
            pytest.skip("this Pillow cannot read the YCbCr TIFF it writes")
        assert im.mode == "YCbCr"
    loaded = load_image(tmp_path / "y.tif")[0].transpose(1, 2, 0)[0]
    # ITU-R BT.601 (JFIF): Y = 0.299 R + 0.587 G + 0.114 B, Cb/Cr centred at 128
    np.testing.assert_allclose(loaded, [[128 / 255] * 3, [1, 1, 1], [1, 0, 0]], atol=3 / 255)


def test_mode_lab(tmp_path):
    lab = np.array([[[128, 128, 128], [255, 128, 128], [0, 128, 128], [128, 200, 128]]], np.uint8)
    # Pillow stores a*, b* offset by 128 (128 = 0); merge the bands to set them as they are
    lab_image = Image.merge("LAB", [Image.fromarray(lab[..., k]) for k in range(3)])
    lab_image.save(tmp_path / "lab.tif")
    with Image.open(tmp_path / "lab.tif") as im:
        assert im.mode == "LAB"
    loaded = load_image(tmp_path / "lab.tif")[0].transpose(1, 2, 0)[0]
    # L* = 50 on the neutral axis is sRGB 119 (a standard value); L* 100 white; L* 0 black
    np.testing.assert_allclose(loaded[:3], [[119 / 255] * 3, [1, 1, 1], [0, 0, 0]], atol=2 / 255)
    transform = ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
    )
    reference = ImageCms.applyTransform(lab_image, transform)
    np.testing.assert_allclose(loaded, np.asarray(reference)[0] / 255, atol=1.5 / 255)
    assert loaded[3, 0] > loaded[3, 1]  # positive a*: towards red


def write_png_rgb16(path: Path, pixels: np.ndarray) -> None:
    """Write a 48-bit (16 bits per channel) RGB PNG by hand: Pillow has no mode to write it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    H, W, _ = pixels.shape
    header = struct.pack(">IIBBBBB", W, H, 16, 2, 0, 0, 0)  # bit depth 16, colour type 2 = RGB
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in pixels)  # filter 0 per row
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_rgb_16_bit_png_loads_within_8_bit_precision(tmp_path):
    pixels = np.random.default_rng(5).integers(0, 65536, size=(4, 6, 3), dtype=np.uint16)
    pixels[0, 0] = (0, 32768, 65535)
    write_png_rgb16(tmp_path / "rgb16.png", pixels)
    loaded = load_image(tmp_path / "rgb16.png")
    expected = (pixels / 65535.0).transpose(2, 0, 1)[None]
    np.testing.assert_allclose(loaded, expected, atol=1 / 255 + 1e-6)
    assert loaded[0, 2, 0, 0] == 1.0 and loaded[0, 0, 0, 0] == 0.0


# ---------------------------------------------------------------------------------------------
# Resizing
# ---------------------------------------------------------------------------------------------


def lanczos_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) Lanczos-3 weights, pixel centres aligned, widened by the scale when
    shrinking (antialiasing) and normalised per output pixel: a NumPy reference."""
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale  # output centre in input coordinates
    x = (np.arange(n_in) + 0.5)[None, :] - centres[:, None]
    t = x / stretch
    w = np.where(np.abs(t) < 3, np.sinc(t) * np.sinc(t / 3), 0.0)
    return w / w.sum(axis=1, keepdims=True)


@settings(max_examples=40, deadline=None)
@given(H=st.integers(1, 40), W=st.integers(1, 40), S=st.integers(1, 60))
def test_resize_hits_longest_side_and_keeps_aspect(H, W, S):
    image = np.random.default_rng(H * 100 + W).random((1, 3, H, W), dtype=np.float32)
    out = resize_longest(image, S)
    _, C, H2, W2 = out.shape
    assert C == 3 and out.dtype == np.float32 and max(H2, W2) == S
    for side, new in ((H, H2), (W, W2)):  # the other side is the nearest whole pixel count
        exact = Fraction(side * S, max(H, W))
        assert new >= 1 and (abs(new - exact) <= Fraction(1, 2) or new == 1)
    assert out.min() >= 0.0 and out.max() <= 1.0


@settings(max_examples=30, deadline=None)
@given(H=st.integers(2, 30), W=st.integers(2, 30), S=st.integers(2, 45))
def test_resize_is_lanczos_on_float_data(H, W, S):
    rng = np.random.default_rng(H * 1000 + W * 10 + S)
    image = (0.25 + 0.5 * rng.random((1, 2, H, W))).astype(np.float32)  # room for ringing
    out = resize_longest(image, S)
    _, _, H2, W2 = out.shape
    if (H2, W2) == (H, W):
        return
    Ky, Kx = lanczos_matrix(H, H2), lanczos_matrix(W, W2)
    reference = np.clip(Ky @ image.astype(np.float64) @ Kx.T, 0, 1)
    np.testing.assert_allclose(out, reference, atol=2e-5)


def test_resize_constant_stays_constant_and_float64_kept():
    image = np.full((1, 3, 17, 23), 0.3)
    out = resize_longest(image, 9)
    assert out.dtype == np.float64 and out.shape == (1, 3, 7, 9)
    np.testing.assert_allclose(out, 0.3, atol=1e-6)


def test_same_size_is_not_resampled(tmp_path):
    image = np.random.default_rng(6).random((1, 3, 13, 21), dtype=np.float32)
    assert resize_longest(image, 21) is image
    save_image(tmp_path / "same.png", image)
    full = load_image(tmp_path / "same.png")
    np.testing.assert_array_equal(load_image(tmp_path / "same.png", longest_side=21), full)


def test_load_with_longest_side_resizes_decoded_floats(tmp_path):
    u8 = random_u8(np.random.default_rng(7), 30, 40)
    Image.fromarray(u8).save(tmp_path / "big.png")
    out = load_image(tmp_path / "big.png", longest_side=20)
    assert out.shape == (1, 3, 15, 20)
    np.testing.assert_array_equal(out, resize_longest(u8_to_unit(u8), 20))
    assert not np.all(out * 255 == np.rint(out * 255))  # float results, not re-rounded to 8 bits


@pytest.mark.parametrize("bad", [0, -3, 2.5, "12", True])
def test_bad_longest_side(tmp_path, bad):
    with pytest.raises(MinistError, match="longest side"):
        resize_longest(np.zeros((1, 3, 4, 4), np.float32), bad)


# ---------------------------------------------------------------------------------------------
# PNG metadata
# ---------------------------------------------------------------------------------------------

keys = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=79)
values = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\0"), max_size=60)


@FILE_SETTINGS
@given(metadata=st.dictionaries(keys, values, max_size=5))
def test_png_metadata_roundtrips(tmp_path, metadata):
    path = save_image(tmp_path / "m.png", np.zeros((1, 3, 2, 3), np.float32), metadata)
    assert read_png_metadata(path) == metadata


def test_png_metadata_json_settings(tmp_path):
    settings_ = {"style_weight": 1e6, "layers": ["conv1_1", "conv2_1"], "note": "Mona Lisa 🎨"}
    meta = {"minist": json.dumps(settings_, ensure_ascii=False), "Software": "minist 0.1.0"}
    path = save_image(tmp_path / "r.png", np.ones((3, 4, 5), np.float32), meta)
    back = read_png_metadata(path)
    assert json.loads(back["minist"]) == settings_ and back["Software"] == "minist 0.1.0"


def test_read_png_metadata_on_a_jpeg(tmp_path):
    path = save_image(tmp_path / "r.jpg", np.ones((3, 4, 5), np.float32), {"a": "b"})
    with pytest.raises(MinistError) as excinfo:
        read_png_metadata(path)
    assert_one_line_naming(excinfo, path, "not a png")


# ---------------------------------------------------------------------------------------------
# Atomic saving
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_leaves_no_partial_file(tmp_path, monkeypatch, failure):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def half_write_then_fail(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise failure

    monkeypatch.setattr(Image.Image, "save", half_write_then_fail)
    with pytest.raises((MinistError, KeyboardInterrupt)) as excinfo:
        save_image(target, np.zeros((1, 3, 4, 4), np.float32))
    if isinstance(failure, OSError):
        assert_one_line_naming(excinfo, target, "disk full")
    assert os.listdir(tmp_path) == ["out.png"]
    assert target.read_bytes() == b"previous result"


# ---------------------------------------------------------------------------------------------
# Bad input: one line naming the file
# ---------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    for read in (load_image, image_size, read_png_metadata):
        with pytest.raises(MinistError) as excinfo:
            read(path)
        assert_one_line_naming(excinfo, path, "not found")


def test_directory(tmp_path):
    with pytest.raises(MinistError) as excinfo:
        load_image(tmp_path)
    assert_one_line_naming(excinfo, tmp_path, "directory")


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "secret.png"
    Image.new("RGB", (2, 2)).save(path)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: make the open fail as it would
        def denied(fp, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(fp))

        monkeypatch.setattr(images.Image, "open", denied)
    try:
        with pytest.raises(MinistError) as excinfo:
            load_image(path)
    finally:
        path.chmod(0o644)
    assert_one_line_naming(excinfo, path, "permission")


def test_not_an_image(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are\nnot pixels\n")
    with pytest.raises(MinistError) as excinfo:
        load_image(path)
    assert_one_line_naming(excinfo, path, "not an image")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp", ".tif"])
def test_truncated_image(tmp_path, ext):
    path = tmp_path / f"cut{ext}"
    Image.fromarray(random_u8(np.random.default_rng(8), 64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    assert not ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(MinistError) as excinfo:
        load_image(path)
    assert_one_line_naming(excinfo, path)
    assert "truncated" in str(excinfo.value) or "corrupt" in str(excinfo.value)


def test_decompression_bomb(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (30, 30)).save(path)  # 900 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow refuses above 2 x 100
    for read in (load_image, image_size):
        with pytest.raises(MinistError) as excinfo:
            read(path)
        assert_one_line_naming(excinfo, path, "decompression bomb")


@pytest.mark.parametrize("name", ["out.gif", "out.exr", "out.png.txt"])
def test_unsupported_extension_for_saving(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(MinistError) as excinfo:
        save_image(path, np.zeros((1, 3, 2, 2), np.float32))
    assert_one_line_naming(excinfo, path, path.suffix)
    assert not path.exists()


def test_unwritable_location(tmp_path):
    path = tmp_path / "missing-folder" / "out.png"
    with pytest.raises(MinistError) as excinfo:
        save_image(path, np.zeros((1, 3, 2, 2), np.float32))
    assert_one_line_naming(excinfo, path, "does not exist")
    with pytest.raises(MinistError) as excinfo:
        save_image(tmp_path, np.zeros((1, 3, 2, 2), np.float32))
    assert_one_line_naming(excinfo, tmp_path, "directory")


# ---------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA GPU")
def test_save_and_resize_cupy_arrays(tmp_path):
    import cupy

    image = np.random.default_rng(9).random((1, 3, 10, 14), dtype=np.float32)
    save_image(tmp_path / "cpu.png", image)
    save_image(tmp_path / "gpu.png", cupy.asarray(image))
    assert (tmp_path / "cpu.png").read_bytes() == (tmp_path / "gpu.png").read_bytes()
    resized = resize_longest(cupy.asarray(image), 7)
    assert isinstance(resized, cupy.ndarray)
    np.testing.assert_array_equal(resized.get(), resize_longest(image, 7))
