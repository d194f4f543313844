"""The interchange types: what every parser, model and task returns.

All coordinates are floats in pixels of the ORIGINAL image as displayed (EXIF orientation applied),
x to the right and y down, boxes as (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # supervision pulls in heavy modules; import it only when converting
    import supervision as sv

Box = tuple[float, float, float, float]
Point = tuple[float, float]
Quad = tuple[Point, Point, Point, Point]


@dataclass(slots=True)
class Detection:
    """One grounded thing: exactly one of `box`, `point` or `quad` is set."""

    label: str | None
    box: Box | None = None
    point: Point | None = None
    quad: Quad | None = None
    text: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

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
        )


@dataclass(frozen=True)
class Result:
    """A parsed model answer: detections on the original image plus the answer's plain text."""

    detections: list[Detection]
    text: str
    image_size: tuple[int, int]
    raw: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"detections": [d.to_dict() for d in self.detections], "text": self.text}

    def to_supervision(self) -> sv.Detections:
        """`supervision.Detections` with `xyxy` (quads and points as their bounding boxes) and the
        labels, texts and kinds in `data` ("class_name", "text", "kind")."""
        import numpy as np
        import supervision as sv

        if not self.detections:
            return sv.Detections.empty()
        xyxy = np.array([d.xyxy for d in self.detections], dtype=np.float32)
        labels = [d.label or "" for d in self.detections]
        names = sorted(set(labels))
        return sv.Detections(
            xyxy=xyxy,
            class_id=np.array([names.index(n) for n in labels], dtype=int),
            data={
                "class_name": np.array(labels, dtype=object),
                "text": np.array([d.text or "" for d in self.detections], dtype=object),
                "kind": np.array(
                    ["box" if d.box else "point" if d.point else "quad" for d in self.detections], dtype=object
                ),
            },
        )

    def to_coco(self, image_id: int, category_ids: dict[str, int] | None = None, score: float = 1.0) -> list[dict]:
        """COCO result entries (`bbox` as x, y, w, h). Without `category_ids` every entry gets
        category 1; with it, a label it lacks is an error rather than a silently dropped entry."""
        missing = sorted({str(d.label) for d in self.detections if category_ids is not None and d.label not in category_ids})
        if missing:
            raise KeyError(f"labels without a COCO category id: {missing}; add them to category_ids")
        out = []
        for d in self.detections:
            cat = 1 if category_ids is None else category_ids[d.label]
            x1, y1, x2, y2 = d.xyxy
            out.append({"image_id": image_id, "category_id": cat, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
        return out
