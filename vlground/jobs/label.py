"""The labelling job behind `vlground label`: the detect job (`vlground.jobs.detect`, every category
in one prompt) writing one label record per image, durably as soon as it is known, and at the end
the dataset (COCO or YOLO) written from those records, whole or not at all.

The records (JSON lines, `vlground.core.records.Record`) are the record of truth: `--resume` reads
them to skip what is done, and the dataset is always rebuilt from all of them. For `--format jsonl`
they are the output itself; for coco and yolo they are OUT/records.jsonl beside the dataset."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from vlground.core.records import read_records, record_key
from vlground.datasets import COCO_FILE, FORMATS, YOLO_YAML, DatasetStats, yolo_names
from vlground.io.images import DEFAULT_MAX_IMAGE_PIXELS
from vlground.jobs.detect import DetectJob, DetectWorker, run_detect
from vlground.jobs.loop import RunOptions
from vlground.core.options import GenerationOptions, LoadOptions
from vlground.jobs.progress import Summary
from vlground.jobs.writers import get_writer
from vlground.io.sink import JsonlSink
from vlground.io.sources import STDIN, Source, expand

RECORDS = "records.jsonl"


@dataclass(frozen=True)
class LabelOptions:
    """What `vlground label` can be told. `categories`: what to find (at least one); `format`: one of
    FORMATS; `model`: hub id, folder or server URL (default $VLGROUND_MODEL, else the default
    model), loaded with `load` and asked with `generation` (its batch_size: images per forward
    pass); `run`: the shared batch options (resume, executor: in process, processes or Ray)."""

    categories: tuple[str, ...]
    format: str = "jsonl"
    model: str | None = None
    load: LoadOptions = field(default_factory=LoadOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    recursive: bool = False
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    run: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        if not self.categories or not all(c.strip() for c in self.categories):
            raise ValueError("give at least one category to find (--category car), none of them empty")
        if self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; formats: {', '.join(FORMATS)}")


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


def _write_dataset(out: Path, options: LabelOptions, summary: LabelSummary) -> None:
    # by path, so a dataset does not depend on the order workers finished in
    records = sorted(read_records(records_path(out, options.format)), key=lambda r: r.path)
    writer = get_writer(options.format, out)
    summary.dataset = writer(records, options.categories)
    summary.written = [str(path) for path in writer.written]


def run_label(paths: Iterable[str], out: str | Path, options: LabelOptions) -> LabelSummary:
    """Label every image behind `paths` into `out` (see the module docstring); the dataset is written
    at the end unless the run was interrupted. Raises OutputExistsError / OutputLockedError before
    any work when `out` holds results of another run (without resume or overwrite)."""
    out = Path(out)
    records = records_path(out, options.format)
    own = [records, f"{records}.lock"] + ([] if options.format == "jsonl" else
                                          [out / COCO_FILE, out / YOLO_YAML, out / "images", out / "labels"])
    paths = list(paths)
    sources = expand(paths, options.recursive, exclude=own)
    sources.check_output(records)
    # a dataset names its images by path: an image read from stdin has none
    sources.items = [Source(s.location, "stdin cannot be labelled in a batch; save the image to a file and name the file")
                     if s.location == STDIN and s.error is None else s for s in sources.items]
    summary = LabelSummary(not_images=len(sources.not_images), subfolders=len(sources.subfolders))
    job = DetectJob(options.categories, all_instances=True, together=True, generation=options.generation,
                    max_image_pixels=options.max_image_pixels)
    worker = DetectWorker(options.model, options.load, job)
    run = options.run
    with JsonlSink(records, record_key, resume=run.resume, overwrite=run.overwrite) as sink:
        if options.format == "yolo":  # names that would collide are refused now, not after labelling everything
            yolo_names(sorted({s.name for s in sources.readable} | {r["path"] for r in sink.done.values() if r.get("error") is None}))
        run_detect(sources, worker, sink, run, summary=summary)
    if options.format != "jsonl" and not summary.interrupted:
        _write_dataset(out, options, summary)
    return summary
