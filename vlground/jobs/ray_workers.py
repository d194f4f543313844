"""The built-in OCR engine as a Ray worker (`vlground.jobs.ray_pool.Worker`): what `ocr --ray` runs in
each actor (`bench refcoco --ray`'s worker is in `vlground.jobs.bench`). The job's driver keeps its own sink, resume and scoring; only the
answering moves out, through the same per-input functions the one-process run uses, so the records
are the same."""
from __future__ import annotations

import base64
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlground.jobs.scale import RaySettings, ray_records

if TYPE_CHECKING:
    from vlground.ocr.ppocr import EngineSpec


def pack(value: Any) -> str:
    """A job's input as the text a Ray Dataset row carries (between the processes of one job only)."""
    return base64.b64encode(pickle.dumps(value)).decode("ascii")


def unpack(item: str) -> Any:
    return pickle.loads(base64.b64decode(item))


@dataclass
class PpocrWorker:
    """Reads OCR page jobs with the embedded engine on one thread (one actor per CPU), exactly as a
    `vlground ocr` worker process does; an item is one packed `PageJob`."""

    max_image_pixels: int | None
    engine: EngineSpec

    def setup(self) -> None:
        from vlground.jobs.ocr_workers import start_worker

        start_worker(self.engine, 1)

    def __call__(self, items: list[str]) -> list[dict]:
        from vlground.jobs.ocr_workers import worker_read

        return [worker_read((unpack(item), self.max_image_pixels)).to_dict() for item in items]

    def failed(self, item: str, reason: str) -> dict:
        from vlground.jobs.ocr_workers import failed_record

        return failed_record(unpack(item), self.engine.name, f"the OCR engine crashed on this image: {reason}").to_dict()


def ppocr_records_on_ray(jobs: Sequence, max_image_pixels: int | None, settings: RaySettings, engine: EngineSpec) -> Iterator:
    """The `Record` of every page job, read on Ray with the built-in `engine`, each once, in the
    order they finish."""
    from vlground.core.records import Record

    for record in ray_records([pack(job) for job in jobs], PpocrWorker(max_image_pixels, engine), settings):
        yield Record.from_dict(record)
