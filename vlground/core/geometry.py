"""The one place where coordinates move between frames.

Frames a model may write in:
  "norm1000"      integers on [0, 1000) of the original image (Qwen-VL, Qwen2-VL, Qwen3-VL);
                  the pixel is x / scale * width, with scale 1000 by default. Qwen-VL's official RefCOCO
                  script and Qwen3-VL's OCR cookbook divide by 999 instead: pass scale=999 for those.
  "input_pixels"  absolute pixels of the smart-resized model input (Qwen2.5-VL); the pixel on the
                  original image is x / input_width * width.
Everything else in vlground works in pixels of the ORIGINAL image as displayed (EXIF applied).
`Frame` is the one object that converts; build it once per image (`Frame.for_family`)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vlground.core.families import Family, get_family

FRAMES = ("norm1000", "input_pixels")


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 3136, max_pixels: int = 12845056) -> tuple[int, int]:
    """(height, width) of the model input for an image of height x width, exactly as the Qwen2-VL
    image processor computes it: both sides multiples of `factor`, area within [min_pixels, max_pixels],
    aspect ratio kept as well as rounding allows. Python's round() (ties to even) is part of the result.
    The defaults are the released Qwen2/2.5-VL checkpoints' settings, not transformers' class defaults."""
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if not (0 < min_pixels <= max_pixels):
        raise ValueError(f"min_pixels and max_pixels must satisfy 0 < min_pixels <= max_pixels; got {min_pixels} and {max_pixels}")
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


class Frame:
    """The frame one model answer is written in, built once per image; every move of coordinates
    between what the model writes and pixels of the original image goes through it.

    `kind` is "norm1000" (units of 1/`scale` of the original image; scale 1000, or 999 for the
    protocols that divide by it) or "input_pixels" (pixels of the smart-resized model input
    `input_size`). Sizes are (width, height); `edges` is the image's right and bottom edge in the
    frame's own units (scale, or the input size). Coordinates are flat x, y, x, y, ... sequences or
    arrays whose last axis holds them: 2 numbers a point, 4 a box, 8 a quad."""

    __slots__ = ("kind", "image_size", "input_size", "scale", "sx", "sy", "_width", "_height", "edges", "_scale4", "_limit4", "_most", "_nearest_edge")

    def __init__(
        self, kind: str, image_size: tuple[int, int], input_size: tuple[int, int] | None = None, scale: float = 1000
    ) -> None:
        if kind not in FRAMES:
            raise ValueError(f"unknown frame {kind!r}; frames: {', '.join(FRAMES)}")
        width, height = _positive_size(image_size, "image size")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be a positive number (1000, or 999 for the protocols that divide by it); got {scale!r}")
        if input_size is not None:
            input_size = _positive_size(input_size, "model input size")
        if kind == "input_pixels":
            if input_size is None:
                raise ValueError("the input_pixels frame needs the model input size (width, height)")
            self.sx, self.sy = width / input_size[0], height / input_size[1]
        else:
            self.sx, self.sy = width / scale, height / scale
        self.kind, self.image_size, self.input_size, self.scale = kind, (width, height), input_size, scale
        self._width, self._height = float(width), float(height)
        self._scale4 = np.array([self.sx, self.sy, self.sx, self.sy])
        self._limit4 = np.array([self._width, self._height, self._width, self._height])
        self._most = max(self.sx, self.sy)
        self.edges = (float(scale), float(scale)) if kind == "norm1000" else (float(input_size[0]), float(input_size[1]))
        self._nearest_edge = min(self.edges)

    @classmethod
    def for_family(
        cls,
        family: str | Family,
        image_size: tuple[int, int],
        input_size: tuple[int, int] | None = None,
        *,
        scale: float = 1000,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> Frame:
        """The frame `family` writes in for an image of `image_size`. Without `input_size`, the
        model input is derived with smart_resize (the released checkpoint's min/max pixels unless
        given) for every family that resizes; Qwen-VL (squashed to 448x448) has none."""
        fam = get_family(family)
        if input_size is None and fam.patch_size is not None:
            input_size = model_input_size(fam, _positive_size(image_size, "image size"), min_pixels, max_pixels)
        return cls(fam.frame, image_size, input_size, scale)

    def __repr__(self) -> str:
        return f"Frame({self.kind!r}, image_size={self.image_size}, input_size={self.input_size}, scale={self.scale})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Frame) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return (self.kind, self.image_size, self.input_size, self.scale)

    @property
    def extent(self) -> tuple[float, float]:
        """The largest (x, y) a model writes in this frame: scale - 1 for the 0-1000 frames, the
        input's width and height for input pixels."""
        if self.kind == "norm1000":
            return (self.scale - 1, self.scale - 1)
        return (float(self.input_size[0]), float(self.input_size[1]))

    def to_pixels(self, xy: Sequence[float] | np.ndarray) -> np.ndarray:
        """Coordinates in this frame -> the same layout in original-image pixels (float64, not clipped)."""
        xy = np.asarray(xy, dtype=np.float64)
        return (xy.reshape(-1, 2) * (self.sx, self.sy)).reshape(xy.shape)

    def to_fractions(self, x: float, y: float) -> tuple[float, float]:
        """A point in this frame -> fractions of the image's width and height, each in one division
        by the frame's extent (x / scale, or x / input width), not through pixels: the GUI
        benchmarks' scripts compare clicks in fractions taken this way, and a click on a box's edge
        must stay on it to the last bit (x * (width / input width) / width need not equal it)."""
        if self.kind == "norm1000":
            return x / self.scale, y / self.scale
        return x / self.input_size[0], y / self.input_size[1]

    def from_pixels(self, xy: Sequence[float] | np.ndarray) -> np.ndarray:
        """Original-image pixels -> the integers a model writes in this frame, clamped into
        [0, extent] so that no written coordinate lies outside the frame."""
        xy = np.asarray(xy, dtype=np.float64)
        out = np.rint(xy.reshape(-1, 2) / (self.sx, self.sy))
        return np.clip(out, 0, self.extent).astype(int).reshape(xy.shape)

    def boxes_to_pixels(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """(N, 4) boxes in this frame -> (pixels, kept, clipped): corners put in order and clipped
        to the image; rows that are not finite numbers of sane magnitude (|x| < 1e12) are not
        kept; `clipped` counts the kept values that lay outside the image (compared in this
        frame's units, so that a value on the edge is never counted for a rounding of its pixels)."""
        written = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        # every row sane (and nothing to overflow) when the largest written magnitude is small:
        # the common case, checked without a temporary array; false also when any is nan
        low, high = (written.min(), written.max()) if len(written) else (0.0, 0.0)
        if max(high, -low) * self._most < _SANE / 4:
            px = written * self._scale4
            kept = np.ones(len(px), dtype=bool)
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                px = written * self._scale4
                kept = np.abs(px).sum(axis=1) < _SANE
            px, written = px[kept], written[kept]
            low, high = (written.min(), written.max()) if len(written) else (0.0, 0.0)
        clipped = int(np.count_nonzero(written < 0.0)) if low < 0.0 else 0
        if high > self._nearest_edge:
            clipped += int(np.count_nonzero(written > self.edges * 2))
        out = np.empty_like(px)
        np.minimum(px[:, :2], px[:, 2:], out=out[:, :2])
        np.maximum(px[:, :2], px[:, 2:], out=out[:, 2:])
        np.maximum(out, 0.0, out=out)
        return np.minimum(out, self._limit4, out=out), kept, clipped

    def place(self, coords: Sequence[float]) -> tuple | None:
        """One item's coordinates (2, 4 or 8 numbers in this frame) in original pixels, clipped to
        the image, a box's corners in order: a point (x, y), a box (x1, y1, x2, y2) or a quad of four
        (x, y). None unless they are 2, 4 or 8 finite numbers of sane magnitude. Plain Python: one
        item is too small for numpy to pay off."""
        n = len(coords)
        if n == 4:  # boxes: by far the most common, so spelled out
            sx, sy = self.sx, self.sy
            try:
                x1, y1, x2, y2 = float(coords[0]) * sx, float(coords[1]) * sy, float(coords[2]) * sx, float(coords[3]) * sy
            except (TypeError, ValueError, OverflowError):
                return None
            if not abs(x1) + abs(y1) + abs(x2) + abs(y2) < _SANE:  # also false for nan and inf
                return None
            if x1 > x2:
                x1, x2 = x2, x1
            if y1 > y2:
                y1, y2 = y2, y1
            w, h = self._width, self._height
            return (
                0.0 if x1 < 0.0 else w if x1 > w else x1,
                0.0 if y1 < 0.0 else h if y1 > h else y1,
                0.0 if x2 < 0.0 else w if x2 > w else x2,
                0.0 if y2 < 0.0 else h if y2 > h else y2,
            )
        if n not in (2, 8):
            return None
        try:
            xs = [float(c) * self.sx for c in coords[0::2]]
            ys = [float(c) * self.sy for c in coords[1::2]]
        except (TypeError, ValueError, OverflowError):
            return None
        if not sum(map(abs, xs)) + sum(map(abs, ys)) < _SANE:
            return None
        w, h = self._width, self._height
        xs = [0.0 if x < 0.0 else w if x > w else x for x in xs]
        ys = [0.0 if y < 0.0 else h if y > h else y for y in ys]
        return (xs[0], ys[0]) if n == 2 else tuple(zip(xs, ys))


_SANE = 1e12  # |coordinate| sums beyond this (in pixels) are garbage, not geometry


def _positive_size(size: tuple[int, int], what: str) -> tuple[int, int]:
    """`size` as a (width, height) tuple, checked: two finite numbers, each at least 1."""
    try:
        width, height = size
        ok = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and 1 <= v < math.inf for v in size)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{what} must be two positive numbers (width, height); got {size!r}")
    return width, height
