"""End to end on both real built-in engines: rendered signs, labels, receipts and two-column pages with
known text, in five fonts, four sizes, five colour pairs, noise, blur and JPEG."""
from __future__ import annotations

from pathlib import Path

import pytest

from vlground.eval.ocr import edit_counts
from vlground.io.images import load_image
from vlground.ocr.ppocr import BUILT_IN_ENGINES, PPOCR_V4, BuiltInEngine, built_in_engine
from vlground.ocr.synthetic import Document, Style, font_files, render, varied_cases

FONTS = [None] + font_files(Path(__file__).parent / "fonts")


def character_errors(predicted: str, truth: str) -> tuple[int, int]:
    """(edit distance, length of the truth), whitespace runs counted as one space, as `vlground eval ocr` counts."""
    counts = edit_counts(truth, predicted)
    return counts["char_edits"], counts["ref_chars"]


@pytest.fixture(scope="module", params=list(BUILT_IN_ENGINES))
def engine(request) -> BuiltInEngine:
    if request.param == PPOCR_V4:
        pytest.importorskip("rapidocr_onnxruntime", reason="rapidocr-onnxruntime 1.4 has no release for this Python")
    return built_in_engine(request.param)


def test_character_error_rate_at_most_1_5_percent(engine):
    ours = bare = total = 0
    for document, style in varied_cases(15, seed=7, fonts=FONTS):
        image = render(document, style)
        pieces = engine.detect(image)
        errors, length = character_errors(engine.read_one(image).text, document.truth)
        bare_errors, _ = character_errors(" ".join(p.text for p in pieces), document.truth)
        ours, bare, total = ours + errors, bare + bare_errors, total + length
    print(f"\nCER over {total} characters: ours {ours / total:.4f}, bare engine {bare / total:.4f}")
    assert ours / total <= 0.015
    assert bare / total > 3 * ours / total  # the layer on top earns its keep


def test_cmyk_and_16_bit_files_are_read(tmp_path, engine):
    """The bare engine returns nothing for these: they must come through load_image right."""
    document = Document("sign", [[[("Fresh Coffee", "center")], [("Open 7 days", "center")]]])
    image = render(document, Style(font=FONTS[-1], size=36))
    image.convert("CMYK").save(tmp_path / "sign_cmyk.jpg", quality=95)
    gray16 = (image.convert("I").point(lambda v: v * 257)).convert("I;16")
    gray16.save(tmp_path / "sign16.png")
    for name in ("sign_cmyk.jpg", "sign16.png"):
        errors, length = character_errors(engine.read_one(load_image(tmp_path / name)).text, document.truth)
        assert errors <= 0.1 * length, name
