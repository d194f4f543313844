"""The batch: every input (an image, or a page of a document) gets exactly one record, written as
soon as it is known, and, once all of an input's pages are in, its exports (txt, hOCR, Markdown,
searchable PDF).

The built-in engine runs in worker processes (`vlground.jobs.ocr_workers`), by default as many as cores,
or, for a single input, one process with every thread; a Qwen model runs in this process, batched on
its device. An input that cannot be read, or that the engine fails on, becomes an error record and
the batch goes on."""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from vlground.core.options import GenerationOptions, LoadOptions
from vlground.core.records import Record, input_key
from vlground.io.documents import DEFAULT_DPI, DocumentError, PageJob, PageSelection, load_page, plan
from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError
from vlground.io.sink import escape_path
from vlground.io.sources import Sources, absolute_name, expand, is_url
from vlground.jobs.ocr_exports import Exporter
from vlground.jobs.ocr_workers import failed_record, page_record, ppocr_records, start_worker
from vlground.jobs.progress import Summary, progress_bar
from vlground.ocr.engine import QwenEngine
from vlground.ocr.output import open_sink
from vlground.ocr.ppocr import PPOCR, EngineSpec, is_built_in
from vlground.tasks import load_model


@dataclass(frozen=True)
class OcrOptions:
    """Everything `vlground ocr` can be told. `engine` is a built-in engine ("ppocr", "ppocr-v4")
    or a Qwen model (hub id, folder or server URL); `angle_cls` turns on the built-in engine's
    0/180-degree line classifier (off: it flips long lines of small print, `vlground.ocr.ppocr`);
    `workers` (built-in) None means one per core; `mode`, `batch_size`, `device`, `dtype` and
    `max_pixels` (the model's input budget) apply to Qwen; `max_image_pixels` is the
    decompression-bomb limit (None: no limit); `max_new_tokens` caps a Qwen answer (None: the
    task's budget), `thinking` and `max_thinking_tokens` its reasoning (see GenerationOptions); `adapter` (a `vlground finetune` folder, merged into the weights with
    `merge_adapter`) goes on a Qwen engine; `pages` and `dpi` apply to documents; `exports` are
    (format, folder) pairs (formats of `vlground.ocr.formats`); `progress` None shows a bar only when
    stderr is a terminal; `ray` (a Ray address or "local") runs the built-in engine on `workers`
    Ray actors instead of local processes; `retry_failed` (with resume) reads again the inputs recorded as errors."""

    engine: str = PPOCR
    angle_cls: bool = False
    mode: str = "text"
    recursive: bool = False
    workers: int | None = None
    batch_size: int = 8
    resume: bool = False
    retry_failed: bool = False
    overwrite: bool = False
    exports: tuple[tuple[str, Path], ...] = ()
    pages: PageSelection = field(default_factory=PageSelection)
    dpi: int = DEFAULT_DPI
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    progress: bool | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_pixels: int | None = None
    max_new_tokens: int | None = None
    thinking: str = "auto"
    max_thinking_tokens: int | None = None
    adapter: Path | None = None
    merge_adapter: bool = False
    ray: str | None = None
    echo_failures: bool = True


def _qwen_records(jobs: list[PageJob], options: OcrOptions, engine: QwenEngine) -> Iterator[Record]:
    """Inputs loaded a few batches at a time, so the backend can group similar sizes; a batch that
    fails is retried image by image, so only the image at fault gets an error record."""
    chunk = max(1, options.batch_size) * 4
    for start in range(0, len(jobs), chunk):
        part = jobs[start : start + chunk]
        loaded, records = [], {}
        for index, job in enumerate(part):
            try:
                loaded.append((index, job, load_page(job, max_pixels=options.max_image_pixels)))
            except ImageLoadError as error:
                records[index] = failed_record(job, options.engine, error.reason)
        try:
            pages = engine.read([image for _, _, image in loaded])
        except Exception:
            pages = None
        for place, (index, job, image) in enumerate(loaded):
            answer = (lambda _, page=pages[place]: [page]) if pages is not None else engine.read
            records[index] = page_record(job, options.engine, image, answer)
        yield from (records[index] for index in range(len(part)))


def _start_engine(options: OcrOptions, todo: list[PageJob]) -> Callable[[list[PageJob]], Iterator[Record]]:
    """Build the engine up front, so a missing package or model fails before any record is written."""
    if not is_built_in(options.engine):
        model = load_model(options.engine, LoadOptions(device=options.device, dtype=options.dtype, max_pixels=options.max_pixels,
                                                       adapter=options.adapter, merge_adapter=options.merge_adapter))
        generation = GenerationOptions(batch_size=options.batch_size, max_new_tokens=options.max_new_tokens,
                                       thinking=options.thinking, max_thinking_tokens=options.max_thinking_tokens)
        engine = QwenEngine(model, options.engine, mode=options.mode, options=generation)
        return lambda jobs: _qwen_records(jobs, options, engine)
    spec = EngineSpec(options.engine, angle_cls=options.angle_cls)
    workers = options.workers or max(1, min(os.cpu_count() or 1, len(todo)))
    if options.ray is None and workers == 1:
        start_worker(spec, 1 if options.workers else None)  # --workers 1 means one core
        return lambda jobs: ppocr_records(jobs, 1, options.max_image_pixels, spec)
    # One engine here first, so that a broken install stops the run with one message instead of an
    # error record per page; the worker processes or Ray actors then build their own.
    spec.build(threads=1)
    if options.ray is not None:  # actors on a Ray cluster, each with a one-thread engine
        from vlground.jobs.ray_workers import ppocr_records_on_ray
        from vlground.jobs.scale import RaySettings

        settings = RaySettings(options.ray, workers=options.workers or 1)
        return lambda jobs: ppocr_records_on_ray(jobs, options.max_image_pixels, settings, spec)
    return lambda jobs: ppocr_records(jobs, workers, options.max_image_pixels, spec)


def _done_before(key: str, done: dict, options: OcrOptions, summary: Summary) -> bool:
    """Whether the output already holds `key` (counted as skipped); with `retry_failed`, an input
    whose record is an error is read again instead."""
    earlier = done.get(key)
    if earlier is None:
        return False
    failed = earlier.get("error") is not None
    if failed and options.retry_failed:
        return False
    summary.skipped += 1
    summary.skipped_failed += failed
    return True


def expand_inputs(paths: list[str], recursive: bool = False, exclude: Iterable = ()) -> Sources:
    """`vlground.io.sources.expand`, with the PDFs of walked folders taken as inputs too; `exclude`: the
    run's own output and export folders."""
    return expand(paths, recursive=recursive, extra_suffixes={".pdf"}, exclude=exclude)


def _plan(inputs: Sources, options: OcrOptions, done: dict, summary: Summary,
          exporter: Exporter) -> tuple[list[PageJob], list[Record]]:
    """The pages left to read, and the error records of inputs that cannot be read at all (bad
    patterns, unlistable folders, encrypted or broken documents); inputs the output holds are
    counted as skipped. Each input's pages are announced to the exporter."""
    todo: list[PageJob] = []
    unreadable: list[Record] = []
    for source in inputs.items:
        name = absolute_name(source.location)
        try:
            if source.error is not None:
                raise DocumentError(source.error)
            jobs = plan(source, options.pages, options.dpi)
        except DocumentError as error:
            if not _done_before(input_key(name), done, options, summary):
                unreadable.append(Record.failed(source.location, str(error), engine=options.engine))
            continue
        exporter.expect(source, [input_key(name, job.page) for job in jobs])
        todo += [job for job in jobs if not _done_before(input_key(name, job.page), done, options, summary)]
    return todo, unreadable


def _deliver(record: Record, sink, options: OcrOptions, exporter: Exporter, summary: Summary) -> None:
    """Write the record, count it, say why it failed on stderr (one line), and write the exports of
    its input once all its pages are in; a failed export supersedes the record with an error record
    (text kept), so --resume --retry-failed writes it again."""
    sink.write(record.to_dict())
    if record.error is None:
        problem = exporter.record_done(record, sink.done)
        if problem is not None:
            record = replace(record, error=f"{problem}; the text is in this record, --resume --retry-failed writes it again")
            sink.write(record.to_dict())
    summary.done += 1
    if record.error is not None:
        summary.failed += 1
        if options.echo_failures:
            from tqdm import tqdm

            page = f" page {record.page}" if record.page is not None else ""
            tqdm.write(f"failed: {escape_path(record.path)}{page}: {record.error}", file=sys.stderr)


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
    exporter = Exporter(options.exports, root=os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in files]))
    started = time.perf_counter()
    with open_sink(out, resume=options.resume, overwrite=options.overwrite) as sink:
        todo, unreadable = _plan(inputs, options, sink.done, summary, exporter)
        # No engine (no model load) when there is nothing left to read.
        records = _start_engine(options, todo)(todo) if todo else (record for record in ())
        for record in unreadable:
            _deliver(record, sink, options, exporter, summary)
        bar = progress_bar(len(todo), options.progress)
        try:
            for record in records:
                _deliver(record, sink, options, exporter, summary)
                bar.update(1)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            records.close()
    summary.seconds = time.perf_counter() - started
    return summary
