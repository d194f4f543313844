"""Line assembly, reading order and space restoration, on rendered text whose character positions are
known from the font: no OCR engine involved, so these run in milliseconds."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from vlground.ocr.confusions import fix_confusions
from vlground.ocr.layout import Piece, assemble_lines
from vlground.ocr.synthetic import Style, font_files, load_font

FONTS = font_files(Path(__file__).parent / "fonts")
# Pillow's built-in font (Aileron) sets word spaces barely wider than its letter gaps; it is covered
# by the end-to-end quality test, which measures character error rate rather than exact lines.


SERIF = Style(font=FONTS[-1], size=24)


class Page:
    """A white page; `write` draws text and returns the piece a detector would report for it: the
    text without its spaces (as PP-OCR drops them), a box one font size tall around the text (as
    PP-OCR's detector draws them), and character centres from the font's advances."""

    def __init__(self, size=(900, 400), style: Style = SERIF):
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.font = load_font(style)
        self.style = style

    def write(self, x: float, y: float, text: str, keep_spaces: bool = False) -> Piece:
        self.draw.text((x, y), text, font=self.font, fill=self.style.ink)
        left, top, right, bottom = self.draw.textbbox((x, y), text, font=self.font)
        half = self.style.size / 2
        middle_y = (top + bottom) / 2
        quad = np.array([[left - half / 2, middle_y - half], [right + half / 2, middle_y - half],
                         [right + half / 2, middle_y + half], [left - half / 2, middle_y + half]])
        chars, centers = [], []
        for i, c in enumerate(text):
            if c == " " and not keep_spaces:
                continue
            middle = (self.font.getlength(text[:i]) + self.font.getlength(text[: i + 1])) / 2
            chars.append(c)
            centers.append((x + middle, (top + bottom) / 2))
        return Piece(quad=quad, text="".join(chars), score=0.9, centers=np.array(centers))

    @property
    def gray(self) -> np.ndarray:
        return np.asarray(self.image.convert("L"))


@pytest.mark.parametrize("font", FONTS, ids=lambda f: Path(f).stem)
@pytest.mark.parametrize("size", [16, 28, 48])
def test_spaces_come_back(font, size):
    page = Page(style=Style(font=font, size=size))
    texts = ["Total due: $42.17 (incl. VAT 20%)", "Children's story time at 10am", "SKU 88412 Lot 17 Best before 12/08/2027"]
    pieces = [page.write(10, 10 + i * size * 2, text) for i, text in enumerate(texts)]
    assert [line.text for line in assemble_lines(pieces, page.gray)] == texts


def test_spaces_survive_noise_and_light_on_dark():
    page = Page(style=Style(font=FONTS[0], size=24, ink=(255, 255, 255), paper=(20, 60, 30)))
    page.image.paste((20, 60, 30), (0, 0, *page.image.size))
    piece = page.write(10, 10, "Fresh Coffee and Tea")
    noisy = np.clip(np.asarray(page.image, dtype=np.float32) + np.random.default_rng(1).normal(0, 16, (400, 900, 1)), 0, 255)
    gray = np.asarray(Image.fromarray(noisy.astype(np.uint8)).convert("L"))
    assert assemble_lines([piece], gray)[0].text == "Fresh Coffee and Tea"


def test_recognizer_spaces_are_kept_and_not_doubled():
    page = Page()
    piece = page.write(10, 10, "Open 7 days a week", keep_spaces=True)
    assert assemble_lines([piece], page.gray)[0].text == "Open 7 days a week"


def test_two_columns_are_read_one_after_the_other():
    page = Page(size=(1000, 300))
    left = ["The library will be closed", "on Monday for maintenance.", "Books may be returned"]
    right = ["Children's story time moves", "to Tuesday at ten in the", "reading room upstairs."]
    pieces = [page.write(10, 20 + 40 * i, t) for i, t in enumerate(left)]
    pieces += [page.write(520, 20 + 40 * i, t) for i, t in enumerate(right)]
    pieces.reverse()  # the detector's order must not matter
    assert [line.text for line in assemble_lines(pieces, page.gray)] == left + right


def test_a_title_over_two_columns_comes_first():
    page = Page(size=(1000, 300))
    title = page.write(300, 10, "Notice to all readers")
    left = [page.write(10, 70 + 40 * i, t) for i, t in enumerate(["Books may be returned", "through the slot by the door"])]
    right = [page.write(520, 70 + 40 * i, t) for i, t in enumerate(["Members can renew loans", "online or by phone today"])]
    lines = assemble_lines(right + left + [title], page.gray)
    assert [line.text for line in lines] == ["Notice to all readers", "Books may be returned", "through the slot by the door",
                                             "Members can renew loans", "online or by phone today"]


def test_receipt_prices_stay_on_their_item_lines():
    page = Page(size=(600, 300))
    items = [("Coffee", "3.50"), ("Blueberry Muffin", "2.25"), ("Orange Juice", "4.10"), ("TOTAL", "$9.85")]
    pieces = []
    for i, (item, price) in enumerate(items):
        pieces += [page.write(10, 10 + 40 * i, item), page.write(480, 10 + 40 * i, price)]
    lines = assemble_lines(pieces, page.gray)
    assert [line.text for line in lines] == [f"{item} {price}" for item, price in items]
    assert lines[0].box[0] < 20 and lines[0].box[2] > 500  # one box over item and price


def test_a_table_is_read_row_by_row_with_its_cells_on_one_line():
    # Code, item, quantity, amount: each half of the widest gutter (between item and quantity) spans
    # more than 8 line heights, as two columns of prose do, but its rows are short cells apart.
    page = Page(size=(1000, 420))
    rows = [("1203", "review", "10", "81.04"), ("2893", "customer", "54", "727.75"), ("7364", "total", "75", "457.84"),
            ("8579", "notice", "11", "518.66"), ("9430", "warehouse", "40", "601.08"), ("5121", "museum", "7", "12.50")]
    pieces = [page.write(x, 10 + 40 * i, cell) for i, row in enumerate(rows) for x, cell in zip((10, 190, 560, 720), row)]
    pieces.reverse()
    assert [line.text for line in assemble_lines(pieces, page.gray)] == [" ".join(row) for row in rows]


def test_two_columns_stay_apart_when_the_detector_splits_their_lines_at_word_spaces():
    page = Page(size=(1000, 300))
    left = [("The library will", "be closed"), ("on Monday for", "maintenance."), ("Books may be", "returned")]
    right = [("Children's story", "time moves"), ("to Tuesday at", "ten in the"), ("reading room", "upstairs.")]
    pieces = []
    for x, column in ((10, left), (520, right)):
        for i, (first, second) in enumerate(column):
            piece = page.write(x, 20 + 40 * i, first)
            pieces += [piece, page.write(x + page.font.getlength(first + " "), 20 + 40 * i, second)]
    pieces.reverse()
    assert [line.text for line in assemble_lines(pieces, page.gray)] == [f"{a} {b}" for a, b in left + right]


def test_a_line_split_in_overlapping_pieces_is_one_line_without_duplicates():
    page = Page()
    whole = page.write(10, 10, "reading room")
    # The detector returns "reading" and "groom": the second piece repeats the g under the first's g.
    split_x = whole.centers[6, 0]
    first_quad, second_quad = whole.quad.copy(), whole.quad.copy()
    first_quad[[1, 2], 0] = split_x + 6
    second_quad[[0, 3], 0] = split_x - 6
    first = Piece(quad=first_quad, text="reading", score=0.9, centers=whole.centers[:7])
    second = Piece(quad=second_quad, text="groom", score=0.8, centers=whole.centers[6:])
    line = assemble_lines([second, first], page.gray)[0]
    assert line.text == "reading room"
    assert line.score == pytest.approx((0.9 * 7 + 0.8 * 5) / 12)


def test_tilted_page_gives_quads_in_reading_order():
    page = Page(size=(700, 300))
    texts = ["First line of the sign", "Second line below it", "Third and last line"]
    pieces = [page.write(100, 60 + 60 * i, t) for i, t in enumerate(texts)]
    angle = math.radians(8)
    center = np.array([350.0, 150.0])
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])

    def turn(points):
        return (np.asarray(points) - center) @ rotate.T + center

    tilted = page.image.rotate(-8, center=(350, 150), resample=Image.BICUBIC, fillcolor="white")
    pieces = [Piece(quad=turn(p.quad), text=p.text, score=p.score, centers=turn(p.centers)) for p in pieces]
    lines = assemble_lines(pieces, np.asarray(tilted.convert("L")))
    assert [line.text for line in lines] == texts
    assert all(line.box is None and line.quad is not None for line in lines)
    top_left, top_right = np.array(lines[0].quad[0]), np.array(lines[0].quad[1])
    assert math.degrees(math.atan2(*(top_right - top_left)[::-1])) == pytest.approx(8, abs=0.5)


def test_no_pieces_no_lines():
    assert assemble_lines([], np.zeros((10, 10), dtype=np.uint8)) == []
    blank = Piece(quad=np.array([[0, 0], [5, 0], [5, 5], [0, 5]]), text="  ", score=0.5, centers=np.zeros((2, 2)))
    assert assemble_lines([blank], np.zeros((10, 10), dtype=np.uint8)) == []


@pytest.mark.parametrize("raw, fixed", [
    ("FlLE NOT FOUND", "FILE NOT FOUND"),
    ("l am here", "I am here"),
    ("0pen 7 days", "Open 7 days"),
    ("C0FFEE", "COFFEE"),
    ("Olive 0il", "Olive Oil"),
    ("Year 2O24", "Year 2024"),
    ("lnvoice 1042", "Invoice 1042"),
    ("Batch\uff1a B-20417\uff08new\uff09", "Batch: B-20417(new)"),
    ("\u6279\u53f7\uff1a B-20417", "\u6279\u53f7\uff1a B-20417"),  # Chinese keeps its fullwidth colon
    ("lmport duty", "Import duty"),
    ("Corner pharrnacy", "Corner pharmacy"),
    ("rnarket day", "market day"),
    # left alone: real mixes of letters and digits, and ordinary words with l
    ("B52 10am XR-200 A0 500ml", "B52 10am XR-200 A0 500ml"),
    ("like all lilies", "like all lilies"),
    ("Illinois HELLO", "Illinois HELLO"),
    ("5 lbs ltd lb", "5 lbs ltd lb"),
    ("modern corner barn learn", "modern corner barn learn"),
    ("lying llama leaves lilting", "lying llama leaves lilting"),
])
def test_look_alike_fixes(raw, fixed):
    assert fix_confusions(raw) == fixed


def test_words_join_into_the_line_and_sit_on_their_ink():
    page = Page(size=(700, 120))
    piece = page.write(20, 30, "Total due: $42.17 today")
    (line,) = assemble_lines([piece], page.gray)
    assert [w.text for w in line.parts] == ["Total", "due:", "$42.17", "today"]
    assert " ".join(w.text for w in line.parts) == line.text
    ink = np.asarray(page.gray) < 128
    columns = np.flatnonzero(ink.any(axis=0))
    boxes = [w.box for w in line.parts]
    assert boxes[0][0] == pytest.approx(columns[0], abs=4) and boxes[-1][2] == pytest.approx(columns[-1], abs=4)
    for x1, y1, x2, y2 in boxes:  # inside the line, tight around the word's ink
        rows = np.flatnonzero(ink[:, int(x1) : int(x2)].any(axis=1))
        assert line.box[1] - 1 <= y1 and y2 <= line.box[3] + 1
        assert y1 == pytest.approx(rows[0], abs=1) and y2 == pytest.approx(rows[-1] + 1, abs=1)
    for left, right in zip(boxes, boxes[1:]):  # left to right, nothing but paper between two words
        assert left[2] <= right[0] and not ink[:, int(left[2]) + 2 : int(right[0]) - 2].any()
    assert all(w.score == pytest.approx(0.9) for w in line.parts)


def test_words_of_a_tilted_line_are_quads_along_it():
    page = Page(size=(700, 300))
    piece = page.write(100, 120, "Second line below it")
    angle, center = math.radians(8), np.array([350.0, 150.0])
    rotate = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    tilted = page.image.rotate(-8, center=(350, 150), resample=Image.BICUBIC, fillcolor="white")
    turned = Piece(quad=(piece.quad - center) @ rotate.T + center, text=piece.text, score=0.9,
                   centers=(piece.centers - center) @ rotate.T + center)
    (line,) = assemble_lines([turned], np.asarray(tilted.convert("L")))
    assert [w.text for w in line.parts] == ["Second", "line", "below", "it"]
    assert all(w.box is None and len(w.quad) == 4 for w in line.parts)
    starts = [np.array(w.quad[0]) for w in line.parts]
    for a, b in zip(starts, starts[1:]):  # each word starts further along the 8-degree baseline
        assert math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])) == pytest.approx(8, abs=1.5)


def test_one_row_with_a_wide_gap_is_one_line_not_two_columns():
    """Two columns need rows of prose on both sides; a single row, however long its runs, is a row."""
    page = Page(size=(1100, 100))
    pieces = [page.write(10, 20, "The library will be closed"), page.write(640, 20, "Books may be returned")]
    assert [line.text for line in assemble_lines(pieces, page.gray)] == ["The library will be closed Books may be returned"]


@pytest.mark.parametrize("first_score, second_score, text", [(0.9, 0.8, "reading room"), (0.7, 0.8, "readinq room"),
                                                             (0.8, 0.8, "readinq room")])
def test_of_two_readings_of_an_overlap_the_surer_is_kept_and_the_second_on_a_tie(first_score, second_score, text):
    page = Page()
    whole = page.write(10, 10, "reading room")
    # The detector returns "reading" and "qroom": the second piece reads the g under the first's g as q.
    split_x = whole.centers[6, 0]
    first_quad, second_quad = whole.quad.copy(), whole.quad.copy()
    first_quad[[1, 2], 0] = split_x + 6
    second_quad[[0, 3], 0] = split_x - 6
    first = Piece(quad=first_quad, text="reading", score=first_score, centers=whole.centers[:7])
    second = Piece(quad=second_quad, text="qroom", score=second_score, centers=whole.centers[6:])
    assert assemble_lines([second, first], page.gray)[0].text == text


def _scattered_labels() -> tuple[Page, list[Piece]]:
    """Two labels on one row far apart, and a two-column pair of lines below."""
    page = Page(size=(900, 300))
    pieces = [page.write(20, 20, "Exit"), page.write(700, 20, "Stairs"),
              page.write(20, 120, "the library opens at nine every day of the week"),
              page.write(20, 170, "and closes late on fridays and saturdays too")]
    return page, pieces


@pytest.mark.parametrize("layout, lines", [
    ("auto", ["Exit Stairs", "the library opens at nine every day of the week", "and closes late on fridays and saturdays too"]),
    ("block", ["Exit Stairs", "the library opens at nine every day of the week", "and closes late on fridays and saturdays too"]),
    ("sparse", ["Exit", "Stairs", "the library opens at nine every day of the week", "and closes late on fridays and saturdays too"]),
])
def test_layout_modes_cut_the_page_as_tesseracts_psm_does(layout, lines):
    page, pieces = _scattered_labels()
    assert [line.text for line in assemble_lines(pieces, page.gray, layout)] == lines


def test_block_layout_reads_two_columns_row_by_row():
    page = Page(size=(900, 200))
    pieces = [page.write(20, 20, "the library opens at nine every"), page.write(480, 20, "parking is free for two hours"),
              page.write(20, 60, "day of the week and closes late"), page.write(480, 60, "behind the building on the left")]
    auto = [line.text for line in assemble_lines(pieces, page.gray, "auto")]
    block = [line.text for line in assemble_lines(pieces, page.gray, "block")]
    assert auto[0] == "the library opens at nine every" and auto[1] == "day of the week and closes late"
    assert block[0] == "the library opens at nine every parking is free for two hours"


def test_line_layout_keeps_a_wavy_line_as_one():
    """Words of one line set at steps of two thirds of their height: rows of their own unless told it is one line."""
    page = Page(size=(900, 160))
    pieces = [page.write(20, 20, "Fresh"), page.write(160, 40, "bread"), page.write(300, 60, "daily")]
    assert len(assemble_lines(pieces, page.gray, "auto")) == 3
    (line,) = assemble_lines(pieces, page.gray, "line")
    assert line.text.startswith("Fresh bread ") and line.text.replace(" ", "") == "Freshbreaddaily"


def test_an_unknown_layout_is_refused():
    page, pieces = _scattered_labels()
    with pytest.raises(ValueError, match="auto, block, line, sparse"):
        assemble_lines(pieces, page.gray, "columns")
