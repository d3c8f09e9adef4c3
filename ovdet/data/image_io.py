"""Reading images from files, arrays, tensors and PIL images into one form: (H, W, 3) uint8 RGB.

Every reader in ovdet (datasets, demo, pseudo-box generation) goes through :func:`read_image`, so
that an EXIF-rotated photo, a palette PNG, a 16-bit grayscale scan or a float tensor all reach the
model the same way. Conversions, per PIL mode:

* ``RGB``: as is. ``L``, ``1``, ``P``, ``CMYK``, ``YCbCr``, ...: PIL's own conversion to RGB.
* Modes with alpha (``RGBA``, ``LA``, ``PA``, ...) and ``L``/``RGB``/``P`` images with a
  transparency key: composited over **black**, ``rgb * alpha / 255`` rounded (a fully transparent
  pixel is black, an opaque one keeps its colour).
* 16-bit and 32-bit integer grayscale (``I;16``, ``I;16B``, ``I``): values in [0, 65535] scaled
  by 255 / 65535 and rounded (65535 -> 255, 32768 -> 128); an ``I`` image with values outside
  [0, 65535] is an error rather than silently clipped.
* 32-bit float grayscale (``F``): taken as [0, 1] when its maximum is at most 1, otherwise as
  [0, 255]; scaled, rounded and clipped to [0, 255]; NaN or infinity is an error.
* 16-bit-per-channel RGB(A) PNGs: Pillow 13 opens them as 8-bit ``RGB``/``RGBA`` itself, keeping the
  high byte of each value (``v >> 8``: 32768 -> 128, 65535 -> 255, 1000 -> 3), which can differ
  by one from the rounding used for 16-bit grayscale.
* Multi-frame files (GIF, TIFF): the first frame.

Size limit: PIL refuses images above ``2 * PIL.Image.MAX_IMAGE_PIXELS`` pixels (about 179 million
by default; it warns above ``MAX_IMAGE_PIXELS``) as possible decompression bombs. ovdet keeps that
global limit untouched and reports such a file as an :class:`ImageReadError` that says how to raise
it.
"""
from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})

# PIL modes whose pixels need more than PIL's own convert("RGB") (see the module docstring).
_INTEGER_GRAY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})
_TRANSPARENCY_KEY_MODES = frozenset({"L", "RGB", "P"})

# Errors PIL's decoders raise on broken data (EOFError and struct.error are not OSErrors).
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)


class ImageReadError(ValueError):
    """An image file (or PIL image) that cannot be read; the message names the file and the reason
    on one line. ``path`` and ``reason`` are kept as attributes."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the decoder said
        super().__init__(f"cannot read image {self.path!r}: {self.reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason)


def read_image(source: str | os.PathLike | np.ndarray | torch.Tensor | Image.Image) -> np.ndarray:
    """Read an image into a new C-contiguous (H, W, 3) uint8 RGB array.

    Args:
        source: one of
            * a path to an image file: decoded in full, EXIF orientation applied (a photo taken
              sideways comes out upright), converted per the module docstring;
            * a PIL image: EXIF orientation applied, converted the same way;
            * a numpy array of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) with dtype uint8,
              uint16 (scaled by 255 / 65535, rounded), bool (True -> 255) or floating point with
              values in [0, 1] (scaled by 255, rounded); one channel is repeated to three, a fourth
              channel is alpha, composited over black;
            * a torch tensor of shape (C, H, W) with C in {1, 3, 4} (torchvision's layout), dtype
              uint8 or floating point with values in [0, 1]; converted as the arrays above.

    Returns:
        (H, W, 3) uint8 array that shares no memory with ``source``.

    Raises:
        ImageReadError: a file that is missing, a directory, empty, not an image, truncated or
            corrupt, or above PIL's decompression-bomb limit.
        ValueError: an array or tensor of an unsupported shape, dtype or value range.
        TypeError: ``source`` is none of the kinds above.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source)
    if isinstance(source, torch.Tensor):
        return _from_tensor(source)
    if isinstance(source, Image.Image):
        return _from_pil(source, getattr(source, "filename", "") or "<PIL image>")
    if isinstance(source, (str, os.PathLike)):
        return _from_file(Path(source))
    raise TypeError("read_image expects a path, numpy array, torch tensor or PIL image, "
                    f"got {type(source).__name__}")


def image_files(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """Expand a list of files and directories into image files.

    A directory contributes its image files (extensions in :data:`IMAGE_EXTENSIONS`, case-
    insensitive, not recursive, hidden files starting with "." skipped), sorted by name; a file is
    kept as given, whatever its extension. Order otherwise follows ``paths``. A single path may be
    passed instead of a list.

    Raises:
        ImageReadError: a path that does not exist.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for entry in paths:
        path = Path(entry)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS
                                and not p.name.startswith(".") and p.is_file()))
        elif path.exists():
            files.append(path)
        else:
            raise ImageReadError(path, "no such file or directory")
    return files


def _from_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise ImageReadError(path, "no such file")
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    try:
        image = Image.open(path)
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not an image file, or a format PIL cannot decode") from None
    except Image.DecompressionBombError as e:
        raise ImageReadError(path, f"{e} Raise PIL.Image.MAX_IMAGE_PIXELS to read it "
                                   "(only for files you trust).") from None
    except OSError as e:
        raise ImageReadError(path, e.strerror or str(e)) from e
    with image:
        return _from_pil(image, path)


def _from_pil(image: Image.Image, name: str | os.PathLike) -> np.ndarray:
    try:
        image.load()  # decode everything now (a no-op when loaded): a truncated file fails here
    except _DECODE_ERRORS as e:
        raise ImageReadError(name, f"truncated or corrupt {image.format} data ({e})") from e
    if image.width == 0 or image.height == 0:
        raise ImageReadError(name, f"image has no pixels ({image.width}x{image.height})")
    try:
        image = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS as e:
        raise ImageReadError(name, f"cannot decode or apply its EXIF orientation ({e})") from e
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return np.array(image, dtype=np.uint8, order="C")
    if mode in _INTEGER_GRAY_MODES:
        values = np.asarray(image)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise ImageReadError(name, f"mode {mode} values span [{low}, {high}]; only 16-bit "
                                       "values in [0, 65535] are supported")
        return _gray_to_rgb(_scale_uint16(values))
    if mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise ImageReadError(name, "mode F image contains NaN or infinite values")
        scale = 255.0 if values.max() <= 1.0 else 1.0
        return _gray_to_rgb(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8))
    has_alpha = "A" in image.getbands() or "a" in image.getbands()  # "a": premultiplied alpha
    has_alpha |= mode in _TRANSPARENCY_KEY_MODES and "transparency" in image.info
    try:
        converted = image.convert("RGBA" if has_alpha else "RGB")
    except ValueError as e:
        raise ImageReadError(name, f"cannot convert PIL mode {mode} to RGB ({e})") from e
    if has_alpha:
        return _composite_over_black(np.asarray(converted))
    return np.array(converted, dtype=np.uint8, order="C")


def _from_array(array: np.ndarray) -> np.ndarray:
    shape_ok = array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4))
    kind = array.dtype.kind
    kind_ok = (kind == "u" and array.dtype.itemsize in (1, 2)) or kind in "bf"
    if not (shape_ok and kind_ok and array.size > 0):
        raise ValueError("expected an image array of shape (H, W), (H, W, 1), (H, W, 3) or "
                         "(H, W, 4) (H, W >= 1) with dtype uint8, uint16, bool or float; got shape "
                         f"{tuple(array.shape)} dtype {array.dtype}")
    if kind == "u" and array.dtype.itemsize == 1:
        pixels = array
    elif kind == "u":  # 16-bit, either byte order
        pixels = _scale_uint16(array)
    elif kind == "b":
        pixels = array.astype(np.uint8) * np.uint8(255)
    else:
        if not np.isfinite(array).all():
            raise ValueError(f"float image array of shape {tuple(array.shape)} contains NaN or "
                             "infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise ValueError(f"float image arrays must hold values in [0, 1], got [{low:g}, "
                             f"{high:g}] (shape {tuple(array.shape)}, dtype {array.dtype})")
        pixels = np.rint(array.astype(np.float32) * 255.0).astype(np.uint8)
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        return _gray_to_rgb(pixels.reshape(pixels.shape[:2]))
    if pixels.shape[2] == 4:
        return _composite_over_black(pixels)
    return np.array(pixels, dtype=np.uint8, order="C")  # copies even when already uint8


def _from_tensor(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dim() != 3 or tensor.shape[0] not in (1, 3, 4):
        hint = (" (an (H, W, C) tensor? pass tensor.permute(2, 0, 1))"
                if tensor.dim() == 3 and tensor.shape[2] in (1, 3, 4) else "")
        raise ValueError(f"expected an image tensor of shape (C, H, W) with C in {{1, 3, 4}}, got "
                         f"shape {tuple(tensor.shape)}{hint}")
    if tensor.dtype != torch.uint8 and not tensor.dtype.is_floating_point:
        raise ValueError(f"expected an image tensor of dtype uint8 or float in [0, 1], got "
                         f"{tensor.dtype} (shape {tuple(tensor.shape)})")
    tensor = tensor.detach().cpu()
    if tensor.dtype.is_floating_point:
        tensor = tensor.float()  # bfloat16 has no numpy equivalent
    return _from_array(tensor.permute(1, 2, 0).numpy())


def _scale_uint16(values: np.ndarray) -> np.ndarray:
    """Integers in [0, 65535], any shape -> uint8 of the same shape, ``round(v * 255 / 65535)``."""
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 -> new C-contiguous (H, W, 3) uint8."""
    return np.repeat(gray[:, :, None], 3, axis=2)


def _composite_over_black(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 RGBA -> new (H, W, 3) uint8, ``round(rgb * alpha / 255)``."""
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    return ((rgba[:, :, :3].astype(np.uint16) * alpha + 127) // 255).astype(np.uint8)
