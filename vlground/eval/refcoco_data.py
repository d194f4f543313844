"""RefCOCO ground truth from the three formats it is published in, as one list of samples.

- Qwen-VL's jsonl (`refcoco_val.jsonl`, ...): one line per expression, `bbox` already (x1, y1, x2, y2).
- lichengunc/refer: `refs(unc).p` (a pickle of refs with their sentences) plus the COCO `instances.json`
  whose `bbox` is (x, y, width, height).
- lmms-lab's parquet (`data/val-00000-of-00004.parquet`, ...): one row per object with its sentences
  in `answer`, the image bytes in `image` and a COCO (x, y, width, height) `bbox`; a row with k
  sentences becomes k samples, as lmms-eval explodes it.
Every sample's box is converted once, here, to (x1, y1, x2, y2) pixels with x2 = x + width."""
from __future__ import annotations

import io
import json
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

from vlground.eval.errors import GroundTruthError

EVAL_SPLITS_EXCLUDE = ("train",)
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}


@dataclass(frozen=True)
class RefSample:
    """One referring expression and the box it refers to, in pixels of the image as stored.

    `image` is the image file as the ground truth names it (relative paths are relative to the image
    root the caller chooses); `image_bytes` holds the encoded image where the ground truth embeds it
    (lmms-lab parquet, kept only on request). `id` aligns predictions; None where the format has none."""

    id: str | None
    sent: str
    box: tuple[float, float, float, float]
    width: int
    height: int
    split: str
    image: str | None = None
    image_bytes: bytes | None = None


def load_refcoco(
    path: str | Path,
    *,
    dataset: str | None = None,
    split_by: str | None = None,
    split: str | None = None,
    instances: str | Path | None = None,
    keep_images: bool = False,
) -> list[RefSample]:
    """Samples from `path`, whichever of the three formats it is.

    - a `.jsonl`/`.json` file: Qwen-VL's jsonl;
    - a `refs(...).p` file (its `instances.json` beside it, or `instances`), or a refer data folder with
      `dataset` ("refcoco", "refcoco+", "refcocog") and `split_by` (default unc, or umd for refcocog);
    - a `.parquet` file or a folder of them: lmms-lab's layout (split from the file name).
    `split` keeps one split; without it, refer data gives every split but train. `keep_images` keeps
    the parquet's image bytes (needed to run a model, not to score)."""
    path = Path(path)
    if not path.exists():
        raise GroundTruthError(f"{path}: no such file or folder")
    if dataset is not None or path.suffix in (".p", ".pkl"):
        return _load_refer(path, dataset, split_by, split, instances)
    if path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet"))):
        return _load_parquet(path, split, keep_images)
    if path.is_file():
        return _load_jsonl(path, split)
    raise GroundTruthError(
        f"{path}: a folder without parquet files; for lichengunc/refer data pass --dataset (refcoco, refcoco+, refcocog)"
    )


def _load_jsonl(path: Path, split: str | None) -> list[RefSample]:
    samples = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                x1, y1, x2, y2 = (float(v) for v in row["bbox"])
                sample = RefSample(
                    id=_optional_id(row, ("id", "question_id", "sent_id")),
                    sent=str(row["sent"]),
                    box=(x1, y1, x2, y2),
                    width=int(row["width"]),
                    height=int(row["height"]),
                    split=str(row.get("split") or path.stem),
                    image=row.get("image"),
                )
            except (ValueError, KeyError, TypeError) as error:
                raise GroundTruthError(
                    f"{path}:{number}: not a Qwen-VL RefCOCO line ({type(error).__name__}: {error}); each line needs "
                    '"image", "sent", "bbox" [x1, y1, x2, y2], "width", "height"'
                ) from None
            if split is None or sample.split == split:
                samples.append(sample)
    return samples


def _optional_id(row: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if row.get(key) is not None:
            return str(row[key])
    return None


class _PlainDataUnpickler(pickle.Unpickler):
    """refs(*).p holds only lists, dicts, strings and numbers: refusing every class makes loading a
    tampered file fail instead of running its code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refuses to load {module}.{name}: a refs file holds plain data only")


def _load_refer(path: Path, dataset: str | None, split_by: str | None, split: str | None, instances: str | Path | None) -> list[RefSample]:
    if path.is_dir():
        if dataset is None:
            raise GroundTruthError(f"{path} is a folder: pass --dataset (refcoco, refcoco+, refcocog) to read refer data")
        folder = path / dataset if (path / dataset).is_dir() else path
        refs_path = folder / f"refs({split_by or DEFAULT_SPLIT_BY.get(dataset, 'unc')}).p"
    else:
        refs_path, folder = path, path.parent
    instances_path = Path(instances) if instances is not None else folder / "instances.json"
    for needed in (refs_path, instances_path):
        if not needed.is_file():
            raise GroundTruthError(f"{needed}: no such file (refer data needs refs(SPLIT_BY).p and instances.json)")
    try:
        with refs_path.open("rb") as handle:
            refs = _PlainDataUnpickler(handle, encoding="latin1").load()
        coco = json.loads(instances_path.read_text(encoding="utf-8"))
        images = {image["id"]: image for image in coco["images"]}
        boxes = {ann["id"]: ann["bbox"] for ann in coco["annotations"]}
    except (OSError, pickle.UnpicklingError, EOFError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise GroundTruthError(f"{refs_path} / {instances_path}: not refer data ({type(error).__name__}: {error})") from None
    samples = []
    for ref in refs:
        if (split is not None and ref["split"] != split) or (split is None and ref["split"] in EVAL_SPLITS_EXCLUDE):
            continue
        try:
            x, y, w, h = (float(v) for v in boxes[ref["ann_id"]])
            image = images[ref["image_id"]]
        except KeyError as error:
            raise GroundTruthError(f"{refs_path}: ref {ref.get('ref_id')} names {error} that {instances_path} lacks") from None
        for sentence in ref["sentences"]:
            samples.append(
                RefSample(
                    id=str(sentence["sent_id"]),
                    sent=sentence["sent"],
                    box=(x, y, x + w, y + h),
                    width=int(image["width"]),
                    height=int(image["height"]),
                    split=ref["split"],
                    image=image["file_name"],
                )
            )
    return samples


_SHARD_NAME = re.compile(r"^(?P<split>.+?)-\d+-of-\d+$")


def _parquet_split(file: Path) -> str:
    """`data/testA-00000-of-00001.parquet` -> testA; `default/val/0000.parquet` -> val."""
    match = _SHARD_NAME.match(file.stem)
    return match["split"] if match else file.parent.name


def _load_parquet(path: Path, split: str | None, keep_images: bool) -> list[RefSample]:
    import pyarrow.parquet as pq
    from PIL import Image

    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    samples = []
    for file in files:
        file_split = _parquet_split(file)
        if split is not None and file_split != split:
            continue
        try:
            table = pq.ParquetFile(file)
            batches = table.iter_batches(batch_size=256, columns=["question_id", "image", "answer", "bbox", "file_name"])
            for batch in batches:
                for row in batch.to_pylist():
                    encoded = row["image"]["bytes"]
                    with Image.open(io.BytesIO(encoded)) as image:
                        width, height = image.size
                    x, y, w, h = (float(v) for v in row["bbox"])
                    for k, sent in enumerate(row["answer"]):
                        samples.append(
                            RefSample(
                                id=f"{row['question_id']}#{k}",
                                sent=sent,
                                box=(x, y, x + w, y + h),
                                width=width,
                                height=height,
                                split=file_split,
                                image=row["file_name"],
                                image_bytes=encoded if keep_images else None,
                            )
                        )
        except (OSError, KeyError, TypeError, ValueError) as error:
            raise GroundTruthError(
                f"{file}: not lmms-lab RefCOCO parquet ({type(error).__name__}: {error}); expected columns "
                "question_id, image, answer, bbox, file_name"
            ) from None
    return samples
