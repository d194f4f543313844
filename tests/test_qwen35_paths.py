"""`vlground label` and `vlground ocr --engine` with a tiny Qwen3.5, which reasons before it answers:
records hold the answer's boxes and text, never the draft in the reasoning, and carry the reasoning."""
from __future__ import annotations

import json

from PIL import Image
from typer.testing import CliRunner

from vlground.cli.main import app
from vlground.testing.forced import forced_loading, with_reasoning

FINAL = '```json\n[{"bbox_2d": [0, 0, 500, 500], "label": "cat"}]\n```'
DRAFT = '```json\n[{"bbox_2d": [900, 900, 1000, 1000], "label": "cat"}]\n```'


def test_label_records_take_the_answers_box_and_keep_the_reasoning(tmp_path, tiny_checkpoint):
    image = tmp_path / "a.png"
    Image.new("RGB", (200, 100)).save(image)
    out = tmp_path / "labels.jsonl"
    with forced_loading({"cat": with_reasoning(FINAL, DRAFT)}):
        result = CliRunner().invoke(app, ["label", str(image), "-c", "cat", "--out", str(out), "--format", "jsonl",
                                          "--model", str(tiny_checkpoint("qwen3.5")), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert [d["box"] for d in record["detections"]] == [[0.0, 0.0, 100.0, 50.0]]  # not the draft's corner
    assert "900, 900, 1000, 1000" in record["reasoning"] and "900" not in record["text"]


def test_ocr_with_a_qwen35_engine_reads_the_answer_not_the_reasoning(tmp_path, tiny_checkpoint):
    image = tmp_path / "page.png"
    Image.new("RGB", (120, 80), "white").save(image)
    out = tmp_path / "text.jsonl"
    reasoning = with_reasoning("OPEN 24 HOURS", "maybe it says CLOSED")
    with forced_loading(lambda prompt: reasoning):
        result = CliRunner().invoke(app, ["ocr", str(image), "--engine", str(tiny_checkpoint("qwen3.5")), "--out", str(out),
                                          "--device", "cpu"])
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["text"] == "OPEN 24 HOURS" and "CLOSED" in record["reasoning"]
