"""The one way vlground turns a file, a PIL image or an array into pixels.

Every command loads images here, so every command sees the same thing a person sees in an image
viewer: EXIF orientation applied, 8-bit RGB, transparency flattened onto white, the first frame of an
animation or multi-page file. Anything that cannot be read that way raises `ImageLoadError`, whose
message names the file and says what is wrong, so a batch can record it and go on."""
from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

# Pillow's own bomb limit is MAX_IMAGE_PIXELS (it warns past it) and raises past twice that; we refuse
# at the same point by default, but with our message and a limit the caller chooses.
DEFAULT_MAX_IMAGE_PIXELS = 2 * 89_478_485

ImageSource = Union[str, Path, Image.Image, np.ndarray]

_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # orientations that swap width and height
_pil_limit_lock = threading.Lock()


class ImageLoadError(Exception):
    """An input that cannot be turned into an image; `str(error)` is "<source>: <what is wrong>"."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def _describe(src: ImageSource) -> str:
    if isinstance(src, (str, Path)):
        return str(src)
    if isinstance(src, np.ndarray):
        return f"<array {src.shape} {src.dtype}>"
    return f"<PIL image {src.mode} {src.width}x{src.height}>"


def _check_pixels(name: str, size: tuple[int, int], max_pixels: int | None) -> None:
    width, height = size
    if width < 1 or height < 1:
        raise ImageLoadError(name, f"image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageLoadError(
            name,
            f"{width}x{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
            "(a decompression bomb, or a very large image: raise the limit with --max-image-pixels "
            "or max_pixels= if you trust the file)",
        )


def _open_file(path: Path) -> Image.Image:
    """Open lazily (header only). Pillow's global bomb check is lifted for the call: the caller
    applies its own limit to the size, before any pixel is decoded."""
    if path.is_dir():
        raise ImageLoadError(str(path), "is a directory, not an image file")
    try:
        if path.stat().st_size == 0:
            raise ImageLoadError(str(path), "empty file (0 bytes)")
        with _pil_limit_lock:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                return Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(str(path), "no such file") from None
    except PermissionError:
        raise ImageLoadError(str(path), "permission denied; cannot read the file") from None
    except UnidentifiedImageError:
        raise ImageLoadError(str(path), "not an image, or a format Pillow cannot read") from None
    except OSError as error:
        raise ImageLoadError(str(path), f"cannot read the file ({error})") from None
    except Exception as error:  # a reader plugin tripping over malformed headers
        raise ImageLoadError(str(path), f"malformed image header ({type(error).__name__}: {error})") from None


def _displayed_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    orientation = _header_orientation(image)
    return (height, width) if orientation in _TRANSPOSED_ORIENTATIONS else (width, height)


def _header_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation, read from the header alone. Pillow's PNG `getexif()` decodes every pixel
    to look for an eXIf chunk after them, which a size query (of a decompression bomb, say) must not
    pay for; the PNG rules put eXIf before the pixels, where the header read has found it."""
    try:
        if image.format != "PNG":
            return image.getexif().get(_EXIF_ORIENTATION)
        exif = Image.Exif()
        exif.load(image.info.get("exif") or b"")
        return exif.get(_EXIF_ORIENTATION)
    except Exception:  # broken EXIF: the image is shown as stored
        return None


def _exif_transposed(image: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # broken EXIF: the image is shown as stored
        return image


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """High bit depths to 0..255 by their full range (16-bit 65535 -> 255), never by clipping:
    clipping turns most of a 16-bit image white and its text invisible."""
    if values.dtype == np.uint8:
        return values
    if values.dtype.kind == "f":
        finite = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        top = 1.0 if finite.max(initial=0.0) <= 1.0 else 255.0 if finite.max() <= 255.0 else float(finite.max())
        return np.clip(finite / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if values.dtype.kind == "b":
        return values.astype(np.uint8) * 255
    wide = values.astype(np.int64)
    peak = int(wide.max(initial=0))
    top = 255 if peak <= 255 else 65535 if peak <= 65535 else peak
    return np.clip(wide * 255 // top, 0, 255).astype(np.uint8)


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """Composite on white: transparent areas of screenshots and logos are a page, not black ink."""
    rgba = image.convert("RGBA")
    page = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(page, rgba).convert("RGB")


def _cmyk_to_rgb(image: Image.Image) -> Image.Image:
    """Through the embedded ICC profile when there is one (print CMYK is far from naive inversion)."""
    profile = image.info.get("icc_profile")
    if profile:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
            return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
        except Exception:  # a broken profile: fall back to the plain conversion
            pass
    return image.convert("RGB")


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "CMYK":
        return _cmyk_to_rgb(image)
    if mode == "P":
        return _flatten_alpha(image) if "transparency" in image.info else image.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        return _flatten_alpha(image)
    if mode.startswith(("I", "F")):  # 16-bit and 32-bit grayscale
        return Image.fromarray(_scale_to_uint8(np.asarray(image))).convert("RGB")
    return image.convert("RGB")


def _from_array(array: np.ndarray) -> Image.Image:
    """HxW (gray), HxWx1, HxWx3 (RGB, not OpenCV's BGR) or HxWx4 (RGBA) of any numeric dtype."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageLoadError(_describe(array), "an image array is HxW, HxWx3 (RGB) or HxWx4 (RGBA)")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ImageLoadError(_describe(array), "image has no pixels")
    return Image.fromarray(np.ascontiguousarray(_scale_to_uint8(array)))


def load_image(src: ImageSource, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """An 8-bit RGB image as displayed: EXIF orientation applied, transparency on white, CMYK through
    its ICC profile, 16-bit scaled (not clipped), first frame of animations and multi-page files.

    `src` is a path, a PIL image or an array (RGB order). Images over `max_pixels` (width x height as
    stored; None for no limit) are refused before their pixels are decoded. Raises `ImageLoadError`
    for every input that cannot be read, with the file and the reason in the message."""
    if not isinstance(src, (str, Path, Image.Image, np.ndarray)):
        raise TypeError(f"load_image takes a path, a PIL image or a numpy array, not {type(src).__name__}")
    name = _describe(src)
    if isinstance(src, np.ndarray):
        _check_pixels(name, (src.shape[1], src.shape[0]) if src.ndim >= 2 else (0, 0), max_pixels)
        return _to_rgb(_from_array(src))
    if isinstance(src, Image.Image):
        _check_pixels(name, src.size, max_pixels)
        return _to_rgb(_exif_transposed(src)).copy()
    image = _open_file(Path(src))
    with image:
        return _decoded(image, name, max_pixels)


def _decoded(image: Image.Image, name: str, max_pixels: int | None) -> Image.Image:
    """The current frame of an open file, as `load_image` promises, detached from the file."""
    _check_pixels(name, image.size, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette-transparency notes; we convert explicitly
            image.load()
            rgb = _to_rgb(_exif_transposed(image))
            if rgb is image:  # detach from the file before it is closed
                rgb = image.copy()
    except MemoryError:
        raise ImageLoadError(name, "not enough memory to decode this image; lower --max-image-pixels") from None
    except Exception as error:  # Pillow reports truncation and corrupt data in many exception types
        raise ImageLoadError(name, f"truncated or corrupt image data ({type(error).__name__}: {error})") from None
    return rgb


def open_frames(path: str | Path) -> Image.Image:
    """A multi-page file (TIFF) opened lazily for `count_frames` and `read_frame`; the caller closes
    it. Keeping it open between pages keeps Pillow's table of where each page starts, so page N does
    not walk the N-1 pages before it again. Raises `ImageLoadError` like `load_image`."""
    return _open_file(Path(path))


def count_frames(image: Image.Image, path: str | Path) -> int:
    """How many frames (pages) the open file holds; 1 for ordinary images."""
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception as error:  # a broken page chain
        raise ImageLoadError(str(path), f"cannot count the pages ({type(error).__name__}: {error})") from None


def read_frame(image: Image.Image, path: str | Path, index: int, *, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Frame `index` (0-based) of the open file, under the rules of `load_image` (its own size
    checked against `max_pixels`, its own orientation applied)."""
    name = f"{path} page {index + 1}"
    try:
        image.seek(index)
    except (EOFError, ValueError):
        raise ImageLoadError(name, f"no such page (the file has {getattr(image, 'n_frames', 1)})") from None
    except Exception as error:
        raise ImageLoadError(name, f"cannot reach this page ({type(error).__name__}: {error})") from None
    return _decoded(image, name, max_pixels)


def image_size(src: ImageSource) -> tuple[int, int]:
    """(width, height) of the image as displayed (EXIF orientation honoured), read from the file
    header without decoding the pixels. Raises `ImageLoadError` like `load_image`."""
    if isinstance(src, np.ndarray):
        if src.ndim < 2:
            raise ImageLoadError(_describe(src), "an image array is HxW, HxWx3 or HxWx4")
        return (int(src.shape[1]), int(src.shape[0]))
    if isinstance(src, Image.Image):
        return _displayed_size(src)
    if not isinstance(src, (str, Path)):
        raise TypeError(f"image_size takes a path, a PIL image or a numpy array, not {type(src).__name__}")
    with _open_file(Path(src)) as image:
        return _displayed_size(image)
