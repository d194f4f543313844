"""Detection datasets from labelled images: COCO and YOLO datasets written from label records (one
JSON line per image, `vlground.core.records.Record`, the record of truth of `vlground label`) and read
back as records, so the boxes vlground finds train detectors as they are.

Units: records and `Result`s hold pixels of the image as displayed (EXIF orientation applied). COCO
`bbox` is [x, y, width, height] in those pixels; a YOLO line is `class cx cy w h`, each divided by
the image's width or height. Only boxes go into a dataset: a quad becomes its bounding box, a point
(no area) is left out and counted, and so is a detection whose label is none of the categories."""
from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vlground.core.records import Record
from vlground.core.results import Detection
from vlground.io.sink import atomic_write, escape_path

FORMATS = ("coco", "yolo", "jsonl")
COCO_FILE = "instances.json"
YOLO_YAML = "data.yaml"


@dataclass
class DatasetStats:
    """What went into a dataset: images (`empty` of them without a box, `failed` error records left
    out), boxes written, and what was left out: points, and labels that are none of the categories."""

    images: int = 0
    empty: int = 0
    failed: int = 0
    boxes: int = 0
    points: int = 0
    other_labels: Counter = field(default_factory=Counter)

    def describe(self) -> str:
        parts = [f"{self.images} images ({self.empty} without a box)", f"{self.boxes} boxes"]
        if self.failed:
            parts.append(f"{self.failed} failed images left out")
        if self.points:
            parts.append(f"{self.points} points left out (no area)")
        if self.other_labels:
            names = ", ".join(f"{k!r} x{v}" for k, v in self.other_labels.most_common(5))
            parts.append(f"{sum(self.other_labels.values())} detections with other labels left out ({names}; "
                         "they stay in the records)")
        return ", ".join(parts)


def _label_key(label: str) -> str:
    """Case, spacing and a plural ending do not make another category ("Cars" is "car")."""
    key = " ".join(label.casefold().split())
    return re.sub(r"(?<=[^s])(es|s)$", "", key) if len(key) > 3 else key


def category_index(label: str | None, categories: Sequence[str]) -> int | None:
    """The index of the category `label` names, or None. An unlabelled detection belongs to the only
    category when there is one."""
    if not label:
        return 0 if len(categories) == 1 else None
    keys = [_label_key(c) for c in categories]
    key = _label_key(label)
    return keys.index(key) if key in keys else None


def _boxes(record: Record, categories: Sequence[str], stats: DatasetStats) -> list[tuple[int, tuple]]:
    """(category index, xyxy) of each box of `record` that belongs in the dataset, counting the rest."""
    stats.images += 1
    kept = []
    for d in record.detections:
        if d.point is not None:
            stats.points += 1
            continue
        index = category_index(d.label, categories)
        if index is None:
            stats.other_labels[d.label or ""] += 1
            continue
        kept.append((index, d.xyxy))
    stats.boxes += len(kept)
    stats.empty += not kept
    return kept


def _usable(records: Iterable[Record], stats: DatasetStats) -> list[Record]:
    kept = []
    for record in records:
        if record.result is None:
            stats.failed += 1
        else:
            kept.append(record)
    return kept


def _relative(path: str, root: str) -> str:
    return os.path.relpath(os.path.abspath(path), root) if "://" not in path else path


def common_root(paths: Sequence[str]) -> str:
    """The deepest folder holding every local path (URIs are kept whole and do not count)."""
    local = [os.path.dirname(os.path.abspath(p)) for p in paths if "://" not in p]
    return os.path.commonpath(local) if local else os.getcwd()


def coco_dataset(records: Iterable[Record], categories: Sequence[str], root: str | None = None) -> tuple[dict, DatasetStats]:
    """The COCO instances dict of `records` (error records left out) and what went into it.
    `file_name` is each image's path relative to `root` (default: the folder holding them all)."""
    stats = DatasetStats()
    usable = _usable(records, stats)
    root = root or common_root([r.path for r in usable])
    images, annotations = [], []
    for image_id, record in enumerate(usable, start=1):
        images.append({"id": image_id, "file_name": _relative(record.path, root), "width": record.width, "height": record.height})
        for index, (x1, y1, x2, y2) in _boxes(record, categories, stats):
            w, h = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": index + 1,
                                "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": "none"} for i, name in enumerate(categories)]}
    return coco, stats


def write_coco(records: Iterable[Record], path: str | Path, categories: Sequence[str], root: str | None = None) -> DatasetStats:
    """Write the COCO instances JSON of `records` to `path` atomically (see `coco_dataset`)."""
    coco, stats = coco_dataset(records, categories, root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(coco, ensure_ascii=False))
    return stats


def read_coco(path: str | Path, root: str | Path | None = None) -> tuple[list[str], list[Record]]:
    """(category names, one record per image) of a COCO instances JSON; image paths are `file_name`
    under `root` (default: as written)."""
    coco = json.loads(Path(path).read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list[Detection]] = {image["id"]: [] for image in coco["images"]}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        by_image[a["image_id"]].append(Detection(names[a["category_id"]], box=(x, y, x + w, y + h)))
    records = [Record(path=str(Path(root) / image["file_name"]) if root is not None else image["file_name"],
                           model="", width=image["width"], height=image["height"], detections=by_image[image["id"]])
               for image in coco["images"]]
    return [names[i] for i in sorted(names)], records


def yolo_names(paths: Sequence[str]) -> list[str]:
    """A file name for each image in a flat YOLO images/ folder: its own name where that is unique,
    else its path under the common root with '/' as '__' and the suffix kept in the
    stem (a/x.jpg -> a__x_jpg.jpg), so no two images share a label file."""
    stems = Counter(Path(p).stem for p in paths)
    root = common_root(paths)
    names = []
    for p in paths:
        if stems[Path(p).stem] == 1:
            names.append(Path(p).name)
        else:
            stem, suffix = os.path.splitext(_relative(p, root).replace("://", "__").replace("/", "__"))
            names.append(f"{stem}_{suffix[1:]}{suffix}")
    first: dict[str, str] = {}
    for path, name in zip(paths, names):
        other = first.setdefault(Path(name).stem, path)
        if other != path:
            raise ValueError(f"two images would share one YOLO label file ({escape_path(other)} and {escape_path(path)} "
                             f"both become {Path(name).stem}); rename one of them")
    return names


def _yolo_line(index: int, box: tuple, width: int, height: int) -> str:
    x1, y1, x2, y2 = box
    cx, cy, w, h = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height
    return f"{index} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def write_yolo(records: Iterable[Record], folder: str | Path, categories: Sequence[str]) -> DatasetStats:
    """A YOLO dataset in `folder`: images/NAME (links to the labelled images), labels/STEM.txt (one
    `class cx cy w h` line per box, empty for an image without boxes) and data.yaml (`names`,
    `path`, train and val on images/). The labels are built beside and swapped in whole, then
    data.yaml is written, so a reader never sees half a dataset. Error records are left out."""
    import yaml

    stats = DatasetStats()
    usable = _usable(records, stats)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = yolo_names([r.path for r in usable])
    staging = {part: folder / f".{part}.tmp-{os.getpid()}" for part in ("images", "labels")}
    try:
        for path in staging.values():
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
        for record, name in zip(usable, names):
            lines = [_yolo_line(i, box, record.width, record.height) for i, box in _boxes(record, categories, stats)]
            (staging["labels"] / f"{Path(name).stem}.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            if "://" not in record.path:
                os.symlink(os.path.abspath(record.path), staging["images"] / name)
        for part, path in staging.items():
            old = folder / f".{part}.old-{os.getpid()}"
            if (folder / part).exists():
                os.replace(folder / part, old)
            os.replace(path, folder / part)
            shutil.rmtree(old, ignore_errors=True)
    finally:  # whatever ends the writing (an error, Ctrl-C), no half-built folder is left behind
        for path in staging.values():
            shutil.rmtree(path, ignore_errors=True)
    data = {"path": str(folder.resolve()), "train": "images", "val": "images", "nc": len(categories), "names": list(categories)}
    atomic_write(folder / YOLO_YAML, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return stats


def read_yolo(folder: str | Path) -> tuple[list[str], list[Record]]:
    """(category names, one record per image) of a YOLO dataset written by `write_yolo`; image sizes
    are read from the images (EXIF honoured), boxes put back in pixels."""
    import yaml

    from vlground.io.images import image_size

    folder = Path(folder)
    names = list(yaml.safe_load((folder / YOLO_YAML).read_text(encoding="utf-8"))["names"])
    records = []
    for image in sorted((folder / "images").iterdir()):
        width, height = image_size(image)
        detections = []
        for line in (folder / "labels" / f"{image.stem}.txt").read_text(encoding="utf-8").splitlines():
            index, cx, cy, w, h = line.split()
            cx, w, cy, h = float(cx) * width, float(w) * width, float(cy) * height, float(h) * height
            detections.append(Detection(names[int(index)], box=(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)))
        records.append(Record(path=str(image), model="", width=width, height=height, detections=detections))
    return names, records
