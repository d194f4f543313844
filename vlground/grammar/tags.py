"""The tag dialects: Qwen-VL's `<ref>..</ref><box>(x1,y1),(x2,y2)</box>` and Qwen2-VL's
special-token spelling of the same grammar, with `<quad>` for text and several boxes after one ref.

Decoded with skip_special_tokens=True the tags vanish and only "label(x1,y1),(x2,y2)" remains; the
coordinates are still found, each labelled with the text written just before it."""
from __future__ import annotations

import re
from dataclasses import dataclass

from vlground.grammar.items import NUMBER, Extraction, RawItem, clean_label, pairs


@dataclass(frozen=True)
class TagSet:
    ref: tuple[str, str]
    box: tuple[str, str]
    quad: tuple[str, str]

    def pattern(self) -> re.Pattern[str]:
        alternatives = [
            rf"{re.escape(o)}(?P<{name}>.*?){re.escape(c)}"
            for name, (o, c) in (("ref", self.ref), ("box", self.box), ("quad", self.quad))
        ]
        return re.compile("|".join(alternatives), re.S)


QWEN_VL = TagSet(ref=("<ref>", "</ref>"), box=("<box>", "</box>"), quad=("<quad>", "</quad>"))
QWEN2_VL = TagSet(
    ref=("<|object_ref_start|>", "<|object_ref_end|>"),
    box=("<|box_start|>", "<|box_end|>"),
    quad=("<|quad_start|>", "<|quad_end|>"),
)
_PATTERNS = {QWEN_VL: QWEN_VL.pattern(), QWEN2_VL: QWEN2_VL.pattern()}
# Stripped form: two or four "(x,y)" pairs separated by commas, as left when the tags were removed.
_BARE_GROUP = re.compile(rf"\(\s*{NUMBER}\s*,\s*{NUMBER}\s*\)(?:\s*,\s*\(\s*{NUMBER}\s*,\s*{NUMBER}\s*\)){{1,3}}")
_ANY_TAG = re.compile(r"<\|?/?[a-z_]+\|?>")


def extract(text: str, tags: TagSet) -> Extraction:
    """Items and plain text of an answer in the tag grammar `tags` (or with its tags stripped)."""
    matches = list(_PATTERNS[tags].finditer(text))
    if not any(m.group("box") is not None or m.group("quad") is not None for m in matches):
        return _extract_bare(text)
    items: list[RawItem] = []
    label = None
    plain: list[str] = []
    last = 0
    for m in matches:
        plain.append(text[last : m.start()])
        last = m.end()
        if m.group("ref") is not None:
            label = clean_label(m.group("ref"))
            plain.append(m.group("ref"))
            continue
        coords = pairs(m.group("box") if m.group("box") is not None else m.group("quad"))
        wanted = 4 if m.group("box") is not None else 8
        if len(coords) >= wanted:  # a cut-off or garbled group is not a box
            items.append(RawItem(label=label, coords=coords[:wanted]))
    plain.append(text[last:])
    return Extraction(items=items, text=_tidy("".join(plain)))


def _extract_bare(text: str) -> Extraction:
    items: list[RawItem] = []
    label = None
    plain: list[str] = []
    last = 0
    for m in _BARE_GROUP.finditer(text):
        before = text[last : m.start()]
        plain.append(before)
        last = m.end()
        coords = pairs(m.group(0))
        if len(coords) not in (4, 8):
            continue
        written = clean_label(_ANY_TAG.sub("", before).strip(" ,.;:\n"))
        label = written or label  # consecutive boxes share the label written before the first
        items.append(RawItem(label=label, coords=coords))
    plain.append(text[last:])
    return Extraction(items=items, text=_tidy(_ANY_TAG.sub("", "".join(plain))))


def format_items(items: list[RawItem], tags: TagSet) -> str:
    """The answer a model of this dialect would write for `items` (coordinates already in its frame),
    boxes of one label written after a single ref as the models do."""
    out: list[str] = []
    previous = object()
    for item in items:
        if item.kind == "point":
            raise ValueError("the tag dialects have no syntax for points")
        if item.label != previous and item.label is not None:
            out.append(f"{tags.ref[0]}{item.label}{tags.ref[1]}")
        previous = item.label
        pts = ",".join(f"({int(item.coords[i])},{int(item.coords[i + 1])})" for i in range(0, len(item.coords), 2))
        o, c = tags.box if item.kind == "box" else tags.quad
        out.append(f"{o}{pts}{c}")
    return "".join(out)


def _tidy(s: str) -> str:
    return re.sub(r"[ \t]+", " ", s).strip()

