"""The batch: every input file gets exactly one record, written as soon as it is known.

The embedded engine runs in `workers` processes, each building its engine once and running it on
one thread, so N workers use N cores (processes scale better than onnxruntime's own threads, which
give about 1.5x on 2 cores); by default as many workers as cores, or, for a single file, one
process with every thread; a Qwen model runs in this process, batched on its device. A file that
cannot be read, or that the engine fails on, becomes an error record and the batch goes on."""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path

from vlground.imageio import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError, load_image
from vlground.ocr.engine import PPOCR, PPOCREngine, PageText, QwenEngine
from vlground.ocr.inputs import Inputs, collect_inputs
from vlground.ocr.output import TextExportError, absolute_name, export_text, input_key, open_sink
from vlground.ocr.records import OcrRecord
from vlground.sink import escape_path, pid_alive


@dataclass(frozen=True)
class OcrOptions:
    """Everything `vlground ocr` can be told. `engine` is "ppocr" or a Qwen model (hub id or
    folder); `workers` (ppocr) None means one per core; `mode`, `batch_size`, `device`, `dtype` and `max_pixels` (the model's input budget)
    apply to Qwen; `max_image_pixels` is the decompression-bomb limit (None: no limit); `progress`
    None shows a bar only when stderr is a terminal."""

    engine: str = PPOCR
    mode: str = "text"
    recursive: bool = False
    workers: int | None = None
    batch_size: int = 8
    resume: bool = False
    retry_failed: bool = False
    overwrite: bool = False
    txt_dir: Path | None = None
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    progress: bool | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_pixels: int | None = None
    echo_failures: bool = True


@dataclass
class Summary:
    """What a run did: `done` records written (of which `failed` are errors), `skipped` inputs the
    output already held (of which `skipped_failed` were errors), `not_images` folder files left out
    by suffix, `subfolders` not entered."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    not_images: int = 0
    subfolders: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    no_inputs: bool = False

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """False when any input has an error record, from this run or an earlier one, or when
        there was nothing to read."""
        return self.failed == 0 and self.skipped_failed == 0 and not self.interrupted and not self.no_inputs

    def describe(self) -> str:
        if self.no_inputs:
            return ("warning: no image to read: " + (f"{self.not_images} files without an image suffix, " if self.not_images else "")
                    + f"{self.subfolders} subfolders not entered (use --recursive); nothing written")
        parts = [f"done {self.done}", f"failed {self.failed}", f"{self.seconds:.1f} s",
                 f"{self.images_per_second:.2f} images/s"]
        if self.skipped:
            parts.append(f"skipped {self.skipped} already in the output ({self.skipped_failed} of them failed"
                         + ("; --retry-failed reads them again)" if self.skipped_failed else ")"))
        if self.not_images:
            parts.append(f"{self.not_images} files in folders without an image suffix not read")
        if self.subfolders:
            parts.append(f"{self.subfolders} subfolders not entered (use --recursive)")
        text = ", ".join(parts)
        return text + ("; interrupted: run again with --resume to finish" if self.interrupted else "")


def _page_record(path: str, engine: str, image, read: Callable[[list], list[PageText]]) -> OcrRecord:
    try:
        page = read([image])[0]
    except Exception as error:  # one bad image must not end the batch
        return OcrRecord.failed(path, engine, f"the OCR engine failed on this image: {type(error).__name__}: {error}")
    return OcrRecord(path=path, engine=engine, width=image.width, height=image.height, text=page.text, lines=page.lines)


def _read_file(path: str, engine: str, max_image_pixels: int | None,
               read: Callable[[list], list[PageText]]) -> OcrRecord:
    try:
        image = load_image(path, max_pixels=max_image_pixels)
    except ImageLoadError as error:
        return OcrRecord.failed(path, engine, error.reason)
    return _page_record(path, engine, image, read)


# The engine of a worker process, built once by _start_worker.
_worker_engine: PPOCREngine | None = None


def _die_with_parent(main_pid: int) -> None:
    """Make this worker exit when the run that started it dies, however it dies (kill -9 included).
    Its parent is the fork server, which would exit with the main process, but every worker holds
    the fork server's keep-alive pipe, so neither ever would: a thread in each worker watches the
    main process instead (every 0.2 s) and ends the worker once it is gone."""
    if not pid_alive(main_pid):
        os._exit(1)
    threading.Thread(target=_watch, args=(main_pid,), daemon=True, name="parent-watch").start()


def _watch(main_pid: int) -> None:
    while pid_alive(main_pid):
        time.sleep(0.2)
    os._exit(1)


def _start_worker(threads: int | None, main_pid: int | None = None) -> None:
    global _worker_engine
    if main_pid is not None:
        _die_with_parent(main_pid)
    _worker_engine = PPOCREngine(threads=threads)


Job = tuple[str, int | None]  # (path, decompression-bomb limit)


def _worker_read(job: Job) -> OcrRecord:
    path, max_image_pixels = job
    return _read_file(path, PPOCR, max_image_pixels, _worker_engine.read)


def _worker_count(options: OcrOptions, files: list[str]) -> int:
    return options.workers or max(1, min(os.cpu_count() or 1, len(files)))


def _ppocr_records(files: list[str], options: OcrOptions, read: Callable[[Job], OcrRecord] = _worker_read) -> Iterator[OcrRecord]:
    jobs = deque((path, options.max_image_pixels) for path in files)
    workers = _worker_count(options, files)
    if workers == 1:
        yield from map(read, jobs)
        return
    # Never plain fork: onnxruntime's threads in this process (an earlier engine) would deadlock the
    # copies. A fork server starts clean, imports this module and rapidocr once, and forks workers
    # from that (a missing rapidocr was caught by check_available before).
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, "rapidocr_onnxruntime"])
    else:
        context = multiprocessing.get_context("spawn")
    while jobs:
        crashed = yield from _pool_pass(jobs, workers, context, read)
        for job in crashed:  # each alone: only the image that kills the engine gets an error record
            yield _alone(job, context, read)


def _pool_pass(jobs: deque, workers: int, context, read: Callable[[Job], OcrRecord]) -> Generator[OcrRecord, None, list[Job]]:
    """Records of `jobs` (taken from the left) read by `workers` processes, one job each in flight.
    A worker that dies (a crash inside the engine) breaks the pool: the pass then ends and returns
    the jobs that were in flight, since any of them may be the cause; the rest stay in `jobs`."""
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(1, os.getpid())) as pool:
        running: dict = {}
        while jobs or running:
            while jobs and len(running) < workers:
                job = jobs.popleft()
                running[pool.submit(read, job)] = job
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            crashed = []
            for future in done:
                job = running.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    crashed.append(job)
            if crashed:
                return crashed + list(running.values())
    return []


def _alone(job: Job, context, read: Callable[[Job], OcrRecord]) -> OcrRecord:
    with ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker, initargs=(1, os.getpid())) as pool:
        try:
            return pool.submit(read, job).result()
        except BrokenProcessPool:
            return OcrRecord.failed(job[0], PPOCR, "the OCR engine crashed on this image (its worker process died); "
                                    "the other images were read")


def _qwen_records(files: list[str], options: OcrOptions, engine: QwenEngine) -> Iterator[OcrRecord]:
    """Files loaded a few batches at a time, so the backend can group similar sizes; a batch that
    fails is retried image by image, so only the image at fault gets an error record."""
    chunk = max(1, options.batch_size) * 4
    for start in range(0, len(files), chunk):
        loaded, records = [], {}
        for path in files[start : start + chunk]:
            try:
                loaded.append((path, load_image(path, max_pixels=options.max_image_pixels)))
            except ImageLoadError as error:
                records[path] = OcrRecord.failed(path, options.engine, error.reason)
        try:
            pages = engine.read([image for _, image in loaded])
        except Exception:
            pages = None
        for index, (path, image) in enumerate(loaded):
            answer = (lambda _, page=pages[index]: [page]) if pages is not None else engine.read
            records[path] = _page_record(path, options.engine, image, answer)
        yield from (records[path] for path in files[start : start + chunk])


def _progress_bar(total: int, enabled: bool | None):
    """A tqdm bar on stderr (rate and ETA); disabled when stderr is not a terminal, unless forced."""
    from tqdm import tqdm

    return tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True,
                disable=not (sys.stderr.isatty() if enabled is None else enabled))


def _start_engine(options: OcrOptions, todo: list[str]) -> Callable[[list[str]], Iterator[OcrRecord]]:
    """Build the engine up front, so a missing package or model fails before any record is written."""
    if options.engine != PPOCR:
        engine = QwenEngine(options.engine, mode=options.mode, batch_size=options.batch_size,
                            device=options.device, dtype=options.dtype, max_pixels=options.max_pixels)
        return lambda files: _qwen_records(files, options, engine)
    if _worker_count(options, todo) == 1:
        _start_worker(1 if options.workers else None)  # --workers 1 means one core
    else:
        PPOCREngine.check_available()  # the workers build their own engines
    return lambda files: _ppocr_records(files, options)


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


def _deliver(record: OcrRecord, sink, options: OcrOptions, root: str, summary: Summary) -> None:
    """Export the text (a failed export turns the record into an error record, text kept), write
    the record, count it, and say why it failed on stderr, one line."""
    if options.txt_dir is not None and record.error is None:
        try:
            export_text(options.txt_dir, record.path, record.text, root)
        except TextExportError as error:
            record = replace(record, error=f"{error}; the text is in this record, --resume --retry-failed writes it again")
    sink.write(record.to_dict())
    summary.done += 1
    if record.error is not None:
        summary.failed += 1
        if options.echo_failures:
            from tqdm import tqdm

            tqdm.write(f"failed: {escape_path(record.path)}: {record.error}", file=sys.stderr)


def run_ocr(paths: Iterable[str], out: str | Path, options: OcrOptions | None = None,
            inputs: Inputs | None = None) -> Summary:
    """Read every file behind `paths` into `out` (JSONL, one record per file; "-" for standard
    output). Nothing is written when the paths hold no input at all (`summary.no_inputs`). Raises
    OutputExistsError / OutputLockedError before any work when `out` holds results and neither
    resume nor overwrite is set, or another run writes it; EngineUnavailableError /
    WeightsNotFoundError when the engine cannot start."""
    options = options or OcrOptions()
    inputs = inputs or collect_inputs(list(paths), recursive=options.recursive)
    summary = Summary(not_images=len(inputs.not_images), subfolders=len(inputs.subfolders))
    if not inputs.files and not inputs.unmatched:
        summary.no_inputs = True
        return summary
    root = os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in inputs.files]) if inputs.files else "."
    started = time.perf_counter()
    with open_sink(out, resume=options.resume, overwrite=options.overwrite) as sink:
        todo = [path for path in inputs.files if not _done_before(input_key(absolute_name(path)), sink.done, options, summary)]
        # No engine (no model load) when there is nothing left to read.
        records = _start_engine(options, todo)(todo) if todo else (record for record in ())
        for pattern, reason in inputs.unmatched:
            if not _done_before(input_key(absolute_name(pattern)), sink.done, options, summary):
                _deliver(OcrRecord.failed(pattern, options.engine, reason), sink, options, root, summary)
        bar = _progress_bar(len(todo), options.progress)
        try:
            for record in records:
                _deliver(record, sink, options, root, summary)
                bar.update(1)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            bar.close()
            records.close()
    summary.seconds = time.perf_counter() - started
    return summary
