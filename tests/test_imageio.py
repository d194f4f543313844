"""Every kind of file a real folder holds, built here, through the one image loader."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, image_size, load_image

EXIF_ORIENTATION = 0x0112


def _marked(size=(40, 20)) -> Image.Image:
    """Red everywhere but a blue top-left corner, so orientation can be checked."""
    image = Image.new("RGB", size, (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 8, 8))
    return image


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG that declares width x height but holds no pixel data: a bomb costs nothing to build."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("orientation, size, blue_at", [
    (1, (40, 20), (2, 2)),
    (3, (40, 20), (37, 17)),   # rotated 180
    (6, (20, 40), (17, 2)),    # rotated 90 clockwise to display: the corner moves top-right
    (8, (20, 40), (2, 37)),    # rotated 90 counter-clockwise: bottom-left
    (2, (40, 20), (37, 2)),    # mirrored left-right: top-right
    (4, (40, 20), (2, 17)),    # mirrored top-bottom: bottom-left
    (5, (20, 40), (2, 2)),     # transposed (mirror + rotation): width and height swap, the corner stays
    (7, (20, 40), (17, 37)),   # transversed: width and height swap, the corner goes bottom-right
])
def test_exif_orientation_is_applied(tmp_path, orientation, size, blue_at):
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    _marked().save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == size
    r, g, b = image.getpixel(blue_at)
    assert b > 200 and r < 60
    assert image_size(path) == size


def test_cmyk_jpeg_and_tiff_become_the_right_rgb(tmp_path):
    # CMYK (0, 255, 255, 0) is pure red; full black ink is black.
    for name in ("cmyk.jpg", "cmyk.tif"):
        source = Image.new("CMYK", (30, 20), (0, 255, 255, 0))
        source.paste((0, 0, 0, 255), (0, 0, 10, 10))
        source.save(tmp_path / name)
        image = load_image(tmp_path / name)
        assert image.mode == "RGB"
        assert np.allclose(image.getpixel((20, 15)), (255, 0, 0), atol=12)
        assert max(image.getpixel((2, 2))) < 20


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    # Dark text (value 10000 of 65535) on mid-gray paper (40000): clipping to 255 would erase it.
    pixels = np.full((20, 30), 40000, dtype=np.uint16)
    pixels[5:15, 5:15] = 10000
    Image.fromarray(pixels).save(tmp_path / "scan16.png")
    image = np.asarray(load_image(tmp_path / "scan16.png"))
    assert image.shape == (20, 30, 3)
    assert abs(int(image[0, 0, 0]) - 40000 * 255 // 65535) <= 1
    assert abs(int(image[10, 10, 0]) - 10000 * 255 // 65535) <= 1


def test_16_bit_rgb_png(tmp_path):
    import cv2  # Pillow cannot write 48-bit PNGs; OpenCV can

    pixels = np.zeros((10, 12, 3), dtype=np.uint16)
    pixels[..., 2] = 65535  # OpenCV is BGR: red
    cv2.imwrite(str(tmp_path / "rgb48.png"), pixels)
    assert load_image(tmp_path / "rgb48.png").getpixel((3, 3)) == (255, 0, 0)


@pytest.mark.parametrize("mode, fill", [("RGBA", (0, 0, 0, 0)), ("LA", (0, 0))])
def test_transparency_is_flattened_on_white(tmp_path, mode, fill):
    image = Image.new(mode, (20, 10), fill)
    image.paste((0, 255) if mode == "LA" else (0, 0, 0, 255), (0, 0, 5, 5))
    image.save(tmp_path / "alpha.png")
    loaded = load_image(tmp_path / "alpha.png")
    assert loaded.getpixel((15, 8)) == (255, 255, 255)   # transparent: white paper, not black
    assert loaded.getpixel((1, 1)) == (0, 0, 0)          # opaque ink stays


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (20, 10), 0)
    image.putpalette([0, 0, 0, 200, 10, 10] + [0] * 762)
    image.paste(1, (0, 0, 5, 5))
    image.save(tmp_path / "pal.png", transparency=0)
    loaded = load_image(tmp_path / "pal.png")
    assert loaded.getpixel((15, 8)) == (255, 255, 255)
    assert loaded.getpixel((1, 1)) == (200, 10, 10)


def test_animated_gif_reads_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), color) for color in ((0, 200, 0), (0, 0, 200), (200, 0, 0))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    r, g, b = load_image(tmp_path / "anim.gif").getpixel((8, 8))
    assert g > 150 and r < 50 and b < 50


@pytest.mark.parametrize("size", [(1, 1), (1, 3000), (3000, 1), (2, 2)])
def test_tiny_and_extreme_aspect_images_load(tmp_path, size):
    Image.new("L", size, 128).save(tmp_path / "odd.png")
    image = load_image(tmp_path / "odd.png")
    assert image.size == size and image.mode == "RGB"


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(ImageLoadError, match=r"bomb.png: 100000x100000 .* over the limit of 178,956,970"):
        load_image(tmp_path / "bomb.png")
    assert image_size(tmp_path / "bomb.png") == (100_000, 100_000)  # the header is fine to read


def test_the_size_of_a_bomb_is_read_without_decoding_it(tmp_path, monkeypatch):
    """Reading the size (and the EXIF orientation) of a PNG must not decode its pixels: Pillow's PNG
    getexif() would, allocating the whole 100000x100000 image."""
    from PIL import ImageFile

    decoded = []

    def refuse(self):
        decoded.append(self.size)
        raise MemoryError("decoded")

    _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)
    assert image_size(tmp_path / "bomb.png") == (100_000, 100_000)
    assert decoded == []


def test_pixel_limit_is_configurable(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "small.png")
    with pytest.raises(ImageLoadError, match="over the limit of 5,000"):
        load_image(tmp_path / "small.png", max_pixels=5000)
    assert load_image(tmp_path / "small.png", max_pixels=10_000).size == (100, 100)
    # Past Pillow's own limit, None really means none (Pillow would raise DecompressionBombError).
    huge = DEFAULT_MAX_IMAGE_PIXELS + 1
    Image.new("1", (huge // 10_000 + 1, 10_000)).save(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", max_pixels=None).size[1] == 10_000


@pytest.mark.parametrize("name, content, reason", [
    ("empty.jpg", b"", "empty file"),
    ("notes.jpg", b"just some text, not a picture\n", "not an image"),
    ("._photo.jpg", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ", "not an image"),
])
def test_bad_files_raise_clear_errors(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ImageLoadError, match=reason) as caught:
        load_image(tmp_path / name)
    assert str(tmp_path / name) in str(caught.value)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file_is_an_error_not_a_grey_image(tmp_path, fmt):
    path = tmp_path / f"cut.{fmt.lower()}"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (200, 300, 3), dtype=np.uint8)).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(path)
    assert image_size(path) == (300, 200)  # the size comes from the header, pixels are not decoded


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="is a directory"):
        load_image(tmp_path)


def test_unreadable_file(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    Image.new("RGB", (4, 4)).save(path)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Image, "open", denied)  # tests may run as root, where chmod cannot deny
    with pytest.raises(ImageLoadError, match="permission denied"):
        load_image(path)


def test_arrays_and_pil_images():
    gray16 = np.full((4, 6), 65535, dtype=np.uint16)
    assert load_image(gray16).getpixel((0, 0)) == (255, 255, 255)
    floats = np.zeros((4, 6, 3), dtype=np.float32)
    floats[..., 1] = 1.0
    assert load_image(floats).getpixel((0, 0)) == (0, 255, 0)
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    assert load_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageLoadError, match="HxW"):
        load_image(np.zeros((4, 6, 2), dtype=np.uint8))
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = 6
    rotated = _marked()
    rotated.info["exif"] = exif.tobytes()
    assert load_image(rotated).size == (20, 40)
    assert image_size(rotated) == (20, 40)
    with pytest.raises(TypeError):
        load_image(b"bytes")  # type: ignore[arg-type]
