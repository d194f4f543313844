"""One lookup for every writer beside the records (`vlground.get_writer`, as whisper's): the dataset
writers and the OCR exports, each giving the bytes the commands write (the golden files)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import vlground
from vlground.core.records import Record

GOLDEN = Path(__file__).parent / "data" / "golden"


def _records(path: Path) -> list[Record]:
    return [Record.from_dict(json.loads(line)) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("fmt", ["txt", "hocr", "md"])
def test_an_export_writer_writes_the_file_ocr_writes(fmt, tmp_path):
    record = next(r for r in _records(GOLDEN / "ocr" / "ocr.jsonl") if r.path.endswith("shop_sign.png"))
    writer = vlground.get_writer(fmt, tmp_path / "out")
    written = writer([record], "shop_sign.png", page_image=lambda page: None, title="shop_sign.png")
    assert written == tmp_path / "out" / f"shop_sign.png.{fmt}"
    assert written.read_bytes() == (GOLDEN / "ocr" / "ocr" / f"shop_sign.png.{fmt}").read_bytes()


def test_a_dataset_writer_writes_the_dataset_label_writes(tmp_path):
    records = sorted(_records(GOLDEN / "label_coco" / "coco" / "records.jsonl"), key=lambda r: r.path)  # as label sorts them
    writer = vlground.get_writer("coco", tmp_path)
    stats = writer(records, ["cat", "dog"])
    assert writer.written == [tmp_path / "instances.json"] and stats.boxes > 0
    assert (tmp_path / "instances.json").read_bytes() == (GOLDEN / "label_coco" / "coco" / "instances.json").read_bytes()
    yolo = vlground.get_writer("yolo", tmp_path / "yolo")
    yolo(records, ["cat", "dog"])
    assert all(path.exists() for path in yolo.written)


@pytest.mark.parametrize("fmt", ["voc", "jsonl", ""])
def test_a_format_without_a_writer_is_one_line_naming_the_formats(fmt, tmp_path):
    with pytest.raises(ValueError) as error:
        vlground.get_writer(fmt, tmp_path)
    message = str(error.value)
    assert "\n" not in message and repr(fmt) in message and "coco, yolo" in message and "txt, hocr, md, pdf" in message
