"""What a dialect extractor hands back: things still in the model's own frame, before geometry,
and the checks every value from a model answer passes before it is kept."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

NUMBER = r"-?\d+(?:\.\d+)?"
# "(x,y)" with optional spaces: the coordinate pair of the tag dialects. Each quantifier runs over a
# class its neighbours cannot match, so a failed attempt costs at most one pass over what it read.
PAIR = re.compile(rf"\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)")

KINDS = {2: "point", 4: "box", 8: "quad"}
MAX_DEPTH = 32  # containers nested deeper than this in an answer are not read (no answer needs it)


@dataclass(slots=True)
class RawItem:
    """One grounded thing in the model's frame, as the formatters write it: `coords` is flat
    x, y, ... (2 numbers: point, 4: box, 8: quad)."""

    label: str | None
    coords: Sequence[Any]
    text: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return KINDS[len(self.coords)]


@dataclass(slots=True)
class Extraction:
    """An extractor's answer, held as columns because answers of hundreds of items are common:
    per item its `coords` as written (numbers or numeric strings, checked and converted by
    `parse`) and `labels`; `texts` and `attributes` map an item's index to its text or attributes
    (most answers have none); and the answer's text with the markup taken out. An extractor that
    reads a list of plain boxes in bulk hands their coordinates over as one array too (`boxes`)."""

    text: str = ""
    coords: list[Sequence[Any]] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    texts: dict[int, str] = field(default_factory=dict)
    attributes: dict[int, dict[str, Any]] = field(default_factory=dict)
    boxes: Any = None  # every item a box of 4 numbers: their coords as one (N, 4) float64 array, where an extractor read them so

    def add(self, label: str | None, coords: Sequence[Any], text: str | None = None, attributes: dict | None = None) -> int:
        """Append one item; its index (extractors that learn an item's text later set texts[index])."""
        index = len(self.coords)
        self.coords.append(coords)
        self.labels.append(label)
        if text is not None:
            self.texts[index] = text
        if attributes:
            self.attributes[index] = attributes
        return index

    def __len__(self) -> int:
        return len(self.coords)


def find(text: str, needle: str, start: int = 0) -> int:
    """`text.find(needle, start)`, by way of the needle's first character: CPython reads every
    character at a few ns each when it looks for a string of several, but finds one character at
    memory speed (memchr), and the first characters of markup (a backtick, "<") are rare in
    answers. Linear still where they are not: each occurrence is looked at once."""
    first = needle[0]
    at = text.find(first, start)
    while at >= 0 and not text.startswith(needle, at):
        at = text.find(first, at + 1)
    return at


def pairs(s: str) -> tuple[float, ...]:
    """Flat coordinates of every "(x,y)" pair in `s`."""
    return tuple(float(v) for m in PAIR.finditer(s) for v in m.groups())


def clean_label(label: str | None) -> str | None:
    """Labels lose surrounding white space; an empty one is no label."""
    if label is None:
        return None
    label = " ".join(label.split())
    return label or None


def label_of(value: Any) -> str | None:
    """A label or text as the model wrote it: a string, or a finite number written out; anything
    else (containers, bytes, booleans, null) is no label."""
    if type(value) is str:
        return clean_label(value)
    if type(value) in (int, float) and math.isfinite(value) and abs(value) < 1e300:
        return str(value)
    return None


def json_safe(value: Any, depth: int = 0) -> tuple[bool, Any]:
    """(ok, value) where value is `value` made of JSON's own types: tuples become lists, keys must
    be strings (integers are written as strings, as JSON does), and anything else (sets, bytes,
    numbers that are not finite or past 2**63, deeper than MAX_DEPTH) is not ok. Keeps every result JSON-serializable."""
    kind = type(value)
    if value is None or kind in (str, bool):
        return True, value
    if kind is int or kind is float:  # beyond 2**63 a number is garbage (and decoders disagree on its type)
        return abs(value) < 2**63, value
    if depth >= MAX_DEPTH:
        return False, None
    if kind in (list, tuple):
        out = []
        for v in value:
            ok, v = json_safe(v, depth + 1)
            if ok:
                out.append(v)
        return True, out
    if kind is dict:
        return True, safe_attributes(value, depth + 1)
    return False, None


def safe_attributes(obj: dict, depth: int = 0, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The entries of `obj` under string keys (integer keys written as strings) whose values are
    JSON-safe, less the keys in `skip`; the rest is left out."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if type(k) is int:
            k = str(k)
        elif type(k) is not str or k in skip:
            continue
        ok, v = json_safe(v, depth)
        if ok:
            out[k] = v
    return out
