"""The interchange types: what every parser, model and task returns.

All coordinates are floats in pixels of the ORIGINAL image as displayed (EXIF orientation applied),
x to the right and y down, boxes as (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # supervision pulls in heavy modules, viz Pillow; import them only when converting or drawing
    import supervision as sv

    from vlground.viz import Drawing

Box = tuple[float, float, float, float]
Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


@dataclass(slots=True)
class Detection:
    """One grounded thing: exactly one of `box`, `point` or `quad` is set. `score` is a confidence in
    [0, 1] where the source gives one (the OCR engine does, a model's answer does not); `parts` are
    the detections it is made of (an OCR line's words)."""

    label: str | None
    box: Box | None = None
    point: Point | None = None
    quad: Quad | None = None
    text: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    score: float | None = None
    parts: tuple[Detection, ...] = ()

    def __post_init__(self) -> None:
        if (self.box is not None) + (self.point is not None) + (self.quad is not None) != 1:
            raise ValueError("a Detection holds exactly one of box, point or quad")

    @property
    def xyxy(self) -> Box:
        """The axis-aligned box that holds the geometry (a point gives an empty box)."""
        if self.box is not None:
            return self.box
        if self.point is not None:
            x, y = self.point
            return (x, y, x, y)
        xs = [p[0] for p in self.quad]
        ys = [p[1] for p in self.quad]
        return (min(xs), min(ys), max(xs), max(ys))

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape printed by `vlground parse` and `vlground detect --json`."""
        out: dict[str, Any] = {"label": self.label}
        if self.box is not None:
            out["box"] = [float(v) for v in self.box]
        elif self.point is not None:
            out["point"] = [float(v) for v in self.point]
        else:
            out["quad"] = [[float(x), float(y)] for x, y in self.quad]
        if self.text is not None:
            out["text"] = self.text
        if self.attributes:
            out["attributes"] = self.attributes
        if self.score is not None:
            out["score"] = self.score
        if self.parts:
            out["parts"] = [part.to_dict() for part in self.parts]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detection:
        quad = d.get("quad")
        return cls(
            label=d.get("label"),
            box=tuple(d["box"]) if d.get("box") is not None else None,
            point=tuple(d["point"]) if d.get("point") is not None else None,
            quad=tuple(tuple(p) for p in quad) if quad is not None else None,
            text=d.get("text"),
            attributes=d.get("attributes") or {},
            score=d.get("score"),
            parts=tuple(cls.from_dict(part) for part in d.get("parts") or ()),
        )


class Result:
    """A parsed model answer: detections on the original image plus the answer's plain text.

    `text` is the answer only. `reasoning` is what a thinking model reasoned before answering (None
    when it did not); `reasoning_cut_short` is True when its reasoning never ended (the token budget
    ran out first): the model gave no answer, so there are no detections and `text` is empty.
    `clipped` counts the coordinate values the answer wrote outside the image (past 1000 on a
    0-1000 frame, negative, past the model input's edge), each clipped to the image's edge.

    Built from Detection objects, or (by the parser, for speed) from columns of boxes: then the
    Detection objects are made the first time `detections` is read, and `xyxy` needs none.
    Treat it as immutable. `image` is the image the answer was made on (the model methods set it;
    None otherwise): with it, Jupyter displays the result as that image with the detections drawn.
    It takes no part in equality, repr or to_dict."""

    __slots__ = ("_detections", "_columns", "text", "image_size", "raw", "image", "reasoning", "reasoning_cut_short", "clipped")

    def __init__(
        self,
        detections: Sequence[Detection],
        text: str,
        image_size: tuple[int, int],
        raw: str = "",
        *,
        image: Any = None,
        reasoning: str | None = None,
        reasoning_cut_short: bool = False,
        clipped: int = 0,
    ) -> None:
        self._detections: list[Detection] | None = list(detections)
        self._columns: tuple | None = None
        self.text, self.image_size, self.raw, self.image = text, image_size, raw, image
        self.reasoning, self.reasoning_cut_short, self.clipped = reasoning, reasoning_cut_short, clipped

    @classmethod
    def from_boxes(
        cls,
        boxes: np.ndarray,
        labels: list[str | None],
        texts: list[str | None] | None,
        attributes: list[dict[str, Any] | None] | None,
        text: str,
        image_size: tuple[int, int],
        raw: str = "",
        *,
        reasoning: str | None = None,
        reasoning_cut_short: bool = False,
        clipped: int = 0,
    ) -> Result:
        """A Result of boxes only, as columns: `boxes` (N, 4) float pixels, corners in order (an
        array, or a list of 4-tuples), and per box its label, text and attributes (`texts` /
        `attributes` None when no box has any); the keyword fields are the constructor's."""
        result = cls((), text, image_size, raw, reasoning=reasoning, reasoning_cut_short=reasoning_cut_short, clipped=clipped)
        result._detections = None
        result._columns = (boxes, labels, texts, attributes)
        return result

    @property
    def detections(self) -> list[Detection]:
        if self._detections is None:
            boxes, labels, texts, attributes = self._columns
            n = len(labels)
            rows = boxes.tolist() if isinstance(boxes, np.ndarray) else boxes
            self._detections = [
                Detection(label, box=tuple(box), text=t, attributes=a or {})
                for label, box, t, a in zip(labels, rows, texts or [None] * n, attributes or [None] * n)
            ]
        return self._detections

    @property
    def xyxy(self) -> np.ndarray:
        """(N, 4) float64: the axis-aligned box of every detection (points as empty boxes)."""
        if self._columns is not None:
            return np.asarray(self._columns[0], dtype=np.float64).reshape(-1, 4)
        return np.array([d.xyxy for d in self._detections], dtype=np.float64).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self._columns[1]) if self._detections is None else len(self._detections)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Result):
            return NotImplemented
        return self._key() == other._key()

    def _key(self) -> tuple:
        return (
            self.detections, self.text, tuple(self.image_size), self.raw, self.reasoning, self.reasoning_cut_short, self.clipped
        )

    __hash__ = None  # type: ignore[assignment]  # equal by content, which is mutable lists

    def __repr__(self) -> str:
        extra = "".join(f", {name}={getattr(self, name)!r}" for name in REASONING_FIELDS if getattr(self, name))
        return f"Result(detections={self.detections!r}, text={self.text!r}, image_size={self.image_size!r}, raw={self.raw!r}{extra})"

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of `vlground parse`: "detections" and "text" (the answer), then
        "reasoning", "reasoning_cut_short" and "clipped" only where they say something (reasoning
        written, cut short, coordinates clipped), as Detection.to_dict leaves out empty fields."""
        out: dict[str, Any] = {"detections": [d.to_dict() for d in self.detections], "text": self.text}
        for name in REASONING_FIELDS:
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out

    def to_supervision(self) -> sv.Detections:
        """`supervision.Detections` with `xyxy` (quads and points as their bounding boxes) and the
        class names, texts and kinds in `data` ("class_name", "text", "kind"); `confidence` is the
        detections' scores (an OCR engine's) when every one has a score, else None (a VLM gives none).
        A detection without a label is named by what it is: "text" for an OCR line, else "object"."""
        from vlground.extras import require

        require("supervision", "to_supervision()")
        import supervision as sv

        if not len(self):
            return sv.Detections.empty()
        xyxy = self.xyxy.astype(np.float32)
        labels = [class_name(d) for d in self.detections]
        names = sorted(set(labels))
        scores = [d.score for d in self.detections]
        return sv.Detections(
            xyxy=xyxy,
            confidence=None if None in scores else np.array(scores, dtype=np.float32),
            class_id=np.array([names.index(n) for n in labels], dtype=int),
            data={
                "class_name": np.array(labels, dtype=object),
                "text": np.array([d.text or "" for d in self.detections], dtype=object),
                "kind": np.array(
                    ["box" if d.box else "point" if d.point else "quad" for d in self.detections], dtype=object
                ),
            },
        )

    def coco_categories(self) -> list[dict]:
        """COCO `categories` for this result's class names: ids 1..K in sorted name order, the ids
        `to_coco` uses when it is given none."""
        return [{"id": i, "name": name} for i, name in enumerate(sorted({class_name(d) for d in self.detections}), 1)]

    def to_coco(self, image_id: int, category_ids: dict[str, int] | None = None, score: float = 1.0) -> list[dict]:
        """COCO result entries (`bbox` as x, y, w, h; `score` each detection's own, `score` for one
        without, as a VLM's boxes are). Without `category_ids` the ids are those of
        `coco_categories()`; with it, a class name it lacks is an error rather than a silently
        dropped entry. Pass the dataset's own ids when scoring against its ground truth."""
        if category_ids is None:
            category_ids = {c["name"]: c["id"] for c in self.coco_categories()}
        missing = sorted({class_name(d) for d in self.detections if class_name(d) not in category_ids})
        if missing:
            raise KeyError(f"labels without a COCO category id: {missing}; add them to category_ids")
        out = []
        for d in self.detections:
            cat = category_ids[class_name(d)]
            x1, y1, x2, y2 = d.xyxy
            out.append({"image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": score if d.score is None else d.score})
        return out

    def drawing(self) -> Drawing:
        """The result as `vlground.viz` draws it: each detection captioned with its label and text,
        then the parts of each (an OCR line's words) as grey outlines, on `image` where it is
        known; a grid tile titled with its labels, else its text."""
        from vlground.viz import Drawing, Shape

        def shape(d: Detection, part: bool) -> Shape:
            kind = "box" if d.box is not None else "point" if d.point is not None else "quad"
            caption = " ".join(" ".join(v.split()) for v in (d.label, d.text) if v) or "?"
            return Shape(d.xyxy, kind, class_name(d), caption, quad=d.quad, word=part)

        shapes = [shape(d, False) for d in self.detections]
        shapes += [shape(p, True) for d in self.detections for p in d.parts]
        labels = ", ".join(dict.fromkeys(d.label.strip() for d in self.detections if d.label))
        return Drawing(shapes, self.image_size, self.image, labels or " ".join(self.text.split()) or "(nothing found)")

    def _repr_png_(self) -> bytes | None:
        """Jupyter's picture of the result: its image with the detections drawn (None without an
        image, and Jupyter shows the text form)."""
        from vlground.viz import png_of

        return png_of(self)


REASONING_FIELDS = ("reasoning", "reasoning_cut_short", "clipped")  # what a reasoning answer adds; to_dict writes each only where set


def class_name(detection: Detection) -> str:
    """The name a detection goes by in supervision and COCO: its label, else "text" for an OCR line,
    else "object"."""
    return detection.label or ("text" if detection.text else "object")
