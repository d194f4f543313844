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

from vlground.geometry import Frame
from vlground.grammar.items import Extraction
from vlground.results import Detection, Result

COLUMNAR_FROM = 64  # items per answer from which the columnar path is faster (measured: equal near 60-80)


def place(found: Extraction, frame: Frame, raw: str, reasoning: str | None = None, columnar_from: int = COLUMNAR_FROM) -> Result:
    """The Result of `found`, an extraction of the answer in `raw`, on `frame`'s image; `reasoning`
    is the reasoning that came before the answer."""
    if len(found) >= columnar_from:
        result = _columns(found, frame, raw, reasoning)
        if result is not None:
            return result
    return _items(found, frame, raw, reasoning)


def _bounds(frame: Frame) -> tuple[float, float]:
    """The image's right and bottom edges in `frame`'s own units (compared there, exactly: in pixels
    999 * (500 / 999) is past 500)."""
    return (frame.scale, frame.scale) if frame.kind == "norm1000" else frame.input_size


def _outside(frame: Frame, coords) -> int:
    """How many of `coords` (numbers in `frame`) lie outside the image: the values clipping moved."""
    w, h = _bounds(frame)
    return sum(1 for x in coords[0::2] if not 0.0 <= float(x) <= w) + sum(1 for y in coords[1::2] if not 0.0 <= float(y) <= h)


def _attributes_key(attributes: dict | None) -> str:
    """Attributes as a string that compares equal exactly when they are equal."""
    return json.dumps(attributes, sort_keys=True) if attributes else ""


def _items(found: Extraction, frame: Frame, raw: str, reasoning: str | None) -> Result:
    """Item by item in plain Python; answers of boxes only still come back as columns."""
    placed, kinds, labels, texts, attributes = [], [], [], [], []
    keys: set[tuple] = set()
    edges = {0.0, *map(float, frame.image_size)}
    clipped = 0
    for i, (label, coords) in enumerate(zip(found.labels, found.coords)):
        xy = frame.place(coords)
        if xy is None:
            continue
        if not edges.isdisjoint(xy if len(coords) != 8 else (v for p in xy for v in p)):  # on an edge: maybe clipped there
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
    if set(map(len, found.coords)) != {4}:
        return None
    try:
        coords = np.fromiter(chain.from_iterable(found.coords), dtype=np.float64, count=4 * n)
    except (TypeError, ValueError, OverflowError):  # not numbers
        return None
    boxes, kept = frame.boxes_to_pixels(coords)
    w, h = frame.image_size
    if (boxes[:, :2] == 0.0).any() or (boxes[:, 2] == w).any() or (boxes[:, 3] == h).any():  # on an edge: maybe clipped there
        written, (right, bottom) = coords.reshape(-1, 4)[kept], _bounds(frame)
        clipped = int(np.count_nonzero(written < 0.0) + np.count_nonzero(written[:, 0::2] > right) + np.count_nonzero(written[:, 1::2] > bottom))
    else:
        clipped = 0
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
    extra = [list(map(hash, labels))]
    if texts is not None:
        extra.append(list(map(hash, texts)))
    if attributes is not None:
        extra.append(list(map(hash, map(_attributes_key, attributes))))
    salt = (np.array(extra, dtype=np.int64) % 1_000_003).astype(np.float64)
    # element-wise, never a matrix product: BLAS may sum the rows of one product in different
    # orders, and equal rows must get bit-equal fingerprints
    fingerprint = boxes[:, 0] * _WEIGHTS[0]
    for j in range(1, 4):
        fingerprint += boxes[:, j] * _WEIGHTS[j]
    for j, column in enumerate(salt):
        fingerprint += column * _SALT_WEIGHTS[j]
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
