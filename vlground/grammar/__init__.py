"""Parsers and formatters for every output dialect of the family.

`parse` turns what a model wrote into detections in pixels of the ORIGINAL image; `format_detections`
writes detections the way a model of that family would (for prompts and training data). A dialect is
one registry entry: an extractor (text -> items in the model's frame) and a formatter (the inverse)."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any
from dataclasses import dataclass

import numpy as np

from vlground.families import Family, get_family
from vlground.geometry import frame_scale, from_pixels, model_input_size
from vlground.grammar import json_items, markup, tags
from vlground.grammar.items import KINDS, Extraction, RawItem
from vlground.results import Detection, Result


def _extract_json_family(text: str) -> Extraction:
    """JSON first; document answers (HTML data-bbox, markdown image comments) and plain lines otherwise."""
    found = json_items.extract(text)
    if found.items:
        return found
    for extractor, marker in ((markup.extract_html, "data-bbox"), (markup.extract_markdown, "<!--")):
        if marker in text:
            found = extractor(text)
            if found.items:
                return found
    plain = markup.extract_plain(text)
    return plain if plain.items else Extraction(items=[], text=text.strip())


@dataclass(frozen=True)
class Dialect:
    extract: Callable[[str], Extraction]
    format: Callable[[list[RawItem]], str]


DIALECTS: dict[str, Dialect] = {
    "qwen-vl": Dialect(lambda t: tags.extract(t, tags.QWEN_VL), lambda i: tags.format_items(i, tags.QWEN_VL)),
    "qwen2-vl": Dialect(lambda t: tags.extract(t, tags.QWEN2_VL), lambda i: tags.format_items(i, tags.QWEN2_VL)),
    "json": Dialect(_extract_json_family, json_items.format_items),
}


def _input_size(
    fam: Family, image_size: tuple[int, int], input_size: tuple[int, int] | None, min_pixels: int | None, max_pixels: int | None
) -> tuple[int, int] | None:
    if fam.frame != "input_pixels" or input_size is not None:
        return input_size
    return model_input_size(fam, image_size, min_pixels, max_pixels)


def _place(coords: Sequence[Any], sx: float, sy: float, width: float, height: float) -> tuple | None:
    """The coordinates in original pixels, clipped to the image, a box's corners in order; None when
    they are not 2, 4 or 8 finite numbers. Written out in plain Python for speed: answers hold a few
    dozen items, where per-call numpy overhead costs more than it saves."""
    n = len(coords)
    if n == 4:  # boxes: by far the most common, so spelled out
        try:
            x1, y1, x2, y2 = float(coords[0]) * sx, float(coords[1]) * sy, float(coords[2]) * sx, float(coords[3]) * sy
        except (TypeError, ValueError):
            return None
        if not abs(x1) + abs(y1) + abs(x2) + abs(y2) < 1e12:  # also false for nan and inf
            return None
        if x1 > x2:
            x1, x2 = x2, x1
        if y1 > y2:
            y1, y2 = y2, y1
        return (max(0.0, min(x1, width)), max(0.0, min(y1, height)), max(0.0, min(x2, width)), max(0.0, min(y2, height)))
    if n not in KINDS:
        return None
    try:
        xs = [float(c) * sx for c in coords[0::2]]
        ys = [float(c) * sy for c in coords[1::2]]
    except (TypeError, ValueError):
        return None
    if not sum(map(abs, xs)) + sum(map(abs, ys)) < 1e12:  # also false for nan and inf
        return None
    xs = [max(0.0, min(x, width)) for x in xs]
    ys = [max(0.0, min(y, height)) for y in ys]
    return (xs[0], ys[0]) if n == 2 else tuple(zip(xs, ys))


def _detection(item: RawItem, xy: tuple) -> Detection:
    if len(item.coords) == 4:
        return Detection(item.label, box=xy, text=item.text, attributes=item.attributes)
    if len(item.coords) == 2:
        return Detection(item.label, point=xy, text=item.text, attributes=item.attributes)
    return Detection(item.label, quad=xy, text=item.text, attributes=item.attributes)


def parse(
    text: str,
    family: str | Family,
    image_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
    *,
    scale: float = 1000,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> Result:
    """Detections on the original image of `image_size` (width, height) from a model answer.

    `input_size` (width, height) is what the model saw; it matters for frames in input pixels
    (Qwen2.5-VL) and, when not given, is derived with the released checkpoint's smart_resize settings
    (or `min_pixels`/`max_pixels`). `scale` is the divisor of the 0-1000 frames (999 for the protocols
    that use it). Never raises on any text: what cannot be read is left out of the detections and
    stays in `Result.text`. Corners are put in order, coordinates clipped to the image, and exact
    repeats (a known generation loop) kept once."""
    fam = get_family(family)
    width, height = image_size
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    extraction = DIALECTS[fam.dialect].extract(text)
    seen_input = _input_size(fam, image_size, input_size, min_pixels, max_pixels)
    sx, sy = frame_scale(fam.frame, image_size, seen_input, scale)
    detections: list[Detection] = []
    keys: set[tuple] = set()
    for item in extraction.items:
        xy = _place(item.coords, sx, sy, float(width), float(height))
        if xy is None:
            continue
        key = (item.label, xy, item.text, json.dumps(item.attributes, sort_keys=True, default=str) if item.attributes else "")
        if key not in keys:
            keys.add(key)
            detections.append(_detection(item, xy))
    return Result(detections=detections, text=extraction.text, image_size=(width, height), raw=text)


def format_detections(
    detections: Sequence[Detection],
    family: str | Family,
    image_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
    *,
    scale: float = 1000,
) -> str:
    """The answer `family` would write for `detections` (original-image pixels): the inverse of parse,
    up to the rounding of the model's integer frame."""
    fam = get_family(family)
    seen_input = _input_size(fam, image_size, input_size, None, None)
    items = []
    for d in detections:
        xy = d.box if d.box is not None else d.point if d.point is not None else np.ravel(d.quad)
        coords = from_pixels(xy, fam.frame, image_size, seen_input, scale)
        items.append(RawItem(label=d.label, coords=tuple(int(v) for v in coords), text=d.text, attributes=dict(d.attributes)))
    return DIALECTS[fam.dialect].format(items)
