"""Drawing results on images with supervision's annotators, for notebooks and `--annotate`.

Labels are drawn with a bundled font that covers Latin and CJK (WenQuanYi Micro Hei, Apache-2.0), so
a label such as "击掌" is readable rather than a row of boxes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from vlground.results import Result

FONT = Path(__file__).parent / "fonts" / "wqy-microhei.ttc"


def annotate(image: Image.Image, result: Result, font_path: str | Path | None = None) -> Image.Image:
    """A copy of `image` with the result's boxes, quads and points drawn, each labelled with its
    label (and its text, for OCR lines). `image` must be the original the result refers to."""
    import supervision as sv

    if image.size != tuple(result.image_size):
        raise ValueError(f"the result belongs to an image of {result.image_size}, not {image.size}")
    scene = np.array(image.convert("RGB"))
    detections = result.to_supervision()
    if len(detections) == 0:
        return Image.fromarray(scene)
    size = max(12, round(min(image.size) / 40))
    thickness = max(2, round(min(image.size) / 300))
    boxes = np.array([d.box is not None for d in result.detections])
    points = np.array([d.point is not None for d in result.detections])
    if boxes.any():
        scene = sv.BoxAnnotator(thickness=thickness).annotate(scene, detections[boxes])
    for d, class_id in zip(result.detections, detections.class_id):
        if d.quad is not None:
            color = sv.ColorPalette.DEFAULT.by_idx(int(class_id))
            scene = sv.draw_polygon(scene, np.rint(d.quad).astype(np.int64), color, thickness)
    if points.any():
        scene = sv.DotAnnotator(radius=thickness * 3).annotate(scene, detections[points])
    labels = [" ".join(v for v in (d.label, d.text) if v) or "?" for d in result.detections]
    labeller = sv.RichLabelAnnotator(font_path=str(font_path or FONT), font_size=size, text_padding=max(2, size // 4))
    annotated = labeller.annotate(scene, detections, labels=labels)
    return annotated if isinstance(annotated, Image.Image) else Image.fromarray(annotated)
