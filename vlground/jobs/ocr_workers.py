"""Reading inputs into records: one page (or image) in, one record out, and the pool of worker
processes that does it for the built-in engine.

The embedded engine runs in `workers` processes, each building its engine once and running it on
one thread, so N workers use N cores (processes scale better than onnxruntime's own threads, which
give about 1.5x on 2 cores). A worker that crashes (a segfault inside the engine) costs only the
input that caused it; a worker whose run dies (kill -9 included) exits too."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from PIL import Image

from vlground.core.records import Record
from vlground.io.documents import PageJob, load_page
from vlground.io.images import ImageLoadError
from vlground.io.sink import pid_alive
from vlground.ocr.engine import PageText
from vlground.ocr.ppocr import BUILT_IN_ENGINES, BuiltInEngine, EngineSpec

Job = tuple[PageJob, "int | None"]  # (the input, the decompression-bomb limit)
Reader = Callable[[list], list[PageText]]


def failed_record(job: PageJob, engine: str, error: str) -> Record:
    return Record(path=job.source.location, engine=engine, error=error, page=job.page, pages=job.pages, dpi=job.dpi)


def page_record(job: PageJob, engine: str, image: Image.Image, read: Reader) -> Record:
    """The engine's reading of `image` (the input `job`), or an error record when it fails."""
    try:
        page = read([image])[0]
    except Exception as error:  # one bad image must not end the batch
        return failed_record(job, engine, f"the OCR engine failed on this image: {type(error).__name__}: {error}")
    return Record(path=job.source.location, engine=engine, width=image.width, height=image.height, text=page.text,
                  detections=page.lines, page=job.page, pages=job.pages, dpi=job.dpi, rotation=page.rotation,
                  warnings=page.warnings, reasoning=page.reasoning)


def read_job(job: PageJob, engine: str, max_image_pixels: int | None, read: Reader) -> Record:
    try:
        image = load_page(job, max_pixels=max_image_pixels)
    except ImageLoadError as error:
        return failed_record(job, engine, error.reason)
    return page_record(job, engine, image, read)


# The engine of a worker process, built once by start_worker.
_worker_engine: BuiltInEngine | None = None


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


def start_worker(engine: EngineSpec, threads: int | None, main_pid: int | None = None) -> None:
    """Build this process's built-in engine (`threads` None: all cores); `main_pid`: the run to die with."""
    global _worker_engine
    if main_pid is not None:
        _die_with_parent(main_pid)
    _worker_engine = engine.build(threads)


def worker_read(job: Job) -> Record:
    page, max_image_pixels = job
    return read_job(page, _worker_engine.name, max_image_pixels, _worker_engine.read)


def ppocr_records(jobs: list[PageJob], workers: int, max_image_pixels: int | None, engine: EngineSpec = EngineSpec(),
                  read: Callable[[Job], Record] = worker_read) -> Iterator[Record]:
    """Records of `jobs` as they finish, read with the built-in `engine` by `workers` processes (1:
    in this process, whose engine `start_worker` built)."""
    queue = deque((job, max_image_pixels) for job in jobs)
    if workers == 1:
        yield from map(read, queue)
        return
    # Never plain fork: onnxruntime's threads in this process (an earlier engine) would deadlock the
    # copies. A fork server starts clean, imports this module and rapidocr once, and forks workers
    # from that (a missing or broken rapidocr stopped the run before).
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__, *BUILT_IN_ENGINES[engine.name].modules])
    else:
        context = multiprocessing.get_context("spawn")
    while queue:
        crashed = yield from _pool_pass(queue, workers, context, engine, read)
        for job in crashed:  # each alone: only the image that kills the engine gets an error record
            yield _alone(job, context, engine, read)


def _pool(workers: int, context, engine: EngineSpec) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=context, initializer=start_worker, initargs=(engine, 1, os.getpid()))


def _pool_pass(jobs: deque, workers: int, context, engine: EngineSpec,
               read: Callable[[Job], Record]) -> Generator[Record, None, list[Job]]:
    """Records of `jobs` (taken from the left) read by `workers` processes, one job each in flight.
    A worker that dies (a crash inside the engine) breaks the pool: the pass then ends and returns
    the jobs that were in flight, since any of them may be the cause; the rest stay in `jobs`."""
    with _pool(workers, context, engine) as pool:
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


def _alone(job: Job, context, engine: EngineSpec, read: Callable[[Job], Record]) -> Record:
    with _pool(1, context, engine) as pool:
        try:
            return pool.submit(read, job).result()
        except BrokenProcessPool:
            return failed_record(job[0], engine.name, "the OCR engine crashed on this image (its worker process died); "
                                 "the other images were read")
