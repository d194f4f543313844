"""Training data: a labelled dataset written in the fine-tuning format of a trainer, every answer in
the coordinate frame the model will see.

The frame is the whole difficulty: Qwen2.5-VL writes pixels of the smart-resized input, so its
answers depend on the processor's min/max pixels used in training; Qwen2-VL and Qwen3-VL write 0-1000
of the original image; Qwen-VL writes `<ref>..</ref><box>(x1,y1),(x2,y2)</box>` on 0-1000. Prompts
come from the family registry (`build_prompt`) and answers from `format_detections`, the inverse of
`parse`, so what is trained is exactly what vlground reads back.

Sources (`SOURCES`) are read into `LabelledImage`s (pixels of the image as displayed), turned into
`Example`s (one per expression for ground, one per image for detect and spot) and written by a
target (`TARGETS`). Bad input never stops a conversion and is never dropped silently: boxes past the
image edge are clipped, degenerate ones left out, missing or unreadable images skipped, each counted
(and the images listed) in the `ConvertSummary`. Beside the output, `FILE.vlground.json` records the
family, task and processor settings, so `vlground finetune` can refuse data converted for others."""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from vlground.core.families import EMPTY_REASONING, Family, get_family
from vlground.core.geometry import model_input_size
from vlground.core.results import Detection
from vlground.eval.inputs import InvalidValue, four_numbers, identifier, image_side, number, text
from vlground.grammar import format_click, format_detections
from vlground.io.sink import escape_path
from vlground.prompts import IMAGE_SLOT, Prompt, build_prompt, point_prompt

SOURCES = ("coco", "coco-keypoints", "refcoco", "screenspot", "yolo", "vlground")
TASKS = ("ground", "detect", "spot", "point", "computer-use")
PROMPT_TASKS = {"ground": "ground", "detect": "detect", "spot": "spot_text"}
# the point tasks: one click target per record, asked and answered in the style of `Model.point`
POINT_STYLES = {"point": "plain", "computer-use": "tool_call"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NAMED_IN_SUMMARY = 20  # how many skipped images the summary names; all are counted
METADATA_SUFFIX = ".vlground.json"
DATA_YAML_LIMIT = 1 << 20  # bytes of a YOLO data.yaml read at most: a few lines in practice
# Markup of an answer dialect or a chat template: `<ref>`, `</box>`, `<image>`, `<|im_end|>`. A label or
# expression holding one would be read as markup by the trainer's template or by the parser (which
# strips such tags), so what is trained would not be what the source says.
MARKUP = re.compile(r"<\|?/?[A-Za-z_]+\|?>")


class ConvertError(ValueError):
    """The conversion cannot run at all (unknown source format, a task the source has no data for);
    the message says what to do. Bad items inside a source are counted instead."""


@dataclass(frozen=True)
class ProcessorSettings:
    """The image processor's bounds the answers were framed for (None for Qwen-VL, which squashes)."""

    min_pixels: int | None
    max_pixels: int | None

    @classmethod
    def for_family(cls, family: Family, min_pixels: int | None = None, max_pixels: int | None = None) -> ProcessorSettings:
        """The released checkpoint's settings unless given; refused for a family that does not resize."""
        if family.patch_size is None:
            if min_pixels is not None or max_pixels is not None:
                raise ConvertError(f"{family.name} squashes every image to 448x448: --min-pixels/--max-pixels do not apply")
            return cls(None, None)
        settings = cls(family.min_pixels if min_pixels is None else min_pixels,
                       family.max_pixels if max_pixels is None else max_pixels)
        if not 0 < settings.min_pixels <= settings.max_pixels:
            raise ConvertError(f"need 0 < min_pixels <= max_pixels, got {settings.min_pixels} and {settings.max_pixels}")
        return settings

    def input_size(self, family: Family, image_size: tuple[int, int]) -> tuple[int, int] | None:
        """What the processor feeds the model for an image of `image_size` (width, height)."""
        if family.patch_size is None:
            return None
        return model_input_size(family, image_size, self.min_pixels, self.max_pixels)


@dataclass(frozen=True)
class LabelledImage:
    """One image of a source and its objects in pixels of the image as displayed. `size` is the
    (width, height) the source states (None: read from the file); `expression` is set for a
    referring expression (RefCOCO), whose `objects` are the one box it refers to."""

    image: str
    size: tuple[int, int] | None
    objects: tuple[Detection, ...]
    expression: str | None = None


@dataclass(frozen=True)
class Example:
    """One training example: the user's words (without the image marker), the answer the model is to
    write, and the image with its displayed size."""

    image: str
    image_size: tuple[int, int]
    prompt: str
    answer: str
    system: str | None = None


class Turns(NamedTuple):
    """What a training record holds: the image, the user's words (without the image marker), the
    answer, and the system turn where the prompt has one (the computer-use tool's description)."""

    image: str
    prompt: str
    answer: str
    system: str | None = None


@dataclass
class ConvertSummary:
    """What a conversion read, wrote and left out."""

    items: int = 0
    records: int = 0
    boxes: int = 0
    points: int = 0
    clipped_boxes: int = 0
    dropped_boxes: int = 0
    dropped_points: int = 0
    ambiguous_targets: int = 0
    unlabelled: int = 0
    without_text: int = 0
    empty_images: int = 0
    skipped_images: list[str] = field(default_factory=list)
    invalid_inputs: list[str] = field(default_factory=list)

    def skip(self, image: str, reason: str) -> None:
        self.skipped_images.append(f"{image}: {reason}")

    def describe(self) -> str:
        parts = [f"{self.records} records from {self.items} source items", f"{self.boxes} boxes"]
        for count, what in [
            (self.points, "click points"),
            (self.clipped_boxes, "boxes past the image edge clipped"),
            (self.dropped_boxes, "empty or invalid boxes left out"),
            (self.dropped_points, "points outside the image or not finite left out"),
            (self.ambiguous_targets, "targets naming more than one object of their image left out"),
            (self.unlabelled, "unlabelled objects left out"),
            (self.without_text, "objects without text left out"),
            (self.empty_images, "images without objects for this task left out"),
        ]:
            if count:
                parts.append(f"{count} {what}")
        described = ", ".join(parts)
        for items, what in [(self.invalid_inputs, "invalid source items left out"), (self.skipped_images, "images skipped")]:
            if items:
                shown = "; ".join(items[:NAMED_IN_SUMMARY])
                more = len(items) - NAMED_IN_SUMMARY
                described += f"; {len(items)} {what} ({shown}{f'; and {more} more' if more > 0 else ''})"
        return described


# ---- sources ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadContext:
    """What every reader gets: the folder image names are relative to (None: the source's own),
    the folder embedded images are written to (lmms-lab parquet), and the summary to count in."""

    image_root: Path | None
    embedded_images: Path
    summary: ConvertSummary


def _coco_table(path: Path, entries: list, kind: str, read: Callable[[dict], Any], invalid: list[str]) -> dict[str, Any]:
    """id -> what `read` makes of each entry of a COCO list; an entry with a bad value is left out
    (named in `invalid`), an id given twice is a ConvertError: what refers to it is ambiguous."""
    table: dict[str, Any] = {}
    for index, entry in enumerate(entries, 1):
        try:
            if not isinstance(entry, dict):
                raise InvalidValue("is not an object")
            key = identifier(entry.get("id"), "id")
            value = read(entry)
        except InvalidValue as error:
            invalid.append(f"{path}: {kind} #{index}: {error}")
            continue
        if key in table:
            raise ConvertError(f"{path}: {kind} id {key} is given twice; what refers to it cannot be told apart")
        table[key] = value
    return table


def _coco_tables(path: Path, context: ReadContext, read_category: Callable[[dict], Any]) -> tuple[dict, Path, dict, dict]:
    """(the COCO JSON, the image folder, category id -> `read_category` of it, image id -> (file name,
    width, height)) of a COCO file, entries with bad values left out and named."""
    coco = _json(_text(path), str(path))
    if not isinstance(coco, dict) or not all(isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")):
        raise ConvertError(f"{path} is not a COCO instances JSON: it needs lists of images, annotations and categories")
    root = context.image_root if context.image_root is not None else path.parent
    invalid = context.summary.invalid_inputs
    categories = _coco_table(path, coco["categories"], "category", read_category, invalid)
    images = _coco_table(path, coco["images"], "image", lambda i: (
        text(i.get("file_name"), "file_name"), image_side(i.get("width"), "width"), image_side(i.get("height"), "height")), invalid)
    return coco, root, categories, images


def _coco_annotations(path: Path, coco: dict, images: dict, categories: dict, invalid: list[str],
                      read: Callable[[dict, Any], list[Detection]]) -> dict[str, list[Detection]]:
    """image id -> the detections `read(annotation, category)` makes of each of its annotations; an
    annotation with a bad value, or naming an image or category the file lacks, is left out and named."""
    objects: dict[str, list[Detection]] = {key: [] for key in images}
    for index, annotation in enumerate(coco["annotations"], 1):
        name = annotation.get("id") if isinstance(annotation, dict) else None
        where = f"{path}: annotation {name if isinstance(name, (str, int)) else f'#{index}'}"
        try:
            if not isinstance(annotation, dict):
                raise InvalidValue("is not an object")
            image, category = identifier(annotation.get("image_id"), "image_id"), identifier(annotation.get("category_id"), "category_id")
            if image not in images or category not in categories:
                missing = f"image {image}" if image not in images else f"category {category}"
                raise InvalidValue(f"names {missing}, which the file does not hold (or holds with a bad value)")
            objects[image].extend(read(annotation, categories[category]))
        except InvalidValue as error:
            invalid.append(f"{where}: {error}")
    return objects


def _coco_box(annotation: dict, name: str) -> list[Detection]:
    x, y, w, h = four_numbers(annotation.get("bbox"), "bbox")
    if w < 0 or h < 0:
        raise InvalidValue(f"'bbox' {[x, y, w, h]} has a negative width or height")
    return [Detection(name, box=(x, y, x + w, y + h))]


def _read_coco(path: Path, context: ReadContext) -> list[LabelledImage]:
    """A COCO instances JSON read value by value: an image or annotation with a value of the wrong
    type (a `bbox` of strings, a size of 0) is left out and named; ids given twice are refused."""
    coco, root, names, images = _coco_tables(path, context, lambda c: text(c.get("name"), "name"))
    objects = _coco_annotations(path, coco, images, names, context.summary.invalid_inputs, _coco_box)
    return [LabelledImage(str(root / name), (width, height), tuple(objects[key])) for key, (name, width, height) in images.items()]


def _keypoint_category(category: dict) -> tuple[str, list[str]]:
    """(name, keypoint names) of a COCO keypoints category."""
    names = category.get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidValue("'keypoints' is not a list of keypoint names")
    return text(category.get("name"), "name"), names


def _coco_keypoints(annotation: dict, category: tuple[str, list[str]]) -> list[Detection]:
    """One point per labelled keypoint (visibility 1 or 2; 0 is COCO's "not labelled"), named by its
    category alone when the category has one keypoint ("Submit button"), else "category keypoint"
    with underscores as spaces ("person left eye")."""
    name, keypoints = category
    values = annotation.get("keypoints")
    if not isinstance(values, list) or len(values) != 3 * len(keypoints):
        raise InvalidValue(f"'keypoints' is not a list of {3 * len(keypoints)} numbers (x, y, visibility of each of "
                           f"the category's {len(keypoints)} keypoints)")
    numbers = [number(v, "keypoints") for v in values]
    points = []
    for index, keypoint in enumerate(keypoints):
        x, y, visibility = numbers[3 * index: 3 * index + 3]
        if visibility > 0:
            label = name if len(keypoints) == 1 else f"{name} {keypoint.replace('_', ' ')}"
            points.append(Detection(label, point=(x, y)))
    return points


def _read_coco_keypoints(path: Path, context: ReadContext) -> list[LabelledImage]:
    """A COCO keypoints JSON (person_keypoints_*.json and files like it): each category names its
    keypoints, each annotation gives x, y, visibility for each; read value by value as `coco`."""
    coco, root, categories, images = _coco_tables(path, context, _keypoint_category)
    objects = _coco_annotations(path, coco, images, categories, context.summary.invalid_inputs, _coco_keypoints)
    return [LabelledImage(str(root / name), (width, height), tuple(objects[key])) for key, (name, width, height) in images.items()]


def _read_screenspot(path: Path, context: ReadContext) -> list[LabelledImage]:
    """ScreenSpot, ScreenSpot-v2 or ScreenSpot-Pro ground truth in its released layout (a file, or a
    folder of one release's files; read by `vlground.eval.screenspot`): one referring expression
    (`instruction`) per target; images under --image-root, default the file's folder."""
    from vlground.eval.errors import EvalInputError
    from vlground.eval.inputs import InputProblems
    from vlground.eval.screenspot import load_screenspot

    problems = InputProblems(strict=False)
    try:
        targets = load_screenspot(path, problems, image_root=context.image_root)
    except EvalInputError as error:
        raise ConvertError(str(error)) from error
    context.summary.invalid_inputs.extend(f"{path}: {problem}" for problem in problems.items)
    root = context.image_root if context.image_root is not None else (path if path.is_dir() else path.parent)
    # only ScreenSpot-Pro's files state the size; ScreenSpot's was read from the image's header,
    # which is not the displayed size of an EXIF-rotated image
    return [LabelledImage(str(root / t.image), t.image_size if t.release == "ScreenSpot-Pro" else None,
                          (Detection(t.instruction, box=t.box),), t.instruction) for t in targets]


def _safe_name(name: str) -> str:
    """One path component that stays inside its folder (no separator, not `.` or `..`)."""
    return re.sub(r"[/\\\x00]", "_", name).lstrip(".") or "_"


def _embedded_image(sample, folder: Path) -> str:
    """The file an embedded image (lmms-lab parquet) is written to under `folder`/split/: its own
    name, or that name with a digest of its bytes when another image of that name is there already."""
    path = folder / _safe_name(sample.split) / _safe_name(Path(sample.image or f"{sample.id}.png").name)
    if path.is_file() and path.read_bytes() != sample.image_bytes:
        path = path.with_name(f"{path.stem}-{hashlib.sha256(sample.image_bytes).hexdigest()[:12]}{path.suffix}")
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(sample.image_bytes)
    return str(path)


def _read_refcoco(path: Path, context: ReadContext) -> list[LabelledImage]:
    """Every split of any RefCOCO ground truth; images embedded in the data are written out."""
    from vlground.eval.errors import EvalInputError
    from vlground.eval.inputs import InputProblems
    from vlground.eval.refcoco_data import load_refcoco

    problems = InputProblems(strict=False)
    try:
        samples = load_refcoco(path, split=None, keep_images=True, problems=problems)
    except EvalInputError as error:
        raise ConvertError(str(error)) from error
    context.summary.invalid_inputs.extend(problems.items)
    root = context.image_root if context.image_root is not None else (path if path.is_dir() else path.parent)
    out = []
    for sample in samples:
        if sample.image_bytes is not None:
            image = _embedded_image(sample, context.embedded_images)
        elif sample.image is not None:
            image = str(root / sample.image)
        else:
            context.summary.invalid_inputs.append(f"{path}: sample {sample.id}: names no image file")
            continue
        box = Detection(sample.sent, box=sample.box)
        out.append(LabelledImage(image, (sample.width, sample.height), (box,), sample.sent))
    return out


def _yolo_objects(label_file: Path, names: Sequence[str], summary: ConvertSummary) -> list[tuple[str, tuple[float, ...]]]:
    """(label, normalized cx cy w h) of each line; a line that is not `class cx cy w h` with a class
    of `names` (0 to N-1: -1 is no class) is left out and named."""
    if not label_file.is_file():
        return []  # YOLO's way of saying "no objects"
    objects = []
    for number, line in enumerate(label_file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            index, *values = line.split()
            values = tuple(float(v) for v in values)
            if len(values) != 4 or not all(math.isfinite(v) for v in values):
                raise ValueError("needs 4 finite numbers")
            if not 0 <= int(index) < len(names):
                raise ValueError(f"class {index} is not one of 0 to {len(names) - 1}")
            objects.append((names[int(index)], values))
        except ValueError as error:
            summary.invalid_inputs.append(f"{escape_path(str(label_file))}:{number}: not `class cx cy w h` of a known class ({error})")
    return objects


def _yolo_names(folder: Path) -> list[str]:
    """The class names of a YOLO data.yaml: a list, or a mapping of 0 to N-1 to names. Anything else
    (a string, gaps in the numbers, nested lists, a file too big for a data.yaml) is a ConvertError."""
    import yaml

    file = folder / "data.yaml"
    help = f"{folder} is not a YOLO dataset: it needs a data.yaml with `names`"
    try:
        if file.stat().st_size > DATA_YAML_LIMIT:
            raise ConvertError(f"{file} is {file.stat().st_size} bytes, more than a data.yaml holds ({DATA_YAML_LIMIT} at most)")
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConvertError(f"{help} ({type(error).__name__}: {error})") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        keys = list(names)
        if any(type(k) is not int for k in keys) or sorted(keys) != list(range(len(keys))):
            raise ConvertError(f"{file}: `names` maps classes {', '.join(map(str, keys[:10]))}; they must be 0 to "
                               f"{len(keys) - 1}, each once, as YOLO numbers its classes")
        names = [names[k] for k in range(len(keys))]
    if not isinstance(names, list) or not names or not all(isinstance(n, (str, int)) and not isinstance(n, bool) for n in names):
        raise ConvertError(f"{file}: `names` must be a list of class names or a mapping of 0 to N-1 to names, "
                           f"not {type(names).__name__}{' of other things' if isinstance(names, list) else ''}")
    return [str(n) for n in names]


def _read_yolo(folder: Path, context: ReadContext) -> list[LabelledImage]:
    """A YOLO folder: data.yaml (`names`), images/ (any depth) and labels/ mirroring it."""
    from vlground.io.images import ImageLoadError, image_size

    summary = context.summary
    names = _yolo_names(folder)
    out = []
    images = sorted(p for p in (folder / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for image in images:
        try:
            width, height = image_size(image)
        except ImageLoadError as error:
            summary.skip(escape_path(str(image)), error.reason)
            continue
        label_file = folder / "labels" / image.relative_to(folder / "images").with_suffix(".txt")
        objects = []
        for label, (cx, cy, w, h) in _yolo_objects(label_file, names, summary):
            box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
            objects.append(Detection(label, box=box))
        out.append(LabelledImage(str(image), (width, height), tuple(objects)))
    return out


def _label_detection(value: Any) -> Detection:
    """One detection of a label record, every value checked; exactly one of box, quad and point."""
    if not isinstance(value, dict):
        raise InvalidValue("is not an object")
    label, words = value.get("label"), value.get("text")
    for name, given in (("label", label), ("text", words)):
        if given is not None:
            text(given, name)
    shapes = [name for name in ("box", "quad", "point") if value.get(name) is not None]
    if len(shapes) != 1:
        raise InvalidValue(f"has {' and '.join(shapes) or 'no box, quad or point'}; a detection has exactly one")
    if shapes == ["box"]:
        return Detection(label, box=four_numbers(value["box"], "box"), text=words)
    points = value[shapes[0]]
    count = 4 if shapes == ["quad"] else 1
    corners = [points] if count == 1 else points
    if not isinstance(corners, list) or len(corners) != count or not all(isinstance(c, list) and len(c) == 2 for c in corners):
        raise InvalidValue(f"{shapes[0]!r} is not {'4 points' if count == 4 else 'a point'} of 2 numbers")
    xy = [tuple(four_numbers([*c, 0, 0], shapes[0])[:2]) for c in corners]
    return Detection(label, quad=tuple(xy), text=words) if count == 4 else Detection(label, point=xy[0], text=words)


def _read_vlground(path: Path, context: ReadContext) -> list[LabelledImage]:
    """The JSON lines `vlground label` writes, value by value: a line or detection with a value of the
    wrong type is left out and named (FILE:LINE); error records are listed as skipped images; a later
    record of an image wins, as the label run's own resume does."""
    summary = context.summary
    items: dict[str, LabelledImage] = {}
    for number, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = _json(line, where)
            if not isinstance(record, dict):
                raise InvalidValue("is not a label record (a JSON object)")
            name = text(record.get("path"), "path")
            image = str(context.image_root / name) if context.image_root is not None else name
            if record.get("error") is not None:
                summary.skip(image, f"the label record is an error ({record['error']})")
                continue
            size = image_side(record.get("width"), "width"), image_side(record.get("height"), "height")
            detections = record.get("detections") or []
            if not isinstance(detections, list):
                raise InvalidValue("'detections' is not a list")
        except ConvertError as error:
            summary.invalid_inputs.append(str(error))
            continue
        except InvalidValue as error:
            summary.invalid_inputs.append(f"{where}: {error}")
            continue
        objects = []
        for index, value in enumerate(detections, 1):
            try:
                objects.append(_label_detection(value))
            except InvalidValue as error:
                summary.invalid_inputs.append(f"{where}: detection {index}: {error}")
        items[image] = LabelledImage(image, size, tuple(objects))
    return list(items.values())


READERS: dict[str, Callable[[Path, ReadContext], list[LabelledImage]]] = {
    "coco": _read_coco,
    "coco-keypoints": _read_coco_keypoints,
    "refcoco": _read_refcoco,
    "screenspot": _read_screenspot,
    "yolo": _read_yolo,
    "vlground": _read_vlground,
}


# ---- examples --------------------------------------------------------------------------------------


def _clipped(detection: Detection, size: tuple[int, int], summary: ConvertSummary, points: bool) -> Detection | None:
    """`detection` with its box or quad clipped to the image (counted), or None for a box with no area
    inside the image or coordinates that are not finite numbers (counted). A point is kept as it is
    for the point tasks (`points`) when it lies on the image, else left out (counted)."""
    width, height = size
    if detection.point is not None:
        x, y = detection.point
        if not points:
            summary.dropped_boxes += 1
            return None
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (x, y)) or not (0 <= x <= width and 0 <= y <= height):
            summary.dropped_points += 1
            return None
        return detection
    points = [detection.box[:2], detection.box[2:]] if detection.box is not None else list(detection.quad)
    try:
        points = [(float(x), float(y)) for x, y in points]
    except (TypeError, ValueError):
        points = [(math.nan, math.nan)]
    if not all(math.isfinite(v) for p in points for v in p):
        summary.dropped_boxes += 1
        return None
    inside = [(min(max(x, 0.0), width), min(max(y, 0.0), height)) for x, y in points]
    xs, ys = [p[0] for p in inside], [p[1] for p in inside]
    if max(xs) - min(xs) <= 0 or max(ys) - min(ys) <= 0:
        summary.dropped_boxes += 1
        return None
    summary.clipped_boxes += int(inside != points)
    label = detection.label.strip() if isinstance(detection.label, str) else None
    if detection.box is not None:
        return Detection(label, box=(min(xs), min(ys), max(xs), max(ys)), text=detection.text)
    return Detection(label, quad=tuple(inside), text=detection.text)


def _checked_size(item: LabelledImage, summary: ConvertSummary) -> tuple[int, int] | None:
    """The image's displayed size, read from its file: None (the image listed as skipped) when the
    file is missing or unreadable, or its size is not the one the source states."""
    from vlground.io.images import ImageLoadError, image_size

    if escape_path(item.image) != item.image:
        summary.skip(escape_path(item.image), "the file name is not UTF-8, which training records cannot hold; rename the file")
        return None
    try:
        size = image_size(item.image)
    except ImageLoadError as error:
        summary.skip(item.image, error.reason)
        return None
    if item.size is not None and tuple(item.size) != size:
        summary.skip(item.image, f"the source says {item.size[0]}x{item.size[1]} but the image is {size[0]}x{size[1]} as "
                                 "displayed (EXIF orientation applied); its boxes cannot be trusted")
        return None
    return size


def _unfit_words(words: str | None) -> str | None:
    """Why `words` (a label, an expression, a line's text) cannot be written into training text, or None."""
    if words is None:
        return None
    if escape_path(words) != words:
        return "it is not valid Unicode text"
    markup = MARKUP.search(words)
    return f"it holds {markup.group()}, markup of an answer or a chat template" if markup else None


def _fit_objects(item: LabelledImage, detections: list[Detection], summary: ConvertSummary) -> list[Detection]:
    """`detections` without those whose label or text cannot be written as training text (named)."""
    kept = []
    for d in detections:
        reason = _unfit_words(d.label) or _unfit_words(d.text)
        if reason is None:
            kept.append(d)
        else:
            summary.invalid_inputs.append(f"{item.image}: object {(d.label or d.text)!r} left out: {reason}")
    return kept


def _groups(detections: Iterable[Detection]) -> dict[str, list[Detection]]:
    """Detections by label, in order of first appearance."""
    groups: dict[str, list[Detection]] = {}
    for d in detections:
        groups.setdefault(d.label, []).append(d)
    return groups


def _click(detection: Detection) -> tuple[float, float]:
    """Where to click on an object: its point, else the centre of its box or quad."""
    if detection.point is not None:
        return detection.point
    corners = [detection.box[:2], detection.box[2:]] if detection.box is not None else detection.quad
    return sum(x for x, _ in corners) / len(corners), sum(y for _, y in corners) / len(corners)


def _click_targets(item: LabelledImage, labelled: list[Detection], summary: ConvertSummary) -> list[tuple[dict, list[Detection]]]:
    """One target per record: the expression's object, or each label naming one object of the image
    (a label naming several has no one place to click: left out, counted)."""
    groups = {item.expression: labelled} if item.expression is not None else _groups(labelled)
    out = []
    for label, objects in groups.items():
        if len(objects) == 1:
            out.append(({"phrase": label}, objects))
        else:
            summary.ambiguous_targets += 1
    return out


def _task_objects(task: str, item: LabelledImage, detections: list[Detection], dialect: str,
                  summary: ConvertSummary) -> list[tuple[dict, list[Detection]]]:
    """(prompt fields, detections of the answer) of each example `item` gives for `task`."""
    if task == "spot":
        lines = [d for d in detections if d.text]
        summary.without_text += len(detections) - len(lines)
        # the JSON dialect writes a line's words as text_content, the tag dialects inside <ref>
        spoken = [Detection(None if dialect == "json" else d.text, box=d.box, quad=d.quad,
                            text=d.text if dialect == "json" else None) for d in lines]
        return [({}, spoken)] if spoken else []
    labelled = [d for d in detections if d.label]
    summary.unlabelled += len(detections) - len(labelled)
    if task in POINT_STYLES:
        return _click_targets(item, labelled, summary) if labelled else []
    if item.expression is not None:
        return [({"phrase": item.expression}, labelled)] if labelled else []
    groups = _groups(labelled)
    if task == "detect":
        return [({"categories": list(groups)}, [d for ds in groups.values() for d in ds])] if groups else []
    return [({"phrase": label}, ds) for label, ds in groups.items()]


def _point_answer(family: Family, task: str, target: Detection, size: tuple[int, int],
                  input_size: tuple[int, int] | None) -> tuple[Prompt, str]:
    """(prompt, answer) of a click on `target`, as `Model.point` asks and reads it: a tool call in the
    frame its prompt sets (`scale`), or the family's point. A family with no point syntax is asked
    for the box (whose centre is the click) and trained on it; a target with no box (a keypoint) is
    written as the one pair in box tags its parser reads as a point."""
    style = POINT_STYLES[task]
    try:
        prompt = point_prompt(family, target.label, style=style, input_size=input_size)
    except ValueError as error:
        raise ConvertError(f"--task {task}: {error}") from None
    if style == "tool_call":
        return prompt, format_click(_click(target), family, size, input_size, style="tool_call", scale=prompt.scale)
    if "point" in family.prompts or target.box is None:
        return prompt, format_detections([Detection(target.label, point=_click(target))], family, size, input_size)
    return prompt, format_detections([Detection(target.label, box=target.box)], family, size, input_size)


def _turns(family: Family, task: str, prompt: Prompt, answer: str) -> tuple[str, str]:
    """(user words, answer) of one example. A base model (prefix completion) is trained on its raw
    prompt without the image slot, and on what it writes after it: the answer less the start the
    prompt already wrote (`response_prefix`, which vlground prepends again when parsing)."""
    if family.chat:  # a family that thinks by default is trained on the answer it gives with thinking off
        return prompt.text, (EMPTY_REASONING + answer if family.thinking == "default" else answer)
    prefix = prompt.response_prefix
    if not answer.startswith(prefix):
        raise ConvertError(f"{family.name} completes {prefix!r}; it cannot be trained for --task {task}: use a chat family")
    return prompt.text.replace(IMAGE_SLOT, "", 1), answer[len(prefix):]


def examples(items: Iterable[LabelledImage], family: Family, task: str, settings: ProcessorSettings,
             summary: ConvertSummary) -> Iterator[Example]:
    """The training examples of `items` for `task`, answers framed for `settings`."""
    for item in items:
        summary.items += 1
        size = _checked_size(item, summary)
        if size is None:
            continue
        reason = _unfit_words(item.expression)
        if reason is not None:
            summary.invalid_inputs.append(f"{item.image}: expression {item.expression!r} left out: {reason}")
            continue
        clipped = (_clipped(d, size, summary, task in POINT_STYLES) for d in item.objects)
        detections = _fit_objects(item, [d for d in clipped if d is not None], summary)
        made = _task_objects(task, item, detections, family.dialect, summary)
        if not made:
            summary.empty_images += 1
        input_size = settings.input_size(family, size)
        for fields, answer_detections in made:
            if task in POINT_STYLES:
                prompt, answer = _point_answer(family, task, answer_detections[0], size, input_size)
                summary.points += 1
            else:
                prompt = build_prompt(PROMPT_TASKS[task], family, **fields)
                answer = format_detections(answer_detections, family, size, input_size)
                summary.boxes += len(answer_detections)
            words, answer = _turns(family, task, prompt, answer)
            summary.records += 1
            yield Example(item.image, size, words, answer, prompt.system)


# ---- targets ---------------------------------------------------------------------------------------


def _qwen_record(example: Example) -> dict[str, Any]:
    return {"image": example.image, "conversations": [
        {"from": "human", "value": f"<image>\n{example.prompt}"},
        {"from": "gpt", "value": example.answer},
    ]}


def _system(example: Example, content: Any) -> list[dict[str, Any]]:
    """The system message before the user's, where the example has one."""
    return [] if example.system is None else [{"role": "system", "content": content}]


def _messages_record(example: Example) -> dict[str, Any]:
    """ms-swift's and LLaMA-Factory's sharegpt layout: `<image>` in the user text, the files in `images`."""
    return {"messages": [
        *_system(example, example.system),
        {"role": "user", "content": f"<image>{example.prompt}"},
        {"role": "assistant", "content": example.answer},
    ], "images": [example.image]}


def _trl_record(example: Example) -> dict[str, Any]:
    return {"messages": [
        *_system(example, [{"type": "text", "text": example.system}]),
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": example.prompt}]},
        {"role": "assistant", "content": [{"type": "text", "text": example.answer}]},
    ], "images": [example.image]}


TARGETS: dict[str, Callable[[Example], dict[str, Any]]] = {
    "qwen": _qwen_record,
    "swift": _messages_record,
    "llamafactory": _messages_record,
    "trl": _trl_record,
}


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the first text part of a list (trl)."""
    return content if isinstance(content, str) else next(part["text"] for part in content if part["type"] == "text")


def record_turns(record: dict[str, Any]) -> Turns:
    """The turns of a record of any target: the inverse of the target writers. Raises ConvertError
    for anything else."""
    try:
        if "conversations" in record:
            human, gpt = record["conversations"]
            turns = Turns(record["image"], human["value"].removeprefix("<image>\n"), gpt["value"])
        else:
            messages = record["messages"]
            system = [_text_of(messages[0]["content"])] if len(messages) == 3 and messages[0]["role"] == "system" else []
            user, assistant = messages[len(system):]
            turns = Turns(record["images"][0], _text_of(user["content"]).removeprefix("<image>"),
                          _text_of(assistant["content"]), *system)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, StopIteration):
        turns = None
    if turns is None or not all(isinstance(part, str) for part in turns if part is not None):
        raise ConvertError("not a training record: it needs `conversations` and `image` (qwen) or `messages` and "
                           "`images` (swift, llamafactory, trl), a user turn and an answer, as `vlground convert` writes")
    return turns


# ---- the whole conversion --------------------------------------------------------------------------


@dataclass(frozen=True)
class Conversion:
    """What `convert` wrote: the output file, its metadata file, and the summary."""

    out: Path
    metadata: Path
    summary: ConvertSummary


def metadata_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + METADATA_SUFFIX)


def read_metadata(data: str | Path) -> dict[str, Any]:
    """The metadata `convert` wrote beside `data` (family, task, target, min/max pixels)."""
    path = metadata_path(data)
    if not path.is_file():
        raise ConvertError(f"{data} has no {path.name} beside it: convert the data with `vlground convert` first")
    metadata = _json(_text(path), str(path))
    if not isinstance(metadata, dict):
        raise ConvertError(f"{path} is not the metadata `vlground convert` writes (a JSON object); convert the data again")
    return metadata


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConvertError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})") from None


def _json(text: str, where: str) -> Any:
    """`json.loads`, every failure (nesting deeper than the decoder goes included) a ConvertError at `where`."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ConvertError(f"{where}: not a JSON record (nested too deeply)") from None
    except ValueError as error:
        raise ConvertError(f"{where}: not a JSON record ({error})") from None


def _numbered_records(data: str | Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, record) of each record of a converted file; `where` is FILE:LINE (FILE:N for the Nth
    record of a .json array)."""
    path = Path(data)
    text = _text(path)
    if path.suffix == ".json":
        records = _json(text, str(path))
        if not isinstance(records, list):
            raise ConvertError(f"{path}: not a JSON array of records")
        numbered = [(f"{path}:{n}", r) for n, r in enumerate(records, 1)]
    else:
        numbered = [(f"{path}:{n}", _json(line, f"{path}:{n}")) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    for where, record in numbered:
        if not isinstance(record, dict):
            raise ConvertError(f"{where}: not a training record (a JSON object)")
    return numbered


def read_records(data: str | Path) -> list[dict[str, Any]]:
    """The records of a converted file: a JSON array (.json) or one JSON object per line; a line
    that is not a JSON object is a ConvertError naming the file and line."""
    return [record for _, record in _numbered_records(data)]


def training_turns(data: str | Path) -> list[tuple[str, Turns]]:
    """(FILE:LINE, its Turns) of every record of a converted file, each checked."""
    out = []
    for where, record in _numbered_records(data):
        try:
            out.append((where, record_turns(record)))
        except ConvertError as error:
            raise ConvertError(f"{where}: {error}") from None
    return out


def convert(
    source: str | Path,
    *,
    source_format: str,
    target: str,
    family: str | Family,
    task: str,
    out: str | Path,
    image_root: str | Path | None = None,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> Conversion:
    """Convert `source` (a file or folder in `source_format`) into `target` records for `family` and
    `task`, written to `out` (a JSON array if it ends in .json, else JSON lines) atomically, with the
    metadata file beside it. Images embedded in the source (lmms-lab parquet) are written to
    OUT-STEM_images/SPLIT/ beside `out`."""
    from vlground.io.sink import atomic_write

    for name, value, allowed in [("source format", source_format, SOURCES), ("target", target, TARGETS), ("task", task, TASKS)]:
        if value not in allowed:
            raise ConvertError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
    fam = get_family(family)
    settings = ProcessorSettings.for_family(fam, min_pixels, max_pixels)
    if source_format in ("refcoco", "screenspot") and task not in ("ground", *POINT_STYLES):
        raise ConvertError(f"{source_format} holds referring expressions, not categories or text: use --task ground, "
                           "point or computer-use")
    if task == "computer-use" and target == "qwen":
        raise ConvertError("Qwen's fine-tuning layout (--to qwen) has no system turn, which holds the computer-use tool: "
                           "use --to swift, llamafactory or trl")
    if source_format == "coco-keypoints" and task not in POINT_STYLES:
        raise ConvertError("coco-keypoints holds points, not boxes: use --task point or computer-use")
    if task == "spot" and source_format != "vlground":
        raise ConvertError(f"--task spot needs the text of each line: {source_format} has none; use label records with text")
    source = Path(source)
    if not source.exists():
        raise ConvertError(f"{source}: no such file or folder")
    summary = ConvertSummary()
    out = Path(out)
    if out.exists() and os.path.samefile(out, source):
        raise ConvertError(f"--out {out} is the source {source}; write the training records to another file")
    context = ReadContext(Path(image_root) if image_root is not None else None, out.with_name(f"{out.stem}_images"), summary)
    items = READERS[source_format](source, context)
    records = [TARGETS[target](e) for e in examples(items, fam, task, settings, summary)]
    if out.suffix == ".json":
        atomic_write(out, json.dumps(records, ensure_ascii=False, indent=1) + "\n")
    else:
        atomic_write(out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    metadata = {"family": fam.name, "task": task, "target": target, "source": str(source), "source_format": source_format,
                **asdict(settings), "summary": asdict(summary)}
    atomic_write(metadata_path(out), json.dumps(metadata, ensure_ascii=False, indent=1) + "\n")
    return Conversion(out, metadata_path(out), summary)
