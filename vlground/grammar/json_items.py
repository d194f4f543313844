"""The JSON dialect of Qwen2.5-VL and Qwen3-VL: `[{"bbox_2d": [x1,y1,x2,y2], "label": ...}]`.

Real answers are rarely strict JSON: a ```json fence with prose around it, trailing commas, one dict
instead of a list, single quotes, or a list cut off by the token limit. Strict parsing is tried first
(the common case, and fast); otherwise every complete top-level object is recovered on its own."""
from __future__ import annotations

import ast
import json
import re
from typing import Any

from vlground.grammar.items import Extraction, RawItem, clean_label

GEOMETRY_KEYS = ("bbox_2d", "point_2d", "bbox", "box_2d", "quad_2d", "polygon")
LABEL_KEYS = ("label", "text_content")
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def extract(text: str) -> Extraction:
    """Items of the JSON answer in `text`, and the prose around it."""
    fence = _FENCE.search(text)
    if fence:
        body, outside = fence.group(1), text[: fence.start()] + " " + text[fence.end() :]
    else:
        start = _first_bracket(text)
        if start < 0:
            return Extraction(items=[], text=text.strip())
        body, outside = text[start:], text[:start]
    objects, consumed = _loads(body)
    if not fence and consumed:
        outside += " " + body[consumed:]
    items = [item for obj in objects for item in _items(obj)]
    prose = " ".join(outside.split())
    if not prose and items and all(i.text is not None for i in items):
        prose = "\n".join(i.text for i in items)  # an OCR answer: its text is the items' text
    return Extraction(items=items, text=prose)


def _first_bracket(text: str) -> int:
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    return min(starts) if starts else -1


def _loads(body: str) -> tuple[list[Any], int]:
    """Parsed top-level objects of `body` and how many characters of it they span."""
    stripped = body.strip()
    for candidate in (stripped, _TRAILING_COMMA.sub(r"\1", stripped)):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        return (value if isinstance(value, list) else [value]), len(body)
    return _recover(body)


def _recover(body: str) -> tuple[list[Any], int]:
    """Every complete {...} at the outermost object level, each parsed on its own."""
    objects: list[Any] = []
    depth = 0
    start = -1
    quote = ""
    escaped = False
    end = 0
    for i, ch in enumerate(body):
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'" and depth > 0:
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                value = _load_one(body[start : i + 1])
                if value is not None:
                    objects.append(value)
                end = i + 1
    return objects, end


def _load_one(chunk: str) -> Any:
    chunk = _TRAILING_COMMA.sub(r"\1", chunk)
    try:
        return json.loads(chunk)
    except ValueError:
        pass
    try:  # single-quoted keys and strings: a Python literal
        return ast.literal_eval(chunk)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def _numbers(value: Any) -> tuple[float, ...] | None:
    """Flat numbers of [x, y, ...] or [[x, y], ...]; None if anything is not a number."""
    flat: list[Any] = []
    for v in value if isinstance(value, (list, tuple)) else ():
        flat.extend(v if isinstance(v, (list, tuple)) else [v])
    try:
        out = tuple(float(v) for v in flat)
    except (TypeError, ValueError):
        return None
    return out if len(out) in (2, 4, 8) and all(abs(v) < 1e9 for v in out) else None


def _items(obj: Any) -> list[RawItem]:
    if isinstance(obj, list):
        return [item for o in obj for item in _items(o)]
    if not isinstance(obj, dict):
        return []
    key = next((k for k in GEOMETRY_KEYS if k in obj), None)
    coords = _numbers(obj[key]) if key else None
    if coords is None:  # a wrapper such as {"objects": [...]}: look inside
        return [item for v in obj.values() if isinstance(v, (list, dict)) for item in _items(v)]
    text = obj.get("text_content")
    label = obj.get("label")
    attributes = {k: v for k, v in obj.items() if k != key and k not in LABEL_KEYS}
    return [
        RawItem(
            label=clean_label(str(label)) if label is not None else None,
            coords=coords,
            text=str(text) if text is not None else None,
            attributes=attributes,
        )
    ]


def format_items(items: list[RawItem]) -> str:
    """A ```json answer holding `items` (coordinates already in the model's frame)."""
    out = []
    for item in items:
        key = "point_2d" if item.kind == "point" else "bbox_2d"
        entry: dict[str, Any] = {key: [int(round(v)) for v in item.coords]}
        if item.label is not None:
            entry["label"] = item.label
        if item.text is not None:
            entry["text_content"] = item.text
        entry.update(item.attributes)
        out.append(entry)
    lines = ",\n".join("\t" + json.dumps(entry, ensure_ascii=False) for entry in out)
    return f"```json\n[\n{lines}\n]\n```"
