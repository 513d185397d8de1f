"""Image files in and out: decode to float RGB in [0, 1], resize, save with metadata (Pillow).

The network sees an image as a float32 array ``I`` of shape (1, 3, H, W) (NCHW, batch 1) with
RGB values in [0, 1]. This module is the only place that turns files into such arrays and back.

Reading (:func:`load_image`) accepts any format Pillow can decode; JPEG, PNG, WebP, TIFF and
BMP are the ones minist supports and tests. The first frame of an animated file is used. The
EXIF orientation tag is applied (``ImageOps.exif_transpose``), so a phone photo loads upright.
Pillow modes map to RGB in [0, 1] as follows (a gray value ``g`` becomes ``(g, g, g)``):

=================  ==========================================================================
mode               conversion
=================  ==========================================================================
``1``              bilevel: 0 -> 0.0, 1 -> 1.0, replicated to 3 channels
``L``              8-bit gray: ``g / 255``, replicated
``I;16`` (+B/L/N)  16-bit gray: ``g / 65535`` (the full 16-bit range; Pillow's own
                   ``convert("RGB")`` would clip everything above 255 to white)
``I``              32-bit integer gray: ``g / 65535`` when all values lie in [0, 65535] (how
                   16-bit files are often stored), else stretched: ``(g - min) / (max - min)``
``F``              32-bit float gray: kept when all values lie in [0, 1], else stretched
                   ``(g - min) / (max - min)``; a constant image outside [0, 1] is clipped
``P`` / ``PA``     palette: looked up to RGB, or RGBA when the palette has transparency
``RGB`` / ``RGBX`` 8-bit colour: ``c / 255`` (the padding channel X is dropped)
``RGBA``/``LA``    alpha: composited over a **white** background (alpha is not optimised)
``RGBa``/``La``    premultiplied alpha: un-premultiplied by Pillow, then as above
``CMYK``           Pillow's conversion (naive, no ICC profile)
``YCbCr``, ``LAB``, Pillow's conversion to RGB (``LAB`` through LittleCMS when Pillow's
``HSV``            ``convert`` cannot)
=================  ==========================================================================

A colour image or palette with a ``transparency`` entry (PNG tRNS) is treated as having alpha.
16-bit RGB files (48-bit PNG, TIFF) are reduced to 8 bits per channel by Pillow, which has no
16-bit RGB mode; their precision above 8 bits is lost. Embedded ICC profiles are ignored.

Compositing over white, per pixel with straight alpha :math:`\\alpha \\in [0, 1]`:

.. math::

    I_c = \\alpha \\, c + (1 - \\alpha) \\cdot 1, \\qquad c \\in \\{R, G, B\\}

so a fully transparent pixel loads as white, whatever colour it stores.

Resizing (:func:`resize_longest`) scales so the longest side becomes ``S`` pixels, keeping the
aspect ratio: with :math:`s = S / \\max(H, W)` the new size is
:math:`(\\mathrm{round}(sH), \\mathrm{round}(sW))`, the longest side exactly ``S``. Each plane is
resampled with Pillow's Lanczos filter (kernel
:math:`L(x) = \\mathrm{sinc}(x)\\,\\mathrm{sinc}(x/3)` for :math:`|x| < 3`, stretched by ``1/s``
when shrinking) on **float32** data (Pillow mode ``F``): the file's integers are converted to
float once and never rounded back to 8 bits before the network sees them (no double rounding).
Lanczos overshoots at edges (ringing), so the result is clipped to [0, 1]. An image already of
the requested size is returned as it is, not resampled.

Saving (:func:`save_image`) picks the format from the extension (PNG when there is none),
rounds :math:`\\mathrm{round}(255\\,\\mathrm{clip}(I, 0, 1))` to 8 bits and writes atomically:
to a temporary file beside the target, renamed into place only when complete. PNG files carry
``metadata`` as text chunks (tEXt, or iTXt for non-Latin-1 text), e.g. the stylize settings as
JSON, read back with :func:`read_png_metadata`; other formats are written without it.

Every problem a user can cause raises :class:`~minist.errors.MinistError` with one line that
names the file and the problem: a missing file, a directory, a file without read permission,
a file that is not an image, truncated or corrupt pixel data (every pixel is decoded at load;
``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off), an image over Pillow's decompression-bomb limit
(``2 * Image.MAX_IMAGE_PIXELS``, about 179 megapixels; between 1x and 2x Pillow only warns),
and, for saving, an unsupported extension or a location that cannot be written.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from minist.backend import get_array_module, to_numpy
from minist.errors import MinistError, message_line
from minist.weights.atomic import atomic_path, check_writable

# Extension -> Pillow format name, for saving. Loading detects the format from the content.
SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
DEFAULT_EXTENSION = ".png"

# Encoder settings per format: high quality for the lossy ones.
_SAVE_OPTIONS: dict[str, dict] = {
    "PNG": {"optimize": False},
    "JPEG": {"quality": 95, "subsampling": 0},  # 4:4:4 chroma: style textures are fine detail
    "WEBP": {"quality": 95, "method": 4},
    "TIFF": {},
    "BMP": {},
}

# Errors Pillow raises (or lets through) for a file whose bytes are broken or cut short.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)

_EXIF_ORIENTATION = 0x0112  # EXIF tag: 1 upright ... 5-8 rotated by 90 degrees one way or another


# ---------------------------------------------------------------------------------------------
# Opening files: every failure becomes one line naming the file
# ---------------------------------------------------------------------------------------------


def _open(path: Path) -> Image.Image:
    """``Image.open`` (lazy: reads the header only), with user-facing errors."""
    if path.is_dir():
        raise MinistError(f"{path}: is a directory, expected an image file")
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise MinistError(f"{path}: file not found") from None
    except PermissionError:
        raise MinistError(f"{path}: permission denied, cannot read the file") from None
    except UnidentifiedImageError:
        raise MinistError(
            f"{path}: not an image file Pillow can read (expected JPEG, PNG, WebP, TIFF or BMP)"
        ) from None
    except Image.DecompressionBombError as e:
        raise MinistError(f"{path}: image too large, refused as a possible decompression bomb "
                          f"({message_line(e)})") from None
    except _DECODE_ERRORS as e:
        raise MinistError(f"{path}: cannot read image header ({message_line(e)})") from None


def _decode(path: Path, im: Image.Image) -> Image.Image:
    """Decode every pixel now (so truncation is detected here) and apply EXIF orientation."""
    try:
        im.load()  # full decode; ImageFile.LOAD_TRUNCATED_IMAGES stays False
        return ImageOps.exif_transpose(im)
    except Image.DecompressionBombError as e:
        raise MinistError(f"{path}: image too large, refused as a possible decompression bomb "
                          f"({message_line(e)})") from None
    except _DECODE_ERRORS as e:
        raise MinistError(f"{path}: image data truncated or corrupt ({message_line(e)})") from None


# ---------------------------------------------------------------------------------------------
# Pillow modes -> float RGB in [0, 1]
# ---------------------------------------------------------------------------------------------


def _stretch(g: np.ndarray) -> np.ndarray:
    """Map gray values onto [0, 1] by their own range: ``(g - min) / (max - min)``."""
    lo, hi = float(g.min()), float(g.max())
    if hi == lo:  # constant image: nothing to stretch, keep the value if it is meaningful
        return np.clip(g, 0.0, 1.0)
    return (g - lo) / (hi - lo)


def _gray_to_unit(im: Image.Image) -> np.ndarray:
    """One-channel modes 1, L, I;16*, I, F -> (H, W) float in [0, 1] (see module table).

    Integer pixels are divided in float32, which rounds ``g / 255`` and ``g / 65535`` once,
    exactly as float64 division followed by rounding to float32 would.
    """
    g = np.asarray(im)
    if im.mode == "1":
        return g.astype(np.float32)
    if im.mode == "L":
        return g.astype(np.float32) / np.float32(255)
    if im.mode.startswith("I;16"):  # the full 16-bit range, not Pillow's clip at 255
        return g.astype(np.float32) / np.float32(65535)
    g = g.astype(np.float64)  # 32-bit integers and floats: range tests and stretch in float64
    if im.mode == "I":
        return g / 65535.0 if g.min() >= 0 and g.max() <= 65535 else _stretch(g)
    # mode F: floats, kept when already in [0, 1]
    g = np.nan_to_num(g, nan=0.0, posinf=1.0, neginf=0.0)
    return g if g.min() >= 0.0 and g.max() <= 1.0 else _stretch(g)


def _lab_to_rgb(im: Image.Image) -> Image.Image:
    """LAB -> RGB; older Pillow cannot ``convert`` LAB, so fall back to a LittleCMS transform."""
    try:
        return im.convert("RGB")
    except ValueError:
        from PIL import ImageCms

        lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
        return ImageCms.applyTransform(im, ImageCms.buildTransform(lab, srgb, "LAB", "RGB"))


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Bring any Pillow mode to one of 1, L, LA, I;16*, I, F, RGB, RGBA (pixels untouched)."""
    mode, has_key = im.mode, "transparency" in im.info
    if mode in ("P", "PA"):  # palette: look the colours up, with alpha if the palette has it
        return im.convert("RGBA" if mode == "PA" or has_key else "RGB")
    if mode in ("L", "RGB") and has_key:  # PNG tRNS colour key -> a real alpha channel
        return im.convert("LA" if mode == "L" else "RGBA")
    if mode in ("1", "L", "LA", "I", "F", "RGB", "RGBA") or mode.startswith("I;16"):
        return im
    if mode == "La":
        return im.convert("LA")  # un-premultiply
    if mode == "RGBa":
        return im.convert("RGBA")
    if mode == "RGBX":
        return im.convert("RGB")
    if mode == "LAB":
        return _lab_to_rgb(im)
    return im.convert("RGB")  # CMYK, YCbCr, HSV: Pillow's colour conversions


def _to_unit_rgb(path: Path, im: Image.Image) -> np.ndarray:
    """A decoded Pillow image -> (H, W, 3) float32 RGB in [0, 1], alpha composited over white."""
    try:
        im = _normalise_mode(im)
    except ValueError as e:
        raise MinistError(f"{path}: unsupported image mode {im.mode} ({message_line(e)})") from None
    if im.mode in ("LA", "RGBA"):
        a = np.asarray(im, dtype=np.float32) / np.float32(255)
        color, alpha = a[..., :-1], a[..., -1:]
        rgb = alpha * color + (1 - alpha) * 1  # I_c = alpha c + (1 - alpha) * white
    elif im.mode == "RGB":
        rgb = np.asarray(im, dtype=np.float32) / np.float32(255)
    else:
        rgb = _gray_to_unit(im)[..., None]
    rgb = np.broadcast_to(rgb, rgb.shape[:2] + (3,))  # gray (H, W, 1) -> (g, g, g)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32, copy=False)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def _check_side(longest_side) -> int:
    if isinstance(longest_side, bool) or not isinstance(longest_side, (int, np.integer)):
        raise MinistError(f"longest side: expected a whole number of pixels, got {longest_side!r}")
    if longest_side < 1:
        raise MinistError(f"longest side: must be at least 1 pixel, got {longest_side}")
    return int(longest_side)


def load_image(path: str | os.PathLike, longest_side: int | None = None) -> np.ndarray:
    """Read an image file as a float32 array ``I`` of shape (1, 3, H, W), RGB in [0, 1].

    EXIF orientation is applied and the Pillow mode converted as in the module table. With
    ``longest_side`` the image is then resized (float Lanczos) so that
    :math:`\\max(H, W) = ` ``longest_side``, aspect ratio kept; see :func:`resize_longest`.
    """
    path = Path(path)
    if longest_side is not None:
        longest_side = _check_side(longest_side)
    with _open(path) as im:
        rgb = _to_unit_rgb(path, _decode(path, im))  # (H, W, 3)
    image = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])  # HWC -> NCHW, N = 1
    return image if longest_side is None else resize_longest(image, longest_side)


def _target_size(H: int, W: int, longest_side: int) -> tuple[int, int]:
    """(H', W') with max(H', W') = S and the other side round(side * S / max(H, W)) >= 1."""
    L = max(H, W)

    def scale(side: int) -> int:  # round(side * S / L) in exact integer arithmetic, halves up
        return max(1, (2 * side * longest_side + L) // (2 * L))

    return scale(H), scale(W)


def resize_longest(image, longest_side: int):
    """Resize (N, C, H, W) so that the longest side is ``longest_side``; aspect ratio kept.

    An image already of the target size is returned unchanged -- the very same array, not
    resampled. Resampling as in :func:`resize_to`.
    """
    longest_side = _check_side(longest_side)
    _, _, H, W = image.shape
    return resize_to(image, _target_size(H, W, longest_side))


def resize_to(image, size: tuple[int, int]):
    """Resize (N, C, H, W) to exactly ``size`` = (H2, W2).

    Each (H, W) plane is resampled with Lanczos on float32 (Pillow mode ``F``) and the result
    clipped to [0, 1] (Lanczos rings past the input range at sharp edges). An image already of
    that size is returned unchanged. The result has the input's dtype and lives on the input's
    device (NumPy or CuPy).
    """
    N, C, H, W = image.shape
    H2, W2 = (int(n) for n in size)
    if (H2, W2) == (H, W):
        return image
    xp = get_array_module(image)
    planes = to_numpy(image).astype(np.float32, copy=False).reshape(N * C, H, W)
    out = np.empty((N * C, H2, W2), dtype=np.float32)
    for k, plane in enumerate(planes):
        resized = Image.fromarray(plane).resize((W2, H2), Image.Resampling.LANCZOS)
        out[k] = np.asarray(resized)
    out = np.clip(out, 0.0, 1.0).reshape(N, C, H2, W2)
    return xp.asarray(out, dtype=image.dtype)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) as :func:`load_image` would see it, from the header only.

    Width and height swap when the EXIF orientation (tags 5-8) turns the image by 90 degrees.
    No pixels are decoded. For PNG only an eXIf chunk before the pixel data is consulted
    (where writers put it); one after the pixel data could not be reached without decoding.
    """
    path = Path(path)
    with _open(path) as im:
        width, height = im.size
        if im.format == "TIFF":  # newer Pillow reports a TIFF's size already turned upright
            width, height = im.tag_v2.get(256, width), im.tag_v2.get(257, height)
        try:
            if im.format == "PNG":  # PNG's getexif() decodes the pixels to look past them
                exif = Image.Exif()
                if "exif" in im.info:
                    exif.load(im.info["exif"])
            else:
                exif = im.getexif()
            orientation = exif.get(_EXIF_ORIENTATION, 1)
        except _DECODE_ERRORS as e:
            raise MinistError(f"{path}: cannot read EXIF data ({message_line(e)})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _format_for(path: Path) -> tuple[Path, str]:
    """The path to write (``.png`` added when there is no extension) and its Pillow format."""
    if path.is_dir():
        raise MinistError(f"{path}: is a directory, expected an image file name")
    if not path.suffix:
        path = path.with_name(path.name + DEFAULT_EXTENSION)
    fmt = SUPPORTED_EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        choices = ", ".join(SUPPORTED_EXTENSIONS)
        raise MinistError(f"{path}: cannot save images as {path.suffix!r}; use one of {choices}")
    return path, fmt


def to_uint8_hwc(image) -> np.ndarray:
    """(1, 3, H, W) or (3, H, W) float -> (H, W, 3) uint8: round(255 clip(I, 0, 1))."""
    a = to_numpy(image)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"save_image: expected shape (1, 3, H, W) or (3, H, W), got {a.shape}")
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"save_image: expected a float image in [0, 1], got dtype {a.dtype}")
    a = np.nan_to_num(a, nan=0.0)
    q = np.rint(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(q.transpose(1, 2, 0))  # CHW -> HWC for Pillow


def _png_info(metadata: dict[str, str]) -> PngImagePlugin.PngInfo:
    """Text chunks: tEXt for Latin-1 values, iTXt (UTF-8) otherwise (Pillow chooses)."""
    info = PngImagePlugin.PngInfo()
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 79 or "\0" in key:
            raise ValueError(f"save_image: PNG text key must be 1-79 characters, got {key!r}")
        info.add_text(key, str(value))
    return info


def save_image(
    path: str | os.PathLike, image, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``image`` ((1, 3, H, W) or (3, H, W), float in [0, 1], NumPy or CuPy) to ``path``.

    The format follows the extension (``.png`` is added when there is none); values are
    clipped to [0, 1] and rounded to 8 bits. ``metadata`` goes into PNG text chunks and is
    left out of other formats. The file appears complete or not at all. Returns the path written.
    """
    path, fmt = _format_for(Path(path))
    check_writable(path)  # fail in one line before converting anything
    pixels = Image.fromarray(to_uint8_hwc(image))  # uint8 (H, W, 3) -> RGB
    options = dict(_SAVE_OPTIONS[fmt])
    if fmt == "PNG" and metadata:
        options["pnginfo"] = _png_info(metadata)
    try:
        with atomic_path(path) as tmp:
            pixels.save(tmp, format=fmt, **options)
    except OSError as e:
        raise MinistError(f"{path}: cannot write image ({message_line(e)})") from None
    return path


def encode_png(image, *, max_side: int | None = None, compress_level: int = 1) -> bytes:
    """``image`` as the bytes of a PNG file, for showing rather than keeping (a live view).

    The same 8-bit rounding as :func:`save_image`; when ``max_side`` is given, an image whose
    longest side is larger is shrunk to it (Lanczos on the 8-bit pixels). ``compress_level`` 1
    is zlib's fastest, a few ms for a 512 px image.
    """
    pixels = _shrunk(image, max_side)
    out = io.BytesIO()
    pixels.save(out, format="PNG", compress_level=compress_level)
    return out.getvalue()


def _shrunk(image, max_side: int | None) -> Image.Image:
    """``image`` as a Pillow RGB image (the rounding of :func:`save_image`), shrunk (Lanczos on
    the 8-bit pixels) so that its longest side is at most ``max_side`` (None: as it is)."""
    pixels = Image.fromarray(to_uint8_hwc(image))
    if max_side is not None and max(pixels.size) > max_side:
        pixels.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return pixels


def shrunk_pixels(image, max_side: int) -> np.ndarray:
    """``image`` (1, 3, H, W) in [0, 1] as 8-bit pixels ``(h, w, 3)`` (the rounding of
    :func:`save_image`), shrunk (Lanczos) so that its longest side is at most ``max_side``."""
    return np.asarray(_shrunk(image, max_side))


def write_gif(target, frames, fps: float) -> None:
    """``frames`` (8-bit ``(H, W, 3)`` arrays) as an animated GIF that loops forever, at
    ``fps`` (GIF delays are whole hundredths of a second, at least 2: browsers slow shorter
    ones down) into ``target``, a path or a binary file object. Pillow picks each frame's
    palette."""
    images = [Image.fromarray(f) for f in frames]
    centiseconds = max(2, round(100 / fps))
    images[0].save(target, format="GIF", save_all=True, append_images=images[1:],
                   duration=centiseconds * 10, loop=0)


def read_png_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The text chunks (tEXt, zTXt, iTXt) of a PNG file as a ``{key: value}`` dict."""
    path = Path(path)
    with _open(path) as im:
        if im.format != "PNG":
            raise MinistError(f"{path}: not a PNG file (it is {im.format}); no PNG metadata")
        try:
            text = im.text  # reads chunks after the pixel data too
        except _DECODE_ERRORS as e:
            raise MinistError(f"{path}: PNG data truncated or corrupt "
                              f"({message_line(e)})") from None
    return {str(k): str(v) for k, v in text.items()}
