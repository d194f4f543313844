"""The JSON dialect of Qwen2.5-VL and Qwen3-VL: `[{"bbox_2d": [x1,y1,x2,y2], "label": ...}]`.

Real answers are rarely strict JSON: a ```json fence with prose around it, trailing commas, one dict
instead of a list, single quotes, or a list cut off by the token limit. Strict parsing is tried first
(the common case, and fast); otherwise every complete top-level object is recovered on its own."""
from __future__ import annotations

import ast
import json
import re
from typing import Any

from vlground.grammar.items import MAX_DEPTH, Extraction, RawItem, clean_label, label_of, safe_attributes

GEOMETRY_KEYS = ("bbox_2d", "point_2d", "bbox", "box_2d", "quad_2d", "polygon")
LABEL_KEYS = ("label", "text_content")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_STRUCTURE = re.compile(r"[{}\"'\\]")
_DECODER = json.JSONDecoder()


def extract(text: str) -> Extraction:
    """Items of the JSON answer in `text`, and the prose around it."""
    fence = _fence(text)
    if fence:
        start, end, body = fence
        outside = text[:start] + " " + text[end:]
    else:
        start = _first_bracket(text)
        if start < 0:
            return Extraction(text=text.strip())
        body, outside = text[start:], text[:start]
    objects, consumed = _loads(body)
    if not fence and consumed:
        outside += " " + body[consumed:]
    found = Extraction()
    _collect(objects, found)
    prose = " ".join(outside.split())
    if not prose and found.texts and None not in found.texts:
        prose = "\n".join(found.texts)  # an OCR answer: its text is the items' text
    found.text = prose
    return found


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
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the decoder goes
        repaired, commas = _TRAILING_COMMA.subn(r"\1", stripped)
        try:
            if not commas:
                raise ValueError("no trailing comma to repair")
            value = json.loads(repaired)
        except (ValueError, RecursionError):
            return _recover(body)
    return (value if isinstance(value, list) else [value]), len(body)


def _recover(body: str) -> tuple[list[Any], int]:
    """Every complete {...} at the outermost object level, each parsed on its own: by the JSON
    decoder where it can (in place, no copy), else by `_load_one` up to its matching brace."""
    objects: list[Any] = []
    end = 0
    start = body.find("{")
    while start >= 0:
        try:
            value, stop = _DECODER.raw_decode(body, start)
        except (ValueError, RecursionError):
            close = _matching_brace(body, start)
            if close < 0:  # never closed: cut off here
                break
            value, stop = _load_one(body[start : close + 1]), close + 1
        if value is not None:
            objects.append(value)
        end = stop
        start = body.find("{", stop)
    return objects, end


def _matching_brace(body: str, start: int) -> int:
    """Index of the brace closing the one at `start` (braces in quoted strings do not count), or
    -1. One pass that jumps from one brace, quote or backslash to the next."""
    depth = 0
    quote = ""
    escaped_at = -1  # index of a character a backslash escapes
    for m in _STRUCTURE.finditer(body, start):
        i, ch = m.start(), m.group()
        if quote:
            if i == escaped_at:
                continue
            if ch == "\\":
                escaped_at = i + 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _load_one(chunk: str) -> Any:
    chunk = _TRAILING_COMMA.sub(r"\1", chunk)
    try:
        return json.loads(chunk)
    except (ValueError, RecursionError):
        pass
    try:  # single-quoted keys and strings: a Python literal (any type; checked where used)
        return ast.literal_eval(chunk)
    except Exception:  # noqa: BLE001 - literal_eval raises many kinds (TypeError for "{{}}", MemoryError, ...)
        return None


def _geometry(value: Any) -> list[Any] | None:
    """The coordinates as written, flattened from [[x, y], ...]; checked and converted by `parse`."""
    if type(value) not in (list, tuple) or not value:
        return None
    if type(value[0]) in (list, tuple):
        return [v for pair in value for v in (pair if type(pair) in (list, tuple) else [pair])]
    return value


def _collect(root: Any, out: Extraction) -> None:
    """Append the items in `root` (an item dict, a list of them, or wrappers holding them, nested up
    to MAX_DEPTH) to `out`, in the order written. Iterative, so no nesting can exhaust the stack."""
    coords_col, labels_col, texts_col, attributes_col = out.coords, out.labels, out.texts, out.attributes
    stack = [iter((root,))]
    while stack:
        for obj in stack[-1]:
            kind = type(obj)
            if kind is dict:
                if len(obj) == 2:  # the common {"bbox_2d": [...], "label": "..."}, without the general walk
                    coords, label = obj.get("bbox_2d"), obj.get("label")
                    if type(coords) is list and len(coords) == 4 and type(label) is str and type(coords[0]) is not list:
                        coords_col.append(coords)
                        labels_col.append(clean_label(label))
                        texts_col.append(None)
                        attributes_col.append(None)
                        continue
                if _add_item(obj, out):
                    continue
                children: Any = obj.values()
            elif kind is list:
                children = obj
            else:
                continue
            if len(stack) <= MAX_DEPTH:
                stack.append(iter(children))
                break
        else:
            stack.pop()


def _add_item(obj: dict, out: Extraction) -> bool:
    """Add `obj` to `out` if it is an item (has usable geometry under one of GEOMETRY_KEYS)."""
    for key in GEOMETRY_KEYS:
        if key in obj:
            coords = _geometry(obj[key])
            break
    else:
        return False
    if coords is None:
        return False
    text = obj.get("text_content")
    known = 1 + ("label" in obj) + ("text_content" in obj)
    out.add(
        label_of(obj.get("label")),
        coords,
        text if type(text) is str else label_of(text),
        safe_attributes(obj, skip=(key, *LABEL_KEYS)) if len(obj) > known else None,
    )
    return True


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
