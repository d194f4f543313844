"""The two built-in engines, `ppocr-v4` (rapidocr-onnxruntime 1.4.4, PP-OCRv4) and the default `ppocr`
(rapidocr 3.x with its bundled PP-OCRv6 small models), bare and with vlground's layer, in one run.

Sets, rendered with known text (`vlground.ocr.synthetic`): `varied` (signs, labels, receipts,
two-column pages; five fonts, 18-44 px, colours, noise, blur, JPEG), `rotated` (the same turned 8
degrees) and `low_contrast` (grey ink on grey paper). For each engine: character and word error rate
(whitespace runs as one space; words by edit distance over word lists) and images/s on one thread.
"bare" is the engine's own text, pieces joined by spaces in its order; "layer" is vlground's line
assembly, reading order, space restoration and look-alike fixes on the engine's pieces.

Both are installed with `pip install -e ".[ppocr-v4]"` (Python 3.10-3.12):

    python benchmarks/bench_ocr_engines.py                # N=16 images per set; prints one JSON line
    ANGLE_CLS=1 python benchmarks/bench_ocr_engines.py    # with PP-OCR's 0/180-degree line classifier"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vlground.eval.ocr import edit_counts, pooled_rates
from vlground.ocr.layout import assemble_lines
from vlground.ocr.ppocr import PPOCR, PPOCR_V4, built_in_engine, with_confusions_fixed
from vlground.ocr.synthetic import Style, font_files, render, varied_cases

N = int(os.environ.get("N", "16"))
ANGLE_CLS = os.environ.get("ANGLE_CLS", "0") == "1"
FONTS = [None] + font_files(Path(__file__).resolve().parent.parent / "tests" / "fonts")


def _sets() -> dict[str, list[tuple[Image.Image, str]]]:
    varied = [(render(d, s), d.truth) for d, s in varied_cases(N, seed=5, fonts=FONTS)]
    rotated = [(image.rotate(8, resample=Image.BICUBIC, expand=True, fillcolor="white"), truth) for image, truth in varied]
    low = [(render(d, Style(font=s.font, size=s.size, ink=(110, 110, 110), paper=(160, 160, 160))), d.truth)
           for d, s in varied_cases(N, seed=9, fonts=FONTS)]
    return {"varied": varied, "rotated": rotated, "low_contrast": low}


def _rates(pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Corpus CER and WER of (predicted, truth) pairs, as `vlground eval ocr` computes them."""
    rates = pooled_rates([edit_counts(truth, predicted) for predicted, truth in pairs])
    return {name: round(rate, 4) for name, rate in rates.items()}


def _evaluate(engine, images: list[tuple[Image.Image, str]]) -> dict:
    bare, layer = [], []
    started = time.perf_counter()
    for image, truth in images:
        pieces = engine.detect(image)
        lines = [with_confusions_fixed(line) for line in assemble_lines(pieces, np.asarray(image.convert("L")))]
        bare.append((" ".join(p.text for p in pieces), truth))
        layer.append(("\n".join(line.text for line in lines), truth))
    seconds = time.perf_counter() - started
    return {"bare": _rates(bare), "layer": _rates(layer), "images_per_s": round(len(images) / seconds, 3)}


def main() -> None:
    from importlib.metadata import version

    sets = _sets()
    load_before = os.getloadavg()[0]
    engines = {f"{PPOCR_V4} (rapidocr-onnxruntime {version('rapidocr-onnxruntime')})": built_in_engine(PPOCR_V4, threads=1, angle_cls=ANGLE_CLS),
               f"{PPOCR} (rapidocr {version('rapidocr')})": built_in_engine(PPOCR, threads=1, angle_cls=ANGLE_CLS)}
    report = {"images_per_set": N, "angle_cls": ANGLE_CLS, "cpu_count": os.cpu_count(), "load_average_1min_before": round(load_before, 2)}
    for name, engine in engines.items():  # interleaved by set, so load drifts hit both alike
        report[name] = {}
    for set_name, images in sets.items():
        for name, engine in engines.items():
            report[name][set_name] = _evaluate(engine, images)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
