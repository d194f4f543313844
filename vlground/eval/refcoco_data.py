"""RefCOCO ground truth from the three formats it is published in, as one list of samples.

- Qwen-VL's jsonl (`refcoco_val.jsonl`, ...): one line per expression, `bbox` already (x1, y1, x2, y2).
- lichengunc/refer: `refs(unc).p` (a pickle of refs with their sentences) plus the COCO `instances.json`
  whose `bbox` is (x, y, width, height).
- lmms-lab's parquet (`data/val-00000-of-00004.parquet`, ...): one row per object with its sentences
  in `answer`, the image bytes in `image` and a COCO (x, y, width, height) `bbox`; a row with k
  sentences becomes k samples, as lmms-eval explodes it.
Every sample's box is converted once, here, to (x1, y1, x2, y2) pixels with x2 = x + width.

Every value is checked before use (`vlground.eval.inputs`): a line, ref or row whose box, size,
sentence or id is of the wrong type or impossible, or whose id repeats, is refused by the
`problems` log the caller passes (skipped and counted, or an error under --strict); without one,
the first refused item is a GroundTruthError. A file that is not the format at all is always one."""
from __future__ import annotations

import io
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

from vlground.extras import require
from vlground.eval.errors import GroundTruthError
from vlground.eval.inputs import (
    InputProblems,
    InvalidValue,
    gt_box,
    identifier,
    image_side,
    json_value,
    repeated_id,
    text,
    xywh_box,
)

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
    problems: InputProblems | None = None,
) -> list[RefSample]:
    """Samples from `path`, whichever of the three formats it is.

    - a `.jsonl`/`.json` file: Qwen-VL's jsonl;
    - a `refs(...).p` file (its `instances.json` beside it, or `instances`), or a refer data folder with
      `dataset` ("refcoco", "refcoco+", "refcocog") and `split_by` (default unc, or umd for refcocog);
    - a `.parquet` file or a folder of them: lmms-lab's layout (split from the file name).
    `split` keeps one split; without it, refer data gives every split but train. `keep_images` keeps
    the parquet's image bytes (needed to run a model, not to score)."""
    path = Path(path)
    problems = problems if problems is not None else InputProblems()
    if not path.exists():
        raise GroundTruthError(f"{path}: no such file or folder")
    if dataset is not None or path.suffix in (".p", ".pkl"):
        samples = _load_refer(path, dataset, split_by, split, instances, problems)
    elif path.suffix == ".parquet" or (path.is_dir() and any(path.rglob("*.parquet"))):
        require("arrow", "reading parquet ground truth")
        samples = _load_parquet(path, split, keep_images, problems)
    elif path.is_file():
        samples = _load_jsonl(path, split, problems)
    else:
        raise GroundTruthError(
            f"{path}: a folder without parquet files; for lichengunc/refer data pass --dataset (refcoco, refcoco+, refcocog)"
        )
    return _unique_ids(samples, path, problems)


def _unique_ids(samples: list[RefSample], path: Path, problems: InputProblems) -> list[RefSample]:
    """The samples without those whose id repeats an earlier one of the same split (predictions
    align by id)."""
    seen: dict[str, dict[str, str]] = {}
    kept = []
    for index, sample in enumerate(samples):
        reason = None if sample.id is None else repeated_id(seen.setdefault(sample.split, {}), sample.id, f"sample {index}")
        if reason is None:
            kept.append(sample)
        else:
            problems.refuse_gt(f"{path}: sample {index} (split {sample.split!r})", reason)
    return kept


def _jsonl_sample(row, path: Path) -> RefSample:
    if not isinstance(row, dict):
        raise InvalidValue(f"is {type(row).__name__}, not an object")
    missing = [k for k in ("sent", "bbox", "width", "height") if k not in row]
    if missing:
        raise InvalidValue(f"has no {', '.join(map(repr, missing))}")
    image = row.get("image")
    return RefSample(
        id=_optional_id(row, ("id", "question_id", "sent_id")),
        sent=text(row["sent"], "sent"),
        box=gt_box(row["bbox"]),
        width=image_side(row["width"], "width"),
        height=image_side(row["height"], "height"),
        split=text(row.get("split") or path.stem, "split"),
        image=None if image is None else text(image, "image"),
    )


def _load_jsonl(path: Path, split: str | None, problems: InputProblems) -> list[RefSample]:
    samples = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise GroundTruthError(f"{path}: cannot read ground truth ({error})") from None
    expected = 'each line needs "image", "sent", "bbox" [x1, y1, x2, y2], "width", "height"'
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            sample = _jsonl_sample(json_value(line), path)
        except (ValueError, InvalidValue) as error:
            problems.refuse_gt(f"{path}:{number}", f"not a Qwen-VL RefCOCO line ({error}); {expected}")
            continue
        if split is None or sample.split == split:
            samples.append(sample)
    return samples


def _optional_id(row: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if row.get(key) is not None:
            return identifier(row[key], key)
    return None


class _PlainDataUnpickler(pickle.Unpickler):
    """refs(*).p holds only lists, dicts, strings and numbers: refusing every class makes loading a
    tampered file fail instead of running its code."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refuses to load {module}.{name}: a refs file holds plain data only")


# What a damaged or hostile pickle can raise while being read as plain data: truncation, unknown
# opcodes or extension codes, lengths larger than memory, text that is not UTF-8, nesting too deep.
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, MemoryError, OverflowError, RecursionError, TypeError, KeyError, IndexError, AttributeError)


def _read_refs(refs_path: Path) -> list:
    try:
        refs = _PlainDataUnpickler(io.BytesIO(refs_path.read_bytes()), encoding="latin1").load()
    except OSError as error:
        raise GroundTruthError(f"{refs_path}: cannot read ({error})") from None
    except _PICKLE_ERRORS as error:
        raise GroundTruthError(f"{refs_path}: not refer data ({type(error).__name__}: {error})") from None
    if not isinstance(refs, list):
        raise GroundTruthError(f"{refs_path}: not refer data (it holds a {type(refs).__name__}, not a list of refs)")
    return refs


def _read_instances(instances_path: Path, problems: InputProblems) -> tuple[dict, dict]:
    """COCO images by id ((file name, width, height)) and annotation boxes by id (corners)."""
    from vlground.eval.questions import read_json

    coco = read_json(instances_path, "COCO instances", '{"images": [...], "annotations": [...]}')
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) or not isinstance(coco.get("annotations"), list):
        raise GroundTruthError(f"{instances_path}: not COCO instances (needs lists under 'images' and 'annotations')")
    images, boxes = {}, {}
    for table, target, read in (("images", images, _coco_image), ("annotations", boxes, _coco_box)):
        for index, entry in enumerate(coco[table]):
            try:
                key, value = read(entry)
            except (InvalidValue, KeyError, TypeError) as error:
                problems.refuse_gt(f"{instances_path}: {table}[{index}]", f"{type(error).__name__}: {error}")
                continue
            target[key] = value
    return images, boxes


def _coco_image(entry: dict):
    return entry["id"], (text(entry["file_name"], "file_name"), image_side(entry["width"], "width"), image_side(entry["height"], "height"))


def _coco_box(entry: dict):
    return entry["id"], xywh_box(entry["bbox"])


def _ref_samples(ref, images: dict, boxes: dict) -> list[RefSample]:
    if not isinstance(ref, dict):
        raise InvalidValue(f"is {type(ref).__name__}, not a ref (a dict with split, ann_id, image_id, sentences)")
    missing = [k for k in ("split", "ann_id", "image_id", "sentences") if k not in ref]
    if missing:
        raise InvalidValue(f"has no {', '.join(map(repr, missing))}")
    split = text(ref["split"], "split")
    if ref["ann_id"] not in boxes or ref["image_id"] not in images:
        raise InvalidValue(f"names annotation {ref['ann_id']!r} / image {ref['image_id']!r}, which the instances lack (or refused)")
    if not isinstance(ref["sentences"], list):
        raise InvalidValue("'sentences' is not a list")
    file_name, width, height = images[ref["image_id"]]
    samples = []
    for sentence in ref["sentences"]:
        if not isinstance(sentence, dict) or "sent_id" not in sentence or "sent" not in sentence:
            raise InvalidValue("a sentence is not a dict with 'sent_id' and 'sent'")
        samples.append(RefSample(id=identifier(sentence["sent_id"], "sent_id"), sent=text(sentence["sent"], "sent"),
                                 box=boxes[ref["ann_id"]], width=width, height=height, split=split, image=file_name))
    return samples


def _load_refer(
    path: Path, dataset: str | None, split_by: str | None, split: str | None, instances: str | Path | None, problems: InputProblems
) -> list[RefSample]:
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
    refs = _read_refs(refs_path)
    images, boxes = _read_instances(instances_path, problems)
    samples = []
    for index, ref in enumerate(refs):
        try:
            ref_samples = _ref_samples(ref, images, boxes)
        except InvalidValue as error:
            where = f"ref {ref.get('ref_id', index)!r}" if isinstance(ref, dict) else f"ref {index}"
            problems.refuse_gt(f"{refs_path}: {where}", str(error))
            continue
        ref_split = ref_samples[0].split if ref_samples else ref["split"]
        if (split is not None and ref_split != split) or (split is None and ref_split in EVAL_SPLITS_EXCLUDE):
            continue
        samples += ref_samples
    return samples


_SHARD_NAME = re.compile(r"^(?P<split>.+?)-\d+-of-\d+$")


def _parquet_split(file: Path) -> str:
    """`data/testA-00000-of-00001.parquet` -> testA; `default/val/0000.parquet` -> val."""
    match = _SHARD_NAME.match(file.stem)
    return match["split"] if match else file.parent.name


def _parquet_samples(row: dict, split: str, keep_images: bool) -> list[RefSample]:
    from PIL import Image

    encoded = row["image"]["bytes"] if isinstance(row["image"], dict) else None
    if not isinstance(encoded, bytes):
        raise InvalidValue("'image' holds no encoded image bytes")
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            width, height = image.size
    except (OSError, Image.DecompressionBombError, ValueError) as error:  # a bomb is refused before it is decoded
        raise InvalidValue(f"its image cannot be read ({type(error).__name__}: {error})") from None
    box = xywh_box(row["bbox"])
    if not isinstance(row["answer"], list):
        raise InvalidValue("'answer' is not a list of sentences")
    return [
        RefSample(id=f"{identifier(row['question_id'], 'question_id')}#{k}", sent=text(sent, "answer"), box=box, width=width,
                  height=height, split=split, image=row["file_name"], image_bytes=encoded if keep_images else None)
        for k, sent in enumerate(row["answer"])
    ]


def _load_parquet(path: Path, split: str | None, keep_images: bool, problems: InputProblems) -> list[RefSample]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    samples = []
    for file in files:
        file_split = _parquet_split(file)
        if split is not None and file_split != split:
            continue
        try:
            table = pq.ParquetFile(file)
            batches = table.iter_batches(batch_size=256, columns=["question_id", "image", "answer", "bbox", "file_name"])
            row_number = 0
            for batch in batches:
                for row in batch.to_pylist():
                    try:
                        samples += _parquet_samples(row, file_split, keep_images)
                    except InvalidValue as error:
                        problems.refuse_gt(f"{file}: row {row_number}", str(error))
                    row_number += 1
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException, MemoryError) as error:
            raise GroundTruthError(
                f"{file}: not lmms-lab RefCOCO parquet ({type(error).__name__}: {error}); expected columns "
                "question_id, image, answer, bbox, file_name"
            ) from None
    return samples


def load_sample_image(sample: RefSample, image_root: Path | None):
    """The RGB image of `sample`: its embedded bytes, else its file (relative to `image_root`);
    ImageLoadError naming the file when it cannot be read."""
    from PIL import Image

    from vlground.io.images import ImageLoadError, load_image

    if sample.image_bytes is not None:
        try:
            return load_image(Image.open(io.BytesIO(sample.image_bytes)))
        except OSError as error:
            raise ImageLoadError(sample.image or "<embedded image>", f"cannot decode the embedded image ({error})") from None
    if sample.image is None:
        raise ImageLoadError("<none>", "the ground truth names no image for this sample")
    path = Path(sample.image)
    return load_image(path if path.is_absolute() or image_root is None else image_root / path)
