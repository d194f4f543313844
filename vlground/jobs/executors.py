"""Where a job's work runs, behind one interface (`run(worker, items)` -> (index, record) for every
item exactly once, as they finish): `InProcess`, `Processes` (a pool of worker processes, each with
its own worker set up once) and Ray (`vlground.jobs.ray_pool.RayExecutor`, a pool of actors).

All of them obey one crash-isolation rule, `vlground.jobs.isolation.isolated`."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from vlground.io.sink import pid_alive
from vlground.jobs.isolation import Outcome, WorkerSetupError, failure, isolated
from vlground.jobs.loop import Executor, Record, RunOptions, Worker

def model_call_size(generation) -> int:
    """Items per worker call of a job on a local model (`generation`: its GenerationOptions): one
    batch, or four with refill or a token budget, so rows whose answers ended have requests to take
    and the budget has sizes to group."""
    scheduled = generation.refill or generation.token_budget is not None
    return generation.batch_size * (4 if scheduled else 1)


def batches(indices: list[int], size: int) -> list[list[int]]:
    return [indices[start : start + size] for start in range(0, len(indices), size)]


@dataclass
class InProcess:
    """The worker in this process, set up once, called on `batch_size` items at a time."""

    batch_size: int = 1

    def run(self, worker: Worker, items: list) -> Iterator[Outcome]:
        worker.setup()

        def run_pass(indices: list[int], size: int, alone: bool, reasons: dict[int, str]) -> Iterator[Outcome]:
            for batch in batches(indices, size):
                try:
                    records = worker([items[i] for i in batch])
                except Exception as error:  # noqa: BLE001 - the batch is run again item by item (isolated)
                    reasons.update(dict.fromkeys(batch, failure(error)))
                    continue
                yield from zip(batch, records, strict=True)

        return isolated(items, worker, run_pass, self.batch_size, crashes_spread=False)


# The worker of a worker process, set up once by `_start`, or why its setup failed.
_process_worker: Worker | None = None
_setup_error: str | None = None


def _start(worker: Worker, main_pid: int) -> None:
    global _process_worker, _setup_error
    _die_with_parent(main_pid)
    try:
        worker.setup()
    except Exception as error:  # noqa: BLE001 - raised on the driver by the first call (see _call)
        _setup_error = failure(error)
    _process_worker = worker


def _call(items: list) -> list[Record]:
    if _setup_error is not None:
        raise WorkerSetupError(f"a worker process could not start: {_setup_error}")
    return _process_worker(items)


def _die_with_parent(main_pid: int) -> None:
    """Make this worker process exit when the run that started it dies, however it dies (kill -9
    included). Its parent is the fork server, which would exit with the main process, but every
    worker holds the fork server's keep-alive pipe, so neither ever would: a thread in each worker
    watches the main process instead (every 0.2 s) and ends the worker once it is gone."""
    if not pid_alive(main_pid):
        os._exit(1)
    threading.Thread(target=_watch, args=(main_pid,), daemon=True, name="parent-watch").start()


def _watch(main_pid: int) -> None:
    while pid_alive(main_pid):
        time.sleep(0.2)
    os._exit(1)


@dataclass
class Processes:
    """`workers` processes, each with its own copy of the worker set up once, one batch of
    `batch_size` items in flight each. A process that dies (a crash inside a native library, the
    out-of-memory killer) breaks the pool: the batches in flight are then run again alone (see
    `isolated`) and a new pool takes the rest."""

    workers: int
    batch_size: int = 1

    def run(self, worker: Worker, items: list) -> Iterator[Outcome]:
        context = _context(worker)

        def run_pass(indices: list[int], size: int, alone: bool, reasons: dict[int, str]) -> Iterator[Outcome]:
            queue = deque(batches(indices, size))
            while queue:
                yield from _pool_pass(queue, 1 if alone else self.workers, context, worker, items, reasons)

        return isolated(items, worker, run_pass, self.batch_size, crashes_spread=self.workers > 1)


def _context(worker: Worker):
    """Never plain fork: threads of this process (onnxruntime's, torch's) would deadlock the copies.
    A fork server starts clean, imports the worker's modules once (its `preload`, when it names
    some) and forks the workers from that."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, type(worker).__module__, *getattr(worker, "preload", ())])
    return context


def _pool_pass(queue: deque, workers: int, context, worker: Worker, items: list,
               reasons: dict[int, str]) -> Generator[Outcome, None, None]:
    """Records of the batches in `queue` (taken from the left) run by a new pool of `workers`
    processes. A dead process breaks the pool: the pass then ends, its batches in flight left out
    with their reason; the rest stay in `queue` for the next pool."""
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start, initargs=(worker, os.getpid()))
    running: dict = {}
    try:
        while queue or running:
            while queue and len(running) < workers:
                batch = queue.popleft()
                running[pool.submit(_call, [items[i] for i in batch])] = batch
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in done:
                batch = running.pop(future)
                try:
                    yield from zip(batch, future.result(), strict=True)
                except BrokenProcessPool:
                    broken = True
                    reasons.update(dict.fromkeys(batch, "its worker process died"))
                except WorkerSetupError:
                    raise
                except Exception as error:  # noqa: BLE001 - run again item by item (isolated)
                    reasons.update(dict.fromkeys(batch, failure(error)))
            if broken:
                for batch in running.values():
                    reasons.update(dict.fromkeys(batch, "its worker process died"))
                return
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def executor_for(run: RunOptions, batch_size: int = 1) -> Executor:
    """The executor the shared flags in `run` ask for: `--ray ADDRESS` (`workers` actors of
    `gpus_per_worker` GPUs each), else `--workers N` processes (N > 1), else this process.
    `batch_size`: items per worker call."""
    workers = run.workers or 1
    if run.ray is not None:
        from vlground.jobs.ray_pool import RayExecutor, RaySettings

        return RayExecutor(RaySettings(run.ray, workers=workers, batch_size=batch_size, gpus_per_worker=run.gpus_per_worker))
    if workers > 1:
        return Processes(workers, batch_size)
    return InProcess(batch_size)
