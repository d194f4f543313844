"""Drawing results on images with supervision's annotators: `annotate` for one picture, `show` for
results (one, or a list as a grid) whose image is passed or known, and `png_of`, which is what a
Result or an OCR record hands Jupyter to display itself.

Labels are drawn with a bundled font that covers Latin and CJK (WenQuanYi Micro Hei, Apache-2.0), so
a label such as "击掌" is readable rather than a row of boxes. A label sits above its box when there is
room and just under the box's top edge when there is not, and never leaves the image."""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vlground.imageio import ImageSource, load_image
from vlground.results import Detection, Result

FONT = Path(__file__).parent / "fonts" / "wqy-microhei.ttc"
DISPLAY_SIDE = 1024  # longest side of a picture handed to Jupyter, so notebooks stay small
TILE_SIDE = 320  # longest side of one picture in a grid
WORD_COLOR = "#8c8c8c"  # OCR words, under their lines' colours


def as_result(drawable: Any) -> Result:
    """The Result to draw: a Result itself, or an OCR record's lines as detections carrying their
    text, and their words (where the engine gives them) as detections marked `attributes["word"]`."""
    if isinstance(drawable, Result):
        return drawable
    lines = getattr(drawable, "lines", None)
    if lines is None:
        raise TypeError(f"cannot draw a {type(drawable).__name__}: give a Result or an OCR record")
    if getattr(drawable, "error", None) or drawable.width is None:
        raise ValueError(f"{drawable.path}: the OCR record has no page to draw ({drawable.error})")
    detections = [Detection(label=None, box=line.box, quad=line.quad, text=line.text) for line in lines]
    detections += [
        Detection(label=None, box=word.box, quad=word.quad, attributes={"word": True})
        for line in lines for word in getattr(line, "words", ())
    ]
    return Result(detections, drawable.text, (drawable.width, drawable.height))


def annotate(image: ImageSource, result: Any, font_path: str | Path | None = None) -> Image.Image:
    """A copy of `image` (a path, PIL image or array, loaded as the model methods load it) with the
    result's boxes, quads and points drawn, each labelled with its label and its text (OCR lines;
    an OCR record's words, where it has them, as thin grey outlines). `image` must be the original
    the result refers to; `result` may also be an OCR record."""
    import supervision as sv

    result = as_result(result)
    picture = _checked(load_image(image), result)
    scene = np.ascontiguousarray(np.array(picture)[:, :, ::-1])  # supervision draws on BGR arrays, as OpenCV does
    thickness = max(2, round(min(picture.size) / 300))
    shapes = []
    for d in result.detections:
        if d.attributes.get("word"):
            x1, y1, x2, y2 = d.xyxy
            corners = d.quad if d.quad is not None else ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
            scene = sv.draw_polygon(scene, np.rint(corners).astype(np.int64), sv.Color.from_hex(WORD_COLOR), max(1, thickness // 2))
        else:
            shapes.append(d)
    if shapes:
        scene = _draw_shapes(scene, Result(shapes, result.text, result.image_size), thickness, str(font_path or FONT))
    return Image.fromarray(np.ascontiguousarray(scene[:, :, ::-1]))


def _draw_shapes(scene: np.ndarray, result: Result, thickness: int, font_path: str) -> np.ndarray:
    """Boxes, quads and points in their class colours, then their labels."""
    import supervision as sv

    detections = result.to_supervision()
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
    labels = [" ".join(" ".join(v.split()) for v in (d.label, d.text) if v) or "?" for d in result.detections]
    return _draw_labels(scene, detections, labels, font_path)


def _checked(picture: Image.Image, result: Result) -> Image.Image:
    if picture.size != tuple(result.image_size):
        raise ValueError(f"the result belongs to an image of {tuple(result.image_size)}, not {picture.size}")
    return picture


def _draw_labels(scene: np.ndarray, detections, labels: list[str], font_path: str) -> np.ndarray:
    """Labels above their boxes where they fit, else moved down by their height so they start at
    the box's top edge; supervision's smart positioning keeps them inside the image."""
    import supervision as sv

    size = max(12, round(min(scene.shape[:2]) / 40))
    padding = max(2, size // 4)
    font = ImageFont.truetype(font_path, size)
    heights = np.array([bottom - top + 2 * padding for _, top, _, bottom in map(font.getbbox, labels)])
    no_room = detections.xyxy[:, 1] < heights
    for mask, shift in ((~no_room, 0), (no_room, int(heights[no_room].max(initial=0)))):
        if mask.any():
            labeller = sv.RichLabelAnnotator(
                font_path=font_path, font_size=size, text_padding=padding, text_offset=(0, shift), smart_position=True
            )
            scene = labeller.annotate(scene, detections[mask], labels=[t for t, m in zip(labels, mask) if m])
    return scene


def _known_image(result: Any) -> ImageSource | None:
    """The image a result was answered on (set by the model methods), or an OCR record's file
    (not for a page of a document: its path names the PDF or TIFF, not the page image)."""
    image = getattr(result, "image", None)
    if image is None and not isinstance(result, Result) and getattr(result, "page", None) is None:
        image = getattr(result, "path", None)
    return image


def _picture(image: ImageSource | None, result: Any, side: int | None) -> Image.Image:
    """`result` drawn on its image; with `side`, on the image shrunk to at most `side` pixels a side
    (the geometry scaled with it), so that lines and labels keep a readable size."""
    image = image if image is not None else _known_image(result)
    if image is None:
        raise ValueError("this result does not know its image: pass it, as in vlground.show(image, result)")
    result = as_result(result)
    picture = _checked(load_image(image), result)
    if side is None or max(picture.size) <= side:
        return annotate(picture, result)
    small = picture.copy()
    small.thumbnail((side, side))
    sx, sy = small.width / picture.width, small.height / picture.height

    def move(xy):
        return None if xy is None else tuple(v * (sy if i % 2 else sx) for i, v in enumerate(xy))

    detections = [
        Detection(d.label, box=move(d.box), point=move(d.point), quad=d.quad and tuple(map(move, d.quad)), text=d.text,
                  attributes=d.attributes)
        for d in result.detections
    ]
    return annotate(small, Result(detections, result.text, small.size))


def _caption(result: Any) -> str:
    """A grid tile's title: an OCR record's file name; a result's labels, else its text."""
    if not isinstance(result, Result):
        return Path(result.path).name
    labels = ", ".join(dict.fromkeys(d.label.strip() for d in result.detections if d.label))
    return labels or " ".join(result.text.split()) or "(nothing found)"


def grid(pictures: Sequence[Image.Image], titles: Sequence[str] | None = None, columns: int = 3) -> Image.Image:
    """Pictures side by side, `columns` to a row, each shrunk to TILE_SIDE with its title below."""
    if not pictures:
        raise ValueError("nothing to show: the list of results is empty")
    font = ImageFont.truetype(str(FONT), 14)
    columns = max(1, min(columns, len(pictures)))
    rows = -(-len(pictures) // columns)
    title_height = 22 if titles else 0
    canvas = Image.new("RGB", (columns * (TILE_SIDE + 8), rows * (TILE_SIDE + title_height + 8)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, picture in enumerate(pictures):
        tile = picture.copy()
        tile.thumbnail((TILE_SIDE, TILE_SIDE))
        x = (i % columns) * (TILE_SIDE + 8) + 4
        y = (i // columns) * (TILE_SIDE + title_height + 8) + 4
        canvas.paste(tile, (x + (TILE_SIDE - tile.width) // 2, y + (TILE_SIDE - tile.height) // 2))
        if titles:
            title = titles[i]
            while len(title) > 1 and draw.textlength(title, font=font) > TILE_SIDE:
                title = title[:-2] + "…"
            draw.text((x, y + TILE_SIDE + 3), title, fill="black", font=font)
    return canvas


def show(
    image: Any, result: Any = None, *, side: int | None = None, columns: int = 3, titles: Sequence[str] | None = None
) -> Image.Image:
    """The picture of a result drawn on its image, anywhere (a notebook displays the returned image;
    a script can save it). `show(image, result)`; `show(result)` when the result knows its image
    (the model methods' results do; an OCR record names its file); a list of results, with one image
    for all, a list of images or none, gives a grid, each picture TILE_SIDE pixels at most and titled
    with `titles` or with its result's labels (else its text). `side` shrinks a single picture to at
    most that many pixels a side (drawn after shrinking, so labels stay legible)."""
    if result is None:
        image, result = None, image
    if not isinstance(result, (list, tuple)):
        return _picture(image, result, side)
    images = list(image) if isinstance(image, (list, tuple)) else [image] * len(result)
    if len(images) != len(result):
        raise ValueError(f"{len(images)} images for {len(result)} results: give one image per result, or one for all")
    if titles is not None and len(titles) != len(result):
        raise ValueError(f"{len(titles)} titles for {len(result)} results")
    pictures = [_picture(i, r, TILE_SIDE) for i, r in zip(images, result)]
    return grid(pictures, titles or [_caption(r) for r in result], columns)


def png_of(drawable: Any) -> bytes | None:
    """PNG bytes of a result (or a list of them) drawn on its image, at most DISPLAY_SIDE pixels on
    a side, for Jupyter's `_repr_png_`; None when the image is not known (Jupyter then shows text)."""
    items = drawable if isinstance(drawable, (list, tuple)) else [drawable]
    if not items or any(_known_image(r) is None for r in items):
        return None
    picture = show(drawable, side=DISPLAY_SIDE)
    picture.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))  # a grid of many rows
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
