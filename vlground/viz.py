"""Drawing results on images with Pillow: `annotate` for one picture, `show` for
results (one, or a list as a grid) whose image is passed or known, and `png_of`, which is what a
Result or an OCR record hands Jupyter to display itself. It knows no result type: what it draws is a
`Drawing` (shapes in pixels, the image size, the image where known), which a result makes of itself
with its `drawing()` method.

Labels are drawn with a bundled font that covers Latin and CJK (WenQuanYi Micro Hei, Apache-2.0), so
a label such as "击掌" is readable rather than a row of boxes. A label sits above its box when there is
room and just under the box's top edge when there is not, and is kept inside the image.

Why Pillow and not supervision's annotators: supervision requires av and scipy (250 MB, near half
the light install) for what is here a few outlines, dots and labelled rectangles; supervision stays
the `supervision` extra, for `to_supervision()`."""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from vlground.io.images import ImageSource, load_image

FONT = Path(__file__).parent / "fonts" / "wqy-microhei.ttc"
DISPLAY_SIDE = 1024  # longest side of a picture handed to Jupyter, so notebooks stay small
TILE_SIDE = 320  # longest side of one picture in a grid
WORD_COLOR = "#8c8c8c"  # OCR words, under their lines' colours
# one colour per class name (in sorted order, repeating), bright enough to carry white label text
PALETTE = ("#8e44e8", "#e8402f", "#1f8fe0", "#e8870e", "#23a348", "#d6338a", "#0f9e9a", "#8a6d3b", "#4659d9", "#7e9e00")

Corners = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Shape:
    """One thing to draw, in pixels of the image: its bounding box `xyxy` (a point's is empty), the
    corners of a quad, the class `name` that picks its colour, and the `caption` written beside it.
    A `word` (an OCR line's part) is drawn as a thin grey outline without a caption."""

    xyxy: tuple[float, float, float, float]
    kind: str  # "box", "point" or "quad"
    name: str
    caption: str
    quad: Corners | None = None
    word: bool = False

    def scaled(self, sx: float, sy: float) -> Shape:
        x1, y1, x2, y2 = self.xyxy
        quad = self.quad and tuple((x * sx, y * sy) for x, y in self.quad)
        return replace(self, xyxy=(x1 * sx, y1 * sy, x2 * sx, y2 * sy), quad=quad)


@dataclass(frozen=True)
class Drawing:
    """What a drawable object (a Result, an OCR record) hands this module through its `drawing()`
    method: its shapes, the size of the image they belong to, that image where it is known (else
    None) and a title for a grid tile. This module knows no result type; the types convert
    themselves."""

    shapes: list[Shape]
    image_size: tuple[int, int]
    image: ImageSource | None
    title: str


def drawing_of(drawable: Any) -> Drawing:
    """`drawable.drawing()`; a TypeError naming what cannot be drawn."""
    if isinstance(drawable, Drawing):
        return drawable
    if isinstance(drawable, dict):
        raise TypeError("cannot draw a dict: read a JSONL file of records with vlground.read_records(path), "
                        "or one JSON object with vlground.Record.from_dict(d)")
    if not callable(getattr(drawable, "drawing", None)):
        raise TypeError(f"cannot draw a {type(drawable).__name__}: give a Result or a Record")
    return drawable.drawing()


def annotate(image: ImageSource, result: Any, font_path: str | Path | None = None) -> Image.Image:
    """A copy of `image` (a path, PIL image or array, loaded as the model methods load it) with the
    result's boxes, quads and points drawn, each labelled with its label and its text (OCR lines;
    an OCR record's words, where it has them, as thin grey outlines). `image` must be the original
    the result refers to; `result` may also be an OCR record."""
    return _annotate(load_image(image), drawing_of(result), font_path)


def _annotate(picture: Image.Image, drawing: Drawing, font_path: str | Path | None = None) -> Image.Image:
    picture = _checked(picture, drawing).convert("RGB")  # a copy: the caller's image is left as it was
    draw = ImageDraw.Draw(picture)
    thickness = max(2, round(min(picture.size) / 300))
    names = sorted({s.name for s in drawing.shapes if not s.word})
    for shape in drawing.shapes:
        if shape.word:
            _outline(draw, picture.size, shape, WORD_COLOR, max(1, thickness // 2))
    shapes = [s for s in drawing.shapes if not s.word]
    colours = [PALETTE[names.index(s.name) % len(PALETTE)] for s in shapes]
    for shape, colour in zip(shapes, colours):
        if shape.kind == "point":
            x, y, radius = shape.xyxy[0], shape.xyxy[1], thickness * 3
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
        else:
            _outline(draw, picture.size, shape, colour, thickness)
    _draw_labels(draw, picture.size, shapes, colours, str(font_path or FONT))
    return picture


def _outline(draw: ImageDraw.ImageDraw, size: tuple[int, int], shape: Shape, colour: str, width: int) -> None:
    """A box's or quad's outline, centred on its edges, corners at whole pixels (so edges are crisp)
    and inside the image (so a box that ends at the border shows that edge)."""
    x1, y1, x2, y2 = shape.xyxy
    corners = shape.quad if shape.quad is not None else ((x1, y1), (x2, y1), (x2, y2), (x1, y2))
    right, bottom = size[0] - 1, size[1] - 1
    points = [(min(max(round(x), 0), right), min(max(round(y), 0), bottom)) for x, y in corners]
    draw.line([*points, points[0], points[1]], fill=colour, width=width, joint="curve")


def _draw_labels(draw: ImageDraw.ImageDraw, size: tuple[int, int], shapes: list[Shape], colours: list[str],
                 font_path: str) -> None:
    """Each caption in white on its shape's colour, at the shape's top-left corner: above it where
    there is room, else just under its top edge; moved down past each earlier label it would cover
    (in their order), and kept inside the image."""
    font_size = max(12, round(min(size) / 40))
    padding = max(2, font_size // 4)
    font = ImageFont.truetype(font_path, font_size)
    placed: list[tuple[int, int, int, int]] = []
    for shape, colour in zip(shapes, colours):
        left, top, right, bottom = font.getbbox(shape.caption)
        width, height = right - left + 2 * padding, bottom - top + 2 * padding
        x, y = round(shape.xyxy[0]), round(shape.xyxy[1])
        y = y - height if y >= height else y
        for other in placed:
            if x < other[2] and other[0] < x + width and y < other[3] and other[1] < y + height:
                y = other[3]
        x, y = max(0, min(x, size[0] - width)), max(0, min(y, size[1] - height))
        placed.append((x, y, x + width, y + height))
        draw.rectangle((x, y, x + width - 1, y + height - 1), fill=colour)
        draw.text((x + padding - left, y + padding - top), shape.caption, fill="white", font=font)


def _checked(picture: Image.Image, drawing: Drawing) -> Image.Image:
    if picture.size != tuple(drawing.image_size):
        raise ValueError(f"the result belongs to an image of {tuple(drawing.image_size)}, not {picture.size}")
    return picture


def _picture(image: ImageSource | None, drawing: Drawing, side: int | None) -> Image.Image:
    """The drawing on its image; with `side`, on the image shrunk to at most `side` pixels a side
    (the geometry scaled with it), so that lines and labels keep a readable size."""
    image = image if image is not None else drawing.image
    if image is None:
        raise ValueError("this result does not know its image: pass it, as in vlground.show(image, result)")
    picture = _checked(load_image(image), drawing)
    if side is None or max(picture.size) <= side:
        return _annotate(picture, drawing)
    small = picture.copy()
    small.thumbnail((side, side))
    sx, sy = small.width / picture.width, small.height / picture.height
    shapes = [shape.scaled(sx, sy) for shape in drawing.shapes]
    return _annotate(small, replace(drawing, shapes=shapes, image_size=small.size))


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
        return _picture(image, drawing_of(result), side)
    images = list(image) if isinstance(image, (list, tuple)) else [image] * len(result)
    if len(images) != len(result):
        raise ValueError(f"{len(images)} images for {len(result)} results: give one image per result, or one for all")
    if titles is not None and len(titles) != len(result):
        raise ValueError(f"{len(titles)} titles for {len(result)} results")
    drawings = [drawing_of(r) for r in result]
    pictures = [_picture(i, d, TILE_SIDE) for i, d in zip(images, drawings)]
    return grid(pictures, titles or [d.title for d in drawings], columns)


def png_of(drawable: Any) -> bytes | None:
    """PNG bytes of a result (or a list of them) drawn on its image, at most DISPLAY_SIDE pixels on
    a side, for Jupyter's `_repr_png_`; None when the image is not known (Jupyter then shows text)."""
    items = drawable if isinstance(drawable, (list, tuple)) else [drawable]
    if not items or any(drawing_of(r).image is None for r in items):
        return None
    picture = show(drawable, side=DISPLAY_SIDE)
    picture.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE))  # a grid of many rows
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
