"""RefCOCO scoring under named protocols: each one reproduces how some published number was computed.

A protocol says how a prediction's text becomes a box, in which frame and float precision the IoU is
taken, and what an unreadable answer counts as. Registered protocols:

- "family" (default): the model family's own grammar and coordinate frame (`vlground.grammar.parse`:
  /1000 for the 0-1000 frames, the smart-resized input size for Qwen2.5-VL); the first detection is
  the answer; float64. An answer with no detection is unparsable and a miss.
- "qwen-vl": QwenLM/Qwen-VL eval_mm/evaluate_grounding.py to the sample: the first match of
  `\\((.*?)\\),\\((.*?)\\)` anywhere in the text, each group split on "," into exactly two floats,
  divided by 999 and scaled by the image width/height, all in float32; anything else is the box
  (0, 0, 0, 0), which still counts in the denominator.
- "lmms-eval": lmms-eval's refcoco_bbox_rec task: the first `[a, b, c, d]` of plain decimals, read as
  fractions of the image width/height and compared with the ground truth divided by the image size;
  anything else is [0, 0, 0, 0].

A prediction record is `{"text": raw model output}` or `{"box": [x1, y1, x2, y2]}` in pixels (null
for "no box"). "family" uses "box" when the record has that key (a runtime already placed it) and reads
"text" otherwise; the other protocols read "text" with their own rules when there is one and use
"box" otherwise. Every protocol reports accuracy at IoU >= 0.5 (headline) and 0.1 ... 0.9, mean IoU,
centre hits, unparsable answers, and the same per split.

Reasoning never scores, under any protocol: each reads only the answer part of the text
(`vlground.grammar.reasoning`: after the last `</think>`, or an `<answer>` block), and a record whose
`reasoning_cut_short` is true (or whose reasoning never closed) has no answer, so it is unparsable.
The reference scripts predate thinking models; on text without reasoning tags the answer part is the
whole text, so their results are unchanged."""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

from vlground.extras import missing
from vlground.core.families import Family, get_family
from vlground.eval.benchmark import Benchmark, Option, require_items
from vlground.eval.boxes import THRESHOLDS, accuracy_at, centre_hit, iou
from vlground.eval.errors import EvalInputError, GroundTruthError
from vlground.eval.inputs import InputProblems, InvalidValue, four_numbers
from vlground.eval.predictions import align, answer_part, input_size
from vlground.eval.refcoco_data import RefSample, load_refcoco
from vlground.eval.scores import Scores

Coords = tuple[float, float, float, float]
PREDICTION_ID_KEYS = ("id", "question_id", "sent_id")


class ProtocolError(EvalInputError):
    """A protocol cannot score these inputs (an unknown name, or a family it needs is missing)."""


# (texts, samples, family, input sizes) -> ((N, 4) corners, (N,) readable); None texts are skipped
TextReader = Callable[..., tuple[np.ndarray, np.ndarray]]

# The reference patterns (Python re), and RE2 equivalents for pyarrow that agree with them on ASCII
# text: RE2's `.` is Python's `.` (anything but a newline); Python's `\s` on ASCII also covers \v
# and \x1c-\x1f, which RE2's `\s` does not, hence the explicit class.
_QWEN_VL_PAIR = re.compile(r"\((.*?)\),\((.*?)\)")
_QWEN_VL_PAIR_RE2 = r"\((?P<a>.*?)\),\((?P<b>.*?)\)"
_DECIMAL = r"(-?\d+(?:\.\d+)?)"
_LMMS_BOX = re.compile(r"\[\s*" + r",\s*".join([_DECIMAL] * 4) + r"\s*\]")
_ASCII_SPACE = r"[\t\n\x0b\x0c\r \x1c-\x1f]*"
_DECIMAL_RE2 = r"-?[0-9]+(?:\.[0-9]+)?"
_LMMS_BOX_RE2 = (
    r"\[" + _ASCII_SPACE + ("," + _ASCII_SPACE).join(f"(?P<{k}>{_DECIMAL_RE2})" for k in ("x1", "y1", "x2", "y2"))
    + _ASCII_SPACE + r"\]"
)
# A group that Python's split(",") + float() reads the same way pyarrow's cast does.
_PLAIN_PAIR_RE2 = f"^(?P<x>{_DECIMAL_RE2}),(?P<y>{_DECIMAL_RE2})$"


def _read_qwen_vl(text: str) -> Coords | None:
    """Corner values in the 0-999 frame, or None where evaluate_grounding.py falls back to zeros."""
    match = _QWEN_VL_PAIR.search(text)
    if match is None or "," not in match[1] or "," not in match[2]:
        return None
    try:
        x1, y1 = (float(v) for v in match[1].split(","))
        x2, y2 = (float(v) for v in match[2].split(","))
    except ValueError:  # a part that is not a number, or not exactly two parts
        return None
    return (x1, y1, x2, y2)


def _read_lmms(text: str) -> Coords | None:
    """Fractions of the image size from the first bracketed quadruple, or None (lmms-eval: zeros)."""
    match = _LMMS_BOX.search(text)
    return tuple(float(v) for v in match.groups()) if match else None


def _floats(struct, names: Sequence[str]) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = [pc.cast(pc.struct_field(struct, name), pa.float64()).to_numpy(zero_copy_only=False) for name in names]
    return np.stack(columns, axis=1)


def _qwen_vl_columns(texts):
    """(coords, parsed, settled) for a pyarrow string array: `settled` rows need no Python pass
    (ASCII text that either has no match or has two plain "number,number" groups)."""
    import pyarrow.compute as pc

    pair = pc.extract_regex(texts, _QWEN_VL_PAIR_RE2)
    first = pc.extract_regex(pc.struct_field(pair, "a"), _PLAIN_PAIR_RE2)
    second = pc.extract_regex(pc.struct_field(pair, "b"), _PLAIN_PAIR_RE2)
    parsed = (first.is_valid().to_numpy(zero_copy_only=False)) & second.is_valid().to_numpy(zero_copy_only=False)
    coords = np.concatenate([_floats(first, ("x", "y")), _floats(second, ("x", "y"))], axis=1)
    ascii_no_match = pc.and_(pc.string_is_ascii(texts), pc.is_null(pair)).to_numpy(zero_copy_only=False)
    return coords, parsed, parsed | np.asarray(ascii_no_match, dtype=bool)


def _lmms_columns(texts):
    import pyarrow.compute as pc

    box = pc.extract_regex(texts, _LMMS_BOX_RE2)
    ascii_text = np.asarray(pc.string_is_ascii(texts).to_numpy(zero_copy_only=False), dtype=bool)
    parsed = box.is_valid().to_numpy(zero_copy_only=False) & ascii_text
    return _floats(box, ("x1", "y1", "x2", "y2")), parsed, ascii_text


def _regex_reader(read_one: Callable[[str], Coords | None], columns) -> TextReader:
    """A reader that settles most rows in pyarrow (RE2) and reads the rest with the reference's own
    Python logic (`read_one`), so the result equals `read_one` on every row."""

    def read(texts, samples, family, input_sizes):
        n = len(texts)
        if missing("arrow"):  # the light install: the reference's logic on every row, the same result
            found = [None if text is None else read_one(text) for text in texts]
            parsed = np.array([f is not None for f in found], dtype=bool)
            return np.array([f or (np.nan,) * 4 for f in found], dtype=np.float64).reshape(n, 4), parsed
        import pyarrow as pa

        coords, parsed, settled = columns(pa.array(list(texts), type=pa.string()))
        coords = np.where(parsed[:, None], coords, np.nan)
        for i in np.flatnonzero(~settled):
            if texts[i] is None:
                continue
            found = read_one(texts[i])
            if found is not None:
                coords[i], parsed[i] = found, True
        return coords.reshape(n, 4), parsed

    return read


def _read_family(texts, samples, family, input_sizes):
    """Pixels of the first detection the family's grammar finds in each text."""
    from vlground.grammar import parse

    coords = np.full((len(texts), 4), np.nan)
    parsed = np.zeros(len(texts), dtype=bool)
    for i, (text, sample, input_size) in enumerate(zip(texts, samples, input_sizes)):
        if text is None:
            continue
        result = parse(text, family, (sample.width, sample.height), input_size)
        if result.detections:
            coords[i], parsed[i] = result.detections[0].xyxy, True
    return coords, parsed


def _sizes4(sizes: np.ndarray, dtype) -> np.ndarray:
    """(N, 2) width, height -> (N, 4) width, height, width, height."""
    return np.tile(sizes, 2).astype(dtype)


def _qwen_vl_frame(coords: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """torch.tensor(box, float32) / 999, then x *= width and y *= height, all float32, as the
    reference does. Not `vlground.core.geometry.Frame` ("norm1000", scale 999): its float64
    x * (width / 999) differs in the last bit for most boxes, and a borderline IoU of exactly 0.5
    in float32 is a hit the reference counts (test_qwen_vl_computes_in_float32_like_the_torch_script)."""
    return coords.astype(np.float32) / np.float32(999) * _sizes4(sizes, np.float32)


@dataclass(frozen=True)
class Protocol:
    """A named way to score RefCOCO. `read_texts` returns (N, 4) corners in the protocol's text
    frame and which rows were readable; `text_to_frame` turns them into the scoring frame, which is
    pixels, or fractions of the image size when `normalized`; IoU is taken in `dtype`.
    `unparsable_box` is what an unreadable answer becomes (NaN: no box at all)."""

    name: str
    summary: str
    read_texts: TextReader
    text_to_frame: Callable[[np.ndarray, np.ndarray], np.ndarray]
    normalized: bool
    dtype: type
    prefers_text: bool
    needs_family: bool
    unparsable_box: float

    def pixels_to_frame(self, boxes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64)
        return (boxes / _sizes4(sizes, np.float64) if self.normalized else boxes).astype(self.dtype)

    def frame_to_pixels(self, boxes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, dtype=np.float64)
        return boxes * _sizes4(sizes, np.float64) if self.normalized else boxes


PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in [
        Protocol(
            name="family",
            summary="the family's own grammar and frame (vlground.grammar.parse), first detection, float64",
            read_texts=_read_family,
            text_to_frame=lambda coords, sizes: coords,
            normalized=False,
            dtype=np.float64,
            prefers_text=False,
            needs_family=True,
            unparsable_box=np.nan,
        ),
        Protocol(
            name="qwen-vl",
            summary="Qwen-VL evaluate_grounding.py: first (x,y),(x,y), /999, float32, unparsable = empty box",
            read_texts=_regex_reader(_read_qwen_vl, _qwen_vl_columns),
            text_to_frame=_qwen_vl_frame,
            normalized=False,
            dtype=np.float32,
            prefers_text=True,
            needs_family=False,
            unparsable_box=0.0,
        ),
        Protocol(
            name="lmms-eval",
            summary="lmms-eval refcoco_bbox_rec: first [a, b, c, d] as fractions of the image, unparsable = zeros",
            read_texts=_regex_reader(_read_lmms, _lmms_columns),
            text_to_frame=lambda coords, sizes: coords,
            normalized=True,
            dtype=np.float64,
            prefers_text=True,
            needs_family=False,
            unparsable_box=0.0,
        ),
    ]
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown RefCOCO protocol {name!r}; protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def _pixel_box(value, where: str, problems: InputProblems) -> Coords | None:
    """A record's "box" as four floats; None for null, and for anything but four numbers (a
    string of digits included), which is also refused."""
    if value is None:
        return None
    try:
        return four_numbers(value, "box")
    except InvalidValue as error:
        problems.refuse_prediction(where, str(error))
        return None


def _row_box(box: np.ndarray, readable: bool) -> list[float] | None:
    return [float(v) for v in box] if readable else None


def _image_sizes(samples: Sequence[RefSample]) -> np.ndarray:
    """(N, 2) widths and heights; GroundTruthError for a size that is not positive (the loaders
    refuse such samples; built by hand, they would divide by zero)."""
    n = len(samples)
    sizes = np.fromiter(chain.from_iterable((s.width, s.height) for s in samples), dtype=np.int64, count=2 * n).reshape(n, 2)
    empty = np.flatnonzero((sizes <= 0).any(axis=1))
    if empty.size:
        raise GroundTruthError(f"sample {int(empty[0])} has the image size {tuple(int(v) for v in sizes[empty[0]])}; sizes must be positive")
    return sizes


@dataclass(kw_only=True)
class RefCOCOScores(Scores):
    """Per-sample results in ground-truth order and the summary numbers built from them.
    `pred_boxes` are pixels (NaN rows: no box); `parsed` is False for unreadable or missing answers."""

    protocol: str
    ious: np.ndarray
    centre: np.ndarray
    parsed: np.ndarray
    present: np.ndarray
    pred_boxes: np.ndarray
    counted: np.ndarray | None = None

    @property
    def samples(self) -> Sequence[RefSample]:
        return self.ground_truth

    @property
    def splits(self) -> list[str]:
        return [s.split for s in self.samples]

    @property
    def hits(self) -> np.ndarray:
        return self.ious >= 0.5

    def _numbers(self, mask: np.ndarray) -> dict:
        if self.counted is not None:
            mask = mask & self.counted
        ious = self.ious[mask]
        at = accuracy_at(ious, THRESHOLDS)
        return {
            "n": int(mask.sum()),
            "accuracy": at[0.5],
            "accuracy_at": {f"{t:.1f}": v for t, v in at.items()},
            "mean_iou": float(ious.mean()) if ious.size else 0.0,
            "centre_accuracy": float(self.centre[mask].mean()) if ious.size else 0.0,
            "unparsable": int((self.present & ~self.parsed)[mask].sum()),
        }

    def headline(self) -> dict:
        """Accuracy is a fraction in [0, 1], as `vlground eval refcoco --json` prints it."""
        return {"protocol": self.protocol, **self._numbers(np.ones(len(self.ious), dtype=bool))}

    def details(self) -> dict:
        splits = self.splits
        split_names = np.array(splits, dtype=object)
        return {
            "dropped": 0 if self.counted is None else int((~self.counted).sum()),
            "splits": {s: self._numbers(split_names == s) for s in dict.fromkeys(splits)},
        }

    def rows(self, records: Sequence[dict] | None = None) -> list[dict]:
        """One row per sample: IoU, hit, centre hit, parse status, both boxes in pixels (pred_box
        None where no box was read); with `records` (one per sample), their "text" and "error" too."""
        readable = self.present & self.parsed
        rows = [
            {"index": i, "id": s.id, "split": s.split, "sent": s.sent, "image": s.image, "gt_box": list(s.box),
             "pred_box": _row_box(self.pred_boxes[i], readable[i]), "iou": float(self.ious[i]), "hit": bool(self.hits[i]),
             "centre_hit": bool(self.centre[i]), "parsed": bool(self.parsed[i])}
            for i, s in enumerate(self.samples)
        ]
        if records is not None:
            for row, record in zip(rows, records):
                row.update(text=record.get("text"), error=record.get("error"))
        return rows

    @staticmethod
    def describe(summary: dict) -> list[str]:
        lines = [
            f"protocol {summary['protocol']}: accuracy@0.5 {summary['accuracy'] * 100:.2f} on {summary['n']} samples, "
            f"mean IoU {summary['mean_iou']:.4f}, centre {summary['centre_accuracy'] * 100:.2f}, unparsable {summary['unparsable']}",
            "  accuracy at IoU " + "  ".join(f"{t}: {v * 100:.2f}" for t, v in summary["accuracy_at"].items()),
        ]
        for name, split in summary["splits"].items():
            lines.append(f"  {name}: {split['accuracy'] * 100:.2f} on {split['n']} (unparsable {split['unparsable']})")
        return lines


def score_refcoco(
    samples: Sequence[RefSample],
    records: Sequence[dict],
    protocol: str | Protocol = "family",
    family: str | Family | None = None,
    *,
    malformed: int = 0,
    counted: np.ndarray | None = None,
    problems: InputProblems | None = None,
) -> RefCOCOScores:
    """Score prediction records against `samples` under `protocol`. The regex protocols read all
    texts at once with pyarrow (RE2), falling back to the reference's Python logic for the rows RE2
    cannot settle, so the result is the reference's on every row; boxes, IoU and every metric are
    computed on whole arrays. `family` is needed by the "family" protocol when a record has text.
    `counted` (a boolean mask over the samples) limits the summary to the samples a reference run
    scored (see `reference_run_kept`); per-sample arrays still cover every sample."""
    proto = get_protocol(protocol) if isinstance(protocol, str) else protocol
    fam = get_family(family) if family is not None else None
    problems = problems if problems is not None else InputProblems()
    alignment = align([s.id for s in samples], records, PREDICTION_ID_KEYS)
    n = len(samples)
    sizes = _image_sizes(samples)
    gt_pixels = np.fromiter(chain.from_iterable(s.box for s in samples), dtype=np.float64, count=4 * n).reshape(n, 4)
    present = np.array([r is not None for r in alignment.records], dtype=bool)
    for i, r in enumerate(alignment.records):
        if r is not None and r.get("text") is not None and not isinstance(r["text"], str):
            problems.refuse_prediction(f"prediction for sample {i}", f"'text' is {type(r['text']).__name__}, not text")
    texts: list[str | None] = [
        answer_part(r) if r is not None and isinstance(r.get("text"), str) and (proto.prefers_text or "box" not in r) else None
        for r in alignment.records
    ]
    pixel_boxes = np.full((n, 4), proto.unparsable_box, dtype=np.float64)
    parsed = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(present):
        if texts[i] is None:
            box = _pixel_box(alignment.records[i].get("box"), f"prediction for sample {i}", problems)
            if box is not None:
                pixel_boxes[i], parsed[i] = box, True
    from_text = np.array([t is not None for t in texts], dtype=bool)
    if from_text.any() and proto.needs_family and fam is None:
        raise ProtocolError(f"protocol {proto.name!r} reads model text with a family's grammar: give the family (--family)")
    input_sizes = [input_size(r) if t is not None else None for r, t in zip(alignment.records, texts)] if proto.needs_family else [None] * n
    text_coords, text_parsed = proto.read_texts(texts, samples, fam, input_sizes)
    text_coords = np.where(text_parsed[:, None], text_coords, proto.unparsable_box)
    parsed |= text_parsed
    with np.errstate(over="ignore", invalid="ignore"):  # absurd numbers in model text overflow float32
        in_frame = np.where(
            from_text[:, None],
            proto.text_to_frame(text_coords, sizes),
            proto.pixels_to_frame(np.where(from_text[:, None], 0.0, pixel_boxes), sizes),
        ).astype(proto.dtype)
        gt = proto.pixels_to_frame(gt_pixels, sizes)
        ious = np.where(present, iou(in_frame, gt), 0.0).astype(np.float64)
        centre = centre_hit(in_frame, gt) & present
        pred_pixels = proto.frame_to_pixels(in_frame, sizes)
    pred_pixels[~present] = np.nan
    return RefCOCOScores(
        protocol=proto.name,
        ground_truth=samples,
        ious=ious,
        centre=centre,
        parsed=parsed,
        present=present,
        pred_boxes=pred_pixels,
        alignment=alignment,
        malformed=malformed,
        problems=problems,
        counted=None if counted is None else np.asarray(counted, dtype=bool),
    )


def reference_run_kept(n: int, gpus: int = 1, batch_size: int = 1) -> np.ndarray:
    """Which of n samples Qwen-VL's evaluate_grounding.py scores when launched on `gpus` processes
    with `--batch-size batch_size`: its sampler gives each rank a contiguous shard (the first
    n % gpus ranks one sample more) and its DataLoader (drop_last=True) drops each rank's last
    incomplete batch. With one process and batch size 1 (the script's defaults) nothing is dropped."""
    if gpus < 1 or batch_size < 1:
        raise ProtocolError("the reference run needs at least one process and a batch size of at least 1")
    kept = np.zeros(n, dtype=bool)
    begin = 0
    for rank in range(gpus):
        size = n // gpus + int(rank < n % gpus)
        kept[begin : begin + size // batch_size * batch_size] = True
        begin += size
    return kept


def load_samples(gt: Path, *, split: str | None = None, problems: InputProblems, **options) -> list[RefSample]:
    """`load_refcoco` for a run: NothingToScore when no sample is left (options as `load_refcoco`)."""
    return require_items(load_refcoco(gt, split=split, problems=problems, **options), gt, problems, "samples", {"split": split})


def score_reference_run(
    samples: Sequence[RefSample],
    records: Sequence[dict],
    *,
    protocol: str = "family",
    family: str | None = None,
    reference_gpus: int = 1,
    reference_batch_size: int = 1,
    malformed: int = 0,
    problems: InputProblems | None = None,
) -> RefCOCOScores:
    """`score_refcoco` limited to what Qwen-VL's script scores when run on `reference_gpus`
    processes with `--batch-size reference_batch_size` (all samples for 1 and 1)."""
    counted = None
    if (reference_gpus, reference_batch_size) != (1, 1):
        counted = reference_run_kept(len(samples), reference_gpus, reference_batch_size)
    return score_refcoco(samples, records, protocol, family, malformed=malformed, counted=counted, problems=problems)


BENCHMARK = Benchmark(
    name="refcoco",
    items="samples",
    help="Referring-expression accuracy (IoU >= 0.5) and more, under a named protocol.",
    gt_help="Ground truth: Qwen-VL jsonl, a refs(...).p file or refer data folder, or lmms-lab parquet (file or folder).",
    pred_help="Predictions: JSON lines {\"text\"} or {\"box\"}, or a JSON array of objects.",
    rows_option="per-sample",
    rows_help="Write IoU, hit and boxes per sample to this JSON-lines file.",
    draws_images=True,
    load=load_refcoco,
    score=score_reference_run,
    options=(
        Option("protocol", "family", "family (default: the family's grammar and frame), qwen-vl or lmms-eval."),
        Option("family", None, "Model family or hub id whose grammar reads the text (protocol family).", flags=("--family", "-f")),
        Option("dataset", None, "refer data: refcoco, refcoco+ or refcocog (GT is then the data folder).", loader=True),
        Option("split_by", None, "refer data: unc, google or umd (default unc; umd for refcocog).", loader=True),
        Option("split", None, "Keep one split (val, testA, testB, test); default: all but train.", loader=True),
        Option("instances", None, "refer data: instances.json (default: beside the refs file).", type=Path, loader=True),
        Option("reference_gpus", 1, "Count only what Qwen-VL's script scores when run on this many GPUs ...", type=int, min=1),
        Option("reference_batch_size", 1, "... with this --batch-size (its drop_last=True skips each GPU's last partial batch).",
               type=int, min=1),
    ),
    protocols=tuple((name, p.summary) for name, p in PROTOCOLS.items()),
)
