"""The one record type: what detect, label and ocr write reads back with `vlground.read_records` as
Records that keep the JSON they were read from, keep the latest record of an input, draw themselves
on their image from any folder, and convert to supervision and COCO."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

import vlground
from vlground.core.records import Record, read_records, record_key, text_line
from vlground.core.results import Detection, Result

LABEL = {"path": "imgs/a.png", "model": "m", "width": 64, "height": 48,
         "detections": [{"label": "cat", "box": [4.0, 6.0, 30.0, 40.0], "attributes": {"query": "the cat"}}],
         "text": "[]", "error": None}
OCR_PAGE = {"path": "scan.pdf", "abspath": "/data/scan.pdf", "page": 2, "pages": 3, "dpi": 200, "engine": "ppocr",
            "width": 300, "height": 200, "text": "HELLO YOU",
            "lines": [{"text": "HELLO YOU", "box": [10.0, 30.0, 140.0, 80.0], "score": 0.9871,
                       "words": [{"text": "HELLO", "box": [20.0, 40.0, 60.0, 70.0], "score": 0.99},
                                 {"text": "YOU", "quad": [[70.0, 40.0], [120.0, 41.0], [120.0, 70.0], [70.0, 69.0]], "score": 0.98}]},
                      {"text": "no words", "box": [1.0, 2.0, 3.0, 4.0], "score": None}],
            "error": None}


def write_lines(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_both_shapes_read_back_to_the_same_json():
    for row in (LABEL, OCR_PAGE, {"path": "b.png", "model": "m", "width": None, "height": None, "detections": [],
                                  "text": "", "error": "not an image"}):
        assert Record.from_dict(row).to_dict() == row
    line = Record.from_dict(OCR_PAGE).detections[0]
    assert (line.text, line.score, [w.text for w in line.parts]) == ("HELLO YOU", 0.9871, ["HELLO", "YOU"])
    assert line.parts[1].quad[1] == (120.0, 41.0)


def test_the_latest_record_of_an_input_counts_whatever_form_its_path_took(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    failed = {**LABEL, "width": None, "height": None, "detections": [], "text": "", "error": "CUDA error"}
    retried = {**LABEL, "path": str(tmp_path / "imgs" / "a.png")}  # the same file, given absolute
    other = {**LABEL, "path": "imgs/b.png"}
    path = write_lines(tmp_path / "labels.jsonl", [failed, other, retried])
    with path.open("a") as out:
        out.write('{"path": "imgs/c.png", "mod')  # a run killed mid-line
    records = read_records(path)
    assert [(r.path, r.error) for r in records] == [(retried["path"], None), ("imgs/b.png", None)]
    assert record_key(failed) == records[0].key == str(tmp_path / "imgs" / "a.png")
    pages = [{**OCR_PAGE, "page": 1}, {**OCR_PAGE, "text": "again"}, OCR_PAGE]  # pages of one file are apart
    assert [r.page for r in read_records(write_lines(tmp_path / "ocr.jsonl", pages))] == [1, 2]


def test_a_record_read_back_draws_itself_from_another_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (64, 48), "white").save(tmp_path / "imgs" / "a.png")
    abspath = str(tmp_path / "imgs" / "a.png")
    path = write_lines(tmp_path / "labels.jsonl", [{**LABEL, "abspath": abspath}])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # "imgs/a.png" names nothing from here; the record finds its image by abspath
    (record,) = vlground.read_records(path)
    picture = np.array(vlground.show(record))
    assert picture.shape == (48, 64, 3) and (picture[35, 4] != 255).any() and (picture[35, 15] == 255).all()
    assert np.array_equal(picture, np.array(vlground.annotate(abspath, record.result)))
    assert record._repr_png_() is not None
    with pytest.raises(TypeError, match="read_records"):
        vlground.show(json.loads(path.read_text()))


def test_an_ocr_record_is_drawn_with_its_lines_and_words(tmp_path):
    Image.new("RGB", (300, 200), "white").save(tmp_path / "p.png")
    record = Record.from_dict({**OCR_PAGE, "path": str(tmp_path / "p.png"), "abspath": str(tmp_path / "p.png"),
                               "page": None, "pages": None})
    picture = np.array(vlground.show(record))
    assert tuple(picture[55, 20]) == (140, 140, 140)  # the first word's left edge, in grey
    assert (picture[55, 10] != 255).any() and tuple(picture[55, 10]) != (140, 140, 140)  # the line, in its colour
    page = Record.from_dict(OCR_PAGE)  # a page of a PDF: its path names no image
    assert page.image is None and page._repr_png_() is None


def test_records_convert_to_supervision_and_coco():
    pytest.importorskip("supervision", reason="to_supervision() needs the supervision extra")
    record = Record.from_dict(LABEL)
    detections = record.to_supervision()
    assert detections.xyxy.tolist() == [[4.0, 6.0, 30.0, 40.0]] and list(detections.data["class_name"]) == ["cat"]
    assert record.to_coco(image_id=7) == [{"image_id": 7, "category_id": 1, "bbox": [4.0, 6.0, 26.0, 34.0], "score": 1.0}]
    assert detections.confidence is None  # a VLM's boxes have no score
    # an OCR engine's lines keep their scores; a line without one takes the caller's
    page = Record.from_dict(OCR_PAGE)
    assert [e["score"] for e in page.to_coco(1, score=0.5)] == [0.9871, 0.5]
    assert page.to_supervision().confidence is None
    line = Record.from_dict({**OCR_PAGE, "lines": OCR_PAGE["lines"][:1]})
    assert line.to_supervision().confidence.tolist() == pytest.approx([0.9871])
    failed = Record.failed("x.png", "unreadable", model="m")
    assert len(failed.to_supervision()) == 0 and failed.to_coco(1) == []
    with pytest.raises(ValueError, match="unreadable"):
        vlground.show(failed)


def test_an_ocr_line_is_a_detection_with_a_score_and_its_words():
    word = text_line("HELLO", box=(1.0, 2.0, 3.0, 4.0), score=0.5)
    line = text_line("HELLO", box=(1.0, 2.0, 9.0, 4.0), score=0.5, words=(word,))
    assert isinstance(line, Detection) and line.parts == (word,) and line.label is None
    result = Result([line], "HELLO", (10, 10))
    assert [d.to_dict() for d in Result.from_boxes(np.array([[1.0, 2.0, 9.0, 4.0]]), [None], ["HELLO"], None, "HELLO", (10, 10)).detections] \
        == [{"label": None, "box": [1.0, 2.0, 9.0, 4.0], "text": "HELLO"}]
    assert result.detections[0].to_dict()["parts"][0] == {"label": None, "box": [1.0, 2.0, 3.0, 4.0], "text": "HELLO", "score": 0.5}
    assert Detection.from_dict(line.to_dict()) == line


def test_pyarrow_uris_and_stdin_are_keys_as_they_are(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert record_key({"path": "s3://bucket/a.png"}) == "s3://bucket/a.png"
    assert record_key({"path": "-"}) == "-"
    assert record_key({"path": "a.png", "page": 3}) == f"{os.path.join(str(tmp_path), 'a.png')}\x00page 3"
