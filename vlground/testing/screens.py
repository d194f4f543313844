"""Synthetic screenshots with known click targets: buttons, text fields and icons, each with a text
label, laid out without overlap on a window of a random size. The truth is a ScreenSpot-Pro record
per element (`id`, `img_filename`, `bbox` as [x1, y1, x2, y2] pixels, `img_size`, `instruction`,
`ui_type` text or icon), so what reads ScreenSpot ground truth (`vlground eval screenspot`,
`vlground convert --from screenspot`) reads these, and a click is right when it falls inside `bbox`.

Everything is seeded: the same `seed` gives the same pixels and the same truth. Drawing reuses the
shapes of `vlground.testing.shapes` and the fonts of `vlground.ocr.synthetic`."""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vlground.ocr.synthetic import Style, load_font
from vlground.testing.shapes import COLOURS, SHAPES, draw_shape

KINDS = ("button", "field", "icon")
_LABELS = {
    "button": ["OK", "Cancel", "Submit", "Save", "Delete", "Next", "Back", "Sign in", "Send", "Open", "Close", "Apply"],
    "field": ["Search", "Email", "Password", "Name", "Address", "Phone", "City", "Username", "Message", "Date"],
    "icon": ["Settings", "Mail", "Music", "Photos", "Files", "Calendar", "Maps", "Trash", "Camera", "Notes", "Clock"],
}
_THEMES = [  # (window, text, button fill, button text, field fill, field border)
    ((240, 240, 240), (30, 30, 30), (40, 110, 220), (255, 255, 255), (255, 255, 255), (150, 150, 150)),
    ((250, 248, 240), (20, 20, 60), (30, 150, 90), (255, 255, 255), (255, 255, 250), (120, 120, 140)),
    ((40, 44, 52), (220, 220, 220), (200, 90, 40), (255, 255, 255), (60, 64, 72), (140, 140, 150)),
]
FONT_SIZE = 13
GAP = 6  # free pixels kept between elements and to the window's edge
PLACEMENT_TRIES = 200  # random positions tried per element before it is left off the screen


@dataclass(frozen=True)
class Element:
    """One clickable element: its `kind` (KINDS), the `label` written on or under it, and its `box`
    (x1, y1, x2, y2) in pixels of the screenshot; every pixel of the box is part of the element."""

    kind: str
    label: str
    box: tuple[int, int, int, int]

    @property
    def instruction(self) -> str:
        """The words that name it, as a ScreenSpot instruction: "the Save button"."""
        return f"the {self.label} {self.kind}"

    def record(self, id: str, img_filename: str, img_size: tuple[int, int]) -> dict[str, Any]:
        """Its ground-truth record in ScreenSpot-Pro's layout (ui_type text for a labelled widget,
        icon for an icon, as ScreenSpot splits them; the kind as the application)."""
        return {"id": id, "img_filename": img_filename, "bbox": list(self.box), "img_size": list(img_size),
                "instruction": self.instruction, "ui_type": "icon" if self.kind == "icon" else "text",
                "platform": "synthetic", "application": self.kind, "group": "synthetic"}


@dataclass(frozen=True)
class Screen:
    """A rendered screenshot and its elements in drawing order."""

    image: Image.Image
    elements: tuple[Element, ...]

    def records(self, img_filename: str) -> list[dict[str, Any]]:
        """The records of its elements, with ids `img_filename#0`, `#1`, ..."""
        return [element.record(f"{img_filename}#{i}", img_filename, self.image.size) for i, element in enumerate(self.elements)]


def _size(kind: str, label: str, font, rng: random.Random) -> tuple[int, int]:
    """(width, height) the element needs: text plus padding; an icon is a glyph over its label."""
    text = int(font.getlength(label))
    if kind == "button":
        return text + rng.randint(16, 30), FONT_SIZE + rng.randint(10, 16)
    if kind == "field":
        return max(text + 20, rng.randint(90, 150)), FONT_SIZE + rng.randint(10, 14)
    return max(text, 28) + 4, 28 + FONT_SIZE + 8


def _place(size: tuple[int, int], screen: tuple[int, int], taken: list[tuple[int, int, int, int]],
           rng: random.Random) -> tuple[int, int, int, int] | None:
    """A box of `size` inside `screen` keeping GAP from the edge and from every taken box, or None."""
    (w, h), (width, height) = size, screen
    if w + 2 * GAP > width or h + 2 * GAP > height:
        return None
    for _ in range(PLACEMENT_TRIES):
        x, y = rng.randint(GAP, width - w - GAP), rng.randint(GAP, height - h - GAP)
        if all(x + w + GAP <= a or b + GAP <= x or y + h + GAP <= c or d + GAP <= y for a, c, b, d in taken):
            return x, y, x + w, y + h
    return None


def _draw(draw: ImageDraw.ImageDraw, element: Element, theme, font, rng: random.Random) -> None:
    window, text, fill, on_fill, field, border = theme
    x1, y1, x2, y2 = element.box
    if element.kind == "button":
        draw.rounded_rectangle(element.box, radius=4, fill=fill)
        draw.text(((x1 + x2) / 2, (y1 + y2) / 2), element.label, font=font, fill=on_fill, anchor="mm")
    elif element.kind == "field":
        draw.rectangle(element.box, fill=field, outline=border)
        draw.text((x1 + 6, (y1 + y2) / 2), element.label, font=font, fill=border, anchor="lm")
    else:
        centre = (x1 + x2) // 2
        draw_shape(draw, rng.choice(SHAPES), (centre - 14, y1, centre + 14, y1 + 28), rng.choice(list(COLOURS.values())))
        draw.text((centre, y2), element.label, font=font, fill=text, anchor="md")


def make_screen(seed: int, size: tuple[int, int] | None = None, count: int = 4) -> Screen:
    """A screenshot of `size` (width, height; random between 320x200 and 560x400 when None) holding up
    to `count` elements of random kinds and labels (each label once per screen); fewer only when the
    window is too small for them."""
    rng = random.Random(seed)
    width, height = size if size is not None else (rng.randint(320, 560), rng.randint(200, 400))
    theme = rng.choice(_THEMES)
    font = load_font(Style(size=FONT_SIZE))
    image = Image.new("RGB", (width, height), theme[0])
    draw = ImageDraw.Draw(image)
    elements: list[Element] = []
    used: set[str] = set()
    for _ in range(count):
        kind = rng.choice(KINDS)
        label = rng.choice([name for name in _LABELS[kind] if name not in used])
        box = _place(_size(kind, label, font, rng), (width, height), [e.box for e in elements], rng)
        if box is None:
            continue
        used.add(label)
        element = Element(kind, label, box)
        _draw(draw, element, theme, font, rng)
        elements.append(element)
    return Screen(image, tuple(elements))


def make_screenspot_dataset(folder: str | Path, screens: int = 8, elements: int = 4, seed: int = 0,
                            size: tuple[int, int] | None = None) -> Path:
    """Write `screens` screenshots (screen_00.png, ...) and `screenspot_synthetic.json` (a JSON list of
    ScreenSpot-Pro records, one per element) into `folder`; return the JSON's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(screens):
        screen = make_screen(seed * 1000 + index, size, elements)
        name = f"screen_{index:02d}.png"
        screen.image.save(folder / name)
        records += screen.records(name)
    path = folder / "screenspot_synthetic.json"
    path.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return path
