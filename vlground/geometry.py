"""The one place where coordinates move between frames.

Frames a model may write in:
  "norm1000"      integers on [0, 1000) of the original image (Qwen-VL, Qwen2-VL, Qwen3-VL);
                  the pixel is x / scale * width, with scale 1000 by default. Qwen-VL's official RefCOCO
                  script and Qwen3-VL's OCR cookbook divide by 999 instead: pass scale=999 for those.
  "input_pixels"  absolute pixels of the smart-resized model input (Qwen2.5-VL); the pixel on the
                  original image is x / input_width * width.
Everything else in vlground works in pixels of the ORIGINAL image as displayed (EXIF applied)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vlground.families import Family, get_family

FRAMES = ("norm1000", "input_pixels")


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 3136, max_pixels: int = 12845056) -> tuple[int, int]:
    """(height, width) of the model input for an image of height x width, exactly as the Qwen2-VL
    image processor computes it: both sides multiples of `factor`, area within [min_pixels, max_pixels],
    aspect ratio kept as well as rounding allows. Python's round() (ties to even) is part of the result.
    The defaults are the released Qwen2/2.5-VL checkpoints' settings, not transformers' class defaults."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"aspect ratio must be at most 200, got {max(height, width) / min(height, width):.1f} ({width}x{height})")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def model_input_size(
    family: str | Family, image_size: tuple[int, int], min_pixels: int | None = None, max_pixels: int | None = None
) -> tuple[int, int]:
    """(width, height) of what `family`'s processor feeds the model for an image of `image_size`
    (width, height), with the released checkpoint's min/max pixels unless given."""
    fam = get_family(family)
    width, height = image_size
    h, w = smart_resize(
        height,
        width,
        factor=fam.factor,
        min_pixels=fam.min_pixels if min_pixels is None else min_pixels,
        max_pixels=fam.max_pixels if max_pixels is None else max_pixels,
    )
    return w, h


def frame_scale(
    frame: str, image_size: tuple[int, int], input_size: tuple[int, int] | None = None, scale: float = 1000
) -> tuple[float, float]:
    """(sx, sy): original-image pixels per unit of `frame` along x and y."""
    width, height = image_size
    if frame == "norm1000":
        return width / scale, height / scale
    if frame == "input_pixels":
        if input_size is None:
            raise ValueError("the input_pixels frame needs the model input size (width, height)")
        return width / input_size[0], height / input_size[1]
    raise ValueError(f"unknown frame {frame!r}; frames: {', '.join(FRAMES)}")


def to_pixels(
    xy: Sequence[float] | np.ndarray,
    frame: str,
    image_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
    scale: float = 1000,
) -> np.ndarray:
    """Flat x, y, x, y, ... coordinates in `frame` -> the same layout in original-image pixels."""
    out = np.asarray(xy, dtype=np.float64).reshape(-1, 2) * frame_scale(frame, image_size, input_size, scale)
    return out.reshape(-1)


def from_pixels(
    xy: Sequence[float] | np.ndarray,
    frame: str,
    image_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
    scale: float = 1000,
) -> np.ndarray:
    """The inverse of `to_pixels`, rounded to the integers models write (clamped into the frame)."""
    out = np.asarray(xy, dtype=np.float64).reshape(-1, 2) / frame_scale(frame, image_size, input_size, scale)
    upper = (scale - 1, scale - 1) if frame == "norm1000" else input_size
    return np.clip(np.rint(out), 0, upper).astype(int).reshape(-1)
