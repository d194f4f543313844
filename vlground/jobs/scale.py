"""Batch jobs on a Ray cluster: what `label --ray` still calls until it runs through `vlground.jobs`
(the executor is `vlground.jobs.ray_pool`, the inputs come from `vlground.io.sources`)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vlground.io.sources import STDIN, Source
from vlground.jobs.isolation import WorkerSetupError  # noqa: F401 - the label command reports it
from vlground.jobs.loop import Worker
from vlground.jobs.ray_pool import RayExecutor, RaySettings


@dataclass
class Inputs:
    """`items` in order: (location, None) to read, or (location, why it cannot be read); files left out
    of folders by suffix in `not_images`, folders not entered in `subfolders`."""

    items: list[tuple[str, str | None]] = field(default_factory=list)
    not_images: list[str] = field(default_factory=list)
    subfolders: list[str] = field(default_factory=list)


def expand_inputs(paths: list[str], recursive: bool = False, exclude: Iterable = (), output: Path | None = None) -> Inputs:
    """The inputs behind `paths` (`vlground.io.sources.expand`, the run's own outputs in `exclude`
    left out); stdin is refused in a batch; an `output` that is one of the inputs is
    OutputIsInputError."""
    from vlground.io.sources import expand

    found = expand(paths, recursive, exclude=exclude)
    if output is not None:
        found.check_output(output)
    inputs = Inputs(not_images=found.not_images, subfolders=found.subfolders)
    for source in found.items:
        error = source.error
        if error is None and source.location == STDIN:
            error = "stdin cannot be labelled in a batch; save the image to a file and name the file"
        inputs.items.append((source.location, error))
    return inputs


def load_input(item: str, max_pixels: int | None):
    """The image behind one input (a file, URL or pyarrow URI). Raises ImageLoadError."""
    from vlground.io.sources import load

    return load(Source(item), max_pixels=max_pixels)


def ray_records(items: list[str], worker: Worker, settings: RaySettings) -> Iterator[dict]:
    """The record of every input in `items`, each exactly once, in the order they finish."""
    return (record for _, record in RayExecutor(settings).run(worker, items))
