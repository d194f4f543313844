"""From an extraction (items in the model's frame) to a Result on the original image: every item
moved through the image's Frame, corners ordered, clipped, exact repeats (a known generation loop)
kept once, items whose coordinates are not 2, 4 or 8 usable numbers left out.

Long answers of boxes go through numpy as columns and the Detection objects are made only when
asked for; short ones item by item in plain Python, where numpy's per-call cost would dominate.
Both give the same detections (tests/test_parse_speed_paths.py holds them equal)."""
from __future__ import annotations

import json

import numpy as np

from vlground.geometry import Frame
from vlground.grammar.items import Extraction
from vlground.results import Detection, Result

COLUMNAR_FROM = 16  # items per answer from which the columnar path is faster (bench_parse.py)


def place(found: Extraction, frame: Frame, raw: str, columnar_from: int = COLUMNAR_FROM) -> Result:
    """The Result of `found`, an extraction of the answer `raw`, on `frame`'s image."""
    if len(found) >= columnar_from:
        result = _columns(found, frame, raw)
        if result is not None:
            return result
    return _items(found, frame, raw)


def _attributes_key(attributes: dict | None) -> str:
    return json.dumps(attributes, sort_keys=True) if attributes else ""


def _items(found: Extraction, frame: Frame, raw: str) -> Result:
    detections: list[Detection] = []
    keys: set[tuple] = set()
    for label, coords, text, attributes in zip(found.labels, found.coords, found.texts, found.attributes):
        xy = frame.place(coords)
        if xy is None:
            continue
        key = (label, xy, text, _attributes_key(attributes))
        if key in keys:
            continue
        keys.add(key)
        geometry = {4: "box", 2: "point", 8: "quad"}[len(coords)]
        detections.append(Detection(label, text=text, attributes=attributes or {}, **{geometry: xy}))
    return Result(detections, found.text, frame.image_size, raw)


def _columns(found: Extraction, frame: Frame, raw: str) -> Result | None:
    """The columnar path, for answers whose items are all boxes of numbers; None otherwise."""
    try:
        coords = np.array(found.coords, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):  # ragged (points, quads), or not numbers
        return None
    if coords.ndim != 2 or coords.shape[1] != 4:
        return None
    boxes, kept = frame.boxes_to_pixels(coords)
    labels, texts, attributes = found.labels, found.texts, found.attributes
    has_text = any(t is not None for t in texts)
    has_attributes = any(a is not None for a in attributes)
    if not kept.all():
        rows = np.flatnonzero(kept).tolist()
        labels, texts, attributes = [labels[i] for i in rows], [texts[i] for i in rows], [attributes[i] for i in rows]
    columns = [labels, *boxes.T.tolist()]
    if has_text:
        columns.append(texts)
    if has_attributes:
        columns.append([_attributes_key(a) for a in attributes])
    if len(dict.fromkeys(zip(*columns))) < len(labels):  # exact repeats: keep the first of each
        first: dict[tuple, int] = {}
        for i, key in enumerate(zip(*columns)):
            first.setdefault(key, i)
        rows = list(first.values())
        boxes = boxes[rows]
        labels, texts, attributes = [labels[i] for i in rows], [texts[i] for i in rows], [attributes[i] for i in rows]
    return Result.from_boxes(
        boxes, labels, texts if has_text else None, attributes if has_attributes else None, found.text, frame.image_size, raw
    )
