"""The JSON dialect of Qwen2.5-VL and Qwen3-VL: `[{"bbox_2d": [x1,y1,x2,y2], "label": ...}]`.

Real answers are rarely strict JSON: a ```json fence with prose around it, trailing commas, one dict
instead of a list, single quotes, or a list cut off by the token limit. Strict parsing is tried first
(the common case, and fast); otherwise every complete top-level object is recovered on its own."""
from __future__ import annotations

import ast
import gc
import json
import re
from itertools import chain
from typing import Any

import numpy as np

from vlground.grammar.items import MAX_DEPTH, Extraction, RawItem, clean_label, find, label_of, safe_attributes

GEOMETRY_KEYS = ("bbox_2d", "point_2d", "bbox", "box_2d", "quad_2d", "polygon")
LABEL_KEYS = ("label", "text_content")
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_STRUCTURE = re.compile(r"[{}\"'\\]")
_DECODER = json.JSONDecoder()
_PAUSE_FROM = 1024  # characters of answer (about 15 items) from which pausing the collector pays

try:  # a faster decoder, used where installed (a dependency; the GPU machine may lack it)
    import orjson
except ImportError:  # pragma: no cover - exercised where orjson is absent
    orjson = None


def loads(body: str) -> Any:
    """`json.loads(body)`, by orjson where it is installed and accepts the text; anything orjson
    refuses that Python's decoder reads (NaN, 1e400) goes to Python's decoder. The value is the
    same either way except for integers past 64 bits, which orjson reads as floats: no coordinate
    or attribute that large is kept by the parser, so parse's result is the same. Raises ValueError or RecursionError as json.loads does."""
    if orjson is not None:
        try:
            return orjson.loads(body)
        except (orjson.JSONDecodeError, RecursionError):
            pass
    return json.loads(body)


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
    found = Extraction()
    # Pause Python's cyclic garbage collector while a long answer is decoded and walked. What the
    # decoder builds holds no reference cycles, so the collector has nothing to find there, yet it
    # walks the new objects every few hundred allocations: about half the time of decoding a list
    # of hundreds of items. Restored after (and never enabled if it was off).
    paused = len(body) >= _PAUSE_FROM and gc.isenabled()
    if paused:
        gc.disable()
    try:
        values, consumed = objects(body)
        if not _plain_boxes(values, found):
            _collect(values, found)
    finally:
        if paused:
            gc.enable()
    if not fence and consumed:
        outside += " " + body[consumed:]
    prose = " ".join(outside.split())
    if not prose and found and len(found.texts) == len(found):  # an OCR answer: its text is the items' text
        prose = "\n".join(found.texts[i] for i in range(len(found)))
    found.text = prose
    return found


def _fence(text: str) -> tuple[int, int, str] | None:
    """(start, end, body) of the first ``` fence; an unclosed one (answer cut off) runs to the end."""
    start = find(text, "```")
    if start < 0:
        return None
    body_start = start + 3
    if text.startswith(("json", "JSON"), body_start):
        body_start += 4
    close = find(text, "```", body_start)
    end = len(text) if close < 0 else close + 3
    return start, end, text[body_start : len(text) if close < 0 else close]


def _first_bracket(text: str) -> int:
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    return min(starts) if starts else -1


def objects(body: str) -> tuple[list[Any], int]:
    """Parsed top-level values of `body` (strict JSON, else with trailing commas repaired, else every
    complete object on its own) and how many characters of it they span. Nesting too deep for the
    decoder (RecursionError) is not read at all, as the walk would not go that deep."""
    try:
        value = loads(body)  # white space around the value is JSON's own
    except RecursionError:
        return [], 0
    except ValueError:
        repaired, commas = _TRAILING_COMMA.subn(r"\1", body)
        try:
            if not commas:
                raise ValueError("no trailing comma to repair")
            value = loads(repaired)
        except RecursionError:
            return [], 0
        except ValueError:
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


def _plain_boxes(objects: list[Any], out: Extraction) -> bool:
    """Take the most common answer in bulk: a list of {"bbox_2d": [4 numbers], "label": str} and
    nothing else, read by comprehensions, checks that run in C and one numpy conversion instead of
    the walk's steps per item (numeric strings and booleans are read as float() reads them, as
    `parse` reads them anywhere). False, with `out` untouched, for any other shape: `_collect`
    walks those."""
    if len(objects) < _BULK_FROM:
        return False
    try:
        coords = [obj["bbox_2d"] for obj in objects]
        labels = [obj["label"] for obj in objects]
        if set(map(len, objects)) != {2} or set(map(type, labels)) != {str} or set(map(type, coords)) != {list} or set(map(len, coords)) != {4}:
            return False
        boxes = np.fromiter(chain.from_iterable(coords), dtype=np.float64, count=4 * len(coords)).reshape(-1, 4)
    except (TypeError, KeyError, IndexError, ValueError, OverflowError):  # not all such dicts, or not all numbers
        return False
    cleaned = {label: clean_label(label) for label in set(labels)}  # labels repeat in long lists: clean each once
    out.coords, out.labels, out.boxes = coords, list(map(cleaned.__getitem__, labels)), boxes
    return True


_BULK_FROM = 32  # items from which the bulk read pays: the numpy placement of as many (placement.COLUMNAR_FROM) uses its array


def _collect(root: Any, out: Extraction) -> None:
    """Append the items in `root` (an item dict, a list of them, or wrappers holding them, nested up
    to MAX_DEPTH) to `out`, in the order written. Iterative, so no nesting can exhaust the stack."""
    add_coords, add_label = out.coords.append, out.labels.append
    cleaned: dict[str, str | None] = {}  # labels repeat in long lists: clean each once
    stack = [iter((root,))]
    while stack:
        for obj in stack[-1]:
            kind = type(obj)
            if kind is dict:
                if len(obj) == 2:  # the common {"bbox_2d": [...], "label": "..."}, without the general walk
                    coords, label = obj.get("bbox_2d"), obj.get("label")
                    if type(coords) is list and len(coords) == 4 and type(label) is str and type(coords[0]) is not list:
                        add_coords(coords)
                        add_label(cleaned[label] if label in cleaned else cleaned.setdefault(label, clean_label(label)))
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
