"""vlground's OCR beside the tools people already use: Tesseract (Debian's tesseract-ocr), the bare
engine (rapidocr's own pipeline on the same models) and vlground's layer, on the same images and
pages, one core each, interleaved.

Sets, rendered with known text:
    quality    the project's quality images (`tests/test_ocr_quality.py`'s cases and the engine
               benchmark's: signs, labels, receipts, two-column pages; tests/fonts; 18-44 px;
               colours, noise, blur, JPEG)
    heldout    the same kinds in fonts and sizes the tests never use (Liberation Sans/Serif/Mono,
               DejaVu Sans, Serif Italic and Sans Mono from Debian's fonts-liberation and
               fonts-dejavu, where installed; 14-60 px)
    turned     the held-out images turned 90, 180 and 270 degrees (Tesseract with --psm 1, its
               orientation detection; vlground as always)
    pages      the document benchmark's A5 pages at 300 dpi (two columns, a table, 8 pt small
               print, a mixed page), as rendered and as a noisy tilted scan

Each tool reads a whole set in one process, model loaded once (Tesseract takes the set as a list
file, so its start-up is paid once per set, as vlground's is); the tools take turns set by set,
ROUNDS times in rotating order, so that other load on the machine hits all of them alike; the
fastest round counts. CER and WER as `vlground eval ocr` computes them (whitespace runs as one
space). Tesseract runs with OMP_THREAD_LIMIT=1, the engines with one onnxruntime thread.

    python benchmarks/bench_ocr_peers.py           # prints one JSON line; N=24 images per set
    N=8 ROUNDS=1 SETS=pages python benchmarks/bench_ocr_peers.py    # fewer images, one round, some sets
    TOOLS=vlground,vlground_float python benchmarks/bench_ocr_peers.py  # without the bare engine (slow)

`vlground` is the default engine (int8 recognizer, `vlground.ocr.int8`); `vlground_float` the same
with the float recognizer rapidocr ships, to show what int8 changes in the same run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from vlground.eval.ocr import edit_counts, pooled_rates
from vlground.io.documents import PageSelection, load_page, plan
from vlground.ocr.ppocr import built_in_engine
from vlground.ocr.synthetic import KINDS, Style, font_files, make_document, render, varied_cases
from vlground.io.sources import Source

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ocr_documents import build as build_pages  # noqa: E402

N = int(os.environ.get("N", "24"))
ROUNDS = int(os.environ.get("ROUNDS", "2"))
SETS = os.environ.get("SETS", "quality,heldout,turned,pages").split(",")
TOOLS = os.environ.get("TOOLS", "vlground,vlground_float,bare_engine").split(",")  # Tesseract always, where installed
ROOT = Path(__file__).resolve().parent.parent
TEST_FONTS = [None] + font_files(ROOT / "tests" / "fonts")
SYSTEM_FONTS = Path("/usr/share/fonts/truetype")
HELDOUT_FONTS = [SYSTEM_FONTS / "liberation" / name for name in
                 ("LiberationSans-Regular.ttf", "LiberationSerif-Regular.ttf", "LiberationMono-Regular.ttf")] + [
                 SYSTEM_FONTS / "dejavu" / name for name in ("DejaVuSans.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSansMono.ttf")]
HELDOUT_SIZES = (14, 20, 30, 40, 60)


def _heldout(count: int) -> tuple[list[tuple[Image.Image, str]], list[str]]:
    fonts = [str(path) for path in HELDOUT_FONTS if path.exists()]
    cases = []
    for index in range(count):
        style = Style(font=fonts[index % len(fonts)] if fonts else None, size=HELDOUT_SIZES[index % len(HELDOUT_SIZES)],
                      noise=(0.0, 6.0, 12.0)[index % 3], blur=(0.0, 0.5)[index % 2])
        document = make_document(KINDS[index % len(KINDS)], 90_000 + index)
        cases.append((render(document, style), document.truth))
    return cases, [Path(f).name for f in fonts]


def _sets(folder: Path) -> tuple[dict[str, list[tuple[Image.Image, str]]], list[str]]:
    quality = [(render(d, s), d.truth) for d, s in varied_cases(15, seed=7, fonts=TEST_FONTS)]
    quality += [(render(d, s), d.truth) for d, s in varied_cases(max(N - 15, 1), seed=5, fonts=TEST_FONTS)]
    heldout, fonts = _heldout(N)
    turned = [(image.rotate((90, 180, 270)[i % 3], expand=True), truth) for i, (image, truth) in enumerate(heldout)]
    truth = build_pages(folder)
    pages = []
    for name in ("document.pdf", "scan.tif"):
        for job in plan(Source(str(folder / name)), PageSelection()):
            pages.append((load_page(job), truth[(name, job.page)]))
    sets = {"quality": quality, "heldout": heldout, "turned": turned, "pages": pages}
    return {name: sets[name] for name in SETS}, fonts


def _rates(pairs: list[tuple[str, str]]) -> dict[str, float]:
    rates = pooled_rates([edit_counts(truth, predicted) for predicted, truth in pairs])
    return {name: round(rate, 4) for name, rate in rates.items()}


def _tesseract(images: list[tuple[Image.Image, str]], folder: Path, psm: int) -> list[str]:
    """Tesseract's text of each image, the whole set in one process (a list file)."""
    listing = folder / "list.txt"
    listing.write_text("\n".join(str(folder / f"{i}.png") for i in range(len(images))) + "\n")
    done = subprocess.run(["tesseract", str(listing), "stdout", "--psm", str(psm), "-c", "page_separator=\f"],
                          capture_output=True, text=True, env={**os.environ, "OMP_THREAD_LIMIT": "1"}, check=True)
    texts = done.stdout.split("\f")
    return texts[: len(images)] + [""] * (len(images) - len(texts))


def main() -> None:
    tesseract = shutil.which("tesseract")
    with tempfile.TemporaryDirectory() as tmp:
        sets, fonts = _sets(Path(tmp))
        folders = {}
        for name, images in sets.items():
            folders[name] = Path(tmp) / name
            folders[name].mkdir()
            for i, (image, _) in enumerate(images):
                image.save(folders[name] / f"{i}.png")
        engine, float_engine = built_in_engine(threads=1), built_in_engine(threads=1, int8=False)
        tools = {
            "vlground": lambda name, images: [engine.read_one(image).text for image, _ in images],
            "vlground_float": lambda name, images: [float_engine.read_one(image).text for image, _ in images],
            "bare_engine": lambda name, images: [" ".join(p.text for p in engine.detect(image)) for image, _ in images],
        }
        if tesseract:
            psm = {"quality": 11, "heldout": 11, "turned": 1, "pages": 3}  # sparse text; orientation; a page
            tools["tesseract"] = lambda name, images: _tesseract(images, folders[name], psm[name])
        tools = {name: tool for name, tool in tools.items() if name in TOOLS or name == "tesseract"}
        for warm in (engine, float_engine):
            warm.read_one(next(iter(sets.values()))[0][0])  # models loaded, first-run costs paid
        load_before = os.getloadavg()
        seconds = {(tool, name): float("inf") for tool in tools for name in sets}
        texts = {}
        order = list(tools)
        for round_ in range(ROUNDS):
            for name, images in sets.items():
                for tool in order[round_ % len(order):] + order[: round_ % len(order)]:
                    started = time.perf_counter()
                    texts[(tool, name)] = tools[tool](name, images)
                    seconds[(tool, name)] = min(seconds[(tool, name)], time.perf_counter() - started)
                    print(f"round {round_ + 1} {name} {tool}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        load_after = os.getloadavg()
    report = {"images_per_set": {name: len(images) for name, images in sets.items()}, "rounds": ROUNDS,
              "heldout_fonts": fonts, "cpu_count": os.cpu_count(), "recognizer": engine.recognizer_precision,
              "load_average_before": [round(v, 2) for v in load_before], "load_average_after": [round(v, 2) for v in load_after],
              "tesseract": subprocess.run(["tesseract", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
              if tesseract else "not installed (apt-get install tesseract-ocr): only vlground and the bare engine were run"}
    for name, images in sets.items():
        unit = "pages_per_s" if name == "pages" else "images_per_s"
        row = {}
        for tool in tools:
            row[tool] = {**_rates([(text, truth) for text, (_, truth) in zip(texts[(tool, name)], images)]),
                         unit: round(len(images) / seconds[(tool, name)], 3)}
        if tesseract:
            row["vlground_speed_vs_tesseract"] = round(row["vlground"][unit] / row["tesseract"][unit], 3)
        report[name] = row
    print(json.dumps(report))


if __name__ == "__main__":
    main()
