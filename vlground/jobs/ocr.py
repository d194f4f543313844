"""The OCR job behind `vlground ocr`: every input (an image, or a page of a document) gets exactly one
record, written as soon as it is known, and, once all of an input's pages are in, its exports (txt,
hOCR, Markdown, searchable PDF).

The built-in engine runs in worker processes (`vlground.jobs.executors.Processes`), by default as
many as cores, one thread each, or, for a single input, in this process with every thread; a Qwen
model runs in this process, batched on its device; either runs on Ray actors with `--ray`. An input
that cannot be read, or that the engine fails on, becomes an error record and the batch goes on."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PIL import Image

from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError
from vlground.jobs.executors import InProcess, executor_for
from vlground.jobs.loop import Record, RunOptions, Task, pending, run_tasks
from vlground.io.documents import DEFAULT_DPI, DocumentError, PageJob, PageSelection, documents_closed_after, load_page, plan
from vlground.ocr.engine import PageText, QwenEngine
from vlground.jobs.ocr_exports import Exporter
from vlground.ocr.ppocr import BUILT_IN_ENGINES, PPOCR, EngineSpec, is_built_in
from vlground.core.options import GenerationOptions, LoadOptions
from vlground.core.records import Record, input_key, record_key
from vlground.jobs.progress import Summary
from vlground.io.sink import escape_path, open_sink
from vlground.io.sources import Sources, absolute_name, expand, is_url
from vlground.tasks import load_model


@dataclass(frozen=True)
class OcrOptions:
    """Everything `vlground ocr` can be told. `engine` is a built-in engine ("ppocr", "ppocr-v4")
    or a Qwen model (hub id, folder or server URL), loaded with `load` and asked with `generation`
    in `mode` ("text" or "lines"); `angle_cls` has the built-in engine read each line both
    ways up as well as turning whole pages (`vlground.ocr.ppocr`); `layout` is how it cuts a page
    into lines (`vlground.ocr.layout.LAYOUTS`); `max_image_pixels`
    is the decompression-bomb limit (None: no limit); `pages` and `dpi` apply to documents;
    `exports` are (format, folder) pairs (formats of `vlground.ocr.formats`); `run` the shared batch
    options (its `workers` None: one process per core for the built-in engine); `echo_failures`
    says each failure on stderr as it comes."""

    engine: str = PPOCR
    angle_cls: bool = False
    layout: str = "auto"
    mode: str = "text"
    recursive: bool = False
    exports: tuple[tuple[str, Path], ...] = ()
    pages: PageSelection = field(default_factory=PageSelection)
    dpi: int = DEFAULT_DPI
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    load: LoadOptions = field(default_factory=LoadOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    run: RunOptions = field(default_factory=RunOptions)
    echo_failures: bool = True


def failed_record(job: PageJob, engine: str, error: str) -> Record:
    return Record(path=job.source.location, engine=engine, error=error, page=job.page, pages=job.pages, dpi=job.dpi)


def page_record(job: PageJob, engine: str, image: Image.Image, page: PageText) -> Record:
    return Record(path=job.source.location, engine=engine, width=image.width, height=image.height, text=page.text,
                     detections=page.lines, page=job.page, pages=job.pages, dpi=job.dpi, rotation=page.rotation,
                     warnings=page.warnings, reasoning=page.reasoning)


@dataclass
class PageWorker:
    """Reads page jobs with an OCR engine where it runs (`vlground.jobs.loop.Worker`): the built-in
    engine `engine` (an EngineSpec, on `threads` threads, None: all cores) or, with `model` set, a
    Qwen model loaded with `load` and read in `mode` with `generation`. A batch is read in one call
    of the engine; a page that cannot be loaded, or that the engine fails on alone, gets an error
    record."""

    engine: EngineSpec | None = None
    threads: int | None = 1
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    model: str | None = None
    load: LoadOptions = field(default_factory=LoadOptions)
    mode: str = "text"
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    reader: Any = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.engine.name if self.engine is not None else self.model

    @property
    def preload(self) -> tuple[str, ...]:
        """The packages a worker process imports before the fork server forks it."""
        return BUILT_IN_ENGINES[self.engine.name].modules if self.engine is not None else ()

    def setup(self) -> None:
        """Build the engine (a missing package or model fails here, before any record)."""
        if self.reader is not None:
            return
        if self.engine is not None:
            self.reader = self.engine.build(self.threads)
            return
        self.reader = QwenEngine(load_model(self.model, self.load), self.model, mode=self.mode, options=self.generation)

    def __call__(self, jobs: list[PageJob]) -> list[Record]:
        records: dict[int, Record] = {}
        loaded = []
        for index, job in enumerate(jobs):
            try:
                loaded.append((index, load_page(job, max_pixels=self.max_image_pixels)))
            except ImageLoadError as error:
                records[index] = failed_record(job, self.name, error.reason)
        try:
            pages = self.reader.read([image for _, image in loaded]) if loaded else []
        except Exception as error:  # noqa: BLE001 - a batch is run again page by page (vlground.jobs.executors)
            if len(loaded) > 1:
                raise
            pages = None
            reason = f"the OCR engine failed on this image: {type(error).__name__}: {error}"
        for place, (index, image) in enumerate(loaded):
            job = jobs[index]
            records[index] = page_record(job, self.name, image, pages[place]) if pages is not None else \
                failed_record(job, self.name, reason)
        return [records[index].to_dict() for index in range(len(jobs))]

    def failed(self, job: PageJob, reason: str) -> Record:
        return failed_record(job, self.name, f"the OCR engine crashed on this image ({reason}); the other images were read").to_dict()


def expand_inputs(paths: list[str], recursive: bool = False, exclude: Iterable = ()) -> Sources:
    """`vlground.io.sources.expand`, with the PDFs of walked folders taken as inputs too; `exclude`: the
    run's own output and export folders."""
    return expand(paths, recursive=recursive, extra_suffixes={".pdf"}, exclude=exclude)


def _tasks(inputs: Sources, options: OcrOptions, exporter: Exporter) -> list[Task]:
    """One task per page to read; an input that cannot be read at all (a bad pattern, an unlistable
    folder, an encrypted or broken document) one task with its error record. Each input's pages are
    announced to the exporter."""
    tasks = []
    for source in inputs.items:
        name = absolute_name(source.location)
        try:
            if source.error is not None:
                raise DocumentError(source.error)
            jobs = plan(source, options.pages, options.dpi)
        except DocumentError as error:
            tasks.append(Task(input_key(name), record=Record.failed(source.location, str(error), engine=options.engine).to_dict()))
            continue
        exporter.expect(source, [input_key(name, job.page) for job in jobs])
        tasks += [Task(input_key(name, job.page), job) for job in jobs]
    return tasks


def _worker_and_executor(options: OcrOptions, count: int):
    """The engine's worker and where it runs for `count` pages: a built-in engine in one process per
    core (one thread each), or in this process with every thread for a single page or `--workers 1`
    (one thread: one core); a Qwen model in this process, a few batches per call so the backend can
    group similar sizes. With several processes or Ray, one engine is built here first, so that a
    broken install stops the run with one message instead of an error record per page."""
    run = options.run
    if not is_built_in(options.engine):
        worker = PageWorker(model=options.engine, load=options.load, mode=options.mode, generation=options.generation,
                            max_image_pixels=options.max_image_pixels)
        return worker, executor_for(run, options.generation.batch_size * 4)
    spec = EngineSpec(options.engine, angle_cls=options.angle_cls, layout=options.layout)
    workers = run.workers or (1 if run.ray is not None else max(1, min(os.cpu_count() or 1, count)))
    executor = executor_for(replace(run, workers=workers))
    if isinstance(executor, InProcess):
        return PageWorker(spec, threads=1 if run.workers else None, max_image_pixels=options.max_image_pixels), executor
    spec.build(threads=1)
    return PageWorker(spec, threads=1, max_image_pixels=options.max_image_pixels), executor


def run_ocr(paths: Iterable[str], out: str | Path, options: OcrOptions | None = None,
            inputs: Sources | None = None) -> Summary:
    """Read every input behind `paths` into `out` (JSONL, one record per image or document page;
    "-" for standard output). Nothing is written when the paths hold no input at all
    (`summary.no_inputs` says why). Raises OutputExistsError / OutputLockedError before any work
    when `out` holds results and neither resume nor overwrite is set, or another run writes it;
    EngineUnavailableError / WeightsNotFoundError when the engine cannot start."""
    options = options or OcrOptions()
    own = [folder for _, folder in options.exports] + ([] if str(out) == "-" else [out, f"{out}.lock"])
    inputs = inputs or expand_inputs(list(paths), recursive=options.recursive, exclude=own)
    if str(out) != "-":
        inputs.check_output(out)
    summary = Summary(not_images=len(inputs.not_images), subfolders=len(inputs.subfolders))
    if not inputs.items:
        summary.no_inputs = inputs.describe_empty()
        return summary
    files = [s.location for s in inputs.readable if s.data is None and not is_url(s.location)] or ["."]
    exporter = Exporter(options.exports, root=os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in files]), inputs=inputs)
    run = options.run
    with documents_closed_after(), open_sink(out, record_key, resume=run.resume, overwrite=run.overwrite) as sink:
        todo = pending(_tasks(inputs, options, exporter), sink.done, run.retry_failed, summary)

        def export(record: Record) -> Record:
            """The exports of the record's input once all its pages are in; a failed export
            supersedes the record with an error record (text kept), so --resume --retry-failed
            writes it again."""
            if record["error"] is None:
                problem = exporter.record_done(Record.from_dict(record), sink.done)
                if problem is not None:
                    record = {**record, "error": f"{problem}; the text is in this record, --resume --retry-failed writes it again"}
                    sink.write(record)
            return record

        def write(record: Record) -> Record:
            sink.write(record)
            return export(record)

        def report(record: Record, bar) -> None:
            if record["error"] is not None and options.echo_failures:
                page = f" page {record['page']}" if record.get("page") is not None else ""
                bar.write(f"failed: {escape_path(record['path'])}{page}: {record['error']}", file=sys.stderr)

        for held in exporter.held_without_exports(sink.done):  # read before: only their exports are missing
            exported = export(held)
            if exported["error"] is not None:
                from tqdm import tqdm

                summary.skipped_failed += 1
                report(exported, tqdm)  # no bar yet: tqdm's own write
        if not todo:
            return summary
        worker, executor = _worker_and_executor(options, sum(task.record is None for task in todo))

        return run_tasks(todo, worker, executor, sink, retry_failed=run.retry_failed, progress=run.progress,
                         summary=summary, write=write, report=report)
