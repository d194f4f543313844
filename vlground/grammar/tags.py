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


QWEN_VL = TagSet(ref=("<ref>", "</ref>"), box=("<box>", "</box>"), quad=("<quad>", "</quad>"))
QWEN2_VL = TagSet(
    ref=("<|object_ref_start|>", "<|object_ref_end|>"),
    box=("<|box_start|>", "<|box_end|>"),
    quad=("<|quad_start|>", "<|quad_end|>"),
)
# Stripped form: two or four "(x,y)" pairs separated by commas, as left when the tags were removed.
_BARE_GROUP = re.compile(rf"\(\s*{NUMBER}\s*,\s*{NUMBER}\s*\)(?:\s*,\s*\(\s*{NUMBER}\s*,\s*{NUMBER}\s*\)){{1,3}}")
_ANY_TAG = re.compile(r"<\|?/?[a-z_]+\|?>")


def spans(text: str, tags: TagSet) -> list[tuple[str, int, int, str]]:
    """(kind, start, end, inside) of every closed ref, box or quad, left to right, as a lazy
    `open(.*?)close` would find them, in one forward pass: an opening tag with no closing tag after
    it means no later one of that kind can close either, so that kind is not looked for again."""
    kinds = {"ref": tags.ref, "box": tags.box, "quad": tags.quad}
    next_open = {kind: text.find(o) for kind, (o, _) in kinds.items()}
    out = []
    while True:
        live = [(at, kind) for kind, at in next_open.items() if at >= 0]
        if not live:
            return out
        at, kind = min(live)
        opening, closing = kinds[kind]
        close = text.find(closing, at + len(opening))
        if close < 0:
            next_open[kind] = -1
            continue
        end = close + len(closing)
        out.append((kind, at, end, text[at + len(opening) : close]))
        for k, (o, _) in kinds.items():
            if 0 <= next_open[k] < end:
                next_open[k] = text.find(o, end)


def extract(text: str, tags: TagSet) -> Extraction:
    """Items and plain text of an answer in the tag grammar `tags` (or with its tags stripped)."""
    found = spans(text, tags)
    if not any(kind != "ref" for kind, _, _, _ in found):
        return _extract_bare(text)
    out = Extraction()
    label = None
    plain: list[str] = []
    last = 0
    for kind, start, end, inside in found:
        plain.append(text[last:start])
        last = end
        if kind == "ref":
            label = clean_label(inside)
            plain.append(inside)
            continue
        coords = pairs(inside)
        wanted = 4 if kind == "box" else 8
        if len(coords) >= wanted:  # a cut-off or garbled group is not a box
            out.add(label, coords[:wanted])
        elif kind == "box" and len(coords) == 2:  # one pair in box tags: a point (UI-TARS on Qwen2-VL writes clicks so)
            out.add(label, coords)
    plain.append(text[last:])
    out.text = _tidy("".join(plain))
    return out


def _extract_bare(text: str) -> Extraction:
    out = Extraction()
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
        out.add(label, coords)
    plain.append(text[last:])
    out.text = _tidy(_ANY_TAG.sub("", "".join(plain)))
    return out


def format_items(items: list[RawItem], tags: TagSet) -> str:
    """The answer a model of this dialect would write for `items` (coordinates already in its frame),
    boxes of one label written after a single ref as the models do; a point as one pair in box tags."""
    out: list[str] = []
    previous = object()
    for item in items:
        if item.label != previous and item.label is not None:
            out.append(f"{tags.ref[0]}{item.label}{tags.ref[1]}")
        previous = item.label
        pts = ",".join(f"({int(item.coords[i])},{int(item.coords[i + 1])})" for i in range(0, len(item.coords), 2))
        o, c = tags.quad if item.kind == "quad" else tags.box  # a point: one pair in box tags
        out.append(f"{o}{pts}{c}")
    return "".join(out)


def _tidy(s: str) -> str:
    return re.sub(r"[ \t]+", " ", s).strip()

