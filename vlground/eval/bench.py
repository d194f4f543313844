"""Running a model over RefCOCO ground truth and scoring it, resumably.

`run_refcoco_bench` writes three files into its output folder:
- `predictions.jsonl`: one line per sample as it is answered ({"index", "id", "sent", "text": raw model
  output, "box": first detection in original pixels or null, "error"}), flushed after every batch. A
  rerun with the same folder skips the samples already there, so an interrupted run goes on where it
  stopped; a cut-off last line is dropped and redone.
- `samples.jsonl`: per sample IoU, hit, centre hit, parse status, both boxes and the model text.
- `report.json`: the scores (`RefCOCOScores.summary`), errors, and the worst samples by IoU.
An image that cannot be loaded, or a batch the model fails on, becomes an `error` line and counts as
a miss; the run goes on."""
from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vlground.eval.errors import EvalInputError
from vlground.eval.refcoco import RefCOCOScores, score_refcoco
from vlground.eval.refcoco_data import RefSample

log = logging.getLogger("vlground")

PREDICTIONS = "predictions.jsonl"
SAMPLES = "samples.jsonl"
REPORT = "report.json"
RUN = "run.json"


@dataclass(frozen=True)
class BenchRun:
    """What identifies a run: a folder holding another run's predictions is refused, not mixed in."""

    model: str
    gt: str


def _read_done(path: Path, samples: Sequence[RefSample]) -> dict[int, dict]:
    """Predictions already written for these samples, by index; rewrites the file without a
    cut-off last line or lines that do not belong to these samples."""
    if not path.is_file():
        return {}
    done: dict[int, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
            index = record["index"]
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
        if isinstance(index, int) and 0 <= index < len(samples) and record.get("sent") == samples[index].sent:
            done.setdefault(index, record)
    path.write_text("".join(json.dumps(done[i], ensure_ascii=False) + "\n" for i in sorted(done)), encoding="utf-8")
    return done


def _load(sample: RefSample, image_root: Path | None):
    from PIL import Image

    from vlground.imageio import ImageLoadError, load_image

    if sample.image_bytes is not None:
        try:
            return load_image(Image.open(io.BytesIO(sample.image_bytes)))
        except OSError as error:
            raise ImageLoadError(sample.image or "<embedded image>", f"cannot decode the embedded image ({error})") from None
    if sample.image is None:
        raise ImageLoadError("<none>", "the ground truth names no image for this sample")
    path = Path(sample.image)
    return load_image(path if path.is_absolute() or image_root is None else image_root / path)


def _record(index: int, sample: RefSample, text: str | None, box, error: str | None) -> dict:
    record = {"index": index, "sent": sample.sent, "text": text, "box": box, "error": error}
    if sample.id is not None:
        record["id"] = sample.id
    return record


def _answer_chunk(model, samples: Sequence[RefSample], indices: list[int], image_root: Path | None, options: dict) -> list[dict]:
    from vlground.imageio import ImageLoadError

    records: dict[int, dict] = {}
    loaded, images = [], []
    for i in indices:
        try:
            images.append(_load(samples[i], image_root))
            loaded.append(i)
        except ImageLoadError as error:
            records[i] = _record(i, samples[i], None, None, str(error))
    if loaded:
        try:
            results = model.ground(images, [samples[i].sent for i in loaded], **options)
        except Exception as error:  # noqa: BLE001 - one failing batch must not end a long run
            log.warning("the model failed on %d samples: %s", len(loaded), error)
            results = None
            for i in loaded:
                records[i] = _record(i, samples[i], None, None, f"model failed: {type(error).__name__}: {error}")
        for i, result in zip(loaded, results or ()):
            box = [float(v) for v in result.detections[0].xyxy] if result.detections else None
            records[i] = _record(i, samples[i], result.raw, box, None)
    return [records[i] for i in indices]


def _check_run(out: Path, run: BenchRun) -> None:
    marker = out / RUN
    if marker.is_file():
        previous = json.loads(marker.read_text(encoding="utf-8"))
        if previous != asdict(run):
            raise EvalInputError(
                f"{out} holds a run of {previous.get('model')} on {previous.get('gt')}; "
                "use another --out folder, or delete this one to start over"
            )
    marker.write_text(json.dumps(asdict(run)), encoding="utf-8")


def _sample_rows(samples: Sequence[RefSample], records: Sequence[dict], scores: RefCOCOScores) -> list[dict]:
    rows = []
    for i, (sample, record) in enumerate(zip(samples, records)):
        pred = scores.pred_boxes[i]
        rows.append(
            {
                "index": i,
                "id": sample.id,
                "split": sample.split,
                "sent": sample.sent,
                "image": sample.image,
                "gt_box": list(sample.box),
                "pred_box": None if np.isnan(pred).any() else [float(v) for v in pred],
                "iou": float(scores.ious[i]),
                "hit": bool(scores.hits[i]),
                "centre_hit": bool(scores.centre[i]),
                "parsed": bool(scores.parsed[i]),
                "text": record.get("text"),
                "error": record.get("error"),
            }
        )
    return rows


def run_refcoco_bench(
    model,
    model_name: str,
    samples: Sequence[RefSample],
    out: str | Path,
    *,
    gt_name: str,
    image_root: str | Path | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    protocol: str = "family",
    worst: int = 20,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Answer every sample not yet in `out`, then score all of them; returns the report.

    `model` is a loaded vlground model: `model.family`, and `model.ground(images, phrases,
    batch_size=, max_new_tokens=)` returning Results with `.raw` and `.detections`. `model_name` and
    `gt_name` identify the run in `out`. `progress(done, total)` is called after each chunk of
    4 x batch_size samples."""
    samples = list(samples)[:limit] if limit is not None else list(samples)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_run(out, BenchRun(model=model_name, gt=gt_name))
    root = Path(image_root) if image_root is not None else None
    predictions = out / PREDICTIONS
    done = _read_done(predictions, samples)
    todo = [i for i in range(len(samples)) if i not in done]
    chunk = max(1, batch_size) * 4
    options = {"batch_size": batch_size, "max_new_tokens": max_new_tokens}
    with predictions.open("a", encoding="utf-8") as sink:
        for start in range(0, len(todo), chunk):
            for record in _answer_chunk(model, samples, todo[start : start + chunk], root, options):
                done[record["index"]] = record
                sink.write(json.dumps(record, ensure_ascii=False) + "\n")
            sink.flush()
            if progress:
                progress(len(done), len(samples))
    records = [done[i] for i in range(len(samples))]
    scores = score_refcoco(samples, records, protocol, model.family)
    rows = _sample_rows(samples, records, scores)
    (out / SAMPLES).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    order = np.argsort(scores.ious, kind="stable")[:worst]
    report = {
        "model": model_name,
        "gt": gt_name,
        **scores.summary(),
        "errors": sum(r["error"] is not None for r in records),
        "answered_this_run": len(todo),
        "worst": [rows[i] for i in order],
    }
    (out / REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return report
