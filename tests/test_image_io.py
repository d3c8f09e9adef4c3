import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from ovdet.data.image_io import ImageReadError, image_files, read_image


def write_png16(path, values: np.ndarray, color_type: int) -> None:
    """Write a 16-bit PNG by hand (PIL cannot write 16-bit RGB): ``values`` (H, W, C) uint16,
    ``color_type`` 2 (RGB) or 6 (RGBA)."""
    height, width = values.shape[:2]
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def mode_of(path) -> str:
    with Image.open(path) as image:
        return image.mode


def check_output(out: np.ndarray, height: int, width: int) -> None:
    assert out.shape == (height, width, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous and out.flags.writeable


# ----------------------------------------------------------------------------------------- files

def test_rgb_png_exact(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    check_output(out, 5, 7)
    np.testing.assert_array_equal(out, pixels)
    np.testing.assert_array_equal(read_image(str(tmp_path / "a.png")), pixels)


def test_grayscale_and_bilevel(tmp_path):
    Image.fromarray(np.array([[0, 77, 255]], np.uint8)).save(tmp_path / "l.png")
    np.testing.assert_array_equal(read_image(tmp_path / "l.png"), [[[0] * 3, [77] * 3, [255] * 3]])
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "1.png")
    assert mode_of(tmp_path / "1.png") == "1"
    np.testing.assert_array_equal(read_image(tmp_path / "1.png"), [[[255] * 3, [0] * 3]])


def test_rgba_composited_over_black(tmp_path):
    rgba = np.array([[[200, 100, 50, 128], [10, 20, 30, 0], [10, 20, 30, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    expected = [[[100, 50, 25], [0, 0, 0], [10, 20, 30]]]  # round(rgb * alpha / 255)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), expected)


def test_gray_alpha(tmp_path):
    Image.fromarray(np.array([[[100, 255], [100, 0]]], np.uint8), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), [[[100] * 3, [0] * 3]])


def test_palette_and_palette_transparency(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    image.putdata([0, 1, 2])
    image.save(tmp_path / "p.png")
    red_green_blue = [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]
    np.testing.assert_array_equal(read_image(tmp_path / "p.png"), red_green_blue)
    image.save(tmp_path / "p_transparent.png", transparency=1)  # palette index 1 fully transparent
    np.testing.assert_array_equal(read_image(tmp_path / "p_transparent.png"),
                                  [[[255, 0, 0], [0, 0, 0], [0, 0, 255]]])
    image.save(tmp_path / "p.gif")
    np.testing.assert_array_equal(read_image(tmp_path / "p.gif"), red_green_blue)


def test_cmyk(tmp_path):
    Image.new("CMYK", (2, 1), (0, 255, 255, 0)).save(tmp_path / "cmyk.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "cmyk.tif"), [[[255, 0, 0]] * 2])


def test_16bit_grayscale_png_scaled_with_rounding(tmp_path):
    values = np.array([[65535, 32768, 0, 257, 385, 386]], np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert mode_of(tmp_path / "g16.png") == "I;16"
    # 385 * 255 / 65535 = 1.498 -> 1, 386 -> 1.502 -> 2 (rounded, not truncated or clipped)
    expected = np.array([255, 128, 0, 1, 1, 2], np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "g16.png"),
                                  np.repeat(expected[None, :, None], 3, 2))


def test_32bit_integer_tiff(tmp_path):
    Image.fromarray(np.array([[65535, 32768, 0]], np.int32)).save(tmp_path / "i.tif")
    assert mode_of(tmp_path / "i.tif") == "I"
    np.testing.assert_array_equal(read_image(tmp_path / "i.tif")[..., 0], [[255, 128, 0]])
    Image.fromarray(np.array([[70000, 0]], np.int32)).save(tmp_path / "big.tif")
    with pytest.raises(ImageReadError, match=r"big\.tif.*\[0, 70000\]"):
        read_image(tmp_path / "big.tif")


def test_float_tiff_unit_and_byte_ranges(tmp_path):
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)).save(tmp_path / "unit.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "unit.tif")[..., 0], [[0, 128, 255]])
    Image.fromarray(np.array([[-3.0, 127.6, 300.0]], np.float32)).save(tmp_path / "byte.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "byte.tif")[..., 0], [[0, 128, 255]])
    Image.fromarray(np.array([[np.nan, 0.0]], np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match="NaN"):
        read_image(tmp_path / "nan.tif")


def test_16bit_rgb_png_keeps_high_byte(tmp_path):
    values = np.array([[[65535, 32768, 0], [257, 1000, 65280]]], np.uint16)
    write_png16(tmp_path / "rgb16.png", values, color_type=2)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb16.png"), values >> 8)
    rgba = np.array([[[65535, 32768, 0, 65535], [65535, 65535, 65535, 0]]], np.uint16)
    write_png16(tmp_path / "rgba16.png", rgba, color_type=6)
    np.testing.assert_array_equal(read_image(tmp_path / "rgba16.png"), [[[255, 128, 0], [0, 0, 0]]])


def test_exif_rotated_jpeg_comes_out_upright(tmp_path):
    stored = np.zeros((8, 16, 3), np.uint8)  # 16 wide, 8 high: left half red, right half blue
    stored[:, :8] = (255, 0, 0)
    stored[:, 8:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was rotated: display after turning 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = read_image(tmp_path / "rotated.jpg")
    check_output(out, 16, 8)
    assert (np.abs(out[:6].astype(int) - (255, 0, 0)) < 40).all()  # left half is now on top
    assert (np.abs(out[10:].astype(int) - (0, 0, 255)) < 40).all()
    with Image.open(tmp_path / "rotated.jpg") as image:  # a PIL image is turned the same way
        np.testing.assert_array_equal(read_image(image), out)


def test_one_pixel_and_large_images(tmp_path):
    Image.new("RGB", (1, 1), (1, 2, 3)).save(tmp_path / "one.png")
    np.testing.assert_array_equal(read_image(tmp_path / "one.png"), [[[1, 2, 3]]])
    Image.new("RGB", (4000, 3000), (9, 8, 7)).save(tmp_path / "large.png", compress_level=1)
    out = read_image(tmp_path / "large.png")
    check_output(out, 3000, 4000)
    assert (out == (9, 8, 7)).all()


def test_truncated_files(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for suffix in ("png", "jpg"):
        full = tmp_path / f"full.{suffix}"
        Image.fromarray(noise).save(full)
        data = full.read_bytes()
        (tmp_path / f"half.{suffix}").write_bytes(data[: len(data) // 2])
        with pytest.raises(ImageReadError, match=rf"half\.{suffix}.*truncated or corrupt"):
            read_image(tmp_path / f"half.{suffix}")
        with Image.open(tmp_path / f"half.{suffix}") as lazy:  # opened, not yet decoded
            with pytest.raises(ImageReadError, match="truncated or corrupt"):
                read_image(lazy)


def test_bad_files_name_file_and_reason(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image at all\n")
    cases = {tmp_path / "empty.png": "empty", tmp_path / "text.png": "not an image file",
             tmp_path / "missing.png": "no such file", tmp_path: "is a directory"}
    for path, reason in cases.items():
        with pytest.raises(ImageReadError) as info:
            read_image(path)
        message = str(info.value)
        assert str(path) in message and reason in message and "\n" not in message
        assert isinstance(info.value, ValueError) and info.value.path == str(path)


def test_decompression_bomb_is_a_clear_error(tmp_path, monkeypatch):
    Image.new("RGB", (10, 10)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # PIL refuses above twice the limit
    with pytest.raises(ImageReadError, match=r"bomb\.png.*MAX_IMAGE_PIXELS"):
        read_image(tmp_path / "bomb.png")


def test_error_pickles():
    error = pickle.loads(pickle.dumps(ImageReadError("a.png", "bad\ndata")))
    assert error.path == "a.png" and str(error) == "cannot read image 'a.png': bad data"


# --------------------------------------------------------------------------- arrays and tensors

def test_uint8_arrays_every_layout():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = read_image(rgb)
    check_output(out, 2, 3)
    np.testing.assert_array_equal(out, rgb)
    assert not np.shares_memory(out, rgb)
    gray = np.array([[0, 9], [200, 255]], np.uint8)
    expected = np.repeat(gray[:, :, None], 3, 2)
    np.testing.assert_array_equal(read_image(gray), expected)
    np.testing.assert_array_equal(read_image(gray[:, :, None]), expected)
    rgba = np.array([[[200, 100, 50, 128], [1, 2, 3, 255]]], np.uint8)
    np.testing.assert_array_equal(read_image(rgba), [[[100, 50, 25], [1, 2, 3]]])
    flipped = read_image(rgb[:, ::-1])  # non-contiguous input
    assert flipped.flags.c_contiguous
    np.testing.assert_array_equal(flipped, rgb[:, ::-1])


def test_uint16_bool_and_float_arrays():
    wide = np.array([[65535, 32768, 386, 0]], np.uint16)
    np.testing.assert_array_equal(read_image(wide)[..., 0], [[255, 128, 2, 0]])
    np.testing.assert_array_equal(read_image(wide.astype(">u2"))[..., 0], [[255, 128, 2, 0]])
    np.testing.assert_array_equal(read_image(np.array([[True, False]]))[..., 1], [[255, 0]])
    for dtype in (np.float16, np.float32, np.float64):
        values = np.array([[[0.0, 0.5, 1.0]]], dtype)
        np.testing.assert_array_equal(read_image(values), [[[0, 128, 255]]])


@pytest.mark.parametrize("array", [
    np.zeros((4, 4, 2), np.uint8), np.zeros((3, 4, 5), np.uint8), np.zeros((1, 4, 4, 3), np.uint8),
    np.zeros(4, np.uint8), np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4), np.int32),
    np.zeros((4, 4), np.uint32),
])
def test_bad_array_shape_or_dtype(array):
    with pytest.raises(ValueError, match=rf"got shape \({', '.join(map(str, array.shape))},?\) "
                                         rf"dtype {array.dtype}"):
        read_image(array)


def test_float_array_out_of_range_or_nan():
    with pytest.raises(ValueError, match=r"\[0, 1\], got \[0, 2\]"):
        read_image(np.array([[0.0, 2.0]], np.float32))
    with pytest.raises(ValueError, match="NaN"):
        read_image(np.array([[np.nan]], np.float32))


def test_tensors_channels_first():
    chw = torch.arange(3 * 2 * 4, dtype=torch.uint8).reshape(3, 2, 4)
    out = read_image(chw)
    check_output(out, 2, 4)
    np.testing.assert_array_equal(out, chw.permute(1, 2, 0).numpy())
    assert not np.shares_memory(out, chw.numpy())
    np.testing.assert_array_equal(read_image(torch.tensor([[[0.0, 0.5, 1.0]]])),
                                  [[[0] * 3, [128] * 3, [255] * 3]])
    rgba = torch.tensor([[[200]], [[100]], [[50]], [[128]]], dtype=torch.uint8)
    np.testing.assert_array_equal(read_image(rgba), [[[100, 50, 25]]])
    half = torch.full((3, 1, 1), 0.5, dtype=torch.bfloat16, requires_grad=True)
    np.testing.assert_array_equal(read_image(half), [[[128, 128, 128]]])


def test_bad_tensors():
    with pytest.raises(ValueError, match=r"\(C, H, W\).*\(5, 6, 3\).*permute"):
        read_image(torch.zeros(5, 6, 3, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"\(C, H, W\).*\(5, 6\)"):
        read_image(torch.zeros(5, 6, dtype=torch.uint8))
    with pytest.raises(ValueError, match="torch.int64"):
        read_image(torch.zeros(3, 5, 6, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        read_image(torch.full((3, 2, 2), 255.0))


def test_pil_images_and_other_types():
    np.testing.assert_array_equal(read_image(Image.new("L", (2, 1), 7)), [[[7] * 3] * 2])
    with pytest.raises(ImageReadError, match="<PIL image>.*La"):
        read_image(Image.new("La", (2, 1)))
    with pytest.raises(ImageReadError, match=r"no pixels \(0x3\)"):
        read_image(Image.new("I", (0, 3)))
    with pytest.raises(TypeError, match="list"):
        read_image([[0, 1]])


# ---------------------------------------------------------------------------------- image_files

def test_image_files(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("b.jpg", "a.PNG", "c.txt", "d.JpEg", ".hidden.png", "e.webp"):
        (folder / name).write_bytes(b"x")
    (folder / "sub.png").mkdir()  # a directory named like an image is not an image
    (tmp_path / "notes.txt").write_text("kept as given")
    files = image_files([str(tmp_path / "notes.txt"), str(folder)])
    expected = [folder / name for name in ("a.PNG", "b.jpg", "d.JpEg", "e.webp")]
    assert files == [tmp_path / "notes.txt"] + expected
    assert image_files(folder) == expected  # one path instead of a list
    assert image_files([]) == []
    with pytest.raises(ImageReadError, match="missing.*no such file"):
        image_files([folder, tmp_path / "missing"])
