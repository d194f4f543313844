"""The detect job, behind `vlground detect` and `vlground label`: the answers to an image's queries
merged into one Result, and one label record per input (`vlground.core.records.Record`: path, abspath,
model, width, height, detections, text, error), so what `detect --out` writes is read by everything
that reads label records, and resumed the same way.

Images go to the model `batch_size` at a time (four batches with refill or a token budget; every query of every image of the batch in one call,
which the backend splits into forward passes and, when a batch fails, retries request by request,
`errors="record"`), so only the image at fault gets an error record; an input that cannot be read
gets one too, and the run goes on. `vlground label` is this job with every category in one prompt
(`DetectJob.together`) and a dataset written from the records at the end (`vlground.jobs.label`)."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from PIL import Image

from vlground.io.documents import DocumentError, PageSelection, documents_closed_after, plan
from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError
from vlground.jobs.executors import executor_for, model_call_size
from vlground.jobs.loop import RunOptions, Task, run_tasks
from vlground.core.families import chosen_model
from vlground.core.options import GenerationOptions, LoadOptions
from vlground.jobs.progress import Summary
from vlground.core.records import Record, record_key, with_abspath
from vlground.core.results import Result
from vlground.io.sources import Source, Sources, is_url, load
from vlground.tasks import reasoning_fields


@dataclass(frozen=True)
class DetectJob:
    """What to find: `queries` are referring expressions (one region each) or, with `all_instances`,
    categories (every instance, one prompt per category); with `together`, every category in one
    prompt per image, labels as the model writes them (`vlground label`). `generation` carries batch
    size and token budget to the model; images over `max_image_pixels` are refused as decompression
    bombs (None: no limit)."""

    queries: tuple[str, ...]
    all_instances: bool = False
    together: bool = False
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        if not self.queries or not all(q.strip() for q in self.queries):
            raise ValueError("give at least one query, none of them empty")


def merge_answers(queries: Sequence[str], answers: Sequence[Result], all_instances: bool) -> tuple[Result, list[str]]:
    """One Result from one answer per query, and the queries nothing was found for. A detection the
    model left unlabelled takes its query as label; for grounding (not `all_instances`) only the
    first box of each answer counts, one region per expression, with its query in attributes["query"]."""
    detections = []
    for query, answer in zip(queries, answers, strict=True):
        for d in answer.detections if all_instances else answer.detections[:1]:
            attributes = d.attributes if all_instances else {**d.attributes, "query": query}
            detections.append(dataclasses.replace(d, label=d.label or query, attributes=attributes))
    text = "\n".join(a.text for a in answers if a.text)
    missing = [q for q, a in zip(queries, answers) if not a.detections]
    return Result(detections=detections, text=text, image_size=answers[0].image_size, **reasoning_fields(answers)), missing


def detect_images(model, images: Sequence[Image.Image], job: DetectJob) -> list[tuple[Result, list[str]] | Exception]:
    """(Result, missing queries) for each image, all of them answered in one call per task; an image
    whose answer failed gets the exception in its place (the model's errors="record")."""
    queries = list(job.queries)
    if job.together:
        results = model.detect(list(images), queries, job.generation, errors="record")
        return [r if isinstance(r, Exception) else (r, [] if r.detections else queries) for r in results]
    if job.all_instances:
        per_query = [model.detect(list(images), q, job.generation, errors="record") for q in queries]
        answers = [[per_query[j][i] for j in range(len(queries))] for i in range(len(images))]
    else:
        flat = model.ground([image for image in images for _ in queries], queries * len(images), job.generation,
                            errors="record")
        answers = [flat[i * len(queries) : (i + 1) * len(queries)] for i in range(len(images))]
    failures = [next((a for a in image_answers if isinstance(a, Exception)), None) for image_answers in answers]
    return [f if f is not None else merge_answers(queries, a, job.all_instances) for f, a in zip(failures, answers)]


class AnnotationTarget:
    """Where the drawn copies of `vlground detect --annotate` go: one file for a single image; for
    several, a folder where each image keeps its place under the inputs' common folder and its name
    (URLs by the last part of their path, stdin as stdin.png). Checked before any inference."""

    def __init__(self, path: str | Path, sources: Sources) -> None:
        self.path = Path(path)
        self.single = len(sources.items) == 1 and not self.path.is_dir()
        locals_ = [os.path.dirname(os.path.abspath(s.location)) for s in sources.readable
                   if s.data is None and not is_url(s.location)]
        self.root = os.path.commonpath(locals_) if locals_ else os.getcwd()
        if self.single:
            _check_writable_image(self.path)
        elif not self.path.is_dir():
            raise ValueError(f"{self.path}: with several images this names a folder for their drawn copies, "
                             "and it does not exist; create it first")
        for source in sources.readable:
            if source.data is None and os.path.abspath(self.target(source)) == os.path.abspath(source.location):
                raise ValueError(f"{self.path}: the drawn copy of {source.name} would overwrite it; choose another folder")

    def target(self, source: Source) -> Path:
        if self.single:
            return self.path
        if source.data is not None:
            return self.path / "stdin.png"
        if is_url(source.location):
            name = os.path.basename(urlparse(source.location).path) or "download"
        else:
            name = os.path.relpath(os.path.abspath(source.location), self.root)
        return self.path / (name if _savable(name) else name + ".png")

    def save(self, source: Source, image: Image.Image, result: Result) -> Path:
        """Draw the boxes on the image and write it; OSError when it cannot be written."""
        from vlground.viz import annotate

        target = self.target(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        annotate(image, result).save(target)
        return target


def _savable(name: str) -> bool:
    return Image.registered_extensions().get(Path(name).suffix.lower()) in Image.SAVE


def _check_writable_image(path: Path) -> None:
    if not _savable(path.name):
        known = sorted(e for e, f in Image.registered_extensions().items() if f in ("PNG", "JPEG", "WEBP", "BMP", "TIFF"))
        raise ValueError(f"{path}: {path.suffix or 'no suffix'} is not an image format this can write; use one of {' '.join(known)}")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: the folder {path.parent} does not exist; create it first")


MISSING = "missing"  # the queries nothing was found for: reported on the console, not written


@dataclass
class DetectWorker:
    """The detect job where it runs (`vlground.jobs.loop.Worker`): loads the model `model` (None:
    $VLGROUND_MODEL or the default) with `load` once, then answers lists of sources, a label record
    each, drawing each image's boxes into `annotations` when given. A loaded `loaded` model is used
    as it is (a notebook's, or the one the command opened to fail early)."""

    model: str | None
    load: LoadOptions
    job: DetectJob
    annotations: AnnotationTarget | None = None
    loaded: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return str(chosen_model(self.model))

    def setup(self) -> None:
        if self.loaded is None:
            from vlground.tasks import load_model

            self.loaded = load_model(self.model, self.load)

    def __call__(self, sources: list[Source]) -> list[Record]:
        records: dict[int, Record] = {}
        loaded = []
        for index, source in enumerate(sources):
            try:
                loaded.append((index, load(source, max_pixels=self.job.max_image_pixels)))
            except ImageLoadError as error:
                records[index] = self._failed(source, error.reason)
        answers = detect_images(self.loaded, [image for _, image in loaded], self.job) if loaded else []
        for (index, image), answer in zip(loaded, answers):
            if isinstance(answer, Exception):
                records[index] = self.failed(sources[index], f"{type(answer).__name__}: {answer}")
            else:
                records[index] = self._record(sources[index], image, *answer)
        return [records[index] for index in range(len(sources))]

    def _record(self, source: Source, image: Image.Image, result: Result, missing: list[str]) -> Record:
        if self.annotations is not None:
            try:
                self.annotations.save(source, image, result)
            except (OSError, ValueError) as error:
                return self._failed(source, f"cannot write its drawn copy ({error})")
        record = Record.from_result(source.name, result, model=self.name).to_dict()
        return {**record, MISSING: missing} if missing else record

    def _failed(self, source: Source, reason: str) -> Record:
        return Record.failed(source.name, reason, model=self.name).to_dict()

    def failed(self, source: Source, reason: str) -> Record:
        return self._failed(source, f"the model failed on this image ({reason})")


@dataclass
class DetectSummary(Summary):
    """What a run did, as an OCR run's summary says it, and the images read this run that had no box:
    `missed` for some query, `empty` for any (an image with no box is a result, not a failure)."""

    missed: int = 0
    empty: int = 0

    def describe(self) -> str:
        read = self.done - self.failed
        if self.no_inputs or not self.missed:
            return f"detect: {super().describe()}"
        some = "" if self.missed == self.empty else f" for some query ({self.empty} for none)"
        return f"detect: {super().describe()}; {self.missed} of {read} images had no box{some}"


def source_key(source: Source) -> str:
    """The resume key of a source's record (`vlground.core.records.record_key`)."""
    return record_key({"path": source.name})


def _several_pages(source: Source) -> bool:
    """Whether `source` is a document of several pages, as `vlground ocr` tells documents apart (a
    model reads a multi-page TIFF as an image: its first page). A document that cannot be read gets
    its error record from the worker."""
    try:
        return len(plan(source, PageSelection())) > 1
    except DocumentError:
        return False


def run_detect(sources: Sources, worker: DetectWorker, sink=None, run: RunOptions = RunOptions(), *,
               report: Callable[[Record, Any], None] = lambda record, bar: None,
               summary: Summary | None = None) -> Summary:
    """Answer every source the sink does not hold yet, through the executor `run` asks for; each
    record goes to `sink` (a `vlground.io.sink` sink keyed like label records, or None), then to
    `report(record, bar)`, where the record's "missing" lists the queries nothing was found for. The
    model is loaded only when there is something to answer. Ctrl-C ends the run keeping what is
    written (`interrupted`). A multi-page TIFF is read as an image, its first page; the summary
    counts those read (`first_pages`), since their other pages are not."""
    summary = summary if summary is not None else DetectSummary(not_images=len(sources.not_images),
                                                                 subfolders=len(sources.subfolders))
    with documents_closed_after():
        several_pages = {source.name for source in sources.readable if _several_pages(source)}

    def write(record: Record) -> Record:
        if sink is not None:
            sink.write(with_abspath({k: v for k, v in record.items() if k != MISSING}))
        summary.first_pages += record["path"] in several_pages and record.get("error") is None
        if isinstance(summary, DetectSummary):
            read = record.get("error") is None
            summary.empty += read and not record.get("detections")
            summary.missed += read and bool(record.get(MISSING) or not record.get("detections"))
        return record

    tasks = [Task(source_key(source), source) for source in sources.items]
    executor = executor_for(run, model_call_size(worker.job.generation))
    return run_tasks(tasks, worker, executor, sink, retry_failed=run.retry_failed, progress=run.progress,
                     summary=summary, write=write, report=report)

