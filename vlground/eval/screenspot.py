"""ScreenSpot, ScreenSpot-v2 and ScreenSpot-Pro: GUI grounding, scored as the official scripts do.

A target is one instruction on one screenshot with the box of the element it names; a prediction
is one click. The click hits when it lies inside the box, edges included, compared as fractions of
the image size: the box divided by the image's width and height, the click in fractions taken
from what the model wrote (SeeClick's pretrain/screenspot_test.py and ScreenSpot-Pro's
eval_screenspot_pro.py both test `x1 <= x <= x2 and y1 <= y <= y2` on such fractions). An answer
the protocol cannot read is a miss counted as `wrong_format`, as both scripts count it. A box
answer clicks its centre, taken in the model's own units before the division (as SeeClick's script
and ScreenSpot-Pro's Qwen2.5-VL wrapper do). A click outside the screenshot is kept where it is
(never clipped to the edge), so it misses every box inside the image.

Ground truth, in the released layouts:
- ScreenSpot (njucckevin/SeeClick) and ScreenSpot-v2 (OS-Copilot/OS-Atlas): one JSON list per
  platform, `screenspot_{mobile,desktop,web}.json` (v2: `..._v2.json`), items with `img_filename`,
  `bbox` as [x, y, width, height] in pixels, `instruction`, `data_type` ("text"; SeeClick counts
  every other type as an icon) and `data_source`. The platform is the file's; the files carry no
  image size, so it is read from the image (`image_root`) or from the prediction's `image_size`.
- ScreenSpot-Pro (likaixin2000/ScreenSpot-Pro-GUI-Grounding): `annotations/*.json`, items with
  `id`, `img_filename`, `bbox` as [x1, y1, x2, y2] in pixels, `img_size` [width, height],
  `instruction`, `ui_type` ("text" or "icon"), `platform`, `application` and `group`.
A file, or a folder of them (one release per folder).

Protocols (how a prediction's text becomes a click):
- "family" (default): the family's grammar (`vlground.grammar`: its dialect's first point or box,
  from the answer, never the reasoning) in the family's frame (`Frame.to_fractions`).
- "seeclick": SeeClick's screenspot_test.py: a text holding "box" is read as the centre of the
  first `<box>(x,y),(x,y)</box>` on the 0-1000 grid; any other text as its numbers (`-?\\d+\\.?\\d*`):
  two are the click, four a box whose centre is clicked, in fractions of the image; anything else is
  `wrong_format`.
A prediction without text gives its `point` in pixels of the original screenshot.

Breakdowns: per platform, per element type (text / icon accuracies within every breakdown, as the
scripts report them), per application group and application (Pro), per data source (ScreenSpot),
and overall; for ScreenSpot and ScreenSpot-v2 also `macro_accuracy`, the mean of the six platform x
type accuracies (the "Average" column of SeeClick's README table)."""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlground.core.families import Family, get_family
from vlground.eval.benchmark import Benchmark, Option
from vlground.eval.errors import EvalInputError, GroundTruthError
from vlground.eval.inputs import InputProblems, InvalidValue, gt_box, identifier, image_side, json_value, number, repeated_id, text, xywh_box
from vlground.eval.predictions import align, answer_part, input_size, record_id
from vlground.eval.scores import Scores

PLATFORMS = ("mobile", "desktop", "web")
RELEASED_NAME = re.compile(r"screenspot_(mobile|desktop|web)(_v2)?\.json")
ID_KEYS = ("id",)
STATUSES = ("correct", "wrong", "wrong_format", "error", "missing", "refused")
_SEECLICK_BOX = re.compile(r"<box>\((\d+,\d+)\),\((\d+,\d+)\)</box>")
_SEECLICK_NUMBER = re.compile(r"-?\d+\.?\d*")


@dataclass(frozen=True)
class ScreenTarget:
    """One instruction and the element it names. `box` is (x1, y1, x2, y2) in pixels of the
    screenshot; `image_size` (width, height) is None where neither the file nor the image gave it.
    `release` is "ScreenSpot", "ScreenSpot-v2" or "ScreenSpot-Pro"; `source` the ScreenSpot
    `data_source`, `application` and `group` ScreenSpot-Pro's."""

    id: str
    image: str
    instruction: str
    box: tuple[float, float, float, float]
    platform: str
    ui_type: str
    release: str
    image_size: tuple[int, int] | None = None
    source: str | None = None
    application: str | None = None
    group: str | None = None


class ProtocolError(EvalInputError):
    """An unknown protocol, or one that needs a family it was not given."""


# --- ground truth -----------------------------------------------------------------------------


def _annotation_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise GroundTruthError(f"{path}: no such file or folder; give a ScreenSpot JSON file or the folder holding them")
    files = sorted(p for p in path.glob("*.json") if p.is_file())
    if not files:
        raise GroundTruthError(f"{path}: no .json annotation files in this folder")
    return files


def _read_list(path: Path) -> list:
    try:
        items = json_value(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise GroundTruthError(f"{path}: cannot read it as JSON ({error})") from None
    if not isinstance(items, list):
        raise GroundTruthError(f"{path}: holds a JSON {type(items).__name__}, not the list of targets the released files hold")
    return items


def _release(path: Path, items: list) -> tuple[str, str | None]:
    """(release, platform of the file) from the file's items and name."""
    first = next((item for item in items if isinstance(item, dict)), {})
    if "img_size" in first or "ui_type" in first:
        return "ScreenSpot-Pro", None
    match = RELEASED_NAME.fullmatch(path.name)
    if match is None:
        raise GroundTruthError(f"{path}: cannot tell its platform; ScreenSpot files keep their released names "
                               "screenspot_mobile.json, screenspot_desktop.json, screenspot_web.json (ScreenSpot-v2: ..._v2.json)")
    return ("ScreenSpot-v2" if match[2] else "ScreenSpot"), match[1]


def _optional_text(item: dict, key: str) -> str | None:
    return None if item.get(key) is None else text(item[key], key)


def _target(item, index: int, release: str, platform: str | None, stem: str) -> ScreenTarget:
    if not isinstance(item, dict):
        raise InvalidValue(f"is {type(item).__name__}, not a JSON object")
    if release == "ScreenSpot-Pro":
        size = item.get("img_size")
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise InvalidValue(f"'img_size' is {size!r}, not [width, height]")
        return ScreenTarget(
            id=identifier(item.get("id"), "id"), image=text(item.get("img_filename"), "img_filename"),
            instruction=text(item.get("instruction"), "instruction"), box=gt_box(item.get("bbox")),
            platform=text(item.get("platform"), "platform"), ui_type=text(item.get("ui_type"), "ui_type"), release=release,
            image_size=(image_side(size[0], "img_size"), image_side(size[1], "img_size")),
            application=_optional_text(item, "application"), group=_optional_text(item, "group"),
        )
    return ScreenTarget(
        id=f"{stem}#{index}", image=text(item.get("img_filename"), "img_filename"),
        instruction=text(item.get("instruction"), "instruction"), box=xywh_box(item.get("bbox")), platform=platform,
        ui_type="text" if item.get("data_type") == "text" else "icon", release=release,
        source=_optional_text(item, "data_source"),
    )


def _image_size(path: Path) -> tuple[int, int] | None:
    """The stored width and height of an image file (its header only), None when it cannot be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def load_screenspot(path: str | Path, problems: InputProblems | None = None, *, image_root: str | Path | None = None) -> list[ScreenTarget]:
    """Targets of a ScreenSpot, ScreenSpot-v2 or ScreenSpot-Pro annotation file, or of every
    `.json` file in a folder. Items with impossible values and repeated ids are refused (see
    `vlground.eval.inputs`). Targets whose file gives no image size take it from the image under
    `image_root` (default: the annotations' folder) when it is there."""
    path = Path(path)
    problems = problems if problems is not None else InputProblems()
    files = [(file, _read_list(file)) for file in _annotation_files(path)]
    releases = {file: _release(file, items) for file, items in files}
    if len({release for release, _ in releases.values()}) > 1:
        named = ", ".join(f"{file.name} ({release})" for file, (release, _) in releases.items())
        raise GroundTruthError(f"{path}: holds files of several releases ({named}); score one release at a time")
    targets: list[ScreenTarget] = []
    seen: dict[str, str] = {}
    for file, items in files:
        release, platform = releases[file]
        for index, item in enumerate(items):
            where = f"{file.name} item {index}"
            try:
                target = _target(item, index, release, platform, file.stem)
            except InvalidValue as error:
                problems.refuse_gt(where, str(error))
                continue
            reason = repeated_id(seen, target.id, where)
            if reason:
                problems.refuse_gt(where, reason)
                continue
            targets.append(target)
    root = Path(image_root) if image_root is not None else (path if path.is_dir() else path.parent)
    sizes: dict[str, tuple[int, int] | None] = {}
    for i, target in enumerate(targets):
        if target.image_size is None:
            if target.image not in sizes:
                sizes[target.image] = _image_size(root / target.image)
            if sizes[target.image] is not None:
                targets[i] = _with_size(target, sizes[target.image])
    return targets


def _with_size(target: ScreenTarget, size: tuple[int, int]) -> ScreenTarget:
    from dataclasses import replace

    return replace(target, image_size=(int(size[0]), int(size[1])))


# --- reading a click --------------------------------------------------------------------------


def _family_click(answer: str, family: Family, size: tuple[int, int], given_input: tuple[int, int] | None,
                  scale: float = 1000, pixels: dict | None = None) -> tuple[float, float] | None:
    """Fractions of the image at the first point or box the family's grammar reads in `answer`
    (a box: its centre in the model's units), or None. `scale`: the divisor of the 0-1000 frames;
    `pixels`: the min/max pixels the model input is derived with where the line does not give it."""
    from vlground.core.geometry import Frame
    from vlground.grammar import extract

    frame = Frame.for_family(family, size, given_input, scale=scale, **(pixels or {}))
    for coords in extract(answer, family).coords:  # the family's dialect, else a GUI action (a tool call)
        if len(coords) not in (2, 4):
            continue
        try:
            values = [float(v) for v in coords]
        except (TypeError, ValueError, OverflowError):
            continue
        if not all(math.isfinite(v) for v in values):
            continue
        x, y = values if len(values) == 2 else ((values[0] + values[2]) / 2, (values[1] + values[3]) / 2)
        return frame.to_fractions(x, y)
    return None


def _seeclick_click(answer: str) -> tuple[float, float] | None:
    """Fractions of the image as SeeClick's screenspot_test.py reads `answer`, or None where it
    counts the answer as wrong_format."""
    if "box" in answer:
        corners = [pair.split(",") for match in _SEECLICK_BOX.findall(answer) for pair in match]
        if len(corners) < 2:
            return None
        (x1, y1), (x2, y2) = ((int(a), int(b)) for a, b in corners[:2])
        return (x1 + x2) / 2 / 1000, (y1 + y2) / 2 / 1000
    numbers = [float(v) for v in _SEECLICK_NUMBER.findall(answer)]
    if len(numbers) == 2:
        return numbers[0], numbers[1]
    if len(numbers) == 4:
        return (numbers[0] + numbers[2]) / 2, (numbers[1] + numbers[3]) / 2
    return None


@dataclass(frozen=True)
class ScreenProtocol:
    name: str
    summary: str
    needs_family: bool


PROTOCOLS = {
    p.name: p
    for p in (
        ScreenProtocol("family", "the family's grammar and frame (first point, or a box's centre), clicks as fractions of the image", True),
        ScreenProtocol("seeclick", "SeeClick screenspot_test.py: <box> centre on 0-1000, else 2 or 4 numbers as fractions", False),
    )
}


def get_protocol(name: str) -> ScreenProtocol:
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown ScreenSpot protocol {name!r}; protocols: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


def _pair(value, name: str, read, where: str, problems: InputProblems) -> tuple | None:
    """Two values of a prediction line, each checked by `read` (`number`, `image_side`); None, and
    the line refused, for anything else."""
    try:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise InvalidValue(f"{name!r} is {value!r}, not a list of two numbers")
        return read(value[0], name), read(value[1], name)
    except InvalidValue as error:
        problems.refuse_prediction(where, str(error))
        return None


def _record_scale(record: dict, where: str, problems: InputProblems) -> float | None:
    """The divisor of the 0-1000 frames a prediction line names ("scale": 999 where the model was
    told its screen is 999 wide), 1000 by default; None (refused) for anything but a positive number."""
    if record.get("scale") is None:
        return 1000
    try:
        return number(record["scale"], "scale", positive=True)
    except InvalidValue as error:
        problems.refuse_prediction(where, str(error))
        return None


# --- scoring ----------------------------------------------------------------------------------


@dataclass(kw_only=True)
class ScreenSpotScores(Scores):
    """Per-target results in ground-truth order: `status` (one of STATUSES: "error" is a prediction
    line that says the run failed on it, "refused" one that could not be used), `clicks` in pixels
    of the screenshot (NaN where there is none) and `distance`, the click's distance in pixels from
    the box (0 inside it, inf without a click)."""

    protocol: str
    status: list[str]
    clicks: np.ndarray
    distance: np.ndarray

    @property
    def targets(self) -> Sequence[ScreenTarget]:
        return self.ground_truth

    @property
    def hits(self) -> np.ndarray:
        return np.array([s == "correct" for s in self.status], dtype=bool)

    def _numbers(self, mask: np.ndarray) -> dict:
        """The metrics ScreenSpot-Pro's calc_metric_for_result_list computes, for the targets in `mask`."""
        hits = self.hits
        wrong_format = np.array([s == "wrong_format" for s in self.status], dtype=bool)
        out = {"n": int(mask.sum()), "correct": int((hits & mask).sum()), "wrong_format": int((wrong_format & mask).sum())}
        out["accuracy"] = out["correct"] / out["n"] if out["n"] else 0.0
        for ui_type in ("text", "icon"):
            kind = mask & np.array([t.ui_type == ui_type for t in self.targets], dtype=bool)
            out[f"{ui_type}_accuracy"] = int((hits & kind).sum()) / int(kind.sum()) if kind.any() else 0.0
        return out

    def _by(self, key: str) -> dict:
        values = np.array([getattr(t, key) for t in self.targets], dtype=object)
        return {name: self._numbers(values == name) for name in dict.fromkeys(values.tolist()) if name is not None}

    def headline(self) -> dict:
        releases = sorted({t.release for t in self.targets})
        out = {"benchmark": ", ".join(releases), "protocol": self.protocol, **self._numbers(np.ones(len(self.status), dtype=bool))}
        if releases and releases[0] != "ScreenSpot-Pro":
            platforms = self._by("platform")
            cells = [p[f"{kind}_accuracy"] for name, p in platforms.items() for kind in ("text", "icon")
                     if any(t.platform == name and t.ui_type == kind for t in self.targets)]
            out["macro_accuracy"] = sum(cells) / len(cells) if cells else 0.0
        return out

    def details(self) -> dict:
        out = {"platforms": self._by("platform")}
        if any(t.group is not None for t in self.targets):
            out["groups"] = self._by("group")
        if any(t.application is not None for t in self.targets):
            out["applications"] = self._by("application")
        if any(t.source is not None for t in self.targets):
            out["sources"] = self._by("source")
        return out

    def rows(self, records: Sequence[dict] | None = None) -> list[dict]:
        """One row per target: the click in pixels (None without one), status, hit and distance
        from the box; with `records` (one per target), their "text" and "error" too."""
        rows = []
        for i, t in enumerate(self.targets):
            click = None if np.isnan(self.clicks[i]).any() else [float(v) for v in self.clicks[i]]
            rows.append({"index": i, "id": t.id, "image": t.image, "instruction": t.instruction, "platform": t.platform,
                         "ui_type": t.ui_type, "group": t.group, "application": t.application, "source": t.source,
                         "box": list(t.box), "click": click, "status": self.status[i], "hit": self.status[i] == "correct",
                         "distance": float(self.distance[i]) if math.isfinite(self.distance[i]) else None})
        if records is not None:
            for row, record in zip(rows, records):
                row.update(text=record.get("text") if record else None, error=record.get("error") if record else None)
        return rows

    def worst_misses(self, count: int) -> list[int]:
        """Indices of the misses that have a click, farthest from their box first."""
        misses = np.flatnonzero(np.array([s == "wrong" for s in self.status], dtype=bool))
        order = np.argsort(-self.distance[misses], kind="stable")
        return misses[order][:count].tolist()

    @staticmethod
    def describe(summary: dict) -> list[str]:
        line = (f"{summary['benchmark']}, protocol {summary['protocol']}: accuracy {summary['accuracy'] * 100:.2f} on {summary['n']} "
                f"targets (text {summary['text_accuracy'] * 100:.2f}, icon {summary['icon_accuracy'] * 100:.2f}), "
                f"wrong format {summary['wrong_format']}")
        if "macro_accuracy" in summary:
            line += f"; mean of platform x type {summary['macro_accuracy'] * 100:.2f}"
        lines = [line]
        for title, key in (("platform", "platforms"), ("group", "groups"), ("application", "applications"), ("source", "sources")):
            for name, m in summary.get(key, {}).items():
                lines.append(f"  {title} {name}: {m['accuracy'] * 100:.2f} on {m['n']} (text {m['text_accuracy'] * 100:.2f}, "
                             f"icon {m['icon_accuracy'] * 100:.2f}, wrong format {m['wrong_format']})")
        return lines


def _prediction_ids(targets: Sequence[ScreenTarget], records: Sequence[dict]) -> list[dict]:
    """`records`, with the target id set on those that name their target by image and instruction
    instead ("img_filename" or "image", and "instruction"), where that pair names one target."""
    pairs: dict[tuple[str, str], str | None] = {}
    for t in targets:
        key = (t.image, t.instruction)
        pairs[key] = None if key in pairs else t.id  # a pair two targets share names neither
    out = []
    for record in records:
        if record_id(record, ID_KEYS) is None:
            image = record.get("img_filename", record.get("image"))
            if isinstance(image, str) and isinstance(record.get("instruction"), str) and pairs.get((image, record["instruction"])):
                record = {**record, "id": pairs[(image, record["instruction"])]}
        out.append(record)
    return out


def score_screenspot(
    targets: Sequence[ScreenTarget],
    records: Sequence[dict],
    protocol: str = "family",
    family: str | Family | None = None,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    malformed: int = 0,
    problems: InputProblems | None = None,
) -> ScreenSpotScores:
    """Score prediction records ({"id"} or {"img_filename", "instruction"}, with "text" or
    "point") against `targets`. A record's "text" is read under `protocol` (the "family" protocol
    needs `family`); one without text gives "point" in pixels. The image size comes from the
    ground truth, else the record's "image_size"; a click that needs it and has none is refused.
    A Qwen2.5-VL answer is read in the model input its line gives ("input_size"), else the one
    smart_resize makes with `min_pixels`/`max_pixels` (default: the released checkpoint's;
    ScreenSpot-Pro's Qwen2.5-VL wrapper used max_pixels 99999999)."""
    proto = get_protocol(protocol)
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise EvalInputError(f"--min-pixels {min_pixels} is more than --max-pixels {max_pixels}")
    pixels = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
    fam = get_family(family) if family is not None else None
    problems = problems if problems is not None else InputProblems()
    alignment = align([t.id for t in targets], _prediction_ids(targets, records), ID_KEYS)
    n = len(targets)
    status = ["missing"] * n
    clicks = np.full((n, 2), np.nan)
    distance = np.full(n, np.inf)
    for i, (target, record) in enumerate(zip(targets, alignment.records)):
        if record is None:
            continue
        if record.get("error") is not None and record.get("text") is None and record.get("point") is None:
            status[i] = "error"  # the run could not answer (an unreadable image, a failing model): a miss, not a format
            continue
        where = f"prediction for {target.id}"
        size = target.image_size or (None if record.get("image_size") is None else
                                     _pair(record["image_size"], "image_size", image_side, where, problems))
        has_text = isinstance(record.get("text"), str)
        if record.get("text") is not None and not has_text:
            problems.refuse_prediction(where, f"'text' is {type(record['text']).__name__}, not text")
        if size is None:
            problems.refuse_prediction(where, f"the size of {target.image} is unknown: give --image-root (where the screenshots "
                                       "are) or 'image_size' [width, height] in the prediction")
            status[i] = "refused"
            continue
        if has_text:
            answer = answer_part(record)
            if proto.needs_family:
                if fam is None:
                    raise ProtocolError(f"protocol {proto.name!r} reads model text with a family's grammar: give the family (--family)")
                scale = _record_scale(record, where, problems)
                if scale is None:
                    status[i] = "refused"
                    continue
                fraction = _family_click(answer, fam, size, input_size(record), scale, pixels)
            else:
                fraction = _seeclick_click(answer)
        elif record.get("point") is None:
            fraction = None
        else:
            point = _pair(record["point"], "point", number, where, problems)
            if point is None:
                status[i] = "refused"
                continue
            fraction = (point[0] / size[0], point[1] / size[1])
        if fraction is None:
            status[i] = "wrong_format"
            continue
        x, y = fraction
        x1, y1, x2, y2 = target.box
        width, height = size
        hit = (x1 / width <= x <= x2 / width) and (y1 / height <= y <= y2 / height)
        status[i] = "correct" if hit else "wrong"
        clicks[i] = (x * width, y * height)
        distance[i] = 0.0 if hit else math.hypot(max(x1 - clicks[i, 0], 0.0, clicks[i, 0] - x2), max(y1 - clicks[i, 1], 0.0, clicks[i, 1] - y2))
    return ScreenSpotScores(protocol=proto.name, ground_truth=list(targets), status=status, clicks=clicks, distance=distance,
                            alignment=alignment, malformed=malformed, problems=problems)


BENCHMARK = Benchmark(
    name="screenspot",
    items="targets",
    help="GUI grounding: a click inside the target's box, on ScreenSpot, ScreenSpot-v2 or ScreenSpot-Pro.",
    gt_help="Ground truth: a released annotation file (screenspot_mobile.json, ..._v2.json, a ScreenSpot-Pro annotations/*.json) or their folder.",
    pred_help="Predictions: JSON lines {\"id\" or \"img_filename\"+\"instruction\", \"text\" (raw answer) or \"point\" [x, y] in pixels}.",
    rows_option="per-target",
    rows_help="Write each target's click, status and distance from the box to this JSON-lines file.",
    draws_images=True,
    loads_images=True,
    load=load_screenspot,
    score=score_screenspot,
    options=(
        Option("protocol", "family", "family (default: the family's grammar and frame) or seeclick (SeeClick's screenspot_test.py)."),
        Option("family", None, "Model family or hub id whose grammar reads the text (protocol family).", flags=("--family", "-f")),
        Option("min_pixels", None, "Qwen2.5-VL lines without input_size: the min pixels their model input was resized with.", type=int, min=1),
        Option("max_pixels", None, "Qwen2.5-VL lines without input_size: the max pixels (ScreenSpot-Pro's wrapper: 99999999).", type=int, min=1),
    ),
    protocols=tuple((name, p.summary) for name, p in PROTOCOLS.items()),
)
