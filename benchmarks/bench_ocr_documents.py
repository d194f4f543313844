"""Documents through `vlground ocr`: character error rate, bare engine against vlground, and pages/s
with 1 and 2 workers, in one run.

The set is rendered here with known text: A5 PDF pages (a two-column page of 10 pt prose, a table of
numbers at 9 pt, a page of 8 pt small print, a mixed page with a heading), and the same pages
"scanned" (rendered at 300 dpi, turned 1.5 degrees, blurred, speckled with noise) into a multi-page
TIFF. Every page goes through `run_ocr` at --dpi 300; the bare engine's text is its pieces in the
order it gives them, joined by spaces. Whitespace runs count as one space. The table's truth is its
rows in order, cells joined by spaces: read column by column, its characters right, it still scores
a high error rate.

    python benchmarks/bench_ocr_documents.py                  # prints one JSON line
    ENGINE=ppocr-v4 python benchmarks/bench_ocr_documents.py  # another built-in engine, both sides
    ANGLE_CLS=1 python benchmarks/bench_ocr_documents.py       # with the 0/180-degree line classifier
Other load on the cores lowers pages/s; the line says what the load was."""
from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from vlground.eval.ocr import edit_counts, pooled_rates
from vlground.io.documents import PageSelection, load_page, plan
from vlground.ocr.ppocr import PPOCR, built_in_engine
from vlground.jobs.loop import RunOptions
from vlground.jobs.ocr import OcrOptions, run_ocr
from vlground.io.sources import Source

WORDS = ("invoice account balance delivery warehouse quarterly payment schedule customer order number "
         "station platform library museum harbour council notice meeting review budget summary total").split()
PAGE = (420, 595)  # A5, points


def _sentence(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count)).capitalize()


def _two_columns(canvas, rng: random.Random) -> str:
    columns = []
    for left in (36, 222):
        lines = [_sentence(rng, 4) for _ in range(34)]
        for row, line in enumerate(lines):
            canvas.setFont("Times-Roman", 10)
            canvas.drawString(left, PAGE[1] - 48 - 15 * row, line)
        columns.append("\n".join(lines))
    return "\n".join(columns)


def _table(canvas, rng: random.Random) -> str:
    rows = []
    for row in range(36):
        cells = [f"{rng.randint(1000, 9999)}", rng.choice(WORDS), f"{rng.randint(1, 99)}", f"{rng.uniform(1, 999):.2f}"]
        for x, cell in zip((36, 110, 250, 320), cells):
            canvas.setFont("Helvetica", 9)
            canvas.drawString(x, PAGE[1] - 48 - 14 * row, cell)
        rows.append(" ".join(cells))
    return "\n".join(rows)


def _small_print(canvas, rng: random.Random) -> str:
    lines = [_sentence(rng, 8) + "." for _ in range(50)]
    for row, line in enumerate(lines):
        canvas.setFont("Helvetica", 8)
        canvas.drawString(36, PAGE[1] - 40 - 10.5 * row, line)
    return "\n".join(lines)


def _mixed(canvas, rng: random.Random) -> str:
    heading = _sentence(rng, 3)
    canvas.setFont("Helvetica-Bold", 16)
    canvas.drawString(36, PAGE[1] - 60, heading)
    lines = [_sentence(rng, 7) for _ in range(24)]
    for row, line in enumerate(lines):
        canvas.setFont("Times-Roman", 10)
        canvas.drawString(36, PAGE[1] - 100 - 16 * row, line)
    return "\n".join([heading, *lines])


def build(folder: Path, seed: int = 11) -> dict[tuple[str, int], str]:
    """document.pdf and scan.tif in `folder`; the truth of each (file, page)."""
    from reportlab.pdfgen.canvas import Canvas

    rng = random.Random(seed)
    canvas = Canvas(str(folder / "document.pdf"), pagesize=PAGE)
    truth = {}
    for page, draw in enumerate((_two_columns, _table, _small_print, _mixed), 1):
        truth[("document.pdf", page)] = draw(canvas, rng)
        canvas.showPage()
    canvas.save()
    scans = []
    for job in plan(Source(str(folder / "document.pdf")), PageSelection()):
        image = load_page(job).convert("L").rotate(1.5, resample=Image.BICUBIC, expand=False, fillcolor=255)
        pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float64)
        noisy = np.clip(pixels + np.random.default_rng(seed + job.page).normal(0, 18, pixels.shape), 0, 255)
        scans.append(Image.fromarray(noisy.astype(np.uint8)))
        truth[("scan.tif", job.page)] = truth[("document.pdf", job.page)]
    scans[0].save(folder / "scan.tif", save_all=True, append_images=scans[1:], compression="tiff_deflate")
    return truth


def _cer(pairs: list[tuple[str, str]]) -> float:
    """Corpus CER of (predicted, truth) pairs, as `vlground eval ocr` computes it."""
    return pooled_rates([edit_counts(truth, predicted) for predicted, truth in pairs])["cer"]


def main() -> None:
    engine_name = os.environ.get("ENGINE", PPOCR)
    angle_cls = os.environ.get("ANGLE_CLS", "0") == "1"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        truth = build(folder)
        load_before = os.getloadavg()[0]
        rates, texts = {}, {}
        for workers in (1, 2):
            out = Path(tmp) / f"w{workers}.jsonl"
            summary = run_ocr([str(folder)], out, OcrOptions(engine=engine_name, angle_cls=angle_cls, run=RunOptions(workers=workers, progress=False), echo_failures=False))
            assert summary.failed == 0 and summary.done == len(truth)
            rates[f"workers_{workers}"] = summary.done / summary.seconds
            records = [json.loads(line) for line in out.read_text().splitlines()]
            texts = {(Path(r["path"]).name, r["page"]): r["text"] for r in records}
        engine = built_in_engine(engine_name, threads=1, angle_cls=angle_cls)
        bare = {}
        for name in ("document.pdf", "scan.tif"):
            for job in plan(Source(str(folder / name)), PageSelection()):
                bare[(name, job.page)] = " ".join(p.text for p in engine.detect(load_page(job)))
    kinds = ("two_columns", "table", "small_print_8pt", "mixed")
    report = {"engine": engine_name, "angle_cls": angle_cls, "pages": len(truth), "dpi": 300, "cpu_count": os.cpu_count(), "load_average_1min_before": round(load_before, 2),
              "pages_per_s": {k: round(v, 3) for k, v in rates.items()},
              "speedup_2_workers": round(rates["workers_2"] / rates["workers_1"], 3)}
    for name in ("document.pdf", "scan.tif"):
        keys = [k for k in truth if k[0] == name]
        report[f"cer_{name}"] = {"vlground": round(_cer([(texts[k], truth[k]) for k in keys]), 4),
                                 "bare_engine": round(_cer([(bare[k], truth[k]) for k in keys]), 4),
                                 "per_page_vlground": {kinds[k[1] - 1]: round(_cer([(texts[k], truth[k])]), 4) for k in keys},
                                 "per_page_bare_engine": {kinds[k[1] - 1]: round(_cer([(bare[k], truth[k])]), 4) for k in keys}}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
