"""Searchable PDFs: `vlground ocr --format pdf` beside OCRmyPDF (Tesseract) and OCRmyPDF with vlground
as its engine (`--plugin vlground.ocrmypdf`), on the same files in one run, one job each.

Inputs: two 3-page scans of the document benchmark's A5 pages stored as grey JPEG pages, as a
scanner writes them (clean3.pdf: rendered at 300 dpi; scan3.pdf: also turned 1.5 degrees, blurred
and speckled with noise, which makes its JPEGs large) and the images in samples/ (OCRmyPDF is told
they are 300 dpi). For each tool and input: the output's size, its ratio to the input's size
plus the text's bytes (the bound the issue sets is 1.2), the seconds, the CER of the text read back
from the PDF with pypdfium2, and whether each page's images came through with the same pixels.

    python benchmarks/bench_searchable_pdf.py                  # prints a Markdown table and the load
    ONLY=clean3.pdf python benchmarks/bench_searchable_pdf.py  # some of the inputs

OCRmyPDF is Debian's package (its own /usr/bin/python3); rows for it are left out when it is
missing. Other load on the cores stretches the seconds: compare tools within one run."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pypdfium2 as pdfium
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

sys.path.insert(0, str(Path(__file__).parent))
import vlground  # noqa: E402
from bench_ocr_documents import PAGE, build  # noqa: E402
from vlground.eval.ocr import edit_counts, pooled_rates  # noqa: E402

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
VLGROUND = str(Path(sys.executable).parent / "vlground")
ONLY = [name for name in os.environ.get("ONLY", "").split(",") if name]  # input names, e.g. ONLY=clean3.pdf


def _three_pages(folder: Path, name: str, noisy: bool) -> tuple[Path, list[str]]:
    """`name`: the first 3 pages as grey JPEG (quality 75) filling A5 pages, as a scanner stores
    them: the noisy scans (turned 1.5 degrees, blurred, speckled) or the clean 300 dpi renderings."""
    from PIL import Image

    from vlground.io.documents import PageSelection, load_page, plan
    from vlground.io.sources import Source

    truth = build(folder)
    if noisy:
        with Image.open(folder / "scan.tif") as scans:
            pages = [scans.seek(page) or scans.convert("L") for page in range(3)]
    else:
        pages = [load_page(job).convert("L") for job in plan(Source(str(folder / "document.pdf")), PageSelection())[:3]]
    path = folder / name
    canvas = Canvas(str(path), pagesize=PAGE)
    for image in pages:
        encoded = io.BytesIO()
        image.save(encoded, format="JPEG", quality=75)
        canvas.drawImage(ImageReader(io.BytesIO(encoded.getvalue())), 0, 0, *PAGE)
        canvas.showPage()
    canvas.save()
    return path, [truth[("document.pdf", page)] for page in (1, 2, 3)]


def _page_pixels(path: Path) -> list[list[bytes]]:
    """Each page's images as pdfium decodes them (their own pixels, not as drawn), forms included."""
    document = pdfium.PdfDocument(str(path))
    try:
        return [[image.get_bitmap().to_pil().convert("RGB").tobytes()
                 for image in page.get_objects(filter=[pdfium.raw.FPDF_PAGEOBJ_IMAGE])] for page in document]
    finally:
        document.close()


def _same_images(source: Path, made: Path) -> str:
    if source.suffix != ".pdf":
        return "n/a (image input)"
    return "yes" if _page_pixels(source) == _page_pixels(made) else "no"


def _run(tool: str, source: Path, folder: Path) -> tuple[Path, float]:
    made = folder / f"{tool}-{source.name}.pdf"
    image = [] if source.suffix == ".pdf" else ["--image-dpi", "300"]
    env = {**os.environ, "PYTHONPATH": str(Path(vlground.__file__).parent.parent)}
    commands = {
        "vlground": [VLGROUND, "ocr", str(source), "--out", str(folder / f"{source.name}.jsonl"), "--workers", "1",
                     "-q", "-f", "pdf", "--export-dir", str(folder / f"v-{source.name}")],
        "ocrmypdf": ["ocrmypdf", "-q", "--jobs", "1", *image, str(source), str(made)],
        "ocrmypdf+vlground": ["ocrmypdf", "-q", "--jobs", "1", "--plugin", "vlground.ocrmypdf", "--vlground-command",
                              VLGROUND, *image, str(source), str(made)],
    }
    start = time.perf_counter()
    subprocess.run(commands[tool], check=True, env=env, capture_output=True)
    seconds = time.perf_counter() - start
    if tool == "vlground":
        shutil.move(str(folder / f"v-{source.name}" / f"{source.name}.pdf"), made)
    return made, seconds


def main() -> None:
    tools = ["vlground"] + (["ocrmypdf", "ocrmypdf+vlground"] if shutil.which("ocrmypdf") else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        inputs = [_three_pages(folder, "clean3.pdf", noisy=False), _three_pages(folder, "scan3.pdf", noisy=True)]
        for line in (SAMPLES / "ground_truth.jsonl").read_text().splitlines():
            sample = json.loads(line)
            inputs.append((SAMPLES / sample["path"], [sample["text"]]))
        inputs = [(path, truth) for path, truth in inputs if not ONLY or path.name in ONLY]
        load = os.getloadavg()
        print(f"load average at the start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {time.strftime('%Y-%m-%d %H:%M')}")
        print("| input | size | tool | output | ÷ (input + text) | seconds | CER read back | same page images |")
        print("|---|---|---|---|---|---|---|---|")
        for source, truth in inputs:
            text = sum(len(t.encode("utf-8")) for t in truth)
            for tool in tools:
                made, seconds = _run(tool, source, folder)
                document = pdfium.PdfDocument(str(made))
                layer = [document[n].get_textpage().get_text_range() for n in range(len(document))]
                cer = pooled_rates([edit_counts(t, found) for t, found in zip(truth, layer)])["cer"]
                document.close()
                size = made.stat().st_size
                print(f"| {source.name} | {source.stat().st_size / 1024:.1f} KB | {tool} | {size / 1024:.1f} KB | "
                      f"{size / (source.stat().st_size + text):.2f} | {seconds:.1f} | {100 * cer:.1f}% | {_same_images(source, made)} |")
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
