"""The Ray executor, and everything of vlground that touches Ray Core and Ray Data (Ray Data LLM aside:
`vlground.jobs.llm_steps`). The items become a Ray Dataset, the job's worker runs in a pool of actors
(one model replica or one single-threaded OCR engine each), and the records stream back to the
driver, which writes them through its own sink: `--resume`, the record schema and the exit status
are those of a run in one process; only where the work happens changes.

Every item comes back exactly once, by the rule of `vlground.jobs.isolation.isolated`: an actor that
dies is restarted by Ray and its batch retried (`RaySettings.retries` times); items still without a
record then (a batch a dying actor took down) run again one per task, and one that kills its actor
every time gets the worker's error record. Outputs of a failed try never reach the driver, so nothing
is duplicated; a killed driver loses at most the records not yet written, which `--resume` redoes.
Ray is imported only when a job runs on it."""
from __future__ import annotations

import base64
import ipaddress
import json
import logging
import math
import os
import pickle
import socket
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from vlground.extras import require
from vlground.jobs.isolation import Outcome, WorkerSetupError, failure, isolated
from vlground.jobs.loop import Worker

LOCAL = "local"
SETUP_FAILED = "a Ray worker could not start: "


@dataclass(frozen=True)
class RaySettings:
    """Where and how wide: `address` "local" (start a cluster on this machine's cores), "auto" (the
    cluster this machine belongs to), "ray://host:10001" or "host:6379"; `workers` actors, each
    with `cpus_per_worker` CPUs and `gpus_per_worker` GPUs (a fraction shares one GPU), handed
    `batch_size` inputs per call; `retries`: tries of a call after the first when its actor dies."""

    address: str = LOCAL
    workers: int = 1
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    batch_size: int = 1
    retries: int = 3

    def __post_init__(self) -> None:
        if self.workers < 1 or self.batch_size < 1 or self.gpus_per_worker < 0 or self.cpus_per_worker <= 0 or self.retries < 0:
            raise ValueError("workers and batch size must be at least 1, GPUs per worker and retries at least 0")


class RayUnreachableError(ConnectionError):
    """Nothing answers at the `--ray` address; the message names it and what to check."""


def check_address(address: str, timeout: float = 5.0) -> None:
    """Refuse, in one line and before any work, a `--ray` that cannot work: Ray not installed
    (MissingExtraError with the pip command), or a host:port (ray://host:port) where nothing accepts
    a connection within `timeout` s (RayUnreachableError); Ray itself would retry for minutes,
    logging every try. "local" and "auto" are Ray's to resolve."""
    require("ray", "--ray")
    if address in (LOCAL, "auto"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise RayUnreachableError(f"--ray {address}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise RayUnreachableError(f"--ray {address}: no Ray cluster answers there ({error.strerror or error}); start one "
                                  "with `ray start --head` or check the address and port") from None


@contextmanager
def _start_up_lines_hidden() -> Iterator[None]:
    """Ray's C++ core writes start-up lines to file descriptor 2 while it connects (logging.cc's
    "Set ray log level ..."), past Python's logging: that descriptor points at /dev/null meanwhile,
    unless VLGROUND_VERBOSE=1 (`--verbose`). Failures still arrive as Python exceptions."""
    if os.environ.get("VLGROUND_VERBOSE") == "1":
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _on_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rpartition(":")[0].strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def connect(address: str, cpus: int | None = None) -> None:
    """Join the Ray cluster at `address`, or start one on `cpus` (default: all) of this machine's
    cores for "local"; a process already connected (a notebook, the tests) keeps its cluster. Ray's
    own logging is kept to errors, its progress bars off: the job prints its own progress.

    A cluster started here listens on 127.0.0.1 only, in Ray's single-machine mode, not on the
    machine's network address; a driver joining a cluster at 127.0.0.1 takes the same mode, or Ray
    would look for that cluster at the machine's network address. The mode is read when ray is
    imported (set in the environment, it reaches Ray's workers too); one set already is kept."""
    require("ray", "--ray")
    if "ray" not in sys.modules and (address == LOCAL or _on_loopback(address)):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if not ray.is_initialized():
        check_address(address)
        # Ray's C++ core logs warnings meant for its developers on stderr; RAY_BACKEND_LOG_LEVEL=info shows them
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
        with _start_up_lines_hidden():
            if address == LOCAL:
                ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, **quiet)
            else:
                ray.init(address=address, **quiet)
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)


def _pack(value: Any) -> str:
    """An item as the text a Ray Dataset row carries (between the processes of one job only)."""
    return base64.b64encode(pickle.dumps(value)).decode("ascii")


def _unpack(text: str) -> Any:
    return pickle.loads(base64.b64decode(text))


class _Actor:
    """One Ray actor around the class's `worker`: set up once, then called on batches of the dataset.
    Each job makes a subclass holding its worker (see `_actor_class`)."""

    worker: Worker

    def __init__(self) -> None:
        try:
            self.worker.setup()
        except Exception as error:  # noqa: BLE001 - reported on the driver in one line (see RayExecutor.run)
            raise WorkerSetupError(f"{SETUP_FAILED}{failure(error)}") from None

    def __call__(self, batch: dict) -> dict:
        records = self.worker([_unpack(item) for item in batch["item"]])
        # records travel as JSON text: their nested, varying shapes are not one Arrow schema
        return {"index": list(batch["index"]), "record": [json.dumps(r, ensure_ascii=False) for r in records]}


def _actor_class(worker: Worker) -> type:
    """An actor class carrying `worker` in its class body, named after it (Ray's logs then say
    "MapBatches(LabelWorker)"): a restarted actor needs no constructor arguments kept in the object store."""
    return type(type(worker).__name__, (_Actor,), {"worker": worker, "__module__": __name__})


@dataclass
class RayExecutor:
    """The job's worker in `settings.workers` Ray actors (see the module docstring)."""

    settings: RaySettings

    def run(self, worker: Worker, items: list) -> Iterator[Outcome]:
        require("ray", "--ray")
        import ray.exceptions

        connect(self.settings.address)
        if self.settings.address == LOCAL:
            _check_fits(self.settings)
        packed = [_pack(item) for item in items]
        reason = f"its worker process died on every one of {self.settings.retries + 1} tries; the other inputs were done"

        def run_pass(indices: list[int], size: int, alone: bool, reasons: dict[int, str]) -> Iterator[Outcome]:
            reasons.update(dict.fromkeys(indices, reason))
            yield from _pass(indices, packed, worker, self.settings, size)

        try:
            # one task in flight per actor: a dying actor takes down only its own batch, but a node that
            # dies takes every batch on it (their retries fail at once while the cluster still counts
            # the node alive): what is left runs again, one item per actor, on the nodes still there
            yield from isolated(items, worker, run_pass, self.settings.batch_size, crashes_spread=True)
        except ray.exceptions.RayActorError as error:
            message = str(error)
            if SETUP_FAILED not in message:
                raise
            raise WorkerSetupError(message[message.rindex(SETUP_FAILED):].splitlines()[0]) from None


def _pass(indices: list[int], packed: list[str], worker: Worker, settings: RaySettings, batch_size: int) -> Iterator[Outcome]:
    """(index, record) for the items of one pass, as they finish. A batch whose retries all died is
    left out (Ray counts it as an errored block), for the next pass to redo."""
    import ray.data

    context = ray.data.DataContext.get_current()
    context.max_errored_blocks = len(indices)
    batch_size = min(batch_size, math.ceil(len(indices) / settings.workers))  # a block for every actor
    rows = [{"index": i, "item": packed[i]} for i in indices]
    dataset = ray.data.from_items(rows, override_num_blocks=math.ceil(len(indices) / batch_size))
    with warnings.catch_warnings():  # the retry limit has no named parameter in Ray 2.60 yet
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        dataset = dataset.map_batches(
            _actor_class(worker), batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=settings.workers, max_tasks_in_flight_per_actor=1),
            num_cpus=settings.cpus_per_worker, num_gpus=settings.gpus_per_worker or None,
            max_restarts=-1, max_task_retries=settings.retries,
        )
    for row in dataset.iter_rows():
        yield int(row["index"]), json.loads(row["record"])


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
