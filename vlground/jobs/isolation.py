"""The one crash-isolation rule of every executor (`vlground.jobs.executors`, `vlground.jobs.ray_pool`):
items go to the worker `batch_size` at a time; a batch that fails (the worker raised, or its process
died and took the batch with it) is run again one item at a time, alone, so only the item at fault
fails; an item that fails alone gets the worker's error record (`Worker.failed`) and the others go
on. A worker whose `setup` fails (a model that cannot load, a package missing) stops the job with
`WorkerSetupError`, as it would in one process."""
from __future__ import annotations

from collections.abc import Callable, Iterator

from vlground.jobs.loop import Record, Worker

Outcome = tuple[int, Record]
# run_pass(indices, batch_size, alone, reasons): (index, record) of the items whose batch succeeded; a
# failed batch's items are left out, with why in `reasons`
Pass = Callable[[list[int], int, bool, dict[int, str]], Iterator[Outcome]]


class WorkerSetupError(RuntimeError):
    """A worker's `setup` failed where it runs: the job stops, with the worker's own message."""


def isolated(items: list, worker: Worker, run_pass: Pass, batch_size: int, crashes_spread: bool) -> Iterator[Outcome]:
    """The crash-isolation rule of the module docstring, for an executor whose `run_pass` runs a list
    of item indices in batches. The second pass runs items one at a time (`alone`: with nothing
    else in flight that a crash could take down); it is needed unless the first was already that
    (batches of one, and a crash never takes a neighbour: `crashes_spread` False)."""
    reasons: dict[int, str] = {}
    seen: set[int] = set()
    passes = [(batch_size, False)] + ([(1, True)] if batch_size > 1 or crashes_spread else [])
    for size, alone in passes:
        todo = [i for i in range(len(items)) if i not in seen]
        if not todo:
            return
        for index, record in run_pass(todo, size, alone, reasons):
            if index not in seen:
                seen.add(index)
                yield index, record
    for index in range(len(items)):
        if index not in seen:
            yield index, worker.failed(items[index], reasons.get(index, "its worker failed on it"))


def failure(error: BaseException) -> str:
    """How an exception a worker raised reads in an error record."""
    return f"{type(error).__name__}: {error}"
