"""Running a model over RefCOCO ground truth and scoring it, resumably.

`run_refcoco_bench` writes three files into its output folder:
- `predictions.jsonl`: one line per sample as it is answered ({"index", "id", "sent", "text": raw model
  output, "box": first detection in original pixels or null, "error"}), written through
  `vlground.io.sink.JsonlSink`: each line fsync'ed as it is written, the file locked against a second
  run, never rewritten in place (a kill at any moment keeps every finished prediction). A rerun with
  the same folder skips the samples already there, so an interrupted run goes on where it stopped;
  a cut-off last line is dropped and redone.
- `samples.jsonl`: per sample IoU, hit, centre hit, parse status, both boxes and the model text
  (`RefCOCOScores.rows`), written atomically.
- `report.json`: the scores (`RefCOCOScores.summary`), errors, and the worst samples by IoU, written
  atomically.
An image that cannot be loaded, or a batch the model fails on, becomes an `error` line and counts as
a miss; the run goes on."""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlground.core.families import get_family
from vlground.core.options import GenerationOptions
from vlground.core.results import REASONING_FIELDS
from vlground.eval.errors import EvalInputError
from vlground.eval.inputs import InputProblems
from vlground.eval.refcoco import score_refcoco
from vlground.eval.refcoco_data import RefSample, load_sample_image
from vlground.jobs.ray_workers import pack, unpack
from vlground.jobs.scale import RaySettings, ray_records

log = logging.getLogger("vlground")

PREDICTIONS = "predictions.jsonl"
SAMPLES = "samples.jsonl"
REPORT = "report.json"
RUN = "run.json"


@dataclass(frozen=True)
class BenchRun:
    """What identifies a run: a folder holding another run's predictions is refused, not mixed in.
    `settings` are those that change answers (adapter, min/max pixels, dtype, token budgets,
    thinking): resuming with another value of any would mix two models' predictions."""

    model: str
    gt: str
    settings: dict = field(default_factory=dict)


def _prediction_key(samples: Sequence[RefSample]):
    """The sink key of a prediction line: its index, for lines that belong to these samples (same
    index, same sentence); other lines name no sample and are left as they are."""

    def key(record: dict) -> str | None:
        index = record["index"]
        if isinstance(index, int) and 0 <= index < len(samples) and record.get("sent") == samples[index].sent:
            return str(index)
        return None

    return key


def _gt_folder(gt_name: str) -> Path | None:
    gt = Path(gt_name)
    return gt if gt.is_dir() else gt.parent if gt.exists() else None


def _record(index: int, sample: RefSample, text: str | None, box, error: str | None, result=None) -> dict:
    """One prediction line; a thinking model's answer adds the reasoning fields of its Result
    (reasoning, reasoning_cut_short, clipped) where set."""
    record = {"index": index, "sent": sample.sent, "text": text, "box": box, "error": error}
    if sample.id is not None:
        record["id"] = sample.id
    if result is not None:
        record.update((name, getattr(result, name)) for name in REASONING_FIELDS if getattr(result, name))
    return record


def _answer_chunk(model, samples: Sequence[RefSample], indices: list[int], image_root: Path | None, options: dict) -> list[dict]:
    from vlground.io.images import ImageLoadError

    records: dict[int, dict] = {}
    loaded, images = [], []
    for i in indices:
        try:
            images.append(load_sample_image(samples[i], image_root))
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
            records[i] = _record(i, samples[i], result.raw, box, None, result)
    return [records[i] for i in indices]


def bench_run(model: str, gt: str, load_settings: dict | None, max_new_tokens: int | None, thinking: str,
              max_thinking_tokens: int | None) -> BenchRun:
    """The identity of a run: the model, the ground truth and every setting that changes answers."""
    return BenchRun(model, gt, {**(load_settings or {}), "max_new_tokens": max_new_tokens, "thinking": thinking,
                                "max_thinking_tokens": max_thinking_tokens})


def check_run(out: Path, run: BenchRun) -> None:
    """Refuse `out` when it holds a run of another model, ground truth or answer-changing setting
    (one written before settings were recorded is checked on model and ground truth); else mark it
    as this run's."""
    from vlground.io.sink import atomic_write

    marker = out / RUN
    if marker.is_file():
        previous = json.loads(marker.read_text(encoding="utf-8"))
        if not isinstance(previous, dict) or (previous.get("model"), previous.get("gt")) != (run.model, run.gt):
            raise EvalInputError(f"{out} holds a run of {previous.get('model') if isinstance(previous, dict) else '?'} on "
                                 f"{previous.get('gt') if isinstance(previous, dict) else '?'}; "
                                 "use another --out folder, or delete this one to start over")
        before = previous.get("settings")
        if isinstance(before, dict) and before != run.settings:
            changed = "; ".join(f"{name} was {before.get(name)!r}, now {run.settings.get(name)!r}"
                                for name in sorted(set(before) | set(run.settings)) if before.get(name) != run.settings.get(name))
            raise EvalInputError(f"{out} holds predictions made with other settings ({changed}); resume with the same "
                                 "settings, or use another --out folder")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(marker, json.dumps(asdict(run), ensure_ascii=False).encode("utf-8", "backslashreplace"))


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
    thinking: str = "auto",
    max_thinking_tokens: int | None = None,
    protocol: str = "family",
    worst: int = 20,
    progress: Callable[[int, int], None] | None = None,
    problems: InputProblems | None = None,
    html_report: str | Path | None = None,
    ray=None,
    load: dict | None = None,
    settings: dict | None = None,
    command: str | None = None,
) -> dict:
    """Answer every sample not yet in `out`, then score all of them; returns the report.

    `model` is a loaded vlground model: `model.family`, and `model.ground(images, phrases,
    batch_size=, max_new_tokens=, thinking=, max_thinking_tokens=)` returning Results with `.raw` and `.detections`. `model_name` and
    `gt_name` identify the run in `out`. `progress(done, total)` is called after each answer.
    With `ray` (a `vlground.jobs.scale.RaySettings`), `model` may be None: the samples are answered by
    Ray actors that load `model_name` with `load` (keywords of `vlground.load_model`), the records
    still written here, through the one sink. `image_root` defaults to the folder of `gt_name` (the GT file's
    folder, or the GT folder itself). The report's `failed_all` is true when no sample could be
    answered at all (a wrong image root, a broken model), `first_error` says why. `html_report`
    also writes the HTML report (`vlground.eval.report.write_report`) there. `settings`: how the model
    was loaded, as far as it changes answers (see `BenchRun`); the generation options are added.
    `command`: how the run was started, shown in the report (the CLI gives its command line)."""
    from vlground.io.sink import JsonlSink, OutputLockedError

    samples = list(samples)[:limit] if limit is not None else list(samples)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_run(out, bench_run(model_name, gt_name, settings, max_new_tokens, thinking, max_thinking_tokens))
    root = Path(image_root) if image_root is not None else _gt_folder(gt_name)
    options = {"batch_size": batch_size, "max_new_tokens": max_new_tokens, "thinking": thinking,
               "max_thinking_tokens": max_thinking_tokens}
    GenerationOptions(**options)  # a value no model takes is refused before any sample is answered
    try:
        sink = JsonlSink(out / PREDICTIONS, _prediction_key(samples), resume=True)
    except (OutputLockedError, IsADirectoryError) as error:
        raise EvalInputError(str(error)) from None
    with sink:
        todo = [i for i in range(len(samples)) if str(i) not in sink.done]
        if ray is not None:
            answers = refcoco_records(model_name, load or {}, samples, todo, root, options, ray)
        else:
            answers = _answers(model, samples, todo, root, options)
        for record in answers:
            sink.write(record)
            if progress:
                progress(len(sink.done), len(samples))
        records = [sink.done[str(i)] for i in range(len(samples))]
    family = model.family if model is not None else get_family(model_name)
    scores = score_refcoco(samples, records, protocol, family, problems=problems)
    if html_report is not None:
        from vlground.eval.report import write_report

        write_report(html_report, scores, image_root=root, context={"command": command or "run_refcoco_bench", "model": model_name, "gt": gt_name})
    return _report(model_name, gt_name, scores, records, out, worst=worst, answered=len(todo))


def _answers(model, samples: Sequence[RefSample], todo: list[int], root: Path | None, options: dict):
    """The prediction records of `todo`, answered in this process in chunks of 4 batches."""
    chunk = max(1, options["batch_size"]) * 4
    for start in range(0, len(todo), chunk):
        yield from _answer_chunk(model, samples, todo[start : start + chunk], root, options)


def _report(model_name: str, gt_name: str, scores, records, out: Path, *, worst: int, answered: int) -> dict:
    """Write samples.jsonl and report.json atomically, return the report."""
    from vlground.io.sink import atomic_write, atomic_write_records

    rows = scores.rows(records)
    atomic_write_records(out / SAMPLES, rows)
    errors = [r["error"] for r in records if r["error"] is not None]
    order = np.argsort(scores.ious, kind="stable")[:worst]
    report = {
        "model": model_name,
        "gt": gt_name,
        **scores.summary(),
        "errors": len(errors),
        "failed_all": bool(records) and len(errors) == len(records),
        "first_error": errors[0] if errors else None,
        "answered_this_run": answered,
        "worst": [rows[i] for i in order],
    }
    atomic_write(out / REPORT, json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8", "backslashreplace"))
    return report


@dataclass
class RefcocoWorker:
    """Grounds RefCOCO samples with the model `model_name` loaded with `load` (keywords of
    `vlground.load_model`), answering as `run_refcoco_bench` does in one process: an item is one
    packed (index, sample) pair, its record the prediction line of that sample."""

    model_name: str
    load: dict[str, Any]
    image_root: Path | None
    generation: dict[str, Any]
    model: Any = field(default=None, repr=False)

    def setup(self) -> None:
        from vlground.tasks import load_model

        self.model = load_model(self.model_name, **self.load)

    def __call__(self, items: list[str]) -> list[dict]:
        pairs = [unpack(item) for item in items]
        samples = dict(pairs)
        return _answer_chunk(self.model, samples, [index for index, _ in pairs], self.image_root, self.generation)

    def failed(self, item: str, reason: str) -> dict:
        index, sample = unpack(item)
        return _record(index, sample, None, None, f"model failed: {reason}")


def refcoco_records(model_name: str, load: dict[str, Any], samples: Sequence, todo: list[int], image_root: Path | None,
                    generation: dict[str, Any], settings: RaySettings) -> Iterator[dict]:
    """The prediction records of samples `todo` (indices into `samples`), answered on Ray, each once,
    in the order they finish."""
    worker = RefcocoWorker(model_name, load, image_root, generation)
    return ray_records([pack((i, samples[i])) for i in todo], worker, settings)
