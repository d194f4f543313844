"""The bench jobs behind `vlground bench refcoco` and `vlground bench screenspot`: a model over the
ground truth, through the job loop (`vlground.jobs.loop`, any executor), then the scores, resumably.

A bench writes three files into its output folder:
- `predictions.jsonl`: one line per item as it is answered (RefCOCO: {"index", "id", "sent", "text":
  raw model output, "box": first detection in original pixels or null, "error"}; ScreenSpot: {"index",
  "id", "instruction", "img_filename", "text", "point": the click in original pixels or null,
  "image_size", "input_size", "scale" (where not 1000), "error"}), written through
  `vlground.io.sink.JsonlSink`: each line fsync'ed as it is written, the file locked against a second
  run, never rewritten in place (a kill at any moment keeps every finished prediction). A rerun with
  the same folder skips the items already there, so an interrupted run goes on where it stopped;
  a cut-off last line is dropped and redone.
- `samples.jsonl`: per item the scores' rows (RefCOCO: IoU, hit, both boxes; ScreenSpot: click,
  status, distance from the box) and the model text, written atomically.
- `report.json`: the scores' summary, errors, and the worst items, written atomically.
An image that cannot be loaded, or an item the model fails on (a failing batch is run again item
by item), becomes an `error` line and counts as a miss; the run goes on."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from vlground.eval.errors import EvalInputError
from vlground.eval.inputs import InputProblems
from vlground.eval.refcoco import score_refcoco
from vlground.eval.refcoco_data import RefSample, load_sample_image
from vlground.eval.screenspot import ScreenTarget
from vlground.core.families import get_family
from vlground.jobs.executors import executor_for, model_call_size
from vlground.jobs.loop import Record, RunOptions, Task, run_tasks
from vlground.core.options import GenerationOptions, LoadOptions
from vlground.core.results import REASONING_FIELDS

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


def _prediction_key(texts: Sequence[str], field: str):
    """The sink key of a prediction line: its index, for lines that belong to these items (same
    index, same `field`: a sample's sentence, a target's instruction); other lines name no item and
    are left as they are."""

    def key(record: dict) -> str | None:
        index = record["index"]
        if isinstance(index, int) and 0 <= index < len(texts) and record.get(field) == texts[index]:
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
    return _with_reasoning(record, result)


def _with_reasoning(record: dict, result) -> dict:
    """`record` with the reasoning fields of a thinking model's Result (reasoning,
    reasoning_cut_short, clipped) where set."""
    if result is not None:
        record.update((name, getattr(result, name)) for name in REASONING_FIELDS if getattr(result, name))
    return record


@dataclass
class ModelWorker:
    """A bench worker's model where it runs (`vlground.jobs.loop.Worker`): `model` loaded with
    `load` in `setup` unless `loaded` (a model already open) is given."""

    model: str
    load: LoadOptions
    generation: GenerationOptions
    image_root: Path | None
    loaded: Any = field(default=None, repr=False)

    def setup(self) -> None:
        if self.loaded is None:
            from vlground.tasks import load_model

            self.loaded = load_model(self.model, self.load)

    @staticmethod
    def readable(items: list[tuple[int, Any]], image_of: Callable[[Any], Any],
                 unreadable: Callable[[int, Any, str], Record]) -> tuple[dict[int, Record], list[tuple[int, Any]], list]:
        """(an error record for each item whose image cannot be loaded, the other items, their images)."""
        from vlground.io.images import ImageLoadError

        records: dict[int, Record] = {}
        loaded, images = [], []
        for i, item in items:
            try:
                images.append(image_of(item))
                loaded.append((i, item))
            except ImageLoadError as error:
                records[i] = unreadable(i, item, str(error))
        return records, loaded, images


@dataclass
class RefcocoWorker(ModelWorker):
    """Grounds RefCOCO samples: an item is one (index, sample) pair, its record the sample's
    prediction line."""

    def __call__(self, items: list[tuple[int, RefSample]]) -> list[Record]:
        records, loaded, images = self.readable(items, lambda sample: load_sample_image(sample, self.image_root),
                                                lambda i, sample, error: _record(i, sample, None, None, error))
        if loaded:
            options = self.generation
            # a failing batch raises: the executor runs it again sample by sample (vlground.jobs.executors)
            results = self.loaded.ground(images, [s.sent for _, s in loaded], options)
            for (i, sample), result in zip(loaded, results):
                box = [float(v) for v in result.detections[0].xyxy] if result.detections else None
                records[i] = _record(i, sample, result.raw, box, None, result)
        return [records[i] for i, _ in items]

    def failed(self, item: tuple[int, RefSample], reason: str) -> Record:
        index, sample = item
        return _record(index, sample, None, None, f"model failed: {reason}")


@dataclass
class ScreenspotWorker(ModelWorker):
    """Asks for the click on each ScreenSpot target (`Model.point`, in `style`: "plain" or
    "tool_call"): an item is one (index, target) pair, its record the target's prediction line with
    the model's raw text, its click in pixels, and the screenshot's and model input's sizes (the
    frame the text is read in when it is scored)."""

    style: str = "plain"

    def __call__(self, items: list[tuple[int, ScreenTarget]]) -> list[Record]:
        from vlground.io.images import load_image

        records, loaded, images = self.readable(
            items, lambda target: load_image(self.image_root / target.image if self.image_root is not None else target.image),
            lambda i, target, error: _target_record(i, target, None, None, None, None, error))
        if loaded:
            # a failing batch raises: the executor runs it again target by target (vlground.jobs.executors)
            results = self.loaded.point(images, [t.instruction for _, t in loaded], self.generation, style=self.style)
            input_size = getattr(getattr(self.loaded, "backend", None), "input_size", None)
            scale = self._scale()
            for (i, target), image, result in zip(loaded, images, results):
                point = [float(v) for v in result.detections[0].point] if result.detections and result.detections[0].point else None
                seen = input_size(image.size) if input_size is not None else None
                records[i] = _target_record(i, target, result.raw, point, image.size, seen, None, result)
                if scale != 1000:
                    records[i]["scale"] = scale
        return [records[i] for i, _ in items]

    def _scale(self) -> float:
        """The divisor the answers' 0-1000 coordinates are read with: the screen size the tool-call
        prompt told the model (`vlground.prompts.point_prompt`; 1000 for the computer-use tool)."""
        from vlground.prompts import gui_tool

        return gui_tool(self.loaded.family)["scale"] if self.style == "tool_call" else 1000

    def failed(self, item: tuple[int, ScreenTarget], reason: str) -> Record:
        index, target = item
        return _target_record(index, target, None, None, None, None, f"model failed: {reason}")


def _target_record(index: int, target: ScreenTarget, text: str | None, point, image_size, input_size, error: str | None,
                   result=None) -> dict:
    """One ScreenSpot prediction line (as `vlground eval screenspot` reads it); a thinking model's
    answer adds the reasoning fields of its Result where set."""
    record = {"index": index, "id": target.id, "instruction": target.instruction, "img_filename": target.image, "text": text,
              "point": point, "error": error}
    if image_size is not None:
        record["image_size"] = [int(v) for v in image_size]
    if input_size is not None:
        record["input_size"] = [int(v) for v in input_size]
    return _with_reasoning(record, result)


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
    generation: GenerationOptions | None = None,
    load: LoadOptions | None = None,
    run: RunOptions | None = None,
    protocol: str = "family",
    worst: int = 20,
    problems: InputProblems | None = None,
    html_report: str | Path | None = None,
    settings: dict | None = None,
    command: str | None = None,
) -> dict:
    """Answer every sample not yet in `out`, then score all of them; returns the report.

    `model` is a loaded vlground model (`model.family`, and `model.ground(images, phrases,
    generation)` returning Results with `.raw` and `.detections`), or None: each
    worker then loads `model_name` with `load`. `generation` carries batch size and token budget;
    `run` the shared batch options (an output folder always resumes: `run.overwrite` starts it
    afresh, `run.retry_failed` answers its error lines again; the executor: this process, worker
    processes or Ray). `model_name` and `gt_name` identify the run in `out`. `image_root` defaults
    to the folder of `gt_name` (the GT file's folder, or the GT folder itself). The report's
    `failed_all` is true when no sample could be answered at all (a wrong image root, a broken
    model), `first_error` says why. `html_report` also writes the HTML report
    (`vlground.eval.report.write_report`) there. `settings`: how the model was loaded, as far as it
    changes answers (see `BenchRun`); the generation options are added. `command`: how the run was
    started, shown in the report (the CLI gives its command line)."""
    samples = list(samples)[:limit]
    worker = partial(RefcocoWorker, model_name, load or LoadOptions(), generation or GenerationOptions(), loaded=model)
    scores, records, answered = _answer_and_score(
        worker, samples, "sent", out, image_root=image_root, model=model, model_name=model_name, gt_name=gt_name, run=run,
        settings=settings, score=lambda records, family: score_refcoco(samples, records, protocol, family, problems=problems),
        html_report=html_report, command=command or "vlground bench refcoco")
    rows = scores.rows(records)
    return _report(model_name, gt_name, scores, records, rows, Path(out),
                   worst=[rows[i] for i in np.argsort(scores.ious, kind="stable")[:worst]], answered=answered)


def run_screenspot_bench(
    model,
    model_name: str,
    targets: Sequence[ScreenTarget],
    out: str | Path,
    *,
    gt_name: str,
    image_root: str | Path | None = None,
    limit: int | None = None,
    style: str = "plain",
    generation: GenerationOptions | None = None,
    load: LoadOptions | None = None,
    run: RunOptions | None = None,
    worst: int = 20,
    problems: InputProblems | None = None,
    html_report: str | Path | None = None,
    settings: dict | None = None,
    command: str | None = None,
) -> dict:
    """Ask `model` (`model.point(images, instructions, ..., style=)`, or None: each worker loads
    `model_name` with `load`) for the click on every target not yet in `out`, then score all of
    them with the family's grammar and frame (`vlground.eval.screenspot`); returns the report,
    whose `worst` lists the misses farthest from their box first, then the answers that gave no
    click. Everything else as `run_refcoco_bench`: the files written, resuming, the executors."""
    from vlground.eval.screenspot import score_screenspot

    targets = list(targets)[:limit]
    worker = partial(ScreenspotWorker, model_name, load or LoadOptions(), generation or GenerationOptions(), loaded=model, style=style)
    scores, records, answered = _answer_and_score(
        worker, targets, "instruction", out, image_root=image_root, model=model, model_name=model_name, gt_name=gt_name, run=run,
        settings={**(settings or {}), "style": style},
        score=lambda records, family: score_screenspot(targets, records, "family", family, problems=problems),
        html_report=html_report, command=command or "vlground bench screenspot")
    rows = scores.rows(records)
    unanswered = [i for i, s in enumerate(scores.status) if s not in ("correct", "wrong")]
    return _report(model_name, gt_name, scores, records, rows, Path(out),
                   worst=[rows[i] for i in (scores.worst_misses(worst) + unanswered)[:worst]], answered=answered)


def _answer_and_score(worker, items: list, field: str, out: str | Path, *, image_root: str | Path | None, model, model_name: str,
                      gt_name: str, run: RunOptions | None, settings: dict | None, score, html_report: str | Path | None,
                      command: str):
    """What every bench shares: answer the items not yet in `out` (`worker(root)` makes the
    benchmark's worker for the images under `root`), score all of them with `score(records,
    family)`, and write the HTML report where asked; returns (scores, records, answered)."""
    root = Path(image_root) if image_root is not None else _gt_folder(gt_name)
    records, answered = answer_all(worker(root), items, [getattr(item, field) for item in items], field, out, model_name=model_name,
                                   gt_name=gt_name, run=run or RunOptions(), settings=settings)
    scores = score(records, model.family if model is not None else get_family(model_name))
    if html_report is not None:
        from vlground.eval.report import write_report

        write_report(html_report, scores, image_root=root, context={"command": command, "model": model_name, "gt": gt_name})
    return scores, records, answered


def answer_all(worker: ModelWorker, items: Sequence, texts: Sequence[str], field: str, out: str | Path, *, model_name: str,
               gt_name: str, run: RunOptions, settings: dict | None) -> tuple[list[dict], int]:
    """Answer every item not yet in `out` with `worker` through the job loop, resumably; return
    every item's prediction line (in item order) and how many were answered by this run. `texts`
    are the items' `field` values, which tie a prediction line to its item. The executor: this
    process with `worker.loaded` (a few batches at a time, so that similar sizes batch together),
    else worker processes or Ray actors that each load the model. KeyboardInterrupt when the run
    was interrupted (every line written so far is kept)."""
    from vlground.io.sink import JsonlSink, OutputLockedError

    generation = worker.generation
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if run.overwrite:  # a new run: the old one's settings do not bind it
        (out / RUN).unlink(missing_ok=True)
    check_run(out, bench_run(model_name, gt_name, settings, generation.max_new_tokens, generation.thinking,
                             generation.max_thinking_tokens))
    try:
        sink = JsonlSink(out / PREDICTIONS, _prediction_key(texts, field), resume=not run.overwrite, overwrite=run.overwrite)
    except (OutputLockedError, IsADirectoryError) as error:
        raise EvalInputError(str(error)) from None
    if worker.loaded is not None and run.ray is None and (run.workers or 1) == 1:
        executor = executor_for(run, generation.batch_size * 4)
    else:
        worker.loaded = None  # each worker process or actor loads its own
        executor = executor_for(run, model_call_size(generation))
    with sink:
        summary = run_tasks([Task(str(i), (i, item)) for i, item in enumerate(items)], worker, executor, sink,
                            retry_failed=run.retry_failed, progress=run.progress, unit="sample")
        records = [sink.done[str(i)] for i in range(len(items)) if str(i) in sink.done]
    if summary.interrupted:
        raise KeyboardInterrupt
    return records, summary.done


def _report(model_name: str, gt_name: str, scores, records, rows: list[dict], out: Path, *, worst: list[dict], answered: int) -> dict:
    """Write samples.jsonl (`rows`) and report.json atomically, return the report."""
    from vlground.io.sink import atomic_write, atomic_write_records

    atomic_write_records(out / SAMPLES, rows)
    errors = [r["error"] for r in records if r["error"] is not None]
    report = {
        "model": model_name,
        "gt": gt_name,
        **scores.summary(),
        "errors": len(errors),
        "failed_all": bool(records) and len(errors) == len(records),
        "first_error": errors[0] if errors else None,
        "answered_this_run": answered,
        "worst": worst,
    }
    atomic_write(out / REPORT, json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8", "backslashreplace"))
    return report
