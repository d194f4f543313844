"""Rendered text with known ground truth: signs, labels, receipts and two-column pages in chosen
fonts, sizes, colours and noise. The OCR tests, the samples and the benchmarks measure against these.

Everything is seeded: the same `seed` gives the same pixels and the same truth."""
from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

KINDS = ("sign", "label", "receipt", "columns")

_SIGN_WORDS = [
    "OPEN", "CLOSED", "EXIT", "Fresh Coffee", "NO PARKING", "Welcome", "Pharmacy", "Bakery", "Sale",
    "Authorized Personnel Only", "Fire Door", "Keep Clear", "Library", "Station Road", "Platform 4",
    "Ice Cream", "Books & Maps", "Hotel Illinois", "Main Street", "Lost Property", "Information",
]
_SIGN_TAILS = ["Mon-Fri 9am - 6pm", "Since 1984", "Please ring the bell", "All day breakfast", "Tel. 555 0142",
               "Open 7 days", "Entrance on left", "Back in 10 minutes", "www.example.org"]
_LABEL_KEYS = ["Product", "Batch", "Weight", "Best before", "Origin", "Item No.", "Colour", "Size", "Price",
               "Serial", "Model", "Voltage", "Made in", "Store at"]
_LABEL_VALUES = ["Olive Oil", "B-20417", "500 g", "12/08/2027", "Italy", "SKU 88412", "Dark Blue", "Large",
                 "$4.99", "SN 7731-0092", "XR-200", "230 V", "Portugal", "below 25 C", "Whole Milk", "1.5 kg",
                 "Spain", "Lot 17", "Illinois"]
_RECEIPT_ITEMS = ["Coffee", "Bagel", "Orange Juice", "Croissant", "Green Tea", "Blueberry Muffin", "Sandwich",
                  "Water 500ml", "Tomato Soup", "Salad Bowl", "Cookie", "Hot Chocolate", "Lemonade", "Toast"]
_PROSE = (
    "The library will be closed on Monday for maintenance. Books may be returned through the slot next to "
    "the main entrance. Members can renew loans online or by phone. Children's story time moves to Tuesday "
    "at 10am in the reading room. Please keep your card with you. The cafe on the first floor stays open "
    "from 8am until 4pm and serves soup, sandwiches and cakes. Parking is free for the first two hours."
).split()


@dataclass(frozen=True)
class Style:
    """How to draw: `font` is a TrueType file (None: Pillow's built-in font), `size` in pixels,
    `ink`/`paper` RGB, `noise` the std of Gaussian pixel noise (0-255 scale), `blur` a Gaussian radius
    in pixels, `jpeg` a JPEG quality to round-trip through (None: lossless)."""

    font: str | None = None
    size: int = 28
    ink: tuple[int, int, int] = (0, 0, 0)
    paper: tuple[int, int, int] = (255, 255, 255)
    noise: float = 0.0
    blur: float = 0.0
    jpeg: int | None = None


# A row is a list of (text, anchor) spans on one line; anchor is "left", "center" or "right".
Row = list[tuple[str, str]]


@dataclass(frozen=True)
class Document:
    """What to draw and what a perfect reader returns: `columns` are drawn side by side and read one
    after another; `truth` joins spans with a space and rows with a newline."""

    kind: str
    columns: list[list[Row]]

    @property
    def truth(self) -> str:
        return "\n".join(" ".join(text for text, _ in row) for column in self.columns for row in column)


def _sign(rng: random.Random) -> Document:
    rows = [[(rng.choice(_SIGN_WORDS), "center")]]
    if rng.random() < 0.7:
        rows.append([(rng.choice(_SIGN_TAILS), "center")])
    return Document("sign", [rows])


def _label(rng: random.Random) -> Document:
    keys = rng.sample(_LABEL_KEYS, rng.randint(3, 5))
    return Document("label", [[[(f"{key}: {rng.choice(_LABEL_VALUES)}", "left")] for key in keys]])


def _receipt(rng: random.Random) -> Document:
    items = rng.sample(_RECEIPT_ITEMS, rng.randint(3, 6))
    prices = [rng.randint(100, 1500) for _ in items]
    rows: list[Row] = [[("CORNER CAFE", "center")], [(f"Receipt #{rng.randint(1000, 9999)}", "center")]]
    rows += [[(item, "left"), (f"{price / 100:.2f}", "right")] for item, price in zip(items, prices)]
    rows.append([("TOTAL", "left"), (f"${sum(prices) / 100:.2f}", "right")])
    return Document("receipt", [rows])


def _columns(rng: random.Random, per_line: int = 5) -> Document:
    start = rng.randrange(0, len(_PROSE) - 8 * per_line)
    words = _PROSE[start : start + 8 * per_line]
    lines = [" ".join(words[i : i + per_line]) for i in range(0, len(words), per_line)]
    return Document("columns", [[[(line, "left")] for line in lines[:4]], [[(line, "left")] for line in lines[4:]]])


def make_document(kind: str, seed: int) -> Document:
    """A random document of `kind` (see KINDS), the same for the same seed."""
    makers = {"sign": _sign, "label": _label, "receipt": _receipt, "columns": _columns}
    if kind not in makers:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    return makers[kind](random.Random(seed))


def load_font(style: Style) -> ImageFont.FreeTypeFont:
    if style.font is None:
        return ImageFont.load_default(size=style.size)
    return ImageFont.truetype(str(style.font), style.size)


def render(document: Document, style: Style, margin: int | None = None) -> Image.Image:
    """The document drawn in `style`, as an RGB image just large enough to hold it."""
    font = load_font(style)
    pad = margin if margin is not None else style.size
    line_step = round(style.size * 1.5)
    column_gap = 3 * style.size

    def span_width(row: Row) -> float:
        return max(font.getlength(text) for text, _ in row) if len(row) == 1 else sum(
            font.getlength(text) for text, _ in row) + 4 * style.size

    widths = [max(span_width(row) for row in column) for column in document.columns]
    height = max(len(column) for column in document.columns) * line_step
    image = Image.new("RGB", (int(sum(widths) + column_gap * (len(widths) - 1)) + 2 * pad, height + 2 * pad), style.paper)
    draw = ImageDraw.Draw(image)
    left = pad
    for column, width in zip(document.columns, widths):
        for index, row in enumerate(column):
            y = pad + index * line_step
            for text, anchor in row:
                x = {"left": left, "center": left + width / 2, "right": left + width}[anchor]
                draw.text((x, y), text, font=font, fill=style.ink, anchor={"left": "la", "center": "ma", "right": "ra"}[anchor])
        left += width + column_gap
    return degrade(image, style)


def degrade(image: Image.Image, style: Style) -> Image.Image:
    """Blur, then noise, then JPEG, as a camera and an encoder would."""
    if style.blur:
        image = image.filter(ImageFilter.GaussianBlur(style.blur))
    if style.noise:
        rng = np.random.default_rng(int(style.noise * 1000))
        pixels = np.asarray(image).astype(np.float32) + rng.normal(0, style.noise, (image.height, image.width, 1))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if style.jpeg:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=style.jpeg)
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    return image


def font_files(folder: str | Path) -> list[str]:
    """The .ttf files in `folder`, sorted, as strings (for Style.font)."""
    return sorted(str(p) for p in Path(folder).glob("*.ttf"))


_COLOURS = [((0, 0, 0), (255, 255, 255)), ((20, 40, 120), (250, 240, 200)), ((255, 255, 255), (30, 90, 40)),
            ((200, 0, 0), (255, 255, 255)), ((60, 60, 60), (215, 215, 205))]


def varied_cases(count: int, seed: int, fonts: list[str | None]) -> list[tuple[Document, Style]]:
    """`count` documents cycling through the kinds and fonts, each with a random size (18-44 px),
    colour pair, noise (0-16), blur (0 or 0.6 px) and JPEG (none or quality 70)."""
    rng = random.Random(seed)
    cases = []
    for index in range(count):
        ink, paper = rng.choice(_COLOURS)
        style = Style(font=fonts[index % len(fonts)], size=rng.choice([18, 24, 32, 44]), ink=ink, paper=paper,
                      noise=rng.choice([0.0, 8.0, 16.0]), blur=rng.choice([0.0, 0.6]), jpeg=rng.choice([None, 70]))
        cases.append((make_document(KINDS[index % len(KINDS)], seed * 1000 + index), style))
    return cases
