"""What a job writes beside its JSONL records, behind one lookup as whisper's `get_writer`: a
dataset of all the records (`vlground label --format coco|yolo`) or one file per input (`vlground
ocr --format txt|hocr|md|pdf`). The records stay the record of truth; these are built from them, and
each file is written whole (a kill leaves the old one or the new one).

    writer = get_writer("coco", "cars/")          # DatasetWriter
    stats = writer(records, categories=["car"])   # cars/instances.json
    writer = get_writer("hocr", "exports/")       # ExportWriter
    writer(records_of_one_input, "scan.pdf", page_image=..., title="scan.pdf")  # exports/scan.pdf.hocr

It lives in jobs, the lowest layer that sees both the dataset writers (`vlground.datasets`) and the
OCR exports (`vlground.ocr.formats`); io, below every record type, cannot hold it."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vlground.core.records import Record
from vlground.datasets import COCO_FILE, YOLO_YAML, DatasetStats, write_coco, write_yolo
from vlground.io.sink import atomic_write
from vlground.ocr.formats import FORMATS as EXPORTS
from vlground.ocr.formats import SUFFIXES, PageImage, render

DATASETS = ("coco", "yolo")


@dataclass(frozen=True)
class DatasetWriter:
    """A dataset of records in the folder `out`: coco (out/instances.json) or yolo (images/, labels/,
    data.yaml); see `vlground.datasets`."""

    format: str
    out: Path

    @property
    def written(self) -> list[Path]:
        """What it writes, the file or folders a user opens."""
        if self.format == "coco":
            return [self.out / COCO_FILE]
        return [self.out / YOLO_YAML, self.out / "labels", self.out / "images"]

    def __call__(self, records: Iterable[Record], categories: Sequence[str]) -> DatasetStats:
        if self.format == "coco":
            return write_coco(records, self.out / COCO_FILE, categories)
        return write_yolo(records, self.out, categories)


@dataclass(frozen=True)
class ExportWriter:
    """One input's file in the folder `out`, named after the input with the format's suffix appended
    (see `vlground.ocr.formats` for the formats and `vlground.jobs.ocr_exports` for the names)."""

    format: str
    out: Path

    def target(self, name: str) -> Path:
        return self.out / (name + SUFFIXES[self.format])

    def __call__(self, records: Sequence[Record], name: str, *, page_image: PageImage, title: str,
                 original: bytes | None = None) -> Path:
        """Write the file of the input `name` from its records (its pages in order); `page_image`
        gives a record's page image and `original` the input's own bytes (the PDF export keeps a
        PDF's pages). OSError when it cannot be written, ValueError when it cannot be made."""
        target = self.target(name)
        atomic_write(target, render(self.format, records, page_image, title, original))
        return target


def get_writer(fmt: str, out: str | Path) -> DatasetWriter | ExportWriter:
    """The writer of format `fmt` into the folder `out`; ValueError, in one line, for a format
    there is no writer of."""
    if fmt in DATASETS:
        return DatasetWriter(fmt, Path(out))
    if fmt in EXPORTS:
        return ExportWriter(fmt, Path(out))
    raise ValueError(f"no writer of {fmt!r}: datasets are {', '.join(DATASETS)}, per-input files {', '.join(EXPORTS)} "
                     "(jsonl is the records themselves)")
