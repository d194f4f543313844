"""From an extraction (items in the model's frame) to a Result on the original image: every item
moved through the image's Frame, corners ordered, clipped (and the clipped coordinates counted),
exact repeats (a known generation loop) kept once, items whose coordinates are not 2, 4 or 8 usable
numbers left out.

Long answers of boxes go through numpy as columns and the Detection objects are made only when
asked for; short ones item by item in plain Python, where numpy's per-call cost would dominate.
Both give the same detections (tests/test_parse_speed_paths.py holds them equal)."""
from __future__ import annotations

import json
from itertools import chain

import numpy as np

from vlground.core.geometry import Frame
from vlground.core.results import Detection, Result
from vlground.grammar.items import Extraction

COLUMNAR_FROM = 32  # items per answer from which the columnar path is faster (measured: equal near 25-35)


def place(found: Extraction, frame: Frame, raw: str, reasoning: str | None = None, columnar_from: int = COLUMNAR_FROM) -> Result:
    """The Result of `found`, an extraction of the answer in `raw`, on `frame`'s image; `reasoning`
    is the reasoning that came before the answer."""
    if len(found) >= columnar_from:
        result = _columns(found, frame, raw, reasoning)
        if result is not None:
            return result
    return _items(found, frame, raw, reasoning)


def _outside(frame: Frame, coords) -> int:
    """How many of `coords` (numbers in `frame`) lie outside the image: the values clipping moved."""
    w, h = frame.edges
    return sum(1 for x in coords[0::2] if not 0.0 <= float(x) <= w) + sum(1 for y in coords[1::2] if not 0.0 <= float(y) <= h)


def _attributes_key(attributes: dict | None) -> str:
    """Attributes as a string that compares equal exactly when they are equal."""
    return json.dumps(attributes, sort_keys=True) if attributes else ""


def _items(found: Extraction, frame: Frame, raw: str, reasoning: str | None) -> Result:
    """Item by item in plain Python; answers of boxes only still come back as columns."""
    placed, kinds, labels, texts, attributes = [], [], [], [], []
    keys: set[tuple] = set()
    width, height = map(float, frame.image_size)
    clipped = 0
    for i, (label, coords) in enumerate(zip(found.labels, found.coords)):
        xy = frame.place(coords)
        if xy is None:
            continue
        # a value on an edge may have been clipped there (a box's corners are in order, so its x1
        # or y1 is at 0 or its x2 or y2 at the far edge)
        if (xy[0] == 0.0 or xy[1] == 0.0 or xy[2] == width or xy[3] == height) if len(coords) == 4 else \
                not {0.0, width, height}.isdisjoint(xy if len(coords) == 2 else (v for p in xy for v in p)):
            clipped += _outside(frame, coords)
        text, extra = found.texts.get(i), found.attributes.get(i)
        key = (label, xy, text, _attributes_key(extra) if extra else "")
        if key in keys:
            continue
        keys.add(key)
        placed.append(xy)
        kinds.append(_KIND[len(coords)])
        labels.append(label)
        texts.append(text)
        attributes.append(extra)
    if "point" not in kinds and "quad" not in kinds:
        return Result.from_boxes(
            placed, labels, texts if found.texts else None, attributes if found.attributes else None, found.text, frame.image_size, raw,
            reasoning=reasoning, clipped=clipped,
        )
    detections = [
        Detection(label, text=text, attributes=extra or {}, **{kind: xy})
        for xy, kind, label, text, extra in zip(placed, kinds, labels, texts, attributes)
    ]
    return Result(detections, found.text, frame.image_size, raw, reasoning=reasoning, clipped=clipped)


_KIND = {2: "point", 4: "box", 8: "quad"}


def _columns(found: Extraction, frame: Frame, raw: str, reasoning: str | None) -> Result | None:
    """The columnar path, for answers whose items are all boxes of numbers; None otherwise."""
    n = len(found)
    if found.boxes is not None:
        coords = found.boxes
    elif set(map(len, found.coords)) != {4}:
        return None
    else:
        try:
            coords = np.fromiter(chain.from_iterable(found.coords), dtype=np.float64, count=4 * n)
        except (TypeError, ValueError, OverflowError):  # not numbers
            return None
    boxes, kept, clipped = frame.boxes_to_pixels(coords)
    rows = np.flatnonzero(kept).tolist() if len(boxes) < n else range(n)
    labels = found.labels if len(boxes) == n else [found.labels[i] for i in rows]
    texts = [found.texts.get(i) for i in rows] if found.texts else None
    attributes = [found.attributes.get(i) for i in rows] if found.attributes else None
    first = _first_of_repeats(boxes, labels, texts, attributes)
    if first is not None:
        boxes = boxes[first]
        labels = [labels[i] for i in first]
        texts = [texts[i] for i in first] if texts is not None else None
        attributes = [attributes[i] for i in first] if attributes is not None else None
    return Result.from_boxes(boxes, labels, texts, attributes, found.text, frame.image_size, raw, reasoning=reasoning, clipped=clipped)


def _first_of_repeats(boxes: np.ndarray, labels: list, texts: list | None, attributes: list | None) -> list[int] | None:
    """Rows to keep when some items repeat exactly (the first of each), or None when none do.
    A numeric fingerprint per row finds that none do without hashing every row in Python: equal
    rows always have equal fingerprints, so distinct fingerprints prove there is no repeat; equal
    ones (a repeat, or rarely a collision) are settled by comparing the rows themselves."""
    n = len(labels)
    extra = [labels]
    if texts is not None:
        extra.append(texts)
    if attributes is not None:
        extra.append(list(map(_attributes_key, attributes)))
    # never a matrix product: BLAS may sum the rows of one product in different orders, and equal
    # rows must get bit-equal fingerprints; a sum along each row of four adds them in one fixed order
    fingerprint = (boxes * _WEIGHTS).sum(axis=1)
    for j, column in enumerate(extra):
        fingerprint += (np.fromiter(map(hash, column), dtype=np.int64, count=n) % 1_000_003) * _SALT_WEIGHTS[j]
    fingerprint.sort()
    if not (fingerprint[1:] == fingerprint[:-1]).any():
        return None
    keys = zip(labels, *boxes.T.tolist(), *(c for c in (texts, attributes and list(map(_attributes_key, attributes))) if c is not None))
    first: dict[tuple, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    return list(first.values()) if len(first) < n else None


_WEIGHTS = np.array([1.0, 1.6180339887, 2.7182818284, 3.1415926535])
_SALT_WEIGHTS = np.array([7.389056098, 11.090169943, 13.462921]) * 1e-3
