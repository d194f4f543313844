import numpy as np
import pytest
from PIL import Image, ImageFont

from vlground.grammar import parse
from vlground.viz import FONT, annotate


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


def test_bundled_font_has_latin_and_cjk_glyphs():
    font = ImageFont.truetype(str(FONT), 24)
    shapes = {ch: bytes(font.getmask(ch)) for ch in "Aa击掌"}
    assert len(set(shapes.values())) == 4  # no tofu: every glyph has its own shape


def test_result_of_another_image_is_refused():
    r = parse("<ref>x</ref><box>(0,0),(10,10)</box>", "qwen-vl", (100, 100))
    with pytest.raises(ValueError):
        annotate(Image.new("RGB", (50, 50)), r)
