"""The embedded engine today, rapidocr-onnxruntime 1.4.4 (PP-OCRv4), against the maintained rapidocr
3.x (its bundled PP-OCRv6 small models), bare and with vlground's layer, in one run.

Sets, rendered with known text (`vlground.ocr.synthetic`): `varied` (signs, labels, receipts,
two-column pages; five fonts, 18-44 px, colours, noise, blur, JPEG), `rotated` (the same turned 8
degrees) and `low_contrast` (grey ink on grey paper). For each engine: character and word error rate
(whitespace runs as one space; words by edit distance over word lists) and images/s on one thread.
"bare" is the engine's own text, pieces joined by spaces in its order; "layer" is vlground's line
assembly, reading order, space restoration and look-alike fixes on the engine's pieces.

rapidocr 3.x is not a project dependency: run this where both are installed (a virtual environment
with the system's packages and `pip install --no-deps rapidocr omegaconf colorlog`):

    python benchmarks/bench_ocr_engines.py     # N=16 images per set; prints one JSON line"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rapidfuzz.distance import Levenshtein

from vlground.ocr.engine import PPOCREngine, with_confusions_fixed
from vlground.ocr.layout import Piece, assemble_lines
from vlground.ocr.synthetic import Style, font_files, render, varied_cases

N = int(os.environ.get("N", "16"))
FONTS = [None] + font_files(Path(__file__).resolve().parent.parent / "tests" / "fonts")


class Rapid3:
    """rapidocr 3.x with its bundled models, on one thread; pieces as vlground's layout takes them."""

    def __init__(self) -> None:
        from rapidocr import RapidOCR

        self._ocr = RapidOCR(params={"Global.log_level": "error", "EngineConfig.onnxruntime.intra_op_num_threads": 1,
                                     "EngineConfig.onnxruntime.inter_op_num_threads": 1})

    def detect(self, image: Image.Image) -> list[Piece]:
        result = self._ocr(np.asarray(image.convert("RGB")), return_word_box=True)
        pieces = []
        for index, (quad, text, score) in enumerate(zip(result.boxes if result.boxes is not None else [],
                                                          result.txts or (), result.scores or ())):
            quad = np.asarray(quad, dtype=np.float64)
            words = result.word_results[index] if result.word_results else ()
            pieces.append(Piece(quad=quad, text=text, score=float(score), centers=_centers(quad, text, words)))
        return pieces


def _centers(quad: np.ndarray, text: str, words) -> np.ndarray:
    """A centre per character: spread over each word's box when the words spell the text, else
    evenly along the piece."""
    if words and " ".join(w[0] for w in words) == text:
        centers = []
        for number, (word, _, box) in enumerate(words):
            box = np.asarray(box, dtype=np.float64)
            left, right = (box[0] + box[3]) / 2, (box[1] + box[2]) / 2
            steps = (np.arange(len(word)) + 0.5) / max(len(word), 1)
            centers += list(left + steps[:, None] * (right - left))
            if number < len(words) - 1:
                centers.append(right)  # the space
        return np.array(centers)
    left, right = (quad[0] + quad[3]) / 2, (quad[1] + quad[2]) / 2
    steps = (np.arange(len(text)) + 0.5) / max(len(text), 1)
    return left + steps[:, None] * (right - left)


def _sets() -> dict[str, list[tuple[Image.Image, str]]]:
    varied = [(render(d, s), d.truth) for d, s in varied_cases(N, seed=5, fonts=FONTS)]
    rotated = [(image.rotate(8, resample=Image.BICUBIC, expand=True, fillcolor="white"), truth) for image, truth in varied]
    low = [(render(d, Style(font=s.font, size=s.size, ink=(110, 110, 110), paper=(160, 160, 160))), d.truth)
           for d, s in varied_cases(N, seed=9, fonts=FONTS)]
    return {"varied": varied, "rotated": rotated, "low_contrast": low}


def _rates(pairs: list[tuple[str, str]]) -> dict[str, float]:
    chars = sum(Levenshtein.distance(" ".join(p.split()), " ".join(t.split())) for p, t in pairs)
    words = sum(Levenshtein.distance(p.split(), t.split()) for p, t in pairs)
    return {"cer": round(chars / sum(len(" ".join(t.split())) for _, t in pairs), 4),
            "wer": round(words / sum(len(t.split()) for _, t in pairs), 4)}


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
    import rapidocr
    import rapidocr_onnxruntime

    sets = _sets()
    load_before = os.getloadavg()[0]
    engines = {f"rapidocr-onnxruntime {getattr(rapidocr_onnxruntime, '__version__', '1.4.4')}": PPOCREngine(threads=1),
               f"rapidocr {rapidocr.__version__ if hasattr(rapidocr, '__version__') else '3.x'}": Rapid3()}
    report = {"images_per_set": N, "cpu_count": os.cpu_count(), "load_average_1min_before": round(load_before, 2)}
    for name, engine in engines.items():  # interleaved by set, so load drifts hit both alike
        report[name] = {}
    for set_name, images in sets.items():
        for name, engine in engines.items():
            report[name][set_name] = _evaluate(engine, images)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
