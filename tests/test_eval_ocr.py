"""CER and WER over `vlground ocr` output, with references as JSON lines or .txt files."""
from __future__ import annotations

import json

import pytest

from vlground.eval.errors import GroundTruthError
from vlground.eval.ocr import load_transcriptions, score_ocr


def test_corpus_rates_and_failures_count_as_empty_text(tmp_path):
    refs = tmp_path / "refs.jsonl"
    refs.write_text("\n".join(json.dumps(r) for r in [
        {"path": "scans/a.png", "text": "HELLO WORLD"},
        {"path": "scans/b.png", "text": "total 12.00"},
        {"path": "scans/c.png", "text": "abc"},
    ]))
    predictions = [
        {"path": "/elsewhere/b.jpg", "engine": "rapidocr", "text": "total\n12.0O", "lines": [], "error": None},
        {"path": "scans/a.png", "engine": "rapidocr", "text": "HELL0 W0RLD", "lines": [], "error": None},
        {"path": "scans/c.png", "engine": "rapidocr", "text": None, "lines": [], "error": "c.png: not an image"},
    ]
    scores = score_ocr(load_transcriptions(refs), predictions)
    summary = scores.summary()
    # a: 2 substitutions / 11, 2 wrong words / 2; b: 1 / 11 (the newline is a space), 1 / 2; c: 3 / 3, 1 / 1
    assert summary["cer"] == pytest.approx((2 + 1 + 3) / (11 + 11 + 3))
    assert summary["wer"] == pytest.approx((2 + 1 + 1) / (2 + 2 + 1))
    assert summary["mean_document_cer"] == pytest.approx((2 / 11 + 1 / 11 + 1) / 3)
    assert (summary["errors"], summary["missing"]) == (1, 0)


def test_txt_folder_references_and_missing_predictions(tmp_path):
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "a.txt").write_text("Straße 5\n")
    (tmp_path / "truth" / "b.txt").write_text("x")
    scores = score_ocr(load_transcriptions(tmp_path / "truth"), [{"path": "a.png", "text": "STRASSE 5", "error": None}], ignore_case=True)
    summary = scores.summary()
    assert summary["missing"] == 1 and summary["errors"] == 1
    assert scores.per_document[0]["char_edits"] == 2  # ß -> s plus one inserted s


def test_repeated_reference_names_are_refused(tmp_path):
    refs = tmp_path / "refs.jsonl"
    refs.write_text('{"path": "x/a.png", "text": "1"}\n{"path": "y/a.png", "text": "2"}\n')
    with pytest.raises(GroundTruthError, match="unique"):
        load_transcriptions(refs)
