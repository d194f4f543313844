import io

import numpy as np
import pytest
from PIL import Image, ImageColor, ImageFont

from vlground.core.records import Record, text_line
from vlground.grammar import parse
from vlground.viz import DISPLAY_SIDE, FONT, PALETTE, TILE_SIDE, annotate, png_of, show

RED = ImageColor.getrgb(PALETTE[1])  # the colour of class 1 (class 0 is purple)


def test_boxes_quads_and_points_are_drawn_where_they_are():
    img = Image.new("RGB", (400, 300), "white")
    r = parse(
        '<ref>击掌</ref><box>(100,100),(500,600)</box><ref>sign</ref><quad>(600,100),(900,120),(880,300),(590,280)</quad>',
        "qwen-vl", img.size,
    )
    out = np.array(annotate(img, r))
    assert out.shape == (300, 400, 3)
    assert (out[150, 40] != 255).any()  # left edge of the box at x=40
    assert (out[150, 100] == 255).all()  # inside the box stays untouched
    assert (out[31:36, 298:303] != 255).any()  # the quad's top edge runs from (240, 30) to (360, 36)


def test_box_is_drawn_in_its_palette_colour_not_channel_swapped():
    img = Image.new("RGB", (400, 300), "white")
    r = parse("<ref>a</ref><box>(0,500),(100,900)</box><ref>b</ref><box>(500,500),(900,900)</box>", "qwen-vl", img.size)
    out = np.array(annotate(img, r))
    assert tuple(out[200, 200]) == RED  # left edge of "b" (class 1) at x=200


def test_bundled_font_has_latin_and_cjk_glyphs():
    font = ImageFont.truetype(str(FONT), 24)
    shapes = {ch: bytes(font.getmask(ch)) for ch in "Aa击掌"}
    assert len(set(shapes.values())) == 4  # no tofu: every glyph has its own shape


def test_result_of_another_image_is_refused():
    r = parse("<ref>x</ref><box>(0,0),(10,10)</box>", "qwen-vl", (100, 100))
    with pytest.raises(ValueError):
        annotate(Image.new("RGB", (50, 50)), r)


def _label_rows(top: int) -> np.ndarray:
    """Rows where the label of "b label" (class 1, a 400x300 image, box top at y=top, left at x=40) is drawn:
    rows with class 1's colour over several pixels, less the box's own top and bottom edges."""
    img = Image.new("RGB", (400, 300), "white")
    r = parse(f"<ref>a</ref><box>(800,800),(900,900)</box><ref>b label</ref><box>(100,{top / 0.3:.0f}),(600,900)</box>", "qwen-vl", img.size)
    out = np.array(annotate(img, r))
    rows = np.flatnonzero(np.all(out[:, 43:80] == RED, axis=2).sum(axis=1) > 5)  # right of the box's left edge
    return rows[(np.abs(rows - top) > 2) & (np.abs(rows - 270) > 2)]


def test_label_at_the_top_edge_goes_just_under_the_box_top():
    rows = _label_rows(top=3)
    assert rows.size > 8  # the label is drawn, whole
    assert rows.min() > 3  # below the box's top edge: nothing cut off above the image or over the edge


def test_label_with_room_sits_above_its_box():
    rows = _label_rows(top=150)
    assert rows.size > 8 and rows.max() < 150


def test_label_at_the_right_edge_stays_inside():
    img = Image.new("RGB", (400, 300), "white")
    r = parse("<ref>a</ref><box>(0,0),(1,1)</box><ref>a long label at the right edge</ref><box>(950,500),(999,900)</box>",
              "qwen-vl", img.size)
    out = np.array(annotate(img, r))
    columns = np.flatnonzero(np.all(out[100:160] == RED, axis=2).any(axis=0))
    assert columns.size > 100 and columns.max() <= 399 and columns.min() < 380  # drawn to the left, whole


def test_paths_and_arrays_are_drawn_like_pil_images(tmp_path):
    img = Image.new("RGB", (200, 100), "white")
    r = parse("<ref>x</ref><box>(100,100),(600,800)</box>", "qwen-vl", img.size)
    img.save(tmp_path / "a.png")
    expected = np.array(annotate(img, r))
    assert np.array_equal(np.array(annotate(tmp_path / "a.png", r)), expected)
    assert np.array_equal(np.array(annotate(str(tmp_path / "a.png"), r)), expected)
    assert np.array_equal(np.array(annotate(np.array(img), r)), expected)


def _page(tmp_path):
    path = tmp_path / "page.png"
    Image.new("RGB", (300, 200), "white").save(path)
    record = Record(
        path=str(path), engine="pp-ocr", width=300, height=200, text="HELLO\nWORLD",
        detections=[text_line("HELLO", box=(20.0, 40.0, 120.0, 70.0)),
               text_line("WORLD", quad=((20.0, 120.0), (150.0, 110.0), (152.0, 140.0), (22.0, 150.0)))],
    )
    return path, record


def test_ocr_record_is_drawn_with_its_lines(tmp_path):
    path, record = _page(tmp_path)
    out = np.array(show(record))  # the record names its file
    assert (out[55, 20] != 255).any()  # left edge of the HELLO box
    assert (out[55, 70] == 255).all()  # inside stays clear
    assert (out[130, 21] != 255).any()  # left edge of the WORLD quad
    assert np.array_equal(out, np.array(annotate(path, record)))


def test_failed_ocr_record_says_why_it_cannot_be_drawn():
    with pytest.raises(ValueError, match="unreadable"):
        show(Image.new("RGB", (10, 10)), Record.failed("x.png", "unreadable file", engine="pp-ocr"))


def test_show_needs_an_image_when_the_result_does_not_know_it():
    r = parse("<ref>x</ref><box>(0,0),(10,10)</box>", "qwen-vl", (100, 100))
    with pytest.raises(ValueError, match="show\\(image, result\\)"):
        show(r)
    assert png_of(r) is None  # Jupyter then shows the text form


def test_show_with_an_image_is_annotate():
    img = Image.new("RGB", (200, 100), "white")
    r = parse("<ref>x</ref><box>(100,100),(600,800)</box>", "qwen-vl", img.size)
    assert np.array_equal(np.array(show(img, r)), np.array(annotate(img, r)))


def test_a_list_of_results_is_a_grid():
    img = Image.new("RGB", (640, 480), "white")
    results = [parse(f"<ref>thing {i}</ref><box>(100,100),(600,800)</box>", "qwen-vl", img.size) for i in range(4)]
    picture = show(img, results, columns=3)
    assert picture.width == 3 * (TILE_SIDE + 8) and picture.height > 2 * TILE_SIDE  # 3 + 1 tiles
    first, fourth = np.array(picture)[4:TILE_SIDE, 4:TILE_SIDE], np.array(picture)[TILE_SIDE + 40 :, 4:TILE_SIDE]
    assert (first != 255).any() and (fourth != 255).any()
    with pytest.raises(ValueError, match="one image per result"):
        show([img, img], results)


def test_png_of_a_result_that_knows_its_image_is_its_picture_downscaled(tmp_path):
    path, record = _page(tmp_path)
    big = Image.new("RGB", (3000, 1500), "white")
    big_path = tmp_path / "big.png"
    big.save(big_path)
    wide = Record(path=str(big_path), engine="pp-ocr", width=3000, height=1500, detections=[text_line("A", box=(10, 10, 900, 400))])
    for drawable, size in ((record, (300, 200)), (wide, (DISPLAY_SIDE, DISPLAY_SIDE // 2))):
        png = Image.open(io.BytesIO(png_of(drawable)))
        assert png.format == "PNG" and png.size == size


def test_a_shrunk_picture_is_drawn_after_shrinking_at_the_scaled_place():
    img = Image.new("RGB", (2000, 1000), "white")
    r = parse("<ref>x</ref><box>(100,500),(600,900)</box>", "qwen-vl", img.size)  # x from 200 px, y from 500 px
    small = np.array(show(img, r, side=500))
    assert small.shape == (250, 500, 3)
    assert (small[180, 50] != 255).any() and (small[180, 56] == 255).all()  # a crisp left edge at x = 200 / 4
    assert (small[100:123, 52:70] != 255).any()  # the label, above the box top at y = 125


def test_ocr_words_are_drawn_as_thin_grey_outlines_under_their_line():
    words = (text_line("HELLO", box=(20.0, 40.0, 60.0, 70.0)), text_line("YOU", box=(70.0, 40.0, 120.0, 70.0)))
    record = Record(path="p.png", engine="pp-ocr", width=300, height=200, text="HELLO YOU",
                       detections=[text_line("HELLO YOU", box=(10.0, 30.0, 140.0, 80.0), words=words)])
    out = np.array(annotate(Image.new("RGB", (300, 200), "white"), record))
    assert tuple(out[55, 70]) == (140, 140, 140)  # left edge of the second word
    assert (out[55, 10] != 255).any() and tuple(out[55, 10]) != (140, 140, 140)  # the line, in its own colour
    assert (out[45:65, 25:55] == 255).all()  # words are not labelled


def test_an_ocr_record_displays_as_its_page_in_jupyter(tmp_path):
    InteractiveShell = pytest.importorskip("IPython.core.interactiveshell").InteractiveShell  # noqa: N806

    path, record = _page(tmp_path)
    formats, _ = InteractiveShell.instance().display_formatter.format(record)
    picture = np.array(Image.open(io.BytesIO(formats["image/png"])).convert("RGB"))
    assert np.array_equal(picture, np.array(annotate(path, record)))
    page_of_a_pdf = Record(path=str(path), engine="pp-ocr", width=300, height=200, page=2)
    assert "image/png" not in InteractiveShell.instance().display_formatter.format(page_of_a_pdf)[0]


def test_a_result_that_knows_its_image_displays_as_its_picture_in_jupyter():
    InteractiveShell = pytest.importorskip("IPython.core.interactiveshell").InteractiveShell  # noqa: N806

    from vlground.core.results import Result

    img = Image.new("RGB", (400, 300), "white")
    unknown = parse("<ref>x</ref><box>(100,100),(500,600)</box>", "qwen-vl", img.size)
    known = Result(unknown.detections, unknown.text, unknown.image_size, unknown.raw, image=img)
    formats, _ = InteractiveShell.instance().display_formatter.format(known)
    assert "text/plain" in formats  # terminals keep the text form
    picture = np.array(Image.open(io.BytesIO(formats["image/png"])).convert("RGB"))
    assert np.array_equal(picture, np.array(annotate(img, known)))
    assert "image/png" not in InteractiveShell.instance().display_formatter.format(unknown)[0]
    assert known == unknown and repr(known) == repr(unknown)  # the image is not part of the value
