"""What a dialect extractor hands back: things still in the model's own frame, before geometry."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

NUMBER = r"-?\d+(?:\.\d+)?"
# "(x,y)" with optional spaces: the coordinate pair of the tag dialects.
PAIR = re.compile(rf"\(\s*({NUMBER})\s*,\s*({NUMBER})\s*\)")

KINDS = {2: "point", 4: "box", 8: "quad"}


@dataclass(slots=True)
class RawItem:
    """One grounded thing as written: `coords` is flat x, y, ... in the model's frame
    (2 numbers: point, 4: box, 8: quad). Extractors may pass values as the model wrote them
    (numbers or numeric strings); `parse` drops items whose coordinates are not numbers."""

    label: str | None
    coords: Sequence[Any]
    text: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return KINDS[len(self.coords)]


@dataclass
class Extraction:
    """An extractor's answer: the items found and the answer's text with the markup taken out."""

    items: list[RawItem]
    text: str


def pairs(s: str) -> tuple[float, ...]:
    """Flat coordinates of every "(x,y)" pair in `s`."""
    return tuple(float(v) for m in PAIR.finditer(s) for v in m.groups())


def clean_label(label: str | None) -> str | None:
    """Labels lose surrounding white space; an empty one is no label."""
    if label is None:
        return None
    label = " ".join(label.split())
    return label or None
