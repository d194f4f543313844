"""Reading prediction files and lining them up with the ground truth.

A prediction file is JSON lines (one object per line, as vlground writes them) or one JSON array of
objects (the EvalAI / DocVQA submission layout). Predictions are matched to ground-truth items by an
id when both sides carry one, otherwise by order. Nothing is dropped quietly: ground truth without a
prediction is `missing` (scored as wrong), a prediction that matches nothing is `unmatched`, a line
that is not a JSON object is `malformed` (it keeps its place, so order alignment stays right)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vlground.eval.errors import PredictionFileError
from vlground.eval.inputs import json_value


@dataclass
class PredictionFile:
    """The records of a prediction file in file order; `malformed` lists the 1-based line numbers
    that were not JSON objects (their records are empty dicts)."""

    records: list[dict]
    malformed: list[int] = field(default_factory=list)


def read_predictions(path: str | Path) -> PredictionFile:
    """Records from a JSON-lines file or a JSON array file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PredictionFileError(f"{path}: cannot read predictions ({error})") from None
    if text.lstrip().startswith("["):
        try:
            items = json_value(text)
        except ValueError as error:
            raise PredictionFileError(f"{path}: starts with '[' but is not a JSON array ({error})") from None
        malformed = [i + 1 for i, item in enumerate(items) if not isinstance(item, dict)]
        return PredictionFile([item if isinstance(item, dict) else {} for item in items], malformed)
    records, malformed = [], []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json_value(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            malformed.append(number)
            record = {}
        records.append(record)
    return PredictionFile(records, malformed)


@dataclass
class Alignment:
    """One record (or None: missing) per ground-truth item, and what could not be placed."""

    records: list[dict | None]
    by: str
    missing: int
    unmatched: int
    duplicates: int

    def counts(self) -> dict[str, int | str]:
        return {"aligned_by": self.by, "missing": self.missing, "unmatched": self.unmatched, "duplicates": self.duplicates}


def record_id(record: dict, keys: Sequence[str]) -> str | None:
    """The record's id under the first of `keys` it has, as a string (so 7 and "7" match)."""
    for key in keys:
        if record.get(key) is not None:
            return str(record[key])
    return None


def answer_text(record: dict | None) -> str | None:
    """The answer string of a VQA prediction record ("answer", else "text"), or None."""
    if record is None:
        return None
    answer = record.get("answer")
    if isinstance(answer, str):
        return answer
    text = record.get("text")
    return text if isinstance(text, str) else None


def align(gt_ids: Sequence[str | None], records: Sequence[dict], id_keys: Sequence[str], *, by_id_only: bool = False) -> Alignment:
    """Records aligned with the ground truth: by id when every ground-truth item has one and some
    prediction has one (or always, with `by_id_only`), otherwise by position. By id, the first
    prediction of a repeated id wins (the rest are `duplicates`) and predictions without a known id
    are `unmatched`."""
    pred_ids = [record_id(r, id_keys) for r in records] if all(i is not None for i in gt_ids) else []
    use_ids = bool(pred_ids) and (by_id_only or any(i is not None for i in pred_ids))
    if not use_ids:
        aligned = [records[i] if i < len(records) else None for i in range(len(gt_ids))]
        return Alignment(aligned, "order", max(0, len(gt_ids) - len(records)), max(0, len(records) - len(gt_ids)), 0)
    by_id: dict[str, dict] = {}
    duplicates = 0
    for pid, record in zip(pred_ids, records):
        if pid is None:
            continue
        if pid in by_id:
            duplicates += 1
        else:
            by_id[pid] = record
    gt_keys = [str(gid) for gid in gt_ids]  # as record_id does, so 7 and "7" match on either side
    aligned = [by_id.get(key) for key in gt_keys]
    known = set(gt_keys)
    unmatched = sum(1 for pid in pred_ids if pid is None) + sum(1 for pid in by_id if pid not in known)
    return Alignment(aligned, "id", sum(r is None for r in aligned), unmatched, duplicates)


def input_size(record: dict) -> tuple[int, int] | None:
    """The model input (width, height) a prediction line may carry, for the Qwen2.5-VL frame; None
    (derive it with smart_resize) when absent or not two numbers."""
    try:
        if record.get("input_size") is not None:
            w, h = record["input_size"]
            return int(w), int(h)
        if record.get("input_width") is not None and record.get("input_height") is not None:
            return int(record["input_width"]), int(record["input_height"])
    except (TypeError, ValueError):
        pass
    return None


def answer_part(record: dict) -> str:
    """What a protocol may read of a prediction's text: the answer, never the reasoning before it."""
    from vlground.grammar.reasoning import split

    if record.get("reasoning_cut_short") is True:
        return ""
    return split(record["text"]).answer
