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
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def extract(text: str) -> Extraction:
    """Items of the JSON answer in `text`, and the prose around it."""
    fence = _fence(text)
    if fence:
        start, end, body = fence
        outside = text[:start] + " " + text[end:]
    else:
        start = _first_bracket(text)
        if start < 0:
            return Extraction(items=[], text=text.strip())
        body, outside = text[start:], text[:start]
    objects, consumed = _loads(body)
    if not fence and consumed:
        outside += " " + body[consumed:]
    items: list[RawItem] = []
    _collect(objects, items)
    prose = " ".join(outside.split())
    if not prose and items and all(i.text is not None for i in items):
        prose = "\n".join(i.text for i in items)  # an OCR answer: its text is the items' text
    return Extraction(items=items, text=prose)


def _fence(text: str) -> tuple[int, int, str] | None:
    """(start, end, body) of the first ``` fence; an unclosed one (answer cut off) runs to the end."""
    start = text.find("```")
    if start < 0:
        return None
    body_start = start + 3
    if text.startswith(("json", "JSON"), body_start):
        body_start += 4
    close = text.find("```", body_start)
    end = len(text) if close < 0 else close + 3
    return start, end, text[body_start : len(text) if close < 0 else close]


def _first_bracket(text: str) -> int:
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    return min(starts) if starts else -1


def _loads(body: str) -> tuple[list[Any], int]:
    """Parsed top-level objects of `body` and how many characters of it they span."""
    stripped = body.strip()
    try:
        value = json.loads(stripped)
    except ValueError:
        try:
            value = json.loads(_TRAILING_COMMA.sub(r"\1", stripped))
        except ValueError:
            return _recover(body)
    return (value if isinstance(value, list) else [value]), len(body)


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


def _geometry(value: Any) -> list[Any] | None:
    """The coordinates as written, flattened from [[x, y], ...]; checked and converted by `parse`."""
    if not isinstance(value, list) or not value:
        return None
    if isinstance(value[0], (list, tuple)):
        return [v for pair in value for v in (pair if isinstance(pair, (list, tuple)) else [pair])]
    return value


def _collect(obj: Any, out: list[RawItem]) -> None:
    """Append the items in `obj` (an item dict, a list of them, or a wrapper holding them) to `out`."""
    if isinstance(obj, list):
        for o in obj:
            _collect(o, out)
        return
    if not isinstance(obj, dict):
        return
    if len(obj) == 2:  # the common {"bbox_2d": [...], "label": "..."}, without the general walk
        coords, label = obj.get("bbox_2d"), obj.get("label")
        if type(coords) is list and coords and type(coords[0]) is not list and type(label) is str:
            out.append(RawItem(clean_label(label), coords, None, {}))
            return
    coords = None
    for key in GEOMETRY_KEYS:
        if key in obj:
            coords = _geometry(obj[key])
            break
    if coords is None:  # a wrapper such as {"objects": [...]}: look inside
        for v in obj.values():
            _collect(v, out)
        return
    label = obj.get("label")
    text = obj.get("text_content")
    known = 1 + ("label" in obj) + ("text_content" in obj)
    attributes = {k: v for k, v in obj.items() if k != key and k not in LABEL_KEYS} if len(obj) > known else {}
    out.append(
        RawItem(
            clean_label(label if isinstance(label, str) else str(label)) if label is not None else None,
            coords,
            str(text) if text is not None else None,
            attributes,
        )
    )


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
