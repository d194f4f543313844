"""Measure the activation ranges of vlground's int8 recognizer (`vlground.ocr.int8`) and rewrite its
RANGES file: run after rapidocr ships another recognizer (the ranges are tied to the model file).

The lines are the quality tests' kinds of rendered text in the tests' fonts (tests/fonts and
Pillow's own), with seeds no test uses, never the held-out fonts of bench_ocr_peers.py.

    python benchmarks/calibrate_ocr_int8.py"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from vlground.ocr.int8 import RANGES, calibrate
from vlground.ocr.ppocr import PPOCRv6, built_in_engine
from vlground.ocr.synthetic import font_files, render, varied_cases


def main() -> None:
    engine = built_in_engine(threads=1, int8=False)
    batches, recognizer = [], engine._nets.recognizer
    engine._nets = dataclasses.replace(engine._nets, recognizer=lambda batch: (batches.append(batch), recognizer(batch))[1])
    fonts = [None] + font_files(Path(__file__).resolve().parent.parent / "tests" / "fonts")
    for document, style in varied_cases(40, seed=4242, fonts=fonts):
        engine.read_one(render(document, style))
    RANGES.parent.mkdir(exist_ok=True)
    RANGES.write_text(json.dumps(calibrate(PPOCRv6.check_available()["Rec"], batches)) + "\n")
    print(f"{RANGES}: ranges from {sum(len(batch) for batch in batches)} lines")


if __name__ == "__main__":
    main()
