"""Pages turned 90, 180 and 270 degrees are read upright, per page, and the record says how they were
turned; a page whose direction the recognizer cannot tell gets a warning instead of silent garbage."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from vlground.eval.ocr import edit_counts
from vlground.ocr import orientation
from vlground.ocr.ppocr import built_in_engine
from vlground.ocr.synthetic import Document, Style, render

from ocr_app import ocr_app, read_records

FONTS = Path(__file__).parent / "fonts"
RECEIPT = Document("receipt", [[[("CORNER CAFE", "center")], [("Receipt #4821", "center")],
                                [("Green Tea", "left"), ("2.40", "right")], [("Blueberry Muffin", "left"), ("3.15", "right")],
                                [("TOTAL", "left"), ("$5.55", "right")]]])
LABEL = Document("label", [[[("Product: Olive Oil", "left")], [("Best before: 12/08/2027", "left")],
                            [("Origin: Portugal", "left")]]])


@pytest.fixture(scope="module")
def engine():
    return built_in_engine(threads=1)


def _cer(text: str, truth: str) -> float:
    counts = edit_counts(truth, text)
    return counts["char_edits"] / counts["ref_chars"]


@pytest.mark.parametrize("document,font,size", [(RECEIPT, "DejaVuSerif.ttf", 30), (LABEL, "DejaVuSansMono-Bold.ttf", 24)])
@pytest.mark.parametrize("turned", [0, 90, 180, 270])
def test_a_turned_page_is_read_as_well_as_the_upright_one(engine, document, font, size, turned):
    upright = render(document, Style(font=str(FONTS / font), size=size, noise=6.0))
    page = engine.read_one(upright.rotate(turned, expand=True))  # PIL turns counter-clockwise
    assert page.rotation == turned  # undoing a counter-clockwise turn: the same turn clockwise
    assert page.warnings == ()
    assert _cer(page.text, document.truth) <= _cer(engine.read_one(upright).text, document.truth) + 0.01


def test_lines_of_a_turned_page_sit_on_their_ink_in_the_image_as_given(engine):
    upright = render(LABEL, Style(font=str(FONTS / "DejaVuSerif.ttf"), size=32))
    turned = upright.rotate(90, expand=True)
    ink = np.argwhere(np.asarray(turned.convert("L")) < 128)
    page = engine.read_one(turned)
    for line in page.lines:
        quad = np.asarray(line.quad)  # a sideways line is a quad, starting at its text's top-left
        assert quad[1][1] < quad[0][1]  # the text runs up the image: its top-right corner is above
        for word in line.parts:
            corners = np.asarray(word.quad)
            inside = ((ink[:, 1] >= corners[:, 0].min()) & (ink[:, 1] <= corners[:, 0].max())
                      & (ink[:, 0] >= corners[:, 1].min()) & (ink[:, 0] <= corners[:, 1].max()))
            assert inside.any(), word.text


def test_a_sideways_table_on_an_upright_page_does_not_turn_the_page(engine):
    """The page's prose decides the page; the table set sideways in its margin is read across."""
    style = Style(font=str(FONTS / "DejaVuSerif.ttf"), size=26)
    prose = Document("columns", [[[("The library will be closed on Monday", "left")], [("for maintenance of the reading room.", "left")],
                                  [("Books may be returned through the slot", "left")], [("next to the main entrance.", "left")]]])
    table = Document("label", [[[("Batch 4471", "left")], [("Weight 500kg", "left")]]])
    page_image = render(prose, style)
    side = render(table, Style(font=str(FONTS / "DejaVuSansCondensed-Bold.ttf"), size=22)).rotate(90, expand=True)
    canvas = Image.new("RGB", (page_image.width + side.width + 40, max(page_image.height, side.height)), "white")
    canvas.paste(page_image, (0, 0))
    canvas.paste(side, (page_image.width + 20, 0))
    page = engine.read_one(canvas)
    assert page.rotation == 0 and page.warnings == ()
    assert _cer("\n".join(line.text for line in page.lines if "Batch" not in line.text and "Weight" not in line.text),
                prose.truth) <= 0.02
    assert "Batch 4471" in page.text and "Weight 500kg" in page.text


@pytest.mark.parametrize("font", ["DejaVuSerif.ttf", "DejaVuSansMono-Bold.ttf"])
def test_mirrored_text_which_no_turn_makes_readable_gets_a_warning(engine, font):
    """Text seen through a shop window reads badly every way up: the record must say so."""
    image = ImageOps.mirror(render(RECEIPT, Style(font=str(FONTS / font), size=36)))
    page = engine.read_one(image)
    assert len(page.warnings) == 1 and page.warnings[0].startswith("orientation uncertain")


def test_a_page_without_text_is_read_upright_without_a_warning(engine):
    page = engine.read_one(Image.new("RGB", (200, 120), "white"))
    assert (page.text, page.rotation, page.warnings) == ("", 0, ())


def test_the_record_says_which_turn_was_applied(tmp_path):
    upright = render(RECEIPT, Style(font=str(FONTS / "DejaVuSerif.ttf"), size=30))
    upright.rotate(-90, expand=True).save(tmp_path / "turned.png")  # turned clockwise: undone by 270
    upright.save(tmp_path / "upright.png")
    out = tmp_path / "r.jsonl"
    result = CliRunner().invoke(ocr_app(), ["ocr", str(tmp_path), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.stderr
    records = {Path(r["path"]).name: r for r in read_records(out)}
    assert records["upright.png"]["rotation"] == 0 and records["turned.png"]["rotation"] == 270
    assert records["turned.png"]["text"] == records["upright.png"]["text"]
    assert "warnings" not in records["turned.png"]


@pytest.mark.parametrize("rotation", orientation.ROTATIONS)
def test_points_turn_with_the_image(rotation):
    """A marked pixel's centre lands on the same pixel of the turned image."""
    pixels = np.zeros((5, 8), dtype=np.uint8)
    pixels[1, 6] = 255
    turned = orientation.turn_image(pixels, rotation)
    [(row, column)] = np.argwhere(turned == 255)
    assert orientation.turned_size((8, 5), rotation) == turned.shape[::-1]
    assert orientation.turn_points(np.array([6.5, 1.5]), rotation, (8, 5)).tolist() == [column + 0.5, row + 0.5]


def test_short_boxes_alone_leave_all_four_turns_to_the_recognizer():
    """A page of single glyphs has no line direction: every rotation is read and the best one wins."""
    squares = [np.array([[x, 0], [x + 10, 0], [x + 10, 10], [x, 10]], dtype=float) for x in (0, 20)]
    seen = []

    def confidence(indices, rotation):
        seen.append(rotation)
        return {0: 0.5, 90: 0.6, 180: 0.95, 270: 0.4}[rotation]

    turn = orientation.decide(squares, confidence)
    assert sorted(seen) == [0, 90, 180, 270] and turn.rotation == 180 and turn.warning is None

