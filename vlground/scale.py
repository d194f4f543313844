"""Batch jobs on a Ray cluster (Ray Data): the inputs become a Ray Dataset, a worker object runs in a
pool of actors (one model replica each, or one single-threaded OCR engine), and the records stream
back to the caller, which writes them through its own sink. So `--resume`, the record schema and the
exit status are those of the single-process run; only where the work happens changes.

Every input comes back exactly once. A worker process that dies is restarted by Ray and its inputs
are retried (`RaySettings.retries` times); inputs still without a record then (a batch a dying worker took down)
are run again one per task, and one that kills its worker every time gets an error record. Outputs
of a failed try never reach the caller, so nothing is duplicated; a killed driver loses at most
the records not yet written, which `--resume` then redoes.

Inputs: local files, folders and globs, http(s) URLs (`vlground.sources`), and URIs of any
filesystem pyarrow reads (s3://bucket/dir, gs://..., hdfs://..., file:///abs/dir), listed here on
the driver and read by the workers. Ray is imported only when a job runs on it."""
from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from vlground.sink import escape_path
from vlground.sources import STDIN, Source, image_suffixes, is_url

LOCAL = "local"


class Worker(Protocol):
    """What runs in each actor: `setup()` once (load the model), then calls on lists of inputs that
    return one JSON-able record dict per input, in order; `failed` builds the error record of an
    input no worker could finish. It is pickled to the actors before `setup`, so keep it light."""

    def setup(self) -> None: ...

    def __call__(self, items: list[str]) -> list[dict]: ...

    def failed(self, item: str, reason: str) -> dict: ...


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide: `address` "local" (start a cluster on this machine's cores), "auto" (the
    cluster this machine belongs to), "ray://host:10001" or "host:6379"; `workers` actors, each
    with `cpus_per_worker` CPUs and `gpus_per_worker` GPUs (a fraction shares one GPU), handed
    `batch_size` inputs per call; `retries`: tries of a call after the first when its worker dies."""

    address: str = LOCAL
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_size: int = 1
    retries: int = 3

    def __post_init__(self) -> None:
        if self.workers < 1 or self.batch_size < 1 or self.gpus_per_worker < 0 or self.cpus_per_worker <= 0 or self.retries < 0:
            raise ValueError("workers and batch size must be at least 1, GPUs per worker and retries at least 0")


def is_pyarrow_uri(text: str) -> bool:
    """A URI for a pyarrow filesystem: a scheme other than http(s) (s3://, gs://, hdfs://, file://)."""
    head, sep, _ = text.partition("://")
    return bool(sep) and head.isidentifier() and not is_url(text)


@dataclass
class Inputs:
    """`items` in order: (location, None) to read, or (location, why it cannot be read); files left out
    of folders by suffix in `not_images`, folders not entered in `subfolders`."""

    items: list[tuple[str, str | None]] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    subfolders: list[str] = field(default_factory=list)


def expand_inputs(paths: list[str], recursive: bool = False) -> Inputs:
    """The inputs behind `paths`: pyarrow URIs listed here, the rest by `vlground.sources.expand`."""
    from vlground.sources import expand

    inputs = Inputs()
    for arg in paths:
        if is_pyarrow_uri(arg):
            _expand_uri(arg, recursive, inputs)
            continue
        found = expand([arg], recursive)
        for source in found.items:
            error = source.error
            if error is None and source.location == STDIN:
                error = "stdin cannot be labelled in a batch; save the image to a file and name the file"
            inputs.items.append((source.location, error))
        inputs.not_images += found.not_images
        inputs.subfolders += found.subfolders
    return inputs


def _expand_uri(uri: str, recursive: bool, into: Inputs) -> None:
    import pyarrow.fs as pafs

    scheme = uri.split("://", 1)[0]
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            entries = fs.get_file_info(pafs.FileSelector(path, recursive=recursive))
        elif info.type == pafs.FileType.File:
            entries = [info]
        else:
            into.items.append((uri, "no such file or folder"))
            return
    except (OSError, ValueError, ImportError) as error:  # unknown scheme, no credentials, unreachable
        into.items.append((uri, f"cannot list this through pyarrow ({error})"))
        return
    suffixes = image_suffixes()
    for entry in sorted(entries, key=lambda e: e.path):
        name = f"{scheme}://{entry.path}" if scheme != "file" else f"file://{entry.path}"
        if entry.type == pafs.FileType.Directory:
            if not recursive:
                into.subfolders.append(name)
        elif entry is info or os.path.splitext(entry.path)[1].lower() in suffixes:
            into.items.append((name, None))
        else:
            into.not_images.append(name)


def load_input(item: str, max_pixels: int | None):
    """The image behind one input (a file, URL or pyarrow URI), through `vlground.sources.load`, so
    every kind obeys the same orientation and decompression-bomb rules. Raises ImageLoadError."""
    from vlground.imageio import ImageLoadError
    from vlground.sources import load

    if not is_pyarrow_uri(item):
        return load(Source(item), max_pixels=max_pixels)
    import pyarrow.fs as pafs

    try:
        fs, path = pafs.FileSystem.from_uri(item)
        with fs.open_input_stream(path) as stream:
            data = stream.read()
    except (OSError, ValueError) as error:
        raise ImageLoadError(escape_path(item), f"cannot read it through pyarrow ({error})") from None
    return load(Source(item, data=data), max_pixels=max_pixels)


def connect(address: str) -> None:
    """Join the Ray cluster at `address`, or start one on this machine's cores for "local"; a
    process already connected (a notebook, the tests) keeps its cluster. Ray's own logging is kept
    to errors, its progress bars off: the job prints its own progress."""
    import ray

    if not ray.is_initialized():
        # Ray's C++ core logs warnings meant for its developers on stderr; RAY_BACKEND_LOG_LEVEL=info shows them
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
        if address == LOCAL:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


SETUP_FAILED = "a Ray worker could not start: "


class WorkerSetupError(RuntimeError):
    """A worker's `setup` failed (a model that cannot be loaded, a missing package): the job stops,
    as it would in one process, with the worker's own message."""


class _Actor:
    """One Ray actor around the class's `worker`: set up once, then called on batches of the dataset.
    Each job makes a subclass holding its worker (see `_actor_class`)."""

    worker: Worker

    def __init__(self) -> None:
        try:
            self.worker.setup()
        except Exception as error:  # noqa: BLE001 - reported on the driver in one line (see ray_records)
            raise WorkerSetupError(f"{SETUP_FAILED}{type(error).__name__}: {error}") from None

    def __call__(self, batch: dict) -> dict:
        items = [str(item) for item in batch["item"]]
        records = self.worker(items)
        # records travel as JSON text: their nested, varying shapes are not one Arrow schema
        return {"item": items, "record": [json.dumps(r, ensure_ascii=False) for r in records]}


def _actor_class(worker: Worker) -> type:
    """An actor class carrying `worker` in its class body, named after it (Ray's logs then say
    "MapBatches(Labeler)"): a restarted actor needs no constructor arguments kept in the object store."""
    return type(type(worker).__name__, (_Actor,), {"worker": worker, "__module__": __name__})


def _pass(items: list[str], worker: Worker, settings: RaySettings, batch_size: int) -> Iterator[tuple[str, dict]]:
    """(input, record) for the inputs of one pass, as they finish. A batch whose retries all died
    is left out (Ray counts it as an errored block), for the caller to see and redo."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.max_errored_blocks = len(items)
    batch_size = min(batch_size, math.ceil(len(items) / settings.workers))  # a block for every worker
    dataset = ray.data.from_items([{"item": item} for item in items], override_num_blocks=math.ceil(len(items) / batch_size))
    with warnings.catch_warnings():  # the retry limit has no named parameter in Ray 2.60 yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        dataset = dataset.map_batches(
            _actor_class(worker), batch_size=batch_size,
            # one task in flight per actor: a dying worker then takes down only its own batch
            compute=ray.data.ActorPoolStrategy(size=settings.workers, max_tasks_in_flight_per_actor=1),
            num_cpus=settings.cpus_per_worker, num_gpus=settings.gpus_per_worker or None,
            max_restarts=-1, max_task_retries=settings.retries,
        )
    for row in dataset.iter_rows():
        yield row["item"], json.loads(row["record"])


def ray_records(items: list[str], worker: Worker, settings: RaySettings) -> Iterator[dict]:
    """The record of every input in `items`, each exactly once, in the order they finish (see the
    module docstring for what happens when workers die)."""
    import ray.exceptions

    connect(settings.address)
    if settings.address == LOCAL:
        _check_fits(settings)
    try:
        yield from _every_item(items, worker, settings)
    except ray.exceptions.RayActorError as error:
        message = str(error)
        if SETUP_FAILED not in message:
            raise
        raise WorkerSetupError(message[message.rindex(SETUP_FAILED):].splitlines()[0]) from None


def _check_fits(settings: RaySettings) -> None:
    """On a cluster of this machine alone nothing can join later: an actor pool that does not fit
    would wait for ever, so say so now."""
    import ray

    have = ray.cluster_resources()
    if settings.gpus_per_worker > have.get("GPU", 0):
        raise ValueError(f"--gpus-per-worker {settings.gpus_per_worker:g}: this machine has {have.get('GPU', 0):g} GPUs for Ray; "
                         "use 0 here, or join a cluster with GPUs (--ray auto or ray://host:10001)")
    if settings.cpus_per_worker > have.get("CPU", 0):
        raise ValueError(f"a worker needs {settings.cpus_per_worker:g} CPUs; this machine has {have.get('CPU', 0):g} for Ray")


def _every_item(items: list[str], worker: Worker, settings: RaySettings) -> Iterator[dict]:
    seen: set[str] = set()
    for batch_size in dict.fromkeys((settings.batch_size, 1)):  # then one per task: only the culprit fails
        todo = [item for item in items if item not in seen]
        if not todo:
            return
        for item, record in _pass(todo, worker, settings, batch_size):
            if item not in seen:
                seen.add(item)
                yield record
    for item in items:
        if item not in seen:
            yield worker.failed(item, f"its worker process died on every one of {settings.retries + 1} tries; the other inputs were done")
