"""The built-in batch jobs as Ray workers (`vlground.scale.Worker`): what `bench refcoco --ray` and
`ocr --ray` run in each actor. The job's driver keeps its own sink, resume and scoring; only the
answering moves out, through the same per-input functions the one-process run uses, so the records
are the same."""
from __future__ import annotations

import base64
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlground.scale import RaySettings, ray_records

if TYPE_CHECKING:
    from vlground.ocr.ppocr import EngineSpec


def _pack(value: Any) -> str:
    """A job's input as the text a Ray Dataset row carries (between the processes of one job only)."""
    return base64.b64encode(pickle.dumps(value)).decode("ascii")


def _unpack(item: str) -> Any:
    return pickle.loads(base64.b64decode(item))


@dataclass
class RefcocoWorker:
    """Grounds RefCOCO samples with the model `model_name` loaded with `load` (keywords of
    `vlground.load_model`), answering as `vlground.eval.bench` does in one process: an item is one
    packed (index, sample) pair, its record the prediction line of that sample."""

    model_name: str
    load: dict[str, Any]
    image_root: Path | None
    generation: dict[str, Any]
    model: Any = field(default=None, repr=False)

    def setup(self) -> None:
        from vlground.tasks import load_model

        self.model = load_model(self.model_name, **self.load)

    def __call__(self, items: list[str]) -> list[dict]:
        from vlground.eval.bench import _answer_chunk

        pairs = [_unpack(item) for item in items]
        samples = dict(pairs)
        return _answer_chunk(self.model, samples, [index for index, _ in pairs], self.image_root, self.generation)

    def failed(self, item: str, reason: str) -> dict:
        from vlground.eval.bench import _record

        index, sample = _unpack(item)
        return _record(index, sample, None, None, f"model failed: {reason}")


def refcoco_records(model_name: str, load: dict[str, Any], samples: Sequence, todo: list[int], image_root: Path | None,
                    generation: dict[str, Any], settings: RaySettings) -> Iterator[dict]:
    """The prediction records of samples `todo` (indices into `samples`), answered on Ray, each once,
    in the order they finish."""
    worker = RefcocoWorker(model_name, load, image_root, generation)
    return ray_records([_pack((i, samples[i])) for i in todo], worker, settings)


@dataclass
class PpocrWorker:
    """Reads OCR page jobs with the embedded engine on one thread (one actor per CPU), exactly as a
    `vlground ocr` worker process does; an item is one packed `PageJob`."""

    max_image_pixels: int | None
    engine: EngineSpec

    def setup(self) -> None:
        from vlground.ocr.workers import start_worker

        start_worker(self.engine, 1)

    def __call__(self, items: list[str]) -> list[dict]:
        from vlground.ocr.workers import worker_read

        return [worker_read((_unpack(item), self.max_image_pixels)).to_dict() for item in items]

    def failed(self, item: str, reason: str) -> dict:
        from vlground.ocr.workers import failed_record

        return failed_record(_unpack(item), self.engine.name, f"the OCR engine crashed on this image: {reason}").to_dict()


def ppocr_records_on_ray(jobs: Sequence, max_image_pixels: int | None, settings: RaySettings, engine: EngineSpec) -> Iterator:
    """The `OcrRecord` of every page job, read on Ray with the built-in `engine`, each once, in the
    order they finish."""
    from vlground.ocr.records import OcrRecord

    for record in ray_records([_pack(job) for job in jobs], PpocrWorker(max_image_pixels, engine), settings):
        yield OcrRecord.from_dict(record)
