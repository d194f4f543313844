"""Driving the recognizer (vlground.ocr.reading): what speeds it up must not change what it reads."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from vlground.ocr import int8
from vlground.ocr.int8 import int8_model
from vlground.ocr.ppocr import PPOCRv6, built_in_engine
from vlground.ocr.reading import recognize
from vlground.ocr.synthetic import Document, Style, font_files, render, varied_cases

FONTS = font_files(Path(__file__).parent / "fonts")


@pytest.fixture(scope="module")
def nets():
    return built_in_engine(threads=1)._nets


def _line(text: str, size: int = 32) -> np.ndarray:
    image = render(Document("sign", [[[(text, "left")]]]), Style(font=FONTS[0], size=size), margin=4)
    return np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])


def test_a_line_reads_the_same_alone_and_beside_longer_lines(nets):
    """Batching is a speed matter only: a short line read with long ones is not padded to their
    width (padding changed its confidence and its characters' places)."""
    short, long_lines = _line("Exit 4"), [_line("Children's story time moves to Tuesday"), _line("Keep Clear at all times")]
    alone = recognize(nets, [short])[0]
    together = recognize(nets, [long_lines[0], short, long_lines[1]])
    assert [reading.text for reading in together] == ["Children's story time moves to Tuesday", "Exit 4", "Keep Clear at all times"]
    assert together[1].text == alone.text
    assert together[1].score == pytest.approx(alone.score, abs=1e-5)
    np.testing.assert_allclose(together[1].places, alone.places, atol=1e-6)


def test_the_default_engine_reads_with_the_int8_recognizer_as_the_float_one_does():
    """The speed path is really taken (a silent fall back to float would pass every text test), and
    it reads what the float model reads."""
    fast, exact = built_in_engine(threads=1), built_in_engine(threads=1, int8=False)
    assert (fast.recognizer_precision, exact.recognizer_precision) == ("int8", "float32")
    for document, style in varied_cases(4, seed=11, fonts=[None] + FONTS):
        image = render(document, style)
        assert fast.read_one(image).text == exact.read_one(image).text == document.truth


def test_ranges_measured_on_another_model_are_not_used(caplog):
    """The ranges belong to one model file: any other (here the detector) runs in float, and the
    log says why."""
    with caplog.at_level(logging.INFO, logger="vlground.ocr.int8"):
        assert int8_model(PPOCRv6.check_available()["Det"]) is None
    assert "not the model the ranges were measured on" in caplog.text


def test_a_damaged_cached_int8_model_falls_back_to_float_and_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setattr(int8, "CACHE", tmp_path)
    model = PPOCRv6.check_available()["Rec"]
    built = int8_model(model)
    built.write_bytes(b"not a model")
    engine = built_in_engine(threads=1)
    assert engine.recognizer_precision == "float32"
    assert engine.read_one(render(Document("sign", [[[("Fresh Coffee", "center")]]]), Style(size=36))).text == "Fresh Coffee"
    assert not built.exists()  # removed, so that the next engine builds it again
    assert int8_model(model) == built and built_in_engine(threads=1).recognizer_precision == "int8"


def test_an_onnxruntime_without_a_calibration_cache_reads_in_float_without_a_warning(tmp_path, monkeypatch, caplog):
    """The newest onnxruntime for Python 3.10 (1.23) has no calibration cache in quantize_static: an
    install as expected as any, so the float model runs and the reason is logged at info level, not
    warned on every run by every worker."""
    from onnxruntime import quantization

    def quantize_static(model_input, model_output, calibration_data_reader, **options):  # 1.23's signature, in short
        raise AssertionError("not to be called")

    monkeypatch.setattr(quantization, "quantize_static", quantize_static)
    monkeypatch.setattr(int8, "CACHE", tmp_path)
    with caplog.at_level(logging.INFO, logger="vlground.ocr.int8"):
        assert int8_model(PPOCRv6.check_available()["Rec"]) is None
    assert [record.levelname for record in caplog.records] == ["INFO"]
    assert "takes no calibration cache" in caplog.text
