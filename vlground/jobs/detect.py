"""Detection over many images, the work behind `vlground detect`: the answers to an image's queries
merged into one Result, and one label record per input in the schema of `vlground label`
(`vlground.core.records.Record`: path, model, width, height, detections, text, error), so what
`detect --out` writes is read by everything that reads label records, and resumed the same way.

Images are answered `batch_size` at a time (every query of every image of the batch in one call,
which the backend splits into forward passes and, when a batch fails, retries request by request),
so only the image at fault gets an error record. An input that cannot be read gets one too, and the
run goes on."""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from PIL import Image

from vlground.core.options import GenerationOptions
from vlground.core.results import Result
from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError
from vlground.io.sources import Source, Sources, is_url, load
from vlground.jobs.progress import Summary
from vlground.tasks import reasoning_fields


@dataclass(frozen=True)
class DetectJob:
    """What to find: `queries` are referring expressions (one region each) or, with `all_instances`,
    categories (every instance). `generation` carries batch size and token budget to the model;
    images over `max_image_pixels` are refused as decompression bombs (None: no limit)."""

    queries: tuple[str, ...]
    all_instances: bool = False
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS

    def __post_init__(self) -> None:
        if not self.queries or not all(q.strip() for q in self.queries):
            raise ValueError("give at least one query, none of them empty")


@dataclass
class Detected:
    """One input's outcome: its `result` and loaded `image`, the `missing` queries nothing was found
    for; or `error`, why there is no result."""

    source: Source
    result: Result | None = None
    image: Image.Image | None = field(default=None, repr=False)
    missing: list[str] = field(default_factory=list)
    error: str | None = None

    def record(self, model: str) -> dict:
        """The label record of this input (see the module docstring)."""
        from vlground.core.records import Record

        if self.result is None:
            return Record.failed(self.source.name, self.error, model=model).to_dict()
        return Record.from_result(self.source.name, self.result, model=model).to_dict()


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
    if job.all_instances:
        per_query = [model.detect(list(images), q, job.generation, errors="record") for q in queries]
        answers = [[per_query[j][i] for j in range(len(queries))] for i in range(len(images))]
    else:
        flat = model.ground([image for image in images for _ in queries], queries * len(images), job.generation,
                            errors="record")
        answers = [flat[i * len(queries) : (i + 1) * len(queries)] for i in range(len(images))]
    failures = [next((a for a in image_answers if isinstance(a, Exception)), None) for image_answers in answers]
    return [f if f is not None else merge_answers(queries, a, job.all_instances) for f, a in zip(failures, answers)]


def detect_sources(model, sources: Iterable[Source], job: DetectJob) -> Iterator[Detected]:
    """One Detected per source, in order, as soon as its batch is answered."""
    batch: list[Source] = []
    for source in [*sources, None]:
        if source is not None:
            batch.append(source)
        if batch and (source is None or len(batch) == job.generation.batch_size):
            yield from _answer_batch(model, batch, job)
            batch = []


def _answer_batch(model, batch: list[Source], job: DetectJob) -> Iterator[Detected]:
    loaded, failed = [], {}
    for source in batch:
        try:
            loaded.append((source, load(source, max_pixels=job.max_image_pixels)))
        except ImageLoadError as error:
            failed[id(source)] = Detected(source, error=error.reason)
    answers = iter(zip(loaded, detect_images(model, [image for _, image in loaded], job) if loaded else []))
    for source in batch:
        if id(source) in failed:
            yield failed[id(source)]
            continue
        (_, image), answer = next(answers)
        if isinstance(answer, Exception):
            yield Detected(source, error=f"the model failed on this image ({type(answer).__name__}: {answer})")
        else:
            yield Detected(source, answer[0], image, answer[1])


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

    def save(self, detected: Detected) -> Path:
        """Draw the boxes on the image and write it; OSError when it cannot be written."""
        from vlground.viz import annotate

        target = self.target(detected.source)
        target.parent.mkdir(parents=True, exist_ok=True)
        annotate(detected.image, detected.result).save(target)
        return target


def _savable(name: str) -> bool:
    return Image.registered_extensions().get(Path(name).suffix.lower()) in Image.SAVE


def _check_writable_image(path: Path) -> None:
    if not _savable(path.name):
        known = sorted(e for e, f in Image.registered_extensions().items() if f in ("PNG", "JPEG", "WEBP", "BMP", "TIFF"))
        raise ValueError(f"{path}: {path.suffix or 'no suffix'} is not an image format this can write; use one of {' '.join(known)}")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: the folder {path.parent} does not exist; create it first")


@dataclass
class DetectSummary(Summary):
    """What a run did, as an OCR run's summary says it, and `empty`: inputs where nothing was found."""

    empty: int = 0

    def describe(self) -> str:
        return f"detect: {super().describe()}, {self.empty} with nothing found"


def open_output(path: str | Path, resume: bool = False, overwrite: bool = False):
    """The sink for `detect --out`: a locked JSONL file keyed as label records are (see
    `vlground.io.sink`), or standard output for "-" (nothing there to resume)."""
    from vlground.core.records import record_key
    from vlground.io.sink import JsonlSink, StreamSink

    if str(path) == "-":
        if resume or overwrite:
            raise ValueError("--resume and --overwrite need an output file; standard output (--out -) holds nothing")
        return StreamSink()
    return JsonlSink(path, record_key, resume=resume, overwrite=overwrite, flag="--out")


def run_detect(open_model: Callable[[], object], model_name: str, sources: Sources, job: DetectJob, *,
               sink=None, annotations: AnnotationTarget | None = None,
               report: Callable[[Detected, object], None] = lambda d, bar: None, progress: bool | None = None,
               retry_failed: bool = False) -> DetectSummary:
    """Answer every source; each outcome goes to `annotations`, to `sink` (a vlground.io.sink sink, keyed
    like label records; sources it already holds are skipped), then to `report`. `open_model` is
    called only when there is something to answer. A drawn copy that cannot be written turns the
    input's outcome into an error. Ctrl-C ends the run keeping what is written (`interrupted`).
    `progress`: a bar on stderr (None: when it is a terminal); `retry_failed`: answer again the
    sources `sink` holds as errors (the new record replaces the old)."""
    from vlground.core.records import record_key, with_abspath
    from vlground.jobs.progress import progress_bar

    summary = DetectSummary(not_images=len(sources.not_images), subfolders=len(sources.subfolders))
    todo = []
    for source in sources.items:
        earlier = sink.done.get(record_key({"path": source.name})) if sink is not None else None
        if earlier is None or (retry_failed and earlier.get("error") is not None):
            todo.append(source)
        else:
            summary.skipped += 1
            summary.skipped_failed += earlier.get("error") is not None
    if not todo:
        return summary
    model = open_model()
    started = time.perf_counter()
    with progress_bar(len(todo), progress) as bar:
        try:
            for detected in detect_sources(model, todo, job):
                detected = _drawn(detected, annotations)
                if sink is not None:
                    sink.write(with_abspath(detected.record(model_name)))
                summary.done += 1
                summary.failed += detected.error is not None
                summary.empty += detected.result is not None and not detected.result.detections
                report(detected, bar)
                bar.update(1)
        except KeyboardInterrupt:
            summary.interrupted = True
    summary.seconds = time.perf_counter() - started
    return summary


def _drawn(detected: Detected, annotations: AnnotationTarget | None) -> Detected:
    """`detected` once its drawn copy is written; an error outcome when it cannot be."""
    if annotations is None or detected.result is None:
        return detected
    try:
        annotations.save(detected)
    except (OSError, ValueError) as error:
        return Detected(detected.source, error=f"cannot write its drawn copy ({error})")
    return detected
