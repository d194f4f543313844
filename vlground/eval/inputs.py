"""What an evaluator accepts from a file, checked value by value, and a log of what it refused.

A ground-truth item or a prediction whose values have the wrong type or an impossible value (a box
given as a string, NaN or negative coordinates, a zero or infinite image size, answers that are not a
list of strings, a repeated id) is never read "as well as it can be": it is refused with a reason.
Where the caller collects them (`InputProblems(strict=False)`, what `vlground eval` does without
`--strict`), each refused item is skipped, counted and named in the summary; otherwise the first one
is an error."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from numbers import Real

from vlground.eval.errors import GroundTruthError, PredictionFileError

NAMED_IN_SUMMARY = 20  # how many refused items the summary names; all are counted


class InvalidValue(ValueError):
    """One value that cannot be used; the message says what was expected."""


@dataclass
class InputProblems:
    """The inputs refused so far, each as "where: why". With `strict`, refusing is raising."""

    strict: bool = True
    items: list[str] = field(default_factory=list)

    def refuse_gt(self, where: str, reason: str) -> None:
        self._refuse(GroundTruthError, where, reason)

    def refuse_prediction(self, where: str, reason: str) -> None:
        self._refuse(PredictionFileError, where, reason)

    def _refuse(self, error: type[Exception], where: str, reason: str) -> None:
        if self.strict:
            raise error(f"{where}: {reason}")
        self.items.append(f"{where}: {reason}")

    def counts(self) -> dict:
        return {"invalid": len(self.items), "invalid_inputs": self.items[:NAMED_IN_SUMMARY]}


def _describe(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def number(value, name: str, *, positive: bool = False, non_negative: bool = False) -> float:
    """A finite real number (bool is not one), as a float."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise InvalidValue(f"{name!r} is {_describe(value)}, not a number")
    result = float(value)
    if not math.isfinite(result):
        raise InvalidValue(f"{name!r} is {value}, not a finite number")
    if positive and result <= 0:
        raise InvalidValue(f"{name!r} is {value}; it must be greater than 0")
    if non_negative and result < 0:
        raise InvalidValue(f"{name!r} is {value}; it must not be negative")
    return result


def image_side(value, name: str) -> int:
    """An image width or height: a whole number of pixels, at least 1."""
    side = number(value, name, positive=True)
    if side != int(side):
        raise InvalidValue(f"{name!r} is {value}, not a whole number of pixels")
    return int(side)


def four_numbers(value, name: str) -> tuple[float, float, float, float]:
    """Exactly four finite numbers from a list or tuple (a string of digits is not a box)."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise InvalidValue(f"{name!r} is {_describe(value)}, not a list of 4 numbers")
    x1, y1, x2, y2 = (number(v, name) for v in value)
    return (x1, y1, x2, y2)


def gt_box(value, name: str = "bbox") -> tuple[float, float, float, float]:
    """A ground-truth box (x1, y1, x2, y2): four finite numbers, none negative, corners in order."""
    x1, y1, x2, y2 = four_numbers(value, name)
    if min(x1, y1, x2, y2) < 0:
        raise InvalidValue(f"{name!r} {[x1, y1, x2, y2]} has a negative coordinate")
    if x2 < x1 or y2 < y1:
        raise InvalidValue(f"{name!r} {[x1, y1, x2, y2]} ends before it starts (x2 < x1 or y2 < y1)")
    return (x1, y1, x2, y2)


def xywh_box(value, name: str = "bbox") -> tuple[float, float, float, float]:
    """A COCO (x, y, width, height) box as corners (x1, y1, x + width, y + height), checked as `gt_box`."""
    x, y, w, h = four_numbers(value, name)
    if min(w, h) < 0:
        raise InvalidValue(f"{name!r} {[x, y, w, h]} has a negative width or height")
    return gt_box([x, y, x + w, y + h], name)


def text(value, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"{name!r} is {_describe(value)}, not text")
    return value


def text_list(value, name: str) -> list[str]:
    """A list of strings; an item may be {"answer": str} (the VQA annotation layout)."""
    if not isinstance(value, list):
        raise InvalidValue(f"{name!r} is {_describe(value)}, not a list of strings")
    items = [v["answer"] if isinstance(v, dict) and "answer" in v else v for v in value]
    for item in items:
        text(item, f"an item of {name}")
    return items


def identifier(value, name: str) -> str:
    """An id as text: strings and whole numbers (so 7 and "7" are one id)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidValue(f"{name!r} is {_describe(value)}, not a string or whole number")
    return str(value)


def json_value(line: str):
    """`json.loads`, with nesting too deep for the decoder as a ValueError like any other bad JSON."""
    try:
        return json.loads(line)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def repeated_id(seen: dict[str, str], key: str, where: str) -> str | None:
    """The reason to refuse an item whose id `key` was already seen (where it was first), else None."""
    if key in seen:
        return f"id {key!r} repeats the one at {seen[key]}"
    seen[key] = where
    return None
