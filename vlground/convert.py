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

import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vlground.families import Family, get_family
from vlground.geometry import model_input_size
from vlground.grammar import format_detections
from vlground.prompts import IMAGE_SLOT, build_prompt
from vlground.results import Detection

SOURCES = ("coco", "refcoco", "yolo", "vlground")
TASKS = ("ground", "detect", "spot")
PROMPT_TASKS = {"ground": "ground", "detect": "detect", "spot": "spot_text"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
NAMED_IN_SUMMARY = 20  # how many skipped images the summary names; all are counted
METADATA_SUFFIX = ".vlground.json"


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


@dataclass
class ConvertSummary:
    """What a conversion read, wrote and left out."""

    items: int = 0
    records: int = 0
    boxes: int = 0
    clipped_boxes: int = 0
    dropped_boxes: int = 0
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
            (self.clipped_boxes, "boxes past the image edge clipped"),
            (self.dropped_boxes, "empty or invalid boxes left out"),
            (self.unlabelled, "unlabelled objects left out"),
            (self.without_text, "objects without text left out"),
            (self.empty_images, "images without objects for this task left out"),
            (len(self.invalid_inputs), "invalid source items left out"),
        ]:
            if count:
                parts.append(f"{count} {what}")
        text = ", ".join(parts)
        if self.skipped_images:
            shown = "; ".join(self.skipped_images[:NAMED_IN_SUMMARY])
            more = len(self.skipped_images) - NAMED_IN_SUMMARY
            text += f"; {len(self.skipped_images)} images skipped ({shown}{f'; and {more} more' if more > 0 else ''})"
        return text


# ---- sources ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadContext:
    """What every reader gets: the folder image names are relative to (None: the source's own),
    the folder embedded images are written to (lmms-lab parquet), and the summary to count in."""

    image_root: Path | None
    embedded_images: Path
    summary: ConvertSummary


def _read_coco(path: Path, context: ReadContext) -> list[LabelledImage]:
    from vlground.datasets import read_coco

    try:
        _, records = read_coco(path, context.image_root if context.image_root is not None else path.parent)
    except (KeyError, TypeError, ValueError, OSError) as error:
        raise ConvertError(f"{path} is not a COCO instances JSON ({type(error).__name__}: {error})") from error
    return [LabelledImage(r.path, (r.width, r.height), tuple(r.detections)) for r in records]


def _embedded_image(sample, folder: Path) -> str:
    """The file an embedded image (lmms-lab parquet) is written to, once, under `folder`/split/."""
    path = folder / sample.split / Path(sample.image or f"{sample.id}.png").name
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
    """(label, normalized cx cy w h) of each line; a line that is not `class cx cy w h` is counted."""
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
            objects.append((names[int(index)], values))
        except (ValueError, IndexError) as error:
            summary.invalid_inputs.append(f"{label_file}:{number}: not `class cx cy w h` of a known class ({error})")
    return objects


def _read_yolo(folder: Path, context: ReadContext) -> list[LabelledImage]:
    """A YOLO folder: data.yaml (`names`), images/ (any depth) and labels/ mirroring it."""
    summary = context.summary
    import yaml

    from vlground.imageio import ImageLoadError, image_size

    try:
        names = yaml.safe_load((folder / "data.yaml").read_text(encoding="utf-8"))["names"]
        names = [names[k] for k in sorted(names)] if isinstance(names, dict) else [str(n) for n in names]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as error:
        raise ConvertError(f"{folder} is not a YOLO dataset: it needs a data.yaml with `names` ({error})") from error
    out = []
    images = sorted(p for p in (folder / "images").rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    for image in images:
        try:
            width, height = image_size(image)
        except ImageLoadError as error:
            summary.skip(str(image), error.reason)
            continue
        label_file = folder / "labels" / image.relative_to(folder / "images").with_suffix(".txt")
        objects = []
        for label, (cx, cy, w, h) in _yolo_objects(label_file, names, summary):
            box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
            objects.append(Detection(label, box=box))
        out.append(LabelledImage(str(image), (width, height), tuple(objects)))
    return out


def _read_vlground(path: Path, context: ReadContext) -> list[LabelledImage]:
    """The JSON lines `vlground label` writes; its error records are listed as skipped images."""
    from vlground.datasets import read_label_records

    out = []
    for record in read_label_records(path):
        image = str(context.image_root / record.path) if context.image_root is not None else record.path
        if record.error is not None or record.width is None or record.height is None:
            context.summary.skip(image, f"the label record is an error ({record.error})")
            continue
        out.append(LabelledImage(image, (record.width, record.height), tuple(record.detections)))
    return out


READERS: dict[str, Callable[[Path, ReadContext], list[LabelledImage]]] = {
    "coco": _read_coco,
    "refcoco": _read_refcoco,
    "yolo": _read_yolo,
    "vlground": _read_vlground,
}


# ---- examples --------------------------------------------------------------------------------------


def _clipped(detection: Detection, size: tuple[int, int], summary: ConvertSummary) -> Detection | None:
    """`detection` with its box or quad clipped to the image (counted), or None for a point, a box with
    no area inside the image or coordinates that are not finite numbers (counted)."""
    width, height = size
    if detection.point is not None:
        summary.dropped_boxes += 1
        return None
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
    from vlground.imageio import ImageLoadError, image_size

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


def _groups(detections: Iterable[Detection]) -> dict[str, list[Detection]]:
    """Detections by label, in order of first appearance."""
    groups: dict[str, list[Detection]] = {}
    for d in detections:
        groups.setdefault(d.label, []).append(d)
    return groups


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
    if item.expression is not None:
        return [({"phrase": item.expression}, labelled)] if labelled else []
    groups = _groups(labelled)
    if task == "detect":
        return [({"categories": list(groups)}, [d for ds in groups.values() for d in ds])] if groups else []
    return [({"phrase": label}, ds) for label, ds in groups.items()]


def _turns(family: Family, task: str, fields: dict, answer: str) -> tuple[str, str]:
    """(user words, answer) of one example. A base model (prefix completion) is trained on its raw
    prompt without the image slot, and on what it writes after it: the answer less the start the
    prompt already wrote (`response_prefix`, which vlground prepends again when parsing)."""
    prompt = build_prompt(PROMPT_TASKS[task], family, **fields)
    if family.chat:
        return prompt.text, answer
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
        detections = [d for d in (_clipped(d, size, summary) for d in item.objects) if d is not None]
        made = _task_objects(task, item, detections, family.dialect, summary)
        if not made:
            summary.empty_images += 1
        for fields, answer_detections in made:
            answer = format_detections(answer_detections, family, size, settings.input_size(family, size))
            prompt, answer = _turns(family, task, fields, answer)
            summary.records += 1
            summary.boxes += len(answer_detections)
            yield Example(item.image, size, prompt, answer)


# ---- targets ---------------------------------------------------------------------------------------


def _qwen_record(example: Example) -> dict[str, Any]:
    return {"image": example.image, "conversations": [
        {"from": "human", "value": f"<image>\n{example.prompt}"},
        {"from": "gpt", "value": example.answer},
    ]}


def _messages_record(example: Example) -> dict[str, Any]:
    """ms-swift's and LLaMA-Factory's sharegpt layout: `<image>` in the user text, the files in `images`."""
    return {"messages": [
        {"role": "user", "content": f"<image>{example.prompt}"},
        {"role": "assistant", "content": example.answer},
    ], "images": [example.image]}


def _trl_record(example: Example) -> dict[str, Any]:
    return {"messages": [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": example.prompt}]},
        {"role": "assistant", "content": [{"type": "text", "text": example.answer}]},
    ], "images": [example.image]}


TARGETS: dict[str, Callable[[Example], dict[str, Any]]] = {
    "qwen": _qwen_record,
    "swift": _messages_record,
    "llamafactory": _messages_record,
    "trl": _trl_record,
}


def record_turns(record: dict[str, Any]) -> tuple[str, str, str]:
    """(image, user words, answer) of a record of any target: the inverse of the target writers."""
    if "conversations" in record:
        human, gpt = record["conversations"]
        return record["image"], human["value"].removeprefix("<image>\n"), gpt["value"]
    user, assistant = record["messages"]
    if isinstance(user["content"], list):
        words = next(part["text"] for part in user["content"] if part["type"] == "text")
        return record["images"][0], words, assistant["content"][0]["text"]
    return record["images"][0], user["content"].removeprefix("<image>"), assistant["content"]


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
    return json.loads(path.read_text(encoding="utf-8"))


def read_records(data: str | Path) -> list[dict[str, Any]]:
    """The records of a converted file: a JSON array (.json) or one JSON object per line."""
    text = Path(data).read_text(encoding="utf-8")
    if Path(data).suffix == ".json":
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


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
    from vlground.sink import atomic_write

    for name, value, allowed in [("source format", source_format, SOURCES), ("target", target, TARGETS), ("task", task, TASKS)]:
        if value not in allowed:
            raise ConvertError(f"unknown {name} {value!r}; choose one of {', '.join(allowed)}")
    fam = get_family(family)
    settings = ProcessorSettings.for_family(fam, min_pixels, max_pixels)
    if source_format == "refcoco" and task != "ground":
        raise ConvertError("RefCOCO holds referring expressions, not categories or text: use --task ground")
    if task == "spot" and source_format != "vlground":
        raise ConvertError(f"--task spot needs the text of each line: {source_format} has none; use label records with text")
    source = Path(source)
    if not source.exists():
        raise ConvertError(f"{source}: no such file or folder")
    summary = ConvertSummary()
    out = Path(out)
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
