"""The job loop: every task not yet in the output is handed to the executor, each record that comes
back is written to the sink the moment it arrives, with a progress bar, and Ctrl-C ends the run
keeping every record written (the summary says `interrupted`; `--resume` finishes it).

A task is one input (an image, a page of a document, a benchmark sample) with its resume key, the
key the sink files its record under. A task whose key the output already holds is skipped (counted
in the summary), unless its record is an error and `retry_failed` is set: then it is run again and
its new record supersedes the old one."""
from __future__ import annotations

import time
from itertools import chain
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from vlground.jobs.progress import Summary, progress_bar

Record = dict[str, Any]


class Worker(Protocol):
    """What a job does, built where it runs (this process, a worker process, a Ray actor): `setup()`
    once there (load the model or engine), then calls on lists of items returning one JSON-able record
    per item, in order; an item it cannot read or answer gets an error record, so a call raises only
    when something is wrong beyond one item. `failed` builds the error record of an item that no
    worker could finish (see `vlground.jobs.isolation.isolated`). A worker is pickled to the
    processes and actors before `setup`: keep it light until then."""

    def setup(self) -> None: ...

    def __call__(self, items: list) -> list[Record]: ...

    def failed(self, item: Any, reason: str) -> Record: ...


class Executor(Protocol):
    """Where the work runs (`vlground.jobs.executors`): `run` sets `worker` up where it runs and yields
    (index into `items`, record) for every item exactly once, in the order they finish."""

    def run(self, worker: Worker, items: list) -> Iterator[tuple[int, Record]]: ...


@dataclass(frozen=True)
class RunOptions:
    """The flags every batch command shares (declared once in `vlground.cli.flags`): `resume` skips
    the inputs the output holds, `retry_failed` (with resume) runs again those it holds as errors,
    `overwrite` empties it first; `progress` the bar on stderr (None: when it is a terminal); `quiet`
    shows neither the bar nor the command's summary; `ray` a Ray address ("local", "auto",
    "ray://host:10001") to run on `workers` actors of `gpus_per_worker` GPUs each; without `ray`,
    `workers` > 1 runs that many worker processes (None: the job's own default)."""

    resume: bool = False
    retry_failed: bool = False
    overwrite: bool = False
    progress: bool | None = None
    quiet: bool = False
    ray: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.quiet:
            object.__setattr__(self, "progress", False)
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other: --resume keeps OUT's records, --overwrite drops them")
        if self.retry_failed and not self.resume:
            raise ValueError("--retry-failed works with --resume (it runs again the inputs OUT holds as errors)")
        if self.workers is not None and self.workers < 1:
            raise ValueError("--workers must be at least 1")
        if self.gpus_per_worker < 0:
            raise ValueError(f"--gpus-per-worker must be 0 or more; got {self.gpus_per_worker:g}")
        if self.gpus_per_worker and self.ray is None:
            raise ValueError("--gpus-per-worker applies with --ray; without it the model runs on this machine")


@dataclass(frozen=True)
class Task:
    """One input of a job: `key`, its identity in the output (the sink's key of its record); `item`,
    what the worker is given; or `record`, its record known already (a document that cannot be
    opened), written without a worker."""

    key: str
    item: Any = None
    record: Record | None = None


def pending(tasks: Iterable[Task], done: dict[str, Record], retry_failed: bool, summary: Summary) -> list[Task]:
    """The tasks whose key `done` (the output's records) does not hold; with `retry_failed`, those it
    holds as errors too. The others are counted in `summary` as skipped."""
    todo = []
    for task in tasks:
        earlier = done.get(task.key)
        failed = earlier is not None and earlier.get("error") is not None
        if earlier is None or (failed and retry_failed):
            todo.append(task)
        else:
            summary.skipped += 1
            summary.skipped_failed += failed
    return todo


def run_tasks(tasks: Iterable[Task], worker: Worker, executor: Executor, sink, *, retry_failed: bool = False,
              progress: bool | None = None, summary: Summary | None = None,
              write: Callable[[Record], Record] | None = None,
              report: Callable[[Record, Any], None] = lambda record, bar: None, unit: str = "img") -> Summary:
    """Run every task the output does not hold yet (see the module docstring) and return the summary.

    `sink`: a `vlground.io.sink` sink (`done`, `write`), or None (records only reported). `write(record)` writes one record and returns
    it as written (default: `sink.write`); a job that draws or exports per record does it there.
    `report(record, bar)` runs after each record is written (console lines; `bar` is the tqdm bar,
    so lines go through `bar.write`). `progress`: the bar on stderr (None: when stderr is a
    terminal). The worker is set up only when there is something to run. Records known already
    (`Task.record`) are written first."""
    summary = summary if summary is not None else Summary()
    write = write or _plain_write(sink)
    todo = pending(tasks, sink.done if sink is not None else {}, retry_failed, summary)
    if not todo:
        return summary
    started = time.perf_counter()
    known = [(task, task.record) for task in todo if task.record is not None]
    work = [task for task in todo if task.record is None]
    records = executor.run(worker, [task.item for task in work]) if work else iter(())
    written: set[str] = set()  # an input answered twice (a worker retried after a crash) is written once
    bar = progress_bar(len(todo), progress, unit=unit)
    try:
        for task, record in chain(known, ((work[index], record) for index, record in records)):
            if task.key in written:
                continue
            written.add(task.key)
            record = write(record)
            summary.done += 1
            summary.failed += record.get("error") is not None
            report(record, bar)
            bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        close = getattr(records, "close", None)
        if close is not None:
            close()  # stops the executor's processes or Ray job
    summary.seconds = time.perf_counter() - started
    return summary


def _plain_write(sink) -> Callable[[Record], Record]:
    def write(record: Record) -> Record:
        if sink is not None:
            sink.write(record)
        return record

    return write
