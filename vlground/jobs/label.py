"""The labelling job behind `vlground label`: every image gets one label record (the detect task's
boxes for the categories), written durably as soon as it is known, and at the end the dataset
(COCO or YOLO) is written from those records, whole or not at all.

The records (JSON lines, `vlground.core.records.Record`) are the record of truth: `--resume` reads
them to skip what is done, and the dataset is always rebuilt from all of them. For `--format jsonl`
they are the output itself; for coco and yolo they are OUT/records.jsonl beside the dataset. The
model runs in this process, or with `ray` in a Ray actor pool (`vlground.jobs.scale`); either way the
records come back here, through the same sink, so resume, schema and exit status are the same."""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vlground.core.families import DEFAULT_MODEL
from vlground.core.options import GenerationOptions, LoadOptions
from vlground.core.records import Record, read_records, record_key, with_abspath
from vlground.datasets import COCO_FILE, FORMATS, YOLO_YAML, DatasetStats, write_coco, write_yolo, yolo_names
from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS, ImageLoadError
from vlground.io.sink import JsonlSink, escape_path
from vlground.jobs.progress import Summary
from vlground.jobs.progress import progress_bar

RECORDS = "records.jsonl"


@dataclass(frozen=True)
class LabelOptions:
    """What `vlground label` can be told. `categories`: what to find (at least one); `format`: one of
    FORMATS; `model`: hub id, folder or server URL (default $VLGROUND_MODEL, else the default
    model), loaded with `load` and asked with `generation` (its batch_size: images per forward
    pass); `ray`: a Ray address ("local", "auto", "ray://host:port") to run on a cluster with
    `workers` model replicas of `gpus_per_worker` GPUs each."""

    categories: tuple[str, ...]
    format: str = "jsonl"
    model: str | None = None
    load: LoadOptions = field(default_factory=LoadOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    recursive: bool = False
    resume: bool = False
    overwrite: bool = False
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    progress: bool | None = None
    ray: str | None = None
    workers: int = 1
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if not self.categories or not all(c.strip() for c in self.categories):
            raise ValueError("give at least one category to find (--category car), none of them empty")
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; formats: {', '.join(FORMATS)}")
        if self.workers < 1 or self.gpus_per_worker < 0:
            raise ValueError("workers must be at least 1, GPUs per worker at least 0")


@dataclass
class LabelSummary(Summary):
    """The run (see `vlground.jobs.progress.Summary`) and what went into the dataset."""

    dataset: DatasetStats | None = None
    written: list[str] = field(default_factory=list)

    def describe(self) -> str:
        text = super().describe()
        if self.dataset is not None:
            text += f"\ndataset: {self.dataset.describe()}; written: {', '.join(self.written)}"
        return text


def records_path(out: str | Path, fmt: str) -> Path:
    """Where the records go: OUT itself for jsonl, OUT/records.jsonl for a dataset folder."""
    return Path(out) if fmt == "jsonl" else Path(out) / RECORDS


class Labeler:
    """The model side of the job, built where it runs: `setup` loads the model once (in this process
    or in a Ray actor), a call labels a list of inputs, one record dict each, in order. An image that
    cannot be read, or that the model fails on, gets an error record; the others are labelled."""

    def __init__(self, options: LabelOptions) -> None:
        self.options = options
        self.model = None

    @property
    def name(self) -> str:
        return self.options.model or os.environ.get("VLGROUND_MODEL") or DEFAULT_MODEL

    def setup(self) -> None:
        from vlground.tasks import load_model

        self.model = load_model(self.options.model, self.options.load)

    def failed(self, item: str, reason: str) -> dict:
        return Record.failed(escape_path(item), reason, model=self.name).to_dict()

    def __call__(self, items: list[str]) -> list[dict]:
        from vlground.jobs.scale import load_input

        loaded, records = [], {}
        for item in items:
            try:
                loaded.append((item, load_input(item, self.options.max_image_pixels)))
            except ImageLoadError as error:
                records[item] = self.failed(item, error.reason)
        try:
            results = self._detect([image for _, image in loaded])
        except Exception:  # noqa: BLE001 - retried one by one below, so only the image at fault fails
            results = None
        for index, (item, image) in enumerate(loaded):
            try:
                result = results[index] if results is not None else self._detect([image])[0]
            except Exception as error:  # noqa: BLE001 - one bad image must not end the batch
                records[item] = self.failed(item, f"the model failed on this image: {type(error).__name__}: {error}")
            else:
                records[item] = Record.from_result(escape_path(item), result, model=self.name).to_dict()
        return [records[item] for item in items]

    def _detect(self, images: list) -> list:
        if not images:
            return []
        return self.model.detect(images, list(self.options.categories), self.options.generation)


def _local_records(labeler: Labeler, items: list[str]) -> Iterator[dict]:
    labeler.setup()
    chunk = labeler.options.generation.batch_size * 4  # a few batches at a time, so similar sizes batch together
    for start in range(0, len(items), chunk):
        yield from labeler(items[start : start + chunk])


def _records(labeler: Labeler, items: list[str]) -> Iterator[dict]:
    if labeler.options.ray is None:
        return _local_records(labeler, items)
    from vlground.jobs.scale import RaySettings, ray_records

    o = labeler.options
    settings = RaySettings(o.ray, workers=o.workers, gpus_per_worker=o.gpus_per_worker, batch_size=o.generation.batch_size)
    return ray_records(items, labeler, settings)


def _write_dataset(out: Path, options: LabelOptions, summary: LabelSummary) -> None:
    # by path, so a dataset does not depend on the order workers finished in
    records = sorted(read_records(records_path(out, options.format)), key=lambda r: r.path)
    if options.format == "coco":
        summary.dataset = write_coco(records, out / COCO_FILE, options.categories)
        summary.written = [str(out / COCO_FILE)]
    else:
        summary.dataset = write_yolo(records, out, options.categories)
        summary.written = [str(out / "data.yaml"), str(out / "labels"), str(out / "images")]


def run_label(paths: Iterable[str], out: str | Path, options: LabelOptions) -> LabelSummary:
    """Label every image behind `paths` into `out` (see the module docstring); the dataset is written
    at the end unless the run was interrupted. Raises OutputExistsError / OutputLockedError before
    any work when `out` holds results of another run (without resume or overwrite)."""
    from vlground.jobs.scale import expand_inputs

    out = Path(out)
    records = records_path(out, options.format)
    own = [records, f"{records}.lock"] + ([] if options.format == "jsonl" else
                                          [out / COCO_FILE, out / YOLO_YAML, out / "images", out / "labels"])
    inputs = expand_inputs(list(paths), options.recursive, exclude=own, output=records)
    summary = LabelSummary(not_images=len(inputs.not_images), subfolders=len(inputs.subfolders))
    labeler = Labeler(options)
    started = time.perf_counter()
    with JsonlSink(records_path(out, options.format), record_key, resume=options.resume, overwrite=options.overwrite) as sink:
        if options.format == "yolo":  # names that would collide are refused now, not after labelling everything
            yolo_names(sorted({escape_path(item) for item, error in inputs.items if error is None}
                              | {r["path"] for r in sink.done.values() if r.get("error") is None}))
        todo = []
        for item, error in inputs.items:
            earlier = sink.done.get(record_key({"path": escape_path(item)}))
            if earlier is not None:
                summary.skipped += 1
                summary.skipped_failed += earlier.get("error") is not None
            elif error is not None:
                sink.write(with_abspath(labeler.failed(item, error)))
                summary.done += 1
                summary.failed += 1
            else:
                todo.append(item)
        _drain(_records(labeler, todo) if todo else iter(()), sink, summary, len(todo), options.progress)
    summary.seconds = time.perf_counter() - started
    if options.format != "jsonl" and not summary.interrupted:
        _write_dataset(out, options, summary)
    return summary


def _drain(records: Iterator[dict], sink: JsonlSink, summary: LabelSummary, total: int, progress: bool | None) -> None:
    bar = progress_bar(total, progress)
    try:
        for record in records:
            record = with_abspath(record)
            if record_key(record) in sink.done:
                continue  # an input answered twice (a retried worker) is written once
            sink.write(record)
            summary.done += 1
            summary.failed += record.get("error") is not None
            bar.update(1)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        close = getattr(records, "close", None)
        if close is not None:
            close()
